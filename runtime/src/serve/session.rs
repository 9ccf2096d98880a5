//! A TCP session: choose the backend, connect (with relayd's retries), copy both ways
//! with half-close and an idle timeout re-armed by traffic in either direction, then
//! log relayd's session close line.
//!
//! Over TLS (`listen … tls`, `forward with tls`) the same, with the handshakes as
//! relayd's relay.c orders them: the client's first, then the backend's; with TLS
//! inspection the backend's first, for the certificate the client is then served. TLS
//! sessions copy through user space (rustls), never with splice, as relayd never
//! splices TLS; plain sessions take the path they always took.

use super::origin::{self, Origin};
use super::pool::Choice;
use super::worker::{Slot, Worker};
use crate::log;
use crate::tls::{self, Inspect, Stream};
use relaydc_spec::plan::{ConnectionLog, TcpOptions};
use std::cell::Cell;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Copy buffer size. Buffers come from the worker's pool only while data moves, so an
/// idle session holds none (10k idle keep-alive clients cost their sockets, not 128 KiB
/// each).
pub const BUF: usize = 64 * 1024;

/// How a session ended: relayd's close message, and the OS error text of an error close
/// (relayd's `log_warn` appends it; clean closes use `log_info`).
pub struct End {
    pub msg: String,
    pub error: Option<String>,
}

impl End {
    pub fn ok(msg: &str) -> End {
        End {
            msg: msg.to_string(),
            error: None,
        }
    }
    pub fn ok_owned(msg: String) -> End {
        End { msg, error: None }
    }
    pub fn error(msg: String, error: String) -> End {
        End {
            msg,
            error: Some(error),
        }
    }
}

pub async fn run(
    w: Rc<Worker>,
    relay: usize,
    listener: usize,
    client: TcpStream,
    peer: SocketAddr,
    _slot: Slot,
) {
    let id = w.next_session_id();
    let reg = w.registry.open(relay, listener, id, peer);
    let plan = &w.shared.plan;
    let r = &plan.relays[relay];
    let tcp = r
        .protocol
        .and_then(|p| plan.protocols.get(p as usize))
        .map_or_else(super::listen::default_tcp, |p| p.tcp.clone());
    tune(&client, peer, &tcp);
    let timeout = Duration::from_secs(u64::from(r.session_timeout_s.max(1)));
    // relayd finds a destination the connection names when it accepts it, before TLS.
    let (backend, end) = match origin::of(plan, relay, listener, &client, peer, id) {
        Err(stop) => stop,
        Ok(to) => match sides(&w, relay, listener) {
            Ok(None) => plain(&w, relay, listener, client, peer, &tcp, timeout, &reg, to).await,
            Ok(Some(sides)) => {
                let at = At { w: &w, relay, id };
                secure(at, sides, listener, client, peer, &tcp, timeout, &reg, to).await
            }
            Err(end) => (None, end),
        },
    };
    close_line(&w, relay, id, peer, backend, None, None, &end);
}

/// A session over plain TCP on both sides.
#[allow(clippy::too_many_arguments)]
async fn plain(
    w: &Worker,
    relay: usize,
    listener: usize,
    client: TcpStream,
    peer: SocketAddr,
    tcp: &TcpOptions,
    timeout: Duration,
    reg: &crate::control::registry::Registered<'_>,
    to: Origin,
) -> (Option<SocketAddr>, End) {
    let choice = {
        let mut pools = w.pools.borrow_mut();
        to.choose(
            &w.shared,
            &mut pools,
            relay,
            listener,
            peer.ip(),
            None,
            None,
        )
    };
    match choice {
        Choice::None => (
            None,
            End {
                msg: "session failed".to_string(),
                error: Some(errno_text(0)),
            },
        ),
        Choice::Backend { addr, retry } => {
            match connect(addr, retry, timeout, tcp, to.source).await {
                Ok(server) => (
                    Some(addr),
                    copy(client, server, timeout, w, tcp.splice, reg.connected(addr)).await,
                ),
                Err(e) => (Some(addr), origin::connect_failure(&e)),
            }
        }
    }
}

/// What TLS a session speaks.
pub struct Sides<'a> {
    /// The client's side, `listen … tls`.
    pub accept: Option<&'a TlsAcceptor>,
    /// The backend's side, `forward with tls`.
    pub connect: Option<&'a TlsConnector>,
    /// Both, with the protocol's `ca cert` and `ca key`.
    pub inspect: Option<&'a Inspect>,
}

/// The TLS of a session on `listener` of `relay`: `None` for plain TCP on both sides.
/// A relay that needs TLS its plan's state lacks is refused with relayd's words for a
/// context it could not set up, never served in the clear.
pub fn sides(w: &Worker, relay: usize, listener: usize) -> Result<Option<Sides<'_>>, End> {
    let r = &w.shared.plan.relays[relay];
    let listens = r.listeners.get(listener).is_some_and(|l| l.tls);
    // `forward with tls` on any forward line makes the relay a TLS client (F_TLSCLIENT).
    let forwards = r.forwards.iter().any(|f| f.tls);
    if !listens && !forwards {
        return Ok(None);
    }
    let t = w.shared.tls.relay(relay);
    let accept = match (listens, t.and_then(|t| t.acceptor.as_ref())) {
        (false, _) => None,
        (true, Some(a)) => Some(a),
        (true, None) => {
            return Err(End::error(
                "no TLS server context available".into(),
                errno_text(0),
            ))
        }
    };
    let connect = match (forwards, t.and_then(|t| t.connector.as_ref())) {
        (false, _) => None,
        (true, Some(c)) => Some(c),
        (true, None) => {
            return Err(End::error(
                "could not configure the TLS client context".into(),
                errno_text(0),
            ))
        }
    };
    let inspect = if listens && forwards {
        t.and_then(|t| t.inspect.as_ref())
    } else {
        None
    };
    Ok(Some(Sides {
        accept,
        connect,
        inspect,
    }))
}

/// Who the TLS lines are about.
#[derive(Clone, Copy)]
pub struct At<'a> {
    pub w: &'a Worker,
    pub relay: usize,
    pub id: u32,
}

impl At<'_> {
    /// `relay NAME, tls session ID established|connected (N active)`: relayd's
    /// log_debug, so `-vv`; formatted only when it will be written.
    fn handshake_line(&self, what: &str) {
        if log::verbosity() >= 2 {
            log::debug2(&format!(
                "relay {}, tls session {} {what} ({} active)",
                self.w.shared.plan.relays[self.relay].name,
                self.id,
                self.w.active.get()
            ));
        }
    }
}

/// The client's TLS handshake (relayd's `relay_tls_transaction` on the accept side),
/// bounded by the session timeout.
pub async fn tls_accept(
    at: At<'_>,
    acceptor: &TlsAcceptor,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<Stream, End> {
    match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
        Err(_) => Err(End::error("TLS handshake timeout".into(), errno_text(0))),
        Ok(Err(e)) => Err(End::error(tls::handshake_error(&e), errno_text(0))),
        Ok(Ok(s)) => {
            at.handshake_line("established");
            Ok(Stream::Server(Box::new(s)))
        }
    }
}

/// The backend's TLS handshake, without a server name (relayd connects with none).
pub async fn tls_connect(
    at: At<'_>,
    connector: &TlsConnector,
    tcp: TcpStream,
    addr: SocketAddr,
    timeout: Duration,
) -> Result<Stream, End> {
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    match tokio::time::timeout(timeout, connector.connect(name, tcp)).await {
        Err(_) => Err(End::error("TLS handshake timeout".into(), errno_text(0))),
        Ok(Err(e)) => Err(End::error(tls::handshake_error(&e), errno_text(0))),
        Ok(Ok(s)) => {
            at.handshake_line("connected");
            Ok(Stream::Client(Box::new(s)))
        }
    }
}

/// The client's handshake with the copy of the backend's certificate `server` showed:
/// relayd's TLS inspection, after its `relay_preconnect`.
pub async fn tls_accept_inspected(
    at: At<'_>,
    inspect: &Inspect,
    server: &Stream,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<Stream, End> {
    let leaf = match server {
        Stream::Client(s) => s.get_ref().1.peer_certificates().and_then(|c| c.first()),
        _ => None,
    };
    let acceptor = match leaf.map(|c| inspect.acceptor(c.as_ref())) {
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            log::debug(&format!(
                "relay {}: session {}: {e}",
                at.w.shared.plan.relays[at.relay].name, at.id
            ));
            return Err(End::error(
                "could not create certificate".into(),
                errno_text(0),
            ));
        }
        None => {
            return Err(End::error(
                "could not create certificate".into(),
                errno_text(0),
            ))
        }
    };
    tls_accept(at, &acceptor, tcp, timeout).await
}

/// A TCP session with TLS on one side or both.
#[allow(clippy::too_many_arguments)]
async fn secure(
    at: At<'_>,
    sides: Sides<'_>,
    listener: usize,
    client: TcpStream,
    peer: SocketAddr,
    tcp: &TcpOptions,
    timeout: Duration,
    reg: &crate::control::registry::Registered<'_>,
    to: Origin,
) -> (Option<SocketAddr>, End) {
    let (mut client, addr, mut server) = if let Some(inspect) = sides.inspect {
        let (addr, server) = match backend(at, &sides, listener, peer, tcp, timeout, to).await {
            Ok(b) => b,
            Err(e) => return e,
        };
        match tls_accept_inspected(at, inspect, &server, client, timeout).await {
            Ok(c) => (c, addr, server),
            Err(end) => return (Some(addr), end),
        }
    } else {
        let client = match sides.accept {
            Some(a) => match tls_accept(at, a, client, timeout).await {
                Ok(c) => c,
                Err(end) => return (None, end),
            },
            None => Stream::Tcp(client),
        };
        match backend(at, &sides, listener, peer, tcp, timeout, to).await {
            Ok((addr, server)) => (client, addr, server),
            Err(e) => return e,
        }
    };
    let end = copy_streams(&mut client, &mut server, timeout, reg.connected(addr)).await;
    tls_close(&mut client).await;
    tls_close(&mut server).await;
    (Some(addr), end)
}

/// relayd's `tls_close` when a session ends: close_notify, then FIN. Bounded: a peer
/// that reads nothing more does not hold the session open.
pub async fn tls_close(s: &mut Stream) {
    if s.is_tls() {
        use tokio::io::AsyncWriteExt;
        let _ = tokio::time::timeout(Duration::from_millis(200), s.shutdown()).await;
    }
}

/// Chooses the backend, connects (with relayd's retries) and, with `forward with tls`,
/// shakes hands.
async fn backend(
    at: At<'_>,
    sides: &Sides<'_>,
    listener: usize,
    peer: SocketAddr,
    tcp: &TcpOptions,
    timeout: Duration,
    to: Origin,
) -> Result<(SocketAddr, Stream), (Option<SocketAddr>, End)> {
    let choice = {
        let mut pools = at.w.pools.borrow_mut();
        to.choose(
            &at.w.shared,
            &mut pools,
            at.relay,
            listener,
            peer.ip(),
            None,
            None,
        )
    };
    let Choice::Backend { addr, retry } = choice else {
        return Err((None, End::error("session failed".into(), errno_text(0))));
    };
    let server = connect(addr, retry, timeout, tcp, to.source)
        .await
        .map_err(|e| (Some(addr), origin::connect_failure(&e)))?;
    match sides.connect {
        Some(c) => tls_connect(at, c, server, addr, timeout)
            .await
            .map(|s| (addr, s))
            .map_err(|end| (Some(addr), end)),
        None => Ok((addr, Stream::Tcp(server))),
    }
}

/// Each direction's buffer when a side speaks TLS: rustls' records hold 16 KiB.
const TLS_BUF: usize = 16 * 1024;

/// [`copy`] for sessions with TLS on a side: both directions through user space, EOF
/// passed on as a half-close (close_notify, then FIN), the same idle timer.
async fn copy_streams(
    client: &mut Stream,
    server: &mut Stream,
    idle: Duration,
    last: &Cell<Instant>,
) -> End {
    let mut a = Touch { io: client, last };
    let mut b = Touch { io: server, last };
    let both = tokio::io::copy_bidirectional_with_sizes(&mut a, &mut b, TLS_BUF, TLS_BUF);
    let watchdog = async {
        loop {
            let due = last.get() + idle;
            tokio::time::sleep_until(due).await;
            if last.get() + idle <= Instant::now() {
                return;
            }
        }
    };
    tokio::select! {
        r = both => match r {
            Ok(_) => End::ok("done"),
            Err(e) => End::error("buffer event error".into(), io_text(&e)),
        },
        _ = watchdog => End::error("buffer event timeout".into(), errno_text(0)),
    }
}

/// A stream that re-arms the session's idle timer whenever bytes move.
struct Touch<'a> {
    io: &'a mut Stream,
    last: &'a Cell<Instant>,
}

impl AsyncRead for Touch<'_> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.last.set(Instant::now());
        }
        r
    }
}

impl AsyncWrite for Touch<'_> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut *this.io).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = r {
            if n > 0 {
                this.last.set(Instant::now());
            }
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().io).poll_shutdown(cx)
    }
}

/// A client connection's tcp options. Its family is the peer's (an accepted socket's
/// ends share one), so no getsockname is spent per connection to learn it.
pub fn tune(s: &TcpStream, peer: SocketAddr, tcp: &TcpOptions) {
    let _ = s.set_nodelay(nodelay(tcp));
    let sock = socket2::SockRef::from(s);
    if let Some(b) = tcp.socket_buffer {
        let _ = sock.set_recv_buffer_size(b as usize);
        let _ = sock.set_send_buffer_size(b as usize);
    }
    let _ = super::listen::ip_options(&sock, peer.is_ipv6(), tcp);
}

/// TCP_NODELAY unless the protocol says `no nodelay`. relayd leaves the kernel's
/// default (Nagle on) when the option is absent; relayd-run turns Nagle off instead,
/// because it writes whole buffers and Nagle could only hold a response's last partial
/// segment back until the peer's delayed ACK (40 ms and more per response, measured
/// with `testsuite/bench/relay`). An explicit `no nodelay` is honoured.
fn nodelay(tcp: &TcpOptions) -> bool {
    tcp.nodelay != Some(false)
}

/// relayd retries a failed connect at once, `retry` times (the host's `retry`, or the
/// forward line's); the connect itself is bounded by the session timeout. The tcp
/// options are set before connecting, as relayd's relay_socket does, so `socket buffer`
/// shapes the handshake's window and `ip minttl` guards the handshake too. With
/// `source` (`transparent forward`) each attempt's socket comes bound to that address
/// from the privileged helper; a helper that cannot make one ends the attempts.
/// relayd's RELAY_OUTOF_FD_RETRIES.
const OUT_OF_FD_RETRIES: u32 = 5;

pub async fn connect(
    addr: SocketAddr,
    retry: u32,
    timeout: Duration,
    tcp: &TcpOptions,
    source: Option<IpAddr>,
) -> std::io::Result<TcpStream> {
    let mut left = retry;
    let mut out_of_fds = 0;
    loop {
        let r = match tokio::time::timeout(timeout, connect_once(addr, tcp, source)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        };
        match r {
            Ok(s) => return Ok(s),
            // relayd's relay_connect_retry: out of descriptors, try again each second
            // (RELAY_OUTOF_FD_RETRIES times) rather than fail a session another one's
            // end would have let through.
            Err(e)
                if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
                    && out_of_fds < OUT_OF_FD_RETRIES =>
            {
                log::debug(&format!("forward failed: {}, deferring", io_text(&e)));
                out_of_fds += 1;
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
            Err(e) if left == 0 || e.get_ref().is_some_and(|i| i.is::<origin::BindanyFailed>()) => {
                return Err(e)
            }
            Err(e) => {
                log::debug(&format!(
                    "forward failed: {}, {}",
                    io_text(&e),
                    if left > 1 { "next retry" } else { "last retry" }
                ));
                left -= 1;
            }
        }
    }
}

async fn connect_once(
    addr: SocketAddr,
    tcp: &TcpOptions,
    source: Option<IpAddr>,
) -> std::io::Result<TcpStream> {
    let socket = match source {
        Some(ip) => {
            let bound = origin::bound_socket(ip)
                .await
                .map_err(|e| io::Error::other(origin::BindanyFailed(e)))?;
            let s = std::net::TcpStream::from(bound);
            s.set_nonblocking(true)?;
            tokio::net::TcpSocket::from_std_stream(s)
        }
        None if addr.is_ipv6() => tokio::net::TcpSocket::new_v6()?,
        None => tokio::net::TcpSocket::new_v4()?,
    };
    {
        let sock = socket2::SockRef::from(&socket);
        if let Some(b) = tcp.socket_buffer {
            sock.set_recv_buffer_size(b as usize)?;
            sock.set_send_buffer_size(b as usize)?;
        }
        super::listen::ip_options(&sock, addr.is_ipv6(), tcp)?;
        sock.set_nodelay(nodelay(tcp))?;
    }
    socket.connect(addr).await
}

/// Copies both ways until both sides have closed (EOF is passed on as a half-close), an
/// error, or no byte moved in either direction for `idle`. With `splice` (relayd's
/// default for TCP relays) the kernel moves the bytes; otherwise they pass through the
/// worker's buffers.
async fn copy(
    mut client: TcpStream,
    mut server: TcpStream,
    idle: Duration,
    w: &Worker,
    spliced: bool,
    last: &Cell<Instant>,
) -> End {
    let pipes = spliced.then_some(&w.pipes);
    let (cr, cw) = client.split();
    let (sr, sw) = server.split();
    let both = async {
        let (a, b) = tokio::join!(
            super::splice::pump(cr, sw, last, &w.buffers, pipes),
            super::splice::pump(sr, cw, last, &w.buffers, pipes)
        );
        a.and(b)
    };
    let watchdog = async {
        loop {
            let due = last.get() + idle;
            tokio::time::sleep_until(due).await;
            if last.get() + idle <= Instant::now() {
                return;
            }
        }
    };
    tokio::select! {
        r = both => match r {
            Ok(()) => End::ok("done"),
            Err(e) => End::error("buffer event error".into(), io_text(&e)),
        },
        _ = watchdog => End::error("buffer event timeout".into(), errno_text(0)),
    }
}

/// A worker's copy buffers, reused from session to session.
#[derive(Default)]
pub struct BufPool {
    free: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl BufPool {
    pub fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| vec![0u8; BUF])
    }

    pub fn put(&self, buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        // Keep a bounded number idle; the rest go back to the allocator.
        if free.len() < 256 {
            free.push(buf);
        }
    }
}

/// Empty read buffers of HTTP sessions, kept with their capacity from session to
/// session: a session per request would otherwise pay two 16 KiB allocations and their
/// frees (a quarter of its user-space instructions, `testsuite/bench/profile conn`).
#[derive(Default)]
pub struct ReadBufs {
    free: std::cell::RefCell<Vec<Vec<u8>>>,
}

impl ReadBufs {
    pub fn take(&self) -> Vec<u8> {
        self.free.borrow_mut().pop().unwrap_or_default()
    }

    pub fn put(&self, mut buf: Vec<u8>) {
        let mut free = self.free.borrow_mut();
        // Bounded in number, and a buffer a huge head or body grew goes back to the
        // allocator rather than staying for ever.
        if free.len() < 256 && buf.capacity() <= 4 * BUF {
            buf.clear();
            free.push(buf);
        }
    }
}

/// `relay NAME, session ID (N active), TAG, CLIENT -> SERVER:PORT, MSG[,LOG]` (relay.c
/// `relay_close`): info for clean closes with `log connection`, warn with strerror for
/// error closes with `log connection` or `log connection errors`. `log` is the session
/// log's first line (it starts with a space).
#[allow(clippy::too_many_arguments)]
pub fn close_line(
    w: &Worker,
    relay: usize,
    id: u32,
    peer: SocketAddr,
    backend: Option<SocketAddr>,
    tag: Option<&str>,
    log: Option<&str>,
    end: &End,
) {
    let conf = &w.shared.plan.globals.log.connection;
    // `log connection` logs every close; `log connection errors` only error closes.
    let logs = !matches!(
        (&end.error, conf),
        (_, ConnectionLog::Off) | (None, ConnectionLog::Errors)
    );
    if !logs {
        return;
    }
    let name = &w.shared.plan.relays[relay].name;
    let (server, port) = match backend {
        Some(a) => (a.ip().to_string(), a.port()),
        // print_host() of an unset address prints nothing (relayd: "-> :0").
        None => (String::new(), 0),
    };
    let log = log.filter(|l| !l.is_empty());
    let line = format!(
        "relay {name}, session {id} ({} active), {}, {} -> {server}:{port}, {}{}{}",
        w.active.get(),
        tag.unwrap_or("0"),
        peer.ip(),
        end.msg,
        if log.is_some() { "," } else { "" },
        log.unwrap_or("")
    );
    match &end.error {
        None => log::info(&line),
        Some(e) => log::warn_errno(&line, e),
    }
}

/// strerror(3)'s text for an OS error, without Rust's " (os error N)".
pub fn io_text(e: &std::io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => errno_text(code),
        None => e.to_string(),
    }
}

pub fn errno_text(code: i32) -> String {
    let s = std::io::Error::from_raw_os_error(code).to_string();
    match s.find(" (os error") {
        Some(i) => s[..i].to_string(),
        None => s,
    }
}
