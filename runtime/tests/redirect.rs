//! Redirections as nftables rules, end to end inside network namespaces of the test's
//! own (nothing outside them is touched): a client namespace reaches a virtual address
//! over a veth pair; the router namespace holds relayd-run's `inet relayd` table and
//! three backends on its loopback.
//!
//! * The ruleset for given host states, applied there with `nft`, and a real TCP client
//!   finding out where its connections land: balancing, backup tables, marks, counters;
//!   `sticky-address` keeping a client on its host until the session timeout after its
//!   last packet, and forgetting the clients of a host that goes down; the session
//!   timeout as the established timeout of the redirected connections.
//! * Seed example 5, its invalid addresses fixed and its interface the router's veth
//!   end, served by a real `relayd-run -u nobody` in the router namespace: the privileged
//!   helper alone holds CAP_NET_ADMIN, a backend that dies stops being redirected to,
//!   `relayctl show redirects|summary` and `redirect disable|enable`, and no table left
//!   after SIGTERM.
//! * A relayd-run killed with SIGKILL: its helper still removes the table.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

mod common;

use common::{compile, run, sh, temp_dir, until, Relay};
use relayd_run::helper::check_batch;
use relayd_run::redirect::{removal, ruleset, sticky_set_name, CtTimeout, Nft};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const RELAYCTL: &str = env!("CARGO_BIN_EXE_relayctl");

/// Two namespaces joined by a veth pair, deleted (with everything in them) on drop.
struct Net {
    client: String,
    router: String,
    /// The router's end of the veth pair, where the client's packets arrive.
    router_if: String,
    backends: Vec<(String, Child)>,
}

impl Net {
    /// `tag` tells apart the namespaces of the tests of this file, which run at once.
    fn new(tag: char) -> Option<Net> {
        let id = std::process::id() % 100_000;
        let net = Net {
            client: format!("rdrc{tag}{id}"),
            router: format!("rdrr{tag}{id}"),
            router_if: format!("rdr{tag}{id}"),
            backends: Vec::new(),
        };
        let vc = format!("rdc{tag}{id}");
        if !sh(&["ip", "netns", "add", &net.client]) {
            return None;
        }
        run(&["ip", "netns", "add", &net.router]);
        run(&[
            "ip",
            "link",
            "add",
            &vc,
            "netns",
            &net.client,
            "type",
            "veth",
            "peer",
            "name",
            &net.router_if,
            "netns",
            &net.router,
        ]);
        let (c, r) = (net.client.as_str(), net.router.as_str());
        run(&["ip", "-n", c, "addr", "add", "10.200.0.1/24", "dev", &vc]);
        run(&[
            "ip",
            "-n",
            r,
            "addr",
            "add",
            "10.200.0.2/24",
            "dev",
            &net.router_if,
        ]);
        for (ns, dev) in [(c, vc.as_str()), (r, net.router_if.as_str())] {
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        // The virtual address lives behind the router; the backends on its loopback.
        run(&[
            "ip",
            "-n",
            c,
            "route",
            "add",
            "10.200.1.0/24",
            "via",
            "10.200.0.2",
        ]);
        for a in ["10.200.2.1/32", "10.200.2.2/32", "10.200.2.3/32"] {
            run(&["ip", "-n", r, "addr", "add", a, "dev", "lo"]);
        }
        Some(net)
    }

    /// A backend in the router namespace that writes `name` to every connection.
    fn backend(&mut self, addr: &str, port: u16, name: &str) {
        self.spawn_backend(addr, port, name, false);
    }

    /// [`Net::backend`], keeping each connection open until the client closes it.
    fn holding_backend(&mut self, addr: &str, port: u16, name: &str) {
        self.spawn_backend(addr, port, name, true);
    }

    fn spawn_backend(&mut self, addr: &str, port: u16, name: &str, hold: bool) {
        let hold = if hold { "  c.recv(1)\n" } else { "" };
        let code = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{addr}',{port}))\ns.listen(16)\nwhile True:\n c,_=s.accept()\n try:\n  c.sendall(b'{name}')\n{hold} except OSError:\n  pass\n c.close()\n"
        );
        // `ip netns exec` execs python in place: the child's pid is the backend's.
        let child = Command::new("ip")
            .args(["netns", "exec", &self.router, "python3", "-c", &code])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.backends.push((name.to_string(), child));
    }

    /// Waits (bounded) until a backend accepts on `addr`:`port`, from the router
    /// namespace: relayd-run's first checks must find it up.
    fn wait_backend(&self, addr: &str, port: u16) {
        until("a backend", 10, || {
            sh(&[
                "ip",
                "netns",
                "exec",
                &self.router,
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/{addr}/{port}"),
            ])
            .then_some(())
        });
    }

    /// Stops backend `name` (ours, by pid).
    fn stop_backend(&mut self, name: &str) {
        for (n, c) in &mut self.backends {
            if n == name {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// Connects from the client namespace to the virtual address; what the backend
    /// wrote, or `None` when nothing answered within a second.
    fn fetch(&self, port: u16) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                "timeout",
                "1",
                "bash",
                "-c",
                &format!("exec 3<>/dev/tcp/10.200.1.1/{port} && cat <&3"),
            ])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !s.is_empty()).then_some(s)
    }

    /// `nft list table inet relayd` in the router namespace, if the table exists.
    fn table(&self) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router,
                "nft",
                "list",
                "table",
                "inet",
                "relayd",
            ])
            .output()
            .unwrap();
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `nft -j ARGS` in the router namespace, the `nftables` array of its answer.
    fn nft_json(&self, args: &[&str]) -> Vec<serde_json::Value> {
        let out = Command::new("ip")
            .args(["netns", "exec", &self.router, "nft", "-j"])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "nft {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["nftables"].as_array().cloned().unwrap_or_default()
    }

    /// The addresses in set `name` of the table (`nft list set`); expired ones are not
    /// listed.
    fn set_elements(&self, name: &str) -> Vec<String> {
        let listed = self.nft_json(&["list", "set", "inet", "relayd", name]);
        let set = listed.iter().find_map(|o| o.get("set")).unwrap();
        let elems = set["elem"].as_array().cloned().unwrap_or_default();
        elems
            .iter()
            .map(|e| {
                e.as_str()
                    .or_else(|| e["elem"]["val"].as_str())
                    .unwrap_or_else(|| panic!("{e}"))
                    .to_string()
            })
            .collect()
    }

    /// The router's conntrack table.
    fn conntrack(&self) -> String {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.router,
                "cat",
                "/proc/net/nf_conntrack",
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits (bounded) until the backends accept.
    fn wait_ready(&self, nft: &Nft, plan: &relaydc_spec::plan::Plan) {
        nft.apply(&ruleset(plan, &[true, true, true])).unwrap();
        until("the backends", 10, || self.fetch(80));
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, b) in &mut self.backends {
            let _ = b.kill();
            let _ = b.wait();
        }
        let _ = sh(&["ip", "netns", "del", &self.client]);
        let _ = sh(&["ip", "netns", "del", &self.router]);
    }
}

fn need_nft() {
    if !sh(&["nft", "--version"]) {
        panic!("nft is missing: scripts/test installs the nftables package");
    }
}

/// relayctl's exit code and stdout.
fn ctl(sock: &Path, args: &[&str]) -> (i32, String) {
    let out = Command::new(RELAYCTL)
        .arg("-s")
        .arg(sock)
        .args(args)
        .output()
        .expect("run relayctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn redirects_follow_host_states_and_leave_nothing_behind() {
    need_nft();
    let Some(mut net) = Net::new('a') else {
        eprintln!("skipped: cannot create network namespaces here");
        return;
    };
    let dir = temp_dir("redirect");
    let conf = dir.join("rdr.conf");
    std::fs::write(
        &conf,
        "table <web> { 10.200.2.1, 10.200.2.2 }\n\
         table <fallback> { 10.200.2.3 }\n\
         redirect \"www\" {\n\
         \tlisten on 10.200.1.1 port 80\n\
         \tpftag \"RELAYD\"\n\
         \tforward to <web> port 8080 mode roundrobin check tcp\n\
         \tforward to <fallback> port 8080 check tcp\n\
         }\n",
    )
    .unwrap();
    let plan_path = dir.join("plan.bin");
    compile(&conf, &[], &plan_path);
    let plan = relayd_run::load(&plan_path).unwrap().plan;
    for (addr, name) in [
        ("10.200.2.1", "a"),
        ("10.200.2.2", "b"),
        ("10.200.2.3", "c"),
    ] {
        net.backend(addr, 8080, name);
        net.wait_backend(addr, 8080);
    }
    let nft = Nft {
        netns: Some(net.router.clone()),
    };
    // Every batch the ruleset makes is one the privileged helper accepts.
    for up in [[true, true, true], [false, false, true], [false; 3]] {
        assert_eq!(check_batch(&ruleset(&plan, &up)), Ok(()));
    }
    net.wait_ready(&nft, &plan);

    // Both main hosts up: round-robin between them, never the fallback.
    let got: Vec<String> = (0..4).map(|_| net.fetch(80).unwrap()).collect();
    assert_eq!(got.iter().filter(|g| *g == "a").count(), 2, "{got:?}");
    assert_eq!(got.iter().filter(|g| *g == "b").count(), 2, "{got:?}");

    // One main host down: only the other one.
    nft.apply(&ruleset(&plan, &[false, true, true])).unwrap();
    for _ in 0..3 {
        assert_eq!(net.fetch(80).as_deref(), Some("b"));
    }
    // The main table empty: the fallback takes over, as relayd's backup table does.
    nft.apply(&ruleset(&plan, &[false, false, true])).unwrap();
    assert_eq!(net.fetch(80).as_deref(), Some("c"));
    // Nothing up: the redirect is down and has no rule; nothing answers.
    nft.apply(&ruleset(&plan, &[false, false, false])).unwrap();
    assert_eq!(net.fetch(80), None);
    // The pftag marks redirected packets (mark 1: the plan's first tag).
    nft.apply(&ruleset(&plan, &[true, true, true])).unwrap();
    let listed = net.table().unwrap();
    assert!(listed.contains("meta mark set 0x00000001"), "{listed}");
    assert!(listed.contains("numgen inc mod 2 map"), "{listed}");
    // Each connection redirected is counted, under the redirect's name.
    let _ = net.fetch(80).unwrap();
    let counted = nft.counters().unwrap();
    assert!(
        counted.iter().any(|(n, c)| n == "www" && *c >= 1),
        "{counted:?}"
    );
    // On exit the table goes, in one transaction.
    nft.apply(&removal()).unwrap();
    assert_eq!(net.table(), None);
    let _ = std::fs::remove_dir_all(&dir);
}

/// `/proc/PID/status` field `key`.
fn status(pid: u32, key: &str) -> String {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix(&format!("{key}:")))
        .map(|v| v.trim().to_string())
        .unwrap_or_default()
}

/// Whether process `pid` has exited (a zombie nobody reaped yet counts).
fn gone(pid: u32) -> bool {
    let s = status(pid, "State");
    s.is_empty() || s.starts_with('Z')
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

/// Seed example 5 with its addresses fixed: a healthy backend's answer reaches the
/// client; the one it reaches dies and the next connection goes elsewhere.
#[test]
fn seed_example_5_redirects_to_healthy_backends() {
    need_nft();
    let Some(mut net) = Net::new('b') else {
        eprintln!("skipped: cannot create network namespaces here");
        return;
    };
    let dir = temp_dir("example5");
    let seed =
        std::fs::read_to_string(common::workspace().join("corpus/seed/example5.conf")).unwrap();
    let invalid = "{ 192.168.1.111, 192.168.1.222, 192.168.1.333 }";
    assert!(seed.contains(invalid));
    let conf = dir.join("example5.conf");
    std::fs::write(
        &conf,
        seed.replace(invalid, "{ 10.200.2.1, 10.200.2.2, 10.200.2.3 }"),
    )
    .unwrap();
    let plan_path = dir.join("plan.bin");
    compile(
        &conf,
        &[
            "relayd_addr=10.200.1.1".into(),
            format!("relayd_int={}", net.router_if),
        ],
        &plan_path,
    );
    for (addr, name) in [
        ("10.200.2.1", "a"),
        ("10.200.2.2", "b"),
        ("10.200.2.3", "c"),
    ] {
        net.backend(addr, 500, name);
        net.wait_backend(addr, 500);
    }
    let sock = dir.join("relayd.sock");
    let ns = net.router.clone();
    let relay = Relay::start_via(
        &["ip", "netns", "exec", &ns],
        &plan_path,
        &["-v", "-u", "nobody", "-s", sock.to_str().unwrap()],
    );
    // relayd's line for the redirect's addresses (all three, unless a round's results
    // were split between two changes), then the rule for all three.
    relay.wait_log("the hosts in the redirect's table", |l| {
        l.contains("table anchor_name: ") && l.contains(" added, 0 deleted, 0 changed, 0 killed")
    });
    let listed = until("a rule for the three backends", 10, || {
        net.table().filter(|t| t.contains("numgen inc mod 3"))
    });
    // sticky-address: a lookup per host ahead of the balanced rule; the session
    // timeout (600 s by default) as the connections' established timeout.
    for a in ["10.200.2.1", "10.200.2.2", "10.200.2.3"] {
        assert!(
            listed.contains(&format!("ip saddr @sticky_0_{a} ")),
            "{listed}"
        );
    }
    assert!(
        listed.contains("ct timeout set \"established_600s_ip\""),
        "{listed}"
    );

    // Only the helper holds a capability, and only CAP_NET_ADMIN (bit 12); both run as
    // nobody.
    let pid = relay.child.id();
    let helper = until("the helper process", 5, || {
        child_named(pid, "relayd-run: helper")
    });
    for key in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(status(pid, key), "0000000000000000", "relay process {key}");
        assert_eq!(status(helper, key), "0000000000001000", "helper {key}");
    }
    assert_eq!(status(helper, "CapBnd"), "0000000000001000");
    assert_eq!(status(helper, "NoNewPrivs"), "1");
    for p in [pid, helper] {
        assert!(status(p, "Uid").starts_with("65534\t65534\t65534"), "{p}");
    }

    // sticky-address: one client address always reaches the same backend.
    let first = until("a redirected connection", 10, || net.fetch(500));
    for _ in 0..2 {
        assert_eq!(net.fetch(500).as_deref(), Some(first.as_str()));
    }
    assert!(
        listed.contains(&format!("iifname \"{}\"", net.router_if)),
        "{listed}"
    );
    assert!(listed.contains("meta mark set 0x00000001"), "{listed}");

    let header = "Id  \tType    \tName                    \tAvlblty\tStatus\n";
    let (code, out) = ctl(&sock, &["show", "summary"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!(
            "{header}\
             1   \tredirect\tanchor_name             \t       \tactive\n\
             1   \ttable   \tsome_servers:500        \t       \tactive (3 hosts)\n\
             1   \thost    \t10.200.2.1              \t100.00%\tup\n\
             2   \thost    \t10.200.2.2              \t100.00%\tup\n\
             3   \thost    \t10.200.2.3              \t100.00%\tup\n"
        )
    );
    let (code, out) = ctl(&sock, &["show", "redirects"]);
    assert_eq!(code, 0);
    let row = "1   \tredirect\tanchor_name             \t       \tactive\n";
    assert!(out.starts_with(&format!("{header}{row}")), "{out}");
    let total: u64 = out
        .lines()
        .find_map(|l| l.strip_prefix("\t        \ttotal: "))
        .and_then(|l| l.strip_suffix(" sessions"))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no total: {out}"));
    assert!(total >= 3, "{out}");
    assert!(
        out.contains("\t        \tlast: 0/60s 0/h 0/d sessions\n"),
        "{out}"
    );
    let (_, json) = ctl(&sock, &["--json", "show", "redirects"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["redirects"][0]["status"], "active");
    assert_eq!(v["redirects"][0]["stats"]["total"], total);

    let first_addr = format!(
        "10.200.2.{}",
        match first.as_str() {
            "a" => 1,
            "b" => 2,
            _ => 3,
        }
    );
    let first_set = sticky_set_name(0, first_addr.parse().unwrap());
    assert_eq!(net.set_elements(&first_set), ["10.200.0.1"]);

    // The backend the client reaches dies: after the next check it is out of the
    // table, its clients are forgotten, and the client reaches another.
    net.stop_backend(&first);
    assert_eq!(ctl(&sock, &["poll"]).0, 0);
    let next = until("a connection to another backend", 10, || {
        net.fetch(500).filter(|b| *b != first)
    });
    assert_ne!(next, first);
    relay.wait_log("the dead host leaving the table", |l| {
        l.contains("table anchor_name: 0 added, 1 deleted, 0 changed, 0 killed")
    });
    assert_eq!(net.set_elements(&first_set), Vec::<String>::new());
    let (_, out) = ctl(&sock, &["show", "summary"]);
    assert!(out.contains("active (2 hosts)"), "{out}");
    assert_eq!(out.matches("\tdown\n").count(), 1, "{out}");

    // `redirect disable`: no rules (nothing answers), the redirect shown disabled.
    let (code, out) = ctl(&sock, &["redirect", "disable", "anchor_name"]);
    assert_eq!((code, out.as_str()), (0, "command succeeded\n"));
    until("the rules to go", 10, || {
        net.table().filter(|t| !t.contains("dnat"))
    });
    assert_eq!(net.fetch(500), None);
    let (_, out) = ctl(&sock, &["show", "redirects"]);
    assert_eq!(
        out,
        format!("{header}1   \tredirect\tanchor_name             \t       \tdisabled\n")
    );
    // `redirect enable` (by id): its table again, and with the next checks its rules.
    let (code, out) = ctl(&sock, &["redirect", "enable", "1"]);
    assert_eq!((code, out.as_str()), (0, "command succeeded\n"));
    assert_eq!(ctl(&sock, &["poll"]).0, 0);
    let back = until("the rules to come back", 10, || net.fetch(500));
    assert_ne!(back, first);
    let (code, _) = ctl(&sock, &["redirect", "enable", "nosuch"]);
    assert_eq!(code, 1);

    // SIGTERM: the table goes, and the helper with it.
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    assert_eq!(net.table(), None, "{log}");
    assert!(gone(helper));
    // relayd's pfe lines (`-v`), in relayd's order.
    let at = |line: &str| log.find(line).unwrap_or_else(|| panic!("{line}: {log}"));
    assert!(at("pfe_sync: enabling ruleset") < at("disable_rdr: redirect 1"));
    assert!(at("disable_rdr: redirect 1") < at("flush_table: flushed table anchor_name"));
    assert!(at("pfe_sync: disabling ruleset") < at("sync_ruleset: rules removed"));
    assert!(at("table anchor_name: 2 added, 0 deleted, 0 changed, 0 killed") < at("kill_tables"));
    assert!(at("flush_rulesets: flushed rules") < at("parent terminating"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// However relayd-run ends, the helper removes the table once it is gone.
#[test]
fn the_table_goes_when_relayd_run_is_killed() {
    need_nft();
    let Some(mut net) = Net::new('c') else {
        eprintln!("skipped: cannot create network namespaces here");
        return;
    };
    let dir = temp_dir("redirect-kill");
    let conf = dir.join("rdr.conf");
    std::fs::write(
        &conf,
        "table <web> { 10.200.2.1 }\n\
         redirect \"www\" {\n\
         \tlisten on 10.200.1.1 port 80\n\
         \tforward to <web> port 8080 check tcp\n\
         }\n",
    )
    .unwrap();
    let plan_path = dir.join("plan.bin");
    compile(&conf, &[], &plan_path);
    net.backend("10.200.2.1", 8080, "a");
    net.wait_backend("10.200.2.1", 8080);
    let ns = net.router.clone();
    let sock = dir.join("relayd.sock");
    let mut relay = Relay::start_via(
        &["ip", "netns", "exec", &ns],
        &plan_path,
        &["-s", sock.to_str().unwrap()],
    );
    assert_eq!(until("a redirected connection", 10, || net.fetch(80)), "a");
    assert!(net.table().is_some_and(|t| t.contains("dnat")));
    let pid = relay.child.id();
    let helper = child_named(pid, "relayd-run: helper").unwrap();
    // SIGKILL to relayd-run (ours), nothing to its helper.
    relay.child.kill().unwrap();
    let _ = relay.child.wait();
    until("the table to go", 10, || {
        net.table().is_none().then_some(())
    });
    until("the helper to exit", 10, || gone(helper).then_some(()));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Per plan host, whether it is up: all but those at `down` (addresses).
fn up_but(plan: &relaydc_spec::plan::Plan, down: &[&str]) -> Vec<bool> {
    plan.hosts
        .iter()
        .map(|h| match &h.address {
            relaydc_spec::plan::Address::Ip(ip) => !down.contains(&ip.to_string().as_str()),
            relaydc_spec::plan::Address::Name(_) => false,
        })
        .collect()
}

/// The backend's address for the name it answers with.
fn backend_address(name: &str) -> &'static str {
    match name {
        "a" => "10.200.2.1",
        "b" => "10.200.2.2",
        "c" => "10.200.2.3",
        _ => panic!("no backend {name}"),
    }
}

/// What nft is given for sticky redirects and session timeouts, IPv4 and IPv6, with
/// one host down: the sets (the down host's emptied), the chains, the rules in order,
/// and the ct timeouts made beforehand.
#[test]
fn the_batch_of_sticky_redirects_with_a_session_timeout() {
    let dir = temp_dir("sticky-json");
    let conf = dir.join("rdr.conf");
    std::fs::write(
        &conf,
        "table <web> { 10.0.2.1, 10.0.2.2 }\n\
         table <six> { fd00::1, fd00::2 }\n\
         redirect \"www\" {\n\
         \tlisten on 10.0.1.1 port 80\n\
         \tsticky-address\n\
         \tsession timeout 30\n\
         \tforward to <web> port 8080 mode source-hash check tcp\n\
         }\n\
         redirect \"six\" {\n\
         \tlisten on fd00:1::1 port 443\n\
         \tlisten on fd00:1::1 udp port 53\n\
         \tsticky-address\n\
         \tforward to <six> port 8443 check tcp\n\
         }\n",
    )
    .unwrap();
    let plan_path = dir.join("plan.bin");
    compile(&conf, &[], &plan_path);
    let plan = relayd_run::load(&plan_path).unwrap().plan;
    let batch = ruleset(&plan, &up_but(&plan, &["10.0.2.2"]));
    assert_eq!(check_batch(&batch), Ok(()));
    // TCP listeners only, one object per timeout and family; "six" has relayd's 600 s.
    assert_eq!(
        batch.timeouts,
        [
            CtTimeout {
                ipv6: false,
                established_s: 30
            },
            CtTimeout {
                ipv6: true,
                established_s: 600
            }
        ]
    );
    let v = serde_json::to_value(&batch.nft).unwrap();
    let cmds = v["nftables"].as_array().unwrap();
    let find = |cmd: &str, kind: &str, name: &str| {
        cmds.iter()
            .position(|c| c[cmd][kind]["name"] == name)
            .unwrap_or_else(|| panic!("no {cmd} {kind} {name}: {v}"))
    };
    // The learning chain runs just after the nat chain, where the destination is the
    // chosen host.
    let chain = &cmds[find("add", "chain", "sticky")]["add"]["chain"];
    assert_eq!(
        (
            &chain["type"],
            &chain["hook"],
            &chain["prio"],
            &chain["policy"]
        ),
        (
            &"filter".into(),
            &"prerouting".into(),
            &(-99).into(),
            &"accept".into()
        )
    );
    // A set per host, the session timeout long, made before the transaction; the
    // down host's emptied in it.
    let sets = serde_json::to_value(&batch.sets).unwrap();
    let set = |name: &str| {
        sets.as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no set {name}: {sets}"))
    };
    let www = set("sticky_0_10.0.2.1");
    assert_eq!(
        (&www["family"], &www["table"], &www["type"], &www["timeout"]),
        (
            &"inet".into(),
            &"relayd".into(),
            &"ipv4_addr".into(),
            &30.into()
        )
    );
    assert_eq!(www["flags"], serde_json::json!(["timeout"]));
    set("sticky_0_10.0.2.2");
    let first_rule = cmds.iter().position(|c| c["add"].get("rule").is_some());
    assert!(Some(find("flush", "set", "sticky_0_10.0.2.2")) < first_rule);
    assert!(!cmds
        .iter()
        .any(|c| c["flush"]["set"]["name"] == "sticky_0_10.0.2.1"));
    let six = set("sticky_1_fd00--1");
    assert_eq!(
        (&six["type"], &six["timeout"]),
        (&"ipv6_addr".into(), &600.into())
    );
    let rules: Vec<&serde_json::Value> = cmds.iter().filter_map(|c| c["add"].get("rule")).collect();
    let exprs = |chain: &str, comment: &str| -> Vec<Vec<serde_json::Value>> {
        rules
            .iter()
            .filter(|r| r["chain"] == chain && r["comment"] == comment)
            .map(|r| r["expr"].as_array().unwrap().clone())
            .collect()
    };
    let json = |s: &str| -> serde_json::Value { serde_json::from_str(s).unwrap() };
    let dnat_to = |expr: &[serde_json::Value]| expr.last().unwrap()["dnat"]["addr"].clone();
    // One host up in "www": its DNAT alone (no lookup needed), which still learns.
    let www = exprs("prerouting", "redirect www");
    assert_eq!(www.len(), 1, "{www:?}");
    assert!(www[0].contains(&json(r#"{"ct timeout":"established_30s_ip"}"#)));
    assert_eq!(dnat_to(&www[0]), "10.0.2.1");
    let learn = exprs("sticky", "redirect www");
    assert_eq!(learn.len(), 1, "{learn:?}");
    assert_eq!(
        learn[0],
        [
            json(r#"{"match":{"left":{"ct":{"key":"direction"}},"right":"original","op":"=="}}"#),
            json(r#"{"match":{"left":{"meta":{"key":"l4proto"}},"right":"tcp","op":"=="}}"#),
            json(
                r#"{"match":{"left":{"ct":{"key":"ip daddr","dir":"original"}},"right":"10.0.1.1","op":"=="}}"#
            ),
            json(
                r#"{"match":{"left":{"ct":{"key":"proto-dst","dir":"original"}},"right":80,"op":"=="}}"#
            ),
            json(
                r#"{"match":{"left":{"payload":{"protocol":"ip","field":"daddr"}},"right":"10.0.2.1","op":"=="}}"#
            ),
            json(
                r#"{"set":{"op":"update","elem":{"payload":{"protocol":"ip","field":"saddr"}},"set":"@sticky_0_10.0.2.1"}}"#
            ),
        ]
    );
    // Both hosts up in "six": per listener a lookup per host, then the balanced DNAT;
    // the UDP listener without a ct timeout.
    let six = exprs("prerouting", "redirect six");
    assert_eq!(six.len(), 6, "{six:?}");
    let lookup = |set: &str| {
        json(&format!(
            r#"{{"match":{{"left":{{"payload":{{"protocol":"ip6","field":"saddr"}}}},"right":"@{set}","op":"=="}}}}"#
        ))
    };
    assert!(six[0].contains(&lookup("sticky_1_fd00--1")), "{:?}", six[0]);
    assert_eq!(dnat_to(&six[0]), "fd00::1");
    assert!(six[1].contains(&lookup("sticky_1_fd00--2")), "{:?}", six[1]);
    assert_eq!(dnat_to(&six[1]), "fd00::2");
    assert!(dnat_to(&six[2]).get("map").is_some(), "{:?}", six[2]);
    assert!(six[2].contains(&json(r#"{"ct timeout":"established_600s_ip6"}"#)));
    assert!(
        six[3..]
            .iter()
            .all(|e| !e.iter().any(|s| s.get("ct timeout").is_some())),
        "{six:?}"
    );
    let learn6 = exprs("sticky", "redirect six");
    assert_eq!(learn6.len(), 4, "{learn6:?}");
    assert_eq!(
        learn6[0][2],
        json(
            r#"{"match":{"left":{"ct":{"key":"ip6 daddr","dir":"original"}},"right":"fd00:1::1","op":"=="}}"#
        )
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// `sticky-address` with a short session timeout: one client reaches the same backend
/// on every new connection, where round-robin alone spreads them; its entry goes a
/// session timeout after its last packet; a host that goes down loses its clients in
/// the same transaction, and they stay with their new host when it comes back.
#[test]
fn sticky_sources_expire_and_go_with_their_host() {
    need_nft();
    let Some(mut net) = Net::new('d') else {
        eprintln!("skipped: cannot create network namespaces here");
        return;
    };
    let dir = temp_dir("sticky");
    let conf = dir.join("rdr.conf");
    std::fs::write(
        &conf,
        "table <web> { 10.200.2.1, 10.200.2.2, 10.200.2.3 }\n\
         redirect \"spread\" {\n\
         \tlisten on 10.200.1.1 port 81\n\
         \tforward to <web> port 8080 mode roundrobin check tcp\n\
         }\n\
         redirect \"www\" {\n\
         \tlisten on 10.200.1.1 port 80\n\
         \tsticky-address\n\
         \tsession timeout 3\n\
         \tforward to <web> port 8080 mode roundrobin check tcp\n\
         }\n",
    )
    .unwrap();
    let plan_path = dir.join("plan.bin");
    compile(&conf, &[], &plan_path);
    let plan = relayd_run::load(&plan_path).unwrap().plan;
    for (addr, name) in [
        ("10.200.2.1", "a"),
        ("10.200.2.2", "b"),
        ("10.200.2.3", "c"),
    ] {
        net.backend(addr, 8080, name);
        net.wait_backend(addr, 8080);
    }
    let nft = Nft {
        netns: Some(net.router.clone()),
    };
    let all = up_but(&plan, &[]);
    assert_eq!(check_batch(&ruleset(&plan, &all)), Ok(()));
    nft.apply(&ruleset(&plan, &all)).unwrap();
    until("the backends", 10, || net.fetch(81));
    let set = |name: &str| sticky_set_name(1, backend_address(name).parse().unwrap());

    // Round-robin alone: three connections, three backends.
    let mut spread: Vec<String> = (0..3).map(|_| net.fetch(81).unwrap()).collect();
    spread.sort();
    assert_eq!(spread, ["a", "b", "c"]);
    // With sticky-address, the first connection is balanced and the rest follow it.
    let first = net.fetch(80).unwrap();
    for _ in 0..4 {
        assert_eq!(net.fetch(80).as_deref(), Some(first.as_str()));
    }
    let last_packet = std::time::Instant::now();
    assert_eq!(net.set_elements(&set(&first)), ["10.200.0.1"]);
    for other in ["a", "b", "c"].iter().filter(|o| **o != first) {
        assert!(net.set_elements(&set(other)).is_empty(), "{other}");
    }
    // Three seconds after the client's last packet, the entry is gone.
    until("the sticky entry to expire", 10, || {
        net.set_elements(&set(&first)).is_empty().then_some(())
    });
    let lasted = last_packet.elapsed();
    assert!(lasted >= std::time::Duration::from_secs(2), "{lasted:?}");

    // A client bound to a host that goes down is forgotten with it: the next
    // connection goes to a live host, and stays there once the host is back.
    let bound = net.fetch(80).unwrap();
    assert_eq!(net.fetch(80).as_deref(), Some(bound.as_str()));
    assert_eq!(net.set_elements(&set(&bound)), ["10.200.0.1"]);
    let down = up_but(&plan, &[backend_address(&bound)]);
    assert_eq!(check_batch(&ruleset(&plan, &down)), Ok(()));
    nft.apply(&ruleset(&plan, &down)).unwrap();
    assert!(net.set_elements(&set(&bound)).is_empty());
    let moved = net.fetch(80).unwrap();
    assert_ne!(moved, bound);
    nft.apply(&ruleset(&plan, &all)).unwrap();
    for _ in 0..3 {
        assert_eq!(net.fetch(80).as_deref(), Some(moved.as_str()));
    }
    assert!(net.set_elements(&set(&bound)).is_empty());
    assert_eq!(net.set_elements(&set(&moved)), ["10.200.0.1"]);
    nft.apply(&removal()).unwrap();
    assert_eq!(net.table(), None);
    let _ = std::fs::remove_dir_all(&dir);
}

/// The session timeout is the redirected connections' established timeout: a ct
/// timeout object with that policy, named by the redirect's DNAT rule, and conntrack
/// timing an idle established connection by it.
#[test]
fn the_session_timeout_is_the_established_timeout() {
    need_nft();
    let Some(mut net) = Net::new('e') else {
        eprintln!("skipped: cannot create network namespaces here");
        return;
    };
    let dir = temp_dir("ct-timeout");
    let conf = dir.join("rdr.conf");
    std::fs::write(
        &conf,
        "table <web> { 10.200.2.1 }\n\
         redirect \"www\" {\n\
         \tlisten on 10.200.1.1 port 80\n\
         \tsession timeout 3\n\
         \tforward to <web> port 8080 check tcp\n\
         }\n",
    )
    .unwrap();
    let plan_path = dir.join("plan.bin");
    compile(&conf, &[], &plan_path);
    let plan = relayd_run::load(&plan_path).unwrap().plan;
    net.holding_backend("10.200.2.1", 8080, "a");
    net.wait_backend("10.200.2.1", 8080);
    let nft = Nft {
        netns: Some(net.router.clone()),
    };
    // Applying twice leaves the object as it is.
    for _ in 0..2 {
        nft.apply(&ruleset(&plan, &[true])).unwrap();
    }

    let listed = net.nft_json(&["list", "ruleset"]);
    let objects: Vec<&serde_json::Value> =
        listed.iter().filter_map(|o| o.get("ct timeout")).collect();
    assert_eq!(objects.len(), 1, "{listed:?}");
    let o = objects[0];
    assert_eq!(
        (&o["name"], &o["table"], &o["protocol"], &o["l3proto"]),
        (
            &"established_3s_ip".into(),
            &"relayd".into(),
            &"tcp".into(),
            &"ip".into()
        )
    );
    assert_eq!(o["policy"], serde_json::json!({"established": 3}));
    let rule = listed
        .iter()
        .filter_map(|o| o.get("rule"))
        .find(|r| r["chain"] == "prerouting")
        .unwrap();
    let expr = rule["expr"].as_array().unwrap();
    let at = |want: &serde_json::Value| expr.iter().position(|e| e == want);
    let timeout = at(&serde_json::json!({"ct timeout": "established_3s_ip"}));
    let dnat = expr.iter().position(|e| e.get("dnat").is_some());
    assert!(timeout.is_some() && timeout < dnat, "{rule}");

    // An idle established connection: conntrack gives it the policy's 3 s, not its
    // default five days.
    let mut client = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.client,
            "timeout",
            "10",
            "bash",
            "-c",
            "exec 3<>/dev/tcp/10.200.1.1/80 && head -c1 <&3 && sleep 2",
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let entry = until("the established connection", 5, || {
        net.conntrack()
            .lines()
            .find(|l| l.contains(" ESTABLISHED ") && l.contains("dport=80 "))
            .map(str::to_string)
    });
    let secs: u64 = entry.split_whitespace().nth(4).unwrap().parse().unwrap();
    assert!((1..=3).contains(&secs), "{entry}");
    assert!(client.wait().unwrap().success());
    nft.apply(&removal()).unwrap();
    assert_eq!(net.table(), None);
    let _ = std::fs::remove_dir_all(&dir);
}
