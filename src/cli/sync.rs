//! `scopevault sync openbao`: pull secret values from OpenBao / HashiCorp Vault KV v2 into the
//! master vault (admin side; the daemon never talks to the network).
//!
//! For each credential the applied policy declares, `MOUNT/data/PREFIX<name>` is read. A
//! credential whose recorded source (path, KV version) is unchanged is dropped as soon as it is
//! read, so memory grows with the number of *changed* credentials only. Any failure stops the
//! sync before the save: the vault file stays byte for byte as it was. OpenBao is read before
//! the vault's writer lock is taken; the file is read again under it. Otherwise every change
//! goes into one atomic save, and when nothing moved there is no save at all (the generation
//! stays).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use super::args::{GlobalArgs, SyncCommand, SyncOpenbaoArgs};
use super::unlock::{
    open_vault, open_vault_locked, open_vault_to_read, read_private_secret_file, vault_path,
};
use crate::fleet::openbao::{self, Auth, Client, ClientOptions, TokenFault};
use crate::policy::CredentialKind;
use crate::secret::SecretString;
use crate::vault::{self, Credential, CredentialSource, FieldMap, WriteLock};

/// Longest `--timeout` (an hour): longer is a typo, and a time that large overflowed the
/// clock.
const MAX_TIMEOUT: u64 = 3600;

/// The engine name recorded in [`CredentialSource::engine`].
const ENGINE: &str = "openbao-kv2";

pub(crate) fn run(g: &GlobalArgs, cmd: &SyncCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        SyncCommand::Openbao(a) => {
            let mut adopted = None;
            let r = openbao_sync(g, a, &mut adopted);
            // A signal being handled ends the process itself, with its own message and exit
            // status ([`revoke_on_signal`]): a request its revoke cut short does not end it first.
            if STOPPING.load(std::sync::atomic::Ordering::SeqCst) {
                loop {
                    std::thread::park();
                }
            }
            r.with_context(|| match adopted {
                None => "sync openbao failed; the vault was not changed".to_owned(),
                // The vault was saved before anything went wrong: said so (it read "the
                // vault was not changed", eighteenth pass).
                Some(generation) => format!(
                    "sync openbao failed; nothing from OpenBao was saved, but the {}",
                    super::unlock::adopted_note(generation)
                ),
            })
        }
    }
}

/// The token source, in the documented order: --token-file or AppRole (one of them), then
/// BAO_TOKEN, VAULT_TOKEN (before the thirty-first pass the environment came first).
///
/// A variable that is empty or only whitespace is unset, as an empty one always was: a blank
/// `BAO_TOKEN` was sent as a blank token until the twenty-second pass. A token with
/// whitespace or a control character anywhere else is refused, unquoted
/// ([`openbao::token_fault`]).
fn auth_from(a: &SyncOpenbaoArgs) -> anyhow::Result<Auth> {
    // The environment's token, if one is set (a blank one counts as unset).
    let mut from_env = None;
    for var in ["BAO_TOKEN", "VAULT_TOKEN"] {
        if let Some(v) = std::env::var_os(var) {
            let Ok(v) = v.into_string() else {
                bail!("{var} is not UTF-8 text");
            };
            let v = SecretString::from(v);
            match openbao::token_fault(v.expose()) {
                None => {
                    from_env = Some(Auth::Token(v, var.to_owned()));
                    break;
                }
                Some(TokenFault::Blank) => {}
                Some(fault) => bail!("{var} {fault}: set it to the token alone"),
            }
        }
    }
    // An option given on the command line wins over the environment, as `--addr` does over
    // BAO_ADDR: a token left in the shell (an admin's root token, a CI variable) must not
    // replace, in silence, the token file or the least-privilege AppRole the command names.
    let approle = match (&a.approle_role_id, &a.approle_secret_id_file) {
        (Some(r), Some(f)) => Some((r, f)),
        (None, None) => None,
        (Some(_), None) => bail!("--approle-role-id needs --approle-secret-id-file FILE"),
        (None, Some(_)) => bail!("--approle-secret-id-file needs --approle-role-id ID"),
    };
    if a.token_file.is_some() && approle.is_some() {
        bail!(
            "give either --token-file or --approle-role-id with --approle-secret-id-file, not both"
        );
    }
    let ignored = |what: &str| {
        if let Some(Auth::Token(_, var)) = &from_env {
            errln!("scopevault: note: {var} is set but not used: the {what} given is");
        }
    };
    if let Some(f) = &a.token_file {
        let t = read_private_secret_file(f, "the --token-file", "it holds an OpenBao token")
            .with_context(|| format!("cannot read --token-file {}", f.display()))?;
        if let Some(fault) = openbao::token_fault(t.expose()) {
            bail!(
                "--token-file {} {fault} (one newline at its end is not part of the token)",
                f.display()
            );
        }
        ignored("token file");
        return Ok(Auth::Token(
            t,
            format!("token file {}", crate::text::shown(f)),
        ));
    }
    if let Some((role_id, f)) = approle {
        let secret_id = read_private_secret_file(
            f,
            "the --approle-secret-id-file",
            "it holds the AppRole's secret id, which logs in as the role",
        )
        .with_context(|| format!("cannot read --approle-secret-id-file {}", f.display()))?;
        if secret_id.expose().trim().is_empty() {
            bail!(
                "--approle-secret-id-file {} is empty or only whitespace",
                f.display()
            );
        }
        if role_id.is_empty() || role_id.chars().any(|c| c.is_control()) {
            bail!("--approle-role-id is empty or holds control characters");
        }
        ignored("AppRole login");
        return Ok(Auth::AppRole {
            role_id: role_id.clone(),
            secret_id,
        });
    }
    if let Some(auth) = from_env {
        return Ok(auth);
    }
    bail!("no OpenBao token: set BAO_TOKEN (or VAULT_TOKEN), or give --token-file FILE, or --approle-role-id ID with --approle-secret-id-file FILE")
}

/// The handle a SIGINT, SIGTERM, SIGHUP or SIGQUIT revokes the AppRole login's token with,
/// once the login is done; the lock on it is also held through the login and through the
/// vault's save, so that the signal waits for either (thirty-second pass: an interrupted sync,
/// Ctrl-C, `systemctl stop`, a CI timeout, left its token live for the role's whole
/// `token_ttl`).
static SIGNAL_GATE: std::sync::Mutex<Option<Client>> = std::sync::Mutex::new(None);

/// Whether a SIGINT, SIGTERM, SIGHUP or SIGQUIT is being handled.
static STOPPING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether the vault was saved (what the signal's message says).
static SAVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where the AppRole login is ([`Login`] as a number), for a signal that comes while it runs.
static LOGIN: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(Login::NotSent as u8);

/// Whether a signal's revoke of the login's token is under way (a second signal cuts it).
static REVOKING: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Where the AppRole login is ([`LOGIN`]).
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Login {
    /// Not sent (yet).
    NotSent,
    /// Sent, not answered yet: OpenBao may issue its token at any moment.
    UnderWay,
    /// Answered, with a token or with a refusal, or never sent (a bad option).
    Answered,
    /// No answer came (`--timeout`, a broken connection): OpenBao may have issued a token
    /// that nobody received.
    Unanswered,
}

fn login_is(state: Login) -> bool {
    LOGIN.load(std::sync::atomic::Ordering::SeqCst) == state as u8
}

fn set_login(state: Login) {
    LOGIN.store(state as u8, std::sync::atomic::Ordering::SeqCst);
}

/// What a login that got no answer leaves: its request may have reached OpenBao, and only the
/// answer, which never came, could have revoked the token it issued.
const UNHELD_TOKEN: &str = "if OpenBao issued a token for it, nobody holds that token, and it stays valid until the role's token_ttl runs out";

/// What a signal's message says of the vault.
fn vault_note() -> &'static str {
    if SAVED.load(std::sync::atomic::Ordering::SeqCst) {
        "what it synced was saved before it"
    } else {
        "nothing from OpenBao was saved"
    }
}

/// End the process as signal `sig` stopped it: of that signal. SIGQUIT's default action dumps
/// core: it is raised only on a process that is not dumpable (`sys::harden_command`), where
/// the kernel writes no core and hands none to a core handler; otherwise (the hardening
/// failed) the process exits 128+N, as `exec` does.
fn end_as_stopped_by(sig: i32) -> ! {
    if !crate::sys::CORE_SIGNALS.contains(&sig) || !crate::sys::is_dumpable() {
        crate::sys::die_of_signal(sig);
    }
    std::process::exit(128 + sig);
}

fn signal_gate() -> std::sync::MutexGuard<'static, Option<Client>> {
    SIGNAL_GATE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Catch SIGINT, SIGTERM, SIGHUP (a closed terminal, a dropped ssh session: thirty-second pass,
/// found by the re-attacker of this pass's fixes) and SIGQUIT (Ctrl-\ at a terminal:
/// thirty-third pass) for the rest of the sync: on one, wait for a login or a save under way,
/// revoke the login's token (bounded by `--timeout`), say so, and die of that signal (as a
/// shell and systemd expect of a command stopped so), the vault file as it was or as saved,
/// never in between (the save is atomic and not cut short). Only for an AppRole login: a
/// token handed in is the admin's, and a sync with one stops at once, as it always did. A signal
/// this process was given ignored (`nohup`, a script's background job) stays ignored: catching it
/// would make such a sync stop where it did not.
///
/// A signal while the login itself waits for its answer says at once that it waits for it (up
/// to `timeout` seconds), and a second signal then stops the sync at once, saying what it
/// leaves: OpenBao may have issued the login a token that nobody holds, valid until the
/// role's `token_ttl` runs out (thirty-third pass: the sync waited silently up to `--timeout`).
/// A second signal during the revoke cuts it the same way; one during a save waits for it.
fn revoke_on_signal(timeout: u64) -> anyhow::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM};
    let caught: Vec<i32> = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]
        .into_iter()
        .filter(|&s| !crate::sys::is_ignored(s))
        .collect();
    if caught.is_empty() {
        return Ok(());
    }
    let mut signals = signal_hook::iterator::Signals::new(caught)
        .context("cannot catch SIGINT, SIGTERM, SIGHUP and SIGQUIT")?;
    std::thread::spawn(move || {
        let mut stopping = false;
        for sig in signals.forever() {
            let name = signal_name(sig);
            if !stopping {
                stopping = true;
                STOPPING.store(true, std::sync::atomic::Ordering::SeqCst);
                if login_is(Login::UnderWay) {
                    errln!("scopevault: sync openbao: {name}: waiting for the answer to its AppRole login (at most {timeout} s, --timeout) to revoke the token it gives; a second signal stops it at once, leaving any token OpenBao issues for that login valid until the role's token_ttl runs out");
                }
                std::thread::spawn(move || stop_on_signal(sig, name));
                continue;
            }
            // A second signal: what the first one waits for on the network is given up; a save
            // under way is not cut short (the first one's stop follows it).
            let left = if login_is(Login::UnderWay) {
                format!("its AppRole login had not answered: {UNHELD_TOKEN}")
            } else if REVOKING.load(std::sync::atomic::Ordering::SeqCst) {
                "the revoke of the token its AppRole login gave had not answered: the token may stay valid until the role's token_ttl runs out".to_owned()
            } else {
                continue;
            };
            errln!(
                "scopevault: sync openbao stopped by a second signal, {name}: {left}; {}",
                vault_note()
            );
            end_as_stopped_by(sig);
        }
    });
    Ok(())
}

fn signal_name(sig: i32) -> &'static str {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT};
    match sig {
        SIGINT => "SIGINT",
        SIGHUP => "SIGHUP",
        SIGQUIT => "SIGQUIT",
        _ => "SIGTERM",
    }
}

/// The stop a first signal makes ([`revoke_on_signal`]): wait for a login or a save under
/// way, revoke the login's token, say so, end as stopped by `sig`.
fn stop_on_signal(sig: i32, name: &str) {
    let mut gate = signal_gate();
    let revoked = match gate.take() {
        Some(c) if c.owns_token() => {
            REVOKING.store(true, std::sync::atomic::Ordering::SeqCst);
            let revoked = c.revoke_own_token();
            REVOKING.store(false, std::sync::atomic::Ordering::SeqCst);
            match revoked {
                Ok(()) => "the token its AppRole login gave was revoked".to_owned(),
                Err(e) => format!(
                    "the token its AppRole login gave could not be revoked ({e}): it stays valid until the role's token_ttl runs out"
                ),
            }
        }
        Some(_) => "the token its AppRole login gave was revoked".to_owned(),
        None if login_is(Login::Unanswered) => {
            format!("its AppRole login got no answer: {UNHELD_TOKEN}")
        }
        None => "it had no token yet".to_owned(),
    };
    errln!(
        "scopevault: sync openbao stopped by {name}: {revoked}; {}",
        vault_note()
    );
    end_as_stopped_by(sig);
}

/// One credential as read from OpenBao before the lock is taken.
enum Fetched {
    /// Its source was the one recorded: only that is kept.
    Unchanged(CredentialSource),
    /// Its current version (values kept until classified), or none (missing upstream), and
    /// the source the vault recorded when it was read.
    Read(Option<openbao::KvSecret>, Option<CredentialSource>),
}

/// The source recorded for `secret` read in `namespace`.
fn source_of(secret: &openbao::KvSecret, namespace: &Option<String>) -> CredentialSource {
    CredentialSource {
        engine: ENGINE.to_owned(),
        namespace: namespace.clone(),
        path: secret.path.clone(),
        version: secret.version,
        updated: secret.updated,
        set_by_hand: None,
    }
}

/// The credentials the applied policy declares: name, kind, scopes, origins.
type Declared = Vec<(String, CredentialKind, Vec<String>, Vec<String>)>;

/// The applied policy's credentials ([`Declared`]), or the error for a vault without one.
fn policy_names(vault: &vault::Vault) -> anyhow::Result<Declared> {
    let Some(policy) = vault.policy() else {
        bail!(
            "the vault has no applied policy, so there is no list of credentials to sync: run `{}` first",
            crate::advice::command("policy apply policy.toml")
        );
    };
    Ok(policy
        .credentials()
        .map(|(n, d)| {
            (
                n.to_owned(),
                d.kind(),
                d.scopes().into_iter().map(str::to_owned).collect(),
                d.origins().into_iter().map(str::to_owned).collect(),
            )
        })
        .collect())
}

/// What the sync will do to one credential.
enum Change {
    /// New in the vault, or its upstream version moved.
    Update(Box<Update>),
    /// Missing upstream and `--prune`: removed from the vault.
    Remove(String),
}

/// A credential's new values and source.
struct Update {
    name: String,
    kind: CredentialKind,
    scopes: Vec<String>,
    origins: Vec<String>,
    fields: FieldMap<String>,
    secrets: FieldMap<SecretString>,
    source: CredentialSource,
}

/// Two recorded namespaces name the same one: `ns1/` (recorded by a scopevault before the
/// thirty-first pass) is `ns1`.
fn same_namespace(a: &Option<String>, b: &Option<String>) -> bool {
    a.as_deref().map(|n| n.trim_matches('/')) == b.as_deref().map(|n| n.trim_matches('/'))
}

/// A time as RFC 3339, to the nanosecond it holds.
fn rfc3339(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// ` (namespace NS)` for a source in a namespace, else nothing.
fn in_namespace(ns: &Option<String>) -> String {
    ns.as_deref()
        .map(|n| format!(" (namespace {n})"))
        .unwrap_or_default()
}

/// The sync. `adopted` is set to the generation the vault was saved as when opening it adopted
/// a restored file, so that the caller's message on failure says so.
fn openbao_sync(
    g: &GlobalArgs,
    a: &SyncOpenbaoArgs,
    adopted: &mut Option<u64>,
) -> anyhow::Result<ExitCode> {
    openbao::check_path("--mount", a.mount.trim_matches('/'), false)?;
    let mount = a.mount.trim_matches('/').to_owned();
    let prefix = a.prefix.trim_matches('/');
    openbao::check_path("--prefix", prefix, true)?;
    let prefix = if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    };
    // `ns1/` and `/ns1` are the namespace `ns1` (OpenBao takes either): sent and recorded in
    // one spelling, so that the rules keyed on the source (unchanged, went backwards, prune)
    // do not take a respelling for another namespace.
    // One that is empty once so trimmed (`BAO_NAMESPACE=` as a CI template leaves it, `/`) is
    // the root namespace, no namespace, as the `bao` CLI takes it (thirty-second pass: it was
    // refused, `--namespace is empty`).
    let namespace = a
        .namespace
        .as_deref()
        .map(|ns| ns.trim_matches('/').to_owned())
        .filter(|ns| !ns.is_empty());
    if let Some(ns) = &namespace {
        openbao::check_path("--namespace", ns, false)?;
    }
    if !(1..=MAX_TIMEOUT).contains(&a.timeout) {
        bail!("--timeout must be between 1 and {MAX_TIMEOUT} seconds");
    }
    openbao::check_addr(&a.addr)?;
    let auth = auth_from(a)?;

    // The reads from OpenBao hold no lock (thirty-second pass: the writer lock was held through
    // them, so a slow server kept every other writer, `cred set`, `policy apply`, `bundle
    // apply`, waiting up to credentials × --timeout and then failing as busy). The vault is
    // read unlocked, OpenBao is read, then the lock is taken and the file read again, and each
    // credential is judged against what it holds then (see the loop below). With
    // --allow-rollback a restored file is adopted under the lock first, and the lock is held
    // throughout, as before. A dry run writes nothing and takes no lock.
    let path = vault_path(g);
    let early_lock = if !a.dry_run && g.unlock.allow_rollback {
        Some(WriteLock::acquire(&path)?)
    } else {
        None
    };
    // A dry run only reads: it adopts no restored file (`open_vault_to_read`).
    let mut vault = match &early_lock {
        Some(lock) => open_vault_locked(g, lock)?,
        None if a.dry_run => open_vault_to_read(g)?,
        None => open_vault(g)?,
    };
    if early_lock.is_some() && super::unlock::adopted(&vault) {
        *adopted = Some(vault.generation());
    }
    let names = policy_names(&vault)?;

    let opts = ClientOptions {
        addr: a.addr.clone(),
        namespace: namespace.clone(),
        ca_cert: a.ca_cert.clone(),
        timeout: Duration::from_secs(a.timeout),
    };
    let approle = matches!(auth, Auth::AppRole { .. });
    if approle {
        revoke_on_signal(a.timeout)?;
    }
    let client = {
        // Held through the login, so that a signal during it waits for the token it gives.
        let mut gate = signal_gate();
        if approle {
            set_login(Login::UnderWay);
        }
        let connected = Client::connect(&opts, auth);
        if approle {
            set_login(match &connected {
                Err(openbao::BaoError::Transport { .. }) => Login::Unanswered,
                _ => Login::Answered,
            });
        }
        // Without a signal too, a login that got no answer says what it may leave.
        let client = connected.map_err(|e| {
            let unanswered = login_is(Login::Unanswered);
            let e = anyhow::Error::new(e);
            if unanswered {
                e.context(format!("the AppRole login got no answer ({UNHELD_TOKEN})"))
            } else {
                e
            }
        })?;
        if approle {
            *gate = Some(client.revoker());
        }
        client
    };
    client.check_kv2_mount(&mount)?;

    // OpenBao read with no lock held: a credential whose source is the one recorded is kept
    // as that source only (its values dropped, zeroed), the others whole.
    let recorded = |v: &vault::Vault, name: &str| -> Option<CredentialSource> {
        v.credentials().get(name).and_then(|c| c.source.clone())
    };
    let mut fetched = std::collections::HashMap::new();
    for (name, ..) in &names {
        let read = client.read_kv2(&mount, &format!("{prefix}{name}"))?;
        let f = match read {
            Some(s) if recorded(&vault, name) == Some(source_of(&s, &namespace)) => {
                Fetched::Unchanged(source_of(&s, &namespace))
            }
            read => Fetched::Read(read, recorded(&vault, name)),
        };
        fetched.insert(name.clone(), f);
    }
    // Then the lock, and the file as it is now: another writer may have saved meanwhile.
    let lock = match early_lock {
        Some(lock) => Some(lock),
        None if a.dry_run => None,
        None => {
            let lock = WriteLock::acquire(&path)?;
            vault = vault.reopen(&super::unlock::open_options(g))?;
            Some(lock)
        }
    };
    let names = policy_names(&vault)?;

    let mut changes: Vec<Change> = Vec::new();
    let (mut unchanged, mut missing) = (0usize, 0usize);
    let mut lines = Vec::new();
    for (name, kind, scopes, origins) in names {
        let kv_path = format!("{prefix}{name}");
        let read = match fetched.remove(&name) {
            Some(Fetched::Read(read, then)) if recorded(&vault, &name) == then => read,
            Some(Fetched::Unchanged(s)) if recorded(&vault, &name).as_ref() == Some(&s) => {
                unchanged += 1;
                continue;
            }
            // Its source changed since the read (set by hand, another sync, which may have
            // taken a version newer than the one read here: judged against it, the read would
            // go backwards), or it was declared since (`policy apply`): read again, under the
            // lock.
            _ => client.read_kv2(&mount, &kv_path)?,
        };
        let current = vault.credentials().get(&name);
        let Some(secret) = read else {
            missing += 1;
            let api = format!("{mount}/data/{kv_path}");
            // `--prune` removes only what went away where it came from: a credential synced
            // from this very path (and namespace). One synced from elsewhere is what a mistyped
            // `--prefix`, `--mount` or `--namespace` finds missing, every credential at once;
            // one set by hand was never OpenBao's to remove. One only declared (`policy apply`,
            // no values yet) has nothing to remove.
            let current = current
                .filter(|c| c.source.is_some() || !c.secrets.is_empty() || !c.fields.is_empty());
            let source = current.and_then(|c| c.source.as_ref());
            let from_here =
                source.is_some_and(|s| s.path == api && same_namespace(&s.namespace, &namespace));
            let prune_note = "--prune removes only a credential synced from the path now missing";
            match (current.is_some(), from_here, source) {
                (true, true, _) if a.prune => {
                    lines.push(format!(
                        "- {name}: missing upstream at {api}, {} (--prune)",
                        if a.dry_run { "would be removed" } else { "removed" }
                    ));
                    changes.push(Change::Remove(name));
                }
                (true, true, _) => lines.push(format!(
                    "! {name}: missing upstream at {api}; kept in the vault (--prune removes it)"
                )),
                (true, false, Some(s)) => lines.push(format!(
                    "! {name}: missing upstream at {api}; kept: synced from {}{} ({prune_note}: check --mount, --prefix and --namespace)",
                    s.path,
                    in_namespace(&s.namespace)
                )),
                (true, false, None) => lines.push(format!(
                    "! {name}: missing upstream at {api}; kept: not synced from OpenBao ({prune_note}; `cred rm` removes it)"
                )),
                (false, _, _) => lines.push(format!(
                    "! {name}: missing upstream at {api}; no values in the vault either"
                )),
            }
            continue;
        };
        let source = source_of(&secret, &namespace);
        let before = current.and_then(|c| c.source.as_ref());
        if before == Some(&source) {
            // Same path, same version: nothing to do; its values are dropped (zeroed) here.
            unchanged += 1;
            continue;
        }
        // `policy apply` declares credentials with no values yet: those are new here too.
        let current = current.filter(|c| c.source.is_some() || !c.secrets.is_empty());
        // A source marked set by hand (`cred set`, `import` after a sync) still names the
        // version synced last: the rule below holds for it too, or a hand-set stop-gap would
        // let a restored server's older version in as a routine change.
        let hand = |b: &CredentialSource| {
            if b.set_by_hand.is_some() {
                "set by hand since "
            } else {
                ""
            }
        };
        let line = match (current, before) {
            (None, _) => format!("+ {name}: version {} (new)", source.version),
            (Some(_), Some(b))
                if b.path == source.path
                    && same_namespace(&b.namespace, &source.namespace)
                    && (source.version < b.version
                        || (source.version == b.version && source.updated < b.updated)) =>
            {
                // The same secret at a lower version, or at the same version written earlier:
                // a server restored from a backup (older values, perhaps ones rotated away
                // because they leaked) or a secret deleted and written again. Never taken in
                // silence.
                if !a.allow_older_versions {
                    let lower = if source.version < b.version {
                        format!("{}, lower than version {}", source.version, b.version)
                    } else {
                        format!(
                            "{} written {}, earlier than version {} written {}",
                            source.version,
                            rfc3339(source.updated),
                            b.version,
                            rfc3339(b.updated)
                        )
                    };
                    bail!(
                        "{name}: OpenBao's current version of {} is {lower} synced before{} (a server restored from a backup, or the secret deleted and written again?): check the source, then sync with --allow-older-versions to take it",
                        source.path,
                        if b.set_by_hand.is_some() {
                            " and set by hand since"
                        } else {
                            ""
                        }
                    );
                }
                format!(
                    "! {name}: {}version {} → {} (went backwards: a restored server or a recreated secret; taken, --allow-older-versions)",
                    hand(b), b.version, source.version
                )
            }
            (Some(_), Some(b))
                if b.path == source.path && same_namespace(&b.namespace, &source.namespace) =>
            {
                if b.set_by_hand.is_some() {
                    format!(
                        "~ {name}: set by hand → version {} (version {} synced before; from now on synced)",
                        source.version, b.version
                    )
                } else if b.version == source.version {
                    // Deleted with its metadata and written again up to the same version.
                    format!(
                        "~ {name}: version {} → {} (written again at {}: the secret was deleted and recreated)",
                        b.version,
                        source.version,
                        rfc3339(source.updated)
                    )
                } else {
                    format!("~ {name}: version {} → {}", b.version, source.version)
                }
            }
            (Some(_), Some(b)) => format!(
                "~ {name}: {}{}{} version {} → {}{} version {}",
                hand(b),
                b.path,
                in_namespace(&b.namespace),
                b.version,
                source.path,
                in_namespace(&source.namespace),
                source.version
            ),
            (Some(_), None) => format!(
                "~ {name}: set by hand → version {} (from now on synced)",
                source.version
            ),
        };
        let (fields, secrets) =
            openbao::classify(kind, secret, client.hidden()).map_err(anyhow::Error::msg)?;
        // A source recorded before the thirty-second pass has its time cut to whole seconds:
        // the same version in that second, with the same values, is unchanged (no save), and
        // the record stays until the secret moves; other values are a change.
        if before.is_some_and(|b| {
            b.set_by_hand.is_none()
                && b.updated.nanosecond() == 0
                && b.updated
                    == source
                        .updated
                        .replace_nanosecond(0)
                        .unwrap_or(source.updated)
                && CredentialSource {
                    updated: b.updated,
                    ..source.clone()
                } == *b
        }) && current.is_some_and(|c| c.fields == fields && c.secrets == secrets)
        {
            unchanged += 1;
            continue;
        }
        // Stored with the warning every other way in gives (`cred set`, `import`).
        super::cred::warn_nul_at("", &name, secrets.iter().map(|(k, v)| (k.as_str(), v)));
        // A seed under 80 bits was refused above; one under RFC 4226's 128 is kept, said.
        if let Some((field, bytes)) = crate::agent::totp::short_seed(&secrets) {
            errln!(
                "scopevault: warning: {name}.{field}: {}",
                crate::agent::totp::short_seed_warning(bytes)
            );
        }
        lines.push(line);
        changes.push(Change::Update(Box::new(Update {
            name,
            kind,
            scopes,
            origins,
            fields,
            secrets,
            source,
        })));
    }

    // A line quotes the paths OpenBao gave: escaped. Printed with the outcome, after the save
    // (twenty-third pass: a failed write to stdout must not come between a change and its
    // report).
    let mut report = String::new();
    for l in &lines {
        report.push_str(&crate::text::escape_for_terminal(l));
        report.push('\n');
    }
    let summary = format!(
        "{} to change, {unchanged} unchanged, {missing} missing upstream",
        changes.len()
    );
    if a.dry_run {
        report.push_str(&match adopted {
            None => format!("dry run: {summary}; nothing was saved\n"),
            Some(g) => format!(
                "dry run: {summary}; nothing from OpenBao was saved; the {}\n",
                super::unlock::adopted_note(*g)
            ),
        });
        super::write_stdout(report.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    if changes.is_empty() {
        report.push_str(&match adopted {
            None => format!(
                "{summary}: nothing moved upstream, the vault was not saved (generation {})\n",
                vault.generation()
            ),
            Some(g) => format!(
                "{summary}: nothing moved upstream; the {}\n",
                super::unlock::adopted_note(*g)
            ),
        });
        super::write_stdout(report.as_bytes())?;
        return Ok(ExitCode::SUCCESS);
    }
    let now = vault::timestamp();
    for ch in changes {
        match ch {
            Change::Remove(name) => {
                vault.remove_credential(&name)?;
            }
            Change::Update(u) => {
                let Update {
                    name,
                    kind,
                    scopes,
                    origins,
                    fields,
                    secrets,
                    source,
                } = *u;
                if vault.credentials().contains_key(&name) {
                    vault.update_credential(&name, |c| {
                        let moved = c.secrets.len() != secrets.len()
                            || secrets.iter().any(|(k, v)| c.secrets.get(k) != Some(v));
                        if moved {
                            c.rotated = now;
                        }
                        c.kind = kind;
                        c.fields = fields;
                        c.secrets = secrets;
                        c.source = Some(source);
                    })?;
                } else {
                    let mut c = Credential::new(kind, now);
                    c.scopes = scopes;
                    c.origins = origins;
                    c.fields = fields;
                    c.secrets = secrets;
                    c.source = Some(source);
                    vault.add_credential(&name, c)?;
                }
            }
        }
    }
    let lock = lock.expect("taken unless --dry-run");
    {
        // A signal waits for the save to end: the process never exits in the middle of it.
        let _gate = signal_gate();
        vault.save(&lock)?;
        SAVED.store(true, std::sync::atomic::Ordering::SeqCst);
    }
    super::fleet::warn_local_change(&vault);
    super::output::after_change(
        &format!("the sync was saved (generation {})", vault.generation()),
        {
            report.push_str(&format!(
                "{summary}; saved (generation {})\n",
                vault.generation()
            ));
            super::write_stdout(report.as_bytes())
        },
    )?;
    Ok(ExitCode::SUCCESS)
}
