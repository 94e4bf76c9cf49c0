//! `sys::harden_process` in a separate process (hardening is irreversible, so it must not run
//! inside the shared test process): the test binary runs itself as the child.

use std::process::Command;

const CHILD_ENV: &str = "SCOPEVAULT_TEST_HARDEN_CHILD";

fn status_field(status: &str, name: &str) -> Option<String> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .map(|v| v.trim_start_matches(':').trim().to_string())
}

#[test]
fn harden_process_turns_off_dumps_and_core_files_and_sets_umask() {
    if std::env::var_os(CHILD_ENV).is_some() {
        child();
        return;
    }
    let exe = std::env::current_exe().unwrap();
    let name = crate::common::test_path(
        module_path!(),
        "harden_process_turns_off_dumps_and_core_files_and_sets_umask",
    );
    let out = Command::new(exe)
        .args(["--exact", &name, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout
        .lines()
        .find_map(|l| l.find("HARDEN ").map(|i| &l[i..]))
        .unwrap_or_else(|| panic!("no report from the child: {stdout}"));
    assert!(report.contains(" before_dumpable=true "), "{report}");
    assert!(report.contains(" dumpable=false "), "{report}");
    assert!(report.contains(" core_limit=0 "), "{report}");
    assert!(report.contains(" file_mode=600 "), "{report}");
    assert!(report.contains(" limits_core=0,0 "), "{report}");
    if report.contains(" mlockall=ok ") {
        assert!(!report.contains(" vmlck=0 kB"), "{report}");
    } else {
        assert!(report.contains("RLIMIT_MEMLOCK"), "{report}");
    }
}

/// Runs in the child: harden, then report what the kernel says.
fn child() {
    use std::os::unix::fs::PermissionsExt;
    let before = scopevault::sys::is_dumpable();
    let r = scopevault::sys::harden_process();
    assert!(r.dumpable_off && r.core_limit_zero, "{r:?}");
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("probe");
    std::fs::write(&f, b"x").unwrap();
    let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap();
    let core = limits
        .lines()
        .find(|l| l.starts_with("Max core file size"))
        .map(|l| {
            l.split_whitespace()
                .skip(4)
                .take(2)
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    println!(
        "HARDEN before_dumpable={before} dumpable={} core_limit={} file_mode={mode:o} limits_core={core} mlockall={} vmlck={} ",
        scopevault::sys::is_dumpable(),
        scopevault::sys::core_limit(),
        match &r.mlockall {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("err({e})"),
        },
        status_field(&status, "VmLck").unwrap_or_default(),
    );
}
