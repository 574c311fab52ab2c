//! The schema of the SQL database: the migrations embedded from `migrations/{postgres,sqlite}/`,
//! applied in order under a lock (PostgreSQL: an advisory lock; SQLite: an immediate
//! transaction) and recorded with their SHA-256 in `registry_auth_schema`; an applied
//! migration whose SQL changed is refused.

use aws_lc_rs::digest;
use sqlx::{Executor as _, Row as _};

use super::{Pool, SCHEMA_TABLE, SqlDb, SqlError, Target, describe_sqlx_error, hex};

/// A migration shipped with the binary.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Its number (the `NNNN` of the file name).
    pub version: i64,
    /// Its name (the rest of the file name).
    pub name: &'static str,
    sql: &'static str,
}

impl Migration {
    /// SHA-256 (hex) of its SQL, recorded when it is applied.
    pub fn checksum(&self) -> String {
        hex(digest::digest(&digest::SHA256, self.sql.as_bytes()).as_ref())
    }
}

const POSTGRES_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "users_and_acl",
    sql: include_str!("../../migrations/postgres/0001_users_and_acl.sql"),
}];

const SQLITE_MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "users_and_acl",
    sql: include_str!("../../migrations/sqlite/0001_users_and_acl.sql"),
}];

/// A key for `pg_advisory_xact_lock`: "regauth1" as a big-endian integer.
const PG_LOCK_KEY: i64 = 0x7265_6761_7574_6831;

impl SqlDb {
    /// The migrations this database kind gets.
    pub fn migrations(&self) -> &'static [Migration] {
        match self.target {
            Target::Postgres(_) => POSTGRES_MIGRATIONS,
            Target::Sqlite(_) => SQLITE_MIGRATIONS,
        }
    }

    /// Applies the pending migrations; returns the ones this handle applied (at its first
    /// connection or now).
    pub async fn migrate(&self) -> Result<Vec<Migration>, SqlError> {
        let pool = self.pool().await?;
        let mut applied = match self.applied_at_connect.lock() {
            Ok(mut a) => std::mem::take(&mut *a),
            Err(_) => Vec::new(),
        };
        // Usually nothing is left, unless another process changed the schema meanwhile.
        applied.extend(self.migrate_pool(pool).await?);
        Ok(applied)
    }

    pub(super) async fn migrate_pool(&self, pool: &Pool) -> Result<Vec<Migration>, SqlError> {
        let wanted = self.migrations();
        if self.pending(pool, wanted).await?.is_empty() {
            return Ok(Vec::new());
        }
        // Under a lock, look again and apply what is still missing. The transaction is driven
        // through `Executor` methods (boxed `Send` futures): the `Query` methods' futures over a
        // `&mut` connection defeat the compiler's proof that the server's futures are `Send`.
        let applied = on_pool!(pool, p => {
            let begin = match self.target {
                Target::Postgres(_) => "BEGIN",
                Target::Sqlite(_) => "BEGIN IMMEDIATE",
            };
            let mut tx = self.timed("cannot start the migration", p.begin_with(begin)).await?;
            if matches!(self.target, Target::Postgres(_)) {
                let lock = sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(PG_LOCK_KEY);
                self.timed("cannot lock the schema", tx.as_mut().execute(lock))
                    .await?;
            }
            self.timed(
                "cannot create the schema table",
                tx.as_mut().execute(sqlx::raw_sql(create_schema_table(&self.target))),
            )
            .await?;
            let select = format!("SELECT version, checksum FROM {SCHEMA_TABLE}");
            let rows = self
                .timed(
                    "cannot read the schema table",
                    tx.as_mut().fetch_all(sqlx::query(&select)),
                )
                .await?;
            let mut seen = Vec::with_capacity(rows.len());
            for row in &rows {
                let version: i64 = row
                    .try_get(0)
                    .map_err(|e| SqlError::new(describe_sqlx_error(&e)))?;
                let checksum: String = row
                    .try_get(1)
                    .map_err(|e| SqlError::new(describe_sqlx_error(&e)))?;
                seen.push((version, checksum));
            }
            let todo = compare(wanted, &seen)?;
            let insert = format!(
                "INSERT INTO {SCHEMA_TABLE} (version, name, checksum) VALUES ($1, $2, $3)"
            );
            for m in &todo {
                // Migrations may take longer than a query: no timeout here.
                tx.as_mut().execute(sqlx::raw_sql(m.sql)).await.map_err(|e| {
                    SqlError::new(format!(
                        "migration {:04}_{} failed on {}: {}",
                        m.version,
                        m.name,
                        self.redacted,
                        describe_sqlx_error(&e)
                    ))
                })?;
                let record = sqlx::query(&insert)
                    .bind(m.version)
                    .bind(m.name)
                    .bind(m.checksum());
                self.timed("cannot record the migration", tx.as_mut().execute(record))
                    .await?;
            }
            self.timed("cannot commit the migration", tx.commit()).await?;
            todo
        });
        for m in &applied {
            tracing::info!(
                database = %self.redacted,
                version = m.version,
                name = m.name,
                "applied a schema migration"
            );
        }
        Ok(applied)
    }

    /// The migrations not applied yet (without a lock; empty when all are there).
    async fn pending(
        &self,
        pool: &Pool,
        wanted: &'static [Migration],
    ) -> Result<Vec<Migration>, SqlError> {
        let exists: i64 = on_pool!(pool, p => self
            .timed(
                "cannot connect",
                sqlx::query_scalar(schema_table_exists(&self.target)).fetch_one(p),
            )
            .await?);
        if exists == 0 {
            return Ok(wanted.to_vec());
        }
        let rows: Vec<(i64, String)> = on_pool!(pool, p => self
            .timed(
                "cannot read the schema table",
                sqlx::query_as(&format!("SELECT version, checksum FROM {SCHEMA_TABLE}"))
                    .fetch_all(p),
            )
            .await?);
        compare(wanted, &rows)
    }
}

fn schema_table_exists(target: &Target) -> &'static str {
    match target {
        Target::Postgres(_) => {
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = current_schema() AND table_name = 'registry_auth_schema'"
        }
        Target::Sqlite(_) => {
            "SELECT count(*) FROM sqlite_master \
             WHERE type = 'table' AND name = 'registry_auth_schema'"
        }
    }
}

fn create_schema_table(target: &Target) -> &'static str {
    match target {
        Target::Postgres(_) => {
            "CREATE TABLE IF NOT EXISTS registry_auth_schema (\
             version BIGINT PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
        }
        Target::Sqlite(_) => {
            "CREATE TABLE IF NOT EXISTS registry_auth_schema (\
             version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, checksum TEXT NOT NULL, \
             applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)"
        }
    }
}

/// The wanted migrations that are not applied; an error when an applied one was changed.
/// Versions the binary does not know (a newer registry-auth migrated the database) are
/// tolerated with a warning: migrations only ever add.
fn compare(wanted: &[Migration], applied: &[(i64, String)]) -> Result<Vec<Migration>, SqlError> {
    let mut todo = Vec::new();
    for m in wanted {
        match applied.iter().find(|(v, _)| *v == m.version) {
            Some((_, sum)) if *sum != m.checksum() => {
                return Err(SqlError::new(format!(
                    "migration {:04}_{} in the database differs from the one in this binary \
                     (checksum {sum} vs {}); an applied migration must never change",
                    m.version,
                    m.name,
                    m.checksum()
                )));
            }
            Some(_) => {}
            None => todo.push(*m),
        }
    }
    let newest = wanted.iter().map(|m| m.version).max().unwrap_or(0);
    if let Some(v) = applied
        .iter()
        .map(|(v, _)| *v)
        .filter(|v| *v > newest)
        .max()
    {
        tracing::warn!(
            schema_version = v,
            known = newest,
            "the database schema is newer than this registry-auth knows; upgrade registry-auth"
        );
    }
    Ok(todo)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_and_checked() {
        for set in [POSTGRES_MIGRATIONS, SQLITE_MIGRATIONS] {
            for (i, m) in set.iter().enumerate() {
                assert_eq!(m.version, i as i64 + 1);
            }
        }
        let m = POSTGRES_MIGRATIONS[0];
        assert_eq!(compare(&[m], &[]).unwrap().len(), 1);
        assert!(compare(&[m], &[(1, m.checksum())]).unwrap().is_empty());
        let err = compare(&[m], &[(1, "0".repeat(64))]).unwrap_err();
        assert!(err.message.contains("must never change"), "{err}");
        // A newer schema is tolerated.
        assert!(
            compare(&[m], &[(1, m.checksum()), (2, "x".into())])
                .unwrap()
                .is_empty()
        );
    }
}
