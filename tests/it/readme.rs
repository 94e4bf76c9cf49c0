//! The README's quick start, run for real and as written: every line of its block, in order,
//! through `sh -c` on a real pseudo-terminal (the passphrases typed at the prompts, which
//! appear on the terminal even when stdin is a pipe), against a fresh vault and daemon. Only
//! the environment is isolated (SCOPEVAULT_VAULT, SCOPEVAULT_SOCKET, …, and `scopevault` on
//! PATH is the binary under test). If the README changes, this test must change with it.

use crate::common::shell_pty;
use crate::common::vault as common_vault;

use std::process::{Child, Stdio};

use common_vault::{Env, PASS};

fn quick_start() -> Vec<String> {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let section = &readme[readme
        .find("## Quick start")
        .expect("a Quick start section")..];
    let block = &section[section.find("```sh").unwrap() + 5..];
    let block = &block[..block.find("```").unwrap()];
    block
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

struct Serve(Child);
impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn the_readme_quick_start_works() {
    let steps = quick_start();
    let expected = [
        "scopevault init",
        "scopevault lint examples/policy.toml",
        "scopevault policy apply examples/policy.toml",
        "scopevault cred set shop-buyer --field username=monitor --secret password",
        "printf '%s' \"$TOKEN\" | scopevault cred set search-token --secret token",
        "scopevault cred list",
        "scopevault serve &",
        "scopevault unlock",
        "scopevault get --task=checkout-flow --field password",
        "CHECK_DRY_RUN=1 scopevault exec --task=checkout-flow -- python3 examples/checkpoint/check-login.py",
    ];
    assert_eq!(
        steps, expected,
        "the README's quick start changed: update this test with it"
    );
    if !shell_pty::available() {
        return crate::common::skip::skip(
            "python3 with the pty module is needed to run the quick start on a terminal",
        );
    }

    let e = Env::new();
    // The README's block runs from the repository's root: a copy of the files it reads.
    let work = e.path("work");
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::create_dir_all(work.join("examples")).unwrap();
    // The example's runners are `checkpoint` and `root`; a developer's own user is added, as
    // the quick start's reader would, so `get` and `exec` run for everyone.
    let me = String::from_utf8(
        std::process::Command::new("id")
            .arg("-un")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let me = me.trim();
    let policy = include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.toml"));
    let policy = if me == "root" || me == "checkpoint" {
        policy.to_owned()
    } else {
        policy.replace(
            "users = [\"checkpoint\", \"root\"",
            &format!("users = [\"checkpoint\", \"root\", \"{me}\""),
        )
    };
    std::fs::write(work.join("examples/policy.toml"), policy).unwrap();
    copy_dir(
        &root.join("examples/checkpoint"),
        &work.join("examples/checkpoint"),
    );
    copy_dir(
        &root.join("examples/clients"),
        &work.join("examples/clients"),
    );
    let socket = e.path("run/scopevault.sock");
    let token = "readme-search-token-83";
    let buyer_pw = "readme-Buyer-pw-1";
    // One README line on the terminal: (exit code, what the terminal showed).
    let line = |l: &str, answers: &[String]| {
        let mut c = e.wrapper("python3");
        c.current_dir(&work)
            .env("PATH", shell_pty::path_with_binary())
            .env("SCOPEVAULT_SOCKET", &socket)
            .env("SCOPEVAULT_AUDIT", e.path("audit.jsonl"))
            .env("TOKEN", token);
        shell_pty::drive(&mut c, l);
        let out = e.run_cmd(&mut c, answers.join("\n").as_bytes());
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let pass = |prompt: &str| format!("{prompt}={PASS}");
    let ok = |l: &str, answers: &[String]| {
        let (code, screen) = line(l, answers);
        assert_eq!(code, 0, "`{l}` failed on the terminal:\n{screen}");
        assert!(
            !screen.contains(PASS) && !screen.contains("[driver: no prompt"),
            "`{l}`:\n{screen}"
        );
        screen
    };

    ok(&steps[0], &[pass("New passphrase"), pass("Repeat it")]);
    let (code, screen) = line(&steps[1], &[]);
    assert_eq!(code, 1, "the lint shows findings on the example: {screen}");
    assert!(screen.contains("scope-exceeds-task"), "{screen}");
    ok(&steps[2], &[pass("Passphrase for")]);
    // The passphrase is asked before the secret, so the user types each into its own prompt.
    let screen = ok(
        &steps[3],
        &[pass("Passphrase for"), format!("password:={buyer_pw}")],
    );
    let (p, s) = (
        screen.find("Passphrase for").unwrap(),
        screen.find("password:").unwrap(),
    );
    assert!(p < s, "the passphrase prompt comes first: {screen}");
    assert!(!screen.contains(buyer_pw), "{screen}");
    // The secret on a pipe, the passphrase on the terminal.
    let screen = ok(&steps[4], &[pass("Passphrase for")]);
    assert!(
        screen.contains("1 secret value(s) changed") && !screen.contains(token),
        "{screen}"
    );
    let list = ok(&steps[5], &[pass("Passphrase for")]);
    assert!(
        list.contains("shop-buyer") && list.contains("search-token"),
        "{list}"
    );

    // scopevault serve & (in the background, as the README's `&`)
    assert_eq!(steps[6], "scopevault serve &");
    let mut serve = e.cmd();
    serve
        .current_dir(&work)
        .env("SCOPEVAULT_SOCKET", &socket)
        .env("SCOPEVAULT_AUDIT", e.path("audit.jsonl"))
        .arg("serve")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _daemon = Serve(serve.spawn().unwrap());
    let t0 = std::time::Instant::now();
    while !socket.exists() {
        assert!(t0.elapsed().as_secs() < 20, "the daemon did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ok(&steps[7], &[pass("Vault passphrase")]);
    let pw = ok(&steps[8], &[]);
    assert_eq!(pw.trim_end(), buyer_pw);
    let out = ok(&steps[9], &[]);
    assert!(
        out.contains(
            "check checkout-flow: would sign in to https://shop.example.com/login as monitor"
        ),
        "{out}"
    );
    assert!(!out.contains(buyer_pw), "{out}");
}
