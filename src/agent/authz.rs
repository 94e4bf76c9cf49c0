//! Who may do what. Every rule takes the kernel's [`PeerIdentity`], never what a client says.

use super::peer::PeerIdentity;
use super::state::Runners;

/// Who may do what, besides the task runners named in the policy.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// The daemon's own uid (an admin).
    pub daemon_uid: u32,
    /// Members of this group (primary or supplementary) are admins.
    pub admin_gid: Option<u32>,
    /// These uids may ask for tickets.
    pub scheduler_uids: Vec<u32>,
}

impl AccessConfig {
    /// Root, the daemon's own uid, or a member of the admin group.
    pub fn is_admin(&self, peer: &PeerIdentity) -> bool {
        peer.uid == 0
            || peer.uid == self.daemon_uid
            || self.admin_gid.is_some_and(|g| peer.in_group(g))
    }

    /// An admin or a configured scheduler: may ask for tickets at all.
    pub fn may_issue_tickets(&self, peer: &PeerIdentity) -> bool {
        self.is_admin(peer) || self.scheduler_uids.contains(&peer.uid)
    }

    /// May ask for a ticket for one task whose `schedulers` resolved to `task_schedulers`
    /// (`None`: the task has no `schedulers`): an admin always; a configured scheduler only
    /// when the task names its uid. A scheduler is never limited by group: tickets are the
    /// right to any of the task's secrets, so each scheduler user is named.
    pub fn may_issue_ticket_for(
        &self,
        peer: &PeerIdentity,
        task_schedulers: Option<&[u32]>,
    ) -> bool {
        self.is_admin(peer)
            || (self.scheduler_uids.contains(&peer.uid)
                && task_schedulers.is_some_and(|s| s.contains(&peer.uid)))
    }
}

/// The peer's uid is a runner, or its primary or supplementary group is a runner group.
/// Root is not a runner unless named: admins manage the vault, they do not run checks.
pub(crate) fn is_runner(runners: Option<&Runners>, peer: &PeerIdentity) -> bool {
    let Some(r) = runners else {
        return false;
    };
    r.uids.contains(&peer.uid) || r.gids.iter().any(|&g| peer.in_group(g))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer(uid: u32, gid: u32, groups: Vec<u32>) -> PeerIdentity {
        PeerIdentity::with_groups(uid, gid, 1, groups)
    }

    #[test]
    fn runners_match_uid_primary_and_supplementary_groups() {
        let r = Runners {
            uids: vec![1001],
            gids: vec![500],
        };
        assert!(is_runner(Some(&r), &peer(1001, 1001, vec![])));
        assert!(is_runner(Some(&r), &peer(1002, 500, vec![])));
        assert!(is_runner(Some(&r), &peer(1003, 1003, vec![7, 500])));
        assert!(!is_runner(Some(&r), &peer(1004, 1004, vec![7])));
        assert!(
            !is_runner(Some(&r), &peer(0, 0, vec![])),
            "root is not a runner by default"
        );
        assert!(!is_runner(None, &peer(1001, 1001, vec![])));
    }

    #[test]
    fn admins_are_root_the_daemon_user_and_the_admin_group() {
        let a = AccessConfig {
            daemon_uid: 999,
            admin_gid: Some(50),
            scheduler_uids: vec![1500],
        };
        assert!(a.is_admin(&peer(0, 0, vec![])));
        assert!(a.is_admin(&peer(999, 999, vec![])));
        assert!(a.is_admin(&peer(1000, 1000, vec![50])));
        assert!(!a.is_admin(&peer(1000, 1000, vec![])));
        assert!(a.may_issue_tickets(&peer(1500, 1500, vec![])));
        assert!(!a.may_issue_tickets(&peer(1501, 1501, vec![])));
    }

    #[test]
    fn a_scheduler_gets_tickets_only_for_tasks_that_name_it_and_admins_for_all() {
        let a = AccessConfig {
            daemon_uid: 999,
            admin_gid: Some(50),
            scheduler_uids: vec![1500, 1600],
        };
        let sched = peer(1500, 1500, vec![]);
        assert!(a.may_issue_ticket_for(&sched, Some(&[1500])));
        assert!(a.may_issue_ticket_for(&sched, Some(&[7, 1500])));
        assert!(
            !a.may_issue_ticket_for(&sched, Some(&[1600])),
            "another scheduler's task"
        );
        assert!(!a.may_issue_ticket_for(&sched, Some(&[])));
        assert!(
            !a.may_issue_ticket_for(&sched, None),
            "a task without `schedulers`"
        );
        // Named by the task but not started with `--scheduler`: the policy alone is not enough.
        assert!(!a.may_issue_ticket_for(&peer(1700, 1700, vec![]), Some(&[1700])));
        // The scheduler's group is not the scheduler.
        assert!(!a.may_issue_ticket_for(&peer(1701, 1500, vec![1500]), Some(&[1500])));
        for admin in [
            peer(0, 0, vec![]),
            peer(999, 999, vec![]),
            peer(1000, 1000, vec![50]),
        ] {
            assert!(a.may_issue_ticket_for(&admin, None));
            assert!(a.may_issue_ticket_for(&admin, Some(&[])));
        }
    }
}
