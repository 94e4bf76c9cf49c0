//! The paths given to the scrub (`exec --artifacts DIR`, `redact PATH`), resolved component by
//! component from descriptors before anything under them is touched.
//!
//! The scrub often runs as root over a tree that another user (the check's runner) owns, and
//! it rewrites and, with `--artifacts-binary drop`, deletes what it finds. A path resolved by
//! the kernel in one go follows every symbolic link on it, whoever owns the link: the runner
//! replaced its artefact directory (or a directory above it) with a link to a root-only
//! directory, or to one file, and root's scrub dropped or rewrote what was there, the vault
//! included (twenty-fifth pass). So each component is opened on its own from the directory
//! before it (`openat` with `O_PATH|O_NOFOLLOW`), and a component that is a symbolic link is
//! followed only when root or the caller owns it, as the vault path's links are
//! (vault-format.md): another user's link is refused, naming it and its owner. Nor does a
//! link's owner say who put it in its directory (a hard link of root's link, with
//! `fs.protected_hardlinks=0`), so the directory holding it must be one only root or the
//! caller may write, as the kernel's `protected_symlinks` reasons. The link's
//! owner and its target are read from the link itself, opened once (`fstat`, `readlinkat`),
//! so they are those of one link whatever is renamed meanwhile. The walk then starts from the
//! descriptor resolved here, never from the path again.

use std::ffi::{CStr, OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use rustix::fd::OwnedFd;
use rustix::fs::{FileType, Mode, OFlags};

/// The most symbolic links followed while resolving one path (the kernel's own bound, so a
/// loop ends in an error rather than for ever).
pub(crate) const MAX_LINKS: usize = 40;

/// What a path given to the scrub leads to.
pub(crate) enum Target {
    /// A directory, open `O_PATH` (reopen it to list it).
    Dir(OwnedFd),
    /// Anything else (a regular file, a FIFO, a device, a socket): its directory, open
    /// `O_PATH`, its name there, and what it was when resolved.
    Entry {
        dir: OwnedFd,
        name: OsString,
        kind: FileType,
    },
}

/// Why a directory holding a trusted link does not vouch for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DirDoubt {
    /// The directory is owned by another user than root and the caller.
    Owner,
    /// Group or others may write the directory (without the sticky bit, or with it and the
    /// link owned by another user than the directory's owner).
    Writable,
}

/// A path given to the scrub, resolved ([`resolve`]).
pub(crate) struct Resolved {
    /// What it leads to.
    pub target: Target,
    /// The path of what it leads to, with no link on it, when a link was followed: the path the
    /// scrub acts on, shown in the summary in place of the one given.
    pub real: Option<PathBuf>,
}

/// Why a path given to the scrub was not resolved. Names paths, never a value.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ResolveError {
    /// A symbolic link on the path is owned by a user other than root and the caller.
    #[error(
        "{}, owned by uid {owner}, another user than root and this one (uid {me}): they could point it at any file, so it is not followed and nothing under it was scrubbed. Give the real path, or replace the link with one of your own",
        if link == given { "it is a symbolic link".to_owned() } else { format!("{} on its path is a symbolic link", link.display()) }
    )]
    Untrusted {
        given: PathBuf,
        link: PathBuf,
        owner: u32,
        me: u32,
    },
    /// A link of root's or the caller's is in a directory another user may write: its owner
    /// does not say who put it there (a hard link of root's link, `fs.protected_hardlinks=0`).
    #[error(
        "{} in {}, a directory {}: whoever may write there could have put the link there (a hard link of another's symbolic link), so it is not followed and nothing under it was scrubbed. Give the real path, or keep the link in a directory only root or you may write",
        if link == given { "it is a symbolic link".to_owned() } else { format!("{} on its path is a symbolic link", link.display()) },
        dir.display(),
        match doubt {
            DirDoubt::Owner => format!("owned by uid {dir_owner}, another user than root and this one (uid {me})"),
            DirDoubt::Writable => format!("owned by uid {dir_owner} that group or others may write"),
        }
    )]
    UntrustedDir {
        given: PathBuf,
        link: PathBuf,
        dir: PathBuf,
        dir_owner: u32,
        doubt: DirDoubt,
        me: u32,
    },
    /// The path (no link followed) cannot be read.
    #[error("cannot read: {0}")]
    Read(std::io::Error),
    /// A link was followed and what it leads to cannot be reached.
    #[error("cannot follow the symbolic link: {0}")]
    Follow(std::io::Error),
}

/// Resolve `given` from the root directory (an absolute path) or the working directory (a
/// relative one), one component at a time, following a symbolic link only when it is owned by
/// root or the caller ([`ResolveError::Untrusted`] otherwise). A link's target is resolved by
/// the same rule, from the directory that holds the link (or from `/`). `on_link` is given
/// each link followed (its path, with no link before it) and its target, which archives of
/// the tree keep as text, also when what it leads to is then not found.
pub(crate) fn resolve(
    given: &Path,
    on_link: impl FnMut(&Path, &CStr),
) -> Result<Resolved, ResolveError> {
    let me = rustix::process::geteuid().as_raw();
    resolve_trusting(given, me, |uid| uid == 0 || uid == me, on_link)
}

/// [`resolve`], trusting the links whose owner `trusted` accepts (`me` is named in a
/// refusal).
fn resolve_trusting(
    given: &Path,
    me: u32,
    trusted: impl Fn(u32) -> bool,
    mut on_link: impl FnMut(&Path, &CStr),
) -> Result<Resolved, ResolveError> {
    let opened = |e: rustix::io::Errno| std::io::Error::from(e);
    let dir_flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    // The components still to resolve, in order: the path's own, with a link's target put
    // in front of what follows the link.
    let mut todo: std::collections::VecDeque<OsString> = std::collections::VecDeque::new();
    let mut cur;
    let mut real;
    if given.is_absolute() {
        cur = rustix::fs::open("/", dir_flags, Mode::empty())
            .map_err(|e| ResolveError::Read(opened(e)))?;
        real = PathBuf::from("/");
    } else {
        cur = rustix::fs::open(".", dir_flags, Mode::empty())
            .map_err(|e| ResolveError::Read(opened(e)))?;
        real = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    }
    push_front(&mut todo, given);
    // Links followed so far: after one, an error is one of following it (a link that leads
    // nowhere).
    let mut links = 0;
    let fail = |links: usize, e: std::io::Error| {
        if links == 0 {
            ResolveError::Read(e)
        } else {
            ResolveError::Follow(e)
        }
    };
    // The entry last resolved when it is not a directory: its name and kind.
    let mut entry: Option<(OsString, FileType)> = None;
    while let Some(name) = todo.pop_front() {
        if entry.is_some() {
            // Something that is not a directory, with more after it (`file/x`).
            return Err(fail(links, std::io::Error::from(rustix::io::Errno::NOTDIR)));
        }
        if name.as_bytes() == b".." {
            cur = rustix::fs::openat(&cur, "..", dir_flags, Mode::empty())
                .map_err(|e| fail(links, opened(e)))?;
            real.pop();
            continue;
        }
        let fd = rustix::fs::openat(
            &cur,
            name.as_os_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| fail(links, opened(e)))?;
        let st = rustix::fs::fstat(&fd).map_err(|e| fail(links, opened(e)))?;
        let here = real.join(&name);
        match FileType::from_raw_mode(st.st_mode) {
            FileType::Symlink => {
                if !trusted(st.st_uid) {
                    return Err(ResolveError::Untrusted {
                        given: given.to_path_buf(),
                        // The path given is itself the link (the usual case), or a link
                        // is above it or where another link led.
                        link: if links == 0 && todo.is_empty() {
                            given.to_path_buf()
                        } else {
                            here
                        },
                        owner: st.st_uid,
                        me,
                    });
                }
                // The link's owner does not say who put it in its directory: with
                // `fs.protected_hardlinks=0` anyone may hard-link root's link into a
                // directory of theirs. So the directory must be one only root or the caller
                // may write, as the kernel's `protected_symlinks` reasons: owned by them and
                // not writable by group or others, or sticky with the link's owner its owner.
                let dst = rustix::fs::fstat(&cur).map_err(|e| fail(links, opened(e)))?;
                let doubt = if !trusted(dst.st_uid) {
                    Some(DirDoubt::Owner)
                } else if dst.st_mode & 0o022 != 0
                    && !(dst.st_mode & 0o1000 != 0 && dst.st_uid == st.st_uid)
                {
                    Some(DirDoubt::Writable)
                } else {
                    None
                };
                if let Some(doubt) = doubt {
                    return Err(ResolveError::UntrustedDir {
                        given: given.to_path_buf(),
                        link: if links == 0 && todo.is_empty() {
                            given.to_path_buf()
                        } else {
                            here
                        },
                        dir: real.clone(),
                        dir_owner: dst.st_uid,
                        doubt,
                        me,
                    });
                }
                if links == MAX_LINKS {
                    return Err(ResolveError::Follow(std::io::Error::from(
                        rustix::io::Errno::LOOP,
                    )));
                }
                let target = rustix::fs::readlinkat(&fd, "", Vec::new())
                    .map_err(|e| ResolveError::Follow(opened(e)))?;
                let to = PathBuf::from(OsString::from_vec(target.as_bytes().to_vec()));
                if to.as_os_str().is_empty() {
                    return Err(ResolveError::Follow(std::io::Error::from(
                        rustix::io::Errno::NOENT,
                    )));
                }
                on_link(&here, &target);
                links += 1;
                if to.is_absolute() {
                    cur = rustix::fs::open("/", dir_flags, Mode::empty())
                        .map_err(|e| ResolveError::Follow(opened(e)))?;
                    real = PathBuf::from("/");
                }
                push_front(&mut todo, &to);
            }
            FileType::Directory => {
                cur = fd;
                real = here;
            }
            kind => {
                entry = Some((name, kind));
                real = here;
            }
        }
    }
    let real = (links > 0).then_some(real);
    let target = match entry {
        None => Target::Dir(cur),
        Some((name, kind)) => Target::Entry {
            dir: cur,
            name,
            kind,
        },
    };
    Ok(Resolved { target, real })
}

/// Put the components of `path` (a root and `.` left out: the caller starts from `/` for an
/// absolute path) in front of `todo`, in order.
fn push_front(todo: &mut std::collections::VecDeque<OsString>, path: &Path) {
    let names: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some(OsStr::new("..").to_owned()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    for n in names.into_iter().rev() {
        todo.push_front(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    /// The attacker of races (twenty-fifth pass): a link on the path given, or above it, that
    /// the caller does not trust is refused and named, whoever owns it; here no owner is
    /// trusted, so the caller's own links stand for another user's.
    #[test]
    fn an_untrusted_link_on_the_path_or_above_it_is_refused_and_named() {
        let root = tempfile::tempdir().unwrap();
        let (victim, ws) = (root.path().join("victim"), root.path().join("ws"));
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::create_dir_all(&ws).unwrap();
        std::os::unix::fs::symlink(&victim, ws.join("art")).unwrap();
        std::os::unix::fs::symlink(root.path(), root.path().join("up")).unwrap();
        let given = ws.join("art");
        match resolve_trusting(&given, 7, |_| false, |_, _| {}) {
            Err(ResolveError::Untrusted {
                link, owner, me: 7, ..
            }) => assert_eq!((link, owner), (given.clone(), me())),
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("followed"),
        }
        let above = root.path().join("up/victim");
        match resolve_trusting(&above, 7, |_| false, |_, _| {}) {
            Err(e @ ResolveError::Untrusted { .. }) => {
                let shown = e.to_string();
                assert!(
                    shown.starts_with(&format!(
                        "{} on its path is a symbolic link, owned by uid {}",
                        root.path().join("up").display(),
                        me()
                    )),
                    "{shown}"
                );
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("followed"),
        }
    }

    /// The re-attacker of this pass's fixes (twenty-fifth pass): a link whose owner is
    /// trusted is not followed from a directory that group or others may write (anyone there
    /// could have hard-linked it in), unless the directory is sticky and owned by the link's
    /// owner (the kernel's `protected_symlinks` rule); the refusal names the link, its
    /// directory and the directory's owner.
    #[test]
    fn a_trusted_link_in_a_directory_others_may_write_is_refused_and_named() {
        use std::os::unix::fs::PermissionsExt;
        let root = tempfile::tempdir().unwrap();
        let (victim, ws) = (root.path().join("victim"), root.path().join("ws"));
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::create_dir_all(&ws).unwrap();
        std::os::unix::fs::symlink(&victim, ws.join("art")).unwrap();
        let given = ws.join("art");
        for mode in [0o777, 0o775, 0o757] {
            std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(mode)).unwrap();
            match resolve(&given, |_, _| {}) {
                Err(e @ ResolveError::UntrustedDir { .. }) => {
                    let shown = e.to_string();
                    assert!(
                        shown.starts_with(&format!(
                            "it is a symbolic link in {}, a directory owned by uid {} that group or others may write",
                            ws.display(),
                            me()
                        )),
                        "{shown}"
                    );
                }
                Err(e) => panic!("{mode:o}: {e}"),
                Ok(_) => panic!("{mode:o}: followed"),
            }
        }
        // Above the path given, too.
        let above = given.join("x");
        std::fs::create_dir(victim.join("x")).unwrap();
        match resolve(&above, |_, _| {}) {
            Err(ResolveError::UntrustedDir { link, dir, .. }) => {
                assert_eq!((link, dir), (given.clone(), ws.clone()))
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("followed"),
        }
        // Sticky and owned by the link's owner, or written by no one else: followed.
        for mode in [0o1777, 0o755] {
            std::fs::set_permissions(&ws, std::fs::Permissions::from_mode(mode)).unwrap();
            let r = resolve(&given, |_, _| {}).unwrap_or_else(|e| panic!("{mode:o}: {e}"));
            assert_eq!(r.real.as_deref(), Some(victim.as_path()));
        }
    }

    /// A trusted link is followed as the kernel would (`..` after it is the parent of its
    /// target), the real path is given, and a loop or a link to nothing is an error.
    #[test]
    fn a_trusted_link_is_followed_and_the_real_path_named() {
        let root = tempfile::tempdir().unwrap();
        let real = root.path().join("runs/42");
        std::fs::create_dir_all(&real).unwrap();
        std::fs::write(real.join("app.log"), "x").unwrap();
        std::os::unix::fs::symlink("runs/42", root.path().join("latest")).unwrap();
        let mut links = Vec::new();
        let r = resolve(&root.path().join("latest"), |l, t| {
            links.push((l.to_owned(), t.to_owned()))
        })
        .unwrap();
        assert!(matches!(r.target, Target::Dir(_)));
        assert_eq!(r.real.as_deref(), Some(real.as_path()));
        assert_eq!(links, [(root.path().join("latest"), c"runs/42".to_owned())]);
        let r = resolve(&root.path().join("latest/../42/app.log"), |_, _| {}).unwrap();
        assert_eq!(r.real, Some(real.join("app.log")));
        match r.target {
            Target::Entry { name, kind, .. } => {
                assert_eq!(
                    (name.as_os_str(), kind),
                    ("app.log".as_ref(), FileType::RegularFile)
                )
            }
            Target::Dir(_) => panic!("a directory"),
        }
        // No link: nothing to name in its place.
        assert!(resolve(&real, |_, _| {}).unwrap().real.is_none());
        std::os::unix::fs::symlink("loop", root.path().join("loop")).unwrap();
        std::os::unix::fs::symlink("gone", root.path().join("dangling")).unwrap();
        for p in ["loop", "dangling"] {
            assert!(matches!(
                resolve(&root.path().join(p), |_, _| {}),
                Err(ResolveError::Follow(_))
            ));
        }
        assert!(matches!(
            resolve(&root.path().join("missing"), |_, _| {}),
            Err(ResolveError::Read(_))
        ));
        assert!(matches!(
            resolve(&real.join("app.log/x"), |_, _| {}),
            Err(ResolveError::Read(_))
        ));
    }
}
