//! DNS relays end to end: seed example 4 (its servers moved to loopback, its interval
//! shortened), three DNS servers of the test on 127.0.0.1-3 (UDP for queries, TCP for
//! relayd's `check tcp`), and a real UDP client. The relay must hide the client's query
//! ID from the servers, give it back on the answer, and stop using a server that died.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

mod common;

use common::{compile, free_port, temp_dir, workspace, Relay};
use std::net::{TcpListener, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A DNS server on `ip:port`: answers every query with the query's own ID, the QR bit
/// set and its name appended; records the IDs it saw. `alive` false: it answers nothing
/// and its TCP port refuses (the health check fails).
struct Server {
    seen: Arc<Mutex<Vec<u16>>>,
    alive: Arc<AtomicBool>,
}

fn server(ip: &'static str, port: u16, name: &'static str) -> Server {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let alive = Arc::new(AtomicBool::new(true));
    let udp = UdpSocket::bind((ip, port)).unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (s, a) = (Arc::clone(&seen), Arc::clone(&alive));
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        loop {
            let Ok((n, from)) = udp.recv_from(&mut buf) else {
                continue;
            };
            if !a.load(Ordering::SeqCst) || n < 12 {
                continue;
            }
            s.lock().unwrap().push(u16::from_be_bytes([buf[0], buf[1]]));
            let mut answer = buf[..n].to_vec();
            answer[2] |= 0x80;
            answer.extend_from_slice(name.as_bytes());
            let _ = udp.send_to(&answer, from);
        }
    });
    let a = Arc::clone(&alive);
    std::thread::spawn(move || {
        let mut tcp = Some(TcpListener::bind((ip, port)).unwrap());
        loop {
            // A dead server closes its TCP port so `check tcp` fails.
            if !a.load(Ordering::SeqCst) {
                tcp = None;
            }
            if let Some(l) = &tcp {
                l.set_nonblocking(true).unwrap();
                while let Ok((c, _)) = l.accept() {
                    drop(c);
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    });
    Server { seen, alive }
}

/// One query with ID `id`; the answer, or `None` after a second.
fn query(relay: u16, id: u16) -> Option<Vec<u8>> {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    q.extend_from_slice(b"\x07example\x03com\x00\x00\x01\x00\x01");
    c.send_to(&q, ("127.0.0.1", relay)).unwrap();
    let mut buf = [0u8; 512];
    let (n, _) = c.recv_from(&mut buf).ok()?;
    Some(buf[..n].to_vec())
}

#[test]
fn seed_example_4_relays_dns_with_fresh_ids_and_drops_a_dead_server() {
    let dir = temp_dir("dns");
    let seed = std::fs::read_to_string(workspace().join("corpus/seed/example4.conf")).unwrap();
    let conf = seed
        .replace(
            "192.168.1.11, 192.168.2.22, 192.168.3.33",
            "127.0.0.1, 127.0.0.2, 127.0.0.3",
        )
        .replace("interval 10", "interval 1")
        // The era's word for logging every check: the test waits for state changes.
        .replace("log updates", "log all");
    assert_ne!(conf, seed);
    let conf_path = dir.join("example4.conf");
    std::fs::write(&conf_path, conf).unwrap();
    // One port free on all three addresses (a free port is free on all of 127/8).
    let port = free_port();
    let servers = [
        server("127.0.0.1", port, "one"),
        server("127.0.0.2", port, "two"),
        server("127.0.0.3", port, "three"),
    ];
    let relay_port = free_port();
    let plan = dir.join("plan.bin");
    compile(
        &conf_path,
        &[
            format!("relayd_port={relay_port}"),
            format!("dns_servers_port={port}"),
        ],
        &plan,
    );
    let relay = Relay::start(&plan, &[]);
    relay.wait_log("the three servers up", |l| {
        l.matches("state unknown -> up").count() >= 3
    });

    // `mode loadbalance` pins a client to one server; every answer carries the
    // client's own ID, and the server never saw that ID.
    let mut names = Vec::new();
    for id in [0x1234u16, 0xbeef, 0x0001, 0xfffe, 0x4242] {
        let a = query(relay_port, id).expect("an answer");
        assert_eq!(
            u16::from_be_bytes([a[0], a[1]]),
            id,
            "the client's ID is given back"
        );
        assert_eq!(a[2] & 0x80, 0x80);
        names.push(String::from_utf8_lossy(&a[a.len() - 5..]).to_string());
    }
    let seen: Vec<u16> = servers
        .iter()
        .flat_map(|s| s.seen.lock().unwrap().clone())
        .collect();
    assert_eq!(seen.len(), 5, "{seen:?}");
    for id in [0x1234u16, 0xbeef, 0x0001, 0xfffe, 0x4242] {
        assert!(
            !seen.contains(&id),
            "the server saw the client's ID {id:#06x}: {seen:?}"
        );
    }
    let unique: std::collections::BTreeSet<u16> = seen.iter().copied().collect();
    assert_eq!(unique.len(), 5, "IDs are not reused: {seen:?}");
    assert!(
        names.windows(2).all(|w| w[0] == w[1]),
        "pinned to one server: {names:?}"
    );

    // The server the client was pinned to dies: once the check notices, the queries go
    // to another one and are still answered.
    let pinned = servers
        .iter()
        .position(|s| !s.seen.lock().unwrap().is_empty())
        .unwrap();
    servers[pinned].alive.store(false, Ordering::SeqCst);
    relay.wait_log("the dead server down", |l| l.contains("state up -> down"));
    let before = servers[pinned].seen.lock().unwrap().len();
    let t0 = Instant::now();
    let mut answered = 0;
    while answered < 3 && t0.elapsed() < Duration::from_secs(10) {
        if query(relay_port, 0x7777).is_some() {
            answered += 1;
        }
    }
    assert_eq!(answered, 3, "queries are answered by the servers still up");
    assert_eq!(servers[pinned].seen.lock().unwrap().len(), before);
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn answers_with_another_id_are_dropped_and_logged() {
    let dir = temp_dir("dns-id");
    // A server that answers with the wrong ID (an off-path forger would), and a good one.
    let bad = UdpSocket::bind("127.0.0.1:0").unwrap();
    let bad_port = bad.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = bad.recv_from(&mut buf) {
            let mut a = buf[..n].to_vec();
            a[1] = a[1].wrapping_add(1);
            a[2] |= 0x80;
            let _ = bad.send_to(&a, from);
        }
    });
    let good = free_port();
    let _server = server("127.0.0.2", good, "good");
    let (r_bad, r_good) = (free_port(), free_port());
    let conf = dir.join("dns.conf");
    std::fs::write(
        &conf,
        format!(
            "log connection\n\
             dns protocol \"dns\" {{ }}\n\
             relay \"forged\" {{ listen on 127.0.0.1 port {r_bad}\n protocol \"dns\"\n forward to 127.0.0.1 port {bad_port} }}\n\
             relay \"honest\" {{ listen on 127.0.0.1 port {r_good}\n protocol \"dns\"\n forward to 127.0.0.2 port {good} }}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let relay = Relay::start(&plan, &[]);
    let t0 = Instant::now();
    let answer = loop {
        if let Some(a) = query(r_good, 0x2222) {
            break a;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "the relay never answered"
        );
    };
    assert_eq!(&answer[..2], &[0x22, 0x22]);
    relay.wait_log("the honest close line", |l| {
        l.contains("relay honest, session") && l.contains(", session closed")
    });
    assert_eq!(
        query(r_bad, 0x3333),
        None,
        "a forged answer never reaches the client"
    );
    let log = relay.wait_log("the forged close line", |l| {
        l.contains(", invalid response")
    });
    let line = log
        .lines()
        .find(|l| l.contains("invalid response"))
        .unwrap();
    assert!(
        line.starts_with("relay forged, session ")
            && line.contains(&format!("127.0.0.1 -> 127.0.0.1:{bad_port}")),
        "{line}"
    );
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
