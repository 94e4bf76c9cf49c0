//! scopevault: a least-privilege credential vault for synthetic-monitoring checkpoints.
//!
//! The library behind the `scopevault` binary: the encrypted [`vault`], the scope [`policy`]
//! and its lint, the runtime [`agent`] (daemon) and its [`client`].
#![deny(missing_docs)]

pub mod accounts;
pub mod advice;
pub mod agent;
pub mod audit;
pub mod cli;
pub mod client;
pub mod diag;
pub mod fleet;
pub mod paths;
pub mod policy;
pub mod protocol;
pub mod redact;
pub mod secret;
pub mod sys;
pub mod text;
pub mod usage;
pub mod vault;
