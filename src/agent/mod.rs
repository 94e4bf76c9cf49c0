//! The daemon: accept loop, peer authentication, authorisation, audit log, TOTP. The socket
//! API types it shares with the client are in [`crate::protocol`].
//!
//! No line is printed here with `eprintln!`/`println!`: they panic on an unwritable stderr
//! (a closed terminal, a log reader gone), which killed the daemon's threads; every line goes
//! through [`crate::diag!`].
#![deny(clippy::print_stderr, clippy::print_stdout)]

pub mod totp;

pub mod authz;
pub(crate) mod backlog;
pub mod budget;
pub mod daemon;
pub mod handler;
pub(crate) mod notify;
mod outcome;
pub mod peer;
pub mod server;
pub(crate) mod state;
mod tickets;
