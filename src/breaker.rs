//! Failing fast while a database server is down.
//!
//! sqlx's pool retries a refused connection until its acquire timeout, so without this every
//! request that needs a PostgreSQL server that is down would wait the whole timeout (5 s by
//! default) before its 5xx, and requests would pile up. A [`Breaker`] remembers that the server
//! could not be reached:
//!
//! * closed (normal): every call goes out; a short blip is ridden out by the pool's own wait;
//! * open: a call that could not reach the server opens it for the cool-down; calls during the
//!   cool-down are refused at once;
//! * after the cool-down one call (the probe) goes out while the others are still refused; its
//!   success closes the breaker, its failure opens it for another cool-down.
//!
//! Only "could not reach the server" opens it (no connection, a timeout, TLS); an error the
//! server answered (a refused query) proves it is up and closes it. Lock-free: two atomics.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long calls are refused after the server could not be reached.
pub const COOL_DOWN: Duration = Duration::from_secs(2);

/// See the module documentation.
#[derive(Debug)]
pub struct Breaker {
    epoch: Instant,
    cool_down: Duration,
    /// Milliseconds since `epoch` until which calls are refused; 0 when closed.
    open_until: AtomicU64,
    /// A probe is out.
    probing: AtomicBool,
}

/// Leave to make one call; give the outcome to [`Breaker::record`].
#[derive(Debug)]
pub struct Permit<'a> {
    breaker: &'a Breaker,
    probe: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        // A probe dropped without an outcome (its request was cancelled): let another probe go.
        if self.probe {
            self.breaker.probing.store(false, Ordering::Release);
        }
    }
}

/// How a call ended, for [`Breaker::record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The server answered (with a result or an error of its own).
    Reached,
    /// No connection, a timeout, a TLS failure.
    Unreachable,
}

impl Default for Breaker {
    fn default() -> Self {
        Self::new(COOL_DOWN)
    }
}

impl Breaker {
    /// A closed breaker with this cool-down.
    pub fn new(cool_down: Duration) -> Self {
        Self {
            epoch: Instant::now(),
            cool_down,
            open_until: AtomicU64::new(0),
            probing: AtomicBool::new(false),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// Leave to call the server, or how long ago it was found unreachable (`Err`, refuse the
    /// call without trying).
    pub fn admit(&self) -> Result<Permit<'_>, Refused> {
        let open_until = self.open_until.load(Ordering::Acquire);
        if open_until == 0 {
            return Ok(Permit {
                breaker: self,
                probe: false,
            });
        }
        let now = self.now_ms();
        if now >= open_until
            && self
                .probing
                .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            return Ok(Permit {
                breaker: self,
                probe: true,
            });
        }
        let cool_down_ms = u64::try_from(self.cool_down.as_millis()).unwrap_or(u64::MAX);
        Err(Refused {
            since: Duration::from_millis(
                now.saturating_sub(open_until.saturating_sub(cool_down_ms)),
            ),
        })
    }

    /// Records how the call of `permit` ended.
    pub fn record(&self, permit: Permit<'_>, outcome: Outcome) {
        match outcome {
            Outcome::Reached => self.open_until.store(0, Ordering::Release),
            Outcome::Unreachable => {
                let until = self
                    .now_ms()
                    .saturating_add(u64::try_from(self.cool_down.as_millis()).unwrap_or(u64::MAX));
                self.open_until.store(until, Ordering::Release);
            }
        }
        drop(permit);
    }
}

/// A call refused without trying: the server was found unreachable `since` ago.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Time since the last failure to reach the server.
    pub since: Duration,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "not tried: the server could not be reached {:.1} s ago (one call tries again every \
             {} s)",
            self.since.as_secs_f64(),
            COOL_DOWN.as_secs()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closed_until_unreachable_then_one_probe_after_the_cool_down() {
        let b = Breaker::new(Duration::from_millis(50));
        // Closed: any number of calls.
        let (p1, p2) = (b.admit().unwrap(), b.admit().unwrap());
        b.record(p1, Outcome::Reached);
        b.record(p2, Outcome::Unreachable);
        // Open: refused at once.
        let refused = b.admit().unwrap_err();
        assert!(refused.since < Duration::from_millis(50), "{refused:?}");
        assert!(refused.to_string().contains("could not be reached"));
        std::thread::sleep(Duration::from_millis(60));
        // After the cool-down: one probe, the others still refused.
        let probe = b.admit().unwrap();
        assert!(b.admit().is_err());
        b.record(probe, Outcome::Unreachable);
        assert!(b.admit().is_err(), "a failed probe opens it again");
        std::thread::sleep(Duration::from_millis(60));
        let probe = b.admit().unwrap();
        b.record(probe, Outcome::Reached);
        // Closed again.
        let (p1, p2) = (b.admit().unwrap(), b.admit().unwrap());
        drop((p1, p2));
    }

    #[test]
    fn a_cancelled_probe_lets_the_next_call_probe() {
        let b = Breaker::new(Duration::ZERO);
        let p = b.admit().unwrap();
        b.record(p, Outcome::Unreachable);
        let probe = b.admit().unwrap();
        assert!(b.admit().is_err());
        drop(probe);
        assert!(b.admit().is_ok());
    }

    #[test]
    fn an_answer_from_the_server_closes_it() {
        let b = Breaker::new(Duration::ZERO);
        let p = b.admit().unwrap();
        b.record(p, Outcome::Unreachable);
        let probe = b.admit().unwrap();
        b.record(probe, Outcome::Reached);
        let (p1, p2) = (b.admit().unwrap(), b.admit().unwrap());
        drop((p1, p2));
    }
}
