//! Helpers of `scopevault exec` (the command itself is `client_cmds::exec`): process
//! hardening, the private credentials directory of `--files`, and the artefact scrub of
//! `--artifacts`.
//!
//! `--files` directory: `<runtime dir>/scopevault-exec/run-XXXXXX` on a tmpfs (the user's
//! `$XDG_RUNTIME_DIR`, `/run/user/UID`, `/run` for root, else `/dev/shm/scopevault-exec-UID`),
//! never `/tmp`. Each value lives in a sealed memfd that the child inherits; the directory
//! only holds symbolic links `CRED/FIELD -> /proc/self/fd/N`, which the child resolves to its
//! own copy of the descriptor (mode 0600, sealed: it cannot be changed). `N` is the highest
//! free descriptor number below the soft `RLIMIT_NOFILE`, at most 1023 ([`HIGH_FD_LIMIT`]):
//! a process that does not hold the inherited descriptor (one started with its inherited
//! descriptors closed) gets `ENOENT` from the link, not one of its own files, which take the
//! lowest free numbers. Where memfds are not available, or the open-files limit leaves no room
//! for one per value (see [`descriptors_after_fetch`]), the values are written as mode-0600
//! files on the tmpfs. A directory left by an `exec` that was killed (SIGKILL) is removed by
//! the next `exec` of the same user: beside each live `run-XXXXXX` directory is a
//! `run-XXXXXX.lock` that its `exec` keeps locked.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::protocol::Fetched;
use crate::redact::{BinaryPolicy, Scrubber};
use crate::secret::{Patterns, Target};

/// Make this process not dumpable (no core file, no ptrace or /proc/PID/mem by other
/// processes of the same user) before any secret is fetched. The child's `execve` gives it
/// its own dumpable flag back; nothing else of the child's environment changes.
pub(crate) fn harden() {
    if let Err(e) =
        rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
    {
        eprintln!("scopevault: warning: could not make exec non-dumpable: {e}");
    }
}

/// Every secret value of a hand-out as a masking/scrubbing target, labelled `CRED.FIELD`; a
/// login's password carries its username (for HTTP Basic's `base64(user:password)`).
/// Whether `program` names something that could run: a path that exists, or a name found as
/// an executable file on `PATH` (as `execvp` searches it). Checked before the fetch, so that a
/// command that is not there costs no hand-out in the audit log; the spawn decides the rest.
pub(crate) fn command_found(program: &std::ffi::OsStr) -> bool {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    let path = Path::new(program);
    if program.as_bytes().contains(&b'/') {
        return path.exists();
    }
    let Some(search) = std::env::var_os("PATH") else {
        // The spawn's own default search decides.
        return true;
    };
    std::env::split_paths(&search).any(|dir| {
        std::fs::metadata(dir.join(path))
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    })
}

pub(crate) fn targets(fetched: &Fetched) -> Vec<Target> {
    let mut out = Vec::new();
    for c in &fetched.credentials {
        let username = c
            .fields
            .get("username")
            .or_else(|| c.fields.get("user"))
            .or_else(|| c.fields.get("login"))
            .cloned();
        for (k, v) in &c.secrets {
            out.push(Target {
                label: format!("{}.{k}", c.name),
                value: v.clone(),
                username: if k == "password" {
                    username.clone()
                } else {
                    None
                },
            });
        }
        if let Some(t) = &c.totp {
            out.push(Target {
                label: format!("{}.totp_code", c.name),
                value: t.code.clone(),
                username: None,
            });
        }
    }
    out
}

/// Scrub the `--artifacts` directories after the command ended; prints the summary on stderr
/// and reports the counts to the daemon's audit log ([`report_scrub`]). Returns whether every
/// file was scrubbed.
pub(crate) fn scrub_artifacts(
    patterns: std::sync::Arc<Patterns>,
    dirs: &[PathBuf],
    binary: BinaryPolicy,
    socket: &Path,
    task: &str,
) -> bool {
    let scrubber = Scrubber::new(patterns, binary);
    let summary = scrubber.scrub_paths(dirs);
    eprint!("{summary}");
    report_scrub(socket, task, &summary);
    summary.ok()
}

/// How long `exec` and `redact` wait for the daemon to take a scrub report.
const REPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Send the counts of a scrub (`scrub_report`) to the daemon, which records them in its audit
/// log. A daemon that cannot be reached or refuses is a warning on stderr, not a failure: the
/// artefacts are scrubbed either way, and the exit code of `exec` and `redact` stays what the
/// command and the scrub made it (docs/security.md). Returns whether the report was recorded.
pub(crate) fn report_scrub(socket: &Path, task: &str, summary: &crate::redact::Summary) -> bool {
    let sent = crate::client::Client::connect_within(socket, REPORT_TIMEOUT)
        .and_then(|mut c| c.scrub_report(task, summary.counts()));
    match sent {
        Ok(r) => {
            eprintln!(
                "scopevault: artefacts: counts recorded in the audit log (seq {})",
                r.audit_seq
            );
            true
        }
        Err(e) => {
            eprintln!(
                "scopevault: warning: the scrub's counts were not recorded in the daemon's audit log: {}",
                crate::text::escape_for_terminal(&e.to_string())
            );
            false
        }
    }
}

/// The most descriptors `exec` holds at once from its fetch until the command ends, apart from
/// the `--files` memfds (one per value, as many as the hand-out holds: see [`values`]). With
/// `masking`, the command's stdout and stderr are pipes. Reserved before the fetch
/// ([`reserve_descriptors`]), so that an open-files limit too low for them stops `exec` with
/// nothing fetched, rather than after a hand-out for a command that never runs. The scrub of
/// `--artifacts` comes after the command, with what the command held given back; it is not
/// counted (a directory it cannot open is reported as not scrubbed).
pub(crate) fn descriptors_after_fetch(files: bool, masking: bool) -> usize {
    let pipes = if masking { 2 } else { 0 };
    // The spawn: both ends of each pipe, and the pipe std opens to hear of a failed `execve`
    // when it forks rather than calling `posix_spawn`.
    let spawning = 2 * pipes + 2;
    // While the command runs: our end of each pipe, its pidfd (`ChildSignals`), and the
    // signal handlers' socket pair.
    let running = pipes + 1 + 2;
    // `--files`: the directory's lock file, held until the command ends. Making the directory
    // opens two at a time (a stale directory's listing and its lock), a value's file one:
    // fewer than the rest.
    usize::from(files) + spawning.max(running)
}

/// How many entries `--files` makes of a hand-out: one per field and secret, two for a TOTP
/// code (the code and its seconds left). Each is a memfd that `exec` holds until the command
/// ends.
pub(crate) fn values(fetched: &Fetched) -> usize {
    fetched
        .credentials
        .iter()
        .map(|c| c.fields.len() + c.secrets.len() + if c.totp.is_some() { 2 } else { 0 })
        .sum()
}

/// Hold `n` descriptors (see [`descriptors_after_fetch`]), or stop `exec` before its fetch,
/// with a message naming the open-files limit (exit 2).
pub(crate) fn reserve_descriptors(n: usize) -> anyhow::Result<crate::sys::DescriptorReserve> {
    crate::sys::DescriptorReserve::take(n).map_err(|short| {
        let message = if short.error.raw_os_error() == Some(rustix::io::Errno::MFILE.raw_os_error())
        {
            format!(
                "exec needs {} free file descriptors to run the command and the open-files limit leaves it {} (the limit is {}, soft RLIMIT_NOFILE): raise it (`ulimit -n`, or LimitNOFILE= in a systemd unit); nothing was fetched",
                short.wanted,
                short.got,
                crate::sys::open_files_limit()
            )
        } else {
            format!(
                "exec cannot hold the {} file descriptors it needs to run the command: {}; nothing was fetched",
                short.wanted, short.error
            )
        };
        anyhow::Error::new(super::Exit {
            code: super::EXIT_USAGE,
            message,
        })
    })
}

const TMPFS_MAGIC: i64 = 0x0102_1994;

// `f_type`'s integer type differs between architectures (and libc/raw backends).
#[allow(clippy::unnecessary_cast, clippy::useless_conversion)]
fn is_tmpfs(p: &Path) -> bool {
    rustix::fs::statfs(p).is_ok_and(|s| s.f_type as i64 == TMPFS_MAGIC)
}

/// The directory under which `exec --files` directories are made, created 0700 if missing,
/// and checked: a real directory (not a link), owned by us, not group/other accessible.
pub(crate) fn runtime_base() -> anyhow::Result<PathBuf> {
    let uid = crate::sys::current_uid();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if uid != 0 {
        if let Some(d) = std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
            candidates.push(PathBuf::from(d));
        }
        candidates.push(PathBuf::from(format!("/run/user/{uid}")));
    } else {
        candidates.push(PathBuf::from("/run"));
    }
    for c in &candidates {
        if c.is_dir() && is_tmpfs(c) {
            return ensure_private_dir(&c.join("scopevault-exec"));
        }
    }
    if is_tmpfs(Path::new("/dev/shm")) {
        return ensure_private_dir(&PathBuf::from(format!("/dev/shm/scopevault-exec-{uid}")));
    }
    let c = candidates
        .into_iter()
        .find(|c| c.is_dir())
        .context("no runtime directory for the credentials files (set XDG_RUNTIME_DIR)")?;
    eprintln!(
        "scopevault: warning: {} is not a tmpfs: credential files may reach the disk",
        crate::text::shown(&c)
    );
    ensure_private_dir(&c.join("scopevault-exec"))
}

fn ensure_private_dir(d: &Path) -> anyhow::Result<PathBuf> {
    match std::fs::DirBuilder::new().mode(0o700).create(d) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", d.display())),
    }
    let m = std::fs::symlink_metadata(d)?;
    if !m.file_type().is_dir() {
        bail!(
            "{} is not a directory (a symbolic link?): refused",
            d.display()
        );
    }
    if m.uid() != crate::sys::current_uid() {
        bail!(
            "{} belongs to uid {}, not to us: refused",
            d.display(),
            m.uid()
        );
    }
    if m.mode() & 0o077 != 0 {
        bail!(
            "{} is accessible to other users (mode {:o}): refused",
            d.display(),
            m.mode() & 0o777
        );
    }
    Ok(d.to_path_buf())
}

/// Remove the directories of `exec`s that are gone (their `.lock` is not held). Returns how
/// many were removed.
pub(crate) fn remove_stale(base: &Path) -> usize {
    let mut removed = 0;
    let Ok(rd) = std::fs::read_dir(base) else {
        return 0;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if !name.starts_with("run-") || name.ends_with(".lock") {
            continue;
        }
        let p = e.path();
        let Ok(m) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !m.is_dir() || m.uid() != crate::sys::current_uid() {
            continue;
        }
        let lock_path = base.join(format!("{name}.lock"));
        let stale = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&lock_path)
        {
            Ok(f) => crate::sys::try_lock_exclusive(&f).is_ok(),
            // No lock file: being created right now, or left half-made; only the latter
            // (older than a minute) is stale.
            Err(_) => m
                .modified()
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 60),
        };
        if stale && std::fs::remove_dir_all(&p).is_ok() {
            let _ = std::fs::remove_file(&lock_path);
            removed += 1;
        }
    }
    removed
}

/// The private directory of one `exec --files`: removed when dropped.
pub(crate) struct CredDir {
    dir: tempfile::TempDir,
    _lock: File,
    lock_path: PathBuf,
    /// The memfds the child inherits (closed in this process when dropped).
    memfds: Vec<OwnedFd>,
    memfd_ok: bool,
    /// Each entry made so far, relative to the directory, and what it holds (`CRED.FIELD`):
    /// two values that would be one entry are refused naming both.
    entries: std::collections::BTreeMap<PathBuf, String>,
}

impl CredDir {
    /// Remove stale directories, then make a new one (0700) with its lock held. Its values
    /// are memfds when `memfds` (and the kernel allows), else files.
    pub(crate) fn create(memfds: bool) -> anyhow::Result<CredDir> {
        let base = runtime_base()?;
        remove_stale(&base);
        let dir = tempfile::Builder::new()
            .prefix("run-")
            .tempdir_in(&base)
            .context("cannot create the private credentials directory")?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o700))?;
        }
        let mut lock_path = dir.path().as_os_str().to_owned();
        lock_path.push(".lock");
        let lock_path = PathBuf::from(lock_path);
        let lock = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(&lock_path)?;
        crate::sys::try_lock_exclusive(&lock)?;
        Ok(CredDir {
            dir,
            _lock: lock,
            lock_path,
            memfds: Vec::new(),
            memfd_ok: memfds,
            entries: Default::default(),
        })
    }

    /// The directory.
    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Hand over one value as `dir/<credential>/<field>`: a link to an inherited memfd, or
    /// a 0600 file where memfds are not available. `what` names the value in messages
    /// (`CRED.FIELD`, or what `exec` made of the credential, such as its TOTP code).
    pub(crate) fn put(
        &mut self,
        cred: &str,
        field: &str,
        what: &str,
        value: &[u8],
    ) -> anyhow::Result<()> {
        // Credential names (`validate_name`) and field names (`validate_field_key`) are one
        // path component each; a vault written before field names were held to that can
        // still hold `.` or `..`.
        if !is_one_component(cred) {
            bail!(
                "credential `{}` cannot be a directory under --files (a name is one path component: not empty, `.` or `..`, no `/`)",
                cred.escape_debug()
            );
        }
        if !is_one_component(field) {
            bail!(
                "credential `{cred}` has a field named `{}`, which cannot be an entry under --files (a field name is one path component: not empty, `.` or `..`, no `/`): rename it (set the value under another name; `cred rm` and `cred add` to drop this one)",
                field.escape_debug()
            );
        }
        let rel = Path::new(cred).join(field);
        if let Some(other) = self.entries.get(&rel) {
            bail!(
                "{other} and {what} would both be the entry {cred}/{field} under --files: rename one of them"
            );
        }
        self.entries.insert(rel.clone(), what.to_owned());
        let cdir = self.dir.path().join(cred);
        if !cdir.exists() {
            std::fs::DirBuilder::new().mode(0o700).create(&cdir)?;
        }
        let path = self.dir.path().join(&rel);
        if self.memfd_ok {
            match sealed_memfd(value).and_then(inheritable_at_the_top) {
                Ok(fd) => {
                    let target = format!("/proc/self/fd/{}", fd.as_raw_fd());
                    std::os::unix::fs::symlink(&target, &path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    self.memfds.push(fd);
                    return Ok(());
                }
                Err(_) => self.memfd_ok = false,
            }
        }
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        f.write_all(value)?;
        Ok(())
    }
}

impl Drop for CredDir {
    fn drop(&mut self) {
        // The directory itself goes with `dir` (TempDir) right after this.
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// A memfd holding `value`, sealed against any change (close-on-exec: see
/// [`inheritable_at_the_top`]).
fn sealed_memfd(value: &[u8]) -> std::io::Result<OwnedFd> {
    use rustix::fs::{MemfdFlags, SealFlags};
    let fd = rustix::fs::memfd_create(
        "scopevault-credential",
        MemfdFlags::ALLOW_SEALING | MemfdFlags::CLOEXEC,
    )?;
    rustix::fs::fchmod(&fd, rustix::fs::Mode::from_raw_mode(0o600))?;
    let mut f = File::from(fd);
    f.write_all(value)?;
    let fd = OwnedFd::from(f);
    rustix::fs::fcntl_add_seals(
        &fd,
        SealFlags::SHRINK | SealFlags::GROW | SealFlags::WRITE | SealFlags::SEAL,
    )?;
    Ok(fd)
}

/// The `--files` memfds go at the highest free descriptor numbers below the soft
/// `RLIMIT_NOFILE`, and below this: every process's descriptor table is sized to its highest
/// descriptor, and 1024 is `FD_SETSIZE` (`select`).
pub(crate) const HIGH_FD_LIMIT: u64 = 1024;

/// `fd` moved to the highest free descriptor number below the lower of the soft
/// `RLIMIT_NOFILE` and [`HIGH_FD_LIMIT`], without close-on-exec, so that the child inherits
/// it there. A process's own files take the lowest free numbers, so a process of the command
/// that does not hold the inherited descriptor (started with inherited descriptors closed)
/// finds nothing at `/proc/self/fd/N` (`ENOENT`) instead of reading a file of its own.
/// Where no higher number is free, the memfd keeps the number it has.
fn inheritable_at_the_top(fd: OwnedFd) -> std::io::Result<OwnedFd> {
    use rustix::io::{fcntl_dupfd_cloexec, fcntl_setfd, Errno, FdFlags};
    let soft = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .current
        .unwrap_or(HIGH_FD_LIMIT);
    let top = i32::try_from(soft.min(HIGH_FD_LIMIT)).unwrap_or(1024);
    let mut placed = None;
    // F_DUPFD takes the lowest free number at or above `min`: counting `min` down from the
    // top, the first that lands below the top is the highest free number. (With a soft limit
    // above the top, a taken `min` gives a number above the top: closed, and one lower tried.)
    for min in (fd.as_raw_fd() + 1..top).rev() {
        match fcntl_dupfd_cloexec(&fd, min) {
            Ok(high) if high.as_raw_fd() < top => {
                placed = Some(high);
                break;
            }
            Ok(_above_the_top) => continue,
            Err(Errno::MFILE | Errno::INVAL) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    let fd = placed.unwrap_or(fd);
    fcntl_setfd(&fd, FdFlags::empty())?;
    Ok(fd)
}

/// Whether `name` is one path component: not empty, not `.` or `..`, no `/` nor NUL.
fn is_one_component(name: &str) -> bool {
    !matches!(name, "" | "." | "..") && !name.contains(['/', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sixteenth pass (found by attacking the fix with `ulimit -Sn 4096`): with a soft
    /// `RLIMIT_NOFILE` above 1024, the second memfd went to 1024, the third to 1025 (F_DUPFD
    /// found 1023 taken and gave the next free number up). Every one must land at or below
    /// 1023, counting down.
    #[test]
    fn memfds_stay_below_1024_counting_down_whatever_the_soft_limit() {
        use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
        let lim = getrlimit(Resource::Nofile);
        let hard = lim.maximum.unwrap_or(u64::MAX);
        // Raised to 4096 where the hard limit allows (the soft limit of many hosts is 1024):
        // the case the bug needs. Where it cannot be, the placement is checked as it is.
        if lim.current.is_some_and(|c| c <= HIGH_FD_LIMIT) && hard > HIGH_FD_LIMIT {
            setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(hard.min(4096)),
                    maximum: lim.maximum,
                },
            )
            .unwrap();
        }
        let placed: Vec<OwnedFd> = (0..4)
            .map(|_| {
                let fd = rustix::fs::memfd_create("t", rustix::fs::MemfdFlags::CLOEXEC).unwrap();
                inheritable_at_the_top(fd).unwrap()
            })
            .collect();
        let nums: Vec<i32> = placed.iter().map(|f| f.as_raw_fd()).collect();
        for w in nums.windows(2) {
            assert!(w[1] < w[0], "{nums:?}");
        }
        assert!(nums.iter().all(|&n| n < 1024), "{nums:?}");
    }

    #[test]
    fn names_that_are_not_one_path_component_are_told_apart() {
        for bad in ["", ".", "..", "a/b", "/", "a\0b"] {
            assert!(!is_one_component(bad), "{bad:?}");
        }
        for good in ["...", ".x", "x..", "_..", "password", "shop-buyer"] {
            assert!(is_one_component(good), "{good:?}");
        }
    }
}
