//! HTTP/2 with prior knowledge (h2c) on the same port: the advertised
//! SETTINGS_MAX_CONCURRENT_STREAMS, and many event streams multiplexed on
//! one connection.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Empty;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

/// Connects with the `h2` crate, makes one request so the server's SETTINGS
/// are surely applied, and returns the peer's max concurrent streams.
async fn advertised_max_concurrent_streams(addr: SocketAddr) -> usize {
    let tcp = bounded(STEP, "connect", TcpStream::connect(addr))
        .await
        .expect("connect");
    let (client, connection) = bounded(STEP, "h2 handshake", h2::client::handshake(tcp))
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let mut client = bounded(STEP, "h2 ready", client.ready()).await.expect("ready");
    let req = Request::get(format!("http://{addr}/healthz")).body(()).unwrap();
    let (response, _) = client.send_request(req, true).expect("send_request");
    let response = bounded(STEP, "h2 response", response).await.expect("response");
    assert_eq!(response.status(), StatusCode::OK);
    let mut body = response.into_body();
    while let Some(chunk) = bounded(STEP, "h2 body", body.data()).await {
        chunk.expect("body chunk");
    }
    // The SETTINGS frame precedes the response on the wire; poll briefly in
    // case the connection task has not applied it yet.
    let deadline = tokio::time::Instant::now() + STEP;
    loop {
        let n = client.current_max_send_streams();
        if n != usize::MAX || tokio::time::Instant::now() >= deadline {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn h2c_settings_advertise_configured_max_concurrent_streams() {
    within(async {
        for n in [7u32, 250] {
            let mut config = config();
            config.h2_max_concurrent_streams = n;
            let srv = start(config).await;
            assert_eq!(
                advertised_max_concurrent_streams(srv.addr).await,
                n as usize,
                "SETTINGS_MAX_CONCURRENT_STREAMS"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn h2c_settings_advertise_default_max_concurrent_streams() {
    within(async {
        let srv = start_default().await;
        assert_eq!(advertised_max_concurrent_streams(srv.addr).await, 100);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_event_streams_share_one_h2c_connection() {
    within(async {
        const STREAMS: usize = 50;
        let srv = start_default().await;
        let tcp = TcpStream::connect(srv.addr).await.expect("connect");
        let (mut sender, connection) = bounded(
            STEP,
            "h2c handshake",
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp)),
        )
        .await
        .expect("h2c handshake");
        tokio::spawn(async move {
            let _ = connection.await;
        });

        let mut readers = Vec::new();
        for i in 0..STREAMS {
            bounded(STEP, "h2c sender ready", sender.ready())
                .await
                .expect("sender ready");
            // Half follow one topic, half every topic.
            let path = if i % 2 == 0 {
                "/events?topic=shared"
            } else {
                "/events"
            };
            let req = Request::get(format!("http://{}{path}", srv.addr))
                .body(Empty::<Bytes>::new())
                .unwrap();
            let resp = bounded(STEP, "h2c stream response", sender.send_request(req))
                .await
                .expect("h2c stream");
            assert_eq!(resp.status(), StatusCode::OK, "stream {i}");
            assert_eq!(resp.version(), hyper::Version::HTTP_2);
            assert!(resp.headers().get("connection").is_none());
            let mut reader = SseReader::new(resp.into_body());
            reader.opening_retry().await;
            readers.push(reader);
        }
        wait_subscribers(&srv.stats, STREAMS).await;

        let publisher = Publisher::new(srv.addr);
        let mut ids = Vec::new();
        for k in 0..5 {
            ids.push(
                publisher
                    .publish_ok(Some("shared"), None, &format!("to all {k}"))
                    .await,
            );
        }
        let only_all = publisher
            .publish_ok(Some("elsewhere"), None, "all-topic only")
            .await;
        for (i, reader) in readers.iter_mut().enumerate() {
            for (k, id) in ids.iter().enumerate() {
                let e = reader.next_event(STEP).await;
                assert_eq!(
                    (e.id(), e.data.clone()),
                    (id.as_str(), format!("to all {k}")),
                    "stream {i}"
                );
            }
            if i % 2 == 1 {
                assert_eq!(reader.next_event(STEP).await.id(), only_all, "stream {i}");
            }
        }

        // Ending some streams leaves the others (and the connection) working.
        readers.truncate(STREAMS / 2);
        wait_subscribers(&srv.stats, STREAMS / 2).await;
        let id = publisher.publish_ok(Some("shared"), None, "after").await;
        for (i, reader) in readers.iter_mut().enumerate() {
            assert_eq!(reader.next_event(STEP).await.id(), id, "stream {i}");
        }
    })
    .await;
}

#[tokio::test]
async fn h2c_client_streams_and_publishes_over_the_legacy_client() {
    within(async {
        let srv = start_default().await;
        let client = h2c_client();
        let (status, _, mut a) = open_stream(&client, srv.addr, "/events?topic=x", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, mut b) = open_stream(&client, srv.addr, "/events?topic=x", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let reply = fetch_with(
            &client,
            srv.addr,
            hyper::Method::POST,
            "/publish?topic=x",
            &[],
            "over h2",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        let id = reply.text().trim_end().to_string();
        for reader in [&mut a, &mut b] {
            let e = reader.next_event(STEP).await;
            assert_eq!((e.id(), e.data.as_str()), (id.as_str(), "over h2"));
        }
    })
    .await;
}
