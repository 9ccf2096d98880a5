//! Health checks end to end: the real `relayd-run -d` with real backends of ours, each
//! check kind judged by the exact `host NAME, check KIND[ use tls] (Nms,ERROR[,CODE]),
//! state OLD -> NEW, availability P%` line relayd logs in the foreground, and by where
//! the relay sends sessions afterwards.
//!
//! * `check tls`: a rustls server with a certificate made here passes; a server that
//!   does not speak TLS and one that never answers fail, each with its `tls …` text;
//! * `check https … code` and `… digest`, `check send … expect … tls`;
//! * `check icmp` of 127.0.0.1 and ::1; in a network namespace of the test's own, an
//!   address routed to its loopback that nobody answers times out;
//! * `check script`: relayd's exit-status convention, the kill at the timeout, a
//!   program that cannot run;
//! * a check still running at the next interval is cancelled, and its host gets no
//!   result.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{compile, connect_when_ready, free_port, temp_dir, Relay};

/// relayd's line for `host` with its duration replaced by `N`, and the duration.
fn check_line(log: &str, host: &str) -> Option<(String, u64)> {
    let prefix = format!("host {host}, check ");
    let line = log.lines().find(|l| l.starts_with(&prefix))?;
    let open = line.find(" (")?;
    let end = open + line[open..].find("ms,")?;
    let ms = line[open + 2..end].parse().ok()?;
    Some((format!("{}(Nms,{}", &line[..=open], &line[end + 3..]), ms))
}

/// Waits (bounded) for the first check line of each host, then returns them.
fn wait_lines(relay: &Relay, hosts: &[&str]) -> Vec<(String, u64)> {
    let log = relay.wait_log("a check line for every host", |l| {
        hosts.iter().all(|h| check_line(l, h).is_some())
    });
    hosts.iter().map(|h| check_line(&log, h).unwrap()).collect()
}

fn write_conf(dir: &Path, text: &str) -> PathBuf {
    let conf = dir.join("h.conf");
    std::fs::write(&conf, text).unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    plan
}

/// A backend on `ip:port` (port 0: any) that writes `reply` and closes.
fn replying_backend(ip: &str, port: u16, reply: &'static str) -> u16 {
    let l = TcpListener::bind((ip, port)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(reply.as_bytes());
            let _ = s.shutdown(Shutdown::Write);
        }
    });
    port
}

/// A backend that accepts and never says a word; it notes when each connection came
/// and when its peer closed it.
type Seen = Arc<Mutex<Vec<(Instant, Option<Instant>)>>>;

fn silent_backend(ip: &str, port: u16) -> (u16, Seen) {
    let l = TcpListener::bind((ip, port)).unwrap();
    let port = l.local_addr().unwrap().port();
    let seen: Seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = Arc::clone(&seen);
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let seen = Arc::clone(&s2);
            let n = {
                let mut v = seen.lock().unwrap();
                v.push((Instant::now(), None));
                v.len() - 1
            };
            std::thread::spawn(move || {
                let mut s = s;
                s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
                let mut buf = [0u8; 1024];
                while let Ok(k) = s.read(&mut buf) {
                    if k == 0 {
                        break;
                    }
                }
                seen.lock().unwrap()[n].1 = Some(Instant::now());
            });
        }
    });
    (port, seen)
}

/// A TLS server (rustls, a self-signed certificate made now) on `ip:port` speaking
/// just enough HTTP: `/` answers 200 with the body `hello`, anything else 404; and, for
/// send/expect, `+PONG` to a `PING`.
fn tls_backend(ip: &str, port: u16) -> u16 {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(ck.key_pair.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = Arc::new(
        rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![ck.cert.der().clone()], key)
            .unwrap(),
    );
    let l = TcpListener::bind((ip, port)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            let config = Arc::clone(&config);
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let conn = rustls::ServerConnection::new(config).unwrap();
                let mut tls = rustls::StreamOwned::new(conn, s);
                let mut head = Vec::new();
                let mut chunk = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n")
                    && !head.starts_with(b"PING")
                    && head.len() < 65536
                {
                    match tls.read(&mut chunk) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&chunk[..n]),
                    }
                }
                let reply: &[u8] = if head.starts_with(b"PING") {
                    b"+PONG\r\n"
                } else if head.starts_with(b"GET / ") || head.starts_with(b"HEAD / ") {
                    b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nhello"
                } else {
                    b"HTTP/1.0 404 Not Found\r\n\r\nnope"
                };
                let _ = tls.write_all(reply);
                tls.conn.send_close_notify();
                let _ = tls.flush();
            });
        }
    });
    port
}

/// `curl -k https://127.0.0.1:PORT/` through a relay: the body, or `None` if curl failed.
fn curl_https(port: u16) -> Option<String> {
    connect_when_ready(port);
    let out = Command::new("curl")
        .args(["-sS", "-k", "--max-time", "5"])
        .arg(format!("https://127.0.0.1:{port}/"))
        .output()
        .expect("curl (scripts/test installs it)");
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// What a relay's backend says to a client that says nothing.
fn fetch(port: u16) -> String {
    let mut c = connect_when_ready(port);
    let mut got = String::new();
    let _ = c.read_to_string(&mut got);
    got
}

#[test]
fn tls_checks_need_a_real_handshake() {
    let dir = temp_dir("tlscheck");
    let p = tls_backend("127.0.0.1", 0);
    replying_backend("127.0.0.2", p, "SSH-2.0-OpenSSH_9.6\r\n");
    let (_, _) = silent_backend("127.0.0.3", p);
    let port = free_port();
    let plan = write_conf(
        &dir,
        &format!(
            "interval 1\ntimeout 800\nprefork 1\ntable <tlsweb> {{ 127.0.0.1, 127.0.0.2, 127.0.0.3 }}\n\
             relay \"tls\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <tlsweb> port {p} mode roundrobin check tls\n}}\n"
        ),
    );
    let relay = Relay::start(&plan, &[]);
    let lines = wait_lines(&relay, &["127.0.0.1", "127.0.0.2", "127.0.0.3"]);
    assert_eq!(
        lines[0].0,
        "host 127.0.0.1, check tcp use tls (Nms,tls connect ok), state unknown -> up, availability 100.00%"
    );
    assert_eq!(
        lines[1].0,
        "host 127.0.0.2, check tcp use tls (Nms,tls connect failed), state unknown -> down, availability 0.00%"
    );
    assert_eq!(
        lines[2].0,
        "host 127.0.0.3, check tcp use tls (Nms,tls connect timeout), state unknown -> down, availability 0.00%"
    );
    assert!(lines[2].1 >= 700, "the timeout came early: {:?}", lines[2]);
    // Only the TLS server gets sessions: every client completes its handshake with it.
    for _ in 0..4 {
        assert_eq!(
            curl_https(port).as_deref(),
            Some("hello"),
            "log:\n{}",
            relay.log()
        );
    }
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn https_and_send_expect_checks_run_over_tls() {
    let dir = temp_dir("httpscheck");
    let p = tls_backend("127.0.0.1", 0);
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        tls_backend(ip, p);
    }
    let ports: Vec<u16> = (0..4).map(|_| free_port()).collect();
    let relay = |name: &str, port: u16, table: &str, check: &str| {
        format!(
            "relay \"{name}\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <{table}> port {p} {check}\n}}\n"
        )
    };
    let conf = format!(
        "interval 1\ntimeout 800\nprefork 1\n\
         table <ok> {{ 127.0.0.1 }}\ntable <miss> {{ 127.0.0.2 }}\n\
         table <dig> {{ 127.0.0.3 }}\ntable <se> {{ 127.0.0.4 }}\n{}{}{}{}",
        relay("ok", ports[0], "ok", "check https \"/\" code 200"),
        relay(
            "miss",
            ports[1],
            "miss",
            "check https \"/missing\" code 200"
        ),
        relay(
            "dig",
            ports[2],
            "dig",
            // SHA-1 of `hello`, the body the server sends for `/`.
            "check https \"/\" digest \"aaf4c61ddcc5e8a2dabede0f3b482cd9aea9434d\""
        ),
        relay(
            "se",
            ports[3],
            "se",
            // relayd sends the string as written (no escapes), hence no HTTP here.
            "check send \"PING\" expect \"+PONG*\" tls"
        ),
    );
    let plan = write_conf(&dir, &conf);
    let relayd = Relay::start(&plan, &[]);
    let lines = wait_lines(
        &relayd,
        &["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"],
    );
    let got: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        got,
        [
            "host 127.0.0.1, check http code use tls (Nms,http code ok), state unknown -> up, availability 100.00%",
            "host 127.0.0.2, check http code use tls (Nms,http code mismatch,404), state unknown -> down, availability 0.00%",
            "host 127.0.0.3, check http digest use tls (Nms,http digest ok), state unknown -> up, availability 100.00%",
            "host 127.0.0.4, check send expect use tls (Nms,send/expect ok), state unknown -> up, availability 100.00%",
        ]
    );
    assert_eq!(curl_https(ports[0]).as_deref(), Some("hello"));
    // The only host of `miss` is down: the relay has nowhere to send the session.
    assert_eq!(curl_https(ports[1]), None, "log:\n{}", relayd.log());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn icmp_checks_ping_loopback_in_both_families() {
    let dir = temp_dir("icmpcheck");
    let p = replying_backend("127.0.0.1", 0, "a");
    // ::1 only where the loopback has IPv6.
    let v6 = TcpListener::bind(("::1", p)).map(drop).is_ok() && {
        replying_backend("::1", p, "b");
        true
    };
    let port = free_port();
    let hosts = if v6 { "127.0.0.1, ::1" } else { "127.0.0.1" };
    let plan = write_conf(
        &dir,
        &format!(
            "interval 1\ntimeout 800\nprefork 1\ntable <ping> {{ {hosts} }}\n\
             relay \"ping\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <ping> port {p} mode roundrobin check icmp\n}}\n"
        ),
    );
    let relay = Relay::start(&plan, &[]);
    let want: &[&str] = if v6 {
        &["127.0.0.1", "::1"]
    } else {
        &["127.0.0.1"]
    };
    for (host, (line, _)) in want.iter().zip(wait_lines(&relay, want)) {
        assert_eq!(
            line,
            format!(
                "host {host}, check icmp (Nms,icmp ok), state unknown -> up, availability 100.00%"
            )
        );
    }
    let seen: std::collections::BTreeSet<String> = (0..4).map(|_| fetch(port)).collect();
    let expect: std::collections::BTreeSet<String> = if v6 {
        ["a", "b"].map(String::from).into()
    } else {
        ["a"].map(String::from).into()
    };
    assert_eq!(seen, expect, "log:\n{}", relay.log());
    let _ = std::fs::remove_dir_all(&dir);
}

/// A network namespace of this test, deleted when dropped.
struct Netns(String);

impl Netns {
    /// `None` where namespaces cannot be made (no privileges, no iproute2).
    fn new(tag: &str) -> Option<Netns> {
        let name = format!("relaydrun-{}-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Netns(name))
    }

    fn ip(&self, args: &[&str]) {
        let st = Command::new("ip")
            .args(["-n", &self.0])
            .args(args)
            .status()
            .unwrap();
        assert!(st.success(), "ip -n {} {args:?}", self.0);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[test]
fn icmp_checks_time_out_on_an_address_nobody_answers() {
    // The silent address must not leave the machine, and every address of 127/8 answers
    // (as does every address of any prefix put on lo), so it lives in a namespace of ours:
    // 10.9.9.0/24 routed into that namespace's loopback, where none of it is local.
    // Requests to 10.9.9.2 loop back, are not for this host, and are dropped.
    let Some(ns) = Netns::new("icmp") else {
        eprintln!("skipped: cannot create a network namespace (needs root and iproute2)");
        return;
    };
    ns.ip(&["link", "set", "lo", "up"]);
    ns.ip(&[
        "route",
        "add",
        "10.9.9.0/24",
        "dev",
        "lo",
        "src",
        "127.0.0.1",
    ]);
    // Ping sockets are allowed in this namespace only, so the datagram-socket path runs
    // here while the other ICMP test may use raw sockets.
    let st = Command::new("ip")
        .args(["netns", "exec", &ns.0, "sh", "-c"])
        .arg("echo '0 2147483647' > /proc/sys/net/ipv4/ping_group_range")
        .status()
        .unwrap();
    assert!(st.success());
    let dir = temp_dir("icmpdown");
    let plan = write_conf(
        &dir,
        &format!(
            "interval 1\ntimeout 400\nprefork 1\ntable <ping> {{ 127.0.0.1, 10.9.9.2 }}\n\
             relay \"ping\" {{\n\tlisten on 127.0.0.1 port {}\n\tforward to <ping> port {} check icmp\n}}\n",
            free_port(),
            free_port()
        ),
    );
    let relay = Relay::start_via(&["ip", "netns", "exec", &ns.0], &plan, &[]);
    let lines = wait_lines(&relay, &["127.0.0.1", "10.9.9.2"]);
    assert_eq!(
        lines[0].0,
        "host 127.0.0.1, check icmp (Nms,icmp ok), state unknown -> up, availability 100.00%"
    );
    assert_eq!(
        lines[1].0,
        "host 10.9.9.2, check icmp (Nms,icmp read timeout), state unknown -> down, availability 0.00%"
    );
    assert!(
        (350..3000).contains(&lines[1].1),
        "the global timeout bounds it: {:?}",
        lines[1]
    );
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    drop(ns);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn script_checks_follow_relayds_exit_convention() {
    let dir = temp_dir("scriptcheck");
    let d = dir.display();
    let script = dir.join("check.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$1 $(pwd)\" >> {d}/calls\n\
             case \"$1\" in\n\
             127.0.0.1) exit 1 ;;\n\
             127.0.0.2) exit 0 ;;\n\
             127.0.0.3) sleep 3; touch {d}/survived; exit 1 ;;\n\
             esac\nexit 2\n"
        ),
    )
    .unwrap();
    Command::new("chmod")
        .args(["755"])
        .arg(&script)
        .status()
        .unwrap();
    let p = replying_backend("127.0.0.1", 0, "a");
    replying_backend("127.0.0.2", p, "b");
    replying_backend("127.0.0.3", p, "c");
    let (port, port2) = (free_port(), free_port());
    let plan = write_conf(
        &dir,
        &format!(
            "interval 1\ntimeout 400\nprefork 1\n\
             table <s> {{ 127.0.0.1, 127.0.0.2, 127.0.0.3 }}\ntable <x> {{ 127.0.0.4 }}\n\
             relay \"s\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <s> port {p} mode roundrobin check script \"{}\"\n}}\n\
             relay \"x\" {{\n\tlisten on 127.0.0.1 port {port2}\n\tforward to <x> port {p} check script \"{d}/missing\"\n}}\n",
            script.display()
        ),
    );
    let relay = Relay::start(&plan, &[]);
    let lines = wait_lines(
        &relay,
        &["127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"],
    );
    let t_killed = Instant::now();
    let got: Vec<&str> = lines.iter().map(|(l, _)| l.as_str()).collect();
    assert_eq!(
        got,
        [
            "host 127.0.0.1, check script (Nms,script ok), state unknown -> up, availability 100.00%",
            "host 127.0.0.2, check script (Nms,script failed), state unknown -> down, availability 0.00%",
            "host 127.0.0.3, check script (Nms,script failed), state unknown -> down, availability 0.00%",
            "host 127.0.0.4, check script (Nms,script failed), state unknown -> down, availability 0.00%",
        ]
    );
    assert!(
        lines[2].1 >= 350,
        "killed before the timeout: {:?}",
        lines[2]
    );
    // The host's text is the argument, and the script runs in `/`.
    let calls = std::fs::read_to_string(dir.join("calls")).unwrap();
    assert!(calls.lines().any(|l| l == "127.0.0.1 /"), "{calls}");
    assert!(calls.lines().any(|l| l == "127.0.0.3 /"), "{calls}");
    // Only the host whose script exited 1 gets sessions.
    for _ in 0..4 {
        assert_eq!(fetch(port), "a", "log:\n{}", relay.log());
    }
    // The slow script was killed, not left to finish.
    while t_killed.elapsed() < Duration::from_millis(3500) {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!dir.join("survived").exists(), "the slow script ran on");
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Gives every table of a compiled plan a check timeout the compiler would refuse
/// (relayd: `table timeout exceeds interval`), which is how a check comes to outlive
/// its interval.
fn set_table_timeouts(plan: &Path, ms: u32) {
    use relaydc_spec::plan::{container, decode, encode};
    let bytes = std::fs::read(plan).unwrap();
    let opened = container::open(&bytes).unwrap();
    let mut p = decode(opened.body).unwrap();
    for t in &mut p.tables {
        t.timeout_ms = ms;
    }
    let body = encode(&p).unwrap();
    let file = container::write(
        &opened.header.compiler_version,
        opened.header.flags,
        opened.header.source_digest,
        &body,
        opened.keys,
    );
    std::fs::write(plan, file).unwrap();
}

#[test]
fn a_check_that_outlives_its_interval_is_cancelled() {
    let dir = temp_dir("intervaltimeout");
    let (p, seen) = silent_backend("127.0.0.1", 0);
    replying_backend("127.0.0.2", p, "HTTP/1.0 200 OK\r\n\r\n");
    let port = free_port();
    let plan = write_conf(
        &dir,
        &format!(
            "interval 1\ntimeout 500\nprefork 1\ntable <web> {{ 127.0.0.1, 127.0.0.2 }}\n\
             relay \"web\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <web> port {p} mode roundrobin check http \"/\" code 200\n}}\n"
        ),
    );
    set_table_timeouts(&plan, 5000);
    let relay = Relay::start(&plan, &[]);
    let lines = wait_lines(&relay, &["127.0.0.2"]);
    assert_eq!(
        lines[0].0,
        "host 127.0.0.2, check http code (Nms,http code ok), state unknown -> up, availability 100.00%"
    );
    // Every tick opens a new check of the silent host and closes the one before, long
    // before its 5 s would have run out.
    let t0 = Instant::now();
    while seen.lock().unwrap().len() < 3 && t0.elapsed() < Duration::from_secs(8) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let v = seen.lock().unwrap().clone();
    assert!(v.len() >= 3, "{} checks in 8 s", v.len());
    for (opened, closed) in &v[..2] {
        let lived = closed
            .expect("closed by the next tick")
            .duration_since(*opened);
        assert!(
            lived > Duration::from_millis(500) && lived < Duration::from_millis(2500),
            "lived {lived:?}"
        );
    }
    // No result: no line, and the host stays unknown, so it gets no session.
    let log = relay.log();
    assert!(!log.contains("host 127.0.0.1, check"), "{log}");
    for _ in 0..4 {
        assert_eq!(fetch(port), "HTTP/1.0 200 OK\r\n\r\n", "{}", relay.log());
    }
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
