//! DNS relays end to end.
//!
//! * Seed example 4 (its interval shortened) in a network namespace of the test's own,
//!   whose loopback holds the seed's three server addresses, each with a DNS server of
//!   the test (UDP for queries, TCP for relayd's `check tcp`), and a real UDP client
//!   there: the relay must hide the client's query ID from the servers, give it back on
//!   the answer, and stop using a server that died.
//! * On loopback: a server answering with another ID, whose answer never reaches the
//!   client.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

mod common;

use common::{compile, free_port, temp_dir, workspace, Relay};
use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A DNS server on `ip:port` (loopback): answers every query with the query's own ID,
/// the QR bit set and its name appended.
fn server(ip: &'static str, port: u16, name: &'static str) {
    let udp = UdpSocket::bind((ip, port)).unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 512];
        while let Ok((n, from)) = udp.recv_from(&mut buf) {
            if n < 12 {
                continue;
            }
            let mut answer = buf[..n].to_vec();
            answer[2] |= 0x80;
            answer.extend_from_slice(name.as_bytes());
            let _ = udp.send_to(&answer, from);
        }
    });
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

/// A DNS server of the test in a namespace ([`DnsNet::server`]): answers every UDP
/// query with the query's own ID, the QR bit set and its name appended, printing each
/// ID it saw (`seen N`); accepts and closes TCP connections (relayd's `check tcp`).
const DNS_SERVER: &str = r#"
import socket, sys, threading
name, addr, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
t = socket.socket()
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((addr, port))
t.listen(16)
def checks():
    while True:
        c, _ = t.accept()
        c.close()
threading.Thread(target=checks, daemon=True).start()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((addr, port))
print("ready", flush=True)
while True:
    q, src = u.recvfrom(512)
    if len(q) < 12:
        continue
    print("seen %d" % int.from_bytes(q[:2], "big"), flush=True)
    a = bytearray(q)
    a[2] |= 0x80
    u.sendto(bytes(a) + name.encode(), src)
"#;

/// A DNS client: one query per ID in argv[3:] to argv[1] port argv[2], each answer
/// (hex) or `none` after a second, one line per query.
const DNS_CLIENT: &str = r#"
import socket, sys
for i in sys.argv[3:]:
    c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    c.settimeout(1)
    q = int(i).to_bytes(2, "big") + bytes([1, 0, 0, 1, 0, 0, 0, 0, 0, 0])
    q += b"\x07example\x03com\x00\x00\x01\x00\x01"
    c.sendto(q, (sys.argv[1], int(sys.argv[2])))
    try:
        a, _ = c.recvfrom(512)
        print(a.hex(), flush=True)
    except socket.timeout:
        print("none", flush=True)
    c.close()
"#;

/// A network namespace of the test's own with the DNS servers' addresses on its
/// loopback, deleted (with everything in it) on drop.
struct DnsNet {
    ns: String,
    servers: Vec<(Child, Arc<Mutex<Vec<u16>>>)>,
}

impl DnsNet {
    fn new(addrs: &[&str]) -> Option<DnsNet> {
        let ns = format!("dns{}", std::process::id() % 100_000);
        let ok = |args: &[&str]| {
            Command::new(args[0])
                .args(&args[1..])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        };
        if !ok(&["ip", "netns", "add", &ns]) {
            return None;
        }
        let net = DnsNet {
            ns,
            servers: Vec::new(),
        };
        assert!(ok(&["ip", "-n", &net.ns, "link", "set", "lo", "up"]));
        for a in addrs {
            let cidr = format!("{a}/32");
            assert!(ok(&[
                "ip", "-n", &net.ns, "addr", "add", &cidr, "dev", "lo"
            ]));
        }
        Some(net)
    }

    /// Starts [`DNS_SERVER`] on `addr`:`port`; returns its index. The IDs it sees
    /// collect in its list.
    fn server(&mut self, name: &str, addr: &str, port: u16) -> usize {
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-c", DNS_SERVER])
            .args([name, addr, &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let s = Arc::clone(&seen);
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines().map_while(Result::ok) {
                if line == "ready" {
                    let _ = ready_tx.send(());
                } else if let Some(id) = line.strip_prefix("seen ") {
                    s.lock().unwrap().push(id.parse().unwrap());
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("a DNS server ready");
        self.servers.push((child, seen));
        self.servers.len() - 1
    }

    fn seen(&self, server: usize) -> Vec<u16> {
        self.servers[server].1.lock().unwrap().clone()
    }

    /// Stops server `n` (ours, by pid): its UDP and TCP sockets go with it.
    fn kill(&mut self, n: usize) {
        let c = &mut self.servers[n].0;
        let _ = c.kill();
        let _ = c.wait();
    }

    /// [`DNS_CLIENT`] in the namespace: per ID, the answer or `None`.
    fn query(&self, addr: &str, port: u16, ids: &[u16]) -> Vec<Option<Vec<u8>>> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.ns, "python3", "-c", DNS_CLIENT])
            .args([addr.to_string(), port.to_string()])
            .args(ids.iter().map(u16::to_string))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| (l != "none").then(|| hex(l)))
            .collect()
    }
}

impl Drop for DnsNet {
    fn drop(&mut self) {
        for (c, _) in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.ns])
            .stderr(Stdio::null())
            .status();
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).unwrap())
        .collect()
}

/// Seed example 4 in a namespace of the test's own, where its three DNS servers'
/// addresses (the seed's own) are on the loopback with a server of the test's each,
/// and the relay listens where the seed says; only the check interval is shortened.
#[test]
fn seed_example_4_relays_dns_with_fresh_ids_and_drops_a_dead_server() {
    let addrs = ["192.168.1.11", "192.168.2.22", "192.168.3.33"];
    let Some(mut net) = DnsNet::new(&addrs) else {
        eprintln!("skipped: cannot create network namespaces here");
        return;
    };
    let dir = temp_dir("dns");
    let seed = std::fs::read_to_string(workspace().join("corpus/seed/example4.conf")).unwrap();
    assert!(seed.contains("{ 192.168.1.11, 192.168.2.22, 192.168.3.33 }"));
    let conf = seed.replace("interval 10", "interval 1");
    assert_ne!(conf, seed);
    let conf_path = dir.join("example4.conf");
    std::fs::write(&conf_path, conf).unwrap();
    let servers: Vec<usize> = addrs
        .iter()
        .zip(["one", "two", "three"])
        .map(|(a, name)| net.server(name, a, 53))
        .collect();
    let plan = dir.join("plan.bin");
    compile(&conf_path, &[], &plan);
    let relay = Relay::start_via(&["ip", "netns", "exec", &net.ns], &plan, &[]);
    relay.wait_log("the three servers up", |l| {
        l.matches("state unknown -> up").count() >= 3
    });

    // `mode loadbalance` pins a client to one server; every answer carries the
    // client's own ID, and the server never saw that ID.
    let ids = [0x1234u16, 0xbeef, 0x0001, 0xfffe, 0x4242];
    let mut names = Vec::new();
    for (id, a) in ids.iter().zip(net.query("127.0.0.1", 8053, &ids)) {
        let a = a.expect("an answer");
        assert_eq!(
            u16::from_be_bytes([a[0], a[1]]),
            *id,
            "the client's ID is given back"
        );
        assert_eq!(a[2] & 0x80, 0x80);
        let name = String::from_utf8_lossy(&a[29..]).to_string();
        names.push(name);
    }
    let seen: Vec<u16> = servers.iter().flat_map(|&s| net.seen(s)).collect();
    assert_eq!(seen.len(), 5, "{seen:?}");
    for id in ids {
        assert!(
            !seen.contains(&id),
            "a server saw the client's ID {id:#06x}: {seen:?}"
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
        .copied()
        .find(|&s| !net.seen(s).is_empty())
        .unwrap();
    net.kill(pinned);
    relay.wait_log("the dead server down", |l| l.contains("state up -> down"));
    let t0 = Instant::now();
    let mut answered = Vec::new();
    while answered.len() < 3 && t0.elapsed() < Duration::from_secs(10) {
        if let Some(Some(a)) = net.query("127.0.0.1", 8053, &[0x7777]).pop() {
            answered.push(String::from_utf8_lossy(&a[29..]).to_string());
        }
    }
    assert_eq!(
        answered.len(),
        3,
        "queries are answered by the servers still up"
    );
    assert!(
        answered.iter().all(|n| *n != names[0]),
        "{answered:?} after {} died",
        names[0]
    );
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
    server("127.0.0.2", good, "good");
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
