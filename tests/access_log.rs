//! The access log, read from the real binary's stderr: a line per request
//! that is not a stream, a line per stream when it ends saying why, JSON
//! with `--log-format json`, nothing with `--access-log off`, and never a
//! token. Also the start-up messages a new user sees: unknown `SSEHUB_*`
//! variables and a busy port.

mod common;
mod support;
mod tokens;

use common::*;
use hyper::StatusCode;
use std::time::Duration;
use support::{connect_raw, HubProcess};
use tokio::io::AsyncWriteExt;

/// How long a log line may take to appear.
const LOG_WAIT: Duration = Duration::from_secs(10);

#[tokio::test]
async fn access_log_has_a_line_for_a_publish() {
    within(async {
        let hub = HubProcess::spawn(&[]).await;
        let id = publish_ok(hub.addr, Some("news"), Some("headline"), "x").await;
        assert!(!id.is_empty());
        let line = hub
            .wait_log_line(&["ssehub::access", "method=POST"], LOG_WAIT)
            .await;
        for part in [
            "peer=127.0.0.1:",
            "proto=HTTP/1.1",
            "path=/publish?topic=news&event=headline",
            "status=200",
            "topics=news",
            "duration_ms=",
        ] {
            assert!(line.contains(part), "{part} missing from {line:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn access_log_has_a_line_for_a_refused_publish() {
    within(async {
        let hub = HubProcess::spawn(&[]).await;
        let reply = post(hub.addr, "/publish?topc=news", &[], "x").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let line = hub
            .wait_log_line(&["ssehub::access", "method=POST"], LOG_WAIT)
            .await;
        assert!(line.contains("path=/publish?topc=news status=400"), "{line:?}");
    })
    .await;
}

/// Opens a stream on `hub`, runs `end` to make it end, and returns the
/// stream's access line once it is logged with `end=REASON`.
async fn stream_line(hub: &HubProcess, reason: &str) -> String {
    hub.wait_log_line(
        &[
            "ssehub::access",
            "method=GET",
            "path=/events",
            &format!("end={reason}"),
        ],
        LOG_WAIT,
    )
    .await
}

#[tokio::test]
async fn access_log_says_a_stream_ended_because_the_client_closed() {
    within(async {
        let hub = HubProcess::spawn(&[]).await;
        let mut reader = subscribe(hub.addr, "?topic=a&topic=b").await;
        reader.opening_retry().await;
        publish_ok(hub.addr, Some("a"), None, "one").await;
        reader.next_event(STEP).await;
        drop(reader);
        let line = stream_line(&hub, "client_closed").await;
        assert!(line.contains("status=200 topics=a,b"), "{line:?}");
        assert!(line.contains(" events=1 bytes="), "{line:?}");
    })
    .await;
}

#[tokio::test]
async fn access_log_says_a_stream_ended_for_its_lifetime() {
    within(async {
        let hub = HubProcess::spawn(&["--max-stream-lifetime", "200ms"]).await;
        let mut reader = subscribe(hub.addr, "?topic=l").await;
        reader.opening_retry().await;
        reader.expect_end(STEP).await;
        stream_line(&hub, "lifetime").await;
    })
    .await;
}

#[tokio::test]
async fn access_log_says_a_stream_ended_because_its_token_expired() {
    within(async {
        let hub = HubProcess::spawn_with_env(&[], &[("SSEHUB_JWT_KEY", tokens::SECRET)]).await;
        let claims = tokens::with(
            tokens::mercure(&["x"], &[]),
            serde_json::json!({ "exp": tokens::now() + 1 }),
        );
        let token = tokens::hs256(tokens::SECRET, &claims);
        let mut reader = subscribe(hub.addr, &format!("?topic=x&authorization={token}")).await;
        reader.opening_retry().await;
        reader.expect_end(STEP).await;
        let line = stream_line(&hub, "token_expired").await;
        assert!(!line.contains(&token), "the token was logged: {line:?}");
    })
    .await;
}

#[tokio::test]
async fn access_log_says_a_stream_ended_because_its_topics_closed() {
    within(async {
        let hub = HubProcess::spawn(&[]).await;
        let mut reader = subscribe(hub.addr, "?topic=c").await;
        reader.opening_retry().await;
        assert_eq!(
            post(hub.addr, "/close?topic=c", &[], "").await.status,
            StatusCode::OK
        );
        assert_eq!(reader.next_event(STEP).await.name(), "close");
        reader.expect_end(STEP).await;
        let line = stream_line(&hub, "topics_closed").await;
        // The `close` event counts.
        assert!(line.contains(" events=1 "), "{line:?}");
    })
    .await;
}

#[tokio::test]
async fn access_log_says_a_stream_ended_for_shutdown() {
    within(async {
        let mut hub = HubProcess::spawn(&["--shutdown-grace", "2s"]).await;
        let mut reader = subscribe(hub.addr, "?topic=s").await;
        reader.opening_retry().await;
        hub.signal(libc::SIGTERM);
        reader.expect_end(STEP).await;
        assert!(hub.wait_exit(STEP).await.success());
        stream_line(&hub, "shutdown").await;
    })
    .await;
}

#[tokio::test]
async fn access_log_says_a_stream_was_shed() {
    within(async {
        let hub = HubProcess::spawn(&["--max-connections", "1"]).await;
        let mut held = subscribe(hub.addr, "?topic=h").await;
        held.opening_retry().await;
        let mut shed = subscribe(hub.addr, "?topic=h").await;
        shed.opening_retry().await;
        shed.expect_end(STEP).await;
        let line = stream_line(&hub, "shed").await;
        assert!(line.contains("status=200"), "{line:?}");
    })
    .await;
}

/// A client that asks for a stream over a small receive buffer and never
/// reads, while big events are published until `reason` is logged.
async fn stalled_stream_ends_with(args: &[&str], reason: &str) -> String {
    let hub = HubProcess::spawn(args).await;
    let mut stalled = connect_raw(hub.addr, Some(4096)).await;
    stalled
        .write_all(b"GET /events?topic=z HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("write request");
    // A reader that keeps up, so publishing is paced by delivery.
    let mut witness = subscribe(hub.addr, "?topic=z").await;
    witness.opening_retry().await;
    let publisher = Publisher::new(hub.addr);
    let payload = "x".repeat(60_000);
    let needles = ["ssehub::access", "method=GET", "end="];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ended = hub.log().lines().any(|l| needles.iter().all(|n| l.contains(n)));
        if ended {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled stream not ended; stderr:\n{}",
            hub.log()
        );
        publisher.publish_ok(Some("z"), None, &payload).await;
        witness.next_event(STEP).await;
    }
    let line = stream_line(&hub, reason).await;
    drop(stalled);
    line
}

#[tokio::test]
async fn access_log_says_a_stream_was_dropped_for_being_slow() {
    within(async {
        let line = stalled_stream_ends_with(
            // Five events of 60 kB fill the backlog long before the write
            // deadline (two heartbeats); the stream, closed as slow, ends
            // at that deadline, its socket still stalled.
            &["--max-subscriber-backlog", "300000", "--heartbeat", "2s"],
            "slow",
        )
        .await;
        assert!(line.contains("topics=z"), "{line:?}");
    })
    .await;
}

#[tokio::test]
async fn access_log_says_a_stream_ended_on_a_dead_peer() {
    within(async {
        // A write blocked for two heartbeats: the peer stopped reading.
        stalled_stream_ends_with(
            &["--max-subscriber-backlog", "67108864", "--heartbeat", "200ms"],
            "dead_peer",
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn access_log_has_a_line_for_hypers_own_431() {
    within(async {
        let hub = HubProcess::spawn(&[]).await;
        let mut sock = connect_raw(hub.addr, None).await;
        let mut request = b"GET /events?pad=".to_vec();
        request.extend(std::iter::repeat_n(b'x', 20_000));
        request.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\n\r\n");
        let _ = sock.write_all(&request).await;
        support::read_until_closed(&mut sock, STEP, "the 431").await;
        hub.wait_log_line(&["ssehub::access", "status=431"], LOG_WAIT)
            .await;
    })
    .await;
}

#[tokio::test]
async fn tokens_never_appear_in_the_log() {
    within(async {
        let token = "very-secret-token";
        let hub = HubProcess::spawn(&["--publish-token", token]).await;
        let auth = format!("Bearer {token}");
        let reply = post(hub.addr, "/publish?topic=t", &[("authorization", &auth)], "x").await;
        assert_eq!(reply.status, StatusCode::OK);
        let reply = post(
            hub.addr,
            "/publish?topic=t",
            &[("authorization", "Bearer wrong-one")],
            "x",
        )
        .await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        let mut reader = subscribe(hub.addr, &format!("?topic=t&authorization={token}")).await;
        reader.opening_retry().await;
        drop(reader);
        let line = stream_line(&hub, "client_closed").await;
        assert!(line.contains("authorization=REDACTED"), "{line:?}");
        hub.wait_log_line(&["status=401"], LOG_WAIT).await;
        let log = hub.log();
        assert!(!log.contains(token) && !log.contains("wrong-one"), "{log}");
    })
    .await;
}

#[tokio::test]
async fn access_log_in_json_has_one_object_per_line() {
    within(async {
        let hub = HubProcess::spawn(&["--log-format", "json"]).await;
        publish_ok(hub.addr, Some("j"), None, "x").await;
        let line = hub
            .wait_log_line(&["\"target\":\"ssehub::access\""], LOG_WAIT)
            .await;
        assert!(line.starts_with('{') && line.ends_with('}'), "{line:?}");
        for part in [
            "\"method\":\"POST\"",
            "\"status\":200",
            "\"path\":\"/publish?topic=j\"",
            "\"topics\":\"j\"",
        ] {
            assert!(line.contains(part), "{part} missing from {line:?}");
        }
    })
    .await;
}

/// A topic with a space (refused, but still logged) is escaped as `\x20`,
/// so the line still splits into `key=value` pairs and the JSON form gets
/// the same keys, not a stray one from the topic's second half.
#[tokio::test]
async fn access_log_escapes_a_space_in_a_topic() {
    within(async {
        let hub = HubProcess::spawn(&[]).await;
        let reply = get(hub.addr, "/events?topic=a%20b").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let line = hub
            .wait_log_line(&["ssehub::access", "path=/events?topic=a%20b"], LOG_WAIT)
            .await;
        assert!(line.contains(" topics=a\\x20b duration_ms="), "{line:?}");
        let pairs = &line[line.find("peer=").expect("peer=")..];
        for pair in pairs.split(' ') {
            assert!(pair.contains('='), "{pair:?} is no key=value pair in {line:?}");
        }

        let hub = HubProcess::spawn(&["--log-format", "json"]).await;
        let reply = get(hub.addr, "/events?topic=a%20b").await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST);
        let line = hub
            .wait_log_line(&["\"target\":\"ssehub::access\"", "\"status\":400"], LOG_WAIT)
            .await;
        let json: serde_json::Value = serde_json::from_str(&line).expect("one JSON object");
        let keys: Vec<&str> = json.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            keys.len(),
            9,
            "level, target, peer, proto, method, path, status, topics, duration_ms: {line}"
        );
        assert_eq!(json["topics"], "a\\x20b", "{line}");
    })
    .await;
}

/// Makes requests that each log a line when the access log is on (a
/// publish, a refused publish, a health check), then sends SIGHUP and waits
/// for its "SIGHUP received" line. Each request's line is written before its
/// answer goes out, so it reached stderr before the signal was sent: once the
/// SIGHUP line has been read, every earlier line has too. Returns stderr up to
/// the SIGHUP line.
async fn log_after_requests(args: &[&str]) -> String {
    let hub = HubProcess::spawn(args).await;
    publish_ok(hub.addr, Some("o"), None, "x").await;
    let refused = post(hub.addr, "/publish?topc=o", &[], "x").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST);
    assert_eq!(get(hub.addr, "/healthz").await.status, StatusCode::OK);
    hub.signal(libc::SIGHUP);
    hub.wait_log_line(&["SIGHUP received"], LOG_WAIT).await;
    hub.log()
}

#[tokio::test]
async fn access_log_off_logs_no_requests() {
    within(async {
        // The same requests with the access log on do log their lines before
        // the marker, so the marker is a real signal...
        let on = log_after_requests(&[]).await;
        for part in ["method=POST path=/publish?topic=o", "status=400", "path=/healthz"] {
            assert!(
                on.lines()
                    .any(|l| l.contains("ssehub::access") && l.contains(part)),
                "no access line with {part:?} before the marker with the log on:\n{on}"
            );
        }
        // ...and with it off there is none.
        let off = log_after_requests(&["--access-log", "off"]).await;
        assert!(!off.contains("ssehub::access"), "{off}");
    })
    .await;
}

#[tokio::test]
async fn unknown_ssehub_variable_is_warned_about_at_start() {
    within(async {
        let hub = HubProcess::spawn_with_env(&[], &[("SSEHUB_HISTROY", "5"), ("SSEHUB_QUEU", "5")]).await;
        hub.wait_log_line(
            &["unknown environment variable SSEHUB_HISTROY (did you mean SSEHUB_HISTORY?)"],
            LOG_WAIT,
        )
        .await;
        hub.wait_log_line(
            &["unknown environment variable SSEHUB_QUEU (did you mean SSEHUB_MAX_SUBSCRIBER_BACKLOG?"],
            LOG_WAIT,
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn busy_port_names_the_address_and_the_flag() {
    within(async {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = taken.local_addr().expect("addr").to_string();
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_ssehub"))
            .args(["--listen", &addr])
            .env_remove("SSEHUB_LISTEN")
            .output();
        let out = bounded(STEP, "ssehub to fail", out).await.expect("run ssehub");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(&format!(
                "cannot listen on {addr} (--listen): address already in use"
            )),
            "{err}"
        );
        assert!(!err.contains("os error"), "{err}");
    })
    .await;
}

#[tokio::test]
async fn sighup_is_survived_and_logged() {
    within(async {
        let mut hub = HubProcess::spawn(&[]).await;
        hub.signal(libc::SIGHUP);
        hub.wait_log_line(&["SIGHUP"], LOG_WAIT).await;
        assert_eq!(get(hub.addr, "/healthz").await.status, StatusCode::OK);
        assert!(
            hub.child.try_wait().expect("try_wait").is_none(),
            "exited on SIGHUP"
        );
    })
    .await;
}

#[tokio::test]
async fn access_log_says_an_h2_stream_ended_on_unanswered_pings() {
    within(async {
        let hub = HubProcess::spawn(&[
            "--h2-keepalive",
            "200ms",
            "--h2-keepalive-timeout",
            "300ms",
            "--heartbeat",
            "1m",
        ])
        .await;
        let proxy = support::BlackholeProxy::start(hub.addr, 4096).await;
        let client = h2c_client();
        let (status, _, mut reader) = open_stream(&client, proxy.addr, "/events?topic=p", &[]).await;
        assert_eq!(status, StatusCode::OK);
        reader.opening_retry().await;
        proxy.blackhole();
        let line = stream_line(&hub, "dead_peer").await;
        assert!(line.contains("proto=HTTP/2"), "{line:?}");
        drop(reader);
        drop(proxy);
    })
    .await;
}
