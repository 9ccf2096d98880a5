//! Listening sockets: one per relay listener per worker, all with SO_REUSEPORT so the
//! kernel spreads connections over the workers without a shared accept lock.

use super::ServeError;
use relaydc_spec::plan::{Address, Plan, TcpOptions};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};

/// A bound, listening socket and what it belongs to.
pub struct Bound {
    pub relay: usize,
    pub listener: usize,
    pub socket: TcpListener,
}

/// Binds every listener of every enabled relay.
pub fn bind_all(plan: &Plan) -> Result<Vec<Bound>, ServeError> {
    let mut out = Vec::new();
    for (ri, r) in plan.relays.iter().enumerate() {
        if r.disabled {
            continue;
        }
        let tcp = r
            .protocol
            .and_then(|p| plan.protocols.get(p as usize))
            .map_or_else(default_tcp, |p| p.tcp.clone());
        for (li, l) in r.listeners.iter().enumerate() {
            let Address::Ip(ip) = l.address else {
                return Err(ServeError::Bind(format!(
                    "relay {}: listener address is not bound",
                    r.name
                )));
            };
            let addr = SocketAddr::new(ip, l.port);
            let socket = listen(addr, &tcp).map_err(|e| {
                ServeError::Bind(format!("relay {}: cannot listen on {addr}: {e}", r.name))
            })?;
            out.push(Bound {
                relay: ri,
                listener: li,
                socket,
            });
        }
    }
    Ok(out)
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

fn listen(addr: SocketAddr, tcp: &TcpOptions) -> std::io::Result<TcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.set_reuse_port(true)?;
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
