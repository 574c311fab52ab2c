//! The Redis store over TLS, against real `redis-server` processes (Debian's 7.0) that listen
//! for TLS only (`--port 0 --tls-port …`; certificates made here with rcgen: one CA for the
//! servers, another for clients):
//!
//! * `rediss://`: two `serve` replicas share a refresh-token revocation (written with the real
//!   `registry-auth tokens revoke`, itself over TLS) and lockout counters; the records are in
//!   Redis, which has no plaintext port.
//! * Mutual TLS (`--tls-auth-clients yes`): with `client_certificate`/`client_key` the store
//!   works; without, or trusting a CA that did not sign the server's certificate, the store is
//!   down: the refresh grant fails closed with 503 (never 401, never 200), `/readyz` shows the
//!   store down, the log says the TLS connection failed (and names the certificate problem),
//!   `tokens revoke` fails naming TLS; no password in any log.
//! * `rediss+sentinel://`: a primary, a replica and three sentinels, all TLS only (replication
//!   and monitoring over TLS too): the store finds the master through the sentinels over TLS,
//!   and after the primary is killed, the promoted replica (reached over TLS, verified alike)
//!   still refuses the revoked token and serves the rest.
//! * `rediss+cluster://`: three TLS-only masters (the cluster bus over TLS too) named by one
//!   seed: revocations and lockout counters written by one replica are read by the other,
//!   whichever master holds each key.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::http;
use crate::common::keys::{Pki, yaml_str};
use crate::common::proc::tail;
use crate::common::redis::{
    Cluster, Persistence, REDIS_PASSWORD, Redis, SENTINEL_PASSWORD, SentinelSet, ServerTls,
    cli_tls, wait_until,
};
use crate::common::server::{log_when, run_cli, synced_log};
use crate::common::stack::tempdir;
use crate::replicas::{
    ALICE_PASSWORD, BOB_PASSWORD, Replicas, password_grant, refresh_grant, refresh_token,
    revocation_by_id_is_shared, revoke,
};

/// The servers' PKI, the clients' PKI and the bundle of both CAs the servers trust.
struct Certs {
    server: Pki,
    client: Pki,
    bundle: PathBuf,
    _dir: tempfile::TempDir,
}

fn certs() -> Certs {
    let dir = tempdir("ra-it-redis-tls");
    let server = Pki::write(dir.path(), "server");
    let client = Pki::write(dir.path(), "client");
    let bundle = dir.path().join("bundle.pem");
    fs::write(
        &bundle,
        fs::read_to_string(&server.ca).unwrap() + fs::read_to_string(&client.ca).unwrap().as_str(),
    )
    .unwrap();
    Certs {
        server,
        client,
        bundle,
        _dir: dir,
    }
}

fn server_tls(c: &Certs, auth_clients: &'static str) -> ServerTls {
    ServerTls {
        cert: c.server.cert.clone(),
        key: c.server.key.clone(),
        ca_bundle: c.bundle.clone(),
        auth_clients,
    }
}

/// `store:` of type redis at `url`, with the given file keys.
fn store_yaml(url: &str, files: &[(&str, &Path)]) -> String {
    let mut yaml = format!("store:\n  type: redis\n  url: {}\n", yaml_str(url));
    for (key, path) in files {
        yaml.push_str(&format!(
            "  {key}: {}\n",
            yaml_str(&path.display().to_string())
        ));
    }
    yaml
}

fn assert_no_password(replicas: &Replicas) {
    for s in &replicas.servers {
        let log = synced_log(&s.log);
        assert!(
            !log.contains(REDIS_PASSWORD) && !log.contains(SENTINEL_PASSWORD),
            "a Redis password is in {}",
            s.log.display()
        );
    }
}

#[test]
fn replicas_share_revocations_and_lockout_over_rediss() {
    let c = certs();
    let redis = Redis::start_tls(Persistence::None, &[], Some(&server_tls(&c, "optional")));
    // TLS only: a plaintext client gets no answer.
    let plain = cli_tls(redis.port, REDIS_PASSWORD, None, &["PING"]);
    assert!(!plain.contains("PONG"), "{plain}");
    assert!(redis.cli(&["PING"]).contains("PONG"));
    let url = format!("rediss://:{REDIS_PASSWORD}@127.0.0.1:{}/3", redis.port);
    let replicas = Replicas::start_n(
        2,
        &store_yaml(&url, &[("ca_certificate", &c.server.ca)]),
        None,
    );
    let bases = replicas.bases();
    let diag = || {
        format!(
            "{}\n--- redis ---\n{}",
            replicas.diagnostics(),
            tail(&redis.log, 20)
        )
    };

    // A revocation written through replica 1's config is refused by both.
    revocation_by_id_is_shared(&replicas, &diag);
    // Three wrong passwords for bob over the two replicas lock him out on both.
    for base in [&bases[0], &bases[1], &bases[0]] {
        let r = password_grant(base, "bob", "wrong", false);
        assert_eq!(r.status, 401, "{}", diag());
    }
    for base in &bases {
        let r = password_grant(base, "bob", BOB_PASSWORD, false);
        assert_eq!(r.status, 429, "{}\n{}", r.text(), diag());
    }
    for base in &bases {
        let r = http::get(&format!("{base}/readyz"), &[]);
        assert_eq!(
            r.json()["backends"]["store"]["status"],
            "up",
            "{}",
            r.text()
        );
    }
    // The shared state is in the TLS-only Redis.
    let keys = redis.cli(&["--scan", "--pattern", "registry-auth:shared:*"]);
    assert!(
        keys.contains("registry-auth:shared:revoked-token:"),
        "{keys}"
    );
    assert!(keys.contains("registry-auth:shared:lockout:"), "{keys}");
    assert_no_password(&replicas);
}

#[test]
fn mutual_tls_works_and_a_missing_client_certificate_or_a_wrong_ca_fails_closed() {
    let c = certs();
    let redis = Redis::start_tls(Persistence::None, &[], Some(&server_tls(&c, "yes")));
    let url = format!("rediss://:{REDIS_PASSWORD}@127.0.0.1:{}/3", redis.port);
    let identity = [
        ("client_certificate", c.client.cert.as_path()),
        ("client_key", c.client.key.as_path()),
    ];
    let with = |ca: &Path, client: bool| {
        let mut files = vec![("ca_certificate", ca)];
        if client {
            files.extend_from_slice(&identity);
        }
        Replicas::start_n(1, &store_yaml(&url, &files), None)
    };
    let good = with(&c.server.ca, true);
    let no_cert = with(&c.server.ca, false);
    // The clients' CA did not sign the server's certificate.
    let wrong_ca = with(&c.client.ca, true);

    // Mutual TLS: the store works (a revocation through the CLI, itself over mutual TLS).
    let base = &good.bases()[0];
    let token = refresh_token(base, "alice", ALICE_PASSWORD);
    assert_eq!(
        refresh_grant(base, &token).status,
        200,
        "{}",
        good.diagnostics()
    );
    revoke(&good.configs[0], &[&token]);
    assert_eq!(
        refresh_grant(base, &token).status,
        401,
        "{}",
        good.diagnostics()
    );

    for (replicas, problem) in [
        (
            &no_cert,
            ["CertificateRequired", "`store.client_certificate`"],
        ),
        (&wrong_ca, ["UnknownIssuer", "`store.ca_certificate`"]),
    ] {
        let base = &replicas.bases()[0];
        let diag = || {
            format!(
                "{}\n--- redis ---\n{}",
                replicas.diagnostics(),
                tail(&redis.log, 20)
            )
        };
        // Issuing works without the store (lockout falls back to this replica), but a refresh
        // needs the revocation list: it fails closed, never a 401 and never a 200.
        let token = refresh_token(base, "alice", ALICE_PASSWORD);
        let r = refresh_grant(base, &token);
        assert_eq!(r.status, 503, "{}\n{}", r.text(), diag());
        assert!(r.header("retry-after").is_some(), "{}", diag());
        let ready = http::get(&format!("{base}/readyz"), &[]).json();
        assert_eq!(ready["backends"]["store"]["status"], "down", "{ready}");
        // The log is written by a writer thread, just after the answer: wait for the lines.
        let log = log_when(&replicas.servers[0].log, 0, |t| {
            t.lines()
                .any(|l| l.contains("over TLS") && problem.iter().all(|p| l.contains(p)))
        });
        let line = log
            .lines()
            .find(|l| l.contains("over TLS"))
            .unwrap_or_else(|| panic!("no log line names TLS:\n{}", diag()));
        assert!(
            line.contains(&format!("127.0.0.1:{}", redis.port)),
            "{line}"
        );
        assert!(
            log.lines()
                .any(|l| l.contains("over TLS") && problem.iter().all(|p| l.contains(p))),
            "no TLS line names {problem:?}:\n{}",
            diag()
        );
        // The CLI says so too, and fails.
        let config = replicas.configs[0].display().to_string();
        let out = run_cli(&["tokens", "revoke", "--config", &config, "--user", "alice"]);
        assert!(!out.success(), "{}", out.describe());
        assert!(out.stderr.contains("over TLS"), "{}", out.describe());
        assert_no_password(replicas);
    }
    assert_no_password(&good);
}

#[test]
fn rediss_sentinel_finds_the_tls_master_and_follows_a_failover() {
    let c = certs();
    let tls = server_tls(&c, "optional");
    let mut set = SentinelSet::start_tls(1, Some(&tls));
    let url = set
        .url()
        .replacen("redis+sentinel://", "rediss+sentinel://", 1);
    let replicas = Replicas::start_n(
        2,
        &store_yaml(&url, &[("ca_certificate", &c.server.ca)]),
        None,
    );
    let bases = replicas.bases();
    let diag = |set: &SentinelSet| format!("{}\n{}", replicas.diagnostics(), set.diagnostics());
    let token = refresh_token(&bases[0], "alice", ALICE_PASSWORD);
    let kept = refresh_token(&bases[1], "alice", ALICE_PASSWORD);
    for base in &bases {
        assert_eq!(refresh_grant(base, &token).status, 200, "{}", diag(&set));
    }
    revoke(&replicas.configs[0], &[&token]);
    for base in &bases {
        assert_eq!(refresh_grant(base, &token).status, 401, "{}", diag(&set));
    }
    // The revocation reached the replica (each write waits for one: `WAIT`).
    let on_replica = set.replicas[0].cli(&["--scan", "--pattern", "registry-auth:shared:*"]);
    assert!(
        on_replica.contains("registry-auth:shared:revoked-token:"),
        "{on_replica}\n{}",
        diag(&set)
    );

    // Failover: the primary dies, the sentinels promote the replica.
    let promoted = set.replicas[0].port;
    set.primary.kill();
    wait_until(
        "the sentinels did not promote the replica",
        Duration::from_secs(40),
        || {
            set.sentinels
                .iter()
                .all(|s| s.master_port() == Some(promoted))
        },
        || diag(&set),
    );
    // Each replica of registry-auth reaches the new master: the revoked token stays refused
    // (503 at most while it reconnects), the kept one works again.
    for base in &bases {
        wait_until(
            "the store did not recover after the failover",
            Duration::from_secs(20),
            || refresh_grant(base, &kept).status == 200,
            || diag(&set),
        );
        assert_eq!(refresh_grant(base, &token).status, 401, "{}", diag(&set));
    }
    assert_no_password(&replicas);
}

#[test]
fn rediss_cluster_routes_over_tls_to_every_master() {
    let c = certs();
    let cluster = Cluster::start_tls(3, Some(&server_tls(&c, "optional")));
    let url = cluster
        .url()
        .replacen("redis+cluster://", "rediss+cluster://", 1);
    let replicas = Replicas::start_n(
        2,
        &store_yaml(&url, &[("ca_certificate", &c.server.ca)]),
        None,
    );
    let bases = replicas.bases();
    let diag = || replicas.diagnostics();
    // Twelve revocations: their keys hash to slots all over the masters (all on one master
    // has odds of 3^-11).
    let tokens: Vec<String> = (0..12)
        .map(|i| refresh_token(&bases[i % 2], "alice", ALICE_PASSWORD))
        .collect();
    for t in &tokens {
        revoke(&replicas.configs[0], &[t]);
    }
    for base in &bases {
        for t in &tokens {
            assert_eq!(refresh_grant(base, t).status, 401, "{}", diag());
        }
    }
    let kept = refresh_token(&bases[0], "alice", ALICE_PASSWORD);
    assert_eq!(refresh_grant(&bases[1], &kept).status, 200, "{}", diag());
    let per_node: Vec<usize> = cluster
        .nodes
        .iter()
        .map(|n| {
            n.cli0(&[
                "--scan",
                "--pattern",
                "registry-auth:shared:revoked-token:*",
            ])
            .lines()
            .count()
        })
        .collect();
    assert_eq!(per_node.iter().sum::<usize>(), 12, "{per_node:?}");
    assert!(
        per_node.iter().filter(|n| **n > 0).count() >= 2,
        "every revocation is on one master: {per_node:?}"
    );
    assert_no_password(&replicas);
}
