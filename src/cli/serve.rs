//! `scopevault serve`: validate the options, harden the process, take the socket (bound here or
//! handed over by systemd), unlock if an unlock source is given, then run the accept loop until
//! SIGTERM/SIGINT; SIGHUP reloads the vault; SIGUSR1 reopens a rotated audit log.
use std::os::unix::net::{UnixDatagram, UnixListener};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

use super::args::{GlobalArgs, ServeArgs};
use crate::agent::authz::AccessConfig;
use crate::agent::handler::Handler;
use crate::agent::server::{default_socket_path, Limits, Listener, Server};
use crate::agent::state::{vault_error, LoadedVault, VaultView};
use crate::audit::{default_audit_path, AuditLog};
use crate::secret::SecretString;
use crate::vault::{OpenOptions, Unlock, Vault};

pub(crate) fn run(g: &GlobalArgs, a: &ServeArgs) -> anyhow::Result<ExitCode> {
    // Stage 1: check what the user typed before touching anything.
    if a.max_connections == 0
        || a.max_connections_per_uid == 0
        || a.read_timeout == 0
        || a.idle_timeout == 0
    {
        bail!("--max-connections, --max-connections-per-uid, --read-timeout and --idle-timeout must be at least 1");
    }
    let limits = Limits {
        max_connections: a.max_connections,
        read_timeout: Duration::from_secs(a.read_timeout),
        idle_timeout: Duration::from_secs(a.idle_timeout),
        max_per_uid: a.max_connections_per_uid,
        daemon_uid: crate::sys::current_uid(),
    };
    let access = AccessConfig {
        daemon_uid: crate::sys::current_uid(),
        admin_gid: a.admin_group.as_deref().map(resolve_group).transpose()?,
        scheduler_uids: a
            .schedulers
            .iter()
            .map(|u| resolve_user(u))
            .collect::<anyhow::Result<_>>()?,
    };
    let socket_gid = a
        .socket_group
        .as_deref()
        .map(|g| resolve_group_for("--socket-group", g))
        .transpose()?;

    // Stage 2: build resources. Hardening first, so nothing secret exists before it.
    let report = crate::sys::harden_process();
    if !report.dumpable_off || !report.core_limit_zero {
        eprintln!("scopevault: warning: could not turn core dumps off (dumpable off: {}, core limit 0: {})", report.dumpable_off, report.core_limit_zero);
    }
    if let Err(why) = &report.mlockall {
        // `why` is the whole advice (what failed, the risk, the fix): say it once.
        eprintln!("scopevault: warning: {why}");
    }
    let audit_path = a.audit.clone().unwrap_or_else(default_audit_path);
    let audit = AuditLog::open_with(
        &audit_path,
        !a.no_audit_sync,
        &crate::audit::OpenFlags {
            new_key: a.new_audit_key,
            anchor: true,
            accept_gap: a.accept_audit_gap,
        },
    )?;
    let socket_path = g.socket.clone().unwrap_or_else(default_socket_path);
    let mut handler = Handler::new(access, audit);
    handler.set_audit_reserve(a.audit_reserve_mib.saturating_mul(1024 * 1024));
    handler.set_allow_rollback(g.unlock.allow_rollback);
    let vault_path = super::unlock::vault_path(g);
    let opts = super::unlock::open_options(g);
    {
        let (path, opts) = (vault_path.clone(), opts.clone());
        handler.set_opener(Box::new(move |p: &SecretString| {
            let v = Vault::open(&path, &Unlock::Passphrase(p.clone()), &opts)
                .map_err(|e| vault_error(&e))?;
            Ok(Box::new(LoadedVault::new(v, opts.clone())) as Box<dyn VaultView>)
        }));
    }
    let unlocked_by = unlock_at_start(g, &vault_path, &opts, &handler)?;
    // The socket comes last: once it answers, the daemon is fully up (unlocked if it can be).
    let listener = match activated_listener()? {
        Some(l) => Listener::inherited(l),
        None => Listener::bind_with_group(&socket_path, socket_gid).map_err(|e| {
            // The error's text already holds its cause: print it once (not as a chain), with
            // the fix for the common case of no XDG_RUNTIME_DIR (after `su -`).
            let denied = matches!(&e, crate::agent::server::ServeError::Io { source, .. }
                if source.kind() == std::io::ErrorKind::PermissionDenied);
            let hint = if denied && g.socket.is_none() {
                if std::env::var_os("XDG_RUNTIME_DIR").is_none_or(|d| d.is_empty()) {
                    "; XDG_RUNTIME_DIR is not set (e.g. after `su -`), so the default is under /run: set XDG_RUNTIME_DIR=/run/user/$(id -u) or choose a socket you may create with --socket PATH"
                } else {
                    "; choose a socket you may create with --socket PATH"
                }
            } else if denied {
                "; choose a socket path in a directory you may write to"
            } else {
                ""
            };
            anyhow::anyhow!("{e}{hint}")
        })?,
    };
    let shown_path = listener
        .path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "the socket from systemd".into());
    let handler = Arc::new(handler);
    let server = Server::new(listener, limits, handler.clone())
        .context("cannot create the accept loop's wake-up pair")?;
    let shutdown = server.shutdown_handle();

    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1])
        .context("cannot install signal handlers")?;
    let signal_handle = signals.handle();
    let on_hup = handler.clone();
    let signal_thread = std::thread::spawn(move || {
        for sig in signals.forever() {
            match sig {
                SIGHUP => match on_hup.reload_from_signal() {
                    Ok(s) => eprintln!(
                        "scopevault: SIGHUP: reloaded the vault (generation {})",
                        s.generation.unwrap_or(0)
                    ),
                    Err(e) => eprintln!("scopevault: SIGHUP: reload failed: {e}"),
                },
                SIGUSR1 => match on_hup.reopen_audit_from_signal() {
                    Ok(Some(seq)) => eprintln!(
                        "scopevault: SIGUSR1: the audit log was moved away; continuing in a new file at its path (seq {seq}, audit.rotate)"
                    ),
                    Ok(None) => eprintln!(
                        "scopevault: SIGUSR1: the audit log is still at its path; nothing to reopen"
                    ),
                    Err(e) => eprintln!("scopevault: SIGUSR1: cannot reopen the audit log: {e}"),
                },
                _ => {
                    shutdown.trigger();
                    break;
                }
            }
        }
    });

    match &unlocked_by {
        Some(how) => eprintln!("scopevault: listening on {shown_path} (unlocked by {how})"),
        None => eprintln!(
            "scopevault: listening on {shown_path} (locked: an admin runs `scopevault unlock`)"
        ),
    }
    // Counted refusals become `denials` records about once a second (docs/audit.md, "Growth").
    let ticker_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (h, stop) = (handler.clone(), ticker_stop.clone());
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(250));
                h.flush_denials(false);
                if let Err(e) = h.anchor_audit() {
                    eprintln!("scopevault: warning: cannot write the audit anchor: {e}");
                }
            }
        })
    };
    notify_systemd("READY=1\nSTATUS=listening");
    let ran = server.run().context("the accept loop failed");
    ticker_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = ticker.join();
    handler.flush_denials(true);
    if let Err(e) = handler.anchor_audit() {
        eprintln!("scopevault: warning: cannot write the audit anchor: {e}");
    }
    ran?;
    notify_systemd("STOPPING=1");
    signal_handle.close();
    let _ = signal_thread.join();
    eprintln!("scopevault: stopped");
    Ok(ExitCode::SUCCESS)
}

/// Unlock at start when an unattended source is given: `--identity-file`,
/// `$CREDENTIALS_DIRECTORY/scopevault-identity` (systemd `LoadCredential[Encrypted]=`), or an
/// enrolled keyring slot. A source that is given explicitly and fails stops the start; a
/// keyring that does not answer leaves the daemon locked, with a warning.
fn unlock_at_start(
    g: &GlobalArgs,
    path: &Path,
    opts: &OpenOptions,
    handler: &Handler,
) -> anyhow::Result<Option<String>> {
    let from_systemd = std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|d| PathBuf::from(d).join("scopevault-identity"))
        .filter(|p| p.exists());
    let identity = g.unlock.identity_file.clone().or(from_systemd);
    if let Some(id) = identity {
        let v = Vault::open(path, &Unlock::IdentityFile(id.clone()), opts)
            .with_context(|| format!("cannot unlock the vault with {}", id.display()))?;
        load(handler, v, opts, "identity file")?;
        return Ok(Some(format!("identity file {}", id.display())));
    }
    // `--passphrase-file` / `--passphrase-fd`: given explicitly, so a failure stops the start
    // (issue 15.12: it used to be accepted and ignored).
    if let Some(pass) = super::unlock::passphrase_from_args(g)? {
        let v = Vault::open(path, &Unlock::Passphrase(pass), opts)
            .context("cannot unlock the vault with the passphrase given")?;
        load(handler, v, opts, "passphrase")?;
        return Ok(Some("the passphrase given".into()));
    }
    if !g.unlock.no_keyring && path.exists() && crate::vault::has_keyring_slot(path)? {
        match Vault::open(path, &Unlock::Keyring, opts) {
            Ok(v) => {
                load(handler, v, opts, "keyring")?;
                return Ok(Some("the keyring slot".into()));
            }
            Err(e) if e.is_refusal() => return Err(e.into()),
            Err(e) => {
                eprintln!("scopevault: warning: keyring unlock failed ({e}); starting locked")
            }
        }
    }
    Ok(None)
}

/// Install a vault opened at start, its generation recorded in (and checked against) the
/// audit chain.
fn load(handler: &Handler, v: Vault, opts: &OpenOptions, how: &str) -> anyhow::Result<()> {
    handler
        .load(Box::new(LoadedVault::new(v, opts.clone())), how)
        .map_err(|e| anyhow::anyhow!("{}", e.message))
}

/// The socket systemd passed us (socket activation), if `LISTEN_PID` names this process.
fn activated_listener() -> anyhow::Result<Option<UnixListener>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us || std::env::var_os("LISTEN_FDS").is_none() {
        return Ok(None);
    }
    let mut fds = listenfd::ListenFd::from_env();
    let listener = fds
        .take_unix_listener(0)
        .context("LISTEN_FDS is set but fd 3 is not a listening Unix stream socket; check the .socket unit (ListenStream= must be a path)")?;
    Ok(listener)
}

/// Send a readiness datagram to `$NOTIFY_SOCKET` (systemd `Type=notify`); silent otherwise.
fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let _ = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), PathBuf::from(path))
    };
}

fn resolve_group(name: &str) -> anyhow::Result<u32> {
    resolve_group_for("--admin-group", name)
}

fn resolve_group_for(option: &str, name: &str) -> anyhow::Result<u32> {
    name.parse::<u32>()
        .ok()
        .or_else(|| crate::sys::group_gid(name))
        .with_context(|| format!("{option} {name:?}: no such group in /etc/group"))
}

fn resolve_user(name: &str) -> anyhow::Result<u32> {
    name.parse::<u32>()
        .ok()
        .or_else(|| crate::sys::user_uid(name))
        .with_context(|| format!("--scheduler {name:?}: no such user in /etc/passwd"))
}
