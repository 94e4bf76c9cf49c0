//! Messages to the service manager, systemd's `sd_notify` protocol (sd_notify(3)): readiness
//! once the socket answers, the reload protocol around each reload an admin or SIGHUP asks
//! for (`RELOADING=1` with `MONOTONIC_USEC=`, then `READY=1` with the outcome in `STATUS=`),
//! and the stop. Silent without `$NOTIFY_SOCKET`, and a message that cannot be sent is
//! dropped: nothing the daemon does waits on the service manager.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

/// Send `state` (newline-separated `KEY=VALUE` lines) to `$NOTIFY_SOCKET`, a path or an
/// abstract name (`@…`); nothing without it.
pub(crate) fn send(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let _ = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), PathBuf::from(path))
    };
}

/// A reload begins: `RELOADING=1` and the time it began on `CLOCK_MONOTONIC`, in
/// microseconds, as systemd 253's `Type=notify-reload` asks (older systemd takes
/// `RELOADING=1` alone: the unit shows `reloading` until [`reloaded`]).
pub(crate) fn reloading() {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = (now.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(now.tv_nsec as u64 / 1000);
    send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}"));
}

/// A reload [`reloading`] announced is over: `READY=1`, and `STATUS=` saying what it did, a
/// refusal too (the vault loaded before stays in service). Until the twenty-ninth pass no
/// reload was said to systemd, and the unit's `ExecReload=/bin/kill -HUP` made `systemctl
/// reload` succeed whatever the daemon did (found by the systemd attacker).
pub(crate) fn reloaded(outcome: Result<Option<u64>, crate::protocol::ErrorCode>) {
    let status = match outcome {
        Ok(Some(generation)) => format!("listening; reloaded the vault (generation {generation})"),
        Ok(None) => "listening".to_owned(),
        Err(code) => format!(
            "listening; the last reload was refused ({}): the vault loaded before stays in service, the daemon's log says why",
            code.as_str()
        ),
    };
    send(&format!("READY=1\nSTATUS={status}"));
}
