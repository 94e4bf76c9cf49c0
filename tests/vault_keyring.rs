//! Keyring slots against a real OS keyring: the freedesktop Secret Service (gnome-keyring in
//! CI, started by `scripts/test`) and the kernel keyutils store where the kernel allows it.
//!
//! Without a session D-Bus these tests print why they skipped — unless
//! SCOPEVAULT_REQUIRE_KEYRING=1 (set by `scripts/test`), where a missing keyring fails them.

#[path = "common/vault.rs"]
mod common_vault;

use common_vault::Env;

fn bus() -> Option<String> {
    match std::env::var("DBUS_SESSION_BUS_ADDRESS") {
        Ok(a) if !a.is_empty() => Some(a),
        _ => {
            assert!(
                std::env::var_os("SCOPEVAULT_REQUIRE_KEYRING").is_none(),
                "SCOPEVAULT_REQUIRE_KEYRING is set but there is no session D-Bus"
            );
            eprintln!("skipped: no session D-Bus (DBUS_SESSION_BUS_ADDRESS unset); run scripts/test to start dbus and gnome-keyring");
            None
        }
    }
}

#[test]
fn secret_service_slot_unlocks_without_a_passphrase_and_is_removable() {
    let Some(bus) = bus() else { return };
    let e = Env::new();
    let with_bus = |args: &[&str], stdin: &[u8]| {
        let mut c = e.cmd();
        c.env("DBUS_SESSION_BUS_ADDRESS", &bus).args(args);
        e.run_cmd(&mut c, stdin)
    };
    let out = with_bus(&["init", "--keyring", "--passphrase-file", &e.pf()], b"");
    assert!(
        out.status.success(),
        "init --keyring: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_bus(
        &["cred", "add", "k", "--kind", "token", "--secret", "token"],
        b"keyring-held-token",
    );
    assert!(
        out.status.success(),
        "the keyring slot alone unlocks: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let slots = e.ok(&["key", "list", "--json"], b"");
    let v: serde_json::Value = serde_json::from_str(&slots).unwrap();
    let keyring_slot = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["type"] == "keyring")
        .expect("a keyring slot")
        .clone();
    let slot_id = keyring_slot["id"].as_str().unwrap().to_owned();
    // The key really is in the Secret Service: a second process reads it (no in-memory mock).
    let out = with_bus(&["cred", "list", "--json"], b"");
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"k\""));
    // --no-keyring skips it, so without another source the command fails.
    let out = with_bus(&["cred", "list", "--no-keyring"], b"");
    assert_eq!(out.status.code(), Some(3));
    // Remove the slot: its keyring entry is deleted and the keyring no longer unlocks.
    let out = with_bus(
        &["key", "remove", &slot_id, "--passphrase-file", &e.pf()],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_bus(&["cred", "list"], b"");
    assert_eq!(
        out.status.code(),
        Some(3),
        "no keyring slot left: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Enrol again through `key add --keyring`.
    let out = with_bus(
        &["key", "add", "--keyring", "--passphrase-file", &e.pf()],
        b"",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = with_bus(&["cred", "list", "--json"], b"");
    assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"k\""));
}

#[test]
fn keyutils_slot_works_or_is_a_clear_error() {
    let e = Env::new();
    let out = e.run(
        &[
            "init",
            "--keyring",
            "--keyring-store",
            "keyutils",
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
    );
    if out.status.success() {
        let out = e.run(&["cred", "list", "--json"], b"");
        assert!(
            out.status.success(),
            "a keyutils slot unlocks: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        println!("keyutils: the kernel allowed the store; slot unlock tested");
    } else {
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(3), "{err}");
        assert!(
            err.contains("keyring is not available") && err.contains("keyutils"),
            "{err}"
        );
        assert!(!e.vault().exists(), "a failed init leaves no vault");
        eprintln!(
            "skipped the keyutils unlock: this kernel/sandbox refuses it ({})",
            err.trim()
        );
    }
}
