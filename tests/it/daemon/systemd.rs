//! systemd integration: socket activation (`LISTEN_FDS`) and readiness (`NOTIFY_SOCKET`).

use crate::common::daemon;
use crate::common::skip;

use std::os::unix::net::{UnixDatagram, UnixStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daemon::{roundtrip, tempdir};

#[test]
fn readiness_is_notified_on_notify_socket() {
    let dir = tempdir();
    let notify = dir.path().join("notify");
    let rx = UnixDatagram::bind(&notify).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut child = daemon::cmd(dir.path())
        .args(["serve", "--socket"])
        .arg(dir.path().join("run/s.sock"))
        .env("NOTIFY_SOCKET", &notify)
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut buf = [0u8; 256];
    let n = rx.recv(&mut buf).expect("a readiness datagram");
    let msg = String::from_utf8_lossy(&buf[..n]).into_owned();
    // Ready means ready: the socket answers now.
    let mut s = UnixStream::connect(dir.path().join("run/s.sock")).unwrap();
    let v = roundtrip(&mut s, r#"{"v":1,"op":"health"}"#).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(msg.contains("READY=1"), "{msg}");
    assert_eq!(v["ok"], true);
}

#[test]
fn socket_activation_serves_on_the_inherited_socket() {
    if Command::new("systemd-socket-activate")
        .arg("--help")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        return skip::skip("systemd-socket-activate is not installed");
    }
    let dir = tempdir();
    let sock = dir.path().join("activated.sock");
    let audit = dir.path().join("audit.jsonl");
    let mut activator = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&sock)
        .arg(daemon::bin())
        .args(["serve", "--read-timeout", "1", "--audit"])
        .arg(&audit)
        // A --socket that must NOT be bound: the inherited socket wins.
        .arg("--socket")
        .arg(dir.path().join("not-used/s.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    let v = loop {
        if let Ok(mut s) = UnixStream::connect(&sock) {
            s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
            if let Ok(v) = roundtrip(&mut s, r#"{"v":1,"op":"health"}"#) {
                break v;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no answer on the activated socket"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(v["ok"], true, "{v}");
    assert!(!dir.path().join("not-used/s.sock").exists());
    // Issue 11: SIGTERM stops a socket-activated daemon within the read timeout + 1 s
    // (systemd-socket-activate execs it: same pid), and the daemon leaves the socket file to
    // the service manager that made it.
    let idle = UnixStream::connect(&sock).unwrap();
    let started = Instant::now();
    let killed = Command::new("kill")
        .args(["-TERM", &activator.id().to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    let status = loop {
        if let Some(st) = activator.try_wait().unwrap() {
            break st;
        }
        if started.elapsed() > Duration::from_secs(10) {
            let _ = activator.kill();
            panic!("the activated daemon did not stop within 10 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // 1 s read timeout + 1 s, with slack for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "stopped after {:?}",
        started.elapsed()
    );
    assert!(status.success(), "{status}");
    assert!(
        sock.exists(),
        "the daemon removed the service manager's socket"
    );
    drop(idle);
}
