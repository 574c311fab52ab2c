//! The authentication front used by the server: a verified-credential cache, single-flight and a
//! bounded bcrypt pool around the [`Chain`].
//!
//! * **Cache.** After a successful check, `(account, keyed hash of the password)` maps to the
//!   identity for a configurable time. The key is an HMAC-SHA256 under a random per-process key, so
//!   the password itself is never stored. Only successes are cached: there is no negative cache,
//!   which would make a wrong password for a known user answer faster than for an unknown one.
//!   Every hit is re-checked against the current configuration (the user's credential
//!   fingerprint, a robot's expiry), and a new configuration gets a new cache.
//! * **Single-flight.** Concurrent identical misses run bcrypt once and share the result: 16
//!   parallel first pulls with the same CI credentials cost one bcrypt.
//! * **Bounded pool.** bcrypt runs on at most `bcrypt_workers` blocking threads at a time, so a
//!   storm of wrong passwords queues there while anonymous and cached requests, which never touch
//!   the pool, keep being served.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_lc_rs::hmac;
use moka::future::Cache;
use prometheus_client::metrics::counter::Counter;
use tokio::sync::Semaphore;

use super::{
    AuthnContext, AuthnError, AuthnOutcome, Chain, Credentials, Identity, IdentityKind,
    ROBOT_PREFIX,
};
use crate::config::AuthnBackend;

/// Which local bcrypt work to run.
#[derive(Debug, Clone, Copy)]
enum Local {
    /// The local chain, with the dummy check for unknown users.
    WithDummy,
    /// The local chain only (more backends follow).
    Only,
    /// Only the dummy check (no backend knew the user).
    DummyOnly,
}

/// Cache and pool settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheSettings {
    /// How long a verified credential is remembered; zero disables the cache.
    pub ttl: Duration,
    /// Most entries kept.
    pub max_entries: u64,
    /// Most bcrypt verifications running at once.
    pub bcrypt_workers: usize,
}

/// Counters, for metrics and tests. Clones share the counts, so one set outlives the
/// authenticators that configuration reloads replace.
#[derive(Debug, Clone, Default)]
pub struct CacheStats {
    /// Requests answered from the cache.
    pub hits: Counter,
    /// Requests that had to run the chain.
    pub misses: Counter,
}

/// The chain behind a cache, single-flight and a bounded pool.
#[derive(Debug)]
pub struct Authenticator {
    chain: Arc<Chain>,
    /// The backends in order; `[Local]` for a purely local configuration.
    order: Vec<AuthnBackend>,
    cache: Option<Cache<[u8; 32], Identity>>,
    key: hmac::Key,
    pool: Arc<Semaphore>,
    stats: CacheStats,
    /// A backend decides on the client's address and service too (`http_auth`): they are part
    /// of the cache key.
    context_in_key: bool,
}

/// An authentication's result and the backend that gave it (for metrics): the backend that
/// decided, failed, or (for a cache hit) vouched for the cached identity; the last one asked
/// when none knew the user.
#[derive(Debug)]
pub struct AuthnAnswer {
    /// The outcome, or why there is none.
    pub result: Result<AuthnOutcome, AuthnError>,
    /// Config name of the backend (`users`, `robots`, `ext_auth`, `ldap_auth`, …).
    pub backend: &'static str,
}

/// What a coalesced miss returns when it is not a success (never cached).
#[derive(Debug, Clone)]
enum Miss {
    Outcome(AuthnOutcome, &'static str),
    Error(AuthnError),
}

impl Authenticator {
    /// Wraps `chain`.
    pub fn new(chain: Arc<Chain>, settings: CacheSettings, stats: CacheStats) -> Self {
        Self::with_order(chain, vec![AuthnBackend::Local], settings, stats)
    }

    /// Wraps `chain` and other backends, asked in `order`.
    pub fn with_order(
        chain: Arc<Chain>,
        order: Vec<AuthnBackend>,
        settings: CacheSettings,
        stats: CacheStats,
    ) -> Self {
        let cache = (!settings.ttl.is_zero()).then(|| {
            Cache::builder()
                .max_capacity(settings.max_entries)
                .time_to_live(settings.ttl)
                .build()
        });
        let secret: [u8; 32] = rand::random();
        let context_in_key = order.iter().any(|b| matches!(b, AuthnBackend::Http(_)));
        Self {
            context_in_key,
            chain,
            order,
            cache,
            key: hmac::Key::new(hmac::HMAC_SHA256, &secret),
            pool: Arc::new(Semaphore::new(settings.bcrypt_workers.max(1))),
            stats,
        }
    }

    /// The chain.
    pub fn chain(&self) -> &Arc<Chain> {
        &self.chain
    }

    /// Cache counters.
    pub fn stats(&self) -> &CacheStats {
        &self.stats
    }

    /// Authenticates, from the cache when possible.
    pub async fn authenticate(&self, creds: &Credentials) -> Result<AuthnOutcome, AuthnError> {
        self.authenticate_in(creds, &AuthnContext::default())
            .await
            .result
    }

    /// Authenticates a login from `ctx` (client address, service), from the cache when
    /// possible, and says which backend answered.
    pub async fn authenticate_in(&self, creds: &Credentials, ctx: &AuthnContext) -> AuthnAnswer {
        let answer = |r: Result<(AuthnOutcome, &'static str), AuthnError>| match r {
            Ok((outcome, backend)) => AuthnAnswer {
                result: Ok(outcome),
                backend,
            },
            Err(e) => AuthnAnswer {
                backend: e.backend(),
                result: Err(e),
            },
        };
        if creds.is_anonymous() {
            // No password to check: no bcrypt, nothing to cache.
            return answer(self.resolve(creds.clone(), ctx).await);
        }
        let Some(cache) = &self.cache else {
            return answer(self.resolve(creds.clone(), ctx).await);
        };
        let key = self.cache_key(creds, ctx);
        if let Some(identity) = cache.get(&key).await {
            match self.recheck(&creds.account, identity).await {
                Ok(Some(identity)) => {
                    self.stats.hits.inc();
                    return AuthnAnswer {
                        backend: vouched_by(&creds.account, &identity),
                        result: Ok(AuthnOutcome::Authenticated(identity)),
                    };
                }
                Ok(None) => cache.invalidate(&key).await,
                Err(e) => {
                    return AuthnAnswer {
                        backend: e.backend(),
                        result: Err(e),
                    };
                }
            }
        }
        self.stats.misses.inc();
        // Boxed: a miss costs a bcrypt or a backend call anyway (see `resolve`).
        let result = Box::pin(cache.try_get_with(key, async {
            match self.resolve(creds.clone(), ctx).await {
                // Minted passwords and CI tokens are checked on every use (a store read or
                // a signature, no bcrypt), so a sign-out or an expiry applies at once:
                // shared by concurrent identical misses, never cached.
                Ok((AuthnOutcome::Authenticated(identity), backend)) if !cacheable(&identity) => {
                    Err(Miss::Outcome(
                        AuthnOutcome::Authenticated(identity),
                        backend,
                    ))
                }
                Ok((AuthnOutcome::Authenticated(identity), _)) => Ok(identity),
                Ok((other, backend)) => Err(Miss::Outcome(other, backend)),
                Err(e) => Err(Miss::Error(e)),
            }
        }))
        .await;
        match result {
            Ok(identity) => AuthnAnswer {
                backend: vouched_by(&creds.account, &identity),
                result: Ok(AuthnOutcome::Authenticated(identity)),
            },
            Err(miss) => match miss.as_ref() {
                Miss::Outcome(o, backend) => AuthnAnswer {
                    result: Ok(o.clone()),
                    backend,
                },
                Miss::Error(e) => AuthnAnswer {
                    backend: e.backend(),
                    result: Err(e.clone()),
                },
            },
        }
    }

    /// Asks the backends in order: the first that does not answer `NoMatch` decides. When none
    /// knows a named user, one bcrypt against the dummy hash keeps the timing the same as a wrong
    /// password.
    async fn resolve(
        &self,
        creds: Credentials,
        ctx: &AuthnContext,
    ) -> Result<(AuthnOutcome, &'static str), AuthnError> {
        let local = local_name(&creds.account);
        if let [AuthnBackend::Local] = self.order.as_slice() {
            // The local chain runs its own dummy check.
            if creds.is_anonymous() {
                return Ok((self.chain.authenticate(&creds)?, local));
            }
            return Ok((self.verify(creds, Local::WithDummy).await?, local));
        }
        let mut last = local;
        for backend in &self.order {
            let outcome = match backend {
                AuthnBackend::Local if creds.is_anonymous() => {
                    self.chain.authenticate_local(&creds)?
                }
                AuthnBackend::Local => self.verify(creds.clone(), Local::Only).await?,
                // The other backends' futures are large (network clients) and boxed where they
                // run, so that every request's future stays small: axum and tower move it
                // several times (memcpy), and a malloc is nothing next to a network call.
                AuthnBackend::Ext(ext) => Box::pin(ext.authenticate(&creds)).await?,
                AuthnBackend::Ldap(ldap) => Box::pin(ldap.authenticate(&creds)).await?,
                AuthnBackend::Http(http) => Box::pin(http.authenticate(&creds, ctx)).await?,
                AuthnBackend::WebLogin(web) => Box::pin(web.authenticate(&creds)).await?,
                AuthnBackend::CiTokens(ci) => Box::pin(ci.authenticate(&creds)).await?,
                AuthnBackend::Sql(sql) => Box::pin(sql.authenticate(&creds, &self.pool)).await?,
            };
            last = match backend {
                AuthnBackend::Local => local,
                other => other.name(),
            };
            if outcome != AuthnOutcome::NoMatch {
                return Ok((outcome, last));
            }
        }
        if !creds.is_anonymous() {
            self.verify(creds, Local::DummyOnly).await?;
        }
        Ok((AuthnOutcome::NoMatch, last))
    }

    /// The current identity of `account` without a password, for re-checking a refresh token:
    /// `None` when no backend that can re-check finds it any more (the token is then refused).
    /// The local users and robots can, `ldap_auth` with a service account (a search) and
    /// `sql_auth` (a query); a backend added later joins here when it can re-check an account without its password.
    pub async fn lookup(
        &self,
        account: &str,
        now: SystemTime,
    ) -> Result<Option<Identity>, AuthnError> {
        for backend in &self.order {
            let found = match backend {
                AuthnBackend::Local => self.chain.lookup(account, now),
                AuthnBackend::Ldap(ldap) => Box::pin(ldap.lookup(account)).await?,
                AuthnBackend::Sql(sql) => Box::pin(sql.lookup(account)).await?,
                AuthnBackend::Ext(_)
                | AuthnBackend::Http(_)
                | AuthnBackend::WebLogin(_)
                | AuthnBackend::CiTokens(_) => None,
            };
            if found.is_some() {
                return Ok(found);
            }
        }
        Ok(None)
    }

    /// The current identity behind a refresh token issued with `fingerprint`: a minted
    /// web-login password is looked up (and revalidated upstream when due) in the store; every
    /// other credential through [`Authenticator::lookup`].
    pub async fn lookup_credential(
        &self,
        account: &str,
        fingerprint: &str,
        now: SystemTime,
    ) -> Result<Option<Identity>, AuthnError> {
        if fingerprint.starts_with(crate::weblogin::MINTED_FINGERPRINT_PREFIX) {
            for backend in &self.order {
                if let AuthnBackend::WebLogin(web) = backend {
                    return Box::pin(web.logins.lookup(account, fingerprint)).await;
                }
            }
            return Ok(None);
        }
        self.lookup(account, now).await
    }

    /// Runs local bcrypt work on the bounded pool.
    async fn verify(&self, creds: Credentials, what: Local) -> Result<AuthnOutcome, AuthnError> {
        let _permit = self.pool.acquire().await.map_err(|_| AuthnError::Backend {
            backend: "users",
            message: "the bcrypt pool is closed".to_owned(),
        })?;
        let chain = self.chain.clone();
        tokio::task::spawn_blocking(move || match what {
            Local::WithDummy => chain.authenticate(&creds),
            Local::Only => chain.authenticate_local(&creds),
            Local::DummyOnly => {
                chain.dummy_verify(&creds);
                Ok(AuthnOutcome::NoMatch)
            }
        })
        .await
        .map_err(|e| AuthnError::Backend {
            backend: "users",
            message: format!("the bcrypt task failed: {e}"),
        })?
    }

    /// A cached identity is honoured only while the account still has the same credential (and
    /// a robot has not expired).
    /// A cached identity, re-checked: `None` when the account changed since (the entry is
    /// dropped and the credentials checked again). Local users and robots are looked up in
    /// memory; an `sql_auth` user's row is read again (one indexed query, no bcrypt), so
    /// `users remove` and `users passwd` take effect at once and label changes are seen; the
    /// other external backends are bounded by the cache's time-to-live.
    async fn recheck(
        &self,
        account: &str,
        identity: Identity,
    ) -> Result<Option<Identity>, AuthnError> {
        if identity.kind == IdentityKind::External("sql_auth") {
            let sql = self.order.iter().find_map(|b| match b {
                AuthnBackend::Sql(sql) => Some(sql),
                _ => None,
            });
            let Some(sql) = sql else {
                return Ok(None);
            };
            let current = Box::pin(sql.lookup(account)).await?;
            return Ok(current.filter(|c| c.fingerprint == identity.fingerprint));
        }
        Ok(self.still_valid(account, &identity).then_some(identity))
    }

    fn still_valid(&self, account: &str, identity: &Identity) -> bool {
        if matches!(identity.kind, IdentityKind::External(_)) {
            // Nothing local to re-check; the cache's time-to-live bounds it.
            return true;
        }
        self.chain
            .lookup(account, SystemTime::now())
            .is_some_and(|current| current.fingerprint == identity.fingerprint)
    }

    fn cache_key(&self, creds: &Credentials, context: &AuthnContext) -> [u8; 32] {
        let mut ctx = hmac::Context::with_key(&self.key);
        ctx.update(&(creds.account.len() as u64).to_be_bytes());
        ctx.update(creds.account.as_bytes());
        if self.context_in_key {
            let ip = context.client_ip.map(|i| i.to_string()).unwrap_or_default();
            for part in [ip.as_str(), context.service.as_str()] {
                ctx.update(&(part.len() as u64).to_be_bytes());
                ctx.update(part.as_bytes());
            }
        }
        ctx.update(creds.password.expose().as_bytes());
        let tag = ctx.sign();
        let mut key = [0u8; 32];
        key.copy_from_slice(tag.as_ref());
        key
    }
}

/// `users`, or `robots` for a robot account: the local backend's name in metrics.
fn local_name(account: &str) -> &'static str {
    if account.starts_with(ROBOT_PREFIX) {
        "robots"
    } else {
        "users"
    }
}

/// The backend an identity came from.
fn vouched_by(account: &str, identity: &Identity) -> &'static str {
    match identity.kind {
        IdentityKind::External(name) => name,
        _ => local_name(account),
    }
}

/// Identities re-checked on every use instead of being cached: minted web-login passwords
/// (a sign-out must apply at once) and CI tokens (short-lived).
fn cacheable(identity: &Identity) -> bool {
    !matches!(
        identity.kind,
        IdentityKind::External(
            "google_auth" | "github_auth" | "oidc_auth" | "gitlab_auth" | "oidc_tokens"
        )
    )
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::authn::{Labels, Robots, Secret, StaticUsers, UserRecord};

    fn chain(cost: u32) -> Arc<Chain> {
        let mut users = HashMap::new();
        users.insert(
            "ci".to_owned(),
            UserRecord {
                hash: bcrypt::hash("ci-pass", cost).unwrap(),
                labels: Labels::default(),
            },
        );
        Arc::new(
            Chain::new(
                StaticUsers::new(users, Some(Labels::default())),
                Robots::default(),
            )
            .unwrap(),
        )
    }

    fn settings(ttl_secs: u64, workers: usize) -> CacheSettings {
        CacheSettings {
            ttl: Duration::from_secs(ttl_secs),
            max_entries: 100,
            bcrypt_workers: workers,
        }
    }

    fn creds(account: &str, password: &str) -> Credentials {
        Credentials {
            account: account.to_owned(),
            password: Secret::new(password),
        }
    }

    fn is_ok(outcome: &AuthnOutcome) -> bool {
        matches!(outcome, AuthnOutcome::Authenticated(_))
    }

    #[tokio::test]
    async fn a_cached_sql_user_is_re_read_so_passwd_and_remove_apply_at_once() {
        use crate::sql::{DEFAULT_TIMEOUT, SqlDb, UserRow};
        let dir = tempfile::tempdir().unwrap();
        let db = Arc::new(SqlDb::parse("sqlite:u.db", dir.path(), 2, DEFAULT_TIMEOUT).unwrap());
        db.insert_user(&UserRow {
            name: "alice".into(),
            password_hash: bcrypt::hash("good", 4).unwrap(),
            labels: r#"{"team": ["dev"]}"#.into(),
        })
        .await
        .unwrap();
        let auth = Authenticator::with_order(
            chain(4),
            vec![
                AuthnBackend::Local,
                AuthnBackend::Sql(crate::authn::SqlAuth::new(db.clone())),
            ],
            settings(300, 1),
            CacheStats::default(),
        );
        let alice = creds("alice", "good");
        for _ in 0..3 {
            assert!(is_ok(&auth.authenticate(&alice).await.unwrap()));
        }
        assert_eq!((auth.stats().misses.get(), auth.stats().hits.get()), (1, 2));
        // A new password: the cached entry no longer matches the row, the old password fails.
        db.set_password("alice", &bcrypt::hash("new", 4).unwrap())
            .await
            .unwrap();
        assert_eq!(
            auth.authenticate(&alice).await.unwrap(),
            AuthnOutcome::WrongPassword
        );
        let alice = creds("alice", "new");
        assert!(is_ok(&auth.authenticate(&alice).await.unwrap()));
        assert!(is_ok(&auth.authenticate(&alice).await.unwrap()));
        // Removed: refused at once, although the credentials were cached.
        assert!(db.delete_user("alice").await.unwrap());
        assert_eq!(
            auth.authenticate(&alice).await.unwrap(),
            AuthnOutcome::NoMatch
        );
    }

    #[tokio::test]
    async fn repeat_credentials_hit_the_cache() {
        let auth = Authenticator::new(chain(4), settings(300, 1), CacheStats::default());
        let runs_before = auth.chain().bcrypt_runs();
        for _ in 0..5 {
            assert!(is_ok(
                &auth.authenticate(&creds("ci", "ci-pass")).await.unwrap()
            ));
        }
        assert_eq!(auth.chain().bcrypt_runs() - runs_before, 1);
        assert_eq!(auth.stats().hits.get(), 4);
        assert_eq!(auth.stats().misses.get(), 1);
    }

    #[tokio::test]
    async fn wrong_passwords_are_never_cached_or_served_from_the_cache() {
        let auth = Authenticator::new(chain(4), settings(300, 1), CacheStats::default());
        assert!(is_ok(
            &auth.authenticate(&creds("ci", "ci-pass")).await.unwrap()
        ));
        for _ in 0..3 {
            assert_eq!(
                auth.authenticate(&creds("ci", "wrong")).await.unwrap(),
                AuthnOutcome::WrongPassword
            );
            assert_eq!(
                auth.authenticate(&creds("nobody", "ci-pass"))
                    .await
                    .unwrap(),
                AuthnOutcome::NoMatch
            );
        }
        // 1 success + 3 wrong passwords + 3 unknown users, each a bcrypt run.
        assert_eq!(auth.chain().bcrypt_runs(), 7);
    }

    #[tokio::test]
    async fn a_new_configuration_starts_with_an_empty_cache() {
        let first = Authenticator::new(chain(4), settings(300, 1), CacheStats::default());
        first.authenticate(&creds("ci", "ci-pass")).await.unwrap();
        first.authenticate(&creds("ci", "ci-pass")).await.unwrap();
        assert_eq!(first.chain().bcrypt_runs(), 1);
        // A reload (or a password change, which needs one) builds a new authenticator.
        let reloaded = Authenticator::new(chain(4), settings(300, 1), CacheStats::default());
        reloaded
            .authenticate(&creds("ci", "ci-pass"))
            .await
            .unwrap();
        assert_eq!(reloaded.chain().bcrypt_runs(), 1);
        assert_eq!(reloaded.stats().hits.get(), 0);
    }

    #[tokio::test]
    async fn zero_ttl_disables_the_cache() {
        let auth = Authenticator::new(chain(4), settings(0, 1), CacheStats::default());
        for _ in 0..3 {
            auth.authenticate(&creds("ci", "ci-pass")).await.unwrap();
        }
        assert_eq!(auth.chain().bcrypt_runs(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_identical_misses_run_bcrypt_once() {
        let auth = Arc::new(Authenticator::new(
            chain(8),
            settings(300, 2),
            CacheStats::default(),
        ));
        let tasks: Vec<_> = (0..16)
            .map(|_| {
                let auth = auth.clone();
                tokio::spawn(async move { auth.authenticate(&creds("ci", "ci-pass")).await })
            })
            .collect();
        for t in tasks {
            assert!(is_ok(&t.await.unwrap().unwrap()));
        }
        assert_eq!(
            auth.chain().bcrypt_runs(),
            1,
            "16 first requests, one bcrypt"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_wrong_password_storm_does_not_block_cached_or_anonymous_requests() {
        let auth = Arc::new(Authenticator::new(
            chain(8),
            settings(300, 1),
            CacheStats::default(),
        ));
        assert!(is_ok(
            &auth.authenticate(&creds("ci", "ci-pass")).await.unwrap()
        ));
        let storm: Vec<_> = (0..16)
            .map(|i| {
                let auth = auth.clone();
                tokio::spawn(
                    async move { auth.authenticate(&creds("ci", &format!("wrong-{i}"))).await },
                )
            })
            .collect();
        tokio::task::yield_now().await;
        // The single bcrypt worker is busy with the storm; these do not need it.
        assert!(is_ok(
            &auth.authenticate(&creds("ci", "ci-pass")).await.unwrap()
        ));
        assert!(is_ok(
            &auth.authenticate(&Credentials::anonymous()).await.unwrap()
        ));
        let runs_when_served = auth.chain().bcrypt_runs();
        assert!(
            runs_when_served < 1 + 16,
            "cached and anonymous requests were served before the storm finished"
        );
        for t in storm {
            assert_eq!(t.await.unwrap().unwrap(), AuthnOutcome::WrongPassword);
        }
        assert_eq!(auth.chain().bcrypt_runs(), 17);
    }
}
