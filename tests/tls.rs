//! TLS on `--listen`, in-process: ALPN chooses HTTP/2 or HTTP/1.1 (or
//! HTTP/1.1 when the client offers none), TLS 1.2 clients are served, and
//! handshakes that fail (plaintext, a stall, a client that hangs up
//! halfway) are closed and counted without harming anything else.
//! Certificates are made by rcgen inside each test.

#![cfg(feature = "tls")]

mod common;
mod support;
mod tls_common;

use common::*;
use hyper::{Method, StatusCode};
use std::sync::Arc;
use std::time::Duration;
use tls_common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server with TLS from a fresh certificate; the directory must outlive it.
async fn start_tls(test: &str, tune: impl FnOnce(&mut ssehub::Config)) -> (TestServer, TestCert, TempDir) {
    let cert = TestCert::new();
    let dir = TempDir::new(test);
    let (cert_path, key_path) = dir.write_pair(&cert);
    let mut config = common::config();
    config.tls_cert = Some(cert_path);
    config.tls_key = Some(key_path);
    tune(&mut config);
    (start(config).await, cert, dir)
}

fn h2_and_h1(cert: &TestCert) -> Arc<rustls::ClientConfig> {
    client_config(&[cert], &[b"h2", b"http/1.1"], BOTH)
}

#[tokio::test]
async fn alpn_h2_streams_events_without_a_connection_header() {
    within(async {
        let (srv, cert, _dir) = start_tls("h2-events", |_| {}).await;
        let config = h2_and_h1(&cert);
        let tls = connect(srv.addr, config.clone()).await;
        assert_eq!(alpn(&tls).as_deref(), Some(&b"h2"[..]));
        drop(tls);

        let mut sender = Sender::open(srv.addr, config.clone()).await;
        assert!(matches!(sender, Sender::H2(_)));
        let resp = sender.send(Method::GET, "/events?topic=t", &[], "").await;
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(resp.version(), hyper::Version::HTTP_2);
        assert!(resp.headers().get("connection").is_none(), "{:?}", resp.headers());
        assert_eq!(
            header_str(resp.headers(), "content-type"),
            Some("text/event-stream")
        );
        let mut events = SseReader::new(resp.into_body());
        wait_for(&srv.stats, "one HTTP/2 stream", |s| s.open_http2 == 1).await;

        // Publish on the same connection, as another stream.
        let (status, id) = sender.text(Method::POST, "/publish?topic=t", "over h2").await;
        assert_eq!(status, StatusCode::OK);
        let event = events.next_event(STEP).await;
        assert_eq!(event.data, "over h2");
        assert_eq!(event.id(), id.trim());
    })
    .await;
}

#[tokio::test]
async fn alpn_h2_replays_after_last_event_id() {
    within(async {
        let (srv, cert, _dir) = start_tls("h2-replay", |_| {}).await;
        let config = h2_and_h1(&cert);
        let first = tls_publish(srv.addr, config.clone(), "r", "one").await;
        tls_publish(srv.addr, config.clone(), "r", "two").await;
        tls_publish(srv.addr, config.clone(), "r", "three").await;
        let mut sender = Sender::open(srv.addr, config).await;
        let resp = sender
            .send(
                Method::GET,
                "/events?topic=r",
                &[("last-event-id", first.as_str())],
                "",
            )
            .await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut events = SseReader::new(resp.into_body());
        assert_eq!(events.next_data(2, STEP).await, ["two", "three"]);
    })
    .await;
}

#[tokio::test]
async fn alpn_h2_advertises_max_concurrent_streams() {
    within(async {
        let (srv, cert, _dir) = start_tls("h2-settings", |c| c.h2_max_concurrent_streams = 7).await;
        let tls = connect(srv.addr, h2_and_h1(&cert)).await;
        let (client, connection) = bounded(STEP, "h2 handshake", h2::client::handshake(tls))
            .await
            .expect("h2 handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let mut client = bounded(STEP, "h2 ready", client.ready()).await.expect("ready");
        let req = hyper::Request::get(format!("https://{HOST}/healthz"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(req, true).expect("send_request");
        let response = bounded(STEP, "h2 response", response).await.expect("response");
        assert_eq!(response.status(), StatusCode::OK);
        // SETTINGS precede the response on the wire; the connection task may
        // apply them a moment after the response is seen.
        let deadline = tokio::time::Instant::now() + STEP;
        while client.current_max_send_streams() == usize::MAX && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(client.current_max_send_streams(), 7);
    })
    .await;
}

/// Opens a raw HTTP/1.1 event stream over `tls` and returns the head.
async fn raw_h1_stream(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    topic: &str,
) -> String {
    let request = format!("GET /events?topic={topic} HTTP/1.1\r\nHost: {HOST}\r\n\r\n");
    tls.write_all(request.as_bytes()).await.expect("write request");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    bounded(STEP, "response head", async {
        while !head.ends_with(b"\r\n\r\n") {
            let n = tls.read(&mut byte).await.expect("read head");
            assert!(n > 0, "closed inside the head");
            head.push(byte[0]);
        }
    })
    .await;
    String::from_utf8(head).expect("head is text")
}

/// Reads from `tls` until `needle` has been seen.
async fn read_until(
    tls: &mut tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
    needle: &str,
) -> String {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    bounded(STEP, needle, async {
        while !String::from_utf8_lossy(&seen).contains(needle) {
            let n = tls.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "closed before {needle:?}: {:?}",
                String::from_utf8_lossy(&seen)
            );
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(&seen).into_owned()
}

/// HTTP/1.1 over TLS, chosen by ALPN or by offering none: a stream on the
/// fast path, an event, and keep-alive.
async fn check_h1_stream(test: &str, alpn_offer: &[&[u8]]) {
    let (srv, cert, _dir) = start_tls(test, |_| {}).await;
    let config = client_config(&[&cert], alpn_offer, BOTH);
    let mut tls = connect(srv.addr, config.clone()).await;
    if alpn_offer.is_empty() {
        assert_eq!(alpn(&tls), None);
    } else {
        assert_eq!(alpn(&tls).as_deref(), Some(&b"http/1.1"[..]));
    }
    let head = raw_h1_stream(&mut tls, "h1").await;
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(head.contains("content-type: text/event-stream\r\n"), "{head}");
    assert!(head.contains("connection: keep-alive\r\n"), "{head}");
    wait_for(&srv.stats, "one HTTP/1.1 stream", |s| s.open_http1 == 1).await;
    tls_publish(srv.addr, config, "h1", "over tls").await;
    read_until(&mut tls, "data: over tls\n\n").await;
}

#[tokio::test]
async fn alpn_http11_streams_events() {
    within(check_h1_stream("h1-alpn", &[b"http/1.1"])).await;
}

#[tokio::test]
async fn client_without_alpn_gets_http11() {
    within(check_h1_stream("h1-no-alpn", &[])).await;
}

#[tokio::test]
async fn client_offering_h2_and_http11_gets_h2_and_one_offering_http11_gets_it() {
    within(async {
        let (srv, cert, _dir) = start_tls("alpn-choice", |_| {}).await;
        let tls = connect(srv.addr, client_config(&[&cert], &[b"http/1.1", b"h2"], BOTH)).await;
        // The server's preference (h2 first) decides when both are offered.
        assert_eq!(alpn(&tls).as_deref(), Some(&b"h2"[..]));
        let mut sender = Sender::open(srv.addr, client_config(&[&cert], &[b"http/1.1"], BOTH)).await;
        assert!(matches!(sender, Sender::H1(_)));
        let (status, text) = sender.text(Method::GET, "/healthz", "").await;
        assert_eq!((status, text.trim()), (StatusCode::OK, "ok"));
    })
    .await;
}

#[tokio::test]
async fn tls12_only_client_is_served() {
    within(async {
        let (srv, cert, _dir) = start_tls("tls12", |_| {}).await;
        let config = client_config(&[&cert], &[b"h2", b"http/1.1"], &[&rustls::version::TLS12]);
        let tls = connect(srv.addr, config.clone()).await;
        assert_eq!(
            tls.get_ref().1.protocol_version(),
            Some(rustls::ProtocolVersion::TLSv1_2)
        );
        drop(tls);
        let mut sender = Sender::open(srv.addr, config.clone()).await;
        let resp = sender.send(Method::GET, "/events?topic=v", &[], "").await;
        assert_eq!(resp.status(), StatusCode::OK);
        let mut events = SseReader::new(resp.into_body());
        wait_for(&srv.stats, "one stream", |s| s.subscribers == 1).await;
        tls_publish(srv.addr, config, "v", "tls 1.2").await;
        assert_eq!(events.next_event(STEP).await.data, "tls 1.2");
    })
    .await;
}

#[tokio::test]
async fn plaintext_http_to_the_tls_port_is_closed_and_the_server_stays_healthy() {
    within(async {
        let (srv, cert, _dir) = start_tls("plaintext", |_| {}).await;
        let mut tcp = support::connect_raw(srv.addr, None).await;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write");
        let closed = support::read_until_closed(&mut tcp, STEP, "the server to close").await;
        assert!(!closed.text().contains("200 OK"), "{}", closed.text());

        let config = h2_and_h1(&cert);
        let mut sender = Sender::open(srv.addr, config.clone()).await;
        let (status, _) = sender.text(Method::GET, "/healthz", "").await;
        assert_eq!(status, StatusCode::OK);
        tls_wait_metrics(srv.addr, config, "one handshake failure", |m| {
            m.int("ssehub_tls_handshake_failures_total") == 1
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_stalled_handshake_is_closed_after_the_header_timeout() {
    within(async {
        let (srv, cert, _dir) = start_tls("stall", |c| c.header_timeout = Duration::from_millis(300)).await;
        let mut tcp = support::connect_raw(srv.addr, None).await;
        // Nothing sent: the server must give up by itself.
        let closed = support::read_until_closed(&mut tcp, STEP, "the server to close").await;
        assert!(closed.bytes.is_empty());
        tls_wait_metrics(srv.addr, h2_and_h1(&cert), "one handshake failure", |m| {
            m.int("ssehub_tls_handshake_failures_total") == 1
        })
        .await;
    })
    .await;
}

#[tokio::test]
async fn a_thousand_handshakes_abandoned_halfway_leave_nothing_open() {
    within(async {
        let (srv, cert, _dir) = start_tls("abandoned", |_| {}).await;
        // (RSS is checked on the real binary, where nothing else shares the
        // process: tls_binary.rs, abandoned handshakes on a plateau.)
        abandon_handshakes(srv.addr, &cert, 1000).await;
        let m = tls_wait_metrics(srv.addr, h2_and_h1(&cert), "1000 handshake failures", |m| {
            m.int("ssehub_tls_handshake_failures_total") == 1000
        })
        .await;
        assert_eq!(m.int_with("ssehub_open_streams", "protocol=\"http1\""), 0);
        assert_eq!(m.int_with("ssehub_open_streams", "protocol=\"http2\""), 0);
        let s = srv.stats();
        assert_eq!((s.open_http1, s.open_http2, s.subscribers), (0, 0, 0));
    })
    .await;
}

/// Reads to the end of a stream, returning the `retry:` values seen after
/// the opening one.
async fn retries_until_end(events: &mut SseReader) -> Vec<u64> {
    let mut retries = Vec::new();
    loop {
        match events.next_item(STEP).await {
            None => panic!("the stream did not end within {STEP:?}"),
            Some(common::Item::End) => return retries,
            Some(common::Item::Retry(r)) => retries.push(r),
            Some(_) => {}
        }
    }
}

/// Opens an event stream over TLS with `alpn`; returns it with its sender.
async fn tls_stream(srv: &TestServer, cert: &TestCert, alpn: &[u8]) -> (Sender, SseReader) {
    tls_stream_at(srv.addr, cert, alpn).await
}

/// [`tls_stream`] to any address (a proxy in front of the server).
async fn tls_stream_at(addr: std::net::SocketAddr, cert: &TestCert, alpn: &[u8]) -> (Sender, SseReader) {
    let mut sender = Sender::open(addr, client_config(&[cert], &[alpn], BOTH)).await;
    let resp = sender.send(Method::GET, "/events?topic=life", &[], "").await;
    assert_eq!(resp.status(), StatusCode::OK);
    (sender, SseReader::new(resp.into_body()))
}

#[tokio::test]
async fn shutdown_ends_tls_streams_with_a_retry_over_h1_and_h2() {
    within(async {
        let (srv, cert, _dir) = start_tls("shutdown", |_| {}).await;
        let (_s1, mut h1) = tls_stream(&srv, &cert, b"http/1.1").await;
        let (_s2, mut h2) = tls_stream(&srv, &cert, b"h2").await;
        wait_for(&srv.stats, "two streams", |s| {
            s.open_http1 == 1 && s.open_http2 == 1
        })
        .await;
        drop(srv);
        // The opening retry, then the fresh one sent at shutdown.
        assert_eq!(retries_until_end(&mut h1).await.len(), 2);
        assert_eq!(retries_until_end(&mut h2).await.len(), 2);
    })
    .await;
}

#[tokio::test]
async fn tls_streams_past_max_connections_are_shed_with_a_long_retry() {
    within(async {
        let (srv, cert, _dir) = start_tls("shed", |c| c.max_connections = 1).await;
        let (_s1, _first) = tls_stream(&srv, &cert, b"h2").await;
        wait_for(&srv.stats, "one stream", |s| s.subscribers == 1).await;
        for alpn in [&b"h2"[..], b"http/1.1"] {
            let (_s, mut shed) = tls_stream(&srv, &cert, alpn).await;
            let retries = retries_until_end(&mut shed).await;
            // 5 x --retry (3 s) plus up to 5 x the jitter.
            assert!(retries.len() == 1 && retries[0] >= 15_000, "{retries:?}");
        }
        wait_for(&srv.stats, "two shed", |s| s.shed == 2).await;
    })
    .await;
}

#[tokio::test]
async fn tls_stream_lifetime_ends_streams_with_a_retry() {
    within(async {
        let (srv, cert, _dir) = start_tls("lifetime", |c| {
            c.max_stream_lifetime = Some(Duration::from_millis(200))
        })
        .await;
        for alpn in [&b"http/1.1"[..], b"h2"] {
            let (_s, mut events) = tls_stream(&srv, &cert, alpn).await;
            assert_eq!(retries_until_end(&mut events).await.len(), 2, "{alpn:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_client_that_reconnects_resumes_its_session() {
    within(async {
        let (srv, cert, _dir) = start_tls("resume", |_| {}).await;
        // One configuration, so one client-side session cache.
        let config = client_config(&[&cert], &[b"http/1.1"], BOTH);
        let mut first = connect(srv.addr, config.clone()).await;
        // TLS 1.3 tickets arrive after the handshake: read until the
        // server has sent them (a request and its answer follow them).
        first
            .write_all(
                format!("GET /healthz HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .expect("write");
        let mut answer = Vec::new();
        let _ = bounded(STEP, "answer", first.read_to_end(&mut answer)).await;
        let second = connect(srv.addr, config).await;
        assert_eq!(
            second.get_ref().1.handshake_kind(),
            Some(rustls::HandshakeKind::Resumed)
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_tls_reader_is_closed_by_the_write_deadline() {
    within(async {
        let (srv, cert, _dir) = start_tls("stalled-reader", |c| {
            c.heartbeat = Duration::from_millis(200);
            c.max_subscriber_backlog = 64 * 1024 * 1024;
        })
        .await;
        let config = client_config(&[&cert], &[b"http/1.1"], BOTH);
        // A tiny receive window, the head read, then nothing more.
        let tcp = support::connect_raw(srv.addr, Some(4096)).await;
        let name = rustls::pki_types::ServerName::try_from(HOST).expect("name");
        let mut stalled = bounded(
            STEP,
            "handshake",
            tokio_rustls::TlsConnector::from(config.clone()).connect(name, tcp),
        )
        .await
        .expect("handshake");
        let head = raw_h1_stream(&mut stalled, "big").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        wait_for(&srv.stats, "the stalled stream", |s| s.subscribers == 1).await;

        let mut publisher = Sender::open(srv.addr, config.clone()).await;
        let big = "x".repeat(16 * 1024);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while srv.stats().subscribers == 1 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the stalled TLS stream was not closed"
            );
            let (status, _) = publisher.text(Method::POST, "/publish?topic=big", &big).await;
            assert_eq!(status, StatusCode::OK);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s = srv.stats();
        assert_eq!(
            s.dropped_full, 0,
            "dropped for its backlog, not by the write deadline: {s:?}"
        );
        let m = tls_metrics(srv.addr, config).await;
        assert!(m.int("ssehub_subscribers_closed_dead_total") >= 1, "{}", m.text);
        drop(stalled);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tls_h2_connection_that_stops_answering_pings_is_closed() {
    within(async {
        let (srv, cert, _dir) = start_tls("ping", |c| {
            c.h2_keepalive = Duration::from_millis(200);
            c.h2_keepalive_timeout = Duration::from_millis(300);
            c.heartbeat = Duration::from_secs(60);
        })
        .await;
        // TLS passes through the proxy untouched; it can go silent at will.
        let proxy = support::BlackholeProxy::start(srv.addr, 4096).await;
        let (_sender, mut events) = tls_stream_at(proxy.addr, &cert, b"h2").await;
        events.opening_retry().await;
        wait_for(&srv.stats, "one HTTP/2 stream", |s| s.open_http2 == 1).await;

        proxy.blackhole();
        let blackholed = tokio::time::Instant::now();
        wait_for(&srv.stats, "the silent TLS h2 connection to be closed", |s| {
            s.open_http2 == 0
        })
        .await;
        assert!(
            blackholed.elapsed() < Duration::from_secs(3),
            "closed after {:?}",
            blackholed.elapsed()
        );
        let m = tls_metrics(srv.addr, h2_and_h1(&cert)).await;
        assert!(m.int("ssehub_subscribers_closed_dead_total") >= 1, "{}", m.text);
        drop(events);
        drop(proxy);
    })
    .await;
}
