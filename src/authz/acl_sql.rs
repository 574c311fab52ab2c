//! `acl_sql`: ACL entries in a SQL database (table `registry_auth_acl`: `seq`, `entry` JSON with
//! the YAML entry's shape `{match, actions, comment}`), evaluated like the static `acl` in
//! ascending `seq` order (first match wins; no match asks the next authorizer).
//!
//! The whole table is read into memory and compiled with [`Acl::compile`] when first needed,
//! then re-read every `cache_ttl` by a background task (only recompiled when the rows changed).
//! A read that fails, or a table with a broken row (bad JSON, an unknown key, an invalid
//! pattern…), keeps the previous ACL in force and logs why, naming the row's `seq`: a partial
//! ACL could grant what a missing deny row forbids. Without any ACL yet (the database was down
//! from the start), requests that reach `acl_sql` fail with a 5xx until it can be read. The last
//! good ACL also survives configuration reloads (it is kept per database).
//!
//! Requests never reach the database: their account, name and labels are matched in memory, so
//! no request value (a NUL in a name…) can make a query fail. `acl_sql` keeps its own health
//! record for `/readyz` (the last read of the table), apart from `sql_auth`'s even when both use
//! one database.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, LazyLock, Mutex, Once, Weak};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwapOption;
use aws_lc_rs::digest;
use tracing::{error, info, warn};

use super::{Acl, AclDecision, AuthzRequest};
use crate::config::file::AclEntrySpec;
use crate::health::Health;
use crate::sql::{AclRow, SqlDb};

const NAME: &str = "acl_sql";

/// Without any ACL yet, requests within this long of a failed read share its error instead of
/// each waiting for the database again.
const FAIL_FAST: Duration = Duration::from_secs(2);

/// An authorizer backend that could not decide (a 5xx). The message never holds a secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{backend}: {message}")]
pub struct AuthzBackendError {
    /// Config name of the backend.
    pub backend: &'static str,
    /// What went wrong.
    pub message: String,
}

/// One compiled version of the table.
#[derive(Debug)]
pub struct AclSnapshot {
    acl: Acl,
    /// `(seq, entry)` in evaluation order.
    rows: Vec<(i64, AclEntrySpec)>,
    /// Digest of the rows as read, to skip recompiling an unchanged table.
    digest: Vec<u8>,
    /// When these rows were first loaded.
    pub loaded_at: SystemTime,
}

impl AclSnapshot {
    /// The rows, `(seq, entry)`, in evaluation order.
    pub fn rows(&self) -> &[(i64, AclEntrySpec)] {
        &self.rows
    }

    /// The entry with this `seq`.
    pub fn entry(&self, seq: i64) -> Option<&AclEntrySpec> {
        self.rows.iter().find(|(s, _)| *s == seq).map(|(_, e)| e)
    }

    /// The compiled ACL.
    pub fn acl(&self) -> &Acl {
        &self.acl
    }
}

/// The last good snapshot per database, so a configuration reload starts from it.
static LAST_GOOD: LazyLock<Mutex<HashMap<String, Arc<AclSnapshot>>>> =
    LazyLock::new(|| Mutex::new(HashMap::new()));

/// The `acl_sql` authorizer. Clones share the snapshot.
#[derive(Clone)]
pub struct SqlAcl {
    inner: Arc<Inner>,
}

struct Inner {
    db: Arc<SqlDb>,
    /// What the last read of the table found (for `/readyz`), apart from `sql_auth`'s.
    health: Health,
    ttl: Duration,
    current: ArcSwapOption<AclSnapshot>,
    /// Held while reading the table (one read at a time); holds the last problem logged (so a
    /// persisting problem is logged once, not every `ttl`) and when it was seen.
    refresh: tokio::sync::Mutex<Option<(String, Instant)>>,
    ticker: Once,
}

impl fmt::Debug for SqlAcl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlAcl")
            .field("db", &self.inner.db)
            .field("cache_ttl", &self.inner.ttl)
            .field(
                "entries",
                &self.inner.current.load().as_ref().map(|s| s.rows.len()),
            )
            .finish()
    }
}

impl SqlAcl {
    /// The ACL in `db`, re-read every `ttl` (at least one second).
    pub fn new(db: Arc<SqlDb>, ttl: Duration) -> Self {
        let seeded = LAST_GOOD
            .lock()
            .ok()
            .and_then(|m| m.get(db.identity()).cloned());
        Self {
            inner: Arc::new(Inner {
                db,
                health: Health::named("acl_sql"),
                ttl: ttl.max(Duration::from_secs(1)),
                current: ArcSwapOption::new(seeded),
                refresh: tokio::sync::Mutex::new(None),
                ticker: Once::new(),
            }),
        }
    }

    /// The database (for `acl list`).
    pub fn db(&self) -> &Arc<SqlDb> {
        &self.inner.db
    }

    /// What the last read of the table found (for `/readyz`).
    pub fn health(&self) -> &Health {
        &self.inner.health
    }

    /// How often the table is re-read.
    pub fn ttl(&self) -> Duration {
        self.inner.ttl
    }

    /// The ACL in force, read from the database when there is none yet.
    pub async fn snapshot(&self) -> Result<Arc<AclSnapshot>, AuthzBackendError> {
        self.start_ticker();
        if let Some(s) = self.inner.current.load_full() {
            return Ok(s);
        }
        self.inner.refresh(false).await
    }

    /// Re-reads the table now (what the background task does every `ttl`). On failure the
    /// previous ACL stays in force and is returned, or the error when there is none.
    pub async fn reload(&self) -> Result<Arc<AclSnapshot>, AuthzBackendError> {
        self.inner.refresh(true).await
    }

    /// `Some((seq, granted))` when a row matched (granted sorted; empty = denied), `None` for
    /// no match.
    pub async fn authorize(
        &self,
        req: &AuthzRequest<'_>,
    ) -> Result<Option<(i64, Vec<String>)>, AuthzBackendError> {
        let snapshot = self.snapshot().await?;
        Ok(match snapshot.acl.authorize(req) {
            AclDecision::Matched { entry, granted } => {
                snapshot.rows.get(entry).map(|(seq, _)| (*seq, granted))
            }
            AclDecision::NoMatch => None,
        })
    }

    /// Starts the background re-read (once, on the runtime of the first request). It ends when
    /// this authorizer is dropped (a configuration reload replaced it).
    fn start_ticker(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        self.inner.ticker.call_once(|| {
            let weak: Weak<Inner> = Arc::downgrade(&self.inner);
            let ttl = self.inner.ttl;
            // Started from a snapshot of an earlier configuration: look at the table at once.
            let mut next = if self.inner.current.load().is_some() {
                tokio::time::Instant::now()
            } else {
                tokio::time::Instant::now() + ttl
            };
            runtime.spawn(async move {
                loop {
                    tokio::time::sleep_until(next).await;
                    let Some(inner) = weak.upgrade() else {
                        break;
                    };
                    let _ = inner.refresh(true).await;
                    drop(inner);
                    next = tokio::time::Instant::now() + ttl;
                }
            });
        });
    }
}

impl Inner {
    async fn refresh(&self, force: bool) -> Result<Arc<AclSnapshot>, AuthzBackendError> {
        let mut last_problem = self.refresh.lock().await;
        let previous = self.current.load_full();
        if !force {
            if let Some(p) = &previous {
                // Another request loaded it while this one waited.
                return Ok(p.clone());
            }
            if let Some((problem, at)) = last_problem.as_ref()
                && at.elapsed() < FAIL_FAST
            {
                return Err(AuthzBackendError {
                    backend: NAME,
                    message: problem.clone(),
                });
            }
        }
        match self.load().await {
            Ok(snapshot) => {
                if last_problem.take().is_some() {
                    info!(
                        database = %self.db.describe(),
                        entries = snapshot.rows.len(),
                        "acl_sql: the ACL table is readable and valid again; its current rows are \
                         in force"
                    );
                }
                if !previous.as_ref().is_some_and(|p| Arc::ptr_eq(p, &snapshot)) {
                    self.current.store(Some(snapshot.clone()));
                    if let Ok(mut m) = LAST_GOOD.lock() {
                        m.insert(self.db.identity().to_owned(), snapshot.clone());
                    }
                }
                Ok(snapshot)
            }
            Err(problem) => {
                if last_problem.as_ref().map(|(p, _)| p.as_str()) != Some(problem.as_str()) {
                    match &previous {
                        Some(p) => error!(
                            database = %self.db.describe(),
                            "{problem}; the previous ACL ({} entries, loaded {}) stays in force",
                            p.rows.len(),
                            humantime::format_rfc3339_seconds(p.loaded_at)
                        ),
                        None => error!(
                            database = %self.db.describe(),
                            "{problem}; there is no previous ACL, so requests that reach acl_sql \
                             fail until this is fixed"
                        ),
                    }
                }
                *last_problem = Some((problem.clone(), Instant::now()));
                previous.ok_or(AuthzBackendError {
                    backend: NAME,
                    message: problem,
                })
            }
        }
    }

    /// Reads and compiles the table; the previous snapshot itself when the rows are unchanged.
    async fn load(&self) -> Result<Arc<AclSnapshot>, String> {
        let rows = self.db.acl_rows().await;
        SqlDb::record(&self.health, &rows);
        let rows = rows.map_err(|e| format!("acl_sql: cannot read the ACL table: {e}"))?;
        let digest = rows_digest(&rows);
        if let Some(current) = self.current.load_full()
            && current.digest == digest
        {
            return Ok(current);
        }
        let (acl, specs) = compile_rows(&rows).map_err(|problems| {
            format!(
                "acl_sql: {} broken row{} in registry_auth_acl: {}",
                problems.len(),
                if problems.len() == 1 { "" } else { "s" },
                problems.join("; ")
            )
        })?;
        for sh in acl.shadowed() {
            if let (Some((seq, _)), Some((by, _))) = (specs.get(sh.index), specs.get(sh.by)) {
                warn!(
                    database = %self.db.describe(),
                    "acl_sql: row seq={seq} can never match: row seq={by} before it matches every \
                     request it matches, and the first match wins"
                );
            }
        }
        info!(
            database = %self.db.describe(),
            entries = specs.len(),
            "acl_sql: ACL loaded"
        );
        Ok(Arc::new(AclSnapshot {
            acl,
            rows: specs,
            digest,
            loaded_at: SystemTime::now(),
        }))
    }
}

fn rows_digest(rows: &[AclRow]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for r in rows {
        ctx.update(&r.seq.to_be_bytes());
        ctx.update(&(r.entry.len() as u64).to_be_bytes());
        ctx.update(r.entry.as_bytes());
    }
    ctx.finish().as_ref().to_vec()
}

/// Compiled rows: the ACL and its `(seq, entry)` list in evaluation order.
pub type CompiledRows = (Acl, Vec<(i64, AclEntrySpec)>);

/// Parses and compiles rows (in `seq` order). Every problem is reported, each naming its row's
/// `seq` and the key, e.g. `row seq=20: match.name: …`.
pub fn compile_rows(rows: &[AclRow]) -> Result<CompiledRows, Vec<String>> {
    let mut problems = Vec::new();
    let mut specs = Vec::with_capacity(rows.len());
    for row in rows {
        match parse_entry(&row.entry) {
            Ok(spec) => specs.push((row.seq, spec)),
            Err(e) => problems.push(format!("row seq={}: {e}", row.seq)),
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }
    let entries: Vec<AclEntrySpec> = specs.iter().map(|(_, e)| e.clone()).collect();
    match Acl::compile(&entries) {
        Ok(acl) => Ok((acl, specs)),
        Err(errors) => Err(errors
            .into_iter()
            .map(|e| {
                let seq = specs.get(e.index).map_or(-1, |(s, _)| *s);
                format!("row seq={seq}: {}: {}", e.field, e.message)
            })
            .collect()),
    }
}

/// One row's `entry` JSON as an ACL entry, with the path of a bad key.
pub fn parse_entry(json: &str) -> Result<AclEntrySpec, String> {
    let mut de = serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize::<_, AclEntrySpec>(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path.is_empty() || path == "." {
            format!("entry: {inner}")
        } else {
            format!("entry.{path}: {inner}")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authn::Labels;
    use crate::sql::DEFAULT_TIMEOUT;

    fn request<'a>(account: &'a str, name: &'a str, actions: &'a [String]) -> AuthzRequest<'a> {
        static EMPTY: LazyLock<Labels> = LazyLock::new(Labels::default);
        AuthzRequest {
            account,
            source: "users",
            unqualified: true,
            kind: "repository",
            name,
            service: "registry",
            ip: None,
            labels: &EMPTY,
            actions,
        }
    }

    fn pull_push() -> Vec<String> {
        vec!["pull".to_owned(), "push".to_owned()]
    }

    async fn db(dir: &std::path::Path) -> Arc<SqlDb> {
        let db = Arc::new(SqlDb::parse("sqlite:acl.db", dir, 2, DEFAULT_TIMEOUT).unwrap());
        db.migrate().await.unwrap();
        db
    }

    #[test]
    fn rows_report_problems_by_seq_and_key() {
        let rows = [
            AclRow {
                seq: 5,
                entry: r#"{"match": {"account": "a"}, "actions": ["*"]}"#.into(),
            },
            AclRow {
                seq: 7,
                entry: r#"{"match": {"acount": "a"}, "actions": ["*"]}"#.into(),
            },
            AclRow {
                seq: 9,
                entry: r#"{"match": {}}"#.into(),
            },
        ];
        let problems = compile_rows(&rows).unwrap_err();
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(
            problems[0].starts_with("row seq=7: entry.match.acount: unknown field `acount`"),
            "{problems:?}"
        );
        assert!(problems[1].contains("row seq=9") && problems[1].contains("actions"));
        let rows = [AclRow {
            seq: 3,
            entry: r#"{"match": {"name": "/[/"}, "actions": ["pull"]}"#.into(),
        }];
        let problems = compile_rows(&rows).unwrap_err();
        assert!(
            problems[0].starts_with("row seq=3: match.name: "),
            "{problems:?}"
        );
    }

    #[tokio::test]
    async fn seq_order_reload_and_broken_rows_keep_the_previous_acl() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path()).await;
        // Inserted out of order: seq decides.
        db.execute(
            r#"INSERT INTO registry_auth_acl (seq, entry) VALUES
               (20, '{"match": {}, "actions": ["pull"], "comment": "everyone pulls"}'),
               (10, '{"match": {"account": "admin"}, "actions": ["*"]}')"#,
        )
        .await
        .unwrap();
        let acl = SqlAcl::new(db.clone(), Duration::from_secs(3600));
        let actions = pull_push();
        assert_eq!(
            acl.authorize(&request("admin", "x/y", &actions))
                .await
                .unwrap(),
            Some((10, pull_push()))
        );
        assert_eq!(
            acl.authorize(&request("bob", "x/y", &actions))
                .await
                .unwrap(),
            Some((20, vec!["pull".to_owned()]))
        );
        let first = acl.snapshot().await.unwrap();
        // Unchanged rows: the same snapshot.
        assert!(Arc::ptr_eq(&first, &acl.reload().await.unwrap()));
        // A change is picked up at the next reload.
        db.execute(
            r#"UPDATE registry_auth_acl SET entry = '{"match": {}, "actions": []}' WHERE seq = 20"#,
        )
        .await
        .unwrap();
        acl.reload().await.unwrap();
        assert_eq!(
            acl.authorize(&request("bob", "x/y", &actions))
                .await
                .unwrap(),
            Some((20, vec![]))
        );
        // A broken row: the reload fails and the previous ACL stays.
        db.execute(r#"INSERT INTO registry_auth_acl (seq, entry) VALUES (5, '{"match": {"name": "/[/"}, "actions": ["pull"]}')"#)
            .await
            .unwrap();
        let kept = acl.reload().await.unwrap();
        assert_eq!(kept.rows().len(), 2, "previous ACL kept");
        assert_eq!(
            acl.authorize(&request("bob", "x/y", &actions))
                .await
                .unwrap(),
            Some((20, vec![]))
        );
        // A new authorizer on the same database (a configuration reload) starts from it.
        let after_reload = SqlAcl::new(db.clone(), Duration::from_secs(3600));
        assert_eq!(after_reload.snapshot().await.unwrap().rows().len(), 2);
        // Fixed: in force again.
        db.execute("DELETE FROM registry_auth_acl WHERE seq = 5")
            .await
            .unwrap();
        db.execute("DELETE FROM registry_auth_acl WHERE seq = 20")
            .await
            .unwrap();
        acl.reload().await.unwrap();
        assert_eq!(
            acl.authorize(&request("bob", "x/y", &actions))
                .await
                .unwrap(),
            None
        );
    }

    #[tokio::test]
    async fn no_acl_yet_and_a_broken_table_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let db = db(dir.path()).await;
        db.execute(r#"INSERT INTO registry_auth_acl (seq, entry) VALUES (1, '{"match": {}, "actions": ["pull"], "extra": 1}')"#)
            .await
            .unwrap();
        let acl = SqlAcl::new(db, Duration::from_secs(3600));
        let actions = pull_push();
        let err = acl
            .authorize(&request("bob", "x", &actions))
            .await
            .unwrap_err();
        assert!(err.message.contains("row seq=1"), "{err}");
        assert!(err.message.contains("extra"), "{err}");
    }
}
