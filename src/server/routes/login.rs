//! The web-login routes under `server.path_prefix`:
//!
//! * `GET /` — the index: the configured logins, or (none configured) a page naming the issuer
//!   and the token endpoint, as docker_auth's index;
//! * `GET /github_auth`, `/google_auth`, `/oidc_auth`, `/gitlab_auth` — without `code`: start
//!   the login (sealed cookie, redirect to the provider); with `code` and `state`: the
//!   callback (check the state against the cookie, exchange the code, mint a password, show the
//!   result page);
//! * `POST /sign_out` — revoke a minted password.
//!
//! Each route answers 404 while its login is not configured (routes are fixed at start-up; the
//! configuration may change on reload).

use axum::Router;
use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tracing::{error, info, warn};

use crate::server::error::ApiError;
use crate::server::extract::{BodyError, read_body};
use crate::server::pages::{self, LoginLink, ResultPage};
use crate::server::state::{AppState, Inner};
use crate::store::unix_now;
use crate::weblogin::session::cookie_name;
use crate::weblogin::{LOGIN_TIMEOUT, LoginError, Provider, ProviderKind, WebLogins};

pub(super) fn routes(prefix: &str) -> Router<AppState> {
    let mut router = Router::new()
        .route(&format!("{prefix}/"), get(index))
        .route(&format!("{prefix}/sign_out"), post(sign_out));
    if !prefix.is_empty() {
        router = router.route(prefix, get(index));
    }
    for kind in ProviderKind::ALL {
        router = router.route(
            &format!("{prefix}/{}", kind.key()),
            get(
                move |state: State<AppState>, headers: HeaderMap, query: RawQuery| {
                    login(kind, state, headers, query)
                },
            ),
        );
    }
    router
}

fn not_found() -> Response {
    ApiError::NotFound("no such endpoint; the token endpoint is `/auth`".to_owned()).into_response()
}

fn index_path(inner: &Inner) -> String {
    format!("{}/", inner.config.server.path_prefix)
}

async fn index(State(state): State<AppState>) -> Response {
    let inner = state.current();
    let prefix = &inner.config.server.path_prefix;
    let Some(logins) = &inner.config.web_logins else {
        // docker_auth's index: a small page naming the issuer, not a 404.
        return pages::server_index(&inner.config.token.issuer, &format!("{prefix}/auth"));
    };
    let links: Vec<LoginLink<'_>> = logins
        .providers()
        .iter()
        .map(|p| LoginLink {
            href: format!("{prefix}/{}", p.kind.key()),
            title: p.title(),
        })
        .collect();
    pages::index(&inner.config.token.issuer, &links)
}

/// The query parameters of a login route.
#[derive(Debug, Default)]
struct LoginQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

fn parse_query(raw: Option<&str>) -> LoginQuery {
    let mut q = LoginQuery::default();
    for (k, v) in form_urlencoded::parse(raw.unwrap_or_default().as_bytes()) {
        let slot = match k.as_ref() {
            "code" => &mut q.code,
            "state" => &mut q.state,
            "error" => &mut q.error,
            _ => continue,
        };
        if slot.is_none() && v.len() <= 4096 {
            *slot = Some(v.into_owned());
        }
    }
    q
}

async fn login(
    kind: ProviderKind,
    State(state): State<AppState>,
    headers: HeaderMap,
    RawQuery(raw): RawQuery,
) -> Response {
    let inner = state.current();
    let Some(logins) = inner.config.web_logins.clone() else {
        return not_found();
    };
    let Some(provider) = logins.provider(kind).cloned() else {
        return not_found();
    };
    let query = parse_query(raw.as_deref());
    let back = index_path(&inner);
    if let Some(e) = &query.error {
        info!(provider = kind.key(), error = %truncate(e), "the provider returned an error to the callback");
        let message = if e == "access_denied" {
            format!("You declined the sign-in at {}.", provider.title())
        } else {
            format!("{} reported an error: {}.", provider.title(), truncate(e))
        };
        let mut r = pages::error(StatusCode::FORBIDDEN, "Sign-in cancelled", &message, &back);
        clear_cookie(&mut r, &inner, kind, &headers);
        return r;
    }
    match (&query.code, &query.state) {
        (Some(code), Some(st)) => {
            callback(&inner, &logins, &provider, code, st, &headers, &back).await
        }
        (Some(_), None) => {
            let mut r = login_error(&LoginError::BadState, &provider, &back);
            clear_cookie(&mut r, &inner, kind, &headers);
            r
        }
        _ => start(&inner, &logins, &provider, &headers, &back).await,
    }
}

/// Starts a login: seal the state, verifier and nonce into a cookie and send the browser to the
/// provider.
async fn start(
    inner: &Inner,
    logins: &WebLogins,
    provider: &Provider,
    headers: &HeaderMap,
    back: &str,
) -> Response {
    let Some(redirect_uri) = redirect_uri(inner, provider, headers) else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Cannot sign in",
            "The request has no Host header to build the callback address from; configure \
             redirect_url.",
            back,
        );
    };
    match logins.begin(provider, &redirect_uri).await {
        Ok(started) => {
            let mut r = (StatusCode::SEE_OTHER, "").into_response();
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&started.location) {
                h.insert(header::LOCATION, v);
            }
            let cookie = format!(
                "{}={}; Path={}; Max-Age={}; HttpOnly; SameSite=Lax{}",
                cookie_name(provider.kind.key()),
                started.cookie,
                cookie_path(inner, provider.kind),
                LOGIN_TIMEOUT.as_secs(),
                if is_https(inner, headers) {
                    "; Secure"
                } else {
                    ""
                }
            );
            if let Ok(v) = HeaderValue::from_str(&cookie) {
                h.insert(header::SET_COOKIE, v);
            }
            h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            h.insert(
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            );
            r
        }
        Err(e) => login_error(&e, provider, back),
    }
}

#[allow(clippy::too_many_arguments)]
async fn callback(
    inner: &Inner,
    logins: &WebLogins,
    provider: &Provider,
    code: &str,
    state: &str,
    headers: &HeaderMap,
    back: &str,
) -> Response {
    let cookie = read_cookie(headers, &cookie_name(provider.kind.key()));
    let mut response = match logins
        .complete(provider, code, state, cookie.as_deref())
        .await
    {
        Ok(minted) => {
            let lifetime = minted.expires_at.saturating_sub(unix_now());
            let expires = time::OffsetDateTime::from_unix_timestamp(
                i64::try_from(minted.expires_at).unwrap_or(i64::MAX),
            )
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
            let valid_for = in_words(lifetime);
            let sign_out = format!("{}/sign_out", inner.config.server.path_prefix);
            pages::result(&ResultPage {
                provider: provider.title(),
                user: &minted.user,
                password: minted.password.expose(),
                expires: &expires,
                valid_for: &valid_for,
                registry: provider.common.registry_url.as_deref(),
                labels: &minted.labels,
                sign_out: &sign_out,
            })
        }
        Err(e) => login_error(&e, provider, back),
    };
    clear_cookie(&mut response, inner, provider.kind, headers);
    response
}

fn login_error(e: &LoginError, provider: &Provider, back: &str) -> Response {
    match e {
        LoginError::BadState => {
            info!(
                provider = provider.kind.key(),
                "web login refused: state mismatch or no login cookie"
            );
            pages::error(
                StatusCode::BAD_REQUEST,
                "Sign-in link not valid",
                &e.to_string(),
                back,
            )
        }
        LoginError::Refused(why) => {
            pages::error(StatusCode::FORBIDDEN, "Access refused", why, back)
        }
        LoginError::Unavailable(why) => {
            warn!(provider = provider.kind.key(), error = %why, "identity provider unavailable");
            let mut r = pages::error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("{} is not reachable", provider.title()),
                &format!(
                    "{} cannot be reached right now, so you cannot sign in. Please try again in \
                     a few minutes.",
                    provider.title()
                ),
                back,
            );
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
            r
        }
        LoginError::StoreUnavailable(why) => {
            error!(provider = provider.kind.key(), error = %why, "web login failed: password store");
            store_unavailable(
                "The sign-in could not be completed: this server cannot reach its password store \
                 right now. Please try again in a minute.",
                back,
            )
        }
        LoginError::Internal(why) => {
            error!(provider = provider.kind.key(), error = %why, "web login failed");
            pages::error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Something went wrong",
                "The sign-in could not be completed because of a problem on this server; the \
                 details are in its log.",
                back,
            )
        }
    }
}

/// The callback URL: `redirect_url` when configured, else this request's scheme and host.
fn redirect_uri(inner: &Inner, provider: &Provider, headers: &HeaderMap) -> Option<String> {
    if let Some(r) = &provider.common.redirect_url {
        return Some(r.clone());
    }
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-.:[]".contains(c))
        })?;
    Some(format!(
        "{}://{host}{}/{}",
        if is_https(inner, headers) {
            "https"
        } else {
            "http"
        },
        inner.config.server.path_prefix,
        provider.kind.key()
    ))
}

/// HTTPS on our listener, or behind a proxy that says so.
fn is_https(inner: &Inner, headers: &HeaderMap) -> bool {
    inner.config.server.tls.is_some()
        || headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("https"))
}

fn cookie_path(inner: &Inner, kind: ProviderKind) -> String {
    format!("{}/{}", inner.config.server.path_prefix, kind.key())
}

fn clear_cookie(r: &mut Response, inner: &Inner, kind: ProviderKind, headers: &HeaderMap) {
    let cookie = format!(
        "{}=; Path={}; Max-Age=0; HttpOnly; SameSite=Lax{}",
        cookie_name(kind.key()),
        cookie_path(inner, kind),
        if is_https(inner, headers) {
            "; Secure"
        } else {
            ""
        }
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        r.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The value of cookie `name`.
fn read_cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// "30 days", "12 hours", "45 minutes".
fn in_words(secs: u64) -> String {
    let (n, unit) = if secs >= 2 * 86400 {
        (secs / 86400, "days")
    } else if secs >= 2 * 3600 {
        (secs / 3600, "hours")
    } else {
        (secs.div_ceil(60), "minutes")
    };
    format!("{n} {unit}")
}

fn truncate(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(64).collect()
}

/// `POST /sign_out` with the form field `password`: revokes that minted password.
async fn sign_out(State(state): State<AppState>, headers: HeaderMap, body: Body) -> Response {
    let inner = state.current();
    let Some(logins) = inner.config.web_logins.clone() else {
        return not_found();
    };
    let back = index_path(&inner);
    let limit = inner.config.server.limits.max_body_bytes;
    let body = match read_body(body, limit).await {
        Ok(body) => body,
        Err(BodyError::TooLarge) => return ApiError::PayloadTooLarge { limit }.into_response(),
        Err(BodyError::Unreadable) => {
            return pages::error(
                StatusCode::BAD_REQUEST,
                "Cannot sign out",
                "The form could not be read (malformed or cut short).",
                &back,
            );
        }
    };
    let is_form = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let password = is_form
        .then(|| {
            form_urlencoded::parse(&body)
                .find(|(k, _)| k == "password")
                .map(|(_, v)| v.into_owned())
        })
        .flatten();
    let Some(password) = password else {
        return pages::error(
            StatusCode::BAD_REQUEST,
            "Cannot sign out",
            "The form did not say which password to revoke.",
            &back,
        );
    };
    match logins.sign_out(&password).await {
        Ok(revoked) => {
            if revoked {
                info!("web login: a minted password was revoked (sign out)");
            }
            pages::signed_out(revoked, &back)
        }
        Err(e) => {
            error!(error = %e, "sign out failed: password store");
            store_unavailable(
                "The password could not be revoked: this server cannot reach its password store \
                 right now. It still works; please try again in a minute.",
                &back,
            )
        }
    }
}

/// A 503 page (with `Retry-After`) for a password store that cannot be reached.
fn store_unavailable(message: &str, back: &str) -> Response {
    let mut r = pages::error(
        StatusCode::SERVICE_UNAVAILABLE,
        "Temporarily unavailable",
        message,
        back,
    );
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static("30"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_queries_are_parsed() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; registry_auth_github_auth=xyz; b=2"),
        );
        assert_eq!(
            read_cookie(&h, "registry_auth_github_auth").as_deref(),
            Some("xyz")
        );
        assert_eq!(read_cookie(&h, "nope"), None);
        let q = parse_query(Some("code=c%2F1&state=s&extra=1"));
        assert_eq!(q.code.as_deref(), Some("c/1"));
        assert_eq!(q.state.as_deref(), Some("s"));
        assert!(q.error.is_none());
        assert_eq!(in_words(30 * 86400), "30 days");
        assert_eq!(in_words(86400 + 5), "24 hours");
        assert_eq!(in_words(3600), "60 minutes");
    }
}
