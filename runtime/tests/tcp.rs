//! TCP relays end to end: the real `relayd-run` on 127.0.0.1, real backends (small
//! threads of ours), real clients. Plans are compiled with relaydc's CLI entry point.
//!
//! * seed example 3, its mistake fixed and `-D` moving it to loopback: bytes relayed
//!   exactly both ways, half-close passed on, a session close line;
//! * roundrobin over three backends with `prefork 1` visits them in order;
//! * `session timeout` closes an idle session and logs `buffer event timeout`;
//! * SIGTERM: `parent terminating, pid N`, exit 0; `relay_launch` once per relay;
//! * a backend that refuses: `session failed` and the client sees the close.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

use common::{compile, connect_when_ready, free_port, temp_dir, workspace, Relay};

/// A backend that echoes each connection back and closes after the client's EOF;
/// it counts its connections.
fn echo_backend() -> (u16, Arc<AtomicUsize>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let c = Arc::clone(&count);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            c.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 8192];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            if s.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    (port, count)
}

/// A backend on `ip:port` (port 0: any) that writes its name and closes.
fn named_backend(ip: &str, port: u16, name: &'static str) -> u16 {
    let l = TcpListener::bind((ip, port)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(name.as_bytes());
            let _ = s.shutdown(Shutdown::Write);
        }
    });
    port
}

#[test]
fn seed_example_3_relays_tcp_byte_exact() {
    let dir = temp_dir("seed3");
    // The tutorial's mistake (`port box2_port`) fixed; addresses moved to loopback.
    let seed = std::fs::read_to_string(workspace().join("corpus/seed/example3.conf")).unwrap();
    let fixed = seed.replace("port box2_port", "port $box2_port");
    assert_ne!(seed, fixed);
    let conf = dir.join("example3.conf");
    std::fs::write(&conf, format!("log connection\n{fixed}")).unwrap();
    let (backend, _) = echo_backend();
    let port = free_port();
    let plan = dir.join("plan.bin");
    compile(
        &conf,
        &[
            "box1_addr=127.0.0.1".into(),
            format!("box1_port={port}"),
            "box2_addr=127.0.0.1".into(),
            format!("box2_port={backend}"),
        ],
        &plan,
    );
    let relay = Relay::start(&plan, &["-vv"]);
    let mut c = connect_when_ready(port);
    // 1 MiB of every byte value, written while the echo comes back.
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 7 % 251) as u8).collect();
    let writer = {
        let mut w = c.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            // Half-close: the backend sees EOF, answers the rest, then closes.
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "relayed bytes differ");
    let log = relay.wait_log("the session close line", |l| l.contains(", done"));
    let line = log.lines().find(|l| l.contains(", done")).unwrap();
    assert_eq!(
        line,
        format!(
            "relay tcp_forwarder, session 1 (1 active), 0, 127.0.0.1 -> 127.0.0.1:{backend}, done"
        )
    );
    let pid = relay.child.id();
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        log.matches("relay_launch: running relay tcp_forwarder")
            .count(),
        1,
        "{log}"
    );
    assert!(
        log.ends_with(&format!("parent terminating, pid {pid}\n")),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn roundrobin_visits_hosts_in_order() {
    let dir = temp_dir("rr");
    // Three hosts on one port: three loopback addresses (all of 127/8 is local).
    let p = named_backend("127.0.0.1", 0, "a");
    named_backend("127.0.0.2", p, "b");
    named_backend("127.0.0.3", p, "c");
    let port = free_port();
    let conf = dir.join("rr.conf");
    std::fs::write(
        &conf,
        format!(
            "prefork 1\ntable <web> {{ 127.0.0.1, 127.0.0.2, 127.0.0.3 }}\n\
             relay \"rr\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <web> port {p} mode roundrobin\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let relay = Relay::start(&plan, &[]);
    let mut seen = String::new();
    for _ in 0..6 {
        let mut c = connect_when_ready(port);
        let mut name = String::new();
        c.read_to_string(&mut name).unwrap();
        seen.push_str(&name);
    }
    assert_eq!(seen, "abcabc", "log:\n{}", relay.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn idle_sessions_time_out() {
    let dir = temp_dir("idle");
    let (backend, _) = echo_backend();
    let port = free_port();
    let conf = dir.join("idle.conf");
    std::fs::write(
        &conf,
        format!(
            "log connection\nrelay \"idle\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to 127.0.0.1 port {backend}\n\tsession timeout 1\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let relay = Relay::start(&plan, &[]);
    let mut c = connect_when_ready(port);
    // Traffic re-arms the timer: three exchanges 0.6 s apart outlive the 1 s timeout.
    for _ in 0..3 {
        c.write_all(b"ping").unwrap();
        let mut buf = [0u8; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ping");
        std::thread::sleep(Duration::from_millis(600));
    }
    // Then silence: the relay closes the session.
    let t0 = Instant::now();
    let mut rest = Vec::new();
    c.read_to_end(&mut rest).unwrap();
    assert!(t0.elapsed() < Duration::from_secs(5));
    let log = relay.wait_log("the timeout line", |l| l.contains("buffer event timeout"));
    assert!(
        log.contains(&format!(
            "relay idle, session 1 (1 active), 0, 127.0.0.1 -> 127.0.0.1:{backend}, buffer event timeout: Success"
        )),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_refused_backend_fails_the_session() {
    let dir = temp_dir("refused");
    let dead = free_port();
    let port = free_port();
    let conf = dir.join("dead.conf");
    std::fs::write(
        &conf,
        format!(
            "log connection errors\nrelay \"dead\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to 127.0.0.1 port {dead} retry 2\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let relay = Relay::start(&plan, &[]);
    let mut c = connect_when_ready(port);
    let mut rest = Vec::new();
    let _ = c.read_to_end(&mut rest);
    assert!(rest.is_empty());
    let log = relay.wait_log("session failed", |l| l.contains("session failed"));
    assert!(
        log.contains(&format!(
            "relay dead, session 1 (1 active), 0, 127.0.0.1 -> 127.0.0.1:{dead}, session failed: Connection refused"
        )),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Connects to the relay from a chosen loopback source address and reads the
/// backend's name.
fn name_from(src: &str, port: u16) -> String {
    use socket2::{Domain, Socket, Type};
    let t0 = Instant::now();
    loop {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.bind(
            &format!("{src}:0")
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
        let dst: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        match s.connect(&dst.into()) {
            Ok(()) => {
                let mut c: TcpStream = s.into();
                c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                let mut name = String::new();
                c.read_to_string(&mut name).unwrap();
                return name;
            }
            Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("relay on {port} never accepted: {e}"),
        }
    }
}

/// Three named backends on 127.0.0.1-3 at one port, and a relay balancing over them
/// with `mode` (and `prefork`), started.
fn balanced(tag: &str, mode: &str, prefork: u32) -> (Relay, u16, PathBuf) {
    let dir = temp_dir(tag);
    let p = named_backend("127.0.0.1", 0, "a");
    named_backend("127.0.0.2", p, "b");
    named_backend("127.0.0.3", p, "c");
    let port = free_port();
    let conf = dir.join("b.conf");
    std::fs::write(
        &conf,
        format!(
            "prefork {prefork}\ntable <web> {{ 127.0.0.1, 127.0.0.2, 127.0.0.3 }}\n\
             relay \"lb\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <web> port {p} mode {mode}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    (Relay::start(&plan, &[]), port, dir)
}

#[test]
fn source_hash_pins_each_client_across_workers() {
    // Two workers: the key drawn at start is shared, so both send a client to the same host.
    let (relay, port, dir) = balanced("srchash", "source-hash", 2);
    let mut hosts = std::collections::BTreeSet::new();
    for n in 11..31 {
        let src = format!("127.0.0.{n}");
        let first = name_from(&src, port);
        for _ in 0..3 {
            assert_eq!(
                name_from(&src, port),
                first,
                "client {src} moved; log:\n{}",
                relay.log()
            );
        }
        hosts.insert(first);
    }
    assert!(hosts.len() >= 2, "20 clients all on {hosts:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn hash_without_a_hash_rule_sends_everyone_to_one_host() {
    let (relay, port, dir) = balanced("hash", "hash", 1);
    let first = name_from("127.0.0.11", port);
    for n in 12..31 {
        assert_eq!(
            name_from(&format!("127.0.0.{n}"), port),
            first,
            "log:\n{}",
            relay.log()
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn loadbalance_pins_clients_and_random_spreads() {
    let (relay, port, dir) = balanced("lb", "loadbalance", 1);
    let mut hosts = std::collections::BTreeSet::new();
    for n in 11..31 {
        let src = format!("127.0.0.{n}");
        let first = name_from(&src, port);
        assert_eq!(name_from(&src, port), first, "log:\n{}", relay.log());
        hosts.insert(first);
    }
    assert!(hosts.len() >= 2, "20 clients all on {hosts:?}");
    drop(relay);
    let _ = std::fs::remove_dir_all(&dir);
    let (relay, port, dir) = balanced("random", "random", 1);
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..60 {
        *seen.entry(name_from("127.0.0.1", port)).or_insert(0) += 1;
    }
    assert_eq!(
        seen.len(),
        3,
        "60 random picks: {seen:?}; log:\n{}",
        relay.log()
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_configured_key_gives_the_same_spread_after_a_restart() {
    let run = || {
        let (relay, port, dir) = balanced("key", "source-hash \"fixed key\"", 1);
        let picks: Vec<String> = (11..21)
            .map(|n| name_from(&format!("127.0.0.{n}"), port))
            .collect();
        drop(relay);
        let _ = std::fs::remove_dir_all(&dir);
        picks
    };
    assert_eq!(run(), run());
}

/// A backend answering every connection with `reply` and closing (an HTTP server for
/// health checks: it answers before reading, which a HEAD check accepts).
fn replying_backend(ip: &str, port: u16, reply: &'static str) -> u16 {
    named_backend(ip, port, reply)
}

#[test]
fn health_checks_take_dead_hosts_out_and_bring_them_back() {
    let dir = temp_dir("health");
    let p = named_backend("127.0.0.1", 0, "a");
    let port = free_port();
    let conf = dir.join("h.conf");
    std::fs::write(
        &conf,
        format!(
            "interval 1\ntimeout 500\nprefork 1\ntable <web> {{ 127.0.0.1, 127.0.0.2 }}\n\
             relay \"checked\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <web> port {p} check tcp\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let relay = Relay::start(&plan, &[]);
    // -d logs every state change (relayd forces `log state changes` in the foreground).
    relay.wait_log("both first results", |l| {
        l.contains("host 127.0.0.1, check tcp (") && l.contains("host 127.0.0.2, check tcp (")
    });
    let log = relay.log();
    assert!(
        log.contains("tcp connect ok), state unknown -> up, availability 100.00%"),
        "{log}"
    );
    assert!(log.contains("host 127.0.0.2, check tcp ("), "{log}");
    assert!(
        log.contains("tcp connect failed), state unknown -> down, availability 0.00%"),
        "{log}"
    );
    for _ in 0..4 {
        assert_eq!(
            name_from("127.0.0.1", port),
            "a",
            "the dead host got a session"
        );
    }
    // The second host comes up: the next check brings it back into rotation.
    named_backend("127.0.0.2", p, "b");
    relay.wait_log("the state change", |l| l.contains("state down -> up"));
    let seen: std::collections::BTreeSet<String> =
        (0..4).map(|_| name_from("127.0.0.1", port)).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn http_code_checks_compare_the_status() {
    let dir = temp_dir("httpcheck");
    let p = replying_backend("127.0.0.1", 0, "HTTP/1.0 200 OK\r\n\r\n");
    replying_backend("127.0.0.2", p, "HTTP/1.1 500 Internal Server Error\r\n\r\n");
    replying_backend("127.0.0.3", p, "SSH-2.0-OpenSSH\r\n");
    let port = free_port();
    let conf = dir.join("h.conf");
    std::fs::write(
        &conf,
        format!(
            "interval 1\ntimeout 500\ntable <web> {{ 127.0.0.1, 127.0.0.2, 127.0.0.3 }}\n\
             relay \"http\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <web> port {p} check http \"/\" code 200\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let relay = Relay::start(&plan, &[]);
    let log = relay.wait_log("three results", |l| {
        l.matches("check http code").count() >= 3
    });
    assert!(log.contains("host 127.0.0.1, check http code ("), "{log}");
    assert!(
        // relayd keeps a code only for a mismatch (check_http_code sets host->code then).
        log.contains("http code ok), state unknown -> up"),
        "{log}"
    );
    assert!(
        log.contains("http code mismatch,500), state unknown -> down"),
        "{log}"
    );
    assert!(
        log.contains("http code malformed), state unknown -> down"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Sends 1 MiB through `port`, half-closes, and returns what came back.
fn echo_through(port: u16) -> Vec<u8> {
    let mut c = connect_when_ready(port);
    let data: Vec<u8> = (0..1024 * 1024u32).map(|i| (i * 13 % 253) as u8).collect();
    let writer = {
        let mut w = c.try_clone().unwrap();
        let data = data.clone();
        std::thread::spawn(move || {
            w.write_all(&data).unwrap();
            w.shutdown(Shutdown::Write).unwrap();
        })
    };
    let mut back = Vec::new();
    c.read_to_end(&mut back).unwrap();
    writer.join().unwrap();
    assert!(
        back == data,
        "relayed bytes differ ({} bytes back)",
        back.len()
    );
    back
}

/// Pipes the process holds open (`/proc/PID/fd` links to `pipe:[…]`).
fn pipes_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_link(e.path()).is_ok_and(|l| l.to_string_lossy().starts_with("pipe:"))
        })
        .count()
}

#[test]
fn tcp_relays_splice_unless_told_not_to() {
    let dir = temp_dir("splice");
    let (backend, _) = echo_backend();
    let (spliced, copied) = (free_port(), free_port());
    let conf = dir.join("splice.conf");
    std::fs::write(
        &conf,
        format!(
            "prefork 1\nlog connection\n\
             tcp protocol \"copy\" {{ tcp {{ no splice }} }}\n\
             relay \"copied\" {{ listen on 127.0.0.1 port {copied}\n protocol \"copy\"\n forward to 127.0.0.1 port {backend} }}\n\
             relay \"spliced\" {{ listen on 127.0.0.1 port {spliced}\n forward to 127.0.0.1 port {backend} }}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let relay = Relay::start(&plan, &[]);
    let pid = relay.child.id();
    // relayd-run's own pipes (stderr is a pipe to this test) before any session.
    connect_when_ready(copied);
    let base = pipes_of(pid);
    echo_through(copied);
    relay.wait_log("the copied session's close", |l| {
        l.contains("relay copied, session") && l.contains(", done")
    });
    assert_eq!(pipes_of(pid), base, "`no splice` must copy in user space");
    echo_through(spliced);
    relay.wait_log("the spliced session's close", |l| {
        l.contains("relay spliced, session") && l.contains(", done")
    });
    // A bulk direction splices through a pipe (two fds), which the worker keeps for the
    // next session: at least one direction of a 1 MiB echo is bulk.
    let first = pipes_of(pid);
    assert!(
        first >= base + 2 && first <= base + 4,
        "a spliced session moves bytes through pipes: {base} -> {first}"
    );
    // More sessions reuse the pooled pipes: at most one pair per direction, ever.
    for _ in 0..3 {
        echo_through(spliced);
    }
    let later = pipes_of(pid);
    assert!(
        later <= base + 4,
        "pipes are reused, not made per session: {base} -> {first} -> {later}"
    );
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn ip_minttl_drops_clients_further_away() {
    use socket2::{Domain, SockAddr, Socket, Type};
    let dir = temp_dir("minttl");
    // The backend answers with TTL 255 too: relayd sets `ip minttl` on both sockets.
    let l = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    l.set_ttl(255).unwrap();
    l.bind(&SockAddr::from(
        "127.0.0.1:0".parse::<std::net::SocketAddr>().unwrap(),
    ))
    .unwrap();
    l.listen(16).unwrap();
    let l: TcpListener = l.into();
    let backend = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(b"near");
            let _ = s.shutdown(Shutdown::Write);
        }
    });
    let port = free_port();
    let conf = dir.join("minttl.conf");
    std::fs::write(
        &conf,
        format!(
            "tcp protocol \"gtsm\" {{ tcp {{ ip minttl 255 }} }}\n\
             relay \"gtsm\" {{ listen on 127.0.0.1 port {port}\n protocol \"gtsm\"\n forward to 127.0.0.1 port {backend} }}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let relay = Relay::start(&plan, &[]);
    let addr: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let client = |ttl: u32| {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_ttl(ttl).unwrap();
        s.connect_timeout(&SockAddr::from(addr), Duration::from_millis(700))
            .map(|()| TcpStream::from(s))
    };
    // A neighbour (TTL 255 on arrival) gets through; bounded retries while it starts.
    let t0 = Instant::now();
    let mut near = loop {
        match client(255) {
            Ok(s) => break s,
            Err(e) if t0.elapsed() > Duration::from_secs(10) => panic!("never accepted: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    near.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut got = String::new();
    near.read_to_string(&mut got).unwrap();
    assert_eq!(got, "near");
    drop(near);
    // A client whose packets arrive with TTL 64 never completes the handshake.
    let far = client(64);
    assert!(
        far.is_err(),
        "a TTL-64 client must be dropped by ip minttl 255"
    );
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
