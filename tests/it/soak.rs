//! Bounded load and soak on loopback: `wrk` saturates `registry-auth serve` with anonymous token
//! requests (ACL evaluation and an ES256 signature each) for a warm-up, then for the measured
//! run. Both must end with zero errors (no non-2xx answer, no socket error of any kind), and the
//! server's RSS after the run must stay within 16 MiB of its RSS after the warm-up (sampled every
//! 5 s and printed).
//!
//! About 55 s in all: 10 s warm-up, 45 s measured (`REGISTRY_AUTH_IT_SOAK_SECS` changes the
//! measured part). Runs the binary cargo built for the tests (a debug build unless
//! `REGISTRY_AUTH_IT_BIN` points at a release one). `wrk` comes from Debian
//! (`scripts/install-test-deps.sh`); a missing `wrk` fails the test.

use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::bad_input::{LIMITS_YAML, TestServer};
use crate::common::proc::{require_tool, tail};

const CONNECTIONS: u32 = 32;
const THREADS: u32 = 2;
const WARMUP_SECS: u64 = 10;
const DEFAULT_SECS: u64 = 45;
/// Largest RSS growth accepted between the end of the warm-up and the end of the run.
const MAX_GROWTH_KIB: u64 = 16 * 1024;

#[derive(Debug, Default)]
struct WrkReport {
    requests: u64,
    rps: f64,
    non_2xx: u64,
    socket_errors: u64,
    latency: String,
    text: String,
}

fn parse_wrk(text: &str) -> WrkReport {
    let mut r = WrkReport {
        text: text.to_owned(),
        ..WrkReport::default()
    };
    for line in text.lines() {
        let l = line.trim();
        // "1234 requests in 10.00s, 1.23MB read"
        if l.contains(" requests in ") {
            r.requests = l
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
        } else if let Some(v) = l.strip_prefix("Requests/sec:") {
            r.rps = v.trim().parse().unwrap_or(0.0);
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            r.non_2xx = v.trim().parse().unwrap_or(u64::MAX);
        } else if let Some(v) = l.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            r.socket_errors = v
                .split(',')
                .filter_map(|p| p.split_whitespace().nth(1))
                .map(|n| n.parse::<u64>().unwrap_or(u64::MAX))
                .sum();
        } else if l.starts_with("50%") || l.starts_with("99%") {
            if !r.latency.is_empty() {
                r.latency.push_str(", ");
            }
            r.latency
                .push_str(&l.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    r
}

/// Runs wrk for `secs`, sampling the server's RSS every 5 s.
fn run_wrk(wrk: &std::path::Path, server: &TestServer, secs: u64) -> (WrkReport, Vec<u64>) {
    let url = format!("http://{}{}", server.addr, TestServer::good_path());
    let child = Command::new(wrk)
        .args([
            "-t",
            &THREADS.to_string(),
            "-c",
            &CONNECTIONS.to_string(),
            "-d",
            &format!("{secs}s"),
            "--timeout",
            "10s",
            "--latency",
            &url,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start wrk");
    let start = Instant::now();
    let mut samples = Vec::new();
    let sampler_deadline = start + Duration::from_secs(secs);
    while Instant::now() + Duration::from_secs(5) <= sampler_deadline {
        thread::sleep(Duration::from_secs(5));
        samples.push(server.rss_kib());
    }
    let out = child.wait_with_output().expect("wrk output");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "wrk failed ({}):\n{text}", out.status);
    (parse_wrk(&text), samples)
}

#[test]
fn load_with_wrk_has_no_errors_and_flat_memory() {
    let wrk = require_tool("wrk");
    let secs = std::env::var("REGISTRY_AUTH_IT_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(DEFAULT_SECS);
    // Log level warn: the per-request audit line (info) would measure the log file.
    let mut server = TestServer::start(LIMITS_YAML, "warn");
    server.good_request().expect("server answers");
    let rss_start = server.rss_kib();

    let (warm, _) = run_wrk(&wrk, &server, WARMUP_SECS);
    server.assert_alive();
    let rss_warm = server.rss_kib();
    let (run, samples) = run_wrk(&wrk, &server, secs);
    server.assert_alive();
    let rss_end = server.rss_kib();
    server.good_request().expect("server still answers");

    println!(
        "wrk {THREADS} threads, {CONNECTIONS} connections, anonymous GET {}",
        TestServer::good_path()
    );
    for (name, r, d) in [("warm-up", &warm, WARMUP_SECS), ("run", &run, secs)] {
        println!(
            "  {name:<8} {d:>3} s: {} requests, {:.0} req/s, non-2xx {}, socket errors {}, latency {}",
            r.requests, r.rps, r.non_2xx, r.socket_errors, r.latency
        );
    }
    println!(
        "  server RSS: {rss_start} KiB at start, {rss_warm} KiB after the warm-up, {rss_end} KiB \
         after the run ({:+} KiB); every 5 s during the run: {samples:?}",
        rss_end as i64 - rss_warm as i64
    );

    for (name, r) in [("warm-up", &warm), ("run", &run)] {
        assert!(r.requests > 0, "{name}: wrk made no request:\n{}", r.text);
        assert_eq!(
            (r.non_2xx, r.socket_errors),
            (0, 0),
            "{name}: errors under load:\n{}\nserver log:\n{}",
            r.text,
            tail(&server.log, 20)
        );
    }
    assert!(
        rss_end <= rss_warm + MAX_GROWTH_KIB,
        "RSS grew from {rss_warm} KiB after the warm-up to {rss_end} KiB after the run \
         (samples {samples:?})"
    );
}
