//! `POST /close?topic=T`: the `close` event, the end of streams left with
//! no open topic, 204 for later subscribers, 410 for later publishers.

mod common;

use common::*;
use hyper::StatusCode;

async fn close(srv: &TestServer, topic: &str) -> Reply {
    post(srv.addr, &format!("/close?topic={}", pct(topic)), &[], "").await
}

#[tokio::test]
async fn close_sends_close_event_and_ends_a_stream_with_no_open_topic() {
    within(async {
        let srv = start_default().await;
        for proto in [Proto::H1, Proto::H2c] {
            let topic = format!("news-{proto:?}");
            let (status, _, mut reader) =
                open_stream(&client(proto), srv.addr, &format!("/events?topic={topic}"), &[]).await;
            assert_eq!(status, StatusCode::OK);
            let id = publish_ok(srv.addr, Some(&topic), None, "last words").await;
            let reply = close(&srv, &topic).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());

            let e = reader.next_event(STEP).await;
            assert_eq!((e.id(), e.data.as_str()), (id.as_str(), "last words"));
            let e = reader.next_event(STEP).await;
            assert_eq!(e.name(), "close", "{proto:?}: {e:?}");
            assert_eq!(e.data, topic);
            reader.expect_end(STEP).await;
        }
        wait_subscribers(&srv.stats, 0).await;
    })
    .await;
}

#[tokio::test]
async fn stream_ends_when_its_last_open_topic_closes() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "?topic=a&topic=b").await;
        assert_eq!(close(&srv, "a").await.status, StatusCode::OK);
        let e = reader.next_event(STEP).await;
        assert_eq!((e.name(), e.data.as_str()), ("close", "a"));
        let id = publish_ok(srv.addr, Some("b"), None, "still here").await;
        assert_eq!(reader.next_event(STEP).await.id(), id);
        assert_eq!(close(&srv, "b").await.status, StatusCode::OK);
        let e = reader.next_event(STEP).await;
        assert_eq!((e.name(), e.data.as_str()), ("close", "b"));
        reader.expect_end(STEP).await;
    })
    .await;
}

#[tokio::test]
async fn stream_on_an_open_topic_continues_after_close() {
    within(async {
        let srv = start_default().await;
        let mut both = subscribe(srv.addr, "?topic=closing&topic=open").await;
        let mut only_open = subscribe(srv.addr, "?topic=open").await;
        wait_subscribers(&srv.stats, 2).await;

        assert_eq!(close(&srv, "closing").await.status, StatusCode::OK);
        let e = both.next_event(STEP).await;
        assert_eq!((e.name(), e.data.as_str()), ("close", "closing"));

        let id = publish_ok(srv.addr, Some("open"), None, "after close").await;
        let e = both.next_event(STEP).await;
        assert_eq!((e.id(), e.data.as_str()), (id.as_str(), "after close"));
        // Subscribers of other topics see nothing of the close.
        let e = only_open.next_event(STEP).await;
        assert_eq!((e.id(), e.data.as_str()), (id.as_str(), "after close"));
        assert_eq!(srv.stats().subscribers, 2);
    })
    .await;
}

#[tokio::test]
async fn all_topic_stream_continues_after_close() {
    within(async {
        let srv = start_default().await;
        let mut every = subscribe(srv.addr, "").await;
        assert_eq!(close(&srv, "gone").await.status, StatusCode::OK);
        // A subscriber of every topic is a subscriber of the closed one.
        let e = every.next_event(STEP).await;
        assert_eq!((e.name(), e.data.as_str()), ("close", "gone"));
        let id = publish_ok(srv.addr, Some("other"), None, "goes on").await;
        let e = every.next_event(STEP).await;
        assert_eq!((e.id(), e.data.as_str()), (id.as_str(), "goes on"));
        let id = publish_ok(srv.addr, None, None, "no topic").await;
        assert_eq!(every.next_event(STEP).await.id(), id);
        assert_eq!(srv.stats().subscribers, 1);
    })
    .await;
}

#[tokio::test]
async fn subscribing_only_to_closed_topics_gets_204() {
    within(async {
        let srv = start_default().await;
        assert_eq!(close(&srv, "a").await.status, StatusCode::OK);
        assert_eq!(close(&srv, "b").await.status, StatusCode::OK);
        for proto in [Proto::H1, Proto::H2c] {
            for query in ["?topic=a", "?topic=a&topic=b"] {
                let reply = fetch_with(
                    &client(proto),
                    srv.addr,
                    hyper::Method::GET,
                    &format!("/events{query}"),
                    &[],
                    bytes::Bytes::new(),
                )
                .await;
                assert_eq!(reply.status, StatusCode::NO_CONTENT, "{proto:?} /events{query}");
                assert!(reply.body.is_empty());
            }
        }
        assert_eq!(srv.stats().subscribers, 0);
        // One open topic among them is enough for a stream. (Whether it
        // first says `close` for the closed one is not specified: allow it.)
        let mut reader = subscribe(srv.addr, "?topic=a&topic=c").await;
        let id = publish_ok(srv.addr, Some("c"), None, "open").await;
        let mut e = reader.next_event(STEP).await;
        while e.name() == "close" {
            assert_eq!(e.data, "a", "close event for a topic that is open: {e:?}");
            e = reader.next_event(STEP).await;
        }
        assert_eq!((e.id(), e.data.as_str()), (id.as_str(), "open"));
    })
    .await;
}

#[tokio::test]
async fn publishing_to_a_closed_topic_is_410() {
    within(async {
        let srv = start_default().await;
        let mut every = subscribe(srv.addr, "").await;
        let id = publish_ok(srv.addr, Some("t"), None, "before").await;
        assert_eq!(close(&srv, "t").await.status, StatusCode::OK);
        let before = srv.stats().events_published;
        let (status, text) = publish(srv.addr, Some("t"), None, "after").await;
        assert_eq!(status, StatusCode::GONE, "{text}");
        let reply = publish_batch(srv.addr, Some("t"), "data: after\n\n").await;
        assert_eq!(reply.status, StatusCode::GONE, "{}", reply.text());
        assert_eq!(srv.stats().events_published, before);

        assert_eq!(every.next_event(STEP).await.id(), id);
        let e = every.next_event(STEP).await;
        assert_eq!((e.name(), e.data.as_str()), ("close", "t"));
        let marker = publish_ok(srv.addr, Some("u"), None, "marker").await;
        assert_eq!(
            every.next_event(STEP).await.id(),
            marker,
            "a refused publish was delivered"
        );
    })
    .await;
}

#[tokio::test]
async fn closing_twice_is_harmless() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "?topic=t&topic=u").await;
        assert_eq!(close(&srv, "t").await.status, StatusCode::OK);
        assert_eq!(close(&srv, "t").await.status, StatusCode::OK);
        let e = reader.next_event(STEP).await;
        assert_eq!((e.name(), e.data.as_str()), ("close", "t"));
        // Exactly one close event: the next event is the marker.
        let marker = publish_ok(srv.addr, Some("u"), None, "marker").await;
        assert_eq!(reader.next_event(STEP).await.id(), marker);
    })
    .await;
}

#[tokio::test]
async fn close_with_bad_or_missing_topic_is_refused() {
    within(async {
        let srv = start_default().await;
        for path in [
            "/close",
            "/close?topic=a%0Ab",
            "/close?topic=%zz",
            "/close?topic=a&topic=b",
        ] {
            let reply = post(srv.addr, path, &[], "").await;
            assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{path}: {}", reply.text());
        }
        assert_eq!(srv.stats().topics_closed, 0);
    })
    .await;
}
