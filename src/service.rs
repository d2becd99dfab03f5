//! The HTTP interface: routing, request parsing and validation, publish
//! authorisation, CORS, and the responses. One function, [`handle`], turns a
//! request into a response; it holds no state of its own beyond [`App`].
//!
//! Every refusal is a 4xx with a one-line plain-text reason and happens
//! before anything reaches the hub, so bad input changes nothing.

use bytes::Bytes;
use http_body_util::BodyExt;
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
use crate::auth::{self, selector, Auth, Reason, Role, Selector, Source};
use crate::config::Config;
use crate::event::{self, BatchError};
use crate::hub::{Hub, PrivateAccess, Protocol, PublishError, Subscribe, Topics};
use crate::metrics::{self, Counters};
use crate::query::Query;
use crate::random;
use crate::stream::{EventStream, ResponseBody};

/// What every request handler shares.
pub struct App {
    pub hub: Arc<Hub>,
    pub config: Config,
    pub counters: Arc<Counters>,
    /// The shared log of several nodes (`--redis`): publishes and closes
    /// go through it, and its reader feeds the hub.
    #[cfg(feature = "redis")]
    pub shared: Option<Arc<crate::redis_log::RedisLog>>,
    /// JWT keys (swapped on SIGHUP) and the subscriber model.
    pub auth: Auth,
}

pub(crate) type Resp = Response<ResponseBody>;
/// A refusal, boxed: the happy path's `Result` stays small.
pub(crate) type Refusal = Box<Resp>;

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
pub const PUBLISH_PARAMS: &[&str] = &["topic", "event", "private", "authorization"];
pub const CLOSE_PARAMS: &[&str] = &["topic", "authorization"];

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
        "/healthz" | "/readyz" | "/metrics" | "/ssehub.js" => "GET, HEAD, OPTIONS",
        "/" | "/stats" if app.config.ui_enabled() => "GET, HEAD, OPTIONS",
        crate::mercure::PATH => "GET, POST, OPTIONS",
        _ => {
            let resp = plain(
                StatusCode::NOT_FOUND,
                "no such path; try /events, /publish, /close, /healthz, /readyz or /metrics",
            );
            return Handling::Ready(Some(Box::new(with_cors(&app.config, cors, resp))));
        }
    };
    let resp = match (req.method(), req.uri().path()) {
        (&Method::OPTIONS, _) => options(allow),
        (&Method::GET, "/events") => return Handling::Ready(Some(Box::new(events_response(app, &req)))),
        // Mercure's protocol, mapped onto the same hub (src/mercure.rs).
        (&Method::GET, crate::mercure::PATH) => crate::mercure::subscribe(app, &req),
        (&Method::POST, crate::mercure::PATH) => {
            let app = app.clone();
            return Handling::Reading(Box::pin(async move {
                let resp = crate::mercure::publish(&app, peer, req).await;
                with_cors(&app.config, cors, resp)
            }));
        }
        (&Method::POST, "/publish") => {
            let app = app.clone();
            return Handling::Reading(Box::pin(async move {
                let resp = publish(&app, peer, req).await;
                with_cors(&app.config, cors, resp)
            }));
        }
        #[cfg(feature = "redis")]
        (&Method::POST, "/close") if app.shared.is_some() => {
            let app = app.clone();
            return Handling::Reading(Box::pin(async move {
                let resp = close_shared(&app, peer, &req).await;
                with_cors(&app.config, cors, resp)
            }));
        }
        (&Method::POST, "/close") => close(app, peer, &req),
        (&Method::GET | &Method::HEAD, "/readyz") => readyz(app),
        (&Method::GET | &Method::HEAD, "/healthz") => plain(StatusCode::OK, "ok"),
        // The browser side (src/console.rs); `/` and `/stats` only where
        // `--ui` allows, which the path match above has checked.
        (&Method::GET | &Method::HEAD, "/") => crate::console::page(),
        (&Method::GET | &Method::HEAD, "/stats") => crate::console::stats(app),
        (&Method::GET | &Method::HEAD, "/ssehub.js") => crate::console::client(req.headers()),
        (&Method::GET | &Method::HEAD, "/metrics") => {
            #[allow(unused_mut)]
            let mut text = metrics::render(&app.hub.stats(), &app.counters);
            #[cfg(feature = "redis")]
            if let Some(shared) = &app.shared {
                shared.render_metrics(&mut text);
            }
            let mut resp = Response::new(ResponseBody::text(text));
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
pub(crate) fn with_cors(config: &Config, cors: Option<(HeaderValue, bool)>, mut resp: Resp) -> Resp {
    if !config.cors_origins.is_empty() {
        let h = resp.headers_mut();
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if let Some((origin, credentials)) = cors {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            // What a fetch-based client reads from a stream's answer: the
            // heartbeat it times stalls by, Mercure's resume point.
            h.insert(
                header::ACCESS_CONTROL_EXPOSE_HEADERS,
                HeaderValue::from_static("ssehub-heartbeat, last-event-id"),
            );
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
    let (private, expiry) = match authorize_subscriber(app, &query, headers, &topics) {
        Ok(granted) => granted,
        Err(refusal) => return *refusal,
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

    let subscribed = app
        .hub
        .subscribe_as(topics, last_id, protocol_of(version), private);
    stream_of(app, version, subscribed, expiry)
}

/// The hub's name for an HTTP version.
pub(crate) fn protocol_of(version: Version) -> Protocol {
    if version >= Version::HTTP_2 {
        Protocol::Http2
    } else {
        Protocol::Http1
    }
}

/// The answer to a subscribe, whichever protocol asked: the stream with
/// its `retry:`, lifetime and token expiry, or the short answers (204,
/// shed, shutting down, not ready).
pub(crate) fn stream_of(app: &App, version: Version, subscribed: Subscribe, expiry: Option<f64>) -> Resp {
    let config = &app.config;
    let subscription = match subscribed {
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
        // No position in the shared log yet: come back shortly.
        Subscribe::NotReady => {
            return stream_response(version, ResponseBody::text(event::retry(retry_millis(config))));
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
    // Jitter of up to a quarter, so streams opened together end apart.
    let lifetime = config
        .max_stream_lifetime
        .map(|lifetime| lifetime + random::up_to(lifetime / 4));
    let farewell = event::retry(retry_millis(config));
    // A stream lasts no longer than its token: the client reconnects with
    // whatever credential it holds by then.
    stream = match (expiry, lifetime) {
        (Some(exp), _) => stream.with_expiry(auth::until_expiry(exp), lifetime, farewell),
        (None, Some(lifetime)) => stream.with_lifetime(lifetime, farewell),
        (None, None) => stream,
    };
    let mut resp = stream_response(version, ResponseBody::Events(Box::new(stream)));
    // The heartbeat, announced so a client that sees comments (ssehub.js)
    // can tell a stalled connection from a quiet one.
    resp.headers_mut().insert(
        SSEHUB_HEARTBEAT,
        HeaderValue::from(config.heartbeat.as_millis() as u64),
    );
    resp
}

/// The stream's heartbeat interval in milliseconds.
const SSEHUB_HEARTBEAT: header::HeaderName = header::HeaderName::from_static("ssehub-heartbeat");

/// Decides whether this subscriber may open its stream and which private
/// events it may read; returns those and the token's expiry, or the refusal.
fn authorize_subscriber(
    app: &App,
    query: &Query,
    headers: &HeaderMap,
    topics: &Topics,
) -> Result<(PrivateAccess, Option<f64>), Refusal> {
    let auth = &app.auth;
    // Without a subscriber key every event is public and a token means nothing.
    if !auth.has_key(Role::Subscriber) {
        return Ok((None, None));
    }
    let anonymous = auth.config().anonymous;
    let Some((token, _)) =
        auth::find_token(headers, query.first("authorization"), auth.config().cookie_name())
    else {
        if anonymous {
            return Ok((None, None));
        }
        return Err(Box::new(refuse(
            app,
            Role::Subscriber,
            Reason::Missing,
            "a token is needed to subscribe (Authorization: Bearer, the authorization parameter, or the cookie)",
        )));
    };
    // A token that is there but wrong is refused even with --anonymous: the
    // client means to be someone, and silently demoting it hides the mistake.
    let claims = match auth.verify_stream(token) {
        Ok(Some(claims)) => claims,
        Ok(None) => return Ok((None, None)),
        Err(invalid) => {
            return Err(Box::new(refuse(
                app,
                Role::Subscriber,
                Reason::of(invalid),
                &invalid.text(),
            )))
        }
    };
    let selectors: Arc<[Selector]> = claims.subscribe.into();
    if !anonymous {
        match topics {
            Topics::All if !selector::any_matches(&selectors, None) => {
                return Err(Box::new(refuse(
                    app,
                    Role::Subscriber,
                    Reason::Forbidden,
                    "subscribing to every topic needs the selector *",
                )));
            }
            Topics::Some(list) => {
                if let Some(t) = list.iter().find(|t| !selector::any_matches(&selectors, Some(t))) {
                    return Err(Box::new(refuse(
                        app,
                        Role::Subscriber,
                        Reason::Forbidden,
                        &format!("the token does not allow subscribing to '{t}'"),
                    )));
                }
            }
            Topics::All => {}
        }
    }
    let access: PrivateAccess = Some(Arc::new(move |t| selector::any_matches(&selectors, t)));
    Ok((access, claims.exp))
}

/// A counted refusal: 401 (with `WWW-Authenticate`) for a missing or
/// invalid credential, 403 for one that does not grant what was asked.
pub(crate) fn refuse(app: &App, role: Role, reason: Reason, text: &str) -> Resp {
    app.counters.auth_refused.count(role, reason);
    if matches!(reason, Reason::Forbidden | Reason::Origin) {
        return plain(StatusCode::FORBIDDEN, text);
    }
    let mut resp = plain(StatusCode::UNAUTHORIZED, text);
    // The reasons are fixed texts and validated topics: no quote or
    // control character can break out of the quoted string.
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{text}\"");
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    resp
}

/// How many times `--retry` (and `--retry-jitter`) a shed stream is told to wait.
const SHED_BACKOFF: u32 = 5;

/// Tells nginx not to buffer the stream; a constant, so no per-response allocation.
const X_ACCEL_BUFFERING: header::HeaderName = header::HeaderName::from_static("x-accel-buffering");

pub(crate) fn stream_response(version: Version, body: ResponseBody) -> Resp {
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
    // Shutdown waits for publishes in flight, so an accepted body is published.
    let _in_flight = InFlight::enter(&app.counters);
    let query = match Query::parse(req.uri().query(), PUBLISH_PARAMS) {
        Ok(q) => q,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    let publisher = match authorize_publisher(app, peer, req.headers(), &query) {
        Ok(p) => p,
        Err(refusal) => return *refusal,
    };
    let topic = match query.single("topic") {
        Ok(Some(t)) => match event::check_topic(t) {
            Ok(()) => Some(t.to_string()),
            Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
        },
        Ok(None) => None,
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    if let Err(refusal) = publisher.may_publish(app, topic.as_deref()) {
        return *refusal;
    }
    let private = match query.single("private") {
        Ok(None | Some("0")) => false,
        Ok(Some("1")) => true,
        Ok(Some(_)) => return plain(StatusCode::BAD_REQUEST, "private must be 1 or 0"),
        Err(e) => return plain(StatusCode::BAD_REQUEST, &e),
    };
    if private && !app.auth.has_key(Role::Subscriber) {
        return plain(
            StatusCode::BAD_REQUEST,
            "private events need a subscriber key (--jwt-key or --subscriber-jwt-key); without one every event is public",
        );
    }
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

    let events = if batch {
        match event::parse_batch(text, name.as_deref(), app.config.max_event_bytes) {
            Ok(events) => Some(events),
            Err(BatchError::Invalid(e)) => {
                return plain(StatusCode::BAD_REQUEST, &format!("malformed batch: {e}"))
            }
            Err(BatchError::TooLarge(e)) => return plain(StatusCode::PAYLOAD_TOO_LARGE, &e),
        }
    } else {
        None
    };
    #[cfg(feature = "redis")]
    if let Some(shared) = &app.shared {
        let events = events.unwrap_or_else(|| {
            vec![event::BatchEvent {
                name: name.clone(),
                data: text.to_string(),
            }]
        });
        return publish_shared(app, shared, topic.as_deref(), &events, private).await;
    }
    let result = match events {
        Some(events) => app
            .hub
            .publish_batch_as(topic.as_deref(), &events, private)
            .map(|ids| ids.join("\n")),
        None => app
            .hub
            .publish_as(topic.as_deref(), name.as_deref(), text, private),
    };
    match result {
        Ok(ids) => plain_owned(StatusCode::OK, ids),
        Err(e) => publish_refused(e),
    }
}

pub(crate) fn publish_refused(e: PublishError) -> Resp {
    match e {
        PublishError::Closed => plain(StatusCode::GONE, "topic is closed"),
        PublishError::ShuttingDown => plain(StatusCode::SERVICE_UNAVAILABLE, "server is shutting down"),
        PublishError::DuplicateId => plain(
            StatusCode::CONFLICT,
            "the id names an event still in the history; ids must be unique",
        ),
        PublishError::Unsupported => plain(
            StatusCode::BAD_REQUEST,
            "this hub's log cannot take a publisher's id, several topics or a retry (not with --redis yet)",
        ),
    }
}

/// Publishes through the shared log: `200` only once Redis has the events;
/// this node's subscribers get them from the log's reader, like every
/// other node's.
#[cfg(feature = "redis")]
pub(crate) async fn publish_shared(
    app: &App,
    shared: &crate::redis_log::RedisLog,
    topic: Option<&str>,
    events: &[event::BatchEvent],
    private: bool,
) -> Resp {
    use crate::redis_log::SharedError;
    if let Err(e) = app.hub.check_publish(topic) {
        return publish_refused(e);
    }
    match shared.publish(topic, events, private).await {
        Ok(ids) => plain_owned(StatusCode::OK, ids.join("\n")),
        Err(SharedError::Closed) => plain(StatusCode::GONE, "topic is closed"),
        Err(SharedError::Unavailable(reason)) => unavailable(&reason),
    }
}

/// `503` with a `Retry-After`, for a shared log that cannot be reached.
#[cfg(feature = "redis")]
fn unavailable(reason: &str) -> Resp {
    let mut resp = plain(StatusCode::SERVICE_UNAVAILABLE, reason);
    resp.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    resp
}

/// `GET /readyz`: whether this node can take publishes (and resume
/// clients): always, with the log in memory; with `--redis`, while the
/// shared log is being read. `/healthz` only says the process is alive.
fn readyz(app: &App) -> Resp {
    #[cfg(feature = "redis")]
    if app.shared.as_ref().is_some_and(|s| !s.is_up()) {
        return unavailable("not ready: the shared log (Redis) is not reachable");
    }
    let _ = app;
    plain(StatusCode::OK, "ready")
}

/// Counts a publish request while it is handled.
pub(crate) struct InFlight<'a>(&'a Counters);

impl<'a> InFlight<'a> {
    pub(crate) fn enter(counters: &'a Counters) -> Self {
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
pub(crate) async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Resp> {
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
    // Most publishes arrive as one frame: it is kept as it is (no copy, no
    // collector); only a body in several frames is joined.
    let mut body = req.into_body();
    let mut first: Option<Bytes> = None;
    let mut joined = bytes::BytesMut::new();
    let mut len = 0usize;
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else {
            return Err(plain(StatusCode::BAD_REQUEST, "could not read the request body"));
        };
        // Trailers carry nothing a publish uses.
        let Ok(data) = frame.into_data() else { continue };
        len += data.len();
        if len > limit {
            return Err(too_large());
        }
        match first.take() {
            None if joined.is_empty() => first = Some(data),
            Some(earlier) => {
                joined.extend_from_slice(&earlier);
                joined.extend_from_slice(&data);
            }
            None => joined.extend_from_slice(&data),
        }
    }
    Ok(first.unwrap_or_else(|| joined.freeze()))
}

/// The topic of a `/close` request, or its refusal.
fn close_topic_of(app: &App, peer: SocketAddr, req: &Request<Incoming>) -> Result<String, Box<Resp>> {
    let bad = |e: &str| Box::new(plain(StatusCode::BAD_REQUEST, e));
    let query = Query::parse(req.uri().query(), CLOSE_PARAMS).map_err(|e| bad(&e))?;
    let publisher = authorize_publisher(app, peer, req.headers(), &query)?;
    let topic = match query.single("topic") {
        Ok(Some(t)) => t,
        Ok(None) => return Err(bad("missing topic; use /close?topic=NAME")),
        Err(e) => return Err(bad(&e)),
    };
    event::check_topic(topic).map_err(|e| bad(&e))?;
    publisher.may_publish(app, Some(topic))?;
    Ok(topic.to_string())
}

/// `POST /close?topic=T` through the shared log: every node's subscribers
/// get `close` when the readers reach it.
#[cfg(feature = "redis")]
async fn close_shared(app: &App, peer: SocketAddr, req: &Request<Incoming>) -> Resp {
    use crate::redis_log::SharedError;
    let topic = match close_topic_of(app, peer, req) {
        Ok(t) => t,
        Err(resp) => return *resp,
    };
    let Some(shared) = &app.shared else {
        return plain(StatusCode::INTERNAL_SERVER_ERROR, "no shared log");
    };
    match shared.close(&topic).await {
        Ok(true) => plain(StatusCode::OK, "closed"),
        Ok(false) | Err(SharedError::Closed) => plain(StatusCode::OK, "already closed"),
        Err(SharedError::Unavailable(reason)) => unavailable(&reason),
    }
}

/// `POST /close?topic=T`.
fn close(app: &App, peer: SocketAddr, req: &Request<Incoming>) -> Resp {
    let topic = match close_topic_of(app, peer, req) {
        Ok(t) => t,
        Err(resp) => return *resp,
    };
    if app.hub.close_topic(&topic) {
        plain(StatusCode::OK, "closed")
    } else {
        plain(StatusCode::OK, "already closed")
    }
}

/// Who is publishing, as far as their credential says.
pub(crate) enum Publisher {
    /// The static token, or a loopback peer when nothing is configured.
    Anyone,
    /// A JWT: the topics its `publish` selectors match.
    Token(Vec<Selector>),
}

impl Publisher {
    /// Whether this publisher may publish to (or close) `topic`.
    pub(crate) fn may_publish(&self, app: &App, topic: Option<&str>) -> Result<(), Refusal> {
        match self {
            Publisher::Anyone => Ok(()),
            Publisher::Token(selectors) if selector::any_matches(selectors, topic) => Ok(()),
            Publisher::Token(_) => Err(Box::new(refuse(
                app,
                Role::Publisher,
                Reason::Forbidden,
                &match topic {
                    Some(t) => format!("the token does not allow publishing to '{t}'"),
                    None => "publishing without a topic needs the selector *".to_string(),
                },
            ))),
        }
    }
}

/// Publishing needs the static bearer token or a valid publisher JWT when
/// either is configured, and otherwise a loopback peer that is not a
/// reverse proxy relaying someone else. Returns the publisher or the refusal.
pub(crate) fn authorize_publisher(
    app: &App,
    peer: SocketAddr,
    headers: &HeaderMap,
    query: &Query,
) -> Result<Publisher, Refusal> {
    let config = &app.config;
    let auth = &app.auth;
    let has_key = auth.has_key(Role::Publisher);
    let header_token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(auth::bearer);
    if let Some(token) = &config.publish_token {
        if header_token.is_some_and(|given| auth::constant_time_eq(given.as_bytes(), token.as_bytes())) {
            return Ok(Publisher::Anyone);
        }
        if !has_key {
            let (reason, text) = if header_token.is_some() {
                (Reason::Invalid, "wrong bearer token")
            } else {
                (Reason::Missing, "missing bearer token (Authorization: Bearer)")
            };
            // Counted, with the same challenge as a JWT refusal.
            return Err(Box::new(refuse(app, Role::Publisher, reason, text)));
        }
    }
    if !has_key {
        let proxied = headers.contains_key(header::FORWARDED) || headers.contains_key("x-forwarded-for");
        if peer.ip().to_canonical().is_loopback() && !proxied {
            return Ok(Publisher::Anyone);
        }
        return Err(Box::new(plain(
            StatusCode::FORBIDDEN,
            "publishing without a token is allowed only from loopback, not through a proxy",
        )));
    }
    let Some((token, source)) =
        auth::find_token(headers, query.first("authorization"), auth.config().cookie_name())
    else {
        return Err(Box::new(refuse(
            app,
            Role::Publisher,
            Reason::Missing,
            "a publisher token is needed",
        )));
    };
    let claims = match auth.verify(Role::Publisher, token) {
        Ok(Some(claims)) => claims,
        Ok(None) => {
            return Err(Box::new(refuse(
                app,
                Role::Publisher,
                Reason::Missing,
                "a publisher token is needed",
            )))
        }
        Err(invalid) => {
            return Err(Box::new(refuse(
                app,
                Role::Publisher,
                Reason::of(invalid),
                &invalid.text(),
            )))
        }
    };
    // A browser sends cookies with any page's request (CSRF): a publish on
    // a cookie's authority must come from a page of a listed origin. A
    // wildcard does not count, since it would list every page.
    if source == Source::Cookie {
        let listed = headers
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok())
            .is_some_and(|o| {
                config
                    .cors_origins
                    .iter()
                    .any(|allowed| allowed != "*" && allowed == o)
            });
        if !listed {
            return Err(Box::new(refuse(
                app,
                Role::Publisher,
                Reason::Origin,
                "a publish authorised by a cookie needs an Origin listed in --cors-origin",
            )));
        }
    }
    Ok(Publisher::Token(claims.publish))
}

/// The CORS answer for this request's `Origin`, if it is allowed: the value
/// of `Access-Control-Allow-Origin` and whether credentials are allowed.
pub(crate) fn cors_origin(config: &Config, headers: &HeaderMap) -> Option<(HeaderValue, bool)> {
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
        // Cache-Control as well, as Mercure allows it: EventSource
        // polyfills send it, which makes their requests preflighted.
        HeaderValue::from_static("Authorization, Cache-Control, Content-Type, Last-Event-ID"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    resp
}

pub(crate) fn plain(status: StatusCode, reason: &str) -> Resp {
    plain_owned(status, reason.to_string())
}

/// [`plain`] for text the caller owns (a publish's ids): the line break is
/// pushed onto it, so the answer costs no second allocation.
fn plain_owned(status: StatusCode, mut text: String) -> Resp {
    text.push('\n');
    let mut resp = Response::new(ResponseBody::text(text));
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
        assert_eq!(auth::bearer("Bearer abc"), Some("abc"));
        assert_eq!(auth::bearer("bearer abc"), Some("abc"));
        assert_eq!(auth::bearer("BEARER abc"), Some("abc"));
        assert_eq!(auth::bearer("Basic abc"), None);
        assert_eq!(auth::bearer("Bear"), None);
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(auth::constant_time_eq(b"secret", b"secret"));
        assert!(!auth::constant_time_eq(b"secreT", b"secret"));
        assert!(!auth::constant_time_eq(b"secret2", b"secret"));
        assert!(!auth::constant_time_eq(b"", b"secret"));
    }
}
