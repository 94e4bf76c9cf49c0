//! The daemon (`scopevault serve`): fetches, groups, tickets, systemd, hardening, hostile peers, the soak.

mod client_answers;
mod clock;
mod demo;
mod event_loop;
mod example_clients;
mod exec_io;
mod exec_signals;
mod fetch;
mod groups;
mod hardening;
mod hostile;
mod hostile_env;
mod late_rotation;
mod lost_stderr;
mod memlock;
mod memory_residue;
mod reload;
mod slow_reader;
mod soak;
mod systemd;
mod tickets;
mod unlock_sources;
