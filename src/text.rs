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
/// escaped them). A `##[` in it is defused too ([`defuse_workflow_commands`], mid-line): a
/// path printed to a CI log must not write a workflow command (nineteenth pass, `doctor`).
pub fn shown(path: &std::path::Path) -> String {
    escape_for_log(&path.display().to_string())
}

/// Text from elsewhere (a title of an imported row, a file's name under `--artifacts`, a
/// daemon's error) as it is put into a line printed for people, on a terminal or in a CI log:
/// [`escape_for_terminal`] (so it is one line, and nothing in it drives the terminal or hides
/// or reorders what is shown), then [`defuse_workflow_commands`] with [`TEXT_ESCAPES`], as if
/// it began a line (a `##[` anywhere, a `::` at its start). The one escaper of such a piece:
/// `lint` and every error message defused workflow commands while `cred import`, `redact`
/// and `exec --artifacts` printed a title or a file's name `##[add-mask]x` as it was, which
/// the runner of a CI log takes for a command (twenty-fifth pass).
pub fn escape_for_log(s: &str) -> String {
    defuse_workflow_commands(&escape_for_terminal(s), true, TEXT_ESCAPES).into_owned()
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

/// `s` with what GitHub Actions' runner would read as a workflow command defused, for a
/// program whose output a CI log may hold (`lint`, every error message). The runner takes a
/// line whose first characters after blanks are `::` for a command (`::add-mask::`, `::error
/// file=…::`), and a line holding `##[` anywhere for one of its older syntax (`##[add-mask]`,
/// `##[error …]`: actions/runner `ActionCommand.TryParse`). So the first `:` of a line that
/// would begin (after whitespace) with `::` is written `colon`, and a `[` that follows `##` is
/// written `bracket`: the same character in the escape syntax of the output ([`TEXT_ESCAPES`],
/// `&#58;` and `&#91;` in XML, `\u005b` in a JSON string). Lines end at `\n` and at `\r`
/// (the runner ends a line at either); `s` begins a line when `at_line_start`. Applying it
/// twice changes nothing more.
pub fn defuse_workflow_commands<'a>(
    s: &'a str,
    at_line_start: bool,
    (colon, bracket): (&str, &str),
) -> std::borrow::Cow<'a, str> {
    if !s.contains("##[") && !s.contains("::") {
        return std::borrow::Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    let mut line_start = at_line_start;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\n' | '\r' => {
                line_start = true;
                out.push(c);
            }
            c if line_start && c.is_whitespace() => out.push(c),
            ':' if line_start && chars.peek() == Some(&':') => {
                line_start = false;
                out.push_str(colon);
            }
            '[' if out.ends_with("##") => {
                line_start = false;
                out.push_str(bracket);
            }
            c => {
                line_start = false;
                out.push(c);
            }
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The escapes [`defuse_workflow_commands`] writes in text for people (a terminal, a log), as
/// [`escape_for_terminal`] writes a character: `\u{3a}` for `:`, `\u{5b}` for `[`.
pub const TEXT_ESCAPES: (&str, &str) = ("\\u{3a}", "\\u{5b}");

/// A line (or lines) of text for people, [`defuse_workflow_commands`] with [`TEXT_ESCAPES`]:
/// `s` begins a line.
pub fn defused(s: &str) -> std::borrow::Cow<'_, str> {
    defuse_workflow_commands(s, true, TEXT_ESCAPES)
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

/// A path's bytes as text that names it and no other (the audit log's `peer.exe`): UTF-8 as
/// it is, a backslash as `\\`, and each byte that is not UTF-8 as `\xNN` (two lowercase hex
/// digits), so `py\xff` and `py\xfe` stay apart (a lossy conversion made both `py\u{fffd}`),
/// and a name holding the four characters `\xff` is `\\xff`.
pub fn escape_path_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// `s`, written by [`escape_path_bytes`], cut to at most `max` bytes between two of its
/// units (a character, `\\`, `\xNN`): a cut through an escape would read as another path.
pub fn cut_escaped(s: &str, max: usize) -> &str {
    let b = s.as_bytes();
    let mut end = 0;
    let mut at = 0;
    while at < b.len() {
        let next = if b[at] == b'\\' {
            at + if b.get(at + 1) == Some(&b'x') { 4 } else { 2 }
        } else {
            let mut n = at + 1;
            while n < b.len() && !s.is_char_boundary(n) {
                n += 1;
            }
            n
        };
        let next = next.min(b.len());
        if next > max {
            break;
        }
        end = next;
        at = next;
    }
    &s[..end]
}

/// `s` cut to at most `max` bytes, at a character boundary: a bound on a string the peer or
/// a policy chose, wherever it is quoted (the audit log's `exe`, a refusal's origin).
pub fn cut_to(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
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
    use proptest::strategy::Strategy as _;

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

    /// Nineteenth pass: the two syntaxes of GitHub Actions' workflow commands, defused.
    #[test]
    fn workflow_commands_are_defused_and_the_rest_kept() {
        assert_eq!(
            defused("::add-mask::x\n  ::error::y\r\t::z a::b ::c"),
            "\\u{3a}:add-mask::x\n  \\u{3a}:error::y\r\t\\u{3a}:z a::b ::c"
        );
        assert_eq!(
            defused("a ##[error]b ###[x] #[y] ## [z]"),
            "a ##\\u{5b}error]b ###\\u{5b}x] #[y] ## [z]"
        );
        assert_eq!(defused(": :x\n:y"), ": :x\n:y");
        assert_eq!(
            defuse_workflow_commands("::x ##[y", false, ("&#58;", "&#91;")),
            "::x ##&#91;y"
        );
        for s in ["::a::b ##[c", "\n ::x", "plain"] {
            let once = defused(s).into_owned();
            assert_eq!(defused(&once), once);
        }
    }

    /// Twenty-fifth pass: the escaper of a piece of text from elsewhere escapes what the
    /// terminal acts on and defuses both syntaxes of workflow commands, wherever the piece is
    /// put in a line; plain text is kept.
    #[test]
    fn escape_for_log_escapes_controls_and_defuses_workflow_commands() {
        assert_eq!(
            escape_for_log("::add-mask::x ##[error]y\n::z\u{202e}"),
            "\\u{3a}:add-mask::x ##\\u{5b}error]y\\n::z\\u{202e}"
        );
        assert_eq!(escape_for_log("  ::warning::w"), "  \\u{3a}:warning::w");
        assert_eq!(
            escape_for_log("Shop admin → Shop-admin"),
            "Shop admin → Shop-admin"
        );
        for s in ["##[x", "::y", "a\n##[z"] {
            let once = escape_for_log(s);
            assert!(!once.contains("##[") && !once.starts_with("::"), "{once}");
        }
    }

    proptest::proptest! {
        /// Whatever the text, no line of it defused is a workflow command for the runner.
        #[test]
        fn no_line_defused_is_a_workflow_command(
            s in proptest::collection::vec(
                proptest::sample::select(vec!['#', '[', ':', ' ', '\t', '\n', '\r', '\u{a0}', 'a']),
                0..40,
            ).prop_map(|v| v.into_iter().collect::<String>())
        ) {
            let out = defused(&s);
            for line in out.split(['\n', '\r']) {
                proptest::prop_assert!(!line.trim_start().starts_with("::"), "{:?} -> {:?}", s, out);
                proptest::prop_assert!(!line.contains("##["), "{:?} -> {:?}", s, out);
            }
        }
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
