//! Several nodes sharing one event log on Redis Streams (`--redis`), each
//! test against its own real `redis-server` (Debian's package) on a unix
//! socket in a temporary folder, with persistence off unless the test is
//! about it, stopped by PID.

#![cfg(feature = "redis")]

mod common;
mod tokens;

use common::*;
use hyper::StatusCode;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A `redis-server` of the test's own.
struct Redis {
    dir: PathBuf,
    child: Option<Child>,
    appendonly: bool,
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

impl Redis {
    fn start(appendonly: bool) -> Redis {
        let dir = std::env::temp_dir().join(format!(
            "ssehub-redis-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let mut redis = Redis {
            dir,
            child: None,
            appendonly,
        };
        redis.spawn();
        redis
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("redis.sock")
    }

    fn url(&self) -> String {
        format!("unix://{}", self.socket().display())
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", "0", "--unixsocket"])
            .arg(self.socket())
            .args(["--unixsocketperm", "700", "--save", ""])
            .args(["--appendonly", if self.appendonly { "yes" } else { "no" }])
            .args(["--appendfsync", "always", "--dir"])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server is installed (Debian's redis-server; .ci/run installs it)");
        self.child = Some(child);
        // Ready when it answers PING on its socket.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while self.command("PING").as_deref() != Some("+PONG") {
            assert!(std::time::Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends one inline command; the first line of the answer.
    fn command(&self, cmd: &str) -> Option<String> {
        let mut s = UnixStream::connect(self.socket()).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
        s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
        let mut buf = [0u8; 512];
        let n = s.read(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        text.lines().next().map(str::to_string)
    }

    /// Sends `signal` to the server (SIGSTOP: it keeps its sockets open
    /// but answers nothing, as a host that vanished; SIGCONT: back).
    fn signal(&self, signal: libc::c_int) {
        let pid = self.child.as_ref().expect("redis-server runs").id();
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
        assert_eq!(rc, 0, "kill({pid}, {signal})");
    }

    /// SIGKILL, as a crash.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_file(self.socket());
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A node on `redis`, its reader caught up (`/readyz` answers 200).
async fn node(redis: &Redis) -> TestServer {
    node_with(redis, config()).await
}

async fn node_with(redis: &Redis, config: ssehub::Config) -> TestServer {
    node_at(&redis.url(), config).await
}

/// A node on the Redis at `url` (a [`Relay`]'s, say), caught up.
async fn node_at(url: &str, mut config: ssehub::Config) -> TestServer {
    config.redis = Some(url.to_string());
    let srv = start(config).await;
    wait_ready(srv.addr, StatusCode::OK).await;
    srv
}

/// A relay on a unix socket in front of a test's Redis, whose traffic can
/// be held back (both ways, bytes kept in order): a node behind it stops
/// hearing from Redis while the nodes connected directly go on, as a node
/// that is behind, or away for a moment, would.
struct Relay {
    path: PathBuf,
    paused: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Relay {
    fn start(redis: &Redis) -> Relay {
        let path = redis.dir.join("relay.sock");
        let listener = tokio::net::UnixListener::bind(&path).expect("bind the relay");
        let (paused, watch) = tokio::sync::watch::channel(false);
        let target = redis.socket();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::UnixStream::connect(&target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(relay_one_way(client_read, server_write, watch.clone()));
                tokio::spawn(relay_one_way(server_read, client_write, watch.clone()));
            }
        });
        Relay { path, paused, task }
    }

    fn url(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Holds traffic back (`true`) or lets it, and what was held, through.
    fn pause(&self, on: bool) {
        self.paused.send_replace(on);
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn relay_one_way(
    mut from: tokio::net::unix::OwnedReadHalf,
    mut to: tokio::net::unix::OwnedWriteHalf,
    mut paused: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// The epoch part of a shared log's id (`EPOCH-MS-SEQ`).
fn epoch_of(id: &str) -> &str {
    id.split('-').next().unwrap_or("")
}

/// Polls `/readyz` until it answers `status` (10 s at most).
async fn wait_ready(addr: std::net::SocketAddr, status: StatusCode) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let got = get(addr, "/readyz").await.status;
        if got == status {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "/readyz stayed {got}, wanted {status}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of one sample of `/metrics` (a family without labels).
async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let text = get(addr, "/metrics").await.text();
    let line = text
        .lines()
        .find(|l| l.split(' ').next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} in /metrics:\n{text}"));
    line.rsplit(' ')
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a number: {line}"))
}

/// Polls `/metrics` until `name` satisfies `pred` (10 s at most).
async fn wait_metric(addr: std::net::SocketAddr, name: &str, pred: impl Fn(f64) -> bool) -> f64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let v = metric(addr, name).await;
        if pred(v) {
            return v;
        }
        assert!(tokio::time::Instant::now() < deadline, "{name} stayed {v}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A publish whatever its answer.
async fn publish_reply(addr: std::net::SocketAddr, topic: Option<&str>, body: &str) -> Reply {
    post(addr, &publish_path(topic, None), &[], body.to_string()).await
}

/// Reads `n` events; their (id, data) pairs.
async fn read_n(reader: &mut SseReader, n: usize) -> Vec<(String, String)> {
    reader
        .next_events(n, Duration::from_secs(10))
        .await
        .into_iter()
        .map(|e| (e.id().to_string(), e.data.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_node_delivers_every_event_in_the_same_order() {
    within(async {
        let redis = Redis::start(false);
        let (a, b, c) = (node(&redis).await, node(&redis).await, node(&redis).await);
        let mut subs = Vec::new();
        for n in [&a, &b, &c] {
            subs.push(subscribe(n.addr, "?topic=t").await);
        }
        // Two publishers at once, on two nodes.
        let pa = Publisher::new(a.addr);
        let pb = Publisher::new(b.addr);
        let (ids_a, ids_b) = tokio::join!(
            async {
                let mut ids = Vec::new();
                for i in 0..40 {
                    ids.push(pa.publish_ok(Some("t"), None, &format!("a{i}")).await);
                }
                ids
            },
            async {
                let mut ids = Vec::new();
                for i in 0..40 {
                    ids.push(pb.publish_ok(Some("t"), None, &format!("b{i}")).await);
                }
                ids
            }
        );
        let mut seen = Vec::new();
        for s in &mut subs {
            seen.push(read_n(s, 80).await);
        }
        assert_eq!(seen[0], seen[1], "nodes A and B disagree on the order");
        assert_eq!(seen[0], seen[2], "nodes A and C disagree on the order");
        let mut acked: Vec<String> = ids_a.into_iter().chain(ids_b).collect();
        acked.sort();
        let mut delivered: Vec<String> = seen[0].iter().map(|(id, _)| id.clone()).collect();
        delivered.sort();
        assert_eq!(delivered, acked, "every acknowledged id is delivered once");
        // Each publisher's own events keep its order.
        let from_a: Vec<&str> = seen[0]
            .iter()
            .map(|(_, d)| d.as_str())
            .filter(|d| d.starts_with('a'))
            .collect();
        assert_eq!(from_a, (0..40).map(|i| format!("a{i}")).collect::<Vec<_>>());
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_another_node_without_gap_or_duplicate_while_publishers_run() {
    within(async {
        let redis = Redis::start(false);
        let (a, b, c) = (node(&redis).await, node(&redis).await, node(&redis).await);
        let mut on_b = subscribe(b.addr, "?topic=t").await;
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let run = |addr, tag: &'static str| {
            let stop = stop.clone();
            tokio::spawn(async move {
                let p = Publisher::new(addr);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 2000 {
                    p.publish_ok(Some("t"), None, &format!("{tag}{n}")).await;
                    n += 1;
                }
                n
            })
        };
        let (ta, tb) = (run(a.addr, "a"), run(b.addr, "b"));
        let first = read_n(&mut on_b, 30).await;
        let last_id = first.last().map(|(id, _)| id.clone()).unwrap_or_default();
        drop(on_b);
        // Publishers keep going while the client is away, then it comes
        // back on C.
        let mut on_c = subscribe_with(c.addr, "?topic=t", &[("last-event-id", &last_id)]).await;
        let resumed = read_n(&mut on_c, 60).await;
        stop.store(true, Ordering::Relaxed);
        let published = ta.await.expect("publisher A") + tb.await.expect("publisher B");
        assert!(
            published > 90,
            "publishers were too slow to test anything: {published}"
        );

        // A fresh subscriber on A from the start of the log sees the order
        // every node agrees on; the client's view must be a gapless piece of it.
        let mut whole = subscribe_with(a.addr, "?topic=t", &[("last-event-id", &first[0].0)]).await;
        let reference = read_n(&mut whole, 89).await;
        let mine: Vec<(String, String)> = first[1..].iter().cloned().chain(resumed).collect();
        assert_eq!(mine, reference, "the resumed stream has a gap or a duplicate");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_on_one_node_closes_the_topic_on_every_node() {
    within(async {
        let redis = Redis::start(false);
        let (a, c) = (node(&redis).await, node(&redis).await);
        let mut on_c = subscribe(c.addr, "?topic=news").await;
        publish_ok(a.addr, Some("news"), None, "before").await;
        assert_eq!(on_c.next_event(STEP).await.data, "before");
        let reply = post(a.addr, "/close?topic=news", &[], "").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let e = on_c.next_event(STEP).await;
        assert_eq!((e.name(), e.data.as_str()), ("close", "news"));
        on_c.expect_end(STEP).await;
        assert_eq!(
            get(c.addr, "/events?topic=news").await.status,
            StatusCode::NO_CONTENT
        );
        let refused = publish_reply(c.addr, Some("news"), "after").await;
        assert_eq!(refused.status, StatusCode::GONE, "{}", refused.text());
        // A node started later knows too.
        let d = node(&redis).await;
        assert_eq!(
            get(d.addr, "/events?topic=news").await.status,
            StatusCode::NO_CONTENT
        );
    })
    .await;
}

/// Node C has not read what node A published when a client that read it
/// on A comes to C: its id is ahead of C's tail. It is held until C has
/// read that far, then given exactly what followed its id; not `reset`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resuming_on_a_node_that_is_behind_gets_what_it_missed_not_reset() {
    within(async {
        let redis = Redis::start(false);
        let relay = Relay::start(&redis);
        let a = node(&redis).await;
        let c = node_at(&relay.url(), config()).await;
        let mut on_a = subscribe(a.addr, "?topic=t").await;
        relay.pause(true);
        let mut ids = Vec::new();
        for i in 1..=3 {
            ids.push(publish_ok(a.addr, Some("t"), None, &format!("e{i}")).await);
        }
        let seen = read_n(&mut on_a, 2).await;
        drop(on_a);
        // C has read none of them yet.
        let mut on_c = subscribe_with(c.addr, "?topic=t", &[("last-event-id", &seen[1].0)]).await;
        wait_subscribers(&c.stats, 1).await;
        relay.pause(false);
        let e = on_c.next_event(STEP).await;
        assert_eq!(
            (e.name(), e.id(), e.data.as_str()),
            ("message", ids[2].as_str(), "e3"),
            "the client missed e3, and only e3"
        );
        let live = publish_ok(a.addr, Some("t"), None, "e4").await;
        assert_eq!(on_c.next_event(STEP).await.id(), live);
        assert_eq!(c.stats().resets_sent, 0);
    })
    .await;
}

/// Redis restarted without its data (no AOF): live subscribers get
/// `reset` as the node reconnects, and so does a client that comes back
/// with an id of the old log; the stream then goes on with the new log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restarted_empty_resets_live_subscribers_and_old_ids() {
    within(async {
        let mut redis = Redis::start(false);
        let a = node(&redis).await;
        let mut sub = subscribe(a.addr, "?topic=t").await;
        let old = publish_ok(a.addr, Some("t"), None, "before").await;
        assert_eq!(sub.next_event(STEP).await.id(), old);
        redis.kill();
        wait_ready(a.addr, StatusCode::SERVICE_UNAVAILABLE).await;
        redis.spawn();
        wait_ready(a.addr, StatusCode::OK).await;
        let reset = sub.next_event(STEP).await;
        assert_eq!(reset.name(), "reset", "{reset:?}");
        assert_ne!(epoch_of(reset.id()), epoch_of(&old), "the log has a new epoch");
        let mut back = subscribe_with(a.addr, "?topic=t", &[("last-event-id", &old)]).await;
        let e = back.next_event(STEP).await;
        assert_eq!((e.name(), e.id()), ("reset", reset.id()));
        let new = publish_ok(a.addr, Some("t"), None, "after").await;
        for s in [&mut sub, &mut back] {
            let e = s.next_event(STEP).await;
            assert_eq!((e.id(), e.data.as_str()), (new.as_str(), "after"));
        }
    })
    .await;
}

/// Entries trimmed before a node read them (it was cut off while the
/// others went on): its subscribers get what it did read, then `reset`,
/// never a silent gap; a client whose id is older than what is left gets
/// `reset` too. A node that read everything resets nobody.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_trimmed_before_a_node_read_them_reset_its_subscribers() {
    within(async {
        let redis = Redis::start(false);
        let relay = Relay::start(&redis);
        let mut config = config();
        config.history = 5;
        let a = node_with(&redis, config.clone()).await;
        let c = node_at(&relay.url(), config).await;
        let mut on_a = subscribe(a.addr, "?topic=t").await;
        let mut on_c = subscribe(c.addr, "?topic=t").await;
        relay.pause(true);
        let mut ids = Vec::new();
        for i in 0..10 {
            ids.push(publish_ok(a.addr, Some("t"), None, &i.to_string()).await);
        }
        // What Redis's approximate trimming to --history does in time.
        assert_eq!(redis.command("XTRIM ssehub:log MAXLEN 5").as_deref(), Some(":5"));
        relay.pause(false);
        let mut before = Vec::new();
        let reset = loop {
            let e = on_c.next_event(STEP).await;
            if e.name() == "reset" {
                break e;
            }
            before.push(e.id().to_string());
        };
        assert_eq!(before, ids[..before.len()], "C delivered a gap before its reset");
        assert!(before.len() < 5, "C read entries that were trimmed: {before:?}");
        assert_eq!(reset.id(), ids[9], "the reset names the newest entry");
        let mut old = subscribe_with(c.addr, "?topic=t", &[("last-event-id", &ids[0])]).await;
        assert_eq!(old.next_event(STEP).await.name(), "reset");
        let next = publish_ok(a.addr, Some("t"), None, "10").await;
        assert_eq!(on_c.next_event(STEP).await.id(), next);
        // A read everything: no reset there.
        let got: Vec<String> = read_n(&mut on_a, 11)
            .await
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let mut all = ids.clone();
        all.push(next);
        assert_eq!(got, all);
    })
    .await;
}

/// A flush with nobody publishing after it is still noticed, by the
/// epoch check the reader makes whenever its XREAD comes back empty:
/// `/events` subscribers get `reset`; a Mercure subscriber gets no extra
/// event, its stream just ends (its client comes back after its `retry:`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_without_publishes_resets_events_streams_and_ends_mercure_streams() {
    within(async {
        let redis = Redis::start(false);
        let a = node(&redis).await;
        let mut sub = subscribe(a.addr, "?topic=t").await;
        let mercure = "/.well-known/mercure?topic=t";
        let (status, _, mut on_mercure) = open_stream(&http1_client(), a.addr, mercure, &[]).await;
        assert_eq!(status, StatusCode::OK);
        wait_subscribers(&a.stats, 2).await;
        let old = publish_ok(a.addr, Some("t"), None, "before").await;
        assert_eq!(sub.next_event(STEP).await.id(), old);
        assert_eq!(on_mercure.next_event(STEP).await.id(), old);
        assert_eq!(redis.command("FLUSHALL").as_deref(), Some("+OK"));
        // BLOCK is 2 s: the reader looks at the epoch at most that late.
        let reset = sub.next_event(Duration::from_secs(8)).await;
        assert_eq!(reset.name(), "reset", "{reset:?}");
        assert_ne!(epoch_of(reset.id()), epoch_of(&old));
        on_mercure.expect_end(STEP).await;
        let mut back = subscribe_with(a.addr, "?topic=t", &[("last-event-id", &old)]).await;
        assert_eq!(back.next_event(STEP).await.name(), "reset");
        // Mercure's way to say the id was not honoured.
        let again = format!("{mercure}&lastEventID={old}");
        let (status, h, _) = open_stream(&http1_client(), a.addr, &again, &[]).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header_str(&h, "last-event-id"), Some("earliest"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_every_node_restarts_a_client_resumes_without_reset() {
    within(async {
        let redis = Redis::start(false);
        let a = node(&redis).await;
        let mut sub = subscribe(a.addr, "?topic=t").await;
        let first = publish_ok(a.addr, Some("t"), None, "one").await;
        assert_eq!(sub.next_event(STEP).await.id(), first);
        drop(sub);
        drop(a);
        // Published while the client is away, through another node that
        // then goes too: a full redeploy.
        let b = node(&redis).await;
        let missed = publish_ok(b.addr, Some("t"), None, "two").await;
        drop(b);
        let c = node(&redis).await;
        let mut back = subscribe_with(c.addr, "?topic=t", &[("last-event-id", &first)]).await;
        let e = back.next_event(STEP).await;
        assert_eq!(
            (e.name(), e.id(), e.data.as_str()),
            ("message", missed.as_str(), "two")
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_crash_loses_no_acknowledged_event_and_closes_no_stream() {
    within(async {
        let mut redis = Redis::start(true);
        let mut config = config();
        config.heartbeat = Duration::from_millis(200);
        let a = node_with(&redis, config).await;
        let mut sub = subscribe(a.addr, "?topic=t").await;
        let publisher = tokio::spawn({
            let addr = a.addr;
            async move {
                let mut acked = Vec::new();
                let mut refused = std::collections::HashSet::new();
                for i in 0..1500 {
                    let r = publish_reply(addr, Some("t"), &i.to_string()).await;
                    match r.status {
                        StatusCode::OK => acked.push(r.text().trim().to_string()),
                        StatusCode::SERVICE_UNAVAILABLE => {
                            assert!(r.header("retry-after").is_some());
                            refused.insert(i.to_string());
                        }
                        other => panic!("publish answered {other}: {}", r.text()),
                    }
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                (acked, refused)
            }
        });
        // Crash Redis mid-run, then bring it back on its append-only file.
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis.kill();
        wait_ready(a.addr, StatusCode::SERVICE_UNAVAILABLE).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        redis.spawn();
        wait_ready(a.addr, StatusCode::OK).await;
        let (acked, refused) = publisher.await.expect("publisher");
        assert!(!refused.is_empty(), "Redis was never seen down");
        assert!(!acked.is_empty());
        // Every acknowledged event arrives, in order, on the stream that
        // stayed open through the crash (heartbeats kept it alive). A
        // publish answered 503 may still have reached Redis just before
        // the crash (its answer was lost): such an event may arrive too.
        let last = acked.last().cloned().unwrap_or_default();
        let mut got = Vec::new();
        while got.last() != Some(&last) {
            match sub.next_item(Duration::from_secs(10)).await {
                Some(Item::Event(e)) if acked.contains(&e.id().to_string()) => got.push(e.id().to_string()),
                Some(Item::Event(e)) => {
                    assert!(refused.contains(&e.data), "an event nobody published: {e:?}")
                }
                Some(Item::Comment(_) | Item::Retry(_)) => {}
                other => panic!(
                    "stream ended or stalled after {} of {}: {other:?}",
                    got.len(),
                    acked.len()
                ),
            }
        }
        if let Some(i) = (0..acked.len()).find(|&i| got.get(i) != acked.get(i)) {
            panic!(
                "acknowledged event {i} of {} is missing or out of order: got {:?}, wanted {:?}",
                acked.len(),
                got.get(i.saturating_sub(1)..(i + 2).min(got.len())),
                &acked[i.saturating_sub(1)..(i + 2).min(acked.len())]
            );
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flushed_log_makes_the_next_reconnect_a_reset() {
    within(async {
        let redis = Redis::start(false);
        let a = node(&redis).await;
        let old = publish_ok(a.addr, Some("t"), None, "before the flush").await;
        assert_eq!(redis.command("FLUSHALL").as_deref(), Some("+OK"));
        // The next publish finds the log gone and starts a new one.
        let new = publish_ok(a.addr, Some("t"), None, "after").await;
        assert_ne!(old.split('-').next(), new.split('-').next(), "a new epoch");
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            let mut back = subscribe_with(a.addr, "?topic=t", &[("last-event-id", &old)]).await;
            let e = back.next_event(STEP).await;
            if e.name() == "reset" {
                break;
            }
            // The reader may not have seen the new epoch yet: it replays
            // nothing old in the meantime.
            assert_ne!(e.data, "before the flush");
            assert!(tokio::time::Instant::now() < deadline, "never reset: {e:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readyz_follows_redis_up_down_up() {
    within(async {
        let mut redis = Redis::start(false);
        let a = node(&redis).await;
        assert_eq!(get(a.addr, "/healthz").await.status, StatusCode::OK);
        redis.kill();
        wait_ready(a.addr, StatusCode::SERVICE_UNAVAILABLE).await;
        let r = get(a.addr, "/readyz").await;
        assert!(r.text().contains("Redis"), "{}", r.text());
        assert_eq!(get(a.addr, "/healthz").await.status, StatusCode::OK);
        let refused = publish_reply(a.addr, None, "x").await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(refused.header("retry-after"), Some("1"));
        redis.spawn();
        wait_ready(a.addr, StatusCode::OK).await;
        publish_ok(a.addr, None, None, "back").await;
    })
    .await;
}

/// A Redis that stops answering but keeps its connections open (SIGSTOP:
/// as a host that vanished, or a hung process) is noticed by the reader's
/// response timeout: the node goes unready within a bound instead of
/// waiting on its blocked XREAD forever, and comes back when Redis does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_that_stops_answering_is_noticed_and_the_node_recovers() {
    within(async {
        let redis = Redis::start(false);
        let a = node(&redis).await;
        let mut sub = subscribe(a.addr, "?topic=t").await;
        assert_eq!(metric(a.addr, "ssehub_redis_up").await, 1.0);
        redis.signal(libc::SIGSTOP);
        let stopped = tokio::time::Instant::now();
        // BLOCK (2 s) plus the margin (2 s), and some slack for a busy machine.
        wait_ready(a.addr, StatusCode::SERVICE_UNAVAILABLE).await;
        assert!(
            stopped.elapsed() < Duration::from_secs(8),
            "noticed only after {:?}",
            stopped.elapsed()
        );
        assert_eq!(metric(a.addr, "ssehub_redis_up").await, 0.0);
        assert!(get(a.addr, "/readyz").await.text().contains("Redis"));
        redis.signal(libc::SIGCONT);
        wait_ready(a.addr, StatusCode::OK).await;
        assert_eq!(metric(a.addr, "ssehub_redis_up").await, 1.0);
        assert!(metric(a.addr, "ssehub_redis_reconnects_total").await >= 1.0);
        // The stream stayed open through it, and is fed again.
        let id = publish_ok(a.addr, Some("t"), None, "after").await;
        let e = sub.next_event(STEP).await;
        assert_eq!((e.id(), e.data.as_str()), (id.as_str(), "after"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_started_while_redis_is_down_serves_and_refuses_publishes() {
    within(async {
        let mut redis = Redis::start(false);
        let url = redis.url();
        redis.kill();
        let mut config = config();
        config.redis = Some(url);
        let a = start(config).await;
        assert_eq!(
            get(a.addr, "/readyz").await.status,
            StatusCode::SERVICE_UNAVAILABLE
        );
        let refused = publish_reply(a.addr, Some("t"), "x").await;
        assert_eq!(
            refused.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "{}",
            refused.text()
        );
        assert!(!refused.text().contains("unix://"), "{}", refused.text());
        // A stream is answered (so EventSource keeps trying), with a retry.
        let mut early = subscribe(a.addr, "?topic=t").await;
        assert!(early.opening_retry().await > 0);
        redis.spawn();
        wait_ready(a.addr, StatusCode::OK).await;
        let mut sub = subscribe(a.addr, "?topic=t").await;
        let id = publish_ok(a.addr, Some("t"), None, "now").await;
        assert_eq!(sub.next_event(STEP).await.id(), id);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_of_10000_events_arrives_whole_on_every_node() {
    within(async {
        let redis = Redis::start(false);
        let (a, b) = (node(&redis).await, node(&redis).await);
        let mut subs = [
            subscribe(a.addr, "?topic=t").await,
            subscribe(b.addr, "?topic=t").await,
        ];
        let body: String = (0..10_000).map(|i| format!("data: {i}\n\n")).collect();
        let reply = publish_batch(a.addr, Some("t"), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let ids: Vec<String> = reply.text().lines().map(str::to_string).collect();
        assert_eq!(ids.len(), 10_000);
        for s in &mut subs {
            let got = read_n(s, 10_000).await;
            assert_eq!(got.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(), ids);
            assert!(got.iter().enumerate().all(|(i, (_, d))| *d == i.to_string()));
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_events_reach_only_authorised_subscribers_on_every_node() {
    within(async {
        let redis = Redis::start(false);
        let mut config = config();
        config.auth.subscriber_jwt_key = Some(ssehub::auth::KeySource::Inline(tokens::SECRET.into()));
        config.auth.anonymous = true;
        let (a, b) = (
            node_with(&redis, config.clone()).await,
            node_with(&redis, config).await,
        );
        let token = tokens::sub_token(&["t"]);
        let mut allowed = subscribe(b.addr, &format!("?topic=t&authorization={token}")).await;
        let mut anonymous = subscribe(b.addr, "?topic=t").await;
        let secret = post(a.addr, "/publish?topic=t&private=1", &[], "secret").await;
        assert_eq!(secret.status, StatusCode::OK, "{}", secret.text());
        publish_ok(a.addr, Some("t"), None, "public").await;
        let got: Vec<String> = read_n(&mut allowed, 2)
            .await
            .into_iter()
            .map(|(_, d)| d)
            .collect();
        assert_eq!(got, ["secret", "public"]);
        assert_eq!(
            anonymous.next_event(STEP).await.data,
            "public",
            "the anonymous subscriber saw a private event"
        );
        // And on replay, from another node.
        let first = secret.text().trim().to_string();
        let before = format!("{}-0-0", first.split('-').next().unwrap_or(""));
        let mut replay_anon = subscribe_with(a.addr, "?topic=t", &[("last-event-id", &before)]).await;
        assert_eq!(replay_anon.next_event(STEP).await.data, "public");
    })
    .await;
}

/// The four Redis families of `/metrics` follow the connection: up,
/// errors (the reader's and the publishes'), reconnects, and the lag from
/// Redis appending an entry (its id is Redis's clock) to its delivery.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_metrics_follow_the_connection() {
    within(async {
        let mut redis = Redis::start(false);
        // An epoch set beforehand, so an entry can be written by hand below.
        assert_eq!(redis.command("SET ssehub:epoch ep0").as_deref(), Some("+OK"));
        let a = node(&redis).await;
        assert_eq!(metric(a.addr, "ssehub_redis_up").await, 1.0);
        assert_eq!(metric(a.addr, "ssehub_redis_errors_total").await, 0.0);
        assert_eq!(metric(a.addr, "ssehub_redis_reconnects_total").await, 0.0);
        assert_eq!(metric(a.addr, "ssehub_redis_lag_seconds").await, 0.0);
        let mut sub = subscribe(a.addr, "?topic=t").await;
        // An entry Redis "appended" at 1 s after the epoch of Unix time: the
        // lag is the age of that id when it is delivered.
        assert_eq!(
            redis
                .command("XADD ssehub:log 1000-1 ep ep0 s 1 t t d old")
                .as_deref(),
            Some("$6")
        );
        assert_eq!(redis.command("SET ssehub:seq 1").as_deref(), Some("+OK"));
        assert_eq!(sub.next_event(STEP).await.id(), "ep0-1000-1");
        let age = metric(a.addr, "ssehub_redis_lag_seconds").await;
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64()
            - 1.0;
        assert!(
            (age - since).abs() < 60.0,
            "the lag is the seconds since Redis appended: {age}, wanted about {since}"
        );
        let id = publish_ok(a.addr, Some("t"), None, "now").await;
        assert_eq!(sub.next_event(STEP).await.id(), id);
        let lag = metric(a.addr, "ssehub_redis_lag_seconds").await;
        assert!((0.0..2.0).contains(&lag), "lag of a fresh publish: {lag}");

        redis.kill();
        wait_metric(a.addr, "ssehub_redis_up", |v| v == 0.0).await;
        let errors = metric(a.addr, "ssehub_redis_errors_total").await;
        assert!(errors >= 1.0, "the reader's lost connection counts: {errors}");
        let refused = publish_reply(a.addr, Some("t"), "x").await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(metric(a.addr, "ssehub_redis_errors_total").await > errors);
        assert_eq!(metric(a.addr, "ssehub_redis_reconnects_total").await, 0.0);
        redis.spawn();
        wait_metric(a.addr, "ssehub_redis_up", |v| v == 1.0).await;
        assert!(metric(a.addr, "ssehub_redis_reconnects_total").await >= 1.0);
    })
    .await;
}

/// A real node whose Redis URL holds a password and points nowhere: its
/// log lines (every level) and its answers never contain the password.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redis_password_is_never_logged_or_echoed() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    within(async {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
            .args([
                "--listen",
                "127.0.0.1:0",
                "--redis",
                "redis://user:secret@127.0.0.1:1",
            ])
            .env("RUST_LOG", "trace")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("run ssehub");
        let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
        let mut log = String::new();
        let addr: std::net::SocketAddr = loop {
            let mut line = String::new();
            let n = bounded(STEP, "ssehub's start-up lines", stderr.read_line(&mut line))
                .await
                .expect("read stderr");
            assert!(n > 0, "ssehub ended early:\n{log}");
            log.push_str(&line);
            if let Some(addr) = line.split("listening on ").nth(1) {
                break addr.trim().parse().expect("an address");
            }
        };
        let mut answers = Vec::new();
        let ready = get(addr, "/readyz").await;
        assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
        answers.push(ready.text());
        let refused = publish_reply(addr, Some("t"), "x").await;
        assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
        answers.push(refused.text());
        let close = post(addr, "/close?topic=t", &[], "").await;
        assert_eq!(close.status, StatusCode::SERVICE_UNAVAILABLE);
        answers.push(close.text());
        answers.push(get(addr, "/metrics").await.text());
        for a in &answers {
            assert!(!a.contains("secret"), "an answer holds the password: {a}");
        }
        // The reader's attempts go on in the background; then stop it and
        // read every line it wrote.
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        let pid = child.id().expect("pid") as libc::pid_t;
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        bounded(STEP, "ssehub's rest of stderr", stderr.read_to_string(&mut log))
            .await
            .expect("read stderr");
        let _ = bounded(STEP, "ssehub's exit", child.wait()).await;
        assert!(log.contains("127.0.0.1:1"), "where Redis is, is logged:\n{log}");
        assert!(
            log.contains("POST /close") || log.contains("path=/close"),
            "the access log ran:\n{log}"
        );
        assert!(!log.contains("secret"), "the log holds the password:\n{log}");
    })
    .await;
}

/// Mercure's endpoint on the shared log: a single-topic update published on
/// one node reaches a selector subscriber on another, `earliest` replays it
/// there, and what the log cannot carry yet (several topics, an id, a
/// retry) is refused with a reason instead of being half-kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mercure_updates_cross_nodes_and_unsupported_fields_are_refused() {
    within(async {
        let redis = Redis::start(false);
        let (a, b) = (node(&redis).await, node(&redis).await);
        let path = "/.well-known/mercure?topic=https%3A%2F%2Fexample.com%2Fbooks%2F%7Bid%7D";
        let (status, _, mut reader) = open_stream(&http1_client(), b.addr, path, &[]).await;
        assert_eq!(status, StatusCode::OK);
        wait_subscribers(&b.stats, 1).await;
        let form = [("content-type", "application/x-www-form-urlencoded")];
        let hub = "/.well-known/mercure";
        let reply = post(
            a.addr,
            hub,
            &form,
            "topic=https://example.com/books/1&data=shared",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let id = reply.text();
        let e = reader.next_event(Duration::from_secs(10)).await;
        assert_eq!((e.id(), e.data.as_str()), (id.as_str(), "shared"));
        let replay = format!("{path}&lastEventID=earliest");
        let (_, h, mut again) = open_stream(&http1_client(), b.addr, &replay, &[]).await;
        assert_eq!(header_str(&h, "last-event-id"), Some("earliest"));
        assert_eq!(again.next_event(Duration::from_secs(10)).await.data, "shared");
        for body in ["topic=a&topic=b", "topic=a&id=mine", "topic=a&retry=5"] {
            let refused = post(a.addr, hub, &form, body).await;
            assert_eq!(
                refused.status,
                StatusCode::BAD_REQUEST,
                "{body}: {}",
                refused.text()
            );
        }
    })
    .await;
}
