//! Hostile and clumsy peers against the real daemon: each gets its documented error code or a
//! closed connection, and the daemon keeps answering a well-behaved client throughout.

#[path = "common/daemon.rs"]
mod daemon;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::Value;

use daemon::{code, read_json, roundtrip, tempdir, Daemon};

#[test]
fn malformed_unknown_op_and_unknown_field_are_bad_request_and_the_connection_survives() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &[]);
    let mut s = d.connect();
    for line in [
        "this is not json",
        "[1,2,3]",
        r#"{"v":1,"op":"dance"}"#,
        r#"{"v":1,"op":"health","extra":true}"#,
        r#"{"v":2,"op":"health"}"#,
        r#"{"op":"health"}"#,
        "\u{0}\u{1}\u{2}",
    ] {
        let v = roundtrip(&mut s, line).unwrap();
        assert_eq!(v["ok"], false, "{line}: {v}");
        assert_eq!(code(&v), "bad_request", "{line}: {v}");
    }
    // Same connection still works after the errors.
    let v = roundtrip(&mut s, r#"{"v":1,"op":"health"}"#).unwrap();
    assert_eq!(v["ok"], true);
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
    let mut s = d.connect();
    let mut writer = s.try_clone().unwrap();
    let t = std::thread::spawn(move || {
        let chunk = vec![b'a'; 1024 * 1024];
        let mut sent = 0usize;
        for _ in 0..10 {
            match writer.write_all(&chunk) {
                Ok(()) => sent += chunk.len(),
                Err(_) => break, // the daemon closed on us: expected
            }
        }
        sent
    });
    let v = read_json(&mut s).unwrap();
    assert_eq!(code(&v), "too_large", "{v}");
    // Then the connection is closed.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.is_empty());
    let sent = t.join().unwrap();
    assert!(
        sent < 10 * 1024 * 1024,
        "the daemon kept reading the whole line"
    );
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
    let mut s = d.connect();
    let mut line = String::from(r#"{"v":1,"op":"health","pad":""#);
    while line.len() < 65536 - 2 {
        line.push('x');
    }
    line.push_str("\"}");
    assert_eq!(line.len(), 65536);
    let v = roundtrip(&mut s, &line).unwrap();
    assert_eq!(code(&v), "bad_request", "{v}");
}

#[test]
fn slowloris_partial_line_is_closed_after_the_read_timeout_while_others_are_served() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &["--read-timeout", "1"]);
    let mut slow = d.connect();
    slow.write_all(br#"{"v":1,"op":"hea"#).unwrap();
    // While the slow client holds its line open, others are answered.
    d.assert_alive();
    slow.set_read_timeout(Some(Duration::from_secs(60)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = slow
        .read(&mut buf)
        .expect("closed, not timed out on our side");
    assert_eq!(
        n, 0,
        "the daemon should close a held-open partial line without answering"
    );
    d.assert_alive();
}

#[test]
fn idle_connection_is_closed_after_the_idle_timeout() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &["--idle-timeout", "1"]);
    let mut idle = d.connect();
    let mut buf = [0u8; 64];
    assert_eq!(idle.read(&mut buf).unwrap(), 0);
    d.assert_alive();
}

#[test]
fn a_thousand_connections_at_once_get_served_or_busy_and_the_daemon_survives() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &["--max-connections", "64"]);
    let mut conns: Vec<UnixStream> = Vec::new();
    for _ in 0..1000 {
        // A full accept backlog refuses the rest: also "not served", and fine.
        if let Ok(s) = UnixStream::connect(&d.socket) {
            conns.push(s);
        }
    }
    let (mut ok, mut busy, mut closed) = (0, 0, 0);
    for s in &mut conns {
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let _ = s.write_all(b"{\"v\":1,\"op\":\"health\"}\n");
        match read_json(s) {
            Ok(v) if v["ok"] == true => ok += 1,
            Ok(v) if code(&v) == "busy" => busy += 1,
            Ok(v) => panic!("unexpected answer {v}"),
            Err(_) => closed += 1,
        }
    }
    assert!(ok <= 64, "at most max-connections served at once: {ok}");
    assert!(ok >= 1);
    assert!(busy >= 1, "the extra connections get busy");
    assert_eq!(ok + busy + closed, conns.len());
    drop(conns);
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
    for _ in 0..50 {
        let mut s = d.connect();
        let mut many = Vec::new();
        for _ in 0..200 {
            many.extend_from_slice(b"{\"v\":1,\"op\":\"health\"}\n");
        }
        let _ = s.write_all(&many);
        drop(s); // gone before reading a single answer
    }
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
