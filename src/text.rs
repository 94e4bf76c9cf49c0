//! Text from someone else (a policy in a pull request, a log's peer, a synced field, an
//! imported URL) as it may be shown on a terminal or in a CI log: control characters and the
//! bidirectional controls escaped, so that it cannot move the cursor, forge a line (a CI log's
//! `::workflow-command` lines included), hide what follows or reorder what is shown.

/// The Unicode bidirectional embedding, override, isolate and mark controls, which reorder
/// what a terminal shows (CVE-2021-42574).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Whether `c` is shown escaped by [`escape_for_terminal`].
pub fn needs_escape(c: char) -> bool {
    c.is_control() || is_bidi_control(c)
}

/// `s` with every character of [`needs_escape`] written as Rust writes it (`\n`, `\u{1b}`,
/// `\u{202e}`), the rest as it is.
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
}
