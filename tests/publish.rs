//! `POST /publish`: the answer, batches, and every refusal of bad input
//! (which must publish nothing).

mod common;

use bytes::Bytes;
use common::*;
use hyper::{Method, StatusCode};

#[tokio::test]
async fn publish_answers_200_with_the_assigned_id() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "?topic=news").await;
        let reply = post(srv.addr, "/publish?topic=news&event=headline", &[], "extra!").await;
        assert_eq!(reply.status, StatusCode::OK);
        let text = reply.text();
        let id = text.trim_end();
        assert!(
            !id.is_empty() && !id.contains('\n'),
            "answer is not one id: {text:?}"
        );
        parse_id(id);
        let e = reader.next_event(STEP).await;
        assert_eq!(e.id(), id);
        assert_eq!(e.name(), "headline");
        assert_eq!(e.data, "extra!");
        assert_eq!(srv.stats().events_published, 1);
    })
    .await;
}

#[tokio::test]
async fn publish_without_event_name_is_a_message() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "").await;
        let id = publish_ok(srv.addr, Some("t"), None, "plain").await;
        let e = reader.next_event(STEP).await;
        assert_eq!(e.id(), id);
        assert_eq!(e.event, None, "no event field expected: {e:?}");
        assert_eq!(e.name(), "message");
    })
    .await;
}

#[tokio::test]
async fn publish_over_h2c_is_accepted() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "?topic=t").await;
        let reply = fetch_with(
            &h2c_client(),
            srv.addr,
            Method::POST,
            "/publish?topic=t",
            &[],
            "via h2",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        let e = reader.next_event(STEP).await;
        assert_eq!((e.id(), e.data.as_str()), (reply.text().trim_end(), "via h2"));
    })
    .await;
}

#[tokio::test]
async fn batch_publishes_every_event_in_order_and_answers_their_ids() {
    within(async {
        let srv = start_default().await;
        let mut on_topic = subscribe(srv.addr, "?topic=batch").await;
        let mut on_all = subscribe(srv.addr, "").await;
        // A BOM, all three line endings, comments, names, several data
        // lines, the optional space, and id/retry fields that are ignored.
        let body = "\u{feff}: a comment\r\n\
                    event: first\r\n\
                    data: one\r\n\
                    \r\n\
                    data: two\r\
                    data: lines\r\
                    \r\
                    id: 999\n\
                    retry: 5\n\
                    data: three\n\
                    \n\
                    : another comment\n\
                    event: named\n\
                    data:no-space\n\
                    data:  two-spaces\n\
                    \n";
        let reply = publish_batch(srv.addr, Some("batch"), body).await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let text = reply.text();
        let ids: Vec<&str> = text.lines().collect();
        assert_eq!(ids.len(), 4, "expected four ids, one per line: {text:?}");
        for pair in ids.windows(2) {
            assert!(
                parse_id(pair[0]) < parse_id(pair[1]),
                "ids not increasing: {ids:?}"
            );
        }
        let expected = [
            ("first", "one"),
            ("message", "two\nlines"),
            ("message", "three"),
            ("named", "no-space\n two-spaces"),
        ];
        for reader in [&mut on_topic, &mut on_all] {
            for (i, (name, data)) in expected.iter().enumerate() {
                let e = reader.next_event(STEP).await;
                assert_eq!(
                    e.id(),
                    ids[i],
                    "event {i}: the batch's own id field must be ignored"
                );
                assert_eq!((e.name(), e.data.as_str()), (*name, *data), "event {i}");
            }
        }
        assert_eq!(srv.stats().events_published, 4);
    })
    .await;
}

#[tokio::test]
async fn batch_with_content_type_parameters_is_a_batch() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "").await;
        let reply = post(
            srv.addr,
            "/publish?topic=t",
            &[("content-type", "text/event-stream; charset=utf-8")],
            "data: a\n\ndata: b\n\n",
        )
        .await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.text().lines().count(), 2);
        let got: Vec<String> = reader.next_data(2, STEP).await;
        assert_eq!(got, ["a", "b"]);
    })
    .await;
}

#[tokio::test]
async fn body_that_looks_like_sse_without_the_content_type_is_one_event() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "").await;
        let id = publish_ok(srv.addr, Some("t"), None, "data: a\n\ndata: b\n\n").await;
        let e = reader.next_event(STEP).await;
        assert_eq!(e.id(), id);
        assert_eq!(e.data, "data: a\n\ndata: b\n\n");
    })
    .await;
}

/// A server with an all-topic subscriber, to prove refusals deliver nothing.
struct Watched {
    srv: TestServer,
    reader: SseReader,
    markers: usize,
}

impl Watched {
    async fn new(config: ssehub::Config) -> Watched {
        let srv = start(config).await;
        let reader = subscribe(srv.addr, "").await;
        wait_subscribers(&srv.stats, 1).await;
        Watched {
            srv,
            reader,
            markers: 0,
        }
    }

    /// Sends the request; it must be refused with `status`, a one-line
    /// plain-text body, nothing published and nothing delivered.
    async fn refused(
        &mut self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
        status: StatusCode,
    ) -> Reply {
        let before = self.srv.stats().events_published;
        let reply = fetch(self.srv.addr, method.clone(), path, headers, body).await;
        let what = format!("{method} {path} {headers:?}");
        let text = String::from_utf8_lossy(&reply.body).to_string();
        assert_eq!(reply.status, status, "{what}: body {text:?}");
        assert!(
            text.ends_with('\n') && !text.trim_end().is_empty() && !text.trim_end().contains(['\n', '\r']),
            "{what}: body is not one line of text: {text:?}"
        );
        let content_type = reply.header("content-type").unwrap_or("");
        assert!(
            content_type.starts_with("text/plain"),
            "{what}: content-type {content_type:?}"
        );
        assert_eq!(
            self.srv.stats().events_published,
            before,
            "{what}: a refused request published something"
        );
        // The next event the subscriber sees must be this marker.
        self.markers += 1;
        let marker = format!("marker {}", self.markers);
        let id = publish_ok(self.srv.addr, Some("m"), None, &marker).await;
        let e = self.reader.next_event(STEP).await;
        assert_eq!(
            (e.id(), e.data.as_str()),
            (id.as_str(), marker.as_str()),
            "{what}: a refused request delivered an event"
        );
        reply
    }

    async fn publish_refused(&mut self, path: &str, body: impl Into<Bytes>, status: StatusCode) -> Reply {
        self.refused(Method::POST, path, &[], body, status).await
    }

    async fn batch_refused(&mut self, path: &str, body: impl Into<Bytes>, status: StatusCode) -> Reply {
        self.refused(
            Method::POST,
            path,
            &[("content-type", "text/event-stream")],
            body,
            status,
        )
        .await
    }
}

#[tokio::test]
async fn reserved_event_names_are_refused() {
    within(async {
        let mut w = Watched::new(config()).await;
        for name in ["reset", "close"] {
            w.publish_refused(
                &format!("/publish?topic=t&event={name}"),
                "x",
                StatusCode::BAD_REQUEST,
            )
            .await;
            w.publish_refused(&format!("/publish?event={name}"), "x", StatusCode::BAD_REQUEST)
                .await;
        }
    })
    .await;
}

#[tokio::test]
async fn line_breaks_and_nul_in_event_name_or_topic_are_refused() {
    within(async {
        let mut w = Watched::new(config()).await;
        for bad in ["a%0Ab", "a%0Db", "a%00b", "%0A", "a%0D%0Ab"] {
            w.publish_refused(
                &format!("/publish?topic=t&event={bad}"),
                "x",
                StatusCode::BAD_REQUEST,
            )
            .await;
            w.publish_refused(&format!("/publish?topic={bad}"), "x", StatusCode::BAD_REQUEST)
                .await;
            w.batch_refused(
                &format!("/publish?topic={bad}"),
                "data: x\n\n",
                StatusCode::BAD_REQUEST,
            )
            .await;
        }
    })
    .await;
}

#[tokio::test]
async fn body_that_is_not_utf8_is_refused() {
    within(async {
        let mut w = Watched::new(config()).await;
        let bad: &'static [u8] = b"ok so far \xff\xfe then not";
        w.publish_refused("/publish?topic=t", bad, StatusCode::BAD_REQUEST)
            .await;
        w.batch_refused(
            "/publish?topic=t",
            &b"data: \xc3\x28\n\n"[..],
            StatusCode::BAD_REQUEST,
        )
        .await;
    })
    .await;
}

#[tokio::test]
async fn body_over_max_event_bytes_is_refused_with_413() {
    within(async {
        let mut config = config();
        config.max_event_bytes = 1024;
        let mut w = Watched::new(config).await;
        w.publish_refused(
            "/publish?topic=t",
            "x".repeat(1025),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await;
        w.publish_refused(
            "/publish?topic=t",
            "x".repeat(100_000),
            StatusCode::PAYLOAD_TOO_LARGE,
        )
        .await;
        // Exactly the limit is accepted.
        let id = publish_ok(w.srv.addr, Some("t"), None, &"y".repeat(1024)).await;
        let e = w.reader.next_event(STEP).await;
        assert_eq!(e.id(), id);
        assert_eq!(e.data.len(), 1024);
    })
    .await;
}

#[tokio::test]
async fn malformed_batch_is_refused_whole() {
    within(async {
        let mut w = Watched::new(config()).await;
        // A valid event first: it must not be published either.
        w.batch_refused(
            "/publish?topic=t",
            "data: ok\n\nevent: x\n\n",
            StatusCode::BAD_REQUEST,
        )
        .await;
        w.batch_refused(
            "/publish?topic=t",
            "event: x\n\ndata: ok\n\n",
            StatusCode::BAD_REQUEST,
        )
        .await;
        w.batch_refused(
            "/publish?topic=t",
            "data: ok\n\nevent: reset\ndata: no\n\n",
            StatusCode::BAD_REQUEST,
        )
        .await;
        w.batch_refused(
            "/publish?topic=t",
            "data: ok\n\nevent: close\ndata: no\n\n",
            StatusCode::BAD_REQUEST,
        )
        .await;
        w.batch_refused("/publish?topic=t", "", StatusCode::BAD_REQUEST)
            .await;
        w.batch_refused("/publish", "", StatusCode::BAD_REQUEST).await;
    })
    .await;
}

#[tokio::test]
async fn malformed_percent_encoding_is_refused() {
    within(async {
        let mut w = Watched::new(config()).await;
        for query in [
            "topic=%zz",
            "topic=%4",
            "topic=a%",
            "topic=t&event=%4",
            "topic=t&event=%g0",
        ] {
            w.publish_refused(&format!("/publish?{query}"), "x", StatusCode::BAD_REQUEST)
                .await;
        }
    })
    .await;
}

#[tokio::test]
async fn topic_with_space_or_over_256_chars_is_refused() {
    within(async {
        let mut w = Watched::new(config()).await;
        let long = "x".repeat(257);
        for query in [
            "topic=a%20b".to_string(),
            "topic=%20".to_string(),
            format!("topic={long}"),
        ] {
            w.publish_refused(&format!("/publish?{query}"), "x", StatusCode::BAD_REQUEST)
                .await;
        }
        // 256 characters is still a topic.
        let ok = "y".repeat(256);
        let mut reader = subscribe(w.srv.addr, &format!("?topic={ok}")).await;
        let id = publish_ok(w.srv.addr, Some(&ok), None, "long topic").await;
        assert_eq!(reader.next_event(STEP).await.id(), id);
    })
    .await;
}

#[tokio::test]
async fn topic_given_twice_on_publish_is_refused() {
    within(async {
        let mut w = Watched::new(config()).await;
        w.publish_refused("/publish?topic=a&topic=b", "x", StatusCode::BAD_REQUEST)
            .await;
        w.publish_refused("/publish?topic=a&topic=a", "x", StatusCode::BAD_REQUEST)
            .await;
        w.batch_refused("/publish?topic=a&topic=b", "data: x\n\n", StatusCode::BAD_REQUEST)
            .await;
    })
    .await;
}

#[tokio::test]
async fn unknown_path_is_404() {
    within(async {
        let mut w = Watched::new(config()).await;
        w.refused(Method::GET, "/nope", &[], Bytes::new(), StatusCode::NOT_FOUND)
            .await;
        w.refused(
            Method::POST,
            "/publish/extra?topic=t",
            &[],
            "x",
            StatusCode::NOT_FOUND,
        )
        .await;
        // `/` is the console's page (GET only) while the console is on.
        w.refused(Method::POST, "/", &[], "x", StatusCode::METHOD_NOT_ALLOWED)
            .await;
    })
    .await;
}

#[tokio::test]
async fn wrong_method_is_405_with_allow_header() {
    within(async {
        let mut w = Watched::new(config()).await;
        for (method, path, must_allow) in [
            (Method::DELETE, "/publish?topic=t", "POST"),
            (Method::GET, "/publish?topic=t", "POST"),
            (Method::PUT, "/publish?topic=t", "POST"),
            (Method::POST, "/events", "GET"),
            (Method::DELETE, "/events", "GET"),
            (Method::GET, "/close?topic=t", "POST"),
            (Method::POST, "/healthz", "GET"),
        ] {
            let reply = w
                .refused(method.clone(), path, &[], "x", StatusCode::METHOD_NOT_ALLOWED)
                .await;
            let allow = reply
                .header("allow")
                .unwrap_or_else(|| panic!("{method} {path}: 405 without an Allow header"));
            assert!(
                allow.split(',').any(|m| m.trim() == must_allow),
                "{method} {path}: Allow {allow:?} does not list {must_allow}"
            );
        }
    })
    .await;
}

#[tokio::test]
async fn unknown_publish_parameter_is_refused_naming_the_known_ones() {
    within(async {
        let mut w = Watched::new(config()).await;
        for (query, name) in [("topc=news", "topc"), ("Topic=news", "Topic")] {
            let reply = w
                .publish_refused(&format!("/publish?{query}"), "x", StatusCode::BAD_REQUEST)
                .await;
            assert_eq!(
                reply.text(),
                format!("unknown parameter `{name}`; known: topic, event, private, authorization\n")
            );
        }
    })
    .await;
}

#[tokio::test]
async fn unknown_close_parameter_is_refused() {
    within(async {
        let mut w = Watched::new(config()).await;
        let reply = w
            .refused(
                Method::POST,
                "/close?topics=m",
                &[],
                Bytes::new(),
                StatusCode::BAD_REQUEST,
            )
            .await;
        assert_eq!(
            reply.text(),
            "unknown parameter `topics`; known: topic, authorization\n"
        );
    })
    .await;
}

#[tokio::test]
async fn empty_event_name_is_refused() {
    within(async {
        let mut w = Watched::new(config()).await;
        let reply = w
            .publish_refused("/publish?topic=m&event=", "x", StatusCode::BAD_REQUEST)
            .await;
        assert!(reply.text().contains("empty event name"), "{}", reply.text());
    })
    .await;
}

#[tokio::test]
async fn plus_in_a_query_is_a_plus_not_a_space() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "?topic=a+b").await;
        reader.opening_retry().await;
        let reply = post(srv.addr, "/publish?topic=a+b&event=x+y", &[], "plus").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        let e = reader.next_event(STEP).await;
        assert_eq!((e.name(), e.data.as_str()), ("x+y", "plus"));
        // The same topic percent-encoded is the same topic.
        let id = publish_ok(srv.addr, Some("a+b"), None, "encoded").await;
        assert_eq!(reader.next_event(STEP).await.id(), id);
    })
    .await;
}

#[tokio::test]
async fn cache_busting_underscore_parameters_are_ignored() {
    within(async {
        let srv = start_default().await;
        let mut reader = subscribe(srv.addr, "?topic=c&_=1712345678").await;
        reader.opening_retry().await;
        let reply = post(srv.addr, "/publish?topic=c&_=1712345679", &[], "busted").await;
        assert_eq!(reply.status, StatusCode::OK, "{}", reply.text());
        assert_eq!(reader.next_event(STEP).await.data, "busted");
    })
    .await;
}

/// Sends a chunked publish in `parts` over raw TCP; the status line and body.
async fn chunked_publish(addr: std::net::SocketAddr, parts: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut req = String::from(
        "POST /publish?topic=t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    );
    for p in parts {
        req.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
    }
    req.push_str("0\r\n\r\n");
    tcp.write_all(req.as_bytes()).await.expect("write");
    let mut answer = String::new();
    bounded(STEP, "the answer", tcp.read_to_string(&mut answer))
        .await
        .expect("read");
    answer
}

#[tokio::test]
async fn a_body_in_several_chunks_is_published_whole_and_limited_as_a_whole() {
    within(async {
        let mut config = config();
        config.max_event_bytes = 1024;
        let mut w = Watched::new(config).await;
        let answer = chunked_publish(w.srv.addr, &["hel", "lo ", "world"]).await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert_eq!(w.reader.next_event(STEP).await.data, "hello world");
        let big = "x".repeat(600);
        let answer = chunked_publish(w.srv.addr, &[&big, &big]).await;
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
        assert!(answer.contains("over the limit of 1024 bytes"), "{answer}");
    })
    .await;
}
