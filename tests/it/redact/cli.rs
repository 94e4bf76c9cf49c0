//! `scopevault exec --artifacts` and `scopevault redact` against the real daemon, and the
//! hardening of `exec` (issue 15 item 10): not dumpable, `--files` on a tmpfs under the
//! runtime directory as memfd links, a killed exec's directory removed by the next one.

use crate::common::daemon;
use crate::common::redact_oracle;

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{tempdir, Daemon};
use redact_oracle::{oracle, scan_tree, skip};

/// The buyer's password in these tests: every character class the encoders differ on.
const PW: &str = "Pw/ +&\u{e9}\"<x>%~*1";

fn start(dir: &Path) -> Daemon {
    daemon::start_with_buyer(dir, PW)
}

fn sv(d: &Daemon, args: &[&str]) -> Command {
    let mut c = daemon::cmd(&d.dir);
    c.arg("--socket")
        .arg(&d.socket)
        .args(args)
        .stdin(Stdio::null());
    c
}

/// The `scrub_report` records of the daemon's audit log, parsed.
fn scrub_records(d: &Daemon) -> Vec<serde_json::Value> {
    d.audit_text()
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["op"] == "scrub_report")
        .collect()
}

/// `audit show` and `audit verify` of the daemon's log: (show's stdout, verify succeeded).
fn show_and_verify(d: &Daemon) -> (String, bool) {
    let audit = d.audit.to_str().unwrap();
    let show = daemon::cmd(&d.dir)
        .args(["audit", "show", "--audit", audit])
        .output()
        .unwrap();
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let verify = daemon::cmd(&d.dir)
        .args(["audit", "verify", "--audit", audit])
        .output()
        .unwrap();
    (
        String::from_utf8_lossy(&show.stdout).into_owned(),
        verify.status.success(),
    )
}

/// The count `exec`/`redact` printed on stderr for `label` (`scopevault:   LABEL: N`).
fn printed_hits(stderr: &str, label: &str) -> u64 {
    let key = format!("scopevault:   {label}: ");
    stderr
        .lines()
        .find_map(|l| l.strip_prefix(key.as_str()))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no count for {label} in: {stderr}"))
}

/// A shell script writing the password, from the environment, in many forms into `$1`.
const WRITER: &str = r#"
d=$1; pw=$SCOPEVAULT_SHOP_BUYER_PASSWORD
mkdir -p "$d/sub"
printf 'login %s\n' "$pw" > "$d/console.log"
printf '{"password":"%s"}' "$(printf %s "$pw" | sed 's/"/\\"/g')" > "$d/sub/body.json"
printf 'Authorization: Basic %s\n' "$(printf 'buyer:%s' "$pw" | base64 -w0)" > "$d/headers.txt"
printf '%s' "$pw" | od -An -tx1 | tr -d ' \n' > "$d/hex.txt"
printf '%s' "$pw" | base32 -w0 > "$d/b32.txt"
exit 3
"#;

#[test]
fn exec_artifacts_scrubs_every_file_and_keeps_the_exit_code() {
    let forms = match oracle(&[("shop-buyer.password", PW, Some("buyer"))]) {
        Ok(f) => f,
        Err(why) => {
            skip(&why);
            return;
        }
    };
    let dir = tempdir();
    let d = start(dir.path());
    let art = dir.path().join("artifacts");
    std::fs::create_dir(&art).unwrap();
    let art_s = art.to_str().unwrap();
    let out = sv(
        &d,
        &[
            "exec",
            "--task",
            "checkout-flow",
            "--artifacts",
            art_s,
            "--",
            "sh",
            "-c",
            WRITER,
            "sh",
            art_s,
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("5 files scanned, 5 rewritten"), "{stderr}");
    assert!(stderr.contains("shop-buyer.password: "), "{stderr}");
    assert!(!stderr.contains(PW));
    let (hits, scanned) = scan_tree(&art, &forms);
    assert_eq!(scanned, 5);
    assert!(hits.is_empty(), "{hits:?}");
    let json = std::fs::read(art.join("sub/body.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&json).expect("still JSON");
    assert_eq!(v["password"], "[redacted:shop-buyer.password]");
    let headers = std::fs::read_to_string(art.join("headers.txt")).unwrap();
    assert_eq!(
        headers,
        "Authorization: Basic [redacted:shop-buyer.password]\n"
    );

    // The counts are in the daemon's audit log: one `scrub_report` record, as the runner.
    let hits = printed_hits(&stderr, "shop-buyer.password");
    assert!(hits >= 5, "{stderr}");
    assert!(
        stderr.contains("counts recorded in the audit log"),
        "{stderr}"
    );
    let recs = scrub_records(&d);
    assert_eq!(recs.len(), 1, "{recs:?}");
    let r = &recs[0];
    assert_eq!(r["decision"], "allow");
    assert_eq!(r["task"], "checkout-flow");
    assert_eq!(r["peer"]["uid"], scopevault::sys::current_uid());
    let scrub = &r["scrub"];
    assert_eq!(scrub["files"], 5);
    assert_eq!(scrub["rewritten"], 5);
    assert_eq!(scrub["failed"], 0);
    assert_eq!(scrub["binary_kept"], 0);
    assert_eq!(scrub["binary_dropped"], 0);
    assert_eq!(scrub["binary_with_form"], 0);
    assert_eq!(
        scrub["hits"],
        serde_json::json!({ "shop-buyer.password": hits })
    );
    let audit = d.audit_text();
    assert!(!audit.contains(PW));
    daemon::assert_no_secret(&audit, "the audit log");
    let (show, verified) = show_and_verify(&d);
    assert!(verified, "audit verify fails after the scrub report");
    let line = show
        .lines()
        .find(|l| l.contains("scrub_report"))
        .unwrap_or_else(|| panic!("audit show has no scrub_report: {show}"));
    assert!(line.contains("task=checkout-flow"), "{line}");
    assert!(
        line.contains("files=5") && line.contains("rewritten=5"),
        "{line}"
    );
    assert!(
        line.contains(&format!("hits[shop-buyer.password]={hits}")),
        "{line}"
    );
}

/// A script that stops the daemon (by pid, and waits until its socket is gone), then writes
/// the password into `$1`: `exec` cannot report its scrub.
const STOP_THEN_WRITE: &str = r#"
kill -TERM "$2"; n=0; while [ -e "$3" ] && [ $n -lt 400 ]; do sleep 0.05; n=$((n+1)); done
printf 'login %s\n' "$SCOPEVAULT_SHOP_BUYER_PASSWORD" > "$1/console.log"
exit 4
"#;

#[test]
fn exec_artifacts_without_a_daemon_for_the_report_warns_and_keeps_the_exit_code() {
    let dir = tempdir();
    let d = start(dir.path());
    let art = dir.path().join("artifacts");
    std::fs::create_dir(&art).unwrap();
    let art_s = art.to_str().unwrap();
    let pid = d.pid().to_string();
    let sock = d.socket.to_str().unwrap().to_owned();
    let out = sv(
        &d,
        &[
            "exec",
            "--task",
            "checkout-flow",
            "--artifacts",
            art_s,
            "--",
            "sh",
            "-c",
            STOP_THEN_WRITE,
            "sh",
            art_s,
            &pid,
            &sock,
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "the command's code: {stderr}");
    assert!(!d.socket.exists(), "the daemon stopped: {stderr}");
    assert!(
        stderr.contains("warning: the scrub's counts were not recorded"),
        "{stderr}"
    );
    assert!(!stderr.contains(PW));
    assert_eq!(
        std::fs::read_to_string(art.join("console.log")).unwrap(),
        "login [redacted:shop-buyer.password]\n",
        "scrubbed all the same"
    );
    assert!(scrub_records(&d).is_empty());
}

#[test]
fn scrub_reports_are_authorised_like_a_fetch_bounded_and_never_echo_a_label() {
    let dir = tempdir();
    let d = start(dir.path());
    let report = |task: &str, hits: serde_json::Value| {
        serde_json::json!({"v":1,"op":"scrub_report","task":task,"scrub":{
            "files":2,"rewritten":1,"failed":0,"binary_kept":1,"binary_dropped":0,
            "binary_with_form":1,"hits":hits}})
        .to_string()
    };
    // Not a runner of `newsletter`: refused, and the refusal audited.
    let v = d.request(&report(
        "newsletter",
        serde_json::json!({"newsletter-login.password": 3}),
    ));
    assert_eq!(daemon::code(&v), "denied", "{v}");
    let recs = scrub_records(&d);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["decision"], "deny");
    assert_eq!(recs[0]["task"], "newsletter");
    assert!(
        recs[0].get("scrub").is_none(),
        "no counts from a refused peer"
    );
    assert!(
        recs[0]["reason"].as_str().unwrap().contains("not a runner"),
        "{recs:?}"
    );
    // A task the policy does not have: its name is whatever the client sent (a secret here),
    // recorded as its HMAC.
    let ghost = daemon::secret_of("payments-token");
    let v = d.request(&report(&ghost, serde_json::json!({})));
    assert_eq!(daemon::code(&v), "not_found", "{v}");
    assert!(!v.to_string().contains(&ghost));
    // A runner of the task: recorded; a label the task does not hand out (here a secret
    // value sent as a label) is recorded as its HMAC, never as sent.
    let leaked = daemon::secret_of("shop-backoffice");
    let v = d.request(&report(
        "checkout-flow",
        serde_json::json!({"shop-buyer.password": 7, leaked.clone(): 2}),
    ));
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["task"], "checkout-flow");
    let seq = v["audit_seq"].as_u64().unwrap();
    let recs = scrub_records(&d);
    let r = recs.last().unwrap();
    assert_eq!(r["seq"], seq);
    assert_eq!(r["decision"], "allow");
    let hits = r["scrub"]["hits"].as_object().unwrap();
    assert_eq!(hits["shop-buyer.password"], 7);
    assert_eq!(hits.len(), 2, "{hits:?}");
    let (mac, n) = hits
        .iter()
        .find(|(k, _)| k.starts_with("hmac-sha256:"))
        .expect("the unknown label as its HMAC");
    assert_eq!(n, 2);
    let hashed = daemon::cmd(&d.dir)
        .args(["audit", "hash", "--audit", d.audit.to_str().unwrap()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(leaked.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&hashed.stdout).trim(), mac.as_str());
    assert_eq!(r["scrub"]["binary_with_form"], 1);
    assert!(r["reason"].as_str().unwrap().contains("1 label(s)"), "{r}");
    // A TOTP credential hands out its code, never its seed: the seed's label is not the
    // task's, nor is a credential of another task.
    let v = d.request(&report(
        "two-factor-login",
        serde_json::json!({"shop-2fa.totp_code": 1, "shop-2fa.totp_seed": 1, "shop-buyer.password": 1}),
    ));
    assert_eq!(v["ok"], true, "{v}");
    let last = scrub_records(&d).pop().unwrap();
    let hits = last["scrub"]["hits"].as_object().unwrap();
    assert_eq!(hits["shop-2fa.totp_code"], 1, "{last}");
    assert_eq!(hits.len(), 3, "{last}");
    assert_eq!(
        hits.keys()
            .filter(|k| k.starts_with("hmac-sha256:"))
            .count(),
        2,
        "{last}"
    );
    // Bounds: a count over 2^40, too many labels, an unknown member: bad_request, not echoed.
    let v = d.request(&report(
        "checkout-flow",
        serde_json::json!({ "shop-buyer.password": (1u64 << 40) + 1 }),
    ));
    assert_eq!(daemon::code(&v), "bad_request", "{v}");
    let many: serde_json::Map<String, serde_json::Value> =
        (0..65).map(|i| (format!("l{i}"), 1.into())).collect();
    let v = d.request(&report("checkout-flow", many.into()));
    assert_eq!(daemon::code(&v), "bad_request", "{v}");
    let v = d.request(&format!(
        r#"{{"v":1,"op":"scrub_report","task":"checkout-flow","scrub":{{"files":1,"rewritten":0,"failed":0,"binary_kept":0,"binary_dropped":0,"binary_with_form":0,"hits":{{}},"{leaked}":1}}}}"#
    ));
    assert_eq!(daemon::code(&v), "bad_request", "{v}");
    assert!(!v.to_string().contains(&leaked), "{v}");
    let v = d.request(r#"{"v":1,"op":"scrub_report","task":"checkout-flow"}"#);
    assert_eq!(daemon::code(&v), "bad_request", "{v}");

    let audit = d.audit_text();
    daemon::assert_no_secret(&audit, "the audit log");
    let (show, verified) = show_and_verify(&d);
    assert!(verified);
    daemon::assert_no_secret(&show, "audit show");
    assert!(show.contains("hits[shop-buyer.password]=7"), "{show}");
}

#[test]
fn redact_fetches_as_the_runner_scrubs_and_is_audited() {
    let dir = tempdir();
    let d = start(dir.path());
    let art = dir.path().join("later");
    std::fs::create_dir(&art).unwrap();
    let f = art.join("report.xml");
    let xml = format!(
        "<r><pw>{}</pw></r>\n",
        PW.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    );
    std::fs::write(&f, &xml).unwrap();
    let audit_before = d.audit_text().lines().count();
    let out = sv(
        &d,
        &["redact", "--task", "checkout-flow", art.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("shop-buyer.password: 1"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&f).unwrap(),
        "<r><pw>[redacted:shop-buyer.password]</pw></r>\n"
    );
    let audit = d.audit_text();
    let new: Vec<&str> = audit.lines().skip(audit_before).collect();
    assert!(
        new.iter()
            .any(|l| l.contains("checkout-flow") && l.contains("\"fetch\"")),
        "the redact fetch is audited: {new:?}"
    );
    assert!(!audit.contains(PW));
    let recs = scrub_records(&d);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["decision"], "allow");
    assert_eq!(recs[0]["task"], "checkout-flow");
    assert_eq!(recs[0]["scrub"]["files"], 1);
    assert_eq!(recs[0]["scrub"]["rewritten"], 1);
    assert_eq!(
        recs[0]["scrub"]["hits"],
        serde_json::json!({"shop-buyer.password": 1})
    );
    let (show, verified) = show_and_verify(&d);
    assert!(verified);
    assert!(show.contains("hits[shop-buyer.password]=1"), "{show}");

    // A task this runner may not fetch: refused (exit 5), the file untouched.
    std::fs::write(&f, &xml).unwrap();
    let out = sv(
        &d,
        &["redact", "--task", "newsletter", art.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(5));
    assert_eq!(std::fs::read_to_string(&f).unwrap(), xml);
}

/// A password that can be part of a file name (no `/`), and its base64 form (no `/` either).
const NAMEABLE: &str = "S3cr3tValue!xyz";
const NAMEABLE_B64: &str = "UzNjcjN0VmFsdWUheHl6";

/// Writes, under `$1`, a clean log, a log whose name holds the password, and a directory
/// whose name holds its base64 form (with a clean file in it).
const NAMES_WRITER: &str = r#"
d=$1; pw=$SCOPEVAULT_SHOP_BUYER_PASSWORD
echo ok > "$d/clean.log"
echo ok > "$d/login-$pw.log"
mkdir -p "$d/run-$(printf %s "$pw" | base64 -w0)"
echo ok > "$d/run-$(printf %s "$pw" | base64 -w0)/step.txt"
exit 3
"#;

/// Found by attacking get/exec/totp as a check author (sixteenth pass): the child of
/// `exec --artifacts DIR` put its password in a file's name and the scrub passed in silence
/// ("2 files scanned, 0 rewritten"), while the same value in a zip member's name is reported
/// as an error. Every file and directory name under the tree is now checked against the same
/// forms: each such name is an error, printed masked, with the archive case's exit status
/// (`exec`: the command's; `redact`: 1), and a tree without such names passes.
#[test]
fn regression_a_secret_in_a_file_or_directory_name_is_reported_masked() {
    assert_eq!(
        data_encoding::BASE64.encode(NAMEABLE.as_bytes()),
        NAMEABLE_B64
    );
    let dir = tempdir();
    let d = daemon::start_with_buyer(dir.path(), NAMEABLE);
    let art = dir.path().join("artifacts");
    std::fs::create_dir(&art).unwrap();
    let art_s = art.to_str().unwrap();
    let out = sv(
        &d,
        &[
            "exec",
            "--task",
            "checkout-flow",
            "--artifacts",
            art_s,
            "--",
            "sh",
            "-c",
            NAMES_WRITER,
            "sh",
            art_s,
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        art.join(format!("login-{NAMEABLE}.log")).exists(),
        "not renamed"
    );
    let named: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("scopevault: error: ") && l.contains("is in this name"))
        .collect();
    assert_eq!(named.len(), 2, "{stderr}");
    assert!(
        named
            .iter()
            .any(|l| l.contains("login-[redacted:shop-buyer.password].log")),
        "{stderr}"
    );
    assert!(
        named
            .iter()
            .any(|l| l.contains("run-[redacted:shop-buyer.password]:")),
        "{stderr}"
    );
    assert!(!stderr.contains(NAMEABLE), "{stderr}");
    assert!(!stderr.contains(NAMEABLE_B64), "{stderr}");
    let recs = scrub_records(&d);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["scrub"]["failed"], 2, "{recs:?}");
    assert!(!d.audit_text().contains(NAMEABLE));

    // `redact` over the same tree: exit 1, as for an archive with a value in a member's name.
    let out = sv(&d, &["redact", "--task", "checkout-flow", art_s])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert_eq!(stderr.matches("is in this name").count(), 2, "{stderr}");
    assert!(
        !stderr.contains(NAMEABLE) && !stderr.contains(NAMEABLE_B64),
        "{stderr}"
    );

    // A tree without such names is unaffected.
    let clean = dir.path().join("clean");
    std::fs::create_dir_all(clean.join("run-1")).unwrap();
    std::fs::write(clean.join("login.log"), "ok\n").unwrap();
    std::fs::write(clean.join("run-1/step.txt"), "ok\n").unwrap();
    let out = sv(
        &d,
        &["redact", "--task", "checkout-flow", clean.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!stderr.contains("error"), "{stderr}");
}

/// Sixteenth pass, found by attacking that pass's own name check: a symbolic link whose
/// target holds the value (`last-url -> https://u:<password>@shop…`) was only "not a regular
/// file, skipped", exit 0, while `tar` of the tree keeps the target. It is now an error, the
/// path and target never printed with the value, whether the link is in the tree or given.
#[test]
fn a_symlink_whose_target_holds_a_secret_is_reported() {
    let dir = tempdir();
    let d = daemon::start_with_buyer(dir.path(), NAMEABLE);
    let art = dir.path().join("artifacts");
    std::fs::create_dir(&art).unwrap();
    let link = art.join("last-url");
    std::os::unix::fs::symlink(format!("https://u:{NAMEABLE}@shop.example/login"), &link).unwrap();
    std::os::unix::fs::symlink("clean-target", art.join("clean-link")).unwrap();
    for given in [&art, &link] {
        let out = sv(
            &d,
            &["redact", "--task", "checkout-flow", given.to_str().unwrap()],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(
            stderr.matches("is in this symbolic link's target").count(),
            1,
            "{stderr}"
        );
        assert!(stderr.contains("last-url"), "{stderr}");
        assert!(!stderr.contains(NAMEABLE), "{stderr}");
    }
}

/// Found by attacking the scrub (seventeenth pass): `exec --artifacts LINK` and `redact LINK`,
/// LINK a symbolic link to the run's directory, said "not a regular file, skipped" and exited
/// 0 with nothing scrubbed (`LINK/` worked). A link given as a root is now followed, as
/// `find -H` does, a directory's or a file's; links found under it are still not followed, and
/// a link given that leads nowhere is an error.
#[test]
fn regression_a_symbolic_link_given_as_a_root_is_followed_and_links_under_it_are_not() {
    let dir = tempdir();
    let d = start(dir.path());
    let (real, outside) = (dir.path().join("run-42"), dir.path().join("outside"));
    std::fs::create_dir_all(&real).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    let leaked = format!("login {PW}\n");
    let victim = outside.join("victim.log");
    let link = dir.path().join("latest");
    std::os::unix::fs::symlink(&real, &link).unwrap();
    std::os::unix::fs::symlink(&victim, real.join("to-outside.log")).unwrap();
    let file_link = dir.path().join("latest.log");
    std::os::unix::fs::symlink(real.join("app.log"), &file_link).unwrap();
    let link_s = link.to_str().unwrap();

    // `exec --artifacts LINK`: the check writes through the link; the exit code is its own.
    std::fs::write(&victim, &leaked).unwrap();
    let out = sv(
        &d,
        &[
            "exec",
            "--task",
            "checkout-flow",
            "--artifacts",
            link_s,
            "--",
            "sh",
            "-c",
            "printf 'login %s\\n' \"$SCOPEVAULT_SHOP_BUYER_PASSWORD\" > \"$1/app.log\"; exit 3",
            "sh",
            link_s,
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("1 files scanned, 1 rewritten"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(real.join("app.log")).unwrap(),
        "login [redacted:shop-buyer.password]\n"
    );
    // The link under the root was not followed.
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), leaked);
    assert!(stderr.contains("skipped: "), "{stderr}");

    // `redact LINK` (a directory) and `redact FILE-LINK`: exit 0, scrubbed.
    for given in [&link, &file_link] {
        std::fs::write(real.join("app.log"), &leaked).unwrap();
        let out = sv(
            &d,
            &["redact", "--task", "checkout-flow", given.to_str().unwrap()],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{}: {stderr}", given.display());
        assert!(stderr.contains("1 files scanned, 1 rewritten"), "{stderr}");
        assert_eq!(
            std::fs::read_to_string(real.join("app.log")).unwrap(),
            "login [redacted:shop-buyer.password]\n"
        );
        assert!(given.is_symlink(), "the link itself stays a link");
    }
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), leaked);

    // A link that leads nowhere: an error, not "skipped" with exit 0.
    let dangling = dir.path().join("gone");
    std::os::unix::fs::symlink(dir.path().join("no-such-run"), &dangling).unwrap();
    let out = sv(
        &d,
        &[
            "redact",
            "--task",
            "checkout-flow",
            dangling.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot follow the symbolic link"),
        "{stderr}"
    );
}

/// Writes into `dir` a binary file holding `value`, a clean image, and a zip whose binary
/// member (deflated, so the archive's bytes do not show it) holds `value`.
fn write_binaries(dir: &Path, value: &str) {
    use std::io::Write;
    let mut dump = b"\x89PNG\r\n\x1a\n\0\0".to_vec();
    dump.extend_from_slice(value.as_bytes());
    dump.extend_from_slice(&[0u8; 20]);
    std::fs::write(dir.join("dump.bin"), &dump).unwrap();
    std::fs::write(dir.join("clean.png"), b"\x89PNG\r\n\x1a\n\0\0clean").unwrap();
    let mut w = zip::ZipWriter::new(std::fs::File::create(dir.join("trace.zip")).unwrap());
    let o = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    w.start_file("trace.trace", o).unwrap();
    w.write_all(b"{\"type\":\"action\"}\n").unwrap();
    w.start_file("resources/body.bin", o).unwrap();
    w.write_all(&dump).unwrap();
    w.finish().unwrap();
}

/// Found by attacking the scrub (seventeenth pass): a binary file (or a zip's binary member)
/// holding the value was kept with a warning, "(A FORM OF A SECRET IS IN IT)", and `redact`
/// exited 0, so `redact && upload` shipped the value. Kept, such a file is now an error:
/// `redact` exits 1, `exec --artifacts` counts it failed and keeps the command's exit code; a
/// binary file without a form, or one dropped (`--artifacts-binary drop`), is not an error.
#[test]
fn regression_a_binary_file_kept_with_a_form_in_it_is_an_error() {
    let dir = tempdir();
    let d = start(dir.path());
    let art = dir.path().join("artifacts");
    std::fs::create_dir(&art).unwrap();
    write_binaries(&art, PW);
    let art_s = art.to_str().unwrap();
    let out = sv(&d, &["redact", "--task", "checkout-flow", art_s])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("scopevault: error: ") && l.contains("in this binary file"))
        .collect();
    assert_eq!(errors.len(), 2, "{stderr}");
    assert!(errors.iter().any(|l| l.contains("dump.bin:")), "{stderr}");
    assert!(
        errors
            .iter()
            .any(|l| l.contains("trace.zip!resources/body.bin:")),
        "{stderr}"
    );
    assert!(!stderr.contains(PW), "{stderr}");
    assert!(art.join("dump.bin").exists(), "kept, as asked");

    // `exec --artifacts`: the command's exit code, the files counted failed.
    let out = sv(
        &d,
        &[
            "exec",
            "--task",
            "checkout-flow",
            "--artifacts",
            art_s,
            "--",
            "sh",
            "-c",
            "exit 3",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert_eq!(stderr.matches("in this binary file").count(), 2, "{stderr}");
    let recs = scrub_records(&d);
    let last = recs.last().unwrap();
    assert_eq!(last["scrub"]["failed"], 2, "{recs:?}");
    assert_eq!(last["scrub"]["binary_with_form"], 2, "{recs:?}");

    // Dropped, they are gone: exit 0.
    let out = sv(
        &d,
        &[
            "redact",
            "--task",
            "checkout-flow",
            "--artifacts-binary",
            "drop",
            art_s,
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(!art.join("dump.bin").exists());

    // Without a form in them, binary files are listed, not errors.
    let clean = dir.path().join("clean");
    std::fs::create_dir(&clean).unwrap();
    write_binaries(&clean, "nothing secret here");
    let out = sv(
        &d,
        &["redact", "--task", "checkout-flow", clean.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert_eq!(
        stderr.matches("binary file not scrubbed").count(),
        3,
        "{stderr}"
    );
}

/// Prints, and writes into `$1`, the password as a check's logging does: Python's `str()` of
/// a dict and of a list of bytes (`repr`), Node's `console.log` of an object
/// (`util.inspect`).
const REPR_WRITER: &str = r#"
python3 -c 'import os; v = os.environ["SCOPEVAULT_SHOP_BUYER_PASSWORD"]; print({"password": v}); print([v.encode()])' | tee "$1/py.log"
node -e 'console.log({ password: process.env.SCOPEVAULT_SHOP_BUYER_PASSWORD })' | tee "$1/node.log"
"#;

/// Found by attacking `exec`'s masking and the scrub with real writers (seventeenth pass):
/// Python's `repr` (a dict or list printed by a check, `'…\\…'`: `\` doubled, `"` as it is,
/// non-ASCII raw; of bytes, non-ASCII as `\xc3\xa9`) and Node's `util.inspect`
/// (`console.log({password})`) are not JSON, and were neither masked nor scrubbed for a value
/// holding `\` and a quote. Run here by the real Python and Node, under `exec` with its
/// output and its artefacts searched for every form the oracle writes.
#[test]
fn regression_python_repr_and_node_inspect_of_the_password_are_masked_and_scrubbed() {
    const VALUE: &str = "Sq\"9/\u{e9}\\&+%<k> \u{1f511}z";
    if Command::new("node").arg("--version").output().is_err() {
        skip("node is not installed");
        return;
    }
    let forms = match oracle(&[("shop-buyer.password", VALUE, Some("buyer"))]) {
        Ok(f) => f,
        Err(why) => {
            skip(&why);
            return;
        }
    };
    let dir = tempdir();
    let d = daemon::start_with_buyer(dir.path(), VALUE);
    let art = dir.path().join("artifacts");
    std::fs::create_dir(&art).unwrap();
    let art_s = art.to_str().unwrap();
    let out = sv(
        &d,
        &[
            "exec",
            "--task",
            "checkout-flow",
            "--no-mask",
            "--artifacts",
            art_s,
            "--",
            "sh",
            "-c",
            REPR_WRITER,
            "sh",
            art_s,
        ],
    )
    .output()
    .unwrap();
    assert!(out.status.success());
    // Unmasked, the writers did write what the oracle calls these forms (Node's display of
    // this value is Python's, which the oracle lists once).
    let raw = redact_oracle::hits_in(&out.stdout, &forms, "stdout").join("\n");
    for name in ["python-repr", "python-bytes-repr"] {
        assert!(raw.contains(&format!("form {name} ")), "{name} not written");
    }
    let node = format!("{{ password: '{}' }}", VALUE.replace('\\', "\\\\"));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&node),
        "node wrote another display"
    );
    let (hits, _) = scan_tree(&art, &forms);
    assert!(hits.is_empty(), "{hits:#?}");
    // Masked, as `exec` prints them.
    let out = sv(
        &d,
        &[
            "exec",
            "--task",
            "checkout-flow",
            "--",
            "sh",
            "-c",
            REPR_WRITER,
            "sh",
            art_s,
        ],
    )
    .output()
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let hits = redact_oracle::hits_in(&out.stdout, &forms, "stdout");
    assert!(hits.is_empty(), "{hits:#?}");
    assert_eq!(
        stdout.matches("[redacted:shop-buyer.password]").count(),
        3,
        "{stdout}"
    );
}

/// Found by attacking the scrub (seventeenth pass): `redact` run as root rewrote a file of
/// uid 65534 as root's (the mode was kept, not the owner), so the check's user could no
/// longer write its own artefacts, nor read a 0600 one. The scrubbed copy now gets the
/// original's owner and group before it replaces it, a text file's and an archive's alike.
#[test]
fn regression_redact_as_root_keeps_each_files_owner_and_group() {
    if !crate::common::users::is_root() {
        skip("needs root to make files of another user");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let d = start(dir.path());
    let art = dir.path().join("artifacts");
    std::fs::create_dir(&art).unwrap();
    let log = art.join("app.log");
    std::fs::write(&log, format!("login {PW}\n")).unwrap();
    let trace = art.join("trace.zip");
    {
        use std::io::Write;
        let mut w = zip::ZipWriter::new(std::fs::File::create(&trace).unwrap());
        w.start_file("trace.trace", zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(format!("{}\n", serde_json::json!({ "value": PW })).as_bytes())
            .unwrap();
        w.finish().unwrap();
    }
    for (f, mode) in [(&log, 0o640), (&trace, 0o600)] {
        std::os::unix::fs::chown(f, Some(65534), Some(65534)).unwrap();
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    let out = sv(
        &d,
        &["redact", "--task", "checkout-flow", art.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("2 files scanned, 2 rewritten"), "{stderr}");
    for (f, mode) in [(&log, 0o640), (&trace, 0o600)] {
        let m = std::fs::metadata(f).unwrap();
        assert_eq!(
            (m.uid(), m.gid(), m.permissions().mode() & 0o7777),
            (65534, 65534, mode),
            "{}",
            f.display()
        );
    }
    assert!(!std::fs::read_to_string(&log).unwrap().contains(PW));
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < Duration::from_secs(20), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A runner of checkout-flow for an `exec` that a test kills, placed where no other test's
/// `exec` looks: every `exec` removes the directories its uid's killed `exec`s left, so
/// another test's, running meanwhile, could remove what this test is about to look at. As
/// root it is the test user `user`, as which no other test runs `exec`; without root it is
/// this user, with an `XDG_RUNTIME_DIR` of its own. With `own_xdg` (always without root) its
/// `XDG_RUNTIME_DIR` is a fresh 0700 directory on /dev/shm, a tmpfs no other `exec` of the
/// uid looks in; without, it has none (the fallback, /dev/shm).
struct KilledExecRunner {
    daemon: Daemon,
    ids: Option<(u32, u32)>,
    exe: std::path::PathBuf,
    xdg: Option<std::path::PathBuf>,
    /// A directory the runner may write to.
    out: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl KilledExecRunner {
    fn start(user: &str, own_xdg: bool) -> KilledExecRunner {
        use crate::common::users;
        use std::os::unix::fs::PermissionsExt;
        let dir = tempdir();
        let ids =
            users::is_root().then(|| users::ensure_user(user).unwrap_or_else(|e| panic!("{e}")));
        let id = daemon::setup_vault(dir.path());
        let idarg = id.to_str().unwrap();
        daemon::ok(
            dir.path(),
            &[
                "--identity-file",
                idarg,
                "cred",
                "set",
                "shop-buyer",
                "--field",
                "username=buyer",
                "--secret",
                "password",
            ],
            Some(PW),
        );
        let mut exe = std::path::PathBuf::from(daemon::bin());
        if ids.is_some() {
            let example = daemon::example_policy();
            let policy = example.replacen(
                "runners = { users = [\"checkpoint\", \"root\"], groups = [] }",
                &format!("runners = {{ users = [\"{user}\"], groups = [] }}"),
                1,
            );
            assert_ne!(
                policy, example,
                "examples/policy.toml changed checkout-flow"
            );
            let file = dir.path().join("runner.toml");
            std::fs::write(&file, policy).unwrap();
            daemon::ok(
                dir.path(),
                &[
                    "--identity-file",
                    idarg,
                    "policy",
                    "apply",
                    file.to_str().unwrap(),
                ],
                None,
            );
            exe = users::shared_binary(&dir.path().join("shared"));
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        let daemon = Daemon::start(dir.path(), &["--identity-file", idarg]);
        let own = |p: &Path| {
            std::fs::create_dir(p).unwrap();
            if let Some((uid, gid)) = ids {
                std::os::unix::fs::chown(p, Some(uid), Some(gid)).unwrap();
            }
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o700)).unwrap();
        };
        if ids.is_some() {
            std::fs::set_permissions(
                daemon.socket.parent().unwrap(),
                std::fs::Permissions::from_mode(0o711),
            )
            .unwrap();
            std::fs::set_permissions(&daemon.socket, std::fs::Permissions::from_mode(0o666))
                .unwrap();
        }
        let out = dir.path().join("out");
        own(&out);
        let xdg = (own_xdg || ids.is_none()).then(|| {
            let x = tempfile::Builder::new()
                .prefix("scopevault-test-xdg-")
                .tempdir_in("/dev/shm")
                .unwrap()
                .keep();
            std::fs::remove_dir(&x).unwrap();
            own(&x);
            x
        });
        KilledExecRunner {
            daemon,
            ids,
            exe,
            xdg,
            out,
            _dir: dir,
        }
    }

    /// `scopevault --socket S ARGS` as the runner.
    fn command(&self, args: &[&str]) -> Command {
        use std::os::unix::process::CommandExt;
        let mut c = match self.ids {
            Some((uid, gid)) => {
                let mut c = Command::new(&self.exe);
                c.env_clear()
                    .env("HOME", "/")
                    .env("PATH", "/usr/bin:/bin")
                    .current_dir("/")
                    .uid(uid)
                    .gid(gid);
                c
            }
            None => daemon::cmd(&self.daemon.dir),
        };
        c.arg("--socket")
            .arg(&self.daemon.socket)
            .args(args)
            .stdin(Stdio::null());
        match &self.xdg {
            Some(x) => c.env("XDG_RUNTIME_DIR", x),
            None => c.env_remove("XDG_RUNTIME_DIR"),
        };
        c
    }
}

impl Drop for KilledExecRunner {
    fn drop(&mut self) {
        if let Some(x) = &self.xdg {
            let _ = std::fs::remove_dir_all(x);
        }
    }
}

#[test]
fn exec_files_are_memfd_links_on_a_tmpfs_and_a_killed_execs_directory_goes_next_time() {
    // As its own user, or in its own XDG_RUNTIME_DIR (on a tmpfs): no other test's `exec`
    // removes what the killed one leaves before it is looked at.
    let runner = KilledExecRunner::start(crate::common::users::OTHER_USER, true);
    // The runtime directory's tmpfs, never /tmp.
    let pidfile = runner.out.join("child.pid");
    let report = runner.out.join("report.txt");
    let script = format!(
        "echo $$ > {pid}; d=$SCOPEVAULT_CREDENTIALS_DIRECTORY; \
         {{ echo \"$d\"; readlink \"$d/shop-buyer/password\"; cat \"$d/shop-buyer/username\"; echo; \
            stat -f -c %T \"$d\"; }} > {rep}; cat \"$d/shop-buyer/password\"; echo; exec sleep 60",
        pid = pidfile.display(),
        rep = report.display()
    );
    let mut c = runner.command(&[
        "exec",
        "--task",
        "checkout-flow",
        "--files",
        "--",
        "sh",
        "-c",
        &script,
    ]);
    c.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut exec = c.spawn().unwrap();
    wait_for("the child's report", || {
        std::fs::read_to_string(&report).is_ok_and(|r| r.lines().count() >= 4)
    });
    let r = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = r.lines().collect();
    let creds_dir = std::path::PathBuf::from(lines[0]);
    assert!(!creds_dir.starts_with("/tmp"), "{r}");
    assert!(lines[1].starts_with("/proc/self/fd/"), "a memfd link: {r}");
    assert_eq!(lines[2], "buyer");
    assert_eq!(lines[3], "tmpfs", "{r}");
    // In `scopevault-exec` (0700) under the runtime directory.
    let parent = creds_dir.parent().unwrap();
    assert_eq!(
        Some(parent),
        runner
            .xdg
            .as_ref()
            .map(|x| x.join("scopevault-exec"))
            .as_deref()
    );
    for d in [parent, creds_dir.as_path()] {
        let meta = std::fs::symlink_metadata(d).unwrap();
        assert_eq!(meta.mode() & 0o777, 0o700, "{}", d.display());
    }

    // SIGKILL exec: nothing runs its clean-up; the directory stays.
    let child_pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    Command::new("kill")
        .args(["-KILL", &exec.id().to_string(), &child_pid.to_string()])
        .status()
        .unwrap();
    let _ = exec.wait();
    assert!(creds_dir.exists(), "left behind by the killed exec");

    // The next exec of the same user removes it.
    let out = runner
        .command(&["exec", "--task", "checkout-flow", "--files", "--", "true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!creds_dir.exists(), "the stale directory was removed");
}

/// A socket that accepts and never answers: `exec` waits on it, hardened, long enough to look
/// at it from outside.
fn silent_socket(dir: &Path) -> (std::path::PathBuf, std::thread::JoinHandle<()>) {
    use std::os::unix::fs::PermissionsExt;
    let sock = dir.join("silent.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o777)).unwrap();
    let h = std::thread::spawn(move || {
        let (s, _) = l.accept().unwrap();
        std::thread::sleep(Duration::from_secs(15));
        drop(s);
    });
    (sock, h)
}

#[test]
fn exec_is_not_dumpable() {
    // A non-dumpable process's /proc/PID files belong to root, whoever runs it. As root, run
    // exec (and, as the control, a plain process) as uid 65534 to see the difference.
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = daemon::is_root();
    let uid = if root {
        65534
    } else {
        scopevault::sys::current_uid()
    };
    if !root && uid == 0 {
        skip("cannot tell");
        return;
    }
    let owner = |pid: u32| {
        std::fs::metadata(format!("/proc/{pid}/status"))
            .map(|m| m.uid())
            .ok()
    };
    // The process has run execve (its command line is the new program's) and changed uid.
    let execd = |pid: u32, word: &str| {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        String::from_utf8_lossy(&cmdline).contains(word)
            && status.lines().any(|l| {
                l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&uid.to_string())
            })
    };
    let mut control = Command::new("sleep");
    control.arg("7");
    if root {
        control.uid(65534).gid(65534);
    }
    let mut control = control.spawn().unwrap();
    wait_for("the control runs sleep", || execd(control.id(), "7"));
    assert_eq!(
        owner(control.id()),
        Some(uid),
        "control: a dumpable process"
    );
    control.kill().unwrap();
    let _ = control.wait();

    let (sock, h) = silent_socket(dir.path());
    let mut c = Command::new(daemon::bin());
    c.arg("--socket")
        .arg(&sock)
        .args(["exec", "--task", "checkout-flow", "--", "true"])
        .env_clear()
        .env("HOME", "/")
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if root {
        c.uid(65534).gid(65534);
    }
    let mut exec = c.spawn().unwrap();
    wait_for("exec runs", || execd(exec.id(), "checkout-flow"));
    // exec hardens itself first thing, then waits on the silent socket.
    wait_for("/proc/<exec>/status belongs to root: not dumpable", || {
        owner(exec.id()) == Some(0)
    });
    assert!(
        exec.try_wait().unwrap().is_none(),
        "exec is still waiting on the socket"
    );
    let _ = exec.kill();
    let _ = exec.wait();
    drop(h); // the listener thread ends on its own
}

/// Found by attacking the runner side from operations.md (eighteenth pass): another user
/// broke `exec --files` of a uid for good by making its fallback directory first. The
/// directory was the predictable `/dev/shm/scopevault-exec-UID` ("else
/// `/dev/shm/scopevault-exec-UID`"): `mkdir /dev/shm/scopevault-exec-1001` by uid 1002 made
/// every `exec --files` of uid 1001 exit 2 ("belongs to uid 1002, not to us: refused") —
/// after the values were handed out and audited — and the sticky `/dev/shm` kept uid 1001
/// from removing it. `XDG_RUNTIME_DIR=/dev/shm` was taken as the runtime directory too, where
/// `scopevault-exec` names no uid at all. Now the shared fallback gets a fresh directory with a
/// random name (`scopevault-exec-UID-XXXXXX`, made 0700 by one `mkdir`, which fails on any name
/// that exists), an `XDG_RUNTIME_DIR` that is not the user's own or that others may write is
/// passed over (with a warning), and a refusal left (a link where the private directory
/// goes) comes before the fetch: nothing handed out.
#[test]
fn regression_another_uid_cannot_take_the_files_directory_of_exec_first() {
    use crate::common::users;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    let ids = users::ensure_user(users::OTHER_USER)
        .and_then(|runner| users::ensure_user("scopevault-t3").map(|other| (runner, other)));
    let ((uid, gid), (other, other_gid)) = match ids {
        Ok(ids) => ids,
        Err(why) => return crate::common::skip::skip(&why),
    };
    let shm = Path::new("/dev/shm");
    let tmpfs = Command::new("stat")
        .args(["-f", "-c", "%T", "/dev/shm"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "tmpfs");
    if !tmpfs {
        return crate::common::skip::skip("/dev/shm is not a tmpfs here");
    }
    assert!(
        !Path::new(&format!("/run/user/{uid}")).exists(),
        "the test user has no /run/user directory: /dev/shm is its fallback"
    );
    // The places the other user takes first, removed again whatever happens.
    let squatted = [
        shm.join(format!("scopevault-exec-{uid}")),
        shm.join("scopevault-exec"),
    ];
    struct Remove(Vec<std::path::PathBuf>);
    impl Drop for Remove {
        fn drop(&mut self) {
            for p in &self.0 {
                let _ = std::fs::remove_dir_all(p);
            }
        }
    }
    let private_xdg = shm.join(format!("scopevault-test-xdg-{}", std::process::id()));
    let mut cleanup = squatted.to_vec();
    cleanup.push(private_xdg.clone());
    let _cleanup = Remove(cleanup);
    for p in &squatted {
        let _ = std::fs::remove_dir_all(p);
        let made = Command::new("mkdir")
            .args(["-m", "755"])
            .arg(p)
            .uid(other)
            .gid(other_gid)
            .status()
            .unwrap();
        assert!(made.success(), "uid {other} makes {}", p.display());
    }

    // The test user runs checkout-flow.
    let dir = tempdir();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let id = daemon::setup_vault(dir.path());
    let example = daemon::example_policy();
    let policy = example.replacen(
        "runners = { users = [\"checkpoint\", \"root\"], groups = [] }",
        &format!(
            "runners = {{ users = [\"{}\"], groups = [] }}",
            users::OTHER_USER
        ),
        1,
    );
    assert_ne!(
        policy, example,
        "examples/policy.toml changed checkout-flow"
    );
    let file = dir.path().join("runner.toml");
    std::fs::write(&file, policy).unwrap();
    let idarg = id.to_str().unwrap();
    daemon::ok(
        dir.path(),
        &[
            "--identity-file",
            idarg,
            "policy",
            "apply",
            file.to_str().unwrap(),
        ],
        None,
    );
    let d = Daemon::start(dir.path(), &["--identity-file", idarg]);
    let exe = users::shared_binary(&dir.path().join("shared"));
    std::fs::set_permissions(
        d.socket.parent().unwrap(),
        std::fs::Permissions::from_mode(0o711),
    )
    .unwrap();
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let fetches = || {
        d.audit_text()
            .lines()
            .filter(|l| {
                l.contains(&format!("\"uid\":{uid},"))
                    && l.contains("\"op\":\"fetch\"")
                    && l.contains("\"decision\":\"allow\"")
            })
            .count()
    };
    let exec_files = |xdg: Option<&Path>| {
        let mut c = Command::new(&exe);
        c.arg("--socket")
            .arg(&d.socket)
            .args(["exec", "--files", "--task", "checkout-flow", "--", "sh", "-c"])
            .arg("echo \"$SCOPEVAULT_CREDENTIALS_DIRECTORY\"; cat \"$SCOPEVAULT_CREDENTIALS_DIRECTORY/shop-buyer/username\"")
            .env_clear()
            .env("HOME", "/")
            .env("PATH", "/usr/bin:/bin")
            .current_dir("/")
            .uid(uid)
            .gid(gid)
            .stdin(Stdio::null());
        if let Some(x) = xdg {
            c.env("XDG_RUNTIME_DIR", x);
        }
        c.output().unwrap()
    };
    let text = |o: &std::process::Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };

    // No XDG_RUNTIME_DIR, then one that everybody may write: both fall back to /dev/shm,
    // past what the other user made there.
    for xdg in [None, Some(shm)] {
        let before = fetches();
        let out = exec_files(xdg);
        assert!(
            out.status.success(),
            "XDG_RUNTIME_DIR {xdg:?}: {}",
            text(&out)
        );
        assert_eq!(fetches() - before, 1);
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<&str> = stdout.lines().collect();
        let used = Path::new(lines[0]);
        assert_eq!(used.parent(), Some(shm), "{stdout}");
        let name = used.file_name().unwrap().to_string_lossy().into_owned();
        assert!(
            name.starts_with(&format!("scopevault-exec-{uid}-")),
            "{name}"
        );
        assert_eq!(lines[1], "buyer");
        assert!(!used.exists(), "removed after the command");
        if xdg.is_some() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("XDG_RUNTIME_DIR") && err.contains("/dev/shm"),
                "{err}"
            );
        }
    }
    for p in &squatted {
        let m = std::fs::symlink_metadata(p).unwrap();
        assert_eq!(m.uid(), other, "what the other user made is left alone");
    }

    // A private XDG_RUNTIME_DIR on a tmpfs whose `scopevault-exec` is a link: refused, before
    // anything is fetched.
    std::fs::create_dir(&private_xdg).unwrap();
    std::os::unix::fs::symlink("/tmp", private_xdg.join("scopevault-exec")).unwrap();
    std::os::unix::fs::lchown(&private_xdg, Some(uid), Some(gid)).unwrap();
    std::os::unix::fs::lchown(private_xdg.join("scopevault-exec"), Some(uid), Some(gid)).unwrap();
    std::fs::set_permissions(&private_xdg, std::fs::Permissions::from_mode(0o700)).unwrap();
    let before = fetches();
    let out = exec_files(Some(&private_xdg));
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("scopevault-exec") && text(&out).contains("nothing was fetched"),
        "{}",
        text(&out)
    );
    assert_eq!(fetches(), before, "a hand-out for a command that never ran");
    daemon::assert_no_secret(&text(&out), "exec's output");
}

/// Found by attacking the runner side from operations.md (eighteenth pass), which says "If
/// `exec` is killed (SIGKILL), the next `exec` of the same user removes the directory it
/// left": only a later `exec --files` removed it. After a SIGKILLed `exec --files`, the next
/// plain `exec` left `CRED/FIELD` in place (the value itself where the open-files limit made
/// the entries files). Every `exec` now removes the directories its uid's killed `exec`s left.
#[test]
fn regression_a_plain_exec_removes_the_directory_a_killed_exec_files_left() {
    // As root, a user no other test runs `exec` as, with no XDG_RUNTIME_DIR (the fallback in
    // /dev/shm, as in the report); without root, in an XDG_RUNTIME_DIR of its own.
    let runner = KilledExecRunner::start("scopevault-t3", false);
    let report = runner.out.join("report.txt");
    let script = format!(
        "{{ echo $$; echo \"$SCOPEVAULT_CREDENTIALS_DIRECTORY\"; }} > {rep}.tmp; mv {rep}.tmp {rep}; exec sleep 60",
        rep = report.display()
    );
    let mut exec = runner
        .command(&[
            "exec",
            "--task",
            "checkout-flow",
            "--files",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the child's report", || report.exists());
    let r = std::fs::read_to_string(&report).unwrap();
    let (child, creds_dir) = r.trim().split_once('\n').unwrap();
    let creds_dir = std::path::PathBuf::from(creds_dir);
    Command::new("kill")
        .args(["-KILL", &exec.id().to_string(), child])
        .status()
        .unwrap();
    let _ = exec.wait();
    assert!(
        creds_dir.join("shop-buyer").exists(),
        "left behind by the killed exec"
    );

    let out = runner
        .command(&["exec", "--task", "checkout-flow", "--", "true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !creds_dir.exists(),
        "the plain exec removed {}",
        creds_dir.display()
    );
}

/// Removes the paths it holds when dropped, whatever the test did.
struct RemoveAll(Vec<std::path::PathBuf>);

impl Drop for RemoveAll {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Found by attacking this pass's fixes (eighteenth pass). Another uid kept a killed
/// `exec`'s directory (its password file in it) from ever being removed: it made `NAME.lock`
/// beside it in /dev/shm and held a `flock` on it, which clean-up took for an older `exec`'s
/// live lock without asking whose file it was. And clean-up removed a directory `exec` never
/// made: another uid renamed a mode-1777 directory of the runner's (holding files of the
/// runner and of a third user) to `/dev/shm/scopevault-exec-UID-x`, and the runner's next
/// `exec` deleted it and both files. Now in /dev/shm no `NAME.lock` counts (no older `exec`
/// made its directories there; elsewhere only a regular file of the uid's own does), and only
/// a directory that looks exactly like `exec`'s is removed: the uid's, mode 0700, named with
/// the random suffix `exec` gives, holding only `CRED/` directories of the uid's with its
/// links and files in them. Since the twenty-fifth pass: the uid's, named so, that no other
/// user may write, whatever is in it (another uid cannot rename its own directory to one of
/// the uid's, and cannot rename the uid's in the sticky /dev/shm).
#[test]
fn regression_clean_up_removes_only_what_exec_made_whatever_another_uid_holds_or_plants() {
    use crate::common::users;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !users::is_root() {
        return crate::common::skip::skip("not root: no second uid to hold a lock or plant");
    }
    let (other, other_gid) = users::ensure_user("scopevault-t3").unwrap_or_else(|e| panic!("{e}"));
    // A user no other test runs `exec` as, with no XDG_RUNTIME_DIR: the fallback in /dev/shm.
    let runner = KilledExecRunner::start("scopevault-t4", false);
    let (uid, gid) = runner.ids.unwrap();
    let report = runner.out.join("report.txt");
    let script = format!(
        "{{ echo $$; echo \"$SCOPEVAULT_CREDENTIALS_DIRECTORY\"; }} > {rep}.tmp; mv {rep}.tmp {rep}; exec sleep 60",
        rep = report.display()
    );
    let mut exec = runner
        .command(&[
            "exec",
            "--task",
            "checkout-flow",
            "--files",
            "--",
            "sh",
            "-c",
            &script,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the child's report", || report.exists());
    let r = std::fs::read_to_string(&report).unwrap();
    let (child, creds_dir) = r.trim().split_once('\n').unwrap();
    let creds_dir = std::path::PathBuf::from(creds_dir);
    Command::new("kill")
        .args(["-KILL", &exec.id().to_string(), child])
        .status()
        .unwrap();
    let _ = exec.wait();
    assert!(
        creds_dir.join("shop-buyer").exists(),
        "left by the killed exec"
    );

    // The other uid holds a lock on a NAME.lock of its own beside it.
    let lock = std::path::PathBuf::from(format!("{}.lock", creds_dir.display()));
    let shm = Path::new("/dev/shm");
    let planted = [
        shm.join(format!("scopevault-exec-{uid}-Pl4nt1")),
        shm.join(format!("scopevault-exec-{uid}-Pl4nt2")),
        shm.join(format!("scopevault-exec-{uid}-x")),
    ];
    let mut cleanup = planted.to_vec();
    cleanup.push(creds_dir.clone());
    let _cleanup = RemoveAll(cleanup);
    let _lock_file = RemoveAll(vec![lock.clone()]);
    let mut holder = Command::new("flock")
        .arg(&lock)
        .args(["sleep", "60"])
        .uid(other)
        .gid(other_gid)
        .current_dir("/")
        .spawn()
        .unwrap();
    wait_for("the other uid's lock", || {
        lock.exists()
            && !Command::new("flock")
                .arg("-n")
                .arg(&lock)
                .arg("true")
                .status()
                .unwrap()
                .success()
    });

    // Directories of the runner's under names clean-up looks at, which exec did not make.
    let make = |p: &Path, mode: u32, owner: (u32, u32)| {
        std::fs::create_dir(p).unwrap();
        std::os::unix::fs::chown(p, Some(owner.0), Some(owner.1)).unwrap();
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    let file = |p: &Path, owner: (u32, u32)| {
        std::fs::write(p, "data").unwrap();
        std::os::unix::fs::chown(p, Some(owner.0), Some(owner.1)).unwrap();
    };
    // A shared drop directory (1777) holding the runner's file and another user's.
    make(&planted[0], 0o1777, (uid, gid));
    file(&planted[0].join("mine"), (uid, gid));
    file(&planted[0].join("theirs"), (other, other_gid));
    // 0700, holding another user's file: a directory of exec's name that only the runner can
    // write is the runner's to remove, whatever is in it (twenty-fifth pass: a killed exec's
    // directory is removed whatever its command made in it); the runner could remove it itself.
    make(&planted[1], 0o700, (uid, gid));
    make(&planted[1].join("cred"), 0o700, (uid, gid));
    file(&planted[1].join("cred/theirs"), (other, other_gid));
    // 0700, a name exec does not give.
    make(&planted[2], 0o700, (uid, gid));

    let out = runner
        .command(&["exec", "--task", "checkout-flow", "--", "true"])
        .output()
        .unwrap();
    let _ = holder.kill();
    let _ = holder.wait();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !creds_dir.exists(),
        "the killed exec's directory is removed whatever lock another uid holds beside it"
    );
    for p in [
        planted[0].join("mine"),
        planted[0].join("theirs"),
        planted[2].clone(),
    ] {
        assert!(p.exists(), "{} was removed", p.display());
    }
    assert!(
        !planted[1].exists(),
        "{} is left: a directory of exec's name only the runner can write",
        planted[1].display()
    );
}

/// Found by attacking this pass's fixes (eighteenth pass): an `XDG_RUNTIME_DIR` that is the
/// user's own 0700 directory inside a directory others may write (`/dev/shm/n-x/rt`, n-x mode
/// 0777) was taken; another user swapped it for a directory of theirs while `exec --files`
/// ran: the entries made by path after the check failed after the hand-out ("No such file or
/// directory"), and `run-*` directories were left in the other user's directory. Such a
/// runtime directory is now passed over with a warning, as one that others may write is: no
/// directory above it may be writable by others unless sticky, nor belong to another user.
#[test]
fn regression_an_xdg_runtime_dir_inside_a_directory_others_may_write_is_passed_over() {
    use std::os::unix::fs::PermissionsExt;
    let runner = KilledExecRunner::start("scopevault-t5", false);
    let open = Path::new("/dev/shm").join(format!("scopevault-test-open-{}", std::process::id()));
    let _cleanup = RemoveAll(vec![open.clone()]);
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let rt = open.join("rt");
    std::fs::create_dir(&rt).unwrap();
    if let Some((uid, gid)) = runner.ids {
        std::os::unix::fs::chown(&rt, Some(uid), Some(gid)).unwrap();
    }
    std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = runner
        .command(&[
            "exec",
            "--files",
            "--task",
            "checkout-flow",
            "--",
            "sh",
            "-c",
            "echo \"$SCOPEVAULT_CREDENTIALS_DIRECTORY\"",
        ])
        .env("XDG_RUNTIME_DIR", &rt)
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(
        !stdout.trim().starts_with(&*open.to_string_lossy()),
        "the directory was made under {}: {stdout}",
        open.display()
    );
    assert!(
        stderr.contains("XDG_RUNTIME_DIR") && stderr.contains("writable by other users"),
        "{stderr}"
    );
    assert!(!rt.join("scopevault-exec").exists());
}

/// Make `levels` directories named `d`, each in the one before, under `top`, and write `text`
/// to `f.txt` in the deepest. Made through descriptors: the whole path is longer than
/// `PATH_MAX`.
fn deep_tree(top: &Path, levels: usize, text: &str) {
    use rustix::fs::{mkdirat, openat, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    std::fs::create_dir_all(top).unwrap();
    let mut fd = openat(rustix::fs::CWD, top, flags, Mode::empty()).unwrap();
    for _ in 0..levels {
        mkdirat(&fd, "d", Mode::from_raw_mode(0o755)).unwrap();
        fd = openat(&fd, "d", flags, Mode::empty()).unwrap();
    }
    let f = openat(
        &fd,
        "f.txt",
        OFlags::WRONLY | OFlags::CREATE | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o644),
    )
    .unwrap();
    std::io::Write::write_all(&mut std::fs::File::from(f), text.as_bytes()).unwrap();
}

/// What `f.txt` at the bottom of a [`deep_tree`] of `levels` holds.
fn read_deep(top: &Path, levels: usize) -> String {
    use rustix::fs::{openat, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut fd = openat(rustix::fs::CWD, top, flags, Mode::empty()).unwrap();
    for _ in 0..levels {
        fd = openat(&fd, "d", flags, Mode::empty()).unwrap();
    }
    let f = openat(
        &fd,
        "f.txt",
        OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .unwrap();
    std::io::read_to_string(std::fs::File::from(f)).unwrap()
}

/// Remove a [`deep_tree`] from the top down, one level at a time (the temporary directory's
/// own removal recurses once per level).
fn remove_deep_tree(top: &Path) {
    use rustix::fs::{openat, renameat, unlinkat, AtFlags, Mode, OFlags};
    let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let top_fd = openat(rustix::fs::CWD, top, flags, Mode::empty()).unwrap();
    while let Ok(d) = openat(&top_fd, "d", flags, Mode::empty()) {
        let _ = unlinkat(&d, "f.txt", AtFlags::empty());
        let more = renameat(&d, "d", &top_fd, "next").is_ok();
        unlinkat(&top_fd, "d", AtFlags::REMOVEDIR).unwrap();
        if !more {
            break;
        }
        renameat(&top_fd, "next", &top_fd, "d").unwrap();
    }
}

/// Found by the twenty-fourth pass's attacker of scale and complexity: a directory 10,000
/// levels deep under a `redact` path or an `exec --artifacts` directory overflowed the stack
/// of the recursive walk: an abort (exit 134), the secret left in the files, no `scrub_report`,
/// and `exec` losing its command's exit code. The walk keeps its own stack now, and a
/// directory more than `MAX_DEPTH` levels down is reported as not scrubbed: `redact` exits 1,
/// `exec` keeps the command's code, the report is audited, and a tree `MAX_DEPTH` deep is
/// scrubbed to its bottom.
#[test]
fn regression_a_tree_ten_thousand_directories_deep_is_reported_not_a_crash() {
    const DEEP: usize = 10_000;
    let max = scopevault::redact::MAX_DEPTH;
    let dir = tempdir();
    let d = start(dir.path());
    let art = dir.path().join("art");
    let (deep, ok) = (art.join("deep"), art.join("ok"));
    deep_tree(&deep, DEEP, &format!("pass {PW} end\n"));
    deep_tree(&ok, max, &format!("pass {PW} end\n"));
    std::fs::write(art.join("top.log"), format!("login {PW}\n")).unwrap();

    let out = sv(
        &d,
        &[
            "redact",
            "--task",
            "checkout-flow",
            ok.to_str().unwrap(),
            deep.to_str().unwrap(),
            art.join("top.log").to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("more than {max} directories deep")),
        "{stderr}"
    );
    assert!(!stderr.contains(PW));
    assert_eq!(
        read_deep(&ok, max),
        "pass [redacted:shop-buyer.password] end\n",
        "a tree MAX_DEPTH deep is scrubbed to its bottom"
    );
    assert_eq!(
        std::fs::read_to_string(art.join("top.log")).unwrap(),
        "login [redacted:shop-buyer.password]\n"
    );
    let recs = scrub_records(&d);
    assert_eq!(recs.len(), 1, "{recs:?}");
    assert_eq!(recs[0]["scrub"]["failed"], 1, "{recs:?}");
    assert_eq!(recs[0]["scrub"]["rewritten"], 2, "{recs:?}");

    // `exec --artifacts` over the same tree: the command's exit code, the error on stderr,
    // the report audited.
    let out = sv(
        &d,
        &[
            "exec",
            "--task",
            "checkout-flow",
            "--artifacts",
            deep.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            "exit 0",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "the command's code: {stderr}");
    assert!(
        stderr.contains(&format!("more than {max} directories deep")),
        "{stderr}"
    );
    let recs = scrub_records(&d);
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert_eq!(recs[1]["scrub"]["failed"], 1, "{recs:?}");
    remove_deep_tree(&deep);
    remove_deep_tree(&ok);
}

/// Twenty-fifth pass, found by the twenty-fourth pass's review: `lint` and every error message
/// defused GitHub Actions' workflow commands, but the summary of `redact` and `exec
/// --artifacts` printed the names of the files a check wrote as they were, so a screenshot
/// named `##[add-mask]…` or a link named `::error::…` wrote a command into a CI log that
/// holds stderr. The names go through the one escaper of text from elsewhere.
#[test]
fn regression_a_file_name_cannot_write_a_workflow_command_into_the_summary() {
    let dir = tempdir();
    let d = start(dir.path());
    let art = dir.path().join("artifacts");
    std::fs::create_dir(&art).unwrap();
    std::fs::write(
        art.join("##[add-mask]shot.png"),
        b"\x89PNG\r\n\x1a\n\0\0clean",
    )
    .unwrap();
    std::os::unix::fs::symlink("elsewhere", art.join("##[error]link")).unwrap();
    let art_s = art.to_str().unwrap();
    let check = |stderr: &str| {
        for line in stderr.lines() {
            assert!(
                !line.contains("##[") && !line.trim_start().starts_with("::"),
                "a workflow command in: {stderr}"
            );
        }
        assert!(
            stderr.contains("##\\u{5b}add-mask]shot.png"),
            "the name is shown, defused: {stderr}"
        );
        assert!(stderr.contains("##\\u{5b}error]link"), "{stderr}");
    };
    let out = sv(&d, &["redact", "--task", "checkout-flow", art_s])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    check(&stderr);
    let out = sv(
        &d,
        &[
            "exec",
            "--task",
            "checkout-flow",
            "--artifacts",
            art_s,
            "--",
            "true",
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    check(&stderr);
}

/// What a file is now: its bytes and its inode (a rewrite by rename makes a new inode).
fn content_and_inode(f: &Path) -> (Vec<u8>, u64) {
    (
        std::fs::read(f).unwrap_or_else(|e| panic!("{}: {e}", f.display())),
        std::fs::metadata(f).unwrap().ino(),
    )
}

/// Found by the attacker of races (twenty-fifth pass): the path given to the scrub (`redact
/// PATH`, `exec --artifacts DIR`) was resolved by the kernel in one go, following any link on
/// it, so the check's runner, which owns its artefact directory, replaced it (or a directory
/// above it) with a link to a root-only directory or file, and root's scrub rewrote the files
/// there or, with `--artifacts-binary drop`, deleted them, the vault included. A link on the
/// path owned by another user than root and the caller is now refused, naming it and its
/// owner, with exit 1 and nothing outside the tree touched; a link of root (the caller here)
/// is still followed, as `find -H` does, and the summary names the path scrubbed.
#[test]
fn regression_a_link_planted_by_another_user_on_the_scrubbed_path_is_not_followed() {
    use crate::common::users;
    if !users::is_root() {
        skip("needs root to own the decoy and a second uid to own the planted link");
        return;
    }
    let (runner, _) = users::ensure_user(users::OTHER_USER).unwrap_or_else(|e| panic!("{e}"));
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let d = start(dir.path());
    // The root-only directory the runner points its artefact path at: a binary file (a stand-in
    // for the vault) and a 0600 text file holding the password.
    let decoy = dir.path().join("root-only");
    std::fs::create_dir(&decoy).unwrap();
    std::fs::set_permissions(&decoy, std::fs::Permissions::from_mode(0o700)).unwrap();
    let vault = decoy.join("vault.scopevault");
    std::fs::write(&vault, b"\0\0\0\x01not text, the vault's stand-in").unwrap();
    let text = decoy.join("secrets.txt");
    std::fs::write(&text, format!("password {PW}\n")).unwrap();
    for f in [&vault, &text] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let before = [&vault, &text].map(|f| content_and_inode(f));
    let untouched = || {
        assert_eq!(
            [&vault, &text].map(|f| content_and_inode(f)),
            before,
            "a file outside the tree was changed"
        );
    };
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::os::unix::fs::chown(&ws, Some(runner), None).unwrap();
    let art = ws.join("art");
    let owned_by_runner = format!("owned by uid {runner}, another user than root and this one");

    // `redact --artifacts-binary drop WS/art`, art the runner's link to the root-only dir, and
    // `redact` of the runner's link straight to the vault file.
    for to in [&decoy, &vault] {
        std::os::unix::fs::symlink(to, &art).unwrap();
        std::os::unix::fs::lchown(&art, Some(runner), None).unwrap();
        let out = sv(
            &d,
            &[
                "redact",
                "--task",
                "checkout-flow",
                "--artifacts-binary",
                "drop",
                art.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{}: it is a symbolic link, {owned_by_runner}",
                art.display()
            )),
            "{stderr}"
        );
        assert!(stderr.contains("0 files scanned"), "{stderr}");
        untouched();
        std::fs::remove_file(&art).unwrap();
    }

    // A directory above the path given swapped for the runner's link: `ws2 -> dir`, so that
    // `ws2/root-only` is the decoy.
    let ws2 = dir.path().join("ws2");
    std::os::unix::fs::symlink(dir.path(), &ws2).unwrap();
    std::os::unix::fs::lchown(&ws2, Some(runner), None).unwrap();
    let above = ws2.join("root-only");
    let out = sv(
        &d,
        &[
            "redact",
            "--task",
            "checkout-flow",
            "--artifacts-binary",
            "drop",
            above.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: {} on its path is a symbolic link, {owned_by_runner}",
            above.display(),
            ws2.display()
        )),
        "{stderr}"
    );
    untouched();

    // `exec --artifacts WS/art --artifacts-binary drop`: the command replaces its artefact
    // directory with its own link to the vault file (then to the directory); the exit code
    // stays the command's, and the refusal is on stderr.
    for to in [&vault, &decoy] {
        std::fs::create_dir(&art).unwrap();
        let out = sv(
            &d,
            &[
                "exec",
                "--task",
                "checkout-flow",
                "--artifacts",
                art.to_str().unwrap(),
                "--artifacts-binary",
                "drop",
                "--",
                "sh",
                "-c",
                r#"rmdir "$1" && ln -s "$2" "$1" && chown -h "$3" "$1" && exit 4"#,
                "sh",
                art.to_str().unwrap(),
                to.to_str().unwrap(),
                &runner.to_string(),
            ],
        )
        .output()
        .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{stderr}");
        assert!(
            stderr.contains(&format!(
                "{}: it is a symbolic link, {owned_by_runner}",
                art.display()
            )),
            "{stderr}"
        );
        untouched();
        std::fs::remove_file(&art).unwrap();
    }

    // A link of root (the caller), in a directory only root may write, is still followed, as
    // `find -H` does, and the summary names the directory scrubbed: here the decoy, which the
    // operator chose. (In the runner's directory it is refused: see
    // regression_a_root_link_in_a_directory_another_user_may_write_is_not_followed.)
    std::os::unix::fs::chown(&ws, Some(0), None).unwrap();
    std::os::unix::fs::symlink(&decoy, &art).unwrap();
    let out = sv(
        &d,
        &["redact", "--task", "checkout-flow", art.to_str().unwrap()],
    )
    .output()
    .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "scopevault: artefacts: {} is a symbolic link: scrubbed {}",
            art.display(),
            decoy.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("2 files scanned, 1 rewritten"), "{stderr}");
    assert!(
        stderr.contains(&format!("{}", vault.display())),
        "the binary file is named by its real path: {stderr}"
    );
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "password [redacted:shop-buyer.password]\n"
    );
}

/// The re-attacker of this pass's fixes (twenty-fifth pass): with `fs.protected_hardlinks=0`
/// the runner hard-linked a symbolic link of root's (`ln -P /srv/latest ws/art`) into its own
/// directory; the entry is owned by root, so root's `redact --artifacts-binary drop ws/art`
/// followed it and dropped and rewrote files outside the tree, exit 0. The state the hard link
/// leaves, a root-owned link in a directory the runner owns, is made here with `ln -s` as root
/// and the directory given to the runner afterwards. The link is now refused, naming it, its
/// directory and the directory's owner, exit 1, nothing outside the tree touched; the same link
/// in a directory only root may write is still followed.
#[test]
fn regression_a_root_link_in_a_directory_another_user_may_write_is_not_followed() {
    use crate::common::users;
    if !users::is_root() {
        skip("needs root to own the link and the decoy and a second uid to own the directory");
        return;
    }
    let (runner, _) = users::ensure_user(users::OTHER_USER).unwrap_or_else(|e| panic!("{e}"));
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let d = start(dir.path());
    let decoy = dir.path().join("root-only");
    std::fs::create_dir(&decoy).unwrap();
    std::fs::set_permissions(&decoy, std::fs::Permissions::from_mode(0o700)).unwrap();
    let vault = decoy.join("vault.scopevault");
    std::fs::write(&vault, b"\0\0\0\x01not text, the vault's stand-in").unwrap();
    let text = decoy.join("secrets.txt");
    std::fs::write(&text, format!("password {PW}\n")).unwrap();
    for f in [&vault, &text] {
        std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let before = [&vault, &text].map(|f| content_and_inode(f));
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(0o755)).unwrap();
    let art = ws.join("art");
    std::os::unix::fs::symlink(&decoy, &art).unwrap();
    std::os::unix::fs::chown(&ws, Some(runner), None).unwrap();
    assert_eq!(std::fs::symlink_metadata(&art).unwrap().uid(), 0);
    let redact = || {
        sv(
            &d,
            &[
                "redact",
                "--task",
                "checkout-flow",
                "--artifacts-binary",
                "drop",
                art.to_str().unwrap(),
            ],
        )
        .output()
        .unwrap()
    };
    let out = redact();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: it is a symbolic link in {}, a directory owned by uid {runner}, another user than root and this one (uid 0)",
            art.display(),
            ws.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("0 files scanned"), "{stderr}");
    assert_eq!(
        [&vault, &text].map(|f| content_and_inode(f)),
        before,
        "a file outside the tree was changed"
    );

    // The same link in a directory only root may write: followed, as before.
    std::os::unix::fs::chown(&ws, Some(0), None).unwrap();
    let out = redact();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{} is a symbolic link: scrubbed {}",
            art.display(),
            decoy.display()
        )),
        "{stderr}"
    );
    assert!(!vault.exists(), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(&text).unwrap(),
        "password [redacted:shop-buyer.password]\n"
    );
}

/// Part of the thirty-first pass (a gap the thirtieth pass left): Python's `repr` escapes every character
/// `str.isprintable()` says is not printable in its Unicode version, which scopevault
/// approximated, so a password holding a private-use character (U+E000, U+F0000), an
/// unassigned one (U+0378) or one assigned after the running Python's Unicode (U+1FAE9,
/// Unicode 16.0) was printed by a check's `print(repr(password))` as
/// `'Pk\ue000q\U000f0000r\u0378s\U0001fae9t9'` under `exec`, unmasked, and a file holding
/// that stayed after `redact`. Run here by the real python3.
#[test]
fn regression_python_repr_of_private_use_and_unassigned_characters_is_masked_and_scrubbed() {
    const VALUE: &str = "Pk\u{e000}q\u{f0000}r\u{378}s\u{1fae9}t9";
    const WRITER: &str =
        "import os; print(repr(os.environ['SCOPEVAULT_SHOP_BUYER_PASSWORD']), flush=True)";
    if Command::new("python3").arg("--version").output().is_err() {
        skip("python3 is not installed");
        return;
    }
    let dir = tempdir();
    let d = daemon::start_with_buyer(dir.path(), VALUE);
    let run = |mask: bool| {
        let mut args = vec!["exec", "--task", "checkout-flow"];
        if !mask {
            args.push("--no-mask");
        }
        args.extend(["--", "python3", "-c", WRITER]);
        let out = sv(&d, &args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    // Unmasked: what Python writes (its own escapes, not the value).
    let written = run(false);
    assert!(
        written.contains("\\ue000") && written.contains("\\U000f0000") && !written.contains(VALUE),
        "python3 wrote another repr"
    );
    assert_eq!(run(true), "'[redacted:shop-buyer.password]'\n");
    let art = dir.path().join("artifacts");
    std::fs::create_dir(&art).unwrap();
    let log = art.join("check.log");
    std::fs::write(&log, format!("login as buyer with {written}")).unwrap();
    let out = sv(
        &d,
        &["redact", "--task", "checkout-flow", art.to_str().unwrap()],
    )
    .output()
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "login as buyer with '[redacted:shop-buyer.password]'\n"
    );
}
