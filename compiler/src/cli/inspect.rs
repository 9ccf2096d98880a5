//! `relaydc inspect plan.bin`: what a plan holds, as relayd-run will run it.
//!
//! The text form names things the way relayd.conf and relayctl do (relayd's ids, table
//! instances `name:port`, rules in relayd's syntax); `--format json` dumps the plan
//! types as they are. Private keys are never printed, only counted.

use relaydc_spec::filter::{
    self, Action, Direction, Entity, Key, KeyOption, Pattern, Rule, SetOrClear, ValueTest,
};
use relaydc_spec::plan::{self, container, Address, Check, Material, Plan, Target};
use std::io::Write;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// `text` (default) or `json`.
    #[arg(long, value_parser = ["text", "json"], default_value = "text")]
    pub format: String,
    /// The plan file.
    pub plan: PathBuf,
}

pub fn run(args: &InspectArgs, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let bytes = match std::fs::read(&args.plan) {
        Ok(b) => b,
        Err(e) => {
            let _ = writeln!(err, "relaydc: cannot read {}: {e}", args.plan.display());
            return 2;
        }
    };
    let opened = match container::open(&bytes) {
        Ok(o) => o,
        Err(e) => {
            let _ = writeln!(err, "relaydc: {}: {e}", args.plan.display());
            return 1;
        }
    };
    let plan = match plan::decode(opened.body) {
        Ok(p) => p,
        Err(e) => {
            let _ = writeln!(err, "relaydc: {}: {e}", args.plan.display());
            return 1;
        }
    };
    let keys = if opened.keys.is_empty() {
        0
    } else {
        match plan::decode_keys(opened.keys) {
            Ok(k) => k.keys.len(),
            Err(e) => {
                let _ = writeln!(err, "relaydc: {}: {e}", args.plan.display());
                return 1;
            }
        }
    };
    let h = &opened.header;
    let result = if args.format == "json" {
        let doc = serde_json::json!({
            "header": {
                "format_version": h.format_version,
                "compiler_version": h.compiler_version,
                "late_bind": h.flags.contains(container::Flags::LATE_BIND),
                "source_digest": hex(&h.source_digest),
                "body_bytes": h.body_len,
                "body_sha256": hex(&h.body_sha256),
                "keys_bytes": h.keys_len,
                "private_keys": keys,
            },
            "plan": plan,
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&doc).unwrap_or_default()
        )
    } else {
        let mut s = String::new();
        header(&mut s, h, keys);
        dump(&mut s, &plan);
        out.write_all(s.as_bytes())
    };
    if result.is_err() {
        return 2;
    }
    0
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn header(s: &mut String, h: &container::Header, keys: usize) {
    use std::fmt::Write;
    let _ = writeln!(
        s,
        "plan format {}, written by {}",
        h.format_version, h.compiler_version
    );
    let _ = writeln!(
        s,
        "binding: {}",
        if h.flags.contains(container::Flags::LATE_BIND) {
            "late (relayd-run resolves names and reads TLS files at start)"
        } else {
            "at compile time (addresses resolved, TLS material embedded)"
        }
    );
    let _ = writeln!(s, "sources sha256: {}", hex(&h.source_digest));
    let _ = writeln!(
        s,
        "body: {} bytes, sha256 {}",
        h.body_len,
        hex(&h.body_sha256)
    );
    let _ = writeln!(
        s,
        "keys: {} bytes, {keys} private key{}",
        h.keys_len,
        if keys == 1 { "" } else { "s" }
    );
}

fn addr(a: &Address) -> String {
    match a {
        Address::Ip(ip) if ip.is_ipv6() => format!("[{ip}]"),
        Address::Ip(ip) => ip.to_string(),
        Address::Name(n) => format!("{n} (resolved at start)"),
    }
}

fn material(m: &Material) -> String {
    match m {
        Material::Embedded(b) => format!(
            "embedded, {} bytes, sha256 {}",
            b.len(),
            plan::sha256_hex(b)
        ),
        Material::Paths(p) => format!("read at start from {}", p.join(" or ")),
    }
}

fn check(c: &Check) -> String {
    match c {
        Check::None => "no check (hosts count as up)".into(),
        Check::Icmp => "check icmp".into(),
        Check::Tcp => "check tcp".into(),
        Check::Tls => "check tls".into(),
        Check::Http {
            tls,
            path,
            host,
            expect,
        } => format!(
            "check {} \"{path}\"{} {}",
            if *tls { "https" } else { "http" },
            host.as_ref()
                .map(|h| format!(" host \"{h}\""))
                .unwrap_or_default(),
            match expect {
                plan::HttpExpect::Code(c) => format!("code {c}"),
                plan::HttpExpect::Digest(d) => format!("digest \"{d}\""),
            }
        ),
        Check::SendExpect {
            send,
            expect,
            binary,
            tls,
        } => format!(
            "check {}send {} expect {:?}{}",
            if *binary { "binary " } else { "" },
            send.as_ref().map_or("nothing".to_string(), |s| format!(
                "{:?}",
                String::from_utf8_lossy(s)
            )),
            String::from_utf8_lossy(expect),
            if *tls { " tls" } else { "" }
        ),
        Check::Script(p) => format!("check script \"{p}\""),
    }
}

fn mode(m: &plan::Mode) -> &'static str {
    match m {
        plan::Mode::Roundrobin => "roundrobin",
        plan::Mode::Loadbalance => "loadbalance",
        plan::Mode::Hash => "hash",
        plan::Mode::SourceHash => "source-hash",
        plan::Mode::Random => "random",
        plan::Mode::LeastStates => "least-states",
    }
}

fn dump(s: &mut String, p: &Plan) {
    use std::fmt::Write;
    let _ = writeln!(s, "sources: {}", p.sources.join(", "));
    let _ = writeln!(s, "relayd release: {}", p.release);
    let g = &p.globals;
    let log = &g.log;
    let mut logs = Vec::new();
    if log.state_changes {
        logs.push("state changes");
    }
    if log.host_checks {
        logs.push("host checks");
    }
    match log.connection {
        plan::ConnectionLog::All => logs.push("connection"),
        plan::ConnectionLog::Errors => logs.push("connection errors"),
        plan::ConnectionLog::Off => {}
    }
    if log.verbose {
        logs.push("verbose");
    }
    let _ = writeln!(
        s,
        "\nglobals: interval {} s, timeout {} ms, prefork {}, socket {}, log {}",
        g.interval_s,
        g.timeout_ms,
        g.prefork,
        g.socket,
        if logs.is_empty() {
            "brief".to_string()
        } else {
            logs.join(", ")
        }
    );
    for (i, t) in p.tables.iter().enumerate() {
        let _ = writeln!(
            s,
            "\ntable {} {}: {}, timeout {} ms{}{}{}",
            i + 1,
            t.name,
            check(&t.check),
            t.timeout_ms,
            if t.skip > 0 {
                format!(", checked every {} ticks", u64::from(t.skip) + 2)
            } else {
                String::new()
            },
            t.demote
                .as_ref()
                .map(|d| format!(", demote {d}"))
                .unwrap_or_default(),
            if t.disabled { ", disabled" } else { "" }
        );
        for h in &t.hosts {
            let Some(host) = p.hosts.get(*h as usize) else {
                continue;
            };
            let _ = writeln!(
                s,
                "  host {} {}{}{}{}{}",
                h + 1,
                match &host.address {
                    Address::Ip(ip) if ip.to_string() == host.name => host.name.clone(),
                    Address::Name(_) => addr(&host.address),
                    a => format!("{} ({})", host.name, addr(a)),
                },
                if host.retry > 0 {
                    format!(", retry {}", host.retry)
                } else {
                    String::new()
                },
                host.parent
                    .map(|x| format!(", parent {x}"))
                    .unwrap_or_default(),
                host.priority
                    .map(|x| format!(", priority {x}"))
                    .unwrap_or_default(),
                host.ip_ttl
                    .map(|x| format!(", ip ttl {x}"))
                    .unwrap_or_default(),
            );
        }
    }
    for (i, r) in p.relays.iter().enumerate() {
        let _ = writeln!(
            s,
            "\nrelay {} {}{}",
            i + 1,
            r.name,
            if r.disabled { " (disabled)" } else { "" }
        );
        for l in &r.listeners {
            let _ = writeln!(
                s,
                "  listen on {} port {}{}",
                addr(&l.address),
                l.port,
                if l.tls { " tls" } else { "" }
            );
        }
        let _ = writeln!(
            s,
            "  protocol {}",
            r.protocol
                .and_then(|x| p.protocols.get(x as usize))
                .map_or("default (tcp)".to_string(), |x| x.name.clone())
        );
        for f in &r.forwards {
            let target = match &f.target {
                Target::Table {
                    table,
                    mode: m,
                    key,
                } => format!(
                    "table {} mode {}{}",
                    p.tables
                        .get(*table as usize)
                        .map_or("?", |t| t.name.as_str()),
                    mode(m),
                    match key {
                        Some(k) => format!(" key 0x{}", hex(k)),
                        None if matches!(
                            m,
                            plan::Mode::Hash | plan::Mode::Loadbalance | plan::Mode::SourceHash
                        ) =>
                            " key drawn at start".to_string(),
                        None => String::new(),
                    }
                ),
                Target::Addr {
                    address,
                    port,
                    retry,
                } => format!(
                    "{} port {port}{}",
                    addr(address),
                    if *retry > 0 {
                        format!(" retry {retry}")
                    } else {
                        String::new()
                    }
                ),
                Target::NatLookup { retry } => format!(
                    "nat lookup{}",
                    if *retry > 0 {
                        format!(" retry {retry}")
                    } else {
                        String::new()
                    }
                ),
                Target::Destination { retry } => format!(
                    "destination{}",
                    if *retry > 0 {
                        format!(" retry {retry}")
                    } else {
                        String::new()
                    }
                ),
            };
            let _ = writeln!(
                s,
                "  {}forward{} to {target}{}{}",
                if f.transparent { "transparent " } else { "" },
                if f.tls { " with tls" } else { "" },
                match &f.af {
                    Some(plan::AfMap::Inet) => " inet".to_string(),
                    Some(plan::AfMap::Inet6(p)) => format!(" inet6 {p}"),
                    None => String::new(),
                },
                f.proxy_protocol
                    .map(|v| format!(" proxy-protocol v{v}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(s, "  session timeout {} s", r.session_timeout_s);
        for k in &r.keypairs {
            if let Some(kp) = p.keypairs.get(*k as usize) {
                let _ = writeln!(
                    s,
                    "  keypair {}: certificates {}; key {}",
                    kp.name,
                    material(&kp.certs),
                    match &kp.key {
                        plan::KeyRef::Section(_) => "in the keys section".to_string(),
                        plan::KeyRef::Paths(ps) =>
                            format!("read at start from {}", ps.join(" or ")),
                    }
                );
            }
        }
        for (name, t) in p.rule_tables.iter().zip(&r.rule_tables) {
            if let Some(t) = t.and_then(|t| p.tables.get(t as usize)) {
                let _ = writeln!(s, "  rules' forward to <{name}> means {}", t.name);
            }
        }
    }
    for (i, pr) in p.protocols.iter().enumerate() {
        let kind = match pr.kind {
            plan::ProtocolKind::Tcp => "tcp",
            plan::ProtocolKind::Http => "http",
            plan::ProtocolKind::Dns => "dns",
        };
        let _ = writeln!(s, "\n{kind} protocol {} {}", i + 1, pr.name);
        let t = &pr.tcp;
        let _ = writeln!(
            s,
            "  tcp: {}, {}sack, {}splice, backlog {}{}{}{}",
            match t.nodelay {
                Some(true) => "nodelay",
                Some(false) => "no nodelay",
                None => "nodelay (default)",
            },
            if t.sack { "" } else { "no " },
            if t.splice { "" } else { "no " },
            t.backlog,
            t.socket_buffer
                .map(|b| format!(", socket buffer {b}"))
                .unwrap_or_default(),
            t.ip_ttl
                .map(|b| format!(", ip ttl {b}"))
                .unwrap_or_default(),
            t.ip_minttl
                .map(|b| format!(", ip minttl {b}"))
                .unwrap_or_default(),
        );
        if matches!(pr.kind, plan::ProtocolKind::Http) {
            let _ = writeln!(
                s,
                "  http: headerlen {}, {}websockets",
                pr.http.headerlen,
                if pr.http.websockets { "" } else { "no " }
            );
        }
        let tls = &pr.tls;
        let _ = writeln!(
            s,
            "  tls: {}, {} cipher suites, key exchange {:?}, {}session tickets{}{}{}",
            match (tls.tls12, tls.tls13) {
                (true, true) => "TLS 1.2 and 1.3",
                (true, false) => "TLS 1.2",
                (false, true) => "TLS 1.3",
                (false, false) => "no TLS version",
            },
            tls.cipher_suites.len(),
            tls.kx_groups,
            if tls.session_tickets { "" } else { "no " },
            tls.ca_file
                .as_ref()
                .map(|m| format!(", ca file {}", material(m)))
                .unwrap_or_default(),
            tls.client_ca
                .as_ref()
                .map(|m| format!(", client ca {}", material(m)))
                .unwrap_or_default(),
            tls.inspection_ca
                .map(|_| ", TLS inspection CA")
                .unwrap_or_default(),
        );
        if let Some(e) = &pr.return_error {
            let _ = writeln!(
                s,
                "  return error{}",
                e.style
                    .as_ref()
                    .map(|x| format!(" style \"{x}\""))
                    .unwrap_or_default()
            );
        }
        for (n, r) in pr.rules.iter().enumerate() {
            let _ = writeln!(s, "  rule {}: {}", n + 1, rule(p, r));
        }
    }
    for (i, r) in p.redirects.iter().enumerate() {
        let _ = writeln!(
            s,
            "\nredirect {} {}{}",
            i + 1,
            r.name,
            if r.disabled { " (disabled)" } else { "" }
        );
        for l in &r.listeners {
            let _ = writeln!(
                s,
                "  listen on {}{} port {}{}{}",
                addr(&l.address),
                if l.udp { " udp" } else { "" },
                l.port,
                l.port_hi.map(|h| format!(":{h}")).unwrap_or_default(),
                l.interface
                    .as_ref()
                    .map(|x| format!(" interface {x}"))
                    .unwrap_or_default()
            );
        }
        for (k, t) in r.tables.iter().enumerate() {
            let _ = writeln!(
                s,
                "  {}{} to table {} mode {}{}",
                if k > 0 { "backup: " } else { "" },
                if t.route { "route" } else { "forward" },
                p.tables
                    .get(t.table as usize)
                    .map_or("?", |x| x.name.as_str()),
                mode(&t.mode),
                t.interface
                    .as_ref()
                    .map(|x| format!(" interface {x}"))
                    .unwrap_or_default()
            );
        }
        let _ = writeln!(
            s,
            "  session timeout {} s{}{}",
            r.session_timeout_s,
            if r.sticky { ", sticky-address" } else { "" },
            r.pftag
                .as_ref()
                .map(|x| format!(", pftag {x}"))
                .unwrap_or_default()
        );
    }
    for (i, r) in p.routers.iter().enumerate() {
        let _ = writeln!(
            s,
            "\nrouter {} {}{}",
            i + 1,
            r.name,
            if r.disabled { " (disabled)" } else { "" }
        );
        for rt in &r.routes {
            let _ = writeln!(s, "  route {}/{}", rt.address, rt.prefixlen);
        }
        if let Some(t) = r.table.and_then(|t| p.tables.get(t as usize)) {
            let _ = writeln!(s, "  forward to table {}", t.name);
        }
        if let Some(t) = r.rtable {
            let _ = writeln!(s, "  rtable {t}");
        }
        if let Some(l) = &r.rtlabel {
            let _ = writeln!(s, "  rtlabel \"{l}\"");
        }
    }
}

fn pattern(p: &Pattern) -> String {
    match p {
        Pattern::Glob {
            text,
            case: filter::Case::Sensitive,
            ..
        } => format!("\"{text}\""),
        Pattern::Glob {
            text,
            case: filter::Case::Insensitive,
            ..
        } => format!("\"{text}\" (any case)"),
        Pattern::Lua { text } => format!("pattern \"{text}\""),
    }
}

/// A rule in relayd's syntax, with names for ids.
fn rule(p: &Plan, r: &Rule) -> String {
    let mut out = vec![match r.action {
        Action::Pass => "pass",
        Action::Block => "block",
        Action::Match => "match",
    }
    .to_string()];
    out.push(match r.direction {
        Direction::Request => "request".into(),
        Direction::Response => "response".into(),
    });
    if r.quick {
        out.push("quick".into());
    }
    match r.family {
        Some(filter::Family::Inet) => out.push("inet".into()),
        Some(filter::Family::Inet6) => out.push("inet6".into()),
        None => {}
    }
    if let Some(f) = &r.from {
        out.push(format!("from {}/{}", f.addr, f.len));
    }
    if let Some(t) = &r.to {
        out.push(format!("to {}/{}", t.addr, t.len));
    }
    if let Some(m) = &r.method {
        out.push(format!("method {m}"));
    }
    for t in &r.tests {
        let mut w = vec![match t.entity {
            Entity::Header => "header",
            Entity::Cookie => "cookie",
            Entity::Path => "path",
            Entity::Query => "query",
            Entity::Url => "url",
        }
        .to_string()];
        if let Some(o) = t.option {
            w.push(
                match o {
                    KeyOption::Append => "append",
                    KeyOption::Set => "set",
                    KeyOption::Remove => "remove",
                    KeyOption::Hash => "hash",
                    KeyOption::Log => "log",
                }
                .into(),
            );
        }
        match &t.key {
            Key::Any => {}
            Key::Pattern(k) => w.push(pattern(k)),
            Key::Digest { hex, .. } => w.push(format!("digest \"{hex}\"")),
        }
        match &t.value {
            ValueTest::Any => {}
            ValueTest::Matches(v) => w.push(format!("value {}", pattern(v))),
            ValueTest::NoneOf(alts) => w.push(format!(
                "expected one of {}",
                alts.iter().map(pattern).collect::<Vec<_>>().join(", ")
            )),
        }
        if let Some(v) = &t.write {
            w.push(format!("value \"{v}\""));
        }
        out.push(w.join(" "));
    }
    if let Some(x) = r.strip {
        out.push(format!("path strip {x}"));
    }
    if let Some(t) = r.table.and_then(|t| p.rule_tables.get(t as usize)) {
        out.push(format!("forward to <{t}>"));
    }
    let name = |list: &[String], id: u32| list.get(id as usize).cloned().unwrap_or_default();
    if let Some(t) = r.tagged {
        out.push(format!("tagged \"{}\"", name(&p.tags, t)));
    }
    match r.tag {
        Some(SetOrClear::Set(t)) => out.push(format!("tag \"{}\"", name(&p.tags, t))),
        Some(SetOrClear::Clear) => out.push("no tag".into()),
        None => {}
    }
    match r.label {
        Some(SetOrClear::Set(t)) => out.push(format!("label \"{}\"", name(&p.labels, t))),
        Some(SetOrClear::Clear) => out.push("no label".into()),
        None => {}
    }
    if let Some(l) = r.legacy {
        out.push(format!("(relayd ≤ 5.5 {l:?} node)").to_lowercase());
    }
    out.join(" ")
}
