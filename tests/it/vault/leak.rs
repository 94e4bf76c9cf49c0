//! The secret-leak invariant for the admin CLI: store distinctive secrets, run every admin
//! command (including failing ones), and grep every byte of stdout/stderr and every file the
//! commands wrote (except the encrypted vault, and the files we fed secrets from) for them.

use crate::common::vault as common_vault;

use common_vault::{contains, files_under, Env};

const SECRET: &str = "SVLEAK-pw-7f3a9c1e-quartz";
const TOKEN: &str = "SVLEAK-token-42d7/+==";
const ROTATED: &str = "SVLEAK-rotated-b81c";

#[test]
fn no_admin_command_leaks_a_secret_anywhere() {
    let e = Env::new();
    let pf = e.pf();
    let inputs = e.path("inputs");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join("token"), TOKEN).unwrap();
    std::fs::write(inputs.join("policy.toml"), "version = 1\n[credentials.shop-buyer]\nkind = \"login\"\nscopes = [\"shop:login\"]\n[tasks.t]\nneeds = [\"shop:login\"]\ncredentials = [\"shop-buyer\"]\nruners = {}\n").unwrap();
    std::fs::write(inputs.join("good.toml"), "version = 1\n[credentials.shop-buyer]\nkind = \"login\"\nscopes = [\"shop:login\"]\n[tasks.t]\nneeds = [\"shop:login\"]\ncredentials = [\"shop-buyer\"]\nrunners = { users = [\"checkpoint\"] }\n").unwrap();
    let token_arg = format!("token={}", inputs.join("token").display());
    let id = e.path("id.txt");

    e.ok(&["init", "--passphrase-file", &pf], b"");
    e.add_login("shop-buyer", SECRET.as_bytes());
    e.ok(
        &[
            "cred",
            "add",
            "api",
            "--kind",
            "token",
            "--secret-file",
            &token_arg,
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    e.ok(&["cred", "list", "--passphrase-file", &pf], b"");
    e.ok(&["cred", "list", "--json", "--passphrase-file", &pf], b"");
    e.ok(
        &["cred", "show", "shop-buyer", "--passphrase-file", &pf],
        b"",
    );
    e.ok(
        &["cred", "show", "api", "--json", "--passphrase-file", &pf],
        b"",
    );
    e.ok(&["key", "list"], b"");
    e.ok(&["key", "list", "--json"], b"");
    e.ok(
        &[
            "key",
            "add",
            "--identity-out",
            id.to_str().unwrap(),
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    e.ok(
        &[
            "policy",
            "apply",
            inputs.join("good.toml").to_str().unwrap(),
            "--dry-run",
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    e.ok(
        &[
            "policy",
            "apply",
            inputs.join("good.toml").to_str().unwrap(),
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    e.ok(
        &["policy", "export", "--identity-file", id.to_str().unwrap()],
        b"",
    );
    e.ok(
        &[
            "cred",
            "set",
            "shop-buyer",
            "--secret",
            "password",
            "--passphrase-file",
            &pf,
        ],
        ROTATED.as_bytes(),
    );
    e.ok(&["lint", inputs.join("good.toml").to_str().unwrap()], b"");
    for fmt in ["json", "sarif", "junit"] {
        e.run(
            &[
                "lint",
                inputs.join("good.toml").to_str().unwrap(),
                "--format",
                fmt,
            ],
            b"",
        );
    }
    // Failing commands, each with a secret in reach.
    std::fs::write(e.path("wrong"), "wrong passphrase\n").unwrap();
    e.run(
        &[
            "cred",
            "list",
            "--passphrase-file",
            e.path("wrong").to_str().unwrap(),
        ],
        b"",
    );
    e.run(
        &[
            "cred",
            "add",
            "shop-buyer",
            "--kind",
            "login",
            "--secret",
            "password",
            "--passphrase-file",
            &pf,
        ],
        SECRET.as_bytes(),
    );
    e.run(
        &[
            "cred",
            "add",
            "bad/name",
            "--kind",
            "login",
            "--secret",
            "password",
            "--passphrase-file",
            &pf,
        ],
        SECRET.as_bytes(),
    );
    e.run(
        &[
            "cred",
            "set",
            "nope",
            "--secret",
            "password",
            "--passphrase-file",
            &pf,
        ],
        SECRET.as_bytes(),
    );
    e.run(
        &[
            "cred",
            "set",
            "shop-buyer",
            "--secret",
            "password",
            "--secret",
            "other",
            "--passphrase-file",
            &pf,
        ],
        SECRET.as_bytes(),
    );
    e.run(&["cred", "rm", "nope", "--passphrase-file", &pf], b"");
    e.run(
        &[
            "policy",
            "apply",
            inputs.join("policy.toml").to_str().unwrap(),
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    e.run(&["key", "remove", "0000", "--passphrase-file", &pf], b"");
    e.run(&["init", "--passphrase-file", &pf], b"");
    // A corrupted vault: the error path that reads the most of the file.
    let good = e.vault_bytes();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n - 40] ^= 0xff;
    std::fs::write(e.vault(), &bad).unwrap();
    e.run(
        &["cred", "show", "shop-buyer", "--passphrase-file", &pf],
        b"",
    );
    std::fs::write(e.vault(), &good).unwrap();
    e.ok(
        &["cred", "rm", "api", "--identity-file", id.to_str().unwrap()],
        b"",
    );

    let needles = [SECRET, TOKEN, ROTATED];
    let transcript = e.transcript.borrow();
    assert!(
        transcript.len() > 1000,
        "the commands produced output to scan"
    );
    for s in needles {
        assert!(
            !contains(&transcript, s.as_bytes()),
            "secret {s:?} appeared in stdout/stderr"
        );
    }
    let files: Vec<_> = files_under(e.dir.path())
        .into_iter()
        .filter(|f| *f != e.vault())
        .collect();
    assert!(files.len() >= 5, "scanned {files:?}");
    for f in files {
        if f.starts_with(&inputs) {
            continue; // the secrets' own source files
        }
        let bytes = std::fs::read(&f).unwrap();
        for s in needles {
            assert!(
                !contains(&bytes, s.as_bytes()),
                "secret {s:?} found in {}",
                f.display()
            );
        }
    }
    // And the vault itself holds them only encrypted.
    for s in needles {
        assert!(!contains(&e.vault_bytes(), s.as_bytes()));
    }
}
