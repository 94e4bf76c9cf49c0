//! The policy: what each credential can do (scopes), what each monitoring task needs, who may
//! fetch for it, and the lint that compares the two. No secrets live here, and this module
//! imports nothing else of ours: the lint runs in CI with no vault and no daemon.
//!
//! ```
//! use scopevault::policy::Policy;
//! let p = Policy::parse(r#"
//! version = 1
//! [credentials.buyer]
//! kind = "login"
//! scopes = ["shop:login", "shop:orders:*"]
//! [tasks.checkout]
//! needs = ["shop:login", "shop:orders:create"]
//! credentials = ["buyer"]
//! runners = { users = ["checkpoint"] }
//! "#, "policy.toml").unwrap();
//! let today = time::macros::date!(2026 - 01 - 01);
//! let grant = p.check_grant("checkout", "buyer", today);
//! assert_eq!(grant.excess, vec!["shop:orders:*".to_owned()]);
//! ```

mod canonical;
mod error;
mod high_risk;
mod implies;
mod kind;
pub mod lint;
mod parse;
mod scope;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::ops::Range;
use std::path::Path;

pub use error::PolicyError;
pub use implies::{MAX_EDGES, MAX_EXPANSION, MAX_STEPS};
pub use kind::{CredentialKind, UnknownKind};
pub use lint::{LintOptions, Report};
pub use parse::MAX_COMPARED_BYTES;
pub(crate) use parse::{normalise_origin, parse_duration};
pub use scope::{Scope, ScopeError, MAX_SCOPE_BYTES};

use scope::GrantSet;

/// The largest policy file [`read_policy_file`] accepts (16 MiB): a policy is text reviewed by
/// people; anything larger is almost certainly the wrong file, and is refused before it is read
/// in full.
pub const MAX_POLICY_BYTES: u64 = 16 * 1024 * 1024;

/// What the daemon does with a credential that grants more than its task needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enforce {
    /// Hand it out with a warning (the default).
    Warn,
    /// Refuse it unless an unexpired exception covers exactly that excess.
    Deny,
}

impl Enforce {
    /// `warn` or `deny`, as in policy.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Enforce::Warn => "warn",
            Enforce::Deny => "deny",
        }
    }
}

/// Risk of a scope in the catalog.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Risk {
    /// Low risk.
    Low,
    /// Medium risk (the default when a catalog entry names none).
    Medium,
    /// High risk: granting it unneeded is a `high-risk-scope-unneeded` finding.
    High,
}

impl Risk {
    /// `low`, `medium` or `high`, as in policy.toml.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::Low => "low",
            Risk::Medium => "medium",
            Risk::High => "high",
        }
    }
}

/// A value and the byte range of the text it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Sp<T> {
    pub(crate) value: T,
    pub(crate) span: Range<usize>,
}

/// An entry of the scope catalog (`[scopes."shop:admin"]`).
#[derive(Debug, Clone)]
pub struct CatalogEntry {
    /// The catalog key, parsed.
    pub(crate) scope: Scope,
    pub(crate) span: Range<usize>,
    pub(crate) risk: Risk,
    pub(crate) implies: Vec<Sp<Scope>>,
    pub(crate) description: Option<String>,
}

impl CatalogEntry {
    /// The risk of this scope.
    pub fn risk(&self) -> Risk {
        self.risk
    }
    /// The scopes it implies directly.
    pub fn implies(&self) -> Vec<&str> {
        self.implies.iter().map(|s| s.value.as_str()).collect()
    }
    /// Its description, if any.
    pub fn description(&self) -> Option<&str> {
        self.description.as_deref()
    }
}

/// A declared credential (`[credentials.NAME]`): its kind, what it can do, where it may be used.
#[derive(Debug, Clone)]
///
/// Kept compact because the daemon holds one per declared credential for its lifetime: boxed
/// slices instead of vectors (no spare capacity), rarely present fields boxed, and `effective`
/// shares the text of the declared scopes (a [`Scope`] is a reference-counted string).
pub struct CredentialDecl {
    pub(crate) span: Range<usize>,
    pub(crate) kind: Sp<CredentialKind>,
    pub(crate) scopes: Box<[Sp<Scope>]>,
    pub(crate) origins: Box<[Sp<String>]>,
    pub(crate) owner: Option<Box<str>>,
    pub(crate) rotate_every: Option<Box<Sp<time::Duration>>>,
    /// Scopes expanded by the catalog, sorted and without duplicates.
    pub(crate) effective: Box<[Scope]>,
}

impl CredentialDecl {
    /// Its kind.
    pub fn kind(&self) -> CredentialKind {
        self.kind.value
    }
    /// Its declared scopes, as written (invalid ones left out).
    pub fn scopes(&self) -> Vec<&str> {
        self.scopes.iter().map(|s| s.value.as_str()).collect()
    }
    /// Its declared scopes expanded by the catalog's `implies`, sorted.
    pub fn effective_scopes(&self) -> Vec<&str> {
        self.effective.iter().map(Scope::as_str).collect()
    }
    /// The origins it may be used on (normalised: lowercase, no trailing `/`, no default port).
    pub fn origins(&self) -> Vec<&str> {
        self.origins.iter().map(|s| s.value.as_str()).collect()
    }
    /// Who owns it (whom to ask about rotation).
    pub fn owner(&self) -> Option<&str> {
        self.owner.as_deref()
    }
    /// How often it must be rotated, if declared.
    pub fn rotate_every(&self) -> Option<time::Duration> {
        self.rotate_every.as_deref().map(|d| d.value)
    }

    /// How a vault entry of this name, stored with `kind`, `scopes` and `origins`, differs
    /// from this declaration (lists compared as sets). `policy apply` stores the declaration
    /// in the entry, but an entry can come apart from it (`cred import` after `cred rm`, a
    /// vault saved by an older scopevault); the daemon then hands it out as declared, and the
    /// lint's `vault-differs-from-policy` and `doctor` report it.
    pub fn stored_differences<S: AsRef<str>>(
        &self,
        kind: CredentialKind,
        scopes: &[S],
        origins: &[S],
    ) -> StoredDifferences {
        StoredDifferences {
            kind: (kind != self.kind.value).then_some(kind),
            scopes: !same_set(scopes, self.scopes.iter().map(|s| s.value.as_str())),
            origins: !same_set(origins, self.origins.iter().map(|s| s.value.as_str())),
        }
    }
}

/// Whether `stored` and `declared` hold the same strings, duplicates aside. Linear when both
/// are in the same order (an entry `policy apply` wrote and the canonical policy the vault
/// holds: both sorted), sorting otherwise: the daemon asks it on every fetch.
fn same_set<'a, S: AsRef<str>>(
    stored: &[S],
    declared: impl Iterator<Item = &'a str> + Clone,
) -> bool {
    if stored.len() == declared.clone().count()
        && stored.iter().map(AsRef::as_ref).eq(declared.clone())
    {
        return true;
    }
    let a: BTreeSet<&str> = stored.iter().map(AsRef::as_ref).collect();
    let b: BTreeSet<&str> = declared.collect();
    a == b
}

/// What a vault entry differs in from its credential's declaration
/// ([`CredentialDecl::stored_differences`]). Names kinds only, never a stored scope or origin:
/// the daemon puts [`StoredDifferences::describe`] in a fetch's warnings.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoredDifferences {
    /// The entry's kind, when it is not the declared one.
    pub kind: Option<CredentialKind>,
    /// The entry's scopes are not the declared ones.
    pub scopes: bool,
    /// The entry's origins are not the declared ones.
    pub origins: bool,
}

impl StoredDifferences {
    /// Whether the entry is as declared.
    pub fn is_empty(&self) -> bool {
        self.kind.is_none() && !self.scopes && !self.origins
    }

    /// What differs, e.g. "kind `login`, scopes and origins".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(k) = self.kind {
            parts.push(format!("kind `{k}`"));
        }
        if self.scopes {
            parts.push("scopes".to_owned());
        }
        if self.origins {
            parts.push("origins".to_owned());
        }
        match parts.len() {
            0 => String::new(),
            1 => parts.remove(0),
            n => {
                let last = parts.remove(n - 1);
                format!("{} and {last}", parts.join(", "))
            }
        }
    }
}

/// Users or groups as written in the policy: names or numeric ids, each with its span.
pub(crate) type Names = Box<[Sp<String>]>;

/// Who may fetch for a task: peer uids/gids given as names or numbers.
#[derive(Debug, Clone)]
pub(crate) struct Runners {
    pub(crate) span: Range<usize>,
    pub(crate) users: Box<[Sp<String>]>,
    pub(crate) groups: Box<[Sp<String>]>,
}

/// A monitoring task (`[tasks.NAME]`): what it needs, which credentials serve it, who runs it.
///
/// Compact for the same reason as [`CredentialDecl`]: boxed slices and boxed optional parts.
#[derive(Debug, Clone)]
pub struct Task {
    pub(crate) span: Range<usize>,
    pub(crate) needs: Box<[Sp<Scope>]>,
    pub(crate) credentials: Box<[Sp<String>]>,
    pub(crate) runners: Option<Box<Runners>>,
    pub(crate) origin: Option<Box<Sp<String>>>,
    /// Fleet: the locations (`[locations.NAME]`) where the task runs.
    pub(crate) locations: Box<[Sp<String>]>,
    /// Users (names or numeric uids) a `serve --scheduler` must be to get tickets for the
    /// task; `None` when the key is absent (only admins get tickets), the span of the list.
    pub(crate) schedulers: Option<Box<Sp<Names>>>,
}

impl Task {
    /// The scopes it needs (invalid ones left out).
    pub fn needs(&self) -> Vec<&str> {
        self.needs.iter().map(|s| s.value.as_str()).collect()
    }
    /// The credentials it lists, in order.
    pub fn credentials(&self) -> Vec<&str> {
        self.credentials.iter().map(|s| s.value.as_str()).collect()
    }
    /// Users (names or numeric uids) who may fetch for it.
    pub fn runner_users(&self) -> Vec<&str> {
        self.runners
            .iter()
            .flat_map(|r| r.users.iter().map(|u| u.value.as_str()))
            .collect()
    }
    /// Groups (names or numeric gids) whose members may fetch for it.
    pub fn runner_groups(&self) -> Vec<&str> {
        self.runners
            .iter()
            .flat_map(|r| r.groups.iter().map(|g| g.value.as_str()))
            .collect()
    }
    /// The origin the task works on (normalised), if declared.
    pub fn origin(&self) -> Option<&str> {
        self.origin.as_ref().map(|o| o.value.as_str())
    }
    /// `origin-mismatch`, the one check the lint and the daemon share: the task's origin when
    /// it declares one that is not among `cred`'s origins (a credential that declares no
    /// origins matches none: before the twenty-eighth pass the daemon gave no warning for it).
    pub(crate) fn origin_mismatch<'a>(&'a self, cred: &CredentialDecl) -> Option<&'a Sp<String>> {
        self.origin
            .as_deref()
            .filter(|origin| !cred.origins.iter().any(|o| o.value == origin.value))
    }
    /// Fleet: the locations where the task runs, as listed.
    pub fn locations(&self) -> Vec<&str> {
        self.locations.iter().map(|s| s.value.as_str()).collect()
    }
    /// Users (names or numeric uids) who, when the daemon runs with `--scheduler` for them,
    /// may ask for tickets for this task, as listed. Empty when the task has no `schedulers`
    /// (only admins get tickets for it).
    pub fn schedulers(&self) -> Vec<&str> {
        self.schedulers
            .iter()
            .flat_map(|s| s.value.iter().map(|u| u.value.as_str()))
            .collect()
    }
}

/// Fleet: a checkpoint location (`[locations.NAME]`) and the age recipient of its vault.
#[derive(Debug, Clone)]
pub struct Location {
    pub(crate) span: Range<usize>,
    /// As written; the lint's `invalid-recipient` checks it.
    pub(crate) recipient: Sp<String>,
}

impl Location {
    /// The age recipient (`age1…`) its bundles are encrypted to, as written.
    pub fn recipient(&self) -> &str {
        &self.recipient.value
    }
}

/// A reviewed, expiring exception to one finding (`[[exceptions]]`).
#[derive(Debug, Clone)]
pub struct Exception {
    pub(crate) span: Range<usize>,
    pub(crate) rule: Sp<String>,
    pub(crate) credential: Option<Sp<String>>,
    pub(crate) task: Option<Sp<String>>,
    pub(crate) scopes: Vec<Sp<Scope>>,
    pub(crate) reason: Option<Sp<String>>,
    pub(crate) expires: Option<Sp<time::Date>>,
    /// Some of its scopes broke the grammar (reported as `invalid-scope`): it matches nothing.
    pub(crate) scopes_invalid: bool,
    /// Its `origin`, `runner` or `variable`: what tells the finding it hides from the others
    /// of its rule with the same credential, task and scopes ([`lint::Finding::detail`]).
    pub(crate) subject: Option<(SubjectKey, Sp<String>)>,
}

/// The key an exception names its finding's subject with, beside credential, task and scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SubjectKey {
    /// `origin`: the task's origin of an `origin-mismatch` (normalised).
    Origin,
    /// `runner`: `user:NAME` or `group:NAME` of a `runner-never-seen`.
    Runner,
    /// `variable`: the environment variable of an `env-name-collision`.
    Variable,
}

impl SubjectKey {
    /// The key as policy.toml writes it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            SubjectKey::Origin => "origin",
            SubjectKey::Runner => "runner",
            SubjectKey::Variable => "variable",
        }
    }
}

impl Exception {
    /// The rule id it excepts.
    pub fn rule(&self) -> &str {
        &self.rule.value
    }
    /// Whether it is in force on `today`: it has a reason and an expiry, and `today` is before
    /// the expiry date (an exception expiring on 2027-03-01 stops hiding on that day).
    pub fn in_force(&self, today: time::Date) -> bool {
        self.reason
            .as_ref()
            .is_some_and(|r| !r.value.trim().is_empty())
            && self.expires.as_ref().is_some_and(|e| today < e.value)
    }
    /// The subject it names beside credential, task and scopes, as a finding's detail.
    pub(crate) fn subject(&self) -> Option<&str> {
        self.subject.as_ref().map(|(_, v)| v.value.as_str())
    }
    /// The scopes it names, sorted.
    pub(crate) fn scope_set(&self) -> Vec<String> {
        let set: BTreeSet<String> = self.scopes.iter().map(|s| s.value.to_string()).collect();
        set.into_iter().collect()
    }
}

/// Something the lenient parse found that makes the policy invalid but still lintable:
/// reported by the lint as an `invalid-scope` or `implies-cycle` finding, refused by
/// [`Policy::parse`].
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) rule: lint::RuleId,
    pub(crate) span: Range<usize>,
    pub(crate) message: String,
    pub(crate) help: String,
    pub(crate) credential: Option<String>,
    pub(crate) task: Option<String>,
    pub(crate) scopes: Vec<String>,
}

/// A parsed, validated policy. Every element keeps the byte range it came from, so findings
/// point at `file:line:col`.
#[derive(Debug, Clone)]
pub struct Policy {
    pub(crate) path: String,
    /// The text it was parsed from: findings point into it.
    pub(crate) source: std::sync::Arc<str>,
    pub(crate) enforce: Enforce,
    pub(crate) max_credential_age: Option<Sp<time::Duration>>,
    pub(crate) catalog: BTreeMap<String, CatalogEntry>,
    pub(crate) credentials: BTreeMap<String, CredentialDecl>,
    pub(crate) tasks: BTreeMap<String, Task>,
    pub(crate) exceptions: Vec<Exception>,
    /// Fleet: `[locations.NAME]`, sorted by name.
    pub(crate) locations: BTreeMap<String, Location>,
    pub(crate) problems: Vec<Problem>,
    /// The catalog's `implies` as a graph, walked on demand (no closure per key).
    pub(crate) graph: implies::ImpliesGraph,
    /// The steps the parse's expansions of every credential and task took together (scopes
    /// and keys looked at, graph nodes and edges walked): what the tests check grows linearly.
    pub(crate) expansion_steps: u64,
    /// The bytes the (task, credential) comparisons were charged against
    /// [`MAX_COMPARED_BYTES`]: what the tests check bounds the report.
    pub(crate) compared_bytes: u64,
    /// The catalog's high-risk scopes, sorted, for `high-risk-scope-unneeded`.
    pub(crate) high_risk: high_risk::HighRiskIndex,
}

/// The scope check for one (task, credential) pair: what the credential can do beyond what the
/// task needs. The daemon uses it at runtime; the lint's `scope-exceeds-task` uses the same code.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grant {
    /// Effective scopes of the credential not needed by the task, sorted.
    pub excess: Vec<String>,
    /// The subset of `excess` that is, or grants, a catalog scope of risk `high` the task
    /// does not need.
    pub high_risk: Vec<String>,
    /// An exception in force (rule `scope-exceeds-task`, this credential and task) covers
    /// exactly this excess.
    pub excepted: bool,
    /// The expiry date of the exception for exactly this excess: while [`Grant::excepted`],
    /// the latest of those in force (it stops covering on that day); otherwise the latest of
    /// those that have expired, if any, so that a refusal says the exception expired and must
    /// be renewed, not that one is to be added (twenty-eighth pass).
    pub exception_expires: Option<time::Date>,
}

impl Grant {
    /// Whether the credential grants nothing beyond the task's needs.
    pub fn is_exact(&self) -> bool {
        self.excess.is_empty()
    }
}

/// Metadata of the vault the `--vault` rules need, as plain input (the policy module knows no
/// vault): which declared credentials have a secret, and when each was last rotated.
#[derive(Debug, Clone, Default)]
pub struct VaultMeta {
    /// Stored credentials by name.
    pub credentials: BTreeMap<String, CredentialMeta>,
}

/// What the lint needs to know about one stored credential.
#[derive(Debug, Clone)]
pub struct CredentialMeta {
    /// Whether a secret value is stored for it.
    pub has_secret: bool,
    /// When its secret was last set or rotated.
    pub rotated: time::OffsetDateTime,
    /// Whether it holds both TOTP seed fields, `totp_seed` and `otpauth` (a vault saved by an
    /// older scopevault): its fetch fails (`both-totp-seeds`).
    pub both_totp_seeds: bool,
    /// A TOTP seed field it holds that gives no code, and why (a vault saved by an older
    /// scopevault): `publish` and `bundle apply` refuse it, a fetch fails
    /// (`unusable-totp-seed`). Never the value.
    pub unusable_totp_seed: Option<UnusableTotpSeed>,
    /// The TOTP seed field it holds (`totp_seed` or `otpauth`), if any: of a credential
    /// declared with another kind than `totp`, the seed itself is handed out
    /// (`totp-seed-handed-out`).
    pub totp_seed: Option<String>,
    /// The secret fields it holds other than `totp_seed` and `otpauth` (names, never a
    /// value): of a credential declared `totp`, which holds only its seed, they are never
    /// handed out and every writer refuses them (`secret-beside-totp-seed`).
    pub beside_seed: Vec<String>,
    /// The kind, scopes and origins its entry is stored with (`vault-differs-from-policy`);
    /// `None` when not known, and then that rule does not judge it.
    pub stored: Option<StoredAs>,
    /// The names of its plain and secret fields, never a value: `env-name-collision` names
    /// the variables `exec` would hand them over in.
    pub fields: Vec<String>,
}

/// A stored TOTP seed that gives no code ([`CredentialMeta::unusable_totp_seed`]): the field
/// and why, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnusableTotpSeed {
    /// The secret field, `totp_seed` or `otpauth`.
    pub field: String,
    /// Why it gives no code (a [`crate::agent::totp::TotpError`]'s text, which never quotes
    /// the seed).
    pub why: String,
}

/// The kind, scopes and origins a vault entry is stored with: what
/// [`CredentialDecl::stored_differences`] compares with the declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredAs {
    /// Its kind.
    pub kind: CredentialKind,
    /// Its scopes.
    pub scopes: Vec<String>,
    /// Its origins.
    pub origins: Vec<String>,
}

/// Read a policy file: refuse anything but a regular file at once, files over
/// [`MAX_POLICY_BYTES`] before reading them in full, and non-UTF-8 text with the place of the
/// first bad byte.
pub fn read_policy_file(path: &Path) -> Result<String, PolicyError> {
    read_policy_source(path).map(|s| s.text)
}

/// A policy file as [`read_policy_source`] read it.
pub struct PolicySource {
    /// Its text.
    pub text: String,
    /// The metadata of the file the text was read from, taken on the descriptor read: that
    /// very file, whatever the path leads to by the time it is looked at again (`lint` asks
    /// whether its real path lies in the repository).
    pub file: std::fs::Metadata,
}

/// [`read_policy_file`], with the metadata of the file read.
pub fn read_policy_source(path: &Path) -> Result<PolicySource, PolicyError> {
    let shown = path.display().to_string();
    let io = |error| PolicyError::Io {
        path: shown.clone(),
        error,
    };
    // A pull request can commit `policy.toml` as a FIFO or as a link to `/dev/ptmx`, which a
    // plain open or read waits on for ever (nineteenth pass), and opening some devices does
    // something. `open_regular` judges what the path leads to without opening it and opens a
    // regular file only, the very one judged (a link flipped between a `stat` and an open by
    // name got the device opened).
    let file = crate::sys::open_regular(path, false).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.len() > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            path: shown,
            size: meta.len(),
            limit: MAX_POLICY_BYTES,
        });
    }
    // A file can grow after `fstat`, and some report no size (`/proc`): cap the read too.
    let mut bytes = Vec::new();
    file.take(MAX_POLICY_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() as u64 > MAX_POLICY_BYTES {
        return Err(PolicyError::TooLarge {
            path: shown,
            size: bytes.len() as u64,
            limit: MAX_POLICY_BYTES,
        });
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        let bytes = e.as_bytes();
        // Line 1 starts after a byte order mark: columns do not count it.
        let line_start = bytes[..offset]
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(error::bom_len(bytes).min(offset), |i| i + 1);
        let line = bytes[..offset].iter().filter(|b| **b == b'\n').count() + 1;
        let column = String::from_utf8_lossy(&bytes[line_start..offset])
            .chars()
            .count()
            + 1;
        PolicyError::NotUtf8 {
            path: shown,
            line,
            column,
            offset,
        }
    })?;
    Ok(PolicySource { text, file: meta })
}

/// The rule every name in a policy follows (tasks, credentials, locations, scopes' owners):
/// 1-128 characters of `A-Z`, `a-z`, `0-9`, `.`, `_`, `-`, starting with a letter or digit,
/// as a vault's credential names do ([`crate::vault::validate_name`]). What a bundle's
/// manifest names is checked with it too, before it is shown or exported.
///
/// Any first character of the set was allowed until the twenty-second pass: a location `-rf`
/// passed lint and publish, and then `bundle apply --location -rf` (the shipped playbook's
/// argv) read it as options; task names reach `--task` the same way; and a credential `..`,
/// `.` or `_a` passed lint (exit 0) while `policy apply` refused it, so a policy green in CI
/// could not be applied. A policy a vault stored before then is read with [`is_stored_name`].
pub fn is_valid_name(v: &str) -> bool {
    is_stored_name(v) && v.as_bytes()[0].is_ascii_alphanumeric()
}

/// The name rule before the twenty-second pass (any first character of the set): what a vault may
/// already store, in its policy or its applied record, and must still read.
pub fn is_stored_name(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 128
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// The part of `scopevault exec`'s environment variable names a credential or field name
/// gives: ASCII letters and digits upper-cased, anything else `_` (`shop-buyer` and
/// `Shop.Buyer` both give `SHOP_BUYER`). `exec` names a field `SCOPEVAULT_<credential>_<field>`;
/// the lint warns about two credentials of one task with the same part
/// (`env-name-collision`).
pub fn env_name_part(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

/// The environment variable `scopevault exec` hands field `field` of credential `credential`
/// over in: `SCOPEVAULT_<CREDENTIAL>_<FIELD>`, each part as [`env_name_part`] writes it. The
/// lint's `env-name-collision` names variables with it too, so the two agree.
pub fn env_var_name(credential: &str, field: &str) -> String {
    format!(
        "SCOPEVAULT_{}_{}",
        env_name_part(credential),
        env_name_part(field)
    )
}

/// The environment variables scopevault itself reads or sets, which `scopevault exec` must
/// never hand a credential's field over in: the CLI's `env =` options (`SCOPEVAULT_VAULT`,
/// `SCOPEVAULT_SOCKET`, `SCOPEVAULT_IDENTITY_FILE`, `SCOPEVAULT_AUDIT`), the state directory
/// (`paths::state_dir`), the two variables exec sets itself, and the test suite's hooks. A
/// credential `identity` with a field `file` would otherwise replace the caller's
/// `SCOPEVAULT_IDENTITY_FILE` with a secret, and a check that runs `scopevault` would use it
/// as a path (twenty-third pass). `exec` refuses such a field before it fetches, and
/// `lint --with-vault` reports it (`env-name-collision`). A test (`cli::args`) keeps this
/// list equal to what the code reads.
pub const RESERVED_ENV_VARS: &[&str] = &[
    "SCOPEVAULT_AUDIT",
    "SCOPEVAULT_CREDENTIALS_DIRECTORY",
    "SCOPEVAULT_IDENTITY_FILE",
    "SCOPEVAULT_SKIP_LOG",
    "SCOPEVAULT_SOCKET",
    "SCOPEVAULT_STATE_DIR",
    "SCOPEVAULT_TASK",
    "SCOPEVAULT_TEST_ARGON2",
    "SCOPEVAULT_VAULT",
];

/// Whether `exec` must not name a field's variable `var` ([`RESERVED_ENV_VARS`]).
pub fn is_reserved_env_var(var: &str) -> bool {
    RESERVED_ENV_VARS.contains(&var)
}

/// What [`is_valid_name`] asks, for messages.
pub const NAME_RULE: &str =
    "1-128 characters of A-Z, a-z, 0-9, `.`, `_` or `-`, starting with a letter or digit";
impl Policy {
    /// Parse policy.toml text. `path` is only used in messages. Any text that is not a valid
    /// policy is an error carrying `file:line:col`: TOML syntax, wrong types, unknown keys
    /// (with a "did you mean"), bad durations or dates, scopes that break the grammar, and
    /// cycles in the catalog's `implies`.
    pub fn parse(source: &str, path: &str) -> Result<Policy, PolicyError> {
        Self::parse_valid(source, path, parse::Names::New)
    }

    /// [`Policy::parse`] for the policy a vault stores: its names are held to the rule they
    /// were written under ([`is_stored_name`]: a leading `-` is accepted), so that a vault
    /// saved before the twenty-second pass still opens. New policy text (`lint`, `policy
    /// apply`, `publish`, a bundle's policy) goes through [`Policy::parse`].
    pub fn parse_stored(source: &str, path: &str) -> Result<Policy, PolicyError> {
        Self::parse_valid(source, path, parse::Names::Stored)
    }

    /// [`Policy::parse`] and [`Policy::parse_stored`]: the text parsed with names held to
    /// `names`, its first problem (an invalid scope, an `implies` cycle) an error.
    fn parse_valid(source: &str, path: &str, names: parse::Names) -> Result<Policy, PolicyError> {
        let policy = parse::parse(source, path, names)?;
        if let Some(p) = policy.problems.first() {
            return Err(PolicyError::invalid(
                path,
                source,
                p.span.clone(),
                format!("{}; {}", p.message, p.help),
            ));
        }
        Ok(policy)
    }

    /// Like [`Policy::parse`], but invalid scopes and `implies` cycles are kept as findings for
    /// the lint (the offending scope is left out of the model) instead of stopping at the first.
    pub(crate) fn parse_lenient(source: &str, path: &str) -> Result<Policy, PolicyError> {
        parse::parse(source, path, parse::Names::New)
    }

    /// Canonical TOML of the model: sections and names sorted, lists sorted and de-duplicated
    /// (except a task's credentials, which keep their order), values normalised. Parsing it gives a policy whose canonical TOML is byte-identical.
    pub fn to_canonical_toml(&self) -> String {
        canonical::write(self)
    }

    /// [`Policy::to_canonical_toml`], refused when it is larger than [`MAX_POLICY_BYTES`]:
    /// the canonical form writes every default out, so a file under the limit can have one
    /// over it, which `policy export` would print and `lint` and `policy apply` refuse.
    /// Whatever stores a policy (`policy apply`, `publish`, `bundle apply`) checks this first,
    /// so a stored policy can always be exported and applied again.
    pub fn canonical_toml_within_limit(&self) -> Result<String, PolicyError> {
        let canonical = self.to_canonical_toml();
        if canonical.len() as u64 > MAX_POLICY_BYTES {
            return Err(PolicyError::CanonicalTooLarge {
                path: self.path.clone(),
                size: canonical.len() as u64,
                limit: MAX_POLICY_BYTES,
            });
        }
        Ok(canonical)
    }

    /// `sha256:` and the hex SHA-256 of [`Policy::to_canonical_toml`]: names what the policy
    /// says, whatever order or comments its file had (the daemon's `vault.load` records carry
    /// it, docs/audit.md).
    pub fn digest(&self) -> String {
        crate::fleet::bundle::digest(self.to_canonical_toml().as_bytes())
    }

    /// The file name used in messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// What the daemon does with an over-scoped credential.
    pub fn enforce(&self) -> Enforce {
        self.enforce
    }

    /// The rotation threshold of `[settings] max_credential_age`, if set.
    pub fn max_credential_age(&self) -> Option<time::Duration> {
        self.max_credential_age.as_ref().map(|d| d.value)
    }

    /// A task by name.
    pub fn task(&self, name: &str) -> Option<&Task> {
        self.tasks.get(name)
    }

    /// Every task, sorted by name.
    pub fn tasks(&self) -> impl Iterator<Item = (&str, &Task)> {
        self.tasks.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// A declared credential by name.
    pub fn credential(&self, name: &str) -> Option<&CredentialDecl> {
        self.credentials.get(name)
    }

    /// Every declared credential, sorted by name.
    pub fn credentials(&self) -> impl Iterator<Item = (&str, &CredentialDecl)> {
        self.credentials.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The scope catalog, sorted by scope.
    pub fn catalog(&self) -> impl Iterator<Item = (&str, &CatalogEntry)> {
        self.catalog.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The exceptions, in file order.
    pub fn exceptions(&self) -> &[Exception] {
        &self.exceptions
    }

    /// Fleet: every declared location, sorted by name.
    pub fn locations(&self) -> impl Iterator<Item = (&str, &Location)> {
        self.locations.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Fleet: a location by name.
    pub fn location(&self, name: &str) -> Option<&Location> {
        self.locations.get(name)
    }

    /// Fleet: the canonical TOML of what `location` needs: its tasks (those listing it), the
    /// declared credentials they list, the settings and scope catalog, the exceptions about
    /// those tasks and credentials (or about neither), and `[locations.LOCATION]` alone. The
    /// same writer as [`Policy::to_canonical_toml`], so it is a fixed point too.
    pub fn location_subset_toml(&self, location: &str) -> String {
        canonical::write_filtered(self, Some(location))
    }

    /// As [`Policy::location_subset_toml`], with the location's tasks already known (from
    /// [`Policy::tasks_of_location`], or an index of every location built once).
    pub fn location_subset_toml_of(&self, location: &str, tasks: &BTreeSet<&str>) -> String {
        canonical::write_subset(self, Some((location, tasks)))
    }

    /// The names of the tasks that list `location`.
    pub fn tasks_of_location(&self, location: &str) -> BTreeSet<&str> {
        canonical::tasks_of_location(self, location)
    }

    /// The runtime scope check. `excess` are the effective scopes of `credential` not needed by
    /// `task`. An undeclared task needs nothing (everything is excess); an undeclared credential
    /// grants nothing. This does not check that the task lists the credential: authorisation
    /// is the caller's job.
    pub fn check_grant(&self, task: &str, credential: &str, today: time::Date) -> Grant {
        let Some(cred) = self.credentials.get(credential) else {
            return Grant::default();
        };
        let t = self.tasks.get(task);
        let mut needs = GrantSet::default();
        for s in self.expand_refs(t.map(|t| &*t.needs).unwrap_or(&[])) {
            needs.insert(s);
        }
        let (excess, high_risk) =
            self.excess(&needs, &mut high_risk::HighCover::default(), cred, &mut 0);
        let (excepted, exception_expires) = if excess.is_empty() {
            (false, None)
        } else {
            self.exception_of(task, credential, &excess, today)
        };
        Grant {
            excess,
            high_risk,
            excepted,
            exception_expires,
        }
    }

    /// Whether an exception in force for `origin-mismatch` (this credential and task, no
    /// scopes, `origin` the task's) hides that finding: the lint's matching of such an
    /// exception, for the daemon's warning.
    pub(crate) fn origin_excepted(
        &self,
        task: &str,
        credential: &str,
        origin: &str,
        today: time::Date,
    ) -> bool {
        self.exceptions.iter().any(|e| {
            e.rule.value == lint::RuleId::OriginMismatch.as_str()
                && e.credential.as_ref().is_some_and(|c| c.value == credential)
                && e.task.as_ref().is_some_and(|t| t.value == task)
                && !e.scopes_invalid
                && e.scopes.is_empty()
                && e.subject
                    .as_ref()
                    .is_some_and(|(k, v)| *k == SubjectKey::Origin && v.value == origin)
                && e.in_force(today)
        })
    }

    /// Whether an exception in force for `scope-exceeds-task` covers exactly `excess`, and
    /// the expiry date to name ([`Grant::exception_expires`]): the latest of those in force,
    /// else the latest of those with a reason that have expired.
    pub(crate) fn exception_of(
        &self,
        task: &str,
        credential: &str,
        excess: &[String],
        today: time::Date,
    ) -> (bool, Option<time::Date>) {
        let matching = self.exceptions.iter().filter(|e| {
            e.rule.value == "scope-exceeds-task"
                && e.credential.as_ref().is_some_and(|c| c.value == credential)
                && e.task.as_ref().is_some_and(|t| t.value == task)
                && !e.scopes_invalid
                && e.subject.is_none()
                && e.scope_set() == excess
        });
        let (mut in_force, mut expired) = (None, None);
        for e in matching {
            let Some(date) = e.expires.as_ref().map(|d| d.value) else {
                continue;
            };
            if e.in_force(today) {
                in_force = in_force.max(Some(date));
            } else if date <= today
                && e.reason
                    .as_ref()
                    .is_some_and(|r| !r.value.trim().is_empty())
            {
                expired = expired.max(Some(date));
            }
        }
        match in_force {
            Some(d) => (true, Some(d)),
            None => (false, expired),
        }
    }

    /// Excess and high-risk excess of `cred` against the (expanded) needs of a task, whose
    /// high-risk cover `cover` keeps (cleared by the caller for each task); adds the steps the
    /// high-risk check took to `steps`.
    pub(crate) fn excess(
        &self,
        needs: &GrantSet<'_>,
        cover: &mut high_risk::HighCover,
        cred: &CredentialDecl,
        steps: &mut u64,
    ) -> (Vec<String>, Vec<String>) {
        let mut excess = Vec::new();
        let mut high = Vec::new();
        for e in &cred.effective {
            if needs.grants(e) {
                continue;
            }
            excess.push(e.to_string());
            if self.grants_unneeded_high_risk(e, needs, cover, steps) {
                high.push(e.to_string());
            }
        }
        (excess, high)
    }

    /// Whether `s` is, or grants, a high-risk catalog scope that `needs` does not grant.
    fn grants_unneeded_high_risk(
        &self,
        s: &Scope,
        needs: &GrantSet<'_>,
        cover: &mut high_risk::HighCover,
        steps: &mut u64,
    ) -> bool {
        // The scope's own risk: that of the most specific catalog entry covering it, so
        // `payments:refund:create` under `payments:*` (high) is high risk (before the
        // twenty-eighth pass only a scope that was itself a catalog key had a risk).
        if self
            .covering_entry(s, steps)
            .is_some_and(|entry| entry.risk == Risk::High && !needs.grants(s))
        {
            return true;
        }
        if !s.is_wildcard() {
            return false;
        }
        // What a wildcard grants beneath it: not a scan of the catalog under the wildcard for
        // each task, ranges of the sorted high-risk scopes (high_risk.rs).
        self.high_risk
            .grants_unneeded(s.as_str(), needs, cover, steps)
    }

    /// The most specific catalog entry covering `s` (one that grants it), whose risk is the
    /// scope's: `s` itself, then for a plain `a:b` the wildcard `a:b:*`, then `a:*`, then `*`.
    /// A lookup per level, no scan; adds them to `steps`.
    pub(crate) fn covering_entry(&self, s: &Scope, steps: &mut u64) -> Option<&CatalogEntry> {
        let text = s.as_str();
        *steps += 1;
        if let Some(e) = self.catalog.get(text) {
            return Some(e);
        }
        if text == "*" {
            return None;
        }
        let mut key = String::with_capacity(text.len() + 2);
        let mut base = match text.strip_suffix(":*") {
            Some(b) => b,
            None => {
                // `a:b:*` grants `a:b` too.
                key.push_str(text);
                key.push_str(":*");
                *steps += 1;
                if let Some(e) = self.catalog.get(key.as_str()) {
                    return Some(e);
                }
                text
            }
        };
        while let Some(i) = base.rfind(':') {
            base = &base[..i];
            key.clear();
            key.push_str(base);
            key.push_str(":*");
            *steps += 1;
            if let Some(e) = self.catalog.get(key.as_str()) {
                return Some(e);
            }
        }
        *steps += 1;
        self.catalog.get("*")
    }

    /// The catalog entries `s` grants: itself, or everything under a wildcard. A range scan of
    /// the sorted catalog, so cost follows the number of matches, not the catalog size.
    pub(crate) fn catalog_granted_by<'p>(
        &'p self,
        s: &'p Scope,
    ) -> Box<dyn Iterator<Item = (&'p String, &'p CatalogEntry)> + 'p> {
        if !s.is_wildcard() {
            return Box::new(self.catalog.get_key_value(s.as_str()).into_iter());
        }
        let prefix = s.prefix();
        Box::new(
            self.catalog
                .range::<str, _>((
                    std::ops::Bound::Included(prefix),
                    std::ops::Bound::Unbounded,
                ))
                .take_while(move |(k, _)| k.starts_with(prefix))
                .filter(move |(_, e)| s.grants(&e.scope)),
        )
    }

    /// `scopes` expanded by the catalog's implies (transitively), sorted, de-duplicated,
    /// borrowed from the policy. The runtime
    /// check calls this once per request, so it must not allocate per scope.
    pub(crate) fn expand_refs<'p>(&'p self, scopes: &'p [Sp<Scope>]) -> Vec<&'p Scope> {
        self.expand_refs_counted(scopes).0
    }

    /// [`Policy::expand_refs`] and the steps it took.
    pub(crate) fn expand_refs_counted<'p>(
        &'p self,
        scopes: &'p [Sp<Scope>],
    ) -> (Vec<&'p Scope>, u64) {
        let mut out: Vec<&Scope> = Vec::with_capacity(scopes.len());
        let steps = self.expand_each(scopes, |s| out.push(s));
        out.sort_unstable();
        out.dedup();
        (out, steps)
    }

    /// Every scope of `scopes` and every scope the catalog says they imply, transitively, in
    /// no particular order and possibly repeated: for filling a set (the lint does this once
    /// per task, and neither sorts nor allocates).
    pub(crate) fn expand_each<'p>(
        &'p self,
        scopes: &'p [Sp<Scope>],
        mut f: impl FnMut(&'p Scope),
    ) -> u64 {
        for s in scopes {
            f(&s.value);
        }
        let mut steps = scopes.len() as u64;
        if self.graph.is_trivial() {
            return steps;
        }
        // The declared scopes of credentials and tasks were expanded once by the parse: their
        // targets are copied, not walked again (the runtime check expands a task's needs on
        // every request).
        if scopes
            .iter()
            .all(|s| self.graph.memo(s.value.as_str()).is_some())
        {
            for s in scopes {
                let reached = self.graph.memo(s.value.as_str()).unwrap_or_default();
                steps += reached.len() as u64;
                for &t in reached {
                    f(self.graph.target(t));
                }
            }
            return steps;
        }
        let mut start: Vec<u32> = Vec::new();
        for s in scopes {
            steps += self.start_of(&s.value, &mut start);
        }
        steps + self.graph.walk(start, |t| f(self.graph.target(t)))
    }

    /// The key nodes an expansion of `s` starts from (the catalog keys it grants that imply
    /// something), pushed on `start`; returns the steps taken. A plain scope grants at most
    /// itself (one lookup); a wildcard written in an `implies` too has its keys in the graph;
    /// another wildcard every key under it (a range scan).
    fn start_of(&self, s: &Scope, start: &mut Vec<u32>) -> u64 {
        if !s.is_wildcard() {
            start.extend(self.graph.key(s.as_str()));
            return 1;
        }
        if let Some(keys) = self.graph.keys_granted_by_target(s.as_str()) {
            start.extend_from_slice(keys);
            return 1 + keys.len() as u64;
        }
        let mut steps = 1;
        for (k, _) in self.catalog_granted_by(s) {
            steps += 1;
            start.extend(self.graph.key(k));
        }
        steps
    }

    /// The graph's target nodes `s` reaches through the catalog's `implies`, sorted, and the
    /// steps it took: what the parse memoises for each declared scope.
    pub(crate) fn reached_from(&self, s: &Scope) -> (Box<[u32]>, u64) {
        let mut start: Vec<u32> = Vec::new();
        let mut steps = self.start_of(s, &mut start);
        let mut out: Vec<u32> = Vec::new();
        steps += self.graph.walk(start, |t| out.push(t));
        out.sort_unstable();
        (out.into_boxed_slice(), steps)
    }
}

#[cfg(test)]
mod tests;
