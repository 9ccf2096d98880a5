//! Routers end to end inside network namespaces of the test's own: relayd-run runs in
//! a router namespace joined by a veth pair to a gateway namespace, where two gateway
//! addresses answer TCP checks. Routes to the router's network appear in its routing
//! table for the gateways that are up (one multipath route, the hosts' priority its
//! metric), lose a gateway that goes down, and go when relayd-run stops.

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
use std::time::Duration;

const RELAYCTL: &str = env!("CARGO_BIN_EXE_relayctl");

/// The router and gateway namespaces, deleted with everything in them on drop.
struct Net {
    router: String,
    gateways: String,
    servers: Vec<(String, Child)>,
}

impl Net {
    fn new() -> Option<Net> {
        let id = std::process::id() % 100_000;
        let net = Net {
            router: format!("rtrr{id}"),
            gateways: format!("rtrg{id}"),
            servers: Vec::new(),
        };
        let (vr, vg) = (format!("rtr{id}"), format!("rtg{id}"));
        if !sh(&["ip", "netns", "add", &net.router]) {
            return None;
        }
        run(&["ip", "netns", "add", &net.gateways]);
        run(&[
            "ip",
            "link",
            "add",
            &vr,
            "netns",
            &net.router,
            "type",
            "veth",
            "peer",
            "name",
            &vg,
            "netns",
            &net.gateways,
        ]);
        let (r, g) = (net.router.as_str(), net.gateways.as_str());
        run(&["ip", "-n", r, "addr", "add", "10.201.0.1/24", "dev", &vr]);
        for a in ["10.201.0.2/24", "10.201.0.3/24"] {
            run(&["ip", "-n", g, "addr", "add", a, "dev", &vg]);
        }
        for (ns, dev) in [(r, vr.as_str()), (g, vg.as_str())] {
            run(&["ip", "-n", ns, "link", "set", dev, "up"]);
            run(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        Some(net)
    }

    /// A TCP server on a gateway address: what the gateway's check connects to.
    fn server(&mut self, addr: &str) {
        let code = format!(
            "import socket\ns=socket.socket()\ns.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\ns.bind(('{addr}',8080))\ns.listen(16)\nwhile True:\n c,_=s.accept()\n c.close()\n"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", &self.gateways, "python3", "-c", &code])
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.servers.push((addr.to_string(), child));
    }

    fn stop_server(&mut self, addr: &str) {
        for (a, c) in &mut self.servers {
            if a == addr {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }

    /// `ip route show table 100` in the router namespace.
    fn routes(&self) -> String {
        let out = Command::new("ip")
            .args(["-n", &self.router, "route", "show", "table", "100"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for (_, c) in &mut self.servers {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = sh(&["ip", "netns", "del", &self.router]);
        let _ = sh(&["ip", "netns", "del", &self.gateways]);
    }
}

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
fn routes_follow_the_gateways() {
    let Some(mut net) = Net::new() else {
        eprintln!("skipped: cannot create network namespaces here");
        return;
    };
    let dir = temp_dir("routers");
    let conf = dir.join("routers.conf");
    std::fs::write(
        &conf,
        "table <gws> { 10.201.0.2 priority 5, 10.201.0.3 priority 5 }\n\
         router \"uplinks\" {\n\
         \troute 10.99.0.0/16\n\
         \tforward to <gws> port 8080 check tcp\n\
         \trtable 100\n\
         }\n",
    )
    .unwrap();
    let plan_path = dir.join("plan.bin");
    compile(&conf, &[], &plan_path);
    net.server("10.201.0.2");
    net.server("10.201.0.3");
    let sock = dir.join("relayd.sock");
    let ns = net.router.clone();
    let relay = Relay::start_via(
        &["ip", "netns", "exec", &ns],
        &plan_path,
        &["-v", "-s", sock.to_str().unwrap()],
    );
    // Until the servers listen, the gateways are down: poll until both are up.
    let both = until("a route via both gateways", 15, || {
        let r = net.routes();
        if r.contains("nexthop via 10.201.0.2") && r.contains("nexthop via 10.201.0.3") {
            Some(r)
        } else {
            let _ = ctl(&sock, &["poll"]);
            std::thread::sleep(Duration::from_millis(200));
            None
        }
    });
    assert!(
        both.starts_with("10.99.0.0/16 proto static metric 5"),
        "{both}"
    );
    relay.wait_log("relayd's sync_routes line", |l| {
        l.contains(
            "sync_routes: router uplinks route 10.99.0.0/16 gateway 10.201.0.3 up priority 5",
        )
    });

    let header = "Id  \tType    \tName                    \tAvlblty\tStatus\n";
    let (code, out) = ctl(&sock, &["show", "routers"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!(
            "{header}\
             1   \trouter  \tuplinks                 \t       \tactive\n\
             \t        \trtable: 100\n\
             \t        \troute: 10.99.0.0/16\n"
        )
    );
    let (_, out) = ctl(&sock, &["show", "summary"]);
    assert!(
        out.starts_with(&format!(
            "{header}\
             1   \trouter  \tuplinks                 \t       \tactive\n\
             1   \ttable   \tgws:8080                \t       \tactive (2 hosts)\n"
        )),
        "{out}"
    );
    let (_, json) = ctl(&sock, &["--json", "show", "routers"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["routers"][0]["rtable"], 100);
    assert_eq!(v["routers"][0]["routes"][0], "10.99.0.0/16");

    // A reload keeps the routes; a plan routing elsewhere needs a restart, since the
    // helper's remit is the routes of the plan relayd-run started with.
    let (code, _) = ctl(&sock, &["reload"]);
    assert_eq!(code, 0);
    let other_conf = dir.join("other.conf");
    std::fs::write(
        &other_conf,
        std::fs::read_to_string(&conf)
            .unwrap()
            .replace("10.99.0.0/16", "10.98.0.0/16"),
    )
    .unwrap();
    let other = dir.join("other.bin");
    compile(&other_conf, &[], &other);
    let (code, out) = ctl(&sock, &["load", other.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (1, "command failed\n"));
    relay.wait_log("the reason", |l| {
        l.contains("its routers route 10.98.0.0/16 via 10.201.0.2")
    });
    until("the routes after the reloads", 10, || {
        let r = net.routes();
        (r.contains("nexthop via 10.201.0.2") && r.contains("nexthop via 10.201.0.3")).then_some(())
    });

    // A gateway goes down: the route keeps only the other.
    net.stop_server("10.201.0.3");
    assert_eq!(ctl(&sock, &["poll"]).0, 0);
    let one = until("the route without the dead gateway", 10, || {
        let r = net.routes();
        (!r.contains("10.201.0.3") && r.contains("via 10.201.0.2")).then_some(r)
    });
    assert!(one.starts_with("10.99.0.0/16 via 10.201.0.2 dev "), "{one}");

    // On exit the routes go.
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    assert_eq!(net.routes(), "", "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
