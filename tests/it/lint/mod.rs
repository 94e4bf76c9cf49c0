//! `scopevault lint`: the CLI, every rule, the output snapshots, the usage evidence from audit logs.

mod cli;
mod rules;
mod snapshots;
mod usage;
