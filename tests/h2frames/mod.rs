//! A hand-written HTTP/2 frame writer and reader for the attack tests: the
//! `h2` client refuses to send most of what an attacker sends (zero
//! WINDOW_UPDATEs, endless CONTINUATION, DATA on a closed stream), so these
//! frames are written byte by byte. Also what every attack test measures:
//! the process's RSS, and a bystander subscriber's event latencies.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::time::Instant;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const WINDOW_UPDATE: u8 = 0x8;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

/// RST_STREAM and GOAWAY error codes (RFC 9113, 7).
pub const PROTOCOL_ERROR: u32 = 0x1;
pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// One frame's header fields and payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = payload.len() as u32;
    let mut out = Vec::with_capacity(9 + payload.len());
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// An HPACK string literal, without Huffman coding; `len` must be < 127
/// or is written with the multi-byte integer form.
fn hpack_string(out: &mut Vec<u8>, s: &[u8]) {
    hpack_int(out, 0x00, 7, s.len());
    out.extend_from_slice(s);
}

fn hpack_int(out: &mut Vec<u8>, first: u8, prefix: u8, mut n: usize) {
    let max = (1usize << prefix) - 1;
    if n < max {
        out.push(first | n as u8);
        return;
    }
    out.push(first | max as u8);
    n -= max;
    while n >= 128 {
        out.push((n % 128 + 128) as u8);
        n /= 128;
    }
    out.push(n as u8);
}

/// The header block of `GET path` on `authority`, plus `extra` headers
/// (literal, never indexed into the server's table).
pub fn get_block(path: &str, extra: &[(&str, &str)]) -> Vec<u8> {
    let mut b = vec![0x82, 0x86]; // :method GET, :scheme http (static table)
                                  // :path, literal without indexing, name from the static table (4).
    hpack_int(&mut b, 0x00, 4, 4);
    hpack_string(&mut b, path.as_bytes());
    // :authority (static name 1).
    hpack_int(&mut b, 0x00, 4, 1);
    hpack_string(&mut b, b"localhost");
    for (name, value) in extra {
        b.push(0x00); // literal without indexing, new name
        hpack_string(&mut b, name.as_bytes());
        hpack_string(&mut b, value.as_bytes());
    }
    b
}

/// A HEADERS frame for `GET path` on `stream`, ending the request.
pub fn get_frame(stream: u32, path: &str) -> Vec<u8> {
    frame(HEADERS, END_HEADERS | END_STREAM, stream, &get_block(path, &[]))
}

pub fn rst_stream(stream: u32, code: u32) -> Vec<u8> {
    frame(RST_STREAM, 0, stream, &code.to_be_bytes())
}

pub fn window_update(stream: u32, increment: u32) -> Vec<u8> {
    frame(WINDOW_UPDATE, 0, stream, &increment.to_be_bytes())
}

pub fn ping(n: u64) -> Vec<u8> {
    frame(PING, 0, 0, &n.to_be_bytes())
}

pub fn settings(params: &[(u16, u32)]) -> Vec<u8> {
    let mut p = Vec::new();
    for (id, v) in params {
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(&v.to_be_bytes());
    }
    frame(SETTINGS, 0, 0, &p)
}

/// A frame as read back.
#[derive(Debug)]
pub struct Frame {
    pub kind: u8,
    pub flags: u8,
    pub stream: u32,
    pub payload: Vec<u8>,
}

impl Frame {
    /// The error code of a RST_STREAM or GOAWAY.
    pub fn error_code(&self) -> Option<u32> {
        let at = match self.kind {
            RST_STREAM => 0,
            GOAWAY => 4,
            _ => return None,
        };
        let b = self.payload.get(at..at + 4)?;
        Some(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Reads one frame; `None` at the end of the connection (or an error).
pub async fn read_frame(r: &mut OwnedReadHalf) -> Option<Frame> {
    let mut head = [0u8; 9];
    r.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.ok()?;
    Some(Frame {
        kind: head[3],
        flags: head[4],
        stream: u32::from_be_bytes([head[5], head[6], head[7], head[8]]) & 0x7fff_ffff,
        payload,
    })
}

/// An h2c connection after the preface and our SETTINGS (`settings`), split
/// so an attack can write while something else reads.
pub async fn connect(addr: SocketAddr, params: &[(u16, u32)]) -> (OwnedReadHalf, OwnedWriteHalf) {
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let _ = tcp.set_nodelay(true);
    let (r, mut w) = tcp.into_split();
    let mut hello = PREFACE.to_vec();
    hello.extend(settings(params));
    w.write_all(&hello).await.expect("write preface");
    (r, w)
}

/// How a connection ended, as its reader saw it.
#[derive(Debug, Default)]
pub struct Ending {
    /// The GOAWAY's error code, if the server sent one.
    pub goaway: Option<u32>,
    /// The GOAWAY's last stream id: the highest stream the server took up.
    pub goaway_last_stream: Option<u32>,
    /// RST_STREAM frames received, by error code.
    pub resets: Vec<(u32, u32)>,
    /// The server closed the TCP connection.
    pub closed: bool,
    /// Frames read in all.
    pub frames: usize,
    /// DATA payload bytes read.
    pub data: usize,
}

/// Reads (acknowledging the server's SETTINGS, answering PINGs when
/// `pong`) until the server closes the connection or `limit` passes.
pub async fn read_until_closed(
    mut r: OwnedReadHalf,
    mut w: Option<OwnedWriteHalf>,
    pong: bool,
    limit: Duration,
) -> Ending {
    let mut ending = Ending::default();
    let deadline = Instant::now() + limit;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, read_frame(&mut r)).await else {
            return ending;
        };
        let Some(f) = next else {
            ending.closed = true;
            return ending;
        };
        if let (Some(answer), Some(w)) = (ending.record(&f, pong), w.as_mut()) {
            let _ = w.write_all(&answer).await;
        }
    }
}

/// [`read_until_closed`] for a test that writes to the connection itself:
/// the answers (SETTINGS ACK, and PING ACK when `pong`) are handed to
/// `answer`, for its writer to send.
pub async fn read_answering(
    mut r: OwnedReadHalf,
    answer: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    pong: bool,
    limit: Duration,
) -> Ending {
    let mut ending = Ending::default();
    let deadline = Instant::now() + limit;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, read_frame(&mut r)).await else {
            return ending;
        };
        let Some(f) = next else {
            ending.closed = true;
            return ending;
        };
        if let Some(bytes) = ending.record(&f, pong) {
            let _ = answer.send(bytes);
        }
    }
}

impl Ending {
    /// Notes what frame `f` says of the connection's end; returns the
    /// answer it is due (SETTINGS ACK, and PING ACK when `pong`), if any.
    fn record(&mut self, f: &Frame, pong: bool) -> Option<Vec<u8>> {
        self.frames += 1;
        match f.kind {
            DATA => self.data += f.payload.len(),
            GOAWAY => {
                self.goaway = f.error_code();
                self.goaway_last_stream = f
                    .payload
                    .get(..4)
                    .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]) & 0x7fff_ffff);
            }
            RST_STREAM => self.resets.push((f.stream, f.error_code().unwrap_or(u32::MAX))),
            SETTINGS if f.flags & ACK == 0 => return Some(frame(SETTINGS, ACK, 0, &[])),
            PING if pong && f.flags & ACK == 0 => return Some(frame(PING, ACK, 0, &f.payload)),
            _ => {}
        }
        None
    }
}

/// The process's resident memory, in KiB (tests run the server in-process).
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// The 99th percentile of `samples` (sorted in place).
pub fn p99(samples: &mut [Duration]) -> Duration {
    samples.sort();
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples[(samples.len() * 99).div_ceil(100).saturating_sub(1)]
}
