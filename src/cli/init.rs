//! `scopevault init`.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::args::{GlobalArgs, InitArgs, KeyringStoreArg};
use super::unlock::{new_passphrase, vault_path, warn_test_kdf};
use crate::vault::{KeyringStore, NewSlot, Vault, WriteLock};

pub(crate) fn run(g: &GlobalArgs, a: &InitArgs) -> anyhow::Result<ExitCode> {
    let path = vault_path(g);
    // Validate everything the user typed before touching the disk.
    refuse_existing(a.identity_out.as_deref())?;
    let slot = match &a.identity_out {
        Some(_) => NewSlot::IdentityFile,
        None => {
            warn_test_kdf();
            NewSlot::Passphrase(new_passphrase(
                g.unlock.passphrase_file.as_deref(),
                g.unlock.passphrase_fd,
            )?)
        }
    };
    let lock = WriteLock::acquire(&path)?;
    let (mut vault, identity_text) = Vault::create(&path, slot)?;
    // Nothing is on disk yet: a keyring failure leaves no half-made vault.
    if a.keyring {
        let store = keyring_store(a.keyring_store);
        vault.add_keyring_slot(store)?;
        eprintln!("enrolled a {} keyring slot", store.as_str());
    }
    if let (Some(out), Some(text)) = (&a.identity_out, identity_text) {
        write_private_new(out, text.as_bytes())?;
        eprintln!(
            "wrote the identity file {} (mode 0600): it unlocks the vault, keep it secret",
            out.display()
        );
    }
    if let Err(e) = vault.save(&lock) {
        if let Some(out) = &a.identity_out {
            let _ = std::fs::remove_file(out);
        }
        return Err(e.into());
    }
    println!("created vault {} (id {})", path.display(), vault.id());
    Ok(ExitCode::SUCCESS)
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
