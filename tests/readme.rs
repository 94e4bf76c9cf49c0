//! The README's quick start, run for real: every command in its block, in order, against a
//! fresh vault and daemon (passphrases from a file instead of the prompt). If the README
//! changes, this test must change with it.

#[path = "common/vault.rs"]
mod common_vault;

use std::process::{Child, Command, Stdio};

use common_vault::Env;

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

#[test]
fn the_readme_quick_start_works() {
    let steps = quick_start();
    let expected = [
        "scopevault init",
        "scopevault init --identity-out /etc/credstore/scopevault-identity",
        "scopevault lint examples/policy.toml",
        "scopevault policy apply examples/policy.toml",
        "scopevault cred set shop-buyer --secret password",
        "printf '%s' \"$TOKEN\" | scopevault cred set search-token --secret token",
        "scopevault cred list",
        "scopevault serve &",
        "scopevault unlock",
        "scopevault get --task checkout-flow --field password",
        "scopevault exec --task checkout-flow -- ./checks/checkout.sh",
    ];
    assert_eq!(
        steps, expected,
        "the README's quick start changed: update this test with it"
    );

    let e = Env::new();
    let work = e.path("work");
    std::fs::create_dir_all(work.join("examples")).unwrap();
    std::fs::create_dir_all(work.join("checks")).unwrap();
    // The example's runners are `checkpoint` and `root`; a developer's own user is added, as
    // the quick start's reader would, so `get` and `exec` run for everyone.
    let me = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
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
    let socket = e.path("run/scopevault.sock");
    let cmd = |args: &[&str]| {
        let mut c = e.cmd();
        c.current_dir(&work)
            .env("SCOPEVAULT_SOCKET", &socket)
            .env("SCOPEVAULT_AUDIT", e.path("audit.jsonl"))
            .args(args);
        c
    };
    let run = |args: &[&str], stdin: &[u8]| e.run_cmd(&mut cmd(args), stdin);
    let ok = |args: &[&str], stdin: &[u8]| {
        let out = run(args, stdin);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let pf = e.pf();

    // scopevault init (the prompt's answer comes from a file here)
    ok(&["init", "--passphrase-file", &pf], b"");
    // scopevault init --identity-out …: a second, passphrase-less vault
    let id = e.path("scopevault-identity");
    let out = run(
        &[
            "init",
            "--identity-out",
            id.to_str().unwrap(),
            "--vault",
            e.path("unattended.scopevault").to_str().unwrap(),
        ],
        b"",
    );
    assert!(out.status.success() && id.exists(), "{out:?}");
    // scopevault lint examples/policy.toml: findings, exit 1
    let out = run(&["lint", "examples/policy.toml"], b"");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("scope-exceeds-task"));
    ok(
        &[
            "policy",
            "apply",
            "examples/policy.toml",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    ok(
        &[
            "cred",
            "set",
            "shop-buyer",
            "--secret",
            "password",
            "--passphrase-file",
            &pf,
        ],
        b"readme-Buyer-pw-1",
    );
    ok(
        &[
            "cred",
            "set",
            "search-token",
            "--secret",
            "token",
            "--passphrase-file",
            &pf,
        ],
        b"readme-search-token",
    );
    let list = ok(&["cred", "list", "--passphrase-file", &pf], b"");
    assert!(
        list.contains("shop-buyer") && list.contains("search-token"),
        "{list}"
    );

    // scopevault serve &
    let mut serve = cmd(&["serve"]);
    serve
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let _daemon = Serve(serve.spawn().unwrap());
    let t0 = std::time::Instant::now();
    while !socket.exists() {
        assert!(t0.elapsed().as_secs() < 20, "the daemon did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    ok(&["unlock", "--passphrase-file", &pf], b"");
    let pw = ok(
        &["get", "--task", "checkout-flow", "--field", "password"],
        b"",
    );
    assert_eq!(pw.trim_end(), "readme-Buyer-pw-1");
    let script = work.join("checks/checkout.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"user=$SCOPEVAULT_SHOP_BUYER_USERNAME pw=$SCOPEVAULT_SHOP_BUYER_PASSWORD\"\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let out = ok(
        &[
            "exec",
            "--task",
            "checkout-flow",
            "--",
            "./checks/checkout.sh",
        ],
        b"",
    );
    assert!(
        out.contains("pw=[redacted:shop-buyer.password]") && !out.contains("readme-Buyer-pw-1"),
        "{out}"
    );
}
