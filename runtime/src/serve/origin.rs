//! What relayd does below the relay's own choice of backend: `forward to nat lookup`,
//! `forward to destination` and `transparent forward`, on Linux.
//!
//! * `nat lookup` (relayd's F_NATLOOK, which asks pf for the state of a connection an
//!   `rdr-to` sent to the relay): the destination the client asked for before an
//!   nftables `redirect` or `dnat` rewrote it, from conntrack through
//!   `SO_ORIGINAL_DST` (`IP6T_SO_ORIGINAL_DST` for IPv6) on the accepted socket. A
//!   connection without a conntrack entry has none.
//! * `destination` (F_DIVERT, pf's `divert-to`): with TPROXY (`nft … tproxy to :PORT`
//!   and a local route for the packets it marks) the accepted socket's own address is
//!   the one the client asked for. Its listener needs IP_TRANSPARENT (`listen.rs` sets
//!   it while the process still has CAP_NET_ADMIN).
//! * `transparent forward` (FWD_TRANS): the backend connection leaves from the client's
//!   address. The relay process has no capability, so, as relayd's relay process asks
//!   its parent (IMSG_BINDANY), each relay thread asks the privileged helper
//!   (`crate::helper`) for a socket with IP_TRANSPARENT bound to that address, over a
//!   channel of its own that [`install`] hands out.
//!
//! relayd's order, kept here: the destination is found when the connection is accepted,
//! before any TLS. Without one, the relay's tables decide, else its address; `nat
//! lookup` with neither closes `session NAT lookup failed`. A destination that is the
//! listener itself would have the relay connect to itself: `destination` then falls
//! back as without one, and `nat lookup` closes `session aborted` (relay_session's loop
//! check). For `nat lookup` the accepted socket's own address counts as the listener's
//! too: conntrack gives an untranslated connection its own destination, which relayd's
//! check against the configured address misses when the listener is a wildcard one.

use super::pool::{self, Choice, Pools};
use super::session::{errno_text, io_text, End};
use super::worker::Shared;
use crate::helper::{self, BINDANY_ANSWER};
use crate::log;
use relaydc_spec::balance::Hasher;
use relaydc_spec::plan::{Address, Plan, Relay, Target};
use std::cell::RefCell;
use std::fmt;
use std::io;
use std::mem::MaybeUninit;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Duration;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

/// The close message of a session whose bindany request failed (relay.c).
pub const BINDANY_FAILED: &str = "bindany failed, invalid socket";

/// The helper answers at once; one that does not within this time is stuck.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// How a relay learns a destination from the connection itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    NatLookup { retry: u32 },
    Destination { retry: u32 },
}

/// `relay`'s nat lookup or destination target (the compiler allows one of them).
pub fn lookup(r: &Relay) -> Option<Lookup> {
    r.forwards.iter().find_map(|f| match f.target {
        Target::NatLookup { retry } => Some(Lookup::NatLookup { retry }),
        Target::Destination { retry } => Some(Lookup::Destination { retry }),
        _ => None,
    })
}

/// Whether `relay` forwards to the destination, so its listeners need IP_TRANSPARENT.
pub fn diverts(r: &Relay) -> bool {
    matches!(lookup(r), Some(Lookup::Destination { .. }))
}

/// Whether backend connections of `relay` leave from the client's address: relayd's
/// forward mode is the relay's, so one `transparent forward` line makes it so.
pub fn transparent(r: &Relay) -> bool {
    r.forwards.iter().any(|f| f.transparent)
}

/// Whether `plan` needs bindany channels: an enabled relay forwards transparently.
pub fn needs_bindany(plan: &Plan) -> bool {
    plan.relays.iter().any(|r| !r.disabled && transparent(r))
}

/// A destination and its forward line's `retry`.
type Dest = Option<(SocketAddr, u32)>;

/// How a session ends before it connects anywhere: the backend its close line shows,
/// and the message.
type Stop = (Option<SocketAddr>, End);

/// Where a session's backend connections go and come from, as far as the connection
/// decides it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin {
    /// The destination the connection names, with the forward line's `retry`; the
    /// relay's tables and address otherwise.
    pub dest: Dest,
    /// `transparent forward`: the client's address, to connect from.
    pub source: Option<IpAddr>,
}

impl Origin {
    /// The backend: the destination found, else what the relay's tables or address give.
    #[allow(clippy::too_many_arguments)]
    pub fn choose(
        &self,
        shared: &Shared,
        pools: &mut Pools,
        relay: usize,
        listener: usize,
        client: IpAddr,
        rule_table: Option<u32>,
        hasher: Option<&mut Hasher>,
    ) -> Choice {
        match self.dest {
            Some((addr, retry)) => Choice::Backend { addr, retry },
            None => pool::choose(shared, pools, relay, listener, client, rule_table, hasher),
        }
    }
}

/// The origin of a session accepted as `client` from `peer` on `relay`'s `listener`.
/// `Err` is how the session ends at once: the backend its close line shows and the
/// message.
pub fn of(
    plan: &Plan,
    relay: usize,
    listener: usize,
    client: &TcpStream,
    peer: SocketAddr,
    id: u32,
) -> Result<Origin, Stop> {
    let Some(r) = plan.relays.get(relay) else {
        return Ok(Origin::default());
    };
    Ok(Origin {
        dest: find(r, listener, client, peer, id)?,
        source: transparent(r).then_some(peer.ip()),
    })
}

/// The destination the connection names, if the relay asks it for one.
fn find(
    r: &Relay,
    listener: usize,
    client: &TcpStream,
    peer: SocketAddr,
    id: u32,
) -> Result<Dest, Stop> {
    let Some(how) = lookup(r) else {
        return Ok(None);
    };
    let listen = r.listeners.get(listener).and_then(|l| match l.address {
        Address::Ip(ip) => Some(SocketAddr::new(ip, l.port)),
        Address::Name(_) => None,
    });
    let local = client.local_addr().map_err(|e| {
        (
            None,
            End::error("sockname lookup failed".into(), io_text(&e)),
        )
    })?;
    match how {
        Lookup::Destination { retry } => {
            // The listener itself: fall back to the alternate forward target.
            if Some(local) == listen {
                return Ok(None);
            }
            Ok(Some((local, retry)))
        }
        Lookup::NatLookup { retry } => {
            let dst = match original_dst(client, local.is_ipv6()) {
                Ok(dst) => {
                    log::debug(&format!(
                        "natlook: in {}:{} -> {}:{}",
                        peer.ip(),
                        peer.port(),
                        dst.ip(),
                        dst.port()
                    ));
                    dst
                }
                Err(e) => {
                    log::debug(&format!("natlook: getsockopt: {}", io_text(&e)));
                    return nat_fallback(r, &e);
                }
            };
            if Some(dst) == listen || dst == local {
                log::debug(&format!("relay_session: session {id}: looping"));
                return Err((
                    Some(dst),
                    End::error("session aborted".into(), errno_text(0)),
                ));
            }
            Ok(Some((dst, retry)))
        }
    }
}

/// No original destination: the relay's tables or address, or `session NAT lookup
/// failed` without either (the lookup's error is the close line's).
fn nat_fallback(r: &Relay, e: &io::Error) -> Result<Dest, Stop> {
    let fallback = r.forwards.iter().any(|f| {
        matches!(
            f.target,
            Target::Table { .. }
                | Target::Addr {
                    address: Address::Ip(_),
                    ..
                }
        )
    });
    if fallback {
        Ok(None)
    } else {
        Err((
            None,
            End::error("session NAT lookup failed".into(), io_text(e)),
        ))
    }
}

/// Conntrack's original destination of the accepted connection `s`.
fn original_dst(s: &TcpStream, ipv6: bool) -> io::Result<SocketAddr> {
    if ipv6 {
        rustix::net::sockopt::ipv6_original_dst(s)
            .map(SocketAddr::V6)
            .map_err(io::Error::from)
    } else {
        rustix::net::sockopt::ip_original_dst(s)
            .map(SocketAddr::V4)
            .map_err(io::Error::from)
    }
}

// ---------------------------------------------------------------------------------------
// Bindany
// ---------------------------------------------------------------------------------------

/// A bindany request that did not give a socket: the session closes with
/// [`BINDANY_FAILED`] rather than `session failed`, and is not retried.
#[derive(Debug)]
pub struct BindanyFailed(pub io::Error);

impl fmt::Display for BindanyFailed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", io_text(&self.0))
    }
}

impl std::error::Error for BindanyFailed {}

/// The close message and error text for a backend connection that failed.
pub fn connect_failure(e: &io::Error) -> End {
    match e.get_ref().and_then(|i| i.downcast_ref::<BindanyFailed>()) {
        Some(b) => End::error(BINDANY_FAILED.into(), io_text(&b.0)),
        None => End::error("session failed".into(), io_text(e)),
    }
}

/// Whether bindany was decided for this process, and the channels no relay thread has
/// taken yet. Sessions find their thread's channel through [`CHANNEL`], as they find
/// the thread's buffers: no lock on the request path once a thread has its own.
static DECIDED: AtomicBool = AtomicBool::new(false);
static CHANNELS: Mutex<Option<Vec<UnixStream>>> = Mutex::new(None);

thread_local! {
    static CHANNEL: RefCell<Option<Rc<Channel>>> = const { RefCell::new(None) };
}

/// Called once by `serve` before the relay threads start: `channels` are the helper's
/// bindany channels, one per relay thread, or `None` when the plan has no transparent
/// forwards (and a reloaded plan with some is then refused, [`unavailable`]).
pub fn install(channels: Option<Vec<UnixStream>>) {
    if let Ok(mut c) = CHANNELS.lock() {
        *c = channels;
    }
    DECIDED.store(true, Ordering::SeqCst);
}

/// Why `plan` cannot be served by this process now: it forwards transparently and the
/// helper was started without bindany channels (or not at all).
pub fn unavailable(plan: &Plan) -> Option<String> {
    if !DECIDED.load(Ordering::SeqCst) || !needs_bindany(plan) {
        return None;
    }
    let have = CHANNELS.lock().map(|c| c.is_some()).unwrap_or(false);
    if have {
        return None;
    }
    let names: Vec<&str> = plan
        .relays
        .iter()
        .filter(|r| !r.disabled && transparent(r))
        .map(|r| r.name.as_str())
        .collect();
    Some(format!(
        "relay {} forwards transparently, which needs the privileged helper's bindany \
         channels that relayd-run opens only for a plan that has transparent forwards: \
         restart relayd-run to serve it",
        names.join(", ")
    ))
}

/// A socket bound to `ip` (port 0) that may use it although it is not this host's:
/// made by the privileged helper, asked over this thread's channel.
pub async fn bound_socket(ip: IpAddr) -> io::Result<OwnedFd> {
    let channel = CHANNEL.with(|c| {
        let mut c = c.borrow_mut();
        if c.is_none() {
            *c = take_channel().map(Rc::new);
        }
        c.clone()
    });
    let Some(channel) = channel else {
        return Err(io::Error::new(
            io::ErrorKind::NotConnected,
            "no bindany channel to the privileged helper",
        ));
    };
    match tokio::time::timeout(ANSWER_TIMEOUT, channel.ask(ip)).await {
        Ok(r) => r,
        Err(_) => Err(io::Error::from(io::ErrorKind::TimedOut)),
    }
}

/// This thread's channel, from those not taken yet.
fn take_channel() -> Option<Channel> {
    let std = CHANNELS.lock().ok()?.as_mut()?.pop()?;
    std.set_nonblocking(true).ok()?;
    let stream = tokio::net::UnixStream::from_std(std).ok()?;
    Some(Channel {
        state: tokio::sync::Mutex::new(State {
            stream,
            out: Vec::new(),
            next: 0,
            answer: [0; BINDANY_ANSWER],
            got: 0,
            fd: None,
        }),
    })
}

/// One relay thread's channel to the helper. Its sessions take turns; a session that
/// goes away in the middle of an exchange leaves the state consistent (a partly written
/// request or partly read answer stays in [`State`]) and its answer is recognised as
/// stale by its id.
struct Channel {
    state: tokio::sync::Mutex<State>,
}

struct State {
    stream: tokio::net::UnixStream,
    /// Request bytes not written yet.
    out: Vec<u8>,
    /// The last request's id.
    next: u32,
    answer: [u8; BINDANY_ANSWER],
    got: usize,
    /// The socket that came with the answer being read.
    fd: Option<OwnedFd>,
}

impl Channel {
    async fn ask(&self, ip: IpAddr) -> io::Result<OwnedFd> {
        let mut st = self.state.lock().await;
        st.next = st.next.wrapping_add(1);
        let id = st.next;
        st.out.extend_from_slice(&helper::bindany_request(id, ip));
        while !st.out.is_empty() {
            let State { stream, out, .. } = &mut *st;
            match stream.write(out).await? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => {
                    out.drain(..n);
                }
            }
        }
        loop {
            let (got, result, fd) = st.read_answer().await?;
            if got != id {
                // An earlier session's answer: its socket closes here.
                continue;
            }
            result?;
            return fd.ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidData, "an answer without its socket")
            });
        }
    }
}

impl State {
    /// The next whole answer: its id, its outcome and the socket that came with it.
    async fn read_answer(&mut self) -> io::Result<(u32, io::Result<()>, Option<OwnedFd>)> {
        while self.got < BINDANY_ANSWER {
            self.stream.readable().await?;
            let State {
                stream,
                answer,
                got,
                fd,
                ..
            } = &mut *self;
            let read = stream.try_io(Interest::READABLE, || {
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
                let r = rustix::net::recvmsg(
                    &*stream,
                    &mut [io::IoSliceMut::new(
                        answer.get_mut(*got..).unwrap_or_default(),
                    )],
                    &mut control,
                    rustix::net::RecvFlags::CMSG_CLOEXEC,
                )
                .map_err(io::Error::from)?;
                for m in control.drain() {
                    if let rustix::net::RecvAncillaryMessage::ScmRights(fds) = m {
                        for f in fds {
                            // One socket per answer; anything more is closed.
                            if fd.is_none() {
                                *fd = Some(f);
                            }
                        }
                    }
                }
                Ok(r.bytes)
            });
            match read {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the privileged helper closed the bindany channel",
                    ))
                }
                Ok(n) => self.got += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        self.got = 0;
        let (id, result) = helper::bindany_answer(&self.answer);
        Ok((id, result, self.fd.take()))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    #[test]
    fn bindany_failures_close_with_relayds_words() {
        let e = io::Error::other(BindanyFailed(io::Error::from_raw_os_error(1)));
        let end = connect_failure(&e);
        assert_eq!(end.msg, BINDANY_FAILED);
        assert_eq!(end.error.as_deref(), Some("Operation not permitted"));
        let end = connect_failure(&io::Error::from_raw_os_error(111));
        assert_eq!(end.msg, "session failed");
        assert_eq!(end.error.as_deref(), Some("Connection refused"));
    }
}
