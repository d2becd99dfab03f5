//! The browser side: the console page at `/`, the client module
//! `/ssehub.js`, and `/stats`, the JSON the console polls.
//!
//! Both files live in `web/` as plain files and are compiled in, so the one
//! binary is all there is to deploy. The console and `/stats` list topic
//! names, so they are served only where `--ui` allows (by default on a
//! loopback listener); `/ssehub.js` is public code and always served, to
//! any origin, with a long cache lifetime and an ETag.
//!
//! Nothing here runs unless asked: `/stats` takes one pass over the hub's
//! topics per request, and the page polls it only while it is visible.

use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use std::fmt::Write as _;
use std::sync::OnceLock;

use crate::auth::Role;
use crate::service::{App, Resp};
use crate::stream::ResponseBody;

/// The console page: one self-contained HTML file, no external resources.
pub const PAGE: &str = include_str!("../web/console.html");
/// The client module, as kept in the repository.
pub const CLIENT: &str = include_str!("../web/ssehub.js");

/// Topics listed in `/stats`, the busiest first.
const STATS_TOPICS: usize = 50;

/// `GET /`: the console page.
pub fn page() -> Resp {
    let mut resp = Response::new(ResponseBody::text(PAGE));
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // The page can publish and close topics: no other site may frame it.
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("frame-ancestors 'none'"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    resp
}

/// `GET /ssehub.js`: the client module, revalidated by ETag (`304` when
/// the browser's copy is current) and cached for a day between checks.
pub fn client(headers: &HeaderMap) -> Resp {
    let etag = client_etag();
    let current = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if current {
        let mut r = Response::new(ResponseBody::empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else {
        let mut r = Response::new(ResponseBody::text(CLIENT));
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/javascript; charset=utf-8"),
        );
        r
    };
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(etag) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=86400"),
    );
    // A module script from another origin is fetched in CORS mode; the
    // file is public, so any page may load it.
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    resp
}

/// The client's ETag: a hash of its bytes, computed once.
fn client_etag() -> &'static str {
    static ETAG: OnceLock<String> = OnceLock::new();
    ETAG.get_or_init(|| {
        // FNV-1a: the tag needs to change with the file, nothing more.
        let hash = CLIENT.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        format!("\"{hash:016x}\"")
    })
}

/// `GET /stats`: what the console shows, as JSON. Every field is described
/// in the README ("The console").
pub fn stats(app: &App) -> Resp {
    let o = app.hub.overview(STATS_TOPICS);
    let c = &app.counters;
    let refused = |role| c.auth_refused.total(role);
    let s = &o.stats;
    let mut out = String::with_capacity(512 + o.topics.len() * 48);
    let _ = write!(
        out,
        "{{\"version\":\"{}\",\"streams\":{{\"http1\":{},\"http2\":{}}},\"subscribers\":{},\
         \"events_published\":{},\"events_replayed\":{},\"deliveries\":{},\
         \"history\":{{\"events\":{},\"capacity\":{}}},\
         \"dropped_slow\":{},\"dead_peers\":{},\"shed\":{},\"resets_sent\":{},\"topics_closed\":{},\
         \"auth_refused\":{{\"subscriber\":{},\"publisher\":{}}},\
         \"topic_count\":{},\"all_topic_subscribers\":{},\"selector_subscribers\":{},\"topics\":[",
        env!("CARGO_PKG_VERSION"),
        s.open_http1,
        s.open_http2,
        s.subscribers,
        s.events_published,
        s.events_replayed,
        s.deliveries,
        o.history,
        o.history_capacity,
        s.dropped_full,
        c.dead_peers(),
        s.shed,
        s.resets_sent,
        s.topics_closed,
        refused(Role::Subscriber),
        refused(Role::Publisher),
        o.all_topics,
        o.all_topic_subscribers,
        o.selector_subscribers,
    );
    for (i, (topic, n)) in o.topics.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"topic\":");
        crate::logging::push_str(&mut out, topic);
        let _ = write!(out, ",\"subscribers\":{n}}}");
    }
    out.push_str("]}");
    let mut resp = Response::new(ResponseBody::text(out));
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_etag_is_quoted_and_stable() {
        let tag = client_etag();
        assert!(
            tag.starts_with('"') && tag.ends_with('"') && tag.len() == 18,
            "{tag}"
        );
        assert_eq!(tag, client_etag());
    }
}
