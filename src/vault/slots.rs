//! Key slots: each wraps the vault identity (an age X25519 secret key) under one unlock source,
//! so that adding or removing a way to unlock never re-encrypts the payload.
//!
//! - `passphrase`: ChaCha20-Poly1305 under a key from Argon2id(passphrase, salt).
//! - `keyring`: ChaCha20-Poly1305 under a random 32-byte key kept in an OS keyring store.
//! - `identity`: the vault identity age-encrypted to the recipient of an identity file.

use std::str::FromStr;

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use data_encoding::{BASE64, HEXLOWER};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::keyring::KeyringStore;
use super::VaultError;
use crate::secret::SecretString;

const SLOT_AAD: &[u8] = b"scopevault/v1/slot";

/// Argon2id parameters as stored in a passphrase slot.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_kib: u32,
    /// Iterations.
    pub t: u32,
    /// Lanes.
    pub p: u32,
}

impl KdfParams {
    /// RFC 9106's second recommended option: 64 MiB, 3 passes, 4 lanes.
    pub const DEFAULT: KdfParams = KdfParams {
        m_kib: 64 * 1024,
        t: 3,
        p: 4,
    };
    /// The most a file may demand: 1 GiB of memory, 16 passes, 16 lanes. A slot above any cap
    /// is refused before any work is done: a hostile file must not make us allocate gigabytes.
    pub const MAX: KdfParams = KdfParams {
        m_kib: 1024 * 1024,
        t: 16,
        p: 16,
    };

    /// The parameters new passphrase slots get: [`KdfParams::DEFAULT`], unless the test-only
    /// environment variable `SCOPEVAULT_TEST_ARGON2=m_kib,t,p` is set (the CLI warns loudly).
    pub fn for_new_slot() -> Result<KdfParams, VaultError> {
        match std::env::var("SCOPEVAULT_TEST_ARGON2") {
            Ok(v) => {
                let parts: Vec<u32> = v.split(',').filter_map(|s| s.trim().parse().ok()).collect();
                match parts[..] {
                    [m_kib, t, p] => {
                        let k = KdfParams { m_kib, t, p };
                        k.check()?;
                        Ok(k)
                    }
                    _ => Err(VaultError::Usage(
                        "SCOPEVAULT_TEST_ARGON2 must be `m_kib,t,p`, e.g. `64,1,1`".into(),
                    )),
                }
            }
            Err(_) => Ok(KdfParams::DEFAULT),
        }
    }

    /// Refuse parameters outside the caps (or too small for argon2 to accept).
    pub fn check(&self) -> Result<(), VaultError> {
        let max = KdfParams::MAX;
        let bad = |what: String| Err(VaultError::HostileKdf(what));
        if self.p == 0 || self.p > max.p {
            return bad(format!("{} lanes (allowed 1..={})", self.p, max.p));
        }
        if self.t == 0 || self.t > max.t {
            return bad(format!("{} passes (allowed 1..={})", self.t, max.t));
        }
        if self.m_kib > max.m_kib {
            return bad(format!(
                "{} MiB of memory (the limit is {} MiB)",
                self.m_kib / 1024,
                max.m_kib / 1024
            ));
        }
        if self.m_kib < 8 * self.p {
            return bad(format!(
                "{} KiB of memory for {} lanes (at least 8 KiB per lane)",
                self.m_kib, self.p
            ));
        }
        Ok(())
    }

    fn derive(
        &self,
        passphrase: &SecretString,
        salt: &[u8],
    ) -> Result<Zeroizing<[u8; 32]>, VaultError> {
        self.check()?;
        let params = argon2::Params::new(self.m_kib, self.t, self.p, Some(32))
            .map_err(|e| VaultError::HostileKdf(e.to_string()))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut key = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase.expose().as_bytes(), salt, key.as_mut())
            .map_err(|e| VaultError::HostileKdf(e.to_string()))?;
        Ok(key)
    }
}

/// Most key slots a header may list. Every passphrase slot costs an Argon2 run on each unlock
/// attempt, and one header (up to 1 MiB) could otherwise list thousands of them.
pub(crate) const MAX_SLOTS: usize = 32;

/// Refuse a slot list that no writer of ours makes and that would make an unlock attempt run
/// for hours: more than [`MAX_SLOTS`] slots, or passphrase slots whose Argon2 work (memory ×
/// passes, summed over the slots within the per-slot caps) exceeds one maximal slot's. Checked
/// on read before any key derivation (the per-slot caps are checked when a slot is tried), and
/// before a slot is added, so a vault we write always passes.
pub(crate) fn check_slot_list(slots: &[Slot]) -> Result<(), VaultError> {
    if slots.len() > MAX_SLOTS {
        return Err(VaultError::Corrupt(format!(
            "the header lists {} key slots, above the limit of {MAX_SLOTS}",
            slots.len()
        )));
    }
    let work = |k: &KdfParams| u64::from(k.m_kib) * u64::from(k.t);
    let budget = work(&KdfParams::MAX);
    let total: u64 = slots
        .iter()
        .filter_map(|s| match s {
            Slot::Passphrase { kdf, .. } if kdf.check().is_ok() => Some(work(kdf)),
            _ => None,
        })
        .sum();
    if total > budget {
        return Err(VaultError::HostileKdf(format!(
            "{} MiB x passes of Argon2 across its passphrase slots (all slots together may ask for {} MiB x passes, one maximal slot)",
            total / 1024,
            budget / 1024
        )));
    }
    Ok(())
}

/// One key slot, as stored in the header (`type` tags the variant).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Slot {
    /// Unlocked by a passphrase through Argon2id.
    Passphrase {
        /// Slot id: 8 random bytes, hex.
        id: String,
        /// `argon2id` (the only algorithm; stored so a future one is a clear error).
        alg: String,
        /// Argon2 parameters.
        kdf: KdfParams,
        /// Salt, base64 (16 bytes).
        salt: String,
        /// ChaCha20-Poly1305 nonce, base64 (12 bytes).
        nonce: String,
        /// The wrapped identity, base64.
        wrapped: String,
    },
    /// Unlocked by a key held in an OS keyring.
    Keyring {
        /// Slot id.
        id: String,
        /// Which store holds the key.
        store: KeyringStore,
        /// The keyring entry's service name.
        service: String,
        /// The keyring entry's account (user) name.
        account: String,
        /// ChaCha20-Poly1305 nonce, base64.
        nonce: String,
        /// The wrapped identity, base64.
        wrapped: String,
    },
    /// Unlocked by an age identity file.
    Identity {
        /// Slot id.
        id: String,
        /// The recipient of the identity file (`age1…`), to find the slot for a given file.
        recipient: String,
        /// The vault identity age-encrypted to `recipient`, base64.
        wrapped: String,
    },
}

impl Slot {
    /// The slot's id.
    pub fn id(&self) -> &str {
        match self {
            Slot::Passphrase { id, .. } | Slot::Keyring { id, .. } | Slot::Identity { id, .. } => {
                id
            }
        }
    }

    /// The slot's type name as stored.
    pub fn kind(&self) -> &'static str {
        match self {
            Slot::Passphrase { .. } => "passphrase",
            Slot::Keyring { .. } => "keyring",
            Slot::Identity { .. } => "identity",
        }
    }

    /// A one-line description without anything secret.
    pub fn describe(&self) -> String {
        match self {
            Slot::Passphrase { kdf, .. } => {
                format!(
                    "passphrase (argon2id m={} MiB t={} p={})",
                    kdf.m_kib / 1024,
                    kdf.t,
                    kdf.p
                )
            }
            Slot::Keyring {
                store,
                service,
                account,
                ..
            } => {
                format!(
                    "keyring ({}: service={service} account={account})",
                    store.as_str()
                )
            }
            Slot::Identity { recipient, .. } => format!("identity file ({recipient})"),
        }
    }
}

/// A fresh random slot id.
pub(crate) fn new_slot_id() -> String {
    let mut b = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut b);
    HEXLOWER.encode(&b)
}

fn aad(vault_id: &str, slot_id: &str) -> Vec<u8> {
    let mut a = SLOT_AAD.to_vec();
    a.push(0);
    a.extend_from_slice(vault_id.as_bytes());
    a.push(0);
    a.extend_from_slice(slot_id.as_bytes());
    a
}

fn seal(key: &[u8; 32], aad: &[u8], identity: &str) -> Result<(String, String), VaultError> {
    let mut nonce = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    let ct = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: identity.as_bytes(),
                aad,
            },
        )
        .map_err(|_| VaultError::Internal("slot encryption failed".into()))?;
    Ok((BASE64.encode(&nonce), BASE64.encode(&ct)))
}

fn open(
    key: &[u8; 32],
    aad: &[u8],
    nonce: &str,
    wrapped: &str,
) -> Result<Option<Zeroizing<String>>, VaultError> {
    let bad = || VaultError::Corrupt("a key slot is not valid base64".into());
    let nonce = BASE64.decode(nonce.as_bytes()).map_err(|_| bad())?;
    if nonce.len() != 12 {
        return Err(VaultError::Corrupt(
            "a key slot's nonce is not 12 bytes".into(),
        ));
    }
    let ct = BASE64.decode(wrapped.as_bytes()).map_err(|_| bad())?;
    let cipher = ChaCha20Poly1305::new(Key::from_slice(key));
    match cipher.decrypt(Nonce::from_slice(&nonce), Payload { msg: &ct, aad }) {
        // Wrong key: not an error of the file, just not this slot's key.
        Err(_) => Ok(None),
        Ok(pt) => {
            let pt = Zeroizing::new(pt);
            let s = std::str::from_utf8(&pt)
                .map_err(|_| VaultError::Corrupt("a key slot holds a malformed identity".into()))?;
            Ok(Some(Zeroizing::new(s.to_owned())))
        }
    }
}

/// Make a passphrase slot wrapping `identity`.
pub(crate) fn passphrase_slot(
    vault_id: &str,
    identity: &str,
    passphrase: &SecretString,
    kdf: KdfParams,
) -> Result<Slot, VaultError> {
    if passphrase.is_empty() {
        return Err(VaultError::EmptyPassphrase);
    }
    let id = new_slot_id();
    let mut salt = [0u8; 16];
    rand::rngs::OsRng.fill_bytes(&mut salt);
    let key = kdf.derive(passphrase, &salt)?;
    let (nonce, wrapped) = seal(&key, &aad(vault_id, &id), identity)?;
    Ok(Slot::Passphrase {
        id,
        alg: "argon2id".into(),
        kdf,
        salt: BASE64.encode(&salt),
        nonce,
        wrapped,
    })
}

/// Make a keyring slot: a random key is stored in the keyring, the identity is wrapped under it.
pub(crate) fn keyring_slot(
    vault_id: &str,
    identity: &str,
    store: KeyringStore,
) -> Result<Slot, VaultError> {
    let id = new_slot_id();
    let mut key = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(key.as_mut());
    let service = "scopevault".to_owned();
    let account = format!("{vault_id}/{id}");
    super::keyring::put(store, &service, &account, key.as_ref())?;
    let (nonce, wrapped) = seal(&key, &aad(vault_id, &id), identity)?;
    Ok(Slot::Keyring {
        id,
        store,
        service,
        account,
        nonce,
        wrapped,
    })
}

/// Make an identity-file slot for a new identity; returns the slot and the identity file text.
pub(crate) fn identity_slot(identity: &str) -> Result<(Slot, Zeroizing<String>), VaultError> {
    use secrecy::ExposeSecret;
    let file_identity = age::x25519::Identity::generate();
    let recipient = file_identity.to_public();
    let wrapped = age::encrypt(&recipient, identity.as_bytes())
        .map_err(|e| VaultError::Internal(format!("age encryption failed: {e}")))?;
    let text = Zeroizing::new(format!(
        "# scopevault identity file: unlocks the vault it was made for. Keep it secret (0600).\n# public key: {recipient}\n{}\n",
        file_identity.to_string().expose_secret()
    ));
    Ok((
        Slot::Identity {
            id: new_slot_id(),
            recipient: recipient.to_string(),
            wrapped: BASE64.encode(&wrapped),
        },
        text,
    ))
}

/// Try a passphrase on a slot. `Ok(None)`: wrong passphrase for this slot.
pub(crate) fn try_passphrase(
    slot: &Slot,
    vault_id: &str,
    passphrase: &SecretString,
) -> Result<Option<Zeroizing<String>>, VaultError> {
    let Slot::Passphrase {
        id,
        alg,
        kdf,
        salt,
        nonce,
        wrapped,
    } = slot
    else {
        return Ok(None);
    };
    if alg != "argon2id" {
        return Err(VaultError::Corrupt(format!(
            "key slot {id} uses unknown KDF `{alg}`"
        )));
    }
    // Caps first: never run a KDF a hostile file asks for.
    kdf.check().map_err(|e| match e {
        VaultError::HostileKdf(w) => VaultError::HostileKdf(format!("key slot {id} demands {w}")),
        other => other,
    })?;
    let salt = BASE64
        .decode(salt.as_bytes())
        .map_err(|_| VaultError::Corrupt(format!("key slot {id}: salt is not base64")))?;
    if !(8..=64).contains(&salt.len()) {
        return Err(VaultError::Corrupt(format!(
            "key slot {id}: salt must be 8..=64 bytes"
        )));
    }
    let key = kdf.derive(passphrase, &salt)?;
    open(&key, &aad(vault_id, id), nonce, wrapped)
}

/// Try the keyring on a keyring slot.
pub(crate) fn try_keyring(
    slot: &Slot,
    vault_id: &str,
) -> Result<Option<Zeroizing<String>>, VaultError> {
    let Slot::Keyring {
        id,
        store,
        service,
        account,
        nonce,
        wrapped,
    } = slot
    else {
        return Ok(None);
    };
    let key = super::keyring::get(*store, service, account)?;
    let key: [u8; 32] = key.as_slice().try_into().map_err(|_| {
        VaultError::Keyring(format!(
            "the keyring entry {service}/{account} is not a 32-byte key"
        ))
    })?;
    let key = Zeroizing::new(key);
    open(&key, &aad(vault_id, id), nonce, wrapped)
}

/// Try an age identity file's identities on an identity slot.
pub(crate) fn try_identity(
    slot: &Slot,
    identities: &[age::x25519::Identity],
) -> Result<Option<Zeroizing<String>>, VaultError> {
    let Slot::Identity {
        recipient, wrapped, ..
    } = slot
    else {
        return Ok(None);
    };
    let Some(ident) = identities
        .iter()
        .find(|i| i.to_public().to_string() == *recipient)
    else {
        return Ok(None);
    };
    let ct = BASE64
        .decode(wrapped.as_bytes())
        .map_err(|_| VaultError::Corrupt("an identity slot is not valid base64".into()))?;
    let pt = Zeroizing::new(age::decrypt(ident, &ct).map_err(|_| {
        VaultError::Corrupt("an identity slot does not decrypt with its own identity".into())
    })?);
    let s = std::str::from_utf8(&pt)
        .map_err(|_| VaultError::Corrupt("an identity slot holds a malformed identity".into()))?;
    Ok(Some(Zeroizing::new(s.to_owned())))
}

/// Parse an identity file: `AGE-SECRET-KEY-1…` lines, `#` comments and blank lines.
pub(crate) fn parse_identity_file(text: &str) -> Result<Vec<age::x25519::Identity>, VaultError> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        // The error from age would not contain the key, but we say only the line number anyway.
        let id = age::x25519::Identity::from_str(line).map_err(|_| {
            VaultError::BadIdentityFile(format!("line {} is not an age X25519 identity", n + 1))
        })?;
        out.push(id);
    }
    if out.is_empty() {
        return Err(VaultError::BadIdentityFile("it holds no identity".into()));
    }
    Ok(out)
}
