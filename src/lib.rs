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

/// This build's version, as `scopevault --version` and the daemon's `health` (`version`) say
/// it: the package's version first, then, in parentheses, the git commit of a build from a
/// checkout and the cargo features on (`0.1.0 (git 1ebcb6a4c2f0; features:
/// bench-no-audit-sync)`); the package's version alone from a crate tarball built without
/// features. Made by `build.rs`.
// (A compile-time variable of build.rs, outside the `SCOPEVAULT_*` names a user may set.)
pub const VERSION: &str = env!("SV_BUILD_VERSION");
