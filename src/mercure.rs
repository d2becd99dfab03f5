//! The Mercure protocol (draft-dunglas-mercure-07, what the Mercure hub's
//! 0.x releases and symfony/mercure speak) on `/.well-known/mercure`, so an
//! app built for a Mercure hub switches to ssehub by changing the hub URL.
//!
//! Like Mercure's own `subscribe.go` and `publish.go`, this module turns a
//! request into the hub's terms in one place and does nothing more: it
//! parses and validates, and [`crate::hub`] subscribes and publishes. Both
//! APIs share one hub, one history and one set of authorisation rules, so
//! an event published on `/publish` reaches Mercure subscribers and a
//! Mercure update reaches `/events` subscribers of its topics.
//!
//! Where Mercure and ssehub's own API differ, this endpoint speaks Mercure:
//! form decoding (`+` is a space), topic *selectors* (matched per event,
//! not looked up), `earliest`, a `Last-Event-ID` response header, and no
//! `reset` event for an id the hub does not know. The 1.0 draft's
//! `match=` selectors and `Mercure-Last-Event-ID` would be parsed here too,
//! into the same [`Hub::subscribe_selectors`](crate::hub::Hub::subscribe_selectors).

use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Request, Response, StatusCode};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::{self, selector, Reason, Role, Selector};
use crate::event;
use crate::hub::{Matcher, PrivateAccess, Update};
use crate::query::{self, Query};
use crate::service::{self, App, Refusal, Resp};
use crate::stream::ResponseBody;

/// Where a Mercure hub is found (the protocol's well-known URL).
pub const PATH: &str = "/.well-known/mercure";

/// Most `topic` selectors one subscription, or topics one update, may
/// have: Mercure's own limit, so matching work per request stays bounded.
pub const MAX_TOPICS: usize = 1000;

/// Longest publisher-chosen id, in bytes (the same bound as a topic's).
pub const MAX_ID_LEN: usize = 256;

/// What Mercure answers on a stream, so nothing between caches it.
const CACHE_CONTROL: &str = "private, no-cache, no-store, must-revalidate, max-age=0";

/// A subscribe request, parsed.
#[derive(Debug)]
pub struct SubscribeRequest {
    /// The topic selectors, deduplicated, in the order given.
    pub selectors: Vec<String>,
    /// `Last-Event-ID` (header) or `lastEventID` (query); the header wins.
    pub last_event_id: Option<String>,
    /// The `authorization` query parameter.
    pub authorization: Option<String>,
}

/// A publish request, parsed (its authorisation is checked separately).
#[derive(Debug, PartialEq, Eq)]
pub struct PublishRequest {
    /// The first is the canonical topic, the others alternates.
    pub topics: Vec<String>,
    pub data: String,
    pub private: bool,
    pub id: Option<String>,
    /// The SSE event name (`type`).
    pub name: Option<String>,
    pub retry: Option<u64>,
}

/// `application/x-www-form-urlencoded` decoding, as browsers and Go's
/// `url.ParseQuery` do it: `+` is a space, `%XX` a byte. Mercure decodes
/// its query strings this way too, so `URLSearchParams` works unchanged.
/// Refuses malformed escapes and what is not UTF-8.
pub fn form_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    for part in text.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        let decode = |s: &str| query::decode(&s.replace('+', " "));
        pairs.push((decode(k)?, decode(v)?));
    }
    Ok(pairs)
}

/// Parses the subscribe query and headers. Unknown parameters are ignored,
/// as Mercure does: its clients add their own (the EventSource polyfill's
/// `lastEventId`, cache busters).
pub fn parse_subscribe(query: Option<&str>, headers: &HeaderMap) -> Result<SubscribeRequest, String> {
    let pairs = form_pairs(query.unwrap_or(""))?;
    let mut selectors: Vec<String> = Vec::new();
    let mut query_id = None;
    let mut legacy_id = None;
    let mut authorization = None;
    for (k, v) in pairs {
        match k.as_str() {
            "topic" => {
                if !selectors.contains(&v) {
                    selectors.push(v);
                }
                if selectors.len() > MAX_TOPICS {
                    return Err(format!("too many topic selectors; at most {MAX_TOPICS}"));
                }
            }
            "lastEventID" => {
                query_id.get_or_insert(v);
            }
            // Draft 07's name for it, which Mercure 0.x still takes.
            "Last-Event-ID" => {
                legacy_id.get_or_insert(v);
            }
            "authorization" => {
                authorization.get_or_insert(v);
            }
            _ => {}
        }
    }
    if selectors.is_empty() {
        return Err("missing topic; subscribe with ?topic=SELECTOR (repeatable; * for every topic)".into());
    }
    if let Some(s) = selectors.iter().find(|s| s.is_empty() || s.len() > 2048) {
        return Err(format!(
            "topic selectors must be 1 to 2048 bytes (got {})",
            s.len()
        ));
    }
    // The header is what EventSource sends on reconnect, newer than the
    // URL the page was loaded with, so it wins. One that is not text
    // cannot name an event: it is passed on to be found unknown.
    let header_id = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or("\u{0}").to_string());
    let last_event_id = [header_id, query_id, legacy_id]
        .into_iter()
        .flatten()
        .find(|id| !id.is_empty());
    Ok(SubscribeRequest {
        selectors,
        last_event_id,
        authorization,
    })
}

/// Parses a publish body (already known to be a form).
pub fn parse_publish(body: &str, max_event_bytes: usize) -> Result<PublishRequest, (StatusCode, String)> {
    let bad = |e: String| (StatusCode::BAD_REQUEST, e);
    let pairs = form_pairs(body).map_err(|e| bad(e.replace("query", "form body")))?;
    let first = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let mut topics: Vec<String> = Vec::new();
    for (_, t) in pairs.iter().filter(|(k, _)| k == "topic") {
        event::check_topic(t).map_err(bad)?;
        if !topics.contains(t) {
            topics.push(t.clone());
        }
        if topics.len() > MAX_TOPICS {
            return Err(bad(format!("too many topics; at most {MAX_TOPICS}")));
        }
    }
    if topics.is_empty() {
        return Err(bad("missing topic; give at least one topic field".into()));
    }
    let data = first("data").unwrap_or("").to_string();
    if data.len() > max_event_bytes {
        return Err((
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("data is over the limit of {max_event_bytes} bytes"),
        ));
    }
    // Present with any value, even empty, means private (the spec says so).
    let private = first("private").is_some();
    // An empty id is no id: the hub makes one, as Mercure does.
    let id = match first("id").filter(|id| !id.is_empty()) {
        None => None,
        Some(id) if id.starts_with('#') => {
            return Err(bad("id must not start with #: the hub's own ids may".into()))
        }
        Some(id) if id.len() > MAX_ID_LEN => {
            return Err(bad(format!("id must be at most {MAX_ID_LEN} bytes")))
        }
        Some(id) => {
            check_id(id).map_err(|e| bad(e.into()))?;
            Some(id.to_string())
        }
    };
    let name = match first("type").filter(|t| !t.is_empty()) {
        None => None,
        Some(t) => {
            event::check_event_name(t).map_err(|e| bad(format!("type: {e}")))?;
            Some(t.to_string())
        }
    };
    let retry = match first("retry").filter(|r| !r.is_empty()) {
        None => None,
        Some(r) => Some(
            r.parse::<u64>()
                .map_err(|_| bad("retry must be a whole number of milliseconds".into()))?,
        ),
    };
    Ok(PublishRequest {
        topics,
        data,
        private,
        id,
        name,
        retry,
    })
}

/// The rules a publisher's id follows beyond `#` and its length, so that
/// it names its event unambiguously when it comes back as `Last-Event-ID`:
///
/// - Visible ASCII only (no spaces, controls or non-ASCII): HTTP trims a
///   header's surrounding spaces, and browsers do not agree on how a
///   non-ASCII `Last-Event-ID` is encoded, so such an id could come back
///   as another one, or as one the hub does not know, and the client would
///   silently miss updates.
/// - Not `earliest`, which means "the whole history" as `Last-Event-ID`.
/// - Not digits only: those are the hub's ids, and a publisher's could name
///   an event the hub has yet to number.
pub fn check_id(id: &str) -> Result<(), &'static str> {
    if !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(
            "id must be visible ASCII (no spaces, control characters or non-ASCII; percent-encode the rest)",
        );
    }
    if id == crate::hub::EARLIEST {
        return Err("id must not be earliest: as Last-Event-ID it means the whole history");
    }
    if id.bytes().all(|b| b.is_ascii_digit()) {
        return Err("id must not be digits only: those are the hub's own ids");
    }
    Ok(())
}

/// `GET /.well-known/mercure`: a stream of every update one of whose
/// topics matches a selector.
pub fn subscribe<B>(app: &App, req: &Request<B>) -> Resp {
    let sub = match parse_subscribe(req.uri().query(), req.headers()) {
        Ok(s) => s,
        Err(e) => return service::plain(StatusCode::BAD_REQUEST, &e),
    };
    let (private, expiry) = match authorize(app, req.headers(), sub.authorization.as_deref()) {
        Ok(granted) => granted,
        Err(refusal) => return *refusal,
    };
    let selectors: Arc<[Selector]> = sub.selectors.iter().map(|s| Selector::parse(s)).collect();
    let matcher: Matcher = Arc::new(move |t| selector::any_matches(&selectors, t));
    let protocol = service::protocol_of(req.version());
    let (subscribed, resumed) =
        app.hub
            .subscribe_selectors(matcher, sub.last_event_id.as_deref(), protocol, private);
    let mut resp = service::stream_of(app, req.version(), subscribed, expiry);
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static(CACHE_CONTROL));
    if let Some(id) = resumed.and_then(|id| HeaderValue::from_str(&id).ok()) {
        h.insert("last-event-id", id);
    }
    resp
}

/// Who may subscribe, as Mercure decides it: with a subscriber key, a valid
/// token (any selectors; it decides which private updates arrive), or no
/// token with `--anonymous` (public updates only). Returns the private
/// access and the token's expiry.
fn authorize(
    app: &App,
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<(PrivateAccess, Option<f64>), Refusal> {
    let auth = &app.auth;
    if !auth.has_key(Role::Subscriber) {
        return Ok((None, None));
    }
    let Some((token, _)) = auth::find_token(headers, query_token, auth.config().cookie_name()) else {
        if auth.config().anonymous {
            return Ok((None, None));
        }
        return Err(Box::new(service::refuse(
            app,
            Role::Subscriber,
            Reason::Missing,
            "a token is needed to subscribe (Authorization: Bearer, the authorization parameter, or the mercureAuthorization cookie)",
        )));
    };
    let claims = match auth.verify_stream(token) {
        Ok(Some(claims)) => claims,
        Ok(None) => return Ok((None, None)),
        Err(invalid) => {
            return Err(Box::new(service::refuse(
                app,
                Role::Subscriber,
                Reason::of(invalid),
                &invalid.text(),
            )))
        }
    };
    // A private update reaches this subscriber when a token selector
    // matches one of its topics. (The spec's "a selector also matches a
    // subscription selector equal to it" adds nothing here: equal text
    // matches the same topics.)
    let granted: Arc<[Selector]> = claims.subscribe.into();
    let access: PrivateAccess = Some(Arc::new(move |t| selector::any_matches(&granted, t)));
    Ok((access, claims.exp))
}

/// `POST /.well-known/mercure`: a form-encoded update.
pub async fn publish(app: &App, peer: SocketAddr, req: Request<Incoming>) -> Resp {
    // Shutdown waits for publishes in flight, so an accepted body is published.
    let _in_flight = service::InFlight::enter(&app.counters);
    // Unknown parameters are ignored, as on GET and as Mercure does; only
    // the token is read from the query (the fields are the body's).
    let query = match Query::parse_lenient(req.uri().query(), &["authorization"]) {
        Ok(q) => q,
        Err(e) => return service::plain(StatusCode::BAD_REQUEST, &e),
    };
    let publisher = match service::authorize_publisher(app, peer, req.headers(), &query) {
        Ok(p) => p,
        Err(refusal) => return *refusal,
    };
    if !is_form(req.headers()) {
        return service::plain(
            StatusCode::BAD_REQUEST,
            "the body must be a form: Content-Type: application/x-www-form-urlencoded",
        );
    }
    let max = app.config.max_event_bytes;
    // Form encoding triples a byte at worst; the data itself is checked
    // against --max-event-bytes once decoded.
    let body = match service::read_body(req, max.saturating_mul(3).saturating_add(64 * 1024)).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let Ok(text) = std::str::from_utf8(&body) else {
        return service::plain(StatusCode::BAD_REQUEST, "body is not valid UTF-8");
    };
    let update = match parse_publish(text, max) {
        Ok(u) => u,
        Err((status, e)) => return service::plain(status, &e),
    };
    // Every topic of the update must be granted, as the spec says: one
    // the publisher may not reach would otherwise be reached through it.
    for t in &update.topics {
        if let Err(refusal) = publisher.may_publish(app, Some(t)) {
            return *refusal;
        }
    }
    if update.private && !app.auth.has_key(Role::Subscriber) {
        return service::plain(
            StatusCode::BAD_REQUEST,
            "private updates need a subscriber key (--jwt-key or --subscriber-jwt-key); without one every update is public",
        );
    }
    #[cfg(feature = "redis")]
    if let Some(shared) = &app.shared {
        // The shared log's entries carry one topic and no id of their own
        // choosing yet: what does not fit is refused, not half-kept.
        if update.topics.len() > 1 || update.id.is_some() || update.retry.is_some() {
            return service::publish_refused(crate::hub::PublishError::Unsupported);
        }
        let events = [event::BatchEvent {
            name: update.name,
            data: update.data,
        }];
        let resp =
            service::publish_shared(app, shared, Some(&update.topics[0]), &events, update.private).await;
        return id_answer(resp);
    }
    let topics: Vec<Arc<str>> = update.topics.iter().map(|t| Arc::from(t.as_str())).collect();
    let result = app.hub.publish_update(&Update {
        topics: &topics,
        name: update.name.as_deref(),
        data: &update.data,
        id: update.id.as_deref(),
        retry: update.retry,
        private: update.private,
    });
    match result {
        Ok(id) => ok_id(id),
        Err(e) => service::publish_refused(e),
    }
}

/// Success as Mercure answers it: `200`, `text/plain`, the id alone.
fn ok_id(id: String) -> Resp {
    let mut resp = Response::new(ResponseBody::text(id));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The shared log's answer with the id alone as its body (ssehub's own
/// `/publish` ends it with a newline).
#[cfg(feature = "redis")]
fn id_answer(resp: Resp) -> Resp {
    if resp.status() != StatusCode::OK {
        return resp;
    }
    let ResponseBody::Full(Some(body)) = resp.body() else {
        return resp;
    };
    let text = String::from_utf8_lossy(body).trim_end().to_string();
    ok_id(text)
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/x-www-form-urlencoded"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_turns_plus_into_a_space() {
        let pairs = form_pairs("topic=a+b&data=x%2By%0A&private").unwrap();
        assert_eq!(pairs[0], ("topic".into(), "a b".into()));
        assert_eq!(pairs[1], ("data".into(), "x+y\n".into()));
        assert_eq!(pairs[2], ("private".into(), "".into()));
        assert!(form_pairs("data=%zz").is_err());
    }

    #[test]
    fn publish_fields_parse() {
        let u = parse_publish("topic=a&topic=b&topic=a&data=x&id=i&type=t&retry=5&private=", 100).unwrap();
        assert_eq!(u.topics, ["a", "b"]);
        assert_eq!(
            (u.id.as_deref(), u.name.as_deref(), u.retry, u.private),
            (Some("i"), Some("t"), Some(5), true)
        );
        assert!(parse_publish("data=x", 100).is_err());
        assert!(parse_publish("topic=a&retry=x", 100).is_err());
        assert!(parse_publish("topic=a&id=%23x", 100).is_err());
        for id in [
            "earliest", "42", "0123", "a+b", "%C3%BC", "a%0Ab", "a%00", "a%09b",
        ] {
            assert!(
                parse_publish(&format!("topic=a&id={id}"), 100).is_err(),
                "id {id}"
            );
        }
        for id in [
            "urn:uuid:42",
            "42a",
            "Earliest-1",
            "https://example.com/e/1%2520x",
        ] {
            assert!(parse_publish(&format!("topic=a&id={id}"), 100).is_ok(), "id {id}");
        }
        assert_eq!(
            parse_publish("topic=a&data=12345", 4).unwrap_err().0,
            StatusCode::PAYLOAD_TOO_LARGE
        );
    }

    #[test]
    fn subscribe_takes_the_header_over_the_query() {
        let mut h = HeaderMap::new();
        h.insert("last-event-id", HeaderValue::from_static("h"));
        let s = parse_subscribe(Some("topic=a&lastEventID=q&x=1"), &h).unwrap();
        assert_eq!(s.last_event_id.as_deref(), Some("h"));
        let s = parse_subscribe(Some("topic=a&lastEventID=q"), &HeaderMap::new()).unwrap();
        assert_eq!(s.last_event_id.as_deref(), Some("q"));
        assert!(parse_subscribe(Some("lastEventID=q"), &HeaderMap::new()).is_err());
    }
}
