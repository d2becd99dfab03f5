//! Connection lifecycle: peers that stop reading or answering, slowloris and
//! oversized requests, shedding past `--max-connections`, mass abrupt
//! disconnects, `/metrics`, and `--max-stream-lifetime`.

mod common;
mod support;

use common::*;
use hyper::StatusCode;
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use tokio::io::AsyncWriteExt;
use tokio::time::Instant;

/// The data of the large events used to fill socket buffers.
fn big_data(i: usize) -> String {
    let mut s = format!("{i:06}-");
    s.push_str(&"x".repeat(16 * 1024 - s.len()));
    s
}

/// Publishes 16 KiB events to `topic` every 5 ms until `stop` is set; returns
/// each accepted event's id and when its 200 arrived.
fn spawn_big_publisher(
    addr: std::net::SocketAddr,
    topic: &'static str,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Vec<(String, Instant)>> {
    tokio::spawn(async move {
        let publisher = Publisher::new(addr);
        let mut sent = Vec::new();
        let mut i = 0;
        while !stop.load(Ordering::SeqCst) {
            let id = publisher.publish_ok(Some(topic), None, &big_data(i)).await;
            sent.push((id, Instant::now()));
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        sent
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_reader_is_closed_within_two_heartbeats_while_others_keep_up() {
    within(async {
        let began = Instant::now();
        let mut config = config();
        config.heartbeat = Duration::from_millis(200);
        config.max_subscriber_backlog = 64 * 1024 * 1024;
        let srv = start(config).await;

        // The stalled reader: a tiny receive window, reads the head, then nothing.
        let mut stalled = connect_raw(srv.addr, Some(4096)).await;
        stalled
            .write_all(b"GET /events?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .unwrap();
        let head = read_head(&mut stalled).await;
        assert!(head.starts_with("HTTP/1.1 200"), "stalled stream head: {head:?}");

        let mut reader = subscribe(srv.addr, "?topic=t").await;
        reader.opening_retry().await;
        wait_subscribers(&srv.stats, 2).await;

        // The normal reader records every event and when it arrived.
        let reading = tokio::spawn(async move {
            let mut got = Vec::new();
            loop {
                match reader.next_item(Duration::from_secs(15)).await {
                    Some(Item::Event(e)) => got.push((e, Instant::now())),
                    Some(Item::Comment(_)) => {}
                    other => return (got, other),
                }
            }
        });

        // The server's side of the stalled connection: while what it has
        // queued for sending grows, its writes still make progress; when
        // that stops, its send buffer is full and the write blocks.
        let server_side = ServerSideSocket::find(srv.addr, stalled.local_addr().unwrap())
            .expect("the server's socket of the stalled connection");
        let mut queued = 0;
        let mut last_growth = None;

        let stop = Arc::new(AtomicBool::new(false));
        let publishing = spawn_big_publisher(srv.addr, "t", stop.clone());

        // The server must close the stalled stream (within two heartbeats of
        // its write blocking) while publishing goes on.
        let deadline = began + Duration::from_secs(10);
        loop {
            if let Some(q) = server_side.unacked() {
                if q > queued {
                    queued = q;
                    last_growth = Some(Instant::now());
                }
            }
            let s = srv.stats();
            if s.subscribers == 1 {
                assert_eq!(
                    s.dropped_full, 0,
                    "the stalled reader was dropped for a full queue, not by the write deadline: {s:?}"
                );
                break;
            }
            assert!(
                s.subscribers == 2 && Instant::now() < deadline,
                "stalled reader not closed within 10 s of the start (or the healthy one went too): {s:?}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let closed_at = Instant::now();
        let blocked_at = last_growth.expect("the server never queued anything for the stalled socket");
        let blocked_for = closed_at - blocked_at;
        assert!(
            blocked_for <= Duration::from_millis(1200),
            "stalled stream closed {blocked_for:?} after its writes stopped making progress \
             ({queued} bytes queued); two heartbeats are 400ms"
        );
        // Keep publishing for a moment after the close, then stop.
        tokio::time::sleep(Duration::from_millis(200)).await;
        stop.store(true, Ordering::SeqCst);
        let sent = bounded(STEP, "the publisher to stop", publishing).await.unwrap();
        let last_id = sent.last().expect("published something").0.clone();
        assert!(sent.len() >= 20, "only {} events published", sent.len());

        let m = metrics(srv.addr).await;

        // The stalled socket is closed from the server's side too.
        let closed = read_until_closed(&mut stalled, STEP, "the stalled socket to be closed").await;
        assert!(!closed.bytes.is_empty() || closed.error.is_some());

        // The healthy reader got every event, in order, each within 1 s of
        // its publish being acknowledged. Every acknowledged event is in its
        // queue already; shutting the server down ends its stream after them.
        drop(srv);
        let (got, end) = bounded(Duration::from_secs(20), "the healthy reader", reading)
            .await
            .unwrap();
        assert!(
            matches!(end, Some(Item::Retry(_)) | Some(Item::End)),
            "healthy stream ended with {end:?}"
        );
        let ids: Vec<&str> = got.iter().map(|(e, _)| e.id()).collect();
        let want: Vec<&str> = sent.iter().map(|(id, _)| id.as_str()).collect();
        assert_eq!(
            ids.len(),
            want.len(),
            "healthy reader got {} of {} events",
            ids.len(),
            want.len()
        );
        assert_eq!(ids, want, "healthy reader's events differ from those published");
        for (i, ((event, at), (_, acked))) in got.iter().zip(&sent).enumerate() {
            assert_eq!(event.data, big_data(i), "data of event {i}");
            let late = at.saturating_duration_since(*acked);
            assert!(
                late <= Duration::from_secs(1),
                "event {i} reached the healthy reader {late:?} after it was published"
            );
        }
        assert!(
            got.iter().any(|(_, at)| *at > closed_at),
            "no event reached the healthy reader after the stalled one was closed; last id {last_id}"
        );

        // And the close was counted.
        assert!(
            m.int("ssehub_subscribers_closed_dead_total") >= 1,
            "stalled reader closed but not counted as dead:\n{}",
            m.text
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_peer_is_closed() {
    within(async {
        let mut config = config();
        config.heartbeat = Duration::from_millis(200);
        config.max_subscriber_backlog = 64 * 1024 * 1024;
        let srv = start(config).await;
        let proxy = BlackholeProxy::start(srv.addr, 4096).await;

        let mut reader = subscribe(proxy.addr, "?topic=b").await;
        reader.opening_retry().await;
        wait_subscribers(&srv.stats, 1).await;

        let stop = Arc::new(AtomicBool::new(false));
        let publishing = spawn_big_publisher(srv.addr, "b", stop.clone());
        // The proxy works: events come through it.
        for i in 0..3 {
            let e = reader.next_event(STEP).await;
            assert_eq!(e.data, big_data(i));
        }

        proxy.blackhole();
        let blackholed = Instant::now();
        let s = wait_for(&srv.stats, "the blackholed subscriber to be closed", |s| {
            s.subscribers == 0
        })
        .await;
        let took = blackholed.elapsed();
        stop.store(true, Ordering::SeqCst);
        bounded(STEP, "the publisher to stop", publishing).await.unwrap();
        assert_eq!(
            s.dropped_full, 0,
            "closed for a full queue, not as a dead peer: {s:?}"
        );
        assert!(
            took < Duration::from_secs(5),
            "closed only {took:?} after the blackhole"
        );

        let m = metrics(srv.addr).await;
        assert!(
            m.int("ssehub_subscribers_closed_dead_total") >= 1,
            "blackholed peer closed but not counted as dead:\n{}",
            m.text
        );
        drop(reader);
        drop(proxy);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_connection_that_stops_answering_pings_is_closed() {
    within(async {
        let mut config = config();
        config.h2_keepalive = Duration::from_millis(200);
        config.h2_keepalive_timeout = Duration::from_millis(300);
        config.heartbeat = Duration::from_secs(60);
        let srv = start(config).await;
        let proxy = BlackholeProxy::start(srv.addr, 4096).await;

        let client = h2c_client();
        let (status, _, mut reader) = open_stream(&client, proxy.addr, "/events?topic=h", &[]).await;
        assert_eq!(status, StatusCode::OK);
        reader.opening_retry().await;
        wait_for(&srv.stats, "one HTTP/2 stream", |s| s.open_http2 == 1).await;
        // A healthy h2 connection outlives several PING rounds.
        tokio::time::sleep(Duration::from_millis(1000)).await;
        assert_eq!(
            srv.stats().open_http2,
            1,
            "an h2 connection that answers PINGs was closed"
        );
        let id = publish_ok(srv.addr, Some("h"), None, "still here").await;
        assert_eq!(reader.next_event(STEP).await.id(), id);

        proxy.blackhole();
        let blackholed = Instant::now();
        wait_for(&srv.stats, "the silent h2 connection to be closed", |s| {
            s.open_http2 == 0 && s.subscribers == 0
        })
        .await;
        let took = blackholed.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "h2 connection closed only {took:?} after it stopped answering (keepalive 200ms + timeout 300ms)"
        );

        // The connection counts as closed because the peer stopped answering.
        let m = metrics(srv.addr).await;
        assert!(
            m.int("ssehub_subscribers_closed_dead_total") >= 1,
            "h2 connection closed for an unanswered PING is not counted in \
             ssehub_subscribers_closed_dead_total:\n{}",
            m.text
        );
        drop(reader);
        drop(proxy);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_closed_after_header_timeout() {
    within(async {
        let mut config = config();
        config.header_timeout = Duration::from_millis(300);
        let srv = start(config).await;
        let addr = srv.addr;

        // (a) Connects and sends nothing.
        let silent = async {
            let t0 = Instant::now();
            let mut s = connect_raw(addr, None).await;
            let closed =
                read_until_closed(&mut s, Duration::from_secs(5), "the silent connection to close").await;
            (t0.elapsed(), closed)
        };
        // (b) Sends part of a request head, then stalls.
        let partial = async {
            let t0 = Instant::now();
            let mut s = connect_raw(addr, None).await;
            s.write_all(b"GET /events HTTP/1.1\r\nHost:").await.unwrap();
            let closed =
                read_until_closed(&mut s, Duration::from_secs(5), "the stalled request to close").await;
            (t0.elapsed(), closed)
        };
        // Meanwhile, a normal client is served.
        let healthy = async {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let t0 = Instant::now();
            let reply = get(addr, "/healthz").await;
            (t0.elapsed(), reply)
        };
        let ((t_a, a), (t_b, b), (t_h, h)) = tokio::join!(silent, partial, healthy);

        assert!(
            a.bytes.is_empty(),
            "silent connection got an answer: {:?}",
            a.text()
        );
        assert!(
            t_a >= Duration::from_millis(250),
            "silent connection closed after only {t_a:?} (header timeout 300ms)"
        );
        assert!(
            t_a < Duration::from_secs(3),
            "silent connection closed after {t_a:?}"
        );

        let text = b.text();
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "stalled request got something other than 408 or a close: {text:?}"
        );
        assert!(
            t_b >= Duration::from_millis(250),
            "stalled request closed after only {t_b:?} (header timeout 300ms)"
        );
        assert!(
            t_b < Duration::from_secs(3),
            "stalled request closed after {t_b:?}"
        );

        assert_eq!(h.status, StatusCode::OK);
        assert_eq!(h.text(), "ok\n");
        assert!(
            t_h < Duration::from_secs(2),
            "/healthz took {t_h:?} beside the slowloris"
        );
    })
    .await;
}

#[tokio::test]
async fn oversized_request_headers_get_431_without_harming_others() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "?topic=o").await;
        reader.opening_retry().await;

        let s = connect_raw(srv.addr, None).await;
        let (mut rd, mut wr) = s.into_split();
        let mut request = b"GET /events?topic=o HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
        request.extend_from_slice(&vec![b'a'; 64 * 1024]);
        request.extend_from_slice(b"\r\n\r\n");
        // The server may answer and close before taking it all: write aside.
        let writing = tokio::spawn(async move {
            let _ = wr.write_all(&request).await;
            wr
        });
        let mut answer = Vec::new();
        let read = async {
            use tokio::io::AsyncReadExt;
            let mut buf = [0u8; 4096];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => answer.extend_from_slice(&buf[..n]),
                }
            }
        };
        bounded(STEP, "the oversized request to be answered or closed", read).await;
        let _ = bounded(STEP, "the writer", writing).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 431"),
            "64 KiB header got neither 431 nor a close: {:?}",
            answer.lines().next()
        );
        assert_eq!(srv.stats().subscribers, 1, "the oversized request subscribed");

        // Others are unharmed.
        let id = publish_ok(srv.addr, Some("o"), None, "after").await;
        let e = reader.next_event(STEP).await;
        assert_eq!((e.id(), e.data.as_str()), (id.as_str(), "after"));
        assert_eq!(get(srv.addr, "/healthz").await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_past_max_connections_gets_200_retry_and_end() {
    within(async {
        let mut config = config();
        config.max_connections = 3;
        let (retry, jitter) = (config.retry, config.retry_jitter);
        let srv = start(config).await;

        let mut readers = Vec::new();
        for _ in 0..3 {
            let mut r = subscribe(srv.addr, "?topic=m").await;
            r.opening_retry().await;
            readers.push(r);
        }
        wait_subscribers(&srv.stats, 3).await;

        // The fourth.
        let client = http1_client();
        let (status, headers, mut shed) = open_stream(&client, srv.addr, "/events?topic=m", &[]).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "a shed stream must be 200 (EventSource gives up otherwise)"
        );
        assert_eq!(header_str(&headers, "content-type"), Some("text/event-stream"));
        let back_off = match shed.next_item(STEP).await {
            Some(Item::Retry(ms)) => ms,
            other => panic!("shed stream did not start with retry:, got {other:?}"),
        };
        let normal_max = (retry + jitter).as_millis() as u64;
        assert!(
            back_off > normal_max,
            "shed retry {back_off} ms is not longer than a normal one (at most {normal_max} ms)"
        );
        let (lo, hi) = (
            (retry * 5).as_millis() as u64,
            ((retry + jitter) * 5).as_millis() as u64,
        );
        assert!(
            (lo..=hi).contains(&back_off),
            "shed retry {back_off} ms outside retry*5 + jitter*5 = [{lo}, {hi}]"
        );
        shed.expect_end(STEP).await;

        let s = srv.stats();
        assert_eq!((s.shed, s.subscribers), (1, 3), "{s:?}");
        let m = metrics(srv.addr).await;
        assert_eq!(m.int("ssehub_streams_shed_total"), 1);
        assert!(m.text.lines().any(|l| l == "ssehub_streams_shed_total 1"));

        // The three are unharmed.
        let id = publish_ok(srv.addr, Some("m"), None, "to the three").await;
        for r in &mut readers {
            assert_eq!(r.next_event(STEP).await.id(), id);
        }

        // One leaves: there is room again.
        readers.pop();
        wait_subscribers(&srv.stats, 2).await;
        let mut again = subscribe(srv.addr, "?topic=m").await;
        let opening = again.opening_retry().await;
        assert!(
            opening <= normal_max,
            "stream after one left still got a shed retry of {opening} ms"
        );
        wait_subscribers(&srv.stats, 3).await;
        let id = publish_ok(srv.addr, Some("m"), None, "to the new one").await;
        assert_eq!(again.next_event(STEP).await.id(), id);
        assert_eq!(srv.stats().shed, 1);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_abrupt_disconnects_leave_no_subscriber_behind() {
    within(async {
        const N: usize = 1000;
        const TOPICS: usize = 50;
        // The server runs in this process: it needs a descriptor per stream too.
        ssehub::socket::raise_fd_limit();
        let srv = start_default().await;

        let mut streams = Vec::with_capacity(N);
        for batch in 0..N / 100 {
            let mut set = tokio::task::JoinSet::new();
            for j in 0..100 {
                let i = batch * 100 + j;
                let addr = srv.addr;
                set.spawn(async move {
                    let mut s = connect_raw(addr, None).await;
                    let req = format!("GET /events?topic=t{} HTTP/1.1\r\nHost: x\r\n\r\n", i % TOPICS);
                    s.write_all(req.as_bytes()).await.unwrap();
                    s
                });
            }
            while let Some(s) = set.join_next().await {
                streams.push(s.unwrap());
            }
        }
        let s = wait_for(&srv.stats, "1000 subscribers", |s| s.subscribers == N).await;
        assert_eq!((s.open_http1, s.topics), (N, TOPICS), "{s:?}");

        // Every client resets its connection at once.
        for s in &streams {
            s.set_zero_linger().unwrap();
        }
        drop(streams);

        let s = wait_for(&srv.stats, "every subscriber to be gone", |s| {
            s.subscribers == 0 && s.topics == 0
        })
        .await;
        assert_eq!((s.open_http1, s.open_http2), (0, 0), "{s:?}");
        let m = metrics(srv.addr).await;
        assert_eq!(m.int_with("ssehub_open_streams", "protocol=\"http1\""), 0);
        assert_eq!(m.int_with("ssehub_open_streams", "protocol=\"http2\""), 0);
        assert_eq!(m.int("ssehub_topics"), 0);

        // And the hub still works.
        let mut reader = subscribe(srv.addr, "?topic=t7").await;
        reader.opening_retry().await;
        let id = publish_ok(srv.addr, Some("t7"), None, "after the storm").await;
        assert_eq!(reader.next_event(STEP).await.id(), id);
        assert_eq!(srv.stats().subscribers, 1);
    })
    .await;
}

const REQUIRED_FAMILIES: [&str; 10] = [
    "ssehub_open_streams",
    "ssehub_connections_accepted_total",
    "ssehub_streams_shed_total",
    "ssehub_events_published_total",
    "ssehub_events_replayed_total",
    "ssehub_subscribers_dropped_full_total",
    "ssehub_subscribers_closed_dead_total",
    "ssehub_resets_sent_total",
    "ssehub_topics_closed_total",
    "ssehub_bytes_written_total",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_are_prometheus_text_and_counters_move() {
    within(async {
        let srv = start_default().await;
        let addr = srv.addr;

        // The format (`metrics` checks the content type and every line).
        let m0 = metrics(addr).await;
        for s in &m0.samples {
            assert!(
                s.name.starts_with("ssehub_"),
                "metric not prefixed ssehub_: {}",
                s.name
            );
        }
        for name in m0.kind.keys().chain(m0.help.keys()) {
            assert!(name.starts_with("ssehub_"), "metric not prefixed ssehub_: {name}");
            assert!(
                m0.kind.contains_key(name) && m0.help.contains_key(name),
                "{name} lacks # HELP or # TYPE"
            );
        }
        for family in REQUIRED_FAMILIES {
            assert!(
                m0.kind.contains_key(family),
                "missing family {family}:\n{}",
                m0.text
            );
            assert!(
                m0.samples.iter().any(|s| s.name == family),
                "no sample of {family}:\n{}",
                m0.text
            );
        }
        for family in REQUIRED_FAMILIES.iter().filter(|f| f.ends_with("_total")) {
            assert_eq!(m0.kind[*family], "counter", "{family} is not a counter");
        }
        assert_eq!(m0.kind["ssehub_open_streams"], "gauge");
        let protocols: HashSet<&str> = m0
            .samples
            .iter()
            .filter(|s| s.name == "ssehub_open_streams")
            .map(|s| s.labels.as_str())
            .collect();
        assert_eq!(
            protocols,
            HashSet::from(["protocol=\"http1\"", "protocol=\"http2\""]),
            "ssehub_open_streams labels"
        );
        assert_eq!(m0.int_with("ssehub_open_streams", "protocol=\"http1\""), 0);
        assert_eq!(m0.int_with("ssehub_open_streams", "protocol=\"http2\""), 0);

        // Every request below uses a connection of its own, so accepted
        // connections can be counted exactly.
        let mut connections = 0;

        let data = "d".repeat(2000);
        let h1_client = http1_client();
        let (status, _, mut h1) = open_stream(&h1_client, addr, "/events?topic=mx", &[]).await;
        assert_eq!(status, StatusCode::OK);
        connections += 1;
        let h2_client = h2c_client();
        let (status, _, mut h2) = open_stream(&h2_client, addr, "/events?topic=mx", &[]).await;
        assert_eq!(status, StatusCode::OK);
        connections += 1;
        h1.opening_retry().await;
        h2.opening_retry().await;
        wait_subscribers(&srv.stats, 2).await;
        let m1 = metrics(addr).await;
        connections += 1;
        assert_eq!(
            m1.int_with("ssehub_open_streams", "protocol=\"http1\""),
            1,
            "{}",
            m1.text
        );
        assert_eq!(
            m1.int_with("ssehub_open_streams", "protocol=\"http2\""),
            1,
            "{}",
            m1.text
        );

        let mut ids = Vec::new();
        for _ in 0..3 {
            ids.push(publish_ok(addr, Some("mx"), None, &data).await);
            connections += 1;
        }
        for r in [&mut h1, &mut h2] {
            let got: Vec<String> = r
                .next_events(3, STEP)
                .await
                .iter()
                .map(|e| e.id().to_string())
                .collect();
            assert_eq!(got, ids);
        }

        // A reconnect after the first event: two are replayed.
        let replay_client = http1_client();
        let (_, _, mut replay) = open_stream(
            &replay_client,
            addr,
            "/events?topic=mx",
            &[("last-event-id", &ids[0])],
        )
        .await;
        connections += 1;
        replay.opening_retry().await;
        let got: Vec<String> = replay
            .next_events(2, STEP)
            .await
            .iter()
            .map(|e| e.id().to_string())
            .collect();
        assert_eq!(got, ids[1..]);

        // A reconnect with an id that cannot be honoured: a reset.
        let reset_client = http1_client();
        let (_, _, mut reset) = open_stream(
            &reset_client,
            addr,
            "/events?topic=mx",
            &[("last-event-id", "bogus")],
        )
        .await;
        connections += 1;
        reset.opening_retry().await;
        assert_eq!(reset.next_event(STEP).await.name(), "reset");

        // Close the topic: every stream ends.
        let reply = post(addr, "/close?topic=mx", &[], "").await;
        connections += 1;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        for r in [&mut h1, &mut h2, &mut replay, &mut reset] {
            assert_eq!(r.next_event(STEP).await.name(), "close");
            r.expect_end(STEP).await;
        }
        drop((h1, h2, replay, reset));
        drop((h1_client, h2_client, replay_client, reset_client));
        wait_subscribers(&srv.stats, 0).await;

        // Bytes reach the counter when a connection closes: wait for all four
        // streams' (3 + 3 + 2 events of 2000 bytes at least).
        let before = m0.int("ssehub_bytes_written_total");
        let (m2, polls) = wait_metrics(addr, "bytes written to count the streams", STEP, |m| {
            m.int("ssehub_bytes_written_total") >= before + 8 * 2000
        })
        .await;
        // Each /metrics poll is one more connection, counted before it renders.
        let delta = |name: &str| m2.int(name) - m0.int(name);
        assert_eq!(
            delta("ssehub_connections_accepted_total"),
            connections + polls,
            "connections accepted: {connections} requests on connections of their own, \
             then {polls} GET /metrics"
        );
        assert_eq!(delta("ssehub_events_published_total"), 3);
        assert_eq!(delta("ssehub_events_replayed_total"), 2);
        assert_eq!(delta("ssehub_resets_sent_total"), 1);
        assert_eq!(delta("ssehub_topics_closed_total"), 1);
        assert_eq!(delta("ssehub_streams_shed_total"), 0);
        assert_eq!(delta("ssehub_subscribers_dropped_full_total"), 0);
        assert_eq!(delta("ssehub_subscribers_closed_dead_total"), 0);
        assert_eq!(m2.int_with("ssehub_open_streams", "protocol=\"http1\""), 0);
        assert_eq!(m2.int_with("ssehub_open_streams", "protocol=\"http2\""), 0);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stream_lifetime_ends_streams_with_retry_and_resume_loses_nothing() {
    within(async {
        let mut config = config();
        config.max_stream_lifetime = Some(Duration::from_millis(300));
        let (retry, jitter) = (config.retry, config.retry_jitter);
        let retry_range = retry.as_millis() as u64..=(retry + jitter).as_millis() as u64;
        let srv = start(config).await;
        let addr = srv.addr;

        // One stream, alone: it ends after 300-375 ms with a retry: field.
        let t0 = Instant::now();
        let mut reader = subscribe(addr, "?topic=l").await;
        reader.opening_retry().await;
        let mut last = None;
        loop {
            match reader.next_item(STEP).await {
                None => panic!("stream with a 300ms lifetime still open after {:?}", t0.elapsed()),
                Some(Item::End) => break,
                Some(item) => last = Some(item),
            }
        }
        let lived = t0.elapsed();
        assert!(
            lived >= Duration::from_millis(300),
            "stream ended after only {lived:?} (lifetime 300ms)"
        );
        assert!(
            lived < Duration::from_millis(1500),
            "stream ended after {lived:?} (lifetime 300ms + up to 75ms jitter)"
        );
        match last {
            Some(Item::Retry(ms)) => assert!(retry_range.contains(&ms), "final retry {ms}"),
            other => panic!("stream at the end of its lifetime ended without a final retry:, last {other:?}"),
        }
        wait_subscribers(&srv.stats, 0).await;

        // Now a client that keeps reconnecting with Last-Event-ID while a
        // publisher publishes continuously.
        let seed = publish_ok(addr, Some("l"), None, "seed").await;
        let (done_tx, done_rx) = tokio::sync::watch::channel(None::<Vec<String>>);
        let client_task = tokio::spawn(async move {
            let mut last_id = seed;
            let mut got: Vec<(String, String)> = Vec::new();
            let mut streams = 0;
            loop {
                let mut r = subscribe_with(addr, "?topic=l", &[("last-event-id", &last_id)]).await;
                streams += 1;
                let opening = r.opening_retry().await;
                assert!(retry_range.contains(&opening), "opening retry {opening}");
                let mut last = None;
                loop {
                    match r.next_item(STEP).await {
                        None => panic!("stream {streams} still open after {STEP:?}"),
                        Some(Item::End) => break,
                        Some(Item::Event(e)) => {
                            last_id = e.id().to_string();
                            got.push((e.id().to_string(), e.data.clone()));
                            last = Some(Item::Event(e));
                        }
                        Some(item) => last = Some(item),
                    }
                }
                assert!(
                    matches!(last, Some(Item::Retry(ms)) if retry_range.contains(&ms)),
                    "stream {streams} ended without a final retry: in range, last {last:?}"
                );
                let done = done_rx.borrow().clone();
                if let Some(sent) = done {
                    if sent.last() == Some(&last_id) {
                        return (got, streams);
                    }
                }
            }
        });

        wait_subscribers(&srv.stats, 1).await;
        let publisher = Publisher::new(addr);
        let mut sent = Vec::new();
        let publish_start = Instant::now();
        let mut i = 0;
        while publish_start.elapsed() < Duration::from_millis(1500) {
            let data = format!("e{i}");
            sent.push((publisher.publish_ok(Some("l"), None, &data).await, data));
            i += 1;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        done_tx.send_replace(Some(sent.iter().map(|(id, _)| id.clone()).collect()));
        let (got, streams) = bounded(Duration::from_secs(10), "the reconnecting client", client_task)
            .await
            .unwrap();
        assert!(
            streams >= 3,
            "only {streams} streams in 1.5 s with a 300ms lifetime"
        );
        assert_eq!(
            got.len(),
            sent.len(),
            "the reconnecting client got {} events of {} published",
            got.len(),
            sent.len()
        );
        assert_eq!(
            got, sent,
            "events lost, duplicated or reordered across reconnects"
        );
    })
    .await;
}
