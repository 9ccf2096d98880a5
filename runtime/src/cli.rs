//! The `relayd-run` command line: `relayd-run [-d] [-v]... [-s SOCKET] [--check] PLAN`.
//!
//! Exit codes: 0 the plan is valid (`--check`) or was served until SIGTERM/SIGINT (or
//! `relayctl stop`), 1 the plan was refused (or needs what this version cannot serve
//! yet, or its control socket could not be had), 2 usage problems.

use crate::bind::{bind, Root};
use crate::plan::{self, LoadError};
use clap::Parser;
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Parser, Debug)]
#[command(
    name = "relayd-run",
    version,
    about = "Run a plan written by `relaydc compile relayd.conf -o plan.bin`"
)]
pub struct Args {
    /// Stay in the foreground and log to stderr.
    #[arg(short = 'd')]
    pub debug: bool,
    /// Log more (repeat for even more).
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Control socket for relayctl (default: the configuration's `socket`, else
    /// /run/relayd.sock).
    #[arg(short = 's', value_name = "SOCKET")]
    pub socket: Option<PathBuf>,
    /// Only load and validate the whole plan (header, checksums, structure, keys,
    /// consistency), print `configuration OK` and exit, like `relayd -n`.
    #[arg(short = 'n', long = "check")]
    pub check: bool,
    /// Look the plan's absolute paths (late-bound TLS files) up under DIR: for testing
    /// a plan against a copy of the deploy host's files.
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// The plan file.
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
}

/// Runs `relayd-run` with `argv` (program name first) and returns the exit code.
pub fn run(argv: Vec<OsString>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    let args = match Args::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) => {
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                write!(err, "{text}")
            } else {
                write!(out, "{text}")
            };
            return e.exit_code();
        }
    };
    if args.check {
        check_bound(&args.plan, &Root(args.root.clone()), err)
    } else {
        serve(&args, err)
    }
}

/// `--check`: the whole plan, as the signer process would load it.
pub fn check(path: &Path, err: &mut dyn Write) -> i32 {
    check_bound(path, &Root::default(), err)
}

/// `--check`, with late-bound names resolved and files read as at start: a plan passes
/// only if it could start here.
pub fn check_bound(path: &Path, root: &Root, err: &mut dyn Write) -> i32 {
    match plan::load(path) {
        Ok(mut loaded) => match bind(&mut loaded.plan, &mut loaded.keys, root) {
            Ok(()) => {
                let _ = writeln!(err, "configuration OK");
                0
            }
            Err(errors) => {
                for e in &errors {
                    let _ = writeln!(err, "relayd-run: {}: {e}", path.display());
                }
                let _ = writeln!(
                    err,
                    "relayd-run: {}: {} late-bound fact{} could not be bound on this host",
                    path.display(),
                    errors.len(),
                    if errors.len() == 1 { "" } else { "s" }
                );
                1
            }
        },
        Err(e) => refused(path, &e, err),
    }
}

/// Without `--check`: load, bind late facts, and serve until SIGTERM/SIGINT.
fn serve(args: &Args, err: &mut dyn Write) -> i32 {
    let mut loaded = match plan::load(&args.plan) {
        Ok(l) => l,
        Err(e) => return refused(&args.plan, &e, err),
    };
    if let Err(errors) = bind(&mut loaded.plan, &mut loaded.keys, &Root(args.root.clone())) {
        for e in &errors {
            let _ = writeln!(err, "relayd-run: {}: {e}", args.plan.display());
        }
        return 1;
    }
    crate::log::init(args.debug, args.verbose);
    let opts = crate::serve::Options {
        socket: args.socket.clone(),
        plan_path: std::path::absolute(&args.plan).unwrap_or_else(|_| args.plan.clone()),
    };
    match crate::serve::serve(loaded.plan, &opts) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "relayd-run: {}: {e}", args.plan.display());
            1
        }
    }
}

fn refused(path: &Path, e: &LoadError, err: &mut dyn Write) -> i32 {
    let _ = writeln!(err, "relayd-run: {}: {e}", path.display());
    1
}
