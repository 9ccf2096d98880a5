//! Live reload: SIGHUP and `relayctl reload [PLAN]` (relayd's `reload` and `load FILE`).
//!
//! Everything that can fail happens before anything changes: the plan's public part is
//! loaded and validated (this process never reads a keys section), its late facts bound
//! ([`crate::bind`]), its needs checked ([`servable`], and its redirects and routers
//! against the privileged helper relayd-run started with), its TLS built against the keys
//! the signer process holds, its `prefork` compared, and every worker's socket for a
//! listener the running plan lacks is bound. Then the health loop takes the new plan
//! over (hosts it keeps keep their state, see `health::run`), the plan is swapped into
//! the [`ArcSwap`] the control socket reads, and each worker starts accepting for it:
//! kept listeners keep their sockets, removed ones are closed. Sessions in flight hold
//! their own plan and finish on it. One reload runs at a time; another one meanwhile is
//! refused (relayd ignores it), with a `command failed` for relayctl.

use super::listen::{self, Bound};
use super::worker::{self, Shared};
use super::{servable, ServeError};
use crate::bind::{bind, Root};
use crate::control::board;
use crate::log;
use crate::plan::{KeysSection, LoadError};
use crate::signer::Signer;
use crate::tls::{KeySource, PlanTls};
use arc_swap::ArcSwap;
use relaydc_spec::plan::{KeyRef, Keys, Plan};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, Mutex};
use zeroize::Zeroize;

/// How long a worker may take to switch to a new plan before the reload stops waiting
/// for it (the plan is swapped in by then; the worker switches when it gets to it).
const PATIENCE: Duration = Duration::from_secs(10);

/// Why a reload did not happen; the running plan is unchanged.
#[derive(Debug)]
pub struct Refused {
    /// The plan file the reload was for (empty for a reload without one that was
    /// ignored).
    pub path: PathBuf,
    pub why: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.as_os_str().is_empty() {
            write!(f, "{}", self.why)
        } else {
            write!(f, "{}: {}", self.path.display(), self.why)
        }
    }
}

/// What a reload needs to reach: the plan, the workers and the health loop.
pub struct Reloader {
    current: Arc<ArcSwap<Shared>>,
    /// The file a reload without one loads: the one relayd-run was started with, or the
    /// last one loaded. Held for the whole of a reload, so a second one finds it taken.
    path: Mutex<PathBuf>,
    workers: Vec<mpsc::Sender<worker::Reload>>,
    health: mpsc::Sender<board::Command>,
    root: Root,
    /// The signer process started with the first plan: new plans sign with its keys.
    signer: Option<Signer>,
    /// The privileged helper started with the first plan, if it had redirects or
    /// routers: new plans' rules and routes go through it, within its remit.
    network: Option<Arc<crate::redirect::pfe::Network>>,
}

impl Reloader {
    pub fn new(
        current: Arc<ArcSwap<Shared>>,
        path: PathBuf,
        workers: Vec<mpsc::Sender<worker::Reload>>,
        health: mpsc::Sender<board::Command>,
        root: Root,
        signer: Option<Signer>,
    ) -> Reloader {
        Reloader {
            current,
            path: Mutex::new(path),
            workers,
            health,
            root,
            signer,
            network: None,
        }
    }

    /// Reloads go through `network` for redirects and routers.
    pub fn with_network(mut self, network: Option<Arc<crate::redirect::pfe::Network>>) -> Self {
        self.network = network;
        self
    }

    /// Whether the running helper (or its absence) can serve `plan`'s redirects and
    /// routers: one started for no plan's cannot appear later, and its routes are those
    /// of the plan relayd-run started with.
    fn network_allows(&self, plan: &Plan) -> Result<(), String> {
        match &self.network {
            _ if !crate::redirect::pfe::needed(plan) => Ok(()),
            None => Err(
                "the plan has redirects or routers, which need the privileged \
                 helper that relayd-run starts only for a plan that has them: restart \
                 relayd-run to serve it"
                    .into(),
            ),
            Some(net) => net.allows(plan),
        }
    }

    /// Loads `path` (else the current plan file) and runs it, or leaves everything as it
    /// was and says why. Logs either way.
    pub async fn reload(&self, path: Option<PathBuf>) -> Result<(), Refused> {
        let Ok(mut file) = self.path.try_lock() else {
            let refused = Refused {
                path: path.unwrap_or_default(),
                why: "another reload is in progress; this one is ignored".to_string(),
            };
            log::warn(&format!("reload: {refused}"));
            return Err(refused);
        };
        let path = path.unwrap_or_else(|| file.clone());
        log::info(&format!("reloading the plan from {}", path.display()));
        crate::notify::reloading();
        let swapped = self.swap(&path).await;
        // Either plan runs now, every worker accepting for it.
        crate::notify::ready();
        match swapped {
            Ok(()) => {
                log::info(&format!("running the plan from {}", path.display()));
                *file = path;
                Ok(())
            }
            Err(why) => {
                log::warn(&format!(
                    "reload of {} failed: {why}; the running plan is unchanged",
                    path.display()
                ));
                Err(Refused { path, why })
            }
        }
    }

    async fn swap(&self, path: &Path) -> Result<(), String> {
        let old = self.current.load_full();
        let (plan, tls) = {
            let path = path.to_path_buf();
            let root = self.root.clone();
            let signer = self.signer.clone();
            // Binding may resolve names and building TLS asks the signer: off the thread
            // that runs the checks.
            tokio::task::spawn_blocking(move || prepare(&path, &root, signer.as_ref()))
                .await
                .map_err(|e| e.to_string())??
        };
        self.network_allows(&plan)?;
        crate::health::script::runnable(&plan)?;
        let (was, is) = (old.plan.globals.prefork.max(1), plan.globals.prefork.max(1));
        if was != is {
            return Err(format!(
                "prefork cannot change without a restart (running {was}, the plan says {is})"
            ));
        }
        if plan.globals.socket != old.plan.globals.socket {
            log::warn("the control socket stays where it is until relayd-run restarts");
        }
        let sockets = bind_added(&old.plan, &plan, self.workers.len())?;
        let mut next = Shared::following(plan, &old);
        next.tls = tls;
        let next = Arc::new(next);
        // The health loop fills in the new plan's host states first: swapped in with
        // every host down, the new plan would refuse sessions until its first checks.
        let (tx, rx) = oneshot::channel();
        let adopt = board::Command::Adopt {
            next: Arc::clone(&next),
            reply: tx,
        };
        if self.health.send(adopt).await.is_err() || rx.await.is_err() {
            return Err("the health checks are not running".into());
        }
        self.current.store(Arc::clone(&next));
        let mut waiting = Vec::with_capacity(self.workers.len());
        for (w, sockets) in self.workers.iter().zip(sockets) {
            let (done, rx) = oneshot::channel();
            let msg = worker::Reload {
                shared: Arc::clone(&next),
                sockets,
                done,
            };
            if w.send(msg).await.is_ok() {
                waiting.push(rx);
            }
        }
        for (n, rx) in waiting.into_iter().enumerate() {
            if !matches!(tokio::time::timeout(PATIENCE, rx).await, Ok(Ok(()))) {
                log::warn(&format!("relay {} did not confirm the new plan", n + 1));
            }
        }
        Ok(())
    }
}

const KEYS_HINT: &str =
    "a reload signs with the private keys relayd-run was started with; other keys need a restart";

/// The plan at `path` as it would be served, with its TLS: loaded and validated, late
/// facts bound, nothing in it this version cannot serve, and every keypair's key found
/// in the running signer (numbered as at start: the keys section's, then late-bound
/// ones). A key is used only if it belongs to its certificate (`tls::build` checks), so
/// a plan with other private keys is refused rather than served with wrong ones.
fn prepare(path: &Path, root: &Root, signer: Option<&Signer>) -> Result<(Plan, PlanTls), String> {
    let mut plan = crate::plan::load_public(path)
        .map_err(|e| e.to_string())?
        .plan;
    let late_bound: Vec<bool> = plan
        .keypairs
        .iter()
        .map(|k| matches!(k.key, KeyRef::Paths(_)))
        .collect();
    let mut late = Keys { keys: Vec::new() };
    let bound = bind(&mut plan, &mut late, root);
    // The signer already holds the keys it can sign with; these copies only bound the plan.
    for k in &mut late.keys {
        k.der.zeroize();
    }
    if let Err(errors) = bound {
        let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
        return Err(all.join("; "));
    }
    servable(&plan).map_err(|e| e.to_string())?;
    let keys = match signer {
        Some(s) => {
            let offset = u32::try_from(s.section_keys()).unwrap_or(u32::MAX);
            for (kp, late) in plan.keypairs.iter_mut().zip(late_bound) {
                if let (true, KeyRef::Section(n)) = (late, &mut kp.key) {
                    *n = n.saturating_add(offset);
                }
            }
            crate::plan::validate(&plan, KeysSection::Read(s.len()))
                .map_err(|e| format!("{} ({KEYS_HINT})", LoadError::Inconsistent(e)))?;
            KeySource::Signer(s)
        }
        None => KeySource::None,
    };
    let tls = crate::tls::build(&plan, keys).map_err(|e| {
        if plan.keypairs.is_empty() {
            e
        } else {
            format!("{e} ({KEYS_HINT})")
        }
    })?;
    Ok((plan, tls))
}

/// Each worker's sockets for the listeners `new` has and `old` has not. A failure closes
/// whatever was bound (by dropping it) and fails the reload.
fn bind_added(old: &Plan, new: &Plan, workers: usize) -> Result<Vec<Vec<Bound>>, String> {
    let kept: Vec<_> = listen::wanted(old)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|w| w.at)
        .collect();
    (0..workers)
        .map(|_| listen::bind_added(new, &kept).map_err(|e: ServeError| e.to_string()))
        .collect()
}
