//! Table templates and their instances.
//!
//! `table <t> { hosts }` only defines a template. Each `forward to <t> port P …` (or
//! `route to`) creates the instance `t:P` with the check settings of that line and its
//! own copies of the hosts; a second reference with the same name, port and settings
//! shares the instance (relayd's `table_inherit` / `table_findbyconf`). Table and host
//! ids follow instantiation order, as relayctl shows them.

use super::{duplicate, port_number, Lowerer};
use crate::diag::{Code, Diagnostic};
use crate::ir::*;
use crate::lex::expand::closest;
use crate::parse::ast::{self, HostFlag, HostItem, Sp, TableDefOpt, TableOpt};
use crate::source::Span;

/// What makes two references share one instance (relayd's `table_findbyconf`
/// compares the whole table configuration).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct InstanceKey {
    template: TemplateId,
    port: u16,
    check: Check,
    timeout_ms: u32,
    interval: Option<u32>,
    demote: Option<String>,
}

/// What a `forward to <t> …` line asks for besides the instance.
pub(super) struct Instance {
    pub table: TableId,
    pub mode: Option<Sp<ast::Mode>>,
    pub key: Option<String>,
}

impl Lowerer<'_> {
    pub(super) fn template(&mut self, t: &ast::TableDef) {
        let name = &t.name.text;
        if let Some(first) = self.templates.get(name) {
            let first = self.config.templates[first.index()].span;
            self.report(duplicate(
                format!("table {name} defined twice"),
                t.name.span,
                first,
            ));
            return;
        }
        let mut hosts = Vec::new();
        let mut disabled = false;
        for o in &t.opts {
            match o {
                TableDefOpt::Disable(_) => disabled = true,
                TableDefOpt::Hosts(items) => {
                    for h in items {
                        if let HostItem::Host(h) = h {
                            hosts.push(host_def(h));
                        }
                    }
                }
            }
        }
        if hosts.is_empty() {
            self.report(
                Diagnostic::relayd(
                    Code::EmptyTable,
                    t.name.span,
                    format!("table {name} has no hosts"),
                )
                .help("list at least one host: `table <name> { 10.0.0.1, 10.0.0.2 }`"),
            );
        }
        self.add_template(name, t.name.span, disabled, hosts, None);
    }

    fn add_template(
        &mut self,
        name: &str,
        span: Span,
        disabled: bool,
        hosts: Vec<HostDef>,
        legacy: Option<LegacyTable>,
    ) -> TemplateId {
        let id = TemplateId(self.config.templates.len() as u32);
        self.config.templates.push(Template {
            name: name.to_string(),
            span,
            disabled,
            hosts,
            timeout_ms: self.current.timeout_ms,
            instances: Vec::new(),
            referenced: false,
            legacy,
        });
        self.templates.insert(name.to_string(), id);
        id
    }

    /// hoststated's `table NAME { check …; host …; real port … }`: the template carries
    /// its own check and port.
    pub(super) fn htable(&mut self, b: &ast::Block<ast::HTableOpt>) {
        let name = &b.name.text;
        if let Some(first) = self.templates.get(name) {
            let first = self.config.templates[first.index()].span;
            self.report(duplicate(
                format!("table {name} defined twice"),
                b.name.span,
                first,
            ));
            return;
        }
        let mut hosts = Vec::new();
        let mut legacy = LegacyTable::default();
        let mut disabled = false;
        for o in &b.opts {
            match &o.node {
                ast::HTableOpt::Host(h) => hosts.push(host_def(h)),
                ast::HTableOpt::Check(c) => {
                    legacy.check = lower_check(&c.node);
                    legacy.check_span = Some(c.span);
                }
                ast::HTableOpt::RealPort(p) => legacy.port = port_number(p),
                ast::HTableOpt::Timeout(n) if n.node >= 0 => {
                    legacy.timeout_ms = Some(n.node.min(u32::MAX as i64) as u32)
                }
                ast::HTableOpt::Interval(n) if n.node > 0 => {
                    legacy.interval = Some(n.node.min(u32::MAX as i64) as u32)
                }
                ast::HTableOpt::Demote(g) => legacy.demote = Some(g.node.clone()),
                ast::HTableOpt::Disable => disabled = true,
                _ => {}
            }
        }
        if hosts.is_empty() {
            self.report(Diagnostic::relayd(
                Code::EmptyTable,
                b.name.span,
                format!("table {name} has no hosts"),
            ));
        }
        self.add_template(name, b.name.span, disabled, hosts, Some(legacy));
    }

    /// Notes a use of a template on a line that does not lower (its error is reported
    /// elsewhere), so the template is not also called unused.
    pub(super) fn mark_referenced(&mut self, name: &ast::Name) {
        if let Some(id) = self.templates.get(&name.text) {
            self.config.templates[id.index()].referenced = true;
        }
    }

    /// Resolves a template name, reporting `unknown table` with a hint when it is
    /// defined later in the file or misspelt.
    pub(super) fn find_template(
        &mut self,
        name: &ast::Name,
        message: String,
    ) -> Option<TemplateId> {
        if let Some(id) = self.templates.get(&name.text) {
            let id = *id;
            self.config.templates[id.index()].referenced = true;
            return Some(id);
        }
        let mut d = Diagnostic::relayd(Code::UndefinedName, name.span, message);
        if let Some(at) = self.later.tables.get(&name.text) {
            d = d
                .label(*at, "defined here, after its use")
                .help("relayd reads the file once, top to bottom: move the table definition above its first use");
        } else if let Some(best) = closest(&name.text, self.templates.keys().map(String::as_str)) {
            d = d.fix(
                name.span,
                best.to_string(),
                format!("did you mean `{best}`?"),
                crate::diag::Applicability::MaybeIncorrect,
            );
        } else {
            d = d.help(format!(
                "define it first: `table <{}> {{ 10.0.0.1 }}`",
                name.text
            ));
        }
        self.report(d);
        None
    }

    /// `forward to <t> opts…` / `route to <t> opts…`: finds or creates the instance.
    /// `default_port` is the port of the listen lines seen so far.
    pub(super) fn instantiate(
        &mut self,
        tref: &ast::TableRef,
        default_port: Option<u16>,
        owner: Owner,
    ) -> Option<Instance> {
        let template =
            self.find_template(&tref.name, format!("unknown table {}", tref.name.text))?;
        let tpl = &self.config.templates[template.index()];
        let legacy = tpl.legacy.clone();
        let mut port = legacy.as_ref().and_then(|l| l.port);
        let mut check = legacy.as_ref().map_or(Check::None, |l| l.check.clone());
        let mut check_span = legacy.as_ref().and_then(|l| l.check_span);
        let mut timeout_ms = legacy
            .as_ref()
            .and_then(|l| l.timeout_ms)
            .unwrap_or(tpl.timeout_ms);
        let mut interval = legacy.as_ref().and_then(|l| l.interval);
        let mut demote = legacy.as_ref().and_then(|l| l.demote.clone());
        let (mut mode, mut key) = (None, None);
        let mut explicit_port = false;
        for o in &tref.opts {
            match &o.node {
                TableOpt::Port(p) => {
                    explicit_port = true;
                    port = port_number(p);
                }
                TableOpt::Check(c) => {
                    check = lower_check(&c.node);
                    check_span = Some(c.span);
                }
                TableOpt::Timeout(n) if n.node >= 0 => {
                    timeout_ms = n.node.min(u32::MAX as i64) as u32
                }
                TableOpt::Interval(n) if n.node > 0 => {
                    interval = Some(n.node.min(u32::MAX as i64) as u32)
                }
                TableOpt::Demote(g) => demote = Some(g.node.clone()),
                TableOpt::Mode { mode: m, key: k } => {
                    if m.is_some() {
                        mode = m.clone();
                    }
                    if k.is_some() {
                        key = k.as_ref().map(|k| k.node.clone());
                    }
                }
                _ => {}
            }
        }
        if !explicit_port && port.is_none() {
            port = default_port;
        }
        // A missing or invalid port was reported by the context checks (RD0413 / RD03xx).
        let port = port?;
        let name = format!("{}:{}", tref.name.text, port);
        let identity = InstanceKey {
            template,
            port,
            check: check.clone(),
            timeout_ms,
            interval,
            demote: demote.clone(),
        };
        let table = match self.instances.get(&identity) {
            Some(id) => *id,
            None => {
                let id = TableId(self.config.tables.len() as u32);
                let defs = self.config.templates[template.index()].hosts.clone();
                let mut hosts = Vec::with_capacity(defs.len());
                for def in defs {
                    hosts.push(HostId(self.config.hosts.len() as u32));
                    self.config.hosts.push(Host { table: id, def });
                }
                let disabled = self.config.templates[template.index()].disabled;
                self.config.tables.push(Table {
                    name,
                    template,
                    port,
                    check,
                    timeout_ms,
                    interval,
                    demote,
                    disabled,
                    hosts,
                    span: tref.span,
                    check_span,
                    users: Vec::new(),
                });
                self.config.templates[template.index()].instances.push(id);
                self.instances.insert(identity, id);
                id
            }
        };
        self.config.tables[table.index()]
            .users
            .push((owner, tref.span));
        Some(Instance { table, mode, key })
    }
}

fn host_def(h: &ast::Host) -> HostDef {
    let mut def = HostDef {
        addr: h.addr.node.clone(),
        span: h.addr.span,
        retry: 0,
        parent: None,
        priority: None,
        ip_ttl: None,
    };
    // Values out of range or repeated were reported by the value checks; the first
    // valid one counts, as in relayd.
    for f in &h.flags {
        match f.node {
            HostFlag::Retry(n) if n >= 0 => def.retry = n.min(u32::MAX as i64) as u32,
            HostFlag::Parent(n) if n > 0 && def.parent.is_none() => {
                def.parent = Some((n.min(u32::MAX as i64) as u32, f.span))
            }
            HostFlag::Priority(n) if (0..=63).contains(&n) => def.priority = Some(n as u8),
            HostFlag::IpTtl(n) if (0..=255).contains(&n) => def.ip_ttl = Some(n as u8),
            _ => {}
        }
    }
    def
}

/// A health check as the checker will run it.
pub(super) fn lower_check(c: &ast::Check) -> Check {
    match c {
        ast::Check::Icmp => Check::Icmp,
        ast::Check::Tcp => Check::Tcp,
        ast::Check::Tls(_) => Check::Tls,
        ast::Check::HttpCode {
            kind,
            path,
            host,
            code,
        } => Check::Http {
            tls: kind.node == "https",
            path: path.node.clone(),
            host: host.as_ref().map(|h| h.node.clone()),
            expect: HttpExpect::Code(u16::try_from(code.node).unwrap_or(0)),
        },
        ast::Check::HttpDigest {
            kind,
            path,
            host,
            digest,
        } => Check::Http {
            tls: kind.node == "https",
            path: path.node.clone(),
            host: host.as_ref().map(|h| h.node.clone()),
            expect: HttpExpect::Digest(digest.node.to_ascii_lowercase()),
        },
        ast::Check::SendExpect {
            binary,
            send,
            expect,
            tls,
        } => {
            let (send, expect) = if *binary {
                (send.as_ref().map(|s| unhex(&s.node)), unhex(&expect.node))
            } else {
                (
                    send.as_ref().map(|s| s.node.as_bytes().to_vec()),
                    unescape_expect(&expect.node),
                )
            };
            Check::SendExpect {
                send,
                expect,
                binary: *binary,
                tls: tls.is_some(),
            }
        }
        ast::Check::Script(p) => Check::Script(p.node.clone()),
    }
}

/// relayd translates `\r`, `\n` and `\<c>` in `expect` patterns (send data is verbatim).
fn unescape_expect(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match bytes.next() {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(c) => out.push(c),
            None => out.push(b'\\'),
        }
    }
    out
}

/// Hex data of `binary send/expect`; invalid digits were reported by the value checks.
fn unhex(s: &str) -> Vec<u8> {
    s.as_bytes()
        .chunks(2)
        .filter_map(|pair| {
            let text = std::str::from_utf8(pair).ok()?;
            u8::from_str_radix(text, 16).ok()
        })
        .collect()
}
