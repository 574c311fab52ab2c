//! `ext_authz`: an external program decides each scope, with docker_auth's contract: stdin is
//! the JSON of the request (`Account`, `Type`, `Name`, `Service`, `IP`, `Actions`, `Labels`);
//! exit 0 = every requested action is granted, 1 = denied, anything else = error. Two
//! extensions: exit 2 = no match (the next authorizer decides; docker_auth treated it as an
//! error), and on exit 0 a stdout of `{"actions": ["pull"]}` grants only those of the requested
//! actions.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::AuthzRequest;
use crate::authn::Labels;
use crate::ext::{ExtError, ExtProgram};

/// The `ext_authz` backend.
#[derive(Debug, Clone)]
pub struct ExtAuthz {
    program: Arc<ExtProgram>,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
struct Input<'a> {
    /// The subject: the account, or `source:account` for a qualified principal.
    account: &'a str,
    /// The source that vouched for the account.
    source: &'a str,
    #[serde(rename = "Type")]
    kind: &'a str,
    name: &'a str,
    service: &'a str,
    #[serde(rename = "IP")]
    ip: String,
    actions: &'a [String],
    labels: &'a Labels,
}

#[derive(Deserialize)]
struct Output {
    actions: Vec<String>,
}

/// Why the program's answer is unusable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtAuthzError {
    /// The program failed.
    #[error(transparent)]
    Program(#[from] ExtError),
    /// It answered something outside the contract.
    #[error("ext_authz: {0}")]
    Contract(String),
}

impl ExtAuthz {
    /// Wraps a configured program.
    pub fn new(program: Arc<ExtProgram>) -> Self {
        Self { program }
    }

    /// The program (for its concurrency figures).
    pub fn program(&self) -> &Arc<ExtProgram> {
        &self.program
    }

    /// `Some(granted)` (sorted; empty = denied) or `None` for no match.
    pub async fn authorize(
        &self,
        req: &AuthzRequest<'_>,
    ) -> Result<Option<Vec<String>>, ExtAuthzError> {
        let subject = req.subject();
        let input = Input {
            account: &subject,
            source: req.source,
            kind: req.kind,
            name: req.name,
            service: req.service,
            ip: req.ip.map(|i| i.to_string()).unwrap_or_default(),
            actions: req.actions,
            labels: req.labels,
        };
        let json = serde_json::to_vec(&input)
            .map_err(|e| ExtAuthzError::Contract(format!("cannot encode the request: {e}")))?;
        let answer = self.program.run(&json).await?;
        match answer.code {
            // docker_auth grants every requested action on exit 0 whatever the program prints;
            // only a JSON object with an `actions` list (ours) narrows the grant.
            0 => match serde_json::from_slice::<Output>(&answer.stdout) {
                Ok(out) => Ok(Some(super::requested_subset(req.actions, &out.actions))),
                Err(_) => {
                    if !answer.stdout.iter().all(u8::is_ascii_whitespace) {
                        tracing::debug!(
                            backend = "ext_authz",
                            "exit 0 with output that is not `{{\"actions\": [...]}}`: ignored, \
                             as docker_auth does (every requested action)"
                        );
                    }
                    Ok(Some(req.actions.to_vec()))
                }
            },
            1 => Ok(Some(Vec::new())),
            2 => Ok(None),
            code => Err(ExtAuthzError::Contract(format!(
                "the program exited with {code} (0, 1 or 2 expected)"
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;

    fn ext(body: &str) -> (tempfile::TempDir, ExtAuthz) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("authz");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let prog = ExtProgram::new(path, vec![], Duration::from_secs(5), 4);
        (dir, ExtAuthz::new(prog))
    }

    async fn ask(e: &ExtAuthz, name: &str) -> Result<Option<Vec<String>>, ExtAuthzError> {
        let labels = Labels::from_iter([("team", vec!["dev"])]);
        let actions = vec!["pull".to_owned(), "push".to_owned()];
        e.authorize(&AuthzRequest {
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
    async fn exit_codes_and_subsets() {
        let (_d, e) = ext(r#"input=$(cat)
case "$input" in
  *'"Name":"all"'*) exit 0 ;;
  *'"Name":"some"'*) echo '{"actions": ["pull", "delete"]}'; exit 0 ;;
  *'"Name":"none"'*) exit 1 ;;
  *'"Name":"pass"'*) exit 2 ;;
  *'"Name":"junk"'*) echo junk; exit 0 ;;
  *'"Name":"wrongtype"'*) echo '{"actions": "pull"}'; exit 0 ;;
  *) exit 9 ;;
esac"#);
        assert_eq!(
            ask(&e, "all").await.unwrap(),
            Some(vec!["pull".into(), "push".into()])
        );
        // Only requested actions are ever granted.
        assert_eq!(ask(&e, "some").await.unwrap(), Some(vec!["pull".into()]));
        assert_eq!(ask(&e, "none").await.unwrap(), Some(vec![]));
        assert_eq!(ask(&e, "pass").await.unwrap(), None);
        // Output that is not `{"actions": [...]}` is ignored on exit 0, as docker_auth ignores
        // stdout: every requested action.
        for ignored in ["junk", "wrongtype"] {
            assert_eq!(
                ask(&e, ignored).await.unwrap(),
                Some(vec!["pull".into(), "push".into()]),
                "{ignored}"
            );
        }
        assert!(ask(&e, "other").await.is_err());
    }

    #[tokio::test]
    async fn the_request_json_has_docker_auth_keys() {
        let (_d, e) = ext(r#"cat > "$(dirname "$0")/seen.json"; exit 0"#);
        ask(&e, "alice/app").await.unwrap();
        let dir = _d.path().to_path_buf();
        let seen: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("seen.json")).unwrap()).unwrap();
        assert_eq!(
            seen,
            serde_json::json!({
                "Account": "alice", "Source": "users", "Type": "repository", "Name": "alice/app",
                "Service": "reg",
                "IP": "192.0.2.1", "Actions": ["pull", "push"], "Labels": {"team": ["dev"]}
            })
        );
    }
}
