//! scopevault: a least-privilege credential vault for synthetic-monitoring checkpoints.
//!
//! The library behind the `scopevault` binary: the encrypted [`vault`], the scope [`policy`]
//! and its lint, the runtime [`agent`] (daemon) and its [`client`].
// `unsafe` is denied everywhere; the one exception is a single, commented FFI call in `sys`.
#![deny(unsafe_code)]
#![deny(missing_docs)]

pub mod agent;
pub mod cli;
pub mod client;
pub mod policy;
pub mod secret;
pub mod sys;
pub mod vault;
