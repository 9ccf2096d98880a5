//! Who listens where: relays claiming the same address twice (relayd's `relay X or
//! listener defined twice`), a wildcard listener beside a specific one on the same
//! port (both bind with SO_REUSEPORT, and the kernel hands the specific address's
//! connections to the specific socket only), and a redirect whose rule rewrites the
//! packets a relay is waiting for.

use crate::diag::{Code, Diagnostic, Diagnostics};
use crate::ir::*;
use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

/// A listen address as far as the check host can tell: an IP, or a name it leaves to
/// the deploy host (compared by its text).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Addr {
    Ip(IpAddr),
    Name(String),
}

fn addr(text: &str) -> Addr {
    match text
        .split('%')
        .next()
        .and_then(|a| a.parse::<IpAddr>().ok())
    {
        Some(ip) => Addr::Ip(ip),
        None => Addr::Name(text.to_string()),
    }
}

struct Claim<'a> {
    relay: &'a Relay,
    listener: &'a Listener,
    addr: Addr,
}

pub fn check(c: &Config, diags: &mut Diagnostics) {
    let mut claims: Vec<Claim> = Vec::new();
    let mut by_key: HashMap<(Addr, u16), usize> = HashMap::new();
    for r in &c.relays {
        for l in &r.listeners {
            let a = addr(&l.addr);
            if let Some(&first) = by_key.get(&(a.clone(), l.port)) {
                let f: &Claim = &claims[first];
                diags.push(
                    Diagnostic::relayd(
                        Code::DuplicateListener,
                        l.span,
                        format!("relay {} or listener defined twice", r.name),
                    )
                    .label(
                        f.listener.span,
                        format!(
                            "relay {} already listens on {}:{}",
                            f.relay.name, l.addr, l.port
                        ),
                    )
                    .help("every listener needs its own address and port"),
                );
                continue;
            }
            by_key.insert((a.clone(), l.port), claims.len());
            claims.push(Claim {
                relay: r,
                listener: l,
                addr: a,
            });
        }
    }
    overlaps(&claims, diags);
    captures(c, &claims, diags);
}

fn is_wildcard(a: &Addr) -> Option<bool> {
    match a {
        Addr::Ip(ip) => Some(ip.is_unspecified()),
        Addr::Name(_) => None,
    }
}

fn same_family(a: &Addr, b: &Addr) -> bool {
    matches!((a, b), (Addr::Ip(x), Addr::Ip(y)) if x.is_ipv4() == y.is_ipv4())
}

/// A wildcard (`0.0.0.0`, `::`) and a specific address of the same family on one port.
fn overlaps(claims: &[Claim], diags: &mut Diagnostics) {
    let mut by_port: HashMap<u16, Vec<&Claim>> = HashMap::new();
    for cl in claims {
        by_port.entry(cl.listener.port).or_default().push(cl);
    }
    let mut ports: Vec<_> = by_port.into_iter().collect();
    ports.sort_by_key(|(p, _)| *p);
    for (port, list) in ports {
        let wild: Vec<&&Claim> = list
            .iter()
            .filter(|c| is_wildcard(&c.addr) == Some(true))
            .collect();
        for w in wild {
            for s in list.iter().filter(|c| {
                is_wildcard(&c.addr) == Some(false)
                    && same_family(&c.addr, &w.addr)
                    && c.relay.name != w.relay.name
            }) {
                diags.push(
                    Diagnostic::new(
                        Code::ListenerOverlap,
                        s.listener.span,
                        format!(
                            "relay {} listens on {}:{port}, inside relay {}'s {}:{port}",
                            s.relay.name, s.listener.addr, w.relay.name, w.listener.addr
                        ),
                    )
                    .label(w.listener.span, "the wildcard listener is here")
                    .help(format!(
                        "connections to {}:{port} go to relay {} only; relay {} gets every other address. If that is meant, say so with a comment; otherwise use distinct ports",
                        s.listener.addr, s.relay.name, w.relay.name
                    )),
                );
            }
        }
    }
}

/// A redirect (pf rdr-to, nftables DNAT here) on a relay's address and port rewrites
/// the connections before the relay's socket sees them.
fn captures(c: &Config, claims: &[Claim], diags: &mut Diagnostics) {
    let mut by_port: BTreeMap<u16, Vec<&Claim>> = BTreeMap::new();
    for cl in claims {
        by_port.entry(cl.listener.port).or_default().push(cl);
    }
    // A disabled redirect installs no rules.
    for rdr in c.redirects.iter().filter(|r| !r.disabled) {
        for rl in &rdr.listeners {
            if rl.udp {
                continue;
            }
            let ra = addr(&rl.addr);
            let hi = rl.port_hi.unwrap_or(rl.port).max(rl.port);
            for cl in by_port.range(rl.port..=hi).flat_map(|(_, v)| v) {
                let p = cl.listener.port;
                let same = ra == cl.addr
                    || (same_family(&ra, &cl.addr)
                        && (is_wildcard(&ra) == Some(true) || is_wildcard(&cl.addr) == Some(true)));
                if !same {
                    continue;
                }
                // Name the address both cover: the specific one of the two.
                let shared = if is_wildcard(&ra) == Some(true) {
                    &cl.listener.addr
                } else {
                    &rl.addr
                };
                diags.push(
                    Diagnostic::new(
                        Code::RedirectCapturesRelay,
                        rl.span,
                        format!(
                            "redirect {} rewrites connections to {shared}:{p}, where relay {} listens",
                            rdr.name, cl.relay.name
                        ),
                    )
                    .label(cl.listener.span, "the relay's listener")
                    .help("the redirect's DNAT sends those connections to its table before the relay can accept them; give the relay or the redirect another address or port"),
                );
            }
        }
    }
}
