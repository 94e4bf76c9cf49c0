//! Scrubbing one file: streaming for text, [`super::zip`] for archives, a listing for binary
//! files. Memory is bounded by [`CHUNK`] plus the longest form (zip: the largest member).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::sync::Arc;

use rustix::fd::OwnedFd;
use rustix::fs::{AtFlags, Mode, OFlags};

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
    place: Place,
    file: File,
    before: Stamp,
    meta: std::fs::Metadata,
    tmp: Temp,
    counts: Vec<(String, u64)>,
    json_broken: Option<String>,
}

/// How a [`Pending`] replacement ended.
pub struct Finished {
    /// The file.
    pub place: Place,
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
        let outcome = replace(&self.place, &self.file, self.before, &self.meta, self.tmp);
        Finished {
            place: self.place,
            outcome,
            counts: self.counts,
            json_broken: self.json_broken,
        }
    }
}

pub(crate) use crate::paths::{stamp, Stamp};

/// Where a file is: its directory, opened from the root given on the command line without
/// following a symbolic link in any component below it, and its name there. Every operation on
/// the file goes through these (`openat`, `renameat`, `unlinkat`, each `O_NOFOLLOW` or
/// `AT_SYMLINK_NOFOLLOW`): a directory swapped for a link while the scrub runs cannot send a
/// read, a rewrite or a drop outside the tree, and a file swapped for a FIFO is opened
/// non-blocking and refused as not a regular file.
#[derive(Clone)]
pub struct Place {
    dir: Arc<OwnedFd>,
    name: OsString,
    /// The path shown in the summary.
    pub shown: PathBuf,
}

impl Place {
    /// `name` in the open directory `dir`, shown as `shown`.
    pub(crate) fn new(dir: Arc<OwnedFd>, name: &OsStr, shown: PathBuf) -> Place {
        Place {
            dir,
            name: name.to_owned(),
            shown,
        }
    }

    /// Open the file for reading: not through a link, and without blocking on a FIFO.
    pub(crate) fn open(&self) -> std::io::Result<File> {
        let fd = rustix::fs::openat(
            &*self.dir,
            self.name.as_os_str(),
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(File::from(fd))
    }

    /// What the name in the directory is now (not followed).
    fn stamp_now(&self) -> Option<Stamp> {
        rustix::fs::statat(&*self.dir, self.name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
            .ok()
            .map(|st| {
                Stamp(
                    st.st_dev,
                    st.st_ino,
                    st.st_size as u64,
                    st.st_mtime,
                    st.st_mtime_nsec as i64,
                    st.st_ctime,
                    st.st_ctime_nsec as i64,
                )
            })
    }

    /// Remove the file (the binary policy `drop`).
    pub(crate) fn remove(&self) -> std::io::Result<()> {
        Ok(rustix::fs::unlinkat(
            &*self.dir,
            self.name.as_os_str(),
            AtFlags::empty(),
        )?)
    }

    /// A new temporary file in the same directory, for an atomic replacement.
    pub(crate) fn temp(&self) -> anyhow::Result<Temp> {
        let mut rnd = [0u8; 8];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut rnd);
        let name = OsString::from(format!(
            "{TEMP_PREFIX}{}",
            data_encoding::HEXLOWER.encode(&rnd)
        ));
        let fd = rustix::fs::openat(
            &*self.dir,
            name.as_os_str(),
            OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .with_context(|| {
            format!(
                "cannot create a temporary file beside {}",
                self.shown.display()
            )
        })?;
        Ok(Temp {
            dir: self.dir.clone(),
            name: Some(name),
            file: File::from(fd),
        })
    }
}

/// The start of the name of a scrub's temporary file ([`Place::temp`]), before 16 lowercase
/// hex digits.
pub(crate) const TEMP_PREFIX: &str = ".scopevault-redact-";

/// A temporary file made by [`Place::temp`]: removed on drop unless it replaced its file.
pub struct Temp {
    dir: Arc<OwnedFd>,
    name: Option<OsString>,
    file: File,
}

impl Temp {
    /// The open file.
    pub fn as_file(&self) -> &File {
        &self.file
    }
}

impl Drop for Temp {
    fn drop(&mut self) {
        if let Some(name) = self.name.take() {
            let _ = rustix::fs::unlinkat(&*self.dir, name.as_os_str(), AtFlags::empty());
        }
    }
}

/// True if the file (or whatever the name is now) is still the one read, unchanged.
pub(crate) fn unchanged(place: &Place, file: &File, before: Stamp) -> bool {
    let now_fd = file.metadata().map(|m| stamp(&m)).ok();
    now_fd == Some(before) && place.stamp_now() == Some(before)
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

/// Give the scrubbed copy `tmp` the owner, group and mode of the original (`meta`), through
/// its descriptor. `redact` run as root made every file it rewrote root's, so the check's own
/// user could no longer write, or with a 0600 file read, its artefacts. A caller other than
/// root can keep only a group it is in; when the owner is not kept, the set-user-ID and
/// set-group-ID bits are not carried over to a file of another owner.
fn keep_owner_and_mode(tmp: &File, meta: &std::fs::Metadata) -> anyhow::Result<()> {
    use rustix::fs::{Gid, Uid};
    let now = tmp.metadata()?;
    let mut mode = meta.permissions().mode() & 0o7777;
    if (now.uid(), now.gid()) != (meta.uid(), meta.gid()) {
        // Ownership first: a change of owner clears the set-ID bits set before it.
        let owner = Some(Uid::from_raw(meta.uid()));
        let group = Some(Gid::from_raw(meta.gid()));
        if rustix::fs::fchown(tmp, owner, group).is_err() {
            let _ = rustix::fs::fchown(tmp, None, group);
            let now = tmp.metadata()?;
            if now.uid() != meta.uid() {
                mode &= !0o4000;
            }
            if now.gid() != meta.gid() {
                mode &= !0o2000;
            }
        }
    }
    tmp.set_permissions(std::fs::Permissions::from_mode(mode))?;
    Ok(())
}

/// The names of the extended attributes of `f` this caller can see (NUL-separated); none on
/// a file system without them.
fn xattr_names(f: &File) -> rustix::io::Result<Vec<u8>> {
    loop {
        let size = match rustix::fs::flistxattr_query(f) {
            Ok(n) => n,
            Err(rustix::io::Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut buf = vec![0u8; size];
        match rustix::fs::flistxattr(f, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            // Grown since the query: ask again.
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// The value of the extended attribute `name` of `f`.
pub(crate) fn xattr_value(f: &File, name: &OsStr) -> rustix::io::Result<Vec<u8>> {
    loop {
        let mut buf = vec![0u8; rustix::fs::fgetxattr_query(f, name)?];
        match rustix::fs::fgetxattr(f, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(rustix::io::Errno::RANGE) => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Give the scrubbed copy `tmp` the extended attributes of the original `orig`, after its
/// owner and mode ([`keep_owner_and_mode`]): its POSIX ACL (`system.posix_acl_access`, whose
/// mask the mode's group bits are under an ACL) and `user.` attributes, and take away any the
/// copy has that the original has not (an ACL inherited from the directory's default ACL).
/// Rewritten with the mode alone, a file with `group::---` and `user:bob:r--` became
/// `group::r--` without an ACL: the owning group gained read access, bob lost it, and its
/// `user.` attributes were gone (twenty-eighth pass). An attribute that cannot be copied is an
/// error: the file is left as it was, never replaced by one with other access.
pub(super) fn keep_xattrs(orig: &File, tmp: &File) -> anyhow::Result<()> {
    let what = "cannot give the scrubbed copy the original's extended attributes";
    // The attribute by its name, and an ACL as such: an unsettable `security.capability` was
    // reported as "(its ACL)" (twenty-eighth pass's re-attacker).
    let one = |name: &OsStr| {
        let name = name.to_string_lossy();
        let acl = if name.starts_with("system.posix_acl_") {
            " (its POSIX ACL)"
        } else {
            ""
        };
        format!("cannot give the scrubbed copy the original's extended attribute `{name}`{acl}")
    };
    let names = xattr_names(orig).context(what)?;
    let names: Vec<&OsStr> = names
        .split(|b| *b == 0)
        .filter(|n| !n.is_empty())
        .map(std::os::unix::ffi::OsStrExt::from_bytes)
        .collect();
    let theirs = xattr_names(tmp).context(what)?;
    for extra in theirs.split(|b| *b == 0).filter(|n| !n.is_empty()) {
        let extra: &OsStr = std::os::unix::ffi::OsStrExt::from_bytes(extra);
        if !names.contains(&extra) {
            rustix::fs::fremovexattr(tmp, extra).with_context(|| {
                format!(
                    "cannot take the extended attribute `{}` the original has not off the scrubbed copy",
                    extra.to_string_lossy()
                )
            })?;
        }
    }
    for name in names {
        let value = xattr_value(orig, name).with_context(|| one(name))?;
        if let Err(e) = rustix::fs::fsetxattr(tmp, name, &value, rustix::fs::XattrFlags::empty()) {
            // One the copy has already (a security label given at creation) is kept.
            if xattr_value(tmp, name).ok().as_deref() != Some(&value[..]) {
                return Err(std::io::Error::from(e)).with_context(|| one(name));
            }
        }
    }
    Ok(())
}

/// The inode flags (`chattr`, `FS_IOC_GETFLAGS`) [`keep_inode_flags`] carries over: a rewrite
/// dropped them, so a `nodump` (`d`) log went into the next backup (twenty-eighth pass's
/// re-attacker). Not `i` and `a` (such a file cannot be replaced at all), nor `C` (no-COW,
/// which takes effect only on an empty file).
fn kept_inode_flags() -> rustix::fs::IFlags {
    use rustix::fs::IFlags;
    IFlags::NODUMP
        | IFlags::NOATIME
        | IFlags::SYNC
        | IFlags::DIRSYNC
        | IFlags::COMPRESSED
        | IFlags::SECURE_REMOVAL
        | IFlags::UNRM
        | IFlags::NOTAIL
        | IFlags::PROJECT_INHERIT
}

/// Give the scrubbed copy `tmp` the original's inode flags among [`kept_inode_flags`] (and
/// take off those it inherited that the original has not). A file system without inode flags
/// has nothing to keep; a flag that cannot be set is an error: the file is left as it was.
fn keep_inode_flags(orig: &File, tmp: &File) -> anyhow::Result<()> {
    use rustix::io::Errno;
    let theirs = match rustix::fs::ioctl_getflags(orig) {
        Ok(f) => f,
        Err(Errno::NOTTY | Errno::NOTSUP | Errno::INVAL | Errno::NOSYS) => return Ok(()),
        Err(e) => {
            return Err(std::io::Error::from(e))
                .context("cannot read the original's inode flags (chattr)")
        }
    };
    let ours = match rustix::fs::ioctl_getflags(tmp) {
        Ok(f) => f,
        Err(e) => {
            return Err(std::io::Error::from(e))
                .context("cannot read the scrubbed copy's inode flags (chattr)")
        }
    };
    let kept = kept_inode_flags();
    let want = (ours - kept) | (theirs & kept);
    if want != ours {
        rustix::fs::ioctl_setflags(tmp, want)
            .map_err(std::io::Error::from)
            .with_context(|| {
                format!(
                    "cannot give the scrubbed copy the original's inode flags (chattr, {:#x})",
                    (theirs & kept).bits()
                )
            })?;
    }
    Ok(())
}

/// Replace `place` by `tmp` (same owner, group and mode as `meta`, and the extended attributes
/// and ACL of `file`, set through its descriptor), after a last check that the file is unchanged.
pub(crate) fn replace(
    place: &Place,
    file: &File,
    before: Stamp,
    meta: &std::fs::Metadata,
    mut tmp: Temp,
) -> anyhow::Result<Outcome> {
    tmp.as_file().sync_all()?;
    if meta.nlink() > 1 {
        return rewrite_in_place(place, file, before, meta, &tmp);
    }
    keep_owner_and_mode(tmp.as_file(), meta)?;
    keep_xattrs(file, tmp.as_file())?;
    keep_inode_flags(file, tmp.as_file())?;
    if !unchanged(place, file, before) {
        return Ok(Outcome::Changed);
    }
    let name = tmp.name.take().expect("a temporary file not yet renamed");
    if let Err(e) = rustix::fs::renameat(
        &*place.dir,
        name.as_os_str(),
        &*place.dir,
        place.name.as_os_str(),
    ) {
        tmp.name = Some(name);
        return Err(std::io::Error::from(e))
            .with_context(|| format!("cannot replace {}", place.shown.display()));
    }
    Ok(Outcome::Done)
}

/// Overwrite the file at `place`, which has other hard links, with the scrubbed copy `tmp`,
/// through its own inode: a copy renamed over one name left the old inode, secret and all,
/// behind every other link (twenty-eighth pass). Owner, mode, ACL and attributes are those of
/// the inode, untouched. Unlike the rename this is not atomic: a crash while it runs can leave
/// the file part scrubbed, part old. When the file cannot be opened for writing the scrub
/// fails for it, saying that its other links keep the secret.
fn rewrite_in_place(
    place: &Place,
    file: &File,
    before: Stamp,
    meta: &std::fs::Metadata,
    tmp: &Temp,
) -> anyhow::Result<Outcome> {
    let others = meta.nlink() - 1;
    let what = || {
        format!(
            "cannot rewrite {} in place, and it has {others} other hard link(s), which would keep the secret: left as it was; make it writable to this user, or remove its other links",
            place.shown.display()
        )
    };
    let fd = rustix::fs::openat(
        &*place.dir,
        place.name.as_os_str(),
        OFlags::WRONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(std::io::Error::from)
    .with_context(what)?;
    let out = File::from(fd);
    if !unchanged(place, file, before) || stamp(&out.metadata()?) != before {
        return Ok(Outcome::Changed);
    }
    let mut src = tmp.as_file();
    rustix::fs::seek(src, rustix::fs::SeekFrom::Start(0))?;
    let len = src.metadata()?.len();
    let mut dst = &out;
    let midway = || {
        format!(
            "rewriting {} in place failed part way (it has {others} other hard link(s)): it may still hold part of the secret; run the scrub again",
            place.shown.display()
        )
    };
    std::io::copy(&mut src, &mut dst).with_context(midway)?;
    out.set_len(len).with_context(midway)?;
    out.sync_all().with_context(midway)?;
    Ok(Outcome::Done)
}

/// Whether the file has a hole before its end (`SEEK_HOLE`); its offset is put back at 0.
/// A file system that cannot tell reports none.
fn has_holes(file: &File, len: u64) -> std::io::Result<bool> {
    use rustix::fs::SeekFrom;
    let hole = rustix::fs::seek(file, SeekFrom::Hole(0)).unwrap_or(len);
    rustix::fs::seek(file, SeekFrom::Start(0))?;
    Ok(hole < len)
}

/// Bytes at a time that [`SparseOut`] leaves as a hole when they are all zero.
const HOLE_BLOCK: usize = 4096;

/// The writer of a scrubbed copy: with `sparse` (the original has holes), each block of
/// [`HOLE_BLOCK`] zero bytes is skipped rather than written, and [`SparseOut::finish`] sets
/// the length, so the copy keeps holes where the original had them. A sparse log of 12 KB of
/// text and 6 GB of holes was rewritten dense, taking 6 GB of disk (twenty-eighth pass).
struct SparseOut<'a> {
    file: &'a File,
    pos: u64,
    sparse: bool,
}

impl SparseOut<'_> {
    /// Give the copy its full length (a hole at its end is not written).
    fn finish(self) -> std::io::Result<()> {
        if self.sparse {
            self.file.set_len(self.pos)?;
        }
        Ok(())
    }
}

impl Write for SparseOut<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        use std::os::unix::fs::FileExt;
        if !self.sparse {
            self.file.write_all_at(buf, self.pos)?;
        } else {
            let mut at = self.pos;
            for block in buf.chunks(HOLE_BLOCK) {
                if block.len() < HOLE_BLOCK || block.iter().any(|b| *b != 0) {
                    self.file.write_all_at(block, at)?;
                }
                at += block.len() as u64;
            }
        }
        self.pos += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One attempt at scrubbing the file at `place`.
pub(crate) fn scrub_file_once(
    s: &Scrubber,
    place: &Place,
    summary: &mut Summary,
    defer: Option<&std::sync::mpsc::SyncSender<Pending>>,
) -> anyhow::Result<Outcome> {
    let mut file = place.open().context("cannot open")?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        summary.skipped.push(place.shown.display().to_string());
        return Ok(Outcome::Done);
    }
    let before = stamp(&meta);
    let mut head = vec![0u8; 8192];
    let n = read_full(&mut file, &mut head)?;
    head.truncate(n);
    drop(file);
    let file = place.open().context("cannot open")?;
    if stamp(&file.metadata()?) != before {
        return Ok(Outcome::Changed);
    }

    if super::looks_zip(&head) {
        return super::zip::scrub_archive(s, place, file, before, &meta, summary);
    }
    if super::looks_binary(&head) {
        let seen = contains_any(s.patterns(), &file)?;
        if !unchanged(place, &file, before) {
            return Ok(Outcome::Changed);
        }
        let shown = place.shown.display().to_string();
        if s.binary_policy() == BinaryPolicy::Drop {
            place.remove().context("cannot drop the binary file")?;
            summary.dropped += 1;
        } else if seen {
            summary.errors.push(super::binary_holds_a_form(&shown));
        }
        summary.binary.push((shown, seen));
        return Ok(Outcome::Done);
    }
    if super::zip::ends_in_an_archive(&file, meta.len())? {
        // Text before a zip (a prefixed or self-extracting archive, which zip readers open):
        // a text scrub would miss its compressed members and move the offsets of its stored
        // ones, and an archive rewrite would drop the text. Left as it is, loudly.
        summary.errors.push(format!(
            "{}: a zip archive follows other data in this file: its members cannot be scrubbed in place; left as it was",
            place.shown.display()
        ));
        return Ok(Outcome::Done);
    }
    if super::embedded::is_html_name(&place.shown) {
        if let Some(outcome) = super::embedded::scrub_page(s, place, before, &meta, summary)? {
            return Ok(outcome);
        }
    }
    if !contains_any(s.patterns(), &file)? {
        return Ok(if unchanged(place, &file, before) {
            Outcome::Done
        } else {
            Outcome::Changed
        });
    }
    // Second pass: write the scrubbed copy beside the file.
    let file = place.open().context("cannot open")?;
    if stamp(&file.metadata()?) != before {
        return Ok(Outcome::Changed);
    }
    let sparse = has_holes(&file, meta.len())?;
    let tmp = place.temp()?;
    let counts = {
        let out = SparseOut {
            file: tmp.as_file(),
            pos: 0,
            sparse,
        };
        let mut w = std::io::BufWriter::with_capacity(1 << 16, out);
        let c = scrub_stream(s.patterns(), &file, &mut w)?;
        w.into_inner().map_err(|e| e.into_error())?.finish()?;
        c
    };
    let json_broken = (super::json::is_json_name(&place.shown)
        && super::json::valid_reader(&place.open()?)
        && !super::json::valid_reader(tmp.as_file()))
    .then(|| {
        format!(
            "{}: scrubbed, but it no longer parses as JSON",
            place.shown.display()
        )
    });
    let pending = Pending {
        place: place.clone(),
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
