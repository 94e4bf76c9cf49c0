//! Usage evidence from audit logs, for the lint's four usage rules
//! (`scopevault lint POLICY --audit FILE… [--since 30d]`, docs/lint-rules.md).
//!
//! Each log is first checked with the audit module's public [`verify`](crate::audit::verify): a broken or edited
//! chain is an error naming the file and the line, and nothing of that log counts. Where
//! `audit verify` would find an anchor for a log (on the checkpoint), the files of its chain are
//! judged against it with the same rule ([`crate::audit::walked_chain_gap`]) before anything
//! counts. Files that overlap (a forked log, one file given twice) are refused as `audit verify`
//! refuses them. Then the
//! verified lines (no more than `verify` counted, so lines appended meanwhile are left out) are
//! streamed once, line by line, keeping only what the rules ask about: which declared
//! credentials were fetched, for which declared task, by which uid/gid. Memory follows the
//! distinct task × credential × uid/gid, not the number of records, and the uid/gid kept are
//! bounded ([`MAX_PEERS`], [`MAX_PEERS_TOTAL`]): a log chooses them. Only the line format of
//! docs/audit.md is relied on; members this reader does not know are ignored, as that
//! document requires.
//!
//! Evidence: a record with `op` `fetch` and `decision` `allow` names the task and the
//! credential handed out (one record per credential) and the peer's uid and gid. Under a
//! daemon that served the policy linted, an allowed fetch the policy does not allow (a
//! credential the task does not list, an undeclared name) cannot be the daemon's: it is an
//! error ([`UsageError::Impossible`]), not evidence. In a log that records no policy digest
//! (which policy its daemon served is not known) such a record means another policy or an
//! edited log: nothing is judged, and [`Evidence::note`] says why.
//!
//! Too little evidence: a log that begins after the window began has none for its checkpoint
//! before that, and a load of another policy (a `vault.load` record whose policy digest
//! differs from the load before it in the same log) may have brought credentials or tasks that
//! did not exist before. The files given are put in their chains (a rotated log's files are
//! one chain), and the window judged starts at the latest of its asked start, the beginning of
//! the chain that begins last, and the last change of policy. If that cut leaves less than the
//! window asked for, the usage rules report nothing ([`Evidence::judged`] is false) and
//! [`Evidence::note`] says why and what to do: a credential or task added after the window
//! began is never flagged for not having been fetched yet. An `audit.gap` record inside a file
//! (records lost), or an `audit.repair` of records that cannot be written back, cuts as a
//! log's beginning does. `seq` is the order: a record dated earlier
//! than one written before it by more than [`CLOCK_SKEW`] (a clock stepped back) leaves the
//! times unreliable, and nothing is judged; nor with `--since` when the logs end more than
//! [`LOG_ENDS_BEFORE_NOW`] before now (a rotated file given without the live one).
//!
//! The evidence is for the policy the daemons served: when a log's last load names another
//! policy than the one linted (nor one of its locations' shares), nothing is judged either;
//! nor when a log's files given begin with a later file (`seq` > 1) and hold no load, since
//! what its daemon served is then in a file not given.

use std::collections::BTreeSet;
use std::path::PathBuf;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use time::OffsetDateTime;

use crate::audit::verify_each;
use crate::policy::Policy;
// A log's name as an error shows it ([`shown`]): a file name is anyone's text (a pull request
// adds files), so it cannot write a line of its own into a CI log (`::add-mask::`), nor drive a
// terminal. The message is read by people only; nothing parses the name back out of it.
use crate::text::{escape_for_terminal, shown};

/// Why the audit logs could not be used: the CLI exits 2 with this message.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// A log could not be read.
    #[error(
        "{}: cannot read the audit log: {}",
        shown(file),
        escape_for_terminal(why)
    )]
    Read {
        /// The log.
        file: PathBuf,
        /// The I/O error.
        why: String,
    },
    /// A log's hash chain is broken, or a line is not a record.
    #[error("{}:{line}: the audit log does not verify: {}; it cannot serve as evidence (run `scopevault audit verify --audit {}`)", shown(file), escape_for_terminal(why), shown(file))]
    Broken {
        /// The log.
        file: PathBuf,
        /// 1-based line of the first bad line.
        line: u64,
        /// What is wrong.
        why: String,
    },
    /// A log's last line is the record its anchor names, whole but for its newline
    /// ([`crate::audit::VerifyReport::line_end_missing`]): no record is missing, but the
    /// log is not evidence until `serve` completes the line. Named in `audit verify`'s words.
    #[error("{}: {}; until then it cannot serve as evidence (run `scopevault audit verify --audit {}`, which says the same)", shown(file), escape_for_terminal(why), shown(file))]
    LineEndMissing {
        /// The log.
        file: PathBuf,
        /// `audit verify`'s reason, naming the line, the seq and the anchor file.
        why: String,
    },
    /// A log's anchor, found as `audit verify` finds it (on the checkpoint, in its state
    /// directory), cannot be read, or says the log was cut or rewritten
    /// ([`crate::audit::walked_chain_gap`]).
    #[error("{}: {}; it cannot serve as evidence (run `scopevault audit verify --audit {}`, which checks the anchor too)", shown(file), escape_for_terminal(why), shown(file))]
    Anchor {
        /// The log.
        file: PathBuf,
        /// What is wrong, naming the anchor file.
        why: String,
    },
    /// Two files given overlap: `other` begins after the record its first `prev` names, and
    /// `file` holds another record at the same seq after that same record (one log forked, or
    /// two files continuing one). `audit verify` given both refuses them too.
    #[error("{}: begins at seq {seq} after the record its first `prev` names, but {}:{line} is another record at seq {seq} after that same record: the files overlap (one log forked, or two files that both continue one); they cannot serve as evidence together (`scopevault audit verify --audit {} {}` refuses them too): give each file of a log once, as the checkpoint wrote it", shown(other), shown(file), shown(other), shown(file))]
    Overlap {
        /// The file holding the other record.
        file: PathBuf,
        /// Its 1-based line.
        line: u64,
        /// The file that begins there.
        other: PathBuf,
        /// The seq both have.
        seq: u64,
    },
    /// A file given begins after a line of another that is not that file's last (`line` is the
    /// record after it): the log forked there, whatever seq the fork's first record carries
    /// (an `audit.rotate` or `audit.gap` at any seq); or two files both continue that line.
    #[error("{}: its first record continues {}:{continued}, which is not the last line there ({}), so the files overlap (one log forked, or two files that both continue one); they cannot serve as evidence together (`scopevault audit verify --audit {} {}` refuses them too): give each file of a log once, as the checkpoint wrote it", shown(other), shown(file), match line { Some(l) => format!("line {l} follows it"), None => format!("another file given continues it too: {}", shown(second.as_deref().unwrap_or(other))) }, shown(file), shown(other))]
    Fork {
        /// The file forked off.
        file: PathBuf,
        /// The line of `file` that `other` continues.
        continued: u64,
        /// The line of `file` after it, if any.
        line: Option<u64>,
        /// The file that begins there.
        other: PathBuf,
        /// A second file that continues the same line, if that is the overlap.
        second: Option<PathBuf>,
    },
    /// Two files given begin with the same record: one file given twice, or copies of one log.
    #[error("{}: begins with the same record as {} (the same first line): the files overlap (one file given twice, or two copies of one log); they cannot serve as evidence together (`scopevault audit verify --audit {} {}` refuses them too): give each file of a log once, as the checkpoint wrote it", shown(other), shown(file), shown(other), shown(file))]
    Twice {
        /// The file given first.
        file: PathBuf,
        /// The file given later.
        other: PathBuf,
    },
    /// A record the daemon cannot have written under the policy it had loaded, which is the
    /// policy linted (or one of its locations' shares): an allowed fetch of a credential its
    /// task does not list, or of a name the policy does not declare. The chain holds (it was
    /// recomputed), but the log is not the daemon's.
    #[error("{}:{line}: the audit log holds a record its daemon cannot have written: {} in {}, the policy its `vault.load` records say the daemon served; it cannot serve as evidence: the log was edited and its chain recomputed, or is not this daemon's. Compare it with the checkpoint's own log (`scopevault audit verify` there also checks the anchor)", shown(file), escape_for_terminal(why), escape_for_terminal(policy))]
    Impossible {
        /// The log.
        file: PathBuf,
        /// 1-based line of the record.
        line: u64,
        /// What the record says that the policy does not allow.
        why: String,
        /// The policy linted, as named on the command line.
        policy: String,
    },
}

/// How long after a load of another policy a fetch the policy loaded does not allow is still
/// taken for the daemon's own: the load is recorded before the new policy is installed, so a
/// fetch decided under the policy before can be written just after the load's record (the
/// install waits for it).
const LOAD_SETTLES: time::Duration = time::Duration::minutes(1);

/// How far after now a record may be dated and still count as now: the checkpoint's clock
/// and this machine's differ a little. A record dated later is outside a `--since` window,
/// which ends now (docs/lint-rules.md, "The window").
pub const CLOCK_SKEW: time::Duration = time::Duration::minutes(5);

/// How long before now a log may end and still be evidence for a `--since` window, which
/// ends now: a checkpoint's tasks fetch many times a day (a checkpoint idle over a weekend
/// still ends within it), and a copy of the logs may be a little behind. A log whose newest
/// record is older is not judged (docs/lint-rules.md, "Evidence").
pub const LOG_ENDS_BEFORE_NOW: time::Duration = time::Duration::days(3);

/// What the audit logs say about the policy's credentials, tasks and runners in the window.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Start of the window judged (after cutting at reloads and the logs' beginning).
    pub start: Option<OffsetDateTime>,
    /// The time of the last record read.
    pub end: Option<OffsetDateTime>,
    /// Records read in the window (every op).
    pub records: u64,
    /// Distinct (task, credential, uid, gid) of the allowed fetches in the window naming
    /// declared names, as kept ([`MAX_PEERS`]).
    pub fetches: u64,
    /// Whether the evidence covers the whole window asked for: only then do the usage rules
    /// report anything.
    pub judged: bool,
    /// Why the rules did not judge (or a remark about the evidence), for stderr.
    pub note: Option<String>,
    /// The records dated after now, beyond [`CLOCK_SKEW`]: how many of which file, and what
    /// was done with them (left out of a `--since` window; counted without one), for stderr.
    pub ahead_note: Option<String>,
    creds: HashSet<u32>,
    tasks: HashSet<u32>,
    pairs: HashSet<(u32, u32)>,
    /// Per task: the (uid, gid) pairs that fetched for it.
    peers: HashMap<u32, BTreeSet<(u32, u32)>>,
    task_ix: HashMap<String, u32>,
    cred_ix: HashMap<String, u32>,
    /// Tasks no log gave evidence for: every log's daemon served the share of a location the
    /// task does not run at (a fleet, with some checkpoints' logs missing).
    unjudged: HashSet<u32>,
    /// Tasks fetched for by more distinct uid/gid in the window than were kept
    /// ([`MAX_PEERS`]): a runner not among those kept may be among the others.
    crowded: HashSet<u32>,
}

/// How many distinct (uid, gid) of the fetches of one task and credential the evidence keeps.
/// The uids and gids are the log's to choose (a hostile one gives every record its own), so
/// without a bound the memory would follow the number of records: about 105 bytes per distinct
/// uid. Past the bound the task's runners not among those kept are not judged, and the note
/// says so ("more than 1,024 distinct uid/gid").
pub const MAX_PEERS: usize = 1024;

/// How many distinct (task, credential, uid, gid) the evidence keeps in all (about 100 MB):
/// a policy of 100,000 tasks times [`MAX_PEERS`] would be gigabytes.
pub const MAX_PEERS_TOTAL: usize = 1 << 20;

impl Evidence {
    /// Whether any task fetched credential `c` in the window.
    pub fn credential_fetched(&self, c: &str) -> bool {
        self.cred_ix.get(c).is_some_and(|i| self.creds.contains(i))
    }

    /// Whether the logs can say anything about task `t`: false when every log came from a
    /// checkpoint serving the share of a location `t` does not run at.
    pub fn covers_task(&self, t: &str) -> bool {
        self.task_ix
            .get(t)
            .is_none_or(|i| !self.unjudged.contains(i))
    }

    /// Whether some task cannot be judged ([`Evidence::covers_task`]).
    pub fn covers_every_task(&self) -> bool {
        self.unjudged.is_empty()
    }

    /// Whether task `t` fetched anything in the window.
    pub fn task_fetched(&self, t: &str) -> bool {
        self.task_ix.get(t).is_some_and(|i| self.tasks.contains(i))
    }

    /// Whether task `t` fetched credential `c` in the window.
    pub fn pair_fetched(&self, t: &str, c: &str) -> bool {
        match (self.task_ix.get(t), self.cred_ix.get(c)) {
            (Some(t), Some(c)) => self.pairs.contains(&(*t, *c)),
            _ => false,
        }
    }

    /// Whether runner user `user` (a name or a numeric uid) fetched for task `t`; `None` when
    /// the name is not a user on this machine, so it cannot be judged.
    pub fn user_seen(&self, t: &str, user: &str) -> Option<bool> {
        let uid = user
            .parse::<u32>()
            .ok()
            .or_else(|| crate::accounts::user_uid(user))?;
        self.judged_seen(t, self.peers_of(t).any(|(u, _)| u == uid))
    }

    /// `seen`, or `None` (cannot be judged) when not seen among the peers kept of a task
    /// that had more ([`MAX_PEERS`]).
    fn judged_seen(&self, t: &str, seen: bool) -> Option<bool> {
        let crowded = || {
            self.task_ix
                .get(t)
                .is_some_and(|i| self.crowded.contains(i))
        };
        (seen || !crowded()).then_some(seen)
    }

    /// Whether a member of runner group `group` (a name or a numeric gid; primary group as
    /// logged, or supplementary as this machine's group database says) fetched for task `t`;
    /// `None` when the name is not a group on this machine.
    pub fn group_seen(&self, t: &str, group: &str) -> Option<bool> {
        let gid = group
            .parse::<u32>()
            .ok()
            .or_else(|| crate::accounts::group_gid(group))?;
        self.judged_seen(
            t,
            self.peers_of(t)
                .any(|(u, g)| g == gid || crate::accounts::user_groups(u).contains(&gid)),
        )
    }

    fn peers_of(&self, t: &str) -> impl Iterator<Item = (u32, u32)> + '_ {
        self.task_ix
            .get(t)
            .and_then(|i| self.peers.get(i))
            .into_iter()
            .flat_map(|s| s.iter().copied())
    }
}

/// What the daemon loaded, as a `vault.load` record says: the policy's digest, or (a log
/// written before the digest was recorded) only the vault's generation.
#[derive(Clone, PartialEq, Eq)]
enum Loaded {
    Policy(String),
    Generation(u64),
    Unknown,
}

impl Loaded {
    fn of(rec: &crate::audit::RecordView<'_>) -> Loaded {
        match (&rec.policy, rec.generation) {
            // Only a digest as the daemon writes it: anything else (it is printed in the
            // note) says nothing that can be compared.
            (Some(p), _)
                if p.strip_prefix("sha256:").is_some_and(|h| {
                    h.len() == 64 && h.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                }) =>
            {
                Loaded::Policy(p.to_string())
            }
            (Some(_), _) => Loaded::Unknown,
            (None, Some(g)) => Loaded::Generation(g),
            (None, None) => Loaded::Unknown,
        }
    }

    /// Whether a load of `self` after `before` cannot have brought other tasks or credentials.
    fn same_as(&self, before: &Loaded) -> bool {
        self == before && *self != Loaded::Unknown
    }
}

/// A place in the logs: a record's time, file and line.
type At = (OffsetDateTime, PathBuf, u64);

/// What one log file says about where it begins and when the daemon's policy may have changed.
struct FileFacts {
    /// The time of the file's first record (by `seq`, the order: docs/audit.md).
    first: Option<OffsetDateTime>,
    /// The latest time of its records.
    latest: Option<OffsetDateTime>,
    /// The first record dated earlier than a record before it (by `seq`) by more than
    /// [`CLOCK_SKEW`]: its line, its time and the latest time before it. The clock was
    /// stepped back (or was wrong at a start), so where a time falls in the window says
    /// nothing of where the record falls in the log.
    stepped_back: Option<(u64, OffsetDateTime, OffsetDateTime)>,
    /// The last record that says records before it are missing (an `audit.gap`: a cut tail
    /// accepted at start, the record after the lines kept of a file cut back under the daemon,
    /// or the first record of a file cut to nothing under it; an `audit.repair` of records the
    /// journal held that cannot be written back), and its op: the evidence of its chain begins
    /// there.
    last_gap: Option<(At, &'static str)>,
    /// Whether its first record is an `audit.gap` (the daemon found the file cut under it, or
    /// began it with `--accept-audit-gap`).
    begins_with_gap: bool,
    /// The file's place in its chain (from the verification).
    first_seq: u64,
    continues: Option<String>,
    last_seq: u64,
    head: String,
    /// Lines read (every one a record: the file verified).
    lines: u64,
    /// The first allowed `vault.load`, and what it loaded.
    first_load: Option<(At, Loaded)>,
    /// The last allowed `vault.load`, and what it loaded.
    last_load: Option<(At, Loaded)>,
    /// The last allowed `vault.load` that loaded another policy than the load before it in
    /// this file.
    last_change: Option<At>,
    /// The last allowed `reload`: it counts only in a file with no `vault.load` record (a
    /// daemon that did not write them).
    last_reload: Option<At>,
    /// How many records are dated after now beyond [`CLOCK_SKEW`], and the latest of them.
    ahead: u64,
    latest_ahead: Option<OffsetDateTime>,
    /// The latest allowed `fetch` in the window that the policy linted does not allow (a
    /// credential its task does not list, a name it does not declare): its time, line and
    /// what it says. An error when the file's daemon served that policy
    /// ([`UsageError::Impossible`]); in a chain that names no digest, the reason the logs do
    /// not judge.
    impossible: Option<(OffsetDateTime, u64, String)>,
}

/// Read the evidence for `policy` from `logs`. `since`: the window is the last `since` before
/// `now` (a record dated after `now` + [`CLOCK_SKEW`] is outside it); without it, everything the
/// logs hold. Either way [`Evidence::ahead_note`] says which records are dated after now.
pub fn read_evidence(
    logs: &[PathBuf],
    policy: &Policy,
    since: Option<time::Duration>,
    now: OffsetDateTime,
) -> Result<Evidence, UsageError> {
    let mut ev = Evidence {
        task_ix: policy
            .tasks()
            .enumerate()
            .map(|(i, (t, _))| (t.to_owned(), i as u32))
            .collect(),
        cred_ix: policy
            .credentials()
            .enumerate()
            .map(|(i, (c, _))| (c.to_owned(), i as u32))
            .collect(),
        ..Evidence::default()
    };
    // No arithmetic on a time can panic: a log `audit verify` accepts may be dated anywhere
    // from year 1 to the end of year 9999 (twenty-fourth pass, found by its attacker of this
    // pass's fixes: a record after 9999-12-31T23:55:00Z panicked). Times are compared by
    // their difference, which always fits a `Duration`; a window reaching back before the
    // first representable time starts there.
    let window_start = since.map(|d| {
        now.checked_sub(d)
            .unwrap_or(time::PrimitiveDateTime::MIN.assume_utc())
    });
    // A record dated after now (beyond the skew) is outside a `--since` window, which ends
    // now; without `--since` the window is everything the logs hold, and it counts.
    let is_ahead = |time: OffsetDateTime| time - now > CLOCK_SKEW;
    // The (task, credential) pairs the policy allows: a task and each declared credential it
    // lists. A daemon serving this policy hands out nothing else.
    let listed: HashSet<(u32, u32)> = policy
        .tasks()
        .enumerate()
        .flat_map(|(t, (_, task))| {
            let cred_ix = &ev.cred_ix;
            task.credentials()
                .into_iter()
                .filter_map(move |c| cred_ix.get(c).map(|&c| (t as u32, c)))
        })
        .collect();
    // Fetches are kept with their time until the cut is known. Only distinct (task, cred) and
    // (task, cred, uid, gid) matter, with the latest time of each, so this stays as small as
    // the policy's pairs × the uid/gid seen, whatever the number of records; and the uid/gid
    // are the log's to choose, so at most [`MAX_PEERS`] of them are kept per pair
    // ([`MAX_PEERS_TOTAL`] in all), the latest time of one not kept in `crowded`.
    let mut pair_latest: HashMap<(u32, u32), OffsetDateTime> = HashMap::default();
    let mut latest: HashMap<(u32, u32, u32, u32), OffsetDateTime> = HashMap::default();
    let mut kept: HashMap<(u32, u32), usize> = HashMap::default();
    let mut crowded: HashMap<(u32, u32), OffsetDateTime> = HashMap::default();
    let mut facts: Vec<FileFacts> = Vec::with_capacity(logs.len());
    // Each log's anchor, looked up as `audit verify` looks it up (on the checkpoint, in its
    // state directory; a copy elsewhere has none), and the seqs of the records after the
    // anchored ones, which the walk below keeps (docs/lint-rules.md, "Verification first").
    let anchors = logs
        .iter()
        .map(|file| {
            crate::audit::find_anchor(file).map_err(|e| UsageError::Anchor {
                file: file.clone(),
                why: e.to_string(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let after_anchored: HashSet<u64> = anchors
        .iter()
        .flatten()
        .filter_map(|(_, a)| a.seq.checked_add(1))
        .collect();
    let mut met_after: Vec<Vec<(u64, crate::audit::MetAfterAnchored)>> =
        Vec::with_capacity(logs.len());
    // Files that overlap are no evidence together, as `audit verify` refuses them: one log's
    // files each hold their own seqs. Each file's first record is read first, so that the
    // walk of every other file can tell a record at the same seq after the same record (a
    // fork, two continuations of one file); and two files that begin with the same line are
    // one file given twice, or copies. Two checkpoints' logs both begin at seq 1 after 64
    // zeros, and are two logs.
    let firsts = logs
        .iter()
        .map(|file| first_record(file))
        .collect::<Result<Vec<_>, _>>()?;
    let mut begun: HashMap<&str, usize> = HashMap::default();
    for (i, first) in firsts.iter().enumerate() {
        if let Some(f) = first {
            if let Some(&j) = begun.get(f.hash.as_str()) {
                return Err(UsageError::Twice {
                    file: logs[j].clone(),
                    other: logs[i].clone(),
                });
            }
            begun.insert(&f.hash, i);
        }
    }
    // The files whose first record continues a line (its `prev`), by that line's hash: a
    // file may continue only another's last line (a rotation, a gap record), and only one file
    // the same line (twenty-first pass, found by attacking this pass's fixes: a fork whose
    // first record was an `audit.gap` at seq 100, or an `audit.rotate` at seq 2, was counted).
    let mut continuing: HashMap<&str, Vec<usize>> = HashMap::default();
    for (j, f) in firsts.iter().enumerate() {
        if let Some(f) = f.as_ref().filter(|f| f.seq > 1) {
            continuing.entry(&f.prev).or_default().push(j);
        }
    }
    for (i, file) in logs.iter().enumerate() {
        let mut overlap: Option<(usize, u64)> = None;
        // A line of this file another file continues (that file, the line), and a fork found.
        let mut continued: Option<(usize, u64)> = None;
        let mut fork: Option<UsageError> = None;
        let mut met: Vec<(u64, crate::audit::MetAfterAnchored)> = Vec::new();
        let mut f = FileFacts {
            first: None,
            latest: None,
            stepped_back: None,
            last_gap: None,
            begins_with_gap: false,
            first_seq: 0,
            continues: None,
            last_seq: 0,
            head: String::new(),
            lines: 0,
            ahead: 0,
            latest_ahead: None,
            first_load: None,
            last_load: None,
            last_change: None,
            last_reload: None,
            impossible: None,
        };
        // One read of each log: the chain accepts a record, then it is counted here.
        let report = verify_each(file, &mut |no, rec| {
            // The verifier hands on only records with all three (`record_members`): a line
            // without them is one `audit verify` refuses too.
            let (Some(time), Some(op), Some(decision)) = (rec.at, &rec.op, &rec.decision) else {
                return Err("not an audit record (no string `time`, `op` or `decision`)".to_owned());
            };
            if let Some((j, at)) = continued.take() {
                fork = Some(UsageError::Fork {
                    file: file.clone(),
                    continued: at,
                    line: Some(no),
                    other: logs[j].clone(),
                    second: None,
                });
                return Err("another file given forks off it".to_owned());
            }
            let hash = rec.hash.as_ref().and_then(|h| std::str::from_utf8(h).ok());
            if let Some(js) = hash.and_then(|h| continuing.get(h)) {
                let mut others = js.iter().filter(|&&j| j != i);
                if let Some(&j) = others.next() {
                    if let Some(&k) = others.next() {
                        fork = Some(UsageError::Fork {
                            file: file.clone(),
                            continued: no,
                            line: None,
                            other: logs[j].clone(),
                            second: Some(logs[k].clone()),
                        });
                        return Err("two other files given continue one line".to_owned());
                    }
                    continued = Some((j, no));
                }
            }
            // Two files that begin after the same line: an overlap even when no file given
            // holds that line (the fork check above needs it), whatever seq each begins at (a
            // line has one continuation: twenty-second pass, found by its review, when a file
            // at seq 4 and a gap record at seq 100 after one line were both counted). Only a
            // first record can be one: a later record's `prev` is the line before it here,
            // which the fork check has already met.
            if no == 1 {
                let twin = continuing
                    .get(&*rec.prev)
                    .and_then(|js| js.iter().copied().find(|&j| j != i));
                if let Some(j) = twin {
                    overlap = Some((j, no));
                    return Err("overlaps another file given".to_owned());
                }
            }
            if after_anchored.contains(&rec.seq) {
                met.push((
                    rec.seq,
                    crate::audit::MetAfterAnchored {
                        prev: rec.prev.to_string(),
                        hash: rec
                            .hash
                            .map(|h| String::from_utf8_lossy(&h).into_owned())
                            .unwrap_or_default(),
                        begins_chain: no == 1,
                    },
                ));
            }
            // `seq` is the order, not `time`: a record dated well before one written before
            // it means the clock was stepped back (twenty-fourth pass, found by its attacker of
            // evidence from the audit trail: a load dated 35 days back was taken for one
            // before the window).
            if let Some(l) = f.latest {
                if l - time > CLOCK_SKEW && f.stepped_back.is_none() {
                    f.stepped_back = Some((no, time, l));
                }
            }
            f.first.get_or_insert(time);
            f.latest = Some(f.latest.map_or(time, |t| t.max(time)));
            // Records before a gap record are missing: the chain's evidence begins there.
            let lost = match &**op {
                "audit.gap" => Some("audit.gap"),
                "audit.repair"
                    if rec
                        .reason
                        .as_deref()
                        .is_some_and(|r| r.contains("cannot be written back")) =>
                {
                    Some("audit.repair")
                }
                _ => None,
            };
            if let Some(op) = lost {
                f.begins_with_gap |= no == 1 && op == "audit.gap";
                f.last_gap = Some(((time, file.clone(), no), op));
            }
            if is_ahead(time) {
                f.ahead += 1;
                f.latest_ahead = Some(f.latest_ahead.map_or(time, |t| t.max(time)));
                // After the window: not evidence, and no load or reload of it either (what
                // was served in the window is what the loads before say).
                if window_start.is_some() {
                    return Ok(());
                }
            }
            // Loads before the window count too: they say what was served when it began.
            if decision == "allow" && op == "vault.load" {
                let loaded = Loaded::of(rec);
                let at = (time, file.clone(), no);
                match &f.last_load {
                    None => f.first_load = Some((at.clone(), loaded.clone())),
                    Some((_, before)) if !loaded.same_as(before) => {
                        f.last_change = Some(at.clone());
                    }
                    Some(_) => {}
                }
                f.last_load = Some((at, loaded));
            }
            if window_start.is_some_and(|w| time < w) {
                return Ok(());
            }
            ev.records += 1;
            ev.end = Some(ev.end.map_or(time, |e| e.max(time)));
            if decision != "allow" {
                return Ok(());
            }
            match &**op {
                "reload" => f.last_reload = Some((time, file.clone(), no)),
                "fetch" => {
                    // Undeclared names are logged as HMACs: they match nothing here. A daemon
                    // serving this policy never allows them, nor a credential the task does
                    // not list: such a record is kept aside, an error if its daemon served
                    // this policy (judged once the files are in their chains).
                    let t = rec.task.as_deref().and_then(|t| ev.task_ix.get(t));
                    let c = rec.credential.as_deref().and_then(|c| ev.cred_ix.get(c));
                    let (Some(&t), Some(&c)) = (t, c) else {
                        if f.impossible.as_ref().is_none_or(|(at, _, _)| time >= *at) {
                            f.impossible = Some((time, no, "an allowed fetch naming a task or credential not declared".to_owned()));
                        }
                        return Ok(());
                    };
                    if !listed.contains(&(t, c)) {
                        if f.impossible.as_ref().is_none_or(|(at, _, _)| time >= *at) {
                            f.impossible = Some((
                                time,
                                no,
                                format!(
                                    "an allowed fetch of credential `{}` for task `{}`, which does not list it",
                                    rec.credential.as_deref().unwrap_or_default(),
                                    rec.task.as_deref().unwrap_or_default()
                                ),
                            ));
                        }
                        return Ok(());
                    }
                    let (uid, gid) = rec
                        .peer
                        .as_ref()
                        .map_or((u32::MAX, u32::MAX), |p| (p.uid, p.gid));
                    let e = pair_latest.entry((t, c)).or_insert(time);
                    *e = (*e).max(time);
                    if let Some(e) = latest.get_mut(&(t, c, uid, gid)) {
                        *e = (*e).max(time);
                        return Ok(());
                    }
                    let n = kept.entry((t, c)).or_insert(0);
                    if *n < MAX_PEERS && latest.len() < MAX_PEERS_TOTAL {
                        *n += 1;
                        latest.insert((t, c, uid, gid), time);
                    } else {
                        let e = crowded.entry((t, c)).or_insert(time);
                        *e = (*e).max(time);
                    }
                }
                _ => {}
            }
            Ok(())
        })
        .map_err(|e| UsageError::Read {
            file: file.clone(),
            // The error names the log and says "cannot read the audit log" itself: its
            // message alone, so that neither is said twice (twenty-first pass).
            why: match e {
                crate::audit::AuditError::Read { message, .. } => message,
                e => e.to_string(),
            },
        })?;
        if let Some(fork) = fork {
            return Err(fork);
        }
        if let Some((j, line)) = overlap {
            return Err(UsageError::Overlap {
                file: file.clone(),
                line,
                other: logs[j].clone(),
                seq: firsts[j].as_ref().map_or(0, |f| f.seq),
            });
        }
        // The anchored record whole but for its newline: named as `audit verify` names it,
        // not as the incomplete line a crash in the middle of an append leaves (twenty-second
        // pass, found by attacking this pass's fixes).
        let whole = anchors[i]
            .as_ref()
            .and_then(|(anchor_file, a)| Some((anchor_file, report.line_end_missing(a)?)));
        if let Some((anchor_file, w)) = whole {
            return Err(UsageError::LineEndMissing {
                file: file.clone(),
                why: w.describe_line_end_missing(anchor_file),
            });
        }
        if let Some(bad) = report.first_bad {
            return Err(UsageError::Broken {
                file: file.clone(),
                line: bad.line,
                why: bad.why,
            });
        }
        // The first record the walk read must be the one read before it: a file replaced
        // meanwhile (a rotation on the checkpoint) was not compared with the others.
        let began = firsts[i]
            .as_ref()
            .map(|f| (f.seq, (f.seq > 1).then_some(f.prev.as_str())));
        if report.lines > 0 && began != Some((report.first_seq, report.continues.as_deref())) {
            return Err(UsageError::Read {
                file: file.clone(),
                why: "it changed while lint read it (its first record is not the one read first): run lint again".to_owned(),
            });
        }
        f.first_seq = report.first_seq;
        f.continues = report.continues;
        f.last_seq = report.last_seq;
        f.head = report.head;
        f.lines = report.lines;
        facts.push(f);
        met_after.push(met);
    }
    ev.ahead_note = ahead_note(logs, &facts, since.is_some());
    let Chains {
        begins,
        change,
        serving,
        unknown,
        served_digest,
        members,
    } = chains(logs, &facts);
    // Before anything counts: a log whose anchor was found is judged against it as `audit
    // verify` judges it, with the files given of its chain (a cut tail, the anchored record
    // rewritten and the chain recomputed).
    for (i, found) in anchors.iter().enumerate() {
        let Some((anchor_file, a)) = found else {
            continue;
        };
        let chain = members
            .iter()
            .find(|m| m.contains(&i))
            .map_or(std::slice::from_ref(&i), Vec::as_slice);
        // The chain's end: its last file that holds records (every file of a chain does but an
        // empty one, which is a chain of its own).
        let end = chain
            .iter()
            .rev()
            .map(|&j| &facts[j])
            .find(|f| f.lines > 0)
            .unwrap_or(&facts[i]);
        let after = chain.iter().find_map(|&j| {
            let (_, r) = met_after[j]
                .iter()
                .find(|(seq, _)| Some(*seq) == a.seq.checked_add(1))?;
            Some(crate::audit::MetAfterAnchored {
                begins_chain: r.begins_chain && j == chain[0],
                ..r.clone()
            })
        });
        if let Some(gap) = crate::audit::walked_chain_gap(a, end.last_seq, &end.head, after) {
            let mut why = format!(
                "the audit log does not match its anchor: {}",
                gap.describe(anchor_file)
            );
            if gap.not_in_file() {
                why.push_str(": if the anchored record is in a rotated file, give that file too (`--audit` each, any order)");
            }
            return Err(UsageError::Anchor {
                file: logs[i].clone(),
                why,
            });
        }
    }
    // `seq` is the order of a log, and its times place it in the window only while they follow
    // it: a record dated earlier than one written before it by more than [`CLOCK_SKEW`] (a
    // clock stepped back, or wrong at a start and then set) leaves no way to tell which records
    // fall in the window, nor whether a load of another policy came before them. Nothing is
    // judged, and no record is called one its daemon cannot have written: a finding the times
    // cannot support is worse than none (twenty-fourth pass, found by its attacker of evidence
    // from the audit trail). Within a chain the files follow each other too.
    let mut stepped: Option<(usize, u64, OffsetDateTime, OffsetDateTime)> = None;
    for m in &members {
        let mut before: Option<OffsetDateTime> = None;
        for &i in m {
            let f = &facts[i];
            let at_start = match (before, f.first) {
                (Some(l), Some(t)) if l - t > CLOCK_SKEW => Some((i, 1, t, l)),
                _ => None,
            };
            if let Some(s) = at_start.or(f.stepped_back.map(|(no, t, l)| (i, no, t, l))) {
                stepped.get_or_insert(s);
                break;
            }
            before = before.max(f.latest);
        }
    }
    if let Some((i, line, t, l)) = stepped {
        ev.judged = false;
        ev.note = Some(format!(
            "usage rules not applied: the times of {} are not in the order of its records: {}:{line} is dated {}, more than {} minutes before a record written earlier ({}): the checkpoint's clock was stepped back, or was wrong at a start and then set, so where each record falls in the window (and whether a load of another policy came before it) cannot be told from its time; the rules judge again once the files given no longer hold that record (after the log is rotated, give only the files that follow it)",
            logs[i].display(),
            logs[i].display(),
            fmt(t),
            CLOCK_SKEW.whole_minutes(),
            fmt(l)
        ));
        return Ok(ev);
    }
    // An empty file given among files that hold records: a checkpoint's live log just moved by
    // logrotate (`mv` + `create`), or emptied. It covers none of the window, and its
    // checkpoint's evidence is in the files its records were moved to: judging the others
    // alone would report as never fetched what that checkpoint fetched (twenty-fourth pass,
    // found by its attacker of this pass's fixes). Unless a file given beside it is one of its
    // moved files (its name, then `.`: `audit.jsonl.20261107T000000Z`, `audit.jsonl.1.gz`),
    // which then holds that log's evidence, and is judged with the others.
    if facts.iter().any(|f| f.lines > 0) {
        let empty = (0..logs.len()).find(|&i| {
            facts[i].lines == 0
                && !(0..logs.len())
                    .any(|j| j != i && facts[j].lines > 0 && moved_file_of(&logs[i], &logs[j]))
        });
        if let Some(i) = empty {
            ev.judged = false;
            ev.note = Some(format!(
                "usage rules not applied: {} holds no record (a live log just rotated, or emptied), so it covers none of the window, and what its checkpoint did is in the files its records were moved to: give the files its records were moved to too (`--audit` each file of a log, any order; `{}.*` beside it)",
                logs[i].display(),
                logs[i].display()
            ));
            return Ok(ev);
        }
    }
    // A `--since` window ends now: a log whose newest record is long before that (its rotated
    // files given without the live one, a copy taken days ago) has no evidence for the rest,
    // and a fetch there would not be seen. A daemon idle that long looks the same, and
    // "never fetched" is then not a finding the logs can support either way: nothing is
    // judged (twenty-fourth pass, found by its attacker of evidence from the audit trail).
    if window_start.is_some() {
        let ended = members
            .iter()
            .filter_map(|m| {
                let end = m.iter().filter_map(|&i| facts[i].latest).max()?;
                let last = m.iter().rev().find(|&&i| facts[i].lines > 0)?;
                Some((end, *last))
            })
            .min_by_key(|(end, _)| *end);
        if let Some((end, i)) = ended.filter(|(end, _)| now - *end > LOG_ENDS_BEFORE_NOW) {
            ev.judged = false;
            ev.note = Some(format!(
                "usage rules not applied: the logs end at {} ({}'s newest record), more than {} days before the window ends (now), so a fetch since is not known: give the live log too (`--audit` each file of a log: a rotated file alone ends at its rotation), or a copy taken now; a checkpoint whose daemon was idle since cannot be judged either",
                fmt(end),
                logs[i].display(),
                LOG_ENDS_BEFORE_NOW.whole_days()
            ));
            return Ok(ev);
        }
    }
    // The cut: the window starts at the latest of its asked start (without `--since`, the
    // earliest record), the beginning of every log (each checkpoint's chain must cover the
    // window), the last gap recorded in a log (records before it are missing) and the last
    // load of another policy.
    let earliest = begins.iter().map(|(t, _)| *t).min();
    let mut start = window_start.or(earliest);
    let mut why_cut: Option<String> = None;
    if let Some((b, file)) = begins.iter().max_by_key(|(t, _)| *t) {
        if start.is_none_or(|s| *b > s) {
            start = Some(*b);
            why_cut = Some(format!(
                "{} begins at {}{}",
                file.display(),
                fmt(*b),
                if begins.len() > 1 {
                    ", later than the window and the other logs begin (each checkpoint's log, with its earlier segments, must cover the window)"
                } else {
                    ""
                }
            ));
        }
    }
    // A gap the daemon recorded (`audit.gap`: records N..M lost, a file cut under it): what the
    // lost records held is not known, so the chain's evidence begins there, as a log that
    // begins late (twenty-fourth pass, found by its attacker of evidence from the audit trail).
    // A file that begins with one (a chain's first file, or a later one that continues the
    // file before it) lost nothing the files given do not hold.
    let mut so = ", so a credential or task added since could not have been fetched yet";
    let gap = members
        .iter()
        .filter_map(|m| {
            m.iter()
                .rev()
                .find_map(|&i| facts[i].last_gap.clone().filter(|((_, _, no), _)| *no > 1))
        })
        .max_by_key(|((t, _, _), _)| *t);
    if let Some(((g, file, line), op)) = gap {
        if start.is_none_or(|s| g > s) {
            start = Some(g);
            so = ", and a fetch in the records lost is not known";
            why_cut = Some(format!(
                "{}:{line} records a gap in the log at {} (an `{op}` record: records before it are missing), so its evidence begins there",
                file.display(),
                fmt(g)
            ));
        }
    }
    if let Some(((r, file, line), (did, before))) = &change {
        if start.is_none_or(|s| *r > s) {
            so = ", so a credential or task added since could not have been fetched yet";
            start = Some(*r);
            why_cut = Some(format!(
                "the daemon {did} at {} ({}:{line}){before}, and may then have loaded credentials or tasks that did not exist before",
                fmt(*r),
                file.display()
            ));
        }
    }
    if earliest.is_none() {
        why_cut = Some("the logs hold no record".into());
    }
    ev.start = start;
    let in_window = |at: &OffsetDateTime| start.is_none_or(|s| *at >= s);
    for ((t, c), at) in pair_latest {
        if in_window(&at) {
            ev.creds.insert(c);
            ev.tasks.insert(t);
            ev.pairs.insert((t, c));
        }
    }
    for ((t, _, uid, gid), at) in latest {
        if in_window(&at) {
            ev.fetches += 1;
            ev.peers.entry(t).or_default().insert((uid, gid));
        }
    }
    // The pairs that had more uid/gid in the window than were kept, with how many were kept.
    let mut crowded: Vec<((u32, u32), usize)> = crowded
        .into_iter()
        .filter(|(_, at)| in_window(at))
        .map(|(pair, _)| (pair, kept.get(&pair).copied().unwrap_or(0)))
        .collect();
    crowded.sort_unstable();
    ev.crowded = crowded.iter().map(|((t, _), _)| *t).collect();
    // A later file of a log given without the files before it, with no load in it or in the
    // files given after it: what its daemon served is not known at all (not even from some
    // point on), so no policy can be judged against it, whatever the window.
    if let Some((file, seq, gap)) = unknown.first() {
        ev.judged = false;
        ev.note = Some(format!(
            "usage rules not applied: {} and neither it nor a later file given holds a `vault.load` record, so what its daemon served is not known{}; {}",
            begins_after(file, *seq, *gap),
            match unknown.len() {
                1 => String::new(),
                n => format!(" (nor for {} other log{})", n - 1, if n == 2 { "" } else { "s" }),
            },
            if *gap {
                "the rules judge again with a window that starts after a `vault.load` that follows the gap (the daemon's next start or `reload`), or give the log's earlier files if they hold those records"
            } else {
                "give the log's earlier files too (`--audit` each, any order), back to its first file or one that records a `vault.load`"
            }
        ));
        return Ok(ev);
    }
    // The evidence is about the policy the daemons served: another one (a change proposed in a
    // pull request, a policy not applied yet) has no evidence of its own, and what it adds
    // would be flagged for not having been used before it existed.
    let served = match served_by_all(policy, &serving, begins.len()) {
        Ok(served) => served,
        Err(why) => {
            ev.judged = false;
            ev.note = Some(format!(
                "usage rules not applied: {why}; the logs are evidence for the policy the daemon served, not for a change to it: lint the policy as applied (or the master policy its bundles were published from)"
            ));
            return Ok(ev);
        }
    };
    // A fleet with some checkpoints' logs missing: the tasks of the locations no log serves
    // have no evidence, and are not judged.
    let mut left_out: Vec<&str> = Vec::new();
    if let Some(locations) = &served {
        for (i, (name, task)) in policy.tasks().enumerate() {
            if !task.locations().iter().any(|l| locations.contains(*l)) {
                ev.unjudged.insert(i as u32);
                left_out.push(name);
            }
        }
    }
    // Judged: every chain's daemon served this policy (or a share of it, or named no digest)
    // through the whole window, so a chain that names its digest cannot hold an allowed fetch
    // the policy does not allow there — but in the minute after the load of another policy,
    // when a fetch decided under that one can still be written ([`LOAD_SETTLES`]).
    //
    // A chain that names no digest (a daemon before the digest was recorded, or a log with the
    // digests removed) is checked too: it is judged on the word of its records alone that its
    // daemon served this policy, and such a record gives that the lie. Whether the daemon
    // served another policy or the log was edited cannot be told without the digest, so it is
    // no error naming an edit, but the logs are not evidence either: the rules do not judge,
    // and every format says why. (Dropping the digests thus gains a forger nothing a load of
    // another policy's digest would not: the rules not applied, and said so.)
    if why_cut.is_none() {
        let changed = change.as_ref().map(|((at, _, _), _)| *at);
        let mut undigested: Option<(usize, u64, &str)> = None;
        for (i, f) in facts.iter().enumerate() {
            let Some((at, line, why)) = &f.impossible else {
                continue;
            };
            if !(start.is_none_or(|s| *at >= s) && changed.is_none_or(|c| *at - c >= LOAD_SETTLES))
            {
                continue;
            }
            if served_digest[i] {
                return Err(UsageError::Impossible {
                    file: logs[i].clone(),
                    line: *line,
                    why: why.clone(),
                    policy: policy.path().to_owned(),
                });
            }
            undigested.get_or_insert((i, *line, why));
        }
        if let Some((i, line, why)) = undigested {
            ev.judged = false;
            ev.note = Some(format!(
                "usage rules not applied: {}:{line} holds {why} in {}, and its log records no policy digest (a `vault.load` record's `policy`: a daemon older than the digest, or a log with the digests removed), so nothing shows which policy its daemon served: it served another policy, or the log was edited and its chain recomputed; lint the policy that daemon served, and compare the log with the checkpoint's own (`scopevault audit verify` there also checks the anchor)",
                logs[i].display(),
                policy.path()
            ));
            return Ok(ev);
        }
    }
    match why_cut {
        None if !left_out.is_empty() => {
            ev.judged = true;
            let n = left_out.len();
            left_out.truncate(10);
            ev.note = Some(format!(
                "usage rules applied to the tasks of location{} {} only: no log given comes from a checkpoint of another location, so {n} task{} (`{}`{}) and the credentials only they list are not judged",
                if served.as_ref().is_some_and(|l| l.len() == 1) { "" } else { "s" },
                served.iter().flatten().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", "),
                if n == 1 { "" } else { "s" },
                left_out.join("`, `"),
                if n > 10 { ", …" } else { "" }
            ));
        }
        None => ev.judged = true,
        Some(why) => {
            ev.judged = false;
            ev.note = Some(format!(
                "usage rules not applied: {why}{so}; {}",
                match start {
                    Some(s) => format!(
                        "pass `--since` with a window that starts after {} (or logs reaching further back) to judge",
                        fmt(s)
                    ),
                    None => "give logs that hold records".to_owned(),
                }
            ));
        }
    }
    if ev.judged && !crowded.is_empty() {
        let names = |i: u32, ix: &HashMap<String, u32>| {
            ix.iter()
                .find(|(_, &j)| j == i)
                .map_or_else(String::new, |(n, _)| n.clone())
        };
        let n = crowded.len();
        let listed: Vec<String> = crowded
            .iter()
            .take(10)
            .map(|((t, c), kept)| {
                format!(
                    "task `{}` fetched credential `{}` from more than {} distinct uid/gid",
                    names(*t, &ev.task_ix),
                    names(*c, &ev.cred_ix),
                    grouped(*kept)
                )
            })
            .collect();
        let crowded_note = format!(
            "runner-never-seen is not applied to the runners not among the uid/gid kept: {}{}; lint keeps {} distinct uid/gid per task and credential ({} in all)",
            listed.join(", "),
            if n > 10 { format!(", and {} more", n - 10) } else { String::new() },
            grouped(MAX_PEERS),
            grouped(MAX_PEERS_TOTAL)
        );
        ev.note = Some(match ev.note.take() {
            Some(note) => format!("{note}; {crowded_note}"),
            None => crowded_note,
        });
    }
    Ok(ev)
}

/// A file's first record: its seq and `prev`, and the SHA-256 hex of its line.
struct FirstRecord {
    seq: u64,
    prev: String,
    hash: String,
}

/// The first record of the log file `file` (decompressed, as the walk reads it), if its first
/// line is a record; `None` otherwise (an empty file, or a first line the walk refuses).
fn first_record(file: &std::path::Path) -> Result<Option<FirstRecord>, UsageError> {
    use sha2::Digest;
    let read_err = |e: std::io::Error| UsageError::Read {
        file: file.to_owned(),
        why: e.to_string(),
    };
    let reader = crate::audit::open_segment(file).map_err(read_err)?;
    let mut lines = crate::audit::BoundedLines::new(std::io::BufReader::new(reader));
    let crate::audit::NextLine::Line(line) = lines.next_line().map_err(read_err)? else {
        return Ok(None);
    };
    let Ok(r) = crate::audit::shown_record(line) else {
        return Ok(None);
    };
    let (Some(seq), Some(prev)) = (r.seq, r.prev) else {
        return Ok(None);
    };
    Ok(Some(FirstRecord {
        seq,
        prev: prev.into_owned(),
        hash: data_encoding::HEXLOWER.encode(&sha2::Sha256::digest(line)),
    }))
}

/// The note on the records dated after now beyond [`CLOCK_SKEW`], if any: how many of which
/// file, the latest of each, and whether they were left out (`windowed`: `--since` given) or
/// counted.
fn ahead_note(logs: &[PathBuf], facts: &[FileFacts], windowed: bool) -> Option<String> {
    let parts: Vec<String> = facts
        .iter()
        .zip(logs)
        .filter_map(|(f, file)| {
            let latest = f.latest_ahead?;
            Some(format!(
                "{} record{} of {} (the latest at {})",
                grouped(f.ahead as usize),
                if f.ahead == 1 { "" } else { "s" },
                file.display(),
                fmt(latest)
            ))
        })
        .collect();
    let n: u64 = facts.iter().map(|f| f.ahead).sum();
    (n > 0).then(|| {
        format!(
            "{} {} dated after now, more than {} minutes ahead of this machine's clock (the checkpoint's clock is ahead of this one's, or the records were written so): {}",
            parts.join(", "),
            if n == 1 { "is" } else { "are" },
            CLOCK_SKEW.whole_minutes(),
            if windowed {
                "outside the window of `--since`, which ends now, so not counted"
            } else {
                "counted, as without `--since` the window is everything the logs hold (pass `--since` to leave them out)"
            }
        )
    })
}

/// Where a chain whose first file `file` begins at `seq` > 1 begins, for a note: after an
/// earlier file not given, or (`gap`: its first record is an `audit.gap`) after records lost
/// (the file cut under the daemon: twenty-fourth pass, found by its attacker of this pass's
/// fixes, when a file given was called "not given" and the gap not named).
fn begins_after(file: &std::path::Path, seq: u64, gap: bool) -> String {
    let before = seq.saturating_sub(1);
    if gap {
        format!(
            "{}:1 is the daemon's `audit.gap` record at seq {seq}: records 1..={before} are not in that file and no file given ends where it continues, so records before it were lost (the file was cut under the daemon) or are in a file not given; its evidence begins at that line,",
            file.display()
        )
    } else {
        format!(
            "{} begins at seq {seq} (records 1..={before} are in an earlier file of the log, not given)",
            file.display()
        )
    }
}

/// Whether `other` is a file `empty` was moved to: in the same directory, named `empty`'s name
/// then `.` and more (a rotated file, compressed or not).
fn moved_file_of(empty: &std::path::Path, other: &std::path::Path) -> bool {
    let resolved = |p: &std::path::Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
    let (empty, other) = (resolved(empty), resolved(other));
    let (Some(name), Some(moved)) = (empty.file_name(), other.file_name()) else {
        return false;
    };
    let (name, moved) = (name.as_encoded_bytes(), moved.as_encoded_bytes());
    empty.parent() == other.parent()
        && moved.len() > name.len() + 1
        && moved.starts_with(name)
        && moved[name.len()] == b'.'
}

/// `1024` as `1,024`.
fn grouped(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, d) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(d);
    }
    out
}

/// What [`chains`] finds: where each chain of files begins (its first file and that file's
/// earliest record), the latest change of policy with what the daemon did there, and the policy
/// each chain's daemon served last.
struct Chains {
    begins: Vec<(OffsetDateTime, PathBuf)>,
    change: Option<(At, Change)>,
    /// Per chain whose last load records a policy digest: that load and the digest (the policy
    /// its daemon served from then on).
    serving: Vec<(At, String)>,
    /// Per chain whose first file is a later segment (it begins at `seq` > 1, with an
    /// `audit.rotate` or `audit.gap` record) and none of whose files holds an allowed
    /// `vault.load`: that file and its first `seq`. What its daemon served is in a file not
    /// given.
    /// Whether that file begins with an `audit.gap` record ([`begins_after`]).
    unknown: Vec<(PathBuf, u64, bool)>,
    /// Per file: whether its chain's last load names a policy digest (so that, when the logs
    /// are judged, the policy linted or one of its shares is what it served).
    served_digest: Vec<bool>,
    /// Per chain: its files, in order.
    members: Vec<Vec<usize>>,
}

/// What the daemon did where the window may be cut, for the note: the verb, and what follows
/// the place.
type Change = (&'static str, &'static str);
const ANOTHER: Change = ("loaded another policy", "");

/// Put the files in their chains (a later segment follows the file whose last line its first
/// line continues; any order on the command line) and return where each chain begins (its
/// first file's earliest record) and the latest point where the daemon may have changed its
/// policy, with what it did there:
/// - a `vault.load` of another policy than the load before it in the chain;
/// - the first `vault.load` of a chain whose first file is a later segment (what was served
///   before it is in a file not given);
/// - in a file with no `vault.load` record, its last `reload`.
///
/// A chain whose first file is a later segment and that holds no `vault.load` at all says
/// nothing of what was served: [`Chains::unknown`].
fn chains(logs: &[PathBuf], facts: &[FileFacts]) -> Chains {
    // Where each file ends (its last line's hash and `seq`), the first file so ending first;
    // then each file's predecessor and successor, in linear time for any number of files.
    let mut ends: HashMap<(&str, u64), usize> = HashMap::default();
    for (i, f) in facts.iter().enumerate() {
        ends.entry((f.head.as_str(), f.last_seq)).or_insert(i);
    }
    let preds: Vec<Option<usize>> = facts
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let c = f.continues.as_deref()?;
            let j = *ends.get(&(c, f.first_seq.checked_sub(1)?))?;
            (j != i).then_some(j)
        })
        .collect();
    let mut next: HashMap<usize, usize> = HashMap::default();
    for (i, p) in preds.iter().enumerate() {
        if let Some(p) = p {
            next.entry(*p).or_insert(i);
        }
    }
    let mut begins = Vec::new();
    let mut serving = Vec::new();
    let mut unknown = Vec::new();
    let mut served_digest = vec![false; facts.len()];
    let mut chained = Vec::new();
    let mut change: Option<(At, Change)> = None;
    let mut note = |at: &At, what: Change| {
        if change.as_ref().is_none_or(|(c, _)| at.0 > c.0) {
            change = Some((at.clone(), what));
        }
    };
    for root in (0..facts.len()).filter(|&i| preds[i].is_none()) {
        if let Some(t) = facts[root].first {
            begins.push((t, logs[root].clone()));
        }
        // The chain's files in order.
        let mut served: Option<Loaded> = None;
        let mut last_load: Option<&(At, Loaded)> = None;
        let mut at = Some(root);
        let mut steps = 0;
        let mut members = Vec::new();
        while let Some(i) = at {
            members.push(i);
            let f = &facts[i];
            if let Some((first_at, loaded)) = &f.first_load {
                match &served {
                    Some(s) if loaded.same_as(s) => {}
                    Some(_) => note(first_at, ANOTHER),
                    // The very beginning of a log: nothing was served before its first load.
                    None if i == root && f.first_seq <= 1 => {}
                    None if i == root && f.begins_with_gap => note(
                        first_at,
                        (
                            "loaded a policy",
                            "; what it served before is not known: its file begins with the daemon's `audit.gap` record (at line 1: records before it were lost, or are in a file not given)",
                        ),
                    ),
                    None if i == root => note(
                        first_at,
                        (
                            "loaded a policy",
                            "; what it served before is in an earlier file of the log, not given",
                        ),
                    ),
                    // Earlier files of the chain hold records but no load (an older daemon).
                    None => note(
                        first_at,
                        (
                            "loaded a policy",
                            "; the log does not say what it served before",
                        ),
                    ),
                }
            }
            if let Some(c) = &f.last_change {
                note(c, ANOTHER);
            }
            if let Some(last) = &f.last_load {
                served = Some(last.1.clone());
                last_load = Some(last);
            } else if let Some(r) = &f.last_reload {
                note(r, ("reloaded", ""));
            }
            steps += 1;
            at = next.get(&i).copied().filter(|_| steps < facts.len());
        }
        match last_load {
            Some((at, Loaded::Policy(digest))) => {
                serving.push((at.clone(), digest.clone()));
                for &i in &members {
                    served_digest[i] = true;
                }
            }
            Some(_) => {}
            // A file that holds records and begins after the log's first record: the load that
            // says what was served is in an earlier file. (One that begins at seq 1 without a
            // load was written by a daemon before `vault.load` records, judged as it was.)
            None if facts[root].first_seq > 1 => {
                unknown.push((
                    logs[root].clone(),
                    facts[root].first_seq,
                    facts[root].begins_with_gap,
                ));
            }
            None => {}
        }
        chained.push(members);
    }
    Chains {
        begins,
        change,
        serving,
        unknown,
        served_digest,
        members: chained,
    }
}

/// What the logs' daemons served, after each one's last load: `Ok(None)` when one served
/// `policy` itself or named no digest (every task can be judged), `Ok(Some(locations))` when
/// each served one of its locations' shares (a checkpoint's bundle holds its location's
/// subset, [`Policy::location_subset_toml`]), and `Err(why)` when one served another policy.
/// `chains`: how many chains of files there are ([`Chains::begins`]). The shares are rendered
/// only when a digest is not the whole policy's.
fn served_by_all(
    policy: &Policy,
    serving: &[(At, String)],
    chains: usize,
) -> Result<Option<BTreeSet<String>>, String> {
    let whole = policy.digest();
    let mut shares: Option<Vec<(String, &str)>> = None;
    let mut locations = BTreeSet::new();
    let mut all = serving.len() < chains;
    for ((time, file, line), digest) in serving {
        if *digest == whole {
            all = true;
            continue;
        }
        let shares = shares.get_or_insert_with(|| {
            policy
                .locations()
                .map(|(loc, _)| {
                    (
                        crate::fleet::bundle::digest(policy.location_subset_toml(loc).as_bytes()),
                        loc,
                    )
                })
                .collect()
        });
        match shares.iter().find(|(d, _)| d == digest) {
            Some((_, loc)) => {
                locations.insert((*loc).to_owned());
            }
            None => {
                return Err(format!(
                    "the daemon of {} serves another policy than {} (its last load, at {} ({}:{line}), has the policy {}; {} is {whole}{})",
                    file.display(),
                    policy.path(),
                    fmt(*time),
                    file.display(),
                    digest,
                    policy.path(),
                    if shares.is_empty() { "" } else { ", or one of its locations' shares" }
                ))
            }
        }
    }
    Ok((!all).then_some(locations))
}

fn fmt(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `30d`, `12h`, `2w`: the window for `--since`; the message of a refusal names what is
/// wrong (not a duration, or too large, with the largest accepted), not the value, worded as
/// the policy parser words a duration it refuses.
pub fn parse_since(s: &str) -> Result<time::Duration, String> {
    crate::policy::parse_duration(s).map_err(|e| e.to_string())
}

/// The files given as `--audit`, checked to exist (for a clear error before any work).
pub fn check_paths(logs: &[PathBuf]) -> Result<(), UsageError> {
    for f in logs {
        if let Err(e) = std::fs::metadata(f) {
            return Err(UsageError::Read {
                file: f.clone(),
                why: e.to_string(),
            });
        }
    }
    Ok(())
}
