//! `scopevault lint` as a CI job sees it: exit codes, `--deny`, `--output`, colour, and every
//! kind of bad input giving exit 2 with a message that points at the place, never a panic.

use crate::common::lint as common_lint;
use crate::common::skip;

use std::path::Path;
use std::process::Output;

use common_lint::{copy_in, fixture, root, scopevault};

fn lint_file(file: &Path, extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    let name = copy_in(dir.path(), file, "policy.toml");
    let mut args = vec!["lint", name.as_str()];
    args.extend_from_slice(extra);
    scopevault(dir.path(), &args)
}

fn lint_text(text: &[u8], extra: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("policy.toml"), text).unwrap();
    let mut args = vec!["lint", "policy.toml"];
    args.extend_from_slice(extra);
    scopevault(dir.path(), &args)
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn assert_code(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
    assert!(!stderr(o).contains("panicked"), "{}", stderr(o));
}

#[test]
fn clean_policy_exits_0_with_a_summary_line() {
    let o = lint_file(&fixture("clean.toml"), &[]);
    assert_code(&o, 0);
    assert_eq!(
        stdout(&o),
        "policy.toml: 0 errors, 0 security warnings, 0 warnings, 0 suggestions\n"
    );
}

#[test]
fn security_warnings_block_by_default_and_deny_error_lets_them_pass() {
    let example = root().join("examples/policy.toml");
    assert_code(&lint_file(&example, &[]), 1);
    assert_code(&lint_file(&example, &["--deny", "error"]), 0);
}

#[test]
fn deny_warning_makes_warnings_block() {
    let f = fixture("rules/task-without-runners.fires.toml");
    assert_code(&lint_file(&f, &[]), 0);
    assert_code(&lint_file(&f, &["--deny", "warning"]), 1);
}

#[test]
fn deny_suggestion_makes_everything_block() {
    let f = fixture("rules/undeclared-scope.fires.toml");
    assert_code(&lint_file(&f, &["--deny", "warning"]), 0);
    assert_code(&lint_file(&f, &["--deny", "suggestion"]), 1);
}

#[test]
fn errors_always_block() {
    let f = fixture("rules/unknown-credential.fires.toml");
    assert_code(&lint_file(&f, &["--deny", "error"]), 1);
}

#[test]
fn text_points_at_file_line_col_with_the_source_line_and_a_marker() {
    let o = lint_file(&fixture("rules/unknown-credential.fires.toml"), &[]);
    let out = stdout(&o);
    let want =
        "error[unknown-credential]: task `checkout` lists credential `buyr`, which is not declared
  --> policy.toml:11:25
   |
11 | credentials = [\"buyer\", \"buyr\"]
   |                         ^^^^^^
   = help: did you mean `buyer`?";
    assert!(out.starts_with(want), "{out}");
    assert!(out.ends_with("policy.toml: 1 error, 0 security warnings, 0 warnings, 0 suggestions\n"));
}

#[test]
fn no_colour_when_not_a_terminal_even_without_no_color() {
    let dir = tempfile::tempdir().unwrap();
    let name = copy_in(dir.path(), &root().join("examples/policy.toml"), "p.toml");
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_scopevault"))
        .args(["lint", &name])
        .current_dir(dir.path())
        .env_remove("NO_COLOR")
        .env_remove("SCOPEVAULT_VAULT")
        .output()
        .unwrap();
    assert!(!stdout(&o).contains('\x1b'), "{}", stdout(&o));
    // git runs hooks with their stdout sent to stderr.
    let all = stdout(&o) + &stderr(&o);
    assert!(
        all.contains("security-warning[scope-exceeds-task]"),
        "{all}"
    );
}

#[test]
fn output_writes_the_report_to_a_file_and_the_summary_to_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let name = copy_in(
        dir.path(),
        &root().join("examples/policy.toml"),
        "policy.toml",
    );
    let o = scopevault(
        dir.path(),
        &["lint", &name, "--format", "sarif", "--output", "out.sarif"],
    );
    assert_code(&o, 1);
    assert_eq!(stdout(&o), "");
    assert!(stderr(&o).contains("policy.toml: 0 errors, 6 security warnings"));
    let sarif: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("out.sarif")).unwrap())
            .unwrap();
    assert_eq!(sarif["version"], "2.1.0");
}

#[test]
fn help_documents_the_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let o = scopevault(dir.path(), &["lint", "--help"]);
    assert_code(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("0  nothing blocking"), "{out}");
    assert!(out.contains("2  usage, parse or I/O error"), "{out}");
}

// ---- bad input: exit 2, the place, no panic --------------------------------------------------

fn bad(text: &[u8], want: &[&str]) {
    let o = lint_text(text, &[]);
    assert_code(&o, 2);
    let all = stdout(&o) + &stderr(&o);
    for w in want {
        assert!(all.contains(w), "want {w:?} in:\n{all}");
    }
}

#[test]
fn malformed_toml() {
    bad(b"version = 1\n[tasks.a\n", &["policy.toml:2:", "-->", "^"]);
}

#[test]
fn wrong_type() {
    bad(
        b"version = 1\n[credentials.a]\nkind = \"login\"\nscopes = \"shop:login\"\n",
        &[
            "policy.toml:4:10",
            "invalid type: string \"shop:login\", expected a sequence",
            "4 | scopes = \"shop:login\"",
        ],
    );
}

#[test]
fn unknown_key_with_did_you_mean() {
    bad(
        b"version = 1\n[credentials.a]\nkind = \"login\"\nscope = [\"x\"]\n",
        &[
            "policy.toml:4:1",
            "unknown key `scope`; did you mean `scopes`?",
        ],
    );
}

/// Twenty-second pass, found by an attacker as a CI maintainer: a credential `..`, `.`, `_a`
/// (and a task `.`) linted clean, exit 0, while `policy apply` refused the credential names (a
/// vault's credential names start with a letter or digit): a policy green in CI could not be
/// applied. One rule now, at the name's place.
#[test]
fn a_name_not_starting_with_a_letter_or_digit_is_refused_at_its_place() {
    for (table, name) in [
        ("credentials", ".."),
        ("credentials", "."),
        ("credentials", "_a"),
        ("tasks", "."),
        ("tasks", "_t"),
    ] {
        let body = if table == "tasks" {
            "needs = [\"shop:login\"]\ncredentials = []\nrunners = { users = [\"checkpoint\"] }\n"
        } else {
            "kind = \"login\"\nscopes = [\"shop:login\"]\n"
        };
        let text = format!("version = 1\n[{table}.\"{name}\"]\n{body}");
        bad(
            text.as_bytes(),
            &[
                "policy.toml:2:",
                &format!("name \"{name}\""),
                "starting with a letter or digit",
            ],
        );
    }
}

#[test]
fn scope_with_bad_characters_is_reported_as_a_finding_and_exits_2() {
    bad(
        b"version = 1\n[credentials.a]\nkind = \"login\"\nscopes = [\"shop:Orders\"]\n",
        &[
            "error[invalid-scope]: invalid scope `shop:Orders` in credential `a`",
            "policy.toml:4:11",
            "invalid character 'O'",
        ],
    );
}

#[test]
fn implies_cycle() {
    bad(
        b"version = 1\n[scopes.\"a\"]\nimplies = [\"b\"]\n[scopes.\"b\"]\nimplies = [\"a\"]\n",
        &[
            "error[implies-cycle]",
            "`a` \u{2192} `b` \u{2192} `a`",
            "policy.toml:3:12",
        ],
    );
}

#[test]
fn exception_date_in_the_wrong_format() {
    bad(
        b"version = 1\n[[exceptions]]\nrule = \"wildcard-scope\"\nreason = \"r\"\nexpires = \"01.03.2027\"\n",
        &["policy.toml:5:11", "invalid date", "YYYY-MM-DD"],
    );
}

#[test]
fn empty_file() {
    bad(b"", &["policy.toml:1:1", "the policy is empty"]);
}

#[test]
fn non_utf8_file() {
    bad(
        b"version = 1\n# caf\xe9\n",
        &["policy.toml:2:6", "not valid UTF-8"],
    );
}

#[test]
fn fifty_megabyte_file_is_refused_before_reading_it() {
    let dir = tempfile::tempdir().unwrap();
    let f = std::fs::File::create(dir.path().join("policy.toml")).unwrap();
    // Sparse: the test costs no disk, and a reader that read it all would be slow to notice.
    f.set_len(50 * 1024 * 1024).unwrap();
    let o = scopevault(dir.path(), &["lint", "policy.toml"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("larger than the 16777216-byte limit"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let o = scopevault(dir.path(), &["lint", "nope.toml"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("nope.toml: cannot read the policy"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn directory_instead_of_a_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("policy.toml")).unwrap();
    let o = scopevault(dir.path(), &["lint"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("policy.toml: cannot read the policy"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn json_is_still_written_for_an_invalid_scope() {
    let o = lint_text(
        b"version = 1\n[tasks.t]\nneeds = [\"a::b\"]\nrunners = { users = [\"u\"] }\n",
        &["--format", "json"],
    );
    assert_code(&o, 2);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["findings"][0]["rule"], "invalid-scope");
    assert_eq!(v["findings"][0]["line"], 3);
    assert_eq!(v["findings"][0]["column"], 10);
}

#[test]
fn the_example_git_hook_refuses_a_blocking_policy_and_accepts_a_clean_one() {
    let git_ok = std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !git_ok {
        return skip::skip("git is not installed");
    }
    let dir = tempfile::tempdir().unwrap();
    let path = path_with_scopevault_first();
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("NO_COLOR", "1")
            .env("GIT_AUTHOR_NAME", "t")
            .env("GIT_AUTHOR_EMAIL", "t@example.com")
            .env("GIT_COMMITTER_NAME", "t")
            .env("GIT_COMMITTER_EMAIL", "t@example.com")
            .output()
            .unwrap()
    };
    assert!(git(&["init", "-q"]).status.success());
    let hook = dir.path().join(".git/hooks/pre-commit");
    std::fs::copy(root().join("examples/ci/pre-commit"), &hook).unwrap();
    copy_in(
        dir.path(),
        &fixture("rules/scope-exceeds-task.fires.toml"),
        "policy.toml",
    );
    git(&["add", "policy.toml"]);
    let o = git(&["commit", "-q", "-m", "over-scoped"]);
    assert!(!o.status.success(), "the hook must refuse: {}", stdout(&o));
    // git runs hooks with their stdout sent to stderr.
    let all = stdout(&o) + &stderr(&o);
    assert!(
        all.contains("security-warning[scope-exceeds-task]"),
        "{all}"
    );
    copy_in(dir.path(), &fixture("clean.toml"), "policy.toml");
    git(&["add", "policy.toml"]);
    let o = git(&["commit", "-q", "-m", "clean"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));

    // The hook used --diff-filter=ACM, and read a staged symlink's blob as the policy (found by
    // a CI maintainer's review, fifteenth pass): `git mv draft.toml policy.toml` committed an
    // unlinted policy, and a symlink gave a bogus parse error (its blob is the path it points
    // to). Renames, with or without edits, and type changes are linted now, and a symlink's
    // target is linted, and watched, instead of the link's text.
    let commits = |m: &str| {
        let o = git(&["commit", "-q", "-m", m]);
        (o.status.success(), stdout(&o) + &stderr(&o))
    };
    let refused = |m: &str| {
        let (ok, all) = commits(m);
        assert!(!ok, "{m}: the hook must refuse: {all}");
        assert!(
            all.contains("security-warning[scope-exceeds-task]"),
            "{m}: refused for the finding, not a parse error: {all}"
        );
    };
    let accepted = |m: &str| {
        let (ok, all) = commits(m);
        assert!(ok, "{m}: {all}");
    };
    let blocking = fixture("rules/scope-exceeds-task.fires.toml");
    git(&["rm", "-q", "policy.toml"]);
    accepted("no policy");
    copy_in(dir.path(), &blocking, "draft.toml");
    git(&["add", "draft.toml"]);
    accepted("a draft is not linted");
    git(&["mv", "draft.toml", "policy.toml"]);
    let status = stdout(&git(&["diff", "--cached", "--name-status"]));
    assert!(status.starts_with("R100"), "{status}");
    refused("renamed as it is");
    let mut edited = std::fs::read_to_string(dir.path().join("policy.toml")).unwrap();
    edited.push_str("# reviewed\n");
    std::fs::write(dir.path().join("policy.toml"), edited).unwrap();
    git(&["add", "policy.toml"]);
    let status = stdout(&git(&["diff", "--cached", "--name-status"]));
    assert!(status.starts_with("R0"), "a rename with edits: {status}");
    refused("renamed with an edit");
    git(&["reset", "-q", "--hard", "HEAD"]);
    // A symlink to a tracked policy: the file it points to is linted, as staged.
    std::fs::create_dir(dir.path().join("ci")).unwrap();
    copy_in(&dir.path().join("ci"), &blocking, "prod.toml");
    git(&["add", "ci/prod.toml"]);
    accepted("ci/prod.toml is not policy.toml");
    std::os::unix::fs::symlink("ci/prod.toml", dir.path().join("policy.toml")).unwrap();
    git(&["add", "policy.toml"]);
    let stage = stdout(&git(&["ls-files", "--stage", "policy.toml"]));
    assert!(stage.starts_with("120000"), "{stage}");
    refused("a symlink to a blocking policy");
    copy_in(&dir.path().join("ci"), &fixture("clean.toml"), "prod.toml");
    git(&["add", "policy.toml", "ci/prod.toml"]);
    accepted("a symlink to a clean policy");
    // A commit that changes only the file the symlink points to.
    copy_in(&dir.path().join("ci"), &blocking, "prod.toml");
    git(&["add", "ci/prod.toml"]);
    refused("the symlink's target made blocking");
    git(&["reset", "-q", "--hard", "HEAD"]);
    // The symlink replaced by a file: a type change (T).
    std::fs::remove_file(dir.path().join("policy.toml")).unwrap();
    copy_in(dir.path(), &blocking, "policy.toml");
    git(&["add", "policy.toml"]);
    let status = stdout(&git(&["diff", "--cached", "--name-status"]));
    assert!(status.starts_with('T'), "{status}");
    refused("a symlink turned into a blocking file");
}

/// Run `scopevault lint p.toml` on a pseudo-terminal (util-linux `script`), so stdout is a TTY.
fn lint_on_a_tty(no_color: Option<&str>) -> Option<String> {
    let has_script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_script {
        skip::skip("util-linux `script` is not installed, no pseudo-terminal to test on");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    copy_in(dir.path(), &root().join("examples/policy.toml"), "p.toml");
    let cmd = format!("{} lint p.toml", env!("CARGO_BIN_EXE_scopevault"));
    let mut c = std::process::Command::new("script");
    c.args(["-qec", &cmd, "/dev/null"])
        .current_dir(dir.path())
        .env_remove("SCOPEVAULT_VAULT")
        .env_remove("NO_COLOR");
    if let Some(v) = no_color {
        c.env("NO_COLOR", v);
    }
    let o = c.output().unwrap();
    Some(String::from_utf8_lossy(&o.stdout).into_owned())
}

#[test]
fn colour_on_a_terminal_but_never_with_no_color() {
    let Some(out) = lint_on_a_tty(None) else {
        return;
    };
    assert!(
        out.contains("\x1b[1;35msecurity-warning[scope-exceeds-task]\x1b[0m"),
        "{out}"
    );
    let Some(out) = lint_on_a_tty(Some("1")) else {
        return;
    };
    assert!(!out.contains('\x1b'), "{out}");
    assert!(out.contains("security-warning[scope-exceeds-task]"));
}

#[test]
fn a_huge_line_is_cut_in_the_message() {
    let text = format!(
        "version = 1\n[credentials.a]\nkind = \"login\"\nscopes = {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let o = lint_text(text.as_bytes(), &[]);
    assert_code(&o, 2);
    let err = stderr(&o);
    assert!(err.contains("policy.toml:4:"), "{err}");
    assert!(
        err.len() < 1_000,
        "the message quotes a window of the line, not all of it"
    );
}

/// A pull request's policy cannot write raw control characters or bidirectional overrides into
/// the reports (found by attacking the lint's outputs, fourteenth pass): the text report and
/// the stderr of a refused policy printed names, scopes and the offending source line byte for
/// byte, so a policy drove the terminal and wrote `::notice`/`::add-mask` command lines into a
/// GitHub Actions log, with exit 0; a name holding U+FFFE made the JUnit report ill-formed XML.
#[test]
fn a_policy_cannot_write_control_characters_or_bidi_overrides_into_the_reports() {
    let base = "version = 1\n[credentials.buyer]\nkind = \"login\"\nscopes = [\"shop:login\"]\n[tasks.checkout]\nneeds = [\"shop:login\"]\ncredentials = [\"buyer\"]\nrunners = { users = [\"checkpoint\"] }\n";
    let raw = |s: &str| s.contains('\u{1b}') || s.contains('\u{7}') || s.contains('\u{202e}');
    let injected = format!(
        "{base}\n[[exceptions]]\nrule = \"scope-exceeds-task\"\ncredential = \"x\\n::add-mask::security-warning\\n::notice title=t::no findings\\u001b]0;owned\\u0007\\u001b[2K\\r\"\ntask = \"checkout\\u202e\"\nreason = \"x\"\nexpires = \"2020-01-01\"\n"
    );
    let o = lint_text(injected.as_bytes(), &[]);
    let out = stdout(&o);
    assert!(
        out.contains("invalid-exception") || out.contains("exception"),
        "{out}"
    );
    assert!(!raw(&out), "{out:?}");
    assert!(
        !out.lines().any(|l| l.starts_with("::")),
        "a line of the report is a workflow command: {out}"
    );
    assert!(out.contains("\\n::add-mask::"), "shown escaped: {out}");
    // The JSON and SARIF reports carry the names as data, control characters JSON-escaped
    // (they were already); their readers show them.
    for format in ["json", "sarif"] {
        let o = lint_text(injected.as_bytes(), &["--format", format]);
        let out = stdout(&o);
        assert!(
            !out.chars().any(|c| c.is_control() && c != '\n'),
            "{format}: {out:?}"
        );
    }
    // A refused policy (an invalid scope holding escapes): stderr and its source line.
    let bad = base.replace(
        "scopes = [\"shop:login\"]",
        "scopes = [\"shop:login\\u001b[2J\\u001b]0;pwned\\u0007\", \"shop:\\u202eevil\"]",
    );
    let o = lint_text(bad.as_bytes(), &[]);
    assert_code(&o, 2);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!raw(&all), "{all:?}");
    assert!(all.contains("\\u{1b}"), "{all}");
    // A raw escape in the file itself (a TOML comment) is escaped in the source line shown.
    let commented = base.replace(
        "scopes = [\"shop:login\"]",
        "scopes = [\"shop:login\", \"not a scope\"] # \u{1b}[2J\u{202e}",
    );
    let o = lint_text(commented.as_bytes(), &[]);
    let all = format!("{}{}", stdout(&o), stderr(&o));
    assert!(!raw(&all) && all.contains("\\u{1b}[2J"), "{all:?}");
    // JUnit: no character XML 1.0 cannot carry.
    let fffe = format!(
        "{base}\n[[exceptions]]\nrule = \"scope-exceeds-task\"\ncredential = \"buyer\\uFFFE\\uFFFF\"\ntask = \"checkout\"\nreason = \"x\"\nexpires = \"2020-01-01\"\n"
    );
    let o = lint_text(fffe.as_bytes(), &["--format", "junit"]);
    let xml = stdout(&o);
    assert!(xml.contains("<testsuite"), "{xml}");
    assert!(
        !xml.chars().any(|c| matches!(c, '\u{FFFE}' | '\u{FFFF}')
            || (c < ' ' && !matches!(c, '\n' | '\t' | '\r'))),
        "{xml:?}"
    );
}

/// A file's name is anyone's text too: a pull request adds `policies/<name>.toml` and the CI
/// loop of examples/ci/github-actions.yml lints it (seventeenth pass). The summary line (the
/// last line of a text report, stderr for the other formats), the `--audit` errors and the
/// usage rules' note printed names raw, so a name holding `\n::add-mask::…` wrote a GitHub
/// Actions command line into the log, and ESC or U+202E drove the terminal. Every name is
/// escaped now, as the findings' `-->` lines and the parse errors already were.
#[test]
fn a_file_name_cannot_write_control_characters_into_the_summary_or_the_errors() {
    let raw = |s: &str| {
        s.contains('\u{1b}')
            || s.contains('\u{7}')
            || s.contains('\u{202e}')
            || s.lines().any(|l| l.starts_with("::"))
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let evil = "p\n::add-mask::x\n\u{1b}]0;t\u{7}\u{202e}";
    let policy = format!("{evil}.toml");
    copy_in(d, &root().join("examples/policy.toml"), &policy);
    let shown = "p\\n::add-mask::x\\n\\u{1b}]0;t\\u{7}\\u{202e}.toml";
    let check = |o: &Output, code: i32, what: &str| {
        assert_code(o, code);
        let all = format!("{}{}", stdout(o), stderr(o));
        assert!(!raw(&all), "{what}: {all:?}");
        all
    };
    // The summary: the text report's last line, stderr for the other formats.
    let all = check(&scopevault(d, &["lint", &policy]), 1, "text");
    assert!(
        all.contains(&format!("{shown}: 0 errors, 6 security warnings")),
        "{all}"
    );
    for format in ["json", "sarif", "junit"] {
        let o = scopevault(d, &["lint", &policy, "--format", format]);
        assert_code(&o, 1);
        assert!(!raw(&stderr(&o)), "{format}: {:?}", stderr(&o));
        assert!(stderr(&o).contains(shown), "{format}: {}", stderr(&o));
    }
    // `--output` naming the policy, and a report that cannot be written.
    check(
        &scopevault(d, &["lint", &policy, "--output", &policy]),
        2,
        "--output",
    );
    let nowhere = format!("{evil}/out.json");
    let all = check(
        &scopevault(
            d,
            &["lint", &policy, "--format", "json", "--output", &nowhere],
        ),
        2,
        "an --output that cannot be written",
    );
    assert!(all.contains("cannot write the report to"), "{all}");
    // An `--audit` log that does not verify: its name twice in the message.
    let log = format!("{evil}.jsonl");
    std::fs::write(d.join(&log), "garbage\n").unwrap();
    let all = check(
        &scopevault(d, &["lint", &policy, "--audit", &log]),
        2,
        "a log that does not verify",
    );
    assert!(all.contains("does not verify"), "{all}");
    // A log whose daemon served another policy: the note names the log and the policy.
    let line = format!(
        r#"{{"seq":1,"time":"2026-11-01T00:00:00Z","peer":null,"op":"vault.load","task":null,"credential":null,"decision":"allow","reason":null,"warnings":[],"values":{{}},"generation":4,"policy":"sha256:{}","prev":"{}"}}"#,
        "0".repeat(64),
        "0".repeat(64)
    );
    std::fs::write(d.join(&log), format!("{line}\n")).unwrap();
    let all = check(
        &scopevault(d, &["lint", &policy, "--audit", &log]),
        1,
        "the usage rules' note",
    );
    assert!(
        all.contains("note: usage rules not applied: the daemon of p\\n::add-mask::"),
        "{all}"
    );
}

/// For lint the exit code is the verdict, and a CI step reads it through `pipefail`
/// (seventeenth pass): a report with blocking findings cut short by its reader (`lint | head
/// -n 20`) exited 0 in text and JUnit (a closed pipe is the end of output for the other
/// commands) and 2 "Broken pipe" in JSON and SARIF. It now exits as the whole report would
/// have: 1 with a blocking finding, 0 without, in every format, with no error on stderr.
#[test]
fn a_report_cut_short_by_its_reader_still_exits_with_the_verdict() {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    // One wildcard credential shared by 2,000 tasks: thousands of security warnings, a report
    // of megabytes, far more than a pipe holds.
    let mut policy =
        String::from("version = 1\n[credentials.c]\nkind = \"login\"\nscopes = [\"s:*\"]\n");
    for i in 0..2000 {
        policy.push_str(&format!(
            "[tasks.t{i}]\nneeds = [\"s:n{i}\"]\ncredentials = [\"c\"]\nrunners = {{ users = [\"0\"] }}\n"
        ));
    }
    std::fs::write(dir.path().join("policy.toml"), policy).unwrap();
    for format in ["text", "json", "sarif", "junit"] {
        for (deny, want) in [("security-warning", 1), ("error", 0)] {
            let mut child = Command::new(env!("CARGO_BIN_EXE_scopevault"))
                .args(["lint", "policy.toml", "--format", format, "--deny", deny])
                .current_dir(dir.path())
                .env_remove("SCOPEVAULT_VAULT")
                .env("NO_COLOR", "1")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            // Read a little, as `head` does, then go away.
            let mut stdout = child.stdout.take().unwrap();
            let mut first = vec![0u8; 4096];
            stdout.read_exact(&mut first).unwrap();
            drop(stdout);
            let out = child.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(want),
                "{format} --deny {deny}: {err}"
            );
            assert!(
                !err.contains("Broken pipe")
                    && !err.contains("error:")
                    && !err.contains("panicked"),
                "{format} --deny {deny}: {err}"
            );
            // The summary, which a cut text report lost with its last line, is on stderr.
            assert!(
                err.contains("policy.toml: 0 errors, 2002 security warnings"),
                "{format} --deny {deny}: {err}"
            );
        }
    }
}

/// A pull request can commit `policy.toml` as a symbolic link to any file on the CI runner
/// (seventeenth pass): the lint followed it and a parse error quoted the line it failed on, a
/// registry token of `~/.docker/config.json` included, into the CI log. A policy reached
/// through a link out of its repository (the file, or a directory on the way) is not quoted
/// now, in errors nor in the text report; a link inside the repository still is.
#[test]
fn a_policy_linked_out_of_the_repository_is_not_quoted() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let token = "ghp_FAKETOKENFORTHELINTTEST123";
    std::fs::create_dir_all(d.join("home/.docker")).unwrap();
    let secret = d.join("home/.docker/config.json");
    std::fs::write(
        &secret,
        format!("{{\"auths\":{{\"ghcr.io\":{{\"auth\":\"{token}\"}}}}}}\n"),
    )
    .unwrap();
    // A valid policy outside the repository, its finding's line holding the token.
    let outside_policy = d.join("home/policy.toml");
    let example = std::fs::read_to_string(root().join("examples/policy.toml")).unwrap();
    let marked = example.replacen("scopes = [", &format!("scopes = [ # {token}\n"), 1);
    assert_ne!(marked, example);
    std::fs::write(&outside_policy, marked).unwrap();
    let repo = d.join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("ci")).unwrap();
    symlink(&secret, repo.join("policy.toml")).unwrap();
    symlink("../home/.docker/config.json", repo.join("relative.toml")).unwrap();
    symlink(d.join("home/.docker"), repo.join("policies")).unwrap();
    symlink(&outside_policy, repo.join("valid.toml")).unwrap();
    let not_quoted = |o: &Output, code: i32, name: &str| {
        assert_code(o, code);
        let all = format!("{}{}", stdout(o), stderr(o));
        assert!(!all.contains(token), "{name}: {all}");
        assert!(
            all.contains(&format!(
                "(source not quoted: {name} is a link out of the repository)"
            )),
            "{name}: {all}"
        );
    };
    // A value a parse error's message would quote stays out too.
    std::fs::write(
        d.join("home/creds.toml"),
        format!("version = \"{token}\"\n"),
    )
    .unwrap();
    symlink(d.join("home/creds.toml"), repo.join("typed.toml")).unwrap();
    for name in [
        "policy.toml",
        "relative.toml",
        "policies/config.json",
        "typed.toml",
    ] {
        for format in ["text", "sarif", "json"] {
            not_quoted(
                &scopevault(&repo, &["lint", name, "--format", format]),
                2,
                name,
            );
        }
    }
    // From outside the repository, the same link.
    not_quoted(
        &scopevault(d, &["lint", "repo/policy.toml"]),
        2,
        "repo/policy.toml",
    );
    // A policy that parses: its findings keep their place, no source line.
    let o = scopevault(&repo, &["lint", "valid.toml"]);
    not_quoted(&o, 1, "valid.toml");
    assert!(stdout(&o).contains("--> valid.toml:"), "{}", stdout(&o));
    assert!(!stdout(&o).contains(" | "), "{}", stdout(&o));
    // A link inside the repository is quoted as the file would be.
    std::fs::write(
        repo.join("ci/prod.toml"),
        "version = 1\nbogus = \"in-repo-marker\"\n",
    )
    .unwrap();
    symlink("ci/prod.toml", repo.join("inside.toml")).unwrap();
    let o = scopevault(&repo, &["lint", "inside.toml"]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("2 | bogus = \"in-repo-marker\"") && !stderr(&o).contains("not quoted"),
        "{}",
        stderr(&o)
    );
    // In no repository, the given path's directory stands for it.
    let loose = d.join("loose");
    std::fs::create_dir_all(loose.join("sub")).unwrap();
    std::fs::copy(repo.join("ci/prod.toml"), loose.join("sub/prod.toml")).unwrap();
    symlink("sub/prod.toml", loose.join("near.toml")).unwrap();
    symlink(&secret, loose.join("far.toml")).unwrap();
    let o = scopevault(&loose, &["lint", "near.toml"]);
    assert!(stderr(&o).contains("in-repo-marker"), "{}", stderr(&o));
    not_quoted(&scopevault(&loose, &["lint", "far.toml"]), 2, "far.toml");
}

/// The lint compares every task with every credential it lists, scope by scope; that work was
/// outside the 20,000,000-scope budget (found by attacking the lint's cost, fourteenth pass:
/// one credential of 8,000 scopes listed by 8,000 tasks, a 558 KB file, took 25 s and 4.7 GB,
/// each finding listing its 8,000 excess scopes twice). Now it is charged to its own budget of
/// the same size, and a message lists at most 20 scopes.
#[test]
fn many_tasks_listing_a_broad_credential_are_bounded_and_messages_list_twenty_scopes() {
    let policy = |scopes: usize, tasks: usize| {
        let mut s = String::from("version = 1\n[credentials.broad]\nkind = \"token\"\nscopes = [");
        for i in 0..scopes {
            s.push_str(&format!("{}\"s:p{i}\"", if i > 0 { ", " } else { "" }));
        }
        s.push_str("]\n");
        for t in 0..tasks {
            s.push_str(&format!(
                "[tasks.t{t}]\nneeds = [\"s:p0\"]\ncredentials = [\"broad\"]\nrunners = {{ users = [\"checkpoint\"] }}\n"
            ));
        }
        s
    };
    // 5,000 scopes × 4,001 tasks: over the budget, refused at the task where it ran out.
    let o = lint_text(policy(5_000, 4_001).as_bytes(), &[]);
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("grant more than 20000000 scopes in total"),
        "{}",
        stderr(&o)
    );
    // 25 scopes: the message names 20 and says how many more; the JSON holds all 24 excess.
    let o = lint_text(policy(25, 1).as_bytes(), &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "scope-exceeds-task")
        .unwrap_or_else(|| panic!("{v:#}"));
    let message = f["message"].as_str().unwrap();
    assert!(
        message.contains("24 scopes") && message.contains("… and 4 more"),
        "{message}"
    );
    assert!(!message.contains("`s:p9`"), "{message}");
    assert_eq!(f["scopes"].as_array().unwrap().len(), 24);
}

/// A scope's length was not bounded, and every `scope-exceeds-task` finding copied the whole
/// excess into its message, help and `scopes` (twenty-fourth pass, found by attacking outputs
/// as injection targets): one credential holding `a:` and a million `x`, listed by 500 tasks
/// (a 1 MB policy), made 1.0 GB of text report and 1.48 GB of memory, and under `ulimit -v
/// 1G` the lint aborted. A scope is at most 256 bytes now: that policy is an `invalid-scope`
/// error (exit 2) naming the line, and its report, in every format, is a few hundred bytes.
#[test]
fn a_megabyte_scope_listed_by_many_tasks_is_refused_not_copied_into_each_finding() {
    let mut policy = format!(
        "version = 1\n[credentials.c]\nkind = \"token\"\nscopes = [\"a:{}\", \"a:b\"]\n",
        "x".repeat(1_000_000)
    );
    for t in 0..500 {
        policy.push_str(&format!(
            "[tasks.t{t}]\nneeds = [\"a:b\"]\ncredentials = [\"c\"]\nrunners = {{ users = [\"root\"] }}\n"
        ));
    }
    for format in ["text", "json", "sarif", "junit"] {
        let o = lint_text(policy.as_bytes(), &["--format", format]);
        assert_code(&o, 2);
        let out = stdout(&o);
        assert!(
            o.stdout.len() + o.stderr.len() < 100 * 1024,
            "{format}: {} bytes of report",
            o.stdout.len()
        );
        assert!(out.contains("invalid-scope"), "{format}: {out}");
        assert!(
            out.contains("scope of 1000002 bytes, longer than the 256 bytes a scope may have"),
            "{format}: {out}"
        );
    }
    let o = lint_text(policy.as_bytes(), &[]);
    assert!(stdout(&o).contains("policy.toml:4:11"), "{}", stdout(&o));
    // At the bound, the scope is a scope.
    let at = format!(
        "version = 1\n[credentials.c]\nkind = \"token\"\nscopes = [\"a:{}\"]\n[tasks.t]\nneeds = [\"a:b\"]\ncredentials = [\"c\"]\nrunners = {{ users = [\"root\"] }}\n",
        "x".repeat(254)
    );
    let o = lint_text(at.as_bytes(), &[]);
    assert_code(&o, 1);
    assert!(stdout(&o).contains("missing-scope"), "{}", stdout(&o));
}

/// Within the 256-byte bound, many long scopes compared many times still made a report of
/// (tasks × scopes × 256) bytes, under the count of scopes compared: the bytes compared have
/// a budget of their own (200,000,000). A credential of 1,000 scopes of 250 bytes listed by
/// 850 tasks (a 320 KB file, 850,000 scopes compared, well under the 20,000,000 of the
/// count) is refused at the task where the bytes ran out, before any finding is made.
#[test]
fn long_scopes_compared_many_times_are_refused_by_the_bytes_they_cost() {
    let mut policy = String::from("version = 1\n[credentials.broad]\nkind = \"token\"\nscopes = [");
    for i in 0..1_000 {
        let head = format!("s:p{i}:");
        policy.push_str(&format!("\"{head}{}\", ", "x".repeat(250 - head.len())));
    }
    policy.push_str("]\n");
    for t in 0..850 {
        policy.push_str(&format!(
            "[tasks.t{t}]\nneeds = [\"s:q\"]\ncredentials = [\"broad\"]\nrunners = {{ users = [\"checkpoint\"] }}\n"
        ));
    }
    let o = lint_text(policy.as_bytes(), &["--format", "json"]);
    assert_code(&o, 2);
    assert!(o.stdout.is_empty(), "{} bytes of report", o.stdout.len());
    assert!(
        stderr(&o).contains("add up to more than 200000000 bytes of scopes and origins"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("policy.toml:") && stderr(&o).contains(": task `t"),
        "{}",
        stderr(&o)
    );
}

/// `origin-mismatch` was identified without its origin (twenty-fourth pass, found by attacking
/// outputs as injection targets): an exception reviewed for the task's staging site kept
/// hiding the finding once the task's origin was changed to any other site (exit 0), and the
/// SARIF fingerprint was the same for both, so code scanning kept the alert dismissed. The
/// origin is the finding's detail now: an exception names it with `origin`, and it is hashed
/// into the fingerprint.
#[test]
fn an_origin_mismatch_exception_and_fingerprint_hold_the_origin() {
    let policy = |origin: &str, exception_origin: Option<&str>| {
        format!(
            r#"version = 1
[scopes."s:a"]
risk = "low"
[credentials.c1]
kind = "login"
scopes = ["s:a"]
origins = ["https://shop.example.com"]
[tasks.t1]
needs = ["s:a"]
credentials = ["c1"]
runners = {{ users = ["root"] }}
origin = "{origin}"
[[exceptions]]
rule = "origin-mismatch"
credential = "c1"
task = "t1"
{}reason = "staging is our own site, same accounts (SEC-42)"
expires = "2099-01-01"
"#,
            exception_origin.map_or(String::new(), |o| format!("origin = \"{o}\"\n"))
        )
    };
    let staging = "https://staging.shop.example.com";
    let evil = "https://attacker.example.net";
    let rules = |o: &Output| -> Vec<(String, bool)> {
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
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
    };
    // Reviewed for staging (written with a default port and a capital: compared normalised).
    let o = lint_text(
        policy(staging, Some("https://Staging.shop.example.com:443")).as_bytes(),
        &["--format", "json"],
    );
    assert_code(&o, 0);
    assert_eq!(rules(&o), [("origin-mismatch".to_owned(), true)]);
    // The task moved to another site: the finding is back, the exception matches nothing.
    let o = lint_text(
        policy(evil, Some(staging)).as_bytes(),
        &["--format", "json"],
    );
    assert_code(&o, 1);
    let r = rules(&o);
    assert!(r.contains(&("origin-mismatch".to_owned(), false)), "{r:?}");
    assert!(
        r.contains(&("invalid-exception".to_owned(), false)),
        "{r:?}"
    );
    // An exception naming no origin matches no `origin-mismatch`.
    let o = lint_text(policy(staging, None).as_bytes(), &[]);
    assert_code(&o, 1);
    assert!(
        stdout(&o).contains("matches no finding") && stdout(&o).contains("the task's `origin`"),
        "{}",
        stdout(&o)
    );
    // Two origins, two fingerprints.
    let print = |origin: &str| {
        let o = lint_text(policy(origin, None).as_bytes(), &["--format", "sarif"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let r = v["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["ruleId"] == "origin-mismatch")
            .unwrap()
            .clone();
        r["partialFingerprints"]["primaryLocationLineHash"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_ne!(print(staging), print(evil));
}

/// Policy text went into SARIF `message.text` unescaped (twenty-fourth pass, found by
/// attacking outputs as injection targets): SARIF 2.1.0 §3.11.6 renders `[text](target)` in a
/// message as an embedded link, so an exception's `rule` string made a clickable link of the
/// pull request's choosing in the code-scanning alert, and `[x](0)` a link to a location no
/// result has (invalid SARIF). Every `[` and `]` of a result's or notification's
/// `message.text` is written `\[`, `\]` now: no embedded link is left, the text reads the same.
#[test]
fn policy_text_makes_no_embedded_link_in_sarif_messages() {
    let policy = r#"version = 1
[credentials.c1]
kind = "login"
scopes = ["shop:login"]
[tasks.t1]
needs = ["shop:login"]
credentials = ["c1"]
runners = { users = ["root"] }
[[exceptions]]
rule = "](0) [reviewed and approved by security, see the ticket](https://evil.example/phish) [x"
credential = "c1"
task = "t1"
reason = "r"
expires = "2099-01-01"
"#;
    let o = lint_text(policy.as_bytes(), &["--format", "sarif"]);
    assert_code(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    let text = results
        .iter()
        .find(|r| r["ruleId"] == "invalid-exception")
        .unwrap()["message"]["text"]
        .as_str()
        .unwrap();
    assert!(
        text.contains(r"\](0) \[reviewed and approved by security, see the ticket\](https://evil.example/phish) \[x"),
        "{text}"
    );
    for r in results {
        let text = r["message"]["text"].as_str().unwrap();
        let bytes = text.as_bytes();
        for (i, b) in bytes.iter().enumerate() {
            if *b == b'[' || *b == b']' {
                assert!(
                    i > 0 && bytes[i - 1] == b'\\',
                    "unescaped bracket at {i}: {text}"
                );
            }
        }
    }
}

/// SARIF plain text as a reader takes it (SARIF 2.1.0 §3.11.5, §3.11.6): `\\`, `\[`, `\]`,
/// `{{` and `}}` are the literal characters; an unescaped `[` or `]` (the makings of an
/// embedded link), a lone `{` or `}` (a placeholder) or a `\` before anything else is an error
/// naming where it is.
fn sarif_plain_text(text: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut cs = text.chars().enumerate().peekable();
    while let Some((i, c)) = cs.next() {
        match c {
            '\\' => match cs.next() {
                Some((_, e @ ('\\' | '[' | ']'))) => out.push(e),
                _ => return Err(format!("a backslash escaping nothing at {i}: {text}")),
            },
            '[' | ']' => return Err(format!("an unescaped {c} at {i}: {text}")),
            '{' | '}' => match cs.next() {
                Some((_, d)) if d == c => out.push(c),
                _ => return Err(format!("a lone {c} (a placeholder) at {i}: {text}")),
            },
            c => out.push(c),
        }
    }
    Ok(out)
}

/// Every `message.text` of a SARIF run's results and notifications, read back as plain text.
fn sarif_messages(v: &serde_json::Value) -> Vec<String> {
    let run = &v["runs"][0];
    let results = run["results"].as_array().unwrap().iter();
    let notes = run["invocations"][0]["toolExecutionNotifications"]
        .as_array()
        .map(|a| a.iter().collect::<Vec<_>>())
        .unwrap_or_default();
    results
        .chain(notes)
        .map(|r| sarif_plain_text(r["message"]["text"].as_str().unwrap()).unwrap())
        .collect()
}

/// SARIF messages escaped `[` and `]` but not `\` (twenty-eighth pass, found by the
/// twenty-eighth pass's attacker of the lint in CI): an exception's `rule =
/// '\[approved by security\](https://evil.example/phish)'` came out
/// `\\[approved by security\\](https://evil.example/phish)`, which a reader taking `\\` as an
/// escaped backslash turns into an embedded link of the pull request's choosing. `\` is
/// written `\\` now: the message reads back as the policy's text, with no link in it.
#[test]
fn a_backslash_in_policy_text_makes_no_embedded_link_in_sarif_messages() {
    let policy = r#"version = 1
[credentials.c]
kind = "login"
scopes = ["a:b"]
[tasks.t]
needs = ["a:b"]
credentials = ["c"]
runners = { users = ["root"] }
[[exceptions]]
rule = '\[approved by security\](https://evil.example/phish)'
credential = "c"
reason = "x"
expires = "2099-01-01"
"#;
    let o = lint_text(policy.as_bytes(), &["--format", "sarif"]);
    assert_code(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let messages = sarif_messages(&v);
    assert!(
        messages
            .iter()
            .any(|m| m.contains(r"\[approved by security\](https://evil.example/phish)")),
        "{messages:?}"
    );
}

/// Locations differing only in case (`[locations.ams]`, `[locations.AMS]`) linted clean
/// (twenty-eighth pass, found by the twenty-eighth pass's attacker of the lint in CI), though
/// their bundles are one file on a case-insensitive file system. `names-differ-only-in-case`
/// covers locations now, pointing at the later one and naming both.
#[test]
fn locations_differing_only_in_case_are_names_differ_only_in_case() {
    let ra = "age1cenu8lumakfeskq3x59tw9xkx5fcdmjzyarfrqtqpz9lg02w53us6pjnzk";
    let rb = "age1y2npkpu050ydxk0hudks4qldsh7zshaqeqn58gmqwdmxm5k8dqgshez6ra";
    let policy = format!(
        r#"version = 1
[credentials.c]
kind = "token"
scopes = ["a:b"]
[locations.ams]
recipient = "{ra}"
[locations.AMS]
recipient = "{rb}"
[tasks.t]
needs = ["a:b"]
credentials = ["c"]
runners = {{ users = ["root"] }}
locations = ["ams"]
[tasks.u]
needs = ["a:b"]
credentials = ["c"]
runners = {{ users = ["root"] }}
locations = ["AMS"]
"#
    );
    let o = lint_text(policy.as_bytes(), &["--format", "json"]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{v}");
    let f = &findings[0];
    assert_eq!(f["rule"], "names-differ-only-in-case", "{f}");
    assert_eq!(f["line"], 7, "{f}");
    let message = f["message"].as_str().unwrap();
    assert!(
        message.contains("locations `ams` and `AMS` differ only in case"),
        "{message}"
    );
}

/// The JSON and SARIF `origin-mismatch` finding did not carry its origin (twenty-eighth pass,
/// found by the twenty-eighth pass's attacker of the lint in CI), though an exception for the
/// rule must name `origin` and `invalid-exception`'s help says to copy it from `--format
/// json`; the finding's help gave no exception text. The finding now has `origin` (JSON key,
/// SARIF property; the task's origin normalised) and its help the exception's text: an
/// exception built from the JSON finding's fields hides it.
#[test]
fn origin_mismatch_carries_its_origin_and_an_exception_built_from_it_hides_it() {
    let policy = r#"version = 1
[credentials.c]
kind = "login"
scopes = ["a:b"]
origins = ["https://a.example"]
[tasks.t]
needs = ["a:b"]
credentials = ["c"]
runners = { users = ["root"] }
origin = "HTTPS://B.example:443"
"#;
    let o = lint_text(policy.as_bytes(), &["--format", "json"]);
    assert_code(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = &v["findings"][0];
    assert_eq!(f["rule"], "origin-mismatch", "{v}");
    assert_eq!(f["origin"], "https://b.example", "{f}");
    let help = f["help"].as_str().unwrap();
    assert!(
        help.contains(r#"rule = "origin-mismatch", credential = "c", task = "t", origin = "https://b.example""#),
        "{help}"
    );
    let o = lint_text(policy.as_bytes(), &["--format", "sarif"]);
    let sarif: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        sarif["runs"][0]["results"][0]["properties"]["origin"], "https://b.example",
        "{sarif}"
    );
    let excepted = format!(
        "{policy}[[exceptions]]\nrule = {}\ncredential = {}\ntask = {}\norigin = {}\nreason = \"r\"\nexpires = \"2099-01-01\"\n",
        f["rule"], f["credential"], f["task"], f["origin"]
    );
    let o = lint_text(excepted.as_bytes(), &["--format", "json"]);
    assert_code(&o, 0);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let findings = v["findings"].as_array().unwrap();
    assert_eq!(findings.len(), 1, "{v}");
    assert_eq!(findings[0]["excepted"], true, "{v}");
    // Another rule's finding has none.
    let o = lint_text(
        policy.replace("origin = ", "# origin = ").as_bytes(),
        &["--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    for f in v["findings"].as_array().unwrap() {
        assert_eq!(f["origin"], serde_json::Value::Null, "{f}");
    }
}

/// SARIF messages carried `{` and `}` as they were (twenty-eighth pass, found by the
/// twenty-eighth pass's attacker of the lint in CI), where SARIF 2.1.0 §3.11.5 has a literal
/// brace written `{{`, `}}`: an exception's `rule = "{0}{1}"` and scopevault's own help
/// (`runners = { users = … }`) read as placeholders to fill from `arguments` the result has
/// not. Braces are doubled now: every message reads back as the text, placeholders none.
#[test]
fn braces_in_sarif_messages_are_doubled_not_placeholders() {
    let policy = r#"version = 1
[credentials.c]
kind = "login"
scopes = ["a:b"]
[tasks.t]
needs = ["a:b"]
credentials = ["c"]
[[exceptions]]
rule = "{0}{1}"
credential = "c"
reason = "x"
expires = "2099-01-01"
"#;
    let o = lint_text(policy.as_bytes(), &["--format", "sarif"]);
    assert_code(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let messages = sarif_messages(&v);
    assert!(
        messages.iter().any(|m| m.contains("`{0}{1}`")),
        "{messages:?}"
    );
    assert!(
        messages.iter().any(|m| m.contains("runners = { users = ")),
        "{messages:?}"
    );
}

/// A rule's SARIF help doubled its braces too (twenty-eighth pass, found by the twenty-eighth
/// pass's re-attacker of its fixes): `task-without-runners`'s `help.text` and `help.markdown`
/// read ``Add `runners = {{ users = ["checkpoint"] }}` ``, invalid TOML to copy. §3.11.5's
/// doubling is for `message` objects, whose placeholders `arguments` fill; a rule's help is a
/// multiformatMessageString (§3.12), never filled: its braces are as they are, and a result's
/// message still doubles them.
#[test]
fn a_sarif_rules_help_keeps_its_braces_single() {
    let policy = "version = 1\n[credentials.c]\nkind = \"login\"\nscopes = [\"a:b\"]\n\
                  [tasks.t]\nneeds = [\"a:b\"]\ncredentials = [\"c\"]\n";
    let o = lint_text(policy.as_bytes(), &["--format", "sarif"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rule = v["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "task-without-runners")
        .unwrap()
        .clone();
    let toml = r#"`runners = { users = ["checkpoint"] }`"#;
    let markdown = rule["help"]["markdown"].as_str().unwrap();
    assert!(markdown.contains(toml), "{markdown}");
    // The plain text escapes its brackets (`\[`), not its braces.
    let text = rule["help"]["text"].as_str().unwrap();
    assert!(
        text.contains(r#"`runners = { users = \["checkpoint"\] }`"#),
        "{text}"
    );
    let result = v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ruleId"] == "task-without-runners")
        .unwrap();
    let message = result["message"]["text"].as_str().unwrap();
    assert!(message.contains("runners = {{ users = "), "{message}");
}

/// A SARIF region spanning lines (a scope written as a TOML multi-line string) ended at the
/// start column reused on the end line, past that line's end, where the JSON had the right
/// end (twenty-eighth pass, found by the twenty-eighth pass's attacker of the lint in CI).
/// Every result's region is now the JSON finding's line, column, end line and end column.
#[test]
fn a_sarif_region_spanning_lines_ends_where_the_json_finding_ends() {
    let policy = "version = 1\n[credentials.c]\nkind = \"login\"\nscopes = [\"a:b\", \"\"\"\nx:*\"\"\"]\n\
                  [tasks.t]\nneeds = [\"a:b\"]\ncredentials = [\"c\"]\nrunners = { users = [\"root\"] }\n";
    let json: serde_json::Value =
        serde_json::from_slice(&lint_text(policy.as_bytes(), &["--format", "json"]).stdout)
            .unwrap();
    let sarif: serde_json::Value =
        serde_json::from_slice(&lint_text(policy.as_bytes(), &["--format", "sarif"]).stdout)
            .unwrap();
    let wild = json["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["rule"] == "wildcard-scope")
        .unwrap();
    assert_eq!(
        (
            &wild["line"],
            &wild["column"],
            &wild["end_line"],
            &wild["end_column"]
        ),
        (&4.into(), &18.into(), &5.into(), &7.into()),
        "{wild}"
    );
    let results = sarif["runs"][0]["results"].as_array().unwrap();
    let findings = json["findings"].as_array().unwrap();
    assert_eq!(results.len(), findings.len());
    for (r, f) in results.iter().zip(findings) {
        let region = &r["locations"][0]["physicalLocation"]["region"];
        assert_eq!(
            (
                &region["startLine"],
                &region["startColumn"],
                &region["endLine"],
                &region["endColumn"]
            ),
            (&f["line"], &f["column"], &f["end_line"], &f["end_column"]),
            "{r} {f}"
        );
    }
}

/// `location-without-tasks` findings name no credential, task or scope, so one exception
/// matched every one of them, today's and any later location's (found by attacking the lint's
/// exceptions, fourteenth pass: an exception "for fra" hid a new `evil-new-site` too, with
/// `--deny warning` passing). The rule cannot be excepted now (the fix is one line: list the
/// location or remove it), and the SARIF fingerprints of two such findings differ.
#[test]
fn one_exception_cannot_hide_every_location_without_tasks() {
    let policy = r#"version = 1
[credentials.buyer]
kind = "login"
scopes = ["shop:login"]
[tasks.checkout]
needs = ["shop:login"]
credentials = ["buyer"]
runners = { users = ["checkpoint"] }
locations = ["ams"]

[locations.ams]
recipient = "age125gmrf8vq05hsrzadtlp3ctlp7lra7q2nrkvud85y7yklqyjecwq5fet9e"
[locations.fra]
recipient = "age19l3aynywj20m0p8s8vnnhwcmeghc7rd8g4r3z0xmmvgpttc35pgsrdhl5s"
[locations.evil-new-site]
recipient = "age1rz9n5au9dx2ghlmg06eeg0h8vsmh3h6rgf2uzhct99hl2k937ggsjppkwg"

[[exceptions]]
rule = "location-without-tasks"
reason = "fra is being retired, OPS-9"
expires = "2099-01-01"
"#;
    let o = lint_text(
        policy.as_bytes(),
        &["--format", "json", "--deny", "warning"],
    );
    assert_code(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let rules: Vec<(&str, bool)> = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap(),
                f["excepted"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        rules
            .iter()
            .filter(|r| **r == ("location-without-tasks", false))
            .count(),
        2,
        "{rules:?}"
    );
    assert!(rules.contains(&("invalid-exception", false)), "{rules:?}");
    let o = lint_text(policy.as_bytes(), &["--format", "sarif"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let prints: std::collections::BTreeSet<&str> = v["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ruleId"] == "location-without-tasks")
        .map(|r| {
            r["partialFingerprints"]["scopevaultFinding/v1"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(prints.len(), 2, "{prints:?}");
}

/// Findings a rule repeats for one task (its schedulers, its locations) are one code-scanning
/// alert each: their fingerprints differ. A repeated scheduler cannot be excepted (one
/// exception naming the task would hide every repeat, a new one included).
#[test]
fn findings_repeated_for_one_task_have_their_own_fingerprints() {
    let policy = r#"version = 1
[credentials.buyer]
kind = "login"
scopes = ["shop:login"]
[tasks.checkout]
needs = ["shop:login"]
credentials = ["buyer"]
runners = { users = ["checkpoint"] }
schedulers = ["cron", "cron", "1500", "1500"]
locations = ["ams", "fra", "nyc"]

[locations.ams]
recipient = "age125gmrf8vq05hsrzadtlp3ctlp7lra7q2nrkvud85y7yklqyjecwq5fet9e"

[[exceptions]]
rule = "duplicate-scheduler"
task = "checkout"
reason = "tidy later"
expires = "2099-01-01"
"#;
    let o = lint_text(policy.as_bytes(), &["--format", "sarif"]);
    assert_code(&o, 1);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let results = v["runs"][0]["results"].as_array().unwrap();
    let of = |rule: &str| -> std::collections::BTreeSet<&str> {
        results
            .iter()
            .filter(|r| r["ruleId"] == rule)
            .map(|r| {
                r["partialFingerprints"]["scopevaultFinding/v1"]
                    .as_str()
                    .unwrap()
            })
            .collect()
    };
    assert_eq!(of("duplicate-scheduler").len(), 2, "{results:#?}");
    assert_eq!(of("unknown-location").len(), 2, "{results:#?}");
    assert!(
        results.iter().any(|r| r["ruleId"] == "invalid-exception"
            && r["message"]["text"]
                .as_str()
                .unwrap()
                .contains("cannot be excepted")),
        "{results:#?}"
    );
}

/// GitHub code scanning matches alerts across uploads by `partialFingerprints`'
/// `primaryLocationLineHash` alone (other keys are ignored), and upload-sarif fills that key
/// from the flagged line's text when it is absent: our stable `scopevaultFinding/v1` kept no
/// alert across an edit that moved or changed the lines around a finding (found by a CI
/// maintainer's review, fifteenth pass). The SARIF now carries the stable fingerprint under
/// both keys, and it is the same after lines are added above and the flagged line is reworded.
#[test]
fn sarif_primary_location_line_hash_is_the_stable_fingerprint_across_edits_around_the_finding() {
    let before = "version = 1\n[credentials.buyer]\nkind = \"login\"\nscopes = [\"shop:login\", \"shop:orders:read\"]\n[tasks.checkout]\nneeds = [\"shop:login\"]\ncredentials = [\"buyer\"]\nrunners = { users = [\"checkpoint\"] }\n";
    let after = "# Owned by the shop team.\nversion = 1\n\n[credentials.old]\nkind = \"token\"\nscopes = [\"x:y\"]\n\n[credentials.buyer]\nkind   = \"login\"\nscopes = [ \"shop:orders:read\",\"shop:login\" ]\n[tasks.checkout]\nneeds = [\"shop:login\"]\n# the credential it uses\ncredentials = [ \"buyer\" ]\nrunners = { users = [\"checkpoint\"] }\n";
    let prints = |text: &str| -> Vec<(String, String, u64)> {
        let o = lint_text(text.as_bytes(), &["--format", "sarif"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["runs"][0]["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["ruleId"] == "scope-exceeds-task")
            .map(|r| {
                let p = &r["partialFingerprints"];
                assert_eq!(
                    p["primaryLocationLineHash"], p["scopevaultFinding/v1"],
                    "{p}"
                );
                (
                    p["primaryLocationLineHash"].as_str().unwrap().to_owned(),
                    r["ruleId"].as_str().unwrap().to_owned(),
                    r["locations"][0]["physicalLocation"]["region"]["startLine"]
                        .as_u64()
                        .unwrap(),
                )
            })
            .collect()
    };
    let (a, b) = (prints(before), prints(after));
    assert_eq!(a.len(), 1, "{a:?}");
    assert_eq!(b.len(), 1, "{b:?}");
    assert_ne!(a[0].2, b[0].2, "the finding moved");
    assert_eq!(a[0].0, b[0].0, "one alert before and after the edit");
}

/// Two findings of one rule with the same credential, task and scopes shared a SARIF
/// fingerprint, so code scanning showed one alert for two (found by a CI maintainer's review,
/// fifteenth pass): two exceptions lacking `expires` for one subject, or for two rules of one
/// subject; a task listing a credential, a need or a location twice. Their JUnit test cases had
/// one classname and name too (two `missing-scope` findings of one task were both
/// `task checkout`). Now an exception's findings carry its rule, reason and expiry, the
/// JUnit name the scopes and detail, and findings alike in all of that are numbered in file
/// order. Every rule that can repeat fires at least twice here, and no two results or test
/// cases are one.
#[test]
fn fingerprints_and_junit_names_are_unique_for_every_rule_that_can_repeat() {
    use common_lint::{junit_cases, repeated, sarif_fingerprints};
    let policy = r#"version = 1

[scopes."shop:login"]
risk = "low"

[scopes."shop:admin"]
risk = "high"

[credentials.buyer]
kind = "login"
scopes = ["shop:login", "shop:admin", "Shop:Bad", "Shop:Worse", "shop:*"]
origins = ["https://shop.example.com"]

[tasks.checkout]
needs = ["shop:login", "zz:orders", "zz:refunds"]
credentials = ["buyer"]
runners = { users = ["checkpoint"] }
origin = "https://admin.example.com"
schedulers = ["cron", "cron", "cron", "1500", "1500"]
locations = ["ams", "fra", "nyc"]

# A list names an entry once: a second task repeats the first one's findings.
[tasks.refund]
needs = ["shop:login"]
credentials = ["buyer"]
runners = { users = ["checkpoint"] }
origin = "https://admin.example.com"
locations = ["ams"]

[tasks.typo]
needs = ["shop:login"]
credentials = ["buyr", "byer"]
runners = { users = ["checkpoint"] }
locations = ["ams"]

[locations.ams]
recipient = "age1notarecipient"

[locations.zrh]
recipient = "age125gmrf8vq05hsrzadtlp3ctlp7lra7q2nrkvud85y7yklqyjecwq5fet9e"

[[exceptions]]
rule = "scope-exceeds-task"
credential = "buyer"
task = "checkout"
reason = "OPS-1"

[[exceptions]]
rule = "scope-exceeds-task"
credential = "buyer"
task = "checkout"
reason = "OPS-1"

[[exceptions]]
rule = "scope-exceeds-task"
credential = "buyer"
task = "checkout"
reason = "OPS-2"

[[exceptions]]
rule = "high-risk-scope-unneeded"
credential = "buyer"
task = "checkout"
reason = "OPS-1"

[[exceptions]]
rule = "wildcard-scope"
credential = "buyer"
scopes = ["shop:*"]
reason = "until OPS-3"
expires = "2020-01-01"

[[exceptions]]
rule = "wildcard-scope"
credential = "buyer"
scopes = ["shop:*"]
reason = "until OPS-3"
expires = "2020-01-01"

[[exceptions]]
rule = "no-such-rule"
reason = "r"
expires = "2099-01-01"

[[exceptions]]
rule = "no-such-rule"
reason = "r"
expires = "2099-01-01"
"#;
    let o = lint_text(policy.as_bytes(), &["--format", "sarif"]);
    let sarif: serde_json::Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&o)));
    let prints = sarif_fingerprints(&sarif);
    let rules: Vec<&str> = prints.iter().map(|(r, _)| r.as_str()).collect();
    for rule in [
        "invalid-scope",
        "unknown-credential",
        "missing-scope",
        "scope-exceeds-task",
        "high-risk-scope-unneeded",
        "origin-mismatch",
        "invalid-exception",
        "exception-expired",
        "unknown-location",
        "duplicate-scheduler",
    ] {
        assert!(
            rules.iter().filter(|r| **r == rule).count() >= 2,
            "{rule} repeats: {rules:?}"
        );
    }
    let prints: Vec<&str> = prints.iter().map(|(_, p)| p.as_str()).collect();
    assert_eq!(repeated(&prints), Vec::<&str>::new(), "{prints:?}");
    let o = lint_text(policy.as_bytes(), &["--format", "junit"]);
    let cases = junit_cases(&stdout(&o));
    assert!(cases.len() > prints.len(), "{cases:?}");
    assert_eq!(repeated(&cases), vec![], "{cases:#?}");
}

/// One task listing a short credential 200,000 times (a 1 MB policy) made one
/// `scope-exceeds-task` per listing: 105 MB of text report and 239 MB of memory, about 1.7 GB
/// at the 16 MiB limit (twenty-fourth pass, found by the twenty-fourth pass's fixer of the
/// lint's amplification). A list names each entry once now: the repeat is refused at its
/// place, exit 2, and no finding is made per listing.
#[test]
fn a_task_listing_a_credential_many_times_is_refused_at_the_first_repeat() {
    let policy = format!(
        "version = 1\n[credentials.c]\nkind = \"login\"\nscopes = [\"a:b\", \"a:c\"]\n\
         [tasks.t]\nneeds = [\"a:b\"]\ncredentials = [{}]\n",
        ["\"c\""; 5].join(", ")
    );
    for format in ["text", "json"] {
        let o = lint_text(policy.as_bytes(), &["--format", format]);
        assert_code(&o, 2);
        let err = stderr(&o);
        assert!(
            err.contains("credential `c` is listed twice in the `credentials` of task `t`; remove the repeat")
                && err.contains("policy.toml:7:21"),
            "{err}"
        );
        assert!(!stdout(&o).contains("scope-exceeds-task"), "{}", stdout(&o));
    }
    // Listed once, it is one finding.
    let once = policy.replace(&["\"c\""; 5].join(", "), "\"c\"");
    let o = lint_text(once.as_bytes(), &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let exceeds = v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["rule"] == "scope-exceeds-task")
        .count();
    assert_eq!(exceeds, 1, "{v:#}");
}

/// A UTF-8 byte order mark shifted every column of line 1 by one in every format (found by a
/// CI maintainer's review, fifteenth pass; SARIF §3.30.2: regions SHALL NOT depend on a BOM).
/// With and without the mark, the findings, the SARIF regions, the text report and a parse
/// error's place are the same.
#[test]
fn a_byte_order_mark_does_not_shift_columns_in_any_format() {
    let text = "credentials = { old = { kind = \"token\", scopes = [\"a:b\"] } }\nversion = 1\n";
    let with_bom = format!("\u{FEFF}{text}");
    for format in ["json", "sarif", "text"] {
        let plain = lint_text(text.as_bytes(), &["--format", format]);
        let bom = lint_text(with_bom.as_bytes(), &["--format", format]);
        if format == "sarif" {
            // Each ran in its own directory, `originalUriBaseIds`: the results only.
            let results = |o: &Output| {
                serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()["runs"][0]
                    ["results"]
                    .clone()
            };
            assert_eq!(results(&bom), results(&plain));
        } else {
            assert_eq!(stdout(&bom), stdout(&plain), "{format}");
        }
    }
    let o = lint_text(with_bom.as_bytes(), &["--format", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let f = &v["findings"][0];
    assert_eq!(
        (&f["line"], &f["column"], &f["end_column"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(17),
            &serde_json::json!(20)
        ),
        "{f}"
    );
    let o = lint_text(with_bom.as_bytes(), &["--format", "sarif"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let region = &v["runs"][0]["results"][0]["locations"][0]["physicalLocation"]["region"];
    assert_eq!(region["startColumn"], 17, "{region}");
    // A parse error on line 1, and a file's first bad byte there.
    let o = lint_text(b"\xEF\xBB\xBFverion = 1\n", &[]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("policy.toml:1:1"), "{}", stderr(&o));
    let o = lint_text(b"\xEF\xBB\xBF# caf\xe9\n", &[]);
    assert_code(&o, 2);
    assert!(stderr(&o).contains("policy.toml:1:6"), "{}", stderr(&o));
}

/// The `run:` script of the step named `name` in a GitHub Actions workflow, dedented (a YAML
/// literal block: the lines after `run: |` indented deeper than `run:`).
fn workflow_step_script(workflow: &str, name: &str) -> String {
    let lines: Vec<&str> = workflow.lines().collect();
    let step = lines
        .iter()
        .position(|l| l.trim() == format!("- name: {name}"))
        .unwrap_or_else(|| panic!("no step {name:?}"));
    let run = step
        + lines[step..]
            .iter()
            .position(|l| l.trim() == "run: |")
            .unwrap_or_else(|| panic!("step {name:?} has no `run: |`"));
    let indent = |l: &str| l.len() - l.trim_start().len();
    let key = indent(lines[run]);
    let body: Vec<&str> = lines[run + 1..]
        .iter()
        .take_while(|l| l.trim().is_empty() || indent(l) > key)
        .copied()
        .collect();
    let cut = body
        .iter()
        .filter(|l| !l.trim().is_empty())
        .map(|l| indent(l))
        .min()
        .unwrap_or(0);
    body.iter()
        .map(|l| l.get(cut..).unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

/// The example workflow's step `Lint the policies (SARIF)` run in `repo` as GitHub runs a
/// `run:` script (bash -eo pipefail) over `policies`: what it wrote to `$GITHUB_OUTPUT`, and
/// the names of the files in `scopevault-sarif/`, sorted.
fn run_the_workflow_lint_step(
    workflow: &str,
    repo: &Path,
    policies: &str,
) -> (String, Vec<String>) {
    let script = workflow_step_script(workflow, "Lint the policies (SARIF)");
    let output = repo.join("github_output");
    std::fs::write(&output, "").unwrap();
    let o = std::process::Command::new("bash")
        .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
        .current_dir(repo)
        .env("PATH", path_with_scopevault_first())
        .env("POLICIES", policies)
        .env("GITHUB_OUTPUT", &output)
        .env("NO_COLOR", "1")
        .env_remove("SCOPEVAULT_VAULT")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    let mut files: Vec<String> = std::fs::read_dir(repo.join("scopevault-sarif"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    (std::fs::read_to_string(&output).unwrap(), files)
}

/// upload-sarif sorts the `.sarif` files of a directory by name into kinds of analysis: one
/// ending `.quality.sarif` goes to Code Quality, one ending `.csra.sarif` to a risk assessment
/// (whose upload needs an assessment id a workflow does not have, so the step fails), the
/// rest to code scanning (codeql-action `src/analyses.ts`). The example workflow named each
/// SARIF after its policy, so `ci/prod.quality.toml` wrote `…-prod.quality.sarif`, whose
/// alerts went to Code Quality rather than code scanning, and `eu.csra.toml` failed the upload
/// (found by a CI maintainer wiring lint in from the docs, thirty-third pass). The file names
/// keep no dot of the policy's name now: every SARIF is code scanning's.
#[test]
fn the_example_workflow_names_every_sarif_as_code_scannings() {
    let workflow = std::fs::read_to_string(root().join("examples/ci/github-actions.yml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("ci")).unwrap();
    let blocking = fixture("rules/scope-exceeds-task.fires.toml");
    for name in ["prod.quality.toml", "eu.csra.toml", "policy.toml"] {
        copy_in(&repo.join("ci"), &blocking, name);
    }
    let (output, files) = run_the_workflow_lint_step(&workflow, repo, "ci/*.toml");
    assert_eq!(output, "code=1\n");
    assert_eq!(files.len(), 3, "{files:?}");
    // upload-sarif's predicate for code scanning.
    let code_scanning = |name: &str| {
        name.ends_with(".sarif")
            && !name.ends_with(".quality.sarif")
            && !name.ends_with(".csra.sarif")
    };
    for f in &files {
        assert!(code_scanning(f), "{f} is not code scanning's: {files:?}");
    }
}

/// Several policies in one repository: each SARIF run had the same tool and no
/// `automationDetails`, so their alerts were one category and upload-sarif refuses several runs
/// with one category (found by a CI maintainer's review, fifteenth pass). Each run's
/// `automationDetails.id` is now `scopevault-lint/<the policy's URI>/`, and the example
/// workflow lints each policy into its own SARIF in one directory, uploaded together: its lint
/// step is run here as GitHub runs it (bash -eo pipefail), over three policies.
#[test]
fn each_policy_is_its_own_code_scanning_category_and_the_example_workflow_lints_several() {
    let workflow = std::fs::read_to_string(root().join("examples/ci/github-actions.yml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("ci")).unwrap();
    copy_in(repo, &fixture("clean.toml"), "policy.toml");
    copy_in(
        &repo.join("ci"),
        &fixture("rules/scope-exceeds-task.fires.toml"),
        "policy.toml",
    );
    // By the CLI: two policies, two categories.
    let id = |policy: &str| {
        let o = scopevault(repo, &["lint", policy, "--format", "sarif"]);
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["runs"][0]["automationDetails"]["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(id("policy.toml"), "scopevault-lint/policy.toml/");
    assert_eq!(id("ci/policy.toml"), "scopevault-lint/ci/policy.toml/");
    // The workflow's lint step, as GitHub runs a `run:` script.
    let run = |policies: &str| run_the_workflow_lint_step(&workflow, repo, policies);
    let (output, files) = run("policy.toml ci/*.toml");
    assert_eq!(output, "code=1\n", "the worst exit code");
    assert_eq!(files, ["1-policy.sarif", "2-policy.sarif"]);
    let ids: Vec<String> = files
        .iter()
        .map(|f| {
            let v: serde_json::Value = serde_json::from_str(
                &std::fs::read_to_string(repo.join("scopevault-sarif").join(f)).unwrap(),
            )
            .unwrap();
            v["runs"][0]["automationDetails"]["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(
        ids,
        [
            "scopevault-lint/policy.toml/",
            "scopevault-lint/ci/policy.toml/"
        ]
    );
    // A policy that does not parse: exit 2 is kept, and it has no SARIF (nothing stale).
    std::fs::write(repo.join("broken.toml"), "version = [").unwrap();
    let (output, files) = run("policy.toml broken.toml");
    assert_eq!(output, "code=2\n");
    assert_eq!(files, ["1-policy.sarif"]);
    // The upload step takes the directory and sets no category of its own.
    let upload = &workflow[workflow.find("- name: Upload to code scanning").unwrap()..];
    let upload = &upload[..upload.find("- name: Show findings").unwrap()];
    assert!(
        upload.contains("sarif_file: scopevault-sarif\n"),
        "{upload}"
    );
    assert!(
        upload.contains("hashFiles('scopevault-sarif/*.sarif')"),
        "{upload}"
    );
    assert!(!upload.contains("category:"), "{upload}");
}

/// JUnit said `not run (needs --vault)` — the switch is `--with-vault` — and counted the rules
/// that did not run as passed test cases (found by a CI maintainer's review, fifteenth pass): a
/// dashboard showed `missing-secret` green though nothing was checked. They are skipped test
/// cases now, their message naming the real switch, and the header counts them.
#[test]
fn junit_rules_not_run_are_skipped_and_name_the_real_switch() {
    let dir = tempfile::tempdir().unwrap();
    let help = stdout(&scopevault(dir.path(), &["lint", "--help"]));
    assert!(help.contains("--with-vault"), "{help}");
    let o = lint_file(&fixture("clean.toml"), &["--format", "junit"]);
    assert_code(&o, 0);
    let xml = stdout(&o);
    assert!(!xml.contains("--vault)"), "{xml}");
    let case = |rule: &str| -> String {
        let at = xml
            .find(&format!("classname=\"scopevault.lint.{rule}\""))
            .unwrap_or_else(|| panic!("no {rule}: {xml}"));
        xml[at..][..xml[at..].find('\n').unwrap()].to_owned()
    };
    for rule in [
        "missing-secret",
        "both-totp-seeds",
        "unusable-totp-seed",
        "rotation-overdue",
        "vault-differs-from-policy",
        "totp-seed-handed-out",
    ] {
        let c = case(rule);
        assert!(
            c.contains("name=\"not run\"")
                && c.contains("<skipped message=\"not run: it needs --with-vault"),
            "{c}"
        );
    }
    for rule in [
        "credential-never-fetched",
        "task-credential-never-fetched",
        "runner-never-seen",
        "task-never-fetched",
    ] {
        let c = case(rule);
        assert!(
            c.contains("<skipped message=\"not run: it needs --audit LOG"),
            "{c}"
        );
    }
    let ran = case("scope-exceeds-task");
    assert!(
        ran.contains("name=\"no findings\"") && !ran.contains("skipped"),
        "{ran}"
    );
    // The rules that need the vault or audit logs did not run: the header counts them
    // skipped.
    let not_run = scopevault::policy::lint::RULES
        .iter()
        .filter(|r| r.needs_vault || r.needs_audit)
        .count();
    assert_eq!(not_run, 11);
    assert!(
        xml.contains(&format!(
            "tests=\"{}\" failures=\"0\" errors=\"0\" skipped=\"{not_run}\"",
            scopevault::policy::lint::RULES.len()
        )),
        "{xml}"
    );
}

/// `--output` naming the policy file overwrote the policy with the report (found by a CI
/// maintainer's review, fifteenth pass). The same file — by its name, another spelling of it,
/// a hard link or a symlink — or an `--audit` log is refused with exit 2, and left as it was.
#[test]
fn output_naming_the_policy_or_an_audit_log_is_refused_and_leaves_it_alone() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let name = copy_in(d, &root().join("examples/policy.toml"), "policy.toml");
    let before = std::fs::read(d.join(&name)).unwrap();
    std::fs::hard_link(d.join(&name), d.join("hard.toml")).unwrap();
    std::os::unix::fs::symlink(d.join(&name), d.join("soft.toml")).unwrap();
    std::fs::create_dir(d.join("sub")).unwrap();
    for out in [
        "policy.toml",
        "./sub/../policy.toml",
        "hard.toml",
        "soft.toml",
    ] {
        let o = scopevault(d, &["lint", &name, "--format", "sarif", "--output", out]);
        assert_code(&o, 2);
        assert!(
            stderr(&o).contains(&format!("--output {out}: that is the policy file")),
            "{out}: {}",
            stderr(&o)
        );
        assert_eq!(std::fs::read(d.join(&name)).unwrap(), before, "{out}");
    }
    std::fs::write(d.join("audit.jsonl"), "not a log\n").unwrap();
    let o = scopevault(
        d,
        &[
            "lint",
            &name,
            "--audit",
            "audit.jsonl",
            "--output",
            "audit.jsonl",
        ],
    );
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("that is an audit log"),
        "{}",
        stderr(&o)
    );
    assert_eq!(
        std::fs::read(d.join("audit.jsonl")).unwrap(),
        b"not a log\n"
    );
}

/// Twenty-eighth pass (the twenty-seventh pass's review): `--output` spelled as the policy
/// file, both in a directory that does not exist, was not taken for the policy file (neither
/// path could be resolved, so the two never met) and lint went on to fail reading the policy.
/// The one same-file test lint now shares with `status --output` takes one path for one file
/// whether or not it exists: refused as the policy file, exit 2, nothing made.
#[test]
fn output_spelled_as_a_policy_file_in_a_missing_directory_is_refused_as_the_policy_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = scopevault(
        d,
        &["lint", "gone/policy.toml", "--output", "gone/policy.toml"],
    );
    assert_code(&o, 2);
    assert!(
        stderr(&o).contains("--output gone/policy.toml: that is the policy file"),
        "{}",
        stderr(&o)
    );
    assert_eq!(std::fs::read_dir(d).unwrap().count(), 0);
}

/// `--output` naming the vault or the passphrase file of `--with-vault` deleted it (twenty-
/// second pass, found by an attacker as a CI maintainer): only the policy and the `--audit`
/// logs were protected, and the stale-report removal took the vault before lint failed with
/// "no vault". Every file lint reads — the vault, `--passphrase-file`, `--identity-file`, what
/// `--passphrase-fd` refers to, the state directory — by any name, is refused with exit 2
/// before anything is removed; and a file that is recognisably not a report (a vault, an age
/// file or identity) is never removed nor overwritten, named as an input or not.
#[test]
fn output_naming_the_vault_or_an_unlock_file_is_refused_and_leaves_it_alone() {
    let e = crate::common::vault::Env::new();
    e.init_with_cred();
    let policy = e.path("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\n[credentials.shop-buyer]\nkind = \"login\"\nscopes = [\"x:y\"]\n",
    )
    .unwrap();
    let policy = policy.to_str().unwrap().to_owned();
    let vault = e.vault();
    let vault_s = vault.to_str().unwrap().to_owned();
    let pf = e.pf();
    let vault_before = std::fs::read(&vault).unwrap();
    let pass_before = std::fs::read(&pf).unwrap();
    std::fs::hard_link(&vault, e.path("vault-link")).unwrap();
    let lint = |extra: &[&str]| {
        let mut args = vec!["lint", policy.as_str(), "--with-vault", "--vault"];
        args.push(&vault_s);
        args.extend_from_slice(&["--passphrase-file", &pf]);
        args.extend_from_slice(extra);
        e.run(&args, b"")
    };
    for (out, what) in [
        (vault_s.clone(), "that is the vault"),
        (
            e.path("vault-link").to_str().unwrap().to_owned(),
            "that is the vault",
        ),
        (
            format!("{}/../vaults/vault.scopevault", e.path("vaults").display()),
            "that is the vault",
        ),
        (pf.clone(), "that is the passphrase file"),
    ] {
        let o = lint(&["--output", &out]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{out}: {err}");
        assert!(err.contains(what), "{out}: {err}");
        assert_eq!(std::fs::read(&vault).unwrap(), vault_before, "{out}");
        assert_eq!(std::fs::read(&pf).unwrap(), pass_before, "{out}");
    }
    // The vault still opens: the run did not delete it.
    let o = lint(&["--output", e.path("report.txt").to_str().unwrap()]);
    assert!(
        o.status.code() == Some(0) || o.status.code() == Some(1),
        "{o:?}"
    );
    // What `--passphrase-fd` refers to, when it is a regular file.
    let pass2 = e.path("pass2");
    std::fs::write(&pass2, format!("{}\n", crate::common::vault::PASS)).unwrap();
    let mut cmd = e.cmd();
    cmd.args([
        "lint",
        &policy,
        "--with-vault",
        "--vault",
        &vault_s,
        "--passphrase-fd",
        "0",
        "--output",
        pass2.to_str().unwrap(),
    ])
    .stdin(std::fs::File::open(&pass2).unwrap());
    let o = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("that is what --passphrase-fd 0 reads"),
        "{err}"
    );
    assert!(std::fs::read(&pass2).unwrap().starts_with(b"correct horse"));
    // `--identity-file`, checked before the vault is opened.
    let id = e.path("id.txt");
    std::fs::write(&id, "# an identity\n").unwrap();
    let id_s = id.to_str().unwrap();
    let o = e.run(
        &["lint", &policy, "--identity-file", id_s, "--output", id_s],
        b"",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("that is the identity file"), "{err}");
    assert_eq!(std::fs::read(&id).unwrap(), b"# an identity\n");
    // The state directory (the rollback record, the audit anchors).
    let record = e.path("state/generations.json");
    let record_before = std::fs::read(&record).unwrap();
    let o = e.run(
        &["lint", &policy, "--output", record.to_str().unwrap()],
        b"",
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("scopevault's state directory"), "{err}");
    assert_eq!(std::fs::read(&record).unwrap(), record_before);
    // Not named as an input at all: a copy of the vault, an age file, an age identity.
    std::fs::copy(&vault, e.path("backup.scopevault")).unwrap();
    std::fs::write(
        e.path("secret.age"),
        b"age-encryption.org/v1\n-> X25519 abc\n",
    )
    .unwrap();
    std::fs::write(
        e.path("secret.asc"),
        b"-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n",
    )
    .unwrap();
    std::fs::write(
        e.path("key.txt"),
        b"# created: 2024-01-01\n# public key: age1xyz\nAGE-SECRET-KEY-1QQQ\n",
    )
    .unwrap();
    for (name, what) in [
        ("backup.scopevault", "a scopevault vault"),
        ("secret.age", "an age-encrypted file"),
        ("secret.asc", "an age-encrypted file"),
        ("key.txt", "an age identity"),
    ] {
        let before = std::fs::read(e.path(name)).unwrap();
        // A policy that does not parse: the run that writes no report removes a stale one.
        let bad = e.path("bad.toml");
        std::fs::write(&bad, "version = \n").unwrap();
        for p in [policy.as_str(), bad.to_str().unwrap()] {
            let o = e.run(
                &["lint", p, "--output", e.path(name).to_str().unwrap()],
                b"",
            );
            let err = String::from_utf8_lossy(&o.stderr);
            assert_eq!(o.status.code(), Some(2), "{name}: {err}");
            assert!(err.contains(what), "{name}: {err}");
            assert_eq!(std::fs::read(e.path(name)).unwrap(), before, "{name}");
        }
    }
}

/// A run that exits 2 without a report (here: a policy that does not parse) left an earlier
/// `--output` file in place (found by a CI maintainer's review, fifteenth pass): the example
/// workflow's upload step, which runs when the file exists, published the last good report as
/// if it were this commit's. Such a run now removes it; a run that writes a report (a policy
/// with an invalid scope exits 2 after reporting) leaves the current one; what is not a
/// regular file (a symlink) is left alone.
#[test]
fn a_run_that_writes_no_report_leaves_no_stale_output_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = copy_in(d, &fixture("clean.toml"), "policy.toml");
    let o = scopevault(
        d,
        &["lint", &good, "--format", "sarif", "--output", "out.sarif"],
    );
    assert_code(&o, 0);
    assert!(d.join("out.sarif").exists());
    std::fs::write(d.join("broken.toml"), "version = [\n").unwrap();
    let o = scopevault(
        d,
        &[
            "lint",
            "broken.toml",
            "--format",
            "sarif",
            "--output",
            "out.sarif",
        ],
    );
    assert_code(&o, 2);
    assert!(!d.join("out.sarif").exists(), "a stale report is left");
    // A report written with exit 2 is this run's, and stays.
    std::fs::write(
        d.join("invalid.toml"),
        "version = 1\n[tasks.t]\nneeds = [\"a::b\"]\nrunners = { users = [\"u\"] }\n",
    )
    .unwrap();
    let o = scopevault(
        d,
        &[
            "lint",
            "invalid.toml",
            "--format",
            "json",
            "--output",
            "out.json",
        ],
    );
    assert_code(&o, 2);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.join("out.json")).unwrap()).unwrap();
    assert_eq!(v["findings"][0]["rule"], "invalid-scope");
    // A symlink is not removed (nor written through on failure).
    std::fs::write(d.join("target.sarif"), "kept").unwrap();
    std::os::unix::fs::symlink(d.join("target.sarif"), d.join("link.sarif")).unwrap();
    let o = scopevault(
        d,
        &[
            "lint",
            "broken.toml",
            "--format",
            "sarif",
            "--output",
            "link.sarif",
        ],
    );
    assert_code(&o, 2);
    assert!(d.join("link.sarif").is_symlink());
    assert_eq!(std::fs::read(d.join("target.sarif")).unwrap(), b"kept");
}

/// pre-commit from PyPI in a venv (scripts/setup/pre-commit), or a skip.
fn pre_commit() -> Option<std::path::PathBuf> {
    let out = std::process::Command::new(root().join("scripts/setup/pre-commit"))
        .env("CARGO_TARGET_DIR", root().join("target"))
        .output()
        .ok()?;
    if !out.status.success() {
        skip::skip(&format!(
            "pre-commit could not be installed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
        return None;
    }
    Some(std::path::PathBuf::from(
        String::from_utf8(out.stdout).ok()?.trim(),
    ))
}

/// PATH with the directory of the scopevault under test first, for the hooks that run
/// `scopevault` by name.
fn path_with_scopevault_first() -> String {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_scopevault"))
        .parent()
        .unwrap();
    format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A fresh git repository (with a `ci/` directory) for the real pre-commit, scopevault first
/// on PATH, or None (a skip) when pre-commit cannot be had.
struct PreCommitRepo {
    dir: tempfile::TempDir,
    repo: std::path::PathBuf,
    path: String,
    pre_commit: std::path::PathBuf,
}

impl PreCommitRepo {
    fn new() -> Option<PreCommitRepo> {
        let pre_commit = pre_commit()?;
        let dir = tempfile::tempdir().unwrap();
        let repo = dir.path().join("repo");
        std::fs::create_dir_all(repo.join("ci")).unwrap();
        let r = PreCommitRepo {
            dir,
            repo,
            path: path_with_scopevault_first(),
            pre_commit,
        };
        r.git(&["init", "-q"]);
        Some(r)
    }

    fn run(&self, program: &Path, args: &[&str]) -> Output {
        std::process::Command::new(program)
            .args(args)
            .current_dir(&self.repo)
            .env("PATH", &self.path)
            .env("PRE_COMMIT_HOME", self.dir.path().join("cache"))
            .env("NO_COLOR", "1")
            .env_remove("SCOPEVAULT_VAULT")
            .output()
            .unwrap()
    }

    fn git(&self, args: &[&str]) {
        let o = self.run(Path::new("git"), args);
        assert!(o.status.success(), "git {args:?}: {}", stderr(&o));
    }

    /// `pre-commit ARGS…`.
    fn pre_commit(&self, args: &[&str]) -> Output {
        self.run(&self.pre_commit, args)
    }
}

/// examples/ci/pre-commit-config.yaml under the real pre-commit: its default `types: [file]`
/// skipped a policy.toml that is a symlink (found by a CI maintainer's review, fifteenth pass),
/// and `types_or: [file, symlink]` alone still does (`types` are all required). A staged
/// symlink to a blocking policy is refused now; a regular file still is, and a clean one
/// passes.
#[test]
fn the_example_pre_commit_config_lints_a_symlinked_policy() {
    let Some(r) = PreCommitRepo::new() else {
        return;
    };
    let (repo, git) = (&r.repo, |args: &[&str]| r.git(args));
    std::fs::copy(
        root().join("examples/ci/pre-commit-config.yaml"),
        repo.join(".pre-commit-config.yaml"),
    )
    .unwrap();
    let blocking = fixture("rules/scope-exceeds-task.fires.toml");
    copy_in(&repo.join("ci"), &blocking, "prod.toml");
    std::os::unix::fs::symlink("ci/prod.toml", repo.join("policy.toml")).unwrap();
    git(&["add", "-A"]);
    let o = r.pre_commit(&["run"]);
    let all = stdout(&o) + &stderr(&o);
    assert!(!o.status.success(), "the symlink must be linted: {all}");
    assert!(
        all.contains("security-warning[scope-exceeds-task]"),
        "{all}"
    );
    // A regular file: linted as before.
    std::fs::remove_file(repo.join("policy.toml")).unwrap();
    copy_in(repo, &blocking, "policy.toml");
    git(&["add", "-A"]);
    let o = r.pre_commit(&["run"]);
    assert!(!o.status.success(), "{}", stdout(&o));
    copy_in(repo, &fixture("clean.toml"), "policy.toml");
    git(&["add", "-A"]);
    let o = r.pre_commit(&["run"]);
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("Passed"), "{}", stdout(&o));
}

/// examples/ci/pre-commit-config.yaml says to add the path of the file a symlinked policy.toml
/// points to to `files`, so that a commit changing only that file runs the hook. Done, a
/// commit changing both (the link and its target added together, `pre-commit run
/// --all-files`) had pre-commit pass both names, `scopevault lint policy.toml ci/prod.toml`,
/// and lint takes one file: exit 2, `unexpected argument`, whatever the policy held (found by
/// a CI maintainer wiring lint in from the docs, thirty-third pass). The hook passes no file
/// names now and lints policy.toml, whichever of the files `files` names changed.
#[test]
fn the_example_pre_commit_config_with_the_link_target_in_files_lints_the_policy_once() {
    let Some(r) = PreCommitRepo::new() else {
        return;
    };
    let (repo, git) = (&r.repo, |args: &[&str]| r.git(args));
    // As the config's comment says: the link's target added to `files`.
    let config =
        std::fs::read_to_string(root().join("examples/ci/pre-commit-config.yaml")).unwrap();
    let plain = r"files: ^policy\.toml$";
    assert!(config.contains(plain), "{config}");
    let config = config.replace(plain, r"files: ^(policy\.toml|ci/prod\.toml)$");
    std::fs::write(repo.join(".pre-commit-config.yaml"), config).unwrap();
    let blocking = fixture("rules/scope-exceeds-task.fires.toml");
    let clean = fixture("clean.toml");
    let hook = |what: &str, blocks: bool| {
        let o = r.pre_commit(&["run"]);
        let all = stdout(&o) + &stderr(&o);
        assert!(!all.contains("unexpected argument"), "{what}: {all}");
        assert_eq!(!o.status.success(), blocks, "{what}: {all}");
        assert_eq!(
            all.contains("security-warning[scope-exceeds-task]"),
            blocks,
            "{what}: {all}"
        );
        assert!(
            all.contains("scopevault lint"),
            "{what}: the hook ran: {all}"
        );
    };
    // The link and its target staged together: both names match `files`.
    copy_in(&repo.join("ci"), &blocking, "prod.toml");
    std::os::unix::fs::symlink("ci/prod.toml", repo.join("policy.toml")).unwrap();
    git(&["add", "-A"]);
    hook("link and target added together, blocking", true);
    copy_in(&repo.join("ci"), &clean, "prod.toml");
    git(&["add", "-A"]);
    hook("link and target added together, clean", false);
    git(&[
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@example.com",
        "commit",
        "-qm",
        "policy",
    ]);
    // Only the target changes: the hook runs, on the policy.
    copy_in(&repo.join("ci"), &blocking, "prod.toml");
    git(&["add", "-A"]);
    hook("only the target changed", true);
    let o = r.pre_commit(&["run", "--all-files"]);
    let all = stdout(&o) + &stderr(&o);
    assert!(!o.status.success(), "{all}");
    assert!(!all.contains("unexpected argument"), "{all}");
}

/// A `cargo` in `dir` that records its arguments in `dir/args`, for the install steps of the
/// example CI files.
fn recording_cargo(dir: &Path) {
    let stub = dir.join("cargo");
    std::fs::write(
        &stub,
        "#!/bin/sh\nprintf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&stub, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
}

/// The [`recording_cargo`] in `dir` ran `cargo install --locked` of
/// `https://git.example.com/scopevault` at tag `v1.2.3`.
fn assert_installed_from_the_pinned_tag(dir: &Path) {
    assert_eq!(
        std::fs::read_to_string(dir.join("args")).unwrap(),
        "install\n--locked\n--git\nhttps://git.example.com/scopevault\n--tag\nv1.2.3\nscopevault\n"
    );
}

/// examples/ci/github-actions.yml installed with `cargo install --locked scopevault --version
/// 0.1.0`, but the crate is not on crates.io, so the job failed at its first step; and its
/// `permissions` lacked `actions: read`, which upload-sarif needs in a private repository
/// (found by a CI maintainer's review, fifteenth pass). It now builds from the project's git
/// repository at a pinned tag, refusing to run while the placeholders are unset. Its install
/// step is run here with a `cargo` that records its arguments.
#[test]
fn the_example_workflow_builds_scopevault_from_a_pinned_tag_and_may_upload_from_a_private_repository(
) {
    let workflow = std::fs::read_to_string(root().join("examples/ci/github-actions.yml")).unwrap();
    assert!(!workflow.contains("--version 0.1.0"), "{workflow}");
    let permissions = &workflow[workflow.find("\npermissions:\n").unwrap()..];
    let permissions = &permissions[..permissions[1..].find("\n\n").unwrap()];
    for want in [
        "  contents: read ",
        "  security-events: write ",
        "  actions: read ",
    ] {
        assert!(permissions.contains(want), "{want:?} in {permissions}");
    }
    let script = workflow_step_script(&workflow, "Install scopevault");
    let dir = tempfile::tempdir().unwrap();
    recording_cargo(dir.path());
    let env_of = |key: &str| -> String {
        let line = workflow
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{key}:")))
            .unwrap_or_else(|| panic!("no {key} in the workflow's env"));
        line.split_once(':')
            .unwrap()
            .1
            .split('#')
            .next()
            .unwrap()
            .trim()
            .to_owned()
    };
    let install = |git: &str, tag: &str| {
        std::process::Command::new("bash")
            .args(["--noprofile", "--norc", "-eo", "pipefail", "-c", &script])
            .current_dir(dir.path())
            .env(
                "PATH",
                format!(
                    "{}:{}",
                    dir.path().display(),
                    std::env::var("PATH").unwrap_or_default()
                ),
            )
            .env("SCOPEVAULT_GIT", git)
            .env("SCOPEVAULT_TAG", tag)
            .output()
            .unwrap()
    };
    // As shipped: the placeholders stop the job with an error saying what to set.
    let o = install(&env_of("SCOPEVAULT_GIT"), &env_of("SCOPEVAULT_TAG"));
    assert!(!o.status.success());
    assert!(
        stdout(&o).contains("::error::set SCOPEVAULT_GIT and SCOPEVAULT_TAG"),
        "{}",
        stdout(&o)
    );
    assert!(!dir.path().join("args").exists(), "cargo ran");
    // Filled in: cargo builds that repository at that tag, locked.
    let o = install("https://git.example.com/scopevault", "v1.2.3");
    assert!(o.status.success(), "{}{}", stdout(&o), stderr(&o));
    assert_installed_from_the_pinned_tag(dir.path());
}

/// `scopevault ARGS…` in `dir` as [`scopevault`] runs it, stdin closed, waited for at most
/// 60 s: a run still waiting then is killed and fails the test instead of hanging it.
fn lint_within(dir: &Path, args: &[&str], what: &str) -> Output {
    use std::process::{Command, Stdio};
    let child = Command::new(env!("CARGO_BIN_EXE_scopevault"))
        .args(args)
        .current_dir(dir)
        .env_remove("SCOPEVAULT_VAULT")
        .env_remove("SCOPEVAULT_SOCKET")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    crate::common::output_within(child, 60, what)
}

/// Found by attacking lint from lint-rules.md (nineteenth pass): a pull request that commits
/// `policy.toml` as a FIFO, or as a link to one or to `/dev/ptmx` (on every Linux runner),
/// made `lint` wait for ever in every format, where "Size limits" promises a cost bounded
/// whatever the policy says (`lint --audit` already refused a FIFO log at once). The policy
/// file is now opened without blocking and anything but a regular file is refused at once,
/// exit 2, naming what it is; `policy apply` reads a policy the same way.
#[test]
fn a_policy_that_is_a_fifo_or_a_device_is_refused_at_once() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join(".git")).unwrap();
    let fifo = d.join("pipe");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    symlink(&fifo, d.join("policy.toml")).unwrap();
    let mut cases = vec![
        ("pipe", "not a regular file (a FIFO)"),
        ("policy.toml", "not a regular file (a FIFO)"),
    ];
    if Path::new("/dev/ptmx").exists() {
        symlink("/dev/ptmx", d.join("ptmx.toml")).unwrap();
        cases.push(("ptmx.toml", "not a regular file (a character device)"));
    }
    for (name, why) in cases {
        for format in ["text", "sarif"] {
            let out = format!("out.{format}");
            let o = lint_within(
                d,
                &["lint", name, "--format", format, "--output", &out],
                &format!("lint {name} --format {format}"),
            );
            assert_code(&o, 2);
            assert!(
                stderr(&o).contains(&format!("{name}: cannot read the policy"))
                    && stderr(&o).contains(why),
                "{name} {format}: {}",
                stderr(&o)
            );
            assert!(!d.join(&out).exists(), "{name} {format}");
        }
        let o = lint_within(
            d,
            &["policy", "apply", "--dry-run", name],
            &format!("policy apply {name}"),
        );
        assert_code(&o, 2);
        assert!(
            stderr(&o).contains(why),
            "policy apply {name}: {}",
            stderr(&o)
        );
    }
}

/// Found by attacking lint from lint-rules.md (nineteenth pass): a `policy.toml` committed as
/// a link to `/proc/self/fd/3` reaches whatever the CI step left open as fd 3 — a deleted
/// file, a memfd (`exec --files` hands values over in memfds), a pipe — and the lint quoted
/// the parser's message and the source line, the secret in it, into the log. The link-out
/// check resolved the path and, finding no real path (`/memfd:cred (deleted)`), took it for
/// no link. The text is now quoted only when the real path of the file read (confirmed to be
/// that very file: same device and inode, a regular file) is established inside the
/// repository; anything else counts as out.
#[test]
fn a_policy_linked_to_an_open_descriptor_is_not_quoted() {
    use std::io::Write;
    use std::os::fd::AsRawFd;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = d.join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::create_dir_all(repo.join("ci")).unwrap();
    std::os::unix::fs::symlink("/proc/self/fd/3", repo.join("policy.toml")).unwrap();
    // `scopevault lint policy.toml` run by bash after `prepare` has set up its fd 3.
    let lint_with_fd3 = |prepare: &str| -> Output {
        let script = format!("{prepare}\nexec \"$0\" lint policy.toml");
        let o = std::process::Command::new("bash")
            .args(["--noprofile", "--norc", "-c", &script])
            .arg(env!("CARGO_BIN_EXE_scopevault"))
            .current_dir(&repo)
            .env_remove("SCOPEVAULT_VAULT")
            .env_remove("SCOPEVAULT_SOCKET")
            .env("NO_COLOR", "1")
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert_code(&o, 2);
        o
    };
    let not_quoted = |o: &Output, secret: &str, why: &str, what: &str| {
        let all = format!("{}{}", stdout(o), stderr(o));
        assert!(!all.contains(secret), "{what}: {all}");
        assert!(all.contains(why), "{what}: {all}");
    };
    let out = "(source not quoted: policy.toml is a link out of the repository)";

    // A deleted file outside the repository.
    let deleted = d.join("secret.txt");
    std::fs::write(&deleted, "api_token = \"DELETED-FILE-SECRET-1234\"\n").unwrap();
    let o = lint_with_fd3(&format!(
        "exec 3<'{}' && rm '{}'",
        deleted.display(),
        deleted.display()
    ));
    not_quoted(&o, "DELETED-FILE-SECRET-1234", out, "a deleted file");

    // A memfd (reopened through this process's descriptor).
    let memfd =
        rustix::fs::memfd_create("cred", rustix::fs::MemfdFlags::CLOEXEC).expect("memfd_create");
    let mut memfd = std::fs::File::from(memfd);
    memfd
        .write_all(b"password = \"MEMFD-SECRET-5678\"\n")
        .unwrap();
    let o = lint_with_fd3(&format!(
        "exec 3</proc/{}/fd/{}",
        std::process::id(),
        memfd.as_raw_fd()
    ));
    not_quoted(&o, "MEMFD-SECRET-5678", out, "a memfd");

    // A pipe: not a regular file, refused before anything is read.
    let o = lint_with_fd3("exec 3< <(printf 'x = \"PIPE-SECRET-9\"\\n')");
    not_quoted(&o, "PIPE-SECRET-9", "not a regular file (a FIFO)", "a pipe");

    // A file of the repository reached the same way is quoted as the file would be.
    std::fs::write(
        repo.join("ci/prod.toml"),
        "version = 1\nbogus = \"in-repo-marker\"\n",
    )
    .unwrap();
    let o = lint_with_fd3("exec 3<ci/prod.toml");
    assert!(
        stderr(&o).contains("2 | bogus = \"in-repo-marker\"") && !stderr(&o).contains("not quoted"),
        "{}",
        stderr(&o)
    );
}

/// Found by attacking lint from lint-rules.md (nineteenth pass): lint-rules.md promises that a
/// policy or a file name cannot write a CI log's command lines, and the escaping of control
/// characters kept `\n::add-mask::` off a line's start, but GitHub Actions' runner has two
/// more ways in. It takes `##[error …]` or `##[add-mask]…` anywhere in a line (the older
/// syntax, actions/runner `ActionCommand.TryParse`), and an exception's `rule` was printed as
/// it is in the `invalid-exception` message and its source line; and it takes `::` at a line's
/// start after blanks, and a policy named `::error file=…::lint passed.toml` began the
/// summary line (stdout in text, stderr in the other formats). Now no line lint writes, in
/// any format, to stdout, stderr or `--output`, is a workflow command: in text a `[` after
/// `##` is written `\u{5b}` and the first `:` of a line-leading `::` `\u{3a}`; JSON and SARIF
/// write that `[` as the JSON escape `\u005b` and JUnit as `&#91;` (and such a `:` as
/// `&#58;`), so their readers get the text unchanged.
#[test]
fn no_line_lint_writes_is_a_github_actions_workflow_command() {
    let commands = |text: &str| -> Vec<String> {
        text.split(['\n', '\r'])
            .filter(|l| l.trim_start().starts_with("::") || l.contains("##["))
            .map(str::to_owned)
            .collect()
    };
    let none = |o: &Output, what: &str| {
        for (stream, text) in [("stdout", stdout(o)), ("stderr", stderr(o))] {
            let found = commands(&text);
            assert!(found.is_empty(), "{what}, {stream}: {found:?}\n{text}");
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::create_dir(d.join(".git")).unwrap();
    let rule = "##[error file=policy.toml;line=1]scopevault: policy is clean\\n::add-mask::buyer";
    let policy = format!(
        "version = 1\n[credentials.buyer]\nkind = \"login\"\nscopes = [\"shop:login\"]\n[tasks.t]\nneeds = [\"shop:login\"]\ncredentials = [\"buyer\"]\nrunners = {{ users = [\"root\"] }}\n[[exceptions]]\nrule = \"{rule}\"\nreason = \"##[add-mask]buyer\"\nexpires = \"2099-01-01\"\n"
    );
    let names = [
        "policy.toml",
        "::error file=policy.toml,line=1::lint passed.toml",
        "  ::notice::spaced.toml",
    ];
    for name in names {
        std::fs::write(d.join(name), &policy).unwrap();
        for format in ["text", "json", "sarif", "junit"] {
            let what = format!("{name:?} --format {format}");
            let o = scopevault(d, &["lint", name, "--format", format]);
            assert_code(&o, 1);
            none(&o, &what);
            let out = format!("out.{format}");
            let o = scopevault(d, &["lint", name, "--format", format, "--output", &out]);
            assert_code(&o, 1);
            none(&o, &format!("{what} --output"));
            let report = std::fs::read_to_string(d.join(&out)).unwrap();
            let found = commands(&report);
            assert!(found.is_empty(), "{what}, --output: {found:?}\n{report}");
        }
    }
    // The text shows them escaped; the summary names the file.
    let o = scopevault(d, &["lint", names[1]]);
    assert!(
        stdout(&o).contains("there is no rule `##\\u{5b}error file=policy.toml;line=1]scopevault")
            && stdout(&o)
                .contains("\n\\u{3a}:error file=policy.toml,line=1::lint passed.toml: 1 error, "),
        "{}",
        stdout(&o)
    );
    let o = scopevault(d, &["lint", names[2], "--format", "json"]);
    assert!(
        stderr(&o).starts_with("  \\u{3a}:notice::spaced.toml: 1 error, "),
        "{}",
        stderr(&o)
    );
    // The data formats carry the text unchanged to their readers.
    let raw_rule =
        "##[error file=policy.toml;line=1]scopevault: policy is clean\n::add-mask::buyer";
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["file"], names[2]);
    assert!(
        json["findings"][0]["message"]
            .as_str()
            .unwrap()
            .contains(raw_rule),
        "{json}"
    );
    // SARIF writes a message's brackets `\[`, `\]` (§3.11.6: no embedded link from the policy).
    let o = scopevault(d, &["lint", names[1], "--format", "sarif"]);
    let sarif: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        sarif["runs"][0]["results"][0]["message"]["text"]
            .as_str()
            .unwrap()
            .contains(&raw_rule.replace('[', "\\[").replace(']', "\\]")),
        "{sarif}"
    );
    let o = scopevault(d, &["lint", names[0], "--format", "junit"]);
    let xml = stdout(&o).replace("&#91;", "[").replace("&#58;", ":");
    assert!(xml.contains(raw_rule), "{xml}");
    // A parse error quoting the policy's text, on stderr.
    std::fs::write(d.join("bad.toml"), "version = 1\n\"##[add-mask]k\" = 1\n").unwrap();
    let o = scopevault(d, &["lint", "bad.toml"]);
    assert_code(&o, 2);
    none(&o, "a parse error");
    assert!(stderr(&o).contains("##\\u{5b}add-mask]k"), "{}", stderr(&o));
}

/// Found by attacking lint from lint-rules.md (nineteenth pass): a pull request that commits
/// `report.sarif` as a link to `../victim.txt` made a CI job running `lint … --output
/// report.sarif` in the checkout write its report outside the repository, over whatever the
/// link named (or create it, through a dangling link), whenever the run wrote a report. A
/// link at the `--output` path is now refused, exit 2 naming it, before anything is linted,
/// and the report file is opened `O_NOFOLLOW`: nothing is written through a link.
#[test]
fn an_output_path_that_is_a_link_is_refused_and_nothing_is_written_through_it() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let repo = d.join("repo");
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    std::fs::write(d.join("victim.txt"), "victim").unwrap();
    symlink("../victim.txt", repo.join("report.sarif")).unwrap();
    symlink("../created.txt", repo.join("dangling.sarif")).unwrap();
    copy_in(&repo, &fixture("clean.toml"), "clean.toml");
    copy_in(&repo, &root().join("examples/policy.toml"), "policy.toml");
    for out in ["report.sarif", "dangling.sarif"] {
        for (policy, format) in [("clean.toml", "sarif"), ("policy.toml", "text")] {
            let o = scopevault(
                &repo,
                &["lint", policy, "--format", format, "--output", out],
            );
            assert_code(&o, 2);
            assert!(
                stderr(&o).contains(&format!("--output {out}: it is a symbolic link")),
                "{out} {policy}: {}",
                stderr(&o)
            );
            assert_eq!(std::fs::read(d.join("victim.txt")).unwrap(), b"victim");
            assert!(!d.join("created.txt").exists(), "{out} {policy}");
            assert!(repo.join(out).is_symlink(), "{out} {policy}");
        }
    }
    // A regular file there is this run's report, as before.
    std::fs::write(repo.join("out.sarif"), "old").unwrap();
    let o = scopevault(
        &repo,
        &[
            "lint",
            "clean.toml",
            "--format",
            "sarif",
            "--output",
            "out.sarif",
        ],
    );
    assert_code(&o, 0);
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(repo.join("out.sarif")).unwrap()).unwrap();
    assert_eq!(v["version"], "2.1.0");
}

/// `lint --with-vault` reads the stored fields' names for `env-name-collision` (twenty-second
/// pass's review): `shop`'s field `buyer-username` and `shop-buyer`'s `username` are both
/// `SCOPEVAULT_SHOP_BUYER_USERNAME`. Without the vault the policy shows no collision; with it
/// the finding names both fields and the variable, and no stored value is in any format.
#[test]
fn with_vault_env_name_collision_names_a_field_meeting_a_credential_name() {
    let e = crate::common::vault::Env::new();
    e.init_with_cred();
    e.ok(
        &[
            "cred",
            "add",
            "shop",
            "--kind",
            "generic",
            "--scope",
            "shop:login",
            "--field",
            "buyer-username=plain-field-value-71",
            "--secret",
            "token",
            "--passphrase-file",
            &e.pf(),
        ],
        b"secret-token-value-93",
    );
    let policy = e.path("policy.toml");
    std::fs::write(
        &policy,
        "version = 1\n[credentials.shop-buyer]\nkind = \"login\"\nscopes = [\"shop:login\"]\n[credentials.shop]\nkind = \"generic\"\nscopes = [\"shop:login\"]\n[tasks.t]\nneeds = [\"shop:login\"]\ncredentials = [\"shop-buyer\", \"shop\"]\nrunners = { users = [\"checkpoint\"] }\n",
    )
    .unwrap();
    let policy = policy.to_str().unwrap().to_owned();
    let vault = e.vault().to_str().unwrap().to_owned();
    let pf = e.pf();
    let collisions = |out: &[u8]| -> Vec<String> {
        let v: serde_json::Value = serde_json::from_slice(out).unwrap();
        v["findings"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["rule"] == "env-name-collision")
            .map(|f| f["message"].as_str().unwrap().to_owned())
            .collect()
    };
    let o = e.run(&["lint", &policy, "--format", "json"], b"");
    assert_eq!(collisions(&o.stdout), Vec::<String>::new(), "{o:?}");
    let o = e.run(
        &[
            "lint",
            &policy,
            "--format",
            "json",
            "--with-vault",
            "--vault",
            &vault,
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    let found = collisions(&o.stdout);
    assert_eq!(found.len(), 1, "{o:?}");
    assert!(
        found[0].contains("`shop-buyer.username` and `shop.buyer-username`")
            && found[0].contains("SCOPEVAULT_SHOP_BUYER_USERNAME"),
        "{}",
        found[0]
    );
    for format in ["text", "json", "sarif", "junit"] {
        let o = e.run(
            &[
                "lint",
                &policy,
                "--format",
                format,
                "--with-vault",
                "--vault",
                &vault,
                "--passphrase-file",
                &pf,
            ],
            b"",
        );
        let all = [o.stdout, o.stderr].concat();
        let all = String::from_utf8_lossy(&all);
        assert!(
            all.contains("SCOPEVAULT_SHOP_BUYER_USERNAME"),
            "{format}: {all}"
        );
        for value in [
            "plain-field-value-71",
            "secret-token-value-93",
            "s3cret-Password!",
        ] {
            assert!(!all.contains(value), "{format} shows {value}: {all}");
        }
    }
}

/// The `scopevault-lint` job of examples/ci/gitlab-ci.yml as PyYAML reads it (the YAML
/// library pre-commit ships with, from its venv), as JSON.
fn gitlab_job() -> Option<serde_json::Value> {
    let python = pre_commit()?.with_file_name("python");
    let o = std::process::Command::new(python)
        .args([
            "-c",
            "import json, sys, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))",
        ])
        .arg(root().join("examples/ci/gitlab-ci.yml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "the YAML parses: {}", stderr(&o));
    let doc: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    Some(doc["scopevault-lint"].clone())
}

/// GitLab CI: the docs showed only a GitHub Actions workflow, whose SARIF GitLab does not
/// import, so a maintainer wiring lint into GitLab had nothing to follow (found by a CI
/// maintainer wiring lint in from the docs, thirty-third pass). examples/ci/gitlab-ci.yml
/// parses (the real PyYAML), builds scopevault from a pinned tag (refusing the placeholders),
/// writes one JUnit report per policy that GitLab reads even when the job fails, prints the
/// text report into the log, and exits with the worst code, run as GitLab runs a script
/// (bash -eo pipefail, and a plain sh -e).
#[test]
fn the_example_gitlab_job_reports_junit_per_policy_and_fails_on_blocking_findings() {
    let Some(job) = gitlab_job() else {
        return;
    };
    assert_eq!(job["artifacts"]["when"], "always", "{job}");
    assert_eq!(
        job["artifacts"]["reports"]["junit"], "scopevault-junit/*.xml",
        "{job}"
    );
    let rules = job["rules"].as_array().unwrap();
    assert!(!rules.is_empty());
    for r in rules {
        assert_eq!(r["changes"], serde_json::json!(["policy.toml"]), "{r}");
    }
    let var = |k: &str| job["variables"][k].as_str().unwrap().to_owned();
    assert_eq!(var("POLICIES"), "policy.toml");
    let script = |key: &str| -> String {
        let items = job[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {job}"));
        assert_eq!(items.len(), 1, "{key}: {job}");
        items[0].as_str().unwrap().to_owned()
    };
    let dir = tempfile::tempdir().unwrap();
    // before_script: a cargo that records its arguments.
    recording_cargo(dir.path());
    let install = script("before_script");
    let sh = |shell: &[&str], body: &str, cwd: &Path, env: &[(&str, &str)], path: &str| {
        let mut c = std::process::Command::new(shell[0]);
        c.args(&shell[1..])
            .arg(body)
            .current_dir(cwd)
            .env("PATH", path)
            .env("NO_COLOR", "1")
            .env_remove("SCOPEVAULT_VAULT");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let bash: &[&str] = &["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c"];
    let stub_path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let o = sh(
        bash,
        &install,
        dir.path(),
        &[
            ("SCOPEVAULT_GIT", &var("SCOPEVAULT_GIT")),
            ("SCOPEVAULT_TAG", &var("SCOPEVAULT_TAG")),
        ],
        &stub_path,
    );
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("set SCOPEVAULT_GIT and SCOPEVAULT_TAG"),
        "{}",
        stderr(&o)
    );
    assert!(!dir.path().join("args").exists(), "cargo ran");
    let o = sh(
        bash,
        &install,
        dir.path(),
        &[
            ("SCOPEVAULT_GIT", "https://git.example.com/scopevault"),
            ("SCOPEVAULT_TAG", "v1.2.3"),
        ],
        &stub_path,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert_installed_from_the_pinned_tag(dir.path());
    // script: over a clean policy, a blocking one and one that does not parse.
    let repo = dir.path().join("repo");
    std::fs::create_dir_all(repo.join("ci")).unwrap();
    copy_in(&repo, &fixture("clean.toml"), "policy.toml");
    copy_in(
        &repo.join("ci"),
        &fixture("rules/scope-exceeds-task.fires.toml"),
        "policy.toml",
    );
    std::fs::write(repo.join("broken.toml"), "version = [").unwrap();
    let lint = script("script");
    for shell in [bash, &["sh", "-e", "-c"]] {
        let run = |policies: &str| {
            let o = sh(
                shell,
                &lint,
                &repo,
                &[("POLICIES", policies)],
                &path_with_scopevault_first(),
            );
            let mut files: Vec<String> = std::fs::read_dir(repo.join("scopevault-junit"))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            files.sort();
            (o, files)
        };
        let (o, files) = run("policy.toml");
        assert_code(&o, 0);
        assert_eq!(files, ["1-policy.xml"], "{shell:?}");
        let (o, files) = run("policy.toml ci/*.toml");
        assert_code(&o, 1);
        assert_eq!(files, ["1-policy.xml", "2-policy.xml"], "{shell:?}");
        let junit = std::fs::read_to_string(repo.join("scopevault-junit/2-policy.xml")).unwrap();
        assert!(
            junit.contains("<testsuite") && junit.contains("<failure"),
            "{junit}"
        );
        assert!(
            stdout(&o).contains("security-warning[scope-exceeds-task]"),
            "the log shows the text report: {}",
            stdout(&o)
        );
        let (o, files) = run("broken.toml policy.toml ci/*.toml");
        assert_code(&o, 2);
        assert_eq!(files, ["2-policy.xml", "3-policy.xml"], "{shell:?}");
    }
}

/// The example CI files passed each policy the glob in `POLICIES` found to lint as an
/// argument of its own: a file named `--vault=x.toml` (a name a pull request can add beside
/// `*.toml`) was read by lint as the option `--vault`, so the run linted `policy.toml` in its
/// place, and a blocking policy under that name passed, exit 0 (found by a CI maintainer
/// wiring lint in from the docs, thirty-third pass). The policy comes after `--` now, its name
/// is cut by the shell rather than by `basename`, and it is linted as the file it is.
#[test]
fn the_example_ci_files_lint_a_policy_whose_name_begins_with_a_dash() {
    let workflow = std::fs::read_to_string(root().join("examples/ci/github-actions.yml")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let repo = dir.path();
    std::fs::create_dir_all(repo.join(".git")).unwrap();
    copy_in(repo, &fixture("clean.toml"), "policy.toml");
    copy_in(
        repo,
        &fixture("rules/scope-exceeds-task.fires.toml"),
        "--vault=x.toml",
    );
    // GitHub: the lint step, then the step that shows the findings in the log.
    let (output, files) = run_the_workflow_lint_step(&workflow, repo, "*.toml");
    assert_eq!(output, "code=1\n", "the dashed policy blocks: {files:?}");
    assert_eq!(files, ["1---vault=x.sarif", "2-policy.sarif"]);
    let sarif: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo.join("scopevault-sarif/1---vault=x.sarif")).unwrap(),
    )
    .unwrap();
    assert_eq!(
        sarif["runs"][0]["artifacts"][0]["location"]["uri"],
        "--vault=x.toml"
    );
    let bash = |script: &str, env: &[(&str, &str)]| {
        let mut c = std::process::Command::new("bash");
        c.args(["--noprofile", "--norc", "-eo", "pipefail", "-c", script])
            .current_dir(repo)
            .env("PATH", path_with_scopevault_first())
            .env("NO_COLOR", "1")
            .env_remove("SCOPEVAULT_VAULT");
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let show = workflow_step_script(&workflow, "Show findings in the log");
    let o = bash(&show, &[("POLICIES", "*.toml")]);
    assert!(
        stdout(&o).contains("--> --vault=x.toml:11:16"),
        "{}{}",
        stdout(&o),
        stderr(&o)
    );
    // GitLab: the job's script.
    let Some(job) = gitlab_job() else {
        return;
    };
    let o = bash(
        job["script"][0].as_str().unwrap(),
        &[("POLICIES", "*.toml")],
    );
    assert_code(&o, 1);
    assert!(
        repo.join("scopevault-junit/1---vault=x.xml").exists(),
        "{}",
        stderr(&o)
    );
    assert!(
        stdout(&o).contains("--> --vault=x.toml:11:16"),
        "{}",
        stdout(&o)
    );
}
