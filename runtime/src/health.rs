//! Health checks: every global `interval`, each enabled table (by its skip count) checks
//! each of its hosts that has no parent, all at once, each within the table's timeout;
//! results drive host states through `spec::health` and are published to the workers
//! (`Shared::host_up`), which never wait for a check.
//!
//! Every kind relayd has runs: `tcp`, `http … code|digest` and `send … expect` here,
//! over plain TCP or, for `tls`, `https` and `send … expect … tls`, through `tls.rs`;
//! `icmp` in `icmp.rs`, `script` in `script.rs` (under `health/`). A check still
//! running at the next tick is cancelled and its host gets relayd's `interval timeout`.

mod icmp;
pub(crate) mod script;
mod tls;

use crate::control::board::{Command, Slot, Switchboard};
use crate::log;
use crate::serve::Shared;
use relaydc_spec::filter::glob::fnmatch;
use relaydc_spec::filter::Case;
use relaydc_spec::health::{checked_on_tick, Health, HostState};
use relaydc_spec::plan::{Address, Check, HttpExpect, Plan, Table};
use socket2::{Domain, Protocol, Socket, Type};
use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::timeout_at;

/// Whether this version runs a check kind: all of relayd's do.
pub fn runs(check: &Check) -> bool {
    !matches!(check, Check::None)
}

/// A check's result: up or down, and relayd's error text (§4.10).
struct Outcome {
    up: bool,
    text: &'static str,
    /// Set when an HTTP code check judged a status line: the mismatching code, or 0.
    /// relayd keeps the last one per host (`host->code`) and prints it while it is not
    /// 0, also on later results that never got to a status line.
    code: Option<u16>,
}

impl Outcome {
    fn up(text: &'static str) -> Outcome {
        Outcome {
            up: true,
            text,
            code: None,
        }
    }

    fn down(text: &'static str) -> Outcome {
        Outcome {
            up: false,
            text,
            code: None,
        }
    }
}

/// What the checker keeps per host between checks: the state machine, the last error
/// text (relayctl's `error:`), and relayd's sticky HTTP code.
#[derive(Clone, Copy, Debug)]
struct HostCheck {
    health: Health,
    error: &'static str,
    code: u16,
}

impl Default for HostCheck {
    fn default() -> Self {
        HostCheck {
            health: Health::default(),
            error: "none",
            code: 0,
        }
    }
}

/// One host's check, owned by its task.
struct Job {
    check: Check,
    /// `None` only for a script check of a host whose address is still a name.
    ip: Option<IpAddr>,
    port: u16,
    /// The host as written: the argument of a script check.
    name: String,
    /// relayd's host id (index + 1), which ICMP requests carry.
    id: u32,
    ttl: Option<u8>,
    /// The table timeout; ICMP checks use the global one instead.
    timeout: Duration,
}

impl Job {
    fn new(plan: &Plan, table: &Table, h: usize) -> Option<Job> {
        let host = plan.hosts.get(h)?;
        let ip = match host.address {
            Address::Ip(ip) => Some(ip),
            Address::Name(_) => None,
        };
        if ip.is_none() && !matches!(table.check, Check::Script(_)) {
            return None;
        }
        let ms = match table.check {
            Check::Icmp => plan.globals.timeout_ms,
            _ => table.timeout_ms,
        };
        Some(Job {
            check: table.check.clone(),
            ip,
            port: table.port,
            name: host.name.clone(),
            id: u32::try_from(h).ok()?.checked_add(1)?,
            ttl: host.ip_ttl,
            timeout: Duration::from_millis(u64::from(ms.max(1))),
        })
    }

    /// Runs the check; its timeout counts from now.
    async fn run(self) -> Outcome {
        let deadline = tokio::time::Instant::now() + self.timeout;
        match (&self.check, self.ip) {
            (Check::Script(path), _) => script::check(path, &self.name, deadline).await,
            (Check::Icmp, Some(ip)) => icmp::check(ip, self.ttl, self.id, deadline).await,
            (Check::None, _) | (_, None) => Outcome::down("none"),
            (check, Some(ip)) => {
                let addr = SocketAddr::new(ip, self.port);
                let s = match connect(addr, self.ttl, deadline).await {
                    Ok(s) => s,
                    Err(o) => return o,
                };
                if uses_tls(check) {
                    tls::check(s, ip, check, deadline).await
                } else if let Check::Tcp = check {
                    Outcome::up("tcp connect ok")
                } else {
                    exchange(s, check, deadline, &PLAIN).await
                }
            }
        }
    }
}

/// Runs the checks until the returned future is dropped.
///
/// Between checks it takes relayctl's `host|table enable|disable` and `poll` from
/// `commands` and publishes every host's state for the control socket
/// (`control::board`). A reload hands it the next plan ([`Command::Adopt`]): checks in
/// flight are cancelled, the hosts both plans have keep their state, and the schedule
/// starts over on the new plan with a round of checks at once.
pub async fn run(shared: Arc<Shared>, log_changes: bool, commands: mpsc::Receiver<Command>) {
    let mut shared = shared;
    let mut health: Vec<HostCheck> = vec![HostCheck::default(); shared.plan.hosts.len()];
    let mut board = Switchboard::new(&shared, commands);
    loop {
        let (next, reply) = schedule(&shared, &mut health, &mut board, log_changes).await;
        health = carry(&shared.plan, &health, &next.plan);
        board.replan(&next);
        for (h, hc) in health.iter().enumerate() {
            let checked = next
                .plan
                .hosts
                .get(h)
                .and_then(|x| next.plan.tables.get(x.table as usize))
                .is_some_and(|t| runs(&t.check));
            // Hosts of tables without a check stay as `Shared` made them: up.
            if checked {
                if let Some(up) = next.host_up.get(h) {
                    up.store(hc.health.state == HostState::Up, Ordering::Relaxed);
                }
            }
            board.publish(&next, h, hc, false);
        }
        shared = next;
        let _ = reply.send(());
    }
}

/// The health of `old`'s hosts that `new` keeps: same table (by name) with the same
/// check, same host name and address, in a table the new plan has enabled. The others
/// start unknown, as at start.
fn carry(old: &Plan, health: &[HostCheck], new: &Plan) -> Vec<HostCheck> {
    let mut taken = vec![false; old.hosts.len()];
    new.hosts
        .iter()
        .map(|nh| {
            let Some(nt) = new.tables.get(nh.table as usize) else {
                return HostCheck::default();
            };
            if nt.disabled || !runs(&nt.check) {
                return HostCheck::default();
            }
            let found = old.hosts.iter().enumerate().position(|(i, oh)| {
                !taken[i]
                    && oh.name == nh.name
                    && oh.address == nh.address
                    && old
                        .tables
                        .get(oh.table as usize)
                        .is_some_and(|ot| ot.name == nt.name && ot.check == nt.check)
            });
            match found.and_then(|i| Some((i, *health.get(i)?))) {
                Some((i, hc)) => {
                    taken[i] = true;
                    hc
                }
                None => HostCheck::default(),
            }
        })
        .collect()
}

/// Checks `shared`'s plan every interval until a reload hands over the next plan, which
/// it returns with the reload's reply.
async fn schedule(
    shared: &Shared,
    health: &mut [HostCheck],
    board: &mut Switchboard,
    log_changes: bool,
) -> (Arc<Shared>, tokio::sync::oneshot::Sender<()>) {
    let plan = &shared.plan;
    let interval = Duration::from_secs(u64::from(plan.globals.interval_s.max(1)));
    // Children by parent (relayd host ids are index + 1), computed once.
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); plan.hosts.len()];
    for (i, h) in plan.hosts.iter().enumerate() {
        if let Some(p) = h.parent.and_then(|p| p.checked_sub(1)) {
            if let Some(c) = children.get_mut(p as usize) {
                c.push(i);
            }
        }
    }
    let mut tick: u64 = 0;
    loop {
        let started = Instant::now();
        let mut checks = tokio::task::JoinSet::new();
        let mut pending = HashSet::new();
        let tables = plan.tables.iter().enumerate();
        for (_, t) in tables.filter(|(i, t)| !board.table_off(*i) && runs(&t.check)) {
            if !checked_on_tick(t.skip, tick) {
                continue;
            }
            for &h in &t.hosts {
                let host = &plan.hosts[h as usize];
                if host.parent.is_some() || board.host_off(shared, h as usize) {
                    continue;
                }
                let Some(job) = Job::new(plan, t, h as usize) else {
                    continue;
                };
                pending.insert(h as usize);
                checks.spawn(async move {
                    let t0 = Instant::now();
                    let o = job.run().await;
                    (h as usize, o, t0.elapsed())
                });
            }
        }
        let next = tokio::time::Instant::from_std(started + interval);
        let mut poll = false;
        loop {
            tokio::select! {
                r = checks.join_next(), if !checks.is_empty() => {
                    let Some(Ok((h, o, took))) = r else { continue };
                    pending.remove(&h);
                    // Disabled while its check ran: the result is dropped.
                    if board.host_off(shared, h) {
                        continue;
                    }
                    record(shared, health, h, &o, took, log_changes);
                    board.publish(shared, h, &health[h], true);
                    // Children copy the parent's raw result; relayd never starts their
                    // clock, so their lines say 0ms, and their own code stays 0.
                    let copy = Outcome { code: None, ..o };
                    for &c in children.get(h).map_or(&[][..], Vec::as_slice) {
                        record(shared, health, c, &copy, Duration::ZERO, log_changes);
                        board.publish(shared, c, &health[c], true);
                    }
                }
                () = tokio::time::sleep_until(next) => break,
                cmd = board.next() => {
                    // Checks still running are cancelled with `checks`.
                    if let Command::Adopt { next, reply } = cmd {
                        return (next, reply);
                    }
                    // `poll`: a new round now, as at the next tick.
                    if board.apply(shared, cmd, health) {
                        poll = true;
                        break;
                    }
                }
            }
        }
        interval_timeout(health, &pending);
        for &h in &pending {
            board.publish(shared, h, &health[h], false);
        }
        // Dropping the set cancels what is left (scripts are killed with their task).
        drop(checks);
        // relayctl poll resets the tables' skip counters.
        tick = if poll { 0 } else { tick + 1 };
    }
}

/// What relayctl's commands reset of a host, and what the control socket shows of it.
impl Slot for HostCheck {
    fn health(&self) -> &Health {
        &self.health
    }
    fn health_mut(&mut self) -> &mut Health {
        &mut self.health
    }
    fn error(&self) -> Option<&'static str> {
        // relayd's HCE_NONE: no error to show.
        Some(self.error).filter(|e| *e != "none")
    }
    fn clear_error(&mut self) {
        self.error = "none";
    }
}

/// relayd's hce_launch_checks: a check still running when the next tick comes is
/// cancelled, and its host's error becomes `interval timeout` without a result, so its
/// state, counts and log stay as they were.
fn interval_timeout(health: &mut [HostCheck], pending: &HashSet<usize>) {
    for &h in pending {
        if let Some(hc) = health.get_mut(h) {
            hc.error = "interval timeout";
        }
    }
}

fn record(
    shared: &Shared,
    health: &mut [HostCheck],
    h: usize,
    o: &Outcome,
    took: Duration,
    log_changes: bool,
) {
    let plan: &Plan = &shared.plan;
    let host = &plan.hosts[h];
    let Some(hc) = health.get_mut(h) else { return };
    let old = hc.health.record(o.up, host.retry);
    let new = hc.health.state;
    hc.error = o.text;
    if let Some(code) = o.code {
        hc.code = code;
    }
    shared.host_up[h].store(new == HostState::Up, Ordering::Relaxed);
    // relayd's log_debug in hce_notify_done (`-vv`, like every log_debug).
    log::debug2(&format!("hce_notify_done: {} ({})", host.name, hc.error));
    let changed = old != new;
    let logs = if changed {
        log_changes || plan.globals.log.state_changes
    } else {
        plan.globals.log.host_checks
    };
    if logs {
        let table = &plan.tables[host.table as usize];
        log::info(&format!(
            "host {}, check {}{} ({}ms,{}{}), state {} -> {}, availability {:.2}%",
            host.name,
            kind(&table.check),
            if uses_tls(&table.check) {
                " use tls"
            } else {
                ""
            },
            took.as_millis(),
            hc.error,
            if hc.code > 0 {
                format!(",{}", hc.code)
            } else {
                String::new()
            },
            old.word(),
            new.word(),
            hc.health.availability()
        ));
    }
}

/// relayd's table_check(): `check tls` is a `tcp` check of a table with F_TLS.
fn kind(c: &Check) -> &'static str {
    match c {
        Check::Icmp => "icmp",
        Check::Tcp | Check::Tls => "tcp",
        Check::Http {
            expect: HttpExpect::Code(_),
            ..
        } => "http code",
        Check::Http {
            expect: HttpExpect::Digest(_),
            ..
        } => "http digest",
        Check::SendExpect { .. } => "send expect",
        Check::Script(_) => "script",
        Check::None => "none",
    }
}

/// Whether the table's check runs over TLS (relayd's table flag F_TLS).
fn uses_tls(c: &Check) -> bool {
    match c {
        Check::Tls => true,
        Check::Http { tls, .. } | Check::SendExpect { tls, .. } => *tls,
        _ => false,
    }
}

/// The error texts and quirks of one transport (plain TCP or TLS).
struct Transport {
    write_timeout: &'static str,
    write_failed: &'static str,
    read_timeout: &'static str,
    read_failed: &'static str,
    /// relayd's tcp_read_buf judges what arrived before a read timeout; check_tls_read
    /// does not.
    validate_on_timeout: bool,
    /// An EOF without TLS close_notify counts as an EOF (libtls after the handshake).
    eof_without_close_notify: bool,
}

const PLAIN: Transport = Transport {
    write_timeout: "tcp write timeout",
    write_failed: "tcp write failed",
    read_timeout: "tcp read timeout",
    read_failed: "tcp read failed",
    validate_on_timeout: true,
    eof_without_close_notify: false,
};

/// relayd reads without a bound; this one keeps a broken backend from filling memory,
/// and judges what it has once the bound is reached, as at an EOF.
const READ_LIMIT: usize = 1 << 20;

/// relayd's check_tcp: a socket with the host's `ip ttl`, connected within the
/// deadline.
async fn connect(
    addr: SocketAddr,
    ttl: Option<u8>,
    deadline: tokio::time::Instant,
) -> Result<TcpStream, Outcome> {
    let sock =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(|e| {
            match e.raw_os_error() {
                Some(libc::EMFILE | libc::ENFILE) => Outcome::down("tcp socket limit"),
                _ => Outcome::down("tcp socket error"),
            }
        })?;
    let opt = match (addr, ttl.filter(|t| *t > 0).map(u32::from)) {
        (SocketAddr::V4(_), Some(t)) => sock.set_ttl(t),
        (SocketAddr::V6(_), Some(t)) => sock.set_unicast_hops_v6(t),
        (_, None) => Ok(()),
    };
    opt.and_then(|()| sock.set_nonblocking(true))
        .map_err(|_| Outcome::down("tcp socket option"))?;
    let sock = TcpSocket::from_std_stream(std::net::TcpStream::from(sock));
    match timeout_at(deadline, sock.connect(addr)).await {
        Err(_) => Err(Outcome::down("tcp connect timeout")),
        Ok(Err(_)) => Err(Outcome::down("tcp connect failed")),
        Ok(Ok(s)) => Ok(s),
    }
}

/// What a check sends after connecting: relayd's `sendbuf`.
fn request(check: &Check) -> Option<Vec<u8>> {
    match check {
        // parse.y: `"%s %s HTTP/1.%c\r\n%s\r\n"`, HTTP/1.1 with `Host` and
        // `Connection: close` when a host is given, HTTP/1.0 otherwise, and nothing else.
        Check::Http {
            path, host, expect, ..
        } => {
            let method = match expect {
                HttpExpect::Code(_) => "HEAD",
                HttpExpect::Digest(_) => "GET",
            };
            Some(
                match host {
                    Some(h) => format!(
                        "{method} {path} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"
                    ),
                    None => format!("{method} {path} HTTP/1.0\r\n\r\n"),
                }
                .into_bytes(),
            )
        }
        Check::SendExpect { send, .. } => send.clone(),
        _ => None,
    }
}

/// The exchange of `http`/`https` and `send … expect` checks on a connected stream:
/// send the request, then read until the answer can be judged, within the deadline.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    check: &Check,
    deadline: tokio::time::Instant,
    t: &Transport,
) -> Outcome {
    if let Some(req) = request(check) {
        let write = async {
            s.write_all(&req).await?;
            s.flush().await
        };
        match timeout_at(deadline, write).await {
            Err(_) => return Outcome::down(t.write_timeout),
            Ok(Err(_)) => return Outcome::down(t.write_failed),
            Ok(Ok(())) => {}
        }
    }
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = match timeout_at(deadline, s.read(&mut chunk)).await {
            Err(_) if t.validate_on_timeout && !buf.is_empty() => {
                return validate(check, &buf);
            }
            Err(_) => return Outcome::down(t.read_timeout),
            Ok(Err(e))
                if t.eof_without_close_notify && e.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                0
            }
            Ok(Err(_)) => return Outcome::down(t.read_failed),
            Ok(Ok(n)) => n,
        };
        if n == 0 {
            return validate(check, &buf);
        }
        buf.extend_from_slice(&chunk[..n]);
        // send/expect judges every read (validate_read); HTTP checks only the whole answer.
        if let Check::SendExpect { .. } = check {
            let o = validate(check, &buf);
            if o.up {
                return o;
            }
        }
        if buf.len() >= READ_LIMIT {
            return validate(check, &buf);
        }
    }
}

/// [`validate`] for the fuzz targets (`crate::fuzzing`): up or down, relayd's text, and
/// the HTTP code kept for the host.
pub(crate) fn judge(check: &Check, buf: &[u8]) -> (bool, &'static str, Option<u16>) {
    let o = validate(check, buf);
    (o.up, o.text, o.code)
}

/// relayd's validate_close: judges what arrived.
fn validate(check: &Check, buf: &[u8]) -> Outcome {
    match check {
        Check::Http { expect, .. } => http_result(expect, buf),
        Check::SendExpect {
            expect,
            binary: true,
            ..
        } => {
            if buf.starts_with(expect) {
                Outcome::up("send/expect ok")
            } else {
                Outcome::down("send/expect failed")
            }
        }
        Check::SendExpect { expect, .. } => {
            // fnmatch(3) on a C string: the answer ends at its first NUL.
            if fnmatch(expect, c_string(buf), Case::Sensitive) {
                Outcome::up("send/expect ok")
            } else {
                Outcome::down("send/expect failed")
            }
        }
        _ => Outcome::down("aborted"),
    }
}

/// The bytes before the first NUL: relayd NUL-terminates the buffer and uses C string
/// functions on it.
fn c_string(buf: &[u8]) -> &[u8] {
    buf.iter()
        .position(|b| *b == 0)
        .and_then(|n| buf.get(..n))
        .unwrap_or(buf)
}

/// strtonum(s, 100, 999): strtoll's optional leading white space and sign, then digits
/// to the end.
fn status_code(s: &[u8]) -> Option<u16> {
    let s = std::str::from_utf8(s).ok()?;
    let s = s.trim_start_matches([' ', '\t', '\n', '\x0b', '\x0c', '\r']);
    let (neg, digits) = match s.as_bytes().first() {
        Some(b'-') => (true, s.get(1..)?),
        Some(b'+') => (false, s.get(1..)?),
        _ => (false, s),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let v: u16 = digits.parse().ok()?;
    (!neg && (100..=999).contains(&v)).then_some(v)
}

fn http_result(expect: &HttpExpect, buf: &[u8]) -> Outcome {
    let head = c_string(buf);
    match expect {
        HttpExpect::Code(want) => {
            let malformed = Outcome {
                up: false,
                text: "http code malformed",
                code: Some(0),
            };
            let Some(rest) = head
                .strip_prefix(b"HTTP/1.1 ")
                .or_else(|| head.strip_prefix(b"HTTP/1.0 "))
            else {
                return malformed;
            };
            // The code and at least a CRLF.
            if rest.len() < 5 {
                return malformed;
            }
            match rest.get(..3).and_then(status_code) {
                None => malformed,
                Some(c) if c == *want => Outcome {
                    up: true,
                    text: "http code ok",
                    code: Some(0),
                },
                Some(c) => Outcome {
                    up: false,
                    text: "http code mismatch",
                    code: Some(c),
                },
            }
        }
        HttpExpect::Digest(want) => {
            let Some(at) = head.windows(4).position(|w| w == b"\r\n\r\n") else {
                return Outcome::down("http digest malformed");
            };
            let body = head.get(at + 4..).unwrap_or_default();
            let alg = if want.len() == 32 {
                relaydc_spec::filter::DigestAlg::Md5
            } else {
                relaydc_spec::filter::DigestAlg::Sha1
            };
            if relaydc_spec::filter::url::digest_hex(alg, body) == *want {
                Outcome::up("http digest ok")
            } else {
                Outcome::down("http digest mismatch")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_parse_as_strtonum_does() {
        assert_eq!(status_code(b"200"), Some(200));
        assert_eq!(status_code(b" 99"), None);
        assert_eq!(status_code(b"+20"), None);
        assert_eq!(status_code(b"2x0"), None);
        assert_eq!(status_code(b"-200"), None);
    }

    #[test]
    fn http_code_is_kept_only_for_a_mismatch() {
        let ok = http_result(&HttpExpect::Code(200), b"HTTP/1.0 200 OK\r\n\r\n");
        assert!(ok.up);
        assert_eq!((ok.text, ok.code), ("http code ok", Some(0)));
        let bad = http_result(&HttpExpect::Code(200), b"HTTP/1.1 500 Oops\r\n");
        assert_eq!((bad.text, bad.code), ("http code mismatch", Some(500)));
        let short = http_result(&HttpExpect::Code(200), b"HTTP/1.1 200");
        assert_eq!(short.text, "http code malformed");
        let other = http_result(&HttpExpect::Code(200), b"SSH-2.0-OpenSSH\r\n");
        assert_eq!(other.text, "http code malformed");
    }

    #[test]
    fn requests_are_relayds() {
        let check = Check::Http {
            tls: false,
            path: "/x".into(),
            host: None,
            expect: HttpExpect::Code(200),
        };
        assert_eq!(
            request(&check).unwrap_or_default(),
            b"HEAD /x HTTP/1.0\r\n\r\n"
        );
        let check = Check::Http {
            tls: true,
            path: "/".into(),
            host: Some("h".into()),
            expect: HttpExpect::Digest("0".repeat(40)),
        };
        assert_eq!(
            request(&check).unwrap_or_default(),
            b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        );
    }

    #[test]
    fn log_kinds_are_relayds() {
        assert_eq!(kind(&Check::Tls), "tcp");
        assert!(uses_tls(&Check::Tls));
        assert!(!uses_tls(&Check::Tcp));
        assert_eq!(kind(&Check::Script("/x".into())), "script");
    }
}
