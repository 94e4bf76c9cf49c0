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
