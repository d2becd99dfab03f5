//! What the server does to each accepted socket so that dead and stalled
//! peers are found: the kernel's `TCP_USER_TIMEOUT` (unacknowledged data
//! for that long kills the connection, which catches peers that vanished
//! without a FIN), and a write deadline (a write that makes no progress for
//! that long ends the connection, which catches peers that stopped reading).
//!
//! hyper has no write deadline, so [`Socket`] wraps the stream: when a
//! write would block it arms a timer, any progress disarms it, and when the
//! timer fires the next poll fails with `TimedOut`. Heartbeats keep data
//! flowing on idle streams, so "pushing the deadline forward on each
//! heartbeat" falls out of this: a healthy peer acknowledges and drains
//! them; a dead one does not. The wrapper also counts bytes written, into a
//! local figure that reaches the shared counter only in large steps.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Bytes written are added to the shared counter once this many have
/// accumulated on one connection, so the counter is not a point of
/// contention between cores.
const FLUSH_BYTES: u64 = 64 * 1024;

/// Counters shared by every connection; bumped per connection event or per
/// [`FLUSH_BYTES`], never per delivery.
#[derive(Debug, Default)]
pub struct SocketCounters {
    pub bytes_written: AtomicU64,
    /// Connections ended because a write made no progress before its deadline.
    pub write_timeouts: AtomicU64,
    /// HTTP/2 connections that hyper closed because a PING went unanswered.
    pub ping_timeouts: AtomicU64,
    /// Set at shutdown: connections closed from then on are not dead peers.
    pub shutting_down: AtomicBool,
}

/// An accepted TCP stream with a write deadline.
pub struct Socket {
    inner: TcpStream,
    deadline: Duration,
    /// Armed while a write is blocked; boxed and kept once created, so an
    /// idle connection costs one pointer.
    timer: Option<Pin<Box<Sleep>>>,
    blocked: bool,
    /// Bytes written not yet added to the shared counter.
    unflushed: u64,
    counters: Arc<SocketCounters>,
    /// For HTTP/2 connections, the PING timeout; see [`Socket::watch_pings`].
    ping_timeout: Option<Duration>,
    /// When the peer last sent anything (tracked only with `ping_timeout`).
    last_read: Option<Instant>,
    /// The peer closed its side, or reading failed: it did not just go quiet.
    read_ended: bool,
}

impl Drop for Socket {
    fn drop(&mut self) {
        self.counters
            .bytes_written
            .fetch_add(self.unflushed, Ordering::Relaxed);
        // hyper closes an HTTP/2 connection whose PING went unanswered as if
        // nothing were wrong. Recognise it here: the peer neither closed nor
        // failed, and has been silent for longer than the PING timeout, which
        // a live HTTP/2 peer never is (it must answer).
        if let (Some(timeout), false) = (self.ping_timeout, self.read_ended) {
            let silent = self.last_read.is_none_or(|t| t.elapsed() >= timeout);
            if silent && !self.counters.shutting_down.load(Ordering::Relaxed) {
                self.counters.ping_timeouts.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// True for the errors that mean the peer is dead rather than gone: the
/// kernel gave up on unacknowledged data (TCP_USER_TIMEOUT) or a write
/// passed its deadline.
pub fn is_dead_peer_error(e: &io::Error) -> bool {
    e.raw_os_error() == Some(libc::ETIMEDOUT) || e.kind() == io::ErrorKind::TimedOut
}

impl Socket {
    /// Wraps `stream`; a write blocked for `deadline` fails the connection.
    pub fn new(stream: TcpStream, deadline: Duration, counters: Arc<SocketCounters>) -> Socket {
        // The kernel gives up on data unacknowledged for as long as we wait
        // for a blocked write: one notion of "dead" for both.
        set_tcp_user_timeout(&stream, deadline);
        let _ = stream.set_nodelay(true);
        Socket {
            inner: stream,
            deadline,
            timer: None,
            blocked: false,
            unflushed: 0,
            counters,
            ping_timeout: None,
            last_read: None,
            read_ended: false,
        }
    }

    /// The client's address.
    pub fn peer_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.inner.peer_addr()
    }

    /// Marks this as an HTTP/2 connection whose PINGs time out after
    /// `timeout`, so that such a close is counted as a dead peer.
    pub fn watch_pings(&mut self, timeout: Duration) {
        self.ping_timeout = Some(timeout);
        self.last_read = Some(Instant::now());
    }
}

impl Socket {
    /// Looks at what the client has sent without consuming it.
    pub async fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.peek(buf).await
    }
}

impl AsyncRead for Socket {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if this.ping_timeout.is_some() {
            match &result {
                Poll::Ready(Ok(())) if buf.filled().len() > before => this.last_read = Some(Instant::now()),
                Poll::Ready(_) => this.read_ended = true,
                Poll::Pending => {}
            }
        }
        result
    }
}

/// Runs one write attempt under the deadline: progress disarms the timer,
/// a block arms it (if not armed), and an expired timer fails the write.
macro_rules! write_with_deadline {
    ($self:ident, $cx:ident, $write:expr) => {{
        let this = $self.get_mut();
        match $write(Pin::new(&mut this.inner), $cx) {
            Poll::Ready(Ok(n)) => {
                this.blocked = false;
                this.unflushed += n as u64;
                if this.unflushed >= FLUSH_BYTES {
                    this.counters
                        .bytes_written
                        .fetch_add(this.unflushed, Ordering::Relaxed);
                    this.unflushed = 0;
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                let deadline = Instant::now() + this.deadline;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if !this.blocked {
                    this.blocked = true;
                    timer.as_mut().reset(deadline);
                }
                ready!(timer.as_mut().poll($cx));
                this.counters.write_timeouts.fetch_add(1, Ordering::Relaxed);
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "peer stopped reading: write deadline passed",
                )))
            }
        }
    }};
}

use std::future::Future as _;

impl AsyncWrite for Socket {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        write_with_deadline!(self, cx, |inner: Pin<&mut TcpStream>, cx| inner
            .poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        write_with_deadline!(self, cx, |inner: Pin<&mut TcpStream>, cx| inner
            .poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(target_os = "linux")]
fn set_tcp_user_timeout(stream: &TcpStream, timeout: Duration) {
    use std::os::fd::AsRawFd;
    let millis = timeout.as_millis().min(u32::MAX as u128) as libc::c_uint;
    // SAFETY: a valid socket descriptor and a pointer to a c_uint of the
    // size given; the kernel only reads it.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_USER_TIMEOUT,
            &millis as *const libc::c_uint as *const libc::c_void,
            std::mem::size_of::<libc::c_uint>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn set_tcp_user_timeout(_stream: &TcpStream, _timeout: Duration) {}

/// Raises the soft limit on open files to the hard limit, as Go does at
/// start, so ten thousand streams do not stop at the usual 1024. Returns the
/// limit now in force.
pub fn raise_fd_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit.
        unsafe {
            if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                return None;
            }
            if limit.rlim_cur < limit.rlim_max {
                let raised = libc::rlimit {
                    rlim_cur: limit.rlim_max,
                    rlim_max: limit.rlim_max,
                };
                if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                    limit = raised;
                }
            }
        }
        Some(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// True for accept errors that mean "out of descriptors or memory": the
/// loop should pause before trying again rather than spin.
pub fn is_resource_exhausted(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(code) if code == libc::EMFILE || code == libc::ENFILE || code == libc::ENOBUFS || code == libc::ENOMEM)
}
