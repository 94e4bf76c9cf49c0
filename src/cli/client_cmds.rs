//! Commands that talk to the running daemon: status, lock, unlock, reload, get, totp, exec.
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use zeroize::Zeroizing;

use super::args::{ExecArgs, GetArgs, GlobalArgs, StatusArgs, TotpArgs};
use super::{Exit, EXIT_DAEMON};
use crate::agent::protocol::AdminStatus;
use crate::agent::server::default_socket_path;
use crate::client::{Client, ClientError};
use crate::secret::SecretString;

fn socket_path(g: &GlobalArgs) -> PathBuf {
    g.socket.clone().unwrap_or_else(default_socket_path)
}

/// Any daemon failure exits 5 (documented in the exit-code table).
fn daemon_err(e: ClientError) -> anyhow::Error {
    anyhow::Error::new(Exit {
        code: EXIT_DAEMON,
        message: e.to_string(),
    })
}

fn connect(g: &GlobalArgs) -> anyhow::Result<Client> {
    Client::connect(&socket_path(g)).map_err(daemon_err)
}

pub(crate) fn status(g: &GlobalArgs, a: &StatusArgs) -> anyhow::Result<ExitCode> {
    let h = connect(g)?.health().map_err(daemon_err)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&h)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "daemon:      scopevault {} on {}",
        h.version,
        socket_path(g).display()
    );
    if h.locked {
        println!("vault:       locked (an admin runs `scopevault unlock`)");
    } else {
        println!(
            "vault:       unlocked, id {}, generation {}",
            h.vault_id.as_deref().unwrap_or("?"),
            h.generation.unwrap_or(0)
        );
        println!(
            "contents:    {} credentials, {} tasks, enforce = {}",
            h.credentials,
            h.tasks,
            h.enforce.as_deref().unwrap_or("(no policy applied)")
        );
    }
    println!(
        "audit log:   {}",
        if h.audit_ok {
            "ok"
        } else {
            "FAILING: hand-outs are refused"
        }
    );
    println!("connections: {}", h.connections);
    println!(
        "you:         uid {} gid {} pid {}{}",
        h.peer.uid,
        h.peer.gid,
        h.peer.pid,
        if h.peer.admin { " (admin)" } else { "" }
    );
    Ok(ExitCode::SUCCESS)
}

fn print_admin(what: &str, s: &AdminStatus) {
    if s.locked {
        println!("{what}: the daemon is locked");
    } else {
        println!(
            "{what}: the daemon is unlocked (vault {}, generation {})",
            s.vault_id.as_deref().unwrap_or("?"),
            s.generation.unwrap_or(0)
        );
    }
}

pub(crate) fn lock(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let s = connect(g)?.lock().map_err(daemon_err)?;
    print_admin("lock", &s);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn unlock(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let passphrase = read_passphrase(g)?;
    let s = connect(g)?.unlock(passphrase).map_err(daemon_err)?;
    print_admin("unlock", &s);
    Ok(ExitCode::SUCCESS)
}

/// The passphrase for `unlock`: --passphrase-file, --passphrase-fd, or a no-echo prompt.
fn read_passphrase(g: &GlobalArgs) -> anyhow::Result<SecretString> {
    use std::io::Read;
    let mut bytes = Zeroizing::new(Vec::new());
    if let Some(path) = &g.unlock.passphrase_file {
        let mut f = std::fs::File::open(path)
            .with_context(|| format!("cannot open passphrase file {}", path.display()))?;
        f.read_to_end(&mut bytes)
            .with_context(|| format!("cannot read passphrase file {}", path.display()))?;
    } else if let Some(fd) = g.unlock.passphrase_fd {
        let path = format!("/proc/self/fd/{fd}");
        let mut f = std::fs::File::open(&path)
            .with_context(|| format!("cannot read passphrase fd {fd}"))?;
        f.read_to_end(&mut bytes)?;
    } else {
        anyhow::bail!("give the passphrase with --passphrase-file FILE or --passphrase-fd N");
    }
    Ok(SecretString::from_input_bytes(bytes)?)
}

pub(crate) fn reload(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let s = connect(g)?.reload().map_err(daemon_err)?;
    print_admin("reload", &s);
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn get(_g: &GlobalArgs, _a: &GetArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("get: not yet available")
}
pub(crate) fn totp(_g: &GlobalArgs, _a: &TotpArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("totp: not yet available")
}
pub(crate) fn exec(_g: &GlobalArgs, _a: &ExecArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("exec: not yet available")
}
