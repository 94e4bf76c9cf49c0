//! The lint: every rule of docs/lint-rules.md over a parsed [`Policy`], and the report in four
//! formats (text, JSON, SARIF 2.1.0, JUnit).
//!
//! Every rule is near-linear in the size of the policy: findings are computed per task, per
//! (task, listed credential) pair and per credential, with hash lookups for scope matching and
//! exceptions, never a scan of all credentials per task.
//!
//! ```
//! use scopevault::policy::lint::{lint_source, Class, LintOptions};
//! let report = lint_source(r#"
//! version = 1
//! [credentials.admin]
//! kind = "login"
//! scopes = ["shop:*"]
//! [tasks.browse]
//! needs = ["shop:catalog:read"]
//! credentials = ["admin"]
//! runners = { users = ["checkpoint"] }
//! "#, "policy.toml", &LintOptions::new(time::macros::date!(2026 - 01 - 01))).unwrap();
//! assert_eq!(report.blocking(Class::SecurityWarning), 2); // scope-exceeds-task, wildcard-scope
//! ```

mod fleet;
mod render;
mod rules;
mod schedulers;

use std::collections::BTreeMap;
use std::ops::Range;

use super::error::{did_you_mean, did_you_mean_within};
use super::scope::GrantSet;
use super::{CredentialDecl, Policy, PolicyError, Scope, VaultMeta};
use crate::advice::{command as advise, shell_quoted as word};
use crate::usage::Evidence;
use rustc_hash::{FxHashMap as HashMap, FxHashSet as HashSet};

pub use render::{
    link_out_of_repository, repository_root, SarifLocation, JSON_SCHEMA, SARIF_DISPLAY_LIMIT,
    SARIF_RESULT_LIMIT,
};
pub use rules::{rule, Class, RuleId, RuleInfo, RULES};

/// What the lint needs besides the policy.
#[derive(Debug, Clone)]
pub struct LintOptions {
    /// The date exceptions and rotation are judged against.
    pub today: time::Date,
    /// Vault metadata: when given, the vault rules (`missing-secret`, `both-totp-seeds`,
    /// `unusable-totp-seed`, `secret-beside-totp-seed`, `rotation-overdue`,
    /// `vault-differs-from-policy`, `totp-seed-handed-out`) run.
    pub vault: Option<VaultMeta>,
    /// Evidence from audit logs: when given (and [`Evidence::judged`]), the usage rules run.
    pub usage: Option<std::sync::Arc<Evidence>>,
}

impl LintOptions {
    /// Options for `today` with no vault.
    pub fn new(today: time::Date) -> Self {
        LintOptions {
            today,
            vault: None,
            usage: None,
        }
    }
}

/// One finding of one rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule.
    pub rule: RuleId,
    /// The rule's class.
    pub class: Class,
    /// What is wrong, naming the credential, task and scopes.
    pub message: String,
    /// How to fix it.
    pub help: String,
    /// Byte range of the offending text in the policy.
    pub span: Range<usize>,
    /// 1-based line of the start of `span`.
    pub line: usize,
    /// 1-based column (characters) of the start of `span`.
    pub column: usize,
    /// 1-based line of the end of `span`.
    pub end_line: usize,
    /// 1-based column (characters) just past the end of `span`.
    pub end_column: usize,
    /// The credential concerned, if any.
    pub credential: Option<String>,
    /// The task concerned, if any.
    pub task: Option<String>,
    /// The scopes concerned (sorted), if any.
    pub scopes: Vec<String>,
    /// What tells this finding from the others of its rule with the same credential, task and
    /// scopes (`runner-never-seen`: `user:NAME` or `group:NAME`; `unknown-location`: the
    /// location; `duplicate-scheduler`: the scheduler; `invalid-exception` and
    /// `exception-expired`: the exception's rule, reason and expiry as written), if its rule can
    /// repeat for them: part of the finding's fingerprint, so that code scanning keeps one alert
    /// per finding, and of its JUnit test-case name.
    pub detail: Option<String>,
    /// 1 for the first finding (in file order) of its rule, credential, task, scopes and
    /// detail; 2, 3, … for later ones that nothing else tells apart (a task listing one
    /// credential, need, location or runner twice; a scheduler named three times; two
    /// exceptions alike in every key). Hashed into the fingerprint when above 1, as GitHub
    /// numbers equal line hashes, so each is still its own alert.
    pub occurrence: usize,
    /// Whether an exception in force hides it (left out of text and SARIF, flagged in JSON).
    pub excepted: bool,
}

/// The outcome of a lint run.
#[derive(Debug, Clone)]
pub struct Report {
    path: String,
    source: std::sync::Arc<str>,
    findings: Vec<Finding>,
    vault_rules_ran: bool,
    usage_rules_ran: bool,
    /// Whether audit logs were given (`--audit`), whether or not they could judge.
    usage_given: bool,
    /// What the evidence said about the usage rules ([`Evidence::note`]): why they were not
    /// applied, or which tasks they left out.
    usage_note: Option<String>,
    /// Why the text report quotes no source line ([`Report::withhold_source`]).
    source_withheld: Option<String>,
    /// [`Linter::high_risk_steps`], for the test that checks it grows linearly.
    #[cfg(test)]
    high_risk_steps: u64,
}

/// Counts of findings that are not excepted, per class, and of excepted ones.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Errors.
    pub error: usize,
    /// Security warnings.
    pub security_warning: usize,
    /// Warnings.
    pub warning: usize,
    /// Suggestions.
    pub suggestion: usize,
    /// Findings hidden by an exception in force.
    pub excepted: usize,
}

impl Counts {
    /// The count of one class.
    pub fn of(&self, class: Class) -> usize {
        match class {
            Class::Error => self.error,
            Class::SecurityWarning => self.security_warning,
            Class::Warning => self.warning,
            Class::Suggestion => self.suggestion,
        }
    }
}

impl Report {
    /// The policy file name used in messages.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Every finding, excepted ones included, sorted by place then rule.
    pub fn findings(&self) -> &[Finding] {
        &self.findings
    }

    /// Whether the vault rules ran.
    pub fn vault_rules_ran(&self) -> bool {
        self.vault_rules_ran
    }

    /// Whether the usage rules ran (audit logs given, and enough evidence to judge).
    pub fn usage_rules_ran(&self) -> bool {
        self.usage_rules_ran
    }

    /// Why the usage rules did not run, or, when they ran on part of the tasks only, what they
    /// left out: `None` when they ran on everything. The JSON report's `usage_rules.reason`, a
    /// SARIF tool notification, the message of JUnit's skipped test cases.
    pub fn usage_rules_reason(&self) -> Option<&str> {
        match (&self.usage_note, self.usage_given) {
            (Some(note), _) => Some(note),
            (None, false) => Some("no --audit log given"),
            (None, true) if !self.usage_rules_ran => Some("the audit logs could not judge"),
            (None, true) => None,
        }
    }

    /// Findings per class (excepted ones counted apart).
    pub fn counts(&self) -> Counts {
        let mut c = Counts::default();
        for f in &self.findings {
            if f.excepted {
                c.excepted += 1;
                continue;
            }
            match f.class {
                Class::Error => c.error += 1,
                Class::SecurityWarning => c.security_warning += 1,
                Class::Warning => c.warning += 1,
                Class::Suggestion => c.suggestion += 1,
            }
        }
        c
    }

    /// How many findings block when `deny` is the least severe blocking class (`lint` uses
    /// [`Class::SecurityWarning`] by default; `policy apply` uses [`Class::Error`]).
    pub fn blocking(&self, deny: Class) -> usize {
        self.findings
            .iter()
            .filter(|f| !f.excepted && f.class.blocks_at(deny))
            .count()
    }

    /// Whether the policy itself is invalid (an `invalid-scope` or `implies-cycle` finding):
    /// [`Policy::parse`] refuses such a policy, and `lint` exits 2 after reporting.
    pub fn policy_invalid(&self) -> bool {
        self.findings.iter().any(|f| f.rule.invalidates_policy())
    }

    /// Quote no line of the policy's text in the text report (each finding keeps its
    /// `file:line:col`), and say `why` once, before the summary line: the file is not the
    /// repository's ([`link_out_of_repository`]).
    pub fn withhold_source(&mut self, why: String) {
        self.source = std::sync::Arc::from("");
        self.source_withheld = Some(why);
    }

    /// The summary line: counts per class, e.g.
    /// `policy.toml: 1 error, 2 security warnings, 0 warnings, 0 suggestions (1 excepted)`.
    pub fn summary(&self) -> String {
        let c = self.counts();
        let n =
            |k: usize, one: &str, many: &str| format!("{k} {}", if k == 1 { one } else { many });
        // The file's name is anyone's text (a pull request adds files): escaped, as in the
        // report's `-->` lines, and the line defused, since the name begins it
        // (`::error file=…::lint passed.toml`), so it cannot write a CI log's command lines.
        let mut s = format!(
            "{}: {}, {}, {}, {}",
            crate::text::escape_for_terminal(&self.path),
            n(c.error, "error", "errors"),
            n(c.security_warning, "security warning", "security warnings"),
            n(c.warning, "warning", "warnings"),
            n(c.suggestion, "suggestion", "suggestions"),
        );
        if c.excepted > 0 {
            s.push_str(&format!(" ({} excepted)", c.excepted));
        }
        crate::text::defused(&s).into_owned()
    }
}

/// Parse `source` leniently (invalid scopes and `implies` cycles become findings instead of
/// stopping the parse) and lint it. Errors are the parse errors [`Policy::parse`] also gives.
pub fn lint_source(source: &str, path: &str, opts: &LintOptions) -> Result<Report, PolicyError> {
    let policy = Policy::parse_lenient(source, path)?;
    Ok(lint(&policy, opts))
}

/// Lint a parsed policy (its findings point into the text it was parsed from, which the
/// policy keeps).
pub fn lint(policy: &Policy, opts: &LintOptions) -> Report {
    let source: &str = &policy.source;
    let mut l = Linter {
        policy,
        opts,
        raw: Vec::new(),
        creds: policy.credentials.values().collect(),
        cred_index: policy
            .credentials
            .keys()
            .enumerate()
            .map(|(i, k)| (k.as_str(), i))
            .collect(),
        resolved: Vec::new(),
        typo_of: HashSet::default(),
        suggest_budget: SUGGEST_BUDGET,
        high_risk_steps: 0,
    };
    l.problems();
    l.tasks();
    l.credentials();
    l.case_alike_names();
    l.undeclared_scopes();
    l.fleet();
    l.schedulers();
    if let Some(v) = &opts.vault {
        l.vault(v);
    }
    if let Some(ev) = opts.usage.as_deref().filter(|e| e.judged) {
        l.usage(ev);
    }
    l.exceptions();
    // Sorted first (stable, so the order is the one sorting the findings gave), so that
    // line:column can be found by walking the text forward once instead of a binary search of
    // a line index per finding: with 100,000 tasks that index is megabytes, and each search
    // missed the cache.
    let mut raw = l.raw;
    raw.sort_by(|a, b| {
        (a.span.start, a.rule.as_str(), &a.task, &a.credential).cmp(&(
            b.span.start,
            b.rule.as_str(),
            &b.task,
            &b.credential,
        ))
    });
    let mut at = LineCursor::default();
    let mut findings: Vec<Finding> = raw
        .into_iter()
        .map(|r| {
            let (line, column) = at.advance(source, r.span.start);
            let (end_line, end_column) = at.clone().advance(source, r.span.end);
            let mut scopes = r.scopes;
            if r.rule != RuleId::ImpliesCycle {
                scopes.sort();
                scopes.dedup();
            }
            Finding {
                rule: r.rule,
                class: r.rule.class(),
                message: r.message,
                help: r.help,
                span: r.span,
                line,
                column,
                end_line,
                end_column,
                credential: r.credential,
                task: r.task,
                scopes,
                detail: r.detail,
                occurrence: 1,
                excepted: r.excepted,
            }
        })
        .collect();
    number_repeats(&mut findings);
    Report {
        path: policy.path.clone(),
        source: policy.source.clone(),
        findings,
        vault_rules_ran: opts.vault.is_some(),
        usage_rules_ran: opts.usage.as_deref().is_some_and(|e| e.judged),
        usage_given: opts.usage.is_some(),
        usage_note: opts.usage.as_deref().and_then(|e| e.note.clone()),
        source_withheld: None,
        #[cfg(test)]
        high_risk_steps: l.high_risk_steps,
    }
}

impl Finding {
    /// The task's origin of an `origin-mismatch` (normalised): what an exception for it names
    /// with `origin`, so the JSON and SARIF reports carry it.
    pub fn origin(&self) -> Option<&str> {
        match self.rule {
            RuleId::OriginMismatch => self.detail.as_deref(),
            _ => None,
        }
    }
    /// The message, when it is what names the finding's subject: a finding with no
    /// credential, task, scopes or detail. Part of its fingerprint then.
    pub(crate) fn subject_message(&self) -> Option<&str> {
        let subjectless = self.credential.is_none()
            && self.task.is_none()
            && self.scopes.is_empty()
            && self.detail.is_none();
        subjectless.then_some(self.message.as_str())
    }
}

/// Number the findings that nothing else tells apart ([`Finding::occurrence`]), in file order.
fn number_repeats(findings: &mut [Finding]) {
    type Key<'k> = (
        RuleId,
        Option<&'k str>,
        Option<&'k str>,
        &'k [String],
        Option<&'k str>,
        Option<&'k str>,
    );
    let mut seen: HashMap<Key<'_>, usize> = HashMap::default();
    let numbers: Vec<usize> = findings
        .iter()
        .map(|f| {
            let key = (
                f.rule,
                f.credential.as_deref(),
                f.task.as_deref(),
                f.scopes.as_slice(),
                f.detail.as_deref(),
                f.subject_message(),
            );
            let n = seen.entry(key).or_insert(0);
            *n += 1;
            *n
        })
        .collect();
    drop(seen);
    for (f, n) in findings.iter_mut().zip(numbers) {
        f.occurrence = n;
    }
}

/// A place in the text for turning increasing byte offsets into line:column: the line
/// (0-based) and the byte offset where it starts. Same answers as
/// [`LineIndex::line_col`](super::error::LineIndex::line_col).
#[derive(Debug, Clone, Default)]
struct LineCursor {
    line: usize,
    line_start: usize,
    /// The last offset asked for and its 0-based column: the next one on the same line costs
    /// only the text in between (many findings on one long line — a task naming a hundred
    /// thousand locations — cost one pass over it, not one per finding).
    at: usize,
    col: usize,
}

impl LineCursor {
    /// 1-based line and column of `offset`, moving the cursor to it. An `offset` on or after
    /// the cursor costs the text in between; an earlier one (never asked for: findings are
    /// sorted by start, and a span ends after it starts) rescans from the top.
    fn advance(&mut self, source: &str, offset: usize) -> (usize, usize) {
        // Line 1 starts after a byte order mark, and an offset inside one is its end: columns
        // do not count it (SARIF §3.30.2; `LineIndex` likewise).
        let bom = super::error::bom_len(source.as_bytes());
        let offset = offset.min(source.len()).max(bom);
        if offset < self.at {
            *self = LineCursor::default();
        }
        if self.at < bom {
            self.at = bom;
            self.line_start = bom;
        }
        let text = &source.as_bytes()[self.at..offset];
        if let Some(last) = text.iter().rposition(|b| *b == b'\n') {
            self.line += text.iter().filter(|b| **b == b'\n').count();
            self.line_start = self.at + last + 1;
            self.at = self.line_start;
            self.col = 0;
        }
        match source.get(self.at..offset) {
            Some(s) => {
                self.col += s.chars().count();
                self.at = offset;
                (self.line + 1, self.col + 1)
            }
            // Inside a character: counted in bytes from the line's start, as `LineIndex`
            // does; the cursor stays where it was.
            None => (self.line + 1, offset - self.line_start + 1),
        }
    }
}

/// Number of uses of a scope, and the place, credential and task of its first use.
type FirstUse = (usize, Range<usize>, Option<String>, Option<String>);

struct Raw {
    rule: RuleId,
    message: String,
    help: String,
    span: Range<usize>,
    credential: Option<String>,
    task: Option<String>,
    scopes: Vec<String>,
    detail: Option<String>,
    excepted: bool,
}

struct Linter<'a> {
    policy: &'a Policy,
    opts: &'a LintOptions,
    raw: Vec<Raw>,
    /// The credentials in name order, and each name's position there: one hash lookup per
    /// listed credential instead of a walk down the sorted map, shared by the task and
    /// credential rules.
    creds: Vec<&'a CredentialDecl>,
    cred_index: HashMap<&'a str, usize>,
    /// Every credential listed by a task, in task order then list order, resolved by
    /// [`Linter::tasks`] to its position in `creds` (`None`: not declared). The credential
    /// rules walk the same lists again and read this instead of looking each name up again:
    /// with 100,000 credentials the hash lookups miss the cache and were the lint's largest
    /// superlinear cost.
    resolved: Vec<Option<u32>>,
    /// Credentials (by position) that a task's unknown credential name is probably a typo of:
    /// their `unused-credential` finding is a consequence of that error, not reported apart.
    typo_of: HashSet<usize>,
    /// Edit-distance cells the run's "did you mean" suggestions may still spend
    /// ([`did_you_mean_within`]): a policy full of long unknown names costs bounded time.
    suggest_budget: u64,
    /// Steps `high-risk-scope-unneeded` took (high-risk catalog scopes and ranges of them looked
    /// at): what a test checks grows linearly with the policy.
    high_risk_steps: u64,
}

/// Cells of edit-distance tables one lint run spends on suggestions (about a second).
const SUGGEST_BUDGET: u64 = 200_000_000;

/// Most scopes a message lists; the finding's `scopes` (JSON, SARIF) hold them all.
const LISTED: usize = 20;

/// Each task of `p` (its position and name) with each credential it lists, by position in
/// `p.credentials` as `resolved` gives it (one entry per name listed, in order; `None` for a
/// name not declared), once per task however often the task lists it. `seen` is scratch.
fn each_listing<'p>(
    p: &'p Policy,
    resolved: &[Option<u32>],
    seen: &mut HashSet<usize>,
    mut f: impl FnMut(usize, &'p str, usize),
) {
    let mut resolved = resolved.iter();
    for (ti, (tname, task)) in p.tasks.iter().enumerate() {
        seen.clear();
        for _ in task.credentials.iter() {
            let Some(Some(ci)) = resolved.next().copied() else {
                continue;
            };
            let ci = ci as usize;
            if seen.insert(ci) {
                f(ti, tname.as_str(), ci);
            }
        }
    }
}

/// [`ticks`] of the first [`LISTED`] items, then how many more.
pub(crate) fn ticks_listed<S: AsRef<str>>(items: &[S]) -> String {
    if items.len() <= LISTED {
        return ticks(items);
    }
    format!(
        "{}, … and {} more",
        ticks(&items[..LISTED]),
        items.len() - LISTED
    )
}

fn ticks<S: AsRef<str>>(items: &[S]) -> String {
    let mut out = String::new();
    for (i, s) in items.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        out.push('`');
        out.push_str(s.as_ref());
        out.push('`');
    }
    out
}

/// A field `fetch` generates for a `totp` credential, as the lint names it: never "stored".
fn generated_field(field: &str) -> &'static str {
    if field == "totp_seconds_left" {
        "the seconds its TOTP code has left, generated at each fetch, not stored"
    } else {
        "its current TOTP code, generated at each fetch, not stored"
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

impl<'a> Linter<'a> {
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        rule: RuleId,
        span: Range<usize>,
        message: String,
        help: String,
        credential: Option<&str>,
        task: Option<&str>,
        scopes: Vec<String>,
    ) {
        self.raw.push(Raw {
            rule,
            message,
            help,
            span,
            credential: credential.map(str::to_owned),
            task: task.map(str::to_owned),
            scopes,
            detail: None,
            excepted: false,
        });
    }

    /// Name what tells the finding just pushed from the others of its rule and subject
    /// ([`Finding::detail`]).
    fn detail(&mut self, detail: String) {
        if let Some(r) = self.raw.last_mut() {
            r.detail = Some(detail);
        }
    }

    fn problems(&mut self) {
        for p in &self.policy.problems {
            self.push(
                p.rule,
                p.span.clone(),
                p.message.clone(),
                p.help.clone(),
                p.credential.as_deref(),
                p.task.as_deref(),
                p.scopes.clone(),
            );
        }
    }

    /// unknown-credential, missing-scope, scope-exceeds-task, high-risk-scope-unneeded,
    /// origin-mismatch, task-without-runners: one pass over tasks and their listed credentials.
    fn tasks(&mut self) {
        let p = self.policy;
        // Suggestions compare against every credential name: skip them for huge policies so a
        // policy full of typos stays linear.
        let suggest = p.credentials.len() <= 5_000;
        // Reused across tasks: cleared, not reallocated.
        let mut needs = GrantSet::default();
        let mut granted = GrantSet::default();
        let mut cover = crate::policy::high_risk::HighCover::default();
        let mut env_parts: HashMap<String, &str> = HashMap::default();
        for (tname, task) in &p.tasks {
            needs.clear();
            granted.clear();
            cover.clear();
            // Whether the task lists a credential that is not declared: what it grants is
            // unknown, so `missing-scope` for this task would be a consequence of that error
            // (issue 14 item 18: one typo, one finding).
            let mut unknown = false;
            p.expand_each(&task.needs, |s| needs.insert(s));
            // `exec`'s environment variable part of each declared credential listed: two
            // names with one part collide in the command's environment (env-name-collision).
            env_parts.clear();
            for cref in &task.credentials {
                let cname = cref.value.as_str();
                if !self.cred_index.contains_key(cname) {
                    continue;
                }
                let part = crate::policy::env_name_part(cname);
                match env_parts.get(&part) {
                    Some(&first) if first != cname => self.push(
                        RuleId::EnvNameCollision,
                        cref.span.clone(),
                        format!(
                            "task `{tname}` lists credentials `{first}` and `{cname}`, whose fields `scopevault exec` hands over under the same environment variables (SCOPEVAULT_{part}_…): exec refuses to run the command, after both were fetched"
                        ),
                        format!(
                            "rename `{first}` or `{cname}` (names that differ only in `-`, `_`, `.` or case give one variable), or run the task's command with `scopevault exec --files`"
                        ),
                        Some(cname),
                        Some(tname),
                        vec![],
                    ),
                    Some(_) => {}
                    None => {
                        env_parts.insert(part, cname);
                    }
                }
            }
            for cref in &task.credentials {
                let cname = cref.value.as_str();
                let ci = self.cred_index.get(cname).copied();
                self.resolved.push(ci.map(|i| i as u32));
                let Some(cred) = ci.map(|i| self.creds[i]) else {
                    unknown = true;
                    let hint = if suggest {
                        did_you_mean_within(
                            cname,
                            p.credentials.keys().map(String::as_str),
                            &mut self.suggest_budget,
                        )
                    } else {
                        None
                    };
                    if let Some(i) = hint.and_then(|h| self.cred_index.get(h)) {
                        self.typo_of.insert(*i);
                    }
                    let help = match hint {
                        Some(h) => format!("did you mean `{h}`? Otherwise declare [credentials.{cname}] or remove it from the task"),
                        None => format!("declare [credentials.{cname}], or remove it from the task's `credentials`"),
                    };
                    self.push(
                        RuleId::UnknownCredential,
                        cref.span.clone(),
                        format!("task `{tname}` lists credential `{cname}`, which is not declared"),
                        help,
                        Some(cname),
                        Some(tname),
                        vec![],
                    );
                    continue;
                };
                for e in &cred.effective {
                    granted.insert(e);
                }
                let (excess, high) = p.excess(&needs, &mut cover, cred, &mut self.high_risk_steps);
                if !excess.is_empty() {
                    let high_note = if high.is_empty() {
                        String::new()
                    } else {
                        format!("; high risk: {}", ticks_listed(&high))
                    };
                    self.push(
                        RuleId::ScopeExceedsTask,
                        cref.span.clone(),
                        format!(
                            "credential `{cname}` grants {} task `{tname}` does not need: {}{high_note}",
                            plural(excess.len(), "scope", "scopes"),
                            ticks_listed(&excess)
                        ),
                        format!(
                            "give task `{tname}` a credential with only {}, or narrow `{cname}`; if this is reviewed and temporary, add an [[exceptions]] entry with rule = \"scope-exceeds-task\", credential = \"{cname}\", task = \"{tname}\", scopes = [{}], reason = \"WHY IT IS NEEDED\", expires = \"YYYY-MM-DD\" (a review date)",
                            if task.needs.is_empty() { "what it needs".to_owned() } else { ticks_listed(&task.needs.iter().map(|n| n.value.as_str()).collect::<Vec<_>>()) },
                            if excess.len() <= LISTED {
                                excess.iter().map(|s| format!("\"{s}\"")).collect::<Vec<_>>().join(", ")
                            } else {
                                format!("the {} scopes of this finding's `scopes` (JSON report)", excess.len())
                            }
                        ),
                        Some(cname),
                        Some(tname),
                        excess,
                    );
                }
                if !high.is_empty() {
                    self.push(
                        RuleId::HighRiskScopeUnneeded,
                        cref.span.clone(),
                        format!(
                            "credential `{cname}` gives task `{tname}` high-risk {} it does not need: {}",
                            if high.len() == 1 { "scope" } else { "scopes" },
                            ticks_listed(&high)
                        ),
                        format!("remove {} from `{cname}`, or give task `{tname}` a narrower credential", ticks_listed(&high)),
                        Some(cname),
                        Some(tname),
                        high,
                    );
                }
                if let Some(origin) = task.origin_mismatch(cred) {
                    let declared = if cred.origins.is_empty() {
                        "declares no origins".to_owned()
                    } else {
                        format!(
                            "is for {}",
                            ticks_listed(
                                &cred
                                    .origins
                                    .iter()
                                    .map(|o| o.value.as_str())
                                    .collect::<Vec<_>>()
                            )
                        )
                    };
                    self.push(
                        RuleId::OriginMismatch,
                        origin.span.clone(),
                        format!(
                            "task `{tname}` works on `{}`, but its credential `{cname}` {declared}",
                            origin.value
                        ),
                        format!(
                            "add \"{o}\" to the `origins` of `{cname}` if it is meant for that site, or use a credential issued for it; if this is reviewed and temporary, add an [[exceptions]] entry with rule = \"origin-mismatch\", credential = \"{cname}\", task = \"{tname}\", origin = \"{o}\", reason = \"WHY IT IS NEEDED\", expires = \"YYYY-MM-DD\" (a review date)",
                            o = origin.value
                        ),
                        Some(cname),
                        Some(tname),
                        vec![],
                    );
                    // The origin is the finding's subject: an exception reviewed for one
                    // site, and a code-scanning alert dismissed for it, are not another
                    // site's (twenty-fourth pass).
                    self.detail(origin.value.clone());
                }
            }
            for need in task.needs.iter().filter(|_| !unknown) {
                if !granted.grants(&need.value) {
                    self.push(
                        RuleId::MissingScope,
                        need.span.clone(),
                        format!(
                            "task `{tname}` needs `{}`, which none of its credentials grants",
                            need.value
                        ),
                        if task.credentials.is_empty() {
                            format!("list a credential that grants `{}` in the task's `credentials`", need.value)
                        } else {
                            format!(
                                "add `{}` to the scopes of one of {}, or list a credential that grants it",
                                need.value,
                                ticks_listed(&task.credentials.iter().map(|c| c.value.as_str()).collect::<Vec<_>>())
                            )
                        },
                        None,
                        Some(tname),
                        vec![need.value.to_string()],
                    );
                }
            }
            let nobody = task
                .runners
                .as_ref()
                .is_none_or(|r| r.users.is_empty() && r.groups.is_empty());
            if nobody {
                let span = task
                    .runners
                    .as_ref()
                    .map_or(task.span.clone(), |r| r.span.clone());
                self.push(
                    RuleId::TaskWithoutRunners,
                    span,
                    format!("nobody may fetch for task `{tname}`: it has no runner users or groups"),
                    format!("add `runners = {{ users = [\"checkpoint\"] }}` (the user the checks run as) to [tasks.{tname}]"),
                    None,
                    Some(tname),
                    vec![],
                );
            }
        }
    }

    /// names-differ-only-in-case: among the credentials, and among the tasks, each name equal
    /// to an earlier one but for ASCII case, at its own place (twenty-sixth pass, found by the
    /// attacker of hostile process environments).
    fn case_alike_names(&mut self) {
        let p = self.policy;
        // In the file's order, so the finding is at the later of the two.
        let mut creds: Vec<_> = p.credentials.iter().collect();
        creds.sort_by_key(|(_, c)| c.span.start);
        let mut tasks: Vec<_> = p.tasks.iter().collect();
        tasks.sort_by_key(|(_, t)| t.span.start);
        let mut first: HashMap<String, &str> = HashMap::default();
        for (cname, cred) in creds {
            match first.get(&cname.to_ascii_lowercase()) {
                Some(&other) => self.push(
                    RuleId::NamesDifferOnlyInCase,
                    cred.span.clone(),
                    format!("credentials `{other}` and `{cname}` differ only in case: they are two credentials, each with its own secrets and grants"),
                    format!("rename [credentials.{cname}] (or merge it into `{other}`): a task listing one does not get the other"),
                    Some(cname),
                    None,
                    vec![],
                ),
                None => {
                    first.insert(cname.to_ascii_lowercase(), cname);
                }
            }
        }
        first.clear();
        for (tname, task) in tasks {
            match first.get(&tname.to_ascii_lowercase()) {
                Some(&other) => self.push(
                    RuleId::NamesDifferOnlyInCase,
                    task.span.clone(),
                    format!("tasks `{other}` and `{tname}` differ only in case: they are two tasks, each with its own credentials and runners"),
                    format!("rename [tasks.{tname}] (or merge it into `{other}`): a runner asking for one does not get the other"),
                    None,
                    Some(tname),
                    vec![],
                ),
                None => {
                    first.insert(tname.to_ascii_lowercase(), tname);
                }
            }
        }
        // Locations too: `publish` writes `NAME.svbundle`, and `ams.svbundle` and
        // `AMS.svbundle` are one file on a case-insensitive file system (twenty-eighth pass).
        let mut locations: Vec<_> = p.locations.iter().collect();
        locations.sort_by_key(|(_, l)| l.span.start);
        first.clear();
        for (lname, loc) in locations {
            match first.get(&lname.to_ascii_lowercase()) {
                Some(&other) => {
                    self.push(
                        RuleId::NamesDifferOnlyInCase,
                        loc.span.clone(),
                        format!("locations `{other}` and `{lname}` differ only in case: they are two locations, each with its own checkpoint, but their bundles `{other}.svbundle` and `{lname}.svbundle` are one file on a case-insensitive file system"),
                        format!("rename [locations.{lname}] (or merge it into `{other}`): `scopevault publish` refuses to publish either while both are declared"),
                        None,
                        None,
                        vec![],
                    );
                    self.detail(format!("location:{lname}"));
                }
                None => {
                    first.insert(lname.to_ascii_lowercase(), lname);
                }
            }
        }
    }

    /// unused-credential, shared-credential, wildcard-scope.
    fn credentials(&mut self) {
        let p = self.policy;
        // Each task's needs as a sorted, de-duplicated key, all in one flat vector.
        let mut keys: Vec<&str> = Vec::new();
        let mut key_at: Vec<Range<usize>> = Vec::with_capacity(p.tasks.len());
        let mut key: Vec<&str> = Vec::new();
        for task in p.tasks.values() {
            key.clear();
            key.extend(task.needs.iter().map(|n| n.value.as_str()));
            key.sort_unstable();
            key.dedup();
            key_at.push(keys.len()..keys.len() + key.len());
            keys.extend_from_slice(&key);
        }
        // Per credential (by position): the first task that lists it, and whether a later one
        // has different needs. The task lists and the number of distinct sets of needs are
        // only gathered, in a second pass, for those shared credentials (rare).
        let mut first: Vec<Option<usize>> = vec![None; self.creds.len()];
        let mut differs: Vec<bool> = vec![false; self.creds.len()];
        let mut seen: HashSet<usize> = HashSet::default();
        each_listing(p, &self.resolved, &mut seen, |ti, _, ci| match first[ci] {
            None => first[ci] = Some(ti),
            Some(f) => differs[ci] |= keys[key_at[f].clone()] != keys[key_at[ti].clone()],
        });
        let mut shared: HashMap<usize, (Vec<&str>, HashSet<&[&str]>)> = differs
            .iter()
            .enumerate()
            .filter(|(_, d)| **d)
            .map(|(ci, _)| (ci, Default::default()))
            .collect();
        if !shared.is_empty() {
            each_listing(p, &self.resolved, &mut seen, |ti, tname, ci| {
                if let Some((tasks, sets)) = shared.get_mut(&ci) {
                    tasks.push(tname);
                    sets.insert(&keys[key_at[ti].clone()]);
                }
            });
        }
        for (ci, (cname, cred)) in p.credentials.iter().enumerate() {
            match (first[ci], shared.remove(&ci)) {
                // The credential an unknown name is a typo of: one finding (the typo's).
                (None, _) if self.typo_of.contains(&ci) => {}
                (None, _) => self.push(
                    RuleId::UnusedCredential,
                    cred.span.clone(),
                    format!("no task uses credential `{cname}`"),
                    format!("remove [credentials.{cname}] (and revoke it in the target system), or list it in the task that needs it"),
                    Some(cname),
                    None,
                    vec![],
                ),
                (Some(_), Some((mut tasks, sets))) => {
                    let sets = sets.len();
                    tasks.sort_unstable();
                    let shown = if tasks.len() > 10 {
                        format!("{} and {} more", ticks(&tasks[..10]), tasks.len() - 10)
                    } else {
                        ticks(&tasks)
                    };
                    self.push(
                        RuleId::SharedCredential,
                        cred.span.clone(),
                        format!(
                            "credential `{cname}` serves {} tasks with {} different sets of needs: {shown}",
                            tasks.len(),
                            sets
                        ),
                        format!("give each of these tasks (or each group with the same needs) its own credential instead of `{cname}`"),
                        Some(cname),
                        None,
                        vec![],
                    );
                }
                (Some(_), None) => {}
            }
            let wild: Vec<&super::Sp<Scope>> = cred
                .scopes
                .iter()
                .filter(|s| s.value.is_wildcard())
                .collect();
            if let Some(first) = wild.first() {
                let names: Vec<String> = wild.iter().map(|s| s.value.to_string()).collect();
                self.push(
                    RuleId::WildcardScope,
                    first.span.clone(),
                    format!(
                        "credential `{cname}` holds wildcard {} {}",
                        if names.len() == 1 { "scope" } else { "scopes" },
                        ticks(&names)
                    ),
                    format!(
                        "list the exact scopes `{cname}` needs instead of {}",
                        ticks(&names)
                    ),
                    Some(cname),
                    None,
                    names,
                );
            }
        }
    }

    /// undeclared-scope: once per distinct scope, at its first use, when a catalog exists.
    fn undeclared_scopes(&mut self) {
        let p = self.policy;
        if p.catalog.is_empty() {
            return;
        }
        // Declared: a catalog key, or under a catalog wildcard: what a set of the keys grants.
        let mut keys = GrantSet::default();
        for e in p.catalog.values() {
            keys.insert(&e.scope);
        }
        let declared = |s: &Scope| keys.grants(s);
        // scope → (number of uses, first use, its credential, its task)
        let mut uses: BTreeMap<String, FirstUse> = BTreeMap::new();
        let mut note = |s: &super::Sp<Scope>, c: Option<&str>, t: Option<&str>| {
            if declared(&s.value) {
                return;
            }
            let e = uses.entry(s.value.to_string()).or_insert_with(|| {
                (
                    0,
                    s.span.clone(),
                    c.map(str::to_owned),
                    t.map(str::to_owned),
                )
            });
            e.0 += 1;
            if s.span.start < e.1.start {
                *e = (
                    e.0,
                    s.span.clone(),
                    c.map(str::to_owned),
                    t.map(str::to_owned),
                );
            }
        };
        for e in p.catalog.values() {
            for s in &e.implies {
                note(s, None, None);
            }
        }
        for (cname, c) in &p.credentials {
            for s in &c.scopes {
                note(s, Some(cname), None);
            }
        }
        for (tname, t) in &p.tasks {
            for s in &t.needs {
                note(s, None, Some(tname));
            }
        }
        for (scope, (count, span, cred, task)) in uses {
            let hint = if p.catalog.len() <= 5_000 {
                did_you_mean_within(
                    &scope,
                    p.catalog.keys().map(String::as_str),
                    &mut self.suggest_budget,
                )
            } else {
                None
            };
            let help = match hint {
                Some(h) => {
                    format!("did you mean `{h}`? Otherwise add [scopes.\"{scope}\"] to the catalog")
                }
                None => format!(
                    "add [scopes.\"{scope}\"] with its risk to the catalog, or fix its spelling"
                ),
            };
            let also = if count > 1 {
                format!(" (used {count} times)")
            } else {
                String::new()
            };
            self.push(
                RuleId::UndeclaredScope,
                span,
                format!("scope `{scope}` is not in the scope catalog{also}"),
                help,
                cred.as_deref(),
                task.as_deref(),
                vec![scope],
            );
        }
    }

    /// missing-secret, both-totp-seeds, unusable-totp-seed, secret-beside-totp-seed,
    /// rotation-overdue, vault-differs-from-policy, totp-seed-handed-out.
    fn vault(&mut self, v: &VaultMeta) {
        self.env_field_collisions(v);
        let p = self.policy;
        let today = self.opts.today;
        for (cname, cred) in &p.credentials {
            if let Some(stored) = v.credentials.get(cname).and_then(|m| m.stored.as_ref()) {
                self.vault_differs(cname, cred, stored);
            }
            if let Some(seed) = v
                .credentials
                .get(cname)
                .and_then(|m| m.totp_seed.as_deref())
            {
                self.seed_handed_out(cname, cred, seed);
            }
            match v.credentials.get(cname) {
                Some(m) if m.has_secret => {
                    if cred.kind.value == super::CredentialKind::Totp && !m.beside_seed.is_empty() {
                        let names: Vec<String> =
                            m.beside_seed.iter().map(|k| format!("`{k}`")).collect();
                        self.push(
                            RuleId::SecretBesideTotpSeed,
                            cred.kind.span.clone(),
                            format!(
                                "credential `{cname}` is declared `totp` and the vault holds secret(s) other than its seed: {}. A totp credential holds only its seed (`totp_seed` or `otpauth`) and its runners get codes, never a secret, so the daemon hands none of them out (an older scopevault handed them out beside the code), and `publish` and `bundle apply` refuse the credential",
                                names.join(", ")
                            ),
                            format!(
                                "store the seed: `{}` (or `--secret otpauth`) stores it and removes every other secret of the credential",
                                advise(&format!("cred set {} --secret totp_seed", word(cname)))
                            ),
                            Some(cname),
                            None,
                            vec![],
                        );
                    }
                    if m.both_totp_seeds {
                        // The daemon makes codes for `totp` credentials only; of any other kind
                        // the writers still refuse a change of secrets that keeps both.
                        let so = if cred.kind.value == super::CredentialKind::Totp {
                            "every fetch of it fails rather than make a code from either"
                        } else {
                            "a change of its other secrets is refused until one is kept"
                        };
                        self.push(
                            RuleId::BothTotpSeeds,
                            cred.span.clone(),
                            format!(
                                "credential `{cname}` holds both `totp_seed` and `otpauth` in the vault (saved by an older scopevault): two TOTP seeds, so {so}"
                            ),
                            format!(
                                "keep the seed in use: `{}` (or `--secret totp_seed`) stores it and removes the other",
                                advise(&format!("cred set {} --secret otpauth", word(cname)))
                            ),
                            Some(cname),
                            None,
                            vec![],
                        );
                    }
                    if let Some(u) = &m.unusable_totp_seed {
                        let so = if cred.kind.value == super::CredentialKind::Totp {
                            "every fetch of it fails, "
                        } else {
                            ""
                        };
                        self.push(
                            RuleId::UnusableTotpSeed,
                            cred.span.clone(),
                            format!(
                                "credential `{cname}` holds a TOTP seed in `{}` that gives no code (saved by an older scopevault): {}. So {so}`publish` refuses to put it in a bundle and a checkpoint's `bundle apply` refuses it",
                                u.field, u.why
                            ),
                            format!(
                                "store a usable seed: `{}` (a standard otpauth://totp/ URI) or `--secret totp_seed` (base32), which replaces it",
                                advise(&format!("cred set {} --secret otpauth", word(cname)))
                            ),
                            Some(cname),
                            None,
                            vec![],
                        );
                    }
                    let period = cred
                        .rotate_every
                        .as_deref()
                        .or(p.max_credential_age.as_ref())
                        .map(|d| d.value);
                    let Some(period) = period else { continue };
                    let rotated = m.rotated.date();
                    let age = today - rotated;
                    if age > period {
                        let span = cred
                            .rotate_every
                            .as_ref()
                            .map_or(cred.span.clone(), |d| d.span.clone());
                        self.push(
                            RuleId::RotationOverdue,
                            span,
                            format!(
                                "the secret of credential `{cname}` was last rotated on {rotated}, {} days ago, more than its rotation period of {}",
                                age.whole_days(),
                                super::parse::format_duration(period)
                            ),
                            format!(
                                "rotate `{cname}` in the target system and store it with `{}`",
                                advise(&format!("cred set {} --secret KEY", word(cname)))
                            ),
                            Some(cname),
                            None,
                            vec![],
                        );
                    }
                }
                _ => self.push(
                    RuleId::MissingSecret,
                    cred.span.clone(),
                    format!(
                        "credential `{cname}` is declared but the vault holds no secret for it"
                    ),
                    format!(
                        "store it with `{}`",
                        advise(&format!(
                            "cred add {} --kind {}",
                            word(cname),
                            cred.kind.value
                        ))
                    ),
                    Some(cname),
                    None,
                    vec![],
                ),
            }
        }
    }

    /// vault-differs-from-policy: the entry of `cname` is stored with another kind, scopes or
    /// origins than `cred` declares. The finding points at the first thing that differs (the
    /// `kind`, else the first declared scope or origin, else the credential's name) and names
    /// the entry's kind, never its scopes or origins (they are the vault's, not the file's).
    /// env-name-collision, with the vault: the variables `exec` names from each listed
    /// credential's stored fields (names only, never a value), so a credential's name meeting
    /// another's field (`shop` with field `buyer-password`, `shop-buyer` with `password`) or
    /// two fields of one credential (`client-id`, `client_id`) are seen. Two credentials whose
    /// names give one part are reported from the policy alone ([`Linter::tasks`]), not again.
    fn env_field_collisions(&mut self, v: &VaultMeta) {
        let p = self.policy;
        let mut vars: HashMap<String, (&str, &str, bool)> = HashMap::default();
        let mut listed: HashSet<&str> = HashSet::default();
        for (tname, task) in &p.tasks {
            vars.clear();
            listed.clear();
            for cref in &task.credentials {
                let cname = cref.value.as_str();
                let (Some(cred), Some(meta)) = (p.credentials.get(cname), v.credentials.get(cname))
                else {
                    continue;
                };
                if !listed.insert(cname) {
                    continue;
                }
                // What `fetch` hands out: plain and secret fields, but of a `totp` credential
                // the current code and its seconds left instead of the seed.
                let totp = cred.kind.value == super::CredentialKind::Totp;
                let withheld = if totp {
                    super::CredentialKind::Totp.secret_fields()
                } else {
                    &[]
                };
                let added: &[&str] = if totp {
                    &["totp_code", "totp_seconds_left"]
                } else {
                    &[]
                };
                // `generated`: a field `fetch` makes (the TOTP code, its seconds left), not one
                // the vault stores; the messages must not call it stored (twenty-third pass).
                let fields = meta
                    .fields
                    .iter()
                    .map(|f| (f.as_str(), false))
                    .filter(|(f, _)| !withheld.contains(f))
                    .chain(added.iter().map(|f| (*f, true)));
                for (field, generated) in fields {
                    let var = crate::policy::env_var_name(cname, field);
                    // One of scopevault's own variables (`identity`'s `file` as
                    // SCOPEVAULT_IDENTITY_FILE): exec would replace the caller's value with a
                    // secret; it refuses before it fetches (twenty-third pass).
                    if crate::policy::is_reserved_env_var(&var) {
                        self.push(
                            RuleId::EnvNameCollision,
                            cref.span.clone(),
                            format!("credential `{cname}` holds field `{field}` in the vault, which `scopevault exec` hands over as {var} for task `{tname}`: a variable scopevault itself reads or sets, which it would replace in the command's environment; exec refuses to run the command, before anything is fetched"),
                            format!("rename credential `{cname}` or its field `{field}`, or run the task's command with `scopevault exec --files`"),
                            Some(cname),
                            Some(tname),
                            vec![],
                        );
                        self.detail(var);
                        continue;
                    }
                    let Some(&(first, first_field, first_generated)) = vars.get(&var) else {
                        vars.insert(var, (cname, field, generated));
                        continue;
                    };
                    if first != cname
                        && crate::policy::env_name_part(first)
                            == crate::policy::env_name_part(cname)
                    {
                        continue;
                    }
                    let (message, help) = if first == cname && !(first_generated || generated) {
                        (
                            format!("credential `{cname}` holds fields `{first_field}` and `{field}` in the vault, which `scopevault exec` hands over as one environment variable, {var}, for task `{tname}`: exec refuses to run the command, after it was fetched"),
                            format!("rename field `{first_field}` or `{field}` of `{cname}` (names that differ only in `-`, `_`, `.` or case give one variable), or run the task's command with `scopevault exec --files`"),
                        )
                    } else if first == cname {
                        let (stored, made) = if generated {
                            (first_field, field)
                        } else {
                            (field, first_field)
                        };
                        (
                            format!("credential `{cname}` holds field `{stored}` in the vault, which `scopevault exec` hands over as {var} for task `{tname}`, the variable of {}: exec refuses to run the command, after it was fetched", generated_field(made)),
                            format!("rename field `{stored}` of `{cname}`, or run the task's command with `scopevault exec --files`"),
                        )
                    } else {
                        (
                            format!(
                                "task `{tname}` lists credentials `{first}` and `{cname}`, whose {} `scopevault exec` hands over as one environment variable, {var}: exec refuses to run the command, after both were fetched",
                                if first_generated || generated {
                                    let each = |c: &str, f: &str, g: bool| {
                                        if g {
                                            format!("`{c}.{f}` ({})", generated_field(f))
                                        } else {
                                            format!("`{c}.{f}` (stored in the vault)")
                                        }
                                    };
                                    format!(
                                        "fields {} and {}",
                                        each(first, first_field, first_generated),
                                        each(cname, field, generated)
                                    )
                                } else {
                                    format!("fields `{first}.{first_field}` and `{cname}.{field}` (stored in the vault)")
                                }
                            ),
                            format!("rename credential `{first}` or `{cname}`, or one of the two fields, or run the task's command with `scopevault exec --files`"),
                        )
                    };
                    self.push(
                        RuleId::EnvNameCollision,
                        cref.span.clone(),
                        message,
                        help,
                        Some(cname),
                        Some(tname),
                        vec![],
                    );
                    self.detail(var);
                }
            }
        }
    }

    fn vault_differs(&mut self, cname: &str, cred: &CredentialDecl, stored: &super::StoredAs) {
        let d = cred.stored_differences(stored.kind, &stored.scopes, &stored.origins);
        if d.is_empty() {
            return;
        }
        let span = if d.kind.is_some() {
            cred.kind.span.clone()
        } else if d.scopes {
            cred.scopes
                .first()
                .map_or(cred.span.clone(), |s| s.span.clone())
        } else {
            cred.origins
                .first()
                .map_or(cred.span.clone(), |s| s.span.clone())
        };
        let totp = if cred.kind.value == super::CredentialKind::Totp && d.kind.is_some() {
            " (codes, never the seed)"
        } else {
            ""
        };
        self.push(
            RuleId::VaultDiffersFromPolicy,
            span,
            format!(
                "the vault entry of credential `{cname}` differs from its declaration in {}: the daemon hands it out as declared (kind `{}`{totp}, the declared scopes and origins), while `cred show` shows the entry",
                d.describe(),
                cred.kind.value
            ),
            format!(
                "apply this policy again (`{}`): it stores the declaration of `{cname}` in its entry; or, if the entry is what was meant, change [credentials.{cname}] and apply that",
                advise("policy apply POLICY")
            ),
            Some(cname),
            None,
            vec![],
        );
    }

    /// totp-seed-handed-out: `cname`, declared with a kind other than `totp`, holds the TOTP
    /// seed field `seed` in the vault, so `fetch` hands the seed itself out. The finding points
    /// at the `kind` and names the field, never its value.
    fn seed_handed_out(&mut self, cname: &str, cred: &CredentialDecl, seed: &str) {
        let kind = cred.kind.value;
        if kind == super::CredentialKind::Totp {
            return;
        }
        self.push(
            RuleId::TotpSeedHandedOut,
            cred.kind.span.clone(),
            format!(
                "credential `{cname}` (kind `{kind}`) holds a TOTP seed (`{seed}`) in the vault: the seed itself is handed out to the runners of the tasks that list it, who can make every code from it; checks that only need codes should get kind = \"totp\""
            ),
            format!(
                "declare the seed as a credential of its own with kind = \"totp\" (or give `{cname}` kind = \"totp\" if it holds only the seed), list it in the task, and store `{cname}` again without it (`{}`, then `{}` with its other secrets); if a check really needs the seed itself, add a reviewed, expiring exception with rule = \"totp-seed-handed-out\", credential = \"{cname}\"",
                advise(&format!("cred rm {}", word(cname))),
                advise(&format!("cred add {}", word(cname)))
            ),
            Some(cname),
            None,
            vec![],
        );
    }

    /// credential-never-fetched, task-credential-never-fetched, runner-never-seen,
    /// task-never-fetched: the policy against what the audit logs show was fetched. One
    /// finding per cause: a task that never ran gets `task-never-fetched` alone (not one finding
    /// per credential and runner), and a credential no task fetched gets
    /// `credential-never-fetched` alone (not one per task listing it).
    fn usage(&mut self, ev: &Evidence) {
        let p = self.policy;
        // Credentials a task the logs cannot speak for lists (a location whose checkpoints'
        // logs were not given): not judged either.
        let unjudged: HashSet<&str> = if ev.covers_every_task() {
            HashSet::default()
        } else {
            p.tasks
                .iter()
                .filter(|(t, _)| !ev.covers_task(t))
                .flat_map(|(_, t)| t.credentials.iter().map(|c| c.value.as_str()))
                .collect()
        };
        for (cname, cred) in &p.credentials {
            if !ev.credential_fetched(cname) && !unjudged.contains(cname.as_str()) {
                self.push(
                    RuleId::CredentialNeverFetched,
                    cred.span.clone(),
                    format!("no task fetched credential `{cname}` in the audit logs' window"),
                    format!("remove [credentials.{cname}] and its uses (and revoke it in the target system), or add an expiring exception if a rare job needs it"),
                    Some(cname),
                    None,
                    vec![],
                );
            }
        }
        for (tname, task) in &p.tasks {
            if !ev.covers_task(tname) {
                continue;
            }
            if !ev.task_fetched(tname) {
                self.push(
                    RuleId::TaskNeverFetched,
                    task.span.clone(),
                    format!("task `{tname}` never fetched a credential in the audit logs' window"),
                    format!("remove [tasks.{tname}], or check why its monitor no longer runs"),
                    None,
                    Some(tname),
                    vec![],
                );
                continue;
            }
            for cref in task.credentials.iter() {
                let cname = cref.value.as_str();
                // Not when `credential-never-fetched` already names the credential.
                if !p.credentials.contains_key(cname)
                    || (!ev.credential_fetched(cname) && !unjudged.contains(cname))
                    || ev.pair_fetched(tname, cname)
                {
                    continue;
                }
                self.push(
                    RuleId::TaskCredentialNeverFetched,
                    cref.span.clone(),
                    format!("task `{tname}` ran but never fetched credential `{cname}` in the audit logs' window"),
                    format!("remove `{cname}` from the `credentials` of [tasks.{tname}]"),
                    Some(cname),
                    Some(tname),
                    vec![],
                );
            }
            let Some(r) = &task.runners else { continue };
            for (list, kind) in [(&r.users, "user"), (&r.groups, "group")] {
                for who in list.iter() {
                    let seen = if kind == "user" {
                        ev.user_seen(tname, &who.value)
                    } else {
                        ev.group_seen(tname, &who.value)
                    };
                    if seen == Some(false) {
                        self.push(
                            RuleId::RunnerNeverSeen,
                            who.span.clone(),
                            format!(
                                "runner {kind} `{}` of task `{tname}` never fetched for it in the audit logs' window",
                                who.value
                            ),
                            format!(
                                "remove \"{}\" from the runner {kind}s of [tasks.{tname}]",
                                who.value
                            ),
                            None,
                            Some(tname),
                            vec![],
                        );
                        self.detail(format!("{kind}:{}", who.value));
                    }
                }
            }
        }
    }

    /// Exceptions: validate them, mark the finding each one hides, report expired ones and ones
    /// that match nothing. Runs last, over every other finding.
    fn exceptions(&mut self) {
        let p = self.policy;
        let today = self.opts.today;
        if p.exceptions.is_empty() {
            return;
        }
        for r in &mut self.raw {
            if r.rule != RuleId::ImpliesCycle {
                r.scopes.sort_unstable();
                r.scopes.dedup();
            }
        }
        // (rule, credential, task, sorted scopes) → the findings with that subject. Only findings
        // of rules some exception names are indexed: usually a handful, not every finding.
        let named: HashSet<RuleId> = p
            .exceptions
            .iter()
            .filter_map(|e| RuleId::from_id(&e.rule.value))
            .collect();
        // The detail is part of the subject: the origin of an `origin-mismatch`, the runner of
        // a `runner-never-seen`, the variable of an `env-name-collision`, which an exception
        // names with `origin`, `runner` or `variable` (an exceptable rule's findings have no
        // other detail).
        type Key<'k> = (
            RuleId,
            Option<&'k str>,
            Option<&'k str>,
            &'k [String],
            Option<&'k str>,
        );
        let mut index: HashMap<Key<'_>, Vec<usize>> = HashMap::default();
        for (i, r) in self.raw.iter().enumerate() {
            if named.contains(&r.rule) && r.rule.info().exceptable {
                let key = (
                    r.rule,
                    r.credential.as_deref(),
                    r.task.as_deref(),
                    r.scopes.as_slice(),
                    r.detail.as_deref(),
                );
                index.entry(key).or_default().push(i);
            }
        }
        let mut new: Vec<Raw> = Vec::new();
        let mut hide: Vec<usize> = Vec::new();
        for e in &p.exceptions {
            let cred = e.credential.as_ref().map(|c| c.value.as_str());
            let task = e.task.as_ref().map(|t| t.value.as_str());
            let scopes = e.scope_set();
            let detail = e.subject();
            let subject = describe(e, cred, task);
            let identity = exception_identity(e);
            let mut invalid = |why: String, help: String, span: Range<usize>| {
                new.push(Raw {
                    rule: RuleId::InvalidException,
                    message: format!("invalid exception for {subject}: {why}"),
                    help,
                    span,
                    credential: cred.map(str::to_owned),
                    task: task.map(str::to_owned),
                    scopes: scopes.clone(),
                    detail: Some(identity.clone()),
                    excepted: false,
                });
            };
            let info = match rule(&e.rule.value) {
                Some(i) => i,
                None => {
                    let hint = did_you_mean(&e.rule.value, RULES.iter().map(|r| r.id));
                    invalid(
                        format!("there is no rule `{}`", e.rule.value),
                        match hint {
                            Some(h) => format!("did you mean `{h}`?"),
                            None => "use a rule id from docs/lint-rules.md".to_owned(),
                        },
                        e.rule.span.clone(),
                    );
                    continue;
                }
            };
            if !info.exceptable {
                invalid(
                    format!("rule `{}` cannot be excepted", info.id),
                    "errors and the exception rules themselves cannot be excepted: fix the finding instead".to_owned(),
                    e.rule.span.clone(),
                );
                continue;
            }
            if e.reason.as_ref().is_none_or(|r| r.value.trim().is_empty()) {
                invalid(
                    "it has no reason".to_owned(),
                    "add `reason = \"…\"` saying why the finding is accepted and what will fix it"
                        .to_owned(),
                    e.reason.as_ref().map_or(e.span.clone(), |r| r.span.clone()),
                );
                continue;
            }
            let Some(expires) = &e.expires else {
                invalid(
                    "it has no expiry".to_owned(),
                    "add `expires = \"YYYY-MM-DD\"`: exceptions are temporary by design".to_owned(),
                    e.span.clone(),
                );
                continue;
            };
            if today >= expires.value {
                // "Reported again" only when a finding it covers is there: an exception that
                // matched nothing hid nothing (twenty-second pass).
                let covers = !e.scopes_invalid
                    && index.contains_key(&(info.rule, cred, task, scopes.as_slice(), detail));
                let (what, help) = if covers {
                    (
                        "the finding it hid is reported again",
                        "fix the finding and remove the exception, or review it again and move `expires`",
                    )
                } else {
                    (
                        "it matches no finding, so nothing it hid is reported again: remove it",
                        "remove the exception: no finding has its rule, credential, task and scopes (the finding is gone, or the exception never matched it)",
                    )
                };
                new.push(Raw {
                    rule: RuleId::ExceptionExpired,
                    message: format!(
                        "the exception for {subject} expired on {}; {what}",
                        expires.value
                    ),
                    help: help.to_owned(),
                    span: expires.span.clone(),
                    credential: cred.map(str::to_owned),
                    task: task.map(str::to_owned),
                    scopes: scopes.clone(),
                    detail: Some(identity.clone()),
                    excepted: false,
                });
                continue;
            }
            if e.scopes_invalid {
                // Already an `invalid-scope` finding; the policy is refused as a whole.
                continue;
            }
            let key: Key<'_> = (info.rule, cred, task, scopes.as_slice(), detail);
            match index.get(&key) {
                Some(found) => hide.extend(found.iter().copied()),
                None => invalid(
                    "it matches no finding".to_owned(),
                    "copy rule, credential, task and scopes exactly from the finding it should hide (run `scopevault lint --format json`), and for `origin-mismatch` the task's `origin`, for `runner-never-seen` the `runner` (\"user:NAME\" or \"group:NAME\"), for an `env-name-collision` the vault names the `variable`; or remove the exception if the finding is gone".to_owned(),
                    e.span.clone(),
                ),
            }
        }
        for i in hide {
            self.raw[i].excepted = true;
        }
        self.raw.extend(new);
    }
}

/// What tells an exception from another with the same credential, task and scopes, for the
/// `detail` of its findings: the rule it names, its reason and its expiry, as written. Not its
/// place nor its position among the `[[exceptions]]`: an edit elsewhere in the file, or
/// another exception added or removed above it, keeps its alert. (Two exceptions alike in all
/// of these are told apart by their order alone, [`Finding::occurrence`].)
fn exception_identity(e: &super::Exception) -> String {
    let subject = e.subject.as_ref().map_or_else(String::new, |(k, v)| {
        format!(", {} {:?}", k.as_str(), v.value)
    });
    format!(
        "exception for rule {:?}{subject}, reason {}, expires {}",
        e.rule.value,
        e.reason
            .as_ref()
            .map_or_else(|| "none".to_owned(), |r| format!("{:?}", r.value)),
        e.expires
            .as_ref()
            .map_or_else(|| "none".to_owned(), |d| d.value.to_string()),
    )
}

/// "`scope-exceeds-task` (credential `a`, task `b`)", with its `origin`, `runner` or
/// `variable` when it names one.
fn describe(e: &super::Exception, cred: Option<&str>, task: Option<&str>) -> String {
    let rule = e.rule.value.as_str();
    let mut parts = Vec::new();
    if let Some(c) = cred {
        parts.push(format!("credential `{c}`"));
    }
    if let Some(t) = task {
        parts.push(format!("task `{t}`"));
    }
    if let Some((k, v)) = &e.subject {
        parts.push(format!("{} `{}`", k.as_str(), v.value));
    }
    if parts.is_empty() {
        format!("`{rule}`")
    } else {
        format!("`{rule}` ({})", parts.join(", "))
    }
}

/// The ids of every rule, in documentation order.
pub fn rule_ids() -> Vec<&'static str> {
    RULES.iter().map(|r| r.id).collect()
}

#[cfg(test)]
mod tests {
    use super::super::error::LineIndex;
    use super::LineCursor;

    /// `high-risk-scope-unneeded` scanned every catalog scope under each excess wildcard of
    /// each (task, credential) pair (twenty-second pass's review): `K` high-risk keys `k:J`
    /// and `T` tasks each needing `k:*` (or the one high-risk key `k:admin` among `K` low-risk
    /// ones) with a credential holding `*` cost `T × K` (20,000 tasks over 100,000 keys, 5.6
    /// MB: 244 s). The steps it takes (high-risk scopes and ranges of them looked at) must stay
    /// within a small multiple of the policy's size and grow linearly with it; the findings
    /// are those of the scan (`high_risk_findings_are_those_of_a_scan_of_the_catalog`).
    #[test]
    fn high_risk_scope_check_is_linear_in_the_policy() {
        use super::{lint_source, LintOptions};
        type Shape = fn(usize) -> String;
        let shapes: [(&str, Shape); 2] = [
            ("every key high, tasks need k:*", |n| {
                high_risk_shape(n, n, "risk = \"high\"", "k:*")
            }),
            ("one high key, needed", |n| {
                high_risk_shape(n, n, "risk = \"low\"", "k:admin")
            }),
        ];
        let opts = LintOptions::new(time::macros::date!(2026 - 01 - 01));
        for (name, shape) in shapes {
            let mut last = None;
            for n in [200, 400] {
                let text = shape(n);
                let r = lint_source(&text, "p.toml", &opts).unwrap();
                assert_eq!(
                    r.findings()
                        .iter()
                        .filter(|f| f.rule == super::RuleId::ScopeExceedsTask)
                        .count(),
                    n,
                    "{name}"
                );
                let steps = r.high_risk_steps;
                assert!(
                    steps <= 2 * text.len() as u64,
                    "{name}, n = {n}: {steps} steps for {} bytes of policy",
                    text.len()
                );
                if let Some(before) = last {
                    assert!(
                        steps <= 3 * before,
                        "{name}: {before} steps at n = 200, {steps} at n = 400: not linear"
                    );
                }
                last = Some(steps);
            }
        }
    }

    /// `k` catalog keys `k:J` (with `risk`) and a high-risk `k:admin`; `t` tasks needing
    /// `need`, each listing a credential of its own holding `*`.
    fn high_risk_shape(k: usize, t: usize, risk: &str, need: &str) -> String {
        let mut s = String::from("version = 1\n[scopes]\n\"k:admin\" = { risk = \"high\" }\n");
        for j in 0..k {
            s += &format!("\"k:{j}\" = {{ {risk} }}\n");
        }
        s += "[credentials]\n";
        for i in 0..t {
            s += &format!("c{i} = {{ kind = \"login\", scopes = [\"*\"] }}\n");
        }
        s += "[tasks]\n";
        for i in 0..t {
            s += &format!(
                "t{i} = {{ needs = [\"{need}\"], credentials = [\"c{i}\"], runners = {{ users = [\"u\"] }} }}\n"
            );
        }
        s
    }

    /// A scope of a megabyte listed by 500 tasks made a gigabyte of report (twenty-fourth
    /// pass, found by attacking outputs as injection targets): each `scope-exceeds-task`
    /// copied it into its message, help and `scopes`. At the limits now — scopes of
    /// [`MAX_SCOPE_BYTES`](crate::policy::MAX_SCOPE_BYTES), origins of 300 bytes, names of 128,
    /// many of each — every format of the report stays within 4 times the bytes the
    /// comparisons were charged ([`crate::policy::MAX_COMPARED_BYTES`]) plus 4 KiB a finding.
    #[test]
    fn every_format_of_the_report_is_bounded_by_the_bytes_charged_at_the_limits() {
        use super::super::Policy;
        use super::{lint, Class, LintOptions};
        let scope = |p: &str, i: usize| {
            let head = format!("{p}:{i}:");
            format!(
                "{head}{}",
                "x".repeat(crate::policy::MAX_SCOPE_BYTES - head.len())
            )
        };
        let origin = |h: &str| {
            let host = format!("{h}{}", "o".repeat(63 - h.len()));
            // A scheme of 35 letters, a host of 252 characters and a port: 295 bytes.
            format!(
                "{}://{host}.{host}.{host}.{}.example:1234",
                "w".repeat(35),
                "p".repeat(52)
            )
        };
        assert!(origin("a").len() <= 300 && origin("a").len() > 290);
        // Two credentials alike, each listed by every task (a list names a credential once).
        let cname = format!("c{}", "n".repeat(127));
        let dname = format!("d{}", "n".repeat(127));
        let mut src = String::from("version = 1\n");
        for name in [&cname, &dname] {
            src += &format!("[credentials.{name}]\nkind = \"login\"\nscopes = [");
            for i in 0..40 {
                src += &format!("\"{}\", ", scope("s", i));
            }
            src += &format!(
                "\"*\"]\norigins = [\"{}\", \"{}\"]\n",
                origin("a"),
                origin("b")
            );
        }
        let tasks = 30;
        for t in 0..tasks {
            src += &format!("[tasks.t{t}{}]\nneeds = [", "m".repeat(120));
            for i in 0..30 {
                src += &format!("\"{}\", ", scope("n", i));
            }
            src += &format!(
                "]\ncredentials = [\"{cname}\", \"{dname}\"]\nrunners = {{ users = [\"u\"] }}\norigin = \"{}\"\n",
                origin("z")
            );
        }
        let policy = Policy::parse_lenient(&src, "p.toml").unwrap();
        let report = lint(
            &policy,
            &LintOptions::new(time::macros::date!(2026 - 01 - 01)),
        );
        let findings = report.findings().len();
        assert!(findings >= 4 * tasks, "{findings} findings");
        let bound = 4 * policy.compared_bytes as usize + 4096 * findings;
        for (format, out) in [
            ("text", report.render_text(false)),
            ("json", report.render_json()),
            ("sarif", report.render_sarif()),
            ("junit", report.render_junit(Class::SecurityWarning)),
        ] {
            assert!(
                out.len() <= bound,
                "{format}: {} bytes for {findings} findings and {} bytes charged (bound {bound})",
                out.len(),
                policy.compared_bytes
            );
        }
    }

    #[test]
    fn line_cursor_agrees_with_the_line_index() {
        let src = "a = 1\n\nkéy = \"välue\"\r\n[t]\nx = 2";
        let idx = LineIndex::new(src);
        let mut at = LineCursor::default();
        for off in 0..=src.len() + 3 {
            let want = idx.line_col(src, off);
            assert_eq!(at.clone().advance(src, off), want, "offset {off}");
            assert_eq!(at.advance(src, off), want, "offset {off}");
        }
        // Going back rescans, with the same answers.
        assert_eq!(at.advance(src, 3), idx.line_col(src, 3));
    }

    /// GitHub rejects a SARIF run of more than 25,000 results: at 25,000 the report keeps
    /// every result, at 25,001 it leaves out one (the boundary of
    /// `sarif_keeps_the_25000_most_severe_results_and_says_what_it_left_out`).
    #[test]
    fn the_sarif_cut_starts_above_25000_results() {
        use super::{lint_source, LintOptions};
        let policy = |n: usize| {
            let mut s = String::from(
                "version = 1\n[tasks.a]\nneeds = []\nrunners = { users = [\"u\"] }\nschedulers = [\"s\"",
            );
            s.push_str(&", \"s\"".repeat(n));
            s + "]\n"
        };
        let opts = LintOptions::new(time::macros::date!(2026 - 01 - 01));
        let at = lint_source(&policy(25_000), "p.toml", &opts).unwrap();
        assert_eq!(at.sarif_result_count(), 25_000);
        assert!(at.sarif_cut().is_none());
        let warning = at.sarif_limit_warning().unwrap();
        assert!(warning.contains("shows only 5000"), "{warning}");
        let over = lint_source(&policy(25_001), "p.toml", &opts).unwrap();
        assert!(over.sarif_cut().is_some());
        let warning = over.sarif_limit_warning().unwrap();
        assert!(
            warning.contains("leaves out 1 (the least severe warnings)"),
            "{warning}"
        );
    }

    /// A UTF-8 byte order mark shifted every column of line 1 by one (found by a CI
    /// maintainer's review, fifteenth pass: SARIF §3.30.2, regions SHALL NOT depend on a BOM).
    /// Line 1's columns count from after it, in the cursor and the index alike; other lines
    /// are unaffected, and the line shown under a message leaves the mark out.
    #[test]
    fn a_byte_order_mark_is_not_a_column() {
        let plain = "a = 1\nkéy = 2\n";
        let bom = format!("\u{FEFF}{plain}");
        let (idx, bidx) = (LineIndex::new(plain), LineIndex::new(&bom));
        for off in 0..=plain.len() {
            let want = idx.line_col(plain, off);
            assert_eq!(bidx.line_col(&bom, off + 3), want, "offset {off}");
            assert_eq!(
                LineCursor::default().advance(&bom, off + 3),
                want,
                "offset {off}"
            );
        }
        // Inside the mark: column 1.
        for off in 0..3 {
            assert_eq!(bidx.line_col(&bom, off), (1, 1));
            assert_eq!(LineCursor::default().advance(&bom, off), (1, 1));
        }
        // A cursor walking forward agrees with the index.
        let mut at = LineCursor::default();
        for off in 0..=bom.len() {
            assert_eq!(
                at.advance(&bom, off),
                bidx.line_col(&bom, off),
                "offset {off}"
            );
        }
        assert_eq!(bidx.line_text(&bom, 1), "a = 1");
    }
}
