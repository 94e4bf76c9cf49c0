//! What each op does: parse the line, authorise the peer, act, audit, answer.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use zeroize::Zeroizing;

use super::peer::PeerIdentity;
use super::protocol::{
    err_line, ok_line, AdminStatus, ErrorBody, ErrorCode, Health, PeerInfo, Request,
};
use super::state::State;

/// Who may do what, besides the task runners named in the policy.
#[derive(Debug, Clone, Default)]
pub struct AccessConfig {
    /// The daemon's own uid (an admin).
    pub daemon_uid: u32,
    /// Members of this group are admins.
    pub admin_gid: Option<u32>,
    /// These uids may ask for tickets.
    pub scheduler_uids: Vec<u32>,
}

/// Answers requests. One per daemon, shared by every connection thread.
pub struct Handler {
    access: AccessConfig,
    state: State,
    open: Arc<AtomicUsize>,
}

impl Handler {
    /// A handler for a locked daemon.
    pub fn new(access: AccessConfig) -> Handler {
        Handler {
            access,
            state: State::locked(),
            open: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// The open-connection counter the accept loop maintains.
    pub(crate) fn open_connections(&self) -> Arc<AtomicUsize> {
        self.open.clone()
    }

    /// Root, the daemon's own uid, or a member of the admin group.
    pub fn is_admin(&self, peer: &PeerIdentity) -> bool {
        peer.uid == 0
            || peer.uid == self.access.daemon_uid
            || self.access.admin_gid.is_some_and(|g| peer.in_group(g))
    }

    /// Answer one request line with one response line (newline included).
    pub fn handle_line(&self, peer: &PeerIdentity, line: &[u8]) -> Zeroizing<Vec<u8>> {
        let req = match Request::parse(line) {
            Ok(r) => r,
            Err(e) => return err_line(&e),
        };
        match self.handle(peer, req) {
            Ok(line) => line,
            Err(e) => err_line(&e),
        }
    }

    /// Note a request refused for its size (the connection is closed next).
    pub fn note_too_large(&self, _peer: &PeerIdentity) {}

    fn handle(&self, peer: &PeerIdentity, req: Request) -> Result<Zeroizing<Vec<u8>>, ErrorBody> {
        match req {
            Request::Health => Ok(ok_line(&self.health(peer))),
            Request::Lock => {
                self.require_admin(peer, "lock")?;
                self.state.lock();
                Ok(ok_line(&self.admin_status()))
            }
            _ => Err(ErrorBody::new(
                ErrorCode::Locked,
                "the daemon is locked; an admin must run `scopevault unlock`",
            )),
        }
    }

    fn require_admin(&self, peer: &PeerIdentity, op: &str) -> Result<(), ErrorBody> {
        if self.is_admin(peer) {
            Ok(())
        } else {
            Err(ErrorBody::new(
                ErrorCode::Denied,
                format!("`{op}` is for admins (root, the daemon's user or its admin group); uid {} is none of these", peer.uid),
            ))
        }
    }

    fn admin_status(&self) -> AdminStatus {
        self.state.with(|v| AdminStatus {
            locked: v.is_none(),
            vault_id: None,
            generation: None,
        })
    }

    fn health(&self, peer: &PeerIdentity) -> Health {
        self.state.with(|v| Health {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            locked: v.is_none(),
            vault_id: None,
            generation: None,
            credentials: 0,
            tasks: 0,
            enforce: None,
            audit_ok: true,
            connections: self.open.load(Ordering::SeqCst),
            peer: PeerInfo {
                uid: peer.uid,
                gid: peer.gid,
                pid: peer.pid,
                admin: self.is_admin(peer),
            },
        })
    }
}
