//! Crash safety: a writer killed with SIGKILL at random points during a save leaves a vault
//! that opens to the old or the new state, every time.
//!
//! SCOPEVAULT_CRASH_ITERATIONS sets the count (CI runs at least 200; the default keeps a
//! developer's `cargo test` quick).

use crate::common::faults;
use crate::common::vault as common_vault;

use std::time::{Duration, Instant};

use common_vault::Env;
use faults::{kill_after, temp_files, Rng};

fn iterations() -> usize {
    faults::count_from("SCOPEVAULT_CRASH_ITERATIONS", 60)
}

#[test]
fn sigkill_during_save_leaves_old_or_new_vault() {
    let e = Env::new();
    let id = e.path("id.txt");
    let idf = id.to_str().unwrap().to_owned();
    e.ok(&["init", "--identity-out", &idf], b"");
    // A payload large enough that a save takes measurable time.
    let big = "x".repeat(60 * 1024);
    std::fs::write(e.path("big"), &big).unwrap();
    let names = |e: &Env| -> Vec<String> {
        let out = e.ok(&["cred", "list", "--json", "--identity-file", &idf], b"");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_owned())
            .collect()
    };
    // Measure how long one write takes, to spread kill points over its whole life.
    let t = Instant::now();
    e.ok(
        &[
            "cred",
            "add",
            "seed",
            "--kind",
            "generic",
            "--secret-file",
            &format!("blob={}", e.path("big").display()),
            "--identity-file",
            &idf,
        ],
        b"",
    );
    let mut span_us = (t.elapsed().as_micros() as u64).max(2_000);
    let seed = faults::seed_from("SCOPEVAULT_CRASH_SEED");
    println!(
        "crash test: seed {seed}, {} iterations, write span {span_us} us",
        iterations()
    );
    let mut rng = Rng::new(seed);
    let mut expected = names(&e);
    let (mut old_state, mut new_state) = (0, 0);
    for i in 0..iterations() {
        let name = format!("c{i}");
        // Kill points spread from "just started" to "long finished"; `span_us` adapts so that
        // both outcomes keep happening (a run where every kill lands before the save proves
        // nothing about the save).
        let status = kill_after(
            e.cmd().args([
                "cred",
                "add",
                &name,
                "--kind",
                "generic",
                "--secret-file",
                &format!("blob={}", e.path("big").display()),
                "--identity-file",
                &idf,
            ]),
            Duration::from_micros(rng.next() % (span_us * 2)),
        );
        if status.success() {
            span_us = span_us * 9 / 10;
        } else {
            span_us = span_us * 11 / 10;
        }
        let got = names(&e);
        let mut with_new = expected.clone();
        with_new.push(name.clone());
        with_new.sort();
        if got == expected {
            old_state += 1;
            // A killed writer must not have reported success.
            assert!(
                !status.success() || got.contains(&name),
                "iteration {i}: success but not saved"
            );
        } else if got == with_new {
            new_state += 1;
            expected = with_new;
        } else {
            panic!("iteration {i} (seed {seed}): vault holds {got:?}, expected {expected:?} or that plus {name}");
        }
    }
    println!("crash test: {old_state} old state, {new_state} new state, 0 broken");
    assert!(
        old_state > 0 && new_state > 0,
        "kills must land both before and after the rename to prove anything"
    );
    // Leftover temp files of killed writers are cleaned up by the next save.
    e.ok(&["cred", "rm", "seed", "--identity-file", &idf], b"");
    let dir = e.vault().parent().unwrap().to_path_buf();
    let temps = temp_files(&dir);
    assert!(temps.is_empty(), "stale temp files left: {temps:?}");
}
