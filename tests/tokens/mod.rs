//! Test tokens and keys for the authorisation tests: HS256 tokens from a
//! secret, ES256, ES384 and EdDSA key pairs generated per run with `ring`,
//! RSA key pairs generated per run with `num-bigint` (no private key is
//! checked in), an RSA public key for the algorithm confusion case, and
//! hand-forged tokens (`alg: none`, bad base64).

#![allow(dead_code)]

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use num_bigint::BigUint;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, ECDSA_P384_SHA384_FIXED_SIGNING,
};
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

/// A fresh ECDSA P-384 key pair (ES384).
pub fn es384() -> TestKey {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // SubjectPublicKeyInfo { id-ecPublicKey, secp384r1 } BIT STRING (uncompressed point).
    let mut spki = hex("3076301006072a8648ce3d020106052b81040022036200");
    spki.extend_from_slice(pair.public_key().as_ref());
    TestKey {
        encoding: EncodingKey::from_ec_der(pkcs8.as_ref()),
        alg: Algorithm::ES384,
        public_pem: pem("PUBLIC KEY", &spki),
    }
}

/// A fresh 2048-bit RSA key pair, generated here (ring verifies and signs
/// RSA but cannot make keys): the PKCS#1 private key for signing, and the
/// public key both as a SubjectPublicKeyInfo (`PUBLIC KEY`) and as a
/// PKCS#1 `RSA PUBLIC KEY`.
pub struct RsaTestKey {
    pub private_der: Vec<u8>,
    pub spki_pem: String,
    pub pkcs1_pem: String,
}

impl RsaTestKey {
    pub fn sign(&self, alg: Algorithm, claims: &Value) -> String {
        encode(
            &Header::new(alg),
            claims,
            &EncodingKey::from_rsa_der(&self.private_der),
        )
        .unwrap()
    }
}

pub fn rsa() -> RsaTestKey {
    let e = BigUint::from(65_537u32);
    let one = BigUint::from(1u8);
    let (mut p, mut q) = (rsa_prime(&e), rsa_prime(&e));
    while p == q {
        q = rsa_prime(&e);
    }
    if p < q {
        std::mem::swap(&mut p, &mut q);
    }
    let n = &p * &q;
    let phi = (&p - &one) * (&q - &one);
    let d = e.modinv(&phi).unwrap();
    let dp = &d % (&p - &one);
    let dq = &d % (&q - &one);
    let qinv = q.modinv(&p).unwrap();
    let int = |v: &BigUint| {
        let mut bytes = v.to_bytes_be();
        if bytes[0] & 0x80 != 0 {
            bytes.insert(0, 0);
        }
        tlv(0x02, &bytes)
    };
    let public = tlv(0x30, &[int(&n), int(&e)].concat());
    let private = [
        vec![0x02, 0x01, 0x00],
        int(&n),
        int(&e),
        int(&d),
        int(&p),
        int(&q),
        int(&dp),
        int(&dq),
        int(&qinv),
    ];
    let mut bits = vec![0u8];
    bits.extend_from_slice(&public);
    let algorithm = hex("300d06092a864886f70d0101010500");
    let spki = tlv(0x30, &[algorithm, tlv(0x03, &bits)].concat());
    RsaTestKey {
        private_der: tlv(0x30, &private.concat()),
        spki_pem: pem("PUBLIC KEY", &spki),
        pkcs1_pem: pem("RSA PUBLIC KEY", &public),
    }
}

/// A random 1024-bit prime with its top two bits set (so the product of
/// two has exactly 2048 bits) and `e` invertible modulo `p - 1`.
fn rsa_prime(e: &BigUint) -> BigUint {
    let rng = SystemRandom::new();
    let small: Vec<u32> = (3..2000u32)
        .filter(|n| (2..*n).take_while(|d| d * d <= *n).all(|d| n % d != 0))
        .collect();
    loop {
        let mut bytes = [0u8; 128];
        rng.fill(&mut bytes).unwrap();
        bytes[0] |= 0xc0;
        bytes[127] |= 1;
        let p = BigUint::from_bytes_be(&bytes);
        if small.iter().any(|s| (&p % *s) == BigUint::ZERO) || (&p % e) == BigUint::from(1u8) {
            continue;
        }
        if miller_rabin(&p) {
            return p;
        }
    }
}

/// Miller-Rabin with the first 16 primes as witnesses: for random 1024-bit
/// candidates, the chance of a composite passing is far below 2^-64.
fn miller_rabin(n: &BigUint) -> bool {
    let one = BigUint::from(1u8);
    let two = BigUint::from(2u8);
    let n1 = n - &one;
    let s = n1.trailing_zeros().unwrap();
    let d = &n1 >> s;
    'witness: for a in [2u32, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37, 41, 43, 47, 53] {
        let mut x = BigUint::from(a).modpow(&d, n);
        if x == one || x == n1 {
            continue;
        }
        for _ in 1..s {
            x = x.modpow(&two, n);
            if x == n1 {
                continue 'witness;
            }
        }
        return false;
    }
    true
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
