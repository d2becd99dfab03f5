//! Helpers of the lifecycle and shutdown tests (on top of `common`): raw TCP
//! clients that misbehave on purpose, a proxy that can blackhole a
//! connection, a `/metrics` parser, a publisher that reports failures
//! instead of panicking, and the real binary run as a child process.

#![allow(dead_code)]

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::common::{self, bounded, HttpClient, STEP};

// ---------------------------------------------------------------------------
// Raw TCP
// ---------------------------------------------------------------------------

/// Connects to `addr`, setting `SO_RCVBUF` first when `recv_buffer` is given
/// (so the window the kernel advertises starts, and stays, small).
pub async fn connect_raw(addr: SocketAddr, recv_buffer: Option<u32>) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    if let Some(size) = recv_buffer {
        socket.set_recv_buffer_size(size).expect("SO_RCVBUF");
    }
    bounded(STEP, "TCP connect", socket.connect(addr))
        .await
        .expect("connect")
}

/// Reads up to and including the blank line that ends a response head, one
/// byte at a time so nothing after it is consumed. Returns the head.
pub async fn read_head(stream: &mut TcpStream) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    bounded(STEP, "response head", async {
        while !head.ends_with(b"\r\n\r\n") {
            let n = stream.read(&mut byte).await.expect("read response head");
            assert!(
                n > 0,
                "connection closed inside the response head: {:?}",
                String::from_utf8_lossy(&head)
            );
            head.push(byte[0]);
        }
    })
    .await;
    String::from_utf8(head).expect("response head is text")
}

/// How a connection the test was reading from ended.
#[derive(Debug)]
pub struct Closed {
    /// Everything read before the end.
    pub bytes: Vec<u8>,
    /// `None` for an orderly end (FIN), the error otherwise (e.g. a reset).
    pub error: Option<std::io::Error>,
}

impl Closed {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

/// Reads until the peer closes the connection (FIN or error); panics if it
/// is still open after `limit`.
pub async fn read_until_closed(stream: &mut TcpStream, limit: Duration, what: &str) -> Closed {
    let mut bytes = Vec::new();
    let mut buf = [0u8; 4096];
    bounded(limit, what, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Closed { bytes, error: None },
                Ok(n) => bytes.extend_from_slice(&buf[..n]),
                Err(e) => {
                    return Closed {
                        bytes,
                        error: Some(e),
                    }
                }
            }
        }
    })
    .await
}

/// One of this process's own TCP sockets (the in-process server's side of
/// a connection), watched through its descriptor: how much it has queued
/// for sending tells when its writes start to block.
pub struct ServerSideSocket {
    fd: i32,
    local: SocketAddr,
    peer: SocketAddr,
}

impl ServerSideSocket {
    /// Finds the socket of this process bound to `local` and connected to
    /// `peer` (Linux: through /proc/self/fd).
    pub fn find(local: SocketAddr, peer: SocketAddr) -> Option<ServerSideSocket> {
        for entry in std::fs::read_dir("/proc/self/fd").ok()? {
            let Ok(fd) = entry.ok()?.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let candidate = ServerSideSocket { fd, local, peer };
            if candidate.is_still_it() {
                return Some(candidate);
            }
        }
        None
    }

    /// True while the descriptor still is that connection (it may have been
    /// closed and its number reused).
    pub fn is_still_it(&self) -> bool {
        sock_addr(self.fd, libc::getsockname) == Some(self.local)
            && sock_addr(self.fd, libc::getpeername) == Some(self.peer)
    }

    /// Bytes written but not yet acknowledged (SIOCOUTQ), or `None` once
    /// the connection is gone.
    pub fn unacked(&self) -> Option<u64> {
        let mut n: libc::c_int = 0;
        // SAFETY: ioctl(SIOCOUTQ) on a descriptor of this process, writing
        // one c_int; a descriptor that is not a TCP socket just fails.
        let rc = unsafe { libc::ioctl(self.fd, libc::TIOCOUTQ, &mut n) };
        (rc == 0 && self.is_still_it()).then_some(n as u64)
    }
}

type SockNameFn = unsafe extern "C" fn(libc::c_int, *mut libc::sockaddr, *mut libc::socklen_t) -> libc::c_int;

fn sock_addr(fd: i32, get: SockNameFn) -> Option<SocketAddr> {
    // SAFETY: an all-zero sockaddr_in is valid; the call writes at most
    // `len` bytes into it and sets `len`.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let rc = unsafe {
        get(
            fd,
            &mut addr as *mut libc::sockaddr_in as *mut libc::sockaddr,
            &mut len,
        )
    };
    if rc != 0 || addr.sin_family != libc::AF_INET as libc::sa_family_t {
        return None;
    }
    let ip = std::net::Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr));
    Some(SocketAddr::from((ip, u16::from_be(addr.sin_port))))
}

// ---------------------------------------------------------------------------
// A proxy that can blackhole its connections
// ---------------------------------------------------------------------------

/// A TCP proxy in front of a server. Until [`blackhole`](Self::blackhole) it
/// copies bytes both ways; after, it copies nothing and reads nothing, yet
/// keeps every socket open (no FIN, no reset): to the server, the peer's
/// kernel still acknowledges what fits its buffers, but the application on
/// the other end has gone silent.
pub struct BlackholeProxy {
    pub addr: SocketAddr,
    hole: watch::Sender<bool>,
    /// Sockets parked after the blackhole, closed when the proxy drops.
    parked: Arc<Mutex<Vec<Parked>>>,
    accept: tokio::task::JoinHandle<()>,
}

enum Parked {
    Read(OwnedReadHalf),
    Write(OwnedWriteHalf),
}

impl BlackholeProxy {
    /// Proxies to `server`; the proxy's socket towards the server gets a
    /// receive buffer of `server_side_recv_buffer` bytes.
    pub async fn start(server: SocketAddr, server_side_recv_buffer: u32) -> BlackholeProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy bind");
        let addr = listener.local_addr().expect("proxy addr");
        let (hole, _) = watch::channel(false);
        let parked = Arc::new(Mutex::new(Vec::new()));
        let accept = {
            let hole = hole.clone();
            let parked = parked.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((client, _)) = listener.accept().await else {
                        return;
                    };
                    let upstream = connect_raw(server, Some(server_side_recv_buffer)).await;
                    let (cr, cw) = client.into_split();
                    let (sr, sw) = upstream.into_split();
                    tokio::spawn(pump(cr, sw, hole.subscribe(), parked.clone()));
                    tokio::spawn(pump(sr, cw, hole.subscribe(), parked.clone()));
                }
            })
        };
        BlackholeProxy {
            addr,
            hole,
            parked,
            accept,
        }
    }

    /// Stops copying and reading in both directions, keeping the sockets open.
    pub fn blackhole(&self) {
        self.hole.send_replace(true);
    }
}

impl Drop for BlackholeProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.hole.send_replace(true);
        self.parked.lock().unwrap().clear();
    }
}

/// Completes once the blackhole is open (or the proxy is gone).
async fn opened(hole: &mut watch::Receiver<bool>) {
    let _ = hole.wait_for(|h| *h).await;
}

/// Copies `from` to `to` until the blackhole opens (then parks both halves)
/// or `from` ends (then passes the FIN on).
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut hole: watch::Receiver<bool>,
    parked: Arc<Mutex<Vec<Parked>>>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let n = tokio::select! {
            biased;
            () = opened(&mut hole) => break,
            read = from.read(&mut buf) => match read {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => n,
            },
        };
        tokio::select! {
            biased;
            () = opened(&mut hole) => break,
            written = to.write_all(&buf[..n]) => if written.is_err() {
                return;
            },
        }
    }
    let mut parked = parked.lock().unwrap();
    parked.push(Parked::Read(from));
    parked.push(Parked::Write(to));
}

// ---------------------------------------------------------------------------
// /metrics
// ---------------------------------------------------------------------------

/// One sample line: `name{labels} value`.
#[derive(Debug, Clone)]
pub struct Sample {
    pub name: String,
    /// The labels as written, without braces (`protocol="http1"`), or "".
    pub labels: String,
    pub value: f64,
}

/// A parsed `/metrics` answer.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub text: String,
    pub samples: Vec<Sample>,
    /// `# HELP` and `# TYPE` lines, by metric name.
    pub help: HashMap<String, String>,
    pub kind: HashMap<String, String>,
}

impl Metrics {
    /// The value of the sample `name{labels}`; panics if there is none.
    pub fn value(&self, name: &str, labels: &str) -> f64 {
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == labels)
            .unwrap_or_else(|| panic!("no sample {name}{{{labels}}} in /metrics:\n{}", self.text))
            .value
    }

    /// [`value`](Self::value) of a sample without labels, as an integer.
    pub fn int(&self, name: &str) -> u64 {
        self.int_with(name, "")
    }

    pub fn int_with(&self, name: &str, labels: &str) -> u64 {
        let v = self.value(name, labels);
        assert!(
            v >= 0.0 && v.fract() == 0.0,
            "{name}{{{labels}}} is not a non-negative integer: {v}"
        );
        v as u64
    }

    /// Every sample's value by `name{labels}`, for comparing two snapshots.
    pub fn by_key(&self) -> BTreeMap<String, f64> {
        self.samples
            .iter()
            .map(|s| (format!("{}{{{}}}", s.name, s.labels), s.value))
            .collect()
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Checks `key="value",key2="value2"`.
fn check_labels(labels: &str, line: &str) {
    let mut rest = labels;
    while !rest.is_empty() {
        let (key, after) = rest
            .split_once("=\"")
            .unwrap_or_else(|| panic!("malformed labels in {line:?}"));
        assert!(is_metric_name(key), "bad label name {key:?} in {line:?}");
        let end = after
            .find('"')
            .unwrap_or_else(|| panic!("unterminated label value in {line:?}"));
        rest = &after[end + 1..];
        if let Some(more) = rest.strip_prefix(',') {
            rest = more;
        } else {
            assert!(rest.is_empty(), "junk after labels in {line:?}");
        }
    }
}

/// Parses and validates the Prometheus text format (version 0.0.4) strictly
/// enough for a scraper: every sample is `name{labels} value` or
/// `name value` with a numeric value, and its family's `# HELP` and
/// `# TYPE` come before it.
pub fn parse_metrics(text: &str) -> Metrics {
    let mut samples = Vec::new();
    let mut help = HashMap::new();
    let mut kind = HashMap::new();
    for line in text.lines() {
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, text) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("HELP without text: {line:?}"));
            assert!(is_metric_name(name), "bad name in {line:?}");
            help.insert(name.to_string(), text.to_string());
            continue;
        }
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, k) = rest
                .split_once(' ')
                .unwrap_or_else(|| panic!("TYPE without a type: {line:?}"));
            assert!(
                ["counter", "gauge", "histogram", "summary", "untyped"].contains(&k),
                "unknown type in {line:?}"
            );
            kind.insert(name.to_string(), k.to_string());
            continue;
        }
        if line.starts_with('#') {
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("sample without a value: {line:?}"));
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => (
                name,
                rest.strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels: {line:?}")),
            ),
            None => (series, ""),
        };
        assert!(is_metric_name(name), "bad metric name in {line:?}");
        check_labels(labels, line);
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("value is not a number: {line:?}"));
        assert!(
            help.contains_key(name) && kind.contains_key(name),
            "sample before (or without) its # HELP and # TYPE: {line:?}"
        );
        samples.push(Sample {
            name: name.to_string(),
            labels: labels.to_string(),
            value,
        });
    }
    Metrics {
        text: text.to_string(),
        samples,
        help,
        kind,
    }
}

/// `GET /metrics` over a fresh connection, checked and parsed.
pub async fn metrics(addr: SocketAddr) -> Metrics {
    let reply = common::get(addr, "/metrics").await;
    assert_eq!(reply.status, StatusCode::OK, "GET /metrics: {}", reply.text());
    let ct = reply.header("content-type").unwrap_or("").to_string();
    assert!(ct.starts_with("text/plain"), "/metrics content-type: {ct:?}");
    parse_metrics(&reply.text())
}

/// Polls `/metrics` until `pred` holds; panics after `limit`. Returns the
/// last answer and how many requests (each a new connection) it took.
pub async fn wait_metrics(
    addr: SocketAddr,
    what: &str,
    limit: Duration,
    pred: impl Fn(&Metrics) -> bool,
) -> (Metrics, u64) {
    let deadline = Instant::now() + limit;
    let mut polls = 0;
    loop {
        let m = metrics(addr).await;
        polls += 1;
        if pred(&m) {
            return (m, polls);
        }
        if Instant::now() >= deadline {
            panic!(
                "timed out after {limit:?} waiting for {what}; /metrics now:\n{}",
                m.text
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ---------------------------------------------------------------------------
// Publishing that may fail
// ---------------------------------------------------------------------------

/// Publishes `body` to `topic` over `client`; `None` if the request failed
/// (connection refused or closed), else the status and trimmed answer.
pub async fn try_publish(
    client: &HttpClient,
    addr: SocketAddr,
    topic: &str,
    body: &str,
) -> Option<(StatusCode, String)> {
    let req = Request::builder()
        .method(Method::POST)
        .uri(format!(
            "http://{addr}{}",
            common::publish_path(Some(topic), None)
        ))
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("request");
    let resp = bounded(STEP, "publish response", client.request(req))
        .await
        .ok()?;
    let status = resp.status();
    let body = bounded(STEP, "publish body", resp.into_body().collect())
        .await
        .ok()?
        .to_bytes();
    Some((status, String::from_utf8_lossy(&body).trim_end().to_string()))
}

// ---------------------------------------------------------------------------
// The real binary
// ---------------------------------------------------------------------------

/// `ssehub` running as a child process (killed if the test drops it).
pub struct HubProcess {
    pub child: tokio::process::Child,
    pub addr: SocketAddr,
    pub pid: i32,
    log: Arc<Mutex<String>>,
}

impl HubProcess {
    /// Starts the binary with `--listen 127.0.0.1:0` and `args`, and waits
    /// for its "listening on ADDR" line.
    pub async fn spawn(args: &[&str]) -> HubProcess {
        HubProcess::spawn_with_env(args, &[]).await
    }

    /// [`spawn`](Self::spawn) with extra environment variables.
    pub async fn spawn_with_env(args: &[&str], env: &[(&str, &str)]) -> HubProcess {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_ssehub"));
        for (name, _) in std::env::vars() {
            if name.starts_with("SSEHUB_") {
                cmd.env_remove(name);
            }
        }
        cmd.args(["--listen", "127.0.0.1:0"])
            .args(args)
            .env("RUST_LOG", "info")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let mut child = cmd.spawn().expect("spawn ssehub");
        let pid = child.id().expect("pid") as i32;
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<SocketAddr>();
        {
            let log = log.clone();
            tokio::spawn(async move {
                let mut tx = Some(tx);
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if let Some((_, rest)) = line.split_once("listening on ") {
                        // `"}` ends it in a JSON line (--log-format json).
                        let rest = rest.trim().trim_end_matches(['"', '}']);
                        if let (Some(tx), Ok(addr)) = (tx.take(), rest.parse()) {
                            let _ = tx.send(addr);
                        }
                    }
                    let mut log = log.lock().unwrap();
                    log.push_str(&line);
                    log.push('\n');
                }
            });
        }
        let addr = match tokio::time::timeout(Duration::from_secs(10), rx).await {
            Ok(Ok(addr)) => addr,
            _ => panic!(
                "ssehub did not log 'listening on ADDR'; stderr:\n{}",
                log.lock().unwrap()
            ),
        };
        HubProcess {
            child,
            addr,
            pid,
            log,
        }
    }

    /// What the process wrote to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits until a line of stderr contains every one of `needles`;
    /// returns that line. Panics (with the log) after `limit`.
    pub async fn wait_log_line(&self, needles: &[&str], limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(line) = self.log().lines().find(|l| needles.iter().all(|n| l.contains(n))) {
                return line.to_string();
            }
            if Instant::now() >= deadline {
                panic!(
                    "no log line with {needles:?} within {limit:?}; stderr:\n{}",
                    self.log()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: kill(2) with the pid of a child this process spawned and
        // has not yet reaped (kill_on_drop and `wait` are ours alone).
        let rc = unsafe { libc::kill(self.pid, signal) };
        assert_eq!(rc, 0, "kill({}, {signal}) failed", self.pid);
    }

    /// Waits for the process to exit; panics (with its log) after `limit`.
    pub async fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(status) => status.expect("wait"),
            Err(_) => panic!(
                "ssehub still running {limit:?} after the signal; stderr:\n{}",
                self.log()
            ),
        }
    }
}
