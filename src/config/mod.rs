//! Configuration: the YAML file shape ([`file`]) and its validated runtime form ([`Config`]).
//!
//! Loading is strict: unknown keys, wrong types, invalid patterns, bad CIDRs, missing files and
//! unsupported docker_auth sections are errors that name the YAML path and say how to fix them,
//! and all of them are reported at once. Relative paths resolve against the config file's folder.

mod error;
pub mod file;
mod load;
mod schema;
pub mod sources;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_migration;
#[cfg(test)]
mod tests_sql;
#[cfg(test)]
mod tests_trust;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use error::{ConfigError, ConfigIssue};
pub use load::{load, load_recorded, parse};
pub use schema::json_schema;
pub use sources::Source;

use crate::authn;
use crate::authz::{Acl, ScopeGrants};
use crate::token::refresh::{RefreshCodec, Revocations};
use crate::token::{HeaderMode, PublishedKey, SigningKey};

/// Address used when `server.addr` is not set.
pub const DEFAULT_ADDR: &str = "127.0.0.1:5001";
/// Token lifetime used when `token.expiration` is not set, in seconds.
pub const DEFAULT_EXPIRATION_SECS: u64 = 900;
/// The shortest token lifetime accepted: clients assume tokens live at least 60 s.
pub const MIN_EXPIRATION_SECS: u64 = 60;

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was loaded from.
    pub file: PathBuf,
    /// Listener settings.
    pub server: ServerConfig,
    /// Token settings.
    pub token: TokenConfig,
    /// The authenticators.
    pub authn: Arc<authn::Chain>,
    /// Verified-credential cache and bcrypt pool settings.
    pub credential_cache: authn::CacheSettings,
    /// Brute-force protection.
    pub lockout: LockoutSettings,
    /// Every file this configuration was read from (the config file, users_file, keys, …) with
    /// a digest of the bytes the loader read, for change detection (see [`sources`]).
    pub sources: Vec<Source>,
    /// Authenticators in the order they are asked (`authn_order`, or docker_auth's order).
    pub authn_order: Vec<AuthnBackend>,
    /// Authorizers in the order they are asked (`authz_order`, or docker_auth's order).
    pub authz_order: Vec<AuthzBackend>,
    /// Each robot's scopes (robots are explicit grants; the ACL is not consulted for them).
    pub robot_scopes: Arc<HashMap<String, ScopeGrants>>,
    /// The static ACL.
    pub acl: Arc<Acl>,
    /// The ACL entries as written (for `acl explain` and messages).
    pub acl_entries: Vec<file::AclEntrySpec>,
    /// Problems that do not stop the server (e.g. shadowed ACL entries).
    pub warnings: Vec<ConfigIssue>,
    /// Every path the file names, as (config key, absolute path), relative ones resolved
    /// against the config file's folder (docker_auth used the working directory): what
    /// `check-config` lists.
    pub files: Vec<(String, PathBuf)>,
    /// The web logins (`github_auth`, `google_auth`, `oidc_auth`, `gitlab_auth`) with the
    /// password store, when any is configured.
    pub web_logins: Option<Arc<crate::weblogin::WebLogins>>,
    /// A Redis or PostgreSQL `store`: the replicas' shared state (refresh-token revocations,
    /// lockout counters), with or without web logins.
    pub shared_state: Option<crate::store::SharedState>,
    /// Which names each configured source can produce: who ACL entries without
    /// `match.source` are for, and each principal's subject.
    pub namespaces: Arc<authn::principal::Namespaces>,
}

/// One authenticator of the chain.
#[derive(Debug, Clone)]
pub enum AuthnBackend {
    /// `users`, `users_file` and `robots` (bcrypt, local).
    Local,
    /// `ext_auth`.
    Ext(authn::ExtAuth),
    /// `ldap_auth`.
    Ldap(authn::LdapAuth),
    /// `http_auth`.
    Http(authn::HttpAuth),
    /// A web login's minted passwords (`github_auth`, `google_auth`, `oidc_auth`,
    /// `gitlab_auth`).
    WebLogin(crate::weblogin::WebLoginBackend),
    /// `oidc_tokens`: CI identity tokens.
    CiTokens(authn::ci_oidc::CiTokens),
    /// `sql_auth`.
    Sql(authn::SqlAuth),
}

impl AuthnBackend {
    /// The config name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Local => "users",
            Self::Ext(_) => "ext_auth",
            Self::Ldap(_) => "ldap_auth",
            Self::Http(_) => "http_auth",
            Self::WebLogin(w) => w.kind.key(),
            Self::CiTokens(_) => "oidc_tokens",
            Self::Sql(_) => "sql_auth",
        }
    }
}

/// One authorizer of the chain.
#[derive(Debug, Clone)]
pub enum AuthzBackend {
    /// The static `acl`.
    Acl,
    /// `ext_authz`.
    Ext(crate::authz::ExtAuthz),
    /// `http_authz`.
    Http(crate::authz::HttpAuthz),
    /// `acl_sql`.
    Sql(crate::authz::SqlAcl),
    /// `casbin_authz`.
    Casbin(crate::authz::CasbinAuthz),
}

impl AuthzBackend {
    /// The config name.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Acl => "acl",
            Self::Ext(_) => "ext_authz",
            Self::Http(_) => "http_authz",
            Self::Sql(_) => "acl_sql",
            Self::Casbin(_) => "casbin_authz",
        }
    }
}

/// `server:` after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Listen address (`host:port`), already normalised (`:5001` → `0.0.0.0:5001`).
    pub addr: String,
    /// Route prefix without a trailing slash; empty for none.
    pub path_prefix: String,
    /// Request size and time limits.
    pub limits: Limits,
    /// How the client IP is found behind proxies.
    pub client_ip: ClientIpSettings,
    /// Listen on a unix socket at `addr` instead of TCP.
    pub unix: bool,
    /// HTTPS on the listener.
    pub tls: Option<TlsSettings>,
    /// A separate listener for `/metrics` and the probes.
    pub metrics_addr: Option<String>,
}

/// The listener's TLS settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsSettings {
    /// Certificate chain file (PEM, leaf first).
    pub certificate: PathBuf,
    /// Private key file (PEM).
    pub key: PathBuf,
    /// Refuse TLS 1.2.
    pub tls13_only: bool,
    /// Send `Strict-Transport-Security`.
    pub hsts: bool,
}

/// How the client IP is found behind proxies.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientIpSettings {
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header to read (lower case); `x-forwarded-for` by default, or `forwarded`.
    pub header: Option<String>,
    /// docker_auth's `real_ip_pos`: a fixed position instead of "right-most untrusted".
    pub position: Option<i64>,
}

/// Brute-force protection settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutSettings {
    /// Whether failed logins are counted at all.
    pub enabled: bool,
    /// Failures within `window` that lock the (account, IP) pair.
    pub max_failures: u32,
    /// Counting window.
    pub window: Duration,
    /// How long a locked pair is refused.
    pub cooldown: Duration,
}

impl Default for LockoutSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_failures: 10,
            window: Duration::from_secs(300),
            cooldown: Duration::from_secs(300),
        }
    }
}

/// Request size and time limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest request head in bytes.
    pub max_header_bytes: usize,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Time allowed to send the request head.
    pub header_read_timeout: Duration,
    /// Time allowed for a whole request.
    pub request_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_body_bytes: 64 * 1024,
            header_read_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// `token:` after validation.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// `iss` claim.
    pub issuer: String,
    /// Token lifetime.
    pub lifetime: Duration,
    /// Certificate (chain) file of the signing key.
    pub certificate: PathBuf,
    /// Private key file.
    pub key: PathBuf,
    /// Whether the server may create the key and certificate on first start.
    pub generate: bool,
    /// How the signing key is identified in the JWS header.
    pub header_mode: HeaderMode,
    /// Services that may be requested; `None` means any.
    pub allowed_services: Option<Vec<String>>,
    /// The signing key, when its files exist (with `generate: true` they may not exist yet).
    pub signing_key: Option<Arc<SigningKey>>,
    /// `token.extra_certificates`, loaded: keys published next to the signing key (JWKS, root
    /// bundle) but never used to sign. Build the whole set with
    /// [`PublishedKeys::new`](crate::token::PublishedKeys::new).
    pub extra_certificates: Vec<PublishedKey>,
    /// Refresh tokens, when `token.refresh.enabled`.
    pub refresh: Option<RefreshConfig>,
}

/// `token.refresh` after validation.
#[derive(Debug, Clone)]
pub struct RefreshConfig {
    /// Issues and checks refresh tokens with the configured secrets.
    pub codec: Arc<RefreshCodec>,
    /// Revoked tokens and users (re-read when the file changes).
    pub revocations: Arc<Revocations>,
}

/// Default time a verified credential is cached.
pub const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(300);
/// Default size of the credential cache.
pub const DEFAULT_CACHE_ENTRIES: u64 = 10_000;

/// Default refresh-token lifetime: 90 days.
pub const DEFAULT_REFRESH_LIFETIME: Duration = Duration::from_secs(90 * 24 * 3600);

/// One-line rendering of an ACL entry, e.g.
/// `match {account: "alice", name: "alice/*"} actions [pull, push] # comment`.
pub fn describe_acl_entry(entry: &file::AclEntrySpec) -> String {
    let m = &entry.matches;
    let mut fields: Vec<String> = Vec::new();
    for (name, value) in [
        ("account", &m.account),
        ("type", &m.kind),
        ("name", &m.name),
        ("service", &m.service),
        ("ip", &m.ip),
    ] {
        if let Some(v) = value {
            fields.push(format!("{name}: {v:?}"));
        }
    }
    if !m.labels.is_empty() {
        let labels: Vec<String> = m
            .labels
            .iter()
            .map(|(k, v)| format!("{k}: {v:?}"))
            .collect();
        fields.push(format!("labels: {{{}}}", labels.join(", ")));
    }
    let mut s = format!(
        "match {{{}}} actions [{}]",
        fields.join(", "),
        entry.actions.join(", ")
    );
    if let Some(c) = &entry.comment {
        s.push_str(" # ");
        s.push_str(c);
    }
    s
}
