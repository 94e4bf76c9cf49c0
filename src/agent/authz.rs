//! Who may do what. Every rule takes the kernel's [`PeerIdentity`], never what a client says.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::RwLock;

use super::peer::PeerIdentity;
use super::state::Runners;
use crate::accounts::{Databases, Unresolved};

/// Who may do what, besides the task runners named in the policy: as `serve` was given it.
/// The names are resolved by [`Access`], again at each change of the user and group
/// databases.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// The daemon's own uid (an admin).
    pub daemon_uid: u32,
    /// `--admin-group`: members of this group (primary or supplementary) are admins. A name,
    /// or a gid (a number is taken as it is).
    pub admin_group: Option<String>,
    /// `--scheduler`: these users may ask for tickets. Names, or uids (numbers are taken as
    /// they are).
    pub schedulers: Vec<String>,
}

/// No gid: `--admin-group` not given, or its name resolves to no group now.
const NO_GID: u64 = u64::MAX;

/// [`AccessConfig`] with its names resolved against `/etc/passwd` and `/etc/group` as they
/// are now: at start, and again at each change of either file and at each `reload`
/// ([`Access::resolve`]), as the policy's names are. Until the twenty-ninth pass they were
/// resolved once, at start: after `groupdel` of the admin group and `groupadd` of another
/// group given its gid, that group's members were admins until a restart; after `userdel` of
/// a scheduler and `useradd` of another user given its uid, that user got its tickets.
pub struct Access {
    config: AccessConfig,
    /// The admin group's gid, or [`NO_GID`]: read by every decision that asks whether a peer
    /// is an admin, so one atomic load, no lock.
    admin_gid: AtomicU64,
    /// The schedulers' uids (read by `ticket` requests and redemptions only).
    scheduler_uids: RwLock<Vec<u32>>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("config", &self.config)
            .field("admin_gid", &self.admin_gid())
            .finish_non_exhaustive()
    }
}

impl Access {
    /// `config`'s names resolved against the databases as they are now (a name that does not
    /// resolve matches nobody; `serve` refuses to start with one).
    pub fn new(config: AccessConfig) -> Access {
        let access = Access {
            config,
            admin_gid: AtomicU64::new(NO_GID),
            scheduler_uids: RwLock::new(Vec::new()),
        };
        access.resolve_in(&Databases::read());
        access
    }

    /// Resolve the names again, against the databases as they are now, and put the ids in
    /// place; each name that resolves to nobody is said in the daemon's log, as a policy
    /// name is.
    pub fn resolve(&self) {
        for line in self.resolve_in(&Databases::read()) {
            crate::diag!(
                "scopevault: warning: {}",
                crate::text::escape_for_terminal(&line)
            );
        }
    }

    /// [`Access::resolve`] against `db`; returns a line for each name that resolves to
    /// nobody.
    fn resolve_in(&self, db: &Databases) -> Vec<String> {
        let mut unresolved = Vec::new();
        let mut why = |option: &str, name: &str, e: Unresolved, what: &str| {
            let name = crate::text::escape_for_terminal(name);
            unresolved.push(match e {
                Unresolved::Missing { db } => {
                    format!("{option} `{name}` does not exist on this host ({db}): {what}")
                }
                e => format!("{option} `{name}`: {e}: {what}"),
            });
        };
        let gid = self.config.admin_group.as_deref().and_then(|g| {
            g.parse::<u32>().ok().or_else(|| match db.resolve_group(g) {
                Ok(gid) => Some(gid),
                Err(e) => {
                    why("--admin-group", g, e, "no one is an admin through it");
                    None
                }
            })
        });
        let uids: Vec<u32> = self
            .config
            .schedulers
            .iter()
            .filter_map(|u| {
                u.parse::<u32>().ok().or_else(|| match db.resolve_user(u) {
                    Ok(uid) => Some(uid),
                    Err(e) => {
                        why("--scheduler", u, e, "it matches nobody");
                        None
                    }
                })
            })
            .collect();
        self.admin_gid
            .store(gid.map_or(NO_GID, u64::from), Ordering::Release);
        *self
            .scheduler_uids
            .write()
            .unwrap_or_else(|p| p.into_inner()) = uids;
        unresolved
    }

    /// The admin group's gid, as last resolved.
    fn admin_gid(&self) -> Option<u32> {
        u32::try_from(self.admin_gid.load(Ordering::Acquire)).ok()
    }

    /// Whether `uid` is a `--scheduler`, as last resolved.
    pub(crate) fn is_scheduler(&self, uid: u32) -> bool {
        self.scheduler_uids
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(&uid)
    }

    /// Root, the daemon's own uid, or a member of the admin group.
    pub fn is_admin(&self, peer: &PeerIdentity) -> bool {
        peer.uid == 0
            || peer.uid == self.config.daemon_uid
            || self.admin_gid().is_some_and(|g| peer.in_group(g))
    }

    /// An admin or a configured scheduler: may ask for tickets at all.
    pub fn may_issue_tickets(&self, peer: &PeerIdentity) -> bool {
        self.is_admin(peer) || self.is_scheduler(peer.uid)
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
            || (self.is_scheduler(peer.uid)
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
        let a = Access::new(AccessConfig {
            daemon_uid: 999,
            admin_group: Some("50".into()),
            schedulers: vec!["1500".into()],
        });
        assert!(a.is_admin(&peer(0, 0, vec![])));
        assert!(a.is_admin(&peer(999, 999, vec![])));
        assert!(a.is_admin(&peer(1000, 1000, vec![50])));
        assert!(!a.is_admin(&peer(1000, 1000, vec![])));
        assert!(a.may_issue_tickets(&peer(1500, 1500, vec![])));
        assert!(!a.may_issue_tickets(&peer(1501, 1501, vec![])));
    }

    #[test]
    fn a_scheduler_gets_tickets_only_for_tasks_that_name_it_and_admins_for_all() {
        let a = Access::new(AccessConfig {
            daemon_uid: 999,
            admin_group: Some("50".into()),
            schedulers: vec!["1500".into(), "1600".into()],
        });
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

    /// Twenty-ninth pass: `--admin-group` and `--scheduler` names are resolved again, the
    /// ids following the databases: a name gone matches nobody (said once per resolution),
    /// a name given another id takes it, numbers stay as they are.
    #[test]
    fn admin_group_and_scheduler_names_follow_the_databases() {
        let a = Access::new(AccessConfig {
            daemon_uid: 999,
            admin_group: Some("svadmins".into()),
            schedulers: vec!["svsched".into(), "1600".into()],
        });
        let db = |group: &str, passwd: &str| Databases::of(passwd.into(), group.into());
        let passwd = "svsched:x:1500:1500::/h:/bin/sh\n";
        assert!(a.resolve_in(&db("svadmins:x:50:\n", passwd)).is_empty());
        let member_of = |gid| peer(1000, 1000, vec![gid]);
        assert!(a.is_admin(&member_of(50)));
        assert!(a.may_issue_ticket_for(&peer(1500, 1500, vec![]), Some(&[1500])));
        // The group deleted and its gid given to another; the scheduler deleted and its uid
        // given to another user.
        let lines = a.resolve_in(&db("others:x:50:\n", "next:x:1500:1500::/h:/bin/sh\n"));
        assert!(
            !a.is_admin(&member_of(50)),
            "the gid is another group's now"
        );
        assert!(!a.may_issue_tickets(&peer(1500, 1500, vec![])));
        assert!(
            a.may_issue_tickets(&peer(1600, 1600, vec![])),
            "a uid stays"
        );
        assert_eq!(
            lines,
            [
                "--admin-group `svadmins` does not exist on this host (/etc/group): no one is an admin through it",
                "--scheduler `svsched` does not exist on this host (/etc/passwd): it matches nobody",
            ]
        );
        // Made again with other ids.
        a.resolve_in(&db(
            "others:x:50:\nsvadmins:x:60:\n",
            "svsched:x:1700:1700::/h:/bin/sh\n",
        ));
        assert!(a.is_admin(&member_of(60)) && !a.is_admin(&member_of(50)));
        assert!(a.may_issue_ticket_for(&peer(1700, 1700, vec![]), Some(&[1700])));
        assert!(!a.may_issue_tickets(&peer(1500, 1500, vec![])));
    }
}
