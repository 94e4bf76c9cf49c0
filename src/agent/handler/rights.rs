//! A connection's rights decided again after a change of the user and group databases, of the
//! names resolved in them or of the loaded policy ([`PeerIdentity::follow`]), and the audit
//! record of a difference: `peer.rights` (docs/audit.md).

use super::Handler;
use crate::agent::peer::{PeerIdentity, Rights};
use crate::audit::{AuditOp, AuditRecord, Decision, Ticket as AuditTicket};

/// Most gids (and task names) a `peer.rights` record lists as lost, and as gained
/// (docs/audit.md, "Growth").
const LISTED_GIDS: usize = 16;

impl Handler {
    /// At the start of each request: decide the peer's rights again if the databases'
    /// generation moved on since they were last decided (one atomic comparison otherwise), and
    /// queue one `peer.rights` record when they differ from before, ahead of the request's own
    /// records. Until the twenty-ninth pass nothing in the log said a connection's rights had
    /// changed: an `allow` and then a `deny` for the same connection, and nothing between them.
    pub(super) fn follow_rights(&self, peer: &PeerIdentity, queued: &mut Vec<AuditTicket>) {
        let Some((before, now)) = peer.follow(|p| self.rights_of(p)) else {
            return;
        };
        let (reason, lost) = changes(&before, &now);
        // The daemon's own record: never rate-limited, nor charged to the peer's budget.
        queued.push(self.audit.enqueue(AuditRecord {
            peer: Some(peer.audit_info()),
            reason: Some(&reason),
            ..AuditRecord::new(
                AuditOp::PeerRights,
                if lost {
                    Decision::Deny
                } else {
                    Decision::Allow
                },
            )
        }));
    }

    /// What `peer` may do now, as far as membership decides it.
    fn rights_of(&self, peer: &PeerIdentity) -> Rights {
        Rights {
            admin: self.access.is_admin(peer),
            scheduler: self.access.is_scheduler(peer.uid),
            runner: self.state.with(|v| v.map(|o| o.index.runner_rights(peer))),
        }
    }
}

/// The record's reason — what changed, `admin lost`, `runner groups gained: 2400`, … (ids and
/// fixed words only) — and whether anything was lost.
fn changes(before: &Rights, now: &Rights) -> (String, bool) {
    let mut said: Vec<String> = Vec::new();
    let mut lost = false;
    let mut flag = |what: &str, was: bool, is: bool| {
        if was != is {
            lost |= was;
            said.push(format!("{what} {}", if is { "gained" } else { "lost" }));
        }
    };
    flag("admin", before.admin, now.admin);
    flag("scheduler", before.scheduler, now.scheduler);
    if let (Some(b), Some(n)) = (&before.runner, &now.runner) {
        flag("runner user", b.user, n.user);
        let gone: Vec<u32> = b
            .groups
            .iter()
            .filter(|g| !n.groups.contains(g))
            .copied()
            .collect();
        let new: Vec<u32> = n
            .groups
            .iter()
            .filter(|g| !b.groups.contains(g))
            .copied()
            .collect();
        if !gone.is_empty() {
            lost = true;
            said.push(format!("runner groups lost: {}", listed(&gone)));
        }
        if !new.is_empty() {
            said.push(format!("runner groups gained: {}", listed(&new)));
        }
        // The tasks it runs, by user or group: a move from one task's runners to another's
        // changes neither the flag nor the groups (twenty-ninth pass, found by the re-attacker
        // of this pass's fixes). Task names are the policy's, not secrets.
        let gone: Vec<&str> = b
            .tasks
            .iter()
            .filter(|t| n.tasks.binary_search(t).is_err())
            .map(String::as_str)
            .collect();
        let new: Vec<&str> = n
            .tasks
            .iter()
            .filter(|t| b.tasks.binary_search(t).is_err())
            .map(String::as_str)
            .collect();
        if !gone.is_empty() {
            lost = true;
            said.push(format!("runner tasks lost: {}", listed(&gone)));
        }
        if !new.is_empty() {
            said.push(format!("runner tasks gained: {}", listed(&new)));
        }
    }
    (
        format!(
            "the connection's rights changed with the user and group databases, the names resolved in them or the loaded policy: {}",
            said.join("; ")
        ),
        lost,
    )
}

/// `items` (gids or task names) comma-separated, the first [`LISTED_GIDS`] of them, then
/// `… and N more`.
fn listed<T: std::fmt::Display>(items: &[T]) -> String {
    let mut out: Vec<String> = items
        .iter()
        .take(LISTED_GIDS)
        .map(ToString::to_string)
        .collect();
    if items.len() > LISTED_GIDS {
        out.push(format!("… and {} more", items.len() - LISTED_GIDS));
    }
    out.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::peer::RunnerRights;

    fn rights(admin: bool, groups: &[u32]) -> Rights {
        Rights {
            admin,
            scheduler: false,
            runner: Some(RunnerRights {
                user: false,
                groups: groups.to_vec(),
                tasks: vec![],
            }),
        }
    }

    #[test]
    fn a_change_names_what_was_lost_and_gained_and_is_bounded() {
        let (reason, lost) = changes(&rights(true, &[2400, 2500]), &rights(false, &[2500, 2600]));
        assert!(lost);
        assert!(
            reason.ends_with(": admin lost; runner groups lost: 2400; runner groups gained: 2600"),
            "{reason}"
        );
        let (reason, lost) = changes(&rights(false, &[]), &rights(true, &[]));
        assert!(!lost && reason.ends_with(": admin gained"), "{reason}");
        let many: Vec<u32> = (0..40).collect();
        let (reason, _) = changes(&rights(false, &many), &rights(false, &[]));
        assert!(reason.ends_with("14, 15, … and 24 more"), "{reason}");
        // A move from one task's runners to another's: no flag, no group, the tasks named.
        let runs = |tasks: &[&str]| Rights {
            runner: Some(RunnerRights {
                user: true,
                groups: vec![],
                tasks: tasks.iter().map(|t| t.to_string()).collect(),
            }),
            ..rights(false, &[])
        };
        let (reason, lost) = changes(&runs(&["a", "t1"]), &runs(&["a", "t2"]));
        assert!(lost);
        assert!(
            reason.ends_with(": runner tasks lost: t1; runner tasks gained: t2"),
            "{reason}"
        );
        let names: Vec<String> = (0..40).map(|i| format!("t{i:02}")).collect();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let (reason, lost) = changes(&runs(&[]), &runs(&names));
        assert!(
            !lost && reason.ends_with("t14, t15, … and 24 more"),
            "{reason}"
        );
        // Nothing is known of the runners while locked: nothing said of them.
        let locked = Rights {
            runner: None,
            ..rights(false, &[])
        };
        let (reason, lost) = changes(&rights(false, &[1]), &locked);
        assert!(!lost && reason.ends_with(": "), "{reason}");
    }
}
