//! `exec` supervising its command: the signals it forwards, never dies of and re-raises, and
//! its wait for the command's output once stopped (twenty-fifth pass, found by the attacker of
//! exec as a supervisor).

use crate::common::daemon;
use crate::common::skip;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use daemon::{secret_of, setup_vault, tempdir, Daemon};

fn start(dir: &Path) -> Daemon {
    let id = setup_vault(dir);
    Daemon::start(dir, &["--identity-file", id.to_str().unwrap()])
}

/// `exec ARGS -- sh -c SCRIPT` against `d`, stdout piped, stderr piped.
fn spawn_exec(d: &Daemon, args: &[&str], script: &str) -> Child {
    daemon::cmd_with_default_signals(&d.dir)
        .arg("--socket")
        .arg(&d.socket)
        .arg("exec")
        .args(args)
        .args(["--task", "checkout-flow", "--", "sh", "-c", script])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Read `exec`'s stdout up to a line `ready` (its command's); the reader, to read on.
fn wait_ready(exec: &mut Child) -> BufReader<std::process::ChildStdout> {
    let mut out = BufReader::new(exec.stdout.take().unwrap());
    let mut line = String::new();
    while line.trim() != "ready" {
        line.clear();
        assert_ne!(
            out.read_line(&mut line).unwrap(),
            0,
            "no `ready` from the command"
        );
    }
    out
}

/// `exec`'s exit status, or `None` if it still runs after `within` (then it is killed).
fn ended_within(exec: &mut Child, within: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if let Some(s) = exec.try_wait().unwrap() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = exec.kill();
    let _ = exec.wait();
    None
}

fn kill(sig: &str, target: &str) {
    let st = Command::new("kill")
        .args([&format!("-{sig}"), "--", target])
        .status()
        .unwrap();
    assert!(st.success(), "kill -{sig} {target}");
}

fn read_pid(p: &Path) -> Option<u32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

fn alive(pid: u32) -> bool {
    // A zombie is not running any more; only its parent can reap it.
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// SIGQUIT, SIGUSR1, SIGUSR2 and SIGALRM killed `exec` outright: its command ran on,
/// orphaned, the artefact it wrote kept the secret, and the `--files` directory stayed. Each is
/// forwarded now (the command's trap runs and sets the exit code), and `exec` scrubs and
/// removes the directory as for any end of its command.
#[test]
fn exec_forwards_quit_usr1_usr2_and_alrm_and_never_dies_of_them() {
    let dir = tempdir();
    let d = start(dir.path());
    for sig in ["QUIT", "USR1", "USR2", "ALRM"] {
        let art = dir.path().join(format!("art-{sig}"));
        std::fs::create_dir(&art).unwrap();
        let script = format!(
            "ulimit -c 0; trap 'echo got > {a}/got; exit 7' {sig}; echo \"$SCOPEVAULT_CREDENTIALS_DIRECTORY\" > {a}/dir; cat \"$SCOPEVAULT_CREDENTIALS_DIRECTORY/shop-buyer/password\" > {a}/trace.log; echo ready; while :; do sleep 0.05; done",
            a = art.display()
        );
        let art_arg = art.to_str().unwrap();
        let mut exec = spawn_exec(&d, &["--files", "--artifacts", art_arg], &script);
        let _out = wait_ready(&mut exec);
        kill(sig, &exec.id().to_string());
        let status = ended_within(&mut exec, Duration::from_secs(20))
            .unwrap_or_else(|| panic!("{sig}: exec still ran 20 s after it"));
        assert_eq!(status.code(), Some(7), "{sig}: exec died of it: {status}");
        assert!(art.join("got").exists(), "{sig} was not forwarded");
        let trace = std::fs::read_to_string(art.join("trace.log")).unwrap();
        assert!(
            !trace.contains(&secret_of("shop-buyer")),
            "{sig}: not scrubbed"
        );
        let files = std::fs::read_to_string(art.join("dir")).unwrap();
        assert!(!Path::new(files.trim()).exists(), "{sig}: {files} left");
    }
}

/// A SIGTERM that came while `exec` started its command killed `exec` (its handlers were
/// installed after the spawn): the command ran on, orphaned, unscrubbed. The handlers are in
/// place from before the spawn now: sent at delays spread over `exec`'s start, a SIGTERM
/// either ends `exec` before any command started, or is forwarded, and `exec` waits for the
/// command and scrubs what it wrote.
#[test]
fn a_sigterm_while_exec_starts_its_command_never_leaves_it_running() {
    let dir = tempdir();
    let d = start(dir.path());
    let art = dir.path().join("art");
    let art_arg = art.to_str().unwrap().to_owned();
    let script = format!(
        "echo $$ > {a}/pid; cat \"$SCOPEVAULT_CREDENTIALS_DIRECTORY/shop-buyer/password\" > {a}/trace.log; exec sleep 3",
        a = art.display()
    );
    // How long `exec` takes to start its command here, to spread the signals around it.
    std::fs::create_dir(&art).unwrap();
    let t0 = Instant::now();
    let mut exec = spawn_exec(&d, &["--files", "--artifacts", &art_arg], &script);
    while read_pid(&art.join("pid")).is_none() {
        std::thread::sleep(Duration::from_micros(200));
    }
    let started = t0.elapsed();
    kill("TERM", &exec.id().to_string());
    ended_within(&mut exec, Duration::from_secs(20)).expect("exec ended");
    let mut ran = 0;
    for i in 0..150u32 {
        std::fs::remove_dir_all(&art).unwrap();
        std::fs::create_dir(&art).unwrap();
        let mut exec = spawn_exec(&d, &["--files", "--artifacts", &art_arg], &script);
        std::thread::sleep(started * (50 + i) / 100);
        let _ = Command::new("kill")
            .args(["-TERM", &exec.id().to_string()])
            .status();
        let status = ended_within(&mut exec, Duration::from_secs(20)).expect("exec ended");
        let Some(pid) = read_pid(&art.join("pid")) else {
            continue;
        };
        ran += 1;
        let running = alive(pid);
        if running {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        assert!(
            !running,
            "run {i}: exec ended ({status}) with its command {pid} still running"
        );
        let trace = std::fs::read_to_string(art.join("trace.log")).unwrap_or_default();
        assert!(
            !trace.contains(&secret_of("shop-buyer")),
            "run {i}: not scrubbed"
        );
    }
    assert!(ran > 0, "no run reached the command");
}

/// A stopped command was never woken: the SIGTERM forwarded to it stayed pending, and `exec`
/// waited on. SIGCONT follows a forwarded SIGTERM (SIGINT, SIGHUP, SIGQUIT) now, as
/// timeout(1) sends it.
#[test]
fn a_stopped_command_is_woken_after_a_forwarded_sigterm() {
    let dir = tempdir();
    let d = start(dir.path());
    let pidfile = dir.path().join("pid");
    let script = format!(
        "echo $$ > {}; echo ready; exec sleep 300",
        pidfile.display()
    );
    let mut exec = spawn_exec(&d, &[], &script);
    let _out = wait_ready(&mut exec);
    let pid = read_pid(&pidfile).unwrap();
    kill("STOP", &pid.to_string());
    let state = || {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .chars()
            .next()
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while state() != Some('T') && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(state(), Some('T'), "the command did not stop");
    kill("TERM", &exec.id().to_string());
    let status = ended_within(&mut exec, Duration::from_secs(20));
    let _ = Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .stderr(Stdio::null())
        .status();
    let status = status.expect("exec still ran 20 s after SIGTERM, its command stopped");
    assert!(!alive(pid), "the command still runs");
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(15), "{status}");
}

/// SIGTERM while a process the command left behind (`setsid sleep 300 &`) held its output:
/// the command died at once, but `exec` waited, unscrubbed, as long as the leftover ran. Now
/// once the command has exited after a stopping signal, `exec` passes on its output for at
/// most two seconds more, then scrubs and exits.
#[test]
fn after_sigterm_a_leftover_holding_the_output_does_not_keep_exec_from_its_scrub() {
    let dir = tempdir();
    let d = start(dir.path());
    let art = dir.path().join("art");
    std::fs::create_dir(&art).unwrap();
    let script = format!(
        "printf %s \"$SCOPEVAULT_SHOP_BUYER_PASSWORD\" > {a}/t.log; setsid sleep 300 & echo $! > {a}/left; echo ready; exec sleep 300",
        a = art.display()
    );
    let mut exec = spawn_exec(&d, &["--artifacts", art.to_str().unwrap()], &script);
    let _out = wait_ready(&mut exec);
    kill("TERM", &exec.id().to_string());
    let status = ended_within(&mut exec, Duration::from_secs(30));
    if let Some(left) = read_pid(&art.join("left")) {
        let _ = Command::new("kill")
            .args(["-KILL", &left.to_string()])
            .status();
    }
    status.expect("exec still ran 30 s after SIGTERM, its command gone");
    let t = std::fs::read_to_string(art.join("t.log")).unwrap();
    assert!(!t.contains(&secret_of("shop-buyer")), "not scrubbed: {t}");
}

/// After SIGTERM, `exec` scrubbed while a process the command left behind still held its
/// output (the bounded drain), and said nothing: an artefact that process wrote later kept
/// the value unnoticed. `exec` warns on stderr that the scrub ran with such a process left.
#[test]
fn after_sigterm_exec_warns_that_a_leftover_still_held_the_output_at_its_scrub() {
    use std::io::Read;
    let dir = tempdir();
    let d = start(dir.path());
    let art = dir.path().join("art");
    std::fs::create_dir(&art).unwrap();
    let script = format!(
        "setsid sleep 300 & echo $! > {a}/left; echo ready; exec sleep 300",
        a = art.display()
    );
    let mut exec = spawn_exec(&d, &["--artifacts", art.to_str().unwrap()], &script);
    let _out = wait_ready(&mut exec);
    let mut stderr = exec.stderr.take().unwrap();
    kill("TERM", &exec.id().to_string());
    let status = ended_within(&mut exec, Duration::from_secs(30));
    if let Some(left) = read_pid(&art.join("left")) {
        let _ = Command::new("kill")
            .args(["-KILL", &left.to_string()])
            .status();
    }
    status.expect("exec still ran 30 s after SIGTERM, its command gone");
    let mut err = String::new();
    stderr.read_to_string(&mut err).unwrap();
    assert!(
        err.contains("a process the command left behind still held its output"),
        "{err}"
    );
}

/// A command that died of a signal made `exec` exit 128+N, so a shell loop of checks went on
/// after Ctrl-C. `exec` dies of the same signal now, after its scrub (`$?` is still 128+N);
/// of a signal that dumps core (SIGQUIT) it exits 128+N.
#[test]
fn exec_dies_of_the_signal_its_command_died_of() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempdir();
    let d = start(dir.path());
    for (sig, number) in [("INT", 2), ("TERM", 15), ("HUP", 1), ("QUIT", 3)] {
        let art = dir.path().join(format!("art-{sig}"));
        std::fs::create_dir(&art).unwrap();
        let script = format!(
            "ulimit -c 0; printf %s \"$SCOPEVAULT_SHOP_BUYER_PASSWORD\" > {a}/t.log; kill -{sig} $$",
            a = art.display()
        );
        let exec = spawn_exec(&d, &["--artifacts", art.to_str().unwrap()], &script);
        let out = exec.wait_with_output().unwrap();
        if sig == "QUIT" {
            assert_eq!(
                out.status.code(),
                Some(128 + number),
                "{sig}: {:?}",
                out.status
            );
        } else {
            assert_eq!(out.status.signal(), Some(number), "{sig}: {:?}", out.status);
        }
        let t = std::fs::read_to_string(art.join("t.log")).unwrap();
        assert!(!t.contains(&secret_of("shop-buyer")), "{sig}: not scrubbed");
    }
}

/// A SIGKILL sent to `exec`'s whole process group (`timeout -s KILL`, `timeout -k`,
/// supervisord's killasgroup, a CI runner ending a job) killed `exec` alone once the command had
/// a process group of its own: the command ran on, orphaned, with the values in its
/// environment, its artefacts never scrubbed. The command shares `exec`'s group: the group's
/// SIGKILL ends both.
#[test]
fn a_sigkill_to_execs_process_group_leaves_no_command_running() {
    use std::os::unix::process::CommandExt;
    let dir = tempdir();
    let d = start(dir.path());
    let pidfile = dir.path().join("command.pid");
    let mut exec = daemon::cmd(&d.dir)
        .arg("--socket")
        .arg(&d.socket)
        .args(["exec", "--task", "checkout-flow", "--", "sh", "-c"])
        .arg(format!(
            "echo $$ > '{}'; echo ready; exec sleep 300",
            pidfile.display()
        ))
        .process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _out = wait_ready(&mut exec);
    let command = read_pid(&pidfile).expect("the command's pid");
    kill("KILL", &format!("-{}", exec.id()));
    let status = ended_within(&mut exec, Duration::from_secs(20)).expect("exec ended");
    // SIGKILL reaches every process of the group in the one `kill`; an orphan is reaped by
    // init (or a subreaper) some time after it dies.
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(command) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let running = alive(command);
    if running {
        let _ = Command::new("kill")
            .args(["-KILL", &command.to_string()])
            .status();
    }
    assert!(
        !running,
        "the command ran on after its group's SIGKILL ({status})"
    );
}

/// `exec` started with SIGCHLD ignored (passed on by its caller) lost its command: the kernel
/// reaps such children itself, so the wait failed (`waiting for the command: No child
/// processes`, exit 2), the artefacts kept the value. `exec` puts SIGCHLD back at its default
/// (as timeout(1) does); its command still starts with SIGCHLD ignored, as it was given.
#[test]
fn exec_given_sigchld_ignored_returns_its_commands_code_and_scrubs() {
    if Command::new("python3").arg("--version").output().is_err() {
        return skip::skip("python3 is not installed");
    }
    let dir = tempdir();
    let d = start(dir.path());
    let art = dir.path().join("art");
    std::fs::create_dir(&art).unwrap();
    let script = format!(
        "printf %s \"$SCOPEVAULT_SHOP_BUYER_PASSWORD\" > {a}/t.log; sleep 0.2; exit 7",
        a = art.display()
    );
    let template = daemon::cmd(&d.dir);
    // `exec ARGS -- COMMAND` started by python3 with SIGCHLD ignored.
    let run = |args: &[&str], command: &[&str]| {
        let mut c = Command::new("python3");
        for (k, v) in template.get_envs() {
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        c.args([
            "-c",
            "import os, signal, sys\nsignal.signal(signal.SIGCHLD, signal.SIG_IGN)\nos.execv(sys.argv[1], sys.argv[1:])",
        ])
        .arg(daemon::bin())
        .arg("--socket")
        .arg(&d.socket)
        .arg("exec")
        .args(args)
        .args(["--task", "checkout-flow", "--"])
        .args(command)
        .stdin(Stdio::null())
        .output()
        .unwrap()
    };
    let out = run(
        &["--artifacts", art.to_str().unwrap()],
        &["sh", "-c", &script],
    );
    assert_eq!(
        out.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let t = std::fs::read_to_string(art.join("t.log")).unwrap();
    assert!(!t.contains(&secret_of("shop-buyer")), "not scrubbed: {t}");
    // Not through `sh`, which puts SIGCHLD back at its default itself.
    let out = run(&[], &["grep", "^SigIgn:", "/proc/self/status"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let hex = stdout
        .trim()
        .strip_prefix("SigIgn:")
        .expect("a SigIgn line");
    let ign = u64::from_str_radix(hex.trim(), 16).unwrap();
    // SIGCHLD is 17: bit 16.
    assert_ne!(
        ign & (1 << 16),
        0,
        "the command's SIGCHLD is not ignored: {ign:016x}"
    );
}

/// A SIGKILL to `exec` alone (`kill -9 PID`, a supervisor that kills the main process only)
/// left its command running, orphaned, with the values in its environment. The command gets
/// SIGKILL from the kernel when `exec` dies (`PR_SET_PDEATHSIG`).
#[test]
fn a_sigkill_to_exec_alone_leaves_no_command_running() {
    let dir = tempdir();
    let d = start(dir.path());
    let pidfile = dir.path().join("command.pid");
    let script = format!(
        "echo $$ > '{}'; echo ready; exec sleep 300",
        pidfile.display()
    );
    let mut exec = spawn_exec(&d, &[], &script);
    let _out = wait_ready(&mut exec);
    let command = read_pid(&pidfile).expect("the command's pid");
    kill("KILL", &exec.id().to_string());
    let status = ended_within(&mut exec, Duration::from_secs(20)).expect("exec ended");
    let deadline = Instant::now() + Duration::from_secs(20);
    while alive(command) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let running = alive(command);
    if running {
        let _ = Command::new("kill")
            .args(["-KILL", &command.to_string()])
            .status();
    }
    assert!(
        !running,
        "the command ran on after exec's SIGKILL ({status})"
    );
}
