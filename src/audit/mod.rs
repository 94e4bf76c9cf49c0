//! The audit log: one JSON line per decision, hash-chained, with a keyed HMAC of every value
//! handed out (never the value), durable before the secret leaves the daemon.
//!
//! `docs/audit.md` is the normative description of the format. In short, each line is
//!
//! ```text
//! {"seq":N,"time":"RFC 3339","peer":{"uid":..,"gid":..,"pid":..,"exe":..},"op":"fetch",
//!  "task":..,"credential":..,"decision":"allow|deny|error","reason":..,"warnings":[..],
//!  "values":{"password":"hmac-sha256:<hex>"},"prev":"<sha256 hex of the previous line>"}
//! ```
//!
//! **Group commit.** [`AuditLog::append`] returns only once its record is written (and, when
//! sync is on, durable). Concurrent callers queue their records; whichever caller finds no
//! write in progress becomes the *leader*, takes the whole queue, writes it with one `write`
//! to the log and one synchronous write of its frame to the journal (or one `fdatasync` of the
//! log, see `journal.rs`), and wakes the others. While it syncs, new records queue up for
//! the next batch, so the number of syncs per second stays bounded by the disk while throughput
//! grows with concurrency.
//!
//! ```
//! use scopevault::audit::{AuditLog, AuditRecord, Decision, verify};
//! use scopevault::protocol::Op;
//! use scopevault::secret::SecretString;
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("audit.jsonl");
//! let log = AuditLog::open(&path, true).unwrap();
//! let pw = SecretString::from("hunter2".to_string());
//! let rec = AuditRecord {
//!     task: Some("shop-login"), credential: Some("shop-buyer"),
//!     values: vec![("password", &pw)], ..AuditRecord::new(Op::Fetch, Decision::Allow)
//! };
//! assert_eq!(log.append(rec).unwrap(), 1);
//! let text = std::fs::read_to_string(&path).unwrap();
//! assert!(!text.contains("hunter2"));
//! assert!(text.contains(&log.hmac_value("hunter2")));
//! assert!(verify(&path).unwrap().first_bad.is_none());
//! ```
#![deny(clippy::print_stderr, clippy::print_stdout)] // every line goes through crate::diag! (agent/mod.rs says why)

use std::collections::HashMap;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::{DirBuilderExt, FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use data_encoding::HEXLOWER;
use hmac::{Hmac, Mac};
use rustix::fs::OFlags;
use serde::Serialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::SecretString;

mod clock;
mod follow;
mod generations;
mod journal;
mod key;
mod moved;
mod record;
mod recover;
mod verify;
mod writer;

pub use clock::{newest_record_time, ClockVsLog, CLOCK_AHEAD_LIMIT, CLOCK_BEHIND_SKEW};
pub use follow::{Event as FollowEvent, Follower};
pub use generations::chain_generation;
use generations::Generations;
pub use journal::journal_path;
use journal::{key_id, Conflict, Journal, LogId, Redo};
pub use key::*;
pub use moved::{moved_log, moved_log_under, MovedLog};
pub use record::*;
use recover::*;
pub use recover::{
    is_anchored_record_unterminated, newest_key_id, record_at_seq, Found, LineBefore, Located,
    RecordedKey,
};
pub use verify::*;
pub use writer::*;

/// The `prev` of the first line: 64 zeros.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Prefix of every value HMAC in the log (and of `scopevault audit hash`'s output).
pub const HMAC_PREFIX: &str = "hmac-sha256:";

/// Longest a leader waits for the records of the clients its previous batch released (the
/// `commit_delay` of databases). Without it, under load the batches alternate between one
/// record (the first client back) and all the others, halving the batch size; with it, a
/// leader waits up to half the last sync's duration, at most this long, and only when
/// the previous batch had more than one record (one client never waits).
const GATHER_MAX: Duration = Duration::from_millis(2);

/// Length of the HMAC key stored in `<audit path>.key`.
const KEY_LEN: usize = 32;

/// Lines longer than this are refused by [`verify`] and [`AuditLog::open`], and skipped by
/// [`BoundedLines`] (`audit show`), rather than read into memory whole (our own records are far
/// smaller).
pub const MAX_LINE: usize = 1024 * 1024;

/// Whose generation a rollback was judged against ([`AuditError::Rollback`]): the vault's
/// own, or that of vaults an anchor of an earlier version does not name.
fn rollback_whose(unnamed: &bool) -> &'static str {
    if *unnamed {
        "the vaults its anchor does not name (an anchor written before anchors named their vaults: the next vault loaded is judged against it, whatever its id)"
    } else {
        "this vault"
    }
}

/// Whether `source`, the OS error an [`AuditError`] carries, is the file-size limit
/// (`EFBIG`): the one check of every writer ([`crate::sys::is_file_size_limit`]). Until the
/// twenty-seventh pass the variants kept only the error's text, and the advice was chosen by
/// matching it.
fn past_size_limit(source: &Option<std::sync::Arc<std::io::Error>>) -> bool {
    source
        .as_deref()
        .is_some_and(|e| crate::sys::is_file_size_limit(e))
}

/// The advice of [`AuditError::JournalOpen`]: under the file-size limit (`EFBIG`), the
/// limit is the cause, and nothing in the journal's place is to be removed (twenty-sixth
/// pass, found by the attacker of hostile process environments).
fn journal_advice(source: &Option<std::sync::Arc<std::io::Error>>) -> String {
    if past_size_limit(source) {
        format!(
            "{} (LimitFSIZE= in the systemd unit) above the log's size and the journal's, then start the daemon again (docs/audit.md, \"The journal\")",
            crate::sys::FILE_SIZE_LIMIT_ADVICE
        )
    } else {
        "remove what is in its place, and the daemon makes it again at its next start (docs/audit.md, \"The journal\")".to_owned()
    }
}

/// The advice of [`AuditError::Write`]: under the file-size limit (`EFBIG`), the limit.
fn write_advice(source: &Option<std::sync::Arc<std::io::Error>>) -> String {
    if past_size_limit(source) {
        "the log reached this process's file-size limit (RLIMIT_FSIZE: LimitFSIZE= in the systemd unit, `ulimit -f`): rotate the log (docs/audit.md, \"Rotation\") or raise the limit".to_owned()
    } else {
        "check disk space, permissions and that the file was not moved".to_owned()
    }
}

/// Where a start read the fingerprint of the key the chain is written with
/// ([`AuditError::KeyMismatch`]).
#[derive(Debug, Clone)]
pub enum KeyOrigin {
    /// The log's anchor (its `key`), at this path.
    Anchor(PathBuf),
    /// With no anchor (a log restored without the state directory), the log's newest record
    /// that carries a `key_id` ([`newest_key_id`]).
    Record(Box<RecordedKey>),
}

impl std::fmt::Display for KeyOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyOrigin::Anchor(p) => write!(f, "the log's anchor {}", p.display()),
            KeyOrigin::Record(r) => write!(
                f,
                "the log's newest record naming its key (seq {}, `{}`; the log has no anchor in the state directory to compare with)",
                r.seq, r.op
            ),
        }
    }
}

/// What went wrong with the audit log. Never contains a secret value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The log or its directory could not be created, opened or read.
    #[error("cannot open the audit log {path}: {message}; check that the directory exists and is writable by the daemon's user, or choose another path with --audit")]
    Open {
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The log's HMAC key file (`<log>.key`) could not be created, opened or read. Named as
    /// the key file: it was worded as [`AuditError::Open`], "cannot open the audit log
    /// …key", pointing at the log's directory (eighteenth pass).
    #[error("cannot open the audit log's key file {path}: {message}; the key is the regular file of 32 bytes the daemon made beside the log (mode 0600, its user's): run this as that user or root, or put the key back from backup (docs/audit.md, \"The HMAC key\")")]
    KeyOpen {
        /// The key file.
        path: PathBuf,
        /// The OS error, or what is in the key's place.
        message: String,
    },
    /// The log's journal (`<log>.journal`) could not be created, opened or made. Named as the
    /// journal: it was worded as [`AuditError::Open`], "cannot open the audit log …journal",
    /// pointing at the log's directory (eighteenth pass, as for the key file).
    #[error("cannot open the audit log's journal {path}: {message}; the journal is the regular file of 1 MiB the daemon makes beside the log (mode 0600, its user's): {}", journal_advice(.source))]
    JournalOpen {
        /// The journal file.
        path: PathBuf,
        /// The OS error, or what is in the journal's place.
        message: String,
        /// The OS error itself, when one failed (its text is in `message`): what the advice is
        /// chosen by.
        #[source]
        source: Option<std::sync::Arc<std::io::Error>>,
    },
    /// The log's anchor could not be read because this user may not (`EACCES`: the state
    /// directory or the anchor is the daemon's): the log cannot be checked against it, which
    /// says nothing against the anchor. Twenty-sixth pass, found by the attacker of
    /// observability and many daemons: it was [`AuditError::AnchorRead`], whose advice to move
    /// the anchor aside turns off the detection of records cut from the log's end.
    ///
    /// A state directory this user may not look in (root's, 0700, recreated by a root command
    /// after it was lost) is named, with its owner and mode and the fix: that an anchor is
    /// there is not known, and this user may be the daemon's own (twenty-seventh pass, found
    /// by the attacker of multi-admin work and backups: the daemon's own start was told to
    /// "leave in place" an anchor that did not exist and to "run this as the daemon's user").
    #[error("cannot check the audit log against its anchor {path}: {message}: {advice}")]
    AnchorNoAccess {
        /// The anchor file.
        path: PathBuf,
        /// The OS error.
        message: String,
        /// Why, and what to do ([`writer::anchor_no_access_advice`]).
        advice: String,
    },
    /// The log's anchor (in the state directory) could not be read, is not an anchor, or is
    /// not this log's. Named as the anchor: it was worded "cannot read the audit log
    /// …/audit-anchor-….json: this is its anchor…" (twentieth pass).
    #[error("cannot read the audit log's anchor {path}: {message}; the anchor is the regular file the daemon writes in its state directory with the chain's head (docs/audit.md, \"The anchor\"): put this log's anchor back from backup, or move this file aside (the next start then has no anchor to judge a log with records against: it is refused until one start with `serve --accept-audit-gap` records the log's tail as unknown and writes a new one)")]
    AnchorRead {
        /// The anchor file.
        path: PathBuf,
        /// The OS error, or what is wrong with it.
        message: String,
    },
    /// The log is shorter than (or differs from) its anchor.
    #[error("the audit log {path} does not match its anchor: {why}; restore the log from backup, or start with `serve --accept-audit-gap` to record the gap in the chain and go on")]
    Gap {
        /// The log.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// The log is empty under its anchor, and the moved file beside it that the chain
    /// continues in ends with the anchored record whole but for its newline, or two files
    /// hold it, or a compressed file or another user's there may hold it: nothing is known
    /// missing, and the one fix is that newline, moving the extra copy away, decompressing the
    /// file or giving it to the daemon's user (`why` says which). Not a [`AuditError::Gap`],
    /// whose advice (a restore, `--accept-audit-gap`) would record a gap where there is none
    /// (twenty-third pass's review).
    #[error("the audit log {path} is empty and its chain cannot be continued yet: {why}")]
    MovedUnterminated {
        /// The log.
        path: PathBuf,
        /// Where the record is, and the fix.
        why: String,
    },
    /// A log that holds records, with no anchor of it in the state directory: the anchor is
    /// missing (the state directory lost, or not restored with the log from a backup, or the
    /// start given another state directory than the daemon's), so nothing says whether the
    /// log lost its tail, nor which seqs were handed out after its last record. Refused before
    /// anything is written; `serve --accept-audit-gap` records the unknown tail as an
    /// `audit.gap` record and goes on [`UNANCHORED_SKIP`] seqs further. Until the
    /// twenty-seventh pass a start without the option anchored such a log as it was: after a
    /// restore from backup it gave again seqs clients held, naming other records (found by
    /// the twenty-seventh pass's attacker of multi-admin work and backups); and until the
    /// twenty-sixth only `--accept-audit-gap` was refused so.
    #[error("the audit log {path} holds records (up to seq {last}) but the state directory {state_dir} holds no anchor of it: the anchor is missing (the state directory was lost, or not restored with the log from a backup), so the log may have lost its tail, and seqs after {last} may have been handed out to clients already (their audit_seq); nothing was written. If the daemon's state directory is another, give it (a systemd unit sets it with Environment=SCOPEVAULT_STATE_DIR=, the example unit's /var/lib/scopevault-state, which a start by hand with `sudo -u` does not get: give that start every Environment= of the unit; docs/operations.md, \"systemd\"): the anchor is there. If {state_dir} is the daemon's own and the anchor was lost, start once with `serve --accept-audit-gap`: it records an `audit.gap` record saying the tail after seq {last} is unknown, and goes on 2^40 seqs further, so that no seq a client holds names another record (docs/audit.md, \"The anchor\")")]
    NoAnchor {
        /// The log.
        path: PathBuf,
        /// The state directory this start looked in.
        state_dir: PathBuf,
        /// The seq of the log's last record.
        last: u64,
    },
    /// A seq above [`moved::SEQ_CEILING`] where the start reads the chain's seqs: no daemon
    /// handed it out, and a chain continued after it could wrap to 0 and give seqs again.
    #[error("the audit log {path} cannot be continued: {why}, too close to the largest seq (2^64-1) to continue after and higher than any log reaches; the daemon did not write it so: keep it as evidence, move it out of the log's directory (or put the log, journal or anchor back from backup) and start again")]
    SeqCeiling {
        /// The log.
        path: PathBuf,
        /// What holds the seq, and the seq.
        why: String,
    },
    /// The journal holds records that a genuine journal cannot hold: ones that differ from the
    /// log at or below the anchored seq, or that would fill a log cut there with records that
    /// do not lead to the anchored one. Nothing was written: the log and the journal are left
    /// as they were.
    #[error("the audit journal {journal} conflicts with the log {path}: {why}; the log and the journal were left as they are: keep both as evidence, run `scopevault audit verify --audit {path}`, then move the journal aside (the daemon makes a new one) and start again")]
    JournalConflict {
        /// The log.
        path: PathBuf,
        /// The journal.
        journal: PathBuf,
        /// What conflicts.
        why: String,
    },
    /// A vault older than the chain has recorded of it was loaded.
    #[error("refusing vault {vault} generation {loaded}: the audit chain has recorded generation {seen} of {} (a rollback to an older copy?); restore the newest vault, or pass --allow-rollback if this is intended", rollback_whose(.unnamed))]
    Rollback {
        /// The vault loaded (its id).
        vault: String,
        /// The generation loaded.
        loaded: u64,
        /// The highest generation recorded.
        seen: u64,
        /// `seen` is of vaults the chain's anchor does not name (an anchor of an earlier
        /// version), not this vault's own.
        unnamed: bool,
    },
    /// Another process (a second daemon) holds the log's lock.
    #[error("the audit log {path} is in use by another process (another `scopevault serve`?); stop it or use another --audit path")]
    InUse {
        /// The log.
        path: PathBuf,
    },
    /// The HMAC key file exists but is not a key we wrote.
    #[error("the audit key {path} is not {KEY_LEN} bytes; restore it from backup (without it, `audit hash` cannot match old records), or, to begin a new log, move the log and key aside and start once with `serve --new-audit-key --accept-audit-gap`, which records both in it)")]
    BadKey {
        /// The key file.
        path: PathBuf,
    },
    /// The log holds records but its HMAC key is gone: a new key would silently break
    /// `audit hash` for every earlier hand-out.
    #[error("the audit log {path} holds records (or continues a chain that does: a file a rotation moved, or records its anchor names) but its key {key} is missing; restore the key from backup, or start with `serve --new-audit-key` to make a new one (recorded in the log; earlier values can then no longer be matched by `audit hash`)")]
    KeyMissing {
        /// The log.
        path: PathBuf,
        /// The missing key file.
        key: PathBuf,
    },
    /// The key beside the log is not the one the chain is written with (its fingerprint is
    /// not the anchor's `key`): a key restored from another backup than the log's, one from
    /// before an `audit.new_key`, another log's. Taken, new hand-outs were HMACed with it and
    /// `audit hash` of a value no longer found all of them (twenty-seventh pass, found by its
    /// attacker of multi-admin work and backups).
    #[error("the audit key {key} is not the key the audit chain is written with: its fingerprint is {found}, and {recorded_in} records {chain} (a key restored from another backup than the log's, one from before an `audit.new_key` record, or another log's); taken, `audit hash` of a value would no longer find the hand-outs HMACed with the other key. Nothing was written. Put back the key the chain uses (the newest backup of the key, taken with the log), or, to go on with this key, start once with `serve --new-audit-key`, which records it in the chain (docs/audit.md, \"The HMAC key\")")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// Its fingerprint.
        found: String,
        /// The chain's, as the anchor (or, with no anchor, the log's newest record that
        /// names its key) records it.
        chain: String,
        /// What records it: `the log's anchor <path>`, or, for a log without its anchor
        /// (restored without the state directory), `the log's newest record naming its key
        /// (seq N, op)` ([`KeyOrigin`]).
        recorded_in: KeyOrigin,
    },
    /// `--new-audit-key` was given but the key is there.
    #[error("--new-audit-key: the audit key {key} exists; the option is only for a lost key; to begin a new log, move the log and key aside and start once with `serve --new-audit-key --accept-audit-gap`, which records both in the new log (the anchor in the state directory still names the old records)")]
    KeyPresent {
        /// The key file.
        key: PathBuf,
    },
    /// The last complete line of an existing log cannot be continued.
    #[error("the audit log {path} cannot be continued: line {line}: {why}; run `scopevault audit verify --audit {path}`, then move the log aside to start a new chain")]
    Corrupt {
        /// The log.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with it.
        why: String,
    },
    /// A write or sync failed: the record is not durable, and the request must fail closed.
    #[error("cannot write the audit log {path}: {message}; no credential is handed out until it is writable again ({})", write_advice(.source))]
    Write {
        /// The log.
        path: PathBuf,
        /// The OS error or what changed.
        message: String,
        /// The OS error itself, when one failed (its text is in `message`): what the advice is
        /// chosen by.
        #[source]
        source: Option<std::sync::Arc<std::io::Error>>,
    },
    /// Reading the log (for verify or show) failed.
    #[error("cannot read the audit log {path}: {message}")]
    Read {
        /// The log.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
}

impl AuditError {
    /// [`AuditError::Read`] of `path`, for `map_err`: the one way a read of a log file that
    /// fails is reported.
    pub(crate) fn read_of(path: &Path) -> impl Fn(std::io::Error) -> AuditError + Copy + '_ {
        move |e| AuditError::Read {
            path: path.to_owned(),
            message: e.to_string(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::print_stderr)] // a test says why it skipped
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rec<'a>(op: &str) -> AuditRecord<'a> {
        let op = crate::protocol::Op::from_name(op).expect("a protocol op");
        AuditRecord::new(op, Decision::Allow)
    }

    /// Issue 15.4: a planted `audit.jsonl` (or key) symbolic link is never followed — the
    /// file it names is left as it was — and a group-writable audit directory is refused.
    #[test]
    fn a_planted_log_or_key_symlink_and_a_group_writable_directory_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "precious\n").unwrap();
        let logs = dir.path().join("logs");
        std::fs::create_dir(&logs).unwrap();
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700)).unwrap();
        let path = logs.join("audit.jsonl");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        let e = AuditLog::open(&path, false).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        std::fs::remove_file(&path).unwrap();
        std::os::unix::fs::symlink(&victim, key_path(&path)).unwrap();
        let e = AuditLog::open(&path, false).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n");
        std::fs::remove_file(key_path(&path)).unwrap();
        // Refused, the start made no log beside the link (twenty-first pass).
        assert!(!path.exists(), "a refused start made a log");
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o770)).unwrap();
        let e = AuditLog::open(&path, false).unwrap_err();
        assert!(e.to_string().contains("writable by group or others"), "{e}");
        assert!(!path.exists(), "nothing is created in a refused directory");
        // A directory reached through a link is refused too.
        std::fs::set_permissions(&logs, std::fs::Permissions::from_mode(0o700)).unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&logs, &link).unwrap();
        let e = AuditLog::open(&link.join("audit.jsonl"), false).unwrap_err();
        assert!(e.to_string().contains("symbolic link"), "{e}");
        AuditLog::open(&path, false).unwrap();
    }

    /// The records of a file, as JSON.
    fn records_of(path: &Path) -> Vec<serde_json::Value> {
        std::fs::read_to_string(path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// SHA-256 hex of a file's last line.
    fn head_of(path: &Path) -> String {
        let text = std::fs::read_to_string(path).unwrap();
        HEXLOWER.encode(&Sha256::digest(text.lines().last().unwrap().as_bytes()))
    }

    /// Issue 15.8: a log truncated under the daemon (`copytruncate`) is noticed: the chain
    /// goes on in what is left of the file, after an `audit.gap` record that continues the
    /// hash of the last record written, and the file is never padded with NUL bytes.
    #[test]
    fn a_log_truncated_by_another_party_goes_on_after_a_gap_record_without_nul_padding() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, false).unwrap();
        log.append(rec("fetch")).unwrap();
        log.append(rec("fetch")).unwrap();
        let head2 = head_of(&path);
        let copy = dir.path().join("audit.jsonl.1");
        std::fs::copy(&path, &copy).unwrap();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(
            log.append(rec("fetch")).unwrap(),
            4,
            "seq 3 is the gap record"
        );
        assert!(log.ok());
        let bytes = std::fs::read(&path).unwrap();
        assert!(!bytes.contains(&0), "NUL padding: {bytes:?}");
        let recs = records_of(&path);
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0]["op"], "audit.gap");
        assert_eq!(recs[0]["seq"], 3);
        assert_eq!(recs[0]["prev"], head2.as_str(), "continues the chain");
        assert!(
            recs[0]["reason"]
                .as_str()
                .unwrap()
                .contains("truncated by another party"),
            "{}",
            recs[0]
        );
        let r = verify(&path).unwrap();
        assert_eq!(r.first_bad, None);
        assert_eq!((r.first_seq, r.last_seq), (3, 4));
        assert_eq!(r.continues.as_deref(), Some(head2.as_str()));
        assert_eq!(verify(&copy).unwrap().head, head2);
    }

    /// A cut within a line: the torn line is ended, then the gap record follows; `verify`
    /// names the torn line (the file was damaged by someone else).
    #[test]
    fn a_log_cut_within_a_line_is_reported_by_verify_after_the_gap_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, false).unwrap();
        for _ in 0..3 {
            log.append(rec("fetch")).unwrap();
        }
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 10)
            .unwrap();
        assert_eq!(log.append(rec("fetch")).unwrap(), 5);
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 5, "{text}");
        assert!(text.lines().nth(3).unwrap().contains("\"audit.gap\""));
        let bad = verify(&path)
            .unwrap()
            .first_bad
            .expect("the torn line is found");
        assert_eq!(bad.line, 3, "{}", bad.why);
    }

    /// A log moved away (logrotate without copytruncate) goes on in a new file at its path,
    /// which begins with an `audit.rotate` record continuing the moved file's chain.
    #[test]
    fn a_moved_away_log_goes_on_in_a_new_file_that_continues_the_chain() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let aside = dir.path().join("audit.jsonl.1");
        let log = AuditLog::open(&path, true).unwrap();
        log.append(rec("fetch")).unwrap();
        std::fs::rename(&path, &aside).unwrap();
        assert_eq!(log.append(rec("fetch")).unwrap(), 3);
        assert!(log.ok());
        let recs = records_of(&path);
        assert_eq!(recs[0]["op"], "audit.rotate");
        assert_eq!(recs[0]["prev"], head_of(&aside).as_str());
        let (old, new) = (verify(&aside).unwrap(), verify(&path).unwrap());
        assert_eq!((old.first_bad, new.first_bad.clone()), (None, None));
        assert_eq!(new.first_seq, old.last_seq + 1);
        assert_eq!(new.continues, Some(old.head));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// A file with content put at the log's path is not ours to continue: fail closed.
    #[test]
    fn a_log_replaced_by_a_file_with_content_fails_closed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, true).unwrap();
        log.append(rec("fetch")).unwrap();
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        std::fs::write(&path, b"{\"seq\":1}\n").unwrap();
        let e = log.append(rec("fetch")).unwrap_err();
        assert!(e.to_string().contains("not empty"), "{e}");
        assert!(!log.ok());
        assert_eq!(std::fs::read(&path).unwrap(), b"{\"seq\":1}\n");
        // Emptied (as logrotate's `create` leaves a file): the chain goes on there.
        std::fs::write(&path, b"").unwrap();
        assert_eq!(log.append(rec("fetch")).unwrap(), 3);
        assert!(log.ok());
    }

    /// `rotate` moves the log aside while many threads append: no record is lost or
    /// duplicated, and every file verifies, each continuing the one before.
    #[test]
    fn rotation_under_concurrent_appends_loses_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::open(&path, false).unwrap());
        let writers: Vec<_> = (0..4)
            .map(|_| {
                let log = log.clone();
                std::thread::spawn(move || {
                    for _ in 0..200 {
                        log.append(rec("fetch")).unwrap();
                    }
                })
            })
            .collect();
        let mut files = Vec::new();
        // The first rotation waits for a first record: a rotation of an empty log begins the
        // new file at seq 1, a start rather than a continuation, which this test is not about.
        let t0 = Instant::now();
        while std::fs::metadata(&path).unwrap().len() == 0 {
            assert!(t0.elapsed() < Duration::from_secs(30), "no record written");
            std::thread::sleep(Duration::from_millis(1));
        }
        for _ in 0..5 {
            std::thread::sleep(Duration::from_millis(2));
            let (p, seq) = log.rotate().unwrap();
            assert!(p.starts_with(dir.path()), "{}", p.display());
            assert!(seq > 0);
            files.push(p);
        }
        for w in writers {
            w.join().unwrap();
        }
        files.push(path.clone());
        let mut seqs = Vec::new();
        let mut prev_head: Option<String> = None;
        for (i, p) in files.iter().enumerate() {
            let r = verify(p).unwrap();
            assert_eq!(r.first_bad, None, "{}", p.display());
            let recs = records_of(p);
            if i > 0 {
                assert_eq!(r.continues, prev_head, "{} continues", p.display());
                assert_eq!(recs[0]["op"], "audit.rotate", "{}", recs[0]);
            }
            prev_head = Some(r.head.clone());
            seqs.extend(recs.iter().map(|r| r["seq"].as_u64().unwrap()));
        }
        let total = seqs.len() as u64;
        assert_eq!(
            total,
            800 + 5,
            "every append and one rotate record per rotation"
        );
        assert_eq!(seqs, (1..=total).collect::<Vec<_>>());
    }

    /// `reopen` (SIGUSR1) does nothing while the log is at its path, and begins a new file
    /// once it was moved away.
    #[test]
    fn reopen_begins_a_new_file_only_after_a_move() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, true).unwrap();
        log.append(rec("fetch")).unwrap();
        assert_eq!(log.reopen("SIGUSR1").unwrap(), None);
        assert_eq!(records_of(&path).len(), 1, "nothing written");
        std::fs::rename(&path, dir.path().join("audit.jsonl.1")).unwrap();
        assert_eq!(log.reopen("SIGUSR1").unwrap(), Some(2));
        let recs = records_of(&path);
        assert_eq!(recs.len(), 1);
        assert_eq!(recs[0]["op"], "audit.rotate");
        assert!(recs[0]["reason"].as_str().unwrap().contains("SIGUSR1"));
        assert_eq!(log.append(rec("fetch")).unwrap(), 3);
    }

    /// Issue 15.9: a log with records whose key was deleted is refused, not continued under
    /// a silently made new key; `--new-audit-key` makes one and records that in the chain.
    #[test]
    fn a_deleted_key_stops_the_open_unless_a_new_key_is_asked_for_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let old_hmac = {
            let log = AuditLog::open(&path, false).unwrap();
            log.append(rec("fetch")).unwrap();
            log.hmac_value("pw")
        };
        std::fs::remove_file(key_path(&path)).unwrap();
        let e = AuditLog::open(&path, false).unwrap_err();
        assert!(matches!(e, AuditError::KeyMissing { .. }), "{e}");
        assert!(e.to_string().contains("--new-audit-key"), "{e}");
        assert!(
            !key_path(&path).exists(),
            "no key was made by the refused open"
        );
        let new = OpenFlags {
            new_key: true,
            ..OpenFlags::default()
        };
        let log = AuditLog::open_with(&path, false, &new).unwrap();
        assert_ne!(log.hmac_value("pw"), old_hmac);
        drop(log);
        let text = std::fs::read_to_string(&path).unwrap();
        let last = text.lines().last().unwrap();
        assert!(last.contains("\"op\":\"audit.new_key\""), "{text}");
        assert!(last.contains("\"seq\":2"), "{text}");
        assert!(verify(&path).unwrap().first_bad.is_none());
        let e = AuditLog::open_with(&path, false, &new).unwrap_err();
        assert!(matches!(e, AuditError::KeyPresent { .. }), "{e}");
        // An empty log with no key is a fresh start, as before.
        let fresh = dir.path().join("fresh.jsonl");
        AuditLog::open(&fresh, false).unwrap();
        assert!(key_path(&fresh).exists());
    }

    /// A key file must be exactly the key: one byte more or less is refused, not truncated
    /// or padded (a mutation-testing survivor).
    #[test]
    fn a_key_file_of_the_wrong_length_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("audit.jsonl");
        for len in [KEY_LEN - 1, KEY_LEN + 1, 0] {
            std::fs::write(key_path(&log), vec![7u8; len]).unwrap();
            assert!(
                matches!(AuditKey::load(&log), Err(AuditError::BadKey { .. })),
                "{len} bytes"
            );
        }
        std::fs::write(key_path(&log), [7u8; KEY_LEN]).unwrap();
        let k = AuditKey::load(&log).unwrap();
        assert_eq!(*k.0, [7u8; KEY_LEN]);
    }

    /// Reopening resumes the chain from the last line however the file's tail falls on the
    /// 64 KiB blocks it is read back in: short last line, a last line longer than one block,
    /// and a torn tail longer than one block. (Mutation testing: only logs under one block
    /// were reopened before.)
    #[test]
    fn the_chain_resumes_after_a_log_larger_than_one_read_block() {
        let big = |n: usize| "r".repeat(n);
        for (last, torn) in [
            (10, 0),
            (70 * 1024, 0),
            (200 * 1024, 0),
            (10, 100 * 1024),
            // The first block back holds the torn tail and the last newline, not the one before.
            (10 * 1024, 60 * 1024),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.jsonl");
            {
                let log = AuditLog::open(&path, false).unwrap();
                let reason = big(1500);
                for _ in 0..200 {
                    log.append(AuditRecord {
                        reason: Some(&reason),
                        ..rec("fetch")
                    })
                    .unwrap();
                }
                let reason = big(last);
                log.append(AuditRecord {
                    reason: Some(&reason),
                    ..rec("fetch")
                })
                .unwrap();
            }
            if torn > 0 {
                let mut f = OpenOptions::new().append(true).open(&path).unwrap();
                f.write_all(format!("{{\"seq\":202,\"reason\":\"{}", big(torn)).as_bytes())
                    .unwrap();
            }
            assert!(std::fs::metadata(&path).unwrap().len() > 3 * 64 * 1024);
            let log = AuditLog::open(&path, false).unwrap();
            let expect = if torn > 0 { 203 } else { 202 };
            assert_eq!(
                log.append(rec("health")).unwrap(),
                expect,
                "last {last}, torn {torn}"
            );
            let r = verify(&path).unwrap();
            assert_eq!(r.first_bad, None, "last {last}, torn {torn}");
            assert_eq!((r.lines, r.last_seq), (expect, expect));
        }
    }

    /// A last line longer than the tail reader's window (two maximal lines), behind other
    /// records, or a tail with no line break at all in that window, is refused rather than
    /// guessed at.
    #[test]
    fn an_overlong_last_line_is_refused_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        {
            let log = AuditLog::open(&path, false).unwrap();
            let reason = "r".repeat(1500);
            for _ in 0..100 {
                log.append(AuditRecord {
                    reason: Some(&reason),
                    ..rec("fetch")
                })
                .unwrap();
            }
        }
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&vec![b'x'; 3 * MAX_LINE]).unwrap();
        f.write_all(b"\n").unwrap();
        drop(f);
        let Err(e) = AuditLog::open(&path, false) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("longer than"), "{e}");
        let path = dir.path().join("nobreak.jsonl");
        std::fs::write(&path, vec![b'x'; 3 * MAX_LINE]).unwrap();
        let Err(e) = AuditLog::open(&path, false) else {
            panic!("accepted")
        };
        assert!(e.to_string().contains("no line break"), "{e}");
    }

    /// `verify` names what is wrong at the limits: a line over MAX_LINE is "longer than", a
    /// final line of exactly MAX_LINE bytes without its newline is "incomplete", and a `prev`
    /// that is not 64 hex digits is malformed rather than "edited". (Mutation-testing
    /// survivors.)
    #[test]
    fn verify_names_overlong_truncated_and_malformed_lines() {
        let dir = tempfile::tempdir().unwrap();
        let why = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            verify(&p).unwrap().first_bad.expect("a bad line").why
        };
        let mut long = vec![b'x'; MAX_LINE + 10];
        long.push(b'\n');
        assert!(why("long", &long).contains("longer than"));
        assert!(why("cut", &vec![b'x'; MAX_LINE]).contains("incomplete final line"));
        let zeros = "0".repeat(64);
        for prev in ["z".repeat(64), "ab".repeat(31), format!("{zeros}0")] {
            let line = format!("{{\"seq\":1,\"prev\":\"{prev}\"}}\n");
            let w = why("prev", line.as_bytes());
            assert!(w.contains("64-hex-digit"), "{prev}: {w}");
        }
    }

    /// `audit show` read a line whole whatever its length (sixteenth pass: a 1 MB gzip'd
    /// segment of one 1 GiB line took 4.2 GB): [`BoundedLines`] holds at most [`MAX_LINE`]
    /// bytes of a line, reports a longer one once when it passes the limit, drops the rest of
    /// it (across reads, and across an end of the file met in the middle of it, as `--follow`
    /// meets it) and goes on with the next line; a line of exactly `MAX_LINE` bytes is a line.
    #[test]
    fn bounded_lines_skip_an_overlong_line_holding_no_more_than_the_limit() {
        use std::io::Write as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let mut f = File::create(&path).unwrap();
        f.write_all(b"a\n").unwrap();
        f.write_all(&vec![b'x'; MAX_LINE]).unwrap();
        f.write_all(b"\n").unwrap();
        f.write_all(&vec![b'y'; MAX_LINE + 1]).unwrap();
        f.write_all(b"\nb\n").unwrap();
        f.write_all(&vec![b'z'; 3 * MAX_LINE]).unwrap();
        f.flush().unwrap();
        // Small reads: the limit is crossed across many of them.
        let mut lines =
            BoundedLines::new(BufReader::with_capacity(4096, File::open(&path).unwrap()));
        assert_eq!(lines.next_line().unwrap(), NextLine::Line(b"a"));
        match lines.next_line().unwrap() {
            NextLine::Line(l) => assert!(l.len() == MAX_LINE && l.iter().all(|&b| b == b'x')),
            other => panic!("{other:?}"),
        }
        assert_eq!(lines.next_line().unwrap(), NextLine::Overlong);
        assert_eq!(lines.next_line().unwrap(), NextLine::Line(b"b"));
        // The file ends within an over-long line: reported once, nothing of it held.
        assert_eq!(lines.next_line().unwrap(), NextLine::Overlong);
        assert_eq!(lines.next_line().unwrap(), NextLine::End);
        assert!(lines.partial().is_empty());
        assert!(
            lines.line.capacity() <= 2 * MAX_LINE,
            "{}",
            lines.line.capacity()
        );
        // The rest of it, written later, is dropped up to its newline; the next line is read.
        f.write_all(b"zzz\nc\nd").unwrap();
        f.flush().unwrap();
        assert_eq!(lines.next_line().unwrap(), NextLine::Line(b"c"));
        assert_eq!(lines.next_line().unwrap(), NextLine::End);
        assert_eq!(lines.partial(), b"d");
        f.write_all(b"e\n").unwrap();
        assert_eq!(lines.next_line().unwrap(), NextLine::Line(b"de"));
        assert_eq!(lines.next_line().unwrap(), NextLine::End);
        assert!(lines.partial().is_empty());
        assert_eq!(lines.consumed(), std::fs::metadata(&path).unwrap().len());
    }

    /// `verify_each` reads in blocks of [`BLOCK`] bytes on a second thread: lines cut by a block
    /// boundary, a long line in the middle, an edit, a cut tail and an overlong line far from
    /// the start are found exactly as by a line-by-line reader (this test's own), and every
    /// record reaches the callback once, in order.
    #[test]
    fn verify_across_read_blocks_matches_a_line_by_line_reading() {
        // A chain of `n` records, 300–1,500 bytes each, one of them 600 KiB: several blocks.
        let mut lines: Vec<String> = Vec::new();
        let mut prev = GENESIS.to_owned();
        for seq in 1..=4_000u64 {
            let pad = if seq == 1_500 {
                "p".repeat(600 << 10)
            } else {
                "q".repeat(300 + (seq as usize * 7919) % 1_200)
            };
            let line = format!(
                "{{\"seq\":{seq},\"time\":\"2026-11-29T00:00:00Z\",\"op\":\"fetch\",\"decision\":\"allow\",\"pad\":\"{pad}\",\"prev\":\"{prev}\"}}"
            );
            prev = HEXLOWER.encode(&Sha256::digest(line.as_bytes()));
            lines.push(line);
        }
        let total: usize = lines.iter().map(|l| l.len() + 1).sum();
        assert!(
            total > 4 * BLOCK,
            "the log spans several blocks ({total} bytes)"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("audit.jsonl");
        let write = |ls: &[String], tail: &str| {
            let mut b = ls.join("\n").into_bytes();
            b.push(b'\n');
            b.extend_from_slice(tail.as_bytes());
            std::fs::write(&p, b).unwrap();
        };

        write(&lines, "");
        let mut seen = Vec::new();
        let r = verify_each(&p, &mut |no, rec| {
            seen.push((no, rec.seq));
            Ok(())
        })
        .unwrap();
        assert_eq!(r.first_bad, None);
        assert_eq!((r.lines, r.last_seq), (4_000, 4_000));
        assert_eq!(r.head, prev);
        assert_eq!(seen, (1..=4_000u64).map(|i| (i, i)).collect::<Vec<_>>());

        // An edit of the line that ends nearest the second block boundary.
        let mut off = 0;
        let at = lines
            .iter()
            .position(|l| {
                off += l.len() + 1;
                off >= 2 * BLOCK
            })
            .unwrap();
        let mut edited = lines.clone();
        edited[at] = edited[at].replacen("\"fetch\"", "\"fetcH\"", 1);
        write(&edited, "");
        let bad = verify(&p).unwrap().first_bad.unwrap();
        assert_eq!(bad.line, at as u64 + 1, "{}", bad.why);
        assert!(bad.why.contains("edited"), "{}", bad.why);

        // A cut final line, and a line over the limit in the middle.
        write(&lines, "{\"seq\":4001,");
        let r = verify(&p).unwrap();
        assert_eq!(r.lines, 4_000);
        let bad = r.first_bad.unwrap();
        assert_eq!(bad.line, 4_001);
        assert!(bad.why.contains("incomplete final line"), "{}", bad.why);
        let mut long = lines.clone();
        long[3_000] = "x".repeat(MAX_LINE + 1);
        write(&long, "");
        let bad = verify(&p).unwrap().first_bad.unwrap();
        assert_eq!(bad.line, 3_001);
        assert!(bad.why.contains("longer than"), "{}", bad.why);

        // A callback's refusal stops the walk at that line.
        write(&lines, "");
        let r = verify_each(&p, &mut |no, _| {
            if no == 2_500 {
                Err("refused".into())
            } else {
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(
            r.first_bad.map(|b| (b.line, b.why)),
            Some((2_500, "refused".into()))
        );
    }

    /// The anchor's rule for a log that goes on past its anchored record (eighteenth pass):
    /// the record after it must name it and follow it in the file, or be the line the anchor
    /// names as `next`; the chain's first record follows the anchor of an empty log.
    #[test]
    fn the_record_after_the_anchored_one_must_follow_it_or_be_the_one_named() {
        let head = "a".repeat(64);
        let anchor = |seq, next: Option<&str>| Anchor {
            log: "/log".into(),
            seq,
            head: head.clone(),
            generation: 0,
            vault: None,
            vaults: None,
            begins: None,
            next: next.map(str::to_owned),
            gap: None,
            key: None,
        };
        let at = |before: Option<(Option<u64>, &str)>| {
            Found::At(Located {
                prev: head.clone(),
                hash: "b".repeat(64),
                before: before.map(|(seq, hash)| LineBefore {
                    seq,
                    hash: hash.to_owned(),
                }),
            })
        };
        let gap = |a: &Anchor, found: Found| anchor_gap(a, 9, "c", || Ok(found)).unwrap();
        assert_eq!(gap(&anchor(5, None), at(Some((Some(5), &head)))), None);
        assert_eq!(
            gap(&anchor(5, None), at(None)),
            Some(AnchorGap::BeginsAfter { anchored: 5 })
        );
        assert_eq!(gap(&anchor(5, Some(&"b".repeat(64))), at(None)), None);
        assert_eq!(
            gap(&anchor(5, Some(&"d".repeat(64))), at(None)),
            Some(AnchorGap::BeginsAfter { anchored: 5 })
        );
        for before in [(Some(4), head.as_str()), (Some(5), "e"), (None, "e")] {
            assert!(
                matches!(
                    gap(&anchor(5, None), at(Some(before))),
                    Some(AnchorGap::AnchoredMissing { anchored: 5, .. })
                ),
                "{before:?}"
            );
        }
        assert_eq!(gap(&anchor(0, None), at(None)), None);
    }

    #[test]
    fn audit_log_is_shareable_between_threads() {
        fn send_sync<T: Send + Sync>() {}
        send_sync::<AuditLog>();
        send_sync::<AuditKey>();
    }

    #[test]
    fn chain_continues_across_reopen_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/audit.jsonl");
        {
            let log = AuditLog::open(&path, true).unwrap();
            assert_eq!(log.append(rec("fetch")).unwrap(), 1);
            assert_eq!(log.append(rec("tasks")).unwrap(), 2);
        }
        let log = AuditLog::open(&path, false).unwrap();
        assert_eq!(log.append(rec("health")).unwrap(), 3);
        let r = verify(&path).unwrap();
        assert_eq!(r.first_bad, None);
        assert_eq!((r.lines, r.last_seq), (3, 3));
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&key_path(&path)), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        assert_eq!(std::fs::metadata(key_path(&path)).unwrap().len(), 32);
    }

    #[test]
    fn line_format_has_fields_in_order_and_only_hmacs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, true).unwrap();
        let pw = SecretString::from("s3cret-value".to_string());
        log.append(AuditRecord {
            peer: Some(PeerInfo {
                uid: 1,
                gid: 2,
                pid: Some(3),
                exe: Some("/bin/check".into()),
                exe_deleted: false,
                exe_truncated: false,
            }),
            task: Some("t"),
            credential: Some("c"),
            reason: Some("over_scoped"),
            warnings: vec!["w1".into()],
            values: vec![("password", &pw)],
            ..AuditRecord::new(crate::protocol::Op::Fetch, Decision::Deny)
        })
        .unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cret"));
        let line = text.lines().next().unwrap();
        let expect_prefix = "{\"seq\":1,\"time\":\"";
        assert!(line.starts_with(expect_prefix), "{line}");
        let tail = format!(
            ",\"peer\":{{\"uid\":1,\"gid\":2,\"pid\":3,\"exe\":\"/bin/check\"}},\"op\":\"fetch\",\"task\":\"t\",\"credential\":\"c\",\"decision\":\"deny\",\"reason\":\"over_scoped\",\"warnings\":[\"w1\"],\"values\":{{\"password\":\"{}\"}},\"prev\":\"{GENESIS}\"}}",
            log.hmac_value("s3cret-value")
        );
        assert!(line.ends_with(&tail), "{line}");
        // `time` is RFC 3339 in UTC, ending in an uppercase `Z` (the readers refuse any other
        // offset, twenty-second pass), and the record is one the verifier takes.
        let time = &line[expect_prefix.len()..line.len() - tail.len() - 1];
        assert!(time.ends_with('Z'), "{time}");
        time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).unwrap();
        verified_shape(line.as_bytes()).unwrap();
        assert!(log.hmac_value("x").starts_with("hmac-sha256:"));
        assert_eq!(log.hmac_value("x").len(), HMAC_PREFIX.len() + 64);
        let key = AuditKey::load(&path).unwrap();
        assert_eq!(
            key.hmac_value("s3cret-value"),
            log.hmac_value("s3cret-value")
        );
        assert_eq!(format!("{key:?}"), "AuditKey([REDACTED])");
    }

    #[test]
    fn concurrent_appends_get_unique_sequences_and_a_valid_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = Arc::new(AuditLog::open(&path, true).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let log = Arc::clone(&log);
                std::thread::spawn(move || {
                    (0..25)
                        .map(|_| log.append(rec("fetch")).unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut seqs: Vec<u64> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<_>>());
        let stats = log.stats();
        assert_eq!(stats.records, 200);
        assert!((1..=200).contains(&stats.batches), "{stats:?}");
        // A lone client after a busy period: the leader's wait for followers is bounded.
        assert_eq!(log.append(rec("fetch")).unwrap(), 201);
        let r = verify(&path).unwrap();
        assert_eq!((r.first_bad, r.lines), (None, 201));
    }

    #[test]
    fn peer_info_from_the_kernel_names_our_executable() {
        let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
        let p = crate::agent::peer::PeerIdentity::of(&a)
            .unwrap()
            .audit_info();
        assert_eq!(p.uid, crate::sys::current_uid());
        assert_eq!(p.pid, Some(std::process::id() as i32));
        let me = std::env::current_exe().unwrap();
        assert_eq!(p.exe.as_deref(), Some(&*me.to_string_lossy()));
    }

    #[test]
    fn second_open_is_refused_while_the_first_is_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let _log = AuditLog::open(&path, false).unwrap();
        let e = AuditLog::open(&path, false).unwrap_err();
        assert!(matches!(e, AuditError::InUse { .. }), "{e}");
    }

    #[test]
    fn torn_final_line_is_cut_and_recorded_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        {
            let log = AuditLog::open(&path, true).unwrap();
            log.append(rec("fetch")).unwrap();
            log.append(rec("fetch")).unwrap();
        }
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":3,\"time\":\"20").unwrap();
        drop(f);
        let r = verify(&path).unwrap();
        assert_eq!(r.first_bad.as_ref().unwrap().line, 3);
        assert!(r.first_bad.unwrap().why.contains("incomplete"));
        let log = AuditLog::open(&path, true).unwrap();
        assert_eq!(log.append(rec("fetch")).unwrap(), 4);
        let text = std::fs::read_to_string(&path).unwrap();
        let third = text.lines().nth(2).unwrap();
        assert!(
            third.contains("audit.repair") && third.contains("(19 bytes)"),
            "{third}"
        );
        assert_eq!(verify(&path).unwrap().first_bad, None);
    }

    #[test]
    fn unwritable_log_fails_then_recovers_with_a_consistent_chain() {
        if crate::sys::current_uid() == 0 {
            eprintln!("skipped: root ignores file modes");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let log = AuditLog::open(&path, true).unwrap();
        log.append(rec("fetch")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        let e = log.append(rec("fetch")).unwrap_err();
        assert!(matches!(e, AuditError::Write { .. }), "{e}");
        assert!(!log.ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(log.append(rec("fetch")).unwrap(), 2);
        assert!(log.ok());
        assert_eq!(verify(&path).unwrap().first_bad, None);
    }

    /// This test used to link the log to /dev/full to make every write fail; since issue
    /// 15.4 the log is opened with `O_NOFOLLOW`, so such a link is refused before any write
    /// (failing writes are covered by `unwritable_log_fails_then_recovers_with_a_consistent_chain`
    /// and, with a full disk, by tests/it/storage_faults.rs).
    #[test]
    fn a_log_linked_to_a_device_is_refused_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::os::unix::fs::symlink("/dev/full", &path).unwrap();
        let e = AuditLog::open(&path, true).unwrap_err();
        assert!(matches!(e, AuditError::Open { .. }), "{e}");
        assert!(e.to_string().contains("symbolic link"), "{e}");
    }

    #[test]
    fn open_refuses_a_garbage_last_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, b"hello\nworld\n").unwrap();
        let e = AuditLog::open(&path, true).unwrap_err();
        assert!(matches!(e, AuditError::Corrupt { line: 2, .. }), "{e}");
    }

    #[test]
    fn bad_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(key_path(&path), b"short").unwrap();
        let e = AuditLog::open(&path, true).unwrap_err();
        assert!(matches!(e, AuditError::BadKey { .. }), "{e}");
    }

    #[test]
    fn default_path_is_under_state_home() {
        let xdg_set = std::env::var_os("XDG_STATE_HOME")
            .is_some_and(|d| std::path::Path::new(&d).is_absolute());
        if crate::sys::current_uid() == 0 && !xdg_set {
            assert_eq!(
                default_audit_path(),
                Path::new("/var/log/scopevault/audit.jsonl")
            );
        } else {
            assert!(default_audit_path().ends_with("scopevault/audit.jsonl"));
        }
    }

    /// The audit journal's and writer's advice under the file-size limit (`EFBIG`) was chosen
    /// by matching the error's text, as `JournalOpen` and `Write` kept only a message
    /// (twenty-seventh pass, found by the twenty-sixth pass's review): the one
    /// `sys::is_file_size_limit` check did not see them, and a message that only quoted the
    /// text (a path named so) got the limit's advice. They carry the `io::Error` now, and the
    /// advice follows it.
    #[test]
    fn regression_the_file_size_limit_advice_follows_the_os_error_not_its_text() {
        use std::sync::Arc;
        let efbig = || Some(Arc::new(std::io::Error::from_raw_os_error(libc::EFBIG)));
        let text = std::io::Error::from_raw_os_error(libc::EFBIG).to_string();
        let write = |message: String, source| AuditError::Write {
            path: "/var/log/scopevault/audit.jsonl".into(),
            message,
            source,
        };
        let journal = |message: String, source| AuditError::JournalOpen {
            path: "/var/log/scopevault/audit.jsonl.journal".into(),
            message,
            source,
        };
        let limited = [
            write(format!("cannot inspect the log ({text})"), efbig()),
            journal(format!("cannot make the journal ({text})"), efbig()),
        ];
        for e in &limited {
            assert!(crate::sys::is_file_size_limit(e), "{e}");
            assert!(e.to_string().contains("file-size limit"), "{e}");
        }
        assert!(limited[0].to_string().contains("rotate the log"));
        assert!(!limited[1]
            .to_string()
            .contains("remove what is in its place"));
        // Only the text, in a path: not the limit.
        let quoted = [
            write(
                format!("the log was moved to /var/log/{text}.1, but the new file's first record could not be written (internal error)"),
                None,
            ),
            journal(
                format!("/srv/{text}: it is not a regular file of its own (2 link(s))"),
                None,
            ),
        ];
        for e in &quoted {
            assert!(!crate::sys::is_file_size_limit(e), "{e}");
            assert!(!e.to_string().contains("file-size limit"), "{e}");
        }
        assert!(quoted[0].to_string().contains("check disk space"));
        assert!(quoted[1]
            .to_string()
            .contains("remove what is in its place"));
    }
}
