//! A subscriber that stops reading is disconnected once its backlog is over
//! `--max-subscriber-backlog`; the publisher never waits for it and other
//! subscribers are not delayed. One that comes back after its events left
//! the history is told so with `reset`. (There is no rule that drops a
//! subscriber because its oldest unsent event left the history: at
//! `--history 1024` a burst would drop everyone; see README, "Slow
//! subscribers".)

mod common;

use common::*;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpSocket;
use tokio::sync::mpsc;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn slow_subscriber_is_dropped_while_others_receive_everything() {
    within(async {
        let mut config = config();
        // Five events of 60 kB.
        config.max_subscriber_backlog = 300_000;
        // Only publishing may find the queue full (no heartbeat does it first).
        config.heartbeat = Duration::from_secs(3600);
        let srv = start(config).await;

        // The normal reader, in its own task, reports every event it gets.
        let mut reader = subscribe(srv.addr, "").await;
        let (seen_tx, mut seen_rx) = mpsc::unbounded_channel::<(String, usize)>();
        let reading = tokio::spawn(async move {
            loop {
                let e = reader.next_event(Duration::from_secs(10)).await;
                let done = e.name() == "done";
                if seen_tx.send((e.id().to_string(), e.data.len())).is_err() || done {
                    return;
                }
            }
        });

        // The slow client: asks for the stream and never reads a byte.
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("recv buffer");
        let mut slow = bounded(STEP, "connect", socket.connect(srv.addr))
            .await
            .expect("connect");
        slow.write_all(b"GET /events HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write request");
        wait_subscribers(&srv.stats, 2).await;

        let publisher = Publisher::new(srv.addr);
        let payload = "x".repeat(60_000);
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let mut published = Vec::new();
        let mut received = Vec::new();
        while srv.stats().subscribers == 2 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "slow subscriber still registered after {} events of 60 kB: {:?}",
                published.len(),
                srv.stats()
            );
            // A publisher that waited for the slow client would hang here.
            let id = bounded(
                Duration::from_secs(2),
                "a publish while a subscriber is stuck",
                publisher.publish_ok(None, None, &payload),
            )
            .await;
            published.push(id.clone());
            // The normal reader gets each event promptly, even while the slow
            // one's buffers fill up.
            let (got, len) = bounded(STEP, "the normal reader to get the event", seen_rx.recv())
                .await
                .expect("reader task ended early");
            assert_eq!((got.as_str(), len), (id.as_str(), payload.len()));
            received.push(got);
        }
        let stats = srv.stats();
        assert_eq!(stats.subscribers, 1);
        assert!(stats.dropped_full >= 1, "{stats:?}");

        // The remaining subscriber is the normal reader, still live.
        let done = publisher.publish_ok(None, Some("done"), "done").await;
        while let Some((id, _)) = bounded(STEP, "the done event", seen_rx.recv()).await {
            received.push(id);
        }
        bounded(STEP, "the reader task", reading)
            .await
            .expect("reader task");
        published.push(done);
        assert_eq!(
            received, published,
            "the normal reader missed or reordered events"
        );
        drop(slow);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriber_dropped_by_the_byte_cap_gets_reset_on_reconnect_when_its_events_left_the_history() {
    // The drop comes from the byte cap (--max-subscriber-backlog: 300 KB,
    // about five 60 KB events behind what the kernel buffers hold), not from
    // the history: the server has no "left the history" rule. With
    // --history 4, by the time the cap is hit the events it missed are no
    // longer retained, so reconnecting from the last id it saw gets `reset`.
    within(async {
        let mut config = config();
        config.max_subscriber_backlog = 300_000;
        config.history = 4;
        config.heartbeat = Duration::from_secs(3600);
        let srv = start(config).await;

        // Reads the first event, then stops reading.
        let socket = TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("recv buffer");
        let mut slow = bounded(STEP, "connect", socket.connect(srv.addr))
            .await
            .expect("connect");
        slow.write_all(b"GET /events?topic=t HTTP/1.1\r\nHost: x\r\n\r\n")
            .await
            .expect("write request");
        wait_subscribers(&srv.stats, 1).await;
        let first = publish_ok(srv.addr, Some("t"), None, "first").await;
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !String::from_utf8_lossy(&head).contains(&format!("id: {first}")) {
            use tokio::io::AsyncReadExt;
            let n = bounded(STEP, "the first event", slow.read(&mut buf))
                .await
                .expect("read");
            assert!(n > 0, "stream ended before the first event");
            head.extend_from_slice(&buf[..n]);
        }

        let publisher = Publisher::new(srv.addr);
        let payload = "x".repeat(60_000);
        let mut sent = 0;
        while srv.stats().subscribers == 1 {
            assert!(sent < 400, "never dropped: {:?}", srv.stats());
            publisher.publish_ok(Some("t"), None, &payload).await;
            sent += 1;
        }
        // More events than --history were published before the cap was hit,
        // so the ones it missed have left the history.
        assert!(
            sent > 4,
            "dropped after {sent} events, before its missed events left the history"
        );
        // Dropped by the byte cap ("backlog full"), not by the write deadline.
        assert!(srv.stats().dropped_full >= 1, "{:?}", srv.stats());
        drop(slow);

        // Coming back from the last id it saw: the events after it are gone.
        let mut again = subscribe_with(srv.addr, "?topic=t", &[("last-event-id", &first)]).await;
        let e = again.next_event(STEP).await;
        assert_eq!(e.name(), "reset", "{e:?}");
    })
    .await;
}
