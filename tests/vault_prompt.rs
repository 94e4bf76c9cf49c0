//! The no-echo prompt, on a real pseudo-terminal (driven by python3's standard `pty` module):
//! the passphrase and a secret typed at the prompts never appear on the terminal.

#[path = "common/vault.rs"]
mod common_vault;
#[path = "common/pty.rs"]
mod pty;
#[path = "common/skip.rs"]
mod skip;

use common_vault::Env;

fn on_pty(e: &Env, args: &str, answers: &[&str]) -> (i32, String) {
    // The python driver gets Env::cmd()'s environment, which the binary inherits.
    let mut c = e.wrapper("python3");
    pty::drive(&mut c, env!("CARGO_BIN_EXE_scopevault"), args);
    // The answers go on the driver's stdin.
    let out = e.run_cmd(&mut c, answers.join("\n").as_bytes());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn prompts_do_not_echo_passphrases_or_secrets() {
    if !pty::available() {
        return skip::skip("python3 with the pty module is needed to drive a pseudo-terminal");
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
