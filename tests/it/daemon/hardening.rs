//! The running daemon is hardened (issue 16, item 8): `tests/it/audit/harden.rs` tests
//! `sys::harden_process` in a child of the test binary; this test checks that `scopevault
//! serve` itself ends up hardened, from the outside, through what the kernel shows in
//! `/proc/PID` of the real daemon:
//!
//! - **not dumpable**: /proc/PID/status has no "dumpable" line, but the kernel gives a
//!   non-dumpable process's /proc/PID entries to root (`task_dump_owner`). So the daemon runs
//!   as a non-root user (as root: the second user of tests/it/common/users.rs; otherwise the
//!   developer's own user) and its /proc/PID/status must be owned by uid 0 while its `Uid:`
//!   line says otherwise. Control: a plain process of the same user keeps its own /proc entry.
//! - **no core files**: started with a non-zero core limit, the daemon's /proc/PID/limits says
//!   `Max core file size 0 0`.
//! - **umask 077**: the `Umask:` line of /proc/PID/status.
//! - **memory locked, best effort**: either `VmLck` is non-zero, or the daemon warned that
//!   mlockall was not permitted (RLIMIT_MEMLOCK too small for a process without CAP_IPC_LOCK);
//!   never both, never neither.

use crate::common::daemon;
use crate::common::skip;
use crate::common::users;

use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_field(status: &str, name: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim_start_matches(':').trim().to_string())
        .unwrap_or_else(|| panic!("no {name} in {status}"))
}

/// (soft, hard) of one line of /proc/PID/limits, as printed ("0", "unlimited", ...).
fn limit(limits: &str, name: &str) -> (String, String) {
    let l = limits
        .lines()
        .find(|l| l.starts_with(name))
        .unwrap_or_else(|| panic!("no {name} in {limits}"));
    let mut f = l[name.len()..].split_whitespace();
    (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
}

#[test]
fn the_running_daemon_is_not_dumpable_has_no_core_limit_umask_077_and_locks_memory() {
    let root = users::is_root();
    // The user the daemon runs as: never root (root owns every /proc entry anyway).
    let (uid, gid) = if root {
        match users::ensure_user(users::OTHER_USER) {
            Ok(ids) => ids,
            Err(why) => return skip::skip(&why),
        }
    } else {
        let g = Command::new("id").arg("-g").output().unwrap();
        let g = String::from_utf8_lossy(&g.stdout).trim().parse().unwrap();
        (users::current_uid(), g)
    };
    let dir = daemon::tempdir();
    let id = daemon::setup_vault(dir.path());
    let exe = users::shared_binary(dir.path());
    if root {
        let st = Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    // Start with core dumps allowed (as far as the hard limit lets us), so that the limit /proc
    // shows is the daemon's own doing.
    let own = std::fs::read_to_string("/proc/self/limits").unwrap();
    let core_hard = limit(&own, "Max core file size").1;
    let mut c = Command::new("prlimit");
    c.arg(format!("--core={core_hard}:{core_hard}"));
    let socket = dir.path().join("run/scopevault.sock");
    let base = daemon::cmd(dir.path());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if root {
        // util-linux's setpriv drops to the other user after prlimit (as root) set the limits;
        // each execs the next, so the daemon keeps the pid.
        c.args([
            "setpriv",
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
        ]);
    }
    c.arg(&exe)
        .arg("serve")
        .arg("--socket")
        .arg(&socket)
        .arg("--identity-file")
        .arg(&id)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("daemon.stderr")).unwrap());
    let mut child = Kill(c.spawn().expect("spawn prlimit … scopevault serve"));
    let stderr = || std::fs::read_to_string(dir.path().join("daemon.stderr")).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(st) = child.0.try_wait().unwrap() {
            panic!("the daemon exited ({st}): {}", stderr());
        }
        if let Ok(mut s) = UnixStream::connect(&socket) {
            if daemon::roundtrip(&mut s, r#"{"v":1,"op":"health"}"#).is_ok_and(|v| v["ok"] == true)
            {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the daemon never answered: {}",
            stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // prlimit execs the daemon: same pid.
    let pid = child.0.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(status_field(&status, "Name"), "scopevault", "{status}");
    let real_uid: u32 = status_field(&status, "Uid")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(real_uid, uid, "the daemon runs as uid {uid}");
    assert_ne!(real_uid, 0);

    // Not dumpable: the kernel hands its /proc entries to root.
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid();
    assert_eq!(
        owner, 0,
        "/proc/{pid}/status of a non-dumpable daemon of uid {uid} is owned by root"
    );
    // Control: an ordinary process of the same user owns its own /proc entry.
    let mut plain = Command::new("sleep");
    plain.arg("30");
    if root {
        plain.uid(uid).gid(gid);
    }
    let plain = Kill(plain.spawn().unwrap());
    let plain_owner = std::fs::metadata(format!("/proc/{}/status", plain.0.id()))
        .unwrap()
        .uid();
    assert_eq!(
        plain_owner, uid,
        "control: a dumpable process owns its /proc entry"
    );
    drop(plain);

    // No core files, whatever limit it was started with.
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert_eq!(
        limit(&limits, "Max core file size"),
        ("0".to_owned(), "0".to_owned()),
        "started with core limit {core_hard}: {limits}"
    );
    // umask 077.
    assert_eq!(status_field(&status, "Umask"), "0077", "{status}");
    // Memory locked.
    let vmlck = status_field(&status, "VmLck");
    let warned = stderr().contains("mlockall failed");
    // Best effort, as documented: either the memory is locked, or the daemon said why not
    // (RLIMIT_MEMLOCK too small for a daemon without CAP_IPC_LOCK).
    assert!(
        (vmlck != "0 kB") != warned,
        "either memory is locked or the daemon says why not: VmLck {vmlck}, {}",
        stderr()
    );
    println!(
        "hardening: pid {pid} uid {uid}: /proc owner {owner}, core limit 0/0 (started at \
         {core_hard}), umask 0077, VmLck {vmlck}"
    );
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let st = child.0.wait().unwrap();
    assert!(
        st.success(),
        "the daemon exits 0 on SIGTERM: {st}: {}",
        stderr()
    );
}

/// Found by the attacker of memory and versions (twenty-fifth pass): `cred set`, which
/// decrypts the vault and then waits for the value on stdin, stayed dumpable and kept the core
/// limit it inherited, so Ctrl-\ under `ulimit -c unlimited` wrote a core holding every
/// credential of the vault (`cred list|show`, `get`, `totp` likewise; only `exec`, `redact`
/// and the daemon hardened themselves). Every command now hardens itself once in the CLI's
/// dispatch: started with core dumps allowed, the waiting `cred set` is not dumpable (its
/// /proc entries belong to root while it runs as another user) and its core limit is 0.
#[test]
fn a_cli_command_waiting_on_stdin_after_decrypting_is_not_dumpable_and_has_no_core_limit() {
    let root = users::is_root();
    let (uid, gid) = if root {
        match users::ensure_user(users::OTHER_USER) {
            Ok(ids) => ids,
            Err(why) => return skip::skip(&why),
        }
    } else {
        let g = Command::new("id").arg("-g").output().unwrap();
        let g = String::from_utf8_lossy(&g.stdout).trim().parse().unwrap();
        (users::current_uid(), g)
    };
    let dir = daemon::tempdir();
    let id = daemon::setup_vault(dir.path());
    let exe = users::shared_binary(dir.path());
    if root {
        let st = Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}")])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let own = std::fs::read_to_string("/proc/self/limits").unwrap();
    let core_hard = limit(&own, "Max core file size").1;
    let mut c = Command::new("prlimit");
    c.arg(format!("--core={core_hard}:{core_hard}"));
    let base = daemon::cmd(dir.path());
    for (k, v) in base.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if root {
        c.args([
            "setpriv",
            &format!("--reuid={uid}"),
            &format!("--regid={gid}"),
            "--clear-groups",
        ]);
    }
    c.arg(&exe)
        .args(["cred", "set", "shop-buyer", "--secret", "password"])
        .arg("--identity-file")
        .arg(&id)
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("cred-set.stderr")).unwrap());
    // Its stdin stays open with nothing written: the command waits for the value.
    let mut child = Kill(c.spawn().expect("spawn prlimit … scopevault cred set"));
    let pid = child.0.id();
    let stderr = || std::fs::read_to_string(dir.path().join("cred-set.stderr")).unwrap_or_default();
    // Waiting: as root, its current system call is a read of descriptor 0 (x86-64's `read` is
    // 0, aarch64's 63); otherwise (that file is not ours to read then) its entries go to root.
    let waiting = || {
        let name = std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| status_field(&s, "Name") == "scopevault")
            .unwrap_or(false);
        name && if root {
            let sc = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap_or_default();
            let mut f = sc.split_whitespace();
            matches!(f.next(), Some("0") | Some("63")) && f.next() == Some("0x0")
        } else {
            std::fs::metadata(format!("/proc/{pid}/status")).is_ok_and(|m| m.uid() == 0)
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while !waiting() {
        if let Some(st) = child.0.try_wait().unwrap() {
            panic!("cred set exited ({st}): {}", stderr());
        }
        assert!(
            Instant::now() < deadline,
            "cred set never waited on stdin: {}",
            stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let real_uid: u32 = status_field(&status, "Uid")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(real_uid, uid, "{status}");
    assert_ne!(real_uid, 0);
    let owner = std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid();
    assert_eq!(
        owner, 0,
        "/proc/{pid}/status of a non-dumpable cred set of uid {uid}"
    );
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    assert_eq!(
        limit(&limits, "Max core file size"),
        ("0".to_owned(), "0".to_owned()),
        "started with core limit {core_hard}: {limits}"
    );
    // Still waiting for its value: nothing was saved.
    assert!(child.0.try_wait().unwrap().is_none(), "{}", stderr());
    drop(child);
}
