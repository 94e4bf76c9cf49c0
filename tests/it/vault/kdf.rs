//! Issue 16, item 9: the KDF parameters of new passphrase slots. A real `init` (the test
//! suite's `SCOPEVAULT_TEST_ARGON2` unset) writes RFC 9106's second recommended option; the
//! variable is honoured only by a build with the test-only feature `insecure-test-kdf`.

use crate::common::vault as common_vault;

use common_vault::{split, Env};

fn first_slot_kdf(e: &Env) -> serde_json::Value {
    let (h, _) = split(&e.vault_bytes());
    assert_eq!(h["slots"][0]["type"], "passphrase");
    h["slots"][0]["kdf"].clone()
}

#[test]
fn a_real_init_writes_the_default_argon2_parameters() {
    let e = Env::new();
    let out = e.run_cmd(
        e.cmd()
            .env_remove("SCOPEVAULT_TEST_ARGON2")
            .args(["init", "--passphrase-file", &e.pf()]),
        b"",
    );
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("SCOPEVAULT_TEST_ARGON2"), "{err}");
    assert_eq!(
        first_slot_kdf(&e),
        serde_json::json!({"m_kib": 65536, "t": 3, "p": 4})
    );
    // The vault opens with those parameters (the slot really is under them).
    assert!(e.names().is_empty());
}

#[test]
fn the_test_kdf_setting_is_honoured_only_by_a_test_build_and_says_what_it_is() {
    let e = Env::new();
    let out = e.run(&["init", "--passphrase-file", &e.pf()], b"");
    assert!(out.status.success(), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("SCOPEVAULT_TEST_ARGON2") && err.contains("the test suite's fast KDF setting"),
        "{err}"
    );
    let kdf = first_slot_kdf(&e);
    if cfg!(feature = "insecure-test-kdf") {
        assert_eq!(kdf, serde_json::json!({"m_kib": 64, "t": 1, "p": 1}));
        assert!(err.contains("this is a test build"), "{err}");
    } else {
        assert_eq!(kdf, serde_json::json!({"m_kib": 65536, "t": 3, "p": 4}));
        assert!(err.contains("is ignored"), "{err}");
    }
}

/// Twenty-second pass (found by an attacker of the vault format): under a data-segment limit
/// (`RLIMIT_DATA`, which has counted private anonymous mappings since Linux 4.7, so Argon2's
/// blocks too) too small for a slot's memory, the error said "the system is out of memory (no
/// limit of this process refused it)": only the address-space and memory-lock limits were
/// looked at. It names `RLIMIT_DATA`, its value and how to raise it.
#[test]
fn a_key_derivation_refused_by_the_data_limit_names_that_limit() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        return crate::common::skip::skip("prlimit (util-linux) is not installed");
    }
    let e = Env::new();
    e.init_with_cred();
    // The slot asks for 256 MiB (one pass, one lane): its derivation runs before the file is
    // authenticated, so the header edited here is refused only after it.
    let (mut header, payload) = split(&e.vault_bytes());
    header["slots"][0]["kdf"] = serde_json::json!({"m_kib": 256 * 1024, "t": 1, "p": 1});
    std::fs::write(
        e.vault(),
        common_vault::assemble(&header, &payload, &[0u8; 32]),
    )
    .unwrap();
    let under = |data: u64| {
        let out = e.run_cmd(
            e.wrapper("prlimit")
                .arg(format!("--data={data}"))
                .arg("--")
                .arg(env!("CARGO_BIN_EXE_scopevault"))
                .args(["cred", "list", "--passphrase-file", &e.pf()]),
            b"",
        );
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, err) = under(128 << 20);
    assert_ne!(code, Some(0), "{err}");
    assert!(
        err.contains("cannot allocate 256 MiB for the key derivation")
            && err.contains("data limit (RLIMIT_DATA) is 128 MiB")
            && err.contains("LimitDATA=")
            && !err.contains("out of memory"),
        "{err}"
    );
    // Control: with room for the slot's memory the derivation runs (and, its parameters
    // edited, derives another key than the one the slot was wrapped with).
    let (code, err) = under(1 << 30);
    assert_eq!(code, Some(3), "{err}");
    assert!(
        !err.contains("cannot allocate") && err.contains("wrong passphrase"),
        "{err}"
    );
}
