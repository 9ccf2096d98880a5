//! Kernel-side copying for TCP relays: relayd's `splice` (on by default for plain TCP).
//!
//! OpenBSD moves the bytes with SO_SPLICE, socket to socket. Linux has no such socket
//! option; its counterpart is splice(2) through a pipe: socket → pipe → socket, where
//! the pages are handed over by reference instead of being copied into and out of user
//! space. A session uses one pipe per direction, taken from the worker's [`PipePool`]
//! and returned empty, so a connection per request costs no pipe2(2) calls.

use rustix::pipe::{pipe_with, splice, PipeFlags, SpliceFlags};
use std::cell::{Cell, RefCell};
use std::io;
use std::os::fd::OwnedFd;
use tokio::io::Interest;
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

/// Moves bytes from `from` to `to` until `from` reaches EOF (passed on as a half-close)
/// or an error. `last` is re-armed whenever bytes move.
pub async fn pump(
    from: &TcpStream,
    to: &TcpStream,
    last: &Cell<Instant>,
    pipes: &PipePool,
) -> io::Result<()> {
    let pipe = pipes.take()?;
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    loop {
        from.readable().await?;
        // The pipe is empty here, so EAGAIN can only mean the socket has nothing.
        let n = match from.try_io(Interest::READABLE, || {
            splice(from, None, &pipe.write, None, CHUNK, flags).map_err(io::Error::from)
        }) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => return Err(e),
        };
        if n == 0 {
            pipes.put(pipe);
            // Pass the half-close on; the other direction keeps going.
            let _ = socket2::SockRef::from(to).shutdown(std::net::Shutdown::Write);
            return Ok(());
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
                // The pipe still holds bytes: it is dropped, not pooled.
                Err(e) => return Err(e),
            }
        }
    }
}
