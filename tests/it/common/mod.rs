//! Helpers shared by the integration tests, one module per kind of setup. Every test module
//! reaches them as `crate::common::NAME`.
//!
//! The functions below are for sharing one process: a test that runs this binary again
//! ([`test_path`]), sets the one environment variable a library call reads
//! ([`with_state_dir`]), reopens a log it just closed ([`reopen_audit_log`]) or runs a file it
//! just made ([`copy_executable`]) goes through them, because any other test may fork a child
//! at any moment.

pub mod daemon;
pub mod faults;
pub mod leak;
pub mod lint;
pub mod pty;
pub mod redact_oracle;
pub mod shell_pty;
pub mod skip;
pub mod soak;
pub mod users;
pub mod vault;

use std::path::Path;
use std::sync::Mutex;

/// The name libtest knows test `name` of the module at `module_path` by (`module_path!()` of
/// the caller): `daemon::tickets::NAME`, without the crate's name. A test that runs this binary
/// again as a child (another uid, an irreversible change) selects itself with `--exact` and it.
pub fn test_path(module_path: &str, name: &str) -> String {
    match module_path.split_once("::") {
        Some((_crate, module)) => format!("{module}::{name}"),
        None => name.to_owned(),
    }
}

/// Serialises the tests that change this process's environment (they share one process).
static ENV: Mutex<()> = Mutex::new(());

/// Run `f` with `SCOPEVAULT_STATE_DIR` set to `dir` in this process, for the library calls a
/// test makes in-process (`Vault::open` reads its rollback record there). Children get their
/// environment from their `Command`, never from this: the variable is removed again before the
/// lock is released, and no other test sets process environment.
pub fn with_state_dir<T>(dir: &Path, f: impl FnOnce() -> T) -> T {
    let _held = ENV.lock().unwrap_or_else(|e| e.into_inner());
    std::env::set_var("SCOPEVAULT_STATE_DIR", dir);
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    std::env::remove_var("SCOPEVAULT_STATE_DIR");
    match out {
        Ok(v) => v,
        Err(p) => std::panic::resume_unwind(p),
    }
}

/// `AuditLog::open` of a log this test has just closed, retried for up to 5 s while the log is
/// `InUse`. The tests share one process: a child that another test forks between our close and
/// our reopen holds a copy of the descriptor, and with it the log's `flock`, until it execs a
/// moment later. A log really held open elsewhere stays in use and is reported after 5 s.
pub fn reopen_audit_log(
    path: &Path,
    sync: bool,
) -> Result<scopevault::audit::AuditLog, scopevault::audit::AuditError> {
    use scopevault::audit::{AuditError, AuditLog};
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match AuditLog::open(path, sync) {
            Err(AuditError::InUse { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

/// Copy `from` to `to` as an executable (mode 0755) through `cp`, so that this process never
/// holds the copy open for writing. The tests share one process: a child that another test
/// forks while a write descriptor of ours is open keeps a copy of it until it execs, and
/// executing the file meanwhile fails with ETXTBSY ("Text file busy").
pub fn copy_executable(from: &Path, to: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let st = std::process::Command::new("cp")
        .arg("--")
        .arg(from)
        .arg(to)
        .status()
        .expect("run cp");
    assert!(st.success(), "cp {} {}: {st}", from.display(), to.display());
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// The output of `child` once it exits, within `secs` seconds: one still running then is
/// killed and the test fails naming `what` (a regression to a hang fails, not blocks, the run).
pub fn output_within(
    mut child: std::process::Child,
    secs: u64,
    what: &str,
) -> std::process::Output {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: still running after {secs} s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// Make a FIFO (mode 0600) at `path`.
pub fn mkfifo(path: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        path,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap_or_else(|e| panic!("mkfifo {}: {e}", path.display()));
}

/// What `act` returns, and which of `paths` (each watched with inotify) were opened while it
/// ran, by this process or any other (a child running the binary). An open queues `IN_OPEN`
/// during the syscall itself, so every open is in the queue once `act` has returned; taking a
/// path with `O_PATH` (how `sys::open_regular` judges a file before it opens it) queues
/// nothing. A FIFO seen opened is one a reader or writer opened, whether or not it then
/// refused it.
pub fn opened_while<T>(paths: &[&Path], act: impl FnOnce() -> T) -> (T, Vec<bool>) {
    use rustix::fs::inotify;
    let ino =
        inotify::init(inotify::CreateFlags::NONBLOCK | inotify::CreateFlags::CLOEXEC).unwrap();
    let wds: Vec<i32> = paths
        .iter()
        .map(|p| {
            inotify::add_watch(&ino, *p, inotify::WatchFlags::OPEN)
                .unwrap_or_else(|e| panic!("inotify watch on {}: {e}", p.display()))
        })
        .collect();
    let out = act();
    let mut seen = vec![false; paths.len()];
    let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 4096];
    let mut events = inotify::Reader::new(&ino, &mut buf);
    while let Ok(e) = events.next() {
        if e.events().contains(inotify::ReadFlags::OPEN) {
            if let Some(i) = wds.iter().position(|w| *w == e.wd()) {
                seen[i] = true;
            }
        }
    }
    (out, seen)
}

/// `/dev/full` opened for writing, as a child's stdout or stderr: every write to it fails with
/// `ENOSPC`, as on a full disk.
pub fn dev_full() -> std::process::Stdio {
    std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/full")
        .expect("/dev/full")
        .into()
}
