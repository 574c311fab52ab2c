//! `http_auth`: a webhook decides (our extension; docker_auth has no such backend). The request
//! is POSTed as JSON:
//!
//! ```json
//! {"account": "alice", "password": "…", "client_ip": "192.0.2.7", "service": "registry"}
//! ```
//!
//! (`client_ip` is `null` when unknown) and a `200` answer must be
//! `{"result": "allow" | "deny" | "no_match", "labels": {"group": ["dev"]}}`: `allow` =
//! authenticated with those labels (optional), `deny` = wrong password (401, the chain stops),
//! `no_match` = ask the next backend. Anything else is an error (5xx). See [`crate::webhook`] for
//! transport, signing, retries and the cache.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::{AuthnContext, AuthnError, AuthnOutcome, Credentials, Identity, IdentityKind, Labels};
use crate::webhook::Webhook;

/// The `http_auth` backend.
#[derive(Debug, Clone)]
pub struct HttpAuth {
    hook: Arc<Webhook>,
}

#[derive(Serialize)]
struct Request<'a> {
    account: &'a str,
    password: &'a str,
    client_ip: Option<String>,
    service: &'a str,
}

/// The three answers of the webhook contracts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Authenticated / granted.
    Allow,
    /// Wrong password / denied.
    Deny,
    /// Not known here: the next backend decides.
    NoMatch,
}

#[derive(Deserialize)]
struct Answer {
    result: Verdict,
    /// The account's canonical name, when the webhook matches names loosely (default: the
    /// name presented).
    #[serde(default)]
    account: Option<String>,
    #[serde(default)]
    labels: Labels,
}

impl HttpAuth {
    /// Wraps a configured webhook.
    pub fn new(hook: Arc<Webhook>) -> Self {
        Self { hook }
    }

    /// The webhook (health, concurrency figures).
    pub fn webhook(&self) -> &Arc<Webhook> {
        &self.hook
    }

    /// Asks the webhook.
    pub async fn authenticate(
        &self,
        creds: &Credentials,
        ctx: &AuthnContext,
    ) -> Result<AuthnOutcome, AuthnError> {
        let body = serde_json::to_vec(&Request {
            account: &creds.account,
            password: creds.password.expose(),
            client_ip: ctx.client_ip.map(|ip| ip.to_string()),
            service: &ctx.service,
        })
        .map_err(|e| AuthnError::Backend {
            backend: "http_auth",
            message: format!("cannot encode the request: {e}"),
        })?;
        let answer: Answer = self
            .hook
            .call(body)
            .await
            .map_err(|e| AuthnError::Backend {
                backend: "http_auth",
                message: e.to_string(),
            })?;
        Ok(match answer.result {
            Verdict::Allow => AuthnOutcome::Authenticated(Identity {
                account: super::vouched_account("http_auth", &creds.account, answer.account)?,
                labels: answer.labels,
                kind: if creds.is_anonymous() {
                    IdentityKind::Anonymous
                } else {
                    IdentityKind::External("http_auth")
                },
                fingerprint: None,
            }),
            Verdict::Deny => AuthnOutcome::WrongPassword,
            Verdict::NoMatch => AuthnOutcome::NoMatch,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::authn::{
        Authenticator, CacheSettings, CacheStats, Chain, Robots, Secret, StaticUsers,
    };
    use crate::config::AuthnBackend;
    use crate::webhook::tests::{Fake, settings};

    fn creds(a: &str, p: &str) -> Credentials {
        Credentials {
            account: a.into(),
            password: Secret::new(p),
        }
    }

    /// A webhook answering by account name.
    async fn fake() -> Fake {
        Fake::start(|req: &Value| {
            let body = match req["account"].as_str().unwrap_or_default() {
                "alice" if req["password"] == "good" => {
                    json!({"result": "allow", "labels": {"groups": ["dev", "ops"]}})
                }
                "bob" => json!({"result": "allow"}),
                "alice" => json!({"result": "deny"}),
                // A webhook that matches names case-insensitively names the account itself.
                "CAROL" => json!({"result": "allow", "account": "carol"}),
                "robot-claim" => json!({"result": "allow", "account": "robot$x"}),
                "" => json!({"result": "allow"}),
                "weird" => json!({"result": "maybe"}),
                "nolabel" => json!({"labels": {}}),
                "badlabels" => json!({"result": "allow", "labels": {"g": "not-a-list"}}),
                _ => json!({"result": "no_match"}),
            };
            (200, body.to_string(), Duration::ZERO)
        })
        .await
    }

    fn ctx() -> AuthnContext {
        AuthnContext {
            client_ip: Some("192.0.2.7".parse().unwrap()),
            service: "registry".to_owned(),
        }
    }

    #[tokio::test]
    async fn every_answer_shape() {
        let fake = fake().await;
        let auth = HttpAuth::new(Webhook::new(settings("http_auth", fake.url("http"))).unwrap());
        let AuthnOutcome::Authenticated(id) = auth
            .authenticate(&creds("alice", "good"), &ctx())
            .await
            .unwrap()
        else {
            panic!("alice");
        };
        assert_eq!(id.labels.get("groups").unwrap(), ["dev", "ops"]);
        assert_eq!(id.kind, IdentityKind::External("http_auth"));
        assert!(
            id.fingerprint.is_none(),
            "no refresh tokens for webhook users"
        );
        assert_eq!(id.account, "alice");
        assert!(matches!(
            auth.authenticate(&creds("bob", "x"), &ctx()).await.unwrap(),
            AuthnOutcome::Authenticated(i) if i.labels.is_empty() && i.account == "bob"
        ));
        assert!(matches!(
            auth.authenticate(&creds("CAROL", "x"), &ctx()).await.unwrap(),
            AuthnOutcome::Authenticated(i) if i.account == "carol"
        ));
        let err = auth
            .authenticate(&creds("robot-claim", "x"), &ctx())
            .await
            .unwrap_err();
        assert!(err.to_string().contains("robot$"), "{err}");
        assert_eq!(
            auth.authenticate(&creds("alice", "bad"), &ctx())
                .await
                .unwrap(),
            AuthnOutcome::WrongPassword
        );
        assert_eq!(
            auth.authenticate(&creds("carol", "x"), &ctx())
                .await
                .unwrap(),
            AuthnOutcome::NoMatch
        );
        assert!(matches!(
            auth.authenticate(&Credentials::anonymous(), &ctx())
                .await
                .unwrap(),
            AuthnOutcome::Authenticated(Identity {
                kind: IdentityKind::Anonymous,
                ..
            })
        ));
        for broken in ["weird", "nolabel", "badlabels"] {
            let err = auth
                .authenticate(&creds(broken, "x"), &ctx())
                .await
                .unwrap_err();
            assert!(
                err.to_string().contains("outside the contract"),
                "{broken}: {err}"
            );
            assert_eq!(err.backend(), "http_auth");
        }
    }

    #[tokio::test]
    async fn the_request_has_the_documented_keys() {
        let fake = fake().await;
        let auth = HttpAuth::new(Webhook::new(settings("http_auth", fake.url("http"))).unwrap());
        auth.authenticate(&creds("alice", "good"), &ctx())
            .await
            .unwrap();
        assert_eq!(
            fake.last().body,
            json!({"account": "alice", "password": "good", "client_ip": "192.0.2.7",
                   "service": "registry"})
        );
        auth.authenticate(&creds("bob", "x"), &AuthnContext::default())
            .await
            .unwrap();
        assert_eq!(fake.last().body["client_ip"], Value::Null);
    }

    #[tokio::test]
    async fn in_the_chain_after_the_local_users_with_the_context_in_the_cache_key() {
        let fake = fake().await;
        let hook = Webhook::new(settings("http_auth", fake.url("http"))).unwrap();
        let chain = Arc::new(
            Chain::new(
                StaticUsers::new(Default::default(), None),
                Robots::default(),
            )
            .unwrap(),
        );
        let auth = Authenticator::with_order(
            chain,
            vec![AuthnBackend::Local, AuthnBackend::Http(HttpAuth::new(hook))],
            CacheSettings {
                ttl: Duration::from_secs(60),
                max_entries: 100,
                bcrypt_workers: 1,
            },
            CacheStats::default(),
        );
        let answer = auth.authenticate_in(&creds("alice", "good"), &ctx()).await;
        assert!(matches!(answer.result, Ok(AuthnOutcome::Authenticated(_))));
        assert_eq!(answer.backend, "http_auth");
        // Cached for the same client and service…
        let again = auth.authenticate_in(&creds("alice", "good"), &ctx()).await;
        assert_eq!(again.backend, "http_auth");
        assert_eq!(fake.calls(), 1);
        // …but another client address asks the webhook again.
        let elsewhere = AuthnContext {
            client_ip: Some("198.51.100.1".parse().unwrap()),
            ..ctx()
        };
        auth.authenticate_in(&creds("alice", "good"), &elsewhere)
            .await;
        assert_eq!(fake.calls(), 2);
        let answer = auth.authenticate_in(&creds("alice", "bad"), &ctx()).await;
        assert_eq!(answer.result.unwrap(), AuthnOutcome::WrongPassword);
        assert_eq!(answer.backend, "http_auth");
        // Not known to anybody: the last backend asked.
        let answer = auth.authenticate_in(&creds("zed", "x"), &ctx()).await;
        assert_eq!(answer.result.unwrap(), AuthnOutcome::NoMatch);
        // A failure names the webhook.
        let answer = auth.authenticate_in(&creds("weird", "x"), &ctx()).await;
        assert!(answer.result.is_err());
        assert_eq!(answer.backend, "http_auth");
        // Webhook users cannot be re-checked: no refresh.
        assert!(
            auth.lookup("alice", std::time::SystemTime::now())
                .await
                .unwrap()
                .is_none()
        );
    }
}
