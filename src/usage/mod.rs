//! Usage evidence from audit logs, for the lint's four usage rules
//! (`scopevault lint POLICY --audit FILE… [--since 30d]`, docs/lint-rules.md).
//!
//! Each log is first checked with the audit module's public [`verify`](crate::audit::verify): a broken or edited
//! chain is an error naming the file and the line, and nothing of that log counts. Then the
//! verified lines (no more than `verify` counted, so lines appended meanwhile are left out) are
//! streamed once, line by line, keeping only what the rules ask about: which declared
//! credentials were fetched, for which declared task, by which uid/gid. Memory follows the
//! policy's size, not the number of records. Only the line format of docs/audit.md is relied
//! on; members this reader does not know are ignored, as that document requires.
//!
//! Evidence: a record with `op` `fetch` and `decision` `allow` names the task and the
//! credential handed out (one record per credential) and the peer's uid and gid.
//!
//! Too little evidence: a `reload` record (`op` `reload`, `decision` `allow`) means the daemon
//! may have loaded a different policy then, with credentials or tasks that did not exist
//! before. The window judged is therefore cut to start at the last such record, and when the
//! logs begin after the window's start, at their first record. If that cut leaves less than
//! the window asked for, the usage rules report nothing ([`Evidence::judged`] is false) and
//! [`Evidence::note`] says why and what to do: a credential or task added after the window
//! began is never flagged for not having been fetched yet.

use std::collections::BTreeSet;
use std::path::PathBuf;

use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};
use time::OffsetDateTime;

use crate::audit::verify_each;
use crate::policy::Policy;

/// Why the audit logs could not be used: the CLI exits 2 with this message.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// A log could not be read.
    #[error("{file}: cannot read the audit log: {why}")]
    Read {
        /// The log.
        file: PathBuf,
        /// The I/O error.
        why: String,
    },
    /// A log's hash chain is broken, or a line is not a record.
    #[error("{file}:{line}: the audit log does not verify: {why}; it cannot serve as evidence (run `scopevault audit verify --audit {file}`)")]
    Broken {
        /// The log.
        file: PathBuf,
        /// 1-based line of the first bad line.
        line: u64,
        /// What is wrong.
        why: String,
    },
}

/// What the audit logs say about the policy's credentials, tasks and runners in the window.
#[derive(Debug, Clone, Default)]
pub struct Evidence {
    /// Start of the window judged (after cutting at reloads and the logs' beginning).
    pub start: Option<OffsetDateTime>,
    /// The time of the last record read.
    pub end: Option<OffsetDateTime>,
    /// Records read in the window (every op).
    pub records: u64,
    /// Allowed fetches in the window naming declared names.
    pub fetches: u64,
    /// Whether the evidence covers the whole window asked for: only then do the usage rules
    /// report anything.
    pub judged: bool,
    /// Why the rules did not judge (or a remark about the evidence), for stderr.
    pub note: Option<String>,
    creds: HashSet<u32>,
    tasks: HashSet<u32>,
    pairs: HashSet<(u32, u32)>,
    /// Per task: the (uid, gid) pairs that fetched for it.
    peers: HashMap<u32, BTreeSet<(u32, u32)>>,
    task_ix: HashMap<String, u32>,
    cred_ix: HashMap<String, u32>,
}

impl Evidence {
    /// Whether any task fetched credential `c` in the window.
    pub fn credential_fetched(&self, c: &str) -> bool {
        self.cred_ix.get(c).is_some_and(|i| self.creds.contains(i))
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
            .or_else(|| crate::sys::user_uid(user))?;
        Some(self.peers_of(t).any(|(u, _)| u == uid))
    }

    /// Whether a member of runner group `group` (a name or a numeric gid; primary group as
    /// logged, or supplementary as this machine's group database says) fetched for task `t`;
    /// `None` when the name is not a group on this machine.
    pub fn group_seen(&self, t: &str, group: &str) -> Option<bool> {
        let gid = group
            .parse::<u32>()
            .ok()
            .or_else(|| crate::sys::group_gid(group))?;
        Some(
            self.peers_of(t)
                .any(|(u, g)| g == gid || crate::sys::user_groups(u).contains(&gid)),
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

/// Read the evidence for `policy` from `logs`. `since`: the window is the last `since` before
/// `now`; without it, everything the logs hold.
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
    let window_start = since.map(|d| now - d);
    // The earliest record of all logs, and the last reload, decide how much the window holds.
    let mut first: Option<OffsetDateTime> = None;
    let mut last_reload: Option<(OffsetDateTime, PathBuf, u64)> = None;
    // Fetches are kept with their time until the cut is known: as (time, task, cred, uid, gid).
    // Only distinct (task, cred, uid, gid) matter, with the latest time of each, so this stays
    // as small as the policy's pairs × runners, whatever the number of records.
    let mut latest: HashMap<(u32, u32, u32, u32), OffsetDateTime> = HashMap::default();
    for file in logs {
        // One read of each log: the chain accepts a record, then it is counted here.
        let report = verify_each(file, &mut |no, rec| {
            let (Some(time), Some(op), Some(decision)) = (&rec.time, &rec.op, &rec.decision) else {
                return Err("not an audit record (no string `time`, `op` or `decision`)".to_owned());
            };
            let time = OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339)
                .map_err(|e| format!("`time` is not RFC 3339 ({e})"))?;
            first = Some(first.map_or(time, |f| f.min(time)));
            if window_start.is_some_and(|w| time < w) {
                return Ok(());
            }
            ev.records += 1;
            ev.end = Some(ev.end.map_or(time, |e| e.max(time)));
            if decision != "allow" {
                return Ok(());
            }
            match &**op {
                "reload" if last_reload.as_ref().is_none_or(|(t, _, _)| time >= *t) => {
                    last_reload = Some((time, file.clone(), no));
                }
                "fetch" => {
                    let (Some(t), Some(c)) = (rec.task.as_deref(), rec.credential.as_deref())
                    else {
                        return Ok(());
                    };
                    // Undeclared names are logged as HMACs: they match nothing here.
                    let (Some(&t), Some(&c)) = (ev.task_ix.get(t), ev.cred_ix.get(c)) else {
                        return Ok(());
                    };
                    let (uid, gid) = rec.peer.map_or((u32::MAX, u32::MAX), |p| (p.uid, p.gid));
                    let e = latest.entry((t, c, uid, gid)).or_insert(time);
                    *e = (*e).max(time);
                }
                _ => {}
            }
            Ok(())
        })
        .map_err(|e| UsageError::Read {
            file: file.clone(),
            why: e.to_string(),
        })?;
        if let Some(bad) = report.first_bad {
            return Err(UsageError::Broken {
                file: file.clone(),
                line: bad.line,
                why: bad.why,
            });
        }
    }
    // The cut: the window starts at the latest of its asked start, the logs' first record and
    // the last reload.
    let mut start = window_start.or(first);
    let mut why_cut: Option<String> = None;
    if let (Some(w), Some(f)) = (window_start, first) {
        if f > w {
            start = Some(f);
            why_cut = Some(format!("the logs begin at {}", fmt(f)));
        }
    }
    if let Some((r, file, line)) = &last_reload {
        if start.is_none_or(|s| *r > s) {
            start = Some(*r);
            why_cut = Some(format!(
                "the daemon reloaded at {} ({}:{line}), and may then have loaded credentials or tasks that did not exist before",
                fmt(*r),
                file.display()
            ));
        }
    }
    if first.is_none() {
        why_cut = Some("the logs hold no record".into());
    }
    ev.start = start;
    for ((t, c, uid, gid), at) in latest {
        if start.is_some_and(|s| at < s) {
            continue;
        }
        ev.fetches += 1;
        ev.creds.insert(c);
        ev.tasks.insert(t);
        ev.pairs.insert((t, c));
        ev.peers.entry(t).or_default().insert((uid, gid));
    }
    match why_cut {
        None => ev.judged = true,
        Some(why) => {
            ev.judged = false;
            ev.note = Some(format!(
                "usage rules not applied: {why}, so a credential or task added since could not have been fetched yet; {}",
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
    Ok(ev)
}

fn fmt(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// `30d`, `12h`, `90m`, `2w`: the window for `--since`.
pub fn parse_since(s: &str) -> Option<time::Duration> {
    crate::policy::parse_duration(s)
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
