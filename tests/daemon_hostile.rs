//! Hostile and clumsy peers against the real daemon: each gets its documented error code or a
//! closed connection, and the daemon keeps answering a well-behaved client throughout.

#[path = "common/daemon.rs"]
mod daemon;
#[path = "common/soak.rs"]
mod soak;

use std::io::Write;
use std::time::Duration;

use serde_json::Value;

use daemon::{code, read_json, tempdir, Daemon};
use soak::{Conn, Tally};

/// The tally of one hostile client run alone against a fresh daemon: no problem, and `what`
/// counted exactly `n` times (so never `busy` or `connect failed`).
fn assert_tally(t: &Tally, what: &str, n: u64) {
    assert!(t.problems.is_empty(), "{:#?}", t.problems);
    assert_eq!(t.get(what), n, "{t:?}");
}

#[test]
fn malformed_unknown_op_and_unknown_field_are_bad_request_and_the_connection_survives() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &[]);
    // Every line of soak::malformed_lines, one at a time on one connection.
    let mut c = Conn::connect(&d.socket).unwrap();
    for line in soak::malformed_lines() {
        let shown = String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
        let (v, _) = c.call_bytes(&line).unwrap();
        assert_eq!(v["ok"], false, "{shown}: {v}");
        assert_eq!(code(&v), "bad_request", "{shown}: {v}");
        assert!(soak::is_well_formed_error(&v), "{shown}: {v}");
    }
    // Same connection still works after the errors.
    let (v, _) = c.call(r#"{"v":1,"op":"health"}"#).unwrap();
    assert_eq!(v["ok"], true);
    // And all of them pipelined at once, then `health`, on another connection.
    let mut t = Tally::default();
    soak::malformed(&d.socket, &mut t);
    assert_tally(&t, "hostile malformed: served", 1);
    assert_eq!(t.audit_total(), 0, "a parse error is not audited: {t:?}");
    d.assert_alive();
}

#[test]
fn pipelined_requests_are_answered_in_order() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &[]);
    let mut s = d.connect();
    s.write_all(
        b"{\"v\":1,\"op\":\"health\"}\n{\"v\":1,\"op\":\"nope\"}\n{\"v\":1,\"op\":\"health\"}\n",
    )
    .unwrap();
    assert_eq!(read_json(&mut s).unwrap()["ok"], true);
    assert_eq!(code(&read_json(&mut s).unwrap()), "bad_request");
    assert_eq!(read_json(&mut s).unwrap()["ok"], true);
}

#[test]
fn a_ten_megabyte_line_is_too_large_and_closed_without_buffering_it() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &[]);
    // `too_large`, then the connection is closed with nothing more, before the 10 MiB were
    // all read.
    let mut t = Tally::default();
    soak::oversized(&d.socket, 10, &mut t);
    assert_tally(&t, "hostile oversized: too_large", 1);
    d.assert_alive();
    // The refusal is audited with who sent it and why (mutation testing found this unchecked).
    let audit = d.audit_text();
    let rec: Value = audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|r| r["op"] == "invalid")
        .unwrap_or_else(|| panic!("no audit record of the refusal in {audit}"));
    assert_eq!(rec["decision"], "deny", "{rec}");
    assert_eq!(
        rec["peer"]["uid"],
        u64::from(rustix::process::getuid().as_raw()),
        "{rec}"
    );
    assert!(
        rec["reason"].as_str().unwrap().starts_with("too_large"),
        "{rec}"
    );
}

#[test]
fn exactly_64_kib_is_accepted_as_a_line() {
    // A line of exactly the limit is read and parsed (here: bad_request, not too_large).
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &[]);
    let line = soak::line_at_the_limit();
    assert_eq!(line.len(), 65536);
    let (v, _) = Conn::connect(&d.socket).unwrap().call_bytes(&line).unwrap();
    assert_eq!(code(&v), "bad_request", "{v}");
}

#[test]
fn slowloris_partial_line_is_closed_after_the_read_timeout_while_others_are_served() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &["--read-timeout", "1"]);
    let mut t = Tally::default();
    // While the slow client holds its line open, others are answered; then the daemon closes
    // the held-open partial line without answering.
    soak::held_open(
        &d.socket,
        "slowloris",
        br#"{"v":1,"op":"hea"#,
        &mut t,
        || d.assert_alive(),
    );
    assert_tally(&t, "hostile slowloris: closed", 1);
    d.assert_alive();
}

#[test]
fn idle_connection_is_closed_after_the_idle_timeout() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &["--idle-timeout", "1"]);
    let mut t = Tally::default();
    soak::idle(&d.socket, &mut t);
    assert_tally(&t, "hostile idle: closed", 1);
    d.assert_alive();
}

#[test]
fn a_thousand_connections_at_once_get_served_or_busy_and_the_daemon_survives() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &["--max-connections", "64"]);
    // Each is served, `busy`, or closed (a full accept backlog refuses the rest: also "not
    // served", and fine); anything else is a problem. All are dropped at the end.
    let mut t = Tally::default();
    soak::burst(&d.socket, 1000, &mut t);
    assert!(t.problems.is_empty(), "{:#?}", t.problems);
    let ok = t.get("hostile burst: served");
    assert!(ok <= 64, "at most max-connections served at once: {ok}");
    assert!(ok >= 1);
    assert!(
        t.get("hostile burst: busy") >= 1,
        "the extra connections get busy"
    );
    // Once they are gone, a new client is served (connection slots are given back).
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let v = d.request(r#"{"v":1,"op":"health"}"#);
        if v["ok"] == true {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "slots never freed: {v}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_that_disconnects_mid_response_does_not_hurt_the_daemon() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &[]);
    let mut t = Tally::default();
    for _ in 0..50 {
        // 200 pipelined requests, gone before reading a single answer.
        soak::hang_up_pipelined(&d.socket, &mut t);
    }
    assert_tally(&t, "hostile hang-up: pipelined health", 50);
    d.assert_alive();
}

#[test]
fn fetch_while_locked_is_locked() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &[]);
    let v = d.request(r#"{"v":1,"op":"fetch","task":"checkout-flow"}"#);
    assert_eq!(code(&v), "locked", "{v}");
    let v = d.request(r#"{"v":1,"op":"tasks"}"#);
    assert_eq!(code(&v), "locked", "{v}");
    let v = d.request(r#"{"v":1,"op":"health"}"#);
    assert_eq!(v["locked"], true);
}

#[test]
fn sigterm_exits_zero_and_removes_the_socket() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &[]);
    let socket = d.socket.clone();
    let _idle = d.connect(); // an idle connection must not hold shutdown up
    let st = d.stop();
    assert!(st.success(), "{st}");
    assert!(!socket.exists());
}

#[test]
fn a_second_daemon_on_a_live_socket_refuses_and_a_stale_socket_is_replaced() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &[]);
    let out = daemon::cmd(dir.path())
        .args(["serve", "--socket"])
        .arg(&d.socket)
        .arg("--audit")
        .arg(dir.path().join("second-audit.jsonl"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already answering"));
    d.assert_alive();
    // Leave a stale socket file behind (bound, then the listener dropped without unlink).
    let stale_dir = dir.path().join("stale");
    std::fs::create_dir(&stale_dir).unwrap();
    let stale = stale_dir.join("s.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let other_audit = dir.path().join("third-audit.jsonl");
    let d2 = Daemon::start_at(
        dir.path(),
        &stale,
        &["--audit", other_audit.to_str().unwrap()],
    );
    d2.assert_alive();
}

#[test]
fn a_socket_directory_writable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let open = dir.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let out = daemon::cmd(dir.path())
        .args(["serve", "--socket"])
        .arg(open.join("s.sock"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("writable by group or others"), "{err}");
}

#[test]
fn the_socket_is_mode_0660() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &[]);
    let mode = std::fs::metadata(&d.socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o660);
}
