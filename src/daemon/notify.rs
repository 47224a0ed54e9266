//! Talking to systemd (`Type=notify`): readiness, reloads, stopping, a status line and the
//! watchdog. Without `NOTIFY_SOCKET` every call does nothing, so the daemon runs the same
//! outside systemd.

use sd_notify::NotifyState;

/// Sends states, logging (at debug) when the socket refuses them: systemd being unreachable
/// never stops the daemon.
///
/// The datagram is sent non-blocking (the sd-notify crate's own `notify` blocks when the
/// receiver's queue is full): this runs on the control loop, which must never stall — it is
/// what notices stuck actors and answers signals. A status update dropped because systemd is
/// momentarily behind is harmless; the next one follows in seconds.
fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = send_nonblocking(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

fn send_nonblocking(states: &[NotifyState<'_>]) -> std::io::Result<()> {
    use std::fmt::Write as _;
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(());
    };
    let mut msg = String::new();
    for s in states {
        let _ = writeln!(msg, "{s}");
    }
    let sock = UnixDatagram::unbound()?;
    sock.set_nonblocking(true)?;
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(&path)?,
    };
    sock.send_to_addr(msg.as_bytes(), &addr).map(|_| ())
}

/// `READY=1` with a status line.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// `RELOADING=1` with the monotonic time systemd asks for.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// `STOPPING=1`.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining the pipeline"),
    ]);
}

/// `STATUS=...`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// `WATCHDOG=1`.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// The watchdog interval systemd asked for (`WatchdogSec=`), if any.
pub fn watchdog_interval() -> Option<std::time::Duration> {
    sd_notify::watchdog_enabled()
}
