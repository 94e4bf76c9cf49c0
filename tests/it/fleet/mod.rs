//! Fleet bundles: the `fleet` subcommands, policies, properties, test vectors, the Ansible role.

mod ansible;
mod cli;
mod policy;
mod props;
mod vectors;
