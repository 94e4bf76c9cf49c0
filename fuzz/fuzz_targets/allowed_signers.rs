//! Arbitrary text as an OpenSSH allowed_signers file. Invariants: nothing panics; an error
//! names a line of the input; every parsed signer's line is a line of the input and holds a
//! non-empty principal list; authorising any parsed key never panics and only returns lines
//! with that key.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scopevault::fleet::allowed_signers::AllowedSigners;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.split('\n').count();
    match AllowedSigners::parse(text, "fuzz") {
        // Parsed text always has a line at fault (only reading a file may have none).
        Err(e) => assert!(e.line.is_some_and(|l| l >= 1 && l <= lines), "{e}"),
        Ok(a) => {
            let now = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
            for s in &a.signers {
                assert!(s.line >= 1 && s.line <= lines);
                assert!(!s.principals.is_empty());
                for ns in ["scopevault-bundle", "git", ""] {
                    if let Ok(ok) = a.authorise(&s.key, ns, now) {
                        assert!(ok.iter().all(|x| x.key == s.key));
                    }
                }
            }
        }
    }
});
