//! A TCP session: choose the backend, connect (with relayd's retries), copy both ways
//! with half-close and an idle timeout re-armed by traffic in either direction, then
//! log relayd's session close line.

use super::pool::{self, Choice};
use super::worker::Worker;
use crate::log;
use relaydc_spec::plan::{ConnectionLog, TcpOptions};
use std::cell::Cell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::time::Instant;

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
) {
    let id = w.next_session_id();
    let reg = w.registry.open(relay, listener, id, peer);
    w.active.set(w.active.get() + 1);
    let plan = &w.shared.plan;
    let r = &plan.relays[relay];
    let tcp = r
        .protocol
        .and_then(|p| plan.protocols.get(p as usize))
        .map_or_else(super::listen::default_tcp, |p| p.tcp.clone());
    tune(&client, &tcp);
    let timeout = Duration::from_secs(u64::from(r.session_timeout_s.max(1)));
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
    let (backend, end) = match choice {
        Choice::None => (
            None,
            End {
                msg: "session failed".to_string(),
                error: Some(errno_text(0)),
            },
        ),
        Choice::Backend { addr, retry } => match connect(addr, retry, timeout, &tcp).await {
            Ok(server) => (
                Some(addr),
                copy(client, server, timeout, &w, tcp.splice, reg.connected(addr)).await,
            ),
            Err(e) => (
                Some(addr),
                End {
                    msg: "session failed".to_string(),
                    error: Some(io_text(&e)),
                },
            ),
        },
    };
    close_line(&w, relay, id, peer, backend, None, None, &end);
    w.active.set(w.active.get().saturating_sub(1));
}

pub fn tune(s: &TcpStream, tcp: &TcpOptions) {
    let _ = s.set_nodelay(nodelay(tcp));
    let sock = socket2::SockRef::from(s);
    if let Some(b) = tcp.socket_buffer {
        let _ = sock.set_recv_buffer_size(b as usize);
        let _ = sock.set_send_buffer_size(b as usize);
    }
    let ipv6 = s.local_addr().is_ok_and(|a| a.is_ipv6());
    let _ = super::listen::ip_options(&sock, ipv6, tcp);
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
/// shapes the handshake's window and `ip minttl` guards the handshake too.
pub async fn connect(
    addr: SocketAddr,
    retry: u32,
    timeout: Duration,
    tcp: &TcpOptions,
) -> std::io::Result<TcpStream> {
    let mut left = retry;
    loop {
        let r = match tokio::time::timeout(timeout, connect_once(addr, tcp)).await {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::from(std::io::ErrorKind::TimedOut)),
        };
        match r {
            Ok(s) => return Ok(s),
            Err(e) if left == 0 => return Err(e),
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

async fn connect_once(addr: SocketAddr, tcp: &TcpOptions) -> std::io::Result<TcpStream> {
    let socket = if addr.is_ipv6() {
        tokio::net::TcpSocket::new_v6()?
    } else {
        tokio::net::TcpSocket::new_v4()?
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
