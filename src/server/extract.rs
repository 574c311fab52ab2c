//! Parsing of what the token endpoint receives: the Basic `Authorization` header, the query
//! string, the OAuth2 form and its body. Every malformed input becomes an
//! [`ApiError::BadRequest`] (an OAuth2 `invalid_request` on the `POST` flow) that says what is
//! wrong.

use std::borrow::Cow;

use axum::body::{Body, Bytes, to_bytes};
use axum::http::{HeaderMap, header};
use base64::Engine;
use base64::alphabet::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use http_body_util::LengthLimitError;

use super::error::ApiError;
use crate::authn::{Credentials, Secret};
use crate::token::{Scope, parse_scopes};

/// The address of the TCP peer (`None` on a unix socket), from the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub Option<std::net::IpAddr>);

impl Peer {
    /// The peer recorded in a request's extensions by the accept loop (or by tests).
    pub fn of(ext: &axum::http::Extensions) -> Self {
        use axum::extract::ConnectInfo;
        use axum::extract::connect_info::MockConnectInfo;
        use std::net::SocketAddr;
        let addr = ext
            .get::<ConnectInfo<SocketAddr>>()
            .map(|c| c.0)
            .or_else(|| ext.get::<MockConnectInfo<SocketAddr>>().map(|c| c.0));
        Self(addr.map(|a| a.ip()))
    }
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self::of(&parts.extensions))
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
/// accepted; other repeated parameters must agree. The parameters read must be UTF-8 once
/// percent-decoded, and `service`, `account` and `client_id` printable text.
pub fn token_query(raw: Option<&str>) -> Result<TokenQuery, ApiError> {
    let mut q = TokenQuery::default();
    let mut scope_params: Vec<String> = Vec::new();
    for (key, value) in pairs(raw.unwrap_or("").as_bytes()) {
        let result = match key.as_ref() {
            b"service" => {
                printable("service", value).and_then(|v| set_once(&mut q.service, "service", v))
            }
            b"account" => {
                printable("account", value).and_then(|v| set_once(&mut q.account, "account", v))
            }
            b"client_id" => printable("client_id", value)
                .and_then(|v| set_once(&mut q.client_id, "client_id", v)),
            b"offline_token" => utf8("offline_token", value)
                .map(|v| q.offline_token = v.eq_ignore_ascii_case("true")),
            b"scope" => utf8("scope", value).map(|v| scope_params.push(v)),
            _ => Ok(()),
        };
        result.map_err(ApiError::BadRequest)?;
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

/// Parses an `application/x-www-form-urlencoded` body. Errors are OAuth2 errors. The fields
/// read must be UTF-8 once percent-decoded (like Basic credentials), and `service` and
/// `client_id` printable text.
pub fn oauth_form(body: &[u8]) -> Result<OAuthForm, ApiError> {
    let mut f = OAuthForm::default();
    let mut scope_params: Vec<String> = Vec::new();
    let mut password: Option<String> = None;
    let mut refresh: Option<String> = None;
    for (key, value) in pairs(body) {
        let result = match key.as_ref() {
            b"grant_type" => {
                utf8("grant_type", value).and_then(|v| set_once(&mut f.grant_type, "grant_type", v))
            }
            b"service" => {
                printable("service", value).and_then(|v| set_once(&mut f.service, "service", v))
            }
            b"client_id" => printable("client_id", value)
                .and_then(|v| set_once(&mut f.client_id, "client_id", v)),
            b"username" => {
                utf8("username", value).and_then(|v| set_once(&mut f.username, "username", v))
            }
            b"password" => {
                utf8("password", value).and_then(|v| set_once(&mut password, "password", v))
            }
            b"refresh_token" => utf8("refresh_token", value)
                .and_then(|v| set_once(&mut refresh, "refresh_token", v)),
            b"access_type" => utf8("access_type", value).map(|v| f.offline = v == "offline"),
            b"scope" => utf8("scope", value).map(|v| scope_params.push(v)),
            _ => Ok(()),
        };
        result.map_err(invalid_request)?;
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

/// Why a request body could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyError {
    /// It is longer than the limit.
    TooLarge,
    /// It is malformed or cut short (a bad chunk, fewer bytes than announced, a reset).
    Unreadable,
}

/// Reads a whole request body of at most `max` bytes. (A `Content-Length` over the limit never
/// gets here: the body-limit middleware refuses it without reading the body.)
pub async fn read_body(body: Body, max: usize) -> Result<Bytes, BodyError> {
    to_bytes(body, max).await.map_err(|e| {
        if is_length_limit(&e) {
            BodyError::TooLarge
        } else {
            BodyError::Unreadable
        }
    })
}

/// Whether a body read failed on a length limit (ours or one further in), rather than on the
/// body itself.
fn is_length_limit(e: &(dyn std::error::Error + 'static)) -> bool {
    std::iter::successors(Some(e), |e| e.source()).any(|e| e.is::<LengthLimitError>())
}

/// The `name=value` pairs of `application/x-www-form-urlencoded` text (a query string or a
/// form body), split and percent-decoded exactly as [`form_urlencoded::parse`] does, but left
/// as bytes: its lossy UTF-8 step would turn `%FF` into U+FFFD. [`utf8`] decodes the values
/// that are read.
fn pairs(input: &[u8]) -> impl Iterator<Item = (Cow<'_, [u8]>, Vec<u8>)> {
    input
        .split(|&b| b == b'&')
        .filter(|sequence| !sequence.is_empty())
        .map(|sequence| {
            let (name, value) = match sequence.iter().position(|&b| b == b'=') {
                Some(i) => (&sequence[..i], &sequence[i + 1..]),
                None => (sequence, &[][..]),
            };
            let name = if name.iter().any(|&b| b == b'+' || b == b'%') {
                Cow::Owned(percent_decode(name))
            } else {
                Cow::Borrowed(name)
            };
            (name, percent_decode(value))
        })
}

/// `+` is a space; `%` and two hex digits is that byte; any other `%` stays as it is.
fn percent_decode(input: &[u8]) -> Vec<u8> {
    fn hex(b: Option<&u8>) -> Option<u8> {
        match b? {
            b @ b'0'..=b'9' => Some(b - b'0'),
            b @ b'a'..=b'f' => Some(b - b'a' + 10),
            b @ b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while let Some(&b) = input.get(i) {
        i += 1;
        match b {
            b'+' => out.push(b' '),
            b'%' => match (hex(input.get(i)), hex(input.get(i + 1))) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
    }
    out
}

/// A parameter's value as text, refused when it is not UTF-8 once percent-decoded.
fn utf8(name: &str, value: Vec<u8>) -> Result<String, String> {
    String::from_utf8(value)
        .map_err(|_| format!("the `{name}` parameter is not valid UTF-8 (once percent-decoded)"))
}

/// A free-text parameter that ends up in a token or a log line (`service`, `account`,
/// `client_id`): UTF-8 and printable (any script; no control characters, line separators or
/// bidirectional formatting characters).
fn printable(name: &str, value: Vec<u8>) -> Result<String, String> {
    let text = utf8(name, value)?;
    if text.chars().any(not_printable) {
        return Err(format!(
            "the `{name}` parameter contains control or formatting characters; send printable \
             text"
        ));
    }
    Ok(text)
}

/// Control characters (C0, DEL, C1), the line and paragraph separators, and the bidirectional
/// embeddings, overrides and isolates (they reorder what a log viewer shows).
fn not_printable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn set_once(slot: &mut Option<String>, name: &str, value: String) -> Result<(), String> {
    match slot {
        Some(existing) if *existing != value => Err(format!(
            "the `{name}` parameter is given twice with different values"
        )),
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

    #[test]
    fn pairs_decode_like_form_urlencoded_without_the_lossy_step() {
        for input in [
            "a=b&c=d",
            "a=b=c&&=x&y&&",
            "+a+=+b+&%2B=%2b",
            "%=%&%4=%4g&%zz=%%41",
            "sc%6Fpe=repository:a:pull%20repository:b:push",
            "s=r%C3%A9gistry+%E2%9C%93&x=%e2%9c%93",
            "",
            "&",
            "=",
        ] {
            let ours: Vec<(String, String)> = pairs(input.as_bytes())
                .map(|(k, v)| {
                    (
                        String::from_utf8(k.into_owned()).unwrap(),
                        String::from_utf8(v).unwrap(),
                    )
                })
                .collect();
            let theirs: Vec<(String, String)> = form_urlencoded::parse(input.as_bytes())
                .into_owned()
                .collect();
            assert_eq!(ours, theirs, "{input}");
        }
        // Invalid UTF-8 stays visible as such.
        let (k, v) = pairs(b"service=%FF%FE").next().unwrap();
        assert_eq!(
            (k.as_ref(), v.as_slice()),
            (&b"service"[..], &[0xff, 0xfe][..])
        );
    }

    #[test]
    fn free_text_parameters_must_be_printable_utf8() {
        for (query, parameter) in [
            ("service=%00", "service"),
            ("service=a%01b", "service"),
            ("service=a%7Fb", "service"),
            ("service=a%C2%85b", "service"),
            ("service=%E2%80%A8", "service"),
            ("service=%E2%81%A6x", "service"),
            ("service=%FF%FE", "service"),
            ("service=reg&client_id=a%00%0Ab", "client_id"),
            ("service=reg&account=%0D", "account"),
            ("service=reg&scope=repository:%FF:pull", "scope"),
        ] {
            match token_query(Some(query)) {
                Err(ApiError::BadRequest(m)) => {
                    assert!(m.contains(&format!("`{parameter}`")), "{query}: {m}");
                }
                other => panic!("{query}: {other:?}"),
            }
        }
        let q = token_query(Some(
            "service=r%C3%A9gistry%20%E6%97%A5%E6%9C%AC&account=J%C3%BCrgen&client_id=%F0%9F%90%B3+cli",
        ))
        .unwrap();
        assert_eq!(q.service.as_deref(), Some("régistry 日本"));
        assert_eq!(q.account.as_deref(), Some("Jürgen"));
        assert_eq!(q.client_id.as_deref(), Some("🐳 cli"));
        // Parameters that are not read are not checked.
        assert!(token_query(Some("service=reg&other=%FF%00")).is_ok());
        for (body, field) in [
            (&b"service=%00"[..], "service"),
            (b"client_id=a%1Bb", "client_id"),
            (b"username=%FF", "username"),
            (b"password=\xff", "password"),
            (b"grant_type=%C3", "grant_type"),
        ] {
            match oauth_form(body) {
                Err(ApiError::OAuth {
                    error: "invalid_request",
                    description,
                    ..
                }) => assert!(description.contains(&format!("`{field}`")), "{description}"),
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
        // Credentials may hold control characters (they are only compared).
        let f = oauth_form(b"username=al%00ice&password=p%09w").unwrap();
        assert_eq!(f.username.as_deref(), Some("al\0ice"));
    }
}
