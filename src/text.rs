//! Text from someone else (a policy in a pull request, a log's peer, a synced field, an
//! imported URL) as it may be shown on a terminal or in a CI log: control characters, the
//! bidirectional controls and the characters that print as nothing or as a blank escaped, so
//! that it cannot move the cursor, forge a line (a CI log's `::workflow-command` lines
//! included), hide what follows, reorder what is shown, or pass for other text
//! (`py\u{200b}thon3` for `python3`, a no-break space for a space).

/// The Unicode bidirectional embedding, override, isolate and mark controls, which reorder
/// what a terminal shows (CVE-2021-42574).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// A control character or a bidirectional control: what may never be printed as it is. The
/// rule for text that is refused rather than shown escaped (a plain field's value, a fleet
/// principal).
pub fn is_terminal_control(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// A character that prints as nothing or as a blank other than the ASCII space, so that text
/// holding it looks like other text: the format characters (Unicode general category Cf: the
/// zero-width space, joiners, the word joiner, the byte-order mark, the soft hyphen, tags…),
/// the space separators but U+0020 (Zs: the no-break space, the ideographic space…), the line
/// and paragraph separators (Zl, Zp), every other `White_Space` character, and the blanks of
/// other categories that are default-ignorable or fillers (the combining grapheme joiner, the
/// variation selectors, the Hangul fillers, the braille blank). Unicode 16; a unit test checks
/// the table against the general-category data.
pub fn is_invisible(c: char) -> bool {
    (c.is_whitespace() && c != ' ')
        || matches!(
            c,
            // Cf
            '\u{00AD}'
                | '\u{0600}'..='\u{0605}'
                | '\u{061C}'
                | '\u{06DD}'
                | '\u{070F}'
                | '\u{0890}'..='\u{0891}'
                | '\u{08E2}'
                | '\u{180E}'
                | '\u{200B}'..='\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2060}'..='\u{206F}'
                | '\u{FEFF}'
                | '\u{FFF0}'..='\u{FFFB}'
                | '\u{110BD}'
                | '\u{110CD}'
                | '\u{13430}'..='\u{1343F}'
                | '\u{1BCA0}'..='\u{1BCA3}'
                | '\u{1D173}'..='\u{1D17A}'
                | '\u{E0000}'..='\u{E0FFF}'
                // Zs but U+0020, Zl, Zp (also `White_Space`, listed for the record)
                | '\u{00A0}'
                | '\u{1680}'
                | '\u{2000}'..='\u{200A}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202F}'
                | '\u{205F}'
                | '\u{3000}'
                // Default-ignorable or blank in other categories
                | '\u{034F}'
                | '\u{115F}'
                | '\u{1160}'
                | '\u{17B4}'
                | '\u{17B5}'
                | '\u{180B}'..='\u{180F}'
                | '\u{2800}'
                | '\u{3164}'
                | '\u{FE00}'..='\u{FE0F}'
                | '\u{FFA0}'
                | '\u{1D159}'
        )
}

/// Whether `c` is shown escaped by [`escape_for_terminal`]: a [`is_terminal_control`] or an
/// [`is_invisible`] character.
pub fn needs_escape(c: char) -> bool {
    is_terminal_control(c) || is_invisible(c)
}

/// `s` with every character of [`needs_escape`] written as Rust writes it (`\n`, `\u{1b}`,
/// `\u{202e}`, `\u{200b}`), the rest as it is.
pub fn escape_for_terminal(s: &str) -> String {
    if !s.chars().any(needs_escape) {
        return s.to_owned();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// A path as people are shown it, in a success line, a note or a prompt as in an error:
/// [`Path::display`](std::path::Path::display) with every character of [`needs_escape`]
/// escaped as [`escape_for_terminal`] writes it. A path comes from an option, the environment
/// (`TMPDIR`, `SCOPEVAULT_VAULT`) or a directory someone else named: an ESC or a U+202E in it
/// must not drive the terminal or reorder the line (seventeenth pass: `init`, `policy apply`,
/// `audit verify` and `demo` printed theirs raw, while the errors naming the same paths
/// escaped them).
pub fn shown(path: &std::path::Path) -> String {
    escape_for_terminal(&path.display().to_string())
}

/// `s` as [`escape_for_terminal`] writes it, its line breaks (`\n`) kept: for a message of
/// several lines (an error), whose parts may quote text from a file nobody has authenticated
/// yet (a vault header's member names, a rollback record's values). Every other control, C1,
/// DEL, bidirectional and invisible character is escaped.
pub fn escape_keeping_line_breaks(s: &str) -> String {
    if !s.chars().any(|c| c != '\n' && needs_escape(c)) {
        return s.to_owned();
    }
    s.split('\n')
        .map(escape_for_terminal)
        .collect::<Vec<_>>()
        .join("\n")
}

/// `s` as the value (or the name) of one `key=value` field of a line of such fields (`audit
/// show`): as it is when it is a plain word, otherwise between double quotes. Quoted are an
/// empty value and one that holds a space, `=`, `"`, `\` or a [`needs_escape`] character;
/// inside the quotes `\` and `"` are written `\\` and `\"`, `=` is written `\=` where it
/// follows a character a field's name can end with ([`ends_a_name`]: a letter, a digit, `_`,
/// `-`, `.` or `]`), and [`needs_escape`] characters are written as [`escape_for_terminal`]
/// writes them. So a field always ends at the first space outside quotes, and `key=` appears
/// on the line only where a field begins: a value cannot pass for further fields
/// (`exe=/tmp/x uid=0 gid=0`), and a search for `uid=0` cannot match inside one. A `=` after
/// a space or other punctuation cannot end a `key=`, and is left as it is: a reason reads
/// `enforce = \"deny\"`, not `enforce \= \"deny\"` (eighteenth pass).
pub fn quote_field(s: &str) -> String {
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| matches!(c, ' ' | '=' | '"' | '\\') || needs_escape(c));
    if plain {
        return s.to_owned();
    }
    quoted(s)
}

/// `s` between double quotes as [`quote_field`] writes a value it quotes, whatever `s` holds
/// (a free text such as `audit show`'s `reason`).
pub fn quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    out.push('"');
    for c in s.chars() {
        match c {
            '\\' | '"' => {
                out.push('\\');
                out.push(c);
            }
            // Judged by what is shown just before it: an escaped character as its escape shows.
            '=' if out.chars().next_back().is_some_and(ends_a_name) => out.push_str("\\="),
            c if needs_escape(c) => out.extend(c.escape_default()),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Whether a field's name, as `audit show` writes one, can end with `c`: a letter, a digit,
/// `_`, `-`, `.` (a field name, a task) or `]` (`hits[LABEL]`). A `=` after such a character
/// inside quotes is escaped by [`quoted`]: unescaped, it would end a `key=` a search matches.
fn ends_a_name(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | ']')
}

/// A time as people are shown it: RFC 3339 (`2026-12-31T18:04:20Z`), as the manifest, the
/// records and every JSON output write it. `OffsetDateTime`'s own `Display`
/// (`2026-12-31 18:04:20.0 +00:00:00`) is in no document and parses as nothing.
pub fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_escaped_and_the_rest_kept() {
        assert_eq!(
            escape_for_terminal("a\n::notice::x\u{1b}]0;t\u{7}\u{202e}é"),
            "a\\n::notice::x\\u{1b}]0;t\\u{7}\\u{202e}é"
        );
        assert_eq!(escape_for_terminal("plain `text`"), "plain `text`");
    }

    /// `audit show` printed a runner's executable path as it was (sixteenth pass): a
    /// U+200B in `py\u{200b}thon3` was invisible, and the no-break, ideographic and line
    /// separator spaces looked like a space or a line end.
    #[test]
    fn invisible_format_and_separator_characters_are_escaped() {
        assert_eq!(
            escape_for_terminal("py\u{200b}thon3\u{a0}a\u{2028}b\u{3000}c\u{feff}\u{ad}"),
            "py\\u{200b}thon3\\u{a0}a\\u{2028}b\\u{3000}c\\u{feff}\\u{ad}"
        );
        assert_eq!(escape_for_terminal("a b"), "a b");
    }

    /// The table of [`is_invisible`] holds every format character, every space separator
    /// but U+0020, and the line and paragraph separators of the Unicode general-category data.
    #[test]
    fn every_cf_zs_zl_zp_character_but_the_space_needs_escape() {
        use unicode_general_category::{get_general_category, GeneralCategory as G};
        let missed: Vec<String> = (0..=0x10FFFF_u32)
            .filter_map(char::from_u32)
            .filter(|&c| c != ' ')
            .filter(|&c| {
                matches!(
                    get_general_category(c),
                    G::Format
                        | G::SpaceSeparator
                        | G::LineSeparator
                        | G::ParagraphSeparator
                        | G::Control
                )
            })
            .filter(|&c| !needs_escape(c))
            .map(|c| format!("U+{:04X}", c as u32))
            .collect();
        assert!(missed.is_empty(), "{missed:?}");
        // Letters, marks, punctuation, symbols and CJK stay as they are.
        for c in ['a', 'é', 'ß', 'Ж', '字', '€', '…', '‚', '\u{301}', '😀'] {
            assert!(!needs_escape(c), "{c:?}");
        }
    }

    #[test]
    fn line_breaks_are_kept_and_every_other_control_escaped() {
        assert_eq!(
            escape_keeping_line_breaks(
                "one\ntwo \u{1b}]0;x\u{7}\t\r\u{9b}\u{7f}\u{202e}\u{200b}é\n"
            ),
            "one\ntwo \\u{1b}]0;x\\u{7}\\t\\r\\u{9b}\\u{7f}\\u{202e}\\u{200b}é\n"
        );
        assert_eq!(escape_keeping_line_breaks("a\nb"), "a\nb");
    }

    #[test]
    fn quote_field_keeps_plain_words_and_quotes_the_rest_unambiguously() {
        for plain in [
            "python3",
            "/usr/bin/python3",
            "hmac-sha256:ab",
            "shop-login",
            "é",
        ] {
            assert_eq!(quote_field(plain), plain);
        }
        assert_eq!(quote_field(""), "\"\"");
        assert_eq!(
            quote_field("/tmp/x uid=0 gid=0 pid=1 exe=/usr/sbin/cron"),
            "\"/tmp/x uid\\=0 gid\\=0 pid\\=1 exe\\=/usr/sbin/cron\""
        );
        assert_eq!(quote_field("a\"b\\c"), "\"a\\\"b\\\\c\"");
        assert_eq!(quote_field("py\u{200b}thon3"), "\"py\\u{200b}thon3\"");
        assert_eq!(quote_field("a\u{1b}[2J"), "\"a\\u{1b}[2J\"");
        // A backslash written in the text and an escaped character stay apart.
        assert_ne!(quote_field("a\\u{1b}"), quote_field("a\u{1b}"));
        assert_eq!(quoted("plain"), "\"plain\"");
    }

    /// Eighteenth pass: every `=` of a reason was written `\=`. Only one that could end a
    /// `key=` is: after a letter, a digit, `_`, `-`, `.` or `]` as shown (`\u{1b}` ends in `}`).
    #[test]
    fn quoted_escapes_only_an_equals_sign_that_could_end_a_field_name() {
        assert_eq!(
            quoted("enforce = \"deny\"; (=x) uid=0 a_=1 a-=1 a.=1 hits[x]=1 \u{1b}=1 é=1 a==b"),
            "\"enforce = \\\"deny\\\"; (=x) uid\\=0 a_\\=1 a-\\=1 a.\\=1 hits[x]\\=1 \\u{1b}=1 é\\=1 a\\==b\""
        );
        assert_eq!(quoted("=a"), "\"=a\"");
    }
}
