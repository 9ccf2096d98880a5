//! Slow clients and resource bounds (`serve/limits.rs`): the request-head deadline,
//! the per-worker session cap, deferring accepts when descriptors run out, a normal
//! client's success under 2,000 slowloris and 500 slow-POST connections, and the memory
//! the worst inputs make the relay spend. Real relayd-run processes on 127.0.0.1, real
//! backends, real sockets.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

mod common;

use common::{compile, connect_when_ready, free_port, temp_dir, Relay};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// A backend answering every request head with a small 200, on keep-alive
/// connections unless the request says `Connection: close`, one thread per connection. A request with a Content-Length body has
/// its body read (at whatever pace it comes) before the answer. Counts the requests
/// it answered.
fn backend() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let answered = Arc::new(AtomicUsize::new(0));
    let n = Arc::clone(&answered);
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { continue };
            let n = Arc::clone(&n);
            std::thread::spawn(move || serve(s, &n));
        }
    });
    (port, answered)
}

fn serve(mut s: TcpStream, answered: &AtomicUsize) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let mut body: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            buf.drain(..end + 4);
            let take = body.min(buf.len());
            buf.drain(..take);
            body -= take;
            while body > 0 {
                match s.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(k) => {
                        let take = k.min(body);
                        body -= take;
                        buf.extend_from_slice(&chunk[take..k]);
                    }
                }
            }
            let close = head.contains("connection: close");
            let answer: &[u8] = if close {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
            } else {
                b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
            };
            if s.write_all(answer).is_err() {
                return;
            }
            answered.fetch_add(1, Ordering::Relaxed);
            if close {
                return;
            }
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(k) => buf.extend_from_slice(&chunk[..k]),
        }
    }
}

/// An HTTP relay with one worker in front of `bport`; `extra` goes to relayd-run.
fn http_relay(tag: &str, bport: u16, protocol: &str, extra: &[&str]) -> (Relay, u16, PathBuf) {
    let dir = temp_dir(tag);
    let port = free_port();
    let conf = dir.join("relayd.conf");
    std::fs::write(
        &conf,
        format!(
            "log connection\nprefork 1\nhttp protocol \"web\" {{\n\treturn error\n\tpass\n{protocol}\n}}\n\
             relay \"web\" {{\n\tlisten on 127.0.0.1 port {port}\n\tprotocol \"web\"\n\
             \tforward to 127.0.0.1 port {bport}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    (Relay::start(&plan, extra), port, dir)
}

/// One request on a new connection; the status line, or why there was none.
fn get(port: u16) -> Result<String, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out).into_owned();
    text.lines()
        .next()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .ok_or_else(|| "no answer".to_string())
}

fn wait_ok(port: u16) {
    let mut last = String::new();
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        match get(port) {
            Ok(line) if line.starts_with("HTTP/1.1 200") => return,
            Ok(line) => last = line,
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the relay never answered: {last}");
}

#[test]
fn the_head_deadline_ends_a_slowloris_that_never_goes_idle() {
    let (bport, answered) = backend();
    let (relay, port, _dir) = http_relay("deadline", bport, "", &["--head-timeout", "2"]);
    wait_ok(port);
    let before = answered.load(Ordering::Relaxed);
    // A header line every 300 ms: the 600 s idle timer never fires, the deadline does.
    let mut s = connect_when_ready(port);
    let t0 = Instant::now();
    s.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n").unwrap();
    s.set_nonblocking(true).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed_after = loop {
        assert!(t0.elapsed() < Duration::from_secs(8), "never cut off");
        std::thread::sleep(Duration::from_millis(300));
        let _ = s.write_all(b"X-Drip: a\r\n");
        match s.read(&mut buf) {
            Ok(0) => break t0.elapsed(),
            Ok(k) => out.extend_from_slice(&buf[..k]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
            Err(_) => break t0.elapsed(),
        }
    };
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.starts_with("HTTP/1.0 408 Request Timeout"),
        "answer: {text:?}"
    );
    assert!(
        closed_after >= Duration::from_millis(1900) && closed_after < Duration::from_secs(4),
        "cut off after {closed_after:?}"
    );
    relay.wait_log("the close line", |l| {
        l.contains("Request Timeout (408 Request Timeout)")
    });
    assert_eq!(
        answered.load(Ordering::Relaxed),
        before,
        "the partial request reached the backend"
    );

    // Between requests on a keep-alive connection only the idle timeout counts: the
    // second head's deadline starts with its first byte.
    let mut k = connect_when_ready(port);
    k.write_all(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut got = [0u8; 256];
    let n = k.read(&mut got).unwrap();
    assert!(got[..n].starts_with(b"HTTP/1.1 200 OK"));
    std::thread::sleep(Duration::from_millis(2600));
    k.write_all(b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let n = k.read(&mut got).unwrap();
    assert!(
        got[..n].starts_with(b"HTTP/1.1 200 OK"),
        "second request: {:?}",
        String::from_utf8_lossy(&got[..n])
    );

    // A connection that never sends anything is cut at the deadline too.
    let mut quiet = connect_when_ready(port);
    let t1 = Instant::now();
    let mut rest = Vec::new();
    let _ = quiet.read_to_end(&mut rest);
    assert!(t1.elapsed() < Duration::from_secs(4), "{:?}", t1.elapsed());
    assert!(rest.starts_with(b"HTTP/1.0 408"));
    relay.terminate();
}

#[test]
fn a_worker_at_its_session_cap_stops_accepting_until_a_session_ends() {
    let (bport, _) = backend();
    let (relay, port, _dir) = http_relay("cap", bport, "", &["--max-sessions", "2", "-v"]);
    wait_ok(port);
    // Two sessions hold the worker's two places (half a head each).
    let mut held: Vec<TcpStream> = (0..2).map(|_| connect_when_ready(port)).collect();
    for h in &mut held {
        h.write_all(b"GET / HTTP/1.1\r\n").unwrap();
    }
    relay.wait_log("the pause", |l| l.contains("2 sessions, accepting paused"));
    // The third connects (the kernel queues it) and waits, not reset.
    let mut third = TcpStream::connect(("127.0.0.1", port)).unwrap();
    third
        .write_all(b"GET /third HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    third
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    let mut buf = [0u8; 256];
    match third.read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
        other => panic!("served over the cap: {other:?}"),
    }
    // One session ends: the third is accepted and served.
    drop(held.remove(0));
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let n = third.read(&mut buf).unwrap();
    assert!(
        buf[..n].starts_with(b"HTTP/1.1 200 OK"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    relay.terminate();
}

#[test]
fn out_of_descriptors_the_worker_defers_accepts_and_recovers() {
    let (bport, _) = backend();
    let dir = temp_dir("nofile");
    let port = free_port();
    let conf = dir.join("relayd.conf");
    std::fs::write(
        &conf,
        format!(
            "prefork 1\nhttp protocol \"web\" {{\n\treturn error\n\tpass\n}}\n\
             relay \"web\" {{\n\tlisten on 127.0.0.1 port {port}\n\tprotocol \"web\"\n\
             \tforward to 127.0.0.1 port {bport}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    // A hard limit of 64 descriptors, and a session cap above it, so accept itself
    // runs out (relayd-run cannot raise a hard limit).
    let relay = Relay::start_via(
        &["prlimit", "--nofile=64:64", "--"],
        &plan,
        &["--max-sessions", "1000", "-v"],
    );
    wait_ok(port);
    let mut held = Vec::new();
    for _ in 0..80 {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.write_all(b"GET / HTTP/1.1\r\n").unwrap();
        held.push(s);
        if relay.log().contains("relay_accept: deferring connections") {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    relay.wait_log("the deferral", |l| {
        l.contains("relay_accept: deferring connections")
    });
    // The first session finishes its request: its backend connection finds no
    // descriptor either, and relayd's answer is to try again each second.
    let mut first = held.remove(0);
    first
        .write_all(b"Host: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    relay.wait_log("the connect deferral", |l| {
        l.contains("forward failed: Too many open files, deferring")
    });
    // Sessions end: the waiting connect goes through, and new clients are served.
    assert!(relay_alive(&relay));
    held.truncate(held.len() / 2);
    first
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = Vec::new();
    let _ = first.read_to_end(&mut answer);
    assert!(
        answer.starts_with(b"HTTP/1.1 200 OK"),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );
    common::until("a client served again", 10, || get(port).ok());
    assert!(relay_alive(&relay));
    drop(held);
    relay.terminate();
}

fn relay_alive(relay: &Relay) -> bool {
    std::path::Path::new(&format!("/proc/{}", relay.child.id())).exists()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// `n` requests one after the other, each on a new connection; their latencies (all
/// must succeed).
fn normal_client(port: u16, n: usize) -> Vec<Duration> {
    let mut lat = Vec::with_capacity(n);
    for i in 0..n {
        let t = Instant::now();
        match get(port) {
            Ok(line) if line.starts_with("HTTP/1.1 200 OK") => lat.push(t.elapsed()),
            other => panic!("normal request {i} failed: {other:?}"),
        }
    }
    lat.sort();
    lat
}

/// The figure `testsuite/bench/slow` reports: a normal client's latency alone and
/// beside 2,000 slowloris and 500 slow-POST connections on the same worker.
#[test]
fn slowloris_and_slow_posts_leave_a_normal_client_fully_served() {
    const SLOWLORIS: usize = 2000;
    const SLOW_POSTS: usize = 500;
    const REQUESTS: usize = 300;
    let (bport, answered) = backend();
    let (relay, port, _dir) = http_relay("slowloris", bport, "\ttcp backlog 512", &[]);
    wait_ok(port);
    let baseline = normal_client(port, REQUESTS);

    // The attackers: every slowloris connection has sent a request line and drips a
    // header byte every 2 s; every slow POST has sent a whole head announcing 1 MB and
    // drips a body byte every 2 s. One thread drives them all.
    let mut attackers = Vec::with_capacity(SLOWLORIS + SLOW_POSTS);
    for i in 0..SLOWLORIS + SLOW_POSTS {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("attacker connect");
        let first: &[u8] = if i < SLOWLORIS {
            b"GET /slowloris HTTP/1.1\r\nHost: x\r\nX-a: "
        } else {
            b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n"
        };
        s.write_all(first).unwrap();
        s.set_nonblocking(true).unwrap();
        attackers.push(s);
    }
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let halt = Arc::clone(&stop);
    let dripper = std::thread::spawn(move || {
        let mut cut = 0usize;
        let t0 = Instant::now();
        while !halt.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(120) {
            // One pass of 2,500 one-byte writes, spread over 2 s.
            for chunk in attackers.chunks(125) {
                for s in chunk {
                    if s.peer_addr().is_err() {
                        continue;
                    }
                    let mut w: &TcpStream = s;
                    if let Err(e) = w.write_all(b"a") {
                        if e.kind() != ErrorKind::WouldBlock {
                            cut += 1;
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        (attackers, cut)
    });
    // All attackers in place: the worker holds their sessions.
    let sessions = common::until("the attackers' sessions", 30, || {
        let out = std::process::Command::new("ss")
            .args(["-Htn", "state", "established", &format!("sport = :{port}")])
            .output()
            .ok()?;
        let n = String::from_utf8_lossy(&out.stdout).lines().count();
        (n >= SLOWLORIS + SLOW_POSTS).then_some(n)
    });
    let busy = normal_client(port, REQUESTS);
    stop.store(true, Ordering::Relaxed);
    let (attackers, cut) = dripper.join().unwrap();
    assert_eq!(cut, 0, "attackers were cut off before the head deadline");
    drop(attackers);
    let (b50, b99) = (percentile(&baseline, 0.5), percentile(&baseline, 0.99));
    let (s50, s99) = (percentile(&busy, 0.5), percentile(&busy, 0.99));
    println!(
        "slow-clients figure: {REQUESTS} normal requests, 100% served; \
         baseline p50 {:.2} ms p99 {:.2} ms; beside {SLOWLORIS} slowloris + {SLOW_POSTS} slow-POST \
         connections ({sessions} established) p50 {:.2} ms p99 {:.2} ms",
        b50.as_secs_f64() * 1e3,
        b99.as_secs_f64() * 1e3,
        s50.as_secs_f64() * 1e3,
        s99.as_secs_f64() * 1e3,
    );
    // No slowloris request ever reached the backend: only the normal ones did.
    assert_eq!(answered.load(Ordering::Relaxed), 1 + 2 * REQUESTS);
    relay.terminate();
}

/// The relay process's resident memory, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// Opens `n` connections, sends each `input` (never finishing the exchange) and holds
/// them; returns the relay's memory growth per byte sent, once it has read everything.
fn growth_per_byte(relay: &Relay, port: u16, n: usize, input: &[u8]) -> (f64, u64) {
    let pid = relay.child.id();
    let before = rss(pid);
    let mut held = Vec::with_capacity(n);
    for _ in 0..n {
        let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
        s.set_write_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(input).unwrap();
        held.push(s);
    }
    // Until the relay has read it all: its memory stops moving.
    let mut last = rss(pid);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(250));
        let now = rss(pid);
        if now == last {
            break;
        }
        last = now;
    }
    let grown = last.saturating_sub(before);
    drop(held);
    std::thread::sleep(Duration::from_millis(500));
    (grown as f64 / (n * input.len()) as f64, grown)
}

/// Issue 9's bound: no input makes the relay spend more than 100 times the client's
/// bytes in memory. The worst inputs for an HTTP relay: heads of thousands of tiny
/// headers (each becomes a parsed header), bodies of one-byte chunks (each a framing
/// step), and thousands of pipelined requests the client never reads the answers to.
/// Each case gets a fresh relay process, so memory one case freed cannot hide the next
/// one's growth.
#[test]
fn no_input_makes_the_relay_hold_more_than_100_times_its_bytes() {
    const CONNS: usize = 100;
    let (bport, _) = backend();
    let start = || {
        let (relay, port, dir) = http_relay("amplify", bport, "\thttp headerlen 65536", &[]);
        wait_ok(port);
        (relay, port, dir)
    };

    // What a connection costs before it sends anything.
    let (relay, port, _dir) = start();
    let pid = relay.child.id();
    let before = rss(pid);
    let idle: Vec<TcpStream> = (0..1000)
        .map(|_| TcpStream::connect(("127.0.0.1", port)).unwrap())
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let per_idle = rss(pid).saturating_sub(before) / 1000;
    drop(idle);
    relay.terminate();

    let mut headers = b"GET / HTTP/1.1\r\nHost: x\r\n".to_vec();
    while headers.len() + 5 < 65000 {
        headers.extend_from_slice(b"a:b\r\n");
    }
    let mut chunks = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    while chunks.len() + 6 < 65000 {
        chunks.extend_from_slice(b"1\r\na\r\n");
    }
    let mut pipelined = Vec::new();
    while pipelined.len() + 27 < 65000 {
        pipelined.extend_from_slice(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n");
    }
    let mut rows = Vec::new();
    for (name, input) in [
        ("13k headers per head", &headers),
        ("one-byte chunks", &chunks),
        ("2.4k pipelined requests", &pipelined),
    ] {
        let (relay, port, _dir) = start();
        let (ratio, grown) = growth_per_byte(&relay, port, CONNS, input);
        rows.push(format!(
            "{name}: {CONNS} x {} B sent, relay grew {:.1} MiB = {ratio:.2} x the bytes",
            input.len(),
            grown as f64 / 1048576.0
        ));
        assert!(ratio <= 100.0, "{name}: {ratio:.1} x the client's bytes");
        assert!(relay_alive(&relay));
        relay.terminate();
    }
    println!(
        "memory figure: {:.1} KiB per idle connection; {}",
        per_idle as f64 / 1024.0,
        rows.join("; ")
    );
}
