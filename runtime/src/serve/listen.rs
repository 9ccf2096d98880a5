//! Listening sockets: one per relay listener per worker, all with SO_REUSEPORT so the
//! kernel spreads connections over the workers without a shared accept lock. Relays
//! that forward to the destination listen with IP_TRANSPARENT, without which TPROXY
//! hands them nothing; setting it needs CAP_NET_ADMIN, which the process has only until
//! it drops its privileges, so such a listener is bound at start (a reload cannot add
//! one).

use super::ServeError;
use relaydc_spec::plan::{Address, Plan, ProtocolKind, TcpOptions};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener, UdpSocket};

/// Where a relay listens: an address, over TCP or (dns relays) UDP, with IP_TRANSPARENT
/// or not (a socket without it cannot serve a relay that needs it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub udp: bool,
    pub transparent: bool,
}

/// A bound socket: listening for TCP relays, receiving for DNS relays.
pub enum Socket2 {
    Tcp(TcpListener),
    Udp(UdpSocket),
}

/// A bound socket. Workers match sockets to a plan's listeners by endpoint, so that a
/// reload can hand a kept socket to whichever relay now listens there.
pub struct Bound {
    pub at: Endpoint,
    pub socket: Socket2,
}

/// One listener of an enabled relay.
#[derive(Clone, Copy, Debug)]
pub struct Wanted {
    pub relay: usize,
    pub listener: usize,
    pub at: Endpoint,
}

/// Whether `relay` relays DNS over UDP (a `dns protocol`, as relayd's relay_udp.c).
pub fn is_udp(plan: &Plan, relay: usize) -> bool {
    plan.relays
        .get(relay)
        .and_then(|r| r.protocol)
        .and_then(|p| plan.protocols.get(p as usize))
        .is_some_and(|p| matches!(p.kind, ProtocolKind::Dns))
}

/// Every listener of every enabled relay, in plan order.
pub fn wanted(plan: &Plan) -> Result<Vec<Wanted>, ServeError> {
    let mut out = Vec::new();
    for (ri, r) in plan.relays.iter().enumerate() {
        if r.disabled {
            continue;
        }
        let udp = is_udp(plan, ri);
        let transparent = !udp && super::origin::diverts(r);
        for (li, l) in r.listeners.iter().enumerate() {
            let Address::Ip(ip) = l.address else {
                return Err(ServeError::Bind(format!(
                    "relay {}: listener address is not bound",
                    r.name
                )));
            };
            out.push(Wanted {
                relay: ri,
                listener: li,
                at: Endpoint {
                    addr: SocketAddr::new(ip, l.port),
                    udp,
                    transparent,
                },
            });
        }
    }
    Ok(out)
}

/// Binds every listener of every enabled relay.
pub fn bind_all(plan: &Plan) -> Result<Vec<Bound>, ServeError> {
    bind_except(plan, &[], false)
}

/// For a reload: binds the listeners of `plan` whose endpoint is not among `kept` (the
/// running plan's, which keep their sockets), one socket per listener.
pub fn bind_added(plan: &Plan, kept: &[Endpoint]) -> Result<Vec<Bound>, ServeError> {
    bind_except(plan, kept, true)
}

fn bind_except(plan: &Plan, kept: &[Endpoint], reload: bool) -> Result<Vec<Bound>, ServeError> {
    let mut kept = kept.to_vec();
    let mut out = Vec::new();
    for w in wanted(plan)? {
        if let Some(i) = kept.iter().position(|k| *k == w.at) {
            kept.swap_remove(i);
            continue;
        }
        let addr = w.at.addr;
        let name = &plan.relays[w.relay].name;
        let tcp = relay_tcp(plan, w.relay);
        let socket = if w.at.udp {
            receive(addr, &tcp).map(Socket2::Udp)
        } else {
            listen(addr, &tcp, w.at.transparent).map(Socket2::Tcp)
        };
        let socket = socket.map_err(|e| {
            // Sockets are bound before privileges are dropped; a reload runs after.
            let denied = reload && e.kind() == std::io::ErrorKind::PermissionDenied;
            let hint = if denied && w.at.transparent {
                "; a listener for forward to destination (IP_TRANSPARENT) can only be added \
                 by restarting relayd-run"
            } else if denied && addr.port() < 1024 {
                "; a port below 1024 can only be added by restarting relayd-run"
            } else {
                ""
            };
            ServeError::Bind(format!("relay {name}: cannot listen on {addr}: {e}{hint}"))
        })?;
        out.push(Bound { at: w.at, socket });
    }
    Ok(out)
}

/// The tcp options of `relay`'s protocol (relayd's defaults without one).
pub fn relay_tcp(plan: &Plan, relay: usize) -> TcpOptions {
    plan.relays
        .get(relay)
        .and_then(|r| r.protocol)
        .and_then(|p| plan.protocols.get(p as usize))
        .map_or_else(default_tcp, |p| p.tcp.clone())
}

/// A kept socket takes the new plan's listener options: relayd would have opened it
/// afresh. Linux applies a second listen(2) to the backlog of a listening socket.
pub fn retune(socket: &tokio::net::TcpListener, addr: SocketAddr, tcp: &TcpOptions) {
    let s = socket2::SockRef::from(socket);
    let mut r = Ok(());
    if let Some(b) = tcp.socket_buffer {
        r = r
            .and_then(|()| s.set_recv_buffer_size(b as usize))
            .and_then(|()| s.set_send_buffer_size(b as usize));
    }
    r = r
        .and_then(|()| ip_options(&s, addr.is_ipv6(), tcp))
        .and_then(|()| s.listen(tcp.backlog.min(i32::MAX as u32) as i32));
    if let Err(e) = r {
        crate::log::warn(&format!(
            "listener {addr}: cannot apply the new tcp options: {e}"
        ));
    }
}

/// relayd's defaults for the built-in tcp protocol.
pub fn default_tcp() -> TcpOptions {
    TcpOptions {
        nodelay: None,
        sack: false,
        splice: true,
        backlog: 10,
        socket_buffer: None,
        ip_ttl: None,
        ip_minttl: None,
    }
}

/// A DNS relay's socket: SO_REUSEPORT like the TCP listeners, so every worker receives
/// its share of the queries.
fn receive(addr: SocketAddr, tcp: &TcpOptions) -> std::io::Result<UdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    if let Some(b) = tcp.socket_buffer {
        s.set_recv_buffer_size(b as usize)?;
        s.set_send_buffer_size(b as usize)?;
    }
    if tcp.ip_ttl.is_some() || tcp.ip_minttl.is_some() {
        ip_options(&s, addr.is_ipv6(), tcp)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s.into())
}

fn listen(addr: SocketAddr, tcp: &TcpOptions, transparent: bool) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
    if transparent {
        // IP_TRANSPARENT is IP-level, and Linux applies it to IPv6 sockets too.
        s.set_ip_transparent(true)?;
    }
    if addr.is_ipv6() {
        // As on OpenBSD: an IPv6 listener is IPv6 only.
        s.set_only_v6(true)?;
    }
    if let Some(b) = tcp.socket_buffer {
        s.set_recv_buffer_size(b as usize)?;
        s.set_send_buffer_size(b as usize)?;
    }
    if tcp.ip_ttl.is_some() || tcp.ip_minttl.is_some() {
        ip_options(&s, addr.is_ipv6(), tcp)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    // relayd's `backlog` (default 10).
    s.listen(tcp.backlog.min(i32::MAX as u32) as i32)?;
    Ok(s.into())
}

/// `ip ttl` and `ip minttl`, by address family as relayd's relay_socket sets them
/// (IP_TTL / IPV6_UNICAST_HOPS, IP_MINTTL / IPV6_MINHOPCOUNT). Accepted sockets inherit
/// them from the listener; backend sockets get them after connecting.
pub fn ip_options(s: &Socket, ipv6: bool, tcp: &TcpOptions) -> std::io::Result<()> {
    if let Some(ttl) = tcp.ip_ttl {
        if ipv6 {
            s.set_unicast_hops_v6(u32::from(ttl))?;
        } else {
            s.set_ttl(u32::from(ttl))?;
        }
    }
    if let Some(min) = tcp.ip_minttl {
        super::minttl::set(s, ipv6, min)?;
    }
    Ok(())
}
