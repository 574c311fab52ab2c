//! The token endpoint: `GET <prefix>/auth` (also `/auth/token`, the path registry 2.8's
//! `autoredirect` uses), in the Docker token protocol.

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::extract::{ConnectInfo, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tracing::{debug, info};

use crate::grant::{self, GrantOutcome, ScopeDecision, TokenRequest};
use crate::server::error::ApiError;
use crate::server::extract::{basic_credentials, token_query};
use crate::server::state::AppState;

pub(super) fn routes(prefix: &str) -> Router<AppState> {
    Router::new()
        .route(
            &format!("{prefix}/auth"),
            get(token).post(oauth_not_supported),
        )
        .route(
            &format!("{prefix}/auth/token"),
            get(token).post(oauth_not_supported),
        )
        .route(
            &format!("{prefix}/auth/token/"),
            get(token).post(oauth_not_supported),
        )
}

/// The token response. `token` and `access_token` carry the same JWT (older clients read one,
/// newer the other). No `refresh_token`: it is only ever issued once the OAuth2 POST flow works.
#[derive(Debug, Serialize)]
struct TokenResponse<'a> {
    token: &'a str,
    access_token: &'a str,
    expires_in: u64,
    issued_at: &'a str,
}

async fn token(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Result<Response, ApiError> {
    let inner = state.inner().clone();
    let config = &inner.config;
    let query = token_query(raw.as_deref())?;
    let credentials = basic_credentials(&headers)?;
    let service = match query.service {
        Some(s) if !s.is_empty() => s,
        _ => {
            return Err(ApiError::BadRequest(
                "the `service` parameter is required (it becomes the token's audience and must \
                 equal the registry's auth.token.service)"
                    .to_owned(),
            ));
        }
    };
    if let Some(allowed) = &config.token.allowed_services
        && !allowed.contains(&service)
    {
        return Err(ApiError::BadRequest(format!(
            "tokens for service {service:?} are not issued here"
        )));
    }
    if let Some(account) = &query.account
        && !credentials.is_anonymous()
        && *account != credentials.account
    {
        return Err(ApiError::BadRequest(
            "the `account` parameter does not match the user in the Authorization header"
                .to_owned(),
        ));
    }
    let request = TokenRequest {
        service,
        scopes: query.scopes,
        credentials,
        ip: Some(peer.ip()),
    };
    let client_id = query.client_id;
    // bcrypt and signing are CPU-bound: keep them off the async workers.
    let task_state = inner.clone();
    let (outcome, request) = tokio::task::spawn_blocking(move || {
        let s = &task_state;
        let outcome = grant::grant(
            &s.config.authn,
            &s.config.acl,
            &s.issuer,
            &request,
            SystemTime::now(),
        );
        (outcome, request)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("token task failed: {e}")))?;
    let outcome = outcome.map_err(|e| ApiError::Internal(e.to_string()))?;
    let account = request.credentials.account.as_str();
    match outcome {
        GrantOutcome::Unauthorized => {
            info!(
                account,
                service = %request.service,
                client_ip = %peer.ip(),
                client_id = client_id.as_deref().unwrap_or(""),
                "token refused: bad credentials"
            );
            Err(ApiError::Unauthorized {
                realm: config.token.issuer.clone(),
            })
        }
        GrantOutcome::Issued { token, decisions } => {
            info!(
                account,
                service = %request.service,
                client_ip = %peer.ip(),
                client_id = client_id.as_deref().unwrap_or(""),
                scopes = %DecisionsDisplay(&decisions),
                "token issued"
            );
            debug!(expires_in = token.expires_in, "token lifetime");
            let body = TokenResponse {
                token: &token.token,
                access_token: &token.token,
                expires_in: token.expires_in,
                issued_at: &token.issued_at,
            };
            let mut response = Json(body).into_response();
            let h = response.headers_mut();
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
            Ok(response)
        }
    }
}

/// OAuth2 `POST` on the realm is not implemented yet. The token protocol says clients fall back
/// to `GET` when the POST answers 404.
async fn oauth_not_supported() -> ApiError {
    ApiError::NotFound("the OAuth2 token flow (POST) is not supported; use GET".to_owned())
}

/// `repository:a:pull,push→pull[acl 2]; registry:catalog:*→-[no match]` for the log line.
struct DecisionsDisplay<'a>(&'a [ScopeDecision]);

impl std::fmt::Display for DecisionsDisplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}→", d.scope)?;
            if d.granted.is_empty() {
                f.write_str("-")?;
            } else {
                f.write_str(&d.granted.join(","))?;
            }
            match d.entry {
                Some(e) => write!(f, " [acl {e}]")?,
                None => f.write_str(" [no match]")?,
            }
        }
        Ok(())
    }
}
