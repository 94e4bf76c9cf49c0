//! OpenSSH's `allowed_signers` file (ssh-keygen(1), "ALLOWED SIGNERS"), as `ssh-keygen -Y
//! verify` reads it: one signer per line,
//!
//! ```text
//! principals [options] keytype base64-key [comment]
//! ```
//!
//! `principals` is a comma-separated list of patterns (`*`, `?`, `!` negation), possibly
//! quoted. Options, comma-separated: `cert-authority`, `namespaces="p1,p2"` (patterns),
//! `valid-after="TIME"`, `valid-before="TIME"` with TIME `YYYYMMDD[HHMM[SS]]` and an optional
//! `Z`. Blank lines and lines starting with `#` are ignored. A malformed line is an error
//! naming `file:line`; as in OpenSSH, a valued option needs its double quotes and may be
//! given once per line.
//!
//! Two differences from OpenSSH, documented in bundle-format.md: a time without `Z` is read as
//! UTC here (OpenSSH reads it in the local time zone); checkpoints run in UTC, and a signer
//! file meant for both should write the `Z`. And a principal holding a control character
//! (ESC, which starts a terminal escape sequence) or a bidirectional control (U+202E) is
//! refused ([`check_principal`]): ssh-keygen splits the field at whitespace and commas and
//! takes any other byte, but the principals are printed by `bundle verify`, `apply` and
//! `status` and exported as a metric label, where such a name could rewrite what is shown.

use ssh_key::public::KeyData;
use time::OffsetDateTime;

/// The longest allowed_signers file read (1 MiB): it lists keys, not data.
pub const MAX_FILE_BYTES: usize = 1 << 20;

/// One signer line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signer {
    /// 1-based line number in the file.
    pub line: usize,
    /// The principal patterns, as written.
    pub principals: Vec<String>,
    /// `cert-authority`: the key signs certificates, not data (never matches a plain
    /// signature here, as in OpenSSH).
    pub cert_authority: bool,
    /// `namespaces=`: the patterns of namespaces the key may sign for (`None`: any).
    pub namespaces: Option<Vec<String>>,
    /// `valid-after=`: the key is not valid before this time.
    pub valid_after: Option<OffsetDateTime>,
    /// `valid-before=`: the key is not valid from this time on.
    pub valid_before: Option<OffsetDateTime>,
    /// The public key.
    pub key: KeyData,
}

/// A parsed allowed_signers file.
#[derive(Debug, Clone, Default)]
pub struct AllowedSigners {
    /// The signers, in file order.
    pub signers: Vec<Signer>,
}

/// A malformed line, `file:line: what`, or a file that cannot be read as one, `file: what`
/// (missing, too large: no line is at fault).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}{}: {what}", line.map(|l| format!(":{l}")).unwrap_or_default())]
pub struct ParseError {
    /// The file name as given.
    pub file: String,
    /// 1-based line; `None` when the error is about the whole file.
    pub line: Option<usize>,
    /// What is wrong.
    pub what: String,
}

/// Split a line into whitespace-separated fields, keeping double-quoted runs together (quotes
/// removed only around a whole principals field; options keep theirs for [`options`]).
fn fields(line: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        let mut quoted = false;
        while i < b.len() && (quoted || (b[i] != b' ' && b[i] != b'\t')) {
            if b[i] == b'"' {
                quoted = !quoted;
            }
            i += 1;
        }
        if quoted {
            return Err("unterminated quote".into());
        }
        out.push(&line[start..i]);
    }
    Ok(out)
}

/// Why `p` cannot be a principal here, if it cannot: empty, or holding a comma or a double
/// quote (the field's separators), or a character [`crate::text::is_terminal_control`] (a control
/// character, ESC included, or a bidirectional control such as U+202E). One rule for the
/// allowed_signers file and the applied record `status` reads back.
pub fn check_principal(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("an empty principal".to_owned());
    }
    if let Some(c) = p.chars().find(|&c| crate::text::is_terminal_control(c)) {
        return Err(format!(
            "the principal \"{}\" holds the control or bidirectional character {}: principals are printed and exported as metric labels; write them in printable characters",
            crate::text::escape_for_terminal(&p.chars().take(64).collect::<String>()),
            crate::text::escape_for_terminal(&c.to_string()),
        ));
    }
    if p.contains([',', '"']) {
        return Err(format!(
            "the principal \"{}\" holds a comma or a double quote",
            crate::text::escape_for_terminal(&p.chars().take(64).collect::<String>()),
        ));
    }
    Ok(())
}

/// Whether a field is a key type (so the options field is absent).
fn is_key_type(s: &str) -> bool {
    s.starts_with("ssh-")
        || s.starts_with("ecdsa-")
        || s.starts_with("sk-")
        || s.starts_with("rsa-")
}

/// Key types of OpenSSH that bundles cannot be signed with here (no verifier in this build):
/// their lines are read and skipped (bundle-format.md).
const UNVERIFIED_KEY_TYPES: &[&str] = &[
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ecdsa-sha2-nistp256@openssh.com",
];

/// `YYYYMMDD[HHMM[SS]][Z]` → a UTC time.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    let s = s.strip_suffix(['Z', 'z']).unwrap_or(s);
    if !s.bytes().all(|b| b.is_ascii_digit()) || !matches!(s.len(), 8 | 12 | 14) {
        return None;
    }
    let n = |r: std::ops::Range<usize>| s[r].parse::<u32>().ok();
    let month = time::Month::try_from(u8::try_from(n(4..6)?).ok()?).ok()?;
    let date = time::Date::from_calendar_date(n(0..4)? as i32, month, n(6..8)? as u8).ok()?;
    let (h, m, sec) = match s.len() {
        8 => (0, 0, 0),
        12 => (n(8..10)?, n(10..12)?, 0),
        _ => (n(8..10)?, n(10..12)?, n(12..14)?),
    };
    let t = time::Time::from_hms(h as u8, m as u8, sec as u8).ok()?;
    Some(date.with_time(t).assume_utc())
}

/// Split an options field at commas outside quotes.
fn options(s: &str) -> Result<Vec<&str>, String> {
    let mut out = Vec::new();
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if quoted {
        return Err("unterminated quote in the options".into());
    }
    out.push(&s[start..]);
    Ok(out)
}

fn parse_line(line: &str, number: usize) -> Result<Option<Signer>, String> {
    let t = line.trim_start_matches([' ', '\t']);
    if t.is_empty() || t.starts_with('#') {
        return Ok(None);
    }
    let f = fields(t)?;
    if f.len() < 3 {
        return Err(
            "expected `principals [options] keytype base64-key`: too few fields".to_owned(),
        );
    }
    // As OpenSSH (sshsig.c): a quoted principals field runs from its opening quote to the
    // next one, which must end the field. A quote anywhere else is refused: ssh-keygen reads
    // `"a",b` as no key at all and `a,"b"` as `a` and `b`, where a plain reading took
    // `"a",b` as the principals `"a"` and `b` (found by attacking the parser, fourteenth pass).
    let raw = f[0];
    let inner = match raw.strip_prefix('"') {
        Some(rest) => match rest.find('"') {
            Some(end) if end + 1 == rest.len() => &rest[..end],
            _ => {
                return Err(
                    "a quoted principals field must end at its closing quote (\"a,b\" key…)"
                        .to_owned(),
                )
            }
        },
        None if raw.contains('"') => {
            return Err(
                "a quote inside the principals field: write them as a,b or \"a,b\"".to_owned(),
            )
        }
        None => raw,
    };
    let principals: Vec<String> = inner.split(',').map(str::to_owned).collect();
    for p in &principals {
        check_principal(p)?;
    }
    let mut signer = Signer {
        line: number,
        principals,
        cert_authority: false,
        namespaces: None,
        valid_after: None,
        valid_before: None,
        // Placeholder until the key is parsed below.
        key: KeyData::Ed25519(ssh_key::public::Ed25519PublicKey([0; 32])),
    };
    let mut at = 1;
    if !is_key_type(f[1]) {
        let mut seen: Vec<String> = Vec::new();
        for opt in options(f[1])? {
            let (name, value) = match opt.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (opt, None),
            };
            // As OpenSSH (sshsig.c): a valued option is written once, its value in double
            // quotes. A second `valid-before` must not quietly replace an expired first one.
            let need = |what: &str| -> Result<&str, String> {
                let v = value.ok_or_else(|| format!("option `{what}` needs a value"))?;
                let v = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .ok_or_else(|| {
                        format!("option `{what}` needs its value in double quotes ({what}=\"…\"), as ssh-keygen reads it")
                    })?;
                if v.is_empty() {
                    return Err(format!("option `{what}` has an empty value"));
                }
                Ok(v)
            };
            let lower = name.to_ascii_lowercase();
            if value.is_some() {
                if seen.contains(&lower) {
                    let shown: String = lower.chars().take(40).collect();
                    return Err(format!(
                        "option `{shown}` is given twice on this line (ssh-keygen refuses multiple clauses)"
                    ));
                }
                seen.push(lower.clone());
            }
            match lower.as_str() {
                "cert-authority" if value.is_none() => signer.cert_authority = true,
                "namespaces" => {
                    let v = need("namespaces")?;
                    signer.namespaces = Some(v.split(',').map(str::to_owned).collect());
                }
                "valid-after" => {
                    let v = need("valid-after")?;
                    signer.valid_after = Some(parse_time(v).ok_or_else(|| {
                        format!("invalid valid-after time {v:?}: write YYYYMMDD[HHMM[SS]][Z]")
                    })?);
                }
                "valid-before" => {
                    let v = need("valid-before")?;
                    signer.valid_before = Some(parse_time(v).ok_or_else(|| {
                        format!("invalid valid-before time {v:?}: write YYYYMMDD[HHMM[SS]][Z]")
                    })?);
                }
                _ => {
                    let shown: String = name.chars().take(40).collect();
                    return Err(format!("unknown option {shown:?}"));
                }
            }
        }
        at = 2;
    }
    if f.len() < at + 2 {
        return Err("expected a key type and a base64 key".to_owned());
    }
    let text = format!("{} {}", f[at], f[at + 1]);
    let key = match ssh_key::PublicKey::from_openssh(&text) {
        Ok(key) => key,
        // A key type OpenSSH knows and this build does not verify (ECDSA): such a line can
        // authorise no bundle here, but it is not malformed, and a file shared with other
        // uses (git signing) must not stop every apply for it. Its base64 must still decode.
        Err(_) if UNVERIFIED_KEY_TYPES.contains(&f[at]) => {
            data_encoding::BASE64
                .decode(f[at + 1].as_bytes())
                .map_err(|e| format!("invalid public key: {e}"))?;
            return Ok(None);
        }
        Err(e) => return Err(format!("invalid public key: {e}")),
    };
    signer.key = key.key_data().clone();
    Ok(Some(signer))
}

/// What the refusal of an allowed signers file another user owns or may write says to do
/// before `chown`/`chmod`: they may already have added their key, and the fix alone would make
/// root trust it (twenty-fifth pass, found by the attacker of advice: the advice followed
/// verbatim applied that user's bundle).
const CHECK_KEYS_FIRST: &str = "First check every key in it against your list of the fleet's publishers and delete every other line: it may already hold a key another user added, which the fix below would make trusted.";

impl AllowedSigners {
    /// Parse the text of a file; `file` is used in messages.
    pub fn parse(text: &str, file: &str) -> Result<AllowedSigners, ParseError> {
        let mut signers = Vec::new();
        for (i, line) in text.split('\n').enumerate() {
            let line = line.strip_suffix('\r').unwrap_or(line);
            match parse_line(line, i + 1) {
                Ok(Some(s)) => signers.push(s),
                Ok(None) => {}
                Err(what) => {
                    return Err(ParseError {
                        file: file.to_owned(),
                        line: Some(i + 1),
                        what,
                    })
                }
            }
        }
        Ok(AllowedSigners { signers })
    }

    /// Read and parse a file (at most [`MAX_FILE_BYTES`]) that a command trusts: a regular file
    /// owned by root or the caller, writable by its owner only, on a path no other user may
    /// change ([`crate::vault::check_trusted_file`]); anything else is refused before it is
    /// parsed. A fixture read as test data is [`AllowedSigners::parse`]d instead.
    pub fn read(path: &std::path::Path) -> Result<AllowedSigners, ParseError> {
        let file = path.display().to_string();
        let err = |line, what: String| ParseError {
            file: file.clone(),
            line,
            what,
        };
        let (bytes, meta) = super::read_regular_with_metadata(path, MAX_FILE_BYTES as u64)
            .map_err(|e| err(None, format!("cannot read: {e}")))?
            .map_err(|u| err(None, u.describe(MAX_FILE_BYTES as u64)))?;
        // The file says who may sign: one another user may change is no trust anchor (twenty-
        // first pass: another uid appended its key to a world-writable file, signed a forged
        // bundle, and it was applied). Judged on the file as opened.
        crate::vault::check_trusted_file(
            path,
            &meta,
            "could add a key of their own to it and sign any bundle",
            CHECK_KEYS_FIRST,
        )
        .map_err(|why| err(None, why))?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            err(Some(line), "not UTF-8".to_owned())
        })?;
        AllowedSigners::parse(&text, &file)
    }

    /// The signers whose key is `key`, who may sign for `namespace`, are no certificate
    /// authority, and are valid at `now` — or why none is. On success, every matching line.
    pub fn authorise(
        &self,
        key: &KeyData,
        namespace: &str,
        now: OffsetDateTime,
    ) -> Result<Vec<&Signer>, String> {
        let same_key: Vec<&Signer> = self
            .signers
            .iter()
            .filter(|s| &s.key == key && !s.cert_authority)
            .collect();
        if same_key.is_empty() {
            return Err("the signing key is not in the allowed signers file".to_owned());
        }
        let (for_ns, not_for_ns): (Vec<&Signer>, Vec<&Signer>) =
            same_key.into_iter().partition(|s| {
                s.namespaces
                    .as_ref()
                    .is_none_or(|n| match_pattern_list(namespace, n))
            });
        if for_ns.is_empty() {
            // Each line's own value, as written (the patterns joined by the commas they were
            // split at) and escaped as other text from the file is: the message printed
            // `(namespaces=)`, an empty value, whatever the line said (twenty-second pass).
            // At most five lines, then a count: a file with the key on 8,000 lines made a
            // 231 KB refusal (twenty-second pass, found by attacking its fixes).
            const SHOWN: usize = 5;
            let mut lines: Vec<String> = not_for_ns
                .iter()
                .take(SHOWN)
                .map(|s| {
                    let value = s.namespaces.as_deref().unwrap_or_default().join(",");
                    let cut: String = value.chars().take(120).collect();
                    let more = if cut.len() < value.len() { "…" } else { "" };
                    format!(
                        "line {}: namespaces=\"{}{more}\"",
                        s.line,
                        crate::text::escape_for_terminal(&cut)
                    )
                })
                .collect();
            match not_for_ns.len().saturating_sub(SHOWN) {
                0 => {}
                1 => lines.push("and 1 more line".to_owned()),
                more => lines.push(format!("and {more} more lines")),
            }
            return Err(format!(
                "the signing key is in the allowed signers file, but not for namespace `{namespace}` ({}); patterns match case-sensitively and a `!pattern` that matches refuses",
                lines.join("; ")
            ));
        }
        let mut why = String::new();
        let valid: Vec<&Signer> = for_ns
            .into_iter()
            .filter(|s| {
                if let Some(a) = s.valid_after {
                    if now < a {
                        why = format!(
                            "the signing key is valid only after {} (line {})",
                            crate::text::rfc3339(a),
                            s.line
                        );
                        return false;
                    }
                }
                if let Some(b) = s.valid_before {
                    if now >= b {
                        why = format!(
                            "the signing key was valid only before {} (line {})",
                            crate::text::rfc3339(b),
                            s.line
                        );
                        return false;
                    }
                }
                true
            })
            .collect();
        if valid.is_empty() {
            return Err(why);
        }
        Ok(valid)
    }
}

/// OpenSSH's `match_pattern_list`: a comma list of patterns, `!` negates; a negated match
/// wins; otherwise any positive match.
pub fn match_pattern_list(s: &str, patterns: &[String]) -> bool {
    let mut any = false;
    for p in patterns {
        if let Some(neg) = p.strip_prefix('!') {
            if match_pattern(s, neg) {
                return false;
            }
        } else if match_pattern(s, p) {
            any = true;
        }
    }
    any
}

/// A glob with `*` (any run) and `?` (one character).
pub fn match_pattern(s: &str, p: &str) -> bool {
    let s: Vec<char> = s.chars().collect();
    let p: Vec<char> = p.chars().collect();
    let (mut si, mut pi) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while si < s.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == s[si]) {
            si += 1;
            pi += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = si;
            pi += 1;
        } else if let Some(st) = star {
            pi = st + 1;
            mark += 1;
            si = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEL3tMKYkqoWOhbph5UHgYg9t5yt1cZEOiMUQWOy/Pdb";

    fn one(line: &str) -> Signer {
        AllowedSigners::parse(line, "f")
            .unwrap()
            .signers
            .pop()
            .unwrap()
    }

    #[test]
    fn plain_line_with_comment() {
        let s = one(&format!("admin@example.com {KEY} laptop"));
        assert_eq!(s.principals, vec!["admin@example.com"]);
        assert_eq!(s.namespaces, None);
        assert!(!s.cert_authority);
    }

    #[test]
    fn quoted_principals_and_every_option() {
        let s = one(&format!(
            "\"a@x,b@y\" namespaces=\"scopevault-bundle,git\",valid-after=\"20260101\",valid-before=\"20270102030405Z\" {KEY}"
        ));
        assert_eq!(s.principals, vec!["a@x", "b@y"]);
        assert_eq!(
            s.namespaces,
            Some(vec!["scopevault-bundle".to_owned(), "git".to_owned()])
        );
        assert_eq!(
            s.valid_after,
            Some(time::macros::datetime!(2026-01-01 0:00 UTC))
        );
        assert_eq!(
            s.valid_before,
            Some(time::macros::datetime!(2027-01-02 03:04:05 UTC))
        );
    }

    /// A quote that does not open and close the whole principals field is refused: ssh-keygen
    /// refuses `"a",b` and `"a b",c` (no key for anyone) and reads `a,"b"` as `a` and `b`,
    /// where the plain reading accepted them with quotes in the principals (found by
    /// attacking the parser against ssh-keygen, fourteenth pass). A whole quoted field may
    /// hold spaces.
    #[test]
    fn a_quote_that_does_not_wrap_the_whole_principals_field_is_refused() {
        for bad in ["\"a\",b", "\"a b\",c", "a,\"b\"", "\"a"] {
            let err = AllowedSigners::parse(&format!("{bad} {KEY}"), "f").unwrap_err();
            assert!(err.to_string().contains("f:1:"), "{bad}: {err}");
        }
        assert_eq!(
            one(&format!("\"a b,c\" {KEY}")).principals,
            vec!["a b", "c"]
        );
    }

    /// A principal holding a control character (ESC starting a terminal sequence, BEL, a
    /// tab inside quotes) or a bidirectional control (U+202E, U+2066) is refused, escaped in
    /// the message: principals are printed and exported as metric labels (found by an outside
    /// review; ssh-keygen takes any byte but whitespace and commas). Printable non-ASCII is
    /// kept, and so are spaces inside a quoted field.
    #[test]
    fn a_principal_with_a_control_or_bidi_character_is_refused() {
        for bad in [
            "ops\u{1b}]0;x\u{7}",
            "a,b\u{1b}[2J",
            "\"a\tb\"",
            "admin\u{202e}moc",
            "x\u{2066}y",
            "\u{7f}",
        ] {
            let err = AllowedSigners::parse(&format!("{bad} {KEY}"), "f")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("f:1:") && err.contains("control or bidirectional"),
                "{bad:?}: {err}"
            );
            assert!(!err.chars().any(crate::text::needs_escape), "{err:?}");
        }
        assert_eq!(one(&format!("josé {KEY}")).principals, vec!["josé"]);
        assert_eq!(one(&format!("\"a b\" {KEY}")).principals, vec!["a b"]);
    }

    #[test]
    fn comments_blank_lines_and_crlf_are_skipped() {
        let text = format!("# comment\n\n   \r\n  # indented\r\nx {KEY}\r\n");
        let a = AllowedSigners::parse(&text, "f").unwrap();
        assert_eq!(a.signers.len(), 1);
        assert_eq!(a.signers[0].line, 5);
    }

    /// An ECDSA line (not verified in this build) is read and skipped, not refused: a shared
    /// file may hold other people's keys for other namespaces.
    #[test]
    fn an_ecdsa_line_is_skipped() {
        let ecdsa = "ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTYAAABBBEmKSENjQEezOmxkZMy7opKgwFB9nkt5YRrYMjNuG5N87uRgg6CLrbo5wAdT/y6v0mKV0U2w0WZ2YB/++Tpockg=";
        let a = AllowedSigners::parse(&format!("dev namespaces=\"git\" {ecdsa}\nx {KEY}\n"), "f")
            .unwrap();
        assert_eq!(a.signers.len(), 1);
        assert_eq!(a.signers[0].line, 2);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let cases = [
            "x".to_owned(),
            "x ssh-ed25519".to_owned(),
            format!("x bogus-option {KEY}"),
            format!("x valid-before=\"2026\" {KEY}"),
            format!("x valid-after=\"20261340\" {KEY}"),
            format!("x namespaces= {KEY}"),
            format!("x namespaces=scopevault-bundle {KEY}"),
            format!("x valid-before=20991231Z {KEY}"),
            format!("x valid-before=\"20200101Z\",valid-before=\"20991231Z\" {KEY}"),
            format!("x namespaces=\"git\",namespaces=\"scopevault-bundle\" {KEY}"),
            format!("x valid-after=\"20200101\",VALID-AFTER=\"20200102\" {KEY}"),
            format!("\"x {KEY}"),
            "x ssh-ed25519 AAAA!!notbase64".to_owned(),
            "x ecdsa-sha2-nistp256 AAAA!!notbase64".to_owned(),
            format!("x,, {KEY}"),
            format!("x namespaces=\"a {KEY}"),
        ];
        for c in cases {
            let text = format!("# ok\n{c}\n");
            let e = AllowedSigners::parse(&text, "signers").unwrap_err();
            assert_eq!(e.line, Some(2), "{c}");
            assert!(e.to_string().starts_with("signers:2: "), "{e}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(
            parse_time("202601021530"),
            Some(time::macros::datetime!(2026-01-02 15:30 UTC))
        );
        for bad in [
            "",
            "2026010",
            "20260230",
            "2026010125",
            "20260101240000",
            "x0260101",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn patterns() {
        let l = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(match_pattern_list(
            "scopevault-bundle",
            &l(&["scopevault-*"])
        ));
        assert!(match_pattern_list("ab", &l(&["a?"])));
        assert!(!match_pattern_list("git", &l(&["scopevault-bundle"])));
        assert!(!match_pattern_list("x", &l(&["*", "!x"])));
        assert!(match_pattern_list("y", &l(&["*", "!x"])));
        assert!(!match_pattern_list("x", &l(&["!y"])));
    }

    #[test]
    fn authorise_checks_key_namespace_and_validity() {
        let now = time::macros::datetime!(2026-06-01 0:00 UTC);
        let key = one(&format!("x {KEY}")).key;
        let a = AllowedSigners::parse(&format!("x {KEY}"), "f").unwrap();
        assert_eq!(
            a.authorise(&key, "scopevault-bundle", now).unwrap().len(),
            1
        );
        let ns = AllowedSigners::parse(&format!("x namespaces=\"git\" {KEY}"), "f").unwrap();
        assert!(ns
            .authorise(&key, "scopevault-bundle", now)
            .unwrap_err()
            .contains("namespace"));
        let old =
            AllowedSigners::parse(&format!("x valid-before=\"20260101Z\" {KEY}"), "f").unwrap();
        assert!(old
            .authorise(&key, "scopevault-bundle", now)
            .unwrap_err()
            .contains("before"));
        let early =
            AllowedSigners::parse(&format!("x valid-after=\"20270101\" {KEY}"), "f").unwrap();
        assert!(early
            .authorise(&key, "scopevault-bundle", now)
            .unwrap_err()
            .contains("after"));
        let ca = AllowedSigners::parse(&format!("x cert-authority {KEY}"), "f").unwrap();
        assert!(ca.authorise(&key, "scopevault-bundle", now).is_err());
        let empty = AllowedSigners::parse("", "f").unwrap();
        assert!(empty
            .authorise(&key, "scopevault-bundle", now)
            .unwrap_err()
            .contains("not in"));
    }

    /// Found by an attacker forging signed bundles (twenty-second pass): a key refused for its
    /// namespace was reported as "(namespaces=)", an empty value, whatever its line said
    /// (`"*,!scopevault-bundle"`, `"SCOPEVAULT-BUNDLE"`). Each refusing line's value is
    /// printed as written, with its line number, a control character in it escaped.
    #[test]
    fn regression_a_namespace_refusal_prints_each_lines_namespaces_value() {
        let now = time::macros::datetime!(2026-06-01 0:00 UTC);
        let key = one(&format!("x {KEY}")).key;
        for value in [
            "*,!scopevault-bundle",
            "SCOPEVAULT-BUNDLE",
            "git,!scopevault-*",
        ] {
            let a = AllowedSigners::parse(&format!("x namespaces=\"{value}\" {KEY}"), "f").unwrap();
            let err = a.authorise(&key, "scopevault-bundle", now).unwrap_err();
            assert!(
                err.contains(&format!("(line 1: namespaces=\"{value}\")")),
                "{value}: {err}"
            );
        }
        let two = AllowedSigners::parse(
            &format!("x namespaces=\"git\" {KEY}\ny namespaces=\"a\u{1b}[2J\" {KEY}\n"),
            "f",
        )
        .unwrap();
        let err = two.authorise(&key, "scopevault-bundle", now).unwrap_err();
        assert!(
            err.contains("(line 1: namespaces=\"git\"; line 2: namespaces=\"a\\u{1b}[2J\")"),
            "{err}"
        );
        assert!(!err.contains('\u{1b}'), "{err}");
    }

    /// Found by attacking the twenty-second pass's fixes: the namespace refusal listed every
    /// line of the key, so an allowed signers file with the key on 8,000 lines made a 231 KB
    /// one-line refusal. At most five lines are listed, then how many more there are.
    #[test]
    fn regression_a_namespace_refusal_lists_at_most_five_lines_and_counts_the_rest() {
        let now = time::macros::datetime!(2026-06-01 0:00 UTC);
        let key = one(&format!("x {KEY}")).key;
        let file: String = (0..8000)
            .map(|n| format!("x{n} namespaces=\"git\" {KEY}\n"))
            .collect();
        let a = AllowedSigners::parse(&file, "f").unwrap();
        let err = a.authorise(&key, "scopevault-bundle", now).unwrap_err();
        assert!(
            err.contains("(line 1: namespaces=\"git\"; line 2: namespaces=\"git\"; line 3: namespaces=\"git\"; line 4: namespaces=\"git\"; line 5: namespaces=\"git\"; and 7995 more lines)"),
            "{err}"
        );
        assert!(!err.contains("line 6:"), "{err}");
        assert!(err.len() < 500, "{} bytes: {err}", err.len());
        // Six lines: the sixth is counted, not listed.
        let six: String = (0..6)
            .map(|n| format!("x{n} namespaces=\"git\" {KEY}\n"))
            .collect();
        let err = AllowedSigners::parse(&six, "f")
            .unwrap()
            .authorise(&key, "scopevault-bundle", now)
            .unwrap_err();
        assert!(
            err.contains("line 5: namespaces=\"git\"; and 1 more line)"),
            "{err}"
        );
    }

    /// The documented line semantics, as `ssh-keygen -Y verify` has them (nineteenth pass,
    /// found by attacking from the documents; docs only): every line carrying a key counts,
    /// so a `valid-before` on one line does not limit the key while another line lists it
    /// without one, and `@revoked` is no marker here (allowed_signers has none) but a
    /// principal, whose line authorises the key. Retiring a key means removing every line
    /// of it (docs/operations.md, "Signing key rollover").
    #[test]
    fn every_line_carrying_a_key_counts_and_revoked_is_only_a_principal() {
        let now = time::macros::datetime!(2026-06-01 0:00 UTC);
        let key = one(&format!("x {KEY}")).key;
        let two = AllowedSigners::parse(
            &format!("old valid-before=\"20260101Z\" {KEY}\nnew {KEY}\n"),
            "f",
        )
        .unwrap();
        let by = two.authorise(&key, "scopevault-bundle", now).unwrap();
        assert_eq!(by.len(), 1);
        assert_eq!(by[0].principals, vec!["new"]);
        let revoked = AllowedSigners::parse(&format!("@revoked {KEY}\n"), "f").unwrap();
        let by = revoked.authorise(&key, "scopevault-bundle", now).unwrap();
        assert_eq!(by[0].principals, vec!["@revoked"]);
    }
}
