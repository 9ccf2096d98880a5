//! The privileged helper: relayd's parent and pf engine, as far as they touch the
//! kernel's packet filter and routes (DESIGN.md, "Processes").
//!
//! The relay process parses client traffic, so it keeps no capability. What redirects
//! and routers need, CAP_NET_ADMIN, is held by this small process alone. When a plan
//! has redirects or routers, [`Helper::start`] re-executes relayd-run
//! (`/proc/self/exe`) as `relayd-run: helper` with the hidden first argument
//! [`SUBCOMMAND`], before the relay process drops its privileges, with a socket as its
//! standard input. The child drops at once to CAP_NET_ADMIN alone
//! ([`Privileges::drop_to_net_admin`]: the relay process's user, or the user it was
//! started as under `--no-privdrop`, CAP_NET_ADMIN in the ambient set so the `nft` and
//! `ip` it runs have it and nothing more, not dumpable), then does only this:
//!
//! * applies an nftables JSON batch with `nft -j -f -`, after checking that every
//!   command in it concerns the `inet relayd` table and does only what
//!   `crate::redirect::ruleset_for` does: the table, its nat prerouting chain (policy
//!   accept), named counters, and rules that match, count, mark and DNAT
//!   ([`check_batch`]);
//! * lists that table's counters (`show redirects` statistics);
//! * replaces or deletes a route with `ip route`, if the routers of the plan relayd-run
//!   started with name it ([`Remit`], sent once, before the relay process drops its
//!   privileges, and fixed from then on).
//!
//! Anything else is refused with a sentence. The messages are JSON, framed by a
//! little-endian `u32` length and carrying the protocol version `v`; the first is the
//! remit, answered once the child has dropped its privileges. The child exits when its
//! socket reaches end of file, whether the relay process closed it or died however it
//! died, and removes on its way out what it made: the table, if it applied one, and
//! every route it added. It ignores SIGTERM, SIGINT and SIGHUP, which its process group
//! may receive, so that this happens after the relay process is gone, never before.

use crate::privs::Privileges;
use crate::redirect::{removal, Nft, CHAIN, SAFE_PATH, TABLE};
use crate::router::{Remit, RouteChange, RouteKey};
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression};
use nftables::schema::{FlushObject, NfCmd, NfListObject, NfObject, Nftables};
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::IpAddr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The hidden first argument that makes relayd-run the helper.
pub const SUBCOMMAND: &str = "__helper";

/// The protocol version this build speaks.
pub const VERSION: u32 = 1;

/// Larger than any batch a plan makes (a few hundred bytes per listener).
const MAX_FRAME: usize = 16 * 1024 * 1024;

/// `nft` and `ip` finish in milliseconds; a helper that does not answer in this time is
/// stuck, and the caller says so rather than waiting forever.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// What the relay process asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The first message: what routes the helper may make.
    Hello { remit: Remit },
    /// Apply a batch to the `inet relayd` table.
    Nft { batch: Nftables<'static> },
    /// The table's counters.
    Counters,
    /// Replace or delete one route.
    Route { change: RouteChange },
}

/// The helper's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "result", rename_all = "snake_case")]
pub enum Answer {
    /// To the hello: privileges dropped, requests welcome.
    Ready,
    Done,
    Counters {
        counters: Vec<(String, u64)>,
    },
    /// Outside what the helper does; nothing was run.
    Refused {
        why: String,
    },
    /// `nft` or `ip` failed (their message).
    Failed {
        why: String,
    },
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    v: u32,
    #[serde(flatten)]
    body: T,
}

/// Why a request did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HelperError {
    /// The child could not be started.
    Spawn(String),
    /// The helper refused (outside its remit, or its privilege drop failed).
    Refused(String),
    /// `nft` or `ip` failed.
    Failed(String),
    /// Talking to the child failed.
    Io(String),
}

impl fmt::Display for HelperError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelperError::Spawn(e) => write!(f, "cannot start the privileged helper: {e}"),
            HelperError::Refused(e) => write!(f, "the privileged helper refused: {e}"),
            HelperError::Failed(e) => write!(f, "{e}"),
            HelperError::Io(e) => write!(f, "privileged helper: {e}"),
        }
    }
}

impl std::error::Error for HelperError {}

/// How to start the child.
#[derive(Clone, Debug)]
pub struct Options {
    /// The relayd-run binary; `/proc/self/exe` unless a library user runs from another.
    pub program: PathBuf,
    /// Who the child becomes (the relay process's target; CAP_NET_ADMIN kept).
    pub privileges: Privileges,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            program: PathBuf::from("/proc/self/exe"),
            privileges: Privileges::keep(),
        }
    }
}

/// The relay process's handle on the helper; requests are answered one at a time.
pub struct Helper {
    stream: Mutex<Option<UnixStream>>,
    child: Mutex<Option<Child>>,
    pid: u32,
}

impl fmt::Debug for Helper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Helper").field("pid", &self.pid).finish()
    }
}

impl Helper {
    /// Starts the helper with its remit; returns once it has dropped its privileges.
    /// Call before the relay process drops its own and before any thread exists (the
    /// child inherits the capabilities the process has now).
    pub fn start(remit: Remit, opts: &Options) -> Result<Helper, HelperError> {
        let (ours, theirs) = UnixStream::pair().map_err(|e| HelperError::Spawn(e.to_string()))?;
        let mut cmd = Command::new(&opts.program);
        cmd.arg0("relayd-run: helper")
            .arg(SUBCOMMAND)
            .args(opts.privileges.to_args())
            .stdin(Stdio::from(OwnedFd::from(theirs)))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .env_remove("NOTIFY_SOCKET")
            // Out of the terminal's process group: ^C reaches the relay process, which
            // removes the rules itself before the helper goes.
            .process_group(0);
        let spawned = cmd.spawn();
        // The child's end must be closed here, or its exit would never reach this
        // process as end of file, nor this process's exit the child.
        drop(cmd);
        let child = spawned.map_err(|e| HelperError::Spawn(e.to_string()))?;
        let pid = child.id();
        let set = ours
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| ours.set_write_timeout(Some(IO_TIMEOUT)));
        let helper = Helper {
            stream: Mutex::new(Some(ours)),
            child: Mutex::new(Some(child)),
            pid,
        };
        set.map_err(|e| HelperError::Spawn(e.to_string()))?;
        match helper.call(&Request::Hello { remit })? {
            Answer::Ready => Ok(helper),
            other => Err(HelperError::Io(format!("unexpected answer {other:?}"))),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Applies `batch` to the `inet relayd` table, in one transaction.
    pub fn apply(&self, batch: Nftables<'static>) -> Result<(), HelperError> {
        match self.call(&Request::Nft { batch })? {
            Answer::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// The table's counters: (name, packets).
    pub fn counters(&self) -> Result<Vec<(String, u64)>, HelperError> {
        match self.call(&Request::Counters)? {
            Answer::Counters { counters } => Ok(counters),
            other => Err(unexpected(other)),
        }
    }

    /// Replaces or deletes one route.
    pub fn route(&self, change: &RouteChange) -> Result<(), HelperError> {
        let request = Request::Route {
            change: change.clone(),
        };
        match self.call(&request)? {
            Answer::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// One request, one answer. An error of the exchange itself closes the connection,
    /// which ends the helper (it cleans up as it goes): the two are out of step.
    fn call(&self, request: &Request) -> Result<Answer, HelperError> {
        let mut guard = self
            .stream
            .lock()
            .map_err(|_| HelperError::Io("the connection's lock is poisoned".into()))?;
        let Some(stream) = guard.as_mut() else {
            return Err(HelperError::Io("the helper is gone".into()));
        };
        let body = serde_json::to_vec(&Envelope {
            v: VERSION,
            body: request,
        })
        .map_err(|e| HelperError::Io(e.to_string()))?;
        let got = write_frame(stream, &body).and_then(|()| read_frame(stream));
        let frame = match got {
            Ok(Some(f)) => f,
            Ok(None) => {
                *guard = None;
                return Err(HelperError::Io("the helper exited".into()));
            }
            Err(e) => {
                *guard = None;
                return Err(HelperError::Io(e.to_string()));
            }
        };
        let answer: Envelope<Answer> = match serde_json::from_slice(&frame) {
            Ok(a) => a,
            Err(e) => {
                *guard = None;
                return Err(HelperError::Io(format!("malformed answer: {e}")));
            }
        };
        if answer.v != VERSION {
            *guard = None;
            return Err(HelperError::Io(format!(
                "the helper speaks version {}, this relay process {VERSION}",
                answer.v
            )));
        }
        match answer.body {
            Answer::Refused { why } => Err(HelperError::Refused(why)),
            Answer::Failed { why } => Err(HelperError::Failed(why)),
            a => Ok(a),
        }
    }
}

fn unexpected(a: Answer) -> HelperError {
    HelperError::Io(format!("unexpected answer {a:?}"))
}

impl Drop for Helper {
    fn drop(&mut self) {
        if let Ok(mut s) = self.stream.lock() {
            if let Some(s) = s.take() {
                let _ = s.shutdown(std::net::Shutdown::Both);
            }
        }
        // The helper removes what it made before it exits: wait for that (bounded), so
        // nothing of ours outlives relayd-run.
        if let Ok(mut child) = self.child.lock() {
            if let Some(mut c) = child.take() {
                let t0 = Instant::now();
                while t0.elapsed() < IO_TIMEOUT {
                    match c.try_wait() {
                        Ok(Some(_)) | Err(_) => return,
                        Ok(None) => std::thread::sleep(Duration::from_millis(5)),
                    }
                }
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}

fn write_frame(s: &mut UnixStream, body: &[u8]) -> io::Result<()> {
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| (*n as usize) <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(body);
    s.write_all(&frame)
}

/// One frame's payload; `None` at end of file before a frame began.
fn read_frame(s: &mut UnixStream) -> io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        match s.read(len.get_mut(got..).unwrap_or_default()) {
            Ok(0) if got == 0 => return Ok(None),
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "message too long",
        ));
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)?;
    Ok(Some(body))
}

// ---------------------------------------------------------------------------------------
// The child
// ---------------------------------------------------------------------------------------

/// `relayd-run __helper PRIVILEGES…` with its socket as standard input: the helper
/// process. Returns the exit code.
pub fn child_main(args: &[String]) -> i32 {
    let Some(privileges) = Privileges::from_args(args) else {
        eprintln!("relayd-run: {SUBCOMMAND} is started by relayd-run itself");
        return 2;
    };
    let mut ctl = match std::io::stdin().as_fd().try_clone_to_owned() {
        Ok(fd) => UnixStream::from(fd),
        Err(e) => {
            eprintln!("relayd-run: helper: {e}");
            return 1;
        }
    };
    // Privileges go before anything is read.
    let dropped = privileges.drop_to_net_admin();
    let signals = ignore_signals();
    let hello = read_frame(&mut ctl)
        .ok()
        .flatten()
        .and_then(|f| serde_json::from_slice::<Envelope<Request>>(&f).ok());
    let remit = match (dropped, signals, hello) {
        (Err(e), _, _) => Err(e.to_string()),
        (_, Err(e), _) => Err(format!("cannot ignore signals: {e}")),
        (Ok(()), Ok(()), Some(Envelope { v, .. })) if v != VERSION => Err(format!(
            "the relay process speaks version {v}, this helper {VERSION}"
        )),
        (
            Ok(()),
            Ok(()),
            Some(Envelope {
                body: Request::Hello { remit },
                ..
            }),
        ) => Ok(remit),
        (Ok(()), Ok(()), _) => Err("the first message must be the remit".into()),
    };
    let remit = match remit {
        Ok(r) => r,
        Err(why) => {
            let _ = answer(&mut ctl, &Answer::Refused { why });
            return 1;
        }
    };
    if answer(&mut ctl, &Answer::Ready).is_err() {
        return 1;
    }
    let mut state = Worker {
        remit,
        nft: Nft::default(),
        table: false,
        routes: BTreeMap::new(),
    };
    while let Ok(Some(frame)) = read_frame(&mut ctl) {
        let a = state.handle(&frame);
        if answer(&mut ctl, &a).is_err() {
            break;
        }
    }
    state.clean_up();
    0
}

fn answer(s: &mut UnixStream, a: &Answer) -> io::Result<()> {
    let body = serde_json::to_vec(&Envelope {
        v: VERSION,
        body: a,
    })
    .map_err(io::Error::other)?;
    write_frame(s, &body)
}

/// Registers handlers for the signals a terminal or a service manager sends the whole
/// group, which takes their default action (termination) away for good: the helper ends
/// at end of file only, after cleaning up.
fn ignore_signals() -> io::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()?;
    let _guard = rt.enter();
    for kind in [
        SignalKind::terminate(),
        SignalKind::interrupt(),
        SignalKind::hangup(),
    ] {
        let _ = signal(kind)?;
    }
    Ok(())
}

/// What the helper did and may do.
struct Worker {
    remit: Remit,
    nft: Nft,
    /// Whether a batch was applied since the table was last removed.
    table: bool,
    /// The routes it made, with their gateways.
    routes: BTreeMap<RouteKey, Vec<IpAddr>>,
}

impl Worker {
    fn handle(&mut self, frame: &[u8]) -> Answer {
        let env: Envelope<serde_json::Value> = match serde_json::from_slice(frame) {
            Ok(e) => e,
            Err(e) => {
                return Answer::Refused {
                    why: format!("malformed request: {e}"),
                }
            }
        };
        if env.v != VERSION {
            return Answer::Refused {
                why: format!(
                    "the relay process speaks version {}, this helper {VERSION}",
                    env.v
                ),
            };
        }
        let request: Request = match serde_json::from_value(env.body) {
            Ok(r) => r,
            Err(e) => {
                return Answer::Refused {
                    why: format!("not a request the helper knows: {e}"),
                }
            }
        };
        match request {
            Request::Hello { .. } => Answer::Refused {
                why: "the remit is fixed at start".into(),
            },
            Request::Counters => match self.nft.counters() {
                Ok(counters) => Answer::Counters { counters },
                Err(why) => Answer::Failed { why },
            },
            Request::Nft { batch } => {
                if let Err(why) = check_batch(&batch) {
                    return Answer::Refused { why };
                }
                match self.nft.apply(&batch) {
                    Ok(()) => {
                        self.table = !is_removal(&batch);
                        Answer::Done
                    }
                    Err(why) => Answer::Failed { why },
                }
            }
            Request::Route { change } => {
                if let Err(why) = self.remit.allows(&change) {
                    return Answer::Refused { why };
                }
                match ip(&change) {
                    Ok(()) => {
                        if change.is_delete() {
                            self.routes.remove(&change.key);
                        } else {
                            self.routes.insert(change.key, change.gateways);
                        }
                        Answer::Done
                    }
                    Err(why) => Answer::Failed { why },
                }
            }
        }
    }

    /// Removes what is left of what the helper made.
    fn clean_up(&mut self) {
        if self.table {
            if let Err(e) = self.nft.apply(&removal()) {
                eprintln!("relayd-run: helper: cannot remove table inet {TABLE}: {e}");
            }
        }
        for key in std::mem::take(&mut self.routes).into_keys() {
            let change = RouteChange {
                key,
                gateways: Vec::new(),
            };
            if let Err(e) = ip(&change) {
                eprintln!(
                    "relayd-run: helper: cannot delete route {}/{} (table {}): {e}",
                    key.dest, key.prefixlen, key.table
                );
            }
        }
    }
}

/// `ip route replace|del …`; deleting a route that is not there is done, as relayd
/// ignores ESRCH.
fn ip(change: &RouteChange) -> Result<(), String> {
    let out = Command::new("ip")
        .env_clear()
        .env("PATH", SAFE_PATH)
        .env("LC_ALL", "C")
        .args(change.ip_args())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&out.stderr).trim().to_string();
    if change.is_delete() && err.contains("No such process") {
        return Ok(());
    }
    Err(err)
}

/// Whether the batch only deletes the table.
fn is_removal(batch: &Nftables<'_>) -> bool {
    batch.objects.iter().all(|o| {
        matches!(
            o,
            NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(_)))
        )
    })
}

/// Checks that every command of `batch` stays within what the helper does to the
/// `inet relayd` table (see the module documentation).
pub fn check_batch(batch: &Nftables<'_>) -> Result<(), String> {
    if batch.objects.is_empty() {
        return Err("an empty batch".into());
    }
    for (n, o) in batch.objects.iter().enumerate() {
        let n = n + 1;
        let NfObject::CmdObject(cmd) = o else {
            return Err(format!("element {n} is not a command"));
        };
        let checked = match cmd {
            NfCmd::Add(obj) | NfCmd::Create(obj) | NfCmd::Insert(obj) => check_object(obj, true),
            NfCmd::Delete(obj) => check_object(obj, false),
            NfCmd::Flush(FlushObject::Table(t)) => ours(t.family, &t.name, "a table"),
            NfCmd::Flush(FlushObject::Chain(c)) => ours(c.family, &c.table, "a chain"),
            _ => Err("only add, create, insert, delete and flush are allowed".into()),
        };
        checked.map_err(|e| format!("command {n}: {e}"))?;
    }
    Ok(())
}

fn ours(family: NfFamily, table: &str, what: &str) -> Result<(), String> {
    if family == NfFamily::INet && table == TABLE {
        Ok(())
    } else {
        Err(format!(
            "{what} outside table inet {TABLE} ({} {table})",
            serde_json::to_value(family)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_default()
        ))
    }
}

fn check_object(obj: &NfListObject<'_>, adding: bool) -> Result<(), String> {
    match obj {
        NfListObject::Table(t) => ours(t.family, &t.name, "a table"),
        NfListObject::Counter(c) => ours(c.family, &c.table, "a counter"),
        NfListObject::Chain(c) => {
            ours(c.family, &c.table, "a chain")?;
            if !adding || c.hook.is_none() && c._type.is_none() {
                return Ok(());
            }
            let base = c.name == CHAIN
                && c._type == Some(NfChainType::NAT)
                && c.hook == Some(NfHook::Prerouting)
                && c.dev.is_none()
                && matches!(c.policy, None | Some(NfChainPolicy::Accept));
            if base {
                Ok(())
            } else {
                Err(format!(
                    "the only base chain is {CHAIN}, type nat, hook prerouting, policy accept"
                ))
            }
        }
        NfListObject::Rule(r) => {
            ours(r.family, &r.table, "a rule")?;
            if !adding {
                return Ok(());
            }
            for s in r.expr.iter() {
                check_statement(s)?;
            }
            Ok(())
        }
        _ => Err("only tables, chains, rules and counters are allowed".into()),
    }
}

/// Rules match, count, set the packet mark and DNAT; nothing that drops, rejects,
/// jumps or reaches outside the packet's own path.
fn check_statement(s: &Statement<'_>) -> Result<(), String> {
    match s {
        Statement::Match(_) | Statement::Counter(_) | Statement::DNAT(_) => Ok(()),
        Statement::Mangle(m)
            if matches!(
                m.key,
                Expression::Named(NamedExpression::Meta(Meta { key: MetaKey::Mark }))
            ) =>
        {
            Ok(())
        }
        _ => Err("a rule may only match, count, set the packet mark and DNAT".into()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;
    use std::borrow::Cow;

    fn batch(json: &str) -> Nftables<'static> {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn what_the_ruleset_makes_is_allowed() {
        // tests/redirect.rs checks `ruleset`'s own batches for compiled plans.
        assert_eq!(check_batch(&removal()), Ok(()));
        let ours = batch(
            r#"{"nftables":[{"add":{"table":{"family":"inet","name":"relayd"}}},
            {"flush":{"table":{"family":"inet","name":"relayd"}}},
            {"add":{"chain":{"family":"inet","table":"relayd","name":"prerouting","type":"nat","hook":"prerouting","prio":-100,"policy":"accept"}}},
            {"add":{"counter":{"family":"inet","table":"relayd","name":"www","bytes":null}}},
            {"add":{"rule":{"family":"inet","table":"relayd","chain":"prerouting","expr":[
              {"match":{"left":{"meta":{"key":"l4proto"}},"right":"tcp","op":"=="}},
              {"counter":"www"},
              {"mangle":{"key":{"meta":{"key":"mark"}},"value":1}},
              {"dnat":{"addr":"10.0.0.1","family":"ip","port":80}}]}}}]}"#,
        );
        assert_eq!(check_batch(&ours), Ok(()));
    }

    #[test]
    fn anything_else_is_refused() {
        let mut checked = 0;
        for (json, why) in [
            (
                r#"{"nftables":[{"add":{"table":{"family":"inet","name":"filter"}}}]}"#,
                "outside table inet relayd",
            ),
            (
                r#"{"nftables":[{"delete":{"table":{"family":"ip","name":"relayd"}}}]}"#,
                "outside table inet relayd",
            ),
            (
                r#"{"nftables":[{"flush":{"ruleset":null}}]}"#,
                "only add, create",
            ),
            (
                r#"{"nftables":[{"add":{"chain":{"family":"inet","table":"relayd","name":"input","type":"filter","hook":"input","prio":0,"policy":"drop"}}}]}"#,
                "the only base chain",
            ),
            (
                r#"{"nftables":[{"add":{"chain":{"family":"inet","table":"relayd","name":"prerouting","type":"nat","hook":"prerouting","prio":-100,"policy":"drop"}}}]}"#,
                "the only base chain",
            ),
            (
                r#"{"nftables":[{"add":{"rule":{"family":"inet","table":"relayd","chain":"prerouting","expr":[{"drop":null}]}}}]}"#,
                "may only match",
            ),
            (
                r#"{"nftables":[{"add":{"rule":{"family":"inet","table":"relayd","chain":"prerouting","expr":[{"jump":{"target":"x"}}]}}}]}"#,
                "may only match",
            ),
            (
                r#"{"nftables":[{"add":{"rule":{"family":"inet","table":"nat","chain":"prerouting","expr":[]}}}]}"#,
                "outside table inet relayd",
            ),
            (
                r#"{"nftables":[{"add":{"set":{"family":"inet","table":"relayd","name":"s","type":"ipv4_addr"}}}]}"#,
                "only tables, chains",
            ),
            (
                r#"{"nftables":[{"list":{"ruleset":null}}]}"#,
                "only add, create",
            ),
            (r#"{"nftables":[]}"#, "an empty batch"),
        ] {
            let b: Nftables<'static> = match serde_json::from_str(json) {
                Ok(b) => b,
                // What nftables' types cannot even express is refused before this.
                Err(e) => {
                    eprintln!("{json}: {e}");
                    continue;
                }
            };
            let err = check_batch(&b).unwrap_err();
            assert!(err.contains(why), "{json}: {err}");
            checked += 1;
        }
        assert!(checked >= 10, "{checked}");
        let mangle_ct = Nftables {
            objects: Cow::Owned(vec![NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(
                nftables::schema::Rule {
                    family: NfFamily::INet,
                    table: TABLE.into(),
                    chain: CHAIN.into(),
                    expr: Cow::Owned(vec![Statement::Mangle(nftables::stmt::Mangle {
                        key: Expression::Named(NamedExpression::Meta(Meta {
                            key: MetaKey::Priority,
                        })),
                        value: Expression::Number(1),
                    })]),
                    ..Default::default()
                },
            )))]),
        };
        assert!(check_batch(&mangle_ct).is_err());
    }

    #[test]
    fn a_worker_refuses_before_running_anything() {
        let mut w = Worker {
            remit: Remit::default(),
            // A namespace that does not exist: were anything run, it would fail, not
            // be refused.
            nft: Nft {
                netns: Some("relayd-run-no-such-namespace".into()),
            },
            table: false,
            routes: BTreeMap::new(),
        };
        let req = |r: &Request| {
            serde_json::to_vec(&Envelope {
                v: VERSION,
                body: r,
            })
            .unwrap()
        };
        let route = Request::Route {
            change: RouteChange {
                key: RouteKey {
                    table: 254,
                    dest: "0.0.0.0".parse().unwrap(),
                    prefixlen: 0,
                    metric: 0,
                },
                gateways: vec!["192.0.2.1".parse().unwrap()],
            },
        };
        assert!(matches!(w.handle(&req(&route)), Answer::Refused { .. }));
        let foreign = Request::Nft {
            batch: batch(
                r#"{"nftables":[{"delete":{"table":{"family":"inet","name":"filter"}}}]}"#,
            ),
        };
        assert!(matches!(w.handle(&req(&foreign)), Answer::Refused { .. }));
        let hello = Request::Hello {
            remit: Remit::default(),
        };
        assert!(matches!(w.handle(&req(&hello)), Answer::Refused { .. }));
        let old = serde_json::to_vec(&Envelope {
            v: VERSION + 1,
            body: &Request::Counters,
        })
        .unwrap();
        match w.handle(&old) {
            Answer::Refused { why } => assert!(why.contains("version"), "{why}"),
            a => panic!("{a:?}"),
        }
        assert!(matches!(
            w.handle(br#"{"v":1,"op":"run","argv":["sh"]}"#),
            Answer::Refused { .. }
        ));
        assert!(w.routes.is_empty() && !w.table);
    }

    #[test]
    fn messages_round_trip() {
        let r = Request::Route {
            change: RouteChange {
                key: RouteKey {
                    table: 100,
                    dest: "10.9.0.0".parse().unwrap(),
                    prefixlen: 16,
                    metric: 3,
                },
                gateways: vec!["10.0.0.1".parse().unwrap()],
            },
        };
        let bytes = serde_json::to_vec(&Envelope {
            v: VERSION,
            body: &r,
        })
        .unwrap();
        let back: Envelope<Request> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!((back.v, back.body), (VERSION, r));
        let n = Request::Nft { batch: removal() };
        let bytes = serde_json::to_vec(&Envelope {
            v: VERSION,
            body: &n,
        })
        .unwrap();
        let back: Envelope<Request> = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(back.body, n);
    }
}
