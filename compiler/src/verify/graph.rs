//! The object graph: relays, redirects and routers at the roots, then protocols, table
//! instances and hosts. Used for two findings — fallback tables that can never be
//! reached, and protocols or tables that only disabled blocks use — and rendered as DOT
//! by `relaydc graph`.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir::*;
use petgraph::graph::{DiGraph, NodeIndex};
use petgraph::visit::Dfs;
use std::collections::HashSet;
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Node {
    Relay(RelayId),
    Redirect(RedirectId),
    Router(RouterId),
    Protocol(ProtocolId),
    Table(TableId),
    Host(HostId),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edge {
    Uses,
    /// A relay's later table, used only when the earlier ones have no host up.
    Fallback,
    /// A redirect's backup table.
    Backup,
    /// A filter rule's `forward to <t>`.
    RuleForward,
    Member,
}

pub struct ObjectGraph {
    pub graph: DiGraph<Node, Edge>,
    pub relays: Vec<NodeIndex>,
    pub redirects: Vec<NodeIndex>,
    pub routers: Vec<NodeIndex>,
    pub protocols: Vec<NodeIndex>,
    pub tables: Vec<NodeIndex>,
    pub hosts: Vec<NodeIndex>,
}

pub fn build(c: &Config) -> ObjectGraph {
    let mut graph = DiGraph::new();
    let mut add = |n: Node| graph.add_node(n);
    let relays: Vec<_> = (0..c.relays.len())
        .map(|i| add(Node::Relay(RelayId(i as u32))))
        .collect();
    let redirects: Vec<_> = (0..c.redirects.len())
        .map(|i| add(Node::Redirect(RedirectId(i as u32))))
        .collect();
    let routers: Vec<_> = (0..c.routers.len())
        .map(|i| add(Node::Router(RouterId(i as u32))))
        .collect();
    let protocols: Vec<_> = (0..c.protocols.len())
        .map(|i| add(Node::Protocol(ProtocolId(i as u32))))
        .collect();
    let tables: Vec<_> = (0..c.tables.len())
        .map(|i| add(Node::Table(TableId(i as u32))))
        .collect();
    let hosts: Vec<_> = (0..c.hosts.len())
        .map(|i| add(Node::Host(HostId(i as u32))))
        .collect();
    let rule_forwards = rule_forwards(c);
    for (i, r) in c.relays.iter().enumerate() {
        if let Some((p, _)) = r.protocol {
            graph.add_edge(relays[i], protocols[p.index()], Edge::Uses);
        }
        let mut first = true;
        for f in &r.forwards {
            if let Target::Table { table, .. } = f.target {
                let e = if first { Edge::Uses } else { Edge::Fallback };
                first = false;
                graph.add_edge(relays[i], tables[table.index()], e);
            }
        }
        // Rules that pick a table by template bind to this relay's own instances of it
        // (so the edge starts at the relay: a disabled relay's tables stay unreached).
        if let Some((p, _)) = r.protocol {
            for &(tpl, _) in &rule_forwards[p.index()] {
                for t in relay_tables(r) {
                    if c.tables[t.index()].template == tpl {
                        graph.add_edge(relays[i], tables[t.index()], Edge::RuleForward);
                    }
                }
            }
        }
    }
    for (i, r) in c.redirects.iter().enumerate() {
        for (k, t) in r.tables.iter().enumerate() {
            let e = if k == 0 { Edge::Uses } else { Edge::Backup };
            graph.add_edge(redirects[i], tables[t.table.index()], e);
        }
    }
    for (i, r) in c.routers.iter().enumerate() {
        if let Some(t) = r.table {
            graph.add_edge(routers[i], tables[t.index()], Edge::Uses);
        }
    }
    for (i, t) in c.tables.iter().enumerate() {
        for h in &t.hosts {
            graph.add_edge(tables[i], hosts[h.index()], Edge::Member);
        }
    }
    ObjectGraph {
        graph,
        relays,
        redirects,
        routers,
        protocols,
        tables,
        hosts,
    }
}

/// Per protocol, the `forward to <t>` of its rules (most rules have none).
fn rule_forwards(c: &Config) -> Vec<Vec<(TemplateId, crate::source::Span)>> {
    c.protocols
        .iter()
        .map(|p| p.rule_info.iter().filter_map(|r| r.forward).collect())
        .collect()
}

fn relay_tables(r: &Relay) -> impl Iterator<Item = TableId> + '_ {
    r.forwards.iter().filter_map(|f| match f.target {
        Target::Table { table, .. } => Some(table),
        _ => None,
    })
}

pub fn check(c: &Config, diags: &mut Diagnostics) {
    let g = build(c);
    unreachable_fallbacks(c, diags);
    rule_tables(c, diags);
    only_disabled_users(c, &g, diags);
}

/// A rule's `forward to <t>` selects among the relay's own instances of `t`; a relay
/// without one ignores the selection (relayd binds rule tables to relay tables by name).
fn rule_tables(c: &Config, diags: &mut Diagnostics) {
    let forwards = rule_forwards(c);
    for r in &c.relays {
        let Some((p, _)) = r.protocol else { continue };
        let proto = &c.protocols[p.index()];
        if proto.kind != ProtocolKind::Http {
            continue;
        }
        for &(tpl, span) in &forwards[p.index()] {
            if relay_tables(r).any(|t| c.tables[t.index()].template == tpl) {
                continue;
            }
            let name = &c.templates[tpl.index()].name;
            diags.push(
                Diagnostic::new(
                    Code::UnreachableTable,
                    span,
                    format!("relay {} does not forward to <{name}>, so this rule's table choice has no effect there", r.name),
                )
                .label(r.span, format!("relay {} uses protocol {}", r.name, proto.name))
                .help(format!("add `forward to <{name}> port P …` to relay {} (it can come after the main table)", r.name)),
            );
        }
    }
}

/// A relay uses the first of its tables that is usable; a table without a check always
/// is (every host counts as up), so the tables after it only serve requests a filter
/// rule sends there.
fn unreachable_fallbacks(c: &Config, diags: &mut Diagnostics) {
    let forwards = rule_forwards(c);
    for r in &c.relays {
        let ruled: HashSet<TemplateId> = r
            .protocol
            .filter(|(p, _)| c.protocols[p.index()].kind == ProtocolKind::Http)
            .into_iter()
            .flat_map(|(p, _)| forwards[p.index()].iter().map(|(t, _)| *t))
            .collect();
        let mut always: Option<&Forward> = None;
        for f in &r.forwards {
            let Target::Table { table, .. } = f.target else {
                continue;
            };
            let t = &c.tables[table.index()];
            if let Some(first) = always {
                if !ruled.contains(&t.template) {
                    let Target::Table { table: ft, .. } = first.target else {
                        continue;
                    };
                    diags.push(
                        Diagnostic::new(
                            Code::UnreachableTable,
                            f.span,
                            format!("relay {}: table {} is never used", r.name, t.name),
                        )
                        .label(first.span, format!("table {} has no check, so it is always usable", c.tables[ft.index()].name))
                        .help("a relay falls back to a later table only when the earlier ones have no host up; give the first table a `check`, or remove this line"),
                    );
                }
                continue;
            }
            if t.check == Check::None && !t.disabled {
                always = Some(f);
            }
        }
    }
}

/// Protocols and tables that only disabled relays, redirects or routers reach.
fn only_disabled_users(c: &Config, g: &ObjectGraph, diags: &mut Diagnostics) {
    let mut live = HashSet::new();
    let roots = c
        .relays
        .iter()
        .zip(&g.relays)
        .filter(|(r, _)| !r.disabled)
        .map(|(_, n)| *n)
        .chain(
            c.redirects
                .iter()
                .zip(&g.redirects)
                .filter(|(r, _)| !r.disabled)
                .map(|(_, n)| *n),
        )
        .chain(
            c.routers
                .iter()
                .zip(&g.routers)
                .filter(|(r, _)| !r.disabled)
                .map(|(_, n)| *n),
        );
    for root in roots {
        let mut dfs = Dfs::new(&g.graph, root);
        while let Some(n) = dfs.next(&g.graph) {
            live.insert(n);
        }
    }
    for (p, n) in c.protocols.iter().zip(&g.protocols) {
        if !p.users.is_empty() && !live.contains(n) {
            diags.push(
                Diagnostic::new(
                    Code::UnusedObject,
                    p.span,
                    format!("protocol {} is only used by disabled relays", p.name),
                )
                .help("it takes effect once `relayctl` enables such a relay; if none ever will be, remove it"),
            );
        }
    }
    for (t, n) in c.tables.iter().zip(&g.tables) {
        if !t.users.is_empty() && !live.contains(n) {
            diags.push(
                Diagnostic::new(
                    Code::UnusedObject,
                    t.span,
                    format!(
                        "table {} is only used by disabled relays, redirects or routers",
                        t.name
                    ),
                )
                .help("its hosts are still checked; if nothing will enable its users, remove it"),
            );
        }
    }
}

/// The graph as DOT (`relaydc graph FILE | dot -Tsvg`).
pub fn dot(c: &Config) -> String {
    let g = build(c);
    let mut out =
        String::from("digraph relayd {\n\trankdir=LR;\n\tnode [fontname=\"Helvetica\"];\n");
    for idx in g.graph.node_indices() {
        let (id, label, shape) = match g.graph[idx] {
            Node::Relay(r) => {
                let r0 = &c.relays[r.index()];
                let listen: Vec<String> = r0
                    .listeners
                    .iter()
                    .map(|l| format!("{}:{}{}", l.addr, l.port, if l.tls { " tls" } else { "" }))
                    .collect();
                (
                    format!("relay{}", r.relayd_id()),
                    format!(
                        "relay {}\\n{}{}",
                        r0.name,
                        listen.join("\\n"),
                        if r0.disabled { "\\n(disabled)" } else { "" }
                    ),
                    "box",
                )
            }
            Node::Redirect(r) => {
                let r0 = &c.redirects[r.index()];
                (
                    format!("redirect{}", r.relayd_id()),
                    format!(
                        "redirect {}{}",
                        r0.name,
                        if r0.disabled { "\\n(disabled)" } else { "" }
                    ),
                    "box",
                )
            }
            Node::Router(r) => (
                format!("router{}", r.relayd_id()),
                format!("router {}", c.routers[r.index()].name),
                "box",
            ),
            Node::Protocol(p) => {
                let p0 = &c.protocols[p.index()];
                (
                    format!("protocol{}", p.relayd_id()),
                    format!(
                        "{} protocol {}\\n{} rules",
                        p0.kind.text(),
                        p0.name,
                        p0.rules.len()
                    ),
                    "ellipse",
                )
            }
            Node::Table(t) => {
                let t0 = &c.tables[t.index()];
                (
                    format!("table{}", t.relayd_id()),
                    format!("table {}\\ncheck {}", t0.name, check_text(&t0.check)),
                    "folder",
                )
            }
            Node::Host(h) => (
                format!("host{}", h.relayd_id()),
                format!("{} (id {})", c.hosts[h.index()].def.addr, h.relayd_id()),
                "plaintext",
            ),
        };
        let _ = writeln!(out, "\t{id} [label=\"{}\", shape={shape}];", escape(&label));
    }
    for e in g.graph.edge_indices() {
        let Some((a, b)) = g.graph.edge_endpoints(e) else {
            continue;
        };
        let style = match g.graph[e] {
            Edge::Uses | Edge::Member => "",
            Edge::Fallback => " [style=dashed, label=\"fallback\"]",
            Edge::Backup => " [style=dashed, label=\"backup\"]",
            Edge::RuleForward => " [style=dotted, label=\"forward to\"]",
        };
        let _ = writeln!(
            out,
            "\t{} -> {}{style};",
            node_id(&g.graph[a]),
            node_id(&g.graph[b])
        );
    }
    out.push_str("}\n");
    out
}

fn node_id(n: &Node) -> String {
    match n {
        Node::Relay(r) => format!("relay{}", r.relayd_id()),
        Node::Redirect(r) => format!("redirect{}", r.relayd_id()),
        Node::Router(r) => format!("router{}", r.relayd_id()),
        Node::Protocol(p) => format!("protocol{}", p.relayd_id()),
        Node::Table(t) => format!("table{}", t.relayd_id()),
        Node::Host(h) => format!("host{}", h.relayd_id()),
    }
}

fn escape(s: &str) -> String {
    s.replace('"', "\\\"")
}

pub fn check_text(c: &Check) -> &'static str {
    match c {
        Check::None => "none",
        Check::Icmp => "icmp",
        Check::Tcp => "tcp",
        Check::Tls => "tls",
        Check::Http { tls: false, .. } => "http",
        Check::Http { tls: true, .. } => "https",
        Check::SendExpect { .. } => "send/expect",
        Check::Script(_) => "script",
    }
}
