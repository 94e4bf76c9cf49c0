//! Scrubbing one file: streaming for text, [`super::zip`] for archives, a listing for binary
//! files. Memory is bounded by [`CHUNK`] plus the longest form (zip: the largest member).

use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::Context;
use zeroize::Zeroizing;

use super::{BinaryPolicy, Scrubber, Summary};
use crate::secret::{Masker, Patterns};

/// Bytes read at a time.
pub const CHUNK: usize = 1 << 20;

/// How one attempt at a file ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Scrubbed (or nothing to scrub).
    Done,
    /// The file changed while it was read: try again.
    Changed,
    /// Scrubbed; handed to a finisher thread, which reports how it ended.
    Deferred,
}

/// A scrubbed copy waiting to replace its file: made durable, checked and renamed by
/// [`Pending::finish`] (on a finisher thread of [`Scrubber::scrub_paths`]).
pub struct Pending {
    path: std::path::PathBuf,
    file: File,
    before: Stamp,
    meta: std::fs::Metadata,
    tmp: tempfile::NamedTempFile,
    counts: Vec<(String, u64)>,
    json_broken: Option<String>,
}

/// How a [`Pending`] replacement ended.
pub struct Finished {
    /// The file.
    pub path: std::path::PathBuf,
    /// `Done`, `Changed` (the original changed: scrub it again), or why it failed.
    pub outcome: anyhow::Result<Outcome>,
    /// Replacements per label (to count when `Done`).
    pub counts: Vec<(String, u64)>,
    /// The error to report when `Done`: the file no longer parses as JSON.
    pub json_broken: Option<String>,
}

impl Pending {
    /// `fsync` the copy, check that the original is unchanged, rename the copy over it.
    pub fn finish(self) -> Finished {
        let outcome = replace(&self.path, &self.file, self.before, &self.meta, self.tmp);
        Finished {
            path: self.path,
            outcome,
            counts: self.counts,
            json_broken: self.json_broken,
        }
    }
}

/// What identifies a file's content for the change check: device, inode, size, mtime, ctime.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) struct Stamp(u64, u64, u64, i64, i64, i64, i64);

pub(crate) fn stamp(m: &std::fs::Metadata) -> Stamp {
    Stamp(
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

/// Open `path` for reading without following a symbolic link.
pub(crate) fn open_nofollow(path: &Path) -> std::io::Result<File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
}

/// True if the file (or whatever the path names now) is still the one read, unchanged.
pub(crate) fn unchanged(path: &Path, file: &File, before: Stamp) -> bool {
    let now_fd = file.metadata().map(|m| stamp(&m)).ok();
    let now_path = std::fs::symlink_metadata(path).map(|m| stamp(&m)).ok();
    now_fd == Some(before) && now_path == Some(before)
}

/// True if any form occurs in what `r` yields (streamed, with an overlap of the longest form).
pub fn contains_any(patterns: &Patterns, mut r: impl Read) -> std::io::Result<bool> {
    if patterns.is_empty() {
        return Ok(false);
    }
    let keep = patterns.longest().saturating_sub(1);
    let mut buf = Zeroizing::new(vec![0u8; CHUNK + keep]);
    let mut have = 0usize;
    loop {
        let n = read_full(&mut r, &mut buf[have..])?;
        let end = have + n;
        if patterns.is_match(&buf[..end]) {
            return Ok(true);
        }
        if n == 0 || end < buf.len() {
            return Ok(false);
        }
        let tail = keep.min(end);
        buf.copy_within(end - tail..end, 0);
        have = tail;
    }
}

/// Read until `buf` is full or the end of the input.
pub(super) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Copy `r` to `w`, masking every form; returns the replacements per label.
pub fn scrub_stream(
    patterns: &std::sync::Arc<Patterns>,
    mut r: impl Read,
    mut w: impl Write,
) -> std::io::Result<Vec<(String, u64)>> {
    let mut masker = Masker::with_patterns(patterns.clone());
    let mut buf = Zeroizing::new(vec![0u8; CHUNK]);
    let mut out = Zeroizing::new(Vec::with_capacity(CHUNK + 4096));
    loop {
        let n = read_full(&mut r, &mut buf)?;
        if n == 0 {
            break;
        }
        out.clear();
        masker.feed_into(&buf[..n], &mut out);
        w.write_all(&out)?;
    }
    w.write_all(&masker.finish())?;
    Ok(masker.counts())
}

/// A temporary file in `path`'s directory, for an atomic replacement of `path`.
pub(crate) fn temp_beside(path: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    tempfile::Builder::new()
        .prefix(".scopevault-redact-")
        .tempfile_in(dir)
        .with_context(|| format!("cannot create a temporary file in {}", dir.display()))
}

/// Replace `path` by `tmp` (same mode as `meta`), after a last check that `path` is unchanged.
pub(crate) fn replace(
    path: &Path,
    file: &File,
    before: Stamp,
    meta: &std::fs::Metadata,
    tmp: tempfile::NamedTempFile,
) -> anyhow::Result<Outcome> {
    tmp.as_file().sync_all()?;
    std::fs::set_permissions(
        tmp.path(),
        std::fs::Permissions::from_mode(meta.permissions().mode() & 0o7777),
    )?;
    if !unchanged(path, file, before) {
        return Ok(Outcome::Changed);
    }
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(Outcome::Done)
}

/// One attempt at scrubbing `path`.
pub(crate) fn scrub_file_once(
    s: &Scrubber,
    path: &Path,
    summary: &mut Summary,
    defer: Option<&std::sync::mpsc::SyncSender<Pending>>,
) -> anyhow::Result<Outcome> {
    let mut file = open_nofollow(path).context("cannot open")?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        summary.skipped.push(path.display().to_string());
        return Ok(Outcome::Done);
    }
    let before = stamp(&meta);
    let mut head = vec![0u8; 8192];
    let n = read_full(&mut file, &mut head)?;
    head.truncate(n);
    drop(file);
    let file = open_nofollow(path).context("cannot open")?;
    if stamp(&file.metadata()?) != before {
        return Ok(Outcome::Changed);
    }

    if super::looks_zip(&head) {
        return super::zip::scrub_archive(s, path, file, before, &meta, summary);
    }
    if super::looks_binary(&head) {
        let seen = contains_any(s.patterns(), &file)?;
        if !unchanged(path, &file, before) {
            return Ok(Outcome::Changed);
        }
        summary.binary.push((path.display().to_string(), seen));
        if s.binary_policy() == BinaryPolicy::Drop {
            std::fs::remove_file(path).context("cannot drop the binary file")?;
            summary.dropped += 1;
        }
        return Ok(Outcome::Done);
    }
    if !contains_any(s.patterns(), &file)? {
        return Ok(if unchanged(path, &file, before) {
            Outcome::Done
        } else {
            Outcome::Changed
        });
    }
    // Second pass: write the scrubbed copy beside the file.
    let file = open_nofollow(path).context("cannot open")?;
    if stamp(&file.metadata()?) != before {
        return Ok(Outcome::Changed);
    }
    let tmp = temp_beside(path)?;
    let counts = {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, tmp.as_file());
        let c = scrub_stream(s.patterns(), &file, &mut w)?;
        w.flush()?;
        c
    };
    let json_broken = (super::json::is_json_name(path)
        && super::json::valid_reader(&open_nofollow(path)?)
        && !super::json::valid_reader(tmp.as_file()))
    .then(|| {
        format!(
            "{}: scrubbed, but it no longer parses as JSON",
            path.display()
        )
    });
    let pending = Pending {
        path: path.to_owned(),
        file,
        before,
        meta,
        tmp,
        counts,
        json_broken,
    };
    let pending = match defer {
        Some(tx) => match tx.send(pending) {
            Ok(()) => return Ok(Outcome::Deferred),
            // No finisher left (cannot happen while `scrub_paths` runs): finish here.
            Err(std::sync::mpsc::SendError(p)) => p,
        },
        None => pending,
    };
    let f = pending.finish();
    let outcome = f.outcome?;
    if outcome == Outcome::Done {
        if let Some(e) = f.json_broken {
            summary.errors.push(e);
        }
        summary.rewritten += 1;
        summary.add_counts(&f.counts);
    }
    Ok(outcome)
}
