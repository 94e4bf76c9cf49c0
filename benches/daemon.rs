//! The daemon's per-request work without the socket (issue 11: "per-request work is measured
//! and cut"): parsing a `fetch` line, deciding it (authorisation, grant, the hand-out), rendering
//! its audit record (HMAC of each value, JSON) and the answer, with the audit log's sync off so
//! that the disk is not measured. The socket's share is measured by `examples/loadgen.rs`.
//!
//! `cargo bench --bench daemon`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use scopevault::agent::authz::AccessConfig;
use scopevault::agent::handler::Handler;
use scopevault::agent::peer::PeerIdentity;
use scopevault::audit::{AuditLog, AuditRecord, Decision};
use scopevault::policy::{CredentialKind, Policy};
use scopevault::protocol::{Op, Request};
use scopevault::secret::SecretString;
use scopevault::vault::{self, Credential, NewSlot, OpenOptions, Vault, WriteLock};

const FETCH: &[u8] = br#"{"v":1,"op":"fetch","task":"shop-login"}"#;

fn handler(dir: &std::path::Path) -> Handler {
    let uid = scopevault::sys::current_uid();
    let policy = Policy::parse(
        &format!(
            "version = 1\n[credentials.shop-buyer]\nkind = \"login\"\nscopes = [\"shop:login\", \"orders:read\"]\n[tasks.shop-login]\nneeds = [\"shop:login\"]\ncredentials = [\"shop-buyer\"]\norigin = \"https://shop.example\"\nrunners = {{ users = [\"{uid}\"] }}\n"
        ),
        "bench.toml",
    )
    .unwrap();
    let path = dir.join("vault.scopevault");
    let (mut v, _id) = Vault::create(&path, NewSlot::IdentityFile).unwrap();
    let mut c = Credential::new(CredentialKind::Login, vault::timestamp());
    c.scopes = vec!["shop:login".into(), "orders:read".into()];
    c.fields
        .insert("username".into(), "buyer@example.com".into());
    c.secrets.insert(
        "password".into(),
        SecretString::from("correct-horse-battery-staple-42".to_owned()),
    );
    v.add_credential("shop-buyer", c).unwrap();
    v.set_policy(policy);
    let lock = WriteLock::acquire(&path).unwrap();
    v.save(&lock).unwrap();
    drop(lock);
    let access = AccessConfig {
        daemon_uid: uid,
        ..AccessConfig::default()
    };
    let audit = AuditLog::open(&dir.join("audit.jsonl"), false).unwrap();
    Handler::unlocked(access, audit, v, OpenOptions::default())
}

fn per_request(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("XDG_STATE_HOME", dir.path().join("state"));
    let h = handler(dir.path());
    let me = scopevault::sys::current_uid();
    let peer = PeerIdentity::with_groups(me, me, std::process::id() as i32, Vec::new());
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
