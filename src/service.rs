//! The HTTP interface: routing, request parsing and validation, publish
//! authorisation, CORS, and the responses. One function, [`handle`], turns a
//! request into a response; it holds no state of its own beyond [`App`].
//!
//! Every refusal is a 4xx with a one-line plain-text reason and happens
//! before anything reaches the hub, so bad input changes nothing.

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode, Version};
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::access_log::{self, EndReason, PeerFate, StreamLog};
use crate::config::Config;
use crate::event::{self, BatchError};
use crate::hub::{Hub, Protocol, PublishError, Subscribe, Topics};
use crate::metrics::{self, Counters};
use crate::query::Query;
use crate::random;
use crate::stream::{EventStream, ResponseBody};

/// What every request handler shares.
pub struct App {
    pub hub: Arc<Hub>,
    pub config: Config,
    pub counters: Arc<Counters>,
}

type Resp = Response<ResponseBody>;

/// The future hyper keeps for a request. hyper reserves room for one per
/// connection, so it is kept small: every route but publish answers at once,
/// and only publish (which must read its body) boxes its state.
pub enum Handling {
    /// Boxed because hyper keeps this future inside each HTTP/2 stream's
    /// task for the stream's whole life: inline, a response would add its
    /// ~150 bytes to every open stream.
    Ready(Option<Box<Resp>>),
    Reading(Pin<Box<dyn Future<Output = Resp> + Send>>),
}

impl Future for Handling {
    type Output = Result<Resp, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.get_mut() {
            Handling::Ready(resp) => {
                Poll::Ready(Ok(resp.take().map_or_else(|| empty(StatusCode::OK), |r| *r)))
            }
            Handling::Reading(fut) => fut.as_mut().poll(cx).map(Ok),
        }
    }
}

/// The query parameters each endpoint knows; any other is refused with
/// 400, naming these (names starting with `_`, for cache busting, pass).
pub const EVENTS_PARAMS: &[&str] = &["topic", "last_event_id", "authorization"];
pub const PUBLISH_PARAMS: &[&str] = &["topic", "event"];
pub const CLOSE_PARAMS: &[&str] = &["topic"];

/// Routes one request and writes its access-log line (for a stream, the
/// stream writes it when it ends). Never fails: every error is an HTTP answer.
pub fn handle(app: &Arc<App>, peer: SocketAddr, fate: Option<&PeerFate>, req: Request<Incoming>) -> Handling {
    let Some(entry) = access_log::Entry::start(&app.config, peer, &req) else {
        return route(app, peer, req);
    };
    match route(app, peer, req) {
        Handling::Ready(Some(mut resp)) => {
            log_response(Some(entry), fate, &mut resp);
            Handling::Ready(Some(resp))
        }
        Handling::Ready(None) => Handling::Ready(None),
        Handling::Reading(fut) => Handling::Reading(Box::pin({
            let fate = fate.cloned();
            async move {
                let mut resp = fut.await;
                log_response(Some(entry), fate.as_ref(), &mut resp);
                resp
            }
        })),
    }
}

/// Logs a finished answer now, or hands the entry to the stream it starts,
/// which logs when it ends.
pub fn log_response(entry: Option<access_log::Entry>, fate: Option<&PeerFate>, resp: &mut Resp) {
    let Some(entry) = entry else { return };
    let status = resp.status();
    let end = resp.extensions().get::<EndReason>().copied();
    match resp.body_mut() {
        ResponseBody::Events(stream) => stream.set_log(StreamLog::new(entry, fate.cloned())),
        ResponseBody::Full(_) => entry.finish(status, end),
    }
}

fn route(app: &Arc<App>, peer: SocketAddr, req: Request<Incoming>) -> Handling {
    let cors = cors_origin(&app.config, req.headers());
    let allow = match req.uri().path() {
        "/events" => "GET, OPTIONS",
        "/publish" | "/close" => "POST, OPTIONS",
        "/healthz" | "/metrics" => "GET, HEAD, OPTIONS",
        _ => {
            let resp = plain(
                StatusCode::NOT_FOUND,
                "no such path; try /events, /publish, /close, /healthz or /metrics",
            );
            return Handling::Ready(Some(Box::new(with_cors(&app.config, cors, resp))));
        }
    };
    let resp = match (req.method(), req.uri().path()) {
        (&Method::OPTIONS, _) => options(allow),
        (&Method::GET, "/events") => return Handling::Ready(Some(Box::new(events_response(app, &req)))),
        (&Method::POST, "/publish") => {
            let app = app.clone();
            return Handling::Reading(Box::pin(async move {
                let resp = publish(&app, peer, req).await;
                with_cors(&app.config, cors, resp)
            }));
        }
        (&Method::POST, "/close") => close(app, peer, &req),
        (&Method::GET | &Method::HEAD, "/healthz") => plain(StatusCode::OK, "ok"),
        (&Method::GET | &Method::HEAD, "/metrics") => {
            let mut resp = Response::new(ResponseBody::text(metrics::render(
                &app.hub.stats(),
                &app.counters,
            )));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        _ => {
            let mut resp = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                &format!("method not allowed; use {allow}"),
            );
            resp.headers_mut()
                .insert(header::ALLOW, HeaderValue::from_static(allow));
            resp
        }
    };
    Handling::Ready(Some(Box::new(with_cors(&app.config, cors, resp))))
}

/// Adds the CORS answer: `Vary: Origin` whenever CORS is configured (the
/// answer depends on it), and the allow headers for an allowed origin.
fn with_cors(config: &Config, cors: Option<(HeaderValue, bool)>, mut resp: Resp) -> Resp {
    if !config.cors_origins.is_empty() {
        let h = resp.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some((origin, credentials)) = cors {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            if credentials {
                h.insert(
                    header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                    HeaderValue::from_static("true"),
                );
            }
        }
    }
    resp
}

/// `GET /events`, with its CORS answer; also called by the HTTP/1.1 fast
/// path, which is why it takes any request body type.
pub fn events_response<B>(app: &App, req: &Request<B>) -> Resp {
    // Not generic below this line: one copy of the code for both callers.
    let cors = cors_origin(&app.config, req.headers());
    with_cors(
        &app.config,
        cors,
        events(app, req.uri().query(), req.headers(), req.version()),
    )
}

/// `GET /events`: the stream.
fn events(app: &App, query: Option<&str>, headers: &HeaderMap, version: Version) -> Resp {
    let query = match Query::parse(query, EVENTS_PARAMS) {
        Ok(q) => q,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    let mut topics: Vec<Arc<str>> = Vec::new();
    for t in query.all("topic") {
        if let Err(e) = event::check_topic(t) {
            return plain(StatusCode::BAD_REQUEST, &e);
        }
        if !topics.iter().any(|have| &**have == t) {
            topics.push(Arc::from(t));
        }
    }
    let topics = if topics.is_empty() {
        Topics::All
    } else {
        Topics::Some(topics)
    };

    // The header is what EventSource sends on reconnect and is newer than
    // the query parameter a page was loaded with, so it wins. A header that
    // is not text cannot be a valid id; pass it on to be reset as malformed.
    let header_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let last_id = header_id
        .or(query.first("last_event_id"))
        .filter(|id| !id.is_empty());

    let protocol = if version >= Version::HTTP_2 {
        Protocol::Http2
    } else {
        Protocol::Http1
    };
    let config = &app.config;
    let subscription = match app.hub.subscribe(topics, last_id, protocol) {
        Subscribe::Stream(s) => s,
        Subscribe::AllClosed => return empty(StatusCode::NO_CONTENT),
        // A 5xx would make EventSource give up for good (so would any type
        // but text/event-stream): a stream that ends at once with a retry
        // makes it come back later, or to another node.
        Subscribe::ShuttingDown => {
            let mut resp = stream_response(version, ResponseBody::text(event::retry(retry_millis(config))));
            resp.extensions_mut().insert(EndReason::Shutdown);
            return resp;
        }
        Subscribe::Shed => {
            // Overloaded: a longer back-off, spread out, so the returning
            // wave is smaller than the one that overloaded us.
            let millis =
                (config.retry * SHED_BACKOFF + random::up_to(config.retry_jitter * SHED_BACKOFF)).as_millis();
            let mut resp = stream_response(version, ResponseBody::text(event::retry(millis)));
            // Shedding is meant to free the descriptor: over HTTP/1 the
            // connection closes after the answer (HTTP/2 ends the stream only).
            if version < Version::HTTP_2 {
                resp.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            resp.extensions_mut().insert(EndReason::Shed);
            return resp;
        }
    };
    let mut stream = EventStream::new(event::retry(retry_millis(config)), subscription);
    if let Some(lifetime) = config.max_stream_lifetime {
        // Jitter of up to a quarter, so streams opened together end apart.
        let lifetime = lifetime + random::up_to(lifetime / 4);
        stream = stream.with_lifetime(lifetime, event::retry(retry_millis(config)));
    }
    stream_response(version, ResponseBody::Events(Box::new(stream)))
}

/// How many times `--retry` (and `--retry-jitter`) a shed stream is told to wait.
const SHED_BACKOFF: u32 = 5;

/// Tells nginx not to buffer the stream; a constant, so no per-response allocation.
const X_ACCEL_BUFFERING: header::HeaderName = header::HeaderName::from_static("x-accel-buffering");

fn stream_response(version: Version, body: ResponseBody) -> Resp {
    let mut resp = Response::new(body);
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/event-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(X_ACCEL_BUFFERING, HeaderValue::from_static("no"));
    // Forbidden in HTTP/2 (hyper would strip it with a warning). An
    // HTTP/1.0 stream has no chunked framing: closing the connection is
    // what ends it, so it says so.
    if version == Version::HTTP_11 {
        h.insert(header::CONNECTION, HeaderValue::from_static("keep-alive"));
    } else if version < Version::HTTP_11 {
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    resp
}

/// The reconnect delay for one connection: `--retry` plus up to
/// `--retry-jitter`, so a mass disconnect does not come back as one wave.
pub fn retry_millis(config: &Config) -> u128 {
    (config.retry + random::up_to(config.retry_jitter)).as_millis()
}

/// `POST /publish`: one event, or a batch when the body is an SSE stream.
async fn publish(app: &App, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    if let Some(refusal) = refuse_publisher(&app.config, peer, req.headers()) {
        return refusal;
    }
    // Shutdown waits for publishes in flight, so an accepted body is published.
    let _in_flight = InFlight::enter(&app.counters);
    let query = match Query::parse(req.uri().query(), PUBLISH_PARAMS) {
        Ok(q) => q,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    let topic = match query.single("topic") {
        Ok(Some(t)) => match event::check_topic(t) {
            Ok(()) => Some(t.to_string()),
            Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
        },
        Ok(None) => None,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    let name = match query.single("event") {
        Ok(None) => None,
        // Names are 1 to 256 bytes; an empty one is a mistake, not "none".
        Ok(Some("")) => {
            return plain(
                StatusCode::BAD_REQUEST,
                "empty event name; leave `event` out for unnamed events",
            )
        }
        Ok(Some(n)) => match event::check_event_name(n) {
            Ok(()) => Some(n.to_string()),
            Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
        },
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    let batch = is_event_stream(req.headers());
    let limit = if batch {
        app.config.max_batch_bytes
    } else {
        app.config.max_event_bytes
    };
    let body = match read_body(req, limit).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return plain(StatusCode::BAD_REQUEST, "body is not valid UTF-8");
    };

    let result = if batch {
        let events = match event::parse_batch(text, name.as_deref(), app.config.max_event_bytes) {
            Ok(events) => events,
            Err(BatchError::Invalid(e)) => {
                return plain(StatusCode::BAD_REQUEST, &format!("malformed batch: {e}"))
            }
            Err(BatchError::TooLarge(e)) => return plain(StatusCode::PAYLOAD_TOO_LARGE, &e),
        };
        app.hub
            .publish_batch(topic.as_deref(), &events)
            .map(|ids| ids.join("\n"))
    } else {
        app.hub.publish(topic.as_deref(), name.as_deref(), text)
    };
    match result {
        Ok(ids) => plain(StatusCode::OK, &ids),
        Err(PublishError::Closed) => plain(StatusCode::GONE, "topic is closed"),
        Err(PublishError::ShuttingDown) => plain(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down"),
    }
}

/// Counts a publish request while it is handled.
struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    fn enter(counters: &'a Counters) -> Self {
        counters
            .publishes_in_flight
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        InFlight(counters)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0
            .publishes_in_flight
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}

fn is_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("text/event-stream"))
}

/// Reads the whole body, refusing it with 413 as soon as it is over `limit`.
async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Resp> {
    let too_large = || {
        plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            &format!("body is over the limit of {limit} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(too_large()),
        Err(_) => Err(plain(StatusCode::BAD_REQUEST, "could not read the request body")),
    }
}

/// `POST /close?topic=T`.
fn close(app: &App, peer: SocketAddr, req: &Request<Incoming>) -> Resp {
    if let Some(refusal) = refuse_publisher(&app.config, peer, req.headers()) {
        return refusal;
    }
    let query = match Query::parse(req.uri().query(), CLOSE_PARAMS) {
        Ok(q) => q,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    let topic = match query.single("topic") {
        Ok(Some(t)) => t,
        Ok(None) => return plain(StatusCode::BAD_REQUEST, "missing topic; use /close?topic=NAME"),
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    if let Err(e) = event::check_topic(topic) {
        return plain(StatusCode::BAD_REQUEST, &e);
    }
    if app.hub.close_topic(topic) {
        plain(StatusCode::OK, "closed")
    } else {
        plain(StatusCode::OK, "already closed")
    }
}

/// Publishing needs the bearer token when one is configured, and otherwise a
/// loopback peer that is not a reverse proxy relaying someone else. Returns
/// the refusal, if any.
fn refuse_publisher(config: &Config, peer: SocketAddr, headers: &HeaderMap) -> Option<Resp> {
    match &config.publish_token {
        Some(token) => {
            let given = headers
                .get(header::AUTHORIZATION)
                .and_then(|v| bearer_token(v.as_bytes()))
                .unwrap_or(b"");
            if constant_time_eq(given, token.as_bytes()) {
                None
            } else {
                let mut resp = plain(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                Some(resp)
            }
        }
        None => {
            let proxied = headers.contains_key(header::FORWARDED) || headers.contains_key("x-forwarded-for");
            if peer.ip().to_canonical().is_loopback() && !proxied {
                None
            } else {
                Some(plain(
                    StatusCode::FORBIDDEN,
                    "publishing without a token is allowed only from loopback, not through a proxy",
                ))
            }
        }
    }
}

/// The token of an `Authorization: Bearer TOKEN` value. The scheme is
/// case-insensitive (RFC 9110 §11.1), so `bearer` and `BEARER` count too.
pub fn bearer_token(value: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = value.split_at_checked(7)?;
    if !scheme.eq_ignore_ascii_case(b"bearer ") {
        return None;
    }
    Some(rest.trim_ascii_start())
}

/// Compares in time that does not depend on where the inputs differ, so
/// the token cannot be guessed byte by byte from response times (only its
/// length can, which is no help).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The CORS answer for this request's `Origin`, if it is allowed: the value
/// of `Access-Control-Allow-Origin` and whether credentials are allowed.
fn cors_origin(config: &Config, headers: &HeaderMap) -> Option<(HeaderValue, bool)> {
    let origin = headers.get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    if config.cors_origins.iter().any(|o| o == text) {
        return Some((origin.clone(), true));
    }
    if config.cors_origins.iter().any(|o| o == "*") {
        // A wildcard cannot carry credentials (browsers refuse it).
        return Some((HeaderValue::from_static("*"), false));
    }
    None
}

/// `OPTIONS`: the allowed methods, and a CORS preflight answer (the origin
/// headers are added by [`handle`] when the origin is allowed).
fn options(allow: &'static str) -> Resp {
    let mut resp = empty(StatusCode::NO_CONTENT);
    let h = resp.headers_mut();
    h.insert(header::ALLOW, HeaderValue::from_static(allow));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static(allow),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, Last-Event-ID"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    resp
}

fn plain(status: StatusCode, reason: &str) -> Resp {
    let mut resp = Response::new(ResponseBody::text(format!("{reason}\n")));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

fn empty(status: StatusCode) -> Resp {
    let mut resp = Response::new(ResponseBody::empty());
    *resp.status_mut() = status;
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_scheme_is_case_insensitive() {
        assert_eq!(bearer_token(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"BEARER  abc"), Some(&b"abc"[..]));
        assert_eq!(bearer_token(b"Basic abc"), None);
        assert_eq!(bearer_token(b"Bear"), None);
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret2", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }
}
