//! Who is on the other end of a connection, as the kernel says (SO_PEERCRED), never as the
//! client claims. The authoriser takes a [`PeerIdentity`], not loose integers.

use std::io;
use std::os::unix::net::UnixStream;
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
    /// Groups of the peer's user, from the databases, as last looked up.
    groups: Groups,
    exe: Option<crate::sys::ExeLink>,
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
            groups: Groups::Followed {
                lookup: crate::accounts::user_groups,
                now: Mutex::new(None),
            },
            exe: crate::sys::peer_exe(stream, &cred),
        })
    }

    /// A peer with known groups (tests).
    pub fn with_groups(uid: u32, gid: u32, pid: i32, groups: Vec<u32>) -> PeerIdentity {
        PeerIdentity {
            uid,
            gid,
            pid,
            groups: Groups::Fixed(groups.into()),
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
            groups: Groups::Followed {
                lookup,
                now: Mutex::new(None),
            },
            exe: None,
        }
    }

    /// `f` of the user's groups as of the databases' current generation: looked up when
    /// first needed, and again at the first need after [`crate::accounts::generation`] moved
    /// on (a change of `/etc/passwd` or `/etc/group`, a `reload`). Otherwise an atomic load
    /// and compare under this peer's own lock (uncontended but for a worker), no file read: a
    /// user removed from a group loses its rights on connections already open within about a
    /// second, not when the connection closes (twenty-eighth pass, found by the outside
    /// attacker).
    fn groups_now<R>(&self, f: impl FnOnce(&Arc<[u32]>) -> R) -> R {
        match &self.groups {
            Groups::Fixed(g) => f(g),
            Groups::Followed { lookup, now } => {
                let generation = crate::accounts::generation();
                let mut now = now.lock().unwrap_or_else(|p| p.into_inner());
                match &*now {
                    Some((at, g)) if *at == generation => f(g),
                    _ => {
                        // The generation is read before the lookup: a change during it moves
                        // the generation past `at`, and the next need looks up again.
                        let g: Arc<[u32]> = lookup(self.uid).into();
                        let r = f(&g);
                        *now = Some((generation, g));
                        r
                    }
                }
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
    /// databases, as of their current generation) is `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups_now(|g| g.contains(&gid))
    }

    /// The peer's primary gid, then each group of its user (the groups
    /// [`PeerIdentity::in_group`] matches, as of the same generation).
    pub fn all_groups(&self) -> impl Iterator<Item = u32> {
        let groups = self.groups_now(Arc::clone);
        std::iter::once(self.gid).chain((0..groups.len()).map(move |i| groups[i]))
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

/// Where a peer's groups come from.
#[derive(Debug)]
enum Groups {
    /// Given (tests).
    Fixed(Arc<[u32]>),
    /// Looked up by uid, with the databases' generation they were looked up at.
    Followed {
        lookup: fn(u32) -> Vec<u32>,
        now: Mutex<Option<(u64, Arc<[u32]>)>>,
    },
}

/// A peer without its connection ([`PeerIdentity::detached`]): what a ticket keeps of its
/// issuer, so that its redemption can ask whether the issuer may still have it.
#[derive(Debug, Clone)]
pub(crate) struct Detached {
    uid: u32,
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

    /// The peer as it would be on a connection opened now: the same uid and kernel gid, and
    /// its user's groups as the databases say now (looked up at the first need).
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
            groups,
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
        let p = PeerIdentity::with_lookup(1000, 1000, lookup);
        assert!(p.in_group(50) && p.all_groups().any(|g| g == 50));
        MEMBER_OF.store(60, Ordering::SeqCst);
        crate::accounts::databases_changed();
        assert!(!p.in_group(50), "removed from 50: no longer a member");
        assert!(p.in_group(60), "added to 60: a member");
        assert_eq!(p.all_groups().collect::<Vec<_>>(), vec![1000, 60]);
        assert!(p.in_group(1000), "the kernel's primary gid always counts");
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
