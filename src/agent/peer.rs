//! Who is on the other end of a connection, as the kernel says (SO_PEERCRED), never as the
//! client claims. The authoriser takes a [`PeerIdentity`], not loose integers.

use std::io;
use std::os::unix::net::UnixStream;
use std::sync::OnceLock;

/// The kernel's view of a connected peer, read once when the connection is accepted.
#[derive(Debug)]
pub struct PeerIdentity {
    /// Effective uid of the peer when it connected.
    pub uid: u32,
    /// Effective primary gid of the peer when it connected.
    pub gid: u32,
    /// Pid of the peer (informational: pids are reused; never authorise on it).
    pub pid: i32,
    /// Supplementary groups of the peer's user, looked up once, when first needed.
    groups: OnceLock<Vec<u32>>,
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
            groups: OnceLock::new(),
            exe: crate::sys::peer_exe(stream, &cred),
        })
    }

    /// A peer with known groups (tests).
    pub fn with_groups(uid: u32, gid: u32, pid: i32, groups: Vec<u32>) -> PeerIdentity {
        PeerIdentity {
            uid,
            gid,
            pid,
            groups: OnceLock::from(groups),
            exe: None,
        }
    }

    /// True when the peer's primary gid or one of its user's supplementary groups (from the
    /// group database) is `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid
            || self
                .groups
                .get_or_init(|| crate::accounts::user_groups(self.uid))
                .contains(&gid)
    }

    /// The peer's primary gid, then each supplementary group of its user (the groups
    /// [`PeerIdentity::in_group`] matches), looked up once as there.
    pub fn all_groups(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.gid).chain(
            self.groups
                .get_or_init(|| crate::accounts::user_groups(self.uid))
                .iter()
                .copied(),
        )
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

    #[test]
    fn a_connected_peer_is_recorded_with_its_binary() {
        let (a, _b) = UnixStream::pair().unwrap();
        let p = PeerIdentity::of(&a).unwrap();
        let me = std::env::current_exe().unwrap();
        assert_eq!(p.exe(), Some(&*me.to_string_lossy()));
        assert_eq!(p.audit_info().exe.as_deref(), Some(&*me.to_string_lossy()));
    }
}
