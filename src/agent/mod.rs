//! The daemon: accept loop, protocol, peer authentication, authorisation, audit log, TOTP.

pub mod audit;
pub mod totp;
