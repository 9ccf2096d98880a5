//! The nftables ruleset for a plan's redirects and the current host states.

use nftables::expr::{
    Expression, JHash, Map, Meta, MetaKey, NamedExpression, NgMode, Numgen, Payload, PayloadField,
    Range, SetItem,
};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Counter, Mangle, Match, NATFamily, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use relaydc_spec::plan::{Address, Mode, Plan, RdrListener, Redirect};
use std::borrow::Cow;
use std::net::IpAddr;

/// The table relayd-run owns (family `inet`: one table for IPv4 and IPv6).
pub const TABLE: &str = "relayd";
/// The one chain of the table.
pub const CHAIN: &str = "prerouting";
/// nftables' `dstnat` priority for the nat prerouting hook.
const DSTNAT: i32 = -100;

/// The batch that makes the kernel's table exactly what the plan and `up` (per plan
/// host) say: add (a no-op if present), flush, then the chain, a counter per redirect
/// and one rule per listener of every redirect that has an active table. Redirects and
/// tables are enabled or disabled as the plan says.
pub fn ruleset(plan: &Plan, up: &[bool]) -> Nftables<'static> {
    let redirect_off: Vec<bool> = plan.redirects.iter().map(|r| r.disabled).collect();
    let table_off: Vec<bool> = plan.tables.iter().map(|t| t.disabled).collect();
    ruleset_for(
        plan,
        &States {
            up,
            redirect_off: &redirect_off,
            table_off: &table_off,
        },
    )
}

/// What the rules depend on besides the plan, each indexed as the plan's hosts,
/// redirects and tables: relayctl can disable and enable redirects and tables, so
/// these may differ from the plan's flags.
#[derive(Clone, Copy, Debug)]
pub struct States<'a> {
    pub up: &'a [bool],
    pub redirect_off: &'a [bool],
    pub table_off: &'a [bool],
}

impl States<'_> {
    fn up(&self, h: u32) -> bool {
        self.up.get(h as usize).copied().unwrap_or(false)
    }
    fn redirect_off(&self, r: usize) -> bool {
        self.redirect_off.get(r).copied().unwrap_or(true)
    }
    fn table_off(&self, t: u32) -> bool {
        self.table_off.get(t as usize).copied().unwrap_or(true)
    }
}

/// [`ruleset`] with the run-time states.
pub fn ruleset_for(plan: &Plan, s: &States<'_>) -> Nftables<'static> {
    let mut cmds = vec![
        NfObject::CmdObject(NfCmd::Add(NfListObject::Table(table()))),
        NfObject::CmdObject(NfCmd::Flush(nftables::schema::FlushObject::Table(table()))),
        NfObject::CmdObject(NfCmd::Add(NfListObject::Chain(Chain {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: CHAIN.into(),
            _type: Some(NfChainType::NAT),
            hook: Some(NfHook::Prerouting),
            prio: Some(DSTNAT),
            policy: Some(NfChainPolicy::Accept),
            ..Chain::default()
        }))),
    ];
    // Named counters outlive the flush above, so a redirect's count (relayd's pf table
    // statistics, `show redirects`) survives every rule change.
    for r in &plan.redirects {
        cmds.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Counter(
            nftables::schema::Counter {
                family: NfFamily::INet,
                table: TABLE.into(),
                name: r.name.clone().into(),
                handle: None,
                packets: None,
                bytes: None,
            },
        ))));
    }
    for (i, r) in plan.redirects.iter().enumerate() {
        if s.redirect_off(i) {
            continue;
        }
        let Some(a) = active(plan, r, s) else {
            continue;
        };
        // `route to` (direct server return): no rule (see the module documentation).
        if a.route {
            continue;
        }
        for l in &r.listeners {
            if let Some(rule) = rule(plan, r, l, a.port, &a.hosts, a.mode.clone()) {
                cmds.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(rule))));
            }
        }
    }
    Nftables {
        objects: Cow::Owned(cmds),
    }
}

/// A redirect's state, relayctl's status column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RdrState {
    Disabled,
    /// No host of either table is up: no rules.
    Down,
    Active,
    /// The main table has no host up, the backup has.
    Backup,
}

impl RdrState {
    /// relayctl's words.
    pub fn word(self) -> &'static str {
        match self {
            RdrState::Disabled => "disabled",
            RdrState::Down => "down",
            RdrState::Active => "active",
            RdrState::Backup => "active (using backup table)",
        }
    }
}

/// The state of redirect `i` (index) and the addresses of its active table's up hosts
/// (what relayd's pf table for it holds).
pub fn state(plan: &Plan, i: usize, s: &States<'_>) -> (RdrState, Vec<IpAddr>) {
    let Some(r) = plan.redirects.get(i) else {
        return (RdrState::Disabled, Vec::new());
    };
    if s.redirect_off(i) {
        return (RdrState::Disabled, Vec::new());
    }
    match active(plan, r, s) {
        None => (RdrState::Down, Vec::new()),
        Some(a) if a.backup => (RdrState::Backup, a.hosts),
        Some(a) => (RdrState::Active, a.hosts),
    }
}

/// The active table of a redirect.
struct Active {
    port: u16,
    hosts: Vec<IpAddr>,
    mode: Mode,
    route: bool,
    backup: bool,
}

/// The batch that removes the table (on exit).
pub fn removal() -> Nftables<'static> {
    Nftables {
        objects: Cow::Owned(vec![NfObject::CmdObject(NfCmd::Delete(
            NfListObject::Table(table()),
        ))]),
    }
}

fn table() -> Table<'static> {
    Table {
        family: NfFamily::INet,
        name: TABLE.into(),
        handle: None,
    }
}

/// relayd's active table (§4.3): the main table if one of its hosts is up, else the
/// backup if one of its hosts is, else none (the redirect is down and has no rules).
fn active(plan: &Plan, r: &Redirect, s: &States<'_>) -> Option<Active> {
    for (n, rt) in r.tables.iter().enumerate() {
        let t = plan.tables.get(rt.table as usize)?;
        if s.table_off(rt.table) {
            continue;
        }
        let hosts: Vec<IpAddr> = t
            .hosts
            .iter()
            .filter(|&&h| s.up(h))
            .filter_map(|&h| match plan.hosts.get(h as usize)?.address {
                Address::Ip(ip) => Some(ip),
                _ => None,
            })
            .collect();
        if !hosts.is_empty() {
            return Some(Active {
                port: t.port,
                hosts,
                mode: rt.mode.clone(),
                route: rt.route,
                backup: n > 0,
            });
        }
    }
    None
}

fn rule(
    plan: &Plan,
    r: &Redirect,
    l: &RdrListener,
    port: u16,
    hosts: &[IpAddr],
    mode: Mode,
) -> Option<Rule<'static>> {
    let Address::Ip(vip) = l.address else {
        return None;
    };
    // One family per rule: hosts of the other family cannot take this address's packets.
    let hosts: Vec<IpAddr> = hosts
        .iter()
        .copied()
        .filter(|h| h.is_ipv4() == vip.is_ipv4())
        .collect();
    if hosts.is_empty() {
        return None;
    }
    let (ipfam, natfam) = if vip.is_ipv4() {
        ("ip", NATFamily::IP)
    } else {
        ("ip6", NATFamily::IP6)
    };
    let mut expr = Vec::new();
    if let Some(ifname) = &l.interface {
        expr.push(eq(
            meta(MetaKey::Iifname),
            Expression::String(ifname.clone().into()),
        ));
    }
    let proto = if l.udp { "udp" } else { "tcp" };
    expr.push(eq(meta(MetaKey::L4proto), Expression::String(proto.into())));
    expr.push(eq(
        payload(ipfam, "daddr"),
        Expression::String(vip.to_string().into()),
    ));
    let dport = match l.port_hi {
        Some(hi) => Expression::Range(Box::new(Range {
            range: [
                Expression::Number(u32::from(l.port)),
                Expression::Number(u32::from(hi)),
            ],
        })),
        None => Expression::Number(u32::from(l.port)),
    };
    expr.push(eq(payload(proto, "dport"), dport));
    expr.push(Statement::Counter(Counter::Named(r.name.clone().into())));
    if let Some(tag) = &r.pftag {
        expr.push(Statement::Mangle(Mangle {
            key: meta(MetaKey::Mark),
            value: Expression::Number(mark(plan, tag)),
        }));
    }
    let addr = if let [one] = hosts.as_slice() {
        Expression::String(one.to_string().into())
    } else {
        let n = hosts.len() as u32;
        let key = match (mode, r.sticky) {
            (Mode::SourceHash | Mode::Loadbalance, _) | (_, true) => {
                Expression::Named(NamedExpression::JHash(JHash {
                    hash_mod: n,
                    offset: None,
                    expr: Box::new(payload(ipfam, "saddr")),
                    seed: None,
                }))
            }
            (Mode::Random, false) => Expression::Named(NamedExpression::Numgen(Numgen {
                mode: NgMode::Random,
                ng_mod: n,
                offset: None,
            })),
            _ => Expression::Named(NamedExpression::Numgen(Numgen {
                mode: NgMode::Inc,
                ng_mod: n,
                offset: None,
            })),
        };
        let items = hosts
            .iter()
            .enumerate()
            .map(|(i, h)| {
                SetItem::Mapping(
                    Expression::Number(i as u32),
                    Expression::String(h.to_string().into()),
                )
            })
            .collect();
        Expression::Named(NamedExpression::Map(Box::new(Map {
            key,
            data: Expression::Named(NamedExpression::Set(items)),
        })))
    };
    // relayd rewrites the port for single-port listeners only (§4.3).
    let to_port = l
        .port_hi
        .is_none()
        .then_some(Expression::Number(u32::from(port)));
    expr.push(Statement::DNAT(Some(NAT {
        addr: Some(addr),
        family: Some(natfam),
        port: to_port,
        flags: None,
    })));
    Some(Rule {
        family: NfFamily::INet,
        table: TABLE.into(),
        chain: CHAIN.into(),
        expr: Cow::Owned(expr),
        comment: Some(format!("redirect {}", r.name).into()),
        ..Rule::default()
    })
}

/// The packet mark standing for pf tag `tag`: its place among the distinct `pftag`
/// names of the plan's redirects, from 1.
pub fn mark(plan: &Plan, tag: &str) -> u32 {
    let mut seen: Vec<&str> = Vec::new();
    for t in plan.redirects.iter().filter_map(|r| r.pftag.as_deref()) {
        if !seen.contains(&t) {
            seen.push(t);
        }
    }
    seen.iter()
        .position(|t| *t == tag)
        .map_or(0, |i| i as u32 + 1)
}

fn eq(left: Expression<'static>, right: Expression<'static>) -> Statement<'static> {
    Statement::Match(Match {
        left,
        right,
        op: Operator::EQ,
    })
}

fn meta(key: MetaKey) -> Expression<'static> {
    Expression::Named(NamedExpression::Meta(Meta { key }))
}

fn payload(protocol: &'static str, field: &'static str) -> Expression<'static> {
    Expression::Named(NamedExpression::Payload(Payload::PayloadField(
        PayloadField {
            protocol: protocol.into(),
            field: field.into(),
        },
    )))
}
