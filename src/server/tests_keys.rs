//! Router-level tests of the published keys: `/.well-known/jwks.json` and
//! `/rootcertbundle.pem`, per header mode, with extra certificates and a path prefix.

use std::fs;
use std::net::SocketAddr;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;
use tower::ServiceExt;

use super::{AppState, router};
use crate::config;
use crate::token::{self, GeneratedKey, KeyKind};

struct TestApp {
    app: Router,
    /// The signing certificate file's blocks (leaf first), then each extra file's.
    signing: Vec<Vec<u8>>,
    extras: Vec<Vec<Vec<u8>>>,
    _dir: tempfile::TempDir,
}

fn der_blocks(pem: &str) -> Vec<Vec<u8>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .map(|c| c.unwrap().as_ref().to_vec())
        .collect()
}

/// A server signing with an EC P-256 leaf issued by a CA (certificate file = leaf + CA), with
/// an RSA and an EC extra certificate.
fn app(signing_header: &str, prefix: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let ca = token::generate_ca(KeyKind::EcP256, "ca", 30).unwrap();
    let leaf = token::generate_signed_by(KeyKind::EcP256, "leaf", 30, &ca).unwrap();
    let chain = format!("{}{}", leaf.cert_pem, ca.cert_pem);
    fs::write(dir.path().join("cert.pem"), &chain).unwrap();
    fs::write(dir.path().join("key.pem"), &leaf.key_pem).unwrap();
    let extra: Vec<GeneratedKey> = [KeyKind::Rsa2048, KeyKind::EcP384]
        .into_iter()
        .map(|k| token::generate_self_signed(k, "extra", 30).unwrap())
        .collect();
    for (i, e) in extra.iter().enumerate() {
        fs::write(dir.path().join(format!("extra{i}.crt")), &e.cert_pem).unwrap();
    }
    let yaml = format!(
        r#"
server:
  path_prefix: "{prefix}"
token:
  issuer: "Test issuer"
  certificate: cert.pem
  key: key.pem
  signing_header: {signing_header}
  extra_certificates: [extra0.crt, extra1.crt]
users:
  "": {{}}
acl: []
"#
    );
    let path = dir.path().join("config.yml");
    fs::write(&path, yaml).unwrap();
    let config = config::load(&path).unwrap();
    let app = router(AppState::new(config).unwrap())
        .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    TestApp {
        app,
        signing: der_blocks(&chain),
        extras: extra.iter().map(|e| der_blocks(&e.cert_pem)).collect(),
        _dir: dir,
    }
}

async fn get(app: &TestApp, method: Method, uri: &str) -> (StatusCode, HeaderMap, Vec<u8>) {
    let resp = app
        .app
        .clone()
        .oneshot(
            Request::builder()
                .method(method)
                .uri(uri)
                .header("host", "registry-auth.test")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap().to_vec();
    (status, headers, body)
}

/// The header of a token issued by the app, decoded.
async fn token_header(app: &TestApp, prefix: &str) -> Value {
    let (status, _, body) = get(app, Method::GET, &format!("{prefix}/auth?service=reg")).await;
    assert_eq!(status, StatusCode::OK);
    let json: Value = serde_json::from_slice(&body).unwrap();
    let token = json["token"].as_str().unwrap();
    let header = token.split('.').next().unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap()
}

#[tokio::test]
async fn jwks_lists_every_published_key_with_the_kid_of_the_mode() {
    for mode in ["kid-libtrust", "kid-thumbprint", "x5c"] {
        let app = app(mode, "");
        let (status, headers, body) = get(&app, Method::GET, "/.well-known/jwks.json").await;
        assert_eq!(status, StatusCode::OK, "{mode}");
        assert_eq!(headers[header::CONTENT_TYPE], "application/jwk-set+json");
        assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
        let jwks: Value = serde_json::from_slice(&body).unwrap();
        let keys = jwks["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 3, "{mode}: {jwks}");

        let signing = token::PublishedKey::from_chain(app.signing.clone(), "signing").unwrap();
        let extra: Vec<token::PublishedKey> = app
            .extras
            .iter()
            .map(|c| token::PublishedKey::from_chain(c.clone(), "extra").unwrap())
            .collect();
        let (libtrust, thumbprint) = (signing.libtrust_kid(), signing.thumbprint());
        let expected_kid = if mode == "kid-libtrust" {
            libtrust
        } else {
            thumbprint
        };
        assert_eq!(keys[0]["kid"], expected_kid, "{mode}");
        assert_eq!(
            (
                &keys[0]["kty"],
                &keys[0]["crv"],
                &keys[0]["alg"],
                &keys[0]["use"]
            ),
            (
                &Value::from("EC"),
                &Value::from("P-256"),
                &Value::from("ES256"),
                &Value::from("sig")
            )
        );
        assert_eq!(keys[0]["x5c"].as_array().unwrap().len(), 2, "leaf + CA");
        assert_eq!(keys[1]["kty"], "RSA");
        assert_eq!(keys[1]["alg"], "RS256");
        assert!(keys[1]["n"].is_string() && keys[1]["e"] == "AQAB");
        assert_eq!(keys[2]["crv"], "P-384");
        for (jwk, key) in keys[1..].iter().zip(&extra) {
            let kid = if mode == "kid-libtrust" {
                key.libtrust_kid()
            } else {
                key.thumbprint()
            };
            assert_eq!(jwk["kid"], kid, "{mode}");
        }

        // The kid in tokens is the first JWK's (x5c mode sends no kid).
        let header = token_header(&app, "").await;
        match mode {
            "x5c" => assert!(header.get("kid").is_none(), "{header}"),
            _ => assert_eq!(header["kid"], keys[0]["kid"], "{mode}"),
        }
    }
}

#[tokio::test]
async fn root_bundle_holds_every_published_certificate() {
    let app = app("x5c", "");
    let (status, headers, body) = get(&app, Method::GET, "/rootcertbundle.pem").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "application/x-pem-file");
    assert_eq!(headers[header::CACHE_CONTROL], "public, max-age=300");
    let text = String::from_utf8(body).unwrap();
    let mut expected = app.signing.clone();
    for e in &app.extras {
        expected.extend(e.iter().cloned());
    }
    // Leaf, CA (needed by x5c with a CA-only trust), then the extras.
    assert_eq!(der_blocks(&text), expected);
    assert_eq!(expected.len(), 4);
}

#[tokio::test]
async fn documents_live_under_the_path_prefix_and_answer_head() {
    let app = app("kid-thumbprint", "/registry-auth");
    for uri in [
        "/registry-auth/.well-known/jwks.json",
        "/registry-auth/rootcertbundle.pem",
    ] {
        let (status, _, body) = get(&app, Method::GET, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert!(!body.is_empty());
        let (status, headers, body) = get(&app, Method::HEAD, uri).await;
        assert_eq!(status, StatusCode::OK, "HEAD {uri}");
        assert!(body.is_empty(), "HEAD {uri}");
        assert!(headers.contains_key(header::CONTENT_TYPE));
    }
    for uri in ["/.well-known/jwks.json", "/rootcertbundle.pem"] {
        let (status, _, _) = get(&app, Method::GET, uri).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri} outside the prefix");
    }
    let (status, _, _) = get(&app, Method::POST, "/registry-auth/rootcertbundle.pem").await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let header = token_header(&app, "/registry-auth").await;
    assert_eq!(header["kid"].as_str().map(str::len), Some(43), "{header}");
}
