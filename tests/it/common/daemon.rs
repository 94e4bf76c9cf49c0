//! Shared helpers for the daemon integration tests: start the real `scopevault serve` in a
//! fresh temp dir, talk to it over its real socket, stop it with SIGTERM.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_scopevault")
}

/// A `scopevault` command with a clean environment for the test dir.
pub fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    clean_env(&mut c, dir);
    c
}

/// [`cmd`] started through `env --default-signal`: the binary begins with every signal's
/// default action, whatever the test runner was started with (`nohup` leaves SIGHUP
/// ignored, and an ignored signal stays ignored across `execve`), for the tests of what a
/// signal does.
pub fn cmd_with_default_signals(dir: &Path) -> Command {
    let mut c = Command::new("env");
    c.arg("--default-signal").arg(bin());
    clean_env(&mut c, dir);
    c
}

/// The clean environment of [`cmd`], on any command.
fn clean_env(c: &mut Command, dir: &Path) {
    c.env_remove("SCOPEVAULT_SOCKET")
        .env_remove("SCOPEVAULT_STATE_DIR")
        .env_remove("SCOPEVAULT_VAULT")
        .env_remove("SCOPEVAULT_AUDIT")
        .env_remove("NOTIFY_SOCKET")
        .env_remove("LISTEN_FDS")
        .env("SCOPEVAULT_VAULT", dir.join("vault.scopevault"))
        .env("SCOPEVAULT_AUDIT", dir.join("audit.jsonl"))
        .env("XDG_STATE_HOME", dir.join("state"))
        .env("SCOPEVAULT_STATE_DIR", dir.join("state/scopevault"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("HOME", dir);
}

pub struct Daemon {
    pub dir: PathBuf,
    pub socket: PathBuf,
    pub audit: PathBuf,
    pub stderr: PathBuf,
    child: Option<Child>,
}

impl Daemon {
    /// Start `scopevault serve` with `args` added; wait until it answers `health`.
    pub fn start(dir: &Path, args: &[&str]) -> Daemon {
        Daemon::start_at(dir, &dir.join("run/scopevault.sock"), args)
    }

    /// As [`Daemon::start`], on the socket path given.
    pub fn start_at(dir: &Path, socket: &Path, args: &[&str]) -> Daemon {
        Daemon::start_cmd(dir, socket, cmd(dir), args)
    }

    /// As [`Daemon::start`], running the program `exe` (a copy of the binary the test may
    /// replace or remove).
    pub fn start_program(dir: &Path, exe: &Path, args: &[&str]) -> Daemon {
        let mut c = Command::new(exe);
        clean_env(&mut c, dir);
        Daemon::start_cmd(dir, &dir.join("run/scopevault.sock"), c, args)
    }

    /// As [`Daemon::start`], with the daemon alone seeing `etc_group` as `/etc/group`
    /// ([`super::users::seeing_etc_group`]): the host's file is never changed.
    pub fn start_seeing_etc_group(dir: &Path, etc_group: &Path, args: &[&str]) -> Daemon {
        // Only a mount point, in the daemon's namespace: kept (empty) until `dir` goes.
        let scratch = dir.join("etc-overlay");
        std::fs::create_dir_all(&scratch).unwrap();
        let mut c = super::users::seeing_etc_group(etc_group, &scratch, Path::new(bin()));
        clean_env(&mut c, dir);
        Daemon::start_cmd(dir, &dir.join("run/scopevault.sock"), c, args)
    }

    /// As [`Daemon::start`], running `c`, a command whose last argument is the binary (a
    /// wrapper that runs it in a sandbox, or the binary itself given more environment), with
    /// the environment of [`cmd`] under the variables `c` sets itself.
    pub fn start_command(dir: &Path, mut c: Command, args: &[&str]) -> Daemon {
        let mut env = Command::new(bin());
        clean_env(&mut env, dir);
        for (k, v) in env.get_envs() {
            if c.get_envs().any(|(ck, _)| ck == k) {
                continue;
            }
            match v {
                Some(v) => c.env(k, v),
                None => c.env_remove(k),
            };
        }
        Daemon::start_cmd(dir, &dir.join("run/scopevault.sock"), c, args)
    }

    fn start_cmd(dir: &Path, socket: &Path, c: Command, args: &[&str]) -> Daemon {
        let stderr = dir.join("daemon.stderr");
        let file = std::fs::File::create(&stderr).unwrap();
        Daemon::start_cmd_with(dir, socket, c, args, file.into())
    }

    /// As [`Daemon::start`], with the daemon's stderr `stderr` ([`Stdio::piped`]: take its
    /// read end with [`Daemon::take_stderr`]); [`Daemon::stderr_text`] is empty then.
    pub fn start_with_stderr(dir: &Path, args: &[&str], stderr: Stdio) -> Daemon {
        Daemon::start_cmd_with(
            dir,
            &dir.join("run/scopevault.sock"),
            cmd(dir),
            args,
            stderr,
        )
    }

    /// The read end of a daemon's stderr started with [`Stdio::piped`].
    pub fn take_stderr(&mut self) -> Option<std::process::ChildStderr> {
        self.child.as_mut().unwrap().stderr.take()
    }

    fn start_cmd_with(
        dir: &Path,
        socket: &Path,
        mut c: Command,
        args: &[&str],
        stderr_to: Stdio,
    ) -> Daemon {
        let socket = socket.to_owned();
        let stderr = dir.join("daemon.stderr");
        c.arg("serve")
            .arg("--socket")
            .arg(&socket)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr_to);
        let child = c.spawn().expect("spawn scopevault serve");
        let mut d = Daemon {
            dir: dir.to_owned(),
            socket,
            audit: dir.join("audit.jsonl"),
            stderr,
            child: Some(child),
        };
        d.wait_ready();
        d
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if let Some(st) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("daemon exited early ({st}): {}", self.stderr_text());
            }
            if let Ok(mut s) = UnixStream::connect(&self.socket) {
                if let Ok(v) = roundtrip(&mut s, r#"{"v":1,"op":"health"}"#) {
                    if v["ok"] == true {
                        return;
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("daemon did not become ready: {}", self.stderr_text());
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn stderr_text(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    pub fn audit_text(&self) -> String {
        std::fs::read_to_string(&self.audit).unwrap_or_default()
    }

    /// The audit log once it shows `n` refusals of `uid` ([`refusals_of`]), or after 10 s.
    pub fn audit_after_refusals(&self, uid: u32, n: u64) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        while refusals_of(&self.audit_text(), uid) < n && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.audit_text()
    }

    pub fn connect(&self) -> UnixStream {
        let s = UnixStream::connect(&self.socket).expect("connect to daemon");
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        s
    }

    /// One request on a fresh connection.
    pub fn request(&self, line: &str) -> Value {
        roundtrip(&mut self.connect(), line).expect("daemon answers")
    }

    /// The daemon still answers a well-behaved client.
    pub fn assert_alive(&self) {
        let v = self.request(r#"{"v":1,"op":"health"}"#);
        assert_eq!(v["ok"], true, "health after abuse: {v}");
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(st.success());
    }

    /// SIGTERM and wait for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = child.try_wait().unwrap() {
                return st;
            }
            assert!(Instant::now() < deadline, "daemon did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Send one line, read one line, parse it.
pub fn roundtrip(s: &mut UnixStream, line: &str) -> std::io::Result<Value> {
    // One write, as scopevault's own client sends a line: written in two, the daemon may
    // wake between them and see a line still arriving, which it reads at once instead of
    // peeking (tests/it/durability_order.rs watches which it does).
    s.write_all(format!("{line}\n").as_bytes())?;
    read_json(s)
}

pub fn read_json(s: &mut UnixStream) -> std::io::Result<Value> {
    // Byte by byte, so a pipelined second response stays in the socket for the next call.
    let mut bytes = Vec::new();
    let mut b = [0u8; 1];
    loop {
        // A signal handled elsewhere in this test process (a handler installed without
        // SA_RESTART) can interrupt the read: read again, as `read_line` would.
        match std::io::Read::read(s, &mut b) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => bytes.push(b[0]),
        }
    }
    let out = String::from_utf8_lossy(&bytes).into_owned();
    if out.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "closed",
        ));
    }
    serde_json::from_str(&out).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

pub fn code(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// The refusals of `uid` in an audit log: its `deny` records, recorded one by one or (within
/// one second) counted into a `denials` record the daemon writes once the second is over.
pub fn refusals_of(audit: &str, uid: u32) -> u64 {
    audit
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|r| r["peer"]["uid"] == uid && r["decision"] == "deny")
        .map(|r| r["count"].as_u64().unwrap_or(1))
        .sum()
}

/// A fresh private temp dir (0700) for one test.
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    d
}

/// The secret stored for each demo credential: easy to grep for in outputs and logs.
pub fn secret_of(credential: &str) -> String {
    format!("S3cret-{credential}-Zq9")
}

/// A TOTP seed (RFC 6238's SHA-1 test key, base32).
pub const TOTP_SEED: &str = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";

/// Run a scopevault command that must succeed, with optional stdin.
pub fn ok(dir: &Path, args: &[&str], stdin: Option<&str>) -> String {
    let mut c = cmd(dir);
    c.args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        let mut i = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            i.write_all(s.as_bytes()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "scopevault {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// An identity-file vault in `dir` with examples/policy.toml applied and a secret stored for
/// every credential the tests use. Returns the identity file.
/// A daemon over a vault from [`setup_vault`] whose `shop-buyer` login (user `buyer`) has the
/// password `password`, started with the vault's identity file.
pub fn start_with_buyer(dir: &Path, password: &str) -> Daemon {
    let id = setup_vault(dir);
    let id_s = id.to_str().unwrap();
    ok(
        dir,
        &[
            "--identity-file",
            id_s,
            "cred",
            "set",
            "shop-buyer",
            "--field",
            "username=buyer",
            "--secret",
            "password",
        ],
        Some(password),
    );
    Daemon::start(dir, &["--identity-file", id_s])
}

pub fn setup_vault(dir: &Path) -> PathBuf {
    let id = dir.join("identity.txt");
    let id_s = id.to_str().unwrap().to_owned();
    ok(dir, &["init", "--identity-out", &id_s], None);
    let policy = example_policy_file(dir);
    ok(
        dir,
        &[
            "--identity-file",
            &id_s,
            "policy",
            "apply",
            policy.to_str().unwrap(),
        ],
        None,
    );
    for (cred, user) in [
        ("shop-buyer", Some("buyer")),
        ("shop-backoffice", Some("backoffice")),
        ("search-token", None),
        ("payments-token", None),
        ("newsletter-login", Some("news")),
    ] {
        let mut args = vec!["--identity-file", &id_s, "cred", "set", cred];
        let field;
        if let Some(u) = user {
            field = format!("username={u}");
            args.extend(["--field", &field]);
        }
        let key = if user.is_some() { "password" } else { "token" };
        args.extend(["--secret", key]);
        ok(dir, &args, Some(&secret_of(cred)));
    }
    set_shop_2fa_seed(dir, &id);
    id
}

/// `cred set shop-2fa --secret totp_seed` of [`TOTP_SEED`] in the vault of `dir`, unlocked
/// with the identity file `id`: the seed [`setup_vault`] stores, and the fix the TOTP seed
/// checks name (it replaces an `otpauth` seed).
pub fn set_shop_2fa_seed(dir: &Path, id: &Path) {
    let id_s = id.to_str().unwrap();
    ok(
        dir,
        &[
            "--identity-file",
            id_s,
            "cred",
            "set",
            "shop-2fa",
            "--secret",
            "totp_seed",
        ],
        Some(TOTP_SEED),
    );
}

/// An `otpauth` URI (RFC 6238's SHA-256 key, 8 digits): it holds [`TOTP_SEED`], so a check
/// that no stored secret leaked covers it too.
pub const TOTP_URI: &str = "otpauth://totp/shop?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQGEZA&algorithm=SHA256&digits=8";

/// [`setup_vault`], then its `shop-2fa` saved holding an `otpauth` URI beside its
/// `totp_seed`, as an older scopevault could save it (today's writers refuse both, so the file
/// is written from vault-format.md: [`super::vault::rewrite_payload`]). Returns the identity
/// file.
pub fn setup_vault_holding_both_totp_seeds(dir: &Path) -> PathBuf {
    let id = setup_vault(dir);
    super::vault::rewrite_payload(&dir.join("vault.scopevault"), &id, |data| {
        let secrets = &mut data["credentials"]["shop-2fa"]["secrets"];
        assert!(secrets["totp_seed"].is_string(), "{secrets}");
        secrets["otpauth"] = serde_json::json!(TOTP_URI);
    });
    id
}

/// A second TOTP seed, stored beside [`TOTP_SEED`] under another secret name by
/// [`setup_vault_holding_a_secret_beside_the_totp_seed`]: no output may show it.
pub const STRAY_SEED: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// [`setup_vault`], then its `shop-2fa` (declared `totp`) saved holding [`STRAY_SEED`] as the
/// secret `seed` beside its `totp_seed`, as an older scopevault saved `cred add --kind totp
/// --secret seed` and a later `cred set --secret totp_seed` (today's writers refuse it, so the
/// file is written from vault-format.md: [`super::vault::rewrite_payload`]). Returns the
/// identity file.
pub fn setup_vault_holding_a_secret_beside_the_totp_seed(dir: &Path) -> PathBuf {
    let id = setup_vault(dir);
    super::vault::rewrite_payload(&dir.join("vault.scopevault"), &id, |data| {
        let secrets = &mut data["credentials"]["shop-2fa"]["secrets"];
        assert!(secrets["totp_seed"].is_string(), "{secrets}");
        secrets["seed"] = serde_json::json!(STRAY_SEED);
    });
    id
}

/// An `otpauth` URI holding [`TOTP_SEED`] with an `encoder` parameter (Steam Guard's codes,
/// which scopevault does not make): every writer refuses it since the twentieth pass, and an
/// older scopevault stored it.
pub const STEAM_URI: &str =
    "otpauth://totp/shop?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&encoder=steam";

/// [`setup_vault`], then its `shop-2fa` saved holding [`STEAM_URI`] as its one TOTP seed, as
/// an older scopevault could save it (today's writers refuse it, so the file is written from
/// vault-format.md: [`super::vault::rewrite_payload`]). Returns the identity file.
pub fn setup_vault_holding_a_steam_uri(dir: &Path) -> PathBuf {
    let id = setup_vault(dir);
    super::vault::rewrite_payload(&dir.join("vault.scopevault"), &id, |data| {
        let secrets = data["credentials"]["shop-2fa"]["secrets"]
            .as_object_mut()
            .unwrap();
        assert!(secrets.remove("totp_seed").is_some(), "{secrets:?}");
        secrets.insert("otpauth".into(), serde_json::json!(STEAM_URI));
    });
    id
}

/// examples/policy.toml with the user running the tests added to every task's runners
/// (the example names `checkpoint` and `root`), so a developer without root runs the daemon
/// tests as a runner too.
pub fn example_policy() -> String {
    let text = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.toml"));
    let me = Command::new("id")
        .arg("-un")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .expect("id -un names the user running the tests");
    if me == "root" || me == "checkpoint" {
        return text.to_owned();
    }
    let out = text.replace(
        "users = [\"checkpoint\", \"root\"",
        &format!("users = [\"checkpoint\", \"root\", \"{me}\""),
    );
    assert_ne!(
        out, text,
        "examples/policy.toml no longer names its runners as expected"
    );
    out
}

/// [`example_policy`] written to `dir/example-policy.toml`.
pub fn example_policy_file(dir: &Path) -> PathBuf {
    let p = dir.join("example-policy.toml");
    std::fs::write(&p, example_policy()).unwrap();
    p
}

/// Every secret the tests store (to check that none leaks).
pub fn all_secrets() -> Vec<String> {
    let mut v: Vec<String> = [
        "shop-buyer",
        "shop-backoffice",
        "search-token",
        "payments-token",
        "newsletter-login",
    ]
    .iter()
    .map(|c| secret_of(c))
    .collect();
    v.push(TOTP_SEED.to_string());
    v
}

/// Assert that no stored secret appears in `text` (`what` names it in the failure).
pub fn assert_no_secret(text: &str, what: &str) {
    for s in all_secrets() {
        assert!(!text.contains(&s), "a secret leaked into {what}: {text}");
    }
}

/// How many times `needle` is in the readable memory of process `pid` (root reads a
/// non-dumpable daemon's `/proc/PID/mem`; the caller skips otherwise).
pub fn copies_in_memory(pid: u32, needle: &[u8]) -> usize {
    copies_in_memory_of_each(pid, &[needle])[0]
}

/// [`copies_in_memory`] of each of `needles`, the memory read once.
pub fn copies_in_memory_of_each(pid: u32, needles: &[&[u8]]) -> Vec<usize> {
    use std::io::{Read, Seek, SeekFrom};
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let finders: Vec<_> = needles.iter().map(memchr::memmem::Finder::new).collect();
    let mut n = vec![0; needles.len()];
    for line in maps.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if !f[1].starts_with('r') || matches!(f.get(5), Some(&"[vvar]") | Some(&"[vsyscall]")) {
            continue;
        }
        let (a, b) = f[0].split_once('-').unwrap();
        let (a, b) = (
            u64::from_str_radix(a, 16).unwrap(),
            u64::from_str_radix(b, 16).unwrap(),
        );
        let mut buf = vec![0; (b - a) as usize];
        if mem.seek(SeekFrom::Start(a)).is_err() || mem.read_exact(&mut buf).is_err() {
            continue;
        }
        for (count, finder) in n.iter_mut().zip(&finders) {
            *count += finder.find_iter(&buf).count();
        }
    }
    n
}

/// True when the tests run as root.
pub use super::users::is_root;

/// A pipe filled to capacity whose reader never reads (a stuck log reader): the write end,
/// blocking again, for a child's stderr, and the read end, to keep open.
pub fn full_pipe() -> (std::io::PipeReader, std::io::PipeWriter) {
    use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};
    use std::io::Write;
    let (reader, mut writer) = std::io::pipe().unwrap();
    let flags = fcntl_getfl(&writer).unwrap();
    fcntl_setfl(&writer, flags | OFlags::NONBLOCK).unwrap();
    loop {
        match writer.write(&[b'x'; 512]) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("filling the pipe: {e}"),
        }
    }
    fcntl_setfl(&writer, flags).unwrap();
    (reader, writer)
}
