//! Validating `oidc_tokens`: the CI identities (ID tokens of GitHub Actions, GitLab CI, …).

use std::collections::BTreeSet;
use std::sync::Arc;

use reqwest::Url;

use super::super::Loader;
use crate::authn::ci_oidc::{CiIssuer, CiTokens};
use crate::config::ConfigIssue;
use crate::config::file::OidcTokenSpec;
use crate::oidc::Issuer;
use crate::weblogin::DEFAULT_HTTP_TIMEOUT;

/// Default user name of CI logins.
const DEFAULT_CI_USERNAME: &str = "oidc";

impl Loader {
    pub(super) fn oidc_tokens(
        &mut self,
        list: &[Option<OidcTokenSpec>],
    ) -> Option<Option<CiTokens>> {
        let mut ok = true;
        let mut issuers = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, spec) in list.iter().enumerate() {
            let Some(spec) = spec else {
                ok = false;
                continue;
            };
            let path = format!("oidc_tokens[{i}]");
            let issuer = self.issuer_url(
                &format!("{path}.issuer"),
                spec.issuer.as_deref(),
                "https://token.actions.githubusercontent.com",
            );
            let audience = match spec.audience.as_deref().map(str::trim) {
                Some(a) if !a.is_empty() => Some(a.to_owned()),
                _ => {
                    self.issue(
                        format!("{path}.audience"),
                        "missing; the audience CI jobs ask their tokens for (e.g. the \
                         registry's URL); without it, a token minted for any other service \
                         would be accepted",
                    );
                    None
                }
            };
            let username = spec
                .username
                .clone()
                .filter(|u| !u.trim().is_empty())
                .unwrap_or_else(|| DEFAULT_CI_USERNAME.to_owned());
            let jwks_uri = match &spec.jwks_uri {
                None => Some(None),
                Some(u) => match Url::parse(u) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(Some(url)),
                    _ => {
                        self.issue(
                            format!("{path}.jwks_uri"),
                            format!("{u:?} is not an http(s) URL"),
                        );
                        None
                    }
                },
            };
            let timeout = self.positive_duration(
                &format!("{path}.http_timeout"),
                spec.http_timeout.clone(),
                DEFAULT_HTTP_TIMEOUT,
                "10s",
            );
            let (Some(issuer), Some(audience), Some(jwks_uri), Some(timeout)) =
                (issuer, audience, jwks_uri, timeout)
            else {
                ok = false;
                continue;
            };
            if !seen.insert((issuer.clone(), username.clone())) {
                self.issue(
                    format!("{path}.issuer"),
                    format!("{issuer} is listed twice for user name {username:?}"),
                );
                ok = false;
                continue;
            }
            let Some(http) = self.http(&path, timeout) else {
                ok = false;
                continue;
            };
            if !spec
                .required_claims
                .keys()
                .any(|c| PINNING_CLAIMS.contains(&c.as_str()))
            {
                self.warnings.push(ConfigIssue::new(
                    format!("{path}.required_claims"),
                    format!(
                        "nothing pins the repository or its owner: any CI job of {issuer} (on \
                         GitHub or GitLab.com: any project of anyone) can ask for a token with \
                         audience {audience:?} and log in as {username:?}; add e.g. \
                         `required_claims: {{repository_owner: your-org}}` (GitHub Actions) or \
                         `{{namespace_path: your-group}}` (GitLab); claims that pin: {}",
                        PINNING_CLAIMS.join(", ")
                    ),
                ));
            }
            issuers.push(CiIssuer {
                issuer: Arc::new(Issuer::new(&issuer, http, jwks_uri)),
                audience,
                username,
                labels_claims: spec.labels_claims.clone(),
                required_claims: spec.required_claims.clone(),
            });
        }
        ok.then(|| Some(CiTokens::new(issuers)))
    }
}

/// `required_claims` keys that tie a CI token to a repository or its owner: GitHub Actions
/// (`repository`, `repository_owner` and their ids, `sub` = `repo:OWNER/NAME:…`) and GitLab
/// (`project_path`, `namespace_path` and their ids).
const PINNING_CLAIMS: [&str; 9] = [
    "repository",
    "repository_owner",
    "repository_id",
    "repository_owner_id",
    "sub",
    "project_path",
    "namespace_path",
    "project_id",
    "namespace_id",
];
