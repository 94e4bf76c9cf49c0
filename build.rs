//! The version every build reports (`scopevault --version`, `health`'s `version`, `status`):
//! the package's version, then in parentheses what tells builds of it apart, for an operator
//! and a bug report: the git commit when built from a checkout of this repository, and the
//! cargo features that are not on by default (a `bench-no-audit-sync` build, which hands out
//! before its audit records are durable, must be recognisable). For example
//! `0.1.0 (git 1ebcb6a4c2f0; features: bench-no-audit-sync)`; a build from a crate tarball
//! with no feature is `0.1.0`. The first word is always the package's version.
//!
//! `git` is asked only when it is there and the package's directory is the top of a git work
//! tree (a tarball unpacked inside another repository is not that repository's commit); any
//! failure of it leaves the commit out. No dependency.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Every cargo feature of the package (none is on by default), as cargo names it in the
/// build script's environment and as `Cargo.toml` spells it.
const FEATURES: [(&str, &str); 2] = [
    ("CARGO_FEATURE_BENCH_NO_AUDIT_SYNC", "bench-no-audit-sync"),
    ("CARGO_FEATURE_INSECURE_TEST_KDF", "insecure-test-kdf"),
];

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let version = std::env::var("CARGO_PKG_VERSION").expect("cargo sets it");
    let mut about = Vec::new();
    if let Some(commit) = git_commit(&dir) {
        about.push(format!("git {commit}"));
    }
    let features: Vec<&str> = FEATURES
        .iter()
        .filter(|(var, _)| std::env::var_os(var).is_some())
        .map(|(_, name)| *name)
        .collect();
    if !features.is_empty() {
        about.push(format!("features: {}", features.join(", ")));
    }
    let full = if about.is_empty() {
        version
    } else {
        format!("{version} ({})", about.join("; "))
    };
    println!("cargo:rustc-env=SV_BUILD_VERSION={full}");
}

/// `git` in `dir`, its output's first line when it succeeds.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let text = String::from_utf8(out.stdout).ok()?;
    let line = text.lines().next()?.trim().to_owned();
    (!line.is_empty()).then_some(line)
}

/// The commit checked out in `dir` (12 hex digits), when `dir` is the top of a git work tree;
/// the build is then run again when HEAD moves (a commit, a checkout of another branch).
fn git_commit(dir: &Path) -> Option<String> {
    let top = git(dir, &["rev-parse", "--show-toplevel"])?;
    let same = |a: &Path, b: &Path| match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    };
    if !same(Path::new(&top), dir) {
        return None;
    }
    // What moves HEAD: HEAD itself (another branch checked out), the branch's ref (a commit),
    // and packed-refs (a ref packed by `git gc`). Paths as git gives them (a worktree's HEAD
    // is in its own git directory, the refs in the common one).
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    if let Some(branch) = git(dir, &["symbolic-ref", "-q", "HEAD"]) {
        watched.push(branch);
    }
    for name in watched {
        if let Some(path) = git(dir, &["rev-parse", "--git-path", &name]) {
            let path = dir.join(path);
            if path.exists() {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    let commit = git(dir, &["rev-parse", "--short=12", "HEAD"])?;
    commit
        .bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then_some(commit)
}
