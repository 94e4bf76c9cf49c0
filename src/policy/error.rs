//! Errors of reading and parsing a policy, and byte-offset → line:column conversion.

use std::ops::Range;

/// Why a policy could not be read or parsed. Every variant that concerns the text carries the
/// place (`file:line:col`) in its `Display`, and says what to do.
///
/// The `Display` escapes the file's name and the message, line breaks included
/// ([`crate::text::escape_for_terminal`]): the message quotes the policy's own text (an
/// unknown key or value, as the parser found it), and a policy comes from a pull request. An
/// error the binary prints keeps its line breaks (`cli::message_of`), so a key
/// `"x\nerror: forged"` quoted raw started a line of its own in `policy apply`'s error
/// (eighteenth pass).
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error(
        "{}: cannot read the policy: {error}; check the path and its permissions",
        esc(path)
    )]
    Io {
        /// The file, as given.
        path: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// The file is larger than [`crate::policy::MAX_POLICY_BYTES`]; it was not read in full.
    #[error("{}: the policy is larger than the {limit}-byte limit ({size}); is this the right file? Split very large policies", esc(path))]
    TooLarge {
        /// The file, as given.
        path: String,
        /// The size seen (at least `limit + 1`).
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The policy's canonical TOML ([`crate::policy::Policy::to_canonical_toml`]), the form
    /// a vault stores and `policy export` prints, is larger than
    /// [`crate::policy::MAX_POLICY_BYTES`]: stored, it could not be read back.
    #[error("{}: the policy's canonical form (what the vault stores and `scopevault policy export` prints, every default written out, e.g. `origins = []`) is {size} bytes, over the {limit}-byte limit, so it could not be exported and applied again; nothing was stored: make the policy smaller (shorter or fewer names) or split it", esc(path))]
    CanonicalTooLarge {
        /// The file, as given.
        path: String,
        /// The size of the canonical form.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file is not UTF-8.
    #[error("{}:{line}:{column}: the policy is not valid UTF-8 (byte offset {offset}); save it as UTF-8", esc(path))]
    NotUtf8 {
        /// The file, as given.
        path: String,
        /// 1-based line of the first invalid byte.
        line: usize,
        /// 1-based column (in characters) of the first invalid byte.
        column: usize,
        /// Byte offset of the first invalid byte.
        offset: usize,
    },
    /// The text is not a valid policy: TOML syntax, a wrong type, an unknown key, a bad value.
    #[error("{}:{line}:{column}: {}", esc(path), esc(message))]
    Invalid {
        /// The file, as given.
        path: String,
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// The byte range of the offending text.
        span: Range<usize>,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// A name or a message as [`PolicyError`]'s `Display` shows it.
fn esc(s: &str) -> String {
    crate::text::escape_for_terminal(s)
}

impl PolicyError {
    /// The byte range of the offending text, when the error concerns a place in the text.
    pub fn span(&self) -> Option<Range<usize>> {
        match self {
            PolicyError::Invalid { span, .. } => Some(span.clone()),
            PolicyError::NotUtf8 { offset, .. } => Some(*offset..*offset + 1),
            _ => None,
        }
    }

    /// The message alone, without the `file:line:col:` prefix (for rustc-style rendering).
    pub fn message(&self) -> String {
        match self {
            PolicyError::Invalid { message, .. } => message.clone(),
            PolicyError::NotUtf8 { offset, .. } => {
                format!("the policy is not valid UTF-8 (byte offset {offset}); save it as UTF-8")
            }
            other => other.to_string(),
        }
    }

    /// The error rustc-style: the message, ` --> file:line:col`, and when `source` (the text
    /// that was parsed) is given, the source line with a `^` marker under the offending text.
    /// What `lint` and `policy apply` print.
    pub fn render(&self, source: Option<&str>) -> String {
        let (
            Some(src),
            Some(span),
            PolicyError::Invalid {
                path, line, column, ..
            },
        ) = (source, self.span(), self)
        else {
            return crate::text::escape_for_terminal(&self.to_string());
        };
        let idx = LineIndex::new(src);
        let (end_line, end_col) = idx.line_col(src, span.end);
        let end_col = if end_line == *line {
            end_col
        } else {
            usize::MAX
        };
        let (text, start, len) = snippet(idx.line_text(src, *line), *column, end_col);
        let pad = " ".repeat(line.to_string().len());
        format!(
            "{}\n{pad}--> {}:{line}:{column}\n{pad} |\n{line} | {text}\n{pad} | {}{}",
            crate::text::escape_for_terminal(&self.message()),
            crate::text::escape_for_terminal(path),
            " ".repeat(start),
            "^".repeat(len)
        )
    }

    pub(crate) fn invalid(path: &str, source: &str, span: Range<usize>, message: String) -> Self {
        let idx = LineIndex::new(source);
        let (line, column) = idx.line_col(source, span.start);
        PolicyError::Invalid {
            path: path.to_owned(),
            line,
            column,
            span,
            message,
        }
    }
}

/// Bytes of a UTF-8 byte order mark at the start of `source` (3 or 0). Columns count from
/// after it: SARIF's regions SHALL NOT depend on a BOM (§3.30.2), and no editor shows it as a
/// column. Line 1 "starts" after it, so its text (as shown under a message) leaves it out too.
pub(crate) fn bom_len(source: &[u8]) -> usize {
    if source.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    }
}

/// Start offsets of every line, to turn byte offsets into line:column in O(log n).
#[derive(Debug, Clone)]
pub(crate) struct LineIndex {
    starts: Vec<usize>,
}

impl LineIndex {
    pub(crate) fn new(source: &str) -> Self {
        // Line 1 starts after a byte order mark ([`bom_len`]).
        let mut starts = vec![bom_len(source.as_bytes())];
        starts.extend(
            source
                .bytes()
                .enumerate()
                .filter(|(_, b)| *b == b'\n')
                .map(|(i, _)| i + 1),
        );
        LineIndex { starts }
    }

    /// 1-based line and 1-based column (in characters) of byte `offset`, clamped to the text.
    pub(crate) fn line_col(&self, source: &str, offset: usize) -> (usize, usize) {
        // An offset inside a byte order mark is column 1, as the mark's end is.
        let offset = offset.min(source.len()).max(self.starts[0]);
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.starts[line];
        let col = source
            .get(start..offset)
            .map(|s| s.chars().count())
            .unwrap_or(offset - start);
        (line + 1, col + 1)
    }

    /// The window of the source line shown under a finding at `span` (its start's line; a
    /// span that goes on past the line is marked to the line's end), found from the span's
    /// bytes: it costs the characters shown, not the line's length. Through the twenty-fourth
    /// pass the report turned the whole line into characters for each finding, so 200,000
    /// findings on one line of a 1 MB policy (a task listing one credential 200,000 times)
    /// took 261 s.
    pub(crate) fn excerpt<'s>(&self, source: &'s str, span: Range<usize>) -> Excerpt<'s> {
        let offset = span.start.min(source.len()).max(self.starts[0]);
        let line = match self.starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i - 1,
        };
        let start = self.starts[line];
        let text = self.line_text(source, line + 1);
        let end = span.end.max(offset).min(start + text.len());
        excerpt_of(text, offset - start, end.saturating_sub(start))
    }

    /// The text of 1-based line `line`, without its newline.
    pub(crate) fn line_text<'s>(&self, source: &'s str, line: usize) -> &'s str {
        let start = self.starts.get(line - 1).copied().unwrap_or(source.len());
        let end = self.starts.get(line).map(|e| e - 1).unwrap_or(source.len());
        let text = source.get(start..end.max(start)).unwrap_or("");
        text.strip_suffix('\r').unwrap_or(text)
    }
}

/// The part of a source line to show under a message, and where the `^` marker goes in it:
/// `(text, marker start in display columns, marker length in display columns)`. A wide
/// character (CJK, emoji) takes two columns and a combining mark none, as a terminal shows them
/// (until the twenty-second pass the marker counted characters and stood one column short
/// after a wide one). A control character is shown escaped (a tab as `\t`), as wide as its
/// escape. `column` and `end_column` are 1-based
/// (`end_column` exclusive, past the line for a span that goes on). Long lines (a minified or
/// hostile file) are cut to a window around the marker, so a message stays readable.
///
/// This finds the columns by walking the line from its start: right for the one error of a
/// parse, not for a report's findings, which use [`LineIndex::excerpt`].
pub(crate) fn snippet(line: &str, column: usize, end_column: usize) -> (String, usize, usize) {
    let byte = |col: usize| {
        line.char_indices()
            .nth(col.saturating_sub(1))
            .map_or(line.len(), |(i, _)| i)
    };
    let start = byte(column);
    let end = byte(end_column).max(start);
    excerpt_of(line, start, end).render()
}

/// Characters shown before the marker when a line is cut.
const EXCERPT_BEFORE: usize = 40;
/// Characters shown of a line at most.
const EXCERPT_WIDTH: usize = 120;

/// The window of a source line shown under a message ([`snippet`]): a slice of at most
/// [`EXCERPT_WIDTH`] characters, the marked bytes within it, and whether the line goes on
/// before or after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Excerpt<'s> {
    pub(crate) text: &'s str,
    /// The marked bytes of `text`.
    pub(crate) marker: Range<usize>,
    pub(crate) cut_before: bool,
    pub(crate) cut_after: bool,
}

/// The window of `line` around bytes `start..end` (char boundaries, `start <= end`). It looks
/// at the characters it shows and at most [`EXCERPT_WIDTH`] more, never the rest of the line.
fn excerpt_of(line: &str, start: usize, end: usize) -> Excerpt<'_> {
    let floor = |i: usize| crate::text::cut_to(line, i).len();
    let (start, end) = (floor(start), floor(end));
    let end = end.max(start);
    // Longer than the window: counting stops one character past it.
    let long = line.len() > EXCERPT_WIDTH && line.chars().nth(EXCERPT_WIDTH).is_some();
    let (from, to) = if long {
        let from = line[..start]
            .char_indices()
            .rev()
            .nth(EXCERPT_BEFORE - 1)
            .map_or(0, |(i, _)| i);
        let to = line[from..]
            .char_indices()
            .nth(EXCERPT_WIDTH)
            .map_or(line.len(), |(i, _)| from + i);
        (from, to)
    } else {
        (0, line.len())
    };
    Excerpt {
        text: &line[from..to],
        marker: (start - from)..(end.min(to) - from),
        cut_before: from > 0,
        cut_after: to < line.len(),
    }
}

impl Excerpt<'_> {
    /// The text shown (escaped, with `…` where the line is cut), the marker's start and length
    /// in display columns: see [`snippet`].
    pub(crate) fn render(&self) -> (String, usize, usize) {
        // Escaped as it is shown (a control character or a bidirectional override in a policy
        // from a pull request must not drive the terminal or the CI log), the marker moved
        // with it.
        let mut text = String::new();
        let (mut marker_start, mut marker_len) = (0, 0);
        for (i, c) in self.text.char_indices() {
            let width = if crate::text::needs_escape(c) {
                let escaped: String = c.escape_default().collect();
                text.push_str(&escaped);
                escaped.len()
            } else {
                text.push(c);
                unicode_width::UnicodeWidthChar::width(c).unwrap_or(0)
            };
            if i < self.marker.start {
                marker_start += width;
            } else if i < self.marker.end {
                marker_len += width;
            }
        }
        if self.cut_before {
            text.insert(0, '…');
            marker_start += 1;
        }
        if self.cut_after {
            text.push('…');
        }
        (text, marker_start, marker_len.max(1))
    }
}

/// Closest candidate to `word` among `candidates`, if one is close enough to suggest.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let mut unlimited = u64::MAX;
    did_you_mean_within(word, candidates, &mut unlimited)
}

/// Longest word a suggestion is looked for: a longer one is no typo of a name.
const MAX_SUGGESTED_LEN: usize = 128;

/// As [`did_you_mean`], spending at most `budget` cells of edit-distance tables (each
/// comparison costs the product of the two lengths): the lint shares one budget across a run,
/// so a policy with many long unknown names costs bounded time (suggestions stop when it is
/// spent). Candidates whose length differs by more than the edits allowed are skipped
/// without a table.
pub(crate) fn did_you_mean_within<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
    budget: &mut u64,
) -> Option<&'a str> {
    let n = word.chars().count();
    if n > MAX_SUGGESTED_LEN {
        return None;
    }
    // Jaro-Winkler ranks, but long names sharing a prefix score high on it alone
    // (`crm:reports:export` vs `crm:contacts:read`): also require a small edit distance.
    let max_edits = (n / 4).max(2);
    let mut best: Option<(f64, &str)> = None;
    for c in candidates {
        let m = c.chars().count();
        if m.abs_diff(n) > max_edits {
            continue;
        }
        let cost = (n.max(1) * m.max(1)) as u64;
        if *budget < cost {
            break;
        }
        *budget -= cost;
        if strsim::levenshtein(word, c) > max_edits {
            continue;
        }
        let score = strsim::jaro_winkler(word, c);
        if score > 0.8 && best.is_none_or(|(b, _)| score > b) {
            best = Some((score, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by attacking the lint's cost (fourteenth pass): suggestions ran a full edit
    /// distance for every unknown name against every candidate, whatever their lengths, so a
    /// 400 KB policy with one 200,000-character scope took 49 s and a 16 MiB one hours.
    #[test]
    fn suggestions_skip_long_words_and_far_lengths_and_stop_when_the_budget_is_spent() {
        let long = "a".repeat(129);
        assert_eq!(did_you_mean(&long, [long.as_str()]), None);
        // A candidate whose length is too far costs nothing.
        let mut budget = 0;
        assert_eq!(
            did_you_mean_within("scope", ["a-much-longer-name"], &mut budget),
            None
        );
        // The budget pays for each table: with room for one 6×6 table, the second is not made.
        let mut budget = 36;
        assert_eq!(
            did_you_mean_within("scopes", ["scopez", "scopes"], &mut budget),
            Some("scopez")
        );
        assert_eq!(budget, 0);
        let mut budget = 72;
        assert_eq!(
            did_you_mean_within("scopes", ["scopez", "scopes"], &mut budget),
            Some("scopes")
        );
    }

    #[test]
    fn the_source_line_shown_is_escaped_with_its_marker_moved() {
        let (text, start, len) = snippet("a = \"\u{1b}[2Jx\u{202e}\"", 11, 12);
        assert_eq!(text, "a = \"\\u{1b}[2Jx\\u{202e}\"");
        // The marker is under the escaped override (8 characters), after the escaped ESC.
        assert_eq!((start, len), (15, 8));
    }

    #[test]
    fn line_col_counts_characters_from_one() {
        let src = "ab\nçd\nx";
        let idx = LineIndex::new(src);
        assert_eq!(idx.line_col(src, 0), (1, 1));
        assert_eq!(idx.line_col(src, 3), (2, 1));
        assert_eq!(idx.line_col(src, 5), (2, 2)); // after the 2-byte ç
        assert_eq!(idx.line_col(src, 7), (3, 1));
        assert_eq!(idx.line_text(src, 2), "çd");
        assert_eq!(idx.line_text(src, 3), "x");
    }

    #[test]
    fn snippet_places_the_marker_by_display_columns() {
        // A wide character takes two columns, a combining mark none, an escaped tab two.
        assert_eq!(snippet("# 😀 x = 1", 5, 6), ("# 😀 x = 1".to_owned(), 5, 1));
        assert_eq!(snippet("漢字 = 1", 4, 5), ("漢字 = 1".to_owned(), 5, 1));
        assert_eq!(
            snippet("e\u{301} = 1", 4, 5),
            ("e\u{301} = 1".to_owned(), 2, 1)
        );
        assert_eq!(snippet("\tab = 1", 2, 4), ("\\tab = 1".to_owned(), 2, 2));
        // A marked wide character is two carets wide.
        assert_eq!(snippet("k = \"漢\"", 6, 7), ("k = \"漢\"".to_owned(), 5, 2));
    }

    #[test]
    fn snippet_cuts_long_lines_around_the_marker() {
        assert_eq!(snippet("abc = 1", 1, 4), ("abc = 1".to_owned(), 0, 3));
        assert_eq!(snippet("abc", 4, 4), ("abc".to_owned(), 3, 1));
        let long = "x".repeat(1000);
        let (text, start, len) = snippet(&long, 500, 2000);
        assert_eq!(text.chars().count(), 122);
        assert!(text.starts_with('…') && text.ends_with('…'));
        assert_eq!((start, len), (41, 80));
    }

    /// A task listing one credential 200,000 times (a 1 MB policy, twenty-fourth pass) made
    /// 200,000 findings on one line, and the text report turned that whole line into
    /// characters for each of them: 261 s. The window shown is now found from the finding's
    /// bytes: a slice of the line around the span, the same text and marker as before.
    #[test]
    fn a_findings_excerpt_is_a_window_found_from_its_bytes_not_the_whole_line() {
        let line = format!("credentials = [{}]", vec!["\"c\""; 100_000].join(", "));
        let src = format!("version = 1\n{line}\r\nx = 1\n");
        let idx = LineIndex::new(&src);
        for at in [
            src.find("\"c\"").unwrap(),
            src.len() / 2 - (src.len() / 2) % 5 + 2,
            src.rfind("\"c\"").unwrap(),
        ] {
            assert_eq!(&src[at..at + 3], "\"c\"");
            let ex = idx.excerpt(&src, at..at + 3);
            // A slice of the line, within the shown width, marking the span's bytes.
            assert!(ex.text.chars().count() <= EXCERPT_WIDTH, "{ex:?}");
            let off = ex.text.as_ptr() as usize - src.as_ptr() as usize;
            assert_eq!(off + ex.marker.start, at, "{ex:?}");
            assert_eq!(&ex.text[ex.marker.clone()], "\"c\"");
            assert!(ex.cut_before || at < 100, "{ex:?}");
            // What it shows is what the column-based snippet shows.
            let (l, c) = idx.line_col(&src, at);
            let (_, ec) = idx.line_col(&src, at + 3);
            assert_eq!(ex.render(), snippet(idx.line_text(&src, l), c, ec));
        }
        // A span that goes on past its line is marked to the line's end (not its `\r`).
        let last = src.rfind("\"c\"").unwrap();
        let ex = idx.excerpt(&src, last..src.len());
        assert_eq!(&ex.text[ex.marker.clone()], "\"c\"]");
        assert!(!ex.cut_after);
        // An offset inside a byte order mark is the start of line 1.
        let bom = "\u{feff}abc = 1\n";
        let ex = LineIndex::new(bom).excerpt(bom, 1..3);
        assert_eq!((ex.text, ex.marker), ("abc = 1", 0..0));
    }

    #[test]
    fn did_you_mean_suggests_close_names_only() {
        assert_eq!(did_you_mean("scope", ["kind", "scopes"]), Some("scopes"));
        assert_eq!(did_you_mean("zzz", ["kind", "scopes"]), None);
    }
}
