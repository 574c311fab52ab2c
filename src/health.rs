//! The last known state of an external backend (LDAP server, webhook), for `/readyz`: updated by
//! every call that reached (or failed to reach) it, and by probes.
//!
//! The error text of a failure is for operators only: it can carry a user's DN (a failed bind)
//! or a URL, so it is logged when the state changes and shown on `server.metrics_addr`'s
//! `/readyz` ([`Health::report`]), while the public listener shows the state alone
//! ([`Health::public_report`]).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tracing::{info, warn};

/// What is known about a backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthState {
    /// Nothing yet (no call since the configuration was loaded).
    Unknown,
    /// The last call reached it.
    Up,
    /// The last call could not reach it, or it answered outside its contract.
    Down(String),
}

/// A backend's health, shared by every request.
#[derive(Debug)]
pub struct Health {
    /// The backend's config name, for the log.
    name: &'static str,
    state: Mutex<(HealthState, Option<Instant>)>,
}

impl Default for Health {
    fn default() -> Self {
        Self::named("backend")
    }
}

impl Health {
    /// A backend called `name` in the log (its config key: `ldap_auth`, `http_auth`, …).
    pub fn named(name: &'static str) -> Self {
        Self {
            name,
            state: Mutex::new((HealthState::Unknown, None)),
        }
    }

    /// The backend answered.
    pub fn up(&self) {
        self.set(HealthState::Up);
    }

    /// The backend failed; `error` is for operators (never a secret).
    pub fn down(&self, error: impl Into<String>) {
        self.set(HealthState::Down(error.into()));
    }

    fn set(&self, state: HealthState) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if guard.0 != state {
            // Logged on changes only: the details the public `/readyz` does not show.
            match (&guard.0, &state) {
                (_, HealthState::Down(error)) => {
                    warn!(backend = self.name, %error, "backend is down");
                }
                (HealthState::Down(_), HealthState::Up) => {
                    info!(backend = self.name, "backend is up again");
                }
                _ => {}
            }
        }
        *guard = (state, Some(Instant::now()));
    }

    /// The current state and how long ago it was learnt.
    pub fn get(&self) -> (HealthState, Option<Duration>) {
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (guard.0.clone(), guard.1.map(|at| at.elapsed()))
    }

    /// `{"status": "up"|"down"|"unknown", "checked_seconds_ago": …}` for the public `/readyz`:
    /// the state without the error text.
    pub fn public_report(&self) -> Value {
        public(self.report())
    }

    /// `{"status": "up"|"down"|"unknown", "error": …, "checked_seconds_ago": …}` for
    /// `/readyz` on `server.metrics_addr`.
    pub fn report(&self) -> Value {
        let (state, age) = self.get();
        let mut v = match state {
            HealthState::Unknown => json!({ "status": "unknown" }),
            HealthState::Up => json!({ "status": "up" }),
            HealthState::Down(e) => json!({ "status": "down", "error": e }),
        };
        if let (Some(age), Some(obj)) = (age, v.as_object_mut()) {
            obj.insert("checked_seconds_ago".to_owned(), json!(age.as_secs()));
        }
        v
    }

    /// True when the state is `Down`.
    pub fn is_down(&self) -> bool {
        matches!(self.get().0, HealthState::Down(_))
    }
}

/// A [`Health::report`] without its error text (for the public listener).
pub fn public(mut report: Value) -> Value {
    if let Some(obj) = report.as_object_mut() {
        obj.retain(|k, _| k == "status" || k == "checked_seconds_ago");
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_the_last_state() {
        let h = Health::default();
        assert_eq!(h.report()["status"], "unknown");
        h.down("connection refused");
        assert_eq!(h.report()["status"], "down");
        assert_eq!(h.report()["error"], "connection refused");
        assert!(h.is_down());
        h.up();
        assert_eq!(h.report()["status"], "up");
        assert!(h.report().get("error").is_none());
        assert_eq!(h.report()["checked_seconds_ago"], 0);
    }

    #[test]
    fn the_public_report_has_the_state_but_never_the_error_text() {
        let h = Health::named("ldap_auth");
        h.down("bind as uid=alice,ou=people,dc=example,dc=org failed");
        let public = h.public_report();
        assert_eq!(public["status"], "down");
        assert_eq!(public["checked_seconds_ago"], 0);
        assert!(public.get("error").is_none(), "{public}");
        assert!(!public.to_string().contains("alice"), "{public}");
        assert!(h.report()["error"].as_str().unwrap().contains("alice"));
    }
}
