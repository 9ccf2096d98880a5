//! `check icmp`: one echo request to the host, by its address family, and its reply,
//! within the global `timeout` (relayd's check_icmp.c uses the global timeout, never the
//! table's).
//!
//! Each check has its own socket. An unprivileged ICMP datagram socket ("ping socket")
//! is tried first: the kernel picks its identifier, fills in the checksum and hands it
//! only its own replies. Where `net.ipv4.ping_group_range` does not admit the process, a
//! raw socket is used (it needs CAP_NET_RAW, which relayd's hce has too): it sees every
//! ICMP packet, so replies are matched here by identifier, sequence number, the host id
//! in the payload (where relayd puts it) and the source address.

use super::Outcome;
use socket2::{Domain, Protocol, Socket, Type};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use tokio::net::UdpSocket;
use tokio::time::{timeout_at, Instant};

/// relayd's ICMP_BUF_SIZE: the echo request's size, header included.
const PACKET: usize = 64;
const ECHO_V4: u8 = 8;
const ECHO_REPLY_V4: u8 = 0;
const ECHO_V6: u8 = 128;
const ECHO_REPLY_V6: u8 = 129;

/// Sequence numbers, process-wide, so concurrent raw-socket checks of one host never
/// take each other's replies.
static SEQ: AtomicU16 = AtomicU16::new(1);

/// The socket kinds one check may end up with.
enum Kind {
    /// Ping socket: no IP header on receive, identifier owned by the kernel.
    Datagram,
    /// Raw socket: IPv4 replies come with their IP header.
    Raw,
}

fn open(ip: IpAddr) -> std::io::Result<(Socket, Kind)> {
    let (domain, proto) = match ip {
        IpAddr::V4(_) => (Domain::IPV4, Protocol::ICMPV4),
        IpAddr::V6(_) => (Domain::IPV6, Protocol::ICMPV6),
    };
    match Socket::new(domain, Type::DGRAM, Some(proto)) {
        Ok(s) => Ok((s, Kind::Datagram)),
        Err(_) => Socket::new(domain, Type::RAW, Some(proto)).map(|s| (s, Kind::Raw)),
    }
}

/// The Internet checksum (RFC 1071), as ping.c's in_cksum computes it.
fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
    }
    if let [last] = chunks.remainder() {
        sum += u32::from(u16::from_be_bytes([*last, 0]));
    }
    while sum > 0xffff {
        sum = (sum >> 16) + (sum & 0xffff);
    }
    !(sum as u16)
}

/// The echo request: relayd's layout, the host id (network order) right after the
/// 8-byte header, zeros after it.
fn request(ip: IpAddr, ident: u16, seq: u16, host_id: u32) -> [u8; PACKET] {
    let mut p = [0u8; PACKET];
    p[0] = if ip.is_ipv4() { ECHO_V4 } else { ECHO_V6 };
    p[4..6].copy_from_slice(&ident.to_be_bytes());
    p[6..8].copy_from_slice(&seq.to_be_bytes());
    p[8..12].copy_from_slice(&host_id.to_be_bytes());
    // The kernel computes ICMPv6 checksums itself (and ping sockets' for IPv4 as well);
    // a raw IPv4 socket sends what it is given.
    if ip.is_ipv4() {
        let sum = checksum(&p);
        p[2..4].copy_from_slice(&sum.to_be_bytes());
    }
    p
}

/// Whether `packet` (as received on a socket of `kind`) is the reply to our request.
fn is_reply(packet: &[u8], ip: IpAddr, kind: &Kind, ident: u16, seq: u16, host_id: u32) -> bool {
    let icmp = match (ip, kind) {
        (IpAddr::V4(_), Kind::Raw) => {
            let ihl = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
            packet.get(ihl..).unwrap_or_default()
        }
        _ => packet,
    };
    let Some(head) = icmp.get(..12) else {
        return false;
    };
    let want = if ip.is_ipv4() {
        ECHO_REPLY_V4
    } else {
        ECHO_REPLY_V6
    };
    let ident_ok = match kind {
        Kind::Datagram => true,
        Kind::Raw => head[4..6] == ident.to_be_bytes(),
    };
    head[0] == want
        && head[1] == 0
        && ident_ok
        && head[6..8] == seq.to_be_bytes()
        && head[8..12] == host_id.to_be_bytes()
}

/// Runs one echo check of `ip`; `host_id` is relayd's host id (index + 1).
pub(super) async fn check(ip: IpAddr, ttl: Option<u8>, host_id: u32, deadline: Instant) -> Outcome {
    let (sock, kind) = match open(ip) {
        Ok(s) => s,
        Err(e) => {
            // relayd cannot start without its ICMP sockets; here only these checks
            // fail, and the operator is told once why.
            static WARNED: AtomicBool = AtomicBool::new(false);
            if !WARNED.swap(true, Ordering::Relaxed) {
                crate::log::warn_errno("icmp checks: cannot open an icmp socket", &e.to_string());
            }
            return Outcome::down("icmp write timeout");
        }
    };
    let ttl = ttl.filter(|t| *t > 0).map(u32::from);
    let opt = match (ip, ttl) {
        (IpAddr::V4(_), Some(t)) => sock.set_ttl(t),
        (IpAddr::V6(_), Some(t)) => sock.set_unicast_hops_v6(t),
        (_, None) => Ok(()),
    };
    if opt.is_err() || sock.set_nonblocking(true).is_err() {
        return Outcome::down("icmp write timeout");
    }
    let Ok(sock) = UdpSocket::from_std(std::net::UdpSocket::from(sock)) else {
        return Outcome::down("icmp write timeout");
    };
    // relayd's identifier: its pid, cut to 16 bits.
    let ident = (std::process::id() & 0xffff) as u16;
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let packet = request(ip, ident, seq, host_id);
    match timeout_at(deadline, sock.send_to(&packet, SocketAddr::new(ip, 0))).await {
        Ok(Ok(_)) => {}
        // relayd marks a host whose request cannot be sent down without a report; here
        // the result is reported, with the text of a request that did not go out.
        Ok(Err(_)) | Err(_) => return Outcome::down("icmp write timeout"),
    }
    let mut buf = [0u8; 1500];
    loop {
        match timeout_at(deadline, sock.recv_from(&mut buf)).await {
            Err(_) => return Outcome::down("icmp read timeout"),
            // An error (an ICMP error queued for the socket, say) is not the reply: keep
            // waiting until the timeout, as relayd does, without spinning on it.
            Ok(Err(_)) => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            Ok(Ok((n, from))) => {
                let got = buf.get(..n).unwrap_or_default();
                if from.ip() == ip && is_reply(got, ip, &kind, ident, seq, host_id) {
                    return Outcome::up("icmp ok");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksum_of_a_request_verifies_to_zero() {
        let p = request(IpAddr::from([192, 0, 2, 1]), 7, 9, 3);
        assert_eq!(checksum(&p), 0);
        assert_eq!(&p[8..12], &[0, 0, 0, 3]);
    }

    #[test]
    fn replies_are_matched_on_every_field() {
        let ip: IpAddr = IpAddr::from([127, 0, 0, 1]);
        let mut r = request(ip, 7, 9, 3);
        r[0] = ECHO_REPLY_V4;
        assert!(is_reply(&r, ip, &Kind::Datagram, 0, 9, 3));
        assert!(!is_reply(&r, ip, &Kind::Datagram, 0, 10, 3));
        assert!(!is_reply(&r, ip, &Kind::Datagram, 0, 9, 4));
        let mut raw = vec![0x45u8; 1];
        raw.extend_from_slice(&[0u8; 19]);
        raw.extend_from_slice(&r);
        assert!(is_reply(&raw, ip, &Kind::Raw, 7, 9, 3));
        assert!(!is_reply(&raw, ip, &Kind::Raw, 8, 9, 3));
        let req = request(ip, 7, 9, 3);
        assert!(
            !is_reply(&req, ip, &Kind::Datagram, 7, 9, 3),
            "our own request"
        );
    }
}
