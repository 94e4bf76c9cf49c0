//! Test vectors (tests/fixtures/vault): files another implementation can be checked against.
//! Valid vectors must open to the documented content; `fail_*` files must be refused with the
//! reason in the matching `.txt`.
//!
//! `SCOPEVAULT_REGEN_VECTORS=1 cargo test --test it vault::vectors::` rewrites them (then review and
//! commit the diff); without it the committed files are only read.

use crate::common::vault as common_vault;

use std::path::{Path, PathBuf};

use common_vault::{assemble, shows_the_vector_credential, split, Env};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/vault")
}

#[test]
fn valid_vectors_open() {
    if std::env::var_os(CHILD).is_some() {
        return print_secret_in_child();
    }
    if std::env::var_os("SCOPEVAULT_REGEN_VECTORS").is_some() {
        regenerate();
    }
    let d = dir();
    let e = Env::with_vault(&d.join("passphrase.scopevault"));
    shows_the_vector_credential(
        &e,
        &[
            "--passphrase-file",
            d.join("passphrase.txt").to_str().unwrap(),
        ],
    );
    let e = Env::with_vault(&d.join("identity.scopevault"));
    shows_the_vector_credential(
        &e,
        &["--identity-file", d.join("identity.txt").to_str().unwrap()],
    );
    // The decrypted secret value is the documented one (vault-format.md, Test vectors).
    for (vault, unlock) in [
        ("passphrase", "passphrase.txt"),
        ("identity", "identity.txt"),
    ] {
        let state = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &crate::common::test_path(module_path!(), "valid_vectors_open"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, vault)
            .env("SCOPEVAULT_VECTOR", d.join(format!("{vault}.scopevault")))
            .env("SCOPEVAULT_VECTOR_UNLOCK", d.join(unlock))
            .env("SCOPEVAULT_STATE_DIR", state.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{vault}: {stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let value = stdout
            .lines()
            .find_map(|l| l.split_once("VECTOR shop-buyer.password=").map(|(_, v)| v))
            .unwrap_or_else(|| panic!("{vault}: no value from the child: {stdout}"));
        assert_eq!(value, "vector-password-1", "{vault}");
    }
}

const CHILD: &str = "SCOPEVAULT_TEST_VECTOR_CHILD";

/// In a child process (the rollback record goes to its own SCOPEVAULT_STATE_DIR): open the
/// vector through the library and print the decrypted password.
fn print_secret_in_child() {
    use scopevault::secret::SecretString;
    use scopevault::vault::{OpenOptions, Unlock, Vault};
    let var = |k: &str| PathBuf::from(std::env::var_os(k).unwrap());
    let unlock = if std::env::var(CHILD).unwrap() == "passphrase" {
        let pass = std::fs::read_to_string(var("SCOPEVAULT_VECTOR_UNLOCK")).unwrap();
        Unlock::Passphrase(SecretString::from(pass.trim_end_matches('\n').to_owned()))
    } else {
        Unlock::IdentityFile(var("SCOPEVAULT_VECTOR_UNLOCK"))
    };
    let vault = Vault::open(&var("SCOPEVAULT_VECTOR"), &unlock, &OpenOptions::default()).unwrap();
    let cred = &vault.credentials()["shop-buyer"];
    let pw = cred.secrets.get("password").expect("a password field");
    println!("VECTOR shop-buyer.password={}", pw.expose());
}

#[test]
fn fail_vectors_are_refused_with_their_reason() {
    let d = dir();
    let mut seen = 0;
    for entry in std::fs::read_dir(&d).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("fail_") && name.ends_with(".scopevault")) {
            continue;
        }
        seen += 1;
        let reason = std::fs::read_to_string(d.join(name.replace(".scopevault", ".txt"))).unwrap();
        let e = Env::with_vault(&entry.path());
        let err = e.fails(
            &[
                "cred",
                "list",
                "--passphrase-file",
                d.join("passphrase.txt").to_str().unwrap(),
            ],
            b"",
            4,
        );
        assert!(
            err.contains(reason.trim()),
            "{name}: expected {:?} in {err}",
            reason.trim()
        );
    }
    assert!(seen >= 7, "expected the fail_ vectors, found {seen}");
}

/// Build the vectors with the real binary (cheap argon2: m=64 KiB, t=1, p=1).
fn regenerate() {
    let d = dir();
    std::fs::create_dir_all(&d).unwrap();
    // Files only: the version-1 vectors in v1/ are migration inputs and are kept.
    for f in std::fs::read_dir(&d).unwrap().flatten() {
        if f.file_type().unwrap().is_file() {
            std::fs::remove_file(f.path()).unwrap();
        }
    }
    std::fs::write(d.join("passphrase.txt"), "scopevault test vector\n").unwrap();
    let e = Env::new();
    let pf = d.join("passphrase.txt");
    let pf = pf.to_str().unwrap();
    e.ok(&["init", "--passphrase-file", pf], b"");
    e.ok(
        &[
            "cred",
            "add",
            "shop-buyer",
            "--kind",
            "login",
            "--scope",
            "shop:login",
            "--origin",
            "https://shop.example.com",
            "--field",
            "username=monitor",
            "--secret",
            "password",
            "--passphrase-file",
            pf,
        ],
        b"vector-password-1",
    );
    let pass_vault = e.vault_bytes();
    std::fs::write(d.join("passphrase.scopevault"), &pass_vault).unwrap();

    let e = Env::new();
    let idf = d.join("identity.txt");
    e.ok(&["init", "--identity-out", idf.to_str().unwrap()], b"");
    e.ok(
        &[
            "cred",
            "add",
            "shop-buyer",
            "--kind",
            "login",
            "--scope",
            "shop:login",
            "--origin",
            "https://shop.example.com",
            "--field",
            "username=monitor",
            "--secret",
            "password",
            "--identity-file",
            idf.to_str().unwrap(),
        ],
        b"vector-password-1",
    );
    std::fs::write(d.join("identity.scopevault"), e.vault_bytes()).unwrap();

    let write_fail = |name: &str, bytes: &[u8], reason: &str| {
        std::fs::write(d.join(format!("fail_{name}.scopevault")), bytes).unwrap();
        std::fs::write(d.join(format!("fail_{name}.txt")), format!("{reason}\n")).unwrap();
    };
    let v = &pass_vault;
    write_fail("truncated", &v[..v.len() / 2], "truncated");
    // A flipped bit in the authenticated header (a digit of the creation time's seconds:
    // still valid JSON and RFC 3339)...
    let mut b = v.clone();
    let at = b.windows(11).position(|w| w == b"\"created\":\"").unwrap() + 11 + 18;
    b[at] ^= 0x01;
    write_fail("flipped_header_byte", &b, "failed authentication");
    // ... and one in the payload, caught by age's authenticated decryption.
    let mut b = v.clone();
    b[v.len() - 100] ^= 0x01;
    write_fail("flipped_payload_byte", &b, "the payload does not decrypt");
    let mut b = v.clone();
    b[8..10].copy_from_slice(&3u16.to_be_bytes());
    write_fail("future_version", &b, "version 3 is not supported");
    let mut b = v.clone();
    b[0] = b'X';
    write_fail("bad_magic", &b, "not a scopevault vault");
    let mut b = v.clone();
    b.extend_from_slice(b"junk");
    write_fail("trailing_bytes", &b, "bytes after its MAC");
    let (header, _) = split(v);
    let recipient: age::x25519::Recipient = header["recipient"].as_str().unwrap().parse().unwrap();
    let forged = age::encrypt(
        &recipient,
        br#"{"schema":1,"credentials":{},"policy":null}"#,
    )
    .unwrap();
    write_fail(
        "forged_writer",
        &assemble(&header, &forged, &[0u8; 32]),
        "failed authentication",
    );
    let (mut h, p) = split(v);
    h["slots"][0]["kdf"]["m_kib"] = serde_json::json!(64u64 * 1024 * 1024);
    write_fail(
        "hostile_argon2",
        &assemble(&h, &p, &[0u8; 32]),
        "demands 67108864 KiB of memory",
    );
}
