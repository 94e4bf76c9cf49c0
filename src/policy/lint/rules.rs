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

/// One lint rule.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct RuleInfo {
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
    /// Whether it needs vault metadata (`--vault`).
    pub needs_vault: bool,
    /// Whether an `[[exceptions]]` entry may hide its findings (not errors, not the rules
    /// about exceptions themselves).
    pub exceptable: bool,
}

const fn r(
    id: &'static str,
    class: Class,
    short: &'static str,
    full: &'static str,
    help: &'static str,
    security_severity: Option<&'static str>,
) -> RuleInfo {
    RuleInfo {
        id,
        class,
        short,
        full,
        help,
        security_severity,
        needs_vault: false,
        exceptable: !matches!(class, Class::Error),
    }
}

const fn vault(mut rule: RuleInfo) -> RuleInfo {
    rule.needs_vault = true;
    rule
}

const fn not_exceptable(mut rule: RuleInfo) -> RuleInfo {
    rule.exceptable = false;
    rule
}

/// Every rule, in documentation order.
pub const RULES: &[RuleInfo] = &[
    r(
        "unknown-credential",
        Class::Error,
        "A task lists a credential that is not declared.",
        "The daemon can never hand the credential out: the task's check will fail at runtime.",
        "Declare the credential under [credentials.NAME], or fix the name in the task's `credentials`.",
        None,
    ),
    r(
        "missing-scope",
        Class::Error,
        "A task needs a scope that none of its credentials grants.",
        "The check will fail at runtime, or someone will later grant a broader credential in a hurry.",
        "Add a credential that grants the scope to the task, add the scope to one of its credentials, or drop the need.",
        None,
    ),
    r(
        "invalid-scope",
        Class::Error,
        "A scope breaks the grammar.",
        "Scopes are segments of a-z, 0-9, `_` and `-` joined by `:`, with an optional final `*`; anything else cannot be matched and is ignored, so the policy does not mean what it says.",
        "Rewrite the scope in the grammar, e.g. `shop:orders:read` or `shop:orders:*`.",
        None,
    ),
    r(
        "implies-cycle",
        Class::Error,
        "The scope catalog's `implies` entries form a cycle.",
        "A scope that implies itself through other scopes makes the catalog meaningless; the expansion stops at the cycle instead of looping, but the catalog needs fixing.",
        "Remove one `implies` entry of the cycle.",
        None,
    ),
    r(
        "invalid-exception",
        Class::Error,
        "An exception lacks a reason or an expiry, names an unknown or non-exceptable rule, or matches no finding.",
        "An exception must be a reviewed, expiring decision about exactly one finding; one that matches nothing is stale or mistyped, and would silently hide a future finding.",
        "Give the exception a `reason` and an `expires` date, name a warning-class rule, and copy the rule, credential, task and scopes exactly from the finding; remove it if the finding is gone.",
        None,
    ),
    vault(r(
        "missing-secret",
        Class::Error,
        "A declared credential has no secret stored in the vault.",
        "Tasks using it will fail at runtime.",
        "Store it with `scopevault cred add NAME` or `scopevault cred set NAME --secret KEY`.",
        None,
    )),
    r(
        "scope-exceeds-task",
        Class::SecurityWarning,
        "A credential grants scopes its task does not need.",
        "Least privilege: if the check or its host is compromised, everything the credential can do is exposed, not just what the monitor needs.",
        "Give the task a credential with only the scopes it needs (or narrow this one), or add a reviewed, expiring exception naming exactly these scopes.",
        Some("6.5"),
    ),
    r(
        "high-risk-scope-unneeded",
        Class::SecurityWarning,
        "A scope the catalog marks `risk = \"high\"` is granted to a task that does not need it.",
        "High-risk scopes (administration, payments, user data) are the ones an attacker wants; no monitor should hold one it does not use.",
        "Remove the high-risk scope from the credential, or give the task a narrower credential.",
        Some("8.0"),
    ),
    r(
        "wildcard-scope",
        Class::SecurityWarning,
        "A credential holds a wildcard scope.",
        "A wildcard grants everything below its prefix, including scopes the target system adds later.",
        "List the exact scopes the credential needs instead of the wildcard.",
        Some("5.0"),
    ),
    r(
        "shared-credential",
        Class::SecurityWarning,
        "One credential serves tasks with different needs.",
        "A shared credential must grant the union of its tasks' needs, so each task holds more than it needs, and rotation or revocation hits every task at once.",
        "Give each task (or each group of tasks with the same needs) its own credential.",
        Some("4.0"),
    ),
    r(
        "origin-mismatch",
        Class::SecurityWarning,
        "A task's origin is not among its credential's origins.",
        "The credential would be sent to a site it was not issued for, which is how credentials leak to the wrong system.",
        "Add the origin to the credential's `origins` if it is really meant for it, or use a credential issued for the task's origin.",
        Some("5.5"),
    ),
    r(
        "unused-credential",
        Class::Warning,
        "No task uses a credential.",
        "An unused credential is a secret to protect and rotate for no benefit.",
        "Remove it from the policy (and revoke it in the target system), or list it in the task that needs it.",
        None,
    ),
    r(
        "task-without-runners",
        Class::Warning,
        "Nobody may fetch for a task.",
        "With no runner users or groups, every fetch for the task is refused: the monitor cannot run.",
        "Add `runners = { users = [\"checkpoint\"] }` (or groups) to the task.",
        None,
    ),
    not_exceptable(r(
        "exception-expired",
        Class::Warning,
        "An exception is past its expiry, and the finding it hid is back.",
        "Exceptions are temporary by design; an expired one is a reminder that the reviewed decision is due again.",
        "Fix the finding the exception hid and remove the exception, or review it again and move `expires`.",
        None,
    )),
    vault(r(
        "rotation-overdue",
        Class::Warning,
        "A secret is older than its rotation period.",
        "Old secrets have had more time to leak; the policy promises rotation.",
        "Rotate it in the target system and store it with `scopevault cred set NAME --secret KEY`.",
        None,
    )),
    r(
        "undeclared-scope",
        Class::Suggestion,
        "A scope is not in the catalog when a catalog exists.",
        "Scopes outside the catalog have no risk level and no implies; often they are typos.",
        "Add the scope to the catalog with `[scopes.\"NAME\"]`, or fix its spelling.",
        None,
    ),
    // Fleet (src/policy/lint/fleet.rs).
    r(
        "unknown-location",
        Class::Error,
        "A task names a location that is not declared under [locations].",
        "`scopevault publish` could not deliver the task anywhere: a checkpoint that should run it never receives its credentials.",
        "Declare [locations.NAME] with the checkpoint's recipient, or fix the name in the task's `locations`.",
        None,
    ),
    r(
        "invalid-recipient",
        Class::Error,
        "A location's `recipient` is not an age X25519 recipient (`age1…`).",
        "The location's bundle cannot be encrypted to it, so `scopevault publish` refuses the policy.",
        "Copy the recipient exactly as `scopevault recipient` prints it on the checkpoint.",
        None,
    ),
    r(
        "location-without-tasks",
        Class::Warning,
        "No task runs at a declared location.",
        "Its bundle carries no credentials: the checkpoint runs nothing, which is usually a forgotten `locations` entry or a retired location still declared.",
        "List the location in the `locations` of the tasks that run there, or remove [locations.NAME].",
        None,
    ),
    r(
        "task-without-locations",
        Class::Warning,
        "A task names no location while the policy declares [locations].",
        "`scopevault publish` delivers a task only to the locations it lists: this one is published nowhere.",
        "Add `locations = [\"NAME\"]` to the task.",
        None,
    ),
];

/// A rule by id.
pub fn rule(id: &str) -> Option<&'static RuleInfo> {
    RULES.iter().find(|r| r.id == id)
}
