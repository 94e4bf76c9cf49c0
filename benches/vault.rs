//! Opening and saving a vault of 10,000 credentials, beside plain age decryption/encryption
//! of the same payload (plus parsing), measured in the same run; and the Argon2id unlock with
//! the default parameters, reported separately.
//!
//! `cargo bench --bench vault`. The ratio target (design.md): open ≤ 1.2× plain.

use std::path::PathBuf;

use criterion::{criterion_group, criterion_main, Criterion};
use scopevault::policy::CredentialKind;
use scopevault::secret::SecretString;
use scopevault::vault::{
    self, bench_support, Credential, FieldMap, NewSlot, OpenOptions, Unlock, Vault, WriteLock,
};

const N: usize = 10_000;

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    id_file: PathBuf,
}

fn fixture(slot: NewSlot) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("SCOPEVAULT_STATE_DIR", dir.path().join("state"));
    let path = dir.path().join("v/vault.scopevault");
    let id_file = dir.path().join("id.txt");
    let lock = WriteLock::acquire(&path).unwrap();
    let (mut v, text) = Vault::create(&path, slot).unwrap();
    if let Some(t) = text {
        std::fs::write(&id_file, t.as_bytes()).unwrap();
    }
    let now = vault::timestamp();
    for i in 0..N {
        let mut c = Credential::new(CredentialKind::Login, now);
        c.scopes = vec!["shop:login".into(), format!("shop:orders:{}", i % 7)];
        c.origins = vec!["https://shop.example.com".into()];
        c.fields = FieldMap::from_iter([("username".to_owned(), format!("monitor-{i}"))]);
        c.secrets = FieldMap::from_iter([(
            "password".to_owned(),
            SecretString::from(format!("pw-{i}-xxxxxxxxxxxxxxxx")),
        )]);
        v.add_credential(&format!("cred-{i:05}"), c).unwrap();
    }
    v.save(&lock).unwrap();
    Fixture {
        _dir: dir,
        path,
        id_file,
    }
}

fn open_and_save(c: &mut Criterion) {
    let f = fixture(NewSlot::IdentityFile);
    let unlock = Unlock::IdentityFile(f.id_file.clone());
    let opts = OpenOptions::default();
    let vault = Vault::open(&f.path, &unlock, &opts).unwrap();
    let identity = bench_support::identity_of(&vault);
    let payload = bench_support::payload_of(&std::fs::read(&f.path).unwrap());
    println!(
        "vault: {N} credentials, file {} KiB",
        std::fs::metadata(&f.path).unwrap().len() / 1024
    );

    let mut g = c.benchmark_group("open-10k");
    g.sample_size(20);
    g.bench_function("plain age decrypt + parse", |b| {
        b.iter(|| bench_support::plain_decrypt_and_parse(&payload, &identity))
    });
    g.bench_function("scopevault open (identity slot)", |b| {
        b.iter(|| {
            Vault::open(&f.path, &unlock, &opts)
                .unwrap()
                .credentials()
                .len()
        })
    });
    g.finish();

    let mut g = c.benchmark_group("save-10k");
    g.sample_size(20);
    g.bench_function("plain serialise + age encrypt", |b| {
        b.iter(|| bench_support::plain_encrypt(&vault).len())
    });
    let mut v = Vault::open(&f.path, &unlock, &opts).unwrap();
    let lock = WriteLock::acquire(&f.path).unwrap();
    g.bench_function("scopevault save (atomic, fsync)", |b| {
        b.iter(|| {
            // A real change, so the payload is re-encrypted as in `cred set`.
            v.update_credential("cred-00000", |c| c.fields.insert("note".into(), "x".into()))
                .unwrap();
            v.save(&lock).unwrap();
        })
    });
    g.finish();
}

fn argon2_unlock(c: &mut Criterion) {
    // Default parameters (64 MiB, t=3, p=4): the cost every passphrase unlock pays once.
    std::env::remove_var("SCOPEVAULT_TEST_ARGON2");
    let dir = tempfile::tempdir().unwrap();
    std::env::set_var("SCOPEVAULT_STATE_DIR", dir.path().join("state"));
    let path = dir.path().join("vault.scopevault");
    let pass = || SecretString::from("bench passphrase".to_owned());
    let lock = WriteLock::acquire(&path).unwrap();
    let (mut v, _) = Vault::create(&path, NewSlot::Passphrase(pass())).unwrap();
    v.save(&lock).unwrap();
    let mut g = c.benchmark_group("argon2id-unlock");
    g.sample_size(10);
    g.bench_function("passphrase slot, m=64MiB t=3 p=4", |b| {
        b.iter(|| {
            Vault::open(&path, &Unlock::Passphrase(pass()), &OpenOptions::default())
                .unwrap()
                .generation()
        })
    });
    g.finish();
}

criterion_group!(benches, open_and_save, argon2_unlock);
criterion_main!(benches);
