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
/// its base64 (standard and URL-safe, padded and not), URL-encoded and JSON-escaped forms
/// (as serde_json, Python's `json.dumps` and Go's `encoding/json` escape it).
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
    // The escapings of the two most common encoders that differ from serde_json's: Python's
    // `json.dumps` (non-ASCII as `\uXXXX`, the default) and Go's `encoding/json` (`<`, `>`,
    // `&`, U+2028 and U+2029 as `\uXXXX`, the default). A check printing a JSON body with
    // either would otherwise show the value unmasked.
    push(json_escape(value, |c| !c.is_ascii() || c == '\u{7f}'));
    push(json_escape(value, |c| {
        matches!(c, '<' | '>' | '&' | '\u{2028}' | '\u{2029}')
    }));
    // Longest first, so a form that contains another is replaced whole.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms
}

/// JSON string escaping (without the quotes) that also writes the characters `also` picks as
/// `\uXXXX` (lowercase hex, UTF-16 surrogate pairs beyond the BMP).
fn json_escape(value: &str, also: impl Fn(char) -> bool) -> String {
    let mut out = String::with_capacity(value.len() + 8);
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if (c as u32) < 0x20 || also(c) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{u:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out
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

/// Replaces secret values — and their [`mask_forms`] — in a stream of output with
/// `[redacted:LABEL]`, also when a value is split across chunks (`scopevault exec` masks a
/// child's stdout and stderr with one `Masker` each).
///
/// At each position the longest form that matches wins, as in a one-shot left-to-right
/// replacement; the output of any chunking equals the output of feeding everything at once.
/// At most `longest form - 1` bytes are held back between calls; held bytes live in zeroizing
/// buffers that are never reallocated in place (each `feed` copies into a fresh one).
///
/// This is a convenience against accidental leaks (a check printing its login), not a
/// boundary: a child can always transform a value beyond recognition.
///
/// ```
/// use scopevault::secret::{Masker, SecretString};
/// let mut m = Masker::new(vec![("shop.password".into(), SecretString::from("hunter22".to_string()))]);
/// let mut out = m.feed(b"pw=hun");
/// out.extend(m.feed(b"ter22 ok"));
/// out.extend(m.finish());
/// assert_eq!(out, b"pw=[redacted:shop.password] ok");
/// ```
pub struct Masker {
    /// (form, replacement), longest form first.
    patterns: Vec<(Zeroizing<Vec<u8>>, Vec<u8>)>,
    /// Whether some pattern starts with this byte (a quick skip for ordinary output).
    first_bytes: [bool; 256],
    /// Bytes not yet emitted: a possible beginning of a form.
    held: Zeroizing<Vec<u8>>,
}

impl fmt::Debug for Masker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Masker")
            .field("forms", &self.patterns.len())
            .field("held", &self.held.len())
            .finish_non_exhaustive()
    }
}

impl Masker {
    /// A masker for `(label, value)` pairs; the label (such as `shop-buyer.password`) names
    /// the value in the replacement text and must not itself be secret.
    pub fn new(values: Vec<(String, SecretString)>) -> Masker {
        let mut patterns: Vec<(Zeroizing<Vec<u8>>, Vec<u8>)> = Vec::new();
        for (label, value) in &values {
            let replacement = format!("[redacted:{label}]").into_bytes();
            for form in mask_forms(value.expose()) {
                if !patterns
                    .iter()
                    .any(|(p, _)| p.as_slice() == form.as_bytes())
                {
                    patterns.push((
                        Zeroizing::new(form.as_bytes().to_vec()),
                        replacement.clone(),
                    ));
                }
            }
        }
        patterns.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
        let mut first_bytes = [false; 256];
        for (p, _) in &patterns {
            first_bytes[p[0] as usize] = true;
        }
        Masker {
            patterns,
            first_bytes,
            held: Zeroizing::new(Vec::new()),
        }
    }

    /// Mask the next chunk of the stream; returns what can be emitted now.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.process(chunk, false)
    }

    /// End of the stream: emit everything still held (masked).
    pub fn finish(&mut self) -> Vec<u8> {
        self.process(&[], true)
    }

    fn process(&mut self, chunk: &[u8], last: bool) -> Vec<u8> {
        // A fresh buffer of the exact size: growing `held` in place could leave a copy of a
        // secret's first bytes in a freed, unzeroed allocation.
        let mut buf: Zeroizing<Vec<u8>> =
            Zeroizing::new(Vec::with_capacity(self.held.len() + chunk.len()));
        buf.extend_from_slice(&self.held);
        buf.extend_from_slice(chunk);
        let mut out = Vec::with_capacity(buf.len());
        let mut i = 0;
        'scan: while i < buf.len() {
            if self.first_bytes[buf[i] as usize] {
                let rest = &buf[i..];
                for (form, replacement) in &self.patterns {
                    if rest.len() >= form.len() {
                        if rest.starts_with(form) {
                            out.extend_from_slice(replacement);
                            i += form.len();
                            continue 'scan;
                        }
                    } else if !last && form.starts_with(rest) {
                        // Undecided until more bytes arrive: hold from here on.
                        break 'scan;
                    }
                }
            }
            out.push(buf[i]);
            i += 1;
        }
        self.held = Zeroizing::new(buf[i..].to_vec());
        out
    }
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

    /// Regression (leak audit): `exec` left a secret unmasked when a check printed it through
    /// Python's `json.dumps` (non-ASCII as `\u00e9`) or Go's `encoding/json` (`&` as `\u0026`).
    #[test]
    fn mask_forms_cover_python_and_go_json_escaping() {
        let forms = mask_forms("p\u{e9}ss&<\u{1f511}>\"");
        let has = |s: &str| forms.iter().any(|f| f.as_str() == s);
        assert!(has(r#"p\u00e9ss&<\ud83d\udd11>\""#), "python");
        assert!(has("p\u{e9}ss\\u0026\\u003c\u{1f511}\\u003e\\\""), "go");
        let mut m = Masker::new(vec![(
            "c.password".into(),
            SecretString::from("p\u{e9}ss&<\u{1f511}>\"".to_string()),
        )]);
        let mut out = m.feed(br#"{"password": "p\u00e9ss&<\ud83d\udd11>\""}"#);
        out.extend(m.finish());
        assert_eq!(out, br#"{"password": "[redacted:c.password]"}"#);
    }
}
