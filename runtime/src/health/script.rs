//! `check script PATH`: relayd's check_script.c. `PATH hostname` runs with `/` as its
//! working directory and is killed (SIGKILL) when the table timeout has passed. relayd's
//! convention is inverted from the shell's: an exit status above 0 means up; 0, a
//! signal (the kill included) or a program that could not be run (relayd's child then
//! exits 0) mean down.
//!
//! relayd runs the script as `_relayd`, one at a time in its parent process; here it
//! runs as the user relayd-run runs as, concurrently with the other checks.

use super::Outcome;
use std::process::Stdio;
use tokio::process::Command;
use tokio::time::{timeout_at, Instant};

pub(super) async fn check(path: &str, hostname: &str, deadline: Instant) -> Outcome {
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
