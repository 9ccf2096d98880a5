//! One worker thread: a single-threaded tokio runtime, its own listeners, its own
//! sessions and counters. Nothing here is shared with other workers except the plan
//! and the host states (read-only on the request path).

use super::listen::Bound;
use super::{pool, session, GRACE};
use crate::control::registry::{Query, Registry};
use crate::log;
use relaydc_spec::plan::{Check, Plan};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::task::LocalSet;

/// What all workers share: the plan and the host states.
pub struct Shared {
    pub plan: Plan,
    /// Whether each host (by index) is up. Hosts of tables without a check count as up;
    /// the others stay down until health checks report them (relayd's "unknown").
    pub host_up: Vec<AtomicBool>,
    /// `relay_launch` is logged once per relay, by whichever worker is first.
    launched: Vec<AtomicBool>,
    /// Each relay's hash key: the plan's, or one drawn at start (as relayd draws one at
    /// every load), the same for every worker so they agree on every client's host.
    pub relay_keys: Vec<[u8; 16]>,
    /// Per table: disabled (in the configuration or by `relayctl table disable`).
    pub table_disabled: Vec<AtomicBool>,
    /// Per table without a check: relayctl disabled the table or one of its hosts, so
    /// balancing follows `host_up` for it from then on (see `control::board`).
    pub table_gated: Vec<AtomicBool>,
    /// Host and table states for the control socket, and `monitor`'s events; written by
    /// the health loop and the control task, never on the request path.
    pub status: crate::control::board::Status,
}

impl Shared {
    pub fn new(plan: Plan) -> Shared {
        let host_up = plan
            .hosts
            .iter()
            .map(|h| {
                let unchecked = plan
                    .tables
                    .get(h.table as usize)
                    .is_some_and(|t| matches!(t.check, Check::None) && !t.disabled);
                AtomicBool::new(unchecked)
            })
            .collect();
        let launched = plan.relays.iter().map(|_| AtomicBool::new(false)).collect();
        // relayd uses the key of the relay's first forward that has one.
        let relay_keys = plan
            .relays
            .iter()
            .map(|r| {
                r.forwards
                    .iter()
                    .find_map(|f| match &f.target {
                        relaydc_spec::plan::Target::Table { key: Some(k), .. } => Some(*k),
                        _ => None,
                    })
                    .unwrap_or_else(random_key)
            })
            .collect();
        let table_disabled = plan
            .tables
            .iter()
            .map(|t| AtomicBool::new(t.disabled))
            .collect();
        let table_gated = plan.tables.iter().map(|_| AtomicBool::new(false)).collect();
        let status = crate::control::board::Status::new(&plan);
        Shared {
            plan,
            host_up,
            launched,
            relay_keys,
            table_disabled,
            table_gated,
            status,
        }
    }
}

/// 16 bytes from the kernel's random source (`/dev/urandom`); only at start.
pub fn random_key() -> [u8; 16] {
    use std::io::Read;
    let mut k = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut k);
    }
    k
}

/// Per-worker state (relayd's per-process globals).
pub struct Worker {
    pub shared: Arc<Shared>,
    next_id: Cell<u32>,
    /// relayd's `relay_sessions`: sessions of this worker, all relays.
    pub active: Cell<u32>,
    pub pools: RefCell<pool::Pools>,
    pub buffers: session::BufPool,
    /// Empty pipes for spliced TCP sessions.
    pub pipes: super::splice::PipePool,
    /// Live sessions and relay statistics, for `relayctl show sessions|relays`.
    pub registry: Rc<Registry>,
}

impl Worker {
    /// Whether the relay's protocol is an http protocol (filters run only there).
    pub fn is_http(&self, relay: usize) -> bool {
        let plan = &self.shared.plan;
        plan.relays
            .get(relay)
            .and_then(|r| r.protocol)
            .and_then(|p| plan.protocols.get(p as usize))
            .is_some_and(|p| matches!(p.kind, relaydc_spec::plan::ProtocolKind::Http))
    }

    pub fn next_session_id(&self) -> u32 {
        let id = self.next_id.get().wrapping_add(1);
        self.next_id.set(id);
        id
    }
}

/// Runs worker `index` until `stop`; `queries` are the control socket's questions.
pub fn run(
    shared: Arc<Shared>,
    index: usize,
    sockets: Vec<Bound>,
    stop: watch::Receiver<bool>,
    queries: mpsc::Receiver<Query>,
) {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            log::warn(&format!("worker runtime: {e}"));
            return;
        }
    };
    let local = LocalSet::new();
    let seed = random_key();
    let pools = pool::Pools::new(
        &shared.plan,
        u64::from_le_bytes([
            seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
        ]),
    );
    let registry = Rc::new(Registry::new(
        &shared.plan,
        u32::try_from(index).unwrap_or(u32::MAX),
    ));
    let worker = Rc::new(Worker {
        shared,
        next_id: Cell::new(0),
        active: Cell::new(0),
        pools: RefCell::new(pools),
        buffers: session::BufPool::default(),
        pipes: super::splice::PipePool::default(),
        registry: Rc::clone(&registry),
    });
    local.block_on(&rt, async move {
        tokio::task::spawn_local(crate::control::registry::serve(registry, queries));
        for b in sockets {
            let listener = match tokio::net::TcpListener::from_std(b.socket) {
                Ok(l) => l,
                Err(e) => {
                    log::warn(&format!("listener: {e}"));
                    continue;
                }
            };
            let w = Rc::clone(&worker);
            let stop = stop.clone();
            tokio::task::spawn_local(accept(w, b.relay, b.listener, listener, stop));
        }
        let mut stop = stop;
        while !*stop.borrow() {
            if stop.changed().await.is_err() {
                break;
            }
        }
        // Stopped accepting (the accept loops saw the same signal); let sessions end.
        let deadline = tokio::time::Instant::now() + GRACE;
        while worker.active.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
}

async fn accept(
    w: Rc<Worker>,
    relay: usize,
    listener_index: usize,
    listener: tokio::net::TcpListener,
    mut stop: watch::Receiver<bool>,
) {
    if let Some(flag) = w.shared.launched.get(relay) {
        if !flag.swap(true, Ordering::Relaxed) {
            let name = &w.shared.plan.relays[relay].name;
            log::debug2(&format!("relay_launch: running relay {name}"));
        }
    }
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let w = Rc::clone(&w);
                    if w.is_http(relay) {
                        tokio::task::spawn_local(super::http::run(w, relay, listener_index, stream, peer));
                    } else {
                        tokio::task::spawn_local(session::run(w, relay, listener_index, stream, peer));
                    }
                }
                Err(e) => {
                    log::debug(&format!("relay {}: accept: {e}", w.shared.plan.relays[relay].name));
                    // EMFILE and friends: back off instead of spinning.
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            },
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
    }
}
