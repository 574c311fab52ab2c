//! Fault runs: a backing service is killed with SIGKILL and started again while
//! `registry-auth serve` is under a bounded loopback load, with no restart of registry-auth.
//!
//! * LDAP: a real `slapd` (the `ldap_auth` backend; credential cache off, so every request
//!   reaches the directory);
//! * the minted-password store on Redis (`appendonly yes`, `appendfsync always`);
//! * the minted-password store on PostgreSQL (the postmaster and all its backends killed at
//!   once; the restart runs crash recovery).
//!
//! Load: [`WORKERS_PER_PROBE`] threads per probe send token requests back to back. The probes:
//! a valid credential that needs the service, a refused one that needs it, and one that does
//! not need it at all. For the stores a writer thread also mints passwords (a whole web
//! login at a fake GitHub) and revokes them (sign out) during the run, outage included.
//!
//! Every answer is kept with its start and end time and sorted into phases: before the kill,
//! the outage (started after the kill and ended before the service was back), and after the
//! restart. What must hold:
//! * a request that needs the service gets its normal answer (200, or 401 for a refused
//!   credential) before the kill; a 503 during the outage (never a 500, never a 401 for a good
//!   credential, never a 200 for a refused one); a first normal answer again within
//!   [`MAX_RECOVERY`] of the service accepting connections, and only normal answers for the
//!   requests started after that one arrived;
//! * a request that does not need the service is answered normally throughout;
//! * no request fails at the socket level (the server always answers);
//! * `/readyz` shows the backend `down` at the end of the outage and `up` after the run;
//! * stores: every password whose mint was acknowledged (the result page showed it) works after
//!   the restart, and every acknowledged revocation still holds: nothing acknowledged is lost.
//!
//! The figures (answers per phase and status, recovery time, mints and revocations) are printed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::http::{self, basic};
use crate::common::idp::{FakeGithub, GhUser, element_text};
use crate::common::image;
use crate::common::keys::{KeyFiles, KeySetup, bcrypt_hash, yaml_str};
use crate::common::redis::{Persistence, Redis};
use crate::common::server::AuthServer;
use crate::common::stack::{SERVICE, tempdir};
use crate::common::webstack::{CLIENT_ID, CLIENT_SECRET, WebStack, login_page, sign_out};
use crate::ldap::{self, Slapd};
use crate::sql::Postgres;

/// Threads per probe sending token requests back to back.
const WORKERS_PER_PROBE: usize = 2;
/// Load before the kill.
const BEFORE: Duration = Duration::from_secs(4);
/// How long the service stays down: longer than the 5 s the stores and LDAP allow a
/// connection attempt, so requests that wait for one also end inside the outage.
const OUTAGE: Duration = Duration::from_secs(8);
/// Load after the restart.
const AFTER: Duration = Duration::from_secs(8);
/// Longest accepted time from the service accepting connections again to the first normal
/// answer (registry-auth reconnects on the next request; no restart, no back-off wait).
const MAX_RECOVERY: Duration = Duration::from_secs(5);

/// One kind of request of the load.
struct Probe {
    name: String,
    /// The answer outside the outage.
    normal: u16,
    /// Whether it needs the killed service (else it must be answered normally throughout).
    dependent: bool,
    send: Box<dyn Fn() -> Result<u16, String> + Send + Sync>,
}

struct Sample {
    probe: usize,
    start: Instant,
    end: Instant,
    result: Result<u16, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    Before,
    /// Straddles the kill or the restart: the normal answer or a 503.
    Edge,
    Outage,
    After,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Self::Before => "before",
            Self::Edge => "at an edge",
            Self::Outage => "outage",
            Self::After => "after",
        }
    }
}

struct Run {
    killed: Instant,
    /// When the restart began.
    restarting: Instant,
    /// When the service accepted connections again.
    back: Instant,
    samples: Vec<Sample>,
}

impl Run {
    fn phase(&self, s: &Sample) -> Phase {
        if s.end < self.killed {
            Phase::Before
        } else if s.start >= self.restarting {
            Phase::After
        } else if s.start >= self.killed && s.end <= self.restarting {
            Phase::Outage
        } else {
            Phase::Edge
        }
    }
}

/// GET /auth with Basic credentials; the status, or why there was none.
fn token_status(
    server: &AuthServer,
    user: &str,
    password: &str,
    scope: &str,
) -> Result<u16, String> {
    let url = format!(
        "http://{}/auth?{}",
        server.addr,
        http::query(&[("service", SERVICE), ("scope", scope)])
    );
    http::try_request("GET", &url, &[("Authorization", basic(user, password))])
        .map(|r| r.status)
        .map_err(|e| e.to_string())
}

/// What the test does to the service.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// SIGKILL.
    Kill,
    /// Start again; returns once it accepts connections.
    Restart,
}

/// A probe sending `GET /auth` for `scope` as `user`:`password`.
fn token_probe(
    server: &Arc<AuthServer>,
    scope: &'static str,
    name: &str,
    normal: u16,
    dependent: bool,
    user: &'static str,
    password: String,
) -> Probe {
    let server = Arc::clone(server);
    Probe {
        name: name.to_owned(),
        normal,
        dependent,
        send: Box::new(move || token_status(&server, user, &password, scope)),
    }
}

/// `backends.NAME.status` of `/readyz` (`up`, `down`, `unknown`).
pub(crate) fn readiness(server: &AuthServer, name: &str) -> String {
    let r = http::get(&format!("http://{}/readyz", server.addr), &[]);
    assert_eq!(r.status, 200, "/readyz: {}", r.text());
    r.json()["backends"][name]["status"]
        .as_str()
        .unwrap_or("missing")
        .to_owned()
}

/// Wraps `fault` to read `/readyz` just before the restart (the service has been down for the
/// whole outage): `backends.NAME.status` goes into `seen`.
fn noting_readiness<'a>(
    server: &'a AuthServer,
    name: &'a str,
    seen: &'a mut Option<String>,
    mut fault: impl FnMut(Fault) + 'a,
) -> impl FnMut(Fault) + 'a {
    move |f| {
        if matches!(f, Fault::Restart) {
            *seen = Some(readiness(server, name));
        }
        fault(f);
    }
}

/// Runs the load: [`BEFORE`], `fault(Kill)`, [`OUTAGE`], `fault(Restart)`, [`AFTER`].
/// `background` runs in a loop of its own meanwhile.
fn run_under_load(
    probes: &Arc<Vec<Probe>>,
    mut fault: impl FnMut(Fault),
    background: Option<Box<dyn FnMut() + Send>>,
) -> Run {
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut handles = Vec::new();
    // Each probe has workers of its own, so a probe that waits on the dead service never
    // stops the others from being measured.
    for probe in (0..probes.len()).flat_map(|p| std::iter::repeat_n(p, WORKERS_PER_PROBE)) {
        let (probes, stop, samples) = (Arc::clone(probes), Arc::clone(&stop), Arc::clone(&samples));
        handles.push(thread::spawn(move || {
            let mut mine = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let start = Instant::now();
                let result = (probes[probe].send)();
                mine.push(Sample {
                    probe,
                    start,
                    end: Instant::now(),
                    result,
                });
            }
            samples.lock().unwrap().extend(mine);
        }));
    }
    if let Some(mut step) = background {
        let stop = Arc::clone(&stop);
        handles.push(thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                step();
            }
        }));
    }
    thread::sleep(BEFORE);
    let killed = Instant::now();
    fault(Fault::Kill);
    thread::sleep(OUTAGE.saturating_sub(killed.elapsed()));
    // From here on the service may answer (it is up before `Restart` returns).
    let restarting = Instant::now();
    fault(Fault::Restart);
    let back = Instant::now();
    thread::sleep(AFTER);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("a load thread panicked");
    }
    let samples = std::mem::take(&mut *samples.lock().unwrap());
    Run {
        killed,
        restarting,
        back,
        samples,
    }
}

/// Checks the run against the rules of the module doc; prints the figures; returns the
/// violations (empty when all is well).
fn judge(what: &str, probes: &[Probe], run: &Run) -> Vec<String> {
    let mut failures = Vec::new();
    let mut report = format!(
        "{what}: {WORKERS_PER_PROBE} workers per probe, {} requests; service killed, restarted {:.1} s later, up \
         again {:.2} s after that\n",
        run.samples.len(),
        (run.restarting - run.killed).as_secs_f64(),
        (run.back - run.restarting).as_secs_f64()
    );
    for (p, probe) in probes.iter().enumerate() {
        let mut mine: Vec<&Sample> = run.samples.iter().filter(|s| s.probe == p).collect();
        mine.sort_by_key(|s| s.start);
        let mut counts: BTreeMap<(Phase, String), usize> = BTreeMap::new();
        for s in &mine {
            let key = match &s.result {
                Ok(code) => code.to_string(),
                Err(_) => "socket error".to_owned(),
            };
            *counts.entry((run.phase(s), key)).or_default() += 1;
        }
        let normal = |s: &Sample| s.result.as_ref().is_ok_and(|c| *c == probe.normal);
        // 503 (a backend is unavailable, retry): never a 500.
        let server_error = |s: &Sample| s.result.as_ref().is_ok_and(|c| *c == 503);
        let mut bad = |why: String| failures.push(format!("{}: {why}", probe.name));
        let describe = |s: &Sample| {
            let from_kill = if s.start >= run.killed {
                s.start.duration_since(run.killed).as_secs_f64()
            } else {
                -run.killed.duration_since(s.start).as_secs_f64()
            };
            format!("{:?}, started {from_kill:+.2} s from the kill", s.result)
        };
        let mut recovery = None;
        if probe.dependent {
            if !mine.iter().any(|s| run.phase(s) == Phase::Outage) {
                bad("no request ran entirely inside the outage".to_owned());
            }
            // Recovered when the first normal answer after the restart arrived: requests still
            // in flight then (refused while the breaker's probe was out) may be 503s, every
            // request started after it must be normal.
            let recovered = mine
                .iter()
                .filter(|s| run.phase(s) == Phase::After && normal(s))
                .min_by_key(|s| s.end);
            match recovered {
                None => bad("never answered normally after the restart".to_owned()),
                Some(first) => {
                    // Zero when answered normally before `Restart` returned.
                    let took = first.end.saturating_duration_since(run.back);
                    recovery = Some(took);
                    if took > MAX_RECOVERY {
                        bad(format!(
                            "normal again only {took:?} after the service was up"
                        ));
                    }
                    if let Some(s) = mine.iter().find(|s| s.start >= first.end && !normal(s)) {
                        bad(format!("not normal after recovering: {}", describe(s)));
                    }
                }
            }
            for s in &mine {
                let ok = match run.phase(s) {
                    Phase::Before => normal(s),
                    Phase::Outage => server_error(s),
                    Phase::Edge | Phase::After => normal(s) || server_error(s),
                };
                if !ok {
                    bad(format!("{} answer {}", run.phase(s).name(), describe(s)));
                }
            }
        } else if let Some(s) = mine.iter().find(|s| !normal(s)) {
            bad(format!("does not need the service, yet {}", describe(s)));
        }
        let _ = write!(report, "  {:<44}", probe.name);
        let mut last = None;
        for ((phase, code), n) in &counts {
            if last != Some(*phase) {
                let _ = write!(report, " | {}:", phase.name());
                last = Some(*phase);
            }
            let _ = write!(report, " {n}×{code}");
        }
        if let Some(r) = recovery {
            let _ = write!(
                report,
                " | normal again {:.2} s after the service was up",
                r.as_secs_f64()
            );
        }
        report.push('\n');
    }
    failures.dedup();
    failures.truncate(20);
    print!("{report}");
    failures
}

// ---------------------------------------------------------------------------------------------
// LDAP

#[test]
fn ldap_killed_and_restarted_under_load() {
    let tmp = tempdir("ra-it-fault-ldap");
    let root = tmp.path().to_owned();
    let svc_pw = format!("svc-{}", image::random_hex(12));
    let alice_pw = format!("alice-pw-{}", image::random_hex(6));
    let carol_pw = format!("carol-pw-{}", image::random_hex(6));
    let mut slapd = Slapd::start(
        &root.join("slapd"),
        None,
        &ldap::seed(&svc_pw, &ldap::person("alice", "staff", &alice_pw)),
        "",
    );
    let svc_file = root.join("svc.pw");
    fs::write(&svc_file, format!("{svc_pw}\n")).unwrap();
    let keys = KeyFiles::write(KeySetup::EcKid, &root.join("keys"));
    // Local users first (docker_auth's order): carol never needs the directory.
    let rest = format!(
        "{}authn_order: [users, ldap_auth]\n",
        ldap::ldap_yaml(&slapd.addr(), "", &svc_file)
    );
    let cfg = root.join("registry-auth.yml");
    fs::write(&cfg, ldap::config(&keys, &root, &carol_pw, &rest)).unwrap();
    let server = Arc::new(AuthServer::start(&cfg, &root.join("registry-auth.log")));

    let probe = |name, normal, dependent, user, pw| {
        token_probe(
            &server,
            "repository:alice/app:pull",
            name,
            normal,
            dependent,
            user,
            pw,
        )
    };
    let probes = Arc::new(vec![
        probe(
            "LDAP user, right password",
            200,
            true,
            "alice",
            alice_pw.clone(),
        ),
        probe(
            "LDAP user, wrong password",
            401,
            true,
            "alice",
            "wrong".to_owned(),
        ),
        probe(
            "local user (never asks LDAP)",
            200,
            false,
            "carol",
            carol_pw,
        ),
    ]);
    let mut during = None;
    let run = run_under_load(
        &probes,
        noting_readiness(&server, "ldap_auth", &mut during, |f| match f {
            Fault::Kill => slapd.kill(),
            Fault::Restart => slapd.launch(),
        }),
        None,
    );
    let mut failures = judge("LDAP (slapd) SIGKILLed under load", &probes, &run);
    let after = readiness(&server, "ldap_auth");
    println!("  /readyz backends.ldap_auth: {during:?} during the outage, {after:?} after");
    if (during.as_deref(), after.as_str()) != (Some("down"), "up") {
        failures.push(format!(
            "/readyz ldap_auth: {during:?} during the outage, {after:?} after"
        ));
    }
    assert!(
        failures.is_empty(),
        "{}\n--- registry-auth log ---\n{}",
        failures.join("\n"),
        server.log_tail(30)
    );
    crate::common::server::assert_log_has_no_secrets(
        &server.log,
        &[("alice".to_owned(), alice_pw)],
        &[],
    );
}

// ---------------------------------------------------------------------------------------------
// Minted-password stores

const STORE_ACL: &str = r#"  - match: {labels: {teams: platform}, name: "platform/**"}
    actions: [pull, push]
  - match: {account: carol}
    actions: [pull]
"#;

/// What the writer thread did, in order.
#[derive(Debug, Clone, Default)]
struct Writes {
    /// Passwords whose mint was acknowledged (shown on the result page), with the time.
    minted: Vec<(String, Instant)>,
    /// Passwords whose revocation was acknowledged ("has been revoked").
    revoked: Vec<(String, Instant)>,
    /// Sign-outs that failed (a 503: whether the record is gone is unknown).
    revoke_failed: Vec<String>,
    /// Mints that failed (a 503 page; no password was shown).
    mint_failed: usize,
    /// Anything else (a sign-out that found no record: a lost mint).
    anomalies: Vec<String>,
}

/// One whole web login at the fake GitHub; the minted password, or the status of the page.
fn try_mint(base: &str) -> Result<String, String> {
    let page = login_page(base, "github_auth", "alice");
    match page.status {
        200 => {}
        503 => return Err("result page 503".to_owned()),
        s => panic!(
            "the login's result page is {s}, not 200 or 503: {}",
            page.body
        ),
    }
    element_text(&page.body, "password").ok_or_else(|| format!("no password on: {}", page.body))
}

/// Signs out `password`: Ok(true) revoked, Ok(false) nothing to revoke, Err on a 503.
fn try_revoke(base: &str, password: &str) -> Result<bool, String> {
    let page = sign_out(base, password);
    match page.status {
        200 if page.body.contains("has been revoked") => Ok(true),
        200 => Ok(false),
        503 => Err("sign-out page 503".to_owned()),
        s => panic!("sign-out answered {s}, not 200 or 503: {}", page.body),
    }
}

fn store_fault_run(what: &str, store_yaml: &str, fault: impl FnMut(Fault)) {
    let gh = FakeGithub::start(CLIENT_ID, CLIENT_SECRET, "unset");
    gh.set_user(GhUser::member("alice", "acme", "platform"));
    let carol_pw = format!("carol-pw-{}", image::random_hex(6));
    let sections = {
        let (web, api, store) = (gh.web(), gh.api(), store_yaml.to_owned());
        let carol = bcrypt_hash(&carol_pw);
        move |_: &std::path::Path, _: &str| {
            format!(
                "{store}github_auth:\n  organization: acme\n  client_id: {CLIENT_ID}\n  \
                 client_secret: {CLIENT_SECRET}\n  github_web_uri: {web}\n  github_api_uri: {api}\n  \
                 revalidate_after: 1h\nusers:\n  carol:\n    password: {}\n\
                 credential_cache:\n  ttl: 0s\nlockout:\n  enabled: false\n",
                yaml_str(&carol)
            )
        }
    };
    let stack = WebStack::start_full(
        crate::common::proc::free_port(),
        "",
        sections,
        STORE_ACL,
        false,
    );
    let base = stack.base();
    gh.set_redirect_uri(&format!("{base}/github_auth"));

    // Before the load: two passwords, one of them revoked.
    let kept = try_mint(&base).expect("mint before the run");
    let revoked = try_mint(&base).expect("mint before the run");
    assert_eq!(try_revoke(&base, &revoked), Ok(true));

    let server = Arc::new(stack.server);
    let scope = "repository:platform/app:pull";
    let probe = |name, normal, dependent, user, pw| {
        token_probe(&server, scope, name, normal, dependent, user, pw)
    };
    let probes = Arc::new(vec![
        probe("minted password", 200, true, "alice", kept.clone()),
        probe(
            "revoked minted password",
            401,
            true,
            "alice",
            revoked.clone(),
        ),
        probe(
            "local user (never asks the store)",
            200,
            false,
            "carol",
            carol_pw,
        ),
    ]);

    let writes = Arc::new(Mutex::new(Writes::default()));
    let writer: Box<dyn FnMut() + Send> = {
        let writes = Arc::clone(&writes);
        let mut n = 0_u32;
        Box::new(move || {
            n += 1;
            match try_mint(&base) {
                Ok(pw) => writes.lock().unwrap().minted.push((pw, Instant::now())),
                Err(_) => writes.lock().unwrap().mint_failed += 1,
            }
            // Every second round, revoke the oldest password of the run not revoked yet.
            if n.is_multiple_of(2) {
                let next = {
                    let w = writes.lock().unwrap();
                    w.minted
                        .iter()
                        .map(|(p, _)| p)
                        .find(|p| {
                            !w.revoked.iter().any(|(r, _)| r == *p) && !w.revoke_failed.contains(p)
                        })
                        .cloned()
                };
                if let Some(pw) = next {
                    let result = try_revoke(&base, &pw);
                    let mut w = writes.lock().unwrap();
                    match result {
                        Ok(true) => w.revoked.push((pw, Instant::now())),
                        Ok(false) => w
                            .anomalies
                            .push("a sign-out found no record for an acknowledged mint".into()),
                        Err(_) => w.revoke_failed.push(pw),
                    }
                }
            }
            thread::sleep(Duration::from_millis(50));
        })
    };
    let mut during = None;
    let run = run_under_load(
        &probes,
        noting_readiness(&server, "store", &mut during, fault),
        Some(writer),
    );
    let mut failures = judge(what, &probes, &run);
    let after = readiness(&server, "store");
    println!("  /readyz backends.store: {during:?} during the outage, {after:?} after");
    if (during.as_deref(), after.as_str()) != (Some("down"), "up") {
        failures.push(format!(
            "/readyz store: {during:?} during the outage, {after:?} after"
        ));
    }

    // Nothing acknowledged is lost: every acknowledged mint works (unless revoked since), every
    // acknowledged revocation holds.
    let w = writes.lock().unwrap().clone();
    failures.extend(w.anomalies.iter().cloned());
    let revoked_set: Vec<&String> = w.revoked.iter().map(|(p, _)| p).collect();
    let (mut live_ok, mut revoked_ok) = (0, 0);
    for (pw, _) in &w.minted {
        if w.revoke_failed.contains(pw) {
            continue;
        }
        let want = if revoked_set.contains(&pw) { 401 } else { 200 };
        match token_status(&server, "alice", pw, scope) {
            Ok(s) if s == want => {
                if want == 200 {
                    live_ok += 1;
                } else {
                    revoked_ok += 1;
                }
            }
            other => failures.push(format!(
                "an acknowledged {} was lost: now {other:?}",
                if want == 200 { "mint" } else { "revocation" }
            )),
        }
    }
    for (pw, want) in [(&kept, 200), (&revoked, 401)] {
        let got = token_status(&server, "alice", pw, scope);
        if got != Ok(want) {
            failures.push(format!(
                "a password from before the run: {got:?}, want {want}"
            ));
        }
    }
    let before_kill = |v: &[(String, Instant)]| v.iter().filter(|(_, t)| *t < run.killed).count();
    println!(
        "  writes: {} mints acknowledged ({} before the kill), {} failed with a 503; {} \
         revocations acknowledged ({} before the kill), {} failed; after the restart {} \
         minted passwords still work and {} revoked ones are still refused",
        w.minted.len(),
        before_kill(&w.minted),
        w.mint_failed,
        w.revoked.len(),
        before_kill(&w.revoked),
        w.revoke_failed.len(),
        live_ok,
        revoked_ok,
    );
    // Store errors are logged in detail: never with a password.
    let mut secrets: Vec<(String, String)> = w
        .minted
        .iter()
        .map(|(pw, _)| ("alice".to_owned(), pw.clone()))
        .collect();
    secrets.extend([("alice".to_owned(), kept), ("alice".to_owned(), revoked)]);
    crate::common::server::assert_log_has_no_secrets(&server.log, &secrets, &[]);
    if before_kill(&w.minted) == 0 || before_kill(&w.revoked) == 0 || w.mint_failed == 0 {
        failures.push(format!(
            "the writer did not mint and revoke before the kill and fail during the outage: {w:?}"
        ));
    }
    assert!(
        failures.is_empty(),
        "{}\n--- registry-auth log ---\n{}",
        failures.join("\n"),
        server.log_tail(30)
    );
}

#[test]
fn redis_store_killed_and_restarted_under_load() {
    let mut redis = Redis::start(Persistence::AofAlways);
    let url = redis.url();
    store_fault_run(
        "Redis store (appendonly yes, appendfsync always) SIGKILLed under load",
        &format!("store:\n  type: redis\n  url: {}\n", yaml_str(&url)),
        |f| match f {
            Fault::Kill => redis.kill(),
            Fault::Restart => redis.launch(),
        },
    );
}

#[test]
fn postgres_store_killed_and_restarted_under_load() {
    let mut pg = Postgres::init();
    let url = pg.url();
    store_fault_run(
        "PostgreSQL store SIGKILLed (postmaster and backends) under load",
        &format!("store:\n  type: postgres\n  url: {}\n", yaml_str(&url)),
        |f| match f {
            Fault::Kill => pg.kill_all(),
            Fault::Restart => pg.restart(),
        },
    );
}
