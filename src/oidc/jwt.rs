//! JWT (JWS compact) verification with aws-lc-rs: ID tokens of the web logins and CI tokens.
//!
//! Accepted algorithms: RS256/384/512, PS256/384/512, ES256, ES384 and EdDSA (Ed25519), from a
//! JWK of the matching type only; `none` and the HMAC algorithms are always refused (the key
//! set is public). Claims checked: `iss` (exact), `aud` (string or array containing ours),
//! `exp` (required), `nbf` and `iat` (not in the future), with a small clock leeway, and the
//! `nonce` when one is expected.

use aws_lc_rs::signature::{self, RsaParameters, UnparsedPublicKey};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Deserialize;
use serde_json::{Map, Value};
use subtle::ConstantTimeEq;

/// Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds.
pub const LEEWAY_SECS: u64 = 60;
/// Longest token accepted.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// One verification key of a JWK Set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jwk {
    /// `kid`, when the set names its keys.
    pub kid: Option<String>,
    /// `alg`, when the set pins one.
    pub alg: Option<String>,
    key: KeyMaterial,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyMaterial {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point.
    P256(Vec<u8>),
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

#[derive(Deserialize)]
struct RawJwk {
    kty: String,
    #[serde(default)]
    kid: Option<String>,
    #[serde(default)]
    alg: Option<String>,
    #[serde(default, rename = "use")]
    use_: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

#[derive(Deserialize)]
struct RawSet {
    keys: Vec<Value>,
}

/// Parses a JWK Set, keeping the signature keys we can use (others are skipped: an issuer may
/// publish encryption keys or algorithms we do not support next to the ones it signs with).
pub fn parse_jwks(body: &[u8]) -> Result<Vec<Jwk>, String> {
    let set: RawSet = serde_json::from_slice(body)
        .map_err(|e| format!("not a JWK Set ({{\"keys\": […]}}): {e}"))?;
    let mut keys = Vec::new();
    for raw in set.keys {
        let Ok(raw) = serde_json::from_value::<RawJwk>(raw) else {
            continue;
        };
        if raw.use_.as_deref().is_some_and(|u| u != "sig") {
            continue;
        }
        let b64 = |s: &Option<String>| s.as_deref().and_then(|v| URL_SAFE_NO_PAD.decode(v).ok());
        let key = match (raw.kty.as_str(), raw.crv.as_deref()) {
            ("RSA", _) => match (b64(&raw.n), b64(&raw.e)) {
                (Some(n), Some(e)) => KeyMaterial::Rsa { n, e },
                _ => continue,
            },
            ("EC", Some(crv @ ("P-256" | "P-384"))) => match (b64(&raw.x), b64(&raw.y)) {
                (Some(x), Some(y)) => {
                    let len = if crv == "P-256" { 32 } else { 48 };
                    if x.len() != len || y.len() != len {
                        continue;
                    }
                    let mut point = Vec::with_capacity(1 + 2 * len);
                    point.push(4);
                    point.extend_from_slice(&x);
                    point.extend_from_slice(&y);
                    if crv == "P-256" {
                        KeyMaterial::P256(point)
                    } else {
                        KeyMaterial::P384(point)
                    }
                }
                _ => continue,
            },
            ("OKP", Some("Ed25519")) => match b64(&raw.x) {
                Some(x) if x.len() == 32 => KeyMaterial::Ed25519(x),
                _ => continue,
            },
            _ => continue,
        };
        keys.push(Jwk {
            kid: raw.kid,
            alg: raw.alg,
            key,
        });
    }
    Ok(keys)
}

/// Why a token is not accepted (a 401; the reason goes to the log).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    /// Not a JWS compact token.
    #[error("not a JWT: {0}")]
    Malformed(&'static str),
    /// An algorithm we never accept.
    #[error("algorithm `{0}` is not accepted")]
    Algorithm(String),
    /// No key of the issuer matches the token's `kid`/algorithm.
    #[error("no key of the issuer matches the token (kid {0:?})")]
    UnknownKey(Option<String>),
    /// The signature does not verify.
    #[error("bad signature")]
    Signature,
    /// `iss` is not the expected issuer.
    #[error("issuer {0:?} is not the expected one")]
    Issuer(String),
    /// `aud` does not contain ours.
    #[error("audience does not include {0:?}")]
    Audience(String),
    /// Expired, or no `exp`.
    #[error("expired or without `exp`")]
    Expired,
    /// `nbf`/`iat` in the future.
    #[error("not valid yet (nbf/iat in the future)")]
    NotYetValid,
    /// The nonce does not match the one of this login.
    #[error("nonce mismatch")]
    Nonce,
}

/// The parts of a token before its signature is checked.
#[derive(Debug, Clone)]
pub struct Unverified {
    /// Header `alg`.
    pub alg: String,
    /// Header `kid`.
    pub kid: Option<String>,
    /// The claims (not trustworthy until [`Unverified::verify`] succeeded).
    pub claims: Map<String, Value>,
    signing_input: String,
    signature: Vec<u8>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// Splits and decodes a token (no verification yet).
pub fn decode(token: &str) -> Result<Unverified, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::Malformed("too long"));
    }
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts"));
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(h)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed("bad header"))?;
    let claims: Map<String, Value> = URL_SAFE_NO_PAD
        .decode(p)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(JwtError::Malformed("bad payload"))?;
    let signature = URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| JwtError::Malformed("bad signature encoding"))?;
    if !ACCEPTED.contains(&header.alg.as_str()) {
        return Err(JwtError::Algorithm(header.alg));
    }
    Ok(Unverified {
        alg: header.alg,
        kid: header.kid,
        claims,
        signing_input: format!("{h}.{p}"),
        signature,
    })
}

const ACCEPTED: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

fn rsa_params(alg: &str) -> Option<&'static RsaParameters> {
    Some(match alg {
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
        "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
        "PS256" => &signature::RSA_PSS_2048_8192_SHA256,
        "PS384" => &signature::RSA_PSS_2048_8192_SHA384,
        "PS512" => &signature::RSA_PSS_2048_8192_SHA512,
        _ => return None,
    })
}

impl Jwk {
    /// True when this key can check a token with `alg` (and `kid`, when both are named).
    pub fn fits(&self, alg: &str, kid: Option<&str>) -> bool {
        if let (Some(want), Some(have)) = (kid, self.kid.as_deref())
            && want != have
        {
            return false;
        }
        if self.alg.as_deref().is_some_and(|a| a != alg) {
            return false;
        }
        matches!(
            (&self.key, alg),
            (KeyMaterial::Rsa { .. }, a) if rsa_params(a).is_some()
        ) || matches!(
            (&self.key, alg),
            (KeyMaterial::P256(_), "ES256")
                | (KeyMaterial::P384(_), "ES384")
                | (KeyMaterial::Ed25519(_), "EdDSA")
        )
    }

    fn verify(&self, alg: &str, message: &[u8], sig: &[u8]) -> bool {
        match &self.key {
            KeyMaterial::Rsa { n, e } => rsa_params(alg).is_some_and(|params| {
                signature::RsaPublicKeyComponents { n, e }
                    .verify(params, message, sig)
                    .is_ok()
            }),
            KeyMaterial::P256(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            KeyMaterial::P384(point) => {
                UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                    .verify(message, sig)
                    .is_ok()
            }
            KeyMaterial::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, sig)
                .is_ok(),
        }
    }
}

/// What the claims must say.
#[derive(Debug, Clone, Copy)]
pub struct Expect<'a> {
    /// Exact `iss`.
    pub issuer: &'a str,
    /// Must be in `aud`.
    pub audience: &'a str,
    /// The nonce of this login (ID tokens of the web flow); `None` for CI tokens.
    pub nonce: Option<&'a str>,
    /// Now, in seconds since the Unix epoch.
    pub now: u64,
}

impl Unverified {
    /// Checks the signature with the first fitting key of `keys`.
    pub fn verify_signature(&self, keys: &[Jwk]) -> Result<(), JwtError> {
        let mut fitting = keys
            .iter()
            .filter(|k| k.fits(&self.alg, self.kid.as_deref()))
            .peekable();
        if fitting.peek().is_none() {
            return Err(JwtError::UnknownKey(self.kid.clone()));
        }
        if fitting.any(|k| k.verify(&self.alg, self.signing_input.as_bytes(), &self.signature)) {
            Ok(())
        } else {
            Err(JwtError::Signature)
        }
    }

    /// True when some key of `keys` could check this token.
    pub fn has_key_in(&self, keys: &[Jwk]) -> bool {
        keys.iter().any(|k| k.fits(&self.alg, self.kid.as_deref()))
    }

    /// Checks the claims (after the signature).
    pub fn check_claims(&self, expect: &Expect<'_>) -> Result<(), JwtError> {
        let c = &self.claims;
        let iss = c.get("iss").and_then(Value::as_str).unwrap_or_default();
        if iss != expect.issuer {
            return Err(JwtError::Issuer(iss.to_owned()));
        }
        let aud_ok = match c.get("aud") {
            Some(Value::String(a)) => a == expect.audience,
            Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(expect.audience)),
            _ => false,
        };
        if !aud_ok {
            return Err(JwtError::Audience(expect.audience.to_owned()));
        }
        let num = |k: &str| c.get(k).and_then(Value::as_f64).map(|v| v.max(0.0) as u64);
        match num("exp") {
            Some(exp) if exp.saturating_add(LEEWAY_SECS) > expect.now => {}
            _ => return Err(JwtError::Expired),
        }
        for k in ["nbf", "iat"] {
            if num(k).is_some_and(|t| t > expect.now.saturating_add(LEEWAY_SECS)) {
                return Err(JwtError::NotYetValid);
            }
        }
        if let Some(want) = expect.nonce {
            let got = c.get("nonce").and_then(Value::as_str).unwrap_or_default();
            if !bool::from(got.as_bytes().ct_eq(want.as_bytes())) {
                return Err(JwtError::Nonce);
            }
        }
        Ok(())
    }

    /// A string claim.
    pub fn str_claim(&self, name: &str) -> Option<&str> {
        self.claims.get(name).and_then(Value::as_str)
    }
}

/// The values of a claim for labels: a string, or the strings of an array (numbers and
/// booleans as text); anything else gives nothing.
pub fn claim_values(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    let one = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match claims.get(name) {
        Some(Value::Array(items)) => items.iter().filter_map(one).collect(),
        Some(v) => one(v).into_iter().collect(),
        None => Vec::new(),
    }
}

#[cfg(test)]
pub(crate) mod test_keys {
    //! Signing helpers for tests (ES256 keys made with aws-lc-rs).
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use serde_json::{Value, json};

    /// An ES256 key with its JWK.
    pub struct TestKey {
        pair: EcdsaKeyPair,
        pub kid: String,
    }

    impl TestKey {
        pub fn new(kid: &str) -> Self {
            let rng = SystemRandom::new();
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref()).unwrap();
            Self {
                pair,
                kid: kid.to_owned(),
            }
        }

        pub fn jwk(&self) -> Value {
            let point = self.pair.public_key().as_ref();
            json!({
                "kty": "EC", "crv": "P-256", "kid": self.kid, "use": "sig", "alg": "ES256",
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            })
        }

        pub fn sign(&self, claims: &Value) -> String {
            let header = json!({"alg": "ES256", "typ": "JWT", "kid": self.kid});
            let input = format!(
                "{}.{}",
                URL_SAFE_NO_PAD.encode(header.to_string()),
                URL_SAFE_NO_PAD.encode(claims.to_string())
            );
            let sig = self
                .pair
                .sign(&SystemRandom::new(), input.as_bytes())
                .unwrap();
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::test_keys::TestKey;
    use super::*;

    fn expect(now: u64) -> Expect<'static> {
        Expect {
            issuer: "https://issuer.test",
            audience: "registry",
            nonce: Some("n-1"),
            now,
        }
    }

    fn claims(now: u64) -> Value {
        json!({"iss": "https://issuer.test", "aud": ["other", "registry"], "exp": now + 300,
               "iat": now, "nonce": "n-1", "sub": "alice", "groups": ["a", "b"]})
    }

    #[test]
    fn a_good_token_verifies_and_every_claim_is_checked() {
        let key = TestKey::new("k1");
        let keys = parse_jwks(json!({"keys": [key.jwk()]}).to_string().as_bytes()).unwrap();
        let now = 1_800_000_000;
        let t = decode(&key.sign(&claims(now))).unwrap();
        t.verify_signature(&keys).unwrap();
        t.check_claims(&expect(now)).unwrap();
        assert_eq!(claim_values(&t.claims, "groups"), ["a", "b"]);
        assert_eq!(claim_values(&t.claims, "sub"), ["alice"]);

        let mut c = claims(now);
        c["aud"] = json!("someone-else");
        let t = decode(&key.sign(&c)).unwrap();
        assert!(matches!(
            t.check_claims(&expect(now)),
            Err(JwtError::Audience(_))
        ));
        let mut c = claims(now);
        c["nonce"] = json!("n-2");
        let t = decode(&key.sign(&c)).unwrap();
        assert_eq!(t.check_claims(&expect(now)), Err(JwtError::Nonce));
        let mut c = claims(now);
        c["iss"] = json!("https://evil.test");
        let t = decode(&key.sign(&c)).unwrap();
        assert!(matches!(
            t.check_claims(&expect(now)),
            Err(JwtError::Issuer(_))
        ));
        let t = decode(&key.sign(&claims(now - 1000))).unwrap();
        assert_eq!(t.check_claims(&expect(now)), Err(JwtError::Expired));
        let t = decode(&key.sign(&claims(now + 1000))).unwrap();
        assert_eq!(t.check_claims(&expect(now)), Err(JwtError::NotYetValid));
    }

    #[test]
    fn signatures_from_other_keys_and_tampered_payloads_fail() {
        let key = TestKey::new("k1");
        let evil = TestKey::new("k1");
        let keys = parse_jwks(json!({"keys": [key.jwk()]}).to_string().as_bytes()).unwrap();
        let now = 1_800_000_000;
        let forged = decode(&evil.sign(&claims(now))).unwrap();
        assert_eq!(forged.verify_signature(&keys), Err(JwtError::Signature));
        let good = key.sign(&claims(now));
        let mut parts: Vec<&str> = good.split('.').collect();
        let mut c = claims(now);
        c["sub"] = json!("admin");
        let payload = URL_SAFE_NO_PAD.encode(c.to_string());
        parts[1] = &payload;
        let tampered = decode(&parts.join(".")).unwrap();
        assert_eq!(tampered.verify_signature(&keys), Err(JwtError::Signature));
        let other_kid = TestKey::new("k2");
        let t = decode(&other_kid.sign(&claims(now))).unwrap();
        assert!(matches!(
            t.verify_signature(&keys),
            Err(JwtError::UnknownKey(_))
        ));
    }

    #[test]
    fn none_and_hmac_are_refused() {
        for alg in ["none", "HS256"] {
            let h = URL_SAFE_NO_PAD.encode(json!({"alg": alg}).to_string());
            let p = URL_SAFE_NO_PAD.encode("{}");
            assert!(matches!(
                decode(&format!("{h}.{p}.")),
                Err(JwtError::Algorithm(_))
            ));
        }
        assert!(decode("a.b").is_err());
    }

    #[test]
    fn jwks_skips_what_it_cannot_use() {
        let set = json!({"keys": [
            {"kty": "RSA", "use": "enc", "n": "AQAB", "e": "AQAB"},
            {"kty": "oct", "k": "c2VjcmV0"},
            {"kty": "EC", "crv": "P-521", "x": "AA", "y": "AA"},
            {"kty": "RSA", "kid": "r", "n": "AQAB", "e": "AQAB"},
        ]});
        let keys = parse_jwks(set.to_string().as_bytes()).unwrap();
        assert_eq!(keys.len(), 1);
        assert_eq!(keys[0].kid.as_deref(), Some("r"));
        assert!(keys[0].fits("RS256", Some("r")));
        assert!(!keys[0].fits("ES256", Some("r")));
        assert!(parse_jwks(b"[]").is_err());
    }
}
