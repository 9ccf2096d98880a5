//! A worker's sessions and relay statistics, for `show sessions` and `show relays`.
//!
//! Everything here belongs to one worker thread (`Rc`, `Cell`, `RefCell`: no lock, no
//! atomic). A session registers once when it starts and unregisters when its guard drops;
//! the control task asks each worker for a [`Report`] over a channel that a task in the
//! worker's `LocalSet` answers ([`serve`]), so the report is built on the worker's own
//! thread, between sessions' steps.

use super::proto::{Session, Stats};
use relaydc_spec::plan::Plan;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// relayd's `RELAY_STATINTERVAL`: relay statistics advance once a minute.
pub const STAT_INTERVAL: Duration = Duration::from_secs(60);

/// A question to a worker: its sessions and statistics.
pub struct Query {
    pub reply: oneshot::Sender<Report>,
}

/// One worker's answer.
pub struct Report {
    pub sessions: Vec<Session>,
    /// Per relayd relay (index = relayd relay id − 1).
    pub stats: Vec<Stats>,
}

/// relayd's relay ids: a relay block is one relayd relay per `listen on`, numbered in
/// order, the first keeping the block's name and each further one named
/// `NAME<id>:<port>` (parse.y `relay_id`, `relay_inherit`). Returns, per plan relay, the
/// id of its first listener; listener `l` has that id + `l`.
pub fn first_ids(plan: &Plan) -> Vec<u32> {
    let mut next = 1u32;
    plan.relays
        .iter()
        .map(|r| {
            let first = next;
            next = next.saturating_add(u32::try_from(r.listeners.len().max(1)).unwrap_or(1));
            first
        })
        .collect()
}

/// One live session.
pub struct Entry {
    id: u32,
    /// relayd relay id.
    relay: u32,
    client: SocketAddr,
    backend: Cell<Option<SocketAddr>>,
    start: Instant,
    /// When a byte last moved (or a request last came); the session's own idle timer may
    /// share this cell.
    pub last: Cell<Instant>,
}

/// A worker's bookkeeping of one relay's sessions, with relayd's arithmetic.
#[derive(Clone, Copy, Default)]
struct Counter {
    /// Sessions before the current interval, and during it.
    cnt: u64,
    last: u64,
    tick: u64,
    avg: u64,
    last_hour: u64,
    avg_hour: u64,
    last_day: u64,
    avg_day: u64,
    /// What the last interval's end published (relayd's pfe shows that copy).
    shown: Stats,
}

/// A worker's registry. It outlives reloads: sessions of every plan still running are
/// listed; the statistics are those of the newest plan's relays.
pub struct Registry {
    /// The worker's index (relayd's relay process instance).
    proc: u32,
    /// Which plan the counters are for (see [`View`]).
    generation: Cell<u64>,
    live: RefCell<HashMap<u32, Rc<Entry>>>,
    counters: RefCell<Vec<Counter>>,
}

/// The registry as one plan's sessions use it: relay ids are that plan's.
pub struct View {
    registry: Rc<Registry>,
    first_ids: Vec<u32>,
    generation: u64,
}

impl Registry {
    pub fn new(proc: u32) -> Registry {
        Registry {
            proc,
            generation: Cell::new(0),
            live: RefCell::new(HashMap::new()),
            counters: RefCell::new(Vec::new()),
        }
    }

    /// Starts counting `plan`'s relays (at start and at every reload): statistics start
    /// from zero, as relayd's rebuilt relays do.
    pub fn replan(self: &Rc<Self>, plan: &Plan) -> View {
        let relays: usize = plan.relays.iter().map(|r| r.listeners.len().max(1)).sum();
        *self.counters.borrow_mut() = vec![Counter::default(); relays];
        let generation = self.generation.get().wrapping_add(1);
        self.generation.set(generation);
        View {
            registry: Rc::clone(self),
            first_ids: first_ids(plan),
            generation,
        }
    }
}

impl View {
    /// Registers a session that just started on `relay`'s `listener` and counts it
    /// (a session of a plan already replaced is listed, not counted).
    pub fn open(
        &self,
        relay: usize,
        listener: usize,
        id: u32,
        client: SocketAddr,
    ) -> Registered<'_> {
        let registry = &*self.registry;
        let relayd_id = self.first_ids.get(relay).map_or(0, |f| {
            f.saturating_add(u32::try_from(listener).unwrap_or(0))
        });
        if registry.generation.get() == self.generation {
            if let Some(c) = registry
                .counters
                .borrow_mut()
                .get_mut((relayd_id as usize).wrapping_sub(1))
            {
                c.last += 1;
            }
        }
        let now = Instant::now();
        let entry = Rc::new(Entry {
            id,
            relay: relayd_id,
            client,
            backend: Cell::new(None),
            start: now,
            last: Cell::new(now),
        });
        registry.live.borrow_mut().insert(id, Rc::clone(&entry));
        Registered { registry, entry }
    }
}

impl Registry {
    /// relayd's `relay_statistics`, once per [`STAT_INTERVAL`]. relayd never resets its
    /// day counter (it bumps the hour reset twice); here the day counter restarts each
    /// day, as the code around it intends.
    pub fn tick(&self) {
        let per_hour = 3600 / STAT_INTERVAL.as_secs();
        let per_day = 86_400 / STAT_INTERVAL.as_secs();
        for c in self.counters.borrow_mut().iter_mut() {
            c.cnt += c.last;
            c.tick += 1;
            c.avg = (c.last + c.avg) / 2;
            c.last_hour += c.last;
            let hour = c.tick % per_hour == 0;
            if hour {
                c.avg_hour = (c.last_hour + c.avg_hour) / 2;
            }
            c.last_day += c.last;
            let day = c.tick % per_day == 0;
            if day {
                c.avg_day = (c.last_day + c.avg_day) / 2;
            }
            c.shown = Stats {
                total: c.cnt,
                last: c.last,
                last_hour: c.last_hour,
                last_day: c.last_day,
                avg: c.avg,
                avg_hour: c.avg_hour,
                avg_day: c.avg_day,
                interval_s: STAT_INTERVAL.as_secs(),
            };
            c.last = 0;
            if hour {
                c.last_hour = 0;
            }
            if day {
                c.last_day = 0;
            }
        }
    }

    /// The sessions (by relay, then id, as relayd walks them) and the statistics. The
    /// total counts sessions up to now; relayd adds the current minute's only when the
    /// minute ends, so its `total` lags by up to a minute.
    pub fn report(&self) -> Report {
        let now = Instant::now();
        let pid = std::process::id();
        let mut sessions: Vec<Session> = self
            .live
            .borrow()
            .values()
            .map(|e| {
                let backend = e.backend.get();
                Session {
                    proc: self.proc,
                    id: e.id,
                    client: e.client.ip().to_canonical().to_string(),
                    client_port: e.client.port(),
                    backend: backend.map(|b| b.ip().to_string()),
                    backend_port: backend.map_or(0, |b| b.port()),
                    done: false,
                    age_s: now.saturating_duration_since(e.start).as_secs(),
                    idle_s: now.saturating_duration_since(e.last.get()).as_secs(),
                    relay: e.relay,
                    pid,
                }
            })
            .collect();
        sessions.sort_by_key(|s| (s.relay, s.id));
        let stats = self
            .counters
            .borrow()
            .iter()
            .map(|c| Stats {
                total: c.cnt + c.last,
                interval_s: STAT_INTERVAL.as_secs(),
                ..c.shown
            })
            .collect();
        Report { sessions, stats }
    }
}

/// A session's registration; dropping it unregisters the session.
pub struct Registered<'a> {
    registry: &'a Registry,
    entry: Rc<Entry>,
}

impl Registered<'_> {
    /// The backend the session connects to.
    pub fn backend(&self, addr: SocketAddr) {
        self.entry.backend.set(Some(addr));
        self.touch();
    }

    /// Something happened on the session (relayd's `se_tv_last`).
    pub fn touch(&self) {
        self.entry.last.set(Instant::now());
    }

    /// The session is connected to `addr`. Returns the cell of its last activity, for a
    /// copy loop that keeps it current anyway (its idle timer).
    pub fn connected(&self, addr: SocketAddr) -> &Cell<Instant> {
        self.backend(addr);
        &self.entry.last
    }
}

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        let mut live = self.registry.live.borrow_mut();
        // Session ids wrap: remove only our own entry.
        if live
            .get(&self.entry.id)
            .is_some_and(|e| Rc::ptr_eq(e, &self.entry))
        {
            live.remove(&self.entry.id);
        }
    }
}

/// A worker's control task: answers queries and advances the statistics every
/// [`STAT_INTERVAL`], until the query channel closes.
pub async fn serve(registry: Rc<Registry>, mut queries: mpsc::Receiver<Query>) {
    let mut stats = tokio::time::interval_at(Instant::now() + STAT_INTERVAL, STAT_INTERVAL);
    loop {
        tokio::select! {
            q = queries.recv() => match q {
                Some(q) => {
                    let _ = q.reply.send(registry.report());
                }
                None => return,
            },
            _ = stats.tick() => registry.tick(),
        }
    }
}
