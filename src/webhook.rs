//! Calling HTTP webhooks (`http_auth`, `http_authz`): a JSON body POSTed to a configured URL
//! (plain HTTP, or HTTPS through rustls with the aws-lc-rs provider and a configurable CA),
//! optionally signed, with a timeout, a bound on calls in flight, a short optional cache of
//! answers and one retry when the connection could not even be opened.
//!
//! * **Signing.** `Authorization: Bearer <token>` (a file's content) and/or an HMAC
//!   ([`signature`]): `X-Registry-Auth-Timestamp: <unix seconds>` and
//!   `X-Registry-Auth-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<exact body>">` (a
//!   file's content as the key), so a receiver can refuse a captured request replayed later.
//!   Neither secret is ever logged.
//! * **Answers.** Only a `200` whose body parses as the expected JSON is an answer; any other
//!   status, an unparsable body, a timeout or a connection failure is an error (a 5xx for the
//!   client, the details in the log).
//! * **Retries.** Only where nothing can have reached the webhook: a connection that could not be
//!   opened (refused, unreachable) is retried once; a pooled connection closed by the server
//!   before the request was written is retried by the client itself. Never after a response, and
//!   never after the request was sent.
//! * **Cache.** With `cache_ttl`, answers are remembered under a keyed hash of the request body
//!   (the password of an `http_auth` request is never stored), and concurrent identical calls
//!   share one request. Errors are never cached.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use aws_lc_rs::hmac;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::Uri;
use hyper::http::{HeaderValue, Method, Request, StatusCode, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use moka::future::Cache;
use serde::de::DeserializeOwned;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::authn::Secret;
use crate::health::Health;

/// Most bytes read from a webhook's answer.
const MAX_ANSWER: usize = 1024 * 1024;

/// The header carrying the HMAC of the timestamp and the body ([`signature`]).
pub const SIGNATURE_HEADER: &str = "x-registry-auth-signature";
/// The header carrying the signing time, in decimal unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-registry-auth-timestamp";

/// The value of [`SIGNATURE_HEADER`]: `sha256=` and the lower-case hex HMAC-SHA256, under
/// `key`, of the signed string: `timestamp` in decimal ASCII (no sign, no leading zeros, the
/// exact text of [`TIMESTAMP_HEADER`]), one `.`, then the exact body bytes.
pub fn signature(key: &hmac::Key, timestamp: u64, body: &[u8]) -> String {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(timestamp.to_string().as_bytes());
    ctx.update(b".");
    ctx.update(body);
    format!("sha256={}", hex(ctx.sign().as_ref()))
}

/// How to reach and sign for a webhook (validated configuration).
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Config key (`http_auth`, `http_authz`), for messages and metrics.
    pub name: &'static str,
    /// The URL (http or https).
    pub url: Uri,
    /// TLS client configuration for an `https` URL.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Time allowed for a whole call.
    pub timeout: Duration,
    /// Sent as `Authorization: Bearer …`.
    pub bearer_token: Option<Secret>,
    /// Key of the body's HMAC-SHA256.
    pub hmac_secret: Option<Secret>,
    /// Most calls in flight.
    pub max_concurrent: usize,
    /// How long answers are remembered; `None` = not at all.
    pub cache_ttl: Option<Duration>,
}

/// Why a webhook gave no usable answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` ({url}): {detail}")]
pub struct WebhookError {
    /// Config key of the webhook.
    pub name: &'static str,
    /// The URL without its query.
    pub url: String,
    /// What went wrong (never a secret).
    pub detail: String,
}

type HookClient = Client<HookConnector, Full<Bytes>>;

/// A configured webhook.
pub struct Webhook {
    settings: WebhookSettings,
    /// The URL for messages: scheme, authority and path (a query may carry a secret).
    shown_url: String,
    client: HookClient,
    slots: Semaphore,
    running: AtomicUsize,
    peak: AtomicUsize,
    cache: Option<Cache<[u8; 32], Bytes>>,
    cache_key: hmac::Key,
    signing_key: Option<hmac::Key>,
    bearer: Option<HeaderValue>,
    health: Health,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("name", &self.settings.name)
            .field("url", &self.shown_url)
            .field("timeout", &self.settings.timeout)
            .field("max_concurrent", &self.settings.max_concurrent)
            .field("cache_ttl", &self.settings.cache_ttl)
            .field("signed", &self.signing_key.is_some())
            .field("bearer", &self.bearer.is_some())
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// Builds the client. Fails when the bearer token cannot be a header value.
    pub fn new(settings: WebhookSettings) -> Result<Arc<Self>, String> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.timeout));
        let connector = HookConnector {
            http,
            tls: settings.tls.clone().map(TlsConnector::from),
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(settings.max_concurrent.max(1))
            .build(connector);
        let bearer = match &settings.bearer_token {
            None => None,
            Some(t) => {
                let mut v =
                    HeaderValue::from_str(&format!("Bearer {}", t.expose())).map_err(|_| {
                        "the bearer token holds characters a header cannot carry (a newline \
                         inside it?)"
                            .to_owned()
                    })?;
                v.set_sensitive(true);
                Some(v)
            }
        };
        let signing_key = settings
            .hmac_secret
            .as_ref()
            .map(|s| hmac::Key::new(hmac::HMAC_SHA256, s.expose().as_bytes()));
        let cache = settings.cache_ttl.map(|ttl| {
            Cache::builder()
                .max_capacity(10_000)
                .time_to_live(ttl)
                .build()
        });
        let secret: [u8; 32] = rand::random();
        let shown_url = format!(
            "{}://{}{}",
            settings.url.scheme_str().unwrap_or("http"),
            settings.url.authority().map_or("", |a| a.as_str()),
            settings.url.path()
        );
        let name = settings.name;
        Ok(Arc::new(Self {
            slots: Semaphore::new(settings.max_concurrent.max(1)),
            settings,
            shown_url,
            client,
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
            cache,
            cache_key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            signing_key,
            bearer,
            health: Health::named(name),
        }))
    }

    /// Config key.
    pub fn name(&self) -> &'static str {
        self.settings.name
    }

    /// The most calls that were ever in flight at once (a test hook).
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// What the last call found.
    pub fn health(&self) -> &Health {
        &self.health
    }

    fn error(&self, detail: impl Into<String>) -> WebhookError {
        WebhookError {
            name: self.settings.name,
            url: self.shown_url.clone(),
            detail: detail.into(),
        }
    }

    /// POSTs `body` (JSON) and parses a `200` answer as `T`, from the cache when enabled.
    pub async fn call<T: DeserializeOwned>(&self, body: Vec<u8>) -> Result<T, WebhookError> {
        let parse = |bytes: &[u8]| {
            serde_json::from_slice::<T>(bytes).map_err(|e| {
                self.error(format!(
                    "answered 200 with a body outside the contract: {e}"
                ))
            })
        };
        let Some(cache) = &self.cache else {
            let bytes = self.post(body).await?;
            return parse(&bytes);
        };
        let key = self.cache_key(&body);
        let bytes = cache
            .try_get_with(key, async {
                let bytes = self.post(body).await?;
                // Only answers that parse are remembered.
                parse(&bytes)?;
                Ok::<_, WebhookError>(bytes)
            })
            .await
            .map_err(|e: Arc<WebhookError>| (*e).clone())?;
        parse(&bytes)
    }

    fn cache_key(&self, body: &[u8]) -> [u8; 32] {
        let tag = hmac::sign(&self.cache_key, body);
        let mut key = [0u8; 32];
        key.copy_from_slice(tag.as_ref());
        key
    }

    /// One call: waits for a slot, then POSTs (retrying once when no connection could be
    /// opened) within the timeout. Records the webhook's health.
    async fn post(&self, body: Vec<u8>) -> Result<Bytes, WebhookError> {
        let _slot = self
            .slots
            .acquire()
            .await
            .map_err(|_| self.error("the webhook's slots are closed"))?;
        let now = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        let body = Bytes::from(body);
        let result = tokio::time::timeout(self.settings.timeout, self.post_with_retry(body)).await;
        self.running.fetch_sub(1, Ordering::Relaxed);
        let result = result.unwrap_or_else(|_| {
            Err(self.error(format!(
                "no answer within {:?} (the `timeout`)",
                self.settings.timeout
            )))
        });
        match &result {
            Ok(_) => self.health.up(),
            Err(e) => self.health.down(e.detail.clone()),
        }
        result
    }

    async fn post_with_retry(&self, body: Bytes) -> Result<Bytes, WebhookError> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = self.request(body.clone())?;
            match self.client.request(request).await {
                Ok(response) => return self.read(response).await,
                // Nothing was sent: the connection could not be opened.
                Err(e) if e.is_connect() && attempt == 1 => {
                    tracing::debug!(
                        webhook = self.settings.name,
                        error = %error_chain(&e),
                        "cannot connect to the webhook; retrying once"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => {
                    let what = if e.is_connect() {
                        "cannot connect"
                    } else {
                        "the request failed"
                    };
                    return Err(self.error(format!("{what}: {}", error_chain(&e))));
                }
            }
        }
    }

    fn request(&self, body: Bytes) -> Result<Request<Full<Bytes>>, WebhookError> {
        let mut builder = Request::builder()
            .method(Method::POST)
            .uri(self.settings.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("registry-auth/", env!("CARGO_PKG_VERSION")),
            );
        if let Some(bearer) = &self.bearer {
            builder = builder.header(header::AUTHORIZATION, bearer.clone());
        }
        if let Some(key) = &self.signing_key {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            builder = builder
                .header(TIMESTAMP_HEADER, now)
                .header(SIGNATURE_HEADER, signature(key, now, &body));
        }
        builder
            .body(Full::new(body))
            .map_err(|e| self.error(format!("cannot build the request: {e}")))
    }

    async fn read(
        &self,
        response: hyper::Response<hyper::body::Incoming>,
    ) -> Result<Bytes, WebhookError> {
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER)
            .collect()
            .await
            .map_err(|e| self.error(format!("cannot read the answer: {e}")))?
            .to_bytes();
        if status != StatusCode::OK {
            let excerpt: String = String::from_utf8_lossy(&body).chars().take(200).collect();
            return Err(self.error(format!(
                "answered HTTP {status} (only 200 is an answer): {excerpt:?}"
            )));
        }
        Ok(body)
    }
}

/// `e`, then its sources: hyper's top-level messages alone ("client error (Connect)") say little.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut source = e.source();
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Opens TCP connections, wrapped in TLS for `https` URLs.
#[derive(Clone)]
struct HookConnector {
    http: HttpConnector,
    tls: Option<TlsConnector>,
}

/// A connection to a webhook.
enum HookStream {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl tower::Service<Uri> for HookConnector {
    type Response = HookStream;
    type Error = Box<dyn std::error::Error + Send + Sync>;
    type Future = Pin<Box<dyn Future<Output = Result<HookStream, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let https = uri.scheme_str() == Some("https");
        let host = uri.host().unwrap_or_default().to_owned();
        let tls = self.tls.clone();
        let connecting = self.http.call(uri);
        Box::pin(async move {
            let tcp = connecting.await?;
            if !https {
                return Ok(HookStream::Plain(tcp));
            }
            let tls = tls.ok_or("an https URL without a TLS configuration")?;
            // `[::1]` in a URI is `::1` as a server name.
            let name = rustls_pki_types::ServerName::try_from(
                host.trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_owned(),
            )?;
            let stream = tls.connect(name, tcp.into_inner()).await?;
            Ok(HookStream::Tls(Box::new(TokioIo::new(stream))))
        })
    }
}

impl Connection for HookStream {
    fn connected(&self) -> Connected {
        match self {
            Self::Plain(s) => s.connected(),
            Self::Tls(s) => s.inner().get_ref().0.connected(),
        }
    }
}

impl hyper::rt::Read for HookStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl hyper::rt::Write for HookStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
