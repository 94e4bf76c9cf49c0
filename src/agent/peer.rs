//! Who is on the other end of a connection, as the kernel says (SO_PEERCRED), never as the
//! client claims. The authoriser takes a [`PeerIdentity`], not loose integers.

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// The kernel's view of a connected peer, read once when the connection is accepted.
#[derive(Debug)]
pub struct PeerIdentity {
    /// Effective uid of the peer when it connected.
    pub uid: u32,
    /// Effective primary gid of the peer when it connected.
    pub gid: u32,
    /// Pid of the peer (informational: pids are reused; never authorise on it).
    pub pid: i32,
    /// Whether `gid` is a group the peer is in: a connected process's is.
    primary: Primary,
    /// Groups of the peer's user, from the databases, as last looked up.
    groups: Groups,
    /// The generation of the databases ([`crate::accounts::generation`]) at which this
    /// connection's rights were last decided ([`PeerIdentity::follow`]); [`NEVER`] before its
    /// first request.
    decided_at: AtomicU64,
    /// What this connection may do as last decided: compared with what it may do after a
    /// change, for the audit record of a difference.
    rights: Mutex<Option<Rights>>,
    exe: Option<crate::sys::ExeLink>,
}

/// No generation: the rights of a connection not yet asked anything were never decided.
const NEVER: u64 = u64::MAX;

/// What a connection may do, as far as membership decides it: what a change of `/etc/passwd`
/// or `/etc/group`, of the names `serve` was given or of the policy's runners can take away
/// or give. Compared before and after such a change, for the audit record that says the
/// connection's rights changed (twenty-ninth pass; docs/audit.md, `peer.rights`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Rights {
    /// An admin (root, the daemon's user, a member of `--admin-group`).
    pub(crate) admin: bool,
    /// A `--scheduler` user.
    pub(crate) scheduler: bool,
    /// What the loaded policy's runners give; `None` while the daemon holds no vault (then
    /// nothing is known of them, and nothing is compared).
    pub(crate) runner: Option<RunnerRights>,
}

impl Rights {
    /// Whether `now` says something other than `self` of what both know: the runners' rights
    /// are compared only when both were decided with a vault loaded. A connection first decided
    /// while locked learns its runner rights at the unlock: that is no change of its rights,
    /// and a `peer.rights` record saying nothing was written for it (twenty-ninth pass, the
    /// soak's audit count).
    fn differs_from(&self, now: &Rights) -> bool {
        self.admin != now.admin
            || self.scheduler != now.scheduler
            || matches!((&self.runner, &now.runner), (Some(b), Some(n)) if b != n)
    }
}

/// What the loaded policy's runners give a connection ([`Rights::runner`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RunnerRights {
    /// The uid is one of some task's `runners.users`.
    pub(crate) user: bool,
    /// The policy's runner groups the peer is in (its primary gid or one of its user's
    /// groups), ascending.
    pub(crate) groups: Vec<u32>,
    /// The names of the tasks it runs, by its uid or by one of those groups, ascending: a
    /// move from one task's runners to another's changes no flag and no group, and was no
    /// `peer.rights` record until the twenty-ninth pass (found by the re-attacker of this
    /// pass's fixes).
    pub(crate) tasks: Vec<String>,
}

impl PeerIdentity {
    /// Ask the kernel who is connected on `stream`. The executable is read now, when the
    /// connection is accepted, through a pidfd for the peer (`SO_PEERPIDFD`), so it is that
    /// process's and not a later one's with the same pid: a client that execs another binary
    /// after connecting is still recorded under the one that connected, and one that has
    /// already exited under none (issue 15.12; docs/audit.md, `peer.exe`).
    pub fn of(stream: &UnixStream) -> io::Result<PeerIdentity> {
        let cred = crate::sys::peer_credentials(stream)?;
        Ok(PeerIdentity {
            uid: cred.uid,
            gid: cred.gid,
            pid: cred.pid,
            primary: Primary::Kernel,
            groups: Groups::Followed {
                lookup: crate::accounts::user_groups,
                now: Mutex::new(None),
            },
            decided_at: AtomicU64::new(NEVER),
            rights: Mutex::new(None),
            exe: crate::sys::peer_exe(stream, &cred),
        })
    }

    /// A peer with known groups (tests).
    pub fn with_groups(uid: u32, gid: u32, pid: i32, groups: Vec<u32>) -> PeerIdentity {
        PeerIdentity {
            uid,
            gid,
            pid,
            primary: Primary::Kernel,
            groups: Groups::Fixed(groups.into()),
            decided_at: AtomicU64::new(NEVER),
            rights: Mutex::new(None),
            exe: None,
        }
    }

    /// A peer whose groups `lookup` answers, looked up again as the databases' generation
    /// moves on, as a connected peer's are (tests).
    #[cfg(test)]
    pub(crate) fn with_lookup(uid: u32, gid: u32, lookup: fn(u32) -> Vec<u32>) -> PeerIdentity {
        PeerIdentity {
            uid,
            gid,
            pid: 1,
            primary: Primary::Kernel,
            groups: Groups::Followed {
                lookup,
                now: Mutex::new(None),
            },
            decided_at: AtomicU64::new(NEVER),
            rights: Mutex::new(None),
            exe: None,
        }
    }

    /// Decide this connection's rights again if the databases' generation
    /// ([`crate::accounts::generation`]) moved on since they were last decided — a change of
    /// `/etc/passwd` or `/etc/group` or of the names resolved in them, a vault load, a
    /// `reload` — or were never decided: the user's groups are looked up again at their next
    /// need, and `decide` says what the connection may do now. Returns what it could do
    /// before and what it can now when they differ (never at the first decision: nothing
    /// changed then).
    ///
    /// The handler calls this at the start of each request, so that every decision of the
    /// request uses the membership of now: a user removed from a group loses its rights on
    /// connections already open within about a second, not when the connection closes
    /// (twenty-eighth pass, found by the outside attacker). When nothing changed it costs one
    /// atomic load and compare, and no lock.
    pub(crate) fn follow(
        &self,
        decide: impl FnOnce(&PeerIdentity) -> Rights,
    ) -> Option<(Rights, Rights)> {
        let generation = crate::accounts::generation();
        if self.decided_at.load(Ordering::Acquire) == generation {
            return None;
        }
        let mut rights = self.rights.lock().unwrap_or_else(|p| p.into_inner());
        // Another thread serving this connection (a worker running an admin's request) may
        // have decided meanwhile.
        if self.decided_at.load(Ordering::Acquire) == generation {
            return None;
        }
        // The generation was read before the lookup: a change during it moves the generation
        // past the one stored, and the next request decides again.
        if let Groups::Followed { now, .. } = &self.groups {
            *now.lock().unwrap_or_else(|p| p.into_inner()) = None;
        }
        let mut now = decide(self);
        if now.runner.is_none() {
            // Nothing is known of the runners while locked: what they gave is kept as it was,
            // and compared again once a vault is loaded.
            now.runner = rights.as_ref().and_then(|r| r.runner.clone());
        }
        self.decided_at.store(generation, Ordering::Release);
        match rights.replace(now.clone()) {
            Some(before) if before.differs_from(&now) => Some((before, now)),
            _ => None,
        }
    }

    /// The generation of the databases this connection's rights were last decided at
    /// ([`PeerIdentity::follow`]; `u64::MAX` if never): what a decision made on it since
    /// rests on, so what a ticket issued on it keeps.
    pub(crate) fn decided_at(&self) -> u64 {
        self.decided_at.load(Ordering::Acquire)
    }

    /// `f` of the user's groups as looked up since the connection's last decision
    /// ([`PeerIdentity::follow`]), or now if they were not needed since: under this peer's
    /// own lock (uncontended but for a worker), no file read but that first one.
    fn groups_now<R>(&self, f: impl FnOnce(&Arc<[u32]>) -> R) -> R {
        match &self.groups {
            Groups::Fixed(g) => f(g),
            Groups::Followed { lookup, now } => {
                let mut now = now.lock().unwrap_or_else(|p| p.into_inner());
                f(now.get_or_insert_with(|| lookup(self.uid).into()))
            }
        }
    }

    /// Who this peer is without its connection, for judging later what it was trusted with
    /// (a ticket's issuer, at the ticket's redemption): its uid, its kernel gid, and where its
    /// groups come from.
    pub(crate) fn detached(&self) -> Detached {
        Detached {
            uid: self.uid,
            gid: self.gid,
            groups: match &self.groups {
                Groups::Fixed(g) => Source::Fixed(g.clone()),
                Groups::Followed { lookup, .. } => Source::Lookup(*lookup),
            },
        }
    }

    /// True when the peer's primary gid or one of its user's groups (from the user and group
    /// databases, as looked up since the connection's last decision) is `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.kernel_gid() == Some(gid) || self.groups_now(|g| g.contains(&gid))
    }

    /// The peer's primary gid, then each group of its user (the groups
    /// [`PeerIdentity::in_group`] matches, as of the same look-up).
    pub fn all_groups(&self) -> impl Iterator<Item = u32> {
        let groups = self.groups_now(Arc::clone);
        self.kernel_gid()
            .into_iter()
            .chain((0..groups.len()).map(move |i| groups[i]))
    }

    /// The primary gid, when it counts ([`Primary::Kernel`]).
    fn kernel_gid(&self) -> Option<u32> {
        (self.primary == Primary::Kernel).then_some(self.gid)
    }

    /// This peer as the user and group databases alone say it is, with the groups looked up
    /// since its last decision ([`PeerIdentity::follow`]): its kernel gid does not count, its
    /// primary group is the one its `/etc/passwd` line gives (among those groups). What a
    /// ticket it is issued rests on once its process is gone ([`Detached::now`]), so a right
    /// this peer does not have so rests on its process's gid alone (a primary group the
    /// user's line no longer gives, a setgid program), and gets no ticket
    /// (`Refusal::RightOnProcessGid`).
    pub(crate) fn as_databases_say(&self) -> PeerIdentity {
        PeerIdentity {
            uid: self.uid,
            gid: self.gid,
            pid: self.pid,
            primary: Primary::Passwd,
            groups: Groups::Fixed(self.groups_now(Arc::clone)),
            decided_at: AtomicU64::new(NEVER),
            rights: Mutex::new(None),
            exe: None,
        }
    }

    /// The peer's executable as read at accept time, for the audit log (informational):
    /// `None` if it could not be confirmed to be the connected process's.
    pub fn exe(&self) -> Option<&str> {
        self.exe.as_deref()
    }

    /// Whether the peer's executable had been deleted when it was read (its path is then
    /// [`PeerIdentity::exe`] without the kernel's ` (deleted)`).
    pub fn exe_deleted(&self) -> bool {
        self.exe.as_ref().is_some_and(|e| e.deleted)
    }

    /// As the audit log records it.
    pub fn audit_info(&self) -> crate::audit::PeerInfo {
        crate::audit::PeerInfo {
            uid: self.uid,
            gid: self.gid,
            pid: (self.pid > 0).then_some(self.pid),
            exe: self.exe().map(|e| bounded_exe(e).to_owned()),
            exe_deleted: self.exe_deleted(),
            exe_truncated: self.exe().is_some_and(|e| bounded_exe(e).len() < e.len()),
        }
    }
}

/// Whether a peer's primary gid ([`PeerIdentity::gid`]) is a group it is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Primary {
    /// A connected process: its gid is the kernel's (`SO_PEERCRED`) and counts, whatever
    /// `/etc/passwd` says of its uid now (docs/operations.md, "A runner group that is the
    /// user's primary group").
    Kernel,
    /// A ticket's issuer judged at a redemption ([`Detached::now`]), or a peer as the
    /// databases alone say it is ([`PeerIdentity::as_databases_say`]): no process of it need
    /// hold the gid any more, so it does not count; the primary group is the one its uid's
    /// `/etc/passwd` line gives now, which its user's groups hold
    /// ([`crate::accounts::user_groups`]; none for a uid with no line, or an odd one).
    Passwd,
}

/// Where a peer's groups come from.
#[derive(Debug)]
enum Groups {
    /// Given (tests).
    Fixed(Arc<[u32]>),
    /// Looked up by uid: as looked up since the connection's last decision, if they were.
    Followed {
        lookup: fn(u32) -> Vec<u32>,
        now: Mutex<Option<Arc<[u32]>>>,
    },
}

/// A peer without its connection ([`PeerIdentity::detached`]): what a ticket keeps of its
/// issuer, so that its redemption can ask whether the issuer may still have it.
#[derive(Debug, Clone)]
pub(crate) struct Detached {
    uid: u32,
    /// The kernel gid of the process that asked: kept for the record, never judged by
    /// ([`Detached::now`]).
    gid: u32,
    groups: Source,
}

/// Where a [`Detached`] peer's groups come from.
#[derive(Debug, Clone)]
enum Source {
    Fixed(Arc<[u32]>),
    Lookup(fn(u32) -> Vec<u32>),
}

impl Detached {
    /// Its uid.
    pub(crate) fn uid(&self) -> u32 {
        self.uid
    }

    /// The issuer as the databases say it is now: the same uid, and its user's groups as
    /// they say now (looked up at the first need), its primary group among them as its uid's
    /// `/etc/passwd` line gives it now ([`Primary::Passwd`]). The kernel gid its process had
    /// when it asked does not count: a ticket outlives that process, and `usermod -g` then
    /// ending the user's processes, or `userdel`, takes a primary group's right away from
    /// its tickets too. Until the thirtieth pass it counted, and a ticket issued through an
    /// admin primary group redeemed until its ttl whatever was done to the user (found by
    /// the re-attacker of the twenty-ninth pass's fixes).
    pub(crate) fn now(&self) -> PeerIdentity {
        let groups = match &self.groups {
            Source::Fixed(g) => Groups::Fixed(g.clone()),
            Source::Lookup(lookup) => Groups::Followed {
                lookup: *lookup,
                now: Mutex::new(None),
            },
        };
        PeerIdentity {
            uid: self.uid,
            gid: self.gid,
            pid: 0,
            primary: Primary::Passwd,
            groups,
            decided_at: AtomicU64::new(NEVER),
            rights: Mutex::new(None),
            exe: None,
        }
    }
}

/// Longest `exe` the audit log records, in bytes: the path of the peer's binary is the
/// peer's choice, and a denial record must stay small (docs/audit.md, "Growth").
pub const MAX_EXE: usize = 256;

/// `exe` (escaped: [`crate::sys::ExeLink`]) cut to at most [`MAX_EXE`] bytes, at a character
/// boundary and never inside an escape.
fn bounded_exe(exe: &str) -> &str {
    crate::text::cut_escaped(exe, MAX_EXE)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A cut never falls inside an escape (twenty-sixth pass): `…\xf` or a lone `\` at the
    /// end would read as another path.
    #[test]
    fn exe_is_cut_between_escapes() {
        let a = |n: usize| "a".repeat(n);
        let esc = |tail: &[u8], n: usize| {
            crate::text::escape_path_bytes(&[a(n).as_bytes(), tail].concat())
        };
        // 0xff is `\xff`, 4 bytes: kept whole when it fits, else left out whole.
        assert_eq!(bounded_exe(&esc(&[0xff], 252)), format!("{}\\xff", a(252)));
        assert_eq!(bounded_exe(&esc(&[0xff], 253)), a(253));
        // A backslash is `\\`, 2 bytes: never cut to a lone `\`.
        assert_eq!(bounded_exe(&esc(b"\\", 254)), format!("{}\\\\", a(254)));
        assert_eq!(bounded_exe(&esc(b"\\", 255)), a(255));
    }

    #[test]
    fn exe_is_cut_at_256_bytes_on_a_character_boundary() {
        let long = format!("/{}", "é".repeat(200));
        let cut = bounded_exe(&long);
        assert_eq!(cut.len(), MAX_EXE - 1, "'é' is 2 bytes: 1 + 2*127 = 255");
        assert!(long.starts_with(cut));
        assert_eq!(bounded_exe("/usr/bin/python3"), "/usr/bin/python3");
        let ascii = "a".repeat(300);
        assert_eq!(bounded_exe(&ascii).len(), MAX_EXE);
    }

    #[test]
    fn a_peer_without_a_pid_in_our_namespace_is_recorded_with_pid_null() {
        let other_ns = PeerIdentity::with_groups(1000, 1000, 0, vec![]);
        assert_eq!(other_ns.audit_info().pid, None);
        assert_eq!(other_ns.audit_info().exe, None);
        let here = PeerIdentity::with_groups(1000, 1000, 42, vec![]);
        assert_eq!(here.audit_info().pid, Some(42));
    }

    /// Twenty-eighth pass (outside attacker): the groups were looked up once per connection,
    /// so a user removed from a runner or admin group kept its rights on a connection opened
    /// before. They are looked up again once the databases' generation moves on.
    #[test]
    fn groups_are_looked_up_again_once_the_databases_change() {
        use std::sync::atomic::{AtomicU32, Ordering};
        static MEMBER_OF: AtomicU32 = AtomicU32::new(50);
        fn lookup(_: u32) -> Vec<u32> {
            vec![MEMBER_OF.load(Ordering::SeqCst)]
        }
        // What the handler decides at each request: here, membership of 50.
        let decide = |p: &PeerIdentity| Rights {
            admin: p.in_group(50),
            scheduler: false,
            runner: None,
        };
        let p = PeerIdentity::with_lookup(1000, 1000, lookup);
        assert_eq!(p.follow(decide), None, "the first decision changes nothing");
        assert!(p.in_group(50) && p.all_groups().any(|g| g == 50));
        assert_eq!(p.follow(decide), None, "nothing changed: nothing decided");
        MEMBER_OF.store(60, Ordering::SeqCst);
        crate::accounts::databases_changed();
        let (before, now) = p.follow(decide).expect("decided again, and changed");
        assert!(before.admin && !now.admin);
        assert!(!p.in_group(50), "removed from 50: no longer a member");
        assert!(p.in_group(60), "added to 60: a member");
        assert_eq!(p.all_groups().collect::<Vec<_>>(), vec![1000, 60]);
        assert!(p.in_group(1000), "the kernel's primary gid always counts");
        // Moved on again, nothing changed for this peer: no difference to record.
        crate::accounts::databases_changed();
        assert_eq!(p.follow(decide), None);
    }

    #[test]
    fn runner_rights_first_learnt_at_an_unlock_are_no_change() {
        use std::sync::atomic::{AtomicBool, Ordering};
        static LOADED: AtomicBool = AtomicBool::new(false);
        let decide = |_: &PeerIdentity| Rights {
            admin: false,
            scheduler: false,
            runner: LOADED.load(Ordering::SeqCst).then(|| RunnerRights {
                user: false,
                groups: vec![2400],
                tasks: vec![],
            }),
        };
        let p = PeerIdentity::with_groups(1000, 1000, 0, vec![2400]);
        assert_eq!(p.follow(decide), None, "first decided while locked");
        LOADED.store(true, Ordering::SeqCst);
        crate::accounts::databases_changed();
        assert_eq!(
            p.follow(decide),
            None,
            "the unlock tells its runner rights: no change"
        );
        LOADED.store(false, Ordering::SeqCst);
        crate::accounts::databases_changed();
        assert_eq!(
            p.follow(decide),
            None,
            "locked again: the known rights are kept"
        );
        let changed = |p: &PeerIdentity| Rights {
            runner: Some(RunnerRights {
                user: false,
                groups: vec![],
                tasks: vec![],
            }),
            ..decide(p)
        };
        crate::accounts::databases_changed();
        let (before, now) = p.follow(changed).expect("a runner group lost is a change");
        assert_eq!(before.runner.unwrap().groups, vec![2400]);
        assert!(now.runner.unwrap().groups.is_empty());
    }

    #[test]
    fn a_connected_peer_is_recorded_with_its_binary() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = PeerIdentity::of(&a).unwrap();
        let me = std::env::current_exe().unwrap();
        assert_eq!(p.exe(), Some(&*me.to_string_lossy()));
        assert_eq!(p.audit_info().exe.as_deref(), Some(&*me.to_string_lossy()));
    }
}
