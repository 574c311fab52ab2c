//! Tests of key identification and publication: RFC 7638 thumbprints (known vectors), the
//! canonical SPKI, `kid-thumbprint` headers, generated EC keys without short coordinates, and
//! the JWK Set / certificate bundle of [`PublishedKeys`].
//!
//! The RSA, P-384 and short-coordinate vectors were computed once, independently, with Python's
//! `cryptography` package (SHA-256 over the canonical JSON / the DER SubjectPublicKeyInfo).

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::keygen::{KeyKind, ec_coordinates_are_full_length, generate_key_pair};
use super::*;

/// distribution `docs/spec/auth/jwt.md` example P-256 key (PROTOCOL.md §2.1).
const JWT_MD_X: &str = "m7zUpx3b-zmVE5cymSs64POG9QcyEpJaYCD82-549_Q";
const JWT_MD_Y: &str = "dU3biz8sZ_8GPB-odm8Wxz3lNDr1xcAQQPQaOcr1fmc";

/// A self-signed RSA 2048 certificate (Python `cryptography`).
const RSA_CERT: &str = "-----BEGIN CERTIFICATE-----
MIICpjCCAY6gAwIBAgICEJIwDQYJKoZIhvcNAQELBQAwFTETMBEGA1UEAwwKcnNh
IHZlY3RvcjAgFw0yNTAxMDEwMDAwMDBaGA8yMTI0MTIwODAwMDAwMFowFTETMBEG
A1UEAwwKcnNhIHZlY3RvcjCCASIwDQYJKoZIhvcNAQEBBQADggEPADCCAQoCggEB
AJ0rXF2iPjapGC7MK4erUiq7Y7aewjr+D36vdWww5oule/CLGuVgku1hHIf6DO60
WxDFQ05t5JZz2UaMXhgFDINX6j0XRgfmGjLjQGpMeBUwDKbLiXB9KWmX54mUpLd1
BvJYFJwv6RlH6wZ5Zg7Sj9b9poN3669GcaPmi1GcARVmUGohGBDUqN3pqvbHZSTv
On/dXJgcspZKR2FqxYys+JXMSYSKOQUyku4bu0HS2NuCJ2ynrgb5Mm/YTmM+E1KC
ScBFpbasJ/ItsDD8H8xyqM+NjLJKgpYBjo97irDGYmjHD7qE8yGZG7VXLAw4OdIw
Uy6eE1gcnKbdImV730Wlv0ECAwEAATANBgkqhkiG9w0BAQsFAAOCAQEAGLgmaELB
ukD36acLf7d0H7uGGneZDzQM1/V6wQ5rYxFk8KptahjjkvDRzPkXVyTvAwjorKvk
tV+E4DHdGkvmv297PYbDPfN7TN33jORrozvFN2+3uAv346iWRJ0YETKICsfRZXFO
HiI6MWGZYe/01GpEzP98BWTNHrdm0Q888RklPnSVzTcxIhaG6O+cv3tuzrJUJK01
NsAnPglRcylCMmkVWRSkS9Dbahr+B8gvG//1eEq6t9JvPWYM7hDd2LAQ0XuwiUvV
QDDsQo6GctbXKdHGVvTMcRZFWaLVle/8bmkOLq+RpBxszqXLst043R7Q9mt52bfs
FYj0FQ2S9VADRA==
-----END CERTIFICATE-----
";
const RSA_THUMBPRINT: &str = "_0OFRicne9QxQG06cZSxS4-hTbwT_sshmc5-A9yashE";
const RSA_LIBTRUST: &str = "A4HR:A4DM:RNXC:ZKV2:2YSV:B6GY:N4PT:LUMD:4L5S:X5OM:COLH:GJ6H";

/// A self-signed P-384 certificate (Python `cryptography`).
const P384_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBWDCB36ADAgECAgIQkjAKBggqhkjOPQQDAjAWMRQwEgYDVQQDDAtwMzg0IHZl
Y3RvcjAgFw0yNTAxMDEwMDAwMDBaGA8yMTI0MTIwODAwMDAwMFowFjEUMBIGA1UE
AwwLcDM4NCB2ZWN0b3IwdjAQBgcqhkjOPQIBBgUrgQQAIgNiAARAyii+rlZZtVg8
xg6FsK9A4DFKxmvBEbGEiKsdVooA7aSGThCGXZR3a/G3aRFZGUvtNsIltqnGeZ4k
OYbFRN30zf1AWW8iRc6vaJavS4ym7nhdhYhK3DH2srJ2XnqdP7AwCgYIKoZIzj0E
AwIDaAAwZQIwYuSVlJsGnq8o09NLA/Pt7bxo89qxxlCNDsHSCwIc19EZimzH+Ccb
NStSMm+5+J3LAjEAyRfJrFXX5U2M9M3Wdkdixx2V3hlv5/NmC979k7bvCRyWQLC2
YX/Lao1FJ2mDI3Hr
-----END CERTIFICATE-----
";
const P384_THUMBPRINT: &str = "PAZbVRDP6NUF8U6qItk4EDzOemghDc6yuMrWNW-77Zc";
const P384_LIBTRUST: &str = "RVIX:R6N5:MCP7:MHBU:GIAL:4DUD:XLTJ:FDXX:R5K3:XXU5:LDFJ:RYMY";
const P384_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEQMoovq5WWbVYPMYOhbCvQOAxSsZrwRGx
hIirHVaKAO2khk4Qhl2Ud2vxt2kRWRlL7TbCJbapxnmeJDmGxUTd9M39QFlvIkXO
r2iWr0uMpu54XYWIStwx9rKydl56nT+w
-----END PUBLIC KEY-----
";

/// A P-256 certificate whose key's `x` starts with a zero byte (Python `cryptography`).
const SHORT_X_CERT: &str = "-----BEGIN CERTIFICATE-----
MIIBEzCBuqADAgECAgIQkjAKBggqhkjOPQQDAjASMRAwDgYDVQQDDAdzaG9ydCB4
MCAXDTI1MDEwMTAwMDAwMFoYDzIxMjQxMjA4MDAwMDAwWjASMRAwDgYDVQQDDAdz
aG9ydCB4MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEALeT06wqAZFUZnyM5Zsh
kNTliuLKOZvy82hTtVtgYEnrKZ+8oFTjctROuUHy1knGtisb+X8JFlGsLdKf/ztK
pDAKBggqhkjOPQQDAgNIADBFAiAd/LQfd1n9PhRaV/ipBxpKojwzXSJJh9j05IoK
31cReAIhAIuwOJMcYYivaqIsOMusUPQwXKvMv7kFl7ihHK/zlGTm
-----END CERTIFICATE-----
";
/// RFC 7638 (full-length coordinates).
const SHORT_X_THUMBPRINT: &str = "P2eURs6z4so3zyOscI-CsV91DKpQsacMUv8dAU1Gwwc";
/// What distribution v3.1 computes (leading zero of `x` dropped): must differ.
const SHORT_X_UNPADDED_THUMBPRINT: &str = "r5LearXgCnXtMNgT_nckF3uv5F3wiPbMkD4CxfxqKHA";

fn jwt_md_key() -> JwkParams {
    let mut point = vec![0x04];
    point.extend(URL_SAFE_NO_PAD.decode(JWT_MD_X).unwrap());
    point.extend(URL_SAFE_NO_PAD.decode(JWT_MD_Y).unwrap());
    JwkParams::from_ec_point(Curve::P256, &point).unwrap()
}

fn cert_der(pem: &str) -> Vec<u8> {
    CertificateDer::from_pem_slice(pem.as_bytes())
        .unwrap()
        .as_ref()
        .to_vec()
}

fn spki_of(cert_pem: &str) -> Vec<u8> {
    let der = cert_der(cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.public_key().raw.to_vec()
}

fn signing_key(generated: &GeneratedKey) -> SigningKey {
    SigningKey::from_pem(generated.cert_pem.as_bytes(), generated.key_pem.as_bytes()).unwrap()
}

fn header_of(token: &str) -> Value {
    let segment = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

#[test]
fn jwt_md_example_key_thumbprint_and_libtrust_id() {
    let key = jwt_md_key();
    assert_eq!(
        key.thumbprint(),
        "8qjioA3ZA7ti2JIE7c-U8smBFuZolQZvhSHDPU3hhB8"
    );
    assert_eq!(
        libtrust_key_id(&key.spki_der()),
        "PYYO:TEWU:V7JH:26JV:AQTZ:LJC3:SXVJ:XGHA:34F2:2LAQ:ZRMK:Z7Q6"
    );
    // The SPKI prefix given in PROTOCOL.md §2.1.
    let spki = key.spki_der();
    assert_eq!(
        spki.get(..26).unwrap(),
        [
            0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06,
            0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00
        ]
    );
    assert_eq!(key.algorithm(), Algorithm::Es256);
    assert!(!key.has_short_coordinate());
}

#[test]
fn rsa_thumbprint_matches_independent_computation() {
    let key = PublishedKey::from_pem(RSA_CERT.as_bytes(), "rsa vector").unwrap();
    assert_eq!(key.thumbprint(), RSA_THUMBPRINT);
    assert_eq!(key.libtrust_kid(), RSA_LIBTRUST);
    assert_eq!(key.algorithm(), Algorithm::Rs256);
    // The certificate's SPKI is canonical; ours must be byte-identical.
    assert_eq!(key.params().spki_der(), spki_of(RSA_CERT));
    let JwkParams::Rsa { n, e } = key.params() else {
        panic!("not RSA: {:?}", key.params());
    };
    assert_eq!(n.len(), 256, "minimal modulus bytes (no leading zero)");
    assert_eq!(e, &[0x01, 0x00, 0x01]);
}

#[test]
fn p384_thumbprint_and_public_key_pem_match_independent_computation() {
    let key = PublishedKey::from_pem(P384_CERT.as_bytes(), "p384 vector").unwrap();
    assert_eq!(key.thumbprint(), P384_THUMBPRINT);
    assert_eq!(key.libtrust_kid(), P384_LIBTRUST);
    assert_eq!(key.algorithm(), Algorithm::Es384);
    assert_eq!(key.public_key_pem(), P384_PUBLIC_KEY);
    assert_eq!(key.params().spki_der(), spki_of(P384_CERT));
}

#[test]
fn short_ec_coordinate_keeps_full_length_and_is_flagged() {
    let key = PublishedKey::from_pem(SHORT_X_CERT.as_bytes(), "short x").unwrap();
    let JwkParams::Ec { x, y, .. } = key.params() else {
        panic!("not EC");
    };
    assert_eq!((x.len(), y.len()), (32, 32));
    assert_eq!(x.first(), Some(&0));
    assert!(key.params().has_short_coordinate());
    assert_eq!(key.thumbprint(), SHORT_X_THUMBPRINT);
    assert_ne!(key.thumbprint(), SHORT_X_UNPADDED_THUMBPRINT);
    assert_eq!(key.params().spki_der(), spki_of(SHORT_X_CERT));
}

#[test]
fn canonical_spki_equals_certificate_and_aws_lc_encoding_for_generated_keys() {
    for kind in [
        KeyKind::EcP256,
        KeyKind::EcP384,
        KeyKind::Rsa2048,
        KeyKind::Rsa3072,
    ] {
        let generated = generate_self_signed(kind, "t", 1).unwrap();
        let key = signing_key(&generated);
        let public = key.public_key();
        assert_eq!(public.params().spki_der(), spki_of(&generated.cert_pem));
        assert_eq!(public.libtrust_kid(), key.kid(), "{kind}");
        assert_eq!(public.thumbprint(), key.thumbprint(), "{kind}");
        assert_eq!(public.algorithm(), key.algorithm(), "{kind}");
        assert_eq!(public.certificate_chain(), key.certificate_chain());
        assert_eq!(key.thumbprint().len(), 43);
    }
}

#[test]
fn kid_per_header_mode() {
    let key = PublishedKey::from_pem(RSA_CERT.as_bytes(), "rsa vector").unwrap();
    assert_eq!(key.kid(HeaderMode::KidLibtrust), RSA_LIBTRUST);
    assert_eq!(key.kid(HeaderMode::KidThumbprint), RSA_THUMBPRINT);
    assert_eq!(key.kid(HeaderMode::X5c), RSA_THUMBPRINT);
}

#[test]
fn kid_thumbprint_header() {
    for kind in [KeyKind::EcP256, KeyKind::Rsa2048] {
        let key = Arc::new(signing_key(&generate_self_signed(kind, "t", 1).unwrap()));
        let issuer = TokenIssuer::new(
            "iss".into(),
            Duration::from_secs(300),
            key.clone(),
            HeaderMode::KidThumbprint,
        );
        let token = issuer
            .issue("alice", "svc", &[], SystemTime::now())
            .unwrap();
        let header = header_of(&token.token);
        assert_eq!(
            header,
            serde_json::json!({"typ": "JWT", "alg": key.algorithm().as_str(), "kid": key.thumbprint()})
        );
        assert_ne!(key.thumbprint(), key.kid());
    }
}

#[test]
fn ec_coordinate_check() {
    let point = |x0: u8, y0: u8, len: usize| {
        let mut p = vec![0x04; 1 + 2 * len];
        p[1] = x0;
        p[1 + len] = y0;
        p
    };
    assert!(ec_coordinates_are_full_length(&point(1, 1, 32)));
    assert!(ec_coordinates_are_full_length(&point(0x80, 0xff, 48)));
    assert!(!ec_coordinates_are_full_length(&point(0, 1, 32)));
    assert!(!ec_coordinates_are_full_length(&point(1, 0, 32)));
    assert!(!ec_coordinates_are_full_length(&point(0, 0, 48)));
    assert!(!ec_coordinates_are_full_length(&[0x02, 1, 2]));
    assert!(!ec_coordinates_are_full_length(&[0x04]));
    assert!(!ec_coordinates_are_full_length(&[]));
}

/// Without the redraw, 2000 P-256 keys contain one with a zero leading coordinate byte except
/// with probability (254/256)^2000 ≈ 2·10⁻⁷; likewise 1500 P-384 keys (≈ 8·10⁻⁶).
#[test]
fn generated_ec_keys_never_have_a_short_coordinate() {
    for (kind, draws) in [(KeyKind::EcP256, 2000), (KeyKind::EcP384, 1500)] {
        for _ in 0..draws {
            let key = generate_key_pair(kind).unwrap();
            let raw = key.public_key_raw();
            assert!(ec_coordinates_are_full_length(raw), "{kind}: {raw:02x?}");
        }
    }
    // And through the public generators.
    for kind in [KeyKind::EcP256, KeyKind::EcP384] {
        let ca = generate_ca(kind, "ca", 1).unwrap();
        let leaf = generate_signed_by(kind, "leaf", 1, &ca).unwrap();
        for g in [&ca, &leaf, &generate_self_signed(kind, "t", 1).unwrap()] {
            let key = PublishedKey::from_pem(g.cert_pem.as_bytes(), "generated").unwrap();
            assert!(!key.params().has_short_coordinate());
        }
    }
}

#[test]
fn extra_certificate_errors() {
    // Not PEM / no certificate.
    let err = PublishedKey::from_pem(b"hello", "extra #1").unwrap_err();
    assert!(err.to_string().contains("extra #1"), "{err}");
    let generated = generate_self_signed(KeyKind::EcP256, "t", 1).unwrap();
    let err = PublishedKey::from_pem(generated.key_pem.as_bytes(), "extra #2").unwrap_err();
    assert!(
        err.to_string()
            .contains("are the certificate and key paths swapped"),
        "{err}"
    );
    // A missing file names the file.
    let err = PublishedKey::load(std::path::Path::new("/nonexistent/next.crt")).unwrap_err();
    assert!(err.to_string().contains("/nonexistent/next.crt"), "{err}");
}

#[test]
fn published_keys_jwks_and_bundle() {
    let ca = generate_ca(KeyKind::EcP256, "ca", 1).unwrap();
    let leaf = generate_signed_by(KeyKind::EcP256, "leaf", 1, &ca).unwrap();
    let chain_pem = format!("{}{}", leaf.cert_pem, ca.cert_pem);
    let signing = SigningKey::from_pem(chain_pem.as_bytes(), leaf.key_pem.as_bytes()).unwrap();
    let rsa = PublishedKey::from_pem(RSA_CERT.as_bytes(), "rsa").unwrap();
    let p384 = PublishedKey::from_pem(P384_CERT.as_bytes(), "p384").unwrap();
    // The signing key listed again as an extra is published once.
    let again = PublishedKey::from_pem(chain_pem.as_bytes(), "again").unwrap();
    let published = PublishedKeys::new(&signing, &[rsa.clone(), again, p384.clone()]);
    assert_eq!(published.keys().len(), 3);
    assert_eq!(published.signing(), Some(signing.public_key()));

    for mode in [
        HeaderMode::KidLibtrust,
        HeaderMode::KidThumbprint,
        HeaderMode::X5c,
    ] {
        let jwks: Value = serde_json::from_str(&published.jwks_json(mode, false).unwrap()).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3);
        let first = &keys[0];
        let signing_kid = if mode == HeaderMode::KidLibtrust {
            signing.kid()
        } else {
            signing.thumbprint()
        };
        assert_eq!(first["kid"], signing_kid, "{mode:?}");
        assert_eq!(first["kty"], "EC");
        assert_eq!(first["crv"], "P-256");
        assert_eq!(first["use"], "sig");
        assert_eq!(first["alg"], "ES256");
        let JwkParams::Ec { x, y, .. } = signing.public_key().params() else {
            panic!("EC expected");
        };
        assert_eq!(first["x"], URL_SAFE_NO_PAD.encode(x));
        assert_eq!(first["y"], URL_SAFE_NO_PAD.encode(y));
        assert!(first.get("n").is_none() && first.get("e").is_none());
        let x5c: Vec<Vec<u8>> = first["x5c"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| STANDARD.decode(c.as_str().unwrap()).unwrap())
            .collect();
        assert_eq!(x5c, signing.certificate_chain());

        let second = &keys[1];
        assert_eq!(second["kty"], "RSA");
        assert_eq!(second["alg"], "RS256");
        assert_eq!(second["e"], "AQAB");
        assert_eq!(second["kid"], rsa.kid(mode));
        assert!(second.get("crv").is_none());
        assert_eq!(keys[2]["crv"], "P-384");
        assert_eq!(keys[2]["alg"], "ES384");
        assert_eq!(keys[2]["kid"], p384.kid(mode));
    }
    let pretty = published.jwks_json(HeaderMode::X5c, true).unwrap();
    assert!(pretty.ends_with("}\n") && pretty.contains("\n  "));

    // Bundle: leaf, CA, RSA, P-384, each once, in that order.
    let bundle = published.root_bundle_pem();
    let ders: Vec<Vec<u8>> = CertificateDer::pem_slice_iter(bundle.as_bytes())
        .map(|c| c.unwrap().as_ref().to_vec())
        .collect();
    assert_eq!(
        ders,
        vec![
            cert_der(&leaf.cert_pem),
            cert_der(&ca.cert_pem),
            cert_der(RSA_CERT),
            cert_der(P384_CERT),
        ]
    );
    assert!(bundle.lines().all(|l| l.len() <= 64));
}
