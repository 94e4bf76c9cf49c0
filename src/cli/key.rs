//! `scopevault key list|add|remove|passwd|migrate`: key slots. Only `migrate` re-encrypts the
//! payload.

use std::process::ExitCode;

use super::args::{GlobalArgs, KeyAddArgs, KeyCommand, KeyPasswdArgs};
use super::escape_for_terminal;
use super::init::{keyring_store, refuse_existing, write_private_new};
use super::unlock::{
    new_passphrase, open_options, open_vault, open_vault_keeping_passphrase, open_vault_unattended,
    passphrase_from_args, prompt_passphrase, vault_path, warn_test_kdf,
};
use crate::vault::{self, Slot, Unlock, Vault, VaultError, WriteLock};

pub(crate) fn run(g: &GlobalArgs, cmd: &KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::List { json } => list(g, *json),
        KeyCommand::Add(a) => add(g, a),
        KeyCommand::Remove { slot, force } => remove(g, slot, *force),
        KeyCommand::Passwd(a) => passwd(g, a),
        KeyCommand::Migrate {
            trust_v1_identity_slot,
        } => migrate(g, *trust_v1_identity_slot),
    }
}

fn rfc3339(t: Option<time::OffsetDateTime>) -> Option<String> {
    t.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
}

fn list(g: &GlobalArgs, json: bool) -> anyhow::Result<ExitCode> {
    // Slot metadata is in the header, which the MAC authenticates only once the vault is
    // unlocked. Given a source that needs no input (an identity or passphrase file, or an
    // enrolled keyring slot that answers), the vault is opened first and a forged header
    // refused as `cred list` refuses it; without one the header is listed as the file has it
    // (labels are checked as printable text when it is read) and the listing says it is not
    // authenticated. It listed a renamed, backdated header without its identity slot at
    // generation 99 as fact, exit 0, even given the passphrase (nineteenth pass).
    let (slots, authenticated) = match open_vault_unattended(g)? {
        Ok(v) => (v.slots().to_vec(), true),
        Err(keyring_note) => {
            errln!(
                "note: this listing is not authenticated: it is the vault file's header as it stands, and anyone who can write the file can change labels, dates and which slots it shows; give --passphrase-file, --passphrase-fd or --identity-file to have it checked (a forged header is then refused){}",
                escape_for_terminal(&keyring_note)
            );
            (crate::vault::read_slots(&vault_path(g))?, false)
        }
    };
    if json {
        let v: Vec<_> = slots
            .iter()
            .map(|s| {
                serde_json::json!({
                    "id": s.id(),
                    "type": s.kind(),
                    "label": s.label(),
                    "created": rfc3339(s.created()),
                    "changed": rfc3339(s.changed()),
                    "description": s.describe(),
                    "authenticated": authenticated,
                })
            })
            .collect();
        super::output::print_shown_json(&v)?;
    } else {
        // One line a slot: id, label (`-` when none), created (`-` for slots made before
        // slots recorded it), description, and when a passphrase was last changed.
        // Escaped: the header is not authenticated until the vault is opened.
        let labels: Vec<String> = slots
            .iter()
            .map(|s| escape_for_terminal(s.label().unwrap_or("-")))
            .collect();
        let width = labels.iter().map(|l| l.chars().count()).max().unwrap_or(1);
        for (s, label) in slots.iter().zip(&labels) {
            let pad = width - label.chars().count();
            let created = rfc3339(s.created()).unwrap_or_else(|| "-".into());
            let changed = rfc3339(s.changed())
                .map(|c| format!(", passphrase changed {c}"))
                .unwrap_or_default();
            outln!(
                "{}  {label}{:pad$}  {created:<20}  {}{changed}",
                escape_for_terminal(s.id()),
                "",
                escape_for_terminal(&s.describe())
            )?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `id`, or `id (label NAME)`, escaped.
fn named(s: &Slot) -> String {
    escape_for_terminal(&match s.label() {
        Some(l) => format!("{} (label {l})", s.id()),
        None => s.id().to_owned(),
    })
}

fn add(g: &GlobalArgs, a: &KeyAddArgs) -> anyhow::Result<ExitCode> {
    let path = vault_path(g);
    refuse_existing(a.identity_out.as_deref())?;
    // Everything typed is checked before any prompt.
    if let Some(l) = &a.label {
        // A duplicate, or a label that looks like another slot's, is refused before the
        // prompt too (checked again once authenticated).
        vault::check_label(l)?;
        vault::check_new_label_among(&vault::read_slots(&path)?, l)?;
    }
    let new_pass = if a.passphrase {
        warn_test_kdf();
        Some(new_passphrase(
            a.new_passphrase_file.as_deref(),
            None,
            a.weak_passphrase_ok,
            super::unlock::NewFrom::Key,
        )?)
    } else {
        None
    };
    // Unlock (which may prompt) before taking the writer lock, then read the file again
    // under it: a slow prompt must not hold every other writer up.
    let unlocked = open_vault(g)?;
    let lock = WriteLock::acquire(&path)?;
    let mut vault = unlocked.reopen(&super::unlock::open_options(g))?;
    drop(unlocked);
    // A duplicate label is refused before the slot is made (a keyring slot stores its key
    // at once).
    if let Some(l) = &a.label {
        vault.check_new_label(l)?;
    }
    let mut written = None;
    let id = if let Some(p) = &new_pass {
        vault.add_passphrase_slot(p)?.id().to_owned()
    } else if a.keyring {
        vault
            .add_keyring_slot(keyring_store(a.keyring_store))?
            .id()
            .to_owned()
    } else if let Some(out) = &a.identity_out {
        let text = vault.add_identity_slot()?;
        write_private_new(out, text.as_bytes())?;
        written = Some(out);
        vault.slots().last().expect("added").id().to_owned()
    } else {
        unreachable!("clap requires one of --passphrase, --keyring, --identity-out")
    };
    let saved = match &a.label {
        Some(l) => vault.set_slot_label(&id, l).map(|_| ()),
        None => Ok(()),
    }
    .and_then(|()| vault.save(&lock));
    if let Err(e) = saved {
        if let Some(out) = written {
            let _ = std::fs::remove_file(out);
        }
        return Err(e.into());
    }
    let s = vault.slots().iter().find(|s| s.id() == id).expect("added");
    super::output::after_change(
        &format!("the key slot {} was added and saved", named(s)),
        outln!(
            "added key slot: {} {}",
            named(s),
            escape_for_terminal(&s.describe())
        ),
    )?;
    Ok(ExitCode::SUCCESS)
}

fn remove(g: &GlobalArgs, id_or_label: &str, force: bool) -> anyhow::Result<ExitCode> {
    let path = vault_path(g);
    // Unlock (which may prompt) before taking the writer lock, then read the file again
    // under it: a slow prompt must not hold every other writer up.
    let unlocked = open_vault(g)?;
    let lock = WriteLock::acquire(&path)?;
    let mut vault = unlocked.reopen(&super::unlock::open_options(g))?;
    drop(unlocked);
    // Not the slots this host can open, leaving only keyring slots whose key is elsewhere (a
    // vault copied from another host: exit 0 and the vault locked here for good, twentieth
    // pass), unless told the vault will be opened there.
    if let Some(why) = vault.closed_here_without(id_or_label)? {
        let which = vault
            .slots()
            .iter()
            .find(|s| s.is_named(id_or_label))
            .map(named)
            .unwrap_or_default();
        if !force {
            return Err(closed_here_refusal(&which, &why).into());
        }
        errln!(
            "warning: --force: removing key slot {which} although no slot left can be opened on this host ({}): only where the slots left work can the vault be opened again",
            escape_for_terminal(&why)
        );
    }
    let slot = vault.remove_slot(id_or_label)?;
    vault.save(&lock)?;
    match Vault::forget_keyring_key(&slot) {
        Ok(n) if n > 1 => {
            if let Slot::Keyring {
                store,
                service,
                account,
                ..
            } = &slot
            {
                errln!(
                    "note: the {} store held {n} items for the entry {}/{}, where a keyring slot has one (the others made by another program or by hand): deleted all {n}, so none is left to hold the slot's key",
                    store.as_str(),
                    escape_for_terminal(service),
                    escape_for_terminal(account)
                );
            }
        }
        Ok(_) => {}
        // The key may be left in a keyring: said in so many words, since it opens every copy
        // of the vault made before (twenty-first pass).
        Err(e) => errln!(
            "warning: the slot is removed from the vault, but its keyring entry could not be deleted, so its key may still be in a keyring, where it opens any copy of the vault made before this removal (a backup): {}",
            escape_for_terminal(&e.to_string())
        ),
    }
    super::output::after_change(
        &format!(
            "the key slot {} was removed and the vault saved",
            named(&slot)
        ),
        outln!(
            "removed key slot {}: {}",
            named(&slot),
            escape_for_terminal(&slot.describe())
        ),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// `key remove`'s refusal to leave only slots this host cannot open. `which` is the slot as
/// [`named`] shows it; `why` is what [`Vault::closed_here_without`] said, which quotes the
/// keyring's own error text: escaped here, line breaks included, as the `--force` warning
/// escapes it (twenty-first pass: a line break in it started a line that read as ours).
fn closed_here_refusal(which: &str, why: &str) -> VaultError {
    let why = escape_for_terminal(why);
    VaultError::Usage(format!(
        "refusing to remove key slot {which}: no slot left could be opened on this host, so the vault could never be unlocked here again ({why}). Add a slot that works here first (`{}`, `{}`, or `{}` for this host's keyring), then remove this one; if the vault will be opened only where the slots left work, give --force",
        crate::advice::command("key add --passphrase"),
        crate::advice::command("key add --identity-out FILE"),
        crate::advice::command("key add --keyring")
    ))
}

/// The id of the passphrase slot `key passwd` changes: the one `--slot` names (by id or
/// label), or the vault's only passphrase slot. Several and no `--slot`: refused, listing them.
fn passwd_target(slots: &[Slot], wanted: Option<&str>) -> Result<String, VaultError> {
    if let Some(w) = wanted {
        let s = slots
            .iter()
            .find(|s| s.id() == w)
            .or_else(|| slots.iter().find(|s| s.is_named(w)));
        return match s {
            None => Err(VaultError::Usage(format!(
                "--slot: no key slot has that id or label: `{}` shows them",
                crate::advice::command("key list")
            ))),
            Some(s @ Slot::Passphrase { .. }) => Ok(s.id().to_owned()),
            Some(s) => Err(VaultError::Usage(format!(
                "key slot {} is {} slot: `key passwd` changes passphrase slots only",
                named(s),
                s.a_kind()
            ))),
        };
    }
    let pass: Vec<&Slot> = slots
        .iter()
        .filter(|s| matches!(s, Slot::Passphrase { .. }))
        .collect();
    match pass[..] {
        [] => Err(VaultError::Usage(format!(
            "this vault has no passphrase slot: add one with `{}`",
            crate::advice::command("key add --passphrase")
        ))),
        [one] => Ok(one.id().to_owned()),
        _ => {
            let list: Vec<String> = pass
                .iter()
                .map(|s| {
                    format!(
                        "{} (created {})",
                        named(s),
                        rfc3339(s.created()).unwrap_or_else(|| "unknown".into())
                    )
                })
                .collect();
            Err(VaultError::Usage(format!(
                "this vault has {} passphrase slots: choose one with --slot ID|LABEL: {}",
                pass.len(),
                list.join(", ")
            )))
        }
    }
}

/// `key passwd`: unlock as any command does, ask for the new passphrase (after the current
/// one, so the prompts come in that order), then under the write lock re-read the vault with
/// the identity in memory and replace the slot in one atomic save. A new passphrase a
/// passphrase slot already takes is refused ([`Vault::change_passphrase`]).
fn passwd(g: &GlobalArgs, a: &KeyPasswdArgs) -> anyhow::Result<ExitCode> {
    let path = vault_path(g);
    // Fail before any prompt when the slot choice is wrong (the header is re-checked once it
    // is authenticated).
    passwd_target(&vault::read_slots(&path)?, a.slot.as_deref())?;
    let (vault, used) = open_vault_keeping_passphrase(g)?;
    let target = passwd_target(vault.slots(), a.slot.as_deref())?;
    let read = vault.slots().iter().find(|s| s.id() == target).cloned();
    warn_test_kdf();
    let new_pass = new_passphrase(
        a.new_passphrase_file.as_deref(),
        None,
        a.weak_passphrase_ok,
        super::unlock::NewFrom::Key,
    )?;
    let lock = WriteLock::acquire(&path)?;
    // The file may have changed while the new passphrase was typed: start from what is on
    // disk now, with the same authenticity and rollback checks.
    let mut vault = vault.reopen(&open_options(g))?;
    // The slot must still be the one read when the command opened the vault. Another `key
    // passwd` of it saved in between: both said the old passphrase no longer opens the file,
    // and only the later new passphrase did, the earlier one silently lost; the later one,
    // opened with the passphrase the slot no longer took, said "the vault was not opened with
    // it" (twenty-seventh pass). As `key remove` of a slot removed meanwhile, it is refused.
    let now = vault.slots().iter().find(|s| s.id() == target);
    if now != read.as_ref() {
        let which = read.as_ref().map(named).unwrap_or_else(|| target.clone());
        return Err(VaultError::Usage(format!(
            "key slot {which} changed since this command opened the vault: another command saved {} (generation {}) and {}. Nothing was changed: run `{}` again, with the passphrase that opens the slot now",
            super::shown(&path),
            vault.generation(),
            if now.is_some() {
                "changed that slot (its passphrase, label or parameters)"
            } else {
                "removed that slot"
            },
            crate::advice::command(&format!("key passwd --slot {target}"))
        ))
        .into());
    }
    // Which other slots take the old passphrase, told before the slot changes (a slot made
    // before scopevault refused a shared passphrase: "the old passphrase no longer opens this
    // file" was said while it opened it, twentieth pass). The passphrase the vault was opened
    // with is tried on the passphrase slots (the slot that opened it is known to take it):
    // when the slot being changed takes it, it is the old passphrase, and the others that take
    // it still do; when it does not, the old passphrase is another, which those slots do not
    // take, and only the rest are left untried.
    let takers: Vec<String> = match &used {
        Some(p) => vault
            .passphrase_slots_accepting(p, true)?
            .iter()
            .map(|s| s.id().to_owned())
            .collect(),
        None => Vec::new(),
    };
    drop(used);
    let other = |s: &&Slot| matches!(s, Slot::Passphrase { .. }) && s.id() != target;
    let old = if takers.contains(&target) {
        OldPassphrase::StillOpens(
            vault
                .slots()
                .iter()
                .filter(other)
                .filter(|s| takers.iter().any(|t| t == s.id()))
                .map(named)
                .collect(),
        )
    } else {
        OldPassphrase::Untried(
            vault
                .slots()
                .iter()
                .filter(other)
                .filter(|s| !takers.iter().any(|t| t == s.id()))
                .map(named)
                .collect(),
        )
    };
    let s = vault.change_passphrase(&target, &new_pass)?;
    let what = named(s);
    vault.save(&lock)?;
    let (line, warning) = passwd_outcome(&what, vault.generation(), old);
    if let Some(w) = &warning {
        errln!("warning: {w}");
    }
    super::output::after_change(
        &format!("the passphrase of {what} was changed and the vault saved"),
        outln!("{line}"),
    )?;
    Ok(ExitCode::SUCCESS)
}

/// What `key passwd` knows of the other passphrase slots and the slot's old passphrase.
enum OldPassphrase {
    /// The vault was opened with the old passphrase; these other slots (named) take it too.
    StillOpens(Vec<String>),
    /// The vault was not opened with it (an identity file, the keyring, another slot's
    /// passphrase): these other passphrase slots (named) were not tried with it; the rest
    /// take the passphrase the vault was opened with, so not the old one.
    Untried(Vec<String>),
}

/// `key passwd`'s report of a change to slot `what` saved as `generation`: the line for stdout,
/// and a warning when the old passphrase still opens this file through another slot. Every
/// sentence is true of the file saved.
fn passwd_outcome(what: &str, generation: u64, old: OldPassphrase) -> (String, Option<String>) {
    const COPIES: &str = "still opens copies made before, and whoever opened one holds the vault key, which a slot change does not replace (docs/security.md, \"Limits\")";
    let whole_file = format!(
        "changed the passphrase of key slot {what}: the old passphrase no longer opens this file (generation {generation}), but {COPIES}"
    );
    match old {
        OldPassphrase::StillOpens(still) if still.is_empty() => (whole_file, None),
        OldPassphrase::StillOpens(still) => (
            format!(
                "changed the passphrase of key slot {what} (generation {generation}): the old passphrase no longer opens that slot, but it still opens this file through key slot {}, and it {COPIES}",
                still.join(", key slot ")
            ),
            Some(format!(
                "the old passphrase still opens this file: key slot {} takes the same passphrase (made before scopevault refused a shared one). Change it there too (`{}`) or remove that slot (`{}`)",
                still.join(" and key slot "),
                crate::advice::command("key passwd --slot ID"),
                crate::advice::command("key remove ID")
            )),
        ),
        // Only passphrase slots take a passphrase: with none left untried, the old one opens
        // nothing in this file, whatever it was.
        OldPassphrase::Untried(others) if others.is_empty() => (whole_file, None),
        OldPassphrase::Untried(others) => (
            format!(
                "changed the passphrase of key slot {what} (generation {generation}): its old passphrase no longer opens that slot, but the vault was not opened with it, so the other passphrase slots ({}) were not tried with it: one made before scopevault refused a shared passphrase may still take it (open the vault with the old passphrase to find out). The old passphrase {COPIES}",
                others.join(", ")
            ),
            None,
        ),
    }
}

/// `key migrate`: version 1 to version 2. The unlock order is the keyring slot (unless
/// `--no-keyring`), the passphrase (file, fd, prompt), and only with `--trust-v1-identity-slot`
/// the identity file. `--identity-file` also names the identity file whose v1 slot is re-made.
fn migrate(g: &GlobalArgs, trust_v1_identity_slot: bool) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let path = vault_path(g);
    if vault::file_version(&path)? != 1 {
        outln!(
            "{} is already format version 2: nothing to do",
            super::shown(&path)
        )?;
        return Ok(ExitCode::SUCCESS);
    }
    let lock = WriteLock::acquire(&path)?;
    let opts = open_options(g);
    let rewrap = g.unlock.identity_file.as_deref();
    let has_keyring = vault::has_keyring_slot(&path)?;
    let unlock = if !g.unlock.no_keyring && has_keyring {
        Unlock::Keyring
    } else if let Some(p) = passphrase_from_args(g)? {
        Unlock::Passphrase(p)
    } else if let (true, Some(f)) = (trust_v1_identity_slot, rewrap) {
        Unlock::IdentityFile(f.to_path_buf())
    } else if std::io::stdin().is_terminal() {
        Unlock::Passphrase(prompt_passphrase(&format!(
            "Passphrase for {}: ",
            super::shown(&path)
        ))?)
    } else if let Some(f) = rewrap {
        // Explain why the identity file alone does not do (the library says it).
        Unlock::IdentityFile(f.to_path_buf())
    } else {
        return Err(VaultError::NoUnlockSource(
            "give --passphrase-file FILE or --passphrase-fd N (or run on a terminal), or use the keyring slot".into(),
        )
        .into());
    };
    let mut m = Vault::migrate_v1(&path, &unlock, trust_v1_identity_slot, rewrap, &opts)?;
    // Said once the rollback record has been checked and holds exactly this generation (it
    // was said before the check, also when the record held nothing or another generation and
    // the migration was then refused: seventeenth pass).
    if m.through_v1_identity_slot {
        errln!("WARNING: --trust-v1-identity-slot: unlocked through a version-1 identity-file slot, which anyone who can write the vault file could have made. The rollback record shows this machine has seen this generation before, which proves the generation number, not the content: check `{}` and the credentials after the migration.", crate::advice::command("cred list"));
    }
    m.vault.save(&lock)?;
    let mut report = format!(
        "migrated {} to format version 2 (generation {}): {} key slot(s), {} identity slot(s) re-made\n",
        super::shown(&path),
        m.vault.generation(),
        m.vault.slots().len(),
        m.rewrapped
    );
    for r in &m.dropped {
        let r = escape_for_terminal(r);
        report.push_str(&format!("dropped the version-1 identity slot for {r} (its identity file was not given with --identity-file): add a new identity slot with `{}`\n", crate::advice::command("key add --identity-out FILE")));
    }
    super::output::after_change(
        "the vault was migrated to format version 2 and saved",
        super::write_stdout(report.as_bytes()),
    )?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::closed_here_refusal;

    /// Twenty-first pass: the refusal quoted the keyring's own error text as it was, while the
    /// `--force` warning escaped it. A line break in it (errors pass through
    /// [`super::super::message_of`], which keeps line breaks) would start a line that reads as
    /// ours, and an ESC would drive the terminal.
    #[test]
    fn key_remove_refusal_escapes_the_keyrings_error_text() {
        let why = "keyring slot k1: no entry\nerror: forged line \u{1b}]0;title\u{7}";
        let text = closed_here_refusal("k2", why).to_string();
        assert!(
            !text.chars().any(crate::text::needs_escape),
            "raw control characters in: {text:?}"
        );
        assert!(
            text.contains(r"no entry\nerror: forged line \u{1b}]0;title\u{7}"),
            "{text}"
        );
        // And as the binary prints it: still one line.
        let printed =
            super::super::message_of(&anyhow::Error::from(closed_here_refusal("k2", why)));
        assert_eq!(printed.lines().count(), 1, "{printed}");
    }
}
