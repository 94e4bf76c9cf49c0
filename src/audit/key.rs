//! The audit log's HMAC key file (`<audit path>.key`) and the no-follow opening of the log's
//! directory.

use super::*;

/// The HMAC key of an audit log (`<audit path>.key`): 32 random bytes, zeroed on drop.
pub struct AuditKey(pub(super) Zeroizing<[u8; KEY_LEN]>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey([REDACTED])")
    }
}

impl AuditKey {
    /// Read the key of the log at `audit_path` (the file `<audit_path>.key`). This needs read
    /// access to the key file, which is the daemon's own (mode 0600).
    pub fn load(audit_path: &Path) -> Result<AuditKey, AuditError> {
        let path = key_path(audit_path);
        // Non-blocking, a regular file only: a FIFO in its place must not hang `doctor` or
        // `audit verify` (seventeenth pass).
        let f = crate::sys::open_regular(&path, true).map_err(|e| AuditError::KeyOpen {
            path: path.clone(),
            message: e.to_string(),
        })?;
        Self::read_from(f, path)
    }

    fn read_from(mut f: File, path: PathBuf) -> Result<AuditKey, AuditError> {
        let mut buf = Zeroizing::new(Vec::with_capacity(KEY_LEN + 1));
        Read::by_ref(&mut f)
            .take(KEY_LEN as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| AuditError::KeyOpen {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let key: [u8; KEY_LEN] = buf
            .as_slice()
            .try_into()
            .map_err(|_| AuditError::BadKey { path })?;
        Ok(AuditKey(Zeroizing::new(key)))
    }

    /// A new key, 32 random bytes: in memory only until [`AuditKey::create_at`] writes it, so
    /// that a start refused after making it leaves no key file behind.
    pub(super) fn generate() -> AuditKey {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, key.as_mut());
        AuditKey(key)
    }

    /// Read the key of the log at `audit_path` through the log's directory `dirfd` (never
    /// through a symbolic link); `Ok(None)` when there is no key file. Nothing is made.
    pub(super) fn load_at(
        dirfd: &rustix::fd::OwnedFd,
        audit_path: &Path,
    ) -> Result<Option<AuditKey>, AuditError> {
        let path = key_path(audit_path);
        let name = path.file_name().unwrap_or_default().to_owned();
        // A regular file only, judged before it is opened: a FIFO in the key's place made
        // `serve` wait for ever for a writer before it listened (seventeenth pass), and was
        // opened, non-blocking, before it was refused (twentieth).
        let file = match crate::sys::open_regular_at(
            dirfd,
            std::path::Path::new(&name),
            true,
            OFlags::RDONLY,
        ) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(match rustix::io::Errno::from_io_error(&e) {
                    Some(errno) => key_nofollow_err(&path, errno),
                    None => AuditError::KeyOpen {
                        path: path.clone(),
                        message: e.to_string(),
                    },
                })
            }
        };
        Self::read_from(file, path).map(Some)
    }

    /// Write this key as the key file of the log at `audit_path`, through the log's directory
    /// `dirfd`: made new (mode 0600, never through a symbolic link, never over a file there)
    /// and synced. For the start that goes on, once nothing can refuse it.
    pub(super) fn create_at(
        &self,
        dirfd: &rustix::fd::OwnedFd,
        audit_path: &Path,
    ) -> Result<(), AuditError> {
        let path = key_path(audit_path);
        let name = path.file_name().unwrap_or_default().to_owned();
        let fd = rustix::fs::openat(
            dirfd,
            name.as_os_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            rustix::fs::Mode::from_raw_mode(0o600),
        )
        .map_err(|e| key_nofollow_err(&path, e))?;
        let mut f = File::from(fd);
        f.write_all(self.0.as_ref())
            .and_then(|()| f.sync_all())
            .map_err(|e| AuditError::KeyOpen {
                path: path.clone(),
                message: e.to_string(),
            })
    }

    /// Which key this is, without giving it away: the first 16 hex digits of the HMAC-SHA256
    /// of a fixed label under it. Kept in the anchor (`key`) and in the records that begin a
    /// run or a file (`key_id`), so that a start given another key than the chain's is
    /// refused (docs/audit.md, "The HMAC key").
    pub fn fingerprint(&self) -> String {
        let mac = self.hmac_value("scopevault audit key fingerprint");
        let hex = mac.strip_prefix(HMAC_PREFIX).unwrap_or(&mac);
        hex[..16].to_owned()
    }

    /// The key the chain of the log at `path` is written with, when it is another than this
    /// one: as the log's anchor records it (its `key`; an anchor without one judges no key),
    /// or, with no anchor, as the newest of the first `len` bytes of the log's records that
    /// names its key (`key_id`, [`newest_key_id`]); `None` when they agree or nothing names a
    /// key. The one judgement `serve` refuses a start by and `doctor` reports
    /// ([`AuditError::KeyMismatch`]): `doctor` compared with the anchor only, and said
    /// nothing of a log without its anchor whose records name another key, which `serve`
    /// refuses (twenty-ninth pass).
    pub fn other_chain_key(
        &self,
        path: &Path,
        anchor: Option<&Anchor>,
        log: Option<&File>,
        len: u64,
    ) -> std::io::Result<Option<(String, KeyOrigin)>> {
        let mine = self.fingerprint();
        Ok(match (anchor, log) {
            (Some(a), _) => a
                .key
                .as_ref()
                .filter(|f| **f != mine)
                .map(|f| (f.clone(), KeyOrigin::Anchor(anchor_path(path)))),
            (None, Some(f)) if len > 0 => newest_key_id(f, len)?
                .filter(|r| r.key_id != mine)
                .map(|r| (r.key_id.clone(), KeyOrigin::Record(Box::new(r)))),
            _ => None,
        })
    }

    /// The HMAC of a value exactly as it appears in the log: `hmac-sha256:<64 hex digits>`.
    pub fn hmac_value(&self, value: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(self.0.as_ref()).expect("HMAC takes any key");
        mac.update(value.as_bytes());
        format!(
            "{HMAC_PREFIX}{}",
            HEXLOWER.encode(&mac.finalize().into_bytes())
        )
    }
}

/// Open the log's directory `dir` for `openat`: reached without a symbolic link (every
/// component `lstat`ed) and not writable by group or others, since whoever may write there may
/// plant a link or swap the log. Returns the directory and the log's file name.
pub(super) fn open_dir_of(
    path: &Path,
    dir: &Path,
) -> Result<(rustix::fd::OwnedFd, std::ffi::OsString), AuditError> {
    let refuse = |message: String| AuditError::Open {
        path: path.to_owned(),
        message,
    };
    let name = path
        .file_name()
        .ok_or_else(|| refuse("the path names no file".into()))?
        .to_owned();
    let chain = crate::paths::lstat_components(dir).map_err(refuse)?;
    others_dir(&chain).map_err(refuse)?;
    let fd = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| refuse(format!("cannot open its directory ({e})")))?;
    let st = rustix::fs::fstat(&fd)
        .map_err(|e| refuse(format!("cannot inspect its directory ({e})")))?;
    private_dir(dir, st.st_mode).map_err(refuse)?;
    Ok((fd, name))
}

/// For a daemon other than root: no directory on the log's path is owned by another user than
/// root and the daemon's, who could rename the log and its key away and put their own there.
pub(super) fn others_dir(chain: &[(PathBuf, std::fs::Metadata)]) -> Result<(), String> {
    others_dir_for(chain, rustix::process::geteuid().as_raw())
}

/// [`others_dir`] for a daemon running as `uid`.
fn others_dir_for(chain: &[(PathBuf, std::fs::Metadata)], uid: u32) -> Result<(), String> {
    match crate::paths::owned_by_another(chain, uid) {
        Some((dir, uid)) => Err(format!(
            "{} is owned by uid {uid}, another user: they could replace the log and its key. Use a directory of the daemon's user or root",
            dir.display()
        )),
        None => Ok(()),
    }
}

/// The log's directory `dir`, of mode `mode`, is not writable by group or others.
fn private_dir(dir: &Path, mode: u32) -> Result<(), String> {
    if mode & 0o022 != 0 {
        return Err(format!(
            "its directory {} is writable by group or others (mode {:o}); make it 0700 or 0750",
            dir.display(),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Whether [`AuditLog::open_with`] accepts the place of the log at `path`, by the rules
/// [`open_dir_of`] and its `O_NOFOLLOW` open apply: no symbolic link on the directory's path,
/// the directory not writable by group or others, no symbolic link at the log's own name. A
/// directory that does not exist yet (the daemon creates it, 0700) is judged by the components
/// that exist. For `doctor`, which may run as a user who cannot open the daemon's directory:
/// the directory is `stat`ed by path rather than opened.
pub(crate) fn check_location(path: &Path) -> Result<(), AuditError> {
    check_location_for(path, rustix::process::geteuid().as_raw())
}

/// [`check_location`] for a daemon running as `uid` (doctor's judgement of the daemon's log
/// when it runs as another user: a directory of the daemon's own is not "another user's").
pub(crate) fn check_location_for(path: &Path, uid: u32) -> Result<(), AuditError> {
    let refuse = |message: String| AuditError::Open {
        path: path.to_owned(),
        message,
    };
    let dir = crate::paths::dir_of(path);
    if std::fs::symlink_metadata(&dir).is_err() {
        return crate::paths::lstat_components(&crate::paths::nearest_existing(&dir))
            .map(|_| ())
            .map_err(refuse);
    }
    let chain = crate::paths::lstat_components(&dir).map_err(refuse)?;
    others_dir_for(&chain, uid).map_err(refuse)?;
    if let Some((_, meta)) = chain.last() {
        private_dir(&dir, meta.mode()).map_err(refuse)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => Err(nofollow_err(path, rustix::io::Errno::LOOP)),
        _ => Ok(()),
    }
}

/// The error for an `openat(O_NOFOLLOW)` that failed; `ELOOP` means a symbolic link is there.
pub(super) fn nofollow_err(path: &Path, e: rustix::io::Errno) -> AuditError {
    let message = if e == rustix::io::Errno::LOOP {
        "it is a symbolic link; refusing to follow it (remove the link: the daemon writes only files it opened itself)".to_owned()
    } else {
        std::io::Error::from(e).to_string()
    };
    AuditError::Open {
        path: path.to_owned(),
        message,
    }
}

/// [`nofollow_err`] for the key file: a refused `openat` names the key file, not the log.
fn key_nofollow_err(path: &Path, e: rustix::io::Errno) -> AuditError {
    match nofollow_err(path, e) {
        AuditError::Open { path, message } => AuditError::KeyOpen { path, message },
        other => other,
    }
}

/// The key file of an audit log: `<audit path>.key`.
pub fn key_path(audit_path: &Path) -> PathBuf {
    let mut s = audit_path.as_os_str().to_owned();
    s.push(".key");
    PathBuf::from(s)
}

/// The default audit log ([`crate::paths::audit_log`]).
pub fn default_audit_path() -> PathBuf {
    crate::paths::audit_log()
}
