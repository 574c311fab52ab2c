//! Authentication: who is the client? Pure (no HTTP), synchronous and CPU-bound (bcrypt), so the
//! server runs it on a blocking thread.
//!
//! Backends answer with an [`AuthnOutcome`]: `Authenticated` (with labels), `WrongPassword` (stops
//! the chain: the user exists and the password is wrong) or `NoMatch` (this backend does not know
//! the user; ask the next). An [`AuthnError`] means the backend could not answer at all and becomes
//! a 5xx. These are docker_auth's chain semantics.

mod bcrypt_hash;
mod cache;
pub mod ci_oidc;
mod credentials;
mod ext_auth;
pub mod htpasswd;
mod http_auth;
pub mod ldap;
pub mod principal;
mod robots;
mod sql_auth;
mod static_users;

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

pub use bcrypt_hash::{BcryptHashError, check_bcrypt_hash};
pub use cache::{Authenticator, AuthnAnswer, CacheSettings, CacheStats};
pub use credentials::{AuthnContext, Credentials, Labels, Secret, fold_account};
pub use ext_auth::ExtAuth;
pub use http_auth::{HttpAuth, Verdict};
pub use ldap::LdapAuth;
pub use robots::{ROBOT_PREFIX, RobotRecord, Robots, is_valid_robot_name};
pub use sql_auth::{SqlAuth, parse_labels};
pub use static_users::{StaticUsers, UserRecord};

/// Who an authenticated client is: one principal, named by its source ([`Identity::source`],
/// the backend or provider that vouched for it) and its canonical `account` there. The account
/// is the source's own spelling (the directory's attribute value, the SQL row's `name`, the
/// provider's login), never the string the client typed, so every later use (ACL, token `sub`,
/// refresh tokens, revocation, audit) sees one name per principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The canonical account name in its source (`""` for anonymous; `robot$NAME` for robots).
    pub account: String,
    /// Labels for the ACL.
    pub labels: Labels,
    /// What kind of principal.
    pub kind: IdentityKind,
    /// Fingerprint of the credential checked, for refresh tokens (a password change invalidates
    /// them). `None` when no refresh token may be issued (anonymous).
    pub fingerprint: Option<String>,
}

impl Identity {
    /// The config name of the source that vouched for this principal: `anonymous`, `users`
    /// (`users` and `users_file`), `robots`, or an external backend's key (`ldap_auth`,
    /// `sql_auth`, `ext_auth`, `http_auth`, `github_auth`, `gitlab_auth`, `google_auth`,
    /// `oidc_auth`, `oidc_tokens`).
    pub fn source(&self) -> &'static str {
        self.kind.source()
    }
}

/// The kinds of principal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentityKind {
    /// No credentials; the `""` user.
    Anonymous,
    /// A user from `users` or `users_file`; the ACL decides.
    User,
    /// A robot (by name, without the `robot$` prefix); its own scopes decide.
    Robot(String),
    /// A user vouched for by an external backend (named); the ACL decides. Refresh tokens only
    /// when the backend gives a fingerprint and can re-check the account without its password
    /// (`ldap_auth` with a service account, `sql_auth`); never for `ext_auth` or `http_auth`.
    External(&'static str),
}

impl IdentityKind {
    /// The source's config name (see [`Identity::source`]).
    pub fn source(&self) -> &'static str {
        match self {
            Self::Anonymous => "anonymous",
            Self::User => "users",
            Self::Robot(_) => "robots",
            Self::External(name) => name,
        }
    }
}

/// The decision of one authenticator (or of the whole chain).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthnOutcome {
    /// The credentials are valid.
    Authenticated(Identity),
    /// The user is known and the password is wrong. Stops the chain.
    WrongPassword,
    /// Unknown to this backend; the next one is asked. At the end of the chain it is a denial.
    NoMatch,
}

/// A backend could not answer (not a denial). Becomes a 5xx; details go to the log only.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AuthnError {
    /// The named backend failed.
    #[error("authentication backend `{backend}` failed: {message}")]
    Backend {
        /// Config key of the backend.
        backend: &'static str,
        /// What went wrong (never contains a secret).
        message: String,
    },
}

impl AuthnError {
    /// Config name of the backend that failed.
    pub fn backend(&self) -> &'static str {
        match self {
            Self::Backend { backend, .. } => backend,
        }
    }
}

/// The account an external program or webhook vouched for: the name it returned (`account` in
/// its answer: its own canonical spelling, when it matches names loosely), else the typed one.
/// Anonymous stays `""`. A returned name must be a usable account name.
pub(crate) fn vouched_account(
    backend: &'static str,
    typed: &str,
    returned: Option<String>,
) -> Result<String, AuthnError> {
    let Some(name) = returned.filter(|_| !typed.is_empty()) else {
        return Ok(typed.to_owned());
    };
    let problem = if name.is_empty() {
        Some("is empty")
    } else if name.len() > 256 {
        Some("is longer than 256 bytes")
    } else if name.chars().any(char::is_control) {
        Some("contains a control character")
    } else if name.starts_with(ROBOT_PREFIX) {
        Some("starts with `robot$`, which names robot accounts")
    } else {
        None
    };
    match problem {
        Some(p) => Err(AuthnError::Backend {
            backend,
            message: format!("the answer's `account` {p}"),
        }),
        None => Ok(name),
    }
}

static BCRYPT_VERIFICATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static THREAD_BCRYPT_VERIFICATIONS: Cell<u64> = const { Cell::new(0) };
}

/// How many bcrypt verifications this process has run (a metric).
pub fn bcrypt_verifications() -> u64 {
    BCRYPT_VERIFICATIONS.load(Ordering::Relaxed)
}

/// How many bcrypt verifications the calling thread has run: a test hook that proves, without
/// timing, that an unknown user costs exactly as much as a wrong password.
pub fn bcrypt_verifications_on_this_thread() -> u64 {
    THREAD_BCRYPT_VERIFICATIONS.with(Cell::get)
}

fn verify_bcrypt(password: &str, hash: &str) -> Result<bool, bcrypt::BcryptError> {
    BCRYPT_VERIFICATIONS.fetch_add(1, Ordering::Relaxed);
    THREAD_BCRYPT_VERIFICATIONS.with(|c| c.set(c.get() + 1));
    bcrypt::verify(password, hash)
}

/// The authenticators in docker_auth's fixed order (today: robots, then the static users).
#[derive(Debug)]
pub struct Chain {
    robots: Robots,
    users: StaticUsers,
    /// Hash of a random password at the users' highest cost: an unknown user is verified against
    /// it so that it costs one bcrypt, like a known user with a wrong password.
    dummy_hash: String,
    /// bcrypt verifications run by this chain (a test hook and a metric).
    bcrypt_runs: AtomicU64,
}

impl Chain {
    /// Builds the chain. Computes the dummy hash (one bcrypt run at the users' highest cost).
    pub fn new(users: StaticUsers, robots: Robots) -> Result<Self, AuthnError> {
        // With no named user any cost will do; 10 is what `hash-password` uses by default.
        let cost = users
            .max_cost()
            .into_iter()
            .chain(robots.max_cost())
            .max()
            .unwrap_or(10);
        let random: [u8; 16] = rand::random();
        let dummy_hash = bcrypt::hash(random, cost).map_err(|e| AuthnError::Backend {
            backend: "users",
            message: format!("cannot create the dummy hash: {e}"),
        })?;
        Ok(Self {
            robots,
            users,
            dummy_hash,
            bcrypt_runs: AtomicU64::new(0),
        })
    }

    /// The bcrypt cost of the dummy hash an unknown user is checked against.
    pub fn dummy_cost(&self) -> Option<u32> {
        self.dummy_hash.get(4..6).and_then(|c| c.parse().ok())
    }

    /// The static users.
    pub fn users(&self) -> &StaticUsers {
        &self.users
    }

    /// The robots.
    pub fn robots(&self) -> &Robots {
        &self.robots
    }

    /// The current identity of `account` without a password, for re-checking a refresh token:
    /// `None` when the account is gone (or the robot expired), so the token is refused.
    pub fn lookup(&self, account: &str, now: std::time::SystemTime) -> Option<Identity> {
        if account.starts_with(ROBOT_PREFIX) {
            self.robots.lookup(account, now)
        } else {
            self.users.lookup(account)
        }
    }

    /// Runs the chain: the first backend that does not answer `NoMatch` decides. When nobody
    /// matched a named user, one bcrypt verification against the dummy hash is run so that an
    /// unknown user and a wrong password cannot be told apart by timing.
    pub fn authenticate(&self, creds: &Credentials) -> Result<AuthnOutcome, AuthnError> {
        let before = bcrypt_verifications_on_this_thread();
        let result = self.authenticate_inner(creds);
        self.bcrypt_runs.fetch_add(
            bcrypt_verifications_on_this_thread() - before,
            Ordering::Relaxed,
        );
        result
    }

    /// How many bcrypt verifications this chain has run.
    pub fn bcrypt_runs(&self) -> u64 {
        self.bcrypt_runs.load(Ordering::Relaxed)
    }

    /// Robots and static users only, without the dummy check for unknown users (the caller
    /// runs [`Chain::dummy_verify`] once no backend knew the user).
    pub fn authenticate_local(&self, creds: &Credentials) -> Result<AuthnOutcome, AuthnError> {
        let before = bcrypt_verifications_on_this_thread();
        let result = self.local(creds);
        self.bcrypt_runs.fetch_add(
            bcrypt_verifications_on_this_thread() - before,
            Ordering::Relaxed,
        );
        result
    }

    /// One bcrypt against the dummy hash: the work an unknown user costs.
    pub fn dummy_verify(&self, creds: &Credentials) {
        let _ = verify_bcrypt(creds.password.expose(), &self.dummy_hash);
        self.bcrypt_runs.fetch_add(1, Ordering::Relaxed);
    }

    fn local(&self, creds: &Credentials) -> Result<AuthnOutcome, AuthnError> {
        match self
            .robots
            .authenticate(creds, std::time::SystemTime::now())?
        {
            AuthnOutcome::NoMatch => self.users.authenticate(creds),
            decided => Ok(decided),
        }
    }

    fn authenticate_inner(&self, creds: &Credentials) -> Result<AuthnOutcome, AuthnError> {
        match self.local(creds)? {
            AuthnOutcome::NoMatch if !creds.is_anonymous() => {
                // The result is irrelevant; only the work matters.
                let _ = verify_bcrypt(creds.password.expose(), &self.dummy_hash);
                Ok(AuthnOutcome::NoMatch)
            }
            outcome => Ok(outcome),
        }
    }
}

#[cfg(test)]
mod tests;
