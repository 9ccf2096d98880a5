//! Copying one direction of a TCP relay, with kernel-side copying for bulk transfers:
//! relayd's `splice` (on by default for plain TCP).
//!
//! OpenBSD moves the bytes with SO_SPLICE, socket to socket. Linux has no such socket
//! option; its counterpart is splice(2) through a pipe: socket → pipe → socket, where
//! the pages are handed over by reference instead of being copied into and out of user
//! space. A session uses one pipe per direction, taken from the worker's [`PipePool`]
//! and returned empty, so a connection per request costs no pipe2(2) calls.

use super::session::BufPool;
use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::OwnedFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::tcp::{ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

/// The most a pipe holds by default (16 pages); one splice moves at most this much.
const CHUNK: usize = 64 * 1024;

/// A pipe's two ends, both non-blocking.
pub struct Pipe {
    read: OwnedFd,
    write: OwnedFd,
}

/// A worker's empty pipes, reused from session to session.
#[derive(Default)]
pub struct PipePool {
    free: RefCell<Vec<Pipe>>,
}

impl PipePool {
    pub fn take(&self) -> io::Result<Pipe> {
        if let Some(p) = self.free.borrow_mut().pop() {
            return Ok(p);
        }
        let (read, write) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
        Ok(Pipe { read, write })
    }

    /// Only a drained pipe may come back: bytes left in it would leak into the next
    /// session.
    fn put(&self, p: Pipe) {
        let mut free = self.free.borrow_mut();
        if free.len() < 256 {
            free.push(p);
        }
    }
}

/// A read that fills this much means a bulk transfer: switch to splicing.
const BULK: usize = 16 * 1024;

/// Short splices in a row before a direction goes back to reading: the tail of each
/// large message is short, and must not make a steady bulk stream flip modes.
const SHORT_RUN: u8 = 4;

/// Moves bytes from `from` to `to` until `from` reaches EOF (passed on as a half-close)
/// or an error. `last` is re-armed whenever bytes move.
///
/// Small exchanges go through a buffer with read(2)/write(2): a splice costs as much as a
/// read, and a short read tells tokio the socket is drained (so no read ends in EAGAIN),
/// which a short splice cannot (the pipe may have been the limit). Reads take at most
/// [`BULK`] bytes; once one fills them and `pipes` is given (relayd's `splice`), the
/// direction switches to splice(2) until [`SHORT_RUN`] splices in a row come back short.
pub async fn pump(
    mut from: ReadHalf<'_>,
    mut to: WriteHalf<'_>,
    last: &Cell<Instant>,
    bufs: &BufPool,
    pipes: Option<&PipePool>,
) -> io::Result<()> {
    let mut pipe: Option<Pipe> = None;
    let mut bulk = false;
    let mut short: u8 = 0;
    let r = loop {
        if bulk {
            if let (Some(p), Some(_)) = (&pipe, pipes) {
                match splice_once(from.as_ref(), to.as_ref(), p, last).await {
                    Ok(0) => break eof(&mut to).await,
                    Ok(n) if n >= BULK => short = 0,
                    Ok(_) => {
                        short += 1;
                        bulk = short < SHORT_RUN;
                    }
                    Err(e) => {
                        // The pipe may still hold bytes: it is dropped, not pooled.
                        pipe = None;
                        break Err(e);
                    }
                }
                continue;
            }
        }
        // Wait without a buffer; take one only when there is something to read.
        if let Err(e) = from.as_ref().readable().await {
            break Err(e);
        }
        let mut buf = bufs.take();
        // Without pipes the whole buffer is used; with them, a full probe means bulk.
        let limit = if pipes.is_some() { BULK } else { buf.len() };
        let n = match from.read(&mut buf[..limit]).await {
            Ok(n) => n,
            Err(e) => {
                bufs.put(buf);
                break Err(e);
            }
        };
        if n == 0 {
            bufs.put(buf);
            break eof(&mut to).await;
        }
        last.set(Instant::now());
        let w = to.write_all(&buf[..n]).await;
        bufs.put(buf);
        if let Err(e) = w {
            break Err(e);
        }
        last.set(Instant::now());
        if n >= BULK {
            if let Some(pool) = pipes {
                if pipe.is_none() {
                    match pool.take() {
                        Ok(p) => pipe = Some(p),
                        Err(e) => break Err(e),
                    }
                }
                bulk = true;
                short = 0;
            }
        }
    };
    if let (Some(p), Some(pool)) = (pipe, pipes) {
        pool.put(p);
    }
    r
}

/// Passes the half-close on; the other direction keeps going.
async fn eof(to: &mut WriteHalf<'_>) -> io::Result<()> {
    let _ = to.shutdown().await;
    Ok(())
}

/// One splice from the socket into the (empty) pipe, then out until the pipe is empty
/// again. Returns the bytes moved, 0 at EOF.
async fn splice_once(
    from: &TcpStream,
    to: &TcpStream,
    pipe: &Pipe,
    last: &Cell<Instant>,
) -> io::Result<usize> {
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    let n = loop {
        from.readable().await?;
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing.
        match from.try_io(Interest::READABLE, || {
            splice(from, None, &pipe.write, None, CHUNK, flags).map_err(io::Error::from)
        }) {
            Ok(n) => break n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        }
    };
    if n == 0 {
        return Ok(0);
    }
    last.set(Instant::now());
    let mut left = n;
    while left > 0 {
        to.writable().await?;
        match to.try_io(Interest::WRITABLE, || {
            splice(&pipe.read, None, to, None, left, flags).map_err(io::Error::from)
        }) {
            Ok(m) => {
                left -= m;
                last.set(Instant::now());
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}
