//! Redirections as nftables rules, end to end inside network namespaces of the test's
//! own (nothing outside them is touched): a client namespace reaches a virtual address
//! over a veth pair; the router namespace holds relayd-run's `inet relayd` table and
//! three backends on its loopback. The ruleset for given host states is applied there
//! with `nft`, and a real TCP client finds out where its connections land.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

mod common;

use common::{compile, temp_dir};
use relayd_run::redirect::{removal, ruleset, Nft};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces joined by a veth pair, deleted (with everything in them) on drop.
struct Net {
    client: String,
    router: String,
    backends: Vec<Child>,
}

impl Net {
    fn new() -> Option<Net> {
        let id = std::process::id() % 100_000;
        let net = Net {
            client: format!("rdrc{id}"),
            router: format!("rdrr{id}"),
            backends: Vec::new(),
        };
        let (vc, vr) = (format!("rdc{id}"), format!("rdr{id}"));
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
            &vr,
            "netns",
            &net.router,
        ]);
        let (c, r) = (net.client.as_str(), net.router.as_str());
        run(&["ip", "-n", c, "addr", "add", "10.200.0.1/24", "dev", &vc]);
        run(&["ip", "-n", r, "addr", "add", "10.200.0.2/24", "dev", &vr]);
        for (ns, dev) in [(c, vc.as_str()), (r, vr.as_str())] {
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
    fn backend(&mut self, addr: &str, name: &str) {
        let code = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{addr}',8080))\ns.listen(16)\nwhile True:\n c,_=s.accept()\n c.sendall(b'{name}')\n c.close()\n"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.router, "python3", "-c", &code])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.backends.push(child);
    }

    /// Connects from the client namespace to the virtual address; what the backend
    /// wrote, or `None` when nothing answered within a second.
    fn fetch(&self) -> Option<String> {
        let out = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.client,
                "timeout",
                "1",
                "bash",
                "-c",
                "exec 3<>/dev/tcp/10.200.1.1/80 && cat <&3",
            ])
            .output()
            .unwrap();
        let s = String::from_utf8_lossy(&out.stdout).into_owned();
        (out.status.success() && !s.is_empty()).then_some(s)
    }

    /// Waits (bounded) until the backends accept.
    fn wait_ready(&self, nft: &Nft, plan: &relaydc_spec::plan::Plan) {
        nft.apply(&ruleset(plan, &[true, true, true])).unwrap();
        let t0 = Instant::now();
        while self.fetch().is_none() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "backends never answered"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for b in &mut self.backends {
            let _ = b.kill();
            let _ = b.wait();
        }
        let _ = sh(&["ip", "netns", "del", &self.client]);
        let _ = sh(&["ip", "netns", "del", &self.router]);
    }
}

#[test]
fn redirects_follow_host_states_and_leave_nothing_behind() {
    if !sh(&["nft", "--version"]) {
        panic!("nft is missing: scripts/test installs the nftables package");
    }
    let Some(mut net) = Net::new() else {
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
        net.backend(addr, name);
    }
    let nft = Nft {
        netns: Some(net.router.clone()),
    };
    net.wait_ready(&nft, &plan);

    // Both main hosts up: round-robin between them, never the fallback.
    let got: Vec<String> = (0..4).map(|_| net.fetch().unwrap()).collect();
    assert_eq!(got.iter().filter(|g| *g == "a").count(), 2, "{got:?}");
    assert_eq!(got.iter().filter(|g| *g == "b").count(), 2, "{got:?}");

    // One main host down: only the other one.
    nft.apply(&ruleset(&plan, &[false, true, true])).unwrap();
    for _ in 0..3 {
        assert_eq!(net.fetch().as_deref(), Some("b"));
    }
    // The main table empty: the fallback takes over, as relayd's backup table does.
    nft.apply(&ruleset(&plan, &[false, false, true])).unwrap();
    assert_eq!(net.fetch().as_deref(), Some("c"));
    // Nothing up: the redirect is down and has no rule; nothing answers.
    nft.apply(&ruleset(&plan, &[false, false, false])).unwrap();
    assert_eq!(net.fetch(), None);
    // The pftag marks redirected packets (mark 1: the plan's first tag).
    nft.apply(&ruleset(&plan, &[true, true, true])).unwrap();
    let listed = Command::new("ip")
        .args([
            "netns",
            "exec",
            &net.router,
            "nft",
            "list",
            "table",
            "inet",
            "relayd",
        ])
        .output()
        .unwrap();
    let listed = String::from_utf8_lossy(&listed.stdout).into_owned();
    assert!(listed.contains("meta mark set 0x00000001"), "{listed}");
    assert!(listed.contains("numgen inc mod 2 map"), "{listed}");
    // On exit the table goes, in one transaction.
    nft.apply(&removal()).unwrap();
    assert!(!sh(&[
        "ip",
        "netns",
        "exec",
        &net.router,
        "nft",
        "list",
        "table",
        "inet",
        "relayd"
    ]));
    let _ = std::fs::remove_dir_all(&dir);
}
