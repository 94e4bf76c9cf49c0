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
                    "+ credential {name} ({}): declared, no secret yet: run `scopevault cred set {name} --secret {}`",
                    decl.kind(),
                    default_secret_field(decl.kind())
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
        Some(p) => out!("{}", p.to_canonical_toml())?,
        None => bail!(
            "no policy has been applied to this vault: run `scopevault policy apply policy.toml`"
        ),
    }
    Ok(ExitCode::SUCCESS)
}
