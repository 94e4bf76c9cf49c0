//! Health of a checkpoint for the fleet (docs/fleet.md, "Health"): the applied bundle's
//! record, the audit log's head, and the Prometheus text exposition `status --format
//! prometheus` prints for node_exporter's textfile collector.
//!
//! The applied bundle is remembered in the vault's payload (encrypted: [`crate::vault::FleetState`]),
//! which `status` cannot read without the vault key. So `bundle apply` also writes the clear
//! part of it (names, digests and times, never a value: what the manifest already shows in
//! the clear) to a small **applied record** in the state directory, beside the rollback
//! record: `fleet-applied-<16 hex digits of the SHA-256 of the vault's canonical path>.json`,
//! written atomically (temporary file, fsync, rename, fsync of the directory) after the vault
//! is saved. A crash between the two leaves the record one apply behind, never ahead.
//!
//! The record is written and read only through the state directory's checks
//! ([`crate::vault::SafeDir`]: not writable by group or others, no other user's link on the
//! way), is held to the rules of what an apply writes (names, digests, fingerprints), and is
//! reported only for the vault file it names: its `vault_id` is compared with the vault
//! file's header ([`read_applied`]).

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use data_encoding::HEXLOWER;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

/// Largest applied record read.
const MAX_RECORD: u64 = 64 * 1024;
/// Largest audit line looked at (the log's own limit is 1 MiB).
const MAX_AUDIT_LINE: u64 = 1024 * 1024 + 1;
/// The head of an empty chain (as the audit log's).
pub const GENESIS: &str = crate::audit::GENESIS;

/// The applied record's format this build writes: 4. Format 3, read too, keeps only the
/// generation of each entry of [`AppliedRecord::locations_applied`]; format 2 also lacks
/// [`AppliedRecord::payload_digest`]; format 1 also [`AppliedRecord::vault_payload_digest`].
pub const RECORD_FORMAT: u32 = 4;

/// The clear record of the last bundle applied to a vault (names, digests and times only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedRecord {
    /// Record schema: [`RECORD_FORMAT`], or 1 or 2 from an older scopevault.
    pub format: u32,
    /// The vault the bundle was applied to (absolute path).
    pub vault: PathBuf,
    /// That vault's id.
    pub vault_id: String,
    /// The vault's generation right after the apply.
    pub vault_generation: u64,
    /// The bundle's location.
    pub location: String,
    /// The bundle's generation.
    pub generation: u64,
    /// The signer's key fingerprint (`SHA256:…`).
    pub signer_fingerprint: String,
    /// The principals of the allowed_signers lines that accepted the signer.
    pub signer_principals: Vec<String>,
    /// The bundle's policy digest.
    pub policy_digest: String,
    /// When the bundle was published.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When the bundle expires.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// When it was applied here.
    #[serde(with = "time::serde::rfc3339")]
    pub applied: OffsetDateTime,
    /// The vault file's [`crate::vault::FileFacts::payload_digest`] right after the apply's
    /// save: a later save that changed the vault's content (a local writer) encrypted another
    /// payload; one that changed only key slots kept it. Format 2; absent from format 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vault_payload_digest: Option<String>,
    /// The bundle's `payload_digest` (bundle-format.md), which tells it from another bundle of
    /// the same generation: two publishers, or two copies of the master vault, can publish a
    /// generation twice with different content, and a value rotated keeps the policy digest.
    /// `status` reports it, so a play or a monitor can compare it with the bundle it holds
    /// (twenty-ninth pass: it could not). Format 3; absent from formats 1 and 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_digest: Option<String>,
    /// For each location this vault served on this machine (this one too): the highest
    /// generation applied, and the payload digest of the bundle of that generation applied
    /// last. A move with `--from-location` back to a location already applied here is judged
    /// against it as an apply without a move is against the vault's record: a bundle below
    /// that generation, or another bundle of it, is refused unless `--allow-rollback`
    /// (twenty-ninth pass, found by the re-attacker: there and back took an older bundle as a
    /// first apply; thirtieth pass: it took another bundle of the generation). Format 4: each
    /// entry `{"generation": N, "payload_digest": "sha256:…"}` (the digest absent when not
    /// known: carried from an older record); format 3: the generation alone (`"ams": 2`);
    /// absent (empty) from formats 1 and 2.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub locations_applied: std::collections::BTreeMap<String, LocationApplied>,
}

/// An entry of [`AppliedRecord::locations_applied`], as format 3 or 4 writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LocationApplied {
    /// Format 3: the generation alone.
    Generation(u64),
    /// Format 4.
    Bundle(AppliedAt),
}

/// The highest generation of a location applied, and which bundle of it (format 4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedAt {
    /// The generation.
    pub generation: u64,
    /// The payload digest of the bundle of it applied last (`None`: not known, the entry
    /// carried from a record that did not keep it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_digest: Option<String>,
}

impl LocationApplied {
    /// The entry as format 4 writes it.
    pub fn at(&self) -> AppliedAt {
        match self {
            LocationApplied::Generation(generation) => AppliedAt {
                generation: *generation,
                payload_digest: None,
            },
            LocationApplied::Bundle(a) => a.clone(),
        }
    }
}

impl AppliedRecord {
    /// The highest generation of `location` this record remembers applied, with the payload
    /// digest of the bundle of it applied last when known: its own (the last apply), when it
    /// is that location's, and [`AppliedRecord::locations_applied`]'s.
    pub fn highest_of(&self, location: &str) -> Option<AppliedAt> {
        let own = (self.location == location).then(|| AppliedAt {
            generation: self.generation,
            payload_digest: self.payload_digest.clone(),
        });
        let kept = self
            .locations_applied
            .get(location)
            .map(LocationApplied::at);
        match (own, kept) {
            (Some(o), Some(k)) if k.generation > o.generation => Some(k),
            (Some(o), _) => Some(o),
            (None, k) => k,
        }
    }

    /// Add to [`AppliedRecord::locations_applied`] what `kept` ([`read_locations`]) remembers
    /// and this record does not: a location it does not name, or a higher generation of one
    /// (an older scopevault's apply wrote the record without them).
    pub fn remember(&mut self, kept: &std::collections::BTreeMap<String, AppliedAt>) {
        for (l, a) in kept {
            if self
                .highest_of(l)
                .is_none_or(|have| a.generation > have.generation)
            {
                self.locations_applied
                    .insert(l.clone(), LocationApplied::Bundle(a.clone()));
            }
        }
    }

    /// [`AppliedRecord::locations_applied`] as the next apply writes it (format 4): this
    /// record's entries and its own last apply, then `also` (the vault's record of its last
    /// apply, which a deleted machine record does not lose) and `applied` (the apply now)
    /// merged in by [`merge_applied`].
    pub fn next_locations_applied(
        this: Option<&AppliedRecord>,
        also: &[(&str, AppliedAt)],
    ) -> std::collections::BTreeMap<String, LocationApplied> {
        let mut l: std::collections::BTreeMap<String, AppliedAt> = this
            .map(|r| {
                r.locations_applied
                    .iter()
                    .map(|(k, v)| (k.clone(), v.at()))
                    .collect()
            })
            .unwrap_or_default();
        let own = this.map(|r| {
            (
                r.location.as_str(),
                AppliedAt {
                    generation: r.generation,
                    payload_digest: r.payload_digest.clone(),
                },
            )
        });
        for (location, at) in own.iter().chain(also) {
            merge_applied(l.entry((*location).to_owned()).or_insert(at.clone()), at);
        }
        l.into_iter()
            .map(|(k, v)| (k, LocationApplied::Bundle(v)))
            .collect()
    }
}

/// Merge `at`, applied after `kept`, into `kept`: a higher generation replaces it, and so does
/// another bundle of the same generation (taken on purpose, or the same one again) whose
/// digest is known; a lower generation (a rollback taken on purpose) leaves the highest.
fn merge_applied(kept: &mut AppliedAt, at: &AppliedAt) {
    if at.generation > kept.generation
        || (at.generation == kept.generation && at.payload_digest.is_some())
    {
        *kept = at.clone();
    }
}

/// The applied record of a vault, and what its file says since.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The record.
    pub record: AppliedRecord,
    /// The vault file's generation now (its header).
    pub vault_file_generation: u64,
    /// The vault's content changed since the apply, so what it holds is no longer the signed
    /// bundle: a local writer (`cred`, `policy apply`, `sync`, `import`) saved it, or an older
    /// copy was put back. Told by the payload's digest (a key-slot change keeps the payload
    /// and is not a change); for a format-1 record, which lacks it, by the generation (any
    /// later save counts).
    pub local_change: bool,
}

/// How a daemon's `vault.load` audit record names the bundle the vault holds: the bundle
/// (`bundle location=… generation=… signer=… policy_digest=…`) only when the policy loaded is
/// the bundle's (`served_policy`, [`crate::policy::Policy::digest`], is its `policy_digest`);
/// otherwise that the vault was changed locally since that bundle, so the record never says it
/// serves a bundle whose policy it does not hold.
pub fn served_bundle(
    a: &crate::vault::AppliedBundle,
    served_policy: Option<&str>,
    values_changed: bool,
) -> String {
    if served_policy == Some(a.policy_digest.as_str()) && values_changed {
        format!(
            "vault changed locally since bundle {} generation {} (its policy_digest={}, but values set since the apply: the payload is not the one the apply wrote)",
            a.location, a.generation, a.policy_digest
        )
    } else if served_policy == Some(a.policy_digest.as_str()) {
        format!(
            "bundle location={} generation={} signer={} policy_digest={}",
            a.location, a.generation, a.signer, a.policy_digest
        )
    } else {
        format!(
            "vault changed locally since bundle {} generation {} (the policy loaded is not its policy_digest={})",
            a.location, a.generation, a.policy_digest
        )
    }
}

/// Whether values were set in the vault at `vault_path` since bundle `a` was applied to it
/// (`cred set`, `sync`, `import` at the bundle's own policy): its applied record, for that
/// bundle, keeps the payload's digest right after the apply, and `payload_digest` is the one
/// loaded now. `false` when the record cannot be read or is another bundle's: then nothing
/// is claimed.
pub fn values_changed_since(
    a: &crate::vault::AppliedBundle,
    vault_path: &Path,
    payload_digest: &str,
) -> bool {
    match read_record(vault_path) {
        Ok(Some(r)) if r.location == a.location && r.generation == a.generation => r
            .vault_payload_digest
            .as_deref()
            .is_some_and(|d| d != payload_digest),
        _ => false,
    }
}

/// The vault's path as the record is keyed: canonical when the file exists (so `--vault`
/// through a symlink or `..` names the same record), else absolute.
pub fn canonical_vault(p: &Path) -> PathBuf {
    std::fs::canonicalize(p)
        .or_else(|_| std::path::absolute(p))
        .unwrap_or_else(|_| p.to_owned())
}

/// The applied record of the vault at `vault_path`, in the state directory.
pub fn record_path(vault_path: &Path) -> PathBuf {
    let digest = Sha256::digest(canonical_vault(vault_path).as_os_str().as_encoded_bytes());
    crate::vault::state_dir().join(format!(
        "fleet-applied-{}.json",
        &HEXLOWER.encode(&digest)[..16]
    ))
}

/// A fleet checkpoint's last apply, as this machine's applied record names it: for the advice
/// of a refusal of the vault file ([`crate::vault::VaultError::Rollback`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointOf {
    /// The location.
    pub location: String,
    /// The bundle generation applied last.
    pub generation: u64,
}

/// The bundle this machine applied last to the vault at `vault_path` whose id is `vault_id`,
/// by its applied record; `None` when there is none, it names another vault, or it cannot be
/// read (then nothing is claimed). Read without the vault key.
pub fn checkpoint_of(vault_path: &Path, vault_id: &str) -> Option<CheckpointOf> {
    let r = read_record(vault_path).ok().flatten()?;
    (r.vault_id == vault_id && r.vault == canonical_vault(vault_path)).then_some(CheckpointOf {
        location: r.location,
        generation: r.generation,
    })
}

/// The record's directory and file name.
fn record_place(vault_path: &Path) -> (PathBuf, PathBuf, String) {
    place_of(record_path(vault_path))
}

/// The directory and file name of a file in the state directory.
fn place_of(p: PathBuf) -> (PathBuf, PathBuf, String) {
    let dir = crate::paths::dir_of(&p);
    let name = p
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    (p, dir, name)
}

/// Write the applied record of the vault at `vault_path` atomically, mode 0644, through the
/// checked state directory ([`crate::vault::SafeDir`], created 0700 if missing), as the
/// rollback record is written. The error is the vault's own (an I/O error keeps its kind, so
/// the caller can say what to do).
pub fn write_record(
    vault_path: &Path,
    r: &AppliedRecord,
) -> Result<PathBuf, crate::vault::VaultError> {
    write_state_file(record_path(vault_path), r, ".fleet-applied.tmp-")
}

/// Write `value` as JSON to `p` in the state directory, atomically, mode 0644, through the
/// checked directory ([`crate::vault::SafeDir`], created 0700 if missing).
fn write_state_file(
    p: PathBuf,
    value: &impl Serialize,
    temporary: &str,
) -> Result<PathBuf, crate::vault::VaultError> {
    let (p, dir, name) = place_of(p);
    let mut text = serde_json::to_vec_pretty(value)
        .map_err(|e| crate::vault::VaultError::Internal(e.to_string()))?;
    text.push(b'\n');
    crate::vault::SafeDir::open(&dir, true)?.replace_with_mode(
        name.as_ref(),
        temporary,
        &text,
        0o644,
    )?;
    Ok(p)
}

/// The file beside the applied record that keeps, for the vault at `vault_path`, the locations
/// applied here ([`AppliedRecord::locations_applied`]) on their own: `fleet-locations-<the
/// record's 16 hex digits>.json`. A scopevault before the twenty-ninth pass rewrites the
/// applied record without them at its apply (format 2) and leaves this file alone, so going
/// back to it for an apply and upgrading again does not forget a location served before
/// (thirty-first pass).
pub fn locations_path(vault_path: &Path) -> PathBuf {
    let p = record_path(vault_path);
    let name = p
        .file_name()
        .map(|n| {
            n.to_string_lossy()
                .replacen("fleet-applied-", "fleet-locations-", 1)
        })
        .unwrap_or_default();
    p.with_file_name(name)
}

/// The file [`locations_path`] names: the vault it is of, and its locations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocationsFile {
    /// Always 1.
    format: u32,
    /// The vault's id.
    vault_id: String,
    /// As [`AppliedRecord::locations_applied`] (format 4).
    locations_applied: std::collections::BTreeMap<String, AppliedAt>,
}

/// The locations applied here to the vault whose id is `vault_id`, as the file
/// [`locations_path`] keeps them: empty when there is none or it is another vault's; an error
/// (naming the file) when it cannot be read or trusted, or is not what an apply writes.
pub fn read_locations(
    vault_path: &Path,
    vault_id: &str,
) -> Result<std::collections::BTreeMap<String, AppliedAt>, String> {
    let (p, dir, name) = place_of(locations_path(vault_path));
    if !dir.exists() {
        return Ok(Default::default());
    }
    let d = crate::vault::SafeDir::open(&dir, false)
        .map_err(|e| format!("cannot trust {}: {e}", p.display()))?;
    let Some(text) = d
        .read(&name, MAX_RECORD + 1)
        .map_err(|e| format!("cannot read {}: {e}", p.display()))?
    else {
        return Ok(Default::default());
    };
    let f: LocationsFile = serde_json::from_slice(&text)
        .ok()
        .filter(|f: &LocationsFile| {
            text.len() as u64 <= MAX_RECORD
                && f.format == 1
                && crate::vault::is_vault_id(&f.vault_id)
                && f.locations_applied.iter().all(|(l, a)| {
                    crate::policy::is_stored_name(l)
                        && a.payload_digest
                            .as_deref()
                            .is_none_or(super::bundle::is_digest)
                })
        })
        .ok_or_else(|| {
            format!(
                "{} is not what an apply writes there (format 1, a vault id, the locations applied)",
                p.display()
            )
        })?;
    Ok(if f.vault_id == vault_id {
        f.locations_applied
    } else {
        Default::default()
    })
}

/// What to do about a file [`locations_path`] that cannot be read ([`read_locations`]'s
/// error), as `doctor` and `status` say it.
pub const LOCATIONS_UNREADABLE: &str = "every move (`bundle apply --from-location`) is refused while it is there, and an apply leaves it as it is; put back a good copy (from a backup of the state directory), or remove it once checked: this machine then forgets which generations of other locations were applied here unless the applied record names them, and the next apply writes it (docs/operations.md, \"The locations applied here\")";

/// The locations applied here to the vault at `vault_path` whose id is `vault_id`, as a move
/// (`bundle apply --from-location`) judges them: the file [`locations_path`] and `record`'s
/// entries (its own last apply included) when it is that vault's, the highest generation of
/// each. `Err` (naming the file) when that file cannot be read or trusted: every move is
/// refused then. `doctor` and `status` said nothing of it, and the admin learnt it only at
/// the move (thirty-second pass).
pub fn locations_here(
    vault_path: &Path,
    vault_id: &str,
    record: Option<&AppliedRecord>,
) -> Result<std::collections::BTreeMap<String, AppliedAt>, String> {
    let kept = read_locations(vault_path, vault_id)?;
    let Some(r) = record.filter(|r| r.vault_id == vault_id) else {
        return Ok(kept);
    };
    let mut r = r.clone();
    r.remember(&kept);
    let names: std::collections::BTreeSet<String> = r
        .locations_applied
        .keys()
        .cloned()
        .chain(std::iter::once(r.location.clone()))
        .collect();
    Ok(names
        .into_iter()
        .filter_map(|l| {
            let at = r.highest_of(&l)?;
            Some((l, at))
        })
        .collect())
}

/// The locations of [`locations_here`] for people: `ams generation 2, fra generation 3`.
pub fn locations_shown(l: &std::collections::BTreeMap<String, AppliedAt>) -> String {
    l.iter()
        .map(|(name, at)| {
            format!(
                "{} generation {}",
                crate::text::escape_for_terminal(name),
                at.generation
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why [`write_locations`] did not write the file.
#[derive(Debug)]
pub enum LocationsUnwritten {
    /// What is there cannot be read ([`read_locations`]'s error): it is left as it is, as
    /// writing over it would drop what it kept (a move is refused while it is there).
    Unreadable(String),
    /// The write failed.
    Write(crate::vault::VaultError),
}

/// Write the file [`locations_path`] for the vault whose id is `vault_id`: `locations` merged
/// into what it holds for that vault (the highest generation of each location is kept), as
/// the applied record is written. A file there that cannot be read is left alone: writing
/// over it dropped, without a word, the locations it kept, and the next move took an older
/// bundle of one as a first apply (thirty-first pass, found by the re-attacker).
pub fn write_locations(
    vault_path: &Path,
    vault_id: &str,
    locations: &std::collections::BTreeMap<String, LocationApplied>,
) -> Result<PathBuf, LocationsUnwritten> {
    let mut kept = read_locations(vault_path, vault_id).map_err(LocationsUnwritten::Unreadable)?;
    for (l, a) in locations {
        let a = a.at();
        match kept.get_mut(l) {
            Some(k) => merge_applied(k, &a),
            None => {
                kept.insert(l.clone(), a);
            }
        }
    }
    let f = LocationsFile {
        format: 1,
        vault_id: vault_id.to_owned(),
        locations_applied: kept,
    };
    write_state_file(locations_path(vault_path), &f, ".fleet-locations.tmp-")
        .map_err(LocationsUnwritten::Write)
}

/// Why the applied record of a vault is not reported.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// The record names another vault than the file at the path now (a new vault made at
    /// the same path, a record copied from elsewhere): no bundle was applied to this vault.
    #[error("no bundle applied to this vault: {0}")]
    OtherVault(String),
    /// The record, its directory or the vault file cannot be read or trusted, or the record
    /// is not one an apply writes.
    #[error("{0}")]
    Unreadable(String),
}

/// The applied record of the vault at `vault_path`, as an apply wrote it: `Ok(None)` when no
/// bundle was ever applied to it (no record). The state directory is checked as its writers
/// check it before the record is read; a record whose fields are not what an apply writes is
/// an error. Not compared with the vault: see [`read_applied`].
pub fn read_record(vault_path: &Path) -> Result<Option<AppliedRecord>, RecordError> {
    let (p, dir, name) = record_place(vault_path);
    let bad = |why: String| RecordError::Unreadable(why);
    if !dir.exists() {
        return Ok(None);
    }
    // The same checks as the writers' (a directory others may write, another user's link
    // on the way to it): a record anyone else could have put there is not reported.
    let d = crate::vault::SafeDir::open(&dir, false).map_err(|e| {
        bad(format!(
            "cannot trust the applied record {}: {e}",
            p.display()
        ))
    })?;
    let Some(text) = d
        .read(&name, MAX_RECORD + 1)
        .map_err(|e| bad(format!("cannot read {}: {e}", p.display())))?
    else {
        return Ok(None);
    };
    if text.len() as u64 > MAX_RECORD {
        return Err(bad(format!(
            "{} is not an applied record (too large)",
            p.display()
        )));
    }
    let not_one = |e: String| bad(format!("{} is not an applied record ({e})", p.display()));
    let v: serde_json::Value = serde_json::from_slice(&text).map_err(|e| not_one(e.to_string()))?;
    match v.get("format").and_then(serde_json::Value::as_u64) {
        Some(1..=4) => {}
        Some(n) => {
            return Err(bad(format!(
                "{}: applied record format {n} (this scopevault reads 1 to 4): written by a newer scopevault; upgrade this one",
                p.display()
            )))
        }
        None => return Err(not_one("no numeric `format`".into())),
    }
    let r: AppliedRecord = serde_json::from_value(v).map_err(|e| not_one(e.to_string()))?;
    r.check().map_err(not_one)?;
    Ok(Some(r))
}

/// The applied record of the vault at `vault_path`, if it is this vault's: [`read_record`],
/// then the record's `vault` and `vault_id` compared with the path and the vault file's
/// header (readable without the key). A record for another vault — a new vault made at the
/// same path, a record copied — is [`RecordError::OtherVault`]. With it, whether the vault
/// changed since the apply ([`Applied::local_change`]).
pub fn read_applied(vault_path: &Path) -> Result<Option<Applied>, RecordError> {
    let Some(r) = read_record(vault_path)? else {
        return Ok(None);
    };
    let p = record_path(vault_path);
    let here = canonical_vault(vault_path);
    if r.vault != here {
        return Err(RecordError::OtherVault(format!(
            "the applied record {} names the vault {}, not {}",
            p.display(),
            r.vault.display(),
            here.display()
        )));
    }
    let facts = match crate::vault::file_facts(vault_path) {
        Ok(f) => f,
        Err(crate::vault::VaultError::NotFound(_)) => {
            return Err(RecordError::OtherVault(format!(
                "there is no vault at {} (the applied record {} is for vault {})",
                here.display(),
                p.display(),
                r.vault_id
            )))
        }
        Err(e) => {
            return Err(RecordError::Unreadable(format!(
                "cannot compare the applied record {} with the vault: {e}",
                p.display()
            )))
        }
    };
    if facts.vault_id != r.vault_id {
        return Err(RecordError::OtherVault(format!(
            "{} is vault {}, but the applied record {} is for vault {} (a vault made anew at this path); the next `bundle apply` records its bundle",
            here.display(),
            facts.vault_id,
            p.display(),
            r.vault_id
        )));
    }
    let local_change = match &r.vault_payload_digest {
        Some(d) => *d != facts.payload_digest,
        None => facts.generation != r.vault_generation,
    };
    Ok(Some(Applied {
        record: r,
        vault_file_generation: facts.generation,
        local_change,
    }))
}

impl AppliedRecord {
    /// The fields hold what an apply writes: the vault id as a vault header holds it, the
    /// location by the policy's name rule (as the bundle's), the fingerprint as `ssh-keygen
    /// -l` prints it, principals as allowed_signers accepts them, the digest as a manifest's.
    /// A record edited to hold anything else (a forged line for the metrics file, a terminal
    /// escape) is refused, its value shown escaped.
    fn check(&self) -> Result<(), String> {
        let shown = |v: &str| {
            let cut: String = v.chars().take(80).collect();
            format!("\"{}\"", crate::text::escape_for_terminal(&cut))
        };
        if !crate::vault::is_vault_id(&self.vault_id) {
            return Err(format!(
                "its vault_id {} is not 32 lowercase hex digits",
                shown(&self.vault_id)
            ));
        }
        // The rule the record was written under: an apply before the twenty-second pass may
        // have recorded a location starting with `-`, `.` or `_`.
        if !crate::policy::is_stored_name(&self.location) {
            return Err(format!(
                "its location {} is not a valid name (1-128 characters of A-Z, a-z, 0-9, `.`, `_` or `-`)",
                shown(&self.location)
            ));
        }
        if !is_fingerprint(&self.signer_fingerprint) {
            return Err(format!(
                "its signer_fingerprint {} is not `SHA256:` and 43 base64 characters",
                shown(&self.signer_fingerprint)
            ));
        }
        for principal in &self.signer_principals {
            super::allowed_signers::check_principal(principal)
                .map_err(|e| format!("its signer_principals: {e}"))?;
        }
        if !super::bundle::is_digest(&self.policy_digest) {
            return Err(format!(
                "its policy_digest {} is not `sha256:` and 64 lowercase hex digits",
                shown(&self.policy_digest)
            ));
        }
        if self.format < 3 && !self.locations_applied.is_empty() {
            return Err(format!("a locations_applied in format {}", self.format));
        }
        for (l, entry) in &self.locations_applied {
            if !crate::policy::is_stored_name(l) {
                return Err(format!("its locations_applied names location {}", shown(l)));
            }
            // Format 3 keeps a generation, format 4 an object, each digest as a manifest's.
            match entry {
                LocationApplied::Generation(_) if self.format == 3 => {}
                LocationApplied::Bundle(a) if self.format >= 4 => {
                    if let Some(d) = a.payload_digest.as_deref() {
                        if !super::bundle::is_digest(d) {
                            return Err(format!(
                                "its locations_applied's payload_digest {} is not `sha256:` and 64 lowercase hex digits",
                                shown(d)
                            ));
                        }
                    }
                }
                _ => {
                    return Err(format!(
                        "its locations_applied entry for {} is not as format {} writes it",
                        shown(l),
                        self.format
                    ))
                }
            }
        }
        // Each digest is in the formats that have it, and in no other.
        for (name, digest, since) in [
            ("vault_payload_digest", &self.vault_payload_digest, 2),
            ("payload_digest", &self.payload_digest, 3),
        ] {
            match digest {
                Some(d) if self.format >= since && super::bundle::is_digest(d) => {}
                None if self.format < since => {}
                Some(d) if self.format >= since => {
                    return Err(format!(
                        "its {name} {} is not `sha256:` and 64 lowercase hex digits",
                        shown(d)
                    ))
                }
                None => return Err(format!("format {} without its {name}", self.format)),
                Some(_) => return Err(format!("a {name} in format {}", self.format)),
            }
        }
        Ok(())
    }
}

/// `SHA256:` and 43 characters of unpadded standard base64, as `ssh-keygen -l` prints a key's
/// SHA-256 fingerprint.
fn is_fingerprint(s: &str) -> bool {
    s.strip_prefix("SHA256:").is_some_and(|b| {
        b.len() == 43
            && b.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'+' || c == b'/')
    })
}

/// The audit chain's head as `status` reports it: the log's last record (or the anchor's,
/// for a user who may not read the log), the anchor's seq, and what is wrong, if anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditHead {
    /// The log.
    pub log: PathBuf,
    /// `seq` of the last complete record (0 for an empty log); absent when neither the log
    /// nor (for a user who may not read it) its anchor could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// SHA-256 hex of that record's line ([`GENESIS`] for an empty log): the next record's
    /// `prev`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Where `seq` and `hash` were read: `log` (its last line) or `anchor` (the log exists
    /// but this user may not read it; the anchor in the state directory may trail the log a
    /// little).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    /// `seq` of the anchor's record ([`crate::audit::read_anchor`]), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub anchor_seq: Option<u64>,
    /// What is wrong: the log missing or unreadable, shorter than its anchor or not matching
    /// it ([`crate::audit::anchor_gap`], as `audit verify` and the daemon's start compare),
    /// its last line not a record. `None`: the head is good.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why the head could not be checked: this user may not read the anchor (the daemon's
    /// state directory), nor, then, the log's end against it. Neither good nor bad: run as
    /// the daemon's user or root. `None`: checked (see `error`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unchecked: Option<String>,
    /// The audit gap a daemon's start accepted in this log (`serve --accept-audit-gap`), as
    /// its anchor keeps it until the log is rotated: what `status` shows while the daemon does
    /// not answer (a running daemon's `health` says it). Not serialized here: `status --json`
    /// puts it at the top level as `audit_gap`, where a running daemon's is.
    #[serde(skip)]
    pub gap: Option<crate::protocol::AcceptedGap>,
    /// The file a rotation moved the log to before the daemon noticed (the log empty or
    /// missing under an anchor naming records), whose last record is the head: the daemon's
    /// next write, or its next start, continues it ([`crate::audit::moved_log_under`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub moved: Option<PathBuf>,
}

impl AuditHead {
    /// The head of the log at `log` with nothing read or judged yet: every member `None`.
    pub fn of(log: &Path) -> AuditHead {
        AuditHead {
            log: log.to_owned(),
            seq: None,
            hash: None,
            source: None,
            anchor_seq: None,
            error: None,
            unchecked: None,
            gap: None,
            moved: None,
        }
    }
}

/// The head of the audit log at `log`, checked against its anchor. Read-only.
///
/// The anchor is the fallback only for a log that exists and that this user may not read
/// (`EACCES`): a missing log with an anchor, or a log that is shorter than its anchor or does
/// not match it, is an error, never a healthy head read from the anchor.
pub fn audit_head(log: &Path) -> AuditHead {
    audit_head_with(log, None, None)
}

/// For `status` while the daemon does not answer: a log whose head was read (it holds
/// records) with no anchor of it in the state directory, nothing else wrong, is an error,
/// the refusal `serve` gives such a log at its next start, as `doctor` fails it
/// ([`crate::audit::AuditError::NoAnchor`]: the log's last seq, the state directory looked
/// in, the fix). A running daemon anchors its log within 250 ms of its start, and one that
/// cannot says so (`audit_anchor_ok`): not judged then. Returns whether it was so (until the
/// twenty-eighth pass `status` said nothing of it).
pub fn note_unanchored(head: &mut AuditHead) -> bool {
    let unanchored = head.error.is_none()
        && head.unchecked.is_none()
        && head.anchor_seq.is_none()
        && head.moved.is_none()
        && head.source == Some("log")
        && head.seq.is_some_and(|s| s > 0);
    if unanchored {
        let e = crate::audit::AuditError::NoAnchor {
            path: head.log.clone(),
            state_dir: crate::vault::state_dir(),
            last: head.seq.unwrap_or(0),
        };
        head.error = Some(format!("`scopevault serve` refuses to start: {e}"));
    }
    unanchored
}

/// [`audit_head`], with the anchor read from `anchor_file` when given (the daemon's, as its
/// `health` names it to an admin) rather than looked up in this user's state directory, and
/// the files beside an empty log judged for the daemon's uid `daemon_uid` when known (the
/// start reads its own user's and root's: [`crate::audit::moved_log`]).
pub fn audit_head_with(
    log: &Path,
    anchor_file: Option<&Path>,
    daemon_uid: Option<u32>,
) -> AuditHead {
    let mut out = AuditHead::of(log);
    // The anchor first: the daemon syncs the log before it writes the anchor, so a log read
    // after it is at least as long, whatever the daemon appends in between.
    let (anchor_file, anchor) = match anchor_file {
        Some(f) => (f.to_owned(), crate::audit::read_anchor_at(f, log)),
        None => (
            crate::audit::anchor_path(log),
            crate::audit::read_anchor(log),
        ),
    };
    let anchor = match anchor {
        Ok(a) => a,
        // This user may not read the anchor: the head cannot be checked, which is not an
        // error in the log or the anchor (twenty-sixth pass).
        // The daemon's own state directory, of another user than this one, is not this user's
        // to take (thirty-second pass).
        Err(crate::audit::AuditError::AnchorNoAccess {
            path,
            message,
            advice,
        }) => {
            let advice = daemon_uid
                .and_then(|u| crate::audit::anchor_of_the_daemon_advice(&path, u))
                .unwrap_or(advice);
            out.unchecked = Some(
                crate::audit::AuditError::AnchorNoAccess {
                    path,
                    message,
                    advice,
                }
                .to_string(),
            );
            None
        }
        Err(e) => {
            // The error names the anchor itself (`AuditError::AnchorRead`).
            out.error = Some(e.to_string());
            None
        }
    };
    out.anchor_seq = anchor.as_ref().map(|a| a.seq);
    out.gap = anchor.as_ref().and_then(|a| a.gap.clone());
    // Without blocking, a regular file only: a FIFO at the log's path must not make `status`
    // wait for a writer.
    let f = match crate::sys::open_regular(log, false) {
        Ok(f) => f,
        Err(e) => {
            let cannot = format!("cannot read the audit log {}: {e}", log.display());
            match (&anchor, e.kind()) {
                (None, std::io::ErrorKind::PermissionDenied) if out.unchecked.is_some() => {}
                (Some(a), std::io::ErrorKind::PermissionDenied) if out.error.is_none() => {
                    out.seq = Some(a.seq);
                    out.hash = Some(a.head.clone());
                    out.source = Some("anchor");
                }
                (Some(a), std::io::ErrorKind::NotFound)
                    if out.error.is_none() && moved_head(&mut out, log, a, daemon_uid) => {}
                (Some(a), std::io::ErrorKind::NotFound) => {
                    out.error = Some(format!(
                        "the audit log {} is missing, but its anchor {} records seq {}: records 1..={} are gone (moved or deleted)",
                        log.display(),
                        anchor_file.display(),
                        a.seq,
                        a.seq
                    ));
                }
                _ => {
                    out.error = Some(
                        out.error
                            .take()
                            .map_or(cannot.clone(), |e| format!("{cannot}; {e}")),
                    )
                }
            }
            return out;
        }
    };
    match last_line_head(log, &f) {
        Ok((mut seq, mut hash, len, mut torn)) => {
            // The anchored record whole but for its newline: the head is that record, and
            // nothing is missing (`serve` adds the newline at start; twenty-second pass: it
            // was named what remains of a cut tail).
            if let (Some(a), Some(bytes @ ..=MAX_AUDIT_LINE)) = (&anchor, torn) {
                let mut line = vec![0u8; bytes as usize];
                let before = (len > 0).then_some((seq, hash.as_str()));
                if f.read_exact_at(&mut line, len).is_ok()
                    && crate::audit::is_anchored_record_unterminated(a, &line, before)
                {
                    (seq, hash, torn) = (a.seq, a.head.clone(), None);
                }
            }
            // An empty log under an anchor naming records: the file a rotation moved it to
            // is looked for as the start and `doctor` look for it.
            if let (Some(a), None, 0, None) = (&anchor, &out.error, len, torn) {
                if moved_head(&mut out, log, a, daemon_uid) {
                    return out;
                }
            }
            if let (Some(a), None) = (&anchor, &out.error) {
                match crate::audit::anchor_gap(a, seq, &hash, || {
                    crate::audit::record_at_seq(&f, len, a.seq + 1)
                }) {
                    Ok(None) => {}
                    // An incomplete line after a cut tail is what remains of the first
                    // record missing, named as `serve` and `audit verify` name it.
                    Ok(Some(gap)) => out.error = Some(gap.cut_within(torn).describe(&anchor_file)),
                    Err(e) => {
                        out.error = Some(format!(
                            "cannot compare the audit log {} with its anchor: {e}",
                            log.display()
                        ))
                    }
                }
            }
            out.seq = Some(seq);
            out.hash = Some(hash);
            out.source = Some("log");
        }
        Err(e) => out.error = Some(e),
    }
    out
}

/// Whether the log at `log`, empty or missing under the anchor `a`, was moved away by a
/// rotation the daemon has not noticed yet (logrotate's `create` left an empty file, no
/// signal yet, or the daemon stopped): the file beside it that the daemon's next write or
/// start continues ([`crate::audit::moved_log_under`], the search `doctor` and the start
/// make). Then its last record is the head, put in `out`. `status` called it a cut tail
/// ("records 1..=N are missing", `scopevault_audit_head_ok 0`) where `doctor` and
/// `audit verify` said ok (twenty-seventh pass, found by the twenty-seventh pass's attacker of
/// monitoring and time).
fn moved_head(
    out: &mut AuditHead,
    log: &Path,
    a: &crate::audit::Anchor,
    daemon_uid: Option<u32>,
) -> bool {
    match crate::audit::moved_log_under(log, a, daemon_uid) {
        crate::audit::MovedLog::Continues {
            path,
            last_seq,
            head,
        } => {
            out.seq = Some(last_seq);
            out.hash = Some(head);
            out.source = Some("log");
            out.moved = Some(path);
            // The gap the anchor keeps is in the moved file, not in the live one: the next
            // start continues the moved file and keeps no gap. `status` with the daemon down
            // showed it as accepted in the live log (twenty-seventh pass, found by the
            // twenty-seventh pass's re-attacker of its fixes).
            out.gap = None;
            true
        }
        _ => false,
    }
}

/// The last complete line of the log open as `f`: its seq, the SHA-256 hex of the line, the
/// length of the file up to the end of that line, and the bytes of an incomplete line after
/// it, if any.
fn last_line_head(log: &Path, f: &File) -> Result<(u64, String, u64, Option<u64>), String> {
    let len = f
        .metadata()
        .map_err(|e| format!("cannot read the audit log {}: {e}", log.display()))?
        .len();
    // The last MAX_AUDIT_LINE * 2 bytes hold the last complete line and the newline before it
    // (a torn final write, which the daemon cuts on its next start, is skipped).
    let from = len.saturating_sub(2 * MAX_AUDIT_LINE);
    let mut tail = vec![0u8; (len - from) as usize];
    f.read_exact_at(&mut tail, from)
        .map_err(|e| format!("cannot read the audit log {}: {e}", log.display()))?;
    let Some(end) = tail.iter().rposition(|&b| b == b'\n') else {
        if from == 0 {
            return Ok((0, GENESIS.to_owned(), 0, (len > 0).then_some(len)));
        }
        return Err(format!(
            "the audit log {} has no line break in its last {} bytes",
            log.display(),
            tail.len()
        ));
    };
    let start = match tail[..end].iter().rposition(|&b| b == b'\n') {
        Some(p) => p + 1,
        None if from == 0 => 0,
        None => {
            return Err(format!(
                "the audit log {}'s last line is too long to be a record",
                log.display()
            ))
        }
    };
    let line = &tail[start..end];
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| {
        format!(
            "the audit log {}'s last line is not a record ({e})",
            log.display()
        )
    })?;
    let seq = v["seq"].as_u64().ok_or_else(|| {
        format!(
            "the audit log {}'s last line has no numeric seq",
            log.display()
        )
    })?;
    let complete = from + end as u64 + 1;
    Ok((
        seq,
        HEXLOWER.encode(&Sha256::digest(line)),
        complete,
        (len > complete).then_some(len - complete),
    ))
}

/// Seconds from `a` to `b` (negative when `b` is earlier).
pub fn seconds_between(a: OffsetDateTime, b: OffsetDateTime) -> i64 {
    (b - a).whole_seconds()
}

/// A label value escaped per the Prometheus text exposition format: `\` → `\\`, `"` → `\"`,
/// newline → `\n`.
pub fn escape_label(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A HELP text escaped per the format: `\` → `\\`, newline → `\n`.
pub fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// Prometheus text exposition (version 0.0.4), gauges only: each family is written once
/// with its `# HELP` and `# TYPE` lines, then its samples.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    /// An empty exposition.
    pub fn new() -> Exposition {
        Exposition::default()
    }

    /// A gauge family with one sample per `(labels, value)`. Nothing is written for a
    /// family without samples.
    pub fn gauge(&mut self, name: &str, help: &str, samples: &[(&[(&str, &str)], f64)]) {
        use std::fmt::Write as _;
        debug_assert!(valid_metric_name(name), "{name}");
        if samples.is_empty() {
            return;
        }
        let _ = writeln!(self.out, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.out, "# TYPE {name} gauge");
        for (labels, value) in samples {
            self.out.push_str(name);
            if !labels.is_empty() {
                self.out.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    debug_assert!(valid_label_name(k), "{k}");
                    if i > 0 {
                        self.out.push(',');
                    }
                    let _ = write!(self.out, "{k}=\"{}\"", escape_label(v));
                }
                self.out.push('}');
            }
            let _ = writeln!(self.out, " {}", format_value(*value));
        }
    }

    /// One unlabelled sample.
    pub fn single(&mut self, name: &str, help: &str, value: f64) {
        self.gauge(name, help, &[(&[], value)]);
    }

    /// The text.
    pub fn finish(self) -> String {
        self.out
    }
}

fn format_value(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 9.0e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

/// `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn valid_metric_name(n: &str) -> bool {
    let mut c = n.chars();
    c.next()
        .is_some_and(|f| f.is_ascii_alphabetic() || f == '_' || f == ':')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_' || x == ':')
}

/// `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with `__`.
pub fn valid_label_name(n: &str) -> bool {
    let mut c = n.chars();
    !n.starts_with("__")
        && c.next()
            .is_some_and(|f| f.is_ascii_alphabetic() || f == '_')
        && c.all(|x| x.is_ascii_alphanumeric() || x == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thirtieth pass: `locations_applied` keeps, per location, the highest generation and the
    /// payload digest of the bundle of it applied last, from a format-3 record's bare
    /// generations, its own last apply, the vault's record and the apply now.
    #[test]
    fn locations_applied_keeps_the_highest_generation_and_its_last_bundle() {
        let d = |c: char| Some(format!("sha256:{}", c.to_string().repeat(64)));
        let at = |generation, payload_digest| AppliedAt {
            generation,
            payload_digest,
        };
        let text = format!(
            r#"{{"format":3,"vault":"/v","vault_id":"{}","vault_generation":9,"location":"fra","generation":3,"signer_fingerprint":"SHA256:{}","signer_principals":[],"policy_digest":"{}","created":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z","applied":"2026-01-01T00:00:00Z","vault_payload_digest":"{}","payload_digest":"{}","locations_applied":{{"ams":2,"fra":3}}}}"#,
            "0".repeat(32),
            "A".repeat(43),
            d('0').unwrap(),
            d('1').unwrap(),
            d('f').unwrap()
        );
        let r: AppliedRecord = serde_json::from_str(&text).unwrap();
        r.check().unwrap();
        assert_eq!(r.highest_of("ams"), Some(at(2, None)));
        assert_eq!(r.highest_of("fra"), Some(at(3, d('f'))));
        assert_eq!(r.highest_of("lis"), None);
        let next = |also: &[(&str, AppliedAt)]| {
            AppliedRecord::next_locations_applied(Some(&r), also)
                .into_iter()
                .map(|(k, v)| (k, v.at()))
                .collect::<Vec<_>>()
        };
        // Back to ams at generation 2 with a known bundle; a lower generation leaves the
        // highest; a newer one replaces it.
        assert_eq!(
            next(&[("ams", at(2, d('a')))]),
            [("ams".into(), at(2, d('a'))), ("fra".into(), at(3, d('f')))]
        );
        assert_eq!(
            next(&[("ams", at(1, d('a')))])[0],
            ("ams".into(), at(2, None))
        );
        assert_eq!(
            next(&[("ams", at(4, d('b')))])[0],
            ("ams".into(), at(4, d('b')))
        );
        // Written as format 4, and read back.
        let mut r4 = r.clone();
        r4.format = 4;
        r4.locations_applied = AppliedRecord::next_locations_applied(Some(&r), &[]);
        r4.check().unwrap();
        let back: AppliedRecord =
            serde_json::from_str(&serde_json::to_string(&r4).unwrap()).unwrap();
        assert_eq!(back, r4);
        assert!(serde_json::to_string(&r4).unwrap().contains(&format!(
            r#""fra":{{"generation":3,"payload_digest":"{}"}}"#,
            d('f').unwrap()
        )));
        // A format-3 entry in format 4, or a format-4 one in format 3, is refused.
        let mut mixed = r.clone();
        mixed.format = 4;
        assert!(mixed
            .check()
            .unwrap_err()
            .contains("not as format 4 writes it"));
        r4.format = 3;
        assert!(r4
            .check()
            .unwrap_err()
            .contains("not as format 3 writes it"));
    }

    #[test]
    fn label_values_are_escaped_per_the_exposition_format() {
        assert_eq!(escape_label(r#"a"b\c"#), r#"a\"b\\c"#);
        assert_eq!(escape_label("x\ny"), "x\\ny");
        assert_eq!(escape_label("plain-ams_1"), "plain-ams_1");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
        let mut e = Exposition::new();
        e.gauge(
            "scopevault_x",
            "Help with a \\ and\na newline.",
            &[(&[("location", "a\"\\\nb")], 3.0)],
        );
        e.gauge("scopevault_empty", "No samples: no lines.", &[]);
        e.single("scopevault_y", "Y.", -2.5);
        assert_eq!(
            e.finish(),
            "# HELP scopevault_x Help with a \\\\ and\\na newline.\n# TYPE scopevault_x gauge\nscopevault_x{location=\"a\\\"\\\\\\nb\"} 3\n# HELP scopevault_y Y.\n# TYPE scopevault_y gauge\nscopevault_y -2.5\n"
        );
    }

    #[test]
    fn names_are_checked() {
        assert!(valid_metric_name("scopevault_bundle_age_seconds"));
        assert!(!valid_metric_name("9x"));
        assert!(!valid_metric_name("a-b"));
        assert!(valid_label_name("location"));
        assert!(!valid_label_name("__x"));
        assert!(!valid_label_name("a:b"));
    }

    #[test]
    fn the_head_is_the_last_complete_line_and_a_torn_one_is_skipped() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("audit.jsonl");
        let head = |log: &Path| last_line_head(log, &File::open(log).unwrap());
        std::fs::write(&log, b"").unwrap();
        let (seq, hash, len, torn) = head(&log).unwrap();
        assert_eq!((seq, hash.as_str(), len, torn), (0, GENESIS, 0, None));
        let l1 = br#"{"seq":1,"prev":"00"}"#;
        let l2 = br#"{"seq":2,"prev":"11"}"#;
        let mut text = Vec::new();
        for l in [&l1[..], &l2[..]] {
            text.extend_from_slice(l);
            text.push(b'\n');
        }
        std::fs::write(&log, &text).unwrap();
        let (seq, hash, len, torn) = head(&log).unwrap();
        assert_eq!((seq, torn), (2, None));
        assert_eq!(hash, HEXLOWER.encode(&Sha256::digest(l2)));
        assert_eq!(len, text.len() as u64);
        text.extend_from_slice(br#"{"seq":3,"pr"#);
        std::fs::write(&log, &text).unwrap();
        assert_eq!(head(&log).unwrap().0, 2);
        assert_eq!(head(&log).unwrap().2, len, "up to the last complete line");
        assert_eq!(head(&log).unwrap().3, Some(12), "the torn line's bytes");
        std::fs::write(&log, br#"{"seq":1,"#).unwrap();
        assert_eq!(head(&log).unwrap(), (0, GENESIS.to_owned(), 0, Some(9)));
        std::fs::write(&log, b"not json\n").unwrap();
        assert!(head(&log).unwrap_err().contains("not a record"));
    }

    #[test]
    fn format_value_prints_integers_without_a_fraction() {
        assert_eq!(format_value(1.0), "1");
        assert_eq!(format_value(-3.0), "-3");
        assert_eq!(format_value(0.5), "0.5");
    }
}
