//! The vault file's byte layout: framing, header, MAC. `vault-format.md` is the normative text;
//! this module is its implementation and must change with it.
//!
//! ```text
//! MAGIC "SCOPEVLT" (8) | VERSION u16 BE | HEADER_LEN u32 BE | HEADER (JSON) |
//! PAYLOAD_LEN u64 BE | PAYLOAD (age, binary) | MAC (32)
//! ```

use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use zeroize::Zeroizing;

use super::slots::{Slot, V1IdentitySlot};
use super::VaultError;

/// The 8 bytes every vault file starts with.
pub(crate) const MAGIC: &[u8; 8] = b"SCOPEVLT";
/// The format version this build writes, and the only one it opens for use.
pub(crate) const VERSION: u16 = 2;
/// The previous version: parsed only so that `scopevault key migrate` can upgrade it (its
/// identity-file slots do not authenticate the writer).
pub(crate) const VERSION_1: u16 = 1;
/// Largest header accepted: slots are small; a bigger header is hostile or corrupt.
pub(crate) const MAX_HEADER_LEN: usize = 1 << 20;
/// Largest payload accepted (256 MiB): ten thousand credentials take a few MiB.
pub(crate) const MAX_PAYLOAD_LEN: u64 = 256 << 20;
/// Largest file accepted, checked before reading it.
pub(crate) const MAX_FILE_LEN: u64 = 8 + 2 + 4 + MAX_HEADER_LEN as u64 + 8 + MAX_PAYLOAD_LEN + 32;
const MAC_LEN: usize = 32;
const MAC_INFO: &[u8] = b"scopevault/v2/file-mac";
const MAC_INFO_V1: &[u8] = b"scopevault/v1/file-mac";

/// The authenticated, unencrypted header: everything needed to unlock, nothing secret.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Header {
    /// 16 random bytes, lowercase hex. Names the vault in the keyring and the rollback state.
    pub vault_id: String,
    /// Incremented by every save; the rollback check compares it with the highest seen.
    pub generation: u64,
    /// The age X25519 recipient the payload is encrypted to (`age1…`).
    pub recipient: String,
    /// When the vault was created (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub created: time::OffsetDateTime,
    /// Key slots: each wraps the vault identity under one unlock source.
    pub slots: Vec<Slot>,
}

/// A vault file split into its parts. The MAC is checked separately, once the identity is
/// known ([`Parsed::verify_mac`]): before that nothing here is trusted.
pub(crate) struct Parsed<'a> {
    /// [`VERSION`] or [`VERSION_1`].
    pub version: u16,
    /// The header. For a version-1 file, `slots` holds its passphrase and keyring slots only
    /// (the same in both versions); its identity slots are in `v1_identity_slots`.
    pub header: Header,
    /// A version-1 file's identity slots (empty for version 2).
    pub v1_identity_slots: Vec<V1IdentitySlot>,
    /// Set only by [`Parsed::parse_to_authenticate`]: what the header holds that this build
    /// does not know (a member, a slot type, a slot member), left out of `header`. Such a file
    /// is never used: once authenticated it is refused as written by a newer scopevault.
    pub newer: Option<String>,
    pub payload: &'a [u8],
    authenticated: &'a [u8],
    mac: &'a [u8],
}

impl<'a> Parsed<'a> {
    /// Split and sanity-check a file's bytes. Never allocates more than the file's size. A
    /// header that holds, besides what this build reads, only what it does not know is
    /// [`VaultError::NewerHeader`]: it cannot be authenticated here.
    pub fn parse(bytes: &'a [u8]) -> Result<Parsed<'a>, VaultError> {
        Parsed::parse_reading(bytes, false)
    }

    /// [`Parsed::parse`] for an open that goes on to unwrap the key and verify the MAC: a
    /// header that is well-formed but holds members, slot types or slot members this build
    /// does not know is read without them ([`newer_header`]) and `newer` says what they were.
    ///
    /// Sound because the MAC covers the header's bytes as written, not as read: what is left
    /// out is authenticated with the rest, and nothing read this way is used but to unwrap
    /// the key, verify the MAC, check and record the generation and refuse the file
    /// (twenty-fifth pass: such a file was "corrupt; restore it from a backup", and the
    /// backup restored was accepted; vault-format.md, "Header").
    pub fn parse_to_authenticate(bytes: &'a [u8]) -> Result<Parsed<'a>, VaultError> {
        Parsed::parse_reading(bytes, true)
    }

    fn parse_reading(bytes: &'a [u8], to_authenticate: bool) -> Result<Parsed<'a>, VaultError> {
        let corrupt = |what: &str| VaultError::Corrupt(what.to_owned());
        let f = frame(bytes, bytes.len())?;
        let (version, plen) = (f.version, f.plen);
        let header_bytes = &bytes[14..14 + f.hlen];
        let mut newer = None;
        let (header, v1_identity_slots) = if version == VERSION {
            // serde quotes an unknown member's name or variant as it is: escaped, since
            // whoever wrote the file may have put terminal controls there.
            let header: Header = match serde_json::from_slice(header_bytes) {
                Ok(h) => h,
                Err(e) => match newer_header(header_bytes) {
                    Some((h, what)) if to_authenticate => {
                        newer = Some(what);
                        h
                    }
                    Some((_, what)) => return Err(VaultError::NewerHeader(what)),
                    None => {
                        return Err(corrupt(&format!(
                            "the header is not valid: {}",
                            crate::text::escape_for_terminal(&e.to_string())
                        )))
                    }
                },
            };
            super::slots::check_slot_list(&header.slots)?;
            (header, Vec::new())
        } else {
            parse_v1_header(header_bytes)?
        };
        check_vault_id(&header.vault_id)?;
        check_generation(header.generation)?;
        if let (true, Some(what)) = (header.slots.is_empty(), &newer) {
            // Every slot is of a type this build does not know: nothing here can unlock it.
            return Err(VaultError::NewerHeader(what.clone()));
        }
        if header.slots.is_empty() && v1_identity_slots.is_empty() {
            // The format requires one or more: `key list` listed nothing, exit 0, and an
            // unlock said "no passphrase slot" (nineteenth pass).
            return Err(corrupt(
                "the header lists no key slot (the format requires one or more), so nothing can unlock it",
            ));
        }
        let payload_start = f.payload_start();
        let payload = &bytes[payload_start..payload_start + plen];
        let auth_len = payload_start + age_prefix_len(payload)?;
        Ok(Parsed {
            version,
            header,
            v1_identity_slots,
            newer,
            payload,
            authenticated: &bytes[..auth_len],
            mac: &bytes[bytes.len() - MAC_LEN..],
        })
    }

    /// Check the MAC with a key derived from the vault identity. A file written by someone
    /// without the identity (even a valid age file for our recipient) fails here; a change to
    /// the payload after its age header fails age's own authentication when it is decrypted.
    pub fn verify_mac(&self, identity: &str) -> Result<(), VaultError> {
        let info = if self.version == VERSION_1 {
            MAC_INFO_V1
        } else {
            MAC_INFO
        };
        let mut mac = mac_for(identity, &self.header.vault_id, info);
        mac.update(self.authenticated);
        mac.verify_slice(self.mac).map_err(|_| VaultError::Forged)
    }
}

/// The members of a header this build knows (vault-format.md, "Header").
const HEADER_MEMBERS: &[&str] = &["vault_id", "generation", "recipient", "created", "slots"];

/// The members of a slot of type `kind` this build knows (vault-format.md, "Key slots"), or
/// `None` for a type it does not know.
fn slot_members(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "passphrase" => Some(&[
            "type", "id", "alg", "kdf", "salt", "nonce", "wrapped", "label", "created", "changed",
        ]),
        "keyring" => Some(&[
            "type", "id", "store", "service", "account", "nonce", "wrapped", "label", "created",
        ]),
        "identity" => Some(&["type", "id", "nonce", "wrapped", "label", "created"]),
        _ => None,
    }
}

/// A version-2 header that does not parse, read again without the members and slots this
/// build does not know (a header member; a slot of a type it does not know, left out whole;
/// a member of a slot of a type it knows): the header, and what was left out, named for a
/// message (at most three, each name cut at 64 characters and escaped). `None` when nothing
/// was left out, or what is left still does not parse (damage, not a newer writer).
fn newer_header(bytes: &[u8]) -> Option<(Header, String)> {
    let mut value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let mut unknown = Vec::new();
    let header = value.as_object_mut()?;
    header.retain(|k, _| {
        let known = HEADER_MEMBERS.contains(&k.as_str());
        if !known {
            unknown.push(format!("a header member `{}`", shown_name(k)));
        }
        known
    });
    if let Some(serde_json::Value::Array(slots)) = header.get_mut("slots") {
        slots.retain_mut(|slot| {
            let Some(slot) = slot.as_object_mut() else {
                return true;
            };
            let Some(kind) = slot.get("type").and_then(|t| t.as_str()).map(str::to_owned) else {
                return true;
            };
            let Some(members) = slot_members(&kind) else {
                unknown.push(format!("a key slot of type `{}`", shown_name(&kind)));
                return false;
            };
            slot.retain(|k, _| {
                let known = members.contains(&k.as_str());
                if !known {
                    unknown.push(format!(
                        "a member `{}` in a slot of type {kind}",
                        shown_name(k)
                    ));
                }
                known
            });
            true
        });
    }
    if unknown.is_empty() {
        return None;
    }
    let header: Header = serde_json::from_value(value).ok()?;
    let more = unknown.len().saturating_sub(3);
    unknown.truncate(3);
    let mut what = unknown.join(", ");
    if more > 0 {
        what.push_str(&format!(" and {more} more"));
    }
    Some((
        header,
        format!("its header holds {what}, which this scopevault does not know"),
    ))
}

/// A name from a header as a message shows it: its first 64 characters, escaped.
fn shown_name(name: &str) -> String {
    let cut: String = name.chars().take(64).collect();
    let cut = if cut.len() < name.len() {
        format!("{cut}…")
    } else {
        cut
    };
    crate::text::escape_for_terminal(&cut)
}

/// A file's framing: its version, and the lengths of its header and its payload.
struct Frame {
    version: u16,
    hlen: usize,
    plen: usize,
}

impl Frame {
    /// Where the payload begins: after the magic, version, header length, header and payload
    /// length (vault-format.md).
    fn payload_start(&self) -> usize {
        22 + self.hlen
    }
}

/// The framing checks, on the first bytes of a file of `total` bytes: magic, version, and
/// lengths within the limits that add up to `total`. `head` is the whole file or its first
/// [`EARLY_LEN`] bytes, which always hold the header and the payload length.
fn frame(head: &[u8], total: usize) -> Result<Frame, VaultError> {
    let corrupt = |what: &str| VaultError::Corrupt(what.to_owned());
    if head.len() < total.min(EARLY_LEN) {
        return Err(VaultError::Internal(
            "the vault file's first part was not read whole".into(),
        ));
    }
    if total < 8 || &head[..8] != MAGIC {
        return Err(VaultError::NotAVault);
    }
    if total < 10 {
        return Err(corrupt("the file ends inside the version field"));
    }
    let version = u16::from_be_bytes([head[8], head[9]]);
    if version != VERSION && version != VERSION_1 {
        return Err(VaultError::UnsupportedVersion(version));
    }
    if total < 14 {
        return Err(corrupt("the file ends inside the header length"));
    }
    let hlen = u32::from_be_bytes(head[10..14].try_into().expect("4 bytes")) as usize;
    if hlen > MAX_HEADER_LEN {
        return Err(corrupt(&format!(
            "the header claims {hlen} bytes, above the limit of {MAX_HEADER_LEN}"
        )));
    }
    if total < 22 + hlen {
        return Err(corrupt("the file ends inside the header (truncated?)"));
    }
    let plen = u64::from_be_bytes(head[14 + hlen..22 + hlen].try_into().expect("8 bytes"));
    if plen > MAX_PAYLOAD_LEN {
        return Err(corrupt(&format!(
            "the payload claims {plen} bytes, above the limit of {MAX_PAYLOAD_LEN}"
        )));
    }
    let plen = plen as usize;
    let rest = total - 22 - hlen;
    if rest != plen + MAC_LEN {
        return Err(corrupt(if rest < plen + MAC_LEN {
            "the file is shorter than its header says (truncated?)"
        } else {
            "the file has bytes after its MAC"
        }));
    }
    Ok(Frame {
        version,
        hlen,
        plen,
    })
}

/// How many first bytes of a file [`check_mac_early`] needs at most: framing, the largest
/// header, the payload length, the largest age header and the payload nonce.
pub(crate) const EARLY_LEN: usize = 14 + MAX_HEADER_LEN + 8 + MAX_AGE_HEADER + 16;

/// Check a file's framing and MAC from its first bytes (`head`, at least the smaller of
/// [`EARLY_LEN`] and `total`), its length and its last [`MAC_LEN`] bytes, with the identity
/// and id of the vault it must be: what a reader that holds the identity (the daemon's
/// reload) can refuse without reading the payload, which may be 256 MiB. It accepts a file
/// only where [`Parsed::parse`] and [`Parsed::verify_mac`] would get as far; these still run
/// on the whole file. A version-1 file is refused as [`VaultError::NeedsMigration`].
pub(crate) fn check_mac_early(
    head: &[u8],
    total: usize,
    mac: &[u8],
    identity: &str,
    vault_id: &str,
) -> Result<(), VaultError> {
    let f = frame(head, total)?;
    if f.version != VERSION {
        return Err(VaultError::NeedsMigration);
    }
    let (payload_start, plen) = (f.payload_start(), f.plen);
    // The age header and nonce lie in the first MAX_AGE_HEADER + 16 bytes of the payload, all
    // in `head`: `age_prefix_len` finds the same end in this part as in the whole.
    let payload_head = &head[payload_start..head.len().min(payload_start + plen)];
    let auth_len = payload_start + age_prefix_len(payload_head)?;
    let mut m = mac_for(identity, vault_id, MAC_INFO);
    m.update(&head[..auth_len]);
    m.verify_slice(mac).map_err(|_| VaultError::Forged)
}

/// The largest age header we accept (one X25519 stanza takes about 200 bytes).
const MAX_AGE_HEADER: usize = 64 * 1024;

/// How many leading payload bytes the MAC covers: the age header (up to and including its
/// `--- MAC` line) and the 16-byte payload nonce.
///
/// Why not the whole ciphertext: age authenticates every payload chunk with ChaCha20-Poly1305
/// under a key derived from the file key and this nonce, and the age header's own MAC binds the
/// header to the file key. Someone without the vault identity cannot learn the file key, so
/// once our MAC pins the age header and nonce, any change to the rest of the payload fails
/// decryption (which always runs in full). Hashing megabytes of ciphertext a second time would
/// add nothing but time (it made opening 10,000 credentials 1.3x plain age).
fn age_prefix_len(payload: &[u8]) -> Result<usize, VaultError> {
    let window = &payload[..payload.len().min(MAX_AGE_HEADER)];
    let corrupt = || VaultError::Corrupt("the payload does not start with an age header".into());
    let mac_line = window
        .windows(5)
        .position(|w| w == b"\n--- ")
        .ok_or_else(corrupt)?
        + 1;
    let end = window[mac_line..]
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(corrupt)?
        + mac_line
        + 1;
    let with_nonce = end + 16;
    if with_nonce > payload.len() {
        return Err(corrupt());
    }
    Ok(with_nonce)
}

/// A version-1 header: the same members, but identity slots hold `recipient` and an age file.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HeaderV1 {
    vault_id: String,
    generation: u64,
    recipient: String,
    #[serde(with = "time::serde::rfc3339")]
    created: time::OffsetDateTime,
    slots: Vec<SlotV1>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum SlotV1 {
    Identity(V1IdentitySlot),
    Other(Slot),
}

fn parse_v1_header(bytes: &[u8]) -> Result<(Header, Vec<V1IdentitySlot>), VaultError> {
    let corrupt = |what: String| VaultError::Corrupt(format!("the header is not valid: {what}"));
    let h: HeaderV1 = serde_json::from_slice(bytes)
        .map_err(|e| corrupt(crate::text::escape_for_terminal(&e.to_string())))?;
    let (mut slots, mut v1) = (Vec::new(), Vec::new());
    for s in h.slots {
        match s {
            SlotV1::Identity(s) if s.kind == "identity" => v1.push(s),
            SlotV1::Other(Slot::Identity { .. }) | SlotV1::Identity(_) => {
                return Err(corrupt(
                    "a version-1 file holds a slot of another version".into(),
                ))
            }
            SlotV1::Other(s) => slots.push(s),
        }
    }
    if slots.len() + v1.len() > super::slots::MAX_SLOTS {
        return Err(VaultError::Corrupt(format!(
            "the header lists {} key slots, above the limit of {}",
            slots.len() + v1.len(),
            super::slots::MAX_SLOTS
        )));
    }
    super::slots::check_slot_list(&slots)?;
    let header = Header {
        vault_id: h.vault_id,
        generation: h.generation,
        recipient: h.recipient,
        created: h.created,
        slots,
    };
    Ok((header, v1))
}

/// `vault_id` is 32 lowercase hex digits (vault-format.md), checked before anything reads it:
/// it names the vault in the rollback record (where `format2:<id>` marks a version-2 vault, so
/// a version-1 file claiming the id `format2:<id>` would pass a downgrade check by the very
/// marker meant to stop it), in keyring accounts and in messages (where an escape sequence
/// would reach the terminal) before the file is authenticated.
/// Whether `id` is a vault id as the header holds it: 32 lowercase hex digits.
pub(crate) fn is_vault_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A file's generation is 1 ..= [`super::LAST_GENERATION`] (vault-format.md, "Rollback
/// detection"): the first file written is 1, and no save writes 2^64 − 1. Generation 0 and
/// 2^64 − 1 were accepted, though no writer makes them (nineteenth pass).
fn check_generation(generation: u64) -> Result<(), VaultError> {
    if (1..=super::LAST_GENERATION).contains(&generation) {
        return Ok(());
    }
    let why = if generation == 0 {
        "generations start at 1, the first file written"
    } else {
        "no save writes it (the last generation a save writes is 2^64 - 2)"
    };
    Err(VaultError::Corrupt(format!(
        "the header is not valid: generation {generation}: {why}"
    )))
}

/// The vault id a file's header names, read from its first bytes `head` before anything is
/// authenticated; `None` when the header cannot be read or the id is not well formed (the
/// checks that follow then say what is wrong).
pub(crate) fn header_vault_id(head: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct IdOnly {
        vault_id: String,
    }
    if head.get(..8)? != &MAGIC[..] {
        return None;
    }
    let hlen = u32::from_be_bytes(head.get(10..14)?.try_into().ok()?) as usize;
    let h: IdOnly = serde_json::from_slice(head.get(14..14usize.checked_add(hlen)?)?).ok()?;
    is_vault_id(&h.vault_id).then_some(h.vault_id)
}

fn check_vault_id(id: &str) -> Result<(), VaultError> {
    if is_vault_id(id) {
        return Ok(());
    }
    Err(VaultError::Corrupt(format!(
        "the header is not valid: vault_id is not 32 lowercase hex digits ({} bytes)",
        id.len()
    )))
}

fn mac_for(identity: &str, vault_id: &str, info: &[u8]) -> Hmac<Sha256> {
    let hk = Hkdf::<Sha256>::new(Some(vault_id.as_bytes()), identity.as_bytes());
    let mut key = Zeroizing::new([0u8; 32]);
    hk.expand(info, key.as_mut())
        .expect("32 bytes is a valid HKDF-SHA256 length");
    <Hmac<Sha256> as Mac>::new_from_slice(key.as_ref()).expect("HMAC takes any key length")
}

/// The key info of the rollback record's binding (vault-format.md, "Rollback detection").
const BINDING_INFO: &[u8] = b"scopevault/v2/record-binding";
/// The message the binding's HMAC is taken of.
const BINDING_MESSAGE: &[u8] = b"scopevault rollback record binding";

/// The binding of vault `vault_id` in this machine's rollback record: the first 16 bytes of
/// HMAC-SHA256 under a key derived from the vault identity as the file MAC's is (HKDF-SHA256,
/// salt `vault_id`, info `scopevault/v2/record-binding`) of `scopevault rollback record
/// binding`, as 32 lowercase hex digits. Only the identity's holder can make it, and it stays
/// the same as long as the identity does: across every save and slot change (`key add`,
/// `key remove`, `key passwd`) and `key migrate`, which keep the identity and rewrap it.
pub(crate) fn record_binding(identity: &str, vault_id: &str) -> String {
    let mut mac = mac_for(identity, vault_id, BINDING_INFO);
    mac.update(BINDING_MESSAGE);
    let full = mac.finalize().into_bytes();
    data_encoding::HEXLOWER.encode(&full[..16])
}

/// Serialise a whole file: framing, header, payload and the MAC (see [`age_prefix_len`] for
/// what it covers).
pub(crate) fn encode(
    header: &Header,
    payload: &[u8],
    identity: &str,
) -> Result<Vec<u8>, VaultError> {
    let header_bytes =
        serde_json::to_vec(header).map_err(|e| VaultError::Internal(e.to_string()))?;
    if header_bytes.len() > MAX_HEADER_LEN || payload.len() as u64 > MAX_PAYLOAD_LEN {
        return Err(VaultError::TooLarge);
    }
    let mut out = Vec::with_capacity(8 + 2 + 4 + header_bytes.len() + 8 + payload.len() + MAC_LEN);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_be_bytes());
    out.extend_from_slice(&(header_bytes.len() as u32).to_be_bytes());
    out.extend_from_slice(&header_bytes);
    out.extend_from_slice(&(payload.len() as u64).to_be_bytes());
    out.extend_from_slice(payload);
    let auth_len = out.len() - payload.len() + age_prefix_len(payload)?;
    let mut mac = mac_for(identity, &header.vault_id, MAC_INFO);
    mac.update(&out[..auth_len]);
    out.extend_from_slice(&mac.finalize().into_bytes());
    Ok(out)
}

/// The parser's length checks at their exact boundaries: mutation testing showed that the
/// fixture vectors (truncated, trailing bytes) did not pin `<` against `<=` or `>` against `>=`.
#[cfg(test)]
mod tests {
    use super::*;

    /// The members [`newer_header`] keeps are exactly those this build writes, every optional
    /// one set: a member added to [`Header`] or a [`Slot`] and not to the lists would make a
    /// file of this very build read as a newer one's.
    #[test]
    fn the_known_members_are_what_this_build_writes() {
        use super::super::keyring::KeyringStore;
        use super::super::slots::KdfParams;
        let t = Some(time::OffsetDateTime::UNIX_EPOCH);
        let label = Some("ops".to_owned());
        let s = || "x".to_owned();
        let slots = vec![
            Slot::Passphrase {
                id: s(),
                alg: s(),
                kdf: KdfParams::DEFAULT,
                salt: s(),
                nonce: s(),
                wrapped: s(),
                label: label.clone(),
                created: t,
                changed: t,
            },
            Slot::Keyring {
                id: s(),
                store: KeyringStore::Keyutils,
                service: s(),
                account: s(),
                nonce: s(),
                wrapped: s(),
                label: label.clone(),
                created: t,
            },
            Slot::Identity {
                id: s(),
                nonce: s(),
                wrapped: s(),
                label: label.clone(),
                created: t,
            },
        ];
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let sorted = |l: &[&str]| {
            let mut l: Vec<String> = l.iter().map(|s| s.to_string()).collect();
            l.sort();
            l
        };
        for slot in &slots {
            let v = serde_json::to_value(slot).unwrap();
            let kind = v["type"].as_str().unwrap().to_owned();
            assert_eq!(keys(&v), sorted(slot_members(&kind).unwrap()), "{kind}");
        }
        let header = Header {
            vault_id: "0".repeat(32),
            generation: 1,
            recipient: s(),
            created: time::OffsetDateTime::UNIX_EPOCH,
            slots,
        };
        let v = serde_json::to_value(&header).unwrap();
        assert_eq!(keys(&v), sorted(HEADER_MEMBERS));
        // And a header holding only these is not read as a newer one's.
        assert!(newer_header(&serde_json::to_vec(&v).unwrap()).is_none());
    }

    /// Framing with the given header length field and raw bytes after it.
    fn framed(hlen: u32, rest: &[u8]) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.extend_from_slice(&VERSION.to_be_bytes());
        b.extend_from_slice(&hlen.to_be_bytes());
        b.extend_from_slice(rest);
        b
    }

    fn corrupt_message(bytes: &[u8]) -> String {
        match Parsed::parse(bytes) {
            Err(VaultError::Corrupt(m)) => m,
            Err(e) => panic!("expected Corrupt, got {e:?}"),
            Ok(_) => panic!("parsed"),
        }
    }

    #[test]
    fn each_truncation_point_gets_its_own_error() {
        assert!(matches!(
            Parsed::parse(&MAGIC[..7]),
            Err(VaultError::NotAVault)
        ));
        // Exactly the magic: a vault cut short, not some other file.
        assert!(corrupt_message(MAGIC).contains("inside the version field"));
        let mut v = MAGIC.to_vec();
        v.push(0);
        assert!(corrupt_message(&v).contains("inside the version field"));
        v.push(1);
        assert!(corrupt_message(&v).contains("inside the header length"));
        v.extend_from_slice(&[0, 0, 0]);
        assert!(corrupt_message(&v).contains("inside the header length"));
        // A complete header length field, then nothing: the header itself is missing.
        assert!(corrupt_message(&framed(0, &[])).contains("inside the header (truncated?)"));
        // Header (10 bytes) and 7 of the payload length's 8 bytes.
        assert!(corrupt_message(&framed(10, &[b' '; 17])).contains("inside the header"));
        // Header and the whole payload length, declaring an empty payload, but no MAC.
        let mut rest = vec![b' '; 10];
        rest.extend_from_slice(&0u64.to_be_bytes());
        assert!(corrupt_message(&framed(10, &rest)).contains("shorter than its header says"));
        // One byte short of the MAC, then exactly the MAC, then one byte more.
        rest.extend_from_slice(&[0; MAC_LEN - 1]);
        assert!(corrupt_message(&framed(10, &rest)).contains("shorter than its header says"));
        rest.push(0);
        // Exactly complete: now the (blank) header is what is wrong.
        assert!(corrupt_message(&framed(10, &rest)).contains("header is not valid"));
        rest.push(0);
        assert!(corrupt_message(&framed(10, &rest)).contains("bytes after its MAC"));
    }

    #[test]
    fn header_and_payload_limits_are_inclusive() {
        let limit = u32::try_from(MAX_HEADER_LEN).unwrap();
        // At the limit the length is accepted and the (short) file is truncated...
        assert!(corrupt_message(&framed(limit, &[])).contains("truncated"));
        // ...one over, it is refused for its size.
        assert!(corrupt_message(&framed(limit + 1, &[])).contains("above the limit"));
        let mut at = vec![b' '; 2];
        at.extend_from_slice(&MAX_PAYLOAD_LEN.to_be_bytes());
        assert!(corrupt_message(&framed(2, &at)).contains("shorter than its header says"));
        let mut over = vec![b' '; 2];
        over.extend_from_slice(&(MAX_PAYLOAD_LEN + 1).to_be_bytes());
        assert!(corrupt_message(&framed(2, &over)).contains("above the limit"));
    }

    fn age_like(header_pad: usize, after_mac_line: usize) -> Vec<u8> {
        let mut p = b"age-encryption.org/v1\n-> X25519 stanza\n".to_vec();
        p.extend(std::iter::repeat_n(b'A', header_pad));
        p.extend_from_slice(b"\n--- macmacmac\n");
        p.extend(std::iter::repeat_n(b'n', after_mac_line));
        p
    }

    #[test]
    fn the_age_prefix_is_the_header_and_the_full_nonce() {
        let p = age_like(10, 16);
        assert_eq!(
            age_prefix_len(&p).unwrap(),
            p.len(),
            "header + nonce, no chunk yet"
        );
        assert!(
            age_prefix_len(&age_like(10, 15)).is_err(),
            "the nonce is cut short"
        );
        // Age headers with several stanzas are longer than one kilobyte: up to 64 KiB is read.
        let long = age_like(8 * 1024, 20);
        assert_eq!(age_prefix_len(&long).unwrap(), long.len() - 4);
        assert!(age_prefix_len(&age_like(MAX_AGE_HEADER, 20)).is_err());
    }

    #[test]
    fn encode_refuses_a_payload_over_the_limit_and_only_then() {
        let header = Header {
            vault_id: "00".repeat(16),
            generation: 1,
            recipient: "age1x".into(),
            created: time::OffsetDateTime::UNIX_EPOCH,
            slots: Vec::new(),
        };
        let over = vec![0u8; usize::try_from(MAX_PAYLOAD_LEN).unwrap() + 1];
        assert!(matches!(
            encode(&header, &over, "id"),
            Err(VaultError::TooLarge)
        ));
        // At the limit the size is fine; these zeros are then not an age payload.
        let at = &over[..over.len() - 1];
        assert!(matches!(
            encode(&header, at, "id"),
            Err(VaultError::Corrupt(_))
        ));
    }

    #[test]
    fn encode_refuses_a_header_over_the_limit_and_only_then() {
        let mut header = Header {
            vault_id: String::new(),
            generation: 1,
            recipient: "age1x".into(),
            created: time::OffsetDateTime::UNIX_EPOCH,
            slots: Vec::new(),
        };
        let base = serde_json::to_vec(&header).unwrap().len();
        header.vault_id = "a".repeat(MAX_HEADER_LEN - base);
        assert_eq!(serde_json::to_vec(&header).unwrap().len(), MAX_HEADER_LEN);
        let small = b"not an age payload";
        assert!(matches!(
            encode(&header, small, "id"),
            Err(VaultError::Corrupt(_))
        ));
        header.vault_id.push('a');
        assert!(matches!(
            encode(&header, small, "id"),
            Err(VaultError::TooLarge)
        ));
    }
}
