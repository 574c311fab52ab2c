//! `gitlab_auth`: GitLab.com or a self-hosted GitLab.
//!
//! * Authorization: `<web>/oauth/authorize` (`scope=read_user read_api`, `state`, PKCE S256);
//!   token: `<web>/oauth/token` (access tokens expire after two hours and come with a refresh
//!   token, which GitLab rotates on use).
//! * Account: `GET <api>/user` → `username`, lower-cased (GitLab ignores its case); it must be
//!   `active`.
//! * Groups: `GET <api>/groups?min_access_level=10` (every group the user is a member of,
//!   directly or through a parent) → the `groups` label, full paths (`acme/platform`).
//! * `allowed_groups` (or docker_auth's `organization`): the user must belong to one of them (or
//!   to one of their subgroups). Unlike docker_auth, this is enforced.

use serde::Deserialize;

use super::oauth::{self, ClientAuth};
use super::{Account, Common, UpstreamTokens, Verdict, json_answer, send};
use crate::authn::Labels;
use crate::oidc::Unavailable;

/// GitLab's endpoints and the group restriction.
#[derive(Debug)]
pub struct Gitlab {
    /// Web base, e.g. `https://gitlab.com` (no trailing slash).
    pub web: String,
    /// API base, e.g. `https://gitlab.com/api/v4`.
    pub api: String,
    /// Users must be in one of these groups (full paths); empty = anyone.
    pub allowed_groups: Vec<String>,
    /// The HTTP client.
    pub http: reqwest::Client,
}

#[derive(Deserialize)]
struct User {
    username: String,
    #[serde(default)]
    state: Option<String>,
}

#[derive(Deserialize)]
struct Group {
    full_path: String,
}

const MAX_GROUP_PAGES: u32 = 10;

impl Gitlab {
    pub(super) fn authorize_url(
        &self,
        common: &Common,
        redirect_uri: &str,
        state: &str,
        verifier: &str,
    ) -> Result<String, Unavailable> {
        let client = self.oauth(common, Some(redirect_uri))?;
        Ok(oauth::authorize_url(
            &client,
            state,
            verifier,
            &["read_user", "read_api"],
            &[],
        ))
    }

    /// The OAuth2 client (code exchange and refresh at `<web>/oauth/token`).
    pub(super) fn oauth(
        &self,
        common: &Common,
        redirect_uri: Option<&str>,
    ) -> Result<oauth::Client, Unavailable> {
        oauth::client(
            common,
            &format!("{}/oauth/authorize", self.web),
            &format!("{}/oauth/token", self.web),
            ClientAuth::Form,
            redirect_uri,
        )
    }

    fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.api))
            .bearer_auth(token)
    }

    pub(super) async fn check(&self, tokens: UpstreamTokens) -> Result<Verdict, Unavailable> {
        let token = tokens.access_token.clone();
        let response = send(self.get("/user", &token), "GitLab /user").await?;
        if matches!(response.status().as_u16(), 401 | 403) {
            return Ok(Verdict::Refused(
                "GitLab no longer accepts the token (revoked, or the account is blocked)"
                    .to_owned(),
            ));
        }
        let user: User = json_answer(response, "GitLab /user").await?;
        if let Some(state) = &user.state
            && state != "active"
        {
            return Ok(Verdict::Refused(format!(
                "the GitLab account {} is {state}",
                user.username
            )));
        }
        let mut groups = Vec::new();
        for page in 1..=MAX_GROUP_PAGES {
            let path = format!("/groups?min_access_level=10&per_page=100&page={page}");
            let response = send(self.get(&path, &token), "GitLab /groups").await?;
            let list: Vec<Group> = json_answer(response, "GitLab /groups").await?;
            let n = list.len();
            groups.extend(list.into_iter().map(|g| g.full_path));
            if n < 100 {
                break;
            }
        }
        groups.sort();
        groups.dedup();
        if !self.allowed_groups.is_empty()
            && !groups.iter().any(|g| {
                self.allowed_groups.iter().any(|a| {
                    g == a
                        || g.strip_prefix(a.as_str())
                            .is_some_and(|rest| rest.starts_with('/'))
                })
            })
        {
            return Ok(Verdict::Refused(format!(
                "{} is not a member of {} on GitLab",
                user.username,
                self.allowed_groups.join(" or ")
            )));
        }
        let mut labels = Labels::default();
        labels.0.insert("groups".to_owned(), groups);
        Ok(Verdict::Allowed(Account {
            // GitLab usernames are case-insensitive: one spelling per account.
            user: user.username.to_lowercase(),
            labels,
            tokens,
        }))
    }
}
