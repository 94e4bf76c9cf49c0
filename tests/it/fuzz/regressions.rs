//! Regression tests for what the fuzzing work (issue 5, `fuzz/`, `scripts/fuzz`) found. Each is
//! named after the bug it pins and runs the real binary on the input that showed it.

use crate::common::vault as common_vault;

use std::path::{Path, PathBuf};

use common_vault::{split, Env};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/vault")
        .join(name)
}

/// The passphrase test vector with its header's slot list replaced by `slots`, the payload and
/// MAC kept (the MAC no longer matches: it is checked only after a slot has been unwrapped,
/// which is what these tests are about).
fn vector_with_slots(slots: Vec<serde_json::Value>) -> Vec<u8> {
    let bytes = std::fs::read(fixture("passphrase.scopevault")).unwrap();
    let (mut header, payload) = split(&bytes);
    header["slots"] = serde_json::Value::Array(slots);
    let mac: [u8; 32] = bytes[bytes.len() - 32..].try_into().unwrap();
    common_vault::assemble(&header, &payload, &mac)
}

fn the_slot() -> serde_json::Value {
    let (header, _) = split(&std::fs::read(fixture("passphrase.scopevault")).unwrap());
    header["slots"][0].clone()
}

/// A copy of the vector's slot with another id and Argon2 parameters (it never opens: the
/// AEAD binds the slot id).
fn slot_copy(n: usize, m_kib: u32, t: u32, p: u32) -> serde_json::Value {
    let mut s = the_slot();
    s["id"] = format!("{n:016x}").into();
    s["kdf"] = serde_json::json!({"m_kib": m_kib, "t": t, "p": p});
    s
}

/// Write `bytes` as the vault and try to list it with the vector's passphrase: the stderr of
/// the refusal (exit 4).
fn refused(bytes: &[u8]) -> String {
    let e = Env::new();
    std::fs::create_dir_all(e.vault().parent().unwrap()).unwrap();
    std::fs::write(e.vault(), bytes).unwrap();
    let pf = fixture("passphrase.txt");
    e.fails(
        &["cred", "list", "--passphrase-file", pf.to_str().unwrap()],
        b"",
        4,
    )
}

/// Found while writing the vault fuzz target (by reading the slot loop the fuzzer could not
/// afford to run, not by a fuzzer crash): every passphrase slot costs one Argon2 run per unlock
/// attempt, the per-slot caps bounded each run but nothing bounded their number, and a 1 MiB
/// header holds about 3,600 slots. A file writer without the key made one unlock attempt run
/// for tens of minutes with default parameters (0.1-0.4 s each here), for about a day with the
/// largest allowed ones, before the file was refused. Now a header with more than 32 slots is
/// refused before any key derivation.
#[test]
fn fuzz_vault_header_huge_slot_count_is_refused() {
    // The real slot first: without the limit this input unlocked, then failed the MAC.
    let mut slots = vec![the_slot()];
    slots.extend((1..40).map(|n| slot_copy(n, 64, 1, 1)));
    let err = refused(&vector_with_slots(slots));
    assert!(
        err.contains("the header lists 40 key slots, above the limit of 32"),
        "{err}"
    );

    // The hostile shape: as many default-parameter slots as fit in the header limit.
    let slots: Vec<_> = (0..3600).map(|n| slot_copy(n, 65536, 3, 4)).collect();
    let err = refused(&vector_with_slots(slots));
    assert!(
        err.contains("the header lists 3600 key slots, above the limit of 32"),
        "{err}"
    );
}

/// Same bug, other half: two slots each within the per-slot caps (1 GiB, 16 passes) ask for
/// twice the work of the largest single slot; within the slot count, a few such slots made one
/// unlock attempt run for minutes and allocate 1 GiB each time. The passphrase slots together
/// may now ask for one maximal slot's work; more is refused before any Argon2 run.
#[test]
fn fuzz_vault_passphrase_slots_over_the_total_kdf_budget_are_refused() {
    let slots = vec![
        slot_copy(1, 1024 * 1024, 16, 16),
        slot_copy(2, 1024 * 1024, 16, 16),
        the_slot(),
    ];
    let err = refused(&vector_with_slots(slots));
    assert!(
        err.contains("33554496 KiB x passes of Argon2 across its passphrase slots")
            && err.contains("the file may be hostile"),
        "{err}"
    );
    // Ordinary slots are within the limits: that file is not refused for its slot list (the
    // real slot opens it first, then the changed header fails the MAC).
    let slots = vec![
        the_slot(),
        slot_copy(1, 65536, 3, 4),
        slot_copy(2, 65536, 3, 4),
    ];
    let err = refused(&vector_with_slots(slots));
    assert!(err.contains("failed authentication"), "{err}");
}

/// Found by attacking the format (twelfth pass): a slot beyond the per-slot caps was left out
/// of the header's check and refused only when tried, so a maximal slot (1 GiB, 16 passes)
/// before it ran its Argon2 first — 24 s and 1 GiB for a file refused anyway. Every slot's
/// caps are now checked with the slot list, before any work: under an address-space limit
/// too small for the maximal slot's 1 GiB, the refusal still names the hostile slot (before,
/// the maximal slot's allocation failed first).
#[test]
fn fuzz_vault_a_hostile_slot_after_a_maximal_one_is_refused_before_any_work() {
    // The two slots' work within the caps is exactly the budget: the list passed the old check.
    let slots = vec![
        slot_copy(1, 1024 * 1024, 16, 16),
        slot_copy(2, 64 * 1024 * 1024, 1, 1),
    ];
    let e = Env::new();
    std::fs::create_dir_all(e.vault().parent().unwrap()).unwrap();
    std::fs::write(e.vault(), vector_with_slots(slots)).unwrap();
    let pf = fixture("passphrase.txt");
    let out = e.run_cmd(
        e.wrapper("prlimit")
            .arg(format!("--as={}", 768u64 << 20))
            .arg("--")
            .arg(env!("CARGO_BIN_EXE_scopevault"))
            .args(["cred", "list", "--passphrase-file", pf.to_str().unwrap()]),
        b"",
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{err}");
    assert!(err.contains("67108864 KiB of memory"), "{err}");
}

/// The writer side of the limit: `key add` refuses a 33rd slot (a vault we write must always
/// be readable), and says what to do.
#[test]
fn fuzz_vault_key_add_refuses_a_slot_beyond_the_limit() {
    let e = Env::new();
    e.init_with_cred();
    for n in 1..32 {
        let out = e.path(&format!("id-{n}.txt"));
        e.ok(
            &[
                "key",
                "add",
                "--identity-out",
                out.to_str().unwrap(),
                "--passphrase-file",
                &e.pf(),
            ],
            b"",
        );
    }
    let out = e.path("id-32.txt");
    let err = e.fails(
        &[
            "key",
            "add",
            "--identity-out",
            out.to_str().unwrap(),
            "--passphrase-file",
            &e.pf(),
        ],
        b"",
        2,
    );
    assert!(
        err.contains("already has 32 key slots") && err.contains("key remove"),
        "{err}"
    );
    assert!(
        !out.exists(),
        "no identity file for a slot that was not added"
    );
    // The vault with 32 slots still opens.
    assert_eq!(e.names(), vec!["shop-buyer".to_owned()]);
}
