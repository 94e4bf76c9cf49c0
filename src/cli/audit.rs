//! `scopevault audit verify|rotate|show|hash`: read the daemon's audit log (see docs/audit.md).
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use zeroize::Zeroizing;

use super::args::{AuditCommand, AuditPathArgs, GlobalArgs};
use super::{escape_for_terminal, shown};
use crate::audit::{self, AuditKey};
use crate::secret::{SecretString, MAX_SECRET_LEN};

/// How often `show --follow` looks for new lines.
const FOLLOW_POLL: Duration = Duration::from_millis(200);

pub(crate) fn run(g: &GlobalArgs, a: &AuditCommand) -> anyhow::Result<ExitCode> {
    match a {
        AuditCommand::Verify { path, rotated } => verify(&path_of(path), rotated),
        AuditCommand::Rotate => rotate(g),
        AuditCommand::Show { path, follow } => show(&path_of(path), *follow),
        AuditCommand::Hash(p) => hash(&path_of(p)),
    }
}

fn path_of(a: &AuditPathArgs) -> PathBuf {
    a.audit.clone().unwrap_or_else(audit::default_audit_path)
}

fn verify(path: &Path, rotated: &[PathBuf]) -> anyhow::Result<ExitCode> {
    // The anchor names a record; the `prev` of the record after it, met on the walk below
    // (in whichever file holds it), must be that record's hash. It is the live log's, kept
    // under its path: whichever of the files given has one (`--audit` may name a rotated
    // file and the live log be among the others), compared with the chain's end.
    let mut anchor_of = path;
    let mut found = audit::find_anchor(path)?;
    for p in rotated {
        if found.is_some() {
            break;
        }
        if let Some(f) = audit::find_anchor(p)? {
            found = Some(f);
            anchor_of = p.as_path();
        }
    }
    let found_no_anchor = found.is_none();
    let (anchor_file, anchor) = match found {
        Some((file, a)) => (Some(file), Some(a)),
        None => (None, None),
    };
    let after_anchored = anchor.as_ref().map(|a| a.seq + 1);
    // The record after the anchored one, met on the walk: its `prev`, its line's hash, and the
    // file it begins, if it is that file's first line.
    let mut names_anchored: Option<(String, String, Option<PathBuf>)> = None;
    let mut walk = |p: &Path| {
        audit::verify_each(p, &mut |no, r| {
            if Some(r.seq) == after_anchored {
                let hash = r.hash.map(|h| String::from_utf8_lossy(&h).into_owned());
                names_anchored = Some((
                    r.prev.to_string(),
                    hash.unwrap_or_default(),
                    (no == 1).then(|| p.to_owned()),
                ));
            }
            Ok(())
        })
    };
    // Each file on its own first: a broken one is named with its line.
    let mut earlier = Vec::new();
    // `audit.jsonl.*` names the log's own key and journal too: they are not segments.
    let own = [audit::key_path(path), audit::journal_path(path)];
    for p in rotated {
        if own.iter().any(|o| crate::paths::same_file(o, p)) {
            errln!(
                "{}: skipped: the log's own key or journal, not a segment",
                shown(p)
            );
            continue;
        }
        let report = walk(p)?;
        if let Some(code) = broken(p, &report)? {
            return Ok(code);
        }
        earlier.push((p.as_path(), report));
    }
    let report = walk(path)?;
    // The anchored record whole but for its newline: the chain ends at it, nothing is
    // missing, and the one damage is named below (twenty-second pass: it was called what
    // remains of a cut tail).
    let whole = anchor
        .as_ref()
        .and_then(|a| report.line_end_missing(a))
        .cloned();
    let line_end_missing = whole
        .as_ref()
        .zip(anchor_file.as_ref())
        .map(|(w, file)| w.describe_line_end_missing(file));
    let report = whole.unwrap_or(report);
    // An incomplete last line where the anchor records a later seq than the line before it
    // is judged with the anchor below: that record was complete and anchored, so a cut tail
    // names it (it was reported as an incomplete final line, the wording for a crash in the
    // middle of an append: twenty-first pass). Else it is the broken line it is.
    let cut_within = report
        .torn
        .filter(|_| anchor.as_ref().is_some_and(|a| a.seq > report.last_seq));
    if cut_within.is_none() {
        if let Some(code) = broken(path, &report)? {
            return Ok(code);
        }
    }
    let shown_path = shown(path);
    // Then the files as one chain: in the order of their first seq, whichever was given as
    // `--audit` (an empty live log last), each beginning where the one before it ends.
    earlier.retain(|(_, r)| r.lines > 0);
    let live_empty = report.lines == 0;
    let mut files = earlier;
    files.push((path, report.clone()));
    files.sort_by_key(|(_, r)| if r.lines == 0 { u64::MAX } else { r.first_seq });
    if let Some((newest, r)) = files.iter().rev().find(|(_, r)| r.lines > 0) {
        if *newest != path && !live_empty {
            errln!(
                "{shown_path}: note: not the newest file given ({} goes on to seq {}): `--audit` names the live log; the files are checked as one chain all the same",
                shown(newest),
                r.last_seq
            );
        }
    }
    // The chain's end, which the anchor is compared with: its newest non-empty file.
    let end = files
        .iter()
        .rev()
        .find(|(_, r)| r.lines > 0)
        .map_or_else(|| report.clone(), |(_, r)| r.clone());
    for pair in files.windows(2) {
        let ((pa, a), (pb, b)) = (&pair[0], &pair[1]);
        if b.lines == 0 {
            continue;
        }
        let (na, nb) = (shown(pa), shown(pb));
        if b.first_seq != a.last_seq + 1 {
            if b.first_seq > a.last_seq + 1 {
                outln!(
                    "{nb}: begins at seq {} but {na} ends at seq {}: records {}..={} are missing between them",
                    b.first_seq,
                    a.last_seq,
                    a.last_seq + 1,
                    b.first_seq - 1
                )?;
            } else {
                outln!(
                    "{nb}: begins at seq {} but {na} goes on to seq {}: the files overlap (the same file given twice, or not one log)",
                    b.first_seq, a.last_seq
                )?;
            }
            return Ok(ExitCode::from(1));
        }
        if b.continues.as_deref() != Some(a.head.as_str()) {
            outln!(
                "{nb}: does not continue {na}: its first record's prev is not the hash of the last line of {na} (one of them was changed, or they are not one log)"
            )?;
            return Ok(ExitCode::from(1));
        }
    }
    // The chain cannot see records cut from its end, nor a chain recomputed from some
    // record on: the anchor can.
    if let (Some(a), Some(anchor)) = (anchor, anchor_file) {
        // The record after the anchored one was met on the walk, in whichever file held it;
        // not met: the files given begin after it. The line before it is the anchored record
        // (the chain checked that, within a file and from one file to the next) unless it is
        // the first line of the files given as one chain.
        let chain_begins = files.iter().find(|(_, r)| r.lines > 0).map(|(p, _)| *p);
        let after = names_anchored
            .take()
            .map(|(prev, hash, first_of)| audit::MetAfterAnchored {
                prev,
                hash,
                begins_chain: first_of.is_some_and(|f| Some(f.as_path()) == chain_begins),
            });
        // The incomplete line follows the chain's end when the live log is that end, or holds
        // no complete line (it is then put last).
        let torn_at_end = report.lines == 0 || end.last_seq == report.last_seq;
        let gap = audit::walked_chain_gap(&a, end.last_seq, &end.head, after)
            .map(|g| g.cut_within(cut_within.filter(|_| torn_at_end)));
        if cut_within.is_some() && !gap.as_ref().is_some_and(audit::AnchorGap::is_cut_within) {
            // Not a cut tail of the live log after all (the files given hold the anchored
            // record): the incomplete line is the broken line it is.
            if let Some(code) = broken(path, &report)? {
                return Ok(code);
            }
        }
        match gap {
            None if end.lines == 0 => {
                if let Some(why) = &a.begins {
                    errln!(
                        "{}: empty: the daemon began it after a move and its first record is still to be written; records up to seq {} are in the moved file ({})",
                        shown(anchor_of),
                        a.seq,
                        crate::text::escape_for_terminal(why)
                    );
                }
            }
            None => {}
            Some(gap) => {
                let mut why = gap.describe(&anchor);
                if gap.not_in_file() {
                    why.push_str(": if the anchored record is in a rotated file, give that file too (`audit verify --audit LOG LOG.*`)");
                }
                outln!("{}: {}", shown(anchor_of), escape_for_terminal(&why))?;
                return Ok(ExitCode::from(1));
            }
        }
    }
    if let Some(why) = line_end_missing {
        outln!("{shown_path}: {}", escape_for_terminal(&why))?;
        return Ok(ExitCode::from(1));
    }
    let first = files
        .iter()
        .find(|(_, r)| r.lines > 0)
        .map_or(0, |(_, r)| r.first_seq);
    let records: u64 = files.iter().map(|(_, r)| r.lines).sum();
    let last = files
        .iter()
        .rev()
        .find(|(_, r)| r.lines > 0)
        .map_or((0, audit::GENESIS), |(_, r)| (r.last_seq, r.head.as_str()));
    // A log that holds records and no anchor of it in the state directory (one given with
    // SCOPEVAULT_STATE_DIR, or found), beside its key as the daemon keeps it: a cut of its
    // tail cannot be seen, and `serve` refuses to start on it. Said as `doctor` fails it,
    // exit 1 (twenty-eighth pass: this said ok). A file with no key beside it (a rotated
    // file, a copy kept as evidence) is no log the daemon starts on.
    //
    // The verdict is for the daemon's log only: a copy of it kept elsewhere with its key (a
    // backup, docs/audit.md "Backups") was NOT ANCHORED, exit 1 as a broken chain, with advice
    // to accept a gap (twenty-eighth pass, found by the re-attacker of its fixes). A log not
    // at the path `serve` uses whose key is that of an anchor of another log in the state
    // directory is a copy of that log: verified as a copy, with a note that no anchor was
    // checked. Any other log without an anchor (the daemon's own, its anchor gone) is judged.
    let candidate = found_no_anchor
        && last.0 > 0
        && state_dir_known()
        && std::fs::symlink_metadata(audit::key_path(path)).is_ok();
    let copy_of = candidate
        .then(|| {
            let serves = crate::paths::same_file(path, &audit::default_audit_path());
            (!serves).then(|| audit::copy_of_anchored(path)).flatten()
        })
        .flatten();
    let unanchored = (candidate && copy_of.is_none()).then(|| audit::AuditError::NoAnchor {
        path: path.to_owned(),
        state_dir: crate::vault::state_dir(),
        last: last.0,
    });
    if let Some(e) = &unanchored {
        outln!(
            "{shown_path}: NOT ANCHORED: {records} record(s) verify, last seq {}, head {}, but `scopevault serve` refuses to start on it: {} (a copy of the log kept elsewhere with its key has no anchor of its own: this is for the daemon's live log)",
            last.0,
            last.1,
            escape_for_terminal(&e.to_string())
        )?;
    } else if files.len() == 1 {
        outln!(
            "{shown_path}: ok, {} record(s), last seq {}, head {}",
            report.lines,
            report.last_seq,
            report.head
        )?;
    } else {
        outln!(
            "{shown_path}: ok, {} file(s) as one chain, {records} record(s), seq {first} to {}, head {}{}",
            files.len(),
            last.0,
            last.1,
            if live_empty { " (the live log is empty)" } else { "" }
        )?;
    }
    if let Some(live) = &copy_of {
        outln!(
            "{shown_path}: a copy of the log at {} (written with its key): no anchor was checked, as a copy has none of its own; a cut of its tail made before the copy is not seen here (the anchor of that log is checked by `scopevault audit verify --audit {}`)",
            shown(live),
            crate::advice::shell_quoted(&live.to_string_lossy())
        )?;
    }
    if first > 1 {
        outln!(
            "{shown_path}: the chain begins at seq {first}: records 1..={} are in an earlier file not given here",
            first - 1
        )?;
    }
    // Seqs the chain skips where the daemon recorded a gap (one it was told to accept, or a
    // cut under it): they were given out before, and are not given again (docs/audit.md,
    // "The anchor", "Rotation").
    for (p, r) in &files {
        for g in &r.gaps {
            outln!(
                "{}: line {}: records {}..={} are missing: the `audit.gap` record there says so (a cut tail accepted with `serve --accept-audit-gap`, or the file cut back under the daemon: its reason says which; the chain goes on after them)",
                shown(p),
                g.line,
                g.first,
                g.last
            )?;
        }
    }
    if unanchored.is_some() {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

/// Whether the state directory, where the anchors are, was given (`SCOPEVAULT_STATE_DIR`)
/// or is there: only then does `audit verify` judge a log without an anchor in it.
fn state_dir_known() -> bool {
    std::env::var_os("SCOPEVAULT_STATE_DIR").is_some_and(|d| !d.is_empty())
        || crate::vault::state_dir().is_dir()
}

/// Print why a file fails verification, if it does.
fn broken(
    path: &Path,
    report: &audit::VerifyReport,
) -> Result<Option<ExitCode>, super::output::StdoutError> {
    let Some(bad) = report.first_bad.as_ref() else {
        return Ok(None);
    };
    let shown = shown(path);
    outln!(
        "{shown}: line {}: {}",
        bad.line,
        escape_for_terminal(&bad.why)
    )?;
    outln!(
        "{shown}: chain broken; {} line(s) before line {} verify",
        bad.line.saturating_sub(1),
        bad.line
    )?;
    Ok(Some(ExitCode::from(1)))
}

/// `audit rotate`: the daemon moves its log aside and goes on in a new file.
fn rotate(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let s = super::client_cmds::connect_within(g, super::client_cmds::ANSWER_WAIT)?
        .audit_rotate()
        .map_err(super::client_cmds::daemon_err)?;
    outln!(
        "audit rotate: earlier records are in {}; the log goes on at seq {} (audit.rotate)",
        escape_for_terminal(&s.rotated_to),
        s.seq
    )?;
    Ok(ExitCode::SUCCESS)
}

fn show(path: &Path, follow: bool) -> anyhow::Result<ExitCode> {
    let mut log = audit::Follower::open(path)
        .with_context(|| format!("cannot open the audit log {}", path.display()))?;
    use super::output::stdout_error;
    let mut out = std::io::stdout().lock();
    let shown_path = shown(path);
    // A failed write to stdout ends the reading too; it is reported as what it is, not as a
    // failure to read the log (`audit show >/dev/full` said "cannot read the audit log …: No
    // space left on device", twenty-third pass).
    let stdout_failed = std::cell::Cell::new(false);
    let failed = |r: std::io::Result<()>| {
        if r.is_err() {
            stdout_failed.set(true);
        }
        r
    };
    // The line before the next one: an incomplete last line is the anchored record only
    // where it follows it ([`render_incomplete`]).
    let mut before = Before::Start;
    loop {
        // Every line there is now; with `--follow`, a file cut under it is read on from the
        // last line read that it still holds (or its start), and a file moved away read to its end, then the new one at the path
        // (src/audit/follow.rs).
        let read = log.read_on(follow, &mut |event| match event {
            audit::FollowEvent::Line(line) => {
                before.line(line);
                failed(writeln!(out, "{}", render(line)))
            }
            // Never held whole: a line longer than any record is named and skipped.
            audit::FollowEvent::Overlong(no) => {
                before = Before::Unknown;
                failed(writeln!(
                out,
                    "? line {no}: {}, skipped",
                    audit::overlong_line()
                ))
            }
            audit::FollowEvent::Incomplete(partial) => {
                let shown = render_incomplete(path, partial, &before);
                before = Before::Unknown;
                failed(writeln!(out, "{shown}"))
            }
            audit::FollowEvent::Cut { at: 0 } => {
                before = Before::Start;
                failed(out.flush())?;
                errln!(
                    "{shown_path}: the file was cut under `audit show --follow` (copytruncate?): read again from its start"
                );
                Ok(())
            }
            audit::FollowEvent::Cut { at } => {
                // Read on from a line already shown, which one is not known here.
                before = Before::Unknown;
                failed(out.flush())?;
                errln!(
                    "{shown_path}: the file was cut under `audit show --follow`; it still holds the lines read up to byte {at} (the daemon's repair of an unfinished line, or a cut within the log): read on from there"
                );
                Ok(())
            }
            // The new file begins with the daemon's `audit.rotate` record.
            audit::FollowEvent::Moved => {
                before = Before::Start;
                Ok(())
            }
        });
        match read {
            Err(e) if stdout_failed.get() => return Err(stdout_error(e).into()),
            read => {
                read.with_context(|| format!("cannot read the audit log {}", path.display()))?
            }
        }
        // End of file (possibly in the middle of a line still being written).
        if !follow {
            let partial = log.partial();
            if !partial.is_empty() {
                writeln!(out, "{}", render_incomplete(path, partial, &before))
                    .map_err(stdout_error)?;
            }
            out.flush().map_err(stdout_error)?;
            return Ok(ExitCode::SUCCESS);
        }
        out.flush().map_err(stdout_error)?;
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// What came before a line `show` reads, in its file.
enum Before {
    /// Nothing: the line is the file's first.
    Start,
    /// A complete line: its SHA-256 (hex) and its `seq`.
    Line(String, Option<u64>),
    /// A line not held (overlong), or one not known (read on after a cut).
    Unknown,
}

impl Before {
    fn line(&mut self, line: &[u8]) {
        use sha2::{Digest, Sha256};
        let seq = audit::verified_shape(line).ok().and_then(|r| r.seq);
        *self = Before::Line(data_encoding::HEXLOWER.encode(&Sha256::digest(line)), seq);
    }

    /// Whether a record with `seq` and `prev` continues the chain from here: its `prev` is the
    /// hash of the line before it and its `seq` follows that line's. A file's first line
    /// continues from a line of the file before it (a rotated log), which `show` does not read.
    fn continued_by(&self, seq: Option<u64>, prev: Option<&str>) -> bool {
        match self {
            Before::Start => true,
            Before::Line(hash, before) => {
                prev == Some(hash.as_str())
                    && before
                        .and_then(|b| b.checked_add(1))
                        .is_some_and(|n| seq == Some(n))
            }
            Before::Unknown => false,
        }
    }
}

/// An incomplete line (no newline at the end of the file, or a line a cut under `--follow`
/// left unended) as `show` prints it. Only the anchored record whole but for its newline (its
/// SHA-256 is the head anchored for `path`: `audit verify` says "only its line end is missing")
/// at its place (it follows the line `before` it: [`Before::continued_by`]) is shown as the
/// record it is, marked. A copy of the anchored record appended without a newline after the
/// record itself was shown as the genuine record, where `audit verify` calls the chain broken
/// (twenty-third pass, found by the twenty-third pass's attacker of this pass's fixes). Anything else is what remains of a cut tail or of a
/// write cut short, and is never shown as a record, whatever it parses as: until the
/// twenty-third pass a rewritten last record without its newline (a cut tail to `verify`) was
/// shown as `#N … allow fetch …`, marked only at its end.
fn render_incomplete(path: &Path, line: &[u8], before: &Before) -> String {
    use sha2::{Digest, Sha256};
    // An anchor that cannot be read vouches for nothing: the line is then not a record.
    let anchored = audit::find_anchor(path)
        .ok()
        .flatten()
        .is_some_and(|(_, a)| a.head == data_encoding::HEXLOWER.encode(&Sha256::digest(line)));
    if anchored {
        let at_its_place = audit::verified_shape(line)
            .ok()
            .map(|r| before.continued_by(r.seq, r.prev.as_deref()));
        match at_its_place {
            Some(true) => {
                return format!(
                    "{}  [incomplete line: the anchored record, only its line end (newline) is missing]",
                    render(line)
                )
            }
            Some(false) => {
                return format!(
                    "? {} (not a record: an incomplete last line (no newline) with the anchored record's text, but not at its place: it does not follow the line before it; `audit verify` says what is wrong)",
                    field(&String::from_utf8_lossy(line))
                )
            }
            None => {}
        }
    }
    format!(
        "? {} (not a record: an incomplete last line (no newline) that is not the anchored record: what remains of a cut tail, or of a write cut short; `audit verify` says which)",
        field(&String::from_utf8_lossy(line))
    )
}

/// One record as one readable line of `key=value` fields. Every string from the log is
/// escaped and, unless a plain word, quoted ([`crate::text::quote_field`]): the peer's
/// executable name (and a task or credential name) is chosen by whoever connected, and must
/// neither drive the admin's terminal nor pass for other fields (`exe=/tmp/x uid=0 gid=0`).
///
/// The line is read once, by the reader `audit verify` and `lint --audit` read it with, asked
/// what the verifier asks of a line ([`audit::verified_shape`]), so a line they take for a
/// record is shown as one, and one they refuse is shown as not a record, with why. A member of another type than the daemon writes,
/// or one written twice, is not one of its records: shown as such, never read as one (a
/// `warnings` item that is a number shown as "", a second `decision` counted). Until the
/// twenty-first pass `show` parsed the line into a JSON tree first, whose parser stops at 128
/// levels: a record whose unknown member nests deeper verified, and was shown as not JSON.
fn render(line: &[u8]) -> String {
    let rec = match audit::verified_shape(line) {
        Ok(rec) => rec,
        Err(why) => {
            return format!(
                "? {} (not a record: {})",
                field(&String::from_utf8_lossy(line)),
                escape_for_terminal(&why)
            )
        }
    };
    let s =
        |v: &Option<std::borrow::Cow<'_, str>>| v.as_deref().map_or_else(|| "-".to_owned(), field);
    let mut out = format!(
        "#{} {} {:<5} {}",
        rec.seq.map_or_else(|| "-".to_owned(), |n| n.to_string()),
        s(&rec.time),
        s(&rec.decision),
        s(&rec.op)
    );
    for (key, v) in [("task", &rec.task), ("credential", &rec.credential)] {
        if let Some(v) = v {
            out.push_str(&format!(" {key}={}", field(v)));
        }
    }
    if let Some(p) = &rec.peer {
        out.push_str(&format!(" uid={} gid={}", p.uid, p.gid));
        if let Some(pid) = p.pid {
            out.push_str(&format!(" pid={pid}"));
        }
        if let Some(exe) = &p.exe {
            out.push_str(&format!(" exe={}", field(exe)));
        }
        if p.exe_deleted {
            out.push_str(" exe_deleted=true");
        }
        if p.exe_truncated {
            out.push_str(" exe_truncated=true");
        }
    }
    // A `vault.load`: which generation, and which policy (its digest), from then on.
    if let Some(g) = rec.generation {
        out.push_str(&format!(" generation={g}"));
    }
    if let Some(p) = &rec.policy {
        out.push_str(&format!(" policy={}", field(p)));
    }
    if let Some(r) = &rec.reason {
        out.push_str(&format!(" reason={}", crate::text::quoted(r)));
    }
    for warning in &rec.warnings {
        out.push_str(&format!(" warning={}", crate::text::quoted(warning)));
    }
    // Values and counts by name, as before the one reader (which keeps the line's order).
    let mut values: Vec<_> = rec.values.iter().collect();
    values.sort_by(|a, b| a.0.cmp(&b.0));
    for (name, mac) in values {
        out.push_str(&format!(" {}={}", field(name), field(mac)));
    }
    // A `scrub_report`: the counts, then the replacements per label.
    if let Some(scrub) = &rec.scrub {
        let mut counts: Vec<_> = scrub.counts.iter().collect();
        counts.sort_by(|a, b| a.0.cmp(&b.0));
        for (key, n) in counts {
            out.push_str(&format!(" {}={n}", field(key)));
        }
        let mut hits: Vec<_> = scrub.hits.iter().collect();
        hits.sort_by(|a, b| a.0.cmp(&b.0));
        for (label, n) in hits {
            out.push_str(&format!(" hits[{}]={n}", field(label)));
        }
    }
    out
}

use crate::text::quote_field as field;

fn hash(path: &Path) -> anyhow::Result<ExitCode> {
    let key = AuditKey::load(path).with_context(|| {
        format!(
            "`audit hash` needs read access to the audit key {} (the daemon's own file; run as its user or root)",
            audit::key_path(path).display()
        )
    })?;
    // The value comes from stdin only, never argv; one trailing newline is not part of it.
    let mut buf = Zeroizing::new(Vec::new());
    std::io::stdin()
        .lock()
        .take(MAX_SECRET_LEN as u64 + 3)
        .read_to_end(&mut buf)
        .context("cannot read the value from stdin")?;
    let value = SecretString::from_input_bytes(buf).context("cannot use the value from stdin")?;
    outln!("{}", key.hmac_value(value.expose()))?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn render_escapes_control_characters_from_the_peer() {
        let line = br#"{"seq":1,"time":"2026-12-01T10:00:00Z","prev":"0000000000000000000000000000000000000000000000000000000000000000","peer":{"uid":1,"gid":2,"pid":3,"exe":"/tmp/\u001b[31mevil"},"op":"fetch","decision":"deny","values":{}}"#;
        let shown = render(line);
        assert!(!shown.contains('\u{1b}'), "{shown}");
        assert!(shown.contains("exe=\"/tmp/\\u{1b}[31mevil\""), "{shown}");
        assert!(
            shown.starts_with("#1 2026-12-01T10:00:00Z deny  fetch uid=1 gid=2 pid=3"),
            "{shown}"
        );
        let garbage = render(b"garbage\x07");
        assert!(
            garbage.starts_with("? \"garbage\\u{7}\" (not a record: not a JSON record ("),
            "{garbage}"
        );
    }

    /// Twenty-first pass, found by attacking from the documents: a line `audit verify` refuses
    /// for its shape (a `time` that is not RFC 3339, or holding an ESC; no `prev`; no
    /// `decision`) was shown as a record. Now `show` asks what the verifier asks of each line.
    #[test]
    fn render_shows_a_line_the_verifier_refuses_as_not_a_record_with_its_why() {
        let z = "0".repeat(64);
        for (line, why) in [
            (
                format!(
                    r#"{{"seq":1,"time":"2026-13-45T99:99:99Z","op":"fetch","decision":"allow","prev":"{z}"}}"#
                ),
                "`time` is not RFC 3339",
            ),
            (
                format!(
                    r#"{{"seq":1,"time":"2026-12-01T10:00:00Z\u001b[2J","op":"fetch","decision":"allow","prev":"{z}"}}"#
                ),
                "`time` is not RFC 3339",
            ),
            (
                r#"{"seq":1,"time":"2026-12-01T10:00:00Z","op":"fetch","decision":"allow"}"#
                    .to_owned(),
                "no 64-hex-digit \"prev\"",
            ),
            (
                format!(r#"{{"seq":1,"time":"2026-12-01T10:00:00Z","op":"fetch","prev":"{z}"}}"#),
                "not an audit record (no string `time`, `op` or `decision`)",
            ),
            // Twenty-second pass: shown as `#0 …`, while `verify` refused it.
            (
                format!(
                    r#"{{"seq":0,"time":"2026-12-01T10:00:00Z","op":"lock","decision":"allow","prev":"{z}"}}"#
                ),
                "`seq` is 0: the daemon numbers its records from 1",
            ),
        ] {
            let shown = render(line.as_bytes());
            assert!(shown.starts_with("? \""), "{shown}");
            assert!(shown.contains(&format!("(not a record: {why}")), "{shown}");
            assert!(!shown.contains('\u{1b}'), "{shown}");
            let verified = crate::audit::verified_shape(line.as_bytes()).err().unwrap();
            assert!(verified.starts_with(why), "{verified}");
        }
    }

    #[test]
    fn render_shows_a_vault_loads_generation_and_policy_digest_escaped() {
        let line = br#"{"seq":3,"time":"2026-12-01T10:00:00Z","peer":null,"op":"vault.load","task":null,"credential":null,"decision":"allow","reason":"vault v generation 4 loaded (start)","warnings":[],"values":{},"generation":4,"policy":"sha256:\u001b[2Jab","prev":"0000000000000000000000000000000000000000000000000000000000000000"}"#;
        let out = render(line);
        assert!(
            out.contains(" generation=4") && out.contains(" policy=\"sha256:\\u{1b}[2Jab\""),
            "{out}"
        );
        assert!(!out.contains('\u{1b}'), "{out}");
    }

    #[test]
    fn render_shows_a_scrub_reports_counts_and_escapes_its_labels() {
        let line = br#"{"seq":9,"time":"2026-12-01T10:00:00Z","prev":"0000000000000000000000000000000000000000000000000000000000000000","peer":null,"op":"scrub_report","task":"shop","decision":"allow","values":{},"scrub":{"files":5,"rewritten":4,"failed":0,"binary_kept":1,"binary_dropped":0,"binary_with_form":0,"hits":{"shop-buyer.password":7,"x\u001b[2J":1}}}"#;
        let shown = render(line);
        assert!(
            shown.starts_with("#9 2026-12-01T10:00:00Z allow scrub_report task=shop"),
            "{shown}"
        );
        for part in [
            " files=5",
            " rewritten=4",
            " failed=0",
            " binary_kept=1",
            " hits[shop-buyer.password]=7",
            " hits[\"x\\u{1b}[2J\"]=1",
        ] {
            assert!(shown.contains(part), "{part} in {shown}");
        }
        assert!(!shown.contains('\u{1b}'), "{shown}");
    }

    /// Sixteenth pass: `peer.exe`, `task`, `credential` and a value's name were printed
    /// unquoted, so a runner whose binary is `…/x uid=0 gid=0 pid=1 exe=/usr/sbin/cron` showed
    /// as a root fetch to `audit show | grep 'uid=0 gid=0'`, and U+200B, U+00A0, U+2028 and
    /// U+3000 printed raw (`py\u{200b}thon3` looked like `python3`).
    #[test]
    fn render_quotes_fields_that_would_pass_for_others_and_escapes_invisible_characters() {
        let line = br#"{"seq":4,"time":"2026-12-01T10:00:00Z","prev":"0000000000000000000000000000000000000000000000000000000000000000","peer":{"uid":1011,"gid":1014,"pid":22776,"exe":"/tmp/w/bin/x uid=0 gid=0 pid=1 exe=/usr/sbin/cron"},"op":"fetch","task":"t1 uid=0","credential":"py\u200bthon3","decision":"allow","reason":"a \"b\" c=d","warnings":["w\u2028x"],"values":{"pass word=x":"hmac-sha256:ab","password":"hmac-sha256:cd"}}"#;
        let shown = render(line);
        assert_eq!(
            shown,
            r#"#4 2026-12-01T10:00:00Z allow fetch task="t1 uid\=0" credential="py\u{200b}thon3" uid=1011 gid=1014 pid=22776 exe="/tmp/w/bin/x uid\=0 gid\=0 pid\=1 exe\=/usr/sbin/cron" reason="a \"b\" c\=d" warning="w\u{2028}x" "pass word\=x"=hmac-sha256:ab password=hmac-sha256:cd"#
        );
        assert!(!shown.contains("uid=0") && !shown.contains("exe=/usr/sbin"));
        for c in ['\u{200b}', '\u{a0}', '\u{2028}', '\u{3000}'] {
            let exe = format!(
                r#"{{"seq":1,"time":"2026-12-01T10:00:00Z","prev":"0000000000000000000000000000000000000000000000000000000000000000","peer":{{"uid":1,"gid":2,"pid":3,"exe":"/bin/py{c}thon3"}},"op":"fetch","decision":"allow","values":{{}}}}"#
            );
            let shown = render(exe.as_bytes());
            assert!(
                shown.ends_with(&format!(" exe=\"/bin/py\\u{{{:x}}}thon3\"", c as u32)),
                "{shown}"
            );
        }
    }
}
