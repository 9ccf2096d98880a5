//! Transparent proxying end to end, inside network namespaces of the test's own (nothing
//! outside them is touched): a client namespace, a router namespace where relayd-run
//! runs, and a server namespace whose loopback holds the backends' addresses, joined by
//! two veth pairs. The nftables rules, policy routes and backends are the test's; the
//! namespaces go, with everything in them, when a test ends however it ends.
//!
//! * Seed example 6, its listen address the router's veth address (`-D`): the client's
//!   port-80 traffic to any address, redirected by nftables, reaches that address
//!   through the example's filters (`forward to nat lookup`), or gets the error page.
//! * `nat lookup` over IPv6, and without a conntrack entry: the relay's address, or
//!   `session NAT lookup failed`.
//! * `forward to destination` with TPROXY (pf's divert-to), falling back to the relay's
//!   address for a connection to the listener itself.
//! * `transparent forward` (TCP and HTTP relays) under `-u nobody`: the backend sees the
//!   client's address, the socket coming from the privileged helper.
//! * On loopback: a reload cannot add a `forward to destination` listener or transparent
//!   forwards after the privileges went.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

mod common;

use common::{compile, run, sh, temp_dir, until, Relay};
use std::path::Path;
use std::process::{Child, Command, Stdio};

/// A backend: `http` answers each request with a 200 whose body says who it is, how
/// many requests it has seen, where the connection came from, and then the request head
/// as it arrived; `tcp` writes who it is and where the connection came from, and
/// closes. A connection that sends nothing is not counted.
const BACKEND: &str = r#"
import socket, sys
name, addr, port, mode = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((addr, port))
s.listen(64)
n = 0
while True:
    c, peer = s.accept()
    c.settimeout(5)
    if mode == "tcp":
        c.sendall(("%s %s" % (name, peer[0])).encode())
        c.close()
        continue
    head = b""
    try:
        while b"\r\n\r\n" not in head:
            got = c.recv(4096)
            if not got:
                break
            head += got
    except Exception:
        pass
    if head:
        n += 1
        body = ("backend %s request %d from %s\n" % (name, n, peer[0])).encode() + head
        c.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
    c.close()
"#;

/// A client: connects to argv[1] port argv[2] (3 s at most), sends argv[3] if given,
/// prints what comes back until the other side closes, or, for a request, until the
/// end of a response with a Content-Length (a relay may keep the connection open).
const CLIENT: &str = r#"
import socket, sys
c = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3)
if len(sys.argv) > 3:
    c.sendall(sys.argv[3].encode())
out = b""
try:
    while True:
        got = c.recv(4096)
        if not got:
            break
        out += got
        head, sep, body = out.partition(b"\r\n\r\n")
        if len(sys.argv) > 3 and sep:
            lengths = [l.split(b":", 1)[1] for l in head.split(b"\r\n")
                       if l.lower().startswith(b"content-length:")]
            if lengths and len(body) >= int(lengths[0]):
                break
except Exception:
    pass
sys.stdout.write(out.decode("latin-1"))
"#;

/// Client, router and server namespaces, deleted (with everything in them) on drop.
///
/// client `10.210.0.1`, `fd00:210::1` ── router `10.210.0.2`, `fd00:210::2` (its end:
/// [`Net::router_if`]); router `10.210.1.2`, `fd00:211::2` ── server `10.210.1.1`,
/// `fd00:211::1`; the server's loopback holds `10.210.2.1`, `10.210.2.2` and
/// `fd00:212::1`, `fd00:212::2`. The client's and the server's default routes go
/// through the router, which routes `10.210.2.0/24` and `fd00:212::/64` to the server.
struct Net {
    client: String,
    router: String,
    server: String,
    router_if: String,
    backends: Vec<Child>,
}

impl Net {
    /// `tag` tells apart the namespaces of the tests of this file, which run at once.
    fn new(tag: char) -> Option<Net> {
        let id = std::process::id() % 100_000;
        let net = Net {
            client: format!("tpc{tag}{id}"),
            router: format!("tpr{tag}{id}"),
            server: format!("tps{tag}{id}"),
            router_if: format!("tprc{tag}{id}"),
            backends: Vec::new(),
        };
        if !sh(&["ip", "netns", "add", &net.client]) {
            return None;
        }
        run(&["ip", "netns", "add", &net.router]);
        run(&["ip", "netns", "add", &net.server]);
        let (c, r, s) = (
            net.client.as_str(),
            net.router.as_str(),
            net.server.as_str(),
        );
        let cr = format!("tpcr{tag}{id}");
        let rs = format!("tprs{tag}{id}");
        let sr = format!("tpsr{tag}{id}");
        let rc = net.router_if.as_str();
        for (a, ans, b, bns) in [(cr.as_str(), c, rc, r), (rs.as_str(), r, sr.as_str(), s)] {
            run(&[
                "ip", "link", "add", a, "netns", ans, "type", "veth", "peer", "name", b, "netns",
                bns,
            ]);
        }
        let addrs: [(&str, &str, &str); 8] = [
            (c, &cr, "10.210.0.1/24"),
            (c, &cr, "fd00:210::1/64"),
            (r, rc, "10.210.0.2/24"),
            (r, rc, "fd00:210::2/64"),
            (r, &rs, "10.210.1.2/24"),
            (r, &rs, "fd00:211::2/64"),
            (s, &sr, "10.210.1.1/24"),
            (s, &sr, "fd00:211::1/64"),
        ];
        for (ns, dev, a) in addrs {
            // No duplicate address detection: the addresses are usable at once.
            let mut args = vec!["ip", "-n", ns, "addr", "add", a, "dev", dev];
            if a.contains(':') {
                args.push("nodad");
            }
            run(&args);
        }
        for a in [
            "10.210.2.1/32",
            "10.210.2.2/32",
            "fd00:212::1/128",
            "fd00:212::2/128",
        ] {
            run(&["ip", "-n", s, "addr", "add", a, "dev", "lo"]);
        }
        for (ns, dev) in [
            (c, cr.as_str()),
            (r, rc),
            (r, rs.as_str()),
            (s, sr.as_str()),
        ] {
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        run(&[
            "ip",
            "-n",
            c,
            "route",
            "add",
            "default",
            "via",
            "10.210.0.2",
        ]);
        run(&[
            "ip",
            "-n",
            c,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:210::2",
        ]);
        run(&[
            "ip",
            "-n",
            s,
            "route",
            "add",
            "default",
            "via",
            "10.210.1.2",
        ]);
        run(&[
            "ip",
            "-n",
            s,
            "-6",
            "route",
            "add",
            "default",
            "via",
            "fd00:211::2",
        ]);
        run(&[
            "ip",
            "-n",
            r,
            "route",
            "add",
            "10.210.2.0/24",
            "via",
            "10.210.1.1",
        ]);
        run(&[
            "ip",
            "-n",
            r,
            "-6",
            "route",
            "add",
            "fd00:212::/64",
            "via",
            "fd00:211::1",
        ]);
        Some(net)
    }

    /// A backend in the server namespace ([`BACKEND`]; `mode` is `http` or `tcp`).
    fn backend(&mut self, name: &str, addr: &str, port: u16, mode: &str) {
        // `ip netns exec` execs python in place: the child's pid is the backend's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.server, "python3", "-c", BACKEND])
            .args([name, addr, &port.to_string(), mode])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.backends.push(child);
        until("a backend", 10, || {
            let probe = format!(
                "import socket; socket.create_connection(('{addr}', {port}), timeout=1).close()"
            );
            sh(&["ip", "netns", "exec", &self.server, "python3", "-c", &probe]).then_some(())
        });
    }

    /// `nft -f -` with `rules` in the router namespace.
    fn nft(&self, rules: &str) {
        use std::io::Write;
        let mut child = Command::new("ip")
            .args(["netns", "exec", &self.router, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(rules.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "nft: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// In the router namespace: packets marked 1 are delivered locally, whatever their
    /// destination (TPROXY's, and replies to sockets bound to foreign addresses).
    fn local_delivery(&self) {
        let r = self.router.as_str();
        run(&["ip", "-n", r, "rule", "add", "fwmark", "1", "lookup", "100"]);
        run(&[
            "ip",
            "-n",
            r,
            "route",
            "add",
            "local",
            "0.0.0.0/0",
            "dev",
            "lo",
            "table",
            "100",
        ]);
        run(&[
            "ip", "-n", r, "-6", "rule", "add", "fwmark", "1", "lookup", "100",
        ]);
        run(&[
            "ip", "-n", r, "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "100",
        ]);
    }

    /// [`CLIENT`] from namespace `ns`: what came back, `None` if it could not connect.
    fn connect_from(&self, ns: &str, addr: &str, port: u16, send: Option<&str>) -> Option<String> {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, "python3", "-c", CLIENT])
            .args([addr, &port.to_string()]);
        if let Some(s) = send {
            cmd.arg(s);
        }
        let out = cmd.output().unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// From the client namespace.
    fn connect(&self, addr: &str, port: u16, send: Option<&str>) -> Option<String> {
        self.connect_from(&self.client, addr, port, send)
    }

    /// An HTTP/1.1 GET of `path` from the client namespace to `addr`:`port` with
    /// `headers` and `Connection: close`: the whole response (empty when the connection
    /// closed without one).
    fn get(&self, addr: &str, port: u16, path: &str, headers: &[&str]) -> Option<String> {
        let mut req = format!("GET {path} HTTP/1.1\r\nConnection: close\r\n");
        for h in headers {
            req.push_str(h);
            req.push_str("\r\n");
        }
        req.push_str("\r\n");
        self.connect(addr, port, Some(&req))
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for b in &mut self.backends {
            let _ = b.kill();
            let _ = b.wait();
        }
        for ns in [&self.client, &self.router, &self.server] {
            let _ = sh(&["ip", "netns", "del", ns]);
        }
    }
}

fn need_tools() {
    for tool in ["nft", "python3"] {
        assert!(
            sh(&[tool, "--version"]),
            "{tool} is missing: scripts/test installs what these tests need"
        );
    }
}

/// `/proc/PID/status` field `key`.
fn status(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// The child of `pid` whose command line starts with `arg0`.
fn child_named(pid: u32, arg0: &str) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    for t in tasks.flatten() {
        let children = std::fs::read_to_string(t.path().join("children")).unwrap_or_default();
        for c in children
            .split_whitespace()
            .filter_map(|c| c.parse::<u32>().ok())
        {
            let cmdline = std::fs::read(format!("/proc/{c}/cmdline")).unwrap_or_default();
            if cmdline.starts_with(arg0.as_bytes()) {
                return Some(c);
            }
        }
    }
    None
}

/// relayd-run in the router namespace.
fn start(net: &Net, plan: &Path, extra: &[&str]) -> Relay {
    Relay::start_via(&["ip", "netns", "exec", &net.router], plan, extra)
}

fn compile_conf(dir: &Path, conf: &str, defines: &[String]) -> std::path::PathBuf {
    let path = dir.join("relayd.conf");
    std::fs::write(&path, conf).unwrap();
    let plan = dir.join("plan.bin");
    compile(&path, defines, &plan);
    plan
}

/// Seed example 6 as the tutorial has it, but for its listen address: the client's
/// port-80 connections to two addresses of the server namespace are redirected to the
/// relay by nftables; the relay finds each one's original destination, applies the
/// example's filters, and forwards what passes there.
#[test]
fn seed_example_6_proxies_redirected_traffic_through_the_filters() {
    need_tools();
    let Some(mut net) = Net::new('a') else {
        eprintln!("skipped: cannot create network namespaces here");
        return;
    };
    let dir = temp_dir("example6");
    let seed =
        std::fs::read_to_string(common::workspace().join("corpus/seed/example6.conf")).unwrap();
    let plan = compile_conf(&dir, &seed, &["relayd_addr=10.210.0.2".into()]);
    net.backend("a", "10.210.2.1", 80, "http");
    net.backend("b", "10.210.2.2", 80, "http");
    // pf's `rdr-to` for the relay: the client's port-80 traffic, whatever its
    // destination, goes to the relay's port on the interface it came in on.
    net.nft(&format!(
        "table inet t {{ chain p {{ type nat hook prerouting priority dstnat; policy accept; \
         iifname \"{}\" tcp dport 80 redirect to :8080; }}; }}\n",
        net.router_if
    ));
    let relay = start(&net, &plan, &["-v"]);
    let ua = "User-Agent: curl/8.0";
    let first = until("the relay", 10, || {
        net.get(
            "10.210.2.1",
            80,
            "/index.html",
            &["Host: www.example.com", ua],
        )
        .filter(|r| r.starts_with("HTTP/1.1 200"))
    });
    // The original destination, through the filters: changed headers, the relay's own
    // address as the source (the forward is not transparent).
    assert!(
        first.contains("backend a request 1 from 10.210.1.2\n"),
        "{first}"
    );
    assert!(first.contains("GET /index.html HTTP/1.1\r\n"), "{first}");
    assert!(
        first.contains("\r\nUser-Agent: Arcana imperii\r\n"),
        "{first}"
    );
    assert!(!first.contains("curl/8.0"), "{first}");
    let log = relay.wait_log("relayd's natlook line", |l| {
        l.contains(" -> 10.210.2.1:80") && l.contains("natlook: in 10.210.0.1:")
    });
    assert!(!log.contains("looping"), "{log}");
    // Another destination, another backend.
    let b = net
        .get("10.210.2.2", 80, "/", &["Host: www.example.org", ua])
        .unwrap();
    assert!(b.contains("backend b request 1 from 10.210.1.2\n"), "{b}");

    // Blocked by the example's filters: the error page with the rule's label, and the
    // backend never sees the request.
    let blocked = net
        .get("10.210.2.1", 80, "/watch", &["Host: www.youtube.com", ua])
        .unwrap();
    assert!(
        blocked.starts_with("HTTP/1.0 403 Forbidden\r\n"),
        "{blocked}"
    );
    assert!(blocked.contains("BAD Host request"), "{blocked}");
    let blocked = net
        .get(
            "10.210.2.1",
            80,
            "/",
            &[
                "Host: www.example.com",
                "User-Agent: Mozilla/4.0 (compatible)",
            ],
        )
        .unwrap();
    assert!(
        blocked.starts_with("HTTP/1.0 403 Forbidden\r\n"),
        "{blocked}"
    );
    assert!(blocked.contains("BAD user agent"), "{blocked}");
    let next = net
        .get("10.210.2.1", 80, "/", &["Host: www.example.com", ua])
        .unwrap();
    assert!(next.contains("backend a request 2 from"), "{next}");

    // A connection to the relay itself: its original destination is the listener, a
    // loop relayd aborts.
    let looped = net.connect("10.210.0.2", 8080, Some("GET / HTTP/1.0\r\n\r\n"));
    assert_eq!(looped.as_deref(), Some(""));
    relay.wait_log("relay_session's loop line", |l| l.contains(": looping"));

    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `nat lookup` over IPv6; a lookup that finds nothing (no conntrack entry, in a
/// namespace without nat rules) falls back to the relay's address, or closes the
/// session when the relay has none.
#[test]
fn nat_lookup_over_ipv6_and_without_a_translation() {
    need_tools();
    let Some(mut net) = Net::new('b') else {
        eprintln!("skipped: cannot create network namespaces here");
        return;
    };
    let dir = temp_dir("natlook");
    net.backend("v6", "fd00:212::1", 7000, "tcp");
    net.backend("fallback", "10.210.2.2", 7000, "tcp");
    net.nft(&format!(
        "table inet t {{ chain p {{ type nat hook prerouting priority dstnat; policy accept; \
         iifname \"{}\" ip6 daddr fd00:212::/64 tcp dport 7000 redirect to :8080; }}; }}\n",
        net.router_if
    ));
    let plan = compile_conf(
        &dir,
        "log connection\n\
         relay \"v6\" {\n listen on fd00:210::2 port 8080\n forward to nat lookup\n}\n",
        &[],
    );
    let relay = start(&net, &plan, &["-v"]);
    let got = until("the IPv6 relay", 10, || {
        net.connect("fd00:212::1", 7000, None)
            .filter(|g| !g.is_empty())
    });
    assert_eq!(got, "v6 fd00:211::2");
    relay.wait_log("the close line", |l| {
        l.contains("relay v6, session 1 (")
            && l.contains(", 0, fd00:210::1 -> fd00:212::1:7000, done")
    });
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");

    // The server namespace has no nat rules, so its connections have no conntrack
    // entry: a relay there finds no original destination.
    let plan = compile_conf(
        &dir,
        "log connection\n\
         relay \"fallback\" {\n listen on 127.0.0.1 port 8080\n forward to nat lookup\n \
         forward to 10.210.2.2 port 7000\n}\n\
         relay \"nothing\" {\n listen on 127.0.0.1 port 8081\n forward to nat lookup\n}\n",
        &[],
    );
    let relay = Relay::start_via(&["ip", "netns", "exec", &net.server], &plan, &["-v"]);
    let got = until("the fallback relay", 10, || {
        net.connect_from(&net.server, "127.0.0.1", 8080, None)
            .filter(|g| !g.is_empty())
    });
    assert!(got.starts_with("fallback "), "{got}");
    assert_eq!(
        net.connect_from(&net.server, "127.0.0.1", 8081, None)
            .as_deref(),
        Some("")
    );
    let log = relay.wait_log("the failed lookup", |l| {
        l.contains("session NAT lookup failed")
    });
    let line = log
        .lines()
        .find(|l| l.contains("session NAT lookup failed"))
        .unwrap();
    assert!(
        line.starts_with("relay nothing, session ")
            && line.contains(", 0, 127.0.0.1 -> :0, session NAT lookup failed: "),
        "{line}"
    );
    assert!(
        log.contains("natlook: getsockopt: No such file or directory"),
        "{log}"
    );
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `forward to destination` with TPROXY: connections the client makes to a server
/// address are diverted to the relay, whose socket's own address is that destination;
/// a connection to the listener itself goes to the relay's other target. Run as
/// nobody: the listener got IP_TRANSPARENT before the privileges went.
#[test]
fn forward_to_destination_follows_tproxy() {
    need_tools();
    let Some(mut net) = Net::new('c') else {
        eprintln!("skipped: cannot create network namespaces here");
        return;
    };
    let dir = temp_dir("divert");
    net.backend("a", "10.210.2.1", 7000, "tcp");
    net.backend("b", "10.210.2.2", 7000, "tcp");
    net.backend("a6", "fd00:212::1", 7000, "tcp");
    net.local_delivery();
    net.nft(&format!(
        "table inet t {{ chain p {{ type filter hook prerouting priority mangle; policy accept; \
         iifname \"{rc}\" ip daddr 10.210.2.1 tcp dport 7000 tproxy ip to 10.210.0.2:8081 meta mark set 1 accept; \
         iifname \"{rc}\" ip6 daddr fd00:212::1 tcp dport 7000 tproxy ip6 to [fd00:210::2]:8081 meta mark set 1 accept; }}; }}\n",
        rc = net.router_if
    ));
    let plan = compile_conf(
        &dir,
        "log connection\n\
         relay \"divert\" {\n listen on 10.210.0.2 port 8081\n forward to destination\n \
         forward to 10.210.2.2 port 7000\n}\n\
         relay \"divert6\" {\n listen on fd00:210::2 port 8081\n forward to destination\n}\n",
        &[],
    );
    let relay = start(&net, &plan, &["-u", "nobody"]);
    let got = until("the diverted connection", 10, || {
        net.connect("10.210.2.1", 7000, None)
            .filter(|g| !g.is_empty())
    });
    assert_eq!(got, "a 10.210.1.2");
    assert_eq!(
        net.connect("fd00:212::1", 7000, None).as_deref(),
        Some("a6 fd00:211::2")
    );
    // The listener itself is no destination: the relay's address takes over.
    assert_eq!(
        net.connect("10.210.0.2", 8081, None).as_deref(),
        Some("b 10.210.1.2")
    );
    // Without an alternative, a connection to the listener finds no backend.
    assert_eq!(net.connect("fd00:210::2", 8081, None).as_deref(), Some(""));
    let log = relay.wait_log("the close lines", |l| {
        l.contains("relay divert6, session") && l.contains("session failed")
    });
    for line in [
        ", 0, 10.210.0.1 -> 10.210.2.1:7000, done",
        ", 0, fd00:210::1 -> fd00:212::1:7000, done",
        ", 0, 10.210.0.1 -> 10.210.2.2:7000, done",
        ", 0, fd00:210::1 -> :0, session failed",
    ] {
        assert!(log.contains(line), "{line}: {log}");
    }
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `transparent forward` under `-u nobody`: the relay process has no capability; the
/// privileged helper makes each backend socket, bound to the client's address, and the
/// backends see the client, for a TCP relay and an HTTP relay (which connects late).
#[test]
fn transparent_forward_connects_from_the_clients_address() {
    need_tools();
    let Some(mut net) = Net::new('d') else {
        eprintln!("skipped: cannot create network namespaces here");
        return;
    };
    let dir = temp_dir("transparent");
    net.backend("tcp", "10.210.2.1", 7001, "tcp");
    net.backend("web", "10.210.2.1", 80, "http");
    net.backend("tcp6", "fd00:212::1", 7001, "tcp");
    // Replies to the client's address reach the relay's socket, not the client.
    net.local_delivery();
    net.nft(
        "table inet t { chain p { type filter hook prerouting priority mangle; policy accept; \
         meta l4proto tcp socket transparent 1 meta mark set 1 accept; }; }\n",
    );
    let plan = compile_conf(
        &dir,
        "log connection\n\
         http protocol \"web\" {\n return error\n block request quick path \"/blocked*\"\n}\n\
         relay \"trans\" {\n listen on 10.210.0.2 port 8082\n \
         transparent forward to 10.210.2.1 port 7001\n}\n\
         relay \"trans6\" {\n listen on fd00:210::2 port 8082\n \
         transparent forward to fd00:212::1 port 7001\n}\n\
         relay \"web\" {\n listen on 10.210.0.2 port 8083\n protocol \"web\"\n \
         transparent forward to 10.210.2.1 port 80\n}\n",
        &[],
    );
    let relay = start(&net, &plan, &["-u", "nobody"]);
    let got = until("the transparent relay", 10, || {
        net.connect("10.210.0.2", 8082, None)
            .filter(|g| !g.is_empty())
    });
    assert_eq!(got, "tcp 10.210.0.1");
    assert_eq!(
        net.connect("fd00:210::2", 8082, None).as_deref(),
        Some("tcp6 fd00:210::1")
    );
    let page = net
        .get("10.210.0.2", 8083, "/", &["Host: example.com"])
        .unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    assert!(
        page.contains("backend web request 1 from 10.210.0.1\n"),
        "{page}"
    );
    let blocked = net
        .get("10.210.0.2", 8083, "/blocked", &["Host: example.com"])
        .unwrap();
    assert!(
        blocked.starts_with("HTTP/1.0 403 Forbidden\r\n"),
        "{blocked}"
    );

    // The relay process holds no capability; its bindany helper CAP_NET_ADMIN alone.
    let pid = relay.child.id();
    assert_eq!(status(pid, "CapEff"), "0000000000000000");
    let helper = child_named(pid, "relayd-run: helper").expect("the bindany helper");
    assert_eq!(status(helper, "CapEff"), "0000000000001000");
    assert!(status(pid, "Uid").starts_with("65534\t"));
    assert!(status(helper, "Uid").starts_with("65534\t"));

    let log = relay.wait_log("the close lines", |l| {
        l.contains("relay web, session") && l.contains("Forbidden")
    });
    for line in [
        ", 0, 10.210.0.1 -> 10.210.2.1:7001, done",
        ", 0, fd00:210::1 -> fd00:212::1:7001, done",
        ", 0, 10.210.0.1 -> 10.210.2.1:80, done",
    ] {
        assert!(log.contains(line), "{line}: {log}");
    }
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// What a reload cannot add after the privileges went: a listener for `forward to
/// destination` (IP_TRANSPARENT needs CAP_NET_ADMIN), and transparent forwards when
/// relayd-run started without the helper's bindany channels. Both are refused with the
/// reason, and the running plan stays. On loopback: nothing is forwarded.
#[test]
fn a_reload_cannot_add_what_needs_privileges() {
    let dir = temp_dir("transparent-reload");
    let port = common::free_port();
    let write = |name: &str, conf: String| {
        let path = dir.join(format!("{name}.conf"));
        std::fs::write(&path, conf).unwrap();
        let plan = dir.join(format!("{name}.bin"));
        compile(&path, &[], &plan);
        plan
    };
    let plain = write(
        "plain",
        format!(
            "relay \"r\" {{\n listen on 127.0.0.1 port {port}\n forward to 127.0.0.1 port 9\n}}\n"
        ),
    );
    let divert = write(
        "divert",
        format!(
            "relay \"r\" {{\n listen on 127.0.0.1 port {port}\n forward to 127.0.0.1 port 9\n}}\n\
             relay \"d\" {{\n listen on 127.0.0.1 port {}\n forward to destination\n}}\n",
            common::free_port()
        ),
    );
    let transparent = write(
        "transparent",
        format!(
            "relay \"r\" {{\n listen on 127.0.0.1 port {port}\n \
             transparent forward to 127.0.0.1 port 9\n}}\n"
        ),
    );
    let sock = dir.join("relayd.sock");
    let relay = Relay::start(&plain, &["-u", "nobody", "-s", sock.to_str().unwrap()]);
    common::connect_when_ready(port);
    let reload = |plan: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_relayctl"))
            .arg("-s")
            .arg(&sock)
            .args(["reload", plan.to_str().unwrap()])
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "command failed\n",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let why = reload(&divert);
    assert!(
        why.contains("relay d: cannot listen on 127.0.0.1:")
            && why.contains("can only be added by restarting relayd-run"),
        "{why}"
    );
    let why = reload(&transparent);
    assert!(
        why.contains("relay r forwards transparently")
            && why.contains("restart relayd-run to serve it"),
        "{why}"
    );
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        log.matches("the running plan is unchanged").count(),
        2,
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
