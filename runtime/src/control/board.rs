//! Host and table state for the control socket, and the commands that change it.
//!
//! The health loop owns every host's state. It publishes a copy here ([`Board`], behind a
//! `std::sync::Mutex` taken once per check result or command, never by a session) and
//! takes `host|table enable|disable` and `poll` from the control task over a channel
//! ([`Command`]), applying them between checks with a [`Switchboard`]. What balancing
//! needs of the outcome goes to the workers as atomics in `Shared` (`host_up`,
//! `table_disabled`, `table_gated`), as before.
//!
//! relayd's rules (pfe.c `disable_host`, `enable_table`, …; hce.c): a disabled host is
//! unknown with its counters zeroed and is never checked; disabling a host disables its
//! children, and naming a host disables every host of that name (children cannot be
//! addressed); disabling or enabling a table makes its hosts unknown, and a disabled
//! table is not checked. One deliberate difference: relayd balances over every host of a
//! table without a check, even disabled ones; here a disabled host or table of such a
//! table is out of rotation too (`table_gated`), so `disable` always means what it says.

use super::proto::{Event, EventKind, Target};
use crate::serve::Shared;
use relaydc_spec::health::{Health, HostState};
use relaydc_spec::plan::Check;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, oneshot};

/// A host as relayctl shows it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostView {
    pub state: HostState,
    pub disabled: bool,
    pub checks: u64,
    pub ups: u64,
    pub retry_left: u32,
    /// The last check's error text.
    pub error: Option<&'static str>,
}

impl Default for HostView {
    fn default() -> Self {
        HostView {
            state: HostState::Unknown,
            disabled: false,
            checks: 0,
            ups: 0,
            retry_left: 0,
            error: None,
        }
    }
}

/// What the health loop last published.
#[derive(Clone, Debug, Default)]
pub struct Board {
    pub hosts: Vec<HostView>,
    pub tables_disabled: Vec<bool>,
    /// Per redirect: disabled (in the configuration or by `relayctl redirect disable`).
    pub redirects_disabled: Vec<bool>,
}

/// The control side's view of the health loop: the published board and the events
/// `relayctl monitor` streams.
pub struct Status {
    pub board: Mutex<Board>,
    pub events: broadcast::Sender<Event>,
}

impl Status {
    pub fn new(plan: &relaydc_spec::plan::Plan) -> Status {
        let (events, _) = broadcast::channel(1024);
        Status::with_events(plan, events)
    }

    /// The status of a plan that replaces a running one: `relayctl monitor` clients
    /// subscribed to `events` keep receiving across the reload.
    pub fn with_events(
        plan: &relaydc_spec::plan::Plan,
        events: broadcast::Sender<Event>,
    ) -> Status {
        Status {
            board: Mutex::new(Board {
                hosts: vec![HostView::default(); plan.hosts.len()],
                tables_disabled: plan.tables.iter().map(|t| t.disabled).collect(),
                redirects_disabled: plan.redirects.iter().map(|r| r.disabled).collect(),
            }),
            events,
        }
    }
}

/// A command for the health loop; the answer is the object's relayd id, or why not.
pub enum Command {
    Host {
        enable: bool,
        target: Target,
        reply: oneshot::Sender<Result<u32, String>>,
    },
    Table {
        enable: bool,
        target: Target,
        reply: oneshot::Sender<Result<u32, String>>,
    },
    /// `redirect disable` also disables its main table; `redirect enable` enables the
    /// main and backup tables (pfe.c `disable_rdr`, `enable_rdr`).
    Redirect {
        enable: bool,
        target: Target,
        reply: oneshot::Sender<Result<u32, String>>,
    },
    /// Check every table now, skip counters reset.
    Poll { reply: oneshot::Sender<()> },
    /// A reload: take the new plan's state over, carrying the health of the hosts it
    /// keeps, and answer once its host states are published, before the plan is swapped
    /// in (`serve::reload`).
    Adopt {
        next: Arc<Shared>,
        reply: oneshot::Sender<()>,
    },
}

/// What the health loop keeps per host, as far as commands are concerned: the state
/// machine and the last error text.
pub trait Slot {
    fn health(&self) -> &Health;
    fn health_mut(&mut self) -> &mut Health;
    fn error(&self) -> Option<&'static str>;
    fn clear_error(&mut self);
}

impl Slot for Health {
    fn health(&self) -> &Health {
        self
    }
    fn health_mut(&mut self) -> &mut Health {
        self
    }
    fn error(&self) -> Option<&'static str> {
        None
    }
    fn clear_error(&mut self) {}
}

/// The health loop's end of the commands, and which hosts and tables are disabled.
pub struct Switchboard {
    commands: mpsc::Receiver<Command>,
    host_off: Vec<bool>,
    table_off: Vec<bool>,
    children: Vec<Vec<usize>>,
}

impl Switchboard {
    pub fn new(shared: &Shared, commands: mpsc::Receiver<Command>) -> Switchboard {
        let mut board = Switchboard {
            commands,
            host_off: Vec::new(),
            table_off: Vec::new(),
            children: Vec::new(),
        };
        board.replan(shared);
        board
    }

    /// Starts over on a new plan. What relayctl disabled is forgotten: a reload brings the
    /// configuration back, as relayd's does.
    pub fn replan(&mut self, shared: &Shared) {
        let plan = &shared.plan;
        let mut children = vec![Vec::new(); plan.hosts.len()];
        for (i, h) in plan.hosts.iter().enumerate() {
            if let Some(p) = h.parent.and_then(|p| p.checked_sub(1)) {
                if let Some(c) = children.get_mut(p as usize) {
                    c.push(i);
                }
            }
        }
        self.host_off = vec![false; plan.hosts.len()];
        self.table_off = plan.tables.iter().map(|t| t.disabled).collect();
        self.children = children;
    }

    /// Whether table `t` (index) is disabled: not checked.
    pub fn table_off(&self, t: usize) -> bool {
        self.table_off.get(t).copied().unwrap_or(true)
    }

    /// Whether host `h` (index) is disabled, itself or by its table: not checked, and a
    /// result still arriving for it is dropped (relayd's pfe ignores it too).
    pub fn host_off(&self, shared: &Shared, h: usize) -> bool {
        let table = shared.plan.hosts.get(h).map_or(0, |x| x.table as usize);
        self.host_off.get(h).copied().unwrap_or(true) || self.table_off(table)
    }

    /// The next command; never resolves once the control side is gone.
    pub async fn next(&mut self) -> Command {
        match self.commands.recv().await {
            Some(c) => c,
            None => std::future::pending().await,
        }
    }

    /// Applies a command. Returns true for `poll`: the caller starts a round of checks
    /// now, with the skip counters reset.
    pub fn apply<S: Slot>(&mut self, shared: &Shared, cmd: Command, slots: &mut [S]) -> bool {
        match cmd {
            Command::Poll { reply } => {
                let _ = reply.send(());
                true
            }
            // The health loop takes a new plan itself, before it gets here; dropping the
            // reply tells the reload it was not taken.
            Command::Adopt { .. } => false,
            Command::Host {
                enable,
                target,
                reply,
            } => {
                let r = self.host(shared, enable, &target, slots);
                let _ = reply.send(r);
                false
            }
            Command::Table {
                enable,
                target,
                reply,
            } => {
                let r = self.table(shared, enable, &target, slots);
                let _ = reply.send(r);
                false
            }
            Command::Redirect {
                enable,
                target,
                reply,
            } => {
                let r = self.redirect(shared, enable, &target, slots);
                let _ = reply.send(r);
                false
            }
        }
    }

    /// relayd's `disable_rdr` / `enable_rdr`: the redirect's flag (the rules follow it,
    /// `redirect::pfe`), and its main table disabled, or its tables enabled.
    fn redirect<S: Slot>(
        &mut self,
        shared: &Shared,
        enable: bool,
        target: &Target,
        slots: &mut [S],
    ) -> Result<u32, String> {
        let plan = &shared.plan;
        let found = target.locate(plan.redirects.iter().map(|r| r.name.as_str()));
        let Some(r) = found else {
            return Err(format!("no redirect {}", describe(target)));
        };
        let id = u32::try_from(r + 1).unwrap_or(u32::MAX);
        let changed = match shared.status.board.lock() {
            Ok(mut b) => b
                .redirects_disabled
                .get_mut(r)
                .filter(|off| **off == enable)
                .map(|off| *off = !enable)
                .is_some(),
            Err(_) => false,
        };
        if !changed {
            return Ok(id);
        }
        crate::log::debug(&format!(
            "{}: redirect {id}",
            if enable { "enable_rdr" } else { "disable_rdr" }
        ));
        let tables = &plan.redirects[r].tables;
        let tables = if enable {
            &tables[..]
        } else {
            &tables[..tables.len().min(1)]
        };
        for t in tables {
            self.table(
                shared,
                enable,
                &Target::Id(t.table.saturating_add(1)),
                slots,
            )?;
        }
        Ok(id)
    }

    fn host<S: Slot>(
        &mut self,
        shared: &Shared,
        enable: bool,
        target: &Target,
        slots: &mut [S],
    ) -> Result<u32, String> {
        let plan = &shared.plan;
        let found = target.locate(plan.hosts.iter().map(|h| h.name.as_str()));
        let Some(h) = found else {
            return Err(format!("no host {}", describe(target)));
        };
        if let Some(p) = plan.hosts[h].parent {
            return Err(format!(
                "host {} follows its parent (host {p}); enable or disable the parent",
                describe(target)
            ));
        }
        let mut hosts = vec![h];
        // By name: every host of that name, as relayd does.
        if let Target::Name(n) = target {
            hosts.extend(
                plan.hosts
                    .iter()
                    .enumerate()
                    .filter(|(i, x)| *i != h && x.name == *n && x.parent.is_none())
                    .map(|(i, _)| i),
            );
        }
        for x in hosts {
            if self.host_off[x] == enable {
                self.switch_host(shared, x, enable, slots);
                for c in self.children[x].clone() {
                    self.switch_host(shared, c, enable, slots);
                }
            }
        }
        Ok(u32::try_from(h + 1).unwrap_or(u32::MAX))
    }

    fn switch_host<S: Slot>(&mut self, shared: &Shared, h: usize, enable: bool, slots: &mut [S]) {
        let Some(slot) = slots.get_mut(h) else { return };
        if let Some(off) = self.host_off.get_mut(h) {
            *off = !enable;
        }
        let health = slot.health_mut();
        health.state = HostState::Unknown;
        if !enable {
            health.checks = 0;
            health.ups = 0;
        }
        slot.clear_error();
        self.gate(shared, h);
        self.publish(shared, h, slot, false);
    }

    fn table<S: Slot>(
        &mut self,
        shared: &Shared,
        enable: bool,
        target: &Target,
        slots: &mut [S],
    ) -> Result<u32, String> {
        let plan = &shared.plan;
        let found = target.locate(plan.tables.iter().map(|t| t.name.as_str()));
        let Some(t) = found else {
            return Err(format!("no table {}", describe(target)));
        };
        if self.table_off[t] == enable {
            self.table_off[t] = !enable;
            if let Some(d) = shared.table_disabled.get(t) {
                d.store(!enable, Ordering::Relaxed);
            }
            if let Ok(mut b) = shared.status.board.lock() {
                if let Some(d) = b.tables_disabled.get_mut(t) {
                    *d = !enable;
                }
            }
            for &h in &plan.tables[t].hosts {
                let h = h as usize;
                if let Some(slot) = slots.get_mut(h) {
                    slot.health_mut().state = HostState::Unknown;
                    self.gate(shared, h);
                    self.publish(shared, h, slot, false);
                }
            }
        }
        Ok(u32::try_from(t + 1).unwrap_or(u32::MAX))
    }

    /// Recomputes whether the workers may balance to host `h` after a command.
    fn gate(&self, shared: &Shared, h: usize) {
        let plan = &shared.plan;
        let Some(host) = plan.hosts.get(h) else {
            return;
        };
        let t = host.table as usize;
        let Some(table) = plan.tables.get(t) else {
            return;
        };
        let off = self.host_off(shared, h);
        let up = if matches!(table.check, Check::None) {
            if let Some(g) = shared.table_gated.get(t) {
                g.store(true, Ordering::Relaxed);
            }
            !off
        } else {
            // Every command leaves the host unknown until its next check.
            false
        };
        if let Some(u) = shared.host_up.get(h) {
            u.store(up, Ordering::Relaxed);
        }
    }

    /// Publishes host `h` after a check result (`checked`) or a command. A result also
    /// becomes a `host_status` event for `relayctl monitor`, as relayd's hce reports
    /// every result.
    pub fn publish<S: Slot>(&self, shared: &Shared, h: usize, slot: &S, checked: bool) {
        let health = slot.health();
        let view = HostView {
            state: health.state,
            disabled: self.host_off.get(h).copied().unwrap_or(false),
            checks: health.checks,
            ups: health.ups,
            retry_left: health.retry_left,
            error: slot.error(),
        };
        if let Ok(mut b) = shared.status.board.lock() {
            if let Some(v) = b.hosts.get_mut(h) {
                *v = view;
            }
        }
        if checked {
            let _ = shared.status.events.send(Event {
                what: EventKind::HostStatus,
                id: u32::try_from(h + 1).unwrap_or(u32::MAX),
                state: Some(health.state.word().to_string()),
                name: None,
                pid: std::process::id(),
            });
        }
    }
}

fn describe(target: &Target) -> String {
    match target {
        Target::Id(id) => format!("with id {id}"),
        Target::Name(n) => format!("named {n}"),
    }
}
