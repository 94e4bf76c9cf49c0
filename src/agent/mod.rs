//! The daemon: accept loop, peer authentication, authorisation, audit log, TOTP. The socket
//! API types it shares with the client are in [`crate::protocol`].

pub mod totp;

pub mod authz;
pub(crate) mod backlog;
pub mod budget;
pub mod daemon;
pub mod handler;
mod outcome;
pub mod peer;
pub mod server;
pub(crate) mod state;
mod tickets;
