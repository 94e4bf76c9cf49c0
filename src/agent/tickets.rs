//! Single-use tickets: a scheduler asks for one for a task, hands it to the check, and the
//! check redeems it once. Only a SHA-256 of each ticket is kept, so a memory dump of the daemon
//! does not reveal redeemable tickets. A ticket is spent by the redemption that hands
//! something out, never by a refused one; a spent ticket is remembered until well past its
//! expiry so a second redeem is recognised (and audited as possible interception). A ticket
//! refused [`MAX_REFUSED_REDEMPTIONS`] times is withdrawn: its holder cannot probe with it
//! without end.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::SecretString;

/// Outstanding tickets at most; beyond that `ticket` is refused until some expire.
pub(crate) const MAX_TICKETS: usize = 100_000;
/// A scheduler that is not an admin holds at most this part of the table (a quarter), and
/// schedulers together at most the rest but as much again (three quarters): one scheduler
/// cannot take all the others' tickets, nor schedulers the admins' (eighteenth pass: one
/// scheduler's 100,000 tickets of 24 hours refused every ticket to root for a day). The
/// three quarters are shared first come first served, so three full schedulers leave none to
/// a fourth: by design, the limit guards the admins' quarter, not schedulers from each other
/// (docs/protocol.md).
const SCHEDULER_SHARE: usize = 4;
/// Refused redemptions a ticket takes; the last of them withdraws it (docs/protocol.md).
pub(crate) const MAX_REFUSED_REDEMPTIONS: u32 = 5;
/// How long a spent or expired ticket is remembered after its expiry.
const REMEMBER: Duration = Duration::from_secs(24 * 60 * 60);
/// Prefix that makes a ticket recognisable in a leak scan.
const PREFIX: &str = "svt1_";

struct Entry {
    task: String,
    /// Its expiry on the monotonic clock: a step of the real-time clock (an NTP correction,
    /// `date -s`) neither lengthens nor shortens its `ttl` (twenty-fourth pass, found by the
    /// attacker of evidence from the audit trail: with the real-time clock stepped back an
    /// hour, a ticket of 3 s was honoured 6 s later; stepped forward, one of 600 s was expired
    /// at once).
    deadline: Instant,
    spent: bool,
    /// Its redemptions refused while it was outstanding.
    refused: u32,
    /// Withdrawn after [`MAX_REFUSED_REDEMPTIONS`] refusals: redeemed as an unknown ticket.
    withdrawn: bool,
    /// The scheduler that asked for it; `None` for an admin.
    issuer: Option<u32>,
    /// Who asked for it, and when, to judge at its redemption whether they may still have it.
    by: IssuedBy,
    /// Refused because its issuer lost the right to it: every later redemption is refused so.
    revoked: bool,
}

impl Entry {
    /// Spent, withdrawn, revoked or expired: it only waits to be forgotten.
    fn dead(&self, now: Instant) -> bool {
        self.spent || self.withdrawn || self.revoked || now >= self.deadline
    }
}

/// Who asked for a ticket ([`crate::agent::peer::Detached`]: its uid, kernel gid and where its
/// groups come from) and the generation of the user and group databases its right was decided
/// at ([`crate::accounts::generation`]). A redemption asks again whether it may have the
/// ticket once that generation has moved on (twenty-ninth pass), judging it by the databases
/// alone (thirtieth pass): a ticket outlives no removal of the right it was issued under.
#[derive(Debug, Clone)]
pub(crate) struct IssuedBy {
    /// The issuer.
    pub(crate) issuer: crate::agent::peer::Detached,
    /// The generation its right was decided at: that of the issuing connection's last
    /// decision ([`crate::agent::peer::PeerIdentity::decided_at`]). A right resting on the
    /// issuing process's kernel gid alone, which the databases do not give its user, gets no
    /// ticket (`Refusal::RightOnProcessGid`), so the issuer had this right as the databases
    /// said at that generation.
    pub(crate) generation: u64,
}

/// Whose tickets a count is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whose {
    /// Every ticket.
    All,
    /// Those of schedulers that are not admins.
    Schedulers,
    /// Those of one such scheduler.
    Issuer(u32),
}

impl Whose {
    fn holds(self, e: &Entry) -> bool {
        match self {
            Whose::All => true,
            Whose::Schedulers => e.issuer.is_some(),
            Whose::Issuer(uid) => e.issuer == Some(uid),
        }
    }
}

/// How many tickets a group holds (spent and expired ones not yet forgotten included), and
/// whether a look for dead ones could find any: so that a group at its limit, every ticket
/// of it outstanding, is refused without a pass over the table.
#[derive(Debug, Clone, Copy, Default)]
struct Held {
    count: usize,
    /// One may be dead: spent since the last look, or left by it.
    dead: bool,
    /// The earliest expiry of those outstanding at the last look or issued since (`None`:
    /// none).
    next_expiry: Option<Instant>,
}

impl Held {
    fn may_hold_dead(&self, now: Instant) -> bool {
        self.dead || self.next_expiry.is_some_and(|t| now >= t)
    }

    /// A ticket expiring at `deadline` is outstanding in this group.
    fn expires_at_the_latest(&mut self, deadline: Instant) {
        self.next_expiry = Some(self.next_expiry.map_or(deadline, |t| t.min(deadline)));
    }
}

/// The time of a ticket operation, as both clocks read it: the monotonic one decides
/// expiry, the real-time one only dates what a client is shown (`expires_at`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// The monotonic clock.
    pub(crate) mono: Instant,
    /// The real-time clock, Unix seconds.
    pub(crate) wall: u64,
}

impl Now {
    /// Both clocks, read now.
    pub(crate) fn read() -> Now {
        Now {
            mono: Instant::now(),
            wall: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        }
    }
}

/// Why no ticket was issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Full {
    /// The table holds [`MAX_TICKETS`] outstanding tickets.
    Table,
    /// The scheduler holds its share (this many).
    Issuer(usize),
    /// Schedulers together hold theirs (this many).
    Schedulers(usize),
}

/// A ticket spent by [`Tickets::spend`], by its hash (never the ticket itself): what
/// [`Tickets::give_back`] takes.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Spent([u8; 32]);

/// Why a ticket was not redeemed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotRedeemed {
    /// No ticket with this value was issued (or it was forgotten long ago).
    Unknown,
    /// Withdrawn after [`MAX_REFUSED_REDEMPTIONS`] refused redemptions: answered as
    /// [`NotRedeemed::Unknown`] is, audited as withdrawn.
    Withdrawn,
    /// Already redeemed once: possible interception.
    Spent { task: String },
    /// Past its ttl.
    Expired { task: String },
    /// Refused before because its issuer had lost the right to it ([`Tickets::revoke`]).
    Revoked { task: String, issuer: u32 },
}

/// The daemon's tickets.
pub(crate) struct Tickets {
    by_hash: HashMap<[u8; 32], Entry>,
    /// Outstanding tickets at most: [`MAX_TICKETS`] (smaller in tests).
    cap: usize,
    all: Held,
    schedulers: Held,
    by_issuer: HashMap<u32, Held>,
}

impl Default for Tickets {
    fn default() -> Self {
        Tickets {
            by_hash: HashMap::default(),
            cap: MAX_TICKETS,
            all: Held::default(),
            schedulers: Held::default(),
            by_issuer: HashMap::default(),
        }
    }
}

fn hash(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

impl Tickets {
    /// A table of `cap` tickets (tests).
    #[cfg(test)]
    pub(crate) fn with_cap(cap: usize) -> Tickets {
        Tickets {
            cap,
            ..Tickets::default()
        }
    }

    /// The most tickets one scheduler that is not an admin holds.
    pub(crate) fn share(&self) -> usize {
        self.cap / SCHEDULER_SHARE
    }

    /// The most tickets such schedulers hold together.
    pub(crate) fn pool(&self) -> usize {
        self.cap - self.share()
    }

    /// Issue a ticket for `task`, good for `ttl` seconds of the monotonic clock from `now`,
    /// asked for by `issuer` (a scheduler that is not an admin; `None` for an admin), who is
    /// `by`, and the real-time clock's `now + ttl` (Unix seconds) to show the client. Refused
    /// when the table, the scheduler's share or the schedulers' part of it is full of
    /// outstanding tickets.
    pub(crate) fn issue(
        &mut self,
        task: &str,
        ttl: u64,
        now: Now,
        issuer: Option<u32>,
        by: IssuedBy,
    ) -> Result<(SecretString, u64), Full> {
        let (shown, now) = (now.wall.saturating_add(ttl), now.mono);
        self.prune(now);
        let (share, pool) = (self.share(), self.pool());
        let limits = [
            Some((Whose::All, self.cap, Full::Table)),
            issuer.map(|uid| (Whose::Issuer(uid), share, Full::Issuer(share))),
            issuer.map(|_| (Whose::Schedulers, pool, Full::Schedulers(pool))),
        ];
        for (whose, limit, full) in limits.into_iter().flatten() {
            if self.held(whose).count >= limit {
                self.forget_dead(now, whose, limit);
            }
            if self.held(whose).count >= limit {
                return Err(full);
            }
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *raw);
        let ticket = SecretString::from(format!(
            "{PREFIX}{}",
            data_encoding::BASE64URL_NOPAD.encode(&*raw)
        ));
        // A `ttl` the clock cannot add (never one the protocol takes) expires at once.
        let deadline = now.checked_add(Duration::from_secs(ttl)).unwrap_or(now);
        self.by_hash.insert(
            hash(ticket.expose()),
            Entry {
                task: task.to_owned(),
                deadline,
                spent: false,
                refused: 0,
                withdrawn: false,
                issuer,
                by,
                revoked: false,
            },
        );
        self.each_group(issuer, |held| {
            held.count += 1;
            held.expires_at_the_latest(deadline);
        });
        Ok((ticket, shown))
    }

    /// The count of `whose` tickets.
    fn held(&self, whose: Whose) -> Held {
        match whose {
            Whose::All => self.all,
            Whose::Schedulers => self.schedulers,
            Whose::Issuer(uid) => self.by_issuer.get(&uid).copied().unwrap_or_default(),
        }
    }

    /// Change each count a ticket of `issuer` is in.
    fn each_group(&mut self, issuer: Option<u32>, f: impl Fn(&mut Held)) {
        f(&mut self.all);
        if let Some(uid) = issuer {
            f(&mut self.schedulers);
            f(self.by_issuer.entry(uid).or_default());
        }
    }

    /// A ticket of `issuer` was spent: its groups may hold a dead one.
    fn note_spent(&mut self, issuer: Option<u32>) {
        self.each_group(issuer, |held| held.dead = true);
    }

    /// Take a forgotten ticket of `issuer` out of the counts.
    fn note_forgotten(
        all: &mut Held,
        schedulers: &mut Held,
        by_issuer: &mut HashMap<u32, Held>,
        issuer: Option<u32>,
    ) {
        all.count -= 1;
        if let Some(uid) = issuer {
            schedulers.count -= 1;
            if let Some(held) = by_issuer.get_mut(&uid) {
                held.count -= 1;
                if held.count == 0 {
                    by_issuer.remove(&uid);
                }
            }
        }
    }

    /// The task of an outstanding ticket (neither spent nor expired), which stays
    /// outstanding: a redemption spends it ([`Tickets::spend`]) only once its hand-out is
    /// decided, so that a refusal (an over-scoped credential, one with no secret, one its
    /// task does not list) leaves it usable. The caller holds the table's lock from this check
    /// to the spending, so that of two redemptions of one ticket exactly one hands out.
    /// Also who issued it, whose right the caller judges again ([`IssuedBy`]).
    pub(crate) fn outstanding(
        &self,
        ticket: &SecretString,
        now: Now,
    ) -> Result<(String, &IssuedBy), NotRedeemed> {
        let now = now.mono;
        let Some(e) = self.by_hash.get(&hash(ticket.expose())) else {
            return Err(NotRedeemed::Unknown);
        };
        if e.withdrawn {
            return Err(NotRedeemed::Withdrawn);
        }
        if e.revoked {
            return Err(NotRedeemed::Revoked {
                task: e.task.clone(),
                issuer: e.by.issuer.uid(),
            });
        }
        if e.spent {
            return Err(NotRedeemed::Spent {
                task: e.task.clone(),
            });
        }
        if now >= e.deadline {
            return Err(NotRedeemed::Expired {
                task: e.task.clone(),
            });
        }
        Ok((e.task.clone(), &e.by))
    }

    /// Revoke a ticket [`Tickets::outstanding`] found outstanding whose issuer has lost the
    /// right to it since it was issued (the caller holds the table's lock from that check):
    /// every later redemption is refused so ([`NotRedeemed::Revoked`]), even should the
    /// issuer get the right back. True the first time, so that the refusal that revokes it is
    /// recorded in full.
    pub(crate) fn revoke(&mut self, ticket: &SecretString) -> bool {
        let Some(e) = self.by_hash.get_mut(&hash(ticket.expose())) else {
            return false;
        };
        if e.spent || e.withdrawn || e.revoked {
            return false;
        }
        e.revoked = true;
        let issuer = e.issuer;
        // Dead now: forgotten first when its group is at its limit.
        self.note_spent(issuer);
        true
    }

    /// Spend a ticket [`Tickets::outstanding`] found outstanding: a later redemption is
    /// refused as possible interception. Spent when its hand-out is queued, before its audit
    /// record is known to be durable, so that of two redemptions exactly one hands out;
    /// [`Tickets::give_back`] undoes it when that record fails and nothing was handed out.
    pub(crate) fn spend(&mut self, ticket: &SecretString) -> Option<Spent> {
        let h = hash(ticket.expose());
        let e = self.by_hash.get_mut(&h)?;
        if e.spent {
            return None;
        }
        e.spent = true;
        let issuer = e.issuer;
        self.note_spent(issuer);
        Some(Spent(h))
    }

    /// Count a refused redemption of a ticket [`Tickets::outstanding`] found outstanding (the
    /// caller holds the table's lock from that check): the [`MAX_REFUSED_REDEMPTIONS`]th
    /// withdraws it, and returns true, once. Until the twenty-second pass a refusal left the
    /// ticket usable however often it came, so its holder could probe (which credentials its
    /// task lists, which have secrets) without end, bounded in rate by the per-uid audit
    /// budget alone. A hand-out given back ([`Tickets::give_back`]) is no refusal here.
    pub(crate) fn refused(&mut self, ticket: &SecretString) -> bool {
        let Some(e) = self.by_hash.get_mut(&hash(ticket.expose())) else {
            return false;
        };
        if e.spent || e.withdrawn {
            return false;
        }
        e.refused += 1;
        if e.refused < MAX_REFUSED_REDEMPTIONS {
            return false;
        }
        e.withdrawn = true;
        let issuer = e.issuer;
        // Dead now: forgotten first when its group is at its limit.
        self.note_spent(issuer);
        true
    }

    /// Make a ticket [`Tickets::spend`] spent outstanding again: its hand-out's audit record
    /// could not be made durable, so nothing was handed out (`audit_unavailable`), and the
    /// ticket is left usable as any other refusal leaves it (twenty-first pass). Nothing when
    /// it was forgotten meanwhile (`lock`, or a full table's clean-up).
    pub(crate) fn give_back(&mut self, spent: Spent) {
        let Some(e) = self.by_hash.get_mut(&spent.0) else {
            return;
        };
        if !e.spent {
            return;
        }
        e.spent = false;
        let (issuer, deadline) = (e.issuer, e.deadline);
        // Outstanding again: its expiry counts for the next look for dead tickets.
        self.each_group(issuer, |held| held.expires_at_the_latest(deadline));
    }

    /// Check and spend a ticket at once (tests).
    #[cfg(test)]
    pub(crate) fn redeem(
        &mut self,
        ticket: &SecretString,
        now: Now,
    ) -> Result<String, NotRedeemed> {
        let (task, _) = self.outstanding(ticket, now)?;
        self.spend(ticket);
        Ok(task)
    }

    /// Forget every ticket (on `lock`).
    pub(crate) fn clear(&mut self) {
        self.by_hash.clear();
        self.all = Held::default();
        self.schedulers = Held::default();
        self.by_issuer.clear();
    }

    /// At a limit (the cap, a scheduler's share, the schedulers' part): forget spent and
    /// expired tickets of `whose`, the oldest first, until a quarter of that room is free, so
    /// that only outstanding tickets count against the limit (found by attacking the protocol,
    /// fourteenth pass: 100,000 tickets of one second, all expired, refused every ticket to
    /// every scheduler and admin for 24 hours). Such a ticket redeemed later is then `Unknown`
    /// instead of `Spent`/`Expired`: refused either way. Costs one pass over the table per
    /// quarter of the limit issued; none while the group can hold no dead ticket (every one
    /// outstanding, none spent, none past its expiry), so a group at its limit is refused at
    /// no cost.
    fn forget_dead(&mut self, now: Instant, whose: Whose, limit: usize) {
        if !self.held(whose).may_hold_dead(now) {
            return;
        }
        let mut dead: Vec<(Instant, [u8; 32])> = Vec::new();
        let mut next_expiry: Option<Instant> = None;
        for (h, e) in self.by_hash.iter().filter(|(_, e)| whose.holds(e)) {
            if e.dead(now) {
                dead.push((e.deadline, *h));
            } else {
                next_expiry = Some(next_expiry.map_or(e.deadline, |t| t.min(e.deadline)));
            }
        }
        dead.sort_unstable();
        let target = limit * 3 / 4;
        let mut left = dead.len();
        for (_, h) in dead {
            if self.held(whose).count <= target {
                break;
            }
            if let Some(e) = self.by_hash.remove(&h) {
                Self::note_forgotten(
                    &mut self.all,
                    &mut self.schedulers,
                    &mut self.by_issuer,
                    e.issuer,
                );
            }
            left -= 1;
        }
        let held = match whose {
            Whose::All => Some(&mut self.all),
            Whose::Schedulers => Some(&mut self.schedulers),
            Whose::Issuer(uid) => self.by_issuer.get_mut(&uid),
        };
        if let Some(held) = held {
            held.dead = left > 0;
            held.next_expiry = next_expiry;
        }
    }

    fn prune(&mut self, now: Instant) {
        let Tickets {
            by_hash,
            all,
            schedulers,
            by_issuer,
            ..
        } = self;
        by_hash.retain(|_, e| {
            let keep = now.saturating_duration_since(e.deadline) < REMEMBER;
            if !keep {
                Self::note_forgotten(all, schedulers, by_issuer, e.issuer);
            }
            keep
        });
    }

    /// A short, non-secret id of a ticket for the audit log (first 8 bytes of its hash).
    pub(crate) fn id_of(ticket: &SecretString) -> String {
        data_encoding::HEXLOWER.encode(&hash(ticket.expose())[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::OnceLock;
    use std::time::Duration;

    /// An issuer (root; these tests do not judge it again).
    fn by() -> IssuedBy {
        IssuedBy {
            issuer: crate::agent::peer::PeerIdentity::with_groups(0, 0, 1, vec![]).detached(),
            generation: 0,
        }
    }

    /// A revoked ticket is dead: refused as revoked, naming its issuer, never handed out,
    /// and counted out of its issuer's share at the next look for room.
    #[test]
    fn a_revoked_ticket_is_refused_as_revoked_and_makes_room() {
        let mut t = Tickets::with_cap(8);
        let (ticket, _) = t.issue("checkout", 60, at(0), Some(7), by()).unwrap();
        assert!(t.outstanding(&ticket, at(1)).is_ok());
        assert!(t.revoke(&ticket), "revoked once");
        assert!(!t.revoke(&ticket), "not twice");
        assert_eq!(
            t.redeem(&ticket, at(1)).unwrap_err(),
            NotRedeemed::Revoked {
                task: "checkout".into(),
                issuer: 0
            }
        );
        assert!(!t.refused(&ticket), "no refusal counts against it any more");
        // Scheduler 7's share is 2 of 8: the revoked one is forgotten to make room.
        t.issue("checkout", 60, at(1), Some(7), by()).unwrap();
        assert!(t.issue("checkout", 60, at(1), Some(7), by()).is_ok());
        // A spent ticket is not revoked.
        let (spent, _) = t.issue("x", 60, at(1), None, by()).unwrap();
        t.redeem(&spent, at(1)).unwrap();
        assert!(!t.revoke(&spent));
    }

    /// Both clocks `secs` seconds after one start: the real-time clock reads `secs`.
    fn at(secs: u64) -> Now {
        static START: OnceLock<Instant> = OnceLock::new();
        let start = *START.get_or_init(Instant::now);
        Now {
            mono: start + Duration::from_secs(secs),
            wall: secs,
        }
    }

    /// Twenty-fourth pass (found by the attacker of evidence from the audit trail): expiry
    /// followed the real-time clock, so a ticket of 3 s outlived a step of that clock back by
    /// an hour, and one of 600 s died at a step forward. It is the monotonic clock's now; the
    /// real-time one only dates the `expires_at` a client is shown.
    #[test]
    fn a_ticket_expires_by_its_ttl_whatever_the_real_time_clock_does() {
        let wall = 1_790_000_000;
        let start = at(0).mono;
        let when = |secs: u64, wall: u64| Now {
            mono: start + Duration::from_secs(secs),
            wall,
        };
        let mut t = Tickets::default();
        let (short, shown) = t.issue("checkout", 3, when(0, wall), None, by()).unwrap();
        assert_eq!(shown, wall + 3, "shown in real time");
        // The real-time clock stepped back an hour; 6 s passed.
        assert_eq!(
            t.outstanding(&short, when(6, wall - 3600 + 6))
                .map(|(task, _)| task),
            Err(NotRedeemed::Expired {
                task: "checkout".into()
            })
        );
        // The real-time clock stepped forward an hour; 1 s passed.
        let (long, _) = t
            .issue("checkout", 600, when(6, wall + 6), None, by())
            .unwrap();
        assert_eq!(
            t.redeem(&long, when(7, wall + 3600 + 7)),
            Ok("checkout".into())
        );
        // Dead tickets are found by the monotonic clock too: the short one makes room.
        let mut t = Tickets::with_cap(4);
        t.issue("x", 3, when(0, wall), None, by()).unwrap();
        for _ in 1..4 {
            t.issue("x", 600, when(0, wall), None, by()).unwrap();
        }
        assert_eq!(
            t.issue("x", 600, when(1, wall + 7200), None, by())
                .unwrap_err(),
            Full::Table
        );
        assert!(t.issue("x", 600, when(6, wall - 3600), None, by()).is_ok());
    }

    /// Twenty-first pass: a ticket whose hand-out's record failed is given back, outstanding
    /// as before, and redeems once; one spent by a hand-out that went out stays spent, and one
    /// forgotten meanwhile (`lock`) is not brought back.
    #[test]
    fn a_ticket_given_back_after_a_failed_hand_out_redeems_once() {
        let mut t = Tickets::default();
        let (ticket, _) = t.issue("checkout", 60, at(1000), Some(7), by()).unwrap();
        assert_eq!(
            t.outstanding(&ticket, at(1001)).map(|(task, _)| task),
            Ok("checkout".into())
        );
        let spent = t.spend(&ticket).expect("outstanding");
        assert!(t.spend(&ticket).is_none(), "spent once");
        assert!(matches!(
            t.outstanding(&ticket, at(1001)).map(|(task, _)| task),
            Err(NotRedeemed::Spent { .. })
        ));
        t.give_back(spent);
        assert_eq!(
            t.outstanding(&ticket, at(1002)).map(|(task, _)| task),
            Ok("checkout".into())
        );
        assert_eq!(t.redeem(&ticket, at(1002)), Ok("checkout".into()));
        assert!(matches!(
            t.redeem(&ticket, at(1003)),
            Err(NotRedeemed::Spent { .. })
        ));
        let (other, _) = t.issue("checkout", 60, at(1000), None, by()).unwrap();
        let spent = t.spend(&other).unwrap();
        t.clear();
        t.give_back(spent);
        assert_eq!(
            t.outstanding(&other, at(1001)).map(|(task, _)| task),
            Err(NotRedeemed::Unknown)
        );
    }

    #[test]
    fn a_ticket_redeems_once() {
        let mut t = Tickets::default();
        let (ticket, exp) = t.issue("checkout", 60, at(1000), None, by()).unwrap();
        assert_eq!(exp, 1060);
        assert!(ticket.expose().starts_with(PREFIX));
        assert_eq!(t.redeem(&ticket, at(1001)), Ok("checkout".into()));
        assert_eq!(
            t.redeem(&ticket, at(1002)),
            Err(NotRedeemed::Spent {
                task: "checkout".into()
            })
        );
    }

    #[test]
    fn an_expired_ticket_is_refused_and_unknown_ones_are_unknown() {
        let mut t = Tickets::default();
        let (ticket, _) = t.issue("checkout", 60, at(1000), None, by()).unwrap();
        assert_eq!(
            t.redeem(&ticket, at(1060)),
            Err(NotRedeemed::Expired {
                task: "checkout".into()
            })
        );
        let other = SecretString::from("svt1_nope".to_string());
        assert_eq!(t.redeem(&other, at(1000)), Err(NotRedeemed::Unknown));
    }

    #[test]
    fn only_outstanding_tickets_count_against_the_cap() {
        let mut t = Tickets::with_cap(400);
        let spent = t.issue("x", 60, at(0), None, by()).unwrap().0;
        assert_eq!(t.redeem(&spent, at(0)), Ok("x".into()));
        for _ in 1..400 {
            t.issue("x", 1, at(0), None, by()).unwrap();
        }
        // 399 outstanding and a spent one: the spent one makes room, then 400 outstanding
        // are the cap.
        assert!(t.issue("x", 1, at(0), None, by()).is_ok());
        assert!(t.issue("x", 1, at(0), None, by()).is_err());
        // A second later every one has expired: new tickets are issued, and the table stays
        // bounded.
        let (fresh, _) = t.issue("x", 60, at(5), None, by()).unwrap();
        assert!(t.by_hash.len() <= 301);
        assert_eq!(t.redeem(&fresh, at(6)), Ok("x".into()));
    }

    /// Eighteenth pass: one scheduler's tickets filled the table and refused everyone else's.
    /// A scheduler holds a quarter of it at most, schedulers together three quarters, and
    /// admins get the rest; a scheduler's dead tickets make room for its own.
    #[test]
    fn a_scheduler_fills_only_its_share_and_schedulers_leave_room_for_admins() {
        let mut t = Tickets::with_cap(400);
        let mut first = None;
        for _ in 0..100 {
            let issued = t.issue("x", 60, at(0), Some(1), by()).unwrap();
            first.get_or_insert(issued.0);
        }
        assert_eq!(
            t.issue("x", 60, at(0), Some(1), by()).unwrap_err(),
            Full::Issuer(100)
        );
        // Another scheduler and an admin are served.
        assert!(t.issue("x", 60, at(0), Some(2), by()).is_ok());
        assert!(t.issue("x", 60, at(0), None, by()).is_ok());
        // Spent, a ticket of scheduler 1 makes room for one of its own (and only then is
        // its part of the table looked through).
        assert!(t.redeem(&first.unwrap(), at(1)).is_ok());
        assert!(t.issue("x", 60, at(1), Some(1), by()).is_ok());
        assert_eq!(
            t.issue("x", 60, at(1), Some(1), by()).unwrap_err(),
            Full::Issuer(100)
        );
        // Schedulers together: three quarters (100 each for schedulers 1, 2 and 3).
        for _ in 1..100 {
            t.issue("x", 60, at(1), Some(2), by()).unwrap();
        }
        for _ in 0..100 {
            t.issue("x", 60, at(1), Some(3), by()).unwrap();
        }
        assert_eq!(
            t.issue("x", 60, at(1), Some(4), by()).unwrap_err(),
            Full::Schedulers(300)
        );
        // The last quarter is the admins'.
        for _ in 1..100 {
            t.issue("x", 60, at(1), None, by()).unwrap();
        }
        assert_eq!(
            t.issue("x", 60, at(1), None, by()).unwrap_err(),
            Full::Table
        );
        // An hour later every ticket has expired: each group makes room again.
        assert!(t.issue("x", 60, at(3600), Some(1), by()).is_ok());
        assert!(t.issue("x", 60, at(3600), Some(4), by()).is_ok());
        assert!(t.issue("x", 60, at(3600), None, by()).is_ok());
        assert!(t.by_hash.len() <= 400);
    }

    #[test]
    fn tickets_are_random_and_only_hashes_are_kept() {
        let mut t = Tickets::default();
        let (a, _) = t.issue("x", 60, at(0), None, by()).unwrap();
        let (b, _) = t.issue("x", 60, at(0), None, by()).unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(t.by_hash.contains_key(&hash(a.expose())));
        assert_eq!(Tickets::id_of(&a).len(), 16);
    }
}
