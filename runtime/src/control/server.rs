//! The control socket: a Unix stream socket, mode 0660, served on the main thread's
//! runtime beside the health checks. One request per connection; `monitor` keeps its
//! connection and streams events until the client goes away.

use super::board::{self, Board};
use super::proto::{
    self, Command, Event, EventKind, HostRow, RedirectRow, RelayRow, Reply, Request, Response,
    RouterRow, Stats, Summary, TableRow, Target,
};
use super::registry::{self, Query, Report};
use crate::log;
use crate::serve::reload::Reloader;
use crate::serve::Shared;
use arc_swap::ArcSwap;
use relaydc_spec::health::HostState;
use relaydc_spec::plan::{Check, Target as PlanTarget};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, Notify};

/// How long a client may take to send its request, and a worker or the health loop to
/// answer one.
const PATIENCE: Duration = Duration::from_secs(10);

/// The bound socket file. Dropping it removes the file, if it is still ours.
pub struct Socket {
    path: PathBuf,
    listener: Option<std::os::unix::net::UnixListener>,
    /// (device, inode) of the file we created.
    id: (u64, u64),
}

impl Socket {
    /// Binds `path`, mode 0660. A socket file nobody answers on (left by a process that
    /// died) is removed first; a live one is refused, as relayd refuses it.
    pub fn bind(path: &Path) -> io::Result<Socket> {
        match std::fs::symlink_metadata(path) {
            Ok(m) if !m.file_type().is_socket() => {
                return Err(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    "the path exists and is not a socket",
                ))
            }
            Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "socket in use by another process",
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path)?;
                }
                Err(e) => return Err(e),
            },
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Bound under a temporary name, given its mode, then renamed into place: the
        // socket is never reachable with the umask's mode.
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = path.with_file_name(format!(".{name}.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        let listener = std::os::unix::net::UnixListener::bind(&tmp)?;
        let placed = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o660))
            .and_then(|()| std::fs::rename(&tmp, path));
        if let Err(e) = placed {
            let _ = std::fs::remove_file(&tmp);
            return Err(e);
        }
        let m = std::fs::metadata(path)?;
        listener.set_nonblocking(true)?;
        Ok(Socket {
            path: path.to_path_buf(),
            listener: Some(listener),
            id: (m.dev(), m.ino()),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Socket {
    fn drop(&mut self) {
        // Another process may have replaced a socket we lost; leave that one alone.
        if let Ok(m) = std::fs::symlink_metadata(&self.path) {
            if (m.dev(), m.ino()) == self.id {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// What the control task needs.
pub struct Control {
    /// The running plan; a reload swaps it, so every answer loads it afresh.
    pub current: Arc<ArcSwap<Shared>>,
    /// `reload [PLAN]` and `load PLAN`.
    pub reloader: Arc<Reloader>,
    pub health: mpsc::Sender<board::Command>,
    pub workers: Vec<mpsc::Sender<Query>>,
    /// Notified by `relayctl stop`.
    pub stop: Arc<Notify>,
    /// Redirects' and routers' helper (plans with either): redirect statistics.
    pub network: Option<Arc<crate::redirect::pfe::Network>>,
}

/// Serves the socket until the future is dropped.
pub async fn run(ctl: Arc<Control>, socket: &mut Socket) {
    let Some(std_listener) = socket.listener.take() else {
        return;
    };
    let listener = match tokio::net::UnixListener::from_std(std_listener) {
        Ok(l) => l,
        Err(e) => {
            log::warn(&format!("control socket {}: {e}", socket.path.display()));
            return;
        }
    };
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                tokio::spawn(connection(Arc::clone(&ctl), stream));
            }
            Err(e) => {
                log::debug(&format!("control socket: accept: {e}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn connection(ctl: Arc<Control>, stream: UnixStream) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut line = Vec::new();
    let got = tokio::time::timeout(
        PATIENCE,
        (&mut read)
            .take(proto::MAX_LINE as u64)
            .read_until(b'\n', &mut line),
    )
    .await;
    if !matches!(got, Ok(Ok(n)) if n > 0) {
        return;
    }
    let mut stop = false;
    let reply = match serde_json::from_slice::<Request>(&line) {
        Err(e) => failed(format!("malformed control request: {e}")),
        Ok(r) if r.v != proto::VERSION => failed(format!(
            "relayctl speaks control protocol version {}, this relayd-run version {}; use the relayctl of the same build",
            r.v,
            proto::VERSION
        )),
        Ok(Request {
            command: Command::Monitor,
            ..
        }) => {
            monitor(&ctl, read, write).await;
            return;
        }
        Ok(r) => {
            stop = r.command == Command::Stop;
            handle(&ctl, r.command).await
        }
    };
    let _ = send(&mut write, &reply).await;
    let _ = write.shutdown().await;
    if stop {
        ctl.stop.notify_one();
    }
}

fn failed(reason: String) -> Reply {
    Reply::Failed {
        reason: Some(reason),
    }
}

async fn send(w: &mut tokio::net::unix::OwnedWriteHalf, reply: &Reply) -> io::Result<()> {
    let msg = Response {
        v: proto::VERSION,
        reply: reply.clone(),
    };
    let line = proto::to_line(&msg).map_err(io::Error::other)?;
    w.write_all(&line).await
}

async fn handle(ctl: &Control, command: Command) -> Reply {
    match command {
        Command::Summary => Reply::Summary(summary(ctl).await),
        Command::Sessions => {
            let mut sessions = Vec::new();
            for r in reports(ctl).await {
                sessions.extend(r.sessions);
            }
            Reply::Sessions { sessions }
        }
        Command::Host { enable, target } => {
            let kind = if enable {
                EventKind::CtlHostEnable
            } else {
                EventKind::CtlHostDisable
            };
            switch(ctl, kind, target, |target, reply| board::Command::Host {
                enable,
                target,
                reply,
            })
            .await
        }
        Command::Table { enable, target } => {
            let kind = if enable {
                EventKind::CtlTableEnable
            } else {
                EventKind::CtlTableDisable
            };
            switch(ctl, kind, target, |target, reply| board::Command::Table {
                enable,
                target,
                reply,
            })
            .await
        }
        Command::Redirect { enable, target } => {
            let kind = if enable {
                EventKind::CtlRdrEnable
            } else {
                EventKind::CtlRdrDisable
            };
            switch(ctl, kind, target, |target, reply| {
                board::Command::Redirect {
                    enable,
                    target,
                    reply,
                }
            })
            .await
        }
        Command::Poll => {
            let (tx, rx) = oneshot::channel();
            let sent = ctl.health.send(board::Command::Poll { reply: tx }).await;
            match (sent, tokio::time::timeout(PATIENCE, rx).await) {
                (Ok(()), Ok(Ok(()))) => Reply::Succeeded,
                _ => failed("the health checks did not answer".into()),
            }
        }
        Command::Log { verbose } => {
            log::set_verbosity(if verbose { 2 } else { 0 });
            Reply::Succeeded
        }
        // Answered once the new plan runs (relayd answers nothing and does not wait).
        Command::Reload { path } => match ctl.reloader.reload(path.map(PathBuf::from)).await {
            Ok(()) => Reply::Succeeded,
            Err(refused) => failed(refused.to_string()),
        },
        Command::Stop => Reply::Succeeded,
        // Answered by `connection`.
        Command::Monitor => Reply::Succeeded,
    }
}

/// A host or table command: to the health loop, then a `monitor` event on success.
async fn switch(
    ctl: &Control,
    kind: EventKind,
    target: Target,
    make: impl FnOnce(Target, oneshot::Sender<Result<u32, String>>) -> board::Command,
) -> Reply {
    let name = match &target {
        Target::Name(n) => Some(n.clone()),
        Target::Id(_) => None,
    };
    let (tx, rx) = oneshot::channel();
    if ctl.health.send(make(target, tx)).await.is_err() {
        return failed("the health checks are not running".into());
    }
    match tokio::time::timeout(PATIENCE, rx).await {
        Ok(Ok(Ok(id))) => {
            let _ = ctl.current.load().status.events.send(Event {
                what: kind,
                id,
                state: None,
                name,
                pid: std::process::id(),
            });
            Reply::Succeeded
        }
        Ok(Ok(Err(reason))) => failed(reason),
        _ => failed("the health checks did not answer".into()),
    }
}

/// Every worker's report, in worker order; a worker that does not answer in time is left
/// out.
async fn reports(ctl: &Control) -> Vec<Report> {
    let mut out = Vec::with_capacity(ctl.workers.len());
    for w in &ctl.workers {
        let (tx, rx) = oneshot::channel();
        if w.send(Query { reply: tx }).await.is_err() {
            continue;
        }
        if let Ok(Ok(r)) = tokio::time::timeout(PATIENCE, rx).await {
            out.push(r);
        }
    }
    out
}

async fn summary(ctl: &Control) -> Summary {
    let mut stats: Vec<Stats> = Vec::new();
    for r in reports(ctl).await {
        if stats.len() < r.stats.len() {
            stats.resize(r.stats.len(), Stats::default());
        }
        for (sum, s) in stats.iter_mut().zip(&r.stats) {
            sum.total += s.total;
            sum.last += s.last;
            sum.last_hour += s.last_hour;
            sum.last_day += s.last_day;
            sum.avg += s.avg;
            sum.avg_hour += s.avg_hour;
            sum.avg_day += s.avg_day;
            sum.interval_s = s.interval_s;
        }
    }
    // The board and the plan it describes, from one load: both change with a reload.
    let shared = ctl.current.load_full();
    let rdr_stats = match (&ctl.network, shared.plan.redirects.is_empty()) {
        (Some(net), false) => {
            let (net, s) = (Arc::clone(net), Arc::clone(&shared));
            // The helper runs `nft`: off the thread that runs the checks.
            tokio::task::spawn_blocking(move || net.stats(&s.plan))
                .await
                .unwrap_or_default()
        }
        _ => Vec::new(),
    };
    let board = match shared.status.board.lock() {
        Ok(b) => b.clone(),
        Err(p) => p.into_inner().clone(),
    };
    let mut summary = build_summary(&shared, &board, &stats);
    for (row, s) in summary.redirects.iter_mut().zip(rdr_stats) {
        row.stats = s;
    }
    summary
}

/// The summary from the plan, the published states and the summed statistics.
pub fn build_summary(shared: &Shared, board: &Board, stats: &[Stats]) -> Summary {
    let plan = &shared.plan;
    let firsts = registry::first_ids(plan);
    let mut summary = Summary::default();
    let mut used = vec![false; plan.tables.len()];
    let snap = crate::redirect::pfe::Snapshot::from_board(plan, board);
    let up = snap.up();
    let states = crate::redirect::States {
        up: &up,
        redirect_off: &snap.redirect_off,
        table_off: &snap.table_off,
    };
    for (i, r) in plan.redirects.iter().enumerate() {
        let tables: Vec<u32> = r.tables.iter().map(|t| t.table).collect();
        for &t in &tables {
            if let Some(u) = used.get_mut(t as usize) {
                *u = true;
            }
        }
        summary.redirects.push(RedirectRow {
            id: u32::try_from(i + 1).unwrap_or(u32::MAX),
            name: r.name.clone(),
            status: crate::redirect::state(plan, i, &states)
                .0
                .word()
                .to_string(),
            tables: tables.iter().map(|t| t + 1).collect(),
            stats: Stats {
                interval_s: registry::STAT_INTERVAL.as_secs(),
                ..Stats::default()
            },
        });
    }
    for (i, r) in plan.routers.iter().enumerate() {
        if let Some(u) = r.table.and_then(|t| used.get_mut(t as usize)) {
            *u = true;
        }
        summary.routers.push(RouterRow {
            id: u32::try_from(i + 1).unwrap_or(u32::MAX),
            name: r.name.clone(),
            status: if r.disabled { "disabled" } else { "active" }.to_string(),
            tables: r.table.iter().map(|t| t + 1).collect(),
            rtable: r.rtable.unwrap_or(0),
            rtlabel: r.rtlabel.clone(),
            routes: r
                .routes
                .iter()
                .map(|x| format!("{}/{}", x.address, x.prefixlen))
                .collect(),
        });
    }
    for (ri, r) in plan.relays.iter().enumerate() {
        let tables: Vec<u32> = r
            .forwards
            .iter()
            .filter_map(|f| match f.target {
                PlanTarget::Table { table, .. } => Some(table),
                _ => None,
            })
            .collect();
        for &t in &tables {
            if let Some(u) = used.get_mut(t as usize) {
                *u = true;
            }
        }
        let first = firsts.get(ri).copied().unwrap_or(0);
        let listeners = r.listeners.len().max(1);
        for li in 0..listeners {
            let id = first.saturating_add(u32::try_from(li).unwrap_or(0));
            let name = match (li, r.listeners.get(li)) {
                (0, _) | (_, None) => r.name.clone(),
                (_, Some(l)) => format!("{}{id}:{}", r.name, l.port),
            };
            summary.relays.push(RelayRow {
                id,
                name,
                status: if r.disabled { "disabled" } else { "active" }.to_string(),
                stats: stats
                    .get((id as usize).wrapping_sub(1))
                    .copied()
                    .unwrap_or(Stats {
                        interval_s: registry::STAT_INTERVAL.as_secs(),
                        ..Stats::default()
                    }),
                tables: tables.iter().map(|t| t + 1).collect(),
            });
        }
    }
    for (ti, t) in plan.tables.iter().enumerate() {
        if !used[ti] {
            continue;
        }
        let disabled = board.tables_disabled.get(ti).copied().unwrap_or(t.disabled);
        let mut up = 0u32;
        for &h in &t.hosts {
            let Some(host) = plan.hosts.get(h as usize) else {
                continue;
            };
            let v = board.hosts.get(h as usize).copied().unwrap_or_default();
            if !disabled && !v.disabled && v.state == HostState::Up {
                up += 1;
            }
            summary.hosts.push(HostRow {
                id: h + 1,
                name: host.name.clone(),
                table: u32::try_from(ti + 1).unwrap_or(u32::MAX),
                parent: host.parent,
                state: v.state.word().to_string(),
                disabled: v.disabled,
                status: if v.disabled {
                    "disabled"
                } else {
                    v.state.word()
                }
                .to_string(),
                checks: v.checks,
                up_checks: v.ups,
                availability: (v.checks > 0).then(|| v.ups as f64 * 100.0 / v.checks as f64),
                retries: v.retry_left,
                error: v.error.map(str::to_string),
            });
        }
        let status = if disabled {
            "disabled".to_string()
        } else if up == 0 {
            "empty".to_string()
        } else {
            format!("active ({up} hosts)")
        };
        summary.tables.push(TableRow {
            id: u32::try_from(ti + 1).unwrap_or(u32::MAX),
            name: t.name.clone(),
            status,
            disabled,
            up,
            checked: !matches!(t.check, Check::None),
            hosts: t.hosts.iter().map(|h| h + 1).collect(),
        });
    }
    summary
}

/// `monitor`: every event until the client closes its end or the process stops.
async fn monitor(
    ctl: &Control,
    mut read: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut write: tokio::net::unix::OwnedWriteHalf,
) {
    let mut events = ctl.current.load().status.events.subscribe();
    let mut scratch = [0u8; 256];
    loop {
        tokio::select! {
            e = events.recv() => match e {
                Ok(e) => {
                    if send(&mut write, &Reply::Event(e)).await.is_err() {
                        return;
                    }
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => return,
            },
            n = read.read(&mut scratch) => {
                if !matches!(n, Ok(k) if k > 0) {
                    return;
                }
            }
        }
    }
}
