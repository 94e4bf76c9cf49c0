//! The per-uid budget of audited hand-outs (docs/audit.md, "Growth"). Refusals are rate-limited
//! per uid (`handler.rs`), but what a uid is allowed — its hand-outs, its tickets, its scrub
//! reports — was written one record each, as fast as it asked: one runner fetching in a loop
//! wrote 30 MB/s, used up the free-space reserve and then every other uid's fetch failed
//! `audit_unavailable` (eighteenth pass). So each uid that is not an admin has a token bucket
//! of audit bytes: `rate` bytes a second, up to `burst` at once. A request is taken while the
//! uid's bucket is not in debt, and its records are charged once written (a request may leave
//! the bucket in debt by its own records, which are not known before it is decided); below the
//! free-space reserve a uid may write one more burst at most, until there is room again, so
//! that the reserve stays for the other uids and the admins.
//!
//! A uid gets an entry only once it is charged, that is once the policy allowed it something:
//! the table is bounded by the users the policy names, and a refused stranger costs nothing.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

/// Default sustained rate of a uid's audited hand-outs, bytes per second (about 65 fetch
/// records of one credential a second).
pub const DEFAULT_RATE: u64 = 32 * 1024;
/// Default burst of a uid's audited hand-outs, bytes (about 4,000 fetch records).
pub const DEFAULT_BURST: u64 = 2 * 1024 * 1024;

/// Why a uid's request is not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Over {
    /// The uid wrote its rate and its burst: it waits for the bucket to refill.
    Rate,
    /// Below the free-space reserve, the uid wrote its share of it (one burst).
    Share,
}

/// The budgets of every uid that is not an admin.
pub(crate) struct AuditBudget {
    /// Bytes a second (0: no budget at all, in tests of other behaviour).
    rate: u64,
    /// Bytes at once, and each uid's share of the reserve.
    burst: u64,
    inner: Mutex<Inner>,
}

struct Inner {
    uids: HashMap<u32, Bucket>,
    /// Whether the last look found the log's file system below the reserve.
    low: bool,
    /// Counts the times the file system went below the reserve: a uid's share is of the
    /// current spell.
    spell: u64,
}

struct Bucket {
    /// Bytes the uid may still write; negative: in debt.
    tokens: i64,
    /// When `tokens` was last refilled.
    at: Instant,
    /// The spell below the reserve `used_low` counts in.
    spell: u64,
    /// Bytes written below the reserve in that spell.
    used_low: u64,
}

impl AuditBudget {
    /// A budget of `rate` bytes a second and `burst` bytes at once per uid.
    pub(crate) fn new(rate: u64, burst: u64) -> AuditBudget {
        AuditBudget {
            rate,
            burst,
            inner: Mutex::new(Inner {
                uids: HashMap::new(),
                low: false,
                spell: 0,
            }),
        }
    }

    /// The rate, bytes a second.
    pub(crate) fn rate(&self) -> u64 {
        self.rate
    }

    /// The burst, bytes (also the share of the reserve).
    pub(crate) fn burst(&self) -> u64 {
        self.burst
    }

    /// Whether `uid` may be served now: its bucket is not in debt and, when `low()` says the
    /// log's file system is below the reserve, it has not written its share of it. `low` is
    /// asked only for a uid that was charged before (a `statvfs`). O(1), no allocation.
    pub(crate) fn admit(
        &self,
        uid: u32,
        now: Instant,
        low: impl FnOnce() -> bool,
    ) -> Result<(), Over> {
        if self.rate == 0 {
            return Ok(());
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if !inner.uids.contains_key(&uid) {
            return Ok(());
        }
        let low = low();
        let spell = inner.note_low(low);
        let (rate, burst) = (self.rate, self.burst);
        let b = inner.uids.get_mut(&uid).expect("looked up above");
        b.refill(now, rate, burst);
        if b.tokens <= 0 {
            return Err(Over::Rate);
        }
        if low && b.spell == spell && b.used_low >= burst {
            return Err(Over::Share);
        }
        Ok(())
    }

    /// Charge `bytes` of records written for `uid` (below the reserve, to its share too, as
    /// the last [`AuditBudget::admit`] found the file system).
    pub(crate) fn charge(&self, uid: u32, bytes: u64, now: Instant) {
        if self.rate == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (low, spell) = (inner.low, inner.spell);
        let (rate, burst) = (self.rate, self.burst);
        let b = inner.uids.entry(uid).or_insert(Bucket {
            tokens: i64::try_from(burst).unwrap_or(i64::MAX),
            at: now,
            spell,
            used_low: 0,
        });
        b.refill(now, rate, burst);
        b.tokens = b
            .tokens
            .saturating_sub(i64::try_from(bytes).unwrap_or(i64::MAX));
        if low {
            if b.spell != spell {
                b.spell = spell;
                b.used_low = 0;
            }
            b.used_low = b.used_low.saturating_add(bytes);
        }
    }
}

impl Inner {
    /// Note what the file system's free space is now; the current spell below the reserve.
    fn note_low(&mut self, low: bool) -> u64 {
        if low && !self.low {
            self.spell += 1;
        }
        self.low = low;
        self.spell
    }
}

impl Bucket {
    fn refill(&mut self, now: Instant, rate: u64, burst: u64) {
        let elapsed = now.saturating_duration_since(self.at).as_nanos();
        let add = u128::from(rate) * elapsed / 1_000_000_000;
        if add > 0 {
            let burst = i128::from(burst);
            let tokens = (i128::from(self.tokens) + add as i128).min(burst);
            self.tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
            self.at = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_uid_is_served_until_its_burst_is_spent_then_at_its_rate() {
        let b = AuditBudget::new(1000, 10_000);
        let t0 = Instant::now();
        // Never charged: served without a look at the disk.
        assert_eq!(
            b.admit(7, t0, || panic!("no statvfs for a new uid")),
            Ok(())
        );
        for _ in 0..10 {
            assert_eq!(b.admit(7, t0, || false), Ok(()));
            b.charge(7, 1000, t0);
        }
        assert_eq!(b.admit(7, t0, || false), Err(Over::Rate));
        // Another uid has its own bucket.
        assert_eq!(b.admit(8, t0, || false), Ok(()));
        // Half a second refills 500 bytes: one more request, which may go into debt.
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(b.admit(7, t1, || false), Ok(()));
        b.charge(7, 1000, t1);
        assert_eq!(b.admit(7, t1, || false), Err(Over::Rate));
        // The debt is paid before the next one: 500 bytes short, then 1 byte up.
        assert_eq!(
            b.admit(7, t1 + Duration::from_millis(500), || false),
            Err(Over::Rate)
        );
        assert_eq!(
            b.admit(7, t1 + Duration::from_millis(502), || false),
            Ok(())
        );
        // Refilled, never above the burst.
        let later = t1 + Duration::from_secs(3600);
        for _ in 0..10 {
            assert_eq!(b.admit(7, later, || false), Ok(()));
            b.charge(7, 1000, later);
        }
        assert_eq!(b.admit(7, later, || false), Err(Over::Rate));
    }

    #[test]
    fn below_the_reserve_a_uid_writes_one_burst_until_there_is_room_again() {
        let b = AuditBudget::new(1_000_000, 10_000);
        let t = Instant::now();
        b.charge(7, 1, t);
        let mut now = t;
        // Below the reserve: 10 records of 1000 bytes, then no more, however long it waits.
        for _ in 0..10 {
            now += Duration::from_secs(1);
            assert_eq!(b.admit(7, now, || true), Ok(()));
            b.charge(7, 1000, now);
        }
        now += Duration::from_secs(60);
        assert_eq!(b.admit(7, now, || true), Err(Over::Share));
        // Room again: served; and a new spell below the reserve is a new share.
        assert_eq!(b.admit(7, now, || false), Ok(()));
        assert_eq!(b.admit(7, now, || true), Ok(()));
    }

    #[test]
    fn a_rate_of_zero_is_no_budget() {
        let b = AuditBudget::new(0, 0);
        let t = Instant::now();
        b.charge(7, u64::MAX, t);
        assert_eq!(b.admit(7, t, || true), Ok(()));
    }
}
