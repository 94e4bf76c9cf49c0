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

impl CredentialKind {
    /// Whether `fetch` hands out the secrets of a credential of this kind: of a `totp`
    /// credential it hands out the current code and the plain fields, never a secret, whatever
    /// the vault holds beside the seed (a seed stored as `--secret seed` went to every runner
    /// beside the code, twenty-eighth pass). One rule for the answer, `tasks` and
    /// `scrub_report`.
    pub fn hands_out_secrets(self) -> bool {
        self != CredentialKind::Totp
    }

    /// The secret fields this kind's schema defines: their values are stored as secrets and
    /// may only be given through `--secret`/`--secret-file` (never as a `--field` argument).
    pub fn secret_fields(self) -> &'static [&'static str] {
        match self {
            CredentialKind::Login => &["password", "passphrase", "pin", "totp_seed", "otpauth"],
            CredentialKind::Token => &[
                "token",
                "api_key",
                "client_secret",
                "access_token",
                "refresh_token",
            ],
            CredentialKind::Totp => &["totp_seed", "otpauth"],
            CredentialKind::Certificate => &["private_key", "passphrase"],
            CredentialKind::Generic => &[],
        }
    }

    /// Whether a field named `field` holds a secret for this kind: it is in the kind's schema
    /// ([`CredentialKind::secret_fields`]), or its name looks like a secret's
    /// ([`CredentialKind::name_looks_secret`]), whatever the kind.
    pub fn is_secret_field(self, field: &str) -> bool {
        self.secret_fields().contains(&field) || CredentialKind::name_looks_secret(field)
    }

    /// Whether a field name looks like it holds a secret (`passwd`, `api-key`, `db_password`,
    /// `x.auth.token`, `pwd`, `pin`, `jwt`, `mot_de_passe`, `dbpass`, `rootpw`…), for any kind: such a field must be
    /// given through `--secret`, never as a plain `--field` value (argv is visible to other
    /// users, and `cred show` prints plain fields).
    ///
    /// The name is lowercased and split at `_`, `-` and `.`. It looks secret when the words
    /// joined contain one of the long secret words (`SECRET_WORDS` in this module), or one word is a short
    /// one (`SECRET_SHORT_WORDS`) or ends in a secret suffix (`SECRET_SUFFIXES`: `dbpass`,
    /// `rootpw`): short words are matched whole, so that `pat` does not catch
    /// `pattern`, nor `pin` `shipping` — unless the last word says the field is about the
    /// secret, not the secret itself (`name`, `url`, `uri`, `type`, `hint`, `path`, `file`,
    /// `length`). docs/operations.md lists both; a name caught wrongly costs only `--secret`
    /// instead of `--field`, a secret missed is printed and sits in argv, so the lists err
    /// towards catching.
    pub fn name_looks_secret(field: &str) -> bool {
        const ABOUT: &[&str] = &[
            "name", "url", "uri", "type", "hint", "path", "file", "length",
        ];
        let lower = field.to_ascii_lowercase();
        let words: Vec<&str> = lower
            .split(['_', '-', '.'])
            .filter(|w| !w.is_empty())
            .collect();
        if words.last().is_some_and(|w| ABOUT.contains(w)) {
            return false;
        }
        let joined = words.concat();
        SECRET_WORDS.iter().any(|l| joined.contains(l))
            || words.iter().any(|w| {
                SECRET_SHORT_WORDS.contains(w) || SECRET_SUFFIXES.iter().any(|s| w.ends_with(s))
            })
    }
}

/// The long secret words of [`CredentialKind::name_looks_secret`], found anywhere in a field's
/// name with its separators removed (`db_password`, `clientSecret`, `mot_de_passe`).
/// The eighteenth pass added: `jwt`, `authorization`, `privkey`, `signature`, recovery and
/// backup codes, security answers, two-factor and one-time codes, seed phrases, and "password"
/// in the languages an admin is likely to name a field in; and (found by attacking that pass's
/// fixes) `passkey` and `masterkey`.
const SECRET_WORDS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "passcode",
    "pincode",
    "secret",
    "token",
    "apikey",
    "privatekey",
    "privkey",
    "credential",
    "otpauth",
    "otpcode",
    "totpseed",
    "bearer",
    "cookie",
    "session",
    "signingkey",
    "accesskey",
    "authorization",
    "basicauth",
    "jwt",
    "signature",
    "recoverycode",
    "backupcode",
    "securityanswer",
    "mnemonic",
    "twofactor",
    "twofa",
    "passkey",
    "masterkey",
    // "password" in other languages (spelt without accents: field names are ASCII).
    "passwort",
    "kennwort",
    "contrasena",
    "motdepasse",
    "wachtwoord",
    "passord",
    "losenord",
    "salasana",
    "lozinka",
    "adgangskode",
];

/// The short secret words of [`CredentialKind::name_looks_secret`], matched as whole words
/// only (`pat` in `gh_pat`, not in `pattern`).
const SECRET_SHORT_WORDS: &[&str] = &[
    "pass", "pwd", "pw", "pin", "pins", "key", "keys", "otp", "hotp", "totp", "seed", "auth",
    "oauth", "sig", "mfa", "2fa", "pem", "pat", "refresh", "priv", "hmac", "salt", "pepper",
    "answer", "cvv", "cvc", "puk", "passe", "senha", "heslo", "haslo", "jelszo", "sifre", "parola",
    "parol", "private",
];

/// The ends of a word that make it secret-looking in [`CredentialKind::name_looks_secret`]:
/// a password named after whose it is (`dbpass`, `adminpass`, `rootpw`, `rootpwd`), accepted
/// as a plain field before (eighteenth pass, found by attacking this pass's fixes). `bypass`
/// and `compass` are caught too: the list errs towards catching.
const SECRET_SUFFIXES: &[&str] = &["pass", "pw", "pwd"];

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_looking_field_names_are_recognised_and_plain_ones_are_not() {
        for f in [
            "password",
            "passwd",
            "api-key",
            "api_key",
            "apiKey",
            "db_password",
            "x.auth.token",
            "pwd",
            "pin",
            "client-secret",
            "ssh.key",
            "otp",
            "session_id",
            "Bearer",
            "privateKey",
            "mfa",
            "totp_seed",
            // Eighteenth pass: accepted as plain fields before.
            "jwt",
            "authorization",
            "privkey",
            "pem",
            "recovery_codes",
            "backup_codes",
            "security_answer",
            "2fa",
            "refresh",
            "pat",
            "gh_pat",
            "signature",
            "passwort",
            "kennwort",
            "contrasena",
            "mot_de_passe",
            "wachtwoord",
            "senha",
            "passcode",
            "pincode",
            "ssh_keys",
            "oauth",
            "hmac",
            "salt",
            "cvv",
            "mnemonic",
            "otp_code",
            "hotp",
            "two_factor",
            // Eighteenth pass, found by attacking this pass's fixes: accepted as plain fields.
            "dbpass",
            "adminpass",
            "rootpw",
            "rootpwd",
            "userpass",
            "apipass",
            "passkey",
            "masterkey",
            "master_key",
            "private",
            "ssh_private",
        ] {
            assert!(CredentialKind::name_looks_secret(f), "{f} looks secret");
        }
        for f in [
            "username",
            "user",
            "email",
            "url",
            "domain",
            "account",
            "login",
            "note",
            "password_hint",
            "token_url",
            "key_file",
            "footprint",
            "monkey_name",
            "keyboard",
            "author",
            "pattern",
            "patch",
            "shipping",
            "the_slot",
            "signature_type",
            "recovery_email",
            "description",
            "region",
            "passenger",
            "passage",
            "pwa_mode",
            "dbpass_hint",
        ] {
            assert!(
                !CredentialKind::name_looks_secret(f),
                "{f} does not look secret"
            );
        }
    }

    #[test]
    fn the_kind_schema_makes_its_fields_secret_whatever_their_name() {
        // `pin` and `token` are both in a schema and secret-looking; the schema alone decides
        // for a name the words would miss.
        assert!(CredentialKind::Login.is_secret_field("password"));
        assert!(CredentialKind::Token.is_secret_field("token"));
        assert!(CredentialKind::Certificate.is_secret_field("private_key"));
        assert!(!CredentialKind::Generic.is_secret_field("username"));
        for k in CredentialKind::ALL {
            for f in k.secret_fields() {
                assert!(k.is_secret_field(f), "{k}: {f}");
            }
        }
    }
}
