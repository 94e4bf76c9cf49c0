//! What the encrypted payload holds: credentials with their secret values, and the applied
//! policy. Serialised as JSON inside the age payload.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::VaultError;
use crate::policy::CredentialKind;
use crate::secret::SecretString;

/// Version of the payload's JSON schema (inside the encryption; distinct from the file format).
pub(crate) const PAYLOAD_SCHEMA: u32 = 1;

/// Field names that hold secrets: refused as plain `--field`s so they cannot land in argv.
pub const SECRET_FIELD_NAMES: &[&str] = &[
    "password",
    "passphrase",
    "token",
    "secret",
    "totp_seed",
    "otpauth",
    "private_key",
    "api_key",
    "client_secret",
    "access_token",
    "refresh_token",
    "pin",
];

/// The two secret fields a TOTP seed is stored in: base32 `totp_seed`, or the `otpauth://`
/// URI of a QR code. A credential holds one of them, never both: codes come from one seed, so
/// the other would be ignored in silence (docs/operations.md, "One TOTP seed per credential").
pub const TOTP_SEED_FIELDS: [&str; 2] = ["totp_seed", "otpauth"];

/// True when `keys` name both TOTP seed fields ([`TOTP_SEED_FIELDS`]).
pub fn holds_both_totp_seeds<'a>(keys: impl IntoIterator<Item = &'a str>) -> bool {
    let mut seen = [false; 2];
    for k in keys {
        if let Some(i) = TOTP_SEED_FIELDS.iter().position(|f| *f == k) {
            seen[i] = true;
        }
    }
    seen == [true, true]
}

/// The reason a credential named `name` may not hold both TOTP seed fields, with how to keep
/// one (`cred set` of one removes the other). Names fields only, never a value.
pub fn both_totp_seeds_message(name: &str) -> String {
    format!(
        "credential `{name}` holds both `totp_seed` and `otpauth`: two TOTP seeds, and codes come from one only, so a credential holds one of them. Keep the one in use: `{}` (or `--secret totp_seed`) stores it and removes the other",
        crate::advice::command(&format!("cred set {name} --secret otpauth"))
    )
}

/// The first secret of a `totp` credential that is not one of the two seed fields
/// ([`TOTP_SEED_FIELDS`]), if any. A `totp` credential holds its seed and nothing else secret:
/// its runners get codes, never a secret (`fetch` withholds every secret of it,
/// [`CredentialKind::hands_out_secrets`]), so another secret is a seed stored under the wrong
/// name (`cred add --kind totp --secret seed`, twenty-eighth pass) or one that is never used.
pub fn secret_beside_seed<'a>(keys: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    keys.into_iter().find(|k| !TOTP_SEED_FIELDS.contains(k))
}

/// The reason a `totp` credential named `name` may not hold the secret `field`, with how to
/// store its seed. Names the field only, never a value.
pub fn beside_seed_message(name: &str, field: &str) -> String {
    format!(
        "credential `{name}` is a totp credential and would hold secret `{field}`, which is not its seed: a totp credential holds only its seed, as `totp_seed` (base32) or `otpauth` (an otpauth:// URI), and its runners get codes, never a secret. Store the seed under one of those names: `{}` (or `--secret otpauth`), which removes any other secret; a secret a check needs belongs in a credential of another kind",
        crate::advice::command(&format!("cred set {name} --secret totp_seed"))
    )
}

/// What [`Credential::set_secret`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecretSet {
    /// The stored value differs from the one before (or there was none).
    pub changed: bool,
    /// The other TOTP seed field, removed because this one replaces it.
    pub replaced: Option<&'static str>,
    /// A plain field of the same name was removed: the field is now a secret.
    pub was_plain: bool,
}

/// What a secret or plain field replaced when it was stored ([`Credential::set_secrets`],
/// [`Credential::set_fields`]): the caller says so. Names fields only, never a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replaced {
    /// This TOTP seed field replaced the other one, removed.
    OtherSeed(&'static str),
    /// This secret replaced a plain field of the same name, removed.
    PlainField,
    /// This plain field replaced a secret of the same name, removed.
    SecretField,
    /// This secret of a `totp` credential, not a seed field, was removed because its seed was
    /// stored ([`Credential::set_secrets`]): a `totp` credential holds only its seed.
    BesideSeed,
}

/// The first field name `fields` and `secrets` both hold. A field name is one value in a
/// credential, plain or secret (vault-format.md, "Payload"): every writer refuses a
/// credential holding a name as both, and the daemon does not hand out one that a vault saved
/// by an older scopevault holds (which value a runner meant is unknown).
pub fn field_in_both<'a>(
    fields: &'a FieldMap<String>,
    secrets: &FieldMap<SecretString>,
) -> Option<&'a str> {
    fields
        .keys()
        .find(|k| secrets.contains_key(k))
        .map(String::as_str)
}

/// The reason a credential named `name` may not hold `field` both as a plain field and as a
/// secret, with how to keep one. Names fields only, never a value.
pub fn field_in_both_message(name: &str, field: &str) -> String {
    format!(
        "credential `{name}` holds `{field}` both as a plain field and as a secret: a field name holds one value, so which one is meant is unknown. Keep one: `{}` stores it as a secret, `{}` as a plain field, and either removes the other",
        crate::advice::command(&format!("cred set {name} --secret {field}")),
        crate::advice::command(&format!("cred set {name} --field {field}=VALUE"))
    )
}

/// How a credential breaks the rule pair on the fields it holds (vault-format.md,
/// "Payload"): at most one TOTP seed ([`holds_both_totp_seeds`]), and one value per field
/// name, plain or secret ([`field_in_both`]). Names fields only, never a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FieldConflict {
    /// It holds both `totp_seed` and `otpauth` ([`TOTP_SEED_FIELDS`]).
    BothTotpSeeds,
    /// It holds this field name both as a plain field and as a secret.
    InBoth(String),
    /// It is a `totp` credential holding this secret, which is not a seed field
    /// ([`secret_beside_seed`]).
    BesideSeed(String),
}

impl FieldConflict {
    /// The reason a credential named `name` may not hold this, with how to keep one
    /// ([`both_totp_seeds_message`], [`field_in_both_message`]).
    pub fn message(&self, name: &str) -> String {
        match self {
            FieldConflict::BothTotpSeeds => both_totp_seeds_message(name),
            FieldConflict::InBoth(field) => field_in_both_message(name, field),
            FieldConflict::BesideSeed(field) => beside_seed_message(name, field),
        }
    }
}

/// The decrypted payload.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VaultData {
    pub schema: u32,
    pub credentials: BTreeMap<String, Credential>,
    pub policy: Option<AppliedPolicy>,
    /// Fleet bookkeeping (bundle generations published and applied); absent until the first
    /// `publish` or `bundle apply`, so vaults that never use the fleet keep their bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fleet: Option<FleetState>,
}

/// Fleet bookkeeping kept in the payload (vault-format.md, "Fleet member").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetState {
    /// On the master vault: the last generation published per location.
    #[serde(default)]
    pub published: BTreeMap<String, u64>,
    /// On a checkpoint: the last bundle applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<AppliedBundle>,
}

/// The last bundle applied to a checkpoint vault (names and digests only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppliedBundle {
    /// The location the checkpoint serves.
    pub location: String,
    /// The bundle's generation.
    pub generation: u64,
    /// The signer's key fingerprint (`SHA256:…`).
    pub signer: String,
    /// The bundle's policy digest (`sha256:…`).
    pub policy_digest: String,
    /// When the bundle was made.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When the bundle expires.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// When it was applied here.
    #[serde(with = "time::serde::rfc3339")]
    pub applied: OffsetDateTime,
    /// The bundle's payload digest (`sha256:…`): what tells the very bundle applied last from
    /// any other, for `bundle apply --reapply`. Absent from an apply by an older scopevault.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_digest: Option<String>,
}

impl VaultData {
    /// Put every credential's origins in the canonical form a policy writes them
    /// ([`crate::policy::normalise_origin`]), duplicates dropped, order kept. A payload read
    /// from disk goes through here: an older scopevault stored an origin as given with its
    /// default port (`https://x.example:443`), which is `https://x.example` today, and an
    /// entry must compare with its declaration (`vault-differs-from-policy`, the daemon's
    /// fetch warning, `policy apply`, `cred import`) in one form. An origin that no longer
    /// parses is kept as it is: the entry loads, and the comparison reports it.
    pub(crate) fn fold_origins(&mut self) {
        for c in self.credentials.values_mut() {
            let mut seen = std::collections::BTreeSet::new();
            let folded = std::mem::take(&mut c.origins)
                .into_iter()
                .map(|o| crate::policy::normalise_origin(&o).unwrap_or(o))
                .filter(|o| seen.insert(o.clone()))
                .collect();
            c.origins = folded;
        }
    }
}

impl Default for VaultData {
    fn default() -> Self {
        VaultData {
            schema: PAYLOAD_SCHEMA,
            credentials: BTreeMap::new(),
            policy: None,
            fleet: None,
        }
    }
}

/// The policy as applied: its canonical TOML, authenticated with the rest of the vault.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct AppliedPolicy {
    pub toml: String,
    #[serde(with = "time::serde::rfc3339")]
    pub applied: OffsetDateTime,
}

/// One stored credential: metadata in the clear (inside the encrypted payload), secret values
/// in [`SecretString`]s.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// What kind of credential it is.
    pub kind: CredentialKind,
    /// Scopes it grants in the target system.
    pub scopes: Vec<String>,
    /// Origins it is for.
    pub origins: Vec<String>,
    /// Plain (non-secret) fields, e.g. `username`.
    pub fields: FieldMap<String>,
    /// Secret fields, e.g. `password`.
    pub secrets: FieldMap<SecretString>,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When a secret value last changed (equal to `created` until then).
    #[serde(with = "time::serde::rfc3339")]
    pub rotated: OffsetDateTime,
    /// Where the values were synced from (`scopevault sync openbao`); absent for a credential
    /// whose values were only ever given by hand. Values set by hand after a sync keep it,
    /// marked ([`CredentialSource::set_by_hand`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<CredentialSource>,
}

/// Where a synced credential's values came from: a KV version 2 secret. Metadata only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialSource {
    /// The engine: `openbao-kv2` (OpenBao or HashiCorp Vault, KV version 2).
    pub engine: String,
    /// The namespace, if one was given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The API path read, `MOUNT/data/PREFIX<name>`.
    pub path: String,
    /// The KV version that was stored.
    pub version: u64,
    /// When that version was written upstream (its `created_time`).
    #[serde(with = "time::serde::rfc3339")]
    pub updated: OffsetDateTime,
    /// When the values were first set by hand (`cred set`, `import`) after that version was
    /// synced; absent while they are the source's. The source is kept rather than dropped so
    /// that the next sync still knows which version it synced last: one that answers a lower
    /// version is refused as a version that went backwards, hand-set or not (seventeenth
    /// pass: dropping it turned a restored server's older version into a routine change).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub set_by_hand: Option<OffsetDateTime>,
}

impl Credential {
    /// A new credential with no values yet.
    pub fn new(kind: CredentialKind, now: OffsetDateTime) -> Credential {
        Credential {
            kind,
            scopes: Vec::new(),
            origins: Vec::new(),
            fields: FieldMap::new(),
            secrets: FieldMap::new(),
            created: now,
            rotated: now,
            source: None,
        }
    }

    /// The first way this credential breaks the rules on its fields ([`FieldConflict`]):
    /// both TOTP seeds, then a secret other than its seed in a `totp` credential, then a field
    /// name held both as a plain field and as a secret. The one
    /// check of every place a credential is written or carried: `add_credential` and
    /// `update_credential`, `publish` and `bundle apply`.
    ///
    /// With `before`, the credential as it was stored, a breach that was there already is let
    /// stand (a vault saved by an older scopevault may hold one, and `policy apply` still
    /// changes its other metadata, its kind too): both TOTP seeds, or a secret beside the
    /// seed of a `totp` credential, only when the secrets changed, a field in both only when it
    /// was not in both before.
    pub fn field_conflict(&self, before: Option<&Credential>) -> Option<FieldConflict> {
        let secrets_changed = before.is_none_or(|b| b.secrets != self.secrets);
        if holds_both_totp_seeds(self.secrets.keys().map(String::as_str)) && secrets_changed {
            return Some(FieldConflict::BothTotpSeeds);
        }
        if self.kind == CredentialKind::Totp && secrets_changed {
            if let Some(k) = secret_beside_seed(self.secrets.keys().map(String::as_str)) {
                return Some(FieldConflict::BesideSeed(k.to_owned()));
            }
        }
        let in_both =
            |c: &Credential, k: &str| c.fields.contains_key(k) && c.secrets.contains_key(k);
        self.fields
            .keys()
            .find(|k| in_both(self, k) && before.is_none_or(|b| !in_both(b, k)))
            .map(|k| FieldConflict::InBoth(k.clone()))
    }

    /// The values no longer are what the sync source had (`cred set`, `import` changed
    /// them): mark the source set by hand at `now` (kept if it was marked before), so the next
    /// sync puts the source's values back and still compares versions with the one it synced
    /// last. Returns the source, if the credential was synced.
    pub fn mark_set_by_hand(&mut self, now: OffsetDateTime) -> Option<&CredentialSource> {
        let src = self.source.as_mut()?;
        src.set_by_hand.get_or_insert(now);
        Some(src)
    }

    /// Store the secret `key`. A TOTP seed field replaces the other one: storing `otpauth`
    /// removes a `totp_seed` and the other way round ([`TOTP_SEED_FIELDS`]); the caller says
    /// so ([`SecretSet::replaced`]). Give one of the two at a time: a caller storing both
    /// refuses first ([`holds_both_totp_seeds`]).
    ///
    /// A plain field of the same name is removed ([`SecretSet::was_plain`]): a field name holds
    /// one value ([`field_in_both`]; `cred set --secret user` next to a plain `user` stored a
    /// second value, and runners kept getting the plain one, twenty-fourth pass).
    pub fn set_secret(&mut self, key: String, value: SecretString) -> SecretSet {
        let replaced = match TOTP_SEED_FIELDS.iter().position(|f| *f == key) {
            Some(i) => {
                let other = TOTP_SEED_FIELDS[1 - i];
                self.secrets.remove(other).map(|_| other)
            }
            None => None,
        };
        let was_plain = self.fields.remove(&key).is_some();
        let changed = self.secrets.get(&key) != Some(&value);
        self.secrets.insert(key, value);
        SecretSet {
            changed,
            replaced,
            was_plain,
        }
    }

    /// Store each of the plain `fields`; a secret of the same name is removed (a field name
    /// holds one value, [`field_in_both`]) and pushed to `replaced` as
    /// [`Replaced::SecretField`], and the rotation dated `now` (a secret value changed).
    /// Returns whether anything changed. One loop for `cred set` and `cred import --update`.
    pub fn set_fields(
        &mut self,
        fields: impl IntoIterator<Item = (String, String)>,
        now: OffsetDateTime,
        replaced: &mut Vec<(String, Replaced)>,
    ) -> bool {
        let mut changed = false;
        for (k, v) in fields {
            if self.secrets.remove(&k).is_some() {
                self.rotated = now;
                changed = true;
                replaced.push((k.clone(), Replaced::SecretField));
            }
            changed |= self.fields.get(&k) != Some(&v);
            self.fields.insert(k, v);
        }
        changed
    }

    /// Store each of `secrets` ([`Credential::set_secret`]) and, when a value changed, date
    /// the rotation `now`. Returns how many values changed (a TOTP seed that replaced the
    /// other form, or a secret that replaced a plain field of its name, counts, even if its
    /// own value was the same) and pushes each (field, what it replaced) to `replaced`. One
    /// loop for `cred set` and `cred import --update`.
    ///
    /// A seed stored in a `totp` credential removes every secret it held that is not a seed
    /// field (a seed stored under another name, [`secret_beside_seed`]), each pushed as
    /// [`Replaced::BesideSeed`] and counted as a change: storing the seed is how such a
    /// credential is put right. A secret given in the same call is not removed: it is
    /// refused ([`Credential::field_conflict`]).
    pub fn set_secrets(
        &mut self,
        secrets: impl IntoIterator<Item = (String, SecretString)>,
        now: OffsetDateTime,
        replaced: &mut Vec<(String, Replaced)>,
    ) -> usize {
        let secrets: Vec<(String, SecretString)> = secrets.into_iter().collect();
        let mut changed = 0;
        if self.kind == CredentialKind::Totp
            && secrets
                .iter()
                .any(|(k, _)| TOTP_SEED_FIELDS.contains(&k.as_str()))
        {
            let beside: Vec<String> = self
                .secrets
                .keys()
                .filter(|k| !TOTP_SEED_FIELDS.contains(&k.as_str()))
                .filter(|k| !secrets.iter().any(|(given, _)| given == *k))
                .cloned()
                .collect();
            for k in beside {
                self.secrets.remove(&k);
                changed += 1;
                replaced.push((k, Replaced::BesideSeed));
            }
        }
        for (k, v) in secrets {
            let set = self.set_secret(k.clone(), v);
            let mut counted = set.changed;
            changed += usize::from(set.changed);
            if let Some(old) = set.replaced {
                // The other TOTP seed is gone: a value changed even if this one did not.
                changed += usize::from(!counted);
                counted = true;
                replaced.push((k.clone(), Replaced::OtherSeed(old)));
            }
            if set.was_plain {
                // The plain value is gone: a value changed even if the secret did not.
                changed += usize::from(!counted);
                replaced.push((k, Replaced::PlainField));
            }
        }
        if changed > 0 {
            self.rotated = now;
        }
        changed
    }
}

/// Check a credential name: 1–128 bytes of ASCII letters, digits, `-`, `_`, `.`, starting with
/// a letter or digit. Names become parts of file names and environment variables in `exec`,
/// so separators and control characters are refused.
pub fn validate_name(name: &str) -> Result<(), VaultError> {
    let bad = |why: &str| {
        Err(VaultError::BadName {
            name: printable(name),
            why: why.to_owned(),
        })
    };
    if name.is_empty() {
        return bad("it is empty");
    }
    if name.len() > 128 {
        return bad("it is longer than 128 bytes");
    }
    if !name.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("it must start with a letter or digit");
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return bad(&format!(
            "it contains {c:?}; use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

/// Longest plain field value (`--field`, a key synced from OpenBao, an imported username).
pub const MAX_FIELD_LEN: usize = 4096;

/// Most fields, plain and secret together, one credential holds (vault-format.md, "Payload").
/// Generous (a login has one to three), and what bounds the HMACs in a fetch's audit record.
pub const MAX_CREDENTIAL_FIELDS: usize = 64;

/// Most bytes the values of one credential's fields, plain and secret together, hold: 1 MiB
/// (vault-format.md, "Payload"). JSON writes a byte as at most six (`\u0001`), so the values
/// of one credential take under 7 MiB of a fetch answer, far below the 16 MiB a client
/// accepts ([`crate::client::MAX_RESPONSE`]); each value alone is at most
/// [`crate::secret::MAX_SECRET_LEN`].
pub const MAX_CREDENTIAL_BYTES: usize = 1024 * 1024;

/// How a credential is over the bound on one credential ([`credential_over_bound`]): what
/// it holds, never a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverBound {
    /// It has this many fields, more than [`MAX_CREDENTIAL_FIELDS`].
    Fields(usize),
    /// Its values hold this many bytes together, more than [`MAX_CREDENTIAL_BYTES`].
    Bytes(usize),
}

impl std::fmt::Display for OverBound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OverBound::Fields(n) => write!(
                f,
                "it has {n} fields (plain and secret together), more than the {MAX_CREDENTIAL_FIELDS} one credential may hold"
            ),
            OverBound::Bytes(n) => write!(
                f,
                "its field values (plain and secret together) hold {n} bytes, more than the {MAX_CREDENTIAL_BYTES} (1 MiB) one credential may hold"
            ),
        }
    }
}

/// The bound on one credential, in one place: at most [`MAX_CREDENTIAL_FIELDS`] fields and
/// [`MAX_CREDENTIAL_BYTES`] of values, plain and secret together. Every writer refuses a
/// credential over it (through [`super::Vault::add_credential`] and
/// [`super::Vault::update_credential`], and `publish` and `bundle apply` before those), and
/// the daemon refuses to hand out one a vault holds all the same (an older scopevault wrote
/// it). `None` when within it.
pub fn credential_over_bound(
    fields: &FieldMap<String>,
    secrets: &FieldMap<SecretString>,
) -> Option<OverBound> {
    let count = fields.len() + secrets.len();
    if count > MAX_CREDENTIAL_FIELDS {
        return Some(OverBound::Fields(count));
    }
    let bytes = credential_bytes(fields, secrets);
    (bytes > MAX_CREDENTIAL_BYTES).then_some(OverBound::Bytes(bytes))
}

/// The bytes a credential's values hold, plain and secret together.
fn credential_bytes(fields: &FieldMap<String>, secrets: &FieldMap<SecretString>) -> usize {
    let plain: usize = fields.iter().map(|(_, v)| v.len()).sum();
    plain + secrets.iter().map(|(_, v)| v.len()).sum::<usize>()
}

impl Credential {
    /// [`credential_over_bound`] of this credential.
    pub fn over_bound(&self) -> Option<OverBound> {
        credential_over_bound(&self.fields, &self.secrets)
    }

    /// Whether this credential holds more than `before` did: more fields, or more bytes of
    /// values. A change that does not grow a credential over the bound (saved by an older
    /// scopevault) is let through: new metadata, or values removed on the way under it.
    pub(crate) fn grew_from(&self, before: &Credential) -> bool {
        let count = |c: &Credential| c.fields.len() + c.secrets.len();
        let bytes = |c: &Credential| credential_bytes(&c.fields, &c.secrets);
        count(self) > count(before) || bytes(self) > bytes(before)
    }
}

/// Whether a field named `key` holds a secret, so that it must never be a plain (printed)
/// field: one of [`SECRET_FIELD_NAMES`], secret in `kind`'s schema, or named like a secret
/// ([`CredentialKind::name_looks_secret`](crate::policy::CredentialKind::name_looks_secret)).
/// One rule for `cred add`/`cred set --field` and for keys synced from OpenBao.
pub fn is_secret_field_name(key: &str, kind: Option<crate::policy::CredentialKind>) -> bool {
    SECRET_FIELD_NAMES.contains(&key)
        || crate::policy::CredentialKind::name_looks_secret(key)
        || kind.is_some_and(|kind| kind.is_secret_field(key))
}

/// Check a plain field's value: at most [`MAX_FIELD_LEN`] bytes and no control character.
/// `cred show` prints plain fields: a control character there would rewrite the terminal
/// (move the cursor, forge a line, hide what follows), and whoever wrote the value (an OpenBao
/// writer, an imported file) is not always the admin reading it.
pub fn validate_field_value(key: &str, value: &str) -> Result<(), VaultError> {
    let why = if value.len() > MAX_FIELD_LEN {
        format!("the value of plain field `{key}` is longer than {MAX_FIELD_LEN} bytes")
    } else if let Some(c) = value.chars().find(|c| crate::text::is_terminal_control(*c)) {
        format!(
            "the value of plain field `{key}` holds the control character {}; plain fields are printed, and take text only",
            c.escape_unicode()
        )
    } else {
        return Ok(());
    };
    Err(VaultError::Usage(why))
}

/// Check a field key (plain or secret): 1–64 bytes of lowercase letters, digits, `_`, `-`,
/// `.`, and not `.` or `..`. `exec --files` makes each field the entry
/// `<credential>/<field>`, so a field name is one path component.
pub fn validate_field_key(key: &str) -> Result<(), VaultError> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        })
        && !matches!(key, "." | "..");
    if ok {
        Ok(())
    } else {
        Err(VaultError::BadName {
            name: printable(key),
            why: FIELD_NAME_RULE.into(),
        })
    }
}

/// The rule of [`validate_field_key`], as messages state it.
pub const FIELD_NAME_RULE: &str =
    "a field name must be 1-64 bytes of lowercase letters, digits, `_`, `-`, `.`, and not `.` or `..` (it is a file name under `exec --files`)";

/// A name as it can be shown in a message: control characters escaped.
fn printable(s: &str) -> String {
    let s: String = s.chars().take(140).collect();
    s.escape_debug().to_string()
}

/// A small map kept as a sorted vector: credentials have one to three fields, and a
/// `BTreeMap` allocates a whole node (about half a KiB) even for one entry — with ten
/// thousand credentials that was the daemon's largest memory cost. Serialises as a JSON
/// object, like the map it replaces.
#[derive(Clone, PartialEq, Eq)]
pub struct FieldMap<V>(Vec<(String, V)>);

impl<V> Default for FieldMap<V> {
    fn default() -> Self {
        FieldMap(Vec::new())
    }
}

impl<V> FieldMap<V> {
    /// An empty map.
    pub fn new() -> Self {
        FieldMap(Vec::new())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| k.as_str().cmp(key))
    }

    /// The value for `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    /// True if `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Insert or replace; returns the old value.
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// Remove `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        self.find(key).ok().map(|i| self.0.remove(i).1)
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&String, &V)> {
        self.0.iter().map(|(k, v)| (k, v))
    }

    /// Keys in order.
    pub fn keys(&self) -> impl ExactSizeIterator<Item = &String> {
        self.0.iter().map(|(k, _)| k)
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True if empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<V> Extend<(String, V)> for FieldMap<V> {
    fn extend<I: IntoIterator<Item = (String, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<V> FromIterator<(String, V)> for FieldMap<V> {
    fn from_iter<I: IntoIterator<Item = (String, V)>>(iter: I) -> Self {
        let mut m = FieldMap::new();
        m.extend(iter);
        m
    }
}

impl<V> IntoIterator for FieldMap<V> {
    type Item = (String, V);
    type IntoIter = std::vec::IntoIter<(String, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a, V> IntoIterator for &'a FieldMap<V> {
    type Item = (&'a String, &'a V);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, V)>,
        fn(&'a (String, V)) -> (&'a String, &'a V),
    >;
    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (k, v))
    }
}

impl<V: std::fmt::Debug> std::fmt::Debug for FieldMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<V: Serialize> Serialize for FieldMap<V> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.iter())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for FieldMap<V> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> serde::de::Visitor<'de> for Visit<V> {
            type Value = FieldMap<V>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a map of field names to values")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut a: A,
            ) -> Result<Self::Value, A::Error> {
                let mut m = FieldMap(Vec::with_capacity(a.size_hint().unwrap_or(0).min(64)));
                while let Some((k, v)) = a.next_entry::<String, V>()? {
                    if m.insert(k, v).is_some() {
                        return Err(serde::de::Error::custom("a field name appears twice"));
                    }
                }
                m.0.shrink_to_fit();
                Ok(m)
            }
        }
        d.deserialize_map(Visit(std::marker::PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::VaultData;

    /// Twenty-first pass (found by attacking this pass's fixes): an entry stored with an IP
    /// literal in another spelling than the canonical one a browser gives
    /// (`https://[0:0:0:0:0:0:0:1]`, `https://0x7f.1`) is read in that canonical form, so an
    /// older vault loads and compares with a policy's `https://[::1]` or `https://127.0.0.1`;
    /// one origin written twice is kept once, and an origin that no longer parses
    /// (`https://a.1`, which a browser refuses) is kept as it is.
    #[test]
    fn an_ip_literal_stored_in_another_spelling_is_read_in_canonical_form() {
        let plain = r#"{"schema":1,"credentials":{"c":{"kind":"login","scopes":[],"origins":["https://[0:0:0:0:0:0:0:1]","https://[::ffff:127.0.0.1]:443","https://0x7f.1","https://127.0.0.1","https://a.1"],"fields":{},"secrets":{},"created":"2026-01-01T00:00:00Z","rotated":"2026-01-01T00:00:00Z"}},"policy":null}"#;
        let mut data: VaultData = serde_json::from_str(plain).unwrap();
        data.fold_origins();
        assert_eq!(
            data.credentials["c"].origins,
            [
                "https://[::1]",
                "https://[::ffff:7f00:1]",
                "https://127.0.0.1",
                "https://a.1"
            ]
        );
    }
}
