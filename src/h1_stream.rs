//! HTTP/1.1 event streams written straight to the socket.
//!
//! hyper keeps a read buffer (16 KiB once grown) and a write buffer (8 KiB)
//! for every HTTP/1 connection, for its whole life. An event stream reads
//! nothing after its request and writes pre-encoded bytes, so for ten
//! thousand idle subscribers those buffers would be most of the server's
//! memory. When a connection opens with a plain `GET /events` over
//! HTTP/1.1, this module answers it itself: same routing and response code
//! as the hyper service (it calls [`service::events_response`]), chunked
//! framing written with one vectored write per batch, and nothing kept per
//! connection but the stream. Anything else, or anything unusual (a partial
//! or pipelined request, a body, an upgrade, HTTP/1.0), is left to hyper,
//! and when a stream ends the connection is handed to hyper for the next
//! request, as keep-alive promises.

use bytes::Buf;
use hyper::body::Body;
use hyper::header::{HeaderName, HeaderValue};
use hyper::{Method, Request, Version};
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use crate::access_log;
use crate::service::{self, App};
use crate::socket::{self, Socket};
use crate::stream::{Chunk, EventStream, ResponseBody};

/// What this path needs of a connection: a byte stream that can show what
/// the client sent without consuming it, so a request this path does not
/// take reaches hyper whole. A TCP [`Socket`] peeks in the kernel; a TLS
/// connection ([`crate::tls::TlsSocket`]) keeps one read's plaintext.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send {
    /// Whether writes may sit in a buffer until flushed (TLS records do;
    /// a TCP socket writes through, and its flush is skipped).
    const BUFFERS_WRITES: bool = false;

    /// Copies what the client has sent so far into `buf`, waiting for some
    /// if nothing has arrived; the bytes are read again by the next read.
    fn peek(&mut self, buf: &mut [u8]) -> impl std::future::Future<Output = std::io::Result<usize>> + Send;

    /// The client's address, for the access log.
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr>;
}

impl Transport for Socket {
    async fn peek(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Socket::peek(self, buf).await
    }

    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        Socket::peer_addr(self)
    }
}

#[cfg(feature = "tls")]
impl Transport for Box<crate::tls::TlsSocket> {
    const BUFFERS_WRITES: bool = true;

    async fn peek(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        crate::tls::TlsSocket::peek(self, buf).await
    }

    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.socket().peer_addr()
    }
}

/// Longest request head taken on this path; longer ones go to hyper.
pub const MAX_HEAD: usize = 4096;
/// Most request headers taken on this path.
const MAX_HEADERS: usize = 32;

/// What became of the connection.
pub enum Outcome<T> {
    /// Not a request for this path: serve it with hyper, from the start.
    NotMine(T),
    /// A stream was served and ended; hyper serves what follows.
    Done(T),
    /// The connection is finished: the client went away or asked to close,
    /// or writing failed (the error, to tell a dead peer from a gone one).
    Closed(Option<std::io::Error>),
}

/// Serves the connection's first request if it is a plain HTTP/1.1
/// `GET /events` that has fully arrived.
///
/// Not an `async fn`: that would copy `io` into the future a second time
/// (rustc keeps both copies), and this future lives in every stream's
/// task. Here `io` is kept once, where the async block captured it.
#[allow(clippy::manual_async_fn)]
pub fn serve<'a, T: Transport + 'a>(
    app: &'a Arc<App>,
    mut io: T,
) -> impl std::future::Future<Output = Outcome<T>> + 'a {
    async move {
        // The request-and-head phase is boxed: it is brief, and inline its
        // futures (peeking, reading, writing the head) would size every
        // stream's task, for the stream's whole life, at twice what it needs.
        let (mut stream, close_after) = match Box::pin(respond(app, &mut io)).await {
            Ok(streaming) => streaming,
            Err(Answered::NotMine) => return Outcome::NotMine(io),
            Err(Answered::Done) => return Outcome::Done(io),
            Err(Answered::Closed(e)) => return Outcome::Closed(e),
        };
        if let Err(e) = pump(&mut io, Pin::new(&mut *stream)).await {
            if e.as_ref().is_some_and(socket::is_dead_peer_error) {
                stream.peer_died();
            }
            return Outcome::Closed(e);
        }
        let shutting_down = stream.ended_by_shutdown();
        drop(stream);
        if let Err(e) = write_flushed(&mut io, &mut &b"0\r\n\r\n"[..]).await {
            return Outcome::Closed(Some(e));
        }
        if close_after || shutting_down {
            return Outcome::Closed(None);
        }
        Outcome::Done(io)
    }
}

/// How [`respond`] left the connection when there is no stream.
enum Answered {
    /// Not our request: hyper serves it, from the start.
    NotMine,
    /// A fixed answer was written; hyper serves what follows.
    Done,
    /// The connection is finished (see [`Outcome::Closed`]).
    Closed(Option<std::io::Error>),
}

/// Reads the request and writes the response head. `Ok` hands back the
/// stream and whether to close after it; `Err` says what became of the
/// connection when there is no stream (not our request, a fixed answer,
/// or a failure).
async fn respond<T: Transport>(app: &Arc<App>, io: &mut T) -> Result<(Box<EventStream>, bool), Answered> {
    let Some((head_len, req, close_after)) = peek_request(io).await else {
        return Err(Answered::NotMine);
    };
    // Consume exactly the head; the peek saw nothing after it.
    let mut head = vec![0u8; head_len];
    if let Err(e) = io.read_exact(&mut head).await {
        return Err(Answered::Closed(Some(e)));
    }
    drop(head);

    let mut resp = service::events_response(app, &req);
    // The peer is asked of the socket only when it will be logged.
    let entry = if access_log::enabled(&app.config) {
        io.peer_addr()
            .ok()
            .and_then(|peer| access_log::Entry::start(&app.config, peer, &req))
    } else {
        None
    };
    // No shared fate here: `serve` sees a dead peer's error itself.
    service::log_response(entry, None, &mut resp);
    drop(req);
    // A shed stream closes the connection to free its descriptor.
    let close_after = close_after
        || resp
            .headers()
            .get(hyper::header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    let (parts, body) = resp.into_parts();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(parts.status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(parts.status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(httpdate::fmt_http_date(std::time::SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\n");
    let status = parts.status;
    drop(parts);

    match body {
        ResponseBody::Full(data) => {
            let data = data.unwrap_or_default();
            // 204 and 304 carry no body and no length.
            if status.as_u16() != 204 && status.as_u16() != 304 {
                out.extend_from_slice(format!("content-length: {}\r\n", data.len()).as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            if let Err(e) = write_flushed(io, &mut Buf::chain(&out[..], data)).await {
                return Err(Answered::Closed(Some(e)));
            }
            Err(if close_after {
                Answered::Closed(None)
            } else {
                Answered::Done
            })
        }
        ResponseBody::Events(stream) => {
            out.extend_from_slice(b"transfer-encoding: chunked\r\n\r\n");
            if let Err(e) = write_flushed(io, &mut &out[..]).await {
                return Err(Answered::Closed(Some(e)));
            }
            Ok((stream, close_after))
        }
    }
}

/// Writes the stream's frames as chunks until it ends (`Ok`), the client
/// goes away (`Err(None)`) or a write fails (`Err(Some)`).
///
/// Its future is part of every stream's task, so it is one poll function
/// over one piece of state, the frame being written: an `async` loop
/// would keep the frame two or three times over (rustc keeps the storage
/// of locals moved from) and its arguments twice.
fn pump<'a, T: Transport>(
    io: &'a mut T,
    mut stream: Pin<&'a mut EventStream>,
) -> impl std::future::Future<Output = Result<(), Option<std::io::Error>>> + 'a {
    let mut writing: Option<ChunkFrame> = None;
    poll_fn(move |cx| loop {
        if let Some(frame) = writing.as_mut() {
            match poll_write_all(io, frame, cx) {
                Poll::Ready(Ok(())) => writing = None,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(Some(e))),
                Poll::Pending => return Poll::Pending,
            }
        }
        match stream.as_mut().poll_frame(cx) {
            // An empty or non-data frame has nothing to write.
            Poll::Ready(Some(Ok(frame))) => {
                writing = frame.into_data().ok().and_then(chunk_frame);
                continue;
            }
            Poll::Ready(_) => return Poll::Ready(Ok(())),
            Poll::Pending => {}
        }
        // Nothing to write: watch the socket meanwhile. A client that
        // closes (or sends anything: a stream request has nothing more to
        // say) ends the stream at once instead of at the next write.
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        return match Pin::new(&mut *io).poll_read(cx, &mut buf) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(())) => Poll::Ready(Err(None)),
            // ETIMEDOUT from TCP_USER_TIMEOUT can surface here first.
            Poll::Ready(Err(e)) => Poll::Ready(Err(Some(e))),
        };
    })
}

/// Writes all of `buf` (vectored, up to 64 slices a call, as tokio's
/// `write_all_buf`), then flushes where the transport buffers: the one
/// write loop of this path, as a poll function so [`pump`] can keep its
/// state in place; [`write_flushed`] awaits it.
fn poll_write_all<T: Transport, B: Buf>(
    io: &mut T,
    buf: &mut B,
    cx: &mut std::task::Context<'_>,
) -> Poll<std::io::Result<()>> {
    while buf.has_remaining() {
        let written = if io.is_write_vectored() {
            let mut slices = [std::io::IoSlice::new(&[]); 64];
            let n = buf.chunks_vectored(&mut slices);
            Pin::new(&mut *io).poll_write_vectored(cx, &slices[..n])
        } else {
            Pin::new(&mut *io).poll_write(cx, buf.chunk())
        };
        match written {
            Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
            Poll::Ready(Ok(n)) => buf.advance(n),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
    }
    if T::BUFFERS_WRITES {
        return Pin::new(io).poll_flush(cx);
    }
    Poll::Ready(Ok(()))
}

/// One frame as an HTTP/1.1 chunk: `LEN-IN-HEX\r\n`, the data, `\r\n`,
/// written in place (no copy of the data, no allocation).
type ChunkFrame = bytes::buf::Chain<bytes::buf::Chain<SizeLine, Chunk>, &'static [u8]>;

/// `None` for an empty frame (a zero-size chunk would end the body).
fn chunk_frame(data: Chunk) -> Option<ChunkFrame> {
    let len = data.remaining();
    if len == 0 {
        return None;
    }
    let (buf, end) = format_chunk_size(len);
    let size = SizeLine {
        buf,
        at: 0,
        end: end as u8,
    };
    Some(Buf::chain(Buf::chain(size, data), &b"\r\n"[..]))
}

/// A chunk's size line, owned, so the frame being written holds its
/// bytes itself instead of borrowing a local kept beside it.
struct SizeLine {
    buf: [u8; 18],
    at: u8,
    end: u8,
}

impl Buf for SizeLine {
    fn remaining(&self) -> usize {
        (self.end - self.at) as usize
    }

    fn chunk(&self) -> &[u8] {
        &self.buf[self.at as usize..self.end as usize]
    }

    fn advance(&mut self, cnt: usize) {
        assert!(cnt <= self.remaining(), "advance past the size line");
        self.at += cnt as u8;
    }
}

/// Writes all of `buf` and flushes: a no-op on TCP, but TLS may hold the
/// last record in its buffer when the socket is full, and an event must
/// not wait there for the next one.
async fn write_flushed<T: Transport, B: Buf>(io: &mut T, buf: &mut B) -> std::io::Result<()> {
    poll_fn(|cx| poll_write_all(io, buf, cx)).await
}

/// `LEN-IN-HEX\r\n`, without allocating.
fn format_chunk_size(mut len: usize) -> ([u8; 18], usize) {
    let mut digits = [0u8; 16];
    let mut n = 0;
    loop {
        digits[n] = b"0123456789abcdef"[len & 15];
        n += 1;
        len >>= 4;
        if len == 0 {
            break;
        }
    }
    let mut out = [0u8; 18];
    for i in 0..n {
        out[i] = digits[n - 1 - i];
    }
    out[n] = b'\r';
    out[n + 1] = b'\n';
    (out, n + 2)
}

/// Looks at what the client has sent without consuming it. Returns the
/// head's length, the request, and whether the client asked to close after
/// it, if this is a request for this path.
async fn peek_request<T: Transport>(io: &mut T) -> Option<(usize, Request<()>, bool)> {
    let mut buf = vec![0u8; MAX_HEAD];
    let n = io.peek(&mut buf).await.ok()?;
    parse_request(&buf[..n])
}

/// Parses a request head that must be all of `bytes`. Not async, so the
/// header array stays on the stack instead of in every stream's future.
fn parse_request(bytes: &[u8]) -> Option<(usize, Request<()>, bool)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    let head_len = match parsed.parse(bytes) {
        Ok(httparse::Status::Complete(len)) => len,
        _ => return None,
    };
    // Pipelined bytes after the head belong to hyper's parser.
    if head_len != bytes.len() || parsed.method != Some("GET") || parsed.version != Some(1) {
        return None;
    }
    let path = parsed.path?;
    if !(path == "/events" || path.starts_with("/events?")) {
        return None;
    }
    let mut req = Request::builder()
        .method(Method::GET)
        .uri(path)
        .version(Version::HTTP_11);
    let mut close_after = false;
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        let value = HeaderValue::from_bytes(h.value).ok()?;
        match name.as_str() {
            // A body, an upgrade or an expectation: hyper knows what to do.
            "content-length" | "transfer-encoding" | "upgrade" | "expect" => return None,
            "connection" => {
                let v = value.to_str().ok()?.to_ascii_lowercase();
                if v.contains("upgrade") {
                    return None;
                }
                close_after |= v.split(',').any(|t| t.trim() == "close");
            }
            _ => {}
        }
        req = req.header(name, value);
    }
    Some((head_len, req.body(()).ok()?, close_after))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_lowercase_hex() {
        for (len, want) in [
            (1usize, "1\r\n"),
            (15, "f\r\n"),
            (16, "10\r\n"),
            (65535, "ffff\r\n"),
        ] {
            let (buf, n) = format_chunk_size(len);
            assert_eq!(std::str::from_utf8(&buf[..n]).unwrap(), want);
        }
    }

    #[test]
    fn a_frame_is_written_as_one_chunk_whatever_the_write_sizes() {
        use std::collections::VecDeque;
        let many = || {
            Chunk::Many(VecDeque::from([
                bytes::Bytes::from_static(b"data: a\n\n"),
                bytes::Bytes::from_static(b"data: bc\n\n"),
            ]))
        };
        assert!(chunk_frame(Chunk::One(bytes::Bytes::new())).is_none());
        // Taken in writes of every size, vectored as the socket would.
        for step in 1..=30 {
            let mut frame = chunk_frame(many()).unwrap();
            let mut out = Vec::new();
            while frame.has_remaining() {
                let mut slices = [std::io::IoSlice::new(&[]); 64];
                let n = frame.chunks_vectored(&mut slices);
                let bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
                assert_eq!(bytes.len(), frame.remaining(), "every part in one vectored write");
                let take = step.min(bytes.len());
                out.extend_from_slice(&bytes[..take]);
                frame.advance(take);
            }
            assert_eq!(out, b"13\r\ndata: a\n\ndata: bc\n\n\r\n", "step {step}");
        }
    }

    #[test]
    fn only_plain_complete_get_events_requests_are_taken() {
        let take = |r: &str| parse_request(r.as_bytes()).is_some();
        assert!(take("GET /events HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(take("GET /events?topic=a HTTP/1.1\r\nHost: x\r\n\r\n"));
        assert!(!take("GET /events HTTP/1.1\r\nHost: x\r\n"), "incomplete head");
        assert!(!take("GET /events HTTP/1.0\r\n\r\n"), "HTTP/1.0");
        assert!(!take("HEAD /events HTTP/1.1\r\n\r\n"));
        assert!(!take("GET /eventsx HTTP/1.1\r\n\r\n"));
        assert!(
            !take("GET /events HTTP/1.1\r\n\r\nGET /healthz HTTP/1.1\r\n\r\n"),
            "pipelined"
        );
        assert!(!take("GET /events HTTP/1.1\r\nContent-Length: 1\r\n\r\n"));
        assert!(!take(
            "GET /events HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        ));
        let (_, _, close) = parse_request(b"GET /events HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap();
        assert!(close);
    }

    #[test]
    fn request_parser_survives_random_input() {
        let alphabet = b"GET /events?a=% HTTP/1.1\r\n:Connection close\x00\xff";
        let mut seed = 0xdead_beef_cafe_f00du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 80) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i % 50)) as usize + i * 3) % alphabet.len()])
                .collect();
            let _ = parse_request(&bytes);
        }
    }
}
