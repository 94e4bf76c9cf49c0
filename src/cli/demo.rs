//! `scopevault demo`: the whole product once, in a throwaway directory, narrated.
//!
//! Every step runs the real thing: this same binary as `init`, `policy apply`, `cred set`,
//! `serve` (a child process with its own socket and audit log), `unlock`, `exec`, `get` and
//! `audit verify`. Nothing outside the temporary directory is read or written, and the
//! directory is removed at the end.
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::RngCore;

use super::args::GlobalArgs;
use crate::client::Client;

const POLICY: &str = include_str!("../../examples/policy.toml");

struct Demo {
    exe: PathBuf,
    dir: PathBuf,
    step: usize,
}

fn random_token(bytes: usize) -> String {
    let mut raw = zeroize::Zeroizing::new(vec![0u8; bytes]);
    rand::rngs::OsRng.fill_bytes(&mut raw);
    data_encoding::BASE64URL_NOPAD.encode(&raw)
}

impl Demo {
    fn say(&mut self, title: &str, text: &str) -> Result<(), super::output::StdoutError> {
        self.step += 1;
        outln!("\n── step {}: {title}", self.step)?;
        for line in text.lines() {
            outln!("   {line}")?;
        }
        Ok(())
    }

    /// This binary with the demo's vault, socket and audit log, and nothing from the caller's
    /// environment that could point elsewhere.
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.env("SCOPEVAULT_VAULT", self.dir.join("vault.scopevault"))
            .env("SCOPEVAULT_SOCKET", self.dir.join(DEMO_SOCKET))
            .env("SCOPEVAULT_AUDIT", self.dir.join("audit.jsonl"))
            .env("XDG_STATE_HOME", self.dir.join("state"))
            .env("XDG_DATA_HOME", self.dir.join("data"))
            // The rollback record and the audit anchor: in the throwaway directory, even as
            // root (issue 14, item 10: the demo leaves no trace anywhere).
            .env("SCOPEVAULT_STATE_DIR", self.dir.join("state/scopevault"))
            .env_remove("SCOPEVAULT_IDENTITY_FILE")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("LISTEN_FDS")
            .env_remove("LISTEN_PID")
            .env_remove("CREDENTIALS_DIRECTORY");
        c
    }

    /// Run `scopevault ARGS` (stdin from `input`), show the command, return stdout+stderr.
    fn run(&self, args: &[&str], input: Option<&str>, show: &str) -> anyhow::Result<Output> {
        outln!("   $ scopevault {show}")?;
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("cannot run scopevault")?;
        if let Some(s) = input {
            child.stdin.take().expect("piped").write_all(s.as_bytes())?;
        }
        drop(child.stdin.take());
        let out = child.wait_with_output()?;
        Ok(Output {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }

    fn must(&self, args: &[&str], input: Option<&str>, show: &str) -> anyhow::Result<Output> {
        let out = self.run(args, input, show)?;
        if out.code != Some(0) {
            bail!("`scopevault {show}` failed: {}", out.stderr.trim());
        }
        Ok(out)
    }
}

struct Output {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// What a step's command printed, indented; escaped once more, as every line the demo shows
/// (the commands escape what they print already: escaping is idempotent on that).
fn indent(text: &str) -> Result<(), super::output::StdoutError> {
    for line in text.lines() {
        outln!("     {}", crate::text::escape_for_terminal(line))?;
    }
    Ok(())
}

/// The demo's daemon, for the signal handler of [`run`]: signalled through its pidfd, so a
/// signal never reaches another process that got its pid after it was reaped.
static DAEMON: std::sync::Mutex<Option<std::sync::Arc<crate::sys::ChildSignals>>> =
    std::sync::Mutex::new(None);

fn daemon_signals() -> Option<std::sync::Arc<crate::sys::ChildSignals>> {
    DAEMON.lock().unwrap_or_else(|e| e.into_inner()).clone()
}
/// Set by that handler: the demo's own steps stop reporting (their daemon is going away).
static INTERRUPTED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Ctrl-C, SIGTERM or a hangup in the middle of the demo: stop its daemon and remove its
/// directory, then exit 128+N, as the demo promises to leave nothing behind (found by
/// attacking the first day, fourteenth pass: an interrupted demo left its passphrase, vault
/// and audit log in /tmp, and a daemon running with no parent).
fn clean_up_on_signals(dir: std::path::PathBuf) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .context("cannot install signal handlers")?;
    // Given blocked (an inherited signal mask), they stayed pending and the demo ran on to its
    // end (twenty-seventh pass, found by the twenty-sixth pass's review; `serve` and `exec`
    // unblocked theirs since the twenty-sixth).
    crate::sys::unblock_signals(&[SIGINT, SIGTERM, SIGHUP]);
    std::thread::spawn(move || {
        if let Some(sig) = signals.forever().next() {
            INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
            if let Some(daemon) = daemon_signals() {
                let pid = daemon.pid();
                let _ = daemon.send(SIGTERM);
                // Until it has exited (a zombie, our child) or 3 s have passed.
                let deadline = Instant::now() + Duration::from_secs(3);
                while Instant::now() < deadline
                    && std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                        !st.rsplit(')')
                            .next()
                            .unwrap_or("")
                            .trim_start()
                            .starts_with('Z')
                    })
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                let _ = daemon.send(signal_hook::consts::SIGKILL);
            }
            let _ = remove_tree(&dir);
            // Not `eprintln!`: on a closed stderr (`demo 2>&1 | head`, then Ctrl-C) it panics
            // this thread before the exit, and the demo waits for it for ever.
            let _ = writeln!(
                std::io::stderr(),
                "\ninterrupted: the demo's daemon is stopped and {} removed",
                super::shown(&dir)
            );
            std::process::exit(128 + sig);
        }
    });
    Ok(())
}

/// The daemon child: SIGTERM on drop if the demo fails half-way, so nothing is left running.
struct DaemonChild(Option<Child>);

impl DaemonChild {
    fn terminate(&mut self) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.0.take().context("the daemon is not running")?;
        // Reaped below (for a kernel without pidfds, which signals by pid).
        if let Some(d) = daemon_signals() {
            d.reaped();
        }
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(st) = child.try_wait()? {
                return Ok(st);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                bail!("the daemon did not stop within 20 s of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for DaemonChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            if let Some(d) = daemon_signals() {
                d.reaped();
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The global options `demo` does not use (it makes its own vault, socket and audit log), by
/// argument id, with the flag and the environment variable that set each.
const IGNORED: [(&str, &str, Option<&str>); 7] = [
    ("vault", "--vault", Some("SCOPEVAULT_VAULT")),
    ("socket", "--socket", Some("SCOPEVAULT_SOCKET")),
    ("passphrase_file", "--passphrase-file", None),
    ("passphrase_fd", "--passphrase-fd", None),
    (
        "identity_file",
        "--identity-file",
        Some("SCOPEVAULT_IDENTITY_FILE"),
    ),
    ("no_keyring", "--no-keyring", None),
    ("allow_rollback", "--allow-rollback", None),
];

/// Of the global options `demo` ignores, those typed on its command line and those set in
/// the environment, read again from the command line by clap (the parsed [`GlobalArgs`] do
/// not say where a value came from).
fn ignored_settings() -> (Vec<&'static str>, Vec<&'static str>) {
    use clap::parser::ValueSource;
    use clap::CommandFactory;
    let (mut typed, mut env) = (Vec::new(), Vec::new());
    let Ok(m) = super::args::Cli::command().try_get_matches_from(std::env::args_os()) else {
        return (typed, env);
    };
    let Some(("demo", sub)) = m.subcommand() else {
        return (typed, env);
    };
    for (id, flag, var) in IGNORED {
        match sub.value_source(id) {
            Some(ValueSource::CommandLine) => typed.push(flag),
            Some(ValueSource::EnvVariable) => env.extend(var),
            _ => {}
        }
    }
    (typed, env)
}

pub(crate) fn run(_g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    // Given SIGCHLD ignored, the kernel would reap the daemon and the clients itself: every
    // wait failed ("No child processes").
    crate::sys::take_sigchld_default();
    // `demo --help` lists the global options, and `demo --vault V --socket S` ran its
    // throwaway demo without a word, as if on V and S (nineteenth pass). Typed, they are a
    // usage error before anything runs; from the environment (an admin's shell) a note.
    let (typed, env) = ignored_settings();
    if !typed.is_empty() {
        bail!(
            "`scopevault demo` takes no {}: it always runs on a throwaway vault, socket and audit log of its own, in a temporary directory it removes at the end, and reads or writes nothing of yours; run `scopevault demo` without them",
            typed.join(", ")
        );
    }
    if !env.is_empty() {
        errln!(
            "note: scopevault demo ignores {} from the environment: it uses a throwaway vault, socket and audit log of its own, and reads or writes nothing of yours",
            env.join(", ")
        );
    }
    // What earlier demos of this uid left when they were killed outright (SIGKILL, the OOM
    // killer: nothing of a demo runs then, so its directory stayed for good).
    let tmp_dir = std::env::temp_dir();
    match remove_stale_dirs(&tmp_dir) {
        Ok(done) => {
            for (left, pid) in done {
                match left {
                    Ok(path) => errln!(
                        "note: removed {}, left by an earlier demo (pid {pid}) that is gone (killed before it could clean up)",
                        super::shown(&path)
                    ),
                    Err((path, e)) => errln!(
                        "note: cannot remove {}, left by an earlier demo (pid {pid}) that is gone: {e}",
                        super::shown(&path)
                    ),
                }
            }
        }
        Err((why, left)) => {
            for (path, pid) in left {
                errln!(
                    "note: not removing {}, left by an earlier demo (pid {pid}) that is gone: {} is no safe place to remove it from ({why}); remove it yourself, or set TMPDIR to a directory of your own",
                    super::shown(&path),
                    super::shown(&tmp_dir)
                );
            }
        }
    }
    let tmp = tempfile::Builder::new()
        .prefix(DIR_PREFIX)
        .tempdir()
        .context("cannot create a temporary directory")?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o700))?;
    // Marked before anything else is put in it: a later demo removes it if this one is killed.
    mark(tmp.path()).context("cannot mark the demo directory")?;
    let dir = tmp.path().to_owned();
    // A socket is bound by a path of at most `SOCKET_PATH_MAX` bytes: under a long TMPDIR the
    // daemon could not start, and the demo said only "the daemon exited at start".
    let socket = dir.join(DEMO_SOCKET);
    let long = socket.as_os_str().len();
    if long > SOCKET_PATH_MAX {
        let shown = super::shown(&dir);
        drop(tmp);
        bail!(
            "the demo's socket would be {shown}/{DEMO_SOCKET}, {long} bytes, and a Unix socket's path may be at most {SOCKET_PATH_MAX}: run it with a shorter TMPDIR (e.g. `TMPDIR=/tmp scopevault demo`)"
        );
    }
    clean_up_on_signals(dir.clone())?;
    let mut d = Demo {
        exe: std::env::current_exe().context("cannot find this program's path")?,
        dir: dir.clone(),
        step: 0,
    };
    outln!("scopevault demo: a least-privilege credential vault for synthetic monitors.")?;
    outln!(
        "Everything happens in {} and is removed at the end.",
        super::shown(&dir)
    )?;

    let result = steps(&mut d);
    // Interrupted: the handler stops the daemon, removes the directory and exits 128+N; a
    // step that failed because of it must not exit first.
    while INTERRUPTED.load(std::sync::atomic::Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(50));
    }
    // Remove the directory whatever happened; a failure is still reported. Not
    // `TempDir::close`, which is `std::fs::remove_dir_all` ([`remove_tree`]).
    let removed = remove_tree(&tmp.keep());
    result?;
    removed.context("cannot remove the demo directory")?;
    if dir.exists() {
        bail!("the demo directory {} is still there", dir.display());
    }
    outln!(
        "\n── done: {} removed, nothing left behind.",
        super::shown(&dir)
    )?;
    outln!("   Next: `scopevault lint examples/policy.toml` in CI, docs/operations.md to deploy.")?;
    Ok(ExitCode::SUCCESS)
}

fn steps(d: &mut Demo) -> anyhow::Result<()> {
    // 1. A vault with a random passphrase (real argon2id parameters: a second or two).
    let pass_file = d.dir.join("passphrase");
    write_private(&pass_file, &random_token(24))?;
    let pf = pass_file.to_string_lossy().into_owned();
    d.say(
        "create an encrypted vault",
        "A random passphrase (in a 0600 file here; a real admin types it) protects the vault\n\
         key with argon2id. The vault file alone reveals nothing but its size.",
    )?;
    let out = d.must(
        &["init", "--passphrase-file", &pf],
        None,
        "init --passphrase-file passphrase",
    )?;
    indent(&out.stdout)?;

    // 2. The policy: examples/policy.toml, with this user as a runner too.
    let uid = crate::sys::current_uid();
    let policy = POLICY.replace(
        "users = [\"checkpoint\", \"root\"]",
        &format!("users = [\"checkpoint\", \"root\", \"{uid}\"]"),
    );
    let policy_file = d.dir.join("policy.toml");
    std::fs::write(&policy_file, &policy)?;
    d.say(
        "apply the reviewed policy",
        &format!(
            "examples/policy.toml says what each credential can do (scopes), what each monitoring\n\
             task needs, and who may fetch for it (runners; uid {uid} added so this demo can).\n\
             `policy apply` lints it first; its security warnings are the point of the demo."
        ),
    )?;
    let out = d.must(
        &[
            "--passphrase-file",
            &pf,
            "policy",
            "apply",
            &policy_file.to_string_lossy(),
        ],
        None,
        "policy apply policy.toml",
    )?;
    for line in out.stdout.lines().chain(out.stderr.lines()) {
        if line.contains("applied") || line.contains("security warnings") {
            indent(line)?;
        }
    }

    // 3. Secrets: random values, read from stdin, never arguments.
    let buyer_pw = random_token(12);
    let office_pw = random_token(12);
    let mut seed = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut seed);
    let totp_seed = data_encoding::BASE32_NOPAD.encode(&seed);
    d.say(
        "store the secrets",
        "Secret values come from stdin, a prompt or a file, never from the command line.",
    )?;
    for (cred, user, key, value) in [
        ("shop-buyer", Some("demo-buyer"), "password", &buyer_pw),
        (
            "shop-backoffice",
            Some("demo-admin"),
            "password",
            &office_pw,
        ),
        ("shop-2fa", None, "totp_seed", &totp_seed),
    ] {
        let mut args = vec!["--passphrase-file", &pf, "cred", "set", cred];
        let field = user.map(|u| format!("username={u}"));
        if let Some(f) = &field {
            args.extend(["--field", f]);
        }
        args.extend(["--secret", key]);
        let show = format!(
            "cred set {cred}{} --secret {key}   (value on stdin)",
            field
                .as_deref()
                .map(|f| format!(" --field {f}"))
                .unwrap_or_default()
        );
        d.must(&args, Some(value), &show)?;
    }

    // 4. The daemon.
    let socket = d.dir.join(DEMO_SOCKET);
    d.say(
        "start the daemon",
        "`scopevault serve` listens on a Unix socket only (no TCP), turns core dumps off, locks\n\
         its memory, and starts locked: it holds no key until an admin unlocks it.",
    )?;
    outln!("   $ scopevault serve --socket run/scopevault.sock --audit audit.jsonl &")?;
    let log = std::fs::File::create(d.dir.join("daemon.log"))?;
    let mut serve = d.cmd();
    serve
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // The daemon goes with the demo, whatever ends it: the demo stops it itself on an error, a
    // closed stdout or a signal it can handle, but nothing of the demo runs after SIGKILL (or
    // the OOM killer), and its daemon ran on for ever (twentieth pass). The kernel sends it
    // SIGTERM then, which it handles as every stop.
    crate::sys::terminate_with_parent(&mut serve, rustix::process::Signal::TERM);
    let child = serve.spawn().context("cannot start the daemon")?;
    *DAEMON.lock().unwrap_or_else(|e| e.into_inner()) = Some(std::sync::Arc::new(
        crate::sys::ChildSignals::new(child.id()),
    ));
    let mut daemon = DaemonChild(Some(child));
    let health = wait_ready(&socket, &mut daemon)?;
    outln!(
        "     daemon up (pid {}), locked: {}",
        daemon.0.as_ref().map(|c| c.id()).unwrap_or(0),
        health.locked
    )?;
    let out = d.must(
        &["unlock", "--passphrase-file", &pf],
        None,
        "unlock --passphrase-file passphrase",
    )?;
    indent(&out.stdout)?;

    // 5. A check fetches its login as a real client.
    d.say(
        "a monitoring check fetches its login",
        "The check of task `checkout-flow` runs under `scopevault exec`: the daemon checks the\n\
         caller's uid with the kernel (SO_PEERCRED), hands over only this task's credential,\n\
         audits it first, and exec masks the secret if the check prints it by mistake.",
    )?;
    let script = "echo \"check: signing in to https://shop.example.com as $SCOPEVAULT_SHOP_BUYER_USERNAME\"; \
                  echo \"check: (oops, a debug line) password=$SCOPEVAULT_SHOP_BUYER_PASSWORD\"; \
                  echo 'check: checkout completed'";
    let started = std::time::Instant::now();
    let out = d.must(
        &["exec", "--task", "checkout-flow", "--", "sh", "-c", script],
        None,
        "exec --task checkout-flow -- ./check-checkout.sh",
    )?;
    // A measured figure, never a canned one: the wall time of that `scopevault exec`.
    let took = started.elapsed();
    indent(&out.stdout)?;
    outln!(
        "   (measured by the demo: `scopevault exec` ran for {} ms, from start to exit, the \
         fetch over the socket and the masking included)",
        took.as_millis()
    )?;
    if out.stdout.contains(&buyer_pw) {
        bail!("the password was not masked in the check's output");
    }

    // 6. The over-scope warning.
    d.say(
        "an over-scoped credential",
        "Task `order-status` only needs to read orders, but its login is a back-office admin.\n\
         With enforce = \"warn\" the daemon hands it out and says so (\"deny\" would refuse).",
    )?;
    let out = d.must(
        &["get", "--task", "order-status", "--field", "username"],
        None,
        "get --task order-status --field username",
    )?;
    indent(&out.stderr)?;
    indent(&out.stdout)?;

    // 7. A refusal.
    d.say(
        "a task nobody may run",
        "Task `newsletter` has no runners: every fetch is refused and audited.",
    )?;
    let out = d.run(
        &["get", "--task", "newsletter"],
        None,
        "get --task newsletter",
    )?;
    indent(&out.stderr)?;
    outln!("     (exit code {})", out.code.unwrap_or(-1))?;

    // 8. The audit log.
    d.say(
        "the audit log",
        "One hash-chained JSON line per decision, durable before the secret left the daemon.\n\
         Values appear only as salted HMACs (`scopevault audit hash` finds them).",
    )?;
    let audit = std::fs::read_to_string(d.dir.join("audit.jsonl"))?;
    if let Some(rec) = audit
        .lines()
        .find(|l| l.contains("\"checkout-flow\"") && l.contains("\"allow\""))
    {
        let v: serde_json::Value = serde_json::from_str(rec)?;
        indent(&serde_json::to_string_pretty(&v)?)?;
    }
    for secret in [&buyer_pw, &office_pw, &totp_seed] {
        if audit.contains(secret.as_str()) {
            bail!("a secret value is in the audit log");
        }
    }
    outln!("     checked: no secret value appears in the audit log.")?;
    let out = d.must(&["audit", "verify"], None, "audit verify")?;
    indent(&out.stdout)?;

    // 9. Shutdown.
    d.say(
        "shut down",
        "SIGTERM: the daemon finishes in-flight requests, removes its socket and exits 0.",
    )?;
    let st = daemon.terminate()?;
    outln!("     daemon exited: {st}")?;
    if !st.success() {
        bail!("the daemon exited with {st}");
    }
    let log = std::fs::read_to_string(d.dir.join("daemon.log"))?;
    for secret in [&buyer_pw, &office_pw, &totp_seed] {
        if log.contains(secret.as_str()) {
            bail!("a secret value is in the daemon's log");
        }
    }
    Ok(())
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    Ok(())
}

/// The name every demo directory begins with, in `$TMPDIR`.
const DIR_PREFIX: &str = "scopevault-demo-";
/// The file in a demo directory naming the demo that made it: `PID START\n`, its pid and
/// that process's start time (field 22 of /proc/PID/stat, clock ticks since boot), so that
/// another process given the pid later is not taken for it.
const MARKER: &str = ".scopevault-demo";

/// The start time of process `pid` (field 22 of /proc/PID/stat), or `None` when there is no
/// such process.
fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses: count after its last `)`.
    stat.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(19)?
        .parse()
        .ok()
}

/// Write [`MARKER`] in the demo's directory `dir`.
fn mark(dir: &Path) -> anyhow::Result<()> {
    let me = std::process::id();
    let start = start_time(me).context("cannot read this process's start time in /proc")?;
    write_private(&dir.join(MARKER), &format!("{me} {start}\n"))
}

/// The demo that made the directory open as `dir` (its [`MARKER`], read without following
/// a link, a regular file of this uid): its pid and start time.
fn marked_by(dir: &rustix::fd::OwnedFd, uid: u32) -> Option<(u32, u64)> {
    use rustix::fs::{openat, Mode, OFlags};
    let fd = openat(
        dir,
        MARKER,
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    if rustix::fs::FileType::from_raw_mode(st.st_mode) != rustix::fs::FileType::RegularFile
        || st.st_uid != uid
        || st.st_size > 64
    {
        return None;
    }
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::fs::File::from(fd), &mut text).ok()?;
    let mut fields = text.split_whitespace();
    let pid = fields.next()?.parse().ok()?;
    let start = fields.next()?.parse().ok()?;
    fields.next().is_none().then_some((pid, start))
}

/// What [`remove_stale_dirs`] did with one directory: removed, or not (why), and the pid of
/// the demo that left it.
type Stale = (Result<PathBuf, (PathBuf, std::io::Error)>, u32);

/// Why [`remove_stale_dirs`] removed nothing, and the directories it left (each with the pid
/// of the demo that left it).
type NotRemoved = (String, Vec<(PathBuf, u32)>);

/// Why `tmp` (open as `fd`) is no place to remove anything from: another uid can rename its
/// entries (it is another's, or writable by others without the sticky bit), and so swap the
/// directory judged for another between the check and the removal.
fn others_can_rename_in(fd: &rustix::fd::OwnedFd, uid: u32) -> Option<String> {
    let st = rustix::fs::fstat(fd).ok()?;
    if st.st_uid != uid && st.st_uid != 0 {
        return Some(format!("it belongs to uid {}", st.st_uid));
    }
    (st.st_mode & 0o022 != 0 && st.st_mode & 0o1000 == 0).then(|| {
        "other users can write to it and it has no sticky bit (chmod +t), so they can rename its entries".to_owned()
    })
}

/// Remove the directories in `tmp` that demos of this uid left when they were killed (twenty-
/// second pass: a SIGKILLed demo's directory, with its passphrase, vault and audit log, stayed
/// for good). One is removed only when it is a directory, not a symbolic link, owned by this
/// (effective) uid, named `scopevault-demo-*`, and holds our [`MARKER`] naming a demo that is
/// gone: no process with its pid (never pid 0), or one that started at another time (the pid
/// given to another process since). Anything else is left alone, and nothing is followed
/// through a link. Where another uid can rename entries in `tmp`, nothing is removed: the
/// `Err` says why (twenty-second pass, found by attacking this pass's fixes: a directory of
/// that uid swapped in for the judged one by the final `rmdir` was removed instead).
fn remove_stale_dirs(tmp: &Path) -> Result<Vec<Stale>, NotRemoved> {
    use rustix::fs::{open, openat, statat, AtFlags, FileType, Mode, OFlags};
    let uid = rustix::process::geteuid().as_raw();
    let Ok(parent) = open(
        tmp,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    ) else {
        return Ok(Vec::new());
    };
    let Ok(entries) = rustix::fs::Dir::read_from(&parent) else {
        return Ok(Vec::new());
    };
    let mut gone = Vec::new();
    for e in entries.flatten() {
        let name = e.file_name().to_owned();
        if !name.to_bytes().starts_with(DIR_PREFIX.as_bytes()) {
            continue;
        }
        // Not following a link: a link is itself, never what it names.
        let Ok(meta) = statat(&parent, &name, AtFlags::SYMLINK_NOFOLLOW) else {
            continue;
        };
        if FileType::from_raw_mode(meta.st_mode) != FileType::Directory || meta.st_uid != uid {
            continue;
        }
        let Ok(dir) = openat(
            &parent,
            &name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            continue;
        };
        // The directory opened is the one judged above.
        let same = rustix::fs::fstat(&dir).is_ok_and(|st| {
            st.st_dev == meta.st_dev && st.st_ino == meta.st_ino && st.st_uid == uid
        });
        // Pid 0 is no process's: a marker naming it is not a demo's.
        let Some((pid, start)) = marked_by(&dir, uid).filter(|&(pid, _)| same && pid != 0) else {
            continue;
        };
        if start_time(pid) == Some(start) {
            continue;
        }
        gone.push((name, dir, pid));
    }
    let path_of = |name: &std::ffi::CStr| tmp.join(std::ffi::OsStr::from_bytes(name.to_bytes()));
    if let Some(why) = others_can_rename_in(&parent, uid).filter(|_| !gone.is_empty()) {
        return Err((
            why,
            gone.iter().map(|(n, _, pid)| (path_of(n), *pid)).collect(),
        ));
    }
    Ok(gone
        .into_iter()
        .map(|(name, dir, pid)| {
            let path = path_of(&name);
            (
                remove_judged(&parent, &name, &dir)
                    .map(|()| path.clone())
                    .map_err(|e| (path, e)),
                pid,
            )
        })
        .collect())
}

/// Remove the directory `name` in `parent`, judged and open as `dir`: its entries through
/// `dir`, the [`MARKER`] last (a removal that fails part-way leaves it marked, and the next
/// demo tries again), then `name` itself. `Ok` only when the directory judged is gone (no link
/// to it is left), not merely something that had its name.
fn remove_judged(
    parent: &rustix::fd::OwnedFd,
    name: &std::ffi::CStr,
    dir: &rustix::fd::OwnedFd,
) -> std::io::Result<()> {
    use rustix::fs::{statat, unlinkat, AtFlags, FileType};
    let mut names = Vec::new();
    for e in rustix::fs::Dir::read_from(dir)? {
        let n = e?.file_name().to_owned();
        if ![&b"."[..], b"..", MARKER.as_bytes()].contains(&n.to_bytes()) {
            names.push(n);
        }
    }
    for n in &names {
        let st = statat(dir, n, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(st.st_mode) == FileType::Directory {
            // Through the open directory, whatever its name is now, following no link; a
            // tree of any depth, with `exec`'s own stack, not a call per level
            // ([`remove_tree`]).
            let sub = super::exec::open_dir_at(dir, n.as_c_str())?;
            super::exec::empty_dir(&sub)?;
            drop(sub);
            unlinkat(dir, n, AtFlags::REMOVEDIR)?;
        } else {
            unlinkat(dir, n, AtFlags::empty())?;
        }
    }
    unlinkat(dir, MARKER, AtFlags::empty())?;
    unlinkat(parent, name, AtFlags::REMOVEDIR)?;
    if rustix::fs::fstat(dir)?.st_nlink != 0 {
        return Err(std::io::Error::other(
            "another directory took its name meanwhile and was removed instead; the one judged is still there",
        ));
    }
    Ok(())
}

/// Where the demo's daemon listens, under the demo's directory.
const DEMO_SOCKET: &str = "run/scopevault.sock";
/// The longest path a Unix socket can be bound at: `sun_path` holds 108 bytes with its NUL.
const SOCKET_PATH_MAX: usize = 107;

fn wait_ready(socket: &Path, daemon: &mut DaemonChild) -> anyhow::Result<crate::protocol::Health> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(child) = daemon.0.as_mut() {
            if let Some(st) = child.try_wait()? {
                // What the daemon said (its stderr, in the demo's directory) is the reason.
                let log = socket
                    .parent()
                    .and_then(Path::parent)
                    .map(|d| d.join("daemon.log"))
                    .and_then(|l| std::fs::read_to_string(l).ok())
                    .unwrap_or_default();
                let said = crate::text::escape_for_terminal(log.trim());
                bail!("the daemon exited at start ({st}): {said}");
            }
        }
        if let Ok(mut c) = Client::connect_within(socket, super::client_cmds::ANSWER_WAIT) {
            if let Ok(h) = c.health() {
                return Ok(h);
            }
        }
        if Instant::now() > deadline {
            bail!("the daemon did not answer within 30 s");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Remove the directory at `path` and everything in it, following no link. Not
/// `std::fs::remove_dir_all`, which on Linux calls itself once per level (an 800-deep tree
/// overflows a 64 KiB stack): a check run by the demo may write any tree into the directory,
/// so the walk is `exec`'s, with its own stack ([`super::exec::empty_dir`]).
fn remove_tree(path: &Path) -> std::io::Result<()> {
    let dir = super::exec::open_dir_at(rustix::fs::CWD, path)?;
    super::exec::empty_dir(&dir)?;
    drop(dir);
    std::fs::remove_dir(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::fd::AsRawFd;
    use rustix::fs::{mkdirat, openat, Mode, OFlags};

    const FLAGS: OFlags = OFlags::RDONLY
        .union(OFlags::DIRECTORY)
        .union(OFlags::CLOEXEC);

    /// A chain of directories `d` `depth` deep in `top`, a file in each, made through
    /// descriptors (a path that long could not be given).
    fn deep_tree(top: &Path, depth: usize) {
        let mut fd = openat(rustix::fs::CWD, top, FLAGS, Mode::empty()).unwrap();
        for _ in 0..depth {
            mkdirat(&fd, "d", Mode::from_raw_mode(0o700)).unwrap();
            std::fs::write(format!("/proc/self/fd/{}/f", fd.as_raw_fd()), "x").unwrap();
            fd = openat(&fd, "d", FLAGS, Mode::empty()).unwrap();
        }
    }

    /// Twenty-fifth pass (found by the twenty-fourth pass's review): the demo removed its
    /// directory (at the end, on a signal, and a killed demo's at the next start) with
    /// `std::fs::remove_dir_all`, which on Linux calls itself once per level (seen: an
    /// 800-deep tree overflows a 64 KiB stack), so a tree a check wrote into it could
    /// overflow the stack where the open-files limit is high. Both removals now walk with
    /// `exec`'s own stack ([`super::super::exec::empty_dir`]): on a thread with a small
    /// stack, each removes a tree 800 deep (under the usual 1,024 descriptors).
    #[test]
    fn regression_the_demo_removes_a_deep_tree_on_a_small_stack() {
        let tmp = tempfile::tempdir().unwrap();
        let own = tmp.path().join("own");
        std::fs::create_dir(&own).unwrap();
        deep_tree(&own, 800);
        let stale = tmp.path().join("stale");
        std::fs::create_dir(&stale).unwrap();
        std::fs::write(stale.join(MARKER), "1 1\n").unwrap();
        deep_tree(&stale, 800);
        let top = tmp.path().to_owned();
        let removed = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                remove_tree(&own).map_err(|e| format!("own: {e}"))?;
                let parent = openat(rustix::fs::CWD, &top, FLAGS, Mode::empty()).unwrap();
                let dir = openat(&parent, "stale", FLAGS, Mode::empty()).unwrap();
                remove_judged(&parent, c"stale", &dir).map_err(|e| format!("stale: {e}"))
            })
            .unwrap()
            .join()
            .unwrap();
        assert_eq!(removed, Ok(()));
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 0);
    }
}
