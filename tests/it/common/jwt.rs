//! Independent checks of a token against what registry 2.8.2 requires (see the harness
//! findings): header (`alg`, libtrust `kid` or standard-base64 `x5c`), signature (raw R‖S for
//! ECDSA) by a key the bundle trusts, `iss`, string `aud`, integer `exp`/`nbf`/`iat`, and an
//! `access` list that never grants more than was requested.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use aws_lc_rs::signature::{self, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use x509_parser::prelude::*;

use super::keys::{libtrust_kid, pem_certs, spki_der};

#[derive(Debug, Clone)]
pub struct Jwt {
    pub header: Value,
    pub claims: Value,
    pub signing_input: String,
    pub signature: Vec<u8>,
}

fn b64url(s: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(s.trim_end_matches('='))
        .map_err(|e| format!("bad base64url {s:?}: {e}"))
}

pub fn decode(token: &str) -> Result<Jwt, String> {
    let parts: Vec<&str> = token.split('.').collect();
    let [h, c, s] = parts.as_slice() else {
        return Err(format!("not a 3-part compact JWS ({} parts)", parts.len()));
    };
    let header: Value =
        serde_json::from_slice(&b64url(h)?).map_err(|e| format!("header is not JSON: {e}"))?;
    let claims: Value =
        serde_json::from_slice(&b64url(c)?).map_err(|e| format!("claims are not JSON: {e}"))?;
    Ok(Jwt {
        header,
        claims,
        signing_input: format!("{h}.{c}"),
        signature: b64url(s)?,
    })
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)`, what Go's `time.RFC3339` parser accepts.
fn is_rfc3339(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|x| x.iter().all(u8::is_ascii_digit));
    if b.len() < 20
        || !digits(0..4)
        || b[4] != b'-'
        || !digits(5..7)
        || b[7] != b'-'
        || !digits(8..10)
        || !(b[10] == b'T' || b[10] == b't')
        || !digits(11..13)
        || b[13] != b':'
        || !digits(14..16)
        || b[16] != b':'
        || !digits(17..19)
    {
        return false;
    }
    let mut i = 19;
    if b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    match &b[i..] {
        [b'Z' | b'z'] => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => [h1, h2, m1, m2].iter().all(|c| c.is_ascii_digit()),
        _ => false,
    }
}

fn is_libtrust_kid(kid: &str) -> bool {
    let groups: Vec<&str> = kid.split(':').collect();
    groups.len() == 12
        && groups.iter().all(|g| {
            g.len() == 4
                && g.bytes()
                    .all(|b| b.is_ascii_uppercase() || (b'2'..=b'7').contains(&b))
        })
}

fn verification_alg(alg: &str) -> Option<&'static dyn VerificationAlgorithm> {
    Some(match alg {
        "RS256" => &signature::RSA_PKCS1_2048_8192_SHA256,
        "RS384" => &signature::RSA_PKCS1_2048_8192_SHA384,
        "RS512" => &signature::RSA_PKCS1_2048_8192_SHA512,
        "ES256" => &signature::ECDSA_P256_SHA256_FIXED,
        "ES384" => &signature::ECDSA_P384_SHA384_FIXED,
        "ES512" => &signature::ECDSA_P521_SHA512_FIXED,
        _ => return None,
    })
}

/// Verifies the JWS signature with the public key of a DER certificate.
fn verify_with_cert(jwt: &Jwt, alg: &str, cert_der: &[u8]) -> Result<(), String> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| e.to_string())?;
    let key_bits = cert.public_key().subject_public_key.data.to_vec();
    let va = verification_alg(alg).ok_or_else(|| format!("unsupported alg {alg}"))?;
    UnparsedPublicKey::new(va, key_bits)
        .verify(jwt.signing_input.as_bytes(), &jwt.signature)
        .map_err(|_| {
            format!(
                "signature does not verify with {alg} and the key of certificate {:?} \
                 (ECDSA must be raw R||S, not DER)",
                cert.subject().to_string()
            )
        })
}

/// The scopes a test asked for: (type, name) → actions.
pub fn requested(scopes: &[&str]) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut m: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for s in scopes {
        for part in s.split(' ').filter(|p| !p.is_empty()) {
            let (typ, rest) = part.split_once(':').expect("scope type");
            let (name, actions) = rest.rsplit_once(':').expect("scope actions");
            let typ = typ.split('(').next().unwrap_or(typ);
            m.entry((typ.to_owned(), name.to_owned()))
                .or_default()
                .extend(
                    actions
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(str::to_owned),
                );
        }
    }
    m
}

/// The `access` claim as (type, name) → actions (entries for one resource merged).
pub fn granted(claims: &Value) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut m: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for e in claims["access"].as_array().into_iter().flatten() {
        let key = (
            e["type"].as_str().unwrap_or_default().to_owned(),
            e["name"].as_str().unwrap_or_default().to_owned(),
        );
        let acts = m.entry(key).or_default();
        for a in e["actions"].as_array().into_iter().flatten() {
            acts.insert(a.as_str().unwrap_or_default().to_owned());
        }
    }
    m
}

/// Everything registry 2.8.2 would object to (empty = acceptable), plus "grants beyond the
/// request". `bundle` is the registry's `rootcertbundle`.
pub fn lint(
    response: &Value,
    token: &str,
    service: &str,
    issuer: &str,
    scopes: &[&str],
    bundle: &Path,
) -> Vec<String> {
    let mut problems = Vec::new();
    let tok_field = response.get("token").and_then(Value::as_str);
    let access_field = response.get("access_token").and_then(Value::as_str);
    if tok_field.is_none() && access_field.is_none() {
        problems.push("response has neither token nor access_token".to_owned());
    }
    if let (Some(a), Some(b)) = (tok_field, access_field)
        && a != b
    {
        problems.push("token != access_token".to_owned());
    }
    if let Some(e) = response.get("expires_in")
        && e.as_i64().is_none_or(|v| v < 60)
    {
        problems.push(format!("expires_in {e} should be an integer >= 60"));
    }
    if let Some(i) = response.get("issued_at") {
        let ok = i.as_str().is_some_and(is_rfc3339);
        if !ok {
            problems.push(format!("issued_at {i} is not RFC 3339"));
        }
    }
    if response.get("refresh_token").is_some() {
        problems.push("refresh_token returned although none was asked for".to_owned());
    }
    let jwt = match decode(token) {
        Ok(j) => j,
        Err(e) => {
            problems.push(e);
            return problems;
        }
    };
    let h = &jwt.header;
    let alg = h["alg"].as_str().unwrap_or_default().to_owned();
    if verification_alg(&alg).is_none() {
        problems.push(format!(
            "alg {:?} is not one of RS256/384/512 ES256/384/512",
            h["alg"]
        ));
        return problems;
    }
    let roots = pem_certs(bundle);
    if let Some(x5c) = h.get("x5c") {
        let chain: Result<Vec<Vec<u8>>, String> = match x5c.as_array() {
            None => Err("x5c is not an array".to_owned()),
            Some(entries) => entries
                .iter()
                .map(|c| {
                    STANDARD
                        .decode(c.as_str().unwrap_or_default())
                        .map_err(|e| format!("x5c entry is not standard base64 DER: {e}"))
                })
                .collect(),
        };
        match chain {
            Ok(chain) if !chain.is_empty() => {
                if let Err(e) = verify_with_cert(&jwt, &alg, &chain[0]) {
                    problems.push(format!("x5c leaf: {e}"));
                }
                if !chain_reaches_bundle(&chain, &roots) {
                    problems
                        .push("x5c chain does not lead to a certificate of the bundle".to_owned());
                }
            }
            Ok(_) => problems.push("x5c is empty".to_owned()),
            Err(e) => problems.push(e),
        }
    } else if let Some(kid) = h["kid"].as_str() {
        if !is_libtrust_kid(kid) {
            problems.push(format!("kid {kid:?} is not a libtrust key ID"));
        }
        match roots.iter().find(|r| libtrust_kid(&spki_der(r)) == kid) {
            Some(root) => {
                if let Err(e) = verify_with_cert(&jwt, &alg, root) {
                    problems.push(format!("kid {kid}: {e}"));
                }
            }
            None => problems.push(format!(
                "kid {kid} is the key ID of no certificate in {}",
                bundle.display()
            )),
        }
    } else {
        problems.push("header has neither kid nor x5c".to_owned());
    }
    let c = &jwt.claims;
    if c["iss"].as_str() != Some(issuer) {
        problems.push(format!("iss {} != {issuer:?}", c["iss"]));
    }
    match c["aud"].as_str() {
        Some(a) if a == service => {}
        Some(a) => problems.push(format!("aud {a:?} != service {service:?}")),
        None => problems.push(format!(
            "aud must be a JSON string (registry 2.8 rejects arrays), got {}",
            c["aud"]
        )),
    }
    for k in ["exp", "nbf", "iat"] {
        if let Some(v) = c.get(k)
            && !(v.is_i64() || v.is_u64())
        {
            problems.push(format!("{k} must be an integer, got {v}"));
        }
    }
    match c["exp"].as_i64() {
        None => problems.push("exp missing (registry reads it as 1970)".to_owned()),
        Some(e) if e <= now() => problems.push("token already expired".to_owned()),
        Some(_) => {}
    }
    if c["nbf"].as_i64().is_some_and(|n| n > now() + 60) {
        problems.push("nbf more than 60 s in the future".to_owned());
    }
    match c.get("access") {
        None | Some(Value::Null) => {}
        Some(Value::Array(entries)) => {
            for e in entries {
                if !e["type"].is_string() || !e["name"].is_string() || !e["actions"].is_array() {
                    problems.push(format!(
                        "bad access entry {e} (need type: str, name: str, actions: [str])"
                    ));
                }
            }
        }
        Some(other) => problems.push(format!("access must be a list, got {other}")),
    }
    let req = requested(scopes);
    for (res, acts) in granted(c) {
        match req.get(&res) {
            None if !acts.is_empty() => {
                problems.push(format!("granted unrequested resource {}:{}", res.0, res.1))
            }
            Some(r) if !acts.is_subset(r) => problems.push(format!(
                "granted {:?} beyond requested {:?} on {}:{}",
                acts, r, res.0, res.1
            )),
            _ => {}
        }
    }
    problems
}

fn chain_reaches_bundle(chain: &[Vec<u8>], roots: &[Vec<u8>]) -> bool {
    if chain.iter().any(|c| roots.contains(c)) {
        return true;
    }
    let Some(last) = chain.last() else {
        return false;
    };
    let Ok((_, last)) = X509Certificate::from_der(last) else {
        return false;
    };
    roots.iter().any(|r| {
        X509Certificate::from_der(r).is_ok_and(|(_, root)| root.subject() == last.issuer())
    })
}
