//! The store of minted registry passwords (web logins) and, on Redis or PostgreSQL, of the
//! replicas' shared state (refresh-token revocations, lockout counters): `store:` at top level.
//!
//! A browser login mints a random, high-entropy password for the user. Only its SHA-256 is kept
//! (a slow hash buys nothing for 256 random bits), as the key of a record holding the user,
//! their labels, the expiry, the time of the next upstream revalidation and the sealed upstream
//! tokens needed for it. Three backends:
//!
//! * `embedded` (default): a SQLite file in `data_dir` (`passwords.db`), no server.
//! * `redis`: `redis://[user:password@]host:port[/db]`, or Sentinel (`redis+sentinel://`) or
//!   Cluster (`redis+cluster://`), each also over TLS (`rediss…://`), see `redis`; keys expire
//!   with the records.
//! * `postgres`: `postgres://user:password@host:port/db[?sslmode=verify-full]`; one table,
//!   created when missing.
//!
//! Redis and PostgreSQL let several replicas share the passwords, and are the replicas' shared
//! state with or without web logins ([`SharedState`]: refresh-token revocations and lockout
//! counters, in `shared`). Connections are opened on
//! first use, so `check-config` never touches them; a store that cannot be reached makes the
//! requests that need it fail with a 5xx (never a 401).
//!
//! Trustworthy state:
//!
//! * Every record is authenticated (HMAC-SHA256 under a key derived from the session secret,
//!   bound to its id; see `auth`): a record written by anyone else, altered, or copied to
//!   another id is refused as if it did not exist, counted
//!   (`registry_auth_store_records_rejected_total`) and left alone.
//! * A record is created only once ([`Store::insert`]) and changed only by compare-and-set
//!   ([`Store::update`]: a Redis script comparing the stored value, an SQL `UPDATE … WHERE
//!   record = <the value read>`), so a sign-out or `logins revoke` that lands while a
//!   revalidation is in flight is never undone, on any replica.

mod auth;
mod redis;
mod shared;
mod sql;

pub use redis::{Target as RedisTarget, TlsMaterial as RedisTlsMaterial};
pub use shared::{LockoutRules, LockoutState};

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use crate::authn::{Labels, Secret};
use crate::health::Health;
use auth::RecordKey;
use tracing::warn;

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
        /// Parsed Redis URL (one server, Sentinel or Cluster).
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
pub struct Store(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    backend: Backend,
    health: Health,
    /// Authenticates the records; set from the session secret before the first use.
    key: OnceLock<RecordKey>,
}

#[derive(Debug)]
enum Backend {
    Sql(sql::SqlStore),
    Redis(redis::Redis),
    /// In memory, for tests: the stored bytes, as a server would hold them; the shared state
    /// apart, with its expiry (seconds since the Unix epoch).
    Memory(
        Mutex<HashMap<String, Vec<u8>>>,
        Mutex<HashMap<String, (Vec<u8>, u64)>>,
    ),
}

/// Records refused by the authentication check since the start of the process.
static REJECTED: AtomicU64 = AtomicU64::new(0);

/// How many stored records were refused because their authentication check failed
/// (`registry_auth_store_records_rejected_total`).
pub fn rejected_records() -> u64 {
    REJECTED.load(Ordering::Relaxed)
}

/// A record with the revision it was read at: [`Store::update`] replaces it only if it is still
/// that revision (compare-and-set), so a password revoked meanwhile stays revoked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    /// The record.
    pub record: MintedRecord,
    /// The stored bytes it was read from (opaque).
    revision: Vec<u8>,
}

impl Store {
    fn with_backend(backend: Backend) -> Self {
        Self(Arc::new(Inner {
            backend,
            health: Health::named("store"),
            key: OnceLock::new(),
        }))
    }

    /// A store for `settings`. Nothing is opened or connected until first use.
    pub fn new(settings: &StoreSettings) -> Self {
        Self::with_backend(match settings {
            StoreSettings::Embedded { path } => Backend::Sql(sql::SqlStore::sqlite(path)),
            StoreSettings::Redis { target } => Backend::Redis(redis::Redis::new(target.clone())),
            StoreSettings::Postgres { url } => Backend::Sql(sql::SqlStore::postgres(url.expose())),
        })
    }

    /// A store in memory (tests).
    pub fn memory() -> Self {
        Self::with_backend(Backend::Memory(
            Mutex::new(HashMap::new()),
            Mutex::new(HashMap::new()),
        ))
    }

    /// Derives the key that authenticates the records from the session secret. Every read and
    /// write needs it; the first call wins (the secret does not change in a process's
    /// configuration).
    pub fn set_secret(&self, secret: &[u8]) {
        if self.0.key.get().is_none() {
            let _ = self.0.key.set(RecordKey::derive(secret));
        }
    }

    fn key(&self) -> Result<&RecordKey, StoreError> {
        self.0.key.get().ok_or_else(|| {
            StoreError::new(
                self.kind(),
                "the session secret is not loaded: records cannot be authenticated",
            )
        })
    }

    /// Which backend, for logs.
    pub fn kind(&self) -> &'static str {
        match &self.0.backend {
            Backend::Sql(s) => s.backend(),
            Backend::Redis(_) => "redis",
            Backend::Memory(..) => "memory",
        }
    }

    /// Opens or connects now (at start-up), so a broken store is reported early. Later failures
    /// reconnect on the next use.
    pub async fn check(&self) -> Result<(), StoreError> {
        let result = self.raw_get("registry-auth-startup-check").await;
        self.note(result).map(|_| ())
    }

    /// What the last call found (for `/readyz`).
    pub fn health(&self) -> &Health {
        &self.0.health
    }

    /// Records the outcome of a call in [`Store::health`].
    fn note<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        match &result {
            Ok(_) => self.0.health.up(),
            Err(e) => self.0.health.down(e.message.clone()),
        }
        result
    }

    /// Stores a new record under `id` (a freshly minted password). Never replaces one: an id
    /// that exists already is an error.
    pub async fn insert(&self, id: &str, record: &MintedRecord) -> Result<(), StoreError> {
        let result = self.insert_inner(id, record).await;
        self.note(result)
    }

    async fn insert_inner(&self, id: &str, record: &MintedRecord) -> Result<(), StoreError> {
        let value = self
            .key()?
            .encode(id, record)
            .map_err(|e| StoreError::new(self.kind(), e))?;
        let created = match &self.0.backend {
            Backend::Sql(s) => {
                s.insert(id, &record.user, &value, record.expires_at)
                    .await?
            }
            Backend::Redis(r) => r.insert(id, &value, ttl(record)).await?,
            Backend::Memory(m, _) => {
                let mut m = lock(m);
                if m.contains_key(id) {
                    false
                } else {
                    m.insert(id.to_owned(), value);
                    true
                }
            }
        };
        if created {
            Ok(())
        } else {
            Err(StoreError::new(
                self.kind(),
                "a record with this id exists already",
            ))
        }
    }

    /// Replaces the record under `id` with `record` only if it is still at `seen`'s revision;
    /// false when it changed or was deleted meanwhile (signed out, revoked, revalidated by
    /// another replica). Never creates a record.
    pub async fn update(
        &self,
        id: &str,
        seen: &Versioned,
        record: &MintedRecord,
    ) -> Result<bool, StoreError> {
        let result = self.update_inner(id, seen, record).await;
        self.note(result)
    }

    async fn update_inner(
        &self,
        id: &str,
        seen: &Versioned,
        record: &MintedRecord,
    ) -> Result<bool, StoreError> {
        let value = self
            .key()?
            .encode(id, record)
            .map_err(|e| StoreError::new(self.kind(), e))?;
        match &self.0.backend {
            Backend::Sql(s) => {
                s.update(id, &seen.revision, &record.user, &value, record.expires_at)
                    .await
            }
            Backend::Redis(r) => r.update(id, &seen.revision, &value, ttl(record)).await,
            Backend::Memory(m, _) => {
                let mut m = lock(m);
                match m.get_mut(id) {
                    Some(v) if *v == seen.revision => {
                        *v = value;
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
        }
    }

    async fn raw_get(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.0.backend {
            Backend::Sql(s) => s.get(id).await,
            Backend::Redis(r) => r.get(id).await,
            Backend::Memory(m, _) => Ok(lock(m).get(id).cloned()),
        }
    }

    /// The record stored under `id`, when it passes the authentication check; a record that
    /// fails it is refused (counted and logged), never repaired.
    fn verify(&self, key: &RecordKey, id: &str, raw: &[u8]) -> Option<MintedRecord> {
        match key.decode(id, raw) {
            Ok(r) => Some(r),
            Err(why) => {
                REJECTED.fetch_add(1, Ordering::Relaxed);
                warn!(
                    store = self.kind(),
                    id = %id.get(..8).unwrap_or(id),
                    "refused a stored record: {}",
                    why.describe()
                );
                None
            }
        }
    }

    /// The unexpired, authentic record under `id`.
    pub async fn get(&self, id: &str) -> Result<Option<MintedRecord>, StoreError> {
        Ok(self.get_versioned(id).await?.map(|v| v.record))
    }

    /// [`Store::get`] with the revision, for [`Store::update`].
    pub async fn get_versioned(&self, id: &str) -> Result<Option<Versioned>, StoreError> {
        let result = self.get_inner(id).await;
        self.note(result)
    }

    async fn get_inner(&self, id: &str) -> Result<Option<Versioned>, StoreError> {
        let key = self.key()?;
        let Some(raw) = self.raw_get(id).await? else {
            return Ok(None);
        };
        let Some(record) = self.verify(key, id, &raw) else {
            return Ok(None);
        };
        if record.expires_at <= unix_now() {
            self.delete_inner(id).await?;
            return Ok(None);
        }
        Ok(Some(Versioned {
            record,
            revision: raw,
        }))
    }

    /// Every unexpired, authentic record with its id, oldest expiry first; only `user`'s when
    /// given. For the `logins` command (a scan of the whole store).
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
        let key = self.key()?;
        let raw: Vec<(String, Vec<u8>)> = match &self.0.backend {
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
            Backend::Memory(m, _) => lock(m)
                .iter()
                .map(|(id, v)| (id.clone(), v.clone()))
                .collect(),
        };
        let now = unix_now();
        let mut records = Vec::with_capacity(raw.len());
        for (id, bytes) in raw {
            let Some(record) = self.verify(key, &id, &bytes) else {
                continue;
            };
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

    /// Removes the record under `id`; true when there was one. A revalidation in flight cannot
    /// bring it back ([`Store::update`] never creates).
    pub async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let result = self.delete_inner(id).await;
        self.note(result)
    }

    async fn delete_inner(&self, id: &str) -> Result<bool, StoreError> {
        match &self.0.backend {
            Backend::Sql(s) => s.delete(id).await,
            Backend::Redis(r) => r.delete(id).await,
            Backend::Memory(m, _) => Ok(lock(m).remove(id).is_some()),
        }
    }
}

/// The store as the replicas' shared state (a Redis or PostgreSQL `store`, with or without web
/// logins): refresh-token revocations and lockout counters (see `shared`). Its records are
/// authenticated with the session secret, which every replica must share.
#[derive(Debug, Clone)]
pub struct SharedState {
    store: Store,
    description: String,
    secret_path: PathBuf,
    generate_secret: bool,
}

impl SharedState {
    /// `store` (the same one the web logins use, when configured) with the session secret's
    /// file; `generate_secret` when it is the default one in `data_dir`.
    pub fn new(
        store: Store,
        description: String,
        secret_path: PathBuf,
        generate_secret: bool,
    ) -> Self {
        Self {
            store,
            description,
            secret_path,
            generate_secret,
        }
    }

    /// Reads (or creates, for the default file) the session secret now, so a problem stops the
    /// start.
    pub fn prepare(&self) -> Result<(), String> {
        let secret =
            crate::weblogin::seal::load_or_create(&self.secret_path, self.generate_secret)?;
        self.store.set_secret(&secret);
        Ok(())
    }

    /// The store, ready for a command (`tokens revoke`): the session secret must exist (it is
    /// never generated here).
    pub fn store_for_command(&self) -> Result<&Store, String> {
        let secret = crate::weblogin::seal::load_or_create(&self.secret_path, false)
            .map_err(|e| format!("the session secret authenticates the shared state: {e}"))?;
        self.store.set_secret(&secret);
        Ok(&self.store)
    }

    /// The store (its secret set by [`SharedState::prepare`]).
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// For logs: `redis (host:port)` or `postgres`.
    pub fn description(&self) -> &str {
        &self.description
    }
}

/// Seconds a Redis key lives: until the record expires.
fn ttl(record: &MintedRecord) -> u64 {
    record.expires_at.saturating_sub(unix_now()).max(1)
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

    const SECRET: &[u8] = b"a test session secret of at least 32 bytes";

    async fn exercise(store: &Store) {
        store.set_secret(SECRET);
        let (_, id) = mint_password();
        assert_eq!(store.get(&id).await.unwrap(), None);
        let rec = record("alice", 3600);
        store.insert(&id, &rec).await.unwrap();
        // An id is created once: a second insert is an error, not a replacement.
        assert!(store.insert(&id, &record("mallory", 3600)).await.is_err());
        let seen = store.get_versioned(&id).await.unwrap().unwrap();
        assert_eq!(seen.record, rec);
        let mut updated = rec.clone();
        updated.revalidate_at += 10;
        assert!(store.update(&id, &seen, &updated).await.unwrap());
        assert_eq!(store.get(&id).await.unwrap(), Some(updated.clone()));
        // A stale revision does not apply (another replica updated it meanwhile).
        let mut stale = rec.clone();
        stale.labels = Labels::from_iter([("teams", vec!["admins"])]);
        assert!(!store.update(&id, &seen, &stale).await.unwrap());
        assert_eq!(store.get(&id).await.unwrap(), Some(updated));
        // Deleted while a revalidation was in flight: the update never brings it back.
        let seen = store.get_versioned(&id).await.unwrap().unwrap();
        assert!(store.delete(&id).await.unwrap());
        assert!(!store.update(&id, &seen, &rec).await.unwrap());
        assert!(!store.delete(&id).await.unwrap());
        assert_eq!(store.get(&id).await.unwrap(), None);
        // An expired record is never returned.
        let (_, old) = mint_password();
        store.insert(&old, &record("bob", -5)).await.unwrap();
        assert_eq!(store.get(&old).await.unwrap(), None);
        // Listing and revoking by user (the `logins` command); expired records are left out.
        let ids: Vec<String> = (0..3).map(|_| mint_password().1).collect();
        store.insert(&ids[0], &record("carol", 60)).await.unwrap();
        store.insert(&ids[1], &record("dave", 120)).await.unwrap();
        store.insert(&ids[2], &record("carol", 180)).await.unwrap();
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
    async fn records_of_another_secret_or_id_are_refused_and_counted() {
        let store = Store::memory();
        store.set_secret(SECRET);
        let (_, id) = mint_password();
        let (_, other) = mint_password();
        store.insert(&id, &record("alice", 3600)).await.unwrap();
        let raw = store.raw_get(&id).await.unwrap().unwrap();
        let Backend::Memory(m, _) = &store.0.backend else {
            unreachable!()
        };
        // Copied under another id, and a plain JSON record (forged, or from an older version).
        lock(m).insert(other.clone(), raw);
        let (_, plain) = mint_password();
        lock(m).insert(
            plain.clone(),
            serde_json::to_vec(&record("admin", 3600)).unwrap(),
        );
        let before = rejected_records();
        assert_eq!(store.get(&other).await.unwrap(), None);
        assert_eq!(store.get(&plain).await.unwrap(), None);
        assert!(rejected_records() >= before + 2);
        // Listed: only the authentic one; the others are left in place (never repaired).
        let listed = store.list(None).await.unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        assert_eq!(listed[0].0, id);
        assert_eq!(lock(m).len(), 3);
        // Another session secret: nothing verifies.
        let again = Store(Arc::new(Inner {
            backend: Backend::Memory(Mutex::new(lock(m).clone()), Mutex::default()),
            health: Health::default(),
            key: OnceLock::new(),
        }));
        assert!(
            again.get(&id).await.is_err(),
            "no secret: an error, not a guess"
        );
        again.set_secret(b"another session secret of at least 32 bytes");
        assert_eq!(again.get(&id).await.unwrap(), None);
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
        store.insert(&id, &record("carol", 3600)).await.unwrap();
        // A second store on the same file (a configuration reload, another process).
        let again = Store::new(&settings);
        again.set_secret(SECRET);
        assert_eq!(again.get(&id).await.unwrap().unwrap().user, "carol");
        drop(store);
        drop(again);
        let reopened = Store::new(&settings);
        reopened.set_secret(SECRET);
        assert_eq!(reopened.get(&id).await.unwrap().unwrap().user, "carol");
        // The database, its WAL (whole records) and shared-memory file, and the folder: owner
        // only.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode =
                |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(path.parent().unwrap()), 0o700);
            for suffix in ["", "-wal", "-shm"] {
                let file = std::path::PathBuf::from(format!("{}{suffix}", path.display()));
                assert_eq!(mode(&file), 0o600, "{}", file.display());
            }
        }
    }
}
