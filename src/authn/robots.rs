//! Robot accounts: long-lived credentials for CI and deploy machines (`robots:` in the config).
//!
//! A robot logs in with Basic auth as `robot$NAME` and its secret. It expires at a fixed time.
//! What it may do is not decided by the ACL but by its own list of scopes (see
//! [`crate::authz::ScopeGrants`]): robots are explicit grants.

use std::collections::HashMap;
use std::time::SystemTime;

use super::{AuthnError, AuthnOutcome, Credentials, Identity, IdentityKind, Labels, verify_bcrypt};
use crate::token::refresh::credential_fingerprint;

/// The user-name prefix robots log in with.
pub const ROBOT_PREFIX: &str = "robot$";

/// Robot names: lower-case letters, digits, `.`, `_`, `-`, starting with a letter or digit.
pub fn is_valid_robot_name(name: &str) -> bool {
    name.bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        })
}

/// One configured robot.
#[derive(Debug, Clone)]
pub struct RobotRecord {
    /// bcrypt hash of the secret.
    pub hash: String,
    /// When the robot stops working; `None` = never.
    pub expires: Option<SystemTime>,
}

/// The configured robots, by name (without the prefix).
#[derive(Debug, Clone, Default)]
pub struct Robots {
    robots: HashMap<String, RobotRecord>,
}

impl Robots {
    /// Builds the table.
    pub fn new(robots: HashMap<String, RobotRecord>) -> Self {
        Self { robots }
    }

    /// Number of robots.
    pub fn len(&self) -> usize {
        self.robots.len()
    }

    /// True when there is no robot.
    pub fn is_empty(&self) -> bool {
        self.robots.is_empty()
    }

    /// Each robot's name (without the prefix) and the bcrypt cost of its secret.
    pub fn costs(&self) -> impl Iterator<Item = (&str, u32)> {
        self.robots.iter().filter_map(|(name, r)| {
            r.hash
                .get(4..6)
                .and_then(|c| c.parse().ok())
                .map(|c| (name.as_str(), c))
        })
    }

    /// Highest bcrypt cost among the secrets.
    pub fn max_cost(&self) -> Option<u32> {
        self.robots
            .values()
            .filter_map(|r| r.hash.get(4..6).and_then(|c| c.parse().ok()))
            .max()
    }

    /// Checks a `robot$NAME` login. Unknown robot: `NoMatch`. Wrong secret or expired:
    /// `WrongPassword` (after the same bcrypt work).
    pub fn authenticate(
        &self,
        creds: &Credentials,
        now: SystemTime,
    ) -> Result<AuthnOutcome, AuthnError> {
        let Some(name) = creds.account.strip_prefix(ROBOT_PREFIX) else {
            return Ok(AuthnOutcome::NoMatch);
        };
        let Some(robot) = self.robots.get(name) else {
            return Ok(AuthnOutcome::NoMatch);
        };
        let ok = verify_bcrypt(creds.password.expose(), &robot.hash).map_err(|e| {
            AuthnError::Backend {
                backend: "robots",
                message: format!("cannot verify the stored hash of a robot: {e}"),
            }
        })?;
        if !ok || creds.password.is_empty() || is_expired(robot, now) {
            return Ok(AuthnOutcome::WrongPassword);
        }
        Ok(AuthnOutcome::Authenticated(identity(name, robot)))
    }

    /// The robot's current identity, for re-checking a refresh token: `None` when the robot is
    /// gone or expired.
    pub fn lookup(&self, account: &str, now: SystemTime) -> Option<Identity> {
        let name = account.strip_prefix(ROBOT_PREFIX)?;
        let robot = self.robots.get(name)?;
        (!is_expired(robot, now)).then(|| identity(name, robot))
    }
}

fn is_expired(robot: &RobotRecord, now: SystemTime) -> bool {
    robot.expires.is_some_and(|e| now >= e)
}

fn identity(name: &str, robot: &RobotRecord) -> Identity {
    Identity {
        account: format!("{ROBOT_PREFIX}{name}"),
        labels: Labels::default(),
        kind: IdentityKind::Robot(name.to_owned()),
        fingerprint: Some(credential_fingerprint(&robot.hash)),
    }
}
