//! The no-echo prompt, on a real pseudo-terminal (driven by python3's standard `pty` module):
//! the passphrase and a secret typed at the prompts never appear on the terminal.

#[path = "common/vault.rs"]
mod common_vault;
#[path = "common/pty.rs"]
mod pty;

use std::process::Command;

use common_vault::Env;

fn on_pty(e: &Env, args: &str, answers: &[&str]) -> (i32, String) {
    let mut c = Command::new("python3");
    // Env::cmd()'s environment, applied to the python driver (which the binary inherits).
    let base = e.cmd();
    c.env_clear();
    for (k, v) in base.get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    pty::drive(&mut c, env!("CARGO_BIN_EXE_scopevault"), args);
    let out = pty::run(&mut c, answers);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn prompts_do_not_echo_passphrases_or_secrets() {
    if !pty::available() {
        eprintln!("skipped: python3 with the pty module is needed to drive a pseudo-terminal");
        return;
    }
    let e = Env::new();
    let pass = "pty-typed-passphrase-93";
    let (code, screen) = on_pty(
        &e,
        "init",
        &[
            &format!("New passphrase={pass}"),
            &format!("Repeat it={pass}"),
        ],
    );
    assert_eq!(code, 0, "init on a terminal: {screen}");
    assert!(
        screen.contains("New passphrase") && !screen.contains(pass),
        "screen: {screen}"
    );
    let secret = "pty-typed-secret-value-71";
    let (code, screen) = on_pty(
        &e,
        "cred add site --kind login --secret password",
        &[
            &format!("password:={secret}"),
            &format!("Passphrase for={pass}"),
        ],
    );
    assert_eq!(code, 0, "cred add on a terminal: {screen}");
    assert!(
        !screen.contains(secret) && !screen.contains(pass),
        "screen: {screen}"
    );
    // Mismatched confirmation: nothing is created.
    let e2 = Env::new();
    let (code, screen) = on_pty(
        &e2,
        "init",
        &["New passphrase=one-passphrase", "Repeat it=another-one"],
    );
    assert_eq!(code, 2, "{screen}");
    assert!(
        screen.contains("differ") && !e2.vault().exists(),
        "{screen}"
    );
}
