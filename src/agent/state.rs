//! The daemon's vault slot: `None` while locked, the opened vault while unlocked.
//! Unlock, lock and reload swap the slot under a write lock; requests read it.

use std::sync::RwLock;

/// An opened vault as the daemon holds it. Placeholder until the vault module lands.
pub(crate) enum Opened {}

/// The vault slot.
pub(crate) struct State {
    slot: RwLock<Option<Opened>>,
}

impl State {
    /// A locked state.
    pub(crate) fn locked() -> State {
        State {
            slot: RwLock::new(None),
        }
    }

    /// Run `f` with the current vault (or `None` when locked).
    pub(crate) fn with<R>(&self, f: impl FnOnce(Option<&Opened>) -> R) -> R {
        let guard = self.slot.read().unwrap_or_else(|p| p.into_inner());
        f(guard.as_ref())
    }

    /// Forget the vault (its key and secrets are zeroed as they drop).
    pub(crate) fn lock(&self) {
        let mut guard = self.slot.write().unwrap_or_else(|p| p.into_inner());
        *guard = None;
    }
}
