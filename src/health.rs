//! The last known state of an external backend (LDAP server, webhook), for `/readyz`: updated by
//! every call that reached (or failed to reach) it, and by probes.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

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
    state: Mutex<(HealthState, Option<Instant>)>,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: Mutex::new((HealthState::Unknown, None)),
        }
    }
}

impl Health {
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
        *guard = (state, Some(Instant::now()));
    }

    /// The current state and how long ago it was learnt.
    pub fn get(&self) -> (HealthState, Option<Duration>) {
        let guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        (guard.0.clone(), guard.1.map(|at| at.elapsed()))
    }

    /// `{"status": "up"|"down"|"unknown", "error": …, "checked_seconds_ago": …}` for `/readyz`.
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
}
