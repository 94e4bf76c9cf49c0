//! The four report formats, each written straight to a (buffered) writer as the findings are
//! walked: no report is built whole in memory, and JSON and SARIF are serialized from small
//! borrowed structs, never a `serde_json::Value` tree. Struct fields are declared in
//! alphabetical order, so the output is the same as a sorted-key JSON printer's and
//! snapshots stay stable.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use serde::ser::{SerializeSeq, Serializer};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::super::error::LineIndex;
use super::{Class, Finding, Report, RuleId, RULES};

/// Version of the JSON schema documented in docs/lint-rules.md.
pub const JSON_SCHEMA: &str = "scopevault-lint/1";

struct Paint {
    on: bool,
}

impl Paint {
    fn wrap(&self, code: &str, s: &str) -> String {
        if self.on {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }
    fn class(&self, c: Class, s: &str) -> String {
        let code = match c {
            Class::Error => "1;31",
            Class::SecurityWarning => "1;35",
            Class::Warning => "1;33",
            Class::Suggestion => "1;36",
        };
        self.wrap(code, s)
    }
    fn gutter(&self, s: &str) -> String {
        self.wrap("1;34", s)
    }
    fn bold(&self, s: &str) -> String {
        self.wrap("1", s)
    }
}

/// "2f1c…": a stable fingerprint of what a finding is about (not where it is), so code
/// scanning tracks it across edits that move lines.
fn fingerprint(f: &Finding) -> String {
    let mut h = Sha256::new();
    // A finding of a rule that can repeat for one credential, task and scopes (a task's
    // runners, schedulers, locations; a location; an exception) is told apart by its detail;
    // any other with no credential, task or scope by its message, which names its subject;
    // findings alike in all of that by their order (`occurrence`, hashed from the second on,
    // so a first finding keeps the fingerprint it had).
    for part in [
        f.rule.as_str(),
        f.credential.as_deref().unwrap_or(""),
        f.task.as_deref().unwrap_or(""),
        &f.scopes.join(","),
    ] {
        h.update(part.as_bytes());
        h.update([0u8]);
    }
    if let Some(d) = &f.detail {
        h.update(b"detail\0");
        h.update(d.as_bytes());
        h.update([0u8]);
    } else if let Some(m) = f.subject_message() {
        h.update(m.as_bytes());
        h.update([0u8]);
    }
    if f.occurrence > 1 {
        h.update(b"occurrence\0");
        h.update(f.occurrence.to_string().as_bytes());
        h.update([0u8]);
    }
    let d = h.finalize();
    d.iter().take(16).fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

use crate::text::escape_for_terminal as escape;

/// `s` as XML text or attribute value, defused for a CI log (a JUnit report may be printed
/// into one): a `[` after `##` is `&#91;`, and the first `:` of a line that would begin with
/// `::` (after a line break the text holds, or at its start) is `&#58;`
/// ([`crate::text::defuse_workflow_commands`]); an XML reader gets the text unchanged.
fn xml_escape(s: &str) -> String {
    crate::text::defuse_workflow_commands(&xml_escape_chars(s), true, ("&#58;", "&#91;"))
        .into_owned()
}

fn xml_escape_chars(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&apos;"),
            // XML 1.0 cannot carry most control characters, nor U+FFFE and U+FFFF (its `Char`
            // production), even as references: replace them.
            c if ((c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r')
                || c == '\u{FFFE}'
                || c == '\u{FFFF}' =>
            {
                o.push('\u{FFFD}')
            }
            c => o.push(c),
        }
    }
    o
}

/// GitHub code scanning rejects a SARIF run with more results than this (its `sarif-limits`
/// table): a report with more keeps this many, the most severe, and says what it left out on
/// stderr and in the run's `invocations` notification.
pub const SARIF_RESULT_LIMIT: usize = 25_000;

/// GitHub code scanning shows at most this many results of a run (the most severe, by its
/// documentation); a report with more says so on stderr.
pub const SARIF_DISPLAY_LIMIT: usize = 5_000;

/// Which results a SARIF report over [`SARIF_RESULT_LIMIT`] keeps: every result of a class more
/// severe than `class`, the first `keep` of `class` in file order, none of a less severe one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SarifCut {
    class: Class,
    keep: usize,
    left_out: usize,
}

/// Where the policy is, as SARIF's `artifactLocation`: a URI relative to the repository root
/// under `uriBaseId` `%SRCROOT%` (and that root, for the run's `originalUriBaseIds`), or an
/// absolute `file://` URI with no base id when the policy lies outside the root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SarifLocation {
    /// The URI, percent-encoded.
    pub uri: String,
    /// `Some("%SRCROOT%")` for a relative URI, `None` for an absolute one.
    pub uri_base_id: Option<&'static str>,
    /// The absolute `file://` URI, ending in `/`, of the directory `%SRCROOT%` stands for, when
    /// it is known (written as the run's `originalUriBaseIds`).
    pub src_root: Option<String>,
}

impl SarifLocation {
    /// The location of the policy file `policy` (as given on the command line, relative to
    /// `cwd`): relative to the repository that holds it — the nearest ancestor of its real
    /// path (symlinks resolved) holding `.git`, a directory or the file of a worktree or
    /// submodule, a submodule's superproject for a submodule ([`working_tree_of`]) —
    /// wherever the lint runs from, so `lint repo/ci/policy.toml` run outside the
    /// repository gives `ci/policy.toml`, as code scanning for that repository expects. A
    /// policy in no repository is placed relative to the working directory's repository root
    /// ([`repository_root`]: its git top level, else the working directory itself), or
    /// absolutely when it lies outside that.
    pub fn of_policy(policy: &Path, cwd: &Path) -> SarifLocation {
        let real = absolute(policy, cwd);
        let holder = real.parent().and_then(working_tree_of);
        match holder {
            Some(root) => SarifLocation::for_policy(&real, root, cwd),
            None => SarifLocation::for_policy(policy, &repository_root(cwd), cwd),
        }
    }

    /// The location of `policy` relative to `root`. Both are made absolute against `cwd` and
    /// normalised lexically (`.` and `..`), and symlinks resolved when the files exist, so
    /// `./p.toml`, `/abs/repo/p.toml` and `sub/../p.toml` all give `p.toml`.
    pub fn for_policy(policy: &Path, root: &Path, cwd: &Path) -> SarifLocation {
        let (policy, root) = (absolute(policy, cwd), absolute(root, cwd));
        match policy.strip_prefix(&root) {
            Ok(rel) if rel.components().all(|c| matches!(c, Component::Normal(_))) => {
                let segs: Vec<String> = rel
                    .components()
                    .map(|c| percent_encode(c.as_os_str().as_bytes()))
                    .collect();
                let root_uri = SarifLocation::absolute(&root).uri;
                SarifLocation {
                    uri: relative_reference(segs),
                    uri_base_id: Some("%SRCROOT%"),
                    // §3.14.14: an absolute base URI ends with a slash.
                    src_root: Some(if root_uri.ends_with('/') {
                        root_uri
                    } else {
                        root_uri + "/"
                    }),
                }
            }
            _ => SarifLocation::absolute(&policy),
        }
    }

    /// An absolute `file://` URI for `path` (which must be absolute), with no base id.
    pub fn absolute(path: &Path) -> SarifLocation {
        let segs: Vec<String> = path
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(percent_encode(s.as_bytes())),
                _ => None,
            })
            .collect();
        SarifLocation {
            uri: format!("file:///{}", segs.join("/")),
            uri_base_id: None,
            src_root: None,
        }
    }

    /// The default when no root is known: the path as given (`./` dropped) relative to
    /// `%SRCROOT%`, or `file://` when it is absolute.
    pub fn from_path(path: &str) -> SarifLocation {
        let p = Path::new(path);
        if p.is_absolute() {
            return SarifLocation::absolute(&normalise(p));
        }
        let segs: Vec<String> = normalise(p)
            .components()
            .map(|c| percent_encode(c.as_os_str().as_bytes()))
            .collect();
        SarifLocation {
            uri: relative_reference(segs),
            uri_base_id: Some("%SRCROOT%"),
            src_root: None,
        }
    }
}

/// `p` made absolute against `cwd`, symlinks resolved when it exists, else normalised
/// lexically.
fn absolute(p: &Path, cwd: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        cwd.join(p)
    };
    std::fs::canonicalize(&joined).unwrap_or_else(|_| normalise(&joined))
}

/// The working tree that holds `dir`, for SARIF's URIs: the nearest ancestor holding `.git`
/// (a directory, or the file of a linked worktree or a submodule), and, while that is a
/// submodule, the superproject holding it. Code scanning places a URI in the repository the
/// workflow checked out (upload-sarif resolves it against the checkout), and a submodule's
/// files are there under its path: placed relative to the submodule, its `policy.toml` had
/// the URI and category of the superproject's own (thirty-third pass).
fn working_tree_of(dir: &Path) -> Option<&Path> {
    let mut tree = dir.ancestors().find(|d| d.join(".git").exists())?;
    while let Some(superproject) = superproject_of(tree) {
        tree = superproject;
    }
    Some(tree)
}

/// The superproject of the working tree `tree` when `tree` is a submodule: its `.git` is a
/// file naming a git directory under the `modules/` directory of the git directory of the
/// nearest working tree above it, where git keeps its submodules' (a linked worktree's `.git`
/// names one under `worktrees/`, and is no submodule).
fn superproject_of(tree: &Path) -> Option<&Path> {
    if !tree.join(".git").symlink_metadata().ok()?.is_file() {
        return None;
    }
    let own = git_dir(tree)?;
    let above = tree
        .parent()?
        .ancestors()
        .find(|d| d.join(".git").exists())?;
    own.starts_with(git_dir(above)?.join("modules"))
        .then_some(above)
}

/// The git directory of the working tree `tree`, canonical: `.git` itself, or the directory
/// a `.git` file names (`gitdir: PATH`, relative to `tree`).
fn git_dir(tree: &Path) -> Option<PathBuf> {
    let dot_git = tree.join(".git");
    if dot_git.is_dir() {
        return std::fs::canonicalize(dot_git).ok();
    }
    let text = std::fs::read_to_string(&dot_git).ok()?;
    let named = text.lines().next()?.strip_prefix("gitdir:")?.trim();
    std::fs::canonicalize(tree.join(named)).ok()
}

/// The working directory's repository root, for a policy in no repository: the nearest
/// ancestor of `dir` holding `.git` (a directory, or a file in a worktree or submodule), else
/// `dir` itself.
pub fn repository_root(dir: &Path) -> PathBuf {
    dir.ancestors()
        .find(|d| d.join(".git").exists())
        .unwrap_or(dir)
        .to_path_buf()
}

/// Whether the policy file `policy` (as given, relative to `cwd`), `read` being the metadata
/// of the file its text was read from, is reached through a symbolic link — the file itself or
/// a directory on its way — to a file outside the repository that holds the path as given: the
/// nearest directory above it, reached without a link, that holds `.git`; with none, the
/// nearest directory above it reached without a link (the given path's own directory, when
/// that is not a link). The lint then quotes no line of it (docs/lint-rules.md): a pull
/// request can commit `policy.toml` as a link to any file on the CI runner
/// (`~/.docker/config.json`), and a parse error would quote its line, token and all, into the
/// CI log. A link that stays inside the repository (`policy.toml` → `ci/prod.toml`) is quoted
/// as a file is. A path given absolutely through a link above the repository (a workspace
/// under a linked directory) counts as a link out too: nothing is quoted, which costs only the
/// source lines.
///
/// Fail-closed: the policy is in only when the real path of the file read is established —
/// the given path resolved, leading to a regular file that is the one read (same device and
/// inode) — and lies in the repository. A link to `/proc/self/fd/3` reaches a file with no
/// such path (a deleted file, a memfd: `/memfd:cred (deleted)`; nineteenth pass: that was
/// taken for no link and quoted), and a path swapped after the read leads to another file:
/// both count as out.
pub fn link_out_of_repository(policy: &Path, read: &std::fs::Metadata, cwd: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    let cwd = std::fs::canonicalize(cwd).unwrap_or_else(|_| cwd.to_path_buf());
    let given = normalise(&cwd.join(policy));
    let the_file_read = |real: &PathBuf| {
        std::fs::metadata(real).is_ok_and(|m| {
            m.is_file() && read.is_file() && m.dev() == read.dev() && m.ino() == read.ino()
        })
    };
    let Some(real) = std::fs::canonicalize(&given).ok().filter(the_file_read) else {
        return true;
    };
    if real == given {
        return false;
    }
    let unlinked = |d: &&Path| std::fs::canonicalize(d).is_ok_and(|r| r == *d);
    let Some(dir) = given.parent() else {
        return true;
    };
    let root = dir
        .ancestors()
        .filter(unlinked)
        .find(|d| d.join(".git").symlink_metadata().is_ok())
        .or_else(|| dir.ancestors().find(unlinked));
    !root.is_some_and(|r| real.starts_with(r))
}

/// `a/./b/../c` → `a/c`, without touching the file system.
fn normalise(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    out.push("..");
                }
            }
            other => out.push(other.as_os_str()),
        }
    }
    out
}

/// RFC 3986 percent-encoding of one path segment, byte by byte: unreserved characters and a
/// few safe sub-delimiters stay, everything else (spaces, `%`, `#`, `?`, non-ASCII bytes) is
/// encoded. The name's own bytes, UTF-8 or not: a name that is not UTF-8 made UTF-8 first
/// had each bad byte `%EF%BF%BD`, a URI naming no file, the same for two names (thirty-third
/// pass).
fn percent_encode(seg: &[u8]) -> String {
    let mut o = String::with_capacity(seg.len());
    for &b in seg {
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b) {
            o.push(b as char);
        } else {
            let _ = write!(o, "%{b:02X}");
        }
    }
    o
}

/// A writer of whole lines of text, each defused for a CI log ([`crate::text::defused`]) as
/// it is written.
struct DefusedLines<'w, W: Write> {
    o: &'w mut W,
    /// The line being written (reused).
    line: String,
}

impl<W: Write> DefusedLines<'_, W> {
    /// Write `args` and a line break.
    fn line(&mut self, args: std::fmt::Arguments) -> io::Result<()> {
        self.line.clear();
        let _ = self.line.write_fmt(args);
        self.o
            .write_all(crate::text::defused(&self.line).as_bytes())?;
        self.o.write_all(b"\n")
    }
}

/// serde_json's pretty printer, with a `[` that follows `##` in a string written as the JSON
/// escape `\u005b` ([`crate::text::defuse_workflow_commands`]): a JSON or SARIF report printed
/// into a CI log (`lint --format json`) holds no `##[add-mask]` command of GitHub Actions'
/// older syntax, and a reader of the JSON gets the same text. A string cannot begin a line
/// (a JSON string holds no raw line break), so `::` needs nothing. serde_json writes a run of
/// characters it does not escape as one fragment, so a `##[` is never split between two.
struct DefusedJson(serde_json::ser::PrettyFormatter<'static>);

impl serde_json::ser::Formatter for DefusedJson {
    fn write_string_fragment<W: ?Sized + Write>(&mut self, w: &mut W, s: &str) -> io::Result<()> {
        let s = crate::text::defuse_workflow_commands(s, false, ("\\u003a", "\\u005b"));
        w.write_all(s.as_bytes())
    }
    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
}

/// `doc` as pretty JSON ([`DefusedJson`]) and a line break.
fn write_json_doc<W: Write, T: Serialize>(w: &mut W, doc: &T) -> io::Result<()> {
    let mut ser = serde_json::Serializer::with_formatter(
        &mut *w,
        DefusedJson(serde_json::ser::PrettyFormatter::new()),
    );
    doc.serialize(&mut ser).map_err(json_io)?;
    w.write_all(b"\n")
}

/// Percent-encoded segments joined as a relative reference: a `:` in the first segment is
/// written `%3A`, since a first segment holding `:` reads as a scheme (`prod:eu.toml` is the
/// URI of scheme `prod`; RFC 3986 §4.2). A later segment keeps its `:`, which a path may hold.
fn relative_reference(mut segs: Vec<String>) -> String {
    if let Some(first) = segs.first_mut() {
        *first = first.replace(':', "%3A");
    }
    segs.join("/")
}

/// Serialize an iterator as a JSON array, item by item.
struct Stream<I>(std::cell::Cell<Option<I>>);

impl<I> Stream<I> {
    fn new(i: I) -> Self {
        Stream(std::cell::Cell::new(Some(i)))
    }
}

impl<I, T> Serialize for Stream<I>
where
    I: Iterator<Item = T>,
    T: Serialize,
{
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let Some(it) = self.0.take() else {
            return s.serialize_seq(Some(0))?.end();
        };
        s.collect_seq(it)
    }
}

#[derive(Serialize)]
struct JsonDoc<'a, F: Serialize> {
    file: &'a str,
    findings: F,
    schema: &'static str,
    summary: JsonSummary,
    tool: Tool,
    usage_rules: UsageRules<'a>,
    vault_rules: bool,
}

/// Whether the usage rules ran, and why not (or what they left out).
#[derive(Serialize)]
struct UsageRules<'a> {
    ran: bool,
    reason: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonSummary {
    error: usize,
    excepted: usize,
    #[serde(rename = "security-warning")]
    security_warning: usize,
    suggestion: usize,
    warning: usize,
}

#[derive(Serialize)]
struct Tool {
    name: &'static str,
    version: &'static str,
}

#[derive(Serialize)]
struct JsonFinding<'a> {
    class: &'static str,
    column: usize,
    credential: Option<&'a str>,
    end_column: usize,
    end_line: usize,
    excepted: bool,
    file: &'a str,
    help: &'a str,
    line: usize,
    message: &'a str,
    origin: Option<&'a str>,
    rule: &'static str,
    scopes: &'a [String],
    task: Option<&'a str>,
}

#[derive(Serialize)]
struct SarifDoc<R: Serialize> {
    #[serde(rename = "$schema")]
    schema: &'static str,
    runs: [R; 1],
    version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRun<'a, Res: Serialize> {
    artifacts: [SarifArtifact<'a>; 1],
    automation_details: Automation,
    column_kind: &'static str,
    invocations: [SarifInvocation; 1],
    #[serde(skip_serializing_if = "Option::is_none")]
    original_uri_base_ids: Option<SrcRoot<'a>>,
    results: Res,
    tool: SarifTool,
}

/// `automationDetails`: the run's code-scanning category.
#[derive(Serialize)]
struct Automation {
    id: String,
}

/// `originalUriBaseIds`: what `%SRCROOT%` stands for.
#[derive(Serialize)]
struct SrcRoot<'a> {
    #[serde(rename = "%SRCROOT%")]
    src_root: BaseUri<'a>,
}

#[derive(Serialize)]
struct BaseUri<'a> {
    uri: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifArtifact<'a> {
    location: ArtifactLocation<'a>,
    mime_type: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ArtifactLocation<'a> {
    uri: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    uri_base_id: Option<&'static str>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifInvocation {
    execution_successful: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_execution_notifications: Vec<SarifNotification>,
}

#[derive(Serialize)]
struct SarifNotification {
    level: &'static str,
    message: SarifOwnedText,
}

#[derive(Serialize)]
struct SarifOwnedText {
    text: String,
}

#[derive(Serialize)]
struct SarifTool {
    driver: SarifDriver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifDriver {
    name: &'static str,
    rules: Vec<SarifRule>,
    semantic_version: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifRule {
    default_configuration: Level,
    full_description: SarifOwnedText,
    help: SarifHelp,
    id: &'static str,
    name: String,
    properties: RuleProps,
    short_description: SarifOwnedText,
}

#[derive(Serialize)]
struct Level {
    level: &'static str,
}

#[derive(Serialize)]
struct SarifHelp {
    markdown: String,
    text: String,
}

#[derive(Serialize)]
struct RuleProps {
    precision: &'static str,
    #[serde(rename = "problem.severity")]
    problem_severity: &'static str,
    #[serde(rename = "security-severity", skip_serializing_if = "Option::is_none")]
    security_severity: Option<&'static str>,
    tags: &'static [&'static str],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult<'a> {
    level: &'static str,
    locations: [SarifLoc<'a>; 1],
    message: SarifOwnedText,
    partial_fingerprints: Fingerprints,
    properties: ResultProps<'a>,
    rule_id: &'static str,
    rule_index: usize,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifLoc<'a> {
    physical_location: Physical<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Physical<'a> {
    artifact_location: ArtifactLocation<'a>,
    region: Region,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    end_column: usize,
    end_line: usize,
    start_column: usize,
    start_line: usize,
}

/// A result's `partialFingerprints`: GitHub code scanning reads only
/// `primaryLocationLineHash` (it ignores other keys, and upload-sarif fills that one from the
/// flagged line's text when it is absent, so an alert would follow the line, not the finding);
/// `scopevaultFinding/v1` carries the same value under our own name for other consumers.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Fingerprints {
    primary_location_line_hash: String,
    #[serde(rename = "scopevaultFinding/v1")]
    v1: String,
}

#[derive(Serialize)]
struct ResultProps<'a> {
    class: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    credential: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<&'a str>,
    scopes: &'a [String],
    #[serde(rename = "security-severity", skip_serializing_if = "Option::is_none")]
    security_severity: Option<&'static str>,
    tags: &'static [&'static str],
    #[serde(skip_serializing_if = "Option::is_none")]
    task: Option<&'a str>,
}

/// serde_json's error as the writer's: the I/O error it carries when it has one (its kind
/// kept, so that a caller can tell a closed pipe from a failed disk), else one of kind
/// `InvalidData`.
fn json_io(e: serde_json::Error) -> io::Error {
    io::Error::from(e)
}

impl Report {
    /// How many results the findings make in SARIF (those not excepted), before a report over
    /// [`SARIF_RESULT_LIMIT`] keeps the most severe.
    pub fn sarif_result_count(&self) -> usize {
        self.findings.iter().filter(|f| !f.excepted).count()
    }

    /// Which results the SARIF report keeps, when it has more than [`SARIF_RESULT_LIMIT`]: the
    /// most severe (errors, then security warnings, then warnings, then suggestions), in file
    /// order within a class.
    pub(crate) fn sarif_cut(&self) -> Option<SarifCut> {
        let total = self.sarif_result_count();
        if total <= SARIF_RESULT_LIMIT {
            return None;
        }
        let counts = self.counts();
        let mut room = SARIF_RESULT_LIMIT;
        for class in Class::ALL {
            let n = counts.of(class);
            if n > room {
                return Some(SarifCut {
                    class,
                    keep: room,
                    left_out: total - SARIF_RESULT_LIMIT,
                });
            }
            room -= n;
        }
        None
    }

    /// The SARIF run's notification when results were left out ([`Report::sarif_cut`]).
    fn sarif_cut_note(&self) -> Option<String> {
        self.sarif_cut().map(|cut| {
            format!(
                "{} of {} results were left out: GitHub code scanning rejects a run with more than {SARIF_RESULT_LIMIT} results, so this report keeps the {SARIF_RESULT_LIMIT} most severe (errors, then security warnings, then warnings, then suggestions; in file order within a class). Every finding still counts for the exit code; the JSON or text report holds them all",
                cut.left_out,
                self.sarif_result_count()
            )
        })
    }

    /// What `lint --format sarif` prints on stderr about GitHub's limits: above
    /// [`SARIF_DISPLAY_LIMIT`] results, that code scanning shows only that many; above
    /// [`SARIF_RESULT_LIMIT`], which results the report left out.
    pub fn sarif_limit_warning(&self) -> Option<String> {
        let n = self.sarif_result_count();
        if let Some(cut) = self.sarif_cut() {
            return Some(format!(
                "the findings make {n} SARIF results; GitHub code scanning rejects a run with more than {SARIF_RESULT_LIMIT}, so the SARIF report keeps the {SARIF_RESULT_LIMIT} most severe (errors, then security warnings, then warnings, then suggestions) and leaves out {} (the least severe {}), and an upload shows only {SARIF_DISPLAY_LIMIT} of those it keeps. The exit code and the summary count every finding; --format json or text lists them all",
                cut.left_out,
                plural_class(cut.class),
            ));
        }
        (n > SARIF_DISPLAY_LIMIT).then(|| {
            format!(
                "the SARIF report holds {n} results; GitHub code scanning shows only {SARIF_DISPLAY_LIMIT} of a run (the most severe): the others are in the report but not on GitHub; fix findings in batches, or read --format json or text"
            )
        })
    }

    /// rustc-style text: each finding with `file:line:col`, the source line and a `^` marker
    /// under the offending value, then the summary line. Excepted findings are left out (the
    /// summary counts them). `color` adds ANSI colours; the CLI passes `true` only on a
    /// terminal and never with `NO_COLOR`.
    pub fn write_text<W: Write>(&self, o: &mut W, color: bool) -> io::Result<()> {
        let p = Paint { on: color };
        let src: &str = &self.source;
        let idx = LineIndex::new(src);
        // Every line goes out defused for a CI log (`crate::text::defused`): the escaping of
        // names and source lines keeps a pull request's `\n::add-mask::` from starting a line,
        // but `##[add-mask]` is a command anywhere in one, and a file name begins the summary.
        let mut o = DefusedLines {
            o,
            line: String::new(),
        };
        for f in self.findings.iter().filter(|f| !f.excepted) {
            // Names, scopes and reasons come from the policy (a pull request's): shown escaped,
            // so that they cannot drive the terminal nor write a CI log's command lines.
            let head = format!("{}[{}]", f.class.as_str(), f.rule);
            o.line(format_args!(
                "{}: {}",
                p.class(f.class, &head),
                p.bold(&escape(&f.message))
            ))?;
            let width = f.end_line.max(f.line).to_string().len();
            let pad = " ".repeat(width);
            o.line(format_args!(
                "{pad}{} {}:{}:{}",
                p.gutter("-->"),
                escape(&self.path),
                f.line,
                f.column
            ))?;
            if !src.is_empty() {
                // Found from the span's bytes: the cost of the window shown, not of the line
                // (many findings on one long line cost no more than on many lines).
                let (text, start, len) = idx.excerpt(src, f.span.clone()).render();
                o.line(format_args!("{pad} {}", p.gutter("|")))?;
                o.line(format_args!(
                    "{} {} {}",
                    p.gutter(&format!("{:>width$}", f.line)),
                    p.gutter("|"),
                    text
                ))?;
                o.line(format_args!(
                    "{pad} {} {}{}",
                    p.gutter("|"),
                    " ".repeat(start),
                    p.class(f.class, &"^".repeat(len))
                ))?;
            }
            o.line(format_args!(
                "{pad} {} help: {}",
                p.gutter("="),
                escape(&f.help)
            ))?;
            o.line(format_args!(""))?;
        }
        if let Some(why) = &self.source_withheld {
            o.line(format_args!("({})", escape(why)))?;
        }
        o.line(format_args!("{}", self.summary()))
    }

    /// JSON, schema `scopevault-lint/1` (docs/lint-rules.md): excepted findings are included
    /// with `"excepted": true`.
    pub fn write_json<W: Write>(&self, w: &mut W) -> io::Result<()> {
        let c = self.counts();
        let path = self.path.as_str();
        let doc = JsonDoc {
            file: path,
            findings: Stream::new(self.findings.iter().map(|f| JsonFinding {
                class: f.class.as_str(),
                column: f.column,
                credential: f.credential.as_deref(),
                end_column: f.end_column,
                end_line: f.end_line,
                excepted: f.excepted,
                file: path,
                help: &f.help,
                line: f.line,
                message: &f.message,
                origin: f.origin(),
                rule: f.rule.as_str(),
                scopes: &f.scopes,
                task: f.task.as_deref(),
            })),
            schema: JSON_SCHEMA,
            summary: JsonSummary {
                error: c.error,
                excepted: c.excepted,
                security_warning: c.security_warning,
                suggestion: c.suggestion,
                warning: c.warning,
            },
            tool: Tool {
                name: "scopevault",
                version: env!("CARGO_PKG_VERSION"),
            },
            usage_rules: UsageRules {
                ran: self.usage_rules_ran,
                reason: self.usage_rules_reason(),
            },
            vault_rules: self.vault_rules_ran,
        };
        write_json_doc(w, &doc)
    }

    /// SARIF 2.1.0 for code scanning: every rule in `tool.driver.rules` (with or without
    /// results), results with physical locations at `loc` and `partialFingerprints`,
    /// `security-severity` and a `security` tag on security findings; excepted findings left
    /// out; `automationDetails.id` `scopevault-lint/<the policy's URI>/`, one code-scanning
    /// category per policy. Over [`SARIF_RESULT_LIMIT`] results, it keeps that many, the most
    /// severe, and the run's `invocations` carries a warning notification saying how many it
    /// left out.
    pub fn write_sarif<W: Write>(&self, w: &mut W, loc: &SarifLocation) -> io::Result<()> {
        let rules: Vec<SarifRule> = RULES
            .iter()
            .map(|r| SarifRule {
                default_configuration: Level {
                    level: r.class.sarif_level(),
                },
                full_description: SarifOwnedText {
                    text: sarif_rule_text(&format!("{} {}", r.short, r.full)),
                },
                // The rule's help in full, in the SARIF itself: no `helpUri` (nor the driver's
                // `informationUri`), as scopevault knows no address of its documentation a
                // reader can reach (before the twenty-eighth pass both named a repository no
                // document names).
                help: SarifHelp {
                    markdown: sarif_markdown(&format!(
                        "**{}**\n\n{}\n\n**Fix:** {}",
                        r.short, r.full, r.help
                    )),
                    text: sarif_rule_text(&format!("{} {} Fix: {}", r.short, r.full, r.help)),
                },
                id: r.id,
                name: pascal(r.id),
                properties: RuleProps {
                    precision: "very-high",
                    problem_severity: match r.class {
                        Class::Error => "error",
                        Class::SecurityWarning | Class::Warning => "warning",
                        Class::Suggestion => "recommendation",
                    },
                    security_severity: r.security_severity,
                    tags: tags(r.class),
                },
                short_description: SarifOwnedText {
                    text: sarif_rule_text(r.short),
                },
            })
            .collect();
        let artifact = || ArtifactLocation {
            uri: &loc.uri,
            uri_base_id: loc.uri_base_id,
        };
        // Over GitHub's limit, the most severe results only (file order within a class).
        let cut = self.sarif_cut();
        let mut kept_of_cut_class = 0usize;
        let mut keep = move |f: &Finding| match cut {
            None => true,
            Some(c) if f.class < c.class => true,
            Some(c) if f.class == c.class => {
                kept_of_cut_class += 1;
                kept_of_cut_class <= c.keep
            }
            Some(_) => false,
        };
        let results = self
            .findings
            .iter()
            .filter(|f| !f.excepted)
            .filter(move |f| keep(f))
            .map(|f| {
                let info = f.rule.info();
                SarifResult {
                    level: f.class.sarif_level(),
                    locations: [SarifLoc {
                        physical_location: Physical {
                            artifact_location: artifact(),
                            region: Region {
                                // On one line, at least one column wide; over several, the
                                // JSON's end (the start column has nothing to do with the
                                // end line: reusing it pointed past the end of that line).
                                end_column: if f.end_line == f.line {
                                    f.end_column.max(f.column + 1)
                                } else {
                                    f.end_column.max(1)
                                },
                                end_line: f.end_line,
                                start_column: f.column,
                                start_line: f.line,
                            },
                        },
                    }],
                    message: SarifOwnedText {
                        text: sarif_message(&format!("{} Help: {}", sentence(&f.message), f.help)),
                    },
                    partial_fingerprints: {
                        let print = fingerprint(f);
                        Fingerprints {
                            primary_location_line_hash: print.clone(),
                            v1: print,
                        }
                    },
                    properties: ResultProps {
                        class: f.class.as_str(),
                        credential: f.credential.as_deref(),
                        origin: f.origin(),
                        scopes: &f.scopes,
                        security_severity: info.security_severity,
                        tags: tags(f.class),
                        task: f.task.as_deref(),
                    },
                    rule_id: info.id,
                    rule_index: f.rule as usize,
                }
            });
        // What a reader of the SARIF alone must know about the run: usage rules asked for
        // (`--audit`) but not applied, or applied to part of the tasks; results left out.
        let mut notes = Vec::new();
        if self.usage_given {
            if let Some(reason) = self.usage_rules_reason() {
                notes.push(SarifNotification {
                    level: if self.usage_rules_ran {
                        "note"
                    } else {
                        "warning"
                    },
                    message: SarifOwnedText {
                        text: sarif_message(reason),
                    },
                });
            }
        }
        if let Some(text) = self.sarif_cut_note() {
            notes.push(SarifNotification {
                level: "warning",
                message: SarifOwnedText {
                    text: sarif_message(&text),
                },
            });
        }
        // The lint ran to its end: findings are results, not a failed execution.
        let invocations = [SarifInvocation {
            execution_successful: true,
            tool_execution_notifications: notes,
        }];
        let doc = SarifDoc {
            schema: "https://json.schemastore.org/sarif-2.1.0.json",
            runs: [SarifRun {
                artifacts: [SarifArtifact {
                    location: artifact(),
                    mime_type: "application/toml",
                }],
                // One category per policy file: code scanning replaces a category's alerts
                // with each upload, and upload-sarif refuses several runs of one tool with one
                // category, so the runs of several policies of a repository (one SARIF each,
                // uploaded together) need their own. The trailing `/` makes the whole id the
                // category (GitHub takes what precedes the last `/`).
                automation_details: Automation {
                    id: format!("scopevault-lint/{}/", loc.uri),
                },
                column_kind: "unicodeCodePoints",
                invocations,
                original_uri_base_ids: loc.src_root.as_deref().map(|uri| SrcRoot {
                    src_root: BaseUri { uri },
                }),
                results: Stream::new(results),
                tool: SarifTool {
                    driver: SarifDriver {
                        name: "scopevault",
                        rules,
                        semantic_version: env!("CARGO_PKG_VERSION"),
                    },
                },
            }],
            version: "2.1.0",
        };
        write_json_doc(w, &doc)
    }

    /// Why rule `r` did not run, if it did not: it needs `--with-vault` or `--audit`, or the
    /// audit logs given could not judge (the evidence's note).
    fn not_run(&self, r: &super::RuleInfo) -> Option<String> {
        if r.needs_vault && !self.vault_rules_ran {
            Some("not run: it needs --with-vault (vault metadata)".to_owned())
        } else if r.needs_audit && !self.usage_rules_ran {
            Some(if self.usage_given {
                format!(
                    "not run: {}",
                    self.usage_rules_reason()
                        .unwrap_or("the audit logs could not judge")
                )
            } else {
                "not run: it needs --audit LOG (usage evidence)".to_owned()
            })
        } else {
            None
        }
    }

    /// JUnit XML for CI dashboards: one test case per finding (a failure when its class blocks
    /// at `deny`, skipped when excepted, passed otherwise with the message in `system-out`),
    /// one passing case `no findings` per rule that ran and found nothing, and one skipped case
    /// `not run` (its message saying why) per rule that did not run. The counts in the header
    /// come first, so the findings are walked twice (once to count), never buffered.
    pub fn write_junit<W: Write>(&self, w: &mut W, deny: Class) -> io::Result<()> {
        let (mut tests, mut failures, mut skipped) = (0usize, 0usize, 0usize);
        let mut per_rule = vec![0usize; RULES.len()];
        for f in &self.findings {
            per_rule[f.rule as usize] += 1;
            tests += 1;
            if f.excepted {
                skipped += 1;
            } else if f.class.blocks_at(deny) {
                failures += 1;
            }
        }
        for r in RULES.iter().filter(|r| per_rule[r.rule as usize] == 0) {
            tests += 1;
            if self.not_run(r).is_some() {
                skipped += 1;
            }
        }
        let path = xml_escape(&self.path);
        write!(
            w,
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"scopevault lint\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n  <testsuite name=\"{path}\" tests=\"{tests}\" failures=\"{failures}\" errors=\"0\" skipped=\"{skipped}\">\n"
        )?;
        // Findings grouped by rule in table order: one pass per rule that has findings.
        for r in RULES {
            if per_rule[r.rule as usize] == 0 {
                // A rule that did not run is skipped, not passed: a dashboard must not count
                // it as checked.
                match self.not_run(r) {
                    Some(why) => writeln!(
                        w,
                        "    <testcase classname=\"scopevault.lint.{}\" name=\"not run\" file=\"{path}\"><skipped message=\"{}\"/></testcase>",
                        r.id,
                        xml_escape(&why),
                    )?,
                    None => writeln!(
                        w,
                        "    <testcase classname=\"scopevault.lint.{}\" name=\"no findings\" file=\"{path}\"/>",
                        r.id,
                    )?,
                }
                continue;
            }
            for f in self.findings.iter().filter(|f| f.rule == r.rule) {
                let name = xml_escape(&subject(f));
                write!(
                    w,
                    "    <testcase classname=\"scopevault.lint.{}\" name=\"{name}\" file=\"{path}\" line=\"{}\">",
                    r.id, f.line
                )?;
                if f.excepted {
                    write!(
                        w,
                        "<skipped message=\"excepted by an [[exceptions]] entry\"/>"
                    )?;
                } else {
                    let body = format!(
                        "{}:{}:{}: {}[{}]: {}\nhelp: {}",
                        self.path,
                        f.line,
                        f.column,
                        f.class.as_str(),
                        f.rule,
                        f.message,
                        f.help
                    );
                    if f.class.blocks_at(deny) {
                        write!(
                            w,
                            "<failure type=\"{}\" message=\"{}\">{}</failure>",
                            f.class.as_str(),
                            xml_escape(&f.message),
                            xml_escape(&body)
                        )?;
                    } else {
                        write!(w, "<system-out>{}</system-out>", xml_escape(&body))?;
                    }
                }
                w.write_all(b"</testcase>\n")?;
            }
        }
        w.write_all(b"  </testsuite>\n</testsuites>\n")
    }

    /// [`Report::write_text`] into a string.
    pub fn render_text(&self, color: bool) -> String {
        to_string(|w| self.write_text(w, color))
    }

    /// [`Report::write_json`] into a string.
    pub fn render_json(&self) -> String {
        to_string(|w| self.write_json(w))
    }

    /// [`Report::write_sarif`] into a string, the location taken from the report's path
    /// ([`SarifLocation::from_path`]).
    pub fn render_sarif(&self) -> String {
        to_string(|w| self.write_sarif(w, &SarifLocation::from_path(&self.path)))
    }

    /// [`Report::write_junit`] into a string.
    pub fn render_junit(&self, deny: Class) -> String {
        to_string(|w| self.write_junit(w, deny))
    }
}

fn to_string(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
    let mut v = Vec::new();
    // Writing to a Vec cannot fail, and every format writes UTF-8.
    let _ = f(&mut v);
    String::from_utf8(v).unwrap_or_default()
}

/// "warnings", "security warnings", … (for messages).
fn plural_class(c: Class) -> &'static str {
    match c {
        Class::Error => "errors",
        Class::SecurityWarning => "security warnings",
        Class::Warning => "warnings",
        Class::Suggestion => "suggestions",
    }
}

fn tags(c: Class) -> &'static [&'static str] {
    match c {
        Class::SecurityWarning => &["security", "least-privilege"],
        Class::Error => &["correctness"],
        Class::Warning => &["maintainability"],
        Class::Suggestion => &["style"],
    }
}

/// `scope-exceeds-task` → `ScopeExceedsTask` (SARIF's `name` is an identifier-like label).
fn pascal(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// `s` as a SARIF `message.text`: every `[` and `]` written `\[` and `\]` (SARIF 2.1.0
/// §3.11.6). A viewer renders `[text](target)` in a message as an embedded link, and the
/// text is the policy's (a pull request's): an exception's `rule = "](0) [approved by
/// security](https://evil.example/phish) [x"` made a clickable link of the pull request's
/// choosing in the code-scanning alert, or a link to a location no result has, which makes
/// the SARIF invalid (twenty-fourth pass). Our own brackets (`[credentials.x]`) are literal
/// text too, and escaped alike. A `\` is written `\\` (§3.11.6 again): left alone, the policy's
/// `\[text\](url)` came out `\\[text\\](url)`, an escaped backslash then a real embedded link
/// (twenty-eighth pass). A `{` or `}` is doubled (§3.11.5: outside a placeholder a literal
/// brace is `{{`, `}}`): a message has no placeholders, and the policy's `{0}` (or our own
/// help's `runners = { users = … }`) read as one, to be filled from `arguments` it has not.
fn sarif_message(s: &str) -> String {
    sarif_escaped(s, true)
}

/// `s` as the plain text of a rule's `shortDescription`, `fullDescription` or `help` (each a
/// `multiformatMessageString`, SARIF 2.1.0 §3.12): escaped as [`sarif_message`] but with
/// braces as they are. §3.11.5's placeholders and doubled braces belong to a `message`
/// object (§3.11), whose `arguments` fill them; a rule's text is never filled, and its help's
/// ``Add `runners = {{ users = ["checkpoint"] }}` `` was invalid TOML to copy (twenty-eighth
/// pass's re-attacker).
fn sarif_rule_text(s: &str) -> String {
    sarif_escaped(s, false)
}

/// `s` with `[`, `]` and `\\` escaped with a `\\`, and `{`, `}` doubled when `braces`.
fn sarif_escaped(s: &str, braces: bool) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '[' | ']' | '\\' => out.push('\\'),
            '{' | '}' if braces => out.push(c),
            _ => {}
        }
        out.push(c);
    }
    out
}

/// `s` (GitHub Markdown) as a rule's `help.markdown` (§3.12.4): outside code spans every
/// `\\`, `[` and `]` escaped with a `\\` (Markdown's escapes; in a code span they are literal
/// already, and a `\\` would show); braces as they are (see [`sarif_rule_text`]).
fn sarif_markdown(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    let mut in_code = false;
    for c in s.chars() {
        match c {
            '`' => in_code = !in_code,
            '[' | ']' | '\\' if !in_code => out.push('\\'),
            _ => {}
        }
        out.push(c);
    }
    out
}

fn sentence(s: &str) -> String {
    if s.ends_with('.') {
        s.to_owned()
    } else {
        format!("{s}.")
    }
}

/// The JUnit test-case name: "task a, credential b", then what tells the finding from the
/// others of its rule (classname) — the scopes (unless they follow from the credential and
/// task), the detail, the message when nothing else names the subject, "#2" for a repeat — so
/// that no two test cases of one report have the same classname and name.
fn subject(f: &Finding) -> String {
    let mut parts = Vec::new();
    if let Some(t) = &f.task {
        parts.push(format!("task {t}"));
    }
    if let Some(c) = &f.credential {
        parts.push(format!("credential {c}"));
    }
    // A credential's excess for a task, and its wildcards, follow from the two names.
    let derived = matches!(
        f.rule,
        RuleId::ScopeExceedsTask | RuleId::HighRiskScopeUnneeded | RuleId::WildcardScope
    );
    if !derived && !f.scopes.is_empty() {
        parts.push(format!("scopes {}", f.scopes.join(" ")));
    }
    if let Some(d) = &f.detail {
        parts.push(d.clone());
    }
    if let Some(m) = f.subject_message() {
        parts.push(m.to_owned());
    }
    if f.occurrence > 1 {
        parts.push(format!("#{}", f.occurrence));
    }
    parts.join(", ")
}
