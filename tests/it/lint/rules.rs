//! Every lint rule has a fixture that fires it and one that does not; exceptions hide exactly
//! their finding. Runs the real binary (JSON output); the two vault rules run through the
//! library with hand-built vault metadata, as the CLI wiring of the vault is the vault's job.

use crate::common::lint as common_lint;

use std::collections::BTreeMap;

use common_lint::{fixture, lint_json, rules_of};
use scopevault::policy::lint::{lint, LintOptions, RuleId, RULES};
use scopevault::policy::{CredentialKind, CredentialMeta, Policy, StoredAs, VaultMeta};
use time::macros::{date, datetime};

fn fired(v: &serde_json::Value, rule: &str) -> bool {
    rules_of(v).iter().any(|(r, ex)| r == rule && !ex)
}

#[test]
fn every_rule_fires_on_its_fixture_and_not_on_the_clean_one() {
    for r in RULES.iter().filter(|r| !r.needs_vault && !r.needs_audit) {
        let fires = fixture(&format!("rules/{}.fires.toml", r.id));
        let clean = fixture(&format!("rules/{}.clean.toml", r.id));
        let (v, code) = lint_json(&fires);
        assert!(fired(&v, r.id), "{} did not fire: {v:#}", r.id);
        let f = v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["rule"] == r.id)
            .unwrap();
        assert_eq!(f["class"], r.class.as_str());
        assert!(
            f["line"].as_u64().unwrap() > 1,
            "{}: points at a line",
            r.id
        );
        assert!(!f["help"].as_str().unwrap().is_empty());
        // Blocking by default: errors and security warnings → 1; invalid policy → 2.
        let want = match r.id {
            "invalid-scope" | "implies-cycle" => 2,
            _ if r.class.as_str() == "error" || r.class.as_str() == "security-warning" => 1,
            // A warning or suggestion alone does not block: the exit code is 1 exactly when
            // the fixture also has a blocking finding (error or security warning) that no
            // exception hides, else 0.
            _ => {
                let blocking = v["findings"].as_array().unwrap().iter().any(|f| {
                    f["excepted"] == false
                        && (f["class"] == "error" || f["class"] == "security-warning")
                });
                i32::from(blocking)
            }
        };
        assert_eq!(code, want, "{}: exit code", r.id);
        let (v, _) = lint_json(&clean);
        assert!(
            !fired(&v, r.id),
            "{} fired on the clean fixture: {v:#}",
            r.id
        );
    }
}

#[test]
fn the_clean_policy_has_no_finding_and_exits_0() {
    let (v, code) = lint_json(&fixture("clean.toml"));
    assert_eq!(rules_of(&v), vec![]);
    assert_eq!(code, 0);
}

#[test]
fn messages_name_credential_task_and_each_excess_scope() {
    let (v, _) = lint_json(&fixture("rules/scope-exceeds-task.fires.toml"));
    let f = &v["findings"][0];
    assert_eq!(f["rule"], "scope-exceeds-task");
    assert_eq!(f["credential"], "buyer");
    assert_eq!(f["task"], "checkout");
    assert_eq!(f["scopes"], serde_json::json!(["shop:orders:read"]));
    let msg = f["message"].as_str().unwrap();
    for part in ["`buyer`", "`checkout`", "`shop:orders:read`"] {
        assert!(msg.contains(part), "{msg}");
    }
    // With a catalog, the message says which excess scopes are high risk.
    let (v, _) = lint_json(&fixture("rules/high-risk-scope-unneeded.fires.toml"));
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "scope-exceeds-task")
        .unwrap();
    assert!(
        f["message"]
            .as_str()
            .unwrap()
            .contains("high risk: `shop:admin`"),
        "{f}"
    );
}

#[test]
fn an_exception_hides_exactly_its_finding() {
    let (v, code) = lint_json(&fixture("rules/invalid-exception.clean.toml"));
    assert_eq!(rules_of(&v), vec![("scope-exceeds-task".to_owned(), true)]);
    assert_eq!(code, 0, "the only finding is excepted");
    assert_eq!(v["summary"]["excepted"], 1);
    assert_eq!(v["summary"]["security-warning"], 0);
}

#[test]
fn an_exception_naming_more_scopes_hides_nothing_and_is_invalid() {
    let (v, code) = lint_json(&fixture("rules/invalid-exception.fires.toml"));
    let rules = rules_of(&v);
    assert!(rules.contains(&("scope-exceeds-task".to_owned(), false)));
    let invalid: Vec<&str> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "invalid-exception")
        .map(|f| f["message"].as_str().unwrap())
        .collect();
    assert_eq!(invalid.len(), 2, "{invalid:?}");
    assert!(invalid.iter().any(|m| m.contains("no reason")));
    assert!(invalid.iter().any(|m| m.contains("matches no finding")));
    assert_eq!(code, 1);
}

#[test]
fn an_expired_exception_is_reported_and_its_finding_is_back() {
    let (v, code) = lint_json(&fixture("rules/exception-expired.fires.toml"));
    let rules = rules_of(&v);
    assert!(rules.contains(&("scope-exceeds-task".to_owned(), false)));
    assert!(rules.contains(&("exception-expired".to_owned(), false)));
    assert_eq!(code, 1);
}

/// Credentials whose names differ only in `-`, `_`, `.` or case (`shop-buyer`, `shop_buyer`,
/// `Shop.Buyer`) linted clean in one task, but `exec` hands their fields over as
/// `SCOPEVAULT_SHOP_BUYER_…` and refused ("would hold both …") only after every one was
/// fetched and audited as allowed (twenty-second pass, found by an attacker as a CI
/// maintainer). lint warns, at the task's entry that collides, naming both.
#[test]
fn credentials_that_share_an_exec_variable_in_one_task_are_a_warning() {
    let (v, _) = lint_json(&fixture("rules/env-name-collision.fires.toml"));
    let found: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "env-name-collision")
        .collect();
    assert_eq!(found.len(), 1, "{v:#}");
    let f = found[0];
    assert_eq!(f["class"], "warning");
    assert_eq!(f["credential"], "shop_buyer");
    assert_eq!(f["task"], "checkout");
    let m = f["message"].as_str().unwrap();
    assert!(
        m.contains("`shop-buyer` and `shop_buyer`") && m.contains("SCOPEVAULT_SHOP_BUYER_"),
        "{m}"
    );
    // Three names, one variable: each later one is reported against the first.
    let src = std::fs::read_to_string(fixture("rules/env-name-collision.fires.toml"))
        .unwrap()
        .replace(
            "credentials = [\"shop-buyer\", \"shop_buyer\"]",
            "credentials = [\"shop-buyer\", \"shop_buyer\", \"Shop.Buyer\"]",
        )
        + "[credentials.\"Shop.Buyer\"]\nkind = \"login\"\nscopes = [\"shop:login\"]\norigins = [\"https://shop.example.com\"]\n";
    let p = Policy::parse(&src, "p.toml").unwrap();
    let r = lint(&p, &LintOptions::new(date!(2026 - 01 - 01)));
    let msgs: Vec<&str> = r
        .findings()
        .iter()
        .filter(|f| f.rule.as_str() == "env-name-collision")
        .map(|f| f.message.as_str())
        .collect();
    assert_eq!(msgs.len(), 2, "{msgs:?}");
    assert!(
        msgs[0].contains("`shop-buyer` and `shop_buyer`"),
        "{msgs:?}"
    );
    assert!(
        msgs[1].contains("`shop-buyer` and `Shop.Buyer`"),
        "{msgs:?}"
    );
}

/// Credential and task names differing only in case (`shop`, `Shop`) were separate objects
/// with no finding (twenty-sixth pass, found by the attacker of hostile process environments):
/// now a warning at the later name of each pair, naming both.
#[test]
fn names_that_differ_only_in_case_are_a_warning_naming_both() {
    let (v, code) = lint_json(&fixture("rules/names-differ-only-in-case.fires.toml"));
    let found: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "names-differ-only-in-case")
        .collect();
    assert_eq!(found.len(), 2, "{v:#}");
    assert_eq!(found.iter().filter(|f| f["class"] == "warning").count(), 2);
    let cred = found
        .iter()
        .find(|f| f["credential"] == "Shop")
        .expect("the credential's");
    assert!(
        cred["message"]
            .as_str()
            .unwrap()
            .contains("`shop` and `Shop`"),
        "{cred}"
    );
    let task = found
        .iter()
        .find(|f| f["task"] == "Checkout")
        .expect("the task's");
    assert!(
        task["message"]
            .as_str()
            .unwrap()
            .contains("`checkout` and `Checkout`"),
        "{task}"
    );
    assert_eq!(code, 0, "a warning alone does not block");
}

/// Two locations with one recipient (a recipient pasted into the wrong location) had no
/// finding (twenty-ninth pass, noted by the attacker of the fleet over time and at scale):
/// the vault of that recipient can read both locations' bundles. Now a security warning at
/// each later location, naming the first; an upper-case copy is the same recipient.
#[test]
fn two_locations_sharing_a_recipient_are_a_security_warning_naming_both() {
    let text = std::fs::read_to_string(fixture("rules/shared-recipient.fires.toml")).unwrap();
    let r = "age125gmrf8vq05hsrzadtlp3ctlp7lra7q2nrkvud85y7yklqyjecwq5fet9e";
    // fra's copy in upper case, and a third location with the same recipient.
    let (head, tail) = text.split_at(text.rfind(r).unwrap());
    let text = format!("{head}{}{}", r.to_uppercase(), &tail[r.len()..])
        .replace(
            "[tasks.checkout]",
            &format!("[locations.ber]\nrecipient = \"{r}\"\n\n[tasks.checkout]"),
        )
        .replace(
            r#"locations = ["ams", "fra"]"#,
            r#"locations = ["ams", "fra", "ber"]"#,
        );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("policy.toml");
    std::fs::write(&file, &text).unwrap();
    let (v, code) = lint_json(&file);
    let found: Vec<&serde_json::Value> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "shared-recipient")
        .collect();
    assert_eq!(found.len(), 2, "{v:#}");
    let line_of = |needle: &str| 1 + text[..text.find(needle).unwrap()].matches('\n').count();
    for (f, (other, name, at)) in found.iter().zip([
        ("ams", "fra", "[locations.fra]"),
        ("ams", "ber", "[locations.ber]"),
    ]) {
        assert_eq!(f["class"], "security-warning", "{f}");
        let msg = f["message"].as_str().unwrap();
        assert!(
            msg.contains(&format!(
                "locations `{other}` and `{name}` have the same recipient"
            )),
            "{msg}"
        );
        assert_eq!(f["line"], line_of(at) + 1, "at {name}'s recipient: {f}");
    }
    assert_eq!(code, 1, "a security warning blocks by default");
}

/// An expired exception that never matched anything said "the finding it hid is reported
/// again" (twenty-second pass, found by an attacker as a CI maintainer): there was none. An
/// expired exception says that only when a finding it covers is reported; otherwise that it
/// matches no finding and can be removed.
#[test]
fn an_expired_exception_that_matches_nothing_says_so() {
    let src = std::fs::read_to_string(fixture("rules/exception-expired.fires.toml")).unwrap();
    let today = LintOptions::new(date!(2026 - 01 - 01));
    let message = |src: &str| {
        let p = Policy::parse(src, "p.toml").unwrap();
        let r = lint(&p, &today);
        r.findings()
            .iter()
            .find(|f| f.rule == RuleId::ExceptionExpired)
            .map(|f| f.message.clone())
            .unwrap()
    };
    let hid = message(&src);
    assert!(
        hid.ends_with("the finding it hid is reported again"),
        "{hid}"
    );
    // The same exception for a scope the credential does not exceed by.
    let nothing = message(&src.replace(
        "scopes = [\"shop:orders:read\"]\nreason",
        "scopes = [\"shop:orders:delete\"]\nreason",
    ));
    assert!(
        nothing.ends_with("it matches no finding, so nothing it hid is reported again: remove it"),
        "{nothing}"
    );
    assert!(!nothing.contains("the finding it hid"), "{nothing}");
}

#[test]
fn an_exception_for_an_error_rule_is_invalid() {
    let src = std::fs::read_to_string(fixture("rules/unknown-credential.fires.toml")).unwrap()
        + "\n[[exceptions]]\nrule = \"unknown-credential\"\ncredential = \"buyr\"\ntask = \"checkout\"\nreason = \"r\"\nexpires = \"2099-01-01\"\n";
    let p = Policy::parse(&src, "p.toml").unwrap();
    let r = lint(&p, &LintOptions::new(date!(2026 - 01 - 01)));
    let rules: Vec<(&str, bool)> = r
        .findings()
        .iter()
        .map(|f| (f.rule.as_str(), f.excepted))
        .collect();
    assert!(rules.contains(&("unknown-credential", false)));
    assert!(rules.contains(&("invalid-exception", false)));
}

fn vault_report(
    rule: &str,
    fires: bool,
    meta: BTreeMap<String, CredentialMeta>,
) -> Vec<&'static str> {
    let file = fixture(&format!(
        "rules/{rule}.{}.toml",
        if fires { "fires" } else { "clean" }
    ));
    let src = std::fs::read_to_string(file).unwrap();
    let p = Policy::parse(&src, "policy.toml").unwrap();
    let opts = LintOptions {
        today: date!(2026 - 06 - 01),
        vault: Some(VaultMeta { credentials: meta }),
        usage: None,
    };
    let r = lint(&p, &opts);
    assert!(r.vault_rules_ran());
    r.findings().iter().map(|f| f.rule.as_str()).collect()
}

#[test]
fn rotation_overdue_uses_the_credential_period() {
    let meta = |rotated| {
        BTreeMap::from([(
            "buyer".to_owned(),
            CredentialMeta {
                has_secret: true,
                rotated,
                both_totp_seeds: false,
                unusable_totp_seed: None,
                totp_seed: None,
                beside_seed: vec![],
                stored: None,
                fields: vec![],
            },
        )])
    };
    // rotate_every = "30d"; 45 days old → overdue; 10 days old → fine.
    assert_eq!(
        vault_report(
            "rotation-overdue",
            true,
            meta(datetime!(2026-04-17 12:00 UTC))
        ),
        ["rotation-overdue"]
    );
    assert_eq!(
        vault_report(
            "rotation-overdue",
            false,
            meta(datetime!(2026-05-22 12:00 UTC))
        ),
        Vec::<&str>::new()
    );
}

#[test]
fn missing_secret_fires_when_the_vault_lacks_the_credential() {
    assert_eq!(
        vault_report("missing-secret", true, BTreeMap::new()),
        ["missing-secret"]
    );
    let present = BTreeMap::from([(
        "buyer".to_owned(),
        CredentialMeta {
            has_secret: true,
            rotated: datetime!(2026-05-30 0:00 UTC),
            both_totp_seeds: false,
            unusable_totp_seed: None,
            totp_seed: None,
            beside_seed: vec![],
            stored: None,
            fields: vec![],
        },
    )]);
    assert_eq!(
        vault_report("missing-secret", false, present),
        Vec::<&str>::new()
    );
    // A credential stored without its secret value is missing too.
    let empty = BTreeMap::from([(
        "buyer".to_owned(),
        CredentialMeta {
            has_secret: false,
            rotated: datetime!(2026-05-30 0:00 UTC),
            both_totp_seeds: false,
            unusable_totp_seed: None,
            totp_seed: None,
            beside_seed: vec![],
            stored: None,
            fields: vec![],
        },
    )]);
    assert_eq!(
        vault_report("missing-secret", true, empty),
        ["missing-secret"]
    );
}

/// `both-totp-seeds` (seventeenth pass): a stored credential holding both seed fields is an
/// error naming it and the `cred set` that keeps one, never a value; one seed is clean. The
/// vault's side (the metadata of a real vault holding both) is
/// `vault::cli::lint_with_vault_and_doctor_report_a_credential_holding_both_totp_seeds`.
#[test]
fn both_totp_seeds_fires_when_the_vault_holds_both() {
    let meta = |both| {
        BTreeMap::from([(
            "shop-2fa".to_owned(),
            CredentialMeta {
                has_secret: true,
                rotated: datetime!(2026-05-30 0:00 UTC),
                both_totp_seeds: both,
                unusable_totp_seed: None,
                totp_seed: None,
                beside_seed: vec![],
                stored: None,
                fields: vec![],
            },
        )])
    };
    assert_eq!(
        vault_report("both-totp-seeds", true, meta(true)),
        ["both-totp-seeds"]
    );
    assert_eq!(
        vault_report("both-totp-seeds", false, meta(false)),
        Vec::<&str>::new()
    );
    shop_2fa_seed_finding_names_it_and_the_fix(
        RuleId::BothTotpSeeds,
        meta(true),
        &["`shop-2fa`", "`totp_seed`", "`otpauth`", "fetch"],
    );
}

/// The first finding of `rule` over its `fires` fixture with vault metadata `meta` is an
/// error whose message holds each of `parts` and whose help names `cred set shop-2fa
/// --secret otpauth`.
fn shop_2fa_seed_finding_names_it_and_the_fix(
    rule: RuleId,
    meta: BTreeMap<String, CredentialMeta>,
    parts: &[&str],
) {
    let file = fixture(&format!("rules/{}.fires.toml", rule.as_str()));
    let src = std::fs::read_to_string(file).unwrap();
    let p = Policy::parse(&src, "policy.toml").unwrap();
    let opts = LintOptions {
        today: date!(2026 - 06 - 01),
        vault: Some(VaultMeta { credentials: meta }),
        usage: None,
    };
    let r = lint(&p, &opts);
    let f = &r.findings()[0];
    assert_eq!(f.rule, rule);
    assert_eq!(f.rule.class().as_str(), "error");
    for part in parts {
        assert!(f.message.contains(part), "{part}: {}", f.message);
    }
    assert!(
        f.help
            .contains("scopevault cred set shop-2fa --secret otpauth"),
        "{}",
        f.help
    );
}

/// `unusable-totp-seed` (twenty-first pass, found by the twentieth pass's review): a stored
/// credential holding a TOTP seed that gives no code is an error naming it, the field, why,
/// and the `cred set` that replaces it; the reason is what the metadata says (the vault
/// writes a `TotpError`'s text, never the seed). A usable seed is clean. The vault's side is
/// `vault::policy::lint_with_vault_reports_a_stored_totp_seed_that_gives_no_code`.
#[test]
fn unusable_totp_seed_fires_when_the_vault_holds_a_seed_that_gives_no_code() {
    use scopevault::policy::UnusableTotpSeed;
    let meta = |unusable: Option<UnusableTotpSeed>| {
        BTreeMap::from([(
            "shop-2fa".to_owned(),
            CredentialMeta {
                has_secret: true,
                rotated: datetime!(2026-05-30 0:00 UTC),
                both_totp_seeds: false,
                unusable_totp_seed: unusable,
                totp_seed: Some("otpauth".to_owned()),
                beside_seed: vec![],
                stored: None,
                fields: vec![],
            },
        )])
    };
    let steam = UnusableTotpSeed {
        field: "otpauth".to_owned(),
        why: "the otpauth URI has an `encoder` parameter".to_owned(),
    };
    let rule = "unusable-totp-seed";
    assert_eq!(vault_report(rule, true, meta(Some(steam.clone()))), [rule]);
    assert_eq!(vault_report(rule, false, meta(None)), Vec::<&str>::new());
    shop_2fa_seed_finding_names_it_and_the_fix(
        RuleId::UnusableTotpSeed,
        meta(Some(steam)),
        &[
            "`shop-2fa`",
            "`otpauth`",
            "`encoder` parameter",
            "every fetch of it fails",
            "`publish`",
        ],
    );
}

/// `vault-differs-from-policy` (twentieth pass, found by attacking who gets what): a vault
/// entry stored with another kind, scopes or origins than the policy declares is a warning
/// pointing at what differs first (the `kind`, else the first scope), naming the entry's kind
/// and never its scopes or origins; an entry as declared (its lists in another order or
/// repeated) is clean, and so is one whose stored form is not known.
#[test]
fn vault_differs_from_policy_fires_when_the_entry_is_stored_otherwise() {
    let meta = |kind, scopes: &[&str], origins: &[&str]| {
        BTreeMap::from([(
            "shop-2fa".to_owned(),
            CredentialMeta {
                has_secret: true,
                rotated: datetime!(2026-05-30 0:00 UTC),
                both_totp_seeds: false,
                unusable_totp_seed: None,
                totp_seed: None,
                beside_seed: vec![],
                stored: Some(StoredAs {
                    kind,
                    scopes: scopes.iter().map(|s| s.to_string()).collect(),
                    origins: origins.iter().map(|s| s.to_string()).collect(),
                }),
                fields: vec![],
            },
        )])
    };
    let shop = ["https://shop.example.com"];
    let rule = "vault-differs-from-policy";
    let login = meta(CredentialKind::Login, &["admin:*"], &shop);
    assert_eq!(vault_report(rule, true, login.clone()), [rule]);
    let wider = meta(CredentialKind::Totp, &["shop:login", "admin:*"], &shop);
    assert_eq!(vault_report(rule, true, wider.clone()), [rule]);
    let elsewhere = meta(
        CredentialKind::Totp,
        &["shop:login"],
        &["https://evil.example"],
    );
    assert_eq!(vault_report(rule, true, elsewhere), [rule]);
    let declared = meta(CredentialKind::Totp, &["shop:login", "shop:login"], &shop);
    assert_eq!(vault_report(rule, false, declared), Vec::<&str>::new());
    let mut unknown = login.clone();
    unknown.get_mut("shop-2fa").unwrap().stored = None;
    assert_eq!(vault_report(rule, true, unknown), Vec::<&str>::new());

    let src = std::fs::read_to_string(fixture(&format!("rules/{rule}.fires.toml"))).unwrap();
    let p = Policy::parse(&src, "policy.toml").unwrap();
    let report = |credentials| {
        let opts = LintOptions {
            today: date!(2026 - 06 - 01),
            vault: Some(VaultMeta { credentials }),
            usage: None,
        };
        lint(&p, &opts)
    };
    let r = report(login);
    let f = &r.findings()[0];
    assert_eq!(f.rule, RuleId::VaultDiffersFromPolicy);
    assert_eq!(f.class.as_str(), "warning");
    assert_eq!(f.credential.as_deref(), Some("shop-2fa"));
    assert_eq!(src.lines().nth(f.line - 1).unwrap(), "kind = \"totp\"");
    for part in [
        "`shop-2fa`",
        "kind `login`",
        "scopes",
        "kind `totp`",
        "never the seed",
    ] {
        assert!(f.message.contains(part), "{}", f.message);
    }
    assert!(!f.message.contains("admin"), "{}", f.message);
    assert!(f.help.contains("scopevault policy apply"), "{}", f.help);
    let r = report(wider);
    let f = &r.findings()[0];
    assert_eq!(
        src.lines().nth(f.line - 1).unwrap(),
        "scopes = [\"shop:login\"]"
    );
    assert!(
        f.message
            .contains("differs from its declaration in scopes:"),
        "{}",
        f.message
    );
}

/// `totp-seed-handed-out` (twentieth pass, found by attacking who gets what): a credential
/// declared with a kind other than `totp` whose vault entry holds a TOTP seed hands the seed
/// itself to its runners (`get --field totp_seed` printed it). A warning pointing at its
/// `kind`, naming the credential and the seed's field; the same seed in a credential declared
/// `totp` is clean.
#[test]
fn totp_seed_handed_out_fires_for_a_seed_in_a_credential_not_declared_totp() {
    let rule = "totp-seed-handed-out";
    let meta = |name: &str, seed: Option<&str>| {
        (
            name.to_owned(),
            CredentialMeta {
                has_secret: true,
                rotated: datetime!(2026-05-30 0:00 UTC),
                both_totp_seeds: false,
                unusable_totp_seed: None,
                totp_seed: seed.map(str::to_owned),
                beside_seed: vec![],
                stored: None,
                fields: vec![],
            },
        )
    };
    let fires = BTreeMap::from([meta("shop-login", Some("totp_seed"))]);
    assert_eq!(vault_report(rule, true, fires.clone()), [rule]);
    let uri = BTreeMap::from([meta("shop-login", Some("otpauth"))]);
    assert_eq!(vault_report(rule, true, uri), [rule]);
    let no_seed = BTreeMap::from([meta("shop-login", None)]);
    assert_eq!(vault_report(rule, true, no_seed), Vec::<&str>::new());
    let clean = BTreeMap::from([
        meta("shop-login", None),
        meta("shop-2fa", Some("totp_seed")),
    ]);
    assert_eq!(vault_report(rule, false, clean), Vec::<&str>::new());

    let src = std::fs::read_to_string(fixture(&format!("rules/{rule}.fires.toml"))).unwrap();
    let p = Policy::parse(&src, "policy.toml").unwrap();
    let opts = LintOptions {
        today: date!(2026 - 06 - 01),
        vault: Some(VaultMeta { credentials: fires }),
        usage: None,
    };
    let r = lint(&p, &opts);
    let f = &r.findings()[0];
    assert_eq!(f.rule, RuleId::TotpSeedHandedOut);
    assert_eq!(f.class.as_str(), "warning");
    assert!(f.rule.info().exceptable);
    assert_eq!(f.credential.as_deref(), Some("shop-login"));
    assert_eq!(src.lines().nth(f.line - 1).unwrap(), "kind = \"login\"");
    for part in [
        "`shop-login`",
        "kind `login`",
        "`totp_seed`",
        "the seed itself is handed out",
        "kind = \"totp\"",
    ] {
        assert!(f.message.contains(part), "{}", f.message);
    }
    assert!(f.help.contains("kind = \"totp\""), "{}", f.help);
}

#[test]
fn vault_rules_do_not_run_without_vault_metadata() {
    let src = std::fs::read_to_string(fixture("rules/missing-secret.fires.toml")).unwrap();
    let p = Policy::parse(&src, "policy.toml").unwrap();
    let r = lint(&p, &LintOptions::new(date!(2026 - 06 - 01)));
    assert!(!r.vault_rules_ran());
    assert!(r.findings().is_empty());
}

#[test]
fn the_example_policy_has_no_errors_only_warnings() {
    let (v, code) = lint_json(&common_lint::root().join("examples/policy.toml"));
    assert_eq!(v["summary"]["error"], 0, "{v:#}");
    assert!(v["summary"]["security-warning"].as_u64().unwrap() > 0);
    assert!(v["summary"]["warning"].as_u64().unwrap() > 0);
    assert_eq!(v["summary"]["excepted"], 1);
    assert_eq!(code, 1, "security warnings block by default");
    // The clean monitor has no finding.
    assert!(v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["task"] != "checkout-flow" && f["task"] != "search-api"));
}

#[test]
fn every_rule_is_documented_with_its_class() {
    let doc = std::fs::read_to_string(common_lint::root().join("docs/lint-rules.md")).unwrap();
    for r in RULES {
        let head = format!("### `{}` ({}", r.id, r.class.as_str());
        assert!(doc.contains(&head), "docs/lint-rules.md lacks `{head}…`");
        for part in ["**What**", "**Why**", "**Example**", "**Fix**"] {
            let section = doc
                .split(&head)
                .nth(1)
                .unwrap()
                .split("\n### ")
                .next()
                .unwrap();
            assert!(section.contains(part), "{}: no {part}", r.id);
        }
    }
}

/// Mutation testing found this gap: the lint reuses one needs-set across tasks, and nothing
/// checked that it is emptied between them. A task that needs nothing must still see the whole
/// grant of its credential as excess, even after a task that needed all of it.
#[test]
fn each_task_is_judged_on_its_own_needs_not_the_previous_tasks() {
    let src = r#"
version = 1
[credentials.shared]
kind = "token"
scopes = ["shop:orders:read", "shop:catalog:*"]

[tasks.a-needs-everything]
needs = ["shop:orders:read", "shop:catalog:*"]
credentials = ["shared"]
runners = { users = ["1001"] }

[tasks.b-needs-little]
needs = ["shop:status"]
credentials = ["shared"]
runners = { users = ["1001"] }
"#;
    let p = Policy::parse(src, "policy.toml").unwrap();
    let r = lint(
        &p,
        &LintOptions {
            today: date!(2026 - 06 - 01),
            vault: None,
            usage: None,
        },
    );
    let excess: Vec<(&str, &str)> = r
        .findings()
        .iter()
        .filter(|f| f.rule == RuleId::ScopeExceedsTask)
        .map(|f| (f.task.as_deref().unwrap(), f.message.as_str()))
        .collect();
    assert_eq!(excess.len(), 1, "{excess:?}");
    assert_eq!(excess[0].0, "b-needs-little");
    assert!(
        excess[0].1.contains("shop:orders:read") && excess[0].1.contains("shop:catalog:*"),
        "{}",
        excess[0].1
    );
}

/// Issue 14 item 18: one misspelt credential name gives one finding. Before, it also gave a
/// `missing-scope` (suggesting to add the scope to the credential that does not exist) and an
/// `unused-credential` for the credential meant.
#[test]
fn one_misspelt_credential_gives_one_finding() {
    let src = r#"version = 1
[credentials.buyer]
kind = "login"
scopes = ["shop:login"]

[tasks.checkout]
needs = ["shop:login"]
credentials = ["buyr"]
runners = { users = ["checkpoint"] }
"#;
    let p = Policy::parse(src, "p.toml").unwrap();
    let r = lint(&p, &LintOptions::new(date!(2026 - 01 - 01)));
    let found: Vec<&str> = r.findings().iter().map(|f| f.rule.as_str()).collect();
    assert_eq!(found, vec!["unknown-credential"], "{:#?}", r.findings());
    assert!(r.findings()[0].help.contains("did you mean `buyer`"));
    // Fixed, the policy is clean: the suppressed findings were only consequences.
    let p = Policy::parse(&src.replace("\"buyr\"", "\"buyer\""), "p.toml").unwrap();
    let r = lint(&p, &LintOptions::new(date!(2026 - 01 - 01)));
    assert_eq!(r.findings().len(), 0, "{:#?}", r.findings());
    // A need no declared credential of the task could grant is still reported once the typo
    // is fixed; and a credential that is unused for another reason (not the one a typo
    // meant) is still reported.
    let src2 = src.to_owned() + "[credentials.spare]\nkind = \"login\"\nscopes = [\"x:y\"]\n";
    let p = Policy::parse(&src2, "p.toml").unwrap();
    let r = lint(&p, &LintOptions::new(date!(2026 - 01 - 01)));
    let found: Vec<&str> = r.findings().iter().map(|f| f.rule.as_str()).collect();
    assert!(found.contains(&"unused-credential"), "{found:?}");
    assert_eq!(
        r.findings()
            .iter()
            .filter(|f| f.rule == RuleId::UnusedCredential)
            .map(|f| f.credential.as_deref().unwrap())
            .collect::<Vec<_>>(),
        vec!["spare"]
    );
}

/// Every rule's heading in docs/lint-rules.md has an explicit `<a id="RULE-ID"></a>` on the
/// line before it, exactly one per rule: GitHub makes a heading's anchor from its whole text
/// (`scope-exceeds-task-security-warning-security-severity-65`), so links to a rule landed at
/// the top of the page (found by a CI maintainer's review, fifteenth pass).
#[test]
fn every_rule_has_exactly_one_explicit_anchor_before_its_heading() {
    let doc = std::fs::read_to_string(common_lint::root().join("docs/lint-rules.md")).unwrap();
    let lines: Vec<&str> = doc.lines().collect();
    for r in RULES {
        let anchor = format!("<a id=\"{}\"></a>", r.id);
        let at: Vec<usize> = lines
            .iter()
            .enumerate()
            .filter(|(_, l)| l.contains(&anchor))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(at.len(), 1, "{}: {} anchors", r.id, at.len());
        assert_eq!(
            lines[at[0]], anchor,
            "{}: the anchor is a line of its own",
            r.id
        );
        assert!(
            lines[at[0] + 1].starts_with(&format!("### `{}` (", r.id)),
            "{}: the line after the anchor is {:?}",
            r.id,
            lines[at[0] + 1]
        );
    }
}

/// Every SARIF rule's `helpUri`, and the driver's `informationUri`, pointed into
/// `github.com/scopevault/scopevault`, a repository no document names (twenty-eighth pass,
/// found by the twenty-eighth pass's attacker of the lint in CI). The SARIF carries each
/// rule's help in full (`help.text`, `help.markdown`, escaped as messages are) and links to no
/// address: neither key is written.
#[test]
fn sarif_rules_carry_their_help_and_link_to_no_address() {
    let dir = tempfile::tempdir().unwrap();
    let name = common_lint::copy_in(
        dir.path(),
        &common_lint::fixture("clean.toml"),
        "policy.toml",
    );
    let out = common_lint::scopevault(dir.path(), &["lint", &name, "--format", "sarif"]);
    let sarif: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let driver = &sarif["runs"][0]["tool"]["driver"];
    assert!(driver.get("informationUri").is_none(), "{driver}");
    // A rule's SARIF plain text read back: `\\x` is `x`; braces are as they are (a rule's
    // text is a multiformatMessageString, §3.12, never filled from arguments).
    let unescape = |t: &str| {
        let mut out = String::new();
        let mut cs = t.chars().peekable();
        while let Some(c) = cs.next() {
            match c {
                '\\' => out.push(cs.next().unwrap()),
                '[' | ']' => panic!("an unescaped bracket in {t}"),
                c => out.push(c),
            }
        }
        out
    };
    let rules = driver["rules"].as_array().unwrap();
    assert_eq!(rules.len(), RULES.len());
    for (rule, r) in rules.iter().zip(RULES) {
        assert_eq!(rule["id"], r.id);
        assert!(rule.get("helpUri").is_none(), "{rule}");
        let text = rule["help"]["text"].as_str().unwrap();
        assert_eq!(
            unescape(text),
            format!("{} {} Fix: {}", r.short, r.full, r.help),
            "{}",
            r.id
        );
        let markdown = rule["help"]["markdown"].as_str().unwrap();
        assert!(markdown.starts_with("**"), "{markdown}");
        assert!(markdown.contains("**Fix:** "), "{markdown}");
        for t in [
            text,
            markdown,
            rule["fullDescription"]["text"].as_str().unwrap(),
            rule["shortDescription"]["text"].as_str().unwrap(),
        ] {
            assert!(
                !t.contains("{{") && !t.contains("}}"),
                "a doubled brace: {t}"
            );
        }
    }
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("github.com/scopevault"),
        "the SARIF names the repository no document names"
    );
}

/// `env-name-collision` saw only two credentials whose names give one variable part (twenty-
/// second pass's review): `shop`'s field `buyer-username` and `shop-buyer`'s `username` are
/// both `SCOPEVAULT_SHOP_BUYER_USERNAME`, and two fields of one credential (`client-id`,
/// `client_id`) one variable too, and `exec` refuses the command after the fetch. Fields are
/// not in the policy: without the vault these are not seen; with it (`--with-vault`) they are
/// reported, naming the fields and the variable, never a value. A `totp` credential hands over
/// its code, not its seed.
#[test]
fn env_name_collision_with_the_vault_sees_fields() {
    let src = r#"version = 1
[credentials.shop-buyer]
kind = "login"
scopes = ["shop:login"]
[credentials.shop]
kind = "generic"
scopes = ["shop:login"]
[credentials.api]
kind = "generic"
scopes = ["shop:login"]
[credentials.api-totp]
kind = "totp"
scopes = ["shop:login"]
[tasks.t]
needs = ["shop:login"]
credentials = ["shop-buyer", "shop", "api", "api-totp"]
runners = { users = ["checkpoint"] }
"#;
    let p = Policy::parse(src, "policy.toml").unwrap();
    let meta = |fields: &[&str]| CredentialMeta {
        has_secret: true,
        rotated: datetime!(2026-05-30 0:00 UTC),
        both_totp_seeds: false,
        unusable_totp_seed: None,
        totp_seed: None,
        beside_seed: vec![],
        stored: None,
        fields: fields.iter().map(|f| f.to_string()).collect(),
    };
    let vault = VaultMeta {
        credentials: BTreeMap::from([
            ("shop-buyer".to_owned(), meta(&["username", "password"])),
            ("shop".to_owned(), meta(&["buyer-username", "token"])),
            // `api-totp` hands over `totp_code` (meeting `api`'s `totp-totp-code`), never its
            // seed (which `api`'s `totp-totp-seed` would meet).
            (
                "api".to_owned(),
                meta(&["client-id", "client_id", "totp-totp-code", "totp-totp-seed"]),
            ),
            ("api-totp".to_owned(), meta(&["totp_seed"])),
        ]),
    };
    let collisions = |vault: Option<VaultMeta>| {
        let opts = LintOptions {
            today: date!(2026 - 06 - 01),
            vault,
            usage: None,
        };
        lint(&p, &opts)
            .findings()
            .iter()
            .filter(|f| f.rule == RuleId::EnvNameCollision)
            .map(|f| (f.message.clone(), f.detail.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    assert_eq!(collisions(None), vec![], "fields are not in the policy");
    let found = collisions(Some(vault));
    let vars: Vec<&str> = found.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(
        vars,
        [
            "SCOPEVAULT_SHOP_BUYER_USERNAME",
            "SCOPEVAULT_API_CLIENT_ID",
            "SCOPEVAULT_API_TOTP_TOTP_CODE"
        ],
        "{found:#?}"
    );
    assert_eq!(
        found[0].0,
        "task `t` lists credentials `shop-buyer` and `shop`, whose fields `shop-buyer.username` and `shop.buyer-username` (stored in the vault) `scopevault exec` hands over as one environment variable, SCOPEVAULT_SHOP_BUYER_USERNAME: exec refuses to run the command, after both were fetched"
    );
    assert!(
        found[1]
            .0
            .starts_with("credential `api` holds fields `client-id` and `client_id` in the vault"),
        "{}",
        found[1].0
    );
}

/// A field whose `exec` variable is one of scopevault's own (credential `identity`'s `file` as
/// `SCOPEVAULT_IDENTITY_FILE`, `state`'s `dir` as `SCOPEVAULT_STATE_DIR`) linted clean, and
/// `exec` replaced the caller's value with it (twenty-third pass, found by the twenty-third
/// pass's attacker of this pass's fixes). With the vault it is an `env-name-collision`, naming
/// the credential, field and variable; without it the fields are unknown, so nothing is said.
#[test]
fn a_field_named_as_scopevaults_own_variable_is_an_env_name_collision_with_the_vault() {
    let src = r#"version = 1
[credentials.identity]
kind = "generic"
scopes = ["shop:login"]
[credentials.state]
kind = "generic"
scopes = ["shop:login"]
[tasks.t]
needs = ["shop:login"]
credentials = ["identity", "state"]
runners = { users = ["checkpoint"] }
"#;
    let p = Policy::parse(src, "policy.toml").unwrap();
    let meta = |fields: &[&str]| CredentialMeta {
        has_secret: true,
        rotated: datetime!(2026-05-30 0:00 UTC),
        both_totp_seeds: false,
        unusable_totp_seed: None,
        totp_seed: None,
        beside_seed: vec![],
        stored: None,
        fields: fields.iter().map(|f| f.to_string()).collect(),
    };
    let vault = VaultMeta {
        credentials: BTreeMap::from([
            ("identity".to_owned(), meta(&["file", "token"])),
            ("state".to_owned(), meta(&["dir"])),
        ]),
    };
    let collisions = |vault: Option<VaultMeta>| {
        let opts = LintOptions {
            today: date!(2026 - 06 - 01),
            vault,
            usage: None,
        };
        lint(&p, &opts)
            .findings()
            .iter()
            .filter(|f| f.rule == RuleId::EnvNameCollision)
            .map(|f| (f.message.clone(), f.detail.clone().unwrap_or_default()))
            .collect::<Vec<_>>()
    };
    assert_eq!(collisions(None), vec![], "fields are not in the policy");
    let found = collisions(Some(vault));
    let vars: Vec<&str> = found.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(
        vars,
        ["SCOPEVAULT_IDENTITY_FILE", "SCOPEVAULT_STATE_DIR"],
        "{found:#?}"
    );
    assert_eq!(
        found[0].0,
        "credential `identity` holds field `file` in the vault, which `scopevault exec` hands over as SCOPEVAULT_IDENTITY_FILE for task `t`: a variable scopevault itself reads or sets, which it would replace in the command's environment; exec refuses to run the command, before anything is fetched"
    );
}

/// A `totp` credential's code and seconds left are made at each fetch, not stored: the
/// collision finding called `api-totp.totp_code` "(stored in the vault)" (twenty-third pass,
/// found by the twenty-third pass's attacker of this pass's fixes).
#[test]
fn a_totp_codes_variable_in_a_collision_is_called_generated_not_stored() {
    let src = r#"version = 1
[credentials.api]
kind = "generic"
scopes = ["shop:login"]
[credentials.api-totp]
kind = "totp"
scopes = ["shop:login"]
[credentials.otp]
kind = "totp"
scopes = ["shop:login"]
[tasks.t]
needs = ["shop:login"]
credentials = ["api", "api-totp", "otp"]
runners = { users = ["checkpoint"] }
"#;
    let p = Policy::parse(src, "policy.toml").unwrap();
    let meta = |fields: &[&str]| CredentialMeta {
        has_secret: true,
        rotated: datetime!(2026-05-30 0:00 UTC),
        both_totp_seeds: false,
        unusable_totp_seed: None,
        totp_seed: None,
        beside_seed: vec![],
        stored: None,
        fields: fields.iter().map(|f| f.to_string()).collect(),
    };
    let vault = VaultMeta {
        credentials: BTreeMap::from([
            ("api".to_owned(), meta(&["totp-totp-code"])),
            ("api-totp".to_owned(), meta(&["totp_seed"])),
            // A stored field meeting the credential's own generated code.
            ("otp".to_owned(), meta(&["totp_seed", "totp-seconds-left"])),
        ]),
    };
    let opts = LintOptions {
        today: date!(2026 - 06 - 01),
        vault: Some(vault),
        usage: None,
    };
    let found: Vec<String> = lint(&p, &opts)
        .findings()
        .iter()
        .filter(|f| f.rule == RuleId::EnvNameCollision)
        .map(|f| f.message.clone())
        .collect();
    assert_eq!(found.len(), 2, "{found:#?}");
    assert_eq!(
        found[0],
        "task `t` lists credentials `api` and `api-totp`, whose fields `api.totp-totp-code` (stored in the vault) and `api-totp.totp_code` (its current TOTP code, generated at each fetch, not stored) `scopevault exec` hands over as one environment variable, SCOPEVAULT_API_TOTP_TOTP_CODE: exec refuses to run the command, after both were fetched"
    );
    assert_eq!(
        found[1],
        "credential `otp` holds field `totp-seconds-left` in the vault, which `scopevault exec` hands over as SCOPEVAULT_OTP_TOTP_SECONDS_LEFT for task `t`, the variable of the seconds its TOTP code has left, generated at each fetch, not stored: exec refuses to run the command, after it was fetched"
    );
}
