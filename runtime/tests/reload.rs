//! Live reload against real `relayd-run -d -s SOCKET` processes on 127.0.0.1-3: plans
//! swapped 20 times under a client load without a failed request or a refused
//! connection, a corrupt plan changing nothing, listeners added, kept and removed (and a
//! refused reload changing none of them), health kept across a reload, SIGHUP reloading
//! the file on disk, and a session open across a reload finishing on its own plan.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{compile, connect_when_ready, free_port, temp_dir, Relay};

const RELAYCTL: &str = env!("CARGO_BIN_EXE_relayctl");

/// relayctl's exit code, stdout and stderr.
fn ctl(sock: &Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(RELAYCTL)
        .arg("-s")
        .arg(sock)
        .args(args)
        .output()
        .expect("run relayctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `relayctl reload PLAN`, which must succeed.
fn reload(sock: &Path, plan: &Path) {
    let (code, out, err) = ctl(sock, &["reload", plan.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (0, "command succeeded\n"), "{err}");
}

/// `relayctl reload PLAN`, which must fail; returns relayctl's reason.
fn reload_fails(sock: &Path, plan: &Path) -> String {
    let (code, out, err) = ctl(sock, &["reload", plan.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (1, "command failed\n"), "{err}");
    err
}

/// `show hosts --json`: (name, status, checks) of each host.
fn hosts(sock: &Path) -> Vec<(String, String, u64)> {
    let (code, out, err) = ctl(sock, &["--json", "show", "hosts"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["name"].as_str().unwrap().to_string(),
                h["status"].as_str().unwrap().to_string(),
                h["checks"].as_u64().unwrap(),
            )
        })
        .collect()
}

fn status(sock: &Path, host: &str) -> Option<String> {
    hosts(sock)
        .into_iter()
        .find(|(n, _, _)| n == host)
        .map(|(_, s, _)| s)
}

/// Waits (bounded) until `pred` holds.
fn wait_for(what: &str, mut pred: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if pred() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out waiting for {what}");
}

/// Writes `conf` next to the others in `dir` and compiles it to `NAME.bin`.
fn plan(dir: &Path, name: &str, conf: &str) -> PathBuf {
    let src = dir.join(format!("{name}.conf"));
    std::fs::write(&src, conf).unwrap();
    let out = dir.join(format!("{name}.bin"));
    compile(&src, &[], &out);
    out
}

/// An HTTP/1.1 backend on `ip:port` (port 0: any) answering every request with `name`
/// as the body, keeping the connection unless asked to close it.
fn http_backend(ip: &str, port: u16, name: &'static str) -> u16 {
    let l = TcpListener::bind((ip, port)).unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        buf.drain(..end + 4);
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                            name.len()
                        );
                        if s.write_all(reply.as_bytes()).is_err()
                            || head.contains("connection: close")
                        {
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
    port
}

/// A TCP backend on 127.0.0.1 that writes `name` and closes.
fn named_backend(name: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            let _ = s.write_all(name.as_bytes());
            let _ = s.shutdown(Shutdown::Write);
        }
    });
    port
}

/// A TCP backend that echoes until the client's EOF.
fn echo_backend() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming().flatten() {
            std::thread::spawn(move || {
                let mut s = s;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = s.shutdown(Shutdown::Write);
            });
        }
    });
    port
}

/// What a TCP relay's backend said, or why nothing came.
fn name_at(port: u16) -> Result<String, ErrorKind> {
    let mut c = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.kind())?;
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut name = String::new();
    c.read_to_string(&mut name).map_err(|e| e.kind())?;
    Ok(name)
}

/// One HTTP response: its `X-Plan` header and its body.
struct Answer {
    plan: String,
    body: String,
}

/// Sends one GET on `c` and reads the response (head, then a Content-Length body).
fn get(c: &mut TcpStream, close: bool) -> Result<Answer, String> {
    let req = if close {
        "GET / HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    } else {
        "GET / HTTP/1.1\r\nHost: test\r\n\r\n"
    };
    c.write_all(req.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            let field = |name: &str| {
                head.lines().find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                })
            };
            let len: usize = field("Content-Length")
                .ok_or_else(|| format!("no Content-Length: {head}"))?
                .parse()
                .map_err(|_| format!("bad Content-Length: {head}"))?;
            if buf.len() >= end + 4 + len {
                if !head.starts_with("HTTP/1.1 200 ") {
                    return Err(format!("status: {head}"));
                }
                let plan = field("X-Plan").ok_or_else(|| format!("no X-Plan: {head}"))?;
                let body = String::from_utf8_lossy(&buf[end + 4..end + 4 + len]).into_owned();
                return Ok(Answer { plan, body });
            }
        }
        match c.read(&mut chunk) {
            Ok(0) => return Err("EOF before a whole response".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read: {e}")),
        }
    }
}

/// What the load clients saw.
#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
    /// (X-Plan, backend) pairs seen, and the first few failures.
    seen: Mutex<Vec<(String, String)>>,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn record(&self, r: Result<Answer, String>) -> bool {
        match r {
            Ok(a) => {
                self.ok.fetch_add(1, Ordering::Relaxed);
                let mut seen = self.seen.lock().unwrap();
                if !seen.iter().any(|(p, b)| *p == a.plan && *b == a.body) {
                    seen.push((a.plan, a.body));
                }
                true
            }
            Err(e) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                let mut errors = self.errors.lock().unwrap();
                if errors.len() < 10 {
                    errors.push(e);
                }
                false
            }
        }
    }
}

/// One load client until `deadline`: a keep-alive connection for up to 10 requests, then
/// a request on a connection of its own, and again.
fn load_client(port: u16, deadline: Instant, tally: &Tally) {
    let connect = || -> Option<TcpStream> {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(c) => {
                c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                Some(c)
            }
            Err(e) => {
                if e.kind() == ErrorKind::ConnectionRefused {
                    tally.refused.fetch_add(1, Ordering::Relaxed);
                } else {
                    tally.record(Err(format!("connect: {e}")));
                }
                None
            }
        }
    };
    while Instant::now() < deadline {
        if let Some(mut c) = connect() {
            for _ in 0..10 {
                if !tally.record(get(&mut c, false)) {
                    break;
                }
            }
        }
        if let Some(mut c) = connect() {
            tally.record(get(&mut c, true));
        }
    }
}

/// An HTTP relay over table `<web>` (checked by tcp every second) whose responses say
/// which plan they came through.
fn web_conf(port: u16, backend: u16, hosts: &str, name: &str) -> String {
    format!(
        "interval 1\ntimeout 500\nprefork 2\ntable <web> {{ {hosts} }}\n\
         http protocol \"p\" {{\n\tmatch response header set \"X-Plan\" value \"{name}\"\n}}\n\
         relay \"r\" {{\n\tlisten on 127.0.0.1 port {port}\n\tprotocol \"p\"\n\
         \tforward to <web> port {backend} check tcp\n}}\n"
    )
}

#[test]
fn twenty_reloads_under_load_fail_no_request() {
    let backend = http_backend("127.0.0.1", 0, "one");
    http_backend("127.0.0.2", backend, "two");
    http_backend("127.0.0.3", backend, "three");
    let port = free_port();
    let dir = temp_dir("reload-load");
    let a = plan(
        &dir,
        "a",
        &web_conf(port, backend, "127.0.0.1, 127.0.0.2", "A"),
    );
    let b = plan(
        &dir,
        "b",
        &web_conf(port, backend, "127.0.0.1, 127.0.0.3", "B"),
    );
    let mut bytes = std::fs::read(&a).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let bad = dir.join("bad.bin");
    std::fs::write(&bad, &bytes).unwrap();
    let sock = dir.join("ctl.sock");
    let relay = Relay::start(&a, &["-s", sock.to_str().unwrap()]);
    wait_for("both hosts up", || {
        sock.exists()
            && status(&sock, "127.0.0.1").as_deref() == Some("up")
            && status(&sock, "127.0.0.2").as_deref() == Some("up")
    });

    let tally = Arc::new(Tally::default());
    let deadline = Instant::now() + Duration::from_secs(10);
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let tally = Arc::clone(&tally);
            std::thread::spawn(move || load_client(port, deadline, &tally))
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    for n in 0..20 {
        let (next, name) = if n % 2 == 0 { (&b, "B") } else { (&a, "A") };
        reload(&sock, next);
        // The kept host is up at once, with its counters: no unknown state between plans.
        let h = hosts(&sock);
        let one = h.iter().find(|(n, _, _)| n == "127.0.0.1").unwrap();
        assert_eq!(one.1, "up", "{h:?}");
        assert!(one.2 > 0, "{h:?}");
        let gone = if name == "A" {
            "127.0.0.3"
        } else {
            "127.0.0.2"
        };
        assert!(h.iter().all(|(n, _, _)| n != gone), "{h:?}");
        // A request on a new connection goes through the new plan.
        let mut c = connect_when_ready(port);
        assert_eq!(get(&mut c, true).unwrap().plan, name);
        if n == 9 {
            let err = reload_fails(&sock, &bad);
            assert!(
                err.starts_with(&format!("relayctl: {}: ", bad.display())),
                "{err}"
            );
            let mut c = connect_when_ready(port);
            assert_eq!(
                get(&mut c, true).unwrap().plan,
                name,
                "the bad plan changed it"
            );
        }
        std::thread::sleep(Duration::from_millis(400));
    }
    for c in clients {
        c.join().unwrap();
    }
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");

    let ok = tally.ok.load(Ordering::Relaxed);
    let failed = tally.failed.load(Ordering::Relaxed);
    let refused = tally.refused.load(Ordering::Relaxed);
    assert_eq!(
        (failed, refused),
        (0, 0),
        "{ok} requests answered; failures: {:?}",
        tally.errors.lock().unwrap()
    );
    assert!(ok > 1000, "only {ok} requests answered");
    // Both plans' effects, and every session wholly on one plan: a response of plan A
    // never comes from the host only plan B has, nor the other way round.
    let mut seen = tally.seen.lock().unwrap().clone();
    seen.sort();
    let mut want: Vec<(String, String)> =
        [("A", "one"), ("A", "two"), ("B", "one"), ("B", "three")]
            .iter()
            .map(|(p, b)| (p.to_string(), b.to_string()))
            .collect();
    want.sort();
    assert_eq!(seen, want);

    assert_eq!(log.matches("reloading the plan from").count(), 21, "{log}");
    assert_eq!(log.matches("running the plan from").count(), 20, "{log}");
    assert_eq!(
        log.matches(&format!("reload of {} failed: ", bad.display()))
            .count(),
        1,
        "{log}"
    );
    // The kept host came up once, at start, and never changed state again.
    let kept: Vec<&str> = log
        .lines()
        .filter(|l| l.starts_with("host 127.0.0.1, "))
        .collect();
    assert_eq!(kept.len(), 1, "{log}");
    assert!(
        kept[0].ends_with("state unknown -> up, availability 100.00%"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Two TCP relays, `kept` on `p1` and one on `other_port` named `other`, each before a
/// backend that says its name; `extra` goes at the end.
fn tcp_conf(
    prefork: u32,
    p1: u16,
    k: u16,
    other: &str,
    other_port: u16,
    o: u16,
    extra: &str,
) -> String {
    format!(
        "prefork {prefork}\n\
         relay \"kept\" {{\n\tlisten on 127.0.0.1 port {p1}\n\tforward to 127.0.0.1 port {k}\n}}\n\
         relay \"{other}\" {{\n\tlisten on 127.0.0.1 port {other_port}\n\tforward to 127.0.0.1 port {o}\n{extra}}}\n"
    )
}

#[test]
fn listeners_are_kept_added_and_closed() {
    let k = named_backend("k");
    let g = named_backend("g");
    let n = named_backend("n");
    let (p1, p2, p3) = (free_port(), free_port(), free_port());
    let dir = temp_dir("reload-listeners");
    let c = plan(&dir, "c", &tcp_conf(2, p1, k, "gone", p2, g, ""));
    let d = plan(&dir, "d", &tcp_conf(2, p1, k, "new", p3, n, ""));
    let off = plan(
        &dir,
        "off",
        &tcp_conf(2, p1, k, "new", p3, n, "\tdisable\n"),
    );
    let forks = plan(&dir, "forks", &tcp_conf(1, p1, k, "new", p3, n, ""));
    // A port held by a socket without SO_REUSEPORT: the reload cannot bind it.
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let held = holder.local_addr().unwrap().port();
    let taken = plan(&dir, "taken", &tcp_conf(2, p1, k, "new", held, n, ""));
    let sock = dir.join("ctl.sock");
    let relay = Relay::start(&c, &["-s", sock.to_str().unwrap()]);
    connect_when_ready(p1);
    connect_when_ready(p2);
    wait_for("the control socket", || sock.exists());
    assert_eq!(name_at(p3), Err(ErrorKind::ConnectionRefused));

    // A client on the kept listener all along.
    let stop = Arc::new(AtomicBool::new(false));
    let hammer = {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            let (mut ok, mut bad) = (0u32, Vec::new());
            let t0 = Instant::now();
            while !stop.load(Ordering::Relaxed) && t0.elapsed() < Duration::from_secs(20) {
                match name_at(p1) {
                    Ok(name) if name == "k" => ok += 1,
                    other => bad.push(other),
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (ok, bad)
        })
    };
    for _ in 0..3 {
        reload(&sock, &d);
        assert_eq!(name_at(p3), Ok("n".into()));
        assert_eq!(name_at(p2), Err(ErrorKind::ConnectionRefused));
        reload(&sock, &c);
        assert_eq!(name_at(p2), Ok("g".into()));
        assert_eq!(name_at(p3), Err(ErrorKind::ConnectionRefused));
    }
    reload(&sock, &d);
    // A relay disabled by the new plan closes its listener.
    reload(&sock, &off);
    assert_eq!(name_at(p3), Err(ErrorKind::ConnectionRefused));
    reload(&sock, &d);
    assert_eq!(name_at(p3), Ok("n".into()));

    // Refused reloads change nothing.
    let err = reload_fails(&sock, &forks);
    assert!(
        err.contains("prefork cannot change without a restart"),
        "{err}"
    );
    let err = reload_fails(&sock, &taken);
    assert!(
        err.contains(&format!("cannot listen on 127.0.0.1:{held}")),
        "{err}"
    );
    assert_eq!(name_at(p3), Ok("n".into()));
    assert_eq!(name_at(p2), Err(ErrorKind::ConnectionRefused));
    drop(holder);

    stop.store(true, Ordering::Relaxed);
    let (ok, bad) = hammer.join().unwrap();
    assert!(
        bad.is_empty(),
        "the kept listener failed {bad:?} ({ok} fine)"
    );
    assert!(ok > 10, "{ok}");
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("prefork cannot change without a restart (running 2, the plan says 1)"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn health_and_the_board_follow_the_plan() {
    let backend = http_backend("127.0.0.1", 0, "one");
    http_backend("127.0.0.2", backend, "two");
    // Nobody answers on 127.0.0.3: down.
    let port = free_port();
    let dir = temp_dir("reload-health");
    let conf = |hosts: &str| {
        format!(
            "interval 60\ntimeout 500\nprefork 1\ntable <web> {{ {hosts} }}\n\
             relay \"r\" {{\n\tlisten on 127.0.0.1 port {port}\n\
             \tforward to <web> port {backend} check tcp\n}}\n"
        )
    };
    let first = plan(&dir, "first", &conf("127.0.0.1, 127.0.0.3"));
    let second = plan(&dir, "second", &conf("127.0.0.1, 127.0.0.2"));
    let sock = dir.join("ctl.sock");
    let relay = Relay::start(&first, &["-s", sock.to_str().unwrap()]);
    wait_for("the first round", || {
        sock.exists()
            && status(&sock, "127.0.0.1").as_deref() == Some("up")
            && status(&sock, "127.0.0.3").as_deref() == Some("down")
    });
    reload(&sock, &second);
    // Right after the swap: the kept host is up, the removed one is gone, the new one
    // is listed.
    let h = hosts(&sock);
    assert!(
        h.iter().any(|(n, s, _)| n == "127.0.0.1" && s == "up"),
        "{h:?}"
    );
    assert!(h.iter().all(|(n, _, _)| n != "127.0.0.3"), "{h:?}");
    assert!(h.iter().any(|(n, _, _)| n == "127.0.0.2"), "{h:?}");
    // The schedule starts over on the new plan: a round at once, not a minute later, in
    // which the new host comes up and the kept one counts its second check.
    wait_for("the new round", || {
        let h = hosts(&sock);
        h.contains(&("127.0.0.2".into(), "up".into(), 1))
            && h.contains(&("127.0.0.1".into(), "up".into(), 2))
    });
    let (code, out, err) = ctl(&sock, &["show", "summary"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("127.0.0.2") && !out.contains("127.0.0.3"),
        "{out}"
    );
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("host 127.0.0.1, "))
            .count(),
        1,
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn sighup_reloads_the_plan_file_on_disk() {
    let port = free_port();
    let dir = temp_dir("reload-hup");
    let conf = |backend: u16| {
        format!(
            "prefork 1\nrelay \"r\" {{\n\tlisten on 127.0.0.1 port {port}\n\
             \tforward to 127.0.0.1 port {backend}\n}}\n"
        )
    };
    let main = plan(&dir, "main", &conf(named_backend("one")));
    let sock = dir.join("ctl.sock");
    let relay = Relay::start(&main, &["-s", sock.to_str().unwrap()]);
    connect_when_ready(port);
    assert_eq!(name_at(port), Ok("one".into()));
    let hup = |n: usize| {
        let pid = relay.child.id();
        let status = Command::new("sh")
            .args(["-c", &format!("kill -HUP {pid}")])
            .status()
            .unwrap();
        assert!(status.success());
        relay.wait_log("the reload", |l| {
            l.matches("running the plan from").count() >= n
        });
    };
    // The file it was started with, rewritten.
    plan(&dir, "main", &conf(named_backend("two")));
    hup(1);
    assert_eq!(name_at(port), Ok("two".into()));
    // After `load`, SIGHUP reloads the file loaded last.
    let other = plan(&dir, "other", &conf(named_backend("three")));
    reload(&sock, &other);
    assert_eq!(name_at(port), Ok("three".into()));
    plan(&dir, "other", &conf(named_backend("four")));
    hup(3);
    assert_eq!(name_at(port), Ok("four".into()));
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains(&format!("reloading the plan from {}", main.display())),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_session_open_across_a_reload_finishes_on_its_plan() {
    let echo = echo_backend();
    let port = free_port();
    let dir = temp_dir("reload-session");
    let conf = |name: &str, backend: u16| {
        format!(
            "log connection\nprefork 1\nrelay \"{name}\" {{\n\tlisten on 127.0.0.1 port {port}\n\
             \tforward to 127.0.0.1 port {backend}\n}}\n"
        )
    };
    let first = plan(&dir, "first", &conf("echo", echo));
    let second = plan(&dir, "second", &conf("named", named_backend("x")));
    let sock = dir.join("ctl.sock");
    let relay = Relay::start(&first, &["-s", sock.to_str().unwrap()]);
    let mut s = connect_when_ready(port);
    let mut buf = [0u8; 5];
    s.write_all(b"ping1").unwrap();
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping1");
    wait_for("the control socket", || sock.exists());
    reload(&sock, &second);
    assert_eq!(name_at(port), Ok("x".into()));
    // The old session goes on echoing, on the old plan.
    std::thread::sleep(Duration::from_millis(200));
    s.write_all(b"ping2").unwrap();
    s.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping2");
    s.shutdown(Shutdown::Write).unwrap();
    let mut rest = Vec::new();
    s.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
    let log = relay.wait_log("the old session's close line", |l| {
        l.lines()
            .any(|l| l.starts_with("relay echo, session ") && l.ends_with(", done"))
    });
    assert!(
        log.lines()
            .any(|l| l.starts_with("relay named, session ") && l.ends_with(", done")),
        "{log}"
    );
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_reload_during_a_reload_is_refused() {
    let port = free_port();
    let dir = temp_dir("reload-busy");
    let main = plan(
        &dir,
        "main",
        &format!(
            "prefork 1\nrelay \"r\" {{\n\tlisten on 127.0.0.1 port {port}\n\
             \tforward to 127.0.0.1 port {}\n}}\n",
            named_backend("one")
        ),
    );
    let sock = dir.join("ctl.sock");
    let relay = Relay::start(&main, &["-s", sock.to_str().unwrap()]);
    connect_when_ready(port);
    wait_for("the control socket", || sock.exists());
    // A reload that cannot finish before the test lets it: its plan is a FIFO nobody
    // writes yet.
    let fifo = dir.join("slow.bin");
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let first = {
        let (sock, fifo) = (sock.clone(), fifo.clone());
        std::thread::spawn(move || ctl(&sock, &["reload", fifo.to_str().unwrap()]))
    };
    relay.wait_log("the first reload", |l| {
        l.contains(&format!("reloading the plan from {}", fifo.display()))
    });
    let (code, out, err) = ctl(&sock, &["reload"]);
    assert_eq!((code, out.as_str()), (1, "command failed\n"), "{err}");
    assert!(err.contains("another reload is in progress"), "{err}");
    // A FIFO's bytes are not a plan file (it has no length to check): the first one fails
    // too, and nothing changed.
    let _ = std::fs::write(&fifo, std::fs::read(&main).unwrap());
    let (code, _, err) = first.join().unwrap();
    assert_eq!(code, 1, "{err}");
    assert_eq!(name_at(port), Ok("one".into()));
    reload(&sock, &main);
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(
        log.contains("reload: another reload is in progress; this one is ignored"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
