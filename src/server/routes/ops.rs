//! Operations endpoints, always at the root (not under `server.path_prefix`) for probes and
//! scrapers: `/healthz` (liveness), `/readyz` (readiness, with details in JSON) and `/metrics`.
//!
//! `/readyz` on the public listener shows each backend's state (`up`, `down`, `unknown`) but
//! never the error text of a failure, which can carry a user's DN or a URL; the same route on
//! `server.metrics_addr` (an operators' listener) shows the details, as does the log.

use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::json;

use crate::config::{AuthnBackend, AuthzBackend, Config};
use crate::server::error::ApiError;
use crate::server::state::AppState;

/// Which listener the routes serve: the public one hides backend error texts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Listener {
    /// The main listener (clients, the registry, the internet).
    Public,
    /// `server.metrics_addr`.
    Operators,
}

pub(super) fn routes(listener: Listener) -> Router<AppState> {
    let readyz = match listener {
        Listener::Public => get(readyz_public),
        Listener::Operators => get(readyz_detailed),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", readyz)
        .route("/metrics", get(metrics))
}

/// Liveness: the process answers.
async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz_public(State(state): State<AppState>) -> Response {
    readyz(&state, false).await
}

async fn readyz_detailed(State(state): State<AppState>) -> Response {
    readyz(&state, true).await
}

/// Readiness: ready while tokens can be issued (a configuration and a signing key are loaded,
/// which is true for the life of the process). A backend that is down, or a signing certificate
/// past its end, shows as `degraded` in the body but keeps the replica ready: taking every
/// replica out would stop anonymous pulls too. Backend error texts only when `detailed`.
async fn readyz(state: &AppState, detailed: bool) -> Response {
    let inner = state.current();
    let key = inner.issuer.key();
    let now = SystemTime::now();
    let expires_in = match key.not_after().duration_since(now) {
        Ok(d) => i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_secs()).unwrap_or(i64::MAX),
    };
    let mut problems: Vec<String> = Vec::new();
    if expires_in <= 0 {
        problems.push("the signing certificate has expired".to_owned());
    }
    let mut backends: serde_json::Map<String, serde_json::Value> = backend_health(&inner.config)
        .await
        .into_iter()
        .map(|(name, report)| (name.to_owned(), report))
        .collect();
    for (name, report) in &backends {
        if report["status"] == "down" {
            problems.push(if detailed {
                format!(
                    "{name} is down: {}",
                    report["error"].as_str().unwrap_or("unknown error")
                )
            } else {
                format!("{name} is down")
            });
        }
    }
    if !detailed {
        for report in backends.values_mut() {
            *report = crate::health::public(std::mem::take(report));
        }
    }
    let loaded = time::OffsetDateTime::from(state.loaded_at())
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    let body = json!({
        "status": if problems.is_empty() { "ready" } else { "degraded" },
        "problems": problems,
        "config": {
            "file": inner.config.file.display().to_string(),
            "loaded_at": loaded,
        },
        "signing_key": {
            "algorithm": key.algorithm().as_str(),
            "kid": key.public_key().kid(inner.config.token.header_mode),
            "certificate_expires_in_seconds": expires_in,
        },
        "backends": backends,
    });
    (StatusCode::OK, axum::Json(body)).into_response()
}

/// How long `/readyz` waits for an LDAP probe; a slower one shows at the next call.
const PROBE_WAIT: Duration = Duration::from_secs(1);

/// The external backends' state: `(name, {status: up|down|unknown, error, …})`. The LDAP server
/// is probed when its state is a few seconds old; webhooks, SQL databases (`sql_auth`,
/// `acl_sql`) and the `store` (minted passwords, shared state) report what their last call
/// found. `/readyz` shows it, `/metrics` exports it as `registry_auth_backend_up`.
async fn backend_health(config: &Config) -> Vec<(&'static str, serde_json::Value)> {
    let mut out = Vec::new();
    for backend in &config.authn_order {
        match backend {
            AuthnBackend::Ldap(ldap) => {
                out.push((backend.name(), ldap.check(PROBE_WAIT).await));
            }
            AuthnBackend::Http(http) => {
                out.push((backend.name(), http.webhook().health().report()));
            }
            AuthnBackend::Sql(sql) => {
                out.push((backend.name(), sql.health().report()));
            }
            _ => {}
        }
    }
    for backend in &config.authz_order {
        match backend {
            AuthzBackend::Http(http) => {
                out.push((backend.name(), http.webhook().health().report()));
            }
            AuthzBackend::Sql(sql) => {
                out.push((backend.name(), sql.health().report()));
            }
            _ => {}
        }
    }
    // One store serves the web logins and the shared state (revocations, lockout counters).
    if let Some(shared) = &config.shared_state {
        out.push(("store", shared.store().health().report()));
    } else if let Some(logins) = &config.web_logins {
        out.push(("store", logins.store().health().report()));
    }
    out
}

async fn metrics(State(state): State<AppState>) -> Result<Response, ApiError> {
    let shared = state.shared();
    let inner = state.current();
    shared
        .metrics
        .set_certificate_expiry(inner.issuer.key().not_after(), SystemTime::now());
    let states: Vec<(&'static str, Option<bool>)> = backend_health(&inner.config)
        .await
        .into_iter()
        .map(|(name, report)| {
            let up = match report["status"].as_str() {
                Some("up") => Some(true),
                Some("down") => Some(false),
                _ => None,
            };
            (name, up)
        })
        .collect();
    let text = shared
        .metrics
        .encode_with_backends_up(&states)
        .map_err(|e| ApiError::Internal(format!("cannot encode metrics: {e}")))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/openmetrics-text; version=1.0.0; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}
