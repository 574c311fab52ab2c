//! The authenticator and authorizer chains: `authn_order`, `authz_order`, or docker_auth's
//! fixed order when they are not set.
use super::Loader;
use crate::authn;
use crate::authz::{CasbinAuthz, ExtAuthz, HttpAuthz, SqlAcl};
use crate::config::{AuthnBackend, AuthzBackend};

impl Loader {
    /// The authenticators in `authn_order`, or docker_auth's fixed order.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn authn_order(
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
    pub(super) fn authz_order(
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
}
