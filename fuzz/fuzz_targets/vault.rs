//! Arbitrary bytes as a vault file, through the real reader (`Vault::open`): framing, header
//! JSON, slot list, KDF caps, identity-slot unwrap, MAC, rollback record, age decryption of the
//! payload, payload JSON and the stored policy.
//!
//! A MAC keyed by the vault identity guards everything past the header, so a fuzzer that does
//! not hold the key stops at the MAC. To reach the code behind it, each input is tried three
//! ways:
//!
//! 1. **as it is**, unlocked with the test-vector identity file (`tests/fixtures/vault/
//!    identity.txt`), or with the test-vector passphrase when the file has no identity slot
//!    and every passphrase slot asks for a cheap KDF (the caps are checked on every slot
//!    first; argon2 with the default 64 MiB per input would make the fuzzer useless);
//! 2. **re-signed** as a writer holding the vault identity would: when the framing is
//!    consistent, the MAC is recomputed (from vault-format.md, independently of the reader)
//!    with the identity of the test vector whose recipient the header names;
//! 3. when the input does not start with the magic, **as the plaintext payload** of the
//!    identity test vector: age-encrypted to its recipient, framed with its header, signed.
//!
//! Invariants: nothing panics; no allocation beyond what libFuzzer's `-malloc_limit_mb`
//! allows; a file that opens as it is carries a MAC that this target's own implementation of
//! the format accepts for the identity the file opened to, and its header names that
//! identity's recipient.
#![no_main]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use scopevault::secret::SecretString;
use scopevault::vault::bench_support::identity_of;
use scopevault::vault::{read_slots, OpenOptions, Slot, Unlock, Vault};
use secrecy::ExposeSecret;
use sha2::Sha256;

const MAGIC: &[u8] = b"SCOPEVLT";
const MAC_LEN: usize = 32;
/// The most argon2 work an input may cost here (the test vector's slot asks for 64 KiB, 1 pass).
const CHEAP_KDF_KIB: u32 = 256;

/// A test vector's vault identity, learnt by opening it once.
struct Known {
    identity: String,
    recipient: String,
    /// The file's header bytes, reused for plaintext payloads (mode 3).
    header: Vec<u8>,
}

struct World {
    dir: PathBuf,
    identity_file: PathBuf,
    passphrase: SecretString,
    known: Vec<Known>,
    _tmp: tempfile::TempDir,
}

fn fixtures() -> PathBuf {
    // The fuzz crate's manifest is in fuzz/; tests/it/fuzz/replay.rs builds this file in the main
    // crate, whose manifest is at the root.
    let m = Path::new(env!("CARGO_MANIFEST_DIR"));
    let root = if m.join("fuzz_targets").is_dir() {
        m.join("..")
    } else {
        m.to_path_buf()
    };
    root.join("tests/fixtures/vault")
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        // tmpfs when there is one: the per-input file and the rollback record stay in memory.
        let tmp = if Path::new("/dev/shm").is_dir() {
            tempfile::tempdir_in("/dev/shm")
        } else {
            tempfile::tempdir()
        }
        .expect("temp dir");
        let dir = tmp.path().to_path_buf();
        // Set while single-threaded, before anything reads it: this run's rollback record only.
        std::env::set_var("SCOPEVAULT_STATE_DIR", dir.join("state"));
        let fx = fixtures();
        let passphrase = std::fs::read_to_string(fx.join("passphrase.txt")).expect("fixture");
        let passphrase = SecretString::from(passphrase.trim_end_matches('\n').to_owned());
        let identity_file = fx.join("identity.txt");
        let opts = OpenOptions {
            allow_rollback: true,
            ..Default::default()
        };
        let mut known = Vec::new();
        for (file, unlock) in [
            (
                "identity.scopevault",
                Unlock::IdentityFile(identity_file.clone()),
            ),
            (
                "passphrase.scopevault",
                Unlock::Passphrase(passphrase.clone()),
            ),
        ] {
            let bytes = std::fs::read(fx.join(file)).expect("fixture");
            let v = Vault::open(&fx.join(file), &unlock, &opts).expect("test vector opens");
            let frame = frame(&bytes).expect("test vector framing");
            known.push(Known {
                identity: identity_of(&v).to_string().expose_secret().to_owned(),
                recipient: v.recipient().to_owned(),
                header: frame.header.to_vec(),
            });
        }
        World {
            dir,
            identity_file,
            passphrase,
            known,
            _tmp: tmp,
        }
    })
}

/// The parts of a file whose framing is consistent (vault-format.md, "File layout").
struct Frame<'a> {
    header: &'a [u8],
    payload: &'a [u8],
    /// Bytes the MAC covers: from the magic to the end of the age header plus its nonce.
    authenticated: &'a [u8],
    mac: &'a [u8],
}

fn frame(b: &[u8]) -> Option<Frame<'_>> {
    if b.len() < 14 || &b[..8] != MAGIC || b[8..10] != [0, 2] {
        return None;
    }
    let hlen = u32::from_be_bytes(b[10..14].try_into().ok()?) as usize;
    let h_end = 14usize.checked_add(hlen)?;
    let p_start = h_end.checked_add(8)?;
    if b.len() < p_start {
        return None;
    }
    let plen = u64::from_be_bytes(b[h_end..p_start].try_into().ok()?);
    let p_end = p_start.checked_add(usize::try_from(plen).ok()?)?;
    if b.len() != p_end.checked_add(MAC_LEN)? {
        return None;
    }
    let payload = &b[p_start..p_end];
    // The age header ends with its `--- <mac>` line; the 16-byte payload nonce follows.
    let window = &payload[..payload.len().min(64 * 1024)];
    let line = window.windows(5).position(|w| w == b"\n--- ")? + 1;
    let end = line + window[line..].iter().position(|&c| c == b'\n')? + 1 + 16;
    if end > payload.len() {
        return None;
    }
    Some(Frame {
        header: &b[14..h_end],
        payload,
        authenticated: &b[..p_start + end],
        mac: &b[p_end..],
    })
}

/// HMAC-SHA256 keyed by HKDF-SHA256(salt = vault id, ikm = identity, info = the format's label).
fn mac(identity: &str, vault_id: &str, authenticated: &[u8]) -> [u8; 32] {
    let hk = hkdf::Hkdf::<Sha256>::new(Some(vault_id.as_bytes()), identity.as_bytes());
    let mut key = [0u8; 32];
    hk.expand(b"scopevault/v2/file-mac", &mut key)
        .expect("32 bytes");
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&key).expect("any key length");
    m.update(authenticated);
    m.finalize().into_bytes().into()
}

/// The header's `vault_id` and `recipient`, read leniently (the reader is strict).
fn ids(header: &[u8]) -> Option<(String, String)> {
    let v: serde_json::Value = serde_json::from_slice(header).ok()?;
    Some((
        v.get("vault_id")?.as_str()?.to_owned(),
        v.get("recipient")?.as_str()?.to_owned(),
    ))
}

fn assemble(header: &[u8], payload: &[u8], identity: &str) -> Option<Vec<u8>> {
    let (vault_id, _) = ids(header)?;
    let mut out = Vec::with_capacity(14 + header.len() + 8 + payload.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&2u16.to_be_bytes());
    out.extend_from_slice(&u32::try_from(header.len()).ok()?.to_be_bytes());
    out.extend_from_slice(header);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&[0; MAC_LEN]);
    let auth_len = frame(&out)?.authenticated.len();
    let m = mac(identity, &vault_id, &out[..auth_len]);
    let n = out.len();
    out[n - MAC_LEN..].copy_from_slice(&m);
    Some(out)
}

/// Open `bytes` the one way its slots suggest, and check what opens. Each open costs a few
/// X25519 operations (slot unwrap, recipient check, payload), the bulk of an execution.
fn try_open(w: &World, bytes: &[u8]) {
    let path = w.dir.join("input.scopevault");
    std::fs::write(&path, bytes).expect("write the input");
    let opts = OpenOptions {
        allow_rollback: true,
        ..Default::default()
    };
    // The header as `serve` reads it before unlocking (the keyring slot probe), and the KDF
    // caps of every passphrase slot.
    let mut unlock = Unlock::IdentityFile(w.identity_file.clone());
    if let Ok(slots) = read_slots(&path) {
        let mut cheap = true;
        let mut identity_slot = false;
        for s in &slots {
            let _ = (s.id(), s.kind(), s.describe());
            match s {
                Slot::Passphrase { kdf, .. } => {
                    cheap &= kdf.check().is_ok() && kdf.m_kib <= CHEAP_KDF_KIB && kdf.t <= 2;
                }
                Slot::Identity { .. } => identity_slot = true,
                Slot::Keyring { .. } => {}
            }
        }
        if cheap && !identity_slot {
            unlock = Unlock::Passphrase(w.passphrase.clone());
        }
    }
    match Vault::open(&path, &unlock, &opts) {
        Ok(v) => check_opened(bytes, &v),
        Err(e) => {
            let _ = (e.to_string(), e.is_refusal(), e.is_unlock_failure());
        }
    }
}

fn check_opened(bytes: &[u8], v: &Vault) {
    let f = frame(bytes).expect("a file that opens has consistent framing");
    let identity = identity_of(v);
    let (vault_id, recipient) = ids(f.header).expect("a file that opens has ids");
    assert_eq!(vault_id, v.id());
    assert_eq!(recipient, identity.to_public().to_string());
    let want = mac(
        identity.to_string().expose_secret(),
        &vault_id,
        f.authenticated,
    );
    assert_eq!(f.mac, &want[..], "a file that opens carries a valid MAC");
    // What the CLI and the daemon read next must not panic either.
    for (name, c) in v.credentials() {
        let _ = (name.len(), c.secrets.len(), format!("{c:?}"));
    }
    if let Some(p) = v.policy() {
        let _ = p.to_canonical_toml();
    }
    let _ = (
        v.lint_meta(),
        v.policy_source(),
        v.generation(),
        v.slots().len(),
    );
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    if data.starts_with(MAGIC) {
        try_open(w, data);
        if let Some(f) = frame(data) {
            if let Some((_, recipient)) = ids(f.header) {
                let k = w
                    .known
                    .iter()
                    .find(|k| k.recipient == recipient)
                    .unwrap_or(&w.known[0]);
                if let Some(signed) = assemble(f.header, f.payload, &k.identity) {
                    if signed != data {
                        try_open(w, &signed);
                    }
                }
            }
        }
    } else {
        // The input is the plaintext payload (JSON) of the identity test vector.
        let k = &w.known[0];
        let recipient: age::x25519::Recipient = k.recipient.parse().expect("recipient");
        let enc =
            age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
                .expect("encryptor");
        let mut payload = Vec::with_capacity(data.len() + 256);
        let mut wr = enc.wrap_output(&mut payload).expect("age writer");
        wr.write_all(data).expect("encrypt");
        wr.finish().expect("encrypt");
        let signed =
            assemble(&k.header, &payload, &k.identity).expect("the vector's header frames");
        try_open(w, &signed);
    }
});
