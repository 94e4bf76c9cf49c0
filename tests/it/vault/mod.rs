//! The vault file: the CLI, crash safety, directories, forgery, the KDF, keyring slots, leaks, migration, policies, prompts, test vectors.

mod cli;
mod crash;
mod dirs;
mod forge;
mod kdf;
mod keyring;
mod leak;
mod migrate;
mod policy;
mod prompt;
mod vectors;
