//! relayd releases, the unit in which relayd.conf's meaning changed.
//!
//! A configuration is judged by the release it was written for (DESIGN, "Eras"). Each
//! language feature that appeared or disappeared carries the release range in which
//! relayd accepted it; the compiler intersects those ranges to infer a file's release.
//! Releases are OpenBSD versions; `CURRENT` stands for the newest relayd (parse.y 1.270).

use serde::Serialize;
use std::fmt;

/// An OpenBSD release, ordered by time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Release {
    pub major: u8,
    pub minor: u8,
}

impl Release {
    pub const fn new(major: u8, minor: u8) -> Self {
        Release { major, minor }
    }

    /// hoststated, the first relayd (`service`, tables carrying their own check).
    pub const H_FIRST: Release = Release::new(4, 1);
    /// relayd with `redirect`, protocol "nodes" (`header append … to …`).
    pub const L_FIRST: Release = Release::new(4, 3);
    /// 5.5 added `snmp` and `ssl ecdh curve`, and dropped `send trap`.
    pub const L_LAST: Release = Release::new(5, 5);
    /// 5.6 replaced protocol nodes by the pf-style filter grammar.
    pub const F_FIRST: Release = Release::new(5, 6);
    /// 5.7 renamed `ssl` to `tls` (`ssl` kept with a warning).
    pub const TLS_KEYWORD: Release = Release::new(5, 7);
    /// 6.2 (2017-05) added `session tickets` and dropped `session cache`.
    pub const TICKETS: Release = Release::new(6, 2);
    /// 6.5 (2019-03): `log state changes`, `http` options, `ecdhe`; backlog limit 512.
    pub const LOG_STATE: Release = Release::new(6, 5);
    /// 6.6 (2019-05/09): `keypair`, `binary` checks; `log updates|all` removed.
    pub const KEYPAIR: Release = Release::new(6, 6);
    /// 7.6 (2024): `agentx`, `client ca`, `path strip`, `pflog`; `ssl` and `snmp` removed.
    pub const C_FIRST: Release = Release::new(7, 6);
    /// The newest relayd: `log level`, `pattern`, `proxy-protocol`, `keypair … ocsp`.
    pub const CURRENT: Release = Release::new(7, 9);

    /// Every release a file can be judged by, oldest first.
    pub const ALL: [Release; 10] = [
        Release::H_FIRST,
        Release::L_FIRST,
        Release::L_LAST,
        Release::F_FIRST,
        Release::TLS_KEYWORD,
        Release::TICKETS,
        Release::LOG_STATE,
        Release::KEYPAIR,
        Release::C_FIRST,
        Release::CURRENT,
    ];

    /// The grammar family this release belongs to, as the reference names them.
    pub fn family(self) -> Family {
        if self < Release::L_FIRST {
            Family::Hoststated
        } else if self < Release::F_FIRST {
            Family::Legacy
        } else if self < Release::C_FIRST {
            Family::Filter
        } else if self < Release::CURRENT {
            Family::Current
        } else {
            Family::Newest
        }
    }

    /// Parses `--era` values: a release (`5.5`) or a family name.
    pub fn parse(text: &str) -> Option<Release> {
        let lower = text.to_ascii_lowercase();
        let named = match lower.as_str() {
            "h" | "hoststated" => Some(Release::new(4, 2)),
            "l" | "legacy" => Some(Release::L_LAST),
            "f" | "filter" => Some(Release::new(6, 6)),
            "c" => Some(Release::new(7, 7)),
            "n" | "current" | "newest" => Some(Release::CURRENT),
            _ => None,
        };
        if named.is_some() {
            return named;
        }
        let (major, minor) = lower.split_once('.')?;
        let release = Release::new(major.parse().ok()?, minor.parse().ok()?);
        (Release::H_FIRST..=Release::CURRENT)
            .contains(&release)
            .then_some(release)
    }

    /// The largest `backlog` the tcp options accept (RELAY_MAX_BACKLOG).
    pub fn max_backlog(self) -> i64 {
        if self < Release::LOG_STATE {
            1024
        } else {
            512
        }
    }

    /// Whether tcp/tls options are refused outside tcp and http protocols.
    pub fn tcp_options_need_tcp_protocol(self) -> bool {
        self >= Release::C_FIRST
    }

    /// Whether http options exist and are refused outside http protocols.
    pub fn has_http_options(self) -> bool {
        self >= Release::LOG_STATE
    }

    /// The default number of relay processes.
    pub fn default_prefork(self) -> i64 {
        if self <= Release::new(5, 4) {
            5
        } else {
            3
        }
    }

    /// Whether port 65535 itself was refused (early parsers used `>= USHRT_MAX`).
    pub fn rejects_port_65535(self) -> bool {
        self <= Release::F_FIRST
    }
}

impl fmt::Display for Release {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if *self == Release::CURRENT {
            write!(f, "current")
        } else {
            write!(f, "{}.{}", self.major, self.minor)
        }
    }
}

/// The grammar families of the reference (section 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Family {
    Hoststated,
    Legacy,
    Filter,
    Current,
    Newest,
}

/// A half-open range of releases in which relayd accepted a form.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Span {
    /// The first release that accepted it.
    pub since: Release,
    /// The first release that no longer accepted it, if any.
    pub until: Option<Release>,
}

impl Span {
    pub const fn since(since: Release) -> Self {
        Span { since, until: None }
    }
    pub const fn between(since: Release, until: Release) -> Self {
        Span {
            since,
            until: Some(until),
        }
    }
    pub fn contains(self, release: Release) -> bool {
        release >= self.since && self.until.is_none_or(|u| release < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_names_and_numbers() {
        assert_eq!(Release::parse("5.5"), Some(Release::L_LAST));
        assert_eq!(Release::parse("current"), Some(Release::CURRENT));
        assert_eq!(Release::parse("legacy"), Some(Release::L_LAST));
        assert_eq!(Release::parse("3.9"), None);
        assert_eq!(Release::parse("x"), None);
    }

    #[test]
    fn limits_follow_the_release() {
        assert_eq!(Release::L_LAST.max_backlog(), 1024);
        assert_eq!(Release::CURRENT.max_backlog(), 512);
        assert!(Span::between(Release::L_FIRST, Release::F_FIRST).contains(Release::L_LAST));
        assert!(!Span::between(Release::L_FIRST, Release::F_FIRST).contains(Release::F_FIRST));
    }
}
