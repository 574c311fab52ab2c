//! Brute-force protection: after `max_failures` failed logins for one (account, client IP) pair
//! within `window`, that pair is refused with 429 and `Retry-After` for `cooldown`.
//!
//! Only failures count, per pair: correct logins and parallel pulls of other users (or of the
//! same user from another address) are never slowed, unlike a per-account lock, as long as the
//! client IP is the client's (behind a proxy that is not in `server.trusted_proxies`, every
//! client shares the proxy's address and so its counters). A successful login clears the pair.
//!
//! With a Redis or PostgreSQL `store` the counters live there ([`crate::store::Store`]'s
//! `lockout_*`), so failures spread over the replicas count once. While the store cannot be
//! reached, each replica counts in memory instead (a warning at most every
//! [`FALLBACK_WARN_EVERY`], and `registry_auth_lockout_store_fallbacks_total`): logins keep
//! working, and an attacker gets at most `max_failures` tries per replica during the outage.
//! A pair locked in memory stays locked after the store is back, until its cooldown ends.
//! In-memory counters are bounded in number (least recently used pairs are forgotten first),
//! so spraying many names cannot exhaust memory.
//!
//! The account is keyed in a folded form ([`crate::authn::fold_account`]): backends such as LDAP treat `ALICE`,
//! ` alice` and `alice` as one account, so those spellings must share one counter.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use moka::sync::Cache;
use tracing::warn;

use crate::authn::fold_account;
use crate::config::LockoutSettings;
use crate::store::{LockoutRules, Store, StoreError};

/// Lockout operations that fell back to in-memory counters because the store failed.
static FALLBACKS: AtomicU64 = AtomicU64::new(0);
/// When the last fallback warning was logged (ms since the Unix epoch).
static LAST_WARNING: AtomicU64 = AtomicU64::new(0);
/// At most one fallback warning this often.
pub const FALLBACK_WARN_EVERY: Duration = Duration::from_secs(10);

/// How many lockout operations fell back to in-memory counters because the shared store failed
/// (`registry_auth_lockout_store_fallbacks_total`).
pub fn store_fallbacks() -> u64 {
    FALLBACKS.load(Ordering::Relaxed)
}

fn fell_back(e: &StoreError) {
    FALLBACKS.fetch_add(1, Ordering::Relaxed);
    let now = crate::store::unix_now().saturating_mul(1000);
    let last = LAST_WARNING.load(Ordering::Relaxed);
    let every = u64::try_from(FALLBACK_WARN_EVERY.as_millis()).unwrap_or(u64::MAX);
    if now.saturating_sub(last) >= every
        && LAST_WARNING
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        warn!(
            error = %e,
            "lockout: the shared store failed; counting failed logins on this replica alone \
             until it answers again (registry_auth_lockout_store_fallbacks_total)"
        );
    }
}

/// The name of an (account, IP) pair in the shared store.
fn pair_name(account: &str, ip: IpAddr) -> String {
    format!("{}\0{ip}", fold_account(account))
}

/// Most (account, IP) pairs tracked at once.
const MAX_PAIRS: u64 = 100_000;

#[derive(Debug)]
struct Entry {
    failures: u32,
    window_start: Instant,
    locked_until: Option<Instant>,
}

/// Failed-login counters.
#[derive(Debug)]
pub struct Lockout {
    settings: ArcSwap<LockoutSettings>,
    pairs: Cache<(String, IpAddr), Arc<Mutex<Entry>>>,
}

impl Lockout {
    /// Empty counters with these settings.
    pub fn new(settings: LockoutSettings) -> Self {
        Self {
            settings: ArcSwap::from_pointee(settings),
            pairs: Cache::builder()
                .max_capacity(MAX_PAIRS)
                .time_to_idle(settings.window + settings.cooldown)
                .build(),
        }
    }

    /// Applies new settings (on reload); counts so far are kept.
    pub fn configure(&self, settings: LockoutSettings) {
        self.settings.store(Arc::new(settings));
    }

    /// `Some(time left)` when the pair is locked out.
    pub fn check(&self, account: &str, ip: IpAddr, now: Instant) -> Option<Duration> {
        if !self.settings.load().enabled || account.is_empty() {
            return None;
        }
        let entry = self.pairs.get(&(fold_account(account), ip))?;
        let entry = entry.lock().ok()?;
        entry
            .locked_until
            .and_then(|until| until.checked_duration_since(now))
            .filter(|left| !left.is_zero())
    }

    /// Counts a failed login; returns true when this failure locks the pair.
    pub fn failure(&self, account: &str, ip: IpAddr, now: Instant) -> bool {
        let s = **self.settings.load();
        if !s.enabled || account.is_empty() {
            return false;
        }
        let entry = self.pairs.get_with((fold_account(account), ip), || {
            Arc::new(Mutex::new(Entry {
                failures: 0,
                window_start: now,
                locked_until: None,
            }))
        });
        let Ok(mut e) = entry.lock() else {
            return false;
        };
        if now.duration_since(e.window_start) > s.window {
            e.failures = 0;
            e.window_start = now;
        }
        e.failures += 1;
        if e.failures >= s.max_failures {
            e.locked_until = Some(now + s.cooldown);
            e.failures = 0;
            e.window_start = now;
            return true;
        }
        false
    }

    /// A successful login clears the pair.
    pub fn success(&self, account: &str, ip: IpAddr) {
        if !account.is_empty() {
            self.pairs.invalidate(&(fold_account(account), ip));
        }
    }
}

/// Whether a pair had a counter when it was checked (a success clears it only then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Checked {
    /// Time left while the pair is locked out.
    pub locked_for: Option<Duration>,
    counting: bool,
}

impl Lockout {
    /// [`Lockout::check`], with the counters in `store` when one is shared. A pair locked in
    /// memory (while the store was down) stays locked.
    pub async fn check_shared(&self, store: Option<&Store>, account: &str, ip: IpAddr) -> Checked {
        let local = self.check(account, ip, Instant::now());
        let Some(store) = store.filter(|_| self.settings.load().enabled && !account.is_empty())
        else {
            return Checked {
                locked_for: local,
                counting: true,
            };
        };
        match store
            .lockout_state(&pair_name(account, ip), SystemTime::now())
            .await
        {
            Ok(state) => Checked {
                locked_for: local.max(state.locked_for),
                counting: state.counting || self.pairs.contains_key(&(fold_account(account), ip)),
            },
            Err(e) => {
                fell_back(&e);
                Checked {
                    locked_for: local,
                    counting: true,
                }
            }
        }
    }

    /// [`Lockout::failure`], counted in `store` when one is shared (in memory while it fails).
    pub async fn failure_shared(&self, store: Option<&Store>, account: &str, ip: IpAddr) -> bool {
        let s = **self.settings.load();
        let Some(store) = store.filter(|_| s.enabled && !account.is_empty()) else {
            return self.failure(account, ip, Instant::now());
        };
        let rules = LockoutRules {
            max_failures: s.max_failures,
            window: s.window,
            cooldown: s.cooldown,
        };
        match store
            .lockout_failure(&pair_name(account, ip), rules, SystemTime::now())
            .await
        {
            Ok(locked) => locked,
            Err(e) => {
                fell_back(&e);
                self.failure(account, ip, Instant::now())
            }
        }
    }

    /// [`Lockout::success`], in `store` too when one is shared and the pair was counting.
    pub async fn success_shared(
        &self,
        store: Option<&Store>,
        checked: Checked,
        account: &str,
        ip: IpAddr,
    ) {
        self.success(account, ip);
        if let Some(store) = store
            && checked.counting
            && !account.is_empty()
            && let Err(e) = store.lockout_clear(&pair_name(account, ip)).await
        {
            fell_back(&e);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(max: u32) -> LockoutSettings {
        LockoutSettings {
            enabled: true,
            max_failures: max,
            window: Duration::from_secs(60),
            cooldown: Duration::from_secs(30),
        }
    }

    const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const OTHER_IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn locks_after_max_failures_for_the_cooldown() {
        let l = Lockout::new(settings(3));
        let t0 = Instant::now();
        assert!(!l.failure("alice", IP, t0));
        assert!(!l.failure("alice", IP, t0));
        assert_eq!(l.check("alice", IP, t0), None);
        assert!(l.failure("alice", IP, t0));
        assert_eq!(l.check("alice", IP, t0), Some(Duration::from_secs(30)));
        // Other pairs are unaffected.
        assert_eq!(l.check("alice", OTHER_IP, t0), None);
        assert_eq!(l.check("bob", IP, t0), None);
        // The cooldown ends.
        assert_eq!(l.check("alice", IP, t0 + Duration::from_secs(31)), None);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let l = Lockout::new(settings(3));
        let t0 = Instant::now();
        l.failure("alice", IP, t0);
        l.failure("alice", IP, t0);
        assert!(!l.failure("alice", IP, t0 + Duration::from_secs(61)));
        assert_eq!(l.check("alice", IP, t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn spellings_of_one_account_share_a_counter() {
        assert_eq!(fold_account("  ALICE \t"), "alice");
        assert_eq!(fold_account("Jane\u{a0} \n Doe"), "jane doe");
        assert_eq!(fold_account("ÉLODIE"), "élodie");
        assert_eq!(fold_account("alice"), "alice");
        assert_eq!(fold_account(" \t"), "");
        assert_ne!(fold_account("alice"), fold_account("alice2"));
        assert_ne!(fold_account("a lice"), fold_account("alice"));
        let l = Lockout::new(settings(4));
        let t0 = Instant::now();
        for spelling in ["alice", "ALICE", " Alice"] {
            assert!(!l.failure(spelling, IP, t0), "{spelling}");
        }
        assert!(l.failure("alice ", IP, t0));
        for spelling in ["alice", "Alice", "  aLiCe  "] {
            assert_eq!(l.check(spelling, IP, t0), Some(Duration::from_secs(30)));
        }
        assert_eq!(l.check("bob", IP, t0), None);
        // A success under any spelling clears the account's counter.
        let l = Lockout::new(settings(2));
        l.failure("Bob", IP, t0);
        l.success("BOB ", IP);
        assert!(!l.failure("bob", IP, t0));
        // Accounts that are only whitespace are one (blank) account, counted like any other;
        // only the empty account (anonymous) is never counted.
        assert!(!l.failure("   ", IP, t0));
        assert!(l.failure("\t", IP, t0));
        assert!(l.check(" ", IP, t0).is_some());
        assert_eq!(l.check("", IP, t0), None);
    }

    #[test]
    fn success_clears_and_disabled_or_anonymous_never_lock() {
        let l = Lockout::new(settings(2));
        let t0 = Instant::now();
        l.failure("alice", IP, t0);
        l.success("alice", IP);
        assert!(!l.failure("alice", IP, t0));
        assert!(!l.failure("", IP, t0));
        assert!(!l.failure("", IP, t0));
        assert_eq!(l.check("", IP, t0), None);
        l.configure(LockoutSettings {
            enabled: false,
            ..settings(1)
        });
        assert!(!l.failure("bob", IP, t0));
        assert_eq!(l.check("bob", IP, t0), None);
    }
}
