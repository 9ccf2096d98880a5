//! A session's connection on either side: plain TCP, or TLS over it.
//!
//! One enum rather than a trait object, so the plain-TCP arm costs a branch and nothing
//! else; the TLS states are boxed (several KiB each) so a plain stream stays small.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

pub enum Stream {
    Tcp(TcpStream),
    /// A client's connection, TLS terminated here.
    Server(Box<tokio_rustls::server::TlsStream<TcpStream>>),
    /// A backend connection this relay speaks TLS on.
    Client(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl Stream {
    pub fn is_tls(&self) -> bool {
        !matches!(self, Stream::Tcp(_))
    }

    /// Writes all of `bytes` and, over TLS, flushes the records rustls still holds: a
    /// TLS write may leave its tail buffered when the socket is full, and a relay that
    /// then waits for an answer would wait for ever.
    pub async fn send(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(bytes).await,
            _ => {
                self.write_all(bytes).await?;
                self.flush().await
            }
        }
    }

    /// Writes `a` then `b`: gathered into as few writev(2) calls as the socket allows
    /// over TCP, into as few TLS records as rustls makes of them otherwise.
    pub async fn send_pair(&mut self, mut a: &[u8], mut b: &[u8]) -> io::Result<()> {
        let Stream::Tcp(to) = self else {
            while !a.is_empty() || !b.is_empty() {
                let n = self
                    .write_vectored(&[IoSlice::new(a), IoSlice::new(b)])
                    .await?;
                if n == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                let from_a = n.min(a.len());
                a = &a[from_a..];
                b = &b[n - from_a..];
            }
            return self.flush().await;
        };
        while !a.is_empty() || !b.is_empty() {
            to.writable().await?;
            let n = match to.try_write_vectored(&[IoSlice::new(a), IoSlice::new(b)]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            };
            let from_a = n.min(a.len());
            a = &a[from_a..];
            b = &b[n - from_a..];
        }
        Ok(())
    }
}

/// libtls reads a TCP EOF without close_notify after the handshake as a plain EOF
/// (`TLS_EOF_NO_CLOSE_NOTIFY`), and so does relayd; rustls reports it as an error.
fn eof_is_eof(r: Poll<io::Result<()>>) -> Poll<io::Result<()>> {
    match r {
        Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::UnexpectedEof => Poll::Ready(Ok(())),
        other => other,
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Server(s) => eof_is_eof(Pin::new(&mut **s).poll_read(cx, buf)),
            Stream::Client(s) => eof_is_eof(Pin::new(&mut **s).poll_read(cx, buf)),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Server(s) => Pin::new(&mut **s).poll_write(cx, buf),
            Stream::Client(s) => Pin::new(&mut **s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Server(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
            Stream::Client(s) => Pin::new(&mut **s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Server(s) => Pin::new(&mut **s).poll_flush(cx),
            Stream::Client(s) => Pin::new(&mut **s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Server(s) => Pin::new(&mut **s).poll_shutdown(cx),
            Stream::Client(s) => Pin::new(&mut **s).poll_shutdown(cx),
        }
    }
}
