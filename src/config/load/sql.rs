//! Validating the SQL backends (`sql_auth`, `acl_sql`) and `casbin_authz`. Nothing connects
//! here: the databases are opened at first use, so `check-config` works without them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_yaml_ng::Value;

use super::Loader;
use crate::authn::{self, SqlAuth};
use crate::authz::{CasbinAuthz, SqlAcl};
use crate::config::file::{AclSqlSpec, CasbinSpec, SqlAuthSpec};
use crate::config::{AuthnBackend, AuthzBackend, ConfigIssue};
use crate::sql::{DEFAULT_MAX_CONNECTIONS, DEFAULT_TIMEOUT, SqlDb};

/// Default `acl_sql.cache_ttl`.
pub const DEFAULT_ACL_SQL_TTL: Duration = Duration::from_secs(30);

/// The keys handled here.
pub(super) const KEYS: &[&str] = &["sql_auth", "acl_sql", "casbin_authz"];

/// The sections as written (`Some(None)`: present but unreadable, already reported).
#[derive(Default)]
pub(super) struct SqlSections {
    sql_auth: Option<Option<SqlAuthSpec>>,
    acl_sql: Option<Option<AclSqlSpec>>,
    casbin: Option<Option<CasbinSpec>>,
}

impl SqlSections {
    /// An authenticator is configured (so `users` may be absent).
    pub(super) fn has_authn(&self) -> bool {
        self.sql_auth.is_some()
    }

    /// An authorizer is configured (so `acl` may be absent).
    pub(super) fn has_authz(&self) -> bool {
        self.acl_sql.is_some() || self.casbin.is_some()
    }
}

/// The validated backends; `Some(None)` when configured but invalid (already reported).
#[derive(Default)]
pub(super) struct SqlBackends {
    pub(super) sql_auth: Option<Option<SqlAuth>>,
    pub(super) acl_sql: Option<Option<SqlAcl>>,
    pub(super) casbin: Option<Option<CasbinAuthz>>,
}

/// The connection settings common to both SQL sections.
struct Connection<'a> {
    section: &'static str,
    url: Option<&'a str>,
    url_file: Option<&'a PathBuf>,
    max_connections: Option<u32>,
    timeout: Option<&'a String>,
}

impl Loader {
    /// One of [`KEYS`].
    pub(super) fn sql_section(&mut self, key: &str, value: Value, s: &mut SqlSections) {
        match key {
            "sql_auth" => s.sql_auth = Some(self.de(key, value)),
            "acl_sql" => s.acl_sql = Some(self.de(key, value)),
            _ => s.casbin = Some(self.de(key, value)),
        }
    }

    pub(super) fn validate_sql(&mut self, s: SqlSections) -> SqlBackends {
        let auth_db = s.sql_auth.map(|spec| {
            spec.and_then(|spec| {
                self.sql_db(&Connection {
                    section: "sql_auth",
                    url: spec.url.as_deref(),
                    url_file: spec.url_file.as_ref(),
                    max_connections: spec.max_connections,
                    timeout: spec.timeout.as_ref(),
                })
            })
        });
        let acl = s.acl_sql.map(|spec| {
            spec.and_then(|spec| {
                let db = self.sql_db(&Connection {
                    section: "acl_sql",
                    url: spec.url.as_deref(),
                    url_file: spec.url_file.as_ref(),
                    max_connections: spec.max_connections,
                    timeout: spec.timeout.as_ref(),
                });
                let ttl = match self.positive_duration(
                    "acl_sql.cache_ttl",
                    spec.cache_ttl,
                    DEFAULT_ACL_SQL_TTL,
                    "30s",
                ) {
                    Some(t) if t < Duration::from_secs(1) => {
                        self.issue(
                            "acl_sql.cache_ttl",
                            "re-reading the table more than once a second only loads the \
                             database; use at least `1s` (default `30s`)",
                        );
                        None
                    }
                    other => other,
                };
                Some((db?, ttl?))
            })
        });
        // The same database and settings in both sections: one pool.
        let acl_sql = acl.map(|a| {
            a.map(|(db, ttl)| {
                let db = match &auth_db {
                    Some(Some(auth)) if auth.same_as(&db) => auth.clone(),
                    _ => db,
                };
                SqlAcl::new(db, ttl)
            })
        });
        let sql_auth = auth_db.map(|db| db.map(SqlAuth::new));
        let casbin = s
            .casbin
            .map(|spec| spec.and_then(|spec| self.casbin(&spec)));
        SqlBackends {
            sql_auth,
            acl_sql,
            casbin,
        }
    }

    fn sql_db(&mut self, c: &Connection<'_>) -> Option<Arc<SqlDb>> {
        let section = c.section;
        let url = match (c.url, c.url_file) {
            (Some(u), None) => Some(u.trim().to_owned()),
            (None, Some(f)) => {
                let path = self.resolve(format!("{section}.url_file"), f);
                self.private(format!("{section}.url_file"), &path);
                match crate::config::sources::read_to_string(&path) {
                    Ok(text) if !text.trim().is_empty() => Some(text.trim().to_owned()),
                    Ok(_) => {
                        self.issue(
                            format!("{section}.url_file"),
                            format!("{} is empty; it must hold the database URL", path.display()),
                        );
                        None
                    }
                    Err(e) => {
                        self.issue(
                            format!("{section}.url_file"),
                            format!("cannot read {}: {e}", path.display()),
                        );
                        None
                    }
                }
            }
            (Some(_), Some(_)) => {
                self.issue(
                    format!("{section}.url"),
                    "give `url` or `url_file`, not both",
                );
                None
            }
            (None, None) => {
                self.issue(
                    format!("{section}.url"),
                    "missing; write e.g. `url: sqlite:registry-auth.db` or `url_file: \
                     /run/secrets/db-url` (a file holding `postgres://USER:PASSWORD@HOST/DB`)",
                );
                None
            }
        };
        let max_connections = match c.max_connections {
            Some(0) => {
                self.issue(
                    format!("{section}.max_connections"),
                    "0 connections cannot run a query; use at least 1 (default 4)",
                );
                None
            }
            other => Some(other.unwrap_or(DEFAULT_MAX_CONNECTIONS)),
        };
        let timeout = self.positive_duration(
            &format!("{section}.timeout"),
            c.timeout.cloned(),
            DEFAULT_TIMEOUT,
            "5s",
        );
        let key = if c.url_file.is_some() {
            format!("{section}.url_file")
        } else {
            format!("{section}.url")
        };
        if let Some(u) = url
            .as_deref()
            .filter(|u| u.starts_with("postgres://") || u.starts_with("postgresql://"))
        {
            self.warnings
                .extend(super::warnings::postgres_transport(&key, u));
        }
        // The URL is checked even when another setting is wrong: every problem at once.
        let db = match SqlDb::parse(
            &url?,
            &self.base,
            max_connections.unwrap_or(DEFAULT_MAX_CONNECTIONS),
            timeout.unwrap_or(DEFAULT_TIMEOUT),
        ) {
            Ok(db) => Some(Arc::new(db)),
            Err(message) => {
                self.issue(key, message);
                None
            }
        };
        max_connections?;
        timeout?;
        db
    }

    fn casbin(&mut self, spec: &CasbinSpec) -> Option<CasbinAuthz> {
        let model = self.resolve("casbin_authz.model_path", &spec.model_path);
        let policy = self.resolve("casbin_authz.policy_path", &spec.policy_path);
        match CasbinAuthz::load(&model, &policy) {
            Ok(c) => Some(c),
            Err((key, message)) => {
                self.issue(format!("casbin_authz.{key}"), message);
                None
            }
        }
    }
}

/// Most role names quoted in one warning.
const MAX_ROLES_SHOWN: usize = 10;

/// Casbin's role manager makes every account a member of the role with its own name
/// (`g(x, x)` holds), so an account named like a role gets that role. Warns about roles that are
/// static users, and about roles that other authentication sources could produce as account
/// names.
pub(super) fn casbin_role_warnings(
    authz_order: &[AuthzBackend],
    users: &authn::StaticUsers,
    authn_order: &[AuthnBackend],
) -> Vec<ConfigIssue> {
    let mut out = Vec::new();
    for backend in authz_order {
        let AuthzBackend::Casbin(casbin) = backend else {
            continue;
        };
        let roles: Vec<String> = casbin
            .role_names()
            .into_iter()
            .filter(|r| !r.is_empty())
            .collect();
        for role in &roles {
            if users.lookup(role).is_some() {
                out.push(ConfigIssue::new(
                    "casbin_authz.policy_path",
                    format!(
                        "the role {role:?} is also a user in `users`: Casbin makes every account \
                         a member of the role with its own name, so that user gets every \
                         permission of the role; rename the role (e.g. \"role:{role}\")"
                    ),
                ));
            }
        }
        let sources: Vec<&str> = authn_order
            .iter()
            .filter(|b| !matches!(b, AuthnBackend::Local))
            .map(AuthnBackend::name)
            .collect();
        if !roles.is_empty() && !sources.is_empty() {
            let mut shown: Vec<String> = roles
                .iter()
                .take(MAX_ROLES_SHOWN)
                .map(|r| format!("{r:?}"))
                .collect();
            if roles.len() > MAX_ROLES_SHOWN {
                shown.push(format!("and {} more", roles.len() - MAX_ROLES_SHOWN));
            }
            out.push(ConfigIssue::new(
                "casbin_authz.policy_path",
                format!(
                    "the roles {} (targets of `g` lines) could also be account names from {}: \
                     Casbin makes every account a member of the role with its own name, so an \
                     account named like a role gets that role's permissions; give roles names \
                     those sources cannot produce, or make sure they never do",
                    shown.join(", "),
                    sources.join(", ")
                ),
            ));
        }
    }
    out
}
