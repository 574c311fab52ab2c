//! `ext_auth`: an external program decides, with docker_auth's contract: stdin is
//! `"<user> <password>"` (one space, no newline); exit 0 = authenticated (stdout may hold
//! `{"labels": {"group": ["a", "b"]}, "account": "canonical-name"}`, both optional: `account` is
//! the name the token is for, for programs that match names loosely), 1 = wrong password, 2 = no match (ask the next backend),
//! anything else = error. Runs through [`crate::ext::ExtProgram`]: no shell, a timeout, a bound
//! on concurrent runs.

use std::sync::Arc;

use serde::Deserialize;

use super::{AuthnError, AuthnOutcome, Credentials, Identity, IdentityKind, Labels};
use crate::ext::ExtProgram;

/// The `ext_auth` backend.
#[derive(Debug, Clone)]
pub struct ExtAuth {
    program: Arc<ExtProgram>,
}

#[derive(Debug, Default, Deserialize)]
struct Output {
    #[serde(default)]
    labels: Labels,
    /// The account's canonical name, when the program matches names loosely (default: the
    /// name presented).
    #[serde(default)]
    account: Option<String>,
}

impl ExtAuth {
    /// Wraps a configured program.
    pub fn new(program: Arc<ExtProgram>) -> Self {
        Self { program }
    }

    /// The program (for its concurrency figures).
    pub fn program(&self) -> &Arc<ExtProgram> {
        &self.program
    }

    /// Asks the program.
    pub async fn authenticate(&self, creds: &Credentials) -> Result<AuthnOutcome, AuthnError> {
        let mut input = Vec::with_capacity(creds.account.len() + creds.password.expose().len() + 1);
        input.extend_from_slice(creds.account.as_bytes());
        input.push(b' ');
        input.extend_from_slice(creds.password.expose().as_bytes());
        let answer = self
            .program
            .run(&input)
            .await
            .map_err(|e| AuthnError::Backend {
                backend: "ext_auth",
                message: e.to_string(),
            })?;
        match answer.code {
            0 => {
                let output: Output = if answer.stdout.iter().all(u8::is_ascii_whitespace) {
                    Output::default()
                } else {
                    serde_json::from_slice(&answer.stdout).map_err(|e| AuthnError::Backend {
                        backend: "ext_auth",
                        message: format!(
                            "exit 0 with output that is not `{{\"labels\": {{…}}}}` JSON: {e}"
                        ),
                    })?
                };
                Ok(AuthnOutcome::Authenticated(Identity {
                    account: super::vouched_account("ext_auth", &creds.account, output.account)?,
                    labels: output.labels,
                    kind: if creds.is_anonymous() {
                        IdentityKind::Anonymous
                    } else {
                        IdentityKind::External("ext_auth")
                    },
                    fingerprint: None,
                }))
            }
            1 => Ok(AuthnOutcome::WrongPassword),
            2 => Ok(AuthnOutcome::NoMatch),
            code => Err(AuthnError::Backend {
                backend: "ext_auth",
                message: format!("the program exited with {code} (0, 1 or 2 expected)"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    use super::*;
    use crate::authn::Secret;

    fn ext(body: &str) -> (tempfile::TempDir, ExtAuth) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("auth");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        let prog = ExtProgram::new(path, vec![], Duration::from_secs(5), 4);
        (dir, ExtAuth::new(prog))
    }

    fn creds(a: &str, p: &str) -> Credentials {
        Credentials {
            account: a.into(),
            password: Secret::new(p),
        }
    }

    #[tokio::test]
    async fn docker_auth_exit_codes_and_labels() {
        // Reads "user password" from stdin.
        let (_d, e) = ext(r#"read u p
case "$u:$p" in
  alice:good) echo '{"labels": {"group": ["dev", "ops"]}}'; exit 0 ;;
  bob:good) exit 0 ;;
  alice:*) exit 1 ;;
  broken:*) echo 'not json'; exit 0 ;;
  crash:*) exit 7 ;;
  *) exit 2 ;;
esac"#);
        let AuthnOutcome::Authenticated(id) =
            e.authenticate(&creds("alice", "good")).await.unwrap()
        else {
            panic!("alice");
        };
        assert_eq!(id.labels.get("group").unwrap(), ["dev", "ops"]);
        assert_eq!(id.kind, IdentityKind::External("ext_auth"));
        assert!(
            id.fingerprint.is_none(),
            "no refresh tokens for ext_auth users"
        );
        assert!(matches!(
            e.authenticate(&creds("bob", "good")).await.unwrap(),
            AuthnOutcome::Authenticated(i) if i.labels.is_empty()
        ));
        assert_eq!(
            e.authenticate(&creds("alice", "bad")).await.unwrap(),
            AuthnOutcome::WrongPassword
        );
        assert_eq!(
            e.authenticate(&creds("carol", "x")).await.unwrap(),
            AuthnOutcome::NoMatch
        );
        let err = e.authenticate(&creds("broken", "x")).await.unwrap_err();
        assert!(err.to_string().contains("labels"), "{err}");
        let err = e.authenticate(&creds("crash", "x")).await.unwrap_err();
        assert!(err.to_string().contains("exited with 7"), "{err}");
    }

    #[tokio::test]
    async fn stdin_is_user_space_password_without_newline() {
        let (_d, e) =
            ext(r#"input=$(cat; echo x); [ "$input" = "alice pass wordx" ] && exit 0; exit 1"#);
        assert!(matches!(
            e.authenticate(&creds("alice", "pass word")).await.unwrap(),
            AuthnOutcome::Authenticated(_)
        ));
    }
}
