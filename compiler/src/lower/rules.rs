//! Protocols: their tcp, tls and http options, and their filter rules.
//!
//! Filter rules of relayd 5.6 and later map one to one onto [`relaydc_spec::filter::Rule`].
//! Protocol nodes of relayd 4.3–5.5 (`header append V to K`, `request header expect V
//! from K`, …) are lowered onto the same type with their own meaning kept: their value
//! globs ignore case, several `expect` nodes for one header are alternatives (one rule
//! with [`ValueTest::NoneOf`]), `append` joins with a comma, and a protocol-level
//! `label` applies to the nodes that follow it.

use super::Lowerer;
use crate::diag::{Code, Diagnostic};
use crate::ir::*;
use crate::parse::ast::{self, KvKind, NodeArg, NodeVerb, ProOpt, RuleOpt, TcpOpt, TlsOpt};
use crate::source::Span;
use relaydc_spec::filter::{
    self as f, Case, EntityTest, Key, Legacy, Pattern, SetOrClear, ValueTest,
};
use std::collections::HashMap;
use std::net::IpAddr;

impl Lowerer<'_> {
    pub(super) fn protocol(&mut self, p: &ast::Protocol) {
        let name = p.name.text.clone();
        if name == "default" || self.protocols.contains_key(&name) {
            let mut d = Diagnostic::relayd(
                Code::DuplicateName,
                p.name.span,
                format!("protocol {name} defined twice"),
            );
            if let Some(first) = self.protocols.get(&name) {
                d = d.label(
                    self.config.protocols[first.index()].span,
                    "first defined here",
                );
            } else {
                d = d.help(
                    "`default` is the name of relayd's built-in tcp protocol; choose another name",
                );
            }
            self.report(d);
            return;
        }
        let mut kind = match p.ptype.as_ref().map(|t| t.node.as_str()) {
            Some("http") => ProtocolKind::Http,
            Some("dns") => ProtocolKind::Dns,
            _ => ProtocolKind::Tcp,
        };
        let mut proto = Protocol {
            name: name.clone(),
            span: p.name.span,
            kind,
            tcp: TcpOptions::default(),
            http: HttpOptions::default(),
            tls: TlsOptions::default(),
            return_error: None,
            rules: Vec::new(),
            rule_info: Vec::new(),
            legacy_nodes: false,
            users: Vec::new(),
        };
        let mut label: Option<u32> = None;
        let mut lowered: Vec<RuleIr> = Vec::with_capacity(p.body.as_ref().map_or(0, Vec::len));
        // Legacy `expect` nodes per (direction, entity, key): index of their rule.
        let mut expects: HashMap<(f::Direction, f::Entity, String), usize> = HashMap::new();
        for o in p.body.iter().flatten() {
            match &o.node {
                ProOpt::HType(t) => {
                    kind = match t.node.as_str() {
                        "http" => ProtocolKind::Http,
                        "dns" => ProtocolKind::Dns,
                        _ => ProtocolKind::Tcp,
                    };
                    proto.kind = kind;
                }
                ProOpt::Tcp(opts) => tcp_options(&mut proto.tcp, opts),
                ProOpt::Http(opts) => {
                    for h in opts {
                        match &h.node {
                            ast::HttpOpt::Headerlen(n) if (0..=131072).contains(&n.node) => {
                                proto.http.headerlen = n.node as u32
                            }
                            ast::HttpOpt::Websockets(on) => proto.http.websockets = *on,
                            _ => {}
                        }
                    }
                }
                ProOpt::Tls { opts, .. } => tls_options(&mut proto.tls, opts),
                ProOpt::ReturnError { styles } => {
                    proto.return_error = Some(styles.iter().map(|s| s.node.clone()).collect())
                }
                ProOpt::Rule(r) => {
                    for rule in self.rule(r) {
                        lowered.push(rule);
                    }
                }
                ProOpt::LegacyLabel(l) => {
                    label = l.as_ref().map(|t| self.label(&t.node));
                }
                ProOpt::Node(n) => {
                    proto.legacy_nodes = true;
                    self.node(n, label, &mut lowered, &mut expects);
                }
                ProOpt::Include(_) | ProOpt::Error => {}
            }
        }
        proto.rules.reserve_exact(lowered.len());
        proto.rule_info.reserve_exact(lowered.len());
        for r in lowered {
            proto.rules.push(r.rule);
            proto.rule_info.push(RuleInfo {
                span: r.span,
                forward: r.forward,
                test_spans: r.test_spans,
                tagged_span: r.tagged_span,
            });
        }
        let id = ProtocolId(self.config.protocols.len() as u32);
        self.protocols.insert(name, id);
        self.config.protocols.push(proto);
    }

    /// One current-syntax rule; a `file` rule becomes one rule per key in the file.
    fn rule(&mut self, r: &ast::Rule) -> Vec<RuleIr> {
        let mut rule = f::Rule {
            action: match r.action.node {
                ast::Action::Pass => f::Action::Pass,
                ast::Action::Block => f::Action::Block,
                ast::Action::Match => f::Action::Match,
            },
            direction: direction(r.dir.as_ref().map(|d| d.node)),
            quick: r.quick.is_some(),
            family: r.af.as_ref().map(|a| family(a.node)),
            from: r.from.as_ref().and_then(prefix),
            to: r.to.as_ref().and_then(prefix),
            method: None,
            tests: Vec::new(),
            tagged: None,
            tag: None,
            label: None,
            table: None,
            strip: None,
            legacy: None,
        };
        let mut ir = RuleIr {
            rule: f::Rule { ..rule.clone() },
            span: r.span,
            forward: None,
            test_spans: Vec::new(),
            tagged_span: None,
        };
        let mut file: Option<(&ast::Text, Option<&ast::Value>)> = None;
        let mut last_kind = None;
        for o in &r.opts {
            match &o.node {
                RuleOpt::Method(m) => rule.method = Some(m.node.clone()),
                RuleOpt::Kv { kind, option, key } => {
                    last_kind = Some(kind.node);
                    let test =
                        entity_test(kind.node, option.as_ref().map(|o| o.node), key.as_ref());
                    set_test(&mut rule.tests, &mut ir.test_spans, test, o.span);
                }
                RuleOpt::PathStrip(n) => {
                    rule.strip = u32::try_from(n.node).ok();
                }
                RuleOpt::ForwardTo(t) => {
                    if let Some(tpl) = self.find_template(t, "undefined forward table".to_string())
                    {
                        ir.forward = Some((tpl, t.span));
                    }
                }
                RuleOpt::Tag(t) if rule.tag.is_none() => {
                    rule.tag = Some(SetOrClear::Set(self.tag(&t.node)))
                }
                RuleOpt::NoTag if rule.tag.is_none() => rule.tag = Some(SetOrClear::Clear),
                RuleOpt::Tagged(t) if rule.tagged.is_none() => {
                    rule.tagged = Some(self.tag(&t.node));
                    ir.tagged_span = Some(o.span);
                }
                RuleOpt::Label(t) if rule.label.is_none() => {
                    rule.label = Some(SetOrClear::Set(self.label(&t.node)))
                }
                RuleOpt::NoLabel if rule.label.is_none() => rule.label = Some(SetOrClear::Clear),
                RuleOpt::File { path, value } if file.is_none() => {
                    file = Some((path, value.as_ref()))
                }
                _ => {}
            }
        }
        ir.rule = rule;
        let Some((path, value)) = file else {
            return vec![ir];
        };
        // relayd clones the rule once per key read from the file, for the entity the
        // rule names (header if none).
        let Ok(text) = std::fs::read_to_string(self.paths.host_path(&path.node)) else {
            return Vec::new(); // unreadable: reported by the file checks
        };
        let kind = last_kind.unwrap_or(KvKind::Header);
        let mut out = Vec::new();
        for line in text.lines() {
            let key = line.split([' ', '\t']).next().unwrap_or("");
            if key.is_empty() || key.starts_with('#') {
                continue;
            }
            let mut clone = RuleIr {
                rule: ir.rule.clone(),
                span: ir.span,
                forward: ir.forward,
                test_spans: ir.test_spans.clone(),
                tagged_span: ir.tagged_span,
            };
            let test = EntityTest {
                entity: entity(kind),
                option: None,
                key: Key::Pattern(key_pattern(kind, key, false)),
                value: value.map_or(ValueTest::Any, |v| {
                    ValueTest::Matches(value_pattern(
                        kind,
                        &v.node_text(),
                        v.pattern.is_some(),
                        false,
                    ))
                }),
                write: None,
            };
            set_test(
                &mut clone.rule.tests,
                &mut clone.test_spans,
                test,
                path.span,
            );
            out.push(clone);
        }
        out
    }

    /// One relayd ≤ 5.5 protocol node.
    fn node(
        &mut self,
        n: &ast::Node,
        label: Option<u32>,
        rules: &mut Vec<RuleIr>,
        expects: &mut HashMap<(f::Direction, f::Entity, String), usize>,
    ) {
        let dir = direction(n.dir.as_ref().map(|d| d.node));
        let ent = entity(n.kind.node);
        let mut rule = f::Rule {
            action: f::Action::Match,
            direction: dir,
            quick: false,
            family: None,
            from: None,
            to: None,
            method: None,
            tests: Vec::new(),
            tagged: n.marked.as_ref().map(|m| self.tag(&m.node.to_string())),
            tag: None,
            label: label.map(SetOrClear::Set),
            table: None,
            strip: None,
            legacy: None,
        };
        let legacy_glob = |text: &str| Pattern::glob(text.to_string(), Case::Insensitive);
        let lit_key = |text: &str| Key::Pattern(key_pattern(n.kind.node, text, true));
        let (key, value, option, write) = match (&n.verb.node, &n.arg) {
            (NodeVerb::Append, NodeArg::ValueKey { value, key }) => {
                rule.legacy = Some(Legacy::AppendJoin);
                (
                    lit_key(&key.node),
                    ValueTest::Any,
                    Some(f::KeyOption::Append),
                    Some(value.node.clone()),
                )
            }
            (NodeVerb::Change, NodeArg::KeyValue { key, value }) => {
                rule.legacy = Some(Legacy::Change);
                (
                    lit_key(&key.node),
                    ValueTest::Any,
                    Some(f::KeyOption::Set),
                    Some(value.node.clone()),
                )
            }
            (NodeVerb::Remove, NodeArg::Key(k)) => (
                lit_key(&k.node),
                ValueTest::Any,
                Some(f::KeyOption::Remove),
                None,
            ),
            (NodeVerb::Hash, NodeArg::Key(k)) => (
                lit_key(&k.node),
                ValueTest::Any,
                Some(f::KeyOption::Hash),
                None,
            ),
            (NodeVerb::Log, NodeArg::Key(k)) => (
                lit_key(&k.node),
                ValueTest::Any,
                Some(f::KeyOption::Log),
                None,
            ),
            (NodeVerb::Filter, arg) => {
                rule.action = f::Action::Block;
                rule.quick = true;
                rule.legacy = Some(Legacy::Filter);
                match arg {
                    NodeArg::ValueKey { value, key } => (
                        lit_key(&key.node),
                        ValueTest::Matches(legacy_glob(&value.node)),
                        None,
                        None,
                    ),
                    NodeArg::Key(k) => (lit_key(&k.node), ValueTest::Any, None, None),
                    NodeArg::Digest(d) => (digest_key(&d.node), ValueTest::Any, None, None),
                    _ => return,
                }
            }
            (NodeVerb::Expect, arg) => {
                let (key_text, alt) = match arg {
                    NodeArg::ValueKey { value, key } => {
                        (key.node.clone(), legacy_glob(&value.node))
                    }
                    NodeArg::Key(k) => (k.node.clone(), legacy_glob("*")),
                    NodeArg::Digest(d) => (d.node.clone(), legacy_glob("*")),
                    _ => return,
                };
                let group = (dir, ent, key_text.to_ascii_lowercase());
                if let Some(i) = expects.get(&group) {
                    // Another alternative for the same key: OR'ed into the first node's rule.
                    if let Some(ValueTest::NoneOf(alts)) =
                        rules[*i].rule.tests.first_mut().map(|t| &mut t.value)
                    {
                        alts.push(alt);
                    }
                    return;
                }
                rule.action = f::Action::Block;
                rule.quick = true;
                rule.legacy = Some(Legacy::Expect);
                expects.insert(group, rules.len());
                let key = if matches!(arg, NodeArg::Digest(_)) {
                    digest_key(&key_text)
                } else {
                    lit_key(&key_text)
                };
                (key, ValueTest::NoneOf(vec![alt]), None, None)
            }
            (NodeVerb::Mark, arg) => {
                if let Some(m) = &n.mark {
                    rule.tag = Some(SetOrClear::Set(self.tag(&m.node.to_string())));
                }
                match arg {
                    NodeArg::ValueKey { value, key } => (
                        lit_key(&key.node),
                        ValueTest::Matches(legacy_glob(&value.node)),
                        None,
                        None,
                    ),
                    NodeArg::Key(k) => (lit_key(&k.node), ValueTest::Any, None, None),
                    _ => return,
                }
            }
            // `file` nodes and combinations relayd refuses were reported by the checks.
            _ => return,
        };
        let test = EntityTest {
            entity: ent,
            option,
            key,
            value,
            write,
        };
        rules.push(RuleIr {
            rule: f::Rule {
                tests: vec![test],
                ..rule
            },
            span: n.span,
            forward: None,
            test_spans: vec![n.span],
            tagged_span: n.marked.as_ref().map(|m| m.span),
        });
    }
}

/// A rule being lowered, with its origin; split into `Protocol::rules` and
/// `Protocol::rule_info` when the protocol is done.
struct RuleIr {
    rule: f::Rule,
    span: Span,
    forward: Option<(TemplateId, Span)>,
    test_spans: Vec<Span>,
    tagged_span: Option<Span>,
}

/// Each rule holds at most one test per entity; relayd overwrites an earlier one.
fn set_test(tests: &mut Vec<EntityTest>, spans: &mut Vec<Span>, test: EntityTest, span: Span) {
    if let Some(i) = tests.iter().position(|t| t.entity == test.entity) {
        tests[i] = test;
        spans[i] = span;
    } else {
        tests.push(test);
        spans.push(span);
    }
}

fn entity_test(
    kind: KvKind,
    option: Option<ast::KeyOption>,
    key: Option<&ast::KvKey>,
) -> EntityTest {
    let option = option.map(|o| match o {
        ast::KeyOption::Append => f::KeyOption::Append,
        ast::KeyOption::Set => f::KeyOption::Set,
        ast::KeyOption::Remove => f::KeyOption::Remove,
        ast::KeyOption::Hash => f::KeyOption::Hash,
        ast::KeyOption::Log => f::KeyOption::Log,
    });
    let writes = matches!(option, Some(f::KeyOption::Append | f::KeyOption::Set));
    let Some(k) = key else {
        return EntityTest {
            entity: entity(kind),
            option,
            key: Key::Any,
            value: ValueTest::Any,
            write: None,
        };
    };
    let key_ = if k.digest {
        digest_key(&k.key.node)
    } else {
        Key::Pattern(if k.pattern.is_some() {
            Pattern::Lua {
                text: k.key.node.clone(),
            }
        } else {
            key_pattern(kind, &k.key.node, false)
        })
    };
    let (value, write) = match &k.value {
        Some(v) if writes => (ValueTest::Any, Some(v.text.node.clone())),
        Some(v) => (
            ValueTest::Matches(value_pattern(
                kind,
                &v.text.node,
                v.pattern.is_some(),
                option.is_some(),
            )),
            None,
        ),
        None => (ValueTest::Any, None),
    };
    EntityTest {
        entity: entity(kind),
        option,
        key: key_,
        value,
        write,
    }
}

/// Case rules for keys (relay_http.c): header and cookie names and url keys ignore case;
/// path and query keys are case-sensitive. Legacy nodes compare every key ignoring case.
fn key_pattern(kind: KvKind, text: &str, legacy: bool) -> Pattern {
    let case = if legacy || matches!(kind, KvKind::Header | KvKind::Cookie | KvKind::Url) {
        Case::Insensitive
    } else {
        Case::Sensitive
    };
    Pattern::glob(text, case)
}

/// Case rules for values: header and query values are case-sensitive; cookie values
/// and the query part tested by a plain `path` rule ignore case.
fn value_pattern(kind: KvKind, text: &str, lua: bool, has_option: bool) -> Pattern {
    if lua {
        return Pattern::Lua {
            text: text.to_string(),
        };
    }
    let case = match kind {
        KvKind::Cookie => Case::Insensitive,
        KvKind::Path if !has_option => Case::Insensitive,
        _ => Case::Sensitive,
    };
    Pattern::glob(text, case)
}

fn digest_key(text: &str) -> Key {
    let hex = text.to_ascii_lowercase();
    let alg = if hex.len() == 32 {
        f::DigestAlg::Md5
    } else {
        f::DigestAlg::Sha1
    };
    Key::Digest { alg, hex }
}

fn entity(kind: KvKind) -> f::Entity {
    match kind {
        KvKind::Header => f::Entity::Header,
        KvKind::Cookie => f::Entity::Cookie,
        KvKind::Path => f::Entity::Path,
        KvKind::Query => f::Entity::Query,
        KvKind::Url => f::Entity::Url,
    }
}

fn direction(d: Option<ast::Dir>) -> f::Direction {
    match d {
        Some(ast::Dir::Response) => f::Direction::Response,
        _ => f::Direction::Request,
    }
}

fn family(a: ast::Af) -> f::Family {
    match a {
        ast::Af::Inet => f::Family::Inet,
        ast::Af::Inet6 => f::Family::Inet6,
    }
}

fn prefix(a: &ast::AddrPrefix) -> Option<f::Prefix> {
    let addr: IpAddr = a.addr.node.split('%').next()?.parse().ok()?;
    let width = if addr.is_ipv4() { 32 } else { 128 };
    let len = match &a.len {
        Some(n) => u8::try_from(n.node).ok().filter(|l| *l <= width)?,
        None => width,
    };
    Some(f::Prefix { addr, len })
}

fn tcp_options(tcp: &mut TcpOptions, opts: &[ast::Sp<TcpOpt>]) {
    for o in opts {
        match &o.node {
            TcpOpt::Sack(on) => tcp.sack = *on,
            TcpOpt::Nodelay(on) => tcp.nodelay = Some(*on),
            TcpOpt::Splice(on) => tcp.splice = *on,
            TcpOpt::Backlog(n) if n.node >= 0 => tcp.backlog = n.node.min(1024) as u32,
            TcpOpt::SocketBuffer(n) if n.node >= 0 => {
                tcp.socket_buffer = u32::try_from(n.node).ok()
            }
            TcpOpt::Ip { what, value, .. } => {
                let v = u8::try_from(value.node).ok();
                if what.node.eq_ignore_ascii_case("ttl") {
                    tcp.ip_ttl = v;
                } else if what.node.eq_ignore_ascii_case("minttl") {
                    tcp.ip_minttl = v;
                }
            }
            _ => {}
        }
    }
}

fn tls_options(tls: &mut TlsOptions, opts: &[ast::Sp<TlsOpt>]) {
    for o in opts {
        match &o.node {
            TlsOpt::SessionTickets(on) => tls.session_tickets = *on,
            TlsOpt::Ciphers(c) => tls.ciphers = Some(c.node.clone()),
            TlsOpt::Ecdhe(c) | TlsOpt::EcdhCurve(c) => tls.ecdhe = Some(c.node.clone()),
            TlsOpt::CaFile(p) => tls.ca_file = Some(p.node.clone()),
            TlsOpt::CaCert(p) => tls.ca_cert = Some(p.node.clone()),
            TlsOpt::CaKey { path, password } => {
                tls.ca_key = Some(path.node.clone());
                tls.ca_key_password = Some(password.node.clone());
            }
            TlsOpt::ClientCa(p) => tls.client_ca = Some(p.node.clone()),
            TlsOpt::Keypair(k) => tls.keypairs.push(k.node.clone()),
            TlsOpt::KeypairFile { name, kind, path } => {
                if !tls.keypairs.contains(&name.node) {
                    tls.keypairs.push(name.node.clone())
                }
                let kind = match kind {
                    ast::KeypairFile::Cert => KeypairFile::Cert,
                    ast::KeypairFile::Key => KeypairFile::Key,
                    ast::KeypairFile::Ocsp => KeypairFile::Ocsp,
                };
                tls.keypair_files
                    .push((name.node.clone(), kind, path.node.clone()));
            }
            TlsOpt::Flag { on, flag } => tls.flags.push((*on, flag.node.clone())),
            _ => {}
        }
    }
}

trait ValueText {
    fn node_text(&self) -> String;
}

impl ValueText for ast::Value {
    fn node_text(&self) -> String {
        self.text.node.clone()
    }
}
