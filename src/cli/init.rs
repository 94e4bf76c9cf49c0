//! `scopevault init`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::args::{GlobalArgs, InitArgs, KeyringStoreArg};
use super::unlock::{new_passphrase, vault_path, warn_test_kdf};
use crate::vault::{KeyringStore, NewSlot, Vault, WriteLock};

pub(crate) fn run(g: &GlobalArgs, a: &InitArgs) -> anyhow::Result<ExitCode> {
    let path = vault_path(g);
    // Validate everything the user typed before touching the disk.
    refuse_existing(a.identity_out.as_deref())?;
    if let Some(l) = &a.label {
        crate::vault::check_label(l)?;
    }
    if path.exists() {
        return Err(crate::vault::VaultError::AlreadyExists(path.clone()).into());
    }
    let slot = match &a.identity_out {
        Some(_) => NewSlot::IdentityFile,
        None => {
            warn_test_kdf();
            NewSlot::Passphrase(new_passphrase(
                g.unlock.passphrase_file.as_deref(),
                g.unlock.passphrase_fd,
                a.weak_passphrase_ok,
                super::unlock::NewFrom::Init,
            )?)
        }
    };
    // What this command creates, removed again if it fails: never leave debris (a directory
    // holding only a lock file) behind.
    let mut debris = Debris::default();
    let result = create(a, &path, slot, &mut debris);
    if result.is_err() {
        debris.clean();
    }
    result
}

fn create(
    a: &InitArgs,
    path: &Path,
    slot: NewSlot,
    debris: &mut Debris,
) -> anyhow::Result<ExitCode> {
    if let Some(out) = &a.identity_out {
        // `/etc/credstore` does not exist on a stock system: make the identity file's
        // directory, private, and say so.
        if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            debris.dirs_from(dir);
            if !dir.exists() {
                std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(dir)
                    .with_context(|| {
                        format!(
                            "cannot create {} (the identity file's directory)",
                            dir.display()
                        )
                    })?;
                errln!(
                    "created the directory {} (mode 0700) for the identity file",
                    super::shown(dir)
                );
            }
        }
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        debris.dirs_from(dir);
    }
    let lock_file = lock_file_of(path);
    if !lock_file.exists() {
        debris.files.push(lock_file);
    }
    let lock = WriteLock::acquire(path)?;
    let (mut vault, identity_text) = Vault::create(path, slot)?;
    if let Some(l) = &a.label {
        let first = vault.slots()[0].id().to_owned();
        vault.set_slot_label(&first, l)?;
    }
    // Nothing is on disk yet: a keyring failure leaves no half-made vault.
    if a.keyring {
        let store = keyring_store(a.keyring_store);
        vault.add_keyring_slot(store)?;
        errln!("enrolled a {} keyring slot", store.as_str());
    }
    if let (Some(out), Some(text)) = (&a.identity_out, identity_text) {
        write_private_new(out, text.as_bytes())?;
        debris.files.push(out.clone());
        errln!(
            "wrote the identity file {} (mode 0600): it unlocks the vault, keep it secret",
            super::shown(out)
        );
    }
    let unrecorded = vault.save_and_record(&lock)?;
    drop(lock);
    // From here the vault exists: nothing is removed, whatever is said next (removing the
    // identity file of a saved vault left one nobody could open, fourteenth pass).
    debris.files.clear();
    debris.dirs.clear();
    // Printed once the vault is kept: a failed write to stdout used to leave the saved vault
    // without its identity file (twenty-third pass).
    let printed = outln!("created vault {} (id {})", super::shown(path), vault.id());
    if let Some(e) = unrecorded {
        return Err(unrecorded_error(path, &vault, &e));
    }
    super::output::after_change(
        &format!(
            "the vault {} (id {}) was created",
            super::shown(path),
            vault.id()
        ),
        printed,
    )?;
    Ok(ExitCode::SUCCESS)
}

/// The error of an `init` whose vault was written but whose generation this machine's
/// rollback record does not hold (a full, read-only or refused state directory): exit 2, not
/// 0 with a warning (eighteenth pass), since until the record holds it the next open trusts
/// whatever copy of the file it finds. Says that the vault exists, what failed, and the fix:
/// a state directory that takes the record, then one command that opens the vault.
fn unrecorded_error(path: &Path, vault: &Vault, e: &crate::vault::VaultError) -> anyhow::Error {
    // The I/O error without its own hint ("then run the command again"): `init` must not be.
    let why = match e {
        crate::vault::VaultError::Io { path, what, error } => {
            format!("{what} {}: {error}", super::shown(path))
        }
        other => other.to_string(),
    };
    super::Exit {
        code: super::EXIT_USAGE,
        message: format!(
            "the vault {} (id {}) was written, but rollback protection is not in place for it: this machine's rollback record was not written ({why}). Until the record holds the vault's generation, the next open trusts whatever copy of the file it finds. Make the state directory {} take it (free space, permissions, a read-write file system), then run one command that opens the vault, e.g. `{}`: the open records the generation (`{}`'s `state` line shows it). Do not run `init` again: the vault exists",
            super::shown(path),
            vault.id(),
            super::shown(&crate::paths::state_dir()),
            crate::advice::command("cred list"),
            crate::advice::command("doctor"),
        ),
    }
    .into()
}

fn lock_file_of(vault: &Path) -> PathBuf {
    let mut p = vault.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Files and directories a failed `init` made, to remove: the files, then the directories
/// that did not exist before (deepest first, and only while empty).
#[derive(Default)]
struct Debris {
    files: Vec<PathBuf>,
    dirs: Vec<PathBuf>,
}

impl Debris {
    /// Remember `dir` and every missing ancestor of it, as they do not exist yet.
    fn dirs_from(&mut self, dir: &Path) {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(p) = d.filter(|p| !p.as_os_str().is_empty() && !p.exists()) {
            missing.push(p.to_path_buf());
            d = p.parent();
        }
        // Deepest first.
        self.dirs.extend(missing);
    }

    fn clean(&mut self) {
        for f in self.files.drain(..) {
            let _ = std::fs::remove_file(f);
        }
        let mut dirs: Vec<_> = self.dirs.drain(..).collect();
        dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
        dirs.dedup();
        for d in dirs {
            // Only empty directories: remove_dir refuses anything else.
            let _ = std::fs::remove_dir(d);
        }
    }
}

pub(crate) fn keyring_store(a: KeyringStoreArg) -> KeyringStore {
    match a {
        KeyringStoreArg::SecretService => KeyringStore::SecretService,
        KeyringStoreArg::Keyutils => KeyringStore::Keyutils,
    }
}

/// An identity file is never overwritten: the old one may be the only key of another vault.
pub(crate) fn refuse_existing(identity_out: Option<&Path>) -> anyhow::Result<()> {
    if let Some(out) = identity_out.filter(|o| o.exists()) {
        anyhow::bail!(
            "{} already exists: refusing to overwrite an identity file (it may be another vault's only key). If an interrupted `scopevault init` or `key add` left it and no vault uses it, remove it and run the command again; otherwise choose another path",
            out.display()
        );
    }
    Ok(())
}

/// Create a new file with mode 0600 (refusing to overwrite) and write `bytes`, fsynced. On
/// failure nothing is left at `path`.
pub(crate) fn write_private_new(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    if let Err(e) = f.write_all(bytes).and_then(|_| f.sync_all()) {
        // A partial file (a full disk) would make the next attempt refuse to overwrite it,
        // and is no identity anyway: remove it.
        drop(f);
        let _ = std::fs::remove_file(path);
        anyhow::bail!(
            "cannot write {}: {e}; the partial file was removed: free space or choose another path, then run the command again",
            path.display()
        );
    }
    Ok(())
}
