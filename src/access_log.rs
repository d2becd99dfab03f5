//! The access log: one `info` line, target `ssehub::access`, per finished
//! request that is not a stream, and one per stream when it ends.
//!
//! A line is `key=value` pairs: peer, protocol, method, path (with the
//! query, its `authorization` value redacted), status, topics, duration in
//! milliseconds, and for streams the events and bytes sent and why it ended
//! ([`EndReason`]). Values never contain spaces: a request target cannot,
//! and a topic is shown escaped, a space as `\x20` and anything else not
//! printable ASCII as Rust's `escape_default` writes it (`\t`, `\u{e9}`;
//! a backslash doubled), so the text form is easy to split;
//! `--log-format json` turns the same pairs into JSON members (see
//! [`crate::logging`]).
//!
//! What it costs: an [`Entry`] is made per request (one clock read, and the
//! peer, method and target written into one string); a stream carries it
//! as a [`StreamLog`] of 56 bytes, boxed, beside that string, and counts
//! what it sends in plain integers in its own body, so an event costs two
//! additions, no atomic and no lock. The line is written once, at the end,
//! and the topics are worked out from the target only then. Tokens never
//! reach it: the `Authorization` header is not logged, and an
//! `authorization` query parameter is redacted.

use hyper::{Request, StatusCode, Version};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::channel::CloseReason;
use crate::config::Config;
use crate::query;

/// The log target of access lines; `RUST_LOG=ssehub::access=off` also
/// silences them.
pub const TARGET: &str = "ssehub::access";

/// Whether a connection's peer is dead (write deadline, `TCP_USER_TIMEOUT`,
/// or unanswered HTTP/2 PINGs), shared by the connection's IO, which sees
/// its reads and errors (see [`crate::hyper_io`]), and the streams on it,
/// which ask once, when they end.
#[derive(Debug, Clone)]
pub struct PeerFate(Arc<Fate>);

#[derive(Debug)]
struct Fate {
    /// An error said so.
    dead: AtomicBool,
    /// The peer closed its side, or reading failed: it did not go quiet.
    read_ended: AtomicBool,
    /// When the fate was made; `last_read_ms` counts from it.
    since: Instant,
    /// When the peer last sent anything (tracked only with `ping_timeout`).
    last_read_ms: AtomicU64,
    /// For HTTP/2: silence this long means the PINGs went unanswered.
    ping_timeout: Option<Duration>,
}

impl PeerFate {
    /// `ping_timeout`: for an HTTP/2 connection, `--h2-keepalive-timeout`.
    pub fn new(ping_timeout: Option<Duration>) -> PeerFate {
        PeerFate(Arc::new(Fate {
            dead: AtomicBool::new(false),
            read_ended: AtomicBool::new(false),
            since: Instant::now(),
            last_read_ms: AtomicU64::new(0),
            ping_timeout,
        }))
    }

    pub fn mark_dead(&self) {
        self.0.dead.store(true, Ordering::Relaxed);
    }

    /// The peer sent something (only needed with a PING timeout).
    pub fn read(&self) {
        if self.0.ping_timeout.is_some() {
            let ms = self.0.since.elapsed().as_millis() as u64;
            self.0.last_read_ms.store(ms, Ordering::Relaxed);
        }
    }

    pub fn read_ended(&self) {
        self.0.read_ended.store(true, Ordering::Relaxed);
    }

    /// Dead by an error, or (HTTP/2) silent for longer than the PING
    /// timeout without having closed: hyper ends such a connection as if
    /// nothing were wrong, and its streams may end before it has, so the
    /// silence itself is the sign (a live HTTP/2 peer must answer PINGs).
    pub fn is_dead(&self) -> bool {
        let f = &*self.0;
        if f.dead.load(Ordering::Relaxed) {
            return true;
        }
        let Some(timeout) = f.ping_timeout else {
            return false;
        };
        let now = f.since.elapsed().as_millis() as u64;
        let silent = now.saturating_sub(f.last_read_ms.load(Ordering::Relaxed));
        !f.read_ended.load(Ordering::Relaxed) && silent >= timeout.as_millis() as u64
    }
}

/// Why a stream ended, as the log line says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// The client closed the connection or the stream.
    ClientClosed,
    /// Dropped for being more than `--max-subscriber-backlog` behind.
    Slow,
    /// The peer stopped reading or vanished (write deadline,
    /// TCP_USER_TIMEOUT, unanswered HTTP/2 PINGs).
    DeadPeer,
    /// `--max-stream-lifetime` was reached.
    Lifetime,
    /// The server is shutting down.
    Shutdown,
    /// Every topic of the stream was closed.
    TopicsClosed,
    /// The subscriber's token expired (set by the auth checks).
    TokenExpired,
    /// Past `--max-connections`: answered with a long `retry:` and ended at once.
    Shed,
    /// A Mercure stream ended because the shared log lost events.
    LogLost,
}

impl EndReason {
    pub fn as_str(self) -> &'static str {
        match self {
            EndReason::ClientClosed => "client_closed",
            EndReason::Slow => "slow",
            EndReason::DeadPeer => "dead_peer",
            EndReason::Lifetime => "lifetime",
            EndReason::Shutdown => "shutdown",
            EndReason::TopicsClosed => "topics_closed",
            EndReason::TokenExpired => "token_expired",
            EndReason::Shed => "shed",
            EndReason::LogLost => "log_lost",
        }
    }

    /// The reason for a stream the server (`Some`) or the client (`None`,
    /// or its own unsubscribe) ended; `dead` tells a vanished peer apart.
    pub fn of(reason: Option<CloseReason>, dead: bool) -> EndReason {
        match reason {
            Some(CloseReason::Slow) => EndReason::Slow,
            Some(CloseReason::TopicsClosed) => EndReason::TopicsClosed,
            Some(CloseReason::Shutdown) => EndReason::Shutdown,
            Some(CloseReason::Lifetime) => EndReason::Lifetime,
            Some(CloseReason::TokenExpired) => EndReason::TokenExpired,
            Some(CloseReason::LogLost) => EndReason::LogLost,
            Some(CloseReason::Unsubscribed) | None if dead => EndReason::DeadPeer,
            Some(CloseReason::Unsubscribed) | None => EndReason::ClientClosed,
        }
    }
}

/// What is known of a request when it arrives; made only while the access
/// log is on.
///
/// Compact, since a stream keeps it for its whole life: the peer, the
/// method and the target share one allocation, and the start is 8 bytes.
#[derive(Debug)]
pub struct Entry {
    /// The peer, the method, and the target (path and redacted query, as
    /// sent), one after the other.
    text: Box<str>,
    /// When the request arrived, in nanoseconds since [`clock`]'s epoch.
    start: u64,
    /// Where the method ends in `text` (the target follows it).
    method_end: u32,
    /// Where the peer ends in `text` (the method follows it).
    peer_end: u16,
    version: Version,
}

impl Entry {
    /// `None` when the access log is off (`--access-log off`, or the log
    /// level leaves `ssehub::access` out): then nothing at all is done.
    pub fn start<B>(config: &Config, peer: SocketAddr, req: &Request<B>) -> Option<Entry> {
        // The console polls /stats every second while it is open: a line
        // each would drown the lines that matter.
        if !enabled(config) || req.uri().path() == "/stats" {
            return None;
        }
        Some(Entry::new(peer, req))
    }

    fn new<B>(peer: SocketAddr, req: &Request<B>) -> Entry {
        let uri = req.uri();
        let mut text = String::with_capacity(80);
        let _ = write!(text, "{peer}");
        let peer_end = text.len() as u16;
        text.push_str(req.method().as_str());
        let method_end = text.len() as u32;
        text.push_str(uri.path());
        if let Some(q) = uri.query() {
            text.push('?');
            text.push_str(&query::redacted(q));
        }
        Entry {
            text: text.into_boxed_str(),
            start: clock(),
            method_end,
            peer_end,
            version: req.version(),
        }
    }

    /// Logs a finished request; `end` is set for a stream answered and
    /// ended at once (shed, or refused at shutdown).
    pub fn finish(self, status: StatusCode, end: Option<EndReason>) {
        let mut line = common(
            &self.text,
            self.peer_end,
            self.method_end,
            self.version,
            self.start,
            status,
        );
        if let Some(end) = end {
            let _ = write!(line, " events=0 end={}", end.as_str());
        }
        log::info!(target: TARGET, "{line}");
    }
}

/// Nanoseconds since the first call: a request's start in 8 bytes.
fn clock() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    EPOCH.get_or_init(Instant::now).elapsed().as_nanos() as u64
}

/// The fields every line has, up to `duration_ms`.
fn common(
    text: &str,
    peer_end: u16,
    method_end: u32,
    version: Version,
    start: u64,
    status: StatusCode,
) -> String {
    let (peer, rest) = text.split_at(peer_end as usize);
    let (method, target) = rest.split_at(method_end as usize - peer_end as usize);
    let mut line = String::with_capacity(160);
    let _ = write!(
        line,
        "peer={} proto={} method={} path={} status={} topics={} duration_ms={}",
        peer,
        protocol(version),
        method,
        target,
        status.as_u16(),
        topics(target),
        clock().saturating_sub(start) / 1_000_000,
    );
    line
}

/// Whether the access log is on: `--access-log on` and `info` enabled for
/// [`TARGET`].
pub fn enabled(config: &Config) -> bool {
    config.access_log && log::log_enabled!(target: TARGET, log::Level::Info)
}

/// Logs a request that hyper refused before it was parsed (431, 400):
/// there is no method or path to tell.
pub fn refused(peer: SocketAddr, status: u16) {
    log::info!(
        target: TARGET,
        "peer={peer} proto=HTTP/1.1 method=- path=- status={status} topics=- duration_ms=0"
    );
}

/// A stream's entry and what it has sent so far: 56 bytes (its
/// allocation, 64) and the entry's text, for the stream's whole life.
#[derive(Debug)]
pub struct StreamLog {
    /// The [`Entry`]'s fields, laid out flat so they pack with the rest.
    text: Box<str>,
    start: u64,
    method_end: u32,
    peer_end: u16,
    version: Version,
    /// Tells a dead peer from one that closed, for streams served by hyper.
    fate: Option<PeerFate>,
    /// Set by the HTTP/1.1 fast path, which sees the error itself.
    pub dead: bool,
    /// Events sent (replayed, live and control ones; a batch publish is one
    /// piece and counts once); heartbeats and the `retry:` field are not.
    pub events: u64,
    /// Body bytes sent (framing not included).
    pub bytes: u64,
}

impl StreamLog {
    pub fn new(entry: Entry, fate: Option<PeerFate>) -> StreamLog {
        let Entry {
            text,
            start,
            method_end,
            peer_end,
            version,
        } = entry;
        StreamLog {
            text,
            start,
            method_end,
            peer_end,
            version,
            fate,
            dead: false,
            events: 0,
            bytes: 0,
        }
    }

    /// Counts one piece handed to the socket.
    #[inline]
    pub fn count(&mut self, piece: &[u8]) {
        self.bytes += piece.len() as u64;
        // Heartbeats are `:` comments; the opening `retry:` is no event.
        if !piece.is_empty() && piece[0] != b':' && !piece.starts_with(b"retry:") {
            self.events += 1;
        }
    }

    /// Logs the stream's line; `reason` is the stream's close reason.
    pub fn finish(&self, reason: Option<CloseReason>) {
        let dead = self.dead || self.fate.as_ref().is_some_and(PeerFate::is_dead);
        let end = EndReason::of(reason, dead);
        let mut line = common(
            &self.text,
            self.peer_end,
            self.method_end,
            self.version,
            self.start,
            StatusCode::OK,
        );
        let _ = write!(
            line,
            " events={} bytes={} end={}",
            self.events,
            self.bytes,
            end.as_str()
        );
        log::info!(target: TARGET, "{line}");
    }
}

fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP",
    }
}

/// The `topic` values of a target, comma-separated; `-` for none, or `*`
/// for a stream of every topic.
fn topics(target: &str) -> String {
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let none = if path == "/events" { "*" } else { "-" };
    let list: Vec<String> = q
        .split('&')
        .filter_map(|part| part.strip_prefix("topic="))
        .filter_map(|v| query::decode(v).ok())
        // A topic is printable ASCII without spaces; anything else (it will
        // have been refused) is shown escaped so the line stays splittable.
        .map(|t| escape_topic(&t))
        .collect();
    if list.is_empty() {
        none.into()
    } else {
        list.join(",")
    }
}

/// A topic as a line shows it: printable ASCII as it is, a space as
/// `\x20`, anything else as Rust's `escape_default` writes it (`\t`,
/// `\u{e9}`, a backslash doubled), so a value never contains a space.
fn escape_topic(topic: &str) -> String {
    let mut out = String::with_capacity(topic.len());
    for c in topic.chars() {
        if c == ' ' {
            out.push_str("\\x20");
        } else {
            out.extend(c.escape_default());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::Method;

    #[test]
    fn topics_are_decoded_and_listed() {
        assert_eq!(topics("/events"), "*");
        assert_eq!(topics("/events?_=1"), "*");
        assert_eq!(topics("/healthz"), "-");
        assert_eq!(topics("/events?topic=a&topic=b%2Fc&_=1"), "a,b/c");
        assert_eq!(topics("/publish?event=x"), "-");
    }

    #[test]
    fn topics_never_contain_a_space() {
        assert_eq!(topics("/events?topic=a%20b"), "a\\x20b");
        assert_eq!(topics("/events?topic=a+b&topic=%20"), "a+b,\\x20");
        assert_eq!(topics("/events?topic=%09%C3%A9%5C"), "\\t\\u{e9}\\\\");
        let line = common(
            "127.0.0.1:1GET/events?topic=a%20b",
            11,
            14,
            Version::HTTP_11,
            clock(),
            StatusCode::BAD_REQUEST,
        );
        assert!(line.contains(" topics=a\\x20b "), "{line}");
        for pair in line.split(' ') {
            assert!(
                pair.split_once('=')
                    .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty()),
                "{pair:?} in {line}"
            );
        }
    }

    #[test]
    fn an_entry_keeps_peer_method_and_redacted_target_in_one_string() {
        let req = Request::builder()
            .method(Method::GET)
            .uri("/events?topic=a&authorization=secret")
            .body(())
            .unwrap();
        let peer: SocketAddr = "[::1]:8080".parse().unwrap();
        let entry = Entry::new(peer, &req);
        let line = common(
            &entry.text,
            entry.peer_end,
            entry.method_end,
            entry.version,
            entry.start,
            StatusCode::OK,
        );
        assert!(
            line.starts_with("peer=[::1]:8080 proto=HTTP/1.1 method=GET path=/events?topic=a&authorization="),
            "{line}"
        );
        assert!(!line.contains("secret"), "{line}");
    }

    #[test]
    fn a_stream_log_fits_in_56_bytes() {
        assert!(
            std::mem::size_of::<StreamLog>() <= 56,
            "{}",
            std::mem::size_of::<StreamLog>()
        );
    }

    #[test]
    fn end_reasons_tell_dead_from_closed() {
        assert_eq!(EndReason::of(None, false), EndReason::ClientClosed);
        assert_eq!(EndReason::of(None, true), EndReason::DeadPeer);
        assert_eq!(
            EndReason::of(Some(CloseReason::Unsubscribed), true),
            EndReason::DeadPeer
        );
        assert_eq!(EndReason::of(Some(CloseReason::Slow), true), EndReason::Slow);
    }
}
