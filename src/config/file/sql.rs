//! The YAML shape of the SQL backends (`sql_auth`, `acl_sql`) and of `casbin_authz`.

use std::path::PathBuf;

use serde::Deserialize;

/// `sql_auth:`: users in a PostgreSQL or SQLite database (table `registry_auth_users`, created by
/// the shipped migrations; manage it with `registry-auth users …`).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlAuthSpec {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full]` or
    /// `sqlite:PATH` (relative to the config folder; created when missing). Never logged with
    /// its password.
    pub url: Option<String>,
    /// A file holding the URL instead of `url` (it may contain a password); trimmed.
    pub url_file: Option<PathBuf>,
    /// Most connections to the database (default 4).
    pub max_connections: Option<u32>,
    /// Time allowed for connecting and for each query, e.g. `5s` (default).
    pub timeout: Option<String>,
}

/// `acl_sql:`: ACL entries in a PostgreSQL or SQLite database (table `registry_auth_acl`:
/// `seq`, `entry` = one `acl` entry as JSON), evaluated in `seq` order after the static `acl`.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AclSqlSpec {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full]` or
    /// `sqlite:PATH` (relative to the config folder; created when missing). Never logged with
    /// its password.
    pub url: Option<String>,
    /// A file holding the URL instead of `url` (it may contain a password); trimmed.
    pub url_file: Option<PathBuf>,
    /// Most connections to the database (default 4).
    pub max_connections: Option<u32>,
    /// Time allowed for connecting and for each query, e.g. `5s` (default).
    pub timeout: Option<String>,
    /// How often the table is re-read, e.g. `30s` (default; at least `1s`). A failed read or a
    /// broken row keeps the previous ACL.
    pub cache_ttl: Option<String>,
}

/// `casbin_authz:`: a Casbin model and policy decide each requested action (docker_auth's
/// request `account, type, name, service, ip, action, labels`).
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CasbinSpec {
    /// The model (`.conf`), relative to the config folder.
    pub model_path: PathBuf,
    /// The policy (CSV), relative to the config folder.
    pub policy_path: PathBuf,
}
