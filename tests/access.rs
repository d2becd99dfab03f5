//! Who may publish (bearer token, or loopback without a proxy) and CORS.

mod common;

use bytes::Bytes;
use common::*;
use hyper::{Method, StatusCode};

const TOKEN: &str = "s3cret-token";

#[tokio::test]
async fn publish_and_close_need_the_bearer_token_when_one_is_set() {
    within(async {
        let mut config = config();
        config.publish_token = Some(TOKEN.to_string());
        let srv = start(config).await;
        let mut reader = subscribe(srv.addr, "").await;
        let good = format!("Bearer {TOKEN}");
        let wrong = format!("Bearer {TOKEN}x");
        let short = "Bearer s3cret".to_string();
        let basic = format!("Basic {TOKEN}");
        let bad_headers: Vec<Vec<(&str, &str)>> = vec![
            vec![],
            vec![("authorization", &wrong)],
            vec![("authorization", &short)],
            vec![("authorization", &basic)],
            vec![("authorization", TOKEN)],
            vec![("authorization", "Bearer ")],
        ];
        for headers in &bad_headers {
            let reply = post(srv.addr, "/publish?topic=t", headers, "nope").await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "publish with {headers:?}");
            let reply = post(srv.addr, "/close?topic=t", headers, "").await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "close with {headers:?}");
        }
        let stats = srv.stats();
        assert_eq!((stats.events_published, stats.topics_closed), (0, 0));

        let reply = post(srv.addr, "/publish?topic=t", &[("authorization", &good)], "yes").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let e = reader.next_event(STEP).await;
        assert_eq!((e.id(), e.data.as_str()), (reply.text().trim_end(), "yes"));

        let reply = post(srv.addr, "/close?topic=t", &[("authorization", &good)], "").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let e = reader.next_event(STEP).await;
        assert_eq!((e.name(), e.data.as_str()), ("close", "t"));
    })
    .await;
}

#[tokio::test]
async fn without_a_token_loopback_may_publish_and_close() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "").await;
        let id = publish_ok(srv.addr, Some("t"), None, "local").await;
        assert_eq!(reader.next_event(STEP).await.id(), id);
        assert_eq!(
            post(srv.addr, "/close?topic=t", &[], "").await.status,
            StatusCode::OK
        );
    })
    .await;
}

#[tokio::test]
async fn without_a_token_proxied_requests_are_refused_403() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "").await;
        let proxied: [(&str, &str); 4] = [
            ("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43"),
            ("forwarded", "for=127.0.0.1"),
            ("x-forwarded-for", "192.0.2.60"),
            ("x-forwarded-for", "127.0.0.1"),
        ];
        for header in proxied {
            let reply = post(srv.addr, "/publish?topic=t", &[header], "proxied").await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "publish with {header:?}");
            let reply = publish_batch_with(&srv, &[header]).await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "batch with {header:?}");
            let reply = post(srv.addr, "/close?topic=t", &[header], "").await;
            assert_eq!(reply.status, StatusCode::FORBIDDEN, "close with {header:?}");
        }
        let stats = srv.stats();
        assert_eq!((stats.events_published, stats.topics_closed), (0, 0));
        // Topic "t" is still open and nothing was delivered before this.
        let id = publish_ok(srv.addr, Some("t"), None, "direct").await;
        let e = reader.next_event(STEP).await;
        assert_eq!((e.id(), e.data.as_str()), (id.as_str(), "direct"));
    })
    .await;
}

async fn publish_batch_with(srv: &TestServer, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("content-type", "text/event-stream")];
    headers.extend_from_slice(extra);
    post(srv.addr, "/publish?topic=t", &headers, "data: x\n\n").await
}

#[tokio::test]
async fn events_are_readable_without_a_token() {
    within(async {
        let mut config = config();
        config.publish_token = Some(TOKEN.to_string());
        let srv = start(config).await;
        let mut reader = subscribe(srv.addr, "?topic=t").await;
        let reply = post(
            srv.addr,
            "/publish?topic=t",
            &[("authorization", &format!("Bearer {TOKEN}"))],
            "hi",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reader.next_event(STEP).await.data, "hi");
    })
    .await;
}

fn cors_config(origins: &[&str]) -> ssehub::Config {
    let mut config = config();
    config.cors_origins = origins.iter().map(|o| o.to_string()).collect();
    config
}

fn vary_has_origin(reply_headers: &hyper::HeaderMap) -> bool {
    reply_headers
        .get_all("vary")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| v.trim().eq_ignore_ascii_case("origin"))
}

#[tokio::test]
async fn cors_listed_origin_may_read_events_with_credentials() {
    within(async {
        let srv = start(cors_config(&["https://app.example", "https://other.example"])).await;
        for proto in [Proto::H1, Proto::H2c] {
            let (status, headers, mut reader) = open_stream(
                &client(proto),
                srv.addr,
                "/events?topic=t",
                &[("origin", "https://app.example")],
            )
            .await;
            assert_eq!(status, StatusCode::OK);
            assert_eq!(
                header_str(&headers, "access-control-allow-origin"),
                Some("https://app.example"),
                "{proto:?}"
            );
            assert_eq!(
                header_str(&headers, "access-control-allow-credentials"),
                Some("true"),
                "{proto:?}"
            );
            assert!(
                vary_has_origin(&headers),
                "{proto:?}: no Vary: Origin in {headers:?}"
            );
            assert!(reader.opening_retry().await > 0);
        }
    })
    .await;
}

#[tokio::test]
async fn cors_unlisted_origin_gets_no_allow_origin() {
    within(async {
        let srv = start(cors_config(&["https://app.example"])).await;
        for origin in ["https://evil.example", "https://app.example.evil", "null"] {
            let (status, headers, _reader) =
                open_stream(&http1_client(), srv.addr, "/events", &[("origin", origin)]).await;
            assert_eq!(status, StatusCode::OK);
            assert!(
                headers.get("access-control-allow-origin").is_none(),
                "{origin}: {headers:?}"
            );
            assert!(
                headers.get("access-control-allow-credentials").is_none(),
                "{origin}: {headers:?}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn cors_wildcard_allows_any_origin_without_credentials() {
    within(async {
        let srv = start(cors_config(&["*"])).await;
        let (status, headers, _reader) = open_stream(
            &http1_client(),
            srv.addr,
            "/events",
            &[("origin", "https://anyone.example")],
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(header_str(&headers, "access-control-allow-origin"), Some("*"));
        assert!(
            headers.get("access-control-allow-credentials").is_none(),
            "credentials must not be allowed with *: {headers:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn cors_preflight_for_publish_allows_authorization() {
    within(async {
        let mut config = cors_config(&["https://app.example"]);
        // A preflight never carries the token; it must not be refused for that.
        config.publish_token = Some(TOKEN.to_string());
        let srv = start(config).await;
        let preflight = |origin: &'static str| {
            let addr = srv.addr;
            async move {
                fetch(
                    addr,
                    Method::OPTIONS,
                    "/publish?topic=t",
                    &[
                        ("origin", origin),
                        ("access-control-request-method", "POST"),
                        ("access-control-request-headers", "authorization"),
                    ],
                    Bytes::new(),
                )
                .await
            }
        };
        let reply = preflight("https://app.example").await;
        assert_eq!(reply.status, StatusCode::NO_CONTENT);
        assert_eq!(
            reply.header("access-control-allow-origin"),
            Some("https://app.example")
        );
        let allowed = reply
            .header("access-control-allow-headers")
            .expect("Access-Control-Allow-Headers");
        assert!(
            allowed
                .split(',')
                .any(|h| h.trim().eq_ignore_ascii_case("authorization")),
            "Access-Control-Allow-Headers {allowed:?} lacks Authorization"
        );
        assert_eq!(srv.stats().events_published, 0);

        let reply = preflight("https://evil.example").await;
        assert!(
            reply.header("access-control-allow-origin").is_none(),
            "unlisted origin got {:?}",
            reply.header("access-control-allow-origin")
        );
        assert_eq!(srv.stats().events_published, 0);
    })
    .await;
}

#[tokio::test]
async fn bearer_scheme_is_matched_case_insensitively() {
    within(async {
        let mut config = config();
        config.publish_token = Some(TOKEN.to_string());
        let srv = start(config).await;
        let mut reader = subscribe(srv.addr, "?topic=t").await;
        reader.opening_retry().await;
        for scheme in ["bearer", "BEARER", "BeArEr"] {
            let auth = format!("{scheme} {TOKEN}");
            let reply = post(srv.addr, "/publish?topic=t", &[("authorization", &auth)], scheme).await;
            assert_eq!(reply.status, StatusCode::OK, "{scheme}: {}", reply.text());
            assert_eq!(reader.next_event(STEP).await.data, scheme);
        }
    })
    .await;
}
