//! The daemon: accept loop, protocol, peer authentication, authorisation, audit log, TOTP.

pub mod audit;
pub mod totp;

pub mod authz;
pub mod handler;
pub mod peer;
pub mod protocol;
pub mod server;
pub(crate) mod state;
mod tickets;
