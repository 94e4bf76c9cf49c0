//! The bytes of answers decided and not yet written to their sockets, per peer uid and in
//! total (docs/operations.md, "Limits and hostile clients"). One answer is at most
//! [`MAX_RESPONSE`] (16 MiB: a `tasks` list under a large policy, a fetch of a task with large
//! credentials), and a connection is not read while its answers are not written; but a uid
//! that opened its quota of connections and asked for such an answer on each (16 pipelined
//! lines a connection are decided in one turn) without ever reading made the daemon hold
//! 64 × 16 × 16 MiB until the read timeout (twenty-third pass).
//!
//! So the loop asks [`Backlog::admit`] before it decides a line of a uid that is not an
//! admin: over its bound (or the total over the total bound) the line is left undecided in
//! its socket, not refused — nothing is decided, so nothing is recorded, and no `allow` is
//! written for an answer that cannot be sent — until that uid's answers drain. A uid's bound
//! can be passed by the one answer decided after the last look (one per event loop), never
//! more. Admins (root, the daemon's uid, `--admin-group` members: the loop asks the handler)
//! are counted in the total and never held. While the daemon stops ([`Backlog::stop`]) no
//! room is freed, and a line refused here is never decided: its connection is closed
//! (twenty-third pass).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::protocol::MAX_RESPONSE;

/// Default bound of one uid's answers not yet written (`serve --max-queued-mib-per-uid`): four
/// of the largest answers.
pub const DEFAULT_MAX_QUEUED_PER_UID: usize = 4 * MAX_RESPONSE;
/// Default bound of every uid's answers not yet written (`serve --max-queued-mib`): eight uids
/// at their bound.
pub const DEFAULT_MAX_QUEUED: usize = 32 * MAX_RESPONSE;

/// The largest bound `serve` takes for either option, in MiB (64 GiB): more is no bound on
/// the daemon's memory, so it is refused as a typo (exit 2).
pub const MAX_QUEUED_MIB: usize = 65_536;

/// The answers queued, per uid and in total.
pub(crate) struct Backlog {
    per_uid: usize,
    total: usize,
    inner: Mutex<Inner>,
    /// Bumped when bytes are given back while a line was held: the loops then look at their
    /// held connections again.
    released: AtomicU64,
}

#[derive(Default)]
struct Inner {
    uids: HashMap<u32, usize>,
    total: usize,
    /// A line was held since the last release.
    held: bool,
    /// The daemon stops ([`Backlog::stop`]).
    stopping: bool,
}

impl Backlog {
    /// Bounds of `per_uid` bytes for one uid and `total` bytes for all.
    pub(crate) fn new(per_uid: usize, total: usize) -> Backlog {
        Backlog {
            per_uid,
            total,
            inner: Mutex::new(Inner::default()),
            released: AtomicU64::new(0),
        }
    }

    /// Whether a line of `uid` (`None`: an admin, never held) may be decided now. A refusal
    /// marks the backlog as holding, so that the next release wakes the loops.
    pub(crate) fn admit(&self, uid: Option<u32>) -> bool {
        let Some(uid) = uid else { return true };
        let mut inner = self.lock();
        let mine = inner.uids.get(&uid).copied().unwrap_or(0);
        if mine < self.per_uid && inner.total < self.total {
            return true;
        }
        inner.held = true;
        false
    }

    /// `bytes` more are queued for `uid` (`None`: an admin, in the total only).
    pub(crate) fn charge(&self, uid: Option<u32>, bytes: usize) {
        if bytes == 0 {
            return;
        }
        let mut inner = self.lock();
        inner.total = inner.total.saturating_add(bytes);
        if let Some(uid) = uid {
            let n = inner.uids.entry(uid).or_default();
            *n = n.saturating_add(bytes);
        }
    }

    /// `bytes` of `uid`'s were written (or dropped with their connection). True when a line
    /// was held meanwhile: the caller wakes the loops, which look at their held connections.
    pub(crate) fn release(&self, uid: Option<u32>, bytes: usize) -> bool {
        if bytes == 0 {
            return false;
        }
        let mut inner = self.lock();
        if inner.stopping {
            // The daemon stops: nothing it writes or drops now frees room for a line that
            // waits (it is never decided), and nothing is woken for one.
            return false;
        }
        inner.total = inner.total.saturating_sub(bytes);
        if let Some(uid) = uid {
            if let Some(n) = inner.uids.get_mut(&uid) {
                *n = n.saturating_sub(bytes);
                if *n == 0 {
                    inner.uids.remove(&uid);
                }
            }
        }
        if std::mem::take(&mut inner.held) {
            self.released.fetch_add(1, Ordering::SeqCst);
            return true;
        }
        false
    }

    /// The daemon stops: from now on no bytes are given back, so a uid (or the total) over its
    /// bound when the stop began stays over it, and none of its lines is decided during the
    /// stop, however many of its answers are written or dropped meanwhile (twenty-third pass:
    /// those answers freed room, and the held lines were decided and audited after SIGTERM).
    pub(crate) fn stop(&self) {
        self.lock().stopping = true;
    }

    /// Counts the releases that came while a line was held.
    pub(crate) fn releases(&self) -> u64 {
        self.released.load(Ordering::SeqCst)
    }

    /// The bytes queued in total.
    #[cfg(test)]
    fn queued(&self) -> usize {
        self.lock().total
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_over_its_bound_is_held_until_its_answers_drain_and_others_are_not() {
        let b = Backlog::new(100, 250);
        assert!(b.admit(Some(7)));
        b.charge(Some(7), 60);
        assert!(b.admit(Some(7)));
        b.charge(Some(7), 60);
        // 120 queued: over the bound of 100, by the one answer decided after the last look.
        assert!(!b.admit(Some(7)));
        // Another uid, and an admin, are not held.
        assert!(b.admit(Some(8)));
        assert!(b.admit(None));
        let before = b.releases();
        assert!(
            b.release(Some(7), 60),
            "a release while held wakes the loops"
        );
        assert_eq!(b.releases(), before + 1);
        assert!(b.admit(Some(7)));
        assert!(!b.release(Some(7), 10), "nothing was held since");
    }

    #[test]
    fn after_the_stop_nothing_written_frees_room_for_a_held_line() {
        let b = Backlog::new(100, 250);
        b.charge(Some(7), 120);
        assert!(!b.admit(Some(7)));
        b.stop();
        assert!(!b.release(Some(7), 120), "nothing is woken during the stop");
        assert!(!b.admit(Some(7)), "a held uid stays held during the stop");
        assert!(b.admit(Some(8)), "a uid under its bound is not held");
    }

    #[test]
    fn the_total_bound_holds_every_uid_that_is_not_an_admin() {
        let b = Backlog::new(100, 150);
        b.charge(Some(7), 90);
        b.charge(None, 70);
        assert_eq!(b.queued(), 160);
        assert!(!b.admit(Some(8)));
        assert!(b.admit(None));
        b.release(None, 70);
        assert!(b.admit(Some(8)));
    }
}
