//! Whose session keyring a keyutils keyring slot's key would go to, asked before the keyutils
//! store is opened (twenty-sixth pass).
//!
//! The keyutils store (linux-keyutils-keyring-store) adds the slot key to the *session*
//! keyring the process inherited, and links the caller's persistent keyring
//! (`_persistent.UID`, `KEYCTL_GET_PERSISTENT`) into that session keyring as soon as an entry
//! is made, for a read as for a store. `sudo -u`, `runuser`, `setpriv` and `su` without
//! pam_keyinit keep the caller's session keyring: another user who owns (and so possesses)
//! it was handed the new key and, through the persistent keyring, every keyutils slot key
//! this user ever stored. So the session keyring is described first (`KEYCTL_DESCRIBE`, which
//! links nothing) and must be owned by this uid; otherwise nothing is stored, read or linked.
//! Not root's either, for a user other than root: a session keyring of root's, kept by
//! `sudo -u`/`runuser` from a root shell, is possessed by every process started from that
//! shell, of whatever uid, so another user's process started there would read the keys. A
//! login (pam_keyinit, systemd) gives the user a session keyring of their own uid, and a
//! process without a session keyring is given the user-session keyring of its own uid by the
//! kernel: both pass.

use linux_keyutils::{KeyRing, KeyRingIdentifier};

use super::VaultError;

/// `uid N`, or `root`.
fn who(uid: u32) -> String {
    if uid == 0 {
        "root".to_owned()
    } else {
        format!("uid {uid}")
    }
}

/// Whether a session keyring owned by `owner` may hold the keys of `me`: its owner is `me`
/// (not root, for a user other than root: see the module docs).
pub(crate) fn may_use(owner: u32, me: u32) -> bool {
    owner == me
}

/// What to do about a session keyring that is not this user's: said by every refusal.
const WHAT_TO_DO: &str = "the session keyring probably comes from another user's login (`sudo -u`, `runuser`, `setpriv` and `su` without `-` keep it): log in as this user, use `su -` (its PAM session gives a keyring of this user), or run scopevault under `keyctl new_session` (a new session keyring of this user); otherwise use a passphrase or identity file";

/// Check that the session keyring the keyutils store would use is owned by this uid.
/// `Err(KeyringForeignBus)` says whose it is and what to do; a keyring that cannot be
/// described is refused too, as its owner is unknown.
pub(crate) fn check() -> Result<(), VaultError> {
    let me = rustix::process::geteuid().as_raw();
    let session = KeyRing::from_special_id(KeyRingIdentifier::Session, false).map_err(|e| {
        VaultError::KeyringUnavailable(format!(
            "keyutils store: cannot find this process's session keyring: {e}; does this kernel (or container) allow the keyutils syscalls?"
        ))
    })?;
    let meta = session.metadata().map_err(|e| {
        VaultError::KeyringForeignBus(format!(
            "the keyutils store's session keyring cannot be described ({e}), so whose it is is unknown, and nothing was stored, read or linked there; {WHAT_TO_DO}"
        ))
    })?;
    let owner = meta.get_uid();
    if may_use(owner, me) {
        return Ok(());
    }
    let whose = if owner == 0 {
        "root, whose session keyring every process started from root's shell shares, of whatever user".to_owned()
    } else {
        who(owner)
    };
    Err(VaultError::KeyringForeignBus(format!(
        "the session keyring this process inherited is owned by {whose}, not by this user ({}): a keyring slot's key stored there, and the persistent keyring of this user linked there to read one, would be readable by other users' processes, so nothing was stored, read or linked; {WHAT_TO_DO}",
        who(me)
    )))
}

#[cfg(test)]
mod tests {
    use super::may_use;

    #[test]
    fn session_keyring_of_another_uid_is_refused() {
        assert!(may_use(1000, 1000));
        assert!(!may_use(0, 1000));
        assert!(may_use(0, 0));
        assert!(!may_use(1029, 1030));
        assert!(!may_use(1029, 0));
    }
}
