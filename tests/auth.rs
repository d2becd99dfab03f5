//! Subscribers and publishers authorised per topic with JWTs (Mercure's
//! claims): the token matrix, where tokens come from, selectors, private
//! events live and on replay, expiry, publisher tokens, SIGHUP key
//! rotation, and that no secret reaches the log. Over HTTP/1.1 and h2c.

mod common;
mod support;
mod tokens;

use bytes::Bytes;
use common::*;
use hyper::{Method, StatusCode};
use jsonwebtoken::Algorithm;
use serde_json::json;
use ssehub::auth::{AuthConfig, KeySource};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use support::*;
use tokens::*;

const PROTOS: [Proto; 2] = [Proto::H1, Proto::H2c];

/// A server whose subscribers need a token signed with [`SECRET`];
/// publishing stays loopback-only (no publisher key).
fn subscriber_config(anonymous: bool) -> ssehub::Config {
    let mut c = config();
    c.auth = AuthConfig {
        subscriber_jwt_key: Some(KeySource::Inline(SECRET.into())),
        anonymous,
        ..AuthConfig::default()
    };
    c
}

fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A refusal must be a one-line plain-text reason; a 401 also carries the
/// Bearer challenge.
fn assert_refusal(reply: &Reply, status: StatusCode, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.text());
    let text = reply.text();
    assert!(
        text.ends_with('\n') && text.trim_end().lines().count() == 1 && !text.trim().is_empty(),
        "{what}: reason is not one line: {text:?}"
    );
    assert!(
        reply
            .header("content-type")
            .unwrap_or("")
            .starts_with("text/plain"),
        "{what}"
    );
    if status == StatusCode::UNAUTHORIZED {
        let challenge = reply.header("www-authenticate").unwrap_or("");
        assert!(
            challenge.starts_with("Bearer"),
            "{what}: WWW-Authenticate {challenge:?}"
        );
    }
}

/// Opens a stream that must be accepted, and returns its reader.
async fn stream_ok(
    proto: Proto,
    addr: std::net::SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> SseReader {
    let (status, h, reader) = open_stream(&client(proto), addr, path, headers).await;
    assert_eq!(status, StatusCode::OK, "{proto:?} GET {path}");
    assert_eq!(header_str(&h, "content-type"), Some("text/event-stream"));
    reader
}

/// Reads events until one whose data is `end`; returns the data before it.
async fn data_until_end(reader: &mut SseReader) -> Vec<String> {
    let mut out = Vec::new();
    loop {
        let e = reader.next_event(STEP).await;
        if e.data == "end" {
            return out;
        }
        out.push(e.data);
    }
}

fn refused_total(m: &Metrics, role: &str) -> u64 {
    m.samples
        .iter()
        .filter(|s| s.name == "ssehub_auth_refused_total" && s.labels.contains(&format!("role=\"{role}\"")))
        .map(|s| s.value as u64)
        .sum()
}

#[tokio::test]
async fn subscriber_token_matrix_gets_the_right_status_and_changes_nothing() {
    within(async {
        let srv = start(subscriber_config(false)).await;
        let rsa_pem = rsa_public_pem();
        let mut rsa_config = config();
        rsa_config.auth.subscriber_jwt_key = Some(KeySource::Inline(rsa_pem.clone()));
        let rsa_srv = start(rsa_config).await;

        let all = mercure(&["*"], &[]);
        let now = now();
        let big = with(all.clone(), json!({"padding": "x".repeat(9 * 1024)}));
        let rows: Vec<(&str, String, StatusCode, &str)> = vec![
            (
                "expired",
                hs256(SECRET, &with(all.clone(), json!({"exp": now - 60}))),
                StatusCode::UNAUTHORIZED,
                "expired",
            ),
            (
                "nbf in the future",
                hs256(SECRET, &with(all.clone(), json!({"nbf": now + 60}))),
                StatusCode::UNAUTHORIZED,
                "expired",
            ),
            (
                "wrong key",
                hs256("another-secret", &all),
                StatusCode::UNAUTHORIZED,
                "invalid",
            ),
            (
                "alg none",
                unsigned(&json!({"alg": "none", "typ": "JWT"}), &all),
                StatusCode::UNAUTHORIZED,
                "invalid",
            ),
            (
                "malformed base64",
                "!!!.###.$$$".to_string(),
                StatusCode::UNAUTHORIZED,
                "invalid",
            ),
            (
                "wrong claim type",
                hs256(SECRET, &json!({"mercure": {"subscribe": "*"}})),
                StatusCode::UNAUTHORIZED,
                "invalid",
            ),
            (
                "over 8 KiB",
                hs256(SECRET, &big),
                StatusCode::UNAUTHORIZED,
                "too_large",
            ),
            (
                "missing mercure claim",
                hs256(SECRET, &json!({"sub": "someone"})),
                StatusCode::FORBIDDEN,
                "forbidden",
            ),
            ("no token", String::new(), StatusCode::UNAUTHORIZED, "missing"),
        ];
        for proto in PROTOS {
            let http = client(proto);
            for (what, token, status, reason) in &rows {
                let before = metrics(srv.addr).await;
                let auth = bearer(token);
                let headers: Vec<(&str, &str)> = if token.is_empty() {
                    vec![]
                } else {
                    vec![("authorization", &auth)]
                };
                let reply = fetch_with(
                    &http,
                    srv.addr,
                    Method::GET,
                    "/events?topic=a",
                    &headers,
                    Bytes::new(),
                )
                .await;
                assert_refusal(&reply, *status, &format!("{proto:?} {what}"));
                if *status == StatusCode::UNAUTHORIZED {
                    let challenge = reply.header("www-authenticate").unwrap_or("");
                    let want = format!(
                        "Bearer error=\"invalid_token\", error_description=\"{}\"",
                        reply.text().trim_end()
                    );
                    assert_eq!(challenge, want, "{proto:?} {what}");
                }
                let after = metrics(srv.addr).await;
                let labels = format!("role=\"subscriber\",reason=\"{reason}\"");
                assert_eq!(
                    after.int_with("ssehub_auth_refused_total", &labels),
                    before.int_with("ssehub_auth_refused_total", &labels) + 1,
                    "{proto:?} {what} counted as {reason}"
                );
            }
            assert_eq!(
                srv.stats().subscribers,
                0,
                "{proto:?}: a refusal registered a subscriber"
            );

            // The confusion attack: HS256 "signed" with the RSA public key.
            let forged = hs256(&rsa_pem, &all);
            let reply = fetch_with(
                &http,
                rsa_srv.addr,
                Method::GET,
                "/events",
                &[("authorization", &bearer(&forged))],
                "",
            )
            .await;
            assert_refusal(&reply, StatusCode::UNAUTHORIZED, "HS256 with the RSA public key");
            assert_eq!(rsa_srv.stats().subscribers, 0);

            // And the valid token is accepted.
            let valid = hs256(SECRET, &all);
            let mut reader = stream_ok(
                proto,
                srv.addr,
                "/events?topic=a",
                &[("authorization", &bearer(&valid))],
            )
            .await;
            reader.opening_retry().await;
            wait_subscribers(&srv.stats, 1).await;
            drop(reader);
            wait_subscribers(&srv.stats, 0).await;
        }
    })
    .await;
}

#[tokio::test]
async fn pem_keys_take_their_algorithm_from_the_key() {
    within(async {
        for key in [es256(), ed25519()] {
            let mut c = config();
            c.auth.subscriber_jwt_key = Some(KeySource::Inline(key.public_pem.clone()));
            let srv = start(c).await;
            let claims = mercure(&["*"], &[]);
            for proto in PROTOS {
                let mut r = stream_ok(
                    proto,
                    srv.addr,
                    "/events",
                    &[("authorization", &bearer(&key.sign(&claims)))],
                )
                .await;
                r.opening_retry().await;
                // An HS256 token whose secret is the public key is refused.
                let forged = hs256(&key.public_pem, &claims);
                let reply = fetch_with(
                    &client(proto),
                    srv.addr,
                    Method::GET,
                    "/events",
                    &[("authorization", &bearer(&forged))],
                    "",
                )
                .await;
                assert_refusal(
                    &reply,
                    StatusCode::UNAUTHORIZED,
                    &format!("{:?} key, HS256 token", key.alg),
                );
            }
        }
    })
    .await;
}

/// Whether a subscriber with `token` gets a stream (200) or a 401.
async fn subscribe_status(proto: Proto, addr: std::net::SocketAddr, token: &str) -> StatusCode {
    let (status, _, _) = open_stream(
        &client(proto),
        addr,
        "/events",
        &[("authorization", &bearer(token))],
    )
    .await;
    status
}

#[tokio::test]
async fn rsa_keys_verify_each_rs_and_ps_algorithm_configured_and_only_that_one() {
    within(async {
        let key = rsa();
        let claims = mercure(&["*"], &[]);
        let algs = [
            Algorithm::RS256,
            Algorithm::RS384,
            Algorithm::RS512,
            Algorithm::PS256,
            Algorithm::PS384,
            Algorithm::PS512,
        ];
        for alg in algs {
            let mut c = config();
            c.auth.subscriber_jwt_key = Some(KeySource::Inline(key.spki_pem.clone()));
            c.auth.jwt_alg = Some(format!("{alg:?}"));
            let srv = start(c).await;
            for proto in PROTOS {
                let what = format!("{proto:?} --jwt-alg {alg:?}");
                assert_eq!(
                    subscribe_status(proto, srv.addr, &key.sign(alg, &claims)).await,
                    StatusCode::OK,
                    "{what}, its own token"
                );
                // The same key in every other algorithm is refused.
                for other in algs.iter().filter(|a| **a != alg) {
                    assert_eq!(
                        subscribe_status(proto, srv.addr, &key.sign(*other, &claims)).await,
                        StatusCode::UNAUTHORIZED,
                        "{what}, a {other:?} token"
                    );
                }
                assert_eq!(
                    subscribe_status(proto, srv.addr, &hs256(&key.spki_pem, &claims)).await,
                    StatusCode::UNAUTHORIZED,
                    "{what}, HS256 with the public key"
                );
            }
        }
        // A PKCS#1 `RSA PUBLIC KEY` works as well, RS256 by default; a
        // token of another RSA key is refused.
        let mut c = config();
        c.auth.subscriber_jwt_key = Some(KeySource::Inline(key.pkcs1_pem.clone()));
        let srv = start(c).await;
        let stranger = es256();
        for proto in PROTOS {
            assert_eq!(
                subscribe_status(proto, srv.addr, &key.sign(Algorithm::RS256, &claims)).await,
                StatusCode::OK,
                "{proto:?} PKCS#1 key, RS256"
            );
            assert_eq!(
                subscribe_status(proto, srv.addr, &key.sign(Algorithm::PS256, &claims)).await,
                StatusCode::UNAUTHORIZED,
                "{proto:?} PKCS#1 key, PS256 without --jwt-alg"
            );
            assert_eq!(
                subscribe_status(proto, srv.addr, &stranger.sign(&claims)).await,
                StatusCode::UNAUTHORIZED,
                "{proto:?} PKCS#1 key, an ES256 token"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_p384_key_verifies_es384_and_nothing_else() {
    within(async {
        let key = es384();
        let p256 = es256();
        let claims = mercure(&["*"], &[]);
        let mut c = config();
        c.auth.subscriber_jwt_key = Some(KeySource::Inline(key.public_pem.clone()));
        let srv = start(c).await;
        for proto in PROTOS {
            assert_eq!(
                subscribe_status(proto, srv.addr, &key.sign(&claims)).await,
                StatusCode::OK,
                "{proto:?} ES384"
            );
            assert_eq!(
                subscribe_status(proto, srv.addr, &p256.sign(&claims)).await,
                StatusCode::UNAUTHORIZED,
                "{proto:?} an ES256 token"
            );
            assert_eq!(
                subscribe_status(proto, srv.addr, &hs256(&key.public_pem, &claims)).await,
                StatusCode::UNAUTHORIZED,
                "{proto:?} HS256 with the public key"
            );
        }
        // A P-384 key cannot be configured for ES256.
        let mut c = AuthConfig {
            subscriber_jwt_key: Some(KeySource::Inline(key.public_pem.clone())),
            ..Default::default()
        };
        c.jwt_alg = Some("ES256".into());
        let e = c.load().unwrap_err();
        assert!(e.contains("ES256") && e.contains("P-384"), "{e}");
    })
    .await;
}

/// (header token, query token, cookie token, accepted).
type SourceCase<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, bool);

#[tokio::test]
async fn tokens_come_from_the_header_the_query_or_the_cookie_first_found_wins() {
    within(async {
        let srv = start(subscriber_config(false)).await;
        let good = sub_token(&["a"]);
        let bad = hs256("wrong", &mercure(&["a"], &[]));
        let cookie = |t: &str| format!("theme=dark; mercureAuthorization={t}");
        // (header token, query token, cookie token, accepted)
        let cases: Vec<SourceCase> = vec![
            (Some(&good), None, None, true),
            (None, Some(&good), None, true),
            (None, None, Some(&good), true),
            (Some(&good), Some(&bad), Some(&bad), true),
            (Some(&bad), Some(&good), Some(&good), false),
            (None, Some(&good), Some(&bad), true),
            (None, Some(&bad), Some(&good), false),
        ];
        for proto in PROTOS {
            for (header, query, cookie_token, accepted) in &cases {
                let auth = header.map(|t| format!("bearer {t}"));
                let cookie_value = cookie_token.map(cookie);
                let mut headers: Vec<(&str, &str)> = Vec::new();
                if let Some(a) = &auth {
                    headers.push(("authorization", a));
                }
                if let Some(c) = &cookie_value {
                    headers.push(("cookie", c));
                }
                let path = match query {
                    Some(t) => format!("/events?topic=a&authorization={t}"),
                    None => "/events?topic=a".to_string(),
                };
                let what = format!(
                    "{proto:?} header={} query={} cookie={}",
                    header.is_some(),
                    query.is_some(),
                    cookie_token.is_some()
                );
                if *accepted {
                    let mut r = stream_ok(proto, srv.addr, &path, &headers).await;
                    r.opening_retry().await;
                } else {
                    let reply = fetch_with(&client(proto), srv.addr, Method::GET, &path, &headers, "").await;
                    assert_refusal(&reply, StatusCode::UNAUTHORIZED, &what);
                }
            }
        }
        // Another cookie name is not read unless configured.
        let mut c = subscriber_config(false);
        c.auth.jwt_cookie = Some("session".into());
        let custom = start(c).await;
        let reply = fetch(
            custom.addr,
            Method::GET,
            "/events?topic=a",
            &[("cookie", &cookie(&good))],
            "",
        )
        .await;
        assert_refusal(
            &reply,
            StatusCode::UNAUTHORIZED,
            "default cookie on a custom name",
        );
        let mut r = stream_ok(
            Proto::H1,
            custom.addr,
            "/events?topic=a",
            &[("cookie", &format!("session={good}"))],
        )
        .await;
        r.opening_retry().await;
    })
    .await;
}

#[tokio::test]
async fn selectors_star_exact_and_uri_templates_grant_their_topics() {
    within(async {
        let srv = start(subscriber_config(false)).await;
        let users = "https://example.com/users/{id}";
        // (selectors, query, accepted)
        let cases: Vec<(Vec<&str>, String, bool)> = vec![
            (vec!["*"], String::new(), true),
            (
                vec!["*"],
                format!("?topic={}", pct("https://example.com/users/42")),
                true,
            ),
            (vec!["news"], "?topic=news".into(), true),
            (vec!["news"], "?topic=newsx".into(), false),
            (vec!["news"], String::new(), false),
            (
                vec![users],
                format!("?topic={}", pct("https://example.com/users/42")),
                true,
            ),
            (
                vec![users],
                format!("?topic={}", pct("https://example.com/users/42/posts")),
                false,
            ),
            (
                vec![users],
                format!("?topic={}", pct("https://example.com/groups/42")),
                false,
            ),
            (
                vec![users, "news"],
                format!("?topic=news&topic={}", pct("https://example.com/users/7")),
                true,
            ),
            (
                vec![users],
                format!("?topic=news&topic={}", pct("https://example.com/users/7")),
                false,
            ),
            (
                vec!["https://example.com/{+path}"],
                format!("?topic={}", pct("https://example.com/a/b?c")),
                true,
            ),
        ];
        for proto in PROTOS {
            for (selectors, query, accepted) in &cases {
                let token = sub_token(selectors);
                let path = format!("/events{query}");
                let auth = bearer(&token);
                let headers = [("authorization", auth.as_str())];
                if *accepted {
                    let mut r = stream_ok(proto, srv.addr, &path, &headers).await;
                    r.opening_retry().await;
                } else {
                    let reply = fetch_with(&client(proto), srv.addr, Method::GET, &path, &headers, "").await;
                    assert_refusal(&reply, StatusCode::FORBIDDEN, &format!("{selectors:?} {path}"));
                }
            }
        }
    })
    .await;
}

/// Publishes `data` on `topic` (or none), private or not, from loopback.
async fn put(addr: std::net::SocketAddr, topic: Option<&str>, data: &str, private: bool) -> String {
    let mut params = Vec::new();
    if let Some(t) = topic {
        params.push(format!("topic={}", pct(t)));
    }
    if private {
        params.push("private=1".into());
    }
    let reply = post(
        addr,
        &format!("/publish?{}", params.join("&")),
        &[],
        data.to_string(),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "publish {data}: {}", reply.text());
    reply.text().trim_end().to_string()
}

#[tokio::test]
async fn private_events_reach_only_authorised_subscribers_live_and_on_replay() {
    within(async {
        for proto in PROTOS {
            let srv = start(subscriber_config(true)).await;
            let start_id = put(srv.addr, Some("nobody"), "start", false).await;
            // Who listens, with which token, and what each must see.
            let full = sub_token(&["a", "b"]);
            let half = sub_token(&["a"]);
            let star = sub_token(&["*"]);
            let subscribers: Vec<(&str, &str, Option<&str>, Vec<&str>)> = vec![
                ("anonymous", "?topic=a&topic=b", None, vec!["pub1", "pub3"]),
                ("anonymous, all topics", "", None, vec!["pub1", "pub3", "pub8"]),
                (
                    "a and b",
                    "?topic=a&topic=b",
                    Some(&full),
                    vec!["pub1", "priv2", "pub3", "priv4", "priv5", "priv6"],
                ),
                (
                    "a of a and b",
                    "?topic=a&topic=b",
                    Some(&half),
                    vec!["pub1", "priv2", "pub3", "priv5", "priv6"],
                ),
                (
                    "*",
                    "",
                    Some(&star),
                    vec![
                        "pub1", "priv2", "pub3", "priv4", "priv5", "priv6", "priv7", "pub8",
                    ],
                ),
            ];
            let mut live = Vec::new();
            for (who, query, token, _) in &subscribers {
                let auth = token.map(bearer);
                let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
                live.push((
                    who,
                    stream_ok(proto, srv.addr, &format!("/events{query}"), &headers).await,
                ));
            }
            wait_subscribers(&srv.stats, subscribers.len()).await;

            put(srv.addr, Some("a"), "pub1", false).await;
            put(srv.addr, Some("a"), "priv2", true).await;
            put(srv.addr, Some("b"), "pub3", false).await;
            put(srv.addr, Some("b"), "priv4", true).await;
            let batch = post(
                srv.addr,
                "/publish?topic=a&private=1",
                &[("content-type", "text/event-stream")],
                "data: priv5\n\ndata: priv6\n\n",
            )
            .await;
            assert_eq!(batch.status, StatusCode::OK, "{}", batch.text());
            put(srv.addr, None, "priv7", true).await;
            put(srv.addr, None, "pub8", false).await;
            put(srv.addr, Some("a"), "end", false).await;
            put(srv.addr, None, "end", false).await;

            for ((who, reader), (_, _, _, want)) in live.iter_mut().zip(&subscribers) {
                assert_eq!(&data_until_end(reader).await, want, "{proto:?} live, {who}");
            }
            // Replay from before the first event: the same events, in order.
            for (who, query, token, want) in &subscribers {
                let auth = token.map(bearer);
                let mut headers: Vec<(&str, &str)> =
                    auth.iter().map(|a| ("authorization", a.as_str())).collect();
                headers.push(("last-event-id", &start_id));
                let mut reader = stream_ok(proto, srv.addr, &format!("/events{query}"), &headers).await;
                assert_eq!(
                    &data_until_end(&mut reader).await,
                    want,
                    "{proto:?} replay, {who}"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn private_needs_a_subscriber_key_and_a_valid_token_even_when_anonymous() {
    within(async {
        let open = start_default().await;
        let reply = post(open.addr, "/publish?topic=a&private=1", &[], "x").await;
        assert_refusal(
            &reply,
            StatusCode::BAD_REQUEST,
            "private without a subscriber key",
        );
        assert_eq!(open.stats().events_published, 0);

        let srv = start(subscriber_config(true)).await;
        let reply = post(srv.addr, "/publish?topic=a&private=yes", &[], "x").await;
        assert_refusal(&reply, StatusCode::BAD_REQUEST, "private=yes");
        // Anonymous mode: no token is fine, a bad token is not.
        let mut r = stream_ok(Proto::H1, srv.addr, "/events?topic=a", &[]).await;
        r.opening_retry().await;
        let bad = bearer(&hs256("wrong", &mercure(&["a"], &[])));
        let reply = fetch(
            srv.addr,
            Method::GET,
            "/events?topic=a",
            &[("authorization", &bad)],
            "",
        )
        .await;
        assert_refusal(&reply, StatusCode::UNAUTHORIZED, "anonymous mode, bad token");
    })
    .await;
}

#[tokio::test]
async fn a_stream_ends_with_a_retry_within_a_second_of_its_tokens_expiry() {
    within(async {
        let srv = start(subscriber_config(false)).await;
        let exp = now() + 2;
        let token = hs256(SECRET, &with(mercure(&["*"], &[]), json!({ "exp": exp })));
        let mut readers = Vec::new();
        for proto in PROTOS {
            let mut r = stream_ok(proto, srv.addr, "/events", &[("authorization", &bearer(&token))]).await;
            r.opening_retry().await;
            readers.push((proto, r));
        }
        for (proto, reader) in &mut readers {
            let mut farewell = false;
            loop {
                match reader.next_item(Duration::from_secs(5)).await {
                    Some(Item::Retry(_)) => farewell = true,
                    Some(Item::End) => break,
                    Some(Item::Comment(_)) => {}
                    other => panic!("{proto:?}: expected a retry and the end, got {other:?}"),
                }
            }
            let ended = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64();
            assert!(farewell, "{proto:?}: the stream ended without a retry:");
            assert!(
                ended >= exp as f64 - 0.05,
                "{proto:?}: ended {:.2}s before exp",
                exp as f64 - ended
            );
            assert!(
                ended <= exp as f64 + 1.0,
                "{proto:?}: ended {:.2}s after exp",
                ended - exp as f64
            );
        }
    })
    .await;
}

#[tokio::test]
async fn a_token_past_its_exp_cannot_open_a_stream_even_inside_the_leeway() {
    within(async {
        // Two seconds past exp: inside the 5 s leeway, yet a stream opened
        // with it would end at once and the client would come straight
        // back with it. It gets 401, so it fetches a new token instead.
        let mut c = subscriber_config(false);
        c.auth.publisher_jwt_key = Some(KeySource::Inline(SECRET.into()));
        let srv = start(c).await;
        let claims = with(mercure(&["*"], &["*"]), json!({ "exp": now() - 2 }));
        let token = hs256(SECRET, &claims);
        for proto in PROTOS {
            for path in ["/events?topic=t", "/.well-known/mercure?topic=t"] {
                let reply = fetch_with(
                    &client(proto),
                    srv.addr,
                    Method::GET,
                    path,
                    &[("authorization", &bearer(&token))],
                    "",
                )
                .await;
                assert_refusal(&reply, StatusCode::UNAUTHORIZED, path);
                assert_eq!(reply.text(), "the token has expired\n", "{proto:?} {path}");
            }
        }
        // A publish is one request: the leeway still serves clock skew there.
        let reply = post(
            srv.addr,
            "/publish?topic=t",
            &[("authorization", &bearer(&token))],
            "x",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
    })
    .await;
}

/// (what, path, headers, status).
type PublishCase = (&'static str, String, Vec<(&'static str, String)>, StatusCode);

#[tokio::test]
async fn publishers_need_a_token_for_the_topic_or_the_static_token() {
    within(async {
        let mut c = config();
        c.publish_token = Some("static-publish-token".into());
        c.cors_origins = vec!["https://app.example".into()];
        c.auth.publisher_jwt_key = Some(KeySource::Inline(SECRET.into()));
        let srv = start(c).await;
        let mut all = subscribe(srv.addr, "").await;
        let news = pub_token(&["news"]);
        let users = pub_token(&["https://example.com/users/{id}"]);
        let wrong_key = hs256("wrong", &mercure(&[], &["*"]));
        let cookie = format!("mercureAuthorization={news}");
        let users_topic = pct("https://example.com/users/9");
        // (what, path, headers, status)
        let cases: Vec<PublishCase> = vec![
            (
                "allowed topic",
                "/publish?topic=news".into(),
                vec![("authorization", bearer(&news))],
                StatusCode::OK,
            ),
            (
                "forbidden topic",
                "/publish?topic=sports".into(),
                vec![("authorization", bearer(&news))],
                StatusCode::FORBIDDEN,
            ),
            (
                "no topic",
                "/publish".into(),
                vec![("authorization", bearer(&news))],
                StatusCode::FORBIDDEN,
            ),
            (
                "template",
                format!("/publish?topic={users_topic}"),
                vec![("authorization", bearer(&users))],
                StatusCode::OK,
            ),
            (
                "static token",
                "/publish?topic=sports".into(),
                vec![("authorization", "Bearer static-publish-token".into())],
                StatusCode::OK,
            ),
            (
                "no credential",
                "/publish?topic=news".into(),
                vec![],
                StatusCode::UNAUTHORIZED,
            ),
            (
                "wrong key",
                "/publish?topic=news".into(),
                vec![("authorization", bearer(&wrong_key))],
                StatusCode::UNAUTHORIZED,
            ),
            (
                "cookie, no Origin",
                "/publish?topic=news".into(),
                vec![("cookie", cookie.clone())],
                StatusCode::FORBIDDEN,
            ),
            (
                "cookie, unlisted Origin",
                "/publish?topic=news".into(),
                vec![
                    ("cookie", cookie.clone()),
                    ("origin", "https://evil.example".into()),
                ],
                StatusCode::FORBIDDEN,
            ),
            (
                "cookie, listed Origin",
                "/publish?topic=news".into(),
                vec![
                    ("cookie", cookie.clone()),
                    ("origin", "https://app.example".into()),
                ],
                StatusCode::OK,
            ),
            (
                "query token",
                format!("/publish?topic=news&authorization={news}"),
                vec![],
                StatusCode::OK,
            ),
            (
                "close forbidden",
                "/close?topic=sports".into(),
                vec![("authorization", bearer(&news))],
                StatusCode::FORBIDDEN,
            ),
            (
                "close unauthenticated",
                "/close?topic=sports".into(),
                vec![],
                StatusCode::UNAUTHORIZED,
            ),
        ];
        let mut accepted = Vec::new();
        for proto in PROTOS {
            let http = client(proto);
            for (what, path, headers, status) in &cases {
                let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let data = format!("{proto:?} {what}");
                let reply = fetch_with(&http, srv.addr, Method::POST, path, &headers, data.clone()).await;
                if *status == StatusCode::OK {
                    assert_eq!(reply.status, StatusCode::OK, "{data}: {}", reply.text());
                    accepted.push(data);
                } else {
                    assert_refusal(&reply, *status, &data);
                }
            }
        }
        // Only the accepted publishes reached the subscriber, and nothing was closed.
        assert_eq!(all.next_data(accepted.len(), STEP).await, accepted);
        let reply = post(
            srv.addr,
            "/close?topic=news",
            &[("authorization", &bearer(&news))],
            "",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(srv.stats().topics_closed, 1);
        let m = metrics(srv.addr).await;
        assert!(refused_total(&m, "publisher") >= 16, "{}", m.text);
        assert_eq!(
            m.int_with(
                "ssehub_auth_refused_total",
                "role=\"publisher\",reason=\"origin\""
            ),
            4
        );
    })
    .await;
}

#[tokio::test]
async fn the_static_publish_token_alone_refuses_with_an_invalid_token_challenge() {
    within(async {
        let mut c = config();
        c.publish_token = Some("static-publish-token".into());
        let srv = start(c).await;
        for proto in PROTOS {
            let http = client(proto);
            for (what, headers) in [
                ("no token", vec![]),
                ("wrong token", vec![("authorization", "Bearer not-the-token")]),
            ] {
                let what = format!("{proto:?} {what}");
                let reply =
                    fetch_with(&http, srv.addr, Method::POST, "/publish?topic=t", &headers, "x").await;
                assert_refusal(&reply, StatusCode::UNAUTHORIZED, &what);
                let challenge = reply.header("www-authenticate").unwrap_or("");
                assert!(
                    challenge.starts_with("Bearer error=\"invalid_token\", error_description=\"")
                        && challenge.ends_with('"'),
                    "{what}: WWW-Authenticate {challenge:?}"
                );
            }
            let reply = fetch_with(
                &http,
                srv.addr,
                Method::POST,
                "/publish?topic=t",
                &[("authorization", "Bearer static-publish-token")],
                "x",
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{proto:?} the static token");
        }
        let m = metrics(srv.addr).await;
        assert_eq!(refused_total(&m, "publisher"), 4, "{}", m.text);
        assert_eq!(srv.stats().events_published, 2);
    })
    .await;
}

/// A temporary file removed when dropped.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, content: &str) -> TempFile {
        let path = std::env::temp_dir().join(format!("ssehub-{}-{name}", std::process::id()));
        std::fs::write(&path, content).unwrap();
        TempFile(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn no_token_or_key_reaches_the_log_even_at_trace() {
    within(async {
        let key = TempFile::new("trace-key", &format!("{SECRET}\n"));
        let static_token = "static-token-never-logged-4242";
        let mut hub = HubProcess::spawn_with_env(
            &[
                "--jwt-key-file",
                key.path(),
                "--cors-origin",
                "https://app.example",
            ],
            &[("RUST_LOG", "trace"), ("SSEHUB_PUBLISH_TOKEN", static_token)],
        )
        .await;
        let sub = sub_token(&["*"]);
        let publ = pub_token(&["*"]);
        let bad = hs256("wrong-secret-also-never-logged", &mercure(&["*"], &[]));
        for proto in PROTOS {
            let mut r = stream_ok(proto, hub.addr, "/events", &[("authorization", &bearer(&sub))]).await;
            r.opening_retry().await;
            let mut r = stream_ok(proto, hub.addr, &format!("/events?authorization={sub}"), &[]).await;
            r.opening_retry().await;
            let cookie = format!("mercureAuthorization={sub}");
            let mut r = stream_ok(proto, hub.addr, "/events", &[("cookie", &cookie)]).await;
            r.opening_retry().await;
            let http = client(proto);
            let reply = fetch_with(
                &http,
                hub.addr,
                Method::GET,
                &format!("/events?authorization={bad}"),
                &[],
                "",
            )
            .await;
            assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
            for auth in [bearer(&publ), bearer(static_token), bearer(&bad)] {
                fetch_with(
                    &http,
                    hub.addr,
                    Method::POST,
                    "/publish?topic=t",
                    &[("authorization", &auth)],
                    "x",
                )
                .await;
            }
        }
        hub.signal(libc::SIGTERM);
        hub.wait_exit(Duration::from_secs(10)).await;
        let log = hub.log();
        assert!(log.contains("listening on"), "{log}");
        for secret in [
            SECRET,
            static_token,
            &sub,
            &publ,
            &bad,
            "wrong-secret-also-never-logged",
        ] {
            assert!(!log.contains(secret), "the log holds a secret or token");
        }
        // Nor any token's signature part alone.
        for token in [&sub, &publ, &bad] {
            let signature = token.rsplit('.').next().unwrap();
            assert!(!log.contains(signature), "the log holds a token signature");
        }
    })
    .await;
}

#[tokio::test]
async fn sighup_rotates_keys_new_tokens_valid_old_ones_not() {
    within(async {
        let old_secret = "old-secret-before-rotation-0123456789";
        let new_secret = "new-secret-after-rotation-9876543210";
        let key = TempFile::new("rotate-key", old_secret);
        let hub = HubProcess::spawn(&["--jwt-key-file", key.path()]).await;
        let claims = mercure(&["*"], &[]);
        let old = bearer(&hs256(old_secret, &claims));
        let new = bearer(&hs256(new_secret, &claims));
        let status = |auth: String| async move {
            let (status, _, _) =
                open_stream(&http1_client(), hub.addr, "/events", &[("authorization", &auth)]).await;
            status
        };
        assert_eq!(status(old.clone()).await, StatusCode::OK);
        assert_eq!(status(new.clone()).await, StatusCode::UNAUTHORIZED);

        std::fs::write(&key.0, new_secret).unwrap();
        hub.signal(libc::SIGHUP);
        // The server says when it has reloaded; wait for that line.
        bounded(STEP, "the reload log line", async {
            while !hub.log().contains("JWT keys reloaded") {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        assert_eq!(status(old).await, StatusCode::UNAUTHORIZED);
        assert_eq!(status(new).await, StatusCode::OK);
    })
    .await;
}
