//! The kinds of credential a policy can declare and a vault can store.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// What a credential is, which decides the secret fields it usually has and how `fetch`
/// hands it out (a `totp` credential yields a code, never its seed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CredentialKind {
    /// Username and password for a login form.
    Login,
    /// An API token.
    Token,
    /// A TOTP seed (`totp_seed` base32, or `otpauth` URI).
    Totp,
    /// A client certificate and its private key.
    Certificate,
    /// Anything else: free-form fields.
    Generic,
}

impl CredentialKind {
    /// Every kind, in declaration order.
    pub const ALL: [CredentialKind; 5] = [
        CredentialKind::Login,
        CredentialKind::Token,
        CredentialKind::Totp,
        CredentialKind::Certificate,
        CredentialKind::Generic,
    ];

    /// The lowercase name used in policy.toml and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            CredentialKind::Login => "login",
            CredentialKind::Token => "token",
            CredentialKind::Totp => "totp",
            CredentialKind::Certificate => "certificate",
            CredentialKind::Generic => "generic",
        }
    }
}

impl fmt::Display for CredentialKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error for an unknown kind name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown credential kind `{0}`: expected one of login, token, totp, certificate, generic")]
pub struct UnknownKind(pub String);

impl FromStr for CredentialKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        CredentialKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }
}
