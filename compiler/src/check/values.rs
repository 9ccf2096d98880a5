//! Single values: numbers in range, ports, addresses, name lengths, health-check specs,
//! TLS flags and curves, HTTP methods. Messages are relayd's (parse.y), so the short
//! format matches `relayd -n`.

use super::Ctx;
use crate::diag::{Applicability, Code, Diagnostic};
use crate::lex::expand::closest;
use crate::parse::ast::*;
use crate::services;
use crate::source::Span;
use std::net::{Ipv4Addr, Ipv6Addr};

const INT_MAX: i64 = i32::MAX as i64;

pub fn check(file: &File, ctx: &mut Ctx) {
    for item in &file.items {
        match item {
            Item::Global(g) => global(ctx, g),
            Item::Table(t) => {
                name_len(ctx, &t.name, 64, "invalid table name");
                for o in &t.opts {
                    if let TableDefOpt::Hosts(hosts) = o {
                        for h in hosts {
                            if let HostItem::Host(h) = h {
                                host(ctx, h);
                            }
                        }
                    }
                }
            }
            Item::HTable(b) => {
                for o in &b.opts {
                    match &o.node {
                        HTableOpt::Check(c) => check_spec(ctx, c),
                        HTableOpt::Host(h) => host(ctx, h),
                        HTableOpt::RealPort(p) => port(ctx, p, false),
                        HTableOpt::Timeout(n) => {
                            at_least(ctx, n, 0, format!("invalid timeout: {}", n.node))
                        }
                        _ => {}
                    }
                }
            }
            Item::Service(b) => {
                for o in &b.opts {
                    if let SvcOpt::VirtualHost { addr, port: p, .. } = &o.node {
                        address(ctx, addr, "invalid virtual ip: ");
                        port(ctx, p, true);
                    }
                }
            }
            Item::Redirect(b) => {
                name_len_with(
                    ctx,
                    &b.name,
                    32,
                    format!("redirection name truncated: {}", b.name.text),
                );
                for o in &b.opts {
                    match &o.node {
                        RdrOpt::Forward {
                            table, interface, ..
                        } => {
                            table_ref(ctx, table);
                            if let Some(i) = interface {
                                text_len(ctx, i, 16, "interface name truncated");
                            }
                        }
                        RdrOpt::Listen {
                            addr,
                            proto,
                            port: p,
                            interface,
                            ..
                        } => {
                            address(ctx, addr, "invalid virtual ip: ");
                            if let Some(proto) = proto {
                                if !services::ip_protocol(&proto.node) {
                                    ctx.report(
                                        Diagnostic::relayd(
                                            Code::InvalidProtocolType,
                                            proto.span,
                                            format!("invalid protocol: {}", proto.node),
                                        )
                                        .help("use an IP protocol name such as `tcp` or `udp`"),
                                    );
                                }
                            }
                            port(ctx, p, true);
                            if let Some(i) = interface {
                                text_len(ctx, i, 16, "interface name truncated");
                            }
                        }
                        RdrOpt::Tag { name, .. } => text_len_with(
                            ctx,
                            name,
                            64,
                            format!("redirection tag name truncated: {}", name.node),
                        ),
                        RdrOpt::SessionTimeout(n) => session_timeout(ctx, n),
                        _ => {}
                    }
                }
            }
            Item::Relay(b) => {
                name_len(ctx, &b.name, 256, "relay name truncated");
                for o in &b.opts {
                    match &o.node {
                        RlyOpt::Listen { addr, port: p, .. } => {
                            address(ctx, addr, "invalid listen ip: ");
                            port(ctx, p, false);
                        }
                        RlyOpt::Forward { target, af, .. } => {
                            match target {
                                FwdTarget::Addr {
                                    addr,
                                    port: p,
                                    retry,
                                } => {
                                    address(ctx, addr, "invalid forward ip: ");
                                    port(ctx, p, false);
                                    retry_value(ctx, retry.as_ref());
                                }
                                FwdTarget::NatLookup { retry }
                                | FwdTarget::Destination { retry }
                                | FwdTarget::Service { retry, .. } => {
                                    retry_value(ctx, retry.as_ref())
                                }
                                FwdTarget::Table(t) => table_ref(ctx, t),
                                FwdTarget::HTable { .. } => {}
                            }
                            if let Some(Sp {
                                node: DstAf::Inet6(p),
                                ..
                            }) = af
                            {
                                if p.node.parse::<Ipv6Addr>().is_err() {
                                    ctx.report(Diagnostic::relayd(Code::InvalidAddress, p.span, format!("invalid ipv6 address {}", p.node))
                                        .help("relayd silently uses `::` for an invalid prefix; write an IPv6 prefix such as `64:ff9b::`"));
                                }
                            }
                        }
                        RlyOpt::SessionTimeout(n) => session_timeout(ctx, n),
                        _ => {}
                    }
                }
            }
            Item::Protocol(p) => protocol(ctx, p),
            Item::Router(b) => {
                name_len(ctx, &b.name, 256, "router name truncated");
                for o in &b.opts {
                    match &o.node {
                        RtOpt::Route(a) => prefix(ctx, a, "invalid host "),
                        RtOpt::Forward(t) => table_ref(ctx, t),
                        RtOpt::Rtable(n) => {
                            if !(0..=255).contains(&n.node) {
                                ctx.report(
                                    Diagnostic::relayd(
                                        Code::OutOfRange,
                                        n.span,
                                        format!("invalid rtable id {}", n.node),
                                    )
                                    .help("routing tables are 0 to 255"),
                                );
                            }
                        }
                        RtOpt::Rtlabel(l) => text_len(ctx, l, 32, "route label truncated"),
                        _ => {}
                    }
                }
            }
            Item::MacroNumber { name, value } => {
                ctx.report(
                    Diagnostic::new(Code::SyntaxError, value.span, format!("syntax error: the value of macro `{}` must be quoted", name.node))
                        .relayd_message("syntax error")
                        .help("relayd reads an unquoted number as a NUMBER token, and a macro value must be a string")
                        .fix(value.span, format!("\"{}\"", value.node), "quote the value", Applicability::MachineApplicable),
                );
            }
            Item::Include(_) | Item::Macro { .. } | Item::Error(_) => {}
        }
    }
}

fn global(ctx: &mut Ctx, g: &Sp<Global>) {
    match &g.node {
        Global::Interval(n) => at_least(ctx, n, 0, format!("invalid interval: {}", n.node)),
        Global::Timeout(n) => at_least(ctx, n, 0, format!("invalid timeout: {}", n.node)),
        Global::Prefork(n) => {
            if !(1..=32).contains(&n.node) {
                ctx.report(
                    Diagnostic::relayd(
                        Code::OutOfRange,
                        n.span,
                        format!("invalid number of preforked relays: {}", n.node),
                    )
                    .help("`prefork` takes 1 to 32"),
                );
            }
        }
        Global::Agentx { context, path } => {
            if let Some(c) = context {
                text_len(ctx, c, 32, "agentx context too long");
            }
            if let Some(p) = path {
                text_len(ctx, p, 108, "agentx path too long");
            }
        }
        Global::Demote(d) => text_len(ctx, d, 16, "yyparse: demote group name too long"),
        _ => {}
    }
}

fn protocol(ctx: &mut Ctx, p: &Protocol) {
    name_len(ctx, &p.name, 64, "protocol name truncated");
    if let Some(t) = &p.ptype {
        if !matches!(t.node.as_str(), "tcp" | "http" | "dns") {
            let mut d = Diagnostic::relayd(
                Code::InvalidProtocolType,
                t.span,
                format!("invalid protocol type: {}", t.node),
            )
            .help("a protocol is `tcp`, `http` or `dns`");
            if let Some(best) = closest(&t.node, ["tcp", "http", "dns"].into_iter()) {
                d = d.fix(
                    t.span,
                    best,
                    format!("did you mean `{best}`?"),
                    Applicability::MaybeIncorrect,
                );
            }
            ctx.report(d);
        }
    }
    for o in p.body.iter().flatten() {
        match &o.node {
            ProOpt::Tls { opts, .. } => {
                for t in opts {
                    tls_opt(ctx, t);
                }
            }
            ProOpt::Tcp(opts) => {
                for t in opts {
                    match &t.node {
                        TcpOpt::Backlog(n) => {
                            let max = ctx.release.max_backlog();
                            if !(0..=max).contains(&n.node) {
                                ctx.report(
                                    Diagnostic::relayd(
                                        Code::OutOfRange,
                                        n.span,
                                        format!("invalid backlog: {}", n.node),
                                    )
                                    .help(format!(
                                        "relayd {} accepts a backlog of 0 to {max}",
                                        ctx.release
                                    )),
                                );
                            }
                        }
                        TcpOpt::SocketBuffer(n) => {
                            at_least(ctx, n, 0, format!("invalid socket buffer size: {}", n.node))
                        }
                        TcpOpt::Ip {
                            what,
                            value,
                            keyword_ttl,
                        } => {
                            if value.node < 0 {
                                ctx.report(Diagnostic::relayd(
                                    Code::OutOfRange,
                                    value.span,
                                    format!("invalid ttl: {}", value.node),
                                ));
                            }
                            if *keyword_ttl {
                                ctx.report(Diagnostic::new(Code::KeywordAsName, what.span, "`ttl` is a keyword here: relayd's `ip` option only takes a quoted name")
                                    .relayd_message("syntax error")
                                    .fix(what.span, "\"ttl\"", "quote it", Applicability::MachineApplicable));
                            } else if !what.node.eq_ignore_ascii_case("ttl")
                                && !what.node.eq_ignore_ascii_case("minttl")
                            {
                                ctx.report(
                                    Diagnostic::relayd(
                                        Code::InvalidIpOption,
                                        what.span,
                                        format!("invalid TCP/IP flag: {}", what.node),
                                    )
                                    .help("the `ip` option takes `ttl` or `minttl`"),
                                );
                            }
                        }
                        _ => {}
                    }
                }
            }
            ProOpt::Http(opts) => {
                for t in opts {
                    if let HttpOpt::Headerlen(n) = &t.node {
                        if !(0..=131072).contains(&n.node) {
                            ctx.report(
                                Diagnostic::relayd(
                                    Code::OutOfRange,
                                    n.span,
                                    format!("invalid headerlen: {}", n.node),
                                )
                                .help("`headerlen` takes 0 to 131072 bytes"),
                            );
                        }
                    }
                }
            }
            ProOpt::Rule(r) => rule(ctx, r),
            ProOpt::LegacyLabel(Some(l)) => text_len(ctx, l, 1024, "label truncated"),
            _ => {}
        }
    }
    tls_versions(ctx, p);
}

fn rule(ctx: &mut Ctx, r: &Rule) {
    for a in [&r.from, &r.to].into_iter().flatten() {
        prefix(ctx, a, "invalid host ");
    }
    for o in &r.opts {
        match &o.node {
            RuleOpt::Method(m) => {
                if !METHODS.contains(&m.node.as_str()) {
                    let mut d = Diagnostic::relayd(
                        Code::UnknownMethod,
                        m.span,
                        "unknown HTTP method currently not supported",
                    )
                    .help("methods are matched exactly and in upper case");
                    if let Some(best) = METHODS.iter().find(|x| x.eq_ignore_ascii_case(&m.node)) {
                        d = d.fix(
                            m.span,
                            *best,
                            format!("did you mean `{best}`?"),
                            Applicability::MachineApplicable,
                        );
                    }
                    ctx.report(d);
                }
            }
            RuleOpt::PathStrip(n) => {
                if !(0..=INT_MAX).contains(&n.node) {
                    ctx.report(Diagnostic::relayd(
                        Code::OutOfRange,
                        n.span,
                        "invalid strip number",
                    ));
                }
            }
            RuleOpt::Tag(t) | RuleOpt::Tagged(t) => text_len(
                ctx,
                t,
                64,
                if matches!(o.node, RuleOpt::Tag(_)) {
                    "tag truncated"
                } else {
                    "tagged truncated"
                },
            ),
            RuleOpt::Label(l) => text_len(ctx, l, 1024, "label truncated"),
            RuleOpt::ForwardTo(n) => name_len(ctx, n, 64, "invalid forward table name"),
            _ => {}
        }
    }
}

/// The HTTP methods relayd knows (http.h), exact case.
const METHODS: &[&str] = &[
    "ACL",
    "BASELINE-CONTROL",
    "CHECKIN",
    "CHECKOUT",
    "CONNECT",
    "COPY",
    "DELETE",
    "GET",
    "HEAD",
    "LABEL",
    "LOCK",
    "MERGE",
    "MKACTIVITY",
    "MKCALENDAR",
    "MKCOL",
    "MKREDIRECTREF",
    "MKWORKSPACE",
    "MOVE",
    "OPTIONS",
    "ORDERPATCH",
    "PATCH",
    "POST",
    "PROPFIND",
    "PROPPATCH",
    "PUT",
    "REPORT",
    "SEARCH",
    "TRACE",
    "UNCHECKOUT",
    "UNLOCK",
    "UPDATE",
    "UPDATEREDIRECTREF",
    "VERSION-CONTROL",
];

fn tls_opt(ctx: &mut Ctx, t: &Sp<TlsOpt>) {
    match &t.node {
        TlsOpt::Ciphers(c) => text_len(ctx, c, 768, "tlsciphers truncated"),
        TlsOpt::Ecdhe(c) => {
            if c.node != "default" {
                for curve in c.node.split([',', ':']) {
                    if !CURVES.contains(&curve) {
                        ctx.report(
                            Diagnostic::relayd(
                                Code::InvalidCurve,
                                c.span,
                                format!("tls ecdhe {}: invalid ecdhe curve '{}'", c.node, curve),
                            )
                            .help(format!("known curves: default, {}", CURVES.join(", "))),
                        );
                        break;
                    }
                }
            }
        }
        TlsOpt::EdhParams(p) => {
            if !matches!(p.node.as_str(), "none" | "auto" | "legacy") {
                ctx.report(
                    Diagnostic::relayd(
                        Code::InvalidCurve,
                        p.span,
                        format!("tls edh params {}: invalid dhe param '{}'", p.node, p.node),
                    )
                    .help("`edh params` takes `none`, `auto` or `legacy`"),
                );
            }
        }
        TlsOpt::SessionCache(Some(n)) => {
            at_least(ctx, n, 0, format!("invalid sslcache value: {}", n.node))
        }
        TlsOpt::Flag { flag, .. } => {
            let known = if ctx.release < relaydc_spec::Release::F_FIRST {
                ["sslv2", "sslv3", "tlsv1"].contains(&flag.node.as_str())
            } else {
                TLS_FLAGS.contains(&flag.node.as_str())
            };
            if !known {
                let what = if ctx.release < relaydc_spec::Release::F_FIRST {
                    "SSL"
                } else {
                    "TLS"
                };
                let mut d = Diagnostic::relayd(
                    Code::InvalidTlsFlag,
                    flag.span,
                    format!("invalid {what} flag: {}", flag.node),
                );
                if flag.node == "sslv2" {
                    d = d.help("SSLv2 support was removed in relayd 5.6; delete the flag");
                } else if let Some(best) = closest(&flag.node, TLS_FLAGS.iter().copied()) {
                    d = d.fix(
                        flag.span,
                        best,
                        format!("did you mean `{best}`?"),
                        Applicability::MaybeIncorrect,
                    );
                }
                ctx.report(d);
            }
        }
        _ => {}
    }
}

const TLS_FLAGS: &[&str] = &[
    "sslv3",
    "tlsv1",
    "tlsv1.0",
    "tlsv1.1",
    "tlsv1.2",
    "tlsv1.3",
    "cipher-server-preference",
    "client-renegotiation",
];

/// Curve names libtls accepts.
const CURVES: &[&str] = &[
    "X25519",
    "x25519",
    "P-256",
    "P-384",
    "P-521",
    "prime256v1",
    "secp256r1",
    "secp384r1",
    "secp521r1",
    "X25519MLKEM768",
    "X448",
];

/// `invalid TLS protocol`: the flags of one protocol leave no version enabled.
fn tls_versions(ctx: &mut Ctx, p: &Protocol) {
    let legacy = ctx.release < relaydc_spec::Release::F_FIRST;
    // Version bits: [sslv3, tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3]; `tlsv1` is all TLSv1.x.
    let mut bits: u8 = if legacy { 0b00011 } else { 0b11000 };
    let mut last = None;
    for o in p.body.iter().flatten() {
        if let ProOpt::Tls { opts, .. } = &o.node {
            for t in opts {
                if let TlsOpt::Flag { on, flag } = &t.node {
                    let mask = match flag.node.as_str() {
                        "sslv3" => 0b00001,
                        "tlsv1" if legacy => 0b00010,
                        "tlsv1" => 0b11110,
                        "tlsv1.0" => 0b00010,
                        "tlsv1.1" => 0b00100,
                        "tlsv1.2" => 0b01000,
                        "tlsv1.3" => 0b10000,
                        _ => 0,
                    };
                    if mask != 0 {
                        if *on {
                            bits |= mask
                        } else {
                            bits &= !mask
                        }
                        last = Some(t.span);
                    }
                }
            }
        }
    }
    if bits == 0 {
        let at = last.unwrap_or(p.name.span);
        ctx.report(
            Diagnostic::relayd(Code::NoTlsVersion, at, "invalid TLS protocol").help(
                "these flags disable every protocol version; keep at least `tlsv1.2` or `tlsv1.3`",
            ),
        );
    }
}

fn table_ref(ctx: &mut Ctx, t: &TableRef) {
    name_len(ctx, &t.name, 64, "invalid table name");
    for o in &t.opts {
        match &o.node {
            TableOpt::Port(p) => port(ctx, p, false),
            TableOpt::Check(c) => check_spec(ctx, c),
            TableOpt::Timeout(n) => at_least(ctx, n, 0, format!("invalid timeout: {}", n.node)),
            TableOpt::Demote(d) => text_len(ctx, d, 16, "yyparse: demote group name too long"),
            TableOpt::Mode { key: Some(k), .. } => hash_key(ctx, k),
            _ => {}
        }
    }
}

fn hash_key(ctx: &mut Ctx, k: &Text) {
    if let Some(hex) = k.node.strip_prefix("0x") {
        if k.node.len() != 34 {
            ctx.report(Diagnostic::relayd(Code::InvalidHashKey, k.span, "hex key must be 128 bits (32 hex digits) long")
                .help("write `0x` and 32 hex digits, or any other string, which relayd hashes with MD5"));
        } else if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            ctx.report(Diagnostic::relayd(
                Code::InvalidHashKey,
                k.span,
                "invalid hex key",
            ));
        }
    }
}

fn check_spec(ctx: &mut Ctx, c: &Sp<Check>) {
    match &c.node {
        Check::HttpCode { kind, .. } | Check::HttpDigest { kind, .. }
            if kind.node != "http" && kind.node != "https" =>
        {
            let mut d = Diagnostic::relayd(
                Code::InvalidCheck,
                kind.span,
                format!("invalid check type: {}", kind.node),
            );
            if kind.node.eq_ignore_ascii_case("http") || kind.node.eq_ignore_ascii_case("https") {
                d = d.help("`http` is a keyword since relayd 6.5: write it unquoted, and `https` in lower case");
            }
            ctx.report(d);
        }
        Check::HttpCode { code, .. } => {
            if code.node <= 0 {
                ctx.report(Diagnostic::relayd(
                    Code::InvalidCheck,
                    code.span,
                    format!("invalid HTTP code: {}", code.node),
                ));
            }
        }
        Check::HttpDigest { digest, .. } => {
            if digest.node.len() != 32 && digest.node.len() != 40 {
                ctx.report(
                    Diagnostic::relayd(Code::InvalidCheck, digest.span, "invalid http digest")
                        .help("a digest is 40 hex digits (SHA-1) or 32 (MD5)"),
                );
            }
        }
        Check::SendExpect {
            binary,
            send,
            expect,
            ..
        } => {
            if *binary {
                match send {
                    Some(s) if s.node.is_empty() => ctx.report(Diagnostic::relayd(
                        Code::InvalidCheck,
                        s.span,
                        "empty binary send data",
                    )),
                    Some(s) if !is_hex(&s.node) => ctx.report(
                        Diagnostic::relayd(
                            Code::InvalidCheck,
                            s.span,
                            "failed in binary send data",
                        )
                        .help("binary data is an even number of hex digits"),
                    ),
                    _ => {}
                }
                if expect.node.is_empty() {
                    ctx.report(Diagnostic::relayd(
                        Code::InvalidCheck,
                        expect.span,
                        "empty binary expect data",
                    ));
                } else if expect.node.len() > 255 {
                    ctx.report(Diagnostic::relayd(
                        Code::InvalidCheck,
                        expect.span,
                        "expect buffer truncated",
                    ));
                } else if !is_hex(&expect.node) {
                    ctx.report(
                        Diagnostic::relayd(
                            Code::InvalidCheck,
                            expect.span,
                            "failed in binary expect data buffer",
                        )
                        .help("binary data is an even number of hex digits"),
                    );
                }
            } else if expect.node.len() > 255 {
                ctx.report(Diagnostic::relayd(
                    Code::InvalidCheck,
                    expect.span,
                    "yyparse: expect buffer truncated",
                ));
            }
        }
        Check::Script(p) => text_len(ctx, p, 1024, "script path truncated"),
        _ => {}
    }
}

fn is_hex(s: &str) -> bool {
    s.len().is_multiple_of(2) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn host(ctx: &mut Ctx, h: &Host) {
    text_len(ctx, &h.addr, 256, "host name truncated");
    address(ctx, &h.addr, "invalid host ");
    let mut seen: Vec<(std::mem::Discriminant<HostFlag>, i64)> = Vec::new();
    for f in &h.flags {
        let (value, what, max) = match f.node {
            HostFlag::Retry(n) => (n, "retry value", None),
            HostFlag::Parent(n) => (n, "parent value", None),
            HostFlag::Priority(n) => (n, "priority value", Some(63)),
            HostFlag::IpTtl(n) => (n, "ttl value", None),
        };
        let kind = std::mem::discriminant(&f.node);
        if seen.iter().any(|(k, v)| *k == kind && *v != 0) {
            let msg = match f.node {
                HostFlag::Priority(_) => "priority already set".to_string(),
                _ => format!("{what} already set"),
            };
            ctx.report(
                Diagnostic::relayd(Code::RepeatedHostOption, f.span, msg)
                    .help("give each host option once"),
            );
        } else if value < 0 || max.is_some_and(|m| value > m) {
            ctx.report(Diagnostic::relayd(
                Code::OutOfRange,
                f.span,
                format!("invalid {what}: {value}"),
            ));
        }
        seen.push((kind, value));
    }
}

fn retry_value(ctx: &mut Ctx, retry: Option<&Number>) {
    if let Some(n) = retry {
        at_least(ctx, n, 0, format!("invalid retry value: {}", n.node));
    }
}

fn session_timeout(ctx: &mut Ctx, n: &Number) {
    if n.node < 0 {
        ctx.report(Diagnostic::relayd(
            Code::OutOfRange,
            n.span,
            format!("invalid timeout: {}", n.node),
        ));
    } else if n.node > INT_MAX {
        ctx.report(
            Diagnostic::relayd(
                Code::OutOfRange,
                n.span,
                format!("timeout too large: {}", n.node),
            )
            .help("the largest session timeout is 2147483647 seconds"),
        );
    }
}

fn at_least(ctx: &mut Ctx, n: &Number, min: i64, message: String) {
    if n.node < min {
        ctx.report(Diagnostic::relayd(Code::OutOfRange, n.span, message));
    }
}

fn name_len(ctx: &mut Ctx, name: &Name, limit: usize, message: &str) {
    name_len_with(ctx, name, limit, message.to_string());
}

fn name_len_with(ctx: &mut Ctx, name: &Name, limit: usize, message: String) {
    if name.text.len() >= limit {
        ctx.report(
            Diagnostic::relayd(Code::NameTooLong, name.span, message)
                .help(format!("relayd keeps at most {} bytes here", limit - 1)),
        );
    }
}

fn text_len(ctx: &mut Ctx, text: &Text, limit: usize, message: &str) {
    text_len_with(ctx, text, limit, message.to_string());
}

fn text_len_with(ctx: &mut Ctx, text: &Text, limit: usize, message: String) {
    if text.node.len() >= limit {
        ctx.report(
            Diagnostic::relayd(Code::NameTooLong, text.span, message)
                .help(format!("relayd keeps at most {} bytes here", limit - 1)),
        );
    }
}

fn prefix(ctx: &mut Ctx, a: &AddrPrefix, prefix_msg: &str) {
    address(ctx, &a.addr, prefix_msg);
    if let Some(len) = &a.len {
        let max = match address_family(&a.addr.node) {
            Some(Af::Inet6) => 128,
            _ => 32,
        };
        if !(0..=max).contains(&len.node) {
            ctx.report(
                Diagnostic::relayd(
                    Code::InvalidPrefixLen,
                    len.span,
                    format!("invalid prefixlen {}", len.node),
                )
                .help(format!("the prefix length is 0 to {max} here")),
            );
        }
    }
}

/// The family of a literal address; None for names.
pub fn address_family(text: &str) -> Option<Af> {
    if text.parse::<Ipv4Addr>().is_ok() {
        Some(Af::Inet)
    } else if text
        .split('%')
        .next()
        .is_some_and(|a| a.parse::<Ipv6Addr>().is_ok())
    {
        Some(Af::Inet6)
    } else {
        None
    }
}

/// An address is an IP literal, or a name (interface, group or DNS) that `compile`
/// resolves on the deploy host. Dotted numbers that are not an IPv4 address are errors.
fn address(ctx: &mut Ctx, a: &Text, message_prefix: &str) {
    let text = a.node.as_str();
    if address_family(text).is_some() {
        return;
    }
    let dotted_numbers = text
        .split('.')
        .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    let why = if dotted_numbers {
        let parts: Vec<&str> = text.split('.').collect();
        match parts
            .iter()
            .find(|p| p.parse::<u32>().map_or(true, |n| n > 255))
        {
            Some(bad) if parts.len() == 4 => format!("`{bad}` is not a number from 0 to 255"),
            _ => "an IPv4 address has four numbers from 0 to 255".to_string(),
        }
    } else if text.contains(':') {
        "not a valid IPv6 address".to_string()
    } else if !valid_hostname(text) {
        "not a valid host or interface name".to_string()
    } else {
        return;
    };
    ctx.report(
        Diagnostic::relayd(
            Code::InvalidAddress,
            a.span,
            format!("{message_prefix}{text}"),
        )
        .help(why),
    );
}

fn valid_hostname(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 253
        && text.trim_end_matches('.').split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Checks a `port` argument; `range_ok` where relayd accepts `lo:hi` (redirect listen).
pub fn port(ctx: &mut Ctx, p: &Port, range_ok: bool) {
    match &p.value {
        PortValue::Number(n) => {
            let max = if ctx.release.rejects_port_65535() {
                65534
            } else {
                65535
            };
            if *n <= 0 || *n > max {
                ctx.report(
                    Diagnostic::relayd(Code::InvalidPort, p.span, format!("invalid port: {n}"))
                        .help(format!("a port is a number from 1 to {max}")),
                );
            }
        }
        PortValue::Name(name) => {
            if let Some((lo, hi)) = name.split_once(':') {
                if !range_ok {
                    ctx.report(
                        Diagnostic::relayd(Code::PortRange, p.span, "invalid port")
                            .help("a port range is only allowed in a redirect's `listen on`"),
                    );
                    return;
                }
                for side in [lo, hi] {
                    service(ctx, side, p.span);
                }
            } else {
                service(ctx, name, p.span);
            }
        }
    }
}

fn service(ctx: &mut Ctx, name: &str, span: Span) {
    if services::lookup(name).is_some()
        || (!name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()))
    {
        return;
    }
    let mut d = Diagnostic::relayd(Code::UnknownService, span, format!("unknown port {name}"));
    // The classic mistake: a macro name without its `$`.
    if let Some(m) = ctx.macros.iter().find(|m| m.name == name) {
        let (name_span, value) = (m.name_span, m.value.clone());
        d = d
            .label(
                name_span,
                format!("macro `{name}` is defined here as \"{value}\""),
            )
            .fix(
                span,
                format!("${name}"),
                format!("did you mean `${name}`?"),
                Applicability::MachineApplicable,
            );
    } else if let Some(best) = closest(name, services::names()) {
        d = d.fix(
            span,
            best,
            format!("did you mean `{best}`?"),
            Applicability::MaybeIncorrect,
        );
    } else {
        d = d.help("use a port number or a service name from /etc/services");
    }
    ctx.report(d);
}
