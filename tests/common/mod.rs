//! Shared helpers for the integration tests: an in-process server on port 0
//! that shuts down when its guard drops, HTTP/1.1 and h2c clients, publish
//! helpers, a stats gauge waiter, and an independent SSE parser over a
//! response body.
//!
//! Every await that could hang is bounded by a timeout, and every test runs
//! inside [`within`], so a broken server fails a test instead of hanging it.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::time::Instant;

use ssehub::hub::Stats;
use ssehub::server::StatsHandle;
use ssehub::{Config, Server};

/// Upper bound for a whole test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound for one step (a response, an event) that should be quick.
pub const STEP: Duration = Duration::from_secs(5);

/// Runs a test body, failing it if it takes longer than [`TEST_TIMEOUT`].
pub async fn within<F: Future>(test: F) -> F::Output {
    tokio::time::timeout(TEST_TIMEOUT, test)
        .await
        .unwrap_or_else(|_| panic!("test did not finish within {TEST_TIMEOUT:?}"))
}

/// Runs a future that should finish within `limit`, naming it on failure.
pub async fn bounded<F: Future>(limit: Duration, what: &str, fut: F) -> F::Output {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// The default configuration, listening on an ephemeral loopback port.
pub fn config() -> Config {
    Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Config::default()
    }
}

/// A running server; dropping it triggers the server's shutdown.
pub struct TestServer {
    pub addr: SocketAddr,
    pub stats: StatsHandle,
    shutdown: Option<oneshot::Sender<()>>,
}

impl TestServer {
    pub fn url(&self, path_and_query: &str) -> String {
        format!("http://{}{}", self.addr, path_and_query)
    }

    pub fn stats(&self) -> Stats {
        self.stats.stats()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Binds a server with `config` (its `listen` must be port 0) and runs it
/// in the background.
pub async fn start(config: Config) -> TestServer {
    assert_eq!(config.listen.port(), 0, "tests always bind port 0");
    let server = bounded(STEP, "bind", Server::bind(config)).await.expect("bind");
    let addr = server.local_addr().expect("local_addr");
    let stats = server.stats_handle();
    let (tx, rx) = oneshot::channel::<()>();
    tokio::spawn(server.run(async move {
        let _ = rx.await;
    }));
    TestServer {
        addr,
        stats,
        shutdown: Some(tx),
    }
}

/// Starts a server with the default test configuration.
pub async fn start_default() -> TestServer {
    start(config()).await
}

/// Polls the stats every few milliseconds until `pred` holds (10 s at most).
pub async fn wait_for(stats: &StatsHandle, what: &str, pred: impl Fn(&Stats) -> bool) -> Stats {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let s = stats.stats();
        if pred(&s) {
            return s;
        }
        if Instant::now() >= deadline {
            panic!("timed out waiting for {what}; stats now: {s:?}");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Waits until exactly `n` subscribers are registered.
pub async fn wait_subscribers(stats: &StatsHandle, n: usize) -> Stats {
    wait_for(stats, &format!("{n} subscribers"), |s| s.subscribers == n).await
}

// ---------------------------------------------------------------------------
// HTTP clients
// ---------------------------------------------------------------------------

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

/// Which protocol a client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    H1,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

pub fn client(proto: Proto) -> HttpClient {
    let mut builder = Client::builder(TokioExecutor::new());
    if proto == Proto::H2c {
        builder.http2_only(true);
    }
    builder.build_http()
}

pub fn http1_client() -> HttpClient {
    client(Proto::H1)
}

pub fn h2c_client() -> HttpClient {
    client(Proto::H2c)
}

/// Sends one request and returns the response once its headers arrive.
pub async fn send(
    client: &HttpClient,
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Response<Incoming> {
    let mut builder = Request::builder()
        .method(method.clone())
        .uri(format!("http://{addr}{path_and_query}"));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let req = builder.body(Full::new(body.into())).expect("request");
    bounded(
        STEP,
        &format!("response headers of {method} {path_and_query}"),
        client.request(req),
    )
    .await
    .unwrap_or_else(|e| panic!("{method} {path_and_query} failed: {e:?}"))
}

/// A complete, non-streaming answer.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8(self.body.to_vec()).expect("response body is UTF-8")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        header_str(&self.headers, name)
    }
}

pub fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .map(|v: &HeaderValue| v.to_str().expect("header value is text"))
}

/// Sends a request and reads the whole answer.
pub async fn fetch_with(
    client: &HttpClient,
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    let resp = send(client, addr, method.clone(), path_and_query, headers, body).await;
    let (parts, body) = resp.into_parts();
    let body = bounded(
        STEP,
        &format!("body of {method} {path_and_query}"),
        body.collect(),
    )
    .await
    .expect("read body")
    .to_bytes();
    Reply {
        status: parts.status,
        headers: parts.headers,
        body,
    }
}

/// [`fetch_with`] over a fresh HTTP/1.1 client.
pub async fn fetch(
    addr: SocketAddr,
    method: Method,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    fetch_with(&http1_client(), addr, method, path_and_query, headers, body).await
}

pub async fn get(addr: SocketAddr, path_and_query: &str) -> Reply {
    fetch(addr, Method::GET, path_and_query, &[], Bytes::new()).await
}

pub async fn post(
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: impl Into<Bytes>,
) -> Reply {
    fetch(addr, Method::POST, path_and_query, headers, body).await
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn pct(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `/publish` with the given (optional) topic and event name.
pub fn publish_path(topic: Option<&str>, event: Option<&str>) -> String {
    let mut params = Vec::new();
    if let Some(t) = topic {
        params.push(format!("topic={}", pct(t)));
    }
    if let Some(e) = event {
        params.push(format!("event={}", pct(e)));
    }
    if params.is_empty() {
        "/publish".to_string()
    } else {
        format!("/publish?{}", params.join("&"))
    }
}

/// Publishes one event; returns the status and the trimmed answer body.
pub async fn publish(
    addr: SocketAddr,
    topic: Option<&str>,
    event: Option<&str>,
    body: &str,
) -> (StatusCode, String) {
    let reply = post(addr, &publish_path(topic, event), &[], body.to_string()).await;
    (reply.status, reply.text().trim_end().to_string())
}

/// Publishes one event that must be accepted; returns its id.
pub async fn publish_ok(addr: SocketAddr, topic: Option<&str>, event: Option<&str>, body: &str) -> String {
    let (status, text) = publish(addr, topic, event, body).await;
    assert_eq!(status, StatusCode::OK, "publish refused: {text}");
    text
}

/// Publishes a batch (`Content-Type: text/event-stream`).
pub async fn publish_batch(addr: SocketAddr, topic: Option<&str>, body: impl Into<Bytes>) -> Reply {
    post(
        addr,
        &publish_path(topic, None),
        &[("content-type", "text/event-stream")],
        body,
    )
    .await
}

/// A publisher that keeps one HTTP/1.1 connection, for loops.
#[derive(Clone)]
pub struct Publisher {
    client: HttpClient,
    addr: SocketAddr,
}

impl Publisher {
    pub fn new(addr: SocketAddr) -> Publisher {
        Publisher {
            client: http1_client(),
            addr,
        }
    }

    pub async fn publish(
        &self,
        topic: Option<&str>,
        event: Option<&str>,
        body: &str,
    ) -> (StatusCode, String) {
        let reply = fetch_with(
            &self.client,
            self.addr,
            Method::POST,
            &publish_path(topic, event),
            &[],
            body.to_string(),
        )
        .await;
        (reply.status, reply.text().trim_end().to_string())
    }

    pub async fn publish_ok(&self, topic: Option<&str>, event: Option<&str>, body: &str) -> String {
        let (status, text) = self.publish(topic, event, body).await;
        assert_eq!(status, StatusCode::OK, "publish refused: {text}");
        text
    }
}

/// Opens `/events{query}` (e.g. `?topic=a`) over `client`; returns the status,
/// the headers and a reader over the body.
pub async fn open_stream(
    client: &HttpClient,
    addr: SocketAddr,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, HeaderMap, SseReader) {
    let resp = send(client, addr, Method::GET, path_and_query, headers, Bytes::new()).await;
    let (parts, body) = resp.into_parts();
    (parts.status, parts.headers, SseReader::new(body))
}

/// Subscribes over HTTP/1.1 to `/events{query}`; the answer must be a stream.
pub async fn subscribe(addr: SocketAddr, query: &str) -> SseReader {
    subscribe_with(addr, query, &[]).await
}

/// [`subscribe`] with extra request headers.
pub async fn subscribe_with(addr: SocketAddr, query: &str, headers: &[(&str, &str)]) -> SseReader {
    let path = format!("/events{query}");
    let (status, h, reader) = open_stream(&http1_client(), addr, &path, headers).await;
    assert_eq!(status, StatusCode::OK, "GET {path}");
    assert_eq!(
        header_str(&h, "content-type"),
        Some("text/event-stream"),
        "GET {path}"
    );
    reader
}

// ---------------------------------------------------------------------------
// SSE parser
// ---------------------------------------------------------------------------

/// One dispatched event, as an EventSource would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The `id:` field of this event's own block, if it had one.
    pub id: Option<String>,
    /// The `event:` field, if any (a client would call it "message").
    pub event: Option<String>,
    /// The data lines joined by `\n`.
    pub data: String,
}

impl Event {
    /// The event's type as a client sees it.
    pub fn name(&self) -> &str {
        self.event.as_deref().unwrap_or("message")
    }

    pub fn id(&self) -> &str {
        self.id
            .as_deref()
            .unwrap_or_else(|| panic!("event has no id: {self:?}"))
    }

    pub fn id_u64(&self) -> u64 {
        parse_id(self.id())
    }
}

/// Parses an id as a decimal number.
pub fn parse_id(id: &str) -> u64 {
    assert!(
        !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()),
        "id is not a decimal number: {id:?}"
    );
    id.parse()
        .unwrap_or_else(|e| panic!("id {id:?} does not fit u64: {e}"))
}

/// What the stream delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Event(Event),
    /// A comment line, without its leading `:`.
    Comment(String),
    /// A valid `retry:` field.
    Retry(u64),
    /// The body ended.
    End,
}

/// A small SSE parser after the WHATWG rules: CRLF, LF and CR line ends, a
/// leading BOM, comments, `id`/`event`/`data`/`retry` fields, and dispatch
/// on a blank line (only when at least one `data` line was seen).
pub struct SseReader {
    body: Incoming,
    line: Vec<u8>,
    after_cr: bool,
    first_line: bool,
    ended: bool,
    items: VecDeque<Item>,
    block_id: Option<String>,
    block_event: Option<String>,
    block_data: Option<String>,
    /// The last `id:` seen, as a client tracks it for reconnection.
    pub last_event_id: String,
}

impl SseReader {
    pub fn new(body: Incoming) -> SseReader {
        SseReader {
            body,
            line: Vec::new(),
            after_cr: false,
            first_line: true,
            ended: false,
            items: VecDeque::new(),
            block_id: None,
            block_event: None,
            block_data: None,
            last_event_id: String::new(),
        }
    }

    fn feed(&mut self, mut chunk: &[u8]) {
        while !chunk.is_empty() {
            if self.after_cr {
                self.after_cr = false;
                if chunk[0] == b'\n' {
                    chunk = &chunk[1..];
                    continue;
                }
            }
            match chunk.iter().position(|&b| b == b'\n' || b == b'\r') {
                None => {
                    self.line.extend_from_slice(chunk);
                    return;
                }
                Some(i) => {
                    self.line.extend_from_slice(&chunk[..i]);
                    self.after_cr = chunk[i] == b'\r';
                    chunk = &chunk[i + 1..];
                    let line = std::mem::take(&mut self.line);
                    self.process_line(line);
                }
            }
        }
    }

    fn process_line(&mut self, line: Vec<u8>) {
        let mut line = String::from_utf8(line).expect("event stream is UTF-8");
        if self.first_line {
            self.first_line = false;
            if let Some(rest) = line.strip_prefix('\u{feff}') {
                line = rest.to_string();
            }
        }
        if line.is_empty() {
            let id = self.block_id.take();
            let event = self.block_event.take();
            if let Some(data) = self.block_data.take() {
                self.items.push_back(Item::Event(Event { id, event, data }));
            }
            return;
        }
        if let Some(comment) = line.strip_prefix(':') {
            self.items.push_back(Item::Comment(comment.to_string()));
            return;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line.as_str(), ""),
        };
        match field {
            "event" => self.block_event = Some(value.to_string()),
            "data" => match &mut self.block_data {
                Some(d) => {
                    d.push('\n');
                    d.push_str(value);
                }
                None => self.block_data = Some(value.to_string()),
            },
            "id" if !value.contains('\0') => {
                self.block_id = Some(value.to_string());
                self.last_event_id = value.to_string();
            }
            "retry" if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) => {
                self.items
                    .push_back(Item::Retry(value.parse().expect("retry fits u64")));
            }
            _ => {}
        }
    }

    /// The next item, or `None` if nothing arrives within `limit`.
    pub async fn next_item(&mut self, limit: Duration) -> Option<Item> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(item) = self.items.pop_front() {
                return Some(item);
            }
            if self.ended {
                return Some(Item::End);
            }
            let frame = match tokio::time::timeout_at(deadline, self.body.frame()).await {
                Err(_) => return None,
                Ok(frame) => frame,
            };
            match frame {
                None => self.ended = true,
                Some(Err(e)) => panic!("event stream failed: {e:?}"),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.feed(&data);
                    }
                }
            }
        }
    }

    /// The next event, skipping comments and `retry:`; panics on a timeout
    /// or the end of the stream.
    pub async fn next_event(&mut self, limit: Duration) -> Event {
        match self.next_event_or_end(limit).await {
            Some(e) => e,
            None => panic!("stream ended while an event was expected"),
        }
    }

    /// The next event, or `None` if the stream ends first; panics on a timeout.
    pub async fn next_event_or_end(&mut self, limit: Duration) -> Option<Event> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item(left).await {
                None => panic!("no event within {limit:?}"),
                Some(Item::Event(e)) => return Some(e),
                Some(Item::End) => return None,
                Some(Item::Comment(_) | Item::Retry(_)) => {}
            }
        }
    }

    /// The next `n` events.
    pub async fn next_events(&mut self, n: usize, limit: Duration) -> Vec<Event> {
        let deadline = Instant::now() + limit;
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            out.push(self.next_event(left).await);
        }
        out
    }

    /// The data of the next `n` events.
    pub async fn next_data(&mut self, n: usize, limit: Duration) -> Vec<String> {
        self.next_events(n, limit)
            .await
            .into_iter()
            .map(|e| e.data)
            .collect()
    }

    /// The next comment line, skipping `retry:`; panics on an event, the end
    /// of the stream or a timeout.
    pub async fn next_comment(&mut self, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item(left).await {
                None => panic!("no comment within {limit:?}"),
                Some(Item::Comment(c)) => return c,
                Some(Item::Retry(_)) => {}
                Some(other) => panic!("expected a comment, got {other:?}"),
            }
        }
    }

    /// The very first item, which must be a `retry:` field.
    pub async fn opening_retry(&mut self) -> u64 {
        match self.next_item(STEP).await {
            Some(Item::Retry(ms)) => ms,
            other => panic!("stream did not open with retry:, got {other:?}"),
        }
    }

    /// Waits for the end of the stream; panics on an event or a timeout.
    pub async fn expect_end(&mut self, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.next_item(left).await {
                None => panic!("stream did not end within {limit:?}"),
                Some(Item::End) => return,
                Some(Item::Event(e)) => panic!("expected the stream to end, got event {e:?}"),
                Some(Item::Comment(_) | Item::Retry(_)) => {}
            }
        }
    }
}
