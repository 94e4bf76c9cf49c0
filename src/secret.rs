//! Secret types: the only way a secret value lives in memory in scopevault.
//!
//! Every secret value (a password, a token, a TOTP seed, a passphrase, a key) is held in a type
//! from this module or in a [`zeroize::Zeroizing`] buffer:
//!
//! - its memory is overwritten with zeroes when it is dropped (`zeroize`, via `secrecy`);
//! - its `Debug` prints `[REDACTED]`, so a stray `{:?}` or a panic message never shows it;
//! - it has no `Display`: turning it into text is an explicit [`SecretString::expose`] call,
//!   which a reviewer can grep for.
//!
//! ```
//! use scopevault::secret::SecretString;
//! let s = SecretString::from("hunter2".to_string());
//! assert_eq!(format!("{s:?}"), "[REDACTED]");
//! assert_eq!(s.expose(), "hunter2");
//! ```

use std::fmt;

use secrecy::{ExposeSecret, SecretBox};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

/// Largest secret value accepted from any source (prompt, stdin, file, fd): 64 KiB.
///
/// Credentials are passwords, tokens, TOTP seeds and private keys; anything larger is a
/// mistake (the wrong file) and would bloat every save.
pub const MAX_SECRET_LEN: usize = 64 * 1024;

/// A UTF-8 secret value, zeroed on drop, redacted in `Debug`.
pub struct SecretString(SecretBox<str>);

impl SecretString {
    /// Borrow the secret text. Every call site is a place a secret leaves its box: keep them few.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    /// Length in bytes (not secret: sizes are visible on disk anyway).
    pub fn len(&self) -> usize {
        self.expose().len()
    }

    /// True if the secret is the empty string.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Build a secret from raw bytes read from a prompt, stdin, a file or an fd.
    ///
    /// The bytes are zeroed whatever happens. A single trailing `\n` (or `\r\n`) is not part of
    /// the secret, as with `--passphrase-file`: editors and `echo` add one.
    pub fn from_input_bytes(bytes: Zeroizing<Vec<u8>>) -> Result<Self, SecretInputError> {
        let mut end = bytes.len();
        if end > 0 && bytes[end - 1] == b'\n' {
            end -= 1;
            if end > 0 && bytes[end - 1] == b'\r' {
                end -= 1;
            }
        }
        if end > MAX_SECRET_LEN {
            return Err(SecretInputError::TooLarge { len: end });
        }
        let text = std::str::from_utf8(&bytes[..end]).map_err(|_| SecretInputError::NotUtf8)?;
        Ok(SecretString::from(text.to_owned()))
    }
}

impl From<String> for SecretString {
    fn from(s: String) -> Self {
        SecretString(SecretBox::from(s.into_boxed_str()))
    }
}

impl Clone for SecretString {
    fn clone(&self) -> Self {
        SecretString::from(self.expose().to_owned())
    }
}

impl PartialEq for SecretString {
    /// Constant-time in the length of the shorter value is not needed here: equality is only
    /// used to decide whether a rotation changed the value, never to check a guess.
    fn eq(&self, other: &Self) -> bool {
        self.expose() == other.expose()
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

/// Serialisation exposes the value: it is used only for the encrypted vault payload and the
/// socket response to an authorised runner, never for logs.
impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.expose())
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // Deserialising into a plain String first would leave an unzeroed copy; a zeroizing
        // String is moved into the box and the temporary is cleared on drop.
        let s: Zeroizing<String> = Zeroizing::new(String::deserialize(d)?);
        Ok(SecretString::from(s.as_str().to_owned()))
    }
}

/// Why a secret read from outside was refused. Never contains the value.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretInputError {
    /// Larger than [`MAX_SECRET_LEN`].
    #[error("the secret is {len} bytes; at most {max} bytes are accepted (is this the right file?)", max = MAX_SECRET_LEN)]
    TooLarge {
        /// Length in bytes.
        len: usize,
    },
    /// Not valid UTF-8.
    #[error("the secret is not valid UTF-8 text; store binary keys base64-encoded")]
    NotUtf8,
}

/// The forms of a secret value that `scopevault exec` masks in a child's output: the value,
/// its base64 (standard and URL-safe, padded and not), URL-encoded and JSON-escaped forms.
/// Forms shorter than 4 bytes are skipped (masking "a" would redact every "a").
pub fn mask_forms(value: &str) -> Vec<Zeroizing<String>> {
    use data_encoding::{BASE64, BASE64URL, BASE64URL_NOPAD, BASE64_NOPAD};
    let mut forms: Vec<Zeroizing<String>> = Vec::new();
    let mut push = |s: String| {
        let s = Zeroizing::new(s);
        if s.len() >= 4 && !forms.iter().any(|f| f.as_str() == s.as_str()) {
            forms.push(s);
        }
    };
    push(value.to_owned());
    for enc in [&BASE64, &BASE64_NOPAD, &BASE64URL, &BASE64URL_NOPAD] {
        push(enc.encode(value.as_bytes()));
    }
    push(url_encode(value, false));
    push(url_encode(value, true));
    let json = serde_json::to_string(value).unwrap_or_default();
    if json.len() >= 2 {
        push(json[1..json.len() - 1].to_owned());
    }
    // Longest first, so a form that contains another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms
}

/// Percent-encode every byte outside RFC 3986's unreserved set; `plus_for_space` gives the
/// `application/x-www-form-urlencoded` variant.
fn url_encode(value: &str, plus_for_space: bool) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value.as_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' if plus_for_space => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretString::from("correct horse".to_string());
        assert_eq!(format!("{s:?}"), "[REDACTED]");
        assert!(!format!("{:?}", Some(&s)).contains("horse"));
    }

    #[test]
    fn input_strips_one_trailing_newline_only() {
        let s = SecretString::from_input_bytes(Zeroizing::new(b"pw\n\n".to_vec())).unwrap();
        assert_eq!(s.expose(), "pw\n");
        let s = SecretString::from_input_bytes(Zeroizing::new(b"pw\r\n".to_vec())).unwrap();
        assert_eq!(s.expose(), "pw");
    }

    #[test]
    fn input_refuses_non_utf8_and_oversized() {
        let e = SecretString::from_input_bytes(Zeroizing::new(vec![0xff, 0xfe])).unwrap_err();
        assert_eq!(e, SecretInputError::NotUtf8);
        let e = SecretString::from_input_bytes(Zeroizing::new(vec![b'a'; MAX_SECRET_LEN + 1]))
            .unwrap_err();
        assert!(matches!(e, SecretInputError::TooLarge { .. }));
    }

    #[test]
    fn mask_forms_cover_encodings() {
        let forms = mask_forms("p@ss w/\"x\"");
        let has = |s: &str| forms.iter().any(|f| f.as_str() == s);
        assert!(has("p@ss w/\"x\""));
        assert!(has("p%40ss%20w%2F%22x%22"));
        assert!(has("p%40ss+w%2F%22x%22"));
        assert!(has("p@ss w/\\\"x\\\""));
        assert!(has(&data_encoding::BASE64.encode(b"p@ss w/\"x\"")));
    }
}
