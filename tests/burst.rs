//! At the default settings, a burst that the server itself needs time to
//! write disconnects no one: every subscriber that keeps reading gets every
//! event, in order, over HTTP/1.1 and over h2c, however far behind the
//! server's own writing falls during the burst.

mod common;

use bytes::BytesMut;
use common::*;
use hyper::{Request, StatusCode};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinSet;

/// The whole of one burst test; several thousand sockets in a debug build.
const BURST_TIMEOUT: Duration = Duration::from_secs(120);

/// Counts `data: N` lines, which must come as 0, 1, 2, … in order. Chunk
/// headers of HTTP/1.1 never start with `data: `, and a chunk always holds
/// whole events, so the lines can be read from the raw bytes.
#[derive(Default)]
struct InOrder {
    pending: BytesMut,
    next: u64,
}

impl InOrder {
    /// Feeds bytes; returns an error naming the first event out of order.
    fn feed(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.pending.extend_from_slice(bytes);
        while let Some(end) = self.pending.iter().position(|&b| b == b'\n') {
            let line = self.pending.split_to(end + 1);
            // The last chunk of HTTP/1.1 chunked encoding: the stream ended
            // (the connection stays open for the next request).
            if &line[..] == b"0\r\n" {
                return Err(format!("stream ended after {} events", self.next));
            }
            let Some(n) = line.strip_prefix(b"data: ") else {
                continue;
            };
            let n: u64 = std::str::from_utf8(n)
                .ok()
                .and_then(|s| s.trim_end().parse().ok())
                .ok_or_else(|| format!("unexpected data line {:?}", String::from_utf8_lossy(&line)))?;
            if n != self.next {
                return Err(format!("got event {n}, expected {}", self.next));
            }
            self.next += 1;
        }
        Ok(())
    }
}

/// An HTTP/1.1 subscriber on raw TCP: sends the request, then reads until
/// it has `want` events in order. Returns the count and the still-open
/// socket, or what went wrong.
async fn h1_subscriber(
    addr: SocketAddr,
    want: u64,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<(u64, TcpStream), String> {
    // A small receive buffer: the kernel holds little for the reader, so the
    // server's queue, not the socket's, absorbs the burst.
    let socket = tokio::net::TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket.set_recv_buffer_size(4096).map_err(|e| e.to_string())?;
    let mut tcp = socket.connect(addr).await.map_err(|e| e.to_string())?;
    tcp.write_all(b"GET /events?topic=burst HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut seen = InOrder::default();
    let mut head = true;
    loop {
        let n = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("stream closed after {} events", seen.next));
        }
        if head {
            head = false;
            let _ = ready.send(()).await;
        }
        seen.feed(&buf[..n])
            .map_err(|e| format!("{e} (after {})", seen.next))?;
        if seen.next >= want {
            // Still open: the caller checks the server kept every stream.
            return Ok((seen.next, tcp));
        }
    }
}

/// What keeps an h2c connection's streams open: the client handle and the
/// bodies still being received.
type OpenH2 = (h2::client::SendRequest<bytes::Bytes>, Vec<h2::RecvStream>);

/// Opens `streams` h2c streams on one connection, each reading until it has
/// `want` events in order; returns them still open.
async fn h2_connection(
    addr: SocketAddr,
    streams: usize,
    want: u64,
    ready: tokio::sync::mpsc::Sender<()>,
) -> Result<OpenH2, String> {
    let tcp = TcpStream::connect(addr).await.map_err(|e| e.to_string())?;
    // h2 (0.4.20 on) closes a connection on which more than ~100 small DATA
    // frames wait unread: 100 streams of small events trip it whenever the
    // reading tasks fall one event behind. A client of an SSE hub must
    // raise it (see README, "HTTP/2 and its limits").
    let (client, connection) = h2::client::Builder::new()
        .data_frame_budget(64 * 1024 * 1024)
        .handshake::<_, bytes::Bytes>(tcp)
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut readers = JoinSet::new();
    for _ in 0..streams {
        let mut client = client.clone().ready().await.map_err(|e| e.to_string())?;
        let req = Request::get(format!("http://{addr}/events?topic=burst"))
            .body(())
            .map_err(|e| e.to_string())?;
        let (response, _) = client.send_request(req, true).map_err(|e| e.to_string())?;
        let ready = ready.clone();
        readers.spawn(async move {
            let response = response.await.map_err(|e| e.to_string())?;
            if response.status() != StatusCode::OK {
                return Err(format!("status {}", response.status()));
            }
            let mut body = response.into_body();
            let mut seen = InOrder::default();
            let mut first = true;
            while let Some(chunk) = body.data().await {
                let chunk = chunk.map_err(|e| format!("{e} after {} events", seen.next))?;
                let _ = body.flow_control().release_capacity(chunk.len());
                if first {
                    first = false;
                    let _ = ready.send(()).await;
                }
                seen.feed(&chunk)?;
                if seen.next >= want {
                    return Ok(body);
                }
            }
            Err(format!("stream ended after {} events", seen.next))
        });
    }
    let mut open = Vec::new();
    while let Some(result) = readers.join_next().await {
        open.push(result.map_err(|e| e.to_string())??);
    }
    Ok((client, open))
}

/// Waits until `n` subscribers have their response head (the `retry:` frame).
async fn all_ready(rx: &mut tokio::sync::mpsc::Receiver<()>, n: usize) {
    for _ in 0..n {
        bounded(Duration::from_secs(30), "every subscriber's response", rx.recv())
            .await
            .expect("a subscriber task ended before its response");
    }
}

/// Publishes `0..n` back to back over one keep-alive connection: every
/// request is written at once (HTTP/1.1 pipelining), so the server gets
/// them as fast as it can read them, then every answer must be `200`.
async fn publish_back_to_back(addr: SocketAddr, n: u64) {
    let mut tcp = TcpStream::connect(addr).await.expect("connect");
    let mut requests = String::new();
    for i in 0..n {
        let body = i.to_string();
        requests.push_str(&format!(
            "POST /publish?topic=burst HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ));
    }
    let (mut rd, mut wr) = tcp.split();
    let write = async {
        wr.write_all(requests.as_bytes())
            .await
            .expect("write the publishes");
    };
    let read = async {
        let mut answers = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        let count = |a: &[u8]| a.windows(15).filter(|w| w == b"HTTP/1.1 200 OK").count() as u64;
        while count(&answers) < n {
            let got = rd.read(&mut buf).await.expect("read the answers");
            assert!(
                got > 0,
                "publisher connection closed: {}",
                String::from_utf8_lossy(&answers)
            );
            answers.extend_from_slice(&buf[..got]);
        }
        let text = String::from_utf8_lossy(&answers);
        assert_eq!(text.matches("HTTP/1.1 ").count() as u64, n, "{text}");
    };
    bounded(Duration::from_secs(60), "the publishes' answers", async {
        tokio::join!(write, read)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_events_reaches_2000_http1_subscribers_at_default_settings() {
    bounded(BURST_TIMEOUT, "the whole test", async {
        let srv = start(config()).await;
        let (ready_tx, mut ready) = tokio::sync::mpsc::channel(2000);
        let mut subs = JoinSet::new();
        for _ in 0..2000 {
            subs.spawn(h1_subscriber(srv.addr, 500, ready_tx.clone()));
        }
        all_ready(&mut ready, 2000).await;
        wait_subscribers(&srv.stats, 2000).await;

        publish_back_to_back(srv.addr, 500).await;
        let mut open = Vec::new();
        while let Some(result) = subs.join_next().await {
            match result.expect("subscriber task") {
                Ok((got, tcp)) => {
                    assert_eq!(got, 500);
                    open.push(tcp);
                }
                Err(e) => panic!("a subscriber missed events: {e}; {:?}", srv.stats()),
            }
        }
        let stats = srv.stats();
        assert_eq!(stats.dropped_full, 0, "{stats:?}");
        assert_eq!(stats.subscribers, 2000, "every stream is still open: {stats:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_500_events_reaches_20_h2c_connections_of_100_streams_at_default_settings() {
    bounded(BURST_TIMEOUT, "the whole test", async {
        let srv = start(config()).await;
        let (ready_tx, mut ready) = tokio::sync::mpsc::channel(2000);
        let mut conns = JoinSet::new();
        for _ in 0..20 {
            conns.spawn(h2_connection(srv.addr, 100, 500, ready_tx.clone()));
        }
        all_ready(&mut ready, 2000).await;
        wait_subscribers(&srv.stats, 2000).await;

        publish_back_to_back(srv.addr, 500).await;
        let mut open = Vec::new();
        while let Some(result) = conns.join_next().await {
            match result.expect("connection task") {
                Ok(conn) => open.push(conn),
                Err(e) => panic!("a stream missed events: {e}; {:?}", srv.stats()),
            }
        }
        let stats = srv.stats();
        assert_eq!(stats.dropped_full, 0, "{stats:?}");
        assert_eq!(stats.open_http2, 2000, "every stream is still open: {stats:?}");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_20000_events_reaches_500_subscribers_at_default_settings() {
    bounded(BURST_TIMEOUT, "the whole test", async {
        let srv = start(config()).await;
        let (ready_tx, mut ready) = tokio::sync::mpsc::channel(500);
        let mut subs = JoinSet::new();
        for _ in 0..500 {
            subs.spawn(h1_subscriber(srv.addr, 20_000, ready_tx.clone()));
        }
        all_ready(&mut ready, 500).await;
        wait_subscribers(&srv.stats, 500).await;

        let body: String = (0..20_000).map(|i| format!("data: {i}\n\n")).collect();
        // Raw, with a generous bound: in a debug build the answer waits
        // behind the 100 MB the server is writing to the subscribers.
        let mut tcp = TcpStream::connect(srv.addr).await.expect("connect");
        let head = format!(
            "POST /publish?topic=burst HTTP/1.1\r\nHost: x\r\nContent-Type: text/event-stream\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        tcp.write_all(head.as_bytes()).await.expect("write head");
        tcp.write_all(body.as_bytes()).await.expect("write body");
        let mut reply = String::new();
        bounded(
            Duration::from_secs(60),
            "the batch's answer",
            tcp.read_to_string(&mut reply),
        )
        .await
        .expect("read the answer");
        assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
        let ids = reply.split("\r\n\r\n").nth(1).unwrap_or("");
        assert_eq!(ids.lines().count(), 20_000);
        let mut open = Vec::new();
        while let Some(result) = subs.join_next().await {
            match result.expect("subscriber task") {
                Ok((got, tcp)) => {
                    assert_eq!(got, 20_000);
                    open.push(tcp);
                }
                Err(e) => panic!("a subscriber missed events: {e}; {:?}", srv.stats()),
            }
        }
        let stats = srv.stats();
        assert_eq!(stats.dropped_full, 0, "{stats:?}");
        assert_eq!(stats.subscribers, 500, "{stats:?}");
    })
    .await;
}
