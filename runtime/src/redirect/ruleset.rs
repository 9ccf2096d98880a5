//! The nftables ruleset for a plan's redirects and the current host states.

use nftables::expr::{
    CTDir, Expression, JHash, Map, Meta, MetaKey, NamedExpression, NgMode, Numgen, Payload,
    PayloadField, Range, SetItem, CT,
};
use nftables::schema::{
    Chain, FlushObject, NfCmd, NfListObject, NfObject, Nftables, Rule, Set, SetFlag, SetType,
    SetTypeValue, Table,
};
use nftables::stmt::{Counter, Mangle, Match, NATFamily, Operator, SetOp, Statement, NAT};
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use relaydc_spec::plan::{Address, Mode, Plan, RdrListener, Redirect};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::{BTreeSet, HashSet};
use std::net::IpAddr;

/// The table relayd-run owns (family `inet`: one table for IPv4 and IPv6).
pub const TABLE: &str = "relayd";
/// The nat chain: the redirects' DNAT rules.
pub const CHAIN: &str = "prerouting";
/// The chain that learns which host each `sticky-address` client went to. It runs just
/// after the nat chain, so the packet's destination is already the chosen host.
pub const STICKY_CHAIN: &str = "sticky";
/// nftables' `dstnat` priority for the nat prerouting hook.
pub const DSTNAT: i32 = -100;
/// The longest timeout given to conntrack or a set, seconds. Conntrack keeps a
/// connection's expiry as a 32-bit jiffies count compared as signed, so at HZ=1000
/// anything from 2^31 ms on would count as expired at once (and the kernel's
/// seconds-to-jiffies conversion wraps soon after).
pub const MAX_TIMEOUT_S: u32 = 2_147_483;
/// Conntrack's default established TCP timeout (`nf_conntrack_tcp_timeout_established`):
/// how long a sticky source lasts with `session timeout 0`, which leaves pf's own
/// default in place (pf keeps a source node as long as a state of it lives).
const CONNTRACK_ESTABLISHED_S: u32 = 432_000;

/// One change of the table: the conntrack timeout policies and the sets its rules name,
/// then one nft transaction with everything that depends on the host states.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// Made before the transaction, through nf_tables' netlink interface
    /// (`redirect/nfnl.rs`): nft's JSON parser before 1.0.8 drops a ct timeout's
    /// `policy` (Debian 12 has 1.0.6), and the `nftables` crate writes the object as
    /// `"cttimeout"` with `state`/`value` fields where nft reads `"ct timeout"` and
    /// `policy`. Adding one that exists leaves it as it is, hence a name per value.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timeouts: Vec<CtTimeout>,
    /// The sticky-address sets, added (their timeout updated if they exist) in an nft
    /// transaction of their own, before the one that updates them from rules: nft
    /// gives a set it makes in the transaction of such a rule the `dynamic` flag,
    /// which a later `add` of that set lacks (nft's JSON before 1.0.9 has no such
    /// flag), and the kernel refuses an `add` whose flags differ ("File exists").
    /// Made apart, a set always has the same flags; the kernel still picks a set type
    /// that packets can update.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sets: Vec<Set<'static>>,
    pub nft: Nftables<'static>,
}

/// A ct timeout object of the table, `ct timeout NAME { protocol tcp; l3proto ip|ip6;
/// policy = { established: N } }`: pf's per-rule `tcp.established` timeout, which
/// relayd sets to the redirect's session timeout (TCP listeners only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CtTimeout {
    /// For IPv6 connections (`l3proto ip6`), else IPv4.
    pub ipv6: bool,
    /// 1 to [`MAX_TIMEOUT_S`].
    pub established_s: u32,
}

impl CtTimeout {
    /// The object's name, which its policy determines (an nft identifier, so that a
    /// listing of the ruleset loads again).
    pub fn name(&self) -> String {
        format!(
            "established_{}s_{}",
            self.established_s,
            if self.ipv6 { "ip6" } else { "ip" }
        )
    }
}

/// The batch that makes the kernel's table exactly what the plan and `up` (per plan
/// host) say: add (a no-op if present), flush (rules only: sets, counters and ct
/// timeouts keep their contents), then the chains, a counter per redirect, the emptying
/// of the sets of hosts that are not up, and the rules of every redirect that has an
/// active table. Redirects and
/// tables are enabled or disabled as the plan says.
pub fn ruleset(plan: &Plan, up: &[bool]) -> Batch {
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
pub fn ruleset_for(plan: &Plan, s: &States<'_>) -> Batch {
    let mut cmds = vec![
        add(NfListObject::Table(table())),
        NfObject::CmdObject(NfCmd::Flush(FlushObject::Table(table()))),
        add(NfListObject::Chain(base_chain(
            CHAIN,
            NfChainType::NAT,
            DSTNAT,
        ))),
    ];
    if plan.redirects.iter().any(|r| r.sticky) {
        cmds.push(add(NfListObject::Chain(base_chain(
            STICKY_CHAIN,
            NfChainType::Filter,
            DSTNAT + 1,
        ))));
    }
    // Named counters outlive the flush above, so a redirect's count (relayd's pf table
    // statistics, `show redirects`) survives every rule change.
    for r in &plan.redirects {
        cmds.push(add(NfListObject::Counter(nftables::schema::Counter {
            family: NfFamily::INet,
            table: TABLE.into(),
            name: r.name.clone().into(),
            handle: None,
            packets: None,
            bytes: None,
        })));
    }
    // Sets also outlive the flush: a client keeps its host across rule changes. pf
    // forgets the source nodes of a host that goes down (relayd's sync_table calls
    // kill_srcnodes for every host of the table that is down), so a host's set is
    // emptied in the same transaction that takes its rules away, and a host that
    // comes back starts with no clients bound to it.
    let mut sets = Vec::new();
    for (i, r) in plan.redirects.iter().enumerate().filter(|(_, r)| r.sticky) {
        let up = up_addresses(plan, r, s);
        for addr in addresses(plan, r) {
            let set = sticky_set(i, r, addr);
            if !up.contains(&addr) {
                cmds.push(NfObject::CmdObject(NfCmd::Flush(FlushObject::Set(
                    Box::new(set.clone()),
                ))));
            }
            sets.push(set);
        }
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
            for rule in rules(plan, i, l, &a) {
                cmds.push(add(NfListObject::Rule(rule)));
            }
        }
    }
    Batch {
        timeouts: timeouts(plan),
        sets,
        nft: Nftables {
            objects: Cow::Owned(cmds),
        },
    }
}

fn add(obj: NfListObject<'static>) -> NfObject<'static> {
    NfObject::CmdObject(NfCmd::Add(obj))
}

fn base_chain(name: &'static str, kind: NfChainType, prio: i32) -> Chain<'static> {
    Chain {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: name.into(),
        _type: Some(kind),
        hook: Some(NfHook::Prerouting),
        prio: Some(prio),
        policy: Some(NfChainPolicy::Accept),
        ..Chain::default()
    }
}

/// The ct timeout objects the plan's rules name: one per session timeout and address
/// family of its redirects' TCP listeners. With `session timeout 0` pf keeps its
/// default established timeout, and so does conntrack here.
fn timeouts(plan: &Plan) -> Vec<CtTimeout> {
    let mut all = BTreeSet::new();
    for r in &plan.redirects {
        for l in &r.listeners {
            if let Some(t) = ct_timeout(r, l) {
                all.insert(t);
            }
        }
    }
    all.into_iter().collect()
}

fn ct_timeout(r: &Redirect, l: &RdrListener) -> Option<CtTimeout> {
    let Address::Ip(vip) = l.address else {
        return None;
    };
    (r.session_timeout_s > 0 && !l.udp).then(|| CtTimeout {
        ipv6: vip.is_ipv6(),
        established_s: r.session_timeout_s.min(MAX_TIMEOUT_S),
    })
}

/// How long a sticky source lasts after its last packet: the session timeout, as long
/// as pf keeps the source node (until the last state of the source, which lives that
/// long idle, is gone).
fn sticky_timeout(r: &Redirect) -> u32 {
    match r.session_timeout_s {
        0 => CONNTRACK_ESTABLISHED_S,
        t => t.min(MAX_TIMEOUT_S),
    }
}

/// The name of the set of the clients that redirect number `r` (its place in the plan)
/// sends to host address `host`: an nft identifier (`sticky_0_10.0.0.1`,
/// `sticky_1_fd00--1`), which a redirect's name need not be. A set only ever sends its
/// clients to its own address, and only while that address is an up host of the
/// redirect, so a reload that renumbers redirects can skew the balance for a session
/// timeout but never send a client where the redirect does not.
pub fn sticky_set_name(r: usize, host: IpAddr) -> String {
    format!("sticky_{r}_{}", host.to_string().replace(':', "-"))
}

/// A client's address is in the set of one host for as long as it keeps sending to
/// the redirect, and [`sticky_timeout`] after.
fn sticky_set(i: usize, r: &Redirect, host: IpAddr) -> Set<'static> {
    Set {
        family: NfFamily::INet,
        table: TABLE.into(),
        name: sticky_set_name(i, host).into(),
        handle: None,
        set_type: SetTypeValue::Single(if host.is_ipv4() {
            SetType::Ipv4Addr
        } else {
            SetType::Ipv6Addr
        }),
        policy: None,
        flags: Some(HashSet::from([SetFlag::Timeout])),
        elem: None,
        timeout: Some(sticky_timeout(r)),
        gc_interval: None,
        size: None,
        comment: None,
    }
}

/// The distinct addresses of the hosts of the redirect's tables, in table order.
fn addresses(plan: &Plan, r: &Redirect) -> Vec<IpAddr> {
    let mut all: Vec<IpAddr> = Vec::new();
    for rt in &r.tables {
        let Some(t) = plan.tables.get(rt.table as usize) else {
            continue;
        };
        for &h in &t.hosts {
            if let Some(Address::Ip(ip)) = plan.hosts.get(h as usize).map(|h| &h.address) {
                if !all.contains(ip) {
                    all.push(*ip);
                }
            }
        }
    }
    all
}

/// The addresses of the up hosts of the redirect's enabled tables.
fn up_addresses(plan: &Plan, r: &Redirect, s: &States<'_>) -> BTreeSet<IpAddr> {
    let mut up = BTreeSet::new();
    for rt in r.tables.iter().filter(|rt| !s.table_off(rt.table)) {
        let Some(t) = plan.tables.get(rt.table as usize) else {
            continue;
        };
        for &h in t.hosts.iter().filter(|&&h| s.up(h)) {
            if let Some(Address::Ip(ip)) = plan.hosts.get(h as usize).map(|h| &h.address) {
                up.insert(*ip);
            }
        }
    }
    up
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
pub fn removal() -> Batch {
    Batch {
        timeouts: Vec::new(),
        sets: Vec::new(),
        nft: Nftables {
            objects: Cow::Owned(vec![NfObject::CmdObject(NfCmd::Delete(
                NfListObject::Table(table()),
            ))]),
        },
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

/// The rules of one listener: in the nat chain, with `sticky-address` one DNAT per up
/// host for the clients in its set, then the balanced DNAT; in the sticky chain, per up
/// host, the rule that puts the clients it serves in its set.
fn rules(plan: &Plan, i: usize, l: &RdrListener, a: &Active) -> Vec<Rule<'static>> {
    let Some(r) = plan.redirects.get(i) else {
        return Vec::new();
    };
    let Address::Ip(vip) = l.address else {
        return Vec::new();
    };
    // One family per rule: hosts of the other family cannot take this address's packets.
    let hosts: Vec<IpAddr> = a
        .hosts
        .iter()
        .copied()
        .filter(|h| h.is_ipv4() == vip.is_ipv4())
        .collect();
    if hosts.is_empty() {
        return Vec::new();
    }
    let (ipfam, natfam) = if vip.is_ipv4() {
        ("ip", NATFamily::IP)
    } else {
        ("ip6", NATFamily::IP6)
    };
    let proto = if l.udp { "udp" } else { "tcp" };
    let dport = match l.port_hi {
        Some(hi) => Expression::Range(Box::new(Range {
            range: [
                Expression::Number(u32::from(l.port)),
                Expression::Number(u32::from(hi)),
            ],
        })),
        None => Expression::Number(u32::from(l.port)),
    };
    let iif = l.interface.as_ref().map(|ifname| {
        eq(
            meta(MetaKey::Iifname),
            Expression::String(ifname.clone().into()),
        )
    });
    let mut listener: Vec<Statement<'static>> = iif.iter().cloned().collect();
    listener.push(eq(meta(MetaKey::L4proto), Expression::String(proto.into())));
    listener.push(eq(
        payload(ipfam, "daddr"),
        Expression::String(vip.to_string().into()),
    ));
    listener.push(eq(payload(proto, "dport"), dport.clone()));
    let mut effects = vec![Statement::Counter(Counter::Named(r.name.clone().into()))];
    if let Some(tag) = &r.pftag {
        effects.push(Statement::Mangle(Mangle {
            key: meta(MetaKey::Mark),
            value: Expression::Number(mark(plan, tag)),
        }));
    }
    if let Some(t) = ct_timeout(r, l) {
        effects.push(Statement::CTTimeout(Expression::String(t.name().into())));
    }
    // relayd rewrites the port for single-port listeners only (§4.3).
    let dnat = |addr: Expression<'static>| {
        Statement::DNAT(Some(NAT {
            addr: Some(addr),
            family: Some(natfam),
            port: l
                .port_hi
                .is_none()
                .then_some(Expression::Number(u32::from(a.port))),
            flags: None,
        }))
    };
    let rule = |chain: &'static str, expr: Vec<Statement<'static>>| Rule {
        family: NfFamily::INet,
        table: TABLE.into(),
        chain: chain.into(),
        expr: Cow::Owned(expr),
        comment: Some(format!("redirect {}", r.name).into()),
        ..Rule::default()
    };
    let mut out = Vec::new();
    // A client in a host's set goes back to it; one not in any set is balanced. A
    // lookup that misses ends the rule before its counter.
    if r.sticky && hosts.len() > 1 {
        for h in &hosts {
            let mut expr = listener.clone();
            expr.push(eq(
                payload(ipfam, "saddr"),
                Expression::String(format!("@{}", sticky_set_name(i, *h)).into()),
            ));
            expr.extend(effects.iter().cloned());
            expr.push(dnat(Expression::String(h.to_string().into())));
            out.push(rule(CHAIN, expr));
        }
    }
    let addr = if let [one] = hosts.as_slice() {
        Expression::String(one.to_string().into())
    } else {
        let n = hosts.len() as u32;
        let key = match a.mode {
            Mode::SourceHash | Mode::Loadbalance => {
                Expression::Named(NamedExpression::JHash(JHash {
                    hash_mod: n,
                    offset: None,
                    expr: Box::new(payload(ipfam, "saddr")),
                    seed: None,
                }))
            }
            Mode::Random => Expression::Named(NamedExpression::Numgen(Numgen {
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
    let mut expr = listener;
    expr.extend(effects);
    expr.push(dnat(addr));
    out.push(rule(CHAIN, expr));
    if r.sticky {
        // Every packet the client sends on a redirected connection renews its entry,
        // as each keeps pf's state, and with it the source node, alive. The original
        // direction only: a reply's source is the host.
        for h in &hosts {
            let mut expr: Vec<Statement<'static>> = iif.iter().cloned().collect();
            expr.push(eq(
                ct("direction", false),
                Expression::String("original".into()),
            ));
            expr.push(eq(meta(MetaKey::L4proto), Expression::String(proto.into())));
            expr.push(eq(
                ct(
                    if vip.is_ipv4() {
                        "ip daddr"
                    } else {
                        "ip6 daddr"
                    },
                    true,
                ),
                Expression::String(vip.to_string().into()),
            ));
            expr.push(eq(ct("proto-dst", true), dport.clone()));
            expr.push(eq(
                payload(ipfam, "daddr"),
                Expression::String(h.to_string().into()),
            ));
            expr.push(Statement::Set(nftables::stmt::Set {
                op: SetOp::Update,
                elem: payload(ipfam, "saddr"),
                set: format!("@{}", sticky_set_name(i, *h)).into(),
            }));
            out.push(rule(STICKY_CHAIN, expr));
        }
    }
    out
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

/// Conntrack's `key`, of the original direction if `original`.
fn ct(key: &'static str, original: bool) -> Expression<'static> {
    Expression::Named(NamedExpression::CT(CT {
        key: key.into(),
        family: None,
        dir: original.then_some(CTDir::Original),
    }))
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
