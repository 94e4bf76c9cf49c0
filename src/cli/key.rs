//! `scopevault key list|add|remove|migrate`: key slots. Only `migrate` re-encrypts the payload.

use std::process::ExitCode;

use super::args::{GlobalArgs, KeyAddArgs, KeyCommand};
use super::init::{keyring_store, refuse_existing, write_private_new};
use super::unlock::{
    new_passphrase, open_options, open_vault, passphrase_from_args, prompt, vault_path,
    warn_test_kdf,
};
use crate::vault::{self, Unlock, Vault, VaultError, WriteLock};

pub(crate) fn run(g: &GlobalArgs, cmd: &KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::List { json } => list(g, *json),
        KeyCommand::Add(a) => add(g, a),
        KeyCommand::Remove { slot } => remove(g, slot),
        KeyCommand::Migrate {
            trust_v1_identity_slot,
        } => migrate(g, *trust_v1_identity_slot),
    }
}

fn list(g: &GlobalArgs, json: bool) -> anyhow::Result<ExitCode> {
    // Listing needs no unlock: slot metadata is in the header. It is not authenticated until
    // the vault is opened, which `scopevault key list` says.
    let slots = crate::vault::read_slots(&vault_path(g))?;
    if json {
        let v: Vec<_> = slots
            .iter()
            .map(|s| serde_json::json!({"id": s.id(), "type": s.kind(), "description": s.describe()}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for s in &slots {
            println!("{}  {}", s.id(), s.describe());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn add(g: &GlobalArgs, a: &KeyAddArgs) -> anyhow::Result<ExitCode> {
    let path = vault_path(g);
    refuse_existing(a.identity_out.as_deref())?;
    let new_pass = if a.passphrase {
        warn_test_kdf();
        Some(new_passphrase(a.new_passphrase_file.as_deref(), None)?)
    } else {
        None
    };
    let lock = WriteLock::acquire(&path)?;
    let mut vault = open_vault(g)?;
    let described = if let Some(p) = &new_pass {
        let s = vault.add_passphrase_slot(p)?;
        format!("{} {}", s.id(), s.describe())
    } else if a.keyring {
        let s = vault.add_keyring_slot(keyring_store(a.keyring_store))?;
        format!("{} {}", s.id(), s.describe())
    } else if let Some(out) = &a.identity_out {
        let text = vault.add_identity_slot()?;
        write_private_new(out, text.as_bytes())?;
        if let Err(e) = vault.save(&lock) {
            let _ = std::fs::remove_file(out);
            return Err(e.into());
        }
        let s = vault.slots().last().expect("added");
        println!("added key slot: {} {}", s.id(), s.describe());
        return Ok(ExitCode::SUCCESS);
    } else {
        unreachable!("clap requires one of --passphrase, --keyring, --identity-out")
    };
    vault.save(&lock)?;
    println!("added key slot: {described}");
    Ok(ExitCode::SUCCESS)
}

fn remove(g: &GlobalArgs, id: &str) -> anyhow::Result<ExitCode> {
    let path = vault_path(g);
    let lock = WriteLock::acquire(&path)?;
    let mut vault = open_vault(g)?;
    let slot = vault.remove_slot(id)?;
    vault.save(&lock)?;
    if let Err(e) = Vault::forget_keyring_key(&slot) {
        eprintln!("warning: the slot is removed from the vault, but its keyring entry could not be deleted: {e}");
    }
    println!("removed key slot {}: {}", slot.id(), slot.describe());
    Ok(ExitCode::SUCCESS)
}

/// `key migrate`: version 1 to version 2. The unlock order is the keyring slot (unless
/// `--no-keyring`), the passphrase (file, fd, prompt), and only with `--trust-v1-identity-slot`
/// the identity file. `--identity-file` also names the identity file whose v1 slot is re-made.
fn migrate(g: &GlobalArgs, trust_v1_identity_slot: bool) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let path = vault_path(g);
    if vault::file_version(&path)? != 1 {
        println!(
            "{} is already format version 2: nothing to do",
            path.display()
        );
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
        Unlock::Passphrase(prompt(&format!("Passphrase for {}: ", path.display()))?)
    } else if let Some(f) = rewrap {
        // Explain why the identity file alone does not do (the library says it).
        Unlock::IdentityFile(f.to_path_buf())
    } else {
        return Err(VaultError::NoUnlockSource(
            "give --passphrase-file FILE or --passphrase-fd N (or run on a terminal), or use the keyring slot".into(),
        )
        .into());
    };
    if matches!(unlock, Unlock::IdentityFile(_)) && trust_v1_identity_slot {
        eprintln!("WARNING: --trust-v1-identity-slot: unlocking through a version-1 identity-file slot, which anyone who can write the vault file could have made. The rollback record shows this machine has seen this generation before, which proves the generation number, not the content: check `scopevault cred list` and the credentials after the migration.");
    }
    let mut m = Vault::migrate_v1(&path, &unlock, trust_v1_identity_slot, rewrap, &opts)?;
    m.vault.save(&lock)?;
    println!(
        "migrated {} to format version 2 (generation {}): {} key slot(s), {} identity slot(s) re-made",
        path.display(),
        m.vault.generation(),
        m.vault.slots().len(),
        m.rewrapped
    );
    for r in &m.dropped {
        println!("dropped the version-1 identity slot for {r} (its identity file was not given with --identity-file): add a new identity slot with `scopevault key add --identity-out FILE`");
    }
    Ok(ExitCode::SUCCESS)
}
