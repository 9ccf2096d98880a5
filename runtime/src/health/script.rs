//! `check script PATH`: relayd's check_script.c. `PATH hostname` runs with `/` as its
//! working directory and is killed (SIGKILL) when the table timeout has passed. relayd's
//! convention is inverted from the shell's: an exit status above 0 means up; 0, a
//! signal (the kill included) or a program that could not be run (relayd's child then
//! exits 0) mean down.
//!
//! relayd runs the script as `_relayd`, one at a time in its parent process; here it
//! runs as the user relayd-run runs as, concurrently with the other checks.
//!
//! Under the relay process's seccomp filter no thread can start a program, and a script
//! would inherit the filter anyway: scripts are then run by the runner, a thread
//! started before the filter ([`start_runner`]), which the checks ask over a channel.
//! `crate::seccomp` says what that leaves open.

use super::Outcome;
use relaydc_spec::plan::{Check, Plan};
use std::process::Stdio;
use std::sync::OnceLock;
use tokio::process::Command;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{timeout_at, Instant};

/// One script to run for a check; the answer goes back on `reply`, and a check that is
/// cancelled (its receiver dropped) has its script killed.
struct Request {
    path: String,
    hostname: String,
    deadline: Instant,
    reply: oneshot::Sender<Outcome>,
}

static RUNNER: OnceLock<mpsc::UnboundedSender<Request>> = OnceLock::new();

/// Whether `plan` has `check script` tables (enabled or not: relayctl can enable one).
pub fn needed(plan: &Plan) -> bool {
    plan.tables
        .iter()
        .any(|t| matches!(t.check, Check::Script(_)) && !t.hosts.is_empty())
}

/// Starts the runner thread, once. Call before the seccomp filter is installed.
pub fn start_runner() -> Result<(), String> {
    if RUNNER.get().is_some() {
        return Ok(());
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("check scripts: {e}"))?;
    let (tx, mut rx) = mpsc::unbounded_channel::<Request>();
    std::thread::Builder::new()
        .name("scripts".into())
        .spawn(move || {
            let tasks = tokio::task::LocalSet::new();
            tasks.block_on(&rt, async move {
                while let Some(r) = rx.recv().await {
                    tokio::task::spawn_local(serve(r));
                }
            });
        })
        .map_err(|e| format!("check scripts: {e}"))?;
    let _ = RUNNER.set(tx);
    Ok(())
}

/// Whether this process can run `plan`'s scripts: always, unless it is filtered and no
/// runner was started before the filter.
pub fn runnable(plan: &Plan) -> Result<(), String> {
    if needed(plan) && crate::seccomp::relay_filtered() && RUNNER.get().is_none() {
        return Err(
            "the plan has check script tables, and scripts are run by a thread \
                    relayd-run starts, before its seccomp filter, only for a plan that has \
                    them: restart relayd-run to serve it"
                .into(),
        );
    }
    Ok(())
}

pub(super) async fn check(path: &str, hostname: &str, deadline: Instant) -> Outcome {
    let Some(runner) = RUNNER.get() else {
        return run(path, hostname, deadline).await;
    };
    let (reply, answer) = oneshot::channel();
    let request = Request {
        path: path.to_string(),
        hostname: hostname.to_string(),
        deadline,
        reply,
    };
    if runner.send(request).is_err() {
        return Outcome::down("script failed");
    }
    answer
        .await
        .unwrap_or_else(|_| Outcome::down("script failed"))
}

/// In the runner: one request, until it is answered or its check is cancelled.
async fn serve(mut r: Request) {
    let outcome = tokio::select! {
        o = run(&r.path, &r.hostname, r.deadline) => o,
        // Dropping `run` kills the script (kill_on_drop).
        () = r.reply.closed() => return,
    };
    let _ = r.reply.send(outcome);
}

async fn run(path: &str, hostname: &str, deadline: Instant) -> Outcome {
    let failed = Outcome::down("script failed");
    let mut cmd = Command::new(path);
    cmd.arg(hostname)
        .current_dir("/")
        .stdin(Stdio::null())
        // A check cancelled by the next interval must not leave its script behind.
        .kill_on_drop(true);
    let Ok(mut child) = cmd.spawn() else {
        return failed;
    };
    match timeout_at(deadline, child.wait()).await {
        Ok(Ok(status)) => match status.code() {
            Some(c) if c > 0 => Outcome::up("script ok"),
            _ => failed,
        },
        Ok(Err(_)) => failed,
        Err(_) => {
            let _ = child.start_kill();
            // Reap it now rather than leave a zombie until the runtime gets to it.
            let _ = child.wait().await;
            failed
        }
    }
}
