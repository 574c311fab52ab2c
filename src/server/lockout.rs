//! Brute-force protection: after `max_failures` failed logins for one (account, client IP) pair
//! within `window`, that pair is refused with 429 and `Retry-After` for `cooldown`.
//!
//! Only failures count, per pair: correct logins and parallel pulls of other users (or of the
//! same user from another address) are never slowed, unlike a per-account lock, as long as the
//! client IP is the client's (behind a proxy that is not in `server.trusted_proxies`, every
//! client shares the proxy's address and so its counters). A successful login clears the pair.
//! Counters are per replica and bounded in number (least recently used pairs are forgotten
//! first), so spraying many names cannot exhaust memory.
//!
//! The account is keyed in a folded form ([`crate::authn::fold_account`]): backends such as LDAP treat `ALICE`,
//! ` alice` and `alice` as one account, so those spellings must share one counter.

use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use moka::sync::Cache;

use crate::authn::fold_account;
use crate::config::LockoutSettings;

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
