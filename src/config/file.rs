//! The YAML shape of the configuration file, one struct per section, mirroring docker_auth's
//! layout. Every struct denies unknown keys so a typo is an error instead of a silently ignored
//! setting (docker_auth issue #326). Validation and conversion into the runtime
//! [`Config`](super::Config) happen in `super::validate`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::authn::Labels;

mod sql;
mod web;
pub use sql::*;
pub use web::*;

/// `server:`: where to listen.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// `host:port` to listen on (default `127.0.0.1:5001`), or a socket path with `net: unix`.
    /// `--listen` overrides it.
    pub addr: Option<String>,
    /// `tcp` (default) or `unix`.
    pub net: Option<NetSpec>,
    /// TLS certificate chain (PEM, leaf first). With `key`, the listener speaks HTTPS.
    pub certificate: Option<PathBuf>,
    /// TLS private key (PEM).
    pub key: Option<PathBuf>,
    /// Lowest TLS version: `1.2` (default) or `1.3` (docker_auth's `TLS12`/`TLS13` also work).
    pub tls_min_version: Option<String>,
    /// Send `Strict-Transport-Security` (TLS only; default false).
    #[serde(default)]
    pub hsts: bool,
    /// Serve `/metrics` (and the probes) on this separate `host:port` as well, e.g. to keep it
    /// off the ingress (default: only on the main listener).
    pub metrics_addr: Option<String>,
    /// Prefix for every route, e.g. `/registry-auth` (default none). Must start with `/`.
    pub path_prefix: Option<String>,
    /// Most bcrypt verifications running at once (default: one less than the CPU count, at
    /// least 1), so a storm of wrong passwords cannot starve other requests.
    pub bcrypt_workers: Option<usize>,
    /// Request size and time limits.
    pub limits: Option<LimitsSpec>,
    /// Proxies (IPs or CIDRs) whose `X-Forwarded-For`/`Forwarded` headers are believed; the
    /// client IP is the right-most address not in this list. A header from them that cannot be
    /// read is refused with 400. Default: none (the peer address).
    pub trusted_proxies: Option<Vec<String>>,
    /// docker_auth's header holding the client IP (`X-Forwarded-For`, `Forwarded` or
    /// `X-Real-IP`), accepted for migration: then only that header is read, and requests from a
    /// trusted peer without it get 400. Without `trusted_proxies`, every peer is believed, as in
    /// docker_auth.
    pub real_ip_header: Option<String>,
    /// docker_auth's position in that header (negative counts from the end, -1 = last; 0,
    /// docker_auth's default, is the same as leaving it out). A header with fewer addresses
    /// gets 400.
    pub real_ip_pos: Option<i64>,
    /// File holding the secret (at least 32 bytes) that seals the web-login cookies and the
    /// upstream tokens in the password store; the same file on every replica. Default:
    /// `<data_dir>/session.secret`, generated on first start.
    pub session_secret_file: Option<PathBuf>,
}

/// `ext_auth:` / `ext_authz:`: an external program (docker_auth's contract; see docs/src/users/chains.md).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExtSpec {
    /// The program: a path (relative to the config folder when it contains `/`) or a name
    /// looked up on `PATH`. Run directly, never through a shell.
    pub command: String,
    /// Its arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// Kill it after this long, e.g. `5s` (default).
    pub timeout: Option<String>,
    /// Most instances running at once (default 16); further requests wait for a free slot.
    pub max_concurrent: Option<usize>,
}

/// `ldap_auth:`: users in an LDAP directory (docker_auth's keys). The user's entry is found by
/// a search (as the service account `bind_dn`, or as the user with `initial_bind_as_user`), then
/// the password is checked by binding as that entry.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapSpec {
    /// The server as `host:port`, e.g. `ldap.example.com:636`.
    pub addr: String,
    /// `none`, `always` (LDAPS) or `starttls`. Default: `always` when the port is 636, else
    /// `none`.
    #[schemars(schema_with = "ldap_tls_schema")]
    pub tls: Option<LdapTlsSpec>,
    /// PEM file of the CA(s) the server's certificate must chain to (default: the system's).
    pub ca_certificate: Option<PathBuf>,
    /// Accept any server certificate (testing only; default false).
    #[serde(default)]
    pub insecure_tls_skip_verify: bool,
    /// The service account's DN (searches run as it), or with `initial_bind_as_user` a DN
    /// template containing `${account}`.
    pub bind_dn: Option<String>,
    /// File holding the service account's password (read at load; surrounding whitespace is
    /// trimmed).
    pub bind_password_file: Option<PathBuf>,
    /// Bind as the user (`bind_dn` with `${account}`) to search, instead of a service account.
    /// Refresh tokens are then never issued to LDAP users (nothing can re-check them).
    #[serde(default)]
    pub initial_bind_as_user: bool,
    /// Where to search, e.g. `ou=people,dc=example,dc=com`.
    pub base: String,
    /// The search filter with `${account}` (escaped per RFC 4515), e.g. `(uid=${account})`.
    /// Exactly one entry must match.
    pub filter: String,
    /// Labels from the entry's attributes: `{label: {attribute, parse_cn, lower_case}}`.
    #[serde(default)]
    pub labels: BTreeMap<String, LdapLabelSpec>,
    /// The attribute whose value is the account name in tokens, the ACL and revocation (the
    /// directory's spelling, not the typed one). Default: the attribute `${account}` is compared
    /// with in `filter` (`uid` in `(uid=${account})`).
    pub account_attribute: Option<String>,
    /// Time allowed for each connect, bind and search, e.g. `5s` (default).
    pub timeout: Option<String>,
    /// Most connections to the server at once (default 10); idle ones are reused.
    pub max_connections: Option<usize>,
}

/// The schema of `ldap_auth.tls`: the variants, docker_auth's `""` (= `none`) and null.
fn ldap_tls_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": ["string", "null"],
        "enum": ["none", "always", "starttls", "", null],
    })
}

/// `ldap_auth.tls` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LdapTlsSpec {
    /// Plain LDAP (docker_auth's `""` means the same).
    #[serde(alias = "")]
    None,
    /// LDAPS: TLS from the first byte.
    Always,
    /// Plain LDAP upgraded with the StartTLS operation before anything else is sent.
    Starttls,
}

/// One entry of `ldap_auth.labels`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LdapLabelSpec {
    /// The attribute whose values become the label's values, e.g. `memberOf`.
    pub attribute: String,
    /// Reduce each value that is a DN to its `cn` (`cn=devs,ou=groups,dc=x` → `devs`).
    #[serde(default)]
    pub parse_cn: bool,
    /// Lower-case the values.
    #[serde(default)]
    pub lower_case: bool,
}

/// `http_auth:` / `http_authz:`: a webhook that decides (JSON over HTTP POST; see docs/src/users/webhooks.md).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpHookSpec {
    /// The `http://` or `https://` URL the request is POSTed to.
    pub url: String,
    /// PEM file of the CA(s) an `https` server's certificate must chain to (default: the
    /// system's).
    pub ca_certificate: Option<PathBuf>,
    /// Time allowed for the whole call, e.g. `5s` (default).
    pub timeout: Option<String>,
    /// File holding a token sent as `Authorization: Bearer <token>`.
    pub bearer_token_file: Option<PathBuf>,
    /// File holding a secret; the body's HMAC-SHA256 under it is sent as
    /// `X-Registry-Auth-Signature: sha256=<hex>`.
    pub hmac_secret_file: Option<PathBuf>,
    /// Most calls in flight at once (default 16); further requests wait.
    pub max_concurrent: Option<usize>,
    /// Remember each decision this long, e.g. `10s` (default: off).
    pub cache_ttl: Option<String>,
}

/// `server.net` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum NetSpec {
    /// A TCP `host:port`.
    Tcp,
    /// A unix socket path (an existing socket file is replaced).
    Unix,
}

/// `lockout:`: brute-force protection per (account, client IP).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LockoutSpec {
    /// On by default; `false` turns it off.
    pub enabled: Option<bool>,
    /// Failed logins within `window` that trigger a lockout (default 10).
    pub max_failures: Option<u32>,
    /// Window the failures are counted in, e.g. `5m` (default).
    pub window: Option<String>,
    /// How long the pair is refused (429) once locked, e.g. `5m` (default).
    pub cooldown: Option<String>,
}

/// `server.limits`: request size and time limits (all optional, safe defaults).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsSpec {
    /// Largest request head (request line and headers) in bytes (default 16384, at least 8192).
    pub max_header_bytes: Option<usize>,
    /// Largest request body in bytes (default 65536).
    pub max_body_bytes: Option<usize>,
    /// Time allowed to send the request head, e.g. `10s` (default); slow clients are cut off.
    pub header_read_timeout: Option<String>,
    /// Time allowed for a whole request, e.g. `30s` (default).
    pub request_timeout: Option<String>,
}

/// `credential_cache:`: remembering verified credentials so repeated logins skip bcrypt.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CredentialCacheSpec {
    /// How long a verified credential is remembered, e.g. `5m` (default); `0s` disables.
    pub ttl: Option<String>,
    /// Most entries kept (default 10000).
    pub max_entries: Option<u64>,
}

/// `token:`: how tokens are signed and for how long they live.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenSpec {
    /// `iss` claim; must equal the registry's `auth.token.issuer`. Required.
    pub issuer: Option<String>,
    /// Token lifetime in seconds (default 900, at least 60).
    pub expiration: Option<i64>,
    /// PEM certificate (chain, leaf first) of the signing key.
    pub certificate: Option<PathBuf>,
    /// PEM private key (PKCS#8, SEC1 or PKCS#1).
    pub key: Option<PathBuf>,
    /// Create an ES256 key and a self-signed certificate at `key`/`certificate` when both are
    /// missing (default false).
    #[serde(default)]
    pub generate: bool,
    /// How the registry finds the verification key: `kid-libtrust` (default) or `x5c`.
    pub signing_header: Option<SigningHeaderSpec>,
    /// If set, only these `service` values may be requested (default: any).
    pub allowed_services: Option<Vec<String>>,
    /// Certificates published (JWKS, root bundle) but never used to sign: the next key before a
    /// rotation, the previous one after it.
    #[serde(default)]
    pub extra_certificates: Vec<PathBuf>,
    /// Refresh (identity) tokens for `docker login` and the OAuth2 POST flow.
    pub refresh: Option<RefreshSpec>,
}

/// `token.refresh`: stateless refresh tokens.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshSpec {
    /// Issue refresh tokens when offline access is asked for (default false).
    #[serde(default)]
    pub enabled: bool,
    /// How long a refresh token is valid, e.g. `90d`, `12h` (default 90 days).
    pub lifetime: Option<String>,
    /// File holding the secret that authenticates refresh tokens (same file on every replica).
    pub secret_file: Option<PathBuf>,
    /// Older secrets still accepted during a rotation.
    #[serde(default)]
    pub previous_secret_files: Vec<PathBuf>,
    /// Revoked token ids and users (written by `registry-auth tokens revoke`; re-read on change).
    pub revocations_file: Option<PathBuf>,
}

/// One entry of `robots:`: a long-lived credential with explicit scopes (the ACL is not
/// consulted for robots).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RobotSpec {
    /// bcrypt hash of the robot's secret.
    pub secret: Option<String>,
    /// File holding the bcrypt hash (instead of `secret`).
    pub secret_file: Option<PathBuf>,
    /// RFC 3339 time after which the robot is refused.
    pub expires: Option<String>,
    /// Scope patterns the robot may be granted, e.g. `repository:ci/**:pull,push`.
    #[serde(default)]
    pub scopes: Vec<String>,
}

/// `token.signing_header` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum SigningHeaderSpec {
    /// `kid` = libtrust key ID of the signing certificate's public key (registry 2.x).
    KidLibtrust,
    /// `x5c` = the certificate chain from `token.certificate`, leaf first.
    X5c,
    /// `kid` = RFC 7638 JWK thumbprint of the signing key (registry v3.1+).
    KidThumbprint,
}

/// One entry of `users:`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// bcrypt hash (`$2a$`, `$2b$` or `$2y$`). Required for every user but the anonymous `""`.
    pub password: Option<String>,
    /// Labels for ACL matching.
    #[serde(default)]
    pub labels: Labels,
}

/// One entry of `acl:`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AclEntrySpec {
    /// Conditions, all ANDed. `{}` matches everything.
    #[serde(rename = "match")]
    pub matches: MatchSpec,
    /// `["*"]` grants what was requested, a list is intersected with the request, `[]` denies.
    pub actions: Vec<String>,
    /// Free text, shown by `acl explain` and in logs when the entry decides.
    #[serde(default)]
    pub comment: Option<String>,
}

/// `match.source`: one source name or a list of them.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum SourceSpec {
    /// One source.
    One(String),
    /// Several sources.
    Many(Vec<String>),
}

impl SourceSpec {
    /// The names.
    pub fn names(&self) -> &[String] {
        match self {
            Self::One(s) => std::slice::from_ref(s),
            Self::Many(v) => v,
        }
    }
}

/// `match:` of an ACL entry. Each string is a glob (`*`, `?` do not cross `/`; `**` does) or a
/// `/regex/`, with placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Account (user name; `""` is anonymous).
    pub account: Option<String>,
    /// Resource type (`repository`, `registry`).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// Resource name (`alice/app`, `catalog`).
    pub name: Option<String>,
    /// The `service` the token is for.
    pub service: Option<String>,
    /// Client IP address or CIDR.
    pub ip: Option<String>,
    /// The source(s) of the principals this entry is for: `ldap_auth`, `github_auth`, `users`,
    /// … (one name or a list; compared exactly, never a pattern). Without it, the entry is for
    /// the principals whose name alone identifies them (docs/src/security/identity.md).
    pub source: Option<SourceSpec>,
    /// Label name → pattern; the user must have a matching value for every key.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}
