//! HTTP relays end to end: seed example 1 (its table pointed at loopback backends) in
//! front of a recording backend of ours. Passing requests reach the backend rewritten as
//! the tutorial's rules say; blocked ones get relayd's error page and never reach it.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{compile, connect_when_ready, free_port, temp_dir, workspace, Relay};

/// A backend that records every request head it receives (health checks included),
/// answers each with `Server: TestServer` and a 2-byte body, and keeps the connection.
fn recording_backend(ip: &str, port: u16) -> (u16, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind((ip, port)).unwrap();
    let port = l.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let seen = Arc::clone(&s2);
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
                        buf.drain(..end + 4);
                        let close = head.contains("HTTP/1.0")
                            || head.to_ascii_lowercase().contains("connection: close");
                        seen.lock().unwrap().push(head);
                        let _ = s.write_all(
                            b"HTTP/1.1 200 OK\r\nServer: TestServer\r\nContent-Length: 2\r\n\r\nok",
                        );
                        if close {
                            return;
                        }
                    }
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
            });
        }
    });
    (port, seen)
}

/// Sends `request`, returns the response (head and a Content-Length body, or up to EOF).
fn exchange(port: u16, request: &str) -> String {
    let mut c = connect_when_ready(port);
    c.write_all(request.as_bytes()).unwrap();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            if let Some(cl) = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
            {
                let want = end + 4 + cl.trim().parse::<usize>().unwrap();
                if buf.len() >= want {
                    buf.truncate(want);
                    break;
                }
            }
        }
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn seed_example_1_filters_and_rewrites() {
    let dir = temp_dir("seed1");
    let (bport, seen) = recording_backend("127.0.0.1", 0);
    let (_, seen2) = recording_backend("127.0.0.2", bport);
    let (_, seen3) = recording_backend("127.0.0.3", bport);
    let port = free_port();
    let seed = std::fs::read_to_string(workspace().join("corpus/seed/example1.conf")).unwrap();
    let conf = seed.replace(
        "10.10.10.11, 10.10.10.22, 10.10.10.33",
        "127.0.0.1, 127.0.0.2, 127.0.0.3",
    );
    assert_ne!(seed, conf);
    let conf_path = dir.join("example1.conf");
    std::fs::write(&conf_path, &conf).unwrap();
    let plan = dir.join("plan.bin");
    compile(
        &conf_path,
        &[format!("relayd_port={port}"), format!("web_port={bport}")],
        &plan,
    );
    let relay = Relay::start(&plan, &[]);
    // The http checks bring the three hosts up (relayd logs state changes with -d).
    relay.wait_log("a log line", |l| {
        l.matches("state unknown -> up").count() >= 3
    });

    let all = || -> Vec<String> {
        let mut v = seen.lock().unwrap().clone();
        v.extend(seen2.lock().unwrap().clone());
        v.extend(seen3.lock().unwrap().clone());
        // The health checks' requests (relayd's `HEAD / HTTP/1.0` and nothing else).
        v.retain(|h| h != "HEAD / HTTP/1.0\r\n\r\n");
        v
    };
    // A request that passes: rewritten on the way in and out.
    let resp = exchange(port, "GET /index.html HTTP/1.1\r\nHost: calomel.org\r\nUser-Agent: curl/8\r\nConnection: keep-alive\r\n\r\n");
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    assert!(resp.contains("Server: JustSomeServer\r\n"), "{resp}");
    assert!(!resp.contains("TestServer"), "{resp}");
    assert!(resp.ends_with("\r\n\r\nok"), "{resp}");
    let got = all();
    assert_eq!(got.len(), 1, "{got:?}");
    let head = &got[0];
    assert!(head.starts_with("GET /index.html HTTP/1.1\r\n"), "{head}");
    assert!(head.contains("X-Forwarded-For: 127.0.0.1\r\n"), "{head}");
    assert!(head.contains("Connection: close\r\n"), "{head}");
    assert!(head.contains("Keep-Alive: 600\r\n"), "{head}");
    // Blocked: a filtered User-Agent, a filtered Referer (case-insensitive globs, as
    // relayd 5.5 matched them), a Host the expect nodes do not allow.
    for req in [
        "GET / HTTP/1.1\r\nHost: calomel.org\r\nUser-Agent: Bandia/1.0\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: calomel.org\r\nUser-Agent: twosands\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: www.calomel.org\r\nReferer: NAPSACK.example\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: evil.example\r\n\r\n",
    ] {
        let resp = exchange(port, req);
        assert!(
            resp.starts_with("HTTP/1.0 403 Forbidden\r\n"),
            "{req:?} -> {resp}"
        );
        assert!(resp.contains("Server: OpenBSD relayd\r\n"), "{resp}");
    }
    let resp = exchange(
        port,
        "GET / HTTP/1.1\r\nHost: calomel.org\r\nUser-Agent: bandia-bot\r\n\r\n",
    );
    assert!(
        resp.contains("BAD user agent"),
        "the page shows the node's label: {resp}"
    );
    // None of them reached a backend.
    let got = all();
    assert_eq!(got.len(), 1, "a blocked request reached a backend: {got:?}");
    // A malformed request: 400 page, nothing at the backend.
    let resp = exchange(
        port,
        "GET / HTTP/1.1\r\nHost: calomel.org\r\nBad Header: x\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.0 400 Bad Request\r\n"), "{resp}");
    assert_eq!(all().len(), 1);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Starts a current-syntax HTTP relay in front of one recording backend.
fn current_relay(tag: &str, protocol_body: &str) -> (Relay, u16, Arc<Mutex<Vec<String>>>, PathBuf) {
    let dir = temp_dir(tag);
    let (bport, seen) = recording_backend("127.0.0.1", 0);
    let port = free_port();
    let conf = dir.join("r.conf");
    std::fs::write(
        &conf,
        format!(
            "log connection\nprefork 1\nhttp protocol \"web\" {{\n{protocol_body}\n}}\n\
             relay \"web\" {{\n\tlisten on 127.0.0.1 port {port}\n\tprotocol \"web\"\n\tforward to 127.0.0.1 port {bport}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    (Relay::start(&plan, &[]), port, seen, dir)
}

#[test]
fn malformed_requests_never_reach_the_backend() {
    let (relay, port, seen, dir) = current_relay("malformed", "\treturn error\n\tpass");
    // (request, status line the client gets, close message in the log)
    let cases: &[(&str, &str, &str)] = &[
        (
            "GET / HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
            "malformed (400 Bad Request)",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
            "malformed header (400 Bad Request)",
        ),
        (
            "GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
            "malformed host (400 Bad Request)",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
            "HTTP/1.0 500 Internal Server Error",
            "invalid (500 Internal Server Error)",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
            "malformed (400 Bad Request)",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
            "malformed (400 Bad Request)",
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\0\r\n\r\n",
            "HTTP/1.0 400 Bad Request",
            "malformed (400 Bad Request)",
        ),
        (
            "FOO / HTTP/1.1\r\nHost: a\r\n\r\n",
            "HTTP/1.0 500 Internal Server Error",
            "(500 Internal Server Error)",
        ),
    ];
    for (req, status, msg) in cases {
        let resp = exchange(port, req);
        assert!(
            resp.starts_with(&format!("{status}\r\n")),
            "{req:?} -> {resp}"
        );
        relay.wait_log("a log line", |l| l.contains(msg));
    }
    // A bad chunk size arriving with its head (one write on loopback): the head is held
    // back to go out with the first chunk, so the backend sees nothing at all.
    let _ = exchange(port, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0x4\r\nabcd\r\n0\r\n\r\n");
    relay.wait_log("a log line", |l| l.contains("invalid chunk size"));
    let got = seen.lock().unwrap().clone();
    assert!(
        got.is_empty(),
        "a malformed request reached the backend: {got:?}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn current_rules_rewrite_block_and_log() {
    let body = "\tmatch request header set \"X-Proxy\" value \"relayd-run $SERVER_PORT\"\n\
                \tmatch request header log \"User-Agent\"\n\
                \tblock request quick path \"/admin*\" label \"no admin here\"\n\
                \tmatch response header remove \"Server\"\n\
                \treturn error";
    let (relay, port, seen, dir) = current_relay("rules", body);
    let resp = exchange(
        port,
        "GET /a HTTP/1.1\r\nHost: x\r\nUser-Agent: probe/1\r\nConnection: keep-alive\r\n\r\n",
    );
    assert!(
        resp.starts_with("HTTP/1.1 200 OK\r\n") && !resp.contains("Server:"),
        "{resp}"
    );
    let head = seen.lock().unwrap()[0].clone();
    assert!(
        head.contains(&format!("X-Proxy: relayd-run {port}\r\n")),
        "{head}"
    );
    // The first session's close is asynchronous to the client's: wait for it, so the
    // second session's "(N active)" does not depend on which close ran first.
    relay.wait_log("the first session's close", |l| l.contains(", done, "));
    let resp = exchange(port, "GET /admin/x HTTP/1.1\r\nHost: x\r\n\r\n");
    assert!(
        resp.starts_with("HTTP/1.0 403 Forbidden\r\n") && resp.contains("no admin here"),
        "{resp}"
    );
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the blocked request reached the backend"
    );
    // Close lines: the logged header, the methods, the removed response header.
    let log = relay.wait_log("a log line", |l| l.contains("Forbidden (403 Forbidden)"));
    assert!(
        log.contains(", 0, 127.0.0.1 -> 127.0.0.1:")
            && log.contains(", done, [User-Agent: probe/1] GET;\n"),
        "{log}"
    );
    // The block closes before any backend: relayd prints the unset address as `:0`.
    assert!(
        log.contains(
            "relay web, session 2 (1 active), 0, 127.0.0.1 -> :0, Forbidden (403 Forbidden), GET: "
        ),
        "{log}"
    );
    assert!(log.contains("Forbidden (403 Forbidden)"), "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keep_alive_pipelining_and_chunked_bodies() {
    let (relay, port, seen, dir) = current_relay("pipeline", "\tpass");
    let mut c = connect_when_ready(port);
    // Three requests in one write: a GET, a chunked POST (with a trailer), a GET.
    let reqs = "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n\
                POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n\
                GET /3 HTTP/1.1\r\nHost: a\r\n\r\n";
    c.write_all(reqs.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    let t0 = Instant::now();
    while got.windows(2).filter(|w| w == b"ok").count() < 3
        && t0.elapsed() < Duration::from_secs(10)
    {
        match c.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    let text = String::from_utf8_lossy(&got);
    assert_eq!(text.matches("HTTP/1.1 200 OK\r\n").count(), 3, "{text}");
    // The recording backend splits what it receives at blank lines: the chunked body
    // (re-framed by the relay, trailer included) shows as its own piece, in order. It
    // answers that piece too, so the client's third answer can come before the backend
    // has read the third request: wait for it (bounded).
    let t0 = Instant::now();
    while seen.lock().unwrap().len() < 4 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let heads = seen.lock().unwrap().clone();
    assert_eq!(
        heads,
        [
            "GET /1 HTTP/1.1\r\nHost: a\r\n\r\n",
            "POST /2 HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
            "4\r\nwiki\r\n5\r\npedia\r\n0\r\nX-Trailer: t\r\n\r\n",
            "GET /3 HTTP/1.1\r\nHost: a\r\n\r\n",
        ]
    );
    drop(c);
    let log = relay.wait_log("a log line", |l| l.contains(", done"));
    assert!(
        log.contains(", done, GET POST GET"),
        "one session, three requests: {log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A relay over two backends, `web` and `static`, with `protocol_body` as its rules.
#[allow(clippy::type_complexity)]
fn two_tables(
    tag: &str,
    protocol_body: &str,
) -> (
    Relay,
    u16,
    Arc<Mutex<Vec<String>>>,
    Arc<Mutex<Vec<String>>>,
    PathBuf,
) {
    let dir = temp_dir(tag);
    let (web, web_seen) = recording_backend("127.0.0.1", 0);
    let (stat, static_seen) = recording_backend("127.0.0.2", 0);
    let port = free_port();
    let conf = dir.join("t.conf");
    std::fs::write(
        &conf,
        format!(
            "prefork 1\ntable <web> {{ 127.0.0.1 }}\ntable <static> {{ 127.0.0.2 }}\n\
             http protocol \"p\" {{\n{protocol_body}\n}}\n\
             relay \"r\" {{\n\tlisten on 127.0.0.1 port {port}\n\tprotocol \"p\"\n\
             \tforward to <web> port {web}\n\tforward to <static> port {stat}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    (Relay::start(&plan, &[]), port, web_seen, static_seen, dir)
}

#[test]
fn a_rule_picks_the_table_per_request() {
    let (relay, port, web, stat, dir) = two_tables(
        "tables",
        "\tmatch request path \"/static/*\" forward to <static>",
    );
    let a = exchange(port, "GET /index.html HTTP/1.0\r\nHost: x\r\n\r\n");
    let b = exchange(port, "GET /static/app.js HTTP/1.0\r\nHost: x\r\n\r\n");
    assert!(
        a.starts_with("HTTP/1.1 200 OK") && b.starts_with("HTTP/1.1 200 OK"),
        "{a}\n{b}"
    );
    let first = |v: &Arc<Mutex<Vec<String>>>| -> Vec<String> {
        v.lock()
            .unwrap()
            .iter()
            .map(|h| h.lines().next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        first(&web),
        ["GET /index.html HTTP/1.0"],
        "log:\n{}",
        relay.log()
    );
    assert_eq!(
        first(&stat),
        ["GET /static/app.js HTTP/1.0"],
        "log:\n{}",
        relay.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn oversized_heads_get_413_and_curl_sees_the_pages() {
    let (relay, port, seen, dir) = current_relay(
        "limits",
        "\treturn error\n\thttp headerlen 256\n\tblock request quick header \"User-Agent\" value \"*bot*\" label \"no bots\"",
    );
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Big: {}\r\n\r\n",
        "x".repeat(400)
    );
    let resp = exchange(port, &big);
    assert!(
        resp.starts_with("HTTP/1.0 413 Payload Too Large\r\n"),
        "{resp}"
    );
    relay.wait_log("a log line", |l| {
        l.contains("request headers too large (413 Payload Too Large)")
    });
    // A real client: curl gets the block page, then a normal answer.
    let out = Command::new("curl")
        .args([
            "-sS",
            "-i",
            "-A",
            "crawlbot/2",
            &format!("http://127.0.0.1:{port}/x"),
        ])
        .output()
        .expect("curl (scripts/test installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.0 403 Forbidden\r\n") && text.contains("no bots"),
        "{text}"
    );
    let out = Command::new("curl")
        .args(["-sS", "-i", &format!("http://127.0.0.1:{port}/y")])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("ok"),
        "{text}"
    );
    let heads = seen.lock().unwrap().clone();
    assert_eq!(
        heads.len(),
        1,
        "only the last request may reach the backend: {heads:?}"
    );
    assert!(heads[0].starts_with("GET /y HTTP/1.1\r\n"), "{heads:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A backend that answers a websocket upgrade with 101 and then echoes raw bytes.
fn websocket_backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                let _ = s.write_all(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
                loop {
                    match s.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => {
                            if s.write_all(&chunk[..n]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

fn websocket_relay(tag: &str, websockets: bool) -> (Relay, u16, PathBuf) {
    let dir = temp_dir(tag);
    let back = websocket_backend();
    let port = free_port();
    let conf = dir.join("ws.conf");
    std::fs::write(
        &conf,
        format!(
            "http protocol \"ws\" {{\n\treturn error\n\thttp {}websockets\n}}\n\
             relay \"ws\" {{\n\tlisten on 127.0.0.1 port {port}\n\tprotocol \"ws\"\n\tforward to 127.0.0.1 port {back}\n}}\n",
            if websockets { "" } else { "no " }
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    (Relay::start(&plan, &[]), port, dir)
}

#[test]
fn websocket_upgrades_switch_to_raw_bytes_only_when_allowed() {
    let upgrade =
        "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n";
    let (_relay, port, dir) = websocket_relay("on", true);
    let mut c = connect_when_ready(port);
    c.write_all(upgrade.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut chunk = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "closed before the 101");
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101 "),
        "{}",
        String::from_utf8_lossy(&got)
    );
    // Raw bytes both ways now, not HTTP.
    c.write_all(b"\x81\x05hello").unwrap();
    let mut echo = [0u8; 7];
    c.read_exact(&mut echo).unwrap();
    assert_eq!(&echo, b"\x81\x05hello");
    drop(c);
    let _ = std::fs::remove_dir_all(&dir);
    // With websockets off, the upgrade is refused before any backend sees it.
    let (_relay, port, dir) = websocket_relay("off", false);
    let resp = exchange(port, upgrade);
    assert!(resp.starts_with("HTTP/1.0 403 Forbidden\r\n"), "{resp}");
    assert!(resp.contains("Websocket Forbidden"), "{resp}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn options_rewrite_paths_cookies_and_use_runtime_macros() {
    let body = "\tmatch request path \"/app/*\" path strip 1\n\
                \tmatch request header set \"X-Host\" value \"$HOST\"\n\
                \tmatch request header set \"X-Client\" value \"$REMOTE_ADDR:$REMOTE_PORT\"\n\
                \tmatch request cookie append \"seen\" value \"yes\"\n\
                \tmatch request header remove \"X-Secret\"";
    let (_relay, port, seen, dir) = current_relay("options", body);
    let resp = exchange(
        port,
        "GET /app/v1/list?x=1 HTTP/1.1\r\nHost: shop.example\r\nX-Secret: s3cr3t\r\nConnection: keep-alive\r\n\r\n",
    );
    assert!(resp.starts_with("HTTP/1.1 200 OK\r\n"), "{resp}");
    let head = seen.lock().unwrap()[0].clone();
    assert!(
        head.starts_with("GET /v1/list?x=1 HTTP/1.1\r\n"),
        "path strip 1: {head}"
    );
    assert!(head.contains("X-Host: shop.example\r\n"), "{head}");
    assert!(head.contains("X-Client: 127.0.0.1:"), "{head}");
    assert!(head.contains("Cookie: seen=yes;\r\n"), "{head}");
    assert!(!head.contains("X-Secret"), "{head}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_backend_that_closes_ends_the_session() {
    let dir = temp_dir("backend-closes");
    // A backend that answers once, says `Connection: close`, and closes.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let bport = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ =
                s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok");
        }
    });
    let port = free_port();
    let conf = dir.join("r.conf");
    std::fs::write(
        &conf,
        format!(
            "log connection\nhttp protocol \"web\" {{ return error }}\n\
             relay \"web\" {{\n\tlisten on 127.0.0.1 port {port}\n\tprotocol \"web\"\n\tforward to 127.0.0.1 port {bport}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let relay = Relay::start(&plan, &[]);
    let mut c = connect_when_ready(port);
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // A keep-alive request: the client would wait for more, but the relay closes as
    // relayd does once the server has closed.
    c.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n").unwrap();
    let mut got = Vec::new();
    c.read_to_end(&mut got)
        .expect("the relay closes the client's connection, not the idle timeout");
    let got = String::from_utf8_lossy(&got);
    assert!(
        got.starts_with("HTTP/1.1 200 OK\r\n") && got.ends_with("ok"),
        "{got}"
    );
    relay.wait_log("the close line", |l| {
        l.contains("relay web, session 1") && l.contains(", done")
    });
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// relayd ends a session when either side closes: a backend that drops an idle
/// keep-alive connection (its own keep-alive timeout) closes the client's too, so the
/// client's next request opens a fresh session instead of meeting a dead backend.
#[test]
fn a_backend_closing_between_requests_ends_the_session() {
    let back = TcpListener::bind("127.0.0.1:0").unwrap();
    let bport = back.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in back.incoming().take(4) {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => got.extend_from_slice(&buf[..n]),
                    }
                }
                // A keep-alive answer, then the backend's idle timeout closes it.
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                std::thread::sleep(Duration::from_millis(300));
            });
        }
    });
    let dir = temp_dir("backend-closes");
    let port = free_port();
    let conf = dir.join("r.conf");
    std::fs::write(
        &conf,
        format!(
            "log connection\nprefork 1\nhttp protocol \"web\" {{\n\tpass\n}}\n\
             relay \"web\" {{\n\tlisten on 127.0.0.1 port {port}\n\tprotocol \"web\"\n\tforward to 127.0.0.1 port {bport}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let relay = Relay::start(&plan, &[]);
    let mut c = connect_when_ready(port);
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut buf = [0u8; 256];
    let n = c.read(&mut buf).unwrap();
    assert!(
        buf[..n].ends_with(b"ok"),
        "{:?}",
        String::from_utf8_lossy(&buf[..n])
    );
    let t0 = Instant::now();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(
        c.read(&mut buf).unwrap(),
        0,
        "the client's connection stays open"
    );
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    relay.wait_log("the close line", |l| l.contains(", done, GET"));
    relay.terminate();
}
