//! Every default path in one place. Each function reads the environment when it is called:
//! `SCOPEVAULT_*` overrides (and the CLI's options) first, then the XDG variables the user
//! set, then `HOME`; as root, without an XDG variable, the system locations under `/var` and
//! `/run`.
//!
//! As root, `XDG_DATA_HOME` and `XDG_STATE_HOME` are honoured when set (issue 14, item 10: a
//! throwaway run with its own `XDG_STATE_HOME` must not append to the system audit log).
//! `XDG_RUNTIME_DIR` is not, for root: pam_systemd sets it (`/run/user/0`) in every root login
//! session, and a root shell must reach the system daemon's socket, which systemd starts without
//! it; pass `--socket` or `SCOPEVAULT_SOCKET` to use another.
//!
//! The vault and the rollback record are deliberately in **different** directories, so that
//! restoring the vault's directory from an older backup does not also restore the record of
//! the newest generation seen (which is what detects that rollback).

use std::path::{Path, PathBuf};

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

/// The audit log as root: `/var/log/scopevault/audit.jsonl`.
pub const ROOT_AUDIT: &str = "/var/log/scopevault/audit.jsonl";
/// The daemon's socket as root: `/run/scopevault/scopevault.sock`.
pub const ROOT_SOCKET: &str = "/run/scopevault/scopevault.sock";

/// An XDG base directory the user set: non-empty and absolute (the specification says a
/// relative one is invalid and must be ignored).
fn xdg(var: &str) -> Option<PathBuf> {
    std::env::var_os(var)
        .map(PathBuf::from)
        .filter(|d| d.is_absolute())
}

/// The default vault path: `$XDG_DATA_HOME/scopevault/vault.scopevault` when set, else
/// [`ROOT_VAULT`] as root, else `~/.local/share/scopevault/vault.scopevault`. `--vault` and
/// `SCOPEVAULT_VAULT` override it (in the CLI).
pub fn vault() -> PathBuf {
    let base = match xdg("XDG_DATA_HOME") {
        Some(d) => d,
        None if is_root() => return PathBuf::from(ROOT_VAULT),
        None => home().join(".local/share"),
    };
    base.join("scopevault/vault.scopevault")
}

/// The per-machine state directory (the rollback record `generations.json`, the audit
/// anchors): `$SCOPEVAULT_STATE_DIR`, else `$XDG_STATE_HOME/scopevault` when set, else
/// [`ROOT_STATE_DIR`] as root, else `~/.local/state/scopevault`.
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SCOPEVAULT_STATE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    match xdg("XDG_STATE_HOME") {
        Some(d) => d.join("scopevault"),
        None if is_root() => PathBuf::from(ROOT_STATE_DIR),
        None => home().join(".local/state/scopevault"),
    }
}

/// The default audit log: `$XDG_STATE_HOME/scopevault/audit.jsonl` when set, else
/// [`ROOT_AUDIT`] as root, else `~/.local/state/scopevault/audit.jsonl`. `--audit` and
/// `SCOPEVAULT_AUDIT` override it (in the CLI).
pub fn audit_log() -> PathBuf {
    match xdg("XDG_STATE_HOME") {
        Some(d) => d.join("scopevault/audit.jsonl"),
        None if is_root() => PathBuf::from(ROOT_AUDIT),
        None => home().join(".local/state/scopevault/audit.jsonl"),
    }
}

/// The default socket: [`ROOT_SOCKET`] as root (whatever `XDG_RUNTIME_DIR` says, see the
/// module's documentation), else `$XDG_RUNTIME_DIR/scopevault/scopevault.sock`, else
/// [`ROOT_SOCKET`] (a user without a runtime directory reaches the system daemon).
/// `--socket` and `SCOPEVAULT_SOCKET` override it (in the CLI).
pub fn socket() -> PathBuf {
    match xdg("XDG_RUNTIME_DIR") {
        Some(d) if !is_root() => d.join("scopevault/scopevault.sock"),
        _ => PathBuf::from(ROOT_SOCKET),
    }
}

/// The rollback record: `generations.json` in [`state_dir`].
pub fn generations_record() -> PathBuf {
    state_dir().join("generations.json")
}

/// The rollback record's old location, when [`state_dir`] is the root default (none
/// otherwise): `/var/lib/scopevault/generations.json`.
pub fn legacy_generations_record() -> Option<PathBuf> {
    let default_root = state_dir() == std::path::Path::new(ROOT_STATE_DIR);
    default_root.then(|| PathBuf::from(LEGACY_ROOT_STATE_DIR).join("generations.json"))
}

/// The directory holding `path` (`.` for a bare file name): of the socket, of the audit log.
pub fn dir_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// `dir` (made absolute from the current directory) if it exists, else its nearest ancestor
/// that does (`lstat`: a symbolic link exists, wherever it points). What the path checks
/// judge of a directory the daemon has yet to create (0700, through what already exists).
pub fn nearest_existing(dir: &Path) -> PathBuf {
    let abs = std::path::absolute(dir).unwrap_or_else(|_| dir.to_owned());
    abs.ancestors()
        .find(|d| std::fs::symlink_metadata(d).is_ok())
        .unwrap_or(Path::new("/"))
        .to_owned()
}

/// Whose directories may hold the files a command writes ([`dir_owner_trusted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Owners {
    /// The vault, state and audit directories: the caller's and root's, and, for root, any
    /// user's: root administers the directories of its daemon's user (docs/operations.md).
    Administered,
    /// `publish --out`: the caller's and root's only, root included. No daemon user shares
    /// the admin's output, and the owner of a directory on its way could swap a bundle for a
    /// link between its creation and its rename, which config management then ships.
    CallerOrRoot,
}

/// Whether a directory owned by `owner` may hold the files of a process running as `me`: a
/// directory's owner can rename or remove any entry, whatever its mode or sticky bit. Root and
/// the caller are trusted; for [`Owners::Administered`] root trusts every owner.
pub(crate) fn dir_owner_trusted(owner: u32, me: u32, owners: Owners) -> bool {
    owner == 0 || owner == me || (me == 0 && owners == Owners::Administered)
}

/// The first directory of `chain` ([`lstat_components`]'s answer) owned by another user than
/// root and `me`, with its owner, when `me` is not root ([`dir_owner_trusted`],
/// [`Owners::Administered`]).
pub(crate) fn owned_by_another(
    chain: &[(PathBuf, std::fs::Metadata)],
    me: u32,
) -> Option<(&Path, u32)> {
    use std::os::unix::fs::MetadataExt;
    chain
        .iter()
        .find(|(_, m)| m.is_dir() && !dir_owner_trusted(m.uid(), me, Owners::Administered))
        .map(|(p, m)| (p.as_path(), m.uid()))
}

/// `lstat` every component of `dir` (made absolute from the current directory), from `/` down
/// to `dir` itself, and refuse a symbolic link anywhere: the owner of a link, not the owner of
/// the directory it names, would decide where the socket is. Returns each path with its
/// metadata, the root first.
pub fn lstat_components(dir: &Path) -> Result<Vec<(PathBuf, std::fs::Metadata)>, String> {
    use std::path::Component;
    let abs = if dir.is_absolute() {
        dir.to_owned()
    } else {
        std::env::current_dir()
            .map_err(|e| format!("cannot read the current directory ({e})"))?
            .join(dir)
    };
    let mut out: Vec<(PathBuf, std::fs::Metadata)> = Vec::new();
    let mut at = PathBuf::new();
    for c in abs.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => at.push(c.as_os_str()),
            Component::CurDir => continue,
            Component::ParentDir => {
                return Err(format!(
                    "{} contains `..`; give the directory without it",
                    dir.display()
                ))
            }
            Component::Normal(n) => at.push(n),
        }
        let meta = std::fs::symlink_metadata(&at)
            .map_err(|e| format!("cannot inspect {} ({e})", at.display()))?;
        if meta.file_type().is_symlink() {
            return Err(format!(
                "{} is a symbolic link; give the directory's real path",
                at.display()
            ));
        }
        out.push((at.clone(), meta));
    }
    Ok(out)
}
