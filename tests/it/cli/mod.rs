//! The command line as a script sees it: exit codes, job-control use, `serve`, `doctor`.

mod advice;
mod doctor;
mod env_paths;
mod exit_codes;
mod full_stdout;
mod jobs;
mod serve;
mod version;
