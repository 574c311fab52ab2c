//! A token request from end to end, without HTTP: authenticate the client (by password or by
//! refresh token), decide every requested scope (the ACL for users, their own scopes for robots),
//! and sign a token carrying the granted subset, plus a refresh token when offline access was
//! asked for and is enabled.
//!
//! Denials are outcomes: bad credentials or a bad refresh token give
//! [`GrantOutcome::Unauthorized`], a denied scope is a grant with no actions. [`GrantError`] means
//! the request could not be serviced (5xx).

use std::net::IpAddr;
use std::time::SystemTime;

use crate::authn::{self, AuthnOutcome, Credentials, Identity, IdentityKind, Labels, Secret};
use crate::authz::{Acl, AclDecision, AuthzRequest};
use crate::config::{AuthzBackend, Config};
use crate::token::refresh::RefreshError;
use crate::token::{Grant, IssuedToken, Scope, TokenError, TokenIssuer};

/// What a client asked for with its password (or anonymously).
#[derive(Debug, Clone)]
pub struct TokenRequest {
    /// The `service` (becomes `aud`).
    pub service: String,
    /// Requested scopes, parsed and merged.
    pub scopes: Vec<Scope>,
    /// Who the client says it is.
    pub credentials: Credentials,
    /// The client's IP address, for ACL `ip` rules.
    pub ip: Option<IpAddr>,
    /// Offline access was asked for (`offline_token=true`, `access_type=offline`).
    pub offline: bool,
}

/// What a client asked for with a refresh token.
#[derive(Debug, Clone)]
pub struct RefreshRequest {
    /// The refresh token.
    pub refresh_token: Secret,
    /// The `service`; must be the one the refresh token was issued for.
    pub service: String,
    /// Requested scopes.
    pub scopes: Vec<Scope>,
    /// The client's IP address.
    pub ip: Option<IpAddr>,
}

/// The decision for one requested scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDecision {
    /// The scope as requested (after merging duplicates).
    pub scope: Scope,
    /// Granted actions (sorted; empty = denied).
    pub granted: Vec<String>,
    /// Who decided.
    pub decided_by: DecidedBy,
}

/// Who decided a scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// The ACL entry with this index.
    AclEntry(usize),
    /// No ACL entry matched: denied by default.
    NoMatch,
    /// The robot's own scopes.
    RobotScopes,
    /// An external authorizer (by config name).
    External(&'static str),
    /// The `acl_sql` row with this `seq`.
    AclSqlRow(i64),
}

/// A refresh token handed out with an access token.
#[derive(Debug, Clone)]
pub struct IssuedRefresh {
    /// The token (a secret: never log it).
    pub token: Secret,
    /// Its id (loggable; used for revocation).
    pub id: String,
}

/// The result of a token request.
#[derive(Debug)]
pub enum GrantOutcome {
    /// A token was issued (possibly with fewer actions than requested).
    Issued {
        /// The principal's subject: its canonical account, or `source:account` when the name
        /// alone does not identify it (see [`crate::authn::principal`]). The token's `sub`.
        account: String,
        /// The source that vouched for the principal.
        source: &'static str,
        /// The principal's labels (for the audit line, which `acl replay` reads).
        labels: Labels,
        /// The signed token.
        token: IssuedToken,
        /// Per-scope decisions, in request order.
        decisions: Vec<ScopeDecision>,
        /// A refresh token, when offline access was asked for and is enabled.
        refresh: Option<IssuedRefresh>,
    },
    /// The credentials (or refresh token) were not accepted. The reason is for the log only.
    Unauthorized {
        /// Why, for the log (never contains a secret).
        reason: &'static str,
        /// The account presented (or the refresh token's subject, when it could be read), for
        /// the audit log.
        account: String,
        /// The refresh token's id, when one was presented and could be read.
        token_id: Option<String>,
    },
}

/// The request could not be serviced.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// An authentication backend failed.
    #[error(transparent)]
    Authn(#[from] authn::AuthnError),
    /// Signing failed.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// An external authorizer failed.
    #[error(transparent)]
    Authz(#[from] crate::authz::ExtAuthzError),
    /// An authorization webhook (`http_authz`) failed.
    #[error(transparent)]
    Webhook(#[from] crate::webhook::WebhookError),
    /// `acl_sql` or `casbin_authz` could not decide.
    #[error(transparent)]
    AuthzBackend(#[from] crate::authz::AuthzBackendError),
    /// The shared store (`store`, Redis or PostgreSQL) could not say whether a refresh token
    /// is revoked: refused with a 503 rather than risk accepting a revoked token.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// The synchronous entry point was used with a configuration that needs external
    /// authorizers (a programming error: use the async functions).
    #[error("this configuration has external authorizers; use the async grant functions")]
    NeedsAsync,
}

impl GrantError {
    /// Config name of the backend that failed, when a backend failed (for metrics).
    pub fn backend(&self) -> Option<&'static str> {
        match self {
            Self::Authn(e) => Some(e.backend()),
            Self::Authz(_) => Some("ext_authz"),
            Self::Webhook(e) => Some(e.name),
            Self::AuthzBackend(e) => Some(e.backend),
            Self::Store(_) => Some("store"),
            _ => None,
        }
    }
}

/// Evaluates the ACL for each scope (users and anonymous).
pub fn authorize_scopes(
    acl: &Acl,
    identity: &Identity,
    unqualified: bool,
    service: &str,
    ip: Option<IpAddr>,
    scopes: &[Scope],
) -> Vec<ScopeDecision> {
    scopes
        .iter()
        .map(|scope| {
            let req = AuthzRequest {
                account: &identity.account,
                source: identity.source(),
                unqualified,
                kind: &scope.kind,
                name: &scope.name,
                service,
                ip,
                labels: &identity.labels,
                actions: &scope.actions,
            };
            let (granted, decided_by) = match acl.authorize(&req) {
                AclDecision::Matched { entry, granted } => (granted, DecidedBy::AclEntry(entry)),
                AclDecision::NoMatch => (Vec::new(), DecidedBy::NoMatch),
            };
            ScopeDecision {
                scope: scope.clone(),
                granted,
                decided_by,
            }
        })
        .collect()
}

/// What `account` (with `labels`) would be granted, without authenticating: robots (an existing
/// `robot$NAME`) by their scopes, everyone else by the ACL. `source:account` (a federated
/// source) explains a principal of that source; a bare name, a user of the password sources.
/// For `acl explain`.
pub async fn explain(
    config: &Config,
    account: &str,
    labels: &Labels,
    service: &str,
    ip: Option<IpAddr>,
    scopes: &[Scope],
) -> Result<Vec<ScopeDecision>, GrantError> {
    let (source, name) = crate::authn::principal::parse_subject(account);
    let identity = match (source, config.authn.lookup(account, SystemTime::now())) {
        (
            None,
            Some(
                i @ Identity {
                    kind: IdentityKind::Robot(_),
                    ..
                },
            ),
        ) => i,
        (source, _) => Identity {
            account: name.to_owned(),
            labels: labels.clone(),
            kind: match source {
                Some(s) => IdentityKind::External(s),
                None if name.is_empty() => IdentityKind::Anonymous,
                None => IdentityKind::User,
            },
            fingerprint: None,
        },
    };
    decide(config, &identity, service, ip, scopes).await
}

/// Decides every scope for an authenticated identity: robots by their scopes, everyone else by
/// the authorizers in `authz_order` (the first that does not answer "no match" decides; none
/// matching is a denial).
async fn decide(
    config: &Config,
    identity: &Identity,
    service: &str,
    ip: Option<IpAddr>,
    scopes: &[Scope],
) -> Result<Vec<ScopeDecision>, GrantError> {
    if let Some(decisions) = decide_sync(config, identity, service, ip, scopes) {
        return Ok(decisions);
    }
    let unqualified = config
        .namespaces
        .unqualified(identity.source(), &identity.account);
    let mut decisions = Vec::with_capacity(scopes.len());
    for scope in scopes {
        let req = AuthzRequest {
            account: &identity.account,
            source: identity.source(),
            unqualified,
            kind: &scope.kind,
            name: &scope.name,
            service,
            ip,
            labels: &identity.labels,
            actions: &scope.actions,
        };
        let mut decided = (Vec::new(), DecidedBy::NoMatch);
        // External authorizers' futures are boxed: see `authn::cache` (`resolve`).
        for backend in &config.authz_order {
            match backend {
                AuthzBackend::Acl => {
                    if let AclDecision::Matched { entry, granted } = config.acl.authorize(&req) {
                        decided = (granted, DecidedBy::AclEntry(entry));
                        break;
                    }
                }
                AuthzBackend::Ext(ext) => {
                    if let Some(granted) = Box::pin(ext.authorize(&req)).await? {
                        decided = (granted, DecidedBy::External("ext_authz"));
                        break;
                    }
                }
                AuthzBackend::Http(http) => {
                    if let Some(granted) = Box::pin(http.authorize(&req)).await? {
                        decided = (granted, DecidedBy::External("http_authz"));
                        break;
                    }
                }
                AuthzBackend::Sql(sql) => {
                    if let Some((seq, granted)) = Box::pin(sql.authorize(&req)).await? {
                        decided = (granted, DecidedBy::AclSqlRow(seq));
                        break;
                    }
                }
                AuthzBackend::Casbin(casbin) => {
                    // Casbin always decides (docker_auth: it never answers "no match").
                    decided = (
                        Box::pin(casbin.authorize(&req)).await?,
                        DecidedBy::External("casbin_authz"),
                    );
                    break;
                }
            }
        }
        decisions.push(ScopeDecision {
            scope: scope.clone(),
            granted: decided.0,
            decided_by: decided.1,
        });
    }
    Ok(decisions)
}

/// The decisions when no external authorizer is involved (robots, or the ACL alone), without
/// awaiting; `None` when one is.
fn decide_sync(
    config: &Config,
    identity: &Identity,
    service: &str,
    ip: Option<IpAddr>,
    scopes: &[Scope],
) -> Option<Vec<ScopeDecision>> {
    Some(match &identity.kind {
        IdentityKind::Robot(name) => {
            let grants = config.robot_scopes.get(name);
            scopes
                .iter()
                .map(|scope| ScopeDecision {
                    scope: scope.clone(),
                    granted: grants
                        .map(|g| g.grant(&scope.kind, &scope.name, &scope.actions))
                        .unwrap_or_default(),
                    decided_by: DecidedBy::RobotScopes,
                })
                .collect()
        }
        IdentityKind::Anonymous | IdentityKind::User | IdentityKind::External(_) => {
            if !matches!(config.authz_order.as_slice(), [AuthzBackend::Acl]) {
                return None;
            }
            let unqualified = config
                .namespaces
                .unqualified(identity.source(), &identity.account);
            authorize_scopes(&config.acl, identity, unqualified, service, ip, scopes)
        }
    })
}

/// Signs a token for the decisions.
fn sign(
    issuer: &TokenIssuer,
    config: &Config,
    identity: &Identity,
    service: &str,
    decisions: Vec<ScopeDecision>,
    refresh: Option<IssuedRefresh>,
    now: SystemTime,
) -> Result<GrantOutcome, GrantError> {
    let access: Vec<Grant> = decisions
        .iter()
        .map(|d| Grant {
            kind: d.scope.kind.clone(),
            name: d.scope.name.clone(),
            actions: d.granted.clone(),
        })
        .collect();
    let subject = config
        .namespaces
        .subject(identity.source(), &identity.account);
    let token = issuer.issue(&subject, service, &access, now)?;
    Ok(GrantOutcome::Issued {
        account: subject.into_owned(),
        source: identity.source(),
        labels: identity.labels.clone(),
        token,
        decisions,
        refresh,
    })
}

/// Handles a password (or anonymous) token request synchronously, authenticating with the
/// local chain (bcrypt on the calling thread). For tests and tools on configurations without
/// external backends ([`GrantError::NeedsAsync`] otherwise); the server authenticates through
/// the cached [`authn::Authenticator`] and calls [`grant_authenticated`].
pub fn grant(
    config: &Config,
    issuer: &TokenIssuer,
    request: &TokenRequest,
    now: SystemTime,
) -> Result<GrantOutcome, GrantError> {
    let outcome = config.authn.authenticate(&request.credentials)?;
    let (identity, refresh) = match admit(config, request, outcome, now) {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    let decisions = decide_sync(
        config,
        &identity,
        &request.service,
        request.ip,
        &request.scopes,
    )
    .ok_or(GrantError::NeedsAsync)?;
    sign(
        issuer,
        config,
        &identity,
        &request.service,
        decisions,
        refresh,
        now,
    )
}

/// Finishes a password (or anonymous) token request once authentication has answered: decide
/// every scope and sign.
pub async fn grant_authenticated(
    config: &Config,
    issuer: &TokenIssuer,
    request: &TokenRequest,
    outcome: AuthnOutcome,
    now: SystemTime,
) -> Result<GrantOutcome, GrantError> {
    let (identity, refresh) = match admit(config, request, outcome, now) {
        Ok(admitted) => admitted,
        Err(refused) => return Ok(refused),
    };
    let decisions = decide(
        config,
        &identity,
        &request.service,
        request.ip,
        &request.scopes,
    )
    .await?;
    sign(
        issuer,
        config,
        &identity,
        &request.service,
        decisions,
        refresh,
        now,
    )
}

/// The identity of an authenticated request and its refresh token (when offline access was
/// asked for and is possible), or the refusal.
#[allow(clippy::result_large_err)]
fn admit(
    config: &Config,
    request: &TokenRequest,
    outcome: AuthnOutcome,
    now: SystemTime,
) -> Result<(Identity, Option<IssuedRefresh>), GrantOutcome> {
    let refused = |reason| GrantOutcome::Unauthorized {
        reason,
        account: request.credentials.account.clone(),
        token_id: None,
    };
    let identity = match outcome {
        // A password source's account spelled like a qualified subject (`github_auth:alice`)
        // would be mistaken for that principal by whoever reads subjects: never such a name.
        AuthnOutcome::Authenticated(identity)
            if !crate::authn::principal::is_federated(identity.source())
                && crate::authn::principal::parse_subject(&identity.account)
                    .0
                    .is_some() =>
        {
            return Err(refused(
                "the account name is reserved for a federated source",
            ));
        }
        AuthnOutcome::Authenticated(identity) => identity,
        AuthnOutcome::WrongPassword => {
            // Robots that expired also land here: say so in the log.
            return Err(refused(
                match config.authn.lookup(&request.credentials.account, now) {
                    None if request.credentials.account.starts_with(authn::ROBOT_PREFIX) => {
                        "robot expired or wrong secret"
                    }
                    _ => "wrong password",
                },
            ));
        }
        AuthnOutcome::NoMatch => {
            return Err(refused(if request.credentials.is_anonymous() {
                "anonymous access is not enabled"
            } else {
                "unknown user"
            }));
        }
    };
    let refresh = match (
        &config.token.refresh,
        &identity.fingerprint,
        request.offline,
    ) {
        (Some(r), Some(fp), true) => {
            let subject = config
                .namespaces
                .subject(identity.source(), &identity.account);
            let (token, claims) = r.codec.issue(&subject, &request.service, fp, now);
            Some(IssuedRefresh {
                token: Secret::new(token),
                id: claims.id,
            })
        }
        _ => None,
    };
    Ok((identity, refresh))
}

/// Handles `grant_type=refresh_token`: the token must be authentic, unexpired, for this
/// service and not revoked (neither in `revocations_file` nor in a shared `store`), and its subject must still exist with the same credential. The
/// subject's current labels and the current ACL (or robot scopes) apply. No new refresh token is
/// issued.
pub async fn grant_refresh(
    config: &Config,
    issuer: &TokenIssuer,
    authenticator: &authn::Authenticator,
    request: &RefreshRequest,
    now: SystemTime,
) -> Result<(GrantOutcome, Option<String>), GrantError> {
    let unauthorized = |reason| {
        let token = request.refresh_token.expose();
        Ok((
            GrantOutcome::Unauthorized {
                reason,
                account: String::new(),
                token_id: crate::token::refresh::unverified_token_id(token),
            },
            None,
        ))
    };
    let Some(refresh) = &config.token.refresh else {
        return unauthorized("refresh tokens are not enabled");
    };
    let claims = match refresh
        .codec
        .verify(request.refresh_token.expose(), &request.service, now)
    {
        Ok(c) => c,
        Err(RefreshError::Expired) => return unauthorized("refresh token expired"),
        Err(RefreshError::WrongService) => {
            return unauthorized("refresh token issued for another service");
        }
        Err(RefreshError::Invalid | RefreshError::Revoked) => {
            return unauthorized("invalid refresh token");
        }
    };
    let (mut revoked, reload_problem) = refresh.revocations.check(&claims);
    // Both sources apply: the file (a GitOps list) and the shared store. A store that cannot
    // answer fails the grant (503): a token that may have been revoked is never accepted.
    if !revoked && let Some(shared) = &config.shared_state {
        revoked = shared
            .store()
            .refresh_revoked(&claims.id, &claims.sub, claims.iat)
            .await?;
    }
    if revoked {
        return Ok((
            GrantOutcome::Unauthorized {
                reason: "refresh token revoked",
                account: claims.sub.clone(),
                token_id: Some(claims.id),
            },
            reload_problem,
        ));
    }
    let (_, sub_account) = crate::authn::principal::parse_subject(&claims.sub);
    let found = authenticator
        .lookup_credential(sub_account, &claims.fp, now)
        .await?;
    // The principal found must be the one the token names, source included (a configuration
    // change can make a name qualified, or give it to another source).
    let found = found.filter(|i| config.namespaces.subject(i.source(), &i.account) == claims.sub);
    let Some(identity) = found else {
        return Ok((
            GrantOutcome::Unauthorized {
                reason: "the refresh token's user no longer exists",
                account: claims.sub.clone(),
                token_id: Some(claims.id),
            },
            reload_problem,
        ));
    };
    if identity.fingerprint.as_deref() != Some(claims.fp.as_str()) {
        return Ok((
            GrantOutcome::Unauthorized {
                reason: "the refresh token's user changed their password",
                account: claims.sub.clone(),
                token_id: Some(claims.id),
            },
            reload_problem,
        ));
    }
    let decisions = decide(
        config,
        &identity,
        &request.service,
        request.ip,
        &request.scopes,
    )
    .await?;
    let outcome = sign(
        issuer,
        config,
        &identity,
        &request.service,
        decisions,
        None,
        now,
    )?;
    Ok((outcome, reload_problem))
}

#[cfg(test)]
mod tests;
