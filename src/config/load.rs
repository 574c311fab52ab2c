//! Reading the YAML and turning it into a [`Config`], collecting every problem on the way.
//!
//! The file is first parsed into a YAML tree; each section (and each ACL entry and user) is then
//! deserialized on its own, so one typo does not hide the problems after it.
//!
//! This file reads the tree, splits it into sections and assembles the [`Config`]; each part of
//! the validation extends [`Loader`] in a submodule: `server` (listeners, TLS, proxies, limits),
//! `token` (signing keys, refresh tokens), `users` (users, users_file, robots, credential cache,
//! lockout), `backends` (LDAP, webhooks, ext programs), `sql`, `web` (web logins, CI tokens,
//! store) and `order` (authn_order, authz_order); `identity` and `warnings` add warnings;
//! `yaml` holds what docker_auth's YAML reader did differently (merges, anchor holders,
//! repeated keys).

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use regex::Regex;
use serde::de::DeserializeOwned;
use serde_yaml_ng::{Mapping, Value};

use super::file::{
    AclEntrySpec, CredentialCacheSpec, ExtSpec, HttpHookSpec, LdapSpec, LockoutSpec, RobotSpec,
    ServerSpec, TokenSpec, UserSpec,
};
use super::sources;
use super::{Config, ConfigError, ConfigIssue};
use crate::authn;
use crate::authz::{Acl, ExtAuthz, HttpAuthz};

mod backends;
mod identity;
mod order;
mod server;
mod sql;
mod store_tls;
mod token;
mod users;
mod warnings;
mod web;
mod yaml;

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

/// docker_auth sections we do not implement, each with the feature, why, and what to use
/// instead; `true` for authenticators, `false` for authorizers.
const UNSUPPORTED_SECTIONS: &[(&str, bool, &str)] = &[
    (
        "mongo_auth",
        true,
        "docker_auth's MongoDB users are not supported (registry-auth has no MongoDB driver; \
         users live in files, SQL, LDAP or behind a webhook); export them to an htpasswd file \
         for `users_file` or into `sql_auth`, or answer from MongoDB through `http_auth`",
    ),
    (
        "xorm_auth",
        true,
        "docker_auth's xorm tables are not read (their layout, labels as JSON in xorm_user, is \
         xorm's); use `sql_auth: {url: …}` (PostgreSQL or SQLite, table registry_auth_users; \
         docs/src/users/sql.md shows the SQL that copies xorm_user rows into it)",
    ),
    (
        "plugin_authn",
        true,
        "docker_auth's Go plugins cannot be loaded (registry-auth is not a Go program); run the \
         plugin's check as a webhook (`http_auth`) or a program (`ext_auth`)",
    ),
    (
        "acl_mongo",
        false,
        "docker_auth's MongoDB ACL is not supported (registry-auth has no MongoDB driver); move \
         the entries, sorted by `seq`, into the static `acl` list or `acl_sql`, or decide from \
         MongoDB through `http_authz`",
    ),
    (
        "acl_xorm",
        false,
        "docker_auth's xorm tables are not read (xorm_acl_entry holds Go-named JSON); use \
         `acl_sql: {url: …, cache_ttl: 30s}` (PostgreSQL or SQLite, table registry_auth_acl; \
         docs/src/users/sql.md shows the SQL that copies xorm_acl_entry rows into it)",
    ),
    (
        "plugin_authz",
        false,
        "docker_auth's Go plugins cannot be loaded (registry-auth is not a Go program); run the \
         plugin's decision as a webhook (`http_authz`) or a program (`ext_authz`)",
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
        files: RefCell::new(Vec::new()),
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
    /// Every path the config names (config key, absolute path), in the order resolved.
    files: RefCell<Vec<(String, PathBuf)>>,
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
    /// An unsupported docker_auth authenticator (`mongo_auth`, …) was refused.
    unsupported_authn: bool,
    /// An unsupported docker_auth authorizer (`acl_mongo`, …) was refused.
    unsupported_authz: bool,
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
        let mut root: Value = match serde_yaml_ng::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                match yaml::duplicate_key(text, &e) {
                    Some((path, message)) => self.issue(path, message),
                    None => self.issue("", format!("not valid YAML: {e}")),
                }
                return None;
            }
        };
        // Merge keys (`<<: *base`, `<<: [*a, *b]`) anywhere, as docker_auth's YAML reader does.
        if let Err(message) = yaml::apply_merges(&mut root) {
            self.issue("", message);
            return None;
        }
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
                // Anchor holders (`x-defaults: &d {…}`, `.base: &b {…}`): docker_auth's YAML
                // reader ignored every unknown top-level key, so files keep anchors there. Only
                // these two spellings are ignored; any other unknown key stays an error.
                other if yaml::is_anchor_holder(other) => {}
                other => {
                    if let Some((_, authn, hint)) =
                        UNSUPPORTED_SECTIONS.iter().find(|(k, _, _)| *k == other)
                    {
                        self.issue(other, *hint);
                        // Its replacement is named above; no "nothing configured" besides.
                        if *authn {
                            s.unsupported_authn = true;
                        } else {
                            s.unsupported_authz = true;
                        }
                    } else {
                        let mut candidates: Vec<&str> = KNOWN_SECTIONS.to_vec();
                        candidates.extend(UNSUPPORTED_SECTIONS.iter().map(|(k, _, _)| *k));
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

    /// `path` (the value of config key `key`) resolved against the config file's folder,
    /// recorded for `check-config`'s list of files.
    fn resolve(&self, key: impl Into<String>, path: &Path) -> PathBuf {
        let resolved = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.base.join(path)
        };
        // Fingerprinted now, before anything reads it (for change detection on reload).
        sources::note(&resolved);
        self.note_file(key, &resolved);
        resolved
    }

    /// Records that config key `key` names `path` (for `check-config`'s list of files).
    fn note_file(&self, key: impl Into<String>, path: &Path) {
        let key = key.into();
        let mut files = self.files.borrow_mut();
        if !files.iter().any(|(k, _)| *k == key) {
            let shown = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
            files.push((key, shown));
        }
    }

    fn validate(&mut self, s: Sections, file: &Path) -> Option<Config> {
        let server_spec = s.server.unwrap_or_default();
        let credential_cache = self.validate_cache(
            s.credential_cache.unwrap_or_default(),
            server_spec.bcrypt_workers,
        );
        let session_secret_file = server_spec.session_secret_file.clone();
        let server_pair = server_spec.certificate.clone().zip(server_spec.key.clone());
        let server = self.validate_server(server_spec);
        let token = match s.token {
            // docker_auth's fallback: without a token key pair, tokens are signed with the
            // server's TLS pair (whose certificate is then the registry's rootcertbundle).
            Some(mut t)
                if t.certificate.is_none()
                    && t.key.is_none()
                    && !t.generate
                    && server_pair.is_some() =>
            {
                if let Some((certificate, key)) = server_pair {
                    self.warnings.push(ConfigIssue::new(
                        "token",
                        "no `certificate`/`key`: tokens are signed with the server's TLS pair \
                         (`server.certificate`/`server.key`), as docker_auth does; give tokens a \
                         key of their own (`registry-auth gen-keys`) so that renewing the TLS \
                         certificate does not change what the registry must trust",
                    ));
                    t.certificate = Some(certificate);
                    t.key = Some(key);
                }
                self.validate_token(t)
            }
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
        let (web_logins, shared_state) = match web {
            Some(w) => (w.logins, w.shared),
            None => (None, None),
        };
        let other_authn = ext_auth.is_some() || ldap_auth.is_some() || http_auth.is_some();
        let other_authn = other_authn || web_has_authn || s.sql.has_authn() || s.unsupported_authn;
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
        let other_authz =
            ext_authz.is_some() || http_authz.is_some() || other_authz_sql || s.unsupported_authz;
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
            warnings.extend(token::short_coordinate_warning(t));
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
            files: self.files.take(),
            web_logins,
            shared_state,
            namespaces: namespaces?,
        })
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
