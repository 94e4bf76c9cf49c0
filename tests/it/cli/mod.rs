//! The command line as a script sees it: exit codes, job-control use, `serve`.

mod exit_codes;
mod jobs;
mod serve;
