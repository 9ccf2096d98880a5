//! Serving a plan: the process model.
//!
//! `prefork N` becomes N worker threads, each with its own single-threaded tokio runtime
//! and its own SO_REUSEPORT listener per relay listener, so nothing on the request path
//! is shared or locked; each worker keeps its own counters (session ids, active
//! sessions, round-robin indexes) as each relayd relay process does. The main thread
//! binds every socket first (a failure stops everything before any line says
//! "running"), then runs the health checks and the control socket (`crate::control`)
//! until SIGTERM/SIGINT or `relayctl stop`: workers stop accepting, sessions get
//! [`GRACE`] to finish, and the process logs `parent terminating, pid N` and exits 0.
//!
//! What is served today: TCP relays (the default protocol and `tcp protocol`s) and HTTP
//! relays (`http protocol`s, with their filter rules) forwarding to an address or to
//! tables. Plans that need more (HTTP filtering, TLS, DNS, NAT
//! lookup, redirects, routers) are refused at start with a sentence saying which relay
//! needs what, rather than served wrongly.

mod http;
mod listen;
mod minttl;
mod pool;
mod session;
mod splice;
mod worker;

use crate::{control, health, log};
use relaydc_spec::plan::{Plan, ProtocolKind, Target};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
pub use worker::Shared;

/// How long sessions may run on after SIGTERM before the process exits anyway.
pub const GRACE: Duration = Duration::from_secs(10);

/// Why a plan cannot be served by this version.
#[derive(Debug)]
pub enum ServeError {
    /// A relay needs something not built yet.
    Unsupported(String),
    /// A listener could not be bound.
    Bind(String),
    /// Threads or runtimes could not be started.
    Start(String),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Unsupported(s) => write!(f, "{s}"),
            ServeError::Bind(s) => write!(f, "{s}"),
            ServeError::Start(s) => write!(f, "cannot start: {s}"),
        }
    }
}

/// Refuses what this version cannot run faithfully.
pub fn servable(plan: &Plan) -> Result<(), ServeError> {
    let mut missing = Vec::new();
    for r in plan.relays.iter().filter(|r| !r.disabled) {
        let proto = r.protocol.and_then(|p| plan.protocols.get(p as usize));
        if let Some(ProtocolKind::Dns) = proto.map(|p| &p.kind) {
            missing.push(format!("relay {} uses a dns protocol", r.name));
        }
        if r.listeners.iter().any(|l| l.tls) || r.forwards.iter().any(|f| f.tls) {
            missing.push(format!("relay {} uses TLS", r.name));
        }
        for f in &r.forwards {
            match f.target {
                Target::NatLookup { .. } => {
                    missing.push(format!("relay {} forwards to nat lookup", r.name))
                }
                Target::Destination { .. } => {
                    missing.push(format!("relay {} forwards to destination", r.name))
                }
                _ => {}
            }
            if f.transparent {
                missing.push(format!("relay {} forwards transparently", r.name));
            }
        }
    }
    if plan.redirects.iter().any(|r| !r.disabled) {
        missing.push("the plan has redirects".into());
    }
    if plan.routers.iter().any(|r| !r.disabled) {
        missing.push("the plan has routers".into());
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(ServeError::Unsupported(format!(
            "this relayd-run cannot serve the plan yet: {}",
            missing.join("; ")
        )))
    }
}

/// How to serve, besides the plan.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `-s`: the control socket.
    pub socket: Option<PathBuf>,
    /// The plan's file: what `relayctl reload` checks when given no file.
    pub plan_path: PathBuf,
}

/// Runs the plan until SIGTERM/SIGINT (or `relayctl stop`). Returns once everything has
/// stopped.
pub fn serve(plan: Plan, opts: &Options) -> Result<(), ServeError> {
    servable(&plan)?;
    let workers = plan.globals.prefork.max(1) as usize;
    // Every worker's sockets, bound before anything runs.
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers {
        sockets.push(listen::bind_all(&plan)?);
    }
    let socket = control_socket(opts.socket.as_deref(), &plan.globals.socket)?;
    let shared = Arc::new(worker::Shared::new(plan));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut threads = Vec::with_capacity(workers);
    let mut queries = Vec::with_capacity(workers);
    for (n, socks) in sockets.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let stop = stop_rx.clone();
        let (query_tx, query_rx) = tokio::sync::mpsc::channel(8);
        queries.push(query_tx);
        let t = std::thread::Builder::new()
            .name(format!("relay {}", n + 1))
            .spawn(move || worker::run(shared, n, socks, stop, query_rx))
            .map_err(|e| ServeError::Start(e.to_string()))?;
        threads.push(t);
    }
    let (health_tx, health_rx) = tokio::sync::mpsc::channel(16);
    let ctl = control::server::Control {
        shared: Arc::clone(&shared),
        health: health_tx,
        workers: queries,
        plan_path: opts.plan_path.clone(),
        stop: Arc::new(tokio::sync::Notify::new()),
    };
    let waited = wait_for_signal(Arc::clone(&shared), health_rx, ctl, socket);
    let _ = stop_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    waited?;
    log::info(&format!("parent terminating, pid {}", std::process::id()));
    Ok(())
}

/// Binds the control socket. Only a socket that was asked for (`-s`, or `socket` in the
/// configuration) must be had; without one at the default place the process runs on
/// and says so.
fn control_socket(
    arg: Option<&Path>,
    configured: &str,
) -> Result<Option<control::server::Socket>, ServeError> {
    let (path, asked) = control::socket_path(arg, configured);
    match control::server::Socket::bind(&path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if asked => Err(ServeError::Bind(format!(
            "control socket {}: {e}",
            path.display()
        ))),
        Err(e) => {
            log::warn(&format!(
                "control socket {}: {e}; relayctl cannot reach this process",
                path.display()
            ));
            Ok(None)
        }
    }
}

/// Runs the health checks and the control socket on this (the main) thread until
/// SIGTERM/SIGINT or `relayctl stop`.
fn wait_for_signal(
    shared: Arc<Shared>,
    commands: tokio::sync::mpsc::Receiver<control::board::Command>,
    ctl: control::server::Control,
    mut socket: Option<control::server::Socket>,
) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Start(e.to_string()))?;
    let stop = Arc::clone(&ctl.stop);
    let ctl = Arc::new(ctl);
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| ServeError::Start(e.to_string()))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(|e| ServeError::Start(e.to_string()))?;
        let checks = health::run(shared, log::foreground(), commands);
        let control = async {
            match socket.as_mut() {
                Some(s) => control::server::run(ctl, s).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = stop.notified() => {}
            _ = checks => {}
            _ = control => {}
        }
        Ok(())
    })
}

/// `relayctl reload [PLAN]`: whether the plan could replace the running one (it loads,
/// every check passes, and this version can serve it).
pub fn check_reload(path: &Path) -> Result<(), String> {
    let loaded = crate::plan::load(path).map_err(|e| e.to_string())?;
    servable(&loaded.plan).map_err(|e| e.to_string())
}
