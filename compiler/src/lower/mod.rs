//! Lowering: the syntax tree becomes the typed IR ([`crate::ir`]).
//!
//! The walk goes through the file in order, because relayd captures values where a
//! statement is parsed: a table template copies the global `timeout` in effect at its
//! definition, a `forward to <t>` takes its default port from the `listen on` lines seen
//! so far, and every name must be defined before it is used (tables before `forward to`,
//! protocols before the relay naming them). Resolution errors are reported here, with
//! relayd's messages: undefined and duplicate names, blocks that lack a listener, a
//! table or a target, conflicting targets. Everything else the syntax tree says that is
//! wrong was reported by [`crate::check`]; lowering skips such values silently and keeps
//! going, so one run still reports every problem.
//!
//! * `tables`  — templates, instantiation (`name:port`), health checks;
//! * `blocks`  — relays, redirects, routers (and hoststated's services);
//! * `rules`   — protocols, filter rules and relayd ≤ 5.5 protocol nodes.

mod blocks;
mod rules;
mod tables;

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir::*;
use crate::parse::ast::{self, Item, LogOpt, Port, PortValue, Sp};
use crate::services;
use crate::source::{PathRules, Span};
use relaydc_spec::Release;
use std::collections::HashMap;

/// The global values in effect at the current point of the file.
#[derive(Clone, Copy, Debug)]
struct Current {
    interval: u32,
    timeout_ms: u32,
}

struct Lowerer<'a> {
    config: Config,
    release: Release,
    /// The first table, redirect, relay, protocol or router: relayd's first pass stops
    /// there, so globals after it are read only in the second pass (or not at all).
    first_section: Option<Span>,
    paths: &'a PathRules,
    diags: &'a mut Diagnostics,
    current: Current,
    templates: HashMap<String, TemplateId>,
    instances: HashMap<tables::InstanceKey, TableId>,
    protocols: HashMap<String, ProtocolId>,
    relays: HashMap<String, RelayId>,
    redirects: HashMap<String, RedirectId>,
    routers: HashMap<String, RouterId>,
    tags: HashMap<String, u32>,
    labels: HashMap<String, u32>,
    /// Names defined anywhere in the file, for "defined later" hints.
    later: LaterNames,
}

/// Where each table and protocol name is defined, wherever that is in the file.
#[derive(Default)]
struct LaterNames {
    tables: HashMap<String, Span>,
    protocols: HashMap<String, Span>,
}

/// Lowers one file's syntax tree.
pub fn lower(
    file: &ast::File,
    release: Release,
    paths: &PathRules,
    diags: &mut Diagnostics,
) -> Config {
    let mut later = LaterNames::default();
    for item in &file.items {
        match item {
            Item::Table(t) => {
                later
                    .tables
                    .entry(t.name.text.clone())
                    .or_insert(t.name.span);
            }
            Item::HTable(b) => {
                later
                    .tables
                    .entry(b.name.text.clone())
                    .or_insert(b.name.span);
            }
            Item::Protocol(p) => {
                later
                    .protocols
                    .entry(p.name.text.clone())
                    .or_insert(p.name.span);
            }
            _ => {}
        }
    }
    let mut l = Lowerer {
        config: Config {
            globals: Globals {
                interval: 10,
                interval_span: None,
                timeout_ms: 200,
                timeout_span: None,
                prefork: release.default_prefork().clamp(1, 32) as u32,
                log: LogSettings::default(),
                socket: "/var/run/relayd.sock".to_string(),
            },
            ..Config::default()
        },
        release,
        first_section: None,
        paths,
        diags,
        current: Current {
            interval: 10,
            timeout_ms: 200,
        },
        templates: HashMap::new(),
        instances: HashMap::new(),
        protocols: HashMap::new(),
        relays: HashMap::new(),
        redirects: HashMap::new(),
        routers: HashMap::new(),
        tags: HashMap::new(),
        labels: HashMap::new(),
        later,
    };
    for item in &file.items {
        if l.first_section.is_none() {
            l.first_section = section_span(item);
        }
        match item {
            Item::Global(g) => {
                // What relayd ignores there is ignored here too (the warning says so).
                if !l.late_global(g) {
                    l.global(g)
                }
            }
            Item::Table(t) => l.template(t),
            Item::HTable(b) => l.htable(b),
            Item::Protocol(p) => l.protocol(p),
            Item::Relay(b) => l.relay(b),
            Item::Redirect(b) => l.redirect(b),
            Item::Service(b) => l.service(b),
            Item::Router(b) => l.router(b),
            Item::Include(_) | Item::Macro { .. } | Item::MacroNumber { .. } | Item::Error(_) => {}
        }
    }
    l.config
}

fn section_span(item: &Item) -> Option<Span> {
    match item {
        Item::Table(t) => Some(t.name.span),
        Item::Redirect(b) => Some(b.name.span),
        Item::Relay(b) => Some(b.name.span),
        Item::Router(b) => Some(b.name.span),
        Item::Protocol(p) => Some(p.name.span),
        Item::HTable(b) => Some(b.name.span),
        Item::Service(b) => Some(b.name.span),
        _ => None,
    }
}

impl Lowerer<'_> {
    /// Globals after the first section: relayd's first pass (which sizes the process
    /// model) never sees them, relayd ≤ 5.6 ignored them entirely, and tables defined
    /// earlier already copied the timeout in effect then.
    /// Returns whether relayd ignores the option where it stands.
    fn late_global(&mut self, g: &Sp<ast::Global>) -> bool {
        let Some(first) = self.first_section else {
            return false;
        };
        let ignored_entirely = self.release <= Release::new(5, 6);
        // Restating a default changes nothing, wherever it is written.
        let is_default = match &g.node {
            ast::Global::Prefork(n) => n.node == self.release.default_prefork(),
            ast::Global::Interval(n) => n.node == 10,
            ast::Global::Timeout(n) => n.node == 200,
            _ => false,
        };
        if is_default {
            return false;
        }
        let what = match &g.node {
            ast::Global::Prefork(_) => Some("`prefork` sets the number of relay processes only when it comes before the first section: relayd's first pass, which starts the processes, stops there"),
            ast::Global::Interval(_) | ast::Global::Timeout(_) | ast::Global::Log(_)
                if ignored_entirely =>
            {
                Some("this release reads global options only in its first pass, which stops at the first section: the option has no effect")
            }
            _ => None,
        };
        if let Some(why) = what {
            self.report(
                Diagnostic::new(
                    Code::LateGlobal,
                    g.span,
                    "global option after the first section is ignored",
                )
                .label(first, "the first section starts here")
                .help(why)
                .help("move global options to the top of the file"),
            );
            return true;
        }
        if let ast::Global::Timeout(n) = &g.node {
            let earlier: Vec<&Template> = self
                .config
                .templates
                .iter()
                .filter(|t| i64::from(t.timeout_ms) != n.node)
                .collect();
            if let Some(t) = earlier.first() {
                let d = Diagnostic::new(
                    Code::LateGlobal,
                    g.span,
                    format!(
                        "tables defined above keep the earlier timeout ({} ms)",
                        t.timeout_ms
                    ),
                )
                .label(t.span, format!("table <{}> copied the timeout here", t.name))
                .help("relayd copies the global timeout into a table where the table is defined; move `timeout` above the tables, or give the tables their own `timeout`");
                self.report(d);
            }
        }
        false
    }

    fn report(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    fn global(&mut self, g: &Sp<ast::Global>) {
        let globals = &mut self.config.globals;
        match &g.node {
            ast::Global::Interval(n) if n.node >= 0 => {
                let v = n.node.min(u32::MAX as i64) as u32;
                globals.interval = v;
                globals.interval_span = Some(g.span);
                self.current.interval = v;
            }
            ast::Global::Timeout(n) if n.node >= 0 => {
                let v = n.node.min(u32::MAX as i64) as u32;
                globals.timeout_ms = v;
                globals.timeout_span = Some(g.span);
                self.current.timeout_ms = v;
            }
            ast::Global::Prefork(n) if (1..=32).contains(&n.node) => {
                globals.prefork = n.node as u32;
            }
            ast::Global::Log(opt) => {
                let log = &mut globals.log;
                match opt.node {
                    LogOpt::StateChanges | LogOpt::Updates => log.state_changes = true,
                    LogOpt::HostChecks => log.host_checks = true,
                    // relayd ≤ 6.5 `log all` set both bits.
                    LogOpt::All => {
                        log.state_changes = true;
                        log.host_checks = true;
                    }
                    LogOpt::Connection => log.connection = ConnectionLog::All,
                    LogOpt::ConnectionErrors => {
                        if log.connection == ConnectionLog::Off {
                            log.connection = ConnectionLog::Errors;
                        }
                    }
                    LogOpt::LevelVerbose => log.verbose = true,
                    LogOpt::LevelBrief => log.verbose = false,
                }
            }
            ast::Global::Socket(path) => globals.socket = path.node.clone(),
            _ => {}
        }
    }

    /// Interns a tag name.
    fn tag(&mut self, name: &str) -> u32 {
        intern(&mut self.tags, &mut self.config.tags, name)
    }

    fn label(&mut self, name: &str) -> u32 {
        intern(&mut self.labels, &mut self.config.labels, name)
    }
}

fn intern(map: &mut HashMap<String, u32>, list: &mut Vec<String>, name: &str) -> u32 {
    if let Some(id) = map.get(name) {
        return *id;
    }
    let id = list.len() as u32;
    list.push(name.to_string());
    map.insert(name.to_string(), id);
    id
}

/// A single port as a number, or `None` when the value is invalid (already reported).
fn port_number(p: &Port) -> Option<u16> {
    match &p.value {
        PortValue::Number(n) => u16::try_from(*n).ok().filter(|n| *n > 0),
        PortValue::Name(name) => service_port(name),
    }
}

/// `lo:hi` or a single port.
fn port_range(p: &Port) -> Option<(u16, Option<u16>)> {
    match &p.value {
        PortValue::Name(name) if name.contains(':') => {
            let (lo, hi) = name.split_once(':')?;
            Some((service_port(lo)?, Some(service_port(hi)?)))
        }
        _ => Some((port_number(p)?, None)),
    }
}

fn service_port(name: &str) -> Option<u16> {
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        return name.parse::<u16>().ok().filter(|n| *n > 0);
    }
    services::lookup(name)
}

fn duplicate(kind_message: String, span: Span, first: Span) -> Diagnostic {
    Diagnostic::relayd(Code::DuplicateName, span, kind_message)
        .label(first, "first defined here")
        .help("give each one its own name, or remove one of them")
}

fn mode(m: ast::Mode) -> Mode {
    match m {
        ast::Mode::Roundrobin => Mode::Roundrobin,
        ast::Mode::Loadbalance => Mode::Loadbalance,
        ast::Mode::Hash => Mode::Hash,
        ast::Mode::SourceHash => Mode::SourceHash,
        ast::Mode::Random => Mode::Random,
        ast::Mode::LeastStates => Mode::LeastStates,
    }
}
