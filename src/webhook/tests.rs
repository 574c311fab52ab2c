//! Webhook client tests against a local HTTP(S) server (axum on 127.0.0.1:0) that records what
//! it receives and answers what the test tells it to. [`Fake`] is shared with the `http_auth`
//! and `http_authz` tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes as AxumBytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use serde_json::{Value, json};

use super::*;

/// What the fake answers: status, body, delay.
pub(crate) type Reply = Arc<dyn Fn(&Value) -> (u16, String, Duration) + Send + Sync>;

/// One request the fake received.
#[derive(Debug, Clone)]
pub(crate) struct Seen {
    pub raw: Vec<u8>,
    pub body: Value,
    pub authorization: Option<String>,
    pub signature: Option<String>,
    pub timestamp: Option<String>,
    pub content_type: Option<String>,
}

/// A fake webhook.
pub(crate) struct Fake {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicUsize>,
    pub peak: Arc<AtomicUsize>,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct FakeState {
    reply: Reply,
    calls: Arc<AtomicUsize>,
    in_flight: Arc<AtomicUsize>,
    peak: Arc<AtomicUsize>,
    seen: Arc<Mutex<Vec<Seen>>>,
}

async fn handle(
    axum::extract::State(st): axum::extract::State<FakeState>,
    headers: HeaderMap,
    body: AxumBytes,
) -> impl IntoResponse {
    st.calls.fetch_add(1, Ordering::SeqCst);
    let now = st.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    st.peak.fetch_max(now, Ordering::SeqCst);
    let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let header = |n: &str| {
        headers
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    st.seen.lock().unwrap().push(Seen {
        raw: body.to_vec(),
        body: value.clone(),
        authorization: header("authorization"),
        signature: header(SIGNATURE_HEADER),
        timestamp: header(TIMESTAMP_HEADER),
        content_type: header("content-type"),
    });
    let (status, text, delay) = (st.reply)(&value);
    tokio::time::sleep(delay).await;
    st.in_flight.fetch_sub(1, Ordering::SeqCst);
    (
        StatusCode::from_u16(status).unwrap(),
        [("content-type", "application/json")],
        text,
    )
}

impl Fake {
    /// A plain HTTP fake on a free port.
    pub(crate) async fn start(
        reply: impl Fn(&Value) -> (u16, String, Duration) + Send + Sync + 'static,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Arc::new(reply), None)
    }

    /// An HTTPS fake with this server configuration.
    pub(crate) async fn start_tls(
        reply: impl Fn(&Value) -> (u16, String, Duration) + Send + Sync + 'static,
        tls: Arc<rustls::ServerConfig>,
    ) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::serve(listener, Arc::new(reply), Some(tls))
    }

    fn serve(
        listener: tokio::net::TcpListener,
        reply: Reply,
        tls: Option<Arc<rustls::ServerConfig>>,
    ) -> Self {
        let addr = listener.local_addr().unwrap();
        let st = FakeState {
            reply,
            calls: Arc::default(),
            in_flight: Arc::default(),
            peak: Arc::default(),
            seen: Arc::default(),
        };
        let (calls, peak, seen) = (st.calls.clone(), st.peak.clone(), st.seen.clone());
        let app = Router::new().fallback(handle).with_state(st);
        let task = match tls {
            None => tokio::spawn(async move {
                let _ = axum::serve(listener, app).await;
            }),
            Some(config) => tokio::spawn(async move {
                let acceptor = tokio_rustls::TlsAcceptor::from(config);
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let acceptor = acceptor.clone();
                    let app = app.clone();
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper_util::service::TowerToHyperService::new(app);
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            }),
        };
        Self {
            addr,
            calls,
            peak,
            seen,
            task,
        }
    }

    pub(crate) fn url(&self, scheme: &str) -> Uri {
        format!("{scheme}://{}/hook?token=not-logged", self.addr)
            .parse()
            .unwrap()
    }

    pub(crate) fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub(crate) fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

/// Settings for a plain-HTTP webhook at `url`.
pub(crate) fn settings(name: &'static str, url: Uri) -> WebhookSettings {
    WebhookSettings {
        name,
        url,
        tls: None,
        timeout: Duration::from_secs(5),
        bearer_token: None,
        hmac_secret: None,
        max_concurrent: 16,
        cache_ttl: None,
    }
}

fn ok(body: Value) -> impl Fn(&Value) -> (u16, String, Duration) + Send + Sync + 'static {
    move |_| (200, body.to_string(), Duration::ZERO)
}

async fn call(hook: &Webhook, body: Value) -> Result<Value, WebhookError> {
    hook.call::<Value>(serde_json::to_vec(&body).unwrap()).await
}

#[tokio::test]
async fn posts_json_and_parses_the_answer() {
    let fake = Fake::start(ok(json!({"result": "allow"}))).await;
    let hook = Webhook::new(settings("http_auth", fake.url("http"))).unwrap();
    let answer = call(&hook, json!({"account": "alice"})).await.unwrap();
    assert_eq!(answer, json!({"result": "allow"}));
    let seen = fake.last();
    assert_eq!(seen.body, json!({"account": "alice"}));
    assert_eq!(seen.content_type.as_deref(), Some("application/json"));
    assert!(seen.authorization.is_none() && seen.signature.is_none());
    assert_eq!(hook.health().report()["status"], "up");
}

#[tokio::test]
async fn non_200_bad_json_and_timeouts_are_errors_without_retries() {
    let fake = Fake::start(|body: &Value| match body["case"].as_str() {
        Some("500") => (500, "{\"oops\": 1}".to_owned(), Duration::ZERO),
        Some("403") => (403, String::new(), Duration::ZERO),
        Some("junk") => (200, "not json".to_owned(), Duration::ZERO),
        Some("slow") => (200, "{}".to_owned(), Duration::from_secs(3)),
        _ => (200, "{}".to_owned(), Duration::ZERO),
    })
    .await;
    let mut s = settings("http_authz", fake.url("http"));
    s.timeout = Duration::from_millis(400);
    let hook = Webhook::new(s).unwrap();
    let e = call(&hook, json!({"case": "500"})).await.unwrap_err();
    assert!(e.detail.contains("HTTP 500"), "{e}");
    assert!(
        !e.to_string().contains("not-logged"),
        "the query is not shown: {e}"
    );
    assert_eq!(hook.health().report()["status"], "down");
    let e = call(&hook, json!({"case": "403"})).await.unwrap_err();
    assert!(e.detail.contains("HTTP 403"), "{e}");
    let e = call(&hook, json!({"case": "junk"})).await.unwrap_err();
    assert!(e.detail.contains("outside the contract"), "{e}");
    let started = Instant::now();
    let e = call(&hook, json!({"case": "slow"})).await.unwrap_err();
    assert!(e.detail.contains("no answer within"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2));
    // One request each: nothing is retried once it was sent.
    assert_eq!(fake.calls(), 4);
    assert!(call(&hook, json!({"case": "fine"})).await.is_ok());
    assert_eq!(hook.health().report()["status"], "up");
}

#[tokio::test]
async fn connection_refused_is_an_error_after_one_retry() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let hook = Webhook::new(settings(
        "http_auth",
        format!("http://127.0.0.1:{port}/hook").parse().unwrap(),
    ))
    .unwrap();
    let started = Instant::now();
    let e = call(&hook, json!({})).await.unwrap_err();
    assert!(e.detail.contains("cannot connect"), "{e}");
    // The retry waited a little.
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[tokio::test]
async fn a_webhook_that_comes_up_during_the_retry_answers() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let hook = Webhook::new(settings(
        "http_auth",
        format!("http://{addr}/hook").parse().unwrap(),
    ))
    .unwrap();
    let late = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(30)).await;
        let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
        Fake::serve(listener, Arc::new(ok(json!({"late": true}))), None)
    });
    let answer = call(&hook, json!({})).await.unwrap();
    assert_eq!(answer, json!({"late": true}));
    let fake = late.await.unwrap();
    assert_eq!(fake.calls(), 1);
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A webhook's check, step by step as docs/src/users/webhooks.md specifies it: the timestamp is 1–20 ASCII
/// digits within 300 s of `now`, and the signature is `sha256=` + 64 hex digits equal (compared
/// in constant time by `hmac::verify`) to HMAC-SHA256(secret, "<timestamp>.<body>").
pub(crate) fn receiver_verify(
    secret: &str,
    timestamp: &str,
    signature_header: &str,
    body: &[u8],
    now: u64,
) -> Result<(), &'static str> {
    if timestamp.is_empty()
        || timestamp.len() > 20
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("bad timestamp");
    }
    let t: u64 = timestamp.parse().map_err(|_| "bad timestamp")?;
    if t.abs_diff(now) > 300 {
        return Err("stale timestamp");
    }
    let hex_sig = signature_header
        .strip_prefix("sha256=")
        .filter(|h| h.len() == 64)
        .ok_or("bad signature header")?;
    let tag = (0..64)
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex_sig[i..i + 2], 16).ok())
        .collect::<Option<Vec<u8>>>()
        .ok_or("bad signature header")?;
    let mut signed = timestamp.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(body);
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, &signed, &tag).map_err(|_| "signature mismatch")
}

#[test]
fn the_signed_string_is_the_timestamp_a_dot_and_the_body() {
    let secret = "0123456789abcdef0123456789abcdef-secret";
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let body = br#"{"account":"alice"}"#;
    let sig = signature(&key, 1_767_225_600, body);
    // Independently: HMAC over the concatenated string.
    let expected = hmac::sign(&key, br#"1767225600.{"account":"alice"}"#);
    assert_eq!(sig, format!("sha256={}", hex(expected.as_ref())));
    let now = 1_767_225_600;
    assert_eq!(
        receiver_verify(secret, "1767225600", &sig, body, now),
        Ok(())
    );
    assert_eq!(
        receiver_verify(secret, "1767225600", &sig, body, now + 300),
        Ok(())
    );
    assert_eq!(
        receiver_verify(secret, "1767225600", &sig, body, now - 300),
        Ok(())
    );
    assert_eq!(
        receiver_verify(secret, "1767225600", &sig, body, now + 301),
        Err("stale timestamp")
    );
    // The timestamp is signed: moving it forward breaks the signature.
    let fresh = sig.clone();
    assert_eq!(
        receiver_verify(secret, "1767225900", &fresh, body, now + 400),
        Err("signature mismatch")
    );
    for bad in [
        "",
        "+1767225600",
        "1767225600.0",
        " 1767225600",
        "123456789012345678901",
    ] {
        assert_eq!(
            receiver_verify(secret, bad, &sig, body, now),
            Err("bad timestamp"),
            "{bad:?}"
        );
    }
    assert_eq!(
        receiver_verify(secret, "1767225600", "sha256=00", body, now),
        Err("bad signature header")
    );
}

#[tokio::test]
async fn requests_are_signed_with_bearer_and_hmac() {
    let secret = "0123456789abcdef0123456789abcdef-secret";
    let fake = Fake::start(ok(json!({}))).await;
    let mut s = settings("http_auth", fake.url("http"));
    s.bearer_token = Some(Secret::new("tok-123"));
    s.hmac_secret = Some(Secret::new(secret));
    let hook = Webhook::new(s).unwrap();
    call(&hook, json!({"account": "alice", "password": "pw"}))
        .await
        .unwrap();
    let seen = fake.last();
    assert_eq!(seen.authorization.as_deref(), Some("Bearer tok-123"));
    // The fake verifies the request as docs/src/users/webhooks.md tells a webhook to.
    let (ts, sig) = (seen.timestamp.unwrap(), seen.signature.unwrap());
    let now = unix_now();
    assert_eq!(receiver_verify(secret, &ts, &sig, &seen.raw, now), Ok(()));
    assert!(
        ts.parse::<u64>().unwrap().abs_diff(now) <= 5,
        "{ts} vs {now}"
    );
    // A different body, another timestamp, another secret: refused.
    assert!(receiver_verify(secret, &ts, &sig, b"{}", now).is_err());
    let other = (ts.parse::<u64>().unwrap() + 1).to_string();
    assert!(receiver_verify(secret, &other, &sig, &seen.raw, now).is_err());
    let wrong = "another-secret-of-at-least-32-bytes!!";
    assert!(receiver_verify(wrong, &ts, &sig, &seen.raw, now).is_err());
    // The same request replayed more than 5 minutes later: refused.
    assert_eq!(
        receiver_verify(secret, &ts, &sig, &seen.raw, now + 301),
        Err("stale timestamp")
    );
    // Secrets stay out of Debug.
    let dbg = format!("{hook:?}");
    assert!(!dbg.contains("tok-123") && !dbg.contains(secret), "{dbg}");
}

#[tokio::test]
async fn the_cache_remembers_answers_for_its_ttl_only() {
    let fake = Fake::start(|body: &Value| {
        if body["fail"] == json!(true) {
            (503, String::new(), Duration::ZERO)
        } else {
            (200, json!({"n": body["n"]}).to_string(), Duration::ZERO)
        }
    })
    .await;
    let mut s = settings("http_authz", fake.url("http"));
    s.cache_ttl = Some(Duration::from_millis(600));
    let hook = Webhook::new(s).unwrap();
    for _ in 0..5 {
        assert_eq!(call(&hook, json!({"n": 1})).await.unwrap(), json!({"n": 1}));
    }
    assert_eq!(
        fake.calls(),
        1,
        "identical requests within the TTL: one call"
    );
    call(&hook, json!({"n": 2})).await.unwrap();
    assert_eq!(fake.calls(), 2, "another request: another call");
    // Errors are not remembered.
    assert!(call(&hook, json!({"fail": true})).await.is_err());
    assert!(call(&hook, json!({"fail": true})).await.is_err());
    assert_eq!(fake.calls(), 4);
    tokio::time::sleep(Duration::from_millis(700)).await;
    call(&hook, json!({"n": 1})).await.unwrap();
    assert_eq!(fake.calls(), 5, "after the TTL the webhook is asked again");
}

#[tokio::test]
async fn no_cache_by_default() {
    let fake = Fake::start(ok(json!({}))).await;
    let hook = Webhook::new(settings("http_auth", fake.url("http"))).unwrap();
    for _ in 0..3 {
        call(&hook, json!({"same": 1})).await.unwrap();
    }
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_never_exceeds_max_concurrent_calls_in_flight() {
    let fake = Fake::start(|_: &Value| (200, "{}".to_owned(), Duration::from_millis(40))).await;
    let mut s = settings("http_authz", fake.url("http"));
    s.max_concurrent = 3;
    let hook = Webhook::new(s).unwrap();
    let tasks: Vec<_> = (0..48)
        .map(|i| {
            let hook = hook.clone();
            tokio::spawn(async move { call(&hook, json!({ "i": i })).await })
        })
        .collect();
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(fake.calls(), 48);
    let peak = fake.peak.load(Ordering::SeqCst);
    assert!(
        peak <= 3,
        "the webhook saw {peak} calls in flight at once (max_concurrent: 3)"
    );
    assert!(peak >= 2, "peak {peak}: the calls did not overlap at all");
    assert!(hook.peak_concurrency() <= 3);
}

/// A CA and a leaf for 127.0.0.1 signed by it (PEM), and the server configuration.
pub(crate) fn test_pki() -> (String, Arc<rustls::ServerConfig>) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "registry-auth test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf_params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap();
    let leaf = leaf_params.signed_by(&leaf_key, &issuer).unwrap();
    let server = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![leaf.der().clone()],
        rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap(),
    )
    .unwrap();
    (ca.pem(), Arc::new(server))
}

#[tokio::test]
async fn https_with_a_configured_ca() {
    let (ca_pem, server) = test_pki();
    let fake = Fake::start_tls(ok(json!({"tls": true})), server).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let mut s = settings("http_auth", fake.url("https"));
    s.tls = Some(
        crate::client_tls::client_config(crate::client_tls::Trust::CaFile(&ca), true).unwrap(),
    );
    let hook = Webhook::new(s).unwrap();
    assert_eq!(call(&hook, json!({})).await.unwrap(), json!({"tls": true}));
    // Another CA: the handshake fails, an error (and a connection error is retried once).
    let other = dir.path().join("other.pem");
    std::fs::write(&other, test_pki().0).unwrap();
    let mut s = settings("http_auth", fake.url("https"));
    s.tls = Some(
        crate::client_tls::client_config(crate::client_tls::Trust::CaFile(&other), true).unwrap(),
    );
    let hook = Webhook::new(s).unwrap();
    let e = call(&hook, json!({})).await.unwrap_err();
    assert!(e.detail.contains("cannot connect"), "{e}");
    assert_eq!(
        fake.calls(),
        1,
        "no request reached the server over a bad handshake"
    );
}
