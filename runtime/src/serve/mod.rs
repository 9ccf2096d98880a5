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
//! SIGHUP and `relayctl reload [PLAN]` replace the running plan ([`reload`]).
//!
//! What is served today: TCP relays (the default protocol and `tcp protocol`s), HTTP
//! relays (`http protocol`s, with their filter rules) and DNS relays (`dns protocol`s,
//! over UDP: `dns.rs`) forwarding to an address or to tables, with TLS on either side
//! (`crate::tls`); TCP and HTTP relays also to the destination a connection names
//! (`nat lookup`, `destination`) and transparently (`origin.rs`). Redirects and routers
//! go through the privileged helper (`crate::redirect::pfe`, started before privileges
//! are dropped; the rules go at SIGTERM, before sessions are waited for), and so do the
//! sockets of transparent forwards (a helper of their own). Plans that need more (DNS
//! relays forwarding to nat lookup, to the destination or transparently) are refused at
//! start with a sentence saying which relay needs what, rather than served wrongly.

pub(crate) mod dns;
mod http;
pub mod limits;
mod listen;
mod minttl;
mod origin;
pub(crate) mod pool;
pub mod reload;
mod session;
mod splice;
mod worker;

use crate::{control, health, log};
use arc_swap::ArcSwap;
use relaydc_spec::plan::{Plan, Target};
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
    // relayd's UDP relays take these paths too; here DNS relays forward to tables and
    // addresses only.
    for (i, r) in plan.relays.iter().enumerate() {
        if r.disabled || !listen::is_udp(plan, i) {
            continue;
        }
        for f in &r.forwards {
            match f.target {
                Target::NatLookup { .. } => {
                    missing.push(format!("dns relay {} forwards to nat lookup", r.name))
                }
                Target::Destination { .. } => {
                    missing.push(format!("dns relay {} forwards to destination", r.name))
                }
                _ => {}
            }
            if f.transparent {
                missing.push(format!("dns relay {} forwards transparently", r.name));
            }
        }
    }
    missing.extend(origin::unavailable(plan));
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
    /// The plan's file: what SIGHUP and `relayctl reload` without a file load.
    pub plan_path: PathBuf,
    /// The signer process holding the plan's private keys (none without keys).
    pub signer: Option<crate::signer::Signer>,
    /// Whom to become once every socket is bound (`-u`, `--no-privdrop`).
    pub privileges: crate::privs::Privileges,
    /// `--head-timeout`: the request-head deadline (`None` is off).
    pub head_timeout: Option<Duration>,
    /// `--max-sessions`: the per-worker cap; `None` is what the open-file limit allows.
    pub max_sessions: Option<u32>,
    /// Install the relay process's seccomp filter after the privilege drop
    /// (`crate::seccomp`; off with `--no-seccomp`). Off by default: it confines the
    /// calling process for good, which a library user rarely wants.
    pub seccomp: bool,
}

/// Runs the plan until SIGTERM/SIGINT (or `relayctl stop`). Returns once everything has
/// stopped.
pub fn serve(plan: Plan, opts: &Options) -> Result<(), ServeError> {
    servable(&plan)?;
    // Keypairs and CAs load before any socket is bound: one that fails refuses the plan.
    let keys = match &opts.signer {
        Some(s) => crate::tls::KeySource::Signer(s),
        None => crate::tls::KeySource::None,
    };
    let tls = crate::tls::build(&plan, keys).map_err(ServeError::Start)?;
    let workers = plan.globals.prefork.max(1) as usize;
    let nofile = limits::raise_nofile();
    let limits = limits::Limits {
        head_timeout: opts.head_timeout,
        max_sessions: opts
            .max_sessions
            .unwrap_or_else(|| limits::default_max_sessions(nofile, workers)),
    };
    log::debug(&format!(
        "limits: {nofile} open files, {} sessions per worker, request heads within {}",
        limits.max_sessions,
        limits
            .head_timeout
            .map_or_else(|| "any time".to_string(), |d| format!("{} s", d.as_secs()))
    ));
    // Every worker's sockets, bound before anything runs.
    let mut sockets = Vec::with_capacity(workers);
    for _ in 0..workers {
        sockets.push(listen::bind_all(&plan)?);
    }
    let socket = control_socket(opts.socket.as_deref(), &plan.globals.socket)?;
    // Redirects and routers: the privileged helper, started while this process still
    // has the capabilities it keeps (CAP_NET_ADMIN alone), with the table in place.
    // Dropped on any early return, it removes what it made.
    let network = if crate::redirect::pfe::needed(&plan) {
        let net = crate::redirect::pfe::Network::start(&plan, &opts.privileges)
            .map_err(ServeError::Start)?;
        Some(Arc::new(net))
    } else {
        None
    };
    // Transparent forwards: a helper that makes bound sockets, one channel per relay
    // thread, started for the same reason as the one above. Dropped at the end of
    // serve (or on an early return), it exits.
    let bindany = if origin::needs_bindany(&plan) {
        let helper = crate::helper::Helper::start(
            crate::router::Remit::default(),
            &crate::helper::Options {
                privileges: opts.privileges.clone(),
                bindany: u32::try_from(workers).unwrap_or(u32::MAX),
                ..crate::helper::Options::default()
            },
        )
        .map_err(|e| ServeError::Start(format!("transparent forwarding: {e}")))?;
        log::debug(&format!(
            "privileged helper (bindany): pid {}",
            helper.pid()
        ));
        origin::install(Some(helper.take_bindany()));
        Some(helper)
    } else {
        origin::install(None);
        None
    };
    // Every socket is bound and no thread runs yet (capabilities are per thread).
    opts.privileges
        .apply()
        .map_err(|e| ServeError::Start(e.to_string()))?;
    // Still one thread: the filter is inherited by every thread made from here on, all
    // but the script runner, which must stay outside it.
    if opts.seccomp {
        crate::seccomp::enter_relay(|| {
            if health::script::needed(&plan) {
                health::script::start_runner()
            } else {
                Ok(())
            }
        })
        .map_err(|e| ServeError::Start(e.to_string()))?;
        log::debug(&format!(
            "seccomp: {} system calls allowed, others refused",
            crate::seccomp::allowed(crate::seccomp::Profile::Relay).len()
        ));
    }
    let mut shared = worker::Shared::new(plan);
    shared.tls = tls;
    let shared = Arc::new(shared);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut threads = Vec::with_capacity(workers);
    let mut queries = Vec::with_capacity(workers);
    let mut reloads = Vec::with_capacity(workers);
    for (n, socks) in sockets.into_iter().enumerate() {
        let shared = Arc::clone(&shared);
        let stop = stop_rx.clone();
        let (query_tx, query_rx) = tokio::sync::mpsc::channel(8);
        queries.push(query_tx);
        let (reload_tx, reload_rx) = tokio::sync::mpsc::channel(1);
        reloads.push(reload_tx);
        let t = std::thread::Builder::new()
            .name(format!("relay {}", n + 1))
            .spawn(move || worker::run(shared, n, socks, stop, query_rx, reload_rx, limits))
            .map_err(|e| ServeError::Start(e.to_string()))?;
        threads.push(t);
    }
    let (health_tx, health_rx) = tokio::sync::mpsc::channel(16);
    let current = Arc::new(ArcSwap::new(Arc::clone(&shared)));
    let reloader = reload::Reloader::new(
        Arc::clone(&current),
        opts.plan_path.clone(),
        reloads,
        health_tx.clone(),
        crate::bind::Root::default(),
        opts.signer.clone(),
    )
    .with_network(network.clone());
    let ctl = control::server::Control {
        current,
        reloader: Arc::new(reloader),
        health: health_tx,
        workers: queries,
        stop: Arc::new(tokio::sync::Notify::new()),
        network: network.clone(),
    };
    let waited = wait_for_signal(Arc::clone(&shared), health_rx, ctl, socket);
    // Redirected traffic does not wait for sessions to finish: the rules go first.
    if let Some(net) = &network {
        net.shutdown();
    }
    crate::notify::stopping();
    let _ = stop_tx.send(true);
    for t in threads {
        let _ = t.join();
    }
    drop(bindany);
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

/// Runs the health checks, the control socket and reloads on SIGHUP on this (the main)
/// thread until SIGTERM/SIGINT or `relayctl stop`.
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
    let reloader = Arc::clone(&ctl.reloader);
    let network = ctl.network.clone().map(|n| (n, Arc::clone(&ctl.current)));
    let ctl = Arc::new(ctl);
    rt.block_on(async {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term =
            signal(SignalKind::terminate()).map_err(|e| ServeError::Start(e.to_string()))?;
        let mut int =
            signal(SignalKind::interrupt()).map_err(|e| ServeError::Start(e.to_string()))?;
        let mut hup = signal(SignalKind::hangup()).map_err(|e| ServeError::Start(e.to_string()))?;
        let launched = Arc::clone(&shared);
        let ready = async move {
            // Bounded: a listener a worker could not take must not hold systemd up.
            let t0 = tokio::time::Instant::now();
            while !launched.launched_all() && t0.elapsed() < Duration::from_secs(5) {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            crate::notify::ready();
            std::future::pending::<()>().await
        };
        let checks = health::run(shared, log::foreground(), commands);
        let hangups = async {
            while hup.recv().await.is_some() {
                // A task of its own: a SIGHUP during a reload finds it running and is
                // ignored, and the health loop keeps running meanwhile.
                let reloader = Arc::clone(&reloader);
                tokio::spawn(async move {
                    let _ = reloader.reload(None).await;
                });
            }
        };
        let control = async {
            match socket.as_mut() {
                Some(s) => control::server::run(ctl, s).await,
                None => std::future::pending().await,
            }
        };
        let pfe = async {
            match network {
                Some((net, current)) => {
                    crate::redirect::pfe::run(net, current, log::foreground()).await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = pfe => {}
            _ = term.recv() => {}
            _ = int.recv() => {}
            _ = stop.notified() => {}
            _ = checks => {}
            _ = control => {}
            _ = hangups => {}
            _ = ready => {}
        }
        Ok(())
    })
}
