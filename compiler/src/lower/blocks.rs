//! Relays, redirects and routers (and hoststated's `service`, the redirect's ancestor).
//!
//! Each block is checked where relayd checks it, at its closing brace: a relay needs a
//! listener and a target, a redirect a table and a virtual address, a router routes.

use super::{duplicate, mode, port_number, port_range, Lowerer};
use crate::diag::{Code, Diagnostic, Severity};
use crate::ir::*;
use crate::parse::ast::{self, FwdMode, FwdTarget, RdrOpt, RlyOpt, RtOpt, SvcOpt};

impl Lowerer<'_> {
    pub(super) fn relay(&mut self, b: &ast::Block<RlyOpt>) {
        let id = RelayId(self.config.relays.len() as u32);
        let name = b.name.text.clone();
        let mut relay = Relay {
            name: name.clone(),
            span: b.name.span,
            disabled: false,
            listeners: Vec::new(),
            protocol: None,
            forwards: Vec::new(),
            session_timeout: 600,
        };
        let mut last_port = None;
        let mut listen_failed = false;
        let (mut natlook, mut divert) = (None, None);
        for o in &b.opts {
            match &o.node {
                RlyOpt::Listen { addr, port, tls } => {
                    let Some(p) = port_number(port) else {
                        listen_failed = true;
                        continue;
                    };
                    last_port = Some(p);
                    relay.listeners.push(Listener {
                        addr: addr.node.clone(),
                        port: p,
                        port_hi: None,
                        tls: tls.is_some(),
                        udp: false,
                        interface: None,
                        span: o.span,
                    });
                }
                RlyOpt::Forward {
                    mode: fmode,
                    tls,
                    target,
                    af,
                    proxy,
                    ..
                } => {
                    if fmode.node == FwdMode::Route {
                        // `no route for relays`, reported by the context checks.
                        if let FwdTarget::Table(t) = target {
                            self.mark_referenced(&t.name);
                        }
                        continue;
                    }
                    let target = match target {
                        FwdTarget::Table(t) => {
                            let Some(inst) = self.instantiate(t, last_port, Owner::Relay(id))
                            else {
                                continue;
                            };
                            Target::Table {
                                table: inst.table,
                                mode: inst.mode.map_or(Mode::Roundrobin, |m| mode(m.node)),
                                key: inst.key,
                            }
                        }
                        FwdTarget::Addr { addr, port, retry } => {
                            let Some(p) = port_number(port) else { continue };
                            Target::Addr {
                                addr: addr.node.clone(),
                                port: p,
                                retry: retry_value(retry),
                            }
                        }
                        FwdTarget::NatLookup { retry } => {
                            natlook.get_or_insert(o.span);
                            Target::NatLookup {
                                retry: retry_value(retry),
                            }
                        }
                        FwdTarget::Destination { retry } => {
                            divert.get_or_insert(o.span);
                            Target::Destination {
                                retry: retry_value(retry),
                            }
                        }
                        FwdTarget::Service { name: svc, .. } => {
                            // hoststated: forward to a service's tables; they are
                            // resolved with the service (a redirect) itself.
                            let _ = svc;
                            continue;
                        }
                        FwdTarget::HTable {
                            name: tname,
                            mode: m,
                            no_check,
                        } => {
                            let Some(inst) = self.htable_ref(tname, *no_check, Owner::Relay(id))
                            else {
                                continue;
                            };
                            Target::Table {
                                table: inst,
                                mode: m.as_ref().map_or(Mode::Roundrobin, |m| mode(m.node)),
                                key: None,
                            }
                        }
                    };
                    relay.forwards.push(Forward {
                        span: o.span,
                        tls: tls.is_some(),
                        transparent: fmode.node == FwdMode::Transparent,
                        target,
                        af: af.as_ref().map(|a| match &a.node {
                            ast::DstAf::Inet => AfMap::Inet,
                            ast::DstAf::Inet6(p) => AfMap::Inet6(p.node.clone()),
                        }),
                        proxy_protocol: proxy.as_ref().map(|p| p.node),
                    });
                }
                RlyOpt::Protocol(pname) => {
                    if relay.protocol.is_some() {
                        continue; // `more than one protocol specified`, reported before
                    }
                    match self.protocols.get(&pname.text) {
                        Some(p) => {
                            relay.protocol = Some((*p, pname.span));
                            self.config.protocols[p.index()].users.push(id);
                        }
                        None => self.no_such_protocol(pname),
                    }
                }
                RlyOpt::SessionTimeout(n) | RlyOpt::Timeout(n) if n.node >= 0 => {
                    relay.session_timeout = n.node.min(i32::MAX as i64) as u32;
                }
                RlyOpt::Disable => relay.disabled = true,
                _ => {}
            }
        }
        if let Some(first) = self.relays.get(&name) {
            let first = self.config.relays[first.index()].span;
            self.report(duplicate(
                format!("relay {name} or listener defined twice"),
                b.name.span,
                first,
            ));
        }
        if relay.listeners.is_empty() && !listen_failed {
            self.report(
                Diagnostic::relayd(
                    Code::IncompleteBlock,
                    b.name.span,
                    format!("relay {name} has no listener"),
                )
                .help("add `listen on ADDRESS port PORT`"),
            );
        }
        if let (Some(n), Some(d)) = (natlook, divert) {
            self.report(
                Diagnostic::relayd(
                    Code::TargetConflict,
                    d,
                    format!("relay {name} with conflicting nat lookup and peer options"),
                )
                .label(n, "`nat lookup` is set here")
                .help("a relay takes its destination either from the NAT state (`nat lookup`) or from a diverted socket (`destination`), not both"),
            );
        }
        if relay.forwards.is_empty() && !self.relay_forward_failed(b) {
            self.report(
                Diagnostic::relayd(
                    Code::IncompleteBlock,
                    b.name.span,
                    format!("relay {name} has no target, rdr, or table"),
                )
                .help("add `forward to ADDRESS port PORT`, `forward to <TABLE> …`, `forward to nat lookup` or `forward to destination`"),
            );
        }
        self.relays.entry(name).or_insert(id);
        self.config.relays.push(relay);
    }

    /// True when the relay has forward lines that did not lower because of an error
    /// already reported (so "has no target" would only repeat it).
    fn relay_forward_failed(&self, b: &ast::Block<RlyOpt>) -> bool {
        b.opts
            .iter()
            .any(|o| matches!(o.node, RlyOpt::Forward { .. } | RlyOpt::Error))
    }

    fn no_such_protocol(&mut self, pname: &ast::Name) {
        let mut d = Diagnostic::relayd(
            Code::UndefinedName,
            pname.span,
            format!("no such protocol: {}", pname.text),
        );
        if let Some(at) = self.later.protocols.get(&pname.text) {
            d = d
                .label(*at, "defined here, after its use")
                .help("relayd reads the file once, top to bottom: move the protocol above the relay that uses it");
        } else if let Some(best) =
            crate::lex::expand::closest(&pname.text, self.protocols.keys().map(String::as_str))
        {
            d = d.fix(
                pname.span,
                format!("\"{best}\""),
                format!("did you mean `{best}`?"),
                crate::diag::Applicability::MaybeIncorrect,
            );
        } else {
            d = d.help(format!(
                "define it before the relay: `http protocol \"{}\" {{ … }}`",
                pname.text
            ));
        }
        self.report(d);
    }

    /// hoststated `forward to table NAME MODE [no check]`.
    fn htable_ref(&mut self, name: &ast::Name, no_check: bool, owner: Owner) -> Option<TableId> {
        let template = self.find_template(name, format!("unknown table {}", name.text))?;
        let tpl = &self.config.templates[template.index()];
        let legacy = tpl.legacy.clone().unwrap_or_default();
        let port = legacy.port?;
        let check = if no_check { Check::None } else { legacy.check };
        let id = TableId(self.config.tables.len() as u32);
        let defs = tpl.hosts.clone();
        let (disabled, timeout) = (tpl.disabled, legacy.timeout_ms.unwrap_or(tpl.timeout_ms));
        let mut hosts = Vec::new();
        for def in defs {
            hosts.push(HostId(self.config.hosts.len() as u32));
            self.config.hosts.push(Host { table: id, def });
        }
        self.config.tables.push(Table {
            name: format!("{}:{}", name.text, port),
            template,
            port,
            check,
            timeout_ms: timeout,
            interval: legacy.interval,
            demote: legacy.demote,
            disabled,
            hosts,
            span: name.span,
            check_span: legacy.check_span,
            users: vec![(owner, name.span)],
        });
        self.config.templates[template.index()].instances.push(id);
        Some(id)
    }

    pub(super) fn redirect(&mut self, b: &ast::Block<RdrOpt>) {
        let id = RedirectId(self.config.redirects.len() as u32);
        let name = b.name.text.clone();
        let mut rdr = Redirect {
            name: name.clone(),
            span: b.name.span,
            disabled: false,
            listeners: Vec::new(),
            tables: Vec::new(),
            sticky: false,
            pftag: None,
            session_timeout: 600,
        };
        if let Some(first) = self.redirects.get(&name) {
            let first = self.config.redirects[first.index()].span;
            self.report(duplicate(
                format!("redirection {name} defined twice"),
                b.name.span,
                first,
            ));
        }
        let mut first_port = None;
        let mut failed_table = false;
        let mut failed_listen = false;
        for o in &b.opts {
            match &o.node {
                RdrOpt::Listen {
                    addr,
                    proto,
                    port,
                    interface,
                    ..
                } => {
                    let Some((lo, hi)) = port_range(port) else {
                        failed_listen = true;
                        continue;
                    };
                    first_port.get_or_insert(lo);
                    rdr.listeners.push(Listener {
                        addr: addr.node.clone(),
                        port: lo,
                        port_hi: hi,
                        tls: false,
                        udp: proto.as_ref().is_some_and(|p| p.node == "udp"),
                        interface: interface.as_ref().map(|i| i.node.clone()),
                        span: o.span,
                    });
                }
                RdrOpt::Forward {
                    mode: fmode,
                    table,
                    interface,
                } => {
                    if fmode.node == FwdMode::Transparent {
                        // `no transparent forward here`, reported by the context checks.
                        self.mark_referenced(&table.name);
                        failed_table = true;
                        continue;
                    }
                    let Some(inst) = self.instantiate(table, first_port, Owner::Redirect(id))
                    else {
                        failed_table = true;
                        continue;
                    };
                    let t = &self.config.tables[inst.table.index()];
                    if t.check == Check::None {
                        self.report(
                            Diagnostic::relayd(
                                Code::RedirectTableCheck,
                                table.name.span,
                                format!("table {} has no check", t.name),
                            )
                            .help("a redirect sends traffic only to hosts a check found up: add `check tcp` (or icmp, http …)"),
                        );
                    }
                    rdr.tables.push(RdrTable {
                        table: inst.table,
                        mode: inst.mode.map_or(Mode::Roundrobin, |m| mode(m.node)),
                        route: fmode.node == FwdMode::Route,
                        interface: interface.as_ref().map(|i| i.node.clone()),
                        span: o.span,
                    });
                }
                RdrOpt::Disable => rdr.disabled = true,
                RdrOpt::Sticky => rdr.sticky = true,
                RdrOpt::Tag { name: tag, .. } => rdr.pftag = Some(tag.node.clone()),
                RdrOpt::SessionTimeout(n) if n.node >= 0 => {
                    rdr.session_timeout = n.node.min(i32::MAX as i64) as u32
                }
                _ => {}
            }
        }
        self.backup_table(&rdr);
        self.close_redirect(&rdr, b.name.span, failed_table, failed_listen);
        self.redirects.entry(name).or_insert(id);
        self.config.redirects.push(rdr);
    }

    fn backup_table(&mut self, rdr: &Redirect) {
        let [main, backup, ..] = rdr.tables.as_slice() else {
            return;
        };
        let (mt, bt) = (
            self.config.tables[main.table.index()].port,
            self.config.tables[backup.table.index()].port,
        );
        if main.mode != backup.mode {
            self.report(
                Diagnostic::relayd(
                    Code::BackupTableMismatch,
                    backup.span,
                    format!("backup table for {} with different mode", rdr.name),
                )
                .label(main.span, "the main table's mode is set here")
                .help("give the backup table the same `mode` as the main table"),
            );
        }
        if mt != bt {
            self.report(
                Diagnostic::relayd(
                    Code::BackupTableMismatch,
                    backup.span,
                    format!(
                        "redirection {} uses two different ports for its table and backup table",
                        rdr.name
                    ),
                )
                .label(main.span, format!("the main table uses port {mt}"))
                .help(format!("use `port {mt}` for the backup table too")),
            );
        }
    }

    fn close_redirect(
        &mut self,
        rdr: &Redirect,
        span: crate::source::Span,
        failed_table: bool,
        failed_listen: bool,
    ) {
        if rdr.tables.is_empty() && !failed_table {
            self.report(
                Diagnostic::relayd(
                    Code::IncompleteBlock,
                    span,
                    format!("redirection {} has no table", rdr.name),
                )
                .help("add `forward to <TABLE> check …`"),
            );
        }
        if rdr.listeners.is_empty() && !failed_listen {
            self.report(
                Diagnostic::relayd(
                    Code::IncompleteBlock,
                    span,
                    format!("redirection {} has no virtual ip", rdr.name),
                )
                .help("add `listen on ADDRESS port PORT`"),
            );
        }
    }

    /// hoststated's `service NAME { virtual host …; table NAME; backup table NAME }`.
    pub(super) fn service(&mut self, b: &ast::Block<SvcOpt>) {
        let id = RedirectId(self.config.redirects.len() as u32);
        let mut rdr = Redirect {
            name: b.name.text.clone(),
            span: b.name.span,
            disabled: false,
            listeners: Vec::new(),
            tables: Vec::new(),
            sticky: false,
            pftag: None,
            session_timeout: 600,
        };
        for o in &b.opts {
            match &o.node {
                SvcOpt::VirtualHost { addr, port, .. } => {
                    let Some((lo, hi)) = port_range(port) else {
                        continue;
                    };
                    rdr.listeners.push(Listener {
                        addr: addr.node.clone(),
                        port: lo,
                        port_hi: hi,
                        tls: false,
                        udp: false,
                        interface: None,
                        span: o.span,
                    });
                }
                SvcOpt::Table { name, .. } => {
                    if let Some(t) = self.htable_ref(name, false, Owner::Redirect(id)) {
                        rdr.tables.push(RdrTable {
                            table: t,
                            mode: Mode::Roundrobin,
                            route: false,
                            interface: None,
                            span: o.span,
                        });
                    }
                }
                SvcOpt::Tag(t) => rdr.pftag = Some(t.node.clone()),
                SvcOpt::Sticky => rdr.sticky = true,
                SvcOpt::Disable => rdr.disabled = true,
                SvcOpt::Error => {}
            }
        }
        self.redirects.entry(rdr.name.clone()).or_insert(id);
        self.config.redirects.push(rdr);
    }

    pub(super) fn router(&mut self, b: &ast::Block<RtOpt>) {
        let id = RouterId(self.config.routers.len() as u32);
        let name = b.name.text.clone();
        if let Some(first) = self.routers.get(&name) {
            let first = self.config.routers[first.index()].span;
            self.report(duplicate(
                format!("router {name} defined twice"),
                b.name.span,
                first,
            ));
        }
        let mut rt = Router {
            name: name.clone(),
            span: b.name.span,
            disabled: false,
            routes: Vec::new(),
            table: None,
            rtable: None,
            rtlabel: None,
        };
        let mut table_failed = false;
        for o in &b.opts {
            match &o.node {
                RtOpt::Route(a) => rt.routes.push((
                    a.addr.node.clone(),
                    a.len.as_ref().and_then(|n| u8::try_from(n.node).ok()),
                    a.span,
                )),
                RtOpt::Forward(t) => {
                    if rt.table.is_some() {
                        continue; // `table already specified`, reported before
                    }
                    // Routers have no listener: the port must be written (tableport -1).
                    match self.instantiate(t, None, Owner::Router(id)) {
                        Some(inst) => rt.table = Some(inst.table),
                        None => table_failed = true,
                    }
                }
                RtOpt::Rtable(n) if n.node >= 0 => rt.rtable = u32::try_from(n.node).ok(),
                RtOpt::Rtlabel(l) => rt.rtlabel = Some(l.node.clone()),
                RtOpt::Disable => rt.disabled = true,
                _ => {}
            }
        }
        if rt.routes.is_empty() {
            self.report(
                Diagnostic::relayd(
                    Code::IncompleteBlock,
                    b.name.span,
                    format!("router {name} without routes"),
                )
                .help("add `route ADDRESS/PREFIXLEN`"),
            );
        }
        if rt.table.is_none() && !table_failed {
            // relayd accepts it, but a router without a gateway table adds no routes.
            self.report(
                Diagnostic::new(
                    Code::IncompleteBlock,
                    b.name.span,
                    format!("router {name} has no `forward to` table, so it adds no routes"),
                )
                .severity(Severity::Warning)
                .help("add `forward to <GATEWAYS> port P check icmp`"),
            );
        }
        self.routers.entry(name).or_insert(id);
        self.config.routers.push(rt);
    }
}

fn retry_value(r: &Option<ast::Number>) -> u32 {
    r.as_ref()
        .map_or(0, |n| n.node.clamp(0, u32::MAX as i64) as u32)
}
