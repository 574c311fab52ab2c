//! Router-level tests of the operations features: probes, metrics, lockout, client IP behind
//! proxies, reload.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::body::{Body, to_bytes};
use axum::extract::connect_info::MockConnectInfo;
use axum::http::{Request, StatusCode, header};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tower::ServiceExt;

use super::reload::{self, Trigger};
use super::{AppState, ops_router, router};
use crate::config;
use crate::token::{self, KeyKind};

pub(super) struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    pub(super) fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let key = token::generate_self_signed(KeyKind::EcP256, "test", 30).unwrap();
        token::write_key_files(
            &key,
            &dir.path().join("key.pem"),
            &dir.path().join("cert.pem"),
        )
        .unwrap();
        Self { dir }
    }

    pub(super) fn path(&self) -> PathBuf {
        self.dir.path().join("config.yml")
    }

    /// Writes a config with users alice and reader (passwords `alicepass`/`readerpass`) and the
    /// given extra top-level YAML and ACL.
    pub(super) fn write(&self, extra: &str, acl: &str) -> PathBuf {
        let alice = bcrypt::hash("alicepass", 4).unwrap();
        let reader = bcrypt::hash("readerpass", 4).unwrap();
        let yaml = format!(
            "{extra}\ntoken: {{issuer: T, certificate: cert.pem, key: key.pem}}\nusers:\n  \"\": {{}}\n  alice: {{password: \"{alice}\"}}\n  reader: {{password: \"{reader}\"}}\nacl:\n{acl}\n"
        );
        std::fs::write(self.path(), yaml).unwrap();
        self.path()
    }

    fn state(&self, extra: &str, acl: &str) -> AppState {
        let path = self.write(extra, acl);
        AppState::new(config::load(&path).unwrap()).unwrap()
    }
}

pub(super) const ACL: &str = "  - match: {account: \"/.+/\"}\n    actions: [pull]\n  - match: {account: \"\", name: \"public/*\"}\n    actions: [pull]";

pub(super) fn app(state: &AppState, peer: [u8; 4]) -> Router {
    router(state.clone()).layer(MockConnectInfo(SocketAddr::from((peer, 40000))))
}

pub(super) async fn get(
    app: &Router,
    uri: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, String, axum::http::HeaderMap) {
    let mut req = Request::builder()
        .uri(uri)
        .header("host", "registry-auth.test");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = app
        .clone()
        .oneshot(req.body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = to_bytes(resp.into_body(), 1 << 20).await.unwrap();
    (status, String::from_utf8_lossy(&body).into_owned(), headers)
}

pub(super) fn basic(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

fn granted(body: &str) -> serde_json::Value {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    let token = v["token"].as_str().unwrap();
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .unwrap(),
    )
    .unwrap();
    claims["access"][0]["actions"].clone()
}

#[tokio::test]
async fn probes_and_metrics_stay_at_the_root_with_a_prefix() {
    let f = Fixture::new();
    let state = f.state("server: {path_prefix: /ra}", ACL);
    let app = app(&state, [127, 0, 0, 1]);
    assert_eq!(get(&app, "/healthz", &[]).await.0, StatusCode::OK);
    let (status, body, _) = get(&app, "/readyz", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["signing_key"]["algorithm"], "ES256");
    assert!(
        ready["signing_key"]["certificate_expires_in_seconds"]
            .as_i64()
            .unwrap()
            > 0
    );
    assert_eq!(get(&app, "/metrics", &[]).await.0, StatusCode::OK);
    assert_eq!(get(&app, "/ra/healthz", &[]).await.0, StatusCode::NOT_FOUND);
    assert_eq!(get(&app, "/ra/auth?service=s", &[]).await.0, StatusCode::OK);
    assert_eq!(
        get(&app, "/auth?service=s", &[]).await.0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn metrics_count_a_scripted_set_of_requests() {
    let f = Fixture::new();
    let state = f.state("", ACL);
    let app = app(&state, [127, 0, 0, 1]);
    let alice = basic("alice", "alicepass");
    // granted ×2 (anonymous public pull; alice pull), partially denied ×1, denied ×1,
    // bad credentials ×1, bad request ×1.
    get(&app, "/auth?service=s&scope=repository:public/a:pull", &[]).await;
    get(
        &app,
        "/auth?service=s&scope=repository:x/y:pull",
        &[("authorization", &alice)],
    )
    .await;
    get(
        &app,
        "/auth?service=s&scope=repository:x/y:pull,push",
        &[("authorization", &alice)],
    )
    .await;
    get(&app, "/auth?service=s&scope=repository:private/a:pull", &[]).await;
    let wrong = basic("alice", "wrong");
    assert_eq!(
        get(&app, "/auth?service=s", &[("authorization", &wrong)])
            .await
            .0,
        StatusCode::UNAUTHORIZED
    );
    get(&app, "/auth?service=s&scope=bad", &[]).await;
    let (_, text, headers) = get(&app, "/metrics", &[]).await;
    assert!(
        headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("application/openmetrics-text")
    );
    for line in [
        "registry_auth_token_decisions_total{outcome=\"granted\"} 2",
        "registry_auth_token_decisions_total{outcome=\"partially_denied\"} 1",
        "registry_auth_token_decisions_total{outcome=\"denied\"} 1",
        "registry_auth_token_decisions_total{outcome=\"bad_credentials\"} 1",
        "registry_auth_http_requests_total{route=\"/auth\",status=\"200\"} 4",
        "registry_auth_http_requests_total{route=\"/auth\",status=\"401\"} 1",
        "registry_auth_http_requests_total{route=\"/auth\",status=\"400\"} 1",
        "registry_auth_credential_cache_hits_total 1",
        "registry_auth_credential_cache_misses_total 2",
        "registry_auth_build_info{version=",
        "registry_auth_backend_duration_seconds_count{backend=\"users\"} 3",
    ] {
        assert!(text.contains(line), "missing {line:?} in\n{text}");
    }
    let expiry = text
        .lines()
        .find(|l| l.starts_with("registry_auth_signing_certificate_expiry_seconds "))
        .unwrap();
    let secs: i64 = expiry.rsplit(' ').next().unwrap().parse().unwrap();
    assert!(secs > 29 * 86_400 && secs <= 30 * 86_400, "{expiry}");
}

#[tokio::test]
async fn lockout_refuses_the_pair_while_others_keep_getting_tokens() {
    let f = Fixture::new();
    let state = f.state(
        "lockout: {max_failures: 3, window: 1m, cooldown: 1m}\nserver: {trusted_proxies: [127.0.0.1]}",
        ACL,
    );
    let app = app(&state, [127, 0, 0, 1]);
    let wrong = basic("alice", "wrong");
    let right = basic("alice", "alicepass");
    let from = |ip: &'static str| ("x-forwarded-for", ip);
    for _ in 0..3 {
        let (status, _, _) = get(
            &app,
            "/auth?service=s",
            &[("authorization", &wrong), from("198.51.100.1")],
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    // Locked: even the right password is refused from that address.
    let (status, body, headers) = get(
        &app,
        "/auth?service=s",
        &[("authorization", &right), from("198.51.100.1")],
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    let retry: u64 = headers[header::RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    assert!(body.contains("TOOMANYREQUESTS"));
    // Another user from the same address, and alice from another address, are unaffected.
    let reader = basic("reader", "readerpass");
    for headers in [
        [("authorization", reader.as_str()), from("198.51.100.1")],
        [("authorization", right.as_str()), from("198.51.100.2")],
    ] {
        assert_eq!(
            get(&app, "/auth?service=s", &headers).await.0,
            StatusCode::OK
        );
    }
    let (_, text, _) = get(&app, "/metrics", &[]).await;
    assert!(text.contains("registry_auth_token_decisions_total{outcome=\"locked_out\"} 1"));
}

#[tokio::test]
async fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
    let f = Fixture::new();
    let acl = "  - match: {ip: 198.51.100.0/24}\n    actions: [pull]";
    let trusted = f.state("server: {trusted_proxies: [127.0.0.0/8]}", acl);
    let untrusted = f.state("server: {trusted_proxies: [10.0.0.0/8]}", acl);
    let scope = "/auth?service=s&scope=repository:a/b:pull";
    let spoof = [("x-forwarded-for", "198.51.100.7")];
    let (_, body, _) = get(&app(&trusted, [127, 0, 0, 1]), scope, &spoof).await;
    assert_eq!(granted(&body), serde_json::json!(["pull"]));
    // The peer 127.0.0.1 is not a trusted proxy here: its header is ignored.
    let (_, body, _) = get(&app(&untrusted, [127, 0, 0, 1]), scope, &spoof).await;
    assert_eq!(granted(&body), serde_json::json!([]));
}

#[tokio::test]
async fn public_readyz_shows_backend_states_but_not_their_errors() {
    let f = Fixture::new();
    // A webhook at a loopback port nothing listens on: its call fails with a connection error.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook = format!("http_auth: {{url: \"http://127.0.0.1:{port}/auth\", timeout: 2s}}");
    let state = f.state(&hook, ACL);
    let public = app(&state, [127, 0, 0, 1]);
    let auth = basic("mallory", "pw");
    let (status, _, _) = get(&public, "/auth?service=s", &[("authorization", &auth)]).await;
    assert!(status.is_server_error(), "{status}");
    let (status, body, _) = get(&public, "/readyz", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(ready["status"], "degraded", "{ready:#}");
    assert_eq!(
        ready["backends"]["http_auth"]["status"], "down",
        "{ready:#}"
    );
    assert!(
        ready["backends"]["http_auth"].get("error").is_none(),
        "{ready:#}"
    );
    assert_eq!(ready["problems"], serde_json::json!(["http_auth is down"]));
    assert!(!body.contains("connect"), "{body}");
    // The operators' listener (server.metrics_addr) has the details.
    let operators =
        ops_router(state.clone()).layer(MockConnectInfo(SocketAddr::from(([127, 0, 0, 1], 40000))));
    let (status, body, _) = get(&operators, "/readyz", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let ready: serde_json::Value = serde_json::from_str(&body).unwrap();
    let error = ready["backends"]["http_auth"]["error"].as_str().unwrap();
    assert!(error.contains("cannot connect"), "{ready:#}");
    assert!(
        ready["problems"][0]
            .as_str()
            .unwrap()
            .starts_with("http_auth is down: "),
        "{ready:#}"
    );
}

#[tokio::test]
async fn reload_swaps_valid_configs_and_keeps_the_old_one_on_errors() {
    let f = Fixture::new();
    let state = f.state("", ACL);
    let app = app(&state, [127, 0, 0, 1]);
    let scope = "/auth?service=s&scope=repository:private/a:pull";
    let (_, body, _) = get(&app, scope, &[]).await;
    assert_eq!(granted(&body), serde_json::json!([]));
    // A valid new ACL takes effect without a restart.
    let path = f.write("", "  - match: {}\n    actions: [pull]");
    assert!(reload::reload(&state, &path, Trigger::Signal).applied);
    let (_, body, _) = get(&app, scope, &[]).await;
    assert_eq!(granted(&body), serde_json::json!(["pull"]));
    // An invalid one is refused and the previous one keeps serving.
    std::fs::write(&path, "acl: [{match: {acount: x}, actions: []}]\n").unwrap();
    assert!(!reload::reload(&state, &path, Trigger::FileChange).applied);
    let (_, body, _) = get(&app, scope, &[]).await;
    assert_eq!(granted(&body), serde_json::json!(["pull"]));
    let (_, text, _) = get(&app, "/metrics", &[]).await;
    assert!(
        text.contains("registry_auth_config_reloads_total{result=\"success\"} 1"),
        "{text}"
    );
    assert!(text.contains("registry_auth_config_reloads_total{result=\"failure\"} 1"));
}

#[cfg(unix)]
#[test]
fn configmap_symlink_swaps_change_the_fingerprint() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let write_version = |name: &str, text: &str| {
        let d = root.join(name);
        std::fs::create_dir(&d).unwrap();
        std::fs::write(d.join("config.yml"), text).unwrap();
    };
    // Kubernetes layout: config.yml -> ..data/config.yml, ..data -> ..2026_v1
    write_version("..v1", "one");
    write_version("..v2", "two");
    symlink(root.join("..v1"), root.join("..data")).unwrap();
    symlink(Path::new("..data/config.yml"), root.join("config.yml")).unwrap();
    let ((), files) = crate::config::sources::recording(|| {
        crate::config::sources::read(&root.join("config.yml")).unwrap();
    });
    assert!(!crate::config::sources::changed(&files));
    // Atomic swap of ..data, as the kubelet does.
    symlink(root.join("..v2"), root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    assert!(crate::config::sources::changed(&files));
}

#[tokio::test]
async fn metrics_export_each_backends_state_as_backend_up() {
    let f = Fixture::new();
    // A webhook at a loopback port nothing listens on (as above).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let hook = format!("http_auth: {{url: \"http://127.0.0.1:{port}/auth\", timeout: 2s}}");
    let state = f.state(&hook, ACL);
    let public = app(&state, [127, 0, 0, 1]);
    // No call yet: the state is unknown, so no series.
    let (_, text, _) = get(&public, "/metrics", &[]).await;
    assert!(!text.contains("registry_auth_backend_up{"), "{text}");
    let auth = basic("mallory", "pw");
    let (status, _, _) = get(&public, "/auth?service=s", &[("authorization", &auth)]).await;
    assert!(status.is_server_error(), "{status}");
    let (_, text, _) = get(&public, "/metrics", &[]).await;
    assert!(
        text.contains("registry_auth_backend_up{backend=\"http_auth\"} 0\n"),
        "{text}"
    );
    // Local users are no external backend: never a series.
    assert!(
        !text.contains("registry_auth_backend_up{backend=\"users\"}"),
        "{text}"
    );
}
