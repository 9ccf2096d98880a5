//! The control socket and what `relayctl` needs of it (relayd's control.c and pfe's
//! bookkeeping, reference §4.9).
//!
//! * [`server`] binds the Unix socket (mode 0660, a stale file replaced, ours removed at
//!   exit) and answers one request per connection on the main thread's runtime.
//! * [`proto`] is the wire format: versioned JSON lines carrying data, never text.
//! * [`board`] is where the health loop publishes host and table states and takes
//!   `host|table enable|disable` and `poll`, applied between checks.
//! * [`registry`] is each worker's own list of live sessions and relay statistics,
//!   asked for over a channel, so sessions never take a lock to be counted.
//! * [`parse`] and [`format`] are relayctl's parser and output, used by the `relayctl`
//!   binary.

pub mod board;
pub mod format;
pub mod parse;
pub mod proto;
pub mod registry;
pub mod server;

use std::path::{Path, PathBuf};

/// Where `relayd-run` and `relayctl` meet unless told otherwise: relayd's
/// `/var/run/relayd.sock`, spelled as Linux spells `/var/run`.
pub const DEFAULT_SOCKET: &str = "/run/relayd.sock";

/// relayd's default, which a plan holds when the configuration has no `socket` line.
const RELAYD_SOCKET: &str = "/var/run/relayd.sock";

/// The control socket to bind: `-s`, else the configuration's `socket`, else
/// [`DEFAULT_SOCKET`]. The flag says whether the path was asked for (then failing to
/// bind it stops the start) or is only the default (then a warning is enough, so that
/// several unprivileged instances can run side by side).
pub fn socket_path(arg: Option<&Path>, configured: &str) -> (PathBuf, bool) {
    match arg {
        Some(p) => (p.to_path_buf(), true),
        None if !configured.is_empty() && configured != RELAYD_SOCKET => {
            (PathBuf::from(configured), true)
        }
        None => (PathBuf::from(DEFAULT_SOCKET), false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_socket_asked_for_wins_and_relayds_default_moves_to_run() {
        let arg = Path::new("/tmp/x.sock");
        assert_eq!(socket_path(Some(arg), "/etc/s"), (arg.to_path_buf(), true));
        assert_eq!(
            socket_path(None, "/var/run/relayd.sock"),
            (PathBuf::from("/run/relayd.sock"), false)
        );
        assert_eq!(
            socket_path(None, "/var/run/other.sock"),
            (PathBuf::from("/var/run/other.sock"), true)
        );
    }
}
