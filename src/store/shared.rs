//! The replicas' shared state in the store: refresh-token revocations and lockout counters.
//!
//! With a Redis or PostgreSQL `store`, every replica reads and writes these, so a revocation
//! written once (`tokens revoke --config F`) is refused by all of them at their next refresh
//! grant, and failed logins count once across replicas. Each entry is one small record under a
//! name that carries its kind and a hash of what it is about (so names have a fixed length and no
//! account name or token id appears in a key):
//!
//! * `revoked-token:<hash of the id>` → `{"at": T}`: that refresh token is revoked.
//! * `revoked-user:<hash of the subject>` → `{"at": T}`: every refresh token of that subject
//!   issued at or before `T` is revoked (the semantics of the revocation file's `users`).
//! * `lockout:<hash of (folded account, client IP)>` → failures in the current window and the
//!   end of a lockout (milliseconds since the Unix epoch).
//!
//! Revocations are kept for as long as a token issued before them can live (the caller gives
//! the time), lockout records for `window + cooldown`. Redis keys are
//! `registry-auth:shared:<name>` (one key per command or script, so any Redis Cluster slot
//! works); SQL rows live in `registry_auth_shared_state`.
//!
//! Every record is authenticated like the minted passwords (`auth`, bound to its name). A
//! revocation that fails the check still counts as a revocation (a refused token is the safe
//! side; counted and logged); a lockout record that fails it counts as absent and is replaced.
//! Changes are compare-and-set, so concurrent replicas never lose a failure or a later
//! revocation.

use std::time::{Duration, SystemTime};

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::{Backend, REJECTED, Store, StoreError, lock, unix_now};

/// Prefix of the shared state's Redis keys.
const REDIS_PREFIX: &str = "registry-auth:shared:";
/// Most compare-and-set attempts for one change (each lost race means another replica changed
/// the same record meanwhile).
const MAX_ATTEMPTS: usize = 32;

/// A revocation: of one token, or of a subject's tokens issued at or before `at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Revoked {
    /// When it was revoked, seconds since the Unix epoch.
    at: u64,
}

/// A lockout counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct Counter {
    /// Failures in the current window.
    failures: u32,
    /// Start of the window, milliseconds since the Unix epoch.
    window_start: u64,
    /// End of the lockout (0: none), milliseconds since the Unix epoch.
    locked_until: u64,
}

/// `lockout:` settings, for [`Store::lockout_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LockoutRules {
    /// Failures within `window` that lock the pair.
    pub max_failures: u32,
    /// The window failures count in.
    pub window: Duration,
    /// How long a pair stays locked.
    pub cooldown: Duration,
}

/// What [`Store::lockout_state`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LockoutState {
    /// Time left while the pair is locked out.
    pub locked_for: Option<Duration>,
    /// A counter exists (a success should clear it).
    pub counting: bool,
}

/// The name of an entry: its kind and a hash of what it is about.
fn name(kind: &str, about: &[u8]) -> String {
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(b"registry-auth shared state v1\0");
    ctx.update(kind.as_bytes());
    ctx.update(b"\0");
    ctx.update(about);
    format!("{kind}:{}", URL_SAFE_NO_PAD.encode(ctx.finish().as_ref()))
}

fn millis(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A stored entry as read: its bytes (the revision to compare against) and whether it passed
/// the authentication check.
enum Read<T> {
    Absent,
    Authentic(T, Vec<u8>),
    Refused(Vec<u8>),
}

impl Store {
    async fn shared_raw_get(&self, name: &str) -> Result<Option<Vec<u8>>, StoreError> {
        match &self.0.backend {
            Backend::Sql(s) => s.shared_get(name).await,
            Backend::Redis(r) => r.get_key(&format!("{REDIS_PREFIX}{name}")).await,
            Backend::Memory(_, shared) => {
                let now = unix_now();
                Ok(lock(shared)
                    .get(name)
                    .filter(|(_, exp)| *exp > now)
                    .map(|(v, _)| v.clone()))
            }
        }
    }

    async fn shared_raw_insert(
        &self,
        name: &str,
        value: &[u8],
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        match &self.0.backend {
            Backend::Sql(s) => s.shared_insert(name, value, expires_at).await,
            Backend::Redis(r) => {
                let ttl = expires_at.saturating_sub(unix_now()).max(1);
                r.insert_key(&format!("{REDIS_PREFIX}{name}"), value, ttl)
                    .await
            }
            Backend::Memory(_, shared) => {
                let mut m = lock(shared);
                if m.get(name).is_some_and(|(_, exp)| *exp > unix_now()) {
                    return Ok(false);
                }
                m.insert(name.to_owned(), (value.to_vec(), expires_at));
                Ok(true)
            }
        }
    }

    async fn shared_raw_update(
        &self,
        name: &str,
        seen: &[u8],
        value: &[u8],
        expires_at: u64,
    ) -> Result<bool, StoreError> {
        match &self.0.backend {
            Backend::Sql(s) => s.shared_update(name, seen, value, expires_at).await,
            Backend::Redis(r) => {
                let ttl = expires_at.saturating_sub(unix_now()).max(1);
                r.update_key(&format!("{REDIS_PREFIX}{name}"), seen, value, ttl)
                    .await
            }
            Backend::Memory(_, shared) => {
                let mut m = lock(shared);
                match m.get_mut(name) {
                    Some(entry) if entry.0 == seen && entry.1 > unix_now() => {
                        *entry = (value.to_vec(), expires_at);
                        Ok(true)
                    }
                    _ => Ok(false),
                }
            }
        }
    }

    async fn shared_raw_delete(&self, name: &str) -> Result<bool, StoreError> {
        match &self.0.backend {
            Backend::Sql(s) => s.shared_delete(name).await,
            Backend::Redis(r) => r.delete_key(&format!("{REDIS_PREFIX}{name}")).await,
            Backend::Memory(_, shared) => Ok(lock(shared)
                .remove(name)
                .is_some_and(|(_, exp)| exp > unix_now())),
        }
    }

    /// Reads and checks the entry `name`.
    async fn shared_read<T: DeserializeOwned>(&self, name: &str) -> Result<Read<T>, StoreError> {
        let key = self.key()?;
        let Some(raw) = self.shared_raw_get(name).await? else {
            return Ok(Read::Absent);
        };
        match key.decode_any::<T>(name, &raw) {
            Ok(v) => Ok(Read::Authentic(v, raw)),
            Err(why) => {
                REJECTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                warn!(
                    store = self.kind(),
                    entry = %name.split(':').next().unwrap_or(name),
                    "a shared-state record failed its authentication check: {} (is \
                     server.session_secret_file the same file on every replica?)",
                    why.describe()
                );
                Ok(Read::Refused(raw))
            }
        }
    }

    /// Creates or changes the entry `name` by compare-and-set: `change` gets the current
    /// authentic value (None when absent or refused) and returns the new one with its expiry,
    /// or None to leave the entry as it is. Returns what was written (or kept).
    async fn shared_change<T, F>(&self, name: &str, mut change: F) -> Result<Option<T>, StoreError>
    where
        T: Serialize + DeserializeOwned + Clone,
        F: FnMut(Option<&T>) -> Option<(T, u64)>,
    {
        let key = self.key()?;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                // Lost a race: let the winner's neighbours through before trying again.
                let jitter = rand::random::<u64>() % (2 * attempt as u64);
                tokio::time::sleep(Duration::from_millis(jitter + 1)).await;
            }
            let (current, revision) = match self.shared_read::<T>(name).await? {
                Read::Absent => (None, None),
                Read::Authentic(v, raw) => (Some(v), Some(raw)),
                Read::Refused(raw) => (None, Some(raw)),
            };
            let Some((next, expires_at)) = change(current.as_ref()) else {
                return Ok(current);
            };
            let value = key
                .encode_any(name, &next)
                .map_err(|e| StoreError::new(self.kind(), e))?;
            let done = match &revision {
                None => self.shared_raw_insert(name, &value, expires_at).await?,
                Some(seen) => {
                    self.shared_raw_update(name, seen, &value, expires_at)
                        .await?
                }
            };
            if done {
                return Ok(Some(next));
            }
        }
        Err(StoreError::new(
            self.kind(),
            format!(
                "a shared-state record kept changing under {MAX_ATTEMPTS} compare-and-set \
                 attempts"
            ),
        ))
    }

    /// Revokes the refresh token `id` (revoked at `now`), kept until `keep_until` (seconds
    /// since the Unix epoch: when every token issued until now has expired).
    pub async fn revoke_refresh_token(
        &self,
        id: &str,
        now: u64,
        keep_until: u64,
    ) -> Result<(), StoreError> {
        let name = name("revoked-token", id.as_bytes());
        let result = self
            .shared_change::<Revoked, _>(&name, |_| Some((Revoked { at: now }, keep_until)))
            .await
            .map(|_| ());
        self.note(result)
    }

    /// Revokes every refresh token of `subject` issued at or before `at` (a later revocation
    /// already stored stays), kept until `keep_until`. Returns the revocation time in force.
    pub async fn revoke_refresh_subject(
        &self,
        subject: &str,
        at: u64,
        keep_until: u64,
    ) -> Result<u64, StoreError> {
        let name = name("revoked-user", subject.as_bytes());
        let result = self
            .shared_change::<Revoked, _>(&name, |old| match old {
                Some(old) if old.at >= at => None,
                _ => Some((Revoked { at }, keep_until)),
            })
            .await
            .map(|kept| kept.map_or(at, |r| r.at));
        self.note(result)
    }

    /// Whether the refresh token `id` of `subject`, issued at `issued_at`, is revoked here. An
    /// entry that fails its authentication check counts as a revocation.
    pub async fn refresh_revoked(
        &self,
        id: &str,
        subject: &str,
        issued_at: u64,
    ) -> Result<bool, StoreError> {
        let result = async {
            match self
                .shared_read::<Revoked>(&name("revoked-token", id.as_bytes()))
                .await?
            {
                Read::Absent => {}
                Read::Authentic(..) | Read::Refused(_) => return Ok(true),
            }
            Ok(
                match self
                    .shared_read::<Revoked>(&name("revoked-user", subject.as_bytes()))
                    .await?
                {
                    Read::Absent => false,
                    Read::Authentic(r, _) => issued_at <= r.at,
                    Read::Refused(_) => true,
                },
            )
        }
        .await;
        self.note(result)
    }

    /// The lockout state of `pair` (a folded account and a client address, as the caller
    /// spells them).
    pub async fn lockout_state(
        &self,
        pair: &str,
        now: SystemTime,
    ) -> Result<LockoutState, StoreError> {
        let result = async {
            Ok(
                match self
                    .shared_read::<Counter>(&name("lockout", pair.as_bytes()))
                    .await?
                {
                    Read::Absent | Read::Refused(_) => LockoutState::default(),
                    Read::Authentic(c, _) => LockoutState {
                        locked_for: c
                            .locked_until
                            .checked_sub(millis(now))
                            .filter(|left| *left > 0)
                            .map(Duration::from_millis),
                        counting: true,
                    },
                },
            )
        }
        .await;
        self.note(result)
    }

    /// Counts a failed login of `pair`; true when this failure locks it.
    pub async fn lockout_failure(
        &self,
        pair: &str,
        rules: LockoutRules,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let now_ms = millis(now);
        let window = u64::try_from(rules.window.as_millis()).unwrap_or(u64::MAX);
        let cooldown = u64::try_from(rules.cooldown.as_millis()).unwrap_or(u64::MAX);
        let keep_until = now_ms
            .saturating_add(window)
            .saturating_add(cooldown)
            .div_ceil(1000)
            .saturating_add(1);
        let result = self
            .shared_change::<Counter, _>(&name("lockout", pair.as_bytes()), |old| {
                let mut c = old.copied().unwrap_or(Counter {
                    failures: 0,
                    window_start: now_ms,
                    locked_until: 0,
                });
                if now_ms.saturating_sub(c.window_start) > window {
                    c.failures = 0;
                    c.window_start = now_ms;
                }
                c.failures = c.failures.saturating_add(1);
                if c.failures >= rules.max_failures {
                    c.locked_until = now_ms.saturating_add(cooldown);
                    c.failures = 0;
                    c.window_start = now_ms;
                }
                Some((c, keep_until))
            })
            .await
            .map(|c| c.is_some_and(|c| c.failures == 0 && c.locked_until > now_ms));
        self.note(result)
    }

    /// A successful login clears `pair`'s counter.
    pub async fn lockout_clear(&self, pair: &str) -> Result<(), StoreError> {
        let result = self
            .shared_raw_delete(&name("lockout", pair.as_bytes()))
            .await
            .map(|_| ());
        self.note(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreSettings;

    const SECRET: &[u8] = b"a test session secret of at least 32 bytes";

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    async fn revocations(store: &Store) {
        store.set_secret(SECRET);
        let now = unix_now();
        let keep = now + 3600;
        assert!(!store.refresh_revoked("t1", "alice", now).await.unwrap());
        store.revoke_refresh_token("t1", now, keep).await.unwrap();
        // Twice is fine (already revoked).
        store.revoke_refresh_token("t1", now, keep).await.unwrap();
        assert!(store.refresh_revoked("t1", "alice", now).await.unwrap());
        assert!(!store.refresh_revoked("t2", "alice", now).await.unwrap());
        // By subject: tokens issued at or before the time, not after.
        assert_eq!(
            store
                .revoke_refresh_subject("bob", now - 10, keep)
                .await
                .unwrap(),
            now - 10
        );
        assert!(store.refresh_revoked("t3", "bob", now - 20).await.unwrap());
        assert!(store.refresh_revoked("t3", "bob", now - 10).await.unwrap());
        assert!(!store.refresh_revoked("t3", "bob", now - 9).await.unwrap());
        assert!(
            !store
                .refresh_revoked("t3", "bobby", now - 20)
                .await
                .unwrap()
        );
        // A later revocation replaces an earlier one; an earlier one never undoes a later one.
        assert_eq!(
            store
                .revoke_refresh_subject("bob", now, keep)
                .await
                .unwrap(),
            now
        );
        assert_eq!(
            store
                .revoke_refresh_subject("bob", now - 100, keep)
                .await
                .unwrap(),
            now
        );
        assert!(store.refresh_revoked("t3", "bob", now).await.unwrap());
        // The minted passwords do not see these entries.
        assert!(store.list(None).await.unwrap().is_empty());
    }

    async fn lockout(store: &Store) {
        store.set_secret(SECRET);
        let rules = LockoutRules {
            max_failures: 3,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
        };
        let t0 = SystemTime::now();
        let pair = "alice\u{0}192.0.2.1";
        assert_eq!(
            store.lockout_state(pair, t0).await.unwrap(),
            LockoutState::default()
        );
        assert!(!store.lockout_failure(pair, rules, t0).await.unwrap());
        assert!(!store.lockout_failure(pair, rules, t0).await.unwrap());
        let s = store.lockout_state(pair, t0).await.unwrap();
        assert_eq!(s.locked_for, None);
        assert!(s.counting);
        assert!(store.lockout_failure(pair, rules, t0).await.unwrap());
        assert_eq!(
            store.lockout_state(pair, t0).await.unwrap().locked_for,
            Some(Duration::from_secs(30))
        );
        assert_eq!(
            store
                .lockout_state("bob\u{0}192.0.2.1", t0)
                .await
                .unwrap()
                .locked_for,
            None
        );
        // The cooldown ends.
        assert_eq!(
            store
                .lockout_state(pair, t0 + Duration::from_secs(31))
                .await
                .unwrap()
                .locked_for,
            None
        );
        // Failures outside the window do not add up; a success clears the counter.
        let other = "carol\u{0}192.0.2.1";
        store.lockout_failure(other, rules, t0).await.unwrap();
        store.lockout_failure(other, rules, t0).await.unwrap();
        assert!(
            !store
                .lockout_failure(other, rules, t0 + Duration::from_secs(61))
                .await
                .unwrap()
        );
        store.lockout_clear(other).await.unwrap();
        assert!(!store.lockout_state(other, t0).await.unwrap().counting);
    }

    /// Failures from many tasks at once (replicas racing) are all counted.
    async fn concurrent_failures_all_count(store: &Store) {
        store.set_secret(SECRET);
        let rules = LockoutRules {
            max_failures: 1000,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
        };
        let now = SystemTime::now();
        let tasks: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move {
                    for _ in 0..5 {
                        store
                            .lockout_failure("dave\u{0}ip", rules, now)
                            .await
                            .unwrap();
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let Read::Authentic(c, _) = store
            .shared_read::<Counter>(&name("lockout", b"dave\0ip"))
            .await
            .unwrap()
        else {
            panic!("no counter");
        };
        assert_eq!(c.failures, 40);
    }

    #[tokio::test]
    async fn memory_shared_state() {
        let store = Store::memory();
        revocations(&store).await;
        lockout(&store).await;
        concurrent_failures_all_count(&store).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_shared_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(&StoreSettings::Embedded {
            path: dir.path().join("passwords.db"),
        });
        revocations(&store).await;
        lockout(&store).await;
        concurrent_failures_all_count(&store).await;
    }

    #[tokio::test]
    async fn forged_or_foreign_records() {
        let store = Store::memory();
        store.set_secret(SECRET);
        let now = unix_now();
        // A revocation written under another secret (a replica with its own generated
        // secret, or a forger): still a revocation, and counted.
        let other = Store::memory();
        other.set_secret(b"another session secret of at least 32 bytes");
        other
            .revoke_refresh_subject("alice", now, now + 60)
            .await
            .unwrap();
        other
            .revoke_refresh_token("t9", now, now + 60)
            .await
            .unwrap();
        let Backend::Memory(_, theirs) = &other.0.backend else {
            unreachable!()
        };
        let Backend::Memory(_, ours) = &store.0.backend else {
            unreachable!()
        };
        *lock(ours) = lock(theirs).clone();
        let before = crate::store::rejected_records();
        assert!(store.refresh_revoked("t1", "alice", now + 5).await.unwrap());
        assert!(store.refresh_revoked("t9", "bob", now).await.unwrap());
        assert!(crate::store::rejected_records() >= before + 2);
        // A forged lockout counter is ignored and replaced.
        let rules = LockoutRules {
            max_failures: 2,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
        };
        let t = at(now);
        other.lockout_failure("eve", rules, t).await.unwrap();
        other.lockout_failure("eve", rules, t).await.unwrap();
        assert!(
            other
                .lockout_state("eve", t)
                .await
                .unwrap()
                .locked_for
                .is_some()
        );
        *lock(ours) = lock(theirs).clone();
        assert_eq!(
            store.lockout_state("eve", t).await.unwrap(),
            LockoutState::default()
        );
        assert!(!store.lockout_failure("eve", rules, t).await.unwrap());
        assert!(store.lockout_failure("eve", rules, t).await.unwrap());
        // Entries expire.
        store
            .revoke_refresh_token("short", now - 10, now - 1)
            .await
            .unwrap();
        assert!(!store.refresh_revoked("short", "x", now).await.unwrap());
    }
}
