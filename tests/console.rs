//! The browser side, over real sockets: the console at `/` and its
//! `/stats` only where `--ui` allows, `/ssehub.js` always (cached by ETag,
//! loadable from any origin), and the heartbeat every stream announces for
//! clients that time stalls by it. The page and the client themselves run in
//! Chromium in the interop checks (interop/browser_client.mjs).

mod common;
mod support;
mod tokens;

use common::*;
use hyper::{Method, StatusCode};
use serde_json::Value;
use ssehub::auth::KeySource;
use ssehub::config::Ui;
use std::time::Duration;
use support::HubProcess;

/// The client module as kept in the repository: what `/ssehub.js` must serve.
const CLIENT_FILE: &str = include_str!("../web/ssehub.js");

async fn stats(addr: std::net::SocketAddr) -> Value {
    let reply = get(addr, "/stats").await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    serde_json::from_slice(&reply.body).expect("/stats is JSON")
}

#[tokio::test]
async fn the_console_is_served_at_the_root_over_http1_and_h2c() {
    within(async {
        let srv = start_default().await;
        for proto in [Proto::H1, Proto::H2c] {
            let reply = fetch_with(&client(proto), srv.addr, Method::GET, "/", &[], "").await;
            assert_eq!(reply.status, StatusCode::OK, "{proto:?}");
            assert_eq!(reply.header("content-type"), Some("text/html; charset=utf-8"));
            assert_eq!(reply.header("x-frame-options"), Some("DENY"));
            let page = reply.text();
            assert!(page.contains("<title>ssehub console</title>"), "{proto:?}");
            assert!(
                page.contains("from '/ssehub.js'"),
                "the page uses the client module"
            );
            // Self-contained: nothing fetched from another host.
            assert!(
                !page.contains("src=\"http") && !page.contains("href=\"http"),
                "external resource"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn ui_off_answers_404_at_the_root_and_for_stats_and_still_serves_the_client() {
    within(async {
        let mut config = config();
        config.ui = Ui::Off;
        let srv = start(config).await;
        for path in ["/", "/stats"] {
            let reply = get(srv.addr, path).await;
            assert_eq!(reply.status, StatusCode::NOT_FOUND, "{path}");
            assert!(
                reply.text().starts_with("no such path"),
                "{path}: {}",
                reply.text()
            );
        }
        let reply = get(srv.addr, "/ssehub.js").await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text(), CLIENT_FILE);
    })
    .await;
}

#[tokio::test]
async fn ui_auto_hides_the_console_on_a_listener_that_is_not_loopback() {
    within(async {
        // Bound to every address; reached over loopback all the same.
        let mut everywhere = config();
        everywhere.listen = "0.0.0.0:0".parse().unwrap();
        let srv = start(everywhere).await;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], srv.addr.port()));
        assert_eq!(get(addr, "/").await.status, StatusCode::NOT_FOUND);
        assert_eq!(get(addr, "/stats").await.status, StatusCode::NOT_FOUND);
        assert_eq!(get(addr, "/ssehub.js").await.status, StatusCode::OK);
        // And --ui on serves it there anyway.
        let mut forced = config();
        forced.listen = "0.0.0.0:0".parse().unwrap();
        forced.ui = Ui::On;
        let srv = start(forced).await;
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], srv.addr.port()));
        assert_eq!(get(addr, "/").await.status, StatusCode::OK);
    })
    .await;
}

#[tokio::test]
async fn the_client_module_is_cached_by_etag_and_loadable_from_any_origin() {
    within(async {
        let srv = start_default().await;
        for proto in [Proto::H1, Proto::H2c] {
            let c = client(proto);
            let reply = fetch_with(&c, srv.addr, Method::GET, "/ssehub.js", &[], "").await;
            assert_eq!(reply.status, StatusCode::OK);
            assert_eq!(reply.text(), CLIENT_FILE, "serves web/ssehub.js as it is");
            assert_eq!(
                reply.header("content-type"),
                Some("text/javascript; charset=utf-8")
            );
            assert_eq!(reply.header("cache-control"), Some("public, max-age=86400"));
            assert_eq!(reply.header("access-control-allow-origin"), Some("*"));
            let etag = reply.header("etag").expect("etag").to_string();
            assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
            let again = fetch_with(
                &c,
                srv.addr,
                Method::GET,
                "/ssehub.js",
                &[("if-none-match", &etag)],
                "",
            )
            .await;
            assert_eq!(again.status, StatusCode::NOT_MODIFIED, "{proto:?}");
            assert!(again.body.is_empty());
            assert_eq!(again.header("etag"), Some(etag.as_str()));
            let stale = fetch_with(
                &c,
                srv.addr,
                Method::GET,
                "/ssehub.js",
                &[("if-none-match", "\"0000000000000000\"")],
                "",
            )
            .await;
            assert_eq!(stale.status, StatusCode::OK);
        }
    })
    .await;
}

#[tokio::test]
async fn stats_count_streams_by_protocol_topics_deliveries_and_history() {
    within(async {
        let mut config = config();
        config.history = 100;
        let srv = start(config).await;
        let before = stats(srv.addr).await;
        assert_eq!(before["streams"]["http1"], 0);
        assert_eq!(before["topics"].as_array().map(Vec::len), Some(0));
        assert_eq!(before["history"]["capacity"], 100);

        let mut a1 = subscribe(srv.addr, "?topic=alpha").await;
        let (status, _, mut a2) = open_stream(&h2c_client(), srv.addr, "/events?topic=alpha", &[]).await;
        assert_eq!(status, StatusCode::OK);
        let mut b = subscribe(srv.addr, "?topic=b%22q").await;
        wait_subscribers(&srv.stats, 3).await;
        for i in 0..3 {
            publish_ok(srv.addr, Some("alpha"), None, &format!("a{i}")).await;
        }
        publish_ok(srv.addr, Some("b\"q"), None, "b").await;
        a1.next_data(3, STEP).await;
        a2.next_data(3, STEP).await;
        b.next_data(1, STEP).await;

        let s = stats(srv.addr).await;
        assert_eq!(s["streams"]["http1"], 2, "{s}");
        assert_eq!(s["streams"]["http2"], 1, "{s}");
        assert_eq!(s["subscribers"], 3);
        assert_eq!(s["events_published"], 4);
        assert_eq!(s["deliveries"], 7, "3 events to 2 subscribers, 1 to 1");
        assert_eq!(s["history"]["events"], 4);
        assert_eq!(s["topic_count"], 2);
        // The busiest first; a quote in a topic stays valid JSON.
        assert_eq!(s["topics"][0]["topic"], "alpha");
        assert_eq!(s["topics"][0]["subscribers"], 2);
        assert_eq!(s["topics"][1]["topic"], "b\"q");
        assert_eq!(s["topics"][1]["subscribers"], 1);
        for key in [
            "dropped_slow",
            "dead_peers",
            "shed",
            "resets_sent",
            "topics_closed",
        ] {
            assert_eq!(s[key], 0, "{key}");
        }
        assert!(s["version"].is_string());
    })
    .await;
}

#[tokio::test]
async fn stats_count_auth_refusals_and_resets() {
    within(async {
        let mut config = config();
        config.auth.subscriber_jwt_key = Some(KeySource::Inline(tokens::SECRET.into()));
        let srv = start(config).await;
        let reply = get(srv.addr, "/events?topic=x").await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
        let token = tokens::sub_token(&["x"]);
        let auth = format!("Bearer {token}");
        let (status, _, mut reader) = open_stream(
            &http1_client(),
            srv.addr,
            "/events?topic=x",
            &[("authorization", &auth), ("last-event-id", "not-an-id")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(reader.next_event(STEP).await.name(), "reset");
        let s = stats(srv.addr).await;
        assert_eq!(s["auth_refused"]["subscriber"], 1, "{s}");
        assert_eq!(s["auth_refused"]["publisher"], 0, "{s}");
        assert_eq!(s["resets_sent"], 1, "{s}");
    })
    .await;
}

#[tokio::test]
async fn streams_announce_their_heartbeat_over_http1_and_h2c() {
    within(async {
        let mut config = config();
        config.heartbeat = Duration::from_millis(1500);
        config.cors_origins = vec!["http://app.example".into()];
        let srv = start(config).await;
        for proto in [Proto::H1, Proto::H2c] {
            let (status, headers, _reader) = open_stream(
                &client(proto),
                srv.addr,
                "/events?topic=beat",
                &[("origin", "http://app.example")],
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                header_str(&headers, "ssehub-heartbeat"),
                Some("1500"),
                "{proto:?}"
            );
            // Readable by a fetch from the allowed origin.
            let exposed = header_str(&headers, "access-control-expose-headers").unwrap_or("");
            assert!(exposed.contains("ssehub-heartbeat"), "{proto:?}: {exposed:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn the_log_says_where_the_console_is_and_not_when_it_is_off() {
    within(async {
        let hub = HubProcess::spawn(&[]).await;
        let want = format!("console at http://{}/", hub.addr);
        hub.wait_log_line(&[&want], Duration::from_secs(10)).await;

        let hub = HubProcess::spawn(&["--ui", "off"]).await;
        // The console line would come before any request is served: once a
        // request's access line is there, its absence is final.
        assert_eq!(get(hub.addr, "/healthz").await.status, StatusCode::OK);
        hub.wait_log_line(&["ssehub::access", "path=/healthz"], Duration::from_secs(10))
            .await;
        assert!(!hub.log().contains("console at"), "{}", hub.log());
    })
    .await;
}
