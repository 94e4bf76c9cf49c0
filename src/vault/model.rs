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

/// The decrypted payload.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct VaultData {
    pub schema: u32,
    pub credentials: BTreeMap<String, Credential>,
    pub policy: Option<AppliedPolicy>,
}

impl Default for VaultData {
    fn default() -> Self {
        VaultData {
            schema: PAYLOAD_SCHEMA,
            credentials: BTreeMap::new(),
            policy: None,
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
    pub fields: BTreeMap<String, String>,
    /// Secret fields, e.g. `password`.
    pub secrets: BTreeMap<String, SecretString>,
    /// When it was added.
    #[serde(with = "time::serde::rfc3339")]
    pub created: OffsetDateTime,
    /// When a secret value last changed (equal to `created` until then).
    #[serde(with = "time::serde::rfc3339")]
    pub rotated: OffsetDateTime,
}

impl Credential {
    /// A new credential with no values yet.
    pub fn new(kind: CredentialKind, now: OffsetDateTime) -> Credential {
        Credential {
            kind,
            scopes: Vec::new(),
            origins: Vec::new(),
            fields: BTreeMap::new(),
            secrets: BTreeMap::new(),
            created: now,
            rotated: now,
        }
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

/// Check a field key (plain or secret): 1–64 bytes of lowercase letters, digits, `_`, `-`, `.`.
pub fn validate_field_key(key: &str) -> Result<(), VaultError> {
    let ok = !key.is_empty()
        && key.len() <= 64
        && key.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'_' | b'-' | b'.')
        });
    if ok {
        Ok(())
    } else {
        Err(VaultError::BadName {
            name: printable(key),
            why: "a field name must be 1-64 bytes of lowercase letters, digits, `_`, `-`, `.`"
                .into(),
        })
    }
}

/// A name as it can be shown in a message: control characters escaped.
fn printable(s: &str) -> String {
    let s: String = s.chars().take(140).collect();
    s.escape_debug().to_string()
}
