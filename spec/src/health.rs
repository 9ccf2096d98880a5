//! How a host's state follows its health-check results (relayd's hce, reference §4.2):
//! the one definition the runtime's checker and the compiler's explanations share.
//!
//! * A host starts `Unknown` (and goes back to it when disabled).
//! * Up is immediate. A down result with retries left keeps the previous state and uses
//!   one retry; otherwise the state becomes the result and the retries are refilled.
//!   So `retry N` tolerates N more consecutive failures after a host was up, while the
//!   first failure from `Unknown` goes straight to `Down` (the count starts at 0).
//! * Availability is the share of up results among results that were not `Unknown`.

use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum HostState {
    Unknown,
    Up,
    Down,
}

impl HostState {
    /// The word relayctl and the log lines use.
    pub fn word(self) -> &'static str {
        match self {
            HostState::Unknown => "unknown",
            HostState::Up => "up",
            HostState::Down => "down",
        }
    }
}

/// A host's health bookkeeping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Health {
    pub state: HostState,
    /// Failures still tolerated before going down (relayd's `retry_cnt`).
    pub retry_left: u32,
    /// Checks with a result, and how many of them were up.
    pub checks: u64,
    pub ups: u64,
}

impl Default for Health {
    fn default() -> Self {
        Health {
            state: HostState::Unknown,
            retry_left: 0,
            checks: 0,
            ups: 0,
        }
    }
}

impl Health {
    /// Applies one check result (`up`); `retry` is the host's configured `retry`.
    /// Returns the previous state.
    pub fn record(&mut self, up: bool, retry: u32) -> HostState {
        let old = self.state;
        self.checks += 1;
        if up {
            self.ups += 1;
        }
        if !up && self.retry_left > 0 {
            self.retry_left -= 1;
        } else {
            self.retry_left = retry;
            self.state = if up { HostState::Up } else { HostState::Down };
        }
        old
    }

    /// `availability P%` of the log lines and relayctl (`%.2f%%`).
    pub fn availability(&self) -> f64 {
        if self.checks == 0 {
            0.0
        } else {
            self.ups as f64 * 100.0 / self.checks as f64
        }
    }
}

/// Whether a table with skip count `skip` is checked on tick `tick` (0-based). relayd
/// sets `skip_cnt = interval / global interval - 1` and, by its arithmetic (unchanged
/// since 2007), checks such a table every `skip + 2` ticks, starting on the first.
pub fn checked_on_tick(skip: u32, tick: u64) -> bool {
    if skip == 0 {
        return true;
    }
    tick.is_multiple_of(u64::from(skip) + 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failure_from_unknown_is_down_at_once() {
        let mut h = Health::default();
        assert_eq!(h.record(false, 3), HostState::Unknown);
        assert_eq!(h.state, HostState::Down);
    }

    #[test]
    fn retry_tolerates_failures_after_up() {
        let mut h = Health::default();
        h.record(true, 2);
        assert_eq!(h.state, HostState::Up);
        h.record(false, 2);
        h.record(false, 2);
        assert_eq!(h.state, HostState::Up, "two failures tolerated");
        h.record(false, 2);
        assert_eq!(h.state, HostState::Down);
        h.record(true, 2);
        assert_eq!(h.state, HostState::Up, "up is immediate");
        assert!((h.availability() - 40.0).abs() < 1e-9);
    }

    #[test]
    fn table_interval_runs_every_skip_plus_two_ticks() {
        let ticks: Vec<u64> = (0..10).filter(|t| checked_on_tick(1, *t)).collect();
        assert_eq!(ticks, vec![0, 3, 6, 9]);
        assert!((0..5).all(|t| checked_on_tick(0, t)));
    }
}
