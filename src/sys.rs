//! The only place that makes raw system calls (through rustix): peer credentials, dumpable, rlimits, mlock, umask.

// STAND-IN on the daemon branch so it builds before the audit branch lands: on merge, the
// audit branch's sys.rs (same names) wins and this block goes.
/// Peer credentials of a connected Unix socket.
#[derive(Debug, Clone, Copy)]
pub struct PeerCred {
    /// uid
    pub uid: u32,
    /// gid
    pub gid: u32,
    /// pid
    pub pid: u32,
}
/// SO_PEERCRED.
pub fn peer_credentials(s: &std::os::unix::net::UnixStream) -> std::io::Result<PeerCred> {
    let c = rustix::net::sockopt::socket_peercred(s)?;
    Ok(PeerCred {
        uid: c.uid.as_raw(),
        gid: c.gid.as_raw(),
        pid: c.pid.as_raw_nonzero().get() as u32,
    })
}
/// uid
pub fn current_uid() -> u32 {
    rustix::process::getuid().as_raw()
}
/// gid
pub fn current_gid() -> u32 {
    rustix::process::getgid().as_raw()
}
