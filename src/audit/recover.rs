//! Recovery on open: read the tail of an existing log to continue its chain.

use super::*;

/// The end of an existing log ([`read_tail`]).
#[derive(Debug, Clone)]
pub(super) struct Tail {
    /// The chain at its last complete line.
    pub(super) chain: Chain,
    /// The length up to and including that line.
    pub(super) len: u64,
    /// If the file ends in an incomplete line, how many bytes follow it.
    pub(super) torn: Option<u64>,
    /// The `time` of that last complete record (`None`: no record).
    pub(super) newest: Option<time::OffsetDateTime>,
}

/// Read the end of an existing log to continue its chain ([`Tail`]), reading back from its end
/// only the last complete line and what follows it. Nothing is cut here: the log is judged
/// against its anchor first (a start refused must leave it as it is), and the caller cuts such
/// a line once it goes on.
pub(super) fn read_tail(file: &File, len: u64, path: &Path) -> Result<Tail, AuditError> {
    let read_err = |e: std::io::Error| AuditError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    };
    if len == 0 {
        return Ok(Tail::empty(None));
    }
    // Read backwards in blocks until we hold the last complete line and the byte before it.
    let mut tail: Vec<u8> = Vec::new();
    let mut start = len;
    loop {
        let block = (64 * 1024u64).min(start);
        let from = start.saturating_sub(block);
        let mut chunk = vec![0u8; (start - from) as usize];
        file.read_exact_at(&mut chunk, from).map_err(read_err)?;
        chunk.extend_from_slice(&tail);
        tail = chunk;
        start = from;
        let end_of_complete = tail.iter().rposition(|&b| b == b'\n');
        if let Some(nl) = end_of_complete {
            if tail[..nl].contains(&b'\n') || start == 0 {
                break;
            }
        }
        if start == 0 || tail.len() > 2 * MAX_LINE {
            break;
        }
    }
    let Some(nl) = tail.iter().rposition(|&b| b == b'\n') else {
        if start != 0 {
            // Its line number only for the message: counting reads the log up to that line.
            return Err(AuditError::Corrupt {
                path: path.to_owned(),
                line: count_lines(file, start).map_err(read_err)? + 1,
                why: format!("no line break in the last {} bytes", tail.len()),
            });
        }
        // Not one complete line: the whole file is a torn first write.
        return Ok(Tail::empty(Some(len)));
    };
    let torn = (tail.len() - 1 - nl) as u64;
    let complete_len = len - torn;
    let line_start = tail[..nl]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    if line_start == 0 && start != 0 {
        // The line holding byte `start` began before it: its number counts the line ends
        // before `start`. Until the twenty-fourth pass this message said "line 0".
        return Err(AuditError::Corrupt {
            path: path.to_owned(),
            line: count_lines(file, start).map_err(read_err)? + 1,
            why: format!("the last line is longer than {MAX_LINE} bytes"),
        });
    }
    let last = &tail[line_start..nl];
    // Read as every reader of the log reads a record (`audit verify`, `doctor`, `audit show`,
    // `lint --audit`): its members typed, none written twice, and `time`, `op` and `decision`
    // there. A lenient read of `seq` and `prev` alone continued a chain from a last line the
    // verifier refuses (nineteenth pass, found by the last review).
    let read = record_view(last).and_then(|mut rec| record_members(&mut rec).map(|()| rec));
    let rec = match read {
        Ok(rec) => rec,
        Err(why) => {
            // Its line number only for the message: counting reads the whole log.
            let line_no = count_lines(file, start + line_start as u64).map_err(read_err)? + 1;
            return Err(AuditError::Corrupt {
                path: path.to_owned(),
                line: line_no,
                why,
            });
        }
    };
    Ok(Tail {
        chain: Chain {
            seq: rec.seq,
            prev: HEXLOWER.encode(&Sha256::digest(last)),
        },
        len: complete_len,
        torn: (torn > 0).then_some(torn),
        newest: rec.at,
    })
}

impl Tail {
    /// A log with no complete line: `torn` bytes of an incomplete one, if any.
    pub(super) fn empty(torn: Option<u64>) -> Tail {
        Tail {
            chain: Chain {
                seq: 0,
                prev: GENESIS.to_owned(),
            },
            len: 0,
            torn,
            newest: None,
        }
    }
}

/// Whether `line`, a log's incomplete last line (no newline after it), is the record the anchor
/// `a` names, whole but for its newline: its SHA-256 is the anchored head, it is a record (read
/// as every reader reads one, [`record_members`]) at the anchored seq, and it continues
/// `before`, the seq and hash of the last complete line (`None`: it begins the file). Such a
/// line lost nothing but its line end: it is not what remains of a cut tail, and `serve`
/// completes it at start (docs/audit.md, "The anchor"; twenty-second pass: it was called a
/// cut tail, and `--accept-audit-gap` cut the whole authentic record).
pub fn is_anchored_record_unterminated(
    a: &Anchor,
    line: &[u8],
    before: Option<(u64, &str)>,
) -> bool {
    if line.len() > MAX_LINE || HEXLOWER.encode(&Sha256::digest(line)) != a.head {
        return false;
    }
    let Ok(mut rec) = record_view(line) else {
        return false;
    };
    if record_members(&mut rec).is_err() || rec.seq != a.seq {
        return false;
    }
    match before {
        Some((seq, head)) => seq.checked_add(1) == Some(rec.seq) && rec.prev == head,
        None => true,
    }
}

/// [`is_anchored_record_unterminated`] for the `torn` bytes after the first `len` bytes of
/// `file`, which end in the complete line `chain` names (none when `len` is 0).
pub(super) fn unterminated_at(
    file: &File,
    len: u64,
    torn: u64,
    chain: &Chain,
    a: &Anchor,
) -> std::io::Result<bool> {
    if torn > MAX_LINE as u64 {
        return Ok(false);
    }
    let mut line = vec![0u8; torn as usize];
    file.read_exact_at(&mut line, len)?;
    let before = (len > 0).then_some((chain.seq, chain.prev.as_str()));
    Ok(is_anchored_record_unterminated(a, &line, before))
}

/// What [`record_at_seq`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found {
    /// The record asked for.
    At(Located),
    /// The file begins after that record (an earlier segment holds it).
    Before,
    /// The record is missing though the file began before it, or a line between it and the
    /// end is not a record (the reason).
    Unreadable(String),
}

/// The record [`record_at_seq`] found, and the line before it in the file.
#[derive(Debug, PartialEq, Eq)]
pub struct Located {
    /// Its `prev`: the hash of the record before it, which an anchor names.
    pub prev: String,
    /// The SHA-256 hex of its own line.
    pub hash: String,
    /// The line before it in the file: `None` when the record begins the file.
    pub before: Option<LineBefore>,
}

/// The line before a [`Located`] record.
#[derive(Debug, PartialEq, Eq)]
pub struct LineBefore {
    /// Its `seq`, or `None` when it is not a record (a line cut within, zeros).
    pub seq: Option<u64>,
    /// The SHA-256 hex of the line.
    pub hash: String,
}

/// The record with `seq` `want` in the first `len` bytes of `file` (which end in a complete
/// line), and the line before it: the anchor's check compares them with the anchored record
/// (docs/audit.md, "The anchor"). Read from the end back to it, so the cost is the bytes after
/// it.
pub fn record_at_seq(file: &File, len: u64, want: u64) -> std::io::Result<Found> {
    // `buf` holds the bytes from `start` up to the end of the lines not yet looked at; it ends
    // in a newline, and holds at most one block plus one line.
    let mut buf: Vec<u8> = Vec::new();
    let mut start = len;
    let mut end_line_no = 0u64;
    let mut later = 0u64;
    // The record asked for, once found: the next line back is the one before it.
    let mut found: Option<(String, String)> = None;
    // The beginning of the file reached: the record found has no line before it.
    let at_file_start = |found: Option<(String, String)>| match found {
        Some((prev, hash)) => Found::At(Located {
            prev,
            hash,
            before: None,
        }),
        None => Found::Before,
    };
    loop {
        let body = buf.len().saturating_sub(1);
        let line_start = match buf[..body].iter().rposition(|&b| b == b'\n') {
            Some(p) => p + 1,
            None if start == 0 => 0,
            None if buf.len() > 2 * MAX_LINE => {
                return Ok(match found {
                    // The line before it is over the limit: not a record.
                    Some((prev, hash)) => Found::At(Located {
                        prev,
                        hash,
                        before: Some(LineBefore {
                            seq: None,
                            hash: String::new(),
                        }),
                    }),
                    None => Found::Unreadable(format!("a line longer than {MAX_LINE} bytes")),
                });
            }
            None => {
                let from = start.saturating_sub(64 * 1024);
                let mut chunk = vec![0u8; (start - from) as usize];
                file.read_exact_at(&mut chunk, from)?;
                chunk.extend_from_slice(&buf);
                buf = chunk;
                start = from;
                continue;
            }
        };
        if buf.is_empty() {
            return Ok(at_file_start(found));
        }
        let line = &buf[line_start..body];
        if let Some((prev, hash)) = found {
            let before = LineBefore {
                seq: parse_chain_fields(line).ok().map(|(s, _)| s),
                hash: HEXLOWER.encode(&Sha256::digest(line)),
            };
            return Ok(Found::At(Located {
                prev,
                hash,
                before: Some(before),
            }));
        }
        end_line_no += 1;
        match parse_chain_fields(line) {
            Ok((seq, prev)) if seq == want => {
                found = Some((prev, HEXLOWER.encode(&Sha256::digest(line))));
            }
            // A jump over the record (a gap, or lines cut and others written after them):
            // it is not in the file, though the file began before it.
            Ok((seq, _)) if seq < want => {
                return Ok(Found::Unreadable(format!(
                    "there is no record at seq {want}: seq {seq} is followed by seq {later}"
                )))
            }
            Ok((seq, _)) => later = seq,
            Err(why) => {
                return Ok(Found::Unreadable(format!(
                    "line {end_line_no} from the end: {why}"
                )))
            }
        }
        if line_start == 0 {
            return Ok(at_file_start(found));
        }
        buf.truncate(line_start);
    }
}

/// Number of newlines in the first `upto` bytes of `file`.
pub(super) fn count_lines(file: &File, upto: u64) -> std::io::Result<u64> {
    let mut n = 0u64;
    let mut off = 0u64;
    let mut buf = vec![0u8; 64 * 1024];
    while off < upto {
        let want = ((upto - off) as usize).min(buf.len());
        let got = file.read_at(&mut buf[..want], off)?;
        if got == 0 {
            break;
        }
        n += buf[..got].iter().filter(|&&b| b == b'\n').count() as u64;
        off += got as u64;
    }
    Ok(n)
}

/// The key the newest record of a log that names one was written with: its `key_id` (the
/// key's fingerprint, [`AuditKey::fingerprint`]), its seq and its op ([`newest_key_id`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedKey {
    /// The `key_id` it carries.
    pub key_id: String,
    /// Its seq.
    pub seq: u64,
    /// Its op (`vault.load`, `audit.new_key`, `audit.rotate`, `audit.gap`).
    pub op: String,
}

/// The newest record in the first `len` bytes of a log that carries a `key_id` (the records
/// that begin a run, a key or a file: `vault.load`, `audit.new_key`, `audit.rotate`,
/// `audit.gap`), read back from the end line by line; `None` when none does (a log written
/// before the twenty-seventh pass). An incomplete last line, a line that is not such a
/// record, and a `key_id` that is not 16 lowercase hex digits are passed over: `audit verify` judges them. A start of a log without its anchor
/// compares the key beside the log with it (twenty-eighth pass: no key was judged there).
pub fn newest_key_id(file: &File, len: u64) -> std::io::Result<Option<RecordedKey>> {
    #[derive(serde::Deserialize)]
    struct Rec {
        seq: Option<u64>,
        op: Option<String>,
        key_id: Option<String>,
    }
    let judge = |line: &[u8]| -> Option<RecordedKey> {
        // Parsed only if it names the member at all: a long log written before `key_id`
        // is read back whole, and most of its lines are passed over by this test alone.
        if !line.windows(8).any(|w| w == b"\"key_id\"") {
            return None;
        }
        let r: Rec = serde_json::from_slice(line).ok()?;
        let op = r.op.filter(|op| {
            [
                AuditOp::VaultLoad,
                AuditOp::AuditNewKey,
                AuditOp::AuditRotate,
                AuditOp::AuditGap,
            ]
            .iter()
            .any(|o| o.as_str() == op)
        })?;
        // A fingerprint as the daemon writes it, 16 lowercase hex digits; anything else is
        // no key's (and is never quoted in a message).
        let key_id = r.key_id.filter(|k| {
            k.len() == 16 && k.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
        })?;
        Some(RecordedKey {
            key_id,
            seq: r.seq?,
            op,
        })
    };
    // `pending` holds the bytes from `from` up to the start of the last line judged; it ends
    // in a line end once the incomplete last line is dropped.
    let mut pending: Vec<u8> = Vec::new();
    let mut from = len;
    let mut dropped_torn = false;
    loop {
        if from > 0 && !pending[..pending.len().saturating_sub(1)].contains(&b'\n') {
            let block = (64 * 1024u64).min(from);
            let start = from - block;
            let mut chunk = vec![0u8; block as usize];
            file.read_exact_at(&mut chunk, start)?;
            chunk.extend_from_slice(&pending);
            pending = chunk;
            from = start;
            // A line longer than any the daemon writes is no record: its bytes are dropped,
            // as an incomplete last line's are, up to the line end before them.
            if pending.len() > 2 * MAX_LINE && !pending[..pending.len() - 1].contains(&b'\n') {
                pending.clear();
                dropped_torn = false;
                continue;
            }
        }
        if !dropped_torn {
            match pending.iter().rposition(|&b| b == b'\n') {
                Some(nl) => {
                    pending.truncate(nl + 1);
                    dropped_torn = true;
                }
                None if from == 0 => return Ok(None),
                None => continue,
            }
        }
        if pending.is_empty() {
            if from == 0 {
                return Ok(None);
            }
            continue;
        }
        // `pending` ends in a line end: the line before it, if its start is known.
        let body = &pending[..pending.len() - 1];
        match body.iter().rposition(|&b| b == b'\n') {
            Some(nl) => {
                if let Some(k) = judge(&body[nl + 1..]) {
                    return Ok(Some(k));
                }
                pending.truncate(nl + 1);
            }
            None if from == 0 => return Ok(judge(body)),
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file of records with `seq`s `seqs`, each padded to about `pad` bytes (so that lines
    /// cross the 64 KiB blocks read backwards), and its length.
    fn log_of(dir: &Path, seqs: &[u64], pad: usize) -> (File, u64) {
        let path = dir.join("log.jsonl");
        let mut text = String::new();
        for s in seqs {
            text.push_str(&format!(
                r#"{{"seq":{s},"pad":"{}","prev":"{s:064x}"}}"#,
                "x".repeat(pad)
            ));
            text.push('\n');
        }
        std::fs::write(&path, &text).unwrap();
        (File::open(&path).unwrap(), text.len() as u64)
    }

    /// A last line too long to read, or with no line break in what the start reads back, is
    /// named by its real line number (twenty-fourth pass, found by the attacker of this pass's
    /// fixes: `serve` said "line 0").
    #[test]
    fn an_over_long_or_unbroken_last_line_is_named_by_its_line_number() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let lines = "{\"seq\":1}\n{\"seq\":2}\n{\"seq\":3}\n";
        for (tail, why) in [
            (format!("{}\n", "x".repeat(3 * MAX_LINE)), "longer than"),
            ("x".repeat(3 * MAX_LINE), "no line break"),
        ] {
            std::fs::write(&path, format!("{lines}{tail}")).unwrap();
            let f = File::open(&path).unwrap();
            let len = f.metadata().unwrap().len();
            match read_tail(&f, len, &path) {
                Err(AuditError::Corrupt { line, why: w, .. }) => {
                    assert_eq!(line, 4, "{w}");
                    assert!(w.contains(why), "{w}");
                }
                other => panic!("{why}: {:?}", other.map(|t| t.chain.seq)),
            }
        }
    }

    /// The anchor's check at start reads back from the end to the record after the anchored
    /// one: found across read blocks with the line before it, absent because the file begins
    /// after it, or missing where the file skips over it.
    #[test]
    fn record_at_seq_finds_the_record_and_the_line_before_it_read_backwards_or_says_why_not() {
        let dir = tempfile::tempdir().unwrap();
        for pad in [10, 40_000] {
            let seqs: Vec<u64> = (5..=12).collect();
            let (f, len) = log_of(dir.path(), &seqs, pad);
            let text = std::fs::read_to_string(dir.path().join("log.jsonl")).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let hash = |l: &str| HEXLOWER.encode(&Sha256::digest(l.as_bytes()));
            for want in 5..=12u64 {
                let k = (want - 5) as usize;
                let before = (k > 0).then(|| LineBefore {
                    seq: Some(want - 1),
                    hash: hash(lines[k - 1]),
                });
                assert_eq!(
                    record_at_seq(&f, len, want).unwrap(),
                    Found::At(Located {
                        prev: format!("{want:064x}"),
                        hash: hash(lines[k]),
                        before,
                    }),
                    "pad {pad}"
                );
            }
            assert_eq!(record_at_seq(&f, len, 4).unwrap(), Found::Before);
            let (f, len) = log_of(dir.path(), &[5, 6, 9, 10], pad);
            let Found::Unreadable(why) = record_at_seq(&f, len, 7).unwrap() else {
                panic!("a skipped record is missing")
            };
            assert!(why.contains("no record at seq 7"), "{why}");
            // The record is there, but the line before it is another record's.
            let Found::At(at) = record_at_seq(&f, len, 9).unwrap() else {
                panic!("seq 9 is there")
            };
            assert_eq!(at.before.unwrap().seq, Some(6));
        }
        let path = dir.path().join("bad.jsonl");
        std::fs::write(&path, "{\"seq\":1,\"prev\":\"0\"}\nnot a record\n").unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let Found::Unreadable(why) = record_at_seq(&File::open(&path).unwrap(), len, 1).unwrap()
        else {
            panic!("a line that is not a record")
        };
        assert!(why.contains("line 1 from the end"), "{why}");
        // A line before it that is not a record is handed back as such.
        let good = format!("{{\"seq\":2,\"prev\":\"{}\"}}", "a".repeat(64));
        std::fs::write(&path, format!("torn{{\"se\n{good}\n")).unwrap();
        let len = std::fs::metadata(&path).unwrap().len();
        let Found::At(at) = record_at_seq(&File::open(&path).unwrap(), len, 2).unwrap() else {
            panic!("seq 2 is there")
        };
        assert_eq!(at.before.unwrap().seq, None);
    }

    /// The newest record naming the chain's key, read back across the 64 KiB blocks, past
    /// later records without `key_id`, a torn last line, a line that is no record and a
    /// malformed `key_id`; a log whose records name none (older versions) gives `None`.
    #[test]
    fn the_newest_key_id_a_log_carries_is_read_back_from_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.jsonl");
        let rec = |seq: u64, op: &str, key: Option<&str>| {
            let key = key.map_or(String::new(), |k| format!(r#","key_id":"{k}""#));
            format!(
                r#"{{"seq":{seq},"op":"{op}","pad":"{}"{key}}}"#,
                "x".repeat(50_000)
            ) + "\n"
        };
        let k1 = "0123456789abcdef";
        let k2 = "fedcba9876543210";
        let mut text = rec(1, "vault.load", Some(k1));
        text += &rec(2, "fetch", None);
        text += &rec(3, "audit.new_key", Some(k2));
        for seq in 4..9 {
            text += &rec(seq, "fetch", None);
        }
        text += &rec(9, "fetch", Some(k1)); // not a record that names the chain's key
        text += &rec(10, "vault.load", Some("NOT-A-KEY"));
        text += "not json\n";
        text += r#"{"seq":11,"op":"vault.load","key_id":"1111111111111111"#; // torn
        std::fs::write(&path, &text).unwrap();
        let f = File::open(&path).unwrap();
        let got = newest_key_id(&f, text.len() as u64).unwrap().unwrap();
        assert_eq!(
            got,
            RecordedKey {
                key_id: k2.to_owned(),
                seq: 3,
                op: "audit.new_key".to_owned()
            }
        );
        // Only the first record names it: read back to the file's start.
        let first = rec(1, "audit.gap", Some(k1)) + &rec(2, "fetch", None).repeat(3);
        std::fs::write(&path, &first).unwrap();
        let f = File::open(&path).unwrap();
        let got = newest_key_id(&f, first.len() as u64).unwrap().unwrap();
        assert_eq!((got.seq, got.key_id.as_str()), (1, k1));
        // Older records, without `key_id`: none.
        let old = rec(1, "vault.load", None) + &rec(2, "fetch", None);
        std::fs::write(&path, &old).unwrap();
        let f = File::open(&path).unwrap();
        assert_eq!(newest_key_id(&f, old.len() as u64).unwrap(), None);
        assert_eq!(newest_key_id(&f, 0).unwrap(), None);
    }
}
