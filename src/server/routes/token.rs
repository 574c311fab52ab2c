//! The token endpoint at `<prefix>/auth` (also `/auth/token`, the path registry 2.8's
//! `autoredirect` uses):
//!
//! * `GET`: the Docker token protocol (Basic credentials or anonymous, `scope` parameters);
//! * `POST`: the OAuth2 flow (`grant_type=password` and `grant_type=refresh_token`, form body).

use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Instant, SystemTime};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use tracing::{info, warn};

use crate::authn::{AuthnAnswer, AuthnContext, Credentials};
use crate::config::AuthzBackend;
use crate::grant::{self, GrantOutcome, RefreshRequest, ScopeDecision, TokenRequest};
use crate::policy::{Decider, audit};
use crate::server::client_ip::{client_ip, ignored_forwarding};
use crate::server::error::ApiError;
use crate::server::extract::{
    BodyError, Peer, basic_credentials, invalid_request, oauth_form, read_body, token_query,
};
use crate::server::state::{AppState, Inner};

pub(super) fn routes(prefix: &str) -> Router<AppState> {
    let mut router = Router::new();
    for path in ["/auth", "/auth/token", "/auth/token/"] {
        router = router.route(&format!("{prefix}{path}"), get(token).post(oauth_token));
    }
    router
}

/// What the token handlers return: their state machine (large: authentication, the ACL and
/// signing are inlined into it) is built once on the heap, so axum and every tower layer above
/// move a pointer instead of copying it (callgrind showed a third of the per-request work
/// beyond the signature in those copies).
type Answer = Pin<Box<dyn Future<Output = Result<Response, ApiError>> + Send>>;

/// `GET`: the Docker token protocol. The request is taken whole (no extractors): each axum
/// extractor adds its future to the state machine that axum builds and moves.
fn token(State(state): State<AppState>, req: Request) -> Answer {
    let (parts, _) = req.into_parts();
    Box::pin(get_token(state, parts))
}

/// `POST`: the OAuth2 token flow.
fn oauth_token(State(state): State<AppState>, req: Request) -> Answer {
    let (parts, body) = req.into_parts();
    Box::pin(post_token(state, parts, body))
}

/// The token response. `token` and `access_token` carry the same JWT (older clients read one,
/// newer the other). `scope` (the granted scopes) is sent on the OAuth2 flow, `refresh_token`
/// only when offline access was asked for and is enabled.
#[derive(Debug, Serialize)]
struct TokenResponse<'a> {
    token: &'a str,
    access_token: &'a str,
    expires_in: u64,
    issued_at: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_token: Option<&'a str>,
}

async fn get_token(state: AppState, parts: Parts) -> Result<Response, ApiError> {
    let Peer(peer) = Peer::of(&parts.extensions);
    let headers = &parts.headers;
    let inner = state.current();
    let ip = client_address(&inner, peer, headers, false)?;
    let query = token_query(parts.uri.query())?;
    casbin_limits(&inner, &query.scopes).map_err(ApiError::BadRequest)?;
    let credentials = basic_credentials(headers)?;
    let service = required_service(&inner, query.service).map_err(ApiError::BadRequest)?;
    if let Some(account) = &query.account
        && !credentials.is_anonymous()
        && *account != credentials.account
    {
        return Err(ApiError::BadRequest(
            "the `account` parameter does not match the user in the Authorization header"
                .to_owned(),
        ));
    }
    scope_work(&inner, query.scopes.len()).map_err(ApiError::BadRequest)?;
    let request = TokenRequest {
        service,
        scopes: query.scopes,
        credentials,
        ip,
        offline: query.offline_token,
    };
    let client_id = query.client_id.unwrap_or_default();
    let outcome = password_grant(&state, &inner, request, &client_id).await?;
    respond(outcome, false, None).map_err(|()| ApiError::Unauthorized {
        realm: inner.config.token.issuer.clone(),
    })
}

async fn post_token(state: AppState, parts: Parts, body: Body) -> Result<Response, ApiError> {
    let Peer(peer) = Peer::of(&parts.extensions);
    let headers = &parts.headers;
    let inner = state.current();
    let ip = client_address(&inner, peer, headers, true)?;
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';').next().is_some_and(|m| {
                m.trim()
                    .eq_ignore_ascii_case("application/x-www-form-urlencoded")
            })
        });
    if !is_form {
        return Err(invalid_request(
            "the body must be a form (Content-Type: application/x-www-form-urlencoded)",
        ));
    }
    let limit = inner.config.server.limits.max_body_bytes;
    let body = read_body(body, limit).await.map_err(|e| match e {
        BodyError::TooLarge => ApiError::PayloadTooLarge { limit },
        BodyError::Unreadable => {
            invalid_request("the form body could not be read (malformed or cut short)")
        }
    })?;
    let form = oauth_form(&body)?;
    casbin_limits(&inner, &form.scopes).map_err(|description| ApiError::OAuth {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_scope",
        description,
    })?;
    let grant_type = form
        .grant_type
        .ok_or_else(|| invalid_request("missing `grant_type` (password or refresh_token)"))?;
    let service = required_service(&inner, form.service).map_err(invalid_request)?;
    let client_id = form
        .client_id
        .filter(|c| !c.is_empty())
        .ok_or_else(|| invalid_request("missing `client_id` (any name for your client)"))?;
    scope_work(&inner, form.scopes.len()).map_err(|description| ApiError::OAuth {
        status: StatusCode::BAD_REQUEST,
        error: "invalid_scope",
        description,
    })?;
    let invalid_grant = || ApiError::OAuth {
        status: StatusCode::UNAUTHORIZED,
        error: "invalid_grant",
        description: "invalid credentials or refresh token".to_owned(),
    };
    match grant_type.as_str() {
        "password" => {
            let username = form
                .username
                .filter(|u| !u.is_empty())
                .ok_or_else(|| invalid_request("missing `username` for grant_type=password"))?;
            let password = form
                .password
                .ok_or_else(|| invalid_request("missing `password` for grant_type=password"))?;
            let request = TokenRequest {
                service,
                scopes: form.scopes,
                credentials: Credentials {
                    account: username,
                    password,
                },
                ip,
                offline: form.offline,
            };
            let outcome = password_grant(&state, &inner, request, &client_id).await?;
            respond(outcome, true, None).map_err(|()| invalid_grant())
        }
        "refresh_token" => {
            let refresh_token = form.refresh_token.ok_or_else(|| {
                invalid_request("missing `refresh_token` for grant_type=refresh_token")
            })?;
            // With access_type=offline the same refresh token is returned (oauth.md).
            let echo = form.offline.then(|| refresh_token.clone());
            let request = RefreshRequest {
                refresh_token,
                service: service.clone(),
                scopes: form.scopes,
                ip,
            };
            // No bcrypt here (an HMAC, a stat of the revocation file, a signature): inline.
            let (outcome, problem) = grant::grant_refresh(
                &inner.config,
                &inner.issuer,
                &inner.authenticator,
                &request,
                SystemTime::now(),
            )
            .await
            .map_err(|e| grant_error(&state, e))?;
            if let Some(problem) = problem {
                warn!("{problem}");
            }
            audit(&state, &outcome, ip, &service, &client_id, "refresh_token");
            respond(outcome, true, echo.as_ref().map(|s| s.expose())).map_err(|()| invalid_grant())
        }
        other => Err(ApiError::OAuth {
            status: StatusCode::BAD_REQUEST,
            error: "unsupported_grant_type",
            description: format!(
                "grant_type {:?} is not supported; use password or refresh_token",
                truncate(other)
            ),
        }),
    }
}

/// The client address of a token request, or a 400 (OAuth2-shaped on the POST flow) when a
/// trusted proxy forwarded one that cannot be read: never the proxy's own address instead. The
/// refusal is logged (target `audit`) with the reason. While the lockout is on, warns once per
/// configuration when a peer that is not a trusted proxy sends forwarding headers: every client
/// behind it shares its address, hence its lockout counters.
fn client_address(
    inner: &Inner,
    peer: Option<IpAddr>,
    headers: &HeaderMap,
    oauth: bool,
) -> Result<Option<IpAddr>, ApiError> {
    let settings = &inner.config.server.client_ip;
    if inner.config.lockout.enabled
        && !inner.forwarding_warned.load(Ordering::Relaxed)
        && ignored_forwarding(settings, peer, headers)
        && !inner.forwarding_warned.swap(true, Ordering::Relaxed)
    {
        warn!(
            peer = %display_ip(peer),
            "requests from this peer carry X-Forwarded-For/Forwarded, but it is not in \
             server.trusted_proxies: the header is ignored, so every client behind this proxy \
             has its address, and lockout.max_failures wrong passwords for an account lock that \
             account for all of them; list the proxy in server.trusted_proxies (logged once)"
        );
    }
    client_ip(settings, peer, headers).map_err(|e| {
        info!(
            target: "audit",
            proxy = %display_ip(peer),
            header = e.header,
            reason = e.reason.as_str(),
            "token request refused (400): unreadable client address from a trusted proxy"
        );
        let message = e.to_string();
        if oauth {
            invalid_request(message)
        } else {
            ApiError::BadRequest(message)
        }
    })
}

/// A failed grant: a 503 counted against the backend that failed, or a 500 (signing).
fn grant_error(state: &AppState, e: grant::GrantError) -> ApiError {
    match e.backend() {
        Some(backend) => {
            state.shared().metrics.backend_error(backend);
            ApiError::Unavailable(e.to_string())
        }
        None => ApiError::Internal(e.to_string()),
    }
}

/// At most this many (scopes × ACL regexes that use `${type}`, `${name}` or a capture) in one
/// request: each such pair may compile a regex (tens of microseconds), and scopes are chosen by
/// the client, anonymous or not. Other regex templates are cached ([`crate::authz::Acl`]).
pub const MAX_SCOPE_REGEX_WORK: usize = 1024;

/// Refuses a request whose scopes would make the static ACL compile more than
/// [`MAX_SCOPE_REGEX_WORK`] regexes.
fn scope_work(inner: &Inner, scopes: usize) -> Result<(), String> {
    let per_scope = inner.config.acl.per_scope_regexes();
    if scopes.saturating_mul(per_scope) > MAX_SCOPE_REGEX_WORK {
        return Err(format!(
            "too many scopes for this server's ACL: {scopes} scopes × {per_scope} ACL regexes \
             that use ${{name}}, ${{type}} or a capture is more than the {MAX_SCOPE_REGEX_WORK} \
             regex evaluations allowed per request (MAX_SCOPE_REGEX_WORK); ask for at most {} \
             scopes at once",
            MAX_SCOPE_REGEX_WORK / per_scope
        ));
    }
    Ok(())
}

/// With `casbin_authz` configured, the scopes ask for no more actions than it decides in one
/// request (it runs its model once per action).
fn casbin_limits(inner: &Inner, scopes: &[crate::token::Scope]) -> Result<(), String> {
    if inner
        .config
        .authz_order
        .iter()
        .any(|b| matches!(b, AuthzBackend::Casbin(_)))
    {
        crate::authz::casbin_check_limits(scopes.iter().map(|s| s.actions.as_slice()))
    } else {
        Ok(())
    }
}

fn required_service(inner: &Inner, service: Option<String>) -> Result<String, String> {
    let service = match service {
        Some(s) if !s.is_empty() => s,
        _ => {
            return Err(
                "the `service` parameter is required (it becomes the token's audience \
                        and must equal the registry's auth.token.service)"
                    .to_owned(),
            );
        }
    };
    if let Some(allowed) = &inner.config.token.allowed_services
        && !allowed.contains(&service)
    {
        return Err(format!(
            "tokens for service {:?} are not issued here",
            truncate(&service)
        ));
    }
    Ok(service)
}

/// Runs a password grant: the lockout check, authentication through the credential cache
/// (bcrypt, when needed, on the bounded pool), then the ACL and signing inline.
async fn password_grant(
    state: &AppState,
    inner: &Arc<Inner>,
    request: TokenRequest,
    client_id: &str,
) -> Result<GrantOutcome, ApiError> {
    let shared = state.shared();
    let account = request.credentials.account.as_str();
    let lock_ip = request.ip.unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let store = inner.config.shared_state.as_ref().map(|s| s.store());
    let checked = shared.lockout.check_shared(store, account, lock_ip).await;
    if let Some(left) = checked.locked_for {
        shared.metrics.decision("locked_out");
        info!(
            target: "audit",
            account,
            client_ip = %display_ip(request.ip),
            service = %request.service,
            client_id,
            grant = "password",
            "token refused: locked out after too many failed logins"
        );
        return Err(ApiError::TooManyRequests {
            retry_after: left.as_secs().max(1),
        });
    }
    let started = Instant::now();
    let context = AuthnContext {
        client_ip: request.ip,
        service: request.service.clone(),
    };
    // Latency and failures count against the backend that answered.
    let AuthnAnswer {
        result: authn,
        backend,
    } = inner
        .authenticator
        .authenticate_in(&request.credentials, &context)
        .await;
    if !request.credentials.is_anonymous() {
        shared.metrics.authn_time(backend, started.elapsed());
    }
    let authn = authn.map_err(|e| {
        shared.metrics.backend_error(backend);
        ApiError::Unavailable(e.to_string())
    })?;
    let outcome = grant::grant_authenticated(
        &inner.config,
        &inner.issuer,
        &request,
        authn,
        SystemTime::now(),
    )
    .await
    .map_err(|e| grant_error(state, e))?;
    match &outcome {
        GrantOutcome::Unauthorized { .. } => {
            if shared.lockout.failure_shared(store, account, lock_ip).await {
                warn!(
                    account,
                    client_ip = %lock_ip,
                    "too many failed logins: refusing this account from this address for a while"
                );
            }
        }
        GrantOutcome::Issued { .. } => {
            shared
                .lockout
                .success_shared(store, checked, account, lock_ip)
                .await;
        }
    }
    audit(
        state,
        &outcome,
        request.ip,
        &request.service,
        client_id,
        "password",
    );
    Ok(outcome)
}

/// The success response, or `Err(())` for an unauthorized outcome (the caller picks the error
/// shape: registry-style for GET, OAuth2 for POST).
fn respond(
    outcome: GrantOutcome,
    with_scope: bool,
    echo_refresh: Option<&str>,
) -> Result<Response, ()> {
    let GrantOutcome::Issued {
        token,
        decisions,
        refresh,
        ..
    } = outcome
    else {
        return Err(());
    };
    let scope = with_scope.then(|| {
        decisions
            .iter()
            .filter(|d| !d.granted.is_empty())
            .map(|d| format!("{}:{}:{}", d.scope.kind, d.scope.name, d.granted.join(",")))
            .collect::<Vec<_>>()
            .join(" ")
    });
    let body = token_json(&TokenResponse {
        token: &token.token,
        access_token: &token.token,
        expires_in: token.expires_in,
        issued_at: &token.issued_at,
        scope,
        refresh_token: refresh.as_ref().map(|r| r.token.expose()).or(echo_refresh),
    });
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response();
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    Ok(response)
}

/// The JSON of a token response, as `serde_json` would write it. The token appears twice and is
/// most of the body: it is copied as it is, which is much cheaper than serde_json's byte-by-byte
/// escaping; the other strings are escaped when they need it.
fn token_json(r: &TokenResponse<'_>) -> String {
    use std::fmt::Write as _;

    fn jws(s: &str) -> &str {
        debug_assert!(
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        );
        s
    }
    fn string(out: &mut String, s: &str) {
        if s.bytes()
            .all(|b| b >= 0x20 && b != b'"' && b != b'\\' && b < 0x7f)
        {
            out.push('"');
            out.push_str(s);
            out.push('"');
        } else {
            out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned()));
        }
    }
    // A JWS in compact form is base64url and dots: copied without looking (the scan alone cost
    // as much as serde_json's escaping).
    let mut out = String::with_capacity(2 * r.token.len() + 160);
    out.push_str("{\"token\":\"");
    out.push_str(jws(r.token));
    out.push_str("\",\"access_token\":\"");
    out.push_str(jws(r.access_token));
    out.push('"');
    out.push_str(",\"expires_in\":");
    let _ = write!(out, "{}", r.expires_in);
    out.push_str(",\"issued_at\":");
    string(&mut out, r.issued_at);
    if let Some(scope) = &r.scope {
        out.push_str(",\"scope\":");
        string(&mut out, scope);
    }
    if let Some(refresh) = r.refresh_token {
        out.push_str(",\"refresh_token\":");
        string(&mut out, refresh);
    }
    out.push('}');
    out
}

/// The audit line of a token decision (target `audit`): who, from where, for which service,
/// each requested scope with the granted actions and what decided. Never a password or token.
fn audit(
    state: &AppState,
    outcome: &GrantOutcome,
    ip: Option<IpAddr>,
    service: &str,
    client_id: &str,
    grant: &str,
) {
    let metrics = &state.shared().metrics;
    match outcome {
        GrantOutcome::Unauthorized {
            reason,
            account,
            token_id,
        } => {
            metrics.decision("bad_credentials");
            info!(
                target: "audit",
                account,
                refresh_token_id = token_id.as_deref().unwrap_or(""),
                client_ip = %display_ip(ip),
                service,
                client_id,
                grant,
                reason,
                "token refused"
            );
        }
        GrantOutcome::Issued {
            account,
            source,
            labels,
            decisions,
            refresh,
            ..
        } => {
            let denied = decisions.iter().filter(|d| d.granted.is_empty()).count();
            let partial = decisions
                .iter()
                .any(|d| !d.granted.is_empty() && d.granted.len() < d.scope.actions.len());
            metrics.decision(match (denied, partial) {
                (0, false) => "granted",
                (n, _) if n == decisions.len() => "denied",
                _ => "partially_denied",
            });
            // The fields are a stable format (policy::audit, docs/src/reference/audit-log.md), read
            // back by `acl replay`; `scopes` stays last (its text value has spaces).
            info!(
                target: "audit",
                audit_version = audit::AUDIT_VERSION,
                account,
                source,
                labels = audit::encode_labels(labels).as_str(),
                client_ip = %display_ip(ip),
                service,
                client_id,
                grant,
                refresh_token_id = refresh.as_ref().map_or("", |r| r.id.as_str()),
                scopes = %AuditScopes(decisions),
                "token issued"
            );
        }
    }
}

/// The audit line's `scopes` field, written where the line is written (no `String`): the text
/// of [`audit::encode_scopes`].
struct AuditScopes<'a>(&'a [ScopeDecision]);

impl std::fmt::Display for AuditScopes<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        audit::write_scopes(
            f,
            self.0.iter().map(|d| {
                (
                    &d.scope,
                    d.granted.as_slice(),
                    Decider::from_grant(d.decided_by),
                )
            }),
        )
    }
}

/// A client address for a log field, formatted where the line is written (no `String`):
/// the address, or `unix` for a unix-socket peer.
fn display_ip(ip: Option<IpAddr>) -> DisplayIp {
    DisplayIp(ip)
}

struct DisplayIp(Option<IpAddr>);

impl std::fmt::Display for DisplayIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("unix"),
        }
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_json_is_what_serde_json_writes() {
        let cases = [
            ("aGVhZGVy.Y2xhaW1z.c2ln", None, None),
            (
                "a.b.c",
                Some("repository:x/y:pull,push registry:catalog:*".to_owned()),
                Some("rat1.abc_-"),
            ),
            // Never produced, but escaped the same way if they were.
            (
                "x-Y_0.a.b",
                Some("ñ \"quote\" back\\slash \u{1} \u{7f}".to_owned()),
                Some("\n"),
            ),
            ("", Some(String::new()), None),
        ];
        for (token, scope, refresh_token) in cases {
            let r = TokenResponse {
                token,
                access_token: token,
                expires_in: 900,
                issued_at: "2026-11-22T23:59:59Z",
                scope,
                refresh_token,
            };
            let ours = token_json(&r);
            assert_eq!(ours, serde_json::to_string(&r).unwrap());
            let parsed: serde_json::Value = serde_json::from_str(&ours).unwrap();
            assert_eq!(parsed["token"], token);
        }
    }
}
