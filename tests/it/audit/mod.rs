//! The audit log: the `audit` subcommands, the process hardening, the masker, the hash chain's verifier.

mod anchor;
mod cli;
mod generations;
mod harden;
mod masker;
mod verify;
