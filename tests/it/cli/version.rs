//! Which build answers: `scopevault --version`, the daemon's `health` and `status` name the
//! version, the git commit of a build from a checkout and the cargo features on (build.rs).

use crate::common::daemon::{self, Daemon};

/// What `--version` should say after `scopevault `: the package's version, then the commit
/// checked out here (when this package's directory is the top of a git work tree and git
/// answers) and the features this test binary, built with the package's, has on.
fn expected_version() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let git = |args: &[&str]| {
        let out = std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())?;
        Some(String::from_utf8(out.stdout).ok()?.trim().to_owned())
    };
    let mut about = Vec::new();
    let top = git(&["rev-parse", "--show-toplevel"]);
    if top.is_some_and(|t| std::path::Path::new(&t).canonicalize().ok() == dir.canonicalize().ok())
    {
        about.push(format!(
            "git {}",
            git(&["rev-parse", "--short=12", "HEAD"]).unwrap()
        ));
    }
    let mut features = Vec::new();
    if cfg!(feature = "bench-no-audit-sync") {
        features.push("bench-no-audit-sync");
    }
    if cfg!(feature = "insecure-test-kdf") {
        features.push("insecure-test-kdf");
    }
    if !features.is_empty() {
        about.push(format!("features: {}", features.join(", ")));
    }
    let version = env!("CARGO_PKG_VERSION");
    if about.is_empty() {
        version.to_owned()
    } else {
        format!("{version} ({})", about.join("; "))
    }
}

/// Twenty-eighth pass (found by the twenty-eighth pass's review of the build's identity):
/// every build said `scopevault 0.1.0`, whatever commit it was built from and whether it was
/// a benchmark build (`bench-no-audit-sync`, which hands out before its audit records are
/// durable) or a test build (`insecure-test-kdf`). `--version` now names the commit and the
/// features, its first two words still `scopevault` and the package's version.
#[test]
fn version_names_the_commit_and_the_features_of_the_build() {
    let dir = daemon::tempdir();
    let out = daemon::cmd(dir.path()).arg("--version").output().unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout, format!("scopevault {}\n", expected_version()));
    let mut words = stdout.split_whitespace();
    assert_eq!(words.next(), Some("scopevault"));
    assert_eq!(words.next(), Some(env!("CARGO_PKG_VERSION")));
    if cfg!(feature = "insecure-test-kdf") {
        assert!(stdout.contains("features: insecure-test-kdf"), "{stdout}");
    }
}

/// The same finding, from the daemon's side: `health`'s `version` and the `daemon:` line of
/// `status` said `0.1.0` of every build. They now give the build's version as `--version`
/// does, so a benchmark or test build is told from a release by asking the daemon.
#[test]
fn health_and_status_give_the_builds_version() {
    let dir = daemon::tempdir();
    let d = Daemon::start(dir.path(), &[]);
    let h = d.request(r#"{"v":1,"op":"health"}"#);
    assert_eq!(h["version"], expected_version().as_str(), "{h}");
    let out = daemon::cmd(dir.path())
        .arg("--socket")
        .arg(&d.socket)
        .arg("status")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&format!(
            "daemon:      scopevault {} on",
            expected_version()
        )),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
