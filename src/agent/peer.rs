//! Who is on the other end of a connection, as the kernel says (SO_PEERCRED), never as the
//! client claims. The authoriser takes a [`PeerIdentity`], not loose integers.

use std::io;
use std::os::unix::net::UnixStream;

use serde::Serialize;

/// The kernel's view of a connected peer, read once when the connection is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerIdentity {
    /// Effective uid of the peer when it connected.
    pub uid: u32,
    /// Effective primary gid of the peer when it connected.
    pub gid: u32,
    /// Pid of the peer (informational: pids are reused; never authorise on it).
    pub pid: i32,
    /// The peer's executable, from /proc (informational, for the audit log).
    pub exe: Option<String>,
    /// Supplementary groups of the peer's user, from the group database, for `runners.groups`.
    pub groups: Vec<u32>,
}

impl PeerIdentity {
    /// Ask the kernel who is connected on `stream`.
    pub fn of(stream: &UnixStream) -> io::Result<PeerIdentity> {
        let cred = crate::sys::peer_credentials(stream)?;
        let exe = crate::sys::process_exe(cred.pid);
        Ok(PeerIdentity {
            uid: cred.uid,
            gid: cred.gid,
            pid: cred.pid,
            exe,
            groups: Vec::new(),
        })
    }

    /// True when the peer's primary or supplementary groups include `gid`.
    pub fn in_group(&self, gid: u32) -> bool {
        self.gid == gid || self.groups.contains(&gid)
    }
}
