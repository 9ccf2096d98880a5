//! Redirections: relayd's pf `rdr-to` anchors, as one nftables table owned by relayd-run.
//!
//! relayd keeps, per redirect, an anchor `relayd/NAME` whose rules send the redirect's
//! listen addresses to a pf table holding the up hosts of the active table (§4.3). Here
//! the whole state is one nftables table, `inet relayd`, rebuilt from the plan and the
//! host states and applied in one transaction (`nft -j -f -`: add the table, flush its
//! rules, add its chains and counters, empty the sets of hosts that went down, add the
//! rules), so a state change never leaves a half-written ruleset. What the rules name
//! and depends on the plan only is made just before: the ct timeouts through nf_tables'
//! netlink interface (`nfnl.rs`: nft's JSON cannot make them before nft 1.0.8), the
//! sets in an nft transaction of their own ([`Batch::sets`] says why). Removing the
//! table on exit is one more transaction. [`ruleset`] is a pure function of the plan
//! and the states; [`Nft`] runs `nft`. The relay process holds no capability, so it
//! never runs `nft` itself: [`pfe`] (relayd's pf engine) follows the host states and
//! hands each changed batch to the privileged helper (`crate::helper`), which runs
//! `nft`, and does the same for routers' routes (`crate::router`).
//!
//! Where pf and nftables differ (documented in README's Linux notes):
//! * `least-states` has no nftables counterpart: it balances round-robin;
//! * `sticky-address` is pf's source tracking made of one timed set per host of the
//!   redirect (`sticky_N_ADDRESS`, N the redirect's place in the plan, a client address
//!   per element): a DNAT rule per up host sends the clients in its set back to it,
//!   ahead of the balanced rule, and a rule in the `sticky` chain (filter, prerouting,
//!   just after the nat chain, where the destination is already the host) adds or
//!   renews the client with every packet it sends on a redirected connection. An
//!   element lasts the session timeout after the client's last packet, as pf's source
//!   node lasts as long as the states that use it; a host that goes down loses its
//!   set's elements in the transaction that removes its rules, as relayd kills its
//!   source nodes. nft's JSON has no map update before nft 1.0.9, hence sets per host
//!   rather than one map from client to host;
//! * the session timeout is each TCP connection's established timeout, as relayd sets
//!   pf's `tcp.established` per rule: a `ct timeout` object per timeout and address
//!   family (`established_600s_ip`), set by the redirect's DNAT rules. UDP keeps
//!   conntrack's timeouts (relayd sets none for UDP), and so does `session timeout 0`
//!   (pf's default then applies); a timeout is capped at [`MAX_TIMEOUT_S`], past which
//!   conntrack's clock wraps;
//! * `route to` (direct server return) is not rewritten into a DNAT: its listeners get
//!   no rule (a warning at start says so), as nftables cannot route-to a pool without
//!   per-host policy routes;
//! * `pftag NAME` becomes packet mark `N` ([`mark`]: the name's place among the
//!   distinct `pftag` names of the plan's redirects, from 1), which `ip rule fwmark` and
//!   other nftables rules can match;
//! * a named counter per redirect counts the connections its rules redirect (relayd
//!   counts its pf table's matches): `show redirects` statistics.

mod nfnl;
pub mod pfe;
mod ruleset;

pub use ruleset::{
    mark, removal, ruleset, ruleset_for, state, sticky_set_name, Batch, CtTimeout, RdrState,
    States, CHAIN, DSTNAT, MAX_TIMEOUT_S, STICKY_CHAIN, TABLE,
};

use nftables::schema::{NfCmd, NfListObject, NfObject, Nftables, Table};
use nftables::types::NfFamily;
use std::borrow::Cow;
use std::io::Write;
use std::process::{Command, Stdio};

/// Where `nft` and `ip` are looked for: the children of the privileged helper get this
/// instead of whatever `PATH` relayd-run was started with.
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How to run `nft`: directly, or inside a network namespace (`ip netns exec NS nft`),
/// which the tests use.
#[derive(Clone, Debug, Default)]
pub struct Nft {
    pub netns: Option<String>,
}

impl Nft {
    /// `nft` with `args`, with a fixed environment (`PATH` above, C messages).
    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft"]);
                c
            }
            None => Command::new("nft"),
        };
        cmd.env_clear()
            .env("PATH", SAFE_PATH)
            .env("LC_ALL", "C")
            .args(args);
        cmd
    }

    /// Each named counter of the table (one per redirect) and the packets it counted;
    /// nothing if the table does not exist.
    pub fn counters(&self) -> Result<Vec<(String, u64)>, String> {
        let out = self
            .command(&["-j", "list", "counters", "table", "inet", TABLE])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("cannot run nft: {e}"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            if err.contains("No such file or directory") {
                return Ok(Vec::new());
            }
            return Err(err.trim().to_string());
        }
        let v: serde_json::Value =
            serde_json::from_slice(&out.stdout).map_err(|e| format!("nft's answer: {e}"))?;
        let list = v
            .get("nftables")
            .and_then(|l| l.as_array())
            .cloned()
            .unwrap_or_default();
        Ok(list
            .iter()
            .filter_map(|o| {
                let c = o.get("counter")?;
                if c.get("table")?.as_str()? != TABLE {
                    return None;
                }
                let name = c.get("name")?.as_str()?.to_string();
                Some((name, c.get("packets")?.as_u64()?))
            })
            .collect())
    }

    /// Makes the batch's ct timeouts and sets, then applies its nft commands as one
    /// transaction; the error is the kernel's or nft's own message.
    pub fn apply(&self, batch: &Batch) -> Result<(), String> {
        if !batch.timeouts.is_empty() {
            nfnl::add_timeouts(self.netns.as_deref(), TABLE, &batch.timeouts)
                .map_err(|e| format!("ct timeout: {e}"))?;
        }
        if !batch.sets.is_empty() {
            let mut adds = vec![NfObject::CmdObject(NfCmd::Add(NfListObject::Table(
                Table {
                    family: NfFamily::INet,
                    name: TABLE.into(),
                    handle: None,
                },
            )))];
            adds.extend(
                batch.sets.iter().map(|s| {
                    NfObject::CmdObject(NfCmd::Add(NfListObject::Set(Box::new(s.clone()))))
                }),
            );
            self.run(&Nftables {
                objects: Cow::Owned(adds),
            })?;
        }
        self.run(&batch.nft)
    }

    /// `nft -j -f -` with `cmds`, one transaction.
    fn run(&self, cmds: &Nftables<'_>) -> Result<(), String> {
        let json = serde_json::to_string(cmds).map_err(|e| e.to_string())?;
        let mut child = self
            .command(&["-j", "-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot run nft: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin
                .write_all(json.as_bytes())
                .map_err(|e| format!("cannot write to nft: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("nft did not finish: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }
}
