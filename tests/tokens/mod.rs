//! Test tokens and keys for the authorisation tests: HS256 tokens from a
//! secret, ES256 and EdDSA key pairs generated per run with `ring` (no
//! private key is checked in), an RSA public key for the algorithm
//! confusion case, and hand-forged tokens (`alg: none`, bad base64).

#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};
use std::time::{SystemTime, UNIX_EPOCH};

pub const SECRET: &str = "test-secret-that-is-long-enough-0123456789";

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// Claims granting `subscribe` and `publish` selectors.
pub fn mercure(subscribe: &[&str], publish: &[&str]) -> Value {
    json!({"mercure": {"subscribe": subscribe, "publish": publish}})
}

/// `claims` with extra fields merged in.
pub fn with(mut claims: Value, extra: Value) -> Value {
    if let (Some(c), Some(e)) = (claims.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            c.insert(k.clone(), v.clone());
        }
    }
    claims
}

pub fn hs256(secret: &str, claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

/// A token for subscribing with `selectors`, signed with [`SECRET`].
pub fn sub_token(selectors: &[&str]) -> String {
    hs256(SECRET, &mercure(selectors, &[]))
}

/// A token for publishing with `selectors`, signed with [`SECRET`].
pub fn pub_token(selectors: &[&str]) -> String {
    hs256(SECRET, &mercure(&[], selectors))
}

/// `header.payload.` with no signature, as an `alg: none` token is sent.
pub fn unsigned(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}.",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    )
}

fn pem(tag: &str, der: &[u8]) -> String {
    use base64::engine::general_purpose::STANDARD;
    let b64 = STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    format!(
        "-----BEGIN {tag}-----\n{}\n-----END {tag}-----\n",
        lines.join("\n")
    )
}

/// A key pair generated now: the signing key, and the public key as PEM.
pub struct TestKey {
    pub encoding: EncodingKey,
    pub alg: Algorithm,
    pub public_pem: String,
}

impl TestKey {
    pub fn sign(&self, claims: &Value) -> String {
        encode(&Header::new(self.alg), claims, &self.encoding).unwrap()
    }
}

/// A fresh ECDSA P-256 key pair (ES256).
pub fn es256() -> TestKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // SubjectPublicKeyInfo { id-ecPublicKey, prime256v1 } BIT STRING (uncompressed point).
    let mut spki = hex("3059301306072a8648ce3d020106082a8648ce3d030107034200");
    spki.extend_from_slice(pair.public_key().as_ref());
    TestKey {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        alg: Algorithm::ES256,
        public_pem: pem("PUBLIC KEY", &spki),
    }
}

/// A fresh Ed25519 key pair (EdDSA).
pub fn ed25519() -> TestKey {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let mut spki = hex("302a300506032b6570032100");
    spki.extend_from_slice(pair.public_key().as_ref());
    TestKey {
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        alg: Algorithm::EdDSA,
        public_pem: pem("PUBLIC KEY", &spki),
    }
}

/// An RSA public key in PEM (a random 2048-bit odd modulus, e = 65537):
/// enough for the server to take it as an RSA key, which is all the
/// algorithm-confusion test needs (nothing is ever verified with it).
pub fn rsa_public_pem() -> String {
    let mut modulus = vec![0u8; 257];
    SystemRandom::new().fill(&mut modulus[1..]).unwrap();
    modulus[0] = 0; // a leading zero keeps the INTEGER positive
    modulus[1] |= 0x80;
    modulus[256] |= 1;
    let n = tlv(0x02, &modulus);
    let e = tlv(0x02, &[0x01, 0x00, 0x01]);
    let rsa_key = tlv(0x30, &[n, e].concat());
    let mut bits = vec![0u8];
    bits.extend_from_slice(&rsa_key);
    let algorithm = hex("300d06092a864886f70d0101010500");
    let spki = tlv(0x30, &[algorithm, tlv(0x03, &bits)].concat());
    pem("PUBLIC KEY", &spki)
}

/// DER tag-length-value.
fn tlv(tag: u8, value: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = value.len();
    if len < 128 {
        out.push(len as u8);
    } else if len < 256 {
        out.extend_from_slice(&[0x81, len as u8]);
    } else {
        out.extend_from_slice(&[0x82, (len >> 8) as u8, len as u8]);
    }
    out.extend_from_slice(value);
    out
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}
