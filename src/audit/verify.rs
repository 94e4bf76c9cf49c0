//! The chain check: [`verify`] and [`verify_each`] (a reader thread cuts and hashes lines in
//! blocks while the caller parses them).

use super::*;

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Complete lines read (up to and including the first bad one).
    pub lines: u64,
    /// `seq` of the last good line (0 if none).
    pub last_seq: u64,
    /// SHA-256 hex of the last good line ([`GENESIS`] if none): record it elsewhere to detect a
    /// later truncation of the log, which no chain can detect by itself.
    pub head: String,
    /// `seq` of the first line (0 for an empty file). More than 1 when the file is a later
    /// segment of a log: it begins with an `audit.rotate` or `audit.gap` record.
    pub first_seq: u64,
    /// For a later segment, the `prev` of its first line: the hash of the last line of the
    /// segment before it (in the moved file).
    pub continues: Option<String>,
    /// The first problem found, if any.
    pub first_bad: Option<BadLine>,
    /// The bytes of an incomplete final line (no newline), when that is the first problem
    /// found: a write a crash interrupted, or, where the anchor records a later seq than the
    /// line before it, what remains of a cut tail ([`AnchorGap::cut_within`]).
    pub torn: Option<u64>,
    /// The walk with the incomplete final line ([`VerifyReport::torn`]) read as if its
    /// newline were there, when it is a record that continues the chain. Where the anchor
    /// names that very record ([`VerifyReport::line_end_missing`]), only its line end is
    /// missing.
    pub unterminated: Option<Box<VerifyReport>>,
    /// The seqs the file skips where the daemon's `audit.gap` record says so: a gap accepted
    /// at start (`serve --accept-audit-gap`) after records were cut from the log's end.
    pub gaps: Vec<RecordedGap>,
}

impl VerifyReport {
    /// The walk with the incomplete final line read as a whole line, when that line is the
    /// record the anchor `a` names, whole but for its newline (it continues the chain, and
    /// its SHA-256 is the anchored head): no record is missing, only its line end, which
    /// `serve` adds at start.
    pub fn line_end_missing(&self, a: &Anchor) -> Option<&VerifyReport> {
        self.unterminated
            .as_deref()
            .filter(|w| w.last_seq == a.seq && w.head == a.head)
    }

    /// What [`VerifyReport::line_end_missing`] found (`self` the walk it gave), in the words
    /// of `audit verify` and `doctor`, naming the anchor file.
    pub fn describe_line_end_missing(&self, anchor: &Path) -> String {
        format!(
            "line {}: seq {} is complete and is the anchored record (its SHA-256 is the head anchored in {}), but only its line end (the final newline) is missing: no record is missing; the daemon's next start (`serve`) adds the newline and records that it did",
            self.lines,
            self.last_seq,
            anchor.display()
        )
    }
}

/// A jump in `seq` that an `audit.gap` record explains ([`VerifyReport::gaps`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedGap {
    /// 1-based line number of the gap record.
    pub line: u64,
    /// The first seq missing.
    pub first: u64,
    /// The last seq missing.
    pub last: u64,
}

/// Where and why a log fails verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadLine {
    /// 1-based line number.
    pub line: u64,
    /// What is wrong.
    pub why: String,
}

/// Check a log's hash chain from the first line. Detects an edited line (its hash no longer
/// matches the next line's `prev`), a removed or reordered line (a `seq` gap or a `prev`
/// mismatch), a line that is not a record, and an incomplete final line. `Err` only if the
/// file cannot be read.
///
/// Limits, as for any hash chain without an outside anchor: removing lines from the end, or
/// editing the last line so that it stays a valid record, is not detectable by the chain alone;
/// keep [`VerifyReport::head`] (or ship the log) elsewhere for that.
pub fn verify(path: &Path) -> Result<VerifyReport, AuditError> {
    verify_each(path, &mut |_, _| Ok(()))
}

/// [`verify`], handing each record to `each` (its 1-based line number and the record) once the
/// chain has accepted it, in order: one read and one parse of the log serve both the chain and
/// a reader of the records (`lint --audit`). An `Err(why)` from `each` stops the walk with
/// that line as [`VerifyReport::first_bad`].
pub fn verify_each(
    path: &Path,
    each: &mut dyn FnMut(u64, &RecordView<'_>) -> Result<(), String>,
) -> Result<VerifyReport, AuditError> {
    let read_err = AuditError::read_of(path);
    let file = open_segment(path).map_err(read_err)?;
    verify_reader(file, path, each)
}

/// [`verify_each`] of a segment already open (`path` names it in errors): the start reads the
/// files beside the log through the descriptors it judged ([`super::moved`]).
pub(super) fn verify_reader(
    file: Box<dyn Read + Send>,
    path: &Path,
    each: &mut dyn FnMut(u64, &RecordView<'_>) -> Result<(), String>,
) -> Result<VerifyReport, AuditError> {
    let read_err = AuditError::read_of(path);
    let mut report = VerifyReport {
        lines: 0,
        last_seq: 0,
        head: String::new(),
        first_seq: 0,
        continues: None,
        first_bad: None,
        torn: None,
        unterminated: None,
        gaps: Vec::new(),
    };
    let mut head = [b'0'; 64];
    // Two threads: one reads the log in blocks, cuts them into lines and hashes every line;
    // this one parses the lines in order and checks the chain. A stop here (a bad line) drops
    // the receiver, which ends the reader at its next block.
    let walked = std::thread::scope(|scope| {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Block>(2);
        scope.spawn(move || read_blocks(file, &tx));
        walk_chain(rx, &mut report, &mut head, each)
    })
    .map_err(read_err);
    report.head = String::from_utf8_lossy(&head).into_owned();
    walked.map(|()| report)
}

/// A segment of the log to read from its start: the file itself, or, when it begins with the
/// gzip magic (logrotate's `compress`), its decompressed content. A compressed segment is read
/// as the file it was; nothing here writes. Opened without blocking and refused unless a
/// regular file ([`crate::sys::open_regular`]): a FIFO at the path must not make `audit
/// verify`, `show` or `lint --audit` wait for a writer.
pub fn open_segment(path: &Path) -> std::io::Result<Box<dyn Read + Send>> {
    Ok(segment_reader(crate::sys::open_regular(path, false)?)?.0)
}

/// The reader of a segment open as `file` ([`open_segment`]), and whether the file is
/// compressed (its reader then yields more bytes than the file holds).
pub fn segment_reader(file: File) -> std::io::Result<(Box<dyn Read + Send>, bool)> {
    use std::os::unix::fs::FileExt;
    let mut magic = [0u8; 2];
    let gzip = matches!(file.read_at(&mut magic, 0), Ok(2)) && magic == [0x1f, 0x8b];
    Ok(if gzip {
        (
            Box::new(flate2::read::MultiGzDecoder::new(std::io::BufReader::new(
                file,
            ))),
            true,
        )
    } else {
        (Box::new(file), false)
    })
}

/// Why a line longer than [`MAX_LINE`] bytes is not read: one text for `verify`, `lint --audit`
/// and `show`.
pub fn overlong_line() -> String {
    format!("longer than {MAX_LINE} bytes: not a record")
}

/// One step of [`BoundedLines::next_line`].
#[derive(Debug, PartialEq, Eq)]
pub enum NextLine<'a> {
    /// A whole line of at most [`MAX_LINE`] bytes, without its newline.
    Line(&'a [u8]),
    /// A line longer than [`MAX_LINE`] bytes, met when its first `MAX_LINE + 1` bytes are read:
    /// it counts as one line and the rest of it, up to its newline, is read and dropped.
    Overlong,
    /// The end of what the reader holds for now; [`BoundedLines::partial`] is a line begun
    /// but not ended (a log still being written, or cut).
    End,
}

/// The lines of a log read one at a time, with never more than [`MAX_LINE`] bytes of one held
/// (`audit show`, `--follow` included): a line over the limit is reported as
/// [`NextLine::Overlong`] and skipped, as [`verify`] refuses it, and reading goes on after it.
pub struct BoundedLines<R> {
    reader: R,
    pub(super) line: Vec<u8>,
    /// The line in `line` was handed out: clear it before reading on.
    taken: bool,
    /// Within a line already reported as over-long: drop bytes up to its newline.
    skipping: bool,
    /// Bytes taken from `reader`, the unfinished line's included.
    consumed: u64,
}

impl<R: BufRead> BoundedLines<R> {
    /// The lines of `reader`, from where it stands.
    pub fn new(reader: R) -> Self {
        Self {
            reader,
            line: Vec::new(),
            taken: false,
            skipping: false,
            consumed: 0,
        }
    }

    /// The next line, an over-long line, or the end of what there is for now (a later call
    /// goes on where this one stopped: a line finished meanwhile is read whole).
    pub fn next_line(&mut self) -> std::io::Result<NextLine<'_>> {
        if std::mem::take(&mut self.taken) {
            self.line.clear();
        }
        loop {
            let buf = match self.reader.fill_buf() {
                Ok(buf) => buf,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if buf.is_empty() {
                return Ok(NextLine::End);
            }
            let newline = memchr::memchr(b'\n', buf);
            let part = newline.unwrap_or(buf.len());
            let used = newline.map_or(part, |i| i + 1);
            let was_skipping = self.skipping;
            let over = !was_skipping && self.line.len() + part > MAX_LINE;
            if !was_skipping && !over {
                self.line.extend_from_slice(&buf[..part]);
            }
            self.reader.consume(used);
            self.consumed += used as u64;
            if was_skipping {
                self.skipping = newline.is_none();
            } else if over {
                self.line.clear();
                self.skipping = newline.is_none();
                return Ok(NextLine::Overlong);
            } else if newline.is_some() {
                self.taken = true;
                return Ok(NextLine::Line(&self.line));
            }
        }
    }

    /// The line begun but not ended at [`NextLine::End`] (empty if none, or while the rest
    /// of an over-long line is being dropped).
    pub fn partial(&self) -> &[u8] {
        if self.taken {
            &[]
        } else {
            &self.line
        }
    }

    /// Bytes read from the start, the unfinished line's included.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// The reader, to give it more to read once it is read to its end (a later
    /// [`BoundedLines::next_line`] goes on with the line begun).
    pub fn get_mut(&mut self) -> &mut R {
        &mut self.reader
    }
}

/// Bytes read per block by [`read_blocks`] (plus the unfinished line carried over).
pub(super) const BLOCK: usize = 1 << 20;

/// A run of whole lines of the log, each with the hex SHA-256 of its bytes.
pub(super) struct Block {
    data: Vec<u8>,
    /// Per line: where it ends in `data` (its newline's index); a line starts after the
    /// newline before it, the first at 0.
    ends: Vec<usize>,
    hashes: Vec<[u8; 64]>,
    /// What follows the block's last line.
    then: BlockEnd,
}

pub(super) enum BlockEnd {
    More,
    Eof,
    /// The file ends in a line with no newline.
    Incomplete,
    /// A line longer than [`MAX_LINE`] bytes.
    Overlong,
    Failed(std::io::Error),
}

/// The reader thread of [`verify_each`]: sends blocks until the end of the file, the first
/// line that cannot be a record, a read error, or the receiver's stop.
pub(super) fn read_blocks(mut file: impl Read, tx: &std::sync::mpsc::SyncSender<Block>) {
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut data = std::mem::take(&mut carry);
        let then = match (&mut file).take(BLOCK as u64).read_to_end(&mut data) {
            Err(e) => BlockEnd::Failed(e),
            Ok(n) if n < BLOCK => BlockEnd::Eof,
            Ok(_) => BlockEnd::More,
        };
        let (mut ends, mut hashes) = (Vec::new(), Vec::new());
        let mut start = 0;
        let mut then = then;
        while let Some(i) = memchr::memchr(b'\n', &data[start..]) {
            let end = start + i;
            if end - start > MAX_LINE {
                then = BlockEnd::Overlong;
                break;
            }
            let mut h = [0u8; 64];
            hex_digest(&data[start..end], &mut h);
            ends.push(end);
            hashes.push(h);
            start = end + 1;
        }
        if !matches!(then, BlockEnd::Overlong | BlockEnd::Failed(_)) {
            let rest = data.len() - start;
            if rest > MAX_LINE {
                then = BlockEnd::Overlong;
            } else if matches!(then, BlockEnd::Eof) && rest > 0 {
                then = BlockEnd::Incomplete;
            } else if matches!(then, BlockEnd::More) {
                carry = data[start..].to_vec();
                data.truncate(start);
            }
        }
        let go_on = matches!(then, BlockEnd::More);
        let block = Block {
            data,
            ends,
            hashes,
            then,
        };
        if tx.send(block).is_err() || !go_on {
            return;
        }
    }
}

/// The loop of [`verify_each`] over the reader's blocks; `head` is the hex SHA-256 of the last
/// good line.
pub(super) fn walk_chain(
    rx: std::sync::mpsc::Receiver<Block>,
    report: &mut VerifyReport,
    head: &mut [u8; 64],
    each: &mut dyn FnMut(u64, &RecordView<'_>) -> Result<(), String>,
) -> std::io::Result<()> {
    let bad = |report: &mut VerifyReport, line: u64, why: String| {
        report.first_bad = Some(BadLine { line, why });
    };
    // The reader always ends with a block that is not `More`; a closed channel before that
    // means the reader thread died.
    while let Ok(block) = rx.recv() {
        let mut start = 0;
        for (&end, hash) in block.ends.iter().zip(&block.hashes) {
            let content = &block.data[start..end];
            start = end + 1;
            if !check_line(report, head, content, hash, each) {
                return Ok(());
            }
        }
        let no = report.lines + 1;
        match block.then {
            BlockEnd::More => {}
            BlockEnd::Eof => return Ok(()),
            BlockEnd::Failed(e) => return Err(e),
            BlockEnd::Overlong => {
                bad(report, no, overlong_line());
                return Ok(());
            }
            BlockEnd::Incomplete => {
                bad(report, no, "incomplete final line (no newline): the log was truncated or a write was interrupted".into());
                // The bytes after the last newline (`start`, past every complete line).
                report.torn = Some(block.data.len().saturating_sub(start) as u64);
                // Read as a line of its own, on a copy of the walk: a record that continues
                // the chain is kept aside, for a reader with the anchor to judge.
                let line = &block.data[start.min(block.data.len())..];
                let mut whole = VerifyReport {
                    first_bad: None,
                    torn: None,
                    ..report.clone()
                };
                let mut end = *head;
                let mut hash = [0u8; 64];
                hex_digest(line, &mut hash);
                if check_line(&mut whole, &mut end, line, &hash, &mut |_, _| Ok(())) {
                    whole.head = String::from_utf8_lossy(&end).into_owned();
                    report.unterminated = Some(Box::new(whole));
                }
                return Ok(());
            }
        }
    }
    Err(std::io::Error::other("the log reader stopped"))
}

/// One complete line of [`walk_chain`], whose hex SHA-256 is `hash`: false once a line is bad
/// (then in `report.first_bad`).
pub(super) fn check_line(
    report: &mut VerifyReport,
    head: &mut [u8; 64],
    content: &[u8],
    hash: &[u8; 64],
    each: &mut dyn FnMut(u64, &RecordView<'_>) -> Result<(), String>,
) -> bool {
    let bad = |report: &mut VerifyReport, line: u64, why: String| {
        report.first_bad = Some(BadLine { line, why });
        false
    };
    let no = report.lines + 1;
    report.lines = no;
    let mut fields = match record_view(content) {
        Ok(x) => x,
        Err(why) => {
            return bad(report, no, why);
        }
    };
    fields.hash = Some(*hash);
    let seq = fields.seq;
    let op = fields.op.as_deref().unwrap_or("");
    if no == 1 && seq > 1 && SEGMENT_STARTS.contains(&op) {
        // A later segment: the daemon began this file after a rotation or a truncation,
        // continuing the chain of the file before it.
        report.first_seq = seq;
        report.continues = Some(fields.prev.to_string());
        report.last_seq = seq;
        *head = *hash;
        return match record_members(&mut fields).and_then(|()| each(no, &fields)) {
            Ok(()) => true,
            Err(why) => bad(report, no, why),
        };
    }
    if no == 1 {
        report.first_seq = seq;
    }
    let Some(expected_seq) = report.last_seq.checked_add(1) else {
        return bad(
            report,
            no,
            format!(
                "a line follows seq {}, the largest seq: no seq can follow it",
                report.last_seq
            ),
        );
    };
    let linked = fields.prev.as_bytes() == &head[..];
    if seq > expected_seq && op == "audit.gap" && linked && no > 1 {
        // The daemon's record of a cut tail accepted at start: the chain goes on after the
        // anchored seq, never giving a seq twice, from the last record present (its `prev`).
        // The jump is the record's to explain, and is reported as such, not as a removal: a
        // line removed before it would break its `prev`.
        report.gaps.push(RecordedGap {
            line: no,
            first: expected_seq,
            last: seq - 1,
        });
    } else if seq != expected_seq {
        let why = if seq > expected_seq && op == "audit.gap" {
            format!(
                    "seq {seq} follows seq {}: records {expected_seq}..={} are missing from this file; this line is the daemon's `audit.gap` record (it found the log truncated by another party)",
                    report.last_seq,
                    seq - 1
                )
        } else if seq > expected_seq {
            format!(
                "seq {seq} follows seq {}: {} line(s) removed before this one",
                report.last_seq,
                seq - expected_seq
            )
        } else {
            format!(
                "seq {seq} follows seq {}: lines reordered, duplicated or renumbered",
                report.last_seq
            )
        };
        return bad(report, no, why);
    }
    if fields.prev.as_bytes() != &head[..] {
        // The seq is in order, so no line is missing here: the previous line was changed.
        let (at, why) = if no == 1 {
            (
                1,
                "the first line's prev is not 64 zeros: the log's beginning was removed"
                    .to_string(),
            )
        } else {
            (
                no - 1,
                format!(
                    "edited: its SHA-256 does not match the prev recorded in line {no} \
                         (this line, or that prev, was changed)"
                ),
            )
        };
        return bad(report, at, why);
    }
    report.last_seq = seq;
    *head = *hash;
    // A record the chain accepts must still be one the daemon writes: lines verify or not by
    // their members as well as by their links.
    match record_members(&mut fields).and_then(|()| each(no, &fields)) {
        Ok(()) => true,
        Err(why) => bad(report, no, why),
    }
}
