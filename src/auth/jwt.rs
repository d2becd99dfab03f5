//! JWT keys and verification: loading a key (an HMAC secret or a PEM
//! public key), the one algorithm it accepts, and checking a token's
//! signature, validity window, issuer, audience and Mercure claims.
//!
//! The algorithm comes from the key's configuration, never from the
//! token: a token whose header names another algorithm is refused before
//! any signature check, so `alg: none` and the classic confusion (an HS256
//! token "signed" with the RSA public key as the secret) cannot get in.
//! Verification is `jsonwebtoken` on `ring`, whose HMAC check is
//! constant-time.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use std::fmt;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use super::selector::Selector;

/// Largest token accepted, in bytes: Mercure tokens are a few hundred;
/// anything near this is an attack on the parser or a mistake.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

/// Seconds of clock skew allowed on `exp` and `nbf`.
pub const LEEWAY_SECS: u64 = 5;

/// Where a key comes from. Never printed with its content.
#[derive(Clone, PartialEq, Eq)]
pub enum KeySource {
    /// Given on the command line or in the environment: an HMAC secret, or a
    /// PEM public key's text.
    Inline(String),
    /// A file holding either; re-read on SIGHUP.
    File(PathBuf),
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeySource::Inline(_) => f.write_str("Inline(<redacted>)"),
            KeySource::File(p) => write!(f, "File({})", p.display()),
        }
    }
}

/// What a key is, which decides the algorithms it can verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyKind {
    Secret,
    Rsa,
    P256,
    P384,
    Ed25519,
}

impl KeyKind {
    fn default_alg(self) -> Algorithm {
        match self {
            KeyKind::Secret => Algorithm::HS256,
            KeyKind::Rsa => Algorithm::RS256,
            KeyKind::P256 => Algorithm::ES256,
            KeyKind::P384 => Algorithm::ES384,
            KeyKind::Ed25519 => Algorithm::EdDSA,
        }
    }

    fn allows(self, alg: Algorithm) -> bool {
        use Algorithm::*;
        match self {
            KeyKind::Secret => matches!(alg, HS256 | HS384 | HS512),
            KeyKind::Rsa => matches!(alg, RS256 | RS384 | RS512 | PS256 | PS384 | PS512),
            KeyKind::P256 => alg == ES256,
            KeyKind::P384 => alg == ES384,
            KeyKind::Ed25519 => alg == EdDSA,
        }
    }

    fn name(self) -> &'static str {
        match self {
            KeyKind::Secret => "an HMAC secret",
            KeyKind::Rsa => "an RSA key",
            KeyKind::P256 => "an EC P-256 key",
            KeyKind::P384 => "an EC P-384 key",
            KeyKind::Ed25519 => "an Ed25519 key",
        }
    }
}

/// Parses `--jwt-alg`.
pub fn parse_alg(text: &str) -> Result<Algorithm, String> {
    use Algorithm::*;
    Ok(match text {
        "HS256" => HS256,
        "HS384" => HS384,
        "HS512" => HS512,
        "RS256" => RS256,
        "RS384" => RS384,
        "RS512" => RS512,
        "PS256" => PS256,
        "PS384" => PS384,
        "PS512" => PS512,
        "ES256" => ES256,
        "ES384" => ES384,
        "EdDSA" => EdDSA,
        _ => {
            return Err(format!(
                "'{text}' is not a supported algorithm; use HS256/384/512, RS256/384/512, PS256/384/512, ES256, ES384 or EdDSA"
            ))
        }
    })
}

/// What every key's validation shares.
#[derive(Debug, Clone, Default)]
pub struct Checks {
    /// `--jwt-alg`: otherwise taken from the key.
    pub alg: Option<Algorithm>,
    /// `--jwt-issuer`: `iss` must be present and equal.
    pub issuer: Option<String>,
    /// `--jwt-audience`: `aud` must be present and include it.
    pub audience: Option<String>,
}

/// A loaded key and the validation rules for its tokens.
pub struct Key {
    decoding: DecodingKey,
    validation: Validation,
    alg: Algorithm,
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({:?}, <redacted>)", self.alg)
    }
}

impl Key {
    /// Reads and parses the key. Errors name the source, never the key.
    pub fn load(source: &KeySource, checks: &Checks) -> Result<Key, String> {
        let text = match source {
            KeySource::Inline(t) => t.clone(),
            KeySource::File(path) => std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read '{}': {e}", path.display()))?
                .trim_end_matches(['\r', '\n'])
                .to_string(),
        };
        if text.is_empty() {
            return Err("the key is empty".into());
        }
        let pem = text.trim_start();
        let (kind, decoding) = if pem.starts_with("-----BEGIN") {
            parse_pem(pem)?
        } else {
            (KeyKind::Secret, DecodingKey::from_secret(text.as_bytes()))
        };
        let alg = checks.alg.unwrap_or(kind.default_alg());
        if !kind.allows(alg) {
            return Err(format!("{alg:?} cannot be used with {}", kind.name()));
        }
        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECS;
        validation.validate_nbf = true;
        // `exp` is checked when present but not required: Mercure's tooling
        // mints subscriber tokens without one.
        let mut required: Vec<&str> = Vec::new();
        match &checks.issuer {
            Some(iss) => {
                validation.set_issuer(&[iss]);
                required.push("iss");
            }
            None => validation.iss = None,
        }
        match &checks.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                required.push("aud");
            }
            // Without a configured audience, a token's `aud` is not ours to judge.
            None => validation.validate_aud = false,
        }
        validation.set_required_spec_claims(&required);
        Ok(Key {
            decoding,
            validation,
            alg,
        })
    }

    /// Verifies a token and returns its claims.
    pub fn verify(&self, token: &str) -> Result<Claims, Invalid> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(Invalid::TooLarge);
        }
        // Read the header's `alg` first, to refuse a mismatch (above all
        // `none`, which the library cannot even represent) with its reason.
        let header = token.split('.').next().unwrap_or("");
        let alg = decode_header_alg(header).ok_or(Invalid::Malformed("the token is not a JWT"))?;
        if alg == "none" {
            return Err(Invalid::Malformed("alg none is never accepted"));
        }
        if alg != format!("{:?}", self.alg) {
            return Err(Invalid::WrongAlgorithm(self.alg));
        }
        use jsonwebtoken::errors::ErrorKind as K;
        let data = jsonwebtoken::decode::<RawClaims>(token, &self.decoding, &self.validation).map_err(
            |e| match e.kind() {
                K::ExpiredSignature => Invalid::Expired,
                K::ImmatureSignature => Invalid::NotYetValid,
                K::InvalidSignature => Invalid::Malformed("the signature does not verify"),
                K::InvalidAlgorithm => Invalid::WrongAlgorithm(self.alg),
                K::InvalidIssuer => Invalid::Malformed("the issuer (iss) is not the expected one"),
                K::InvalidAudience => Invalid::Malformed("the audience (aud) is not the expected one"),
                K::MissingRequiredClaim(_) => Invalid::Malformed("a required claim (iss or aud) is missing"),
                K::Json(_) => Invalid::Malformed("a claim has the wrong type"),
                _ => Invalid::Malformed("the token is malformed"),
            },
        )?;
        let raw = data.claims;
        // The library skips an `exp` or `nbf` it cannot read as a u64 (a
        // negative one, say) as if it were absent: check them here too.
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs_f64();
        let leeway = LEEWAY_SECS as f64;
        if let Some(exp) = raw.exp {
            if !exp.is_finite() || exp + leeway < now {
                return Err(Invalid::Expired);
            }
        }
        if let Some(nbf) = raw.nbf {
            if !nbf.is_finite() || nbf - leeway > now {
                return Err(Invalid::NotYetValid);
            }
        }
        let mercure = raw.mercure.unwrap_or_default();
        Ok(Claims {
            subscribe: mercure.subscribe.iter().map(|s| Selector::parse(s)).collect(),
            publish: mercure.publish.iter().map(|s| Selector::parse(s)).collect(),
            exp: raw.exp,
        })
    }
}

/// The `alg` of a token's header, if the header is base64url JSON.
fn decode_header_alg(header: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Header {
        alg: String,
    }
    use base64::Engine as _;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Header>(&bytes).ok().map(|h| h.alg)
}

/// The claims ssehub reads; their types are checked here (a string `exp`
/// is a wrong claim type, not an absent one).
#[derive(Deserialize)]
struct RawClaims {
    #[serde(default)]
    mercure: Option<Mercure>,
    #[serde(default)]
    exp: Option<f64>,
    #[serde(default)]
    nbf: Option<f64>,
}

#[derive(Deserialize, Default)]
struct Mercure {
    #[serde(default)]
    subscribe: Vec<String>,
    #[serde(default)]
    publish: Vec<String>,
}

/// What a valid token grants.
#[derive(Debug, Clone)]
pub struct Claims {
    pub subscribe: Vec<Selector>,
    pub publish: Vec<Selector>,
    /// Expiry, seconds since the epoch.
    pub exp: Option<f64>,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Invalid {
    TooLarge,
    Expired,
    NotYetValid,
    WrongAlgorithm(Algorithm),
    Malformed(&'static str),
}

impl Invalid {
    pub fn text(self) -> String {
        match self {
            Invalid::TooLarge => format!("the token is over {MAX_TOKEN_BYTES} bytes"),
            Invalid::Expired => "the token has expired".into(),
            Invalid::NotYetValid => "the token is not valid yet (nbf)".into(),
            Invalid::WrongAlgorithm(alg) => format!("the token must be signed with {alg:?}"),
            Invalid::Malformed(why) => why.to_string(),
        }
    }
}

/// Parses a PEM public key and tells what kind it is from the algorithm
/// identifier in its SubjectPublicKeyInfo. Done here rather than with the
/// library's PEM feature, which pulls a bignum ASN.1 stack (and `time`)
/// into the binary for what is a few bytes of DER walking.
fn parse_pem(text: &str) -> Result<(KeyKind, DecodingKey), String> {
    let (tag, der) = decode_pem(text)?;
    let malformed = |what: &str| format!("the PEM key is malformed: {what}");
    match tag.as_str() {
        // PKCS#1 RSAPublicKey, what ring verifies with.
        "RSA PUBLIC KEY" => {
            let (t, _, rest) = tlv(&der).ok_or_else(|| malformed("not DER"))?;
            if t != SEQUENCE || !rest.is_empty() {
                return Err(malformed("not an RSAPublicKey"));
            }
            Ok((KeyKind::Rsa, DecodingKey::from_rsa_der(&der)))
        }
        "PUBLIC KEY" => {
            let (algorithm, key) = spki(&der).ok_or_else(|| malformed("not a SubjectPublicKeyInfo"))?;
            let (t, oid, params) = tlv(algorithm).ok_or_else(|| malformed("no algorithm"))?;
            if t != OID {
                return Err(malformed("no algorithm"));
            }
            let curve = tlv(params).filter(|(t, _, _)| *t == OID).map(|(_, c, _)| c);
            // The key bytes are what ring takes: an RSAPublicKey, an
            // uncompressed EC point, or the 32 bytes of an Ed25519 key.
            let (kind, decoding) = match (oid, curve) {
                (RSA_ENCRYPTION, _) if tlv(key).is_some_and(|(t, _, _)| t == SEQUENCE) => {
                    (KeyKind::Rsa, DecodingKey::from_rsa_der(key))
                }
                (EC_PUBLIC_KEY, Some(P256)) if key.len() == 65 && key[0] == 4 => {
                    (KeyKind::P256, DecodingKey::from_ec_der(key))
                }
                (EC_PUBLIC_KEY, Some(P384)) if key.len() == 97 && key[0] == 4 => {
                    (KeyKind::P384, DecodingKey::from_ec_der(key))
                }
                (ED25519, _) if key.len() == 32 => (KeyKind::Ed25519, DecodingKey::from_ed_der(key)),
                (RSA_ENCRYPTION | EC_PUBLIC_KEY | ED25519, _) => return Err(malformed("the key bytes")),
                _ => return Err("the PEM key is none of RSA, EC P-256, EC P-384 or Ed25519".into()),
            };
            Ok((kind, decoding))
        }
        tag if tag.contains("PRIVATE") => {
            Err("the PEM block is a private key; give the public key (it is all ssehub needs)".into())
        }
        tag => Err(format!(
            "a PEM '{tag}' block is not a public key; give a 'PUBLIC KEY'"
        )),
    }
}

const SEQUENCE: u8 = 0x30;
const OID: u8 = 0x06;
const BIT_STRING: u8 = 0x03;
/// The contents of the object identifiers (without tag and length).
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
const P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
const ED25519: &[u8] = &[0x2b, 0x65, 0x70];

/// The first PEM block: its label and its decoded bytes.
fn decode_pem(text: &str) -> Result<(String, Vec<u8>), String> {
    let bad = || "the key is not valid PEM".to_string();
    let rest = text.trim_start().strip_prefix("-----BEGIN ").ok_or_else(bad)?;
    let (tag, rest) = rest.split_once("-----").ok_or_else(bad)?;
    let (body, _) = rest.split_once(&format!("-----END {tag}-----")).ok_or_else(bad)?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    use base64::Engine as _;
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|_| bad())?;
    Ok((tag.to_string(), der))
}

/// One DER tag-length-value: (tag, value, what follows).
fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        first as usize
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| acc << 8 | *b as usize);
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// SubjectPublicKeyInfo: the AlgorithmIdentifier's contents and the key bytes.
fn spki(der: &[u8]) -> Option<(&[u8], &[u8])> {
    let (tag, body, after) = tlv(der)?;
    if tag != SEQUENCE || !after.is_empty() {
        return None;
    }
    let (tag, algorithm, rest) = tlv(body)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, bits, after) = tlv(rest)?;
    // A key is a whole number of bytes: no unused bits.
    if tag != BIT_STRING || !after.is_empty() || bits.first() != Some(&0) {
        return None;
    }
    Some((algorithm, &bits[1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{encode, EncodingKey, Header};

    fn hs(secret: &str, claims: &serde_json::Value) -> String {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    fn key(secret: &str) -> Key {
        Key::load(&KeySource::Inline(secret.into()), &Checks::default()).unwrap()
    }

    #[test]
    fn a_valid_token_gives_its_selectors() {
        let t = hs(
            "k",
            &serde_json::json!({"mercure": {"subscribe": ["a", "b/{id}"]}}),
        );
        let c = key("k").verify(&t).unwrap();
        assert_eq!(c.subscribe.len(), 2);
        assert!(c.publish.is_empty());
    }

    #[test]
    fn the_algorithm_is_the_keys_not_the_tokens() {
        let claims = serde_json::json!({"mercure": {}});
        let t = encode(
            &Header::new(Algorithm::HS512),
            &claims,
            &EncodingKey::from_secret(b"k"),
        )
        .unwrap();
        assert_eq!(
            key("k").verify(&t).unwrap_err(),
            Invalid::WrongAlgorithm(Algorithm::HS256)
        );
        let with512 = Key::load(
            &KeySource::Inline("k".into()),
            &Checks {
                alg: Some(Algorithm::HS512),
                ..Checks::default()
            },
        )
        .unwrap();
        assert!(with512.verify(&t).is_ok());
    }

    #[test]
    fn wrong_types_and_garbage_are_refused() {
        let k = key("k");
        for claims in [
            serde_json::json!({"mercure": {"subscribe": "*"}}),
            serde_json::json!({"mercure": {"subscribe": [1]}}),
            serde_json::json!({"exp": "soon"}),
        ] {
            assert!(
                matches!(k.verify(&hs("k", &claims)), Err(Invalid::Malformed(_))),
                "{claims}"
            );
        }
        for garbage in ["", "a", "a.b.c", "!!!.e30.x", "e30.e30.e30"] {
            assert!(k.verify(garbage).is_err(), "{garbage}");
        }
    }

    #[test]
    fn exp_and_nbf_are_checked_whatever_their_number_type() {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let k = key("k");
        for (claims, want) in [
            (serde_json::json!({"exp": -5}), Err(Invalid::Expired)),
            (serde_json::json!({"exp": now - 10.5}), Err(Invalid::Expired)),
            (serde_json::json!({"nbf": now + 10.5}), Err(Invalid::NotYetValid)),
            (serde_json::json!({"exp": now - 2.0}), Ok(())),
            (serde_json::json!({"exp": now + 60.0, "nbf": now - 1.0}), Ok(())),
        ] {
            assert_eq!(k.verify(&hs("k", &claims)).map(|_| ()), want, "{claims}");
        }
    }

    #[test]
    fn issuer_and_audience_must_match_when_configured() {
        let checks = Checks {
            alg: None,
            issuer: Some("https://issuer.example".into()),
            audience: Some("ssehub".into()),
        };
        let k = Key::load(&KeySource::Inline("k".into()), &checks).unwrap();
        let good = serde_json::json!({"iss": "https://issuer.example", "aud": ["other", "ssehub"]});
        assert!(k.verify(&hs("k", &good)).is_ok());
        for bad in [
            serde_json::json!({"iss": "https://issuer.example"}),
            serde_json::json!({"aud": "ssehub"}),
            serde_json::json!({"iss": "https://evil.example", "aud": "ssehub"}),
            serde_json::json!({"iss": "https://issuer.example", "aud": "other"}),
        ] {
            assert!(k.verify(&hs("k", &bad)).is_err(), "{bad}");
        }
        // Without --jwt-audience, a token's aud is not judged.
        assert!(key("k")
            .verify(&hs("k", &serde_json::json!({"aud": "anyone"})))
            .is_ok());
    }

    #[test]
    fn secrets_and_keys_are_never_printed() {
        assert!(!format!("{:?}", KeySource::Inline("hunter2".into())).contains("hunter2"));
        assert!(!format!("{:?}", key("hunter2")).contains("hunter2"));
    }

    #[test]
    fn hmac_algorithms_need_a_secret() {
        let checks = Checks {
            alg: Some(Algorithm::RS256),
            ..Checks::default()
        };
        assert!(Key::load(&KeySource::Inline("k".into()), &checks).is_err());
        let private = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let e = Key::load(&KeySource::Inline(private.into()), &Checks::default()).unwrap_err();
        assert!(e.contains("public key"), "{e}");
    }
}
