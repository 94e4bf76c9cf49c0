//! The anchor in-process (docs/audit.md, "The anchor"): with no daemon's ticker, an anchor is
//! written only where the writer writes one itself, so the window between the daemon's own
//! record that begins a file (or follows a cut) and the next anchor is held open for as long
//! as a test needs, as a crash within it would leave it.

use std::path::Path;

use scopevault::audit::{
    journal_path, read_anchor, AuditError, AuditLog, AuditRecord, Decision, OpenFlags,
};
use scopevault::protocol::Op;

use crate::common::with_state_dir;

/// `AuditLog::open_with` as `serve` opens its log (sync, anchored), with `--accept-audit-gap`
/// when `accept_gap`; retried while the log is `InUse` (a child another test forks between our
/// close and this open holds the log's `flock` until it execs).
fn open(path: &Path, accept_gap: bool) -> Result<AuditLog, AuditError> {
    let flags = OpenFlags {
        anchor: true,
        accept_gap,
        ..OpenFlags::default()
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match AuditLog::open_with(path, true, &flags) {
            Err(AuditError::InUse { .. }) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            r => return r,
        }
    }
}

fn fetch(log: &AuditLog) -> u64 {
    log.append(AuditRecord::new(Op::Fetch, Decision::Allow))
        .unwrap()
}

/// The JSON records of a file.
fn records(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Found by forging logs from docs/audit.md (eighteenth pass): a live file that begins right
/// after its anchored record was taken whenever its first `prev` named the anchored head,
/// which anyone who reads the log knows, so one forged `audit.rotate` record cut the anchored
/// tail unnoticed. The daemon's own look-alike (a crash within the anchor interval after it
/// began a new file, or went on after a cut) must still start: its anchor, written before
/// that first record, names the record's line (`next`). Each case is left as a crash leaves
/// it: no anchor written after the record.
#[test]
fn the_daemons_own_first_record_after_its_anchor_is_taken_and_a_look_alike_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    with_state_dir(&dir.path().join("state"), || {
        // A rotation: the anchor names the new file's first line before it is written.
        let path = dir.path().join("rotated.jsonl");
        let log = open(&path, false).unwrap();
        fetch(&log);
        fetch(&log);
        log.write_anchor_now().unwrap();
        let (_, seq) = log.rotate().unwrap();
        assert_eq!(seq, 3);
        let a = read_anchor(&path).unwrap().unwrap();
        assert_eq!(
            (a.seq, a.begins.is_some(), a.next.is_some()),
            (2, true, true)
        );
        drop(log);
        let rotated = std::fs::read_to_string(&path).unwrap();
        let log = open(&path, false).expect("the daemon's own new file after a crash");
        assert_eq!(fetch(&log), 4);
        drop(log);

        // Its look-alike: the same kind of record at the same seq after the same head, with
        // another reason, as a forger writes it.
        let forged = rotated.replacen("rotated by", "Rotated by", 1);
        assert_ne!(forged, rotated);
        std::fs::write(&path, &forged).unwrap();
        std::fs::remove_file(journal_path(&path)).unwrap();
        let e = open(&path, false).unwrap_err();
        assert!(
            matches!(e, AuditError::Gap { .. })
                && e.to_string().contains("records 1..=2 are not in it"),
            "{e}"
        );

        // A cut under the daemon (copytruncate): the anchor names the gap record's line.
        let path = dir.path().join("cut.jsonl");
        let log = open(&path, false).unwrap();
        let before = fetch(&log);
        log.write_anchor_now().unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(fetch(&log), before + 2, "after the gap record");
        assert_eq!(records(&path)[0]["op"], "audit.gap");
        let a = read_anchor(&path).unwrap().unwrap();
        assert_eq!((a.seq, a.next.is_some()), (before, true));
        drop(log);
        let log = open(&path, false).expect("the daemon's own record of a cut, after a crash");
        drop(log);

        // A log moved aside while the daemon was stopped, started with --accept-audit-gap:
        // the empty new file begins with the gap record the anchor names.
        let path = dir.path().join("aside.jsonl");
        let log = open(&path, false).unwrap();
        let last = fetch(&log);
        log.write_anchor_now().unwrap();
        drop(log);
        std::fs::rename(&path, dir.path().join("aside.jsonl.1")).unwrap();
        assert!(matches!(open(&path, false), Err(AuditError::Gap { .. })));
        let log = open(&path, true).unwrap();
        let recs = records(&path);
        assert_eq!(
            (recs[0]["op"].as_str(), recs[0]["seq"].as_u64()),
            (Some("audit.gap"), Some(last + 1))
        );
        assert!(read_anchor(&path).unwrap().unwrap().next.is_some());
        drop(log);
        let log = open(&path, false).expect("the accepted gap's own first record, after a crash");
        assert_eq!(fetch(&log), last + 2);
    });
}

/// An anchor written before the daemon named the record after it (no `next`) is read as
/// before: no such record pending, so a log that begins right after its anchored record is
/// refused.
#[test]
fn an_anchor_without_next_is_read_and_names_no_pending_record() {
    let a: scopevault::audit::Anchor = serde_json::from_str(&format!(
        r#"{{"log":"/var/log/scopevault/audit.jsonl","seq":15,"head":"{}","generation":3}}"#,
        "ab".repeat(32)
    ))
    .unwrap();
    assert_eq!((a.seq, a.begins, a.next), (15, None, None));
}
