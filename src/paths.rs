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

/// The user's home directory, for the non-root defaults: `$HOME` when it is an absolute path,
/// else the home directory of this uid's `/etc/passwd` line when that is absolute, else why
/// there is none. An empty or relative `HOME` (`HOME=` in a service's environment) would make
/// every default relative to the current directory, and with it the rollback record: a vault
/// rolled back would be refused from one directory and accepted from another (twenty-sixth
/// pass).
pub fn home() -> Result<PathBuf, String> {
    let var = std::env::var_os("HOME");
    if let Some(h) = var.as_ref().map(PathBuf::from).filter(|h| h.is_absolute()) {
        return Ok(h);
    }
    let uid = rustix::process::geteuid().as_raw();
    if let Some(h) = crate::accounts::user_home(uid)
        .map(PathBuf::from)
        .filter(|h| h.is_absolute())
    {
        return Ok(h);
    }
    let given = match &var {
        None => "HOME is not set".to_owned(),
        Some(v) if v.is_empty() => "HOME is empty".to_owned(),
        Some(v) => format!(
            "HOME is `{}`, not an absolute path",
            crate::text::shown(Path::new(v))
        ),
    };
    Err(format!(
        "{given}, and uid {uid} has no absolute home directory in /etc/passwd, so the default paths (vault, state directory, audit log) would depend on the current directory: set HOME to an absolute path (or XDG_DATA_HOME and XDG_STATE_HOME), then run the command again"
    ))
}

/// [`home`], or `/` when there is none: only reached when [`check_env`] let the command run,
/// which it does not when a default needs the home directory and there is none.
fn home_or_root() -> PathBuf {
    home().unwrap_or_else(|_| PathBuf::from("/"))
}

/// The variables naming a path that scopevault reads (the CLI's `env =` options and the state
/// directory). Each, when set, must be an absolute path: a value set once in an environment
/// is used from every directory, and a relative one would name another file from each (the
/// rollback record of `SCOPEVAULT_STATE_DIR=rel`: twenty-sixth pass). An empty one is an
/// error too (not "unset"): `SCOPEVAULT_VAULT=$UNSET` must not quietly mean the default vault.
pub const PATH_VARIABLES: [&str; 5] = [
    "SCOPEVAULT_VAULT",
    "SCOPEVAULT_SOCKET",
    "SCOPEVAULT_IDENTITY_FILE",
    "SCOPEVAULT_AUDIT",
    "SCOPEVAULT_STATE_DIR",
];

/// The path in `var` (one of [`PATH_VARIABLES`]): `None` when unset, the path when absolute,
/// else an error naming the variable.
pub fn env_path(var: &str) -> Result<Option<PathBuf>, String> {
    let Some(v) = std::env::var_os(var) else {
        return Ok(None);
    };
    if v.is_empty() {
        return Err(format!(
            "{var} is set but empty: unset it to use the default, or set it to an absolute path, then run the command again"
        ));
    }
    let p = PathBuf::from(v);
    if !p.is_absolute() {
        return Err(format!(
            "{var} is `{}`, not an absolute path: set once in an environment it would name another file from each current directory; set it to an absolute path (or unset it to use the default), then run the command again",
            crate::text::shown(&p)
        ));
    }
    Ok(Some(p))
}

/// Refuse an environment the default paths cannot be taken from: a `SCOPEVAULT_*` path
/// variable empty or relative ([`env_path`]), or, for a user other than root, no home
/// directory ([`home`]) while `XDG_DATA_HOME` or `XDG_STATE_HOME` is not set. `cli::main`
/// calls it before any command runs.
pub fn check_env() -> Result<(), String> {
    for var in PATH_VARIABLES {
        env_path(var)?;
    }
    if !is_root() && (xdg("XDG_DATA_HOME").is_none() || xdg("XDG_STATE_HOME").is_none()) {
        home()?;
    }
    Ok(())
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
        None => home_or_root().join(".local/share"),
    };
    base.join("scopevault/vault.scopevault")
}

/// The per-machine state directory (the rollback record `generations.json`, the audit
/// anchors): `$SCOPEVAULT_STATE_DIR` (absolute: [`check_env`]), else `$XDG_STATE_HOME/scopevault` when set, else
/// [`ROOT_STATE_DIR`] as root, else `~/.local/state/scopevault`.
pub fn state_dir() -> PathBuf {
    // An empty or relative value is refused by [`check_env`] before any command runs.
    if let Ok(Some(d)) = env_path("SCOPEVAULT_STATE_DIR") {
        return d;
    }
    match xdg("XDG_STATE_HOME") {
        Some(d) => d.join("scopevault"),
        None if is_root() => PathBuf::from(ROOT_STATE_DIR),
        None => home_or_root().join(".local/state/scopevault"),
    }
}

/// The default audit log: `$XDG_STATE_HOME/scopevault/audit.jsonl` when set, else
/// [`ROOT_AUDIT`] as root, else `~/.local/state/scopevault/audit.jsonl`. `--audit` and
/// `SCOPEVAULT_AUDIT` override it (in the CLI).
pub fn audit_log() -> PathBuf {
    match xdg("XDG_STATE_HOME") {
        Some(d) => d.join("scopevault/audit.jsonl"),
        None if is_root() => PathBuf::from(ROOT_AUDIT),
        None => home_or_root().join(".local/state/scopevault/audit.jsonl"),
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

/// Whether `a` and `b` name one file, every link on them followed: the same path (also of a
/// file that does not exist yet), the same directory entry once the directories are resolved,
/// the same canonical path, or the same device and inode. The one test of "is this the same
/// file" that `lint --output`, `status --output` ([`replaces`]) and the advice about backup
/// copies ([`crate::advice`]) share: each took a different subset of these before
/// (the twenty-eighth pass's review).
///
/// A symbolic link that leads nowhere is not the missing file it names: nothing is at that
/// path to overwrite or to mistake for the vault.
pub fn same_file(a: &Path, b: &Path) -> bool {
    FileNames::of(a, true).meet(&FileNames::of(b, true))
}

/// Whether replacing the directory entry `entry` (a file renamed over it: a symbolic link
/// there is replaced, never followed) replaces what `b` names: the file `b` leads to (links
/// followed, as in [`same_file`]), or `b` itself when `b` is a link at that entry.
/// `status --output` naming the vault by the link the vault is given as (`--vault LINK`)
/// replaced that link with metrics: `b`'s links were followed and `entry`'s were not, so the
/// two never met (twenty-eighth pass's review).
pub fn replaces(entry: &Path, b: &Path) -> bool {
    FileNames::of(entry, false).meet(&FileNames::of(b, true))
}

/// The names one path gives a file, for [`same_file`] and [`replaces`].
struct FileNames {
    /// The path made absolute (`..` and links kept), its directory resolved with its last
    /// component kept, and (`follow`) its canonical path.
    paths: Vec<PathBuf>,
    /// (device, inode) of the entry (`lstat`) and (`follow`) of what it leads to.
    inodes: Vec<(u64, u64)>,
}

impl FileNames {
    fn of(p: &Path, follow: bool) -> Self {
        use std::os::unix::fs::MetadataExt;
        let mut paths = Vec::new();
        let mut inodes = Vec::new();
        if let Ok(abs) = std::path::absolute(p) {
            paths.push(abs);
        }
        if let (Some(name), Ok(dir)) = (p.file_name(), std::fs::canonicalize(dir_of(p))) {
            paths.push(dir.join(name));
        }
        if let Ok(m) = std::fs::symlink_metadata(p) {
            inodes.push((m.dev(), m.ino()));
        }
        if follow {
            if let Ok(c) = std::fs::canonicalize(p) {
                paths.push(c);
            }
            if let Ok(m) = std::fs::metadata(p) {
                inodes.push((m.dev(), m.ino()));
            }
        }
        FileNames { paths, inodes }
    }

    fn meet(&self, other: &FileNames) -> bool {
        self.paths.iter().any(|p| other.paths.contains(p))
            || self.inodes.iter().any(|i| other.inodes.contains(i))
    }
}

/// What identifies one version of a file's content: device, inode, size, modification and change
/// times (a file replaced by rename has another inode; one edited in place another size or
/// mtime, and always another ctime). The scrub's change check and the watch of the user and
/// group databases both use it.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub(crate) struct Stamp(
    pub(crate) u64,
    pub(crate) u64,
    pub(crate) u64,
    pub(crate) i64,
    pub(crate) i64,
    pub(crate) i64,
    pub(crate) i64,
);

/// The [`Stamp`] of a file's metadata.
pub(crate) fn stamp(m: &std::fs::Metadata) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    Stamp(
        m.dev(),
        m.ino(),
        m.size(),
        m.mtime(),
        m.mtime_nsec(),
        m.ctime(),
        m.ctime_nsec(),
    )
}

#[cfg(test)]
mod tests {
    use super::{replaces, same_file};
    use std::os::unix::fs::symlink;

    #[test]
    fn one_path_is_the_same_file_whether_or_not_it_exists() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("missing");
        assert!(same_file(&missing, &missing));
        assert!(replaces(&missing, &missing));
        let gone = d.path().join("no-dir/missing");
        assert!(same_file(&gone, &gone));
        std::fs::write(d.path().join("f"), b"x").unwrap();
        assert!(same_file(&d.path().join("f"), &d.path().join("f")));
    }

    #[test]
    fn two_spellings_of_a_missing_file_through_a_linked_directory_are_the_same_file() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("real")).unwrap();
        symlink(d.path().join("real"), d.path().join("via")).unwrap();
        let a = d.path().join("real/out");
        let b = d.path().join("via/./out");
        assert!(same_file(&a, &b));
        assert!(replaces(&b, &a));
        assert!(!same_file(&a, &d.path().join("real/other")));
    }

    #[test]
    fn a_hard_link_is_the_same_file_and_another_file_is_not() {
        let d = tempfile::tempdir().unwrap();
        let (f, h, g) = (d.path().join("f"), d.path().join("h"), d.path().join("g"));
        std::fs::write(&f, b"x").unwrap();
        std::fs::write(&g, b"x").unwrap();
        std::fs::hard_link(&f, &h).unwrap();
        assert!(same_file(&f, &h));
        assert!(replaces(&h, &f));
        assert!(!same_file(&f, &g));
        assert!(!replaces(&g, &f));
    }

    #[test]
    fn a_link_is_the_file_it_leads_to_but_replacing_it_replaces_only_the_link() {
        let d = tempfile::tempdir().unwrap();
        let (f, l) = (d.path().join("f"), d.path().join("l"));
        std::fs::write(&f, b"x").unwrap();
        symlink(&f, &l).unwrap();
        assert!(same_file(&l, &f));
        assert!(same_file(&f, &l));
        // Renaming over `l` replaces the link, not `f`...
        assert!(!replaces(&l, &f));
        // ...but it is what `l` names when the file is named by the link.
        assert!(replaces(&l, &l));
        // The link's own directory entry, spelled another way.
        assert!(replaces(&d.path().join("./l"), &l));
        // Renaming over the file a link leads to replaces what the link names.
        assert!(replaces(&f, &l));
    }

    #[test]
    fn a_link_that_leads_nowhere_is_not_the_missing_file_it_names() {
        let d = tempfile::tempdir().unwrap();
        let (m, l) = (d.path().join("missing"), d.path().join("l"));
        symlink(&m, &l).unwrap();
        assert!(!same_file(&l, &m));
        assert!(!replaces(&l, &m));
        assert!(same_file(&l, &l));
    }

    #[test]
    fn a_relative_path_is_the_same_file_as_its_absolute_one() {
        let here = std::env::current_dir().unwrap();
        let rel = std::path::Path::new("Cargo.toml");
        assert!(same_file(rel, &here.join("Cargo.toml")));
        assert!(same_file(
            std::path::Path::new("no-such-dir-here/x"),
            &here.join("no-such-dir-here/x")
        ));
    }
}
