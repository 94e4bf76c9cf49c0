//! The daemon's per-request work without the socket (issue 11: "per-request work is measured
//! and cut"): parsing a `fetch` line, deciding it (authorisation, grant, the hand-out), rendering
//! its audit record (HMAC of each value, JSON) and the answer, with the audit log's sync off so
//! that the disk is not measured. The socket's share is measured by `examples/loadgen.rs`.
//!
//! `cargo bench --bench daemon`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use scopevault::audit::{AuditLog, AuditRecord, Decision};
use scopevault::protocol::{Op, Request};
use scopevault::secret::SecretString;

// The binary's allocator (src/main.rs): the per-request work measured as the daemon does it,
// every block zeroed before it is freed (twenty-ninth pass; docs/security.md, "Daemon
// throughput").
#[global_allocator]
static ALLOC: zeroizing_alloc::ZeroAlloc<std::alloc::System> =
    zeroizing_alloc::ZeroAlloc(std::alloc::System);

#[path = "support/daemon_vault.rs"]
mod daemon_vault;
use daemon_vault::{handler, runner, FETCH};

fn per_request(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("XDG_STATE_HOME", dir.path().join("state"));
    let h = handler(dir.path());
    let peer = runner();
    let mut g = c.benchmark_group("daemon per request");
    g.measurement_time(Duration::from_secs(4));
    g.bench_function("parse a fetch line", |b| {
        b.iter(|| Request::parse(std::hint::black_box(FETCH)).unwrap())
    });
    g.bench_function(
        "fetch: parse, decide, audit record, answer (sync off)",
        |b| {
            b.iter(|| {
                let req = Request::parse(FETCH).unwrap();
                let p = h.prepare_followed(&peer, req);
                h.commit(vec![p], false)
            })
        },
    );
    g.bench_function("64 fetches in one batch (sync off), per batch", |b| {
        b.iter(|| {
            let batch = (0..64)
                .map(|_| h.prepare_followed(&peer, Request::parse(FETCH).unwrap()))
                .collect();
            h.commit(batch, false)
        })
    });
    let log = AuditLog::open(&dir.path().join("render.jsonl"), false).unwrap();
    let value = SecretString::from("correct-horse-battery-staple-42".to_owned());
    g.bench_function(
        "audit record with one value (HMAC, render, append; sync off)",
        |b| {
            b.iter(|| {
                log.append(AuditRecord {
                    task: Some("shop-login"),
                    credential: Some("shop-buyer"),
                    values: vec![("password", &value)],
                    ..AuditRecord::new(Op::Fetch, Decision::Allow)
                })
                .unwrap()
            })
        },
    );
    g.finish();
}

criterion_group!(benches, per_request);
criterion_main!(benches);
