//! Shared by every command that opens the vault: where the vault is, how to unlock it, and how
//! secret values are read (prompt, stdin, file, fd — never arguments).

use std::fs::File;
use std::io::{IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use zeroize::Zeroizing;

use super::args::GlobalArgs;
use crate::secret::{SecretString, MAX_SECRET_LEN};
use crate::vault::{self, OpenOptions, Unlock, Vault, VaultError};

/// The vault path from `--vault`, `SCOPEVAULT_VAULT` or the default.
pub(crate) fn vault_path(g: &GlobalArgs) -> PathBuf {
    g.vault.clone().unwrap_or_else(vault::default_vault_path)
}

pub(crate) fn open_options(g: &GlobalArgs) -> OpenOptions {
    OpenOptions {
        allow_rollback: g.unlock.allow_rollback,
        no_follow: false,
        vault_id: None,
        restored_from: None,
        record_wait: None,
    }
}

/// Say so when the test suite's fast KDF setting is in force. Only a build with the test-only
/// cargo feature `insecure-test-kdf` honours `SCOPEVAULT_TEST_ARGON2`; a normal build ignores
/// it (and says that too, so nobody believes it took effect).
pub(crate) fn warn_test_kdf() {
    if std::env::var_os("SCOPEVAULT_TEST_ARGON2").is_none() {
        return;
    }
    if cfg!(feature = "insecure-test-kdf") {
        errln!("note: SCOPEVAULT_TEST_ARGON2 is the test suite's fast KDF setting (this is a test build, feature insecure-test-kdf): new passphrase slots use weak Argon2 parameters. Never use a test build for a real vault.");
    } else {
        errln!("note: SCOPEVAULT_TEST_ARGON2 (the test suite's fast KDF setting) is ignored: this build always uses Argon2id m=64 MiB, t=3, p=4.");
    }
}

/// Open the vault for a command that saves it, with the first unlock source there: the one
/// given on the command line (`--identity-file`, `--passphrase-file`/`--passphrase-fd`), an
/// enrolled keyring slot (unless `--no-keyring`), `SCOPEVAULT_IDENTITY_FILE`, then a no-echo
/// prompt on the controlling terminal (also when stdin is a pipe carrying a secret).
///
/// A file older than the newest generation seen here, accepted with `--allow-rollback` (a
/// backup restored on purpose), is saved again at once under the writer lock, at a generation
/// above every one seen: the restore is adopted, so the next command, the daemon's `reload`
/// and its restart accept it without the flag. Never silent: stderr names both generations
/// and the new one. A command that already holds the writer lock opens with
/// [`open_vault_locked`] instead: the lock is not taken twice. A command that only reads opens
/// with [`open_vault_to_read`], which adopts nothing.
pub(crate) fn open_vault(g: &GlobalArgs) -> anyhow::Result<Vault> {
    Ok(open_vault_keeping_passphrase(g)?.0)
}

/// [`open_vault`], returning with the vault the passphrase that opened it, when one did (a
/// file, a descriptor or the prompt): `key passwd` tells from it whether the slot's old
/// passphrase still opens the file through another slot.
pub(crate) fn open_vault_keeping_passphrase(
    g: &GlobalArgs,
) -> anyhow::Result<(Vault, Option<SecretString>)> {
    let (v, used) = open_vault_with_any_key(g)?;
    Ok((adopt_if_restored(g, v)?, used))
}

/// [`open_vault`] for a command that only reads the vault (`cred list`, `cred show`, `policy
/// export`, `lint`, `recipient`, `sync --dry-run`, `policy apply --dry-run`): a file accepted
/// with `--allow-rollback` is opened as it is, with the warning, and nothing is saved, so the
/// rollback record and the file stay as they were. Checking a backup copy (`cred list --vault COPY --allow-rollback`,
/// docs/operations.md "Backup") saved the copy as a new generation, after which the live
/// vault, and the daemon's next start, were refused as a rollback (twentieth pass, found by
/// attacking the admin's data paths). Adopting a restore is a saving command's part.
pub(crate) fn open_vault_to_read(g: &GlobalArgs) -> anyhow::Result<Vault> {
    let (v, _) = open_vault_with_any_key(g)?;
    say_read_only(&v);
    Ok(v)
}

/// The warnings of a vault opened by a command that only reads: the last generation, and a
/// rollback accepted with `--allow-rollback`, which this command does not adopt.
fn say_read_only(v: &Vault) {
    warn_last_generation(v);
    if let Some(w) = v.rollback_warning() {
        errln!("warning: {}", super::escape_for_terminal(&w));
        errln!("note: this command only reads: the older file is not adopted (nothing is saved, and this machine's rollback record is unchanged), so checking a backup copy leaves the vault as it was; to adopt a restored file as the vault, give --allow-rollback to a command that saves it (docs/operations.md, \"Restore\")");
    }
}

/// [`open_vault_to_read`] with the sources that need no input only (an enrolled keyring slot unless
/// `--no-keyring`, `--identity-file`, `--passphrase-file`/`--passphrase-fd`), never a prompt:
/// `Ok(Err(note))` when none of them is there to try, the note saying what the keyring slot
/// answered when it was tried (empty otherwise). A file one of them refuses is an error, as
/// for [`open_vault`]. For `key list`, which authenticates the header when it can and
/// otherwise says that it did not; it only reads, so it adopts nothing.
pub(crate) fn open_vault_unattended(g: &GlobalArgs) -> anyhow::Result<Result<Vault, String>> {
    match open_without_prompt(g)? {
        Ok((v, _)) => {
            say_read_only(&v);
            Ok(Ok(v))
        }
        Err(note) => Ok(Err(note)),
    }
}

/// `v`, or, when it was accepted with `--allow-rollback` although a newer generation was seen
/// here (by the rollback record, or by the audit chain a daemon's start judges it against),
/// the file saved again under the writer lock ([`adopt`]).
fn adopt_if_restored(g: &GlobalArgs, v: Vault) -> anyhow::Result<Vault> {
    warn_last_generation(&v);
    if !say_restored(g, &v)? {
        return Ok(v);
    }
    let lock = vault::WriteLock::acquire(&vault_path(g))?;
    adopt(g, &v, &lock)
}

/// [`open_vault`] for a command that holds the vault's writer lock from the read to its save
/// (`bundle apply`, `publish`, `sync`): a restore accepted with `--allow-rollback` is adopted
/// under that lock. Taking it again through a new descriptor waited 30 s for itself and
/// failed "another scopevault command is writing this vault" (found by attacking the fleet,
/// seventeenth pass).
pub(crate) fn open_vault_locked(g: &GlobalArgs, lock: &vault::WriteLock) -> anyhow::Result<Vault> {
    let (v, _) = open_vault_with_any_key(g)?;
    warn_last_generation(&v);
    if !say_restored(g, &v)? {
        return Ok(v);
    }
    adopt(g, &v, lock)
}

/// The audit log of a daemon started without `--audit`: `SCOPEVAULT_AUDIT`, else `serve`'s
/// default. A command that saves judges the vault against that log's chain as the daemon's
/// start will; it cannot know the log of a daemon given another one (`serve --audit`), and
/// says that `SCOPEVAULT_AUDIT` points it there.
pub(crate) fn serve_audit_log() -> PathBuf {
    std::env::var_os("SCOPEVAULT_AUDIT")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(crate::audit::default_audit_path)
}

/// With `--allow-rollback`: the audit log of [`serve_audit_log`] and the generation its chain
/// has recorded of this vault, when that is above the file's (a daemon's start on that log
/// refuses the file). A vault file restored with the rollback record passes the record;
/// only the chain says it is old, and adopting it above the record alone left it refused
/// (twenty-third pass).
/// A log empty under its anchor whose moved file the start cannot read (compressed, two
/// copies, another user's) refuses the adoption with the start's own reason: the generations
/// that file's `vault.load` records hold are not known here, and an adoption saved below them
/// was promised to load and was refused (twenty-fourth pass's attacker of this pass's fixes).
fn chain_ahead(g: &GlobalArgs, v: &Vault, say: bool) -> anyhow::Result<Option<(PathBuf, u64)>> {
    if !g.unlock.allow_rollback {
        return Ok(None);
    }
    let log = serve_audit_log();
    if let crate::audit::MovedLog::Refused(why) | crate::audit::MovedLog::Unterminated(why) =
        crate::audit::moved_log(&log, None)
    {
        anyhow::bail!(
            "not adopted (--allow-rollback): the audit log {} is empty and a daemon's start on it is refused until the file its records were moved to can be read, which holds the vault generations its chain recorded, not known here: {}; do that, then give --allow-rollback again",
            super::shown(&log),
            super::escape_for_terminal(&why)
        );
    }
    Ok(match crate::audit::chain_generation(&log, v.id()) {
        Ok(seen) => (seen > v.generation()).then_some((log, seen)),
        Err(_) if !say => None,
        Err(e) => {
            // Said (once: `say`), not fatal: the file is adopted above the rollback record,
            // and the message after the save says what a daemon's start does is not known.
            errln!(
                "warning: --allow-rollback: the audit log {} cannot be read ({}), so the generation its chain has recorded of this vault is not known here: a daemon started on it may still refuse this file; run this command as a user who can read that log",
                super::shown(&log),
                super::escape_for_terminal(&e.to_string())
            );
            None
        }
    })
}

/// Warn of a restored file accepted with `--allow-rollback`, below the rollback record or the
/// audit chain ([`chain_ahead`]); false when it is neither (nothing to adopt).
fn say_restored(g: &GlobalArgs, v: &Vault) -> anyhow::Result<bool> {
    let chain = chain_ahead(g, v, true)?;
    let w = v.rollback_warning();
    if let Some(w) = &w {
        errln!("warning: {}", super::escape_for_terminal(w));
    }
    if let Some((log, seen)) = &chain {
        errln!(
            "warning: {} is generation {}, older than generation {seen} the audit chain of {} has recorded of this vault (a daemon started on that log refuses it); accepted because of --allow-rollback",
            super::shown(&vault_path(g)),
            v.generation(),
            super::shown(log)
        );
    }
    Ok(w.is_some() || chain.is_some())
}

/// Say so when the vault is at the last generation a save writes: it opens, and every save is
/// refused (a reader said nothing of it, and the save called it corrupt, nineteenth pass).
fn warn_last_generation(v: &Vault) {
    if let Some(w) = v.at_last_generation() {
        errln!("warning: {}", super::escape_for_terminal(&w));
    }
}

/// Whether [`open_vault`] or [`open_vault_locked`] adopted the vault it returned: a restored
/// file accepted with `--allow-rollback`, saved again as a new generation before the command
/// did anything else (an adopted vault keeps its rollback warning; one a newer save made
/// moot has none).
pub(crate) fn adopted(v: &Vault) -> bool {
    v.rollback_warning().is_some()
}

/// What a command that saves, but saved nothing of its own, says of a vault file restored from
/// a backup and accepted with `--allow-rollback`: opening it saved it again ([`open_vault`]
/// adopts it), whatever the command then did (`sync`, `cred import`; eighteenth pass).
pub(crate) fn adopted_note(generation: u64) -> String {
    format!("vault was saved again as generation {generation} only to adopt the restored file (--allow-rollback)")
}

/// Save a restored file accepted with `--allow-rollback` again, under `lock`, above every
/// generation seen: the rollback record's and the audit chain's ([`chain_ahead`]).
fn adopt(g: &GlobalArgs, v: &Vault, lock: &vault::WriteLock) -> anyhow::Result<Vault> {
    refuse_adopting_a_copy(g, v.id())?;
    // Read again under the lock: another writer may have saved since an open made before it.
    let mut adopted = v.reopen(&open_options(g))?;
    if let Some((_, seen)) = chain_ahead(g, &adopted, false)? {
        adopted.accept_below(seen);
    }
    if adopted.rollback_warning().is_none() {
        // A newer file was saved in between: nothing left to adopt.
        return Ok(adopted);
    }
    adopted.save(lock)?;
    errln!(
        "warning: {} saved again as generation {}, above the rollback record and the audit chain of {}: the restored file is adopted (later opens, the daemon's reload and its restart on that audit log accept it; a daemon given another log with `serve --audit` judges it against that log's chain: set SCOPEVAULT_AUDIT to that log and give --allow-rollback again); {}",
        super::shown(&vault_path(g)),
        adopted.generation(),
        super::shown(&serve_audit_log()),
        redo_since_backup(&vault_path(g), &adopted)
    );
    // A master vault: the restored copy may remember older bundle generations than were
    // published since (twenty-seventh pass); said, with what `publish` does about it.
    if let Some((total, recorded)) = adopted.published_behind() {
        errln!(
            "warning: fleet.published went backwards: the restored vault remembers fewer bundle generations published (together {total}) than this machine recorded at its last `publish` from this vault ({recorded}), so bundles newer than the ones it remembers were published. `publish` goes above the generation of the bundle already in --out for each location: publish into the directory holding the newest bundles (copy them back into --out first if they are elsewhere), and re-set the secrets rotated since the backup before you publish, or the next bundle brings the old values back to the checkpoints (docs/operations.md, \"Backup, restore, moving, changing the passphrase\")"
        );
    }
    Ok(adopted)
}

/// What an adopted restore leaves to redo: everything saved since the backup is undone, its
/// key slots included (twenty-seventh pass, found by the attacker of multi-admin work and
/// backups: a slot removed since the backup, a compromised identity's, opened the vault
/// again, and so did a passphrase changed since, and the warning said only "re-set the
/// secrets rotated since it was backed up"). The slots the restored file has are listed;
/// the ones the newest generation had are not known here (the rollback record keeps
/// generations only). On a fleet checkpoint the way forward is a newer bundle, not a local
/// change (twenty-seventh pass, as above: `bundle apply --allow-rollback` said to re-set
/// the secrets, which diverges from the bundle).
fn redo_since_backup(path: &Path, v: &Vault) -> String {
    let slots = v
        .slots()
        .iter()
        .map(|s| {
            let label = s
                .label()
                .map(|l| format!("{}, ", super::escape_for_terminal(l)))
                .unwrap_or_default();
            let changed = s
                .changed()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .map(|t| format!(", passphrase changed {t}"))
                .unwrap_or_default();
            format!("{} ({label}{}{changed})", s.id(), s.kind())
        })
        .collect::<Vec<_>>()
        .join("; ");
    let slots_undone = format!(
        "its key slots are the backup's too: a slot removed since the backup was taken (a lost or compromised identity file, a departed admin's passphrase) opens the vault again, and a passphrase changed since opens it with the old passphrase again: redo those now (`{}`, `{}`); its slots are now: {slots}",
        crate::advice::command("key remove ID"),
        crate::advice::command("key passwd --slot ID")
    );
    match crate::fleet::health::checkpoint_of(path, v.id()) {
        Some(c) => format!(
            "this vault is a fleet checkpoint (location {}): a local `cred set` or `policy apply` would diverge from the signed bundle, so a secret rotated since the bundle applied comes back with a newer bundle (publish one on the master and apply it here); {slots_undone}",
            super::escape_for_terminal(&c.location)
        ),
        None => format!("re-set the secrets rotated since it was backed up; {slots_undone}"),
    }
}

/// Refuse to adopt a copy of the vault where it lies (twenty-seventh pass, found by the
/// attacker of multi-admin work and backups): the rollback refusal of a backup copy checked
/// with `--vault` advised `cred set NAME --allow-rollback --vault COPY`, which saved the copy
/// above every generation seen, and the live vault, the newest, was then refused as a
/// rollback by every command, `reload` and the daemon's restart. The vault is the file a
/// running daemon serving this vault id serves (its `health` names it to an admin), else
/// the file at `SCOPEVAULT_VAULT` or the default path when it has this vault id in its
/// header. Nothing is saved.
fn refuse_adopting_a_copy(g: &GlobalArgs, id: &str) -> anyhow::Result<()> {
    let file = vault_path(g);
    let socket = super::client_cmds::socket_path(g);
    let (target, what) = match served_file(&socket, id) {
        Some(p) if crate::paths::same_file(&file, &p) => return Ok(()),
        Some(p) => {
            let what = format!(
                "the vault file the daemon at {} serves, {}",
                super::shown(&socket),
                super::shown(&p)
            );
            (p, what)
        }
        // No daemon serving this vault answers: the file this machine's rollback record names
        // for it (saved or loaded last at the newest generation) is the vault, whatever path
        // or SCOPEVAULT_VAULT this command was given (twenty-seventh pass, found by the
        // re-attacker of its fixes: a vault at a custom path, or SCOPEVAULT_VAULT=COPY, let
        // a copy be adopted where it lay).
        None => match crate::advice::recorded_elsewhere(&file, id) {
            Some(at) => {
                let what = crate::advice::recorded_what(&at);
                (at, what)
            }
            None => {
                let live = crate::advice::live_vault();
                if !crate::advice::copy_of(&file, &live) {
                    return Ok(());
                }
                let what = format!(
                "the vault at {} (SCOPEVAULT_VAULT, else the default path), which the daemon and commands without --vault use",
                super::shown(&live)
            );
                (live, what)
            }
        },
    };
    Err(VaultError::Usage(format!(
        "not adopted (--allow-rollback): {} is not {what}, but a copy of that vault (vault {id}). Adopting the copy where it lies would save it above every generation seen, and {}, the newer file, would then be refused as a rollback by every command, `reload` and the daemon's restart. Nothing was saved. To check the copy, give --allow-rollback to a command that only reads (`{}`): it saves nothing. To restore it as the vault, copy it to {} first (mode 0600, owned by the daemon's user), then adopt it there (`{}`) and reload the daemon; to replace that file by this one for good, move that file away first (docs/operations.md, \"Restore\")",
        super::shown(&file),
        super::shown(&target),
        crate::advice::command("cred list --allow-rollback"),
        super::shown(&target),
        crate::advice::command_at("cred set NAME --allow-rollback", &target)
    ))
    .into())
}

/// The vault file the daemon at `socket` serves, when it serves vault `id` and says which
/// file (`health` to an admin); `None` when no daemon answers there.
fn served_file(socket: &Path, id: &str) -> Option<PathBuf> {
    std::fs::symlink_metadata(socket).ok()?;
    let mut c =
        crate::client::Client::connect_within(socket, super::client_cmds::ANSWER_WAIT).ok()?;
    let h = c.health().ok()?;
    (h.vault_id.as_deref() == Some(id))
        .then_some(h.vault_path)
        .flatten()
        .map(PathBuf::from)
}

/// The vault, and the passphrase that opened it when one did.
type Opened = (Vault, Option<SecretString>);

fn open_vault_with_any_key(g: &GlobalArgs) -> anyhow::Result<Opened> {
    let path = vault_path(g);
    let opts = open_options(g);
    let keyring_note = match open_without_prompt(g)? {
        Ok(v) => return Ok(v),
        Err(note) => note,
    };
    // A vault with no passphrase slot opens with no passphrase: neither prompt for one nor
    // offer the prompt (twenty-fifth pass, found by the attacker of advice: "or run on a
    // terminal to be prompted" led to a prompt, then "this vault has no passphrase slot").
    let passphrase_slot = |slots: &[vault::Slot]| {
        slots
            .iter()
            .any(|s| matches!(s, vault::Slot::Passphrase { .. }))
    };
    let no_passphrase = || {
        VaultError::NoUnlockSource(format!(
            "this vault has no passphrase slot, so no passphrase, given or prompted for, opens it: give --identity-file FILE for one of its identity-file slots{keyring_note}"
        ))
    };
    if std::io::stdin().is_terminal() || have_tty() {
        // Fail before prompting if the file is not even a vault.
        if !passphrase_slot(&vault::read_slots(&path)?) {
            return Err(no_passphrase().into());
        }
        let p = prompt_passphrase(&format!("Passphrase for {}: ", super::shown(&path)))?;
        return Ok(open_with_passphrase(&path, p, &opts)?);
    }
    if vault::read_slots(&path).is_ok_and(|slots| !passphrase_slot(&slots)) {
        return Err(no_passphrase().into());
    }
    Err(VaultError::NoUnlockSource(format!(
        "give --passphrase-file FILE, --passphrase-fd N or --identity-file FILE, or run on a terminal to be prompted{keyring_note}"
    ))
    .into())
}

/// Refuse two unlock sources given on the command line (`--identity-file` with
/// `--passphrase-file` or `--passphrase-fd`) as a usage error, exit 2, naming both, before
/// anything is opened: one was used and the other silently ignored, a wrong passphrase never
/// noticed beside a right identity file (twenty-third pass). `--passphrase-file` with
/// `--passphrase-fd` clap refuses itself. `SCOPEVAULT_IDENTITY_FILE` is not on the command
/// line: a passphrase given there takes precedence over it ([`open_without_prompt`]).
/// `key migrate` is the one command that takes both: its `--identity-file` also names the
/// identity file whose version-1 slot is re-made.
pub(crate) fn check_explicit_sources(cli: &super::args::Cli) -> anyhow::Result<()> {
    use super::args::{Command, KeyCommand};
    if matches!(cli.command, Command::Key(KeyCommand::Migrate { .. })) {
        return Ok(());
    }
    let u = &cli.global.unlock;
    if u.identity_file.is_none() || u.identity_from_env {
        return Ok(());
    }
    let other = if u.passphrase_file.is_some() {
        "--passphrase-file"
    } else if u.passphrase_fd.is_some() {
        "--passphrase-fd"
    } else {
        return Ok(());
    };
    Err(VaultError::Usage(format!(
        "--identity-file and {other} are two unlock sources: give one of them (nothing was opened)"
    ))
    .into())
}

/// Open with the first source that needs no input ([`open_vault_unattended`]); `Ok(Err(_))`
/// when there is none, with what the keyring slot answered if it was tried. The order
/// (docs/operations.md "Unlock sources"): the source given on the command line
/// (`--identity-file`, `--passphrase-file`, `--passphrase-fd`; at most one,
/// [`check_explicit_sources`]), then the implicit ones: an enrolled keyring slot unless
/// `--no-keyring`, then `SCOPEVAULT_IDENTITY_FILE`. The keyring, then any identity file, came
/// first, and a stale identity file in the environment failed the command without trying the
/// passphrase given (twenty-third pass).
fn open_without_prompt(g: &GlobalArgs) -> anyhow::Result<Result<Opened, String>> {
    let path = vault_path(g);
    let opts = open_options(g);
    if let (Some(f), false) = (&g.unlock.identity_file, g.unlock.identity_from_env) {
        let v = Vault::open(&path, &Unlock::IdentityFile(f.clone()), &opts)?;
        return Ok(Ok((v, None)));
    }
    if let Some(p) = passphrase_from_args(g)? {
        return Ok(Ok(open_with_passphrase(&path, p, &opts)?));
    }
    let mut keyring_note = String::new();
    if !g.unlock.no_keyring && vault::has_keyring_slot(&path)? {
        match Vault::open(&path, &Unlock::Keyring, &opts) {
            Ok(v) => return Ok(Ok((v, None))),
            // A refused file is refused whatever key we try next.
            Err(e) if e.is_refusal() => return Err(e.into()),
            Err(e) => keyring_note = format!(" (the keyring slot was tried: {e})"),
        }
    }
    if let Some(f) = &g.unlock.identity_file {
        let v = Vault::open(&path, &Unlock::IdentityFile(f.clone()), &opts)?;
        return Ok(Ok((v, None)));
    }
    Ok(Err(keyring_note))
}

/// Open with the passphrase `p`, and hand it back with the vault.
fn open_with_passphrase(
    path: &Path,
    p: SecretString,
    opts: &OpenOptions,
) -> Result<Opened, VaultError> {
    let unlock = Unlock::Passphrase(p);
    let v = Vault::open(path, &unlock, opts)?;
    let Unlock::Passphrase(p) = unlock else {
        unreachable!("made as a passphrase just above")
    };
    Ok((v, Some(p)))
}

/// The passphrase from `--passphrase-file` or `--passphrase-fd`, if one was given; an empty
/// one is refused naming where it was read ([`non_empty`]).
pub(crate) fn passphrase_from_args(g: &GlobalArgs) -> anyhow::Result<Option<SecretString>> {
    if let Some(f) = &g.unlock.passphrase_file {
        let p = read_secret_file(f).context("cannot read --passphrase-file")?;
        return Ok(Some(non_empty(p, &super::shown(f))?));
    }
    if let Some(fd) = g.unlock.passphrase_fd {
        return Ok(Some(non_empty(
            read_secret_fd(fd)?,
            &format!("file descriptor {fd}"),
        )?));
    }
    Ok(None)
}

/// `p`, read from `source`, unless it is empty: a usage error (exit 2) naming the source. A
/// vault passphrase never is (vault-format.md), so an empty file, one holding only a newline,
/// or `/dev/null` on the descriptor is a mistake in what was given, not a wrong passphrase:
/// it was reported as one, exit 3, after Argon2 ran on every slot (eighteenth pass).
fn non_empty(p: SecretString, source: &str) -> anyhow::Result<SecretString> {
    if p.is_empty() {
        return Err(VaultError::Usage(format!(
            "the passphrase read from {source} is empty (a vault passphrase never is): give the passphrase itself; nothing was tried"
        ))
        .into());
    }
    Ok(p)
}

/// A no-echo prompt for the passphrase of an existing vault: an empty answer is refused as
/// [`non_empty`] refuses an empty file.
pub(crate) fn prompt_passphrase(label: &str) -> anyhow::Result<SecretString> {
    non_empty(prompt(label)?, "the prompt")
}

/// Whether this process has a controlling terminal to prompt on (`/dev/tty` opens), even
/// with stdin redirected: `printf %s "$TOKEN" | scopevault cred set …` asks the passphrase
/// there, as pass, gpg and ssh do.
pub(crate) fn have_tty() -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/tty")
        .is_ok()
}

/// A no-echo prompt on the controlling terminal (`/dev/tty`).
pub(crate) fn prompt(label: &str) -> anyhow::Result<SecretString> {
    // Echo off before the prompt is shown, not after (see `EchoOff`): restored on drop, after
    // rpassword has restored the (echo-off) state it found.
    let quiet = crate::sys::EchoOff::new().context("cannot read from the terminal")?;
    // SIGINT held in this thread while rpassword reads (it raises SIGINT at itself on a Ctrl-C
    // before it restores what it found; see `sys::block_signals`), so the signal thread puts
    // the terminal back only after rpassword has finished with it.
    crate::sys::block_signals(&[signal_hook::consts::SIGINT]);
    let read = rpassword::prompt_password(label);
    crate::sys::unblock_signals(&[signal_hook::consts::SIGINT]);
    let s = match read {
        Ok(s) => Zeroizing::new(s),
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {
            // Ctrl-C: the terminal put back and the process dies of SIGINT (unless ignored).
            quiet.interrupted();
            return Err(e).context("cannot read from the terminal");
        }
        Err(e) => return Err(e).context("cannot read from the terminal"),
    };
    drop(quiet);
    if s.len() > MAX_SECRET_LEN {
        bail!("the value is longer than {MAX_SECRET_LEN} bytes");
    }
    Ok(SecretString::from(s.as_str().to_owned()))
}

/// Where a command reads a new passphrase from when there is no terminal: `init`'s is its
/// `--passphrase-file`/`--passphrase-fd`, `key add --passphrase`'s and `key passwd`'s their
/// `--new-passphrase-file` (their `--passphrase-file` unlocks the vault). The error of a new
/// passphrase missing named `init`'s options for every command (thirty-second pass).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NewFrom {
    /// `init`.
    Init,
    /// `key add --passphrase`, `key passwd`.
    Key,
}

/// Prompt twice for a new passphrase (or read it from the given file/fd), refusing an empty one
/// and, unless `weak_ok`, one the zxcvbn estimator rates below [`MIN_PASSPHRASE_SCORE`] (with
/// `weak_ok` it warns on stderr instead). Every new passphrase goes through here.
pub(crate) fn new_passphrase(
    from_file: Option<&Path>,
    from_fd: Option<i32>,
    weak_ok: bool,
    from: NewFrom,
) -> anyhow::Result<SecretString> {
    let p = read_new_passphrase(from_file, from_fd, from)?;
    check_strength(&p, weak_ok)?;
    Ok(p)
}

/// The lowest zxcvbn score (0..=4) a new passphrase may have without `--weak-passphrase-ok`:
/// 3 is "safely unguessable: moderate protection from an offline slow-hash scenario" (about
/// 10^8 guesses or more), the threshold zxcvbn's authors recommend.
pub(crate) const MIN_PASSPHRASE_SCORE: u8 = 3;

/// Rate a new passphrase with zxcvbn. Below [`MIN_PASSPHRASE_SCORE`]: refuse (a usage error,
/// exit 2) or, with `weak_ok`, warn on stderr. The messages give the score, zxcvbn's estimate
/// of the time an offline attacker needs (at 10^4 slow-hash guesses a second) and its warning
/// and suggestions, which name patterns ("a common password", "dates are easy to guess") and
/// never the passphrase or a part of it. zxcvbn looks at the first 100 characters only.
pub(crate) fn check_strength(p: &SecretString, weak_ok: bool) -> anyhow::Result<()> {
    let estimate = zxcvbn::zxcvbn(p.expose(), &["scopevault", "vault", "passphrase"]);
    let score = u8::from(estimate.score());
    if score >= MIN_PASSPHRASE_SCORE {
        return Ok(());
    }
    let crack = estimate.crack_times().offline_slow_hashing_1e4_per_second();
    let mut parts = vec![format!(
        "the zxcvbn estimator rates it {score} of 4 (at least {MIN_PASSPHRASE_SCORE} is required); estimated time to guess it offline at 10,000 guesses a second: {crack}"
    )];
    if let Some(f) = estimate.feedback() {
        parts.extend(f.warning().map(|w| w.to_string()));
        parts.extend(f.suggestions().iter().map(|s| s.to_string()));
    }
    let why = parts
        .iter()
        .map(|p| p.trim_end_matches('.'))
        .collect::<Vec<_>>()
        .join(". ");
    if weak_ok {
        errln!("warning: weak passphrase accepted (--weak-passphrase-ok): {why}");
        return Ok(());
    }
    Err(VaultError::Usage(format!(
        "the new passphrase is too weak: {why}. Choose a longer one (four or more random words, or 16+ random characters), or give --weak-passphrase-ok to accept it anyway: nothing was changed"
    ))
    .into())
}

/// Read a new passphrase (prompted twice, or from the file/fd), refusing an empty one and one
/// the prompt cannot type ([`typeable`]).
fn read_new_passphrase(
    from_file: Option<&Path>,
    from_fd: Option<i32>,
    from: NewFrom,
) -> anyhow::Result<SecretString> {
    let p = if let Some(f) = from_file {
        let p = read_secret_file(f).context("cannot read the passphrase file")?;
        non_empty(p, &super::shown(f))?
    } else if let Some(fd) = from_fd {
        non_empty(read_secret_fd(fd)?, &format!("file descriptor {fd}"))?
    } else if std::io::stdin().is_terminal() || have_tty() {
        let a = prompt("New passphrase: ")?;
        let b = prompt("Repeat it: ")?;
        if a != b {
            bail!("the two passphrases differ: nothing was changed");
        }
        a
    } else {
        // A usage problem (exit 2), not a vault that failed to unlock: there is none yet.
        return Err(VaultError::Usage(match from {
            NewFrom::Init => "a new passphrase is needed: give --passphrase-file FILE or --passphrase-fd N, or run on a terminal".into(),
            NewFrom::Key => "a new passphrase is needed: give --new-passphrase-file FILE, or run on a terminal (--passphrase-file and --passphrase-fd give the current passphrase, which unlocks the vault)".into(),
        })
        .into());
    };
    if p.is_empty() {
        return Err(VaultError::EmptyPassphrase.into());
    }
    typeable(p)
}

/// `p` unless it holds a control character (C0, U+0000 to U+001F, DEL, U+007F, C1, U+0080 to
/// U+009F such as NEL, or the line and paragraph separators U+2028 and U+2029): the no-echo
/// prompt ends at a line break (and drops a CR before it), a terminal sends no NUL, and at a
/// terminal in its usual mode Ctrl-U kills the line, Ctrl-W and DEL erase, Ctrl-C interrupts:
/// a slot taking such a passphrase could only ever be opened from a file (twenty-third pass for
/// line breaks and NUL, found by its attacker of keys and unlocking: a file ending in two
/// newlines loses only one; twenty-sixth pass for every other control character, found by the
/// attacker of hostile process environments; C1 and U+2028/U+2029 found by the re-attacker of
/// this pass's fixes). A usage error (exit 2) before anything is
/// written; the passphrase is not quoted. A passphrase not in Unicode NFC is warned about
/// ([`warn_unless_nfc`]), not changed. Passphrases that open a vault are read as before: a
/// slot an older scopevault made still opens.
fn typeable(p: SecretString) -> anyhow::Result<SecretString> {
    if p.expose()
        .chars()
        .any(|c| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}'))
    {
        return Err(VaultError::Usage(
            "the new passphrase holds a control character (a line break or NUL, a tab, ESC, Ctrl-U, Ctrl-W, Ctrl-C, DEL, a C1 control such as NEL, U+2028, U+2029, …; a file's one trailing newline is ignored), which the passphrase prompt cannot type (the terminal ends, edits or interrupts the line instead), so the slot could only be opened from that file; give a passphrase of printable characters on one line: nothing was changed".into(),
        )
        .into());
    }
    warn_unless_nfc(&p);
    Ok(p)
}

/// Warn (never refuse, never change: a slot opens with exactly the bytes it was given) when a
/// new passphrase is not in Unicode NFC: `cafe` + U+0301 is not opened by `café` typed as one
/// character, which is what most keyboards and input methods send. The passphrase is not
/// quoted.
fn warn_unless_nfc(p: &SecretString) {
    if !unicode_normalization::is_nfc(p.expose()) {
        errln!(
            "warning: the new passphrase is not in Unicode NFC (a letter and a combining accent where one composed character is usual): it is kept exactly as given, and only those bytes open the slot; a keyboard that types the composed form will not. If that is not what you meant, run `scopevault key passwd` with the composed form"
        );
    }
}

/// Read a secret from a file (bounded; one trailing newline dropped).
pub(crate) fn read_secret_file(path: &Path) -> anyhow::Result<SecretString> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    read_secret(f).with_context(|| format!("in {}", path.display()))
}

/// [`read_secret_file`] for a file that should be its owner's alone (`what`, which `holds`):
/// warned about when group or others have access ([`crate::vault::warn_if_others_may_access`]).
pub(crate) fn read_private_secret_file(
    path: &Path,
    what: &str,
    holds: &str,
) -> anyhow::Result<SecretString> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    crate::vault::warn_if_others_may_access(path, &f, what, holds);
    read_secret(f).with_context(|| format!("in {}", path.display()))
}

/// Read a secret from an inherited file descriptor, from where it stands
/// ([`crate::sys::inherited_for_reading`]).
pub(crate) fn read_secret_fd(fd: i32) -> anyhow::Result<SecretString> {
    read_secret_held_fd(fd, hold_secret_fd(fd)?)
}

/// The inherited descriptor `fd`, checked open for reading and held (a duplicate), to be read
/// later with [`read_secret_held_fd`]: `serve` takes it before it opens anything, so that a
/// number not inherited is refused, never one of the daemon's own files (twenty-sixth pass).
pub(crate) fn hold_secret_fd(fd: i32) -> anyhow::Result<File> {
    if fd < 0 {
        bail!("--passphrase-fd must be a non-negative file descriptor number");
    }
    crate::sys::inherited_for_reading(fd)
        .with_context(|| format!("file descriptor {fd} cannot be read"))
}

/// Read a secret from `f`, the descriptor `fd` held by [`hold_secret_fd`].
pub(crate) fn read_secret_held_fd(fd: i32, f: File) -> anyhow::Result<SecretString> {
    read_secret(f).with_context(|| format!("in file descriptor {fd}"))
}

/// The passphrase of `--passphrase-fd N` read from the descriptor held since the start
/// ([`hold_secret_fd`]), as [`passphrase_from_args`] reads it.
pub(crate) fn passphrase_from_held_fd(fd: i32, f: File) -> anyhow::Result<Option<SecretString>> {
    Ok(Some(non_empty(
        read_secret_held_fd(fd, f)?,
        &format!("file descriptor {fd}"),
    )?))
}

/// Read all of stdin as one secret.
pub(crate) fn read_secret_stdin() -> anyhow::Result<SecretString> {
    read_secret(std::io::stdin().lock()).context("on stdin")
}

fn read_secret(r: impl Read) -> anyhow::Result<SecretString> {
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_SECRET_LEN + 4));
    // One byte past the limit (plus a newline) is enough to know it is too large.
    r.take(MAX_SECRET_LEN as u64 + 3).read_to_end(&mut buf)?;
    Ok(SecretString::from_input_bytes(buf)?)
}
