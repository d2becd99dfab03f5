//! Subscribers: HTTP/1.1 sockets and h2c streams, opened in bulk, counted
//! until stopped, and merged into one result.

use super::decode::{find, Checks, Decoder, Tally};
use super::now_nanos;
use super::params::Params;
use bytes::Bytes;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;

#[derive(Debug)]
pub enum Ready {
    /// Open: the response head came after this long.
    Opened(Duration),
    /// The server refused the stream (h2 RST_STREAM REFUSED_STREAM).
    Refused,
    /// Did not open within the open timeout (h2: held back by the client).
    NotOpened,
    Failed(String),
}

pub enum End {
    /// We stopped it.
    Stopped,
    /// The server ended it (EOF, final chunk, END_STREAM).
    ServerEnded,
    Error(String),
    /// It never opened.
    NeverOpened,
}

pub struct StreamResult {
    pub tally: Tally,
    pub end: End,
}

/// What all subscriber tasks of a scenario share.
#[derive(Clone)]
pub struct Shared {
    pub stop: watch::Receiver<bool>,
    /// Deliveries so far, over every stream.
    pub delivered: Arc<AtomicU64>,
    pub ready: mpsc::UnboundedSender<Ready>,
    pub checks: Checks,
    pub open_timeout: Duration,
    /// These subscribers stop reading: over HTTP/1.1 after `Stall::after`
    /// events, with a small receive buffer; over HTTP/2 at once, with a
    /// stream window of 0.
    pub stall: Option<Stall>,
    /// When the first of them stopped reading (`now_nanos`), how many did,
    /// and their sockets' local addresses (to find the server's side of
    /// each in /proc/net/tcp).
    pub stalled_at: Arc<AtomicU64>,
    pub stalled: Arc<AtomicU64>,
    pub stalled_addrs: Arc<Mutex<Vec<SocketAddr>>>,
}

/// A subscriber that stops reading: it reads `after` events, then never
/// calls read again until the scenario stops it. Its receive buffer is
/// `rcvbuf` bytes (set before connecting, so the window stays small), so
/// the server's writes stall soon.
#[derive(Clone, Copy)]
pub struct Stall {
    pub after: u64,
    pub rcvbuf: u32,
}

/// Source addresses 127.0.0.2..=127.0.0.250, round-robin.
pub fn source_addr(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, 2 + (i % 249) as u8)
}

pub async fn connect_from(src: Ipv4Addr, server: SocketAddr) -> std::io::Result<TcpStream> {
    connect_with(src, server, None).await
}

/// `connect_from` with an optional SO_RCVBUF.
pub async fn connect_with(
    src: Ipv4Addr,
    server: SocketAddr,
    rcvbuf: Option<u32>,
) -> std::io::Result<TcpStream> {
    let sock = TcpSocket::new_v4()?;
    if let Some(n) = rcvbuf {
        sock.set_recv_buffer_size(n)?;
    }
    sock.bind(SocketAddr::from((src, 0)))?;
    let s = sock.connect(server).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Connects, sends the request and reads the response head. Returns the
/// stream, the body bytes read with the head, and whether it is chunked.
pub async fn h1_open(
    src: Ipv4Addr,
    server: SocketAddr,
    topic: &str,
    rcvbuf: Option<u32>,
) -> Result<(TcpStream, Vec<u8>, bool), String> {
    let mut s = connect_with(src, server, rcvbuf)
        .await
        .map_err(|e| format!("connect from {src}: {e}"))?;
    let req = format!("GET /events?topic={topic} HTTP/1.1\r\nHost: x\r\n\r\n");
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("write: {e}"))?;
    let mut buf = Vec::with_capacity(1024);
    let end = loop {
        if let Some(end) = find(&buf, b"\r\n\r\n") {
            break end;
        }
        if buf.len() > 16 * 1024 {
            return Err("response head over 16 KiB".into());
        }
        match s.read_buf(&mut buf).await {
            Ok(0) => return Err("closed before the response head".into()),
            Ok(_) => {}
            Err(e) => return Err(format!("read: {e}")),
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
    let status = head.lines().next().unwrap_or("");
    if !status.starts_with("http/1.1 200") {
        return Err(format!("status line {status:?}"));
    }
    if !head.contains("content-type: text/event-stream") {
        return Err("not text/event-stream".into());
    }
    let chunked = head.contains("transfer-encoding: chunked");
    Ok((s, buf[end + 4..].to_vec(), chunked))
}

/// One HTTP/1.1 subscriber: open, report, then count events until stopped.
pub async fn h1_subscriber(
    sh: Shared,
    src: Ipv4Addr,
    server: SocketAddr,
    topic: String,
    permit: Option<OwnedSemaphorePermit>,
) -> StreamResult {
    let mut tally = Tally::new(sh.checks);
    let t0 = Instant::now();
    let rcvbuf = sh.stall.map(|s| s.rcvbuf);
    let (mut sock, leftover, chunked) =
        match tokio::time::timeout(sh.open_timeout * 5, h1_open(src, server, &topic, rcvbuf)).await {
            Ok(Ok(x)) => x,
            Ok(Err(e)) => {
                let _ = sh.ready.send(Ready::Failed(e));
                return StreamResult {
                    tally,
                    end: End::NeverOpened,
                };
            }
            Err(_) => {
                let _ = sh.ready.send(Ready::Failed(format!(
                    "no response head within {:?}",
                    sh.open_timeout * 5
                )));
                return StreamResult {
                    tally,
                    end: End::NeverOpened,
                };
            }
        };
    let _ = sh.ready.send(Ready::Opened(t0.elapsed()));
    drop(permit);

    let mut dec = Decoder {
        chunked,
        ..Decoder::default()
    };
    let mut buf = vec![0u8; 16 * 1024];
    let mut end = match dec.feed(&leftover, &mut tally, now_nanos()) {
        Ok(()) => None,
        Err(e) => Some(End::Error(e)),
    };
    let mut stop = sh.stop.clone();
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    while end.is_none() && !dec.ended {
        tokio::select! {
            biased;
            _ = &mut stopped => end = Some(End::Stopped),
            r = sock.read(&mut buf) => match r {
                Ok(0) => end = Some(End::ServerEnded),
                Ok(n) => {
                    let before = tally.delivered;
                    if let Err(e) = dec.feed(&buf[..n], &mut tally, now_nanos()) {
                        end = Some(End::Error(e));
                    }
                    sh.delivered.fetch_add(tally.delivered - before, Ordering::Relaxed);
                }
                Err(e) => end = Some(End::Error(e.to_string())),
            },
        }
        if end.is_none() && sh.stall.is_some_and(|s| tally.delivered >= s.after) {
            end = Some(stall(&sh, &mut sock).await);
        }
    }
    StreamResult {
        tally,
        end: end.unwrap_or(End::ServerEnded),
    }
}

/// A stalled subscriber: stops reading until `stopped`, then reads what is
/// left (for at most 3 s, discarding it) to learn whether the server closed
/// the stream: `ServerEnded` if it did, `Stopped` if it is still open.
async fn stall(sh: &Shared, sock: &mut TcpStream) -> End {
    let now = now_nanos();
    let _ = sh
        .stalled_at
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| (t == 0).then_some(now));
    sh.stalled.fetch_add(1, Ordering::Relaxed);
    if let Ok(a) = sock.local_addr() {
        sh.stalled_addrs.lock().unwrap().push(a);
    }
    let mut stop = sh.stop.clone();
    let stopped = stop.wait_for(|s| *s).await.is_ok();
    debug_assert!(stopped, "the scenario holds the sender");
    let mut buf = vec![0u8; 64 * 1024];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3);
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return End::ServerEnded,
            Ok(Ok(_)) => {}
            Err(_) => return End::Stopped,
        }
    }
}

/// One h2 stream: wait for the response head, then count events.
pub async fn h2_subscriber(
    sh: Shared,
    response: h2::client::ResponseFuture,
    t0: Instant,
    head: Option<oneshot::Sender<()>>,
) -> StreamResult {
    let mut tally = Tally::new(sh.checks);
    let never = |tally| StreamResult {
        tally,
        end: End::NeverOpened,
    };
    let resp = match tokio::time::timeout(sh.open_timeout, response).await {
        Ok(Ok(r)) if r.status() == 200 => r,
        Ok(Ok(r)) => {
            let _ = sh.ready.send(Ready::Failed(format!("status {}", r.status())));
            return never(tally);
        }
        Ok(Err(e)) if e.reason() == Some(h2::Reason::REFUSED_STREAM) => {
            let _ = sh.ready.send(Ready::Refused);
            return never(tally);
        }
        Ok(Err(e)) => {
            let _ = sh.ready.send(Ready::Failed(format!("h2 response: {e}")));
            return never(tally);
        }
        Err(_) => {
            let _ = sh.ready.send(Ready::NotOpened);
            return never(tally);
        }
    };
    let _ = sh.ready.send(Ready::Opened(t0.elapsed()));
    if let Some(head) = head {
        let _ = head.send(());
    }
    let mut body = resp.into_body();
    let mut stop = sh.stop.clone();
    if sh.stall.is_some() {
        // Over HTTP/2 a stalling stream never reads (its window is 0); the
        // body is held, not dropped, which would reset the stream.
        sh.stalled.fetch_add(1, Ordering::Relaxed);
        let _ = stop.wait_for(|s| *s).await;
        drop(body);
        return StreamResult {
            tally,
            end: End::Stopped,
        };
    }
    let mut dec = Decoder::default();
    let stopped = stop.wait_for(|s| *s);
    tokio::pin!(stopped);
    let end = loop {
        tokio::select! {
            biased;
            _ = &mut stopped => break End::Stopped,
            d = body.data() => match d {
                None => break End::ServerEnded,
                Some(Ok(bytes)) => {
                    let _ = body.flow_control().release_capacity(bytes.len());
                    let before = tally.delivered;
                    let _ = dec.feed(&bytes, &mut tally, now_nanos());
                    sh.delivered.fetch_add(tally.delivered - before, Ordering::Relaxed);
                }
                Some(Err(e)) => break End::Error(format!("h2 body: {e}")),
            },
        }
    };
    StreamResult { tally, end }
}

/// Opening statistics of a group of streams.
#[derive(Default)]
pub struct Opening {
    pub requested: usize,
    pub opened: usize,
    pub refused: usize,
    pub not_opened: usize,
    pub failed: Vec<String>,
    pub times: Vec<Duration>,
    pub elapsed: Duration,
}

impl Opening {
    pub fn rate(&self) -> f64 {
        self.opened as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    pub fn max_ms(&self) -> f64 {
        self.times.iter().max().map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }

    pub fn pct_ms(&self, p: f64) -> f64 {
        let mut t = self.times.clone();
        t.sort_unstable();
        percentile(&t, p).map_or(0.0, |d| d.as_secs_f64() * 1e3)
    }
}

pub fn percentile<T: Copy>(sorted: &[T], p: f64) -> Option<T> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

/// A scenario's subscribers.
pub struct Subscribers {
    pub stop_tx: watch::Sender<bool>,
    pub shared: Shared,
    pub ready_rx: mpsc::UnboundedReceiver<Ready>,
    pub handles: Vec<JoinHandle<StreamResult>>,
    /// h2 connection drivers that ended before we stopped, with why.
    pub h2_conn_errors: Arc<Mutex<Vec<String>>>,
    pub h2_conns: Vec<JoinHandle<()>>,
}

impl Subscribers {
    pub fn new(p: &Params, n_events: u64) -> Subscribers {
        let (stop_tx, stop) = watch::channel(false);
        let (ready, ready_rx) = mpsc::unbounded_channel();
        Subscribers {
            stop_tx,
            shared: Shared {
                stop,
                delivered: Arc::new(AtomicU64::new(0)),
                ready,
                checks: Checks::new(n_events),
                open_timeout: p.open_timeout,
                stall: None,
                stalled_at: Arc::default(),
                stalled: Arc::default(),
                stalled_addrs: Arc::default(),
            },
            ready_rx,
            handles: Vec::new(),
            h2_conn_errors: Arc::default(),
            h2_conns: Vec::new(),
        }
    }

    pub fn delivered(&self) -> u64 {
        self.shared.delivered.load(Ordering::Relaxed)
    }

    /// Waits for `n` opening reports.
    pub async fn collect_ready(&mut self, n: usize, t0: Instant, limit: Duration, o: &mut Opening) {
        let deadline = tokio::time::Instant::now() + limit;
        let mut got = 0;
        while got < n {
            match tokio::time::timeout_at(deadline, self.ready_rx.recv()).await {
                Ok(Some(r)) => {
                    got += 1;
                    match r {
                        Ready::Opened(d) => {
                            o.opened += 1;
                            o.times.push(d);
                        }
                        Ready::Refused => o.refused += 1,
                        Ready::NotOpened => o.not_opened += 1,
                        Ready::Failed(e) => o.failed.push(e),
                    }
                }
                Ok(None) => break,
                Err(_) => {
                    o.failed
                        .push(format!("{} streams did not report within {limit:?}", n - got));
                    break;
                }
            }
        }
        o.elapsed = t0.elapsed();
    }

    /// Opens `n` HTTP/1.1 streams, `concurrency` connects at a time,
    /// subscriber `i` on `topic(i)`; `first` numbers the source addresses.
    pub async fn open_h1(
        &mut self,
        server: SocketAddr,
        n: usize,
        first: usize,
        concurrency: usize,
        topic: impl Fn(usize) -> String,
    ) -> Opening {
        let sem = Arc::new(Semaphore::new(concurrency.max(1)));
        let t0 = Instant::now();
        for i in 0..n {
            let permit = sem.clone().acquire_owned().await.ok();
            let task = h1_subscriber(
                self.shared.clone(),
                source_addr(first + i),
                server,
                topic(i),
                permit,
            );
            self.handles.push(tokio::spawn(task));
        }
        let mut o = Opening {
            requested: n,
            ..Opening::default()
        };
        self.collect_ready(n, t0, Duration::from_secs(120), &mut o).await;
        o
    }

    /// Opens `conns` h2c connections with `per_conn` streams each, all on
    /// `topic`. The first stream of each connection is answered before the
    /// others are sent, so the client knows the server's SETTINGS.
    pub async fn open_h2(
        &mut self,
        server: SocketAddr,
        conns: usize,
        per_conn: usize,
        topic: &str,
    ) -> Opening {
        let t0 = Instant::now();
        let mut starters = Vec::new();
        for c in 0..conns {
            let sh = self.shared.clone();
            let errors = self.h2_conn_errors.clone();
            let topic = topic.to_string();
            starters.push(tokio::spawn(h2_connection(
                sh,
                errors,
                source_addr(c),
                server,
                per_conn,
                topic,
            )));
        }
        let mut o = Opening {
            requested: conns * per_conn,
            ..Opening::default()
        };
        self.collect_ready(conns * per_conn, t0, Duration::from_secs(120), &mut o)
            .await;
        for s in starters {
            if let Ok((driver, streams)) = s.await {
                self.h2_conns.extend(driver);
                self.handles.extend(streams);
            }
        }
        o
    }

    /// Stops every stream and merges what they saw.
    pub async fn finish(self) -> Merged {
        let _ = self.stop_tx.send(true);
        let mut m = Merged::default();
        for h in self.handles {
            let Ok(r) = h.await else {
                m.errors.push("a subscriber task panicked".into());
                continue;
            };
            match r.end {
                End::NeverOpened => continue,
                End::Stopped => {}
                End::ServerEnded => m.server_ended += 1,
                End::Error(e) => m.errors.push(e),
            }
            m.streams += 1;
            let t = r.tally;
            m.delivered += t.delivered;
            m.unique += t.unique;
            m.dups += t.dups;
            m.reordered += t.reordered;
            m.id_disorder += t.id_disorder;
            m.bad += t.bad;
            m.last_rx = m.last_rx.max(t.last_rx);
            m.lat_us.extend_from_slice(&t.lat_us);
        }
        for c in self.h2_conns {
            let _ = tokio::time::timeout(Duration::from_secs(1), c).await;
        }
        m.h2_conn_errors = std::mem::take(&mut *self.h2_conn_errors.lock().unwrap());
        m.lat_us.sort_unstable();
        m
    }
}

/// Starts one h2c connection and its streams; returns the connection's
/// driver and the stream tasks.
pub async fn h2_connection(
    sh: Shared,
    errors: Arc<Mutex<Vec<String>>>,
    src: Ipv4Addr,
    server: SocketAddr,
    per_conn: usize,
    topic: String,
) -> (Option<JoinHandle<()>>, Vec<JoinHandle<StreamResult>>) {
    let fail_all = |e: String| {
        for _ in 0..per_conn {
            let _ = sh.ready.send(Ready::Failed(e.clone()));
        }
        (None, Vec::new())
    };
    let tcp = match connect_from(src, server).await {
        Ok(t) => t,
        Err(e) => return fail_all(format!("h2 connect from {src}: {e}")),
    };
    // A stalling connection opens no window at all: the server can send
    // its streams nothing, so everything it is given for them waits on its
    // side (h2's send buffer, then the subscriber's queue).
    let window = if sh.stall.is_some() { 0 } else { 1 << 20 };
    let handshake = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(1 << 26)
        .handshake::<_, Bytes>(tcp)
        .await;
    let (send, conn) = match handshake {
        Ok(x) => x,
        Err(e) => return fail_all(format!("h2 handshake: {e}")),
    };
    let mut stop = sh.stop.clone();
    let stopping = sh.stop.clone();
    let driver = tokio::spawn(async move {
        tokio::select! {
            r = conn => {
                let why = match r {
                    Ok(()) => "closed".to_string(),
                    Err(e) => e.to_string(),
                };
                if !*stopping.borrow() {
                    errors.lock().unwrap().push(format!("h2 connection from {src} ended: {why}"));
                }
            }
            _ = stop.wait_for(|s| *s) => {}
        }
    });
    let uri = format!("http://{server}/events?topic={topic}");
    let mut streams = Vec::with_capacity(per_conn);
    for j in 0..per_conn {
        let t0 = Instant::now();
        let ready = match tokio::time::timeout(sh.open_timeout, send.clone().ready()).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                for _ in j..per_conn {
                    let _ = sh.ready.send(Ready::Failed(format!("h2 ready: {e}")));
                }
                break;
            }
            Err(_) => {
                // The peer's SETTINGS_MAX_CONCURRENT_STREAMS is reached and
                // the previous request is still queued in the client.
                for _ in j..per_conn {
                    let _ = sh.ready.send(Ready::NotOpened);
                }
                break;
            }
        };
        let mut ready = ready;
        let request = hyper::Request::get(&uri).body(()).expect("a valid request");
        let response = match ready.send_request(request, true) {
            Ok((response, _)) => response,
            Err(e) => {
                for _ in j..per_conn {
                    let _ = sh.ready.send(Ready::Failed(format!("h2 send_request: {e}")));
                }
                break;
            }
        };
        if j == 0 {
            let (head_tx, head_rx) = oneshot::channel();
            streams.push(tokio::spawn(h2_subscriber(
                sh.clone(),
                response,
                t0,
                Some(head_tx),
            )));
            if head_rx.await.is_err() {
                // The first stream did not open: its report is sent; the
                // rest of this connection is not tried.
                for _ in 1..per_conn {
                    let _ = sh
                        .ready
                        .send(Ready::Failed("first stream of the connection failed".into()));
                }
                break;
            }
        } else {
            streams.push(tokio::spawn(h2_subscriber(sh.clone(), response, t0, None)));
        }
    }
    (Some(driver), streams)
}

/// Everything the subscribers of a scenario saw.
#[derive(Default)]
pub struct Merged {
    pub streams: usize,
    pub delivered: u64,
    pub unique: u64,
    pub dups: u64,
    pub reordered: u64,
    /// Deliveries whose id was not after the previous one on its stream.
    pub id_disorder: u64,
    pub bad: u64,
    pub last_rx: u64,
    pub lat_us: Vec<u32>,
    pub server_ended: usize,
    pub errors: Vec<String>,
    pub h2_conn_errors: Vec<String>,
}

impl Merged {
    pub fn lat_ms(&self, p: f64) -> f64 {
        percentile(&self.lat_us, p).map_or(0.0, |us| f64::from(us) / 1e3)
    }
}
