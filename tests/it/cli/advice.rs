//! The commands scopevault advises name the vault the advising command was given (twenty-fifth
//! pass, found by the attacker of advice): `policy apply --vault master.sv` advised "run
//! `scopevault cred set shop-buyer --secret password`", which, copied, changed the default
//! (live) vault instead of the master.

use crate::common::vault::Env;

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.toml");

/// `policy apply --vault M` and a refusal of `cred set --vault M` advise commands with
/// `--vault M`, shell-quoted (the path has a blank and a quote in it); copied as printed, the
/// advised `cred set` changes the master, not the default vault.
#[test]
fn advice_for_a_vault_given_with_vault_names_that_vault() {
    let e = Env::new();
    let pf = e.pf();
    // The default vault (SCOPEVAULT_VAULT in the test environment is this one, the "live" one).
    e.ok(&["init", "--passphrase-file", &pf], b"");
    std::fs::create_dir_all(e.path("it's master")).unwrap();
    let master = e.path("it's master/m.sv");
    let m = master.to_str().unwrap();
    e.ok(&["init", "--vault", m, "--passphrase-file", &pf], b"");
    let out = e.ok(
        &[
            "policy",
            "apply",
            "--vault",
            m,
            POLICY,
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    let quoted = format!("'{}'", m.replace('\'', r"'\''"));
    let advised = format!("scopevault cred set shop-buyer --secret password --vault {quoted}");
    assert!(out.contains(&format!("`{advised}`")), "{out}");
    let err = e.fails(
        &[
            "cred",
            "set",
            "--vault",
            m,
            "nosuch",
            "--secret",
            "x",
            "--passphrase-file",
            &pf,
        ],
        b"v",
        2,
    );
    assert!(
        err.contains(&format!("`scopevault cred list --vault {quoted}`")),
        "{err}"
    );
    // The advised command, run through a shell as printed, stores into the master.
    let status = e
        .wrapper("sh")
        .arg("-c")
        .arg(format!(
            "printf NEW-PW | {} --passphrase-file {pf}",
            advised.replacen("scopevault", env!("CARGO_BIN_EXE_scopevault"), 1)
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let list = e.ok(
        &["cred", "list", "--vault", m, "--passphrase-file", &pf],
        b"",
    );
    assert!(list.contains("shop-buyer"), "{list}");
    let live = e.ok(&["cred", "list", "--passphrase-file", &pf], b"");
    assert!(
        !live.contains("shop-buyer"),
        "the default vault was not changed: {live}"
    );
}

/// A vault at its default path (neither `--vault` nor `SCOPEVAULT_VAULT`) is not named.
#[test]
fn advice_for_the_default_vault_names_no_vault() {
    let e = Env::new();
    let pf = e.pf();
    let run = |args: &[&str]| {
        let mut c = e.cmd();
        c.env_remove("SCOPEVAULT_VAULT").args(args);
        e.run_cmd(&mut c, b"")
    };
    assert!(run(&["init", "--passphrase-file", &pf]).status.success());
    let r = run(&[
        "cred",
        "set",
        "nosuch",
        "--secret",
        "x",
        "--passphrase-file",
        &pf,
    ]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("`scopevault cred list` shows the names"),
        "{err}"
    );
}

/// A vault whose only slot is an identity file: the refusal does not offer a passphrase
/// prompt, which led to "this vault has no passphrase slot" after the passphrase was typed.
#[test]
fn a_vault_with_no_passphrase_slot_is_not_offered_a_passphrase_prompt() {
    let e = Env::new();
    let id = e.path("id.txt");
    e.ok(&["init", "--identity-out", id.to_str().unwrap()], b"");
    let err = e.fails(&["cred", "list"], b"", 3);
    assert!(err.contains("this vault has no passphrase slot"), "{err}");
    assert!(err.contains("--identity-file FILE"), "{err}");
    assert!(!err.contains("to be prompted"), "{err}");
}

/// A vault path with a blank and a quote in it (`it's master/m.sv`), its directory made, and
/// the path as a POSIX shell word, as the advice writes it.
fn master(e: &Env) -> (String, String) {
    std::fs::create_dir_all(e.path("it's master")).unwrap();
    let m = e.path("it's master/m.sv").to_str().unwrap().to_owned();
    let quoted = format!("'{}'", m.replace('\'', r"'\''"));
    (m, quoted)
}

/// Twenty-sixth pass (found by the twenty-fifth pass's review): the key slot messages of
/// `key passwd --vault M` named `scopevault key list` without the vault, which, copied, listed
/// the default vault's slots. Copied as printed, it lists M's (a label only M has).
#[test]
fn key_slot_advice_names_the_vault_given_and_its_key_list_lists_that_vault() {
    let e = Env::new();
    let pf = e.pf();
    e.ok(&["init", "--passphrase-file", &pf], b"");
    let (m, quoted) = master(&e);
    e.ok(
        &[
            "init",
            "--vault",
            &m,
            "--passphrase-file",
            &pf,
            "--label",
            "master-only",
        ],
        b"",
    );
    let err = e.fails(
        &[
            "key",
            "passwd",
            "--vault",
            &m,
            "--slot",
            "nosuch",
            "--passphrase-file",
            &pf,
        ],
        b"",
        2,
    );
    let advised = format!("scopevault key list --vault {quoted}");
    assert!(err.contains(&format!("`{advised}` shows them")), "{err}");
    let out = e
        .wrapper("sh")
        .arg("-c")
        .arg(format!(
            "{} --passphrase-file {pf}",
            advised.replacen("scopevault", env!("CARGO_BIN_EXE_scopevault"), 1)
        ))
        .output()
        .unwrap();
    let list = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && list.contains("master-only"),
        "{list}"
    );
}
/// Run `advised` (a `scopevault …` command as printed) through a shell as it is, with `tail`
/// added (the unlock options), and require it to succeed.
fn run_copied(e: &Env, advised: &str, tail: &str) {
    let status = e
        .wrapper("sh")
        .arg("-c")
        .arg(format!(
            "{} {tail}",
            advised.replacen("scopevault", env!("CARGO_BIN_EXE_scopevault"), 1)
        ))
        .status()
        .unwrap();
    assert!(status.success(), "{advised} {tail}");
}

/// Twenty-sixth pass (found by the twenty-fifth pass's review): `doctor --vault M` with no
/// vault at M advised `scopevault init`, which, copied, made (or was refused at) the default
/// vault; its keyring advice named no vault either. Copied as printed, `init` now makes M.
#[test]
fn doctor_advice_names_the_vault_given_and_its_init_makes_that_vault() {
    let e = Env::new();
    let pf = e.pf();
    let (m, quoted) = master(&e);
    let out = e.run(&["doctor", "--vault", &m], b"");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    let advised = format!("scopevault init --vault {quoted}");
    assert!(text.contains(&format!("`{advised}`")), "{text}");
    run_copied(&e, &advised, &format!("--passphrase-file {pf}"));
    assert!(
        std::path::Path::new(&m).exists(),
        "the advised init made the vault given"
    );
    assert!(!e.vault().exists(), "the default vault was not made");
    // On the vault now there: the optional keyring slot's advice names it too.
    let out = e.run(&["doctor", "--vault", &m, "--passphrase-file", &pf], b"");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        text.contains(&format!("`scopevault key add --keyring --vault {quoted}`")),
        "{text}"
    );
}

/// Twenty-sixth pass (found by the twenty-fifth pass's review): `lint --with-vault --vault M`
/// advised `scopevault cred add NAME --kind KIND` for a declared credential M lacks, which,
/// copied, stored it into the default vault. Copied as printed, it now stores into M.
#[test]
fn lint_vault_advice_names_the_vault_given_and_its_cred_add_stores_there() {
    let e = Env::new();
    let pf = e.pf();
    e.ok(&["init", "--passphrase-file", &pf], b"");
    let (m, quoted) = master(&e);
    e.ok(&["init", "--vault", &m, "--passphrase-file", &pf], b"");
    let out = e.run(
        &[
            "lint",
            "--with-vault",
            "--vault",
            &m,
            POLICY,
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let advised = format!("scopevault cred add shop-buyer --kind login --vault {quoted}");
    assert!(text.contains(&format!("`{advised}`")), "{text}");
    let status = e
        .wrapper("sh")
        .arg("-c")
        .arg(format!(
            "printf NEW-PW | {} --secret password --passphrase-file {pf}",
            advised.replacen("scopevault", env!("CARGO_BIN_EXE_scopevault"), 1)
        ))
        .status()
        .unwrap();
    assert!(status.success());
    let list = e.ok(
        &["cred", "list", "--vault", &m, "--passphrase-file", &pf],
        b"",
    );
    assert!(list.contains("shop-buyer"), "{list}");
    let live = e.ok(&["cred", "list", "--passphrase-file", &pf], b"");
    assert!(
        !live.contains("shop-buyer"),
        "the default vault was not changed: {live}"
    );
}

/// Twenty-sixth pass (found by the twenty-fifth pass's review): `cred add --vault M` of a
/// credential the applied policy declares with another kind advised `scopevault policy apply`
/// without the vault (and without the file it needs), which, copied, changed the default
/// vault's policy.
#[test]
fn cred_add_declaration_conflict_advice_names_the_vault_given() {
    let e = Env::new();
    let pf = e.pf();
    let (m, quoted) = master(&e);
    e.ok(&["init", "--vault", &m, "--passphrase-file", &pf], b"");
    e.ok(
        &[
            "policy",
            "apply",
            "--vault",
            &m,
            POLICY,
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    let err = e.fails(
        &[
            "cred",
            "add",
            "--vault",
            &m,
            "shop-buyer",
            "--kind",
            "token",
            "--secret",
            "token",
            "--passphrase-file",
            &pf,
        ],
        b"v",
        2,
    );
    assert!(
        err.contains(&format!(
            "`scopevault policy apply POLICY --vault {quoted}`"
        )),
        "{err}"
    );
}

/// Twenty-eighth pass (found by the twenty-eighth pass's review of advice): the daemon's
/// advice (`locked; an admin must run `scopevault unlock``), shown by `get --socket S` of a
/// daemon on another socket than the default, named neither that socket nor the vault:
/// copied as printed it asked the default daemon (none here: exit 5), and the daemon stayed
/// locked. The CLI now renders every command the daemon advises with the `--vault` and
/// `--socket` it was given; copied literally (in a shell without `SCOPEVAULT_VAULT` or
/// `SCOPEVAULT_SOCKET`), with the key added, it unlocks that daemon. The daemon's own log
/// line at a locked start names them too.
#[test]
fn the_daemons_advice_names_the_socket_and_vault_given_and_copied_acts_on_that_daemon() {
    use crate::common::daemon::{self, Daemon};
    let dir = daemon::tempdir();
    let id = daemon::setup_vault(dir.path());
    let d = Daemon::start(dir.path(), &[]);
    let vault = dir.path().join("vault.scopevault");
    let (vault, socket) = (vault.to_str().unwrap(), d.socket.to_str().unwrap());
    let advised = format!("scopevault unlock --vault {vault} --socket {socket}");
    assert!(
        d.stderr_text()
            .contains(&format!("(locked: an admin runs `{advised}`)")),
        "{}",
        d.stderr_text()
    );
    let out = daemon::cmd(dir.path())
        .args(["--socket", socket, "get", "--task", "checkout-flow"])
        .args(["--field", "password", "--timeout", "10"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(5), "{stderr}");
    assert!(
        stderr.contains(&format!("an admin must run `{advised}`")),
        "{stderr}"
    );
    // Copied as printed, from the backquotes, in a shell that has neither variable.
    let start = stderr.find("must run `").unwrap() + "must run `".len();
    let copied = &stderr[start..start + stderr[start..].find('`').unwrap()];
    let copied = copied.replacen("scopevault", daemon::bin(), 1);
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{copied} --identity-file \"$1\""))
        .arg("sh")
        .arg(&id)
        .env_remove("SCOPEVAULT_VAULT")
        .env_remove("SCOPEVAULT_SOCKET")
        .env_remove("SCOPEVAULT_IDENTITY_FILE")
        .env("SCOPEVAULT_STATE_DIR", dir.path().join("state/scopevault"))
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_RUNTIME_DIR", dir.path().join("elsewhere"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{copied}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = d.request(r#"{"v":1,"op":"health"}"#);
    assert_eq!(h["locked"], false, "{h}");
}

/// Twenty-eighth pass (found by the re-attacker of its fixes): `status` of a locked daemon
/// advised `scopevault unlock` with neither the `--vault` nor the `--socket` it was given, and
/// a path with a control character was quoted `'…\nk/s.sock'`, which a shell reads as a
/// backslash and an `n`. `status` now names both, a word with a control character in `$'…'`
/// quotes; copied as printed and run by bash (no `SCOPEVAULT_*` variables), it unlocks the
/// daemon `status` asked.
#[test]
fn status_of_a_locked_daemon_advises_an_unlock_that_copied_unlocks_that_daemon() {
    use crate::common::daemon::{self, Daemon};
    let dir = daemon::tempdir();
    let id = daemon::setup_vault(dir.path());
    let run = dir.path().join("r\nk");
    std::fs::create_dir_all(&run).unwrap();
    let d = Daemon::start_at(dir.path(), &run.join("s.sock"), &[]);
    let out = daemon::cmd(dir.path())
        .arg("--socket")
        .arg(&d.socket)
        .arg("status")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("vault:"))
        .unwrap_or_else(|| panic!("{stdout}"));
    let start = line.find("runs `").unwrap() + "runs `".len();
    let copied = &line[start..start + line[start..].find('`').unwrap()];
    assert!(copied.contains(r"--socket $'"), "{copied}");
    let copied = copied.replacen("scopevault", daemon::bin(), 1);
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg(format!("{copied} --identity-file \"$1\""))
        .arg("bash")
        .arg(&id)
        .env_remove("SCOPEVAULT_VAULT")
        .env_remove("SCOPEVAULT_SOCKET")
        .env_remove("SCOPEVAULT_IDENTITY_FILE")
        .env("SCOPEVAULT_STATE_DIR", dir.path().join("state/scopevault"))
        .env("HOME", dir.path())
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .env("XDG_RUNTIME_DIR", dir.path().join("elsewhere"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{copied}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let h = d.request(r#"{"v":1,"op":"health"}"#);
    assert_eq!(h["locked"], false, "{h}");
}
