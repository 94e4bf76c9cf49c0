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
