//! Users from the config file: the `users:` map (bcrypt hashes with labels) and `users_file`
//! (htpasswd `-B`). The anonymous user is the `""` entry of `users:`, as in docker_auth.

use std::collections::HashMap;

use super::{AuthnError, AuthnOutcome, Credentials, Identity, IdentityKind, Labels, verify_bcrypt};
use crate::token::refresh::credential_fingerprint;

/// One configured user.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// bcrypt hash (already checked for shape at load).
    pub hash: String,
    /// Labels for the ACL.
    pub labels: Labels,
}

/// The statically configured users.
#[derive(Debug, Clone, Default)]
pub struct StaticUsers {
    users: HashMap<String, UserRecord>,
    anonymous: Option<Labels>,
}

impl StaticUsers {
    /// Builds the user table. `anonymous` is `Some(labels)` when the `""` entry exists.
    pub fn new(users: HashMap<String, UserRecord>, anonymous: Option<Labels>) -> Self {
        Self { users, anonymous }
    }

    /// Number of named users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when there is no named user.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The users' names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    /// Whether anonymous access is enabled.
    pub fn allows_anonymous(&self) -> bool {
        self.anonymous.is_some()
    }

    /// The highest bcrypt cost among the users, used for the dummy hash that unknown users are
    /// checked against (so they cost the same as a known user with a wrong password).
    pub fn max_cost(&self) -> Option<u32> {
        self.users
            .values()
            .filter_map(|u| u.hash.get(4..6).and_then(|c| c.parse().ok()))
            .max()
    }

    /// Checks the credentials. An unknown user is `NoMatch` (the next backend may know them);
    /// a known user with a wrong or empty password is `WrongPassword`.
    pub fn authenticate(&self, creds: &Credentials) -> Result<AuthnOutcome, AuthnError> {
        if creds.is_anonymous() {
            return Ok(match (&self.anonymous, creds.password.is_empty()) {
                (Some(labels), true) => AuthnOutcome::Authenticated(Identity {
                    account: String::new(),
                    labels: labels.clone(),
                    kind: IdentityKind::Anonymous,
                    fingerprint: None,
                }),
                _ => AuthnOutcome::NoMatch,
            });
        }
        let Some((name, user)) = self.users.get_key_value(&creds.account) else {
            return Ok(AuthnOutcome::NoMatch);
        };
        // Always run bcrypt, even for an empty password, so every failure costs the same.
        let ok = verify_bcrypt(creds.password.expose(), &user.hash).map_err(|e| {
            AuthnError::Backend {
                backend: "users",
                message: format!("cannot verify the stored hash of a user: {e}"),
            }
        })?;
        Ok(if ok && !creds.password.is_empty() {
            AuthnOutcome::Authenticated(identity(name, user))
        } else {
            AuthnOutcome::WrongPassword
        })
    }

    /// The user's current identity (labels and credential fingerprint), or `None` when the user
    /// no longer exists.
    pub fn lookup(&self, account: &str) -> Option<Identity> {
        self.users
            .get_key_value(account)
            .map(|(name, user)| identity(name, user))
    }
}

fn identity(name: &str, user: &UserRecord) -> Identity {
    Identity {
        account: name.to_owned(),
        labels: user.labels.clone(),
        kind: IdentityKind::User,
        fingerprint: Some(credential_fingerprint(&user.hash)),
    }
}
