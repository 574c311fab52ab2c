//! `http_authz`: a webhook decides each scope (our extension). The request is POSTed as JSON:
//!
//! ```json
//! {"account": "alice", "type": "repository", "name": "alice/app", "service": "registry",
//!  "client_ip": "192.0.2.7", "actions": ["pull", "push"], "labels": {"group": ["dev"]}}
//! ```
//!
//! and a `200` answer must be `{"result": "allow" | "deny" | "no_match", "actions": [...]}`:
//! `allow` with `actions` grants those of the requested actions, `allow` without grants every
//! requested action, `deny` grants nothing (and stops the chain), `no_match` lets the next
//! authorizer decide. Anything else is an error (5xx). See [`crate::webhook`] for transport,
//! signing, retries and the cache.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::AuthzRequest;
use crate::authn::{Labels, Verdict};
use crate::webhook::{Webhook, WebhookError};

/// The `http_authz` backend.
#[derive(Debug, Clone)]
pub struct HttpAuthz {
    hook: Arc<Webhook>,
}

#[derive(Serialize)]
struct Request<'a> {
    /// The subject: the account, or `source:account` for a qualified principal.
    account: &'a str,
    /// The source that vouched for the account.
    source: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    name: &'a str,
    service: &'a str,
    client_ip: Option<String>,
    actions: &'a [String],
    labels: &'a Labels,
}

#[derive(Deserialize)]
struct Answer {
    result: Verdict,
    #[serde(default)]
    actions: Option<Vec<String>>,
}

impl HttpAuthz {
    /// Wraps a configured webhook.
    pub fn new(hook: Arc<Webhook>) -> Self {
        Self { hook }
    }

    /// The webhook (health, concurrency figures).
    pub fn webhook(&self) -> &Arc<Webhook> {
        &self.hook
    }

    /// `Some(granted)` (sorted; empty = denied) or `None` for no match.
    pub async fn authorize(
        &self,
        req: &AuthzRequest<'_>,
    ) -> Result<Option<Vec<String>>, WebhookError> {
        let body = serde_json::to_vec(&Request {
            account: &req.subject(),
            source: req.source,
            kind: req.kind,
            name: req.name,
            service: req.service,
            client_ip: req.ip.map(|ip| ip.to_string()),
            actions: req.actions,
            labels: req.labels,
        })
        .map_err(|e| WebhookError {
            name: "http_authz",
            url: String::new(),
            detail: format!("cannot encode the request: {e}"),
        })?;
        let answer: Answer = self.hook.call(body).await?;
        let mut granted: Vec<String> = match answer.result {
            Verdict::NoMatch => return Ok(None),
            Verdict::Deny => Vec::new(),
            Verdict::Allow => match answer.actions {
                None => req.actions.to_vec(),
                Some(allowed) => super::requested_subset(req.actions, &allowed),
            },
        };
        granted.sort();
        granted.dedup();
        Ok(Some(granted))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::*;
    use crate::webhook::tests::{Fake, settings};

    async fn ask(authz: &HttpAuthz, name: &str) -> Result<Option<Vec<String>>, WebhookError> {
        let labels = Labels::from_iter([("team", vec!["dev"])]);
        let actions = vec!["pull".to_owned(), "push".to_owned()];
        authz
            .authorize(&AuthzRequest {
                account: "alice",
                source: "users",
                unqualified: true,
                kind: "repository",
                name,
                service: "reg",
                ip: Some("192.0.2.1".parse().unwrap()),
                labels: &labels,
                actions: &actions,
            })
            .await
    }

    #[tokio::test]
    async fn every_answer_shape() {
        let fake = Fake::start(|req: &Value| {
            let body = match req["name"].as_str().unwrap_or_default() {
                "all" => json!({"result": "allow"}),
                "some" => json!({"result": "allow", "actions": ["pull", "delete"]}),
                "none" => json!({"result": "allow", "actions": []}),
                "deny" => json!({"result": "deny"}),
                "pass" => json!({"result": "no_match"}),
                "junk" => json!({"result": "yes"}),
                "bad-actions" => json!({"result": "allow", "actions": "pull"}),
                _ => return (404, String::new(), Duration::ZERO),
            };
            (200, body.to_string(), Duration::ZERO)
        })
        .await;
        let authz = HttpAuthz::new(Webhook::new(settings("http_authz", fake.url("http"))).unwrap());
        assert_eq!(
            ask(&authz, "all").await.unwrap(),
            Some(vec!["pull".into(), "push".into()])
        );
        // Only requested actions are ever granted.
        assert_eq!(
            ask(&authz, "some").await.unwrap(),
            Some(vec!["pull".into()])
        );
        assert_eq!(ask(&authz, "none").await.unwrap(), Some(vec![]));
        assert_eq!(ask(&authz, "deny").await.unwrap(), Some(vec![]));
        assert_eq!(ask(&authz, "pass").await.unwrap(), None);
        assert!(ask(&authz, "junk").await.is_err());
        assert!(ask(&authz, "bad-actions").await.is_err());
        let e = ask(&authz, "other").await.unwrap_err();
        assert!(e.detail.contains("HTTP 404"), "{e}");
        assert_eq!(e.name, "http_authz");
    }

    #[tokio::test]
    async fn the_request_has_the_documented_keys() {
        let fake =
            Fake::start(|_: &Value| (200, json!({"result": "allow"}).to_string(), Duration::ZERO))
                .await;
        let authz = HttpAuthz::new(Webhook::new(settings("http_authz", fake.url("http"))).unwrap());
        ask(&authz, "alice/app").await.unwrap();
        assert_eq!(
            fake.last().body,
            json!({
                "account": "alice", "source": "users", "type": "repository", "name": "alice/app",
                "service": "reg",
                "client_ip": "192.0.2.1", "actions": ["pull", "push"],
                "labels": {"team": ["dev"]}
            })
        );
    }
}
