//! relayd's pf engine for redirects and routers: follows the host states and keeps the
//! kernel's `inet relayd` table and the routers' routes in step with them, through the
//! privileged helper (`crate::helper`), which alone may change either.
//!
//! [`Network::start`] starts the helper (before the relay process drops its
//! privileges) and applies the plan's table with every host unknown: present, with its
//! chain and counters, and no rule. [`run`] then wakes on every `relayctl monitor` event
//! (each check result, each host, table or redirect command) and on a reload, reads the
//! published states, and hands the helper a new batch only when it differs from the one
//! last applied, and a route change only for routes that differ. [`Network::shutdown`]
//! removes the table and the routes; if relayd-run ends any other way, the helper does
//! it when the relay process's end of its socket closes.
//!
//! relayd's lines, as its pfe writes them: with `log state changes` (or `-d`),
//! `table NAME: A added, D deleted, 0 changed, 0 killed` when a redirect's set of
//! addresses changes (relayd's pf table of the redirect's name, holding the up hosts of
//! its active table); at `-v`, `pfe_sync: enabling ruleset`, `sync_ruleset: rule added
//! to anchor "relayd/NAME"` per listener, `flush_table: flushed table NAME`,
//! `pfe_sync: disabling ruleset`, `sync_ruleset: rules removed`, and for routers
//! `sync_routes: router NAME route ADDR/LEN gateway HOST up|down priority P` and
//! `pfe_route: gateway HOST added|deleted`.

use super::{removal, ruleset_for, state, RdrState, States};
use crate::control::board::Board;
use crate::control::proto::Stats;
use crate::control::registry::STAT_INTERVAL;
use crate::helper::{Helper, Options};
use crate::log;
use crate::privs::Privileges;
use crate::router::{self, Remit, RouteChange, RouteKey};
use crate::serve::Shared;
use arc_swap::ArcSwap;
use relaydc_spec::health::HostState;
use relaydc_spec::plan::Plan;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// Whether a plan needs the helper: it has redirects (relayctl can enable a disabled
/// one) or enabled routers.
pub fn needed(plan: &Plan) -> bool {
    !plan.redirects.is_empty() || plan.routers.iter().any(|r| !r.disabled)
}

/// The states the rules and routes follow, copied from what the health loop published.
#[derive(Clone, Debug)]
pub struct Snapshot {
    /// Per host: its state, unknown while it or its table is disabled.
    pub hosts: Vec<HostState>,
    pub redirect_off: Vec<bool>,
    pub table_off: Vec<bool>,
}

impl Snapshot {
    /// Every host unknown, redirects and tables as the plan has them: at start.
    pub fn initial(plan: &Plan) -> Snapshot {
        Snapshot {
            hosts: vec![HostState::Unknown; plan.hosts.len()],
            redirect_off: plan.redirects.iter().map(|r| r.disabled).collect(),
            table_off: plan.tables.iter().map(|t| t.disabled).collect(),
        }
    }

    /// What `shared`'s board says now.
    pub fn of(shared: &Shared) -> Snapshot {
        let board = match shared.status.board.lock() {
            Ok(b) => b,
            Err(p) => p.into_inner(),
        };
        Snapshot::from_board(&shared.plan, &board)
    }

    /// What `board`, published for `plan`, says.
    pub fn from_board(plan: &Plan, board: &Board) -> Snapshot {
        let table_off: Vec<bool> = plan
            .tables
            .iter()
            .enumerate()
            .map(|(i, t)| board.tables_disabled.get(i).copied().unwrap_or(t.disabled))
            .collect();
        let hosts = plan
            .hosts
            .iter()
            .enumerate()
            .map(|(h, host)| {
                let v = board.hosts.get(h).copied().unwrap_or_default();
                let off = table_off.get(host.table as usize).copied().unwrap_or(true);
                if v.disabled || off {
                    HostState::Unknown
                } else {
                    v.state
                }
            })
            .collect();
        let redirect_off = plan
            .redirects
            .iter()
            .enumerate()
            .map(|(i, r)| {
                board
                    .redirects_disabled
                    .get(i)
                    .copied()
                    .unwrap_or(r.disabled)
            })
            .collect();
        Snapshot {
            hosts,
            redirect_off,
            table_off,
        }
    }

    /// Per host, whether it is up.
    pub fn up(&self) -> Vec<bool> {
        self.hosts.iter().map(|s| *s == HostState::Up).collect()
    }
}

/// A redirect's state as last applied.
#[derive(Clone, Debug, Default)]
struct Applied {
    /// relayd's F_ACTIVE_RULESET: the redirect has rules.
    rules: bool,
    /// relayd's pf table of the redirect.
    addresses: BTreeSet<IpAddr>,
}

#[derive(Debug, Default)]
struct Synced {
    /// The batch last applied, as JSON.
    batch: Option<String>,
    /// The last failure, logged once while it repeats.
    failure: Option<String>,
    redirects: HashMap<String, Applied>,
    routes: BTreeMap<RouteKey, Vec<IpAddr>>,
    /// Per router: its gateways' states when last seen.
    gateways: HashMap<String, Vec<HostState>>,
}

/// relayd's redirect statistics arithmetic (pfe_statistics), per redirect name.
#[derive(Clone, Copy, Debug, Default)]
struct Counter {
    cnt: u64,
    tick: u64,
    avg: u64,
    last_hour: u64,
    avg_hour: u64,
    last_day: u64,
    avg_day: u64,
    shown: Stats,
}

/// The helper and what was applied through it.
#[derive(Debug)]
pub struct Network {
    helper: Helper,
    remit: Remit,
    synced: Mutex<Synced>,
    counters: Mutex<HashMap<String, Counter>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        Err(p) => p.into_inner(),
    }
}

impl Network {
    /// Starts the helper for `plan` (its routers are the helper's remit) and applies the
    /// plan's table with every host unknown. Call before privileges are dropped.
    pub fn start(plan: &Plan, privileges: &Privileges) -> Result<Network, String> {
        let remit = Remit::of(plan);
        let helper = Helper::start(
            remit.clone(),
            &Options {
                privileges: privileges.clone(),
                ..Options::default()
            },
        )
        .map_err(|e| e.to_string())?;
        log::debug(&format!("privileged helper: pid {}", helper.pid()));
        let net = Network {
            helper,
            remit,
            synced: Mutex::new(Synced::default()),
            counters: Mutex::new(HashMap::new()),
        };
        for r in plan.redirects.iter().filter(|r| !r.disabled) {
            if r.tables.iter().any(|t| t.route) {
                log::warn(&format!(
                    "redirect {}: route to (direct server return) has no nftables \
                     counterpart here; its listeners get no rule while a route to table \
                     is active",
                    r.name
                ));
            }
        }
        net.sync(plan, &Snapshot::initial(plan), false)
            .map_err(|e| format!("table inet {}: {e}", super::TABLE))?;
        if !plan.redirects.is_empty() {
            log::debug(&format!(
                "init_tables: created {} tables",
                plan.redirects.len()
            ));
        }
        Ok(net)
    }

    /// The helper's process id.
    pub fn helper_pid(&self) -> u32 {
        self.helper.pid()
    }

    /// Whether a reload's plan can run with this helper: its routers' routes must be
    /// within the remit of the plan relayd-run started with.
    pub fn allows(&self, plan: &Plan) -> Result<(), String> {
        self.remit.covers(plan)
    }

    /// Brings the table and the routes in line with `snap`. Returns the table's error,
    /// if applying it failed (also logged, once while it repeats).
    pub fn sync(&self, plan: &Plan, snap: &Snapshot, log_updates: bool) -> Result<(), String> {
        let mut synced = lock(&self.synced);
        let up = snap.up();
        let states = States {
            up: &up,
            redirect_off: &snap.redirect_off,
            table_off: &snap.table_off,
        };
        let mut result = Ok(());
        if !plan.redirects.is_empty() || synced.batch.is_some() {
            let batch = ruleset_for(plan, &states);
            let json = serde_json::to_string(&batch).unwrap_or_default();
            if synced.batch.as_deref() != Some(json.as_str()) {
                match self.helper.apply(batch) {
                    Ok(()) => {
                        synced.batch = Some(json);
                        synced.failure = None;
                        log_redirects(plan, &states, &mut synced, log_updates);
                    }
                    Err(e) => {
                        let e = e.to_string();
                        if synced.failure.as_deref() != Some(e.as_str()) {
                            log::warn(&format!(
                                "cannot apply the rules of table inet {}: {e}",
                                super::TABLE
                            ));
                            synced.failure = Some(e.clone());
                        }
                        result = Err(e);
                    }
                }
            }
        }
        self.sync_routes(plan, snap, &up, &mut synced);
        result
    }

    fn sync_routes(&self, plan: &Plan, snap: &Snapshot, up: &[bool], synced: &mut Synced) {
        let wanted = router::routes(plan, up);
        // relayd's sync_routes lines, for each router whose gateway table changed.
        for r in plan.routers.iter().filter(|r| !r.disabled) {
            let Some(t) = r.table.and_then(|t| plan.tables.get(t as usize)) else {
                continue;
            };
            let now: Vec<HostState> = t
                .hosts
                .iter()
                .map(|&h| {
                    snap.hosts
                        .get(h as usize)
                        .copied()
                        .unwrap_or(HostState::Unknown)
                })
                .collect();
            let before = synced.gateways.insert(r.name.clone(), now.clone());
            let changed = match &before {
                Some(b) => b
                    .iter()
                    .zip(&now)
                    .any(|(a, b)| (*a == HostState::Up) != (*b == HostState::Up)),
                None => now.contains(&HostState::Up),
            };
            if !changed {
                continue;
            }
            for route in &r.routes {
                for (&h, s) in t.hosts.iter().zip(&now) {
                    if *s == HostState::Unknown {
                        continue;
                    }
                    let Some(host) = plan.hosts.get(h as usize) else {
                        continue;
                    };
                    let up = *s == HostState::Up;
                    log::debug(&format!(
                        "sync_routes: router {} route {}/{} gateway {} {} priority {}",
                        r.name,
                        route.address,
                        route.prefixlen,
                        host.name,
                        if up { "up" } else { "down" },
                        host.priority.unwrap_or(0)
                    ));
                    log::debug(&format!(
                        "pfe_route: gateway {} {}",
                        host.name,
                        if up { "added" } else { "deleted" }
                    ));
                }
            }
        }
        for change in router::diff(&synced.routes, &wanted) {
            match self.helper.route(&change) {
                Ok(()) if change.is_delete() => {
                    synced.routes.remove(&change.key);
                }
                Ok(()) => {
                    synced.routes.insert(change.key, change.gateways);
                }
                Err(e) => log::warn(&format!(
                    "pfe_route: failed to {} route {}/{} table {} metric {}{}: {e}",
                    if change.is_delete() { "delete" } else { "set" },
                    change.key.dest,
                    change.key.prefixlen,
                    change.key.table,
                    change.key.metric,
                    gateways_text(&change)
                )),
            }
        }
    }

    /// relayd's pfe_statistics, once per [`STAT_INTERVAL`]: each redirect's count of
    /// redirected connections, and the last and average counts per interval, hour and
    /// day.
    pub fn tick_stats(&self, plan: &Plan) {
        let counts = match self.helper.counters() {
            Ok(c) => c,
            Err(e) => {
                log::debug(&format!("pfe_statistics: {e}"));
                return;
            }
        };
        let per_hour = 3600 / STAT_INTERVAL.as_secs();
        let per_day = 86_400 / STAT_INTERVAL.as_secs();
        let mut counters = lock(&self.counters);
        for r in &plan.redirects {
            let cnt = counts
                .iter()
                .find(|(n, _)| *n == r.name)
                .map_or(0, |(_, c)| *c);
            let c = counters.entry(r.name.clone()).or_default();
            let last = cnt.saturating_sub(c.cnt);
            c.cnt = cnt;
            c.tick += 1;
            c.avg = (last + c.avg) / 2;
            c.last_hour += last;
            let hour = matches!(c.tick.checked_rem(per_hour), Some(0));
            if hour {
                c.avg_hour = (c.last_hour + c.avg_hour) / 2;
            }
            c.last_day += last;
            let day = matches!(c.tick.checked_rem(per_day), Some(0));
            if day {
                c.avg_day = (c.last_day + c.avg_day) / 2;
            }
            c.shown = Stats {
                total: cnt,
                last,
                last_hour: c.last_hour,
                last_day: c.last_day,
                avg: c.avg,
                avg_hour: c.avg_hour,
                avg_day: c.avg_day,
                interval_s: STAT_INTERVAL.as_secs(),
            };
            if hour {
                c.last_hour = 0;
            }
            if day {
                c.last_day = 0;
            }
        }
    }

    /// Each of `plan`'s redirects' statistics: the last interval's, with the total
    /// counted up to now (relayd's total lags until the interval ends).
    pub fn stats(&self, plan: &Plan) -> Vec<Stats> {
        let live = self.helper.counters().ok();
        let counters = lock(&self.counters);
        plan.redirects
            .iter()
            .map(|r| {
                let mut s = counters.get(&r.name).map(|c| c.shown).unwrap_or(Stats {
                    interval_s: STAT_INTERVAL.as_secs(),
                    ..Stats::default()
                });
                if let Some((_, n)) = live.iter().flatten().find(|(n, _)| *n == r.name) {
                    s.total = *n;
                }
                s
            })
            .collect()
    }

    /// Removes the table and every route (relayd's flush_rulesets at shutdown).
    pub fn shutdown(&self) {
        let mut synced = lock(&self.synced);
        if synced.batch.take().is_some() {
            match self.helper.apply(removal()) {
                Ok(()) => {
                    log::debug("kill_tables: deleted 1 tables");
                    log::debug("flush_rulesets: flushed rules");
                }
                Err(e) => log::warn(&format!("cannot remove table inet {}: {e}", super::TABLE)),
            }
        }
        for key in std::mem::take(&mut synced.routes).into_keys() {
            let change = RouteChange {
                key,
                gateways: Vec::new(),
            };
            if let Err(e) = self.helper.route(&change) {
                log::warn(&format!(
                    "pfe_route: failed to delete route {}/{} table {}: {e}",
                    key.dest, key.prefixlen, key.table
                ));
            }
        }
    }
}

fn gateways_text(c: &RouteChange) -> String {
    if c.gateways.is_empty() {
        return String::new();
    }
    let g: Vec<String> = c.gateways.iter().map(ToString::to_string).collect();
    format!(" via {}", g.join(", "))
}

/// relayd's pfe_sync lines for what changed with the batch just applied.
fn log_redirects(plan: &Plan, states: &States<'_>, synced: &mut Synced, log_updates: bool) {
    for (i, r) in plan.redirects.iter().enumerate() {
        let (st, addresses) = state(plan, i, states);
        let applied = synced.redirects.entry(r.name.clone()).or_default();
        if matches!(st, RdrState::Disabled | RdrState::Down) {
            if applied.rules {
                log::debug(&format!("flush_table: flushed table {}", r.name));
                log::debug("pfe_sync: disabling ruleset");
                log::debug("sync_ruleset: rules removed");
                applied.rules = false;
                applied.addresses.clear();
            }
            continue;
        }
        let now: BTreeSet<IpAddr> = addresses.into_iter().collect();
        if now != applied.addresses {
            let added = now.difference(&applied.addresses).count();
            let deleted = applied.addresses.difference(&now).count();
            if log_updates || plan.globals.log.state_changes {
                log::info(&format!(
                    "table {}: {added} added, {deleted} deleted, 0 changed, 0 killed",
                    r.name
                ));
            }
            applied.addresses = now;
        }
        if !applied.rules {
            log::debug("pfe_sync: enabling ruleset");
            for _ in &r.listeners {
                log::debug(&format!(
                    "sync_ruleset: rule added to anchor \"relayd/{}\"",
                    r.name
                ));
            }
            applied.rules = true;
        }
    }
}

/// How long after a state change the rules follow, so that the rest of a round's
/// results go with it. relayd's pfe syncs once per round, at the start of the next
/// (hce's IMSG_SYNC), so its rules lag a host's change by up to an interval.
const SETTLE: Duration = Duration::from_millis(50);

/// Follows the states until the future is dropped: on every `monitor` event (coalesced)
/// and on a reload (the running plan is looked at twice a second), and advances the
/// statistics every [`STAT_INTERVAL`].
pub async fn run(net: Arc<Network>, current: Arc<ArcSwap<Shared>>, log_updates: bool) {
    use tokio::sync::broadcast::error::{RecvError, TryRecvError};
    let mut events = current.load().status.events.subscribe();
    let mut seen = current.load_full();
    let mut reloads = tokio::time::interval(Duration::from_millis(500));
    let start = tokio::time::Instant::now();
    let mut stats = tokio::time::interval_at(start + STAT_INTERVAL, STAT_INTERVAL);
    loop {
        tokio::select! {
            e = events.recv() => {
                if let Err(RecvError::Closed) = e {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    events = current.load().status.events.subscribe();
                }
                // The results of one round of checks arrive within moments of each
                // other: one change for all of them.
                tokio::time::sleep(SETTLE).await;
                while matches!(events.try_recv(), Ok(_) | Err(TryRecvError::Lagged(_))) {}
            }
            _ = reloads.tick() => {
                if Arc::ptr_eq(&current.load(), &seen) {
                    continue;
                }
            }
            _ = stats.tick() => {
                let (net, shared) = (Arc::clone(&net), current.load_full());
                let _ = tokio::task::spawn_blocking(move || net.tick_stats(&shared.plan)).await;
                continue;
            }
        }
        seen = current.load_full();
        let snap = Snapshot::of(&seen);
        let (net, shared) = (Arc::clone(&net), Arc::clone(&seen));
        let _ =
            tokio::task::spawn_blocking(move || net.sync(&shared.plan, &snap, log_updates)).await;
    }
}
