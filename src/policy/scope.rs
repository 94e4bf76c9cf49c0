//! Scope grammar and matching.
//!
//! A scope is a string of segments `[a-z0-9_-]+` joined by `:`; a final `*` segment is a
//! wildcard that grants its prefix and everything below it (`shop:orders:*` grants
//! `shop:orders`, `shop:orders:read` and `shop:orders:read:own`). `*` alone grants everything.
//!
//! ```
//! use scopevault::policy::Scope;
//! let wide: Scope = "shop:orders:*".parse().unwrap();
//! let narrow: Scope = "shop:orders:read".parse().unwrap();
//! assert!(wide.grants(&narrow));
//! assert!(!narrow.grants(&wide));
//! ```

use std::fmt;
use std::str::FromStr;

/// A scope, parsed once and valid by construction.
///
/// The text is reference-counted: a credential's expanded scopes and the catalog's closures
/// share it with the declared scopes instead of copying it (a parsed policy of 10,000
/// credentials holds each scope text once).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Scope {
    /// The full text, e.g. `shop:orders:*`.
    text: std::sync::Arc<str>,
}

/// The longest scope, in bytes, that new policy text (`lint`, `policy apply`, `publish`) and
/// `cred add --scope` accept. Findings, messages and the daemon's warnings copy scopes, once
/// per (task, credential) pair: a scope of a megabyte listed by 500 tasks made `lint` write a
/// gigabyte (twenty-fourth pass). A policy a vault or bundle already stores is read without
/// this bound ([`Scope::parse_stored`]), so that it still opens.
pub const MAX_SCOPE_BYTES: usize = 256;

/// Why a string is not a scope.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// Longer than [`MAX_SCOPE_BYTES`]. The scope itself is not quoted (it may be megabytes).
    #[error("scope of {len} bytes, longer than the {max} bytes a scope may have: name the permission in fewer, shorter segments")]
    TooLong {
        /// Its length in bytes.
        len: usize,
        /// [`MAX_SCOPE_BYTES`].
        max: usize,
    },
    /// The scope is empty.
    #[error("empty scope: write segments of a-z, 0-9, `_` or `-` joined by `:`")]
    Empty,
    /// A segment between two `:` is empty.
    #[error("empty segment in scope `{0}`: remove the doubled or trailing `:`")]
    EmptySegment(String),
    /// A `*` appears somewhere other than as the whole last segment.
    #[error("misplaced `*` in scope `{0}`: a wildcard is allowed only as the whole last segment, as in `shop:orders:*`")]
    MisplacedWildcard(String),
    /// A character outside the grammar.
    #[error("invalid character {ch:?} in scope `{scope}`: segments use only a-z, 0-9, `_` and `-` (lowercase)")]
    BadChar {
        /// The scope as written.
        scope: String,
        /// The first offending character.
        ch: char,
    },
}

fn segment_ok(seg: &str) -> bool {
    !seg.is_empty()
        && seg
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

impl Scope {
    /// Parse a scope string of at most [`MAX_SCOPE_BYTES`].
    pub fn parse(s: &str) -> Result<Scope, ScopeError> {
        if s.len() > MAX_SCOPE_BYTES {
            return Err(ScopeError::TooLong {
                len: s.len(),
                max: MAX_SCOPE_BYTES,
            });
        }
        Scope::parse_stored(s)
    }

    /// [`Scope::parse`] without the length bound: for a policy a vault or a bundle already
    /// stores, written before the bound (twenty-fourth pass), which must still open.
    pub(crate) fn parse_stored(s: &str) -> Result<Scope, ScopeError> {
        if s.is_empty() {
            return Err(ScopeError::Empty);
        }
        // Segment by segment without collecting them: this runs once per scope of a policy.
        let mut segs = s.split(':').peekable();
        while let Some(seg) = segs.next() {
            if seg == "*" {
                if segs.peek().is_some() {
                    return Err(ScopeError::MisplacedWildcard(s.to_owned()));
                }
                continue;
            }
            if seg.is_empty() {
                return Err(ScopeError::EmptySegment(s.to_owned()));
            }
            if seg.contains('*') {
                return Err(ScopeError::MisplacedWildcard(s.to_owned()));
            }
            if !segment_ok(seg) {
                let ch = seg
                    .chars()
                    .find(|c| {
                        !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_' || *c == '-')
                    })
                    .unwrap_or('?');
                return Err(ScopeError::BadChar {
                    scope: s.to_owned(),
                    ch,
                });
            }
        }
        Ok(Scope { text: s.into() })
    }

    /// The scope as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the last segment is `*`.
    pub fn is_wildcard(&self) -> bool {
        &*self.text == "*" || self.text.ends_with(":*")
    }

    /// The non-wildcard part: `shop:orders` for `shop:orders:*`, `""` for `*`, the whole
    /// text for a plain scope.
    pub fn prefix(&self) -> &str {
        if &*self.text == "*" {
            ""
        } else if let Some(p) = self.text.strip_suffix(":*") {
            p
        } else {
            &self.text
        }
    }

    /// Whether holding `self` grants `other`: equal scopes, or `self` is a wildcard whose prefix
    /// is a segment-prefix of `other`'s prefix (a wildcard grants narrower wildcards too).
    pub fn grants(&self, other: &Scope) -> bool {
        if !self.is_wildcard() {
            return self.text == other.text;
        }
        let p = self.prefix();
        let o = other.prefix();
        if p.is_empty() {
            return true;
        }
        o == p || (o.len() > p.len() && o.starts_with(p) && o.as_bytes()[p.len()] == b':')
    }

    /// Every wildcard scope that grants `self`, as text, broadest first: `*`, `a:*`, `a:b:*`
    /// for `a:b:c` (and `a:b:c:*`; for `a:b:*` the list ends with `a:b:*` itself). With
    /// [`Scope::as_str`] these are exactly the strings a set lookup must try to know whether a
    /// set of scopes grants `self`; this is how matching stays a few hash lookups.
    pub fn granting_wildcards(&self) -> Vec<String> {
        let p = self.prefix();
        let mut out = vec!["*".to_owned()];
        if p.is_empty() {
            return out;
        }
        for (i, b) in p.bytes().enumerate() {
            if b == b':' {
                out.push(format!("{}:*", &p[..i]));
            }
        }
        out.push(format!("{p}:*"));
        out
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for Scope {
    type Err = ScopeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Scope::parse(s)
    }
}

/// A set of scope strings that answers "does this set grant scope X" with a few hash lookups.
#[derive(Debug, Default, Clone)]
pub(crate) struct GrantSet<'a> {
    set: rustc_hash::FxHashSet<&'a str>,
    /// Whether any member is a wildcard: without one, a scope is granted only by itself.
    wildcards: bool,
}

impl<'a> GrantSet<'a> {
    pub(crate) fn clear(&mut self) {
        self.set.clear();
        self.wildcards = false;
    }

    pub(crate) fn insert(&mut self, s: &'a Scope) {
        self.wildcards |= s.is_wildcard();
        self.set.insert(s.as_str());
    }

    /// The scopes of the set, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.set.iter().copied()
    }

    /// Whether some scope of the set grants `s`.
    pub(crate) fn grants(&self, s: &Scope) -> bool {
        if self.set.contains(s.as_str()) {
            return true;
        }
        if !self.wildcards {
            return false;
        }
        if self.set.contains("*") {
            return true;
        }
        // The same lookups as `granting_wildcards`, in one reused buffer: this runs for every
        // (task, credential, scope) the lint sees.
        let p = s.prefix();
        let mut buf = String::with_capacity(p.len() + 2);
        let ends = p
            .bytes()
            .enumerate()
            .filter(|(_, b)| *b == b':')
            .map(|(i, _)| i)
            .chain((!p.is_empty()).then_some(p.len()));
        for end in ends {
            buf.clear();
            buf.push_str(&p[..end]);
            buf.push_str(":*");
            if self.set.contains(buf.as_str()) {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(x: &str) -> Scope {
        Scope::parse(x).unwrap()
    }

    /// Mutation testing found this gap: the error must name the first character that is
    /// really not allowed, not an allowed `_` or `-` before it.
    #[test]
    fn bad_char_names_the_offending_character_after_allowed_punctuation() {
        assert!(matches!(
            Scope::parse("shop_x-y$z"),
            Err(ScopeError::BadChar { ch: '$', .. })
        ));
        assert!(matches!(
            Scope::parse("a-b:c_d!"),
            Err(ScopeError::BadChar { ch: '!', .. })
        ));
    }

    #[test]
    fn grammar_accepts_and_refuses() {
        for ok in ["shop", "shop:orders:read", "a-b_c:9", "shop:*", "*"] {
            assert!(Scope::parse(ok).is_ok(), "{ok}");
        }
        assert_eq!(Scope::parse(""), Err(ScopeError::Empty));
        assert!(matches!(
            Scope::parse("shop::x"),
            Err(ScopeError::EmptySegment(_))
        ));
        assert!(matches!(
            Scope::parse("shop:"),
            Err(ScopeError::EmptySegment(_))
        ));
        assert!(matches!(
            Scope::parse("shop:*:x"),
            Err(ScopeError::MisplacedWildcard(_))
        ));
        assert!(matches!(
            Scope::parse("shop:or*"),
            Err(ScopeError::MisplacedWildcard(_))
        ));
        assert!(matches!(
            Scope::parse("Shop:x"),
            Err(ScopeError::BadChar { ch: 'S', .. })
        ));
        assert!(matches!(
            Scope::parse("shop x"),
            Err(ScopeError::BadChar { ch: ' ', .. })
        ));
    }

    #[test]
    fn wildcard_grants_prefix_and_below_only_on_segment_boundaries() {
        let w = s("shop:orders:*");
        assert!(w.grants(&s("shop:orders")));
        assert!(w.grants(&s("shop:orders:read")));
        assert!(w.grants(&s("shop:orders:read:own")));
        assert!(w.grants(&s("shop:orders:x:*")));
        assert!(!w.grants(&s("shop:ordersx")));
        assert!(!w.grants(&s("shop")));
        assert!(!w.grants(&s("shop:*")));
        assert!(s("*").grants(&s("anything:at:all")));
        assert!(!s("shop:orders").grants(&s("shop:orders:read")));
    }

    #[test]
    fn granting_wildcards_lists_every_ancestor() {
        assert_eq!(
            s("a:b:c").granting_wildcards(),
            vec!["*", "a:*", "a:b:*", "a:b:c:*"]
        );
        assert_eq!(s("a:b:*").granting_wildcards(), vec!["*", "a:*", "a:b:*"]);
        assert_eq!(s("*").granting_wildcards(), vec!["*"]);
    }
}
