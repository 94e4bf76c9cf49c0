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

    /// An admin or a configured scheduler.
    pub fn may_issue_tickets(&self, peer: &PeerIdentity) -> bool {
        self.is_admin(peer) || self.scheduler_uids.contains(&peer.uid)
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
}
