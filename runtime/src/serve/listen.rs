//! Listening sockets: one per relay listener per worker, all with SO_REUSEPORT so the
//! kernel spreads connections over the workers without a shared accept lock.

use super::ServeError;
use relaydc_spec::plan::{Address, Plan, TcpOptions};
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{SocketAddr, TcpListener};

/// A bound, listening socket. Workers match sockets to a plan's listeners by address,
/// so that a reload can hand a kept socket to whichever relay now listens there.
pub struct Bound {
    pub addr: SocketAddr,
    pub socket: TcpListener,
}

/// One listener of an enabled relay.
#[derive(Clone, Copy, Debug)]
pub struct Wanted {
    pub relay: usize,
    pub listener: usize,
    pub addr: SocketAddr,
}

/// Every listener of every enabled relay, in plan order.
pub fn wanted(plan: &Plan) -> Result<Vec<Wanted>, ServeError> {
    let mut out = Vec::new();
    for (ri, r) in plan.relays.iter().enumerate() {
        if r.disabled {
            continue;
        }
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
                addr: SocketAddr::new(ip, l.port),
            });
        }
    }
    Ok(out)
}

/// Binds every listener of every enabled relay.
pub fn bind_all(plan: &Plan) -> Result<Vec<Bound>, ServeError> {
    bind_except(plan, &[], false)
}

/// For a reload: binds the listeners of `plan` whose address is not among `kept` (the
/// running plan's, which keep their sockets), one socket per listener.
pub fn bind_added(plan: &Plan, kept: &[SocketAddr]) -> Result<Vec<Bound>, ServeError> {
    bind_except(plan, kept, true)
}

fn bind_except(plan: &Plan, kept: &[SocketAddr], reload: bool) -> Result<Vec<Bound>, ServeError> {
    let mut kept = kept.to_vec();
    let mut out = Vec::new();
    for w in wanted(plan)? {
        if let Some(i) = kept.iter().position(|k| *k == w.addr) {
            kept.swap_remove(i);
            continue;
        }
        let addr = w.addr;
        let name = &plan.relays[w.relay].name;
        let socket = listen(addr, &relay_tcp(plan, w.relay)).map_err(|e| {
            // Sockets are bound before privileges are dropped; a reload runs after.
            let hint =
                if reload && addr.port() < 1024 && e.kind() == std::io::ErrorKind::PermissionDenied
                {
                    "; a port below 1024 can only be added by restarting relayd-run"
                } else {
                    ""
                };
            ServeError::Bind(format!("relay {name}: cannot listen on {addr}: {e}{hint}"))
        })?;
        out.push(Bound { addr, socket });
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
