//! Router-level tests of the replicas' shared state (a Redis or PostgreSQL `store`, here an
//! in-memory store shared by two states, or a Redis URL nothing answers at): refresh-token
//! revocations and lockout counters seen by every replica, and what happens while the store is
//! down. The end-to-end runs against real servers are in tests/it/replicas.rs.

use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::http::{Method, Request, StatusCode, header};
use tower::ServiceExt;

use super::AppState;
use super::tests_ops::{ACL, Fixture, app, basic, get};
use crate::config;
use crate::store::{SharedState, Store, unix_now};
use crate::token::refresh::unverified_token_id;

const SESSION_SECRET: &str = "a shared session secret of at least 32 bytes\n";
const REFRESH_SECRET: &str = "a-test-refresh-secret-of-enough-length-0123456789\n";

fn private_file(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
}

/// A configuration with users alice/reader, refresh tokens, a lockout of 3 failures, a
/// revocation file and `store` (YAML, may be empty).
fn write_config(f: &Fixture, store: &str) -> PathBuf {
    let path = f.write("", ACL);
    let dir = path.parent().unwrap().to_path_buf();
    private_file(&dir.join("session.secret"), SESSION_SECRET);
    private_file(&dir.join("refresh.secret"), REFRESH_SECRET);
    let text = std::fs::read_to_string(&path).unwrap().replace(
        "token: {issuer: T, certificate: cert.pem, key: key.pem}",
        "token:\n  issuer: T\n  certificate: cert.pem\n  key: key.pem\n  refresh: {enabled: \
         true, secret_file: refresh.secret, lifetime: 1h, revocations_file: revoked.yaml}\n\
         server: {trusted_proxies: [127.0.0.1], session_secret_file: session.secret}\n\
         lockout: {max_failures: 3, window: 1m, cooldown: 1m}",
    );
    std::fs::write(&path, format!("{text}{store}")).unwrap();
    path
}

/// A replica of the configuration at `path` whose shared state is `store` (the same one for
/// every replica of a test).
fn replica(path: &Path, store: &Store) -> AppState {
    let mut config = config::load(path).unwrap();
    assert!(config.shared_state.is_none());
    config.shared_state = Some(SharedState::new(
        store.clone(),
        "memory".to_owned(),
        path.parent().unwrap().join("session.secret"),
        false,
    ));
    AppState::new(config).unwrap()
}

async fn post(app: &Router, body: &str) -> (StatusCode, serde_json::Value, axum::http::HeaderMap) {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/auth")
        .header("host", "registry-auth.test")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
        .body(Body::from(body.to_owned()))
        .unwrap();
    let resp = app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (
        status,
        serde_json::from_slice(&body).unwrap_or_default(),
        headers,
    )
}

async fn refresh_token(app: &Router, user: &str, password: &str) -> String {
    let (status, body, _) = get(
        app,
        "/auth?service=s&offline_token=true",
        &[("authorization", &basic(user, password))],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    v["refresh_token"].as_str().unwrap().to_owned()
}

async fn refresh(app: &Router, token: &str) -> StatusCode {
    post(
        app,
        &format!("grant_type=refresh_token&refresh_token={token}&service=s&client_id=t"),
    )
    .await
    .0
}

/// `n` wrong passwords for alice from 198.51.100.1, spread round robin over `apps`.
async fn wrong_passwords(apps: &[&Router], n: usize) {
    let wrong = basic("alice", "wrong");
    for i in 0..n {
        let (status, body, _) = get(
            apps[i % apps.len()],
            "/auth?service=s",
            &[
                ("authorization", &wrong),
                ("x-forwarded-for", "198.51.100.1"),
            ],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    }
}

async fn alice_from(app: &Router, ip: &str) -> StatusCode {
    get(
        app,
        "/auth?service=s",
        &[
            ("authorization", &basic("alice", "alicepass")),
            ("x-forwarded-for", ip),
        ],
    )
    .await
    .0
}

#[tokio::test]
async fn replicas_sharing_a_store_share_revocations_and_lockout() {
    let store = Store::memory();
    let f = Fixture::new();
    let path = write_config(&f, "");
    let (a, b) = (replica(&path, &store), replica(&path, &store));
    let (a, b) = (app(&a, [127, 0, 0, 1]), app(&b, [127, 0, 0, 1]));

    // Revoked by id in the store (as `tokens revoke` writes it): refused by both replicas.
    let token = refresh_token(&a, "alice", "alicepass").await;
    let other = refresh_token(&b, "alice", "alicepass").await;
    assert_eq!(refresh(&b, &token).await, StatusCode::OK);
    let now = unix_now();
    store
        .revoke_refresh_token(&unverified_token_id(&token).unwrap(), now, now + 3600)
        .await
        .unwrap();
    for app in [&a, &b] {
        assert_eq!(refresh(app, &token).await, StatusCode::UNAUTHORIZED);
        assert_eq!(refresh(app, &other).await, StatusCode::OK);
    }
    // By user: every token issued until now.
    store
        .revoke_refresh_subject("alice", unix_now(), now + 3600)
        .await
        .unwrap();
    for app in [&a, &b] {
        assert_eq!(refresh(app, &other).await, StatusCode::UNAUTHORIZED);
    }
    // The revocation file applies too (both sources): reader, revoked only there.
    let reader = refresh_token(&a, "reader", "readerpass").await;
    assert_eq!(refresh(&b, &reader).await, StatusCode::OK);
    let when = time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    std::fs::write(
        path.parent().unwrap().join("revoked.yaml"),
        format!("users: {{reader: \"{when}\"}}\n"),
    )
    .unwrap();
    for app in [&a, &b] {
        assert_eq!(refresh(app, &reader).await, StatusCode::UNAUTHORIZED);
    }

    // Three failures spread over the two replicas lock the pair on both.
    wrong_passwords(&[&a, &b], 3).await;
    for app in [&a, &b] {
        assert_eq!(
            alice_from(app, "198.51.100.1").await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(alice_from(app, "198.51.100.2").await, StatusCode::OK);
    }
    // /readyz reports the shared store, web logins or not.
    let (_, body, _) = get(&a, "/readyz", &[]).await;
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["backends"]["store"]["status"], "up", "{ready}");
    assert_eq!(ready["status"], "ready", "{ready}");
}

#[tokio::test]
async fn a_success_clears_the_shared_counter() {
    let store = Store::memory();
    let f = Fixture::new();
    let path = write_config(&f, "");
    let (a, b) = (replica(&path, &store), replica(&path, &store));
    let (a, b) = (app(&a, [127, 0, 0, 1]), app(&b, [127, 0, 0, 1]));
    wrong_passwords(&[&a, &b], 2).await;
    assert_eq!(alice_from(&b, "198.51.100.1").await, StatusCode::OK);
    // Counting starts again: two more failures do not lock.
    wrong_passwords(&[&a, &b], 2).await;
    assert_eq!(alice_from(&a, "198.51.100.1").await, StatusCode::OK);
}

#[tokio::test]
async fn a_store_that_is_down_fails_refresh_closed_and_the_lockout_falls_back() {
    // A loopback port nothing listens on: every store call fails at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let f = Fixture::new();
    let path = write_config(
        &f,
        &format!("store: {{type: redis, url: \"redis://127.0.0.1:{port}\"}}\n"),
    );
    let config = config::load(&path).unwrap();
    assert!(config.shared_state.is_some() && config.web_logins.is_none());
    let state = AppState::new(config).unwrap();
    let a = app(&state, [127, 0, 0, 1]);
    let before = super::lockout::store_fallbacks();
    // Password grants keep working; refresh grants are refused with a retryable 503.
    let token = refresh_token(&a, "alice", "alicepass").await;
    let (status, body, headers) = post(
        &a,
        &format!("grant_type=refresh_token&refresh_token={token}&service=s&client_id=t"),
    )
    .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(headers[header::RETRY_AFTER], "2");
    assert!(!body.to_string().contains(&port.to_string()), "{body}");
    // The lockout counts on this replica alone.
    wrong_passwords(&[&a], 3).await;
    assert_eq!(
        alice_from(&a, "198.51.100.1").await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(alice_from(&a, "198.51.100.2").await, StatusCode::OK);
    assert!(super::lockout::store_fallbacks() >= before + 5);
    let (_, text, _) = get(&a, "/metrics", &[]).await;
    assert!(
        text.contains("registry_auth_lockout_store_fallbacks_total "),
        "{text}"
    );
    assert!(
        text.contains("registry_auth_backend_errors_total{backend=\"store\"}"),
        "{text}"
    );
    let (_, body, _) = get(&a, "/readyz", &[]).await;
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["backends"]["store"]["status"], "down", "{ready}");
    assert_eq!(ready["status"], "degraded", "{ready}");
}
