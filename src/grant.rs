//! A token request from end to end, without HTTP: authenticate the client, evaluate the ACL for
//! every requested scope, and sign a token carrying the granted subset.
//!
//! Denials are outcomes: bad credentials give [`GrantOutcome::Unauthorized`], a denied scope is a
//! grant with no actions. [`GrantError`] means the request could not be serviced (5xx).

use std::net::IpAddr;
use std::time::SystemTime;

use crate::authn::{self, AuthnOutcome, Credentials, Labels};
use crate::authz::{Acl, AclDecision, AuthzRequest};
use crate::token::{Grant, IssuedToken, Scope, TokenError, TokenIssuer};

/// What a client asked for.
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
}

/// The ACL's answer for one requested scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeDecision {
    /// The scope as requested (after merging duplicates).
    pub scope: Scope,
    /// Granted actions (sorted; empty = denied).
    pub granted: Vec<String>,
    /// Index of the ACL entry that decided, or `None` when no entry matched (denied).
    pub entry: Option<usize>,
}

/// The result of a token request.
#[derive(Debug)]
pub enum GrantOutcome {
    /// A token was issued (possibly with fewer actions than requested).
    Issued {
        /// The signed token.
        token: IssuedToken,
        /// Per-scope decisions, in request order.
        decisions: Vec<ScopeDecision>,
    },
    /// The credentials were not accepted (unknown user, wrong or empty password, anonymous
    /// access disabled). Deliberately carries no reason.
    Unauthorized,
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
}

/// Evaluates the ACL for each scope.
pub fn authorize_scopes(
    acl: &Acl,
    account: &str,
    labels: &Labels,
    service: &str,
    ip: Option<IpAddr>,
    scopes: &[Scope],
) -> Vec<ScopeDecision> {
    scopes
        .iter()
        .map(|scope| {
            let req = AuthzRequest {
                account,
                kind: &scope.kind,
                name: &scope.name,
                service,
                ip,
                labels,
                actions: &scope.actions,
            };
            match acl.authorize(&req) {
                AclDecision::Matched { entry, granted } => ScopeDecision {
                    scope: scope.clone(),
                    granted,
                    entry: Some(entry),
                },
                AclDecision::NoMatch => ScopeDecision {
                    scope: scope.clone(),
                    granted: Vec::new(),
                    entry: None,
                },
            }
        })
        .collect()
}

/// Handles a token request: authenticate, authorize, sign. CPU-bound (bcrypt, signing): call it
/// from a blocking thread.
pub fn grant(
    authn: &authn::Chain,
    acl: &Acl,
    issuer: &TokenIssuer,
    request: &TokenRequest,
    now: SystemTime,
) -> Result<GrantOutcome, GrantError> {
    let labels = match authn.authenticate(&request.credentials)? {
        AuthnOutcome::Authenticated(labels) => labels,
        AuthnOutcome::WrongPassword | AuthnOutcome::NoMatch => {
            return Ok(GrantOutcome::Unauthorized);
        }
    };
    let account = request.credentials.account.as_str();
    let decisions = authorize_scopes(
        acl,
        account,
        &labels,
        &request.service,
        request.ip,
        &request.scopes,
    );
    let access: Vec<Grant> = decisions
        .iter()
        .map(|d| Grant {
            kind: d.scope.kind.clone(),
            name: d.scope.name.clone(),
            actions: d.granted.clone(),
        })
        .collect();
    let token = issuer.issue(account, &request.service, &access, now)?;
    Ok(GrantOutcome::Issued { token, decisions })
}
