//! A daemon whose stderr can no longer be written (twenty-third pass, found by the
//! twenty-third pass's attacker of the documents' promises): `scopevault serve &` from a
//! terminal later closed, `serve 2>&1 | logger` whose logger dies, `serve 2>/dev/full`. Its
//! log lines used `eprintln!`, which panics on a write error: the thread that logged died (the
//! worker after a vault change or an unlock that warns, the signal thread after a SIGHUP), and
//! the daemon stayed up, answering `health` as healthy, never answering a fetch after a vault
//! change, `reload`, `lock` or `unlock`, and ignoring SIGTERM. Each test here does all of
//! those against a real `serve` whose stderr is broken, with client timeouts, so a daemon
//! that stops answering fails the test instead of hanging it.

use crate::common::daemon;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use daemon::{example_policy, ok, roundtrip, setup_vault, tempdir, Daemon};
use serde_json::Value;

const PASS: &str = "correct horse battery staple orbits quietly";

/// One request on a fresh connection, answered within 20 s or the test fails.
fn ask(d: &Daemon, line: &str) -> Value {
    let mut s = UnixStream::connect(&d.socket).expect("connect to the daemon");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    roundtrip(&mut s, line).unwrap_or_else(|e| panic!("no answer to {line}: {e}"))
}

/// A vault from [`setup_vault`] with a passphrase slot (for `unlock` over the socket) and a
/// policy naming a runner no user database knows, so that every load of the vault (the
/// start, a reload, an unlock) logs a warning. Returns the identity file.
fn vault_whose_loads_warn(dir: &Path) -> PathBuf {
    let id = setup_vault(dir);
    let id_s = id.to_str().unwrap();
    let pass = dir.join("pass");
    std::fs::write(&pass, format!("{PASS}\n")).unwrap();
    let mut add = daemon::cmd(dir);
    add.env("SCOPEVAULT_TEST_ARGON2", "64,1,1").args([
        "--identity-file",
        id_s,
        "key",
        "add",
        "--passphrase",
        "--new-passphrase-file",
        pass.to_str().unwrap(),
    ]);
    let out = add.output().unwrap();
    assert!(
        out.status.success(),
        "key add: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = example_policy().replace(
        "users = [\"checkpoint\"",
        "users = [\"no-such-user-sv23\", \"checkpoint\"",
    );
    let file = dir.join("warning-policy.toml");
    std::fs::write(&file, policy).unwrap();
    ok(
        dir,
        &[
            "--identity-file",
            id_s,
            "policy",
            "apply",
            file.to_str().unwrap(),
        ],
        None,
    );
    id
}

/// A vault change and a fetch of it, `reload`, SIGHUP, `lock` and `unlock`, then SIGTERM:
/// each answered or done as with a working stderr; the daemon exits 0 and removes its socket.
fn serves_everything_then_stops(d: Daemon, dir: &Path, id: &Path) {
    ok(
        dir,
        &[
            "--identity-file",
            id.to_str().unwrap(),
            "cred",
            "set",
            "search-token",
            "--secret",
            "token",
        ],
        Some("rotated-token-Zq9"),
    );
    let fetch = r#"{"v":1,"op":"fetch","task":"search-api"}"#;
    let v = ask(&d, fetch);
    assert_eq!(
        v["credentials"][0]["secrets"]["token"], "rotated-token-Zq9",
        "the fetch after a vault change: {v}"
    );
    let v = ask(&d, r#"{"v":1,"op":"reload"}"#);
    assert_eq!(v["ok"], true, "reload: {v}");
    d.signal("HUP");
    let v = ask(&d, r#"{"v":1,"op":"lock"}"#);
    assert_eq!(v["ok"], true, "lock: {v}");
    let v = ask(
        &d,
        &format!(r#"{{"v":1,"op":"unlock","passphrase":"{PASS}"}}"#),
    );
    assert_eq!(v["ok"], true, "unlock (its load logs a warning): {v}");
    let v = ask(&d, fetch);
    assert_eq!(v["ok"], true, "the fetch after the unlock: {v}");
    let h = ask(&d, r#"{"v":1,"op":"health"}"#);
    let lost = h["log_lines_lost"].as_u64().unwrap_or(0);
    assert!(
        lost > 0,
        "the lines the daemon could not write are counted: {h}"
    );
    let socket = d.socket.clone();
    let st = d.stop();
    assert!(st.success(), "the daemon's exit on SIGTERM: {st}");
    assert!(!socket.exists(), "the daemon left its socket behind");
}

#[test]
fn a_daemon_whose_log_reader_went_away_serves_reloads_locks_unlocks_and_stops() {
    let dir = tempdir();
    let id = vault_whose_loads_warn(dir.path());
    let mut d = Daemon::start_with_stderr(
        dir.path(),
        &["--identity-file", id.to_str().unwrap()],
        Stdio::piped(),
    );
    // The log reader goes away: every later write to the daemon's stderr fails (EPIPE).
    drop(
        d.take_stderr()
            .expect("the read end of the daemon's stderr"),
    );
    serves_everything_then_stops(d, dir.path(), &id);
}

#[test]
fn a_daemon_whose_stderr_is_full_starts_serves_and_stops() {
    let dir = tempdir();
    let id = vault_whose_loads_warn(dir.path());
    let full = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .unwrap();
    let d = Daemon::start_with_stderr(
        dir.path(),
        &["--identity-file", id.to_str().unwrap()],
        full.into(),
    );
    serves_everything_then_stops(d, dir.path(), &id);
}

/// A stop with the log stuck (twenty-third pass, found by the twenty-third pass's attacker of
/// this pass's fixes): with stderr a full pipe nobody reads, every SIGTERM waited 2 s for the
/// last lines, past the stop's bound with `--read-timeout 1`. The daemon stops, exit 0, its
/// socket removed, while its stderr is still full (nothing read from it before the exit). How
/// long it took is not asserted here (no timed assertion): that the stop's last flush does not
/// wait for a stderr known stuck is `src/diag.rs` `a_flush_does_not_wait_for_a_stderr_known_stuck`.
#[test]
fn a_daemon_whose_stderr_is_a_full_pipe_nobody_reads_stops_on_sigterm() {
    let dir = tempdir();
    let id = vault_whose_loads_warn(dir.path());
    let (reader, writer) = daemon::full_pipe();
    let d = Daemon::start_with_stderr(
        dir.path(),
        &[
            "--identity-file",
            id.to_str().unwrap(),
            "--read-timeout",
            "1",
        ],
        writer.into(),
    );
    // A load that warns: its line waits for the stuck stderr, which is then known stuck.
    let v = ask(&d, r#"{"v":1,"op":"reload"}"#);
    assert_eq!(v["ok"], true, "reload: {v}");
    let socket = d.socket.clone();
    let st = d.stop();
    assert!(st.success(), "the daemon's exit on SIGTERM: {st}");
    assert!(!socket.exists(), "the daemon left its socket behind");
    // The read end was kept open, never read: the pipe stayed full until the daemon exited.
    drop(reader);
}
