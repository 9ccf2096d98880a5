//! What the end-to-end tests share: temporary directories, free ports, compiling a
//! config with relaydc's CLI entry point, and a `relayd-run -d` child process whose
//! stderr is collected, waited on with bounds, and stopped by its pid.

#![allow(
    dead_code,
    reason = "each test file uses its own part of these helpers"
)]

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_relayd-run");

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub fn temp_dir(tag: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let d = std::env::temp_dir().join(format!(
        "relayd-run-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A port nobody listens on right now, never the same twice in this test process:
/// relays bind with SO_REUSEPORT, so two tests handed one port would share connections.
pub fn free_port() -> u16 {
    static HANDED: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut handed = HANDED.lock().unwrap();
        if !handed.contains(&port) {
            handed.push(port);
            return port;
        }
    }
}

pub fn compile(conf: &Path, defines: &[String], out: &Path) {
    let mut argv: Vec<String> = vec!["relaydc".into(), "compile".into()];
    for d in defines {
        argv.push("-D".into());
        argv.push(d.clone());
    }
    argv.push(conf.to_string_lossy().into());
    argv.push("-o".into());
    argv.push(out.to_string_lossy().into());
    let (mut o, mut e) = (Vec::new(), Vec::new());
    let code = relaydc::cli::run(argv.into_iter().map(Into::into).collect(), &mut o, &mut e);
    assert_eq!(code, 0, "compile: {}", String::from_utf8_lossy(&e));
}

/// Tests run as root: relayd-run stays root (`--no-privdrop`) unless the test names a
/// user to drop to (`-u`).
pub fn privdrop(extra: &[&str]) -> Option<&'static str> {
    (!extra.contains(&"-u")).then_some("--no-privdrop")
}

/// relayd-run in the foreground; its stderr collected by a thread.
pub struct Relay {
    pub child: Child,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl Relay {
    pub fn start(plan: &Path, extra: &[&str]) -> Relay {
        let mut child = Command::new(BIN)
            .arg("-d")
            .args(privdrop(extra))
            .args(extra)
            .arg(plan)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start relayd-run");
        let mut err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let l = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                l.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Relay {
            child,
            log,
            reader: Some(reader),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits (bounded) until `pred` holds for the log.
    pub fn wait_log(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            let l = self.log();
            if pred(&l) {
                return l;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}; log:\n{}", self.log());
    }

    /// SIGTERM by pid (ours), then the exit status, bounded.
    pub fn terminate(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        // The shell's builtin `kill`: no procps needed.
        let _ = Command::new("sh")
            .args(["-c", &format!("kill -TERM {pid}")])
            .status();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            if t0.elapsed() > Duration::from_secs(20) {
                let _ = self.child.kill();
                panic!(
                    "relayd-run did not stop after SIGTERM; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        (status.code().unwrap_or(-1), self.log())
    }
}

impl Relay {
    /// `relayd-run -d` started through `prefix` (`ip netns exec NAME`, say), which must
    /// exec it in place, so that the child's pid is relayd-run's and `terminate` and
    /// `Drop` stop relayd-run itself.
    pub fn start_via(prefix: &[&str], plan: &Path, extra: &[&str]) -> Relay {
        let (first, rest) = prefix.split_first().expect("a command prefix");
        let mut child = Command::new(first)
            .args(rest)
            .arg(BIN)
            .arg("-d")
            .args(privdrop(extra))
            .args(extra)
            .arg(plan)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start relayd-run");
        let mut err = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let l = Arc::clone(&log);
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                l.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Relay {
            child,
            log,
            reader: Some(reader),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

pub fn connect_when_ready(port: u16) -> TcpStream {
    let t0 = Instant::now();
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => {
                s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
                return s;
            }
            Err(_) if t0.elapsed() < Duration::from_secs(10) => {
                std::thread::sleep(Duration::from_millis(20))
            }
            Err(e) => panic!("relay on {port} never accepted: {e}"),
        }
    }
}

/// Runs a command quietly; whether it succeeded (for `ip`/`nft` probes and cleanup).
pub fn sh(args: &[&str]) -> bool {
    Command::new(args[0])
        .args(&args[1..])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Runs a command that must succeed (namespace set-up), failing the test with its stderr.
pub fn run(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Polls `f` every 100 ms until it gives a value, at most `secs` seconds.
pub fn until<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let t0 = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
