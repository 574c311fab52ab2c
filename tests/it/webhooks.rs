//! `http_auth` and `http_authz` through the `registry-auth serve` binary, against a webhook
//! served by this test (axum on 127.0.0.1:0) that checks the bearer token and verifies the HMAC
//! signature and its timestamp of every request as docs/src/users/webhooks.md tells a receiver to
//! (and refuses a captured request replayed later): the chains (local users first, the ACL before the webhook), every answer
//! shape, a failing webhook (5xx, counted in `registry_auth_backend_errors_total`, shown in
//! `/readyz`), and no secret in the server's log.

use std::collections::BTreeMap;
use std::fs;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use aws_lc_rs::hmac;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Value, json};

use crate::common::http::{fetch_token, get};
use crate::common::image;
use crate::common::jwt;
use crate::common::keys::{KeyFiles, KeySetup, bcrypt_hash, yaml_str};
use crate::common::server::{AuthServer, assert_log_has_no_secrets};
use crate::common::stack::{self, ISSUER, SERVICE};

/// (timestamp, signature, body) of a signed request.
type Signed = (String, String, Vec<u8>);

#[derive(Clone)]
struct Hook {
    token: String,
    key: Arc<hmac::Key>,
    /// Requests whose bearer token or signature did not verify.
    bad: Arc<AtomicUsize>,
    /// (timestamp, signature, body) of the last signed request, to replay.
    captured: Arc<Mutex<Option<Signed>>>,
    /// (path, body) of every request.
    seen: Arc<Mutex<Vec<(String, Value)>>>,
}

impl Hook {
    fn check(&self, path: &str, headers: &HeaderMap, body: &[u8]) -> Value {
        let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("");
        let bearer_ok = header("authorization") == format!("Bearer {}", self.token);
        let (ts, sig) = (
            header("x-registry-auth-timestamp"),
            header("x-registry-auth-signature"),
        );
        let sig_ok = verify(&self.key, ts, sig, body, unix_now()).is_ok();
        *self.captured.lock().unwrap() = Some((ts.to_owned(), sig.to_owned(), body.to_vec()));
        if !(bearer_ok && sig_ok) {
            self.bad.fetch_add(1, Ordering::SeqCst);
        }
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        self.seen.lock().unwrap().push((path.to_owned(), v.clone()));
        v
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// The receiver's check, as docs/src/users/webhooks.md specifies it: `timestamp` is 1–20 ASCII
/// digits within 300 s of `now`; `signature` is `sha256=` and 64 hex digits, equal (compared in
/// constant time by `hmac::verify`) to HMAC-SHA256(secret, "<timestamp>.<raw body>").
fn verify(
    key: &hmac::Key,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: u64,
) -> Result<(), &'static str> {
    if timestamp.is_empty()
        || timestamp.len() > 20
        || !timestamp.bytes().all(|b| b.is_ascii_digit())
    {
        return Err("no or bad X-Registry-Auth-Timestamp");
    }
    let t: u64 = timestamp.parse().map_err(|_| "bad timestamp")?;
    if t.abs_diff(now) > 300 {
        return Err("timestamp more than 5 minutes away");
    }
    let tag = signature
        .strip_prefix("sha256=")
        .filter(|h| h.len() == 64)
        .and_then(|h| {
            (0..64)
                .step_by(2)
                .map(|i| u8::from_str_radix(&h[i..i + 2], 16).ok())
                .collect::<Option<Vec<u8>>>()
        })
        .ok_or("no or bad X-Registry-Auth-Signature")?;
    let mut signed = timestamp.as_bytes().to_vec();
    signed.push(b'.');
    signed.extend_from_slice(body);
    hmac::verify(key, &signed, &tag).map_err(|_| "signature mismatch")
}

async fn authn(State(h): State<Hook>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let req = h.check("authn", &headers, &body);
    let answer = match (req["account"].as_str(), req["password"].as_str()) {
        (Some("alice"), Some("alice-good")) => {
            json!({"result": "allow", "labels": {"team": ["dev"]}})
        }
        (Some("alice"), _) => json!({"result": "deny"}),
        _ => json!({"result": "no_match"}),
    };
    (StatusCode::OK, answer.to_string())
}

async fn authz(State(h): State<Hook>, headers: HeaderMap, body: Bytes) -> (StatusCode, String) {
    let req = h.check("authz", &headers, &body);
    let name = req["name"].as_str().unwrap_or_default();
    let team = req["labels"]["team"][0].as_str().unwrap_or_default();
    if name.starts_with("boom/") {
        return (StatusCode::BAD_GATEWAY, "upstream down".to_owned());
    }
    let answer = if name.starts_with("hook/") && team == "dev" {
        json!({"result": "allow", "actions": ["pull"]})
    } else if name.starts_with("all/") {
        json!({"result": "allow"})
    } else if name.starts_with("deny/") {
        json!({"result": "deny"})
    } else {
        json!({"result": "no_match"})
    };
    (StatusCode::OK, answer.to_string())
}

fn granted(token: &str) -> BTreeMap<String, Vec<String>> {
    let jwt = jwt::decode(token).expect("decode token");
    jwt::granted(&jwt.claims)
        .into_iter()
        .map(|((_, name), v)| (name, v.into_iter().collect()))
        .collect()
}

#[test]
fn webhooks_decide_through_the_server() {
    let started = Instant::now();
    let tmp = stack::tempdir("ra-it-hooks");
    let root = tmp.path().to_owned();
    let token = format!("tok-{}", image::random_hex(12));
    let secret = image::random_hex(24);
    fs::write(root.join("hook.token"), format!("{token}\n")).expect("write token");
    fs::write(root.join("hook.hmac"), format!("{secret}\n")).expect("write hmac");
    let hook = Hook {
        token: token.clone(),
        key: Arc::new(hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes())),
        bad: Arc::default(),
        captured: Arc::default(),
        seen: Arc::default(),
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let app = Router::new()
        .route("/authn", post(authn))
        .route("/authz", post(authz))
        .with_state(hook.clone());
    rt.spawn(async move {
        let _ = axum::serve(listener, app).await;
    });

    let keys = KeyFiles::write(KeySetup::EcKid, &root.join("keys"));
    let carol_pw = format!("carol-{}", image::random_hex(8));
    let hook_yaml = |path: &str| {
        format!(
            "  url: http://{addr}/{path}\n  bearer_token_file: hook.token\n  \
             hmac_secret_file: hook.hmac\n  timeout: 2s\n"
        )
    };
    let yaml = format!(
        "server:\n  addr: \"127.0.0.1:0\"\ntoken:\n  issuer: {}\n  expiration: 900\n{}users:\n  \
         carol:\n    password: {}\nhttp_auth:\n{}http_authz:\n{}acl:\n  - match: {{name: \"acl/*\"}}\n    \
         actions: [\"*\"]\n",
        yaml_str(ISSUER),
        keys.token_yaml(),
        yaml_str(&bcrypt_hash(&carol_pw)),
        hook_yaml("authn"),
        hook_yaml("authz"),
    );
    let cfg = root.join("registry-auth.yml");
    fs::write(&cfg, yaml).expect("write config");
    let server = AuthServer::start(&cfg, &root.join("registry-auth.log"));
    let ask = |user: &str, pw: &str, scopes: &[&str]| {
        fetch_token(
            &server.realm(),
            Some(SERVICE),
            scopes,
            Some((user, pw)),
            &[],
        )
    };
    let ctx = |what: &str| format!("{what}\n{}", server.log_tail(20));

    let scopes = [
        "repository:hook/app:pull,push",
        "repository:acl/app:pull,push",
        "repository:all/app:pull,push",
        "repository:deny/app:pull",
        "repository:other/app:pull",
    ];
    let r = ask("alice", "alice-good", &scopes);
    assert_eq!(
        r.response.status,
        200,
        "{}",
        ctx(&format!("{:?}", r.response))
    );
    let g = granted(&r.token.expect("token"));
    assert_eq!(g["hook/app"], ["pull"], "allow with actions: that subset");
    assert_eq!(g["acl/app"], ["pull", "push"], "the ACL decides first");
    assert_eq!(g["all/app"], ["pull", "push"], "allow without actions: all");
    assert!(g["deny/app"].is_empty());
    assert!(g["other/app"].is_empty(), "no match anywhere: denied");
    let seen = hook.seen.lock().unwrap().clone();
    let authn_req = &seen
        .iter()
        .find(|(p, _)| p == "authn")
        .expect("authn call")
        .1;
    assert_eq!(authn_req["account"], "alice");
    assert_eq!(authn_req["service"], SERVICE);
    assert_eq!(authn_req["client_ip"], "127.0.0.1");
    assert!(
        !seen
            .iter()
            .any(|(p, v)| p == "authz" && v["name"] == "acl/app"),
        "the webhook is not asked when the ACL decided"
    );

    // deny → 401; local users are asked first and never reach the webhook.
    let before = hook.seen.lock().unwrap().len();
    assert_eq!(ask("alice", "alice-bad", &scopes[..1]).response.status, 401);
    let r = ask("carol", &carol_pw, &["repository:acl/x:pull"]);
    assert_eq!(r.response.status, 200, "{}", ctx("carol"));
    let new: Vec<_> = hook.seen.lock().unwrap()[before..].to_vec();
    assert!(
        new.iter().all(|(_, v)| v["account"] != "carol"),
        "carol went to the webhook: {new:?}"
    );

    // A failing webhook: 5xx, counted, shown in /readyz (which stays 200).
    let r = ask("alice", "alice-good", &["repository:boom/app:pull"]);
    assert_eq!(r.response.status, 503, "{}", ctx("boom"));
    let metrics = get(&format!("http://{}/metrics", server.addr), &[]).text();
    assert!(
        metrics.contains("registry_auth_backend_errors_total{backend=\"http_authz\"} 1"),
        "{metrics}"
    );
    let ready = get(&format!("http://{}/readyz", server.addr), &[]);
    assert_eq!(ready.status, 200);
    let body = ready.json();
    assert_eq!(body["backends"]["http_authz"]["status"], "down", "{body}");
    // The public listener shows the state, not the error text (that is on metrics_addr).
    assert!(
        body["backends"]["http_authz"].get("error").is_none(),
        "{body}"
    );
    assert_eq!(body["backends"]["http_auth"]["status"], "up", "{body}");

    assert_eq!(
        hook.bad.load(Ordering::SeqCst),
        0,
        "a request's bearer token or HMAC signature (with its timestamp) did not verify"
    );
    // A captured request replayed later is refused by the same check: its timestamp is signed,
    // so it cannot be refreshed without the secret.
    let (ts, sig, body) = hook
        .captured
        .lock()
        .unwrap()
        .clone()
        .expect("a signed request");
    let now = unix_now();
    assert_eq!(verify(&hook.key, &ts, &sig, &body, now), Ok(()));
    assert_eq!(
        verify(&hook.key, &ts, &sig, &body, now + 301),
        Err("timestamp more than 5 minutes away")
    );
    let moved = (ts.parse::<u64>().unwrap() + 301).to_string();
    assert_eq!(
        verify(&hook.key, &moved, &sig, &body, now + 301),
        Err("signature mismatch")
    );
    let secrets = [
        ("alice".to_owned(), "alice-good".to_owned()),
        ("alice".to_owned(), "alice-bad".to_owned()),
        ("carol".to_owned(), carol_pw),
        ("bearer".to_owned(), token),
        ("hmac".to_owned(), secret),
    ];
    assert_log_has_no_secrets(&server.log, &secrets, &[]);
    drop(server);
    rt.shutdown_background();
    eprintln!(
        "webhooks_decide_through_the_server: {:?}",
        started.elapsed()
    );
}
