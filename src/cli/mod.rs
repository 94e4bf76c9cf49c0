//! The command-line interface: [`args`] holds the clap definition alone; each command group
//! has its own module; this module parses, dispatches and maps errors to exit codes.

pub mod args;
mod audit;
mod client_cmds;
mod cred;
mod demo;
mod exec;
mod init;
mod key;
mod lint;
mod policy;
mod redact;
mod serve;
mod unlock;

use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{Cli, Command};

/// Exit code: usage, parse or I/O error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the vault could not be unlocked.
pub const EXIT_UNLOCK: u8 = 3;
/// Exit code: the vault file was refused.
pub const EXIT_REFUSED: u8 = 4;
/// Exit code: the daemon refused the request or is not running.
pub const EXIT_DAEMON: u8 = 5;

/// An error that carries the exit code the binary should return.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Exit {
    /// The exit code.
    pub code: u8,
    /// What happened and what to do.
    pub message: String,
}

/// Parse the command line, run the command, print errors, return the exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            let code = exit_code_of(&err);
            // `{:#}` prints the context chain on one line: "cannot open vault: …: …".
            eprintln!("error: {err:#}");
            ExitCode::from(code)
        }
    }
}

fn exit_code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Exit>() {
            return e.code;
        }
        if let Some(e) = cause.downcast_ref::<crate::vault::VaultError>() {
            if e.is_refusal() {
                return EXIT_REFUSED;
            }
            if e.is_unlock_failure() {
                return EXIT_UNLOCK;
            }
        }
    }
    EXIT_USAGE
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let g = &cli.global;
    match cli.command {
        Command::Lint(a) => lint::run(g, &a),
        Command::Serve(a) => serve::run(g, &a),
        Command::Status(a) => client_cmds::status(g, &a),
        Command::Lock => client_cmds::lock(g),
        Command::Unlock => client_cmds::unlock(g),
        Command::Reload => client_cmds::reload(g),
        Command::Get(a) => client_cmds::get(g, &a),
        Command::Totp(a) => client_cmds::totp(g, &a),
        Command::Exec(a) => client_cmds::exec(g, &a),
        Command::Audit(a) => audit::run(g, &a),
        Command::Demo => demo::run(g),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "scopevault",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
        Command::Man => {
            clap_mangen::Man::new(Cli::command()).render(&mut std::io::stdout())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Init(a) => init::run(g, &a),
        Command::Cred(c) => cred::run(g, &c),
        Command::Key(c) => key::run(g, &c),
        Command::Policy(c) => policy::run(g, &c),
        Command::Redact(a) => redact::run(g, &a),
    }
}
