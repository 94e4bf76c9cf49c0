//! `scopevault key list|add|remove`: key slots. None of these re-encrypts the payload.

use std::process::ExitCode;

use super::args::{GlobalArgs, KeyAddArgs, KeyCommand};
use super::init::{keyring_store, refuse_existing, write_private_new};
use super::unlock::{new_passphrase, open_vault, vault_path, warn_test_kdf};
use crate::vault::{Vault, WriteLock};

pub(crate) fn run(g: &GlobalArgs, cmd: &KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::List { json } => list(g, *json),
        KeyCommand::Add(a) => add(g, a),
        KeyCommand::Remove { slot } => remove(g, slot),
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
        vault.add_passphrase_slot(p)?.describe()
    } else if a.keyring {
        vault
            .add_keyring_slot(keyring_store(a.keyring_store))?
            .describe()
    } else if let Some(out) = &a.identity_out {
        let text = vault.add_identity_slot()?;
        write_private_new(out, text.as_bytes())?;
        if let Err(e) = vault.save(&lock) {
            let _ = std::fs::remove_file(out);
            return Err(e.into());
        }
        println!(
            "added key slot: {}",
            vault.slots().last().expect("added").describe()
        );
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
