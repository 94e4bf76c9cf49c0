//! `fetch`: authorise a hand-out in steps that return a typed refusal ([`Refusal`]), then
//! queue its audit record; the answer is rendered from the loaded vault.

use super::{now_unix, Handler, Held, Refused, Step, TOTP_SEED_FIELDS};
use crate::agent::authz::is_runner;
use crate::agent::outcome::Refusal;
use crate::agent::peer::PeerIdentity;
use crate::agent::state::Opened;
use crate::agent::tickets::{IssuedBy, NotRedeemed, Now, Tickets, MAX_REFUSED_REDEMPTIONS};
use crate::agent::totp::Totp;
use crate::audit::{AuditRecord, Decision, Ticket as AuditTicket};
use crate::policy::{CredentialKind, Enforce, Policy, Task};
use crate::protocol::{
    CredentialOut, ErrorBody, FetchBy, HandOut, Op, SecretsOut, TotpCode, MAX_RESPONSE,
};
use crate::secret::SecretString;
use crate::vault::FieldMap;

/// Most bytes of scopes a fetch's warning or refusal lists (docs/audit.md, "Growth").
const LISTED_BYTES: usize = 192;

/// `items` comma-separated within about `max` bytes: as many whole items as fit (the first
/// one cut with `…` if it alone does not), then `… and N more`.
fn bounded_list(items: &[String], max: usize) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        let sep = if i == 0 { "" } else { ", " };
        if out.len() + sep.len() + item.len() > max {
            let mut shown = i;
            if i == 0 {
                out.push_str(&cut(item, max));
                shown = 1;
            }
            if shown < items.len() {
                out.push_str(&format!(", … and {} more", items.len() - shown));
            }
            return out;
        }
        out.push_str(sep);
        out.push_str(item);
    }
    out
}

/// `s`, or its first bytes up to `max` (at a character boundary) and `…`.
fn cut(s: &str, max: usize) -> std::borrow::Cow<'_, str> {
    if s.len() <= max {
        return s.into();
    }
    format!("{}…", crate::text::cut_to(s, max)).into()
}

/// One credential of a hand-out as decided: its values borrowed from the loaded vault, its
/// kind, scopes and origins from the applied policy's declaration (what was reviewed and
/// applied, and what the decision used), with the TOTP code made for this request and the
/// warnings.
pub(super) struct Granted<'a> {
    name: &'a str,
    cred: crate::agent::state::CredView<'a>,
    kind: CredentialKind,
    scopes: Vec<&'a str>,
    origins: Vec<&'a str>,
    totp: Option<TotpCode>,
    warnings: Vec<String>,
}

impl Handler {
    pub(super) fn fetch(
        &self,
        peer: &PeerIdentity,
        by: FetchBy,
        credential: Option<String>,
        queued: &mut Vec<AuditTicket>,
    ) -> Result<Held, ErrorBody> {
        // The read lock is held until the answer is built: a concurrent `lock` waits for it.
        self.state.with(|v| {
            let via_ticket = match &by {
                FetchBy::Ticket(t) => Some(Tickets::id_of(t)),
                FetchBy::Task(_) => None,
            };
            // A redemption holds the tickets' lock from the ticket's check to its spending,
            // which only a hand-out does: every refusal before it leaves the ticket usable,
            // and of two redemptions of one ticket exactly one hands out (the other is
            // refused as possible interception).
            let mut tickets = match &by {
                FetchBy::Ticket(_) => Some(self.tickets.lock().unwrap_or_else(|p| p.into_inner())),
                FetchBy::Task(_) => None,
            };
            // Whether the ticket was found outstanding and its issuer still entitled to it: a
            // refusal after that counts against it.
            let mut ticket_judged = false;
            let decided = self
                .decide_fetch(
                    v,
                    peer,
                    &by,
                    credential.as_deref(),
                    tickets.as_deref(),
                    &mut ticket_judged,
                )
                .and_then(|(o, task, granted)| {
                    self.audit_hand_out(peer, o, &task, &granted, via_ticket.as_deref(), queued)
                });
            match decided {
                Ok(mut held) => {
                    // Spent now, before the records are durable: a redemption meanwhile is
                    // refused. Should they fail, nothing is handed out and the ticket is
                    // given back ([`Handler::commit`]).
                    if let (Some(tickets), FetchBy::Ticket(t), Held::Fetched(_, spent)) =
                        (tickets.as_mut(), &by, &mut held)
                    {
                        *spent = tickets.spend(t);
                    }
                    Ok(held)
                }
                Err(mut r) => {
                    // A refused redemption of an outstanding ticket counts against it; the
                    // last one it takes withdraws it, which its record says (once). A ticket
                    // withdrawn before is answered as an unknown one, and audited by its id.
                    let (mut withdrawn_now, mut withdrawn, mut revoked_now) = (false, false, false);
                    if let (Some(tickets), FetchBy::Ticket(t)) = (tickets.as_mut(), &by) {
                        // A ticket whose issuer lost the right to it is revoked for good.
                        revoked_now = matches!(r.why, Refusal::TicketRevoked { .. })
                            && tickets.revoke(t);
                        withdrawn_now = ticket_judged && tickets.refused(t);
                        withdrawn = matches!(
                            tickets.outstanding(t, Now::read()),
                            Err(NotRedeemed::Withdrawn)
                        ) && !withdrawn_now;
                    }
                    drop(tickets);
                    // Names the refusal did not settle are the client's: recorded as is only
                    // when the applied policy declares them (locked, no policy: HMAC).
                    if r.task.is_none() {
                        if let FetchBy::Task(t) = &by {
                            r.task = Some(self.recorded_name(v, t, true));
                        }
                    }
                    if r.credential.is_none() {
                        r.credential = credential
                            .as_deref()
                            .map(|c| self.recorded_name(v, c, false));
                    }
                    // A ticket the daemon never issued is whatever the client sent (a password
                    // pasted into the wrong field included): recorded as its HMAC, like an
                    // unknown name, never as a plain hash anyone could test guesses against.
                    let suffix = match &by {
                        FetchBy::Ticket(_) if withdrawn_now => via_ticket.map(|id| format!(
                            " (ticket {id}: withdrawn after {MAX_REFUSED_REDEMPTIONS} refused redemptions; a later redemption is answered as an unknown ticket)"
                        )),
                        FetchBy::Ticket(_) if withdrawn => via_ticket.map(|id| {
                            format!(" (ticket {id}, withdrawn: answered as an unknown ticket)")
                        }),
                        FetchBy::Ticket(_) if revoked_now => via_ticket.map(|id| {
                            format!(" (ticket {id}: revoked; a later redemption is refused so too)")
                        }),
                        FetchBy::Ticket(t) if matches!(r.why, Refusal::TicketUnknown) => {
                            Some(format!(" (ticket {})", self.unknown_name(t.expose())))
                        }
                        _ => via_ticket.map(|id| format!(" (ticket {id})")),
                    };
                    // The withdrawal is written in full: counted into a `denials` record by
                    // the per-second rate limit, as a non-admin's quick fifth refusal was, it
                    // was never recorded. So is the revocation (once a ticket).
                    self.audit_refusal_as(
                        Some(peer),
                        Op::Fetch,
                        &r,
                        suffix.as_deref(),
                        withdrawn_now || revoked_now,
                        queued,
                    );
                    Err(r.why.body())
                }
            }
        })
    }

    /// Authorise and assemble a hand-out; nothing is sent or audited here. The steps: the
    /// vault and its policy, the task ([`Handler::resolve_task`]), the credentials
    /// ([`Handler::select_credentials`]) and each one's grant ([`Handler::grant_one`]).
    fn decide_fetch<'a>(
        &self,
        v: Option<&'a Opened>,
        peer: &PeerIdentity,
        by: &FetchBy,
        credential: Option<&'a str>,
        tickets: Option<&Tickets>,
        ticket_judged: &mut bool,
    ) -> Step<(&'a Opened, String, Vec<Granted<'a>>)> {
        // No hand-out while the chain's anchor cannot be written: a cut tail would go
        // unnoticed.
        if !self.audit.anchor_ok() {
            return Err(Refusal::AnchorUnavailable.into());
        }
        let (o, policy) = Self::opened_with_policy(v, Op::Fetch)?;
        let task_name = self.resolve_task(o, policy, peer, by, tickets)?;
        *ticket_judged = matches!(by, FetchBy::Ticket(_));
        let (task, names) = self.select_credentials(policy, &task_name, credential)?;
        let (today, now) = (time::OffsetDateTime::now_utc().date(), now_unix());
        let credentials = names
            .into_iter()
            .map(|name| Self::grant_one(o, policy, task, &task_name, name, today, now))
            .collect::<Step<Vec<_>>>()?;
        Ok((o, task_name, credentials))
    }

    /// The task a fetch is for: a task named by one of its runners, or an outstanding
    /// ticket's task, looked up in `tickets` (the caller holds their lock; the ticket is
    /// spent by the hand-out, not here), whose issuer may still have it
    /// ([`Handler::issuer_keeps_right`]).
    fn resolve_task(
        &self,
        o: &Opened,
        policy: &Policy,
        peer: &PeerIdentity,
        by: &FetchBy,
        tickets: Option<&Tickets>,
    ) -> Step<String> {
        match by {
            FetchBy::Task(t) => {
                if policy.task(t).is_none() {
                    return Err(Refused::in_task(Refusal::NoSuchTask, &self.unknown_name(t)));
                }
                if !is_runner(o.runners.get(t.as_str()), peer) {
                    return Err(Refusal::NotARunner {
                        op: Op::Fetch,
                        uid: peer.uid,
                        task: t.clone(),
                    }
                    .into());
                }
                Ok(t.clone())
            }
            FetchBy::Ticket(t) => {
                // `fetch` passes the table for every redemption (`None` only for a task's).
                let outstanding = tickets
                    .ok_or(NotRedeemed::Unknown)
                    .and_then(|tickets| tickets.outstanding(t, Now::read()));
                match outstanding {
                    Ok((task, by)) if self.issuer_keeps_right(o, &task, by) => Ok(task),
                    Ok((task, by)) => Err(Refused::in_task(
                        Refusal::TicketRevoked {
                            issuer: by.issuer.uid(),
                            task: task.clone(),
                        },
                        &task,
                    )),
                    Err(NotRedeemed::Revoked { task, issuer }) => Err(Refused::in_task(
                        Refusal::TicketRevoked {
                            issuer,
                            task: task.clone(),
                        },
                        &task,
                    )),
                    // A withdrawn ticket is answered as an unknown one: the holder learns
                    // nothing more from it.
                    Err(NotRedeemed::Unknown | NotRedeemed::Withdrawn) => {
                        Err(Refusal::TicketUnknown.into())
                    }
                    Err(NotRedeemed::Spent { task }) => {
                        Err(Refused::in_task(Refusal::TicketSpent, &task))
                    }
                    Err(NotRedeemed::Expired { task }) => {
                        Err(Refused::in_task(Refusal::TicketExpired, &task))
                    }
                }
            }
        }
    }

    /// Whether the issuer of a ticket for `task` may still have it: whether it would be
    /// issued the ticket now ([`crate::agent::authz::Access::may_issue_ticket_for`]), an
    /// admin, or a `--scheduler` the task's `schedulers` names, judged with the membership,
    /// names and policy of now. A ticket is the right to its task's secrets whoever redeems
    /// it (docs/protocol.md, "Ticket redemption rules"): the redeemer needs no right, so the
    /// issuer's is the one its redemption rests on. Until the twenty-ninth pass a ticket
    /// issued to a member of `--admin-group` removed since, or to a `--scheduler` deleted
    /// since, was handed out until its ttl. When nothing changed since the issue (the
    /// databases' generation, which every change of them, of the names resolved in them and
    /// every vault load moves on) this is one atomic load and compare; otherwise the
    /// issuer's groups are looked up as a new connection's would be, and the issuer is judged
    /// as the databases say it is: its primary group the one its `/etc/passwd` line gives
    /// now, not the kernel gid its process had (thirtieth pass; [`Detached::now`]).
    ///
    /// [`Detached::now`]: crate::agent::peer::Detached::now
    fn issuer_keeps_right(&self, o: &Opened, task: &str, by: &IssuedBy) -> bool {
        if by.generation == crate::accounts::generation() {
            return true;
        }
        let issuer = by.issuer.now();
        self.access
            .may_issue_ticket_for(&issuer, o.schedulers.get(task).map(Vec::as_slice))
    }

    /// The task's policy entry and the credentials to hand out: the one asked for, which the
    /// task must list, or every credential it lists.
    fn select_credentials<'p>(
        &self,
        policy: &'p Policy,
        task_name: &str,
        credential: Option<&'p str>,
    ) -> Step<(&'p Task, Vec<&'p str>)> {
        let task = policy.task(task_name).ok_or_else(|| {
            Refused::in_task(
                Refusal::TaskGone {
                    task: task_name.to_owned(),
                },
                task_name,
            )
        })?;
        let listed = task.credentials();
        let names = match credential {
            Some(c) if listed.contains(&c) => vec![c],
            Some(_) => {
                // Not echoed back: a name the policy does not declare is whatever the client
                // sent, and naming a declared one (where an undeclared one was not) told a
                // runner, or any ticket's holder, which names other tasks' credentials have
                // (twentieth pass, found by attacking that pass's fixes). The audit record
                // keeps a declared name (`recorded_name`).
                return Err(Refused::in_task(
                    Refusal::NotListed {
                        task: task_name.to_owned(),
                    },
                    task_name,
                ));
            }
            None => listed,
        };
        Ok((task, names))
    }

    /// One credential of the task as it is handed out: its secrets (a TOTP credential's
    /// code instead of its seed) and its scope warnings, or the refusal (not declared, no
    /// secret stored, over-scoped under `enforce = "deny"`, no usable TOTP seed).
    ///
    /// Its kind, scopes and origins are the applied policy's declaration, never the vault
    /// entry's: the vault holds the policy so that the daemon enforces what was reviewed and
    /// applied. An entry can come apart from it (`cred import` after `cred rm`, an older
    /// scopevault), and one stored as a `login` for a credential declared `totp` handed the
    /// seed out where the policy says codes only (twentieth pass, found by attacking who gets
    /// what). Such an entry is handed out as declared, with a warning naming what differs.
    fn grant_one<'a>(
        o: &'a Opened,
        policy: &'a Policy,
        task: &Task,
        task_name: &str,
        name: &'a str,
        today: time::Date,
        now: u64,
    ) -> Step<Granted<'a>> {
        let refuse = |why: Refusal, warnings: Vec<String>| {
            Box::new(Refused {
                why,
                task: Some(task_name.to_owned()),
                credential: Some(name.to_owned()),
                warnings,
            })
        };
        let Some(decl) = policy.credential(name) else {
            return Err(refuse(
                Refusal::Undeclared {
                    credential: name.to_owned(),
                    task: task_name.to_owned(),
                },
                Vec::new(),
            ));
        };
        let Some(cred) = o.vault.credential(name) else {
            return Err(refuse(
                Refusal::NoSecret {
                    credential: name.to_owned(),
                },
                Vec::new(),
            ));
        };
        // Over the bound on one credential (a vault saved by an older scopevault; every
        // writer refuses one now): its answer could be more than a client accepts, so it is
        // not handed out, and the rest of the vault still is (twenty-second pass).
        if let Some(over) = crate::vault::credential_over_bound(cred.fields, cred.secrets) {
            return Err(refuse(
                Refusal::CredentialTooLarge {
                    credential: name.to_owned(),
                    over: over.to_string(),
                },
                Vec::new(),
            ));
        }
        // A field name held both as a plain field and as a secret (a vault saved by an older
        // scopevault; every writer refuses it now): which value a runner meant is unknown, so
        // neither is handed out (`get --field` printed the plain one, twenty-fourth pass).
        if let Some(field) = crate::vault::field_in_both(cred.fields, cred.secrets) {
            return Err(refuse(
                Refusal::FieldInBoth {
                    credential: name.to_owned(),
                    field: field.to_owned(),
                },
                Vec::new(),
            ));
        }
        let kind = decl.kind();
        let (scopes, origins) = (decl.scopes(), decl.origins());
        // A credential with metadata but no secret value is not handed out as an empty
        // success: the runner would go on with nothing to log in with (docs/protocol.md).
        if kind != CredentialKind::Totp && cred.secrets.is_empty() {
            return Err(refuse(
                Refusal::EmptySecret {
                    credential: name.to_owned(),
                    task: task_name.to_owned(),
                },
                Vec::new(),
            ));
        }
        let grant = o.grant(policy, task_name, name, today);
        let mut warnings = Vec::new();
        let differs = decl.stored_differences(cred.kind, cred.scopes, cred.origins);
        if !differs.is_empty() {
            warnings.push(format!(
                "the vault entry of credential `{name}` differs from the applied policy's declaration in {}: it is handed out as declared (kind `{kind}`, the declared scopes and origins); an admin applies the policy again (`scopevault policy apply`), which stores the declaration in the entry",
                differs.describe()
            ));
        }
        // Scopes and origins are the policy's text, copied into the answer and into the audit
        // record (a refusal's reason and warnings): listed within a few hundred bytes, with
        // how many are left out, so a refusal record stays under MAX_DENIAL_RECORD whatever
        // the applied policy holds (a vault written before scopes were bounded may hold a
        // scope of megabytes; twenty-fourth pass).
        if !grant.excess.is_empty() {
            let mut w = format!(
                "credential `{name}` grants scopes task `{task_name}` does not need: {}",
                bounded_list(&grant.excess, LISTED_BYTES)
            );
            if !grant.high_risk.is_empty() {
                w.push_str(&format!(
                    " (high risk: {})",
                    bounded_list(&grant.high_risk, LISTED_BYTES / 2)
                ));
            }
            // The exception's date, in force or expired (twenty-eighth pass: the warning said
            // "in force" with no date, and the day it expired the refusal said to add one).
            match (grant.excepted, grant.exception_expires) {
                (true, Some(until)) => {
                    w.push_str(&format!(" [covered by an exception in force until {until}]"))
                }
                (true, None) => w.push_str(" [covered by an exception in force]"),
                (false, Some(on)) => w.push_str(&format!(
                    " [the exception for it expired on {on}: an admin renews it after a review or narrows the credential]"
                )),
                (false, None) => {}
            }
            warnings.push(w);
        }
        let origin_warning = warnings.len();
        // The lint's `origin-mismatch`, by the same check: a credential that declares no
        // origins matches none, and an exception in force for it is said (twenty-eighth pass).
        if let Some(origin) = task.origin_mismatch(decl) {
            let mut w = if origins.is_empty() {
                format!(
                    "task `{task_name}` works on {}, but credential `{name}` declares no origins",
                    cut(&origin.value, 64)
                )
            } else {
                format!(
                    "task `{task_name}` works on {}, which is not among the origins of credential `{name}`",
                    cut(&origin.value, 64)
                )
            };
            if policy.origin_excepted(task_name, name, &origin.value, today) {
                w.push_str(" [covered by an exception in force]");
            }
            warnings.push(w);
        }
        if !grant.excess.is_empty() && policy.enforce() == Enforce::Deny && !grant.excepted {
            // The reason names the excess, and nothing is handed out: the warnings about the
            // hand-out (the excess again, an entry handed out as declared) are left out of the
            // refusal's record, which must stay under MAX_DENIAL_RECORD; the origin's stays.
            warnings.drain(..origin_warning);
            return Err(refuse(
                Refusal::OverScoped {
                    credential: name.to_owned(),
                    task: task_name.to_owned(),
                    excess: bounded_list(&grant.excess, LISTED_BYTES),
                    expired: grant.exception_expires,
                },
                warnings,
            ));
        }
        let mut totp = None;
        if kind == CredentialKind::Totp {
            // Both seed fields (a vault saved by an older scopevault): no code from either,
            // rather than one chosen in silence.
            if crate::vault::holds_both_totp_seeds(cred.secrets.keys().map(String::as_str)) {
                return Err(refuse(
                    Refusal::BadTotpSeed {
                        credential: name.to_owned(),
                        error: format!(
                            "it holds both `totp_seed` and `otpauth` (saved by an older scopevault): two TOTP seeds, so no code is made from either; an admin keeps the one in use with `scopevault cred set {name} --secret otpauth` (or `--secret totp_seed`), which removes the other"
                        ),
                    },
                    Vec::new(),
                ));
            }
            // A secret beside the seed (a seed stored as `--secret seed`, a vault saved by an
            // older scopevault) is never handed out ([`CredentialKind::hands_out_secrets`]);
            // the runner and the audit record are told its name, never its value, and how an
            // admin removes it (twenty-eighth pass, found by the attacker of a long-running
            // daemon: it went to every runner beside the code).
            let stray: Vec<String> = cred
                .secrets
                .keys()
                .filter(|k| !TOTP_SEED_FIELDS.contains(&k.as_str()))
                .map(|k| format!("`{k}`"))
                .collect();
            if !stray.is_empty() {
                warnings.push(format!(
                    "credential `{name}` is a totp credential and holds secret(s) other than its seed, not handed out (its runners get codes, never a secret): {}; an admin stores the seed with `scopevault cred set {name} --secret totp_seed` (or `--secret otpauth`), which removes them",
                    bounded_list(&stray, LISTED_BYTES)
                ));
            }
            let seed = TOTP_SEED_FIELDS
                .iter()
                .find_map(|f| cred.secrets.get(f).map(|v| (*f, v)));
            let Some((field, value)) = seed else {
                return Err(refuse(
                    Refusal::NoTotpSeed {
                        credential: name.to_owned(),
                    },
                    warnings,
                ));
            };
            let gen = Totp::from_field(field, value).map_err(|e| {
                refuse(
                    Refusal::BadTotpSeed {
                        credential: name.to_owned(),
                        error: e.to_string(),
                    },
                    Vec::new(),
                )
            })?;
            let (code, seconds_left) = gen.code_at(now);
            totp = Some(TotpCode {
                code: SecretString::from(code),
                seconds_left,
            });
        }
        Ok(Granted {
            name,
            cred,
            kind,
            scopes,
            origins,
            totp,
            warnings,
        })
    }

    /// One audit record per credential, queued, and the answer rendered from the loaded
    /// vault (no copy of a secret is made) but held until the records are durable
    /// ([`Handler::commit`]). No record, no secret. Each value's HMAC is made once per vault
    /// load ([`Opened::value_macs`]); a TOTP code's, which changes, every time.
    ///
    /// An answer longer than a client accepts ([`MAX_RESPONSE`]) is refused before anything
    /// is recorded: an `allow` was recorded, with every value's HMAC, for an answer no client
    /// could read (twenty-second pass). The refusal is recorded instead.
    fn audit_hand_out(
        &self,
        peer: &PeerIdentity,
        o: &Opened,
        task: &str,
        granted: &[Granted<'_>],
        ticket: Option<&str>,
        queued: &mut Vec<AuditTicket>,
    ) -> Step<Held> {
        let out: Vec<CredentialOut<'_>> = granted
            .iter()
            .map(|g| CredentialOut {
                name: g.name,
                kind: g.kind.as_str(),
                scopes: &g.scopes,
                origins: &g.origins,
                fields: g.cred.fields,
                secrets: SecretsOut {
                    all: g.cred.secrets,
                    withheld: !g.kind.hands_out_secrets(),
                },
                totp: g.totp.as_ref(),
                warnings: &g.warnings,
            })
            .collect();
        // Counted before anything is rendered: the credentials' metadata, and the lengths of
        // their values made once per load ([`Opened::value_lens`]). A task whose answer is
        // over the limit had it built whole, 125 MB, before the refusal, on every request
        // (twenty-fourth pass, found by the attacker of scale and complexity); its refusal
        // now costs the metadata.
        let (no_fields, no_secrets) = (FieldMap::new(), FieldMap::new());
        let bare: Vec<CredentialOut<'_>> = out
            .iter()
            .map(|c| CredentialOut {
                fields: &no_fields,
                secrets: SecretsOut {
                    all: &no_secrets,
                    withheld: c.secrets.withheld,
                },
                ..*c
            })
            .collect();
        let values = granted.iter().zip(&out).fold(0usize, |sum, (g, c)| {
            let (f, s) = o.value_lens(g.name, c.fields, &c.secrets);
            // Less the braces the bare credential has already.
            sum.saturating_add(f.saturating_sub(2) + s.saturating_sub(2))
        });
        let bytes = HandOut::line_len_of(task, &bare, values);
        let too_large = |bytes| {
            Refused::in_task(
                Refusal::AnswerTooLarge {
                    task: task.to_owned(),
                    bytes,
                    by_ticket: ticket.is_some(),
                },
                task,
            )
        };
        if bytes > MAX_RESPONSE {
            return Err(too_large(bytes));
        }
        // Rendered before anything is recorded: an answer that cannot be sent hands out
        // nothing. Never past the limit, whatever was counted.
        let Ok(answer) = HandOut::render(task, &out, MAX_RESPONSE) else {
            return Err(too_large(MAX_RESPONSE + 1));
        };
        debug_assert_eq!(answer.line_len(), bytes, "the answer's length as counted");
        let info = peer.audit_info();
        let reason = ticket.map(|id| format!("redeemed ticket {id}"));
        for (g, c) in granted.iter().zip(&out) {
            let macs = o.value_macs(g.name, c.secrets.iter(), |v| self.audit.hmac_value(v));
            let values = g
                .totp
                .as_ref()
                .map(|t| ("totp_code", &t.code))
                .into_iter()
                .collect();
            queued.push(self.enqueue_allowed(
                peer,
                AuditRecord {
                    peer: Some(info.clone()),
                    task: Some(task),
                    credential: Some(g.name),
                    reason: reason.as_deref(),
                    warnings: g.warnings.clone(),
                    values,
                    macs: macs.iter().map(|(f, m)| (f.as_str(), m.as_str())).collect(),
                    ..AuditRecord::new(Op::Fetch, Decision::Allow)
                },
            ));
        }
        Ok(Held::Fetched(answer, None))
    }
}
