//! Limits that protect a worker from slow and numerous clients, beyond relayd's own.
//!
//! relayd's only clock on a session is its idle timeout (`session timeout`, 600 s by
//! default), and every byte re-arms it: a client that sends one byte of a request head
//! every few seconds holds its session for ever. Three limits close that:
//!
//! * **A request-head deadline** (`--head-timeout`, [`DEFAULT_HEAD_TIMEOUT_S`] by
//!   default, 0 turns it off): an HTTP relay's client must deliver a whole request head
//!   within it, counted from the accept for the first request (so a TLS handshake counts
//!   too) and from the head's first byte for the next ones on a keep-alive connection
//!   (waiting between requests is what the session timeout is for). Past it the session
//!   ends as `relay_abort_http(con, 408, "Request Timeout")` would. It only ever
//!   shortens a session the idle timeout would have let run, so configurations keep
//!   their meaning for every client that sends its heads at any sensible pace.
//! * **A per-worker session cap** (`--max-sessions`): relayd closes connections beyond
//!   its `RELAY_MAX_SESSIONS` (1024 per relay process) the moment it accepts them. Here a
//!   worker at its cap stops accepting until a session ends, so newcomers wait in the
//!   kernel's listen queue instead of being reset. The default is what the open-file
//!   limit allows ([`default_max_sessions`]), which relayd-run raises to its hard limit
//!   at start ([`raise_nofile`]).
//! * **Deferring on descriptor exhaustion**, as relayd's `relay_accept` does: when
//!   accept fails with EMFILE or ENFILE the worker logs `relay_accept: deferring
//!   connections` and stops accepting for a second, or until one of its sessions ends.

use std::time::Duration;

/// The request-head deadline in seconds unless `--head-timeout` says otherwise: as long
/// as a slow mobile client could need, short enough that a slowloris connection is gone
/// within half a minute.
pub const DEFAULT_HEAD_TIMEOUT_S: u32 = 30;

/// Descriptors kept out of the session budget: listeners, the control socket, the
/// signer's and helpers' sockets, health checks, logs, the runtime's own.
const RESERVED_FDS: u64 = 64;

/// A session's descriptors: its client and its backend connection. (Spliced sessions
/// borrow pipes from the worker's pool, and an accept that finds the table full is
/// deferred, not lost.)
const FDS_PER_SESSION: u64 = 2;

/// What a worker enforces; the same for every plan it serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The whole-request-head deadline of HTTP relays; `None` is off.
    pub head_timeout: Option<Duration>,
    /// Sessions one worker serves at once before it stops accepting.
    pub max_sessions: u32,
}

/// Raises the soft open-file limit to the hard one (as a server started by a service
/// manager would be configured to) and returns the soft limit in force.
pub fn raise_nofile() -> u64 {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let lim = getrlimit(Resource::Nofile);
    let soft = lim.current.unwrap_or(u64::MAX);
    if lim.current.is_some() && lim.current != lim.maximum {
        let raised = Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return lim.maximum.unwrap_or(u64::MAX);
        }
    }
    soft
}

/// The per-worker cap the open-file limit `nofile` affords `workers` workers: every
/// session's descriptors fit, with a reserve, so the cap pauses accepting before the
/// kernel would refuse descriptors. At least one session per worker.
pub fn default_max_sessions(nofile: u64, workers: usize) -> u32 {
    let workers = workers.max(1) as u64;
    let per = nofile.saturating_sub(RESERVED_FDS) / FDS_PER_SESSION / workers;
    u32::try_from(per.max(1)).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_the_reserve_and_splits_between_workers() {
        assert_eq!(default_max_sessions(20_000, 1), 9_968);
        assert_eq!(default_max_sessions(20_000, 4), 2_492);
        assert_eq!(default_max_sessions(1_024, 1), 480);
        // A tiny limit still lets each worker serve one session.
        assert_eq!(default_max_sessions(10, 2), 1);
        assert_eq!(default_max_sessions(u64::MAX, 1), u32::MAX);
    }

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        use rustix::process::{getrlimit, Resource};
        let soft = raise_nofile();
        let lim = getrlimit(Resource::Nofile);
        assert_eq!(lim.current, lim.maximum);
        assert_eq!(soft, lim.current.unwrap_or(u64::MAX));
    }
}
