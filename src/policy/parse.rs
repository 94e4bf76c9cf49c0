//! policy.toml → [`Policy`]: serde with `deny_unknown_fields` and spans, then validation.

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::error::did_you_mean;
use super::implies::{ImpliesGraph, TooManyEdges, MAX_EDGES, MAX_EXPANSION, MAX_STEPS};
use super::lint::RuleId;
use super::scope::MAX_SCOPE_BYTES;
use super::{
    CatalogEntry, CredentialDecl, CredentialKind, Enforce, Exception, Location, Policy,
    PolicyError, Problem, Risk, Runners, Scope, Sp, SubjectKey, Task,
};
use rustc_hash::{FxHashMap, FxHashSet};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    version: Spanned<i64>,
    #[serde(default)]
    settings: Option<Spanned<RawSettings>>,
    #[serde(default)]
    scopes: BTreeMap<Spanned<String>, Spanned<RawCatalog>>,
    #[serde(default)]
    credentials: RawMap<RawCredential>,
    #[serde(default)]
    tasks: RawMap<RawTask>,
    #[serde(default)]
    exceptions: Vec<Spanned<RawException>>,
    #[serde(default)]
    locations: RawMap<RawLocation>,
}

/// Fleet: `[locations.NAME]`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLocation {
    recipient: Spanned<String>,
}

/// A TOML table of named entries, sorted by name: what a `BTreeMap` would give, but one
/// sort of a vector instead of a tree insertion per entry (with 100,000 credentials the tree's
/// string comparisons and scattered nodes were a visible, superlinear share of the parse), and
/// the entries can be moved out in order.
struct RawMap<T>(Vec<(Spanned<String>, Spanned<T>)>);

impl<T> Default for RawMap<T> {
    fn default() -> Self {
        RawMap(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for RawMap<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Entries<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Entries<T> {
            type Value = RawMap<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                // serde's wording for a map, as the `BTreeMap` this replaces said it.
                f.write_str("a map")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<RawMap<T>, A::Error> {
                let mut v = Vec::with_capacity(m.size_hint().unwrap_or(0));
                while let Some(e) = m.next_entry::<Spanned<String>, Spanned<T>>()? {
                    v.push(e);
                }
                // TOML refuses duplicate keys, so the order is total.
                v.sort_unstable_by(|a, b| a.0.get_ref().cmp(b.0.get_ref()));
                Ok(RawMap(v))
            }
        }
        d.deserialize_map(Entries(std::marker::PhantomData))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSettings {
    #[serde(default)]
    enforce: Option<Spanned<Enforce>>,
    #[serde(default)]
    max_credential_age: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCatalog {
    #[serde(default)]
    risk: Option<Risk>,
    #[serde(default)]
    implies: Vec<Spanned<String>>,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCredential {
    kind: Spanned<CredentialKind>,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
    #[serde(default)]
    origins: Vec<Spanned<String>>,
    #[serde(default)]
    owner: Option<String>,
    #[serde(default)]
    rotate_every: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTask {
    #[serde(default)]
    needs: Vec<Spanned<String>>,
    #[serde(default)]
    credentials: Vec<Spanned<String>>,
    #[serde(default)]
    runners: Option<Spanned<RawRunners>>,
    #[serde(default)]
    origin: Option<Spanned<String>>,
    #[serde(default)]
    locations: Vec<Spanned<String>>,
    #[serde(default)]
    schedulers: Option<Spanned<Vec<Spanned<String>>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunners {
    #[serde(default)]
    users: Vec<Spanned<String>>,
    #[serde(default)]
    groups: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawException {
    rule: Spanned<String>,
    #[serde(default)]
    credential: Option<Spanned<String>>,
    #[serde(default)]
    task: Option<Spanned<String>>,
    #[serde(default)]
    scopes: Vec<Spanned<String>>,
    #[serde(default)]
    reason: Option<Spanned<String>>,
    #[serde(default)]
    expires: Option<Spanned<toml::Value>>,
    #[serde(default)]
    origin: Option<Spanned<String>>,
    #[serde(default)]
    runner: Option<Spanned<String>>,
    #[serde(default)]
    variable: Option<Spanned<String>>,
}

/// Turn serde's wording into ours, with a "did you mean" where one is close.
fn rewrite_toml_message(msg: &str) -> String {
    let msg = msg.trim_end();
    let names = |rest: &str| -> Vec<String> {
        rest.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_owned)
            .collect()
    };
    for (prefix, what) in [("unknown field `", "key"), ("unknown variant `", "value")] {
        if let Some(rest) = msg.strip_prefix(prefix) {
            let Some((word, after)) = rest.split_once('`') else {
                break;
            };
            let expected = names(after);
            let list = expected
                .iter()
                .map(|e| format!("`{e}`"))
                .collect::<Vec<_>>()
                .join(", ");
            return match did_you_mean(word, expected.iter().map(String::as_str)) {
                Some(m) => format!("unknown {what} `{word}`; did you mean `{m}`?"),
                None if expected.is_empty() => format!("unknown {what} `{word}`; remove it"),
                None => format!("unknown {what} `{word}`; expected one of {list}"),
            };
        }
    }
    if msg == "wanted string or table" {
        // toml's wording for a non-string where one of a fixed set of words is expected.
        return "invalid type: expected a quoted string (see docs/lint-rules.md for the allowed values)".to_owned();
    }
    if let Some(rest) = msg.strip_prefix("missing field `") {
        if let Some((word, _)) = rest.split_once('`') {
            return format!("missing key `{word}`; add it");
        }
    }
    msg.to_owned()
}

/// Where a scope was written, for the message of an `invalid-scope` problem: formatted only
/// when there is one, not once per entry of a large policy.
#[derive(Clone, Copy)]
enum Where<'a> {
    Catalog(&'a str),
    Credential(&'a str),
    Task(&'a str),
    Exception,
    CatalogKey,
}

impl std::fmt::Display for Where<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Where::Catalog(k) => write!(f, "`implies` of catalog scope `{k}`"),
            Where::Credential(n) => write!(f, "credential `{n}`"),
            Where::Task(n) => write!(f, "the needs of task `{n}`"),
            Where::Exception => f.write_str("an exception"),
            Where::CatalogKey => f.write_str("the scope catalog"),
        }
    }
}

struct Ctx<'a> {
    path: &'a str,
    source: &'a str,
    /// Which name rule holds: a stored policy keeps the one it was written under.
    names: Names,
    problems: Vec<Problem>,
    /// Every scope parsed so far, by text: a scope written many times (a task's need and the
    /// credential that grants it) is one shared text in the model.
    scopes: FxHashMap<&'a str, Scope>,
}

impl<'a> Ctx<'a> {
    fn err(&self, span: Range<usize>, message: String) -> PolicyError {
        PolicyError::invalid(self.path, self.source, span, message)
    }

    /// Parse a scope; an invalid one becomes an `invalid-scope` problem and is left out.
    fn scope(
        &mut self,
        s: &'a Spanned<String>,
        where_: Where<'_>,
        credential: Option<&str>,
        task: Option<&str>,
    ) -> Option<Sp<Scope>> {
        if let Some(v) = self.scopes.get(s.get_ref().as_str()) {
            return Some(Sp {
                value: v.clone(),
                span: s.span(),
            });
        }
        let parsed = match self.names {
            Names::New => Scope::parse(s.get_ref()),
            Names::Stored => Scope::parse_stored(s.get_ref()),
        };
        match parsed {
            Ok(v) => {
                self.scopes.insert(s.get_ref(), v.clone());
                Some(Sp {
                    value: v,
                    span: s.span(),
                })
            }
            Err(e) => {
                self.problems.push(Problem {
                    rule: RuleId::InvalidScope,
                    span: s.span(),
                    message: format!("invalid scope `{}` in {where_}", shown_scope(s.get_ref())),
                    help: e.to_string(),
                    credential: credential.map(str::to_owned),
                    task: task.map(str::to_owned),
                    scopes: vec![shown_scope(s.get_ref())],
                });
                None
            }
        }
    }

    /// The entries of `list` but repeats (the same text again). New text is refused at the
    /// first repeat, naming it: a repeat adds nothing, and each listing of a credential made a
    /// finding of its own, so one short name listed 200,000 times in a 1 MB policy made a
    /// 105 MB report (twenty-fourth pass). A stored policy is read as it was written, its
    /// repeats left out, so a vault applied before still opens.
    fn once<'l>(
        &self,
        list: &'l [Spanned<String>],
        what: &str,
        of: impl Fn() -> String,
    ) -> Result<Vec<&'l Spanned<String>>, PolicyError> {
        let mut seen = FxHashSet::default();
        seen.reserve(list.len());
        let mut out = Vec::with_capacity(list.len());
        for e in list {
            if seen.insert(e.get_ref().as_str()) {
                out.push(e);
            } else if self.names == Names::New {
                return Err(self.err(
                    e.span(),
                    format!(
                        "{what} `{}` is listed twice in {}; remove the repeat (a list names each entry once)",
                        shown_scope(e.get_ref()),
                        of()
                    ),
                ));
            }
        }
        Ok(out)
    }

    fn name(&self, n: &Spanned<String>, what: &str) -> Result<String, PolicyError> {
        let v = n.get_ref();
        if self.names == Names::New && v.starts_with('-') && super::is_stored_name(v) {
            return Err(self.err(
                n.span(),
                format!(
                    "invalid {what} name {v:?}: a name may not start with `-`, which a command line reads as an option (`--{what} {v}`); rename it, e.g. {:?}",
                    v.trim_start_matches('-')
                ),
            ));
        }
        let valid = match self.names {
            Names::New => super::is_valid_name(v),
            Names::Stored => super::is_stored_name(v),
        };
        if !valid {
            return Err(self.err(
                n.span(),
                format!("invalid {what} name {v:?}; use {}", super::NAME_RULE),
            ));
        }
        Ok(v.clone())
    }

    fn duration(&self, d: &Spanned<String>) -> Result<Sp<time::Duration>, PolicyError> {
        match parse_duration(d.get_ref()) {
            Ok(v) => Ok(Sp {
                value: v,
                span: d.span(),
            }),
            Err(DurationError::TooLarge { unit }) => Err(self.err(
                d.span(),
                format!(
                    "duration {:?} is too large; the largest accepted is \"{}\"",
                    d.get_ref(),
                    DurationError::largest(unit)
                ),
            )),
            Err(DurationError::NotADuration) => Err(self.err(
                d.span(),
                format!(
                    "invalid duration {:?}; write a positive whole number followed by d (days), w (weeks) or h (hours), e.g. \"90d\"",
                    d.get_ref()
                ),
            )),
        }
    }

    fn origin(&self, o: &Spanned<String>) -> Result<Sp<String>, PolicyError> {
        // Findings copy origins once per (task, credential) pair, so new policy text holds
        // them to a length (twenty-fourth pass); a stored policy is read as it was written.
        if self.names == Names::New && o.get_ref().len() > MAX_ORIGIN_BYTES {
            return Err(self.err(
                o.span(),
                format!(
                    "origin of {} bytes, longer than the {MAX_ORIGIN_BYTES} bytes an origin may have (a 253-character host name with its scheme and port fits); write scheme://host[:port], e.g. \"https://shop.example.com\"",
                    o.get_ref().len()
                ),
            ));
        }
        match normalise_origin(o.get_ref()) {
            Some(v) => Ok(Sp {
                value: v,
                span: o.span(),
            }),
            None => Err(self.err(
                o.span(),
                format!(
                    "invalid origin {:?}; write scheme://host[:port] (a port from 1 to 65535), e.g. \"https://shop.example.com\"",
                    o.get_ref()
                ),
            )),
        }
    }

    fn principal(&self, p: &Spanned<String>, what: &str) -> Result<Sp<String>, PolicyError> {
        let v = p.get_ref();
        let ok = !v.is_empty()
            && v.len() <= 64
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-$".contains(&b));
        if !ok {
            return Err(self.err(
                p.span(),
                format!("invalid {what} {v:?}; give a {what} name or a numeric id"),
            ));
        }
        Ok(Sp {
            value: v.clone(),
            span: p.span(),
        })
    }
}

/// The longest origin, as written, that new policy text accepts: `https://`, a host name of
/// 253 characters (the most [`is_host_name`] allows) and a port fit.
pub(crate) const MAX_ORIGIN_BYTES: usize = 300;

/// Most bytes of scopes and origins the lint compares, and its findings may name, over every
/// (task, listed credential) pair: each pair counts the credential's effective scopes and
/// origins and the task's needs and origin, by the bytes of their text. (Short scopes are
/// bounded by the count of scopes compared, [`MAX_EXPANSION`], first.) With scopes of at most [`MAX_SCOPE_BYTES`], what one finding holds beyond a
/// fixed template and names is at most a few times what its pair was charged.
pub const MAX_COMPARED_BYTES: usize = 200_000_000;

/// A scope as an `invalid-scope` finding quotes it: in full up to [`MAX_SCOPE_BYTES`], else its
/// first 64 characters and `…`, so a scope of a megabyte costs the report a line, not a
/// megabyte per copy.
fn shown_scope(s: &str) -> String {
    if s.len() <= MAX_SCOPE_BYTES {
        return s.to_owned();
    }
    let cut: String = s.chars().take(64).collect();
    format!("{cut}…")
}

/// The most units a duration counts ([`parse_duration`]): `100000h`, `100000d`, `100000w`.
pub(crate) const MAX_DURATION_COUNT: u32 = 100_000;

/// Why a text is not a duration ([`parse_duration`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DurationError {
    /// Not a positive whole number followed by `h`, `d` or `w`.
    NotADuration,
    /// A well-formed duration over [`MAX_DURATION_COUNT`] of its unit.
    TooLarge {
        /// The unit given (`h`, `d` or `w`).
        unit: char,
    },
}

impl DurationError {
    /// The largest duration accepted in the unit given (`100000w`), for a message.
    pub(crate) fn largest(unit: char) -> String {
        format!("{MAX_DURATION_COUNT}{unit}")
    }
}

/// What is wrong, without the text refused (a usage error never quotes a value typed:
/// README, "Exit codes"), for a command-line option (`lint --since`, `publish --valid-for`)
/// to follow its name with; a duration over the bound names the largest accepted.
impl std::fmt::Display for DurationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DurationError::NotADuration => f.write_str(
                "not a duration; write a positive whole number followed by h (hours), d (days) or w (weeks), e.g. 30d, 12h, 2w",
            ),
            DurationError::TooLarge { unit } => write!(
                f,
                "too large; the largest accepted is {}",
                DurationError::largest(*unit)
            ),
        }
    }
}

/// `90d`, `2w`, `12h` → a duration: a positive whole number (ASCII digits only) of at most
/// [`MAX_DURATION_COUNT`] followed by `h`, `d` or `w`. A well-formed one over the bound is
/// [`DurationError::TooLarge`], so that it is not told it is mistyped (twenty-fifth pass).
pub(crate) fn parse_duration(s: &str) -> Result<time::Duration, DurationError> {
    let unit = s.chars().last().ok_or(DurationError::NotADuration)?;
    let digits = &s[..s.len() - unit.len_utf8()];
    if !matches!(unit, 'h' | 'd' | 'w')
        || digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
    {
        return Err(DurationError::NotADuration);
    }
    // Leading zeros counted away, so that the length judges the size before any parse.
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Err(DurationError::NotADuration);
    }
    let n = match digits.parse::<u32>() {
        Ok(n) if digits.len() <= 6 && n <= MAX_DURATION_COUNT => i64::from(n),
        _ => return Err(DurationError::TooLarge { unit }),
    };
    Ok(match unit {
        'd' => time::Duration::days(n),
        'w' => time::Duration::weeks(n),
        _ => time::Duration::hours(n),
    })
}

/// The canonical text of a duration: whole weeks are not folded, days stay days.
pub(crate) fn format_duration(d: time::Duration) -> String {
    if d.whole_hours() % 24 == 0 {
        format!("{}d", d.whole_days())
    } else {
        format!("{}h", d.whole_hours())
    }
}

/// `HTTPS://Shop.example.com/` → `https://shop.example.com`; `None` if not
/// `scheme://host[:port]` (one trailing `/` is dropped). The scheme is a letter, then letters,
/// digits, `+`, `-`, `.` (RFC 3986, 3.1); the host a name ([`is_host_name`]: labels of ASCII
/// letters, digits, `-`, `_`, none empty or starting or ending with `-`), an IPv4 address or
/// an IPv6 literal in brackets, each written as a browser writes it (the WHATWG URL standard):
/// an IPv6 literal compressed, lowercase, without a dotted tail ([`ipv6_text`]:
/// `[0:0:0:0:0:0:0:1]` is `[::1]`, `[::ffff:127.0.0.1]` is `[::ffff:7f00:1]`), and for a
/// special scheme (`http`, `https`, `ws`, `wss`, `ftp`, `file`) a host whose last label is a
/// number read as an IPv4 address and written dotted ([`ipv4_text`]: `0x7f.1`, `2130706433`
/// and `127.0.0.1.` are `127.0.0.1`; `a.1` or `1.2.3.256`, which a browser refuses, is
/// refused); the port, if given, a decimal number from 1 to 65535 (leading zeros are read
/// away, as a browser does: `:0443` is `:443`), and left out when it is the scheme's default
/// (443 for `https` and `wss`, 80 for `http` and `ws`, 21 for `ftp`: `https://x.example:443` is `https://x.example`, as a
/// browser writes the origin). A user (`user@`), a path,
/// a query or a fragment is no part of an origin: such a text is refused. The one rule of the
/// policy, `cred add --origin` and `cred import` (docs/operations.md). Before the twentieth
/// pass only the characters were checked: `https://a.example:99999`, `https://:443` and
/// `https://a:b:c` were origins no browser can have; before the twenty-first, a default port
/// was kept, so one origin had two texts that compared unequal, and so had an IP literal
/// (`[::1]` and `[0::1]`, `127.0.0.1` and `127.1`).
pub(crate) fn normalise_origin(s: &str) -> Option<String> {
    let (scheme, rest) = s.split_once("://")?;
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let scheme_ok = scheme
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b));
    if !scheme_ok {
        return None;
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(inner) => {
            let (literal, after) = inner.split_once(']')?;
            let ok = literal.contains(':')
                && literal
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b":.".contains(&b));
            if !ok {
                return None;
            }
            let addr: std::net::Ipv6Addr = literal.parse().ok()?;
            (format!("[{}]", ipv6_text(addr)), after)
        }
        None => {
            let (host, after) = rest.split_at(rest.find(':').unwrap_or(rest.len()));
            let host = host.to_ascii_lowercase();
            // A browser reads the host of a special scheme whose last label is a number as an
            // IPv4 address (`0x7f.1`, `2130706433`, `127.0.0.1.` are `127.0.0.1`), or refuses
            // the URL; another scheme's host is a name as written.
            let special = ["http", "https", "ws", "wss", "ftp", "file"]
                .contains(&scheme.to_ascii_lowercase().as_str());
            if special && ends_in_a_number(&host) {
                (ipv4_text(&host)?, after)
            } else {
                (is_host_name(&host).then_some(host)?, after)
            }
        }
    };
    let origin = format!("{scheme}://{host}");
    let origin = match port {
        "" => origin,
        p => {
            let digits = p.strip_prefix(':')?;
            if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit())
            {
                return None;
            }
            let n: u32 = digits.parse().ok()?;
            if !(1..=65535).contains(&n) {
                return None;
            }
            // A browser's origin leaves the scheme's default port out: `https://x:443` is
            // `https://x`, and one origin has one text wherever it is compared. The special
            // schemes' defaults, as WHATWG's URL standard lists them (`wss://x:443` is
            // `wss://x` too: twenty-first pass, found by attacking this pass's fixes).
            let default = match scheme.to_ascii_lowercase().as_str() {
                "https" | "wss" => Some(443),
                "http" | "ws" => Some(80),
                "ftp" => Some(21),
                _ => None,
            };
            if default == Some(n) {
                origin
            } else {
                format!("{origin}:{n}")
            }
        }
    };
    Some(origin.to_ascii_lowercase())
}

/// An IPv6 address as a browser serialises it (the WHATWG URL standard, "IPv6 serializer"):
/// lowercase hexadecimal pieces without leading zeros, the first longest run of two or more
/// zero pieces written `::`, and no dotted tail (`::ffff:127.0.0.1` is `::ffff:7f00:1`, where
/// `Ipv6Addr`'s `Display` would keep the dots).
fn ipv6_text(addr: std::net::Ipv6Addr) -> String {
    let pieces = addr.segments();
    // The first longest run of zero pieces, if it is two pieces or more.
    let (mut best, mut run) = (None::<(usize, usize)>, None::<(usize, usize)>);
    for (i, &p) in pieces.iter().enumerate() {
        if p == 0 {
            let (start, len) = run.map_or((i, 1), |(s, l)| (s, l + 1));
            run = Some((start, len));
            if len >= 2 && best.is_none_or(|(_, l)| len > l) {
                best = Some((start, len));
            }
        } else {
            run = None;
        }
    }
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        if let Some((start, len)) = best.filter(|&(s, _)| s == i) {
            out.push_str(if start == 0 { "::" } else { ":" });
            i += len;
            continue;
        }
        out.push_str(&format!("{:x}", pieces[i]));
        if i != 7 {
            out.push(':');
        }
        i += 1;
    }
    out
}

/// The WHATWG URL standard's "ends in a number" check on a (lowercase) host: its last label,
/// after one trailing empty label is dropped, is all decimal digits or an IPv4 number
/// (`0x7f`, `0x`, `017`). Such a host is an IPv4 address to a browser, or no host at all.
fn ends_in_a_number(host: &str) -> bool {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.last() == Some(&"") {
        if parts.len() == 1 {
            return false;
        }
        parts.pop();
    }
    let last = parts.last().copied().unwrap_or("");
    (!last.is_empty() && last.bytes().all(|b| b.is_ascii_digit())) || ipv4_number(last).is_some()
}

/// An IPv4 number of the WHATWG URL standard: `0x` then hexadecimal, else `0` then octal,
/// else decimal; `0x` alone is 0. The value saturates: anything over 2^32 is refused later,
/// as the standard refuses it, while its digits still make the label a number.
fn ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() >= 2 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    digits.chars().try_fold(0u64, |n, c| {
        let d = c.to_digit(radix)?;
        Some(
            n.saturating_mul(u64::from(radix))
                .saturating_add(u64::from(d)),
        )
    })
}

/// The WHATWG URL standard's IPv4 parser, the address written dotted: up to four parts (one
/// trailing empty part dropped), each an [`ipv4_number`], all but the last at most 255, the
/// last filling the bytes left (`127.1` is `127.0.0.1`, `2130706433` is `127.0.0.1`).
/// `None` where a browser refuses the URL (`1.2.3.256`, `a.1`, `1..2`).
fn ipv4_text(host: &str) -> Option<String> {
    let mut parts: Vec<&str> = host.split('.').collect();
    if parts.last() == Some(&"") && parts.len() > 1 {
        parts.pop();
    }
    if parts.len() > 4 {
        return None;
    }
    let numbers = parts
        .iter()
        .map(|p| ipv4_number(p))
        .collect::<Option<Vec<u64>>>()?;
    let (last, first) = numbers.split_last()?;
    if first.iter().any(|&n| n > 255) || *last >= 1u64 << (8 * (5 - numbers.len())) {
        return None;
    }
    let address = first
        .iter()
        .enumerate()
        .fold(*last, |a, (i, &n)| a + (n << (8 * (3 - i))));
    Some(std::net::Ipv4Addr::from(u32::try_from(address).ok()?).to_string())
}

/// A host name as a browser can reach it: dot-separated labels of 1 to 63 ASCII letters,
/// digits, `-` and `_`, none starting or ending with `-`, 253 characters at most; no empty
/// label (`a..b`, a leading or trailing dot). Before the twentieth pass (found by attacking that
/// pass's fixes) only the characters were checked: `https://-.example` and `https://a..b` were
/// origins.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        })
}

fn parse_date(v: &Spanned<toml::Value>, ctx: &Ctx<'_>) -> Result<Sp<time::Date>, PolicyError> {
    let fmt = time::macros::format_description!("[year]-[month]-[day]");
    let text = match v.get_ref() {
        toml::Value::String(s) => s.clone(),
        toml::Value::Datetime(d) if d.time.is_none() && d.offset.is_none() => d.to_string(),
        _ => String::new(),
    };
    match time::Date::parse(&text, &fmt) {
        Ok(d) if text.len() == 10 => Ok(Sp {
            value: d,
            span: v.span(),
        }),
        _ => Err(ctx.err(
            v.span(),
            format!(
                "invalid date {}; write an ISO 8601 date YYYY-MM-DD, e.g. \"2027-03-01\"",
                v.get_ref()
            ),
        )),
    }
}

/// The name rule a parse holds names to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    /// [`super::is_valid_name`]: policy text being linted, applied or published.
    New,
    /// [`super::is_stored_name`]: a policy a vault already stores, written under the rule
    /// before the twenty-second pass (a leading `-` allowed), which must still open.
    Stored,
}

pub(crate) fn parse(source: &str, path: &str, names: Names) -> Result<Policy, PolicyError> {
    parse_within(source, path, names, MAX_STEPS)
}

/// [`parse`] with `max_steps` for the expansions' step budget (tests give a small one).
pub(crate) fn parse_within(
    source: &str,
    path: &str,
    names: Names,
    max_steps: u64,
) -> Result<Policy, PolicyError> {
    let is_blank = source
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if is_blank {
        return Err(PolicyError::invalid(
            path,
            source,
            0..0,
            "the policy is empty; start it with `version = 1` (see examples/policy.toml)"
                .to_owned(),
        ));
    }
    let raw: RawPolicy = toml::from_str(source).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        PolicyError::invalid(path, source, span, rewrite_toml_message(e.message()))
    })?;
    // The long-lived model is built on a short-lived thread, from copies of the raw tree's
    // strings. Its allocations then sit together in that thread's (fresh or emptied) glibc
    // arena, apart from the parse temporaries (the TOML tree and the raw structs, ten times
    // the size of the model) in this thread's arena, which become one free stretch once `raw`
    // is dropped and go back to the kernel on the next `malloc_trim`. Built here, the model's
    // small allocations were strewn across the pages the parse had used: a policy of 10,000
    // credentials and tasks kept ~35 MiB resident for under 7 MB of live data. If no thread
    // can be started, the model is built here.
    let built = std::thread::scope(|s| {
        std::thread::Builder::new()
            .name("policy-build".to_owned())
            .spawn_scoped(s, || build(&raw, source, path, names, max_steps))
            .ok()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
    });
    match built {
        Some(policy) => policy,
        None => build(&raw, source, path, names, max_steps),
    }
}

/// The model from the raw tree: validation, then copies into compact long-lived form.
fn build<'a>(
    raw: &'a RawPolicy,
    source: &'a str,
    path: &'a str,
    names: Names,
    max_steps: u64,
) -> Result<Policy, PolicyError> {
    let mut ctx = Ctx {
        path,
        source,
        names,
        problems: Vec::new(),
        scopes: FxHashMap::default(),
    };
    if *raw.version.get_ref() != 1 {
        return Err(ctx.err(
            raw.version.span(),
            format!(
                "unsupported policy version {}; this scopevault reads `version = 1`",
                raw.version.get_ref()
            ),
        ));
    }
    let (enforce, max_age) = match &raw.settings {
        None => (Enforce::Warn, None),
        Some(s) => {
            let s = s.get_ref();
            let max_age = match &s.max_credential_age {
                Some(d) => Some(ctx.duration(d)?),
                None => None,
            };
            (
                s.enforce.as_ref().map_or(Enforce::Warn, |e| *e.get_ref()),
                max_age,
            )
        }
    };

    let mut catalog = BTreeMap::new();
    for (key, entry) in &raw.scopes {
        let Some(scope) = ctx.scope(key, Where::CatalogKey, None, None) else {
            continue;
        };
        let e = entry.get_ref();
        let where_ = Where::Catalog(key.get_ref());
        let implies = ctx
            .once(&e.implies, "scope", || {
                format!("the `implies` of catalog scope `{}`", key.get_ref())
            })?
            .into_iter()
            .filter_map(|s| ctx.scope(s, where_, None, None))
            .collect();
        catalog.insert(
            scope.value.to_string(),
            CatalogEntry {
                scope: scope.value.clone(),
                span: key.span(),
                risk: e.risk.unwrap_or(Risk::Medium),
                implies,
                description: e.description.clone(),
            },
        );
    }

    // The model is built entry by entry into vectors sorted by name that become the maps in
    // one bulk build (full tree nodes, no per-entry tree insertion). Strings are copied out of
    // the raw tree, not moved: see `parse` on where the model is allocated.
    let mut credentials = Vec::with_capacity(raw.credentials.0.len());
    for (key, c) in &raw.credentials.0 {
        let name = ctx.name(key, "credential")?;
        let c = c.get_ref();
        let where_ = Where::Credential(&name);
        let scopes = ctx
            .once(&c.scopes, "scope", || {
                format!("the `scopes` of credential `{name}`")
            })?
            .into_iter()
            .filter_map(|s| ctx.scope(s, where_, Some(&name), None))
            .collect();
        let origins = ctx
            .once(&c.origins, "origin", || {
                format!("the `origins` of credential `{name}`")
            })?
            .into_iter()
            .map(|o| ctx.origin(o))
            .collect::<Result<_, _>>()?;
        let rotate_every = match &c.rotate_every {
            Some(d) => Some(Box::new(ctx.duration(d)?)),
            None => None,
        };
        credentials.push((
            name,
            CredentialDecl {
                span: key.span(),
                kind: Sp {
                    value: *c.kind.get_ref(),
                    span: c.kind.span(),
                },
                scopes,
                origins,
                owner: c.owner.as_deref().map(Box::from),
                rotate_every,
                effective: Box::default(),
            },
        ));
    }

    let mut tasks = Vec::with_capacity(raw.tasks.0.len());
    for (key, t) in &raw.tasks.0 {
        let name = ctx.name(key, "task")?;
        let t = t.get_ref();
        let where_ = Where::Task(&name);
        let needs = ctx
            .once(&t.needs, "scope", || {
                format!("the `needs` of task `{name}`")
            })?
            .into_iter()
            .filter_map(|s| ctx.scope(s, where_, None, Some(&name)))
            .collect();
        let creds = ctx
            .once(&t.credentials, "credential", || {
                format!("the `credentials` of task `{name}`")
            })?
            .into_iter()
            .map(|c| {
                let span = c.span();
                Ok(Sp {
                    value: ctx.name(c, "credential")?,
                    span,
                })
            })
            .collect::<Result<_, PolicyError>>()?;
        let runners = match &t.runners {
            None => None,
            Some(r) => {
                let span = r.span();
                let rr = r.get_ref();
                Some(Box::new(Runners {
                    span,
                    users: ctx
                        .once(&rr.users, "user", || {
                            format!("the `runners` users of task `{name}`")
                        })?
                        .into_iter()
                        .map(|u| ctx.principal(u, "user"))
                        .collect::<Result<_, _>>()?,
                    groups: ctx
                        .once(&rr.groups, "group", || {
                            format!("the `runners` groups of task `{name}`")
                        })?
                        .into_iter()
                        .map(|g| ctx.principal(g, "group"))
                        .collect::<Result<_, _>>()?,
                }))
            }
        };
        let origin = match &t.origin {
            Some(o) => Some(Box::new(ctx.origin(o)?)),
            None => None,
        };
        let locations = ctx
            .once(&t.locations, "location", || {
                format!("the `locations` of task `{name}`")
            })?
            .into_iter()
            .map(|l| {
                let span = l.span();
                Ok(Sp {
                    value: ctx.name(l, "location")?,
                    span,
                })
            })
            .collect::<Result<_, PolicyError>>()?;
        // Users as runners' users are: names or numeric uids, resolved by the daemon.
        let schedulers = match &t.schedulers {
            None => None,
            Some(s) => Some(Box::new(Sp {
                span: s.span(),
                value: s
                    .get_ref()
                    .iter()
                    .map(|u| ctx.principal(u, "user"))
                    .collect::<Result<_, _>>()?,
            })),
        };
        tasks.push((
            name,
            Task {
                span: key.span(),
                needs,
                credentials: creds,
                runners,
                origin,
                locations,
                schedulers,
            },
        ));
    }

    let mut locations = BTreeMap::new();
    for (key, l) in &raw.locations.0 {
        let name = ctx.name(key, "location")?;
        let r = &l.get_ref().recipient;
        locations.insert(
            name,
            Location {
                span: key.span(),
                recipient: Sp {
                    value: r.get_ref().clone(),
                    span: r.span(),
                },
            },
        );
    }

    let mut exceptions = Vec::new();
    for ex in &raw.exceptions {
        let e = ex.get_ref();
        let expires = match &e.expires {
            Some(v) => Some(parse_date(v, &ctx)?),
            None => None,
        };
        let sp = |s: &Spanned<String>| Sp {
            value: s.get_ref().clone(),
            span: s.span(),
        };
        let cred = e.credential.as_ref().map(sp);
        let task = e.task.as_ref().map(sp);
        // A stored exception keeps its scopes as written: dropping a repeat could change
        // what it matches.
        if names == Names::New {
            ctx.once(&e.scopes, "scope", || {
                "the `scopes` of an exception".to_owned()
            })?;
        }
        let written = e.scopes.len();
        let scopes: Vec<Sp<Scope>> = e
            .scopes
            .iter()
            .filter_map(|s| {
                ctx.scope(
                    s,
                    Where::Exception,
                    cred.as_ref().map(|c| c.value.as_str()),
                    task.as_ref().map(|t| t.value.as_str()),
                )
            })
            .collect();
        // What tells the finding from the others of its rule with the same credential, task
        // and scopes: the task's origin of an `origin-mismatch`, the runner of a
        // `runner-never-seen`, the variable of an `env-name-collision` (twenty-fourth pass).
        let mut subject = None;
        for (key, v) in [
            (SubjectKey::Origin, &e.origin),
            (SubjectKey::Runner, &e.runner),
            (SubjectKey::Variable, &e.variable),
        ] {
            let Some(v) = v else { continue };
            if subject.is_some() {
                return Err(ctx.err(
                    v.span(),
                    "an exception names at most one of `origin`, `runner` and `variable` (the one its rule's findings have)".to_owned(),
                ));
            }
            let value = match key {
                SubjectKey::Origin => ctx.origin(v)?,
                _ => sp(v),
            };
            subject = Some((key, value));
        }
        exceptions.push(Exception {
            subject,
            // Dropping an invalid scope would make the exception match a narrower finding.
            scopes_invalid: scopes.len() != written,
            span: ex.span(),
            rule: sp(&e.rule),
            credential: cred,
            task,
            scopes,
            reason: e.reason.as_ref().map(sp),
            expires,
        });
    }

    let high_risk = super::high_risk::HighRiskIndex::new(
        catalog
            .values()
            .filter(|e| e.risk == Risk::High)
            .map(|e| e.scope.as_str()),
    );
    let mut policy = Policy {
        path: path.to_owned(),
        source: source.into(),
        enforce,
        max_credential_age: max_age,
        catalog,
        credentials: credentials.into_iter().collect(),
        tasks: tasks.into_iter().collect(),
        exceptions,
        locations,
        problems: ctx.problems,
        graph: Default::default(),
        expansion_steps: 0,
        compared_bytes: 0,
        high_risk,
    };
    build_graph(&mut policy)?;
    // Expanded scopes share their text with the declared and catalog scopes. The total of
    // every credential's and task's expansion is bounded (MAX_EXPANSION), so a catalog built
    // to make each of many credentials reach a long chain is refused, pointing at the place
    // where the budget ran out, instead of running CI out of time or memory.
    let mut budget = MAX_EXPANSION;
    let over = |what: String, span: Range<usize>| {
        PolicyError::invalid(
            path,
            source,
            span,
            format!(
                "{what}: through the scope catalog's `implies`, this policy's credentials and tasks expand to more than {MAX_EXPANSION} scopes in total; shorten the `implies` chains, or split the policy"
            ),
        )
    };
    // Every step of the expansions (scopes and catalog keys looked at, graph nodes and edges
    // walked, memoised scopes copied) counts against MAX_STEPS, so a catalog built to make
    // the expansions walk far while producing little is refused too, at the credential or
    // task where the budget ran out.
    let too_long = |what: String, span: Range<usize>| {
        PolicyError::invalid(
            path,
            source,
            span,
            format!(
                "{what}: through the scope catalog's `implies`, expanding this policy's credentials and tasks takes more than {max_steps} steps (scopes and catalog keys looked at, `implies` entries followed); imply narrower scopes, shorten the `implies` chains, or split the policy"
            ),
        )
    };
    let mut steps = 0u64;
    // Each distinct declared scope is expanded once, and its closure kept: a thousand
    // credentials holding `*` walk the graph once between them.
    if !policy.graph.is_trivial() {
        let mut memo: FxHashMap<Box<str>, Box<[u32]>> = FxHashMap::default();
        let declared = policy
            .credentials
            .iter()
            .map(|(n, c)| (n, "credential", &c.span, &c.scopes))
            .chain(
                policy
                    .tasks
                    .iter()
                    .map(|(n, t)| (n, "task", &t.span, &t.needs)),
            );
        for (name, what, span, scopes) in declared {
            for s in scopes.iter() {
                if memo.contains_key(s.value.as_str()) {
                    continue;
                }
                let (reached, n) = policy.reached_from(&s.value);
                if !charge(&mut steps, max_steps, n) {
                    return Err(too_long(format!("{what} `{name}`"), span.clone()));
                }
                memo.insert(s.value.as_str().into(), reached);
            }
        }
        policy.graph.set_memo(memo);
    }
    let mut effective: Vec<Box<[Scope]>> = Vec::with_capacity(policy.credentials.len());
    for (name, c) in &policy.credentials {
        let (eff, n) = policy.expand_refs_counted(&c.scopes);
        if !charge(&mut steps, max_steps, n) {
            return Err(too_long(format!("credential `{name}`"), c.span.clone()));
        }
        let eff: Vec<Scope> = eff.into_iter().cloned().collect();
        budget = budget
            .checked_sub(eff.len())
            .ok_or_else(|| over(format!("credential `{name}`"), c.span.clone()))?;
        effective.push(eff.into_boxed_slice());
    }
    if !policy.graph.is_trivial() {
        for (name, t) in &policy.tasks {
            let mut n = 0usize;
            if !charge(
                &mut steps,
                max_steps,
                policy.expand_each(&t.needs, |_| n += 1),
            ) {
                return Err(too_long(format!("task `{name}`"), t.span.clone()));
            }
            budget = budget
                .checked_sub(n)
                .ok_or_else(|| over(format!("task `{name}`"), t.span.clone()))?;
        }
    }
    // The lint compares every task with every credential it lists, scope by scope: that work
    // (and the findings listing the excess) is bounded the same way, so a few credentials with
    // many scopes listed by many tasks cannot run CI out of memory either.
    //
    // The findings of a pair copy its text too (the excess scopes, the task's needs, the
    // origins), so the bytes of that text are charged to a budget of their own,
    // MAX_COMPARED_BYTES: counting scopes alone let one scope of a megabyte listed by 500
    // tasks make a gigabyte of report (twenty-fourth pass).
    let origin_bytes =
        |o: &[Sp<String>]| -> usize { o.iter().map(|o| o.value.len()).sum::<usize>() };
    let sizes: FxHashMap<&str, (usize, usize)> = policy
        .credentials
        .iter()
        .zip(effective.iter())
        .map(|((n, c), e)| {
            let bytes =
                e.iter().map(|s| s.as_str().len()).sum::<usize>() + origin_bytes(&c.origins);
            (n.as_str(), (e.len(), bytes))
        })
        .collect();
    let mut pairs = MAX_EXPANSION;
    let mut compared = MAX_COMPARED_BYTES;
    for (name, t) in &policy.tasks {
        let task_bytes = t
            .needs
            .iter()
            .map(|n| n.value.as_str().len())
            .sum::<usize>()
            + t.origin.as_ref().map_or(0, |o| o.value.len());
        for c in &t.credentials {
            let (n, bytes) = sizes.get(c.value.as_str()).copied().unwrap_or((0, 0));
            compared = compared.checked_sub(bytes + task_bytes).ok_or_else(|| {
                PolicyError::invalid(
                    path,
                    source,
                    c.span.clone(),
                    format!(
                        "task `{name}`: the tasks' credentials, needs and origins compared add up to more than {MAX_COMPARED_BYTES} bytes of scopes and origins (each task counts the scopes and origins of every credential it lists, and its own needs and origin, once per credential, as the lint compares them and its findings name them); give tasks narrower credentials, or split the policy"
                    ),
                )
            })?;
            pairs = pairs.checked_sub(n).ok_or_else(|| {
                PolicyError::invalid(
                    path,
                    source,
                    c.span.clone(),
                    format!(
                        "task `{name}`: the tasks' credentials grant more than {MAX_EXPANSION} scopes in total (each task counts every scope of every credential it lists, as the lint compares them); give tasks narrower credentials, or split the policy"
                    ),
                )
            })?;
        }
    }
    for (c, eff) in policy.credentials.values_mut().zip(effective) {
        c.effective = eff;
    }
    policy.expansion_steps = steps;
    policy.compared_bytes = (MAX_COMPARED_BYTES - compared) as u64;
    Ok(policy)
}

/// Add `n` to the expansion steps taken; whether they are still within `max_steps`
/// ([`MAX_STEPS`] but in tests).
fn charge(steps: &mut u64, max_steps: u64, n: u64) -> bool {
    *steps = steps.saturating_add(n);
    *steps <= max_steps
}

/// Build the catalog's `implies` graph and report each cycle once: its strongly connected
/// component, as a shortest cycle through the component's smallest key, at that key's first
/// `implies` entry, naming the component's keys when it has more than that cycle.
fn build_graph(policy: &mut Policy) -> Result<(), PolicyError> {
    let graph = ImpliesGraph::build(policy.catalog.iter(), |s| {
        policy.catalog_granted_by(s).map(|(k, _)| k).collect()
    })
    .map_err(|TooManyEdges(span)| {
        PolicyError::invalid(
            &policy.path,
            &policy.source,
            span,
            format!(
                "the scope catalog's `implies` have more than {MAX_EDGES} edges (a wildcard counts one per catalog key it grants); imply narrower scopes, or split the policy"
            ),
        )
    })?;
    for cycle in graph.cycles() {
        let from = cycle.keys[0];
        let path: Vec<String> = graph
            .cycle_path(from, &cycle)
            .into_iter()
            .map(|n| graph.key_name(n).to_owned())
            .collect();
        let entry = &policy.catalog[graph.key_name(from)];
        // A group of keys that reach one another holds many cycles (n wildcards each implying
        // `*`: n² of them); one shortest cycle stands for it, and when the group is larger than
        // that cycle its keys are named too: each is on a cycle, and removing one entry of the
        // cycle shown may leave the others (twenty-second pass).
        let on_path: FxHashSet<&str> = path.iter().map(String::as_str).collect();
        let group = if cycle.keys.len() > on_path.len() {
            let names: Vec<&str> = cycle.keys.iter().map(|&k| graph.key_name(k)).collect();
            format!(
                "; {} keys reach one another through `implies` (each is on a cycle): {}",
                names.len(),
                super::lint::ticks_listed(&names)
            )
        } else {
            String::new()
        };
        let span = entry
            .implies
            .first()
            .map_or(entry.span.clone(), |i| i.span.clone());
        policy.problems.push(Problem {
            rule: RuleId::ImpliesCycle,
            span,
            message: format!(
                "the scope catalog's `implies` form a cycle: {}{group}",
                path.iter()
                    .map(|p| format!("`{p}`"))
                    .collect::<Vec<_>>()
                    .join(" → ")
            ),
            help: "remove one `implies` entry of the cycle: a scope cannot imply itself".to_owned(),
            credential: None,
            task: None,
            scopes: path,
        });
    }
    policy.graph = graph;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90d"), Ok(time::Duration::days(90)));
        assert_eq!(parse_duration("2w"), Ok(time::Duration::days(14)));
        assert_eq!(parse_duration("12h"), Ok(time::Duration::hours(12)));
        assert_eq!(parse_duration("007d"), Ok(time::Duration::days(7)));
        for bad in [
            "", "d", "0d", "000w", "-1d", "90", "90x", "+9d", "1.5d", "9 d", "1e9d", "٣d", "x",
        ] {
            assert_eq!(
                parse_duration(bad),
                Err(DurationError::NotADuration),
                "{bad}"
            );
        }
    }

    /// Twenty-fifth pass (found by the twenty-fourth pass's review): `1000000w` was "not a
    /// duration", as if mistyped. A well-formed duration over the bound is too large, naming
    /// its unit; the bound itself is accepted.
    #[test]
    fn regression_a_duration_over_the_bound_is_too_large_not_malformed() {
        assert_eq!(
            parse_duration("100000w"),
            Ok(time::Duration::weeks(100_000))
        );
        assert_eq!(
            parse_duration("0000100000h"),
            Ok(time::Duration::hours(100_000))
        );
        for (text, unit) in [
            ("1000000w", 'w'),
            ("100001d", 'd'),
            ("99999999999999999999999999h", 'h'),
        ] {
            assert_eq!(
                parse_duration(text),
                Err(DurationError::TooLarge { unit }),
                "{text}"
            );
        }
        assert_eq!(DurationError::largest('w'), "100000w");
        assert_eq!(format_duration(time::Duration::weeks(2)), "14d");
        assert_eq!(format_duration(time::Duration::hours(36)), "36h");
    }

    #[test]
    fn origins_are_normalised() {
        assert_eq!(
            normalise_origin("HTTPS://Shop.Example.com/").as_deref(),
            Some("https://shop.example.com")
        );
        assert_eq!(normalise_origin("shop.example.com"), None);
        assert_eq!(normalise_origin("https://a b"), None);
    }

    /// Twentieth pass (found by attacking the admin's data paths): `https://a.example:99999`
    /// was an origin (`cred add --origin`, `cred import`, the policy), and so were an empty
    /// host, an empty port and a host of colons: the parser only checked the characters.
    /// An origin is `scheme://host[:port]`, the port a number from 1 to 65535.
    #[test]
    fn an_origin_has_one_host_and_a_port_from_1_to_65535() {
        for (given, origin) in [
            ("https://a.example:1", "https://a.example:1"),
            ("https://a.example:65535/", "https://a.example:65535"),
            ("https://A.example:08443", "https://a.example:8443"),
            ("https://[::1]:8443", "https://[::1]:8443"),
            ("http://[2001:DB8::1]", "http://[2001:db8::1]"),
            ("https://10.0.0.1:8443", "https://10.0.0.1:8443"),
            ("https://under_score.example", "https://under_score.example"),
            ("https://x-1.a-b.example", "https://x-1.a-b.example"),
        ] {
            assert_eq!(normalise_origin(given).as_deref(), Some(origin), "{given}");
        }
        for bad in [
            "https://a.example:99999",
            "https://a.example:65536",
            "https://a.example:0",
            "https://a.example:",
            "https://a.example:-1",
            "https://a.example:+443",
            "https://a.example:4 43",
            "https://a.example:443:1",
            "https://:443",
            "https://::::",
            "https://a:b:c",
            "https://[",
            "https://[]",
            "https://[::1",
            "https://[::1]x",
            "https://[zz::1]",
            "https://...",
            "https://-.example",
            "https://a-.example",
            "https://-a.example",
            "https://a..b",
            "https://.a.example",
            "https://a.example.",
            "https://xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx.example",
            "https://user@a.example",
            "https://a.example/path",
            "https://a.example?q=1",
            "https://a.example#f",
            "1https://a.example",
        ] {
            assert_eq!(normalise_origin(bad), None, "{bad}");
        }
    }

    /// Twenty-first pass (found by the twentieth pass's review): `https://x.example:443` and
    /// `https://x.example` were two origins, so a policy declaring one and a vault entry
    /// stored with the other differed (`vault-differs-from-policy`), and a task's origin
    /// written with the port missed its credential's (`origin-mismatch`). A browser's origin
    /// leaves the scheme's default port out: 443 for https, 80 for http are folded; and (found
    /// by attacking this pass's fixes) 443 for wss, 80 for ws and 21 for ftp, WHATWG's other
    /// special schemes.
    #[test]
    fn a_default_port_is_folded() {
        for (given, origin) in [
            ("https://x.example:443", "https://x.example"),
            ("https://x.example:443/", "https://x.example"),
            ("HTTPS://X.example:443", "https://x.example"),
            ("https://x.example:0443", "https://x.example"),
            ("http://x:80", "http://x"),
            ("HTTP://x:80/", "http://x"),
            ("https://[::1]:443", "https://[::1]"),
            ("http://10.0.0.1:80", "http://10.0.0.1"),
            // Another scheme's default port is a port like any other.
            ("https://x.example:80", "https://x.example:80"),
            ("http://x.example:443", "http://x.example:443"),
            ("https://x.example:4430", "https://x.example:4430"),
            ("wss://x.example:80", "wss://x.example:80"),
            ("wss://x.example:443", "wss://x.example"),
            ("ws://x.example:80", "ws://x.example"),
            ("ftp://x.example:21", "ftp://x.example"),
            ("ssh://x.example:22", "ssh://x.example:22"),
        ] {
            assert_eq!(normalise_origin(given).as_deref(), Some(origin), "{given}");
        }
        // Folded, the two spellings are one origin wherever a policy writes one.
        let p = crate::policy::Policy::parse(
            "version = 1\n\n[credentials.c]\nkind = \"login\"\nscopes = [\"s:x\"]\norigins = [\"https://x.example:443\", \"http://x.example:80\"]\n\n[tasks.t]\nneeds = [\"s:x\"]\ncredentials = [\"c\"]\nrunners = { users = [\"u\"] }\norigin = \"https://x.example\"\n",
            "p.toml",
        )
        .unwrap();
        let c = p.credential("c").unwrap();
        assert_eq!(c.origins(), ["https://x.example", "http://x.example"]);
        assert!(c
            .stored_differences(
                c.kind(),
                &["s:x"],
                &["http://x.example", "https://x.example"]
            )
            .is_empty());
    }

    /// Twenty-first pass (found by attacking this pass's fixes): one browser origin was still
    /// two texts for an IP literal: `https://[::1]` and `https://[0:0:0:0:0:0:0:1]`,
    /// `https://[::ffff:7f00:1]` and `https://[::ffff:127.0.0.1]`, `https://127.0.0.1` and
    /// `https://0x7f.0.0.1`, `https://2130706433` or `https://127.1` compared unequal
    /// (`origin-mismatch`, `vault-differs-from-policy`). An IPv6 literal is written as a
    /// browser serialises it (the WHATWG URL standard), and a host of a special scheme whose
    /// last label is a number is read as a browser reads an IPv4 address and written dotted, or
    /// refused where a browser refuses the URL. Expected values are node's
    /// `new URL(x).origin` ("FAIL" where node throws).
    #[test]
    fn an_ip_literal_has_the_one_text_a_browser_gives_it() {
        for (given, origin) in [
            ("https://[::1]", "https://[::1]"),
            ("https://[0:0:0:0:0:0:0:1]", "https://[::1]"),
            ("https://[0::1]", "https://[::1]"),
            ("https://[::ffff:7f00:1]", "https://[::ffff:7f00:1]"),
            ("https://[::ffff:127.0.0.1]", "https://[::ffff:7f00:1]"),
            ("https://[::FFFF:127.0.0.1]:443", "https://[::ffff:7f00:1]"),
            (
                "https://[2001:db8:0:0:1:0:0:1]",
                "https://[2001:db8::1:0:0:1]",
            ),
            ("https://[2001:0db8::0001]", "https://[2001:db8::1]"),
            ("https://[1:0:0:2:0:0:0:3]", "https://[1:0:0:2::3]"),
            ("https://[::]", "https://[::]"),
            ("https://[0:0:0:0:0:0:0:0]", "https://[::]"),
            ("https://[1::]", "https://[1::]"),
            ("https://[::1.2.3.4]", "https://[::102:304]"),
            ("https://[1:0:3:4:5:6:7:8]", "https://[1:0:3:4:5:6:7:8]"),
            ("https://[1:2:3:4:5:6:7::]", "https://[1:2:3:4:5:6:7:0]"),
            ("https://[::1:2:3:4:5:6:7]", "https://[0:1:2:3:4:5:6:7]"),
            ("https://[1::1.2.3.4]", "https://[1::102:304]"),
            (
                "https://[0:0:0:0:0:ffff:1.2.3.4]",
                "https://[::ffff:102:304]",
            ),
            ("https://[::0:0:1]", "https://[::1]"),
            ("https://127.0.0.1", "https://127.0.0.1"),
            ("https://0x7f.0.0.1", "https://127.0.0.1"),
            ("https://0X7F.0.0.1", "https://127.0.0.1"),
            ("https://2130706433", "https://127.0.0.1"),
            ("https://127.1", "https://127.0.0.1"),
            ("https://0x7f.1", "https://127.0.0.1"),
            ("https://0177.0.0.1", "https://127.0.0.1"),
            ("https://127.0.0.1.", "https://127.0.0.1"),
            ("https://0x", "https://0.0.0.0"),
            ("https://0", "https://0.0.0.0"),
            ("https://00", "https://0.0.0.0"),
            ("https://1.2.3.0x", "https://1.2.3.0"),
            ("https://1.2.65535", "https://1.2.255.255"),
            ("https://4294967295", "https://255.255.255.255"),
            (
                "https://00000000000000000000000000000000000000001.1",
                "https://1.0.0.1",
            ),
            ("wss://0x7f.1", "wss://127.0.0.1"),
            ("http://0x7f.1:80", "http://127.0.0.1"),
            ("https://0x7f.1:8443", "https://127.0.0.1:8443"),
            // A last label that is not a number: a name, as a browser reads it.
            ("https://1.0xg", "https://1.0xg"),
        ] {
            assert_eq!(normalise_origin(given).as_deref(), Some(origin), "{given}");
        }
        for bad in [
            "https://[::01.2.3.4]",
            "https://[::1:2:3:4:5:6:7:8]",
            "https://[12345::1]",
            "https://[::ffff:1.2.3]",
            "https://a.0x",
            "https://a.1",
            "https://example.123",
            "https://1.2.3.4.5",
            "https://256.0.0.1",
            "https://1.2.3.256",
            "https://1.2.65536",
            "https://4294967296",
            "https://08.1.1.1",
            "https://09",
            "https://1..2",
            "https://0x100000000",
            "https://99999999999999999999999",
            "https://a.0xffffffffffffffffffffffffffffffff",
            "https://1e1.1",
        ] {
            assert_eq!(normalise_origin(bad), None, "{bad}");
        }
    }

    #[test]
    fn unknown_key_message_suggests() {
        assert_eq!(
            rewrite_toml_message("unknown field `scope`, expected one of `kind`, `scopes`"),
            "unknown key `scope`; did you mean `scopes`?"
        );
        assert_eq!(
            rewrite_toml_message("unknown field `zzz`, expected `kind` or `scopes`"),
            "unknown key `zzz`; expected one of `kind`, `scopes`"
        );
    }
}
