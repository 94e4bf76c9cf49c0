//! Issue 11, the event loop, against the real daemon: a slow request (argon2 on `unlock`)
//! runs off the loop while others are answered; thousands of connections cost no thread each;
//! a client that never reads its answers is cut off without holding anyone up.

use crate::common::daemon;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use daemon::{ok, read_json, roundtrip, setup_vault, tempdir, Daemon};

const HEALTH: &str = r#"{"v":1,"op":"health"}"#;

/// The daemon's thread count, from /proc.
fn threads_of(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

/// `unlock` runs argon2 (here at the default cost, not the tests' cheap one) on the worker
/// thread: while three of them queue there, `health` and a `fetch` on other connections are
/// answered, and the unlocks are answered after.
#[test]
fn slow_unlocks_run_off_the_loop_while_health_and_fetches_are_answered() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let pass = dir.path().join("pass");
    std::fs::write(&pass, "correct horse battery staple orbits quietly\n").unwrap();
    ok(
        dir.path(),
        &[
            "--identity-file",
            id.to_str().unwrap(),
            "key",
            "add",
            "--passphrase",
            "--new-passphrase-file",
            pass.to_str().unwrap(),
        ],
        None,
    );
    let d = Daemon::start(dir.path(), &["--identity-file", id.to_str().unwrap()]);
    let unlock =
        r#"{"v":1,"op":"unlock","passphrase":"correct horse battery staple orbits quietly"}"#;
    let mut slow: Vec<UnixStream> = (0..3)
        .map(|_| {
            let mut s = d.connect();
            s.write_all(format!("{unlock}\n").as_bytes()).unwrap();
            s
        })
        .collect();
    let started = Instant::now();
    let health = d.request(HEALTH);
    assert_eq!(health["ok"], true, "{health}");
    let fetch = d.request(r#"{"v":1,"op":"fetch","task":"search-api"}"#);
    assert_eq!(fetch["ok"], true, "{fetch}");
    let quick = started.elapsed();
    // The third unlock waits behind two argon2 runs on the worker: not answered yet.
    let last = slow.last_mut().unwrap();
    last.set_nonblocking(true).unwrap();
    let mut byte = [0u8; 1];
    let pending =
        matches!(last.read(&mut byte), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    assert!(
        pending,
        "the third unlock was answered before health and fetch ({quick:?}): argon2 ran in the loop?"
    );
    last.set_nonblocking(false).unwrap();
    for mut s in slow {
        let a = read_json(&mut s).unwrap();
        assert_eq!(a["ok"], true, "{a}");
    }
    eprintln!(
        "health and fetch took {quick:?} while three unlocks ran for {:?}",
        started.elapsed()
    );
}

/// A connection costs a buffer, not a thread: 2,000 connections (the daemon's own uid, whose
/// slots are the total cap plus the admins' reserve) are all open and answered at once, and
/// the daemon runs the same handful of threads as with one.
#[test]
fn two_thousand_connections_are_served_by_a_handful_of_threads() {
    scopevault::sys::raise_open_files_limit();
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &[]);
    let before = threads_of(d.pid());
    let mut conns: Vec<UnixStream> = (0..2000).map(|_| d.connect()).collect();
    for c in &mut conns {
        c.write_all(format!("{HEALTH}\n").as_bytes()).unwrap();
    }
    for c in &mut conns {
        let a = read_json(c).unwrap();
        assert_eq!(a["ok"], true, "{a}");
    }
    let open = d.request(HEALTH)["connections"].as_u64().unwrap();
    assert!(open >= 2001, "{open} connections open");
    let during = threads_of(d.pid());
    assert!(
        during <= before + 1 && during <= 8,
        "{during} threads with 2,000 connections ({before} with none)"
    );
    drop(conns);
    d.assert_alive();
}

/// A client that pipelines requests and never reads the answers fills its socket; the daemon
/// stops reading it (back-pressure), keeps answering everyone else, and closes it once an
/// answer has waited a read timeout.
#[test]
fn a_client_that_never_reads_is_cut_off_and_holds_up_no_one() {
    let dir = tempdir();
    let d = Daemon::start(dir.path(), &["--read-timeout", "1"]);
    let mut hog = d.connect();
    let writer = std::thread::spawn(move || {
        let line = format!("{HEALTH}\n").repeat(1000);
        let mut sent = 0usize;
        // Blocks once the daemon stops reading; fails once it closes the connection.
        while sent < 100_000 && hog.write_all(line.as_bytes()).is_ok() {
            sent += 1000;
        }
        sent
    });
    std::thread::sleep(Duration::from_millis(300));
    for _ in 0..20 {
        let mut s = d.connect();
        let a = roundtrip(&mut s, HEALTH).unwrap();
        assert_eq!(a["ok"], true, "{a}");
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let open = d.request(HEALTH)["connections"].as_u64().unwrap();
        if open == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the hog is still connected ({open} open)"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let sent = writer.join().unwrap();
    assert!(
        sent < 100_000,
        "the daemon read everything the hog sent ({sent} requests)"
    );
    d.assert_alive();
}
