//! Zip archives (Playwright traces): each member scrubbed, the archive rewritten beside the
//! original and renamed over it.
//!
//! Playwright stores network bodies and snapshot resources as `resources/<sha1>[.ext]`, named
//! by the SHA-1 of their content, and refers to them by that name from `trace.trace` and
//! `trace.network`. A resource whose content changes is renamed to the SHA-1 of its new
//! content (`<sha1>-1`, `-2`, … when a member already has that name: `rename`) and every
//! reference to the old name in the other members is updated, so the trace still opens. A
//! reference is the resource's whole file name (`<sha1>[-k][.ext]`) between bytes no such name
//! holds (the quotes of a JSON string, the `/` of `resources/`): a name inside a longer one
//! (`<sha1>` in `<sha1>-1.html`, as an archive scrubbed a second time holds) is another
//! resource's, and is left alone (`replace_references`).
//! Memory is bounded by the largest member: each is read whole, scrubbed and
//! written to the new archive before the next is read (hashed resources first, so that their
//! renames are known before the members that refer to them; the members' order in the
//! rewritten archive is that one). A member that unpacks to more than [`MAX_MEMBER`] (a zip
//! bomb: a few KiB that inflate to gigabytes) is not scrubbed: the archive is left as it was
//! and reported as not scrubbed.
//!
//! A member that is itself a zip archive (a Playwright blob report keeps each test's trace as
//! `resources/<sha1>.zip`) is scrubbed the same way, member by member, up to [`MAX_NESTING`]
//! archives deep, its members counted against the outer archive's total; an archive holding a
//! deeper one is left as it was and reported as not scrubbed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Write};

use anyhow::Context;
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

use super::text::{replace, Outcome, Place, Stamp};
use super::{BinaryPolicy, Scrubber, Summary};
use crate::secret::Masker;

/// A byte a resource's file name may hold; a reference to one is bounded by other bytes.
fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')
}

/// A hashed resource's name, `DIR/<sha1>[-k][.ext]`, split.
struct Hashed<'a> {
    /// Up to and with the last `/` (empty at the archive's top).
    dir: &'a str,
    /// The 40 lowercase hex digits of the SHA-1 its content was named by.
    sha1: &'a str,
    /// The whole file name after `dir`: what a reference names.
    base: &'a str,
    /// From the first `.` of `base` on (empty without one).
    ext: &'a str,
}

/// The member's name split as a hashed resource's, if it is one: its file name is a SHA-1 (40
/// lowercase hex digits), then `-k` (a renamed copy, see [`rename`]: an archive scrubbed a
/// second time holds them), then an extension, all of it bytes a name may hold
/// ([`is_name_byte`]).
fn hashed_name(name: &str) -> Option<Hashed<'_>> {
    let (dir, base) = match name.rfind('/') {
        Some(i) => name.split_at(i + 1),
        None => ("", name),
    };
    let stem_len = base.find('.').unwrap_or(base.len());
    let (stem, ext) = base.split_at(stem_len);
    let sha1 = stem.get(..40)?;
    let copy = &stem[40..];
    let ok = sha1.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        && (copy.is_empty()
            || copy.len() > 1
                && copy.starts_with('-')
                && copy[1..].bytes().all(|b| b.is_ascii_digit()))
        && base.bytes().all(is_name_byte);
    ok.then_some(Hashed {
        dir,
        sha1,
        base,
        ext,
    })
}

/// `text` with every reference to a renamed resource replaced: a whole run of name bytes
/// ([`is_name_byte`]) equal to an old file name in `renames` becomes the new one. A run is
/// the whole name or nothing: `<sha1>.html` is not replaced inside `<sha1>-1.html` nor inside
/// `x<sha1>.html`. `None` when there is none to replace.
fn replace_references(
    text: &[u8],
    renames: &HashMap<String, String>,
) -> Option<Zeroizing<Vec<u8>>> {
    let shortest = renames.keys().map(String::len).min()?;
    let mut out: Option<Zeroizing<Vec<u8>>> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < text.len() {
        if !is_name_byte(text[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < text.len() && is_name_byte(text[i]) {
            i += 1;
        }
        if i - start < shortest {
            continue;
        }
        // A run of name bytes is ASCII.
        let run = std::str::from_utf8(&text[start..i]).unwrap_or_default();
        if let Some(new) = renames.get(run) {
            let out = out.get_or_insert_with(|| Zeroizing::new(Vec::with_capacity(text.len())));
            out.extend_from_slice(&text[copied..start]);
            out.extend_from_slice(new.as_bytes());
            copied = i;
        }
    }
    let mut out = out?;
    out.extend_from_slice(&text[copied..]);
    Some(out)
}

/// Largest member, unpacked, that is scrubbed (it is held in memory while it is).
pub const MAX_MEMBER: u64 = 256 << 20;

/// Read a member whole into a buffer zeroed on drop, refusing one that unpacks to more than
/// `limit` bytes as soon as it does. `declared` (the archive's word for the size) only sizes
/// the first allocation, at most 16 MiB; the buffer grows by copy-and-zero.
fn read_member(
    m: &mut impl Read,
    declared: u64,
    limit: u64,
    name: &str,
) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let first = declared.min(limit).min(16 << 20) as usize;
    let mut data = Zeroizing::new(Vec::with_capacity(first));
    let mut chunk = Zeroizing::new(vec![0u8; 64 * 1024]);
    loop {
        let n = super::text::read_full(m, &mut chunk)
            .with_context(|| format!("cannot read member {name}"))?;
        if n == 0 {
            return Ok(data);
        }
        if (data.len() + n) as u64 > limit {
            anyhow::bail!(
                "member {name} unpacks to more than {} MiB, the most that is scrubbed: the archive is left as it was",
                limit >> 20
            );
        }
        crate::secret::extend_zeroizing(&mut data, &chunk[..n], usize::MAX);
    }
}

/// All members of one archive together may unpack to this many times the member limit.
pub const MAX_TOTAL_FACTOR: u64 = 4;

/// Archives inside an archive are scrubbed this many levels deep; an archive holding a deeper
/// one is left as it was, and reported.
pub const MAX_NESTING: usize = 4;

/// An anonymous in-memory file holding `bytes` (the archive's reader wants a file).
pub(crate) fn memory_file(name: &str, bytes: &[u8]) -> anyhow::Result<File> {
    use std::io::Seek;
    let fd = rustix::fs::memfd_create(name, rustix::fs::MemfdFlags::CLOEXEC)
        .context("cannot make an in-memory file")?;
    let mut f = File::from(fd);
    f.write_all(bytes)?;
    f.rewind()?;
    Ok(f)
}

/// Refuse an archive whose members' compressed data overlap: no archiver writes one, and it
/// is how a small file makes many members that each unpack one big stream (a zip bomb that
/// stays under the member limit).
fn refuse_overlapping_members(archive: &mut ::zip::ZipArchive<&File>) -> anyhow::Result<()> {
    let mut spans: Vec<(u64, u64)> = Vec::with_capacity(archive.len());
    for i in 0..archive.len() {
        let m = archive.by_index_raw(i)?;
        if m.compressed_size() > 0 {
            spans.push((
                m.data_start(),
                m.data_start().saturating_add(m.compressed_size()),
            ));
        }
    }
    spans.sort_unstable();
    if spans.windows(2).any(|w| w[1].0 < w[0].1) {
        anyhow::bail!(
            "its members share compressed data (a zip bomb): the archive is left as it was"
        );
    }
    Ok(())
}

/// The offset of the end-of-central-directory record in the last bytes of `file` (`len`
/// long): its signature, with the comment length it declares ending exactly at the end.
fn end_record(file: &File, len: u64) -> std::io::Result<Option<(Vec<u8>, usize)>> {
    use std::os::unix::fs::FileExt;
    let from = len.saturating_sub(22 + 0xffff);
    let mut tail = vec![0u8; (len - from) as usize];
    file.read_exact_at(&mut tail, from)?;
    let at = (0..tail.len().saturating_sub(21)).rev().find(|&i| {
        tail[i..i + 4] == *b"PK\x05\x06"
            && usize::from(u16::from_le_bytes([tail[i + 20], tail[i + 21]])) == tail.len() - i - 22
    });
    Ok(at.map(|at| (tail, at)))
}

/// Whether `file` ends in a zip archive's end record (so a zip reader opens it, whatever is
/// before the archive).
pub(crate) fn ends_in_an_archive(file: &File, len: u64) -> std::io::Result<bool> {
    Ok(len >= 22 && end_record(file, len)?.is_some())
}

/// Refuse an archive whose end record counts more entries than the reader lists: the zip
/// reader keeps one member per name, so a second member of the same name (which `unzip` and
/// Python still extract) would go unscrubbed.
fn refuse_duplicate_names(file: &File, listed: usize) -> anyhow::Result<()> {
    let Some((tail, at)) = end_record(file, file.metadata()?.len())? else {
        return Ok(());
    };
    let total = u16::from_le_bytes([tail[at + 10], tail[at + 11]]);
    // 0xffff: the count is in the ZIP64 record, which the reader itself checks.
    if total != 0xffff && usize::from(total) > listed {
        anyhow::bail!(
            "it lists {total} members but only {listed} different names: members with the same name would not all be scrubbed, so the archive is left as it was"
        );
    }
    Ok(())
}

fn sha1_hex(data: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(&Sha1::digest(data))
}

/// The name hashed resource `old` takes now that its content's SHA-1 is `new`, and its new
/// file name (what references to `old.base` become): `DIR/new.ext`, or, when a member of the
/// archive already has that name or a renamed one took it, `DIR/new-1.ext`, `-2`, … the first
/// that none has. A crafted archive can hold the name a rename wants (a resource beside its
/// own scrubbed copy), and two resources can scrub to the same content: the new archive
/// cannot hold two members of one name, and one name for two members would make a reader
/// open one of them for both. `taken`: every name of the archive and the renames so far; the
/// name returned is added.
fn rename(old: &Hashed, new: &str, taken: &mut HashSet<String>) -> (String, String) {
    let mut base = format!("{new}{}", old.ext);
    let mut k = 0u64;
    loop {
        let candidate = format!("{}{base}", old.dir);
        if taken.insert(candidate.clone()) {
            return (candidate, base);
        }
        k += 1;
        base = format!("{new}-{k}{}", old.ext);
    }
}

/// What [`scrub_members`] did to one archive.
pub(crate) struct Members {
    /// Some member changed (or was dropped): the rewritten archive differs.
    pub changed: bool,
    /// Replacements per label.
    pub counts: BTreeMap<String, u64>,
    /// Binary members (shown name, whether a form is in them).
    pub binary: Vec<(String, bool)>,
    /// Binary members dropped.
    pub dropped: u64,
    /// Hashed resources renamed.
    pub renamed: u64,
    /// What went wrong with single members (the archive was still rewritten).
    pub errors: Vec<String>,
}

/// Scrub the members of the archive in `file` into a new archive written to `out`, each
/// member read, scrubbed and written before the next is read; `shown` names the archive in
/// the summary (`shown!member`). `out` holds a complete archive when this returns `Ok`,
/// whether or not anything changed.
pub(crate) fn scrub_members(
    s: &Scrubber,
    file: &File,
    out: &File,
    shown: &str,
) -> anyhow::Result<Members> {
    // All members together may unpack to at most this, those of archives inside it included:
    // a bomb of many members each just under the member limit costs that much work, then is
    // refused.
    let mut budget = s.member_limit().saturating_mul(MAX_TOTAL_FACTOR);
    scrub_members_within(s, file, out, shown, 0, &mut budget)
}

/// A member that is itself a zip archive, `depth` archives deep: scrubbed into a new archive
/// as [`scrub_members`] does, within what is left of the outer archive's `budget`. Returns the
/// new archive's bytes, or `None` when `data` is not a readable archive (the caller handles it
/// as a binary member).
fn scrub_nested(
    s: &Scrubber,
    data: &[u8],
    shown: &str,
    depth: usize,
    budget: &mut u64,
) -> anyhow::Result<Option<(Zeroizing<Vec<u8>>, Members)>> {
    use std::io::Seek;
    let input = memory_file("scopevault-redact-nested-in", data)?;
    if ::zip::ZipArchive::new(&input).is_err() {
        return Ok(None);
    }
    let mut output = memory_file("scopevault-redact-nested-out", &[])?;
    let m = scrub_members_within(s, &input, &output, shown, depth, budget)?;
    drop(input);
    output.rewind()?;
    let mut bytes = Zeroizing::new(Vec::new());
    output.read_to_end(&mut bytes)?;
    Ok(Some((bytes, m)))
}

/// [`scrub_members`] of an archive `depth` archives deep, counting what its members unpack to
/// against `budget`.
fn scrub_members_within(
    s: &Scrubber,
    file: &File,
    out: &File,
    shown: &str,
    depth: usize,
    budget: &mut u64,
) -> anyhow::Result<Members> {
    let mut archive = ::zip::ZipArchive::new(file).context("not a readable zip archive")?;
    let n = archive.len();
    refuse_overlapping_members(&mut archive)?;
    refuse_duplicate_names(file, n)?;
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut binary: Vec<(String, bool)> = Vec::new();
    let mut dropped = 0u64;
    // Old file name -> new file name of resources whose content changed (the first rename of
    // a file name, should two directories hold it).
    let mut renames: HashMap<String, String> = HashMap::new();
    let mut renamed_here = 0u64;
    // Every member's name, and each rename's as it is made ([`rename`]).
    let mut taken: HashSet<String> = archive.file_names().map(str::to_owned).collect();
    let mut changed = false;
    let mut errors: Vec<String> = Vec::new();
    // Resources renamed inside the archives in this one.
    let mut renamed_inside = 0u64;
    // Hashed resources first, so that the renames are known before the other members refer
    // to them. Members are written in that order, one at a time, as soon as each is
    // scrubbed: memory holds one member (and its scrubbed copy), never the archive.
    let mut order: Vec<usize> = (0..n).collect();
    {
        let mut hashed = vec![false; n];
        for (i, h) in hashed.iter_mut().enumerate() {
            *h = hashed_name(archive.by_index_raw(i)?.name()).is_some();
        }
        order.sort_by_key(|&i| !hashed[i]);
    }
    // Written whether or not anything changes (unchanged members are copied compressed, as
    // they are); the caller discards it when nothing did.
    let mut w = ::zip::ZipWriter::new(std::io::BufWriter::with_capacity(1 << 16, out));
    for &i in &order {
        let (name, data) = {
            let mut m = archive.by_index(i).context("cannot read a member")?;
            if m.is_dir() {
                drop(m);
                w.raw_copy_file(archive.by_index_raw(i)?)?;
                continue;
            }
            let name = m.name().to_owned();
            let declared = m.size();
            let limit = s.member_limit().min(*budget);
            let data = read_member(&mut m, declared, limit, &name).map_err(|e| {
                if limit < s.member_limit() {
                    anyhow::anyhow!(
                        "its members unpack to more than {} MiB together, the most that is scrubbed in one archive: the archive is left as it was",
                        s.member_limit().saturating_mul(MAX_TOTAL_FACTOR) >> 20
                    )
                } else {
                    e
                }
            })?;
            *budget -= data.len() as u64;
            (name, data)
        };
        let member_shown = format!("{shown}!{name}");
        // An archive inside the archive: its members scrubbed, the archive rewritten.
        let nested = if !super::looks_zip(&data) {
            None
        } else if depth < MAX_NESTING {
            scrub_nested(s, &data, &member_shown, depth + 1, budget)
                .with_context(|| format!("in the archive {name} inside it"))?
        } else {
            // Its members are compressed: whether a form is in it cannot be told without
            // opening it, so it is not passed as a binary member.
            anyhow::bail!(
                "the archive {name} inside it is more than {MAX_NESTING} archives deep, the most that is scrubbed: the archive is left as it was"
            );
        };
        if let Some((rebuilt, m)) = nested {
            for (label, k) in &m.counts {
                *counts.entry(label.clone()).or_default() += k;
            }
            let kept = kept_a_form(s, &m.binary);
            binary.extend(m.binary);
            dropped += m.dropped;
            renamed_inside += m.renamed;
            errors.extend(m.errors);
            let result: &[u8] = if m.changed { &rebuilt } else { &data };
            // What no member of it holds (its comment, a member's name) is not scrubbed.
            if s.patterns().is_match(result) && !kept {
                errors.push(remains(&member_shown));
            }
            if !m.changed {
                drop((data, rebuilt));
                w.raw_copy_file(archive.by_index_raw(i)?)?;
                continue;
            }
            changed = true;
            let mut new_name = name.clone();
            if let Some(old) = hashed_name(&name) {
                if sha1_hex(&data) == old.sha1 {
                    let (renamed, base) = rename(&old, &sha1_hex(&rebuilt), &mut taken);
                    new_name = renamed;
                    renames.entry(old.base.to_owned()).or_insert(base);
                    renamed_here += 1;
                }
            }
            drop(data);
            write_member(&mut w, new_name, &rebuilt)?;
            continue;
        }
        if super::looks_zip(&data) || super::looks_binary(&data[..data.len().min(8192)]) {
            let seen = s.patterns().is_match(&data);
            if s.binary_policy() == BinaryPolicy::Drop {
                dropped += 1;
                changed = true;
            } else {
                if seen {
                    errors.push(super::binary_holds_a_form(&member_shown));
                }
                drop(data);
                w.raw_copy_file(archive.by_index_raw(i)?)?;
            }
            binary.push((member_shown, seen));
            continue;
        }
        // One automaton pass over the member, fed in chunks so that no third copy is made.
        let mut masker = Masker::with_patterns(s.patterns().clone());
        let mut scrubbed = Zeroizing::new(Vec::with_capacity(data.len() + 4096));
        for chunk in data.chunks(super::text::CHUNK) {
            masker.feed_into(chunk, &mut scrubbed);
        }
        scrubbed.extend_from_slice(&masker.finish());
        let hits: u64 = masker.counts().iter().map(|(_, n)| n).sum();
        for (label, k) in masker.counts() {
            if k > 0 {
                *counts.entry(label).or_default() += k;
            }
        }
        // References to renamed resources (only members that are not resources themselves).
        if hashed_name(&name).is_none() {
            if let Some(replaced) = replace_references(&scrubbed, &renames) {
                scrubbed = replaced;
            }
        }
        if scrubbed[..] == data[..] {
            drop((data, scrubbed));
            w.raw_copy_file(archive.by_index_raw(i)?)?;
            continue;
        }
        changed = true;
        if super::json::is_json_lines_name(&name)
            && super::json::valid_lines(&data)
            && !super::json::valid_lines(&scrubbed)
        {
            errors.push(format!(
                "{member_shown}: scrubbed, but its lines no longer parse as JSON"
            ));
        }
        let mut new_name = name.clone();
        if let Some(old) = hashed_name(&name) {
            if hits > 0 && sha1_hex(&data) == old.sha1 {
                let (renamed, base) = rename(&old, &sha1_hex(&scrubbed), &mut taken);
                new_name = renamed;
                renames.entry(old.base.to_owned()).or_insert(base);
                renamed_here += 1;
            }
        }
        drop(data);
        write_member(&mut w, new_name, &scrubbed)?;
    }
    let mut inner = w.finish()?;
    inner.flush()?;
    Ok(Members {
        changed,
        counts,
        binary,
        dropped,
        renamed: renamed_here + renamed_inside,
        errors,
    })
}

/// Write a scrubbed member (deflated) to the new archive.
fn write_member(
    w: &mut ::zip::ZipWriter<impl Write + std::io::Seek>,
    name: String,
    data: &[u8],
) -> anyhow::Result<()> {
    let opts = ::zip::write::SimpleFileOptions::default()
        .compression_method(::zip::CompressionMethod::Deflated)
        .large_file(data.len() as u64 >= u32::MAX as u64);
    w.start_file(name, opts)?;
    w.write_all(data)?;
    Ok(())
}

/// Scrub the archive at `place` (opened as `file`, stamped `before`).
pub(crate) fn scrub_archive(
    s: &Scrubber,
    place: &Place,
    file: File,
    before: Stamp,
    meta: &std::fs::Metadata,
    summary: &mut Summary,
) -> anyhow::Result<Outcome> {
    let tmp = place.temp()?;
    let m = scrub_members(s, &file, tmp.as_file(), &place.shown.display().to_string())?;
    summary.errors.extend(m.errors);
    // What no member holds (the archive's or a member's comment, a member's name or extra
    // field, bytes before the archive or that no entry lists) is not scrubbed: if a form is
    // still in the bytes of the result, the scrub says so rather than passing in silence.
    let mut result: &File = if m.changed { tmp.as_file() } else { &file };
    std::io::Seek::seek(&mut result, std::io::SeekFrom::Start(0))?;
    // A binary member kept with a form in it is already reported: a form found in the bytes
    // is most likely that member's.
    let left = super::text::contains_any(s.patterns(), result)? && !kept_a_form(s, &m.binary);
    if !m.changed {
        drop(tmp);
        if super::text::unchanged(place, &file, before) {
            summary.binary.extend(m.binary);
            if left {
                summary
                    .errors
                    .push(remains(&place.shown.display().to_string()));
            }
            return Ok(Outcome::Done);
        }
        return Ok(Outcome::Changed);
    }
    let outcome = replace(place, &file, before, meta, tmp)?;
    if outcome == Outcome::Done {
        if left {
            summary
                .errors
                .push(remains(&place.shown.display().to_string()));
        }
        summary.binary.extend(m.binary);
        summary.rewritten += 1;
        summary.dropped += m.dropped;
        summary.renamed += m.renamed;
        let counts: Vec<(String, u64)> = m.counts.into_iter().collect();
        summary.add_counts(&counts);
    }
    Ok(outcome)
}

/// Whether one of the binary members listed holds a form and was kept (so it is reported).
fn kept_a_form(s: &Scrubber, binary: &[(String, bool)]) -> bool {
    s.binary_policy() == BinaryPolicy::Keep && binary.iter().any(|(_, seen)| *seen)
}

/// The error for an archive (`shown`) whose bytes still hold a form after the scrub.
fn remains(shown: &str) -> String {
    format!(
        "{shown}: a form of a secret is still in the archive's bytes outside what was scrubbed (a comment, a member's name or extra field, a binary member stored uncompressed, or data no member lists)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_replaced_only_as_whole_names() {
        let n = "a".repeat(40);
        let m = "b".repeat(40);
        let renames = HashMap::from([
            (format!("{n}.html"), format!("{m}.html")),
            (format!("{n}-1.html"), format!("{m}-1.html")),
        ]);
        let text = format!(
            "{n}.html \"{n}-1.html\" resources/{n}.html x{n}.html {n}.html.gz {n}-12.html \"{n}\" {n}.html"
        );
        let out = replace_references(text.as_bytes(), &renames).unwrap();
        assert_eq!(
            String::from_utf8(out.to_vec()).unwrap(),
            format!(
                "{m}.html \"{m}-1.html\" resources/{m}.html x{n}.html {n}.html.gz {n}-12.html \"{n}\" {m}.html"
            )
        );
        assert!(replace_references(b"nothing here", &renames).is_none());
        assert!(replace_references(text.as_bytes(), &HashMap::new()).is_none());
    }

    #[test]
    fn a_renamed_copy_is_a_hashed_resource_and_a_longer_name_is_not() {
        let n = "0123456789abcdef0123456789abcdef01234567";
        let h = hashed_name(&format!("resources/{n}-2.html")).map(|h| {
            (
                h.dir.to_owned(),
                h.sha1.to_owned(),
                h.base.to_owned(),
                h.ext.to_owned(),
            )
        });
        assert_eq!(
            h,
            Some((
                "resources/".to_owned(),
                n.to_owned(),
                format!("{n}-2.html"),
                ".html".to_owned()
            ))
        );
        for not in [
            format!("{n}-.html"),
            format!("{n}-x"),
            format!("{n}0"),
            n[1..].to_owned(),
            format!("{n}.ht ml"),
            n.to_uppercase(),
        ] {
            assert!(hashed_name(&not).is_none(), "{not}");
        }
        assert!(hashed_name(n).is_some());
    }
}
