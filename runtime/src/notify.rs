//! systemd's readiness protocol (sd_notify): one datagram per state change to the Unix
//! socket named by `NOTIFY_SOCKET` (a path, or an abstract name written with a leading
//! `@`), for a `Type=notify` unit.
//!
//! The socket is connected once, by [`init`] at start while the process may still reach
//! any path, so messages still arrive after privileges are dropped. Without
//! `NOTIFY_SOCKET` every call does nothing. Sending never blocks the caller for long
//! and never fails it: a manager that went away is not the relay's problem.
//!
//! [`ready`] once every listener accepts (and after a reload), [`reloading`] when a reload
//! starts, [`stopping`] when shutdown begins.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::UnixDatagram;
use std::sync::OnceLock;

static SOCKET: OnceLock<Option<UnixDatagram>> = OnceLock::new();

/// Connects to `NOTIFY_SOCKET`, if set; later calls do nothing. Call before dropping
/// privileges.
pub fn init() {
    SOCKET.get_or_init(connect);
}

fn connect() -> Option<UnixDatagram> {
    let target = std::env::var_os("NOTIFY_SOCKET")?;
    let bytes = target.as_bytes();
    let sock = UnixDatagram::unbound().ok()?;
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?;
        sock.connect_addr(&addr).ok()?;
    } else if bytes.starts_with(b"/") {
        sock.connect(&target).ok()?;
    } else {
        // vsock addresses (`vsock:CID:PORT`) are for virtual machines' managers.
        return None;
    }
    // A full queue at the manager must not stall a worker or the main loop.
    let _ = sock.set_write_timeout(Some(std::time::Duration::from_millis(500)));
    Some(sock)
}

/// Whether readiness is reported at all (`NOTIFY_SOCKET` was set and reachable).
pub fn enabled() -> bool {
    SOCKET.get_or_init(connect).is_some()
}

fn send(state: &str) {
    if let Some(sock) = SOCKET.get_or_init(connect) {
        let _ = sock.send(state.as_bytes());
    }
}

/// `READY=1` with `MAINPID=`: every listener accepts (at start, and again after a reload).
pub fn ready() {
    send(&format!("READY=1\nMAINPID={}\n", std::process::id()));
}

/// `RELOADING=1` with the monotonic time, as `Type=notify-reload` requires; [`ready`]
/// follows when the new plan runs (or the old one goes on).
pub fn reloading() {
    let now = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    let usec = (now.tv_sec as u64)
        .saturating_mul(1_000_000)
        .saturating_add(now.tv_nsec as u64 / 1_000);
    send(&format!("RELOADING=1\nMONOTONIC_USEC={usec}\n"));
}

/// `STOPPING=1`: shutdown has begun.
pub fn stopping() {
    send("STOPPING=1\n");
}

/// `STATUS=`: one line for `systemctl status`.
pub fn status(text: &str) {
    let line: String = text.chars().filter(|c| *c != '\n').collect();
    send(&format!("STATUS={line}\n"));
}
