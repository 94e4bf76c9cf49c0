//! Fleet bundles: the `fleet` subcommands, policies, properties, test vectors, the Ansible role,
//! the pull unit.

mod ansible;
pub(crate) mod cli;
mod policy;
mod props;
mod pull;
mod vectors;
