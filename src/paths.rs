//! Every default path in one place. Each function reads the environment when it is called
//! (`SCOPEVAULT_*` overrides, then the XDG variables, then `HOME`); as root the system
//! locations under `/var/lib` are used.
//!
//! The vault and the rollback record are deliberately in **different** directories, so that
//! restoring the vault's directory from an older backup does not also restore the record of
//! the newest generation seen (which is what detects that rollback).

use std::path::PathBuf;

/// The vault file as root: `/var/lib/scopevault/vault.scopevault`.
pub const ROOT_VAULT: &str = "/var/lib/scopevault/vault.scopevault";
/// The state directory as root: `/var/lib/scopevault-state` (not the vault's directory).
pub const ROOT_STATE_DIR: &str = "/var/lib/scopevault-state";
/// Where the rollback record was kept as root before it moved out of the vault's directory;
/// read once, if the new record does not exist yet, so an upgrade keeps what it had seen.
pub const LEGACY_ROOT_STATE_DIR: &str = "/var/lib/scopevault";

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// `$HOME`, or `/` when it is unset.
pub fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The default vault path: [`ROOT_VAULT`] as root, else
/// `$XDG_DATA_HOME/scopevault/vault.scopevault` (`~/.local/share/…`). `--vault` and
/// `SCOPEVAULT_VAULT` override it (in the CLI).
pub fn vault() -> PathBuf {
    if is_root() {
        return PathBuf::from(ROOT_VAULT);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home().join(".local/share"));
    base.join("scopevault/vault.scopevault")
}

/// The per-machine state directory (the rollback record `generations.json`):
/// `$SCOPEVAULT_STATE_DIR`, else [`ROOT_STATE_DIR`] as root, else
/// `$XDG_STATE_HOME/scopevault` (`~/.local/state/scopevault`).
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SCOPEVAULT_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    if is_root() {
        return PathBuf::from(ROOT_STATE_DIR);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("scopevault");
    }
    home().join(".local/state/scopevault")
}

/// The rollback record: `generations.json` in [`state_dir`].
pub fn generations_record() -> PathBuf {
    state_dir().join("generations.json")
}

/// The rollback record's old location, when [`state_dir`] is the root default (none
/// otherwise): `/var/lib/scopevault/generations.json`.
pub fn legacy_generations_record() -> Option<PathBuf> {
    let default_root =
        is_root() && std::env::var_os("SCOPEVAULT_STATE_DIR").is_none_or(|d| d.is_empty());
    default_root.then(|| PathBuf::from(LEGACY_ROOT_STATE_DIR).join("generations.json"))
}
