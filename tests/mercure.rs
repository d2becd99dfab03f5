//! The Mercure protocol on `/.well-known/mercure`: form publishes with
//! every field, topic selectors, updates with several topics, private
//! updates, publisher-chosen ids, replay (`Last-Event-ID`, `lastEventID`,
//! `earliest`) and the refusals. Over HTTP/1.1 and h2c, against a server
//! configured as Mercure's conformance suite expects: one HS256 key for
//! both roles and anonymous subscribers.

mod common;
mod tokens;

use bytes::Bytes;
use common::*;
use hyper::header::HeaderMap;
use hyper::{Method, StatusCode};
use serde_json::json;
use ssehub::auth::{AuthConfig, KeySource};
use tokens::*;

const PROTOS: [Proto; 2] = [Proto::H1, Proto::H2c];
const HUB: &str = "/.well-known/mercure";
const FORM: (&str, &str) = ("content-type", "application/x-www-form-urlencoded");

fn mercure_config() -> ssehub::Config {
    let mut c = config();
    c.auth = AuthConfig {
        jwt_key: Some(KeySource::Inline(SECRET.into())),
        anonymous: true,
        ..AuthConfig::default()
    };
    c
}

/// Form-encodes pairs as browsers do (`URLSearchParams`): space as `+`.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", pct(k), pct(v).replace("%20", "+")))
        .collect::<Vec<_>>()
        .join("&")
}

/// A publish with a token that may publish everywhere.
async fn publish(proto: Proto, addr: std::net::SocketAddr, pairs: &[(&str, &str)]) -> Reply {
    let auth = format!("Bearer {}", pub_token(&["*"]));
    let headers = [FORM, ("authorization", auth.as_str())];
    fetch_with(&client(proto), addr, Method::POST, HUB, &headers, form(pairs)).await
}

/// A publish that must succeed; returns the id.
async fn publish_ok(proto: Proto, addr: std::net::SocketAddr, pairs: &[(&str, &str)]) -> String {
    let reply = publish(proto, addr, pairs).await;
    assert_eq!(
        reply.status,
        StatusCode::OK,
        "publish {pairs:?}: {}",
        reply.text()
    );
    reply.text()
}

/// The query of a subscription to `selectors`, plus `extra`.
fn query(selectors: &[&str], extra: &str) -> String {
    let topics: Vec<String> = selectors.iter().map(|s| format!("topic={}", pct(s))).collect();
    format!("{HUB}?{}{extra}", topics.join("&"))
}

/// Opens a Mercure stream that must be accepted; waits until it is registered.
async fn stream(
    server: &TestServer,
    proto: Proto,
    path: &str,
    headers: &[(&str, &str)],
) -> (HeaderMap, SseReader) {
    let before = server.stats().subscribers;
    let (status, h, mut reader) = open_stream(&client(proto), server.addr, path, headers).await;
    assert_eq!(status, StatusCode::OK, "{proto:?} GET {path}");
    assert_eq!(header_str(&h, "content-type"), Some("text/event-stream"));
    reader.opening_retry().await;
    wait_for(&server.stats, "the new subscriber", |s| s.subscribers > before).await;
    (h, reader)
}

/// A refusal is a one-line plain-text reason.
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
}

/// The data of the events up to (not including) the one whose data is `end`.
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

#[tokio::test]
async fn a_form_publish_with_every_field_arrives_as_sent() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            let token = format!("Bearer {}", sub_token(&["*"]));
            let topic = format!("https://example.com/books/{proto:?}");
            let (_, mut reader) = stream(
                &server,
                proto,
                &query(&[&topic], ""),
                &[("authorization", &token)],
            )
            .await;
            let id = format!("urn:uuid:{proto:?}-1");
            let reply = publish(
                proto,
                server.addr,
                &[
                    ("topic", &topic),
                    ("topic", "https://example.com/alternate"),
                    ("data", "a b+c\n\n  indented"),
                    ("private", "on"),
                    ("id", &id),
                    ("type", "book-updated"),
                    ("retry", "1234"),
                ],
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
            assert!(reply
                .header("content-type")
                .unwrap_or("")
                .starts_with("text/plain"));
            assert_eq!(reply.text(), id, "the body is the id alone");
            assert_eq!(reader.next_item(STEP).await, Some(Item::Retry(1234)));
            let e = reader.next_event(STEP).await;
            assert_eq!(e.id.as_deref(), Some(id.as_str()));
            assert_eq!(e.event.as_deref(), Some("book-updated"));
            assert_eq!(e.data, "a b+c\n\n  indented");
        }
    })
    .await;
}

#[tokio::test]
async fn data_with_blank_lines_and_leading_spaces_survives_exactly() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            let (_, mut reader) = stream(&server, proto, &query(&["t"], ""), &[]).await;
            let data = "  two spaces\n\n\n   three\n \n";
            publish_ok(proto, server.addr, &[("topic", "t"), ("data", data)]).await;
            assert_eq!(reader.next_event(STEP).await.data, data);
            // No data field at all is an update with empty data.
            publish_ok(proto, server.addr, &[("topic", "t")]).await;
            assert_eq!(reader.next_event(STEP).await.data, "");
        }
    })
    .await;
}

#[tokio::test]
async fn selectors_exact_star_and_uri_templates_match_and_others_do_not() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            let topic = "https://example.com/books/1";
            let cases = [
                (topic, true),
                ("*", true),
                ("https://example.com/books/{id}", true),
                ("https://example.com/{+rest}", true),
                ("https://example.com/books/2", false),
                ("https://example.com/authors/{id}", false),
                ("https://example.com/books/{id}/reviews", false),
            ];
            let mut readers = Vec::new();
            for (selector, _) in cases {
                readers.push(
                    stream(&server, proto, &query(&[selector, "end"], ""), &[])
                        .await
                        .1,
                );
            }
            publish_ok(proto, server.addr, &[("topic", topic), ("data", "book")]).await;
            publish_ok(proto, server.addr, &[("topic", "end"), ("data", "end")]).await;
            for ((selector, matches), reader) in cases.iter().zip(&mut readers) {
                let got = data_until_end(reader).await;
                let want: Vec<String> = if *matches { vec!["book".into()] } else { vec![] };
                assert_eq!(got, want, "{proto:?} selector {selector}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn an_update_with_several_topics_is_delivered_once_to_subscribers_of_any() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            let (a, b) = ("https://example.com/a", "https://example.com/b");
            // Selectors matching both topics, one matching only the alternate.
            let mut both = stream(
                &server,
                proto,
                &query(&[a, b, "https://example.com/{x}", "end"], ""),
                &[],
            )
            .await
            .1;
            let mut alternate = stream(&server, proto, &query(&[b, "end"], ""), &[]).await.1;
            // ssehub's own API on the same hub: two topics of the update.
            let path = format!("/events?topic={}&topic={}&topic=end", pct(a), pct(b));
            let (status, _, mut own) = open_stream(&client(proto), server.addr, &path, &[]).await;
            assert_eq!(status, StatusCode::OK);
            wait_subscribers(&server.stats, 3).await;
            publish_ok(
                proto,
                server.addr,
                &[("topic", a), ("topic", b), ("data", "once")],
            )
            .await;
            publish_ok(proto, server.addr, &[("topic", "end"), ("data", "end")]).await;
            for (name, reader) in [
                ("both", &mut both),
                ("alternate", &mut alternate),
                ("/events", &mut own),
            ] {
                assert_eq!(data_until_end(reader).await, ["once"], "{proto:?} {name}");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn both_apis_share_one_hub_and_one_history() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            let topic = "https://example.com/books/7";
            let mut mercure = stream(
                &server,
                proto,
                &query(&["https://example.com/books/{id}"], ""),
                &[],
            )
            .await
            .1;
            let path = format!("/events?topic={}", pct(topic));
            let (_, _, mut own) = open_stream(&client(proto), server.addr, &path, &[]).await;
            wait_subscribers(&server.stats, 2).await;
            let auth = format!("Bearer {}", pub_token(&["*"]));
            let reply = fetch_with(
                &client(proto),
                server.addr,
                Method::POST,
                &format!("/publish?topic={}", pct(topic)),
                &[("authorization", &auth)],
                Bytes::from("from /publish"),
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK);
            let first = reply.text().trim_end().to_string();
            publish_ok(proto, server.addr, &[("topic", topic), ("data", "from mercure")]).await;
            for reader in [&mut mercure, &mut own] {
                assert_eq!(reader.next_data(2, STEP).await, ["from /publish", "from mercure"]);
            }
            // A Mercure client resumes from an id /publish gave.
            let (_, mut again) = stream(
                &server,
                proto,
                &query(&[topic], &format!("&lastEventID={first}")),
                &[],
            )
            .await;
            assert_eq!(again.next_event(STEP).await.data, "from mercure");
        }
    })
    .await;
}

#[tokio::test]
async fn private_updates_reach_only_authorised_subscribers() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            let topic = "https://example.com/books/1";
            let alternate = "https://example.com/users/foo/books/1";
            let subscribers = [
                ("anonymous", None, false),
                ("exact", Some(sub_token(&[topic])), true),
                (
                    "template",
                    Some(sub_token(&["https://example.com/books/{id}"])),
                    true,
                ),
                (
                    "alternate template",
                    Some(sub_token(&["https://example.com/users/foo/{+rest}"])),
                    true,
                ),
                ("star", Some(sub_token(&["*"])), true),
                (
                    "other topic",
                    Some(sub_token(&["https://example.com/books/2"])),
                    false,
                ),
            ];
            let mut readers = Vec::new();
            for (_, token, _) in &subscribers {
                let auth = token.as_ref().map(|t| format!("Bearer {t}"));
                let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
                let path = query(&["https://example.com/books/{id}", "end"], "");
                readers.push(stream(&server, proto, &path, &headers).await.1);
            }
            publish_ok(
                proto,
                server.addr,
                &[
                    ("topic", topic),
                    ("topic", alternate),
                    ("data", "secret"),
                    ("private", ""),
                ],
            )
            .await;
            publish_ok(proto, server.addr, &[("topic", "end"), ("data", "end")]).await;
            for ((name, _, allowed), reader) in subscribers.iter().zip(&mut readers) {
                let want: Vec<String> = if *allowed { vec!["secret".into()] } else { vec![] };
                assert_eq!(data_until_end(reader).await, want, "{proto:?} {name}");
            }
            // On replay too: from `earliest`, the anonymous subscriber gets the public update only.
            let (_, mut replay) = stream(&server, proto, &query(&["*"], "&lastEventID=earliest"), &[]).await;
            assert_eq!(replay.next_event(STEP).await.data, "end");
        }
    })
    .await;
}

#[tokio::test]
async fn custom_ids_are_refused_when_taken_and_work_as_last_event_id() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            let topic = "https://example.com/books/1";
            assert_eq!(
                publish_ok(
                    proto,
                    server.addr,
                    &[("topic", topic), ("id", "rev-1"), ("data", "1")]
                )
                .await,
                "rev-1"
            );
            let again = publish(
                proto,
                server.addr,
                &[("topic", topic), ("id", "rev-1"), ("data", "dup")],
            )
            .await;
            assert_refusal(&again, StatusCode::CONFLICT, "a duplicate id");
            let hub_id = publish_ok(proto, server.addr, &[("topic", topic), ("data", "2")]).await;
            // A hub id is never a publisher's: digits only are refused outright.
            let taken = publish(proto, server.addr, &[("topic", topic), ("id", &hub_id)]).await;
            assert_refusal(&taken, StatusCode::BAD_REQUEST, "an id the hub gave");
            publish_ok(
                proto,
                server.addr,
                &[("topic", topic), ("id", "rev-3"), ("data", "3")],
            )
            .await;
            let (h, mut reader) = stream(
                &server,
                proto,
                &query(&[topic], ""),
                &[("last-event-id", "rev-1")],
            )
            .await;
            assert_eq!(header_str(&h, "last-event-id"), Some("rev-1"));
            let events = reader.next_events(2, STEP).await;
            assert_eq!(events[0].data, "2");
            assert_eq!(events[0].id.as_deref(), Some(hub_id.as_str()));
            assert_eq!(
                (events[1].id.as_deref(), events[1].data.as_str()),
                (Some("rev-3"), "3")
            );
        }
    })
    .await;
}

#[tokio::test]
async fn the_last_event_id_header_wins_over_the_lasteventid_parameter() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            let mut ids = Vec::new();
            for data in ["1", "2", "3"] {
                ids.push(publish_ok(proto, server.addr, &[("topic", "t"), ("data", data)]).await);
            }
            let path = query(&["t"], &format!("&lastEventID={}", ids[0]));
            let (h, mut reader) = stream(&server, proto, &path, &[("last-event-id", &ids[1])]).await;
            assert_eq!(header_str(&h, "last-event-id"), Some(ids[1].as_str()));
            assert_eq!(reader.next_event(STEP).await.data, "3");
            let (h, mut reader) = stream(&server, proto, &path, &[]).await;
            assert_eq!(header_str(&h, "last-event-id"), Some(ids[0].as_str()));
            assert_eq!(reader.next_data(2, STEP).await, ["2", "3"]);
        }
    })
    .await;
}

#[tokio::test]
async fn earliest_replays_the_history_and_an_unknown_id_starts_live_without_reset() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            publish_ok(proto, server.addr, &[("topic", "t"), ("data", "old-1")]).await;
            publish_ok(proto, server.addr, &[("topic", "t"), ("data", "old-2")]).await;
            let (h, mut reader) = stream(&server, proto, &query(&["t"], "&lastEventID=earliest"), &[]).await;
            assert_eq!(header_str(&h, "last-event-id"), Some("earliest"));
            assert_eq!(reader.next_data(2, STEP).await, ["old-1", "old-2"]);

            let (h, mut unknown) = stream(
                &server,
                proto,
                &query(&["t"], ""),
                &[("last-event-id", "no-such-id")],
            )
            .await;
            assert_eq!(header_str(&h, "last-event-id"), Some("earliest"));
            let (h, mut none) = stream(&server, proto, &query(&["t"], ""), &[]).await;
            assert_eq!(header_str(&h, "last-event-id"), None, "no id asked, no header");
            publish_ok(proto, server.addr, &[("topic", "t"), ("data", "live")]).await;
            for reader in [&mut unknown, &mut none] {
                let e = reader.next_event(STEP).await;
                assert_eq!((e.name(), e.data.as_str()), ("message", "live"), "no reset first");
            }
        }
    })
    .await;
}

#[tokio::test]
async fn streams_carry_mercures_headers() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            let (h, _reader) = stream(&server, proto, &query(&["*"], ""), &[]).await;
            assert_eq!(
                header_str(&h, "cache-control"),
                Some("private, no-cache, no-store, must-revalidate, max-age=0")
            );
            assert_eq!(header_str(&h, "x-accel-buffering"), Some("no"));
        }
    })
    .await;
}

#[tokio::test]
async fn malformed_requests_are_refused_with_a_one_line_reason() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            let c = client(proto);
            let get = |path: String| {
                let c = c.clone();
                async move { fetch_with(&c, server.addr, Method::GET, &path, &[], Bytes::new()).await }
            };
            assert_refusal(
                &get(HUB.to_string()).await,
                StatusCode::BAD_REQUEST,
                "subscribe without topic",
            );
            let many: Vec<String> = (0..1001).map(|i| i.to_string()).collect();
            let many: Vec<&str> = many.iter().map(String::as_str).collect();
            assert_refusal(
                &get(query(&many, "")).await,
                StatusCode::BAD_REQUEST,
                "1,001 selectors",
            );
            let cases: [(&[(&str, &str)], &str); 4] = [
                (&[("data", "x")], "no topic"),
                (
                    &[("topic", "t"), ("retry", "soon")],
                    "a retry that is not a number",
                ),
                (&[("topic", "t"), ("retry", "-1")], "a negative retry"),
                (&[("topic", "t"), ("id", "#1")], "an id starting with #"),
            ];
            for (pairs, what) in cases {
                assert_refusal(
                    &publish(proto, server.addr, pairs).await,
                    StatusCode::BAD_REQUEST,
                    what,
                );
            }
            let auth = format!("Bearer {}", pub_token(&["*"]));
            let not_form = fetch_with(
                &c,
                server.addr,
                Method::POST,
                HUB,
                &[("content-type", "text/plain"), ("authorization", &auth)],
                Bytes::from("topic=t&data=x"),
            )
            .await;
            assert_refusal(&not_form, StatusCode::BAD_REQUEST, "a body that is not a form");
            // Every topic of an update must be granted.
            let narrow = format!("Bearer {}", pub_token(&["a"]));
            let headers = [FORM, ("authorization", narrow.as_str())];
            let partly = fetch_with(&c, server.addr, Method::POST, HUB, &headers, "topic=a&topic=b").await;
            assert_refusal(&partly, StatusCode::FORBIDDEN, "a topic the token does not grant");
            let none = fetch_with(&c, server.addr, Method::POST, HUB, &[FORM], "topic=a").await;
            assert_refusal(&none, StatusCode::UNAUTHORIZED, "no publisher token");
            assert_eq!(server.stats().events_published, 0, "nothing was published");
        }
    })
    .await;
}

#[tokio::test]
async fn the_cors_preflight_allows_the_headers_mercure_allows() {
    within(async {
        let mut c = mercure_config();
        c.cors_origins = vec!["https://app.example".into()];
        let server = start(c).await;
        for proto in PROTOS {
            let reply = fetch_with(
                &client(proto),
                server.addr,
                Method::OPTIONS,
                HUB,
                &[
                    ("origin", "https://app.example"),
                    ("access-control-request-method", "GET"),
                    (
                        "access-control-request-headers",
                        "authorization,cache-control,last-event-id",
                    ),
                ],
                Bytes::new(),
            )
            .await;
            assert_eq!(reply.status, StatusCode::NO_CONTENT, "{proto:?}");
            assert_eq!(
                reply.header("access-control-allow-origin"),
                Some("https://app.example")
            );
            let allowed = reply.header("access-control-allow-headers").unwrap_or("");
            for h in ["authorization", "cache-control", "last-event-id"] {
                assert!(
                    allowed.split(',').any(|a| a.trim().eq_ignore_ascii_case(h)),
                    "{proto:?}: Access-Control-Allow-Headers {allowed:?} lacks {h}"
                );
            }
        }
    })
    .await;
}

#[tokio::test]
async fn unknown_query_parameters_are_ignored_on_get_and_post() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            // What polyfills and cache busters add.
            let (_, mut reader) =
                stream(&server, proto, &query(&["t"], "&cb=1&lastEventId=x&_=2"), &[]).await;
            let auth = format!("Bearer {}", pub_token(&["*"]));
            let path = format!("{HUB}?cb=1&topic=ignored&_=2");
            let headers = [FORM, ("authorization", auth.as_str())];
            let reply = fetch_with(
                &client(proto),
                server.addr,
                Method::POST,
                &path,
                &headers,
                "topic=t&data=1",
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {}", reply.text());
            // The query's token is still read, beside the ignored parameters.
            let path = format!("{HUB}?cb=1&authorization={}", pub_token(&["t"]));
            let reply = fetch_with(
                &client(proto),
                server.addr,
                Method::POST,
                &path,
                &[FORM],
                "topic=t&data=2",
            )
            .await;
            assert_eq!(reply.status, StatusCode::OK, "{proto:?}: {}", reply.text());
            assert_eq!(reader.next_data(2, STEP).await, ["1", "2"]);
            // A malformed query is still refused.
            let path = format!("{HUB}?cb=%zz");
            let reply = fetch_with(
                &client(proto),
                server.addr,
                Method::POST,
                &path,
                &headers,
                "topic=t",
            )
            .await;
            assert_refusal(&reply, StatusCode::BAD_REQUEST, "a malformed query");
        }
    })
    .await;
}

#[tokio::test]
async fn ids_that_could_come_back_as_another_are_refused() {
    within(async {
        for proto in PROTOS {
            let server = start(mercure_config()).await;
            let hub_id = publish_ok(proto, server.addr, &[("topic", "t"), ("data", "0")]).await;
            // The id the hub will give next, and ids of digits.
            let next: u64 = hub_id.parse().expect("hub ids are numbers");
            let next = (next + 1).to_string();
            let cases = [
                ("earliest", "earliest"),
                (next.as_str(), "the hub's next id"),
                ("42", "digits only"),
                ("caf\u{e9}", "non-ASCII"),
                ("a b", "a space"),
                (" a", "a leading space"),
                ("a\tb", "a tab"),
            ];
            for (id, what) in cases {
                let reply = publish(proto, server.addr, &[("topic", "t"), ("id", id)]).await;
                assert_refusal(&reply, StatusCode::BAD_REQUEST, &format!("{proto:?} id {what}"));
            }
            assert_eq!(server.stats().events_published, 1, "nothing more was published");
            // The hub's next id is still its own.
            assert_eq!(publish_ok(proto, server.addr, &[("topic", "t")]).await, next);
        }
    })
    .await;
}

/// (what, headers, status).
type PublishCase<'a> = (&'a str, Vec<(&'a str, &'a str)>, StatusCode);

/// What the README's Differences say about publishers on this endpoint.
#[tokio::test]
async fn publishers_are_those_of_publish_with_every_topic_granted() {
    within(async {
        for proto in PROTOS {
            let c = client(proto);
            // A publisher key, the static token, and a listed origin.
            let mut keyed = mercure_config();
            keyed.publish_token = Some("static-publish-token".into());
            keyed.cors_origins = vec!["https://app.example".into()];
            let server = start(keyed).await;
            let cookie = format!("mercureAuthorization={}", pub_token(&["*"]));
            let empty = format!("Bearer {}", hs256(SECRET, &mercure(&[], &[])));
            let other = format!("Bearer {}", pub_token(&["other"]));
            let cases: [PublishCase; 6] = [
                (
                    "the static token",
                    vec![("authorization", "Bearer static-publish-token")],
                    StatusCode::OK,
                ),
                (
                    "publish: [] on a public update",
                    vec![("authorization", &empty)],
                    StatusCode::FORBIDDEN,
                ),
                (
                    "selectors matching no topic",
                    vec![("authorization", &other)],
                    StatusCode::FORBIDDEN,
                ),
                (
                    "a cookie without Origin",
                    vec![("cookie", &cookie)],
                    StatusCode::FORBIDDEN,
                ),
                (
                    "a cookie from an unlisted Origin",
                    vec![("cookie", &cookie), ("origin", "https://evil.example")],
                    StatusCode::FORBIDDEN,
                ),
                (
                    "a cookie from a listed Origin",
                    vec![("cookie", &cookie), ("origin", "https://app.example")],
                    StatusCode::OK,
                ),
            ];
            for (what, mut headers, status) in cases {
                headers.push(FORM);
                let reply = fetch_with(&c, server.addr, Method::POST, HUB, &headers, "topic=t&data=x").await;
                if status == StatusCode::OK {
                    assert_eq!(reply.status, status, "{proto:?} {what}: {}", reply.text());
                } else {
                    assert_refusal(&reply, status, &format!("{proto:?} {what}"));
                }
            }
            assert_eq!(server.stats().events_published, 2);

            // No publisher key and no publish token: loopback publishes freely,
            // but not through a proxy.
            let server = start(config()).await;
            let reply = fetch_with(&c, server.addr, Method::POST, HUB, &[FORM], "topic=t&data=x").await;
            assert_eq!(
                reply.status,
                StatusCode::OK,
                "{proto:?} loopback: {}",
                reply.text()
            );
            let proxied = [FORM, ("x-forwarded-for", "203.0.113.9")];
            let reply = fetch_with(&c, server.addr, Method::POST, HUB, &proxied, "topic=t&data=x").await;
            assert_refusal(&reply, StatusCode::FORBIDDEN, "loopback through a proxy");
        }
    })
    .await;
}

/// (what, path, headers), borrowed.
type SourceCase<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

/// (what, path, headers).
type GetCase = (&'static str, String, Vec<(&'static str, String)>);

/// The subscriber's token on this endpoint: without `--anonymous` one is
/// needed; an invalid one is refused even with `--anonymous`; the query's
/// `authorization` and the `mercureAuthorization` cookie work like the
/// header, and the first found wins.
#[tokio::test]
async fn subscriber_tokens_come_from_the_header_the_query_or_the_cookie() {
    within(async {
        for proto in PROTOS {
            let mut closed = mercure_config();
            closed.auth.anonymous = false;
            let server = start(closed).await;
            let c = client(proto);
            let topic = "https://example.com/books/1";
            let good = sub_token(&["https://example.com/books/{id}"]);
            let wrong_key = hs256("another-secret-that-is-long-enough", &mercure(&["*"], &[]));
            let expired = hs256(SECRET, &with(mercure(&["*"], &[]), json!({"exp": now() - 60})));
            let base = query(&[topic], "");
            let get = |path: String, headers: Vec<(&'static str, String)>| {
                let c = c.clone();
                async move {
                    let headers: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                    fetch_with(&c, server.addr, Method::GET, &path, &headers, Bytes::new()).await
                }
            };
            let refused: Vec<GetCase> = vec![
                ("no token, not anonymous", base.clone(), vec![]),
                (
                    "a header token signed with another key",
                    base.clone(),
                    vec![("authorization", format!("Bearer {wrong_key}"))],
                ),
                (
                    "an expired header token",
                    base.clone(),
                    vec![("authorization", format!("Bearer {expired}"))],
                ),
                (
                    "a malformed query token",
                    format!("{base}&authorization=not.a.jwt"),
                    vec![],
                ),
                (
                    "a cookie token signed with another key",
                    base.clone(),
                    vec![("cookie", format!("mercureAuthorization={wrong_key}"))],
                ),
                (
                    "a valid query token behind an invalid header one",
                    format!("{base}&authorization={good}"),
                    vec![("authorization", format!("Bearer {wrong_key}"))],
                ),
            ];
            for (what, path, headers) in refused {
                let reply = get(path, headers).await;
                let what = format!("{proto:?} {what}");
                assert_refusal(&reply, StatusCode::UNAUTHORIZED, &what);
                let challenge = reply.header("www-authenticate").unwrap_or("");
                assert!(
                    challenge.starts_with("Bearer error=\"invalid_token\""),
                    "{what}: WWW-Authenticate {challenge:?}"
                );
            }
            // Each source alone authorises, private updates included.
            let cookie = format!("mercureAuthorization={good}");
            let query_path = format!("{base}&authorization={good}");
            let header = format!("Bearer {good}");
            let sources: [SourceCase; 3] = [
                ("header", &base, vec![("authorization", &header)]),
                ("query", &query_path, vec![]),
                ("cookie", &base, vec![("cookie", &cookie)]),
            ];
            let mut readers = Vec::new();
            for (what, path, headers) in &sources {
                let (status, _, mut reader) = open_stream(&c, server.addr, path, headers).await;
                assert_eq!(status, StatusCode::OK, "{proto:?} {what}");
                reader.opening_retry().await;
                readers.push((what, reader));
            }
            wait_subscribers(&server.stats, 3).await;
            publish_ok(
                proto,
                server.addr,
                &[("topic", topic), ("data", "secret"), ("private", "")],
            )
            .await;
            for (what, reader) in &mut readers {
                assert_eq!(reader.next_event(STEP).await.data, "secret", "{proto:?} {what}");
            }
        }
        // With --anonymous an invalid token is still refused.
        let server = start(mercure_config()).await;
        let wrong_key = hs256("another-secret-that-is-long-enough", &mercure(&["*"], &[]));
        let reply = fetch_with(
            &client(Proto::H1),
            server.addr,
            Method::GET,
            &format!("{}&authorization={wrong_key}", query(&["t"], "")),
            &[],
            Bytes::new(),
        )
        .await;
        assert_refusal(&reply, StatusCode::UNAUTHORIZED, "anonymous, invalid query token");
    })
    .await;
}
