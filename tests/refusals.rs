//! Every refusal says why, in one plain-text line, and a mistyped request
//! is refused rather than half-understood: unknown parameters on
//! `/events`, hyper's own 431 and 400, and the HTTP/1 answers that must
//! close their connection (shed streams, HTTP/1.0 streams).

mod common;
mod support;

use common::*;
use hyper::{Method, StatusCode};
use support::{connect_raw, read_head, read_until_closed};
use tokio::io::AsyncWriteExt;

/// Sends `request` on a fresh raw connection and reads until the server
/// closes it.
async fn raw_exchange(srv: &TestServer, request: &[u8]) -> String {
    let mut sock = connect_raw(srv.addr, None).await;
    sock.write_all(request).await.expect("write request");
    read_until_closed(&mut sock, STEP, "the server to answer and close")
        .await
        .text()
}

/// The body of a raw HTTP/1.1 answer, checked to be one line of plain text.
fn one_line_body(answer: &str) -> &str {
    let (head, body) = answer.split_once("\r\n\r\n").expect("a complete head");
    assert!(
        head.to_ascii_lowercase().contains("content-type: text/plain"),
        "no text/plain in {head:?}"
    );
    assert!(
        body.ends_with('\n') && !body.trim_end().is_empty() && !body.trim_end().contains('\n'),
        "not one line: {body:?}"
    );
    body
}

async fn unknown_events_parameter_is_refused(proto: Proto) {
    within(async {
        let srv = start_default().await;
        let reply = fetch_with(
            &client(proto),
            srv.addr,
            Method::GET,
            "/events?topics=news",
            &[],
            "",
        )
        .await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            reply.text(),
            "unknown parameter `topics`; known: topic, last_event_id, authorization\n"
        );
        assert_eq!(srv.stats().subscribers, 0, "the mistyped request subscribed");
    })
    .await;
}

#[tokio::test]
async fn unknown_events_parameter_is_refused_over_http1() {
    unknown_events_parameter_is_refused(Proto::H1).await;
}

#[tokio::test]
async fn unknown_events_parameter_is_refused_over_h2c() {
    unknown_events_parameter_is_refused(Proto::H2c).await;
}

#[tokio::test]
async fn unknown_events_parameter_is_refused_on_the_fast_path() {
    within(async {
        let srv = start_default().await;
        let mut sock = connect_raw(srv.addr, None).await;
        sock.write_all(b"GET /events?topics=news HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let answer = read_until_closed(&mut sock, STEP, "the refusal").await.text();
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
        assert!(one_line_body(&answer).starts_with("unknown parameter `topics`"));
    })
    .await;
}

#[tokio::test]
async fn oversized_request_head_gets_431_with_a_reason() {
    within(async {
        let srv = start_default().await;
        let mut request = b"GET /events?pad=".to_vec();
        request.extend(std::iter::repeat_n(b'x', 20_000));
        request.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        let answer = raw_exchange(&srv, &request).await;
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer:?}");
        assert_eq!(
            one_line_body(&answer),
            "request headers are over the limit of 16 KiB\n"
        );
    })
    .await;
}

#[tokio::test]
async fn malformed_request_line_gets_400_with_a_reason() {
    within(async {
        let srv = start_default().await;
        let answer = raw_exchange(&srv, b"GET /ev ents HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer:?}");
        assert!(
            one_line_body(&answer).starts_with("malformed request"),
            "{answer:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn http10_stream_says_connection_close_not_keep_alive() {
    within(async {
        let srv = start_default().await;
        let mut sock = connect_raw(srv.addr, None).await;
        sock.write_all(b"GET /events?topic=o HTTP/1.0\r\n\r\n")
            .await
            .expect("write");
        let head = bounded(STEP, "the stream head", read_head(&mut sock))
            .await
            .to_ascii_lowercase();
        assert!(head.starts_with("http/1.0 200"), "{head:?}");
        assert!(head.contains("\r\nconnection: close\r\n"), "{head:?}");
        assert!(!head.contains("keep-alive"), "{head:?}");
        assert!(!head.contains("transfer-encoding"), "{head:?}");
    })
    .await;
}

/// The shed answer over raw HTTP/1.1: `connection: close`, then EOF.
async fn shed_closes_the_connection(request: &[u8]) {
    within(async {
        let mut config = config();
        config.max_connections = 1;
        let srv = start(config).await;
        let mut held = subscribe(srv.addr, "?topic=s").await;
        held.opening_retry().await;
        wait_subscribers(&srv.stats, 1).await;

        let answer = raw_exchange(&srv, request).await;
        let (head, body) = answer.split_once("\r\n\r\n").expect("a complete answer");
        let head = head.to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 200"), "{head:?}");
        assert!(head.contains("content-type: text/event-stream"), "{head:?}");
        assert!(head.contains("\r\nconnection: close"), "{head:?}");
        assert!(body.starts_with("retry: "), "{body:?}");
        assert_eq!(srv.stats().shed, 1);
    })
    .await;
}

#[tokio::test]
async fn shedding_on_the_http1_fast_path_closes_the_connection() {
    shed_closes_the_connection(b"GET /events?topic=s HTTP/1.1\r\nHost: x\r\n\r\n").await;
}

#[tokio::test]
async fn shedding_on_the_hyper_http1_path_closes_the_connection() {
    // A body (even an empty one) sends the request to hyper.
    shed_closes_the_connection(b"GET /events?topic=s HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n").await;
}

#[tokio::test]
async fn shedding_over_h2c_ends_the_stream_and_keeps_the_connection() {
    within(async {
        let mut config = config();
        config.max_connections = 1;
        let srv = start(config).await;
        let mut held = subscribe(srv.addr, "?topic=s").await;
        held.opening_retry().await;
        wait_subscribers(&srv.stats, 1).await;

        let h2 = h2c_client();
        let (status, _, mut shed) = open_stream(&h2, srv.addr, "/events?topic=s", &[]).await;
        assert_eq!(status, StatusCode::OK);
        shed.opening_retry().await;
        shed.expect_end(STEP).await;
        // The same client (one connection) goes on.
        let reply = fetch_with(&h2, srv.addr, Method::GET, "/healthz", &[], "").await;
        assert_eq!(reply.status, StatusCode::OK);
        let m = support::metrics(srv.addr).await;
        assert_eq!(m.int("ssehub_connections_accepted_total"), 3, "{}", m.text);
    })
    .await;
}
