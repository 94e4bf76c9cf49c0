//! `scopevault serve`: check the options, then hand over to [`crate::agent::daemon`], which
//! hardens the process, takes the socket (bound there or handed over by systemd), unlocks if an
//! unlock source is given, and runs the accept loop until SIGTERM/SIGINT; SIGHUP reloads the
//! vault; SIGUSR1 reopens a rotated audit log.
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};

use super::args::{GlobalArgs, ServeArgs};
use crate::accounts::Unresolved;
use crate::agent::authz::AccessConfig;
use crate::agent::daemon::{Config, StartUnlock, VaultPathSource};
use crate::agent::server::{default_socket_path, Limits};
use crate::audit::{default_audit_path, OpenFlags};
use crate::vault::OpenOptions;

pub(crate) fn run(g: &GlobalArgs, a: &ServeArgs) -> anyhow::Result<ExitCode> {
    // The signals the daemon handles, unblocked if given blocked, before it starts a thread.
    crate::sys::unblock_signals(&crate::agent::daemon::HANDLED_SIGNALS);
    // Check what the user typed before touching anything.
    // (`--read-timeout` and `--idle-timeout` are bounded by clap, args.rs.)
    if a.max_connections == 0
        || a.max_connections_per_uid == 0
        || a.event_loops == Some(0)
        || a.audit_rate_kib == 0
        || a.audit_burst_kib == 0
        || a.max_queued_mib_per_uid == 0
        || a.max_queued_mib == 0
    {
        bail!("--max-connections, --max-connections-per-uid, --event-loops, --audit-rate-kib, --audit-burst-kib, --max-queued-mib-per-uid and --max-queued-mib must be at least 1");
    }
    if a.max_queued_mib_per_uid > a.max_queued_mib {
        bail!(
            "--max-queued-mib-per-uid {} is more than --max-queued-mib {}: one uid's bound of answers not read cannot pass the bound of all of them; give a per-uid bound at most the total",
            a.max_queued_mib_per_uid,
            a.max_queued_mib
        );
    }
    // `--passphrase-fd N` is taken (checked open for reading, held) before the daemon opens
    // anything: a number not inherited named one of its own files once they were open (the
    // audit log's bytes read as the passphrase, "wrong passphrase").
    let held_fd = g
        .unlock
        .passphrase_fd
        .map(|fd| super::unlock::hold_secret_fd(fd).map(|f| (fd, f)))
        .transpose()?;
    // The same for a `--passphrase-file` or `--identity-file` naming a descriptor
    // (`/dev/fd/N`, `/proc/self/fd/N`): read later through that path, a number not inherited
    // named the daemon's own audit log (twenty-sixth pass, found by the re-attacker of this
    // pass's fixes). It must be open for reading now, before anything is opened.
    for path in [&g.unlock.passphrase_file, &g.unlock.identity_file]
        .into_iter()
        .flatten()
    {
        if let Some(fd) = fd_named_by(path) {
            super::unlock::hold_secret_fd(fd)
                .with_context(|| format!("{} names a file descriptor", path.display()))?;
        }
    }
    let limits = Limits {
        max_connections: a.max_connections,
        read_timeout: Duration::from_secs(a.read_timeout),
        idle_timeout: Duration::from_secs(a.idle_timeout),
        max_per_uid: a.max_connections_per_uid,
        daemon_uid: crate::sys::current_uid(),
        event_loops: a
            .event_loops
            .unwrap_or_else(crate::agent::server::default_event_loops),
        max_queued_per_uid: a.max_queued_mib_per_uid.saturating_mul(1024 * 1024),
        max_queued: a.max_queued_mib.saturating_mul(1024 * 1024),
    };
    // A name that resolves to nobody now is refused here, as typed; the daemon keeps the
    // names and resolves them again at each change of /etc/passwd or /etc/group (a name
    // deleted later then matches nobody, with a warning in its log).
    if let Some(g) = &a.admin_group {
        resolve_group(g)?;
    }
    for u in &a.schedulers {
        resolve_user(u)?;
    }
    let access = AccessConfig {
        daemon_uid: crate::sys::current_uid(),
        admin_group: a.admin_group.clone(),
        schedulers: a.schedulers.clone(),
    };
    let socket_gid = a
        .socket_group
        .as_deref()
        .map(|g| resolve_group_for("--socket-group", g))
        .transpose()?;

    let g2 = g.clone();
    crate::agent::daemon::run(Config {
        limits,
        access,
        socket_path: g.socket.clone().unwrap_or_else(default_socket_path),
        socket_given: g.socket.is_some(),
        socket_gid,
        audit_path: a.audit.clone().unwrap_or_else(default_audit_path),
        // Always on in a release: only a benchmark build has `--no-audit-sync`.
        #[cfg(feature = "bench-no-audit-sync")]
        audit_sync: !a.no_audit_sync,
        #[cfg(not(feature = "bench-no-audit-sync"))]
        audit_sync: true,
        audit_flags: OpenFlags {
            new_key: a.new_audit_key,
            anchor: true,
            accept_gap: a.accept_audit_gap,
        },
        audit_reserve: a.audit_reserve_mib.saturating_mul(1024 * 1024),
        audit_budget: (
            a.audit_rate_kib.saturating_mul(1024),
            a.audit_burst_kib.saturating_mul(1024),
        ),
        vault_path: super::unlock::vault_path(g),
        vault_path_source: vault_path_source(),
        // The path names the file itself (a link at it was followed once, at the start of the
        // command): the daemon keeps that file, and refuses a link put at its path later.
        open_options: OpenOptions {
            no_follow: true,
            ..super::unlock::open_options(g)
        },
        unlock: StartUnlock {
            identity_file: g.unlock.identity_file.clone(),
            identity_from_env: g.unlock.identity_from_env,
            passphrase: Box::new(move || match held_fd {
                Some((fd, f)) => super::unlock::passphrase_from_held_fd(fd, f),
                None => super::unlock::passphrase_from_args(&g2),
            }),
            keyring: !g.unlock.no_keyring,
        },
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Whether the vault path came from `--vault`, `SCOPEVAULT_VAULT` or neither, read again from
/// the command line by clap: the parsed [`GlobalArgs`] do not say where a value came from (and
/// hold the path with a link at it followed, whatever chose it).
fn vault_path_source() -> VaultPathSource {
    use clap::parser::ValueSource;
    use clap::CommandFactory;
    let Ok(m) = super::args::Cli::command().try_get_matches_from(std::env::args_os()) else {
        return VaultPathSource::Default;
    };
    let Some(("serve", sub)) = m.subcommand() else {
        return VaultPathSource::Default;
    };
    match sub.value_source("vault") {
        Some(ValueSource::CommandLine) => VaultPathSource::Flag,
        Some(ValueSource::EnvVariable) => VaultPathSource::Env,
        _ => VaultPathSource::Default,
    }
}

fn resolve_group(name: &str) -> anyhow::Result<u32> {
    resolve_group_for("--admin-group", name)
}

fn resolve_group_for(option: &str, name: &str) -> anyhow::Result<u32> {
    if let Ok(gid) = name.parse::<u32>() {
        return Ok(gid);
    }
    crate::accounts::resolve_group(name).map_err(|e| match e {
        Unresolved::Missing { .. } => anyhow!("{option} {name:?}: no such group in /etc/group"),
        e => anyhow!("{option} {name:?}: {e}"),
    })
}

fn resolve_user(name: &str) -> anyhow::Result<u32> {
    if let Ok(uid) = name.parse::<u32>() {
        return Ok(uid);
    }
    crate::accounts::resolve_user(name).map_err(|e| match e {
        Unresolved::Missing { .. } => anyhow!("--scheduler {name:?}: no such user in /etc/passwd"),
        e => anyhow!("--scheduler {name:?}: {e}"),
    })
}

/// The descriptor number `path` names, if it is `/dev/fd/N` or `/proc/self/fd/N`.
fn fd_named_by(path: &std::path::Path) -> Option<i32> {
    let text = path.to_str()?;
    let n = text
        .strip_prefix("/dev/fd/")
        .or_else(|| text.strip_prefix("/proc/self/fd/"))?;
    n.parse().ok()
}
