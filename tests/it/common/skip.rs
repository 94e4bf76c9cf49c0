//! The one way a test says it cannot run here (issue 16).
//!
//! A test that needs a real component it cannot get (root, a second uid, a tmpfs, prlimit,
//! strace, python3, a session D-Bus...) calls [`skip`] with the reason and returns:
//!
//! - with `CI=true` (CI sets it) the test **fails** with the reason: in CI every test runs;
//! - otherwise the reason goes to stderr and `<test>: <reason>` is appended to the file named
//!   by `SCOPEVAULT_SKIP_LOG` (scripts/test sets it and prints the list at the end of the run,
//!   passing or not).

use std::io::Write;

/// The environment variable naming the file skips are appended to.
pub const SKIP_LOG: &str = "SCOPEVAULT_SKIP_LOG";

/// Whether this run is CI, where nothing may skip.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// The running test's name as libtest gives it to the test's thread: its module path in the
/// one integration-test binary (`daemon::fetch::NAME`), what `cargo test --test it` filters on.
pub fn test_name() -> String {
    std::thread::current().name().unwrap_or("?").to_owned()
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
