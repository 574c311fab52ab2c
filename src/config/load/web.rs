//! Validating the web logins (`github_auth`, `google_auth`, `oidc_auth`, `gitlab_auth`), the
//! CI identities (`oidc_tokens`), the `store` (minted passwords; with Redis or PostgreSQL also the
//! replicas' shared state, web logins or not) and `data_dir`: the sections as read, and
//! `validate_web`, which builds the backends from them. Each part lives in its own file: the
//! web-login sections (`logins.rs`), `oidc_tokens` (`ci_tokens.rs`) and the store with
//! docker_auth's token DBs (`store_section.rs`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_yaml_ng::Value;

use super::Loader;
use crate::config::file::{
    GithubAuthSpec, GitlabAuthSpec, GoogleAuthSpec, OidcAuthSpec, OidcTokenSpec, StoreSpec,
};
use crate::config::{AuthnBackend, ConfigIssue};
use crate::store::{SharedState, Store, StoreSettings};
use crate::weblogin::{Provider, ProviderKind, WebLoginBackend, WebLogins};

mod ci_tokens;
mod logins;
mod store_section;

/// The top-level keys handled here.
pub(super) const KEYS: &[&str] = &[
    "google_auth",
    "github_auth",
    "oidc_auth",
    "gitlab_auth",
    "oidc_tokens",
    "store",
    "data_dir",
];

/// Default `data_dir`, relative to the config file's folder.
const DEFAULT_DATA_DIR: &str = "data";
/// The generated session secret in `data_dir`.
const SESSION_SECRET_FILE: &str = "session.secret";

/// The sections as read.
#[derive(Default)]
pub(super) struct WebSections {
    github: Option<GithubAuthSpec>,
    google: Option<GoogleAuthSpec>,
    oidc: Option<OidcAuthSpec>,
    gitlab: Option<GitlabAuthSpec>,
    oidc_tokens: Option<Vec<Option<OidcTokenSpec>>>,
    store: Option<StoreSpec>,
    data_dir: Option<PathBuf>,
    /// A section was present but could not be read (its problem is recorded).
    broken: bool,
}

impl WebSections {
    /// True when some authenticator is configured here.
    pub(super) fn has_authn(&self) -> bool {
        self.github.is_some()
            || self.google.is_some()
            || self.oidc.is_some()
            || self.gitlab.is_some()
            || self.oidc_tokens.as_ref().is_some_and(|t| !t.is_empty())
    }
}

/// The validated backends.
#[derive(Debug, Default)]
pub(super) struct WebBackends {
    /// The web logins with their store.
    pub(super) logins: Option<Arc<WebLogins>>,
    /// A Redis or PostgreSQL store: the replicas' shared state.
    pub(super) shared: Option<SharedState>,
    /// The chain links, in docker_auth's order (name, backend).
    pub(super) authn: Vec<(&'static str, AuthnBackend)>,
}

impl Loader {
    /// Reads one of [`KEYS`].
    pub(super) fn web_section(&mut self, key: &str, value: Value, w: &mut WebSections) {
        let before = self.issues.len();
        match key {
            "github_auth" => w.github = self.de(key, value),
            "google_auth" => w.google = self.de(key, value),
            "oidc_auth" => w.oidc = self.de(key, value),
            "gitlab_auth" => w.gitlab = self.de(key, value),
            "oidc_tokens" => {
                w.oidc_tokens = match value {
                    Value::Sequence(items) => Some(
                        items
                            .into_iter()
                            .enumerate()
                            .map(|(i, v)| self.de(&format!("oidc_tokens[{i}]"), v))
                            .collect(),
                    ),
                    Value::Null => Some(Vec::new()),
                    _ => {
                        self.issue(
                            "oidc_tokens",
                            "expected a list of trusted issuers `[{issuer: …, audience: …}]`",
                        );
                        None
                    }
                };
            }
            "store" => w.store = self.de(key, value),
            "data_dir" => w.data_dir = self.de(key, value),
            _ => {}
        }
        if self.issues.len() > before {
            w.broken = true;
        }
    }

    /// Validates everything read by [`Loader::web_section`]. `None` after a problem.
    pub(super) fn validate_web(
        &mut self,
        w: WebSections,
        session_secret_file: Option<PathBuf>,
    ) -> Option<WebBackends> {
        let mut ok = !w.broken;
        let data_dir = match w.data_dir.as_deref().unwrap_or(Path::new(DEFAULT_DATA_DIR)) {
            p if p.is_absolute() => p.to_path_buf(),
            p => self.base.join(p),
        };
        let mut providers: Vec<Provider> = Vec::new();
        let mut token_dbs: Vec<(String, StoreSettings)> = Vec::new();
        for kind in ProviderKind::ALL {
            let built = match kind {
                ProviderKind::Google => w
                    .google
                    .as_ref()
                    .map(|s| self.google(s, &data_dir, &mut token_dbs)),
                ProviderKind::Github => w
                    .github
                    .as_ref()
                    .map(|s| self.github(s, &data_dir, &mut token_dbs)),
                ProviderKind::Oidc => w
                    .oidc
                    .as_ref()
                    .map(|s| self.oidc(s, &data_dir, &mut token_dbs)),
                ProviderKind::Gitlab => w
                    .gitlab
                    .as_ref()
                    .map(|s| self.gitlab(s, &data_dir, &mut token_dbs)),
            };
            match built {
                Some(Some(p)) => providers.push(p),
                Some(None) => ok = false,
                None => {}
            }
        }
        let ci = match &w.oidc_tokens {
            Some(list) if !list.is_empty() => self.oidc_tokens(list),
            _ => Some(None),
        };
        let ci = match ci {
            Some(c) => c,
            None => {
                ok = false;
                None
            }
        };
        let web_configured =
            w.github.is_some() || w.google.is_some() || w.oidc.is_some() || w.gitlab.is_some();
        let store = self.store_settings(w.store.as_ref(), &data_dir, &token_dbs, web_configured);
        let shared_store = matches!(
            store,
            Some(StoreSettings::Redis { .. } | StoreSettings::Postgres { .. })
        );
        if w.store.is_some() && !web_configured && !shared_store && store.is_some() {
            self.issue(
                "store",
                "the embedded store only keeps web logins' passwords, and no web login \
                 (github_auth, google_auth, oidc_auth, gitlab_auth) is configured; remove \
                 `store`, or use `type: redis` or `type: postgres` to share revocations and \
                 lockout counters between replicas",
            );
            ok = false;
        }
        if !ok {
            return None;
        }
        let mut out = WebBackends::default();
        if web_configured || shared_store {
            let settings = store?;
            let description = settings.describe();
            self.note_file("data_dir", &data_dir);
            if let StoreSettings::Embedded { path } = &settings {
                self.note_file("store.path", path);
            }
            let (secret_path, generate) = match session_secret_file {
                Some(p) => (self.resolve("server.session_secret_file", &p), false),
                None => (data_dir.join(SESSION_SECRET_FILE), true),
            };
            self.private("server.session_secret_file", &secret_path);
            self.note_file("server.session_secret_file", &secret_path);
            if !generate && !secret_path.is_file() {
                self.issue(
                    "server.session_secret_file",
                    format!(
                        "{} does not exist; create it with `head -c 48 /dev/urandom | base64 > \
                         FILE` (the same file on every replica), or remove the key to have one \
                         generated in data_dir",
                        secret_path.display()
                    ),
                );
                return None;
            }
            if !generate && let Err(e) = crate::token::refresh::read_secret(&secret_path) {
                self.issue("server.session_secret_file", e.to_string());
                return None;
            }
            if shared_store && generate {
                self.warnings.push(ConfigIssue::new(
                    "server.session_secret_file",
                    format!(
                        "not set: this replica generates its own session secret in data_dir, \
                         but the records it shares through the {description} store are \
                         authenticated with it, so replicas with other secrets refuse them \
                         (their revocations still count); give every replica the same file: \
                         `head -c 48 /dev/urandom | base64 > FILE`"
                    ),
                ));
            }
            let store = Store::new(&settings);
            if shared_store {
                out.shared = Some(SharedState::new(
                    store.clone(),
                    description.clone(),
                    secret_path.clone(),
                    generate,
                ));
            }
            if web_configured {
                let logins = Arc::new(WebLogins::new(
                    providers,
                    store,
                    description,
                    secret_path,
                    generate,
                ));
                for p in logins.providers() {
                    out.authn.push((
                        p.kind.key(),
                        AuthnBackend::WebLogin(WebLoginBackend {
                            logins: logins.clone(),
                            kind: p.kind,
                        }),
                    ));
                }
                out.logins = Some(logins);
            }
        }
        if let Some(ci) = ci {
            out.authn.push(("oidc_tokens", AuthnBackend::CiTokens(ci)));
        }
        Some(out)
    }
}

impl WebSections {
    /// The chain links configured (even when invalid), in docker_auth's order.
    pub(super) fn configured_authn(&self) -> Vec<&'static str> {
        let mut keys = Vec::new();
        for kind in ProviderKind::ALL {
            let present = match kind {
                ProviderKind::Google => self.google.is_some(),
                ProviderKind::Github => self.github.is_some(),
                ProviderKind::Oidc => self.oidc.is_some(),
                ProviderKind::Gitlab => self.gitlab.is_some(),
            };
            if present {
                keys.push(kind.key());
            }
        }
        if self.oidc_tokens.as_ref().is_some_and(|t| !t.is_empty()) {
            keys.push("oidc_tokens");
        }
        keys
    }
}

/// The links for `authn_order`: each configured key with its backend, or `None` when the
/// configuration was invalid (its problem is recorded).
pub(super) fn chain_links(
    keys: &[&'static str],
    web: Option<&WebBackends>,
) -> Vec<(&'static str, Option<AuthnBackend>)> {
    keys.iter()
        .map(|k| {
            let backend =
                web.and_then(|w| w.authn.iter().find(|(n, _)| n == k).map(|(_, b)| b.clone()));
            (*k, backend)
        })
        .collect()
}

#[cfg(test)]
mod tests;
