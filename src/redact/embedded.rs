//! Zip archives embedded in an HTML page as base64 `data:` URIs.
//!
//! Playwright Test's HTML report (`playwright-report/index.html`) carries the report itself
//! as `data:application/zip;base64,…`: JSON whose step titles hold what the test typed
//! (`Fill "the password" getByLabel('Password')`), its errors and its output. Deflated, then
//! base64-encoded, no form of a value is in the page's bytes, so a text scrub passes it. Each
//! such archive is decoded, scrubbed member by member as an archive file is
//! ([`super::zip::scrub_members`], with the same member and total limits), encoded again in
//! its place, and then the whole page is scrubbed as text. The page is read whole: one of up to
//! the member limit (256 MiB) is handled so; a larger one is scrubbed as text only, and
//! reported.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;

use anyhow::Context;
use zeroize::Zeroizing;

use super::text::{replace, stamp, unchanged, Outcome, Place, Stamp};
use super::{Scrubber, Summary};
use crate::secret::Masker;

/// What precedes an embedded archive.
const MARKER: &[u8] = b"data:application/zip;base64,";

/// A page whose embedded archives are looked for: `.html` or `.htm`, any case.
pub(crate) fn is_html_name(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"))
}

fn is_base64(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'='
}

/// Whether [`MARKER`] is in `file`, read from its start in [`super::text::CHUNK`] pieces
/// that overlap by the marker's length.
fn holds(finder: &memchr::memmem::Finder<'_>, mut file: &File) -> std::io::Result<bool> {
    file.rewind()?;
    let keep = MARKER.len() - 1;
    let mut buf = Zeroizing::new(vec![0u8; super::text::CHUNK + keep]);
    let mut have = 0usize;
    loop {
        let n = super::text::read_full(&mut file, &mut buf[have..])?;
        let end = have + n;
        if finder.find(&buf[..end]).is_some() {
            return Ok(true);
        }
        if n == 0 || end < buf.len() {
            return Ok(false);
        }
        buf.copy_within(end - keep..end, 0);
        have = keep;
    }
}

/// One embedded archive (its base64 text): the scrubbed archive in base64 if a member changed,
/// and what the scrub found.
fn scrub_one(
    s: &Scrubber,
    b64: &[u8],
    shown: &str,
) -> anyhow::Result<(Option<Zeroizing<Vec<u8>>>, super::zip::Members)> {
    let decoded = Zeroizing::new(
        data_encoding::BASE64
            .decode(b64)
            .context("its base64 does not decode")?,
    );
    if !super::looks_zip(&decoded) {
        anyhow::bail!("it is not a zip archive");
    }
    let input = super::zip::memory_file("scopevault-redact-in", &decoded)?;
    drop(decoded);
    let mut output = super::zip::memory_file("scopevault-redact-out", &[])?;
    let members = super::zip::scrub_members(s, &input, &output, shown)?;
    if !members.changed {
        return Ok((None, members));
    }
    output.rewind()?;
    let mut archive = Zeroizing::new(Vec::new());
    output.read_to_end(&mut archive)?;
    let encoded = Zeroizing::new(data_encoding::BASE64.encode(&archive).into_bytes());
    Ok((Some(encoded), members))
}

/// Scrub the page at `place` (stamped `before`) if it embeds an archive: `Ok(None)` when it
/// embeds none (the caller scrubs it as text), else how the attempt ended.
pub(crate) fn scrub_page(
    s: &Scrubber,
    place: &Place,
    before: Stamp,
    meta: &std::fs::Metadata,
    summary: &mut Summary,
) -> anyhow::Result<Option<Outcome>> {
    let file = place.open().context("cannot open")?;
    if stamp(&file.metadata()?) != before {
        return Ok(Some(Outcome::Changed));
    }
    let finder = memchr::memmem::Finder::new(MARKER);
    // Most pages embed nothing: look for the marker in pieces before holding the page whole.
    if !holds(&finder, &file)? {
        return Ok(None);
    }
    let limit = s.member_limit();
    let mut page = Zeroizing::new(Vec::with_capacity(meta.len().min(limit) as usize));
    (&file).rewind()?;
    (&file).take(limit + 1).read_to_end(&mut page)?;
    if page.len() as u64 > limit {
        summary.errors.push(format!(
            "{}: an HTML page over {} MiB: the archives embedded in it were not scrubbed (its text was)",
            place.shown.display(),
            limit >> 20
        ));
        return Ok(None);
    }
    let mut rebuilt = Zeroizing::new(Vec::with_capacity(page.len()));
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let (mut dropped, mut renamed, mut binary) = (0u64, 0u64, Vec::new());
    let mut pos = 0usize;
    for (k, at) in finder.find_iter(&page).enumerate() {
        if at < pos {
            continue;
        }
        let start = at + MARKER.len();
        let end = start + page[start..].iter().take_while(|&&b| is_base64(b)).count();
        rebuilt.extend_from_slice(&page[pos..start]);
        let shown = format!("{}!data:{}", place.shown.display(), k + 1);
        match scrub_one(s, &page[start..end], &shown) {
            Ok((encoded, m)) => {
                match encoded {
                    Some(e) => rebuilt.extend_from_slice(&e),
                    None => rebuilt.extend_from_slice(&page[start..end]),
                }
                for (label, n) in m.counts {
                    *counts.entry(label).or_default() += n;
                }
                dropped += m.dropped;
                renamed += m.renamed;
                binary.extend(m.binary);
                summary.errors.extend(m.errors);
            }
            Err(e) => {
                summary.errors.push(format!(
                    "{shown}: {e:#}: the embedded archive is left as it was"
                ));
                rebuilt.extend_from_slice(&page[start..end]);
            }
        }
        pos = end;
    }
    rebuilt.extend_from_slice(&page[pos..]);
    drop(page);
    // Then the page's own text.
    let mut masker = Masker::with_patterns(s.patterns().clone());
    let mut scrubbed = Zeroizing::new(Vec::with_capacity(rebuilt.len() + 4096));
    for chunk in rebuilt.chunks(super::text::CHUNK) {
        masker.feed_into(chunk, &mut scrubbed);
    }
    scrubbed.extend_from_slice(&masker.finish());
    for (label, n) in masker.counts() {
        *counts.entry(label).or_default() += n;
    }
    let original_unchanged = counts.values().all(|&n| n == 0) && dropped == 0;
    if original_unchanged {
        summary.binary.extend(binary);
        return Ok(Some(if unchanged(place, &file, before) {
            Outcome::Done
        } else {
            Outcome::Changed
        }));
    }
    let tmp = place.temp()?;
    {
        let mut w = std::io::BufWriter::with_capacity(1 << 16, tmp.as_file());
        w.write_all(&scrubbed)?;
        w.flush()?;
    }
    let outcome = replace(place, &file, before, meta, tmp)?;
    if outcome == Outcome::Done {
        summary.binary.extend(binary);
        summary.rewritten += 1;
        summary.dropped += dropped;
        summary.renamed += renamed;
        let counts: Vec<(String, u64)> = counts.into_iter().collect();
        summary.add_counts(&counts);
    }
    Ok(Some(outcome))
}
