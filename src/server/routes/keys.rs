//! The keys registries must trust, for their configuration:
//!
//! * `GET <prefix>/.well-known/jwks.json`: the JWK Set (`application/jwk-set+json`) for
//!   distribution v3's `auth.token.jwks` file, every key with the `kid` our tokens carry;
//! * `GET <prefix>/rootcertbundle.pem`: every published certificate (`application/x-pem-file`),
//!   for `auth.token.rootcertbundle`.
//!
//! Both bodies are computed once at start-up ([`KeyDocuments`]) and served as shared bytes.
//! Registries read these files only when they start, so clients may cache them for a while.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::server::state::AppState;
use crate::token::{HeaderMode, PublishedKeys};

/// `Cache-Control` of both documents: they change only when the server restarts.
const CACHE_CONTROL: HeaderValue = HeaderValue::from_static("public, max-age=300");
const JWKS_TYPE: HeaderValue = HeaderValue::from_static("application/jwk-set+json");
const PEM_TYPE: HeaderValue = HeaderValue::from_static("application/x-pem-file");

/// The published documents, encoded once.
#[derive(Debug, Clone)]
pub struct KeyDocuments {
    jwks: Bytes,
    bundle: Bytes,
}

impl KeyDocuments {
    /// Encodes the JWK Set (with the `kid`s of `mode`) and the certificate bundle.
    pub fn new(keys: &PublishedKeys, mode: HeaderMode) -> Result<Self, serde_json::Error> {
        Ok(Self {
            jwks: Bytes::from(keys.jwks_json(mode, true)?),
            bundle: Bytes::from(keys.root_bundle_pem()),
        })
    }
}

pub(super) fn routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(&format!("{prefix}/.well-known/jwks.json"), get(jwks))
        .route(&format!("{prefix}/rootcertbundle.pem"), get(bundle))
}

async fn jwks(State(state): State<AppState>) -> Response {
    document(JWKS_TYPE, state.current().keys.jwks.clone())
}

async fn bundle(State(state): State<AppState>) -> Response {
    document(PEM_TYPE, state.current().keys.bundle.clone())
}

fn document(content_type: HeaderValue, body: Bytes) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, CACHE_CONTROL),
        ],
        body,
    )
        .into_response()
}
