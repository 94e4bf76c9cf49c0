//! Lint of a generated policy: 10,000 credentials × 10,000 tasks must take under a second,
//! and 10× the input at most 12× the time (design.md, "Performance targets").
//!
//! `cargo bench --bench lint` reports, for n = 10,000 and n = 100,000: `parse+lint` (what
//! `scopevault lint` does after reading the file) and `lint` alone (the rules on a parsed
//! policy). The ratio of the two sizes is the scaling figure.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use scopevault::policy::lint::{lint, lint_source, LintOptions};
use scopevault::policy::Policy;
use std::fmt::Write;
use std::time::Duration;

/// A web of `n` credentials and `n` tasks over 50 target systems, with a scope catalog and a
/// realistic share of findings: over-scoped and shared credentials, wildcards, admins,
/// origin mismatches, tasks without runners, exceptions.
fn generate(n: usize) -> String {
    let apps = 50;
    let mut s = String::with_capacity(n * 400);
    let _ = writeln!(
        s,
        "version = 1\n[settings]\nenforce = \"warn\"\nmax_credential_age = \"90d\"\n"
    );
    for a in 0..apps {
        let _ = writeln!(
            s,
            "[scopes.\"app{a}:login\"]\nrisk = \"low\"\n[scopes.\"app{a}:data:read\"]\nrisk = \"low\"\n\
             [scopes.\"app{a}:data:write\"]\nrisk = \"medium\"\n[scopes.\"app{a}:admin\"]\nrisk = \"high\"\n\
             implies = [\"app{a}:data:*\"]\n[scopes.\"app{a}:data:*\"]\nrisk = \"high\"\n"
        );
    }
    for i in 0..n {
        let a = i % apps;
        let mut scopes = vec![format!("app{a}:login"), format!("app{a}:data:read")];
        if i % 7 == 0 {
            scopes.push(format!("app{a}:data:write"));
        }
        if i % 50 == 0 {
            scopes.push(format!("app{a}:admin"));
        }
        if i % 97 == 0 {
            scopes.push(format!("app{a}:data:*"));
        }
        let list = scopes
            .iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let _ = writeln!(
            s,
            "[credentials.c{i}]\nkind = \"login\"\nscopes = [{list}]\norigins = [\"https://app{a}.example.com\"]\n\
             owner = \"team{a}@example.com\"\nrotate_every = \"30d\"\n"
        );
    }
    for i in 0..n {
        let a = i % apps;
        let mut needs = vec![format!("app{a}:login"), format!("app{a}:data:read")];
        if i % 3 == 0 {
            needs.push(format!("app{a}:data:write"));
        }
        let list = needs
            .iter()
            .map(|x| format!("\"{x}\""))
            .collect::<Vec<_>>()
            .join(", ");
        let creds = if i % 10 == 0 {
            format!("\"c{i}\", \"c{}\"", (i + apps) % n)
        } else {
            format!("\"c{i}\"")
        };
        let runners = if i % 101 == 0 {
            ""
        } else {
            "runners = { users = [\"checkpoint\"], groups = [\"monitors\"] }\n"
        };
        let origin = if i % 89 == 0 { (a + 1) % apps } else { a };
        let _ = writeln!(
            s,
            "[tasks.t{i}]\nneeds = [{list}]\ncredentials = [{creds}]\n{runners}origin = \"https://app{origin}.example.com\"\n"
        );
    }
    for i in (0..n).step_by(1000) {
        let _ = writeln!(
            s,
            "[[exceptions]]\nrule = \"wildcard-scope\"\ncredential = \"c{i}\"\nscopes = [\"app{}:data:*\"]\n\
             reason = \"bench\"\nexpires = \"2099-01-01\"\n",
            i % apps
        );
    }
    s
}

/// Best of three wall-clock runs of parse+lint at both sizes, and their ratio: the figure the
/// design's "10× the input costs at most 12× the time" is about. Printed before criterion's
/// own statistics; on a busy machine, the best of three is the least disturbed.
fn scaling(opts: &LintOptions) {
    let best = |src: &str| {
        (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                let r = lint_source(src, "policy.toml", opts).unwrap();
                let e = t.elapsed();
                drop(r);
                e
            })
            .min()
            .unwrap_or_default()
    };
    let small = best(&generate(10_000));
    let large = best(&generate(100_000));
    eprintln!(
        "scaling: parse+lint 10,000 x 10,000: {small:?}; 100,000 x 100,000: {large:?}; ratio {:.1}x (target: under 1 s, ratio at most 12x)",
        large.as_secs_f64() / small.as_secs_f64()
    );
}

fn bench(c: &mut Criterion) {
    let opts = LintOptions::new(time::macros::date!(2026 - 06 - 01));
    scaling(&opts);
    let mut g = c.benchmark_group("lint");
    g.sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(10));
    for n in [10_000usize, 100_000] {
        let src = generate(n);
        let policy = Policy::parse(&src, "policy.toml").expect("generated policy parses");
        let findings = lint(&policy, &opts).findings().len();
        eprintln!(
            "n = {n}: {} bytes of policy.toml, {findings} findings",
            src.len()
        );
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("parse+lint", n), &src, |b, src| {
            b.iter(|| lint_source(src, "policy.toml", &opts).unwrap())
        });
        g.bench_with_input(BenchmarkId::new("lint", n), &policy, |b, p| {
            b.iter(|| lint(p, &opts))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
