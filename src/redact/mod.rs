//! Scrubbing secret values out of artefacts a check leaves behind: HAR files, Playwright traces
//! (zip files), console logs, JUnit reports (`scopevault exec --artifacts DIR`,
//! `scopevault redact`).
//!
//! Every form of every value ([`crate::secret::secret_forms`], the same list `exec` masks its
//! output with) becomes `[redacted:CRED.FIELD]` in the form's own encoding, so JSON stays
//! JSON, XML stays well-formed and a URL stays a URL. Each file is rewritten atomically (a
//! temporary file in the same directory, then a rename); a file that changes while it is
//! scrubbed is read again, and reported if it keeps changing. Files that cannot be scrubbed
//! as text (images, video) are listed, and kept or dropped as asked.
//!
//! - [`text`]: streaming scrub of a text file, memory bounded by the chunk size;
//! - [`zip`]: each member of an archive scrubbed, the archive rewritten, resources named by
//!   the SHA-1 of their content renamed and the references to them updated;
//! - [`json`]: checks that a JSON or HAR file that parsed before still parses after.

pub mod json;
pub mod text;
pub mod zip;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::secret::Patterns;

/// What to do with a file that cannot be scrubbed as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum BinaryPolicy {
    /// Leave it, with a warning on stderr (the default).
    #[default]
    Keep,
    /// Delete it (a zip member: leave it out of the rewritten archive).
    Drop,
}

/// What a scrub did. Holds names and counts only, never a value.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    /// Files looked at (zip archives count once).
    pub files: u64,
    /// Files rewritten because they held a form of a value.
    pub rewritten: u64,
    /// Replacements per label (`CRED.FIELD`).
    pub hits: BTreeMap<String, u64>,
    /// Binary files (or zip members, as `archive!member`) that were not scrubbed, with whether
    /// a form of a value was seen in their raw bytes.
    pub binary: Vec<(String, bool)>,
    /// Binary files or members dropped (`--artifacts-binary=drop`).
    pub dropped: u64,
    /// Resources renamed in archives because their SHA-1 name changed.
    pub renamed: u64,
    /// Symbolic links and special files skipped (never followed).
    pub skipped: Vec<String>,
    /// Files that could not be scrubbed, with why (no value in the message).
    pub errors: Vec<String>,
}

impl Summary {
    /// Add `counts` (label, hits) to the totals.
    pub fn add_counts(&mut self, counts: &[(String, u64)]) {
        for (label, n) in counts {
            if *n > 0 {
                *self.hits.entry(label.clone()).or_default() += n;
            }
        }
    }

    /// Total replacements.
    pub fn total_hits(&self) -> u64 {
        self.hits.values().sum()
    }

    /// The counts a `scrub_report` carries to the daemon's audit log (each clamped to the
    /// protocol's bounds; labels beyond the most it takes are left out).
    pub fn counts(&self) -> crate::protocol::ScrubCounts {
        use crate::protocol::{MAX_SCRUB_COUNT, MAX_SCRUB_LABELS};
        let clamp = |n: u64| n.min(MAX_SCRUB_COUNT);
        let dropped = self.dropped.min(self.binary.len() as u64);
        crate::protocol::ScrubCounts {
            files: clamp(self.files),
            rewritten: clamp(self.rewritten),
            failed: clamp(self.errors.len() as u64),
            binary_kept: clamp(self.binary.len() as u64 - dropped),
            binary_dropped: clamp(self.dropped),
            binary_with_form: clamp(self.binary.iter().filter(|(_, seen)| *seen).count() as u64),
            hits: self
                .hits
                .iter()
                .take(MAX_SCRUB_LABELS)
                .map(|(l, n)| (l.clone(), clamp(*n)))
                .collect(),
        }
    }

    /// True if every file was scrubbed (no errors).
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

impl fmt::Display for Summary {
    /// The report `exec --artifacts` and `redact` print on stderr.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "scopevault: artefacts: {} files scanned, {} rewritten, {} replacements{}",
            self.files,
            self.rewritten,
            self.total_hits(),
            if self.renamed > 0 {
                format!(", {} hashed resources renamed", self.renamed)
            } else {
                String::new()
            }
        )?;
        for (label, n) in &self.hits {
            writeln!(f, "scopevault:   {label}: {n}")?;
        }
        for (path, seen) in &self.binary {
            writeln!(
                f,
                "scopevault: warning: binary file not scrubbed{}: {path}{}",
                if *seen {
                    " (A FORM OF A SECRET IS IN IT)"
                } else {
                    ""
                },
                if self.dropped > 0 { " (dropped)" } else { "" }
            )?;
        }
        if !self.binary.is_empty() && self.dropped == 0 {
            writeln!(
                f,
                "scopevault: hint: mask screenshots at capture time (Playwright `mask=[...]`, \
                 tracing with screenshots=False), or drop binary files with \
                 --artifacts-binary=drop"
            )?;
        }
        for s in &self.skipped {
            writeln!(f, "scopevault: warning: not a regular file, skipped: {s}")?;
        }
        for e in &self.errors {
            writeln!(f, "scopevault: error: {e}")?;
        }
        Ok(())
    }
}

/// Threads that finish rewritten files (`fsync`, check, rename) for [`Scrubber::scrub_paths`];
/// also the most files waiting for them.
pub const FINISHERS: usize = 4;

/// Scrubs files with one compiled set of forms.
#[derive(Debug, Clone)]
pub struct Scrubber {
    patterns: Arc<Patterns>,
    binary: BinaryPolicy,
    member_limit: u64,
}

/// Is this a file we scrub as text? Binary: a NUL byte in the first 8 KiB, or the magic of a
/// common image, video, font or compressed format.
pub fn looks_binary(head: &[u8]) -> bool {
    const MAGIC: &[&[u8]] = &[
        b"\x89PNG",
        b"\xff\xd8\xff",
        b"GIF8",
        b"RIFF",
        b"\x1a\x45\xdf\xa3", // webm / mkv
        b"%PDF",
        b"\x1f\x8b", // gzip
        b"wOFF",
        b"wOF2",
        b"\x00\x00\x00",
    ];
    MAGIC.iter().any(|m| head.starts_with(m)) || head[..head.len().min(8192)].contains(&0)
}

/// Is this a zip archive (local file header or empty-archive end record)?
pub fn looks_zip(head: &[u8]) -> bool {
    head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06")
}

impl Scrubber {
    /// A scrubber for `patterns`, handling binary files as `binary` says.
    pub fn new(patterns: Arc<Patterns>, binary: BinaryPolicy) -> Scrubber {
        Scrubber {
            patterns,
            binary,
            member_limit: zip::MAX_MEMBER,
        }
    }

    /// The largest zip member, unpacked, that is scrubbed: at most [`zip::MAX_MEMBER`] (a
    /// larger `bytes` is cut to it). A larger member leaves its archive as it was, reported
    /// as not scrubbed.
    pub fn with_member_limit(mut self, bytes: u64) -> Scrubber {
        self.member_limit = bytes.min(zip::MAX_MEMBER);
        self
    }

    /// See [`Scrubber::with_member_limit`].
    pub fn member_limit(&self) -> u64 {
        self.member_limit
    }

    /// The compiled forms.
    pub fn patterns(&self) -> &Arc<Patterns> {
        &self.patterns
    }

    /// Scrub every regular file under each path (a file or a directory, walked without
    /// following symbolic links).
    ///
    /// The last step of each rewritten text file — `fsync` of its scrubbed copy, the check
    /// that the original did not change, the rename — runs on [`FINISHERS`] threads while the
    /// next files are scrubbed: on a busy disk each `fsync` waits milliseconds, which would
    /// otherwise add up file after file. A file found changed at that point is scrubbed again
    /// (once, here), as [`Scrubber::scrub_file`] does.
    pub fn scrub_paths(&self, paths: &[PathBuf]) -> Summary {
        let mut summary = Summary::default();
        let mut finished = Vec::new();
        let (tx, rx) = std::sync::mpsc::sync_channel::<text::Pending>(FINISHERS);
        let rx = std::sync::Mutex::new(rx);
        std::thread::scope(|scope| {
            let (done_tx, done_rx) = std::sync::mpsc::channel();
            for _ in 0..FINISHERS {
                let (rx, done_tx) = (&rx, done_tx.clone());
                scope.spawn(move || loop {
                    let next = rx.lock().unwrap_or_else(|e| e.into_inner()).recv();
                    let Ok(p) = next else { break };
                    if done_tx.send(p.finish()).is_err() {
                        break;
                    }
                });
            }
            drop(done_tx);
            for p in paths {
                self.walk(p, &mut summary, &tx);
            }
            drop(tx);
            finished.extend(done_rx.iter());
        });
        for f in finished {
            match f.outcome {
                Ok(text::Outcome::Done) => {
                    if let Some(e) = f.json_broken {
                        summary.errors.push(e);
                    }
                    summary.rewritten += 1;
                    summary.add_counts(&f.counts);
                }
                Ok(_) => self.attempts(&f.path, &mut summary, None, 1),
                Err(e) => summary.errors.push(format!("{}: {e:#}", f.path.display())),
            }
        }
        summary
    }

    fn walk(
        &self,
        path: &Path,
        summary: &mut Summary,
        defer: &std::sync::mpsc::SyncSender<text::Pending>,
    ) {
        let meta = match std::fs::symlink_metadata(path) {
            Ok(m) => m,
            Err(e) => {
                summary
                    .errors
                    .push(format!("{}: cannot read: {e}", path.display()));
                return;
            }
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            let mut entries: Vec<PathBuf> = match std::fs::read_dir(path) {
                Ok(rd) => rd.filter_map(|e| e.ok().map(|e| e.path())).collect(),
                Err(e) => {
                    summary
                        .errors
                        .push(format!("{}: cannot list: {e}", path.display()));
                    return;
                }
            };
            entries.sort();
            for e in entries {
                self.walk(&e, summary, defer);
            }
        } else if ft.is_file() {
            summary.files += 1;
            self.attempts(path, summary, Some(defer), 0);
        } else {
            summary.skipped.push(path.display().to_string());
        }
    }

    /// Scrub one regular file in place (atomically).
    pub fn scrub_file(&self, path: &Path, summary: &mut Summary) {
        summary.files += 1;
        self.attempts(path, summary, None, 0);
    }

    /// Attempts `from..2` at a file: one that changed while scrubbed is read again once,
    /// then reported. With `defer`, a rewritten text file is finished by a finisher thread
    /// (which reports it to [`Scrubber::scrub_paths`]).
    fn attempts(
        &self,
        path: &Path,
        summary: &mut Summary,
        defer: Option<&std::sync::mpsc::SyncSender<text::Pending>>,
        from: u32,
    ) {
        for attempt in from..2 {
            match text::scrub_file_once(self, path, summary, defer) {
                Ok(text::Outcome::Done | text::Outcome::Deferred) => return,
                Ok(text::Outcome::Changed) if attempt == 0 => continue,
                Ok(text::Outcome::Changed) => {
                    summary.errors.push(format!(
                        "{}: changed while being scrubbed (twice); left as it is",
                        path.display()
                    ));
                    return;
                }
                Err(e) => {
                    summary.errors.push(format!("{}: {e:#}", path.display()));
                    return;
                }
            }
        }
    }

    /// The binary policy.
    pub fn binary_policy(&self) -> BinaryPolicy {
        self.binary
    }
}
