//! `scopevault lint`: parse the policy, run every rule, write the report, map it to an exit
//! code (0 nothing blocking, 1 blocking findings, 2 usage, parse or I/O error).
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::args::{DenyLevel, GlobalArgs, LintArgs, LintFormat};
use super::{Exit, EXIT_USAGE};
use crate::policy::lint::{lint, Class, LintOptions, SarifLocation};
use crate::policy::{read_policy_source, Policy, PolicyError, PolicySource};
// A path as lint's messages show it ([`shown`]): file names are anyone's text (a pull request
// adds files, a CI loop passes them on), so a name cannot write a CI log's command lines
// (`::add-mask::`, and `##[add-mask]` through [`defused`], which every line lint prints goes
// through) nor drive a terminal, as docs/lint-rules.md promises for everything lint prints.
use crate::text::{defused, escape_for_terminal, shown};

pub(crate) fn run(g: &GlobalArgs, a: &LintArgs) -> anyhow::Result<ExitCode> {
    let Some(out) = &a.output else {
        return lint_and_report(g, a);
    };
    // The report must never overwrite what lint reads, nor go through a link, nor a file
    // that is recognisably not a report; all judged before anything is removed or written.
    refuse_an_input_as_output(out, g, a)?;
    refuse_a_link_as_output(out)?;
    refuse_what_is_not_a_report(out)?;
    // A report left from an earlier run must not survive a run that writes none (the policy
    // cannot be read or parsed, an audit log does not verify, the vault cannot be opened, a
    // write fails half-way): a CI step that uploads the file when it exists would publish it
    // as current. So a regular file there is removed before anything else, and again if this
    // run fails after starting to write.
    remove_stale_report(out);
    let result = lint_and_report(g, a);
    if result.is_err() {
        remove_stale_report(out);
    }
    result
}

/// Exit 2 when `--output` names a file lint reads: the policy file, an `--audit` log, the
/// vault, `--passphrase-file`, `--identity-file`, what `--passphrase-fd` refers to, or a file
/// in scopevault's state directory (the rollback record, the audit anchors): the same file
/// as [`crate::paths::same_file`] judges it (the same path, directory entry, canonical path,
/// or device and inode). The unlock files count
/// whether or not `--with-vault` is given: they are named on the command line as inputs.
/// The stale-report removal took the vault itself before lint failed with "no vault"
/// (twenty-second pass).
fn refuse_an_input_as_output(out: &Path, g: &GlobalArgs, a: &LintArgs) -> anyhow::Result<()> {
    let mut inputs: Vec<(PathBuf, String)> = vec![(a.file.clone(), "the policy file".into())];
    for l in &a.audit {
        inputs.push((l.clone(), "an audit log given with --audit".into()));
    }
    if a.with_vault {
        inputs.push((super::unlock::vault_path(g), "the vault".into()));
    } else if let Some(v) = &g.vault {
        inputs.push((v.clone(), "the vault".into()));
    }
    if let Some(f) = &g.unlock.passphrase_file {
        inputs.push((f.clone(), "the passphrase file".into()));
    }
    if let Some(f) = &g.unlock.identity_file {
        inputs.push((f.clone(), "the identity file".into()));
    }
    if let Some(fd) = g.unlock.passphrase_fd {
        // The descriptor's file, through /proc: a regular file there has its device and
        // inode; a pipe or a terminal is never a path `--output` can name.
        inputs.push((
            PathBuf::from(format!("/proc/self/fd/{fd}")),
            format!("what --passphrase-fd {fd} reads"),
        ));
    }
    for (input, what) in &inputs {
        if crate::paths::same_file(out, input) {
            return Err(usage(format!(
                "--output {}: that is {what} ({}); the report would overwrite it. Write the report to another file",
                shown(out),
                shown(input)
            )));
        }
    }
    if in_state_dir(out) {
        return Err(usage(format!(
            "--output {}: that is in scopevault's state directory ({}), which holds the rollback record and the audit anchors lint reads; the report would overwrite them. Write the report to another file",
            shown(out),
            shown(&crate::paths::state_dir())
        )));
    }
    Ok(())
}

/// Whether `out` would be a file in scopevault's state directory (or below it), judged on
/// the canonical paths of its directory.
fn in_state_dir(out: &Path) -> bool {
    let Ok(state) = std::fs::canonicalize(crate::paths::state_dir()) else {
        return false;
    };
    let dir = match out.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    std::fs::canonicalize(dir).is_ok_and(|d| d.starts_with(&state))
}

/// Exit 2 when the regular file at `--output` is recognisably not a lint report: a scopevault
/// vault (its magic `SCOPEVLT`), an age-encrypted file (binary or armoured header) or an age
/// identity (`AGE-SECRET-KEY-1` in its first 4 KiB). Such a file is neither removed (as a
/// stale report) nor overwritten, whether or not this run names it as an input: a backup
/// copy of the vault or a key file given as `--output` by mistake (or by a CI config a pull
/// request edits) is not lost. Anything else at FILE is taken for an earlier report.
fn refuse_what_is_not_a_report(out: &Path) -> anyhow::Result<()> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    // Only a regular file is judged; links are refused before, a FIFO or a device is left
    // alone (and never opened here: O_NONBLOCK, and the type checked on what was opened).
    if !std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_file()) {
        return Ok(());
    }
    let Ok(file) = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(
            (rustix::fs::OFlags::NOFOLLOW
                | rustix::fs::OFlags::NONBLOCK
                | rustix::fs::OFlags::CLOEXEC)
                .bits() as i32,
        )
        .open(out)
    else {
        return Ok(());
    };
    if !file.metadata().is_ok_and(|m| m.is_file()) {
        return Ok(());
    }
    let mut head = Vec::with_capacity(4096);
    if file.take(4096).read_to_end(&mut head).is_err() {
        return Ok(());
    }
    let Some(what) = not_a_report(&head) else {
        return Ok(());
    };
    Err(usage(format!(
        "--output {}: it holds {what}, not a lint report; it is neither removed nor overwritten. Write the report to another file",
        shown(out)
    )))
}

/// What the first bytes of a file say it is, when that is recognisably not a lint report.
fn not_a_report(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(crate::vault::MAGIC) {
        Some("a scopevault vault")
    } else if head.starts_with(b"age-encryption.org/")
        || head.starts_with(b"-----BEGIN AGE ENCRYPTED FILE-----")
    {
        Some("an age-encrypted file")
    } else if head.windows(16).any(|w| w == b"AGE-SECRET-KEY-1") {
        Some("an age identity (a secret key)")
    } else {
        None
    }
}

/// Exit 2 when `--output` names a symbolic link. A pull request can commit `report.sarif` as
/// a link to `../victim.txt`, and a CI job that writes its report under a fixed name in the
/// checkout would write it outside the repository (nineteenth pass). Refused rather than
/// replaced: a link there is not a report of ours, the job fails naming it, and a link the
/// caller meant (`/dev/stdout`) is not replaced by a file either. The report file is also
/// opened `O_NOFOLLOW` ([`create_report`]), for a link made after this check.
fn refuse_a_link_as_output(out: &Path) -> anyhow::Result<()> {
    if std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_symlink()) {
        return Err(usage(format!(
            "--output {}: it is a symbolic link; the report is never written through a link, which could lead out of the repository. Remove it, or write the report to another path",
            shown(out)
        )));
    }
    Ok(())
}

/// Open `--output` for the report: created or truncated, never through a symbolic link
/// (`O_NOFOLLOW`: a link there fails with `ELOOP`). A FIFO or a device (`/dev/null`) is
/// written as it is.
fn create_report(out: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags((rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC).bits() as i32)
        .open(out)
}

/// Remove the regular file at `out`, if there is one. Anything else (a symlink, a FIFO,
/// `/dev/stdout`) is left alone: it is not a report this command wrote.
fn remove_stale_report(out: &Path) {
    let regular = std::fs::symlink_metadata(out).is_ok_and(|m| m.file_type().is_file());
    if regular {
        if let Err(e) = std::fs::remove_file(out) {
            say(format!(
                "warning: cannot remove the earlier report {}: {e}; it is not this run's",
                shown(out)
            ));
        }
    }
}

fn lint_and_report(g: &GlobalArgs, a: &LintArgs) -> anyhow::Result<ExitCode> {
    // Stage 1: validate what the user typed before touching any file.
    let deny = match a.deny.unwrap_or(DenyLevel::SecurityWarning) {
        DenyLevel::Error => Class::Error,
        DenyLevel::SecurityWarning => Class::SecurityWarning,
        DenyLevel::Warning => Class::Warning,
        DenyLevel::Suggestion => Class::Suggestion,
    };
    // Only --with-vault: SCOPEVAULT_VAULT in a shell's environment must not turn CI-style
    // lint runs into vault-opening ones.
    let want_vault = a.with_vault;
    let path = a.file.display().to_string();

    // Stage 2: read and parse.
    let PolicySource { text: source, file } =
        read_policy_source(&a.file).map_err(|e| usage(e.render(None)))?;
    let today = time::OffsetDateTime::now_utc().date();
    let mut opts = LintOptions::new(today);
    if want_vault {
        opts.vault = Some(vault_meta(g)?);
    }
    let since = match &a.since {
        Some(s) => Some(
            crate::usage::parse_since(s)
                // Not the value: a usage error never quotes a value typed (README, "Exit
                // codes"; twenty-fifth pass, found by the re-attacker of this pass's fixes:
                // a secret pasted after `--since` landed in a CI log).
                .map_err(|why| usage(format!("--since: {why}")))?,
        ),
        None => None,
    };
    // A policy reached through a link out of its repository (a pull request can commit
    // `policy.toml` as a link to any file of the CI runner) is not the repository's text: no
    // line of it is quoted, lest a token in it land in the CI log; nor a parse error's
    // message, which quotes the value it refuses (`invalid type: string "…"`). Judged on the
    // file read, not on what the path leads to now.
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"));
    let withheld = crate::policy::lint::link_out_of_repository(&a.file, &file, &cwd).then(|| {
        format!(
            "source not quoted: {} is a link out of the repository",
            shown(&a.file)
        )
    });
    let policy = Policy::parse_lenient(&source, &path).map_err(|e| {
        usage(match &withheld {
            None => e.render(Some(&source)),
            Some(why) => match &e {
                PolicyError::Invalid {
                    path, line, column, ..
                } => format!(
                    "{}:{line}:{column}: not a valid policy (the parser's message is not shown either: it may quote the file's text)\n({why})",
                    escape_for_terminal(path)
                ),
                other => format!("{}\n({why})", other.render(None)),
            },
        })
    })?;
    if !a.audit.is_empty() {
        let now = time::OffsetDateTime::now_utc();
        let ev = crate::usage::read_evidence(&a.audit, &policy, since, now)
            .map_err(|e| usage(e.to_string()))?;
        // The note names logs and the policy file: escaped like every name lint prints.
        for note in [&ev.ahead_note, &ev.note].into_iter().flatten() {
            say(format!("note: {}", escape_for_terminal(note)));
        }
        opts.usage = Some(std::sync::Arc::new(ev));
    }
    let mut report = lint(&policy, &opts);
    if let Some(why) = withheld {
        report.withhold_source(why);
    }

    // Stage 3: write the report, straight to a buffered writer as the findings are walked.
    let to_terminal = a.output.is_none() && std::io::stdout().is_terminal();
    let color = to_terminal && super::color_allowed();
    let write = |w: &mut dyn Write| -> std::io::Result<()> {
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, w);
        match a.format {
            LintFormat::Text => report.write_text(&mut w, color)?,
            LintFormat::Json => report.write_json(&mut w)?,
            LintFormat::Sarif => report.write_sarif(&mut w, &sarif_location(&a.file))?,
            LintFormat::Junit => report.write_junit(&mut w, deny)?,
        }
        w.flush()
    };
    // A reader that goes away (`lint … | head`, a FIFO given as `--output`) cuts the report,
    // not the verdict. Other commands take a closed pipe for the end of output and exit 0
    // (README); lint's exit code *is* its answer, and a CI step under `pipefail` must not pass
    // a policy with blocking findings because its log was cut. So the write stops there, and
    // the run ends as it would have with the whole report read.
    let cut = |r: std::io::Result<()>| match r {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(true),
        r => r.map(|()| false),
    };
    let was_cut = match &a.output {
        Some(out) => {
            let mut file = create_report(out)
                .with_context(|| format!("cannot write the report to {}", shown(out)))?;
            cut(write(&mut file))
                .with_context(|| format!("cannot write the report to {}", shown(out)))?
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            cut(write(&mut stdout)).context("cannot write the report to stdout")?
        }
    };
    if a.format == LintFormat::Sarif {
        if let Some(warning) = report.sarif_limit_warning() {
            say(format!("warning: {warning}"));
        }
    }
    // The text report ends with the summary line; otherwise (and when the report went to a
    // file, or its reader cut it before its last line) stderr gets it.
    if a.output.is_some() || a.format != LintFormat::Text || was_cut {
        say(report.summary());
    }
    Ok(ExitCode::from(verdict(&report, deny)))
}

/// lint's exit code for a report (docs/lint-rules.md, "Classes and exit codes"): 2 for a
/// policy `Policy::parse` refuses (an `invalid-scope` or `implies-cycle` finding), 1 when a
/// finding blocks at `deny`, else 0.
fn verdict(report: &crate::policy::lint::Report, deny: Class) -> u8 {
    if report.policy_invalid() {
        EXIT_USAGE
    } else if report.blocking(deny) > 0 {
        1
    } else {
        0
    }
}

/// SARIF's location of the policy: relative to the repository that holds it
/// ([`SarifLocation::of_policy`]).
fn sarif_location(file: &std::path::Path) -> SarifLocation {
    let cwd = std::env::current_dir().unwrap_or_else(|_| std::path::PathBuf::from("/"));
    SarifLocation::of_policy(file, &cwd)
}

/// Print `line` on stderr, defused for a CI log ([`defused`]): names in it are anyone's text
/// (a file named `::error file=…::x.toml`, a log's `##[add-mask]`), and a CI log holds stderr.
fn say(line: String) {
    errln!("{}", defused(&line));
}

fn usage(message: String) -> anyhow::Error {
    Exit {
        code: EXIT_USAGE,
        message,
    }
    .into()
}

/// Open the vault (the usual unlock sources) and hand the lint its metadata: names, whether a
/// secret is stored, when it last changed. No secret value reaches the lint.
fn vault_meta(g: &GlobalArgs) -> anyhow::Result<crate::policy::VaultMeta> {
    Ok(super::unlock::open_vault_to_read(g)?.lint_meta())
}
