//! DNS relays (`dns protocol`), over UDP as relayd's relay_udp.c relays them.
//!
//! Every query is a session: the relay draws a new query ID (relayd's
//! `shuffle_generate16`, so answers cannot be forged by guessing the client's ID),
//! picks a backend as other relays do, and sends the query from a socket of its own
//! connected to that backend (so only that address can answer). The first answer that
//! carries the new ID gets the client's ID back and goes to the client from the relay's
//! listening socket: `session closed`. An answer with another ID closes the session
//! (`invalid response`); no answer within the session timeout, `udp timeout`. DNS over
//! TCP goes through a tcp relay, as in relayd.

use super::pool::{self, Choice};
use super::session::{close_line, errno_text, io_text, End};
use super::worker::Worker;
use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tokio::net::UdpSocket;

/// relayd's READ_BUF_SIZE for UDP relays: a larger datagram is cut by the read.
const DATAGRAM: usize = 65535;
/// A DNS header: ID, two flag bytes, four counts.
const HEADER: usize = 12;
/// The QR bit of the first flag byte: set in answers.
const QR: u8 = 0x80;

/// relay_dns_validate at the listener: a datagram opens a session only if it holds a
/// whole header and is a query (QR clear).
pub fn is_query(datagram: &[u8]) -> bool {
    datagram.len() >= HEADER && datagram.get(2).is_some_and(|flags| flags & QR == 0)
}

/// Gives a query the session's ID and returns the client's (a query is at least a
/// header long, see [`is_query`]).
pub fn replace_id(query: &mut [u8], new_id: u16) -> [u8; 2] {
    let mut client_id = [0u8; 2];
    if let Some(id) = query.get_mut(..2) {
        client_id.copy_from_slice(id);
        id.copy_from_slice(&new_id.to_be_bytes());
    }
    client_id
}

/// relay_dns_validate on the session's own socket: an answer of at least a header that
/// carries `new_id` gets the client's ID back (`true`); anything else ends the session.
pub fn restore_id(answer: &mut [u8], new_id: u16, client_id: [u8; 2]) -> bool {
    if answer.len() < HEADER {
        return false;
    }
    match answer.get_mut(..2) {
        Some(id) if *id == new_id.to_be_bytes() => {
            id.copy_from_slice(&client_id);
            true
        }
        _ => false,
    }
}

/// relayd's `shuffle_generate16`: IDs from a shuffled sequence, so two sessions in
/// flight never share one and the next cannot be predicted from the last. A Fisher-Yates
/// shuffle of all 65536 values, drawn in order and reshuffled when spent.
pub struct Shuffle {
    ids: Vec<u16>,
    next: usize,
    state: u64,
}

impl Shuffle {
    pub fn new(seed: [u8; 16]) -> Shuffle {
        let mut state = u64::from_le_bytes([
            seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
        ]) ^ 0x9e37_79b9_7f4a_7c15;
        if state == 0 {
            state = 1;
        }
        let mut s = Shuffle {
            ids: (0..=u16::MAX).collect(),
            next: 0,
            state,
        };
        s.reshuffle();
        s
    }

    fn rand(&mut self) -> u64 {
        // xorshift64*: enough to make IDs unpredictable to an off-path sender; the
        // seed comes from the kernel's random source.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn reshuffle(&mut self) {
        for i in (1..self.ids.len()).rev() {
            let j = (self.rand() % (i as u64 + 1)) as usize;
            self.ids.swap(i, j);
        }
        self.next = 0;
    }

    pub fn next_id(&mut self) -> u16 {
        if self.next >= self.ids.len() {
            self.reshuffle();
        }
        let id = self.ids[self.next];
        self.next += 1;
        id
    }
}

/// Serves one DNS relay listener of one worker until the task is dropped.
pub async fn serve(w: Rc<Worker>, relay: usize, listener: usize, socket: Rc<UdpSocket>) {
    let shuffle = Rc::new(RefCell::new(Shuffle::new(super::worker::random_key())));
    let mut buf = vec![0u8; DATAGRAM];
    loop {
        let (len, peer) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(_) => continue,
        };
        // relay_dns_validate: too short for a header, or an answer: not a new session.
        let Some(query) = buf.get(..len).filter(|q| is_query(q)) else {
            continue;
        };
        let query = query.to_vec();
        let id = shuffle.borrow_mut().next_id();
        let w2 = Rc::clone(&w);
        let s2 = Rc::clone(&socket);
        tokio::task::spawn_local(async move {
            session(w2, relay, listener, s2, peer, query, id).await;
        });
    }
}

async fn session(
    w: Rc<Worker>,
    relay: usize,
    listener: usize,
    socket: Rc<UdpSocket>,
    peer: SocketAddr,
    mut query: Vec<u8>,
    new_id: u16,
) {
    let sid = w.next_session_id();
    let reg = w.registry.open(relay, listener, sid, peer);
    let _slot = w.slot();
    let r = &w.shared.plan.relays[relay];
    let timeout = Duration::from_secs(u64::from(r.session_timeout_s.max(1)));
    let backend = Cell::new(None);
    let end = async {
        let choice = {
            let mut pools = w.pools.borrow_mut();
            pool::choose(
                &w.shared,
                &mut pools,
                relay,
                listener,
                peer.ip(),
                None,
                None,
            )
        };
        let Choice::Backend { addr, retry } = choice else {
            return End::error("session failed".into(), errno_text(0));
        };
        backend.set(Some(addr));
        reg.backend(addr);
        let client_id = replace_id(&mut query, new_id);
        let out = match send(addr, &query, retry).await {
            Ok(s) => s,
            Err(e) => return End::error("session failed".into(), io_text(&e)),
        };
        let mut answer = vec![0u8; DATAGRAM];
        let n = match tokio::time::timeout(timeout, out.recv(&mut answer)).await {
            Err(_) => return End::error("udp timeout".into(), errno_text(0)),
            Ok(Err(e)) => return End::error("session failed".into(), io_text(&e)),
            Ok(Ok(n)) => n,
        };
        reg.touch();
        // relay_dns_validate on the session's own socket: anything but an answer
        // carrying our ID ends the session.
        let a = answer.get_mut(..n).unwrap_or_default();
        if !restore_id(a, new_id, client_id) {
            return End::ok("invalid response");
        }
        match socket.send_to(a, peer).await {
            Ok(_) => End::ok("session closed"),
            Err(e) => End::error("response failed".into(), io_text(&e)),
        }
    }
    .await;
    close_line(&w, relay, sid, peer, backend.get(), None, None, &end);
}

/// A socket of the session's own, connected to the backend; the query sent with
/// relayd's immediate retries.
async fn send(addr: SocketAddr, query: &[u8], retry: u32) -> std::io::Result<UdpSocket> {
    let local: SocketAddr = if addr.is_ipv4() {
        (std::net::Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let s = UdpSocket::bind(local).await?;
    s.connect(addr).await?;
    let mut left = retry;
    loop {
        match s.send(query).await {
            Ok(_) => return Ok(s),
            Err(e) if left == 0 => return Err(e),
            Err(_) => left -= 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Shuffle;

    #[test]
    fn shuffled_ids_do_not_repeat_within_a_round() {
        let mut s = Shuffle::new([7; 16]);
        let mut seen = vec![false; 65536];
        for _ in 0..65536 {
            let id = s.next_id() as usize;
            assert!(!seen[id], "id {id} repeated");
            seen[id] = true;
        }
        // The next round starts over with a fresh order.
        let _ = s.next_id();
    }
}
