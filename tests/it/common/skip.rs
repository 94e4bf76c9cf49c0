//! The one way a test says it cannot run here (issue 16).
//!
//! A test that needs a real component it cannot get (root, a second uid, a tmpfs, prlimit,
//! strace, python3, a session D-Bus...) calls [`skip`] with the reason and returns:
//!
//! - with `CI=true` (CI sets it) the test **fails** with the reason: in CI every test runs;
//! - otherwise the reason goes to stderr and `<test>: <reason>` is appended to the file named
//!   by `SCOPEVAULT_SKIP_LOG` (scripts/test sets it and prints the list at the end of the run,
//!   passing or not).
#![allow(dead_code)]

use std::io::Write;

/// The environment variable naming the file skips are appended to.
pub const SKIP_LOG: &str = "SCOPEVAULT_SKIP_LOG";

/// Whether this run is CI, where nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// `binary::test_name` of the running test: the test binary's name without cargo's hash, and
/// the name libtest gives the test's thread.
pub fn test_name() -> String {
    let bin = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let bin = match bin.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_owned(),
        _ => bin,
    };
    let thread = std::thread::current();
    format!("{bin}::{}", thread.name().unwrap_or("?"))
}

/// Report that the calling test cannot run (part of) itself here because of `reason`: panics
/// under `CI=true`, otherwise records the skip (see the module docs). The caller returns.
#[track_caller]
pub fn skip(reason: &str) {
    let name = test_name();
    if in_ci() {
        panic!("{name}: cannot run under CI=true, where every test must run: {reason}");
    }
    eprintln!("skipped: {reason}");
    if let Some(log) = std::env::var_os(SKIP_LOG) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap_or_else(|e| panic!("cannot append to {SKIP_LOG} {log:?}: {e}"));
        // One write per line, so concurrent tests never interleave within a line.
        let line = format!("{name}: {}\n", reason.replace('\n', " "));
        f.write_all(line.as_bytes())
            .unwrap_or_else(|e| panic!("cannot append to {SKIP_LOG} {log:?}: {e}"));
    }
}
