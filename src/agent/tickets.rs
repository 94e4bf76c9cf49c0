//! Single-use tickets: a scheduler asks for one for a task, hands it to the check, and the
//! check redeems it once. Only a SHA-256 of each ticket is kept, so a memory dump of the daemon
//! does not reveal redeemable tickets; a spent ticket is remembered until well past its expiry
//! so a second redeem is recognised (and audited as possible interception).

use std::collections::HashMap;

use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::SecretString;

/// Outstanding tickets at most; beyond that `ticket` is refused until some expire.
pub(crate) const MAX_TICKETS: usize = 100_000;
/// How long a spent or expired ticket is remembered after its expiry.
const REMEMBER_SECS: u64 = 24 * 60 * 60;
/// Prefix that makes a ticket recognisable in a leak scan.
const PREFIX: &str = "svt1_";

struct Entry {
    task: String,
    expires_at: u64,
    spent: bool,
}

/// Why a ticket was not redeemed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NotRedeemed {
    /// No ticket with this value was issued (or it was forgotten long ago).
    Unknown,
    /// Already redeemed once: possible interception.
    Spent { task: String },
    /// Past its ttl.
    Expired { task: String },
}

/// The daemon's tickets.
pub(crate) struct Tickets {
    by_hash: HashMap<[u8; 32], Entry>,
    /// Outstanding tickets at most: [`MAX_TICKETS`] (smaller in tests).
    cap: usize,
}

impl Default for Tickets {
    fn default() -> Self {
        Tickets {
            by_hash: HashMap::default(),
            cap: MAX_TICKETS,
        }
    }
}

fn hash(ticket: &str) -> [u8; 32] {
    Sha256::digest(ticket.as_bytes()).into()
}

impl Tickets {
    /// Issue a ticket for `task`, good until `now + ttl`. `None` when too many are outstanding.
    pub(crate) fn issue(&mut self, task: &str, ttl: u64, now: u64) -> Option<(SecretString, u64)> {
        self.prune(now);
        if self.by_hash.len() >= self.cap {
            self.forget_dead(now);
        }
        if self.by_hash.len() >= self.cap {
            return None;
        }
        let mut raw = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(&mut *raw);
        let ticket = SecretString::from(format!(
            "{PREFIX}{}",
            data_encoding::BASE64URL_NOPAD.encode(&*raw)
        ));
        let expires_at = now.saturating_add(ttl);
        self.by_hash.insert(
            hash(ticket.expose()),
            Entry {
                task: task.to_owned(),
                expires_at,
                spent: false,
            },
        );
        Some((ticket, expires_at))
    }

    /// Redeem a ticket: its task the first time, refused afterwards or once expired.
    /// As [`Tickets::redeem`], but the ticket is spent only when `spend(task)` says so: a
    /// redemption that will be refused anyway (a credential its task does not list) must not
    /// use the ticket up. Returns the task and whether the ticket was spent.
    pub(crate) fn redeem_if(
        &mut self,
        ticket: &SecretString,
        now: u64,
        spend: impl FnOnce(&str) -> bool,
    ) -> Result<(String, bool), NotRedeemed> {
        let Some(e) = self.by_hash.get_mut(&hash(ticket.expose())) else {
            return Err(NotRedeemed::Unknown);
        };
        if e.spent {
            return Err(NotRedeemed::Spent {
                task: e.task.clone(),
            });
        }
        if now >= e.expires_at {
            return Err(NotRedeemed::Expired {
                task: e.task.clone(),
            });
        }
        let spent = spend(&e.task);
        e.spent = spent;
        Ok((e.task.clone(), spent))
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn redeem(
        &mut self,
        ticket: &SecretString,
        now: u64,
    ) -> Result<String, NotRedeemed> {
        let Some(e) = self.by_hash.get_mut(&hash(ticket.expose())) else {
            return Err(NotRedeemed::Unknown);
        };
        if e.spent {
            return Err(NotRedeemed::Spent {
                task: e.task.clone(),
            });
        }
        if now >= e.expires_at {
            return Err(NotRedeemed::Expired {
                task: e.task.clone(),
            });
        }
        e.spent = true;
        Ok(e.task.clone())
    }

    /// Forget every ticket (on `lock`).
    pub(crate) fn clear(&mut self) {
        self.by_hash.clear();
    }

    /// At the cap: forget spent and expired tickets, the oldest first, until a quarter of the
    /// room is free, so that only outstanding tickets count against [`MAX_TICKETS`] (found by
    /// attacking the protocol, fourteenth pass: 100,000 tickets of one second, all expired,
    /// refused every ticket to every scheduler and admin for 24 hours). Such a ticket redeemed
    /// later is then `Unknown` instead of `Spent`/`Expired`: refused either way. Costs one pass
    /// over the table per quarter of the cap issued.
    fn forget_dead(&mut self, now: u64) {
        let mut dead: Vec<(u64, [u8; 32])> = self
            .by_hash
            .iter()
            .filter(|(_, e)| e.spent || now >= e.expires_at)
            .map(|(h, e)| (e.expires_at, *h))
            .collect();
        dead.sort_unstable();
        let target = self.cap * 3 / 4;
        for (_, h) in dead {
            if self.by_hash.len() <= target {
                break;
            }
            self.by_hash.remove(&h);
        }
    }

    fn prune(&mut self, now: u64) {
        self.by_hash
            .retain(|_, e| e.expires_at.saturating_add(REMEMBER_SECS) > now);
    }

    /// A short, non-secret id of a ticket for the audit log (first 8 bytes of its hash).
    pub(crate) fn id_of(ticket: &SecretString) -> String {
        data_encoding::HEXLOWER.encode(&hash(ticket.expose())[..8])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_redeems_once() {
        let mut t = Tickets::default();
        let (ticket, exp) = t.issue("checkout", 60, 1000).unwrap();
        assert_eq!(exp, 1060);
        assert!(ticket.expose().starts_with(PREFIX));
        assert_eq!(t.redeem(&ticket, 1001), Ok("checkout".into()));
        assert_eq!(
            t.redeem(&ticket, 1002),
            Err(NotRedeemed::Spent {
                task: "checkout".into()
            })
        );
    }

    #[test]
    fn an_expired_ticket_is_refused_and_unknown_ones_are_unknown() {
        let mut t = Tickets::default();
        let (ticket, _) = t.issue("checkout", 60, 1000).unwrap();
        assert_eq!(
            t.redeem(&ticket, 1060),
            Err(NotRedeemed::Expired {
                task: "checkout".into()
            })
        );
        let other = SecretString::from("svt1_nope".to_string());
        assert_eq!(t.redeem(&other, 1000), Err(NotRedeemed::Unknown));
    }

    #[test]
    fn only_outstanding_tickets_count_against_the_cap() {
        let mut t = Tickets {
            cap: 400,
            ..Tickets::default()
        };
        let spent = t.issue("x", 60, 0).unwrap().0;
        assert_eq!(t.redeem(&spent, 0), Ok("x".into()));
        for _ in 1..400 {
            t.issue("x", 1, 0).unwrap();
        }
        // 399 outstanding and a spent one: the spent one makes room, then 400 outstanding
        // are the cap.
        assert!(t.issue("x", 1, 0).is_some());
        assert!(t.issue("x", 1, 0).is_none());
        // A second later every one has expired: new tickets are issued, and the table stays
        // bounded.
        let (fresh, _) = t.issue("x", 60, 5).unwrap();
        assert!(t.by_hash.len() <= 301);
        assert_eq!(t.redeem(&fresh, 6), Ok("x".into()));
    }

    #[test]
    fn tickets_are_random_and_only_hashes_are_kept() {
        let mut t = Tickets::default();
        let (a, _) = t.issue("x", 60, 0).unwrap();
        let (b, _) = t.issue("x", 60, 0).unwrap();
        assert_ne!(a.expose(), b.expose());
        assert!(t.by_hash.contains_key(&hash(a.expose())));
        assert_eq!(Tickets::id_of(&a).len(), 16);
    }
}
