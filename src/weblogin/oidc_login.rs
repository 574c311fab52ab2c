//! `google_auth` and `oidc_auth`: the standard OpenID Connect authorization-code flow (no
//! Google JavaScript library).
//!
//! * Discovery (`<issuer>/.well-known/openid-configuration`), then the authorization endpoint
//!   with `state`, `nonce` and PKCE (S256).
//! * The code is exchanged at the token endpoint (client_secret_basic) through the `oauth2` crate
//!   (`oauth.rs`); the ID token is verified by `crate::oidc` (the crate does not)
//!   against the issuer's JWK Set: signature, `iss`, `aud` = client id, expiry and nonce.
//! * The account is the `user_claim` claim (default `email`). An email names an account only when
//!   the provider asserts `email_verified: true` (the boolean, or the string `"true"` that some
//!   providers send); a missing claim, `false`, `"false"` or anything else is refused, or
//!   anyone could register the address at the provider and sign in as its owner ("nOAuth");
//!   `labels_claims` (string or string-array claims, from the ID token or else the userinfo
//!   endpoint) become labels of the same name.
//! * Google's `domain` restricts logins to one Workspace domain through the `hd` claim (not an
//!   email suffix, which any account could fake with a sub-address).
//! * Revalidation uses the refresh token when there is one (`offline_access` for generic
//!   providers; Google is asked for offline access), else the userinfo endpoint while the
//!   access token lives; when neither works the password is refused (a 401, not a 500).

use std::sync::Arc;

use serde_json::{Map, Value};

use super::oauth::{self, ClientAuth};
use super::{Account, Common, UpstreamTokens, Verdict, send};
use crate::authn::Labels;
use crate::oidc::jwt::{self, Expect};
use crate::oidc::{Issuer, Unavailable, read_ok};
use crate::store::unix_now;

/// An OIDC provider (Google or generic).
#[derive(Debug)]
pub struct OidcLogin {
    /// The issuer (discovery, keys).
    pub issuer: Arc<Issuer>,
    /// Scopes asked for (always including `openid`).
    pub scopes: Vec<String>,
    /// The claim naming the registry account.
    pub user_claim: String,
    /// Claims copied into labels.
    pub labels_claims: Vec<String>,
    /// Google: the Workspace domain (`hd`) users must belong to.
    pub hosted_domain: Option<String>,
    /// Google: ask for offline access (a refresh token).
    pub google: bool,
}

/// Why an `email_verified` claim does not vouch for the email, `None` when it does: only the
/// boolean `true` or the string `"true"` do.
fn unverified_email(claim: Option<&Value>) -> Option<String> {
    match claim {
        Some(Value::Bool(true)) => None,
        Some(Value::String(s)) if s == "true" => None,
        None => Some("did not send `email_verified`".to_owned()),
        Some(other) => Some(format!("sent `email_verified: {other}`")),
    }
}

impl OidcLogin {
    pub(super) async fn authorize_url(
        &self,
        common: &Common,
        redirect_uri: &str,
        state: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<String, Unavailable> {
        let client = self.oauth(common, Some(redirect_uri)).await?;
        let scopes: Vec<&str> = self.scopes.iter().map(String::as_str).collect();
        let mut extra: Vec<(&str, &str)> = vec![("nonce", nonce)];
        if self.google {
            extra.push(("access_type", "offline"));
            extra.push(("prompt", "consent"));
            if let Some(hd) = &self.hosted_domain {
                extra.push(("hd", hd));
            }
        } else if self.scopes.iter().any(|s| s == "offline_access") {
            // OIDC Core §11: offline access needs the consent prompt.
            extra.push(("prompt", "consent"));
        }
        Ok(oauth::authorize_url(
            &client, state, verifier, &scopes, &extra,
        ))
    }

    /// The OAuth2 client for the discovered endpoints (client_secret_basic).
    async fn oauth(
        &self,
        common: &Common,
        redirect_uri: Option<&str>,
    ) -> Result<oauth::Client, Unavailable> {
        let meta = self.issuer.metadata().await?;
        oauth::client(
            common,
            &meta.authorization_endpoint,
            &meta.token_endpoint,
            ClientAuth::Basic,
            redirect_uri,
        )
    }

    fn name(&self) -> &'static str {
        if self.google {
            "Google"
        } else {
            "the identity provider"
        }
    }

    pub(super) async fn finish(
        &self,
        common: &Common,
        code: &str,
        redirect_uri: &str,
        verifier: &str,
        nonce: &str,
    ) -> Result<Verdict, Unavailable> {
        let client = self.oauth(common, Some(redirect_uri)).await?;
        let answer = oauth::exchange_code(
            &client,
            self.issuer.http(),
            code,
            verifier,
            "token exchange",
        )
        .await?;
        let answer = match answer {
            Ok(a) => a,
            Err(why) => {
                return Ok(Verdict::Refused(format!(
                    "{} did not accept the sign-in ({why}); start again",
                    self.name()
                )));
            }
        };
        let Some(id_token) = answer.extra_fields().id_token.as_deref() else {
            return Ok(Verdict::Refused(format!(
                "{} sent no ID token (is `openid` among the scopes?)",
                self.name()
            )));
        };
        let tokens = oauth::upstream(&answer, None);
        let claims = match self.verify(common, id_token, Some(nonce)).await? {
            Ok(c) => c,
            Err(why) => return Ok(Verdict::Refused(why)),
        };
        self.account(claims, tokens).await
    }

    /// Verifies an ID token; the inner error is the reason to refuse.
    async fn verify(
        &self,
        common: &Common,
        id_token: &str,
        nonce: Option<&str>,
    ) -> Result<Result<Map<String, Value>, String>, Unavailable> {
        let expect = Expect {
            issuer: self.issuer.issuer(),
            audience: &common.client_id,
            nonce,
            now: unix_now(),
        };
        Ok(match self.issuer.verify(id_token, &expect).await? {
            Ok(t) => {
                // With several audiences, `azp` must name us (OIDC Core §3.1.3.7).
                let multi = t
                    .claims
                    .get("aud")
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.len() > 1);
                if multi && t.str_claim("azp") != Some(common.client_id.as_str()) {
                    Err("the ID token was issued to another client (azp)".to_owned())
                } else {
                    Ok(t.claims)
                }
            }
            Err(e) => Err(format!("the ID token was refused: {e}")),
        })
    }

    /// Applies the user claim, the domain restriction and the label claims.
    async fn account(
        &self,
        mut claims: Map<String, Value>,
        tokens: UpstreamTokens,
    ) -> Result<Verdict, Unavailable> {
        if self.labels_claims.iter().any(|c| !claims.contains_key(c))
            || !claims.contains_key(&self.user_claim)
            || (self.user_claim == "email" && !claims.contains_key("email_verified"))
        {
            // Many providers put groups (and sometimes the email) only in userinfo.
            if let Some(info) = self.userinfo(&tokens.access_token).await?
                && info.get("sub") == claims.get("sub")
            {
                for (k, v) in info {
                    claims.entry(k).or_insert(v);
                }
            }
        }
        if let Some(domain) = &self.hosted_domain {
            let hd = claims.get("hd").and_then(Value::as_str).unwrap_or_default();
            if !hd.eq_ignore_ascii_case(domain) {
                return Ok(Verdict::Refused(format!(
                    "only accounts of the {domain} domain may sign in here"
                )));
            }
        }
        let Some(user) = claims
            .get(&self.user_claim)
            .and_then(Value::as_str)
            .filter(|u| !u.is_empty())
        else {
            return Ok(Verdict::Refused(format!(
                "{} did not send the `{}` claim that names the account",
                self.name(),
                self.user_claim
            )));
        };
        if self.user_claim == "email"
            && let Some(why) = unverified_email(claims.get("email_verified"))
        {
            let fix = if self.google {
                "Verify the address in the Google account, then sign in again."
            } else {
                "Verify the address at the identity provider, or have the administrator name \
                 accounts by a claim the provider guarantees instead (`oidc_auth.user_claim`, \
                 e.g. `sub`)."
            };
            return Ok(Verdict::Refused(format!(
                "the email address {user} is not verified: {} {why}, and an email names an \
                 account here only when the provider asserts `email_verified: true`. {fix}",
                self.name()
            )));
        }
        let mut labels = Labels::default();
        for claim in &self.labels_claims {
            let values = jwt::claim_values(&claims, claim);
            if !values.is_empty() {
                labels.0.insert(claim.clone(), values);
            }
        }
        Ok(Verdict::Allowed(Account {
            user: user.to_owned(),
            labels,
            tokens,
        }))
    }

    /// The userinfo claims; `None` without an endpoint; an error when it refuses the token is
    /// reported as an empty answer (the caller decides).
    async fn userinfo(
        &self,
        access_token: &str,
    ) -> Result<Option<Map<String, Value>>, Unavailable> {
        let meta = self.issuer.metadata().await?;
        let Some(endpoint) = &meta.userinfo_endpoint else {
            return Ok(None);
        };
        let response = send(
            self.issuer.http().get(endpoint).bearer_auth(access_token),
            "userinfo",
        )
        .await?;
        if matches!(response.status().as_u16(), 401 | 403) {
            return Ok(None);
        }
        let body = read_ok(response, "userinfo").await?;
        Ok(serde_json::from_slice(&body).ok())
    }

    pub(super) async fn revalidate(
        &self,
        common: &Common,
        tokens: &UpstreamTokens,
    ) -> Result<Verdict, Unavailable> {
        if let Some(refresh) = &tokens.refresh_token {
            let client = self.oauth(common, None).await?;
            let answer =
                oauth::refresh(&client, self.issuer.http(), refresh, "token refresh").await?;
            let answer = match answer {
                Ok(a) => a,
                Err(why) => {
                    return Ok(Verdict::Refused(format!(
                        "{} refused the refresh token: {why}",
                        self.name()
                    )));
                }
            };
            let new_tokens = oauth::upstream(&answer, Some(refresh));
            let claims = match answer.extra_fields().id_token.as_deref() {
                Some(id) => match self.verify(common, id, None).await? {
                    Ok(c) => c,
                    Err(why) => return Ok(Verdict::Refused(why)),
                },
                None => match self.userinfo(&new_tokens.access_token).await? {
                    Some(c) => c,
                    None => {
                        return Ok(Verdict::Refused(format!(
                            "{} refused the refreshed access token",
                            self.name()
                        )));
                    }
                },
            };
            return self.account(claims, new_tokens).await;
        }
        if !tokens.access_expired(unix_now())
            && let Some(claims) = self.userinfo(&tokens.access_token).await?
        {
            return self.account(claims, tokens.clone()).await;
        }
        Ok(Verdict::Refused(format!(
            "{} gave no refresh token and the access token expired: sign in again (add \
             `offline_access` to `scopes` to avoid this)",
            self.name()
        )))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::unverified_email;

    #[test]
    fn only_a_true_email_verified_vouches_for_the_email() {
        assert_eq!(unverified_email(Some(&json!(true))), None);
        assert_eq!(unverified_email(Some(&json!("true"))), None);
        for (claim, why) in [
            (None, "did not send `email_verified`"),
            (Some(json!(false)), "sent `email_verified: false`"),
            (Some(json!("false")), "sent `email_verified: \"false\"`"),
            (Some(json!("True")), "sent `email_verified: \"True\"`"),
            (Some(json!(1)), "sent `email_verified: 1`"),
            (Some(json!(null)), "sent `email_verified: null`"),
        ] {
            assert_eq!(unverified_email(claim.as_ref()).as_deref(), Some(why));
        }
    }
}
