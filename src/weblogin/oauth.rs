//! The OAuth2 exchanges of the web logins on the `oauth2` crate: the authorization URL (`state`,
//! PKCE S256, scopes, provider extras such as the OIDC `nonce`), the authorization-code exchange
//! and the refresh-token grant, for GitHub, GitLab and the OIDC providers alike.
//!
//! * The crate's HTTP side is [`Http`], an adapter over OUR `reqwest` 0.13 client (rustls on
//!   aws-lc-rs, the per-request timeouts of `http_timeout`, no redirects): the crate's own
//!   `reqwest` feature would pull reqwest 0.12 with a second rustls stack, so it is off.
//! * The adapter keeps our error mapping: a transport failure, a 5xx or an answer over 1 MiB is
//!   [`Unavailable`] (the login page says 503, `/auth` a 5xx, never a 401); an OAuth error answer
//!   (`invalid_grant`, a used code, a revoked refresh token) is a refusal, an outcome. GitHub
//!   answers OAuth errors with HTTP 200 and an `error` field, which the crate reports as an
//!   unparsable token answer: [`outcome`] reads such a body as the error it is.
//! * Nothing here logs; the messages carry the provider's error code and (at most 200
//!   characters of) its description, never a token, code, verifier or secret.
//! * The ID token of an OIDC answer is kept as an extra field ([`IdToken`]) and verified by
//!   `crate::oidc` (signature, issuer, audience, expiry, nonce), which the crate does not do.

use std::future::Future;
use std::pin::Pin;

use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, ExtraTokenFields, HttpRequest, HttpResponse, PkceCodeChallenge,
    PkceCodeVerifier, RedirectUrl, RefreshToken, RequestTokenError, Scope, StandardRevocableToken,
    StandardTokenResponse, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

use super::{Common, UpstreamTokens, send};
use crate::oidc::Unavailable;
use crate::store::unix_now;

/// The `id_token` of an OIDC token answer (absent for plain OAuth2 providers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct IdToken {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
}

impl ExtraTokenFields for IdToken {}

/// A token endpoint's successful answer.
pub(super) type TokenAnswer = StandardTokenResponse<IdToken, BasicTokenType>;

/// An OAuth2 client with its authorization and token endpoints set.
pub(super) type Client = oauth2::Client<
    BasicErrorResponse,
    TokenAnswer,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// How the client authenticates at the token endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ClientAuth {
    /// `client_id` and `client_secret` in the form (GitHub, GitLab).
    Form,
    /// `client_secret_basic` (OIDC).
    Basic,
}

/// The client for one provider's endpoints; `redirect_uri` for the authorization request and
/// the code exchange (not needed to refresh). A malformed endpoint (a discovery document's) is
/// the provider's fault: [`Unavailable`].
pub(super) fn client(
    common: &Common,
    authorize: &str,
    token: &str,
    auth: ClientAuth,
    redirect_uri: Option<&str>,
) -> Result<Client, Unavailable> {
    let bad = |what: &str, url: &str, e: oauth2::url::ParseError| {
        Unavailable(format!(
            "the {what} endpoint {url:?} is not a valid URL: {e}"
        ))
    };
    let client = oauth2::Client::new(ClientId::new(common.client_id.clone()))
        .set_client_secret(ClientSecret::new(common.client_secret.expose().to_owned()))
        .set_auth_uri(
            AuthUrl::new(authorize.to_owned()).map_err(|e| bad("authorization", authorize, e))?,
        )
        .set_token_uri(TokenUrl::new(token.to_owned()).map_err(|e| bad("token", token, e))?)
        .set_auth_type(match auth {
            ClientAuth::Form => AuthType::RequestBody,
            ClientAuth::Basic => AuthType::BasicAuth,
        });
    Ok(match redirect_uri {
        Some(uri) => client.set_redirect_uri(
            RedirectUrl::new(uri.to_owned()).map_err(|e| bad("redirect", uri, e))?,
        ),
        None => client,
    })
}

/// The authorization URL: `response_type=code`, the client id, the redirect URI, `scopes`,
/// `state`, the S256 challenge of `verifier` (43 to 128 characters: [`super::random_token`]
/// makes 43) and the provider's `extra` parameters.
pub(super) fn authorize_url(
    client: &Client,
    state: &str,
    verifier: &str,
    scopes: &[&str],
    extra: &[(&str, &str)],
) -> String {
    let challenge =
        PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier.to_owned()));
    let state = state.to_owned();
    let mut request = client
        .authorize_url(move || CsrfToken::new(state))
        .add_scopes(scopes.iter().map(|s| Scope::new((*s).to_owned())))
        .set_pkce_challenge(challenge);
    for (k, v) in extra {
        request = request.add_extra_param(*k, *v);
    }
    request.url().0.to_string()
}

/// Exchanges an authorization code (with the PKCE verifier); `Ok(Err(why))` when the provider
/// refused it.
pub(super) async fn exchange_code(
    client: &Client,
    http: &reqwest::Client,
    code: &str,
    verifier: &str,
    what: &str,
) -> Result<Result<TokenAnswer, String>, Unavailable> {
    let http = Http {
        client: http.clone(),
        what: what.to_owned(),
    };
    let answer = client
        .exchange_code(AuthorizationCode::new(code.to_owned()))
        .set_pkce_verifier(PkceCodeVerifier::new(verifier.to_owned()))
        .request_async(&http)
        .await;
    outcome(answer, what)
}

/// The refresh-token grant; `Ok(Err(why))` when the provider refused the refresh token.
pub(super) async fn refresh(
    client: &Client,
    http: &reqwest::Client,
    refresh_token: &str,
    what: &str,
) -> Result<Result<TokenAnswer, String>, Unavailable> {
    let http = Http {
        client: http.clone(),
        what: what.to_owned(),
    };
    let token = RefreshToken::new(refresh_token.to_owned());
    let answer = client
        .exchange_refresh_token(&token)
        .request_async(&http)
        .await;
    outcome(answer, what)
}

/// The tokens to keep from an answer; a refresh answer without a new refresh token keeps
/// `previous_refresh` (providers that do not rotate it).
pub(super) fn upstream(answer: &TokenAnswer, previous_refresh: Option<&str>) -> UpstreamTokens {
    UpstreamTokens {
        access_token: answer.access_token().secret().clone(),
        refresh_token: answer
            .refresh_token()
            .map(|t| t.secret().clone())
            .or_else(|| previous_refresh.map(str::to_owned)),
        expires_at: answer.expires_in().map(|d| unix_now() + d.as_secs()),
    }
}

/// Sorts the crate's result into our three outcomes: tokens, a refusal (the reason, safe to
/// show), or the provider being unavailable.
fn outcome(
    answer: Result<TokenAnswer, RequestTokenError<Unavailable, BasicErrorResponse>>,
    what: &str,
) -> Result<Result<TokenAnswer, String>, Unavailable> {
    match answer {
        Ok(answer) => Ok(Ok(answer)),
        Err(RequestTokenError::Request(unavailable)) => Err(unavailable),
        Err(RequestTokenError::ServerResponse(error)) => Ok(Err(describe(&error))),
        Err(RequestTokenError::Parse(e, body)) => {
            // GitHub: HTTP 200 with `{"error": …}`.
            match serde_json::from_slice::<BasicErrorResponse>(&body) {
                Ok(error) => Ok(Err(describe(&error))),
                Err(_) => Err(Unavailable(format!(
                    "{what}: unexpected answer (at `{}`: {})",
                    e.path(),
                    e.inner()
                ))),
            }
        }
        Err(RequestTokenError::Other(why)) => Err(Unavailable(format!("{what}: {why}"))),
    }
}

/// `error (description)`, the description cut to 200 characters.
fn describe(error: &BasicErrorResponse) -> String {
    let detail = error
        .error_description()
        .map(|d| format!(" ({})", d.chars().take(200).collect::<String>()))
        .unwrap_or_default();
    format!("{}{detail}", error.error())
}

/// The crate's HTTP client: one request through our reqwest client; a transport failure, a 5xx
/// or a body over 1 MiB is [`Unavailable`] (named by `what`).
#[derive(Debug)]
struct Http {
    client: reqwest::Client,
    what: String,
}

impl<'c> AsyncHttpClient<'c> for Http {
    type Error = Unavailable;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Unavailable>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let request = self
                .client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body);
            let response = send(request, &self.what).await?;
            let status = response.status();
            if status.is_server_error() {
                return Err(Unavailable(format!("{}: HTTP {status}", self.what)));
            }
            let headers = response.headers().clone();
            let body = crate::oidc::read_body(response, &self.what).await?;
            let mut answer = HttpResponse::new(body);
            *answer.status_mut() = status;
            *answer.headers_mut() = headers;
            Ok(answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;
    use crate::authn::Secret;

    fn common() -> Common {
        Common {
            client_id: "the client".to_owned(),
            client_secret: Secret::new("s3cret".to_owned()),
            registry_url: None,
            redirect_url: None,
            revalidate_after: super::super::DEFAULT_REVALIDATE_AFTER,
            password_lifetime: super::super::DEFAULT_PASSWORD_LIFETIME,
            http_timeout: super::super::DEFAULT_HTTP_TIMEOUT,
        }
    }

    fn query(url: &str) -> Vec<(String, String)> {
        let q = url.split_once('?').map(|(_, q)| q).unwrap_or_default();
        form_urlencoded::parse(q.as_bytes()).into_owned().collect()
    }

    #[test]
    fn the_authorization_url_carries_state_pkce_scopes_and_extras() {
        let c = client(
            &common(),
            "https://idp.test/authorize?tenant=a",
            "https://idp.test/token",
            ClientAuth::Form,
            Some("https://auth.test/github_auth/callback"),
        )
        .unwrap_or_else(|e| unreachable!("{e}"));
        let verifier = super::super::random_token();
        let url = authorize_url(
            &c,
            "st&te",
            &verifier,
            &["read_user", "read_api"],
            &[("nonce", "n1")],
        );
        assert!(url.starts_with("https://idp.test/authorize?"), "{url}");
        let q = query(&url);
        let get = |k: &str| {
            q.iter()
                .find(|(n, _)| n == k)
                .map(|(_, v)| v.as_str())
                .unwrap_or_else(|| unreachable!("no {k} in {url}"))
        };
        assert_eq!(get("tenant"), "a");
        assert_eq!(get("response_type"), "code");
        assert_eq!(get("client_id"), "the client");
        assert_eq!(
            get("redirect_uri"),
            "https://auth.test/github_auth/callback"
        );
        assert_eq!(get("scope"), "read_user read_api");
        assert_eq!(get("state"), "st&te");
        assert_eq!(get("code_challenge_method"), "S256");
        // S256 (RFC 7636 §4.2), computed here with aws-lc-rs.
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes());
        assert_eq!(
            get("code_challenge"),
            URL_SAFE_NO_PAD.encode(digest.as_ref())
        );
        assert!(!url.contains(&verifier), "{url}");
        assert_eq!(get("nonce"), "n1");
        assert!(!url.contains("s3cret"), "{url}");
    }

    #[test]
    fn a_malformed_endpoint_is_the_provider_being_unavailable() {
        let e = client(&common(), "not a url", "https://t", ClientAuth::Basic, None)
            .err()
            .map(|e| e.0)
            .unwrap_or_default();
        assert!(e.contains("authorization endpoint \"not a url\""), "{e}");
    }

    fn answer(
        body: &str,
    ) -> Result<TokenAnswer, RequestTokenError<Unavailable, BasicErrorResponse>> {
        let mut d = serde_json::Deserializer::from_slice(body.as_bytes());
        serde_path_to_error::deserialize(&mut d)
            .map_err(|e| RequestTokenError::Parse(e, body.as_bytes().to_vec()))
    }

    #[test]
    fn error_answers_are_refusals_and_garbage_is_unavailable() {
        // GitHub's HTTP 200 error answer.
        let r = outcome(
            answer(
                r#"{"error":"bad_verification_code","error_description":"The code passed is incorrect or expired."}"#,
            ),
            "GitHub token exchange",
        );
        assert_eq!(
            r.ok().and_then(Result::err).as_deref(),
            Some("bad_verification_code (The code passed is incorrect or expired.)")
        );
        let long = "x".repeat(500);
        let r = outcome(
            Err(RequestTokenError::ServerResponse(
                serde_json::from_str(&format!(
                    r#"{{"error":"invalid_grant","error_description":"{long}"}}"#
                ))
                .unwrap_or_else(|e| unreachable!("{e}")),
            )),
            "token refresh",
        );
        let why = r.ok().and_then(Result::err).unwrap_or_default();
        assert_eq!(why, format!("invalid_grant ({})", &long[..200]));
        // No access token and no error: the provider is broken, not the user refused.
        let r = outcome(
            answer(r#"{"token_type":"bearer"}"#),
            "GitLab token exchange",
        );
        let e = r.err().map(|e| e.0).unwrap_or_default();
        assert!(
            e.starts_with("GitLab token exchange: unexpected answer") && e.contains("access_token"),
            "{e}"
        );
        let r = outcome(
            Err(RequestTokenError::Request(Unavailable("down".to_owned()))),
            "x",
        );
        assert_eq!(r.err().map(|e| e.0).as_deref(), Some("down"));
        let ok = outcome(
            answer(r#"{"access_token":"a","token_type":"Bearer","expires_in":60,"id_token":"i"}"#),
            "x",
        );
        let ok = ok
            .ok()
            .and_then(Result::ok)
            .unwrap_or_else(|| unreachable!());
        assert_eq!(ok.extra_fields().id_token.as_deref(), Some("i"));
        let t = upstream(&ok, Some("old refresh"));
        assert_eq!(t.access_token, "a");
        assert_eq!(t.refresh_token.as_deref(), Some("old refresh"));
        assert!(t.expires_at.is_some_and(|e| e >= unix_now() + 59));
    }
}
