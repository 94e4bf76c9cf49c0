//! `scopevault lint`: parse the policy, run every rule, write the report, map it to an exit
//! code (0 nothing blocking, 1 blocking findings, 2 usage, parse or I/O error).
use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;

use super::args::{DenyLevel, GlobalArgs, LintArgs, LintFormat};
use super::{Exit, EXIT_USAGE};
use crate::policy::lint::{lint_source, Class, LintOptions};
use crate::policy::read_policy_file;

pub(crate) fn run(g: &GlobalArgs, a: &LintArgs) -> anyhow::Result<ExitCode> {
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
    let source = read_policy_file(&a.file).map_err(|e| usage(e.render(None)))?;
    let today = time::OffsetDateTime::now_utc().date();
    let mut opts = LintOptions::new(today);
    if want_vault {
        opts.vault = Some(vault_meta(g)?);
    }
    let report = lint_source(&source, &path, &opts).map_err(|e| usage(e.render(Some(&source))))?;

    // Stage 3: write the report.
    let to_terminal = a.output.is_none() && std::io::stdout().is_terminal();
    let color = to_terminal && super::color_allowed();
    let text = match a.format {
        LintFormat::Text => report.render_text(color),
        LintFormat::Json => report.render_json(),
        LintFormat::Sarif => report.render_sarif(),
        LintFormat::Junit => report.render_junit(deny),
    };
    match &a.output {
        Some(out) => {
            std::fs::write(out, text.as_bytes())
                .with_context(|| format!("cannot write the report to {}", out.display()))?;
            // The file holds the report; the terminal still gets the one-line summary.
            eprintln!("{}", report.summary());
        }
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush())
                .context("cannot write the report to stdout")?;
            if a.format != LintFormat::Text {
                eprintln!("{}", report.summary());
            }
        }
    }
    if report.policy_invalid() {
        return Ok(ExitCode::from(EXIT_USAGE));
    }
    Ok(if report.blocking(deny) > 0 {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
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
    Ok(super::unlock::open_vault(g)?.lint_meta())
}
