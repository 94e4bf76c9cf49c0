//! A uid that asks for big answers and never reads them (twenty-third pass): the daemon held
//! every answer it decided until the read timeout, 64 connections × 16 pipelined answers of up
//! to 16 MiB each per uid. Its answers not yet written are bounded now, per uid and in total
//! (`serve --max-queued-mib-per-uid`, `--max-queued-mib`); past the bound the uid's requests
//! wait undecided in their sockets.

use crate::common::daemon;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon::{ok, tempdir, Daemon};

/// Child modes: the test binary runs itself as another uid (like tests/it/daemon/hostile.rs).
const SLOW_ENV: &str = "SCOPEVAULT_TEST_SLOW_READER_SOCKET";
const PROBE_ENV: &str = "SCOPEVAULT_TEST_SLOW_PROBE_SOCKET";
const OUT_ENV: &str = "SCOPEVAULT_TEST_SLOW_OUT";

/// Connections of the slow reader (its whole quota) and requests pipelined on each.
const CONNS: usize = 64;
const PIPELINED: usize = 8;
/// Secret fields of the big credential, and the bytes of each: an answer of about 240 KB, so
/// that the slow reader's 512 answers are about 123 MB.
const FIELDS: [&str; 4] = ["secret", "token", "api_key", "password"];
const FIELD_BYTES: usize = 60_000;
const FETCH: &str = "{\"v\":1,\"op\":\"fetch\",\"task\":\"bulk\"}\n";

fn say(what: &str) {
    let out = std::env::var(OUT_ENV).unwrap();
    let mut f = std::fs::OpenOptions::new().append(true).open(out).unwrap();
    f.write_all(what.as_bytes()).unwrap();
}

/// The slow reader: asks on every connection, says so, reads nothing until told (its stdin),
/// then reads every answer and says how many were handed out.
fn child_slow_reader(socket: &str) {
    scopevault::sys::raise_open_files_limit();
    let mut conns = Vec::new();
    for _ in 0..CONNS {
        let mut s = UnixStream::connect(socket).unwrap();
        s.write_all(FETCH.repeat(PIPELINED).as_bytes()).unwrap();
        conns.push(s);
    }
    say("SENT\n");
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    let (mut handed, mut other) = (0, Vec::new());
    for s in conns {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut r = BufReader::new(s);
        for _ in 0..PIPELINED {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v["ok"] == true && v["credentials"][0]["secrets"]["secret"].is_string() {
                handed += 1;
            } else {
                other.push(v.to_string());
            }
        }
    }
    say(&format!("READ {handed} {}\n", other.join(" ")));
}

fn child_probe(socket: &str) {
    let mut s = UnixStream::connect(socket).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let v = daemon::roundtrip(&mut s, FETCH.trim_end()).unwrap();
    let handed = v["ok"] == true && v["credentials"][0]["secrets"]["secret"].is_string();
    say(&format!("PROBE {handed}\n"));
}

/// A kB figure of /proc/PID/status (`VmRSS`, `VmHWM`), in bytes.
fn status_bytes(pid: u32, key: &str) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(key))
        .unwrap_or_else(|| panic!("no {key} in /proc/{pid}/status"));
    let kb: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .unwrap();
    kb * 1024
}

/// What the children said so far.
fn said(out: &Path) -> String {
    std::fs::read_to_string(out).unwrap_or_default()
}

/// Wait until `what` holds, or panic after a minute with `why` (a wait for an event, not a
/// timed assertion: the event must come).
fn wait_for(why: &str, mut what: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !what() {
        assert!(Instant::now() < deadline, "never: {why}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn hand_outs_to(audit: &str, uid: u32) -> usize {
    audit
        .lines()
        .filter(|l| l.contains(&format!("\"uid\":{uid},")) && l.contains("\"decision\":\"allow\""))
        .count()
}

/// Regression (twenty-third pass, found by the twenty-second pass's review): uid 65534 opens
/// its quota of 64 connections, pipelines 8 fetches of a 240 KB credential on each and reads
/// nothing. The daemon's peak RSS (VmHWM, from /proc) stays within 40 MiB of what it was
/// before, not the 123 MB of answers asked for (before the fix, they were all decided and
/// held); another uid (65533) is handed its credential meanwhile; once the slow reader reads,
/// every one of its 512 requests is answered with the credential, the audit log holds exactly
/// one `allow` for each, and it verifies.
#[test]
fn a_uid_that_does_not_read_its_big_answers_holds_a_bounded_backlog() {
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if let Ok(s) = std::env::var(SLOW_ENV) {
        return child_slow_reader(&s);
    }
    if let Ok(s) = std::env::var(PROBE_ENV) {
        return child_probe(&s);
    }
    if !daemon::is_root() {
        return crate::common::skip::skip("needs root to act as two other uids");
    }
    let dir = tempdir();
    let id = dir.path().join("identity.txt");
    let id_s = id.to_str().unwrap();
    ok(dir.path(), &["init", "--identity-out", id_s], None);
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\n\n[settings]\nenforce = \"warn\"\n\n\
         [credentials.big]\nkind = \"generic\"\nscopes = [\"bulk:read\"]\nowner = \"qa@example.com\"\n\n\
         [tasks.bulk]\nneeds = [\"bulk:read\"]\ncredentials = [\"big\"]\n\
         runners = { users = [\"65534\", \"65533\"], groups = [] }\n",
    )
    .unwrap();
    ok(
        dir.path(),
        &[
            "--identity-file",
            id_s,
            "policy",
            "apply",
            policy.to_str().unwrap(),
        ],
        None,
    );
    let mut args = vec![
        "--identity-file".to_owned(),
        id_s.to_owned(),
        "cred".to_owned(),
        "set".to_owned(),
        "big".to_owned(),
    ];
    for (i, field) in FIELDS.iter().enumerate() {
        let f = dir.path().join(format!("field-{i}"));
        std::fs::write(&f, "s".repeat(FIELD_BYTES)).unwrap();
        args.push("--secret-file".to_owned());
        args.push(format!("{field}={}", f.display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(dir.path(), &args, None);
    let d = Daemon::start(
        dir.path(),
        &[
            "--identity-file",
            id_s,
            "--read-timeout",
            "600",
            "--idle-timeout",
            "600",
            "--max-queued-mib-per-uid",
            "4",
            "--max-queued-mib",
            "16",
        ],
    );
    for p in [dir.path(), d.socket.parent().unwrap()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out_dir = dir.path().join("said");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = out_dir.join("said");
    std::fs::write(&out, "").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o666)).unwrap();
    let me = std::env::current_exe().unwrap();
    let name = crate::common::test_path(
        module_path!(),
        "a_uid_that_does_not_read_its_big_answers_holds_a_bounded_backlog",
    );
    let as_uid = |uid: u32, env: &str| {
        let mut c = std::process::Command::new(&me);
        c.args(["--exact", &name, "--nocapture", "--test-threads=1"])
            .env(env, &d.socket)
            .env(OUT_ENV, &out)
            .uid(uid)
            .gid(uid)
            .current_dir("/")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        c
    };
    let probe = |what: &str| {
        let st = as_uid(65533, PROBE_ENV).status().unwrap();
        assert!(st.success(), "{what}: the probe failed: {}", said(&out));
        assert!(
            said(&out).ends_with("PROBE true\n"),
            "{what}: uid 65533 was not handed its credential: {}",
            said(&out)
        );
    };
    // Warm up: the answer's path has run once before the baseline is read.
    probe("before");
    let pid = d.pid();
    let rss_before = status_bytes(pid, "VmRSS:");
    let mut slow = as_uid(65534, SLOW_ENV).spawn().unwrap();
    wait_for("the slow reader sent its requests", || {
        said(&out).contains("SENT\n")
    });
    // The daemon decides for the slow reader before it reads: at least the lines of one of
    // its connections (held within the bound, or all of them without one).
    wait_for("the slow reader's first answers were decided", || {
        hand_outs_to(&d.audit_text(), 65534) >= PIPELINED
    });
    probe("while uid 65534 does not read");
    let held = hand_outs_to(&d.audit_text(), 65534);
    // Now it reads everything.
    drop(slow.stdin.take());
    assert!(slow.wait().unwrap().success(), "{}", said(&out));
    let text = said(&out);
    let read = text
        .lines()
        .find_map(|l| l.strip_prefix("READ "))
        .unwrap_or_else(|| panic!("the slow reader said {text}"));
    let peak = status_bytes(pid, "VmHWM:");
    let grew = peak.saturating_sub(rss_before);
    eprintln!(
        "uid 65534: {held} hand-outs decided while it did not read; daemon RSS {} MiB before, peak {} MiB",
        rss_before >> 20,
        peak >> 20
    );
    assert_eq!(
        read.trim_end(),
        (CONNS * PIPELINED).to_string(),
        "every request of the slow reader is answered with the credential once it reads"
    );
    assert!(
        grew < 40 << 20,
        "the daemon's RSS grew by {} MiB while a uid did not read its answers ({} MiB asked)",
        grew >> 20,
        (CONNS * PIPELINED * FIELDS.len() * FIELD_BYTES) >> 20
    );
    let audit = d.audit_text();
    assert_eq!(
        hand_outs_to(&audit, 65534),
        CONNS * PIPELINED,
        "{audit:.2000}"
    );
    assert_eq!(hand_outs_to(&audit, 65533), 2);
    let verify = daemon::cmd(dir.path())
        .args(["audit", "verify"])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "audit verify: {}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );
}
