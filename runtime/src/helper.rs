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
//! * applies a batch to the `inet relayd` table, after checking that every command in
//!   it concerns that table and does only what `crate::redirect::ruleset_for` does
//!   ([`check_batch`]): the table, its two base chains (nat prerouting at dstnat, and
//!   the `sticky` filter chain just after it, both with policy accept), named counters,
//!   sets of addresses for sticky-address and their emptying, ct timeout objects with
//!   an established timeout, and rules that match, count, mark, set a ct timeout, add a
//!   packet's address to one of the table's sets and DNAT. The ct timeouts go through
//!   netlink (nft's JSON cannot make them before 1.0.8), the rest through
//!   `nft -j -f -`;
//! * lists that table's counters (`show redirects` statistics);
//! * replaces or deletes a route with `ip route`, if the routers of the plan relayd-run
//!   started with name it ([`Remit`], sent once, before the relay process drops its
//!   privileges, and fixed from then on);
//! * for `transparent forward`, relayd's IMSG_BINDANY: a TCP socket with IP_TRANSPARENT,
//!   bound to a client's address (port 0), passed back over SCM_RIGHTS. Only a helper
//!   whose first message asked for bindany channels does this (the relay process asks
//!   when its plan has transparent forwards, before it drops its privileges): it makes
//!   that many socketpairs, one per relay thread, hands their other ends back with its
//!   first answer, and serves each on a thread of its own in a fixed binary format
//!   ([`bindany_request`], [`bindany_answer`]). It binds nothing but unicast addresses,
//!   never a chosen port, and sends back the socket, never data.
//!
//! Anything else is refused with a sentence. The messages are JSON, framed by a
//! little-endian `u32` length and carrying the protocol version `v`; the first is the
//! remit, answered once the child has dropped its privileges. The child exits when its
//! socket reaches end of file, whether the relay process closed it or died however it
//! died, and removes on its way out what it made: the table, if it applied one, and
//! every route it added. It ignores SIGTERM, SIGINT and SIGHUP, which its process group
//! may receive, so that this happens after the relay process is gone, never before.

use crate::privs::Privileges;
use crate::redirect::{
    removal, Batch, Nft, CHAIN, DSTNAT, MAX_TIMEOUT_S, SAFE_PATH, STICKY_CHAIN, TABLE,
};
use crate::router::{Remit, RouteChange, RouteKey};
use nftables::expr::{Expression, Meta, MetaKey, NamedExpression};
use nftables::schema::{
    FlushObject, NfCmd, NfListObject, NfObject, SetFlag, SetType, SetTypeValue,
};
use nftables::stmt::Statement;
use nftables::types::{NfChainPolicy, NfChainType, NfFamily, NfHook};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::mem::MaybeUninit;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
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

/// More bindany channels than relay threads can exist (`prefork` is at most 32), and
/// fewer than one message can carry (SCM_MAX_FD is 253).
pub const MAX_BINDANY: u32 = 64;

/// A bindany request: version, address family (4 or 6), two reserved bytes, the
/// request's id (u32, little-endian), the address (an IPv4 address in the first four of
/// its sixteen bytes).
pub const BINDANY_REQUEST: usize = 24;

/// A bindany answer: version, status ([`BINDANY_OK`], [`BINDANY_REFUSED`] or
/// [`BINDANY_FAILED`]), two reserved bytes, the request's id, errno (u32,
/// little-endian; the failed call's). With `BINDANY_OK` the socket rides along.
pub const BINDANY_ANSWER: usize = 12;

pub const BINDANY_OK: u8 = 0;
pub const BINDANY_REFUSED: u8 = 1;
pub const BINDANY_FAILED: u8 = 2;

/// What the relay process asks for.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// The first message: what routes the helper may make, and how many bindany
    /// channels it is to open (the plan's transparent forwards need them).
    Hello {
        remit: Remit,
        #[serde(default)]
        bindany: u32,
    },
    /// Apply a batch to the `inet relayd` table.
    Nft { batch: Batch },
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
    /// How many bindany channels to ask for (one per relay thread; none without
    /// transparent forwards). At most [`MAX_BINDANY`].
    pub bindany: u32,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            program: PathBuf::from("/proc/self/exe"),
            privileges: Privileges::keep(),
            bindany: 0,
        }
    }
}

/// The relay process's handle on the helper; requests are answered one at a time.
pub struct Helper {
    stream: Mutex<Option<UnixStream>>,
    child: Mutex<Option<Child>>,
    pid: u32,
    /// The bindany channels the first answer brought, until taken.
    bindany: Mutex<Vec<UnixStream>>,
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
            bindany: Mutex::new(Vec::new()),
        };
        set.map_err(|e| HelperError::Spawn(e.to_string()))?;
        if opts.bindany > MAX_BINDANY {
            return Err(HelperError::Spawn(format!(
                "{} bindany channels asked for, at most {MAX_BINDANY}",
                opts.bindany
            )));
        }
        let hello = Request::Hello {
            remit,
            bindany: opts.bindany,
        };
        let (answer, fds) = helper.exchange(&hello, opts.bindany as usize)?;
        match answer {
            Answer::Ready if fds.len() == opts.bindany as usize => {
                if let Ok(mut b) = helper.bindany.lock() {
                    *b = fds.into_iter().map(UnixStream::from).collect();
                }
                Ok(helper)
            }
            Answer::Ready => Err(HelperError::Io(format!(
                "{} bindany channels asked for, {} received",
                opts.bindany,
                fds.len()
            ))),
            other => Err(HelperError::Io(format!("unexpected answer {other:?}"))),
        }
    }

    /// The bindany channels ([`Options::bindany`]), once: each is for one relay
    /// thread, which sends [`bindany_request`]s and reads [`bindany_answer`]s on it.
    pub fn take_bindany(&self) -> Vec<UnixStream> {
        match self.bindany.lock() {
            Ok(mut b) => std::mem::take(&mut *b),
            Err(_) => Vec::new(),
        }
    }

    /// The child's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Applies `batch` to the `inet relayd` table, its rule changes in one transaction.
    pub fn apply(&self, batch: Batch) -> Result<(), HelperError> {
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
        self.exchange(request, 0).map(|(a, _)| a)
    }

    /// [`Helper::call`], taking up to `fds` descriptors that come with the answer.
    fn exchange(
        &self,
        request: &Request,
        fds: usize,
    ) -> Result<(Answer, Vec<OwnedFd>), HelperError> {
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
        let got = write_frame(stream, &body).and_then(|()| read_frame_with_fds(stream, fds));
        let (frame, fds) = match got {
            Ok((Some(f), fds)) => (f, fds),
            Ok((None, _)) => {
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
            a => Ok((a, fds)),
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

/// [`read_frame`], keeping up to `max` descriptors that came with the frame's first
/// bytes (the sender attaches them to the whole frame).
fn read_frame_with_fds(
    s: &mut UnixStream,
    max: usize,
) -> io::Result<(Option<Vec<u8>>, Vec<OwnedFd>)> {
    if max == 0 {
        return read_frame(s).map(|f| (f, Vec::new()));
    }
    let mut len = [0u8; 4];
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(max))];
    let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
    let got = loop {
        match rustix::net::recvmsg(
            &*s,
            &mut [IoSliceMut::new(&mut len)],
            &mut control,
            rustix::net::RecvFlags::CMSG_CLOEXEC,
        ) {
            Err(rustix::io::Errno::INTR) => {}
            r => break r.map_err(io::Error::from)?,
        }
    };
    let fds: Vec<OwnedFd> = control
        .drain()
        .flat_map(|m| match m {
            rustix::net::RecvAncillaryMessage::ScmRights(fds) => fds.collect(),
            _ => Vec::new(),
        })
        .collect();
    if got.bytes == 0 {
        return Ok((None, fds));
    }
    if got.bytes < len.len() {
        s.read_exact(len.get_mut(got.bytes..).unwrap_or_default())?;
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
    Ok((Some(body), fds))
}

/// [`write_frame`] with `fds` attached to its first bytes.
fn write_frame_with_fds(s: &mut UnixStream, body: &[u8], fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    if fds.is_empty() {
        return write_frame(s, body);
    }
    let len = u32::try_from(body.len())
        .ok()
        .filter(|n| (*n as usize) <= MAX_FRAME)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "message too long"))?;
    let mut frame = Vec::with_capacity(4 + body.len());
    frame.extend_from_slice(&len.to_le_bytes());
    frame.extend_from_slice(body);
    let mut space = vec![MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(fds.len()))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !control.push(rustix::net::SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    let sent = loop {
        match rustix::net::sendmsg(
            &*s,
            &[IoSlice::new(&frame)],
            &mut control,
            rustix::net::SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => {}
            r => break r.map_err(io::Error::from)?,
        }
    };
    s.write_all(frame.get(sent..).unwrap_or_default())
}

// ---------------------------------------------------------------------------------------
// Bindany
// ---------------------------------------------------------------------------------------

/// The request for a socket bound to `ip` (port 0), numbered `id`.
pub fn bindany_request(id: u32, ip: IpAddr) -> [u8; BINDANY_REQUEST] {
    let mut r = [0u8; BINDANY_REQUEST];
    r[0] = VERSION as u8;
    r[4..8].copy_from_slice(&id.to_le_bytes());
    match ip {
        IpAddr::V4(a) => {
            r[1] = 4;
            r[8..12].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            r[1] = 6;
            r[8..24].copy_from_slice(&a.octets());
        }
    }
    r
}

/// A request's id and address, or its id (0 if unreadable) and why it is refused.
fn parse_bindany_request(r: &[u8; BINDANY_REQUEST]) -> Result<(u32, IpAddr), (u32, String)> {
    let id = u32::from_le_bytes([r[4], r[5], r[6], r[7]]);
    if u32::from(r[0]) != VERSION {
        return Err((id, format!("version {}, this helper {VERSION}", r[0])));
    }
    let mut a = [0u8; 16];
    a.copy_from_slice(&r[8..24]);
    let ip = match r[1] {
        4 => IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
        6 => IpAddr::V6(Ipv6Addr::from(a)),
        f => return Err((id, format!("address family {f}"))),
    };
    let unicast = match ip {
        IpAddr::V4(v4) => !(v4.is_unspecified() || v4.is_multicast() || v4.is_broadcast()),
        IpAddr::V6(v6) => !(v6.is_unspecified() || v6.is_multicast()),
    };
    if !unicast {
        return Err((id, format!("{ip} is not a unicast address")));
    }
    Ok((id, ip))
}

fn bindany_reply(id: u32, status: u8, errno: u32) -> [u8; BINDANY_ANSWER] {
    let mut a = [0u8; BINDANY_ANSWER];
    a[0] = VERSION as u8;
    a[1] = status;
    a[4..8].copy_from_slice(&id.to_le_bytes());
    a[8..12].copy_from_slice(&errno.to_le_bytes());
    a
}

/// An answer's request id and outcome: `Ok` when the socket came with it.
pub fn bindany_answer(a: &[u8; BINDANY_ANSWER]) -> (u32, io::Result<()>) {
    let id = u32::from_le_bytes([a[4], a[5], a[6], a[7]]);
    let errno = u32::from_le_bytes([a[8], a[9], a[10], a[11]]);
    let result = match (u32::from(a[0]) == VERSION, a[1]) {
        (false, _) => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the helper speaks version {}, this relay process {VERSION}",
                a[0]
            ),
        )),
        (true, BINDANY_OK) => Ok(()),
        (true, BINDANY_FAILED) => Err(io::Error::from_raw_os_error(
            i32::try_from(errno).unwrap_or(libc::EIO),
        )),
        (true, _) => Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "the privileged helper refused the address",
        )),
    };
    (id, result)
}

/// What relayd's parent does for IMSG_BINDANY: a TCP socket that may use a foreign
/// address (IP_TRANSPARENT, Linux's SO_BINDANY), bound to `ip`, port 0.
fn bind_any(ip: IpAddr) -> io::Result<OwnedFd> {
    let at = SocketAddr::new(ip, 0);
    let s = socket2::Socket::new(
        socket2::Domain::for_address(at),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    s.set_ip_transparent(true)?;
    s.bind(&at.into())?;
    Ok(s.into())
}

/// Answers one relay thread's bindany requests until its end closes.
fn serve_bindany(mut s: UnixStream) {
    let mut req = [0u8; BINDANY_REQUEST];
    while s.read_exact(&mut req).is_ok() {
        let sent = match parse_bindany_request(&req) {
            Ok((id, ip)) => match bind_any(ip) {
                // The relay process gets its own copy; this one closes on return.
                Ok(fd) => send_with_fd(&s, &bindany_reply(id, BINDANY_OK, 0), fd.as_fd()),
                Err(e) => {
                    let errno = e.raw_os_error().and_then(|n| u32::try_from(n).ok());
                    let errno = errno.unwrap_or(libc::EIO as u32);
                    s.write_all(&bindany_reply(id, BINDANY_FAILED, errno))
                }
            },
            Err((id, why)) => {
                eprintln!("relayd-run: helper: bindany refused: {why}");
                s.write_all(&bindany_reply(id, BINDANY_REFUSED, 0))
            }
        };
        if sent.is_err() {
            return;
        }
    }
}

/// `bytes` with `fd` attached.
fn send_with_fd(s: &UnixStream, bytes: &[u8], fd: BorrowedFd<'_>) -> io::Result<()> {
    let fds = [fd];
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    if !control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)) {
        return Err(io::Error::other("ancillary buffer too small"));
    }
    let sent = loop {
        match rustix::net::sendmsg(
            s,
            &[IoSlice::new(bytes)],
            &mut control,
            rustix::net::SendFlags::NOSIGNAL,
        ) {
            Err(rustix::io::Errno::INTR) => {}
            r => break r.map_err(io::Error::from)?,
        }
    };
    let mut s = s;
    s.write_all(bytes.get(sent..).unwrap_or_default())
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
                body: Request::Hello { remit, bindany },
                ..
            }),
        ) if bindany <= MAX_BINDANY => Ok((remit, bindany)),
        (Ok(()), Ok(()), Some(_)) => Err(format!(
            "the first message must be the remit, with at most {MAX_BINDANY} bindany channels"
        )),
        (Ok(()), Ok(()), None) => Err("the first message must be the remit".into()),
    };
    let channels = remit.and_then(|(remit, n)| {
        let pairs = (0..n)
            .map(|_| UnixStream::pair())
            .collect::<io::Result<Vec<_>>>()
            .map_err(|e| format!("cannot make the bindany channels: {e}"))?;
        Ok((remit, pairs))
    });
    let (remit, pairs) = match channels {
        Ok(r) => r,
        Err(why) => {
            let _ = answer(&mut ctl, &Answer::Refused { why });
            return 1;
        }
    };
    let theirs: Vec<BorrowedFd<'_>> = pairs.iter().map(|(_, t)| t.as_fd()).collect();
    if answer_with_fds(&mut ctl, &Answer::Ready, &theirs).is_err() {
        return 1;
    }
    drop(theirs);
    // Threads made now inherit the capability set this thread was reduced to.
    for (n, (ours, theirs)) in pairs.into_iter().enumerate() {
        // The relay process holds the other end now; ours closing is its end of file.
        drop(theirs);
        let spawned = std::thread::Builder::new()
            .name(format!("bindany {n}"))
            .spawn(move || serve_bindany(ours));
        if let Err(e) = spawned {
            eprintln!("relayd-run: helper: cannot serve bindany channel {n}: {e}");
        }
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
    answer_with_fds(s, a, &[])
}

fn answer_with_fds(s: &mut UnixStream, a: &Answer, fds: &[BorrowedFd<'_>]) -> io::Result<()> {
    let body = serde_json::to_vec(&Envelope {
        v: VERSION,
        body: a,
    })
    .map_err(io::Error::other)?;
    write_frame_with_fds(s, &body, fds)
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
                    Err(why) => {
                        // Making the ct timeouts or the sets may have made the table
                        // before the transaction failed.
                        self.table |= !is_removal(&batch);
                        Answer::Failed { why }
                    }
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
fn is_removal(batch: &Batch) -> bool {
    batch.timeouts.is_empty()
        && batch.sets.is_empty()
        && batch.nft.objects.iter().all(|o| {
            matches!(
                o,
                NfObject::CmdObject(NfCmd::Delete(NfListObject::Table(_)))
            )
        })
}

/// Checks that every command of `batch` stays within what the helper does to the
/// `inet relayd` table (see the module documentation). The ct timeouts name no table:
/// they are always made in that one.
pub fn check_batch(batch: &Batch) -> Result<(), String> {
    if batch.nft.objects.is_empty() {
        return Err("an empty batch".into());
    }
    for t in &batch.timeouts {
        if !(1..=MAX_TIMEOUT_S).contains(&t.established_s) {
            return Err(format!(
                "a ct timeout of {}s (1 to {MAX_TIMEOUT_S})",
                t.established_s
            ));
        }
    }
    for s in &batch.sets {
        check_set(s).map_err(|e| format!("set {}: {e}", s.name))?;
    }
    for (n, o) in batch.nft.objects.iter().enumerate() {
        let n = n + 1;
        let NfObject::CmdObject(cmd) = o else {
            return Err(format!("element {n} is not a command"));
        };
        let checked = match cmd {
            NfCmd::Add(obj) | NfCmd::Create(obj) | NfCmd::Insert(obj) => check_object(obj, true),
            NfCmd::Delete(obj) => check_object(obj, false),
            NfCmd::Flush(FlushObject::Table(t)) => ours(t.family, &t.name, "a table"),
            NfCmd::Flush(FlushObject::Chain(c)) => ours(c.family, &c.table, "a chain"),
            NfCmd::Flush(FlushObject::Set(s)) => ours(s.family, &s.table, "a set"),
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
            let base = |name: &str, kind: NfChainType, prio: i32| {
                c.name == name
                    && c._type == Some(kind)
                    && c.hook == Some(NfHook::Prerouting)
                    && c.prio == Some(prio)
                    && c.dev.is_none()
                    && matches!(c.policy, None | Some(NfChainPolicy::Accept))
            };
            if base(CHAIN, NfChainType::NAT, DSTNAT)
                || base(STICKY_CHAIN, NfChainType::Filter, DSTNAT + 1)
            {
                Ok(())
            } else {
                Err(format!(
                    "the only base chains are {CHAIN} (type nat, hook prerouting, priority \
                     {DSTNAT}) and {STICKY_CHAIN} (type filter, hook prerouting, priority \
                     {}), policy accept",
                    DSTNAT + 1
                ))
            }
        }
        NfListObject::Set(s) if adding => check_set(s),
        NfListObject::Set(s) => ours(s.family, &s.table, "a set"),
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
        _ => Err("only tables, chains, rules, counters and sets are allowed".into()),
    }
}

/// Sets of addresses that packets fill, in the table: nothing a rule could jump
/// through, no element put there by the batch.
fn check_set(s: &nftables::schema::Set<'_>) -> Result<(), String> {
    ours(s.family, &s.table, "a set")?;
    let addresses = matches!(
        s.set_type,
        SetTypeValue::Single(SetType::Ipv4Addr | SetType::Ipv6Addr)
    );
    let flags = s.flags.iter().flatten().all(|f| *f == SetFlag::Timeout);
    if addresses && flags && s.elem.is_none() {
        Ok(())
    } else {
        Err("a set holds IPv4 or IPv6 addresses, with the timeout flag only and no elements".into())
    }
}

/// Rules match, count, set the packet mark and a ct timeout, add a packet's address to
/// a set and DNAT; nothing that drops, rejects, jumps or reaches outside the packet's
/// own path. The objects and sets a rule names are its own table's.
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
        Statement::CTTimeout(Expression::String(_)) => Ok(()),
        Statement::Set(s) if s.set.starts_with('@') => Ok(()),
        _ => Err(
            "a rule may only match, count, set the packet mark or a ct timeout, update a set \
             and DNAT"
                .into(),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, reason = "tests")]
mod tests {
    use super::*;
    use crate::redirect::CtTimeout;
    use std::borrow::Cow;

    fn batch(json: &str) -> Batch {
        Batch {
            timeouts: Vec::new(),
            sets: Vec::new(),
            nft: serde_json::from_str(json).unwrap(),
        }
    }

    fn batch_of(objects: Vec<NfObject<'static>>) -> Batch {
        Batch {
            timeouts: Vec::new(),
            sets: Vec::new(),
            nft: nftables::schema::Nftables {
                objects: Cow::Owned(objects),
            },
        }
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
        let mut sticky = batch(
            r#"{"nftables":[{"add":{"table":{"family":"inet","name":"relayd"}}},
            {"add":{"chain":{"family":"inet","table":"relayd","name":"sticky","type":"filter","hook":"prerouting","prio":-99,"policy":"accept"}}},
            {"flush":{"set":{"family":"inet","table":"relayd","name":"sticky_0_10.0.0.1","type":"ipv4_addr"}}},
            {"add":{"rule":{"family":"inet","table":"relayd","chain":"prerouting","expr":[
              {"match":{"left":{"payload":{"protocol":"ip","field":"saddr"}},"right":"@sticky_0_10.0.0.1","op":"=="}},
              {"ct timeout":"established_600s_ip"},
              {"dnat":{"addr":"10.0.0.1","family":"ip","port":80}}]}}},
            {"add":{"rule":{"family":"inet","table":"relayd","chain":"sticky","expr":[
              {"match":{"left":{"ct":{"key":"ip daddr","dir":"original"}},"right":"10.0.1.1","op":"=="}},
              {"set":{"op":"update","elem":{"payload":{"protocol":"ip","field":"saddr"}},"set":"@sticky_0_10.0.0.1"}}]}}}]}"#,
        );
        sticky.timeouts = vec![CtTimeout {
            ipv6: false,
            established_s: 600,
        }];
        sticky.sets = vec![serde_json::from_str(
            r#"{"family":"inet","table":"relayd","name":"sticky_0_10.0.0.1","type":"ipv4_addr","flags":["timeout"],"timeout":600}"#,
        )
        .unwrap()];
        assert_eq!(check_batch(&sticky), Ok(()));
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
                r#"{"nftables":[{"add":{"map":{"family":"inet","table":"relayd","name":"m","type":"ipv4_addr","map":"ipv4_addr"}}}]}"#,
                "only tables, chains",
            ),
            (
                r#"{"nftables":[{"add":{"set":{"family":"inet","table":"relayd","name":"s","type":"ipv4_addr","elem":["10.0.0.1"]}}}]}"#,
                "a set holds",
            ),
            (
                r#"{"nftables":[{"add":{"set":{"family":"inet","table":"relayd","name":"s","type":"inet_service"}}}]}"#,
                "a set holds",
            ),
            (
                r#"{"nftables":[{"add":{"set":{"family":"inet","table":"relayd","name":"s","type":"ipv4_addr","flags":["constant"]}}}]}"#,
                "a set holds",
            ),
            (
                r#"{"nftables":[{"add":{"set":{"family":"ip","table":"filter","name":"s","type":"ipv4_addr"}}}]}"#,
                "outside table inet relayd",
            ),
            (
                r#"{"nftables":[{"flush":{"set":{"family":"inet","table":"filter","name":"s","type":"ipv4_addr"}}}]}"#,
                "outside table inet relayd",
            ),
            (
                r#"{"nftables":[{"add":{"chain":{"family":"inet","table":"relayd","name":"sticky","type":"filter","hook":"prerouting","prio":-99,"policy":"drop"}}}]}"#,
                "the only base chain",
            ),
            (
                r#"{"nftables":[{"add":{"chain":{"family":"inet","table":"relayd","name":"sticky","type":"filter","hook":"input","prio":-99,"policy":"accept"}}}]}"#,
                "the only base chain",
            ),
            (
                r#"{"nftables":[{"add":{"chain":{"family":"inet","table":"relayd","name":"sticky","type":"nat","hook":"prerouting","prio":-100,"policy":"accept"}}}]}"#,
                "the only base chain",
            ),
            (
                r#"{"nftables":[{"add":{"rule":{"family":"inet","table":"relayd","chain":"sticky","expr":[{"ct helper":"ftp"}]}}}]}"#,
                "may only match",
            ),
            (
                r#"{"nftables":[{"add":{"rule":{"family":"inet","table":"relayd","chain":"sticky","expr":[{"ct timeout":{"map":{"key":{"meta":{"key":"l4proto"}},"data":"@m"}}}]}}}]}"#,
                "may only match",
            ),
            (
                r#"{"nftables":[{"list":{"ruleset":null}}]}"#,
                "only add, create",
            ),
            (r#"{"nftables":[]}"#, "an empty batch"),
        ] {
            let b = match serde_json::from_str(json) {
                Ok(nft) => Batch {
                    timeouts: Vec::new(),
                    sets: Vec::new(),
                    nft,
                },
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
        assert!(checked >= 20, "{checked}");
        for established_s in [0, MAX_TIMEOUT_S + 1] {
            let mut b = removal();
            b.timeouts.push(CtTimeout {
                ipv6: true,
                established_s,
            });
            let err = check_batch(&b).unwrap_err();
            assert!(err.contains("a ct timeout of"), "{err}");
        }
        for set in [
            r#"{"family":"ip","table":"filter","name":"s","type":"ipv4_addr"}"#,
            r#"{"family":"inet","table":"relayd","name":"s","type":"ipv4_addr","elem":["10.0.0.1"]}"#,
            r#"{"family":"inet","table":"relayd","name":"s","type":"ether_addr"}"#,
        ] {
            let mut b = removal();
            b.sets.push(serde_json::from_str(set).unwrap());
            assert!(check_batch(&b).is_err(), "{set}");
        }
        let mangle_ct = batch_of(vec![NfObject::CmdObject(NfCmd::Add(NfListObject::Rule(
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
        )))]);
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
            bindany: 0,
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
    fn bindany_messages_round_trip_and_refuse_what_is_not_unicast() {
        for ip in ["10.1.2.3", "fd00::1", "127.0.0.1"] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(parse_bindany_request(&bindany_request(7, ip)), Ok((7, ip)));
        }
        for ip in ["0.0.0.0", "::", "224.0.0.1", "ff02::1", "255.255.255.255"] {
            let r = bindany_request(9, ip.parse().unwrap());
            let (id, why) = parse_bindany_request(&r).unwrap_err();
            assert_eq!(id, 9);
            assert!(why.contains("not a unicast address"), "{why}");
        }
        let mut r = bindany_request(3, "10.0.0.1".parse().unwrap());
        r[1] = 5;
        assert!(parse_bindany_request(&r).unwrap_err().1.contains("family"));
        r[0] = 9;
        assert!(parse_bindany_request(&r).unwrap_err().1.contains("version"));
        assert_eq!(bindany_answer(&bindany_reply(4, BINDANY_OK, 0)).0, 4);
        assert!(bindany_answer(&bindany_reply(4, BINDANY_OK, 0)).1.is_ok());
        let (id, e) = bindany_answer(&bindany_reply(5, BINDANY_FAILED, 99));
        assert_eq!((id, e.unwrap_err().raw_os_error()), (5, Some(99)));
        let e = bindany_answer(&bindany_reply(6, BINDANY_REFUSED, 0)).1;
        assert_eq!(e.unwrap_err().kind(), io::ErrorKind::PermissionDenied);
    }

    #[test]
    fn a_bindany_channel_answers_each_request_in_turn() {
        let (mut ours, theirs) = UnixStream::pair().unwrap();
        ours.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let server = std::thread::spawn(move || serve_bindany(theirs));
        ours.write_all(&bindany_request(1, "224.0.0.1".parse().unwrap()))
            .unwrap();
        ours.write_all(&bindany_request(2, "127.0.0.1".parse().unwrap()))
            .unwrap();
        let mut a = [0u8; BINDANY_ANSWER];
        ours.read_exact(&mut a).unwrap();
        assert_eq!(a[1], BINDANY_REFUSED);
        assert_eq!(bindany_answer(&a).0, 1);
        let (frame, fds) = {
            let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
            let mut control = rustix::net::RecvAncillaryBuffer::new(&mut space);
            let got = rustix::net::recvmsg(
                &ours,
                &mut [IoSliceMut::new(&mut a)],
                &mut control,
                rustix::net::RecvFlags::CMSG_CLOEXEC,
            )
            .unwrap();
            let fds: Vec<OwnedFd> = control
                .drain()
                .flat_map(|m| match m {
                    rustix::net::RecvAncillaryMessage::ScmRights(f) => f.collect(),
                    _ => Vec::new(),
                })
                .collect();
            (got.bytes, fds)
        };
        assert_eq!(frame, BINDANY_ANSWER);
        let (id, made) = bindany_answer(&a);
        assert_eq!(id, 2);
        match made {
            // With CAP_NET_ADMIN (the tests run as root): a socket bound to the address.
            Ok(()) => {
                let s = socket2::Socket::from(fds.into_iter().next().unwrap());
                let at = s.local_addr().unwrap().as_socket().unwrap();
                assert_eq!(at.ip(), "127.0.0.1".parse::<IpAddr>().unwrap());
                assert!(s.ip_transparent().unwrap());
            }
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::EPERM)),
        }
        drop(ours);
        server.join().unwrap();
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
