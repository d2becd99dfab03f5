//! SIGTERM on the real binary: every stream ends with a spread-out `retry:`,
//! the process exits 0 within its grace period, and every publish that was
//! acknowledged reaches every subscriber first.

mod common;
mod support;

use common::*;
use hyper::StatusCode;
use std::collections::{BTreeSet, HashSet};
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// Reads a stream to its end; returns every item after the opening `retry:`
/// (ending with `Item::End`). Panics if it is not over within `limit`.
async fn drain(reader: &mut SseReader, limit: Duration) -> Vec<Item> {
    let deadline = Instant::now() + limit;
    let mut items = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match reader.next_item(left).await {
            None => panic!("stream still open {limit:?} later; got {items:?}"),
            Some(Item::End) => {
                items.push(Item::End);
                return items;
            }
            Some(item) => items.push(item),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_ends_every_stream_with_a_retry_and_exits_zero_in_grace() {
    within(async {
        let mut hub =
            HubProcess::spawn(&["--shutdown-grace", "2s", "--retry", "1s", "--retry-jitter", "2s"]).await;
        let addr = hub.addr;

        // 15 streams over HTTP/1.1 (a connection each) and 15 over h2c
        // (three connections of five).
        let mut streams: Vec<(String, SseReader)> = Vec::new();
        for i in 0..15 {
            let mut r = subscribe(addr, "?topic=s").await;
            let opening = r.opening_retry().await;
            assert!((1000..=3000).contains(&opening), "opening retry {opening}");
            streams.push((format!("http1 #{i}"), r));
        }
        let h2_clients: Vec<HttpClient> = (0..3).map(|_| h2c_client()).collect();
        for i in 0..15 {
            let (status, _, mut r) = open_stream(&h2_clients[i % 3], addr, "/events?topic=s", &[]).await;
            assert_eq!(status, StatusCode::OK);
            r.opening_retry().await;
            streams.push((format!("h2c #{i}"), r));
        }

        let id = publish_ok(addr, Some("s"), None, "before the end").await;
        for (name, r) in &mut streams {
            let e = r.next_event(STEP).await;
            assert_eq!(
                (e.id(), e.data.as_str()),
                (id.as_str(), "before the end"),
                "{name}"
            );
        }

        let readers: Vec<_> = streams
            .into_iter()
            .map(|(name, mut r)| {
                tokio::spawn(async move { (name, drain(&mut r, Duration::from_secs(10)).await) })
            })
            .collect();

        let signalled = Instant::now();
        hub.signal(libc::SIGTERM);
        // Grace 2 s + 1 s; the margin is for a loaded machine.
        let status = hub.wait_exit(Duration::from_secs(10)).await;
        let exited_after = signalled.elapsed();
        let log = hub.log();
        assert!(
            status.success(),
            "ssehub exited with {status} after SIGTERM; stderr:\n{log}"
        );
        assert!(
            exited_after <= Duration::from_secs(3),
            "ssehub took {exited_after:?} to exit after SIGTERM (grace 2s + 1s); stderr:\n{log}"
        );

        let mut finals = Vec::new();
        for task in readers {
            let (name, items) = bounded(STEP, "a stream's end", task).await.unwrap();
            let n = items.len();
            assert!(
                n >= 2 && matches!(items[n - 2], Item::Retry(_)),
                "{name} did not end with a retry: field right before its end: {items:?}"
            );
            assert!(
                !items.iter().any(|i| matches!(i, Item::Event(_))),
                "{name} got an unexpected event: {items:?}"
            );
            let Item::Retry(ms) = items[n - 2] else {
                unreachable!()
            };
            assert!(
                (1000..=3000).contains(&ms),
                "{name}'s final retry {ms} ms outside --retry 1s + up to --retry-jitter 2s"
            );
            finals.push(ms);
        }
        let distinct: HashSet<u64> = finals.iter().copied().collect();
        assert!(
            distinct.len() >= 5,
            "final retry values are not spread out: {} distinct in {finals:?}",
            distinct.len()
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publish_accepted_before_sigterm_reaches_every_subscriber() {
    within(async {
        let mut hub =
            HubProcess::spawn(&["--shutdown-grace", "2s", "--max-subscriber-backlog", "67108864"]).await;
        let addr = hub.addr;

        let mut streams: Vec<(String, SseReader)> = Vec::new();
        for i in 0..4 {
            let mut r = subscribe(addr, "?topic=p").await;
            r.opening_retry().await;
            streams.push((format!("http1 #{i}"), r));
        }
        let h2 = h2c_client();
        for i in 0..4 {
            let (status, _, mut r) = open_stream(&h2, addr, "/events?topic=p", &[]).await;
            assert_eq!(status, StatusCode::OK);
            r.opening_retry().await;
            streams.push((format!("h2c #{i}"), r));
        }
        // Every stream is registered: one event reaches them all.
        let first = publish_ok(addr, Some("p"), None, "first").await;
        for (name, r) in &mut streams {
            assert_eq!(r.next_event(STEP).await.id(), first, "{name}");
        }
        let readers: Vec<_> = streams
            .into_iter()
            .map(|(name, mut r)| {
                tokio::spawn(async move { (name, drain(&mut r, Duration::from_secs(10)).await) })
            })
            .collect();

        // A second publisher keeps publishing through the signal; whatever it
        // got a 200 for must be delivered too.
        let racing = tokio::spawn(async move {
            let client = http1_client();
            let mut accepted = Vec::new();
            let mut i = 0;
            loop {
                match try_publish(&client, addr, "p", &format!("racing {i}")).await {
                    Some((StatusCode::OK, id)) => accepted.push(id),
                    _ => return accepted,
                }
                i += 1;
            }
        });

        // A publish in flight across the signal: its head and half its body
        // now, the rest once shutdown has begun. It must be let finish.
        let mut slow = connect_raw(addr, None).await;
        slow.write_all(b"POST /publish?topic=p HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\nslow")
            .await
            .unwrap();

        // Back to back, then SIGTERM right after the last 200.
        let client = http1_client();
        let mut accepted = vec![first];
        for i in 0..40 {
            match try_publish(&client, addr, "p", &format!("main {i}")).await {
                Some((StatusCode::OK, id)) => accepted.push(id),
                other => panic!("publish {i} before the signal failed: {other:?}"),
            }
        }
        hub.signal(libc::SIGTERM);

        tokio::time::sleep(Duration::from_millis(100)).await;
        slow.write_all(b" body").await.unwrap();
        let answer = read_until_closed(&mut slow, STEP, "the answer to the publish in flight").await;
        let answer = answer.text();
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "a publish whose body was being read when SIGTERM came was not let finish: {answer:?}"
        );
        let slow_id = answer
            .split_once("\r\n\r\n")
            .map(|(_, body)| body.trim().to_string())
            .unwrap_or_default();
        parse_id(&slow_id);
        accepted.push(slow_id);

        let status = hub.wait_exit(Duration::from_secs(10)).await;
        assert!(
            status.success(),
            "ssehub exited with {status}; stderr:\n{}",
            hub.log()
        );
        let raced = bounded(STEP, "the racing publisher", racing).await.unwrap();
        assert!(!raced.is_empty(), "the racing publisher got nothing published");
        let must: BTreeSet<u64> = accepted.iter().chain(&raced).map(|id| parse_id(id)).collect();

        for task in readers {
            let (name, items) = bounded(STEP, "a stream's end", task).await.unwrap();
            let n = items.len();
            assert!(
                n >= 2 && matches!(items[n - 2], Item::Retry(_)),
                "{name} did not end with a retry: field right before its end: {:?}",
                &items[n.saturating_sub(3)..]
            );
            let got: Vec<u64> = items
                .iter()
                .filter_map(|i| match i {
                    Item::Event(e) => Some(e.id_u64()),
                    _ => None,
                })
                .collect();
            assert!(
                got.windows(2).all(|w| w[0] < w[1]),
                "{name} got events out of order or twice: {got:?}"
            );
            let got: BTreeSet<u64> = got.into_iter().chain([parse_id(&accepted[0])]).collect();
            let missing: Vec<&u64> = must.difference(&got).collect();
            assert!(
                missing.is_empty(),
                "{name} missed {} acknowledged events before its stream ended: {missing:?}",
                missing.len()
            );
        }
    })
    .await;
}
