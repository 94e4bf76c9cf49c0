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

/// A vault whose task `bulk` (runners: uids 65534 and 65533) hands out one credential of
/// about 240 KB; returns the identity file.
fn big_vault(dir: &Path) -> std::path::PathBuf {
    let id = dir.join("identity.txt");
    let id_s = id.to_str().unwrap();
    ok(dir, &["init", "--identity-out", id_s], None);
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\n\n[settings]\nenforce = \"warn\"\n\n\
         [credentials.big]\nkind = \"generic\"\nscopes = [\"bulk:read\"]\nowner = \"qa@example.com\"\n\n\
         [tasks.bulk]\nneeds = [\"bulk:read\"]\ncredentials = [\"big\"]\n\
         runners = { users = [\"65534\", \"65533\"], groups = [] }\n",
    )
    .unwrap();
    ok(
        dir,
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
        let f = dir.join(format!("field-{i}"));
        std::fs::write(&f, "s".repeat(FIELD_BYTES)).unwrap();
        args.push("--secret-file".to_owned());
        args.push(format!("{field}={}", f.display()));
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    ok(dir, &args, None);
    id
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
    let id = big_vault(dir.path());
    let id_s = id.to_str().unwrap();
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

/// Child mode of the stop test: the held uid's hog and half-closed client.
const HOG_ENV: &str = "SCOPEVAULT_TEST_SLOW_HOG_SOCKET";

/// The hog: asks on every connection and reads nothing; then a half-closed client sends three
/// requests, shuts down its writing side and reads until the daemon closes: says how many
/// answers it got and how its read ended (`eof`, or the error). Holds its connections until
/// its stdin closes.
fn child_hog(socket: &str) {
    scopevault::sys::raise_open_files_limit();
    let mut conns = Vec::new();
    // One connection of the uid's quota of 64 is left for the half-closed client.
    for _ in 1..CONNS {
        let mut s = UnixStream::connect(socket).unwrap();
        s.write_all(FETCH.repeat(PIPELINED).as_bytes()).unwrap();
        conns.push(s);
    }
    let mut half = UnixStream::connect(socket).unwrap();
    half.write_all(FETCH.repeat(3).as_bytes()).unwrap();
    half.shutdown(std::net::Shutdown::Write).unwrap();
    say("SENT\n");
    half.set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut got = Vec::new();
    let end = match half.read_to_end(&mut got) {
        Ok(_) => "eof".to_owned(),
        Err(e) => format!("{:?}", e.kind()),
    };
    let answers = got.iter().filter(|b| **b == b'\n').count();
    say(&format!("HALF {answers} {end}\n"));
    let _ = std::io::stdin().read(&mut [0u8; 1]);
    drop(conns);
}

/// The socket, its directory and a file the children write what they saw to, open to the
/// other uids; returns that file.
fn open_to_others(dir: &Path, d: &Daemon) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    for p in [dir, d.socket.parent().unwrap()] {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).unwrap();
    }
    std::fs::set_permissions(&d.socket, std::fs::Permissions::from_mode(0o666)).unwrap();
    let out_dir = dir.join("said");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = out_dir.join("said");
    std::fs::write(&out, "").unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o666)).unwrap();
    out
}

/// This test binary, running test `test` only, as `uid` (and gid `uid`), in child mode `env`.
fn child_as(test: &str, uid: u32, env: &str, d: &Daemon, out: &Path) -> std::process::Command {
    use std::os::unix::process::CommandExt;
    let name = crate::common::test_path(module_path!(), test);
    let mut c = std::process::Command::new(std::env::current_exe().unwrap());
    c.args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(env, &d.socket)
        .env(OUT_ENV, out)
        .uid(uid)
        .gid(uid)
        .current_dir("/")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// Regression (twenty-third pass, found by the twenty-third pass's attacker of this pass's
/// fixes): uid 65534 pipelines big fetches on its 64 connections and reads nothing, so its
/// further lines are held undecided, and a half-closed client of the same uid waits for three
/// held requests. Before the fix, SIGTERM's drain decided the held lines as the first unread
/// answers timed out and freed room (hand-outs recorded after the stop began, and a stop that
/// waited for their answers too), and the half-closed client got `ECONNRESET`. Now no held line
/// is decided once the stop began: the log holds no `allow` beyond those decided before the
/// SIGTERM, the daemon exits 0 (waited for generously, not timed), and the half-closed client
/// reads the end of its (no) answers, not a reset.
#[test]
fn a_stop_decides_no_held_line_and_a_held_half_closed_client_sees_the_end() {
    const TEST: &str = "a_stop_decides_no_held_line_and_a_held_half_closed_client_sees_the_end";
    if let Ok(s) = std::env::var(HOG_ENV) {
        return child_hog(&s);
    }
    if !daemon::is_root() {
        return crate::common::skip::skip("needs root to act as another uid");
    }
    let dir = tempdir();
    let id = big_vault(dir.path());
    let d = Daemon::start(
        dir.path(),
        &[
            "--identity-file",
            id.to_str().unwrap(),
            "--read-timeout",
            "5",
            "--idle-timeout",
            "600",
            "--max-queued-mib-per-uid",
            "1",
            "--max-queued-mib",
            "64",
        ],
    );
    let out = open_to_others(dir.path(), &d);
    let mut hog = child_as(TEST, 65534, HOG_ENV, &d, &out).spawn().unwrap();
    wait_for("the hog sent its requests", || {
        said(&out).contains("SENT\n")
    });
    wait_for("the hog's first answers were decided", || {
        hand_outs_to(&d.audit_text(), 65534) >= 1
    });
    // Held: nothing more is decided for uid 65534 until its first answers time out (5 s).
    let mut before = hand_outs_to(&d.audit_text(), 65534);
    wait_for("uid 65534 is held", || {
        std::thread::sleep(Duration::from_millis(300));
        let now = hand_outs_to(&d.audit_text(), 65534);
        std::mem::replace(&mut before, now) == now
    });
    assert!(
        before < CONNS * PIPELINED,
        "uid 65534 was not held: {before} hand-outs"
    );
    let audit_path = d.audit.clone();
    // Waits for the exit (a minute at most), not timed: the bound is that no held line makes
    // the stop wait for its answer.
    let st = d.stop();
    assert!(st.success(), "the daemon's exit on SIGTERM: {st}");
    wait_for("the half-closed client's read ended", || {
        said(&out).contains("HALF ")
    });
    drop(hog.stdin.take());
    let _ = hog.wait();
    let audit = std::fs::read_to_string(&audit_path).unwrap();
    assert_eq!(
        hand_outs_to(&audit, 65534),
        before,
        "lines held when the stop began were decided during it"
    );
    let text = said(&out);
    assert!(
        text.contains("HALF 0 eof\n"),
        "the held half-closed client: {text}"
    );
}

/// Regression (twenty-third pass, found by the twenty-third pass's attacker of this pass's
/// fixes): past the total bound of answers not read, a member of `--admin-group` was held like
/// a runner (only root and the daemon's uid were exempt), so its emergency `lock` or `status`
/// waited until a runner read. Uid 65534 fills the total (1 MiB) with answers it does not read;
/// uid 65533, an admin through `--admin-group 65533` (its primary gid), is answered.
#[test]
fn an_admin_group_member_is_not_held_past_the_total_bound() {
    const TEST: &str = "an_admin_group_member_is_not_held_past_the_total_bound";
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
    let id = big_vault(dir.path());
    let d = Daemon::start(
        dir.path(),
        &[
            "--identity-file",
            id.to_str().unwrap(),
            "--admin-group",
            "65533",
            "--read-timeout",
            "600",
            "--idle-timeout",
            "600",
            "--max-queued-mib-per-uid",
            "1",
            "--max-queued-mib",
            "1",
        ],
    );
    let out = open_to_others(dir.path(), &d);
    let mut slow = child_as(TEST, 65534, SLOW_ENV, &d, &out).spawn().unwrap();
    wait_for("the slow reader sent its requests", || {
        said(&out).contains("SENT\n")
    });
    wait_for("the slow reader's answers fill the total", || {
        hand_outs_to(&d.audit_text(), 65534) * FIELDS.len() * FIELD_BYTES >= 1 << 20
    });
    // The probe waits 30 s for its answer: held, it would wait until the slow reader reads.
    let st = child_as(TEST, 65533, PROBE_ENV, &d, &out).status().unwrap();
    let text = said(&out);
    assert!(
        st.success() && text.ends_with("PROBE true\n"),
        "the admin-group member was not answered past the total bound: {text}"
    );
    drop(slow.stdin.take());
    assert!(slow.wait().unwrap().success(), "{}", said(&out));
    d.assert_alive();
}
