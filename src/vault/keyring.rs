//! OS keyring access for keyring slots, through `keyring-core` with an explicitly named store.
//!
//! We never let a library pick a store for us: an all-in-one keyring that silently falls back
//! to an in-memory mock would "store" the slot key and lose it at exit, leaving a slot that can
//! never unlock. An unavailable store is a clear [`VaultError::KeyringUnavailable`].

use std::sync::Arc;

use keyring_core::{CredentialStore, Entry};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use super::VaultError;

/// The keyring stores a slot can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeyringStore {
    /// The freedesktop Secret Service over the session D-Bus (gnome-keyring, KeePassXC…).
    SecretService,
    /// The Linux kernel key retention service (keyutils).
    Keyutils,
}

impl KeyringStore {
    /// The name used in slots and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyringStore::SecretService => "secret-service",
            KeyringStore::Keyutils => "keyutils",
        }
    }
}

fn unavailable(store: KeyringStore, err: impl std::fmt::Display) -> VaultError {
    let hint = match store {
        KeyringStore::SecretService => {
            "is a Secret Service (e.g. gnome-keyring) running and unlocked on the session D-Bus \
             (DBUS_SESSION_BUS_ADDRESS)?"
        }
        KeyringStore::Keyutils => "does this kernel (or container) allow the keyutils syscalls?",
    };
    VaultError::KeyringUnavailable(format!("{} store: {err}; {hint}", store.as_str()))
}

/// A store's answer as a [`VaultError`]: two items or more for one entry are named as such
/// ([`ambiguous`]), anything else is the store being unusable ([`unavailable`]). keyring-core's
/// `Display` of [`keyring_core::Error::Ambiguous`] is the Debug form of every item it found
/// (D-Bus object paths), and the advice of an unreachable store fitted none of it (twenty-first
/// pass): no keyring error becomes text but through here.
fn store_error(
    store: KeyringStore,
    service: &str,
    account: &str,
    err: keyring_core::Error,
) -> VaultError {
    match err {
        keyring_core::Error::Ambiguous(items) => ambiguous(store, service, account, items.len()),
        err => unavailable(store, err),
    }
}

/// The store holds `count` items for the entry `service`/`account` (one made by scopevault,
/// the others by another program or by hand): which to list, and which to delete.
fn ambiguous(store: KeyringStore, service: &str, account: &str, count: usize) -> VaultError {
    let fix = match store {
        KeyringStore::SecretService => format!(
            "list them with `secret-tool search --all service {service} username {account}`: the one scopevault made has no attribute but `service` and `username`; delete the other(s), e.g. `secret-tool clear service {service} username {account} NAME VALUE` with an attribute NAME only they have"
        ),
        KeyringStore::Keyutils => {
            "list them with `keyctl show @s` and delete all but the one scopevault made".to_owned()
        }
    };
    VaultError::KeyringAmbiguous(format!(
        "the {} store holds {count} items for the entry {service}/{account} of a keyring slot, which has one, so it cannot say which holds the slot's key: {fix}",
        store.as_str()
    ))
}

fn open_store(store: KeyringStore) -> Result<Arc<CredentialStore>, VaultError> {
    let s: Arc<CredentialStore> = match store {
        KeyringStore::SecretService => {
            // Without a session bus the zbus store would fail later with a vaguer error.
            if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none() {
                return Err(unavailable(
                    store,
                    "no session D-Bus (DBUS_SESSION_BUS_ADDRESS is not set)",
                ));
            }
            // Whose bus and whose Secret Service, before anything is sent (twenty-sixth pass).
            super::session_bus::check()?;
            zbus_secret_service_keyring_store::Store::new().map_err(|e| unavailable(store, e))?
        }
        KeyringStore::Keyutils => {
            // Whose session keyring, before an entry is made: making one links this user's
            // persistent keyring into it (twenty-sixth pass).
            super::session_keyring::check()?;
            linux_keyutils_keyring_store::Store::new().map_err(|e| unavailable(store, e))?
        }
    };
    Ok(s)
}

fn entry(store: KeyringStore, service: &str, account: &str) -> Result<Entry, VaultError> {
    let s = open_store(store)?;
    Entry::new_in_store(&s, service, account).map_err(|e| store_error(store, service, account, e))
}

/// Store a slot key. Reads it back to make sure the store really kept it.
pub(crate) fn put(
    store: KeyringStore,
    service: &str,
    account: &str,
    key: &[u8],
) -> Result<(), VaultError> {
    let e = entry(store, service, account)?;
    e.set_secret(key)
        .map_err(|err| store_error(store, service, account, err))?;
    let back = Zeroizing::new(
        e.get_secret()
            .map_err(|err| store_error(store, service, account, err))?,
    );
    if back.as_slice() != key {
        return Err(unavailable(
            store,
            "the store did not keep the key it was given",
        ));
    }
    Ok(())
}

/// Read a slot key.
pub(crate) fn get(
    store: KeyringStore,
    service: &str,
    account: &str,
) -> Result<Zeroizing<Vec<u8>>, VaultError> {
    let e = entry(store, service, account)?;
    match e.get_secret() {
        Ok(k) => Ok(Zeroizing::new(k)),
        Err(keyring_core::Error::NoEntry) => Err(VaultError::Keyring(format!(
            "the {} store has no entry {service}/{account} (was it deleted, or is this another user/session?)",
            store.as_str()
        ))),
        Err(err) => Err(store_error(store, service, account, err)),
    }
}

/// Delete a slot key (used when a keyring slot is removed): how many items were deleted. A
/// missing entry is an error too, for the caller to warn about as it warns about a store it
/// cannot reach: the entry may live on another host or in another login session (a vault
/// moved from the host that made the slot), where it stays. It was silent for a keyutils
/// slot, whose entry is missing wherever it was not made, while a secret-service slot warned
/// (nineteenth pass).
///
/// Two items or more for the entry (one made by another program or by hand, with the same
/// `service` and `username` and more attributes) are all deleted, as `secret-tool clear
/// service scopevault username ACCOUNT` would: their username names this vault and this
/// slot, so each is the slot's key or claims to be, and the slot is gone. Deleting none left
/// the key in the keyring, where it opened any copy of the vault made before (twenty-first
/// pass). The store is asked again afterwards: an item still there is an error.
pub(crate) fn delete(
    store: KeyringStore,
    service: &str,
    account: &str,
) -> Result<usize, VaultError> {
    let e = entry(store, service, account)?;
    let items = match e.delete_credential() {
        Ok(()) => return Ok(1),
        Err(keyring_core::Error::NoEntry) => return Err(VaultError::Keyring(format!(
            "the {} store of this session has no entry {service}/{account}, so nothing was deleted here; if the slot was made on another host or in another login session, its entry is still there: delete it there",
            store.as_str()
        ))),
        Err(keyring_core::Error::Ambiguous(items)) => items,
        Err(err) => return Err(store_error(store, service, account, err)),
    };
    let count = items.len();
    let mut failed = Vec::new();
    for item in items {
        match item.delete_credential() {
            // Gone already (deleted by someone else meanwhile): what we wanted.
            Ok(()) | Err(keyring_core::Error::NoEntry) => {}
            Err(err) => failed.push(store_error(store, service, account, err).to_string()),
        }
    }
    // Asked without reading a secret: only whether an item is left matters.
    let left = match e.get_credential() {
        Err(keyring_core::Error::NoEntry) => None,
        Ok(_) => Some("one item is still there".to_owned()),
        Err(keyring_core::Error::Ambiguous(items)) => {
            Some(format!("{} items are still there", items.len()))
        }
        Err(err) => Some(store_error(store, service, account, err).to_string()),
    };
    if failed.is_empty() && left.is_none() {
        return Ok(count);
    }
    let why = failed
        .into_iter()
        .chain(left)
        .collect::<Vec<_>>()
        .join("; ");
    let how = match store {
        KeyringStore::SecretService => format!(
            "list them with `secret-tool search --all service {service} username {account}` and delete them with `secret-tool clear service {service} username {account}`"
        ),
        KeyringStore::Keyutils => "list them with `keyctl show @s` and delete them with `keyctl unlink`".to_owned(),
    };
    Err(VaultError::Keyring(format!(
        "the {} store held {count} items for the entry {service}/{account}, and not all could be deleted ({why}): one may hold the slot's key; {how}",
        store.as_str()
    )))
}
