//! `policy apply` / `policy export` against a real vault.

use crate::common::vault as common_vault;

use common_vault::Env;

const POLICY: &str = r#"version = 1

[settings]
enforce = "warn"

[scopes."shop:admin"]
risk = "high"
implies = ["shop:orders:*"]

[credentials.shop-buyer]
kind = "login"
scopes = ["shop:login", "shop:orders:read", "shop:orders:create"]
origins = ["https://shop.example.com"]

[credentials.api-token]
kind = "token"
scopes = ["api:status:read"]

[tasks.checkout-flow]
needs = ["shop:login", "shop:orders:read", "shop:orders:create"]
credentials = ["shop-buyer"]
runners = { users = ["checkpoint"], groups = [] }
origin = "https://shop.example.com"

[tasks.api-health]
needs = ["api:status:read"]
credentials = ["api-token"]
runners = { users = ["checkpoint"] }
"#;

fn setup() -> Env {
    let e = Env::new();
    e.init_with_cred();
    std::fs::write(e.path("policy.toml"), POLICY).unwrap();
    e
}

#[test]
fn apply_declares_credentials_and_export_apply_is_a_fixed_point() {
    let e = setup();
    let pol = e.path("policy.toml");
    let out = e.ok(
        &[
            "policy",
            "apply",
            pol.to_str().unwrap(),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    assert!(out.contains("+ credential api-token (token)"), "{out}");
    assert!(out.contains("cred set api-token --secret token"), "{out}");
    assert!(out.contains("~ credential shop-buyer: scopes"), "{out}");
    assert!(out.contains("+ task checkout-flow"), "{out}");
    let export1 = e.ok(&["policy", "export", "--passphrase-file", &e.pf()], b"");
    std::fs::write(e.path("exported.toml"), &export1).unwrap();
    let before = e.vault_bytes();
    let out = e.ok(
        &[
            "policy",
            "apply",
            e.path("exported.toml").to_str().unwrap(),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    assert!(out.contains("policy unchanged"), "{out}");
    assert_eq!(
        e.vault_bytes(),
        before,
        "re-applying the export writes nothing"
    );
    let export2 = e.ok(&["policy", "export", "--passphrase-file", &e.pf()], b"");
    assert_eq!(export1, export2);
    // The declared credential takes a secret with `cred set`.
    e.ok(
        &[
            "cred",
            "set",
            "api-token",
            "--secret",
            "token",
            "--passphrase-file",
            &e.pf(),
        ],
        b"tok-abcdef",
    );
    let show = e.ok(
        &[
            "cred",
            "show",
            "api-token",
            "--json",
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    let v: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(v["secret_fields"], serde_json::json!(["token"]));
    assert_eq!(v["tasks"], serde_json::json!(["api-health"]));
}

#[test]
fn dry_run_changes_nothing() {
    let e = setup();
    let before = e.vault_bytes();
    let out = e.ok(
        &[
            "policy",
            "apply",
            e.path("policy.toml").to_str().unwrap(),
            "--dry-run",
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    assert!(
        out.contains("+ task api-health") && out.contains("dry run"),
        "{out}"
    );
    assert_eq!(e.vault_bytes(), before);
    e.fails(&["policy", "export", "--passphrase-file", &e.pf()], b"", 2);
}

#[test]
fn malformed_policy_is_refused_with_file_line_col_and_changes_nothing() {
    let e = setup();
    let before = e.vault_bytes();
    let bad = e.path("bad.toml");
    for (text, want) in [
        (
            "version = 1\n[credentials.x]\nkind = \"login\"\nscopes = [\"shop:login\"\n",
            "bad.toml:",
        ),
        (
            "version = 1\n[credentials.x]\nkind = \"login\"\nscope = [\"a\"]\n",
            "bad.toml:4:1",
        ),
        (
            "version = 1\n[credentials.x]\nkind = \"login\"\nscopes = [\"Shop:Login\"]\n",
            "bad.toml:4:",
        ),
    ] {
        std::fs::write(&bad, text).unwrap();
        let err = e.fails(
            &[
                "policy",
                "apply",
                bad.to_str().unwrap(),
                "--passphrase-file",
                &e.pf(),
            ],
            b"",
            2,
        );
        assert!(err.contains(want), "want {want} in: {err}");
        assert_eq!(e.vault_bytes(), before);
    }
    let err = e.fails(
        &[
            "policy",
            "apply",
            e.path("missing.toml").to_str().unwrap(),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
        2,
    );
    assert!(err.contains("missing.toml"), "{err}");
}

#[test]
fn a_policy_with_lint_errors_is_refused_and_deny_raises_the_bar() {
    let e = setup();
    let before = e.vault_bytes();
    let p = e.path("p.toml");
    std::fs::write(
        &p,
        POLICY.replace(
            "credentials = [\"api-token\"]",
            "credentials = [\"api-tokn\"]",
        ),
    )
    .unwrap();
    let err = e.fails(
        &[
            "policy",
            "apply",
            p.to_str().unwrap(),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
        2,
    );
    assert!(
        err.contains("unknown-credential") && err.contains("refusing to apply"),
        "{err}"
    );
    assert_eq!(e.vault_bytes(), before);
    // Over-scoped but valid: applies by default, refused with --deny security-warning.
    std::fs::write(
        &p,
        POLICY.replace(
            "needs = [\"shop:login\", \"shop:orders:read\", \"shop:orders:create\"]",
            "needs = [\"shop:login\"]",
        ),
    )
    .unwrap();
    let err = e.fails(
        &[
            "policy",
            "apply",
            p.to_str().unwrap(),
            "--deny",
            "security-warning",
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
        2,
    );
    assert!(err.contains("scope-exceeds-task"), "{err}");
    assert_eq!(e.vault_bytes(), before);
    let out = e.run(
        &[
            "policy",
            "apply",
            p.to_str().unwrap(),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("scope-exceeds-task"),
        "warnings are printed"
    );
}

#[test]
fn lint_with_vault_reports_missing_secrets_from_the_real_vault() {
    let e = setup();
    let pol = e.path("policy.toml");
    e.ok(
        &[
            "policy",
            "apply",
            pol.to_str().unwrap(),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    let out = e.run(
        &[
            "lint",
            pol.to_str().unwrap(),
            "--with-vault",
            "--format",
            "json",
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stdout.contains("missing-secret") && stdout.contains("api-token"),
        "{stdout}"
    );
    // shop-buyer has its secret: no missing-secret finding for it.
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert!(
        !findings
            .iter()
            .any(|f| f["rule"] == "missing-secret" && f["credential"] == "shop-buyer"),
        "{stdout}"
    );
    e.ok(
        &[
            "cred",
            "set",
            "api-token",
            "--secret",
            "token",
            "--passphrase-file",
            &e.pf(),
        ],
        b"tok-123456",
    );
    let out = e.run(
        &[
            "lint",
            pol.to_str().unwrap(),
            "--with-vault",
            "--format",
            "json",
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains("missing-secret"));
}

/// Found by reviewing how an admin learns of a credential holding both TOTP seeds
/// (seventeenth pass): `lint --with-vault` said nothing of a vault, saved by an older
/// scopevault, whose `shop-2fa` holds both `totp_seed` and `otpauth`, though every fetch of it
/// fails. It is now a `both-totp-seeds` error (blocking at `--deny error`) naming the
/// credential and the `cred set` that keeps one seed, in the text, JSON and SARIF reports,
/// never a value; once that is done it is gone.
#[test]
fn lint_with_vault_reports_a_credential_holding_both_totp_seeds() {
    use crate::common::daemon::{self, assert_no_secret, TOTP_SEED};
    let dir = daemon::tempdir();
    let id = daemon::setup_vault_holding_both_totp_seeds(dir.path());
    let id_s = id.to_str().unwrap();
    // The example's one other error: a credential with no secret.
    daemon::ok(
        dir.path(),
        &[
            "--identity-file",
            id_s,
            "cred",
            "set",
            "legacy-ftp",
            "--secret",
            "secret",
        ],
        Some("ftp-value"),
    );
    let lint = |format: &str| {
        daemon::cmd(dir.path())
            .args(["--identity-file", id_s, "lint", "example-policy.toml"])
            .args(["--with-vault", "--deny", "error", "--format", format])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = lint("json");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "an error blocks: {out:?}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let both: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "both-totp-seeds")
        .collect();
    assert_eq!(both.len(), 1, "{stdout}");
    let f = both[0];
    assert_eq!(f["class"], "error", "{f}");
    assert_eq!(f["credential"], "shop-2fa", "{f}");
    let message = f["message"].as_str().unwrap();
    for part in ["`totp_seed`", "`otpauth`", "fetch"] {
        assert!(message.contains(part), "{f}");
    }
    assert!(
        f["help"]
            .as_str()
            .unwrap()
            .contains("scopevault cred set shop-2fa --secret otpauth"),
        "{f}"
    );
    assert_no_secret(&stdout, "lint's JSON report");
    for format in ["text", "sarif"] {
        let out = lint(format);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{format}: {out:?}");
        assert!(text.contains("both-totp-seeds"), "{format}: {text}");
        assert_no_secret(&text, "lint's report");
    }

    // The fix it names: `cred set` of the seed in use removes the other.
    daemon::ok(
        dir.path(),
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
    let out = lint("json");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!stdout.contains("both-totp-seeds"), "{stdout}");
}

/// Issue 15.12: changing only a task's `schedulers` is named in `policy apply`'s summary.
#[test]
fn apply_names_a_change_of_a_tasks_schedulers() {
    let e = setup();
    let apply = |file: &str| {
        e.ok(
            &[
                "policy",
                "apply",
                e.path(file).to_str().unwrap(),
                "--passphrase-file",
                &e.pf(),
            ],
            b"",
        )
    };
    apply("policy.toml");
    let changed = POLICY.replace(
        "[tasks.api-health]\n",
        "[tasks.api-health]\nschedulers = [\"cron\"]\n",
    );
    assert_ne!(changed, POLICY);
    std::fs::write(e.path("changed.toml"), changed).unwrap();
    let out = apply("changed.toml");
    assert!(out.contains("~ task api-health: schedulers"), "{out}");
    let export = e.ok(&["policy", "export", "--passphrase-file", &e.pf()], b"");
    assert!(export.contains("schedulers = [\"cron\"]"), "{export}");
}

/// A runner or scheduler name that exists on no account of this host matches nobody: `policy
/// apply` on a checkpoint (no locations) names it, so a typo is not found only when the check
/// is denied. A master's policy (with locations) names its checkpoints' users: no warning.
#[test]
fn apply_names_runners_and_schedulers_that_exist_on_no_account_here() {
    let e = setup();
    let typo = POLICY.replace(
        "runners = { users = [\"checkpoint\"] }",
        "runners = { users = [\"root\", \"sv-no-such-user-x\"], groups = [\"sv-no-such-group-x\"] }\nschedulers = [\"sv-no-such-sched-x\", \"0\"]",
    );
    assert_ne!(typo, POLICY);
    std::fs::write(e.path("typo.toml"), &typo).unwrap();
    let apply = |file: &str| {
        e.run(
            &[
                "policy",
                "apply",
                e.path(file).to_str().unwrap(),
                "--passphrase-file",
                &e.pf(),
            ],
            b"",
        )
    };
    let out = apply("typo.toml");
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    for name in [
        "runner user `sv-no-such-user-x`",
        "runner group `sv-no-such-group-x`",
        "scheduler `sv-no-such-sched-x`",
    ] {
        assert!(
            err.contains(&format!(
                "warning: task `api-health`: {name} does not exist on this host"
            )),
            "{name}: {err}"
        );
    }
    assert!(!err.contains("`root`") && !err.contains("`0`"), "{err}");
    let master = format!(
        "{typo}\n[locations.ams]\nrecipient = \"age125gmrf8vq05hsrzadtlp3ctlp7lra7q2nrkvud85y7yklqyjecwq5fet9e\"\n"
    )
    .replace("[tasks.api-health]\n", "[tasks.api-health]\nlocations = [\"ams\"]\n")
    .replace("[tasks.checkout-flow]\n", "[tasks.checkout-flow]\nlocations = [\"ams\"]\n");
    std::fs::write(e.path("master.toml"), master).unwrap();
    let out = apply("master.toml");
    assert!(out.status.success(), "{out:?}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("does not exist on this host"),
        "{out:?}"
    );
}

/// Eighteenth pass (found by the last review): an error keeps its own line breaks, and the
/// policy parser quotes an unknown key or value as it is, so a policy (from a pull request)
/// with a key or a value `"x\nerror: forged"` made `policy apply` print a line of its own
/// that read as scopevault's. The parse error is escaped where it is made, line breaks too.
#[test]
fn a_line_break_in_a_policy_key_or_value_cannot_forge_an_error_line() {
    let e = setup();
    let before = e.vault_bytes();
    let bad = e.path("bad.toml");
    for text in [
        "version = 1\n\"x\\nerror: forged\" = 1\n",
        "version = 1\n[settings]\nenforce = \"x\\nerror: forged\"\n",
        "version = 1\n[credentials.x]\nkind = \"login\"\n\"x\\nerror: forged\" = 1\n",
    ] {
        std::fs::write(&bad, text).unwrap();
        let err = e.fails(
            &[
                "policy",
                "apply",
                bad.to_str().unwrap(),
                "--passphrase-file",
                &e.pf(),
            ],
            b"",
            2,
        );
        assert!(err.contains("x\\nerror: forged"), "{text}: {err}");
        assert!(
            !err.lines().any(|l| l.starts_with("error: forged")),
            "{text}: the value started a line: {err}"
        );
        assert_eq!(e.vault_bytes(), before);
    }
}
