//! `sql_auth`: users in a SQL database (PostgreSQL or SQLite; the schema is in `migrations/`).
//!
//! Each login reads the user's row (`registry_auth_users`: name, bcrypt hash, JSON labels), so a
//! user added, changed or removed with `registry-auth users …` (or plain SQL) counts at the next
//! login that misses the credential cache. The bcrypt check runs on the authenticator's bounded
//! pool, like the static users'. An unknown user is `NoMatch` (the next backend is asked; at the
//! end of the chain the dummy bcrypt keeps the timing), a wrong password `WrongPassword`, and a
//! database that cannot answer an error (5xx): the next login tries again, so a database that
//! comes back works without a restart.
//!
//! Refresh tokens carry the fingerprint of the stored hash, and a refresh re-reads the row, so a
//! password change or a removal ends them.
//!
//! A name no row can hold (a NUL, which PostgreSQL cannot store in text) is `NoMatch` without a
//! query, and a query the database refuses because of the name (SQLSTATE class 22, e.g. a
//! character its encoding lacks) is `NoMatch` too: bad input is never a 5xx, and never marks
//! the backend down. `sql_auth` has its own health record for `/readyz`, apart from `acl_sql`'s
//! even when both use one database.

use std::sync::Arc;

use tokio::sync::Semaphore;

use super::{AuthnError, AuthnOutcome, Credentials, Identity, IdentityKind, Labels, verify_bcrypt};
use crate::health::Health;
use crate::sql::{SqlDb, UserRow};
use crate::token::refresh::credential_fingerprint;

const NAME: &str = "sql_auth";

/// The `sql_auth` backend.
#[derive(Debug, Clone)]
pub struct SqlAuth {
    db: Arc<SqlDb>,
    /// What the last lookup found (for `/readyz`).
    health: Arc<Health>,
}

fn failed(message: impl Into<String>) -> AuthnError {
    AuthnError::Backend {
        backend: NAME,
        message: message.into(),
    }
}

impl SqlAuth {
    /// Users in `db`.
    pub fn new(db: Arc<SqlDb>) -> Self {
        Self {
            db,
            health: Arc::new(Health::named("sql_auth")),
        }
    }

    /// What the last lookup found (for `/readyz`).
    pub fn health(&self) -> &Health {
        &self.health
    }

    /// The database (for the `users` commands).
    pub fn db(&self) -> &Arc<SqlDb> {
        &self.db
    }

    /// The user's row, or `None` (anonymous and names no row can hold are never looked up;
    /// a name the database refuses matches no row).
    async fn find(&self, account: &str) -> Result<Option<UserRow>, AuthnError> {
        if account.is_empty() || !storable(account) {
            return Ok(None);
        }
        let result = self.db.find_user(account).await;
        SqlDb::record(&self.health, &result);
        match result {
            Ok(row) => Ok(row),
            Err(e) if e.bad_input => Ok(None),
            Err(e) => Err(failed(e.message)),
        }
    }

    /// Checks the credentials; bcrypt runs on a blocking thread once a `bcrypt_pool` permit is
    /// free.
    pub async fn authenticate(
        &self,
        creds: &Credentials,
        bcrypt_pool: &Semaphore,
    ) -> Result<AuthnOutcome, AuthnError> {
        let Some(row) = self.find(&creds.account).await? else {
            return Ok(AuthnOutcome::NoMatch);
        };
        let identity = identity(&row)?;
        let _permit = bcrypt_pool
            .acquire()
            .await
            .map_err(|_| failed("the bcrypt pool is closed"))?;
        let password = creds.password.clone();
        let hash = row.password_hash;
        // Always run bcrypt, even for an empty password, so every failure costs the same.
        let verified = tokio::task::spawn_blocking(move || verify_bcrypt(password.expose(), &hash))
            .await
            .map_err(|e| failed(format!("the bcrypt task failed: {e}")))?
            .map_err(|e| {
                failed(format!(
                    "the stored password_hash of user {:?} is not a usable bcrypt hash ({e}); \
                     set a new one with `registry-auth users passwd`",
                    creds.account
                ))
            })?;
        Ok(if verified && !creds.password.is_empty() {
            AuthnOutcome::Authenticated(identity)
        } else {
            AuthnOutcome::WrongPassword
        })
    }

    /// The user's current identity (labels and credential fingerprint), `None` when the row is
    /// gone; for refresh tokens and `acl explain`.
    pub async fn lookup(&self, account: &str) -> Result<Option<Identity>, AuthnError> {
        match self.find(account).await? {
            Some(row) => identity(&row).map(Some),
            None => Ok(None),
        }
    }
}

/// A name a text column can hold: PostgreSQL's text cannot contain NUL (a Rust string is
/// valid UTF-8, so nothing else is excluded up front).
fn storable(name: &str) -> bool {
    !name.contains('\0')
}

/// Parses a row's labels: a JSON object of lists of strings, as in the YAML `users`.
pub fn parse_labels(json: &str) -> Result<Labels, String> {
    serde_json::from_str(json).map_err(|e| {
        format!("not a JSON object of lists of strings such as {{\"team\": [\"dev\"]}} ({e})")
    })
}

fn identity(row: &UserRow) -> Result<Identity, AuthnError> {
    let labels = parse_labels(&row.labels).map_err(|e| {
        failed(format!(
            "the labels of user {:?} are unusable: {e}; fix the row's `labels` column",
            row.name
        ))
    })?;
    Ok(Identity {
        account: row.name.clone(),
        labels,
        kind: IdentityKind::External(NAME),
        fingerprint: Some(credential_fingerprint(&row.password_hash)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::Secret;
    use crate::sql::DEFAULT_TIMEOUT;

    fn creds(a: &str, p: &str) -> Credentials {
        Credentials {
            account: a.into(),
            password: Secret::new(p),
        }
    }

    #[test]
    fn labels_are_a_json_object_of_string_lists() {
        let l = parse_labels(r#"{"team": ["dev", "ops"]}"#).unwrap();
        assert_eq!(l.get("team").unwrap(), ["dev", "ops"]);
        assert!(parse_labels("{}").unwrap().is_empty());
        for bad in [
            "[]",
            "nope",
            r#"{"a": 1}"#,
            r#"{"a": [1]}"#,
            r#"{"a": "b"}"#,
        ] {
            assert!(parse_labels(bad).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn outcomes_fingerprints_and_lookup() {
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(SqlDb::parse("sqlite:u.db", dir.path(), 2, DEFAULT_TIMEOUT).unwrap());
        let hash = bcrypt::hash("good", 4).unwrap();
        db.insert_user(&UserRow {
            name: "alice".into(),
            password_hash: hash.clone(),
            labels: r#"{"team": ["dev"]}"#.into(),
        })
        .await
        .unwrap();
        db.insert_user(&UserRow {
            name: "broken".into(),
            password_hash: "not-bcrypt".into(),
            labels: "{}".into(),
        })
        .await
        .unwrap();
        let auth = SqlAuth::new(db.clone());
        let pool = Semaphore::new(1);
        let AuthnOutcome::Authenticated(id) = auth
            .authenticate(&creds("alice", "good"), &pool)
            .await
            .unwrap()
        else {
            panic!("alice");
        };
        assert_eq!(id.labels.get("team").unwrap(), ["dev"]);
        assert_eq!(id.kind, IdentityKind::External("sql_auth"));
        assert_eq!(id.fingerprint, Some(credential_fingerprint(&hash)));
        for (a, p, want) in [
            ("alice", "bad", AuthnOutcome::WrongPassword),
            ("alice", "", AuthnOutcome::WrongPassword),
            ("carol", "x", AuthnOutcome::NoMatch),
            ("", "", AuthnOutcome::NoMatch),
        ] {
            assert_eq!(auth.authenticate(&creds(a, p), &pool).await.unwrap(), want);
        }
        let err = auth
            .authenticate(&creds("broken", "x"), &pool)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("users passwd"), "{err}");
        // lookup follows the row: a new password changes the fingerprint, removal ends it.
        assert_eq!(auth.lookup("alice").await.unwrap(), Some(id.clone()));
        db.set_password("alice", &bcrypt::hash("new", 4).unwrap())
            .await
            .unwrap();
        assert_ne!(
            auth.lookup("alice").await.unwrap().unwrap().fingerprint,
            id.fingerprint
        );
        db.delete_user("alice").await.unwrap();
        assert_eq!(auth.lookup("alice").await.unwrap(), None);
    }

    #[tokio::test]
    async fn an_unreachable_database_is_an_error_not_a_denial() {
        // Nothing listens on port 1 of 127.0.0.1.
        let db = Arc::new(
            SqlDb::parse(
                "postgres://ra:s3cret@127.0.0.1:1/reg",
                std::path::Path::new("."),
                1,
                std::time::Duration::from_secs(2),
            )
            .unwrap(),
        );
        let auth = SqlAuth::new(db);
        let err = auth
            .authenticate(&creds("alice", "x"), &Semaphore::new(1))
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(text.contains("sql_auth"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(auth.lookup("alice").await.is_err());
        assert!(auth.health().is_down());
        // A name with a NUL is never looked up: no match, even with the database down.
        let fresh = SqlAuth::new(auth.db().clone());
        for name in ["al\0ice", "\0", "alice\0"] {
            assert_eq!(
                fresh
                    .authenticate(&creds(name, "x"), &Semaphore::new(1))
                    .await
                    .unwrap(),
                AuthnOutcome::NoMatch
            );
            assert_eq!(fresh.lookup(name).await.unwrap(), None);
        }
        assert_eq!(fresh.health().report()["status"], "unknown");
    }
}
