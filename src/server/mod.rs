//! The HTTP layer, and the only module that knows HTTP: routes, extractors, the error mapping,
//! middleware and serving.
//!
//! Layer order (outermost first): request id → trace span (method, path, request id) → error
//! logging → timeout → routes.

pub mod error;
pub mod extract;
mod routes;
pub mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use tokio::net::TcpListener;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use tracing::{error, info_span};

pub use state::AppState;

use error::InternalDetail;

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// Upper bound for one request, so shutdown drains cannot hang on a stuck client.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// The application router with its middleware, ready to serve.
pub fn router(state: AppState) -> Router {
    let prefix = state.inner().config.server.path_prefix.clone();
    routes::routes(&prefix)
        .with_state(state)
        .layer(middleware::from_fn(log_internal_errors))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request<Body>| {
                let id = req
                    .headers()
                    .get(&REQUEST_ID)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                // Path only: the query holds no secret today, but keep spans lean and safe.
                info_span!("request", method = %req.method(), path = %req.uri().path(), id)
            }),
        )
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(SetRequestIdLayer::new(REQUEST_ID, Counter::default()))
}

/// Serves `router` on `listener` until `shutdown` resolves, then drains in-flight requests.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// Logs the detail of 5xx answers inside the request span (the response itself stays generic).
async fn log_internal_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    if let Some(InternalDetail(detail)) = response.extensions().get::<InternalDetail>() {
        error!(status = response.status().as_u16(), error = %detail, "request failed");
    }
    response
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
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        HeaderValue::from_str(&format!("{:08x}-{n}", self.prefix))
            .ok()
            .map(RequestId::new)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_keys;
