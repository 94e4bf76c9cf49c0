//! `scopevault policy apply|export`.

use std::collections::BTreeSet;
use std::process::ExitCode;

use anyhow::bail;

use super::args::{DenyLevel, GlobalArgs, PolicyCommand};
use super::escape_for_terminal;
use super::unlock::{open_vault, vault_path};
use crate::policy::{self, Policy};
use crate::vault::{self, Credential, WriteLock};

pub(crate) fn run(g: &GlobalArgs, cmd: &PolicyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        PolicyCommand::Apply {
            file,
            dry_run,
            deny,
        } => apply(g, file, *dry_run, *deny),
        PolicyCommand::Export => export(g),
    }
}

fn apply(
    g: &GlobalArgs,
    file: &std::path::Path,
    dry_run: bool,
    deny: Option<DenyLevel>,
) -> anyhow::Result<ExitCode> {
    // Stage one: everything about the file, before the vault is touched.
    let source = policy::read_policy_file(file)?;
    let display = file.display().to_string();
    let parsed = Policy::parse(&source, &display)?;
    // The vault stores the canonical form: one over the limit could not be exported and
    // applied again (twenty-fourth pass).
    parsed.canonical_toml_within_limit()?;
    gate(&parsed, deny)?;
    // On a checkpoint (a policy without locations) the runners live on this host: a name that
    // does not resolve is a typo or a missing account. A master's policy names the users of
    // its checkpoints, which need not exist where it is applied.
    if parsed.locations().next().is_none() {
        for name in crate::agent::state::unresolved_names(&parsed) {
            errln!("warning: {}", escape_for_terminal(&name));
        }
    }

    // Stage two: the vault, under the writer lock.
    let path = vault_path(g);
    // Unlock (which may prompt) before taking the writer lock, then read the file again
    // under it: a slow prompt must not hold every other writer up.
    // A dry run only reads: an older file accepted with `--allow-rollback` is not adopted
    // (nothing is saved; twentieth pass, found by attacking this pass's fixes: it was saved
    // again as a new generation, and the live vault was then refused as a rollback).
    // The generation a restored file was saved again as to adopt it (`--allow-rollback`).
    let mut adopted = None;
    let (mut vault, lock) = if dry_run {
        (super::unlock::open_vault_to_read(g)?, None)
    } else {
        let unlocked = open_vault(g)?;
        adopted = super::unlock::adopted(&unlocked).then(|| unlocked.generation());
        let lock = WriteLock::acquire(&path)?;
        let vault = unlocked.reopen(&super::unlock::open_options(g))?;
        (vault, Some(lock))
    };
    let old = vault.policy().cloned();
    let mut changes: Vec<String> = Vec::new();
    let now = vault::timestamp();

    for (name, decl) in parsed.credentials() {
        // Sorted like the canonical TOML, so apply(export(p)) finds nothing to change.
        let sorted = |v: Vec<&str>| -> Vec<String> {
            let set: BTreeSet<&str> = v.into_iter().collect();
            set.into_iter().map(str::to_owned).collect()
        };
        let scopes = sorted(decl.scopes());
        let origins = sorted(decl.origins());
        match vault.credentials().get(name) {
            None => {
                let mut c = Credential::new(decl.kind(), now);
                c.scopes = scopes;
                c.origins = origins;
                vault.add_credential(name, c)?;
                changes.push(format!(
                    "+ credential {name} ({}): declared, no secret yet: run `{}`",
                    decl.kind(),
                    crate::advice::command(&format!(
                        "cred set {name} --secret {}",
                        default_secret_field(decl.kind())
                    ))
                ));
            }
            Some(c) => {
                let mut what = Vec::new();
                if c.kind != decl.kind() {
                    // Codes are handed out for a `totp` credential only: of any other kind,
                    // `fetch` hands out the seed itself (twentieth pass, found by attacking
                    // who gets what: the change said only `kind totp -> generic`).
                    let seed = if c.kind == policy::CredentialKind::Totp {
                        " (its TOTP seed itself is handed out from now on, not codes: keep kind = \"totp\" if its checks only need codes)"
                    } else {
                        ""
                    };
                    what.push(format!("kind {} -> {}{seed}", c.kind, decl.kind()));
                }
                if c.scopes != scopes {
                    what.push(format!(
                        "scopes [{}] -> [{}]",
                        c.scopes.join(", "),
                        scopes.join(", ")
                    ));
                }
                if c.origins != origins {
                    what.push(format!(
                        "origins [{}] -> [{}]",
                        c.origins.join(", "),
                        origins.join(", ")
                    ));
                }
                if !what.is_empty() {
                    let kind = decl.kind();
                    vault.update_credential(name, |c| {
                        c.kind = kind;
                        c.scopes = scopes;
                        c.origins = origins;
                    })?;
                    changes.push(format!("~ credential {name}: {}", what.join("; ")));
                }
            }
        }
    }
    let declared: BTreeSet<&str> = parsed.credentials().map(|(n, _)| n).collect();
    let undeclared: Vec<String> = vault
        .credentials()
        .keys()
        .filter(|n| !declared.contains(n.as_str()))
        .cloned()
        .collect();
    // Notes, not changes: they alone never make a save.
    let notes: Vec<String> = undeclared
        .iter()
        .map(|n| format!("! credential {n} is stored but not declared in the policy (kept; no task can fetch it)"))
        .collect();
    let old_tasks: BTreeSet<String> = old
        .as_ref()
        .map(|p| p.tasks().map(|(n, _)| n.to_owned()).collect())
        .unwrap_or_default();
    for (name, task) in parsed.tasks() {
        if !old_tasks.contains(name) {
            changes.push(format!(
                "+ task {name} (credentials: {})",
                task.credentials().join(", ")
            ));
        } else if let Some(ot) = old.as_ref().and_then(|p| p.task(name)) {
            // The stored policy is canonical (sorted): compare as sets, and name what changed.
            let set =
                |v: Vec<&str>| -> BTreeSet<String> { v.into_iter().map(str::to_owned).collect() };
            let mut what = Vec::new();
            if set(ot.needs()) != set(task.needs()) {
                what.push("needs");
            }
            if set(ot.credentials()) != set(task.credentials()) {
                what.push("credentials");
            }
            if set(ot.runner_users()) != set(task.runner_users())
                || set(ot.runner_groups()) != set(task.runner_groups())
            {
                what.push("runners");
            }
            if ot.origin() != task.origin() {
                what.push("origin");
            }
            if set(ot.schedulers()) != set(task.schedulers()) {
                what.push("schedulers");
            }
            if !what.is_empty() {
                changes.push(format!("~ task {name}: {}", what.join(", ")));
            }
        }
    }
    for name in &old_tasks {
        if parsed.task(name).is_none() {
            changes.push(format!("- task {name}"));
        }
    }
    let old_canon = old.as_ref().map(Policy::to_canonical_toml);
    let new_canon = parsed.to_canonical_toml();
    let policy_changed = old_canon.as_deref() != Some(new_canon.as_str());
    if changes.is_empty() && policy_changed {
        changes.push("~ policy settings, catalog or exceptions".into());
    }
    // Names in the notes and changes are the policy's, checked; escaped all the same, as
    // every line quoting a file. Printed with the outcome, after the save: a failed write to
    // stdout must not stop the apply half-way, nor leave a saved change unsaid (twenty-third
    // pass).
    let mut report = String::new();
    for line in notes.iter().chain(&changes) {
        report.push_str(&escape_for_terminal(line));
        report.push('\n');
    }
    let shown_file = super::shown(file);
    if changes.is_empty() {
        // Nothing is written: the file stays byte for byte, the generation does not move;
        // unless opening it adopted a restored file (`--allow-rollback`), which is said: it
        // said "no changes" alone (twenty-third pass).
        if let Some(generation) = adopted {
            // The file was saved again.
            report.push_str(&format!(
                "no changes: {shown_file} is already applied (policy unchanged), but the {}\n",
                super::unlock::adopted_note(generation)
            ));
            super::client_cmds::print_after_save(
                g,
                &vault,
                report,
                &format!(
                    "the restored vault was adopted and saved (generation {})",
                    vault.generation()
                ),
            )??;
        } else if g.unlock.allow_rollback && !dry_run {
            report.push_str(&format!(
                "no changes: {shown_file} is already applied (policy unchanged), and --allow-rollback found nothing to adopt: {} (generation {}) is not older than this machine's rollback record nor than the generation the audit chain of {} has recorded of it. If a daemon refuses it, it writes another audit log (`serve --audit`): set SCOPEVAULT_AUDIT to that log and run this again\n",
                super::shown(&path),
                vault.generation(),
                super::shown(&super::unlock::serve_audit_log())
            ));
            super::write_stdout(report.as_bytes())?;
        } else {
            report.push_str(&format!(
                "no changes: {shown_file} is already applied (policy unchanged: nothing to apply)\n"
            ));
            super::write_stdout(report.as_bytes())?;
        }
        return Ok(ExitCode::SUCCESS);
    }
    let Some(lock) = lock.filter(|_| !dry_run) else {
        report.push_str("dry run: the vault was not changed\n");
        super::write_stdout(report.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    };
    vault.set_policy(parsed);
    vault.save(&lock)?;
    super::fleet::warn_local_change(&vault);
    report.push_str(&format!(
        "applied {} to {} (generation {})\n",
        shown_file,
        super::shown(&path),
        vault.generation()
    ));
    super::client_cmds::print_after_save(
        g,
        &vault,
        report,
        &format!(
            "the policy was applied and the vault saved (generation {})",
            vault.generation()
        ),
    )??;
    Ok(ExitCode::SUCCESS)
}

/// Run the lint before applying: errors always refuse; `--deny LEVEL` also refuses on findings
/// of that class and above. Findings are printed to stderr either way.
fn gate(parsed: &Policy, deny: Option<DenyLevel>) -> anyhow::Result<()> {
    use crate::policy::lint::{self, Class};
    let today = time::OffsetDateTime::now_utc().date();
    let report = lint::lint(parsed, &lint::LintOptions::new(today));
    if !report.findings().is_empty() {
        err!("{}", report.render_text(false));
    }
    let class = match deny {
        None | Some(DenyLevel::Error) => Class::Error,
        Some(DenyLevel::SecurityWarning) => Class::SecurityWarning,
        Some(DenyLevel::Warning) => Class::Warning,
        Some(DenyLevel::Suggestion) => Class::Suggestion,
    };
    let blocking = report.blocking(class);
    if blocking > 0 {
        bail!(
            "refusing to apply {}: the lint found {blocking} blocking finding(s) ({}); fix them (or add a reviewed exception) and apply again",
            report.path(),
            report.summary()
        );
    }
    Ok(())
}

fn default_secret_field(kind: policy::CredentialKind) -> &'static str {
    match kind {
        policy::CredentialKind::Login => "password",
        policy::CredentialKind::Token => "token",
        policy::CredentialKind::Totp => "totp_seed",
        policy::CredentialKind::Certificate => "private_key",
        policy::CredentialKind::Generic => "secret",
    }
}

fn export(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let vault = super::unlock::open_vault_to_read(g)?;
    match vault.policy() {
        Some(p) => out!("{}", shown_toml(&p.to_canonical_toml()))?,
        None => bail!(
            "no policy has been applied to this vault: run `{}`",
            crate::advice::command("policy apply policy.toml")
        ),
    }
    Ok(ExitCode::SUCCESS)
}

/// The canonical TOML as `policy export` prints it: every string (a value or a quoted key)
/// that holds a character of [`crate::text::needs_escape`] (a bidirectional control, a
/// zero-width space, a line separator, a tab, a line break) or a `##[` is written again as a
/// one-line TOML basic string whose escapes (`\u202E`, `\n`, `\u005B`) the TOML parser reads
/// back as the same text. The terminal shows no reordered or hidden text (Trojan Source,
/// CVE-2021-42574), no line of it is a CI log's workflow command, and applying the export still
/// changes nothing: the vault keeps the canonical form, which this only displays (twenty-fifth
/// pass: a description's U+202E was printed raw).
///
/// The canonical TOML has no comments: outside its strings there is nothing but names of
/// ours, `=`, brackets, numbers and booleans.
fn shown_toml(toml: &str) -> String {
    let mut out = String::with_capacity(toml.len());
    let mut rest = toml;
    while let Some(i) = rest.find(['"', '\'']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        let token = &tail[..toml_string_len(tail)];
        let hostile = token.contains("##[") || token.chars().any(crate::text::needs_escape);
        match hostile.then(|| toml_string_value(token)).flatten() {
            Some(value) => out.push_str(&toml_basic_string(&value)),
            None => out.push_str(token),
        }
        rest = &tail[token.len()..];
    }
    out.push_str(rest);
    out
}

/// The length of the TOML string that `s` begins with (a basic, literal or multi-line one;
/// the closing delimiter of a multi-line one may be followed by at most two more quotes that
/// belong to the text); all of `s` when it is not closed.
fn toml_string_len(s: &str) -> usize {
    let quote = if s.starts_with('"') { '"' } else { '\'' };
    let triple: String = std::iter::repeat_n(quote, 3).collect();
    let multi = s.starts_with(&triple);
    let mut i = if multi { 3 } else { 1 };
    while let Some(c) = s[i..].chars().next() {
        if c == '\\' && quote == '"' {
            i += 1;
            i += s[i..].chars().next().map_or(0, char::len_utf8);
        } else if multi && s[i..].starts_with(&triple) {
            i += 3;
            let extra = s[i..].chars().take(2).take_while(|&c| c == quote).count();
            return i + extra;
        } else if !multi && c == quote {
            return i + 1;
        } else {
            i += c.len_utf8();
        }
    }
    s.len()
}

/// The text of the TOML string `token`, as the TOML parser reads it.
fn toml_string_value(token: &str) -> Option<String> {
    let table: toml::Table = toml::from_str(&format!("v = {token}")).ok()?;
    table.get("v")?.as_str().map(str::to_owned)
}

/// `s` as a one-line TOML basic string: `"` and `\` escaped, a character of
/// [`crate::text::needs_escape`] written `\n`, `\t`, `\r` or `\uXXXX`/`\UXXXXXXXX`, and a `[`
/// after `##` as `\u005B`.
fn toml_basic_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '[' if out.ends_with("##") => out.push_str("\\u005B"),
            c if crate::text::needs_escape(c) && (c as u32) <= 0xFFFF => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c if crate::text::needs_escape(c) => out.push_str(&format!("\\U{:08X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod shown_toml_tests {
    use super::shown_toml;

    /// Whatever a string holds, and however the TOML writer quotes it (basic, literal,
    /// multi-line), `policy export` shows it with no character a terminal hides or reorders
    /// and no `##[` or line beginning with `::`, and it parses back to the same text.
    #[test]
    fn shown_toml_escapes_hostile_strings_and_parses_back_the_same() {
        let texts = [
            "plain",
            "Full \u{202e}nimda\u{202c} access",
            "zero\u{200b}width \u{feff} \u{2028} \u{a0} \u{e0041}",
            "quote \" and backslash \\ and '''",
            "a\nb\n::add-mask::x\n\"\"\"",
            "tab\there ##[error]x",
            "'single' \u{7f}\u{9b}",
            "trailing quote\"",
            "é 字 😀",
        ];
        for text in texts {
            let q = toml::Value::String(text.to_owned()).to_string();
            // A quoted key as the canonical writer writes one (a name holds no line break).
            let key = if text.contains('\n') {
                "k".to_owned()
            } else {
                q.clone()
            };
            let canonical = format!("{key} = {q}\n\n[x]\ny = [{q}, {q}]\nz = 1\n");
            let shown = shown_toml(&canonical);
            assert!(
                !shown
                    .chars()
                    .any(|c| c != '\n' && crate::text::needs_escape(c)),
                "{shown:?}"
            );
            assert!(!shown.contains("##["), "{shown}");
            for line in shown.lines() {
                assert!(!line.trim_start().starts_with("::"), "{shown}");
            }
            let back: toml::Table = toml::from_str(&shown).unwrap();
            let was: toml::Table = toml::from_str(&canonical).unwrap();
            assert_eq!(back, was, "{canonical:?} -> {shown:?}");
            if !text.contains("##[") && !text.chars().any(crate::text::needs_escape) {
                assert_eq!(shown, canonical);
            }
        }
    }
}
