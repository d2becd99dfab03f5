//! Topic selectors, as Mercure's `subscribe` and `publish` claims list them:
//! `*` (every topic), an exact topic, or an RFC 6570 URI template such as
//! `https://example.com/users/{id}` that matches the topics it could expand
//! to.
//!
//! Matching is the reverse of expansion: each expression matches the
//! characters its operator may produce. Supported operators: none
//! (`{var}`: unreserved characters and `%XX`), `+` and `#` (reserved
//! characters too, so `/` and `?` match), `/` (path segments) and `.`
//! (labels). A prefix modifier (`{id:3}`) caps a value at that many
//! characters (`%XX` counts as one, a multi-byte character's escapes as
//! one); explode (`{/path*}`) matches as a plain variable, which can only
//! grant less. A selector that is not a template of these (an unknown
//! operator, an unbalanced brace) matches only itself, exactly: an
//! unusual selector can only grant less, never more.

/// A compiled selector.
#[derive(Debug, Clone)]
pub enum Selector {
    /// `*`: every topic, and events without a topic.
    Any,
    /// A topic that matches only itself.
    Exact(String),
    /// A URI template: its text, and what it compiles to.
    Template(String, Vec<Part>),
}

/// One piece of a template.
#[derive(Debug, Clone)]
pub enum Part {
    Literal(String),
    /// An expression: what it may expand to.
    Expr {
        /// Written before each value (`/` for `{/var}`, `.` for `{.var}`, `#` for `{#var}`).
        prefix: Option<u8>,
        /// Whether reserved characters (`/`, `?`, `:` ...) may appear in a value.
        reserved: bool,
        /// One entry per variable the expression lists (`{/a,b}` has two,
        /// the most values it can produce): the variable's prefix length
        /// (`{id:3}`, at most that many characters), if it has one.
        vars: Vec<Option<usize>>,
    },
}

impl Selector {
    pub fn parse(text: &str) -> Selector {
        if text == "*" {
            return Selector::Any;
        }
        if !text.contains('{') && !text.contains('}') {
            return Selector::Exact(text.to_string());
        }
        match parse_template(text) {
            Some(parts) => Selector::Template(text.to_string(), parts),
            None => Selector::Exact(text.to_string()),
        }
    }

    /// The selector as it was written.
    pub fn text(&self) -> &str {
        match self {
            Selector::Any => "*",
            Selector::Exact(text) | Selector::Template(text, _) => text,
        }
    }

    /// Whether the selector covers `topic`; `None` (an event published
    /// without a topic, or a subscription to every topic) only `*` covers.
    pub fn matches(&self, topic: Option<&str>) -> bool {
        match (self, topic) {
            (Selector::Any, _) => true,
            (_, None) => false,
            (Selector::Exact(s), Some(t)) => s == t,
            // The same text matches even where the template would not (a
            // topic that is itself a template: Mercure's step 2).
            (Selector::Template(text, parts), Some(t)) => text == t || matches_template(parts, t.as_bytes()),
        }
    }
}

/// Whether any of `selectors` covers `topic`.
pub fn any_matches(selectors: &[Selector], topic: Option<&str>) -> bool {
    selectors.iter().any(|s| s.matches(topic))
}

fn parse_template(text: &str) -> Option<Vec<Part>> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        match rest.find(['{', '}']) {
            None => {
                parts.push(Part::Literal(rest.to_string()));
                break;
            }
            Some(i) if rest.as_bytes()[i] == b'}' => return None,
            Some(i) => {
                if i > 0 {
                    parts.push(Part::Literal(rest[..i].to_string()));
                }
                let end = rest[i..].find('}')? + i;
                let body = &rest[i + 1..end];
                if body.contains('{') {
                    return None;
                }
                parts.push(parse_expression(body)?);
                rest = &rest[end + 1..];
            }
        }
    }
    Some(parts)
}

fn parse_expression(body: &str) -> Option<Part> {
    let (op, names) = match body.as_bytes().first()? {
        b @ (b'+' | b'#' | b'/' | b'.') => (Some(*b), &body[1..]),
        // `;`, `?`, `&` (and the reserved `=,!@|`) expand to name=value
        // forms: not supported, so the selector is compared exactly.
        b if b.is_ascii_alphanumeric() || *b == b'_' || *b == b'%' => (None, body),
        _ => return None,
    };
    let mut vars = Vec::new();
    for spec in names.split(',') {
        // A prefix modifier (`:3`) caps a value at that many characters.
        // Explode (`*`) only repeats what a value may be: matching it as a
        // plain variable can only grant less.
        let (name, max) = match spec.split_once(':') {
            Some((name, len)) => (name, Some(parse_max_length(len)?)),
            None => (spec.strip_suffix('*').unwrap_or(spec), None),
        };
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'%')
        {
            return None;
        }
        vars.push(max);
    }
    Some(Part::Expr {
        prefix: match op {
            Some(b'+') | None => None,
            other => other,
        },
        reserved: matches!(op, Some(b'+' | b'#')),
        vars,
    })
}

/// RFC 6570's `max-length`: 1 to 9999, no leading zero.
fn parse_max_length(text: &str) -> Option<usize> {
    let ok =
        (1..=4).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_digit()) && !text.starts_with('0');
    ok.then(|| text.parse().ok()).flatten()
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_reserved(b: u8) -> bool {
    matches!(
        b,
        b':' | b'/'
            | b'?'
            | b'#'
            | b'['
            | b']'
            | b'@'
            | b'!'
            | b'$'
            | b'&'
            | b'\''
            | b'('
            | b')'
            | b'*'
            | b'+'
            | b','
            | b';'
            | b'='
    )
}

/// Matches by dynamic programming over (part, position): `reach[i]` says
/// whether the parts so far can produce exactly `topic[..i]`. Topics are
/// at most 256 bytes and templates short, so this is cheap and, unlike
/// backtracking, never exponential.
fn matches_template(parts: &[Part], topic: &[u8]) -> bool {
    let n = topic.len();
    let mut reach = vec![false; n + 1];
    reach[0] = true;
    for part in parts {
        let mut next = vec![false; n + 1];
        for start in (0..=n).filter(|&i| reach[i]) {
            match part {
                Part::Literal(lit) => {
                    if topic[start..].starts_with(lit.as_bytes()) {
                        next[start + lit.len()] = true;
                    }
                }
                Part::Expr {
                    prefix,
                    reserved,
                    vars,
                } => {
                    // An undefined variable expands to nothing.
                    next[start] = true;
                    let mut values = vec![start];
                    for max in vars {
                        let mut after = Vec::new();
                        for &pos in &values {
                            // A separator before each value: the prefix, or
                            // `,` between the values of a prefix-less list.
                            let pos = match (prefix, pos == start) {
                                (Some(p), _) => match topic.get(pos) {
                                    Some(b) if b == p => pos + 1,
                                    _ => continue,
                                },
                                (None, true) => pos,
                                (None, false) => match topic.get(pos) {
                                    Some(b',') => pos + 1,
                                    _ => continue,
                                },
                            };
                            next[pos] = true;
                            after.push(pos);
                            let mut i = pos;
                            let mut chars = 0;
                            while i < n {
                                let step = value_char(&topic[i..], *reserved, *prefix);
                                if step == 0 {
                                    break;
                                }
                                // A character of the value, as a prefix
                                // counts it: `%XX` of a UTF-8 continuation
                                // byte is part of the character before.
                                if !is_continuation(&topic[i..i + step]) {
                                    chars += 1;
                                    if max.is_some_and(|max| chars > max) {
                                        break;
                                    }
                                }
                                i += step;
                                next[i] = true;
                                after.push(i);
                            }
                        }
                        after.sort_unstable();
                        after.dedup();
                        values = after;
                    }
                }
            }
        }
        reach = next;
    }
    reach[n]
}

/// Whether `escape` is `%XX` of a UTF-8 continuation byte (`%80` to `%BF`).
fn is_continuation(escape: &[u8]) -> bool {
    escape.len() == 3 && matches!(escape[1], b'8' | b'9' | b'a' | b'A' | b'b' | b'B')
}

/// How many bytes of `s` one value character takes (`%XX` is three), or 0
/// if `s` does not start with a character such a value may hold.
fn value_char(s: &[u8], reserved: bool, prefix: Option<u8>) -> usize {
    match s[0] {
        b'%' if s.len() >= 3 && s[1].is_ascii_hexdigit() && s[2].is_ascii_hexdigit() => 3,
        // `{/var}` is one segment and `{.var}` one label: the separator
        // itself ends the value.
        b if Some(b) == prefix && !reserved => 0,
        b if is_unreserved(b) => 1,
        b if reserved && is_reserved(b) => 1,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(selector: &str, topic: &str) -> bool {
        Selector::parse(selector).matches(Some(topic))
    }

    #[test]
    fn star_matches_everything_even_no_topic() {
        assert!(m("*", "anything"));
        assert!(Selector::parse("*").matches(None));
        assert!(!Selector::parse("a").matches(None));
        assert!(!Selector::parse("https://x/{id}").matches(None));
    }

    #[test]
    fn exact_selectors_match_only_themselves() {
        assert!(m("https://example.com/books/1", "https://example.com/books/1"));
        assert!(!m("https://example.com/books/1", "https://example.com/books/10"));
        assert!(!m("news", "new"));
    }

    #[test]
    fn simple_expressions_match_one_segment() {
        let s = "https://example.com/users/{id}";
        assert!(m(s, "https://example.com/users/42"));
        assert!(m(s, "https://example.com/users/a%2Fb"));
        assert!(!m(s, "https://example.com/users/42/posts"));
        assert!(!m(s, "https://example.com/other/42"));
        assert!(m(
            "https://example.com/users/{id}/posts",
            "https://example.com/users/7/posts"
        ));
        assert!(!m(
            "https://example.com/users/{id}/posts",
            "https://example.com/users/7/x/posts"
        ));
    }

    #[test]
    fn reserved_expressions_match_slashes() {
        let s = "https://example.com/{+path}";
        assert!(m(s, "https://example.com/a/b/c?d=e"));
        assert!(!m(s, "https://other.com/a"));
        assert!(m("/files{#frag}", "/files#a/b"));
    }

    #[test]
    fn path_expressions_match_segments() {
        let s = "https://example.com/users{/id}";
        assert!(m(s, "https://example.com/users/42"));
        assert!(m(s, "https://example.com/users"));
        assert!(!m(s, "https://example.com/users/42/43"));
        assert!(m("https://example.com{/a,b}", "https://example.com/x/y"));
        assert!(!m("https://example.com{/a,b}", "https://example.com/x/y/z"));
        assert!(m("host{.tld}", "host.com"));
    }

    #[test]
    fn a_prefix_length_caps_the_value() {
        let s = "https://example.com/users/{id:3}";
        assert!(m(s, "https://example.com/users/4"));
        assert!(m(s, "https://example.com/users/423"));
        assert!(!m(s, "https://example.com/users/4234"));
        // An escape is one character, a multi-byte character's escapes one too.
        assert!(m(s, "https://example.com/users/a%2Fb"));
        assert!(m(s, "https://example.com/users/%C3%A9%C3%A9x"));
        assert!(!m(s, "https://example.com/users/%C3%A9%C3%A9xy"));
        // Per variable, and with operators.
        assert!(m("a{/x:1,y}", "a/1/2345"));
        assert!(!m("a{/x:1,y}", "a/12/345/6"));
        assert!(m("https://e.com/{+p:4}", "https://e.com/a/bc"));
        assert!(!m("https://e.com/{+p:4}", "https://e.com/a/bcd"));
        // Not a valid max-length: the selector is compared exactly.
        for bad in [
            "a/{id:0}",
            "a/{id:03}",
            "a/{id:10000}",
            "a/{id:}",
            "a/{id:3*}",
            "a/{id:x}",
        ] {
            assert!(!m(bad, "a/1"), "{bad}");
            assert!(m(bad, bad), "{bad}");
        }
    }

    #[test]
    fn a_template_matches_its_own_text() {
        assert!(m(
            "https://example.com/users/{id}",
            "https://example.com/users/{id}"
        ));
    }

    #[test]
    fn unsupported_templates_are_exact() {
        assert!(m("a{?q}", "a{?q}"));
        assert!(!m("a{?q}", "a?q=1"));
        assert!(m("a{b", "a{b"));
        assert!(!m("a}b{c}", "a}bx"));
    }

    #[test]
    fn matching_survives_random_input() {
        let alphabet = b"{}/+#.,a%2F?*:";
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..5_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let pick = |k: usize, len: usize| -> String {
                (0..len)
                    .map(|i| {
                        alphabet[((seed >> ((i + k) % 50)) as usize + i * 7 + k) % alphabet.len()] as char
                    })
                    .collect()
            };
            let s = pick(0, (seed % 12) as usize);
            let t = pick(3, ((seed >> 8) % 20) as usize);
            let _ = Selector::parse(&s).matches(Some(&t));
        }
    }
}
