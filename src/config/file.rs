//! The YAML shape of the configuration file, one struct per section, mirroring docker_auth's
//! layout. Every struct denies unknown keys so a typo is an error instead of a silently ignored
//! setting (docker_auth issue #326). Validation and conversion into the runtime
//! [`Config`](super::Config) happen in `super::validate`.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::authn::Labels;

/// `server:`: where to listen.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSpec {
    /// `host:port` to listen on (default `127.0.0.1:5001`). `--listen` overrides it.
    pub addr: Option<String>,
    /// Prefix for every route, e.g. `/registry-auth` (default none). Must start with `/`.
    pub path_prefix: Option<String>,
    /// Most bcrypt verifications running at once (default: one less than the CPU count, at
    /// least 1), so a storm of wrong passwords cannot starve other requests.
    pub bcrypt_workers: Option<usize>,
    /// Request size and time limits.
    pub limits: Option<LimitsSpec>,
}

/// `server.limits`: request size and time limits (all optional, safe defaults).
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialCacheSpec {
    /// How long a verified credential is remembered, e.g. `5m` (default); `0s` disables.
    pub ttl: Option<String>,
    /// Most entries kept (default 10000).
    pub max_entries: Option<u64>,
}

/// `token:`: how tokens are signed and for how long they live.
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
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
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSpec {
    /// bcrypt hash (`$2a$`, `$2b$` or `$2y$`). Required for every user but the anonymous `""`.
    pub password: Option<String>,
    /// Labels for ACL matching.
    #[serde(default)]
    pub labels: Labels,
}

/// One entry of `acl:`.
#[derive(Debug, Clone, Default, Deserialize)]
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

/// `match:` of an ACL entry. Each string is a glob (`*`, `?` do not cross `/`; `**` does) or a
/// `/regex/`, with placeholders.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
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
    /// Label name → pattern; the user must have a matching value for every key.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}
