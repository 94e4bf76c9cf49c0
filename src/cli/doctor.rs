//! `scopevault doctor`: check the set-up one item at a time. Each line is `ok`, `warn` or
//! `fail`, and every `warn`/`fail` says what to do. Exit 1 when any line fails.
//!
//! Nothing here unlocks the vault or prompts: a keyring slot is tried (it needs no input),
//! passphrase slots are only counted.

use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::ExitCode;

use super::args::{AuditPathArgs, GlobalArgs};
use crate::vault::{self, OpenOptions, Unlock, Vault};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Level {
    Ok,
    Warn,
    Fail,
}

struct Report {
    lines: Vec<(Level, String, String)>,
}

impl Report {
    fn ok(&mut self, what: &str, detail: impl Into<String>) {
        self.lines.push((Level::Ok, what.to_owned(), detail.into()));
    }
    fn warn(&mut self, what: &str, detail: impl Into<String>) {
        self.lines
            .push((Level::Warn, what.to_owned(), detail.into()));
    }
    fn fail(&mut self, what: &str, detail: impl Into<String>) {
        self.lines
            .push((Level::Fail, what.to_owned(), detail.into()));
    }
}

pub(crate) fn run(g: &GlobalArgs, a: &AuditPathArgs) -> anyhow::Result<ExitCode> {
    let mut r = Report { lines: Vec::new() };
    let vault_path = super::unlock::vault_path(g);
    let file_generation = check_vault(&mut r, &vault_path);
    if file_generation.is_some() {
        check_unlock(&mut r, g, &vault_path);
    }
    check_daemon(&mut r, g, file_generation);
    let audit_path = a
        .audit
        .clone()
        .unwrap_or_else(crate::audit::default_audit_path);
    check_audit(&mut r, &audit_path);
    check_clock(&mut r);
    check_mlock(&mut r);

    let mut out = String::new();
    for (level, what, detail) in &r.lines {
        let tag = match level {
            Level::Ok => "ok  ",
            Level::Warn => "warn",
            Level::Fail => "fail",
        };
        out.push_str(&format!("{tag}  {what:<10} {detail}\n"));
    }
    let worst = r.lines.iter().map(|l| l.0).max().unwrap_or(Level::Ok);
    let fails = r.lines.iter().filter(|l| l.0 == Level::Fail).count();
    let warns = r.lines.iter().filter(|l| l.0 == Level::Warn).count();
    out.push_str(&format!(
        "{} check(s): {fails} failed, {warns} warning(s)\n",
        r.lines.len()
    ));
    super::write_stdout(out.as_bytes())?;
    Ok(if worst == Level::Fail {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// The vault file: present, readable, private; returns its generation from the header
/// (vault-format.md: magic, version, header length, JSON header).
fn check_vault(r: &mut Report, path: &Path) -> Option<u64> {
    let shown = path.display();
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            r.fail(
                "vault",
                format!("{shown} does not exist: create it with `scopevault init` (or give --vault / SCOPEVAULT_VAULT)"),
            );
            return None;
        }
        Err(e) => {
            r.fail("vault", format!("cannot inspect {shown}: {e}"));
            return None;
        }
    };
    let mut head = Vec::new();
    if let Err(e) = std::fs::File::open(path).and_then(|f| f.take(1 << 20).read_to_end(&mut head)) {
        r.fail(
            "vault",
            format!(
                "cannot read {shown}: {e}: run as the vault's owner (uid {})",
                meta.uid()
            ),
        );
        return None;
    }
    let generation = header_generation(&head);
    let Some(generation) = generation else {
        r.fail(
            "vault",
            format!("{shown} is not a scopevault vault (bad header): restore it from a backup"),
        );
        return None;
    };
    let mode = meta.mode() & 0o7777;
    if mode & 0o077 != 0 {
        r.warn(
            "vault",
            format!("{shown} has mode {mode:04o}: others can read the encrypted file; run `chmod 0600 {shown}`"),
        );
    } else {
        r.ok(
            "vault",
            format!(
                "{shown} (mode {mode:04o}, uid {}, generation {generation})",
                meta.uid()
            ),
        );
    }
    Some(generation)
}

fn header_generation(bytes: &[u8]) -> Option<u64> {
    if bytes.get(..8)? != b"SCOPEVLT" {
        return None;
    }
    let len = u32::from_be_bytes(bytes.get(10..14)?.try_into().ok()?) as usize;
    let header: serde_json::Value = serde_json::from_slice(bytes.get(14..14 + len)?).ok()?;
    header["generation"].as_u64()
}

/// Which unlock sources exist, and whether the keyring slot answers.
fn check_unlock(r: &mut Report, g: &GlobalArgs, path: &Path) {
    let slots = match vault::read_slots(path) {
        Ok(s) => s,
        Err(e) => {
            r.fail("unlock", format!("cannot read the key slots: {e}"));
            return;
        }
    };
    let kinds: Vec<&str> = slots.iter().map(|s| s.kind()).collect();
    r.ok("unlock", format!("key slots: {}", kinds.join(", ")));
    if let Some(id) = &g.unlock.identity_file {
        match Vault::open(
            path,
            &Unlock::IdentityFile(id.clone()),
            &OpenOptions::default(),
        ) {
            Ok(_) => r.ok("identity", format!("{} opens the vault", id.display())),
            Err(e) => r.fail("identity", format!("{}: {e}", id.display())),
        }
        // It is the vault's key: as private as an SSH key (ssh refuses a 0644 one).
        use std::os::unix::fs::MetadataExt;
        if let Ok(m) = std::fs::metadata(id) {
            let me = crate::sys::current_uid();
            if m.mode() & 0o077 != 0 {
                r.warn(
                    "identity",
                    format!(
                        "{} has mode {:04o}: other users can read the vault's key; run `chmod 600 {}`",
                        id.display(),
                        m.mode() & 0o7777,
                        id.display()
                    ),
                );
            } else if m.uid() != me && m.uid() != 0 {
                r.warn(
                    "identity",
                    format!(
                        "{} belongs to uid {}, another user: whoever owns it holds the vault's key",
                        id.display(),
                        m.uid()
                    ),
                );
            }
        }
    }
    if kinds.contains(&"keyring") {
        match Vault::open(path, &Unlock::Keyring, &OpenOptions::default()) {
            Ok(_) => r.ok("keyring", "the keyring slot opens the vault"),
            Err(e) => r.fail(
                "keyring",
                format!("the keyring slot does not open the vault: {e}; start the Secret Service (gnome-keyring, KeePassXC) in this session, or use a passphrase or identity file"),
            ),
        }
    } else {
        r.ok(
            "keyring",
            "no keyring slot enrolled (optional: `scopevault key add --keyring`)",
        );
    }
    if kinds.iter().all(|k| *k == "passphrase") && !super::unlock::have_tty() {
        r.warn(
            "unlock",
            "only passphrase slots and no terminal: unattended commands need --passphrase-file/--passphrase-fd; a daemon needs `scopevault unlock` after each start, or an identity file (`scopevault key add --identity-out FILE`)",
        );
    }
}

/// The socket's directory, the daemon, and its generation against the file's.
fn check_daemon(r: &mut Report, g: &GlobalArgs, file_generation: Option<u64>) {
    let socket = g
        .socket
        .clone()
        .unwrap_or_else(crate::agent::server::default_socket_path);
    let dir = socket.parent().unwrap_or(Path::new("."));
    match std::fs::metadata(dir) {
        Err(_) => r.warn(
            "socket",
            format!(
                "{} does not exist yet: `scopevault serve` creates it",
                dir.display()
            ),
        ),
        Ok(m) => {
            let mode = m.mode() & 0o7777;
            let me = crate::sys::current_uid();
            if m.uid() != me && m.uid() != 0 {
                r.fail(
                    "socket",
                    format!(
                        "{} is owned by uid {}: the daemon refuses it; `chown root {}`",
                        dir.display(),
                        m.uid(),
                        dir.display()
                    ),
                );
            } else if mode & 0o022 != 0 {
                r.fail(
                    "socket",
                    format!("{} has mode {mode:04o} (writable by others): the daemon refuses it; `chmod 0750 {}`", dir.display(), dir.display()),
                );
            } else {
                r.ok(
                    "socket",
                    format!(
                        "{} (mode {mode:04o}, uid {}, gid {})",
                        dir.display(),
                        m.uid(),
                        m.gid()
                    ),
                );
            }
        }
    }
    // A vault file saved since the daemon loaded it is loaded now, and `health` says so
    // meanwhile: the generation is compared once that load is done.
    match super::client_cmds::health_after_load(&socket) {
        Err(e) => r.warn("daemon", format!("not reachable ({e})")),
        Ok(h) if h.loading => r.warn(
            "daemon",
            format!(
                "still loading the saved vault file after {} s; it serves generation {} until then",
                super::client_cmds::PICKUP_WAIT.as_secs(),
                h.generation.unwrap_or(0)
            ),
        ),
        Ok(h) if h.locked => r.warn(
            "daemon",
            format!(
                "scopevault {} is running but locked: run `scopevault unlock`",
                h.version
            ),
        ),
        Ok(h) => match (h.generation, file_generation) {
            (Some(d), Some(f)) if d < f => r.warn(
                "daemon",
                format!("serves generation {d}, the file is at {f}: run `scopevault reload`"),
            ),
            (d, _) => r.ok(
                "daemon",
                format!(
                    "scopevault {} unlocked, generation {}",
                    h.version,
                    d.unwrap_or(0)
                ),
            ),
        },
    }
}

/// The audit log: writable where it exists, and its hash chain verifies.
fn check_audit(r: &mut Report, path: &Path) {
    let shown = path.display();
    if !path.exists() {
        let dir = path.parent().unwrap_or(Path::new("."));
        let writable = rustix::fs::access(
            if dir.exists() { dir } else { Path::new("/") },
            rustix::fs::Access::WRITE_OK,
        )
        .is_ok();
        if writable {
            r.ok(
                "audit",
                format!("{shown} does not exist yet: the daemon creates it"),
            );
        } else {
            r.warn(
                "audit",
                format!("{shown} does not exist and {} is not writable by this user: run the daemon as its owner, or give --audit PATH", dir.display()),
            );
        }
        return;
    }
    if rustix::fs::access(path, rustix::fs::Access::WRITE_OK).is_err() {
        r.warn(
            "audit",
            format!(
                "{shown} is not writable by this user (fine if the daemon runs as another user)"
            ),
        );
    }
    match crate::audit::verify(path) {
        Err(e) => r.fail("audit", format!("{e}")),
        Ok(v) => match v.first_bad {
            Some(bad) => r.fail(
                "audit",
                format!("{shown}: chain broken at line {}: {}; keep the file as evidence, see docs/audit.md", bad.line, bad.why),
            ),
            None => r.ok(
                "audit",
                format!("{shown}: {} record(s) verify; head {} (compare with the head you recorded elsewhere)", v.lines, v.head),
            ),
        },
    }
}

/// TOTP codes are only right with the right time: a clock before this build or far in the
/// future is wrong.
fn check_clock(r: &mut Report) {
    let now = time::OffsetDateTime::now_utc();
    // 2025-01-01: no correct clock is earlier than code written after it.
    if now.unix_timestamp() < 1_735_689_600 || now.year() > 2100 {
        r.fail(
            "clock",
            format!("the system time is {now}: TOTP codes will be wrong; set the time (timedatectl set-ntp true)"),
        );
    } else {
        r.ok(
            "clock",
            format!(
                "{} UTC (TOTP needs it within 30 s of the server's: keep NTP on)",
                now.date()
            ),
        );
    }
}

/// `mlockall` needs RLIMIT_MEMLOCK room (or CAP_IPC_LOCK, which root has).
fn check_mlock(r: &mut Report) {
    let lim = rustix::process::getrlimit(rustix::process::Resource::Memlock);
    let need = 64 * 1024 * 1024;
    let cur = lim.current;
    if crate::sys::current_uid() == 0 || cur.is_none_or(|c| c >= need) {
        r.ok(
            "mlock",
            match cur {
                None => "RLIMIT_MEMLOCK unlimited".to_owned(),
                Some(c) if crate::sys::current_uid() != 0 => {
                    format!("RLIMIT_MEMLOCK {} MiB", c >> 20)
                }
                Some(_) => "root (CAP_IPC_LOCK): the daemon can lock its memory".to_owned(),
            },
        );
    } else {
        r.warn(
            "mlock",
            format!(
                "RLIMIT_MEMLOCK is {} KiB: the daemon cannot lock its memory and secrets may reach swap; raise it (LimitMEMLOCK=64M in the systemd unit, `ulimit -l 65536`)",
                cur.unwrap_or(0) >> 10
            ),
        );
    }
}
