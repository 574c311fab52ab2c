//! ACL as code: deciding token requests offline, for `acl test`, `acl replay` and `acl diff`.
//!
//! * [`Offline`] decides a principal's scopes under a configuration exactly as the token
//!   endpoint does (robots by their scopes; everyone else by the authorizers in `authz_order`,
//!   the first that does not answer "no match" deciding), for every authorizer that can be
//!   evaluated without running somebody else's code: the static ACL, `acl_sql` (its rows, read
//!   once from its database) and Casbin. When the decision would fall to `ext_authz` (an
//!   external program) or `http_authz` (a webhook), the verdict is [`Verdict::External`]: those
//!   are never run, since they may have side effects, need secrets or answer differently
//!   offline.
//! * [`cases`]: the `acl test` file format and its evaluation.
//! * [`audit`]: the audit line format (version [`audit::AUDIT_VERSION`]), written by the server
//!   and read back by `acl replay`.
//! * [`replay`]: re-deciding recorded token requests under another configuration.
//! * [`diff`]: the symbolic comparison of two static ACLs.
//!
//! Everything here is pure (no HTTP, no terminal); the commands in `commands/acl*.rs` do the
//! I/O.

pub mod audit;
pub mod cases;
pub mod diff;
pub mod generate;
pub mod replay;
mod sample;

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use crate::authn::{Labels, ROBOT_PREFIX};
use crate::authz::{AclDecision, AclSnapshot, AuthzBackendError, AuthzRequest};
use crate::config::{AuthzBackend, Config};
use crate::token::Scope;

/// Who decided one scope, as the audit line names it (`acl 2`, `no match`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Decider {
    /// The static ACL's entry with this index.
    Acl(usize),
    /// The `acl_sql` row with this `seq`.
    AclSql(i64),
    /// No authorizer matched: denied by default.
    NoMatch,
    /// The robot's own scopes.
    RobotScopes,
    /// A robot this configuration does not have (it could not log in).
    UnknownRobot,
    /// Another authorizer, by config name (`casbin_authz`, `ext_authz`, `http_authz`).
    Other(String),
}

impl Decider {
    /// From the audit line's tag (the text between `[` and `]`).
    pub fn parse(tag: &str) -> Option<Self> {
        Some(match tag {
            "no match" => Self::NoMatch,
            "robot scopes" => Self::RobotScopes,
            "unknown robot" => Self::UnknownRobot,
            _ => {
                if let Some(i) = tag.strip_prefix("acl ") {
                    Self::Acl(i.parse().ok()?)
                } else if let Some(seq) = tag.strip_prefix("acl_sql seq ") {
                    Self::AclSql(seq.parse().ok()?)
                } else if !tag.is_empty()
                    && tag.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                {
                    Self::Other(tag.to_owned())
                } else {
                    return None;
                }
            }
        })
    }

    /// From the grant's decision.
    pub fn from_grant(d: crate::grant::DecidedBy) -> Self {
        use crate::grant::DecidedBy;
        match d {
            DecidedBy::AclEntry(i) => Self::Acl(i),
            DecidedBy::NoMatch => Self::NoMatch,
            DecidedBy::RobotScopes => Self::RobotScopes,
            DecidedBy::External(name) => Self::Other(name.to_owned()),
            DecidedBy::AclSqlRow(seq) => Self::AclSql(seq),
        }
    }
}

/// The audit line's tag: `acl 2`, `acl_sql seq 7`, `no match`, `robot scopes`, `casbin_authz`.
impl fmt::Display for Decider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Acl(i) => write!(f, "acl {i}"),
            Self::AclSql(seq) => write!(f, "acl_sql seq {seq}"),
            Self::NoMatch => f.write_str("no match"),
            Self::RobotScopes => f.write_str("robot scopes"),
            Self::UnknownRobot => f.write_str("unknown robot"),
            Self::Other(name) => f.write_str(name),
        }
    }
}

/// A principal as a login produces it: its source, canonical account and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The source's config name (`users`, `ldap_auth`, `github_auth`, …).
    pub source: &'static str,
    /// The canonical account in that source (`""` for anonymous, `robot$NAME` for a robot).
    pub account: String,
    /// The labels the login attached.
    pub labels: Labels,
}

/// The source's `&'static` name, when it is one.
pub fn source_name(source: &str) -> Option<&'static str> {
    crate::authn::principal::SOURCES
        .iter()
        .copied()
        .find(|s| *s == source)
}

/// What the token endpoint would grant for one scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Decided offline: the granted actions (sorted; empty = denied) and who decided.
    Decided {
        /// Granted actions.
        granted: Vec<String>,
        /// Who decided.
        by: Decider,
    },
    /// The decision falls to an authorizer that runs somebody else's code (`ext_authz`,
    /// `http_authz`), which is not run offline.
    External(&'static str),
}

/// Why a verdict is [`Verdict::External`], for the reports.
pub fn external_reason(backend: &str) -> String {
    let what = match backend {
        "ext_authz" => "an external program",
        "http_authz" => "a webhook",
        _ => "an external authorizer",
    };
    format!(
        "no earlier authorizer decides, so {backend} ({what}) would; it is not run offline (it may \
         have side effects, need credentials, or answer otherwise outside the server)"
    )
}

/// A configuration's authorizers, ready to decide offline.
#[derive(Debug, Clone)]
pub struct Offline {
    config: Arc<Config>,
    /// The `acl_sql` rows, read once.
    sql: Option<Arc<AclSnapshot>>,
}

impl Offline {
    /// Reads what deciding needs (the `acl_sql` rows, when configured).
    pub async fn new(config: Arc<Config>) -> Result<Self, AuthzBackendError> {
        let mut sql = None;
        for backend in &config.authz_order {
            if let AuthzBackend::Sql(s) = backend {
                sql = Some(s.reload().await?);
            }
        }
        Ok(Self { config, sql })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// True when every decision can be made without awaiting (no Casbin).
    pub fn is_sync(&self) -> bool {
        !self
            .config
            .authz_order
            .iter()
            .any(|b| matches!(b, AuthzBackend::Casbin(_)))
    }

    /// Decides one scope for `who`; `None` from [`Offline::decide_sync`] only needs Casbin.
    pub async fn decide(
        &self,
        who: &Principal,
        service: &str,
        ip: Option<IpAddr>,
        scope: &Scope,
    ) -> Result<Verdict, AuthzBackendError> {
        match self.step(who, service, ip, scope) {
            Step::Done(v) => Ok(v),
            Step::Casbin(i) => {
                let AuthzBackend::Casbin(casbin) = &self.config.authz_order[i] else {
                    unreachable!("step returns the index of a Casbin backend");
                };
                let unqualified = self.unqualified(who);
                let req = request(who, unqualified, service, ip, scope);
                Ok(Verdict::Decided {
                    granted: casbin.authorize(&req).await?,
                    by: Decider::Other("casbin_authz".to_owned()),
                })
            }
        }
    }

    /// Decides one scope without awaiting; `None` when Casbin has to be asked.
    pub fn decide_sync(
        &self,
        who: &Principal,
        service: &str,
        ip: Option<IpAddr>,
        scope: &Scope,
    ) -> Option<Verdict> {
        match self.step(who, service, ip, scope) {
            Step::Done(v) => Some(v),
            Step::Casbin(_) => None,
        }
    }

    fn unqualified(&self, who: &Principal) -> bool {
        self.config.namespaces.unqualified(who.source, &who.account)
    }

    fn step(&self, who: &Principal, service: &str, ip: Option<IpAddr>, scope: &Scope) -> Step {
        if who.source == "robots" {
            let name = who
                .account
                .strip_prefix(ROBOT_PREFIX)
                .unwrap_or(&who.account);
            return Step::Done(match self.config.robot_scopes.get(name) {
                Some(g) => Verdict::Decided {
                    granted: g.grant(&scope.kind, &scope.name, &scope.actions),
                    by: Decider::RobotScopes,
                },
                None => Verdict::Decided {
                    granted: Vec::new(),
                    by: Decider::UnknownRobot,
                },
            });
        }
        let req = request(who, self.unqualified(who), service, ip, scope);
        for (i, backend) in self.config.authz_order.iter().enumerate() {
            match backend {
                AuthzBackend::Acl => {
                    if let AclDecision::Matched { entry, granted } = self.config.acl.authorize(&req)
                    {
                        return Step::Done(Verdict::Decided {
                            granted,
                            by: Decider::Acl(entry),
                        });
                    }
                }
                AuthzBackend::Sql(_) => {
                    if let Some(snapshot) = &self.sql
                        && let AclDecision::Matched { entry, granted } =
                            snapshot.acl().authorize(&req)
                        && let Some((seq, _)) = snapshot.rows().get(entry)
                    {
                        return Step::Done(Verdict::Decided {
                            granted,
                            by: Decider::AclSql(*seq),
                        });
                    }
                }
                AuthzBackend::Casbin(_) => return Step::Casbin(i),
                AuthzBackend::Ext(_) | AuthzBackend::Http(_) => {
                    return Step::Done(Verdict::External(backend.name()));
                }
            }
        }
        Step::Done(Verdict::Decided {
            granted: Vec::new(),
            by: Decider::NoMatch,
        })
    }

    /// The decider named the way `acl explain` names it: `acl[2]: match {…} actions […]`,
    /// `acl_sql row seq=7: …`, `no ACL entry matched (denied by default)`.
    pub fn describe(&self, d: &Decider) -> String {
        match d {
            Decider::Acl(i) => match self.config.acl_entries.get(*i) {
                Some(e) => format!("acl[{i}]: {}", crate::config::describe_acl_entry(e)),
                None => format!("acl[{i}]"),
            },
            Decider::AclSql(seq) => match self.sql.as_ref().and_then(|s| s.entry(*seq)) {
                Some(e) => format!(
                    "acl_sql row seq={seq}: {}",
                    crate::config::describe_acl_entry(e)
                ),
                None => format!("acl_sql row seq={seq}"),
            },
            Decider::NoMatch => "no ACL entry matched (denied by default)".to_owned(),
            Decider::RobotScopes => "the robot's own scopes".to_owned(),
            Decider::UnknownRobot => "no such robot in this configuration".to_owned(),
            Decider::Other(name) => name.clone(),
        }
    }
}

enum Step {
    Done(Verdict),
    /// Ask the Casbin authorizer at this index of `authz_order`.
    Casbin(usize),
}

fn request<'a>(
    who: &'a Principal,
    unqualified: bool,
    service: &'a str,
    ip: Option<IpAddr>,
    scope: &'a Scope,
) -> AuthzRequest<'a> {
    AuthzRequest {
        account: &who.account,
        source: who.source,
        unqualified,
        kind: &scope.kind,
        name: &scope.name,
        service,
        ip,
        labels: &who.labels,
        actions: &scope.actions,
    }
}

#[cfg(test)]
mod tests;
