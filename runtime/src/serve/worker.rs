//! One worker thread: a single-threaded tokio runtime, its own listeners, its own
//! sessions and counters. Nothing here is shared with other workers except the plan
//! and the host states (read-only on the request path).

use super::limits::Limits;
use super::listen::{Bound, Endpoint, Socket2};
use super::{pool, session, GRACE};
use crate::control::registry::{self, Query, Registry};
use crate::log;
use relaydc_spec::plan::{Check, Plan};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, watch, Notify};
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
    /// Each relay's TLS (acceptors, backend connectors, inspection), built from the
    /// plan and its keys before the plan is served (`crate::tls::build`).
    pub tls: crate::tls::PlanTls,
}

impl Shared {
    pub fn new(plan: Plan) -> Shared {
        let status = crate::control::board::Status::new(&plan);
        Shared::with_status(plan, status)
    }

    /// The state of a plan that replaces `old`'s: `relayctl monitor` clients keep their
    /// event stream across the reload.
    pub fn following(plan: Plan, old: &Shared) -> Shared {
        let status = crate::control::board::Status::with_events(&plan, old.status.events.clone());
        Shared::with_status(plan, status)
    }

    fn with_status(plan: Plan, status: crate::control::board::Status) -> Shared {
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
        Shared {
            plan,
            host_up,
            launched,
            relay_keys,
            table_disabled,
            table_gated,
            status,
            tls: crate::tls::PlanTls::default(),
        }
    }
}

impl Shared {
    /// Whether every enabled relay with a listener has logged `relay_launch` (a worker
    /// accepts on it): when the service is ready (`crate::notify`).
    pub fn launched_all(&self) -> bool {
        self.plan
            .relays
            .iter()
            .zip(&self.launched)
            .all(|(r, l)| r.disabled || r.listeners.is_empty() || l.load(Ordering::Relaxed))
    }
}

/// 16 bytes from the kernel's random source (`/dev/urandom`); only at start and reloads.
pub fn random_key() -> [u8; 16] {
    use std::io::Read;
    let mut k = [0u8; 16];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        let _ = f.read_exact(&mut k);
    }
    k
}

/// What a worker thread keeps whatever plan it serves (relayd's per-process globals).
pub struct Local {
    next_id: Cell<u32>,
    /// relayd's `relay_sessions`: sessions of this worker, all relays, all plans.
    pub active: Cell<u32>,
    pub buffers: session::BufPool,
    /// HTTP sessions' read buffers, heads and head readers.
    pub read_bufs: session::ReadBufs,
    pub(super) scratch: super::http::ScratchPool,
    /// Empty pipes for spliced TCP sessions.
    pub pipes: super::splice::PipePool,
    /// The head deadline and the session cap (`super::limits`).
    pub limits: Limits,
    /// Accept loops waiting for a session to end: at the cap, or deferred after EMFILE.
    waiting: Cell<bool>,
    freed: Notify,
}

impl Local {
    pub fn next_session_id(&self) -> u32 {
        let id = self.next_id.get().wrapping_add(1);
        self.next_id.set(id);
        id
    }

    /// A session ended: an accept loop waiting for room may go on. Waking is only paid
    /// for when a loop waits.
    fn release(&self) {
        self.active.set(self.active.get().saturating_sub(1));
        if self.waiting.replace(false) {
            self.freed.notify_waiters();
        }
    }

    /// Resolves once a session ends (the caller rechecks what it waited for).
    async fn session_ended(&self) {
        let ended = self.freed.notified();
        self.waiting.set(true);
        ended.await;
    }
}

/// A session's place in its worker's count (relayd's `relay_sessions`): taken when the
/// connection is accepted (or the datagram received), given back when the session
/// ends, its task dropped included.
pub struct Slot {
    local: Rc<Local>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.local.release();
    }
}

/// One plan as one worker thread serves it. A session holds the `Worker` it was accepted
/// with until it ends, so a reload never changes the plan, the balancing state or the
/// relay ids under it; what outlives plans is reached through `Deref` ([`Local`]).
pub struct Worker {
    pub shared: Arc<Shared>,
    /// Balancing state for this plan's relays, listeners and forwards.
    pub pools: RefCell<pool::Pools>,
    /// Live sessions and relay statistics, for `relayctl show sessions|relays`.
    pub registry: registry::View,
    local: Rc<Local>,
}

impl std::ops::Deref for Worker {
    type Target = Local;

    fn deref(&self) -> &Local {
        &self.local
    }
}

impl Worker {
    /// `shared`'s plan on this thread: fresh balancing state (relayd rebuilds its relays
    /// on a reload) and statistics from zero.
    fn new(shared: Arc<Shared>, local: &Rc<Local>, registry: &Rc<Registry>) -> Worker {
        let seed = random_key();
        let pools = pool::Pools::new(
            &shared.plan,
            u64::from_le_bytes([
                seed[0], seed[1], seed[2], seed[3], seed[4], seed[5], seed[6], seed[7],
            ]),
        );
        let registry = registry.replan(&shared.plan);
        Worker {
            shared,
            pools: RefCell::new(pools),
            registry,
            local: Rc::clone(local),
        }
    }

    /// Counts a new session in; it counts until the slot is dropped.
    pub fn slot(&self) -> Slot {
        self.local.active.set(self.local.active.get() + 1);
        Slot {
            local: Rc::clone(&self.local),
        }
    }

    /// Whether the relay's protocol is an http protocol (filters run only there).
    pub fn is_http(&self, relay: usize) -> bool {
        let plan = &self.shared.plan;
        plan.relays
            .get(relay)
            .and_then(|r| r.protocol)
            .and_then(|p| plan.protocols.get(p as usize))
            .is_some_and(|p| matches!(p.kind, relaydc_spec::plan::ProtocolKind::Http))
    }
}

/// A new plan for a worker, already swapped in: its state, and this worker's sockets for
/// the listeners the running plan did not have (bound before anything changed).
pub struct Reload {
    pub shared: Arc<Shared>,
    pub sockets: Vec<Bound>,
    /// Answered once the worker accepts for the new plan and has closed the sockets the
    /// plan dropped.
    pub done: oneshot::Sender<()>,
}

/// A socket and the task serving it for the current plan.
struct Listening {
    at: Endpoint,
    socket: Sock,
    task: tokio::task::JoinHandle<()>,
}

/// A worker's registered socket: accepting (TCP relays) or receiving (DNS relays).
#[derive(Clone)]
enum Sock {
    Tcp(Rc<tokio::net::TcpListener>),
    Udp(Rc<tokio::net::UdpSocket>),
}

/// Runs worker `index` until `stop`; `queries` are the control socket's questions,
/// `reloads` the plans that replace the running one.
pub fn run(
    shared: Arc<Shared>,
    index: usize,
    sockets: Vec<Bound>,
    stop: watch::Receiver<bool>,
    queries: mpsc::Receiver<Query>,
    mut reloads: mpsc::Receiver<Reload>,
    limits: Limits,
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
    let tasks = LocalSet::new();
    let registry = Rc::new(Registry::new(u32::try_from(index).unwrap_or(u32::MAX)));
    let local = Rc::new(Local {
        next_id: Cell::new(0),
        active: Cell::new(0),
        buffers: session::BufPool::default(),
        read_bufs: session::ReadBufs::default(),
        scratch: super::http::ScratchPool::default(),
        pipes: super::splice::PipePool::default(),
        limits,
        waiting: Cell::new(false),
        freed: Notify::new(),
    });
    tasks.block_on(&rt, async move {
        tokio::task::spawn_local(crate::control::registry::serve(
            Rc::clone(&registry),
            queries,
        ));
        let first = Rc::new(Worker::new(shared, &local, &registry));
        let mut listening = install(&first, Vec::new(), sockets, &stop).await;
        drop(first);
        let mut stop_rx = stop.clone();
        let mut open = true;
        while !*stop_rx.borrow() {
            tokio::select! {
                changed = stop_rx.changed() => {
                    if changed.is_err() {
                        break;
                    }
                }
                r = reloads.recv(), if open => match r {
                    Some(r) => {
                        let next = Rc::new(Worker::new(r.shared, &local, &registry));
                        listening = install(&next, listening, r.sockets, &stop).await;
                        let _ = r.done.send(());
                    }
                    None => open = false,
                },
            }
        }
        // The accept loops saw the same signal and let go of their sockets; these are the
        // last references, so nothing is accepted from here on.
        drop(listening);
        let deadline = tokio::time::Instant::now() + GRACE;
        while local.active.get() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    });
}

/// Starts accepting for `w`'s plan. A listener on an address this worker already listens
/// on keeps its socket, so connections in its queue wait there through the switch and
/// none is refused; the others take theirs from `fresh`. Sockets the plan no longer has
/// are closed before this returns.
async fn install(
    w: &Rc<Worker>,
    mut old: Vec<Listening>,
    mut fresh: Vec<Bound>,
    stop: &watch::Receiver<bool>,
) -> Vec<Listening> {
    let wanted = match super::listen::wanted(&w.shared.plan) {
        Ok(v) => v,
        Err(e) => {
            log::warn(&format!("listeners: {e}"));
            Vec::new()
        }
    };
    let mut out = Vec::with_capacity(wanted.len());
    let mut retired = Vec::new();
    for want in wanted {
        let (at, addr) = (want.at, want.at.addr);
        let socket = if let Some(i) = old.iter().position(|l| l.at == at) {
            let l = old.swap_remove(i);
            // accept() and recv_from() are cancel safe: what they had not taken stays
            // queued in the socket.
            l.task.abort();
            retired.push(l.task);
            if let Sock::Tcp(t) = &l.socket {
                let tcp = super::listen::relay_tcp(&w.shared.plan, want.relay);
                super::listen::retune(t, addr, &tcp);
            }
            l.socket
        } else if let Some(i) = fresh.iter().position(|b| b.at == at) {
            let registered = match fresh.swap_remove(i).socket {
                Socket2::Tcp(t) => {
                    tokio::net::TcpListener::from_std(t).map(|t| Sock::Tcp(Rc::new(t)))
                }
                Socket2::Udp(u) => {
                    tokio::net::UdpSocket::from_std(u).map(|u| Sock::Udp(Rc::new(u)))
                }
            };
            match registered {
                Ok(s) => s,
                Err(e) => {
                    log::warn(&format!("listener {addr}: {e}"));
                    continue;
                }
            }
        } else {
            log::warn(&format!("listener {addr}: no socket was bound for it"));
            continue;
        };
        let task = match &socket {
            Sock::Tcp(t) => tokio::task::spawn_local(accept(
                Rc::clone(w),
                want.relay,
                want.listener,
                Rc::clone(t),
                stop.clone(),
            )),
            Sock::Udp(u) => tokio::task::spawn_local(receive(
                Rc::clone(w),
                want.relay,
                want.listener,
                Rc::clone(u),
                stop.clone(),
            )),
        };
        out.push(Listening { at, socket, task });
    }
    for l in old {
        l.task.abort();
        retired.push(l.task);
    }
    // An aborted task drops its future (and its reference to the socket) when it is
    // polled; waiting for them closes the dropped sockets now.
    for t in retired {
        let _ = t.await;
    }
    out
}

/// A DNS relay's socket: queries until `stop`.
async fn receive(
    w: Rc<Worker>,
    relay: usize,
    listener_index: usize,
    socket: Rc<tokio::net::UdpSocket>,
    mut stop: watch::Receiver<bool>,
) {
    launched(&w, relay);
    tokio::select! {
        _ = super::dns::serve(w, relay, listener_index, socket) => {}
        _ = stop.changed() => {}
    }
}

/// `relay_launch` is logged once per relay, by whichever worker is first.
fn launched(w: &Worker, relay: usize) {
    if let Some(flag) = w.shared.launched.get(relay) {
        if !flag.swap(true, Ordering::Relaxed) {
            let name = &w.shared.plan.relays[relay].name;
            log::debug2(&format!("relay_launch: running relay {name}"));
        }
    }
}

async fn accept(
    w: Rc<Worker>,
    relay: usize,
    listener_index: usize,
    listener: Rc<tokio::net::TcpListener>,
    mut stop: watch::Receiver<bool>,
) {
    launched(&w, relay);
    let name = &w.shared.plan.relays[relay].name;
    let mut capped = false;
    loop {
        // relayd closes what it accepts beyond RELAY_MAX_SESSIONS; here the worker stops
        // accepting, and newcomers wait in the listen queue until a session ends.
        if w.active.get() >= w.limits.max_sessions {
            if !capped {
                capped = true;
                log::debug(&format!(
                    "relay {name}: {} sessions, accepting paused",
                    w.active.get()
                ));
            }
            tokio::select! {
                _ = w.session_ended() => {}
                _ = stop.changed() => {}
            }
            if *stop.borrow() {
                break;
            }
            continue;
        }
        capped = false;
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let slot = w.slot();
                    let w = Rc::clone(&w);
                    if w.is_http(relay) {
                        tokio::task::spawn_local(super::http::run(w, relay, listener_index, stream, peer, slot));
                    } else {
                        tokio::task::spawn_local(session::run(w, relay, listener_index, stream, peer, slot));
                    }
                }
                Err(e) if matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE)) => {
                    // relayd's relay_accept: out of descriptors, pause accepting for a
                    // second (or until a session gives its descriptors back) instead of
                    // spinning on a listener that stays readable.
                    log::debug("relay_accept: deferring connections");
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                        _ = w.session_ended() => {}
                        _ = stop.changed() => {}
                    }
                }
                Err(e) => {
                    log::debug(&format!("relay {name}: accept: {e}"));
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
