//! The command-line interface: [`args`] holds the clap definition alone; each command group
//! has its own module; this module parses, dispatches and maps errors to exit codes.
//! Everything printed goes through [`output`]'s macros: a failed write is an error, never a
//! panic.
#![deny(clippy::print_stdout, clippy::print_stderr)]

#[macro_use]
mod output;
pub mod args;
mod audit;
mod client_cmds;
mod cred;
mod demo;
mod doctor;
mod exec;
mod fleet;
mod import;
mod init;
mod key;
mod lint;
mod man;
mod policy;
mod redact;
// The daemon's own logging is its module's business.
#[allow(clippy::print_stdout, clippy::print_stderr)]
mod serve;
mod status;
mod sync;
mod unlock;

use std::process::ExitCode;

use clap::CommandFactory;

use args::{Cli, Command};

/// Exit code: usage, parse or I/O error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the vault could not be unlocked.
pub const EXIT_UNLOCK: u8 = 3;
/// Exit code: the vault file was refused.
pub const EXIT_REFUSED: u8 = 4;
/// Exit code: the daemon refused the request or is not running.
pub const EXIT_DAEMON: u8 = 5;
/// Exit code of `exec`: the command was found but cannot be run (as env(1) and the shells).
pub const EXIT_CANNOT_RUN: u8 = 126;
/// Exit code of `exec`: the command was not found (as env(1) and the shells).
pub const EXIT_NOT_FOUND: u8 = 127;

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
    stdout_closed_is_success();
    let cli = match parse() {
        Ok(cli) => cli,
        Err(e) => {
            // An empty `SCOPEVAULT_VAULT` is clap's "invalid value for '--vault'", which
            // names the option, not the variable, and warns of argv for a value never in it:
            // the environment's own error first (twenty-sixth pass).
            if e.use_stderr() {
                if let Err(why) = crate::paths::check_env() {
                    return environment_error(&why);
                }
            }
            // `status --json` promises JSON on stdout whatever happens (README): a command
            // line clap refuses (`--json --format text`, an empty `SCOPEVAULT_VAULT`) too.
            let hidden = hidden_clap_error(&e);
            if e.use_stderr() && status::json_requested() {
                status::print_argument_error(&e, hidden.as_deref());
            }
            if let Some(text) = hidden {
                output::final_error(format_args!("{text}"));
                return ExitCode::from(EXIT_USAGE);
            }
            if let Some(text) = usage_without_env_options(&e) {
                output::final_error(format_args!("{}", text.trim_end()));
                return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(EXIT_USAGE));
            }
            return output::clap_error(e);
        }
    };
    if let Err(why) = crate::paths::check_env() {
        return environment_error(&why);
    }
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            let code = exit_code_of(&err);
            if code == 0 {
                // The reader of our output went away (`| head`): that is the end of output.
                return ExitCode::SUCCESS;
            }
            // Not `eprintln!`, which panics on an unwritable stderr (`serve 2>/dev/full`), nor a
            // plain write, which waits for good on a full pipe nobody reads: the exit code
            // stays the one of the error, and comes within a bounded time.
            output::final_error(format_args!("error: {}", message_of(&err)));
            ExitCode::from(code)
        }
    }
}

/// Print `why`, an environment the paths cannot be taken from ([`crate::paths::check_env`]),
/// as a usage error (in JSON too for `status --json`).
fn environment_error(why: &str) -> ExitCode {
    if status::json_requested() {
        status::print_error_json(why, i32::from(EXIT_USAGE));
    }
    output::final_error(format_args!("error: {why}"));
    ExitCode::from(EXIT_USAGE)
}

/// clap's error, with the options whose value came from their environment variable and not
/// from the command line (`SCOPEVAULT_VAULT`, `SCOPEVAULT_SOCKET`, …) taken out of its usage
/// line, or `None` when it names none. clap counts such an option as used and writes it into
/// the usage line of an error, so `exec` without its command showed `Usage: scopevault exec
/// --task <TASK> --vault <PATH> --socket <PATH> -- <CMD>...`, as if both were required
/// (twenty-fifth pass, found by the attacker of exec as a supervisor).
fn usage_without_env_options(e: &clap::Error) -> Option<String> {
    if !e.use_stderr() {
        return None;
    }
    let typed: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut from_env = Vec::new();
    let mut stack = vec![Cli::command()];
    while let Some(mut cmd) = stack.pop() {
        cmd.build();
        for a in cmd.get_arguments() {
            let (Some(long), Some(_)) = (a.get_long(), a.get_env()) else {
                continue;
            };
            let flag = format!("--{long}");
            let eq = format!("{flag}=");
            if typed.iter().any(|t| *t == flag || t.starts_with(&eq)) {
                continue;
            }
            let value = a
                .get_value_names()
                .and_then(|v| v.first())
                .map_or_else(|| a.get_id().as_str().to_uppercase(), |v| v.to_string());
            from_env.push(format!(" {flag} <{value}>"));
        }
        stack.extend(cmd.get_subcommands().cloned());
    }
    let text = e.render().to_string();
    let mut changed = false;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            if !l.starts_with("Usage: ") {
                return l.to_owned();
            }
            let mut l = l.to_owned();
            for f in &from_env {
                if l.contains(f.as_str()) {
                    l = l.replacen(f.as_str(), "", 1);
                    changed = true;
                }
            }
            l
        })
        .collect();
    changed.then(|| lines.join("\n"))
}

/// No clap error quotes what was typed, whatever the command (twenty-fifth pass, found by
/// the twenty-fourth pass's review: the commands held to read no secret, `scopevault` itself
/// among them, printed clap's own error, so `scopevault SECRET` printed the secret back; a
/// value typed on the wrong line lands in any command). Returns the error's text to print
/// instead of clap's (its last line `For more information, try '--help'.`), or `None` when
/// clap's own quotes no value. clap's "unexpected argument 'X' found" is printed without `X` unless `X` is plainly
/// a flag: `--secret password VALUE` (a space where `--field` has `=`) made the value the stray
/// argument, and clap quoted it on stderr (eighteenth pass, found by attacking this pass's
/// fixes); so did a passphrase typed as an argument by mistake, `key add --passphrase SECRET`,
/// `unlock SECRET` (twenty-third pass, found by its attacker of keys and unlocking: until then
/// only commands taking `--secret` were covered). A mistyped flag (`--feild`) is not quoted
/// either, since a passphrase of lowercase words is shaped like a flag too (twenty-fifth pass):
/// clap's nearest known flag is named instead ("did you mean '--field'?"), or nobody could tell
/// which argument was meant (nineteenth pass, found by the last review); see [`nameable_stray`]
/// for what counts as plainly a flag, and a mistyped subcommand (`key lsit`) is named when it
/// is a lowercase word close to one of ours. Every other kind of
/// clap error that can quote a value (`--no-keyring=VALUE`: "unexpected value 'VALUE' for
/// '--no-keyring'"; `--kind VALUE`: "invalid value 'VALUE' for …", nineteenth pass, found by
/// attacking this pass's fixes) names the flag only. The usage line is kept; errors that quote
/// no value (a missing or conflicting argument) are printed as clap prints them.
fn hidden_clap_error(e: &clap::Error) -> Option<String> {
    use clap::error::{ContextKind, ErrorKind};
    match e.kind() {
        // These quote argument names and counts, never a value typed.
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
        | ErrorKind::MissingRequiredArgument
        | ErrorKind::MissingSubcommand
        | ErrorKind::ArgumentConflict
        | ErrorKind::WrongNumberOfValues
        | ErrorKind::TooFewValues
        | ErrorKind::NoEquals => return None,
        _ => {}
    }
    let argv: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let usage = e
        .get(ContextKind::Usage)
        .map(|u| u.to_string())
        .map(|u| format!("\n\n{}", u.trim_end()))
        .unwrap_or_default();
    let exposed = "if it is a secret value, it is in argv, visible to other users in ps, so consider it exposed";
    if e.kind() == ErrorKind::InvalidSubcommand {
        // A mistyped subcommand is named, with clap's nearest known one: a lowercase word
        // close to one of ours (a lowercase passphrase is a word too, but rarely close to
        // `list`); anything else is not shown.
        let named = match (
            e.get(ContextKind::InvalidSubcommand),
            e.get(ContextKind::SuggestedSubcommand),
        ) {
            (Some(word), Some(similar)) if subcommand_shaped(&word.to_string()) => {
                Some((word.to_string(), similar_tip("subcommand", similar)))
            }
            _ => None,
        };
        let (head, tip) = match named {
            Some((word, similar)) => (
                format!("unrecognized subcommand '{word}'"),
                similar,
            ),
            None => (
                format!("unrecognized subcommand (not shown: it may be a secret value typed by mistake; {exposed})"),
                String::new(),
            ),
        };
        return Some(format!(
            "error: {head}{tip}{usage}\n\nFor more information, try '--help'."
        ));
    }
    if e.kind() != ErrorKind::UnknownArgument {
        // Our own argument's name and our own list of values; never what was typed, nor
        // clap's nearest valid value to it.
        let arg = e
            .get(ContextKind::InvalidArg)
            .map(|a| format!(" for '{a}'"))
            .unwrap_or_default();
        let what = if e.kind() == ErrorKind::TooManyValues {
            "unexpected value"
        } else {
            "invalid value"
        };
        let valid = match e.get(ContextKind::ValidValue) {
            Some(clap::error::ContextValue::Strings(v)) if !v.is_empty() => {
                format!("\n  [possible values: {}]", v.join(", "))
            }
            _ => String::new(),
        };
        // A value parser's own reason (`serve --read-timeout`: "give 1 to 3600 seconds"),
        // unless it holds an argument as typed of 4 bytes or more (a parser that quotes the
        // value; a shorter one is no secret, and `0` is in "0 would close every connection").
        let why = std::error::Error::source(e)
            .map(|s| s.to_string())
            .filter(|m| {
                use std::os::unix::ffi::OsStrExt;
                !argv.iter().any(|a| {
                    let a = a.as_bytes();
                    a.len() >= 4 && m.as_bytes().windows(a.len()).any(|w| w == a)
                })
            })
            .map(|m| format!(": {m}"))
            .unwrap_or_default();
        return Some(format!(
            "error: {what}{arg}{why} (the value is not shown: {exposed}){valid}{usage}\n\nFor more information, try '--help'."
        ));
    }
    let named = e
        .get(ContextKind::InvalidArg)
        .and_then(|a| nameable_stray(&a.to_string(), &argv));
    let hidden = "unexpected argument (not shown: it may be a secret value typed by mistake; consider it exposed)";
    let head = match (&named, e.get(ContextKind::SuggestedArg)) {
        // `-x`: one character is no secret, and says which flag is wrong.
        (
            Some(Stray {
                flag,
                with_value: false,
            }),
            _,
        ) if !flag.starts_with("--") => format!("unexpected argument '{flag}' found"),
        // A long flag is never quoted, however plainly a flag it looks: a passphrase of
        // lowercase words is one too (`--correct-horse-battery-staple`, twenty-fifth pass,
        // found by the re-attacker of this pass's fixes). Only clap's nearest known flag is
        // named, one of ours; and only beside an argument shaped like a flag, as it says
        // something of what was typed.
        (Some(_), Some(similar)) => format!(
            "an unknown flag (not shown: {exposed}); did you mean {}?",
            quoted_list(similar)
        ),
        _ => hidden.to_owned(),
    };
    Some(format!(
        "error: {head}{usage}\n\nFor more information, try '--help'."
    ))
}

/// clap's nearest known names, each quoted: `'--json'`, or `one of '--a', '--b'`.
fn quoted_list(similar: &clap::error::ContextValue) -> String {
    match similar {
        clap::error::ContextValue::Strings(v) if v.len() > 1 => format!(
            "one of {}",
            v.iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("'{other}'"),
    }
}

/// clap's tip naming the known `what`s (subcommands, arguments) nearest to what was typed, as
/// clap words it: one, or several each quoted (`'audit', 'status'`).
fn similar_tip(what: &str, similar: &clap::error::ContextValue) -> String {
    match similar {
        clap::error::ContextValue::Strings(v) if v.len() > 1 => format!(
            "\n\n  tip: some similar {what}s exist: {}",
            v.iter()
                .map(|s| format!("'{s}'"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        other => format!("\n\n  tip: a similar {what} exists: '{other}'"),
    }
}

/// Whether `word`, a subcommand clap does not know, is shaped like a name of ours: a lowercase
/// ASCII letter, then lowercase ASCII letters, digits and `-`, at most 32 bytes.
fn subcommand_shaped(word: &str) -> bool {
    word.len() <= 32
        && word.starts_with(|c: char| c.is_ascii_lowercase())
        && word
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// A stray argument that may be named: a flag, and whether a value followed it after `=`.
#[derive(Debug, PartialEq, Eq)]
struct Stray {
    flag: String,
    with_value: bool,
}

/// Whether `invalid`, the argument clap could not place, is plainly a flag and not a value, as
/// typed (`argv`, the arguments after the program's name): a short one is named, a long one
/// gets clap's nearest known flag named in its place ([`hidden_clap_error`]). Plainly a flag: `--` and a lowercase
/// ASCII letter, then lowercase ASCII letters, digits and `-`, at most 32 bytes in all; or `-`
/// and one ASCII letter or digit. Every flag of ours is lowercase: a capital, or anything else,
/// reads more like a password than a typo, and is not named.
///
/// As typed, because clap names a part of an argument: the flag before `=` of `--x=VALUE`
/// (named, `with_value` set, the value not), and the first letter of a cluster of short
/// flags, so that `-Pa55word` would be named `-P` (not named: no argument is `-P`).
fn nameable_stray(invalid: &str, argv: &[std::ffi::OsString]) -> Option<Stray> {
    use std::os::unix::ffi::OsStrExt;
    let flag_shaped = match invalid.strip_prefix("--") {
        Some(word) => {
            invalid.len() <= 32
                && word.starts_with(|c: char| c.is_ascii_lowercase())
                && word
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        }
        None => {
            let b = invalid.as_bytes();
            b.len() == 2 && b[0] == b'-' && b[1].is_ascii_alphanumeric()
        }
    };
    if !flag_shaped {
        return None;
    }
    let with_value = if argv.iter().any(|a| a.as_bytes() == invalid.as_bytes()) {
        false
    } else if invalid.starts_with("--")
        && argv.iter().any(|a| {
            a.as_bytes()
                .strip_prefix(invalid.as_bytes())
                .is_some_and(|rest| rest.starts_with(b"="))
        })
    {
        true
    } else {
        return None;
    };
    Some(Stray {
        flag: invalid.to_owned(),
        with_value,
    })
}

/// The context chain on one line ("cannot open vault: …: …"), each cause once: an error whose
/// text already includes its source's (thiserror's `"{what}: {source}"`) is not followed by
/// the source again.
///
/// Escaped for a terminal, line breaks kept ([`crate::text::escape_keeping_line_breaks`]):
/// this is the one place every error the binary prints (and `status --json` reports) passes
/// through, and a message may quote what a writer without the key chose: serde quotes an
/// unknown member's name or variant of a vault header as it is, and a rollback record's bad
/// value likewise (seventeenth pass: ESC and OSC bytes in a header member's name reached the
/// terminal of whoever ran `key list`).
///
/// The line breaks kept here are the messages' own; a name or value from elsewhere is
/// escaped where it is put into a message, its line breaks included
/// ([`crate::text::escape_for_terminal`], [`crate::text::shown`]), or it could start a line
/// that reads as ours (eighteenth pass: an unknown key `"x\nerror: forged"` of a policy or of
/// a bundle's manifest, quoted by the parser).
///
/// And defused for a CI log ([`crate::text::defused`]): a quoted `##[add-mask]…` (a policy's
/// key, a file's name) is a GitHub Actions command wherever it is in a line, and a message
/// may hold a line of the file it quotes (nineteenth pass).
pub(crate) fn message_of(err: &anyhow::Error) -> String {
    crate::text::defused(&crate::text::escape_keeping_line_breaks(&chain_text(err))).into_owned()
}

fn chain_text(err: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    // A write refused by the file-size limit names the limit, whichever writer failed
    // (`lint --output`, `lint` or `policy export` to stdout: twenty-sixth pass, found by the
    // re-attacker of this pass's fixes); those that already say so are left as they are.
    if crate::sys::is_file_size_limit(err.as_ref()) && !out.contains("file-size limit") {
        out.push_str("; ");
        out.push_str(crate::sys::FILE_SIZE_LIMIT_ADVICE);
        out.push_str(", then run the command again");
    }
    out
}

/// `println!` panics when stdout is a closed pipe (`scopevault cred list | head -1`): like
/// ripgrep, treat that as the end of output and exit 0, quietly. Every other panic goes to the
/// default hook. A safety net: the CLI itself prints through [`output`], which returns the
/// error instead (and `exit_code_of` makes a closed pipe exit 0).
fn stdout_closed_is_success() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        // Caught by `catch_panic`, whose caller reports it: no second, raw message.
        if CATCHING.with(std::cell::Cell::get) {
            return;
        }
        let payload = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        let epipe = std::io::Error::from_raw_os_error(32).to_string();
        if payload.starts_with("failed printing to stdout") && payload.contains(&epipe) {
            std::process::exit(0);
        }
        default(info);
    }));
}

thread_local! {
    /// Set while [`catch_panic`] runs its closure on this thread.
    static CATCHING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `f`; a panic inside it is returned as its message instead of ending the process with
/// exit 101 and Rust's panic text, a code the README's table does not have. For a step that
/// runs a dependency's code on what the command was given, where a panic there must still
/// end with a message naming what was being done (`publish`: encrypting and signing each
/// location's bundle; age panics on a failing RNG, and panicked on a low-order recipient
/// before the twenty-ninth pass). The panic hook prints nothing meanwhile: the caller's
/// error says it all.
pub(crate) fn catch_panic<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    let was = CATCHING.with(|c| c.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    CATCHING.with(|c| c.set(was));
    result.map_err(|payload| {
        let text = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        crate::text::escape_for_terminal(&text.chars().take(300).collect::<String>())
    })
}

/// The escapers every command's output goes through: a string from elsewhere (a file, the
/// daemon, the environment), and a path ([`crate::text::shown`]).
pub(crate) use crate::text::{escape_for_terminal, shown};

/// Whether colour may be used on a terminal: not with `NO_COLOR` set (no-color.org), nor on
/// `TERM=dumb` (or no `TERM` at all), which cannot show it.
pub(crate) fn color_allowed() -> bool {
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let dumb = std::env::var_os("TERM").is_none_or(|t| t.is_empty() || t == "dumb");
    !no_color && !dumb
}

/// Write `bytes` to stdout; a closed pipe is the end of output (exit 0, see [`exit_code_of`]).
pub(crate) use output::write_stdout;

/// The one mapping from an error to the exit code of the README's table:
///
/// | code | errors |
/// |---|---|
/// | 0 | stdout is a closed pipe (`… \| head`): the end of output, not a failure |
/// | 2 | usage, parse and I/O errors: everything not below |
/// | 3 | [`VaultError::is_unlock_failure`](crate::vault::VaultError::is_unlock_failure) (wrong passphrase, also when the daemon checked it; no unlock source; keyring) |
/// | 4 | [`VaultError::is_refusal`](crate::vault::VaultError::is_refusal) (corrupt, forged, rolled back, version, hostile), also when the daemon refused the file (`vault_refused`) |
/// | 5 | any other [`ClientError`](crate::client::ClientError): the daemon refused or is not running |
///
/// An [`Exit`] in the chain carries its own code (1 for findings and failed checks). The
/// first typed cause found from the outside in decides.
pub(crate) fn exit_code_of(err: &anyhow::Error) -> u8 {
    for cause in err.chain() {
        if let Some(e) = cause.downcast_ref::<Exit>() {
            return e.code;
        }
        if let Some(e) = cause.downcast_ref::<crate::client::ClientError>() {
            // The daemon refused the vault file (`reload`, `unlock`): the file's fault, as
            // when a command refuses it.
            if e.code() == Some(crate::protocol::ErrorCode::VaultRefused) {
                return EXIT_REFUSED;
            }
            return EXIT_DAEMON;
        }
        if let Some(e) = cause.downcast_ref::<crate::vault::VaultError>() {
            if e.is_refusal() {
                return EXIT_REFUSED;
            }
            if e.is_unlock_failure() {
                return EXIT_UNLOCK;
            }
            return EXIT_USAGE;
        }
    }
    // Only an untyped I/O error (a write to stdout) gets here: daemon and vault I/O errors
    // are typed above.
    // A JSON writer's error carries its io error inside (`get --json | head -1`).
    let broken_pipe = err.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || c.downcast_ref::<serde_json::Error>()
                .is_some_and(|e| e.io_error_kind() == Some(std::io::ErrorKind::BrokenPipe))
    });
    if broken_pipe {
        return 0;
    }
    EXIT_USAGE
}

/// For a command that opens or saves the vault, its path with a symbolic link at it followed,
/// once, here ([`crate::vault::resolve_link`]): every later use (the lock, the open, the
/// temporary file, the rename, the daemon's reloads) names the file itself, so a save keeps
/// the link a link, and the link is not read again mid-command. `doctor` reports the link
/// itself; `status` only reads the applied record, keyed by the file's canonical path.
fn with_vault_link_followed(mut cli: Cli) -> anyhow::Result<Cli> {
    let opens_vault = match &cli.command {
        Command::Serve(_)
        | Command::Init(_)
        | Command::Cred(_)
        | Command::Key(_)
        | Command::Policy(_)
        | Command::Sync(_)
        | Command::Recipient
        | Command::Publish(_) => true,
        Command::Lint(a) => a.with_vault,
        Command::Bundle(c) => matches!(c, args::BundleCommand::Apply(_)),
        _ => false,
    };
    if opens_vault {
        let given = unlock::vault_path(&cli.global);
        cli.global.vault = Some(crate::vault::resolve_link(&given)?);
    }
    Ok(cli)
}

/// [`Cli::try_parse`], noting whether the identity file came from `SCOPEVAULT_IDENTITY_FILE`
/// rather than `--identity-file` (clap's value source; the parsed value does not say).
fn parse() -> Result<Cli, clap::Error> {
    use clap::parser::ValueSource;
    use clap::FromArgMatches;
    let m = Cli::command().try_get_matches()?;
    let mut cli = Cli::from_arg_matches(&m)?;
    // A global option's source is in the matches of the subcommand it was parsed for.
    let mut at = &m;
    let mut source = at.value_source("identity_file");
    while let Some((_, sub)) = at.subcommand() {
        at = sub;
        source = sub.value_source("identity_file").or(source);
    }
    cli.global.unlock.identity_from_env = source == Some(ValueSource::EnvVariable);
    // The vault path given (`--vault` or `SCOPEVAULT_VAULT`, not its default): the commands
    // advised name it (crate::advice), so that copied they act on this vault, not the
    // default one (twenty-fifth pass).
    if let Some(v) = &cli.global.vault {
        crate::advice::note_vault_given(v);
    }
    // And the socket given: the daemon's advice (`scopevault unlock`) is rendered naming it
    // and the vault, so that copied it acts on the daemon this command talked to (twenty-eighth
    // pass; crate::advice::in_daemon_text).
    if let Some(s) = &cli.global.socket {
        crate::advice::note_socket_given(s);
    }
    Ok(cli)
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // Every command, once, here, before it reads a passphrase, an identity, a secret or the
    // vault: not dumpable and no core file (twenty-fifth pass: `cred set` waiting for its
    // value on stdin left a core with every credential of the vault on Ctrl-\ under `ulimit
    // -c unlimited`; only `exec`, `redact` and the daemon hardened themselves). Also the
    // commands that hold no secret: one rule is easier to trust than a list. `exec` keeps
    // the core limit its command inherits.
    if let Err(e) = crate::sys::harden_command(matches!(cli.command, Command::Exec(_))) {
        errln!("scopevault: warning: {e}; a core dump of this command could hold secrets");
    }
    unlock::check_explicit_sources(&cli)?;
    let cli = with_vault_link_followed(cli)?;
    let g = &cli.global;
    match cli.command {
        Command::Lint(a) => lint::run(g, &a),
        Command::Serve(a) => serve::run(g, &a),
        Command::Status(a) => status::run(g, &a),
        Command::Lock => client_cmds::lock(g),
        Command::Unlock => client_cmds::unlock(g),
        Command::Reload => client_cmds::reload(g),
        Command::Get(a) => client_cmds::get(g, &a),
        Command::Totp(a) => client_cmds::totp(g, &a),
        Command::Exec(a) => client_cmds::exec(g, &a),
        Command::Audit(a) => audit::run(g, &a),
        Command::Demo => demo::run(g),
        Command::Completions { shell } => {
            // Generated into memory, then written: clap_complete panics on a write error.
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "scopevault", &mut buf);
            write_stdout(&buf)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Man(a) => man::run(&a),
        Command::Doctor(a) => doctor::run(g, &a),
        Command::Init(a) => init::run(g, &a),
        Command::Cred(c) => cred::run(g, &c),
        Command::Key(c) => key::run(g, &c),
        Command::Policy(c) => policy::run(g, &c),
        Command::Redact(a) => redact::run(g, &a),
        Command::Sync(c) => sync::run(g, &c),
        Command::Recipient => fleet::recipient(g),
        Command::Publish(a) => fleet::publish(g, &a),
        Command::Bundle(c) => fleet::bundle(g, &c),
    }
}

#[cfg(test)]
mod tests {
    use super::{nameable_stray, Stray};
    use clap::CommandFactory;

    /// A panic inside `catch_panic` (a dependency's, such as age's "Generated the all-zero
    /// esk", which ended `publish` with exit 101 before the twenty-ninth pass) comes back as
    /// its message, escaped and cut, and the thread goes on; a value comes back as it is.
    #[test]
    fn a_panic_inside_catch_panic_is_returned_as_its_message() {
        assert_eq!(super::catch_panic(|| 7), Ok(7));
        let why = super::catch_panic(|| -> u8 { panic!("all-zero {}", "esk") }).unwrap_err();
        assert_eq!(why, "all-zero esk");
        let why = super::catch_panic(|| -> u8 { std::panic::panic_any(3_u32) }).unwrap_err();
        assert_eq!(why, "no message");
        let why =
            super::catch_panic(|| -> u8 { panic!("a\u{1b}[2J{}", "x".repeat(400)) }).unwrap_err();
        assert!(
            !why.contains('\u{1b}') && why.chars().count() < 320,
            "{why}"
        );
        assert!(!super::CATCHING.with(std::cell::Cell::get));
    }

    /// `policy::RESERVED_ENV_VARS` (the variables `exec` never hands a field over in) is
    /// exactly the `SCOPEVAULT_*` variables scopevault reads or sets: every `env =` of the
    /// command line (what `--help` shows, in every subcommand) and every `"SCOPEVAULT_…"`
    /// literal in the source (the state directory, exec's own, the test hooks), so that a
    /// new one cannot be left out (twenty-third pass). Only `SCOPEVAULT_*` names matter: exec's
    /// variables all start so (`BAO_ADDR` cannot be one).
    #[test]
    fn the_reserved_variables_are_what_scopevault_reads_and_sets() {
        use std::collections::BTreeSet;
        fn from_clap(cmd: &clap::Command, out: &mut BTreeSet<String>) {
            for a in cmd.get_arguments() {
                if let Some(e) = a.get_env() {
                    out.insert(e.to_string_lossy().into_owned());
                }
            }
            for sub in cmd.get_subcommands() {
                from_clap(sub, out);
            }
        }
        fn from_source(dir: &std::path::Path, out: &mut BTreeSet<String>) {
            for e in std::fs::read_dir(dir).unwrap() {
                let p = e.unwrap().path();
                if p.is_dir() {
                    from_source(&p, out);
                    continue;
                }
                // The list itself is what is checked.
                if p.extension().is_none_or(|x| x != "rs") || p.ends_with("policy/mod.rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&p).unwrap();
                for (i, _) in text.match_indices("\"SCOPEVAULT_") {
                    let name: String = text[i + 1..]
                        .chars()
                        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                        .collect();
                    // (`"SCOPEVAULT_"` alone is the prefix, as this test spells it.)
                    if name.len() > "SCOPEVAULT_".len()
                        && text[i + 1 + name.len()..].starts_with('"')
                    {
                        out.insert(name);
                    }
                }
            }
        }
        let mut read = BTreeSet::new();
        from_clap(&super::args::Cli::command(), &mut read);
        read.retain(|v| v.starts_with("SCOPEVAULT_"));
        assert!(read.contains("SCOPEVAULT_IDENTITY_FILE"), "{read:?}");
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        from_source(&src, &mut read);
        assert!(read.contains("SCOPEVAULT_STATE_DIR"), "{read:?}");
        let reserved: BTreeSet<String> = crate::policy::RESERVED_ENV_VARS
            .iter()
            .map(|v| v.to_string())
            .collect();
        assert_eq!(reserved, read);
    }

    fn argv(args: &[&str]) -> Vec<std::ffi::OsString> {
        args.iter().map(Into::into).collect()
    }

    /// What clap names of a stray argument is named by us only when it is plainly a flag as
    /// typed; a value shaped a little like one is not.
    #[test]
    fn only_a_plain_flag_as_typed_is_named() {
        let named = |flag: &str, with_value| {
            Some(Stray {
                flag: flag.to_owned(),
                with_value,
            })
        };
        let a = argv(&["cred", "set", "x", "--feild", "-x", "--secert=Hunter2"]);
        assert_eq!(nameable_stray("--feild", &a), named("--feild", false));
        assert_eq!(nameable_stray("-x", &a), named("-x", false));
        assert_eq!(nameable_stray("--secert", &a), named("--secert", true));
        // clap's `-P` of `-Pa55word`: no argument is `-P`.
        assert_eq!(nameable_stray("-P", &argv(&["-Pa55word"])), None);
        // Not flag-shaped, whatever was typed.
        for v in [
            "S3cr3t",
            "--Tr0ub4dor",
            "--tr0ub4dor&3",
            "--9lives",
            "---",
            "--",
            "-",
            "-é",
            "-ab",
            "--a-very-long-passphrase-made-of-words",
        ] {
            assert_eq!(nameable_stray(v, &argv(&[v])), None, "{v}");
        }
        // Flag-shaped but not typed as such (`--x` of `--xyz`, never the case with clap).
        assert_eq!(nameable_stray("--x", &argv(&["--xyz"])), None);
    }
}
