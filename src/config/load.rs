//! Reading the YAML and turning it into a [`Config`], collecting every problem on the way.
//!
//! The file is first parsed into a YAML tree; each section (and each ACL entry and user) is then
//! deserialized on its own, so one typo does not hide the problems after it.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;

use ipnet::IpNet;
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::{Duration, SystemTime};

use regex::Regex;
use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

use super::file::{
    AclEntrySpec, CredentialCacheSpec, ExtSpec, HttpHookSpec, LdapSpec, LimitsSpec, LockoutSpec,
    NetSpec, RefreshSpec, RobotSpec, ServerSpec, SigningHeaderSpec, TokenSpec, UserSpec,
};
use super::sources;
use super::{
    AuthnBackend, AuthzBackend, ClientIpSettings, Config, ConfigError, ConfigIssue, DEFAULT_ADDR,
    DEFAULT_CACHE_ENTRIES, DEFAULT_CACHE_TTL, DEFAULT_EXPIRATION_SECS, DEFAULT_REFRESH_LIFETIME,
    Limits, LockoutSettings, MIN_EXPIRATION_SECS, RefreshConfig, ServerConfig, TlsSettings,
    TokenConfig,
};
use crate::authn::{self, Labels, RobotRecord, Robots, StaticUsers, UserRecord, check_bcrypt_hash};
use crate::authz::{Acl, CasbinAuthz, ExtAuthz, HttpAuthz, ScopeGrants, SqlAcl};
use crate::ext::ExtProgram;
use crate::token::refresh::{self, RefreshCodec, Revocations};
use crate::token::{HeaderMode, PublishedKey, SigningKey};

mod backends;
mod identity;
mod sql;
mod warnings;
mod web;

/// Top-level keys we implement.
const KNOWN_SECTIONS: &[&str] = &[
    "server",
    "token",
    "users",
    "users_file",
    "robots",
    "acl",
    "credential_cache",
    "lockout",
    "ext_auth",
    "ext_authz",
    "authn_order",
    "authz_order",
    "ldap_auth",
    "http_auth",
    "http_authz",
    // SQL users and ACL, Casbin (load/sql.rs).
    "sql_auth",
    "acl_sql",
    "casbin_authz",
    // Web logins, CI identities and their store (load/web.rs).
    "google_auth",
    "github_auth",
    "oidc_auth",
    "gitlab_auth",
    "oidc_tokens",
    "store",
    "data_dir",
];

/// docker_auth sections we do not implement (yet), with what to use instead.
const UNSUPPORTED_SECTIONS: &[(&str, &str)] = &[
    (
        "mongo_auth",
        "MongoDB users are not supported; export them to an htpasswd file and use `users_file`",
    ),
    (
        "xorm_auth",
        "docker_auth's xorm tables are not read; use `sql_auth: {url: …}` (PostgreSQL or SQLite, \
         table registry_auth_users; the README shows the SQL that copies xorm_user rows into it)",
    ),
    (
        "plugin_authn",
        "Go plugins cannot be loaded by registry-auth; use `users` or `users_file`",
    ),
    (
        "acl_mongo",
        "MongoDB ACLs are not supported; move the entries (sorted by `seq`) into the static `acl` list",
    ),
    (
        "acl_xorm",
        "docker_auth's xorm tables are not read; use `acl_sql: {url: …, cache_ttl: 30s}` \
         (PostgreSQL or SQLite, table registry_auth_acl; the README shows the SQL that copies \
         xorm_acl_entry rows into it)",
    ),
    (
        "plugin_authz",
        "Go plugins cannot be loaded by registry-auth; use the static `acl` list",
    ),
];

/// docker_auth `server:` keys we do not implement (yet).
const UNSUPPORTED_SERVER_KEYS: &[(&str, &str)] = &[
    (
        "tls_curve_preferences",
        "not configurable: registry-auth uses rustls' safe defaults (X25519, P-256, P-384); \
         remove this key",
    ),
    (
        "tls_cipher_suites",
        "not configurable: registry-auth uses rustls' safe defaults (AEAD suites only); remove \
         this key",
    ),
    (
        "letsencrypt",
        "Let's Encrypt is not supported; terminate TLS at your ingress (e.g. with cert-manager)",
    ),
];

/// Reads and validates the config file at `path`.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_recorded(path).0
}

/// As [`load`], and also every file the attempt read (the config file first) with a digest of
/// the bytes it read, valid or not: hot reload watches those (see [`super::sources`]).
pub fn load_recorded(path: &Path) -> (Result<Config, ConfigError>, Vec<super::Source>) {
    let (result, read) = sources::recording(|| {
        let text = sources::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        parse_text(&text, path)
    });
    let result = result.map(|mut c| {
        c.sources = read.clone();
        c
    });
    (result, read)
}

/// Validates config text; `file` is where it came from (relative paths resolve against its
/// folder).
pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let (result, read) = sources::recording(|| parse_text(text, file));
    result.map(|mut c| {
        c.sources = read;
        c
    })
}

fn parse_text(text: &str, file: &Path) -> Result<Config, ConfigError> {
    let base = match file.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut loader = Loader {
        base,
        issues: Vec::new(),
        warnings: Vec::new(),
        private: RefCell::new(Vec::new()),
    };
    let config = loader.load(text, file);
    match config {
        Some(config) if loader.issues.is_empty() => Ok(config),
        _ => Err(ConfigError::Invalid {
            file: file.to_path_buf(),
            issues: loader.issues,
        }),
    }
}

struct Loader {
    base: PathBuf,
    issues: Vec<ConfigIssue>,
    /// Warnings found while validating sections (the config still loads).
    warnings: Vec<ConfigIssue>,
    /// Files holding secrets (config key, path): a warning when group or others may read them.
    private: RefCell<Vec<(String, PathBuf)>>,
}

#[derive(Default)]
struct Sections {
    server: Option<ServerSpec>,
    token: Option<TokenSpec>,
    users: Option<Vec<(String, Option<UserSpec>)>>,
    users_file: Option<PathBuf>,
    robots: Option<Vec<(String, Option<RobotSpec>)>>,
    acl: Option<Vec<Option<AclEntrySpec>>>,
    credential_cache: Option<CredentialCacheSpec>,
    lockout: Option<LockoutSpec>,
    ext_auth: Option<ExtSpec>,
    ext_authz: Option<ExtSpec>,
    authn_order: Option<Vec<String>>,
    authz_order: Option<Vec<String>>,
    ldap_auth: Option<LdapSpec>,
    http_auth: Option<HttpHookSpec>,
    http_authz: Option<HttpHookSpec>,
    web: web::WebSections,
    sql: sql::SqlSections,
}

impl Loader {
    fn issue(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.issues.push(ConfigIssue::new(path, message));
    }

    /// Notes that the file at `path` (config key `key`) holds a secret: a warning at load time
    /// when group or others may read it.
    fn private(&self, key: impl Into<String>, path: &Path) {
        self.private
            .borrow_mut()
            .push((key.into(), path.to_path_buf()));
    }

    /// The warnings for secret files readable by group or others.
    fn exposed_files(&self) -> Vec<ConfigIssue> {
        let mut seen = std::collections::BTreeSet::new();
        self.private
            .borrow()
            .iter()
            .filter(|(_, p)| seen.insert(p.clone()))
            .filter_map(|(key, p)| {
                crate::files::exposure_warning(p, key).map(|m| ConfigIssue::new(key.clone(), m))
            })
            .collect()
    }

    fn load(&mut self, text: &str, file: &Path) -> Option<Config> {
        let root: Value = match serde_yaml_ng::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.issue("", format!("not valid YAML: {e}"));
                return None;
            }
        };
        let map = match root {
            Value::Mapping(m) => m,
            Value::Null => {
                self.issue(
                    "",
                    "the file is empty; start from config.example.yaml or examples/reference.yml",
                );
                return None;
            }
            _ => {
                self.issue(
                    "",
                    "the top level must be a mapping of sections (server, token, users, acl, …)",
                );
                return None;
            }
        };
        let sections = self.sections(map);
        self.validate(sections, file)
    }

    fn sections(&mut self, map: Mapping) -> Sections {
        let mut s = Sections::default();
        for (key, value) in map {
            let Some(key) = key.as_str().map(str::to_owned) else {
                self.issue(
                    "",
                    format!("top-level key {} is not a string", describe(&key)),
                );
                continue;
            };
            match key.as_str() {
                "server" => s.server = self.server_section(value),
                "token" => s.token = self.token_section(value),
                "users" => s.users = self.users_section(value),
                "robots" => s.robots = self.named_section("robots", value),
                "ext_auth" => s.ext_auth = self.de("ext_auth", value),
                "ext_authz" => s.ext_authz = self.de("ext_authz", value),
                "authn_order" => s.authn_order = self.de("authn_order", value),
                "authz_order" => s.authz_order = self.de("authz_order", value),
                "ldap_auth" => s.ldap_auth = self.de("ldap_auth", value),
                "http_auth" => s.http_auth = self.de("http_auth", value),
                "http_authz" => s.http_authz = self.de("http_authz", value),
                "lockout" => {
                    s.lockout = if value.is_null() {
                        Some(LockoutSpec::default())
                    } else {
                        self.de("lockout", value)
                    };
                }
                "credential_cache" => {
                    s.credential_cache = if value.is_null() {
                        Some(CredentialCacheSpec::default())
                    } else {
                        self.de("credential_cache", value)
                    };
                }
                "users_file" => s.users_file = self.de::<PathBuf>("users_file", value),
                "acl" => s.acl = self.acl_section(value),
                other if web::KEYS.contains(&other) => self.web_section(other, value, &mut s.web),
                other if sql::KEYS.contains(&other) => self.sql_section(other, value, &mut s.sql),
                other => {
                    if let Some((_, hint)) = UNSUPPORTED_SECTIONS.iter().find(|(k, _)| *k == other)
                    {
                        self.issue(other, *hint);
                    } else {
                        let mut candidates: Vec<&str> = KNOWN_SECTIONS.to_vec();
                        candidates.extend(UNSUPPORTED_SECTIONS.iter().map(|(k, _)| *k));
                        self.issue(
                            other,
                            unknown_key_message(other, &candidates, KNOWN_SECTIONS),
                        );
                    }
                }
            }
        }
        s
    }

    /// Deserializes `value` as `T`, recording a problem (with its full path) on failure.
    fn de<T: DeserializeOwned>(&mut self, path: &str, value: Value) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(v) => Some(v),
            Err(e) => {
                let inner = e.path().to_string();
                let full = join_path(path, &inner);
                let (full, message) = humanize_serde_error(&full, &e.into_inner().to_string());
                self.issue(full, message);
                None
            }
        }
    }

    fn server_section(&mut self, value: Value) -> Option<ServerSpec> {
        let value = match value {
            Value::Mapping(mut m) => {
                for (key, hint) in UNSUPPORTED_SERVER_KEYS {
                    if m.remove(*key).is_some() {
                        self.issue(format!("server.{key}"), *hint);
                    }
                }
                Value::Mapping(m)
            }
            Value::Null => return Some(ServerSpec::default()),
            other => other,
        };
        self.de("server", value)
    }

    fn token_section(&mut self, value: Value) -> Option<TokenSpec> {
        let mut legacy_key_id_disabled = false;
        let value = match value {
            Value::Mapping(mut m) => {
                // docker_auth: `true` puts the JWK thumbprint in `kid` (our `kid-thumbprint`);
                // `false` is its default and ours (libtrust kid).
                if let Some(v) = m.remove("disable_legacy_key_id") {
                    match v.as_bool() {
                        Some(b) => legacy_key_id_disabled = b,
                        None => self.issue(
                            "token.disable_legacy_key_id",
                            format!(
                                "expected true or false, found {}; better, replace it with \
                                 `signing_header: kid-thumbprint` (true) or remove it (false)",
                                describe(&v)
                            ),
                        ),
                    }
                }
                Value::Mapping(m)
            }
            other => other,
        };
        let mut spec: TokenSpec = self.de("token", value)?;
        if legacy_key_id_disabled {
            match spec.signing_header {
                None | Some(SigningHeaderSpec::KidThumbprint) => {
                    spec.signing_header = Some(SigningHeaderSpec::KidThumbprint);
                }
                Some(_) => self.issue(
                    "token.disable_legacy_key_id",
                    "`true` is docker_auth's way of saying `signing_header: kid-thumbprint`, \
                     but `signing_header` asks for another header; keep only `signing_header`",
                ),
            }
        }
        Some(spec)
    }

    fn users_section(&mut self, value: Value) -> Option<Vec<(String, Option<UserSpec>)>> {
        let map = match value {
            Value::Mapping(m) => m,
            Value::Null => return Some(Vec::new()),
            other => {
                self.issue(
                    "users",
                    format!(
                        "expected a mapping of user name to {{password, labels}}, found {}",
                        describe(&other)
                    ),
                );
                return None;
            }
        };
        let mut users = Vec::new();
        for (name, spec) in map {
            let Some(name) = name.as_str().map(str::to_owned) else {
                self.issue(
                    "users",
                    format!("user name {} is not a string; quote it", describe(&name)),
                );
                continue;
            };
            let path = user_path(&name);
            let spec = if spec.is_null() {
                Some(UserSpec::default())
            } else {
                self.de::<UserSpec>(&path, spec)
            };
            users.push((name, spec));
        }
        Some(users)
    }

    /// A mapping of name → spec (e.g. `robots:`), each entry deserialized on its own.
    fn named_section<T: DeserializeOwned>(
        &mut self,
        section: &str,
        value: Value,
    ) -> Option<Vec<(String, Option<T>)>> {
        let map = match value {
            Value::Mapping(m) => m,
            Value::Null => return Some(Vec::new()),
            other => {
                self.issue(
                    section,
                    format!("expected a mapping of names, found {}", describe(&other)),
                );
                return None;
            }
        };
        let mut entries = Vec::new();
        for (name, spec) in map {
            let Some(name) = name.as_str().map(str::to_owned) else {
                self.issue(
                    section,
                    format!("name {} is not a string; quote it", describe(&name)),
                );
                continue;
            };
            let path = named_path(section, &name);
            let spec = self.de::<T>(&path, spec);
            entries.push((name, spec));
        }
        Some(entries)
    }

    fn acl_section(&mut self, value: Value) -> Option<Vec<Option<AclEntrySpec>>> {
        let seq = match value {
            Value::Sequence(s) => s,
            other => {
                self.issue(
                    "acl",
                    format!(
                        "expected a list of entries `{{match: {{…}}, actions: […]}}`, found {}",
                        describe(&other)
                    ),
                );
                return None;
            }
        };
        Some(
            seq.into_iter()
                .enumerate()
                .map(|(i, entry)| self.de::<AclEntrySpec>(&format!("acl[{i}]"), entry))
                .collect(),
        )
    }

    fn resolve(&self, path: &Path) -> PathBuf {
        let resolved = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        };
        // Fingerprinted now, before anything reads it (for change detection on reload).
        sources::note(&resolved);
        resolved
    }

    fn validate(&mut self, s: Sections, file: &Path) -> Option<Config> {
        let server_spec = s.server.unwrap_or_default();
        let credential_cache = self.validate_cache(
            s.credential_cache.unwrap_or_default(),
            server_spec.bcrypt_workers,
        );
        let session_secret_file = server_spec.session_secret_file.clone();
        let server = self.validate_server(server_spec);
        let token = match s.token {
            Some(t) => self.validate_token(t),
            None => {
                self.issue(
                    "token",
                    "missing; add `token: {issuer: \"…\", certificate: …, key: …}` (the issuer \
                     must equal the registry's auth.token.issuer)",
                );
                None
            }
        };
        let (robots, robot_scopes) = match self.validate_robots(s.robots.unwrap_or_default()) {
            Some((robots, scopes)) => (Some(robots), Some(scopes)),
            None => (None, None),
        };
        let ext_auth = s
            .ext_auth
            .map(|spec| self.validate_ext("ext_auth", spec).map(authn::ExtAuth::new));
        let ext_authz = s
            .ext_authz
            .map(|spec| self.validate_ext("ext_authz", spec).map(ExtAuthz::new));
        let ldap_auth = s.ldap_auth.map(|spec| self.validate_ldap(spec));
        let http_auth = s.http_auth.map(|spec| {
            self.validate_hook("http_auth", spec)
                .map(authn::HttpAuth::new)
        });
        let http_authz = s
            .http_authz
            .map(|spec| self.validate_hook("http_authz", spec).map(HttpAuthz::new));
        let local_configured = s.users.is_some()
            || s.users_file.is_some()
            || robots.as_ref().is_some_and(|r| !r.is_empty());
        let web_has_authn = s.web.has_authn();
        let web_keys = s.web.configured_authn();
        let web = self.validate_web(s.web, session_secret_file);
        let web_links = web::chain_links(&web_keys, web.as_ref());
        let web_logins = web.and_then(|w| w.logins);
        let other_authn = ext_auth.is_some() || ldap_auth.is_some() || http_auth.is_some();
        let other_authn = other_authn || web_has_authn || s.sql.has_authn();
        let other_authz_sql = s.sql.has_authz();
        let sql = self.validate_sql(s.sql);
        let authn = self.validate_users(s.users, s.users_file, robots, other_authn);
        let authn_order = self.authn_order(
            s.authn_order,
            local_configured,
            ext_auth,
            web_links,
            ldap_auth,
            http_auth,
            sql.sql_auth,
        );
        let lockout = self.validate_lockout(s.lockout.unwrap_or_default());
        let acl_entries: Vec<AclEntrySpec> = s.acl.iter().flatten().flatten().cloned().collect();
        let acl_configured = s.acl.is_some();
        let other_authz = ext_authz.is_some() || http_authz.is_some() || other_authz_sql;
        let acl = if acl_configured || !other_authz {
            self.validate_acl(s.acl)
        } else {
            Some(Acl::default())
        };
        let authz_order = self.authz_order(
            s.authz_order,
            acl_configured,
            ext_authz,
            http_authz,
            sql.acl_sql,
            sql.casbin,
        );
        let mut warnings = std::mem::take(&mut self.warnings);
        if let Some(acl) = &acl {
            for sh in acl.shadowed() {
                warnings.push(ConfigIssue::new(
                    format!("acl[{}]", sh.index),
                    format!(
                        "can never match: acl[{}] above it matches every request this entry \
                         matches, and the first match wins; move this entry above acl[{}] or \
                         remove it",
                        sh.by, sh.by
                    ),
                ));
            }
        }
        if let Some(t) = &token {
            warnings.extend(short_coordinate_warning(t));
        }
        warnings.extend(self.exposed_files());
        let namespaces = match (&authn, &authn_order) {
            (Some(chain), Some(order)) => {
                let ns = identity::namespaces(order, chain);
                warnings.extend(identity::warnings(&ns, &acl_entries));
                Some(Arc::new(ns))
            }
            _ => None,
        };
        if let (Some(authz), Some(chain), Some(order)) = (&authz_order, &authn, &authn_order) {
            warnings.extend(sql::casbin_role_warnings(authz, chain.users(), order));
        }
        warnings.append(&mut self.warnings);
        Some(Config {
            file: file.to_path_buf(),
            server: server?,
            token: token?,
            authn: Arc::new(authn?),
            authn_order: authn_order?,
            authz_order: authz_order?,
            credential_cache: credential_cache?,
            lockout: lockout?,
            sources: Vec::new(),
            robot_scopes: Arc::new(robot_scopes?),
            acl: Arc::new(acl?),
            acl_entries,
            warnings,
            web_logins,
            namespaces: namespaces?,
        })
    }

    fn validate_cache(
        &mut self,
        spec: CredentialCacheSpec,
        workers: Option<usize>,
    ) -> Option<authn::CacheSettings> {
        let ttl = match spec.ttl.as_deref() {
            None => Some(DEFAULT_CACHE_TTL),
            Some("0") => Some(Duration::ZERO),
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) => Some(d),
                Err(e) => {
                    self.issue(
                        "credential_cache.ttl",
                        format!(
                            "{text:?} is not a duration ({e}); write e.g. `5m`, or `0s` to \
                                 disable the cache"
                        ),
                    );
                    None
                }
            },
        };
        let max_entries = match spec.max_entries {
            Some(0) => {
                self.issue(
                    "credential_cache.max_entries",
                    "0 entries cannot cache anything; disable the cache with `ttl: 0s` instead",
                );
                None
            }
            other => Some(other.unwrap_or(DEFAULT_CACHE_ENTRIES)),
        };
        let bcrypt_workers = match workers {
            Some(0) => {
                self.issue(
                    "server.bcrypt_workers",
                    "at least 1 worker is needed to check passwords",
                );
                None
            }
            Some(n) => Some(n),
            None => Some(
                std::thread::available_parallelism()
                    .map_or(1, |n| n.get().saturating_sub(1))
                    .max(1),
            ),
        };
        Some(authn::CacheSettings {
            ttl: ttl?,
            max_entries: max_entries?,
            bcrypt_workers: bcrypt_workers?,
        })
    }

    fn validate_server(&mut self, spec: ServerSpec) -> Option<ServerConfig> {
        let unix = spec.net == Some(NetSpec::Unix);
        let addr = match spec.addr.as_deref() {
            None if unix => {
                self.issue(
                    "server.addr",
                    "with `net: unix`, set `addr` to the socket path, e.g. \
                     `/run/registry-auth/auth.sock`",
                );
                None
            }
            None => Some(DEFAULT_ADDR.to_owned()),
            Some(a) if unix => Some(self.resolve(Path::new(a)).display().to_string()),
            Some(a) => match normalize_addr(a) {
                Some(a) => Some(a),
                None => {
                    self.issue(
                        "server.addr",
                        format!(
                            "`{a}` is not a listen address; use `host:port`, e.g. \
                             `0.0.0.0:5001`, `127.0.0.1:5001`, `[::]:5001` or `:5001`"
                        ),
                    );
                    None
                }
            },
        };
        let path_prefix = match spec.path_prefix.as_deref() {
            None | Some("") | Some("/") => Some(String::new()),
            Some(p) => {
                let ok = p.starts_with('/')
                    && !p.contains("//")
                    && p.bytes().all(|b| {
                        b.is_ascii_alphanumeric() || matches!(b, b'/' | b'-' | b'_' | b'.' | b'~')
                    });
                if ok {
                    Some(p.trim_end_matches('/').to_owned())
                } else {
                    self.issue(
                        "server.path_prefix",
                        format!(
                            "`{p}` is not a usable prefix; it must start with `/` and contain \
                             only letters, digits and `/-_.~`, e.g. `/registry-auth`"
                        ),
                    );
                    None
                }
            }
        };
        let tls = self.validate_tls(
            spec.certificate,
            spec.key,
            spec.tls_min_version.as_deref(),
            spec.hsts,
        );
        let metrics_addr = match spec.metrics_addr.as_deref() {
            None => Some(None),
            Some(a) => match normalize_addr(a) {
                Some(a) => Some(Some(a)),
                None => {
                    self.issue(
                        "server.metrics_addr",
                        format!("`{a}` is not a listen address; use `host:port`, e.g. `:9090`"),
                    );
                    None
                }
            },
        };
        let limits = self.validate_limits(spec.limits.unwrap_or_default());
        let client_ip =
            self.validate_client_ip(spec.trusted_proxies, spec.real_ip_header, spec.real_ip_pos);
        Some(ServerConfig {
            addr: addr?,
            path_prefix: path_prefix?,
            limits: limits?,
            client_ip: client_ip?,
            unix,
            tls: tls?,
            metrics_addr: metrics_addr?,
        })
    }

    fn validate_tls(
        &mut self,
        certificate: Option<PathBuf>,
        key: Option<PathBuf>,
        min_version: Option<&str>,
        hsts: bool,
    ) -> Option<Option<TlsSettings>> {
        let tls13_only = match min_version {
            None | Some("1.2" | "TLS12" | "tls12") => false,
            Some("1.3" | "TLS13" | "tls13") => true,
            Some(v) => {
                self.issue(
                    "server.tls_min_version",
                    format!("{v:?} is not supported; use `1.2` (default) or `1.3`"),
                );
                return None;
            }
        };
        match (certificate, key) {
            (None, None) => {
                if hsts || min_version.is_some() {
                    self.issue(
                        "server.hsts",
                        "`hsts` and `tls_min_version` need TLS: set `server.certificate` and \
                         `server.key`, or set HSTS at your ingress",
                    );
                    return None;
                }
                Some(None)
            }
            (Some(c), Some(k)) => {
                let (certificate, key) = (self.resolve(&c), self.resolve(&k));
                self.private("server.key", &key);
                let mut ok = true;
                for (name, p) in [("certificate", &certificate), ("key", &key)] {
                    if !p.exists() {
                        self.issue(
                            format!("server.{name}"),
                            format!("file not found: {}", p.display()),
                        );
                        ok = false;
                    }
                }
                if ok && let Err(e) = crate::tls::load(&certificate, &key, tls13_only) {
                    self.issue("server.certificate", e.to_string());
                    ok = false;
                }
                ok.then_some(Some(TlsSettings {
                    certificate,
                    key,
                    tls13_only,
                    hsts,
                }))
            }
            (c, _) => {
                let missing = if c.is_none() { "certificate" } else { "key" };
                self.issue(
                    format!("server.{missing}"),
                    "missing; TLS needs both `server.certificate` and `server.key` (or neither, \
                     behind a TLS-terminating ingress)",
                );
                None
            }
        }
    }

    fn validate_client_ip(
        &mut self,
        trusted: Option<Vec<String>>,
        header: Option<String>,
        position: Option<i64>,
    ) -> Option<ClientIpSettings> {
        let mut ok = true;
        let mut nets = Vec::new();
        for (i, entry) in trusted.iter().flatten().enumerate() {
            let parsed = entry
                .parse::<IpNet>()
                .or_else(|_| entry.parse::<IpAddr>().map(IpNet::from));
            match parsed {
                Ok(n) => nets.push(n.trunc()),
                Err(_) => {
                    self.issue(
                        format!("server.trusted_proxies[{i}]"),
                        format!(
                            "{entry:?} is not an IP address or CIDR; write e.g. `10.0.0.0/8` or \
                             `192.0.2.7`"
                        ),
                    );
                    ok = false;
                }
            }
        }
        let header = match header {
            None => None,
            Some(h) => {
                let lower = h.to_ascii_lowercase();
                if matches!(
                    lower.as_str(),
                    "x-forwarded-for" | "forwarded" | "x-real-ip"
                ) {
                    Some(lower)
                } else {
                    self.issue(
                        "server.real_ip_header",
                        format!(
                            "{h:?} is not supported; use X-Forwarded-For, Forwarded or X-Real-IP"
                        ),
                    );
                    ok = false;
                    None
                }
            }
        };
        // 0 is docker_auth's default: the same as leaving the key out.
        let position = position.filter(|p| *p != 0);
        if position.is_some_and(|p| p > 0) {
            // Positive positions count from the client's end, which the client controls.
            self.issue(
                "server.real_ip_pos",
                "a position counted from the start of the header can be spoofed by the client; \
                 use a negative position (-1 = the address the nearest proxy saw), or better, \
                 list your proxies in `server.trusted_proxies`",
            );
            ok = false;
        }
        if trusted.is_none() && (header.is_some() || position.is_some()) {
            // docker_auth believed the header from any peer: keep that for migrated configs.
            nets = vec![IpNet::V4(Default::default()), IpNet::V6(Default::default())];
        }
        ok.then_some(ClientIpSettings {
            trusted_proxies: nets,
            header,
            position,
        })
    }

    /// An `ext_auth`/`ext_authz` program.
    fn validate_ext(&mut self, section: &str, spec: ExtSpec) -> Option<Arc<ExtProgram>> {
        let command = if spec.command.contains('/') {
            let p = self.resolve(Path::new(&spec.command));
            p.is_file().then_some(p)
        } else {
            std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|dir| dir.join(&spec.command))
                    .find(|p| p.is_file())
            })
        };
        let Some(command) = command else {
            self.issue(
                format!("{section}.command"),
                format!(
                    "{:?} not found (a name is looked up on PATH, a path with `/` is relative to \
                     the config folder); the program is run directly, not through a shell",
                    spec.command
                ),
            );
            return None;
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if fs::metadata(&command).is_ok_and(|m| m.permissions().mode() & 0o111 == 0) {
                self.issue(
                    format!("{section}.command"),
                    format!("{} is not executable; `chmod +x` it", command.display()),
                );
                return None;
            }
        }
        let timeout = self.positive_duration(
            &format!("{section}.timeout"),
            spec.timeout,
            Duration::from_secs(5),
            "5s",
        )?;
        let max = match spec.max_concurrent {
            Some(0) => {
                self.issue(
                    format!("{section}.max_concurrent"),
                    "0 would never run the program; use at least 1",
                );
                return None;
            }
            Some(n) => n,
            None => 16,
        };
        Some(ExtProgram::new(command, spec.args, timeout, max))
    }

    /// The authenticators in `authn_order`, or docker_auth's fixed order.
    #[allow(clippy::too_many_arguments)]
    fn authn_order(
        &mut self,
        order: Option<Vec<String>>,
        local: bool,
        ext: Option<Option<authn::ExtAuth>>,
        web: Vec<(&'static str, Option<AuthnBackend>)>,
        ldap: Option<Option<authn::LdapAuth>>,
        http: Option<Option<authn::HttpAuth>>,
        sql: Option<Option<authn::SqlAuth>>,
    ) -> Option<Vec<AuthnBackend>> {
        let mut available: Vec<(&str, Option<AuthnBackend>)> = Vec::new();
        if local {
            available.push(("users", Some(AuthnBackend::Local)));
        }
        if let Some(e) = ext {
            available.push(("ext_auth", e.map(AuthnBackend::Ext)));
        }
        // docker_auth's order: the web logins after ext_auth, before LDAP; then the CI tokens.
        available.extend(web);
        if let Some(l) = ldap {
            available.push(("ldap_auth", l.map(AuthnBackend::Ldap)));
        }
        // docker_auth's xorm_auth comes after LDAP (and MongoDB).
        if let Some(q) = sql {
            available.push(("sql_auth", q.map(AuthnBackend::Sql)));
        }
        // Ours (docker_auth has no webhook): after every docker_auth backend.
        if let Some(h) = http {
            available.push(("http_auth", h.map(AuthnBackend::Http)));
        }
        self.order(
            "authn_order",
            order,
            available,
            &[
                "users",
                "ext_auth",
                "google_auth",
                "github_auth",
                "oidc_auth",
                "gitlab_auth",
                "oidc_tokens",
                "ldap_auth",
                "sql_auth",
                "http_auth",
            ],
        )
    }

    /// The authorizers in `authz_order`, or docker_auth's fixed order.
    fn authz_order(
        &mut self,
        order: Option<Vec<String>>,
        acl: bool,
        ext: Option<Option<ExtAuthz>>,
        http: Option<Option<HttpAuthz>>,
        sql: Option<Option<SqlAcl>>,
        casbin: Option<Option<CasbinAuthz>>,
    ) -> Option<Vec<AuthzBackend>> {
        let mut available: Vec<(&str, Option<AuthzBackend>)> = Vec::new();
        if acl || (ext.is_none() && http.is_none() && sql.is_none() && casbin.is_none()) {
            available.push(("acl", Some(AuthzBackend::Acl)));
        }
        // docker_auth's order: acl, acl_mongo, acl_xorm (our acl_sql), ext_authz, …, casbin.
        if let Some(q) = sql {
            available.push(("acl_sql", q.map(AuthzBackend::Sql)));
        }
        if let Some(e) = ext {
            available.push(("ext_authz", e.map(AuthzBackend::Ext)));
        }
        if let Some(h) = http {
            available.push(("http_authz", h.map(AuthzBackend::Http)));
        }
        // Casbin always decides (it never answers "no match"): last, as in docker_auth.
        if let Some(c) = casbin {
            available.push(("casbin_authz", c.map(AuthzBackend::Casbin)));
        }
        self.order(
            "authz_order",
            order,
            available,
            &["acl", "acl_sql", "ext_authz", "http_authz", "casbin_authz"],
        )
    }

    /// Applies an explicit order: every configured backend exactly once, nothing else.
    fn order<T>(
        &mut self,
        key: &str,
        order: Option<Vec<String>>,
        available: Vec<(&str, Option<T>)>,
        known: &[&str],
    ) -> Option<Vec<T>> {
        let Some(order) = order else {
            // Default: docker_auth's order, which `available` is already in.
            return available.into_iter().map(|(_, b)| b).collect();
        };
        let mut ok = true;
        let mut pool: Vec<(String, Option<T>)> = available
            .into_iter()
            .map(|(n, b)| (n.to_owned(), b))
            .collect();
        let mut out = Vec::new();
        for (i, name) in order.iter().enumerate() {
            match pool.iter().position(|(n, _)| n == name) {
                Some(p) => {
                    let (_, b) = pool.remove(p);
                    match b {
                        Some(b) => out.push(b),
                        None => ok = false,
                    }
                }
                None if known.contains(&name.as_str()) => {
                    self.issue(
                        format!("{key}[{i}]"),
                        format!(
                            "`{name}` is listed twice or not configured; configure its section or \
                             remove it from the list"
                        ),
                    );
                    ok = false;
                }
                None => {
                    self.issue(
                        format!("{key}[{i}]"),
                        format!("unknown backend `{name}`; use one of: {}", known.join(", ")),
                    );
                    ok = false;
                }
            }
        }
        for (name, _) in pool {
            self.issue(
                key,
                format!("`{name}` is configured but missing from the list; add it (order matters)"),
            );
            ok = false;
        }
        ok.then_some(out)
    }

    /// A positive duration such as `5m`, or `default` when unset; a problem at `path` otherwise.
    fn positive_duration(
        &mut self,
        path: &str,
        text: Option<String>,
        default: Duration,
        example: &str,
    ) -> Option<Duration> {
        match text {
            None => Some(default),
            Some(t) => match humantime::parse_duration(&t) {
                Ok(v) if !v.is_zero() => Some(v),
                _ => {
                    self.issue(
                        path,
                        format!("{t:?} is not a positive duration; write e.g. `{example}`"),
                    );
                    None
                }
            },
        }
    }

    fn validate_lockout(&mut self, spec: LockoutSpec) -> Option<LockoutSettings> {
        let d = LockoutSettings::default();
        let mut ok = true;
        let max_failures = match spec.max_failures {
            Some(0) => {
                self.issue(
                    "lockout.max_failures",
                    "0 would lock everybody out at once; use at least 1, or `enabled: false`",
                );
                ok = false;
                0
            }
            Some(n) => n,
            None => d.max_failures,
        };
        let window = self.positive_duration("lockout.window", spec.window, d.window, "5m");
        let cooldown = self.positive_duration("lockout.cooldown", spec.cooldown, d.cooldown, "5m");
        Some(LockoutSettings {
            enabled: spec.enabled.unwrap_or(true),
            max_failures,
            window: window?,
            cooldown: cooldown?,
        })
        .filter(|_| ok)
    }

    fn validate_limits(&mut self, spec: LimitsSpec) -> Option<Limits> {
        let d = Limits::default();
        let mut ok = true;
        let max_header_bytes = match spec.max_header_bytes {
            Some(n) if n < 8192 => {
                self.issue(
                    "server.limits.max_header_bytes",
                    format!("{n} is too small; use at least 8192 (clients send long scopes)"),
                );
                ok = false;
                n
            }
            Some(n) => n,
            None => d.max_header_bytes,
        };
        let max_body_bytes = match spec.max_body_bytes {
            Some(0) => {
                self.issue(
                    "server.limits.max_body_bytes",
                    "0 would refuse every OAuth2 form; use at least 1024",
                );
                ok = false;
                0
            }
            Some(n) => n,
            None => d.max_body_bytes,
        };
        let header_read_timeout = self.positive_duration(
            "server.limits.header_read_timeout",
            spec.header_read_timeout,
            d.header_read_timeout,
            "10s",
        );
        let request_timeout = self.positive_duration(
            "server.limits.request_timeout",
            spec.request_timeout,
            d.request_timeout,
            "30s",
        );
        Some(Limits {
            max_header_bytes,
            max_body_bytes,
            header_read_timeout: header_read_timeout?,
            request_timeout: request_timeout?,
        })
        .filter(|_| ok)
    }

    fn validate_token(&mut self, t: TokenSpec) -> Option<TokenConfig> {
        let issuer = match t.issuer {
            Some(i) if !i.trim().is_empty() => Some(i),
            _ => {
                self.issue(
                    "token.issuer",
                    "missing; set it to the same string as the registry's auth.token.issuer, \
                     e.g. `issuer: \"Acme auth server\"`",
                );
                None
            }
        };
        let lifetime = match t.expiration {
            None => Some(Duration::from_secs(DEFAULT_EXPIRATION_SECS)),
            Some(secs) => match u64::try_from(secs) {
                Ok(s) if s >= MIN_EXPIRATION_SECS => Some(Duration::from_secs(s)),
                _ => {
                    self.issue(
                        "token.expiration",
                        format!(
                            "{secs} seconds is too short; clients assume a token lives at least \
                             {MIN_EXPIRATION_SECS} s, so use {MIN_EXPIRATION_SECS} or more (900 is \
                             a common choice)"
                        ),
                    );
                    None
                }
            },
        };
        let header_mode = match t.signing_header.unwrap_or(SigningHeaderSpec::KidLibtrust) {
            SigningHeaderSpec::KidLibtrust => HeaderMode::KidLibtrust,
            SigningHeaderSpec::X5c => HeaderMode::X5c,
            SigningHeaderSpec::KidThumbprint => HeaderMode::KidThumbprint,
        };
        let allowed_services = match t.allowed_services {
            Some(list) if list.is_empty() => {
                self.issue(
                    "token.allowed_services",
                    "an empty list would refuse every request; remove the key to allow any \
                     service, or list the registry's auth.token.service",
                );
                None
            }
            Some(list) => {
                for (i, s) in list.iter().enumerate() {
                    if s.is_empty() {
                        self.issue(
                            format!("token.allowed_services[{i}]"),
                            "empty service name; use the registry's auth.token.service value",
                        );
                    }
                }
                Some(Some(list))
            }
            None => Some(None),
        };
        let (certificate, key) = match (t.certificate, t.key) {
            (Some(c), Some(k)) => (Some(self.resolve(&c)), Some(self.resolve(&k))),
            (c, k) => {
                for (name, missing) in [("certificate", c.is_none()), ("key", k.is_none())] {
                    if missing {
                        self.issue(
                            format!("token.{name}"),
                            "missing; set both `token.certificate` and `token.key` (create them \
                             with `registry-auth gen-keys`, or add `generate: true` to have the \
                             server create them on first start)",
                        );
                    }
                }
                (None, None)
            }
        };
        let signing_key = match (&certificate, &key) {
            (Some(c), Some(k)) => self.signing_key(c, k, t.generate),
            _ => None,
        };
        let extra_certificates = self.extra_certificates(&t.extra_certificates);
        let refresh = match t.refresh {
            Some(r) if r.enabled => self.validate_refresh(r).map(Some),
            _ => Some(None),
        };
        Some(TokenConfig {
            issuer: issuer?,
            lifetime: lifetime?,
            certificate: certificate?,
            key: key?,
            generate: t.generate,
            header_mode,
            allowed_services: allowed_services?,
            signing_key: signing_key?,
            extra_certificates: extra_certificates?,
            refresh: refresh?,
        })
    }

    /// Loads `token.extra_certificates`: published (JWKS, root bundle), never used to sign.
    fn extra_certificates(&mut self, paths: &[PathBuf]) -> Option<Vec<PublishedKey>> {
        let mut ok = true;
        let mut keys = Vec::with_capacity(paths.len());
        for (i, rel) in paths.iter().enumerate() {
            match PublishedKey::load(&self.resolve(rel)) {
                Ok(key) => keys.push(key),
                Err(e) => {
                    self.issue(
                        format!("token.extra_certificates[{i}]"),
                        format!(
                            "{e}; list PEM certificate files (a key's certificate, optionally \
                             followed by its CA chain) whose keys registries should also trust"
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(keys)
    }

    fn validate_refresh(&mut self, r: RefreshSpec) -> Option<RefreshConfig> {
        let lifetime = match r.lifetime.as_deref() {
            None => Some(DEFAULT_REFRESH_LIFETIME),
            Some(text) => match humantime::parse_duration(text) {
                Ok(d) if d >= Duration::from_secs(MIN_EXPIRATION_SECS) => Some(d),
                Ok(_) => {
                    self.issue(
                        "token.refresh.lifetime",
                        format!("{text:?} is too short; use at least a minute, e.g. `90d`"),
                    );
                    None
                }
                Err(e) => {
                    self.issue(
                        "token.refresh.lifetime",
                        format!("{text:?} is not a duration ({e}); write e.g. `90d` or `12h`"),
                    );
                    None
                }
            },
        };
        let current = match r.secret_file {
            Some(f) => match refresh::read_secret(&{
                let f = self.resolve(&f);
                self.private("token.refresh.secret_file", &f);
                f
            }) {
                Ok(s) => Some(s),
                Err(e) => {
                    self.issue("token.refresh.secret_file", e.to_string());
                    None
                }
            },
            None => {
                self.issue(
                    "token.refresh.secret_file",
                    "missing; refresh tokens need a secret shared by every replica: create one \
                     with `head -c 48 /dev/urandom | base64 > refresh.secret` and point this at it",
                );
                None
            }
        };
        let mut previous = Vec::new();
        let mut previous_ok = true;
        for (i, f) in r.previous_secret_files.iter().enumerate() {
            match refresh::read_secret(&self.resolve(f)) {
                Ok(s) => previous.push(s),
                Err(e) => {
                    self.issue(
                        format!("token.refresh.previous_secret_files[{i}]"),
                        e.to_string(),
                    );
                    previous_ok = false;
                }
            }
        }
        let revocations = match r.revocations_file {
            None => Some(Revocations::none()),
            Some(f) => match Revocations::load(self.resolve(&f)) {
                Ok(rev) => Some(rev),
                Err(e) => {
                    self.issue("token.refresh.revocations_file", e);
                    None
                }
            },
        };
        let (lifetime, current, revocations) = (lifetime?, current?, revocations?);
        if !previous_ok {
            return None;
        }
        Some(RefreshConfig {
            codec: Arc::new(RefreshCodec::new(&current, &previous, lifetime)),
            revocations: Arc::new(revocations),
        })
    }

    /// Loads the signing key. `Some(None)` means "not there yet, will be generated".
    fn signing_key(
        &mut self,
        cert: &Path,
        key: &Path,
        generate: bool,
    ) -> Option<Option<Arc<SigningKey>>> {
        self.private("token.key", key);
        match (cert.exists(), key.exists()) {
            (true, true) => match SigningKey::load(cert, key) {
                Ok(k) => Some(Some(Arc::new(k))),
                Err(e) => {
                    self.issue("token.key", e.to_string());
                    None
                }
            },
            (false, false) if generate => Some(None),
            (c, k) => {
                if generate {
                    let (present, missing, missing_key) = if c {
                        (cert, key, "token.key")
                    } else {
                        (key, cert, "token.certificate")
                    };
                    self.issue(
                        missing_key,
                        format!(
                            "{} does not exist but {} does; with `generate: true` both are \
                             created together, so remove {} to regenerate both, or restore the \
                             missing file",
                            missing.display(),
                            present.display(),
                            present.display()
                        ),
                    );
                } else {
                    for (name, path, exists) in [("certificate", cert, c), ("key", key, k)] {
                        if !exists {
                            self.issue(
                                format!("token.{name}"),
                                format!(
                                    "file not found: {}; create a key and certificate with \
                                     `registry-auth gen-keys --key … --certificate …`, or set \
                                     `token.generate: true`",
                                    path.display()
                                ),
                            );
                        }
                    }
                }
                None
            }
        }
    }

    fn validate_robots(
        &mut self,
        specs: Vec<(String, Option<RobotSpec>)>,
    ) -> Option<(Robots, HashMap<String, ScopeGrants>)> {
        let mut ok = true;
        let mut records = HashMap::new();
        let mut scopes = HashMap::new();
        for (name, spec) in specs {
            let Some(spec) = spec else {
                ok = false;
                continue;
            };
            let path = named_path("robots", &name);
            if !authn::is_valid_robot_name(&name) {
                self.issue(
                    path.clone(),
                    "a robot name must be lower-case letters, digits, `.`, `_` or `-` (it logs \
                     in as `robot$NAME`)",
                );
                ok = false;
            }
            let hash = match (spec.secret, spec.secret_file) {
                (Some(h), None) => Some(h),
                (None, Some(f)) => {
                    let f = self.resolve(&f);
                    self.private(format!("{path}.secret_file"), &f);
                    match sources::read_to_string(&f) {
                        Ok(text) => Some(text.trim().to_owned()),
                        Err(e) => {
                            self.issue(
                                format!("{path}.secret_file"),
                                format!("cannot read {}: {e}", f.display()),
                            );
                            None
                        }
                    }
                }
                (Some(_), Some(_)) => {
                    self.issue(
                        format!("{path}.secret"),
                        "give `secret` or `secret_file`, not both",
                    );
                    None
                }
                (None, None) => {
                    self.issue(
                        format!("{path}.secret"),
                        "missing; create a robot with `registry-auth robot create NAME --scope …`, \
                         which prints the secret once and the bcrypt hash to put here",
                    );
                    None
                }
            };
            let hash = match hash.map(|h| check_bcrypt_hash(&h).map(|()| h)) {
                Some(Ok(h)) => Some(h),
                Some(Err(e)) => {
                    self.issue(format!("{path}.secret"), e.to_string());
                    None
                }
                None => None,
            };
            let expires = match spec.expires.as_deref() {
                None => Some(None),
                Some(text) => match time::OffsetDateTime::parse(
                    text,
                    &time::format_description::well_known::Rfc3339,
                ) {
                    Ok(t) => Some(Some(SystemTime::from(t))),
                    Err(_) => {
                        self.issue(
                            format!("{path}.expires"),
                            format!(
                                "{text:?} is not an RFC 3339 time; write e.g. \
                                 `2027-01-31T00:00:00Z`"
                            ),
                        );
                        None
                    }
                },
            };
            let grants = if spec.scopes.is_empty() {
                self.issue(
                    format!("{path}.scopes"),
                    "a robot without scopes can do nothing; list what it may do, e.g. \
                     `[\"repository:ci/**:pull,push\"]`",
                );
                None
            } else {
                match ScopeGrants::compile(&spec.scopes) {
                    Ok(g) => Some(g),
                    Err(errors) => {
                        for (i, e) in errors {
                            self.issue(format!("{path}.scopes[{i}]"), e);
                        }
                        None
                    }
                }
            };
            match (hash, expires, grants) {
                (Some(hash), Some(expires), Some(grants)) => {
                    records.insert(name.clone(), RobotRecord { hash, expires });
                    scopes.insert(name, grants);
                }
                _ => ok = false,
            }
        }
        ok.then(|| (Robots::new(records), scopes))
    }

    fn validate_users(
        &mut self,
        users: Option<Vec<(String, Option<UserSpec>)>>,
        users_file: Option<PathBuf>,
        robots: Option<Robots>,
        other_backends: bool,
    ) -> Option<authn::Chain> {
        if users.is_none()
            && users_file.is_none()
            && robots.as_ref().is_none_or(Robots::is_empty)
            && !other_backends
        {
            self.issue(
                "users",
                "no users are configured, so every request would be refused; add `users` \
                 (`\"\": {}` allows anonymous access) or `users_file` (an htpasswd -B file)",
            );
            return None;
        }
        let mut ok = true;
        let mut table: HashMap<String, UserRecord> = HashMap::new();
        let mut anonymous: Option<Labels> = None;
        for (name, spec) in users.unwrap_or_default() {
            let Some(spec) = spec else {
                ok = false;
                continue;
            };
            let path = user_path(&name);
            if name.is_empty() {
                if spec.password.is_some() {
                    self.issue(
                        format!("{path}.password"),
                        "the anonymous entry `\"\"` takes no password; remove it (anonymous \
                         clients send no credentials)",
                    );
                    ok = false;
                }
                anonymous = Some(spec.labels);
                continue;
            }
            match spec.password {
                None => {
                    self.issue(
                        format!("{path}.password"),
                        "missing; every named user needs a bcrypt hash (create one with \
                         `registry-auth hash-password` or `htpasswd -nB NAME`); docker_auth \
                         accepted any password here, registry-auth refuses to",
                    );
                    ok = false;
                }
                Some(hash) => match check_bcrypt_hash(&hash) {
                    Ok(()) => {
                        table.insert(
                            name,
                            UserRecord {
                                hash,
                                labels: spec.labels,
                            },
                        );
                    }
                    Err(e) => {
                        self.issue(format!("{path}.password"), e.to_string());
                        ok = false;
                    }
                },
            }
        }
        if let Some(rel) = users_file {
            let path = self.resolve(&rel);
            match sources::read_to_string(&path) {
                Err(e) => {
                    self.issue(
                        "users_file",
                        format!(
                            "cannot read {}: {e}; point it at an htpasswd file made with \
                             `htpasswd -B`",
                            path.display()
                        ),
                    );
                    ok = false;
                }
                Ok(text) => match authn::htpasswd::parse(&text) {
                    Err(errors) => {
                        for e in errors {
                            self.issue(
                                "users_file",
                                format!("{} line {}: {}", path.display(), e.line, e.message),
                            );
                        }
                        ok = false;
                    }
                    Ok(entries) => {
                        for (name, hash) in entries {
                            match table.entry(name) {
                                std::collections::hash_map::Entry::Occupied(e) => {
                                    self.issues.push(ConfigIssue::new(
                                        "users_file",
                                        format!(
                                            "user `{}` is defined in both `users` and {}; keep \
                                             one definition",
                                            e.key(),
                                            path.display()
                                        ),
                                    ));
                                    ok = false;
                                }
                                std::collections::hash_map::Entry::Vacant(e) => {
                                    e.insert(UserRecord {
                                        hash,
                                        labels: Labels::default(),
                                    });
                                }
                            }
                        }
                    }
                },
            }
        }
        let robots = robots?;
        if !ok {
            return None;
        }
        let robot_names: Vec<(String, u32)> = robots
            .costs()
            .map(|(n, c)| (format!("{}{n}", authn::ROBOT_PREFIX), c))
            .collect();
        let accounts = table
            .iter()
            .filter_map(|(n, u)| Some((n.as_str(), u.hash.get(4..6)?.parse().ok()?)))
            .chain(robot_names.iter().map(|(n, c)| (n.as_str(), *c)));
        self.warnings.extend(warnings::mixed_bcrypt_costs(accounts));
        match authn::Chain::new(StaticUsers::new(table, anonymous), robots) {
            Ok(chain) => Some(chain),
            Err(e) => {
                self.issue("users", e.to_string());
                None
            }
        }
    }

    fn validate_acl(&mut self, acl: Option<Vec<Option<AclEntrySpec>>>) -> Option<Acl> {
        let Some(entries) = acl else {
            self.issue(
                "acl",
                "missing, so every scope would be denied; add an `acl` list (write `acl: []` \
                 if denying everything is really what you want)",
            );
            return None;
        };
        let specs: Option<Vec<AclEntrySpec>> = entries.into_iter().collect();
        // Entries that failed to deserialize are already reported; compile only a complete list
        // so indexes in messages stay right.
        let specs = specs?;
        match Acl::compile(&specs) {
            Ok(acl) => Some(acl),
            Err(errors) => {
                for e in errors {
                    self.issue(format!("acl[{}].{}", e.index, e.field), e.message);
                }
                None
            }
        }
    }
}

/// `robots.ci`, or `robots."odd name"`.
fn named_path(section: &str, name: &str) -> String {
    let user = user_path(name);
    format!("{section}{}", &user["users".len()..])
}

/// With `kid-thumbprint`, an EC signing key whose `x` or `y` starts with a zero byte gets
/// another `kid` from registry v3.1 (which drops leading zeros) than the RFC 7638 one we send.
fn short_coordinate_warning(t: &TokenConfig) -> Option<ConfigIssue> {
    let key = t.signing_key.as_ref()?;
    (t.header_mode == HeaderMode::KidThumbprint && key.public_key().params().has_short_coordinate())
        .then(|| {
            ConfigIssue::new(
                "token.key",
                "this EC key has a coordinate starting with a zero byte, so registry v3.1 computes \
             a different JWK thumbprint than the `kid` we send and refuses the tokens; create \
             a new key with `registry-auth gen-keys` (it never makes such keys), or use \
             `signing_header: x5c`",
            )
        })
}

/// `users.alice`, or `users."name with spaces"` for names that need quoting.
fn user_path(name: &str) -> String {
    if !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'@'))
    {
        format!("users.{name}")
    } else {
        format!("users.{}", serde_json::Value::String(name.to_owned()))
    }
}

fn join_path(prefix: &str, inner: &str) -> String {
    if inner.is_empty() || inner == "." {
        prefix.to_owned()
    } else if inner.starts_with('[') {
        format!("{prefix}{inner}")
    } else {
        format!("{prefix}.{inner}")
    }
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing (null)".to_owned(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("the string {s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(_) => "a tagged value".to_owned(),
    }
}

fn normalize_addr(addr: &str) -> Option<String> {
    if let Some(port) = addr.strip_prefix(':') {
        return port.parse::<u16>().ok().map(|p| format!("0.0.0.0:{p}"));
    }
    if addr.parse::<SocketAddr>().is_ok() {
        return Some(addr.to_owned());
    }
    let (host, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    host_ok.then(|| addr.to_owned())
}

static UNKNOWN_FIELD: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^unknown (field|variant) `([^`]*)`, (.*)$").ok());
static BACKTICKED: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"`([^`]*)`").ok());
static MISSING_FIELD: LazyLock<Option<Regex>> =
    LazyLock::new(|| Regex::new(r"^missing field `([^`]*)`").ok());

/// Turns serde's message into one that names the key and says how to fix it.
fn humanize_serde_error(path: &str, message: &str) -> (String, String) {
    // serde_yaml_ng appends " at line N column M" to some messages; keep it, it helps.
    if let Some(c) = UNKNOWN_FIELD.as_ref().and_then(|re| re.captures(message)) {
        let what = &c[1];
        let got = &c[2];
        let expected: Vec<&str> = BACKTICKED
            .as_ref()
            .map(|re| {
                re.captures_iter(&c[3])
                    .filter_map(|m| m.get(1).map(|m| m.as_str()))
                    .collect()
            })
            .unwrap_or_default();
        if what == "field" {
            let key_path = if path.ends_with(got) {
                path.to_owned()
            } else {
                join_path(path, got)
            };
            return (key_path, unknown_key_message(got, &expected, &expected));
        }
        let hint = suggestion(got, &expected)
            .map(|s| format!(" (did you mean `{s}`?)"))
            .unwrap_or_default();
        return (
            path.to_owned(),
            format!(
                "unknown value `{got}`{hint}; use one of: {}",
                expected.join(", ")
            ),
        );
    }
    if let Some(c) = MISSING_FIELD.as_ref().and_then(|re| re.captures(message)) {
        let key = &c[1];
        let hint = match key {
            "actions" => {
                " (write `actions: []` to deny, `actions: [\"*\"]` to grant whatever is \
                 requested, or a list such as `[pull, push]`)"
            }
            "match" => " (write `match: {}` to match every request)",
            _ => "",
        };
        return (
            join_path(path, key),
            format!("missing required key `{key}`{hint}"),
        );
    }
    (path.to_owned(), message.to_owned())
}

fn unknown_key_message(got: &str, candidates: &[&str], valid: &[&str]) -> String {
    let hint = suggestion(got, candidates)
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    if valid.is_empty() {
        format!("unknown key `{got}`{hint}; no keys are allowed here")
    } else {
        format!(
            "unknown key `{got}`{hint}; valid keys here are: {}",
            valid.join(", ")
        )
    }
}

fn suggestion<'a>(got: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(got, c), *c))
        .filter(|(d, c)| *d <= 2.max(c.len() / 3))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}
