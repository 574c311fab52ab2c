//! The Redis store beyond one instance, against real `redis-server` processes on loopback:
//!
//! * Sentinel: a primary and two replicas (`appendfsync always`) watched by three sentinels
//!   (quorum 2, their own password); `serve` with `store.url: redis+sentinel://…` under a
//!   stream of web logins (mints), sign-outs and token requests that read the store. The
//!   primary is SIGKILLed; the sentinels promote a replica; requests recover without a restart
//!   of registry-auth. Every mint and sign-out acknowledged before or during the failover still
//!   holds afterwards (each write waited for a replica: `WAIT`). The figures are printed.
//! * Cluster: three masters made with `redis-cli --cluster create`; `serve` with
//!   `store.url: redis+cluster://…` (one seed node): passwords minted for two users land on
//!   several masters, work, are revalidated (the compare-and-set script, routed to the key's
//!   master), listed and revoked with `registry-auth logins` (a scan of every master) and
//!   signed out.

use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::http::{self, basic};
use crate::common::idp::{FakeGithub, GhUser, element_text};
use crate::common::keys::yaml_str;
use crate::common::proc::free_port;
use crate::common::redis::{Cluster, REDIS_PASSWORD, SENTINEL_PASSWORD, SentinelSet, wait_until};
use crate::common::server::run_cli;
use crate::common::stack::SERVICE;
use crate::common::webstack::{
    CLIENT_ID, CLIENT_SECRET, WebStack, login_at_fake, login_page, sign_out,
};

const ACL: &str = r#"  - match: {labels: {teams: platform}, name: "platform/**"}
    actions: [pull, push]
"#;
const SCOPE: &str = "repository:platform/app:pull";
/// Load before the primary is killed.
const BEFORE: Duration = Duration::from_secs(3);
/// Load after the kill (the failover takes a few seconds: 1 s to notice, then the election).
const AFTER: Duration = Duration::from_secs(10);
/// Longest accepted time from the kill to the last failed request.
const MAX_RECOVERY: Duration = Duration::from_secs(8);

/// A web stack with the fake GitHub (alice and bob in acme/platform) and `store_url`.
fn stack(store_url: &str, revalidate_after: &str) -> (FakeGithub, WebStack) {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gh.set_user(GhUser::member("alice", "acme", "platform"));
    gh.set_user(GhUser::member("bob", "acme", "platform"));
    let sections = {
        let (web, api) = (gh.web(), gh.api());
        let store = format!("store:\n  type: redis\n  url: {}\n", yaml_str(store_url));
        let revalidate_after = revalidate_after.to_owned();
        move |_: &std::path::Path, _: &str| {
            format!(
                "{store}github_auth:\n  organization: acme\n  client_id: {CLIENT_ID}\n  \
                 client_secret: {CLIENT_SECRET}\n  github_web_uri: {web}\n  github_api_uri: {api}\n  \
                 revalidate_after: {revalidate_after}\nlockout:\n  enabled: false\n"
            )
        }
    };
    let stack = WebStack::start_full(free_port(), "", sections, ACL, false);
    gh.set_redirect_uri(&format!("{}/github_auth", stack.base()));
    wait_until(
        "the store was not ready",
        Duration::from_secs(15),
        || {
            fs::read_to_string(&stack.server.log)
                .unwrap_or_default()
                .contains("password store ready")
        },
        || stack.diagnostics(),
    );
    (gh, stack)
}

/// GET /auth with Basic credentials: the status, or why there was none.
fn token_status(base: &str, user: &str, password: &str) -> Result<u16, String> {
    let url = format!(
        "{base}/auth?{}",
        http::query(&[("service", SERVICE), ("scope", SCOPE)])
    );
    http::try_request("GET", &url, &[("Authorization", basic(user, password))])
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

/// What one request of the load did.
#[derive(Debug, Clone)]
struct Sample {
    what: &'static str,
    end: Instant,
    /// The status, or why there was none.
    status: Result<u16, String>,
    ok: bool,
}

#[derive(Debug, Default)]
struct Ledger {
    samples: Vec<Sample>,
    /// Acknowledged mints that are kept (the token workers use them).
    live: Vec<String>,
    /// Acknowledged mints whose sign-out was acknowledged.
    revoked: Vec<String>,
    /// Sign-outs that failed: whether the record is gone is unknown.
    revoke_unknown: Vec<String>,
}

#[test]
fn sentinel_failover_under_load_loses_nothing_acknowledged() {
    let set = SentinelSet::start(2);
    let url = set.url();
    let (_gh, stack) = stack(&url, "1h");
    let base = stack.base();
    let first = login_at_fake(&base, "github_auth", "alice");
    let ledger = Arc::new(Mutex::new(Ledger {
        live: vec![first.password],
        ..Ledger::default()
    }));
    let stop = Arc::new(AtomicBool::new(false));

    let mut workers = Vec::new();
    // The writer: a web login after another; every third minted password is signed out
    // at once.
    {
        let (ledger, stop, base) = (Arc::clone(&ledger), Arc::clone(&stop), base.clone());
        workers.push(thread::spawn(move || {
            let mut n = 0_u32;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let page = login_page(&base, "github_auth", "alice");
                let minted = (page.status == 200)
                    .then(|| element_text(&page.body, "password"))
                    .flatten();
                ledger.lock().unwrap().samples.push(Sample {
                    what: "mint",
                    end: Instant::now(),
                    status: Ok(page.status),
                    ok: minted.is_some(),
                });
                let Some(pw) = minted else {
                    thread::sleep(Duration::from_millis(20));
                    continue;
                };
                if !n.is_multiple_of(3) {
                    ledger.lock().unwrap().live.push(pw);
                    continue;
                }
                let out = sign_out(&base, &pw);
                let revoked = out.status == 200 && out.body.contains("has been revoked");
                let mut l = ledger.lock().unwrap();
                l.samples.push(Sample {
                    what: "sign-out",
                    end: Instant::now(),
                    status: Ok(out.status),
                    ok: revoked,
                });
                if revoked {
                    l.revoked.push(pw);
                } else {
                    l.revoke_unknown.push(pw);
                }
            }
        }));
    }
    // Two readers: token requests with the newest acknowledged passwords (each reads the
    // store).
    for i in 0..2 {
        let (ledger, stop, base) = (Arc::clone(&ledger), Arc::clone(&stop), base.clone());
        workers.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let pw = {
                    let l = ledger.lock().unwrap();
                    l.live[l.live.len().saturating_sub(1 + i)].clone()
                };
                let status = token_status(&base, "alice", &pw);
                ledger.lock().unwrap().samples.push(Sample {
                    what: "token",
                    end: Instant::now(),
                    ok: status == Ok(200),
                    status,
                });
            }
        }));
    }

    thread::sleep(BEFORE);
    let old_port = set.primary.port;
    let mut set = set;
    // Taken before the signal: a request failing while the kill is being reaped belongs to the
    // failover.
    let killed = Instant::now();
    set.primary.kill();
    let mut promoted = None;
    while killed.elapsed() < AFTER {
        if promoted.is_none()
            && set.sentinels[0]
                .master_port()
                .is_some_and(|p| p != old_port)
        {
            promoted = Some(killed.elapsed());
        }
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().expect("a load thread panicked");
    }

    let l = ledger.lock().unwrap();
    let diag = || format!("{}\n{}", stack.diagnostics(), set.diagnostics());
    let promoted = promoted.unwrap_or_else(|| {
        panic!(
            "the sentinels did not promote a replica within {AFTER:?}\n{}",
            diag()
        )
    });
    let new_port = set.sentinels[0].master_port().expect("master address");
    assert!(
        set.replicas.iter().any(|r| r.port == new_port),
        "the new primary {new_port} is not one of the replicas"
    );
    let before: Vec<&Sample> = l.samples.iter().filter(|s| s.end < killed).collect();
    let after: Vec<&Sample> = l.samples.iter().filter(|s| s.end >= killed).collect();
    let failed_before: Vec<&&Sample> = before.iter().filter(|s| !s.ok).collect();
    assert!(
        failed_before.is_empty(),
        "requests failed before the kill: {failed_before:?}\n{}",
        diag()
    );
    let failed: Vec<&&Sample> = after.iter().filter(|s| !s.ok).collect();
    // A failure is a 503 (the store is unavailable), never a 500, a 401 for a good password or
    // a broken connection.
    let odd: Vec<&&&Sample> = failed.iter().filter(|s| s.status != Ok(503)).collect();
    assert!(
        odd.is_empty(),
        "failures other than 503 during the failover: {odd:?}\n{}",
        diag()
    );
    let last_failure = failed.iter().map(|s| s.end).max();
    let recovered = last_failure.map_or(Duration::ZERO, |t| t.duration_since(killed));
    assert!(
        recovered <= MAX_RECOVERY,
        "requests still failed {recovered:?} after the kill\n{}",
        diag()
    );
    let count = |v: &[&Sample], what: &str| v.iter().filter(|s| s.what == what).count();
    let after_recovery: Vec<&Sample> = after
        .iter()
        .copied()
        .filter(|s| last_failure.is_none_or(|t| s.end > t))
        .collect();
    for what in ["mint", "sign-out", "token"] {
        assert!(
            count(&after_recovery, what) > 0,
            "no successful {what} after the failover\n{}",
            diag()
        );
        assert!(count(&before, what) > 0, "no {what} before the kill");
    }

    // Nothing acknowledged is lost: every acknowledged mint works, every acknowledged
    // sign-out holds.
    let mut lost = Vec::new();
    for pw in &l.live {
        let got = token_status(&base, "alice", pw);
        if got != Ok(200) {
            lost.push(format!("an acknowledged mint: now {got:?}"));
        }
    }
    for pw in &l.revoked {
        let got = token_status(&base, "alice", pw);
        if got != Ok(401) {
            lost.push(format!("an acknowledged sign-out: now {got:?}"));
        }
    }
    assert!(lost.is_empty(), "{}\n{}", lost.join("\n"), diag());
    // The writes on the new primary waited for a replica (`WAIT` after each).
    let promoted_node = set
        .replicas
        .iter()
        .find(|r| r.port == new_port)
        .expect("the new primary");
    let stats = promoted_node.cli0(&["INFO", "commandstats"]);
    assert!(
        stats.lines().any(|l| l.starts_with("cmdstat_wait:calls=")),
        "no WAIT on the new primary:\n{stats}"
    );
    let log = stack.server.synced_log();
    for secret in [REDIS_PASSWORD, SENTINEL_PASSWORD] {
        assert!(!log.contains(secret), "the log holds a Redis password");
    }

    let total = l.samples.len();
    println!(
        "Redis Sentinel failover under load (3 sentinels, quorum 2; primary + 2 replicas, \
         appendfsync always; each write waits for 1 replica): {total} requests ({} mints, {} \
         sign-outs, {} token requests), {} of them after the kill",
        count(&l.samples.iter().collect::<Vec<_>>(), "mint"),
        count(&l.samples.iter().collect::<Vec<_>>(), "sign-out"),
        count(&l.samples.iter().collect::<Vec<_>>(), "token"),
        after.len(),
    );
    println!(
        "  primary SIGKILLed after {BEFORE:?} of load; sentinels named the new primary {:.1} s \
         after the kill; {} requests failed during the failover (all 503: {} mints, {} \
         sign-outs, {} token requests); recovered (last failure ended) {:.2} s after the kill, \
         every request after that succeeded",
        promoted.as_secs_f64(),
        failed.len(),
        count(&failed.iter().map(|s| **s).collect::<Vec<_>>(), "mint"),
        count(&failed.iter().map(|s| **s).collect::<Vec<_>>(), "sign-out"),
        count(&failed.iter().map(|s| **s).collect::<Vec<_>>(), "token"),
        recovered.as_secs_f64(),
    );
    println!(
        "  nothing acknowledged was lost: {} acknowledged mints all work, {} acknowledged \
         sign-outs all hold ({} sign-outs failed and are not counted)",
        l.live.len(),
        l.revoked.len(),
        l.revoke_unknown.len(),
    );
}

#[test]
fn cluster_of_three_masters_stores_lists_and_revokes() {
    let cluster = Cluster::start(3);
    let (gh, stack) = stack(&cluster.url(), "1s");
    let base = stack.base();
    let logins: Vec<(&str, String)> = (0..12)
        .map(|i| {
            let user = if i % 2 == 0 { "alice" } else { "bob" };
            (user, login_at_fake(&base, "github_auth", user).password)
        })
        .collect();
    // The records are spread over the masters (12 keys: all on one master has odds of 3^-11).
    let per_node: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|n| {
            n.cli0(&["--scan", "--pattern", "registry-auth:minted:*"])
                .lines()
                .count()
        })
        .collect();
    assert_eq!(per_node.iter().sum::<usize>(), 12, "{per_node:?}");
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "every record is on one master: {per_node:?}"
    );
    for (user, pw) in &logins {
        assert_eq!(
            token_status(&base, user, pw),
            Ok(200),
            "{}",
            stack.diagnostics()
        );
    }

    // Revalidation after `revalidate_after` replaces the record by compare-and-set (the
    // script runs on the key's master): the stored value changes.
    let (user, pw) = &logins[0];
    let key = format!(
        "registry-auth:minted:{}",
        registry_auth::store::password_id(pw)
    );
    let stored = || {
        cluster
            .nodes
            .iter()
            .map(|n| n.cli0(&["-c", "GET", &key]))
            .find(|v| !v.trim().is_empty())
            .unwrap_or_default()
    };
    let before = stored();
    assert!(!before.trim().is_empty(), "no record under {key}");
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(token_status(&base, user, pw), Ok(200));
    let after = stored();
    assert!(
        !after.trim().is_empty() && after != before,
        "the revalidation did not replace the record\n{}",
        stack.diagnostics()
    );
    // Removed from the organisation upstream: the next revalidation refuses it.
    gh.set_user(GhUser::member("bob", "other-org", "platform"));
    thread::sleep(Duration::from_millis(1100));
    assert_eq!(token_status(&base, "bob", &logins[1].1), Ok(401));
    gh.set_user(GhUser::member("bob", "acme", "platform"));

    // `logins list` scans every master.
    let config = stack.server.config.display().to_string();
    let out = run_cli(&["logins", "list", "--config", &config]);
    assert!(out.success(), "{}", out.describe());
    let alice_lines = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("alice\t"))
        .count();
    let bob_lines = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("bob\t"))
        .count();
    assert_eq!(alice_lines, 6, "{}", out.stdout);
    assert!((5..=6).contains(&bob_lines), "{}", out.stdout);
    for (_, pw) in &logins {
        assert!(!out.stdout.contains(pw.as_str()), "a password is listed");
    }
    // `logins revoke --user alice` deletes hers on every master; bob's keep working.
    let out = run_cli(&["logins", "revoke", "--config", &config, "--user", "alice"]);
    assert!(out.success(), "{}", out.describe());
    assert!(
        out.stdout.contains("revoked 6 minted passwords"),
        "{}",
        out.stdout
    );
    for (user, pw) in &logins[2..] {
        let want = if *user == "alice" { 401 } else { 200 };
        assert_eq!(token_status(&base, user, pw), Ok(want), "{user}");
    }
    // A sign-out deletes one record.
    let (_, bobs) = &logins[3];
    let out = sign_out(&base, bobs);
    assert!(out.body.contains("has been revoked"), "{}", out.body);
    assert_eq!(token_status(&base, "bob", bobs), Ok(401));
    let out = run_cli(&["logins", "list", "--config", &config, "--user", "alice"]);
    assert!(
        out.stdout.starts_with("0 minted passwords"),
        "{}",
        out.stdout
    );
}
