//! Validating the web logins (`github_auth`, `google_auth`, `oidc_auth`, `gitlab_auth`), the
//! CI identities (`oidc_tokens`), the `store` (minted passwords; with Redis or PostgreSQL also the
//! replicas' shared state, web logins or not) and `data_dir`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Url;
use serde_yaml_ng::Value;

use super::Loader;
use crate::authn::Secret;
use crate::authn::ci_oidc::{CiIssuer, CiTokens};
use crate::config::file::{
    GithubAuthSpec, GitlabAuthSpec, GoogleAuthSpec, OidcAuthSpec, OidcTokenSpec, StoreKindSpec,
    StoreSpec, WebCommonSpec,
};
use crate::config::{AuthnBackend, ConfigIssue};
use crate::oidc::{Issuer, http_client};
use crate::store::{self, SharedState, Store, StoreSettings};
use crate::weblogin::{
    Common, DEFAULT_HTTP_TIMEOUT, DEFAULT_PASSWORD_LIFETIME, DEFAULT_REVALIDATE_AFTER, Github,
    Gitlab, OidcLogin, Provider, ProviderKind, WebLoginBackend, WebLogins,
};

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
/// The embedded store's file in `data_dir`.
const EMBEDDED_FILE: &str = "passwords.db";
/// The generated session secret in `data_dir`.
const SESSION_SECRET_FILE: &str = "session.secret";
/// Default user name of CI logins.
const DEFAULT_CI_USERNAME: &str = "oidc";

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

    /// A folder or a file that may not exist yet, resolved like [`Loader::resolve`].
    fn resolve_dir(&self, key: &str, path: &Path) -> PathBuf {
        let resolved = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        };
        self.note_file(key, &resolved);
        resolved
    }

    /// The store: `store:`, else a docker_auth token DB of a section, else the embedded file.
    fn store_settings(
        &mut self,
        spec: Option<&StoreSpec>,
        data_dir: &Path,
        token_dbs: &[(String, StoreSettings)],
        web_configured: bool,
    ) -> Option<StoreSettings> {
        if let Some(spec) = spec {
            if let Some((section, _)) = token_dbs.first() {
                self.issue(
                    section.clone(),
                    format!(
                        "both `store` and a docker_auth token DB are set; one store serves every \
                         web login: keep `store` and remove `{section}`"
                    ),
                );
                return None;
            }
            return self.store_spec(spec, data_dir);
        }
        if let Some((first, settings)) = token_dbs.first() {
            if let Some((other, theirs)) = token_dbs.iter().find(|(_, s)| s != settings) {
                self.issue(
                    other.clone(),
                    format!(
                        "points at {}, but {first} at {}; registry-auth keeps every web login's \
                         passwords in one store: remove the token DBs and configure the store \
                         once as top-level `store` (e.g. `store: {{type: redis, url: …}}`, or \
                         give every `level_token_db` a path in the same folder)",
                        theirs.describe(),
                        settings.describe()
                    ),
                );
                return None;
            }
            return Some(settings.clone());
        }
        web_configured.then(|| StoreSettings::Embedded {
            path: data_dir.join(EMBEDDED_FILE),
        })
    }

    fn store_spec(&mut self, spec: &StoreSpec, data_dir: &Path) -> Option<StoreSettings> {
        let kind = spec.kind.unwrap_or(StoreKindSpec::Embedded);
        let url = match (&spec.url, &spec.url_file) {
            (Some(_), Some(_)) => {
                self.issue("store.url_file", "set `url` or `url_file`, not both");
                return None;
            }
            (Some(u), None) => Some(u.trim().to_owned()),
            (None, Some(f)) => {
                let resolved = self.resolve("store.url_file", f);
                self.private("store.url_file", &resolved);
                match crate::config::sources::read_to_string(&resolved) {
                    Ok(t) if !t.trim().is_empty() => Some(t.trim().to_owned()),
                    Ok(_) => {
                        self.issue("store.url_file", format!("{} is empty", resolved.display()));
                        return None;
                    }
                    Err(e) => {
                        self.issue(
                            "store.url_file",
                            format!("cannot read {}: {e}", resolved.display()),
                        );
                        return None;
                    }
                }
            }
            (None, None) => None,
        };
        if kind != StoreKindSpec::Redis && !self.no_redis_tls_keys(spec, kind) {
            return None;
        }
        match kind {
            StoreKindSpec::Embedded => {
                if url.is_some() {
                    self.issue(
                        "store.url",
                        "the embedded store is a file: set `path` (or nothing, for \
                         data_dir/passwords.db), not `url`",
                    );
                    return None;
                }
                let path = match &spec.path {
                    Some(p) => self.resolve_dir("store.path", p),
                    None => data_dir.join(EMBEDDED_FILE),
                };
                Some(StoreSettings::Embedded { path })
            }
            StoreKindSpec::Redis | StoreKindSpec::Postgres => {
                let name = if kind == StoreKindSpec::Redis {
                    "redis"
                } else {
                    "postgres"
                };
                if spec.path.is_some() {
                    self.issue(
                        "store.path",
                        format!("`path` is for the embedded store; a {name} store needs `url`"),
                    );
                    return None;
                }
                let Some(url) = url else {
                    self.issue(
                        "store.url",
                        format!(
                            "missing; a {name} store needs `url` (or `url_file`), e.g. {}",
                            if kind == StoreKindSpec::Redis {
                                "`redis://127.0.0.1:6379/0`, \
                                 `redis+sentinel://sentinel-1:26379,sentinel-2:26379/mymaster/0` \
                                 or `redis+cluster://node-1:6379,node-2:6379`"
                            } else {
                                "`postgres://registry_auth:PASSWORD@db:5432/registry`"
                            }
                        ),
                    );
                    return None;
                };
                let key = if spec.url_file.is_some() {
                    "store.url_file"
                } else {
                    "store.url"
                };
                self.warnings.extend(if kind == StoreKindSpec::Redis {
                    super::warnings::redis_transport(key, &url)
                } else {
                    super::warnings::postgres_transport(key, &url)
                });
                if kind == StoreKindSpec::Redis {
                    match store::parse_redis_url(&url) {
                        Ok(target) => self
                            .redis_tls(spec, key, target)
                            .map(|target| StoreSettings::Redis { target }),
                        Err(e) => {
                            self.issue("store.url", e);
                            None
                        }
                    }
                } else {
                    match store::check_postgres_url(&url) {
                        Ok(()) => Some(StoreSettings::Postgres {
                            url: Secret::new(url),
                        }),
                        Err(e) => {
                            self.issue("store.url", e);
                            None
                        }
                    }
                }
            }
        }
    }

    /// A docker_auth token DB inside a section, mapped onto the store, with a warning saying
    /// what it became. `out` collects (key, store) for [`Loader::store_settings`].
    fn token_db(
        &mut self,
        section: &str,
        c: &WebCommonSpec,
        data_dir: &Path,
        out: &mut Vec<(String, StoreSettings)>,
    ) -> bool {
        let mut ok = true;
        if c.gcs_token_db.is_some() {
            self.issue(
                format!("{section}.gcs_token_db"),
                "docker_auth's Google Cloud Storage token DB is not supported (registry-auth \
                 keeps minted passwords in one store it can lock and expire, and has no GCS \
                 client); remove `gcs_token_db` and set top-level `store`: `{type: redis, url: \
                 …}` or `{type: postgres, url: …}` for several replicas, or nothing (an embedded \
                 file in data_dir) for one",
            );
            ok = false;
        }
        if let Some(level) = &c.level_token_db {
            let key = format!("{section}.level_token_db");
            // docker_auth's LevelDB is a folder; the embedded store is a file next to it, so a
            // volume mounted for the LevelDB keeps the passwords too.
            let (path, place) = match &level.path {
                Some(p) => {
                    let folder = self.resolve_dir(&format!("{key}.path"), p);
                    let parent = folder.parent().map_or(folder.clone(), Path::to_path_buf);
                    (
                        parent.join(EMBEDDED_FILE),
                        format!(
                            " next to the LevelDB folder {}",
                            std::path::absolute(&folder)
                                .unwrap_or_else(|_| folder.clone())
                                .display()
                        ),
                    )
                }
                None => (data_dir.join(EMBEDDED_FILE), " in data_dir".to_owned()),
            };
            self.warnings.push(ConfigIssue::new(
                key.clone(),
                format!(
                    "docker_auth's LevelDB token DB is mapped onto the embedded store {}{place} \
                     (LevelDB is not read: people sign in once more); write `store: {{type: \
                     embedded, path: …}}` instead to silence this",
                    std::path::absolute(&path)
                        .unwrap_or_else(|_| path.clone())
                        .display()
                ),
            ));
            out.push((key, StoreSettings::Embedded { path }));
        }
        if let Some(r) = &c.redis_token_db {
            let path = format!("{section}.redis_token_db");
            let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            // The URL, and the same with the password shown as `***` for the warning.
            let auth = |u: &Option<String>, p: &Option<String>| match (u, p) {
                (Some(u), Some(p)) => (
                    format!("{}:{}@", enc(u), enc(p)),
                    format!("{}:***@", enc(u)),
                ),
                (None, Some(p)) => (format!(":{}@", enc(p)), ":***@".to_owned()),
                _ => (String::new(), String::new()),
            };
            if let Some(c) = &r.redis_cluster_options {
                let addrs = c.addrs.as_deref().unwrap_or_default();
                if addrs.is_empty() || addrs.iter().any(|a| a.is_empty() || a.contains(',')) {
                    self.issue(
                        format!("{path}.redis_cluster_options.addrs"),
                        "needs a list of `host:port` (some nodes of the cluster)",
                    );
                    return false;
                }
                let (auth, shown) = auth(&c.username, &c.password);
                let hosts = addrs.join(",");
                let s = Self::tls_s(&c.tlsconfig);
                let url = format!("redis{s}+cluster://{auth}{hosts}");
                self.warnings
                    .extend(super::warnings::redis_transport(&path, &url));
                match store::parse_redis_url(&url) {
                    Ok(target) => {
                        self.warnings.push(ConfigIssue::new(
                            path.clone(),
                            format!(
                                "docker_auth's Redis Cluster token DB is mapped onto `store: \
                                 {{type: redis, url: \"redis{s}+cluster://{shown}{hosts}\"}}` \
                                 (docker_auth's entries are not read: people sign in once \
                                 more); write that `store` instead (the password in \
                                 `url_file`) to silence this"
                            ),
                        ));
                        out.push((path, StoreSettings::Redis { target }));
                    }
                    Err(e) => {
                        self.issue(format!("{path}.redis_cluster_options"), e);
                        ok = false;
                    }
                }
            } else if let Some(o) = &r.redis_options {
                if o.network.as_deref().is_some_and(|n| n != "tcp") {
                    self.issue(
                        format!("{path}.redis_options.network"),
                        "only `tcp` is supported (the store connects to `host:port`); use the \
                         Redis server's TCP address in `addr`",
                    );
                    return false;
                }
                let Some(addr) = o.addr.as_deref().filter(|a| !a.is_empty()) else {
                    self.issue(format!("{path}.redis_options.addr"), "missing `host:port`");
                    return false;
                };
                let (auth, shown) = auth(&o.username, &o.password);
                let db = o.db.unwrap_or(0);
                let s = Self::tls_s(&o.tlsconfig);
                let url = format!("redis{s}://{auth}{addr}/{db}");
                self.warnings
                    .extend(super::warnings::redis_transport(&path, &url));
                match store::parse_redis_url(&url) {
                    Ok(target) => {
                        self.warnings.push(ConfigIssue::new(
                            path.clone(),
                            format!(
                                "docker_auth's Redis token DB is mapped onto `store: {{type: \
                                 redis, url: \"redis{s}://{shown}{addr}/{db}\"}}` (docker_auth's \
                                 entries are not read: people sign in once more); write that \
                                 `store` instead (the password in `url_file`) to silence this"
                            ),
                        ));
                        out.push((path, StoreSettings::Redis { target }));
                    }
                    Err(e) => {
                        self.issue(format!("{path}.redis_options"), e);
                        ok = false;
                    }
                }
            } else {
                self.issue(path, "needs `redis_options: {addr: HOST:PORT}`");
                ok = false;
            }
        }
        ok
    }

    /// `s` (`rediss://`) when go-redis options carry a `tlsconfig`, else nothing.
    fn tls_s(tlsconfig: &Option<serde_json::Value>) -> &'static str {
        match tlsconfig {
            Some(v) if !v.is_null() => "s",
            _ => "",
        }
    }

    /// The shared settings of a section.
    fn common(
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

    fn http(&mut self, section: &str, timeout: Duration) -> Option<reqwest::Client> {
        match http_client(timeout) {
            Ok(c) => Some(c),
            Err(e) => {
                self.issue(section, e);
                None
            }
        }
    }

    /// A base URL (`http(s)://…`, no trailing slash).
    fn base_url(&mut self, path: &str, value: Option<&str>, default: &str) -> Option<String> {
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

    fn github(
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

    fn gitlab(
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

    fn issuer_url(&mut self, path: &str, issuer: Option<&str>, example: &str) -> Option<String> {
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

    fn google(
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

    fn oidc(
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

    fn oidc_tokens(&mut self, list: &[Option<OidcTokenSpec>]) -> Option<Option<CiTokens>> {
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
mod tests {
    use std::path::Path;

    use crate::config::{Config, ConfigError, ConfigIssue, parse};

    const TOKEN: &str =
        "token: {issuer: it, generate: true, certificate: k/t.crt, key: k/t.key}\nacl: []\n";

    fn load(dir: &Path, body: &str) -> Result<Config, ConfigError> {
        parse(&format!("{TOKEN}{body}"), &dir.join("c.yml"))
    }

    fn issues(dir: &Path, body: &str) -> Vec<ConfigIssue> {
        match load(dir, body) {
            Ok(_) => panic!("accepted:\n{body}"),
            Err(ConfigError::Invalid { issues, .. }) => issues,
            Err(e) => panic!("{e}"),
        }
    }

    fn has(issues: &[ConfigIssue], path: &str, text: &str) {
        assert!(
            issues
                .iter()
                .any(|i| i.path == path && i.message.contains(text)),
            "no issue at {path} containing {text:?}: {issues:#?}"
        );
    }

    #[test]
    fn a_full_web_configuration_loads_in_docker_auths_order() {
        let d = tempfile::tempdir().unwrap();
        let c = load(
            d.path(),
            "github_auth: {organization: acme, client_id: id, client_secret: s, \
             github_web_uri: http://127.0.0.1:1, github_api_uri: http://127.0.0.1:1/api/v3}\n\
             gitlab_auth: {client_id: id, client_secret: s, organization: acme, \
             allowed_groups: [acme/platform]}\n\
             oidc_auth: {issuer: https://login.example.com, client_id: id, client_secret: s, \
             labels_claims: [groups], redirect_url: https://auth.example.com/oidc_auth}\n\
             google_auth: {domain: acme.com, client_id: id, client_secret: s}\n\
             oidc_tokens:\n  - {issuer: https://ci.example.com, audience: registry}\n\
             store: {type: redis, url: \"redis://:pw@127.0.0.1:6379/1\"}\n",
        )
        .unwrap();
        let names: Vec<&str> = c.authn_order.iter().map(|b| b.name()).collect();
        assert_eq!(
            names,
            [
                "google_auth",
                "github_auth",
                "oidc_auth",
                "gitlab_auth",
                "oidc_tokens"
            ]
        );
        let web = c.web_logins.unwrap();
        assert_eq!(web.providers().len(), 4);
        assert_eq!(web.store_description(), "redis (127.0.0.1:6379)");
    }

    #[test]
    fn ci_issuers_without_a_claim_pinning_the_repository_or_owner_are_warned_about() {
        let d = tempfile::tempdir().unwrap();
        let warned = |body: &str| {
            let c = load(d.path(), body).unwrap();
            c.warnings
                .iter()
                .filter(|w| w.path.ends_with(".required_claims"))
                .map(|w| (w.path.clone(), w.message.clone()))
                .collect::<Vec<_>>()
        };
        let w = warned(
            "oidc_tokens:\n  - {issuer: https://token.actions.githubusercontent.com, \
             audience: registry}\n  - {issuer: https://gitlab.com, audience: registry, \
             required_claims: {ref_protected: \"true\"}}\n  - {issuer: https://ci.example.com, \
             audience: registry, required_claims: {repository_owner: acme}}\n  - {issuer: \
             https://gitlab.example.com, audience: registry, required_claims: \
             {namespace_path: acme}}\n",
        );
        let paths: Vec<&str> = w.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(
            paths,
            [
                "oidc_tokens[0].required_claims",
                "oidc_tokens[1].required_claims"
            ]
        );
        assert!(w[0].1.contains("any CI job"), "{}", w[0].1);
        assert!(w[0].1.contains("repository_owner"), "{}", w[0].1);
        assert!(w[1].1.contains("namespace_path"), "{}", w[1].1);
    }

    #[test]
    fn mistakes_are_reported_with_their_paths() {
        let d = tempfile::tempdir().unwrap();
        let i = issues(
            d.path(),
            "github_auth: {client_secret: s, client_secret_file: f, organisation: acme}\n",
        );
        has(&i, "github_auth.organisation", "organization");
        let i = issues(
            d.path(),
            "github_auth: {client_secret: s, client_secret_file: f}\n",
        );
        has(&i, "github_auth.client_id", "missing");
        has(&i, "github_auth.client_secret_file", "not both");
        let i = issues(
            d.path(),
            "oidc_auth: {client_id: a, client_secret: b, redirect_url: https://x/callback}\n",
        );
        has(&i, "oidc_auth.issuer", "missing");
        has(&i, "oidc_auth.redirect_url", "/oidc_auth");
        let i = issues(
            d.path(),
            "gitlab_auth: {client_id: a, client_secret: b, grant_type: password, revalidate_after: soon}\n",
        );
        has(&i, "gitlab_auth.grant_type", "authorization_code");
        let i = issues(
            d.path(),
            "oidc_tokens: [{issuer: https://ci.example.com}]\n",
        );
        has(&i, "oidc_tokens[0].audience", "missing");
        let i = issues(d.path(), "store: {type: embedded}\n");
        has(&i, "store", "no web login");
        has(&i, "store", "type: redis");
        let i = issues(d.path(), "store: {type: redis}\n");
        has(&i, "store.url", "missing");
        let i = issues(
            d.path(),
            "github_auth: {client_id: a, client_secret: b}\nstore: {type: postgres, path: x}\n",
        );
        has(&i, "store.path", "url");
        let i = issues(
            d.path(),
            "github_auth: {client_id: a, client_secret: b, gcs_token_db: {bucket: x}}\n",
        );
        has(&i, "github_auth.gcs_token_db", "not supported");
        let i = issues(
            d.path(),
            "github_auth: {client_id: a, client_secret: b}\nserver: {session_secret_file: nope}\n",
        );
        has(&i, "server.session_secret_file", "does not exist");
        let i = issues(
            d.path(),
            "github_auth: {client_id: a, client_secret: b}\nauthn_order: [oidc_auth]\n",
        );
        has(&i, "authn_order[0]", "oidc_auth");
        has(&i, "authn_order", "github_auth");
    }

    #[test]
    fn a_shared_store_is_accepted_without_web_logins() {
        let d = tempfile::tempdir().unwrap();
        let secret = d.path().join("session.secret");
        std::fs::write(&secret, "a shared session secret of at least 32 bytes\n").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        for (store, described) in [
            (
                "store: {type: redis, url: \"redis://127.0.0.1:6379/1\"}\n",
                "redis (127.0.0.1:6379)",
            ),
            (
                "store: {type: postgres, url: \"postgres://ra@127.0.0.1/ra\"}\n",
                "postgres",
            ),
        ] {
            let c = load(
                d.path(),
                &format!(
                    "{store}server: {{session_secret_file: session.secret}}\n\
                     users: {{\"\": {{}}}}\n"
                ),
            )
            .unwrap();
            assert!(c.web_logins.is_none());
            let shared = c.shared_state.expect("the shared state");
            assert_eq!(shared.description(), described);
            assert!(
                !c.warnings
                    .iter()
                    .any(|w| w.path == "server.session_secret_file"),
                "{:#?}",
                c.warnings
            );
        }
        // Without a shared secret file, each replica would generate its own: warned.
        let c = load(
            d.path(),
            "store: {type: redis, url: \"redis://127.0.0.1\"}\nusers: {\"\": {}}\n",
        )
        .unwrap();
        assert!(c.shared_state.is_some());
        assert!(
            c.warnings
                .iter()
                .any(|w| w.path == "server.session_secret_file"
                    && w.message.contains("every replica the same file")),
            "{:#?}",
            c.warnings
        );
        // The embedded store (one host) and no store share nothing.
        let c = load(
            d.path(),
            "github_auth: {client_id: a, client_secret: b}\nstore: {type: embedded}\n",
        )
        .unwrap();
        assert!(c.shared_state.is_none() && c.web_logins.is_some());
        assert!(
            load(d.path(), "users: {\"\": {}}\n")
                .unwrap()
                .shared_state
                .is_none()
        );
        // With web logins, one store serves both.
        let c = load(
            d.path(),
            "github_auth: {client_id: a, client_secret: b}\n\
             store: {type: redis, url: \"redis://127.0.0.1:6379/1\"}\n",
        )
        .unwrap();
        assert!(c.shared_state.is_some() && c.web_logins.is_some());
    }

    #[test]
    fn redis_sentinel_and_cluster_urls_load_and_mistakes_name_store_url() {
        let d = tempfile::tempdir().unwrap();
        let web = "github_auth: {client_id: a, client_secret: b}\n";
        let c = load(
            d.path(),
            &format!(
                "{web}store: {{type: redis, url: \"redis+sentinel://:pw@127.0.0.1:26379,127.0.0.1:26380/mymaster/2?sentinel_password=sp\"}}\n"
            ),
        )
        .unwrap();
        assert_eq!(
            c.web_logins.unwrap().store_description(),
            "redis (sentinel master mymaster via 127.0.0.1:26379,127.0.0.1:26380)"
        );
        let c = load(
            d.path(),
            &format!("{web}store: {{type: redis, url: \"redis+cluster://127.0.0.1:7000,127.0.0.1:7001\"}}\n"),
        )
        .unwrap();
        assert!(
            c.warnings.iter().all(|w| w.path != "store.url"),
            "{:?}",
            c.warnings
        );
        let c = load(
            d.path(),
            &format!("{web}store: {{type: redis, url: \"redis+cluster://127.0.0.1:7000,redis-2:7001\"}}\n"),
        )
        .unwrap();
        assert!(
            c.warnings
                .iter()
                .any(|w| w.path == "store.url" && w.message.contains("redis-2")),
            "{:?}",
            c.warnings
        );
        for (url, text) in [
            ("redis+sentinel://127.0.0.1:26379", "MASTER"),
            (
                "redis+sentinel://127.0.0.1:26379/m?password=x",
                "sentinel_password",
            ),
            ("redis+cluster://127.0.0.1:7000/2", "database 0"),
            ("redis+cluster://127.0.0.1:7000,,h:1", "empty host"),
            ("redis+ha://127.0.0.1/m", "redis+sentinel://"),
        ] {
            let i = issues(
                d.path(),
                &format!("{web}store: {{type: redis, url: \"{url}\"}}\n"),
            );
            has(&i, "store.url", text);
            assert!(i.iter().all(|x| !x.message.contains("pw")), "{i:#?}");
        }
    }

    #[test]
    fn docker_auth_token_dbs_map_onto_the_store() {
        let d = tempfile::tempdir().unwrap();
        let c = load(
            d.path(),
            "github_auth: {client_id: a, client_secret: b, level_token_db: {path: /data/tokens, token_hash_cost: 5}}\n",
        )
        .unwrap();
        let web = c.web_logins.unwrap();
        assert!(
            web.store_description().starts_with("embedded (")
                && web.store_description().ends_with("passwords.db)"),
            "{}",
            web.store_description()
        );
        let c = load(
            d.path(),
            "github_auth: {client_id: a, client_secret: b, redis_token_db: {redis_options: \
             {addr: \"127.0.0.1:6380\", password: \"p@ss\", db: 2, dial_timeout: 5}}}\n\
             gitlab_auth: {client_id: a, client_secret: b, redis_token_db: {redis_options: \
             {addr: \"127.0.0.1:6380\", password: \"p@ss\", db: 2}}}\n",
        )
        .unwrap();
        assert_eq!(
            c.web_logins.unwrap().store_description(),
            "redis (127.0.0.1:6380)"
        );
        let i = issues(
            d.path(),
            "github_auth: {client_id: a, client_secret: b, redis_token_db: {redis_options: {addr: \"h:1\"}}}\n\
             gitlab_auth: {client_id: a, client_secret: b, level_token_db: {path: x}}\n",
        );
        assert!(i.iter().any(|x| x.message.contains("one store")), "{i:#?}");
        // go-redis cluster options become a `redis+cluster://` store.
        let c = load(
            d.path(),
            "github_auth: {client_id: a, client_secret: b, redis_token_db: {redis_cluster_options: \
             {addrs: [\"127.0.0.1:7000\", \"127.0.0.1:7001\"], password: \"p@ss\", read_only: true}}}\n",
        )
        .unwrap();
        assert_eq!(
            c.web_logins.unwrap().store_description(),
            "redis (cluster 127.0.0.1:7000,127.0.0.1:7001)"
        );
        let i = issues(
            d.path(),
            "github_auth: {client_id: a, client_secret: b, redis_token_db: {redis_cluster_options: {addrs: []}}}\n",
        );
        has(
            &i,
            "github_auth.redis_token_db.redis_cluster_options.addrs",
            "host:port",
        );
        let i = issues(
            d.path(),
            "github_auth: {client_id: a, client_secret: b, level_token_db: {path: x}}\nstore: {type: embedded}\n",
        );
        has(&i, "github_auth.level_token_db", "keep `store` and remove");
    }
}
