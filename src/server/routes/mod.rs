//! Router composition: each feature exposes a `Router<AppState>`; they are merged here under
//! `server.path_prefix`, with a JSON 404 fallback.

pub(super) mod keys;
mod token;

use axum::Router;

use super::error::ApiError;
use super::state::AppState;

/// All routes, under `prefix` (empty or `/something` without a trailing slash).
pub fn routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .merge(token::routes(prefix))
        .merge(keys::routes(prefix))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such endpoint; the token endpoint is `/auth`".to_owned())
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
