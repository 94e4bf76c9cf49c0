//! The no-echo prompt, on a real pseudo-terminal (driven by python3's standard `pty` module):
//! the passphrase and a secret typed at the prompts never appear on the terminal.

use crate::common::pty;
use crate::common::skip;
use crate::common::vault as common_vault;

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

/// Found by attacking the admin CLI from operations.md and vault-format.md (eighteenth pass):
/// an empty answer at the unlock prompt was tried on every slot and reported as a wrong
/// passphrase (exit 3). It is a usage error (exit 2) naming the prompt, and nothing is tried.
#[test]
fn an_empty_answer_at_the_unlock_prompt_is_refused_as_empty() {
    if !pty::available() {
        return skip::skip("python3 with the pty module is needed to drive a pseudo-terminal");
    }
    let e = Env::new();
    e.init_with_cred();
    let (code, screen) = on_pty(&e, "cred list", &["Passphrase for="]);
    assert_eq!(code, 2, "{screen}");
    assert!(
        screen.contains("the passphrase read from the prompt is empty")
            && !screen.contains("wrong passphrase"),
        "{screen}"
    );
}

use crate::common::shell_pty;

/// A shell line on a pseudo-terminal (its controlling terminal), with `scopevault` on PATH.
fn shell_on_pty(e: &Env, line: &str, answers: &[String]) -> (i32, String) {
    let mut c = e.wrapper("python3");
    c.env("PATH", shell_pty::path_with_binary());
    shell_pty::drive(&mut c, line);
    let out = e.run_cmd(&mut c, answers.join("\n").as_bytes());
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

fn pty_or_skip() -> bool {
    if pty::available() {
        return true;
    }
    crate::common::skip::skip("python3 with the pty module is needed to drive a pseudo-terminal");
    false
}

#[test]
fn piped_secret_asks_the_passphrase_on_the_controlling_terminal() {
    if !pty_or_skip() {
        return;
    }
    let e = Env::new();
    e.init_with_cred();
    let secret = "piped-token-value-5521";
    // stdin is the pipe (the secret), /dev/tty the terminal (the passphrase).
    let (code, screen) = shell_on_pty(
        &e,
        &format!("printf '%s' '{secret}' | scopevault cred set shop-buyer --secret password"),
        &[format!("Passphrase for={}", common_vault::PASS)],
    );
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains("Passphrase for") && screen.contains("1 secret value(s) changed"),
        "{screen}"
    );
    assert!(
        !screen.contains(secret) && !screen.contains(common_vault::PASS),
        "{screen}"
    );
    // The piped value is what was stored: setting it again changes nothing.
    std::fs::write(e.path("same"), secret).unwrap();
    let out = e.ok(
        &[
            "cred",
            "set",
            "shop-buyer",
            "--secret-file",
            &format!("password={}", e.path("same").display()),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    assert!(out.contains("credential shop-buyer unchanged"), "{out}");
}

#[test]
fn cred_set_unlocks_before_asking_for_the_secret() {
    if !pty_or_skip() {
        return;
    }
    let e = Env::new();
    e.init_with_cred();
    let secret = "typed-secret-value-8812";
    let (code, screen) = shell_on_pty(
        &e,
        "scopevault cred set shop-buyer --secret password",
        &[
            format!("Passphrase for={}", common_vault::PASS),
            format!("password:={secret}"),
        ],
    );
    assert_eq!(code, 0, "{screen}");
    let p = screen.find("Passphrase for").expect("a passphrase prompt");
    let s = screen.find("password:").expect("a secret prompt");
    assert!(
        p < s,
        "the vault is unlocked before the secret is asked: {screen}"
    );
    assert!(!screen.contains(secret), "{screen}");
    // A wrong passphrase stops before any secret is asked for.
    let (code, screen) = shell_on_pty(
        &e,
        "scopevault cred set shop-buyer --secret password",
        &["Passphrase for=not-the-passphrase".to_owned()],
    );
    assert_eq!(code, 3, "{screen}");
    assert!(!screen.contains("password:"), "{screen}");
}

/// The driver for [`regression_a_signal_at_the_prompt_restores_the_terminals_echo`]: runs the
/// binary on a pty (with SIGTERM, SIGINT and SIGHUP blocked in its signal mask when a fifth
/// argument `blocked` is given), waits for `prompt`, types three characters, sends the signal
/// named in argv (by the terminal's own Ctrl-C for `ctrlc`), waits for the process (20 s at
/// most, then kills it: `SIGNALLED=timeout`) and prints
/// `ECHO_DURING=<0|1> ECHO_AFTER=<0|1> SIGNALLED=<signal number, none or timeout>` and the
/// screen.
const SIGNAL_DRIVER: &str = r#"
import os, pty, sys, time, select, signal, termios
binary, args, prompt, how = sys.argv[1], sys.argv[2].split(), sys.argv[3].encode(), sys.argv[4]
blocked = sys.argv[5:] == ["blocked"]
pid, fd = pty.fork()
if pid == 0:
    if blocked:
        signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGTERM, signal.SIGINT, signal.SIGHUP])
    os.execv(binary, [binary] + args)
out = b""
end = time.time() + 20
while prompt not in out and time.time() < end:
    r, _, _ = select.select([fd], [], [], 0.2)
    if r:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
# The prompt is written after echo is turned off (tests/it/prompt_echo_order.rs).
during = termios.tcgetattr(fd)[3] & termios.ECHO
os.write(fd, b"abc")
if how == "ctrlc":
    os.write(fd, b"\x03")
else:
    os.kill(pid, getattr(signal, how))
end = time.time() + 20
done, status = 0, 0
while not done and time.time() < end:
    # The screen read meanwhile, so that the process never waits on a full terminal.
    r, _, _ = select.select([fd], [], [], 0.1)
    if r:
        try:
            out += os.read(fd, 4096)
        except OSError:
            pass
    done, status = os.waitpid(pid, os.WNOHANG)
after = termios.tcgetattr(fd)[3] & termios.ECHO
if not done:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    sig = "timeout"
else:
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else "none"
print(f"ECHO_DURING={int(bool(during))} ECHO_AFTER={int(bool(after))} SIGNALLED={sig}")
print(out.decode(errors="replace"))
"#;

/// Found by the twenty-third pass's attacker of keys and unlocking: Ctrl-C (or SIGTERM,
/// SIGHUP) at the no-echo prompt killed the process with the terminal's echo still off, so
/// the shell the admin returned to showed nothing typed. The terminal's modes are put back
/// and the process then dies of the signal, as ssh and sudo do.
#[test]
fn regression_a_signal_at_the_prompt_restores_the_terminals_echo() {
    if !pty::available() {
        return skip::skip("python3 with the pty module is needed to drive a pseudo-terminal");
    }
    let e = Env::new();
    e.init_with_cred();
    let before = e.vault_bytes();
    for (args, prompt) in [
        ("cred list", "Passphrase for"),
        ("key passwd --passphrase-file PF", "New passphrase"),
    ] {
        let args = args.replace("PF", &e.pf());
        for (how, number) in [("ctrlc", 2), ("SIGINT", 2), ("SIGTERM", 15), ("SIGHUP", 1)] {
            // Every signal's default action, whatever the test runner was started with
            // (`nohup` leaves SIGHUP ignored, and the binary would inherit that).
            let mut c = e.wrapper("env");
            c.args(["--default-signal", "python3", "-c"])
                .arg(SIGNAL_DRIVER)
                .arg(env!("CARGO_BIN_EXE_scopevault"))
                .arg(&args)
                .arg(prompt)
                .arg(how);
            let out = e.run_cmd(&mut c, b"");
            let screen = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{args} {how}: {screen}");
            assert!(
                screen.contains(&format!("ECHO_DURING=0 ECHO_AFTER=1 SIGNALLED={number}\n")),
                "{args} {how}: {screen}"
            );
        }
    }
    assert_eq!(e.vault_bytes(), before);
}

/// Found by the twenty-sixth pass's review (twenty-seventh pass): a command that prompts,
/// started with SIGTERM, SIGINT and SIGHUP blocked (an inherited signal mask), left them
/// pending: SIGTERM or SIGINT at the no-echo prompt did nothing (the prompt waited on, echo
/// off), and Ctrl-C ended it with an error rather than by SIGINT. It unblocks the signals its
/// prompt handles: each puts the terminal's echo back and the process dies of it, as when
/// they are not blocked.
#[test]
fn a_signal_at_the_prompt_given_blocked_restores_echo_and_ends_the_command() {
    if !pty::available() {
        return skip::skip("python3 with the pty module is needed to drive a pseudo-terminal");
    }
    let e = Env::new();
    e.init_with_cred();
    let before = e.vault_bytes();
    for (how, number) in [("ctrlc", 2), ("SIGINT", 2), ("SIGTERM", 15), ("SIGHUP", 1)] {
        let mut c = e.wrapper("env");
        c.args(["--default-signal", "python3", "-c"])
            .arg(SIGNAL_DRIVER)
            .arg(env!("CARGO_BIN_EXE_scopevault"))
            .arg("cred list")
            .arg("Passphrase for")
            .arg(how)
            .arg("blocked");
        let out = e.run_cmd(&mut c, b"");
        let screen = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{how}: {screen}");
        assert!(
            screen.contains(&format!("ECHO_DURING=0 ECHO_AFTER=1 SIGNALLED={number}\n")),
            "{how}: {screen}"
        );
    }
    assert_eq!(e.vault_bytes(), before);
}

/// Twenty-fourth pass (found by the twenty-third pass's review): on a terminal, a plain
/// `unlock` prompted for a passphrase even when the vault has no passphrase slot (here an
/// identity slot only, and the daemon's own identity file is gone, so its own sources do not
/// open it): the answer could only be refused. The vault file's header lists the slot kinds
/// without a key: no prompt, exit 3, saying so and naming `--identity-file`.
#[test]
fn a_plain_unlock_does_not_prompt_for_a_passphrase_the_vault_has_no_slot_for() {
    if !pty_or_skip() {
        return;
    }
    let e = Env::new();
    let id = e.path("id.txt");
    e.ok(&["init", "--identity-out", id.to_str().unwrap()], b"");
    let own = e.path("daemon-id.txt");
    std::fs::copy(&id, &own).unwrap();
    let socket = e.path("run/sv.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let _daemon = e.serve(
        &socket,
        &["--no-keyring", "--identity-file", own.to_str().unwrap()],
    );
    let s = socket.to_str().unwrap();
    e.ok(&["--socket", s, "lock"], b"");
    std::fs::remove_file(&own).unwrap();
    let (code, screen) = on_pty(
        &e,
        &format!("--socket {s} unlock"),
        &["Vault passphrase=not a passphrase of this vault"],
    );
    assert_eq!(code, 3, "{screen}");
    assert!(!screen.contains("(sent to the daemon"), "{screen}");
    assert!(
        screen.contains("has no passphrase slot") && screen.contains("--identity-file FILE"),
        "{screen}"
    );
    // With the identity file, it unlocks.
    let out = e.ok(
        &[
            "--socket",
            s,
            "unlock",
            "--identity-file",
            id.to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.contains("the daemon is unlocked"), "{out}");
}

/// Twenty-sixth pass, found by the re-attacker of this pass's fixes: with no vault file
/// readable here (the normal case for an admin in the admin group who is not the daemon's
/// user), `unlock` prompted only "Vault passphrase (sent to the daemon):", whatever vault the
/// daemon named. The prompt names the vault the daemon serves and says that it could not be
/// compared with a vault file here, so that the admin decides before typing.
#[test]
fn regression_the_unlock_prompt_names_the_daemons_vault_when_no_vault_file_is_readable() {
    if !pty_or_skip() {
        return;
    }
    let e = Env::new();
    e.init_with_cred();
    let (header, _) = common_vault::split(&e.vault_bytes());
    let served = header["vault_id"].as_str().unwrap().to_owned();
    let socket = e.path("run/sv.sock");
    std::fs::create_dir_all(socket.parent().unwrap()).unwrap();
    let _daemon = e.serve(&socket, &["--no-keyring", "--passphrase-file", &e.pf()]);
    let s = socket.to_str().unwrap();
    e.ok(&["--socket", s, "lock"], b"");
    let missing = e.path("no-such-dir/vault.scopevault");
    let (code, screen) = on_pty(
        &e,
        &format!("--vault {} --socket {s} unlock", missing.display()),
        &[&format!("(sent to the daemon={}", common_vault::PASS)],
    );
    assert_eq!(code, 0, "{screen}");
    assert!(
        screen.contains(&format!("serves vault {served}"))
            && screen.contains("could not be compared with a vault file here")
            && screen.contains(&format!("Vault passphrase (vault {served};")),
        "{screen}"
    );
    assert!(!screen.contains(common_vault::PASS), "{screen}");
}
