//! The `relayd-run` command line: `relayd-run [-d] [-v]... [-s SOCKET] [-u USER |
//! --no-privdrop] [--no-seccomp] [--head-timeout SECONDS] [--max-sessions N] [--check] PLAN`.
//!
//! Exit codes: 0 the plan is valid (`--check`) or was served until SIGTERM/SIGINT (or
//! `relayctl stop`), 1 the plan was refused (or needs what this version cannot serve
//! yet, or its control socket could not be had, or privileges cannot be dropped), 2
//! usage problems.
//!
//! Serving, the relay process reads the plan's header and body only; the keys section
//! is read into a buffer that is wiped once the signer process ([`crate::signer`]) has
//! it, and late-bound keys likewise. Privileges are chosen before anything starts
//! ([`crate::privs`]) and dropped once every socket is bound.

use crate::bind::{bind, Root};
use crate::plan::{self, LoadError};
use crate::privs::Privileges;
use crate::signer::{KeySource, Signer};
use clap::Parser;
use relaydc_spec::plan::container::{self, Header};
use relaydc_spec::plan::{KeyRef, Keys};
use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize, Zeroizing};

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
    /// Run as USER once every listening socket is bound (default: _relayd). As root
    /// without it and without a _relayd user, relayd-run refuses to start.
    #[arg(short = 'u', value_name = "USER", conflicts_with = "no_privdrop")]
    pub user: Option<String>,
    /// Stay root, with every capability, after binding: for development and tests only.
    #[arg(long = "no-privdrop")]
    pub no_privdrop: bool,
    /// Run without the seccomp allow-lists of the relay and signer processes: for
    /// debugging only (a call a list lacks fails with EPERM in the relay process and
    /// kills the signer process).
    #[arg(long = "no-seccomp")]
    pub no_seccomp: bool,
    /// Seconds an HTTP relay's client has to send a whole request head (from the accept
    /// for the first, from its first byte for the next ones); 0 turns the deadline off.
    /// Past it: 408 Request Timeout.
    #[arg(long = "head-timeout", value_name = "SECONDS", default_value_t = crate::serve::limits::DEFAULT_HEAD_TIMEOUT_S)]
    pub head_timeout: u32,
    /// Sessions one worker serves at once; at the cap it stops accepting until one ends
    /// (default: as many as the open-file limit allows).
    #[arg(long = "max-sessions", value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_sessions: Option<u32>,
    /// The plan file.
    #[arg(value_name = "PLAN")]
    pub plan: PathBuf,
}

/// Runs `relayd-run` with `argv` (program name first) and returns the exit code.
pub fn run(argv: Vec<OsString>, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
    if argv.get(1).is_some_and(|a| a == crate::signer::SUBCOMMAND) {
        let rest: Vec<String> = argv
            .iter()
            .skip(2)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return crate::signer::child_main(&rest);
    }
    if argv.get(1).is_some_and(|a| a == crate::helper::SUBCOMMAND) {
        let rest: Vec<String> = argv
            .iter()
            .skip(2)
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        return crate::helper::child_main(&rest);
    }
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

/// Without `--check`: load the public plan, bind late facts, choose whom to run as,
/// hand the keys to the signer process, and serve until SIGTERM/SIGINT.
fn serve(args: &Args, err: &mut dyn Write) -> i32 {
    crate::notify::init();
    let public = match plan::load_public(&args.plan) {
        Ok(l) => l,
        Err(e) => return refused(&args.plan, &e, err),
    };
    let mut plan = public.plan;
    let section = if public.header.keys_len > 0 {
        match read_keys_section(&args.plan, &public.header) {
            Ok(s) => Some(s),
            Err(e) => return refused(&args.plan, &e, err),
        }
    } else {
        None
    };
    let late_bound: Vec<bool> = plan
        .keypairs
        .iter()
        .map(|k| matches!(k.key, KeyRef::Paths(_)))
        .collect();
    let mut late = Keys { keys: Vec::new() };
    if let Err(errors) = bind(&mut plan, &mut late, &Root(args.root.clone())) {
        wipe(&mut late);
        for e in &errors {
            let _ = writeln!(err, "relayd-run: {}: {e}", args.plan.display());
        }
        return 1;
    }
    let chosen = crate::serve::servable(&plan)
        .map_err(|e| e.to_string())
        .and_then(|()| {
            Privileges::choose(args.user.as_deref(), args.no_privdrop).map_err(|e| e.to_string())
        });
    let privileges = match chosen {
        Ok(p) => p.with_icmp_needs(&plan),
        Err(e) => {
            wipe(&mut late);
            let _ = writeln!(err, "relayd-run: {}: {e}", args.plan.display());
            return 1;
        }
    };
    crate::log::init(args.debug, args.verbose);
    let signer = if section.is_some() || !late.keys.is_empty() {
        let started = Signer::start_with(
            KeySource {
                section: section.as_ref().map_or(&[][..], |s| s.keys()),
                keys: &late.keys,
            },
            &crate::signer::Options {
                privileges: privileges.clone(),
                seccomp: !args.no_seccomp,
                ..Default::default()
            },
        );
        drop(section);
        wipe(&mut late);
        match started {
            Ok(s) => Some(s),
            Err(e) => {
                let _ = writeln!(err, "relayd-run: {}: {e}", args.plan.display());
                return 1;
            }
        }
    } else {
        None
    };
    if let Some(s) = &signer {
        // Late-bound keys follow the section's in the signer.
        let offset = u32::try_from(s.section_keys()).unwrap_or(u32::MAX);
        for (kp, late) in plan.keypairs.iter_mut().zip(late_bound) {
            if let (true, KeyRef::Section(n)) = (late, &mut kp.key) {
                *n = n.saturating_add(offset);
            }
        }
        if let Err(e) = plan::validate(&plan, plan::KeysSection::Read(s.len())) {
            return refused(&args.plan, &LoadError::Inconsistent(e), err);
        }
        crate::log::debug(&format!(
            "signer: {} private key{}, pid {}",
            s.len(),
            if s.len() == 1 { "" } else { "s" },
            s.pid()
        ));
    }
    let opts = crate::serve::Options {
        socket: args.socket.clone(),
        plan_path: std::path::absolute(&args.plan).unwrap_or_else(|_| args.plan.clone()),
        signer,
        privileges,
        seccomp: !args.no_seccomp,
        head_timeout: (args.head_timeout > 0)
            .then(|| std::time::Duration::from_secs(u64::from(args.head_timeout))),
        max_sessions: args.max_sessions,
    };
    match crate::serve::serve(plan, &opts) {
        Ok(()) => 0,
        Err(e) => {
            let _ = writeln!(err, "relayd-run: {}: {e}", args.plan.display());
            1
        }
    }
}

/// The whole plan file, kept only to hand its keys section to the signer; wiped when
/// dropped.
struct Section {
    file: Zeroizing<Vec<u8>>,
    start: usize,
}

impl Section {
    fn keys(&self) -> &[u8] {
        self.file.get(self.start..).unwrap_or_default()
    }
}

/// Reads the plan file again, whole, into one buffer of its exact size (so no
/// reallocation leaves a copy behind), checks every digest and that it is the file whose
/// header was read before.
fn read_keys_section(path: &Path, header: &Header) -> Result<Section, LoadError> {
    let file = Zeroizing::new(std::fs::read(path)?);
    let opened = container::open(&file)?;
    if opened.header != *header {
        return Err(LoadError::Read {
            kind: std::io::ErrorKind::Other,
            message: "the file changed while it was read".into(),
        });
    }
    let start = file.len().saturating_sub(opened.keys.len());
    Ok(Section { file, start })
}

fn wipe(keys: &mut Keys) {
    for k in &mut keys.keys {
        k.der.zeroize();
    }
}

fn refused(path: &Path, e: &LoadError, err: &mut dyn Write) -> i32 {
    let _ = writeln!(err, "relayd-run: {}: {e}", path.display());
    1
}
