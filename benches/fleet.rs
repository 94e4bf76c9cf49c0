//! Fleet targets (issue 9): publish 1,000 locations × 50 tasks over a pool of 200 credentials
//! (< 10 s on 2 cores), and apply a 100-credential bundle with its signature check
//! (< 200 ms).
//!
//! `cargo bench --bench fleet`. Publish is measured as `scopevault publish` does it after the
//! vault is open: one bundle per location (policy subset, encryption to the location's
//! recipient) and its ed25519 sshsig. Apply is measured as `bundle apply` does it: signature
//! against allowed_signers, format, manifest checks, decryption, replacing the vault's
//! credentials and policy, and the atomic save.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use scopevault::fleet::{allowed_signers::AllowedSigners, apply, publish, sig};
use scopevault::policy::{CredentialKind, Policy};
use scopevault::secret::SecretString;
use scopevault::vault::{
    self, Credential, FieldMap, NewSlot, OpenOptions, Unlock, Vault, WriteLock,
};

fn credential(i: usize) -> Credential {
    let mut c = Credential::new(CredentialKind::Login, vault::timestamp());
    c.scopes = vec!["shop:login".into()];
    c.fields = FieldMap::from_iter([("username".to_owned(), format!("monitor-{i}"))]);
    c.secrets = FieldMap::from_iter([(
        "password".to_owned(),
        SecretString::from(format!("secret-value-{i:08}-xxxxxxxxxxxxxxxx")),
    )]);
    c
}

/// A policy of `locations` locations × `tasks` tasks each, over `pool` credentials (each
/// task lists two), and the stored credentials.
fn fleet_policy(
    locations: usize,
    tasks: usize,
    pool: usize,
) -> (Policy, BTreeMap<String, Credential>) {
    let mut t = String::from("version = 1\n");
    for l in 0..locations {
        let r = age::x25519::Identity::generate().to_public();
        let _ = writeln!(t, "[locations.loc{l:04}]\nrecipient = \"{r}\"");
    }
    for c in 0..pool {
        let _ = writeln!(
            t,
            "[credentials.c{c:03}]\nkind = \"login\"\nscopes = [\"shop:login\"]"
        );
    }
    for l in 0..locations {
        for k in 0..tasks {
            let a = (l * 7 + k) % pool;
            let b = (l * 13 + k * 3 + 1) % pool;
            let _ = writeln!(
                t,
                "[tasks.t{l:04}-{k:02}]\nneeds = [\"shop:login\"]\ncredentials = [\"c{a:03}\", \"c{b:03}\"]\nrunners = {{ users = [\"checkpoint\"] }}\nlocations = [\"loc{l:04}\"]"
            );
        }
    }
    let policy = Policy::parse(&t, "bench.toml").unwrap();
    let stored = (0..pool)
        .map(|c| (format!("c{c:03}"), credential(c)))
        .collect();
    (policy, stored)
}

fn signing_key() -> ssh_key::PrivateKey {
    let mut seed = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut seed);
    ssh_key::PrivateKey::from(ssh_key::private::Ed25519Keypair::from_seed(&seed))
}

fn bench_publish(c: &mut Criterion) {
    let (policy, stored) = fleet_policy(1_000, 50, 200);
    let key = signing_key();
    let now = vault::timestamp();
    let mut g = c.benchmark_group("fleet");
    g.sample_size(10).measurement_time(Duration::from_secs(60));
    // As `scopevault publish` does it: the tasks indexed by location once (publish::Plan).
    g.bench_function(
        "publish 1000 locations x 50 tasks, 200 credentials, signed",
        |b| {
            b.iter(|| {
                let plan = publish::Plan::new(&policy);
                let mut n = 0;
                for (name, _) in policy.locations() {
                    let (_, bytes) = publish::build_planned(
                        &policy,
                        &plan,
                        name,
                        1,
                        &stored,
                        now,
                        now + time::Duration::days(30),
                    )
                    .unwrap();
                    let s = sig::sign(&key, &bytes).unwrap();
                    n += bytes.len() + s.len();
                }
                n
            })
        },
    );
    // The baseline, measured in the same run: each location found by its own pass over every
    // task (publish::build, as publish did before the plan).
    g.bench_function(
        "baseline: publish 1000 locations, one pass over the tasks per location",
        |b| {
            b.iter(|| {
                let mut n = 0;
                for (name, _) in policy.locations() {
                    let (_, bytes) = publish::build(
                        &policy,
                        name,
                        1,
                        &stored,
                        now,
                        now + time::Duration::days(30),
                    )
                    .unwrap();
                    let s = sig::sign(&key, &bytes).unwrap();
                    n += bytes.len() + s.len();
                }
                n
            })
        },
    );
    g.finish();
}

fn bench_apply(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("SCOPEVAULT_STATE_DIR", dir.path().join("state"));
    let path = dir.path().join("v/vault.scopevault");
    let id_file = dir.path().join("id");
    let lock = WriteLock::acquire(&path).unwrap();
    let (mut v, text) = Vault::create(&path, NewSlot::IdentityFile).unwrap();
    std::fs::write(&id_file, text.unwrap().as_bytes()).unwrap();
    v.save(&lock).unwrap();
    drop(lock);
    // One location, 50 tasks over 100 credentials, encrypted to this vault.
    let mut t = format!(
        "version = 1\n[locations.ams]\nrecipient = \"{}\"\n",
        v.recipient()
    );
    for k in 0..100 {
        let _ = writeln!(
            t,
            "[credentials.c{k:03}]\nkind = \"login\"\nscopes = [\"shop:login\"]"
        );
    }
    for k in 0..50 {
        let _ = writeln!(
            t,
            "[tasks.t{k:02}]\nneeds = [\"shop:login\"]\ncredentials = [\"c{:03}\", \"c{:03}\"]\nrunners = {{ users = [\"checkpoint\"] }}\nlocations = [\"ams\"]",
            2 * k,
            2 * k + 1
        );
    }
    let policy = Policy::parse(&t, "bench.toml").unwrap();
    let stored: BTreeMap<String, Credential> = (0..100)
        .map(|c| (format!("c{c:03}"), credential(c)))
        .collect();
    let now = vault::timestamp();
    let (m, bytes) = publish::build(
        &policy,
        "ams",
        1,
        &stored,
        now,
        now + time::Duration::days(30),
    )
    .unwrap();
    assert_eq!(m.credentials.len(), 100);
    let key = signing_key();
    let pem = sig::sign(&key, &bytes).unwrap();
    let signers = AllowedSigners::parse(
        &format!("admin {}", key.public_key().to_openssh().unwrap()),
        "allowed_signers",
    )
    .unwrap();
    let mut g = c.benchmark_group("fleet");
    g.sample_size(20);
    g.bench_function(
        "apply a 100-credential bundle (signature, checks, save)",
        |b| {
            b.iter(|| {
                let now = time::OffsetDateTime::now_utc();
                let who =
                    apply::check_signature(&bytes, Some(pem.as_bytes()), &signers, now).unwrap();
                let bundle = apply::check_format(&bytes).unwrap();
                apply::check_manifest(&bundle, Some("ams"), now, None, apply::Rollback::Refuse)
                    .unwrap();
                let lock = WriteLock::acquire(&path).unwrap();
                let mut v = Vault::open(
                    &path,
                    &Unlock::IdentityFile(id_file.clone()),
                    &OpenOptions::default(),
                )
                .unwrap();
                let (payload, policy) = apply::check_decrypt(&v, &bundle).unwrap();
                let old: Vec<String> = v.credentials().keys().cloned().collect();
                for n in old {
                    v.remove_credential(&n).unwrap();
                }
                for (n, c) in payload.credentials {
                    v.add_credential(&n, c).unwrap();
                }
                v.set_policy(policy);
                v.save(&lock).unwrap();
                who
            })
        },
    );
    g.finish();
}

criterion_group!(benches, bench_publish, bench_apply);
criterion_main!(benches);
