//! Serving a plan: the process model.
//!
//! `prefork N` becomes N worker threads, each with its own single-threaded tokio runtime
//! and its own SO_REUSEPORT listener per relay listener, so nothing on the request path
//! is shared or locked; each worker keeps its own counters (session ids, active
//! sessions, round-robin indexes) as each relayd relay process does. The main thread
//! binds every socket first (a failure stops everything before any line says
//! "running"), then waits for SIGTERM/SIGINT: workers stop accepting, sessions get
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

use crate::{health, log};
use relaydc_spec::plan::{Plan, ProtocolKind, Target};
use std::fmt;
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

/// Runs the plan until SIGTERM/SIGINT. Returns once everything has stopped.
pub fn serve(plan: Plan) -> Result<(), ServeError> {
    servable(&plan)?;
    warn_unchecked_tables(&plan);
    let workers = plan.globals.prefork.max(1) as usize;
    // Every worker's sockets, bound before anything runs.
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers {
        sockets.push(listen::bind_all(&plan)?);
    }
    let shared = Arc::new(worker::Shared::new(plan));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut threads = Vec::with_capacity(workers);
    for (n, socks) in sockets.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let stop = stop_rx.clone();
        let t = std::thread::Builder::new()
            .name(format!("relay {}", n + 1))
            .spawn(move || worker::run(shared, socks, stop))
            .map_err(|e| ServeError::Start(e.to_string()))?;
        threads.push(t);
    }
    wait_for_signal(Arc::clone(&shared))?;
    let _ = stop_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    log::info(&format!("parent terminating, pid {}", std::process::id()));
    Ok(())
}

/// Runs the health checks on this (the main) thread until SIGTERM/SIGINT.
fn wait_for_signal(shared: Arc<Shared>) -> Result<(), ServeError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| ServeError::Start(e.to_string()))?;
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| ServeError::Start(e.to_string()))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(|e| ServeError::Start(e.to_string()))?;
        let checks = health::run(shared, log::foreground());
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = checks => {}
        }
        Ok(())
    })
}

/// Check kinds not built yet leave their hosts "unknown", which relayd never balances
/// to. Say so once at start.
fn warn_unchecked_tables(plan: &Plan) {
    for t in &plan.tables {
        if !matches!(t.check, relaydc_spec::plan::Check::None) && !health::runs(&t.check) {
            log::warn(&format!(
                "table {}: this version does not run its kind of health check; its hosts stay unknown and receive no sessions",
                t.name
            ));
        }
    }
}
