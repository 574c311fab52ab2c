//! The SQL stores: `embedded` (a SQLite file in `data_dir`) and `postgres`. One table, created
//! when missing:
//!
//! ```sql
//! CREATE TABLE registry_auth_minted_passwords (
//!     id TEXT PRIMARY KEY,          -- base64url SHA-256 of the password
//!     username TEXT NOT NULL,
//!     expires_at BIGINT NOT NULL,   -- seconds since the Unix epoch
//!     record TEXT NOT NULL          -- v1.<HMAC tag>.<JSON> (see `auth`)
//! );
//! CREATE TABLE registry_auth_shared_state (   -- the replicas' shared state (see `shared`)
//!     name TEXT PRIMARY KEY,        -- e.g. `revoked-user:<hash>`, `lockout:<hash>`
//!     expires_at BIGINT NOT NULL,
//!     record TEXT NOT NULL          -- v1.<HMAC tag>.<JSON>
//! );
//! ```
//!
//! A small pool, connected on first use; broken connections are replaced, so a database that
//! comes back is used again without a restart. Every query is bounded by a timeout.

use std::path::Path;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};
use tokio::sync::OnceCell;

use super::{StoreError, unix_now};
use crate::breaker::Breaker;
use crate::sql::{Guarded, guarded};

const TABLE: &str = "registry_auth_minted_passwords";
const SHARED_TABLE: &str = "registry_auth_shared_state";
/// Time allowed for connecting and for one query.
const TIMEOUT: Duration = Duration::from_secs(5);
/// Delete expired rows at most this often (seconds).
const SWEEP_EVERY: u64 = 3600;
/// `pg_advisory_xact_lock` key for creating the table ("ramint01").
const PG_LOCK_KEY: i64 = 0x7261_6d69_6e74_3031;

/// Checks a PostgreSQL URL at config time (the message never repeats the URL).
pub(super) fn check_postgres(url: &str) -> Result<(), String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("write `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE`".to_owned());
    }
    PgConnectOptions::from_str(url)
        .map(|_| ())
        .map_err(|_| "not a usable PostgreSQL URL; write `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full]`".to_owned())
}

#[derive(Debug)]
enum Target {
    Sqlite(Box<SqliteConnectOptions>),
    Postgres(Box<PgConnectOptions>),
}

#[derive(Debug)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

pub(super) struct SqlStore {
    backend: &'static str,
    target: Option<Target>,
    pool: OnceCell<Pool>,
    last_sweep: AtomicU64,
    /// Fails calls fast while the PostgreSQL server cannot be reached.
    breaker: Breaker,
}

impl std::fmt::Debug for SqlStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqlStore")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

fn err(backend: &'static str, what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::new(backend, format!("{what}: {e}"))
}

impl SqlStore {
    /// A SQLite file (created with its folder when missing).
    pub(super) fn sqlite(path: &Path) -> Self {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .busy_timeout(TIMEOUT);
        Self {
            backend: "embedded",
            target: Some(Target::Sqlite(Box::new(options))),
            pool: OnceCell::new(),
            last_sweep: AtomicU64::new(0),
            breaker: Breaker::default(),
        }
    }

    /// A PostgreSQL database.
    pub(super) fn postgres(url: &str) -> Self {
        Self {
            backend: "postgres",
            target: PgConnectOptions::from_str(url)
                .ok()
                .map(|o| Target::Postgres(Box::new(o.application_name("registry-auth")))),
            pool: OnceCell::new(),
            last_sweep: AtomicU64::new(0),
            breaker: Breaker::default(),
        }
    }

    pub(super) fn backend(&self) -> &'static str {
        self.backend
    }

    async fn timed<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, StoreError> {
        let remote = matches!(self.target, Some(Target::Postgres(_)));
        match guarded(&self.breaker, remote, TIMEOUT, fut).await {
            Guarded::Done(Ok(v)) => Ok(v),
            Guarded::Done(Err(e)) => Err(err(self.backend, what, describe(&e))),
            Guarded::TimedOut => Err(err(self.backend, what, "no answer within 5 s")),
            Guarded::Refused(refused) => Err(err(self.backend, what, refused)),
        }
    }

    async fn pool(&self) -> Result<&Pool, StoreError> {
        self.pool
            .get_or_try_init(|| async {
                let pool = match &self.target {
                    None => {
                        return Err(StoreError::new(self.backend, "the URL is not usable"));
                    }
                    Some(Target::Sqlite(o)) => {
                        let file = o.get_filename();
                        if let Some(dir) = file.parent()
                            && !dir.as_os_str().is_empty()
                        {
                            create_private_dir(dir).map_err(|e| {
                                err(self.backend, &format!("cannot create {}", dir.display()), e)
                            })?;
                        }
                        // Before SQLite opens it: the -wal and -shm files get the database
                        // file's mode, and they hold whole records.
                        crate::files::private_sqlite_file(file).map_err(|e| {
                            err(
                                self.backend,
                                &format!("cannot create {}", file.display()),
                                e,
                            )
                        })?;
                        Pool::Sqlite(
                            SqlitePoolOptions::new()
                                .max_connections(4)
                                .acquire_timeout(TIMEOUT)
                                .connect_lazy_with((**o).clone()),
                        )
                    }
                    Some(Target::Postgres(o)) => Pool::Postgres(
                        PgPoolOptions::new()
                            .max_connections(4)
                            .acquire_timeout(TIMEOUT)
                            .idle_timeout(Duration::from_secs(300))
                            .connect_lazy_with((**o).clone()),
                    ),
                };
                self.create_table(&pool).await?;
                Ok(pool)
            })
            .await
    }

    async fn create_table(&self, pool: &Pool) -> Result<(), StoreError> {
        let create = format!(
            "CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, username TEXT NOT NULL, \
             expires_at BIGINT NOT NULL, record TEXT NOT NULL)"
        );
        let create_shared = format!(
            "CREATE TABLE IF NOT EXISTS {SHARED_TABLE} (name TEXT PRIMARY KEY, \
             expires_at BIGINT NOT NULL, record TEXT NOT NULL)"
        );
        match pool {
            Pool::Sqlite(p) => {
                for sql in [&create, &create_shared] {
                    self.timed("cannot create the table", sqlx::query(sql).execute(p))
                        .await?;
                }
            }
            Pool::Postgres(p) => {
                // Replicas starting together would race on the catalog: serialise them.
                let mut tx = self.timed("cannot connect", p.begin()).await?;
                self.timed(
                    "cannot lock",
                    sqlx::query("SELECT pg_advisory_xact_lock($1)")
                        .bind(PG_LOCK_KEY)
                        .execute(&mut *tx),
                )
                .await?;
                for sql in [&create, &create_shared] {
                    self.timed(
                        "cannot create the table",
                        sqlx::query(sql).execute(&mut *tx),
                    )
                    .await?;
                }
                self.timed("cannot commit", tx.commit()).await?;
            }
        }
        Ok(())
    }

    /// A new row; false when the id exists already (never replaces one).
    pub(super) async fn insert(
        &self,
        id: &str,
        user: &str,
        value: &[u8],
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let record = std::str::from_utf8(value)
            .map_err(|_| StoreError::new(self.backend, "a record is not UTF-8"))?;
        let expires = i64::try_from(expires_at).unwrap_or(i64::MAX);
        let sql = format!(
            "INSERT INTO {TABLE} (id, username, expires_at, record) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (id) DO NOTHING"
        );
        let done = on_pool!(pool, p => self
            .timed(
                "cannot store a password",
                sqlx::query(&sql).bind(id).bind(user).bind(expires).bind(record).execute(p),
            )
            .await?
            .rows_affected());
        self.sweep(pool).await?;
        Ok(done == 1)
    }

    /// Compare-and-set: replaces the row only while its record is still `seen` (one statement,
    /// atomic in both databases); false when it changed or was deleted. Never inserts.
    pub(super) async fn update(
        &self,
        id: &str,
        seen: &[u8],
        user: &str,
        value: &[u8],
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let utf8 = |v| {
            std::str::from_utf8(v)
                .map_err(|_| StoreError::new(self.backend, "a record is not UTF-8"))
        };
        let (seen, record) = (utf8(seen)?, utf8(value)?);
        let expires = i64::try_from(expires_at).unwrap_or(i64::MAX);
        let sql = format!(
            "UPDATE {TABLE} SET username = $1, expires_at = $2, record = $3 \
             WHERE id = $4 AND record = $5"
        );
        let done = on_pool!(pool, p => self
            .timed(
                "cannot update a password",
                sqlx::query(&sql)
                    .bind(user)
                    .bind(expires)
                    .bind(record)
                    .bind(id)
                    .bind(seen)
                    .execute(p),
            )
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// Deletes expired rows, at most once per [`SWEEP_EVERY`].
    async fn sweep(&self, pool: &Pool) -> Result<(), StoreError> {
        let now = unix_now();
        if now.saturating_sub(self.last_sweep.load(Ordering::Relaxed)) >= SWEEP_EVERY {
            self.last_sweep.store(now, Ordering::Relaxed);
            let now = i64::try_from(now).unwrap_or(i64::MAX);
            for table in [TABLE, SHARED_TABLE] {
                let sql = format!("DELETE FROM {table} WHERE expires_at <= $1");
                on_pool!(pool, p => self
                    .timed("cannot delete expired rows", sqlx::query(&sql).bind(now).execute(p))
                    .await
                    .map(|_| ())?);
            }
        }
        Ok(())
    }

    pub(super) async fn get(&self, id: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let pool = self.pool().await?;
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let sql = format!("SELECT record FROM {TABLE} WHERE id = $1 AND expires_at > $2");
        let row: Option<(String,)> = on_pool!(pool, p => self
            .timed(
                "cannot read a password",
                sqlx::query_as(&sql).bind(id).bind(now).fetch_optional(p),
            )
            .await?);
        Ok(row.map(|(r,)| r.into_bytes()))
    }

    /// Every unexpired `(id, record)`, oldest first.
    pub(super) async fn list(&self) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let pool = self.pool().await?;
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let sql =
            format!("SELECT id, record FROM {TABLE} WHERE expires_at > $1 ORDER BY expires_at, id");
        let rows: Vec<(String, String)> = on_pool!(pool, p => self
            .timed("cannot list the passwords", sqlx::query_as(&sql).bind(now).fetch_all(p))
            .await?);
        Ok(rows
            .into_iter()
            .map(|(id, r)| (id, r.into_bytes()))
            .collect())
    }

    pub(super) async fn delete(&self, id: &str) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let sql = format!("DELETE FROM {TABLE} WHERE id = $1");
        let done = on_pool!(pool, p => self
            .timed("cannot delete a password", sqlx::query(&sql).bind(id).execute(p))
            .await?
            .rows_affected());
        Ok(done > 0)
    }
}

/// The shared state (`registry_auth_shared_state`): the same operations as on the minted
/// passwords, on rows named by the caller.
impl SqlStore {
    /// A new row; false when the name exists (and has not expired) already.
    pub(super) async fn shared_insert(
        &self,
        name: &str,
        value: &[u8],
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let record = std::str::from_utf8(value)
            .map_err(|_| StoreError::new(self.backend, "a record is not UTF-8"))?;
        let expires = i64::try_from(expires_at).unwrap_or(i64::MAX);
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        // An expired row counts as absent: replaced in the same statement.
        let sql = format!(
            "INSERT INTO {SHARED_TABLE} (name, expires_at, record) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET expires_at = excluded.expires_at, \
             record = excluded.record WHERE {SHARED_TABLE}.expires_at <= $4"
        );
        let done = on_pool!(pool, p => self
            .timed(
                "cannot store shared state",
                sqlx::query(&sql).bind(name).bind(expires).bind(record).bind(now).execute(p),
            )
            .await?
            .rows_affected());
        self.sweep(pool).await?;
        Ok(done == 1)
    }

    /// Compare-and-set on a shared row (unexpired); false when it changed or is gone.
    pub(super) async fn shared_update(
        &self,
        name: &str,
        seen: &[u8],
        value: &[u8],
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let utf8 = |v| {
            std::str::from_utf8(v)
                .map_err(|_| StoreError::new(self.backend, "a record is not UTF-8"))
        };
        let (seen, record) = (utf8(seen)?, utf8(value)?);
        let expires = i64::try_from(expires_at).unwrap_or(i64::MAX);
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let sql = format!(
            "UPDATE {SHARED_TABLE} SET expires_at = $1, record = $2 \
             WHERE name = $3 AND record = $4 AND expires_at > $5"
        );
        let done = on_pool!(pool, p => self
            .timed(
                "cannot update shared state",
                sqlx::query(&sql)
                    .bind(expires)
                    .bind(record)
                    .bind(name)
                    .bind(seen)
                    .bind(now)
                    .execute(p),
            )
            .await?
            .rows_affected());
        Ok(done == 1)
    }

    /// The unexpired row's record.
    pub(super) async fn shared_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let pool = self.pool().await?;
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let sql = format!("SELECT record FROM {SHARED_TABLE} WHERE name = $1 AND expires_at > $2");
        let row: Option<(String,)> = on_pool!(pool, p => self
            .timed(
                "cannot read shared state",
                sqlx::query_as(&sql).bind(name).bind(now).fetch_optional(p),
            )
            .await?);
        Ok(row.map(|(r,)| r.into_bytes()))
    }

    /// Deletes a row; true when there was an unexpired one.
    pub(super) async fn shared_delete(&self, name: &str) -> Result<bool, StoreError> {
        let pool = self.pool().await?;
        let now = i64::try_from(unix_now()).unwrap_or(i64::MAX);
        let sql = format!("DELETE FROM {SHARED_TABLE} WHERE name = $1 AND expires_at > $2");
        let done = on_pool!(pool, p => self
            .timed("cannot delete shared state", sqlx::query(&sql).bind(name).bind(now).execute(p))
            .await?
            .rows_affected());
        Ok(done > 0)
    }
}

/// A database error in one line, without the connection string.
fn describe(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(d) => format!("the database refused: {}", d.message()),
        sqlx::Error::Io(io) => format!("I/O error: {io}"),
        sqlx::Error::PoolTimedOut => "no connection available (is the database up?)".to_owned(),
        sqlx::Error::Tls(t) => format!("TLS error: {t}"),
        other => other.to_string(),
    }
}

#[cfg(unix)]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

#[cfg(not(unix))]
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls() {
        check_postgres("postgres://ra:pw@127.0.0.1:5432/registry").unwrap();
        check_postgres("postgresql://ra@localhost/registry?sslmode=verify-full").unwrap();
        let e = check_postgres("mysql://ra:secret@x/db").unwrap_err();
        assert!(!e.contains("secret"));
    }
}
