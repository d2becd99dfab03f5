//! Topic selectors, as Mercure's `subscribe` and `publish` claims list them:
//! `*` (every topic), an exact topic, or an RFC 6570 URI template such as
//! `https://example.com/users/{id}` that matches the topics it could expand
//! to.
//!
//! Matching is the reverse of expansion: each expression matches the
//! characters its operator may produce. Supported operators: none
//! (`{var}`: unreserved characters and `%XX`), `+` and `#` (reserved
//! characters too, so `/` and `?` match), `/` (path segments) and `.`
//! (labels). A selector that is not a template of these (an unknown
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
        /// How many variables the expression lists (`{/a,b}` has two): the
        /// most values it can produce.
        vars: usize,
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
    let mut vars = 0;
    for name in names.split(',') {
        // A prefix modifier (`:3`) or explode (`*`) only narrows or repeats
        // what a value may be; treat both as a plain variable.
        let name = name.split(':').next().unwrap_or("").trim_end_matches('*');
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'%')
        {
            return None;
        }
        vars += 1;
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
                    for _ in 0..*vars {
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
                            while i < n {
                                let step = value_char(&topic[i..], *reserved, *prefix);
                                if step == 0 {
                                    break;
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
