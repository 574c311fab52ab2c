//! Router composition: each feature exposes a `Router<AppState>`; they are merged here under
//! `server.path_prefix` (except `/healthz`, `/readyz` and `/metrics`, which stay at the root for
//! probes and scrapers), with a JSON 404 fallback.

pub(super) mod keys;
mod login;
mod ops;
mod token;

use axum::Router;

use super::error::ApiError;
use super::state::AppState;

/// All routes: the features under `prefix` (empty or `/something` without a trailing slash),
/// the probes and metrics at the root.
pub fn routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .merge(token::routes(prefix))
        .merge(keys::routes(prefix))
        .merge(login::routes(prefix))
        .merge(ops::routes(ops::Listener::Public))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

/// The probes and metrics only (for `server.metrics_addr`).
pub fn ops_routes() -> Router<AppState> {
    ops::routes(ops::Listener::Operators)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; the token endpoint is `/auth`".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
