//! The daemon's start and stop (`scopevault serve` after its options are checked): harden the
//! process, judge the socket (a live daemon there, a socket directory refused: no audit record
//! is written by a start refused there), open the audit log, unlock if an unattended source is
//! given, take the socket (bound here or handed over by systemd), announce readiness, then run the accept loop until SIGTERM
//! or SIGINT; SIGHUP reloads the vault; SIGUSR1 reopens a rotated audit log. The order matters:
//! nothing secret exists before the hardening, and the socket answers only once the daemon is
//! fully up.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1};

use super::authz::AccessConfig;
use super::handler::{Handler, OwnSource};
use super::server::{Limits, Listener, Server};
use super::state::{vault_error, LoadRules, LoadedVault, VaultView};
use crate::audit::{AuditLog, OpenFlags};
use crate::secret::SecretString;
use crate::vault::{OpenOptions, Unlock, Vault, VaultError};

/// The signals the daemon handles: SIGTERM and SIGINT stop it, SIGHUP reloads the vault,
/// SIGUSR1 reopens the audit log.
pub const HANDLED_SIGNALS: [i32; 4] = [SIGTERM, SIGINT, SIGHUP, SIGUSR1];

/// Reads the passphrase given for the start (`--passphrase-file`, `--passphrase-fd`), if any.
/// Called after the hardening, so the passphrase never exists in an unhardened process.
pub type PassphraseSource = Box<dyn FnOnce() -> anyhow::Result<Option<SecretString>>>;

/// The unattended unlock sources tried at start, in this order.
pub struct StartUnlock {
    /// `--identity-file` or `SCOPEVAULT_IDENTITY_FILE`.
    pub identity_file: Option<PathBuf>,
    /// `identity_file` came from `SCOPEVAULT_IDENTITY_FILE`: tried after a passphrase given
    /// on the command line, before `$CREDENTIALS_DIRECTORY/scopevault-identity`.
    pub identity_from_env: bool,
    /// The passphrase given explicitly.
    pub passphrase: PassphraseSource,
    /// Try an enrolled keyring slot (false with `--no-keyring`).
    pub keyring: bool,
}

/// Everything the daemon needs, checked by the caller (`cli/serve.rs`).
pub struct Config {
    /// Connection limits and timeouts.
    pub limits: Limits,
    /// Who is an admin and who schedules.
    pub access: AccessConfig,
    /// The socket to bind when systemd hands none over.
    pub socket_path: PathBuf,
    /// Whether the socket path was chosen (`--socket`): a refused default gets a hint.
    pub socket_given: bool,
    /// The group that may connect (`--socket-group`).
    pub socket_gid: Option<u32>,
    /// The audit log.
    pub audit_path: PathBuf,
    /// Make every batch durable before its answers (off only with `--no-audit-sync`, which
    /// only a benchmark build, cargo feature `bench-no-audit-sync`, has).
    pub audit_sync: bool,
    /// `--new-audit-key`, `--accept-audit-gap`, and the anchor.
    pub audit_flags: OpenFlags,
    /// Bytes kept free on the audit log's file system (`--audit-reserve-mib`).
    pub audit_reserve: u64,
    /// Each non-admin uid's budget of audited hand-outs: bytes a second and bytes at once
    /// (`--audit-rate-kib`, `--audit-burst-kib`).
    pub audit_budget: (u64, u64),
    /// The vault file.
    pub vault_path: PathBuf,
    /// How the vault path was chosen, said when no vault is there at the first load.
    pub vault_path_source: VaultPathSource,
    /// How the vault is opened (rollback policy).
    pub open_options: OpenOptions,
    /// The unlock at start.
    pub unlock: StartUnlock,
}

/// How the daemon's vault path was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaultPathSource {
    /// `--vault`.
    Flag,
    /// `SCOPEVAULT_VAULT`.
    Env,
    /// Neither: the default path ([`crate::paths::vault`]).
    Default,
}

impl VaultPathSource {
    fn describe(self) -> &'static str {
        match self {
            VaultPathSource::Flag => "the path given with --vault",
            VaultPathSource::Env => "the path in SCOPEVAULT_VAULT",
            VaultPathSource::Default => {
                "the default path: neither --vault nor SCOPEVAULT_VAULT was given"
            }
        }
    }

    /// `e` as the daemon's first load says it: no file at the path is no vault to serve, and
    /// how the path was chosen, not the text for a file gone from under a running daemon,
    /// which is what it said (twentieth pass, found by attacking the daemon as a shared
    /// service).
    fn at_first_load(self, e: VaultError) -> VaultError {
        match e {
            VaultError::NoFileAtPath(path) => VaultError::NoVaultToServe {
                path,
                chosen: self.describe().into(),
            },
            e => e,
        }
    }
}

/// Run the daemon until it is stopped (SIGTERM, SIGINT), or until one of its threads fails
/// (an error: docs/operations.md, "When a thread of the daemon fails").
///
/// Its log lines go through [`crate::diag!`], written by a thread of their own: a stderr that
/// fails (a closed terminal, a log reader gone, a full disk) or is stuck never stops or holds
/// the daemon; the lines are lost then (docs/operations.md, "The daemon's log").
pub fn run(c: Config) -> anyhow::Result<()> {
    crate::diag::start_writer();
    // What it runs, before anything can be installed over it: `health` says when the file at
    // its path is another since (an upgrade not followed by a restart).
    crate::sys::note_own_exe();
    // A panic's message goes to the log like every other line (the default hook writes to
    // stderr directly, and would wait for a stuck one); the thread's guard then stops the
    // daemon ([`Shutdown::guard`](super::server::Shutdown::guard)).
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        crate::diag!(
            "scopevault: error: thread '{}' {info}",
            thread.name().unwrap_or("main")
        );
    }));
    let ran = serve(c);
    // The last lines (`stopped`, the error) reach the log before the process exits, unless
    // it is stuck.
    crate::diag::flush(Duration::from_secs(2));
    ran
}

fn serve(c: Config) -> anyhow::Result<()> {
    // Hardening first, so nothing secret exists before it.
    let report = crate::sys::harden_process();
    if !report.dumpable_off || !report.core_limit_zero {
        crate::diag!("scopevault: warning: could not turn core dumps off (dumpable off: {}, core limit 0: {})", report.dumpable_off, report.core_limit_zero);
    }
    if let Err(why) = &report.mlockall {
        // `why` is the whole advice (what failed, the risk, the fix): say it once.
        crate::diag!("scopevault: warning: {why}");
    }
    // Locked under a finite limit, every later allocation counts against it, an unlock's key
    // derivation too: said at start, not first learnt from a refused `unlock`.
    if let Some(limit) = crate::sys::locked_memory_limit() {
        let kdf = largest_passphrase_kdf_kib(&c.vault_path);
        crate::diag!(
            "scopevault: warning: {}",
            crate::sys::describe_memory_lock_limit(limit, kdf)
        );
    }
    // One descriptor per connection: make room for the connection cap, or say what it is.
    let files = crate::sys::raise_open_files_limit();
    let needed = (c.limits.max_connections + super::server::ADMIN_RESERVE + 64) as u64;
    if files < needed {
        crate::diag!("scopevault: warning: the open-files limit is {files} (hard limit), below what {} connections need ({needed}); connections beyond it are refused until others close. Raise LimitNOFILE= (systemd) or `ulimit -Hn`", c.limits.max_connections);
    }
    // The socket is judged before the audit log is opened: a start the socket step refuses
    // (a live daemon there, a socket directory refused) writes no record (twenty-fifth pass).
    let activated = activated_listener(&c)?;
    if activated.is_none() {
        super::server::precheck_socket(&c.socket_path, c.socket_gid)
            .map_err(|e| socket_error(e, c.socket_given))?;
    }
    if !c.audit_sync {
        crate::diag!("scopevault: warning: audit sync is OFF (serve --no-audit-sync, a benchmark build with the cargo feature bench-no-audit-sync): secrets are handed out before their audit records are durable, and a crash can lose the record of a hand-out. Never run this build for real: use a release build, which has no such option");
    }
    let audit = AuditLog::open_with(&c.audit_path, c.audit_sync, &c.audit_flags)?;
    for note in audit.notes_at_open() {
        crate::diag!(
            "scopevault: audit log {}: {note}",
            crate::text::shown(&c.audit_path)
        );
    }
    warn_clock(&audit, &c.audit_path);
    let mut handler = Handler::new(c.access, audit);
    handler.set_audit_reserve(c.audit_reserve);
    handler.set_audit_budget(c.audit_budget.0, c.audit_budget.1);
    handler.set_allow_rollback(c.open_options.allow_rollback);
    let (vault_path, opts, source) = (c.vault_path, c.open_options, c.vault_path_source);
    handler.set_vault_path(vault_path.clone());
    {
        let (path, opts) = (vault_path.clone(), opts.clone());
        handler.set_opener(Box::new(move |unlock: &Unlock, rules: &LoadRules| {
            let opts = rules.onto(&opts);
            // No vault id yet: nothing was loaded in this run (a daemon started locked).
            let first = rules.vault_id.is_none();
            let v = Vault::open(&path, unlock, &opts)
                .map_err(|e| if first { source.at_first_load(e) } else { e })
                .map_err(|e| vault_error(&e))?;
            warn_rollback(&v);
            Ok(Box::new(LoadedVault::new(v, opts)) as Box<dyn VaultView>)
        }));
    }
    let (unlocked_by, own, none) = unlock_at_start(c.unlock, &vault_path, &opts, source, &handler)?;
    handler.set_own_sources(own, none);
    // The socket comes last: once it answers, the daemon is fully up (unlocked if it can be).
    let listener = match activated {
        Some(l) => Listener::inherited(l),
        None => Listener::bind_with_group(&c.socket_path, c.socket_gid)
            .map_err(|e| socket_error(e, c.socket_given))?,
    };
    if let (Some(gid), Some(path)) = (c.socket_gid, listener.path()) {
        if let Some(blocked) = untraversable_for_group(path, gid) {
            crate::diag!(
                "scopevault: warning: --socket-group {gid}: its members cannot reach the socket: {} lets neither that group nor others through (it needs g+x with that group, or o+x); choose a socket under a directory they may traverse with --socket PATH",
                crate::text::shown(&blocked)
            );
        }
    }
    let shown_path = listener
        .path()
        .map(crate::text::shown)
        .unwrap_or_else(|| "the socket from systemd".into());
    let handler = Arc::new(handler);
    let server = Server::new(listener, c.limits, handler.clone())
        .context("cannot create the accept loop's wake-up pair")?;
    let shutdown = server.shutdown_handle();

    let mut signals = signal_hook::iterator::Signals::new(HANDLED_SIGNALS)
        .context("cannot install signal handlers")?;
    let signal_handle = signals.handle();
    let on_hup = handler.clone();
    let signal_guard = shutdown.clone();
    let signal_thread = std::thread::spawn(move || {
        signal_guard.guard(|| {
            for sig in signals.forever() {
                match sig {
                    SIGHUP => match on_hup.reload_from_signal() {
                        Ok(s) => crate::diag!(
                            "scopevault: SIGHUP: reloaded the vault (generation {})",
                            s.generation.unwrap_or(0)
                        ),
                        Err(e) => crate::diag!(
                            "scopevault: SIGHUP: reload failed: {}",
                            crate::text::escape_for_terminal(&e.to_string())
                        ),
                    },
                    SIGUSR1 => match on_hup.reopen_audit_from_signal() {
                        Ok(Some(seq)) => crate::diag!(
                            "scopevault: SIGUSR1: the audit log was moved away; continuing in a new file at its path (seq {seq}, audit.rotate)"
                        ),
                        Ok(None) => crate::diag!(
                            "scopevault: SIGUSR1: the audit log is still at its path; nothing to reopen"
                        ),
                        Err(e) => crate::diag!(
                            "scopevault: SIGUSR1: cannot reopen the audit log: {}",
                            crate::text::escape_for_terminal(&e.to_string())
                        ),
                    },
                    _ => {
                        shutdown.trigger();
                        break;
                    }
                }
            }
        });
    });

    match &unlocked_by {
        Some(how) => crate::diag!("scopevault: listening on {shown_path} (unlocked by {how})"),
        // Naming the vault and socket this daemon was given: `scopevault unlock` alone, copied
        // from the log of a daemon on another socket, asked the default one (twenty-eighth pass).
        None => crate::diag!(
            "scopevault: listening on {shown_path} (locked: an admin runs `{}`)",
            crate::advice::daemon_command("unlock")
        ),
    }
    // Counted refusals become `denials` records about once a second (docs/audit.md, "Growth"),
    // and a change of /etc/passwd or /etc/group has `--admin-group`, `--scheduler` and every
    // user and group name of the policy resolved again, as a reload does, and then every
    // connection's rights decided again at its next request (docs/protocol.md, "Who may do
    // what").
    let mut databases = crate::accounts::DatabaseWatch::system();
    let ticker_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let (h, stop) = (handler.clone(), ticker_stop.clone());
        let guard = server.shutdown_handle();
        std::thread::spawn(move || {
            guard.guard(|| {
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    std::thread::sleep(Duration::from_millis(250));
                    if databases.poll() {
                        h.names_changed();
                    }
                    h.flush_denials(false);
                    if let Err(e) = h.anchor_audit() {
                        crate::diag!(
                            "scopevault: warning: cannot write the audit anchor: {}",
                            crate::text::escape_for_terminal(&e.to_string())
                        );
                    }
                }
            });
        })
    };
    super::notify::send("READY=1\nSTATUS=listening");
    let ran = server.run().context("the accept loop failed");
    ticker_stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let _ = ticker.join();
    handler.flush_denials(true);
    if let Err(e) = handler.anchor_audit() {
        let (anchored, last) = handler.anchor_position();
        crate::diag!(
            "scopevault: error: cannot write the audit anchor at stop ({}): records {}..={last} are not anchored, and a cut of them would not be detected until the anchor is written; free the state directory and start the daemon again, which anchors them (docs/audit.md, \"The anchor\")",
            crate::text::escape_for_terminal(&e.to_string()),
            anchored + 1
        );
    } else if let Err(e) = handler.clear_audit_journal() {
        // The frames left hold nothing the log lacks: the next start writes nothing back
        // from them, and never into an empty log its anchor names records of.
        crate::diag!(
            "scopevault: warning: cannot clear the audit journal at stop ({}); its frames hold nothing the log lacks, and the next start goes on",
            crate::text::escape_for_terminal(&e.to_string())
        );
    }
    ran?;
    super::notify::send("STOPPING=1");
    signal_handle.close();
    let _ = signal_thread.join();
    crate::diag!("scopevault: stopped");
    Ok(())
}

/// Unlock at start when an unattended source is given, in this order (docs/operations.md
/// "Unlock sources"): the one given on the command line (`--identity-file`, or a passphrase
/// file or fd; at most one), then the implicit ones: `SCOPEVAULT_IDENTITY_FILE`,
/// `$CREDENTIALS_DIRECTORY/scopevault-identity` (systemd `LoadCredential[Encrypted]=`), an
/// enrolled keyring slot. The first one there is used; if it fails, the start stops, except
/// a keyring that does not answer, which leaves the daemon locked, with a warning. Any
/// identity file came first, and a passphrase given beside it was never tried, a wrong one
/// never noticed (twenty-third pass).
///
/// Returns how it unlocked, and the source the start chose, which a plain `unlock` tries
/// again ([`own_sources`]), or why there is none.
fn unlock_at_start(
    u: StartUnlock,
    path: &Path,
    opts: &OpenOptions,
    source: VaultPathSource,
    handler: &Handler,
) -> anyhow::Result<(Option<String>, Vec<OwnSource>, String)> {
    let StartUnlock {
        identity_file,
        identity_from_env,
        passphrase,
        keyring,
    } = u;
    let from_systemd = systemd_identity();
    // `--passphrase-file` / `--passphrase-fd`: read only when no identity file was given on
    // the command line (the two are a usage error together).
    let pass = match (&identity_file, identity_from_env) {
        (Some(_), false) => None,
        _ => passphrase()?,
    };
    let (own, none) = own_sources(
        identity_file.as_deref(),
        identity_from_env,
        pass.is_some(),
        from_systemd.as_deref(),
        keyring,
    );
    let how = unlock_with_chosen(
        ChosenAtStart {
            identity_file,
            identity_from_env,
            pass,
            from_systemd,
            keyring,
        },
        path,
        opts,
        source,
        handler,
    )?;
    Ok((how, own, none))
}

/// What [`unlock_at_start`] found: the sources, the passphrase read.
struct ChosenAtStart {
    identity_file: Option<PathBuf>,
    identity_from_env: bool,
    pass: Option<SecretString>,
    from_systemd: Option<PathBuf>,
    keyring: bool,
}

fn unlock_with_chosen(
    u: ChosenAtStart,
    path: &Path,
    opts: &OpenOptions,
    source: VaultPathSource,
    handler: &Handler,
) -> anyhow::Result<Option<String>> {
    // The run's first load: no vault at the path is said as such, not as a failure of the
    // unlock source.
    let open = |unlock: &Unlock, failed: &dyn Fn() -> String| -> anyhow::Result<Vault> {
        match Vault::open(path, unlock, opts).map_err(|e| source.at_first_load(e)) {
            Ok(v) => Ok(v),
            Err(e @ VaultError::NoVaultToServe { .. }) => Err(e.into()),
            Err(e) => Err(anyhow::Error::new(e).context(failed())),
        }
    };
    let from_systemd = u.from_systemd;
    let with_identity = |id: &Path| -> anyhow::Result<Option<String>> {
        let v = open(&Unlock::OwnIdentityFile(id.to_path_buf()), &|| {
            format!("cannot unlock the vault with {}", id.display())
        })?;
        load(handler, v, opts, "identity file")?;
        Ok(Some(format!("identity file {}", crate::text::shown(id))))
    };
    if let (Some(id), false) = (&u.identity_file, u.identity_from_env) {
        return with_identity(id);
    }
    // `--passphrase-file` / `--passphrase-fd`: given explicitly, so a failure stops the start
    // (issue 15.12: it used to be accepted and ignored).
    if let Some(pass) = u.pass {
        let v = open(&Unlock::Passphrase(pass), &|| {
            "cannot unlock the vault with the passphrase given".into()
        })?;
        load(handler, v, opts, "passphrase")?;
        return Ok(Some("the passphrase given".into()));
    }
    if let Some(id) = u.identity_file.as_ref().or(from_systemd.as_ref()) {
        return with_identity(id);
    }
    if u.keyring && path.exists() && crate::vault::has_keyring_slot(path)? {
        match Vault::open(path, &Unlock::Keyring, opts).map_err(|e| source.at_first_load(e)) {
            Ok(v) => {
                load(handler, v, opts, "keyring")?;
                return Ok(Some("the keyring slot".into()));
            }
            Err(e) if e.is_refusal() => return Err(e.into()),
            Err(e) => {
                crate::diag!(
                    "scopevault: warning: keyring unlock failed ({}); starting locked",
                    crate::text::escape_for_terminal(&e.to_string())
                )
            }
        }
    }
    Ok(None)
}

/// `$CREDENTIALS_DIRECTORY/scopevault-identity` (systemd `LoadCredential[Encrypted]=`), when
/// it is there.
fn systemd_identity() -> Option<PathBuf> {
    std::env::var_os("CREDENTIALS_DIRECTORY")
        .map(|d| PathBuf::from(d).join("scopevault-identity"))
        .filter(|p| p.exists())
}

/// The unattended source an `unlock` with no key tries again after a `lock`
/// ([`Handler::set_own_sources`]): the one the start chose, by the start's precedence
/// (docs/operations.md, "Unlock sources"): `--identity-file`; else, with a passphrase given
/// on the command line (`--passphrase-file`/`-fd`), none: it was read once and zeroed, never
/// kept, and it shadows the others; else `SCOPEVAULT_IDENTITY_FILE`, else the systemd
/// credential, else an enrolled keyring slot unless `--no-keyring`. With none, why. A daemon
/// started with `--passphrase-file` and `SCOPEVAULT_IDENTITY_FILE` set unlocked, at a plain
/// `unlock`, with the identity file its start never used (twenty-fourth pass, found by its
/// attacker of this pass's fixes).
fn own_sources(
    identity_file: Option<&Path>,
    from_env: bool,
    passphrase_given: bool,
    from_systemd: Option<&Path>,
    keyring: bool,
) -> (Vec<OwnSource>, String) {
    let file = |id: &Path| OwnSource {
        name: format!("identity file {}", crate::text::shown(id)),
        unlock: Unlock::OwnIdentityFile(id.to_path_buf()),
        kind: "daemon's own identity file",
    };
    let none = |why: &str| (Vec::new(), why.to_owned());
    match identity_file {
        Some(id) if !from_env => return (vec![file(id)], String::new()),
        _ if passphrase_given => {
            return none("it was unlocked at its start by the passphrase given on its command line, which it does not keep, and which shadows its other sources")
        }
        Some(id) => return (vec![file(id)], String::new()),
        None => {}
    }
    if let Some(id) = from_systemd {
        return (
            vec![OwnSource {
                name: format!("systemd credential {}", crate::text::shown(id)),
                unlock: Unlock::OwnIdentityFile(id.to_path_buf()),
                kind: "daemon's own systemd credential",
            }],
            String::new(),
        );
    }
    if keyring {
        return (
            vec![OwnSource {
                name: "the keyring slot".to_owned(),
                unlock: Unlock::Keyring,
                kind: "daemon's own keyring slot",
            }],
            String::new(),
        );
    }
    none("it was started without an identity file, a systemd credential or, with --no-keyring, the keyring")
}

/// The most memory (KiB) a passphrase slot of the vault at `path` asks for its key
/// derivation, read from the header without unlocking (not authenticated yet: it only sizes a
/// warning); `None` when the file cannot be read or has no passphrase slot.
fn largest_passphrase_kdf_kib(path: &Path) -> Option<u64> {
    crate::vault::read_slots(path)
        .ok()?
        .iter()
        .filter_map(|s| match s {
            crate::vault::Slot::Passphrase { kdf, .. } => Some(u64::from(kdf.m_kib)),
            _ => None,
        })
        .max()
}

/// Install a vault opened at start, its generation recorded in (and checked against) the
/// audit chain.
fn load(handler: &Handler, v: Vault, opts: &OpenOptions, how: &str) -> anyhow::Result<()> {
    warn_rollback(&v);
    handler
        .load(Box::new(LoadedVault::new(v, opts.clone())), how)
        .map_err(|e| anyhow::anyhow!("{}", e.message))
}

/// A clock behind the audit log's newest record, or far past it, is said, never refused: a
/// checkpoint must still serve (twenty-fourth pass: a clock 35 days behind its log started
/// without a word, and the records it wrote then misled `lint --audit --since`).
fn warn_clock(audit: &AuditLog, path: &std::path::Path) {
    let now = time::OffsetDateTime::now_utc();
    if let Some(off) = audit
        .newest_at_open()
        .and_then(|newest| crate::audit::ClockVsLog::judge(now, newest))
    {
        crate::diag!(
            "scopevault: warning: audit log {}: {off}",
            crate::text::shown(path)
        );
    }
}

/// Say on stderr that `v` was accepted although older than seen (`--allow-rollback`): an
/// accepted rollback is never silent.
fn warn_rollback(v: &Vault) {
    if let Some(w) = v.rollback_warning() {
        crate::diag!(
            "scopevault: warning: {}",
            crate::text::escape_for_terminal(&w)
        );
    }
}

/// A socket step's refusal as `serve` says it.
fn socket_error(e: super::server::ServeError, socket_given: bool) -> anyhow::Error {
    // The error's text already holds its cause: print it once (not as a chain), with
    // the fix for the common case of no XDG_RUNTIME_DIR (after `su -`).
    let denied = matches!(&e, super::server::ServeError::Io { source, .. }
        if source.kind() == std::io::ErrorKind::PermissionDenied);
    let hint = if denied && !socket_given {
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
}

/// The socket systemd passed us (socket activation), if `LISTEN_PID` names this process:
/// one socket, a listening Unix stream socket, whose path and directory pass the checks of
/// the daemon's own bind ([`super::server::check_inherited`]). Also says when `--socket` or
/// `--socket-group` given to `serve` does not apply to it.
fn activated_listener(c: &Config) -> anyhow::Result<Option<UnixListener>> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        == Some(std::process::id());
    if !for_us || std::env::var_os("LISTEN_FDS").is_none() {
        return Ok(None);
    }
    // The daemon serves one socket: a second one passed was held and never accepted on, its
    // clients left waiting for their timeout, with nothing said (twenty-ninth pass, found by
    // the systemd attacker: a drop-in's `ListenStream=` adds a socket to the unit's own
    // unless an empty `ListenStream=` comes first).
    let count = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.trim().parse::<u32>().ok());
    if let Some(n @ 2..) = count {
        let names = std::env::var("LISTEN_FDNAMES").unwrap_or_default();
        anyhow::bail!(
            "systemd passed {n} sockets (LISTEN_FDS={n}, LISTEN_FDNAMES={}), and the daemon serves one: give the .socket unit one ListenStream= (a drop-in that moves the socket begins with an empty `ListenStream=`, which drops the unit's own, then the new path), then `systemctl daemon-reload` and restart the socket and the service",
            crate::text::escape_for_terminal(if names.is_empty() { "(not set)" } else { &names })
        );
    }
    const NOT_LISTENING: &str = "LISTEN_FDS is set but fd 3 is not a listening Unix stream socket; check the .socket unit (ListenStream= must be a path)";
    let mut fds = listenfd::ListenFd::from_env();
    let listener = fds.take_unix_listener(0).context(NOT_LISTENING)?;
    // listenfd checks the kind of socket, not that it listens: a Unix stream socket bound but
    // never `listen`ed was taken, "listening on" said, READY=1 sent, and every connection
    // refused until the stop (twentieth pass, found by attacking the daemon as a shared
    // service).
    if let Some(l) = &listener {
        let listening = crate::sys::is_listening(l).context(NOT_LISTENING)?;
        if !listening {
            anyhow::bail!("{NOT_LISTENING}: it is bound to an address but does not listen");
        }
        let (path, warning) = super::server::check_inherited(l)?;
        if let Some(w) = warning {
            crate::diag!(
                "scopevault: warning: {}",
                crate::text::escape_for_terminal(&w)
            );
        }
        // `--socket` (or SCOPEVAULT_SOCKET) naming another socket was ignored without a word
        // (twenty-ninth pass): its clients found no daemon there.
        if c.socket_given && !same_file(&c.socket_path, &path) {
            crate::diag!(
                "scopevault: warning: --socket (or SCOPEVAULT_SOCKET) names {}, but systemd passed the socket {}, which is the one served: clients of {} find no daemon; give --socket the .socket unit's ListenStream= path, or leave it out",
                crate::text::shown(&c.socket_path),
                crate::text::shown(&path),
                crate::text::shown(&c.socket_path)
            );
        }
        if let Some(gid) = c.socket_gid {
            crate::diag!(
                "scopevault: warning: --socket-group {gid} does not apply to the socket systemd passed: its group is the .socket unit's SocketGroup="
            );
        }
    }
    Ok(listener)
}

/// Whether `a` and `b` name the same file (the same device and inode), or the same path when
/// neither can be looked up.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => std::path::absolute(a).ok() == std::path::absolute(b).ok(),
    }
}

/// The first directory above the socket's own directory that members of `gid` cannot traverse
/// (no search permission for that group, or for others when it belongs to another group), if
/// any: `--socket-group` then makes a socket nobody in the group can reach (a non-root
/// daemon's default under a 0700 `$XDG_RUNTIME_DIR`). The socket's directory itself is made
/// for the group by the daemon.
fn untraversable_for_group(socket: &std::path::Path, gid: u32) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let dir = socket.parent()?;
    dir.ancestors().skip(1).find_map(|d| {
        let m = std::fs::metadata(d).ok()?;
        let mode = m.mode();
        let through = if m.gid() == gid {
            mode & 0o010 != 0
        } else {
            mode & 0o001 != 0
        };
        (!through).then(|| d.to_path_buf())
    })
}

#[cfg(test)]
mod socket_group_tests {
    use super::untraversable_for_group;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_private_directory_above_the_socket_is_named_and_an_open_one_is_not() {
        let base = tempfile::tempdir().unwrap();
        let private = base.path().join("private");
        std::fs::create_dir_all(private.join("scopevault")).unwrap();
        std::fs::set_permissions(base.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
        let socket = private.join("scopevault/s.sock");
        // A group the directory does not belong to: 0700 lets nobody else through.
        let other_gid = 4_000_000;
        assert_eq!(
            untraversable_for_group(&socket, other_gid),
            Some(private.clone())
        );
        std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o711)).unwrap();
        // Every directory above private must let others through too (/tmp and / do).
        assert_eq!(untraversable_for_group(&socket, other_gid), None);
    }
}
