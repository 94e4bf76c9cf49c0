//! Shared helpers of the lint tests: run the real binary in a fresh temp dir.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// tests/fixtures/policy/…
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/policy")
        .join(rel)
}

/// The repository root (for examples/).
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `scopevault ARGS…` in `dir`, with no colour, no vault from the environment.
pub fn scopevault(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_scopevault"))
        .args(args)
        .current_dir(dir)
        .env_remove("SCOPEVAULT_VAULT")
        .env_remove("SCOPEVAULT_SOCKET")
        .env("NO_COLOR", "1")
        .output()
        .expect("run scopevault")
}

/// Copy a fixture into `dir` under `name` and return the name.
pub fn copy_in(dir: &Path, from: &Path, name: &str) -> String {
    std::fs::copy(from, dir.join(name)).expect("copy fixture");
    name.to_owned()
}

/// `lint FILE --format json` → the parsed report and the exit code.
pub fn lint_json(file: &Path) -> (serde_json::Value, i32) {
    let dir = tempfile::tempdir().unwrap();
    let name = copy_in(dir.path(), file, "policy.toml");
    let out = scopevault(dir.path(), &["lint", &name, "--format", "json"]);
    let code = out.status.code().unwrap_or(-1);
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON on stdout ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (v, code)
}

/// The (rule, excepted) pairs of a JSON report.
pub fn rules_of(v: &serde_json::Value) -> Vec<(String, bool)> {
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap().to_owned(),
                f["excepted"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Every result's `primaryLocationLineHash` in a SARIF report (what GitHub code scanning
/// matches alerts by), with its rule id.
pub fn sarif_fingerprints(sarif: &serde_json::Value) -> Vec<(String, String)> {
    sarif["runs"][0]["results"]
        .as_array()
        .unwrap_or_else(|| panic!("no results: {sarif}"))
        .iter()
        .map(|r| {
            (
                r["ruleId"].as_str().unwrap().to_owned(),
                r["partialFingerprints"]["primaryLocationLineHash"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect()
}

/// The (classname, name) of every test case of a JUnit report, attributes as written.
pub fn junit_cases(xml: &str) -> Vec<(String, String)> {
    let attr = |case: &str, name: &str| -> String {
        let key = format!(" {name}=\"");
        let at = case
            .find(&key)
            .unwrap_or_else(|| panic!("no {name} in {case}"))
            + key.len();
        case[at..][..case[at..].find('"').unwrap()].to_owned()
    };
    xml.split("<testcase")
        .skip(1)
        .map(|case| (attr(case, "classname"), attr(case, "name")))
        .collect()
}

/// The items of `items` that occur more than once.
pub fn repeated<T: Ord + Clone>(items: &[T]) -> Vec<T> {
    let mut sorted = items.to_vec();
    sorted.sort();
    let mut out: Vec<T> = sorted
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| w[0].clone())
        .collect();
    out.dedup();
    out
}
