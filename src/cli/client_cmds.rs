//! Commands that talk to the running daemon: lock, unlock, reload, get, totp, exec
//! (`status` is in `super::status`).
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use zeroize::Zeroizing;

use super::args::{ExecArgs, FetchWait, GetArgs, GlobalArgs, TotpArgs};
use super::{escape_for_terminal, EXIT_CANNOT_RUN, EXIT_NOT_FOUND};
use crate::agent::server::default_socket_path;
use crate::client::{Client, ClientError};
use crate::protocol::{AdminStatus, Fetched, FetchedCredential, UnlockKey};

pub(crate) fn socket_path(g: &GlobalArgs) -> PathBuf {
    g.socket.clone().unwrap_or_else(default_socket_path)
}

/// The vault a command is for, as the CLI knows it without its key: the file (`--vault`,
/// `SCOPEVAULT_VAULT` or the default) and the id its header names (not authenticated), or
/// why that is not known (no such file, not readable here, not a vault file).
pub(crate) struct ThisVault {
    pub(crate) path: PathBuf,
    pub(crate) id: Result<String, String>,
}

impl ThisVault {
    pub(crate) fn of(g: &GlobalArgs) -> ThisVault {
        let path = super::unlock::vault_path(g);
        let id = match crate::vault::file_vault_id(&path) {
            Ok(Some(id)) => Ok(id),
            Ok(None) => Err(format!(
                "{} names no vault id (not a vault file)",
                super::shown(&path)
            )),
            Err(e) => Err(e.to_string()),
        };
        ThisVault { path, id }
    }

    /// [`serves_other_vault`] of this vault, when its id is known.
    pub(crate) fn served_elsewhere(
        &self,
        socket: &std::path::Path,
        h: &crate::protocol::Health,
    ) -> Option<String> {
        serves_other_vault(socket, h, &self.path, self.id.as_deref().ok()?)
    }
}

/// What to say when the daemon at `socket`, which answered `h`, serves (or, locked, loads at
/// its `unlock`) another vault than `id`, the vault file at `path` the command was given or
/// defaults to; `None` when it is that vault, or does not say which it serves (a daemon
/// before the twenty-sixth pass, locked). No reload or unlock of that daemon serves `path`:
/// the advice names what does. When the file at the daemon's own vault path is now that
/// vault (`health`'s `vault_file_id`), another vault's file has replaced the daemon's, and
/// the advice is to check it and put the daemon's back (a restart would serve the planted
/// one; docs/security.md, "A vault file of another vault"). `cred set` and the other
/// writers, `status`, `bundle apply`, `reload`, `lock` and `unlock` say it (twenty-sixth
/// pass, found by the attacker of observability and many daemons: `status` advised a
/// `reload`, `bundle apply` reported the other vault's reload, `unlock` sent the key).
pub(crate) fn serves_other_vault(
    socket: &std::path::Path,
    h: &crate::protocol::Health,
    path: &std::path::Path,
    id: &str,
) -> Option<String> {
    let served = crate::client::served_other_vault(h, id)?;
    let (socket, path) = (super::shown(socket), super::shown(path));
    let served = escape_for_terminal(served);
    let locked = if h.locked { " (locked)" } else { "" };
    Some(if h.vault_file_id.as_deref() == Some(id) {
        format!(
            "the daemon at {socket}{locked} serves vault {served}, but the file at its own vault path is now vault {id}, the vault of {path}: another vault's file has replaced the daemon's. The daemon keeps serving vault {served}, and a restart would serve the file put there: check who put it there (its owner, its time, the audit log), and put the daemon's vault file (vault {served}) back from a backup (docs/security.md, \"A vault file of another vault\")"
        )
    } else {
        format!(
            "the daemon at {socket}{locked} serves another vault (vault {served}), not vault {id} of {path}: no reload or unlock of that daemon serves {path}. Give the --socket of the daemon that serves it (or start one with --vault {path}), or give this command the other daemon's vault file with --vault"
        )
    })
}

/// After a save of the vault: say whether the running daemon serves it yet (issue 14, item
/// 5). The daemon loads a changed vault file before it answers any request but `health`;
/// the first `health` after the save starts that load and says `loading`, so `health` is
/// asked until it does not (at most [`PICKUP_WAIT`]). The save has happened either way: a
/// daemon that cannot be asked (none running, a stale socket) is said on stdout, and only a
/// daemon that takes the connection and does not answer within [`ANSWER_WAIT`] (stopped with
/// `kill -STOP`, or hung) is an error, exit 5, which says that the vault was saved. It used
/// to wait for that answer for ever (seventeenth pass). Returns the line to print, so that the
/// daemon is asked before anything is printed.
pub(crate) fn report_pickup(
    g: &GlobalArgs,
    vault_id: &str,
    generation: u64,
) -> anyhow::Result<String> {
    let socket = socket_path(g);
    let shown = super::shown(&socket);
    if std::fs::symlink_metadata(&socket).is_err() {
        // What a start does with the file is the audit chain's to say as well: a vault file
        // restored with the rollback record, saved above the record only, was promised to
        // load and was refused (twenty-third pass). This command knows the log of a daemon
        // started without `--audit`, and says so.
        let log = super::unlock::serve_audit_log();
        let log_shown = super::shown(&log);
        let seen = match crate::audit::chain_generation(&log, vault_id) {
            Ok(seen) => seen,
            Err(e) => {
                return Ok(format!(
                    "no daemon listens at {shown}: a daemon loads generation {generation} when it starts unless its audit chain has recorded a newer generation of this vault, which is not known here: the audit log {log_shown} cannot be read ({})\n",
                    escape_for_terminal(&e.to_string())
                ));
            }
        };
        return Ok(if seen > generation {
            format!(
                "no daemon listens at {shown}; a daemon started on the audit log {log_shown} refuses generation {generation}: that log's chain has recorded generation {seen} of this vault. Put the newest vault file back, or adopt this one: give --allow-rollback to a command that saves it (docs/operations.md, \"Restore\")\n"
            )
        } else {
            format!(
                "no daemon listens at {shown}: a daemon on the audit log {log_shown} loads generation {generation} when it starts (one given another log with `serve --audit` judges it against that log's chain: set SCOPEVAULT_AUDIT to that log for this check)\n"
            )
        });
    }
    let health = health_after_load(&socket);
    let elsewhere = health
        .as_ref()
        .ok()
        .and_then(|h| serves_other_vault(&socket, h, &super::unlock::vault_path(g), vault_id));
    if let Some(line) = elsewhere {
        return Ok(line + "\n");
    }
    // A copy of the vault saved where it lies (`--vault COPY`) is not the file the daemon
    // serves: "it did not load N" blamed the daemon for a file it never reads (twenty-seventh
    // pass, found by the attacker of multi-admin work and backups). The daemon names its file
    // to an admin; else a copy of the file at SCOPEVAULT_VAULT or the default path is taken
    // for one.
    let file = super::unlock::vault_path(g);
    if let Ok(h) = &health {
        let served = h.vault_path.as_deref().map(std::path::Path::new);
        let other = match served {
            Some(p) => (!crate::paths::same_file(&file, p)).then(|| p.to_owned()),
            None => {
                let live = crate::advice::live_vault();
                crate::advice::copy_of(&file, &live).then_some(live)
            }
        };
        if let Some(served) = other {
            return Ok(format!(
                "the daemon at {shown} serves {}, not {}: it does not load generation {generation} of this file (a copy)\n",
                super::shown(&served),
                super::shown(&file)
            ));
        }
    }
    let line = match health {
        Err(e @ ClientError::NoAnswer { .. }) => {
            return Err(anyhow::Error::new(super::Exit {
                code: super::EXIT_DAEMON,
                message: format!(
                    "the vault was saved (generation {generation}), but {e}; the daemon loads the saved vault at its next request once it answers again"
                ),
            }))
        }
        Err(e) => format!(
            "the daemon at {shown} could not be asked ({e}); it loads generation {generation} at its next request"
        ),
        Ok(h) if h.locked => format!(
            "the daemon at {shown} is locked: it loads generation {generation} when unlocked"
        ),
        Ok(h) if h.vault_id.as_deref() != Some(vault_id) => format!(
            "the daemon at {shown} serves another vault ({}); this one is not served there",
            escape_for_terminal(h.vault_id.as_deref().unwrap_or("?"))
        ),
        Ok(h) if h.loading => format!(
            "the daemon at {shown} is still loading the saved vault after {} s; it serves generation {} until then",
            PICKUP_WAIT.as_secs(),
            h.generation.unwrap_or(0)
        ),
        Ok(h) if h.generation.unwrap_or(0) >= generation => format!(
            "the running daemon at {shown} serves generation {} now",
            h.generation.unwrap_or(0)
        ),
        Ok(h) => format!(
            "the running daemon at {shown} still serves generation {}: it did not load {generation} (its log and `scopevault audit show` say why)",
            h.generation.unwrap_or(0)
        ),
    };
    Ok(line + "\n")
}

/// After a save, what every saving command prints: the daemon asked first ([`report_pickup`]:
/// it loads the saved file at that request), then `report` with the daemon's line. `Err`: the
/// report could not be printed (the message says `done` was made). `Ok`: how asking the daemon
/// went, for the caller to return once its own notes are out.
pub(crate) fn print_after_save(
    g: &GlobalArgs,
    vault: &crate::vault::Vault,
    mut report: String,
    done: &str,
) -> anyhow::Result<anyhow::Result<()>> {
    let pickup = report_pickup(g, vault.id(), vault.generation());
    if let Ok(line) = &pickup {
        report.push_str(line);
    }
    super::output::after_change(done, super::write_stdout(report.as_bytes()))?;
    Ok(pickup.map(|_| ()))
}

/// How long [`report_pickup`], `status` and `doctor` ask again while the daemon says it is
/// loading the saved file.
pub(super) const PICKUP_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long the CLI waits for the daemon to take a connection, and then for its answer to
/// each `health` (`status`, `doctor`, a writer's report) or admin request (`lock`, `reload`,
/// `audit rotate`, the reload after `bundle apply`) — a daemon stopped (`kill -STOP`) or hung
/// keeps its socket, and the kernel queues connections to it that nobody answers. The daemon
/// answers `health` at once, even while it loads a file, and the admin requests but `unlock`
/// take it well under a second. docs/operations.md, "The clients", says these bounds.
pub(super) const ANSWER_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// How long `unlock` waits for the daemon's answer: the daemon derives the key from the
/// passphrase first (Argon2id, with the parameters the vault file's slot names: at most 1 GiB
/// and 16 passes, tens of seconds on a small machine).
pub(super) const UNLOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The daemon's `health` once it is not loading a changed vault file any more (the first
/// `health` after a save starts that load and is answered at once, with `loading`), or the
/// last answer after [`PICKUP_WAIT`]. Each answer is waited for at most [`ANSWER_WAIT`].
pub(super) fn health_after_load(
    socket: &std::path::Path,
) -> Result<crate::protocol::Health, crate::client::ClientError> {
    health_and_peer_after_load(socket).map(|(h, _)| h)
}

/// [`health_after_load`], with who answered ([`Client::peer`]).
pub(super) fn health_and_peer_after_load(
    socket: &std::path::Path,
) -> Result<(crate::protocol::Health, crate::sys::PeerCred), crate::client::ClientError> {
    let mut client = Client::connect_within(socket, ANSWER_WAIT)?;
    let until = std::time::Instant::now() + PICKUP_WAIT;
    loop {
        let h = client.health()?;
        if !h.loading || std::time::Instant::now() >= until {
            return Ok((h, client.peer()));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A daemon failure; `super::exit_code_of` maps every [`ClientError`] to 5.
pub(super) fn daemon_err(e: ClientError) -> anyhow::Error {
    anyhow::Error::new(e)
}

/// Fetch `task`'s credentials (or the one named) from the daemon at `socket`, waiting at most
/// `wait` (`--timeout` of `get`, `totp`, `exec` and `redact`) for it to take the connection,
/// and again for its answer. A daemon that does not (stopped with `kill -STOP`, or hung) is
/// an error, exit 5, naming the socket and saying that `not_done` was not done; nothing of
/// the fetch comes out after that: the connection is closed, and an answer the daemon sends
/// later is read by nobody. A fetch used to wait for ever (eighteenth pass).
pub(super) fn fetch_within(
    socket: &std::path::Path,
    task: &str,
    credential: Option<&str>,
    wait: &FetchWait,
    not_done: &str,
) -> anyhow::Result<Fetched> {
    fetch_chosen_within(socket, task, wait, not_done, |_, _| {
        Ok(credential.map(str::to_owned))
    })
}

/// [`fetch_within`] of the credential `choose` picks on the open connection (it may ask the
/// daemon first, e.g. `tasks`, and maps that request's errors with the function it is given,
/// so that no answer in time is the same error as for the fetch).
pub(super) fn fetch_chosen_within(
    socket: &std::path::Path,
    task: &str,
    wait: &FetchWait,
    not_done: &str,
    choose: impl FnOnce(
        &mut Client,
        &dyn Fn(ClientError) -> anyhow::Error,
    ) -> anyhow::Result<Option<String>>,
) -> anyhow::Result<Fetched> {
    let err = |e: ClientError| fetch_error(e, wait, not_done);
    let mut client = Client::connect_within(socket, wait.duration()).map_err(err)?;
    let credential = choose(&mut client, &err)?;
    client.fetch(task, credential.as_deref()).map_err(err)
}

/// A fetch's client error: no answer within `--timeout` says what was not done.
fn fetch_error(e: ClientError, wait: &FetchWait, not_done: &str) -> anyhow::Error {
    match e {
        ClientError::NoAnswer { .. } => anyhow::Error::new(super::Exit {
            code: super::EXIT_DAEMON,
            message: format!(
                "{e}; {not_done} (a daemon that is only slow needs a longer `--timeout` than {} s)",
                wait.seconds
            ),
        }),
        e => daemon_err(e),
    }
}

/// A connection for an admin or `health` request: it waits at most `wait` for the daemon
/// ([`ANSWER_WAIT`], [`UNLOCK_WAIT`]).
pub(super) fn connect_within(g: &GlobalArgs, wait: std::time::Duration) -> anyhow::Result<Client> {
    Client::connect_within(&socket_path(g), wait).map_err(daemon_err)
}

fn print_admin(what: &str, s: &AdminStatus) -> Result<(), super::output::StdoutError> {
    if s.locked {
        outln!("{what}: the daemon is locked")?;
    } else {
        outln!(
            "{what}: the daemon is unlocked (vault {}, generation {})",
            escape_for_terminal(s.vault_id.as_deref().unwrap_or("?")),
            s.generation.unwrap_or(0)
        )?;
    }
    Ok(())
}

/// A connection for an admin request to the daemon the command is aimed at, and its `health`
/// asked first on it: what it serves is compared with the vault the command is for
/// ([`ThisVault::served_elsewhere`]) before anything else is sent on it.
fn asked_first(g: &GlobalArgs) -> anyhow::Result<(Client, crate::protocol::Health)> {
    let mut client = connect_within(g, ANSWER_WAIT)?;
    let h = client.health().map_err(daemon_err)?;
    Ok((client, h))
}

/// Warn on stderr when the daemon serves another vault than the one the command is for: what
/// it was asked changed nothing of that vault.
fn warn_if_elsewhere(g: &GlobalArgs, h: &crate::protocol::Health) {
    if let Some(line) = ThisVault::of(g).served_elsewhere(&socket_path(g), h) {
        errln!("warning: {line}");
    }
}

pub(crate) fn lock(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (mut client, h) = asked_first(g)?;
    let s = client.lock().map_err(daemon_err)?;
    print_admin("lock", &s)?;
    warn_if_elsewhere(g, &h);
    Ok(ExitCode::SUCCESS)
}

/// `unlock`. The daemon's `health` is asked first, on the connection the key goes on: a key
/// (a passphrase, an identity file's text) is never sent to a daemon that says it serves
/// another vault than the vault file this command was given or defaults to (the key is taken
/// to be that vault's), nor an `unlock` with no key (it would unlock that other vault); the refusal says which daemon serves which vault and what to do,
/// exit 5. With no key on the command line, the daemon's own sources are tried first (nothing
/// secret is sent), and only then `SCOPEVAULT_IDENTITY_FILE`, and that only to a daemon that
/// says it serves the vault of this command's vault file. It was sent in the first request,
/// before `health`, to whatever daemon the client trusts, another user's included (twenty-sixth
/// pass, found by the attacker of observability and many daemons). docs/protocol.md, "Who the
/// client talks to", and docs/security.md say what this does not cover (a daemon that lies).
pub(crate) fn unlock(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let socket = socket_path(g);
    let this = ThisVault::of(g);
    let (mut client, h) = asked_first(g)?;
    // No unlock request of any kind to a daemon of another vault: not a key, nor an `unlock`
    // with no key, which unlocks that daemon's own vault from its own sources (an admin who
    // locked vault B had it unlocked by an `unlock` aimed at vault A, exit 0 with a warning;
    // twenty-sixth pass, found by the re-attacker of this pass's fixes).
    if let Some(line) = this.served_elsewhere(&socket, &h) {
        return Err(not_sent(&line, &this));
    }
    if let Some(key) = given_unlock_key(g)? {
        return send_unlock_key(client, &h, &this, &socket, key);
    }
    // No key given: the daemon tries its own start-time sources again first (its identity
    // file, its systemd credential, its keyring slot). A daemon whose vault's only slot is
    // in the keyring could not be unlocked after a `lock` without a restart (twenty-fourth
    // pass).
    client.set_timeout(Some(UNLOCK_WAIT))?;
    let why = match client.unlock_with_own_sources(this.id.as_deref().ok()) {
        Ok(s) => {
            print_admin("unlock", &s)?;
            return Ok(ExitCode::SUCCESS);
        }
        Err(e @ ClientError::OtherVault { .. }) => return Err(not_sent_after(e, &h, &this, &socket)),
        Err(e) if e.code() == Some(crate::protocol::ErrorCode::Denied) => {
            if !h.peer.admin {
                return Err(daemon_err(e));
            }
            escape_for_terminal(&e.to_string())
        }
        // A daemon older than the unlock with no key refuses it as a bad request.
        Err(e) if e.code() == Some(crate::protocol::ErrorCode::BadRequest) => format!(
            "the daemon cannot try its own unlock sources again (it is older than this scopevault, whose protocol has the `unlock` with no key; it answered: {}): restart it to unlock it with its identity file or keyring slot, or upgrade it",
            escape_for_terminal(&e.to_string())
        ),
        Err(e) => return Err(daemon_err(e)),
    };
    if let (Some(f), true) = (&g.unlock.identity_file, g.unlock.identity_from_env) {
        let key = env_identity_for(&h, &this, &socket, f, &why)?;
        return send_unlock_key(client, &h, &this, &socket, key);
    }
    // Nobody is asked for a passphrase that would not be sent.
    if let Some(line) = this.served_elsewhere(&socket, &h) {
        return Err(not_sent(&line, &this));
    }
    let key = prompted_unlock_key(g, &why, &prompt_label(&h, &this, &socket))?;
    // A new connection, asked again: the prompt may outlast the daemon's idle timeout.
    let (client, h) = asked_first(g)?;
    send_unlock_key(client, &h, &this, &socket, key)
}

/// The refusal to send a key to a daemon of another vault (`line`, [`serves_other_vault`]).
fn not_sent(line: &str, this: &ThisVault) -> anyhow::Error {
    super::Exit {
        code: super::EXIT_DAEMON,
        message: format!(
            "{line}. No unlock request was sent to it: the key was not sent (it is taken to be the key of {}, the vault file this command was given or defaults to), nor an `unlock` with no key, which would unlock that daemon's own vault from its own sources",
            super::shown(&this.path)
        ),
    }
    .into()
}

/// [`not_sent`] for the library's refusal `e` to send an unlock to a daemon of another
/// vault ([`ClientError::OtherVault`]), whose `health` on that connection was `h`: the
/// library judged that same answer, so the CLI's message (the socket, both vaults, the
/// vault file, what to give) is always there to say it.
fn not_sent_after(
    e: ClientError,
    h: &crate::protocol::Health,
    this: &ThisVault,
    socket: &std::path::Path,
) -> anyhow::Error {
    match this.served_elsewhere(socket, h) {
        Some(line) => not_sent(&line, this),
        None => daemon_err(e),
    }
}

/// `SCOPEVAULT_IDENTITY_FILE` (`file`), once the daemon's own sources did not unlock it
/// (`why`): read only when the daemon says it serves the vault of this command's vault file.
/// An identity exported for the commands' own vault is not sent to a daemon that does not
/// say which vault it serves (an older one, or nothing it can read at its vault path), nor
/// when that file cannot be read here: `--identity-file` sends it on purpose.
fn env_identity_for(
    h: &crate::protocol::Health,
    this: &ThisVault,
    socket: &std::path::Path,
    file: &std::path::Path,
    why: &str,
) -> anyhow::Result<UnlockKey> {
    if let Some(line) = this.served_elsewhere(socket, h) {
        return Err(not_sent(&line, this));
    }
    let unknown = match (&this.id, &h.vault_id) {
        (Ok(_), Some(_)) => {
            return Ok(UnlockKey::Identity(crate::vault::read_identity_text(file)?));
        }
        (_, None) => format!(
            "the daemon at {} does not say which vault it serves (a daemon older than this scopevault, or none it can read at its vault path)",
            super::shown(socket)
        ),
        (Err(e), Some(_)) => format!(
            "the vault file {} cannot be read here to compare with the daemon's ({})",
            super::shown(&this.path),
            escape_for_terminal(e)
        ),
    };
    Err(crate::vault::VaultError::NoUnlockSource(format!(
        "{why}. SCOPEVAULT_IDENTITY_FILE ({}) was not sent: an identity taken from the environment is sent only to a daemon that says it serves the vault of this command's vault file, and {unknown}. To send it to this daemon, give it with --identity-file FILE",
        super::shown(file)
    ))
    .into())
}

/// Send `key` to the daemon on `client`, whose `health` was `h`, unless that daemon serves
/// another vault than `this` (the library's check, [`Client::unlock_by`]; [`not_sent`]).
fn send_unlock_key(
    mut client: Client,
    h: &crate::protocol::Health,
    this: &ThisVault,
    socket: &std::path::Path,
    key: UnlockKey,
) -> anyhow::Result<ExitCode> {
    client.set_timeout(Some(UNLOCK_WAIT))?;
    let by_identity = matches!(key, UnlockKey::Identity(_));
    let s = match client.unlock_by(this.id.as_deref().ok(), key) {
        Ok(s) => s,
        Err(e @ ClientError::OtherVault { .. }) => return Err(not_sent_after(e, h, this, socket)),
        Err(e) if e.code() == Some(crate::protocol::ErrorCode::Denied) => {
            // `denied` is either "not an admin" (exit 5) or "this key opens no slot" (exit 3,
            // as for a local unlock): an admin was denied only for the key.
            if h.peer.admin {
                return Err(crate::vault::VaultError::WrongKey(format!(
                    "the daemon could not unlock the vault: {e}"
                ))
                .into());
            }
            return Err(daemon_err(e));
        }
        // A daemon older than the `identity` member refuses it as unknown: say what that
        // means and what works instead, not only "bad_request".
        Err(e)
            if by_identity
                && e.code() == Some(crate::protocol::ErrorCode::BadRequest)
                && e.to_string().contains("`identity`") =>
        {
            return Err(super::Exit {
                code: super::EXIT_DAEMON,
                message: format!(
                    "the daemon does not take an identity file at `unlock` (it is older than this scopevault, whose protocol has the `unlock` member `identity`; it answered: {}). Restart it with `scopevault serve --identity-file FILE` (or its systemd credential) to unlock it at start, or upgrade it; a vault with a passphrase slot can also be unlocked with `scopevault unlock --passphrase-file FILE`",
                    escape_for_terminal(&e.to_string())
                ),
            }
            .into());
        }
        Err(e) => return Err(daemon_err(e)),
    };
    print_admin("unlock", &s)?;
    Ok(ExitCode::SUCCESS)
}

/// The key `unlock` sends the daemon, in the order docs/operations.md "Unlock sources" gives:
/// the source given on the command line (`--identity-file`, `--passphrase-file` or
/// `--passphrase-fd`: at most one, [`super::unlock::check_explicit_sources`]); `None` when
/// none is given (then the daemon's own sources are tried, then `SCOPEVAULT_IDENTITY_FILE`
/// ([`env_identity_for`]), then the prompt, [`prompted_unlock_key`]). An identity file is read and checked
/// here, and its text is sent as `identity` (admin-only, zeroed, never logged nor audited):
/// `unlock --identity-file` was ignored, and the prompt's passphrase refused by a vault with
/// no passphrase slot (twenty-third pass).
fn given_unlock_key(g: &GlobalArgs) -> anyhow::Result<Option<UnlockKey>> {
    let identity = || -> anyhow::Result<Option<UnlockKey>> {
        match &g.unlock.identity_file {
            Some(f) => Ok(Some(UnlockKey::Identity(crate::vault::read_identity_text(
                f,
            )?))),
            None => Ok(None),
        }
    };
    if !g.unlock.identity_from_env {
        if let Some(k) = identity()? {
            return Ok(Some(k));
        }
    }
    Ok(super::unlock::passphrase_from_args(g)?.map(UnlockKey::Passphrase))
}

/// The prompt for the passphrase `unlock` sends the daemon at `socket`, whose `health` was
/// `h`: it names the vault the daemon serves, and says when that could not be compared with
/// the vault file here (`this`: none readable, the normal case for an admin in the admin
/// group who is not the daemon's user) or the daemon names none, so that the admin decides
/// whether to type the passphrase. It said only "Vault passphrase (sent to the daemon)" to a
/// daemon naming any vault (twenty-sixth pass, found by the re-attacker of this pass's fixes).
fn prompt_label(h: &crate::protocol::Health, this: &ThisVault, socket: &std::path::Path) -> String {
    let shown = super::shown(socket);
    match (&h.vault_id, &this.id) {
        (Some(served), Ok(_)) => format!(
            "Vault passphrase (vault {}, the vault of {}; sent to the daemon at {shown}): ",
            escape_for_terminal(served),
            super::shown(&this.path)
        ),
        (Some(served), Err(e)) => {
            let served = escape_for_terminal(served);
            format!(
                "The daemon at {shown} serves vault {served}; this could not be compared with a vault file here ({}: {}). Type the passphrase only if vault {served} is the vault you mean to unlock.\nVault passphrase (vault {served}; sent to the daemon at {shown}): ",
                super::shown(&this.path),
                escape_for_terminal(e)
            )
        }
        (None, _) => format!(
            "The daemon at {shown} does not say which vault it serves (a daemon older than this scopevault): type the passphrase only if you know it serves the vault you mean to unlock.\nVault passphrase (sent to the daemon at {shown}): "
        ),
    }
}

/// When no key is given and the daemon's own sources did not unlock it (`why`, the daemon's
/// answer): a no-echo prompt for the passphrase on a terminal, else an error saying `why` and
/// what to give. No prompt when the vault file's header (`--vault`, `SCOPEVAULT_VAULT` or the
/// default: the daemon's when they run as one user) lists no passphrase slot: the answer
/// could only be refused (twenty-fourth pass, found by the twenty-third pass's review). The
/// header is not authenticated, so it only spares a prompt; a file that cannot be read
/// leaves the prompt as it was.
fn prompted_unlock_key(g: &GlobalArgs, why: &str, label: &str) -> anyhow::Result<UnlockKey> {
    use std::io::IsTerminal;
    let path = super::unlock::vault_path(g);
    if let Ok(slots) = crate::vault::read_slots(&path) {
        if !slots
            .iter()
            .any(|s| matches!(s, crate::vault::Slot::Passphrase { .. }))
        {
            let kinds: Vec<&str> = slots.iter().map(|s| s.kind()).collect();
            return Err(crate::vault::VaultError::NoUnlockSource(format!(
                "{why}. The vault file {} has no passphrase slot (its slots: {}), so no passphrase is asked: give the identity file with --identity-file FILE (if the daemon serves another vault file, name it with --vault PATH)",
                super::shown(&path),
                if kinds.is_empty() { "none".to_owned() } else { kinds.join(", ") }
            ))
            .into());
        }
    }
    if std::io::stdin().is_terminal() || super::unlock::have_tty() {
        return Ok(UnlockKey::Passphrase(super::unlock::prompt_passphrase(
            label,
        )?));
    }
    Err(crate::vault::VaultError::NoUnlockSource(format!(
        "{why}. Give the passphrase with --passphrase-file FILE or --passphrase-fd N, or the identity file with --identity-file FILE, or run on a terminal to be prompted for the passphrase"
    ))
    .into())
}

pub(crate) fn reload(g: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let (mut client, h) = asked_first(g)?;
    let s = client.reload().map_err(daemon_err)?;
    print_admin("reload", &s)?;
    warn_if_elsewhere(g, &h);
    Ok(ExitCode::SUCCESS)
}

/// Print the daemon's warnings for a hand-out on stderr.
fn print_warnings(f: &Fetched) {
    for c in &f.credentials {
        for w in &c.warnings {
            errln!(
                "scopevault: warning: {}",
                escape_for_terminal(&crate::advice::in_daemon_text(w))
            );
        }
    }
}

/// The one credential `get`/`totp` print: the one named, or the task's only one.
fn only_one<'a>(f: &'a Fetched, what: &str) -> anyhow::Result<&'a FetchedCredential> {
    match f.credentials.as_slice() {
        [one] => Ok(one),
        many => {
            let names: Vec<&str> = many.iter().map(|c| c.name.as_str()).collect();
            Err(several(&f.task, &names, what))
        }
    }
}

fn several(task: &str, names: &[&str], what: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "task `{task}` has {} credentials ({}); choose one with --credential for {what}",
        names.len(),
        names.join(", ")
    )
}

/// What `get` and `totp` print of a hand-out.
#[derive(Clone, Copy)]
enum Printed<'a> {
    /// One credential (`get` without `--json`); `what` names the request in messages, `field`
    /// is `--field`'s.
    One {
        what: &'static str,
        field: Option<&'a str>,
    },
    /// One TOTP credential's code (`totp`).
    TotpCode,
}

/// The credential to ask `fetch` for, decided before anything is handed out: a hand-out is
/// audited whether the client then prints it or not, so a request the client would refuse
/// (a task with several credentials and no `--credential`; `totp` of a login) is refused
/// here, and only the credential printed is fetched. The task's credentials and their kinds
/// come from `tasks` (for this task alone), which hands nothing out. Where `tasks` does not list the task (not a
/// runner of it, no such task, locked) or gives no kinds (an older daemon), the credential
/// asked for is fetched as given, and the daemon's answer decides (and is audited).
fn credential_to_fetch(
    client: &mut Client,
    task: &str,
    credential: Option<&str>,
    printed: Printed<'_>,
    err: &dyn Fn(ClientError) -> anyhow::Error,
) -> anyhow::Result<Option<String>> {
    let asked = || Ok(credential.map(str::to_owned));
    // Asked for this task alone: the whole list may be long (a policy of many large tasks
    // made it longer than a client reads, and every `get` failed: twenty-second pass). A
    // daemon from before then refuses the `task` member as a bad request: it is asked for
    // the whole list (only then: another `bad_request` is the answer, twenty-third pass).
    let answer = client.task_info_or_all(task);
    let listed = match answer {
        Ok(t) => t.tasks.into_iter().find(|t| t.name == task),
        // Locked (the connection stays open): the fetch is refused as before, and audited.
        Err(e) if e.code() == Some(crate::protocol::ErrorCode::Locked) => None,
        // Busy (the daemon closed the connection), no answer: what the fetch would have had.
        Err(e) => return Err(err(e)),
    };
    let Some(info) = listed else {
        return asked();
    };
    let names: Vec<&str> = info.credentials.iter().map(String::as_str).collect();
    match printed {
        Printed::One { what, field } => {
            let chosen = match (credential, names.as_slice()) {
                (Some(c), _) => Some(c.to_owned()),
                (None, [one]) => Some((*one).to_owned()),
                (None, []) => None,
                (None, many) => {
                    anyhow::bail!("{}; nothing was fetched", several(task, many, what))
                }
            };
            // A field the credential does not hand out: refused before the fetch, where
            // `tasks` names its fields (an older daemon does not: the fetch decides).
            if let (Some(c), Some(field)) = (&chosen, field) {
                let totp = info.kinds.get(c).is_some_and(|k| k == "totp");
                if let Some(known) = info.fields.get(c) {
                    let handed_out =
                        known.iter().any(|k| k == field) || (totp && is_totp_alias(field));
                    if !handed_out {
                        let mut known: Vec<&str> = known.iter().map(String::as_str).collect();
                        if totp {
                            known.push("totp");
                        }
                        anyhow::bail!("{}; nothing was fetched", no_field(c, field, &known));
                    }
                }
            }
            Ok(chosen.or_else(|| credential.map(str::to_owned)))
        }
        Printed::TotpCode => {
            // Only where the kind of every credential considered is known.
            let considered: Vec<&str> = match credential {
                Some(c) if names.contains(&c) => vec![c],
                Some(_) => return asked(),
                None => names,
            };
            let kinds: Option<Vec<&str>> = considered
                .iter()
                .map(|c| info.kinds.get(*c).map(String::as_str))
                .collect();
            let Some(kinds) = kinds else {
                return asked();
            };
            let totps: Vec<&str> = considered
                .iter()
                .zip(kinds)
                .filter(|(_, k)| *k == "totp")
                .map(|(c, _)| *c)
                .collect();
            match (totps.as_slice(), credential) {
                ([one], _) => Ok(Some((*one).to_owned())),
                ([], Some(c)) => anyhow::bail!(
                    "task `{task}` has no totp credential named `{c}` (its kind is `{}`); nothing was fetched",
                    info.kinds.get(c).map(String::as_str).unwrap_or("?")
                ),
                ([], None) => {
                    anyhow::bail!("task `{task}` has no totp credential; nothing was fetched")
                }
                (many, _) => anyhow::bail!(
                    "task `{task}` has several totp credentials ({}); choose one with --credential",
                    many.join(", ")
                ),
            }
        }
    }
}

pub(crate) fn get(g: &GlobalArgs, a: &GetArgs) -> anyhow::Result<ExitCode> {
    let fetched = fetch_chosen_within(
        &socket_path(g),
        &a.task,
        &a.wait,
        "nothing was fetched",
        |client, err| {
            if a.json {
                // Every credential of the task is printed.
                return Ok(a.credential.clone());
            }
            let what = if a.field.is_some() { "--field" } else { "get" };
            credential_to_fetch(
                client,
                &a.task,
                a.credential.as_deref(),
                Printed::One {
                    what,
                    field: a.field.as_deref(),
                },
                err,
            )
        },
    )?;
    print_warnings(&fetched);
    use super::output::stdout_error;
    let mut out = std::io::stdout().lock();
    // JSON for a program and a person alike: a character a terminal would hide or reorder is
    // written as its JSON escape ([`super::output::ShownJson`]); `--field` writes the value's
    // bytes as they are, and nothing else unless stdout is a terminal (a line end then).
    if a.json {
        super::output::write_shown_json(&mut out, &fetched).map_err(stdout_error)?;
        return Ok(ExitCode::SUCCESS);
    }
    let cred = only_one(&fetched, if a.field.is_some() { "--field" } else { "get" })?;
    match &a.field {
        Some(field) => {
            let value: &str = if let Some(v) = cred.fields.get(field) {
                v
            } else if let Some(v) = cred.secrets.get(field) {
                v.expose()
            } else if let (Some(t), true) = (&cred.totp, is_totp_alias(field)) {
                t.code.expose()
            } else {
                let mut known: Vec<&str> = cred
                    .fields
                    .keys()
                    .chain(cred.secrets.keys())
                    .map(String::as_str)
                    .collect();
                if cred.totp.is_some() {
                    known.push("totp");
                }
                return Err(no_field(&cred.name, field, &known));
            };
            // The value channel is byte-exact: `get --field tok > file` holds the value and
            // nothing else (a newline after it went into `curl --data-binary @file`:
            // twenty-seventh pass). A terminal gets a line end, so the prompt starts a line.
            out.write_all(value.as_bytes()).map_err(stdout_error)?;
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                out.write_all(b"\n").map_err(stdout_error)?;
            }
        }
        None => super::output::write_shown_json(&mut out, cred).map_err(stdout_error)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// The names `get --field` takes for a TOTP credential's current code.
fn is_totp_alias(field: &str) -> bool {
    matches!(field, "totp" | "totp_code" | "code")
}

/// `get --field`: `cred` hands out no field `field`; `known` are those it does.
fn no_field(cred: &str, field: &str, known: &[&str]) -> anyhow::Error {
    anyhow::anyhow!(
        "credential `{cred}` has no field `{field}`; {}",
        if known.is_empty() {
            format!("it has no fields or secrets yet: set them with `scopevault cred set {cred} --field KEY=VALUE --secret KEY`")
        } else {
            format!("it has: {}", known.join(", "))
        }
    )
}

pub(crate) fn totp(g: &GlobalArgs, a: &TotpArgs) -> anyhow::Result<ExitCode> {
    let fetched = fetch_chosen_within(
        &socket_path(g),
        &a.task,
        &a.wait,
        "nothing was fetched",
        |client, err| {
            credential_to_fetch(
                client,
                &a.task,
                a.credential.as_deref(),
                Printed::TotpCode,
                err,
            )
        },
    )?;
    print_warnings(&fetched);
    let totps: Vec<&FetchedCredential> = fetched
        .credentials
        .iter()
        .filter(|c| c.totp.is_some())
        .collect();
    let cred = match totps.as_slice() {
        [one] => *one,
        [] => anyhow::bail!(
            "task `{}` has no totp credential{}",
            a.task,
            a.credential
                .as_deref()
                .map(|c| format!(" named `{c}`"))
                .unwrap_or_default()
        ),
        _ => anyhow::bail!(
            "task `{}` has several totp credentials; choose one with --credential",
            a.task
        ),
    };
    let t = cred.totp.as_ref().expect("filtered on totp");
    outln!("{}", t.code.expose())?;
    errln!(
        "scopevault: {} code, valid for {} more seconds",
        escape_for_terminal(&cred.name),
        t.seconds_left
    );
    Ok(ExitCode::SUCCESS)
}

/// `SCOPEVAULT_<CREDENTIAL>_<FIELD>`, upper-cased, every character outside `[A-Z0-9]` as `_`.
pub(crate) fn env_name(credential: &str, field: &str) -> String {
    crate::policy::env_var_name(credential, field)
}

/// Why `exec` will not hand `credential`'s `field` over in `var`, one of scopevault's own
/// variables ([`crate::policy::RESERVED_ENV_VARS`]): names, never a value.
fn reserved(credential: &str, field: &str, var: &str) -> String {
    format!(
        "{} would hold field `{}` of credential `{}`, but {var} is a variable scopevault itself reads or sets, and would be replaced in the command's environment: rename the credential or the field, or use --files (one file per credential and field)",
        var,
        escape_for_terminal(field),
        escape_for_terminal(credential),
    )
}

/// `exec` without `--files`, before the fetch: two fields of the task's credentials (of
/// `credential` alone when given) that give one variable, or a field whose variable would be
/// one of scopevault's own
/// ([`crate::policy::RESERVED_ENV_VARS`], e.g. credential `identity`, field `file` as
/// `SCOPEVAULT_IDENTITY_FILE`) is refused with nothing fetched, so nothing handed out or
/// audited (twenty-third pass). The field names come from `tasks` (names, never values);
/// where it does not list the task or names no fields (an older daemon), the check after the
/// fetch still refuses.
fn refuse_reserved_variables(
    client: &mut Client,
    task: &str,
    credential: Option<&str>,
    err: &dyn Fn(ClientError) -> anyhow::Error,
) -> anyhow::Result<()> {
    let info = match client.task_info_or_all(task) {
        Ok(t) => t.tasks.into_iter().find(|t| t.name == task),
        Err(e) if e.code() == Some(crate::protocol::ErrorCode::Locked) => None,
        Err(e) => return Err(err(e)),
    };
    let Some(info) = info else {
        return Ok(());
    };
    // Two fields that give one variable are refused here too, from their names: after the
    // fetch they were refused only once every credential had been handed out and audited.
    let mut named: std::collections::BTreeMap<String, String> = Default::default();
    for c in &info.credentials {
        if credential.is_some_and(|want| want != c) {
            continue;
        }
        let totp = info.kinds.get(c).is_some_and(|k| k == "totp");
        let generated: &[&str] = if totp {
            &["totp_code", "totp_seconds_left"]
        } else {
            &[]
        };
        let stored = info.fields.get(c).into_iter().flatten().map(String::as_str);
        for field in stored.chain(generated.iter().copied()) {
            let var = env_name(c, field);
            if crate::policy::is_reserved_env_var(&var) {
                anyhow::bail!(
                    "{}; nothing was fetched and the command was not run",
                    reserved(c, field, &var)
                );
            }
            let what = escape_for_terminal(&format!("{c}.{field}"));
            if let Some(other) = named.insert(var.clone(), what.clone()) {
                anyhow::bail!(
                    "{var} would hold both {other} and {what}: rename one of them, or use --files (one file per credential and field); nothing was fetched and the command was not run"
                );
            }
        }
    }
    Ok(())
}

/// The signals `exec` forwards to its command, never dying of one (docs/operations.md,
/// `exec`): each would end `exec` by default, its command left running, unscrubbed.
const FORWARDED_SIGNALS: [i32; 7] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
    signal_hook::consts::SIGUSR1,
    signal_hook::consts::SIGUSR2,
    signal_hook::consts::SIGALRM,
];

/// Of [`FORWARDED_SIGNALS`], those that ask the command to stop: SIGCONT follows each, and
/// once one has come `exec` waits at most [`DRAIN_AFTER_STOP`] for the command's output after
/// the command has exited.
const STOPPING_SIGNALS: [i32; 4] = [
    signal_hook::consts::SIGINT,
    signal_hook::consts::SIGTERM,
    signal_hook::consts::SIGHUP,
    signal_hook::consts::SIGQUIT,
];

/// How long `exec` still passes on output once its command has exited after a stopping
/// signal: a process the command left behind may hold the output open for good.
const DRAIN_AFTER_STOP: std::time::Duration = std::time::Duration::from_secs(2);

pub(crate) fn exec(g: &GlobalArgs, a: &ExecArgs) -> anyhow::Result<ExitCode> {
    use std::process::{Command, Stdio};
    // Given SIGCHLD ignored, the kernel would reap the command itself: no exit code, no scrub.
    crate::sys::take_sigchld_default();
    // Given blocked, the signals exec forwards would never come (its command gets the mask
    // exec was given back: `start_with_given_signal_dispositions`).
    crate::sys::unblock_signals(&FORWARDED_SIGNALS);
    // Not dumpable since the dispatch (`cli::run`), before any secret is in memory.
    let (program, args) = a
        .command
        .split_first()
        .context("give the command to run after `--`")?;
    if !super::exec::command_found(program) {
        return Err(anyhow::Error::new(super::Exit {
            code: EXIT_NOT_FOUND,
            message: format!(
                "cannot run {}: no such command (nothing was fetched)",
                crate::text::escape_for_terminal(&program.to_string_lossy())
            ),
        }));
    }
    // What exec opens from the fetch until the command ends is held before the fetch, and
    // one more for the connection that fetches (given back to it): a hand-out is audited
    // whether the command runs or not, so an open-files limit too low for the rest must stop
    // exec here, with nothing fetched (`ulimit -n 6` used to fetch, then fail to spawn).
    // What killed `exec`s of this uid left: removed by every `exec`, `--files` or not (with
    // every descriptor still free).
    super::exec::remove_leftovers();
    let needed = super::exec::descriptors_after_fetch(a.files, !a.no_mask);
    let mut reserve = super::exec::reserve_descriptors(needed + 1)?;
    // The `--files` directory is made (and its place checked) before the fetch, holding its
    // lock from the reserve: a refusal here hands nothing out. Removed (with its files) when
    // this drops, after the child has exited. Its parent is open while it is made, in the
    // connection's place, held again once the parent is closed.
    let mut dir = if a.files {
        let making = super::exec::DESCRIPTORS_TO_MAKE_THE_DIRECTORY;
        reserve.give_back(making);
        let d = super::exec::CredDir::create().map_err(|e| {
            e.context(
                "exec --files has no private directory for the credentials (nothing was fetched)",
            )
        })?;
        super::exec::reserve_more(&mut reserve, making - 1)?;
        Some(d)
    } else {
        None
    };
    reserve.give_back(1);
    let fetched = fetch_chosen_within(
        &socket_path(g),
        &a.task,
        &a.wait,
        "nothing was fetched and the command was not run",
        |client, err| {
            if !a.files {
                refuse_reserved_variables(client, &a.task, a.credential.as_deref(), err)?;
            }
            Ok(a.credential.clone())
        },
    )?;
    // How many values `--files` hands over is known only now: a memfd each where the limit
    // leaves room beside the reserve, else every entry is a file (as where memfds are not
    // available), which is said rather than failing after the hand-out.
    let memfds = a.files && reserve.room_for(super::exec::values(&fetched));
    drop(reserve);
    if let (Some(d), false) = (&mut dir, memfds) {
        d.no_memfds();
    }
    if a.files && !memfds {
        errln!(
            "scopevault: warning: the open-files limit is {} (soft RLIMIT_NOFILE): it leaves no room for a memfd for each of the {} values, so the entries under --files are mode-0600 files on the tmpfs instead of memfds; raise the limit (`ulimit -n`) to keep the values out of files",
            crate::sys::open_files_limit(),
            super::exec::values(&fetched)
        );
    }
    print_warnings(&fetched);
    if !a.no_mask {
        // Masking "a" would redact every "a": a value this short is not masked.
        for c in &fetched.credentials {
            for (k, v) in &c.secrets {
                if v.expose().len() < crate::secret::MIN_FORM {
                    errln!(
                        "scopevault: warning: {} is shorter than {} bytes: it is not masked in the command's output",
                        escape_for_terminal(&format!("{}.{k}", c.name)),
                        crate::secret::MIN_FORM
                    );
                }
            }
        }
    }

    let mut cmd = Command::new(program);
    cmd.args(args).env("SCOPEVAULT_TASK", &fetched.task);
    // The command starts with the signal dispositions exec was given (not with glibc's two
    // internal signals ignored, as `posix_spawn` leaves them).
    // The signals exec forwards included: it catches them from before the spawn.
    crate::sys::start_with_given_signal_dispositions(&mut cmd, &FORWARDED_SIGNALS);
    // The command never outlives `exec` holding the values: killed with it (`kill -9` to
    // `exec` alone, a supervisor that kills the main process only). `exec` spawns from its
    // main thread, whose end is the end of the process.
    crate::sys::terminate_with_parent(&mut cmd, rustix::process::Signal::KILL);
    if let Some(d) = &dir {
        cmd.env("SCOPEVAULT_CREDENTIALS_DIRECTORY", d.path());
    }
    // Two fields can map to one variable (`dup-a`'s `tok-token` and `dup-a-tok`'s `token`, or
    // `client-id` and `client_id`): one value would silently replace the other.
    let mut named: std::collections::BTreeMap<String, String> = Default::default();
    for c in &fetched.credentials {
        // `what` names the value in messages, never the value itself.
        let mut put = |field: &str, what: &str, value: &str| -> anyhow::Result<()> {
            match &mut dir {
                Some(d) => d.put(&c.name, field, what, value.as_bytes()),
                None => {
                    // An environment variable ends at its first NUL: the spawn would fail
                    // (126, as if the command could not run) after the hand-out.
                    if value.contains('\0') {
                        anyhow::bail!(
                            "{what} holds a NUL byte, which an environment variable cannot carry: use --files (one file per credential and field, the value whole); the command was not run"
                        );
                    }
                    let name = env_name(&c.name, field);
                    // One variable longer than the kernel takes fails the spawn the same way.
                    if name.len() + 1 + value.len() + 1 > super::exec::MAX_ARG_STRLEN {
                        anyhow::bail!(
                            "{what} is too large for an environment variable ({} bytes; the kernel takes at most {} for one): use --files (one file per credential and field, the value whole); the command was not run",
                            value.len(),
                            super::exec::MAX_ARG_STRLEN
                        );
                    }
                    // Refused before the fetch where `tasks` names the fields; an older
                    // daemon does not, and the variable is still never replaced.
                    if crate::policy::is_reserved_env_var(&name) {
                        anyhow::bail!(
                            "{}; the command was not run",
                            reserved(&c.name, field, &name)
                        );
                    }
                    if let Some(other) = named.insert(name.clone(), what.to_owned()) {
                        anyhow::bail!(
                            "{name} would hold both {other} and {what}: rename one of them, or use --files (one file per credential and field)"
                        );
                    }
                    cmd.env(name, value);
                    Ok(())
                }
            }
        };
        for (k, v) in &c.fields {
            put(k, &format!("{}.{k}", c.name), v)?;
        }
        for (k, v) in &c.secrets {
            put(k, &format!("{}.{k}", c.name), v.expose())?;
        }
        if let Some(t) = &c.totp {
            put(
                "totp_code",
                &format!("the current TOTP code of {}", c.name),
                t.code.expose(),
            )?;
            put(
                "totp_seconds_left",
                &format!("the seconds left of {}'s TOTP code", c.name),
                &t.seconds_left.to_string(),
            )?;
        }
    }
    let patterns = std::sync::Arc::new(crate::secret::Patterns::new(&super::exec::targets(
        &fetched,
    )));
    drop(fetched);
    // The arguments and the whole environment against the kernel's limit, before the spawn:
    // `E2BIG` from the spawn was exit 126, as if the command could not run.
    {
        // exec's own environment, with what `cmd` sets and removes (borrowed: no copy of a
        // value is made).
        let own: Vec<(std::ffi::OsString, std::ffi::OsString)> = std::env::vars_os().collect();
        let mut env: std::collections::BTreeMap<&std::ffi::OsStr, &std::ffi::OsStr> = own
            .iter()
            .map(|(k, v)| (k.as_os_str(), v.as_os_str()))
            .collect();
        for (k, v) in cmd.get_envs() {
            match v {
                Some(v) => env.insert(k, v),
                None => env.remove(k),
            };
        }
        let size = super::exec::exec_args_size(program, args.iter().map(|a| a.as_os_str()), env);
        let limit = super::exec::exec_args_limit();
        if size > limit {
            let hint = if a.files {
                "shorten the command's arguments or exec's own environment"
            } else {
                "use --files (one file per credential and field, out of the environment), or raise the stack limit (`ulimit -s`)"
            };
            return Err(anyhow::Error::new(super::Exit {
                code: super::EXIT_USAGE,
                message: format!(
                    "the command's arguments and environment with the values would take {size} bytes, more than the {limit} the kernel takes (a quarter of the stack limit, `ulimit -s`, at least 128 KiB): {hint}; the command was not run"
                ),
            }));
        }
    }
    let masking = !a.no_mask && !patterns.is_empty();
    // stdout and stderr that are one file (`>LOG 2>&1`) get one pipe: two would reorder them.
    let mut one_pipe = None;
    if masking && super::exec::stdout_is_stderr() {
        let (r, w) = std::io::pipe().context("cannot make a pipe for the command's output")?;
        let w2 = w
            .try_clone()
            .context("cannot make a pipe for the command's output")?;
        cmd.stdout(w).stderr(w2);
        one_pipe = Some(r);
    } else if masking {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    }
    // The command shares `exec`'s process group, always: a supervisor's SIGKILL to the group
    // (`timeout -s KILL`, `timeout -k`, a runner ending a job) must end the command with
    // `exec`, never leave it running with the values. A signal sent to the whole group
    // reaches the command directly and once more forwarded by `exec`, the lesser evil
    // (docs/operations.md, `exec`).
    // The signals `exec` forwards are handled from before the spawn: one that comes while the
    // command starts waits for the forwarder, never ends `exec` with its command running
    // (unscrubbed, its `--files` directory left). std empties the signal mask and puts every
    // caught signal back at its default in the child (`execve`).
    let mut signals = signal_hook::iterator::SignalsInfo::<
        signal_hook::iterator::exfiltrator::WithOrigin,
    >::new(FORWARDED_SIGNALS)
    .context("cannot install signal handlers")?;
    // As env(1), timeout(1) and the shells do: 127 when the command is not found, 126 when
    // it was found and cannot be run, so that a runner tells "not installed" from a failed check.
    let mut child = cmd.spawn().map_err(|e| {
        let code = if e.kind() == std::io::ErrorKind::NotFound {
            EXIT_NOT_FOUND
        } else {
            EXIT_CANNOT_RUN
        };
        anyhow::Error::new(super::Exit {
            code,
            message: format!(
                "cannot run {}: {e}",
                crate::text::escape_for_terminal(&program.to_string_lossy())
            ),
        })
    })?;
    // Its copies of the pipe's writing end closed (and of the environment, values and all).
    drop(cmd);
    let target = std::sync::Arc::new(crate::sys::ChildSignals::new(child.id()));

    // Forward each signal of FORWARDED_SIGNALS to the command (never die of one); we wait for
    // it to decide what to do. Once it has been reaped there is nobody to forward to (its pid
    // may name another process by then: the pidfd never does): a stopping signal then stops
    // the wait for output that a process it left behind still holds open, and exec goes on to
    // the scrub and exits. One received while it ran bounds that wait ([`DRAIN_AFTER_STOP`]).
    // The command shares exec's group: a Ctrl-C, Ctrl-\ or hangup the kernel sent because
    // of a terminal went to the whole foreground group, the command included: forwarding it
    // too would deliver it twice, and many runners read a second SIGINT as "quit without
    // cleaning up". After a stopping signal, SIGCONT, as timeout(1) sends: a stopped command
    // would not act on it.
    let stopping = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sig_handle = signals.handle();
    let (events, waited) = std::sync::mpsc::channel::<bool>();
    let forwarder = {
        let target = target.clone();
        let events = events.clone();
        let stopping = stopping.clone();
        std::thread::spawn(move || {
            use signal_hook::consts::{SIGCONT, SIGHUP, SIGINT, SIGQUIT};
            for origin in signals.forever() {
                let sig = origin.signal;
                let stops = STOPPING_SIGNALS.contains(&sig);
                if stops {
                    // Before the reaped check: the main thread reads it after reaping.
                    stopping.store(true, std::sync::atomic::Ordering::SeqCst);
                }
                let from_terminal =
                    matches!(origin.cause, signal_hook::low_level::siginfo::Cause::Kernel)
                        && [SIGINT, SIGQUIT, SIGHUP].contains(&sig);
                if target.is_reaped() {
                    if stops {
                        let _ = events.send(false);
                    }
                } else if from_terminal {
                    // The command got it from the terminal already.
                } else {
                    // A child gone meanwhile is not signalled (the pidfd says `ESRCH`).
                    let _ = target.send(sig);
                    if stops {
                        let _ = target.send(SIGCONT);
                    }
                }
            }
        })
    };

    let mut pumps = 0;
    // The first write of the command's output that failed (not a closed pipe), and where.
    let lost: std::sync::Arc<std::sync::Mutex<Option<(&str, std::io::Error)>>> = Default::default();
    if masking {
        type Copy = (
            Box<dyn std::io::Read + Send>,
            Box<dyn Write + Send>,
            std::sync::Arc<crate::secret::Patterns>,
            &'static str,
        );
        let copies: Vec<Copy> = match one_pipe.take() {
            Some(both) => vec![(
                Box::new(both),
                Box::new(std::io::stdout()),
                patterns.clone(),
                "standard output and standard error",
            )],
            None => vec![
                (
                    Box::new(child.stdout.take().expect("piped")),
                    Box::new(std::io::stdout()),
                    patterns.clone(),
                    "standard output",
                ),
                (
                    Box::new(child.stderr.take().expect("piped")),
                    Box::new(std::io::stderr()),
                    patterns.clone(),
                    "standard error",
                ),
            ],
        };
        for (from, to, m, name) in copies {
            let done = events.clone();
            let lost = lost.clone();
            std::thread::spawn(move || {
                if let Some(e) = pump(from, to, m) {
                    let mut first = lost.lock().unwrap_or_else(|p| p.into_inner());
                    first.get_or_insert((name, e));
                }
                let _ = done.send(true);
            });
            pumps += 1;
        }
    }
    let status = child.wait().context("waiting for the command")?;
    target.reaped();
    // The pumps end at the end of the child's output; a stopping signal from now on stops the
    // wait, and one received before bounds it: a process the command left behind holding its
    // output must not keep `exec` from its scrub until a supervisor's SIGKILL.
    let drain_until = stopping
        .load(std::sync::atomic::Ordering::SeqCst)
        .then(|| std::time::Instant::now() + DRAIN_AFTER_STOP);
    while pumps > 0 {
        let event = match drain_until {
            Some(until) => waited
                .recv_timeout(until.saturating_duration_since(std::time::Instant::now()))
                .ok(),
            None => waited.recv().ok(),
        };
        match event {
            Some(true) => pumps -= 1,
            Some(false) | None => break,
        }
    }
    // A process the command left behind still held its output (the bounded drain ran out, or
    // a signal stopped the wait): what it writes from now on is neither masked nor scrubbed.
    if pumps > 0 {
        errln!(
            "scopevault: warning: a process the command left behind still held its output when exec stopped waiting for it: what it prints or writes from now on is neither masked nor scrubbed"
        );
    }
    drop(dir);
    // The command's artefacts: scrubbed before exec returns (the signal handlers are still
    // installed, so a Ctrl-C here does not stop exec half-way through a file; each file is
    // atomic anyway).
    if !a.artifacts.is_empty() {
        super::exec::scrub_artifacts(
            patterns,
            &a.artifacts,
            a.artifacts_binary,
            &socket_path(g),
            &a.task,
        );
    }
    sig_handle.close();
    let _ = forwarder.join();
    use std::os::unix::process::ExitStatusExt;
    // The command's exit code, unchanged (a scrub failure is reported on stderr only). A
    // command that died of a signal: `exec` dies of it too, cleaned up and scrubbed, as env(1),
    // sudo and timeout(1) do, so that a shell stops a loop of checks on Ctrl-C (`$?` is
    // 128+N either way); not of a signal that dumps core (`exec` is not dumpable): 128+N.
    let code = match (status.code(), status.signal()) {
        (Some(c), _) => c,
        (None, Some(sig)) => {
            if !crate::sys::CORE_SIGNALS.contains(&sig) {
                crate::sys::die_of_signal(sig);
            }
            128 + sig
        }
        _ => 1,
    };
    // The command's output could not all be written: exit 2, as any command whose output
    // cannot be written, its own code in the message (README, "Exit codes").
    let lost = lost.lock().unwrap_or_else(|p| p.into_inner()).take();
    if let Some((name, e)) = lost {
        let ended = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exited with code {c}"),
            (None, Some(sig)) => format!("was killed by signal {sig} (exit code {code})"),
            _ => format!("ended (exit code {code})"),
        };
        return Err(anyhow::Error::new(super::Exit {
            code: super::EXIT_USAGE,
            message: format!(
                "cannot write the command's {name}: {e}; what it wrote from then on was read and dropped, and the command {ended}"
            ),
        }));
    }
    Ok(ExitCode::from(u8::try_from(code).unwrap_or(1)))
}

/// Copy a child's pipe to our stream, masking every form of every secret. Returns the error
/// of a write that failed, unless the stream was a pipe whose reader went away (the end of
/// output, as for every command: the copy stops, and the command meets the closed pipe at its
/// next write as it would unmasked). After any other failed write (`>/dev/full`, a full disk)
/// the rest of the child's output is read and dropped, so that the command runs to its end
/// and its exit code is its own (twenty-fifth pass: the copy stopped, and the command was
/// killed by SIGPIPE with nothing said).
fn pump(
    mut from: impl std::io::Read,
    mut to: impl Write,
    patterns: std::sync::Arc<crate::secret::Patterns>,
) -> Option<std::io::Error> {
    let mut masker = crate::secret::Masker::with_patterns(patterns);
    let mut buf = Zeroizing::new(vec![0u8; 8192]);
    let mut failed = None;
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(_) if failed.is_some() => {}
            Ok(n) => {
                let out = masker.feed(&buf[..n]);
                if let Err(e) = to.write_all(&out).and_then(|()| to.flush()) {
                    if e.kind() == std::io::ErrorKind::BrokenPipe {
                        return None;
                    }
                    failed = Some(e);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if failed.is_some() {
        return failed;
    }
    match to.write_all(&masker.finish()).and_then(|()| to.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Some(e),
        _ => None,
    }
}
