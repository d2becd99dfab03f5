//! Query strings of our own endpoints: strict RFC 3986 percent-decoding and
//! a known-parameter list per endpoint.
//!
//! Strict, because a mistyped parameter silently accepted does worse than
//! an error: `?topics=news` on `/events` would subscribe to every topic, and
//! `?topc=news` on `/publish` would publish without a topic. So a parameter
//! the endpoint does not know is refused, naming the ones it does know.
//!
//! `+` is a plus here, not a space: that is what RFC 3986 says, and it is
//! what a user who types `topic=a+b` means. Form decoding (`+` as space)
//! belongs to `application/x-www-form-urlencoded` bodies, where a form is the
//! format; nothing in this module is for them.
//!
//! Names starting with `_` are let through and ignored: `?_=1712345678` is
//! what jQuery (`cache: false`) and some proxies add to defeat caches, and
//! no parameter of ours will ever start with one.

/// A decoded query string. Decoding is strict: a `%` not followed by two
/// hex digits, or bytes that are not UTF-8, make the whole query invalid
/// (browsers and curl never send either by accident).
#[derive(Debug, Default)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Decodes `query`, refusing any parameter not in `known` (apart from
    /// the cache-busting `_…` ones, which are dropped).
    pub fn parse(query: Option<&str>, known: &[&str]) -> Result<Query, String> {
        Query::decode_pairs(query, known, true)
    }

    /// Decodes `query` as [`parse`](Self::parse) does, but drops the
    /// parameters not in `known` instead of refusing them: for the Mercure
    /// endpoint, whose clients and polyfills add their own parameters and
    /// whose reference hub ignores what it does not know. Their escapes
    /// must still be valid.
    pub fn parse_lenient(query: Option<&str>, known: &[&str]) -> Result<Query, String> {
        Query::decode_pairs(query, known, false)
    }

    /// The pairs whose key is in `known`; any other key is refused when
    /// `strict` (unless it starts with `_`), else dropped once its value
    /// has been checked.
    fn decode_pairs(query: Option<&str>, known: &[&str], strict: bool) -> Result<Query, String> {
        let mut pairs = Vec::new();
        for part in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            let key = decode(k)?;
            if !known.contains(&key.as_str()) {
                if !strict {
                    decode(v)?;
                } else if !key.starts_with('_') {
                    return Err(unknown(&key, known));
                }
                continue;
            }
            pairs.push((key, decode(v)?));
        }
        Ok(Query { pairs })
    }

    pub fn all<'a, 'k>(&'a self, key: &'k str) -> impl Iterator<Item = &'a str> + use<'a, 'k> {
        self.pairs
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn first(&self, key: &str) -> Option<&str> {
        self.all(key).next()
    }

    /// The parameter's value, refusing it when given more than once.
    pub fn single(&self, key: &str) -> Result<Option<&str>, String> {
        let mut values = self.all(key);
        let first = values.next();
        if values.next().is_some() {
            return Err(format!("give '{key}' at most once"));
        }
        Ok(first)
    }
}

fn unknown(key: &str, known: &[&str]) -> String {
    // The name is the client's: escape it so it stays one printable line.
    let key: String = key.chars().take(64).flat_map(char::escape_debug).collect();
    if known.is_empty() {
        format!("unknown parameter `{key}`; this path takes none")
    } else {
        format!("unknown parameter `{key}`; known: {}", known.join(", "))
    }
}

/// The query as it may appear in a log line: the `authorization` parameter
/// (a token) has its value replaced, everything else is kept as sent.
pub fn redacted(query: &str) -> std::borrow::Cow<'_, str> {
    let secret = |part: &str| {
        let key = part.split_once('=').map_or(part, |(k, _)| k);
        decode(key).is_ok_and(|k| k.eq_ignore_ascii_case("authorization"))
    };
    if !query.split('&').any(secret) {
        return query.into();
    }
    query
        .split('&')
        .map(|part| {
            if secret(part) {
                "authorization=REDACTED"
            } else {
                part
            }
        })
        .collect::<Vec<_>>()
        .join("&")
        .into()
}

/// RFC 3986 percent-decoding: `%XX` is a byte, everything else (`+` too)
/// is itself. Refuses malformed escapes and what is not UTF-8 after them.
pub fn decode(s: &str) -> Result<String, String> {
    let bad = || {
        let shown: String = s.chars().take(64).flat_map(char::escape_debug).collect();
        format!("malformed percent-encoding in query: '{shown}'")
    };
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'%' => {
                let hi = bytes.next().and_then(hex).ok_or_else(bad)?;
                let lo = bytes.next().and_then(hex).ok_or_else(bad)?;
                out.push(hi << 4 | lo);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).map_err(|_| "query is not valid UTF-8 after percent-decoding".to_string())
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN: &[&str] = &["topic", "x"];

    #[test]
    fn lenient_parsing_drops_unknown_parameters_but_not_bad_escapes() {
        let q = Query::parse_lenient(Some("cb=1&topic=a%2Fb&lastEventId=3"), KNOWN).unwrap();
        assert_eq!(q.first("topic"), Some("a/b"));
        assert_eq!(q.first("cb"), None);
        assert!(Query::parse_lenient(Some("topic=%zz"), KNOWN).is_err());
        assert!(Query::parse_lenient(Some("cb=%zz"), KNOWN).is_err());
    }

    #[test]
    fn percent_decodes_and_plus_is_a_plus() {
        let q = Query::parse(Some("topic=a%2Fb&topic=c+d&topic=e%20f&x"), KNOWN).unwrap();
        assert_eq!(q.all("topic").collect::<Vec<_>>(), ["a/b", "c+d", "e f"]);
        assert_eq!(q.first("x"), Some(""));
    }

    #[test]
    fn refuses_malformed_percent_encoding() {
        for bad in ["topic=%", "topic=%4", "topic=%zz", "topic=%ff"] {
            assert!(Query::parse(Some(bad), KNOWN).is_err(), "{bad}");
        }
    }

    #[test]
    fn unknown_parameters_are_named_with_the_known_ones() {
        let e = Query::parse(Some("topics=news"), &["topic", "last_event_id"]).unwrap_err();
        assert_eq!(e, "unknown parameter `topics`; known: topic, last_event_id");
        // Case matters: `Topic` is not `topic`.
        assert!(Query::parse(Some("Topic=a"), KNOWN).is_err());
    }

    #[test]
    fn cache_busting_underscore_parameters_are_ignored() {
        let q = Query::parse(Some("_=1712345678&topic=a&_ts=1"), KNOWN).unwrap();
        assert_eq!(q.all("topic").collect::<Vec<_>>(), ["a"]);
        assert_eq!(q.first("_"), None);
    }

    #[test]
    fn single_refuses_repeats() {
        let q = Query::parse(Some("topic=a&topic=b"), KNOWN).unwrap();
        assert!(q.single("topic").is_err());
    }

    #[test]
    fn redaction_hides_only_the_token() {
        assert_eq!(redacted("topic=a"), "topic=a");
        assert_eq!(
            redacted("topic=a&authorization=eyJ.x.y&Authorization=z"),
            "topic=a&authorization=REDACTED&authorization=REDACTED"
        );
    }

    #[test]
    fn parser_survives_random_input() {
        let alphabet = b"topic=%&+azAZ09\xff\x00=?_";
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let len = (seed % 40) as usize;
            let bytes: Vec<u8> = (0..len)
                .map(|i| alphabet[((seed >> (i % 50)) as usize + i * 5) % alphabet.len()])
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(q) = Query::parse(Some(&text), KNOWN) {
                let _ = q.single("topic");
            }
            let _ = redacted(&text);
        }
    }
}
