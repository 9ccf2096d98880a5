//! The table's ct timeout objects, made through nf_tables' netlink interface.
//!
//! nft makes a ct timeout's policy from its text but, before 1.0.8, not from its JSON:
//! the parser skips a `policy` that is there (an inverted test). relayd-run gives nft
//! JSON only, so these objects go to the kernel directly: one nfnetlink batch, the
//! table and then each object, each created if missing and left as it is if present
//! (what nft's `add` does), committed as one transaction. An object's name says its
//! policy, so an object left as it is never keeps an outdated one.

use super::CtTimeout;
use rustix::net::sockopt::{set_socket_timeout, Timeout};
use rustix::net::{
    netlink, recv, send, socket_with, AddressFamily, RecvFlags, SendFlags, SocketFlags, SocketType,
};
use rustix::thread::{move_into_link_name_space, LinkNameSpaceType};
use std::os::fd::AsFd;
use std::time::Duration;

// <linux/netlink.h>
const NLMSG_HDRLEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_CREATE: u16 = 0x400;
const NLA_F_NESTED: u16 = 0x8000;
// <linux/netfilter/nfnetlink.h>
const NFNETLINK_V0: u8 = 0;
const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
// <linux/netfilter.h>
const NFPROTO_UNSPEC: u8 = 0;
const NFPROTO_INET: u8 = 1;
const NFPROTO_IPV4: u16 = 2;
const NFPROTO_IPV6: u16 = 10;
// <linux/netfilter/nf_tables.h>
const NFT_MSG_NEWTABLE: u16 = 0;
const NFT_MSG_NEWOBJ: u16 = 18;
const NFTA_TABLE_NAME: u16 = 1;
const NFTA_OBJ_TABLE: u16 = 1;
const NFTA_OBJ_NAME: u16 = 2;
const NFTA_OBJ_TYPE: u16 = 3;
const NFTA_OBJ_DATA: u16 = 4;
const NFT_OBJECT_CT_TIMEOUT: u32 = 7;
const NFTA_CT_TIMEOUT_L3PROTO: u16 = 1;
const NFTA_CT_TIMEOUT_L4PROTO: u16 = 2;
const NFTA_CT_TIMEOUT_DATA: u16 = 3;
// <linux/netfilter/nfnetlink_cttimeout.h>
const CTA_TIMEOUT_TCP_ESTABLISHED: u16 = 3;
const IPPROTO_TCP: u8 = 6;

/// The kernel answers in microseconds; a helper must not hang on a lost answer.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// Adds table `inet TABLE` and `timeouts` to the network namespace `netns` (named as
/// `ip netns` names them), or to the caller's.
pub fn add_timeouts(
    netns: Option<&str>,
    table: &str,
    timeouts: &[CtTimeout],
) -> Result<(), String> {
    let batch = encode(table, timeouts);
    let Some(ns) = netns else {
        return exchange(&batch);
    };
    // A namespace belongs to a thread: this one enters it, opens its socket there and
    // ends.
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                let file = std::fs::File::open(&path).map_err(|e| format!("{path}: {e}"))?;
                move_into_link_name_space(file.as_fd(), Some(LinkNameSpaceType::Network))
                    .map_err(|e| format!("cannot enter {path}: {e}"))?;
                exchange(&batch)
            })
            .join()
            .unwrap_or_else(|_| Err("the namespace thread failed".into()))
    })
}

/// Messages to send, and what each one the kernel acknowledges stands for (by
/// sequence number).
struct Encoded {
    bytes: Vec<u8>,
    acked: Vec<(u32, String)>,
}

fn encode(table: &str, timeouts: &[CtTimeout]) -> Encoded {
    let mut e = Encoded {
        bytes: Vec::new(),
        acked: Vec::new(),
    };
    let mut seq: u32 = 1;
    let mut message = |e: &mut Encoded, kind: u16, flags: u16, family: u8, res_id: u16| {
        let start = e.bytes.len();
        e.bytes.extend(0u32.to_ne_bytes());
        e.bytes.extend(kind.to_ne_bytes());
        e.bytes.extend(flags.to_ne_bytes());
        e.bytes.extend(seq.to_ne_bytes());
        e.bytes.extend(0u32.to_ne_bytes());
        e.bytes.extend([family, NFNETLINK_V0]);
        e.bytes.extend(res_id.to_be_bytes());
        seq += 1;
        (start, seq - 1)
    };
    let nft = |msg: u16| (NFNL_SUBSYS_NFTABLES << 8) | msg;
    let create = NLM_F_REQUEST | NLM_F_CREATE | NLM_F_ACK;

    let (start, _) = message(
        &mut e,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    finish(&mut e.bytes, start);

    let (start, s) = message(&mut e, nft(NFT_MSG_NEWTABLE), create, NFPROTO_INET, 0);
    attr(&mut e.bytes, NFTA_TABLE_NAME, &cstr(table));
    finish(&mut e.bytes, start);
    e.acked.push((s, format!("table inet {table}")));

    for t in timeouts {
        let (start, s) = message(&mut e, nft(NFT_MSG_NEWOBJ), create, NFPROTO_INET, 0);
        let name = t.name();
        attr(&mut e.bytes, NFTA_OBJ_TABLE, &cstr(table));
        attr(&mut e.bytes, NFTA_OBJ_NAME, &cstr(&name));
        attr(
            &mut e.bytes,
            NFTA_OBJ_TYPE,
            &NFT_OBJECT_CT_TIMEOUT.to_be_bytes(),
        );
        nested(&mut e.bytes, NFTA_OBJ_DATA, |b| {
            let l3 = if t.ipv6 { NFPROTO_IPV6 } else { NFPROTO_IPV4 };
            attr(b, NFTA_CT_TIMEOUT_L3PROTO, &l3.to_be_bytes());
            attr(b, NFTA_CT_TIMEOUT_L4PROTO, &[IPPROTO_TCP]);
            nested(b, NFTA_CT_TIMEOUT_DATA, |b| {
                attr(
                    b,
                    CTA_TIMEOUT_TCP_ESTABLISHED,
                    &t.established_s.to_be_bytes(),
                );
            });
        });
        finish(&mut e.bytes, start);
        e.acked.push((s, format!("ct timeout \"{name}\"")));
    }

    let (start, _) = message(
        &mut e,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        NFPROTO_UNSPEC,
        NFNL_SUBSYS_NFTABLES,
    );
    finish(&mut e.bytes, start);
    e
}

/// Writes the length of the message that starts at `start`.
fn finish(b: &mut [u8], start: usize) {
    let len = (b.len() - start) as u32;
    b[start..start + 4].copy_from_slice(&len.to_ne_bytes());
}

fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

fn attr(b: &mut Vec<u8>, kind: u16, payload: &[u8]) {
    b.extend(((4 + payload.len()) as u16).to_ne_bytes());
    b.extend(kind.to_ne_bytes());
    b.extend(payload);
    while !b.len().is_multiple_of(4) {
        b.push(0);
    }
}

fn nested(b: &mut Vec<u8>, kind: u16, inner: impl FnOnce(&mut Vec<u8>)) {
    let start = b.len();
    b.extend([0, 0]);
    b.extend((kind | NLA_F_NESTED).to_ne_bytes());
    inner(b);
    let len = (b.len() - start) as u16;
    b[start..start + 2].copy_from_slice(&len.to_ne_bytes());
}

/// Sends the batch and waits for every acknowledgement; the first error the kernel
/// reports ends the wait (the kernel then has committed nothing).
fn exchange(batch: &Encoded) -> Result<(), String> {
    let fd = socket_with(
        AddressFamily::NETLINK,
        SocketType::RAW,
        SocketFlags::CLOEXEC,
        Some(netlink::NETFILTER),
    )
    .map_err(|e| format!("netlink socket: {e}"))?;
    set_socket_timeout(&fd, Timeout::Recv, Some(ANSWER_TIMEOUT))
        .map_err(|e| format!("netlink socket: {e}"))?;
    let sent = send(&fd, &batch.bytes, SendFlags::empty())
        .map_err(|e| format!("cannot send to nf_tables: {e}"))?;
    if sent != batch.bytes.len() {
        return Err(format!(
            "nf_tables took {sent} of {} bytes",
            batch.bytes.len()
        ));
    }
    let mut pending: Vec<u32> = batch.acked.iter().map(|(s, _)| *s).collect();
    let mut buf = vec![0u8; 16384];
    while !pending.is_empty() {
        let (n, _) = recv(&fd, &mut buf[..], RecvFlags::empty())
            .map_err(|e| format!("no answer from nf_tables: {e}"))?;
        let answer = &buf[..n];
        let malformed = || "a malformed answer from nf_tables".to_string();
        let mut at = 0;
        while answer.len().saturating_sub(at) >= NLMSG_HDRLEN {
            let head = &answer[at..at + NLMSG_HDRLEN];
            let len = u32::from_ne_bytes([head[0], head[1], head[2], head[3]]) as usize;
            let kind = u16::from_ne_bytes([head[4], head[5]]);
            let seq = u32::from_ne_bytes([head[8], head[9], head[10], head[11]]);
            if len < NLMSG_HDRLEN || len > answer.len() - at {
                return Err(malformed());
            }
            if kind == NLMSG_ERROR {
                let code = answer
                    .get(at + NLMSG_HDRLEN..at + NLMSG_HDRLEN + 4)
                    .ok_or_else(malformed)?;
                let code = i32::from_ne_bytes([code[0], code[1], code[2], code[3]]);
                if code != 0 {
                    let what = batch
                        .acked
                        .iter()
                        .find(|(s, _)| *s == seq)
                        .map_or("the batch", |(_, w)| w.as_str());
                    return Err(format!(
                        "{what}: {}",
                        std::io::Error::from_raw_os_error(code.saturating_neg())
                    ));
                }
                pending.retain(|s| *s != seq);
            }
            at = (at + len + 3) & !3;
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    /// The attributes in `b` as (type without flags, payload).
    fn attrs(mut b: &[u8]) -> Vec<(u16, Vec<u8>)> {
        let mut out = Vec::new();
        while b.len() >= 4 {
            let len = u16::from_ne_bytes([b[0], b[1]]) as usize;
            let kind = u16::from_ne_bytes([b[2], b[3]]) & !NLA_F_NESTED;
            out.push((kind, b[4..len].to_vec()));
            b = &b[((len + 3) & !3).min(b.len())..];
        }
        out
    }

    #[test]
    fn a_batch_is_the_table_then_each_object() {
        let t = CtTimeout {
            ipv6: true,
            established_s: 600,
        };
        let e = encode("relayd", &[t]);
        let mut msgs = Vec::new();
        let mut b = e.bytes.as_slice();
        while !b.is_empty() {
            let len = u32::from_ne_bytes(b[..4].try_into().unwrap()) as usize;
            assert_eq!(len % 4, 0);
            msgs.push(b[..len].to_vec());
            b = &b[len..];
        }
        let kinds: Vec<u16> = msgs
            .iter()
            .map(|m| u16::from_ne_bytes([m[4], m[5]]))
            .collect();
        assert_eq!(kinds, [0x10, 0x0a00, 0x0a12, 0x11]);
        // Batch begin and end name the nf_tables subsystem; only the table and the
        // object ask for an acknowledgement.
        assert_eq!(msgs[0][16..20], [0, 0, 0, 10]);
        assert_eq!(e.acked.len(), 2);
        assert_eq!(e.acked[1].1, "ct timeout \"established_600s_ip6\"");
        let obj = attrs(&msgs[2][20..]);
        assert_eq!(obj[0], (NFTA_OBJ_TABLE, b"relayd\0".to_vec()));
        assert_eq!(obj[1], (NFTA_OBJ_NAME, b"established_600s_ip6\0".to_vec()));
        assert_eq!(obj[2], (NFTA_OBJ_TYPE, vec![0, 0, 0, 7]));
        let data = attrs(&obj[3].1);
        assert_eq!(data[0], (NFTA_CT_TIMEOUT_L3PROTO, vec![0, 10]));
        assert_eq!(data[1], (NFTA_CT_TIMEOUT_L4PROTO, vec![6]));
        let policy = attrs(&data[2].1);
        assert_eq!(policy, [(CTA_TIMEOUT_TCP_ESTABLISHED, vec![0, 0, 2, 88])]);
    }
}
