//! Standard output on a full disk (`>/dev/full`): every command exits 2 with "cannot write to
//! standard output: …", never a panic (exit 101, which the README's table does not have), and
//! a command that changes state makes the change whole first and says that it was made
//! (twenty-third pass, found by the twenty-third pass's attacker of the documents' promises).

use crate::common::dev_full;
use crate::common::vault::Env;

use std::process::{Output, Stdio};

/// Run with stdout on `/dev/full`; stderr captured.
fn into_full(e: &Env, args: &[&str], stdin: &[u8]) -> Output {
    use std::io::Write;
    let mut child = e
        .cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(dev_full())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin);
    child.wait_with_output().unwrap()
}

/// Exit 2, the write to stdout named, no panic; returns stderr.
fn refused_cleanly(out: &Output, what: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{what}: {err}");
    assert!(!err.contains("panicked"), "{what}: {err}");
    assert!(
        err.contains("error: ") && err.contains("cannot write to standard output: "),
        "{what}: {err}"
    );
    err
}

fn example_policy() -> &'static str {
    concat!(env!("CARGO_MANIFEST_DIR"), "/examples/policy.toml")
}

#[test]
fn regression_readers_with_a_full_stdout_exit_2_without_a_panic() {
    let e = Env::new();
    e.init_with_cred();
    let pf = e.pf();
    e.ok(
        &[
            "policy",
            "apply",
            example_policy(),
            "--passphrase-file",
            &pf,
        ],
        b"",
    );
    let cases: [&[&str]; 11] = [
        &["cred", "list"],
        &["cred", "list", "--json"],
        &["cred", "show", "shop-buyer"],
        &["cred", "show", "shop-buyer", "--json"],
        &["key", "list"],
        &["key", "list", "--json"],
        &["policy", "export"],
        &["policy", "apply", example_policy(), "--dry-run"],
        &["recipient"],
        &["completions", "bash"],
        &["man"],
    ];
    for args in cases {
        let mut args = args.to_vec();
        if !matches!(args[0], "completions" | "man") {
            args.extend(["--passphrase-file", &pf]);
        }
        refused_cleanly(&into_full(&e, &args, b""), &format!("{args:?}"));
    }
}

#[test]
fn regression_writers_with_a_full_stdout_save_first_and_say_the_change_was_made() {
    let e = Env::new();
    let pf = e.pf();
    // init: the vault is made, and kept.
    let err = refused_cleanly(
        &into_full(&e, &["init", "--passphrase-file", &pf], b""),
        "init",
    );
    assert!(err.contains("was created"), "{err}");
    assert!(e.vault().is_file(), "{err}");
    e.ok(&["cred", "list", "--passphrase-file", &pf], b"");

    // cred add, cred set: stored.
    let err = refused_cleanly(
        &into_full(
            &e,
            &[
                "cred",
                "add",
                "shop-buyer",
                "--kind",
                "login",
                "--scope",
                "shop:login",
                "--secret",
                "password",
                "--passphrase-file",
                &pf,
            ],
            b"first-Secret-1",
        ),
        "cred add",
    );
    assert!(err.contains("was added"), "{err}");
    let err = refused_cleanly(
        &into_full(
            &e,
            &[
                "cred",
                "set",
                "shop-buyer",
                "--secret",
                "password",
                "--passphrase-file",
                &pf,
            ],
            b"second-Secret-2",
        ),
        "cred set",
    );
    assert!(err.contains("was updated and saved"), "{err}");
    assert!(!err.contains("second-Secret-2"), "{err}");
    assert_eq!(
        e.secret("shop-buyer", "password").as_deref(),
        Some("second-Secret-2")
    );

    // key add: the slot is there, and the error names it (its id is not lost).
    std::fs::write(e.path("pass2"), "Marmalade-Zeppelin-Fjord-4482-quill\n").unwrap();
    let p2 = e.path("pass2").to_str().unwrap().to_owned();
    let err = refused_cleanly(
        &into_full(
            &e,
            &[
                "key",
                "add",
                "--passphrase",
                "--new-passphrase-file",
                &p2,
                "--label",
                "two",
                "--passphrase-file",
                &pf,
            ],
            b"",
        ),
        "key add",
    );
    assert!(
        err.contains("the key slot") && err.contains("was added"),
        "{err}"
    );
    let slots = e.ok(&["key", "list", "--json", "--passphrase-file", &p2], b"");
    let v: serde_json::Value = serde_json::from_str(&slots).unwrap();
    assert_eq!(v.as_array().map(Vec::len), Some(2), "{v}");

    // policy apply: applied.
    let err = refused_cleanly(
        &into_full(
            &e,
            &[
                "policy",
                "apply",
                example_policy(),
                "--passphrase-file",
                &pf,
            ],
            b"",
        ),
        "policy apply",
    );
    assert!(err.contains("the policy was applied"), "{err}");
    let exported = e.ok(&["policy", "export", "--passphrase-file", &pf], b"");
    assert!(exported.contains("[tasks."), "{exported}");

    // cred rm: removed.
    let err = refused_cleanly(
        &into_full(
            &e,
            &["cred", "rm", "shop-buyer", "--passphrase-file", &pf],
            b"",
        ),
        "cred rm",
    );
    assert!(err.contains("was removed"), "{err}");
    assert!(!e.names().contains(&"shop-buyer".to_owned()));
}

/// `audit show` to a full stdout said "cannot read the audit log …: No space left on device":
/// it was the write that failed.
#[test]
fn regression_audit_show_with_a_full_stdout_names_the_write_not_the_log() {
    let e = Env::new();
    std::fs::write(
        e.path("audit.jsonl"),
        "{\"seq\":1,\"op\":\"fetch\"}\n{\"seq\":2,\"op\":\"fetch\"}\n",
    )
    .unwrap();
    let audit = e.path("audit.jsonl").to_str().unwrap().to_owned();
    let err = refused_cleanly(
        &into_full(&e, &["audit", "show", "--audit", &audit], b""),
        "audit show",
    );
    assert!(!err.contains("cannot read the audit log"), "{err}");
}
