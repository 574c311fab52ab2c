//! `oidc_tokens`: CI identities. A CI job (GitHub Actions, GitLab CI, …) logs in with a fixed
//! user name (`oidc` by default) and its OIDC ID token as the password. The token must come
//! from a trusted issuer, be signed by a key of the issuer's JWK Set (fetched, cached and
//! refreshed), carry our audience and be unexpired; selected claims become labels for the ACL
//! (`repository`, `ref`, `project_path`, …). No long-lived secret lives in CI.
//!
//! Outcomes: another user name → no match; a token from an issuer that is not trusted, with a
//! bad signature, another audience, expired, or missing a required claim → wrong password
//! (401); an issuer whose keys cannot be fetched → an error (5xx).

use std::collections::BTreeMap;
use std::sync::Arc;

use tracing::info;

use super::{AuthnError, AuthnOutcome, Credentials, Identity, IdentityKind, Labels};
use crate::oidc::Issuer;
use crate::oidc::jwt::{self, Expect};
use crate::store::unix_now;

/// The label every CI identity gets: the issuer that vouched for it.
pub const ISSUER_LABEL: &str = "oidc_issuer";

/// One trusted issuer.
#[derive(Debug)]
pub struct CiIssuer {
    /// Discovery, keys and verification.
    pub issuer: Arc<Issuer>,
    /// Must be in the token's `aud`.
    pub audience: String,
    /// The user name CI jobs log in with.
    pub username: String,
    /// Claims copied into labels of the same name.
    pub labels_claims: Vec<String>,
    /// Claims that must have exactly these values.
    pub required_claims: BTreeMap<String, String>,
}

/// The `oidc_tokens` backend.
#[derive(Debug, Clone)]
pub struct CiTokens {
    issuers: Arc<Vec<CiIssuer>>,
}

impl CiTokens {
    /// The configured issuers.
    pub fn new(issuers: Vec<CiIssuer>) -> Self {
        Self {
            issuers: Arc::new(issuers),
        }
    }

    /// The issuers.
    pub fn issuers(&self) -> &[CiIssuer] {
        &self.issuers
    }

    /// Checks a CI login.
    pub async fn authenticate(&self, creds: &Credentials) -> Result<AuthnOutcome, AuthnError> {
        if creds.is_anonymous() || !self.issuers.iter().any(|i| i.username == creds.account) {
            return Ok(AuthnOutcome::NoMatch);
        }
        let token = creds.password.expose();
        let refuse = |issuer: &str, reason: &dyn std::fmt::Display| {
            info!(account = %creds.account, issuer, %reason, "CI token refused");
            Ok(AuthnOutcome::WrongPassword)
        };
        let claimed = match jwt::decode(token) {
            Ok(t) => t.str_claim("iss").unwrap_or_default().to_owned(),
            Err(e) => return refuse("", &e),
        };
        let Some(trusted) = self
            .issuers
            .iter()
            .find(|i| i.username == creds.account && i.issuer.issuer() == claimed)
        else {
            return refuse(&claimed, &"the issuer is not trusted (not in oidc_tokens)");
        };
        let expect = Expect {
            issuer: trusted.issuer.issuer(),
            audience: &trusted.audience,
            nonce: None,
            now: unix_now(),
        };
        let verified = match trusted.issuer.verify(token, &expect).await {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => return refuse(&claimed, &e),
            Err(e) => {
                return Err(AuthnError::Backend {
                    backend: "oidc_tokens",
                    message: e.to_string(),
                });
            }
        };
        for (claim, want) in &trusted.required_claims {
            if verified.str_claim(claim) != Some(want.as_str()) {
                return refuse(
                    &claimed,
                    &format!("claim `{claim}` does not have the required value"),
                );
            }
        }
        let mut labels = Labels::default();
        labels
            .0
            .insert(ISSUER_LABEL.to_owned(), vec![claimed.clone()]);
        for claim in &trusted.labels_claims {
            let values = jwt::claim_values(&verified.claims, claim);
            if !values.is_empty() {
                labels.0.insert(claim.clone(), values);
            }
        }
        info!(account = %creds.account, issuer = %claimed, subject = verified.str_claim("sub").unwrap_or_default(), "CI token accepted");
        Ok(AuthnOutcome::Authenticated(Identity {
            account: trusted.username.clone(),
            labels,
            kind: IdentityKind::External("oidc_tokens"),
            // CI tokens are short-lived: no refresh tokens for them.
            fingerprint: None,
        }))
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::Router;
    use axum::routing::get;
    use serde_json::{Value, json};

    use super::*;
    use crate::authn::Secret;
    use crate::oidc::http_client;
    use crate::oidc::jwt::test_keys::TestKey;

    async fn serve_jwks(jwks: Value) -> SocketAddr {
        let app = Router::new().route(
            "/jwks",
            get(move || {
                let jwks = jwks.clone();
                async move { axum::Json(jwks) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    fn backend(issuer: &str, jwks: &str) -> CiTokens {
        let http = http_client(std::time::Duration::from_secs(2)).unwrap();
        CiTokens::new(vec![CiIssuer {
            issuer: Arc::new(Issuer::new(
                issuer,
                http,
                Some(reqwest::Url::parse(jwks).unwrap()),
            )),
            audience: "registry.test".to_owned(),
            username: "oidc".to_owned(),
            labels_claims: vec!["repository".to_owned(), "ref".to_owned()],
            required_claims: BTreeMap::from([("repository_owner".to_owned(), "acme".to_owned())]),
        }])
    }

    fn creds(user: &str, token: &str) -> Credentials {
        Credentials {
            account: user.to_owned(),
            password: Secret::new(token),
        }
    }

    #[tokio::test]
    async fn ci_tokens_are_verified_against_the_issuers_keys() {
        let key = TestKey::new("ci-1");
        let addr = serve_jwks(json!({"keys": [key.jwk()]})).await;
        let ci = backend("https://ci.test", &format!("http://{addr}/jwks"));
        let now = unix_now();
        let good = json!({"iss": "https://ci.test", "aud": "registry.test", "exp": now + 300,
                          "iat": now, "sub": "repo:acme/app:ref:refs/heads/main",
                          "repository": "acme/app", "ref": "refs/heads/main",
                          "repository_owner": "acme"});
        let AuthnOutcome::Authenticated(id) = ci
            .authenticate(&creds("oidc", &key.sign(&good)))
            .await
            .unwrap()
        else {
            panic!("a good token was refused");
        };
        assert_eq!(id.labels.get("repository").unwrap(), ["acme/app"]);
        assert_eq!(id.labels.get("ref").unwrap(), ["refs/heads/main"]);
        assert_eq!(id.labels.get(ISSUER_LABEL).unwrap(), ["https://ci.test"]);
        assert!(id.fingerprint.is_none());

        // Another user name is not ours to decide.
        assert_eq!(
            ci.authenticate(&creds("alice", &key.sign(&good)))
                .await
                .unwrap(),
            AuthnOutcome::NoMatch
        );
        let refused = |c: Value| {
            let t = key.sign(&c);
            let ci = &ci;
            async move { ci.authenticate(&creds("oidc", &t)).await.unwrap() }
        };
        let mut c = good.clone();
        c["aud"] = json!("someone-else");
        assert_eq!(refused(c).await, AuthnOutcome::WrongPassword);
        let mut c = good.clone();
        c["iss"] = json!("https://untrusted.test");
        assert_eq!(refused(c).await, AuthnOutcome::WrongPassword);
        let mut c = good.clone();
        c["repository_owner"] = json!("evil");
        assert_eq!(refused(c).await, AuthnOutcome::WrongPassword);
        let mut c = good.clone();
        c["exp"] = json!(now - 600);
        assert_eq!(refused(c).await, AuthnOutcome::WrongPassword);
        let forger = TestKey::new("ci-1");
        assert_eq!(
            ci.authenticate(&creds("oidc", &forger.sign(&good)))
                .await
                .unwrap(),
            AuthnOutcome::WrongPassword
        );
        assert_eq!(
            ci.authenticate(&creds("oidc", "not-a-jwt")).await.unwrap(),
            AuthnOutcome::WrongPassword
        );
    }

    #[tokio::test]
    async fn an_unreachable_issuer_is_an_error_not_a_denial() {
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let ci = backend("https://ci.test", &format!("http://127.0.0.1:{port}/jwks"));
        let key = TestKey::new("ci-1");
        let now = unix_now();
        let token = key.sign(&json!({"iss": "https://ci.test", "aud": "registry.test",
                                     "exp": now + 300, "repository_owner": "acme"}));
        let err = ci.authenticate(&creds("oidc", &token)).await.unwrap_err();
        assert!(err.to_string().contains("oidc_tokens"), "{err}");
    }
}
