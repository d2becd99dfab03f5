//! The access log: one `info` line, target `ssehub::access`, per finished
//! request that is not a stream, and one per stream when it ends.
//!
//! A line is `key=value` pairs: peer, protocol, method, path (with the
//! query, its `authorization` value redacted), status, topics, duration in
//! milliseconds, and for streams the events and bytes sent and why it ended
//! ([`EndReason`]). Values never contain spaces (a request target cannot,
//! topics cannot), so the text form is easy to split; `--log-format json`
//! turns the same pairs into JSON members (see [`crate::logging`]).
//!
//! What it costs: an [`Entry`] is made per request (one clock read and the
//! path copied); a stream carries it boxed and counts what it sends in
//! plain integers in its own body, so an event costs two additions, no
//! atomic and no lock. The line is written once, at the end. Tokens never
//! reach it: the `Authorization` header is not logged, and an
//! `authorization` query parameter is redacted.

use hyper::{Method, Request, StatusCode, Version};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
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
#[derive(Debug)]
pub struct Entry {
    peer: SocketAddr,
    version: Version,
    method: Method,
    /// Path and redacted query, as sent.
    target: Box<str>,
    start: Instant,
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
        let uri = req.uri();
        let target = match uri.query() {
            Some(q) => format!("{}?{}", uri.path(), query::redacted(q)),
            None => uri.path().to_string(),
        };
        Some(Entry {
            peer,
            version: req.version(),
            method: req.method().clone(),
            target: target.into_boxed_str(),
            start: Instant::now(),
        })
    }

    /// Logs a finished request; `end` is set for a stream answered and
    /// ended at once (shed, or refused at shutdown).
    pub fn finish(self, status: StatusCode, end: Option<EndReason>) {
        let mut line = self.common(status);
        if let Some(end) = end {
            let _ = write!(line, " events=0 end={}", end.as_str());
        }
        log::info!(target: TARGET, "{line}");
    }

    fn common(&self, status: StatusCode) -> String {
        let mut line = String::with_capacity(160);
        let _ = write!(
            line,
            "peer={} proto={} method={} path={} status={} topics={} duration_ms={}",
            self.peer,
            protocol(self.version),
            self.method,
            self.target,
            status.as_u16(),
            topics(&self.target),
            self.start.elapsed().as_millis(),
        );
        line
    }
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

/// A stream's entry and what it has sent so far.
#[derive(Debug)]
pub struct StreamLog {
    entry: Entry,
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
        StreamLog {
            entry,
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
        let mut line = self.entry.common(StatusCode::OK);
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
        .map(|t| t.escape_default().to_string())
        .collect();
    if list.is_empty() {
        none.into()
    } else {
        list.join(",")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topics_are_decoded_and_listed() {
        assert_eq!(topics("/events"), "*");
        assert_eq!(topics("/events?_=1"), "*");
        assert_eq!(topics("/healthz"), "-");
        assert_eq!(topics("/events?topic=a&topic=b%2Fc&_=1"), "a,b/c");
        assert_eq!(topics("/publish?event=x"), "-");
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
