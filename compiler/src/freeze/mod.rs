//! Freezing: the checked IR becomes a [`Plan`], with deploy-host facts bound.
//!
//! By default (on the deploy host) names are resolved to addresses and TLS material is
//! read and embedded: certificates in the plan body, private keys in the keys section,
//! which only the signer process reads. With `--late-bind` (compiling in CI without the
//! secrets) names and file paths stay in the plan and `relayd-run` binds them at start
//! and on every reload, refusing the whole plan if one fails.
//!
//! Freezing runs only on a configuration without errors; what it can still find wrong
//! are deploy-host facts (a name that does not resolve, a key file that cannot be read),
//! reported as RD0604 / RD0601 like the checks do.

mod bind;

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir::{self, Config};
use crate::source::{PathRules, Span};
use relaydc_spec::plan::{self, Plan};
use relaydc_spec::{filter, tls, Release};

/// How deploy-host facts are bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// Resolve names and embed TLS material now.
    Now,
    /// Keep names and paths; `relayd-run` binds them at start.
    Late,
}

/// A plan and its private keys.
pub struct Frozen {
    pub plan: Plan,
    pub keys: plan::Keys,
}

/// Freezes a configuration. `sources` are the file names relative to the main file's
/// directory, in load order.
pub fn freeze(
    c: &Config,
    release: Release,
    sources: Vec<String>,
    paths: &PathRules,
    binding: Binding,
    diags: &mut Diagnostics,
) -> Frozen {
    let mut b = bind::Binder::new(paths, binding, diags);
    let g = &c.globals;
    let globals = plan::Globals {
        interval_s: g.interval,
        timeout_ms: g.timeout_ms,
        prefork: g.prefork,
        log: plan::LogSettings {
            state_changes: g.log.state_changes,
            host_checks: g.log.host_checks,
            connection: match g.log.connection {
                ir::ConnectionLog::Off => plan::ConnectionLog::Off,
                ir::ConnectionLog::Errors => plan::ConnectionLog::Errors,
                ir::ConnectionLog::All => plan::ConnectionLog::All,
            },
            verbose: g.log.verbose,
        },
        socket: g.socket.clone(),
    };
    let tables = c
        .tables
        .iter()
        .map(|t| plan::Table {
            name: t.name.clone(),
            port: t.port,
            check: check(&t.check),
            timeout_ms: t.timeout_ms,
            // relayd: skip_cnt = table interval / global interval - 1.
            skip: match (t.interval, g.interval) {
                (Some(i), gi) if gi > 0 => (i / gi).saturating_sub(1),
                _ => 0,
            },
            demote: t.demote.clone(),
            disabled: t.disabled,
            hosts: t.hosts.iter().map(|h| h.0).collect(),
        })
        .collect();
    let hosts = c
        .hosts
        .iter()
        .map(|h| plan::Host {
            name: h.def.addr.clone(),
            address: b.address(&h.def.addr, h.def.span),
            table: h.table.0,
            retry: h.def.retry,
            parent: h.def.parent.map(|(p, _)| p),
            priority: h.def.priority,
            ip_ttl: h.def.ip_ttl,
        })
        .collect();
    // Tables filter rules select, by template; each relay binds them to its instances.
    let mut rule_templates: Vec<ir::TemplateId> = Vec::new();
    for p in &c.protocols {
        for r in &p.rule_info {
            if let Some((t, _)) = r.forward {
                if !rule_templates.contains(&t) {
                    rule_templates.push(t);
                }
            }
        }
    }
    // relayd opens a protocol's CA files only for relays that speak TLS on a side.
    let tls_used: Vec<bool> = (0..c.protocols.len())
        .map(|i| {
            c.relays.iter().any(|r| {
                r.protocol.is_some_and(|(p, _)| p.index() == i)
                    && (r.listeners.iter().any(|l| l.tls) || r.forwards.iter().any(|f| f.tls))
            })
        })
        .collect();
    let protocols = c
        .protocols
        .iter()
        .zip(&tls_used)
        .map(|(p, used)| protocol(p, release, &rule_templates, *used, &mut b))
        .collect();
    let relays = c
        .relays
        .iter()
        .map(|r| relay(c, r, &rule_templates, &mut b))
        .collect();
    let redirects = c
        .redirects
        .iter()
        .map(|r| plan::Redirect {
            name: r.name.clone(),
            disabled: r.disabled,
            listeners: r
                .listeners
                .iter()
                .map(|l| plan::RdrListener {
                    address: b.address(&l.addr, l.span),
                    udp: l.udp,
                    port: l.port,
                    port_hi: l.port_hi,
                    interface: l.interface.clone(),
                })
                .collect(),
            tables: r
                .tables
                .iter()
                .map(|t| plan::RdrTable {
                    table: t.table.0,
                    mode: mode(t.mode),
                    route: t.route,
                    interface: t.interface.clone(),
                })
                .collect(),
            sticky: r.sticky,
            pftag: r.pftag.clone(),
            session_timeout_s: r.session_timeout,
        })
        .collect();
    let routers = c
        .routers
        .iter()
        .map(|r| plan::Router {
            name: r.name.clone(),
            disabled: r.disabled,
            routes: r
                .routes
                .iter()
                .filter_map(|(a, len, _)| {
                    let address: std::net::IpAddr = a.parse().ok()?;
                    let width = if address.is_ipv4() { 32 } else { 128 };
                    Some(plan::Route {
                        address,
                        prefixlen: len.unwrap_or(width),
                    })
                })
                .collect(),
            table: r.table.map(|t| t.0),
            rtable: r.rtable,
            rtlabel: r.rtlabel.clone(),
        })
        .collect();
    let (keypairs, keys) = b.finish();
    Frozen {
        plan: Plan {
            globals,
            tables,
            hosts,
            protocols,
            relays,
            redirects,
            routers,
            tags: c.tags.clone(),
            labels: c.labels.clone(),
            rule_tables: rule_templates
                .iter()
                .map(|t| c.templates[t.index()].name.clone())
                .collect(),
            keypairs,
            sources,
            release: release.to_string(),
        },
        keys,
    }
}

fn check(c: &ir::Check) -> plan::Check {
    match c {
        ir::Check::None => plan::Check::None,
        ir::Check::Icmp => plan::Check::Icmp,
        ir::Check::Tcp => plan::Check::Tcp,
        ir::Check::Tls => plan::Check::Tls,
        ir::Check::Http {
            tls,
            path,
            host,
            expect,
        } => plan::Check::Http {
            tls: *tls,
            path: path.clone(),
            host: host.clone(),
            expect: match expect {
                ir::HttpExpect::Code(c) => plan::HttpExpect::Code(*c),
                ir::HttpExpect::Digest(d) => plan::HttpExpect::Digest(d.clone()),
            },
        },
        ir::Check::SendExpect {
            send,
            expect,
            binary,
            tls,
        } => plan::Check::SendExpect {
            send: send.clone(),
            expect: expect.clone(),
            binary: *binary,
            tls: *tls,
        },
        ir::Check::Script(p) => plan::Check::Script(p.clone()),
    }
}

fn mode(m: ir::Mode) -> plan::Mode {
    match m {
        ir::Mode::Roundrobin => plan::Mode::Roundrobin,
        ir::Mode::Loadbalance => plan::Mode::Loadbalance,
        ir::Mode::Hash => plan::Mode::Hash,
        ir::Mode::SourceHash => plan::Mode::SourceHash,
        ir::Mode::Random => plan::Mode::Random,
        ir::Mode::LeastStates => plan::Mode::LeastStates,
    }
}

fn protocol(
    p: &ir::Protocol,
    release: Release,
    rule_templates: &[ir::TemplateId],
    tls_used: bool,
    b: &mut bind::Binder,
) -> plan::Protocol {
    let rules = p
        .rules
        .iter()
        .zip(&p.rule_info)
        .map(|(rule, r)| {
            let mut rule = rule.clone();
            rule.table = r.forward.and_then(|(t, _)| {
                rule_templates
                    .iter()
                    .position(|x| *x == t)
                    .map(|i| i as filter::TableId)
            });
            rule
        })
        .collect();
    plan::Protocol {
        name: p.name.clone(),
        kind: match p.kind {
            ir::ProtocolKind::Tcp => plan::ProtocolKind::Tcp,
            ir::ProtocolKind::Http => plan::ProtocolKind::Http,
            ir::ProtocolKind::Dns => plan::ProtocolKind::Dns,
        },
        tcp: plan::TcpOptions {
            nodelay: p.tcp.nodelay,
            sack: p.tcp.sack,
            splice: p.tcp.splice,
            backlog: p.tcp.backlog,
            socket_buffer: p.tcp.socket_buffer,
            ip_ttl: p.tcp.ip_ttl,
            ip_minttl: p.tcp.ip_minttl,
        },
        http: plan::HttpOptions {
            headerlen: p.http.headerlen,
            websockets: p.http.websockets,
        },
        tls: tls_settings(&p.tls, release, tls_used, b, p.span),
        return_error: p.return_error.as_ref().map(|styles| plan::ErrorPage {
            style: styles.last().cloned(),
        }),
        rules,
    }
}

/// The protocol's TLS options mapped onto rustls, with the same functions the checks
/// used to report what is dropped (`spec::tls`).
fn tls_settings(
    t: &ir::TlsOptions,
    release: Release,
    used: bool,
    b: &mut bind::Binder,
    at: Span,
) -> plan::TlsSettings {
    // Files of a protocol no TLS relay uses are never opened (as in relayd).
    let material = |path: &String, b: &mut bind::Binder| {
        if used {
            b.material(path, at)
        } else {
            plan::Material::Paths(vec![path.clone()])
        }
    };
    let mut flags = tls::Flags::default_for(release);
    for (on, word) in &t.flags {
        flags.apply(word, *on, release);
    }
    let versions = flags.versions.rustls();
    let ciphers = t
        .ciphers
        .clone()
        .unwrap_or_else(|| tls::default_ciphers(release).to_string());
    let cipher_suites = tls::select_ciphers(&ciphers)
        .suites()
        .into_iter()
        .map(|s| s.value())
        .collect();
    let kx_groups = tls::select_curves(t.ecdhe.as_deref().unwrap_or("default"))
        .groups
        .into_iter()
        .map(|g| g.value())
        .collect();
    let inspection_ca = match (&t.ca_cert, &t.ca_key) {
        (Some(cert), Some(key)) if used => {
            b.inspection_ca(cert, key, t.ca_key_password.as_deref(), at)
        }
        _ => None,
    };
    plan::TlsSettings {
        tls12: versions.tls12,
        tls13: versions.tls13,
        cipher_suites,
        kx_groups,
        session_tickets: t.session_tickets,
        server_preference: flags.cipher_server_preference,
        ca_file: t.ca_file.as_ref().map(|p| material(p, b)),
        client_ca: t.client_ca.as_ref().map(|p| material(p, b)),
        inspection_ca,
    }
}

fn relay(
    c: &Config,
    r: &ir::Relay,
    rule_templates: &[ir::TemplateId],
    b: &mut bind::Binder,
) -> plan::Relay {
    let forwards = r
        .forwards
        .iter()
        .map(|f| plan::Forward {
            tls: f.tls,
            transparent: f.transparent,
            target: match &f.target {
                ir::Target::Table {
                    table,
                    mode: m,
                    key,
                } => plan::Target::Table {
                    table: table.0,
                    mode: mode(*m),
                    key: key.as_deref().map(hash_key),
                },
                ir::Target::Addr { addr, port, retry } => plan::Target::Addr {
                    address: b.address(addr, f.span),
                    port: *port,
                    retry: *retry,
                },
                ir::Target::NatLookup { retry } => plan::Target::NatLookup { retry: *retry },
                ir::Target::Destination { retry } => plan::Target::Destination { retry: *retry },
            },
            af: f.af.as_ref().map(|a| match a {
                ir::AfMap::Inet => plan::AfMap::Inet,
                // relayd keeps `::` when inet_pton fails (it tests for -1 only).
                ir::AfMap::Inet6(p) => {
                    plan::AfMap::Inet6(p.parse().unwrap_or(std::net::Ipv6Addr::UNSPECIFIED))
                }
            }),
            proxy_protocol: f.proxy_protocol,
        })
        .collect();
    let instances: Vec<ir::TableId> = r
        .forwards
        .iter()
        .filter_map(|f| match f.target {
            ir::Target::Table { table, .. } => Some(table),
            _ => None,
        })
        .collect();
    let rule_tables = rule_templates
        .iter()
        .map(|tpl| {
            instances
                .iter()
                .find(|t| c.tables[t.index()].template == *tpl)
                .map(|t| t.0)
        })
        .collect();
    let protocol = r.protocol.map(|(p, _)| &c.protocols[p.index()]);
    let keypairs = if r.listeners.iter().any(|l| l.tls) {
        b.relay_keypairs(r, protocol)
    } else {
        Vec::new()
    };
    plan::Relay {
        name: r.name.clone(),
        disabled: r.disabled,
        listeners: r
            .listeners
            .iter()
            .map(|l| plan::Listener {
                address: b.address(&l.addr, l.span),
                port: l.port,
                tls: l.tls,
            })
            .collect(),
        protocol: r.protocol.map(|(p, _)| p.0),
        forwards,
        session_timeout_s: r.session_timeout,
        keypairs,
        rule_tables,
    }
}

/// relayd's balancing key: `0x` and 32 hex digits as they are, any other string hashed
/// with MD5 (parse.y `hashkey`).
fn hash_key(text: &str) -> [u8; 16] {
    use md5::{Digest, Md5};
    let mut key = [0u8; 16];
    if let Some(hex) = text.strip_prefix("0x").filter(|h| h.len() == 32) {
        for (i, k) in key.iter_mut().enumerate() {
            *k = u8::from_str_radix(hex.get(2 * i..2 * i + 2).unwrap_or("00"), 16).unwrap_or(0);
        }
        return key;
    }
    key.copy_from_slice(&Md5::digest(text.as_bytes()));
    key
}

/// A deploy-host fact that does not hold.
fn unresolvable(at: Span, name: &str) -> Diagnostic {
    Diagnostic::new(
        Code::UnresolvableName,
        at,
        format!("cannot resolve `{name}` on this host"),
    )
    .help("compile on the deploy host, where the name resolves, or use `--late-bind` so relayd-run resolves it when it starts")
}
