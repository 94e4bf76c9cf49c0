//! Fleet bundles: the `fleet` subcommands, policies, properties, test vectors, the Ansible role,
//! the pull unit.

mod ansible;
mod cli;
mod policy;
mod props;
mod pull;
mod vectors;
