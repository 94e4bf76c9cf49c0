//! Commands started in a hostile process environment: a file-size limit (`ulimit -f`,
//! systemd's `LimitFSIZE=`) with SIGXFSZ at its default, an inherited signal mask blocking the
//! signals a command handles, `--passphrase-fd` naming a descriptor that was not inherited
//! (twenty-sixth pass, found by the attacker of hostile process environments).

use crate::common::daemon;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use daemon::{secret_of, setup_vault, tempdir, Daemon};

/// `cmd` with the clean environment of [`daemon::cmd`] for `dir`.
fn with_env(mut c: Command, dir: &Path) -> Command {
    for (k, v) in daemon::cmd(dir).get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    c
}

/// `scopevault ARGS` under a file-size limit of `bytes`, every signal at its default.
fn under_fsize(dir: &Path, bytes: u64, args: &[&str]) -> Command {
    let mut c = with_env(Command::new("prlimit"), dir);
    c.arg(format!("--fsize={bytes}"))
        .args(["env", "--default-signal", daemon::bin()])
        .args(args)
        .stdin(Stdio::null());
    c
}

/// `scopevault ARGS` started by python3 with SIGTERM, SIGINT and SIGHUP blocked in its signal
/// mask (inherited through `execve`), every signal at its default.
fn with_blocked_mask(dir: &Path, args: &[&str]) -> Command {
    let mut c = with_env(Command::new("python3"), dir);
    c.args([
        "-c",
        "import os, signal, sys\nfor s in range(1, signal.NSIG):\n    try: signal.signal(s, signal.SIG_DFL)\n    except (OSError, ValueError): pass\nsignal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])\nos.execv(sys.argv[1], sys.argv[1:])",
        daemon::bin(),
    ])
    .args(args);
    c
}

fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// `child`'s exit status within `within`, or `None` (then it is killed).
fn ended_within(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    None
}

/// The names in `dir` that begin with `prefix`.
fn left_in(dir: &Path, prefix: &str) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(prefix))
        .collect()
}

/// A report of exactly `len` bytes, lines of the secret of `shop-buyer`.
fn report_of_the_secret(len: usize) -> String {
    let line = format!("{}\n", secret_of("shop-buyer"));
    line.repeat(len / line.len() + 1)[..len].to_owned()
}

/// Under `prlimit --fsize=4096`, a check that writes a 4096-byte report holding a value: the
/// scrub's rewrite (`[redacted:…]` is longer than the value) passed the limit and SIGXFSZ
/// killed `exec` (and `redact`) mid-write: exit 153 though the command exited 0, a partial
/// `.scopevault-redact-*` file left, no `scrub_report` audited, no word. Now the write fails
/// with EFBIG: the file is reported as not scrubbed, naming the limit, and nothing is left.
#[test]
fn a_file_size_limit_fails_the_scrub_naming_the_limit_instead_of_killing_exec_and_redact() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let d = Daemon::start(dir.path(), &["--identity-file", id.to_str().unwrap()]);
    let art = dir.path().join("art");
    std::fs::create_dir(&art).unwrap();
    let script = format!(
        "i=0; while [ $i -lt 300 ]; do printf '%s\\n' \"$SCOPEVAULT_SHOP_BUYER_PASSWORD\"; i=$((i+1)); done | head -c 4096 > '{}/report.txt'",
        art.display()
    );
    let socket = d.socket.to_str().unwrap();
    let out = under_fsize(
        dir.path(),
        4096,
        &[
            "--socket",
            socket,
            "exec",
            "--task",
            "checkout-flow",
            "--artifacts",
            art.to_str().unwrap(),
            "--",
            "sh",
            "-c",
            &script,
        ],
    )
    .output()
    .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(0), "exec: {:?} {err}", out.status);
    assert!(
        err.contains("report.txt") && err.contains("RLIMIT_FSIZE"),
        "exec: {err}"
    );
    assert!(
        left_in(&art, ".scopevault").is_empty(),
        "{:?}",
        left_in(&art, "")
    );
    assert!(
        d.audit_text().contains("scrub_report"),
        "{}",
        d.audit_text()
    );

    let r = dir.path().join("r.txt");
    std::fs::write(&r, report_of_the_secret(4096)).unwrap();
    let out = under_fsize(
        dir.path(),
        4096,
        &[
            "--socket",
            socket,
            "redact",
            "--task",
            "checkout-flow",
            r.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(1), "redact: {:?} {err}", out.status);
    assert!(
        err.contains("r.txt") && err.contains("RLIMIT_FSIZE"),
        "redact: {err}"
    );
    assert!(
        left_in(dir.path(), ".scopevault").is_empty(),
        "{:?}",
        left_in(dir.path(), "")
    );
}

/// `cred set` whose vault save passes the file-size limit died of SIGXFSZ, its temporary
/// file left beside the vault, no message; now the save fails naming the limit.
#[test]
fn a_vault_save_past_the_file_size_limit_fails_naming_the_limit_and_leaves_no_temporary_file() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let vault = dir.path().join("vault.scopevault");
    let size = std::fs::metadata(&vault).unwrap().len();
    let big = "x".repeat(8000);
    let mut c = under_fsize(
        dir.path(),
        size + 100,
        &[
            "--identity-file",
            id.to_str().unwrap(),
            "cred",
            "set",
            "search-token",
            "--secret",
            "token",
        ],
    );
    c.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(big.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let err = stderr_of(&out);
    assert!(
        out.status.code().is_some_and(|c| c != 0),
        "{:?} {err}",
        out.status
    );
    assert!(err.contains("RLIMIT_FSIZE"), "{err}");
    assert!(
        left_in(dir.path(), ".vault.scopevault.tmp").is_empty(),
        "{:?}",
        left_in(dir.path(), "")
    );
    assert_eq!(std::fs::metadata(&vault).unwrap().len(), size);
}

/// `serve` under `LimitFSIZE=100K` with a fresh log died at its start of SIGXFSZ (exit 153,
/// nothing on stderr) leaving a 100 KiB journal; with SIGXFSZ ignored its error advised
/// removing what is in the journal's place. Now: the error, naming the limit as the cause.
#[test]
fn serve_under_a_file_size_limit_says_the_limit_at_start() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let audit = dir.path().join("new.jsonl");
    let out = under_fsize(
        dir.path(),
        102400,
        &[
            "--socket",
            dir.path().join("s.sock").to_str().unwrap(),
            "serve",
            "--identity-file",
            id.to_str().unwrap(),
            "--audit",
            audit.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let err = stderr_of(&out);
    assert_eq!(out.status.code(), Some(2), "{:?} {err}", out.status);
    assert!(
        err.contains("journal") && err.contains("LimitFSIZE="),
        "{err}"
    );
    assert!(!err.contains("remove what is in its place"), "{err}");
}

/// A running daemon whose audit log reached the file-size limit died mid-record of
/// SIGXFSZ. Now the write fails: the hand-out is refused (audit_unavailable), the daemon
/// stays, and its log line names the limit.
#[test]
fn a_daemon_whose_log_reaches_the_file_size_limit_refuses_and_stays() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    // Its stderr a pipe, which the limit does not bound (a file would reach it too).
    let mut d = Daemon::start_with_stderr(
        dir.path(),
        &["--identity-file", id.to_str().unwrap()],
        Stdio::piped(),
    );
    let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    {
        let log = log.clone();
        let mut pipe = std::io::BufReader::new(d.take_stderr().unwrap());
        std::thread::spawn(move || {
            use std::io::BufRead;
            let mut line = String::new();
            while pipe.read_line(&mut line).is_ok_and(|n| n > 0) {
                log.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
    }
    let get = || {
        daemon::cmd(dir.path())
            .args(["--socket", d.socket.to_str().unwrap()])
            .args(["get", "--task", "checkout-flow"])
            .stdin(Stdio::null())
            .output()
            .unwrap()
    };
    let out = get();
    assert!(out.status.success(), "{}", stderr_of(&out));
    let size = std::fs::metadata(&d.audit).unwrap().len();
    let st = Command::new("prlimit")
        .args(["--pid", &d.pid().to_string()])
        .arg(format!("--fsize={}", size + 100))
        .status()
        .unwrap();
    assert!(st.success());
    let out = get();
    assert_eq!(out.status.code(), Some(5), "{}", stderr_of(&out));
    d.assert_alive();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !log.lock().unwrap().contains("RLIMIT_FSIZE") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let log = log.lock().unwrap().clone();
    assert!(
        log.contains("cannot write the audit log") && log.contains("RLIMIT_FSIZE"),
        "{log}"
    );
}

/// `exec`'s command starts with SIGXFSZ as `exec` was given it (`exec` itself ignores it):
/// at its default, or ignored where the caller ignored it.
#[test]
fn execs_command_gets_sigxfsz_as_exec_was_given_it() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let d = Daemon::start(dir.path(), &["--identity-file", id.to_str().unwrap()]);
    let ignored = |trap: &str| -> bool {
        let mut c = with_env(Command::new("env"), dir.path());
        let script = format!(
            "{trap} exec \"$0\" --socket \"$1\" exec --task checkout-flow -- grep ^SigIgn: /proc/self/status"
        );
        let out = c
            .args(["--default-signal", "sh", "-c", &script, daemon::bin()])
            .arg(&d.socket)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{stdout}{}", stderr_of(&out));
        let hex = stdout
            .trim()
            .strip_prefix("SigIgn:")
            .expect("a SigIgn line");
        // SIGXFSZ is 25: bit 24.
        u64::from_str_radix(hex.trim(), 16).unwrap() & (1 << 24) != 0
    };
    assert!(
        !ignored(""),
        "given at its default, the command got SIGXFSZ ignored"
    );
    assert!(
        ignored("trap '' XFSZ;"),
        "given ignored, the command got it at its default"
    );
}

/// `serve` given SIGTERM, SIGINT and SIGHUP blocked (an inherited signal mask) ignored them:
/// still running 5 s after SIGTERM. It unblocks the signals it handles.
#[test]
fn serve_given_sigterm_blocked_still_stops_on_it() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let socket = dir.path().join("s.sock");
    let mut c = with_blocked_mask(
        dir.path(),
        &[
            "--socket",
            socket.to_str().unwrap(),
            "serve",
            "--identity-file",
            id.to_str().unwrap(),
        ],
    );
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = std::os::unix::net::UnixStream::connect(&socket) {
            if daemon::roundtrip(&mut s, r#"{"v":1,"op":"health"}"#).is_ok_and(|v| v["ok"] == true)
            {
                break;
            }
        }
        assert!(Instant::now() < deadline, "the daemon never answered");
        assert!(child.try_wait().unwrap().is_none(), "the daemon exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    let st = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let ended = ended_within(&mut child, Duration::from_secs(30));
    assert!(ended.is_some(), "serve still ran 30 s after SIGTERM");
}

/// `exec` given SIGTERM blocked neither forwarded it nor acted on it (its command ran to
/// the end), and its command started with an empty mask. Now `exec` unblocks the signals it
/// forwards, and its command gets the mask `exec` was given.
#[test]
fn exec_given_sigterm_blocked_forwards_it_and_its_command_gets_the_given_mask() {
    let dir = tempdir();
    let id = setup_vault(dir.path());
    let d = Daemon::start(dir.path(), &["--identity-file", id.to_str().unwrap()]);
    // The command says its mask, then unblocks SIGTERM (its default ends it) and waits.
    let command = "import signal, sys, time\nblk = [l for l in open('/proc/self/status') if l.startswith('SigBlk:')][0]\nprint(blk.split()[1], flush=True)\nsignal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGTERM])\nprint('ready', flush=True)\ntime.sleep(300)";
    let mut exec = with_blocked_mask(
        dir.path(),
        &[
            "--socket",
            d.socket.to_str().unwrap(),
            "exec",
            "--task",
            "checkout-flow",
            "--",
            "python3",
            "-c",
            command,
        ],
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    use std::io::BufRead;
    let mut out = std::io::BufReader::new(exec.stdout.take().unwrap());
    let mut mask = String::new();
    out.read_line(&mut mask).unwrap();
    let mut ready = String::new();
    out.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready", "mask line: {mask}");
    let mask = u64::from_str_radix(mask.trim(), 16).unwrap();
    // SIGHUP 1, SIGINT 2, SIGTERM 15: bits 0, 1, 14.
    let given = (1 << 0) | (1 << 1) | (1 << 14);
    assert_eq!(mask & given, given, "the command's mask: {mask:016x}");
    let st = Command::new("kill")
        .args(["-TERM", &exec.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    let ended = ended_within(&mut exec, Duration::from_secs(30));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        ended.and_then(|s| s.signal()),
        Some(15),
        "exec did not end by its command's SIGTERM: {ended:?}"
    );
}

/// `serve --passphrase-fd 5` with descriptor 5 not inherited read the daemon's own
/// descriptor 5 (its audit log, opened by then): its bytes went through Argon2, "wrong
/// passphrase", exit 3. Now the descriptor is checked before anything is opened, as every
/// other command does: "it is not open", exit 2, no audit log made.
#[test]
fn serve_refuses_a_passphrase_fd_not_inherited_before_opening_anything() {
    let dir = tempdir();
    let pp = dir.path().join("pp");
    std::fs::write(&pp, "correct horse battery staple zebra 42").unwrap();
    daemon::ok(
        dir.path(),
        &["init", "--passphrase-file", pp.to_str().unwrap()],
        None,
    );
    let audit = dir.path().join("a.jsonl");
    for fd in ["3", "5", "7"] {
        let out = daemon::cmd(dir.path())
            .args(["--passphrase-fd", fd])
            .args(["--socket", dir.path().join("s.sock").to_str().unwrap()])
            .args(["serve", "--audit", audit.to_str().unwrap()])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_eq!(out.status.code(), Some(2), "fd {fd}: {err}");
        assert!(
            err.contains(&format!(
                "file descriptor {fd} cannot be read: it is not open"
            )),
            "fd {fd}: {err}"
        );
        assert!(!audit.exists(), "fd {fd}: the audit log was opened first");
    }
}

/// Found by the re-attacker of this pass's fixes (twenty-sixth pass): under a file-size limit,
/// `lint --output FILE` and `lint` with stdout to a file failed with a bare "File too large",
/// not naming the limit as every other writer does. Each names it now.
#[test]
fn lint_under_a_file_size_limit_names_the_limit() {
    let dir = tempdir();
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.toml");
    let out_file = dir.path().join("lint.sarif");
    let out = under_fsize(
        dir.path(),
        200,
        &[
            "lint",
            policy,
            "--format",
            "sarif",
            "--output",
            out_file.to_str().unwrap(),
        ],
    )
    .output()
    .unwrap();
    let err = stderr_of(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("file-size limit"), "--output: {err}");
    let sink = std::fs::File::create(dir.path().join("stdout.sarif")).unwrap();
    let out = under_fsize(dir.path(), 200, &["lint", policy, "--format", "sarif"])
        .stdout(sink)
        .output()
        .unwrap();
    let err = stderr_of(&out);
    assert_ne!(out.status.code(), Some(0), "{err}");
    assert!(err.contains("file-size limit"), "stdout: {err}");
}

/// Found by the re-attacker of this pass's fixes (twenty-sixth pass): `serve --passphrase-file
/// /dev/fd/N` (or `/proc/self/fd/N`, or `--identity-file /dev/fd/N`) with N not inherited was
/// read after the daemon had opened its own files (the audit log read as the passphrase:
/// "wrong passphrase"). It is refused before anything is opened now.
#[test]
fn serve_refuses_a_passphrase_file_naming_an_fd_not_inherited_before_opening_anything() {
    for (opt, path) in [
        ("--passphrase-file", "/dev/fd/5"),
        ("--passphrase-file", "/proc/self/fd/5"),
        ("--identity-file", "/dev/fd/5"),
    ] {
        let dir = tempdir();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let out = with_env(Command::new(daemon::bin()), dir.path())
            .env("SCOPEVAULT_STATE_DIR", home.join("state"))
            .env("SCOPEVAULT_AUDIT", home.join("audit.jsonl"))
            .args(["serve", opt, path, "--socket"])
            .arg(dir.path().join("s.sock"))
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let err = stderr_of(&out);
        assert_ne!(out.status.code(), Some(0), "{err}");
        assert!(!err.contains("wrong passphrase"), "{opt} {path}: {err}");
        let made: Vec<_> = std::fs::read_dir(&home).unwrap().collect();
        assert!(made.is_empty(), "{opt} {path}: made {made:?}: {err}");
    }
}

/// Found by the twenty-sixth pass's review (twenty-seventh pass): `demo` given SIGTERM,
/// SIGINT and SIGHUP blocked (an inherited signal mask) ran on to its end after SIGTERM,
/// exit 0, as `serve` and `exec` did before the twenty-sixth pass. It unblocks the signals it
/// handles: SIGTERM once its daemon is up stops that daemon, removes its directory and exits
/// 128+15.
#[test]
fn demo_given_sigterm_blocked_still_stops_and_cleans_up_on_it() {
    use std::io::{BufRead, BufReader};
    let dir = tempdir();
    let tmp = dir.path().join("tmp");
    std::fs::create_dir(&tmp).unwrap();
    let mut demo = with_blocked_mask(dir.path(), &["demo"])
        .env("TMPDIR", &tmp)
        .env("SCOPEVAULT_TEST_ARGON2", "64,1,1")
        .env_remove("SCOPEVAULT_SOCKET")
        .env_remove("SCOPEVAULT_VAULT")
        .env_remove("SCOPEVAULT_AUDIT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(demo.stdout.take().unwrap()).lines();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|l| l.contains("daemon up (pid ")),
        "the demo started no daemon"
    );
    let st = Command::new("kill")
        .args(["-TERM", &demo.id().to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    // The rest of its output read, so that a full pipe does not hold it.
    let reader = std::thread::spawn(move || lines.count());
    let ended = ended_within(&mut demo, Duration::from_secs(30));
    let _ = reader.join();
    assert_eq!(
        ended.and_then(|s| s.code()),
        Some(128 + 15),
        "the demo did not stop on SIGTERM: {ended:?}"
    );
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().flatten().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}
