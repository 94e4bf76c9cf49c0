//! JSON validity checks: a JSON or HAR file (or a JSON-lines trace member) that parsed before
//! it was scrubbed must still parse after; the replacement texts are chosen so that it does
//! (see [`crate::secret::Encoding::replacement`]), and this catches the case it did not.

use std::io::{Read, Seek};
use std::path::Path;

/// Files checked as one JSON document: `.json`, `.har`.
pub fn is_json_name(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("json" | "har")
    )
}

/// Zip members checked as JSON lines: Playwright's `.trace`, `.network`, and `.jsonl`.
pub fn is_json_lines_name(name: &str) -> bool {
    name.ends_with(".trace") || name.ends_with(".network") || name.ends_with(".jsonl")
}

/// True if `bytes` is one JSON document.
pub fn valid(bytes: &[u8]) -> bool {
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok()
}

/// True if the file (read from its start) is one JSON document.
pub fn valid_reader(file: &std::fs::File) -> bool {
    let mut f = file;
    if f.rewind().is_err() {
        return false;
    }
    let r = std::io::BufReader::new(f.take(u64::MAX));
    serde_json::from_reader::<_, serde::de::IgnoredAny>(r).is_ok()
}

/// True if every non-empty line of `bytes` is a JSON document.
pub fn valid_lines(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .all(valid)
}
