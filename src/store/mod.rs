//! The store of minted registry passwords (web logins): `store:` at top level.
//!
//! A browser login mints a random, high-entropy password for the user. Only its SHA-256 is kept
//! (a slow hash buys nothing for 256 random bits), as the key of a record holding the user,
//! their labels, the expiry, the time of the next upstream revalidation and the sealed upstream
//! tokens needed for it. Three backends:
//!
//! * `embedded` (default): a SQLite file in `data_dir` (`passwords.db`), no server.
//! * `redis`: `redis://[user:password@]host:port[/db]`; keys expire with the records.
//! * `postgres`: `postgres://user:password@host:port/db[?sslmode=verify-full]`; one table,
//!   created when missing.
//!
//! Redis and PostgreSQL let several replicas share the passwords. Connections are opened on
//! first use, so `check-config` never touches them; a store that cannot be reached makes the
//! requests that need it fail with a 5xx (never a 401).

mod redis;
mod sql;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::authn::{Labels, Secret};
use crate::health::Health;

/// Prefix of every minted password, so secret scanners (and people) recognise them.
pub const PASSWORD_PREFIX: &str = "rapw_";

/// One minted password, as stored (under the hash of the password).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MintedRecord {
    /// The account name the password belongs to (e.g. the GitHub login).
    pub user: String,
    /// The config section that minted it (`github_auth`, `google_auth`, `oidc_auth`,
    /// `gitlab_auth`).
    pub provider: String,
    /// Labels for the ACL (teams, groups, claims).
    pub labels: Labels,
    /// Minted at, seconds since the Unix epoch.
    pub created_at: u64,
    /// Refused after this time (seconds since the Unix epoch).
    pub expires_at: u64,
    /// The upstream account is re-checked on the first use after this time.
    pub revalidate_at: u64,
    /// The upstream tokens, sealed (AES-256-GCM) under a key derived from the session secret:
    /// a copy of the store alone does not give access to anyone's upstream account.
    pub upstream: String,
}

/// The store could not answer (a 5xx; the detail is logged).
#[derive(Debug, Clone, thiserror::Error)]
#[error("the password store ({backend}) failed: {message}")]
pub struct StoreError {
    /// `embedded`, `redis` or `postgres`.
    pub backend: &'static str,
    /// What went wrong (never a secret).
    pub message: String,
}

impl StoreError {
    fn new(backend: &'static str, message: impl Into<String>) -> Self {
        Self {
            backend,
            message: message.into(),
        }
    }
}

/// `store:` after validation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreSettings {
    /// A SQLite file.
    Embedded {
        /// The database file.
        path: PathBuf,
    },
    /// A Redis server.
    Redis {
        /// Parsed `redis://` URL.
        target: redis::Target,
    },
    /// A PostgreSQL server.
    Postgres {
        /// The URL; may hold a password.
        url: Secret,
    },
}

impl StoreSettings {
    /// A description for logs and the readiness page (no password).
    pub fn describe(&self) -> String {
        match self {
            Self::Embedded { path } => format!("embedded ({})", path.display()),
            Self::Redis { target } => format!("redis ({})", target.addr),
            Self::Postgres { .. } => "postgres".to_owned(),
        }
    }
}

/// Parses and checks a `redis://` URL (for config validation).
pub fn parse_redis_url(url: &str) -> Result<redis::Target, String> {
    redis::Target::parse(url)
}

/// Checks a PostgreSQL URL (for config validation).
pub fn check_postgres_url(url: &str) -> Result<(), String> {
    sql::check_postgres(url)
}

/// The store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Store(Arc<Backend>, Arc<Health>);

#[derive(Debug)]
enum Backend {
    Sql(sql::SqlStore),
    Redis(redis::Redis),
    /// In memory, for tests.
    Memory(Mutex<HashMap<String, MintedRecord>>),
}

impl Store {
    /// A store for `settings`. Nothing is opened or connected until first use.
    pub fn new(settings: &StoreSettings) -> Self {
        Self(
            Arc::new(match settings {
                StoreSettings::Embedded { path } => Backend::Sql(sql::SqlStore::sqlite(path)),
                StoreSettings::Redis { target } => {
                    Backend::Redis(redis::Redis::new(target.clone()))
                }
                StoreSettings::Postgres { url } => {
                    Backend::Sql(sql::SqlStore::postgres(url.expose()))
                }
            }),
            Arc::new(Health::named("store")),
        )
    }

    /// A store in memory (tests).
    pub fn memory() -> Self {
        Self(
            Arc::new(Backend::Memory(Mutex::new(HashMap::new()))),
            Arc::new(Health::named("store")),
        )
    }

    /// Which backend, for logs.
    pub fn kind(&self) -> &'static str {
        match &*self.0 {
            Backend::Sql(s) => s.backend(),
            Backend::Redis(_) => "redis",
            Backend::Memory(_) => "memory",
        }
    }

    /// Opens or connects now (at start-up), so a broken store is reported early. Later failures
    /// reconnect on the next use.
    pub async fn check(&self) -> Result<(), StoreError> {
        self.get("registry-auth-startup-check").await.map(|_| ())
    }

    /// What the last call found (for `/readyz`).
    pub fn health(&self) -> &Health {
        &self.1
    }

    /// Records the outcome of a call in [`Store::health`].
    fn note<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => self.1.up(),
            Err(e) => self.1.down(e.message.clone()),
        }
        result
    }

    /// Stores (or replaces) the record under `id`.
    pub async fn put(&self, id: &str, record: &MintedRecord) -> Result<(), StoreError> {
        let result = self.put_inner(id, record).await;
        self.note(result)
    }

    async fn put_inner(&self, id: &str, record: &MintedRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(record)
            .map_err(|e| StoreError::new(self.kind(), format!("cannot encode a record: {e}")))?;
        let now = unix_now();
        match &*self.0 {
            Backend::Sql(s) => s.put(id, &record.user, &value, record.expires_at).await,
            Backend::Redis(r) => {
                let ttl = record.expires_at.saturating_sub(now).max(1);
                r.put(id, &value, ttl).await
            }
            Backend::Memory(m) => {
                lock(m).insert(id.to_owned(), record.clone());
                Ok(())
            }
        }
    }

    /// The unexpired record under `id`.
    pub async fn get(&self, id: &str) -> Result<Option<MintedRecord>, StoreError> {
        let result = self.get_inner(id).await;
        self.note(result)
    }

    async fn get_inner(&self, id: &str) -> Result<Option<MintedRecord>, StoreError> {
        let raw = match &*self.0 {
            Backend::Sql(s) => s.get(id).await?,
            Backend::Redis(r) => r.get(id).await?,
            Backend::Memory(m) => {
                return Ok(lock(m)
                    .get(id)
                    .filter(|r| r.expires_at > unix_now())
                    .cloned());
            }
        };
        let Some(raw) = raw else {
            return Ok(None);
        };
        let record: MintedRecord = serde_json::from_slice(&raw).map_err(|e| {
            StoreError::new(
                self.kind(),
                format!("a stored record cannot be read ({e}); was it written by another program?"),
            )
        })?;
        if record.expires_at <= unix_now() {
            self.delete(id).await?;
            return Ok(None);
        }
        Ok(Some(record))
    }

    /// Every unexpired record with its id, oldest expiry first; only `user`'s when given.
    /// For the `logins` command (a scan of the whole store).
    pub async fn list(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<(String, MintedRecord)>, StoreError> {
        let result = self.list_inner(user).await;
        self.note(result)
    }

    async fn list_inner(
        &self,
        user: Option<&str>,
    ) -> Result<Vec<(String, MintedRecord)>, StoreError> {
        let raw: Vec<(String, Vec<u8>)> = match &*self.0 {
            Backend::Sql(s) => s.list().await?,
            Backend::Redis(r) => {
                let mut out = Vec::new();
                for id in r.ids().await? {
                    // Gone (expired, revoked) since the scan: skipped.
                    if let Some(v) = r.get(&id).await? {
                        out.push((id, v));
                    }
                }
                out
            }
            Backend::Memory(m) => lock(m)
                .iter()
                .map(|(id, r)| (id.clone(), serde_json::to_vec(r).unwrap_or_default()))
                .collect(),
        };
        let now = unix_now();
        let mut records = Vec::with_capacity(raw.len());
        for (id, bytes) in raw {
            let record: MintedRecord = serde_json::from_slice(&bytes).map_err(|e| {
                StoreError::new(self.kind(), format!("the record {id} cannot be read ({e})"))
            })?;
            if record.expires_at > now && user.is_none_or(|u| record.user == u) {
                records.push((id, record));
            }
        }
        records.sort_by(|a, b| (a.1.expires_at, &a.0).cmp(&(b.1.expires_at, &b.0)));
        Ok(records)
    }

    /// Revokes every minted password of `user`; how many there were.
    pub async fn revoke_user(&self, user: &str) -> Result<usize, StoreError> {
        let mut revoked = 0;
        for (id, _) in self.list(Some(user)).await? {
            if self.delete(&id).await? {
                revoked += 1;
            }
        }
        Ok(revoked)
    }

    /// Removes the record under `id`; true when there was one.
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let result = self.delete_inner(id).await;
        self.note(result)
    }

    async fn delete_inner(&self, id: &str) -> Result<bool, StoreError> {
        match &*self.0 {
            Backend::Sql(s) => s.delete(id).await,
            Backend::Redis(r) => r.delete(id).await,
            Backend::Memory(m) => Ok(lock(m).remove(id).is_some()),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    unix(SystemTime::now())
}

/// `t` in seconds since the Unix epoch.
pub fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// A fresh password (`rapw_` + 256 random bits, base64url) and its id.
pub fn mint_password() -> (Secret, String) {
    let bytes: [u8; 32] = rand::random();
    let password = format!("{PASSWORD_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let id = password_id(&password);
    (Secret::new(password), id)
}

/// The id (store key) of a password: base64url(SHA-256). Only minted-looking passwords are
/// looked up at all.
pub fn password_id(password: &str) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"registry-auth minted password v1\0");
    ctx.update(password.as_bytes());
    URL_SAFE_NO_PAD.encode(ctx.finish().as_ref())
}

/// True when `password` has the shape of a minted password.
pub fn looks_minted(password: &str) -> bool {
    password.len() == PASSWORD_PREFIX.len() + 43
        && password.starts_with(PASSWORD_PREFIX)
        && password[PASSWORD_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(user: &str, expires_in: i64) -> MintedRecord {
        let now = unix_now();
        MintedRecord {
            user: user.to_owned(),
            provider: "github_auth".to_owned(),
            labels: Labels::from_iter([("teams", vec!["platform"])]),
            created_at: now,
            expires_at: now.saturating_add_signed(expires_in),
            revalidate_at: now + 3600,
            upstream: "sealed".to_owned(),
        }
    }

    #[test]
    fn minted_passwords_are_random_and_recognisable() {
        let (a, ida) = mint_password();
        let (b, idb) = mint_password();
        assert_ne!(a.expose(), b.expose());
        assert_ne!(ida, idb);
        assert!(looks_minted(a.expose()), "{}", a.expose());
        assert!(!looks_minted("rapw_short"));
        assert!(!looks_minted("hunter2"));
        assert_eq!(password_id(a.expose()), ida);
        assert!(!ida.contains(&a.expose()[5..]));
    }

    async fn exercise(store: &Store) {
        let (_, id) = mint_password();
        assert_eq!(store.get(&id).await.unwrap(), None);
        let rec = record("alice", 3600);
        store.put(&id, &rec).await.unwrap();
        assert_eq!(store.get(&id).await.unwrap(), Some(rec.clone()));
        let mut updated = rec.clone();
        updated.revalidate_at += 10;
        store.put(&id, &updated).await.unwrap();
        assert_eq!(store.get(&id).await.unwrap(), Some(updated));
        assert!(store.delete(&id).await.unwrap());
        assert!(!store.delete(&id).await.unwrap());
        assert_eq!(store.get(&id).await.unwrap(), None);
        // An expired record is never returned.
        let (_, old) = mint_password();
        store.put(&old, &record("bob", -5)).await.unwrap();
        assert_eq!(store.get(&old).await.unwrap(), None);
        // Listing and revoking by user (the `logins` command); expired records are left out.
        let ids: Vec<String> = (0..3).map(|_| mint_password().1).collect();
        store.put(&ids[0], &record("carol", 60)).await.unwrap();
        store.put(&ids[1], &record("dave", 120)).await.unwrap();
        store.put(&ids[2], &record("carol", 180)).await.unwrap();
        let all = store.list(None).await.unwrap();
        let listed: Vec<(&str, &str)> = all
            .iter()
            .map(|(id, r)| (id.as_str(), r.user.as_str()))
            .collect();
        assert_eq!(
            listed,
            [
                (ids[0].as_str(), "carol"),
                (ids[1].as_str(), "dave"),
                (ids[2].as_str(), "carol")
            ]
        );
        assert_eq!(store.list(Some("carol")).await.unwrap().len(), 2);
        assert_eq!(store.revoke_user("carol").await.unwrap(), 2);
        assert_eq!(store.revoke_user("carol").await.unwrap(), 0);
        assert_eq!(store.get(&ids[0]).await.unwrap(), None);
        assert!(store.get(&ids[1]).await.unwrap().is_some());
        assert_eq!(store.list(None).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn memory_store_round_trip() {
        exercise(&Store::memory()).await;
    }

    #[tokio::test]
    async fn embedded_store_round_trip_and_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data/passwords.db");
        let settings = StoreSettings::Embedded { path: path.clone() };
        let store = Store::new(&settings);
        exercise(&store).await;
        let (_, id) = mint_password();
        store.put(&id, &record("carol", 3600)).await.unwrap();
        // A second store on the same file (a configuration reload, another process).
        let again = Store::new(&settings);
        assert_eq!(again.get(&id).await.unwrap().unwrap().user, "carol");
        drop(store);
        drop(again);
        let reopened = Store::new(&settings);
        assert_eq!(reopened.get(&id).await.unwrap().unwrap().user, "carol");
    }
}
