//! The control socket's messages: one JSON object per line, both ways.
//!
//! A client writes one [`Request`] line; the server answers with one [`Response`] line,
//! or, for `monitor`, with one line per event until either side closes. Every message
//! carries the protocol version `v`; a server answers a request of another version with
//! [`Reply::Failed`] naming both versions, so an old `relayctl` against a new
//! `relayd-run` fails with a sentence instead of misreading fields. The answers hold data
//! (ids, names, states, counters), never relayctl's text: `relayctl` formats them (and
//! `relayctl --json` prints them), so the two outputs cannot disagree.

use serde::{Deserialize, Serialize};

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// The longest line either side accepts (requests are small; a summary of thousands of
/// hosts fits easily).
pub const MAX_LINE: usize = 16 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    pub command: Command,
}

/// What `relayctl` asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// Redirects, relays, routers, their tables and hosts, relay statistics: every
    /// `show` but `show sessions` is a view of this.
    Summary,
    Sessions,
    Host {
        enable: bool,
        target: Target,
    },
    Table {
        enable: bool,
        target: Target,
    },
    Redirect {
        enable: bool,
        target: Target,
    },
    Poll,
    Log {
        verbose: bool,
    },
    Monitor,
    /// `reload` (the running plan's file) or `reload PATH` / `load PATH`.
    Reload {
        path: Option<String>,
    },
    Stop,
}

/// An object by relayd id or by name, as relayctl's parser decides: a word that is a
/// number is an id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    Id(u32),
    Name(String),
}

impl Target {
    /// relayctl's `strtonum(word, 0, UINT_MAX)`: a decimal number is an id, anything
    /// else a name.
    pub fn parse(word: &str) -> Target {
        if !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(id) = word.parse::<u32>() {
                return Target::Id(id);
            }
        }
        Target::Name(word.to_string())
    }

    /// The index of the object it names among `names` (the plan's hosts, tables or
    /// redirects in order): ids count from 1, as relayd numbers them.
    pub fn locate<'a>(&self, names: impl ExactSizeIterator<Item = &'a str>) -> Option<usize> {
        match self {
            Target::Id(id) => id
                .checked_sub(1)
                .map(|i| i as usize)
                .filter(|i| *i < names.len()),
            Target::Name(n) => names.into_iter().position(|m| m == n),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    pub reply: Reply,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    Summary(Summary),
    Sessions {
        sessions: Vec<Session>,
    },
    /// relayctl's `command succeeded`.
    Succeeded,
    /// relayctl's `command failed`, with the reason when there is more to say than
    /// relayd says.
    Failed {
        reason: Option<String>,
    },
    Event(Event),
}

/// Everything `show summary|hosts|relays|redirects|routers` print.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// relayd's redirects, by id (index + 1).
    pub redirects: Vec<RedirectRow>,
    /// relayd's relays: one per `listen on` of a relay block (relayd copies a relay for
    /// each further listener, with its own id and a name `NAME<id>:<port>`).
    pub relays: Vec<RelayRow>,
    /// relayd's routers, by id (index + 1).
    pub routers: Vec<RouterRow>,
    /// The tables the redirects, relays and routers use, by id.
    pub tables: Vec<TableRow>,
    /// The hosts of those tables, by id.
    pub hosts: Vec<HostRow>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RedirectRow {
    pub id: u32,
    pub name: String,
    /// `active`, `active (using backup table)`, `down` or `disabled`.
    pub status: String,
    /// The main table, then the backup (ids).
    pub tables: Vec<u32>,
    /// Connections redirected (relayd counts its pf table's matches).
    #[serde(default)]
    pub stats: Stats,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RouterRow {
    pub id: u32,
    pub name: String,
    /// `active` or `disabled`.
    pub status: String,
    /// The gateway table (id).
    pub tables: Vec<u32>,
    /// relayd's `rtable` (0: the default table, Linux's `main`).
    #[serde(default)]
    pub rtable: u32,
    #[serde(default)]
    pub rtlabel: Option<String>,
    /// `ADDR/LEN`, as relayctl prints them.
    #[serde(default)]
    pub routes: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RelayRow {
    pub id: u32,
    pub name: String,
    /// `active` or `disabled`.
    pub status: String,
    pub stats: Stats,
    /// The tables it forwards to, in order (ids; a table may serve several relays).
    pub tables: Vec<u32>,
}

/// relayd's relay statistics, summed over the relay processes (worker threads).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    /// Sessions accepted since start.
    pub total: u64,
    /// Sessions in the last complete statistics interval, hour and day so far.
    pub last: u64,
    pub last_hour: u64,
    pub last_day: u64,
    /// relayd's running averages (`(new + old) / 2` at each interval).
    pub avg: u64,
    pub avg_hour: u64,
    pub avg_day: u64,
    /// The statistics interval, seconds.
    pub interval_s: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableRow {
    pub id: u32,
    /// The instance name, `NAME:PORT`.
    pub name: String,
    /// `active (N hosts)`, `empty` or `disabled`.
    pub status: String,
    pub disabled: bool,
    /// Hosts up (relayd's `table->up`).
    pub up: u32,
    /// Whether the table has a health check.
    pub checked: bool,
    pub hosts: Vec<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HostRow {
    pub id: u32,
    pub name: String,
    pub table: u32,
    pub parent: Option<u32>,
    /// `up`, `down` or `unknown`.
    pub state: String,
    pub disabled: bool,
    /// relayctl's status column: `disabled`, else the state.
    pub status: String,
    /// Checks counted and how many were up.
    pub checks: u64,
    pub up_checks: u64,
    /// Percent of up checks; `None` before the first check.
    pub availability: Option<f64>,
    /// Failures still tolerated before the host goes down.
    pub retries: u32,
    /// The last check's result text (relayd's host error, §4.10 of the reference: also
    /// `tcp connect ok` and the like); relayctl prints it only while the host is down.
    pub error: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    /// The worker thread (relayd's relay process instance, from 0).
    pub proc: u32,
    pub id: u32,
    pub client: String,
    pub client_port: u16,
    /// The backend; `None` before one was chosen.
    pub backend: Option<String>,
    pub backend_port: u16,
    pub done: bool,
    pub age_s: u64,
    pub idle_s: u64,
    /// relayd's relay id (see [`Summary::relays`]).
    pub relay: u32,
    pub pid: u32,
}

/// A `monitor` event: what relayd's pfe forwards to its notify clients.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub what: EventKind,
    /// The host, table or redirect id.
    pub id: u32,
    /// `host_status`: the host's state after the check.
    pub state: Option<String>,
    /// `ctl_*`: the name the command gave, if it named the object.
    pub name: Option<String>,
    pub pid: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    HostStatus,
    CtlHostEnable,
    CtlHostDisable,
    CtlTableEnable,
    CtlTableDisable,
    CtlRdrEnable,
    CtlRdrDisable,
}

impl EventKind {
    /// relayctl's name for the imsg.
    pub fn name(self) -> &'static str {
        match self {
            EventKind::HostStatus => "host_status",
            EventKind::CtlHostEnable => "ctl_host_enable",
            EventKind::CtlHostDisable => "ctl_host_disable",
            EventKind::CtlTableEnable => "ctl_table_enable",
            EventKind::CtlTableDisable => "ctl_table_disable",
            EventKind::CtlRdrEnable => "ctl_rdr_enable",
            EventKind::CtlRdrDisable => "ctl_rdr_disable",
        }
    }

    /// The imsg type number and length relayd's relayctl prints (relayd.h's
    /// `enum imsg_type`; the imsg header is 16 bytes, `struct ctl_status` 32 and
    /// `struct ctl_id` 68 on LP64).
    pub fn imsg(self) -> (u32, u32) {
        match self {
            EventKind::HostStatus => (37, 16 + 32),
            EventKind::CtlRdrEnable => (17, 16 + 68),
            EventKind::CtlRdrDisable => (18, 16 + 68),
            EventKind::CtlTableEnable => (19, 16 + 68),
            EventKind::CtlTableDisable => (20, 16 + 68),
            EventKind::CtlHostEnable => (21, 16 + 68),
            EventKind::CtlHostDisable => (22, 16 + 68),
        }
    }
}

/// One message as a line.
pub fn to_line<T: Serialize>(msg: &T) -> Result<Vec<u8>, serde_json::Error> {
    let mut line = serde_json::to_vec(msg)?;
    line.push(b'\n');
    Ok(line)
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "tests"
)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for command in [
            Command::Summary,
            Command::Host {
                enable: false,
                target: Target::Name("10.0.0.1".into()),
            },
            Command::Table {
                enable: true,
                target: Target::Id(3),
            },
            Command::Reload { path: None },
            Command::Log { verbose: true },
        ] {
            let r = Request {
                v: VERSION,
                command,
            };
            let line = to_line(&r).unwrap();
            assert_eq!(line.last(), Some(&b'\n'));
            assert!(!line[..line.len() - 1].contains(&b'\n'));
            let back: Request = serde_json::from_slice(&line).unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn numbers_are_ids_names_are_names() {
        assert_eq!(Target::parse("12"), Target::Id(12));
        assert_eq!(Target::parse("web:80"), Target::Name("web:80".into()));
        assert_eq!(Target::parse("10.0.0.1"), Target::Name("10.0.0.1".into()));
        assert_eq!(
            Target::parse("99999999999"),
            Target::Name("99999999999".into())
        );
        assert_eq!(Target::parse("-1"), Target::Name("-1".into()));
    }
}
