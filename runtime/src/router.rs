//! Routers: relayd's `router` blocks as Linux routes.
//!
//! relayd adds, for every `route ADDR/LEN` of a router and every host of its gateway
//! table that is up, a multipath route via that host with the host's `priority`, in the
//! router's `rtable`, and deletes it when the host goes down (pfe_route.c). Linux keys a
//! route by table, destination and metric, so the gateways that share a priority become
//! the next hops of one multipath route: [`routes`] is, for the host states, every
//! route that should exist with its gateways, and [`diff`] the changes that take the
//! kernel from what was applied to that. The privileged helper (`crate::helper`) makes
//! each change with `ip route replace|del`, only within the [`Remit`] the plan it was
//! started with allows.
//!
//! Mapping: `rtable N` is Linux routing table N (0 or none: `main`; 253 to 255 are
//! Linux's `default`, `main` and `local`), `priority P` the route's metric, the route's
//! protocol `static` (relayd's RTF_STATIC). `rtlabel` has no Linux counterpart (the
//! compiler warns). Differences: a gateway whose host is disabled loses its route here
//! (relayd only acts on up and down hosts, so its route stays); routes are replaced
//! whole, so a route of the same table, destination and metric that someone else added
//! is taken over, as relayd's RTM_CHANGE takes it over.

use relaydc_spec::plan::{Address, Plan};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

/// Linux's `main` routing table, where relayd's routing table 0 goes.
pub const MAIN_TABLE: u32 = 254;

/// One kernel route: what Linux tells routes apart by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RouteKey {
    pub table: u32,
    /// The network address (host bits cleared).
    pub dest: IpAddr,
    pub prefixlen: u8,
    pub metric: u32,
}

/// A change to one route: its gateways (next hops), or none to delete it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteChange {
    pub key: RouteKey,
    pub gateways: Vec<IpAddr>,
}

impl RouteChange {
    pub fn is_delete(&self) -> bool {
        self.gateways.is_empty()
    }

    /// `ip`'s arguments for the change.
    pub fn ip_args(&self) -> Vec<String> {
        let k = &self.key;
        let mut a: Vec<String> = vec![
            if k.dest.is_ipv4() { "-4" } else { "-6" }.into(),
            "route".into(),
            if self.is_delete() { "del" } else { "replace" }.into(),
            format!("{}/{}", k.dest, k.prefixlen),
            "table".into(),
            k.table.to_string(),
            "metric".into(),
            k.metric.to_string(),
        ];
        if self.is_delete() {
            return a;
        }
        a.extend(["proto".to_string(), "static".to_string()]);
        if let [one] = self.gateways.as_slice() {
            a.extend(["via".to_string(), one.to_string()]);
        } else {
            for g in &self.gateways {
                a.extend(["nexthop".to_string(), "via".to_string(), g.to_string()]);
            }
        }
        a
    }
}

/// The Linux routing table of relayd's `rtable`.
pub fn linux_table(rtable: Option<u32>) -> u32 {
    match rtable {
        None | Some(0) => MAIN_TABLE,
        Some(n) => n,
    }
}

/// `addr` with the bits past `len` cleared (a route's destination as the kernel wants
/// it; relayd hands the kernel a netmask and lets it do the same).
pub fn network(addr: IpAddr, len: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let mask = u32::MAX
                .checked_shl(32 - u32::from(len.min(32)))
                .unwrap_or(0);
            IpAddr::V4((bits & mask).into())
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let mask = u128::MAX
                .checked_shl(128 - u32::from(len.min(128)))
                .unwrap_or(0);
            IpAddr::V6((bits & mask).into())
        }
    }
}

/// A gateway of a router: its host index, address and metric.
fn gateways(plan: &Plan, table: u32) -> Vec<(usize, IpAddr, u32)> {
    let Some(t) = plan.tables.get(table as usize) else {
        return Vec::new();
    };
    t.hosts
        .iter()
        .filter_map(|&h| {
            let host = plan.hosts.get(h as usize)?;
            match host.address {
                Address::Ip(ip) => Some((h as usize, ip, u32::from(host.priority.unwrap_or(0)))),
                Address::Name(_) => None,
            }
        })
        .collect()
}

/// Every route that should exist when `up` (per plan host) says which hosts are up:
/// per enabled router, route and metric, the up gateways of the route's family.
pub fn routes(plan: &Plan, up: &[bool]) -> BTreeMap<RouteKey, Vec<IpAddr>> {
    let mut out: BTreeMap<RouteKey, Vec<IpAddr>> = BTreeMap::new();
    for r in plan.routers.iter().filter(|r| !r.disabled) {
        let Some(table) = r.table else { continue };
        let gws = gateways(plan, table);
        for route in &r.routes {
            for &(h, gw, metric) in &gws {
                if !up.get(h).copied().unwrap_or(false) || gw.is_ipv4() != route.address.is_ipv4() {
                    continue;
                }
                let key = RouteKey {
                    table: linux_table(r.rtable),
                    dest: network(route.address, route.prefixlen),
                    prefixlen: route.prefixlen,
                    metric,
                };
                let hops = out.entry(key).or_default();
                if !hops.contains(&gw) {
                    hops.push(gw);
                }
            }
        }
    }
    out
}

/// The changes that turn `applied` into `wanted`: deletions first, then replacements.
pub fn diff(
    applied: &BTreeMap<RouteKey, Vec<IpAddr>>,
    wanted: &BTreeMap<RouteKey, Vec<IpAddr>>,
) -> Vec<RouteChange> {
    let mut out: Vec<RouteChange> = applied
        .keys()
        .filter(|k| !wanted.contains_key(k))
        .map(|k| RouteChange {
            key: *k,
            gateways: Vec::new(),
        })
        .collect();
    for (k, gws) in wanted {
        if applied.get(k) != Some(gws) {
            out.push(RouteChange {
                key: *k,
                gateways: gws.clone(),
            });
        }
    }
    out
}

/// What the helper may do to routes: each (table, destination, length, gateway,
/// metric) the routers of the plan it was started with can ask for. Fixed at start,
/// while the relay process still holds its privileges, so a relay process that is no
/// longer trustworthy cannot widen it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remit {
    pub routes: BTreeSet<(u32, IpAddr, u8, IpAddr, u32)>,
}

impl Remit {
    /// Every route the plan's enabled routers can make.
    pub fn of(plan: &Plan) -> Remit {
        let mut routes = BTreeSet::new();
        for r in plan.routers.iter().filter(|r| !r.disabled) {
            let Some(table) = r.table else { continue };
            for route in &r.routes {
                for (_, gw, metric) in gateways(plan, table) {
                    if gw.is_ipv4() != route.address.is_ipv4() {
                        continue;
                    }
                    routes.insert((
                        linux_table(r.rtable),
                        network(route.address, route.prefixlen),
                        route.prefixlen,
                        gw,
                        metric,
                    ));
                }
            }
        }
        Remit { routes }
    }

    /// Whether the change stays within the remit; the error says what does not.
    pub fn allows(&self, c: &RouteChange) -> Result<(), String> {
        let k = &c.key;
        let outside = || {
            format!(
                "route {}/{} table {} metric {} is not one of the plan's routers' routes",
                k.dest, k.prefixlen, k.table, k.metric
            )
        };
        if network(k.dest, k.prefixlen) != k.dest {
            return Err(outside());
        }
        if c.is_delete() {
            let known = self
                .routes
                .iter()
                .any(|&(t, d, l, _, m)| (t, d, l, m) == (k.table, k.dest, k.prefixlen, k.metric));
            return if known { Ok(()) } else { Err(outside()) };
        }
        if c.gateways.len() > 256 {
            return Err(outside());
        }
        for g in &c.gateways {
            if !self
                .routes
                .contains(&(k.table, k.dest, k.prefixlen, *g, k.metric))
            {
                return Err(format!(
                    "gateway {g} for route {}/{} table {} metric {} is not one the plan's routers name",
                    k.dest, k.prefixlen, k.table, k.metric
                ));
            }
        }
        Ok(())
    }

    /// Whether every route `plan` can make is within the remit (a reload's plan).
    pub fn covers(&self, plan: &Plan) -> Result<(), String> {
        match Remit::of(plan).routes.difference(&self.routes).next() {
            None => Ok(()),
            Some((t, d, l, g, m)) => Err(format!(
                "its routers route {d}/{l} via {g} (table {t}, metric {m}), which the plan \
                 relayd-run started with does not: routers change only with a restart"
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn key(dest: &str, len: u8, metric: u32) -> RouteKey {
        RouteKey {
            table: 100,
            dest: dest.parse().unwrap(),
            prefixlen: len,
            metric,
        }
    }

    #[test]
    fn networks_clear_host_bits() {
        let n = |a: &str, l| network(a.parse().unwrap(), l).to_string();
        assert_eq!(n("10.1.2.3", 8), "10.0.0.0");
        assert_eq!(n("10.1.2.3", 0), "0.0.0.0");
        assert_eq!(n("10.1.2.3", 32), "10.1.2.3");
        assert_eq!(n("2001:db8::1", 32), "2001:db8::");
        assert_eq!(n("::1", 0), "::");
    }

    #[test]
    fn diffs_delete_then_replace() {
        let g1: IpAddr = "10.0.0.1".parse().unwrap();
        let g2: IpAddr = "10.0.0.2".parse().unwrap();
        let mut applied = BTreeMap::new();
        applied.insert(key("10.9.0.0", 16, 0), vec![g1, g2]);
        applied.insert(key("10.8.0.0", 16, 0), vec![g1]);
        let mut wanted = BTreeMap::new();
        wanted.insert(key("10.9.0.0", 16, 0), vec![g2]);
        let d = diff(&applied, &wanted);
        assert_eq!(d.len(), 2);
        assert!(d[0].is_delete());
        assert_eq!(d[0].key, key("10.8.0.0", 16, 0));
        assert_eq!(d[1].gateways, vec![g2]);
        assert!(diff(&wanted, &wanted).is_empty());
    }

    #[test]
    fn ip_arguments() {
        let g1: IpAddr = "10.0.0.1".parse().unwrap();
        let g2: IpAddr = "10.0.0.2".parse().unwrap();
        let one = RouteChange {
            key: key("10.9.0.0", 16, 5),
            gateways: vec![g1],
        };
        assert_eq!(
            one.ip_args().join(" "),
            "-4 route replace 10.9.0.0/16 table 100 metric 5 proto static via 10.0.0.1"
        );
        let two = RouteChange {
            key: key("10.9.0.0", 16, 5),
            gateways: vec![g1, g2],
        };
        assert!(two
            .ip_args()
            .join(" ")
            .ends_with("nexthop via 10.0.0.1 nexthop via 10.0.0.2"));
        let del = RouteChange {
            key: key("10.9.0.0", 16, 5),
            gateways: vec![],
        };
        assert_eq!(
            del.ip_args().join(" "),
            "-4 route del 10.9.0.0/16 table 100 metric 5"
        );
    }

    #[test]
    fn the_remit_holds_only_the_plans_routes() {
        let g: IpAddr = "10.0.0.1".parse().unwrap();
        let mut remit = Remit::default();
        remit
            .routes
            .insert((100, "10.9.0.0".parse().unwrap(), 16, g, 0));
        let ok = RouteChange {
            key: key("10.9.0.0", 16, 0),
            gateways: vec![g],
        };
        assert_eq!(remit.allows(&ok), Ok(()));
        let delete = RouteChange {
            gateways: vec![],
            ..ok.clone()
        };
        assert_eq!(remit.allows(&delete), Ok(()));
        for bad in [
            RouteChange {
                key: key("0.0.0.0", 0, 0),
                gateways: vec![g],
            },
            RouteChange {
                key: RouteKey {
                    table: 254,
                    ..ok.key
                },
                gateways: vec![g],
            },
            RouteChange {
                key: key("10.9.0.0", 16, 1),
                gateways: vec![g],
            },
            RouteChange {
                key: ok.key,
                gateways: vec!["192.0.2.9".parse().unwrap()],
            },
            RouteChange {
                key: key("10.9.1.0", 16, 0),
                gateways: vec![g],
            },
            RouteChange {
                key: key("10.9.0.0", 16, 1),
                gateways: vec![],
            },
        ] {
            assert!(remit.allows(&bad).is_err(), "{bad:?}");
        }
    }
}
