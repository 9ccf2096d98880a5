//! relayctl's command parser (relayctl's `parser.c`): keyword tables walked word by word,
//! each word matching a keyword by unique prefix (`relayctl sh su`), with relayctl's
//! messages on every failure.
//!
//! The tables are relayctl's, in its order (the order of the `valid commands/args:`
//! lists), plus one extension: `reload` takes an optional plan file, like `load`.

use super::proto::{Command, Target};

/// What a command line asks for (relayctl's `enum actions`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    None,
    Monitor,
    ShowSum,
    ShowHosts,
    ShowRdrs,
    ShowRelays,
    ShowRouters,
    ShowSessions,
    Load,
    Poll,
    Reload,
    Shutdown,
    RdrDisable,
    RdrEnable,
    TableDisable,
    TableEnable,
    HostDisable,
    HostEnable,
    LogVerbose,
    LogBrief,
}

#[derive(Clone, Copy)]
enum Tok {
    /// The end of the words (`<cr>`).
    NoToken,
    Keyword(&'static str, Action, Option<&'static [Tok]>),
    HostId,
    TableId,
    RdrId,
    Path,
}

const T_MAIN: &[Tok] = &[
    Tok::Keyword("monitor", Action::Monitor, None),
    Tok::Keyword("show", Action::None, Some(T_SHOW)),
    Tok::Keyword("load", Action::Load, Some(T_LOAD)),
    Tok::Keyword("poll", Action::Poll, None),
    Tok::Keyword("reload", Action::Reload, Some(T_RELOAD)),
    Tok::Keyword("stop", Action::Shutdown, None),
    Tok::Keyword("redirect", Action::None, Some(T_RDR)),
    Tok::Keyword("table", Action::None, Some(T_TABLE)),
    Tok::Keyword("host", Action::None, Some(T_HOST)),
    Tok::Keyword("log", Action::None, Some(T_LOG)),
];

const T_SHOW: &[Tok] = &[
    Tok::Keyword("summary", Action::ShowSum, None),
    Tok::Keyword("hosts", Action::ShowHosts, None),
    Tok::Keyword("redirects", Action::ShowRdrs, None),
    Tok::Keyword("relays", Action::ShowRelays, None),
    Tok::Keyword("routers", Action::ShowRouters, None),
    Tok::Keyword("sessions", Action::ShowSessions, None),
];

const T_RDR: &[Tok] = &[
    Tok::Keyword("disable", Action::RdrDisable, Some(T_RDR_ID)),
    Tok::Keyword("enable", Action::RdrEnable, Some(T_RDR_ID)),
];

const T_TABLE: &[Tok] = &[
    Tok::Keyword("disable", Action::TableDisable, Some(T_TABLE_ID)),
    Tok::Keyword("enable", Action::TableEnable, Some(T_TABLE_ID)),
];

const T_HOST: &[Tok] = &[
    Tok::Keyword("disable", Action::HostDisable, Some(T_HOST_ID)),
    Tok::Keyword("enable", Action::HostEnable, Some(T_HOST_ID)),
];

const T_RDR_ID: &[Tok] = &[Tok::RdrId];
const T_TABLE_ID: &[Tok] = &[Tok::TableId];
const T_HOST_ID: &[Tok] = &[Tok::HostId];

const T_LOG: &[Tok] = &[
    Tok::Keyword("verbose", Action::LogVerbose, None),
    Tok::Keyword("brief", Action::LogBrief, None),
];

const T_LOAD: &[Tok] = &[Tok::Path];

/// `reload` alone, or `reload PLAN`.
const T_RELOAD: &[Tok] = &[Tok::NoToken, Tok::Path];

/// A parsed command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parsed {
    pub action: Action,
    /// The id or name of `host|table|redirect enable|disable`.
    pub target: Option<Target>,
    /// The file of `load` / `reload`.
    pub path: Option<String>,
}

impl Parsed {
    /// The request for the server; `None` for [`Action::None`] (relayctl's usage).
    pub fn command(&self) -> Option<Command> {
        let target = || self.target.clone().unwrap_or(Target::Id(0));
        Some(match self.action {
            Action::None => return None,
            Action::Monitor => Command::Monitor,
            Action::ShowSum
            | Action::ShowHosts
            | Action::ShowRdrs
            | Action::ShowRelays
            | Action::ShowRouters => Command::Summary,
            Action::ShowSessions => Command::Sessions,
            Action::Load | Action::Reload => Command::Reload {
                path: self.path.clone(),
            },
            Action::Poll => Command::Poll,
            Action::Shutdown => Command::Stop,
            Action::RdrDisable | Action::RdrEnable => Command::Redirect {
                enable: self.action == Action::RdrEnable,
                target: target(),
            },
            Action::TableDisable | Action::TableEnable => Command::Table {
                enable: self.action == Action::TableEnable,
                target: target(),
            },
            Action::HostDisable | Action::HostEnable => Command::Host {
                enable: self.action == Action::HostEnable,
                target: target(),
            },
            Action::LogVerbose | Action::LogBrief => Command::Log {
                verbose: self.action == Action::LogVerbose,
            },
        })
    }
}

/// Parses the words after the options. `Err` holds relayctl's complaint, every line
/// ending in a newline, for stderr (relayctl then exits 1).
pub fn parse(words: &[String]) -> Result<Parsed, String> {
    let mut res = Parsed {
        action: Action::None,
        target: None,
        path: None,
    };
    let mut table = T_MAIN;
    let mut used = 0;
    loop {
        let word = words.get(used).map(String::as_str);
        let tok = match match_token(word, table, &mut res) {
            Ok(t) => t,
            Err(mut msg) => {
                msg.push_str("valid commands/args:\n");
                msg.push_str(&valid_args(table));
                return Err(msg);
            }
        };
        used += 1;
        match tok {
            Tok::Keyword(_, _, Some(next)) => table = next,
            _ => break,
        }
    }
    if let Some(extra) = words.get(used) {
        return Err(format!("superfluous argument: {extra}\n"));
    }
    Ok(res)
}

fn match_token(word: Option<&str>, table: &[Tok], res: &mut Parsed) -> Result<Tok, String> {
    let mut matches = 0;
    let mut found = None;
    for tok in table {
        let hit = match tok {
            Tok::NoToken => word.is_none_or(str::is_empty),
            Tok::Keyword(kw, action, _) => match word {
                Some(w) if kw.starts_with(w) => {
                    if *action != Action::None {
                        res.action = *action;
                    }
                    true
                }
                _ => false,
            },
            Tok::HostId | Tok::TableId | Tok::RdrId => match word {
                Some(w) => {
                    res.target = Some(Target::parse(w));
                    true
                }
                None => false,
            },
            Tok::Path => match word {
                Some(w) if matches == 0 && !w.is_empty() => {
                    res.path = Some(w.to_string());
                    true
                }
                _ => false,
            },
        };
        if hit {
            matches += 1;
            found = Some(*tok);
        }
    }
    match (matches, found) {
        (1, Some(t)) => Ok(t),
        _ => Err(match word {
            None => "missing argument:\n".to_string(),
            Some(w) if matches > 1 => format!("ambiguous argument: {w}\n"),
            Some(w) => format!("unknown argument: {w}\n"),
        }),
    }
}

fn valid_args(table: &[Tok]) -> String {
    let mut out = String::new();
    for tok in table {
        let word = match tok {
            Tok::NoToken => "<cr>",
            Tok::Keyword(kw, _, _) => kw,
            Tok::RdrId => "<redirectid>",
            Tok::TableId => "<tableid>",
            Tok::HostId => "<hostid>",
            Tok::Path => "<path>",
        };
        out.push_str("  ");
        out.push_str(word);
        out.push('\n');
    }
    out
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

    fn p(line: &str) -> Result<Parsed, String> {
        let words: Vec<String> = line.split_whitespace().map(String::from).collect();
        parse(&words)
    }

    #[test]
    fn unique_prefixes_match() {
        assert_eq!(p("sh su").unwrap().action, Action::ShowSum);
        assert_eq!(p("show hosts").unwrap().action, Action::ShowHosts);
        assert_eq!(p("m").unwrap().action, Action::Monitor);
        assert_eq!(p("log v").unwrap().action, Action::LogVerbose);
        assert!(p("lo v")
            .unwrap_err()
            .starts_with("ambiguous argument: lo\n"));
        let h = p("ho dis web1").unwrap();
        assert_eq!(h.action, Action::HostDisable);
        assert_eq!(h.target, Some(Target::Name("web1".into())));
        assert_eq!(p("t e 3").unwrap().target, Some(Target::Id(3)));
    }

    #[test]
    fn relayctl_messages() {
        assert_eq!(
            p("s").unwrap_err(),
            "ambiguous argument: s\nvalid commands/args:\n  monitor\n  show\n  load\n  poll\n  reload\n  stop\n  redirect\n  table\n  host\n  log\n"
        );
        assert_eq!(
            p("show r").unwrap_err(),
            "ambiguous argument: r\nvalid commands/args:\n  summary\n  hosts\n  redirects\n  relays\n  routers\n  sessions\n"
        );
        assert_eq!(
            p("show").unwrap_err(),
            "missing argument:\nvalid commands/args:\n  summary\n  hosts\n  redirects\n  relays\n  routers\n  sessions\n"
        );
        assert_eq!(
            p("host disable").unwrap_err(),
            "missing argument:\nvalid commands/args:\n  <hostid>\n"
        );
        assert_eq!(
            p("frobnicate").unwrap_err().lines().next(),
            Some("unknown argument: frobnicate")
        );
        assert_eq!(
            p("show summary extra").unwrap_err(),
            "superfluous argument: extra\n"
        );
        assert_eq!(p("").unwrap_err().lines().next(), Some("missing argument:"));
    }

    #[test]
    fn reload_takes_an_optional_plan() {
        let r = p("reload").unwrap();
        assert_eq!((r.action, r.path), (Action::Reload, None));
        let r = p("rel /tmp/plan.bin").unwrap();
        assert_eq!(r.path.as_deref(), Some("/tmp/plan.bin"));
        assert_eq!(
            p("load").unwrap_err(),
            "missing argument:\nvalid commands/args:\n  <path>\n"
        );
        assert_eq!(p("reload a b").unwrap_err(), "superfluous argument: b\n");
    }
}
