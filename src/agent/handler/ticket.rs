//! `ticket`: a scheduler asks for a one-time ticket for a task that names it.

use super::{Handler, Held, Refused};
use crate::agent::outcome::Refusal;
use crate::agent::peer::PeerIdentity;
use crate::agent::state::Opened;
use crate::agent::tickets::{Full, IssuedBy, Now, Tickets};
use crate::audit::{AuditRecord, Decision, Ticket as AuditTicket};
use crate::protocol::{ok_line, ErrorBody, Op, Ticket};
use crate::secret::SecretString;

impl Handler {
    pub(super) fn ticket(
        &self,
        peer: &PeerIdentity,
        task: &str,
        ttl: u64,
        queued: &mut Vec<AuditTicket>,
    ) -> Result<Held, ErrorBody> {
        let (result, recorded) = self.state.with(|v| {
            let recorded = self.recorded_name(v, task, true);
            (self.issue_ticket(v, peer, task, ttl), recorded)
        });
        // A task the policy does not know (or any task while locked) is recorded as its HMAC.
        let (ticket, expires_at) = match result {
            Ok(issued) => issued,
            Err(why) => {
                let r = Refused::in_task(why, &recorded);
                self.audit_refusal(Some(peer), Op::Ticket, &r, None, queued);
                return Err(r.why.body());
            }
        };
        let reason = format!(
            "ticket {} issued, expires at {expires_at}",
            Tickets::id_of(&ticket)
        );
        queued.push(self.enqueue_allowed(
            peer,
            AuditRecord {
                peer: Some(peer.audit_info()),
                task: Some(&recorded),
                reason: Some(&reason),
                ..AuditRecord::new(Op::Ticket, Decision::Allow)
            },
        ));
        Ok(Held::Line(ok_line(&Ticket {
            ticket,
            task: task.to_owned(),
            expires_at,
        })))
    }

    /// Decide a `ticket` request (audited by the caller).
    fn issue_ticket(
        &self,
        v: Option<&Opened>,
        peer: &PeerIdentity,
        task: &str,
        ttl: u64,
    ) -> Result<(SecretString, u64), Refusal> {
        let o = v.ok_or(Refusal::Locked)?;
        // The generation the peer's groups and rights were decided at, at the start of this
        // request: read before any decision (another thread serving this connection may
        // decide again meanwhile, and the ticket must not carry a later generation than the
        // membership it was judged with).
        let decided_at = peer.decided_at();
        if !self.access.may_issue_tickets(peer) {
            return Err(Refusal::NotScheduler { uid: peer.uid });
        }
        // Without a policy there is no task: the same answer as for a name it lacks.
        if o.vault.policy().and_then(|p| p.task(task)).is_none() {
            return Err(Refusal::NoSuchTask);
        }
        // Issue 15.12: a scheduler redeems what it is issued, so a ticket for any task would
        // be every task's secrets. The task must name it. Checked after the task is known to
        // the policy, so the name in this message (and the audit reason) is the policy's.
        let named = o.schedulers.get(task).map(Vec::as_slice);
        if !self.access.may_issue_ticket_for(peer, named) {
            return Err(Refusal::SchedulerNotNamed {
                uid: peer.uid,
                task: task.to_owned(),
            });
        }
        // A redemption judges the issuer again, as the databases say it is then
        // (`Detached::now`: its process's kernel gid no longer counts), once the generation
        // moved on since `decided_at`. A right that rests on that kernel gid alone (a primary
        // group the user's `/etc/passwd` line no longer gives, a setgid program) is the
        // connection's, not a ticket's: a ticket outlives its process, so such a ticket would
        // be refused at every redemption while the databases stay as they are. It is refused
        // here, saying so (thirtieth pass: it was issued, then refused at its redemption as
        // if its issuer had been removed from a group, found by the re-attacker of this
        // pass's fixes). This looks the groups up at most once per change of the databases,
        // and only for a `ticket` request.
        if !self
            .access
            .may_issue_ticket_for(&peer.as_databases_say(), named)
        {
            return Err(Refusal::RightOnProcessGid {
                uid: peer.uid,
                gid: peer.gid,
                task: task.to_owned(),
            });
        }
        let by = IssuedBy {
            issuer: peer.detached(),
            generation: decided_at,
        };
        // A scheduler that is not an admin fills its share of the table at most.
        let issuer = (!self.access.is_admin(peer)).then_some(peer.uid);
        let issued = self
            .tickets
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .issue(task, ttl, Now::read(), issuer, by);
        issued.map_err(|full| match full {
            Full::Table => Refusal::TooManyTickets,
            Full::Issuer(share) => Refusal::TicketShare {
                uid: peer.uid,
                share,
            },
            Full::Schedulers(pool) => Refusal::SchedulersTickets { pool },
        })
    }
}
