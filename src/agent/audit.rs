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
//! **Group commit.** [`AuditLog::append`] returns only once its record is written (and
//! `fdatasync`ed when sync is on). Concurrent callers queue their records; whichever caller
//! finds no write in progress becomes the *leader*, takes the whole queue, writes it with one
//! `write` and one `fdatasync`, and wakes the others. While it syncs, new records queue up for
//! the next batch, so the number of syncs per second stays bounded by the disk while throughput
//! grows with concurrency.
//!
//! ```
//! use scopevault::agent::audit::{AuditLog, AuditRecord, Decision, verify};
//! use scopevault::secret::SecretString;
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("audit.jsonl");
//! let log = AuditLog::open(&path, true).unwrap();
//! let pw = SecretString::from("hunter2".to_string());
//! let rec = AuditRecord {
//!     op: "fetch", task: Some("shop-login"), credential: Some("shop-buyer"),
//!     values: vec![("password", &pw)], ..AuditRecord::new("fetch", Decision::Allow)
//! };
//! assert_eq!(log.append(rec).unwrap(), 1);
//! let text = std::fs::read_to_string(&path).unwrap();
//! assert!(!text.contains("hunter2"));
//! assert!(text.contains(&log.hmac_value("hunter2")));
//! assert!(verify(&path).unwrap().first_bad.is_none());
//! ```

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

/// Lines longer than this are refused by [`verify`] and [`AuditLog::open`] rather than read
/// into memory whole (our own records are far smaller).
const MAX_LINE: usize = 1024 * 1024;

/// What went wrong with the audit log. Never contains a secret value.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuditError {
    /// The log, its directory or its key could not be created, opened or read.
    #[error("cannot open the audit log {path}: {message}; check that the directory exists and is writable by the daemon's user, or choose another path with --audit")]
    Open {
        /// The file concerned.
        path: PathBuf,
        /// The OS error.
        message: String,
    },
    /// The log is shorter than (or differs from) its anchor.
    #[error("the audit log {path} does not reach its anchor: {why}; restore the log from backup, or start with `serve --accept-audit-gap` to record the gap in the chain and go on")]
    Gap {
        /// The log.
        path: PathBuf,
        /// What is missing.
        why: String,
    },
    /// A vault older than one the chain has seen was loaded.
    #[error("refusing vault generation {loaded}: the audit chain has recorded generation {seen} (a rollback to an older copy?); restore the newest vault, or pass --allow-rollback if this is intended")]
    Rollback {
        /// The generation loaded.
        loaded: u64,
        /// The highest generation recorded.
        seen: u64,
    },
    /// Another process (a second daemon) holds the log's lock.
    #[error("the audit log {path} is in use by another process (another `scopevault serve`?); stop it or use another --audit path")]
    InUse {
        /// The log.
        path: PathBuf,
    },
    /// The HMAC key file exists but is not a key we wrote.
    #[error("the audit key {path} is not {KEY_LEN} bytes; restore it from backup (without it, `audit hash` cannot match old records) or move the log and key aside to start a new log")]
    BadKey {
        /// The key file.
        path: PathBuf,
    },
    /// The log holds records but its HMAC key is gone: a new key would silently break
    /// `audit hash` for every earlier hand-out.
    #[error("the audit log {path} holds records but its key {key} is missing; restore the key from backup, or start with `serve --new-audit-key` to make a new one (recorded in the log; earlier values can then no longer be matched by `audit hash`)")]
    KeyMissing {
        /// The log.
        path: PathBuf,
        /// The missing key file.
        key: PathBuf,
    },
    /// `--new-audit-key` was given but the key is there.
    #[error("--new-audit-key: the audit key {key} exists; the option is only for a lost key (move the log and key aside to start afresh)")]
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
    #[error("cannot write the audit log {path}: {message}; no credential is handed out until it is writable again (check disk space, permissions and that the file was not moved)")]
    Write {
        /// The log.
        path: PathBuf,
        /// The OS error or what changed.
        message: String,
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

/// The outcome recorded for a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Granted (values were handed out).
    Allow,
    /// Refused by policy or authorisation.
    Deny,
    /// Failed for another reason (locked, internal error, ...).
    Error,
}

impl Decision {
    /// As written in the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
            Decision::Error => "error",
        }
    }
}

/// Who asked, from the kernel (`SO_PEERCRED`) and `/proc/PID/exe` read through a pidfd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerInfo {
    /// Effective uid of the peer.
    pub uid: u32,
    /// Effective gid of the peer.
    pub gid: u32,
    /// Process id, if known.
    pub pid: Option<i32>,
    /// The peer's executable at accept time, cut at 256 bytes; `None` if unknown or not
    /// confirmed to be the connected process's.
    pub exe: Option<String>,
}

impl PeerInfo {
    /// The peer on `stream` as the daemon records it at accept time
    /// ([`super::peer::PeerIdentity::of`]).
    pub fn of(stream: &std::os::unix::net::UnixStream) -> std::io::Result<PeerInfo> {
        Ok(super::peer::PeerIdentity::of(stream)?.audit_info())
    }
}

/// One decision to record. `values` are the secret fields handed out; only their HMACs are
/// written.
#[derive(Debug)]
pub struct AuditRecord<'a> {
    /// Who asked.
    pub peer: Option<PeerInfo>,
    /// The protocol op (`fetch`, `ticket`, `unlock`, ...).
    pub op: &'a str,
    /// The task asked for.
    pub task: Option<&'a str>,
    /// The credential concerned.
    pub credential: Option<&'a str>,
    /// Allowed, denied or failed.
    pub decision: Decision,
    /// Why (an error code and short text); never a secret.
    pub reason: Option<&'a str>,
    /// Runtime scope warnings attached to the response.
    pub warnings: Vec<String>,
    /// (field name, value) of every secret value handed out; logged as HMACs only.
    pub values: Vec<(&'a str, &'a SecretString)>,
    /// For an aggregate record (`op` `denials`): how many refusals it stands for.
    pub count: Option<u64>,
    /// For a `vault.load` record: the generation of the vault loaded.
    pub generation: Option<u64>,
    /// For an aggregate record (`op` `denials`): the refusals it stands for by `"<op>
    /// <decision>"` (they add up to `count`).
    pub by_op: Vec<(String, u64)>,
    /// For a `scrub_report` record: what the scrub of the task's artefacts did (labels the
    /// task does not hand out already replaced by their HMACs).
    pub scrub: Option<&'a super::protocol::ScrubCounts>,
}

impl<'a> AuditRecord<'a> {
    /// A record with only an op and a decision; fill in the rest with struct update syntax.
    pub fn new(op: &'a str, decision: Decision) -> Self {
        AuditRecord {
            peer: None,
            op,
            task: None,
            credential: None,
            decision,
            reason: None,
            warnings: Vec::new(),
            values: Vec::new(),
            count: None,
            generation: None,
            by_op: Vec::new(),
            scrub: None,
        }
    }
}

/// The HMAC key of an audit log (`<audit path>.key`): 32 random bytes, zeroed on drop.
pub struct AuditKey(Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey([REDACTED])")
    }
}

impl AuditKey {
    /// Read the key of the log at `audit_path` (the file `<audit_path>.key`). This needs read
    /// access to the key file, which is the daemon's own (mode 0600).
    pub fn load(audit_path: &Path) -> Result<AuditKey, AuditError> {
        let path = key_path(audit_path);
        let f = OpenOptions::new()
            .read(true)
            .custom_flags(OFlags::NOFOLLOW.bits() as i32)
            .open(&path)
            .map_err(|e| AuditError::Open {
                path: path.clone(),
                message: e.to_string(),
            })?;
        Self::read_from(f, path)
    }

    fn read_from(mut f: File, path: PathBuf) -> Result<AuditKey, AuditError> {
        let mut buf = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
        Read::by_ref(&mut f)
            .take(KEY_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| AuditError::Open {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let key: [u8; KEY_LEN] = buf
            .as_slice()
            .try_into()
            .map_err(|_| AuditError::BadKey { path })?;
        Ok(AuditKey(Zeroizing::new(key)))
    }

    /// Read the key through the log's directory `dirfd` (never through a symbolic link),
    /// creating it (mode 0600, random) if it does not exist yet.
    fn load_or_create_at(
        dirfd: &rustix::fd::OwnedFd,
        audit_path: &Path,
    ) -> Result<AuditKey, AuditError> {
        let path = key_path(audit_path);
        let name = path.file_name().unwrap_or_default().to_owned();
        let open_err = |e: std::io::Error| AuditError::Open {
            path: path.clone(),
            message: e.to_string(),
        };
        let created = rustix::fs::openat(
            dirfd,
            name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o600),
        );
        match created {
            Ok(fd) => {
                let mut f = File::from(fd);
                let mut key = Zeroizing::new([0u8; KEY_LEN]);
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, key.as_mut());
                f.write_all(key.as_ref()).map_err(open_err)?;
                f.sync_all().map_err(open_err)?;
                Ok(AuditKey(key))
            }
            Err(rustix::io::Errno::EXIST) => {
                let fd = rustix::fs::openat(
                    dirfd,
                    name.as_os_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    rustix::fs::Mode::empty(),
                )
                .map_err(|e| nofollow_err(&path, e))?;
                Self::read_from(File::from(fd), path)
            }
            Err(e) => Err(nofollow_err(&path, e)),
        }
    }

    /// The HMAC of a value exactly as it appears in the log: `hmac-sha256:<64 hex digits>`.
    pub fn hmac_value(&self, value: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref()).expect("HMAC takes any key");
        mac.update(value.as_bytes());
        format!(
            "{HMAC_PREFIX}{}",
            HEXLOWER.encode(&mac.finalize().into_bytes())
        )
    }
}

/// Open the log's directory `dir` for `openat`: reached without a symbolic link (every
/// component `lstat`ed) and not writable by group or others, since whoever may write there may
/// plant a link or swap the log. Returns the directory and the log's file name.
fn open_dir_of(
    path: &Path,
    dir: &Path,
) -> Result<(rustix::fd::OwnedFd, std::ffi::OsString), AuditError> {
    let refuse = |message: String| AuditError::Open {
        path: path.to_owned(),
        message,
    };
    let name = path
        .file_name()
        .ok_or_else(|| refuse("the path names no file".into()))?
        .to_owned();
    crate::agent::server::lstat_components(dir).map_err(refuse)?;
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| refuse(format!("cannot open its directory ({e})")))?;
    let st = rustix::fs::fstat(&fd)
        .map_err(|e| refuse(format!("cannot inspect its directory ({e})")))?;
    if st.st_mode & 0o022 != 0 {
        return Err(refuse(format!(
            "its directory {} is writable by group or others (mode {:o}); make it 0700 or 0750",
            dir.display(),
            st.st_mode & 0o7777
        )));
    }
    Ok((fd, name))
}

/// The error for an `openat(O_NOFOLLOW)` that failed; `ELOOP` means a symbolic link is there.
fn nofollow_err(path: &Path, e: rustix::io::Errno) -> AuditError {
    let message = if e == rustix::io::Errno::LOOP {
        "it is a symbolic link; refusing to follow it (remove the link: the daemon writes only files it opened itself)".to_owned()
    } else {
        std::io::Error::from(e).to_string()
    };
    AuditError::Open {
        path: path.to_owned(),
        message,
    }
}

/// The key file of an audit log: `<audit path>.key`.
pub fn key_path(audit_path: &Path) -> PathBuf {
    let mut s = audit_path.as_os_str().to_owned();
    s.push(".key");
    PathBuf::from(s)
}

/// The default audit log ([`crate::paths::audit_log`]).
pub fn default_audit_path() -> PathBuf {
    crate::paths::audit_log()
}

/// Where the chain stands after the last durable line.
#[derive(Debug, Clone)]
struct Chain {
    /// Sequence number of the last durable line (0 for an empty log).
    seq: u64,
    /// SHA-256 hex of the last durable line ([`GENESIS`] for an empty log).
    prev: String,
}

struct Queued {
    ticket: u64,
    /// The record's JSON members between `seq` and `prev`, without braces.
    body: String,
}

struct State {
    chain: Chain,
    queue: Vec<Queued>,
    next_ticket: u64,
    leader: bool,
    done: HashMap<u64, Result<u64, AuditError>>,
    /// A leader is waiting for more records before it writes (see `GATHER_MAX`).
    gathering: bool,
    /// Size of the last batch written: about how many clients are active.
    last_batch: usize,
    /// How long the last `fdatasync` took.
    last_sync: Duration,
}

/// The file the daemon appends to: the one at the log's path when it was opened (or when the
/// log was last rotated).
struct Segment {
    file: File,
    /// (device, inode) of `file`, to notice the log being moved away or replaced under us.
    ident: (u64, u64),
    /// File length after the last durable line.
    len: u64,
    /// A failed batch may have left bytes after `len`: cut them before the next write.
    dirty: bool,
}

/// An open audit log. `Send + Sync`: share it (in an `Arc`) between all connection threads.
pub struct AuditLog {
    path: PathBuf,
    /// Only the leader of a batch (or a rotation holding the leadership) touches it.
    seg: Mutex<Segment>,
    key: AuditKey,
    sync: bool,
    state: Mutex<State>,
    cond: Condvar,
    /// Wakes a gathering leader when a record is queued.
    gather: Condvar,
    ok: AtomicBool,
    records: AtomicU64,
    batches: AtomicU64,
    /// Keep an anchor ([`anchor_path`]).
    anchor: bool,
    /// `seq` of the last anchor written.
    anchored: Mutex<u64>,
    /// Highest vault generation loaded (from the anchor or the log's `vault.load` records).
    generation: AtomicU64,
}

/// Choices made when opening a log ([`AuditLog::open_with`]).
#[derive(Debug, Clone, Default)]
pub struct OpenFlags {
    /// The log holds records but its key was lost: make a new key and record that in the
    /// chain (`serve --new-audit-key`). Without it, such a log is refused.
    pub new_key: bool,
    /// Keep the chain's head (and the highest vault generation loaded) in an anchor file in
    /// the state directory ([`anchor_path`]), and refuse a log shorter than its anchor.
    pub anchor: bool,
    /// The log is shorter than its anchor: go on anyway, recording the gap in the chain
    /// (`serve --accept-audit-gap`).
    pub accept_gap: bool,
}

/// The chain head kept outside the log (docs/audit.md, "The anchor").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct Anchor {
    /// The log it belongs to.
    pub log: String,
    /// `seq` of the last record when the anchor was written.
    pub seq: u64,
    /// SHA-256 hex of that record's line.
    pub head: String,
    /// The highest vault generation a `vault.load` record holds.
    pub generation: u64,
}

/// The anchor file of the log at `audit_path`: `audit-anchor-<16 hex digits of the SHA-256 of
/// the log's absolute path>.json` in the state directory (`SCOPEVAULT_STATE_DIR`, beside the
/// vault's generation record), outside the log's directory so that the log and its anchor
/// are not restored or cut together.
pub fn anchor_path(audit_path: &Path) -> PathBuf {
    let abs = std::path::absolute(audit_path).unwrap_or_else(|_| audit_path.to_owned());
    let digest = Sha256::digest(abs.as_os_str().as_encoded_bytes());
    crate::vault::state_dir().join(format!(
        "audit-anchor-{}.json",
        &HEXLOWER.encode(&digest)[..16]
    ))
}

/// The anchor of the log at `audit_path`, if one was written.
pub fn read_anchor(audit_path: &Path) -> Result<Option<Anchor>, AuditError> {
    let p = anchor_path(audit_path);
    let text = match std::fs::read_to_string(&p) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(AuditError::Read {
                path: p,
                message: e.to_string(),
            })
        }
    };
    serde_json::from_str(&text)
        .map(Some)
        .map_err(|e| AuditError::Read {
            path: p,
            message: format!("not an audit anchor ({e})"),
        })
}

fn write_anchor(audit_path: &Path, a: &Anchor) -> std::io::Result<()> {
    let p = anchor_path(audit_path);
    if let Some(dir) = p.parent() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let tmp = p.with_extension("json.tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(OFlags::NOFOLLOW.bits() as i32)
        .open(&tmp)?;
    f.write_all(
        serde_json::to_string(a)
            .map_err(std::io::Error::other)?
            .as_bytes(),
    )?;
    f.sync_all()?;
    std::fs::rename(&tmp, &p)
}

fn scan_generation_if(cond: bool, path: &Path) -> u64 {
    if cond {
        scan_generation(path)
    } else {
        0
    }
}

/// The highest `generation` of the `vault.load` records in the log (0 if none): the chain's
/// own memory of the vault's generation when no anchor is there.
fn scan_generation(path: &Path) -> u64 {
    let Ok(f) = File::open(path) else { return 0 };
    let mut max = 0;
    for line in BufReader::new(f).split(b'\n').map_while(Result::ok) {
        let text = String::from_utf8_lossy(&line);
        if !text.contains("\"op\":\"vault.load\"") {
            continue;
        }
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
            if v["decision"] == "allow" {
                max = max.max(v["generation"].as_u64().unwrap_or(0));
            }
        }
    }
    max
}

/// Counters of an open log since it was opened (for `health` and the load generator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuditStats {
    /// Records durably appended.
    pub records: u64,
    /// Batches written (one `write` and, with sync on, one `fdatasync` each): `records /
    /// batches` is the average group-commit batch size.
    pub batches: u64,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("path", &self.path)
            .field("sync", &self.sync)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Open (creating mode 0600, in a directory created 0700) the log at `path`, read or create
    /// its HMAC key (`<path>.key`), and continue the chain from the last line.
    ///
    /// The log is locked (`flock`) against a second daemon. An incomplete final line (a crash
    /// in the middle of a write, so never acknowledged and no secret left for it) is cut off,
    /// and the cut is itself recorded as an `audit.repair` record.
    pub fn open(path: &Path, sync: bool) -> Result<AuditLog, AuditError> {
        Self::open_with(path, sync, &OpenFlags::default())
    }

    /// As [`AuditLog::open`], with the choices `serve` exposes as options.
    pub fn open_with(path: &Path, sync: bool, flags: &OpenFlags) -> Result<AuditLog, AuditError> {
        let open_err = |e: std::io::Error| AuditError::Open {
            path: path.to_owned(),
            message: e.to_string(),
        };
        let dir = dir_of(path);
        if !dir.exists() {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(open_err)?;
        }
        let (dirfd, name) = open_dir_of(path, &dir)?;
        let file = File::from(
            rustix::fs::openat(
                &dirfd,
                name.as_os_str(),
                OFlags::RDWR | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                rustix::fs::Mode::from_raw_mode(0o600),
            )
            .map_err(|e| nofollow_err(path, e))?,
        );
        crate::sys::try_lock_exclusive(&file).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                AuditError::InUse {
                    path: path.to_owned(),
                }
            } else {
                open_err(e)
            }
        })?;
        let meta = file.metadata().map_err(open_err)?;
        // A log that cannot be continued is reported as such before its key is looked at.
        let (chain, len, torn) = read_tail(&file, meta.len(), path)?;
        let kp = key_path(path);
        let key_there = std::fs::symlink_metadata(&kp).is_ok();
        if flags.new_key && key_there {
            return Err(AuditError::KeyPresent { key: kp });
        }
        if !key_there && meta.len() > 0 && !flags.new_key {
            return Err(AuditError::KeyMissing {
                path: path.to_owned(),
                key: kp,
            });
        }
        let key = AuditKey::load_or_create_at(&dirfd, path)?;
        let log = AuditLog {
            path: path.to_owned(),
            seg: Mutex::new(Segment {
                file,
                ident: (meta.dev(), meta.ino()),
                len,
                dirty: false,
            }),
            key,
            sync,
            state: Mutex::new(State {
                chain,
                queue: Vec::new(),
                next_ticket: 0,
                leader: false,
                done: HashMap::new(),
                gathering: false,
                last_batch: 0,
                last_sync: Duration::ZERO,
            }),
            cond: Condvar::new(),
            gather: Condvar::new(),
            ok: AtomicBool::new(true),
            records: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            anchor: flags.anchor,
            anchored: Mutex::new(0),
            generation: AtomicU64::new(0),
        };
        if flags.anchor {
            let have = log.lock().chain.clone();
            let anchor = read_anchor(path)?;
            let generation = match &anchor {
                Some(a) => a
                    .generation
                    .max(scan_generation_if(a.generation == 0, path)),
                None => scan_generation(path),
            };
            log.generation.store(generation, Ordering::SeqCst);
            if let Some(a) = anchor {
                let gap = if a.seq > have.seq {
                    Some(format!(
                        "the log ends at seq {} but its anchor ({}) says seq {} was written: records {}..={} are missing (cut from the end)",
                        have.seq,
                        anchor_path(path).display(),
                        a.seq,
                        have.seq + 1,
                        a.seq
                    ))
                } else if a.seq == have.seq && a.head != have.prev {
                    Some(format!(
                        "the last record, seq {}, is not the one anchored in {} (it was rewritten)",
                        a.seq,
                        anchor_path(path).display()
                    ))
                } else {
                    None
                };
                if let Some(why) = gap {
                    if !flags.accept_gap {
                        return Err(AuditError::Gap {
                            path: path.to_owned(),
                            why,
                        });
                    }
                    if have.seq == 0 {
                        // A new, empty file (the log was moved away while the daemon was
                        // stopped): it continues the anchored chain, so that the moved file
                        // and this one verify as one history.
                        log.lock().chain = Chain {
                            seq: a.seq,
                            prev: a.head.clone(),
                        };
                    }
                    let reason = format!("gap accepted (serve --accept-audit-gap): {why}");
                    log.append(AuditRecord {
                        reason: Some(&reason),
                        ..AuditRecord::new("audit.gap", Decision::Error)
                    })?;
                }
            }
        }
        if flags.new_key && meta.len() > 0 {
            let reason = "the HMAC key was missing and a new one was made (serve --new-audit-key): `audit hash` cannot match values recorded before this line";
            log.append(AuditRecord {
                reason: Some(reason),
                ..AuditRecord::new("audit.new_key", Decision::Error)
            })?;
        }
        if let Some(bytes) = torn {
            let reason = format!(
                "removed an incomplete final line ({bytes} bytes) left by an interrupted write"
            );
            log.append(AuditRecord {
                reason: Some(&reason),
                ..AuditRecord::new("audit.repair", Decision::Error)
            })?;
        }
        Ok(log)
    }

    /// Append one record. Returns its sequence number once it is written — and, with sync on,
    /// `fdatasync`ed — together with every record queued at the same time (group commit).
    ///
    /// On `Err` the record is not in the log and the caller must not hand out the secret. The
    /// log stays consistent: a partial write is cut off at once (or, if that fails, by the next
    /// append), and the chain continues.
    pub fn append(&self, rec: AuditRecord<'_>) -> Result<u64, AuditError> {
        // Everything but the chain fields is rendered here, outside the lock, in parallel.
        let body = self.render_body(&rec);
        let mut st = self.lock();
        let ticket = st.next_ticket;
        st.next_ticket += 1;
        st.queue.push(Queued { ticket, body });
        if st.gathering {
            self.gather.notify_one();
        }
        loop {
            if let Some(result) = st.done.remove(&ticket) {
                return result;
            }
            if !st.leader {
                // Become the leader: write everything queued so far (our record included).
                st.leader = true;
                st = self.gather_followers(st);
                let batch = std::mem::take(&mut st.queue);
                let chain = st.chain.clone();
                drop(st);
                // A panic here must not leave `leader` set (every later append would wait
                // forever): it becomes a failed batch like any write error.
                let outcome = self.write_guarded(|| self.write_batch(chain, &batch, None));
                st = self.lock();
                match outcome {
                    Ok(w) => {
                        st.chain = w.chain;
                        st.last_batch = batch.len();
                        st.last_sync = w.sync_time;
                        for (i, q) in batch.iter().enumerate() {
                            st.done.insert(q.ticket, Ok(w.first_seq + i as u64));
                        }
                        self.ok.store(true, Ordering::SeqCst);
                        self.records
                            .fetch_add(batch.len() as u64 + w.own, Ordering::Relaxed);
                        self.batches.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(e) => {
                        for q in &batch {
                            st.done.insert(q.ticket, Err(e.clone()));
                        }
                        self.ok.store(false, Ordering::SeqCst);
                    }
                }
                st.leader = false;
                self.cond.notify_all();
                continue;
            }
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Rotate the log (`scopevault audit rotate`): move the file to `<name>.<UTC time>` in the
    /// same directory and continue the chain in a new file at the log's path, which begins with
    /// an `audit.rotate` record naming where the earlier records are. Nothing is lost: no
    /// batch is in flight while the file is moved. Returns the moved file's path and the seq of
    /// the `audit.rotate` record.
    pub fn rotate(&self) -> Result<(PathBuf, u64), AuditError> {
        let (moved, seq) = self.as_sole_writer(|chain| {
            let (dirfd, name) = open_dir_of(&self.path, &dir_of(&self.path))?;
            let stamp = time::OffsetDateTime::now_utc()
                .format(time::macros::format_description!(
                    "[year][month][day]T[hour][minute][second]Z"
                ))
                .unwrap_or_default();
            let mut n = 0u32;
            let archive = loop {
                let mut candidate = name.clone();
                candidate.push(format!(".{stamp}"));
                if n > 0 {
                    candidate.push(format!("-{n}"));
                }
                match rustix::fs::renameat_with(
                    &dirfd,
                    name.as_os_str(),
                    &dirfd,
                    candidate.as_os_str(),
                    rustix::fs::RenameFlags::NOREPLACE,
                ) {
                    Ok(()) => break candidate,
                    Err(rustix::io::Errno::EXIST) if n < 1000 => n += 1,
                    Err(e) => {
                        return Err(AuditError::Write {
                            path: self.path.clone(),
                            message: format!(
                                "cannot move the log aside ({})",
                                std::io::Error::from(e)
                            ),
                        })
                    }
                }
            };
            let moved = dir_of(&self.path).join(archive);
            let reason = format!(
                "rotated by `scopevault audit rotate`: records up to seq {} are in {}",
                chain.seq,
                moved.display()
            );
            Ok((Some(reason), moved))
        })?;
        Ok((moved, seq.unwrap_or(0)))
    }

    /// Continue in a new file if the log was moved away from its path (logrotate without
    /// `copytruncate`, then SIGUSR1): the new file begins with an `audit.rotate` record. The
    /// file at the path must be new (absent, or empty as logrotate's `create` leaves it).
    /// Returns the seq of that record, or `None` when the file at the path is still ours.
    pub fn reopen(&self, why: &str) -> Result<Option<u64>, AuditError> {
        let reason = format!("reopened ({why})");
        let ((), written) = self.as_sole_writer(|chain| {
            Ok((
                Some(format!(
                    "{reason}: records up to seq {} are in the file moved away from this path",
                    chain.seq
                )),
                (),
            ))
        })?;
        Ok(written)
    }

    /// Run `act` while no batch is being written and none can start, then write nothing but
    /// the records of the daemon's own that the file's state calls for (a new segment after a
    /// move, with the reason `act` returns). Returns `act`'s value and the seq of the last
    /// record written, if any.
    fn as_sole_writer<R>(
        &self,
        act: impl FnOnce(&Chain) -> Result<(Option<String>, R), AuditError>,
    ) -> Result<(R, Option<u64>), AuditError> {
        let mut st = self.lock();
        while st.leader {
            st = self.cond.wait(st).unwrap_or_else(|e| e.into_inner());
        }
        st.leader = true;
        let chain = st.chain.clone();
        drop(st);
        let outcome = self.write_guarded(|| {
            let (reason, r) = act(&chain)?;
            let w = self.write_batch(chain, &[], reason.as_deref())?;
            Ok((w, r))
        });
        let mut st = self.lock();
        let result = match outcome {
            Ok((w, r)) => {
                let last = (w.own > 0).then_some(w.chain.seq);
                st.chain = w.chain;
                self.ok.store(true, Ordering::SeqCst);
                self.records.fetch_add(w.own, Ordering::Relaxed);
                Ok((r, last))
            }
            Err(e) => {
                self.ok.store(false, Ordering::SeqCst);
                Err(e)
            }
        };
        st.leader = false;
        self.cond.notify_all();
        result
    }

    /// Run a write as the leader: a panic in it must not leave `leader` set (every later
    /// append would wait forever), so it becomes a failed write like any I/O error.
    fn write_guarded<T>(&self, f: impl FnOnce() -> Result<T, AuditError>) -> Result<T, AuditError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
            Err(AuditError::Write {
                path: self.path.clone(),
                message: "internal error while writing (a bug: please report it)".into(),
            })
        })
    }

    fn segment(&self) -> MutexGuard<'_, Segment> {
        self.seg.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The HMAC of a value as it appears in this log's `values`.
    pub fn hmac_value(&self, value: &str) -> String {
        self.key.hmac_value(value)
    }

    /// The log's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True if the last append succeeded (reported by `health`).
    pub fn ok(&self) -> bool {
        self.ok.load(Ordering::SeqCst)
    }

    /// Records and batches written since the log was opened.
    pub fn stats(&self) -> AuditStats {
        AuditStats {
            records: self.records.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
        }
    }

    /// Record a vault load (`vault.load`, with its generation) in the chain. A generation
    /// lower than the highest the chain has recorded is refused — and the refusal recorded —
    /// unless `allow_rollback`.
    pub fn note_vault_load(
        &self,
        vault_id: &str,
        generation: u64,
        how: &str,
        allow_rollback: bool,
    ) -> Result<(), AuditError> {
        let seen = self.generation.load(Ordering::SeqCst);
        if generation < seen {
            let reason = format!(
                "vault {vault_id} generation {generation} ({how}) is older than generation {seen} recorded before{}",
                if allow_rollback { "; accepted: --allow-rollback" } else { "; refused" }
            );
            self.append(AuditRecord {
                reason: Some(&reason),
                generation: Some(generation),
                ..AuditRecord::new(
                    "vault.load",
                    if allow_rollback {
                        Decision::Allow
                    } else {
                        Decision::Deny
                    },
                )
            })?;
            if !allow_rollback {
                return Err(AuditError::Rollback {
                    loaded: generation,
                    seen,
                });
            }
            return Ok(());
        }
        let reason = format!("vault {vault_id} generation {generation} loaded ({how})");
        self.append(AuditRecord {
            reason: Some(&reason),
            generation: Some(generation),
            ..AuditRecord::new("vault.load", Decision::Allow)
        })?;
        self.generation.fetch_max(generation, Ordering::SeqCst);
        Ok(())
    }

    /// Write the anchor if records were added since the last one (the daemon calls this about
    /// once a second, and at stop). A no-op for a log opened without `anchor`.
    pub fn write_anchor_now(&self) -> std::io::Result<()> {
        if !self.anchor {
            return Ok(());
        }
        let chain = self.lock().chain.clone();
        let mut last = self.anchored.lock().unwrap_or_else(|e| e.into_inner());
        if *last == chain.seq && chain.seq != 0 {
            return Ok(());
        }
        write_anchor(
            &self.path,
            &Anchor {
                log: std::path::absolute(&self.path)
                    .unwrap_or_else(|_| self.path.clone())
                    .display()
                    .to_string(),
                seq: chain.seq,
                head: chain.prev,
                generation: self.generation.load(Ordering::SeqCst),
            },
        )?;
        *last = chain.seq;
        Ok(())
    }

    /// Bytes free for an unprivileged writer on the log's file system (`fstatvfs`), or
    /// `None` when the kernel does not say.
    pub fn free_bytes(&self) -> Option<u64> {
        let st = rustix::fs::fstatvfs(&self.segment().file).ok()?;
        Some(st.f_bavail.saturating_mul(st.f_frsize))
    }

    /// Whether appends are `fdatasync`ed.
    pub fn sync(&self) -> bool {
        self.sync
    }

    /// As the new leader, wait (bounded) until the clients released by the previous batch have
    /// queued their next records, so that one sync serves them all.
    fn gather_followers<'s>(&'s self, mut st: MutexGuard<'s, State>) -> MutexGuard<'s, State> {
        let want = st.last_batch;
        if !self.sync || want <= 1 || st.queue.len() >= want {
            return st;
        }
        let deadline = Instant::now() + (st.last_sync / 2).min(GATHER_MAX);
        st.gathering = true;
        while st.queue.len() < want {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            st = match self.gather.wait_timeout(st, deadline - now) {
                Ok((g, _)) => g,
                Err(e) => e.into_inner().0,
            };
        }
        st.gathering = false;
        st
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the chain half-updated (it is replaced
        // whole), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn render_body(&self, rec: &AuditRecord<'_>) -> String {
        #[derive(Serialize)]
        struct Body<'r> {
            time: String,
            peer: &'r Option<PeerInfo>,
            op: &'r str,
            task: Option<&'r str>,
            credential: Option<&'r str>,
            decision: Decision,
            reason: Option<&'r str>,
            warnings: &'r [String],
            values: std::collections::BTreeMap<&'r str, String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            count: Option<u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            generation: Option<u64>,
            #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
            by_op: std::collections::BTreeMap<&'r str, u64>,
            #[serde(skip_serializing_if = "Option::is_none")]
            scrub: Option<&'r super::protocol::ScrubCounts>,
        }
        let time = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let body = Body {
            time,
            peer: &rec.peer,
            op: rec.op,
            task: rec.task,
            credential: rec.credential,
            decision: rec.decision,
            reason: rec.reason,
            warnings: &rec.warnings,
            values: rec
                .values
                .iter()
                .map(|(name, v)| (*name, self.key.hmac_value(v.expose())))
                .collect(),
            count: rec.count,
            generation: rec.generation,
            by_op: rec.by_op.iter().map(|(k, n)| (k.as_str(), *n)).collect(),
            scrub: rec.scrub,
        };
        let json = serde_json::to_string(&body).expect("audit records serialise");
        // Strip the braces: the leader wraps the members with `seq` and `prev`.
        json[1..json.len() - 1].to_owned()
    }

    /// Write one batch; on success return the new chain, the first sequence number of the
    /// batch and how long the sync took.
    ///
    /// Before the batch, the daemon's own records that the file's state calls for:
    /// - `audit.gap` when the file we hold is shorter than what we wrote (truncated by another
    ///   party, `copytruncate`): the chain goes on in what is left of the file, never padded;
    /// - `audit.rotate` when the file at the log's path is no longer ours (moved away by a
    ///   rotation): the chain goes on in a new file there (`start` says why, if known).
    ///
    /// With an empty batch, only those are written (a rotation or reopen).
    fn write_batch(
        &self,
        mut chain: Chain,
        batch: &[Queued],
        start: Option<&str>,
    ) -> Result<Written, AuditError> {
        let err = |message: String| AuditError::Write {
            path: self.path.clone(),
            message,
        };
        let mut seg = self.segment();
        let mut own: Vec<String> = Vec::new();
        let mut newline_first = false;
        let have = seg
            .file
            .metadata()
            .map_err(|e| err(format!("cannot inspect the log ({e})")))?
            .len();
        if have < seg.len {
            // Never pad it back with `set_len` (that wrote NUL bytes) nor leave a hole: go on
            // at its new end, after a record of what is gone.
            let reason = format!(
                "the log was truncated by another party (from {} to {have} bytes; copytruncate?): records up to seq {} are gone from it; the chain continues from seq {}'s hash",
                seg.len, chain.seq, chain.seq
            );
            own.push(self.render_body(&AuditRecord {
                reason: Some(&reason),
                ..AuditRecord::new("audit.gap", Decision::Error)
            }));
            if have > 0 {
                let mut last = [0u8; 1];
                seg.file
                    .read_exact_at(&mut last, have - 1)
                    .map_err(|e| err(format!("cannot read the log ({e})")))?;
                // Cut within a line: end that line so that the gap record stands on its own.
                newline_first = last[0] != b'\n';
            }
            seg.len = have;
            seg.dirty = false;
        } else if seg.dirty {
            let len = seg.len;
            seg.file
                .set_len(len)
                .map_err(|e| err(format!("cannot cut a partial write ({e})")))?;
            seg.dirty = false;
        }
        // The file we hold must still be the one admins read at `path`: a log moved away
        // (rotated) continues in a new file there; one replaced by a file with content, or a
        // link, fails closed instead of recording into a file nobody will look at.
        let moved = match std::fs::symlink_metadata(&self.path) {
            Ok(meta) => (meta.dev(), meta.ino()) != seg.ident,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => true,
            Err(e) => return Err(err(format!("cannot inspect the log's path ({e})"))),
        };
        if moved {
            let (file, ident) = self.open_next_segment()?;
            let reason = start.map(str::to_owned).unwrap_or_else(|| {
                format!(
                    "the log was moved away from this path (rotated): records up to seq {} are in the moved file; this file continues the chain",
                    chain.seq
                )
            });
            *seg = Segment {
                file,
                ident,
                len: 0,
                dirty: false,
            };
            newline_first = false;
            own.push(self.render_body(&AuditRecord {
                reason: Some(&reason),
                ..AuditRecord::new("audit.rotate", Decision::Allow)
            }));
        }
        if own.is_empty() && batch.is_empty() {
            return Ok(Written {
                chain,
                first_seq: 0,
                sync_time: Duration::ZERO,
                own: 0,
            });
        }
        crate::sys::check_writable(&self.path)
            .map_err(|e| err(format!("the log is not writable ({e})")))?;
        let bodies = own.iter().map(String::as_str);
        let bodies = bodies.chain(batch.iter().map(|q| q.body.as_str()));
        let first_seq = chain.seq + own.len() as u64 + 1;
        let mut buf = Vec::with_capacity(
            own.iter().map(|b| b.len() + 110).sum::<usize>()
                + batch.iter().map(|q| q.body.len() + 110).sum::<usize>()
                + 1,
        );
        if newline_first {
            buf.push(b'\n');
        }
        for body in bodies {
            chain.seq += 1;
            let start = buf.len();
            write!(
                buf,
                "{{\"seq\":{},{},\"prev\":\"{}\"}}",
                chain.seq, body, chain.prev
            )
            .expect("writing to a Vec cannot fail");
            chain.prev = HEXLOWER.encode(&Sha256::digest(&buf[start..]));
            buf.push(b'\n');
        }
        // On failure the batch is cut off again at once: a short write (a full disk) would
        // otherwise leave a torn record that fails `audit verify` for as long as the daemon
        // waits for space, and a record whose sync failed was never acknowledged. If the cut
        // fails too, `dirty` retries it before the next write.
        let len = seg.len;
        let written = (&seg.file).write_all(&buf);
        let synced = Instant::now();
        let result = written.and_then(|()| {
            if self.sync {
                seg.file.sync_data()
            } else {
                Ok(())
            }
        });
        let sync_time = synced.elapsed();
        if let Err(e) = result {
            if seg.file.set_len(len).is_err() {
                seg.dirty = true;
            }
            return Err(err(e.to_string()));
        }
        seg.len += buf.len() as u64;
        Ok(Written {
            chain,
            first_seq,
            sync_time,
            own: own.len() as u64,
        })
    }

    /// Open the new file at the log's path after a move: created 0600 if absent, through the
    /// directory's fd without following a link, locked, and empty (a file with records in it
    /// is not ours to continue).
    fn open_next_segment(&self) -> Result<(File, (u64, u64)), AuditError> {
        let err = |message: String| AuditError::Write {
            path: self.path.clone(),
            message,
        };
        let (dirfd, name) = open_dir_of(&self.path, &dir_of(&self.path))?;
        let file = File::from(
            rustix::fs::openat(
                &dirfd,
                name.as_os_str(),
                OFlags::RDWR | OFlags::APPEND | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                rustix::fs::Mode::from_raw_mode(0o600),
            )
            .map_err(|e| nofollow_err(&self.path, e))?,
        );
        crate::sys::try_lock_exclusive(&file).map_err(|e| {
            err(format!(
                "the new file at the log's path is locked by another process ({e})"
            ))
        })?;
        let meta = file
            .metadata()
            .map_err(|e| err(format!("cannot inspect the new log file ({e})")))?;
        if meta.len() != 0 {
            return Err(err(format!(
                "the file now at the log's path is not the one the daemon wrote and is not empty ({} bytes); move it away (a rotation must leave the path absent or empty)",
                meta.len()
            )));
        }
        Ok((file, (meta.dev(), meta.ino())))
    }
}

/// What [`AuditLog::write_batch`] wrote.
struct Written {
    chain: Chain,
    /// Seq of the batch's first record.
    first_seq: u64,
    sync_time: Duration,
    /// Records of the daemon's own written before the batch (`audit.gap`, `audit.rotate`).
    own: u64,
}

/// The directory of a log path (`.` for a bare file name).
fn dir_of(path: &Path) -> PathBuf {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(d) => d.to_owned(),
        None => PathBuf::from("."),
    }
}

/// Read the end of an existing log to continue its chain. Returns the chain and, if the file
/// ended in an incomplete line, how many bytes were cut.
fn read_tail(file: &File, len: u64, path: &Path) -> Result<(Chain, u64, Option<u64>), AuditError> {
    let read_err = |e: std::io::Error| AuditError::Open {
        path: path.to_owned(),
        message: e.to_string(),
    };
    if len == 0 {
        return Ok((
            Chain {
                seq: 0,
                prev: GENESIS.to_owned(),
            },
            0,
            None,
        ));
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
            return Err(AuditError::Corrupt {
                path: path.to_owned(),
                line: 0,
                why: format!("no line break in the last {} bytes", tail.len()),
            });
        }
        // Not one complete line: the whole file is a torn first write.
        file.set_len(0).map_err(read_err)?;
        return Ok((
            Chain {
                seq: 0,
                prev: GENESIS.to_owned(),
            },
            0,
            Some(len),
        ));
    };
    let torn = (tail.len() - 1 - nl) as u64;
    let complete_len = len - torn;
    if torn > 0 {
        file.set_len(complete_len).map_err(read_err)?;
        file.sync_data().map_err(read_err)?;
    }
    let line_start = tail[..nl]
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    if line_start == 0 && start != 0 {
        return Err(AuditError::Corrupt {
            path: path.to_owned(),
            line: 0,
            why: format!("the last line is longer than {MAX_LINE} bytes"),
        });
    }
    let last = &tail[line_start..nl];
    let line_no = count_lines(file, start + line_start as u64).map_err(read_err)? + 1;
    let parsed = parse_chain_fields(last).map_err(|why| AuditError::Corrupt {
        path: path.to_owned(),
        line: line_no,
        why,
    })?;
    Ok((
        Chain {
            seq: parsed.0,
            prev: HEXLOWER.encode(&Sha256::digest(last)),
        },
        complete_len,
        (torn > 0).then_some(torn),
    ))
}

/// Number of newlines in the first `upto` bytes of `file`.
fn count_lines(file: &File, upto: u64) -> std::io::Result<u64> {
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

/// The records with which the daemon begins a later segment of a log (a new file after a
/// rotation, or what is left of a truncated one): their `prev` continues the file before.
const SEGMENT_STARTS: [&str; 2] = ["audit.rotate", "audit.gap"];

/// One record as [`verify_each`] reads it back: the chain members, and the members a reader of
/// the evidence needs (`lint --audit`, docs/audit.md). Every other member is skipped, its JSON
/// still checked. Read without building a JSON tree: one parse per line serves the chain and
/// the reader.
#[derive(serde::Deserialize)]
pub struct RecordView<'a> {
    /// The record's sequence number.
    pub seq: u64,
    /// The hex SHA-256 of the line before.
    #[serde(borrow)]
    pub prev: std::borrow::Cow<'a, str>,
    /// The operation (`fetch`, `reload`, …).
    #[serde(borrow, default)]
    pub op: Option<std::borrow::Cow<'a, str>>,
    /// RFC 3339 time.
    #[serde(borrow, default)]
    pub time: Option<std::borrow::Cow<'a, str>>,
    /// The peer's uid and gid.
    #[serde(default)]
    pub peer: Option<PeerView>,
    /// The task named by the request.
    #[serde(borrow, default)]
    pub task: Option<std::borrow::Cow<'a, str>>,
    /// The credential named by the request.
    #[serde(borrow, default)]
    pub credential: Option<std::borrow::Cow<'a, str>>,
    /// `allow`, `deny`, …
    #[serde(borrow, default)]
    pub decision: Option<std::borrow::Cow<'a, str>>,
}

/// The peer of a [`RecordView`].
#[derive(serde::Deserialize, Clone, Copy)]
pub struct PeerView {
    /// Peer uid.
    pub uid: u32,
    /// Peer gid.
    pub gid: u32,
}

/// Parse one line. The typed parse answers for every record the daemon writes; a line it
/// refuses (not an object, a member of another type or twice) goes through the JSON tree,
/// which gives the chain the same answer as before the typed parse, and names what is wrong.
fn record_view(line: &[u8]) -> Result<RecordView<'_>, String> {
    if line.first() == Some(&b'{') {
        if let Ok(c) = serde_json::from_slice::<RecordView<'_>>(line) {
            if c.prev.len() == 64 && c.prev.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Ok(c);
            }
        }
    }
    let (seq, prev) = parse_chain_fields(line)?;
    let v: serde_json::Value = serde_json::from_slice(line).map_err(|e| e.to_string())?;
    let text = |k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .map(|x| x.to_owned().into())
    };
    let num = |p: &serde_json::Value, k: &str| {
        p.get(k)
            .and_then(|x| x.as_u64())
            .and_then(|x| u32::try_from(x).ok())
    };
    Ok(RecordView {
        seq,
        prev: prev.into(),
        op: text("op"),
        time: text("time"),
        peer: v.get("peer").and_then(|p| {
            Some(PeerView {
                uid: num(p, "uid")?,
                gid: num(p, "gid")?,
            })
        }),
        task: text("task"),
        credential: text("credential"),
        decision: text("decision"),
    })
}

/// Parse `seq` and `prev` of one line through a JSON tree.
fn parse_chain_fields(line: &[u8]) -> Result<(u64, String), String> {
    let v: serde_json::Value =
        serde_json::from_slice(line).map_err(|e| format!("not a JSON record ({e})"))?;
    let obj = v
        .as_object()
        .ok_or_else(|| "not a JSON object".to_string())?;
    let seq = obj
        .get("seq")
        .and_then(|s| s.as_u64())
        .ok_or_else(|| "no numeric \"seq\"".to_string())?;
    let prev = obj
        .get("prev")
        .and_then(|s| s.as_str())
        .filter(|p| p.len() == 64 && p.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| "no 64-hex-digit \"prev\"".to_string())?;
    Ok((seq, prev.to_owned()))
}

/// Lower-case hex of a SHA-256 digest, without allocating.
fn hex_digest(line: &[u8], out: &mut [u8; 64]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in Sha256::digest(line).iter().enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 15)];
    }
}

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
    let read_err = |e: std::io::Error| AuditError::Read {
        path: path.to_owned(),
        message: e.to_string(),
    };
    let file = File::open(path).map_err(read_err)?;
    let mut report = VerifyReport {
        lines: 0,
        last_seq: 0,
        head: String::new(),
        first_seq: 0,
        continues: None,
        first_bad: None,
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

/// Bytes read per block by [`read_blocks`] (plus the unfinished line carried over).
const BLOCK: usize = 1 << 20;

/// A run of whole lines of the log, each with the hex SHA-256 of its bytes.
struct Block {
    data: Vec<u8>,
    /// Per line: where it ends in `data` (its newline's index); a line starts after the
    /// newline before it, the first at 0.
    ends: Vec<usize>,
    hashes: Vec<[u8; 64]>,
    /// What follows the block's last line.
    then: BlockEnd,
}

enum BlockEnd {
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
fn read_blocks(mut file: File, tx: &std::sync::mpsc::SyncSender<Block>) {
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
fn walk_chain(
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
                bad(
                    report,
                    no,
                    format!("longer than {MAX_LINE} bytes: not a record"),
                );
                return Ok(());
            }
            BlockEnd::Incomplete => {
                bad(report, no, "incomplete final line (no newline): the log was truncated or a write was interrupted".into());
                return Ok(());
            }
        }
    }
    Err(std::io::Error::other("the log reader stopped"))
}

/// One complete line of [`walk_chain`], whose hex SHA-256 is `hash`: false once a line is bad
/// (then in `report.first_bad`).
fn check_line(
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
    let fields = match record_view(content) {
        Ok(x) => x,
        Err(why) => {
            return bad(report, no, why);
        }
    };
    let seq = fields.seq;
    let op = fields.op.as_deref().unwrap_or("");
    if no == 1 && seq > 1 && SEGMENT_STARTS.contains(&op) {
        // A later segment: the daemon began this file after a rotation or a truncation,
        // continuing the chain of the file before it.
        report.first_seq = seq;
        report.continues = Some(fields.prev.to_string());
        report.last_seq = seq;
        *head = *hash;
        return match each(no, &fields) {
            Ok(()) => true,
            Err(why) => bad(report, no, why),
        };
    }
    if no == 1 {
        report.first_seq = seq;
    }
    let expected_seq = report.last_seq + 1;
    if seq != expected_seq {
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
    match each(no, &fields) {
        Ok(()) => true,
        Err(why) => bad(report, no, why),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn rec<'a>(op: &'a str) -> AuditRecord<'a> {
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
        std::fs::remove_file(&path).unwrap();
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
            }),
            task: Some("t"),
            credential: Some("c"),
            reason: Some("over_scoped"),
            warnings: vec!["w1".into()],
            values: vec![("password", &pw)],
            ..AuditRecord::new("fetch", Decision::Deny)
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
        let p = PeerInfo::of(&a).unwrap();
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
    /// and, with a full disk, by tests/storage_faults.rs).
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
}
