//! Parsing of what the token endpoint receives: the Basic `Authorization` header and the query
//! string. Every malformed input becomes an [`ApiError::BadRequest`] that says what is wrong.

use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

use super::error::ApiError;
use crate::authn::{Credentials, Secret};
use crate::token::{Scope, parse_scopes};

/// The address of the TCP peer (`None` on a unix socket), from the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        use axum::extract::ConnectInfo;
        use axum::extract::connect_info::MockConnectInfo;
        use std::net::SocketAddr;
        let ext = &parts.extensions;
        let addr = ext
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .or_else(|| ext.get::<MockConnectInfo<SocketAddr>>().map(|c| c.0));
        Ok(Self(addr.map(|a| a.ip())))
    }
}

/// Standard base64, padding optional (some clients strip it).
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Credentials from the `Authorization` header. No header, or `Basic` with an empty user and
/// password (`Og==`), is anonymous.
pub fn basic_credentials(headers: &HeaderMap) -> Result<Credentials, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(Credentials::anonymous());
    };
    if values.next().is_some() {
        return Err(bad("more than one Authorization header; send exactly one"));
    }
    let value = value
        .to_str()
        .map_err(|_| bad("the Authorization header is not ASCII"))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad(
            "unsupported Authorization scheme; send `Basic` credentials, or none for anonymous \
             access",
        ));
    }
    let encoded = rest.trim();
    if encoded.is_empty() {
        return Err(bad(
            "Basic credentials are empty; expected base64 of `user:password`",
        ));
    }
    let decoded = BASE64
        .decode(encoded)
        .map_err(|_| bad("Basic credentials are not valid base64"))?;
    let decoded =
        String::from_utf8(decoded).map_err(|_| bad("Basic credentials are not valid UTF-8"))?;
    let Some((user, password)) = decoded.split_once(':') else {
        return Err(bad(
            "Basic credentials must be `user:password` (no colon found)",
        ));
    };
    Ok(Credentials {
        account: user.to_owned(),
        password: Secret::new(password),
    })
}

/// The query parameters of `GET /auth`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenQuery {
    /// `service`.
    pub service: Option<String>,
    /// `account`.
    pub account: Option<String>,
    /// `client_id` (free text, for the log).
    pub client_id: Option<String>,
    /// `offline_token=true` (a refresh token is requested; not issued yet).
    pub offline_token: bool,
    /// Parsed and merged `scope` parameters.
    pub scopes: Vec<Scope>,
}

/// Parses the query string. Repeated `scope` parameters and space-separated scopes are both
/// accepted; other repeated parameters must agree.
pub fn token_query(raw: Option<&str>) -> Result<TokenQuery, ApiError> {
    let mut q = TokenQuery::default();
    let mut scope_params: Vec<String> = Vec::new();
    for (key, value) in form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        match key.as_ref() {
            "service" => set_once(&mut q.service, "service", value.into_owned())?,
            "account" => set_once(&mut q.account, "account", value.into_owned())?,
            "client_id" => set_once(&mut q.client_id, "client_id", value.into_owned())?,
            "offline_token" => q.offline_token = value.eq_ignore_ascii_case("true"),
            "scope" => scope_params.push(value.into_owned()),
            _ => {}
        }
    }
    q.scopes = parse_scopes(scope_params.iter().map(String::as_str))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    Ok(q)
}

/// The form fields of the OAuth2 `POST` (RFC 6749 §4.3 and §6, distribution's oauth.md).
#[derive(Debug, Default)]
pub struct OAuthForm {
    /// `grant_type`: `password` or `refresh_token`.
    pub grant_type: Option<String>,
    /// `service`.
    pub service: Option<String>,
    /// `client_id`.
    pub client_id: Option<String>,
    /// `access_type=offline` asks for a refresh token.
    pub offline: bool,
    /// `username` (password grant).
    pub username: Option<String>,
    /// `password` (password grant).
    pub password: Option<Secret>,
    /// `refresh_token` (refresh grant).
    pub refresh_token: Option<Secret>,
    /// `scope` fields: repeated (podman) and/or space-separated (docker, containerd).
    pub scopes: Vec<Scope>,
}

/// Parses an `application/x-www-form-urlencoded` body. Errors are OAuth2 errors.
pub fn oauth_form(body: &[u8]) -> Result<OAuthForm, ApiError> {
    let mut f = OAuthForm::default();
    let mut scope_params: Vec<String> = Vec::new();
    let mut password: Option<String> = None;
    let mut refresh: Option<String> = None;
    for (key, value) in form_urlencoded::parse(body) {
        let result = match key.as_ref() {
            "grant_type" => set_once(&mut f.grant_type, "grant_type", value.into_owned()),
            "service" => set_once(&mut f.service, "service", value.into_owned()),
            "client_id" => set_once(&mut f.client_id, "client_id", value.into_owned()),
            "username" => set_once(&mut f.username, "username", value.into_owned()),
            "password" => set_once(&mut password, "password", value.into_owned()),
            "refresh_token" => set_once(&mut refresh, "refresh_token", value.into_owned()),
            "access_type" => {
                f.offline = value == "offline";
                Ok(())
            }
            "scope" => {
                scope_params.push(value.into_owned());
                Ok(())
            }
            _ => Ok(()),
        };
        result.map_err(|e| match e {
            ApiError::BadRequest(m) => invalid_request(m),
            other => other,
        })?;
    }
    f.password = password.map(Secret::new);
    f.refresh_token = refresh.map(Secret::new);
    f.scopes =
        parse_scopes(scope_params.iter().map(String::as_str)).map_err(|e| ApiError::OAuth {
            status: axum::http::StatusCode::BAD_REQUEST,
            error: "invalid_scope",
            description: e.to_string(),
        })?;
    Ok(f)
}

/// An OAuth2 `invalid_request` (400).
pub fn invalid_request(description: impl Into<String>) -> ApiError {
    ApiError::OAuth {
        status: axum::http::StatusCode::BAD_REQUEST,
        error: "invalid_request",
        description: description.into(),
    }
}

fn set_once(slot: &mut Option<String>, name: &str, value: String) -> Result<(), ApiError> {
    match slot {
        Some(existing) if *existing != value => Err(ApiError::BadRequest(format!(
            "the `{name}` parameter is given twice with different values"
        ))),
        _ => {
            *slot = Some(value);
            Ok(())
        }
    }
}

fn bad(message: &str) -> ApiError {
    ApiError::BadRequest(message.to_owned())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn basic_credentials_variants() {
        let c = basic_credentials(&headers("Basic YWxpY2U6c2VjcmV0")).unwrap();
        assert_eq!(c.account, "alice");
        assert_eq!(c.password.expose(), "secret");
        // Scheme is case-insensitive, padding optional, colons allowed in the password.
        let c = basic_credentials(&headers("basic YWxpY2U6YTpi")).unwrap();
        assert_eq!((c.account.as_str(), c.password.expose()), ("alice", "a:b"));
        let c = basic_credentials(&headers("Basic YWxpY2U6c2VjcmV0ZQ")).unwrap();
        assert_eq!(c.password.expose(), "secrete");
        assert!(basic_credentials(&HeaderMap::new()).unwrap().is_anonymous());
        let anon = basic_credentials(&headers("Basic Og==")).unwrap();
        assert!(anon.is_anonymous() && anon.password.is_empty());
    }

    #[test]
    fn malformed_basic_credentials_are_bad_requests() {
        for (value, needle) in [
            ("Bearer abc", "scheme"),
            ("Basic", "empty"),
            ("Basic    ", "empty"),
            ("Basic !!!", "base64"),
            ("Basic YWxpY2U=", "no colon"),
            ("Basic /w==", "UTF-8"),
        ] {
            match basic_credentials(&headers(value)) {
                Err(ApiError::BadRequest(m)) => assert!(m.contains(needle), "{value}: {m}"),
                other => panic!("{value}: {other:?}"),
            }
        }
        let mut two = headers("Basic Og==");
        two.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic Og=="),
        );
        assert!(matches!(
            basic_credentials(&two),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn query_collects_repeated_and_space_separated_scopes() {
        let q = token_query(Some(
            "service=reg&scope=repository:a:pull&scope=repository:a:pull,push%20repository:b:pull\
             &account=alice&client_id=docker&offline_token=true&unknown=1",
        ))
        .unwrap();
        assert_eq!(q.service.as_deref(), Some("reg"));
        assert_eq!(q.account.as_deref(), Some("alice"));
        assert_eq!(q.client_id.as_deref(), Some("docker"));
        assert!(q.offline_token);
        let scopes: Vec<String> = q.scopes.iter().map(ToString::to_string).collect();
        assert_eq!(scopes, ["repository:a:pull,push", "repository:b:pull"]);
        assert_eq!(token_query(None).unwrap(), TokenQuery::default());
    }

    #[test]
    fn oauth_form_fields() {
        let f = oauth_form(
            b"grant_type=password&username=alice&password=p%26w&service=reg&client_id=containers%2Fimage\
              &access_type=offline&scope=repository:a:pull&scope=repository:a:push+repository:b:pull",
        )
        .unwrap();
        assert_eq!(f.grant_type.as_deref(), Some("password"));
        assert_eq!(f.username.as_deref(), Some("alice"));
        assert_eq!(f.password.unwrap().expose(), "p&w");
        assert_eq!(f.client_id.as_deref(), Some("containers/image"));
        assert!(f.offline);
        let scopes: Vec<String> = f.scopes.iter().map(ToString::to_string).collect();
        assert_eq!(scopes, ["repository:a:pull,push", "repository:b:pull"]);
        assert!(matches!(
            oauth_form(b"grant_type=password&grant_type=refresh_token"),
            Err(ApiError::OAuth {
                error: "invalid_request",
                ..
            })
        ));
        assert!(matches!(
            oauth_form(b"scope=bad"),
            Err(ApiError::OAuth {
                error: "invalid_scope",
                ..
            })
        ));
        let f = oauth_form(b"grant_type=refresh_token&refresh_token=abc").unwrap();
        assert!(!f.offline);
        assert_eq!(f.refresh_token.unwrap().expose(), "abc");
    }

    #[test]
    fn query_rejects_conflicts_and_bad_scopes() {
        assert!(matches!(
            token_query(Some("service=a&service=b")),
            Err(ApiError::BadRequest(m)) if m.contains("service")
        ));
        assert!(token_query(Some("service=a&service=a")).is_ok());
        assert!(matches!(
            token_query(Some("service=a&scope=nonsense")),
            Err(ApiError::BadRequest(m)) if m.contains("nonsense")
        ));
    }
}
