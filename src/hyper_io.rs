//! What a connection served by hyper gets on top of [`Socket`]: a reason
//! in hyper's own HTTP/1 refusals, and the peer's fate for the streams on
//! it. (Fast-path streams, see `h1_stream`, need neither: they have no
//! hyper, and see their socket's errors themselves.)
//!
//! **Refusals.**
//! When a request head cannot be parsed, hyper's h1 dispatcher answers by
//! itself, before any service sees a request: `431` for a head over the
//! buffer limit, `400` for a malformed request line or header, `414` for a
//! target too long. It writes a head with `content-length: 0` and closes
//! (hyper's `Server::on_error`, then `Conn::on_parse_error`). The README
//! promises a one-line reason for every refusal, so [`Refusals`] wraps the
//! connection's IO and, when hyper writes such a head, writes the same head
//! with a plain-text body instead.
//!
//! It recognises the head by its shape: a 4xx or 5xx status line at the
//! start of a write, and `content-length: 0`. Every refusal of our own has
//! a body (see `service::plain`), so nothing of ours matches. Checking
//! costs a comparison of the first bytes of each write; HTTP/2 connections
//! are not checked at all.
//!
//! **The peer's fate.** hyper drops a stream's body when its connection
//! fails, without telling the body why. The access log wants to say "dead
//! peer" (write deadline, TCP_USER_TIMEOUT, unanswered HTTP/2 PINGs) rather
//! than "client closed", so the errors that mean a dead peer, and for
//! HTTP/2 when the peer last sent anything, are noted in a [`PeerFate`]
//! shared with the connection's streams.

use bytes::Bytes;
use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::access_log::{self, PeerFate};
use crate::socket::{self, Socket};

/// The IO hyper serves a connection on.
pub struct HyperIo<T = Socket> {
    inner: T,
    /// False for HTTP/2, which never writes an HTTP/1 status line.
    armed: bool,
    /// The replacement still to write, and how much of it is written.
    pending: Option<(Bytes, usize)>,
    /// Set when the access log is on: the peer, for the refusal's line.
    log_peer: Option<SocketAddr>,
    /// Made when a stream asks for it (the access log is on).
    fate: Option<PeerFate>,
}

impl<T> HyperIo<T> {
    /// `http1`: whether hyper's HTTP/1 refusals may be written here.
    pub fn new(inner: T, http1: bool, log_peer: Option<SocketAddr>) -> HyperIo<T> {
        HyperIo {
            inner,
            armed: http1,
            pending: None,
            log_peer,
            fate: None,
        }
    }

    /// The handle the connection's streams read when they end;
    /// `ping_timeout` for HTTP/2.
    pub fn fate(&mut self, ping_timeout: Option<std::time::Duration>) -> PeerFate {
        self.fate
            .get_or_insert_with(|| PeerFate::new(ping_timeout))
            .clone()
    }

    /// Notes a dead peer if `result` is an error that means one.
    fn watch<R>(&self, result: Poll<io::Result<R>>) -> Poll<io::Result<R>> {
        watch(&self.fate, result)
    }
}

fn watch<T>(fate: &Option<PeerFate>, result: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
    if let (Poll::Ready(Err(e)), Some(fate)) = (&result, fate) {
        if socket::is_dead_peer_error(e) {
            fate.mark_dead();
        }
    }
    result
}

/// The one-line reason for each status hyper answers by itself.
fn reason(status: &[u8]) -> &'static str {
    match status {
        b"431" => "request headers are over the limit of 16 KiB",
        b"400" => "malformed request: the request line or a header cannot be parsed",
        b"414" => "request target is too long",
        _ => "request refused",
    }
}

/// If `buf` starts with one of hyper's bodiless refusals, the length of
/// its head and the head with a body to write instead.
pub fn rewrite(buf: &[u8]) -> Option<(usize, Bytes, u16)> {
    // "HTTP/1.1 431 " at least.
    if buf.len() < 13 || !buf.starts_with(b"HTTP/1.") || !matches!(buf[9], b'4' | b'5') {
        return None;
    }
    let end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = &buf[..end];
    let lower_has = |needle: &[u8]| head.windows(needle.len()).any(|w| w.eq_ignore_ascii_case(needle));
    if !lower_has(b"\r\ncontent-length: 0\r\n") {
        return None;
    }
    let status = &buf[9..12];
    let body = format!("{}\n", reason(status));
    let mut out = Vec::with_capacity(end + body.len() + 64);
    for line in head[..end - 2].split_inclusive(|b| *b == b'\n') {
        if line.len() >= 15 && line[..15].eq_ignore_ascii_case(b"content-length:") {
            continue;
        }
        out.extend_from_slice(line);
    }
    out.extend_from_slice(b"content-type: text/plain; charset=utf-8\r\n");
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body.as_bytes());
    let code = std::str::from_utf8(status).ok()?.parse().ok()?;
    Some((end, Bytes::from(out), code))
}

impl<T: AsyncWrite + Unpin> HyperIo<T> {
    /// Writes what is left of a replacement; `Ready(Ok)` once none is.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.pending {
            let n = ready!(watch(
                &self.fate,
                Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..])
            ))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
            if *written == bytes.len() {
                self.pending = None;
            }
        }
        Poll::Ready(Ok(()))
    }

    /// Takes over a write that is one of hyper's refusals.
    fn intercept(&mut self, first: &[u8]) -> Option<usize> {
        if !self.armed {
            return None;
        }
        let (head_len, replacement, status) = rewrite(first)?;
        if let Some(peer) = self.log_peer {
            access_log::refused(peer, status);
        }
        self.pending = Some((replacement, 0));
        Some(head_len)
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for HyperIo<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        // ETIMEDOUT from TCP_USER_TIMEOUT can surface on a read first.
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Some(fate) = &this.fate {
            match &result {
                Poll::Ready(Ok(())) if buf.filled().len() > before => fate.read(),
                Poll::Ready(_) => fate.read_ended(),
                Poll::Pending => {}
            }
        }
        this.watch(result)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for HyperIo<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(n) = this.intercept(buf) {
            // Best effort now; flush and shutdown finish it.
            let _ = this.poll_pending(cx)?;
            return Poll::Ready(Ok(n));
        }
        let result = Pin::new(&mut this.inner).poll_write(cx, buf);
        this.watch(result)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if let Some(n) = this.intercept(first) {
                let _ = this.poll_pending(cx)?;
                return Poll::Ready(Ok(n));
            }
        }
        let result = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.watch(result)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        let result = Pin::new(&mut this.inner).poll_flush(cx);
        this.watch(result)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_pending(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hyper_431_gets_a_body() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Tue, 01 Dec 2026 20:48:53 GMT\r\n\r\n";
        let (len, out, status) = rewrite(head).expect("rewritten");
        assert_eq!((len, status), (head.len(), 431));
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n"));
        assert!(text.contains("\r\ndate: Tue, 01 Dec 2026 20:48:53 GMT\r\n"));
        assert!(!text.contains("content-length: 0\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(head.contains(&format!("content-length: {}", body.len())));
        assert_eq!(body, "request headers are over the limit of 16 KiB\n");
    }

    #[test]
    fn answers_with_bodies_are_left_alone() {
        assert!(rewrite(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 12\r\n\r\nmalformed x\n").is_none());
        assert!(rewrite(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\n\r\n").is_none());
        assert!(rewrite(b"1a\r\nid: 1\ndata: HTTP/1.1 431\n\n\r\n").is_none());
        assert!(
            rewrite(b"HTTP/1.1 431 X\r\ncontent-length: 0\r\n").is_none(),
            "incomplete head"
        );
    }
}
