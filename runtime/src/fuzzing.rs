//! Entry points for the fuzz targets (`fuzz/`) and their seed-corpus test
//! (`testsuite/tests/fuzz_seeds.rs`): thin forwarders to functions that are private to
//! the runtime. Nothing else uses them; they change no behaviour.

use crate::serve::{dns, pool, Shared};
use relaydc_spec::plan::{Check, Plan};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::atomic::Ordering;

/// The health checker's judgement of an answer (`validate`): up, relayd's text, and
/// the HTTP code kept for the host.
pub fn health_judge(check: &Check, answer: &[u8]) -> (bool, &'static str, Option<u16>) {
    crate::health::judge(check, answer)
}

/// The DNS relay's check of a datagram at the listener.
pub fn dns_is_query(datagram: &[u8]) -> bool {
    dns::is_query(datagram)
}

/// The DNS relay's ID replacement in a query; returns the client's ID.
pub fn dns_replace_id(query: &mut [u8], new_id: u16) -> [u8; 2] {
    dns::replace_id(query, new_id)
}

/// The DNS relay's check of an answer and the client's ID put back.
pub fn dns_restore_id(answer: &mut [u8], new_id: u16, client_id: [u8; 2]) -> bool {
    dns::restore_id(answer, new_id, client_id)
}

/// Builds a worker's view of a loaded plan (as `serve` does, without sockets), marks
/// every host up, and chooses a backend for every relay, listener and rule table from
/// two clients, as sessions do. Returns how many choices found a backend.
pub fn choose_everywhere(plan: Plan) -> usize {
    let shared = Shared::new(plan);
    for up in &shared.host_up {
        up.store(true, Ordering::Relaxed);
    }
    let mut pools = pool::Pools::new(&shared.plan, 7);
    let clients = [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let mut found = 0;
    // Every rule table of the plan, and one past them.
    let rule_tables = (0..=shared.plan.rule_tables.len()).map(|t| Some(t as u32));
    for (r, relay) in shared.plan.relays.iter().enumerate() {
        for l in 0..relay.listeners.len() {
            for table in std::iter::once(None).chain(rule_tables.clone()) {
                for client in clients {
                    let choice = pool::choose(&shared, &mut pools, r, l, client, table, None);
                    found += usize::from(matches!(choice, pool::Choice::Backend { .. }));
                }
            }
        }
    }
    found
}
