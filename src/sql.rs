//! The SQL database behind `sql_auth` (users) and `acl_sql` (ACL rows): PostgreSQL or SQLite,
//! one schema (`migrations/`), applied by registry-auth itself.
//!
//! * **Connections.** A small pool per database, created on first use (so `check-config`
//!   never connects and a database that is down at start-up only fails the requests that need
//!   it). Broken connections are dropped and replaced, so a database that comes back is used
//!   again without a restart. Every query is bounded by `timeout`.
//! * **Schema.** `migrations/{postgres,sqlite}/NNNN_name.sql`, embedded in the binary, applied
//!   in order at the first connection (or by `registry-auth db migrate`) and recorded with
//!   their SHA-256 in `registry_auth_schema`. PostgreSQL takes an advisory lock and SQLite an
//!   immediate transaction, so replicas starting together apply each migration once. When
//!   everything is applied, start-up only reads `registry_auth_schema`: the runtime account
//!   needs no DDL rights once a privileged account has run `db migrate` (`sql/migrations.rs`).
//! * **Secrets.** The URL may hold a password: it is never logged or shown; [`SqlDb::describe`]
//!   gives it with the password replaced by `***`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use aws_lc_rs::digest;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use tokio::sync::OnceCell;

use crate::breaker::{Breaker, Outcome, Refused};
use crate::health::Health;

/// Default most connections per database.
pub const DEFAULT_MAX_CONNECTIONS: u32 = 4;
/// Default time allowed for connecting and for each query.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The table that records applied migrations.
pub const SCHEMA_TABLE: &str = "registry_auth_schema";

/// Why the database could not answer. The message never contains the URL or a password.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct SqlError {
    /// What went wrong.
    pub message: String,
    /// The server refused a value the query carried (SQLSTATE class 22, "data exception": a
    /// NUL or a character the database's encoding cannot hold, a value too long…): the input's
    /// fault, not a sign that the database is down.
    pub bad_input: bool,
}

impl SqlError {
    fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            bad_input: false,
        }
    }
}

/// Which database.
#[derive(Clone)]
enum Target {
    Postgres(Box<PgConnectOptions>),
    Sqlite(Box<SqliteConnectOptions>),
}

#[derive(Debug)]
enum Pool {
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// Runs `$body` with `$p` bound to the pool, whichever database it is (the queries are the same
/// text for both unless a dialect function says otherwise).
macro_rules! on_pool {
    ($pool:expr, $p:ident => $body:expr) => {
        match $pool {
            Pool::Postgres($p) => $body,
            Pool::Sqlite($p) => $body,
        }
    };
}

// After `on_pool!`, which it uses.
mod migrations;

pub use migrations::Migration;

/// A configured database (not connected until first used).
pub struct SqlDb {
    target: Target,
    /// The URL with its password replaced by `***`.
    redacted: String,
    /// Identifies the database (a digest of the URL), to share state across reloads.
    identity: String,
    max_connections: u32,
    timeout: Duration,
    pool: OnceCell<Pool>,
    /// Migrations applied when the pool was created (reported by [`SqlDb::migrate`]).
    applied_at_connect: std::sync::Mutex<Vec<Migration>>,
    /// Fails calls fast while a PostgreSQL server cannot be reached.
    breaker: Breaker,
    /// A SQLite file to create owner-only (`0600`) when missing, before SQLite creates it
    /// world-readable: it holds bcrypt hashes.
    create_private: Option<std::path::PathBuf>,
}

impl fmt::Debug for SqlDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlDb")
            .field("url", &self.redacted)
            .field("max_connections", &self.max_connections)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// One user row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// The account name.
    pub name: String,
    /// The bcrypt hash.
    pub password_hash: String,
    /// The labels, as JSON text.
    pub labels: String,
}

/// One ACL row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AclRow {
    /// Its position (ascending).
    pub seq: i64,
    /// The entry, as JSON text.
    pub entry: String,
}

impl SqlDb {
    /// Parses a URL: `postgres://…` / `postgresql://…` (libpq-style URL, `sslmode=require` or
    /// `verify-full` for TLS, `host=/run/postgresql` for a unix socket) or `sqlite:PATH` /
    /// `sqlite://PATH` (a relative `PATH` is relative to `base`, the config folder; the file is
    /// created when missing unless the URL sets `mode=`). The error never repeats the URL.
    pub fn parse(
        url: &str,
        base: &Path,
        max_connections: u32,
        timeout: Duration,
    ) -> Result<Self, String> {
        let url = url.trim();
        let redacted = redact_url(url);
        let scrub = |message: String| scrub_secret(&message, url);
        let mut create_private = None;
        let target = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let options = PgConnectOptions::from_str(url).map_err(|e| {
                scrub(format!(
                    "not a usable PostgreSQL URL ({e}); write \
                     `postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE[?sslmode=verify-full]`"
                ))
            })?;
            Target::Postgres(Box::new(options.application_name("registry-auth")))
        } else if let Some(rest) = url.strip_prefix("sqlite:") {
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let (path, query) = match rest.split_once('?') {
                Some((p, q)) => (p, Some(q)),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err("a SQLite URL needs a file: `sqlite:PATH`".to_owned());
            }
            if path == ":memory:" || query.is_some_and(|q| q.contains("mode=memory")) {
                return Err(
                    "an in-memory SQLite database would be empty at every start and differ per \
                     connection; use a file, e.g. `sqlite:registry-auth.db`"
                        .to_owned(),
                );
            }
            let mut options = SqliteConnectOptions::from_str(&format!("sqlite://{rest}"))
                .map_err(|e| scrub(format!("not a usable SQLite URL ({e})")))?;
            let file = Path::new(path);
            if file.is_relative() {
                options = options.filename(base.join(file));
            }
            if !query.is_some_and(|q| q.contains("mode=")) {
                options = options.create_if_missing(true);
                create_private = Some(options.get_filename().to_path_buf());
            }
            Target::Sqlite(Box::new(options.busy_timeout(timeout).foreign_keys(true)))
        } else {
            return Err(format!(
                "`{redacted}` is not a supported database URL; use `postgres://…` or \
                 `sqlite:PATH` (MySQL is not supported)"
            ));
        };
        // A relative SQLite path names another file in another config folder.
        let identity = match &target {
            Target::Postgres(_) => url.to_owned(),
            Target::Sqlite(o) => format!("sqlite:{}", o.get_filename().display()),
        };
        Ok(Self {
            target,
            redacted,
            identity: hex(digest::digest(&digest::SHA256, identity.as_bytes()).as_ref()),
            max_connections: max_connections.max(1),
            timeout,
            pool: OnceCell::new(),
            applied_at_connect: std::sync::Mutex::new(Vec::new()),
            breaker: Breaker::default(),
            create_private,
        })
    }

    /// The URL without its password, for logs and messages.
    pub fn describe(&self) -> &str {
        &self.redacted
    }

    /// `postgres` or `sqlite`.
    pub fn kind(&self) -> &'static str {
        match self.target {
            Target::Postgres(_) => "postgres",
            Target::Sqlite(_) => "sqlite",
        }
    }

    /// A stable identity of the database (a digest of its URL, with a SQLite path resolved;
    /// holds no secret).
    pub fn identity(&self) -> &str {
        &self.identity
    }

    /// Same database and settings (two sections may share one pool).
    pub fn same_as(&self, other: &Self) -> bool {
        self.identity == other.identity
            && self.max_connections == other.max_connections
            && self.timeout == other.timeout
    }

    /// Bounds `fut` by the configured timeout and turns its error into a [`SqlError`].
    async fn timed<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, sqlx::Error>>,
    ) -> Result<T, SqlError> {
        let remote = matches!(self.target, Target::Postgres(_));
        match guarded(&self.breaker, remote, self.timeout, fut).await {
            Guarded::Done(Ok(v)) => Ok(v),
            Guarded::Done(Err(e)) => Err(SqlError {
                message: format!("{what} on {}: {}", self.redacted, describe_sqlx_error(&e)),
                bad_input: is_bad_input(&e),
            }),
            Guarded::TimedOut => Err(SqlError::new(format!(
                "{what} on {}: no answer within {:?}",
                self.redacted, self.timeout
            ))),
            Guarded::Refused(refused) => Err(SqlError::new(format!(
                "{what} on {}: {refused}",
                self.redacted
            ))),
        }
    }

    /// Records in `health` (one per backend: `sql_auth`, `acl_sql`) what a call's result says
    /// about the database: up when it answered, even to refuse a bad value; down otherwise.
    pub fn record<T>(health: &Health, result: &Result<T, SqlError>) {
        match result {
            Ok(_) => health.up(),
            Err(e) if e.bad_input => health.up(),
            Err(e) => health.down(e.to_string()),
        }
    }

    /// The pool, connected and migrated on first use. A failure leaves nothing behind: the next
    /// call tries again.
    async fn pool(&self) -> Result<&Pool, SqlError> {
        self.pool
            .get_or_try_init(|| async {
                if let Some(file) = &self.create_private
                    && !file.exists()
                {
                    crate::files::create_owner_only(file).map_err(|e| {
                        SqlError::new(format!("cannot create {}: {e}", file.display()))
                    })?;
                }
                let pool = match &self.target {
                    Target::Postgres(o) => Pool::Postgres(
                        PgPoolOptions::new()
                            .max_connections(self.max_connections)
                            .acquire_timeout(self.timeout)
                            .idle_timeout(Duration::from_secs(300))
                            .connect_lazy_with((**o).clone()),
                    ),
                    Target::Sqlite(o) => Pool::Sqlite(
                        SqlitePoolOptions::new()
                            .max_connections(self.max_connections)
                            .acquire_timeout(self.timeout)
                            .idle_timeout(Duration::from_secs(300))
                            .connect_lazy_with((**o).clone()),
                    ),
                };
                let applied = self.migrate_pool(&pool).await?;
                if let Ok(mut a) = self.applied_at_connect.lock() {
                    a.extend(applied);
                }
                Ok(pool)
            })
            .await
    }

    /// The user `name`, if any.
    pub async fn find_user(&self, name: &str) -> Result<Option<UserRow>, SqlError> {
        let pool = self.pool().await?;
        // The row's own `name` is the account, not the presented one: a column with a
        // case-insensitive collation (citext, `COLLATE NOCASE`) matches several spellings.
        let row: Option<(String, String, String)> = on_pool!(pool, p => self
            .timed(
                "cannot read the user",
                sqlx::query_as(
                    "SELECT name, password_hash, CAST(labels AS TEXT) FROM registry_auth_users \
                     WHERE name = $1",
                )
                .bind(name)
                .fetch_optional(p),
            )
            .await?);
        Ok(row.map(|(name, password_hash, labels)| UserRow {
            name,
            password_hash,
            labels,
        }))
    }

    /// Every user, by name.
    pub async fn list_users(&self) -> Result<Vec<UserRow>, SqlError> {
        let pool = self.pool().await?;
        let rows: Vec<(String, String, String)> = on_pool!(pool, p => self
            .timed(
                "cannot read the users",
                sqlx::query_as(
                    "SELECT name, password_hash, CAST(labels AS TEXT) FROM registry_auth_users \
                     ORDER BY name",
                )
                .fetch_all(p),
            )
            .await?);
        Ok(rows
            .into_iter()
            .map(|(name, password_hash, labels)| UserRow {
                name,
                password_hash,
                labels,
            })
            .collect())
    }

    /// Adds a user; `false` when the name is taken.
    pub async fn insert_user(&self, user: &UserRow) -> Result<bool, SqlError> {
        let pool = self.pool().await?;
        let sql = match self.target {
            Target::Postgres(_) => {
                "INSERT INTO registry_auth_users (name, password_hash, labels) \
                 VALUES ($1, $2, CAST($3 AS JSONB)) ON CONFLICT (name) DO NOTHING"
            }
            Target::Sqlite(_) => {
                "INSERT INTO registry_auth_users (name, password_hash, labels) \
                 VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING"
            }
        };
        let affected = on_pool!(pool, p => self
            .timed(
                "cannot add the user",
                sqlx::query(sql)
                    .bind(&user.name)
                    .bind(&user.password_hash)
                    .bind(&user.labels)
                    .execute(p),
            )
            .await?
            .rows_affected());
        Ok(affected == 1)
    }

    /// Replaces a user's password hash; `false` when there is no such user.
    pub async fn set_password(&self, name: &str, password_hash: &str) -> Result<bool, SqlError> {
        let pool = self.pool().await?;
        let affected = on_pool!(pool, p => self
            .timed(
                "cannot change the password",
                sqlx::query(
                    "UPDATE registry_auth_users SET password_hash = $1, \
                     updated_at = CURRENT_TIMESTAMP WHERE name = $2",
                )
                .bind(password_hash)
                .bind(name)
                .execute(p),
            )
            .await?
            .rows_affected());
        Ok(affected == 1)
    }

    /// Removes a user; `false` when there is no such user.
    pub async fn delete_user(&self, name: &str) -> Result<bool, SqlError> {
        let pool = self.pool().await?;
        let affected = on_pool!(pool, p => self
            .timed(
                "cannot remove the user",
                sqlx::query("DELETE FROM registry_auth_users WHERE name = $1")
                    .bind(name)
                    .execute(p),
            )
            .await?
            .rows_affected());
        Ok(affected == 1)
    }

    /// The ACL rows in `seq` order.
    pub async fn acl_rows(&self) -> Result<Vec<AclRow>, SqlError> {
        let pool = self.pool().await?;
        let rows: Vec<(i64, String)> = on_pool!(pool, p => self
            .timed(
                "cannot read the ACL",
                sqlx::query_as("SELECT seq, CAST(entry AS TEXT) FROM registry_auth_acl ORDER BY seq")
                    .fetch_all(p),
            )
            .await?);
        Ok(rows
            .into_iter()
            .map(|(seq, entry)| AclRow { seq, entry })
            .collect())
    }

    /// Runs one statement (for tests and tools): returns the rows affected.
    pub async fn execute(&self, sql: &str) -> Result<u64, SqlError> {
        let pool = self.pool().await?;
        Ok(on_pool!(pool, p => self
            .timed("the statement failed", sqlx::raw_sql(sql).execute(p))
            .await?
            .rows_affected()))
    }
}

/// How a database call behind a [`Breaker`] ended.
pub(crate) enum Guarded<T> {
    /// Not tried: the server could not be reached moments ago.
    Refused(Refused),
    /// The call's own result.
    Done(Result<T, sqlx::Error>),
    /// No answer within the timeout.
    TimedOut,
}

/// Runs one database call within `timeout` behind `breaker`, and records whether the server was
/// reached. `remote` is false for a local SQLite file: nothing to wait for, so it never opens the
/// breaker. Shared by the `sql_auth`/`acl_sql` database and the password store.
pub(crate) async fn guarded<T>(
    breaker: &Breaker,
    remote: bool,
    timeout: Duration,
    fut: impl Future<Output = Result<T, sqlx::Error>>,
) -> Guarded<T> {
    let permit = match breaker.admit() {
        Ok(permit) => permit,
        Err(refused) => return Guarded::Refused(refused),
    };
    let (result, outcome) = match tokio::time::timeout(timeout, fut).await {
        Ok(Ok(v)) => (Guarded::Done(Ok(v)), Outcome::Reached),
        Ok(Err(e)) => {
            let outcome = reach_of(&e);
            (Guarded::Done(Err(e)), outcome)
        }
        Err(_) => (Guarded::TimedOut, Outcome::Unreachable),
    };
    breaker.record(permit, if remote { outcome } else { Outcome::Reached });
    result
}

/// The server refused a value the query carried: SQLSTATE class 22 ("data exception", e.g.
/// 22021 for a NUL in text, 22P05 for a character the encoding cannot hold).
fn is_bad_input(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db.code().is_some_and(|c| c.starts_with("22")),
        _ => false,
    }
}

/// Whether a sqlx error means the server could not be reached (for the [`Breaker`]).
fn reach_of(e: &sqlx::Error) -> Outcome {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => Outcome::Unreachable,
        _ => Outcome::Reached,
    }
}

/// A sqlx error, without anything that could hold the URL.
fn describe_sqlx_error(e: &sqlx::Error) -> String {
    match e {
        sqlx::Error::Database(db) => db.message().to_owned(),
        sqlx::Error::Io(io) => format!("connection failed: {io}"),
        sqlx::Error::Tls(tls) => format!("TLS failed: {tls}"),
        sqlx::Error::PoolTimedOut => "no connection could be made in time".to_owned(),
        sqlx::Error::PoolClosed => "the connection pool is closed".to_owned(),
        sqlx::Error::Protocol(m) => format!("protocol error: {m}"),
        sqlx::Error::ColumnDecode { index, source } => {
            format!("column {index} has an unexpected type: {source}")
        }
        other => other.to_string(),
    }
}

/// The URL with the password (userinfo and a `password=` parameter) replaced by `***`.
pub fn redact_url(url: &str) -> String {
    let mut out = url.to_owned();
    if let Some(start) = out.find("://").map(|i| i + 3) {
        let end = out[start..]
            .find(['/', '?', '#'])
            .map_or(out.len(), |i| start + i);
        if let Some(at) = out[start..end].rfind('@').map(|i| start + i)
            && let Some(colon) = out[start..at].find(':').map(|i| start + i)
        {
            out.replace_range(colon + 1..at, "***");
        }
    }
    if let Some(q) = out.find('?') {
        let (head, query) = out.split_at(q + 1);
        let query: Vec<String> = query
            .split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=***"),
                _ => kv.to_owned(),
            })
            .collect();
        out = format!("{head}{}", query.join("&"));
    }
    out
}

/// `message` with any password of `url` replaced by `***`.
fn scrub_secret(message: &str, url: &str) -> String {
    let mut out = message.replace(url, &redact_url(url));
    for secret in url_passwords(url) {
        if secret.len() >= 3 {
            out = out.replace(&secret, "***");
        }
    }
    out
}

fn url_passwords(url: &str) -> Vec<String> {
    let mut found = Vec::new();
    if let Some(start) = url.find("://").map(|i| i + 3) {
        let end = url[start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| start + i);
        if let Some(at) = url[start..end].rfind('@').map(|i| start + i)
            && let Some(colon) = url[start..at].find(':').map(|i| start + i)
        {
            found.push(url[colon + 1..at].to_owned());
        }
    }
    if let Some((_, query)) = url.split_once('?') {
        for kv in query.split('&') {
            if let Some((k, v)) = kv.split_once('=')
                && k.eq_ignore_ascii_case("password")
            {
                found.push(v.to_owned());
            }
        }
    }
    found
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted() {
        assert_eq!(
            redact_url("postgres://ra:s3cret@db:5432/reg?sslmode=require"),
            "postgres://ra:***@db:5432/reg?sslmode=require"
        );
        assert_eq!(
            redact_url("postgres://ra@db/reg?password=s3cret&sslmode=disable"),
            "postgres://ra@db/reg?password=***&sslmode=disable"
        );
        assert_eq!(redact_url("postgres://db/reg"), "postgres://db/reg");
        assert_eq!(redact_url("sqlite:users.db"), "sqlite:users.db");
        // A password containing `@` and `:`.
        assert_eq!(
            redact_url("postgres://ra:p@ss:w@db/reg"),
            "postgres://ra:***@db/reg"
        );
    }

    #[test]
    fn parse_accepts_postgres_and_sqlite_and_never_echoes_the_password() {
        let base = Path::new("/etc/registry-auth");
        let db = SqlDb::parse(
            "postgres://ra:s3cret@127.0.0.1:5432/reg",
            base,
            4,
            DEFAULT_TIMEOUT,
        )
        .unwrap();
        assert_eq!(db.kind(), "postgres");
        assert_eq!(db.describe(), "postgres://ra:***@127.0.0.1:5432/reg");
        assert!(!format!("{db:?}").contains("s3cret"));
        let db = SqlDb::parse("sqlite:users.db", base, 4, DEFAULT_TIMEOUT).unwrap();
        assert_eq!(db.kind(), "sqlite");
        let Target::Sqlite(o) = &db.target else {
            panic!("sqlite")
        };
        assert_eq!(o.get_filename(), Path::new("/etc/registry-auth/users.db"));
        let elsewhere = SqlDb::parse("sqlite:users.db", Path::new("/srv"), 4, DEFAULT_TIMEOUT);
        assert_ne!(elsewhere.unwrap().identity(), db.identity());
        let db = SqlDb::parse("sqlite:///var/lib/ra.db", base, 4, DEFAULT_TIMEOUT).unwrap();
        let Target::Sqlite(o) = &db.target else {
            panic!("sqlite")
        };
        assert_eq!(o.get_filename(), Path::new("/var/lib/ra.db"));

        for bad in [
            "mysql://ra:s3cret@db/reg",
            "postgres://ra:s3cret@db:notaport/reg",
            "sqlite::memory:",
            "sqlite:",
            "sqlite:x.db?bogus=1",
        ] {
            let err = SqlDb::parse(bad, base, 4, DEFAULT_TIMEOUT).unwrap_err();
            assert!(!err.contains("s3cret"), "{bad}: {err}");
        }
    }

    #[tokio::test]
    async fn sqlite_end_to_end_users_and_acl_rows() {
        let dir = tempfile::tempdir().unwrap();
        let db = SqlDb::parse("sqlite:ra.db", dir.path(), 2, DEFAULT_TIMEOUT).unwrap();
        assert_eq!(db.migrate().await.unwrap().len(), 1, "first migration");
        assert!(db.migrate().await.unwrap().is_empty(), "nothing left");
        assert!(dir.path().join("ra.db").exists());
        // It holds bcrypt hashes: created owner-only (its journal files take its mode).
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let meta = std::fs::metadata(dir.path().join("ra.db")).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        }
        let alice = UserRow {
            name: "alice".into(),
            password_hash: "$2b$04$x".into(),
            labels: r#"{"team":["dev"]}"#.into(),
        };
        assert!(db.insert_user(&alice).await.unwrap());
        assert!(!db.insert_user(&alice).await.unwrap(), "taken");
        assert_eq!(db.find_user("alice").await.unwrap(), Some(alice.clone()));
        assert_eq!(db.find_user("bob").await.unwrap(), None);
        assert!(db.set_password("alice", "$2b$04$y").await.unwrap());
        assert!(!db.set_password("bob", "$2b$04$y").await.unwrap());
        assert_eq!(db.list_users().await.unwrap().len(), 1);
        // Labels must be a JSON object.
        let bad = UserRow {
            name: "bad".into(),
            password_hash: "h".into(),
            labels: "[1]".into(),
        };
        assert!(db.insert_user(&bad).await.is_err());
        assert!(db.delete_user("alice").await.unwrap());
        assert!(!db.delete_user("alice").await.unwrap());
        db.execute(
            r#"INSERT INTO registry_auth_acl (seq, entry) VALUES
               (20, '{"match": {}, "actions": []}'),
               (10, '{"match": {"account": "a"}, "actions": ["*"]}')"#,
        )
        .await
        .unwrap();
        let rows = db.acl_rows().await.unwrap();
        assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [10, 20]);
        // A second handle on the same file sees the schema applied.
        let again = SqlDb::parse("sqlite:ra.db", dir.path(), 2, DEFAULT_TIMEOUT).unwrap();
        assert!(again.migrate().await.unwrap().is_empty());
    }
}
