//! An HTTP relay session (relayd's `relay_http.c` around the framing of `crate::http`):
//! read a request head, run the protocol's filter rules (`spec::filter::eval`), apply
//! their options (`spec::filter::apply`), refuse or connect (late: a blocked request
//! never opens a backend connection), forward head and body, then the same for the
//! response; keep-alive and pipelining on the same connections, one close line per
//! session with its session log. Either connection may speak TLS (`listen … tls`,
//! `forward with tls`, TLS inspection); the handshakes happen where relayd's relay.c
//! does them (`session::tls_accept` and friends) and the rest reads and writes a
//! [`Stream`] whichever it is.

use super::origin::{self, Origin};
use super::pool::Choice;
use super::session::{errno_text, io_text, tune, At, End, Sides};
use super::worker::{Slot, Worker};
use crate::control::registry::Registered;
use crate::http::{self, Body, Carry, ChunkedDecoder, HeadReader, HttpError, Method, Parsed};
use crate::tls::Stream;
use relaydc_spec::balance::Hasher;
use relaydc_spec::errorpage::{self, ErrorPage};
use relaydc_spec::filter::apply::{self, Actions, MacroContext, SessionLog};
use relaydc_spec::filter::eval::{evaluate, SessionState, Verdict};
use relaydc_spec::filter::head::Head;
use relaydc_spec::filter::Direction;
use relaydc_spec::plan::{Address, Protocol};
use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

mod response;

const READ: usize = 16 * 1024;

/// A block verdict (or options relayd could not apply): `relay_abort_http(con, 403,
/// "Forbidden", …)`.
const FORBIDDEN: HttpError = HttpError {
    msg: "Forbidden",
    status: 403,
};

/// The request-head deadline passed (`super::limits`): the page relayd would send for
/// a request that never came whole.
const HEAD_TIMEOUT: HttpError = HttpError {
    msg: "Request Timeout",
    status: 408,
};

/// A connection with the bytes read from it but not used yet.
struct Conn {
    stream: Stream,
    buf: Vec<u8>,
    start: usize,
}

impl Conn {
    /// `buf` comes empty from the worker's [`super::session::ReadBufs`].
    fn new(stream: Stream, buf: Vec<u8>) -> Conn {
        Conn {
            stream,
            buf,
            start: 0,
        }
    }

    fn data(&self) -> &[u8] {
        &self.buf[self.start..]
    }

    fn consume(&mut self, n: usize) {
        self.start = (self.start + n).min(self.buf.len());
        if self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
    }

    /// Reads more; `Ok(0)` at EOF. `Err(TimedOut)` when nothing came for `idle`.
    /// Appends into spare capacity (`read_buf`): nothing is zero-filled per read.
    async fn fill(&mut self, idle: Duration) -> std::io::Result<usize> {
        if self.start > 0 && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(READ);
        match tokio::time::timeout(idle, self.stream.read_buf(&mut self.buf)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        }
    }
}

/// Resolves once a backend closes its connection or sends something while no request
/// is outstanding. Over plain TCP it only peeks, so an idle keep-alive backend costs no
/// buffer; over TLS it reads, since post-handshake messages (session tickets) are not
/// application data and must not count.
async fn backend_spoke(server: &mut Conn, idle: Duration) {
    match &server.stream {
        Stream::Tcp(t) => {
            let mut b = [0u8; 1];
            let _ = t.peek(&mut b).await;
        }
        _ => {
            let _ = server.fill(idle).await;
        }
    }
}

/// A session's head and head readers, kept by the worker from session to session with
/// their allocations (header buffers, line spans): a client that opens a connection per
/// request would otherwise pay a score of small allocations for each
/// (`testsuite/bench/profile conn`).
pub(super) struct Scratch {
    head: Head,
    reader: HeadReader,
    rreader: HeadReader,
}

#[derive(Default)]
pub(super) struct ScratchPool {
    free: std::cell::RefCell<Vec<Scratch>>,
}

impl ScratchPool {
    fn take(&self, limit: usize) -> Scratch {
        self.free.borrow_mut().pop().unwrap_or_else(|| Scratch {
            head: Head::default(),
            reader: HeadReader::request(limit),
            rreader: HeadReader::response(limit, None, Carry::Header),
        })
    }

    fn put(&self, mut s: Scratch) {
        // A head that held thousands of headers goes back to the allocator rather than
        // staying this big; so do those beyond the few a worker reuses at once.
        s.head.clear();
        let mut free = self.free.borrow_mut();
        if free.len() < 64 && s.head.headers.capacity() <= 128 {
            free.push(s);
        }
    }
}

/// Why a session ends, before it becomes a close line.
enum Stop {
    /// A clean end (`done`).
    Done,
    /// relayd's `relay_abort_http`: a page with `return error`, then close.
    Abort { err: HttpError, label: bool },
    /// Closed with a message and an OS error text.
    Fail {
        msg: Cow<'static, str>,
        error: String,
    },
}

fn io_stop(e: &std::io::Error) -> Stop {
    if e.kind() == std::io::ErrorKind::TimedOut {
        Stop::Fail {
            msg: Cow::Borrowed("buffer event timeout"),
            error: errno_text(0),
        }
    } else {
        Stop::Fail {
            msg: Cow::Borrowed("buffer event error"),
            error: io_text(e),
        }
    }
}

struct Session<'a> {
    w: &'a Worker,
    relay: usize,
    listener: usize,
    proto: &'a Protocol,
    peer: SocketAddr,
    idle: Duration,
    /// The request-head deadline's length (`--head-timeout`), and when the first head's
    /// deadline passes (counted from the accept).
    head_timeout: Option<Duration>,
    first_head_by: Option<tokio::time::Instant>,
    filter: SessionState,
    queued: Vec<usize>,
    log: SessionLog,
    hasher: Hasher,
    backend: Option<(Conn, SocketAddr)>,
    /// The backend a failed connect was for: relayd has set the session's address by
    /// then, and its close line shows it.
    tried: Option<SocketAddr>,
    backend_table: Option<u32>,
    /// `forward with tls`: backends are spoken to over TLS.
    connector: Option<&'a TlsConnector>,
    /// A destination the connection named, and `transparent forward`'s source.
    origin: Origin,
    id: u32,
    /// The session's entry in the worker's registry (`relayctl show sessions`).
    reg: Registered<'a>,
    /// Reused from message to message: the head written out, and the start line's
    /// version and status code as sent.
    out: Vec<u8>,
    version: Vec<u8>,
    code: Vec<u8>,
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
    let plan = &w.shared.plan;
    let r = &plan.relays[relay];
    let Some(proto) = r.protocol.and_then(|p| plan.protocols.get(p as usize)) else {
        return;
    };
    tune(&client, peer, &proto.tcp);
    let sides = super::session::sides(&w, relay, listener);
    let mut s = Session {
        w: &w,
        relay,
        listener,
        proto,
        peer,
        idle: Duration::from_secs(u64::from(r.session_timeout_s.max(1))),
        head_timeout: w.limits.head_timeout,
        first_head_by: w
            .limits
            .head_timeout
            .map(|d| tokio::time::Instant::now() + d),
        filter: SessionState::default(),
        queued: Vec::new(),
        log: SessionLog::new(),
        hasher: Hasher::new(&w.shared.relay_keys[relay]),
        backend: None,
        tried: None,
        backend_table: None,
        connector: None,
        origin: Origin::default(),
        id,
        reg: w.registry.open(relay, listener, id, peer),
        out: Vec::with_capacity(1024),
        version: Vec::with_capacity(16),
        code: Vec::with_capacity(8),
    };
    // relayd finds a destination the connection names when it accepts it, before TLS.
    let found = origin::of(plan, relay, listener, &client, peer, id);
    let sides = match found {
        Ok(o) => {
            s.origin = o;
            sides
        }
        Err((tried, end)) => {
            s.tried = tried;
            Err(end)
        }
    };
    let end = match sides {
        Ok(sides) => match s.open(client, sides).await {
            Ok(mut client) => {
                let stop = s.serve(&mut client).await;
                let end = s.finish(&mut client, stop).await;
                super::session::tls_close(&mut client.stream).await;
                w.read_bufs.put(client.buf);
                if let Some((server, _)) = s.backend.as_mut() {
                    super::session::tls_close(&mut server.stream).await;
                    w.read_bufs.put(std::mem::take(&mut server.buf));
                }
                end
            }
            Err(end) => end,
        },
        Err(end) => end,
    };
    let backend = s.backend.as_ref().map(|(_, a)| *a).or(s.tried);
    let tag = s
        .filter
        .tag
        .and_then(|t| plan.tags.get(t as usize))
        .cloned();
    super::session::close_line(
        &w,
        relay,
        id,
        peer,
        backend,
        tag.as_deref(),
        Some(s.log.line()),
        &end,
    );
}

impl<'a> Session<'a> {
    /// The client's connection as the session reads it: TLS accepted if the listener
    /// says `tls`; with TLS inspection the backend is connected first (relayd's
    /// `relay_preconnect`) and the client served a copy of its certificate.
    async fn open(&mut self, client: TcpStream, sides: Option<Sides<'a>>) -> Result<Conn, End> {
        let Some(sides) = sides else {
            return Ok(Conn::new(Stream::Tcp(client), self.w.read_bufs.take()));
        };
        self.connector = sides.connect;
        let at = At {
            w: self.w,
            relay: self.relay,
            id: self.id,
        };
        let stream = if let Some(inspect) = sides.inspect {
            if let Err(stop) = self.connect().await {
                return Err(match stop {
                    Stop::Fail { msg, error } => End::error(msg.into_owned(), error),
                    Stop::Done => End::ok("done"),
                    Stop::Abort { err, .. } => End::ok(err.msg),
                });
            }
            let Some((server, _)) = self.backend.as_ref() else {
                return Err(End::error("session failed".into(), errno_text(0)));
            };
            let wait = self.first_head_wait();
            super::session::tls_accept_inspected(at, inspect, &server.stream, client, wait).await?
        } else if let Some(acceptor) = sides.accept {
            super::session::tls_accept(at, acceptor, client, self.first_head_wait()).await?
        } else {
            Stream::Tcp(client)
        };
        Ok(Conn::new(stream, self.w.read_bufs.take()))
    }

    /// How long a handshake may take: the idle timeout, or less if the first request
    /// head's deadline comes sooner (a slow handshake must not extend it).
    fn first_head_wait(&self) -> Duration {
        match self.first_head_by {
            Some(by) => self
                .idle
                .min(by.saturating_duration_since(tokio::time::Instant::now())),
            None => self.idle,
        }
    }

    fn listen(&self) -> (IpAddr, u16) {
        let l = &self.w.shared.plan.relays[self.relay].listeners[self.listener];
        let ip = match l.address {
            Address::Ip(ip) => ip,
            Address::Name(_) => IpAddr::from([0, 0, 0, 0]),
        };
        (ip, l.port)
    }

    /// Turns a stop into the close line's message, sending the error page first.
    async fn finish(&mut self, client: &mut Conn, stop: Stop) -> End {
        match stop {
            Stop::Done => End::ok("done"),
            Stop::Fail { msg, error } => End::error(msg.into_owned(), error),
            Stop::Abort { err, label } => {
                let Some(page) = &self.proto.return_error else {
                    return End::ok_owned(err.msg.to_string());
                };
                let (ip, port) = self.listen();
                let label = if label {
                    apply::label_text(self.filter.label, &self.w.shared.plan.labels)
                } else {
                    None
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs() as i64);
                let bytes = ErrorPage {
                    code: err.status,
                    message: err.msg,
                    label,
                    style: page.style.as_deref(),
                    listen_addr: ip,
                    listen_port: port,
                }
                .render(now);
                let _ = client.stream.send(&bytes).await;
                End::error(errorpage::close_message(err.msg, err.status), errno_text(0))
            }
        }
    }

    async fn serve(&mut self, client: &mut Conn) -> Stop {
        let limit = self.proto.http.headerlen as usize;
        let mut scratch = self.w.scratch.take(limit);
        let stop = self.exchange(client, &mut scratch, limit).await;
        self.w.scratch.put(scratch);
        stop
    }

    /// Requests and responses until the session ends.
    async fn exchange(&mut self, client: &mut Conn, scratch: &mut Scratch, limit: usize) -> Stop {
        let Scratch {
            head,
            reader,
            rreader,
        } = scratch;
        let mut ccarry = Carry::Header;
        let mut scarry = Carry::Header;
        loop {
            // The request head.
            reader.restart_request(limit);
            // The first head's deadline runs from the accept, the next ones' from their
            // first byte.
            let mut head_by = self.first_head_by.take();
            let parsed = loop {
                match reader.read(client.data(), head) {
                    Ok(Parsed::Incomplete) => {}
                    Ok(p) => break p,
                    Err(e) => {
                        return Stop::Abort {
                            err: e,
                            label: false,
                        }
                    }
                }
                let now = tokio::time::Instant::now();
                if head_by.is_none() && !client.data().is_empty() {
                    head_by = self.head_timeout.map(|d| now + d);
                }
                let wait = match head_by {
                    Some(by) => self.idle.min(by.saturating_duration_since(now)),
                    None => self.idle,
                };
                // Between requests the backend is watched too: relayd ends the session
                // ("done") when either side closes, so a backend that drops an idle
                // keep-alive connection closes the client's rather than leaving the
                // next request to meet a dead connection. Bytes it sends unasked end
                // the session as well: no request is there to pair them with.
                let filled = match self.backend.as_mut() {
                    Some((server, _)) if client.data().is_empty() => tokio::select! {
                        biased;
                        r = client.fill(wait) => r,
                        () = backend_spoke(server, self.idle) => return Stop::Done,
                    },
                    _ => client.fill(wait).await,
                };
                match filled {
                    Ok(0) => return Stop::Done,
                    Ok(_) => {}
                    Err(e) => {
                        if head_by.is_some_and(|by| tokio::time::Instant::now() >= by) {
                            return Stop::Abort {
                                err: HEAD_TIMEOUT,
                                label: false,
                            };
                        }
                        return io_stop(&e);
                    }
                }
            };
            let Parsed::Complete {
                head_len, version, ..
            } = parsed
            else {
                return Stop::Done;
            };
            self.version.clear();
            self.version.extend_from_slice(version.of(client.data()));
            client.consume(head_len);
            self.reg.touch();
            let method = Method::from_bytes(&head.method);
            head.direction = Some(Direction::Request);
            head.client = Some(self.peer.ip());
            head.local = Some(self.listen().0);
            head.backend = match (&self.backend, self.filter.backend_cleared) {
                (Some((_, a)), false) => Some(a.ip()),
                _ => None,
            };
            // Filters.
            let before = self.filter.table;
            let outcome = evaluate(
                &self.proto.rules,
                &*head,
                &mut self.filter,
                &mut self.queued,
            );
            if outcome.aborted_by.is_some() {
                return Stop::Abort {
                    err: HttpError::MALFORMED_HOST,
                    label: false,
                };
            }
            let switched = self.filter.table != before;
            let (ip, port) = self.listen();
            let ctx = MacroContext {
                remote_addr: Some(self.peer.ip()),
                remote_port: self.peer.port(),
                server_addr: ip,
                server_port: port,
                timeout_secs: self.idle.as_secs() as i64,
            };
            let label = apply::label_text(self.filter.label, &self.w.shared.plan.labels);
            let hasher = &mut self.hasher;
            let mut feed = |b: &[u8]| hasher.feed(b);
            let applied = apply::apply(
                &self.proto.rules,
                Actions::of(&outcome, &self.queued, switched),
                head,
                &ctx,
                label,
                &mut self.log,
                Some(&mut feed),
            );
            if outcome.verdict == Verdict::Block || applied.is_err() {
                return Stop::Abort {
                    err: FORBIDDEN,
                    label: true,
                };
            }
            let framing = match http::request_body(&*head, ccarry) {
                Ok(f) => f,
                Err(e) => {
                    return Stop::Abort {
                        err: e,
                        label: false,
                    }
                }
            };
            let upgrade = match http::websocket(&*head, self.proto.http.websockets) {
                Ok(u) => u,
                Err(e) => {
                    return Stop::Abort {
                        err: e,
                        label: false,
                    }
                }
            };
            ccarry = framing.next;
            // The backend: connected late, reconnected when the request's table changes.
            if self.backend.is_none() || self.filter.table != self.backend_table {
                if let Err(stop) = self.connect().await {
                    return stop;
                }
            }
            let Some((server, _)) = self.backend.as_mut() else {
                return Stop::Done;
            };
            if framing.drop_content_length {
                head.headers
                    .retain(|(n, _)| !n.eq_ignore_ascii_case(b"Content-Length"));
            }
            self.out.clear();
            http::write_head_verbatim(&*head, &self.version, b"", &mut self.out);
            if let Err(stop) =
                forward_body(client, server, &mut self.out, framing.body, self.idle).await
            {
                return stop;
            }
            // The response (interim ones first), or the switch to a tunnel.
            let asked = response::Asked {
                method,
                upgrade,
                http10: head.minor == 0,
            };
            if let Err(stop) = self
                .respond(client, head, rreader, asked, &mut scarry)
                .await
            {
                return stop;
            }
        }
    }

    async fn connect(&mut self) -> Result<(), Stop> {
        let choice = {
            let mut pools = self.w.pools.borrow_mut();
            self.origin.choose(
                &self.w.shared,
                &mut pools,
                self.relay,
                self.listener,
                self.peer.ip(),
                self.filter.table,
                Some(&mut self.hasher),
            )
        };
        let Choice::Backend { addr, retry } = choice else {
            return Err(Stop::Fail {
                msg: Cow::Borrowed("session failed"),
                error: errno_text(0),
            });
        };
        let connected = match super::session::connect(
            addr,
            retry,
            self.idle,
            &self.proto.tcp,
            self.origin.source,
        )
        .await
        {
            Ok(s) => match self.connector {
                Some(c) => {
                    let at = At {
                        w: self.w,
                        relay: self.relay,
                        id: self.id,
                    };
                    super::session::tls_connect(at, c, s, addr, self.idle)
                        .await
                        .map_err(|end| (end.msg, end.error.unwrap_or_default()))
                }
                None => Ok(Stream::Tcp(s)),
            },
            Err(e) => {
                let end = origin::connect_failure(&e);
                Err((end.msg, end.error.unwrap_or_default()))
            }
        };
        match connected {
            Ok(s) => {
                let buf = match self.backend.take() {
                    Some((old, _)) => {
                        let mut buf = old.buf;
                        buf.clear();
                        buf
                    }
                    None => self.w.read_bufs.take(),
                };
                self.backend = Some((Conn::new(s, buf), addr));
                self.reg.backend(addr);
                self.backend_table = self.filter.table;
                self.filter.backend_cleared = false;
                Ok(())
            }
            Err((msg, error)) => {
                self.backend = None;
                self.tried = Some(addr);
                Err(Stop::Fail {
                    msg: Cow::Owned(msg),
                    error,
                })
            }
        }
    }
}

/// Writes `head`, then passes a body from `from` to `to` as its framing says. The head
/// goes out in the same system call as the body bytes already read (writev(2)), so a
/// small message costs one write, not two. `head` is left empty for reuse.
async fn forward_body(
    from: &mut Conn,
    to: &mut Conn,
    head: &mut Vec<u8>,
    body: Body,
    idle: Duration,
) -> Result<(), Stop> {
    match body {
        Body::None => {
            let r = to.stream.send(head).await;
            head.clear();
            r.map_err(|e| io_stop(&e))
        }
        Body::Length(mut left) => {
            let n = (from.data().len() as u64).min(left) as usize;
            let r = to.stream.send_pair(head, &from.data()[..n]).await;
            head.clear();
            from.consume(n);
            r.map_err(|e| io_stop(&e))?;
            left -= n as u64;
            while left > 0 {
                if from.data().is_empty() {
                    match from.fill(idle).await {
                        Ok(0) => return Err(Stop::Done),
                        Ok(_) => {}
                        Err(e) => return Err(io_stop(&e)),
                    }
                }
                let n = (from.data().len() as u64).min(left) as usize;
                let r = to.stream.send(&from.data()[..n]).await;
                from.consume(n);
                r.map_err(|e| io_stop(&e))?;
                left -= n as u64;
            }
            Ok(())
        }
        Body::Chunked => {
            let mut dec = ChunkedDecoder::new();
            // The decoded output is appended to the head: one write for both.
            let out = head;
            loop {
                // A bad chunk closes the session as an error, without a page.
                let fed = dec.feed(from.data(), out).map_err(|e| Stop::Fail {
                    msg: Cow::Borrowed(e.msg()),
                    error: errno_text(0),
                })?;
                from.consume(fed.consumed);
                if !out.is_empty() {
                    let r = to.stream.send(out).await;
                    out.clear();
                    r.map_err(|e| io_stop(&e))?;
                }
                if fed.done {
                    return Ok(());
                }
                match from.fill(idle).await {
                    Ok(0) => return Err(Stop::Done),
                    Ok(_) => {}
                    Err(e) => return Err(io_stop(&e)),
                }
            }
        }
        Body::UntilClose => {
            let r = to.stream.send_pair(head, from.data()).await;
            head.clear();
            let n = from.data().len();
            from.consume(n);
            r.map_err(|e| io_stop(&e))?;
            loop {
                match from.fill(idle).await {
                    Ok(0) => {
                        let _ = to.stream.shutdown().await;
                        return Ok(());
                    }
                    Ok(_) => {}
                    Err(e) => return Err(io_stop(&e)),
                }
                let n = from.data().len();
                let r = to.stream.send(from.data()).await;
                from.consume(n);
                r.map_err(|e| io_stop(&e))?;
            }
        }
    }
}

/// After a websocket upgrade: bytes both ways until either side closes.
async fn raw(client: &mut Conn, server: &mut Conn, idle: Duration) -> Stop {
    if !client.data().is_empty() {
        let n = client.data().len();
        if server.stream.send(client.data()).await.is_err() {
            return Stop::Done;
        }
        client.consume(n);
    }
    if !server.data().is_empty() {
        let n = server.data().len();
        if client.stream.send(server.data()).await.is_err() {
            return Stop::Done;
        }
        server.consume(n);
    }
    let r = tokio::time::timeout(
        idle,
        tokio::io::copy_bidirectional(&mut client.stream, &mut server.stream),
    )
    .await;
    match r {
        Ok(Ok(_)) => Stop::Done,
        Ok(Err(e)) => io_stop(&e),
        Err(_) => io_stop(&std::io::Error::from(std::io::ErrorKind::TimedOut)),
    }
}
