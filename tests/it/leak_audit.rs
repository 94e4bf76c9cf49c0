//! The secret-leak audit (issue 5, item 4): one test seeds distinctive secrets — some that
//! look like base64, URL-encoded and JSON-escaped text themselves, one with a quote, a
//! backslash, `%2F`, `+/=`, a newline and non-ASCII characters, two TOTP seeds — then drives
//! every CLI command (checked against the binary's own command tree), every socket op allowed
//! and denied, `exec` with masking, the demo, the lint in every format, and panics forced in a
//! child, and finally scans every captured byte, every socket answer and every file under the
//! test's directory for every encoded form of every secret. Zero hits, or it fails naming the
//! form, the secret's label and the place (never the secret).
//!
//! The same test binary is re-executed as a child in a few roles (env `LEAK_AUDIT_ROLE`): the
//! command `exec` runs (it prints every secret it was given, in every form exec promises to
//! mask), the panicking library user, and a raw socket client run as another uid.
//!
//! Run: `cargo test --test it leak_audit:: -- --nocapture` (prints the counts).

use crate::common::daemon as common_daemon;
use crate::common::leak;
use crate::common::pty;
use crate::common::skip;
use crate::common::vault as common_vault;

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::io::{BufRead, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common_vault::files_under;
use data_encoding::BASE32_NOPAD;
use leak::{context_before, forms_of, Expect, Recorder, Scanner, Secret};

const ROLE: &str = "LEAK_AUDIT_ROLE";
const TEST_NAME: &str = "no_secret_leaks_through_any_command_socket_op_file_or_panic";

/// [`TEST_NAME`] as libtest knows it in this binary, for `--exact`.
fn test_name() -> String {
    crate::common::test_path(module_path!(), TEST_NAME)
}

/// The seeded secrets. Long and distinctive so that no form of one matches by accident.
const LOGIN_PW: &str =
    "SVLK-login \"quoted\" back\\slash %2F+/= &<b> \u{e9}\u{1f511}\nsecond-line-7Qx";
const B64_TOKEN: &str = "U1ZMSy1iNjQtbG9va2luZy10b2tlbg+/9xQ==";
const URL_TOKEN: &str = "SVLK%2Furl%3Dlike%26token%2Bvalue%25end";
const JSON_TOKEN: &str = "SVLK{\"json\":\"like\\u00e9\\n\"}-token";
const ROTATED_PW: &str = "SVLK-rotated-\u{df}eta/+=\"x\"-91c3";
const ADMIN_PW: &str = "SVLK-overscoped-admin-password-e27d";
const IMPORT_PW: &str = "SVLK-imported-password-5b1f";
const BAO_TOKEN_VALUE: &str = "SVLK-openbao-token-s.9d4e7a";
const VAULT_PASS: &str = "SVLK-vault-pass \"q\" \\ 4d1f-92ab";
const WRONG_PASS: &str = "SVLK-wrong-passphrase-typo-83e0";
const SECOND_PASS: &str = "SVLK-second-slot-passphrase-5b7c";
/// `key passwd`'s new passphrase, and a weak one (zxcvbn rates it below 3).
const THIRD_PASS: &str = "SVLK-changed-by-key-passwd-a61e";
const WEAK_PASS: &str = "SVLKSVLKSVLKSVLK";
const BAD_SEED: &str = "SVLK-not-base32-seed-!!-4410";
/// A secret typed into an argument by mistake (`--field password=…`, `--secret password=…`).
const ARGV_MISTAKE: &str = "SVLK-argv-mistake-value-6d2f";
/// A ticket-shaped value no daemon issued (a client may still hold it: it is a bearer secret).
const UNKNOWN_TICKET: &str = "svt1_SVLKunknownTicketValue0123456789abcdef";
const TYPED_SECRET: &str = "SVLK-typed-at-prompt-secret-0c4e";
const TOTP_KEY: &[u8] = b"SVLK-totp-seed-bytes";
const OTPAUTH_KEY: &[u8] = b"SVLK-otpauth-key-byt";

fn totp_seed() -> String {
    BASE32_NOPAD.encode(TOTP_KEY)
}

fn otpauth_uri() -> String {
    format!(
        "otpauth://totp/shop:monitor?secret={}&issuer=shop",
        BASE32_NOPAD.encode(OTPAUTH_KEY)
    )
}

/// A base32 TOTP seed's derived forms: the decoded key, lower case, groups of four.
fn seed_extras(seed: &str, key: &[u8]) -> Vec<(String, Vec<u8>)> {
    let grouped: Vec<String> = seed
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8(c.to_vec()).unwrap())
        .collect();
    vec![
        ("decoded-key".into(), key.to_vec()),
        ("lowercase".into(), seed.to_lowercase().into_bytes()),
        ("grouped".into(), grouped.join(" ").into_bytes()),
    ]
}

#[test]
fn no_secret_leaks_through_any_command_socket_op_file_or_panic() {
    match std::env::var(ROLE).as_deref() {
        Ok("exec-child") => return exec_child(),
        Ok("exec-quiet") => return,
        Ok("panic") => return panic_child(),
        Ok("raw-client") => return raw_client(),
        Ok("store-bad-seed") => return store_bad_seed(),
        _ => {}
    }
    audit();
}

// ---------------------------------------------------------------------------------------------
// Child roles.

/// Under `scopevault exec`: print every value handed over (environment or files), in every
/// form exec promises to mask, on stdout and stderr, partly one byte per write.
fn exec_child() {
    let mut values: Vec<(String, Vec<u8>)> = Vec::new();
    for (k, v) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        // What exec set: SCOPEVAULT_<CREDENTIAL>_<FIELD> (the rest is the audit's own env).
        let ours = [
            "SCOPEVAULT_TASK",
            "SCOPEVAULT_CREDENTIALS_DIRECTORY",
            "SCOPEVAULT_VAULT",
            "SCOPEVAULT_AUDIT",
            "SCOPEVAULT_SOCKET",
            "SCOPEVAULT_STATE_DIR",
            "SCOPEVAULT_TEST_ARGON2",
        ];
        if k.starts_with("SCOPEVAULT_") && !ours.contains(&k.as_str()) {
            values.push((k, v.to_string_lossy().into_owned().into_bytes()));
        }
    }
    if let Some(dir) = std::env::var_os("SCOPEVAULT_CREDENTIALS_DIRECTORY") {
        println!("credentials directory: {}", Path::new(&dir).display());
        // Files, or links to the memfds exec hands over (`/proc/self/fd/N`).
        let handed = common_vault::entries_under(Path::new(&dir))
            .into_iter()
            .filter(|(_, ft)| ft.is_file() || ft.is_symlink());
        for (f, _) in handed {
            values.push((f.display().to_string(), std::fs::read(&f).unwrap()));
        }
    }
    assert!(!values.is_empty(), "exec handed over nothing");
    let mut out = std::io::stdout().lock();
    let mut err = std::io::stderr().lock();
    for (name, v) in &values {
        for f in forms_of("child", v).iter().filter(|f| f.exec_masks) {
            writeln!(
                out,
                "{name} {}: <{}>",
                f.name,
                String::from_utf8_lossy(&f.bytes)
            )
            .unwrap();
            write!(err, "{name} {} split: <", f.name).unwrap();
            for b in &f.bytes {
                err.write_all(&[*b]).unwrap();
                err.flush().unwrap();
            }
            writeln!(err, ">").unwrap();
        }
    }
}

/// A library user that opens the vault, fetches from the daemon, holds secrets in every type
/// that carries them, and panics — in a thread and in main — formatting them with `{:?}`.
fn panic_child() {
    use scopevault::client::Client;
    use scopevault::protocol::{FetchBy, Request};
    use scopevault::secret::SecretString;
    use scopevault::vault::{OpenOptions, Unlock, Vault};
    let var = |k: &str| PathBuf::from(std::env::var_os(k).unwrap());
    let pass = std::fs::read_to_string(var("LEAK_AUDIT_PASSFILE")).unwrap();
    let pass = SecretString::from(pass.trim_end_matches('\n').to_owned());
    let unlock = Unlock::Passphrase(pass.clone());
    let vault = Vault::open(&var("SCOPEVAULT_VAULT"), &unlock, &OpenOptions::default()).unwrap();
    let creds: Vec<_> = vault
        .credentials()
        .iter()
        .map(|(n, c)| (n.clone(), c.clone()))
        .collect();
    let mut client = Client::connect(&var("SCOPEVAULT_SOCKET")).unwrap();
    let fetched = client.fetch("login-flow", None).unwrap();
    let ticket = client.ticket("api-check", 60).unwrap();
    let redeemed = client.redeem(&ticket.ticket, None).unwrap();
    let denied = client.unlock(None, SecretString::from(WRONG_PASS.to_owned()));
    let req = Request::Unlock {
        key: scopevault::protocol::UnlockKey::Passphrase(pass.clone()),
    };
    let by = FetchBy::Ticket(ticket.ticket.clone());
    let in_thread = (creds.clone(), fetched.clone());
    let t = std::thread::spawn(move || {
        let (creds, fetched) = &in_thread;
        panic!("panic in a thread holding credentials {creds:?} and a hand-out {fetched:?}");
    });
    assert!(t.join().is_err(), "the thread panicked");
    panic!(
        "panic in main: vault {vault:?}, unlock {unlock:?}, credentials {creds:#?}, \
         fetched {fetched:#?}, ticket {ticket:?}, redeemed {redeemed:?}, request {req:?}, \
         by {by:?}, wrong unlock {denied:?}, passphrase {pass:?}"
    );
}

/// Store BAD_SEED as the `bad-totp` credential through the library (the CLI refuses it).
fn store_bad_seed() {
    use scopevault::policy::CredentialKind;
    use scopevault::secret::SecretString;
    use scopevault::vault::{Credential, OpenOptions, Unlock, Vault, WriteLock};
    let var = |k: &str| PathBuf::from(std::env::var_os(k).unwrap());
    let pass = std::fs::read_to_string(var("LEAK_AUDIT_PASSFILE")).unwrap();
    let unlock = Unlock::Passphrase(SecretString::from(pass.trim_end_matches('\n').to_owned()));
    let path = var("SCOPEVAULT_VAULT");
    let lock = WriteLock::acquire(&path).unwrap();
    let mut vault = Vault::open(&path, &unlock, &OpenOptions::default()).unwrap();
    let mut c = Credential::new(CredentialKind::Totp, time::OffsetDateTime::now_utc());
    c.scopes = vec!["shop:login".into()];
    c.secrets
        .insert("totp_seed".into(), SecretString::from(BAD_SEED.to_owned()));
    vault.add_credential("bad-totp", c).unwrap();
    vault.save(&lock).unwrap();
}

/// A raw socket client (run as another uid): send each stdin line, print each answer.
fn raw_client() {
    let socket = std::env::var_os("SCOPEVAULT_SOCKET").unwrap();
    let mut s = UnixStream::connect(socket).unwrap();
    for line in std::io::stdin().lock().lines() {
        let v = common_daemon::roundtrip(&mut s, &line.unwrap()).unwrap();
        println!("{v}");
    }
}

/// The test binary re-executed in a role.
fn child_of_self(r: &Recorder, role: &str) -> Command {
    child_of_self_at(r, &std::env::current_exe().unwrap(), role)
}

/// As [`child_of_self`], running a copy of this test binary at `exe`.
fn child_of_self_at(r: &Recorder, exe: &std::path::Path, role: &str) -> Command {
    let mut c = r.command(exe);
    c.args([
        "--exact",
        &test_name(),
        "--nocapture",
        "--test-threads",
        "1",
    ])
    .env(ROLE, role);
    c
}

// ---------------------------------------------------------------------------------------------
// The audit.

struct Dirs {
    root: PathBuf,
}

impl Dirs {
    fn p(&self, rel: &str) -> PathBuf {
        self.root.join(rel)
    }
    fn s(&self, rel: &str) -> String {
        self.p(rel).to_str().unwrap().to_owned()
    }
}

fn write_file(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn policy(uid: u32) -> String {
    format!(
        r#"version = 1

[settings]
enforce = "deny"

[scopes."shop:login"]
risk = "low"
[scopes."shop:admin"]
risk = "high"
[scopes."api:read"]
risk = "low"

[credentials.shop-login]
kind = "login"
scopes = ["shop:login"]
origins = ["https://shop.example.com"]

[credentials.api-b64]
kind = "token"
scopes = ["api:read"]

[credentials.api-url]
kind = "token"
scopes = ["api:read"]

[credentials.api-json]
kind = "generic"
scopes = ["api:read"]

[credentials.shop-2fa]
kind = "totp"
scopes = ["shop:login"]

[credentials.shop-2fa-uri]
kind = "totp"
scopes = ["shop:login"]

[credentials.bad-totp]
kind = "totp"
scopes = ["shop:login"]

[credentials.shop-admin]
kind = "login"
scopes = ["shop:login", "shop:admin"]

[tasks.login-flow]
needs = ["shop:login"]
credentials = ["shop-login"]
runners = {{ users = ["{uid}"] }}
origin = "https://shop.example.com"

[tasks.api-check]
needs = ["api:read"]
credentials = ["api-b64", "api-url", "api-json"]
runners = {{ users = ["{uid}"] }}

[tasks.totp-flow]
needs = ["shop:login"]
credentials = ["shop-2fa", "shop-2fa-uri"]
runners = {{ users = ["{uid}"] }}

[tasks.broken-totp]
needs = ["shop:login"]
credentials = ["bad-totp"]
runners = {{ users = ["{uid}"] }}

[tasks.admin-report]
needs = ["shop:login"]
credentials = ["shop-admin"]
runners = {{ users = ["{uid}"] }}

[tasks.other-uid]
needs = ["shop:login"]
credentials = ["shop-login"]
runners = {{ users = ["65534"] }}
"#
    )
}

/// A running daemon whose stderr goes to a file under the audit's directory.
struct Daemon {
    child: Option<std::process::Child>,
}

impl Daemon {
    fn start(r: &Recorder, args: &[&str], socket: &Path, stderr: &Path) -> Daemon {
        let mut c = r.command(&r.bin);
        c.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(stderr).unwrap());
        r.driven.borrow_mut().insert(r.path_of(args));
        *r.processes.borrow_mut() += 1;
        let mut d = Daemon {
            child: Some(c.spawn().unwrap()),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = d.child.as_mut().unwrap().try_wait().unwrap() {
                panic!(
                    "daemon exited at start ({st}): {}",
                    std::fs::read_to_string(stderr).unwrap_or_default()
                );
            }
            if let Ok(mut s) = UnixStream::connect(socket) {
                if common_daemon::roundtrip(&mut s, r#"{"v":1,"op":"health"}"#).is_ok() {
                    return d;
                }
            }
            assert!(Instant::now() < deadline, "daemon not ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .unwrap();
        let st = child.wait().unwrap();
        assert!(st.success(), "daemon stopped with {st}");
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

/// One socket session: each request line's answer is recorded (with the secrets it exists to
/// carry), parsed and returned.
struct Socket<'a> {
    r: &'a Recorder,
    s: UnixStream,
    ops: &'a std::cell::RefCell<BTreeSet<String>>,
}

impl<'a> Socket<'a> {
    fn new(r: &'a Recorder, path: &Path, ops: &'a std::cell::RefCell<BTreeSet<String>>) -> Self {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Socket { r, s, ops }
    }

    fn req(&mut self, line: &str, carries: &[&str]) -> serde_json::Value {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(line) {
            if let Some(op) = v["op"].as_str() {
                self.ops.borrow_mut().insert(op.to_owned());
            }
        }
        self.s.write_all(line.as_bytes()).unwrap();
        self.s.write_all(b"\n").unwrap();
        let v = common_daemon::read_json(&mut self.s).expect("an answer");
        // Named by op and number only: the request line itself may hold a secret.
        let op = serde_json::from_str::<serde_json::Value>(line)
            .ok()
            .and_then(|v| v["op"].as_str().map(str::to_owned))
            .unwrap_or_else(|| "(not JSON)".into());
        let n = self.r.captures.borrow().len();
        self.r.add(
            &format!("socket answer #{n} to op {op}"),
            v.to_string().into_bytes(),
            carries,
        );
        v
    }
}

/// Wait until `file` contains `text` (a record the daemon writes asynchronously).
fn wait_for(file: &Path, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(file)
        .unwrap_or_default()
        .contains(text)
    {
        assert!(
            Instant::now() < deadline,
            "{} never contained {text:?}",
            file.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn audit() {
    let started = Instant::now();
    let tmp = tempfile::Builder::new()
        .prefix("sv-leak-")
        .tempdir()
        .unwrap();
    // 0711: uid 65534 may reach the socket below (modes are not what refuses it).
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o711)).unwrap();
    let d = Dirs {
        root: tmp.path().to_owned(),
    };
    for sub in [
        "home", "state", "data", "tmp", "inputs", "reports", "audit", "capture", "bin",
    ] {
        std::fs::create_dir_all(d.p(sub)).unwrap();
    }
    std::fs::create_dir(d.p("run")).unwrap();
    std::fs::set_permissions(d.p("run"), std::fs::Permissions::from_mode(0o711)).unwrap();
    let socket = d.p("run/sv.sock");
    let bin = PathBuf::from(env!("CARGO_BIN_EXE_scopevault"));
    let env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), std::env::var_os("PATH").unwrap_or_default()),
        ("HOME".into(), d.p("home").into()),
        ("XDG_DATA_HOME".into(), d.p("data").into()),
        ("XDG_STATE_HOME".into(), d.p("state/xdg").into()),
        ("XDG_RUNTIME_DIR".into(), d.p("run").into()),
        ("SCOPEVAULT_STATE_DIR".into(), d.p("state").into()),
        (
            "SCOPEVAULT_VAULT".into(),
            d.p("vault/vault.scopevault").into(),
        ),
        ("SCOPEVAULT_AUDIT".into(), d.p("audit/audit.jsonl").into()),
        ("SCOPEVAULT_SOCKET".into(), socket.clone().into()),
        ("SCOPEVAULT_TEST_ARGON2".into(), "64,1,1".into()),
        ("TMPDIR".into(), d.p("tmp").into()),
        ("NO_COLOR".into(), "1".into()),
    ];
    let r = Recorder::new(&bin, env);
    let uid = scopevault::sys::current_uid();
    let root = uid == 0;

    // Inputs: the files secrets are read from (each may hold only its own secret).
    let mut allowed_in_file: BTreeMap<PathBuf, Vec<String>> = BTreeMap::new();
    let mut input = |name: &str, bytes: &[u8], label: &str| -> String {
        let p = d.p(&format!("inputs/{name}"));
        write_file(&p, bytes);
        allowed_in_file.insert(p.clone(), vec![label.to_owned()]);
        p.to_str().unwrap().to_owned()
    };
    let pf = input(
        "passphrase",
        format!("{VAULT_PASS}\n").as_bytes(),
        "vault-passphrase",
    );
    let wrong = input("wrong", WRONG_PASS.as_bytes(), "wrong-passphrase");
    let second = input("second", SECOND_PASS.as_bytes(), "second-passphrase");
    let third = input("third", THIRD_PASS.as_bytes(), "third-passphrase");
    let weak = input("weak", WEAK_PASS.as_bytes(), "weak-passphrase");
    let b64_file = input("b64-token", B64_TOKEN.as_bytes(), "b64-looking-token");
    let url_file = input(
        "url-token",
        format!("{URL_TOKEN}\n").as_bytes(),
        "url-looking-token",
    );
    let json_file = input("json-token", JSON_TOKEN.as_bytes(), "json-looking-token");
    let otp_file = input("otpauth", otpauth_uri().as_bytes(), "otpauth-uri");
    let bad_utf8 = input("not-utf8", &[0xff, 0xfe, b'S', b'V'], "none");
    let policy_path = d.p("policy/policy.toml");
    write_file(&policy_path, policy(uid).as_bytes());
    let pol = policy_path.to_str().unwrap().to_owned();
    let bad_pol = d.p("policy/bad.toml");
    write_file(
        &bad_pol,
        b"version = 1\n[credentials.x]\nkind = \"login\"\nscopes = [\"Bad Scope\"]\n[tasks.t]\nneeds = [\"a:b\"]\ncredentials = [\"nope\"]\n",
    );
    let bad_pol = bad_pol.to_str().unwrap().to_owned();
    let broken_pol = d.p("policy/broken.toml");
    write_file(&broken_pol, b"version = 1\n[credentials.x\nkind = \n");
    let broken_pol = broken_pol.to_str().unwrap().to_owned();

    let mut secrets: Vec<Secret> = vec![
        Secret::new("login-password", LOGIN_PW.as_bytes()),
        Secret::new("b64-looking-token", B64_TOKEN.as_bytes()),
        Secret::new("url-looking-token", URL_TOKEN.as_bytes()),
        Secret::new("json-looking-token", JSON_TOKEN.as_bytes()),
        Secret::new("rotated-password", ROTATED_PW.as_bytes()),
        Secret::new("admin-password", ADMIN_PW.as_bytes()),
        Secret::new("vault-passphrase", VAULT_PASS.as_bytes()),
        Secret::new("wrong-passphrase", WRONG_PASS.as_bytes()),
        Secret::new("second-passphrase", SECOND_PASS.as_bytes()),
        Secret::new("third-passphrase", THIRD_PASS.as_bytes()),
        Secret::new("weak-passphrase", WEAK_PASS.as_bytes()),
        Secret::new("invalid-totp-seed", BAD_SEED.as_bytes()),
        Secret::new("argv-mistake", ARGV_MISTAKE.as_bytes()),
        Secret::new("unknown-ticket", UNKNOWN_TICKET.as_bytes()),
        Secret::new("typed-secret", TYPED_SECRET.as_bytes()),
        Secret::with_extra(
            "totp-seed",
            totp_seed().as_bytes(),
            seed_extras(&totp_seed(), TOTP_KEY),
        ),
        Secret::with_extra(
            "otpauth-uri",
            otpauth_uri().as_bytes(),
            seed_extras(&BASE32_NOPAD.encode(OTPAUTH_KEY), OTPAUTH_KEY),
        ),
    ];

    // ---- Help, version, completions, man: no secret exists yet, but they are commands.
    r.ok(&["--help"], b"");
    r.ok(&["--version"], b"");
    r.ok(&["help", "cred", "add"], b"");
    for shell in ["bash", "zsh", "fish", "elvish", "powershell"] {
        r.ok(&["completions", shell], b"");
    }
    r.fail(&["completions", "tcsh"], b"");
    r.ok(&["man"], b"");

    // ---- Admin commands on the vault, succeeding.
    r.fail(&["cred", "list", "--passphrase-file", &pf], b""); // no vault yet
    r.ok(&["init", "--passphrase-file", &pf], b"");
    let add =
        |name: &str, kind: &str, scopes: &[&str], extra: &[&str], stdin: &[u8], expect: Expect| {
            let mut a = vec![
                "cred",
                "add",
                name,
                "--kind",
                kind,
                "--passphrase-file",
                &pf,
            ];
            for s in scopes {
                a.extend(["--scope", s]);
            }
            a.extend(extra);
            r.sv(&a, stdin, expect, &[])
        };
    add(
        "shop-login",
        "login",
        &["shop:login"],
        &[
            "--origin",
            "https://shop.example.com",
            "--field",
            "username=monitor",
            "--secret",
            "password",
        ],
        format!("{LOGIN_PW}\n").as_bytes(),
        Expect::Success,
    );
    add(
        "api-b64",
        "token",
        &["api:read"],
        &["--secret-file", &format!("token={b64_file}")],
        b"",
        Expect::Success,
    );
    add(
        "api-url",
        "token",
        &["api:read"],
        &["--secret-file", &format!("token={url_file}")],
        b"",
        Expect::Success,
    );
    add(
        "api-json",
        "generic",
        &["api:read"],
        &["--secret-file", &format!("api_key={json_file}")],
        b"",
        Expect::Success,
    );
    add(
        "shop-2fa",
        "totp",
        &["shop:login"],
        &["--secret", "totp_seed"],
        totp_seed().as_bytes(),
        Expect::Success,
    );
    add(
        "shop-2fa-uri",
        "totp",
        &["shop:login"],
        &["--secret-file", &format!("otpauth={otp_file}")],
        b"",
        Expect::Success,
    );
    add(
        "shop-admin",
        "login",
        &["shop:login", "shop:admin"],
        &["--field", "username=admin", "--secret", "password"],
        ADMIN_PW.as_bytes(),
        Expect::Success,
    );
    // Failing adds, each with a secret in reach: a name taken, a name not allowed.
    for name in ["shop-login", "bad/name"] {
        add(
            name,
            "login",
            &[],
            &["--secret", "password"],
            LOGIN_PW.as_bytes(),
            Expect::Failure,
        );
    }
    add(
        "two-secrets",
        "login",
        &[],
        &["--secret", "password", "--secret", "pin"],
        LOGIN_PW.as_bytes(),
        Expect::Failure,
    );
    add(
        "bad-totp",
        "totp",
        &["shop:login"],
        &["--secret", "totp_seed"],
        BAD_SEED.as_bytes(),
        // Refused since `cred add` checks TOTP seeds; the refusal has the seed in reach.
        Expect::Failure,
    );
    // A vault written before that check (or by hand) can still hold one: store it through
    // the library, so the daemon's error paths below run with this value in reach.
    {
        let mut c = child_of_self(&r, "store-bad-seed");
        c.env("LEAK_AUDIT_PASSFILE", &pf);
        r.run(
            &mut c,
            "library: store an unusable TOTP seed",
            b"",
            Expect::Success,
            &[],
        );
    }
    add(
        "bad-file",
        "token",
        &[],
        &["--secret-file", &format!("token={bad_utf8}")],
        b"",
        Expect::Failure,
    );
    add(
        "no-file",
        "token",
        &[],
        &["--secret-file", "token=/nonexistent/leak-audit"],
        b"",
        Expect::Failure,
    );
    add(
        "bad-kind",
        "wizard",
        &[],
        &["--secret", "token"],
        LOGIN_PW.as_bytes(),
        Expect::Failure,
    );
    r.fail(
        &[
            "cred",
            "add",
            "api-x",
            "--kind",
            "token",
            "--secret",
            "token",
            "--passphrase-file",
            &wrong,
        ],
        B64_TOKEN.as_bytes(),
    );
    r.ok(&["cred", "list", "--passphrase-file", &pf], b"");
    r.ok(&["cred", "list", "--json", "--passphrase-file", &pf], b"");
    for c in [
        "shop-login",
        "api-b64",
        "api-url",
        "api-json",
        "shop-2fa",
        "shop-2fa-uri",
        "shop-admin",
    ] {
        r.ok(&["cred", "show", c, "--passphrase-file", &pf], b"");
        r.ok(
            &["cred", "show", c, "--json", "--passphrase-file", &pf],
            b"",
        );
    }
    r.fail(&["cred", "show", "nope", "--passphrase-file", &pf], b"");
    r.fail(&["cred", "list", "--passphrase-file", &wrong], b"");
    r.fail(&["cred", "list"], b""); // no unlock source, stdin not a terminal
    r.fail(&["cred", "list", "--passphrase-fd", "7"], b""); // fd not open

    // ---- Round 2's admin commands: fleet, sync, import, doctor, migrate. Each runs with
    // secrets within its reach (the vault unlocked, an import file holding a password, an
    // OpenBao token in the environment) and none may show in what it prints.
    r.ok(&["recipient", "--passphrase-file", &pf], b"");
    // Doctor fails its `totp` line on `bad-totp` (a seed that gives no code, stored through
    // the library above; twenty-first pass): the report is made with BAD_SEED in reach.
    let out = r.fail(&["doctor", "--passphrase-file", &pf], b"");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report
            .contains("credential `bad-totp` holds a TOTP seed in `totp_seed` that gives no code"),
        "{report}"
    );
    r.ok(&["key", "migrate", "--passphrase-file", &pf], b""); // already version 2
                                                              // An import whose second row is unusable: refused whole, rows reported without values.
    let csv = input(
        "import.csv",
        format!("name,login_username,login_password\nimported,monitor,{IMPORT_PW}\n,monitor,x\n")
            .as_bytes(),
        "import-password",
    );
    secrets.push(Secret::new("import-password", IMPORT_PW.as_bytes()));
    r.fail(
        &[
            "cred",
            "import",
            &csv,
            "--format",
            "csv",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    let policy_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/policy.toml");
    let policy_s = policy_path.to_str().unwrap();
    let bundles = d.p("bundles");
    // The example policy declares no locations: nothing to publish.
    r.fail(
        &[
            "publish",
            "--policy",
            policy_s,
            "--out",
            bundles.to_str().unwrap(),
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    let junk = input("junk.svbundle", b"not a bundle", "none");
    r.fail(&["bundle", "inspect", &junk], b"");
    r.fail(
        &["bundle", "verify", &junk, "--allowed-signers", &junk],
        b"",
    );
    r.fail(
        &[
            "bundle",
            "apply",
            &junk,
            "--allowed-signers",
            &junk,
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    // sync openbao with a token in the environment against a loopback port nobody serves.
    secrets.push(Secret::new("openbao-token", BAO_TOKEN_VALUE.as_bytes()));
    let sync_args = [
        "sync",
        "openbao",
        "--addr",
        "http://127.0.0.1:1",
        "--mount",
        "secret",
        "--prefix",
        "monitoring/",
        "--passphrase-file",
        &pf,
    ];
    let mut c = r.command(&r.bin);
    c.args(sync_args).env("BAO_TOKEN", BAO_TOKEN_VALUE);
    r.run(
        &mut c,
        "scopevault sync openbao (token in env)",
        b"",
        Expect::Failure,
        &[],
    );
    r.driven.borrow_mut().insert(r.path_of(&sync_args[..]));
    r.ok(
        &["cred", "list", "--passphrase-fd", "0"],
        format!("{VAULT_PASS}\n").as_bytes(),
    );
    // `cred set CRED --secret password`, the new value on stdin.
    let set_password = |cred: &str, value: &str, expect: Expect| {
        let args = ["cred", "set", cred, "--secret", "password"];
        let args = [&args[..], &["--passphrase-file", &pf]].concat();
        r.sv(&args, value.as_bytes(), expect, &[])
    };
    set_password("nope", ROTATED_PW, Expect::Failure);
    r.fail(
        &[
            "cred",
            "set",
            "shop-2fa",
            "--secret",
            "totp_seed",
            "--secret",
            "otpauth",
            "--passphrase-file",
            &pf,
        ],
        LOGIN_PW.as_bytes(),
    );
    // Rotate the login, then rotate it back (both values are secrets).
    set_password("shop-login", ROTATED_PW, Expect::Success);
    set_password("shop-login", LOGIN_PW, Expect::Success);
    add(
        "to-remove",
        "token",
        &[],
        &["--secret", "token"],
        ROTATED_PW.as_bytes(),
        Expect::Success,
    );
    r.ok(&["cred", "rm", "to-remove", "--passphrase-file", &pf], b"");
    r.fail(&["cred", "rm", "to-remove", "--passphrase-file", &pf], b"");

    // Secrets typed where they do not belong (they are in this audit's argv, which is not
    // scanned; the errors must not repeat them).
    for (flag, value) in [
        ("--field", format!("password={ARGV_MISTAKE}")),
        ("--field", format!("bad key={ARGV_MISTAKE}")),
        ("--field", ARGV_MISTAKE.to_owned()),
        ("--secret-file", ARGV_MISTAKE.to_owned()),
        ("--secret", format!("password={ARGV_MISTAKE}")),
        ("--secret", format!("bad key={ARGV_MISTAKE}")),
        ("--secret", ARGV_MISTAKE.to_owned()),
    ] {
        r.fail(
            &[
                "cred",
                "add",
                "mistake",
                "--kind",
                "login",
                flag,
                &value,
                "--passphrase-file",
                &pf,
            ],
            b"",
        );
    }
    let mistake = format!("password={ARGV_MISTAKE}");
    r.fail(
        &[
            "cred",
            "set",
            "shop-login",
            "--secret",
            &mistake,
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    // A space where `=` was meant: the value is a stray argument clap would have quoted.
    r.fail(
        &[
            "cred",
            "set",
            "shop-login",
            "--secret",
            "password",
            ARGV_MISTAKE,
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    r.fail(
        &[
            "cred",
            "add",
            "mistake",
            "--kind",
            "login",
            "--secret",
            "password",
            ARGV_MISTAKE,
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    // Rollback: an older copy of the vault put back is refused (and accepted when asked).
    let older = std::fs::read(d.p("vault/vault.scopevault")).unwrap();
    // A change saves a newer generation (the value stored already saves nothing: twenty-
    // fourth pass).
    r.ok(
        &[
            "cred",
            "set",
            "shop-admin",
            "--field",
            "rollback_note=newer",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    std::fs::write(d.p("vault/vault.scopevault"), &older).unwrap();
    r.fail(
        &["cred", "show", "shop-admin", "--passphrase-file", &pf],
        b"",
    );
    // Checked read-only (adopts nothing), then adopted by setting again the secret rotated
    // since, as operations.md says.
    r.ok(
        &["cred", "list", "--allow-rollback", "--passphrase-file", &pf],
        b"",
    );
    r.sv(
        &[
            "cred",
            "set",
            "shop-admin",
            "--secret",
            "password",
            "--allow-rollback",
            "--passphrase-file",
            &pf,
        ],
        ADMIN_PW.as_bytes(),
        Expect::Success,
        &[],
    );

    // Key slots: a second passphrase, an identity file, a keyring (no session bus: fails).
    r.ok(&["key", "list"], b"");
    r.ok(&["key", "list", "--json"], b"");
    r.ok(
        &[
            "key",
            "add",
            "--passphrase",
            "--new-passphrase-file",
            &second,
            "--label",
            "second admin",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    let id_file = d.p("keys/identity.txt");
    std::fs::create_dir_all(id_file.parent().unwrap()).unwrap();
    r.ok(
        &[
            "key",
            "add",
            "--identity-out",
            id_file.to_str().unwrap(),
            "--passphrase-file",
            &second,
        ],
        b"",
    );
    let identity = std::fs::read_to_string(&id_file).unwrap();
    let identity_key = identity
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .expect("an identity line")
        .to_owned();
    secrets.push(Secret::with_extra(
        "identity-file-key",
        identity_key.as_bytes(),
        vec![("lowercase".into(), identity_key.to_lowercase().into_bytes())],
    ));
    allowed_in_file.insert(id_file.clone(), vec!["identity-file-key".into()]);
    let idf = id_file.to_str().unwrap().to_owned();
    r.fail(&["key", "add", "--keyring", "--passphrase-file", &pf], b"");
    r.fail(
        &["key", "add", "--passphrase", "--passphrase-file", &pf],
        b"",
    ); // no new passphrase source
    r.fail(
        &["key", "remove", "no-such-slot", "--passphrase-file", &pf],
        b"",
    );
    let slots: serde_json::Value =
        serde_json::from_slice(&r.ok(&["key", "list", "--json"], b"").stdout).unwrap();
    let slot_ids: Vec<String> = slots
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(slot_ids.len(), 3, "three slots: {slots}");
    // key passwd: refused with two passphrase slots and no --slot, with a wrong current
    // passphrase, with a weak new one; then the second slot's passphrase changed (by label),
    // and changed again to a weak one with --weak-passphrase-ok.
    r.fail(
        &[
            "key",
            "passwd",
            "--new-passphrase-file",
            &third,
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    r.fail(
        &[
            "key",
            "passwd",
            "--slot",
            "second admin",
            "--new-passphrase-file",
            &third,
            "--passphrase-file",
            &wrong,
        ],
        b"",
    );
    r.fail(
        &[
            "key",
            "passwd",
            "--slot",
            "second admin",
            "--new-passphrase-file",
            &weak,
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    r.ok(
        &[
            "key",
            "passwd",
            "--slot",
            "second admin",
            "--new-passphrase-file",
            &third,
            "--passphrase-file",
            &second,
        ],
        b"",
    );
    r.fail(&["cred", "list", "--passphrase-file", &second], b"");
    r.ok(&["cred", "list", "--passphrase-file", &third], b"");
    r.ok(
        &[
            "key",
            "passwd",
            "--slot",
            &slot_ids[1],
            "--new-passphrase-file",
            &weak,
            "--weak-passphrase-ok",
            "--passphrase-file",
            &third,
        ],
        b"",
    );
    r.ok(&["cred", "list", "--passphrase-file", &weak], b"");
    // Remove the second passphrase slot (the middle one), unlocking with the identity file.
    r.ok(
        &["key", "remove", &slot_ids[1], "--identity-file", &idf],
        b"",
    );
    r.fail(&["cred", "list", "--passphrase-file", &weak], b"");
    r.fail(&["cred", "list", "--identity-file", &pf], b""); // a passphrase file is no identity

    // A second vault: init with an identity file, and failing inits.
    let v2 = d.s("vault2/v2.scopevault");
    let id2 = d.p("keys/v2-identity.txt");
    r.ok(
        &[
            "--vault",
            &v2,
            "init",
            "--identity-out",
            id2.to_str().unwrap(),
        ],
        b"",
    );
    let id2_key = std::fs::read_to_string(&id2)
        .unwrap()
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .unwrap()
        .to_owned();
    secrets.push(Secret::new("v2-identity-key", id2_key.as_bytes()));
    allowed_in_file.insert(id2.clone(), vec!["v2-identity-key".into()]);
    r.fail(&["init", "--passphrase-file", &pf], b""); // exists
    r.fail(
        &[
            "--vault",
            &d.s("vault3/v3.scopevault"),
            "init",
            "--keyring",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    r.fail(&["--vault", &d.s("vault3/v3.scopevault"), "init"], b""); // no passphrase source

    // Policy.
    r.ok(
        &[
            "policy",
            "apply",
            &pol,
            "--dry-run",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    r.ok(&["policy", "apply", &pol, "--passphrase-file", &pf], b"");
    r.fail(
        &["policy", "apply", &bad_pol, "--passphrase-file", &pf],
        b"",
    );
    r.fail(
        &["policy", "apply", &broken_pol, "--passphrase-file", &pf],
        b"",
    );
    r.fail(
        &[
            "policy",
            "apply",
            &pol,
            "--deny",
            "warning",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    r.ok(&["policy", "export", "--identity-file", &idf], b"");
    let exported = d.p("reports/exported.toml");
    let out = r.ok(&["policy", "export", "--passphrase-file", &pf], b"");
    std::fs::write(&exported, &out.stdout).unwrap();

    // Lint, every format, with and without the vault, to stdout and to files.
    for fmt in ["text", "json", "sarif", "junit"] {
        for (file, expect) in [
            (&pol, Expect::Failure),
            (&bad_pol, Expect::Failure),
            (&broken_pol, Expect::Failure),
        ] {
            r.sv(&["lint", file, "--format", fmt], b"", expect, &[]);
        }
        for pass in [&pf, &wrong] {
            r.sv(
                &[
                    "lint",
                    &pol,
                    "--with-vault",
                    "--format",
                    fmt,
                    "--passphrase-file",
                    pass,
                ],
                b"",
                Expect::Failure,
                &[],
            );
        }
        let report = d.s(&format!("reports/lint.{fmt}"));
        // An error blocks: `bad-totp`'s seed gives no code (`unusable-totp-seed`, twenty-first
        // pass), found with BAD_SEED in reach; the report is written all the same.
        r.sv(
            &[
                "lint",
                &pol,
                "--with-vault",
                "--format",
                fmt,
                "--output",
                &report,
                "--deny",
                "error",
                "--identity-file",
                &idf,
            ],
            b"",
            Expect::Failure,
            &[],
        );
        let written = std::fs::read_to_string(&report).unwrap();
        assert!(written.contains("unusable-totp-seed"), "{written}");
    }
    r.fail(&["lint", &d.s("policy/missing.toml")], b"");

    // The vault's own identity (the key everything is encrypted to) is a secret too.
    {
        use scopevault::vault::{OpenOptions, Unlock, Vault};
        let v = crate::common::with_state_dir(&d.p("state"), || {
            Vault::open(
                &d.p("vault/vault.scopevault"),
                &Unlock::IdentityFile(id_file.clone()),
                &OpenOptions::default(),
            )
        })
        .unwrap();
        use age::secrecy::ExposeSecret;
        let ident = scopevault::vault::bench_support::identity_of(&v).to_string();
        let ident = ident.expose_secret().to_owned();
        secrets.push(Secret::with_extra(
            "vault-identity",
            ident.as_bytes(),
            vec![("lowercase".into(), ident.to_lowercase().into_bytes())],
        ));
    }

    // ---- Corrupted vault: the error path that reads most of the file.
    let vault_path = d.p("vault/vault.scopevault");
    let good = std::fs::read(&vault_path).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 40] ^= 0xff;
    std::fs::write(&vault_path, &bad).unwrap();
    r.fail(
        &["cred", "show", "shop-login", "--passphrase-file", &pf],
        b"",
    );
    r.fail(
        &[
            "lint",
            &pol,
            "--with-vault",
            "--format",
            "json",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    std::fs::write(&vault_path, &good).unwrap();

    // ---- The passphrase prompt, on a real pseudo-terminal.
    let have_pty = pty::available();
    let on_pty = |args: &str, answers: &[String], expect: Expect| {
        let mut c = r.command("python3");
        pty::drive(&mut c, &bin, args);
        r.driven
            .borrow_mut()
            .insert(r.path_of(&args.split(' ').collect::<Vec<_>>()));
        // Answers go on the driver's stdin, not its argv.
        r.run(
            &mut c,
            &format!("(pty) scopevault {args}"),
            answers.join("\n").as_bytes(),
            expect,
            &[],
        )
    };
    let pty_note = if have_pty {
        on_pty(
            "cred list",
            &[format!("Passphrase for={VAULT_PASS}")],
            Expect::Success,
        );
        on_pty(
            "cred list",
            &[format!("Passphrase for={WRONG_PASS}")],
            Expect::Failure,
        );
        on_pty(
            "cred add typed --kind token --secret token",
            // The secret is asked for first, then the vault passphrase.
            &[
                format!("token: ={TYPED_SECRET}"),
                format!("Passphrase for={VAULT_PASS}"),
            ],
            Expect::Success,
        );
        on_pty(
            "key add --passphrase",
            &[
                // The new passphrase is asked for (twice) before the vault is unlocked.
                format!("New passphrase={SECOND_PASS}"),
                format!("Repeat it={WRONG_PASS}"),
            ],
            Expect::Failure,
        );
        on_pty(
            "key passwd",
            &[
                // The current passphrase first, then the new one twice (mismatched: nothing
                // changes).
                format!("Passphrase for={VAULT_PASS}"),
                format!("New passphrase={THIRD_PASS}"),
                format!("Repeat it={SECOND_PASS}"),
            ],
            Expect::Failure,
        );
        "prompt driven on a pty"
    } else {
        skip::skip("python3 with the pty module is needed for the prompt path");
        "skipped: python3 with the pty module is needed for the prompt path"
    };

    // ---- The daemon.
    let daemon_err = d.p("logs/daemon.stderr");
    std::fs::create_dir_all(daemon_err.parent().unwrap()).unwrap();
    let sock = socket.to_str().unwrap().to_owned();
    let daemon = Daemon::start(&r, &["serve", "--socket", &sock], &socket, &daemon_err);
    // Another daemon on the same audit log and socket: refused.
    r.fail(&["serve", "--socket", &d.s("run/second.sock")], b"");
    r.fail(
        &[
            "serve",
            "--socket",
            &d.s("run/third.sock"),
            "--audit",
            &d.s("audit/other.jsonl"),
            "--identity-file",
            &pf,
        ],
        b"",
    );
    let key = std::fs::read(d.p("audit/audit.jsonl.key")).unwrap();
    secrets.push(Secret::new("audit-hmac-key", &key));
    allowed_in_file.insert(d.p("audit/audit.jsonl.key"), vec!["audit-hmac-key".into()]);

    let ops = std::cell::RefCell::new(BTreeSet::new());
    r.ok(&["status"], b"");
    r.fail(&["get", "--task", "login-flow"], b""); // locked
    r.fail(&["unlock", "--passphrase-file", &wrong], b"");
    r.fail(&["unlock"], b""); // no passphrase source
    r.ok(&["unlock", "--passphrase-file", &pf], b"");
    r.ok(&["status"], b"");
    r.ok(&["status", "--json"], b"");

    // get: printing the secret is its purpose (stdout carries it); stderr must stay clean.
    r.sv(
        &["get", "--task", "login-flow"],
        b"",
        Expect::Success,
        &["login-password"],
    );
    r.sv(
        &["get", "--task", "login-flow", "--json"],
        b"",
        Expect::Success,
        &["login-password"],
    );
    r.sv(
        &["get", "--task", "login-flow", "--field", "password"],
        b"",
        Expect::Success,
        &["login-password"],
    );
    r.ok(&["get", "--task", "login-flow", "--field", "username"], b"");
    r.fail(&["get", "--task", "login-flow", "--field", "nope"], b"");
    r.sv(
        &[
            "get",
            "--task",
            "api-check",
            "--credential",
            "api-b64",
            "--field",
            "token",
        ],
        b"",
        Expect::Success,
        &["b64-looking-token"],
    );
    r.sv(
        &["get", "--task", "api-check", "--json"],
        b"",
        Expect::Success,
        &[
            "b64-looking-token",
            "url-looking-token",
            "json-looking-token",
        ],
    );
    r.fail(&["get", "--task", "api-check"], b""); // several credentials
    r.fail(
        &["get", "--task", "api-check", "--credential", "shop-login"],
        b"",
    );
    r.ok(&["get", "--task", "totp-flow", "--json"], b""); // codes, never the seeds
    r.ok(
        &["get", "--task", "totp-flow", "--credential", "shop-2fa"],
        b"",
    );
    r.ok(
        &[
            "get",
            "--task",
            "totp-flow",
            "--credential",
            "shop-2fa",
            "--field",
            "totp",
        ],
        b"",
    );
    r.fail(&["get", "--task", "other-uid"], b"");
    r.fail(&["get", "--task", "admin-report"], b""); // over-scoped, enforce = deny
    r.fail(&["get", "--task", "no-such-task"], b"");
    r.ok(
        &["totp", "--task", "totp-flow", "--credential", "shop-2fa"],
        b"",
    );
    r.ok(
        &[
            "totp",
            "--task",
            "totp-flow",
            "--credential",
            "shop-2fa-uri",
        ],
        b"",
    );
    r.fail(&["totp", "--task", "totp-flow"], b""); // two totp credentials
    r.fail(&["totp", "--task", "login-flow"], b""); // none
    r.fail(&["totp", "--task", "other-uid"], b"");
    // A TOTP credential whose stored seed is not base32: the error paths, seed in reach.
    r.fail(&["get", "--task", "broken-totp"], b"");
    r.fail(&["totp", "--task", "broken-totp"], b"");

    // exec: the child prints every value in every form exec masks; the output must be masked.
    let me = std::env::current_exe().unwrap();
    let me_s = me.to_str().unwrap().to_owned();
    let full_name = test_name();
    let child_args = ["--exact", &full_name, "--nocapture", "--test-threads", "1"];
    let exec = |pre: &[&str], role: &str, expect: Expect| {
        let mut a: Vec<&str> = vec!["exec"];
        a.extend(pre);
        a.push("--");
        a.push(&me_s);
        a.extend(child_args);
        let mut c = r.command(&r.bin);
        c.args(&a).env(ROLE, role);
        r.driven.borrow_mut().insert(r.path_of(&a));
        let out = r.run(
            &mut c,
            &format!("scopevault exec {} ({role})", pre.join(" ")),
            b"",
            expect,
            &[],
        );
        if role == "exec-child" && expect == Expect::Success {
            // The child did print values (masked): the scan below is not vacuous.
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(
                text.matches("[redacted:").count() >= 3,
                "exec {pre:?}: the child printed masked values"
            );
        }
        out
    };
    let out = exec(&["--task", "login-flow"], "exec-child", Expect::Success);
    let masked = String::from_utf8_lossy(&out.stdout);
    assert!(
        masked.contains("[redacted:shop-login.password]"),
        "exec masks under the credential.field label"
    );
    exec(&["--task", "api-check"], "exec-child", Expect::Success);
    exec(
        &["--task", "api-check", "--credential", "api-json"],
        "exec-child",
        Expect::Success,
    );
    exec(&["--task", "totp-flow"], "exec-child", Expect::Success);
    let out = exec(
        &["--task", "login-flow", "--files"],
        "exec-child",
        Expect::Success,
    );
    let out = String::from_utf8_lossy(&out.stdout);
    let files_dir = out
        .lines()
        // (The harness prints `test NAME ... ` before the child's first line.)
        .find_map(|l| l.split("credentials directory: ").nth(1))
        .unwrap_or_else(|| {
            panic!(
                "the child saw its credentials directory: {}",
                &out[..out.len().min(3000)]
            )
        });
    assert!(
        !Path::new(files_dir).exists(),
        "exec --files removed {files_dir} after the child exited"
    );
    exec(
        &["--task", "api-check", "--files"],
        "exec-child",
        Expect::Success,
    );
    // --no-mask hands the values over unmasked on purpose; this child prints none of them.
    exec(
        &["--task", "login-flow", "--no-mask"],
        "exec-quiet",
        Expect::Success,
    );
    exec(&["--task", "other-uid"], "exec-child", Expect::Failure);
    exec(&["--task", "broken-totp"], "exec-child", Expect::Failure);
    exec(&["--task", "admin-report"], "exec-child", Expect::Failure);
    r.fail(
        &[
            "exec",
            "--task",
            "login-flow",
            "--",
            "/nonexistent/leak-audit-cmd",
        ],
        b"",
    );

    // redact: an artefact holding the login password (raw and JSON-escaped) is scrubbed; the
    // command's output and the file afterwards are scanned like everything else.
    let art = d.p("reports/artifacts");
    std::fs::create_dir_all(&art).unwrap();
    let art_file = art.join("login.log");
    let artefact = format!(
        "typed {LOGIN_PW} then {}\n",
        serde_json::to_string(LOGIN_PW).unwrap()
    );
    std::fs::write(&art_file, &artefact).unwrap();
    let art_s = art.to_str().unwrap().to_owned();
    r.ok(&["redact", "--task", "login-flow", &art_s], b"");
    let scrubbed = std::fs::read(&art_file).unwrap();
    assert!(
        String::from_utf8_lossy(&scrubbed).contains("[redacted:shop-login.password]"),
        "redact rewrote the artefact"
    );
    r.add("artefact after scopevault redact", scrubbed, &[]);
    std::fs::write(&art_file, &artefact).unwrap();
    r.fail(&["redact", "--task", "other-uid", &art_s], b"");
    assert_eq!(
        std::fs::read(&art_file).unwrap(),
        artefact.as_bytes(),
        "a refused redact leaves the file as it was"
    );
    std::fs::remove_file(&art_file).unwrap();

    // ---- Every socket op, allowed and denied, on one connection and fresh ones.
    let mut s = Socket::new(&r, &socket, &ops);
    assert_eq!(s.req(r#"{"v":1,"op":"health"}"#, &[])["ok"], true);
    assert_eq!(s.req(r#"{"v":1,"op":"tasks"}"#, &[])["ok"], true);
    let v = s.req(
        r#"{"v":1,"op":"fetch","task":"login-flow"}"#,
        &["login-password"],
    );
    assert_eq!(v["ok"], true, "{}", code(&v));
    let v = s.req(
        r#"{"v":1,"op":"fetch","task":"api-check","credential":"api-url"}"#,
        &["url-looking-token"],
    );
    assert_eq!(v["ok"], true);
    let v = s.req(r#"{"v":1,"op":"fetch","task":"totp-flow"}"#, &[]);
    assert!(
        v["credentials"][0]["totp"]["code"].is_string(),
        "a code, not a seed"
    );
    assert_eq!(
        code(&s.req(r#"{"v":1,"op":"fetch","task":"other-uid"}"#, &[])),
        "denied"
    );
    assert_eq!(
        code(&s.req(r#"{"v":1,"op":"fetch","task":"admin-report"}"#, &[])),
        "over_scoped"
    );
    assert_eq!(
        code(&s.req(r#"{"v":1,"op":"fetch","task":"no-such"}"#, &[])),
        "not_found"
    );
    assert_ne!(
        s.req(r#"{"v":1,"op":"fetch","task":"broken-totp"}"#, &[])["ok"],
        true
    );
    assert_eq!(
        code(&s.req(r#"{"v":1,"op":"fetch","task":"no-such"}"#, &[])),
        "not_found"
    );
    // docs/protocol.md says `not_found`; the daemon answers `denied` (reported, not a leak).
    let v = s.req(
        r#"{"v":1,"op":"fetch","task":"login-flow","credential":"api-b64"}"#,
        &[],
    );
    assert!(matches!(code(&v), "not_found" | "denied"), "{v}");
    // Tickets: issue, redeem, redeem again (possible interception), unknown, expired.
    let mut tickets = Vec::new();
    let v = s.req(
        r#"{"v":1,"op":"ticket","task":"api-check","ttl":60}"#,
        &["ticket-1"],
    );
    let t1 = v["ticket"].as_str().expect("a ticket").to_owned();
    tickets.push(t1.clone());
    let redeem = format!(r#"{{"v":1,"op":"fetch","ticket":"{t1}"}}"#);
    let v = s.req(
        &redeem,
        &[
            "b64-looking-token",
            "url-looking-token",
            "json-looking-token",
        ],
    );
    assert_eq!(v["ok"], true);
    assert_eq!(code(&s.req(&redeem, &[])), "denied");
    assert_eq!(
        code(&s.req(
            &format!(r#"{{"v":1,"op":"fetch","ticket":"{UNKNOWN_TICKET}"}}"#),
            &[]
        )),
        "not_found"
    );
    let v = s.req(
        r#"{"v":1,"op":"ticket","task":"login-flow","ttl":1}"#,
        &["ticket-2"],
    );
    let t2 = v["ticket"].as_str().unwrap().to_owned();
    tickets.push(t2.clone());
    let v = s.req(
        r#"{"v":1,"op":"ticket","task":"admin-report","ttl":60}"#,
        &["ticket-3"],
    );
    let t3 = v["ticket"].as_str().unwrap().to_owned();
    tickets.push(t3.clone());
    assert_eq!(
        code(&s.req(&format!(r#"{{"v":1,"op":"fetch","ticket":"{t3}"}}"#), &[])),
        "over_scoped"
    );
    assert_eq!(
        code(&s.req(r#"{"v":1,"op":"ticket","task":"no-such","ttl":60}"#, &[])),
        "not_found"
    );
    assert_eq!(
        code(&s.req(r#"{"v":1,"op":"ticket","task":"login-flow","ttl":0}"#, &[])),
        "bad_request"
    );
    // A client's mistake: the ticket sent as the task name (`get --task "$TICKET"`).
    assert_eq!(
        code(&s.req(&format!(r#"{{"v":1,"op":"fetch","task":"{t1}"}}"#), &[])),
        "not_found"
    );
    assert_eq!(
        code(&s.req(
            &format!(r#"{{"v":1,"op":"ticket","task":"{t3}","ttl":60}}"#),
            &[]
        )),
        "not_found"
    );
    // scrub_report (issue 12): allowed for a runner, a secret sent as a label (recorded as its
    // HMAC), refused for a task the peer does not run, an unknown task that is a secret, and
    // a secret as an unknown member of `scrub` (bad_request, not echoed).
    let admin_json = serde_json::to_string(ADMIN_PW).unwrap();
    let scrub = |task: &str, extra: &str| {
        format!(
            r#"{{"v":1,"op":"scrub_report","task":{},"scrub":{{"files":3,"rewritten":2,"failed":0,"binary_kept":1,"binary_dropped":0,"binary_with_form":0,"hits":{{"shop-login.password":4,{admin_json}:1}}{extra}}}}}"#,
            serde_json::to_string(task).unwrap()
        )
    };
    let v = s.req(&scrub("login-flow", ""), &[]);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(code(&s.req(&scrub("other-uid", ""), &[])), "denied");
    assert_eq!(code(&s.req(&scrub(ADMIN_PW, ""), &[])), "not_found");
    assert_eq!(
        code(&s.req(&scrub("login-flow", &format!(",{admin_json}:1")), &[])),
        "bad_request"
    );
    // Secrets in the wrong places: answers must not echo them.
    let pass_json = serde_json::to_string(VAULT_PASS).unwrap();
    let wrong_json = serde_json::to_string(WRONG_PASS).unwrap();
    let unlock_wrong = format!(r#"{{"v":1,"op":"unlock","passphrase":{wrong_json}}}"#);
    assert_eq!(
        code(&s.req(
            &format!(r#"{{"v":1,"op":"unlock","passphrase":{pass_json},"extra":1}}"#),
            &[]
        )),
        "bad_request"
    );
    assert_eq!(
        code(&s.req(
            &format!(r#"{{"v":1,"op":"health","passphrase":{pass_json}}}"#),
            &[]
        )),
        "bad_request"
    );
    assert_eq!(
        code(&s.req(&format!(r#"{{"v":1,"op":"health","ticket":"{t1}"}}"#), &[])),
        "bad_request"
    );
    assert_eq!(
        code(&s.req(
            &format!(r#"{{"v":1,"op":"fetch","task":"login-flow","ticket":"{t2}"}}"#),
            &[]
        )),
        "bad_request"
    );
    assert_eq!(
        code(&s.req(
            &format!(r#"{{"v":2,"op":"unlock","passphrase":{pass_json}}}"#),
            &[]
        )),
        "bad_request"
    );
    assert_eq!(
        code(&s.req(
            &format!(r#"{{"v":1,"op":"unlock","passphrase":[{pass_json}]}}"#),
            &[]
        )),
        "bad_request"
    );
    assert_eq!(
        code(&s.req(
            &format!(r#"{{"v":1,"op":"unlock","passphrase":{pass_json}"#),
            &[]
        )),
        "bad_request"
    );
    assert_eq!(
        code(&s.req(&format!(r#"[{pass_json}]"#), &[])),
        "bad_request"
    );
    let v = s.req(r#"{"v":1,"op":"dance"}"#, &[]);
    assert_eq!(code(&v), "bad_request");
    // The daemon's own list of ops, to check below that every one was driven.
    let op_list = v["error"]["message"]
        .as_str()
        .and_then(|m| m.split("ops: ").nth(1))
        .expect("the unknown-op message lists the ops")
        .to_owned();
    // Admin ops.
    assert_eq!(code(&s.req(&unlock_wrong, &[])), "denied");
    assert_eq!(s.req(r#"{"v":1,"op":"reload"}"#, &[])["ok"], true);
    // The audit log moved aside: the rotated file stays in the audit directory, scanned below.
    assert_eq!(s.req(r#"{"v":1,"op":"audit_rotate"}"#, &[])["ok"], true);
    assert_eq!(s.req(r#"{"v":1,"op":"lock"}"#, &[])["locked"], true);
    assert_eq!(
        code(&s.req(r#"{"v":1,"op":"fetch","task":"login-flow"}"#, &[])),
        "locked"
    );
    assert_eq!(
        code(&s.req(&format!(r#"{{"v":1,"op":"fetch","ticket":"{t2}"}}"#), &[])),
        "locked"
    );
    assert_eq!(code(&s.req(r#"{"v":1,"op":"tasks"}"#, &[])), "locked");
    assert_eq!(code(&s.req(r#"{"v":1,"op":"reload"}"#, &[])), "locked");
    assert_eq!(code(&s.req(&unlock_wrong, &[])), "denied");
    assert_eq!(
        s.req(
            &format!(r#"{{"v":1,"op":"unlock","passphrase":{pass_json}}}"#),
            &[]
        )["locked"],
        false
    );
    // An expired ticket (ttl 1 s, issued before the lock; the lock also forgot it).
    let v = s.req(
        r#"{"v":1,"op":"ticket","task":"login-flow","ttl":1}"#,
        &["ticket-4"],
    );
    let t4 = v["ticket"].as_str().unwrap().to_owned();
    tickets.push(t4.clone());
    std::thread::sleep(Duration::from_millis(2100));
    assert_eq!(
        code(&s.req(&format!(r#"{{"v":1,"op":"fetch","ticket":"{t4}"}}"#), &[])),
        "denied"
    );
    // A line over the limit, made of a secret: refused before it is buffered, not echoed.
    {
        let mut big = UnixStream::connect(&socket).unwrap();
        big.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let mut line = format!(
            r#"{{"v":1,"op":"unlock","passphrase":"{}"#,
            VAULT_PASS.replace('"', "'").replace('\\', "/")
        );
        while line.len() <= 70_000 {
            line.push_str(
                LOGIN_PW
                    .lines()
                    .next()
                    .unwrap()
                    .replace(['"', '\\'], "")
                    .as_str(),
            );
        }
        line.push_str("\"}\n");
        let _ = big.write_all(line.as_bytes());
        let mut answer = Vec::new();
        let _ = big.read_to_end(&mut answer);
        assert!(String::from_utf8_lossy(&answer).contains("too_large"));
        r.add("socket answer to an over-long line", answer, &[]);
    }
    // The same ops through the CLI.
    r.ok(&["reload"], b"");
    r.ok(&["lock"], b"");
    r.fail(
        &["totp", "--task", "totp-flow", "--credential", "shop-2fa"],
        b"",
    ); // locked
    r.ok(
        &["unlock", "--passphrase-fd", "0"],
        format!("{VAULT_PASS}\n").as_bytes(),
    );
    if have_pty {
        r.ok(&["lock"], b"");
        on_pty(
            "unlock",
            &[format!("passphrase={VAULT_PASS}")],
            Expect::Success,
        );
    }
    // A corrupt vault under the daemon: reload by request and by SIGHUP, unlock, all fail.
    let good = std::fs::read(&vault_path).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 40] ^= 0xff;
    std::fs::write(&vault_path, &bad).unwrap();
    r.fail(&["reload"], b"");
    Command::new("kill")
        .arg("-HUP")
        .arg(daemon.pid().to_string())
        .status()
        .unwrap();
    wait_for(&daemon_err, "SIGHUP: reload failed");
    r.ok(&["lock"], b"");
    r.fail(&["unlock", "--passphrase-file", &pf], b"");
    std::fs::write(&vault_path, &good).unwrap();
    r.ok(&["unlock", "--passphrase-file", &pf], b"");
    // A vault changed under the daemon, then reloaded; then the stored value set again,
    // which saves nothing.
    r.ok(
        &[
            "cred",
            "set",
            "shop-admin",
            "--field",
            "rollback_note=changed",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    set_password("shop-admin", ADMIN_PW, Expect::Success);
    r.ok(&["reload"], b"");
    r.ok(&["audit", "rotate"], b"");

    // Another uid: denied everything but health (root only; modes opened so the kernel
    // credential check is what refuses).
    let other_uid_note = if root {
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666)).unwrap();
        let as_nobody = |c: &mut Command| {
            use std::os::unix::process::CommandExt;
            c.uid(65534).gid(65534).current_dir("/").env("HOME", "/");
        };
        // uid 65534 must be able to execute both binaries wherever the checkout lives (CI's
        // clone may sit under a 0700 home): run copies from a world-readable directory.
        let shared = tempfile::Builder::new()
            .prefix("sv-leak-bin-")
            .tempdir()
            .unwrap();
        std::fs::set_permissions(shared.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let share = |from: &std::path::Path, name: &str| {
            let to = shared.path().join(name);
            crate::common::copy_executable(from, &to);
            to
        };
        let bin_shared = share(&r.bin, "scopevault");
        let self_shared = share(&std::env::current_exe().unwrap(), "leak_audit");
        let mut probe = r.command(&bin_shared);
        probe.arg("status");
        as_nobody(&mut probe);
        let runs = probe.output().map(|o| o.status.success()).unwrap_or(false);
        if runs {
            for args in [
                &["status"][..],
                &["get", "--task", "login-flow"],
                &["get", "--task", "other-uid"],
                &["totp", "--task", "totp-flow"],
                &["lock"],
                &["reload"],
                &["audit", "rotate"],
                &["unlock", "--passphrase-fd", "0"],
            ] {
                let mut c = r.command(&bin_shared);
                c.args(args);
                as_nobody(&mut c);
                // uid 65534 is the runner of task other-uid: that fetch is allowed.
                let (expect, carries): (Expect, &[&str]) = match args {
                    ["status"] => (Expect::Success, &[]),
                    [_, _, "other-uid"] => (Expect::Success, &["login-password"]),
                    _ => (Expect::Failure, &[]),
                };
                r.run(
                    &mut c,
                    &format!("(uid 65534) scopevault {}", args.join(" ")),
                    format!("{VAULT_PASS}\n").as_bytes(),
                    expect,
                    carries,
                );
            }
            let mut c = child_of_self_at(&r, &self_shared, "raw-client");
            as_nobody(&mut c);
            let lines = [
                r#"{"v":1,"op":"tasks"}"#.to_owned(),
                r#"{"v":1,"op":"fetch","task":"login-flow"}"#.to_owned(),
                r#"{"v":1,"op":"ticket","task":"login-flow","ttl":60}"#.to_owned(),
                r#"{"v":1,"op":"lock"}"#.to_owned(),
                r#"{"v":1,"op":"reload"}"#.to_owned(),
                r#"{"v":1,"op":"audit_rotate"}"#.to_owned(),
                format!(r#"{{"v":1,"op":"unlock","passphrase":{pass_json}}}"#),
                format!(r#"{{"v":1,"op":"fetch","ticket":"{t2}"}}"#),
            ]
            .join("\n");
            let out = r.run(
                &mut c,
                "(uid 65534) raw socket client",
                lines.as_bytes(),
                Expect::Success,
                &[],
            );
            let text = String::from_utf8_lossy(&out.stdout);
            let codes: Vec<String> = text
                .lines()
                // The harness's own lines around the answers (`test NAME ... ` prefixes the first).
                .filter_map(|l| l.find("{\"").map(|i| &l[i..]))
                .map(|l| {
                    let v: serde_json::Value = serde_json::from_str(l).unwrap();
                    code(&v).to_owned()
                })
                .collect();
            assert!(
                codes.iter().filter(|c| *c == "denied").count() >= 5,
                "another uid is denied: {codes:?}"
            );
            // The one op it is allowed: its own task.
            let mut c = child_of_self_at(&r, &self_shared, "raw-client");
            as_nobody(&mut c);
            r.run(
                &mut c,
                "(uid 65534) raw socket client, own task",
                br#"{"v":1,"op":"fetch","task":"other-uid"}"#,
                Expect::Success,
                &["login-password"],
            );
            "uid 65534 driven (CLI and raw socket)"
        } else {
            skip::skip("uid 65534 cannot run the binaries here");
            "skipped: uid 65534 cannot run the binaries here"
        }
    } else {
        skip::skip("not root, so no client of another uid");
        "skipped: not root, so no client of another uid"
    };

    // ---- Panics in a child holding secrets: a thread's and main's, with full backtraces.
    let panic_env = |c: &mut Command| {
        c.env("LEAK_AUDIT_PASSFILE", &pf)
            .env("RUST_BACKTRACE", "full");
    };
    let mut c = child_of_self(&r, "panic");
    panic_env(&mut c);
    let out = r.run(
        &mut c,
        "panicking child (--nocapture)",
        b"",
        Expect::Failure,
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("panic in a thread") && err.contains("panic in main"),
        "both panics printed: {}",
        &err[..err.len().min(2000)]
    );
    assert!(
        err.contains("[REDACTED]"),
        "the secrets were in scope and redacted"
    );
    let mut c = r.command(std::env::current_exe().unwrap());
    c.args(["--exact", &test_name()]).env(ROLE, "panic");
    panic_env(&mut c);
    let out = r.run(
        &mut c,
        "panicking child (captured by the harness)",
        b"",
        Expect::Failure,
        &[],
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("panic in main"));

    // ---- The audit log.
    r.ok(&["audit", "verify"], b"");
    r.ok(&["audit", "show"], b"");
    let out = r.ok(&["audit", "hash"], LOGIN_PW.as_bytes());
    let hmac = String::from_utf8(out.stdout).unwrap().trim().to_owned();
    assert!(hmac.starts_with("hmac-sha256:"), "{hmac}");
    let log = std::fs::read_to_string(d.p("audit/audit.jsonl")).unwrap();
    // The live log and the files rotations moved aside beside it.
    let mut every_log = String::new();
    for e in std::fs::read_dir(d.p("audit")).unwrap() {
        let p = e.unwrap().path();
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("audit.jsonl") && !name.ends_with(".key") && !name.ends_with(".journal")
        {
            every_log.push_str(&std::fs::read_to_string(&p).unwrap());
        }
    }
    assert!(
        every_log.contains(&hmac),
        "the audit log records the HMAC of the value handed out"
    );
    r.ok(&["audit", "hash"], format!("{TYPED_SECRET}\n").as_bytes());
    r.fail(
        &["audit", "hash", "--audit", &d.s("audit/missing.jsonl")],
        LOGIN_PW.as_bytes(),
    );
    r.fail(
        &["audit", "verify", "--audit", &d.s("audit/missing.jsonl")],
        b"",
    );
    // A tampered copy: the verifier names the bad line.
    let tampered = d.p("audit/tampered.jsonl");
    std::fs::write(&tampered, log.replacen("\"allow\"", "\"deny\"", 1)).unwrap();
    r.fail(
        &["audit", "verify", "--audit", tampered.to_str().unwrap()],
        b"",
    );
    r.ok(
        &["audit", "show", "--audit", tampered.to_str().unwrap()],
        b"",
    );
    {
        // --follow: read until the first record, then stop it.
        let mut c = r.command(&r.bin);
        c.args(["audit", "show", "--follow"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null());
        r.driven
            .borrow_mut()
            .insert(vec!["audit".into(), "show".into()]);
        let mut child = c.spawn().unwrap();
        let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut first = String::new();
        stdout.read_line(&mut first).unwrap();
        // The live log's first record (rotations above moved the earlier ones aside).
        let first_seq = serde_json::from_str::<serde_json::Value>(log.lines().next().unwrap())
            .unwrap()["seq"]
            .as_u64()
            .unwrap();
        assert!(first.starts_with(&format!("#{first_seq} ")), "{first}");
        child.kill().unwrap();
        let mut rest = Vec::new();
        stdout.read_to_end(&mut rest).unwrap();
        let mut err = Vec::new();
        child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
        let st = child.wait().unwrap();
        let mut all = first.into_bytes();
        all.extend(rest);
        r.record(
            "scopevault audit show --follow",
            &std::process::Output {
                status: st,
                stdout: all,
                stderr: err,
            },
            &[],
        );
    }

    // ---- Panic child and CLI done: stop the daemon (its stderr is a file, scanned below).
    daemon.stop();
    r.add("daemon stderr", std::fs::read(&daemon_err).unwrap(), &[]);

    // ---- The demo, with its own random secrets captured through a `sh` on PATH that copies
    // the demo's vault and passphrase when its check runs (the only moment both exist and
    // every secret is stored).
    let wrap = d.p("bin/sh");
    let capture = d.p("capture");
    // Written beside it, then copied into place by `cp` (crate::common::copy_executable).
    let wrap_text = d.p("bin/sh.txt");
    write_file(
        &wrap_text,
        format!(
            "#!/bin/sh\nif [ -n \"$SCOPEVAULT_TASK\" ] && [ ! -e {c}/vault ]; then\n  cp \"$SCOPEVAULT_VAULT\" {c}/vault\n  cp \"$(dirname \"$SCOPEVAULT_VAULT\")/passphrase\" {c}/passphrase\nfi\nexec /bin/sh \"$@\"\n",
            c = capture.display()
        )
        .as_bytes(),
    );
    crate::common::copy_executable(&wrap_text, &wrap);
    let mut c = r.command(&r.bin);
    c.arg("demo").env(
        "PATH",
        format!(
            "{}:{}",
            d.p("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    r.driven.borrow_mut().insert(vec!["demo".into()]);
    r.run(&mut c, "scopevault demo", b"", Expect::Success, &[]);
    let demo_pass =
        std::fs::read_to_string(capture.join("passphrase")).expect("the demo's check ran our sh");
    {
        use scopevault::secret::SecretString;
        use scopevault::vault::{OpenOptions, Unlock, Vault};
        let v = crate::common::with_state_dir(&d.p("state"), || {
            Vault::open(
                &capture.join("vault"),
                &Unlock::Passphrase(SecretString::from(demo_pass.clone())),
                &OpenOptions::default(),
            )
        })
        .unwrap();
        let mut n = 0;
        for (name, cred) in v.credentials() {
            for (field, value) in cred.secrets.iter() {
                let label = format!("demo:{name}.{field}");
                let v = value.expose();
                secrets.push(if field == "totp_seed" {
                    let key = BASE32_NOPAD.decode(v.as_bytes()).expect("a base32 seed");
                    Secret::with_extra(&label, v.as_bytes(), seed_extras(v, &key))
                } else {
                    Secret::new(&label, v.as_bytes())
                });
                n += 1;
            }
        }
        assert!(n >= 3, "the demo stored its secrets");
    }
    secrets.push(Secret::new("demo-passphrase", demo_pass.as_bytes()));
    allowed_in_file.insert(capture.join("passphrase"), vec!["demo-passphrase".into()]);
    // Every temporary directory the demo and exec made under TMPDIR is gone.
    let left: Vec<_> = std::fs::read_dir(d.p("tmp"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    assert!(
        left.is_empty(),
        "temporary directories left behind: {left:?}"
    );

    // Tickets are bearer secrets: only their issuing answer may carry them.
    for (i, t) in tickets.iter().enumerate() {
        secrets.push(Secret::new(&format!("ticket-{}", i + 1), t.as_bytes()));
    }

    // ---- Every command in the binary's tree was driven; every socket op too.
    let driven = r.driven.borrow().clone();
    let mut missing = Vec::new();
    for (top, subs) in &r.tree {
        if subs.is_empty() {
            if !driven.contains(&vec![top.clone()]) {
                missing.push(top.clone());
            }
        } else {
            for s in subs {
                if !driven.contains(&vec![top.clone(), s.clone()]) {
                    missing.push(format!("{top} {s}"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "commands the leak audit does not drive: {missing:?} (add them)"
    );
    let all_ops: BTreeSet<String> = op_list
        .split(", ")
        .map(|o| o.trim_end_matches('.').to_owned())
        .collect();
    let undriven: Vec<_> = all_ops.difference(&ops.borrow()).cloned().collect();
    assert!(
        undriven.is_empty(),
        "socket ops the leak audit does not drive: {undriven:?}"
    );

    // ---- The scan.
    let scanner = Scanner::new(&secrets);
    let mut leaks: Vec<String> = Vec::new();
    let mut bytes_scanned = 0usize;
    let mut positive = 0usize;
    for cap in r.captures.borrow().iter() {
        bytes_scanned += cap.bytes.len();
        let hits = scanner.scan(&cap.bytes);
        for want in &cap.carries {
            if want.starts_with("ticket-") {
                continue; // labelled before the ticket was known
            }
            assert!(
                hits.iter().any(|h| &h.secret == want),
                "positive control: {} should carry secret {want} and the scanner should find it",
                cap.what
            );
            positive += 1;
        }
        for h in hits {
            if cap.carries.contains(&h.secret) {
                continue;
            }
            leaks.push(format!(
                "form {} of secret {} in {} at byte {} (after \"{}\")",
                h.form,
                h.secret,
                cap.what,
                h.offset,
                context_before(&cap.bytes, h.offset)
            ));
        }
    }
    let files = files_under(&d.root);
    let mut files_scanned = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        bytes_scanned += bytes.len();
        files_scanned += 1;
        let allowed = allowed_in_file.get(f).cloned().unwrap_or_default();
        let hits = scanner.scan(&bytes);
        for want in allowed.iter().filter(|a| *a != "none") {
            assert!(
                hits.iter().any(|h| &h.secret == want),
                "positive control: {} holds {want}",
                f.display()
            );
            positive += 1;
        }
        for h in hits {
            if allowed.contains(&h.secret) {
                continue;
            }
            leaks.push(format!(
                "form {} of secret {} in file {} at byte {} (after \"{}\")",
                h.form,
                h.secret,
                f.strip_prefix(&d.root).unwrap().display(),
                h.offset,
                context_before(&bytes, h.offset)
            ));
        }
    }
    let file_list: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(&d.root).unwrap().display().to_string())
        .collect();
    let audit_lines = std::fs::read_to_string(d.p("audit/audit.jsonl"))
        .unwrap()
        .lines()
        .count();

    // ---- The report.
    println!(
        "leak audit: {} processes run, {} captured streams and socket answers",
        r.processes.borrow(),
        r.captures.borrow().len()
    );
    println!("leak audit: {files_scanned} files scanned under the test directory (vaults included), {bytes_scanned} bytes scanned");
    println!(
        "leak audit: {} secrets, {} forms in all; {} audit records",
        secrets.len(),
        scanner.form_count(),
        audit_lines
    );
    for s in &secrets {
        println!("  {:<32} {} forms", s.label, s.forms.len());
    }
    println!(
        "leak audit: {positive} positive controls found their secret; {pty_note}; {other_uid_note}"
    );
    println!("leak audit: socket ops driven: {:?}", ops.borrow());
    println!("leak audit: files scanned: {}", file_list.join(", "));
    println!(
        "leak audit: {} leaks; {:.1} s",
        leaks.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        leaks.is_empty(),
        "{} leak(s):\n{}",
        leaks.len(),
        leaks.join("\n")
    );
}

/// Regression (found by the audit above): the no-echo prompt showed its text before turning
/// echo off (rpassword's order), so an answer typed as soon as the prompt appeared was echoed
/// on the terminal. Typed here on a real pseudo-terminal, three times to meet the window.
#[test]
fn regression_prompt_echoed_an_answer_typed_as_soon_as_it_appeared() {
    if std::env::var_os(ROLE).is_some() {
        return; // a child of the audit above
    }
    let have_pty = pty::available();
    if !have_pty {
        return skip::skip("python3 with the pty module is needed to drive a pseudo-terminal");
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = Dirs {
        root: tmp.path().to_owned(),
    };
    write_file(&d.p("pass"), format!("{VAULT_PASS}\n").as_bytes());
    let env: Vec<(OsString, OsString)> = vec![
        ("PATH".into(), std::env::var_os("PATH").unwrap_or_default()),
        ("HOME".into(), d.p("home").into()),
        ("SCOPEVAULT_STATE_DIR".into(), d.p("state").into()),
        ("SCOPEVAULT_VAULT".into(), d.p("vault/v.scopevault").into()),
        ("SCOPEVAULT_TEST_ARGON2".into(), "64,1,1".into()),
        ("NO_COLOR".into(), "1".into()),
    ];
    let r = Recorder::new(Path::new(env!("CARGO_BIN_EXE_scopevault")), env);
    r.ok(&["init", "--passphrase-file", &d.s("pass")], b"");
    for _ in 0..3 {
        let mut c = r.command("python3");
        pty::drive(&mut c, &r.bin, "cred list");
        let out = r.run(
            &mut c,
            "(pty) scopevault cred list",
            format!("Passphrase for={VAULT_PASS}").as_bytes(),
            Expect::Success,
            &[],
        );
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(screen.contains("Passphrase for"), "the prompt was shown");
        assert!(
            !screen.contains(VAULT_PASS),
            "the typed passphrase was echoed on the terminal"
        );
    }
}

/// Regression (found by the audit above): a task or credential name the policy does not know
/// was written verbatim into the audit log (and its reason), so a ticket a client passed as
/// the task name (`get --task "$TICKET"`) sat, still redeemable, in a log auditors may read.
#[test]
fn regression_a_ticket_sent_as_a_task_name_was_written_to_the_audit_log() {
    if std::env::var_os(ROLE).is_some() {
        return; // a child of the audit above
    }
    let dir = common_daemon::tempdir();
    common_daemon::setup_vault(dir.path());
    let id = dir.path().join("identity.txt");
    let d = common_daemon::Daemon::start(dir.path(), &["--identity-file", id.to_str().unwrap()]);
    let v = d.request(r#"{"v":1,"op":"ticket","task":"checkout-flow","ttl":600}"#);
    let ticket = v["ticket"].as_str().expect("a ticket").to_owned();
    let v = d.request(&format!(r#"{{"v":1,"op":"fetch","task":"{ticket}"}}"#));
    assert_eq!(common_daemon::code(&v), "not_found");
    let v = d.request(&format!(
        r#"{{"v":1,"op":"ticket","task":"{ticket}","ttl":60}}"#
    ));
    assert_eq!(common_daemon::code(&v), "not_found");
    let v = d.request(&format!(
        r#"{{"v":1,"op":"fetch","task":"checkout-flow","credential":"{ticket}"}}"#
    ));
    assert_eq!(common_daemon::code(&v), "denied");
    let audit = d.audit_text();
    assert!(
        !audit.contains(&ticket),
        "the ticket is not in the audit log"
    );
    // What was asked for is still searchable, as its HMAC.
    let out = common_daemon::ok(
        dir.path(),
        &["audit", "hash", "--audit", d.audit.to_str().unwrap()],
        Some(&ticket),
    );
    let hmac = out.trim();
    assert!(hmac.starts_with("hmac-sha256:"), "{hmac}");
    assert_eq!(
        audit.matches(hmac).count(),
        3,
        "each refusal records the name's HMAC"
    );
    // A declared credential's name is still recorded as is.
    let v = d.request(r#"{"v":1,"op":"fetch","task":"checkout-flow","credential":"search-token"}"#);
    assert_eq!(common_daemon::code(&v), "denied");
    assert!(d.audit_text().contains("\"credential\":\"search-token\""));
    d.stop();
}
