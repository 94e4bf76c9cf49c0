//! Why a request was refused: one typed reason per way the daemon says no, each knowing the
//! error code and message the client gets and the decision the audit log records.
//! [`Refusal::audit`] is the one mapping from a refusal to its audit decision and reason; every
//! op (`fetch`, `ticket`, `scrub_report`, the admin ops, a line too long) goes through it.
//!
//! The rule (docs/audit.md, "Decisions"): `deny` when the request was refused for who asked or
//! what was asked for — authorisation, a name the applied policy does not declare or grant, a
//! ticket that does not redeem, a credential the vault cannot hand out as the policy lists it,
//! a wrong key, a rollback, a malformed request; `error` when the daemon could not serve a
//! request it might have granted — locked, a fault, no room, no audit.

use crate::audit::Decision;
use crate::protocol::{ErrorBody, ErrorCode, Op, MAX_LINE, MAX_RESPONSE};

/// The answer to a task name the applied policy does not know. It does not repeat the name:
/// the message is also the audit record's reason (a client's name is audited as its HMAC).
pub(crate) const NO_SUCH_TASK: &str = "no task of that name in the applied policy (`scopevault policy export` lists them; the name asked for is audited as its HMAC)";

/// Why a request was refused. Names in a reason are the applied policy's (or the peer's uid),
/// never a name only the client sent: the message is also the audit record's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// The daemon holds no vault.
    Locked,
    /// No policy is applied to the vault (the message depends on the op).
    NoPolicy(Op),
    /// The applied policy has no task of the name asked for.
    NoSuchTask,
    /// A redeemed ticket's task is no longer in the applied policy (reloaded since).
    TaskGone {
        /// The ticket's task.
        task: String,
    },
    /// The peer is not one of the task's runners (`fetch` by name, `scrub_report`).
    NotARunner {
        /// The op refused.
        op: Op,
        /// The peer's uid.
        uid: u32,
        /// The task.
        task: String,
    },
    /// No ticket with this value is known.
    TicketUnknown,
    /// The ticket was redeemed before: possible interception.
    TicketSpent,
    /// The ticket is past its ttl.
    TicketExpired,
    /// The ticket's issuer has lost the right to it since it was issued (removed from the
    /// admin group, no longer a `--scheduler`, no longer named by the task's `schedulers`):
    /// revoked, never handed out (twenty-ninth pass).
    TicketRevoked {
        /// The issuer's uid.
        issuer: u32,
        /// The ticket's task.
        task: String,
    },
    /// The task does not list the credential asked for. The answer does not name it, declared
    /// or not: naming only declared ones told which names the vault declares.
    NotListed {
        /// The task.
        task: String,
    },
    /// A credential the task lists is not declared by the applied policy, which then says
    /// nothing of its kind and scopes (a policy with the lint's `unknown-credential` error,
    /// which `policy apply` and `publish` refuse).
    Undeclared {
        /// The credential.
        credential: String,
        /// The task.
        task: String,
    },
    /// A credential the task lists is not in the vault.
    NoSecret {
        /// The credential.
        credential: String,
    },
    /// A credential the task lists is in the vault without a secret value.
    EmptySecret {
        /// The credential.
        credential: String,
        /// The task.
        task: String,
    },
    /// `enforce = "deny"` and the credential grants more than the task needs.
    OverScoped {
        /// The credential.
        credential: String,
        /// The task.
        task: String,
        /// The scopes granted beyond the task's needs, comma-separated.
        excess: String,
        /// The expiry date of the exception for exactly this excess, which has expired
        /// ([`crate::policy::Grant::exception_expires`]).
        expired: Option<time::Date>,
    },
    /// A `totp` credential without a seed.
    NoTotpSeed {
        /// The credential.
        credential: String,
    },
    /// A `totp` credential whose seed cannot make codes.
    BadTotpSeed {
        /// The credential.
        credential: String,
        /// What is wrong with the seed (never the seed).
        error: String,
    },
    /// A credential over the bound on one credential (more than 64 fields or 1 MiB of
    /// values), which a vault saved by an older scopevault may hold: not handed out.
    CredentialTooLarge {
        /// The credential.
        credential: String,
        /// How it is over the bound (never a value).
        over: String,
    },
    /// A credential holding a field name both as a plain field and as a secret, which a
    /// vault saved by an older scopevault may hold: not handed out (which value is meant is
    /// unknown).
    FieldInBoth {
        /// The credential.
        credential: String,
        /// The field.
        field: String,
    },
    /// The answer to a `fetch` would be longer than a client accepts
    /// ([`crate::protocol::MAX_RESPONSE`]): its credentials together are too large.
    AnswerTooLarge {
        /// The task.
        task: String,
        /// The answer's length, bytes.
        bytes: usize,
        /// Asked by ticket: the advice to fetch one at a time does not fit, since a ticket
        /// is redeemed once (twenty-second pass).
        by_ticket: bool,
    },
    /// An admin op asked for by a peer that is no admin.
    NotAdmin {
        /// The op refused.
        op: Op,
        /// The peer's uid.
        uid: u32,
    },
    /// A `ticket` asked for by a peer that is neither an admin nor a scheduler.
    NotScheduler {
        /// The peer's uid.
        uid: u32,
    },
    /// A scheduler asked for a ticket for a task that does not name it.
    SchedulerNotNamed {
        /// The peer's uid.
        uid: u32,
        /// The task.
        task: String,
    },
    /// A `ticket` asked for through a right that rests on the asking process's kernel gid
    /// alone, which the user and group databases do not give its user (a setgid program, a
    /// primary group its `/etc/passwd` line does not give): a ticket outlives its process and
    /// its redemption judges the issuer by the databases alone, so none is issued.
    RightOnProcessGid {
        /// The peer's uid.
        uid: u32,
        /// The peer's kernel gid, the group the right rests on.
        gid: u32,
        /// The task.
        task: String,
    },
    /// Too many outstanding tickets.
    TooManyTickets,
    /// A scheduler that is not an admin holds its share of the ticket table.
    TicketShare {
        /// The peer's uid.
        uid: u32,
        /// The share, tickets.
        share: usize,
    },
    /// Schedulers that are not admins together hold their part of the ticket table.
    SchedulersTickets {
        /// That part, tickets.
        pool: usize,
    },
    /// A uid that is not an admin wrote its budget of audited hand-outs (docs/audit.md,
    /// "Growth"): it waits for its bucket to refill.
    OverBudget {
        /// The peer's uid.
        uid: u32,
        /// The budget's rate, bytes a second.
        rate: u64,
        /// The budget's burst, bytes.
        burst: u64,
    },
    /// Below the audit log's free-space reserve, a uid that is not an admin wrote its share
    /// of it (one burst).
    ReserveShare {
        /// The peer's uid.
        uid: u32,
        /// The share, bytes.
        share: u64,
    },
    /// `unlock` on a daemon that has no vault file to open.
    NoVault,
    /// The vault could not be opened or read again: the vault layer's code (`denied` for a
    /// wrong passphrase or key, `internal` otherwise) and message.
    Vault(ErrorBody),
    /// A vault older than the audit chain has recorded (the message says which).
    Rollback(String),
    /// The audit log cannot be written.
    AuditUnavailable,
    /// The audit chain's anchor cannot be written (docs/audit.md, "The anchor"): records cut
    /// from the log's end would go unnoticed, so no secret goes out.
    AnchorUnavailable,
    /// `audit_rotate` failed (the message says why).
    RotateFailed(String),
    /// A request line longer than [`MAX_LINE`].
    TooLarge,
}

impl Refusal {
    /// The stable code the client gets.
    pub(crate) fn code(&self) -> ErrorCode {
        use Refusal::*;
        match self {
            Locked => ErrorCode::Locked,
            NoPolicy(_)
            | NoSuchTask
            | TaskGone { .. }
            | TicketUnknown
            | Undeclared { .. }
            | NoSecret { .. }
            | EmptySecret { .. }
            | NoTotpSeed { .. } => ErrorCode::NotFound,
            NotARunner { .. }
            | TicketSpent
            | TicketExpired
            | TicketRevoked { .. }
            | NotListed { .. }
            | NotAdmin { .. }
            | NotScheduler { .. }
            | SchedulerNotNamed { .. }
            | RightOnProcessGid { .. } => ErrorCode::Denied,
            // The audit chain has recorded a newer generation: the file is refused, as the
            // vault's own rollback check refuses it (`vault_refused`, not `denied`, which made
            // an admin's `unlock` say "wrong passphrase").
            Rollback(_) => ErrorCode::VaultRefused,
            OverScoped { .. } => ErrorCode::OverScoped,
            BadTotpSeed { .. }
            | CredentialTooLarge { .. }
            | FieldInBoth { .. }
            | AnswerTooLarge { .. }
            | NoVault => ErrorCode::Internal,
            TooManyTickets
            | TicketShare { .. }
            | SchedulersTickets { .. }
            | OverBudget { .. }
            | ReserveShare { .. } => ErrorCode::Busy,
            Vault(body) => body.code,
            AuditUnavailable | AnchorUnavailable | RotateFailed(_) => ErrorCode::AuditUnavailable,
            TooLarge => ErrorCode::TooLarge,
        }
    }

    /// What the client is told (and the audit record's reason after the code).
    pub(crate) fn message(&self) -> String {
        use Refusal::*;
        match self {
            Locked => "the daemon is locked; an admin must run `scopevault unlock`".into(),
            NoPolicy(Op::ScrubReport) => {
                "no policy is applied to the vault, so no task has artefacts to report on".into()
            }
            NoPolicy(_) => "no policy is applied to the vault, so no task may fetch; an admin runs `scopevault policy apply`".into(),
            NoSuchTask => NO_SUCH_TASK.into(),
            TaskGone { task } => format!("no task `{task}` in the applied policy"),
            NotARunner { op: Op::ScrubReport, uid, task } => format!(
                "uid {uid} is not a runner of task `{task}`, so it may not report on its artefacts"
            ),
            NotARunner { uid, task, .. } => format!("uid {uid} is not a runner of task `{task}`"),
            TicketUnknown => {
                "no such ticket (tickets do not survive a restart or a lock)".into()
            }
            TicketSpent => "this ticket was already redeemed: possible interception; the attempt is audited".into(),
            TicketExpired => "this ticket has expired; ask for a new one".into(),
            TicketRevoked { issuer, task } => format!(
                "this ticket was issued by uid {issuer}, who may no longer ask for tickets for task `{task}` (removed from the admin group, no longer a `--scheduler`, or no longer named by the task's `schedulers`), so it is revoked and nothing is handed out; ask for a new ticket"
            ),
            NotListed { task } => format!("task `{task}` does not list a credential of that name"),
            Undeclared { credential: c, task } => format!("task `{task}` lists credential `{c}`, which the applied policy does not declare, so its kind and scopes are unknown and it is not handed out; an admin declares [credentials.{c}] in the policy and runs `scopevault policy apply`"),
            NoSecret { credential: c } => format!("credential `{c}` has no secret stored in the vault; an admin runs `scopevault cred add {c}`"),
            EmptySecret { credential: c, task } => format!("credential `{c}` (listed by task `{task}`) has no secret value stored in the vault; an admin runs `scopevault cred set {c} --secret KEY` and `scopevault reload`"),
            OverScoped { credential, task, excess, expired: None } => format!(
                "credential `{credential}` grants more than task `{task}` needs ({excess}) and enforce = \"deny\"; narrow the credential or add a reviewed exception"
            ),
            OverScoped { credential, task, excess, expired: Some(on) } => format!(
                "credential `{credential}` grants more than task `{task}` needs ({excess}) and enforce = \"deny\"; the exception for it expired on {on}: an admin renews it after a review (a later `expires` in its [[exceptions]] entry, then `scopevault policy apply`) or narrows the credential"
            ),
            NoTotpSeed { credential } => format!(
                "totp credential `{credential}` has no `totp_seed` or `otpauth` secret, so no code is made; an admin stores its seed with `scopevault cred set {credential} --secret totp_seed` (base32) or `--secret otpauth` (an otpauth:// URI), which removes any other secret it holds"
            ),
            BadTotpSeed { credential, error } => format!("credential `{credential}`: {error}"),
            CredentialTooLarge { credential, over } => format!(
                "credential `{credential}` is not handed out: {over} (vault-format.md, \"Payload\"; saved by an older scopevault); an admin splits it into several credentials (`scopevault doctor` names it)"
            ),
            FieldInBoth { credential, field } => format!(
                "credential `{credential}` is not handed out: it holds `{field}` both as a plain field and as a secret (saved by an older scopevault), and which value is meant is unknown; an admin keeps one with `scopevault cred set {credential} --secret {field}` or `--field {field}=VALUE`, which removes the other, and runs `scopevault reload`"
            ),
            AnswerTooLarge { task, bytes, by_ticket: false } => format!(
                "the credentials of task `{task}` together make an answer of {bytes} bytes, more than the {MAX_RESPONSE} (16 MiB) a client accepts, so nothing is handed out; fetch them one at a time (`--credential NAME`), or an admin lists fewer in the task"
            ),
            AnswerTooLarge { task, bytes, by_ticket: true } => format!(
                "the credentials of task `{task}` together make an answer of {bytes} bytes, more than the {MAX_RESPONSE} (16 MiB) a client accepts, so nothing is handed out and the ticket is not spent; a ticket is redeemed once, so they cannot be fetched one at a time with it: an admin splits the task into tasks whose credentials fit in one answer"
            ),
            NotAdmin { op, uid } => format!(
                "`{op}` is for admins (root, the daemon's user or its admin group); uid {uid} is none of these"
            ),
            NotScheduler { uid } => format!(
                "tickets are issued to admins and configured schedulers; uid {uid} is neither"
            ),
            SchedulerNotNamed { uid, task } => format!(
                "uid {uid} is a scheduler, but task `{task}` does not name it; an admin adds `schedulers = [\"{uid}\"]` (or the user's name) to [tasks.{task}] in the policy and applies it"
            ),
            RightOnProcessGid { uid, gid, task } => format!(
                "uid {uid} may ask for tickets for task `{task}` only through its process's group id {gid} (a setgid program, or a primary group its /etc/passwd line does not give), and /etc/passwd and /etc/group do not give the user that group; a ticket outlives the process that asks for it and its redemption judges the issuer by those databases alone, so none is issued: ask with a process whose right the databases give (an admin adds the user to the group)"
            ),
            TooManyTickets => "too many outstanding tickets; retry after some expire".into(),
            TicketShare { uid, share } => format!(
                "uid {uid} holds its share of outstanding tickets ({share}, a quarter of the daemon's table; the rest is kept for other schedulers and admins); retry after some of its tickets are redeemed or expire"
            ),
            SchedulersTickets { pool } => format!(
                "schedulers together hold {pool} outstanding tickets, the most they may (the rest of the table is kept for admins); retry after some are redeemed or expire"
            ),
            OverBudget { uid, rate, burst } => format!(
                "uid {uid} has used its budget of audited hand-outs ({} KiB of audit records a second, {} KiB at once; `serve --audit-rate-kib`, `--audit-burst-kib`), so nothing more is handed out to it now; retry in a few seconds",
                rate / 1024,
                burst / 1024
            ),
            ReserveShare { uid, share } => format!(
                "the audit log's file system is below its free-space reserve and uid {uid} has written its share of it ({} KiB), so nothing more is handed out to it until an admin frees space there (the rest is kept for other users and admins)",
                share / 1024
            ),
            NoVault => "this daemon has no vault to unlock".into(),
            Vault(body) => body.message.clone(),
            Rollback(message) => message.clone(),
            AuditUnavailable => "the audit log cannot be written, so nothing is handed out; an admin must fix the audit log (disk space, permissions)".into(),
            AnchorUnavailable => "the audit log's anchor cannot be written, so nothing is handed out (records cut from the log's end would go unnoticed); an admin must fix the state directory (disk space, permissions)".into(),
            RotateFailed(why) => format!("`audit rotate` failed: {why}"),
            TooLarge => format!("request line longer than {MAX_LINE} bytes; connection closed"),
        }
    }

    /// The audit decision: `deny` for a refusal of who asked or of what was asked for,
    /// `error` when the daemon could not serve (see the module's documentation).
    pub(crate) fn decision(&self) -> Decision {
        use Refusal::*;
        match self {
            NoPolicy(_)
            | NoSuchTask
            | TaskGone { .. }
            | NotARunner { .. }
            | TicketUnknown
            | TicketSpent
            | TicketExpired
            | TicketRevoked { .. }
            | NotListed { .. }
            | Undeclared { .. }
            | NoSecret { .. }
            | EmptySecret { .. }
            | OverScoped { .. }
            | NoTotpSeed { .. }
            | NotAdmin { .. }
            | NotScheduler { .. }
            | SchedulerNotNamed { .. }
            | RightOnProcessGid { .. }
            | Rollback(_)
            | TooLarge => Decision::Deny,
            // The vault refused the key (a wrong passphrase): an authentication refusal; or
            // the file (forged, rolled back): a refusal of what was asked to be loaded.
            Vault(body) if matches!(body.code, ErrorCode::Denied | ErrorCode::VaultRefused) => {
                Decision::Deny
            }
            Locked
            | BadTotpSeed { .. }
            | CredentialTooLarge { .. }
            | FieldInBoth { .. }
            | AnswerTooLarge { .. }
            | TooManyTickets
            | TicketShare { .. }
            | SchedulersTickets { .. }
            | OverBudget { .. }
            | ReserveShare { .. }
            | NoVault
            | Vault(_)
            | AuditUnavailable
            | AnchorUnavailable
            | RotateFailed(_) => Decision::Error,
        }
    }

    /// The answer's error.
    pub(crate) fn body(&self) -> ErrorBody {
        ErrorBody::new(self.code(), self.message())
    }

    /// How the audit log records the refusal: its decision and its reason, `CODE: message`.
    /// The one mapping every op uses.
    pub(crate) fn audit(&self) -> (Decision, String) {
        (
            self.decision(),
            format!("{}: {}", self.code().as_str(), self.message()),
        )
    }
}

impl From<Refusal> for ErrorBody {
    fn from(r: Refusal) -> Self {
        r.body()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of refusal, with the code the client gets and the decision the audit log
    /// records: the table docs/audit.md ("Decisions") states.
    fn table() -> Vec<(Refusal, ErrorCode, Decision)> {
        use Decision::{Deny, Error};
        use ErrorCode as C;
        let s = |x: &str| x.to_owned();
        vec![
            (Refusal::Locked, C::Locked, Error),
            (Refusal::NoPolicy(Op::Fetch), C::NotFound, Deny),
            (Refusal::NoPolicy(Op::ScrubReport), C::NotFound, Deny),
            (Refusal::NoSuchTask, C::NotFound, Deny),
            (Refusal::TaskGone { task: s("t") }, C::NotFound, Deny),
            (
                Refusal::NotARunner {
                    op: Op::Fetch,
                    uid: 7,
                    task: s("t"),
                },
                C::Denied,
                Deny,
            ),
            (Refusal::TicketUnknown, C::NotFound, Deny),
            (Refusal::TicketSpent, C::Denied, Deny),
            (Refusal::TicketExpired, C::Denied, Deny),
            (
                Refusal::TicketRevoked {
                    issuer: 1002,
                    task: s("t"),
                },
                C::Denied,
                Deny,
            ),
            (Refusal::NotListed { task: s("t") }, C::Denied, Deny),
            (
                Refusal::Undeclared {
                    credential: s("c"),
                    task: s("t"),
                },
                C::NotFound,
                Deny,
            ),
            (Refusal::NoSecret { credential: s("c") }, C::NotFound, Deny),
            (
                Refusal::EmptySecret {
                    credential: s("c"),
                    task: s("t"),
                },
                C::NotFound,
                Deny,
            ),
            (
                Refusal::OverScoped {
                    credential: s("c"),
                    task: s("t"),
                    excess: s("a:b"),
                    expired: None,
                },
                C::OverScoped,
                Deny,
            ),
            (
                Refusal::NoTotpSeed { credential: s("c") },
                C::NotFound,
                Deny,
            ),
            (
                Refusal::BadTotpSeed {
                    credential: s("c"),
                    error: s("bad base32"),
                },
                C::Internal,
                Error,
            ),
            (
                Refusal::CredentialTooLarge {
                    credential: s("c"),
                    over: s("it has 65 fields"),
                },
                C::Internal,
                Error,
            ),
            (
                Refusal::FieldInBoth {
                    credential: s("c"),
                    field: s("user"),
                },
                C::Internal,
                Error,
            ),
            (
                Refusal::AnswerTooLarge {
                    task: s("t"),
                    bytes: 17 << 20,
                    by_ticket: false,
                },
                C::Internal,
                Error,
            ),
            (
                Refusal::NotAdmin {
                    op: Op::Reload,
                    uid: 7,
                },
                C::Denied,
                Deny,
            ),
            (Refusal::NotScheduler { uid: 7 }, C::Denied, Deny),
            (
                Refusal::SchedulerNotNamed {
                    uid: 7,
                    task: s("t"),
                },
                C::Denied,
                Deny,
            ),
            (
                Refusal::RightOnProcessGid {
                    uid: 7,
                    gid: 50,
                    task: s("t"),
                },
                C::Denied,
                Deny,
            ),
            (Refusal::TooManyTickets, C::Busy, Error),
            (
                Refusal::TicketShare {
                    uid: 7,
                    share: 25_000,
                },
                C::Busy,
                Error,
            ),
            (Refusal::SchedulersTickets { pool: 75_000 }, C::Busy, Error),
            (
                Refusal::OverBudget {
                    uid: 7,
                    rate: 32 * 1024,
                    burst: 2 << 20,
                },
                C::Busy,
                Error,
            ),
            (
                Refusal::ReserveShare {
                    uid: 7,
                    share: 2 << 20,
                },
                C::Busy,
                Error,
            ),
            (Refusal::NoVault, C::Internal, Error),
            (
                Refusal::Vault(ErrorBody::new(C::Denied, "wrong passphrase")),
                C::Denied,
                Deny,
            ),
            (
                Refusal::Vault(ErrorBody::new(C::Internal, "unreadable")),
                C::Internal,
                Error,
            ),
            (
                Refusal::Vault(ErrorBody::new(C::VaultRefused, "forged")),
                C::VaultRefused,
                Deny,
            ),
            (Refusal::Rollback(s("older")), C::VaultRefused, Deny),
            (Refusal::AuditUnavailable, C::AuditUnavailable, Error),
            (Refusal::AnchorUnavailable, C::AuditUnavailable, Error),
            (
                Refusal::RotateFailed(s("no room")),
                C::AuditUnavailable,
                Error,
            ),
            (Refusal::TooLarge, C::TooLarge, Deny),
        ]
    }

    #[test]
    fn every_refusal_has_its_code_decision_and_a_reason_naming_both() {
        for (why, code, decision) in table() {
            assert_eq!(why.code(), code, "{why:?}");
            assert_eq!(why.decision(), decision, "{why:?}");
            let body = why.body();
            assert_eq!(body.code, code, "{why:?}");
            assert_eq!(body.message, why.message(), "{why:?}");
            assert!(!body.message.is_empty(), "{why:?}");
            let (d, reason) = why.audit();
            assert_eq!(d, decision, "{why:?}");
            assert_eq!(
                reason,
                format!("{}: {}", code.as_str(), body.message),
                "{why:?}"
            );
            assert_eq!(ErrorBody::from(why.clone()), body, "{why:?}");
        }
    }

    /// The table covers every kind: a new one added to the enum must be added to it (and so
    /// to docs/audit.md) — this match stops compiling otherwise.
    #[test]
    fn the_table_names_every_kind() {
        let mut seen = std::collections::BTreeSet::new();
        for (why, _, _) in table() {
            let kind = match why {
                Refusal::Locked => 0,
                Refusal::NoPolicy(_) => 1,
                Refusal::NoSuchTask => 2,
                Refusal::TaskGone { .. } => 3,
                Refusal::NotARunner { .. } => 4,
                Refusal::TicketUnknown => 5,
                Refusal::TicketSpent => 6,
                Refusal::TicketExpired => 7,
                Refusal::NotListed { .. } => 8,
                Refusal::NoSecret { .. } => 9,
                Refusal::EmptySecret { .. } => 10,
                Refusal::OverScoped { .. } => 11,
                Refusal::NoTotpSeed { .. } => 12,
                Refusal::BadTotpSeed { .. } => 13,
                Refusal::NotAdmin { .. } => 14,
                Refusal::NotScheduler { .. } => 15,
                Refusal::SchedulerNotNamed { .. } => 16,
                Refusal::TooManyTickets => 17,
                Refusal::NoVault => 18,
                Refusal::Vault(_) => 19,
                Refusal::Rollback(_) => 20,
                Refusal::AuditUnavailable => 21,
                Refusal::RotateFailed(_) => 22,
                Refusal::TooLarge => 23,
                Refusal::AnchorUnavailable => 24,
                Refusal::OverBudget { .. } => 25,
                Refusal::ReserveShare { .. } => 26,
                Refusal::TicketShare { .. } => 27,
                Refusal::SchedulersTickets { .. } => 28,
                Refusal::Undeclared { .. } => 29,
                Refusal::CredentialTooLarge { .. } => 30,
                Refusal::AnswerTooLarge { .. } => 31,
                Refusal::FieldInBoth { .. } => 32,
                Refusal::TicketRevoked { .. } => 33,
                Refusal::RightOnProcessGid { .. } => 34,
            };
            seen.insert(kind);
        }
        assert_eq!(seen.len(), 35, "{seen:?}");
    }

    /// Messages clients and tests rely on stay as they were before the refusals were typed.
    #[test]
    fn messages_are_unchanged() {
        assert_eq!(
            Refusal::NotARunner {
                op: Op::Fetch,
                uid: 1001,
                task: "admin-report".into()
            }
            .message(),
            "uid 1001 is not a runner of task `admin-report`"
        );
        assert_eq!(
            Refusal::NotARunner {
                op: Op::ScrubReport,
                uid: 1001,
                task: "t".into()
            }
            .message(),
            "uid 1001 is not a runner of task `t`, so it may not report on its artefacts"
        );
        assert_eq!(
            Refusal::NotAdmin {
                op: Op::AuditRotate,
                uid: 5
            }
            .message(),
            "`audit_rotate` is for admins (root, the daemon's user or its admin group); uid 5 is none of these"
        );
        assert_eq!(
            Refusal::NoPolicy(Op::Fetch).message(),
            "no policy is applied to the vault, so no task may fetch; an admin runs `scopevault policy apply`"
        );
        assert_eq!(
            Refusal::NoPolicy(Op::ScrubReport).message(),
            "no policy is applied to the vault, so no task has artefacts to report on"
        );
        assert_eq!(
            Refusal::TooLarge.message(),
            "request line longer than 65536 bytes; connection closed"
        );
        assert_eq!(Refusal::NoSuchTask.message(), NO_SUCH_TASK);
    }
}
