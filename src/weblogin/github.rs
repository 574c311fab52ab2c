//! `github_auth`: GitHub (or GitHub Enterprise) OAuth.
//!
//! * Authorization: `<web>/login/oauth/authorize` with `scope=read:org`, `state` and PKCE
//!   (S256); token: `<web>/login/oauth/access_token` (JSON answer).
//! * Account: `GET <api>/user` → `login`, lower-cased (GitHub ignores its case), is the registry
//!   account.
//! * `organization`: membership via `GET <api>/user/memberships/orgs/<org>` (`state: active`);
//!   the user's teams in it (`GET <api>/user/teams`, with each team's parent) become the
//!   `teams` label.
//! * Revalidation: the same checks with the stored token (refreshed first when GitHub gave an
//!   expiring token with a refresh token).

use serde::Deserialize;

use super::oauth::{self, ClientAuth};
use super::{Account, Common, UpstreamTokens, Verdict, json_answer, send};
use crate::authn::Labels;
use crate::oidc::Unavailable;

/// GitHub's endpoints and the organization restriction.
#[derive(Debug)]
pub struct Github {
    /// Web base, e.g. `https://github.com` (no trailing slash).
    pub web: String,
    /// API base, e.g. `https://api.github.com` or `https://ghe.example.com/api/v3`.
    pub api: String,
    /// Only members of this organization may log in; their teams become labels.
    pub organization: Option<String>,
    /// The HTTP client.
    pub http: reqwest::Client,
}

#[derive(Deserialize)]
struct User {
    login: String,
}

#[derive(Deserialize)]
struct Membership {
    state: String,
}

#[derive(Deserialize)]
struct Org {
    login: String,
}

#[derive(Deserialize)]
struct Parent {
    slug: String,
}

#[derive(Deserialize)]
struct Team {
    slug: String,
    organization: Org,
    #[serde(default)]
    parent: Option<Parent>,
}

/// At most this many pages of teams (100 each).
const MAX_TEAM_PAGES: u32 = 10;

impl Github {
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
            &["read:org"],
            &[("allow_signup", "false")],
        ))
    }

    /// The OAuth2 client (code exchange and refresh at `<web>/login/oauth/access_token`).
    pub(super) fn oauth(
        &self,
        common: &Common,
        redirect_uri: Option<&str>,
    ) -> Result<oauth::Client, Unavailable> {
        oauth::client(
            common,
            &format!("{}/login/oauth/authorize", self.web),
            &format!("{}/login/oauth/access_token", self.web),
            ClientAuth::Form,
            redirect_uri,
        )
    }

    fn get(&self, path: &str, token: &str) -> reqwest::RequestBuilder {
        self.http
            .get(format!("{}{path}", self.api))
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/vnd.github+json")
            .header("X-GitHub-Api-Version", "2022-11-28")
    }

    /// The account, its organization membership and teams.
    pub(super) async fn check(&self, tokens: UpstreamTokens) -> Result<Verdict, Unavailable> {
        let token = tokens.access_token.clone();
        let response = send(self.get("/user", &token), "GitHub /user").await?;
        if matches!(response.status().as_u16(), 401 | 403) {
            return Ok(Verdict::Refused(
                "GitHub no longer accepts the token (revoked, or the account is suspended)"
                    .to_owned(),
            ));
        }
        let user: User = json_answer(response, "GitHub /user").await?;
        let mut labels = Labels::default();
        if let Some(org) = &self.organization {
            let path = format!("/user/memberships/orgs/{}", path_segment(org));
            let response = send(self.get(&path, &token), "GitHub organization membership").await?;
            match response.status().as_u16() {
                403 | 404 => {
                    return Ok(Verdict::Refused(format!(
                        "{} is not a member of the GitHub organization {org}",
                        user.login
                    )));
                }
                _ => {
                    let m: Membership =
                        json_answer(response, "GitHub organization membership").await?;
                    if m.state != "active" {
                        return Ok(Verdict::Refused(format!(
                            "{}'s membership of the GitHub organization {org} is {} (not active \
                             yet: accept the invitation first)",
                            user.login, m.state
                        )));
                    }
                }
            }
            let mut teams: Vec<String> = Vec::new();
            for page in 1..=MAX_TEAM_PAGES {
                let path = format!("/user/teams?per_page=100&page={page}");
                let response = send(self.get(&path, &token), "GitHub /user/teams").await?;
                let list: Vec<Team> = json_answer(response, "GitHub /user/teams").await?;
                let n = list.len();
                for team in list {
                    if team.organization.login.eq_ignore_ascii_case(org) {
                        teams.push(team.slug);
                        if let Some(parent) = team.parent {
                            teams.push(parent.slug);
                        }
                    }
                }
                if n < 100 {
                    break;
                }
            }
            teams.sort();
            teams.dedup();
            labels.0.insert("teams".to_owned(), teams);
        }
        Ok(Verdict::Allowed(Account {
            // GitHub logins are case-insensitive: one spelling per account.
            user: user.login.to_lowercase(),
            labels,
            tokens,
        }))
    }
}

/// Percent-encodes a URL path segment.
fn path_segment(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}
