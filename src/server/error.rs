//! The one mapping from errors to HTTP responses.
//!
//! Bodies are registry-style JSON (`{"errors":[{"code","message"}]}`), which the Docker client
//! and containers/image show to the user, or OAuth2-style (`{"error","error_description"}`) on
//! the OAuth2 flow. Internal errors get a generic message; their details
//! travel in the response extensions to the logging middleware (a conversion has no side
//! effects).

use std::sync::Arc;

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// An error answered to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: the request is malformed; the message says what is wrong.
    BadRequest(String),
    /// 401: the credentials were not accepted. Same body whatever the reason.
    Unauthorized {
        /// Realm for `WWW-Authenticate: Basic`.
        realm: String,
    },
    /// 404: no such route.
    NotFound(String),
    /// 429: too many failed logins for this account from this address.
    TooManyRequests {
        /// Seconds until the lockout ends (`Retry-After`).
        retry_after: u64,
    },
    /// 405: the route exists, not for this method.
    MethodNotAllowed,
    /// 413: the request body is longer than `server.limits.max_body_bytes`. Answered in the
    /// OAuth2 shape (`invalid_request`) whatever the route: the bodies clients send are the
    /// OAuth2 token forms.
    PayloadTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// An OAuth2 error on the POST flow: `{"error", "error_description"}` (RFC 6749 §5.2).
    OAuth {
        /// 400 or 401.
        status: StatusCode,
        /// `invalid_request`, `unsupported_grant_type`, `invalid_scope`, `invalid_grant`.
        error: &'static str,
        /// What is wrong.
        description: String,
    },
    /// 503: a backend the request needs (LDAP, SQL, a webhook, an external program, the
    /// password store) failed or cannot be reached. Retryable: `Retry-After` is set. The detail
    /// is logged, never sent.
    Unavailable(String),
    /// 500: something failed on our side. The detail is logged, never sent.
    Internal(String),
}

/// `Retry-After` of a 503: backends that went down are tried again at once, and the SQL
/// breaker lets a probe through every 2 s.
const RETRY_AFTER_SECS: &str = "2";

/// Detail of an internal error, put into the response extensions for the logging middleware.
#[derive(Debug, Clone)]
pub struct InternalDetail(pub Arc<str>);

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized { .. } => StatusCode::UNAUTHORIZED,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::OAuth { status, .. } => *status,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = match &self {
            Self::BadRequest(m) => registry("BAD_REQUEST", m.clone()),
            Self::Unauthorized { .. } => registry(
                "UNAUTHORIZED",
                "authentication required: incorrect username or password".to_owned(),
            ),
            Self::NotFound(m) => registry("NOT_FOUND", m.clone()),
            Self::TooManyRequests { retry_after } => registry(
                "TOOMANYREQUESTS",
                format!("too many failed logins; try again in {retry_after} s"),
            ),
            Self::MethodNotAllowed => registry(
                "UNSUPPORTED",
                "method not allowed on this endpoint".to_owned(),
            ),
            Self::PayloadTooLarge { limit } => oauth(
                "invalid_request",
                format!(
                    "the request body is larger than {limit} bytes (server.limits.max_body_bytes)"
                ),
            ),
            Self::OAuth {
                error, description, ..
            } => oauth(error, description.clone()),
            Self::Unavailable(_) => registry(
                "UNAVAILABLE",
                "a backend this request needs is not answering; try again shortly (the details \
                 are in the server log)"
                    .to_owned(),
            ),
            Self::Internal(_) => registry(
                "UNKNOWN",
                "internal server error; the details are in the server log".to_owned(),
            ),
        };
        let mut response = (status, Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        match self {
            Self::Unauthorized { realm } => {
                let value = format!("Basic realm=\"{}\"", realm.replace(['"', '\\'], ""));
                if let Ok(v) = HeaderValue::from_str(&value) {
                    headers.insert(header::WWW_AUTHENTICATE, v);
                } else {
                    headers.insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Basic realm=\"registry-auth\""),
                    );
                }
            }
            Self::Unavailable(detail) => {
                headers.insert(
                    header::RETRY_AFTER,
                    HeaderValue::from_static(RETRY_AFTER_SECS),
                );
                response
                    .extensions_mut()
                    .insert(InternalDetail(Arc::from(detail)));
            }
            Self::Internal(detail) => {
                response
                    .extensions_mut()
                    .insert(InternalDetail(Arc::from(detail)));
            }
            Self::TooManyRequests { retry_after } => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
            }
            Self::BadRequest(_)
            | Self::NotFound(_)
            | Self::MethodNotAllowed
            | Self::PayloadTooLarge { .. }
            | Self::OAuth { .. } => {}
        }
        response
    }
}

/// A registry-style body.
fn registry(code: &str, message: String) -> Value {
    json!({ "errors": [{ "code": code, "message": message }] })
}

/// An OAuth2-style body (RFC 6749 §5.2), for the OAuth2 flow's errors.
fn oauth(error: &str, description: String) -> Value {
    json!({ "error": error, "error_description": description })
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn body_of(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn an_unavailable_backend_is_a_retryable_503_without_the_detail() {
        let response = ApiError::Unavailable("ldap_auth: cannot connect to 10.0.0.9:636".into())
            .into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], RETRY_AFTER_SECS);
        assert_eq!(response.headers()[header::CACHE_CONTROL], "no-store");
        let detail = response.extensions().get::<InternalDetail>().unwrap();
        assert!(detail.0.contains("10.0.0.9"), "the detail goes to the log");
        let body = body_of(response).await;
        assert_eq!(body["errors"][0]["code"], "UNAVAILABLE");
        assert!(!body.to_string().contains("10.0.0.9"), "{body}");
    }

    #[tokio::test]
    async fn an_internal_error_is_a_500_without_the_detail() {
        let response = ApiError::Internal("signing failed: key 42".into()).into_response();
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let body = body_of(response).await;
        assert_eq!(body["errors"][0]["code"], "UNKNOWN");
        assert!(!body.to_string().contains("key 42"), "{body}");
    }
}
