//! Validating the web-login sections (`github_auth`, `gitlab_auth`, `google_auth`, `oidc_auth`):
//! their shared settings, endpoints and issuers.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;

use super::super::Loader;
use crate::authn::Secret;
use crate::config::file::{
    GithubAuthSpec, GitlabAuthSpec, GoogleAuthSpec, OidcAuthSpec, WebCommonSpec,
};
use crate::oidc::{Issuer, http_client};
use crate::store::StoreSettings;
use crate::weblogin::{
    Common, DEFAULT_HTTP_TIMEOUT, DEFAULT_PASSWORD_LIFETIME, DEFAULT_REVALIDATE_AFTER, Github,
    Gitlab, OidcLogin, Provider, ProviderKind,
};

impl Loader {
    /// The shared settings of a section.
    pub(super) fn common(
        &mut self,
        section: &str,
        c: &WebCommonSpec,
        redirect: Option<&str>,
        redirect_key: &str,
    ) -> Option<Common> {
        let mut ok = true;
        let client_id = match c.client_id.as_deref().map(str::trim) {
            Some(id) if !id.is_empty() => id.to_owned(),
            _ => {
                self.issue(
                    format!("{section}.client_id"),
                    "missing; copy the OAuth client id from the provider's app registration",
                );
                ok = false;
                String::new()
            }
        };
        let client_secret = match (&c.client_secret, &c.client_secret_file) {
            (Some(_), Some(_)) => {
                self.issue(
                    format!("{section}.client_secret_file"),
                    "set `client_secret` or `client_secret_file`, not both",
                );
                None
            }
            (Some(s), None) if !s.trim().is_empty() => Some(Secret::new(s.trim())),
            (None, Some(f)) => {
                let resolved = self.resolve(format!("{section}.client_secret_file"), f);
                self.private(format!("{section}.client_secret_file"), &resolved);
                match crate::config::sources::read_to_string(&resolved) {
                    Ok(t) if !t.trim().is_empty() => Some(Secret::new(t.trim())),
                    Ok(_) => {
                        self.issue(
                            format!("{section}.client_secret_file"),
                            format!("{} is empty", resolved.display()),
                        );
                        None
                    }
                    Err(e) => {
                        self.issue(
                            format!("{section}.client_secret_file"),
                            format!("cannot read {}: {e}", resolved.display()),
                        );
                        None
                    }
                }
            }
            _ => {
                self.issue(
                    format!("{section}.client_secret"),
                    "missing; set `client_secret_file` (a file holding the OAuth client secret) \
                     or `client_secret`",
                );
                None
            }
        };
        let http_timeout = self.positive_duration(
            &format!("{section}.http_timeout"),
            c.http_timeout.clone(),
            DEFAULT_HTTP_TIMEOUT,
            "10s",
        );
        let revalidate_after = self.positive_duration(
            &format!("{section}.revalidate_after"),
            c.revalidate_after.clone(),
            DEFAULT_REVALIDATE_AFTER,
            "1h",
        );
        let password_lifetime = self.positive_duration(
            &format!("{section}.password_lifetime"),
            c.password_lifetime.clone(),
            DEFAULT_PASSWORD_LIFETIME,
            "30d",
        );
        let redirect_url = match redirect {
            None => None,
            Some(r) => {
                let route = format!("/{section}");
                match Url::parse(r) {
                    Ok(u)
                        if matches!(u.scheme(), "http" | "https")
                            && u.path().ends_with(&route)
                            && u.query().is_none()
                            && u.fragment().is_none() =>
                    {
                        Some(r.to_owned())
                    }
                    _ => {
                        self.issue(
                            format!("{section}.{redirect_key}"),
                            format!(
                                "{r:?} is not an http(s) URL ending in `{route}` (this server's \
                                 callback, e.g. `https://auth.example.com{route}`), without a \
                                 query"
                            ),
                        );
                        ok = false;
                        None
                    }
                }
            }
        };
        if !ok {
            return None;
        }
        Some(Common {
            client_id,
            client_secret: client_secret?,
            registry_url: c.registry_url.clone().filter(|r| !r.trim().is_empty()),
            redirect_url,
            revalidate_after: revalidate_after?,
            password_lifetime: password_lifetime?,
            http_timeout: http_timeout?,
        })
    }

    pub(super) fn http(&mut self, section: &str, timeout: Duration) -> Option<reqwest::Client> {
        match http_client(timeout) {
            Ok(c) => Some(c),
            Err(e) => {
                self.issue(section, e);
                None
            }
        }
    }

    /// A base URL (`http(s)://…`, no trailing slash).
    pub(super) fn base_url(
        &mut self,
        path: &str,
        value: Option<&str>,
        default: &str,
    ) -> Option<String> {
        let v = value.unwrap_or(default).trim().trim_end_matches('/');
        match Url::parse(v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {
                Some(v.to_owned())
            }
            _ => {
                self.issue(
                    path,
                    format!("{v:?} is not an http(s) URL; write e.g. `{default}`"),
                );
                None
            }
        }
    }

    pub(super) fn github(
        &mut self,
        s: &GithubAuthSpec,
        data_dir: &Path,
        dbs: &mut Vec<(String, StoreSettings)>,
    ) -> Option<Provider> {
        let c = s.common();
        let db_ok = self.token_db("github_auth", &c, data_dir, dbs);
        let common = self.common("github_auth", &c, s.redirect_url.as_deref(), "redirect_url");
        let web = self.base_url(
            "github_auth.github_web_uri",
            s.github_web_uri.as_deref(),
            "https://github.com",
        );
        let api = self.base_url(
            "github_auth.github_api_uri",
            s.github_api_uri.as_deref(),
            "https://api.github.com",
        );
        let common = common?;
        let http = self.http("github_auth", common.http_timeout)?;
        let organization = s.organization.clone().filter(|o| !o.trim().is_empty());
        if !db_ok {
            return None;
        }
        Some(Provider::github(
            common,
            Github {
                web: web?,
                api: api?,
                organization,
                http,
            },
        ))
    }

    pub(super) fn gitlab(
        &mut self,
        s: &GitlabAuthSpec,
        data_dir: &Path,
        dbs: &mut Vec<(String, StoreSettings)>,
    ) -> Option<Provider> {
        let c = s.common();
        let db_ok = self.token_db("gitlab_auth", &c, data_dir, dbs);
        let common = self.common("gitlab_auth", &c, s.redirect_uri.as_deref(), "redirect_uri");
        if let Some(g) = &s.grant_type
            && g != "authorization_code"
        {
            self.issue(
                "gitlab_auth.grant_type",
                format!("{g:?}: a browser login uses `authorization_code` (or remove the key)"),
            );
            return None;
        }
        let web = self.base_url(
            "gitlab_auth.gitlab_web_uri",
            s.gitlab_web_uri.as_deref(),
            "https://gitlab.com",
        );
        let web = web?;
        let api = self.base_url(
            "gitlab_auth.gitlab_api_uri",
            s.gitlab_api_uri.as_deref(),
            &format!("{web}/api/v4"),
        );
        let common = common?;
        let http = self.http("gitlab_auth", common.http_timeout)?;
        let mut allowed_groups: BTreeSet<String> = s
            .allowed_groups
            .iter()
            .map(|g| g.trim().trim_matches('/').to_owned())
            .filter(|g| !g.is_empty())
            .collect();
        if let Some(o) = &s.organization {
            let o = o.trim().trim_matches('/');
            if !o.is_empty() {
                allowed_groups.insert(o.to_owned());
            }
        }
        if !db_ok {
            return None;
        }
        Some(Provider::gitlab(
            common,
            Gitlab {
                web,
                api: api?,
                allowed_groups: allowed_groups.into_iter().collect(),
                http,
            },
        ))
    }

    pub(super) fn issuer_url(
        &mut self,
        path: &str,
        issuer: Option<&str>,
        example: &str,
    ) -> Option<String> {
        match issuer.map(str::trim) {
            Some(i) if !i.is_empty() => match Url::parse(i) {
                Ok(u) if matches!(u.scheme(), "http" | "https") && u.query().is_none() => {
                    Some(i.to_owned())
                }
                _ => {
                    self.issue(
                        path,
                        format!("{i:?} is not an http(s) URL; write e.g. `{example}`"),
                    );
                    None
                }
            },
            _ => {
                self.issue(
                    path,
                    format!(
                        "missing; the issuer exactly as in its tokens' `iss`, e.g. `{example}`"
                    ),
                );
                None
            }
        }
    }

    pub(super) fn google(
        &mut self,
        s: &GoogleAuthSpec,
        data_dir: &Path,
        dbs: &mut Vec<(String, StoreSettings)>,
    ) -> Option<Provider> {
        let c = s.common();
        let db_ok = self.token_db("google_auth", &c, data_dir, dbs);
        let common = self.common("google_auth", &c, s.redirect_url.as_deref(), "redirect_url");
        let issuer = self.issuer_url(
            "google_auth.issuer",
            Some(s.issuer.as_deref().unwrap_or("https://accounts.google.com")),
            "https://accounts.google.com",
        );
        let common = common?;
        let http = self.http("google_auth", common.http_timeout)?;
        if !db_ok {
            return None;
        }
        let domain = s.domain.clone().filter(|d| !d.trim().is_empty());
        Some(Provider::oidc(
            ProviderKind::Google,
            common,
            OidcLogin {
                issuer: Arc::new(Issuer::new(&issuer?, http, None)),
                scopes: vec!["openid".into(), "email".into(), "profile".into()],
                user_claim: "email".to_owned(),
                labels_claims: Vec::new(),
                hosted_domain: domain,
                google: true,
            },
        ))
    }

    pub(super) fn oidc(
        &mut self,
        s: &OidcAuthSpec,
        data_dir: &Path,
        dbs: &mut Vec<(String, StoreSettings)>,
    ) -> Option<Provider> {
        let c = s.common();
        let db_ok = self.token_db("oidc_auth", &c, data_dir, dbs);
        let common = self.common("oidc_auth", &c, s.redirect_url.as_deref(), "redirect_url");
        let issuer = self.issuer_url(
            "oidc_auth.issuer",
            s.issuer.as_deref(),
            "https://login.example.com/realms/acme",
        );
        let mut scopes = s
            .scopes
            .clone()
            .unwrap_or_else(|| vec!["openid".to_owned(), "email".to_owned()]);
        if !scopes.iter().any(|x| x == "openid") {
            scopes.insert(0, "openid".to_owned());
        }
        let user_claim = s
            .user_claim
            .clone()
            .filter(|u| !u.trim().is_empty())
            .unwrap_or_else(|| "email".to_owned());
        let common = common?;
        let http = self.http("oidc_auth", common.http_timeout)?;
        if !db_ok {
            return None;
        }
        Some(Provider::oidc(
            ProviderKind::Oidc,
            common,
            OidcLogin {
                issuer: Arc::new(Issuer::new(&issuer?, http, None)),
                scopes,
                user_claim,
                labels_claims: s.labels_claims.clone(),
                hosted_domain: None,
                google: false,
            },
        ))
    }
}
