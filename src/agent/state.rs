//! The daemon's vault slot: `None` while locked, the opened vault while unlocked.
//! Unlock, lock and reload swap the slot under a write lock; requests read it.
//!
//! The handler sees an opened vault through [`VaultView`], the few read-only things it needs,
//! so the request logic does not depend on how the vault is stored.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::accounts::Unresolved;
use crate::policy::{CredentialKind, Grant, Policy};
use crate::protocol::ErrorBody;
use crate::secret::SecretString;
use crate::vault::FieldMap;

/// One stored credential, as the handler reads it.
pub(crate) struct CredView<'a> {
    pub kind: CredentialKind,
    pub scopes: &'a [String],
    pub origins: &'a [String],
    pub fields: &'a FieldMap<String>,
    pub secrets: &'a FieldMap<SecretString>,
}

/// What the daemon needs from an opened vault.
pub(crate) trait VaultView: Send + Sync {
    fn id(&self) -> &str;
    fn generation(&self) -> u64;
    fn credential_count(&self) -> usize;
    fn credential(&self, name: &str) -> Option<CredView<'_>>;
    fn policy(&self) -> Option<&Policy>;
    /// Re-read the file with the key in memory (reload), with the same authenticity and
    /// rollback checks as at open.
    fn reopen(&self) -> Result<Box<dyn VaultView>, ErrorBody>;
    /// The file as it was when this view was read ([`FileStamp`]); `None`: not followed.
    fn stamp(&self) -> Option<FileStamp> {
        None
    }
    /// The file at the vault's path now.
    fn current_stamp(&self) -> Option<FileStamp> {
        None
    }
    /// The fleet bundle last applied to this vault (`None` if none was); the audit log names
    /// it ([`crate::fleet::health::served_bundle`]).
    fn applied_bundle(&self) -> Option<&crate::vault::AppliedBundle> {
        None
    }
    /// The vault file's path and the digest of its payload as loaded (`None`: not a file).
    fn file_payload(&self) -> Option<(&std::path::Path, &str)> {
        None
    }
    /// Loaded below the rollback record, as the restore a `serve --allow-rollback` run
    /// serves: its generation ([`crate::vault::OpenOptions::restored_from`]).
    fn restored_from(&self) -> Option<u64> {
        None
    }
}

/// What the run's earlier loads ask of an `unlock`'s open, beyond the daemon's options.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadRules {
    /// The run's first load, of `serve --allow-rollback`.
    pub allow_rollback: bool,
    /// The vault the daemon loaded first: it serves no other.
    pub vault_id: Option<String>,
    /// The restore the run serves ([`VaultView::restored_from`]).
    pub restored_from: Option<u64>,
}

impl LoadRules {
    /// `opts` with these rules.
    pub(crate) fn onto(&self, opts: &crate::vault::OpenOptions) -> crate::vault::OpenOptions {
        crate::vault::OpenOptions {
            allow_rollback: self.allow_rollback,
            vault_id: self.vault_id.clone(),
            restored_from: self.restored_from,
            ..opts.clone()
        }
    }
}

/// What tells a changed vault file from the one loaded, with one `stat`: device, inode, size
/// and modification time in nanoseconds. A save writes a temp file and renames it over the
/// vault, so every save is a new inode.
pub(crate) type FileStamp = (u64, u64, u64, i128);

/// The stamp of what is at `path` itself, not following a link, as the daemon reads it
/// ([`crate::vault::OpenOptions::no_follow`]): a link put there is a change, which the load
/// then refuses.
pub(crate) fn stamp_of(path: &std::path::Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(path).ok()?;
    Some((
        m.dev(),
        m.ino(),
        m.size(),
        i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    ))
}

/// Runners of one task, resolved to ids when the vault is opened (not on every request).
#[derive(Debug, Default, Clone)]
pub(crate) struct Runners {
    pub uids: Vec<u32>,
    pub gids: Vec<u32>,
}

/// The day the cached grants are for, and the grants by (task, credential).
type GrantCache = (Option<time::Date>, HashMap<(String, String), Arc<Grant>>);

/// An opened vault and what was derived from it.
pub(crate) struct Opened {
    pub vault: Box<dyn VaultView>,
    /// The digest of the vault's policy ([`Policy::digest`]), made once per load: `health`
    /// reports it, so `status` can tell the signed bundle's policy from a local one.
    pub policy_digest: Option<String>,
    pub runners: HashMap<String, Runners>,
    /// Each task's `schedulers`, resolved to uids like runners' users (absent: no entry).
    pub schedulers: HashMap<String, Vec<u32>>,
    /// `policy.check_grant` of every (task, credential) pair, for one day (exceptions expire
    /// by date): computed once instead of on every fetch.
    grants: RwLock<GrantCache>,
    /// Who runs which task, and the length of each task's entry in a `tasks` answer, made
    /// once per load: a `tasks` request costs the peer's own tasks, not the policy.
    pub index: TaskIndex,
    /// The length of each credential's handed-out `fields` and `secrets` as rendered in a
    /// `fetch` answer, made at its first hand-out (or refusal as too large) after the load:
    /// an answer's length is counted before anything of it is rendered.
    value_lens: RwLock<HashMap<String, (usize, usize)>>,
    /// The HMACs (for the audit log) of each credential's handed-out values, made at its first
    /// hand-out after the vault was loaded and reused after that (issue 11: values are HMACed
    /// once per vault load). A new load is a new `Opened`, with an empty cache.
    macs: RwLock<HashMap<String, ValueMacs>>,
}

/// (field name, HMAC) of a credential's handed-out values.
pub(crate) type ValueMacs = Arc<[(String, String)]>;

impl Opened {
    /// Wrap an opened vault, resolving every task's runner and scheduler names through the
    /// user and group databases (numbers are taken literally; a name that does not resolve matches nobody).
    pub(crate) fn new(vault: Box<dyn VaultView>) -> Opened {
        let (runners, schedulers, index) = derive_names(vault.as_ref());
        Opened {
            policy_digest: vault.policy().map(Policy::digest),
            vault,
            index,
            value_lens: RwLock::new(HashMap::new()),
            runners,
            schedulers,
            grants: RwLock::new((None, HashMap::new())),
            macs: RwLock::new(HashMap::new()),
        }
    }

    /// The scope check of `credential` for `task` on `today` (the lint's logic, cached per day).
    pub(crate) fn grant(
        &self,
        policy: &Policy,
        task: &str,
        credential: &str,
        today: time::Date,
    ) -> Arc<Grant> {
        let key = (task.to_owned(), credential.to_owned());
        {
            let g = self.grants.read().unwrap_or_else(|p| p.into_inner());
            if g.0 == Some(today) {
                if let Some(found) = g.1.get(&key) {
                    return found.clone();
                }
            }
        }
        let fresh = Arc::new(policy.check_grant(task, credential, today));
        let mut g = self.grants.write().unwrap_or_else(|p| p.into_inner());
        if g.0 != Some(today) {
            *g = (Some(today), HashMap::new());
        }
        g.1.insert(key, fresh.clone());
        fresh
    }
}

/// What an [`Opened`] derives from the user and group databases: each task's runners and
/// schedulers resolved to ids ([`resolve_names`]) and the task index over them. Each name that
/// resolves to nobody is said in the daemon's log, at every load and at every change of
/// `/etc/passwd` or `/etc/group` ([`State::names_changed`]): a typo in a runner's name
/// otherwise shows only as a runner denied ("not a runner") with nothing pointing at it.
fn derive_names(
    vault: &dyn VaultView,
) -> (
    HashMap<String, Runners>,
    HashMap<String, Vec<u32>>,
    TaskIndex,
) {
    let names = vault.policy().map(resolve_names).unwrap_or_default();
    for line in &names.unresolved {
        crate::diag!(
            "scopevault: warning: {}",
            crate::text::escape_for_terminal(line)
        );
    }
    let ResolvedNames {
        runners,
        schedulers,
        ..
    } = names;
    let index = vault
        .policy()
        .map(|p| TaskIndex::build(p, vault, &runners))
        .unwrap_or_default();
    (runners, schedulers, index)
}

/// The vault slot.
impl Opened {
    /// The lengths of `credential`'s `fields` and handed-out `secrets` rendered as JSON
    /// (always the same for one credential of one load: its kind is the applied policy's),
    /// counted at the first call and cached after that.
    pub(crate) fn value_lens(
        &self,
        credential: &str,
        fields: &FieldMap<String>,
        secrets: &crate::protocol::SecretsOut<'_>,
    ) -> (usize, usize) {
        if let Some(found) = self
            .value_lens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(credential)
        {
            return *found;
        }
        let lens = (
            crate::protocol::json_len(fields),
            crate::protocol::json_len(secrets),
        );
        self.value_lens
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(credential.to_owned(), lens);
        lens
    }

    /// The HMACs of `credential`'s handed-out `values` (always the same fields of the same
    /// credential for one load), made with `hmac` at the first call and cached after that.
    pub(crate) fn value_macs<'v>(
        &self,
        credential: &str,
        values: impl Iterator<Item = (&'v String, &'v SecretString)>,
        hmac: impl Fn(&str) -> String,
    ) -> ValueMacs {
        if let Some(found) = self
            .macs
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(credential)
        {
            return found.clone();
        }
        let made: ValueMacs = values
            .map(|(field, v)| (field.clone(), hmac(v.expose())))
            .collect();
        self.macs
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .entry(credential.to_owned())
            .or_insert(made)
            .clone()
    }
}

#[cfg(test)]
thread_local! {
    /// Tests: tasks looked at by [`TaskIndex::of`] on this thread.
    pub(crate) static TASKS_VISITED: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The tasks of a policy by runner and by name, with the length of each one's entry in a
/// `tasks` answer ([`crate::protocol::TaskInfo`]), made once per load. A `tasks` request
/// walked every task of the policy to find the peer's: 58 ms a request at 100,000 tasks for a
/// uid that runs none, and 16 pipelined a connection a turn on 64 connections held every
/// other uid's fetch for seconds (twenty-fourth pass, found by the attacker of scale and
/// complexity). Now it costs the peer's own tasks.
#[derive(Default)]
pub(crate) struct TaskIndex {
    /// Each task's name and the length of its entry, in the policy's order.
    tasks: Vec<(String, usize)>,
    /// Position in `tasks` by name.
    by_name: HashMap<String, usize>,
    /// The tasks each runner uid runs (positions, ascending).
    by_uid: HashMap<u32, Vec<usize>>,
    /// The tasks each runner group runs (positions, ascending).
    by_gid: HashMap<u32, Vec<usize>>,
}

impl TaskIndex {
    /// The index of `policy`'s tasks, with `runners` resolved, over `vault` (what it holds of
    /// each credential: the kinds and field names a `tasks` answer lists).
    pub(crate) fn build(
        policy: &Policy,
        vault: &dyn VaultView,
        runners: &HashMap<String, Runners>,
    ) -> TaskIndex {
        use crate::protocol::json_len;
        // Each credential's entries in `kinds` and `fields` (`"name":"kind"`,
        // `"name":["field",…]`), for those the vault holds and the policy declares.
        let mut entries: HashMap<&str, (usize, usize)> = HashMap::new();
        for (name, decl) in policy.credentials() {
            if let Some(held) = vault.credential(name) {
                let kind = decl.kind();
                let key = json_len(name) + 1;
                entries.insert(
                    name,
                    (
                        key + json_len(kind.as_str()),
                        key + json_len(&handed_out_names(kind, &held)),
                    ),
                );
            }
        }
        let mut index = TaskIndex::default();
        for (i, (name, task)) in policy.tasks().enumerate() {
            let mut seen = std::collections::HashSet::new();
            let (mut n, mut kinds, mut fields) = (0usize, 0usize, 0usize);
            for c in task.credentials() {
                if let Some((k, f)) = entries.get(c).filter(|_| seen.insert(c)) {
                    n += 1;
                    kinds += k;
                    fields += f;
                }
            }
            let bare = crate::protocol::TaskInfo {
                name: name.to_owned(),
                needs: task.needs().into_iter().map(str::to_owned).collect(),
                credentials: task.credentials().into_iter().map(str::to_owned).collect(),
                kinds: Default::default(),
                fields: Default::default(),
                origin: task.origin().map(str::to_owned),
            };
            let mut len = json_len(&bare);
            if n > 0 {
                // `"kinds":{…},` and `"fields":{…},`: entries, commas between them, braces.
                len += "\"kinds\":{},".len() + kinds + (n - 1);
                len += "\"fields\":{},".len() + fields + (n - 1);
            }
            index.tasks.push((name.to_owned(), len));
            index.by_name.insert(name.to_owned(), i);
            if let Some(r) = runners.get(name) {
                for &uid in &r.uids {
                    index.by_uid.entry(uid).or_default().push(i);
                }
                for &gid in &r.gids {
                    index.by_gid.entry(gid).or_default().push(i);
                }
            }
        }
        index
    }

    /// How many tasks the policy has.
    pub(crate) fn len(&self) -> usize {
        self.tasks.len()
    }

    /// What the policy's runners give `peer` ([`crate::agent::peer::RunnerRights`]): whether
    /// its uid is a runner user of some task, which runner groups it is in (its groups
    /// looked up only when the policy names a runner group), and the names of the tasks it
    /// runs by either.
    pub(crate) fn runner_rights(
        &self,
        peer: &crate::agent::peer::PeerIdentity,
    ) -> crate::agent::peer::RunnerRights {
        let mut groups: Vec<u32> = if self.by_gid.is_empty() {
            Vec::new()
        } else {
            peer.all_groups()
                .filter(|g| self.by_gid.contains_key(g))
                .collect()
        };
        groups.sort_unstable();
        groups.dedup();
        // The tasks it runs, by its uid and by those groups (not the kernel's gid alone: the
        // groups above are its primary gid and its user's groups).
        let mut at: Vec<usize> = self.by_uid.get(&peer.uid).cloned().unwrap_or_default();
        for g in &groups {
            at.extend(self.by_gid.get(g).into_iter().flatten());
        }
        at.sort_unstable();
        at.dedup();
        let mut tasks: Vec<String> = at.into_iter().map(|i| self.tasks[i].0.clone()).collect();
        tasks.sort_unstable();
        crate::agent::peer::RunnerRights {
            user: self.by_uid.contains_key(&peer.uid),
            groups,
            tasks,
        }
    }

    /// The tasks `peer` runs (its uid, primary group or a supplementary group is among the
    /// task's runners: [`crate::agent::authz::is_runner`]), in the policy's order, as
    /// (name, length of its `tasks` entry); with `only`, that task alone if the peer runs it.
    pub(crate) fn of(
        &self,
        peer: &crate::agent::peer::PeerIdentity,
        runners: &HashMap<String, Runners>,
        only: Option<&str>,
    ) -> Vec<(&str, usize)> {
        let mut found: Vec<usize> = match only {
            Some(t) => self
                .by_name
                .get(t)
                .filter(|_| crate::agent::authz::is_runner(runners.get(t), peer))
                .into_iter()
                .copied()
                .collect(),
            None => {
                let mut found = self.by_uid.get(&peer.uid).cloned().unwrap_or_default();
                if !self.by_gid.is_empty() {
                    for g in peer.all_groups() {
                        found.extend(self.by_gid.get(&g).into_iter().flatten());
                    }
                    found.sort_unstable();
                    found.dedup();
                }
                found
            }
        };
        #[cfg(test)]
        TASKS_VISITED.with(|n| n.set(n.get() + found.len()));
        found
            .drain(..)
            .filter_map(|i| self.tasks.get(i))
            .map(|(name, len)| (name.as_str(), *len))
            .collect()
    }
}

/// The names of what `fetch` hands out of a credential `kind` declares (never a value): its
/// plain fields and secrets, but of a `totp` credential its plain fields alone (its runners
/// get the code, never a secret: [`CredentialKind::hands_out_secrets`]).
pub(crate) fn handed_out_names(kind: CredentialKind, held: &CredView<'_>) -> Vec<String> {
    let secrets = held.secrets.keys().filter(|_| kind.hands_out_secrets());
    held.fields.keys().chain(secrets).cloned().collect()
}

pub(crate) struct State {
    slot: RwLock<Option<Opened>>,
}

impl State {
    /// A locked state.
    pub(crate) fn locked() -> State {
        State {
            slot: RwLock::new(None),
        }
    }

    /// Run `f` with the current vault (or `None` when locked).
    pub(crate) fn with<R>(&self, f: impl FnOnce(Option<&Opened>) -> R) -> R {
        let guard = self.slot.read().unwrap_or_else(|p| p.into_inner());
        f(guard.as_ref())
    }

    /// Put an opened vault in the slot (the previous one, if any, is dropped and zeroed). The
    /// databases' generation moves on once it is in place: every connection's rights are
    /// decided again with its names, and a ticket issued before is judged again at its
    /// redemption (its task's `schedulers` may have changed).
    pub(crate) fn set(&self, opened: Opened) {
        let old = {
            let mut guard = self.slot.write().unwrap_or_else(|p| p.into_inner());
            guard.replace(opened)
        };
        crate::accounts::databases_changed();
        // Dropped outside the lock (zeroing ten thousand secrets takes a moment), then the
        // parse garbage of the open and the old vault are given back to the kernel.
        drop(old);
        crate::sys::release_free_memory();
    }

    /// Resolve every user and group name of the loaded policy again (runners' users and
    /// groups, schedulers), as a load does, and put the result in place under the slot's write
    /// lock: every decision after this uses the new ids, none a mix. Called when
    /// `/etc/passwd` or `/etc/group` changed: a runner named by name kept the uid it resolved
    /// to at the load, so after `userdel` and `useradd` of another user given the same uid,
    /// that user fetched the old one's secrets until a `reload` (twenty-eighth pass). Then
    /// the databases' generation moves on (locked too: a connection's groups are looked up
    /// again), never before the names are in place.
    pub(crate) fn names_changed(&self) {
        {
            let mut guard = self.slot.write().unwrap_or_else(|p| p.into_inner());
            if let Some(o) = guard.as_mut() {
                let (runners, schedulers, index) = derive_names(o.vault.as_ref());
                o.runners = runners;
                o.schedulers = schedulers;
                o.index = index;
            }
        }
        crate::accounts::databases_changed();
    }

    /// Forget the vault (its key and secrets are zeroed as they drop), calling `record` (the
    /// `lock` op's audit record) while the slot is held for writing: a fetch decides and
    /// queues its record under the read lock, so one decided before the lock is queued before
    /// the lock's record, and one refused as locked after it.
    pub(crate) fn lock_recorded(&self, record: impl FnOnce()) {
        let old = {
            let mut guard = self.slot.write().unwrap_or_else(|p| p.into_inner());
            record();
            guard.take()
        };
        drop(old);
        crate::sys::release_free_memory();
    }
}

/// The real vault as the daemon holds it, with the options to reopen it on reload.
pub(crate) struct LoadedVault {
    vault: crate::vault::Vault,
    opts: crate::vault::OpenOptions,
    stamp: Option<FileStamp>,
}

impl LoadedVault {
    /// A vault just opened; its file's stamp is taken now. Its reloads never accept a
    /// rollback, whatever `opts` says: `serve --allow-rollback` is for the file found at start
    /// (vault-format.md, "Rollback detection").
    ///
    /// Its reloads refuse a file of another vault (the daemon keeps the vault it loaded), and,
    /// when it was accepted below the rollback record (the restore of a `serve
    /// --allow-rollback` run), accept that restore again, never a generation below it.
    pub(crate) fn new(vault: crate::vault::Vault, opts: crate::vault::OpenOptions) -> Self {
        let stamp = stamp_of(vault.path());
        let opts = crate::vault::OpenOptions {
            allow_rollback: false,
            vault_id: Some(vault.id().to_owned()),
            restored_from: vault
                .rollback_warning()
                .is_some()
                .then(|| vault.generation()),
            // Every request but `health` waits for the load of a saved file: it gives up on
            // the rollback record's lock soon (`busy`), and the loaded vault is served.
            record_wait: Some(crate::vault::DAEMON_RECORD_LOCK_WAIT),
            ..opts
        };
        LoadedVault { vault, opts, stamp }
    }
}

/// A vault error as a client sees it: unlock failures are `denied`, a refused file
/// `vault_refused` (the client exits 4, as a command refusing it does), the rest `internal`.
/// Vault errors never carry secret values, so the message is passed on.
pub(crate) fn vault_error(e: &crate::vault::VaultError) -> ErrorBody {
    use crate::protocol::ErrorCode;
    let code = if matches!(e, crate::vault::VaultError::RecordBusy { .. }) {
        // The rollback record's lock held by another process: try again later.
        ErrorCode::Busy
    } else if e.is_unlock_failure() {
        ErrorCode::Denied
    } else if e.is_refusal() {
        // It was `internal`, "a daemon bug or unexpected I/O error", and the client exited 5
        // (nineteenth pass, found by attacking from the documents).
        ErrorCode::VaultRefused
    } else if matches!(e, crate::vault::VaultError::EmptyPassphrase) {
        // Refused before any slot is tried: the request, not the key, is wrong.
        ErrorCode::BadRequest
    } else {
        ErrorCode::Internal
    };
    ErrorBody::new(code, e.to_string())
}

/// A policy's runner users, runner groups and schedulers resolved to ids against one reading
/// of `/etc/passwd` and `/etc/group`, each name once (numbers are taken literally).
#[derive(Default)]
pub(crate) struct ResolvedNames {
    pub runners: HashMap<String, Runners>,
    /// Each task's `schedulers` (absent: no entry).
    pub schedulers: HashMap<String, Vec<u32>>,
    /// One line for the admin per name that resolves to nobody on this host.
    pub unresolved: Vec<String>,
}

/// Resolve every runner and scheduler name of `policy` ([`ResolvedNames`]).
pub(crate) fn resolve_names(policy: &Policy) -> ResolvedNames {
    let db = crate::accounts::Databases::read();
    let text = crate::text::escape_for_terminal;
    let mut out = ResolvedNames::default();
    for (task, t) in policy.tasks() {
        let mut resolve = |what: &str, name: &str, is_user: bool| -> Option<u32> {
            if let Ok(id) = name.parse::<u32>() {
                return Some(id);
            }
            let found = if is_user {
                db.resolve_user(name)
            } else {
                db.resolve_group(name)
            };
            match found {
                Ok(id) => return Some(id),
                Err(Unresolved::Missing { db }) => out.unresolved.push(format!(
                    "task `{}`: {what} `{}` does not exist on this host ({db}): it matches nobody",
                    text(task),
                    text(name)
                )),
                // A line glibc would use but scopevault does not (docs/operations.md).
                Err(e) => out.unresolved.push(format!(
                    "task `{}`: {what} `{}`: {e}: it matches nobody",
                    text(task),
                    text(name)
                )),
            }
            None
        };
        let uids: Vec<u32> = t
            .runner_users()
            .into_iter()
            .filter_map(|u| resolve("runner user", u, true))
            .collect();
        let gids: Vec<u32> = t
            .runner_groups()
            .into_iter()
            .filter_map(|g| resolve("runner group", g, false))
            .collect();
        let scheduler_uids: Vec<u32> = t
            .schedulers()
            .into_iter()
            .filter_map(|u| resolve("scheduler", u, true))
            .collect();
        if t.schedulers.is_some() {
            out.schedulers.insert(task.to_owned(), scheduler_uids);
        }
        out.runners.insert(task.to_owned(), Runners { uids, gids });
    }
    out
}

/// The runner users, runner groups and schedulers of `policy`'s tasks that name no user or
/// group on this host (`/etc/passwd`, `/etc/group`; numbers are taken literally), one line
/// each for the admin: such a name matches nobody.
pub(crate) fn unresolved_names(policy: &Policy) -> Vec<String> {
    resolve_names(policy).unresolved
}

impl VaultView for LoadedVault {
    fn id(&self) -> &str {
        self.vault.id()
    }
    fn generation(&self) -> u64 {
        self.vault.generation()
    }
    fn credential_count(&self) -> usize {
        self.vault.credentials().len()
    }
    fn credential(&self, name: &str) -> Option<CredView<'_>> {
        self.vault.credentials().get(name).map(|c| CredView {
            kind: c.kind,
            scopes: &c.scopes,
            origins: &c.origins,
            fields: &c.fields,
            secrets: &c.secrets,
        })
    }
    fn policy(&self) -> Option<&Policy> {
        self.vault.policy()
    }
    fn file_payload(&self) -> Option<(&std::path::Path, &str)> {
        Some((self.vault.path(), self.vault.payload_digest()))
    }

    fn applied_bundle(&self) -> Option<&crate::vault::AppliedBundle> {
        self.vault.fleet_state()?.applied.as_ref()
    }
    fn reopen(&self) -> Result<Box<dyn VaultView>, ErrorBody> {
        // The stamp before the read: a save landing in between makes it differ again, so
        // that save is picked up next time rather than missed.
        let stamp = stamp_of(self.vault.path());
        let vault = self.vault.reopen(&self.opts).map_err(|e| vault_error(&e))?;
        Ok(Box::new(LoadedVault {
            vault,
            opts: self.opts.clone(),
            stamp,
        }))
    }
    fn stamp(&self) -> Option<FileStamp> {
        self.stamp
    }
    fn current_stamp(&self) -> Option<FileStamp> {
        stamp_of(self.vault.path())
    }
    fn restored_from(&self) -> Option<u64> {
        self.opts.restored_from
    }
}

#[cfg(test)]
mod tests {
    use super::vault_error;
    use crate::protocol::ErrorCode;
    use crate::vault::VaultError;

    /// A file the daemon refuses is `vault_refused` (the client exits 4), not `internal`
    /// (nineteenth pass, found by attacking from the documents); a wrong key stays `denied`
    /// and an I/O error `internal`.
    #[test]
    fn a_refused_vault_file_is_vault_refused_not_internal() {
        for refused in [
            VaultError::Forged,
            VaultError::Rollback {
                found: 1,
                seen: 3,
                fleet: None,
            },
            VaultError::Corrupt("x".into()),
            VaultError::LinkAtPath("/v".into()),
        ] {
            assert_eq!(
                vault_error(&refused).code,
                ErrorCode::VaultRefused,
                "{refused}"
            );
        }
        assert_eq!(
            vault_error(&VaultError::WrongKey("no slot".into())).code,
            ErrorCode::Denied
        );
        let io = VaultError::Io {
            path: "/v".into(),
            what: "cannot read the vault".into(),
            error: std::io::Error::other("EIO"),
        };
        assert_eq!(vault_error(&io).code, ErrorCode::Internal);
    }
}
