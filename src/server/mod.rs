//! The HTTP layer, and the only module that knows HTTP: routes, extractors, the error mapping,
//! middleware and serving.
//!
//! Layer order (outermost first): the client's own `X-Request-ID` moved aside → our request id
//! (always generated, so ids are unique) → trace span (method, path, request id, the client's
//! id) → request
//! timeout → one middleware for error logging, request metrics, the `Host` check and the body
//! size limit, in that order (so the last two's refusals are logged and counted like any
//! answer) → routes. The request head's size and read timeout, and TLS, are handled per
//! connection by [`serve`].

pub mod client_ip;
pub mod error;
pub mod extract;
pub mod guard;
pub mod lockout;
pub mod metrics;
pub mod pages;
pub mod reload;
mod routes;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::net::TcpListener;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{debug, error, info_span, warn};

use crate::config::Limits;

pub use state::AppState;

use error::InternalDetail;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The application router with its middleware, ready to serve.
pub fn router(state: AppState) -> Router {
    let current = state.current();
    let prefix = current.config.server.path_prefix.clone();
    let limits = current.config.server.limits;
    let hsts = current.config.server.tls.as_ref().is_some_and(|t| t.hsts);
    let router = routes::routes(&prefix).with_state(state.clone());
    common_layers(router, limits, state, hsts)
}

/// Only `/healthz`, `/readyz` and `/metrics`, for `server.metrics_addr`.
pub fn ops_router(state: AppState) -> Router {
    let limits = state.current().config.server.limits;
    common_layers(
        routes::ops_routes().with_state(state.clone()),
        limits,
        state,
        false,
    )
}

/// The middleware. [`per_request`] needs the matched route, so it is a layer of the router
/// (`Router::layer` wraps every route, and boxes it again). The tower layers around it do not:
/// they wrap the whole router once, as concrete types, which saves a boxed service clone and a
/// boxed future per layer and request.
fn common_layers(router: Router, limits: Limits, state: AppState, hsts: bool) -> Router {
    let router = router.layer(middleware::from_fn_with_state(
        PerRequest {
            state,
            max_body_bytes: limits.max_body_bytes,
        },
        per_request,
    ));
    let hsts = hsts.then(|| {
        SetResponseHeaderLayer::overriding(
            axum::http::header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=63072000; includeSubDomains"),
        )
    });
    let service = ServiceBuilder::new()
        .map_request(take_client_request_id)
        .layer(SetRequestIdLayer::new(REQUEST_ID, Counter::default()))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                // Path only: the query holds no secret today, but keep spans lean and safe.
                let span = info_span!(
                    "request",
                    method = %req.method(),
                    path = %req.uri().path(),
                    id,
                    client_request_id = tracing::field::Empty
                );
                if let Some(ClientRequestId(client)) = req.extensions().get() {
                    span.record("client_request_id", &**client);
                }
                span
            }),
        )
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.request_timeout,
        ))
        .option_layer(hsts)
        .service(router);
    Router::new().fallback_service(service)
}

/// How long shutdown waits for in-flight requests before giving up on them.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// A bound listener: TCP, or a unix socket.
#[derive(Debug)]
pub enum Listener {
    /// TCP.
    Tcp(TcpListener),
    /// A unix socket (the peer is local, hence trusted for forwarding headers).
    #[cfg(unix)]
    Unix(tokio::net::UnixListener, std::path::PathBuf),
}

impl Listener {
    /// Binds `addr`: `host:port`, or a socket path when `unix` (an existing socket file there is
    /// replaced).
    pub async fn bind(addr: &str, unix: bool) -> std::io::Result<Self> {
        #[cfg(unix)]
        if unix {
            let path = std::path::PathBuf::from(addr);
            if let Ok(meta) = std::fs::symlink_metadata(&path) {
                use std::os::unix::fs::FileTypeExt;
                if meta.file_type().is_socket() {
                    std::fs::remove_file(&path)?;
                }
            }
            return Ok(Self::Unix(tokio::net::UnixListener::bind(&path)?, path));
        }
        #[cfg(not(unix))]
        if unix {
            return Err(std::io::Error::other("unix sockets need a unix system"));
        }
        Ok(Self::Tcp(TcpListener::bind(addr).await?))
    }

    /// Where it listens, for the log (`127.0.0.1:5001` or `unix:/path`).
    pub fn describe(&self) -> String {
        match self {
            Self::Tcp(l) => l
                .local_addr()
                .map_or_else(|e| format!("tcp (unknown address: {e})"), |a| a.to_string()),
            #[cfg(unix)]
            Self::Unix(_, path) => format!("unix:{}", path.display()),
        }
    }
}

/// Serves `router` on `listener` (HTTP/1.1, over TLS when `tls` is set) until `shutdown`
/// resolves, then stops accepting and drains in-flight requests (bounded by
/// [`DRAIN_TIMEOUT`]). `limits` bounds the request head (size, and the time a client may take
/// to send it, TLS handshake included: slow clients are cut off).
pub async fn serve(
    listener: Listener,
    router: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes.max(8192))
        .keep_alive(true);
    let conn = Conn {
        http: Arc::new(http),
        router,
        tls: tls.map(tokio_rustls::TlsAcceptor::from),
        handshake_timeout: limits.header_read_timeout,
    };
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = accept(&listener) => match accepted {
                Ok(Accepted::Tcp(stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conn.spawn(stream, Some(peer), graceful.watcher());
                }
                #[cfg(unix)]
                Ok(Accepted::Unix(stream)) => conn.spawn(stream, None, graceful.watcher()),
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    #[cfg(unix)]
    if let Listener::Unix(_, path) = &listener {
        let _ = std::fs::remove_file(path);
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            warn!("some requests did not finish within {DRAIN_TIMEOUT:?}; stopping anyway");
        }
    }
    Ok(())
}

enum Accepted {
    Tcp(tokio::net::TcpStream, SocketAddr),
    #[cfg(unix)]
    Unix(tokio::net::UnixStream),
}

async fn accept(listener: &Listener) -> std::io::Result<Accepted> {
    match listener {
        Listener::Tcp(l) => l.accept().await.map(|(s, p)| Accepted::Tcp(s, p)),
        #[cfg(unix)]
        Listener::Unix(l, _) => l.accept().await.map(|(s, _)| Accepted::Unix(s)),
    }
}

/// What every connection needs.
struct Conn {
    http: Arc<hyper::server::conn::http1::Builder>,
    router: Router,
    tls: Option<tokio_rustls::TlsAcceptor>,
    handshake_timeout: Duration,
}

impl Conn {
    fn spawn<S>(&self, stream: S, peer: Option<SocketAddr>, watcher: Watcher)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let router = self.router.clone();
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            if let Some(peer) = peer {
                req.extensions_mut().insert(ConnectInfo(peer));
            }
            router.clone().oneshot(req)
        });
        let http = self.http.clone();
        let tls = self.tls.clone();
        let handshake_timeout = self.handshake_timeout;
        tokio::spawn(async move {
            let result =
                match tls {
                    None => {
                        watcher
                            .watch(http.serve_connection(TokioIo::new(stream), service))
                            .await
                    }
                    Some(acceptor) => {
                        let tls_stream =
                            match tokio::time::timeout(handshake_timeout, acceptor.accept(stream))
                                .await
                            {
                                Ok(Ok(s)) => s,
                                Ok(Err(e)) => {
                                    debug!(error = %e, "TLS handshake failed");
                                    return;
                                }
                                Err(_) => {
                                    debug!("TLS handshake timed out");
                                    return;
                                }
                            };
                        watcher
                            .watch(http.serve_connection(TokioIo::new(tls_stream), service))
                            .await
                    }
                };
            if let Err(e) = result {
                debug!(error = %e, "connection closed with an error");
            }
        });
    }
}

/// The state of [`per_request`].
#[derive(Debug, Clone)]
struct PerRequest {
    state: AppState,
    max_body_bytes: usize,
}

/// What every request goes through inside the timeout: the `Host` and body-size checks
/// ([`guard::check`]), then counting by matched route and status, and logging the detail of 5xx
/// answers inside the request span (the response itself stays generic). One middleware for the
/// four: each axum middleware costs a boxed future and a service clone per request.
async fn per_request(
    axum::extract::State(ctx): axum::extract::State<PerRequest>,
    req: Request,
    next: Next,
) -> Response {
    let route = metrics::Route(
        req.extensions()
            .get::<axum::extract::MatchedPath>()
            .cloned(),
    );
    let response = match guard::check(req, ctx.max_body_bytes) {
        Ok(req) => next.run(req).await,
        Err(e) => e.into_response(),
    };
    ctx.state
        .shared()
        .metrics
        .http_requests
        .get_or_create(&metrics::HttpLabels {
            route,
            status: response.status().as_u16(),
        })
        .inc();
    if let Some(InternalDetail(detail)) = response.extensions().get::<InternalDetail>() {
        error!(status = response.status().as_u16(), error = %detail, "request failed");
    }
    response
}

/// Longest client `X-Request-ID` kept for the log, in characters.
const MAX_CLIENT_REQUEST_ID: usize = 64;

/// The `X-Request-ID` a client sent, for the log only (field `client_request_id`): printable
/// ASCII (anything else becomes `?`), at most [`MAX_CLIENT_REQUEST_ID`] characters.
#[derive(Debug, Clone)]
struct ClientRequestId(Box<str>);

/// Moves the client's `X-Request-ID` (the first one; all are removed) out of the headers into
/// the extensions, so the request-id layer always sets our own: a client cannot choose, repeat
/// or forge the id that ties log lines together.
fn take_client_request_id(mut req: Request<Body>) -> Request<Body> {
    if let Some(value) = req.headers_mut().remove(&REQUEST_ID) {
        let bytes = value.as_bytes();
        let mut text: String = bytes
            .iter()
            .take(MAX_CLIENT_REQUEST_ID)
            .map(|&b| {
                if (0x20..0x7f).contains(&b) {
                    char::from(b)
                } else {
                    '?'
                }
            })
            .collect();
        if bytes.len() > MAX_CLIENT_REQUEST_ID {
            text.push('…');
        }
        if !text.trim().is_empty() {
            req.extensions_mut()
                .insert(ClientRequestId(text.into_boxed_str()));
        }
    }
    req
}

/// Request ids: a per-process random prefix and a counter (cheap, unique enough for logs).
#[derive(Debug, Clone)]
struct Counter {
    prefix: u32,
    next: std::sync::Arc<AtomicU64>,
}

impl Default for Counter {
    fn default() -> Self {
        Self {
            prefix: rand::random(),
            next: std::sync::Arc::new(AtomicU64::new(1)),
        }
    }
}

impl MakeRequestId for Counter {
    fn make_request_id<B>(&mut self, _: &axum::http::Request<B>) -> Option<RequestId> {
        use std::io::Write as _;
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        // Formatted on the stack: the header value is the only allocation.
        let mut buf = [0u8; 8 + 1 + 20];
        let mut w = &mut buf[..];
        write!(w, "{:08x}-{n}", self.prefix).ok()?;
        let left = w.len();
        let len = buf.len() - left;
        HeaderValue::from_bytes(&buf[..len])
            .ok()
            .map(RequestId::new)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keys;
#[cfg(test)]
mod tests_ops;
#[cfg(test)]
mod tests_shared;
