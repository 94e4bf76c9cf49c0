//! Arbitrary bytes as a bundle file (bundle-format.md), through the checkpoint's reader and
//! checks: the signature check with the test-vector signers and signature, the format check,
//! and the manifest checks. Invariants: nothing panics; no allocation beyond libFuzzer's limit
//! (lengths are checked against the file before use); a file that parses has a
//! framing whose lengths add up to the file; only the test vector itself passes the signature check.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use scopevault::fleet::allowed_signers::AllowedSigners;
use scopevault::fleet::apply;
use scopevault::fleet::bundle::{self, Bundle};

struct Fixture {
    signers: AllowedSigners,
    sig: Vec<u8>,
    vector: Vec<u8>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        // The fuzz crate's manifest is in fuzz/; tests/it/fuzz/replay.rs builds this file in the
        // main crate, whose manifest is at the root.
        let m = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = if m.join("fuzz_targets").is_dir() {
            m.join("..")
        } else {
            m.to_path_buf()
        };
        let d = root.join("tests/fixtures/bundle");
        Fixture {
            signers: AllowedSigners::parse(
                &std::fs::read_to_string(d.join("allowed_signers")).unwrap(),
                "allowed_signers",
            )
            .unwrap(),
            sig: std::fs::read(d.join("vector.svbundle.sig")).unwrap(),
            vector: std::fs::read(d.join("vector.svbundle")).unwrap(),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_600);
    let signed = apply::check_signature(data, Some(&f.sig), &f.signers, now).is_ok();
    assert!(!signed || data == f.vector.as_slice());
    if let Ok(b) = Bundle::parse(data) {
        assert_eq!(22 + b.manifest_bytes.len() + b.payload.len(), data.len());
        assert_eq!(bundle::digest(&b.payload), b.manifest.payload_digest);
        let last = apply::Last {
            generation: 2,
            payload_digest: Some(b.manifest.payload_digest.as_str()),
        };
        for rollback in [apply::Rollback::Refuse, apply::Rollback::Reapply] {
            let _ = apply::check_manifest(&b, Some("ams"), now, Some(last), rollback);
        }
        let _ = apply::check_manifest(&b, None, now, None, apply::Rollback::Allow);
    }
});
