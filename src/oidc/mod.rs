//! OpenID Connect client pieces shared by the web logins (`google_auth`, `oidc_auth`) and the CI
//! identities (`oidc_tokens`): the HTTP client, discovery, the issuer's JWK Set (fetched once,
//! cached, refreshed when it is old or a token names a key we do not know yet) and JWT
//! verification ([`jwt`]).

pub mod jwt;

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::Url;
use serde::Deserialize;
use tokio::sync::Mutex;

use jwt::{Expect, Jwk, JwtError, Unverified};

/// How long discovery documents and key sets are trusted before they are fetched again.
const CACHE_TTL: Duration = Duration::from_secs(3600);
/// A token naming an unknown key triggers a refetch at most this often.
const REFETCH_MIN: Duration = if cfg!(test) {
    Duration::from_millis(50)
} else {
    Duration::from_secs(10)
};
/// Largest document accepted from a provider.
const MAX_BODY: usize = 1 << 20;

/// An identity provider could not answer (down, timing out, answering 5xx or garbage): the
/// login page says 503 and `/auth` a 5xx, never a 401.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct Unavailable(pub String);

/// The HTTP client for providers: rustls (aws-lc-rs) with the system's roots, no redirects
/// followed, `timeout` per request.
pub fn http_client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("registry-auth/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Reads a successful response body (at most 1 MiB), or says why not.
pub async fn read_ok(response: reqwest::Response, what: &str) -> Result<Vec<u8>, Unavailable> {
    let status = response.status();
    if !status.is_success() {
        return Err(Unavailable(format!("{what}: HTTP {status}")));
    }
    read_body(response, what).await
}

/// Reads a response body (at most 1 MiB).
pub async fn read_body(
    mut response: reqwest::Response,
    what: &str,
) -> Result<Vec<u8>, Unavailable> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Unavailable(format!("{what}: {}", describe_reqwest(&e))))?
    {
        if body.len() + chunk.len() > MAX_BODY {
            return Err(Unavailable(format!(
                "{what}: the answer is larger than 1 MiB"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport error in one line (reqwest hides the cause in its source chain).
pub fn describe_reqwest(e: &reqwest::Error) -> String {
    let mut s = if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "cannot connect".to_owned()
    } else {
        "request failed".to_owned()
    };
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        s.push_str(": ");
        s.push_str(&cause.to_string());
        source = cause.source();
    }
    s
}

/// The parts of a discovery document we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Metadata {
    /// Must equal the configured issuer.
    pub issuer: String,
    /// Where the browser is sent to log in.
    pub authorization_endpoint: String,
    /// Where codes are exchanged.
    pub token_endpoint: String,
    /// The key set.
    pub jwks_uri: String,
    /// The user-info endpoint, when there is one.
    #[serde(default)]
    pub userinfo_endpoint: Option<String>,
    /// PKCE methods, when announced.
    #[serde(default)]
    pub code_challenge_methods_supported: Option<Vec<String>>,
}

/// A trusted issuer: discovery, its key set, and token verification.
#[derive(Debug)]
pub struct Issuer {
    issuer: String,
    http: reqwest::Client,
    jwks_uri: Option<Url>,
    metadata: Mutex<Option<(Arc<Metadata>, Instant)>>,
    keys: Mutex<KeyState>,
}

#[derive(Debug, Default)]
struct KeyState {
    keys: Arc<Vec<Jwk>>,
    fetched: Option<Instant>,
    attempted: Option<Instant>,
}

impl Issuer {
    /// An issuer (`https://…`, exactly as in its tokens' `iss`). `jwks_uri` skips discovery
    /// for the keys.
    pub fn new(issuer: &str, http: reqwest::Client, jwks_uri: Option<Url>) -> Self {
        Self {
            issuer: issuer.to_owned(),
            http,
            jwks_uri,
            metadata: Mutex::new(None),
            keys: Mutex::new(KeyState::default()),
        }
    }

    /// The issuer identifier.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The discovery document (cached; an old copy is used while the provider is down).
    pub async fn metadata(&self) -> Result<Arc<Metadata>, Unavailable> {
        let mut slot = self.metadata.lock().await;
        if let Some((m, at)) = slot.as_ref()
            && at.elapsed() < CACHE_TTL
        {
            return Ok(m.clone());
        }
        match self.fetch_metadata().await {
            Ok(m) => {
                let m = Arc::new(m);
                *slot = Some((m.clone(), Instant::now()));
                Ok(m)
            }
            Err(e) => match slot.as_ref() {
                Some((m, _)) => {
                    tracing::warn!(issuer = %self.issuer, error = %e, "discovery failed; using the previous document");
                    Ok(m.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn fetch_metadata(&self) -> Result<Metadata, Unavailable> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let what = format!("discovery at {url}");
        let response = self
            .http
            .get(&url)
            .send()
            .await
            .map_err(|e| Unavailable(format!("{what}: {}", describe_reqwest(&e))))?;
        let body = read_ok(response, &what).await?;
        let m: Metadata = serde_json::from_slice(&body)
            .map_err(|e| Unavailable(format!("{what}: not a discovery document: {e}")))?;
        if m.issuer != self.issuer {
            return Err(Unavailable(format!(
                "{what}: the document names issuer {:?}, not {:?} (configure the issuer exactly \
                 as the provider spells it)",
                m.issuer, self.issuer
            )));
        }
        Ok(m)
    }

    async fn jwks_url(&self) -> Result<Url, Unavailable> {
        if let Some(u) = &self.jwks_uri {
            return Ok(u.clone());
        }
        let m = self.metadata().await?;
        Url::parse(&m.jwks_uri)
            .map_err(|e| Unavailable(format!("jwks_uri {:?} is not a URL: {e}", m.jwks_uri)))
    }

    /// The keys that can check `token`, fetching (or refetching) the set when needed.
    async fn keys_for(&self, token: &Unverified) -> Result<Arc<Vec<Jwk>>, Unavailable> {
        let mut state = self.keys.lock().await;
        let stale = state.fetched.is_none_or(|t| t.elapsed() >= CACHE_TTL);
        let unknown = !token.has_key_in(&state.keys);
        let may_retry = state.attempted.is_none_or(|t| t.elapsed() >= REFETCH_MIN);
        if (stale || unknown) && (may_retry || state.fetched.is_none()) {
            state.attempted = Some(Instant::now());
            match self.fetch_keys().await {
                Ok(keys) => {
                    state.keys = Arc::new(keys);
                    state.fetched = Some(Instant::now());
                }
                Err(e) if state.fetched.is_some() => {
                    tracing::warn!(issuer = %self.issuer, error = %e, "refreshing the key set failed; using the previous one");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(state.keys.clone())
    }

    async fn fetch_keys(&self) -> Result<Vec<Jwk>, Unavailable> {
        let url = self.jwks_url().await?;
        let what = format!("key set at {url}");
        let response = self
            .http
            .get(url.clone())
            .send()
            .await
            .map_err(|e| Unavailable(format!("{what}: {}", describe_reqwest(&e))))?;
        let body = read_ok(response, &what).await?;
        jwt::parse_jwks(&body).map_err(|e| Unavailable(format!("{what}: {e}")))
    }

    /// Verifies `token` (signature with the issuer's keys, then the claims). The outer error
    /// means the keys could not be fetched at all (a 5xx); the inner one that the token is
    /// not acceptable (a 401).
    pub async fn verify(
        &self,
        token: &str,
        expect: &Expect<'_>,
    ) -> Result<Result<Unverified, JwtError>, Unavailable> {
        let parsed = match jwt::decode(token) {
            Ok(p) => p,
            Err(e) => return Ok(Err(e)),
        };
        let keys = self.keys_for(&parsed).await?;
        if let Err(e) = parsed.verify_signature(&keys) {
            return Ok(Err(e));
        }
        Ok(parsed.check_claims(expect).map(|()| parsed))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};

    use axum::Router;
    use axum::routing::get;
    use serde_json::{Value, json};

    use super::jwt::test_keys::TestKey;
    use super::*;

    #[tokio::test]
    async fn the_key_set_is_cached_and_refetched_when_the_issuer_rotates() {
        let old = TestKey::new("2025");
        let new = TestKey::new("2026");
        let served: Arc<Mutex<Value>> = Arc::new(Mutex::new(json!({"keys": [old.jwk()]})));
        let fetches = Arc::new(AtomicUsize::new(0));
        let app = {
            let (served, fetches) = (served.clone(), fetches.clone());
            Router::new().route(
                "/jwks",
                get(move || {
                    fetches.fetch_add(1, Ordering::SeqCst);
                    let body = served.lock().unwrap().clone();
                    async move { axum::Json(body) }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let issuer = Issuer::new(
            "https://ci.test",
            http_client(Duration::from_secs(2)).unwrap(),
            Some(Url::parse(&format!("http://{addr}/jwks")).unwrap()),
        );
        let now = crate::store::unix_now();
        let claims = json!({"iss": "https://ci.test", "aud": "r", "exp": now + 60});
        let expect = Expect {
            issuer: "https://ci.test",
            audience: "r",
            nonce: None,
            now,
        };
        for _ in 0..3 {
            assert!(
                issuer
                    .verify(&old.sign(&claims), &expect)
                    .await
                    .unwrap()
                    .is_ok()
            );
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 1, "cached");
        // The issuer rotates: a token with the new key makes us fetch again (once).
        *served.lock().unwrap() = json!({"keys": [new.jwk()]});
        tokio::time::sleep(REFETCH_MIN * 2).await;
        for _ in 0..3 {
            assert!(
                issuer
                    .verify(&new.sign(&claims), &expect)
                    .await
                    .unwrap()
                    .is_ok()
            );
        }
        assert_eq!(fetches.load(Ordering::SeqCst), 2);
        // Unknown keys do not hammer the issuer: within REFETCH_MIN, no new fetch.
        let stranger = TestKey::new("nope");
        for _ in 0..5 {
            assert!(matches!(
                issuer
                    .verify(&stranger.sign(&claims), &expect)
                    .await
                    .unwrap(),
                Err(JwtError::UnknownKey(_))
            ));
        }
        assert!(fetches.load(Ordering::SeqCst) <= 3);
    }
}
