//! Resuming with `Last-Event-ID` (header or `last_event_id` query
//! parameter): replay then live with no gap and no duplicate, and the
//! `reset` event when the id cannot be honoured.

mod common;

use common::*;
use std::time::Duration;

/// Publishes `n` events to `topic` with data `"{prefix}{i}"`; returns their ids.
async fn publish_n(srv: &TestServer, topic: Option<&str>, prefix: &str, n: usize) -> Vec<String> {
    let publisher = Publisher::new(srv.addr);
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        ids.push(publisher.publish_ok(topic, None, &format!("{prefix}{i}")).await);
    }
    ids
}

/// Reads replayed events and then one live event, checking both are exactly
/// what was expected (no gap, no duplicate at the hand-over).
/// Returns the live event's id.
async fn check_replay_then_live(
    srv: &TestServer,
    reader: &mut SseReader,
    expected: &[String],
    topic: &str,
) -> String {
    for id in expected {
        let e = reader.next_event(STEP).await;
        assert_ne!(e.name(), "reset", "unexpected reset: {e:?}");
        assert_eq!(e.id(), id, "replay out of order or with a gap");
    }
    let live = publish_ok(srv.addr, Some(topic), None, "live").await;
    let e = reader.next_event(STEP).await;
    assert_eq!(
        (e.id(), e.data.as_str()),
        (live.as_str(), "live"),
        "first event after the replay must be the live one"
    );
    live
}

#[tokio::test]
async fn replay_via_last_event_id_header_sends_what_followed_then_live() {
    within(async {
        let srv = start_default().await;
        let ids = publish_n(&srv, Some("t"), "e", 6).await;
        let mut reader = subscribe_with(srv.addr, "?topic=t", &[("last-event-id", &ids[2])]).await;
        assert!(reader.opening_retry().await > 0);
        let first = reader.next_event(STEP).await;
        assert_eq!((first.id(), first.data.as_str()), (ids[3].as_str(), "e3"));
        check_replay_then_live(&srv, &mut reader, &ids[4..], "t").await;
    })
    .await;
}

#[tokio::test]
async fn replay_via_query_parameter_sends_what_followed_then_live() {
    within(async {
        let srv = start_default().await;
        let ids = publish_n(&srv, Some("t"), "e", 6).await;
        let mut reader = subscribe(srv.addr, &format!("?topic=t&last_event_id={}", ids[1])).await;
        check_replay_then_live(&srv, &mut reader, &ids[2..], "t").await;
    })
    .await;
}

#[tokio::test]
async fn replay_from_newest_id_sends_nothing_before_live() {
    within(async {
        let srv = start_default().await;
        let ids = publish_n(&srv, Some("t"), "e", 3).await;
        let mut reader = subscribe_with(srv.addr, "?topic=t", &[("last-event-id", &ids[2])]).await;
        check_replay_then_live(&srv, &mut reader, &[], "t").await;
    })
    .await;
}

#[tokio::test]
async fn replay_includes_only_subscribed_topics() {
    within(async {
        let srv = start_default().await;
        let publisher = Publisher::new(srv.addr);
        let start = publisher.publish_ok(Some("a"), None, "before").await;
        let mut expected_a = Vec::new();
        let mut expected_all = Vec::new();
        for i in 0..9 {
            let topic = match i % 3 {
                0 => Some("a"),
                1 => Some("b"),
                _ => None,
            };
            let id = publisher.publish_ok(topic, None, &format!("x{i}")).await;
            if topic == Some("a") {
                expected_a.push(id.clone());
            }
            expected_all.push(id);
        }
        let mut on_a = subscribe_with(srv.addr, "?topic=a", &[("last-event-id", &start)]).await;
        let mut on_all = subscribe_with(srv.addr, "", &[("last-event-id", &start)]).await;
        let live_a = check_replay_then_live(&srv, &mut on_a, &expected_a, "a").await;
        // The all-topic stream also gets the live event on "a" just published.
        expected_all.push(live_a);
        for id in &expected_all {
            assert_eq!(on_all.next_event(STEP).await.id(), id);
        }
    })
    .await;
}

/// Subscribes with `last_id` and checks the stream starts with a `reset`
/// carrying the newest id and a short reason, then goes live (no replay).
/// Returns the id of the live event it published (now the newest).
async fn check_reset(srv: &TestServer, last_id: &str, newest: &str, via_query: bool) -> String {
    let before = srv.stats().events_published;
    let mut reader = if via_query {
        subscribe(srv.addr, &format!("?topic=t&last_event_id={}", pct(last_id))).await
    } else {
        subscribe_with(srv.addr, "?topic=t", &[("last-event-id", last_id)]).await
    };
    assert!(reader.opening_retry().await > 0);
    let reset = reader.next_event(STEP).await;
    assert_eq!(
        reset.name(),
        "reset",
        "last id {last_id:?}: expected a reset, got {reset:?}"
    );
    assert_eq!(
        reset.id.as_deref(),
        Some(newest),
        "reset must carry the newest id"
    );
    assert!(
        !reset.data.trim().is_empty() && !reset.data.contains('\n') && reset.data.len() <= 200,
        "reset reason should be a short line: {:?}",
        reset.data
    );
    assert_eq!(srv.stats().events_published, before);
    let live = publish_ok(srv.addr, Some("t"), None, "live after reset").await;
    let e = reader.next_event(STEP).await;
    assert_eq!(
        (e.id(), e.data.as_str()),
        (live.as_str(), "live after reset"),
        "after a reset the stream goes live with nothing replayed"
    );
    live
}

#[tokio::test]
async fn malformed_last_event_id_gets_reset() {
    within(async {
        let srv = start_default().await;
        let ids = publish_n(&srv, Some("t"), "e", 3).await;
        let mut newest = ids[2].clone();
        for (bad, via_query) in [("abc", false), ("abc", true), ("-1", false), ("12x", false)] {
            newest = check_reset(&srv, bad, &newest, via_query).await;
        }
    })
    .await;
}

#[tokio::test]
async fn unknown_future_last_event_id_gets_reset() {
    within(async {
        let srv = start_default().await;
        let ids = publish_n(&srv, Some("t"), "e", 3).await;
        let future = (parse_id(&ids[2]) + 1000).to_string();
        let newest = check_reset(&srv, &future, &ids[2], false).await;
        let next = (parse_id(&newest) + 1).to_string();
        check_reset(&srv, &next, &newest, true).await;
    })
    .await;
}

#[tokio::test]
async fn last_event_id_older_than_history_gets_reset() {
    within(async {
        let mut config = config();
        config.history = 5;
        let srv = start(config).await;
        let ids = publish_n(&srv, Some("t"), "e", 20).await;
        check_reset(&srv, &ids[0], &ids[19], false).await;
    })
    .await;
}

#[tokio::test]
async fn oldest_resumable_id_replays_the_whole_history() {
    within(async {
        let mut config = config();
        config.history = 5;
        let srv = start(config).await;
        let ids = publish_n(&srv, Some("t"), "e", 20).await;
        // Events 15..20 are the five retained: resuming after 14 misses nothing.
        let mut reader = subscribe_with(srv.addr, "?topic=t", &[("last-event-id", &ids[14])]).await;
        check_replay_then_live(&srv, &mut reader, &ids[15..], "t").await;
    })
    .await;
}

#[tokio::test]
async fn last_event_id_from_another_run_gets_reset() {
    within(async {
        let old_id = {
            let old = start_default().await;
            publish_n(&old, Some("t"), "old", 3).await.pop().unwrap()
        };
        // Ids are derived from the start time; make sure the next run starts
        // in a later millisecond than the one that issued `old_id`.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let srv = start_default().await;
        let ids = publish_n(&srv, Some("t"), "new", 3).await;
        assert!(
            !ids.contains(&old_id),
            "a new run reissued an id of the old run: {old_id}"
        );
        check_reset(&srv, &old_id, &ids[2], false).await;
    })
    .await;
}

#[tokio::test]
async fn reset_id_resumes_without_a_gap() {
    within(async {
        let srv = start_default().await;
        publish_n(&srv, Some("t"), "e", 3).await;
        let mut reader = subscribe_with(srv.addr, "?topic=t", &[("last-event-id", "abc")]).await;
        let reset = reader.next_event(STEP).await;
        assert_eq!(reset.name(), "reset");
        drop(reader);
        // Events published after the reset are replayed to a client that
        // comes back with the reset's id.
        let after = publish_n(&srv, Some("t"), "after", 4).await;
        let mut reader = subscribe_with(srv.addr, "?topic=t", &[("last-event-id", reset.id())]).await;
        check_replay_then_live(&srv, &mut reader, &after, "t").await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn replay_after_reconnect_has_no_gap_or_duplicate_under_concurrent_publishing() {
    within(async {
        let mut config = config();
        // Large enough that no reconnect can legitimately need a reset.
        config.history = 10_000;
        let srv = start(config).await;
        const TOTAL: usize = 2000;
        const RECONNECT_EVERY: usize = 40;

        let mut reader = subscribe(srv.addr, "?topic=t").await;
        wait_subscribers(&srv.stats, 1).await;

        let publisher = Publisher::new(srv.addr);
        let publishing = tokio::spawn(async move {
            let mut on_t = Vec::new();
            for i in 0..TOTAL {
                // Every third event goes to another topic the client does not want.
                let topic = if i % 3 == 2 { "u" } else { "t" };
                let id = publisher
                    .publish_ok(Some(topic), None, &format!("{topic}{i}"))
                    .await;
                if topic == "t" {
                    on_t.push(id);
                }
            }
            on_t
        });
        let expected_count = (0..TOTAL).filter(|i| i % 3 != 2).count();

        let mut received: Vec<String> = Vec::new();
        let mut since_connect = 0;
        let mut reconnects = 0;
        let mut reconnects_while_publishing = 0;
        while received.len() < expected_count {
            let must_reconnect = match reader.next_item(Duration::from_secs(2)).await {
                // Quiet for 2 s: once the publisher is done, what is missing
                // is missing for good (reported below).
                None if publishing.is_finished() => break,
                None | Some(Item::Comment(_) | Item::Retry(_)) => false,
                Some(Item::Event(e)) => {
                    assert_ne!(
                        e.name(),
                        "reset",
                        "reset on reconnect after {:?}: {e:?}",
                        received.last()
                    );
                    assert_eq!(e.data.chars().next(), Some('t'), "event of another topic: {e:?}");
                    received.push(e.id().to_string());
                    since_connect += 1;
                    since_connect >= RECONNECT_EVERY && received.len() < expected_count
                }
                // Dropped (e.g. as a slow subscriber): resume like a client would.
                Some(Item::End) => true,
            };
            if must_reconnect {
                let last = received.last().expect("at least one event").clone();
                if !publishing.is_finished() {
                    reconnects_while_publishing += 1;
                }
                drop(reader);
                reader = if reconnects % 2 == 0 {
                    subscribe_with(srv.addr, "?topic=t", &[("last-event-id", &last)]).await
                } else {
                    subscribe(srv.addr, &format!("?topic=t&last_event_id={last}")).await
                };
                reconnects += 1;
                since_connect = 0;
            }
        }
        let published = bounded(Duration::from_secs(20), "the publisher", publishing)
            .await
            .expect("publisher task");
        assert_eq!(published.len(), expected_count);
        if let Some(problem) = difference(&received, &published) {
            panic!("received ids differ from published ids: {problem}");
        }
        // Nothing more is owed: the next event must be a fresh one.
        let marker = publish_ok(srv.addr, Some("t"), None, "tmarker").await;
        let e = reader.next_event(STEP).await;
        assert_eq!(
            e.id(),
            marker,
            "extra event after all published ones were received"
        );
        assert!(
            reconnects_while_publishing >= 3,
            "only {reconnects_while_publishing} reconnects happened while publishing ({reconnects} in all)"
        );
    })
    .await;
}

/// Where `received` first departs from `published`, described.
fn difference(received: &[String], published: &[String]) -> Option<String> {
    let at = match received.iter().zip(published).position(|(r, p)| r != p) {
        Some(at) => at,
        None if received.len() == published.len() => return None,
        None => received.len().min(published.len()),
    };
    let kind = match (received.get(at), published.get(at)) {
        (Some(r), _) if received[..at].contains(r) => "a duplicate",
        (Some(_), Some(p)) if !received.contains(p) => "a gap",
        (None, Some(_)) => "missing events at the end",
        (Some(_), None) => "extra events at the end",
        _ => "a reordering",
    };
    Some(format!(
        "{kind} at index {at}: received {:?}, published {:?} (received {} ids, published {})",
        received.get(at),
        published.get(at),
        received.len(),
        published.len()
    ))
}
