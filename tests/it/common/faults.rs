//! Helpers for the storage fault-injection tests (tests/it/storage_faults.rs, and the kill loop of
//! tests/it/vault/crash.rs): a seeded xorshift for kill points, the iteration count, a writer
//! killed after a delay, a small tmpfs the test mounts (and fills, and remounts read-only), and
//! the `faults:` summary lines. Tmpfs snapshots use `common_vault::entries_under`: a test that
//! includes this file includes tests/it/common/vault.rs as `common_vault` too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Duration;

/// Kills per writing command: `SCOPEVAULT_FAULT_ITERATIONS` (scripts/test sets the CI value);
/// the default keeps a developer's `cargo test` of this file well under a minute.
pub fn iterations() -> usize {
    count_from("SCOPEVAULT_FAULT_ITERATIONS", 20)
}

/// A positive count from the environment variable `var`, else `default`.
pub fn count_from(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(default)
}

/// The run's seed: `SCOPEVAULT_FAULT_SEED` to replay a failure, else the clock.
pub fn seed() -> u64 {
    seed_from("SCOPEVAULT_FAULT_SEED")
}

/// A seed from the environment variable `var` (to replay a failure), else the clock.
pub fn seed_from(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
}

/// A tiny xorshift so the kill points vary without a dependency; every test prints its seed
/// so that a failure can be replayed with `SCOPEVAULT_FAULT_SEED`.
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (xorshift never leaves 0, so the low bit is set).
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    /// A generator for one test: the run's seed mixed with the test's label, so that the
    /// tests of one run do not all kill at the same points.
    pub fn for_test(seed: u64, label: &str) -> Rng {
        let mut s = seed ^ 0x9e37_79b9_7f4a_7c15;
        for b in label.bytes() {
            s = (s ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
        }
        Rng::new(s)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// When to kill a writer. A uniform delay over the writer's life rarely lands in the short
/// stretch that matters (writing and renaming the new file is ~1% of a debug-build command's
/// life; the rest is exec, decryption, encryption), so every other kill aims at the estimated
/// rename point: the estimate moves later after a kill that left the old state and earlier
/// after one that left the new state (a stochastic search for the 50% point), and kills land
/// within ±10% of it. The others spread over [0, 2 × estimate] to cover the rest (opening,
/// locking, a crash before any write).
pub struct KillClock {
    rename_us: f64,
    rng: Rng,
    n: u64,
}

impl KillClock {
    /// Start from the duration of one uninterrupted run.
    pub fn new(span: std::time::Duration, rng: Rng) -> KillClock {
        KillClock {
            rename_us: (span.as_micros() as f64).max(500.0),
            rng,
            n: 0,
        }
    }

    /// How long to let the next writer run before SIGKILL.
    pub fn next(&mut self) -> std::time::Duration {
        self.n += 1;
        let r = (self.rng.next() % 10_000) as f64 / 10_000.0;
        let us = if self.n.is_multiple_of(2) {
            self.rename_us * (0.9 + 0.2 * r)
        } else {
            self.rename_us * 2.0 * r
        };
        std::time::Duration::from_micros(us as u64)
    }

    /// Report whether that kill left the new state.
    pub fn landed(&mut self, new_state: bool) {
        self.rename_us *= if new_state { 0.97 } else { 1.03 };
        self.rename_us = self.rename_us.max(200.0);
    }

    /// The current estimate of the rename point.
    pub fn estimate_us(&self) -> u64 {
        self.rename_us as u64
    }
}

/// Spawn `writer` (stdio closed), let it run for `after`, SIGKILL it, and reap it: its exit
/// status (success when it finished before the kill).
pub fn kill_after(writer: &mut Command, after: Duration) -> ExitStatus {
    let mut child = writer
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(after);
    let _ = child.kill(); // SIGKILL
    child.wait().unwrap()
}

/// The names of the writers' temp files (`.tmp-` in the name) in `dir`: a killed writer's
/// leftovers, which the next save removes.
pub fn temp_files(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp-"))
        .collect()
}

/// One line per fault kind and command, in a fixed format the lead greps for
/// (`faults: sigkill cred-set 20/20 survived`).
pub fn summary(kind: &str, command: &str, survived: usize, injected: usize) {
    println!("faults: {kind} {command} {survived}/{injected} survived");
}

/// True when the tests run as root (mounting needs it).
pub use super::users::is_root;

/// A tmpfs mounted by the test at a directory of its temp dir; unmounted on drop (declare it
/// after the temp dir, so that it is dropped first).
pub struct Tmpfs {
    pub path: PathBuf,
    filler: PathBuf,
}

impl Tmpfs {
    /// Mount a tmpfs of `size` (as `mount -o size=` takes it) at `at` (created 0700).
    /// `Err` says why it cannot be done here (not root, mount refused): the caller reports
    /// a skip (tests/it/common/skip.rs) and returns.
    pub fn mount(at: &Path, size: &str) -> Result<Tmpfs, String> {
        Tmpfs::mount_with(at, &format!("size={size}"))
    }

    /// [`Tmpfs::mount`] with the mount `options` given (`size=1m,nr_inodes=4`).
    pub fn mount_with(at: &Path, options: &str) -> Result<Tmpfs, String> {
        if !is_root() {
            return Err("mounting a tmpfs needs root (CI runs as root)".into());
        }
        std::fs::create_dir_all(at).map_err(|e| format!("mkdir {}: {e}", at.display()))?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o"])
            .arg(format!("{options},mode=0700"))
            .arg("tmpfs")
            .arg(at)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs refused here: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs {
            path: at.to_owned(),
            filler: at.join("filler"),
        })
    }

    /// Remount with `opts` (`ro` or `rw`).
    pub fn remount(&self, opts: &str) {
        let st = Command::new("mount")
            .args(["-o", &format!("remount,{opts}")])
            .arg(&self.path)
            .status()
            .unwrap();
        assert!(st.success(), "mount -o remount,{opts} failed");
    }

    /// Fill the file system until a write fails with ENOSPC: afterwards not one more page can
    /// be allocated on it (a file's last, partly used page may still take a few bytes).
    pub fn fill(&self) {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.filler)
            .unwrap();
        let chunk = vec![0xa5u8; 64 * 1024];
        let mut size = chunk.len();
        loop {
            match f.write(&chunk[..size]) {
                Ok(0) => break,
                Ok(_) => {}
                // Down to one byte at a time at the end, so that no page is left free.
                Err(e) if e.raw_os_error() == Some(28) && size > 1 => size /= 2,
                Err(e) if e.raw_os_error() == Some(28) => break,
                Err(e) => panic!("filling {}: {e}", self.filler.display()),
            }
        }
        // The proof that it is full: a new one-byte file cannot be written.
        let probe = self.path.join("probe");
        let r = std::fs::write(&probe, b"x");
        let _ = std::fs::remove_file(&probe);
        assert!(
            r.as_ref().is_err_and(|e| e.raw_os_error() == Some(28)),
            "{} is not full after filling: {r:?}",
            self.path.display()
        );
    }

    /// Give the space back.
    pub fn free(&self) {
        std::fs::remove_file(&self.filler).unwrap();
    }

    /// Every file (not directory) under the mount except the filler, with its contents, for
    /// "nothing changed and nothing was left behind" checks.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        super::vault::entries_under(&self.path)
            .into_iter()
            .filter(|(p, _)| *p != self.filler)
            .map(|(p, _)| {
                let bytes = std::fs::read(&p).unwrap_or_default();
                (p, bytes)
            })
            .collect()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.path)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Still busy (a daemon being killed): detach it so the temp dir can go.
            let _ = Command::new("umount").arg("-l").arg(&self.path).status();
        }
    }
}
