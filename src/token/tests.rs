//! Tests for key loading, token signing and key generation (scope parsing is tested in
//! `scope.rs`). Every signature is verified independently with aws-lc-rs public-key verification.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::signature::{self, EcdsaKeyPair, UnparsedPublicKey, VerificationAlgorithm};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::Value;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::keygen::DEFAULT_VALIDITY_DAYS;
use super::*;

/// 2026-11-22T20:00:00Z.
const NOW_SECS: u64 = 1_795_377_600;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(NOW_SECS)
}

fn load(generated: &GeneratedKey) -> SigningKey {
    SigningKey::from_pem(generated.cert_pem.as_bytes(), generated.key_pem.as_bytes()).unwrap()
}

fn pem(label: &str, der: &[u8]) -> String {
    let b64 = STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

fn pkcs8_der(key_pem: &str) -> Vec<u8> {
    match PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap() {
        PrivateKeyDer::Pkcs8(k) => k.secret_pkcs8_der().to_vec(),
        other => panic!("expected PKCS#8, got {other:?}"),
    }
}

fn cert_der(cert_pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(cert_pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn grants() -> Vec<Grant> {
    vec![
        Grant {
            kind: "repository".into(),
            name: "alice/app".into(),
            actions: vec!["pull".into(), "push".into()],
        },
        Grant {
            kind: "repository".into(),
            name: "localhost:5000/secret".into(),
            actions: vec![],
        },
        Grant {
            kind: "registry".into(),
            name: "catalog".into(),
            actions: vec!["*".into()],
        },
    ]
}

struct Decoded {
    header: Value,
    claims: Value,
    claims_raw: String,
    signing_input: String,
    signature: Vec<u8>,
}

fn decode(token: &str) -> Decoded {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "JWS compact has three segments");
    for part in &parts {
        assert!(!part.contains('='), "no padding");
        assert!(
            !part.contains('+') && !part.contains('/'),
            "base64url alphabet"
        );
    }
    let header = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    let claims_raw = String::from_utf8(URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
    Decoded {
        header,
        claims: serde_json::from_str(&claims_raw).unwrap(),
        claims_raw,
        signing_input: format!("{}.{}", parts[0], parts[1]),
        signature: URL_SAFE_NO_PAD.decode(parts[2]).unwrap(),
    }
}

/// Verifies with the public key of the first certificate of `cert_pem`.
fn verify(cert_pem: &str, alg: &'static dyn VerificationAlgorithm, message: &[u8], sig: &[u8]) {
    let der = cert_der(cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    let public = cert.public_key().subject_public_key.data.as_ref();
    UnparsedPublicKey::new(alg, public)
        .verify(message, sig)
        .expect("signature verifies with the certificate's public key");
}

fn check_token(
    generated: &GeneratedKey,
    alg_name: &str,
    verification: &'static dyn VerificationAlgorithm,
    sig_len: usize,
) {
    let key = Arc::new(load(generated));
    assert_eq!(key.algorithm().as_str(), alg_name);
    let issuer = TokenIssuer::new(
        "Acme auth server".into(),
        Duration::from_secs(900),
        key.clone(),
        HeaderMode::KidLibtrust,
    );
    let issued = issuer
        .issue("alice", "Docker registry", &grants(), now())
        .unwrap();
    assert_eq!(issued.expires_in, 900);
    assert_eq!(issued.issued_at, "2026-11-22T20:00:00Z");

    let d = decode(&issued.token);
    assert_eq!(
        d.header,
        serde_json::json!({"typ": "JWT", "alg": alg_name, "kid": key.kid()})
    );
    assert_eq!(d.signature.len(), sig_len, "{alg_name} signature length");
    verify(
        &generated.cert_pem,
        verification,
        d.signing_input.as_bytes(),
        &d.signature,
    );

    let c = &d.claims;
    let obj = c.as_object().unwrap();
    let order = ["iss", "sub", "aud", "exp", "nbf", "iat", "jti", "access"];
    assert_eq!(obj.len(), order.len());
    let positions: Vec<usize> = order
        .iter()
        .map(|k| d.claims_raw.find(&format!("\"{k}\":")).unwrap())
        .collect();
    assert!(positions.is_sorted(), "claims in order: {}", d.claims_raw);
    assert_eq!(c["iss"], "Acme auth server");
    assert_eq!(c["sub"], "alice");
    assert!(c["aud"].is_string(), "aud must be a JSON string");
    assert_eq!(c["aud"], "Docker registry");
    for claim in ["exp", "nbf", "iat"] {
        assert!(
            c[claim].is_u64(),
            "{claim} must be an integer: {}",
            c[claim]
        );
    }
    let iat = c["iat"].as_u64().unwrap();
    let nbf = c["nbf"].as_u64().unwrap();
    let exp = c["exp"].as_u64().unwrap();
    assert_eq!(iat, NOW_SECS);
    assert!(nbf < iat);
    assert_eq!(nbf, iat - 5);
    assert_eq!(exp, iat + 900);
    let jti = c["jti"].as_str().unwrap();
    assert_eq!(URL_SAFE_NO_PAD.decode(jti).unwrap().len(), 16);
    assert_eq!(
        c["access"],
        serde_json::json!([
            {"type": "repository", "name": "alice/app", "actions": ["pull", "push"]},
            {"type": "repository", "name": "localhost:5000/secret", "actions": []},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ])
    );

    // A second token differs in jti (and signature) but not in the header.
    let second = issuer
        .issue("alice", "Docker registry", &grants(), now())
        .unwrap();
    let d2 = decode(&second.token);
    assert_ne!(d2.claims["jti"], c["jti"]);
    assert_eq!(d2.header, d.header);
    verify(
        &generated.cert_pem,
        verification,
        d2.signing_input.as_bytes(),
        &d2.signature,
    );
}

#[test]
fn es256_token_verifies() {
    let generated = generate_self_signed(KeyKind::EcP256, "token signer", 30).unwrap();
    check_token(&generated, "ES256", &signature::ECDSA_P256_SHA256_FIXED, 64);
}

#[test]
fn es384_token_verifies() {
    let generated = generate_self_signed(KeyKind::EcP384, "token signer", 30).unwrap();
    check_token(&generated, "ES384", &signature::ECDSA_P384_SHA384_FIXED, 96);
}

#[test]
fn es512_token_verifies() {
    // P-521 is not offered by KeyKind; build it with rcgen directly.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P521_SHA512).unwrap();
    let cert = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let generated = GeneratedKey {
        key_pem: key.serialize_pem(),
        cert_pem: cert.pem(),
    };
    check_token(
        &generated,
        "ES512",
        &signature::ECDSA_P521_SHA512_FIXED,
        132,
    );
}

#[test]
fn rs256_token_verifies() {
    let generated = generate_self_signed(KeyKind::Rsa2048, "token signer", 30).unwrap();
    check_token(
        &generated,
        "RS256",
        &signature::RSA_PKCS1_2048_8192_SHA256,
        256,
    );
}

#[test]
fn empty_access_is_an_empty_array() {
    let key = Arc::new(load(
        &generate_self_signed(KeyKind::EcP256, "t", 1).unwrap(),
    ));
    let issuer = TokenIssuer::new(
        "iss".into(),
        Duration::from_secs(60),
        key,
        HeaderMode::KidLibtrust,
    );
    let issued = issuer.issue("", "svc", &[], now()).unwrap();
    let d = decode(&issued.token);
    assert_eq!(d.claims["access"], serde_json::json!([]));
    assert_eq!(d.claims["sub"], "");
    assert_eq!(issued.expires_in, 60);
}

#[test]
fn claims_are_json_escaped() {
    let key = Arc::new(load(
        &generate_self_signed(KeyKind::EcP256, "t", 1).unwrap(),
    ));
    let issuer = TokenIssuer::new(
        "iss \"quoted\"".into(),
        Duration::from_secs(60),
        key,
        HeaderMode::X5c,
    );
    let issued = issuer.issue("a\"b\\c", "svc\n", &[], now()).unwrap();
    let d = decode(&issued.token);
    assert_eq!(d.claims["iss"], "iss \"quoted\"");
    assert_eq!(d.claims["sub"], "a\"b\\c");
    assert_eq!(d.claims["aud"], "svc\n");
}

#[test]
fn x5c_header_carries_the_chain_leaf_first() {
    let ca = generate_ca(KeyKind::EcP256, "Test CA", 365).unwrap();
    let leaf = generate_signed_by(KeyKind::EcP256, "token signer", 30, &ca).unwrap();
    let chain_pem = format!("{}{}", leaf.cert_pem, ca.cert_pem);
    let key =
        Arc::new(SigningKey::from_pem(chain_pem.as_bytes(), leaf.key_pem.as_bytes()).unwrap());
    assert_eq!(
        key.certificate_chain(),
        &[cert_der(&leaf.cert_pem), cert_der(&ca.cert_pem)]
    );

    let issuer = TokenIssuer::new(
        "iss".into(),
        Duration::from_secs(300),
        key.clone(),
        HeaderMode::X5c,
    );
    let d = decode(&issuer.issue("bob", "svc", &grants(), now()).unwrap().token);
    let header = d.header.as_object().unwrap();
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["alg"], "ES256");
    assert!(!header.contains_key("kid"));
    let x5c: Vec<Vec<u8>> = header["x5c"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            STANDARD
                .decode(v.as_str().unwrap())
                .expect("standard base64")
        })
        .collect();
    assert_eq!(x5c, key.certificate_chain());
    verify(
        &leaf.cert_pem,
        &signature::ECDSA_P256_SHA256_FIXED,
        d.signing_input.as_bytes(),
        &d.signature,
    );

    // The kid is that of the leaf, not of the CA.
    let (_, leaf_cert) = X509Certificate::from_der(&x5c[0]).unwrap();
    assert_eq!(key.kid(), libtrust_key_id(leaf_cert.public_key().raw));
}

#[test]
fn libtrust_kid_test_vector() {
    // distribution docs/spec/auth/jwt.md example key (PROTOCOL.md §2.1).
    let x = URL_SAFE_NO_PAD
        .decode("m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q")
        .unwrap();
    let y = URL_SAFE_NO_PAD
        .decode("dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc")
        .unwrap();
    let mut spki = vec![
        0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08,
        0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04,
    ];
    spki.extend_from_slice(&x);
    spki.extend_from_slice(&y);
    assert_eq!(
        libtrust_key_id(&spki),
        "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"
    );
}

#[test]
fn kid_is_libtrust_id_of_certificate_key() {
    for kind in [KeyKind::EcP256, KeyKind::Rsa2048] {
        let generated = generate_self_signed(kind, "t", 1).unwrap();
        let key = load(&generated);
        let der = cert_der(&generated.cert_pem);
        let (_, cert) = X509Certificate::from_der(&der).unwrap();
        assert_eq!(key.kid(), libtrust_key_id(cert.public_key().raw));
        assert_eq!(key.kid().len(), 59);
        assert_eq!(key.kid().matches(':').count(), 11);
        assert!(
            key.kid()
                .chars()
                .all(|c| c == ':' || c.is_ascii_uppercase() || ('2'..='7').contains(&c))
        );
    }
}

#[test]
fn not_after_is_leaf_validity_end() {
    let generated = generate_self_signed(KeyKind::EcP256, "t", 10).unwrap();
    let key = load(&generated);
    let expected = SystemTime::now() + Duration::from_secs(10 * 86_400);
    let diff = match key.not_after().duration_since(expected) {
        Ok(d) => d,
        Err(e) => e.duration(),
    };
    assert!(diff < Duration::from_secs(120), "not_after off by {diff:?}");
}

#[test]
fn sec1_and_pkcs1_keys_load() {
    // SEC1 "EC PRIVATE KEY", P-256 and P-384.
    for (kind, alg) in [
        (KeyKind::EcP256, &signature::ECDSA_P256_SHA256_FIXED_SIGNING),
        (KeyKind::EcP384, &signature::ECDSA_P384_SHA384_FIXED_SIGNING),
    ] {
        let generated = generate_self_signed(kind, "t", 1).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, &pkcs8_der(&generated.key_pem)).unwrap();
        let sec1 = pair.private_key().as_der().unwrap();
        let sec1_pem = pem("EC PRIVATE KEY", sec1.as_ref());
        let key = SigningKey::from_pem(generated.cert_pem.as_bytes(), sec1_pem.as_bytes()).unwrap();
        assert_eq!(key.kid(), load(&generated).kid());
        let sig = key.sign(b"message").unwrap();
        let verification: &'static dyn VerificationAlgorithm = match kind {
            KeyKind::EcP256 => &signature::ECDSA_P256_SHA256_FIXED,
            _ => &signature::ECDSA_P384_SHA384_FIXED,
        };
        verify(&generated.cert_pem, verification, b"message", &sig);
    }

    // PKCS#1 "RSA PRIVATE KEY": the privateKey OCTET STRING inside PKCS#8.
    let generated = generate_self_signed(KeyKind::Rsa2048, "t", 1).unwrap();
    let pkcs8 = pkcs8_der(&generated.key_pem);
    let (_, obj) = x509_parser::der_parser::parse_der(&pkcs8).unwrap();
    let seq = obj.as_sequence().unwrap();
    let pkcs1 = seq[2].as_slice().unwrap();
    let pkcs1_pem = pem("RSA PRIVATE KEY", pkcs1);
    let key = SigningKey::from_pem(generated.cert_pem.as_bytes(), pkcs1_pem.as_bytes()).unwrap();
    assert_eq!(key.algorithm(), Algorithm::Rs256);
    let sig = key.sign(b"message").unwrap();
    verify(
        &generated.cert_pem,
        &signature::RSA_PKCS1_2048_8192_SHA256,
        b"message",
        &sig,
    );
}

#[test]
fn key_not_matching_certificate() {
    let a = generate_self_signed(KeyKind::EcP256, "a", 1).unwrap();
    let b = generate_self_signed(KeyKind::EcP256, "b", 1).unwrap();
    let err = SigningKey::from_pem(a.cert_pem.as_bytes(), b.key_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, KeyError::KeyMismatch { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("does not belong to the certificate"),
        "{err}"
    );

    // Another curve.
    let p384 = generate_self_signed(KeyKind::EcP384, "c", 1).unwrap();
    let err = SigningKey::from_pem(a.cert_pem.as_bytes(), p384.key_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, KeyError::KeyMismatch { .. }), "{err:?}");
    assert!(err.to_string().contains("P-384"), "{err}");

    // Another key type.
    let rsa = generate_self_signed(KeyKind::Rsa2048, "d", 1).unwrap();
    let err = SigningKey::from_pem(rsa.cert_pem.as_bytes(), a.key_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, KeyError::KeyMismatch { .. }), "{err:?}");
    assert!(
        err.to_string()
            .contains("the certificate holds an RSA key but the private key is an ECDSA P-256 key"),
        "{err}"
    );
    let err = SigningKey::from_pem(a.cert_pem.as_bytes(), rsa.key_pem.as_bytes()).unwrap_err();
    assert!(err.to_string().contains("is an RSA key"), "{err}");

    // Another RSA key.
    let rsa2 = generate_self_signed(KeyKind::Rsa2048, "e", 1).unwrap();
    let err = SigningKey::from_pem(rsa.cert_pem.as_bytes(), rsa2.key_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, KeyError::KeyMismatch { .. }), "{err:?}");
}

#[test]
fn leaf_listed_after_ca_is_explained() {
    let ca = generate_ca(KeyKind::EcP256, "CA", 30).unwrap();
    let leaf = generate_signed_by(KeyKind::EcP256, "leaf", 30, &ca).unwrap();
    let wrong_order = format!("{}{}", ca.cert_pem, leaf.cert_pem);
    let err = SigningKey::from_pem(wrong_order.as_bytes(), leaf.key_pem.as_bytes()).unwrap_err();
    assert!(
        err.to_string().contains("matches certificate #2") && err.to_string().contains("first"),
        "{err}"
    );
}

#[test]
fn garbage_pem() {
    let good = generate_self_signed(KeyKind::EcP256, "a", 1).unwrap();

    let err = SigningKey::from_pem(b"garbage", good.key_pem.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::NoCertificate {
                looks_like_key: false,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string().contains("no PEM CERTIFICATE block"),
        "{err}"
    );

    let err = SigningKey::from_pem(good.cert_pem.as_bytes(), b"garbage").unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::NoPrivateKey {
                looks_like_cert: false,
                ..
            }
        ),
        "{err:?}"
    );

    let bad_b64 = "-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
    let err = SigningKey::from_pem(bad_b64.as_bytes(), good.key_pem.as_bytes()).unwrap_err();
    assert!(matches!(err, KeyError::Pem { .. }), "{err:?}");

    let not_x509 = pem("CERTIFICATE", b"\x30\x03\x02\x01\x01");
    let err = SigningKey::from_pem(not_x509.as_bytes(), good.key_pem.as_bytes()).unwrap_err();
    assert!(
        matches!(err, KeyError::Certificate { index: 1, .. }),
        "{err:?}"
    );

    let bad_key = pem("PRIVATE KEY", b"\x30\x03\x02\x01\x01");
    let err = SigningKey::from_pem(good.cert_pem.as_bytes(), bad_key.as_bytes()).unwrap_err();
    assert!(matches!(err, KeyError::InvalidKey { .. }), "{err:?}");

    // Swapped arguments are pointed out.
    let err = SigningKey::from_pem(good.key_pem.as_bytes(), good.cert_pem.as_bytes()).unwrap_err();
    assert!(
        matches!(
            err,
            KeyError::NoCertificate {
                looks_like_key: true,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("swapped"), "{err}");

    let encrypted =
        "-----BEGIN ENCRYPTED PRIVATE KEY-----\nMAA=\n-----END ENCRYPTED PRIVATE KEY-----\n";
    let err = SigningKey::from_pem(good.cert_pem.as_bytes(), encrypted.as_bytes()).unwrap_err();
    assert!(matches!(err, KeyError::EncryptedKey { .. }), "{err:?}");
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("signing.crt");
    let key = dir.path().join("signing.key");

    let err = SigningKey::load(&cert, &key).unwrap_err();
    assert!(matches!(err, KeyError::Read { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("certificate file") && msg.contains(&*cert.to_string_lossy()),
        "{msg}"
    );

    let a = generate_self_signed(KeyKind::EcP256, "a", 1).unwrap();
    std::fs::write(&cert, &a.cert_pem).unwrap();
    let msg = SigningKey::load(&cert, &key).unwrap_err().to_string();
    assert!(
        msg.contains("private key file") && msg.contains(&*key.to_string_lossy()),
        "{msg}"
    );

    let b = generate_self_signed(KeyKind::EcP256, "b", 1).unwrap();
    std::fs::write(&key, &b.key_pem).unwrap();
    let msg = SigningKey::load(&cert, &key).unwrap_err().to_string();
    assert!(
        msg.contains(&*cert.to_string_lossy()) && msg.contains(&*key.to_string_lossy()),
        "{msg}"
    );

    std::fs::write(&key, &a.key_pem).unwrap();
    let loaded = SigningKey::load(&cert, &key).unwrap();
    assert_eq!(loaded.kid(), load(&a).kid());
}

/// A certificate whose subject key is a 1024-bit RSA key, signed by an EC key.
struct SmallRsa(Vec<u8>);

impl rcgen::PublicKeyData for SmallRsa {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_RSA_SHA256
    }
}

#[test]
fn rsa_below_2048_bits_is_rejected() {
    // RSAPublicKey ::= SEQUENCE { modulus INTEGER (1024 bits), publicExponent 65537 }
    let mut der = vec![0x30, 0x81, 0x89, 0x02, 0x81, 0x81, 0x00, 0xc5];
    der.extend(std::iter::repeat_n(0x5a, 126));
    der.push(0x01);
    der.extend_from_slice(&[0x02, 0x03, 0x01, 0x00, 0x01]);
    let signer = rcgen::KeyPair::generate().unwrap();
    let issuer = rcgen::Issuer::new(rcgen::CertificateParams::default(), &signer);
    let cert = rcgen::CertificateParams::default()
        .signed_by(&SmallRsa(der), &issuer)
        .unwrap();
    let other = generate_self_signed(KeyKind::Rsa2048, "x", 1).unwrap();
    let err = SigningKey::from_pem(cert.pem().as_bytes(), other.key_pem.as_bytes()).unwrap_err();
    assert!(
        matches!(err, KeyError::RsaTooSmall { bits: 1024, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("at least 2048"), "{err}");
}

#[test]
fn ed25519_is_unsupported() {
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
    let cert = rcgen::CertificateParams::default()
        .self_signed(&key)
        .unwrap();
    let err =
        SigningKey::from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes()).unwrap_err();
    assert!(
        matches!(err, KeyError::UnsupportedKeyType { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("Ed25519"), "{err}");
}

#[test]
fn key_kind_from_str() {
    for (text, kind) in [
        ("ec-p256", KeyKind::EcP256),
        ("p256", KeyKind::EcP256),
        ("ec", KeyKind::EcP256),
        ("EC-P256", KeyKind::EcP256),
        ("ec-p384", KeyKind::EcP384),
        ("p384", KeyKind::EcP384),
        ("rsa", KeyKind::Rsa2048),
        ("rsa-2048", KeyKind::Rsa2048),
        ("rsa-3072", KeyKind::Rsa3072),
        ("rsa-4096", KeyKind::Rsa4096),
    ] {
        assert_eq!(text.parse::<KeyKind>().unwrap(), kind, "{text}");
    }
    for name in KeyKind::NAMES {
        assert_eq!(name.parse::<KeyKind>().unwrap().to_string(), name);
    }
    let err = "ed25519".parse::<KeyKind>().unwrap_err();
    assert!(matches!(err, KeyError::UnknownKeyKind { .. }));
    assert!(err.to_string().contains("\"ed25519\"") && err.to_string().contains("ec-p256"));
}

#[test]
fn generated_certificates_have_the_right_extensions() {
    let ca = generate_ca(KeyKind::EcP256, "Registry token CA", 365).unwrap();
    let ca_der = cert_der(&ca.cert_pem);
    let (_, ca_cert) = X509Certificate::from_der(&ca_der).unwrap();
    assert!(ca_cert.is_ca());
    let ku = ca_cert.key_usage().unwrap().unwrap().value;
    assert!(ku.key_cert_sign());
    assert_eq!(
        ca_cert
            .subject()
            .iter_common_name()
            .next()
            .unwrap()
            .as_str()
            .unwrap(),
        "Registry token CA"
    );

    let leaf = generate_signed_by(KeyKind::EcP256, "signer", 30, &ca).unwrap();
    assert!(leaf.key_pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    let leaf_der = cert_der(&leaf.cert_pem);
    let (_, leaf_cert) = X509Certificate::from_der(&leaf_der).unwrap();
    let bc = leaf_cert.basic_constraints().unwrap().unwrap().value;
    assert!(!bc.ca);
    assert_eq!(leaf_cert.issuer().as_raw(), ca_cert.subject().as_raw());
    let validity = leaf_cert.validity();
    let days = (validity.not_after.timestamp() - validity.not_before.timestamp()) / 86_400;
    assert_eq!(days, 30, "30 days plus the one-hour back-dating");

    // The CA really signed the leaf (ecdsa-with-SHA256, DER signature).
    UnparsedPublicKey::new(
        &signature::ECDSA_P256_SHA256_ASN1,
        ca_cert.public_key().subject_public_key.data.as_ref(),
    )
    .verify(
        leaf_cert.tbs_certificate.as_ref(),
        leaf_cert.signature_value.data.as_ref(),
    )
    .expect("leaf is signed by the CA");

    // The authority key identifier names the CA's subject key identifier.
    let ski = ca_cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::SubjectKeyIdentifier(id) => {
                Some(id.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    let aki = leaf_cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            x509_parser::extensions::ParsedExtension::AuthorityKeyIdentifier(aki) => {
                aki.key_identifier.as_ref().map(|id| id.0.to_vec())
            }
            _ => None,
        })
        .unwrap();
    assert_eq!(aki, ski);

    let self_signed = generate_self_signed(KeyKind::EcP384, "solo", 5).unwrap();
    let der = cert_der(&self_signed.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    assert!(!cert.is_ca());
    assert_eq!(cert.issuer().as_raw(), cert.subject().as_raw());

    // An RSA CA signing an EC leaf works too.
    let rsa_ca = generate_ca(KeyKind::Rsa2048, "RSA CA", 30).unwrap();
    let leaf = generate_signed_by(KeyKind::EcP256, "signer", 30, &rsa_ca).unwrap();
    let chain = format!("{}{}", leaf.cert_pem, rsa_ca.cert_pem);
    let key = SigningKey::from_pem(chain.as_bytes(), leaf.key_pem.as_bytes()).unwrap();
    assert_eq!(key.algorithm(), Algorithm::Es256);
    assert_eq!(key.certificate_chain().len(), 2);
}

#[test]
fn generation_argument_errors() {
    assert!(matches!(
        generate_self_signed(KeyKind::EcP256, "t", 0),
        Err(KeyError::InvalidArgument(_))
    ));
    assert!(generate_self_signed(KeyKind::EcP256, "t", u32::MAX).is_err());
    let not_ca = generate_self_signed(KeyKind::EcP256, "t", 1).unwrap();
    let err = generate_signed_by(KeyKind::EcP256, "leaf", 1, &not_ca).unwrap_err();
    assert!(err.to_string().contains("not a CA"), "{err}");
    let ca = generate_ca(KeyKind::EcP256, "CA", 1).unwrap();
    let mixed = GeneratedKey {
        key_pem: not_ca.key_pem,
        cert_pem: ca.cert_pem,
    };
    let err = generate_signed_by(KeyKind::EcP256, "leaf", 1, &mixed).unwrap_err();
    assert!(err.to_string().contains("does not belong"), "{err}");
}

#[test]
fn generated_key_debug_hides_the_private_key() {
    let generated = generate_self_signed(KeyKind::EcP256, "t", 1).unwrap();
    let debug = format!("{generated:?}");
    assert!(!debug.contains("PRIVATE KEY"));
    assert!(debug.contains("redacted"));
    let key_debug = format!("{:?}", load(&generated));
    assert!(key_debug.contains("Es256") && !key_debug.contains("PRIVATE"));
}

#[cfg(unix)]
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn ensure_generated_creates_once() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("keys/nested/token.key");
    let cert = dir.path().join("keys/nested/token.pem");

    assert!(ensure_generated(&key, &cert, "registry-auth").unwrap());
    #[cfg(unix)]
    {
        assert_eq!(mode(&key), 0o600);
        let cert_mode = mode(&cert);
        assert_eq!(cert_mode & !0o644, 0, "cert mode {cert_mode:o}");
        assert_eq!(cert_mode & 0o600, 0o600);
    }
    let first = SigningKey::load(&cert, &key).unwrap();
    assert_eq!(first.algorithm(), Algorithm::Es256);
    let days = first
        .not_after()
        .duration_since(SystemTime::now())
        .unwrap()
        .as_secs()
        / 86_400;
    assert!(days + 1 >= u64::from(DEFAULT_VALIDITY_DAYS));

    assert!(!ensure_generated(&key, &cert, "registry-auth").unwrap());
    let second = SigningKey::load(&cert, &key).unwrap();
    assert_eq!(first.kid(), second.kid());

    // No temporary files left behind.
    let mut names: Vec<String> = std::fs::read_dir(key.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["token.key", "token.pem"]);
}

#[test]
fn ensure_generated_refuses_half_a_pair() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("token.key");
    let cert = dir.path().join("token.pem");
    ensure_generated(&key, &cert, "x").unwrap();

    std::fs::remove_file(&cert).unwrap();
    let err = ensure_generated(&key, &cert, "x").unwrap_err();
    assert!(matches!(err, KeyError::IncompletePair { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "certificate file {} does not exist",
            cert.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("remove") && msg.contains("provide both"),
        "{msg}"
    );
    assert!(key.exists(), "the existing key is left alone");

    std::fs::remove_file(&key).unwrap();
    std::fs::write(&cert, "x").unwrap();
    let msg = ensure_generated(&key, &cert, "x").unwrap_err().to_string();
    assert!(
        msg.starts_with(&format!(
            "private key file {} does not exist",
            key.display()
        )),
        "{msg}"
    );
    assert!(msg.contains(&format!("remove {}", cert.display())), "{msg}");

    assert!(matches!(
        ensure_generated(&cert, &cert, "x"),
        Err(KeyError::InvalidArgument(_))
    ));
}

#[test]
fn shared_types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<SigningKey>();
    check::<TokenIssuer>();
    check::<Scope>();
    check::<KeyError>();
    check::<TokenError>();
}

#[test]
fn write_key_files_replaces_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("out/key.pem");
    let cert = dir.path().join("out/cert.pem");
    let first = generate_self_signed(KeyKind::EcP256, "one", 1).unwrap();
    write_key_files(&first, &key, &cert).unwrap();
    assert_eq!(
        SigningKey::load(&cert, &key).unwrap().kid(),
        load(&first).kid()
    );

    // Overwriting (gen-keys --force) replaces both files and tightens a loose key mode.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let second = generate_self_signed(KeyKind::Rsa2048, "two", 1).unwrap();
    write_key_files(&second, &key, &cert).unwrap();
    let loaded = SigningKey::load(&cert, &key).unwrap();
    assert_eq!(loaded.kid(), load(&second).kid());
    #[cfg(unix)]
    assert_eq!(mode(&key), 0o600);
    assert_eq!(
        std::fs::read_dir(dir.path().join("out")).unwrap().count(),
        2
    );

    assert!(matches!(
        write_key_files(&second, &key, &key),
        Err(KeyError::InvalidArgument(_))
    ));
}
