//! relayctl against a real `relayd-run -d -s SOCKET` on 127.0.0.1, with real backends
//! and clients: relayctl's exact output (`show summary|hosts|relays|sessions`), `--json`
//! agreeing with it, host and table enable/disable changing where sessions go, the
//! parser's messages, the socket's mode and removal, `reload` refusing a corrupt plan
//! while the relay keeps serving and taking a valid one, `stop`, and `monitor` printing
//! a host's change.

#![allow(
    clippy::expect_used,
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test that cannot build its own fixtures should fail loudly"
)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener};
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
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

fn ctl_json(sock: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, err) = ctl(sock, &all);
    assert_eq!(code, 0, "relayctl {args:?}: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Waits (bounded) until `pred` holds.
fn wait_for(what: &str, mut pred: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(15) {
        if pred() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("timed out waiting for {what}");
}

/// A host's state in `show hosts --json`.
fn state(sock: &Path, host: &str) -> String {
    let v = ctl_json(sock, &["show", "hosts"]);
    v["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["name"] == host)
        .map(|h| h["status"].as_str().unwrap().to_string())
        .unwrap()
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

/// A backend that echoes until the client's EOF.
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

fn name_from(port: u16) -> String {
    let mut c = connect_when_ready(port);
    let mut name = String::new();
    c.read_to_string(&mut name).unwrap();
    name
}

/// A plan with relay `checked` on `port` over table `<web>` (127.0.0.1 and 127.0.0.2 at
/// `backend`) with a tcp check, every `interval` seconds; started with its control
/// socket in a temporary directory.
fn checked_relay(tag: &str, interval: u32, port: u16, backend: u16) -> (Relay, PathBuf, PathBuf) {
    let dir = temp_dir(tag);
    let conf = dir.join("c.conf");
    std::fs::write(
        &conf,
        format!(
            "interval {interval}\ntimeout 500\nprefork 1\ntable <web> {{ 127.0.0.1, 127.0.0.2 }}\n\
             relay \"checked\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <web> port {backend} check tcp\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let sock = dir.join("ctl.sock");
    let relay = Relay::start(&plan, &["-s", sock.to_str().unwrap()]);
    (relay, sock, dir)
}

#[test]
fn show_summary_and_hosts_print_relayctls_columns() {
    let backend = named_backend("127.0.0.1", 0, "a");
    let port = free_port();
    // A long interval: the first round runs at start, then nothing changes under us.
    let (relay, sock, dir) = checked_relay("summary", 60, port, backend);
    wait_for("both first results", || {
        sock.exists() && state(&sock, "127.0.0.1") == "up" && state(&sock, "127.0.0.2") == "down"
    });
    let (code, out, err) = ctl(&sock, &["show", "summary"]);
    assert_eq!(code, 0, "{err}");
    let table = format!("web:{backend}");
    assert_eq!(
        out,
        format!(
            "Id  \tType    \tName                    \tAvlblty\tStatus\n\
             1   \trelay   \tchecked                 \t       \tactive\n\
             1   \ttable   \t{table:<24}\t       \tactive (1 hosts)\n\
             1   \thost    \t127.0.0.1               \t100.00%\tup\n\
             2   \thost    \t127.0.0.2               \t0.00%  \tdown\n"
        )
    );
    // Unique prefixes: `sh su` is `show summary`.
    assert_eq!(ctl(&sock, &["sh", "su"]).1, out);
    let (code, out, err) = ctl(&sock, &["show", "hosts"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out,
        format!(
            "Id  \tType    \tName                    \tAvlblty\tStatus\n\
             1   \ttable   \t{table:<24}\t       \tactive (1 hosts)\n\
             1   \thost    \t127.0.0.1               \t100.00%\tup\n\
             \t        \ttotal: 1/1 checks\n\
             2   \thost    \t127.0.0.2               \t0.00%  \tdown\n\
             \t        \ttotal: 0/1 checks, error: tcp connect failed\n"
        )
    );
    // --json: the same data.
    let v = ctl_json(&sock, &["show", "summary"]);
    assert_eq!(v["relays"][0]["id"], 1);
    assert_eq!(v["relays"][0]["name"], "checked");
    assert_eq!(v["relays"][0]["status"], "active");
    assert_eq!(v["relays"][0]["tables"], serde_json::json!([1]));
    assert_eq!(v["tables"][0]["name"], table.as_str());
    assert_eq!(v["tables"][0]["status"], "active (1 hosts)");
    assert_eq!(v["tables"][0]["up"], 1);
    let hosts = v["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2);
    assert_eq!(hosts[0]["name"], "127.0.0.1");
    assert_eq!(hosts[0]["state"], "up");
    assert_eq!(hosts[0]["availability"], 100.0);
    assert_eq!(
        (hosts[0]["up_checks"].as_u64(), hosts[0]["checks"].as_u64()),
        (Some(1), Some(1))
    );
    assert_eq!(hosts[1]["state"], "down");
    assert_eq!(hosts[1]["error"], "tcp connect failed");
    assert_eq!(hosts[1]["availability"], 0.0);
    // `log verbose|brief` answers as relayctl does.
    assert_eq!(ctl(&sock, &["log", "verbose"]).1, "logging request sent.\n");
    assert_eq!(ctl(&sock, &["log", "brief"]).1, "logging request sent.\n");
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn host_and_table_disable_take_hosts_out_of_rotation() {
    let backend = named_backend("127.0.0.1", 0, "a");
    named_backend("127.0.0.2", backend, "b");
    let port = free_port();
    let (relay, sock, dir) = checked_relay("disable", 1, port, backend);
    wait_for("both hosts up", || {
        sock.exists() && state(&sock, "127.0.0.1") == "up" && state(&sock, "127.0.0.2") == "up"
    });
    let seen: std::collections::BTreeSet<String> = (0..4).map(|_| name_from(port)).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");

    assert_eq!(
        ctl(&sock, &["host", "disable", "127.0.0.2"]),
        (0, "command succeeded\n".into(), String::new())
    );
    assert_eq!(state(&sock, "127.0.0.2"), "disabled");
    // Checks keep running for the other host; the disabled one gets nothing.
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(state(&sock, "127.0.0.2"), "disabled");
    for _ in 0..6 {
        assert_eq!(name_from(port), "a", "a disabled host got a session");
    }
    let out = ctl(&sock, &["show", "summary"]).1;
    assert!(
        out.contains("2   \thost    \t127.0.0.2               \t       \tdisabled\n"),
        "{out}"
    );

    // Enabled again (by id): unknown until its next check, then back in rotation.
    assert_eq!(ctl(&sock, &["ho", "en", "2"]).0, 0);
    assert_eq!(ctl(&sock, &["poll"]).1, "command succeeded\n");
    wait_for("the host back up", || state(&sock, "127.0.0.2") == "up");
    let seen: std::collections::BTreeSet<String> = (0..4).map(|_| name_from(port)).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");

    // A disabled table: its hosts unknown (and the text hides them), no checks.
    let table = format!("web:{backend}");
    assert_eq!(ctl(&sock, &["table", "disable", &table]).0, 0);
    let v = ctl_json(&sock, &["show", "hosts"]);
    assert_eq!(v["tables"][0]["status"], "disabled");
    for h in v["hosts"].as_array().unwrap() {
        assert_eq!(h["state"], "unknown", "{v}");
    }
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(state(&sock, "127.0.0.1"), "unknown");
    let out = ctl(&sock, &["show", "hosts"]).1;
    assert_eq!(
        out,
        format!(
            "Id  \tType    \tName                    \tAvlblty\tStatus\n\
             1   \ttable   \t{table:<24}\t       \tdisabled\n"
        )
    );
    assert_eq!(ctl(&sock, &["table", "enable", "1"]).0, 0);
    wait_for("the table's hosts up", || {
        state(&sock, "127.0.0.1") == "up" && state(&sock, "127.0.0.2") == "up"
    });

    // Names and ids that are not there.
    let (code, out, err) = ctl(&sock, &["host", "disable", "192.0.2.9"]);
    assert_eq!((code, out.as_str()), (1, "command failed\n"), "{err}");
    assert!(err.contains("no host named 192.0.2.9"), "{err}");
    assert_eq!(ctl(&sock, &["table", "disable", "99"]).0, 1);
    assert_eq!(
        ctl(&sock, &["redirect", "disable", "www"]).1,
        "command failed\n"
    );
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn disabling_works_for_tables_without_checks_too() {
    let backend = named_backend("127.0.0.1", 0, "a");
    named_backend("127.0.0.2", backend, "b");
    let port = free_port();
    let dir = temp_dir("unchecked");
    let conf = dir.join("u.conf");
    std::fs::write(
        &conf,
        format!(
            "prefork 1\ntable <plain> {{ 127.0.0.1, 127.0.0.2 }}\n\
             relay \"plain\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to <plain> port {backend}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let sock = dir.join("ctl.sock");
    let relay = Relay::start(&plan, &["-s", sock.to_str().unwrap()]);
    let seen: std::collections::BTreeSet<String> = (0..4).map(|_| name_from(port)).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    // relayd would go on balancing to a disabled host of a table without a check.
    wait_for("the control socket", || {
        ctl(&sock, &["show", "hosts"]).0 == 0
    });
    assert_eq!(ctl(&sock, &["host", "disable", "127.0.0.2"]).0, 0);
    for _ in 0..4 {
        assert_eq!(name_from(port), "a", "a disabled host got a session");
    }
    assert_eq!(ctl(&sock, &["host", "enable", "127.0.0.2"]).0, 0);
    let seen: std::collections::BTreeSet<String> = (0..4).map(|_| name_from(port)).collect();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        ctl(&sock, &["table", "disable", &format!("plain:{backend}")]).0,
        0
    );
    assert_eq!(name_from(port), "", "a disabled table got a session");
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn show_sessions_and_relay_statistics() {
    let backend = echo_backend();
    let port = free_port();
    let dir = temp_dir("sessions");
    let conf = dir.join("s.conf");
    std::fs::write(
        &conf,
        format!(
            "prefork 1\nrelay \"echo\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to 127.0.0.1 port {backend}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let sock = dir.join("ctl.sock");
    let relay = Relay::start(&plan, &["-s", sock.to_str().unwrap()]);
    let pid = relay.child.id();

    let mut c = connect_when_ready(port);
    c.write_all(b"ping").unwrap();
    let mut buf = [0u8; 4];
    c.read_exact(&mut buf).unwrap();
    let client_port = c.local_addr().unwrap().port();
    let (code, out, err) = ctl(&sock, &["show", "sessions"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(
        lines[0],
        format!("session 0:1 127.0.0.1:{client_port} -> 127.0.0.1:{backend}\tRUNNING")
    );
    assert!(
        lines[1].starts_with("\tage 00:00:0") && lines[1].contains(", idle 00:00:0"),
        "{out}"
    );
    assert!(
        lines[1].ends_with(&format!(", relay 1, pid {pid}")),
        "{out}"
    );
    let v = ctl_json(&sock, &["show", "sessions"]);
    assert_eq!(v["sessions"][0]["id"], 1);
    assert_eq!(v["sessions"][0]["client_port"], client_port);
    assert_eq!(v["sessions"][0]["backend_port"], backend);

    c.shutdown(Shutdown::Write).unwrap();
    let _ = c.read_to_end(&mut Vec::new());
    drop(c);
    wait_for("the session to end", || {
        ctl(&sock, &["show", "sessions"]).1.is_empty()
    });
    // A second session, then the statistics: both counted.
    let mut c = connect_when_ready(port);
    c.shutdown(Shutdown::Write).unwrap();
    let _ = c.read_to_end(&mut Vec::new());
    let (code, out, _) = ctl(&sock, &["show", "relays"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        "Id  \tType    \tName                    \tAvlblty\tStatus\n\
         1   \trelay   \techo                    \t       \tactive\n\
         \t        \ttotal: 2 sessions\n\
         \t        \tlast: 0/60s 0/h 0/d sessions\n\
         \t        \taverage: 0/60s 0/h 0/d sessions\n"
    );
    let v = ctl_json(&sock, &["show", "relays"]);
    assert_eq!(v["relays"][0]["stats"]["total"], 2);

    // `stop`: relayctl's answer, then the process ends as after SIGTERM.
    assert_eq!(ctl(&sock, &["stop"]).1, "command succeeded\n");
    let log = relay.wait_log("the end", |l| l.contains("parent terminating"));
    assert!(
        log.ends_with(&format!("parent terminating, pid {pid}\n")),
        "{log}"
    );
    let (code, _) = relay.terminate();
    assert_eq!(code, 0);
    assert!(!sock.exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn keywords_match_by_unique_prefix_with_relayctls_messages() {
    // Parsing happens before connecting: no relayd-run needed.
    let nowhere = Path::new("/nonexistent/relayctl-test.sock");
    let (code, out, err) = ctl(nowhere, &["s"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(
        err,
        "ambiguous argument: s\nvalid commands/args:\n  monitor\n  show\n  load\n  poll\n  reload\n  stop\n  redirect\n  table\n  host\n  log\n"
    );
    assert_eq!(
        ctl(nowhere, &["show", "summary", "extra"]),
        (1, String::new(), "superfluous argument: extra\n".into())
    );
    assert_eq!(
        ctl(nowhere, &["show", "x"]).2,
        "unknown argument: x\nvalid commands/args:\n  summary\n  hosts\n  redirects\n  relays\n  routers\n  sessions\n"
    );
    assert_eq!(
        ctl(nowhere, &["host", "enable"]).2,
        "missing argument:\nvalid commands/args:\n  <hostid>\n"
    );
    // A well-formed command with nobody listening: err(3)'s line.
    assert_eq!(
        ctl(nowhere, &["sh", "su"]),
        (
            1,
            String::new(),
            "relayctl: connect: /nonexistent/relayctl-test.sock: No such file or directory\n"
                .into()
        )
    );
}

#[test]
fn the_socket_is_0660_replaces_a_stale_one_and_goes_away_on_sigterm() {
    let backend = named_backend("127.0.0.1", 0, "a");
    let dir = temp_dir("socket");
    let sock = dir.join("ctl.sock");
    // A socket file left by a process that died: nobody answers on it.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let conf = dir.join("s.conf");
    let port = free_port();
    std::fs::write(
        &conf,
        format!(
            "prefork 1\nrelay \"r\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to 127.0.0.1 port {backend}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let relay = Relay::start(&plan, &["-s", sock.to_str().unwrap()]);
    assert_eq!(name_from(port), "a");
    wait_for("the control socket", || {
        ctl(&sock, &["show", "relays"]).0 == 0
    });
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o660);

    // A second instance may not take a live socket.
    let port2 = free_port();
    let conf2 = dir.join("s2.conf");
    std::fs::write(
        &conf2,
        format!(
            "prefork 1\nrelay \"r2\" {{\n\tlisten on 127.0.0.1 port {port2}\n\tforward to 127.0.0.1 port {backend}\n}}\n"
        ),
    )
    .unwrap();
    let plan2 = dir.join("plan2.bin");
    compile(&conf2, &[], &plan2);
    let second = Command::new(env!("CARGO_BIN_EXE_relayd-run"))
        .args(["-d", "--no-privdrop", "-s", sock.to_str().unwrap()])
        .arg(&plan2)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    assert_eq!(second.status.code(), Some(1));
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(
        err.contains("control socket") && err.contains("in use"),
        "{err}"
    );
    assert!(
        sock.exists(),
        "the second instance removed the first one's socket"
    );

    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    assert!(!sock.exists(), "the socket outlived the process");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn reload_refuses_a_corrupt_plan_and_the_relay_keeps_serving() {
    let backend = named_backend("127.0.0.1", 0, "a");
    let dir = temp_dir("reload");
    let conf = dir.join("r.conf");
    let port = free_port();
    std::fs::write(
        &conf,
        format!(
            "prefork 1\nrelay \"r\" {{\n\tlisten on 127.0.0.1 port {port}\n\tforward to 127.0.0.1 port {backend}\n}}\n"
        ),
    )
    .unwrap();
    let plan = dir.join("plan.bin");
    compile(&conf, &[], &plan);
    let sock = dir.join("ctl.sock");
    let relay = Relay::start(&plan, &["-s", sock.to_str().unwrap()]);
    assert_eq!(name_from(port), "a");

    let mut bytes = std::fs::read(&plan).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let bad = dir.join("bad.bin");
    std::fs::write(&bad, &bytes).unwrap();
    let (code, out, err) = ctl(&sock, &["reload", bad.to_str().unwrap()]);
    assert_eq!((code, out.as_str()), (1, "command failed\n"), "{err}");
    assert!(
        err.starts_with(&format!("relayctl: {}: ", bad.display())),
        "{err}"
    );
    assert_eq!(name_from(port), "a", "the relay stopped serving");

    // The running plan's own file reloads (tests/reload.rs covers what a reload does).
    let (code, out, err) = ctl(&sock, &["reload"]);
    assert_eq!((code, out.as_str()), (0, "command succeeded\n"), "{err}");
    let v = ctl_json_failing(&sock, &["load", bad.to_str().unwrap()]);
    assert_eq!(v["result"], "failed");
    assert!(v["reason"].as_str().unwrap().contains("bad.bin"), "{v}");
    assert_eq!(name_from(port), "a");
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}

fn ctl_json_failing(sock: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let (code, out, _) = ctl(sock, &all);
    assert_eq!(code, 1);
    serde_json::from_str(&out).unwrap()
}

#[test]
fn monitor_prints_host_state_changes() {
    // The backend port is chosen now and served later: the host starts down.
    let backend = free_port();
    let port = free_port();
    let (relay, sock, dir) = checked_relay("monitor", 1, port, backend);
    let pid = relay.child.id();
    wait_for("the first result", || {
        sock.exists() && state(&sock, "127.0.0.1") == "down"
    });
    let mut monitor = Command::new(RELAYCTL)
        .arg("-s")
        .arg(&sock)
        .arg("monitor")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = monitor.stdout.take().unwrap();
    let seen = Arc::new(Mutex::new(String::new()));
    let s = Arc::clone(&seen);
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    // Something to report: the host comes up, then is disabled by name.
    named_backend("127.0.0.1", backend, "a");
    let up = format!("host_status: imsg type 37 len 48 peerid 0 pid {pid}\n\ttimestamp: ");
    wait_for("the up event", || {
        let s = seen.lock().unwrap();
        s.contains(&up) && s.contains("\tid: 1\n\tstate: up\n")
    });
    assert_eq!(ctl(&sock, &["host", "disable", "127.0.0.1"]).0, 0);
    let disabled =
        format!("ctl_host_disable: imsg type 22 len 84 peerid 0 pid {pid}\n\ttimestamp: ");
    wait_for("the disable event", || {
        let s = seen.lock().unwrap();
        s.contains(&disabled) && s.contains("\tid: 1\n\tname: 127.0.0.1\n")
    });
    // Every event is relayctl's three or four lines, the timestamp with ctime's text.
    {
        let s = seen.lock().unwrap();
        let stamp = s
            .lines()
            .find(|l| l.starts_with("\ttimestamp: "))
            .unwrap()
            .to_string();
        let (secs, when) = stamp["\ttimestamp: ".len()..].split_once(", ").unwrap();
        assert!(secs.parse::<u64>().is_ok(), "{stamp}");
        assert_eq!(when.len(), 24, "{stamp}");
    }
    let _ = monitor.kill();
    let _ = monitor.wait();
    let _ = reader.join();
    let (code, log) = relay.terminate();
    assert_eq!(code, 0, "{log}");
    let _ = std::fs::remove_dir_all(&dir);
}
