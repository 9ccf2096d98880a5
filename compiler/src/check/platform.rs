//! relayd features that have no meaning on Linux (RD0710): OpenBSD facilities relayd-run
//! cannot reach. One warning per occurrence, on the option, saying what relayd-run does
//! instead. Features Linux has (`ip minttl` is IP_MINTTL, `rtable` a routing table,
//! `splice` splice(2)) are not reported.

use super::Ctx;
use crate::diag::{Code, Diagnostic};
use crate::parse::ast::*;
use crate::source::Span;

pub fn check(file: &File, ctx: &mut Ctx) {
    for item in &file.items {
        match item {
            Item::Global(g) => global(ctx, g),
            Item::Redirect(b) => {
                for o in &b.opts {
                    match &o.node {
                        RdrOpt::Forward { table, .. } => table_opts(ctx, table),
                        RdrOpt::Listen { pflog: true, .. } => pflog(ctx, o.span),
                        _ => {}
                    }
                }
            }
            Item::Relay(b) => {
                for o in &b.opts {
                    if let RlyOpt::Forward {
                        target: FwdTarget::Table(t),
                        ..
                    } = &o.node
                    {
                        table_opts(ctx, t);
                    }
                }
            }
            Item::Router(b) => {
                for o in &b.opts {
                    match &o.node {
                        RtOpt::Forward(t) => table_opts(ctx, t),
                        RtOpt::Rtlabel(l) => ctx.report(
                            Diagnostic::new(
                                Code::LinuxNoEquivalent,
                                o.span,
                                format!("`rtlabel {}` has no meaning on Linux: its routes carry no route labels", l.node),
                            )
                            .help("relayd-run adds the router's routes without a label; to keep them apart, put them in their own routing table with `rtable`"),
                        ),
                        _ => {}
                    }
                }
            }
            Item::HTable(b) => {
                for o in &b.opts {
                    if let HTableOpt::Demote(g) = &o.node {
                        demote(ctx, o.span, &g.node);
                    }
                }
            }
            Item::Protocol(p) => {
                // tcp options of other protocol types are RD0401's.
                let ptype = p.ptype.as_ref().map_or("tcp", |t| t.node.as_str());
                if !matches!(ptype, "tcp" | "http") {
                    continue;
                }
                for o in p.body.iter().flatten() {
                    if let ProOpt::Tcp(opts) = &o.node {
                        for t in opts {
                            if let TcpOpt::Sack(on) = t.node {
                                sack(ctx, t.span, on);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

fn global(ctx: &mut Ctx, g: &Sp<Global>) {
    let (message, help) = match &g.node {
        Global::Demote(group) => (
            format!("a global `demote {}` has no meaning on Linux: there is no carp(4) demotion counter", group.node),
            "relayd-run logs host state changes but demotes nothing; let the VRRP daemon (keepalived) track relayd-run's health instead",
        ),
        Global::Agentx { .. } => (
            "`agentx` has no meaning for relayd-run: it has no AgentX (SNMP) subagent".to_string(),
            "relayd-run reports hosts, relays and sessions on its control socket (`relayctl show …`); remove the line",
        ),
        Global::Snmp { .. } => (
            "`snmp` has no meaning for relayd-run: it sends no SNMP traps".to_string(),
            "relayd-run reports host state changes in its log and on its control socket; remove the line",
        ),
        Global::SendTrap => (
            "`send trap` has no meaning for relayd-run: it sends no SNMP traps".to_string(),
            "relayd-run reports host state changes in its log and on its control socket; remove the line",
        ),
        _ => return,
    };
    ctx.report(Diagnostic::new(Code::LinuxNoEquivalent, g.span, message).help(help));
}

fn table_opts(ctx: &mut Ctx, t: &TableRef) {
    for o in &t.opts {
        if let TableOpt::Demote(g) = &o.node {
            demote(ctx, o.span, &g.node);
        }
    }
}

fn demote(ctx: &mut Ctx, at: Span, group: &str) {
    ctx.report(
        Diagnostic::new(
            Code::LinuxNoEquivalent,
            at,
            format!("`demote {group}` has no meaning on Linux: there are no carp(4) interface groups to demote"),
        )
        .help("relayd-run still checks the table's hosts and logs when the table goes down, but demotes nothing; a VRRP daemon (keepalived) can track relayd-run instead"),
    );
}

fn pflog(ctx: &mut Ctx, listen: Span) {
    // Point at the `pflog` word of the `listen on` line when the text has it.
    let text = ctx.text(listen);
    let at = text.rfind("pflog").map_or(listen, |i| {
        let start = listen.start as usize + i;
        Span::new(listen.file, start, start + "pflog".len())
    });
    ctx.report(
        Diagnostic::new(
            Code::LinuxNoEquivalent,
            at,
            "`pflog` has no meaning on Linux: there is no pflog(4) interface",
        )
        .help("relayd-run's redirections are nftables rules and log nothing; to log redirected connections, add an nftables `log` rule of your own"),
    );
}

fn sack(ctx: &mut Ctx, at: Span, on: bool) {
    let word = if on { "sack" } else { "no sack" };
    ctx.report(
        Diagnostic::new(
            Code::LinuxNoEquivalent,
            at,
            format!("`{word}` has no meaning on Linux: SACK is not a per-socket option there"),
        )
        .help("Linux turns selective acknowledgements on or off for the whole system (sysctl net.ipv4.tcp_sack, on by default); relayd-run leaves them to the kernel"),
    );
}
