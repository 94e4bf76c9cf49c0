//! The catalog of lint rules: stable ids, classes, descriptions. docs/lint-rules.md documents
//! each; a snapshot test pins the list so a rename is a visible change.

use serde::Serialize;

/// The class of a finding, as IAM Access Analyzer uses them; declared from most to least
/// severe, so `a < b` means `a` is more severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Class {
    /// The policy does not work.
    Error,
    /// The policy grants too much.
    SecurityWarning,
    /// Hygiene.
    Warning,
    /// A hint.
    Suggestion,
}

impl Class {
    /// Every class, most severe first.
    pub const ALL: [Class; 4] = [
        Class::Error,
        Class::SecurityWarning,
        Class::Warning,
        Class::Suggestion,
    ];

    /// `error`, `security-warning`, `warning` or `suggestion`.
    pub fn as_str(self) -> &'static str {
        match self {
            Class::Error => "error",
            Class::SecurityWarning => "security-warning",
            Class::Warning => "warning",
            Class::Suggestion => "suggestion",
        }
    }

    /// Whether a finding of this class blocks when `deny` is the least severe blocking class.
    pub fn blocks_at(self, deny: Class) -> bool {
        self <= deny
    }

    /// The SARIF `level` of this class.
    pub fn sarif_level(self) -> &'static str {
        match self {
            Class::Error => "error",
            Class::SecurityWarning | Class::Warning => "warning",
            Class::Suggestion => "note",
        }
    }
}

macro_rules! rules {
    ($(
        $(#[$doc:meta])*
        $variant:ident {
            id: $id:literal,
            class: $class:ident,
            security_severity: $sev:expr,
            needs_vault: $vault:literal,
            needs_audit: $audit:literal,
            exceptable: $exc:literal,
            short: $short:literal,
            full: $full:literal,
            help: $help:literal,
        },
    )*) => {
        /// A lint rule. The table in `rules!` below is the one place a rule's id, class,
        /// severity, description and generic help are written; each variant's doc names the
        /// check that finds it (and writes each finding's message and specific help).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum RuleId {
            $($(#[$doc])* $variant,)*
        }

        impl RuleId {
            /// Every rule, in documentation order.
            pub const ALL: &'static [RuleId] = &[$(RuleId::$variant,)*];
        }

        /// Every rule, in documentation order (the order of [`RuleId`]).
        pub const RULES: &[RuleInfo] = &[$(RuleInfo {
            rule: RuleId::$variant,
            id: $id,
            class: Class::$class,
            short: $short,
            full: $full,
            help: $help,
            security_severity: $sev,
            needs_vault: $vault,
            needs_audit: $audit,
            exceptable: $exc,
        },)*];
    };
}

/// One lint rule: its row of the table.
#[derive(Debug, Clone, Copy)]
pub struct RuleInfo {
    /// The rule.
    pub rule: RuleId,
    /// Stable kebab-case id.
    pub id: &'static str,
    /// Its class.
    pub class: Class,
    /// One line: what it detects.
    pub short: &'static str,
    /// Why it matters.
    pub full: &'static str,
    /// How to fix a finding.
    pub help: &'static str,
    /// SARIF `security-severity` (CVSS-like 0.0–10.0) for security findings.
    pub security_severity: Option<&'static str>,
    /// Whether it needs vault metadata (`--with-vault`).
    pub needs_vault: bool,
    /// Whether it needs audit logs (`--audit`).
    pub needs_audit: bool,
    /// Whether an `[[exceptions]]` entry may hide its findings (not errors, not the rules
    /// about exceptions themselves).
    pub exceptable: bool,
}

impl RuleId {
    /// The rule's row of the table.
    pub fn info(self) -> &'static RuleInfo {
        &RULES[self as usize]
    }

    /// The stable kebab-case id, e.g. `scope-exceeds-task`.
    pub fn as_str(self) -> &'static str {
        self.info().id
    }

    /// Its class.
    pub fn class(self) -> Class {
        self.info().class
    }

    /// The rule with this id, if any.
    pub fn from_id(id: &str) -> Option<RuleId> {
        RULES.iter().find(|r| r.id == id).map(|r| r.rule)
    }

    /// Whether a finding of this rule makes the policy invalid (`Policy::parse` refuses it;
    /// `lint` exits 2 after reporting).
    pub fn invalidates_policy(self) -> bool {
        matches!(self, RuleId::InvalidScope | RuleId::ImpliesCycle)
    }
}

impl std::fmt::Display for RuleId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for RuleId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

rules! {
    /// A task lists a credential that is not declared. Checked in `Linter::tasks`.
    UnknownCredential {
        id: "unknown-credential",
        class: Error,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "A task lists a credential that is not declared.",
        full: "The daemon can never hand the credential out: the task's check will fail at runtime.",
        help: "Declare the credential under [credentials.NAME], or fix the name in the task's `credentials`.",
    },
    /// A task needs a scope that none of its credentials grants. Checked in `Linter::tasks`.
    MissingScope {
        id: "missing-scope",
        class: Error,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "A task needs a scope that none of its credentials grants.",
        full: "The check will fail at runtime, or someone will later grant a broader credential in a hurry.",
        help: "Add a credential that grants the scope to the task, add the scope to one of its credentials, or drop the need.",
    },
    /// A scope breaks the grammar. Checked in `the parser (src/policy/parse.rs), reported by Linter::problems`.
    InvalidScope {
        id: "invalid-scope",
        class: Error,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "A scope breaks the grammar.",
        full: "Scopes are segments of a-z, 0-9, `_` and `-` joined by `:`, with an optional final `*`; anything else cannot be matched and is ignored, so the policy does not mean what it says.",
        help: "Rewrite the scope in the grammar, e.g. `shop:orders:read` or `shop:orders:*`.",
    },
    /// The scope catalog's `implies` entries form a cycle. Checked in `the parser (src/policy/parse.rs), reported by Linter::problems`.
    ImpliesCycle {
        id: "implies-cycle",
        class: Error,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "The scope catalog's `implies` entries form a cycle.",
        full: "A scope that implies itself through other scopes makes the catalog meaningless; the expansion stops at the cycle instead of looping, but the catalog needs fixing.",
        help: "Remove one `implies` entry of the cycle.",
    },
    /// An exception lacks a reason or an expiry, names an unknown or non-exceptable rule, or matches no finding. Checked in `Linter::exceptions`.
    InvalidException {
        id: "invalid-exception",
        class: Error,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "An exception lacks a reason or an expiry, names an unknown or non-exceptable rule, or matches no finding.",
        full: "An exception must be a reviewed, expiring decision about exactly one finding; one that matches nothing is stale or mistyped, and would silently hide a future finding.",
        help: "Give the exception a `reason` and an `expires` date, name a warning-class rule, and copy the rule, credential, task and scopes exactly from the finding; remove it if the finding is gone.",
    },
    /// A declared credential has no secret stored in the vault. Checked in `Linter::vault`.
    MissingSecret {
        id: "missing-secret",
        class: Error,
        security_severity: None,
        needs_vault: true,
        needs_audit: false,
        exceptable: false,
        short: "A declared credential has no secret stored in the vault.",
        full: "Tasks using it will fail at runtime.",
        help: "Store it with `scopevault cred add NAME` or `scopevault cred set NAME --secret KEY`.",
    },
    /// A declared credential is stored holding both TOTP seed fields. Checked in `Linter::vault`.
    BothTotpSeeds {
        id: "both-totp-seeds",
        class: Error,
        security_severity: None,
        needs_vault: true,
        needs_audit: false,
        exceptable: false,
        short: "A declared credential is stored holding both TOTP seed fields, `totp_seed` and `otpauth`.",
        full: "Codes come from one seed, so a credential holds one of them; a vault saved by an older scopevault may hold both, and then every fetch of a `totp` credential holding both fails rather than make a code from either: its tasks fail at runtime.",
        help: "Keep the seed in use: `scopevault cred set NAME --secret otpauth` (or `--secret totp_seed`) stores it and removes the other.",
    },
    /// A declared credential is stored holding a TOTP seed that gives no code. Checked in `Linter::vault`.
    UnusableTotpSeed {
        id: "unusable-totp-seed",
        class: Error,
        security_severity: None,
        needs_vault: true,
        needs_audit: false,
        exceptable: false,
        short: "A declared credential is stored holding a TOTP seed that gives no code (an otpauth URI with an `encoder` parameter, a seed that is not base32).",
        full: "Every writer refuses such a seed, but a vault saved by an older scopevault may hold one (an otpauth URI asking for Steam's codes with `encoder=steam`, which scopevault does not make); `publish` refuses to put it in a bundle, a checkpoint's `bundle apply` refuses a bundle carrying it, and every fetch of a `totp` credential holding it fails: its tasks fail at runtime.",
        help: "Store a usable seed: `scopevault cred set NAME --secret otpauth` (a standard otpauth://totp/ URI) or `--secret totp_seed` (base32), which replaces it.",
    },
    /// A credential declared `totp` is stored holding a secret other than its seed. Checked in `Linter::vault`.
    SecretBesideTotpSeed {
        id: "secret-beside-totp-seed",
        class: Error,
        security_severity: None,
        needs_vault: true,
        needs_audit: false,
        exceptable: false,
        short: "A credential declared `totp` is stored holding a secret other than its seed (`totp_seed` or `otpauth`).",
        full: "A `totp` credential holds only its seed, and its runners get codes, never a secret: the daemon hands out no secret of it, every writer refuses one (`cred add|set`, `cred import`, `sync`), and `publish` and `bundle apply` refuse a credential holding one. A vault saved by an older scopevault may hold one, typically the seed itself under another name (`cred add --kind totp --secret seed`), which that scopevault handed to every runner beside the code.",
        help: "Store the seed: `scopevault cred set NAME --secret totp_seed` (or `--secret otpauth`) stores it and removes every other secret of the credential; a secret a check needs belongs in a credential of another kind.",
    },
    /// A credential grants scopes its task does not need. Checked in `Linter::tasks`.
    ScopeExceedsTask {
        id: "scope-exceeds-task",
        class: SecurityWarning,
        security_severity: Some("6.5"),
        needs_vault: false,
        needs_audit: false,
        exceptable: true,
        short: "A credential grants scopes its task does not need.",
        full: "Least privilege: if the check or its host is compromised, everything the credential can do is exposed, not just what the monitor needs.",
        help: "Give the task a credential with only the scopes it needs (or narrow this one), or add a reviewed, expiring exception naming exactly these scopes.",
    },
    /// A scope the catalog marks `risk = "high"` is granted to a task that does not need it. Checked in `Linter::tasks`.
    HighRiskScopeUnneeded {
        id: "high-risk-scope-unneeded",
        class: SecurityWarning,
        security_severity: Some("8.0"),
        needs_vault: false,
        needs_audit: false,
        exceptable: true,
        short: "A scope the catalog marks `risk = \"high\"` is granted to a task that does not need it.",
        full: "High-risk scopes (administration, payments, user data) are the ones an attacker wants; no monitor should hold one it does not use.",
        help: "Remove the high-risk scope from the credential, or give the task a narrower credential.",
    },
    /// A credential holds a wildcard scope. Checked in `Linter::credentials`.
    WildcardScope {
        id: "wildcard-scope",
        class: SecurityWarning,
        security_severity: Some("5.0"),
        needs_vault: false,
        needs_audit: false,
        exceptable: true,
        short: "A credential holds a wildcard scope.",
        full: "A wildcard grants everything below its prefix, including scopes the target system adds later.",
        help: "List the exact scopes the credential needs instead of the wildcard.",
    },
    /// One credential serves tasks with different needs. Checked in `Linter::credentials`.
    SharedCredential {
        id: "shared-credential",
        class: SecurityWarning,
        security_severity: Some("4.0"),
        needs_vault: false,
        needs_audit: false,
        exceptable: true,
        short: "One credential serves tasks with different needs.",
        full: "A shared credential must grant the union of its tasks' needs, so each task holds more than it needs, and rotation or revocation hits every task at once.",
        help: "Give each task (or each group of tasks with the same needs) its own credential.",
    },
    /// A task's origin is not among its credential's origins. Checked in `Linter::tasks`.
    OriginMismatch {
        id: "origin-mismatch",
        class: SecurityWarning,
        security_severity: Some("5.5"),
        needs_vault: false,
        needs_audit: false,
        exceptable: true,
        short: "A task's origin is not among its credential's origins.",
        full: "The credential would be sent to a site it was not issued for, which is how credentials leak to the wrong system.",
        help: "Add the origin to the credential's `origins` if it is really meant for it, or use a credential issued for the task's origin.",
    },
    /// No task uses a credential. Checked in `Linter::credentials`.
    UnusedCredential {
        id: "unused-credential",
        class: Warning,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: true,
        short: "No task uses a credential.",
        full: "An unused credential is a secret to protect and rotate for no benefit.",
        help: "Remove it from the policy (and revoke it in the target system), or list it in the task that needs it.",
    },
    /// Nobody may fetch for a task. Checked in `Linter::tasks`.
    TaskWithoutRunners {
        id: "task-without-runners",
        class: Warning,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: true,
        short: "Nobody may fetch for a task.",
        full: "With no runner users or groups, every fetch for the task is refused: the monitor cannot run.",
        help: "Add `runners = { users = [\"checkpoint\"] }` (or groups) to the task.",
    },
    /// Two credentials of one task give `exec` the same environment variable names. Checked in `Linter::tasks`.
    EnvNameCollision {
        id: "env-name-collision",
        class: Warning,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: true,
        short: "Two credentials of one task give `exec` the same environment variable names.",
        full: "`scopevault exec` hands each field over as `SCOPEVAULT_<CREDENTIAL>_<FIELD>`, letters upper-cased and anything else `_`; names that differ only in `-`, `_`, `.` or case give one variable, and `exec` refuses to run the command after both were fetched and audited.",
        help: "Rename one of the credentials, or run the task's command with `exec --files`.",
    },
    /// An exception is past its expiry; the finding it hid, if any, is back. Checked in `Linter::exceptions`.
    ExceptionExpired {
        id: "exception-expired",
        class: Warning,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "An exception is past its expiry; the finding it hid, if any, is back.",
        full: "Exceptions are temporary by design; an expired one is a reminder that the reviewed decision is due again.",
        help: "Fix the finding the exception hid and remove the exception, or review it again and move `expires`.",
    },
    /// A secret is older than its rotation period. Checked in `Linter::vault`.
    RotationOverdue {
        id: "rotation-overdue",
        class: Warning,
        security_severity: None,
        needs_vault: true,
        needs_audit: false,
        exceptable: true,
        short: "A secret is older than its rotation period.",
        full: "Old secrets have had more time to leak; the policy promises rotation.",
        help: "Rotate it in the target system and store it with `scopevault cred set NAME --secret KEY`.",
    },
    /// A credential's vault entry is stored with another kind, scopes or origins than the policy declares. Checked in `Linter::vault`.
    VaultDiffersFromPolicy {
        id: "vault-differs-from-policy",
        class: Warning,
        security_severity: None,
        needs_vault: true,
        needs_audit: false,
        exceptable: true,
        short: "A credential's vault entry is stored with another kind, scopes or origins than the policy declares.",
        full: "The daemon hands a credential out as the applied policy declares it (a `totp` credential as codes, never its seed; the declared scopes), whatever its entry says; an entry that differs shows the admin something else (`cred show`, `cred list`) and means it was stored outside `policy apply` (`cred import` after `cred rm`, a vault saved by an older scopevault).",
        help: "Apply the policy again (`scopevault policy apply policy.toml`), which stores its declaration in the entry; or change the declaration in the policy if the entry is what was meant, and apply it.",
    },
    /// A credential declared with a kind other than `totp` holds a TOTP seed in the vault. Checked in `Linter::vault`.
    TotpSeedHandedOut {
        id: "totp-seed-handed-out",
        class: Warning,
        security_severity: None,
        needs_vault: true,
        needs_audit: false,
        exceptable: true,
        short: "A credential declared with a kind other than `totp` holds a TOTP seed (`totp_seed` or `otpauth`) in the vault.",
        full: "The daemon hands out codes, never the seed, only for a credential declared `totp`; of any other kind it hands out every secret, so the seed itself goes to the runners, who can then make every future code of the account. A `cred import` row with a TOTP column is such a `login`, and a policy that changes a kind from `totp` turns code hand-out into seed hand-out.",
        help: "Checks that only need codes should get kind = \"totp\": declare the seed as a credential of its own with kind = \"totp\" (or this one, if it holds only the seed) and list it in the task; or add a reviewed, expiring exception if a check really needs the seed itself.",
    },
    /// A scope is not in the catalog when a catalog exists. Checked in `Linter::undeclared_scopes`.
    UndeclaredScope {
        id: "undeclared-scope",
        class: Suggestion,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: true,
        short: "A scope is not in the catalog when a catalog exists.",
        full: "Scopes outside the catalog have no risk level and no implies; often they are typos.",
        help: "Add the scope to the catalog with `[scopes.\"NAME\"]`, or fix its spelling.",
    },
    /// No task fetched a credential in the audit logs' window. Checked in `Linter::usage`.
    CredentialNeverFetched {
        id: "credential-never-fetched",
        class: Warning,
        security_severity: None,
        needs_vault: false,
        needs_audit: true,
        exceptable: true,
        short: "No task fetched a credential in the audit logs' window.",
        full: "A credential nobody uses is a secret to protect and rotate for no benefit; the audit logs prove it was not handed out in the window.",
        help: "Remove the credential from the policy and its tasks (and revoke it in the target system), or add an expiring exception if it is kept for a rare job.",
    },
    /// A task lists a credential it never fetched in the audit logs' window. Checked in
    /// `Linter::usage`.
    TaskCredentialNeverFetched {
        id: "task-credential-never-fetched",
        class: SecurityWarning,
        security_severity: Some("5.0"),
        needs_vault: false,
        needs_audit: true,
        exceptable: true,
        short: "A task lists a credential it never fetched in the audit logs' window.",
        full: "The task ran but never used this credential: listing it gives the task's runners access they do not need.",
        help: "Remove the credential from the task's `credentials`.",
    },
    /// A runner user or group of a task never fetched for it in the audit logs' window.
    /// Checked in `Linter::usage`.
    RunnerNeverSeen {
        id: "runner-never-seen",
        class: Suggestion,
        security_severity: None,
        needs_vault: false,
        needs_audit: true,
        exceptable: true,
        short: "A runner user or group of a task never fetched for it in the audit logs' window.",
        full: "Every runner may fetch the task's credentials; one that never does is access nobody uses.",
        help: "Narrow the task's `runners` to the users and groups that run it.",
    },
    /// A task never fetched anything in the audit logs' window. Checked in `Linter::usage`.
    TaskNeverFetched {
        id: "task-never-fetched",
        class: Warning,
        security_severity: None,
        needs_vault: false,
        needs_audit: true,
        exceptable: true,
        short: "A task never ran in the audit logs' window.",
        full: "A task that never fetches its credentials is dead configuration that still grants its runners access.",
        help: "Remove the task (and the credentials only it uses), or check why its monitor no longer runs.",
    },
    /// A task names a location that is not declared. Checked in `Linter::fleet`.
    UnknownLocation {
        id: "unknown-location",
        class: Error,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "A task names a location that is not declared under [locations].",
        full: "`scopevault publish` could not deliver the task anywhere: a checkpoint that should run it never receives its credentials.",
        help: "Declare [locations.NAME] with the checkpoint's recipient, or fix the name in the task's `locations`.",
    },
    /// A location's recipient is not an age recipient, or a low-order one
    /// (`crate::fleet::recipient::parse`). Checked in `Linter::fleet`.
    InvalidRecipient {
        id: "invalid-recipient",
        class: Error,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "A location's `recipient` is not an age X25519 recipient (`age1…`), or is a low-order point.",
        full: "The location's bundle cannot be encrypted to it (a low-order point, such as 32 zero bytes, is no vault's public key: encrypting to it gives the all-zero shared secret), so `scopevault publish` refuses the policy.",
        help: "Copy the recipient exactly as `scopevault recipient` prints it on the checkpoint.",
    },
    /// Two locations have the same recipient. Checked in `Linter::fleet`.
    SharedRecipient {
        id: "shared-recipient",
        class: SecurityWarning,
        security_severity: Some("6.5"),
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "Two locations have the same recipient.",
        full: "Both locations' bundles are encrypted to one vault: whoever holds its identity can read the credentials of both, and the other location's checkpoint cannot decrypt its own bundle. It is usually a recipient pasted into the wrong location.",
        help: "Give each location the recipient `scopevault recipient` prints on its own checkpoint.",
    },
    /// No task runs at a declared location. Checked in `Linter::fleet`.
    LocationWithoutTasks {
        id: "location-without-tasks",
        class: Warning,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "No task runs at a declared location.",
        full: "Its bundle carries no credentials: the checkpoint runs nothing, which is usually a forgotten `locations` entry or a retired location still declared.",
        help: "List the location in the `locations` of the tasks that run there, or remove [locations.NAME].",
    },
    /// A task names no location while `[locations]` exists. Checked in `Linter::fleet`.
    TaskWithoutLocations {
        id: "task-without-locations",
        class: Warning,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: true,
        short: "A task names no location while the policy declares [locations].",
        full: "`scopevault publish` delivers a task only to the locations it lists: this one is published nowhere.",
        help: "Add `locations = [\"NAME\"]` to the task.",
    },
    /// A task's `schedulers` is an empty list. Checked in `Linter::schedulers`.
    EmptySchedulers {
        id: "empty-schedulers",
        class: Warning,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: true,
        short: "A task's `schedulers` is an empty list.",
        full: "An empty list names no scheduler, so only admins get tickets for the task, as without the key: it is either a forgotten user or dead configuration.",
        help: "Name the scheduler's user in `schedulers = [\"USER\"]`, or remove the key.",
    },
    /// A task's `schedulers` names the same user twice. Checked in `Linter::schedulers`.
    DuplicateScheduler {
        id: "duplicate-scheduler",
        class: Warning,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "A task's `schedulers` names the same user twice.",
        full: "The second entry adds nothing; it is often a typo for another user, who then gets no tickets for the task.",
        help: "Remove the repeated entry, or correct it to the user that was meant.",
    },
    /// Two credentials, two tasks, or two locations, whose names differ only in ASCII case. Checked in
    /// `Linter::case_alike_names`.
    NamesDifferOnlyInCase {
        id: "names-differ-only-in-case",
        class: Warning,
        security_severity: None,
        needs_vault: false,
        needs_audit: false,
        exceptable: false,
        short: "Two credentials, two tasks, or two locations, have names that differ only in case.",
        full: "Names are case-sensitive: `shop` and `Shop` are two objects, each with its own secrets, grants and runners, though people read them as one; a task listing `Shop` gets the other credential, and a runner asking for `Shop` the other task; the bundles of locations `ams` and `AMS` are one file on a case-insensitive file system, so `publish` refuses them.",
        help: "Rename one of them (or merge the two), so that no two credentials, no two tasks and no two locations differ only in case.",
    },
}

/// A rule by id.
pub fn rule(id: &str) -> Option<&'static RuleInfo> {
    RuleId::from_id(id).map(RuleId::info)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_is_in_enum_order() {
        for (i, r) in RULES.iter().enumerate() {
            assert_eq!(r.rule as usize, i, "{}", r.id);
            assert_eq!(RuleId::from_id(r.id), Some(r.rule));
        }
        assert_eq!(RuleId::ALL.len(), RULES.len());
    }
}
