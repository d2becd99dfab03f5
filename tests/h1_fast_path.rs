//! HTTP/1.1 event streams are written by ssehub itself rather than hyper
//! (see `src/h1_stream.rs`). These tests speak raw HTTP/1.1 over a socket to
//! pin down what that path promises: the same wire behaviour as hyper, the
//! connection handed back for the next request when a stream ends, and
//! anything unusual left to hyper.

mod common;

use common::*;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reads from `sock` until `needle` has arrived (or panics at `limit`);
/// returns everything read.
async fn read_until(sock: &mut TcpStream, got: &mut Vec<u8>, needle: &str, limit: Duration) -> String {
    bounded(limit, &format!("waiting for {needle:?}"), async {
        let mut buf = [0u8; 4096];
        while !String::from_utf8_lossy(got).contains(needle) {
            let n = sock.read(&mut buf).await.expect("read");
            assert!(
                n > 0,
                "connection closed before {needle:?}; got {:?}",
                String::from_utf8_lossy(got)
            );
            got.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    String::from_utf8_lossy(got).into_owned()
}

/// True when the server closes the connection within `limit`.
async fn closed_within(sock: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, sock.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

/// Connects, sends `request`, and waits until the stream has opened (its
/// `retry:` arrived) and the hub has registered it.
async fn open_raw_stream(srv: &TestServer, request: &[u8]) -> (TcpStream, Vec<u8>) {
    let mut sock = TcpStream::connect(srv.addr).await.unwrap();
    sock.write_all(request).await.unwrap();
    let mut got = Vec::new();
    read_until(&mut sock, &mut got, "retry: ", STEP).await;
    wait_subscribers(&srv.stats, 1).await;
    (sock, got)
}

/// Asserts the connection answers another request: keep-alive works.
async fn assert_serves_next_request(sock: &mut TcpStream) {
    let mut got = Vec::new();
    sock.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let text = read_until(sock, &mut got, "ok\n", STEP).await;
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
}

#[tokio::test]
async fn connection_serves_the_next_request_after_a_stream_ends() {
    within(async {
        let srv = start_default().await;
        let (mut sock, mut got) =
            open_raw_stream(&srv, b"GET /events?topic=news HTTP/1.1\r\nHost: x\r\n\r\n").await;
        let reply = post(srv.addr, "/close?topic=news", &[], "").await;
        assert_eq!(reply.status, 200);
        // The close event, then the chunked body's last chunk.
        let text = read_until(&mut sock, &mut got, "\r\n0\r\n\r\n", STEP).await;
        assert!(text.contains("event: close\ndata: news\n\n"), "{text}");
        // Keep-alive: the same connection answers another request.
        assert_serves_next_request(&mut sock).await;
    })
    .await;
}

#[tokio::test]
async fn connection_close_is_honoured_when_the_stream_ends() {
    within(async {
        let srv = start_default().await;
        let (mut sock, mut got) = open_raw_stream(
            &srv,
            b"GET /events?topic=a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        post(srv.addr, "/close?topic=a", &[], "").await;
        read_until(&mut sock, &mut got, "\r\n0\r\n\r\n", STEP).await;
        assert!(
            closed_within(&mut sock, STEP).await,
            "the server kept a Connection: close connection open"
        );
    })
    .await;
}

#[tokio::test]
async fn head_is_the_same_as_hyper_would_send() {
    within(async {
        let srv = start_default().await;
        let mut sock = TcpStream::connect(srv.addr).await.unwrap();
        sock.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\nOrigin: https://nowhere.example\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let text = read_until(&mut sock, &mut got, "\r\n\r\n", STEP).await;
        let head = text.split("\r\n\r\n").next().unwrap().to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200 ok\r\n"), "{head}");
        for line in [
            "content-type: text/event-stream",
            "cache-control: no-cache",
            "x-accel-buffering: no",
            "connection: keep-alive",
            "transfer-encoding: chunked",
        ] {
            assert!(head.lines().any(|l| l == line), "missing {line:?} in {head}");
        }
        assert!(head.lines().any(|l| l.starts_with("date: ")), "{head}");
        assert!(!head.contains("content-length"), "{head}");
        assert!(!head.contains("access-control"), "no CORS configured: {head}");
    })
    .await;
}

#[tokio::test]
async fn a_refusal_on_the_stream_path_has_a_length_and_keeps_the_connection() {
    within(async {
        let srv = start_default().await;
        let mut sock = TcpStream::connect(srv.addr).await.unwrap();
        sock.write_all(b"GET /events?topic=%zz HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let text = read_until(&mut sock, &mut got, "'%zz'\n", STEP).await;
        assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
        assert!(text.to_ascii_lowercase().contains("content-length: "), "{text}");
        assert_serves_next_request(&mut sock).await;
    })
    .await;
}

#[tokio::test]
async fn no_content_for_closed_topics_has_no_body_or_length() {
    within(async {
        let srv = start_default().await;
        post(srv.addr, "/close?topic=gone", &[], "").await;
        let mut sock = TcpStream::connect(srv.addr).await.unwrap();
        sock.write_all(b"GET /events?topic=gone HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let mut got = Vec::new();
        let text = read_until(&mut sock, &mut got, "\r\n\r\n", STEP).await;
        assert!(text.starts_with("HTTP/1.1 204 No Content\r\n"), "{text}");
        assert!(!text.to_ascii_lowercase().contains("content-length"), "{text}");
        // Nothing follows the head: the next bytes are the next answer.
        assert_serves_next_request(&mut sock).await;
    })
    .await;
}

#[tokio::test]
async fn pipelined_requests_are_left_to_hyper_and_still_answered() {
    within(async {
        let srv = start_default().await;
        let mut sock = TcpStream::connect(srv.addr).await.unwrap();
        // Two requests in one write: the stream request cannot take the
        // fast path (bytes follow its head), and hyper serves both in order.
        sock.write_all(
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /events?topic=p HTTP/1.1\r\nHost: x\r\n\r\n",
        )
        .await
        .unwrap();
        let mut got = Vec::new();
        read_until(&mut sock, &mut got, "retry: ", STEP).await;
        wait_subscribers(&srv.stats, 1).await;
        publish_ok(srv.addr, Some("p"), None, "pipelined").await;
        let text = read_until(&mut sock, &mut got, "data: pipelined\n", STEP).await;
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    })
    .await;
}

#[tokio::test]
async fn a_stream_request_with_a_body_is_served_by_hyper() {
    within(async {
        let srv = start_default().await;
        let (mut sock, mut got) = open_raw_stream(
            &srv,
            b"GET /events?topic=b HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi",
        )
        .await;
        publish_ok(srv.addr, Some("b"), None, "with body").await;
        read_until(&mut sock, &mut got, "data: with body\n", STEP).await;
    })
    .await;
}

#[tokio::test]
async fn a_client_that_disconnects_is_unregistered_at_once() {
    within(async {
        let srv = start_default().await;
        let (sock, _) = open_raw_stream(&srv, b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n").await;
        drop(sock);
        // No event needs to be written for the server to notice.
        wait_subscribers(&srv.stats, 0).await;
    })
    .await;
}
