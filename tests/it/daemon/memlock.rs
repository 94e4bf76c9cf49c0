//! The daemon's memory lock and an unlock's key derivation (nineteenth pass, found by
//! attacking from the documents). The daemon locks all its memory, later mappings included
//! (`mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)`): once that succeeds, every allocation
//! counts against `RLIMIT_MEMLOCK`, and one that does not fit is refused. Under the shipped
//! unit's `LimitMEMLOCK=64M` the daemon's lock succeeded and the 64 MiB of a default slot's
//! Argon2 then did not fit: the allocation failed and the daemon aborted (exit 134, `memory
//! allocation of 67108864 bytes failed`), the admin's `unlock` got "Connection reset by peer".
//!
//! Here the daemon runs as a real second uid (svrunner; the tests run as root) and the same
//! allocation is made to fail with the limit any root may lower: `prlimit --as` of 224 MiB,
//! room for the daemon (about 170 MiB of address space, most of it the test build's binary)
//! but not for the 256 MiB of Argon2 memory the vault's slot asks (made with the test build's
//! `SCOPEVAULT_TEST_ARGON2`; the suite's usual setting is 64 KiB, which any limit has room
//! for). The memory-lock limit itself cannot be used: under it the daemon's lock succeeds
//! only with a hard limit above the daemon's size, and raising a hard limit needs
//! `CAP_SYS_RESOURCE`, which the machines the tests run on do not give root (their hard
//! limit is 8 MiB). What the answer says under a memory lock is tested in `src/sys.rs`.

use crate::common::daemon;
use crate::common::skip;
use crate::common::users;

use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The Argon2 memory of the vault's passphrase slot, in KiB (256 MiB, one pass, one lane).
const SLOT_KIB: u32 = 256 * 1024;
/// The daemon's `RLIMIT_AS`: room for the daemon itself, not for the slot's memory.
const ADDRESS_SPACE: u64 = 224 << 20;

struct Kill(Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A command running `program` as `uid`/`gid` with the vault, audit log and state in `home`.
fn as_user(program: &Path, home: &Path, (uid, gid): (u32, u32)) -> Command {
    let mut c = Command::new(program);
    c.env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("SCOPEVAULT_VAULT", home.join("vault.scopevault"))
        .env("SCOPEVAULT_AUDIT", home.join("audit.jsonl"))
        .env("SCOPEVAULT_STATE_DIR", home.join("state"))
        .env("SCOPEVAULT_TEST_ARGON2", format!("{SLOT_KIB},1,1"))
        .current_dir(home)
        .uid(uid)
        .gid(gid);
    c
}

fn health(socket: &Path) -> Option<serde_json::Value> {
    let mut s = std::os::unix::net::UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    daemon::roundtrip(&mut s, r#"{"v":1,"op":"health"}"#).ok()
}

/// A daemon started by [`start_as`], killed when dropped.
struct Started {
    home: PathBuf,
    socket: PathBuf,
    pass: PathBuf,
    stderr: PathBuf,
    daemon: Kill,
}

/// A vault made by `init` as `ids` in `BASE/home-WHO` (the slot's 256 MiB key derivation),
/// then `serve` as `ids` under `prlimit LIMIT`, until it answers `health`.
fn start_as(exe: &Path, base: &Path, who: &str, ids: (u32, u32), limit: &str) -> Started {
    let home = base.join(format!("home-{who}"));
    let run = base.join(format!("run-{who}"));
    for d in [&home, &run] {
        std::fs::create_dir(d).unwrap();
        chown(d, Some(ids.0), Some(ids.1)).unwrap();
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    let pass = home.join("passphrase");
    std::fs::write(&pass, "a long enough test passphrase\n").unwrap();
    chown(&pass, Some(ids.0), Some(ids.1)).unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = as_user(exe, &home, ids)
        .arg("init")
        .arg("--passphrase-file")
        .arg(&pass)
        .output()
        .unwrap();
    assert!(out.status.success(), "init as {who}: {out:?}");
    let socket = run.join("scopevault.sock");
    let stderr = base.join(format!("daemon-{who}.stderr"));
    let mut c = as_user(Path::new("prlimit"), &home, ids);
    c.arg(limit)
        .arg("--")
        .arg(exe)
        .arg("serve")
        .arg("--socket")
        .arg(&socket)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&stderr).unwrap());
    let mut d = Kill(c.spawn().unwrap());
    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(60);
    while health(&socket).is_none_or(|v| v["ok"] != true) {
        if let Some(st) = d.0.try_wait().unwrap() {
            panic!("the daemon ({who}) exited ({st}): {}", log());
        }
        assert!(Instant::now() < deadline, "no answer ({who}): {}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
    Started {
        home,
        socket,
        pass,
        stderr,
        daemon: d,
    }
}

/// Regression (nineteenth pass): a passphrase `unlock` whose Argon2 memory the daemon cannot
/// allocate (under the shipped unit: its memory locked, the memory-lock limit too small for
/// the slot's memory; here: the address-space limit too small for it) aborted the daemon. It is now an error answer that says so, and the daemon still answers.
#[test]
fn an_unlock_whose_key_derivation_memory_cannot_be_had_is_an_error_and_the_daemon_lives() {
    // The slot's 256 MiB comes from `SCOPEVAULT_TEST_ARGON2`, which only the test build
    // honours; any other build makes its slot at the default 64 MiB, which the limit allows.
    if !cfg!(feature = "insecure-test-kdf") {
        return skip::skip(
            "the slot's memory is set by SCOPEVAULT_TEST_ARGON2, which only a build with the \
             cargo feature insecure-test-kdf honours: run the tests with scripts/test",
        );
    }
    let ids = match users::ensure_user("svrunner") {
        Ok(ids) => ids,
        Err(why) => return skip::skip(&why),
    };
    if Command::new("prlimit").arg("--version").output().is_err() {
        return skip::skip("prlimit (util-linux) is not installed");
    }
    let base = daemon::tempdir();
    let exe = users::shared_binary(base.path());
    let limit = format!("--as={ADDRESS_SPACE}:{ADDRESS_SPACE}");
    let mut started = start_as(&exe, base.path(), "svrunner", ids, &limit);
    let (home, socket, pass) = (
        started.home.clone(),
        started.socket.clone(),
        started.pass.clone(),
    );
    let stderr = started.stderr.clone();
    let log = || std::fs::read_to_string(&stderr).unwrap_or_default();
    let d = &mut started.daemon;
    let out = as_user(&exe, &home, ids)
        .arg("unlock")
        .arg("--socket")
        .arg(&socket)
        .arg("--passphrase-file")
        .arg(&pass)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        d.0.try_wait().unwrap().is_none(),
        "the daemon is still running after the unlock: {err}; its log: {}",
        log()
    );
    assert!(
        err.contains("cannot allocate 256 MiB for the key derivation")
            && err.contains("RLIMIT_AS")
            && err.contains("224 MiB"),
        "the answer says why and what to do: {err}"
    );
    assert!(!err.contains("Connection reset"), "{err}");
    let h = health(&socket).expect("the daemon answers health after the failed unlock");
    assert_eq!(h["ok"], true, "{h}");
    assert_eq!(h["locked"], true, "{h}");

    // Control: the passphrase is right and the slot opens where its memory can be had (the
    // command itself, without the daemon's lock).
    let out = as_user(&exe, &home, ids)
        .args(["cred", "list", "--passphrase-file"])
        .arg(&pass)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

/// The soft and hard `RLIMIT_MEMLOCK` of this process in bytes (`None`: unlimited).
fn memlock_limits() -> (Option<u64>, Option<u64>) {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max locked memory"))
        .expect("a memory-lock line in /proc/self/limits");
    let mut f = line.split_whitespace().map(|v| v.parse::<u64>().ok());
    (f.next().unwrap(), f.next().unwrap())
}

/// `serve` as `ids` with the vault in `home` (made by `init` with the slot's 256 MiB key
/// derivation), under `prlimit --memlock=LIMIT:LIMIT`, until it answers `health`; then its
/// stderr and its `VmLck` (kB).
fn start_under_memlock(
    exe: &Path,
    base: &Path,
    who: &str,
    ids: (u32, u32),
    limit: u64,
) -> (String, u64) {
    let started = start_as(exe, base, who, ids, &format!("--memlock={limit}:{limit}"));
    let d = &started.daemon;
    let log = || std::fs::read_to_string(&started.stderr).unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{}/status", d.0.id())).unwrap();
    let vmlck = status
        .lines()
        .find_map(|l| l.strip_prefix("VmLck:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmLck in /proc/PID/status");
    (log(), vmlck)
}

/// Twentieth pass (found by the nineteenth pass's review): a daemon whose `mlockall`
/// succeeded under a finite memory-lock limit said nothing at start; its first passphrase
/// `unlock` was then refused (the key derivation's memory counts against the limit). It now
/// warns at start, naming the limit, the vault's key-derivation memory and the fix
/// (`LimitMEMLOCK=infinity`, `ulimit -l unlimited`): only where the limit bounds it. A real
/// daemon under a finite limit (`prlimit --memlock`) here: as root, whose `CAP_IPC_LOCK`
/// locks its memory and lifts the limit, it stays silent; as svrunner, whose lock the limit
/// refuses, it says only that (`mlockall failed`). The case in between (locked, no
/// `CAP_IPC_LOCK`, a finite limit) needs a limit above the daemon's size, and raising the hard
/// limit needs `CAP_SYS_RESOURCE`, which the machines the tests run on do not give root
/// (their hard limit is 8 MiB; see the module's docs): its decision and its text are tested
/// in `src/sys.rs` (`the_memory_lock_warning_names_the_limit_the_kdf_memory_and_the_fix`).
#[test]
fn the_start_warns_of_a_memory_lock_limit_only_where_it_bounds_the_daemon() {
    let ids = match users::ensure_user("svrunner") {
        Ok(ids) => ids,
        Err(why) => return skip::skip(&why),
    };
    if Command::new("prlimit").arg("--version").output().is_err() {
        return skip::skip("prlimit (util-linux) is not installed");
    }
    // Finite, and no higher than the hard limit this process may give its children.
    let limit = match memlock_limits().1 {
        Some(hard) => hard.min(8 << 20),
        None => 8 << 20,
    };
    let warning = "memory lock limit (RLIMIT_MEMLOCK) of";
    let base = daemon::tempdir();
    let exe = users::shared_binary(base.path());

    let (log, vmlck) = start_under_memlock(&exe, base.path(), "root", (0, 0), limit);
    assert!(
        vmlck > 0,
        "root's daemon locked its memory (CAP_IPC_LOCK): {log}"
    );
    assert!(
        !log.contains(warning) && !log.contains("mlockall failed"),
        "CAP_IPC_LOCK lifts the limit: nothing to say: {log}"
    );

    let (log, vmlck) = start_under_memlock(&exe, base.path(), "svrunner", ids, limit);
    assert_eq!(vmlck, 0, "{log}");
    assert!(
        log.contains("mlockall failed") && !log.contains(warning),
        "a refused lock is said as such, and the limit bounds nothing: {log}"
    );
}
