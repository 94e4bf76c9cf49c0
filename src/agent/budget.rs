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
//!
//! The budget's lock is shared by every event loop, so the file system's free space, asked
//! for a uid that was charged before, is read before the lock is taken, never under it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Numbers the readings of the free space in the order they are started
    /// ([`Inner::note_low`]).
    readings: AtomicU64,
}

struct Inner {
    uids: HashMap<u32, Bucket>,
    /// Whether the newest reading applied found the log's file system below the reserve.
    low: bool,
    /// The number of that reading.
    reading: u64,
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
                reading: 0,
                spell: 0,
            }),
            readings: AtomicU64::new(0),
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
    /// asked only for a uid that was charged before (a `statvfs`), and outside the lock, which
    /// every event loop shares: a look-up under the lock, the reading, then the decision under
    /// it again. O(1), no allocation.
    pub(crate) fn admit(
        &self,
        uid: u32,
        now: Instant,
        low: impl FnOnce() -> bool,
    ) -> Result<(), Over> {
        if self.rate == 0 {
            return Ok(());
        }
        if !self.lock().uids.contains_key(&uid) {
            return Ok(());
        }
        let reading = self.readings.fetch_add(1, Ordering::Relaxed) + 1;
        let low = low();
        let mut inner = self.lock();
        let (low, spell) = inner.note_low(reading, low);
        let (rate, burst) = (self.rate, self.burst);
        // Entries are never removed: the uid is still there.
        let Some(b) = inner.uids.get_mut(&uid) else {
            return Ok(());
        };
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
    /// the newest reading that [`AuditBudget::admit`] applied found the file system).
    pub(crate) fn charge(&self, uid: u32, bytes: u64, now: Instant) {
        if self.rate == 0 {
            return;
        }
        let mut inner = self.lock();
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

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Inner {
    /// Note the `reading`th look at the file system's free space (numbered as they were
    /// started); whether it is below the reserve, and the current spell below it. Read outside
    /// the lock, a reading can arrive after a later one: it is not applied, else a stale "room"
    /// between two "low" would start a new spell and give every uid a second share.
    fn note_low(&mut self, reading: u64, low: bool) -> (bool, u64) {
        if reading > self.reading {
            self.reading = reading;
            if low && !self.low {
                self.spell += 1;
            }
            self.low = low;
        }
        (self.low, self.spell)
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

    /// Nineteenth pass (found by the last review): the file system was asked for its free
    /// space (`fstatvfs`) while the budget's one lock, which every event loop shares, was
    /// held. It is asked before the lock is taken now.
    #[test]
    fn the_free_space_is_read_outside_the_budgets_lock() {
        let b = AuditBudget::new(1000, 10_000);
        let t = Instant::now();
        b.charge(7, 1, t);
        let mut asked = false;
        let admitted = b.admit(7, t, || {
            asked = true;
            assert!(
                b.inner.try_lock().is_ok(),
                "the free space is read under the budget's lock"
            );
            false
        });
        assert_eq!(admitted, Ok(()));
        assert!(asked, "a uid that was charged has the disk looked at");
    }

    /// Read outside the lock, two readings can be applied in the other order than they were
    /// taken. A reading of room taken before a later one that still finds the file system
    /// below the reserve is not applied: else the next low reading would start a new spell
    /// below the reserve, and every uid would have a second share of it.
    #[test]
    fn a_reading_overtaken_by_a_newer_one_is_not_applied() {
        let b = AuditBudget::new(1_000_000, 10_000);
        let t = Instant::now();
        b.charge(7, 1, t);
        let mut now = t;
        for _ in 0..10 {
            now += Duration::from_secs(1);
            assert_eq!(b.admit(7, now, || true), Ok(()));
            b.charge(7, 1000, now);
        }
        now += Duration::from_secs(60);
        let mut newer = None;
        let stale = b.admit(7, now, || {
            assert!(b.inner.try_lock().is_ok(), "read under the budget's lock");
            // Meanwhile another loop reads the file system, later, and finds it still low.
            newer = Some(b.admit(7, now, || true));
            // This reading was taken first, and found room.
            false
        });
        assert_eq!(newer, Some(Err(Over::Share)));
        assert_eq!(stale, Err(Over::Share), "the stale reading was applied");
        assert_eq!(
            b.admit(7, now, || true),
            Err(Over::Share),
            "the same spell below the reserve: no second share"
        );
        // Room again, read after the others: applied.
        assert_eq!(b.admit(7, now, || false), Ok(()));
    }

    #[test]
    fn a_rate_of_zero_is_no_budget() {
        let b = AuditBudget::new(0, 0);
        let t = Instant::now();
        b.charge(7, u64::MAX, t);
        assert_eq!(b.admit(7, t, || true), Ok(()));
    }
}
