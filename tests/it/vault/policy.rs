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
    lint_reports_a_shop_2fa_seed_error_until_cred_set(
        crate::common::daemon::setup_vault_holding_both_totp_seeds,
        "both-totp-seeds",
        &["`totp_seed`", "`otpauth`", "fetch"],
    );
}

/// Twenty-first pass (found by the twentieth pass's review): `lint --with-vault` said nothing
/// of a vault, saved by an older scopevault, whose `shop-2fa` holds an otpauth URI with an
/// `encoder` parameter (Steam's), though `publish` and `bundle apply` refuse it and every
/// fetch of it fails. It is now an `unusable-totp-seed` error naming the credential, the
/// field and why, and the `cred set` that replaces it, in the JSON, text and SARIF reports,
/// never the seed or the URI; once that is done it is gone.
#[test]
fn lint_with_vault_reports_a_stored_totp_seed_that_gives_no_code() {
    lint_reports_a_shop_2fa_seed_error_until_cred_set(
        crate::common::daemon::setup_vault_holding_a_steam_uri,
        "unusable-totp-seed",
        &["`shop-2fa`", "`otpauth`", "`encoder` parameter", "publish"],
    );
}

/// With the vault `setup` makes (the example policy, `shop-2fa` holding what an older
/// scopevault saved), `lint --with-vault --deny error` exits 1 with one `rule` error on
/// `shop-2fa`, its message holding each of `parts` and its help naming `cred set shop-2fa
/// --secret otpauth`, in the JSON, text and SARIF reports, none showing a secret or the
/// stored URI; after that `cred set` (of a usable `totp_seed`) it exits 0 without it.
fn lint_reports_a_shop_2fa_seed_error_until_cred_set(
    setup: fn(&std::path::Path) -> std::path::PathBuf,
    rule: &str,
    parts: &[&str],
) {
    use crate::common::daemon::{self, assert_no_secret};
    let dir = daemon::tempdir();
    let id = setup(dir.path());
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
    assert_eq!(out.status.code(), Some(1), "an error blocks: {out:?}");
    let found = findings_of(&out, rule);
    assert_eq!(found.len(), 1, "{out:?}");
    let f = &found[0];
    assert_eq!(f["class"], "error", "{f}");
    assert_eq!(f["credential"], "shop-2fa", "{f}");
    let message = f["message"].as_str().unwrap();
    for part in parts {
        assert!(message.contains(part), "{part}: {f}");
    }
    assert!(
        f["help"]
            .as_str()
            .unwrap()
            .contains("scopevault cred set shop-2fa --secret otpauth"),
        "{f}"
    );
    for format in ["json", "text", "sarif"] {
        let out = lint(format);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(1), "{format}: {out:?}");
        assert!(text.contains(rule), "{format}: {text}");
        assert_no_secret(&text, "lint's report");
        assert!(!text.contains("otpauth://totp/shop"), "{format}: {text}");
    }

    // The fix it names: `cred set` of a usable seed replaces the one stored.
    daemon::set_shop_2fa_seed(dir.path(), &id);
    let out = lint("json");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(!stdout.contains(rule), "{stdout}");
}

/// The findings of `rule` in a lint's JSON report on `out`'s stdout.
fn findings_of(out: &std::process::Output, rule: &str) -> Vec<serde_json::Value> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == rule)
        .cloned()
        .collect()
}

/// `scopevault ARGS` in the daemon test environment of `dir` with `stdin`.
fn run_in(dir: &std::path::Path, args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = crate::common::daemon::cmd(dir)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

/// Found by attacking who gets what (twentieth pass): after `policy apply` declared `shop-2fa`
/// as `kind = "totp"` with `scopes = ["shop:login"]`, `cred rm shop-2fa` and `cred add
/// shop-2fa --kind login --scope 'admin:*' --secret totp_seed` stored its seed as a `login`
/// with `admin:*`, which the daemon then handed out, seed and all. `cred add` of a credential
/// the applied policy declares now stores the declaration: another `--kind`, or other
/// `--scope`s or `--origin`s, are refused naming the declaration and `policy apply`, with
/// nothing stored; without `--scope` and `--origin` the declared ones are taken.
#[test]
fn cred_add_of_a_declared_credential_stores_the_declaration_and_refuses_another() {
    use crate::common::daemon::{self, TOTP_SEED};
    let dir = daemon::tempdir();
    let id = daemon::setup_vault(dir.path());
    let id_s = id.to_str().unwrap();
    let sv = |args: &[&str], stdin: &str| {
        let mut all = vec!["--identity-file", id_s];
        all.extend(args);
        run_in(dir.path(), &all, stdin)
    };
    let out = sv(&["cred", "rm", "shop-2fa"], "");
    assert!(out.status.success(), "{out:?}");
    let before = std::fs::read(dir.path().join("vault.scopevault")).unwrap();
    for conflict in [
        &["--kind", "login", "--scope", "admin:*"][..],
        &["--kind", "login"][..],
        &["--kind", "totp", "--scope", "admin:*"][..],
        &[
            "--kind",
            "totp",
            "--scope",
            "shop:login",
            "--scope",
            "admin:*",
        ][..],
        &["--kind", "totp", "--origin", "https://admin.example.com"][..],
    ] {
        let mut args = vec!["cred", "add", "shop-2fa"];
        args.extend(conflict);
        args.extend(["--secret", "totp_seed"]);
        let out = sv(&args, TOTP_SEED);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{conflict:?}: {err}");
        for part in [
            "credential `shop-2fa` is declared by the applied policy as kind `totp` with scopes [shop:login]",
            "scopevault policy apply",
            "nothing was stored",
        ] {
            assert!(err.contains(part), "{conflict:?}: {err}");
        }
        assert!(!err.contains(TOTP_SEED), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("vault.scopevault")).unwrap(),
            before,
            "{conflict:?}: nothing was saved"
        );
    }
    // As declared (the declared scope repeated, or none given): stored with the declaration.
    for (i, given) in [
        &["--scope", "shop:login", "--scope", "shop:login"][..],
        &[][..],
    ]
    .into_iter()
    .enumerate()
    {
        if i > 0 {
            assert!(sv(&["cred", "rm", "shop-2fa"], "").status.success());
        }
        let mut args = vec!["cred", "add", "shop-2fa", "--kind", "totp"];
        args.extend(given);
        args.extend(["--secret", "totp_seed"]);
        let out = sv(&args, TOTP_SEED);
        assert!(out.status.success(), "{given:?}: {out:?}");
        let out = sv(&["cred", "show", "shop-2fa", "--json"], "");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["kind"], "totp", "{v}");
        assert_eq!(v["scopes"], serde_json::json!(["shop:login"]), "{v}");
        assert_eq!(
            v["origins"],
            serde_json::json!(["https://shop.example.com"]),
            "{v}"
        );
    }
    // A credential no policy declares is added as given.
    let out = sv(
        &[
            "cred", "add", "spare", "--kind", "login", "--scope", "admin:*", "--secret", "password",
        ],
        "spare-value",
    );
    assert!(out.status.success(), "{out:?}");
}

/// Found by attacking who gets what (twentieth pass): with `shop-2fa` declared `totp` and
/// stored as a `login` with `admin:*` (as `cred rm` and `cred add` stored it before this pass,
/// `cred import` after `cred rm` still can, or an older scopevault), `lint --with-vault`
/// reported 0 findings. It is now a `vault-differs-from-policy` warning pointing at the
/// `kind` line, naming the credential and the entry's kind (never its scopes), in the JSON,
/// text and SARIF reports; `policy apply` of the policy stores the declaration, and the
/// finding is gone.
#[test]
fn lint_with_vault_reports_an_entry_stored_otherwise_than_declared() {
    use crate::common::daemon::{self, assert_no_secret};
    let dir = daemon::tempdir();
    let id = daemon::setup_vault(dir.path());
    let id_s = id.to_str().unwrap();
    common_vault::rewrite_payload(&dir.path().join("vault.scopevault"), &id, |data| {
        let c = &mut data["credentials"]["shop-2fa"];
        c["kind"] = serde_json::json!("login");
        c["scopes"] = serde_json::json!(["admin:*"]);
    });
    let lint = |format: &str| {
        run_in(
            dir.path(),
            &[
                "--identity-file",
                id_s,
                "lint",
                "example-policy.toml",
                "--with-vault",
                "--format",
                format,
            ],
            "",
        )
    };
    let findings = |out: &std::process::Output| findings_of(out, "vault-differs-from-policy");
    let out = lint("json");
    let found = findings(&out);
    assert_eq!(found.len(), 1, "{out:?}");
    let f = &found[0];
    assert_eq!(f["class"], "warning", "{f}");
    assert_eq!(f["credential"], "shop-2fa", "{f}");
    let policy = std::fs::read_to_string(dir.path().join("example-policy.toml")).unwrap();
    let line = policy.lines().nth(f["line"].as_u64().unwrap() as usize - 1);
    let kind_line = policy
        .lines()
        .skip_while(|l| *l != "[credentials.shop-2fa]")
        .nth(1);
    assert_eq!(line, kind_line, "{f}");
    assert_eq!(line, Some("kind = \"totp\""), "{f}");
    let message = f["message"].as_str().unwrap();
    for part in ["`shop-2fa`", "kind `login`", "scopes", "never the seed"] {
        assert!(message.contains(part), "{f}");
    }
    assert!(!message.contains("admin:*"), "{f}");
    assert_no_secret(&String::from_utf8_lossy(&out.stdout), "lint's JSON report");
    let out = lint("text");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("vault-differs-from-policy") && text.contains("kind `login`"),
        "{text}"
    );
    assert_no_secret(&text, "lint's text report");
    let out = lint("sarif");
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results: Vec<&serde_json::Value> = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ruleId"] == "vault-differs-from-policy")
        .collect();
    assert_eq!(results.len(), 1, "{sarif}");
    assert_eq!(results[0]["level"], "warning", "{}", results[0]);
    assert_eq!(
        results[0]["locations"][0]["physicalLocation"]["region"]["startLine"], f["line"],
        "{}",
        results[0]
    );
    let declared = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "vault-differs-from-policy")
        .cloned()
        .unwrap();
    // Its help travels in the SARIF (no `helpUri`, twenty-eighth pass): the fix it names.
    assert!(declared.get("helpUri").is_none(), "{declared}");
    assert!(
        declared["help"]["text"]
            .as_str()
            .unwrap()
            .contains("policy apply"),
        "{declared}"
    );

    // The fix it names: apply the policy again.
    let out = run_in(
        dir.path(),
        &[
            "--identity-file",
            id_s,
            "policy",
            "apply",
            "example-policy.toml",
        ],
        "",
    );
    let applied = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        applied.contains(
            "~ credential shop-2fa: kind login -> totp; scopes [admin:*] -> [shop:login]"
        ),
        "{applied}"
    );
    assert!(findings(&lint("json")).is_empty());
}

/// Twenty-first pass (found by the twentieth pass's review): a vault entry stored with
/// `https://shop.example.com:443` (as `cred add --origin` and `cred import` stored an origin
/// written with its default port before this pass) and a policy declaring
/// `https://shop.example.com` were reported `vault-differs-from-policy`, and the daemon
/// warned on every fetch, though a browser sees one origin. Origins are folded to their
/// canonical form (no default port) when parsed and when a vault is read, so the entry loads,
/// shows and compares as `https://shop.example.com`; another port still differs.
#[test]
fn an_entry_stored_with_the_default_port_is_as_declared() {
    use crate::common::daemon;
    let dir = daemon::tempdir();
    let id = daemon::setup_vault(dir.path());
    let id_s = id.to_str().unwrap();
    let sv = |args: &[&str]| {
        let mut all = vec!["--identity-file", id_s];
        all.extend(args);
        run_in(dir.path(), &all, "")
    };
    let differs = || -> Vec<serde_json::Value> {
        let out = sv(&[
            "lint",
            "example-policy.toml",
            "--with-vault",
            "--format",
            "json",
        ]);
        findings_of(&out, "vault-differs-from-policy")
    };
    let policy = std::fs::read_to_string(dir.path().join("example-policy.toml")).unwrap();
    assert!(
        policy.contains("origins = [\"https://shop.example.com\"]"),
        "{policy}"
    );
    let vault = dir.path().join("vault.scopevault");
    common_vault::rewrite_payload(&vault, &id, |data| {
        data["credentials"]["shop-buyer"]["origins"] =
            serde_json::json!(["https://shop.example.com:443"]);
    });
    assert_eq!(differs(), Vec::<serde_json::Value>::new());
    let out = sv(&["cred", "show", "shop-buyer", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["origins"],
        serde_json::json!(["https://shop.example.com"]),
        "{v}"
    );
    // Another port is another origin: still reported.
    common_vault::rewrite_payload(&vault, &id, |data| {
        data["credentials"]["shop-buyer"]["origins"] =
            serde_json::json!(["https://shop.example.com:8443"]);
    });
    let found = differs();
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["credential"], "shop-buyer", "{found:?}");
}

/// Found by attacking who gets what (twentieth pass): a credential of another kind than
/// `totp` holding a TOTP seed hands the seed itself to its runners (a `cred import` row is a
/// `login` holding `password` and `totp_seed`; `get --field totp_seed` printed it), and a
/// policy changing `kind = "totp"` to `"generic"` turned code hand-out into seed hand-out
/// with `policy apply` printing only `~ credential shop-2fa: kind totp -> generic` and no
/// lint finding. `lint --with-vault` now warns (`totp-seed-handed-out`, in the JSON, text and
/// SARIF reports, never a value) and `policy apply`'s kind change away from `totp` says the
/// seed is handed out from then on.
#[test]
fn a_seed_in_a_credential_not_declared_totp_is_a_lint_warning_and_apply_says_it_goes_out() {
    use crate::common::daemon::{self, assert_no_secret, TOTP_SEED};
    let dir = daemon::tempdir();
    let id = daemon::setup_vault(dir.path());
    let id_s = id.to_str().unwrap();
    let sv = |args: &[&str], stdin: &str| {
        let mut all = vec!["--identity-file", id_s];
        all.extend(args);
        run_in(dir.path(), &all, stdin)
    };
    // The login's TOTP seed beside its password, as an import stores a row with a TOTP column.
    let out = sv(
        &["cred", "set", "shop-buyer", "--secret", "totp_seed"],
        TOTP_SEED,
    );
    assert!(out.status.success(), "{out:?}");
    let lint =
        |policy: &str, format: &str| sv(&["lint", policy, "--with-vault", "--format", format], "");
    let seeds = |out: &std::process::Output| findings_of(out, "totp-seed-handed-out");
    let out = lint("example-policy.toml", "json");
    let found = seeds(&out);
    assert_eq!(found.len(), 1, "{out:?}");
    let f = &found[0];
    assert_eq!(f["class"], "warning", "{f}");
    assert_eq!(f["credential"], "shop-buyer", "{f}");
    let message = f["message"].as_str().unwrap();
    for part in [
        "kind `login`",
        "`totp_seed`",
        "the seed itself is handed out",
    ] {
        assert!(message.contains(part), "{f}");
    }
    assert_no_secret(&String::from_utf8_lossy(&out.stdout), "lint's JSON report");
    let out = lint("example-policy.toml", "text");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("warning[totp-seed-handed-out]") && text.contains("`shop-buyer`"),
        "{text}"
    );
    assert_no_secret(&text, "lint's text report");
    let out = lint("example-policy.toml", "sarif");
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let results: Vec<&serde_json::Value> = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ruleId"] == "totp-seed-handed-out")
        .collect();
    assert_eq!(results.len(), 1, "{sarif}");
    assert_eq!(results[0]["level"], "warning", "{}", results[0]);
    assert_eq!(
        results[0]["properties"]["credential"], "shop-buyer",
        "{}",
        results[0]
    );
    assert_no_secret(&sarif.to_string(), "lint's SARIF report");

    // The policy changes shop-2fa from `totp` to `generic`: apply says the seed goes out.
    let generic = std::fs::read_to_string(dir.path().join("example-policy.toml"))
        .unwrap()
        .replace(
            "[credentials.shop-2fa]\nkind = \"totp\"",
            "[credentials.shop-2fa]\nkind = \"generic\"",
        );
    std::fs::write(dir.path().join("generic.toml"), &generic).unwrap();
    for dry in [true, false] {
        let mut args = vec!["policy", "apply", "generic.toml"];
        if dry {
            args.push("--dry-run");
        }
        let out = sv(&args, "");
        let shown = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{out:?}");
        let line = shown
            .lines()
            .find(|l| l.starts_with("~ credential shop-2fa: kind totp -> generic"))
            .unwrap_or_else(|| panic!("{shown}"));
        assert!(
            line.contains("its TOTP seed itself is handed out from now on, not codes"),
            "{line}"
        );
    }
    let found = seeds(&lint("generic.toml", "json"));
    let credentials: Vec<&serde_json::Value> = found.iter().map(|f| &f["credential"]).collect();
    assert_eq!(credentials, ["shop-buyer", "shop-2fa"], "{found:?}");
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

/// Found by the twenty-fourth pass's attacker of scale and complexity: a policy under the
/// 16 MiB limit was applied though its canonical form, which the vault stores and `policy
/// export` prints, was over it (every default written out: `origins = []`, `groups = []`);
/// `lint` and `policy apply` then refused the export. `policy apply` refuses such a policy
/// now, naming the canonical form's size, and stores nothing.
#[test]
fn regression_a_policy_whose_canonical_form_is_over_the_limit_is_refused_at_apply() {
    use std::fmt::Write;
    let limit = scopevault::policy::MAX_POLICY_BYTES;
    let e = setup();
    let before = e.vault_bytes();
    // 37 bytes each; 64 in the canonical form (`kind = "login"`, `scopes = []`,
    // `origins = []`).
    let mut src = String::from("version = 1\n");
    for i in 0..270_000 {
        let _ = write!(src, "[credentials.c{i:07}]\nkind=\"login\"\n\n");
    }
    assert!(src.len() as u64 <= limit, "{}", src.len());
    let big = e.path("big.toml");
    std::fs::write(&big, &src).unwrap();
    let err = e.fails(
        &[
            "policy",
            "apply",
            big.to_str().unwrap(),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
        2,
    );
    assert!(
        err.contains("canonical form") && err.contains(&format!("over the {limit}-byte limit")),
        "{err}"
    );
    assert_eq!(e.vault_bytes(), before, "nothing stored");
    e.fails(&["policy", "export", "--passphrase-file", &e.pf()], b"", 2);
}

/// Twenty-fifth pass, found by the twenty-fourth pass's review: `policy export` printed a
/// description holding a right-to-left override (U+202E) or a zero-width space as it was, so
/// the terminal showed reordered text (Trojan Source, CVE-2021-42574). A string holding such a
/// character is written as a TOML basic string with `\uXXXX` escapes, which the TOML parser
/// reads back as the same text: applying the export changes nothing.
#[test]
fn regression_policy_export_escapes_bidi_and_invisible_characters_and_stays_a_fixed_point() {
    let e = setup();
    let hostile = "version = 1\n\n[scopes.\"shop:admin\"]\nrisk = \"high\"\ndescription = \"Full \u{202e}nimda\u{202c} access\u{200b}, \\\"quoted\\\" \\\\ and ##[add-mask]x\\nline two\\t\u{2028}\u{feff}\"\n\n[credentials.shop-buyer]\nkind = \"login\"\nscopes = [\"shop:admin\"]\n";
    std::fs::write(e.path("hostile.toml"), hostile).unwrap();
    e.ok(
        &[
            "policy",
            "apply",
            e.path("hostile.toml").to_str().unwrap(),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    let export1 = e.ok(&["policy", "export", "--passphrase-file", &e.pf()], b"");
    for c in [
        '\u{202e}', '\u{202c}', '\u{200b}', '\u{2028}', '\u{feff}', '\t',
    ] {
        assert!(!export1.contains(c), "{c:?} raw in {export1}");
    }
    assert!(export1.contains("\\u202E"), "{export1}");
    assert!(!export1.contains("##["), "{export1}");
    // The TOML reads back as the description applied.
    let parsed: toml::Table = toml::from_str(&export1).unwrap();
    assert_eq!(
        parsed["scopes"]["shop:admin"]["description"].as_str(),
        Some("Full \u{202e}nimda\u{202c} access\u{200b}, \"quoted\" \\ and ##[add-mask]x\nline two\t\u{2028}\u{feff}")
    );
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
    assert_eq!(e.vault_bytes(), before);
    let export2 = e.ok(&["policy", "export", "--passphrase-file", &e.pf()], b"");
    assert_eq!(export1, export2);
}

/// Found by the twenty-eighth pass's attacker of a long-running daemon: `cred add --kind totp
/// --secret seed` stored the seed under a name no code is made from, exit 0 without a word,
/// and the daemon later handed it to every runner beside the code. A `totp` credential holds
/// only its seed: every writer refuses another secret for it, naming the field and the `cred
/// set … --secret totp_seed` that stores the seed, never the value, and stores nothing.
#[test]
fn every_writer_refuses_a_secret_beside_the_seed_of_a_totp_credential() {
    use crate::common::daemon::{self, STRAY_SEED};
    let dir = daemon::tempdir();
    let id = daemon::setup_vault(dir.path());
    let id_s = id.to_str().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut all = vec!["--identity-file", id_s];
        all.extend(args);
        run_in(dir.path(), &all, stdin)
    };
    let refused = |out: &std::process::Output, what: &str, field: &str, name: &str| {
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{what}: {out:?}");
        assert!(
            err.contains(&format!("`{field}`"))
                && err.contains(&format!("scopevault cred set {name} --secret totp_seed"))
                && err.contains("nothing was"),
            "{what}: {err}"
        );
        assert!(
            !err.contains(STRAY_SEED) && !err.contains("pw-value-9"),
            "{what}: {err}"
        );
    };
    let before = daemon::ok(
        dir.path(),
        &["--identity-file", id_s, "cred", "list", "--json"],
        None,
    );
    let add = [
        "cred",
        "add",
        "twofa",
        "--kind",
        "totp",
        "--scope",
        "shop:login",
        "--secret",
        "seed",
    ];
    refused(&run(&add, STRAY_SEED), "cred add", "seed", "twofa");
    let set = ["cred", "set", "shop-2fa", "--secret", "password"];
    refused(&run(&set, "pw-value-9"), "cred set", "password", "shop-2fa");
    let csv = dir.path().join("export.csv");
    std::fs::write(
        &csv,
        "name,username,password\nshop-2fa,monitor,pw-value-9\n",
    )
    .unwrap();
    let import = ["cred", "import", "--update", csv.to_str().unwrap()];
    refused(
        &run(&import, ""),
        "cred import --update",
        "password",
        "shop-2fa",
    );
    let after = daemon::ok(
        dir.path(),
        &["--identity-file", id_s, "cred", "list", "--json"],
        None,
    );
    assert_eq!(before, after, "nothing was stored");
}

/// Found by the twenty-eighth pass's attacker of a long-running daemon: a `totp` credential an
/// older scopevault saved holding the seed again as the secret `seed` got no finding from `lint
/// --with-vault` and an `ok` from `doctor`. Both report it now (`secret-beside-totp-seed`, a
/// `fail` on doctor's `totp` line), naming the credential and the field and the `cred set`
/// that removes it, never the value; that `cred set` stores the seed, removes `seed` and says
/// so, and both are clean after it.
#[test]
fn lint_and_doctor_report_a_secret_beside_the_totp_seed_until_cred_set_removes_it() {
    use crate::common::daemon::{self, STRAY_SEED, TOTP_SEED};
    let dir = daemon::tempdir();
    let id = daemon::setup_vault_holding_a_secret_beside_the_totp_seed(dir.path());
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
    let lint = || {
        daemon::cmd(dir.path())
            .args(["--identity-file", id_s, "lint", "example-policy.toml"])
            .args(["--with-vault", "--deny", "error", "--format", "json"])
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let doctor = || {
        daemon::cmd(dir.path())
            .args(["--identity-file", id_s, "doctor", "--socket"])
            .arg(dir.path().join("no-daemon.sock"))
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = lint();
    assert_eq!(out.status.code(), Some(1), "an error blocks: {out:?}");
    let found = findings_of(&out, "secret-beside-totp-seed");
    assert_eq!(found.len(), 1, "{out:?}");
    let f = &found[0];
    assert_eq!(
        (f["class"].as_str(), f["credential"].as_str()),
        (Some("error"), Some("shop-2fa")),
        "{f}"
    );
    assert!(f["message"].as_str().unwrap().contains("`seed`"), "{f}");
    assert!(
        f["help"]
            .as_str()
            .unwrap()
            .contains("scopevault cred set shop-2fa --secret totp_seed"),
        "{f}"
    );
    let out = doctor();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("fail")
            && l.contains("totp")
            && l.contains("`shop-2fa`")
            && l.contains("`seed`")
            && l.contains("scopevault cred set shop-2fa --secret totp_seed")),
        "{text}"
    );
    for shown in [String::from_utf8_lossy(&lint().stdout).into_owned(), text] {
        assert!(
            !shown.contains(STRAY_SEED) && !shown.contains(TOTP_SEED),
            "{shown}"
        );
    }

    // The fix they name: storing the seed removes every other secret, and says so.
    let set = run_in(
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
        TOTP_SEED,
    );
    let said = String::from_utf8_lossy(&set.stdout);
    assert!(set.status.success(), "{set:?}");
    assert!(
        said.contains("secret seed, not a TOTP seed field, was removed"),
        "{said}"
    );
    let show = daemon::ok(
        dir.path(),
        &[
            "--identity-file",
            id_s,
            "cred",
            "show",
            "shop-2fa",
            "--json",
        ],
        None,
    );
    let show: serde_json::Value = serde_json::from_str(&show).unwrap();
    assert_eq!(
        show["secret_fields"],
        serde_json::json!(["totp_seed"]),
        "{show}"
    );
    let out = lint();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert!(
        findings_of(&out, "secret-beside-totp-seed").is_empty(),
        "{out:?}"
    );
    let out = doctor();
    assert_eq!(out.status.code(), Some(0), "{out:?}");
}
