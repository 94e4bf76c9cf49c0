//! Whose session bus a Secret Service keyring slot's key would go to, asked before any
//! keyring store or read (twenty-sixth pass).
//!
//! The Secret Service store connects to whatever bus `DBUS_SESSION_BUS_ADDRESS` names, and
//! that variable survives `su` without `-` and `sudo -E`: another user running a bus that
//! admits every uid, with their own gnome-keyring on it, was handed the slot's key by
//! `key add --keyring` and could open any copy of the vault with it. So, before the store is
//! opened, the bus is connected to here and the kernel is asked who runs it (`SO_PEERCRED`,
//! as the client asks of the daemon's socket, docs/protocol.md "Who the client talks to"):
//! it must be this uid or root. On that connection the bus is then asked who owns
//! `org.freedesktop.secrets` (`GetConnectionUnixUser`): the same rule. Nothing of a key has
//! been sent when either check refuses: the peer check sends no byte at all, and the name
//! owner check only the bus's own handshake.
//!
//! The store then connects again by itself, to the same address: a socket path another user
//! could replace between the two (a directory of theirs on the way, a link of theirs) would
//! let them swap their bus in after the check, so such a path is refused too
//! ([`replaceable`]). An abstract socket name cannot be taken over while its bus holds it.
//!
//! The address is parsed by zbus itself (`zbus::Address::session`), the parser the store
//! uses, so what is checked is what the store connects to: `unix:path=` and `unix:abstract=`
//! (percent-decoded); an unset variable is refused before this (src/vault/keyring.rs), so
//! zbus's fallback to `$XDG_RUNTIME_DIR/bus` is never used unchecked. Any other
//! transport (`tcp:`, `unixexec:`, …) has no owner the kernel can name, and is refused.

use std::os::unix::net::UnixStream;

use zbus::address::transport::{Transport, UnixSocket};

use super::VaultError;

/// The well-known name of the Secret Service.
const SECRETS: &str = "org.freedesktop.secrets";

/// `uid N`, or `root`.
fn who(uid: u32) -> String {
    if uid == 0 {
        "root".to_owned()
    } else {
        format!("uid {uid}")
    }
}

/// What to do about a bus that is not this user's: said by every refusal.
fn what_to_do(me: u32) -> String {
    format!(
        "DBUS_SESSION_BUS_ADDRESS probably comes from another user's session (`su` without `-` and `sudo -E` keep it): log in as this user or use `su -` (a fresh environment), or set DBUS_SESSION_BUS_ADDRESS to this user's own bus (unix:path=/run/user/{me}/bus, or $XDG_RUNTIME_DIR/bus); without one, use a passphrase or identity file"
    )
}

fn refused(msg: String) -> VaultError {
    VaultError::KeyringForeignBus(msg)
}

/// Check that the session bus the Secret Service store would use is run by this uid or root,
/// and that the Secret Service on it (if one owns `org.freedesktop.secrets` yet) is too.
/// `Err(KeyringForeignBus)` says whose it is and what to do; a bus that cannot be reached
/// is `KeyringUnavailable`, as the store would say.
pub(crate) fn check() -> Result<(), VaultError> {
    let me = rustix::process::geteuid().as_raw();
    let address = zbus::Address::session().map_err(|e| {
        VaultError::KeyringUnavailable(format!(
            "secret-service store: DBUS_SESSION_BUS_ADDRESS is not a D-Bus address scopevault can use ({}); {}",
            crate::text::escape_for_terminal(&e.to_string()),
            what_to_do(me)
        ))
    })?;
    // zbus's Display percent-encodes every byte outside a safe set: no control reaches a message.
    let shown = address.to_string();
    let stream = connect(&address, &shown, me)?;
    let peer = crate::sys::peer_credentials(&stream).map_err(|e| {
        VaultError::KeyringUnavailable(format!(
            "secret-service store: cannot ask the kernel who runs the session bus at {shown}: {e}"
        ))
    })?;
    if peer.uid != me && peer.uid != 0 {
        return Err(refused(format!(
            "the session bus at {shown} (DBUS_SESSION_BUS_ADDRESS) is run by {}, not by this user ({}) or root: a keyring slot's key stored or read there would be another user's to read, so nothing was sent to it; {}",
            who(peer.uid),
            who(me),
            what_to_do(me)
        )));
    }
    // The store connects again, by the same path, after this check: nobody but this user or
    // root may be able to put another socket there in between.
    if let Transport::Unix(u) = address.transport() {
        if let UnixSocket::File(path) = u.path() {
            if let Some(why) = replaceable(path, me) {
                return Err(refused(format!(
                    "the session bus socket {shown} (DBUS_SESSION_BUS_ADDRESS) could be replaced by another user ({why}), so the bus the keyring store would connect to may not be the one checked: nothing was sent; {}",
                    what_to_do(me)
                )));
            }
        }
    }
    let conn = zbus::blocking::connection::Builder::async_io_unix_stream(stream)
        .build()
        .map_err(|e| {
            VaultError::KeyringUnavailable(format!(
                "secret-service store: cannot talk to the session bus at {shown}: {}",
                crate::text::escape_for_terminal(&e.to_string())
            ))
        })?;
    let owner = zbus::blocking::fdo::DBusProxy::new(&conn)
        .and_then(|p| {
            let name = zbus::names::BusName::try_from(SECRETS).map_err(zbus::Error::from)?;
            Ok(p.get_connection_unix_user(name))
        })
        .map_err(|e| {
            VaultError::KeyringUnavailable(format!(
                "secret-service store: cannot ask the session bus at {shown} who runs the Secret Service: {}",
                crate::text::escape_for_terminal(&e.to_string())
            ))
        })?;
    match owner {
        Ok(uid) if uid == me || uid == 0 => Ok(()),
        Ok(uid) => Err(refused(format!(
            "the Secret Service ({SECRETS}) on the session bus at {shown} is run by {}, not by this user ({}) or root: a keyring slot's key stored or read there would be that user's to read, so nothing was sent to it; stop that service, or {}",
            who(uid),
            who(me),
            what_to_do(me)
        ))),
        // No owner yet: the bus (this user's or root's) starts the service it is configured
        // to start when the store asks for it, as this user or root.
        Err(zbus::fdo::Error::NameHasNoOwner(_)) => Ok(()),
        Err(e) => Err(VaultError::KeyringUnavailable(format!(
            "secret-service store: the session bus at {shown} did not say who runs the Secret Service: {}",
            crate::text::escape_for_terminal(&e.to_string())
        ))),
    }
}

/// Connect to the bus `address` names, if it is a local unix socket (a path or an abstract
/// name); any other transport is refused without connecting.
fn connect(address: &zbus::Address, shown: &str, me: u32) -> Result<UnixStream, VaultError> {
    let unreachable = |e: std::io::Error| {
        VaultError::KeyringUnavailable(format!(
            "secret-service store: cannot connect to the session bus at {shown}: {e}; is a session D-Bus running (DBUS_SESSION_BUS_ADDRESS)?"
        ))
    };
    let not_local = || {
        refused(format!(
            "the session bus address {shown} (DBUS_SESSION_BUS_ADDRESS) is not a local unix socket (unix:path= or unix:abstract=), so the kernel cannot say who runs it, and a keyring slot's key is sent only to a bus run by this user ({}) or root: nothing was sent; {}",
            who(me),
            what_to_do(me)
        ))
    };
    match address.transport() {
        Transport::Unix(u) => match u.path() {
            UnixSocket::File(path) => UnixStream::connect(path).map_err(unreachable),
            UnixSocket::Abstract(name) => {
                use std::os::linux::net::SocketAddrExt;
                use std::os::unix::ffi::OsStrExt;
                let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())
                    .map_err(unreachable)?;
                UnixStream::connect_addr(&addr).map_err(unreachable)
            }
            _ => Err(not_local()),
        },
        _ => Err(not_local()),
    }
}

/// Why another user than `me` or root could put another socket at `path`, if one could. The
/// path is walked as the kernel resolves it, one component at a time, every symbolic link
/// followed (at most 40): every directory passed through must belong to `me` or root and be
/// writable by no other user unless it is sticky (`/tmp`: there nobody else may rename or
/// remove what `me` or root owns); every link, and the socket itself, must belong to `me` or
/// root. A relative path is refused: it depends on the working directory.
fn replaceable(path: &std::path::Path, me: u32) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    use std::path::{Component, PathBuf};
    if !path.is_absolute() {
        return Some("a relative path".into());
    }
    let ours = |m: &std::fs::Metadata| m.uid() == me || m.uid() == 0;
    let mut todo: Vec<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_owned()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .rev()
        .collect();
    let mut at = PathBuf::from("/");
    let mut links = 0;
    while let Some(name) = todo.pop() {
        let dir = match std::fs::symlink_metadata(&at) {
            Ok(m) => m,
            Err(e) => return Some(format!("{}: {e}", at.display())),
        };
        if !ours(&dir) {
            return Some(format!("{} belongs to uid {}", at.display(), dir.uid()));
        }
        if dir.mode() & 0o022 != 0 && dir.mode() & 0o1000 == 0 {
            return Some(format!(
                "{} is writable by other users (mode {:o})",
                at.display(),
                dir.mode() & 0o7777
            ));
        }
        if name == ".." {
            at.pop();
            continue;
        }
        let next = at.join(&name);
        let m = match std::fs::symlink_metadata(&next) {
            Ok(m) => m,
            Err(e) => return Some(format!("{}: {e}", next.display())),
        };
        if !ours(&m) {
            return Some(format!("{} belongs to uid {}", next.display(), m.uid()));
        }
        if m.file_type().is_symlink() {
            links += 1;
            if links > 40 {
                return Some("more than 40 symbolic links".into());
            }
            let target = match std::fs::read_link(&next) {
                Ok(t) => t,
                Err(e) => return Some(format!("{}: {e}", next.display())),
            };
            if target.is_absolute() {
                at = PathBuf::from("/");
            }
            for c in target.components().rev() {
                match c {
                    Component::Normal(n) => todo.push(n.to_owned()),
                    Component::ParentDir => todo.push("..".into()),
                    _ => {}
                }
            }
        } else {
            at = next;
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::replaceable;
    use std::os::unix::fs::PermissionsExt;

    fn me() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    #[test]
    fn a_socket_path_is_replaceable_through_a_directory_others_may_write_unless_sticky() {
        let d = tempfile::tempdir().unwrap();
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::write(open.join("bus"), b"").unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        let why = replaceable(&open.join("bus"), me()).expect("refused");
        assert!(why.contains("writable by other users"), "{why}");
        // Sticky (as /tmp): nobody else may rename or remove this user's file there.
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert_eq!(replaceable(&open.join("bus"), me()), None);
    }

    #[test]
    fn a_socket_path_is_walked_through_its_links_and_refused_when_relative_or_looping() {
        let d = tempfile::tempdir().unwrap();
        let open = d.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        std::fs::write(open.join("bus"), b"").unwrap();
        // A link in a safe directory to a socket in an unsafe one: the target's directory counts.
        let safe = d.path().join("safe");
        std::fs::create_dir(&safe).unwrap();
        std::os::unix::fs::symlink("../open/bus", safe.join("bus")).unwrap();
        let why = replaceable(&safe.join("bus"), me()).expect("refused");
        assert!(why.contains("open") && why.contains("writable"), "{why}");
        std::os::unix::fs::symlink("loop", safe.join("loop")).unwrap();
        let why = replaceable(&safe.join("loop"), me()).expect("refused");
        assert!(why.contains("symbolic links"), "{why}");
        let why = replaceable(std::path::Path::new("bus"), me()).expect("refused");
        assert!(why.contains("relative"), "{why}");
        std::fs::write(safe.join("real"), b"").unwrap();
        std::os::unix::fs::symlink("real", safe.join("link")).unwrap();
        assert_eq!(replaceable(&safe.join("link"), me()), None);
    }
}
