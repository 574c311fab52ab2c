//! Router-level tests: the whole app without sockets (`oneshot`), with a real signing key.

use std::net::SocketAddr;
use std::path::Path;

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Method, Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::Value;
use tower::ServiceExt;

use super::{AppState, router};
use crate::config;
use crate::token::{self, KeyKind};

struct TestApp {
    app: Router,
    _dir: tempfile::TempDir,
}

fn app_with(extra_token: &str, prefix: &str) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("refresh.secret"),
        "a-test-refresh-secret-of-enough-length-0123456789",
    )
    .unwrap();
    let key = token::generate_self_signed(KeyKind::EcP256, "test", 30).unwrap();
    token::write_key_files(
        &key,
        &dir.path().join("key.pem"),
        &dir.path().join("cert.pem"),
    )
    .unwrap();
    let alice = bcrypt::hash("alicepass", 4).unwrap();
    let reader = bcrypt::hash("readerpass", 4).unwrap();
    let yaml = format!(
        r#"
server:
  path_prefix: "{prefix}"
token:
  issuer: "Test issuer"
  expiration: 300
  certificate: cert.pem
  key: key.pem
{extra_token}
users:
  "": {{}}
  alice: {{password: "{alice}", labels: {{team: [dev]}}}}
  reader: {{password: "{reader}"}}
acl:
  - match: {{account: alice, name: "alice/**"}}
    actions: [pull, push]
  - match: {{account: "/.+/", type: registry, name: catalog}}
    actions: ["*"]
    comment: catalog for logged-in users
  - match: {{account: reader}}
    actions: [pull]
  - match: {{account: "", name: "public/*"}}
    actions: [pull]
"#
    );
    let path = dir.path().join("config.yml");
    std::fs::write(&path, &yaml).unwrap();
    let config = config::load(&path).unwrap();
    let app = router(AppState::new(config).unwrap())
        .layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    TestApp { app, _dir: dir }
}

fn app() -> TestApp {
    app_with("", "")
}

/// The app with refresh tokens on (the secret file lives next to the config).
fn app_refresh() -> TestApp {
    app_with(
        "  refresh:\n    enabled: true\n    secret_file: refresh.secret\n    lifetime: 1h",
        "",
    )
}

async fn post_form(app: &TestApp, uri: &str, content_type: &str, body: Vec<u8>) -> Reply {
    let req = Request::builder()
        .method(Method::POST)
        .uri(uri)
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, content_type)
        .body(Body::from(body))
        .unwrap();
    let resp = app.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        json,
    }
}

const FORM: &str = "application/x-www-form-urlencoded";

/// The `Host` of every test request (HTTP/1.1 requires one).
const HOST: &str = "registry-auth.test";

async fn post(app: &TestApp, body: &str) -> Reply {
    post_form(app, "/auth", FORM, body.as_bytes().to_vec()).await
}

struct Reply {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    json: Value,
}

async fn send(app: &TestApp, method: Method, uri: &str, auth: Option<&str>) -> Reply {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::HOST, HOST);
    if let Some(a) = auth {
        req = req.header(header::AUTHORIZATION, a);
    }
    let resp = app
        .app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        json,
    }
}

fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn claims(reply: &Reply) -> Value {
    let token = reply.json["token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap()
}

#[tokio::test]
async fn anonymous_pull_of_public_namespace_is_granted() {
    let app = app();
    let r = send(
        &app,
        Method::GET,
        "/auth?service=reg&scope=repository:public/base:pull",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["token"], r.json["access_token"]);
    assert_eq!(r.json["expires_in"], 300);
    let issued_at = r.json["issued_at"].as_str().unwrap();
    assert!(
        issued_at.ends_with('Z') && issued_at.contains('T'),
        "{issued_at}"
    );
    assert!(r.json.get("refresh_token").is_none());
    assert_eq!(r.headers[header::CACHE_CONTROL], "no-store");
    let c = claims(&r);
    assert_eq!(c["iss"], "Test issuer");
    assert_eq!(c["sub"], "");
    assert_eq!(c["aud"], "reg");
    assert_eq!(
        c["access"],
        serde_json::json!([{"type": "repository", "name": "public/base", "actions": ["pull"]}])
    );
}

#[tokio::test]
async fn denied_scope_is_200_with_empty_actions() {
    let app = app();
    let r = send(
        &app,
        Method::GET,
        "/auth?service=reg&scope=repository:alice/app:pull&scope=repository:public/x:push",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        claims(&r)["access"],
        serde_json::json!([
            {"type": "repository", "name": "alice/app", "actions": []},
            {"type": "repository", "name": "public/x", "actions": []}
        ])
    );
}

#[tokio::test]
async fn user_gets_the_granted_subset_and_duplicates_are_merged() {
    let app = app();
    let r = send(
        &app,
        Method::GET,
        "/auth?service=reg&account=alice&scope=repository:alice/team/app:pull\
         &scope=repository:alice/team/app:pull,push,delete&scope=registry:catalog:*",
        Some(&basic("alice", "alicepass")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let c = claims(&r);
    assert_eq!(c["sub"], "alice");
    assert_eq!(
        c["access"],
        serde_json::json!([
            {"type": "repository", "name": "alice/team/app", "actions": ["pull", "push"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]}
        ])
    );
}

#[tokio::test]
async fn login_without_scope_gets_a_token_with_no_access() {
    let app = app();
    let r = send(
        &app,
        Method::GET,
        "/auth?account=reader&client_id=docker&offline_token=true&service=reg",
        Some(&basic("reader", "readerpass")),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(claims(&r)["access"], serde_json::json!([]));
    assert!(
        r.json.get("refresh_token").is_none(),
        "no refresh token before OAuth2 POST works"
    );
}

#[tokio::test]
async fn bad_credentials_all_look_the_same() {
    let app = app();
    let uri = "/auth?service=reg&scope=repository:alice/app:pull";
    let mut replies = Vec::new();
    for auth in [
        basic("alice", "wrong"),
        basic("mallory", "alicepass"),
        basic("alice", ""),
        basic("", "alicepass"),
    ] {
        replies.push(send(&app, Method::GET, uri, Some(&auth)).await);
    }
    for r in &replies {
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert_eq!(
            r.headers[header::WWW_AUTHENTICATE],
            "Basic realm=\"Test issuer\""
        );
        assert_eq!(r.json, replies[0].json);
    }
    assert_eq!(replies[0].json["errors"][0]["code"], "UNAUTHORIZED");
}

#[tokio::test]
async fn empty_basic_credentials_are_anonymous() {
    let app = app();
    let r = send(
        &app,
        Method::GET,
        "/auth?service=reg&scope=repository:public/a:pull",
        Some("Basic Og=="),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(
        claims(&r)["access"][0]["actions"],
        serde_json::json!(["pull"])
    );
}

#[tokio::test]
async fn malformed_requests_are_400_with_a_reason() {
    let app = app();
    for (uri, auth, needle) in [
        ("/auth?service=reg&scope=nonsense", None, "nonsense"),
        (
            "/auth?service=reg&scope=repository::pull",
            None,
            "repository::pull",
        ),
        ("/auth?scope=repository:a:pull", None, "service"),
        ("/auth?service=&scope=repository:a:pull", None, "service"),
        ("/auth?service=a&service=b", None, "service"),
        (
            "/auth?service=reg&account=bob",
            Some(basic("alice", "alicepass")),
            "account",
        ),
        ("/auth?service=reg", Some("Bearer abc".to_owned()), "scheme"),
        ("/auth?service=reg", Some("Basic %%%".to_owned()), "base64"),
    ] {
        let r = send(&app, Method::GET, uri, auth.as_deref()).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}");
        let message = r.json["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{uri}: {message}");
    }
}

#[tokio::test]
async fn allowed_services_restricts_the_audience() {
    let app = app_with("  allowed_services: [reg]", "");
    let ok = send(&app, Method::GET, "/auth?service=reg", None).await;
    assert_eq!(ok.status, StatusCode::OK);
    let other = send(&app, Method::GET, "/auth?service=other", None).await;
    assert_eq!(other.status, StatusCode::BAD_REQUEST);
    assert!(
        other.json["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("other")
    );
}

#[tokio::test]
async fn aliases_prefix_post_and_unknown_routes() {
    let app = app_with("", "/registry-auth/");
    for uri in [
        "/registry-auth/auth?service=reg",
        "/registry-auth/auth/token?service=reg",
        "/registry-auth/auth/token/?service=reg",
    ] {
        assert_eq!(
            send(&app, Method::GET, uri, None).await.status,
            StatusCode::OK,
            "{uri}"
        );
    }
    assert_eq!(
        send(&app, Method::GET, "/auth?service=reg", None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    let put = send(&app, Method::PUT, "/registry-auth/auth", None).await;
    assert_eq!(put.status, StatusCode::METHOD_NOT_ALLOWED);
}

#[tokio::test]
async fn responses_carry_a_request_id() {
    let app = app();
    let r = send(&app, Method::GET, "/auth?service=reg", None).await;
    assert!(r.headers.contains_key("x-request-id"));
}

#[test]
fn a_client_request_id_is_moved_aside_and_bounded() {
    use axum::http::HeaderValue;
    let take = |values: &[&[u8]]| {
        let mut req = axum::http::Request::new(axum::body::Body::empty());
        for v in values {
            req.headers_mut()
                .append("x-request-id", HeaderValue::from_bytes(v).unwrap());
        }
        let req = super::take_client_request_id(req);
        assert!(req.headers().get("x-request-id").is_none());
        req.extensions()
            .get::<super::ClientRequestId>()
            .map(|c| c.0.to_string())
    };
    assert_eq!(take(&[b"abc-123", b"second"]).as_deref(), Some("abc-123"));
    assert_eq!(take(&[b"a\tb\xffc"]).as_deref(), Some("a?b?c"));
    let long = take(&[&[b'x'; 500]]).unwrap();
    assert_eq!(long, format!("{}…", "x".repeat(64)));
    assert_eq!(take(&[b"  "]), None);
    assert_eq!(take(&[]), None);
}

#[test]
fn state_needs_a_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = "token: {issuer: x, certificate: c.pem, key: k.pem, generate: true}\n\
                users: {\"\": {}}\nacl: []\n";
    let path = dir.path().join("c.yml");
    std::fs::write(&path, yaml).unwrap();
    let config = config::load(Path::new(&path)).unwrap();
    assert!(config.token.signing_key.is_none());
    assert!(AppState::new(config).is_err());
}

#[tokio::test]
async fn oauth_password_grant_returns_granted_scope() {
    let app = app_refresh();
    let r = post(
        &app,
        "grant_type=password&username=alice&password=alicepass&service=reg&client_id=test\
         &scope=repository:alice/app:pull,push,delete+repository:bob/app:pull",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["token"], r.json["access_token"]);
    assert_eq!(r.json["scope"], "repository:alice/app:pull,push");
    assert_eq!(r.json["expires_in"], 300);
    assert!(r.json["issued_at"].is_string());
    assert!(
        r.json.get("refresh_token").is_none(),
        "no offline access asked"
    );
    assert_eq!(claims(&r)["sub"], "alice");
}

#[tokio::test]
async fn oauth_offline_password_grant_then_refresh_grant() {
    let app = app_refresh();
    let r = post(
        &app,
        "grant_type=password&username=alice&password=alicepass&service=reg&client_id=docker\
         &access_type=offline",
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    let refresh = r.json["refresh_token"].as_str().unwrap().to_owned();
    // podman sends repeated scope fields; docker a space-separated list.
    let body = format!(
        "grant_type=refresh_token&refresh_token={refresh}&service=reg&client_id=containers%2Fimage\
         &scope=repository:alice/app:pull&scope=repository:alice/app:push"
    );
    let r = post(&app, &body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(r.json["scope"], "repository:alice/app:pull,push");
    assert_eq!(
        claims(&r)["access"],
        serde_json::json!([{"type": "repository", "name": "alice/app", "actions": ["pull", "push"]}])
    );
    assert!(r.json.get("refresh_token").is_none());
    // access_type=offline on a refresh grant returns the same refresh token.
    let r = post(&app, &format!("{body}&access_type=offline")).await;
    assert_eq!(r.json["refresh_token"], refresh.as_str());
    // Another service: refused.
    let r = post(
        &app,
        &format!("grant_type=refresh_token&refresh_token={refresh}&service=other&client_id=x"),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert_eq!(r.json["error"], "invalid_grant");
}

#[tokio::test]
async fn get_returns_a_refresh_token_only_with_offline_token() {
    let refreshing = app_refresh();
    let app = &refreshing;
    let auth = basic("alice", "alicepass");
    let plain = send(
        app,
        Method::GET,
        "/auth?service=reg&account=alice",
        Some(&auth),
    )
    .await;
    assert_eq!(plain.status, StatusCode::OK);
    assert!(plain.json.get("refresh_token").is_none());
    let offline = send(
        app,
        Method::GET,
        "/auth?service=reg&account=alice&client_id=docker&offline_token=true",
        Some(&auth),
    )
    .await;
    assert!(
        offline.json["refresh_token"]
            .as_str()
            .unwrap()
            .starts_with("rat1.")
    );
    // Refresh tokens disabled: never one, even when asked.
    let off = self::app();
    let r = send(
        &off,
        Method::GET,
        "/auth?service=reg&offline_token=true",
        Some(&auth),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.json.get("refresh_token").is_none());
}

#[tokio::test]
async fn oauth_client_mistakes_are_4xx_with_oauth_errors() {
    let app = app_refresh();
    for (body, status, error) in [
        ("service=reg&client_id=x", 400, "invalid_request"),
        (
            "grant_type=magic&service=reg&client_id=x",
            400,
            "unsupported_grant_type",
        ),
        (
            "grant_type=password&client_id=x&username=a&password=b",
            400,
            "invalid_request",
        ),
        (
            "grant_type=password&service=reg&username=a&password=b",
            400,
            "invalid_request",
        ),
        (
            "grant_type=password&service=reg&client_id=x&password=b",
            400,
            "invalid_request",
        ),
        (
            "grant_type=password&service=reg&client_id=x&username=a",
            400,
            "invalid_request",
        ),
        (
            "grant_type=refresh_token&service=reg&client_id=x",
            400,
            "invalid_request",
        ),
        (
            "grant_type=password&service=reg&client_id=x&username=alice&password=alicepass&scope=bad",
            400,
            "invalid_scope",
        ),
        (
            "grant_type=password&service=reg&client_id=x&username=alice&password=wrong",
            401,
            "invalid_grant",
        ),
        (
            "grant_type=password&service=reg&client_id=x&username=nobody&password=x",
            401,
            "invalid_grant",
        ),
        (
            "grant_type=refresh_token&service=reg&client_id=x&refresh_token=garbage",
            401,
            "invalid_grant",
        ),
    ] {
        let r = post(&app, body).await;
        assert_eq!(r.status.as_u16(), status, "{body}: {}", r.json);
        assert_eq!(r.json["error"], error, "{body}");
        assert!(
            r.json["error_description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
    }
    let r = post_form(&app, "/auth", "application/json", b"{}".to_vec()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(r.json["error"], "invalid_request");
    let r = post_form(&app, "/auth", FORM, vec![b'a'; 100_000]).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

/// A request body that yields `chunks` of `size` bytes (no length known in advance, like a
/// chunked upload), then fails with `error` when set.
struct TestBody {
    chunks: usize,
    size: usize,
    error: Option<&'static str>,
}

impl hyper::body::Body for TestBody {
    type Data = axum::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.chunks > 0 {
            self.chunks -= 1;
            let data = axum::body::Bytes::from(vec![b'a'; self.size]);
            return std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(data))));
        }
        std::task::Poll::Ready(self.error.take().map(|e| Err(std::io::Error::other(e))))
    }
}

async fn send_request(app: &TestApp, req: Request<Body>) -> Reply {
    let resp = app.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let json = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        json,
    }
}

/// A form `POST /auth`, without its body.
fn form_request() -> axum::http::request::Builder {
    Request::builder()
        .method(Method::POST)
        .uri("/auth")
        .header(header::HOST, HOST)
        .header(header::CONTENT_TYPE, FORM)
}

#[tokio::test]
async fn control_characters_and_invalid_utf8_in_free_text_are_400() {
    let app = app();
    let scope = "scope=repository:public/a:pull";
    for (query, parameter) in [
        (format!("service=%00&{scope}"), "service"),
        (format!("service=a%01%1b%7f&{scope}"), "service"),
        (format!("service=%FF%FE&{scope}"), "service"),
        (format!("service=reg%E2%80%AE&{scope}"), "service"),
        (
            format!("service=reg&client_id=a%00%0Ab&{scope}"),
            "client_id",
        ),
        (format!("service=reg&client_id=%C3%28&{scope}"), "client_id"),
        (format!("service=reg&account=a%09b&{scope}"), "account"),
        ("service=reg&scope=repository:a%FF:pull".to_owned(), "scope"),
        ("service=reg&offline_token=%FF".to_owned(), "offline_token"),
    ] {
        let r = send(&app, Method::GET, &format!("/auth?{query}"), None).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}: {}", r.json);
        let message = r.json["errors"][0]["message"].as_str().unwrap();
        assert!(
            message.contains(&format!("`{parameter}`")),
            "{query}: {message}"
        );
    }
    // Printable text in any script is fine, and decoded exactly.
    let r = send(
        &app,
        Method::GET,
        &format!("/auth?service=r%C3%A9gistry+%E2%9C%93&client_id=docker%20%E2%9C%93&{scope}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
    assert_eq!(claims(&r)["aud"], "régistry ✓");
    // The OAuth2 form: the same rules, as OAuth2 errors; credentials must be UTF-8 too.
    let form = "grant_type=password&username=alice&password=alicepass";
    for (body, parameter) in [
        (format!("{form}&service=%00&client_id=t"), "service"),
        (format!("{form}&service=reg&client_id=a%0Ab"), "client_id"),
        (format!("{form}&service=reg&client_id=%FF"), "client_id"),
        (
            "grant_type=password&username=%FF&password=x&service=reg&client_id=t".to_owned(),
            "username",
        ),
    ] {
        let r = post(&app, &body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}: {}", r.json);
        assert_eq!(r.json["error"], "invalid_request", "{body}");
        let description = r.json["error_description"].as_str().unwrap();
        assert!(
            description.contains(&format!("`{parameter}`")),
            "{body}: {description}"
        );
    }
    let r = post_form(
        &app,
        "/auth",
        FORM,
        b"grant_type=password&username=alice&password=alicepass&service=reg&client_id=t\xff"
            .to_vec(),
    )
    .await;
    assert_eq!(r.json["error"], "invalid_request");
    let r = post(
        &app,
        &format!("{form}&service=r%C3%A9g&client_id=%E2%9C%93"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.json);
}

#[tokio::test]
async fn host_must_be_present_once_and_valid() {
    let app = app();
    let uri = "/auth?service=reg&scope=repository:public/a:pull";
    let request = |version, hosts: &[&str]| {
        let mut req = Request::builder().uri(uri).version(version);
        for h in hosts {
            req = req.header(header::HOST, *h);
        }
        req.body(Body::empty()).unwrap()
    };
    for (hosts, needle) in [
        (&[][..], "missing"),
        (&["a", "b"][..], "more than one"),
        (&["a", "a"][..], "more than one"),
        (&["[::1"][..], "not a valid"),
        (&["a b"][..], "not a valid"),
        (&["host:99999"][..], "not a valid"),
    ] {
        let r = send_request(&app, request(axum::http::Version::HTTP_11, hosts)).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{hosts:?}");
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
        let message = r.json["errors"][0]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{hosts:?}: {message}");
    }
    for hosts in [
        &["registry.example.com:443"][..],
        &["[::1]:5001"],
        &["10.0.0.1"],
    ] {
        let r = send_request(&app, request(axum::http::Version::HTTP_11, hosts)).await;
        assert_eq!(r.status, StatusCode::OK, "{hosts:?}");
    }
    // HTTP/1.0 may omit it.
    let r = send_request(&app, request(axum::http::Version::HTTP_10, &[])).await;
    assert_eq!(r.status, StatusCode::OK);
    // Every route: the probes, the published keys, unknown paths.
    for path in ["/healthz", "/rootcertbundle.pem", "/nope"] {
        let req = Request::builder().uri(path).body(Body::empty()).unwrap();
        let r = send_request(&app, req).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{path}");
        assert!(r.json["errors"][0]["message"].is_string(), "{path}");
    }
}

#[tokio::test]
async fn oversized_bodies_are_413_in_json_and_broken_ones_400() {
    let app = app_refresh();
    let check_413 = |r: &Reply| {
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", r.json);
        assert_eq!(r.headers[header::CONTENT_TYPE], "application/json");
        assert_eq!(r.json["error"], "invalid_request");
        let description = r.json["error_description"].as_str().unwrap();
        assert!(description.contains("65536 bytes"), "{description}");
    };
    // Content-Length over the limit: refused without reading the body (reading this one fails).
    let failing = || {
        Body::new(TestBody {
            chunks: 0,
            size: 0,
            error: Some("the body was read"),
        })
    };
    let req = form_request()
        .header(header::CONTENT_LENGTH, "100000")
        .body(failing())
        .unwrap();
    check_413(&send_request(&app, req).await);
    // On any route.
    let req = Request::builder()
        .uri("/auth?service=reg")
        .header(header::HOST, HOST)
        .header(header::CONTENT_LENGTH, "8388608")
        .body(failing())
        .unwrap();
    check_413(&send_request(&app, req).await);
    // No length announced (chunked): over the limit while reading.
    let chunked = Body::new(TestBody {
        chunks: 20,
        size: 4096,
        error: None,
    });
    let req = form_request().body(chunked).unwrap();
    check_413(&send_request(&app, req).await);
    // A body that breaks while being read (a bad chunk, a reset, fewer bytes than announced):
    // 400, not 413.
    let broken = Body::new(TestBody {
        chunks: 1,
        size: 10,
        error: Some("connection reset"),
    });
    let req = form_request().body(broken).unwrap();
    let r = send_request(&app, req).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.json["error"], "invalid_request");
    assert!(
        r.json["error_description"]
            .as_str()
            .unwrap()
            .contains("could not be read")
    );
    // At the limit: read and parsed.
    let r = post_form(&app, "/auth", FORM, vec![b'a'; 65536]).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.json);
    assert_eq!(r.json["error"], "invalid_request");
}

#[tokio::test]
async fn the_index_without_web_logins_names_the_issuer_like_docker_auth() {
    let app = app();
    let resp = app
        .app
        .clone()
        .oneshot(
            Request::builder()
                .uri("/")
                .header(header::HOST, HOST)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::OK);
    let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("<code>/auth</code>"), "{text}");
    assert!(text.contains("<h1>Test issuer</h1>"), "{text}");
}
