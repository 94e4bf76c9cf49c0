//! Storage: the writer lock, atomic saves, and the record of the highest generation seen
//! (rollback detection).

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::format::MAX_FILE_LEN;
use super::VaultError;

fn io_err(path: &Path, what: &str) -> impl FnOnce(io::Error) -> VaultError {
    let (path, what) = (path.to_path_buf(), what.to_owned());
    move |error| VaultError::Io { path, what, error }
}

/// How long a writer waits for another writer before giving up.
const LOCK_WAIT: Duration = Duration::from_secs(30);

/// An exclusive lock on a vault, held by the one process allowed to write it. It lives in
/// `<vault>.lock` beside the vault; the OS releases it when the process dies, so a killed
/// writer never leaves the vault locked.
#[derive(Debug)]
pub struct WriteLock {
    _file: File,
}

impl WriteLock {
    /// Take the lock, waiting up to 30 s for another writer to finish.
    pub fn acquire(vault: &Path) -> Result<WriteLock, VaultError> {
        let path = lock_path(vault);
        if let Some(dir) = vault.parent().filter(|d| !d.as_os_str().is_empty()) {
            ensure_private_dir(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_err(&path, "cannot open the lock file"))?;
        let start = Instant::now();
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(WriteLock { _file: file }),
                Err(fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_WAIT => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(fs::TryLockError::WouldBlock) => return Err(VaultError::Busy(path)),
                Err(fs::TryLockError::Error(e)) => return Err(io_err(&path, "cannot lock")(e)),
            }
        }
    }
}

fn lock_path(vault: &Path) -> PathBuf {
    let mut p = vault.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Create `dir` (and parents) with mode 0700 if missing.
pub(crate) fn ensure_private_dir(dir: &Path) -> Result<(), VaultError> {
    if dir.exists() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io_err(dir, "cannot create the directory"))
}

/// Read a whole vault file, refusing anything larger than the format allows before reading.
pub(crate) fn read_file(path: &Path) -> Result<Vec<u8>, VaultError> {
    let f = File::open(path).map_err(|e| {
        if e.kind() == io::ErrorKind::NotFound {
            VaultError::NotFound(path.to_path_buf())
        } else {
            io_err(path, "cannot open the vault")(e)
        }
    })?;
    let len = f
        .metadata()
        .map_err(io_err(path, "cannot stat the vault"))?
        .len();
    if len > MAX_FILE_LEN {
        return Err(VaultError::Corrupt(format!(
            "the file is {len} bytes, above the format's limit"
        )));
    }
    let mut buf = Vec::with_capacity(len as usize);
    f.take(MAX_FILE_LEN + 1)
        .read_to_end(&mut buf)
        .map_err(io_err(path, "cannot read the vault"))?;
    Ok(buf)
}

/// Replace `path` with `bytes` atomically: write a temp file in the same directory, fsync it,
/// rename it over the old file, fsync the directory. A crash at any point leaves either the old
/// or the new file. The caller must hold the [`WriteLock`].
pub(crate) fn write_atomic(path: &Path, bytes: &[u8], _lock: &WriteLock) -> Result<(), VaultError> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    ensure_private_dir(&dir)?;
    remove_stale_temps(&dir, path);
    let tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(path))
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(&dir)
        .map_err(|e| {
            io_err(&dir, "cannot create a temporary file for the new vault in")(os_error(e))
        })?;
    // Through the `File`: `NamedTempFile`'s own `Write` adds the temp path to the error, which
    // is gone by the time the user reads it.
    tmp.as_file()
        .write_all(bytes)
        .map_err(io_err(path, "cannot save the new version of"))?;
    tmp.as_file()
        .sync_all()
        .map_err(io_err(path, "cannot fsync the new version of"))?;
    tmp.persist(path)
        .map_err(|e| io_err(path, "cannot rename the new vault into place")(e.error))?;
    File::open(&dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(&dir, "cannot fsync the directory"))?;
    Ok(())
}

/// The OS error inside one of `tempfile`'s errors, which add the random temp path (gone by
/// the time anyone reads the message) to it.
fn os_error(e: io::Error) -> io::Error {
    let code = e
        .get_ref()
        .and_then(|inner| std::error::Error::source(inner))
        .and_then(|s| s.downcast_ref::<io::Error>())
        .and_then(io::Error::raw_os_error);
    match code {
        Some(code) => io::Error::from_raw_os_error(code),
        None => e,
    }
}

fn temp_prefix(path: &Path) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.tmp-")
}

/// Remove temp files a killed writer left behind. Safe: we hold the writer lock, so no other
/// writer is mid-save.
fn remove_stale_temps(dir: &Path, path: &Path) {
    let prefix = temp_prefix(path);
    if let Ok(entries) = fs::read_dir(dir) {
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) {
                let _ = fs::remove_file(e.path());
            }
        }
    }
}

/// The directory that holds per-machine state (the generations seen).
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("SCOPEVAULT_STATE_DIR") {
        return PathBuf::from(d);
    }
    if rustix::process::geteuid().is_root() {
        return PathBuf::from("/var/lib/scopevault");
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(d).join("scopevault");
    }
    home().join(".local/state/scopevault")
}

pub(crate) fn home() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// The highest generation seen per vault id on this machine. Kept outside the vault's
/// directory, so an attacker who can replace the vault file with an older copy does not
/// also reset what we remember (unless they can write our state dir too).
pub(crate) struct Seen {
    path: PathBuf,
}

impl Seen {
    pub fn new() -> Seen {
        Seen {
            path: state_dir().join("generations.json"),
        }
    }

    fn load(&self) -> Result<BTreeMap<String, u64>, VaultError> {
        match fs::read(&self.path) {
            Ok(b) => serde_json::from_slice(&b).map_err(|e| {
                VaultError::Corrupt(format!(
                    "the rollback record {} is not valid ({e}); remove it to start over",
                    self.path.display()
                ))
            }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(io_err(&self.path, "cannot read the rollback record")(e)),
        }
    }

    /// The highest generation recorded for `vault_id`, if any.
    pub fn get(&self, vault_id: &str) -> Result<Option<u64>, VaultError> {
        Ok(self.load()?.get(vault_id).copied())
    }

    /// Record `generation` if it is higher than what is recorded.
    pub fn record(&self, vault_id: &str, generation: u64) -> Result<(), VaultError> {
        let dir = self
            .path
            .parent()
            .expect("state file has a parent")
            .to_path_buf();
        ensure_private_dir(&dir)?;
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(dir.join("generations.lock"))
            .map_err(io_err(&dir, "cannot open the rollback record's lock"))?;
        lock_file
            .lock()
            .map_err(io_err(&dir, "cannot lock the rollback record"))?;
        let mut map = self.load()?;
        let entry = map.entry(vault_id.to_owned()).or_insert(0);
        if *entry >= generation {
            return Ok(());
        }
        *entry = generation;
        let bytes = serde_json::to_vec_pretty(&map).expect("a map of ints serialises");
        let mut tmp = tempfile::Builder::new()
            .prefix(".generations.tmp-")
            .tempfile_in(&dir)
            .map_err(io_err(&dir, "cannot write the rollback record"))?;
        tmp.write_all(&bytes)
            .map_err(io_err(&self.path, "cannot write the rollback record"))?;
        tmp.as_file()
            .sync_all()
            .map_err(io_err(&self.path, "cannot fsync the rollback record"))?;
        tmp.persist(&self.path)
            .map_err(|e| io_err(&self.path, "cannot save the rollback record")(e.error))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only a missing rollback record means "nothing seen yet". Any other failure to read it
    /// (here: a directory in its place) must not silently turn the rollback check off.
    /// (A mutation-testing survivor.)
    #[test]
    fn an_unreadable_rollback_record_is_an_error_not_an_empty_one() {
        let dir = tempfile::tempdir().unwrap();
        let seen = Seen {
            path: dir.path().join("generations.json"),
        };
        assert_eq!(seen.get("v").unwrap(), None, "missing: nothing seen");
        seen.record("v", 7).unwrap();
        assert_eq!(seen.get("v").unwrap(), Some(7));
        fs::remove_file(&seen.path).unwrap();
        fs::create_dir(&seen.path).unwrap();
        assert!(matches!(seen.get("v"), Err(VaultError::Io { .. })));
    }
}
