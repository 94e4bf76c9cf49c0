//! The command line as a script sees it: exit codes, job-control use, `serve`, `doctor`.

mod doctor;
mod exit_codes;
mod jobs;
mod serve;
