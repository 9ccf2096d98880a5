//! Options in the wrong place, and combinations relayd refuses: tcp/tls/http options by
//! protocol type, rule option combinations, forward kinds per block, options given twice,
//! table intervals and ports that depend on what came before (relayd captures them at
//! parse time, in file order).

use super::values::address_family;
use super::Ctx;
use crate::diag::{Code, Diagnostic, Severity};
use crate::parse::ast::*;
use relaydc_spec::Release;

pub fn check(file: &File, ctx: &mut Ctx) {
    let mut interval = 10;
    // relayd's `tag`/`label` statics: set by any earlier rule in the file.
    let (mut any_tag, mut any_label) = (false, false);
    for item in &file.items {
        match item {
            Item::Global(Sp {
                node: Global::Interval(n),
                ..
            }) => interval = n.node,
            Item::Protocol(p) => protocol(ctx, p, &mut any_tag, &mut any_label),
            Item::Redirect(b) => redirect(ctx, b, interval),
            Item::Relay(b) => relay(ctx, b, interval),
            Item::Router(b) => router(ctx, b, interval),
            _ => {}
        }
    }
}

fn protocol(ctx: &mut Ctx, p: &Protocol, any_tag: &mut bool, any_label: &mut bool) {
    let ptype = p.ptype.as_ref().map_or("tcp", |t| t.node.as_str());
    for o in p.body.iter().flatten() {
        match &o.node {
            ProOpt::Tcp(_) | ProOpt::Tls { .. } if !matches!(ptype, "tcp" | "http") => {
                let what = if matches!(o.node, ProOpt::Tcp(_)) {
                    "tcp"
                } else {
                    "tls"
                };
                let msg = format!("can set {what} options only for tcp or http protocols");
                let d = if ctx.release.tcp_options_need_tcp_protocol() {
                    Diagnostic::relayd(Code::TcpOptionsContext, o.span, msg).help(format!(
                        "a `{ptype}` protocol relays UDP; remove the {what} options"
                    ))
                } else {
                    Diagnostic::new(Code::TcpOptionsContext, o.span, format!("{what} options have no effect in a `{ptype}` protocol"))
                        .relayd_message(msg)
                        .severity(Severity::Warning)
                        .help(format!("relayd {} accepts them but a `{ptype}` relay never uses them; relayd 7.6 and later refuse them", ctx.release))
                };
                ctx.report(d);
            }
            ProOpt::Http(_) if ptype != "http" && ctx.release.has_http_options() => {
                ctx.report(
                    Diagnostic::relayd(
                        Code::HttpOptionsContext,
                        o.span,
                        "can set http options only for http protocol",
                    )
                    .help("declare the protocol as `http protocol NAME`"),
                );
            }
            ProOpt::Rule(r) => rule(ctx, r, any_tag, any_label),
            ProOpt::Node(n) => node(ctx, n),
            _ => {}
        }
    }
}

fn rule(ctx: &mut Ctx, r: &Rule, any_tag: &mut bool, any_label: &mut bool) {
    // Address families of `inet|inet6`, `from`, `to` must agree.
    let fams = [
        r.af.as_ref().map(|a| (a.node, a.span)),
        r.from
            .as_ref()
            .and_then(|a| address_family(&a.addr.node).map(|f| (f, a.span))),
        r.to.as_ref()
            .and_then(|a| address_family(&a.addr.node).map(|f| (f, a.span))),
    ];
    let known: Vec<(Af, crate::source::Span)> = fams.into_iter().flatten().collect();
    if let Some((_, at)) = known.iter().find(|(f, _)| *f != known[0].0) {
        ctx.report(
            Diagnostic::relayd(Code::AddressFamily, *at, "address family mismatch")
                .label(known[0].1, "the rule's address family is set here"),
        );
    }
    let response = r.dir.as_ref().is_some_and(|d| d.node == Dir::Response);
    let (mut tag, mut tagged, mut label, mut file) = (None, None, None, None);
    for o in &r.opts {
        match &o.node {
            RuleOpt::Kv { kind, option, .. } => {
                if let (KvKind::Query | KvKind::Url, Some(opt)) = (kind.node, option) {
                    if matches!(
                        opt.node,
                        KeyOption::Append | KeyOption::Set | KeyOption::Remove
                    ) {
                        ctx.report(
                            Diagnostic::relayd(
                                Code::RuleOptionCombination,
                                opt.span,
                                format!(
                                    "combining {} type and the given option is not supported",
                                    kind.node.text()
                                ),
                            )
                            .help("only `hash` and `log` apply to query and url rules"),
                        );
                    }
                }
                if response && matches!(kind.node, KvKind::Path | KvKind::Query | KvKind::Url) {
                    ctx.report(
                        Diagnostic::new(
                            Code::RuleDirection,
                            kind.span,
                            format!("a {} condition only applies to requests", kind.node.text()),
                        )
                        .relayd_message("failed to load rule")
                        .help("make it a `request` rule, or test a header in the response"),
                    );
                }
            }
            RuleOpt::PathStrip(_) if response => {
                ctx.report(
                    Diagnostic::new(
                        Code::RuleDirection,
                        o.span,
                        "`path strip` only applies to requests",
                    )
                    .relayd_message("failed to load rule"),
                );
            }
            RuleOpt::Tag(_) => repeated(ctx, &mut tag, o.span, "tag already defined"),
            RuleOpt::Tagged(_) => repeated(ctx, &mut tagged, o.span, "tagged already defined"),
            RuleOpt::Label(_) => repeated(ctx, &mut label, o.span, "label already defined"),
            RuleOpt::File { .. } => {
                repeated(ctx, &mut file, o.span, "only one file per rule supported")
            }
            RuleOpt::NoTag if !*any_tag => {
                ctx.report(
                    Diagnostic::relayd(Code::RuleNoTag, o.span, "no tag defined")
                        .help("`no tag` needs a `tag` in an earlier rule"),
                );
            }
            RuleOpt::NoLabel if !*any_label => {
                ctx.report(
                    Diagnostic::relayd(Code::RuleNoTag, o.span, "no label defined")
                        .help("`no label` needs a `label` in an earlier rule"),
                );
            }
            _ => {}
        }
    }
    *any_tag |= tag.is_some();
    *any_label |= label.is_some();
}

/// The checks relayd 5.5 made on protocol nodes (parse.y 1.180).
fn node(ctx: &mut Ctx, n: &Node) {
    let header_only = matches!(
        n.verb.node,
        NodeVerb::Append | NodeVerb::Change | NodeVerb::Remove
    );
    if header_only && n.kind.node != KvKind::Header {
        ctx.report(
            Diagnostic::relayd(
                Code::RuleOptionCombination,
                n.verb.span,
                "action only supported for headers",
            )
            .help("`append`, `change` and `remove` apply to headers only"),
        );
    }
    if matches!(n.arg, NodeArg::Digest(_)) && n.kind.node != KvKind::Url {
        ctx.report(
            Diagnostic::relayd(
                Code::RuleOptionCombination,
                n.kind.span,
                "digest not supported for this type",
            )
            .help("only `url` nodes take a digest"),
        );
    }
    if n.mark.is_some() && n.marked.is_some() {
        ctx.report(Diagnostic::relayd(
            Code::RuleOptionCombination,
            n.span,
            "either mark or marked",
        ));
    }
    for m in [&n.mark, &n.marked].into_iter().flatten() {
        if !(1..=65534).contains(&m.node) {
            ctx.report(
                Diagnostic::relayd(
                    Code::OutOfRange,
                    m.span,
                    format!("invalid mark: {}", m.node),
                )
                .help("marks are 1 to 65534"),
            );
        }
    }
}

fn repeated(
    ctx: &mut Ctx,
    first: &mut Option<crate::source::Span>,
    at: crate::source::Span,
    message: &str,
) {
    match first {
        Some(f) => ctx.report(
            Diagnostic::relayd(Code::RuleRepeated, at, message).label(*f, "first given here"),
        ),
        None => *first = Some(at),
    }
}

/// Mode and key checks shared by every `forward to <table>`.
fn table_opts(ctx: &mut Ctx, t: &TableRef, in_redirect: bool, interval: i64) {
    let mut key_seen = false;
    for o in &t.opts {
        match &o.node {
            TableOpt::Mode { mode, key } => {
                let m = mode.as_ref().map_or(Mode::Roundrobin, |m| m.node);
                let keyed = matches!(m, Mode::Loadbalance | Mode::Hash | Mode::SourceHash);
                if keyed {
                    if key_seen {
                        ctx.report(Diagnostic::relayd(
                            Code::HashKeyMode,
                            o.span,
                            "key already specified",
                        ));
                    }
                    key_seen = true;
                } else if let Some(k) = key {
                    ctx.report(
                        Diagnostic::relayd(Code::HashKeyMode, k.span, "key not supported by mode")
                            .help(format!(
                                "`{}` takes no key; only loadbalance, hash and source-hash do",
                                m.text()
                            )),
                    );
                }
                if let Some(ms) = mode {
                    if in_redirect && matches!(m, Mode::Loadbalance | Mode::Hash) {
                        ctx.report(Diagnostic::relayd(Code::ModeContext, ms.span, "mode not supported for redirections")
                            .help("redirections balance with roundrobin, random, source-hash or least-states"));
                    } else if !in_redirect && m == Mode::LeastStates {
                        ctx.report(
                            Diagnostic::relayd(
                                Code::ModeContext,
                                ms.span,
                                "mode not supported for relays",
                            )
                            .help("least-states only exists for redirections"),
                        );
                    }
                }
            }
            TableOpt::Interval(n) => {
                if interval <= 0 || n.node < interval || n.node % interval != 0 {
                    ctx.report(Diagnostic::relayd(Code::TableInterval, n.span, "table interval must be divisible by global interval")
                        .help(format!("the global interval at this point is {interval} s; use a multiple of it")));
                }
            }
            _ => {}
        }
    }
}

fn has_port(t: &TableRef) -> bool {
    t.opts.iter().any(|o| matches!(o.node, TableOpt::Port(_)))
}

fn missing_port(ctx: &mut Ctx, t: &TableRef) {
    ctx.report(Diagnostic::relayd(Code::MissingPort, t.span, "invalid port")
        .help("give the table a `port`, or put a `listen on … port` line before this one: relayd takes the port of the listen lines seen so far"));
}

fn redirect(ctx: &mut Ctx, b: &Block<RdrOpt>, interval: i64) {
    let mut listen_seen = false;
    let mut tables = 0;
    for o in &b.opts {
        match &o.node {
            RdrOpt::Listen { .. } => listen_seen = true,
            RdrOpt::Forward {
                mode,
                table,
                interface,
            } => {
                match (mode.node, interface) {
                    (FwdMode::Forward, Some(i)) => ctx.report(
                        Diagnostic::relayd(Code::ForwardKind, i.span, "superfluous interface")
                            .help("`interface` belongs to `route to` (direct server return)"),
                    ),
                    (FwdMode::Route, None) => ctx.report(
                        Diagnostic::relayd(
                            Code::ForwardKind,
                            mode.span,
                            "missing interface to route to",
                        )
                        .help("add `interface NAME` after the table"),
                    ),
                    (FwdMode::Transparent, _) => ctx.report(
                        Diagnostic::relayd(
                            Code::ForwardKind,
                            mode.span,
                            "no transparent forward here",
                        )
                        .help("transparent forwarding is a relay option"),
                    ),
                    _ => {}
                }
                tables += 1;
                if tables == 3 {
                    ctx.report(
                        Diagnostic::relayd(
                            Code::RepeatedOption,
                            o.span,
                            "only one backup table is allowed",
                        )
                        .help("the first table is the main one, the second the backup"),
                    );
                }
                table_opts(ctx, table, true, interval);
                if !listen_seen && !has_port(table) {
                    missing_port(ctx, table);
                }
            }
            _ => {}
        }
    }
}

fn relay(ctx: &mut Ctx, b: &Block<RlyOpt>, interval: i64) {
    let mut listen_seen = false;
    let mut protocol: Option<crate::source::Span> = None;
    let mut address_target: Option<crate::source::Span> = None;
    for o in &b.opts {
        match &o.node {
            RlyOpt::Listen { .. } => listen_seen = true,
            RlyOpt::Protocol(_) => match protocol {
                Some(first) => ctx.report(
                    Diagnostic::relayd(
                        Code::RepeatedOption,
                        o.span,
                        "more than one protocol specified",
                    )
                    .label(first, "the relay's protocol is set here"),
                ),
                None => protocol = Some(o.span),
            },
            RlyOpt::Forward {
                mode,
                target,
                interface,
                ..
            } => {
                if mode.node == FwdMode::Route {
                    ctx.report(
                        Diagnostic::relayd(Code::ForwardKind, mode.span, "no route for relays")
                            .help("`route to` is for redirections; relays `forward to`"),
                    );
                }
                if let Some(i) = interface {
                    if ctx.release >= Release::F_FIRST || mode.node != FwdMode::Transparent {
                        ctx.report(
                            Diagnostic::new(
                                Code::ForwardKind,
                                i.span,
                                "`interface` is not a relay forward option here",
                            )
                            .relayd_message(
                                if ctx.release >= Release::F_FIRST {
                                    "syntax error"
                                } else {
                                    "superfluous interface"
                                },
                            ),
                        );
                    }
                }
                match target {
                    FwdTarget::Addr { .. } => match address_target {
                        Some(first) => ctx.report(
                            Diagnostic::relayd(
                                Code::RepeatedOption,
                                o.span,
                                format!(
                                    "relay {} target or redirection already specified",
                                    b.name.text
                                ),
                            )
                            .label(first, "the relay's target is set here"),
                        ),
                        None => address_target = Some(o.span),
                    },
                    FwdTarget::Table(t) => {
                        table_opts(ctx, t, false, interval);
                        if !listen_seen && !has_port(t) {
                            missing_port(ctx, t);
                        }
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }
}

fn router(ctx: &mut Ctx, b: &Block<RtOpt>, interval: i64) {
    let mut family = None;
    let mut table: Option<crate::source::Span> = None;
    let mut rtable: Option<crate::source::Span> = None;
    for o in &b.opts {
        match &o.node {
            RtOpt::Route(a) => {
                if let Some(f) = address_family(&a.addr.node) {
                    match family {
                        Some((first, at)) if first != f => ctx.report(
                            Diagnostic::relayd(
                                Code::AddressFamily,
                                a.span,
                                format!("router {} address family mismatch", b.name.text),
                            )
                            .label(at, "the first route sets the family"),
                        ),
                        None => family = Some((f, a.span)),
                        _ => {}
                    }
                }
            }
            RtOpt::Forward(t) => {
                match table {
                    Some(first) => ctx.report(
                        Diagnostic::relayd(
                            Code::RepeatedOption,
                            o.span,
                            format!("router {} table already specified", b.name.text),
                        )
                        .label(first, "the gateway table is set here"),
                    ),
                    None => table = Some(o.span),
                }
                table_opts(ctx, t, false, interval);
            }
            RtOpt::Rtable(n) => match rtable {
                // relayd only notices a repeated rtable when the first one was not 0.
                Some(first) => ctx.report(
                    Diagnostic::relayd(
                        Code::RepeatedOption,
                        o.span,
                        format!("router {} rtable already specified", b.name.text),
                    )
                    .label(first, "set here"),
                ),
                None if n.node != 0 => rtable = Some(o.span),
                None => {}
            },
            _ => {}
        }
    }
}
