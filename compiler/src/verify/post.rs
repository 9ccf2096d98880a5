//! relayd's checks after the whole file is read (`load_config` in parse.y), which
//! relayd prints without a file and line; here they point at the objects involved.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir::*;
use crate::source::Span;

/// relayd's RELAY_MAXHOSTS: relay_launch() aborts with "too many hosts in table".
pub const RELAY_MAXHOSTS: usize = 32;

pub fn check(c: &Config, whole_file: Span, syntax_broken: bool, diags: &mut Diagnostics) {
    if !syntax_broken {
        no_actions(c, whole_file, diags);
    }
    let global_fired = timeouts(c, whole_file, diags);
    table_timeouts(c, global_fired, diags);
    parents(c, diags);
    unused_protocols(c, diags);
    unused_templates(c, diags);
    too_many_hosts(c, diags);
}

fn no_actions(c: &Config, whole_file: Span, diags: &mut Diagnostics) {
    if c.relays.is_empty() && c.redirects.is_empty() && c.routers.is_empty() {
        diags.push(
            Diagnostic::relayd(Code::NoActions, whole_file, "no actions, nothing to do")
                .help("add a `relay`, `redirect` or `router` block; tables and protocols alone do nothing"),
        );
    }
}

/// The final global timeout must be below the final global interval (relayd compares
/// them as times: `timeout 10000` with `interval 10` is already too long).
fn timeouts(c: &Config, whole_file: Span, diags: &mut Diagnostics) -> bool {
    let g = &c.globals;
    if u64::from(g.timeout_ms) < u64::from(g.interval) * 1000 {
        return false;
    }
    let at = g.timeout_span.or(g.interval_span).unwrap_or(whole_file);
    let mut d = Diagnostic::relayd(Code::TimeoutExceedsInterval, at, "global timeout exceeds interval")
        .help(format!(
            "a check must finish before the next one starts: the timeout is {} ms and the interval {} s; lower `timeout` or raise `interval`",
            g.timeout_ms, g.interval
        ));
    if let (Some(t), Some(i)) = (g.timeout_span, g.interval_span) {
        if t != at {
            d = d.label(t, "the timeout is set here");
        } else {
            d = d.label(i, "the interval is set here");
        }
    }
    diags.push(d);
    true
}

fn table_timeouts(c: &Config, global_fired: bool, diags: &mut Diagnostics) {
    let limit = u64::from(c.globals.interval) * 1000;
    for t in &c.tables {
        if u64::from(t.timeout_ms) < limit {
            continue;
        }
        // With the global timeout already too long, every table that inherited it would
        // repeat the same finding.
        if global_fired && t.timeout_ms == c.globals.timeout_ms {
            continue;
        }
        diags.push(
            Diagnostic::relayd(
                Code::TimeoutExceedsInterval,
                t.span,
                format!("table timeout exceeds interval: {}", t.name),
            )
            .help(format!(
                "the table's check timeout is {} ms but checks start every {} s; give the table a shorter `timeout`",
                t.timeout_ms, c.globals.interval
            )),
        );
    }
}

/// `parent N` must name another host (by relayd's host id, counted over table
/// instances) that has no parent itself.
fn parents(c: &Config, diags: &mut Diagnostics) {
    for (i, h) in c.hosts.iter().enumerate() {
        let Some((parent, span)) = h.def.parent else {
            continue;
        };
        let own = i as u32 + 1;
        let target = parent.checked_sub(1).and_then(|p| c.hosts.get(p as usize));
        let why = match target {
            _ if parent == own => Some("a host cannot be its own parent".to_string()),
            None => Some(format!(
                "there are {} hosts; host ids count the hosts of every table instance in the order `forward to` lines create them",
                c.hosts.len()
            )),
            Some(p) if p.def.parent.is_some() => Some(format!(
                "host {parent} ({}) has a parent itself; parents cannot be chained",
                p.def.addr
            )),
            Some(_) => None,
        };
        if let Some(why) = why {
            diags.push(
                Diagnostic::relayd(
                    Code::InvalidParent,
                    span,
                    format!("host parent id {parent} invalid"),
                )
                .help(why),
            );
        }
    }
}

fn unused_protocols(c: &Config, diags: &mut Diagnostics) {
    for p in &c.protocols {
        if p.users.is_empty() {
            diags.push(
                Diagnostic::relayd(
                    Code::UnusedProtocol,
                    p.span,
                    format!("unused protocol: {}", p.name),
                )
                .help(format!(
                    "no relay names it: add `protocol \"{}\"` to a relay, or remove it",
                    p.name
                )),
            );
        }
    }
}

/// A template nothing forwards to: relayd drops it without a word.
fn unused_templates(c: &Config, diags: &mut Diagnostics) {
    for t in &c.templates {
        if !t.referenced {
            diags.push(
                Diagnostic::new(
                    Code::UnusedTable,
                    t.span,
                    format!("table <{}> is never used", t.name),
                )
                .help("relayd silently ignores a table no `forward to` or `route to` names; use it or remove it"),
            );
        }
    }
}

fn too_many_hosts(c: &Config, diags: &mut Diagnostics) {
    for t in &c.tables {
        if t.hosts.len() <= RELAY_MAXHOSTS {
            continue;
        }
        let Some((_, at)) = t.users.iter().find(|(o, _)| matches!(o, Owner::Relay(_))) else {
            continue;
        };
        diags.push(
            Diagnostic::new(
                Code::TooManyHosts,
                *at,
                format!(
                    "table {} has {} hosts; a relay can balance over at most {RELAY_MAXHOSTS}",
                    t.name,
                    t.hosts.len()
                ),
            )
            .relayd_message("too many hosts in table")
            .label(c.templates[t.template.index()].span, "the table is defined here")
            .help("relayd accepts the file but aborts when the relay starts; split the hosts over two tables (the second one as a fallback)"),
        );
    }
}
