//! The nftables ruleset for a plan's redirects and the current host states.

use nftables::expr::{
    Expression, JHash, Map, Meta, MetaKey, NamedExpression, NgMode, Numgen, Payload, PayloadField,
    Range, SetItem,
};
use nftables::schema::{Chain, NfCmd, NfListObject, NfObject, Nftables, Rule, Table};
use nftables::stmt::{Mangle, Match, NATFamily, Operator, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use relaydc_spec::plan::{Address, Mode, Plan, RdrListener, Redirect};
use std::borrow::Cow;
use std::net::IpAddr;

/// The table relayd-run owns (family `inet`: one table for IPv4 and IPv6).
pub const TABLE: &str = "relayd";
const CHAIN: &str = "prerouting";
/// nftables' `dstnat` priority for the nat prerouting hook.
const DSTNAT: i32 = -100;

/// The batch that makes the kernel's table exactly what the plan and `up` (per plan
/// host) say: add (a no-op if present), flush, then the chain and one rule per listener
/// of every redirect that has an active table.
pub fn ruleset(plan: &Plan, up: &[bool]) -> Nftables<'static> {
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
    for r in plan.redirects.iter().filter(|r| !r.disabled) {
        let Some((port, hosts, mode)) = active(plan, r, up) else {
            continue;
        };
        for l in &r.listeners {
            if let Some(rule) = rule(plan, r, l, port, &hosts, mode.clone()) {
                cmds.push(NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(rule))));
            }
        }
    }
    Nftables {
        objects: Cow::Owned(cmds),
    }
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
/// Returns the table's port, its up hosts' addresses and the balancing mode.
fn active(plan: &Plan, r: &Redirect, up: &[bool]) -> Option<(u16, Vec<IpAddr>, Mode)> {
    for rt in &r.tables {
        let t = plan.tables.get(rt.table as usize)?;
        if t.disabled || rt.route {
            continue;
        }
        let hosts: Vec<IpAddr> = t
            .hosts
            .iter()
            .filter(|&&h| up.get(h as usize).copied().unwrap_or(false))
            .filter_map(|&h| match plan.hosts.get(h as usize)?.address {
                Address::Ip(ip) => Some(ip),
                _ => None,
            })
            .collect();
        if !hosts.is_empty() {
            return Some((t.port, hosts, rt.mode.clone()));
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
