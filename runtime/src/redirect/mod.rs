//! Redirections: relayd's pf `rdr-to` anchors, as one nftables table owned by relayd-run.
//!
//! relayd keeps, per redirect, an anchor `relayd/NAME` whose rules send the redirect's
//! listen addresses to a pf table holding the up hosts of the active table (§4.3). Here
//! the whole state is one nftables table, `inet relayd`, rebuilt from the plan and the
//! host states and applied in one transaction (`nft -j -f -`: add the table, flush it,
//! add its chain and rules), so a state change never leaves a half-written ruleset.
//! Removing the table on exit is one more transaction. [`ruleset`] is a pure function
//! of the plan and the states; [`Nft`] runs `nft`.
//!
//! Where pf and nftables differ (documented in README's Linux notes):
//! * `least-states` has no nftables counterpart: it balances round-robin;
//! * `sticky-address` pins each source address by hash (`jhash ip saddr`), for as long
//!   as the host set does not change, rather than pf's timed source table;
//! * `route to` (direct server return) is not rewritten into a DNAT: its listeners get
//!   no rule (a warning at start says so), as nftables cannot route-to a pool without
//!   per-host policy routes;
//! * `pftag NAME` becomes packet mark `N` ([`mark`]: the name's place among the
//!   distinct `pftag` names of the plan's redirects, from 1), which `ip rule fwmark` and
//!   other nftables rules can match;
//! * the session timeout is conntrack's own (there is no per-rule established timeout).

mod ruleset;

pub use ruleset::{mark, removal, ruleset, TABLE};

use nftables::schema::Nftables;
use std::io::Write;
use std::process::{Command, Stdio};

/// How to run `nft`: directly, or inside a network namespace (`ip netns exec NS nft`),
/// which the tests use.
#[derive(Clone, Debug, Default)]
pub struct Nft {
    pub netns: Option<String>,
}

impl Nft {
    /// Applies one batch as one transaction; the error is nft's own message.
    pub fn apply(&self, batch: &Nftables) -> Result<(), String> {
        let json = serde_json::to_string(batch).map_err(|e| e.to_string())?;
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, "nft"]);
                c
            }
            None => Command::new("nft"),
        };
        let mut child = cmd
            .args(["-j", "-f", "-"])
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
