//! The six fuzz harnesses (fuzz/fuzz_targets/*.rs), built into the ordinary test build and run
//! over the seed corpora `scripts/fuzz` gives libFuzzer: fuzz/seeds/<target>/ (inputs of our own
//! and every input that ever crashed) plus the fixtures. Every input must pass every invariant
//! its target asserts.
//!
//! This is what CI runs of the fuzzing: a harness that no longer works with the code (as the
//! `vault` target did when the format moved to version 2) or a crash that comes back fails here,
//! in the test build, in seconds. The libFuzzer runs themselves (`scripts/fuzz smoke`, `scripts/
//! fuzz long`) build with AddressSanitizer in release, about 12 minutes on 2 cores, and are run
//! by hand: docs/security.md, "Fuzzing".
//!
//! Each target file is included as a module. Its `use libfuzzer_sys::fuzz_target;` finds this
//! crate under that name (`extern crate self as libfuzzer_sys`, at the crate root in
//! tests/it/main.rs), whose `fuzz_target!` turns the
//! harness into `pub fn run(data: &[u8])`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

// `#![no_main]` at the top of each file is for the fuzz crate; here it is a module.
#[allow(unused_attributes)]
#[path = "../../../fuzz/fuzz_targets/allowed_signers.rs"]
mod allowed_signers;
#[allow(unused_attributes)]
#[path = "../../../fuzz/fuzz_targets/bundle.rs"]
mod bundle;
#[allow(unused_attributes)]
#[path = "../../../fuzz/fuzz_targets/journal.rs"]
mod journal;
#[allow(unused_attributes)]
#[path = "../../../fuzz/fuzz_targets/policy.rs"]
mod policy;
#[allow(unused_attributes)]
#[path = "../../../fuzz/fuzz_targets/protocol.rs"]
mod protocol;
#[allow(unused_attributes)]
#[path = "../../../fuzz/fuzz_targets/vault.rs"]
mod vault;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn files_in(dir: &Path, recurse: bool, keep: &dyn Fn(&Path) -> bool, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            if recurse {
                files_in(&p, true, keep, out);
            }
        } else if keep(&p) {
            out.push(p);
        }
    }
}

/// The same corpus `scripts/fuzz`'s `seed` gives the target.
fn corpus(target: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let seeds = root().join("fuzz/seeds").join(target);
    if seeds.is_dir() {
        files_in(&seeds, false, &|_| true, &mut out);
    }
    let ext = |e: &'static str| move |p: &Path| p.extension().is_some_and(|x| x == e);
    match target {
        "policy" => {
            out.push(root().join("examples/policy.toml"));
            files_in(
                &root().join("tests/fixtures/policy"),
                true,
                &ext("toml"),
                &mut out,
            );
        }
        "vault" => files_in(
            &root().join("tests/fixtures/vault"),
            false,
            &ext("scopevault"),
            &mut out,
        ),
        "bundle" => files_in(
            &root().join("tests/fixtures/bundle"),
            false,
            &ext("svbundle"),
            &mut out,
        ),
        _ => {}
    }
    out
}

/// Runs `run` on every input of the target's corpus; returns the inputs that failed, with the
/// panic message.
fn replay(target: &str, run: fn(&[u8])) -> (usize, Vec<String>) {
    let inputs = corpus(target);
    let mut failed = Vec::new();
    for p in &inputs {
        let data = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| run(&data))) {
            let msg = e
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| e.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                .unwrap_or_default();
            failed.push(format!("{target}: {}: {msg}", p.display()));
        }
    }
    (inputs.len(), failed)
}

/// One test, the targets one after another: `vault` and `protocol` each set the process's
/// state directory when they first run, as they do alone under libFuzzer, so they must not run
/// at the same time.
#[test]
fn every_seed_and_every_past_crash_passes_its_fuzz_harness() {
    type Harness = (&'static str, fn(&[u8]));
    let targets: [Harness; 6] = [
        ("policy", policy::run),
        ("journal", journal::run),
        ("allowed_signers", allowed_signers::run),
        ("bundle", bundle::run),
        ("vault", vault::run),
        ("protocol", protocol::run),
    ];
    let mut failed = Vec::new();
    for (name, run) in targets {
        let (n, f) = replay(name, run);
        // Every target has seeds: an empty corpus would test nothing.
        assert!(n > 0, "no corpus for fuzz target {name}");
        eprintln!("fuzz replay {name}: {n} inputs, {} failed", f.len());
        failed.extend(f);
    }
    assert!(failed.is_empty(), "inputs failed:\n{}", failed.join("\n"));
}

// Defined after the modules, so they reach it through their `use libfuzzer_sys::fuzz_target;`
// (a `macro_export` macro is at the crate root), not by textual scope.
/// The harness body as a plain function (libfuzzer-sys's macro makes it the fuzzer's entry).
#[macro_export]
macro_rules! fuzz_target {
    (|$data:ident: &[u8]| $body:block) => {
        /// Run the harness on one input.
        pub fn run($data: &[u8]) $body
    };
}
