//! Authorisation with JWTs carrying Mercure's claims: who may subscribe to
//! and publish on which topics.
//!
//! This module turns a request's credential into a decision and nothing
//! more; [`crate::service`] asks it and answers, and the hub only learns
//! which private events each subscriber may read. [`jwt`] verifies tokens,
//! [`selector`] matches the topics they grant.
//!
//! Keys live behind a lock so SIGHUP can swap them (key rotation): a
//! request takes the current keys once, so it is judged by one key set.

pub mod jwt;
pub mod selector;

use hyper::header::{self, HeaderMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use jwt::{Checks, Claims, Invalid, Key, KeySource};
pub use selector::Selector;

/// The command line's authorisation settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AuthConfig {
    /// `--jwt-key[-file]`: both roles' key unless one is overridden.
    pub jwt_key: Option<KeySource>,
    /// `--subscriber-jwt-key[-file]`.
    pub subscriber_jwt_key: Option<KeySource>,
    /// `--publisher-jwt-key[-file]`.
    pub publisher_jwt_key: Option<KeySource>,
    /// `--jwt-alg`, as given.
    pub jwt_alg: Option<String>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    /// `--jwt-cookie`: the cookie a token is read from; `None` means the
    /// default, `mercureAuthorization`.
    pub jwt_cookie: Option<String>,
    /// `--anonymous`: anyone may subscribe and receives public events.
    pub anonymous: bool,
}

impl AuthConfig {
    pub fn subscriber_source(&self) -> Option<&KeySource> {
        self.subscriber_jwt_key.as_ref().or(self.jwt_key.as_ref())
    }

    pub fn publisher_source(&self) -> Option<&KeySource> {
        self.publisher_jwt_key.as_ref().or(self.jwt_key.as_ref())
    }

    pub fn cookie_name(&self) -> &str {
        self.jwt_cookie.as_deref().unwrap_or(DEFAULT_COOKIE)
    }

    fn checks(&self) -> Result<Checks, String> {
        Ok(Checks {
            alg: self.jwt_alg.as_deref().map(jwt::parse_alg).transpose()?,
            issuer: self.jwt_issuer.clone(),
            audience: self.jwt_audience.clone(),
        })
    }

    /// Loads both roles' keys; the error names the role and the source.
    pub fn load(&self) -> Result<Keys, String> {
        let checks = self.checks().map_err(|e| format!("--jwt-alg: {e}"))?;
        let load = |role: &str, source: Option<&KeySource>| -> Result<Option<Key>, String> {
            source
                .map(|s| Key::load(s, &checks).map_err(|e| format!("{role} key: {e}")))
                .transpose()
        };
        Ok(Keys {
            subscriber: load("subscriber", self.subscriber_source())?,
            publisher: load("publisher", self.publisher_source())?,
        })
    }
}

/// The cookie Mercure's tooling sets.
pub const DEFAULT_COOKIE: &str = "mercureAuthorization";

/// Each role's key, if it has one.
#[derive(Debug, Default)]
pub struct Keys {
    pub subscriber: Option<Key>,
    pub publisher: Option<Key>,
}

/// Which side of the hub a request is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Subscriber,
    Publisher,
}

impl Role {
    fn label(self) -> &'static str {
        match self {
            Role::Subscriber => "subscriber",
            Role::Publisher => "publisher",
        }
    }
}

/// Where a token was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Header,
    Query,
    Cookie,
}

/// The metrics label of a refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// No token where one is needed.
    Missing,
    /// Malformed, wrong algorithm or signature, wrong claims.
    Invalid,
    /// `exp` passed or `nbf` not reached.
    Expired,
    TooLarge,
    /// A valid token that does not grant the topic.
    Forbidden,
    /// A cookie credential on a publish without an allowed `Origin`.
    Origin,
}

impl Reason {
    const ALL: [Reason; 6] = [
        Reason::Missing,
        Reason::Invalid,
        Reason::Expired,
        Reason::TooLarge,
        Reason::Forbidden,
        Reason::Origin,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Reason::Missing => "missing",
            Reason::Invalid => "invalid",
            Reason::Expired => "expired",
            Reason::TooLarge => "too_large",
            Reason::Forbidden => "forbidden",
            Reason::Origin => "origin",
        }
    }

    pub fn of(invalid: Invalid) -> Reason {
        match invalid {
            Invalid::TooLarge => Reason::TooLarge,
            Invalid::Expired | Invalid::NotYetValid => Reason::Expired,
            Invalid::WrongAlgorithm(_) | Invalid::Malformed(_) => Reason::Invalid,
        }
    }
}

/// `ssehub_auth_refused_total{role, reason}`.
#[derive(Debug, Default)]
pub struct RefusalCounters {
    counts: [[AtomicU64; Reason::ALL.len()]; 2],
}

impl RefusalCounters {
    pub fn count(&self, role: Role, reason: Reason) {
        let r = Reason::ALL.iter().position(|x| *x == reason).unwrap_or(0);
        self.counts[role as usize][r].fetch_add(1, Ordering::Relaxed);
    }

    /// Refusals of one role, whatever the reason (the console's figure).
    pub fn total(&self, role: Role) -> u64 {
        self.counts[role as usize]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    /// (labels, value) for every role and reason, for the metrics text.
    pub fn samples(&self) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        for role in [Role::Subscriber, Role::Publisher] {
            for (i, reason) in Reason::ALL.iter().enumerate() {
                out.push((
                    format!("{{role=\"{}\",reason=\"{}\"}}", role.label(), reason.label()),
                    self.counts[role as usize][i].load(Ordering::Relaxed),
                ));
            }
        }
        out
    }
}

/// The server's authorisation state.
pub struct Auth {
    config: AuthConfig,
    keys: RwLock<Arc<Keys>>,
}

impl Auth {
    pub fn new(config: AuthConfig) -> Result<Auth, String> {
        let keys = config.load()?;
        Ok(Auth {
            config,
            keys: RwLock::new(Arc::new(keys)),
        })
    }

    pub fn config(&self) -> &AuthConfig {
        &self.config
    }

    fn keys(&self) -> Arc<Keys> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Re-reads the key files (SIGHUP). On an error the old keys stay, so
    /// a half-written file does not lock everyone out.
    pub fn reload(&self) -> Result<(), String> {
        let keys = self.config.load()?;
        *self.keys.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(keys);
        Ok(())
    }

    pub fn has_key(&self, role: Role) -> bool {
        match role {
            Role::Subscriber => self.config.subscriber_source().is_some(),
            Role::Publisher => self.config.publisher_source().is_some(),
        }
    }

    /// Verifies `token` with the role's key. `Ok(None)`: the role has no key.
    pub fn verify(&self, role: Role, token: &str) -> Result<Option<Claims>, Invalid> {
        let keys = self.keys();
        let key = match role {
            Role::Subscriber => keys.subscriber.as_ref(),
            Role::Publisher => keys.publisher.as_ref(),
        };
        key.map(|k| k.verify(token)).transpose()
    }

    /// [`verify`](Self::verify) for opening a stream: a subscriber's token
    /// whose `exp` has passed is refused even inside the leeway. The stream
    /// would end at `exp`, at once, and the client would come straight back
    /// with the same token until the leeway ran out; a 401 now makes it
    /// fetch a new one.
    pub fn verify_stream(&self, token: &str) -> Result<Option<Claims>, Invalid> {
        let claims = self.verify(Role::Subscriber, token)?;
        match claims {
            Some(c) if c.exp.is_some_and(|exp| until_expiry(exp).is_zero()) => Err(Invalid::Expired),
            other => Ok(other),
        }
    }
}

/// The request's token and where it came from; first found wins: the
/// `Authorization: Bearer` header, the `authorization` query parameter,
/// then the cookie.
pub fn find_token<'a>(
    headers: &'a HeaderMap,
    query_token: Option<&'a str>,
    cookie: &str,
) -> Option<(&'a str, Source)> {
    if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
    {
        return Some((token, Source::Header));
    }
    if let Some(token) = query_token {
        return Some((token, Source::Query));
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == cookie)
        .map(|(_, value)| (value.trim_matches('"'), Source::Cookie))
}

/// The token of an `Authorization: Bearer` value; the scheme is
/// case-insensitive (RFC 9110).
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// How long until `exp`; zero if it has passed.
pub fn until_expiry(exp: f64) -> Duration {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs_f64();
    Duration::try_from_secs_f64(exp - now).unwrap_or(Duration::ZERO)
}

/// Compares in time that does not depend on where the inputs differ, so a
/// secret cannot be guessed byte by byte from response times (only its
/// length can, which is no help).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn header_wins_over_query_wins_over_cookie() {
        let all = headers(&[
            ("authorization", "bEaReR h"),
            ("cookie", "a=1; mercureAuthorization=c"),
        ]);
        assert_eq!(
            find_token(&all, Some("q"), DEFAULT_COOKIE),
            Some(("h", Source::Header))
        );
        let no_header = headers(&[("cookie", "mercureAuthorization=c")]);
        assert_eq!(
            find_token(&no_header, Some("q"), DEFAULT_COOKIE),
            Some(("q", Source::Query))
        );
        assert_eq!(
            find_token(&no_header, None, DEFAULT_COOKIE),
            Some(("c", Source::Cookie))
        );
        assert_eq!(find_token(&no_header, None, "other"), None);
        let basic = headers(&[("authorization", "Basic xyz")]);
        assert_eq!(find_token(&basic, None, DEFAULT_COOKIE), None);
    }

    #[test]
    fn constant_time_eq_is_equality() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secreT", b"secret"));
        assert!(!constant_time_eq(b"secret2", b"secret"));
        assert!(!constant_time_eq(b"", b"secret"));
    }

    #[test]
    fn every_refusal_is_counted_under_its_labels() {
        let c = RefusalCounters::default();
        c.count(Role::Publisher, Reason::Origin);
        let s = c.samples();
        assert_eq!(s.len(), 12);
        assert!(s.contains(&("{role=\"publisher\",reason=\"origin\"}".into(), 1)));
    }
}
