//! Choosing a relay session's backend: the relay's tables in order, the first usable one,
//! a host in it by the table's balancing mode — all decided by `spec::balance`, the same
//! functions the compiler's explanations use. This module only gathers the inputs:
//! which hosts are up, the per-worker round-robin indexes, the relay's hash key.

use super::worker::Shared;
use relaydc_spec::balance::{self, Hasher, PickInputs, TableState, TableStatus};
use relaydc_spec::plan::{Address, Check, Plan, Target};
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::Ordering;

/// Per-worker balancing state: a round-robin index per (relay, listener, forward), as
/// each relayd process keeps one per inherited relay, and a random source for
/// `mode random`.
pub struct Pools {
    /// `[relay][listener][forward]`.
    states: Vec<Vec<Vec<TableState>>>,
    rng: u64,
}

impl Pools {
    pub fn new(plan: &Plan, seed: u64) -> Pools {
        let states = plan
            .relays
            .iter()
            .map(|r| {
                r.listeners
                    .iter()
                    .map(|_| r.forwards.iter().map(|_| TableState::new()).collect())
                    .collect()
            })
            .collect();
        Pools {
            states,
            rng: seed | 1,
        }
    }

    /// xorshift64*: the random start of `mode random` (relayd: arc4random_uniform).
    fn random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

pub enum Choice {
    /// No usable table, no host up, or nothing to forward to.
    None,
    Backend {
        addr: SocketAddr,
        retry: u32,
    },
}

/// The backend for a new session on `relay`'s `listener` from `client`; `rule_table`
/// is the table a filter rule selected (an index into the plan's `rule_tables`), and
/// `hasher` carries what `hash` rules fed for this session.
pub fn choose(
    shared: &Shared,
    pools: &mut Pools,
    relay: usize,
    listener: usize,
    client: IpAddr,
    rule_table: Option<u32>,
    hasher: Option<&mut Hasher>,
) -> Choice {
    let plan = &shared.plan;
    let Some(r) = plan.relays.get(relay) else {
        return Choice::None;
    };
    // Tables first: an address target is ignored when the relay also has tables. The
    // relay's forward tables are walked, not collected: nothing is allocated per session.
    let tables = || {
        r.forwards
            .iter()
            .enumerate()
            .filter_map(|(i, f)| match &f.target {
                Target::Table { table, mode, .. } => Some((i, *table, mode)),
                _ => None,
            })
    };
    if tables().next().is_none() {
        return r
            .forwards
            .iter()
            .find_map(|f| match &f.target {
                Target::Addr {
                    address: Address::Ip(ip),
                    port,
                    retry,
                } => Some(Choice::Backend {
                    addr: SocketAddr::new(*ip, *port),
                    retry: *retry,
                }),
                _ => None,
            })
            .unwrap_or(Choice::None);
    }
    let status = |i: usize| {
        let t = &plan.tables[i];
        TableStatus {
            // A table without a check follows `host_up` too once relayctl disabled
            // it or one of its hosts (`control::board`).
            has_check: !matches!(t.check, Check::None)
                || shared.table_gated[i].load(Ordering::Relaxed),
            any_up: t
                .hosts
                .iter()
                .any(|h| shared.host_up[*h as usize].load(Ordering::Relaxed)),
            disabled: shared.table_disabled[i].load(Ordering::Relaxed),
        }
    };
    // A rule's table choice: this relay's instance of it, used alone.
    let selected = rule_table.and_then(|rt| {
        let inst = r.rule_tables.get(rt as usize).copied().flatten()?;
        tables().position(|(_, t, _)| t == inst)
    });
    if rule_table.is_some() && selected.is_none() {
        return Choice::None;
    }
    let statuses = tables().map(|(_, t, _)| status(t as usize));
    let Some(which) = balance::choose_table(statuses, selected) else {
        return Choice::None;
    };
    let Some((forward, table, mode)) = tables().nth(which) else {
        return Choice::None;
    };
    let t = &plan.tables[table as usize];
    let has_check = status(table as usize).has_check;
    // A relay table has at most 32 hosts (the compiler refuses more; relayd aborts):
    // the states fit an array, no allocation per session.
    if t.hosts.len() > balance::MAX_HOSTS {
        return Choice::None;
    }
    let mut states = [false; balance::MAX_HOSTS];
    let n = t.hosts.len().min(balance::MAX_HOSTS);
    for (slot, h) in states.iter_mut().zip(&t.hosts) {
        *slot = balance::counts_as_up(
            has_check,
            shared.host_up[*h as usize].load(Ordering::Relaxed),
        );
    }
    let up = &states[..n];
    let Some(l) = r.listeners.get(listener) else {
        return Choice::None;
    };
    let listen = match l.address {
        Address::Ip(ip) => ip,
        Address::Name(_) => return Choice::None,
    };
    let mut own = Hasher::new(&shared.relay_keys[relay]);
    let hasher = match hasher {
        Some(h) => h,
        None => &mut own,
    };
    let random = pools.random();
    let Some(state) = pools
        .states
        .get_mut(relay)
        .and_then(|s| s.get_mut(listener))
        .and_then(|s| s.get_mut(forward))
    else {
        return Choice::None;
    };
    let picked = balance::pick(
        mode,
        up,
        state,
        PickInputs {
            hasher,
            client: client.to_canonical(),
            listen,
            listen_port: l.port,
            random,
        },
    );
    let Some(i) = picked else {
        return Choice::None;
    };
    let host = &plan.hosts[t.hosts[i] as usize];
    match host.address {
        Address::Ip(ip) => Choice::Backend {
            addr: SocketAddr::new(ip, t.port),
            retry: host.retry,
        },
        Address::Name(_) => Choice::None,
    }
}
