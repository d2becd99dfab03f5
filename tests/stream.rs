//! `GET /events`: headers on both protocols, the opening `retry:`, the
//! heartbeat, ids, data lines, and topic filtering.

mod common;

use common::*;
use hyper::StatusCode;
use std::collections::HashSet;
use std::time::Duration;

async fn stream_headers_are_sent_at_once(proto: Proto) {
    let srv = start_default().await;
    let client = client(proto);
    // No event exists and none is published: the headers must still come.
    let (status, headers, mut reader) = open_stream(&client, srv.addr, "/events?topic=quiet", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(header_str(&headers, "content-type"), Some("text/event-stream"));
    assert_eq!(header_str(&headers, "cache-control"), Some("no-cache"));
    assert_eq!(header_str(&headers, "x-accel-buffering"), Some("no"));
    match proto {
        Proto::H1 => assert_eq!(
            header_str(&headers, "connection").map(str::to_ascii_lowercase),
            Some("keep-alive".to_string()),
            "HTTP/1.1 stream must say connection: keep-alive"
        ),
        Proto::H2c => assert!(
            headers.get("connection").is_none(),
            "connection header is forbidden on HTTP/2, got {:?}",
            headers.get("connection")
        ),
    }
    assert_eq!(srv.stats().events_published, 0);
    // And the stream is usable.
    reader.opening_retry().await;
    let id = publish_ok(srv.addr, Some("quiet"), None, "hello").await;
    let e = reader.next_event(STEP).await;
    assert_eq!((e.id(), e.data.as_str()), (id.as_str(), "hello"));
}

#[tokio::test]
async fn stream_headers_over_http1_arrive_before_any_event() {
    within(stream_headers_are_sent_at_once(Proto::H1)).await;
}

#[tokio::test]
async fn stream_headers_over_h2c_arrive_before_any_event_without_connection_header() {
    within(stream_headers_are_sent_at_once(Proto::H2c)).await;
}

#[tokio::test]
async fn stream_opens_with_retry_within_jitter_range() {
    within(async {
        let mut config = config();
        config.retry = Duration::from_millis(1000);
        config.retry_jitter = Duration::from_millis(500);
        let srv = start(config).await;
        let mut seen = HashSet::new();
        for _ in 0..20 {
            let mut reader = subscribe(srv.addr, "").await;
            let retry = reader.opening_retry().await;
            assert!(
                (1000..=1500).contains(&retry),
                "retry {retry} outside 1000..=1500"
            );
            seen.insert(retry);
        }
        assert!(
            seen.len() > 1,
            "20 connections all got the same retry {seen:?}: no per-connection jitter"
        );
    })
    .await;
}

#[tokio::test]
async fn stream_retry_without_jitter_is_exactly_retry() {
    within(async {
        let mut config = config();
        config.retry = Duration::from_millis(2500);
        config.retry_jitter = Duration::ZERO;
        let srv = start(config).await;
        for proto in [Proto::H1, Proto::H2c] {
            for _ in 0..5 {
                let (status, _, mut reader) = open_stream(&client(proto), srv.addr, "/events", &[]).await;
                assert_eq!(status, StatusCode::OK);
                assert_eq!(reader.opening_retry().await, 2500, "{proto:?}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn idle_stream_gets_heartbeat_comments() {
    within(async {
        let mut config = config();
        config.heartbeat = Duration::from_millis(100);
        let srv = start(config).await;
        for proto in [Proto::H1, Proto::H2c] {
            let (_, _, mut reader) = open_stream(&client(proto), srv.addr, "/events?topic=idle", &[]).await;
            reader.opening_retry().await;
            // Several in a row, each well within a few intervals.
            for _ in 0..3 {
                reader.next_comment(Duration::from_secs(2)).await;
            }
        }
    })
    .await;
}

#[tokio::test]
async fn event_ids_increase_in_publish_order() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "").await;
        let publisher = Publisher::new(srv.addr);
        let mut ids = Vec::new();
        for i in 0..50 {
            let topic = if i % 2 == 0 { Some("a") } else { None };
            ids.push(publisher.publish_ok(topic, None, &format!("e{i}")).await);
        }
        let width = ids[0].len();
        for pair in ids.windows(2) {
            assert!(
                parse_id(&pair[0]) < parse_id(&pair[1]),
                "ids not increasing: {pair:?}"
            );
        }
        assert!(
            ids.iter().all(|id| id.len() == width),
            "ids of unequal width: {ids:?}"
        );
        let events = reader.next_events(50, STEP).await;
        for (i, (e, id)) in events.iter().zip(&ids).enumerate() {
            assert_eq!(e.id(), id, "event {i} carries another id than publish answered");
            assert_eq!(e.data, format!("e{i}"));
        }
    })
    .await;
}

#[tokio::test]
async fn multi_line_data_reaches_client_joined_by_lf_for_every_line_ending() {
    within(async {
        let srv = start_default().await;
        let cases: &[(&str, &str)] = &[
            ("one line", "one line"),
            ("a\nb", "a\nb"),
            ("a\r\nb", "a\nb"),
            ("a\rb", "a\nb"),
            ("a\nb\r\nc\rd", "a\nb\nc\nd"),
            ("a\r\n\r\nb", "a\n\nb"),
            ("\n\nmiddle\n", "\n\nmiddle\n"),
            ("trailing\r\n", "trailing\n"),
            ("", ""),
            (" leading space", " leading space"),
            (
                "data: looks like a field\n: and a comment",
                "data: looks like a field\n: and a comment",
            ),
            ("héllo 🌍\nсвет", "héllo 🌍\nсвет"),
        ];
        for proto in [Proto::H1, Proto::H2c] {
            let (_, _, mut reader) = open_stream(&client(proto), srv.addr, "/events?topic=lines", &[]).await;
            let publisher = Publisher::new(srv.addr);
            for (sent, _) in cases {
                publisher.publish_ok(Some("lines"), Some("multi"), sent).await;
            }
            for (sent, expected) in cases {
                let e = reader.next_event(STEP).await;
                assert_eq!(e.name(), "multi");
                assert_eq!(&e.data, expected, "{proto:?}: published {sent:?}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn subscribers_receive_only_their_topics() {
    within(async {
        let srv = start_default().await;
        let mut only_a = subscribe(srv.addr, "?topic=a").await;
        let mut only_b = subscribe(srv.addr, "?topic=b").await;
        let mut a_and_b = subscribe(srv.addr, "?topic=a&topic=b").await;
        let mut every = subscribe(srv.addr, "").await;
        wait_subscribers(&srv.stats, 4).await;

        let publisher = Publisher::new(srv.addr);
        let plan: &[(Option<&str>, &str)] = &[
            (Some("a"), "a1"),
            (Some("b"), "b1"),
            (Some("c"), "c1"),
            (None, "none1"),
            (Some("a"), "a2"),
            (Some("b"), "b2"),
            (Some("c"), "c2"),
            (None, "none2"),
            // Last, so that anything wrongly delivered shows up before them.
            (Some("a"), "a-end"),
            (Some("b"), "b-end"),
        ];
        for (topic, data) in plan {
            publisher.publish_ok(*topic, None, data).await;
        }

        async fn datas(reader: &mut SseReader, n: usize) -> Vec<String> {
            reader.next_data(n, STEP).await
        }
        assert_eq!(datas(&mut only_a, 3).await, ["a1", "a2", "a-end"]);
        assert_eq!(datas(&mut only_b, 3).await, ["b1", "b2", "b-end"]);
        assert_eq!(
            datas(&mut a_and_b, 6).await,
            ["a1", "b1", "a2", "b2", "a-end", "b-end"]
        );
        let all: Vec<&str> = plan.iter().map(|(_, d)| *d).collect();
        assert_eq!(datas(&mut every, plan.len()).await, all);
    })
    .await;
}

#[tokio::test]
async fn repeated_topic_in_subscription_delivers_each_event_once() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "?topic=a&topic=a").await;
        publish_ok(srv.addr, Some("a"), None, "first").await;
        publish_ok(srv.addr, Some("a"), None, "second").await;
        let got: Vec<String> = reader.next_data(2, STEP).await;
        assert_eq!(got, ["first", "second"]);
    })
    .await;
}

#[tokio::test]
async fn event_without_topic_reaches_only_all_topic_subscribers() {
    within(async {
        let srv = start_default().await;
        let mut on_topic = subscribe(srv.addr, "?topic=t").await;
        let mut on_all = subscribe(srv.addr, "").await;
        wait_subscribers(&srv.stats, 2).await;

        let untopical = publish_ok(srv.addr, None, None, "to everyone").await;
        let marker = publish_ok(srv.addr, Some("t"), None, "marker").await;

        let e = on_all.next_event(STEP).await;
        assert_eq!((e.id(), e.data.as_str()), (untopical.as_str(), "to everyone"));
        let e = on_all.next_event(STEP).await;
        assert_eq!(e.id(), marker);

        // The topic subscriber's first event must be the marker, not the
        // event published without a topic.
        let e = on_topic.next_event(STEP).await;
        assert_eq!((e.id(), e.data.as_str()), (marker.as_str(), "marker"));
    })
    .await;
}

#[tokio::test]
async fn subscribe_with_invalid_topic_is_refused() {
    within(async {
        let srv = start_default().await;
        for query in [
            "?topic=a%0Ab",
            "?topic=a%0Db",
            "?topic=a%00b",
            "?topic=a%20b",
            "?topic=%zz",
            "?topic=%4",
        ] {
            let reply = get(srv.addr, &format!("/events{query}")).await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "GET /events{query}");
            let text = reply.text();
            assert!(
                text.ends_with('\n') && !text.trim_end().is_empty() && !text.trim_end().contains('\n'),
                "GET /events{query}: body is not one line: {text:?}"
            );
        }
        assert_eq!(srv.stats().subscribers, 0);
    })
    .await;
}

#[tokio::test]
async fn healthz_answers_ok() {
    within(async {
        let srv = start_default().await;
        let reply = get(srv.addr, "/healthz").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text().trim_end(), "ok");
        let reply = fetch_with(
            &h2c_client(),
            srv.addr,
            hyper::Method::GET,
            "/healthz",
            &[],
            bytes::Bytes::new(),
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text().trim_end(), "ok");
    })
    .await;
}
