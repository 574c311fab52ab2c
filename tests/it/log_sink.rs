//! The log sink through the real binary (src/telemetry/sink.rs): a clean stop (SIGTERM) writes
//! every audit line logged before it, and a stderr that nobody reads (a full pipe) never holds
//! up a request: the lines that do not fit are dropped and counted in
//! `registry_auth_log_lines_dropped_total`.

use std::fs;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::keys::{KeyFiles, KeySetup};
use crate::common::proc::{ChildGuard, StopMode, require_tool, strip_ansi};
use crate::common::server;
use crate::common::stack::{SERVICE, config_yaml, tempdir};
use crate::ops::{Proc, logged_field};

const ACL: &str = "  - match: {}\n    actions: [pull]\n";

/// `n` anonymous token requests from one curl process (one keep-alive connection, one after
/// the other), at most `max_time` for all of them; the status of each (0: no answer).
fn anonymous_requests(base: &str, n: usize, max_time: Duration) -> Vec<u16> {
    let url = format!(
        "{base}/auth?service={}&scope=repository:x/y:pull",
        SERVICE.replace(' ', "%20")
    );
    let mut config = String::new();
    for _ in 0..n {
        config.push_str(&format!("url = \"{url}\"\noutput = \"/dev/null\"\n"));
    }
    let mut cmd = Command::new(require_tool("curl"));
    cmd.args(["-s", "--noproxy", "*", "-w", "%{http_code}\\n", "-K", "-"])
        .args(["--max-time", &max_time.as_secs().to_string()])
        .env_remove("http_proxy");
    let out = crate::common::proc::run(&mut cmd, Some(&config), max_time + Duration::from_secs(10));
    out.stdout
        .lines()
        .map(|l| l.trim().parse().unwrap_or(0))
        .collect()
}

fn setup(prefix: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let tmp = tempdir(prefix);
    let keys = KeyFiles::write(KeySetup::EcKid, &tmp.path().join("keys"));
    let config = tmp.path().join("registry-auth.yml");
    fs::write(&config, config_yaml(&keys, &[], true, ACL)).expect("write config");
    (tmp, config)
}

#[test]
fn sigterm_writes_every_audit_line_before_the_process_exits() {
    let (tmp, config) = setup("ra-it-logsink-term");
    let log = tmp.path().join("registry-auth.log");
    let config = config.to_string_lossy().into_owned();
    let mut srv = Proc::start(
        &[
            "serve",
            "--config",
            &config,
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "info",
        ],
        &[],
        &log,
    );
    const N: usize = 500;
    let codes = anonymous_requests(&srv.base(), N, Duration::from_secs(120));
    assert_eq!(codes.len(), N, "curl answered {} of {N}", codes.len());
    assert!(codes.iter().all(|&c| c == 200), "not all 200: {codes:?}");
    // At once: no waiting for the writer thread before the signal.
    srv.signal("TERM");
    let status = srv
        .wait_exit(Duration::from_secs(60))
        .expect("the server did not exit within 60 s of SIGTERM");
    assert!(status.success(), "exit status {status} after SIGTERM");
    let text = strip_ansi(&String::from_utf8_lossy(&fs::read(&log).expect("log")));
    let audit = text.lines().filter(|l| l.contains("token issued")).count();
    assert_eq!(
        audit, N,
        "{N} tokens issued, {audit} audit lines in the log after SIGTERM"
    );
    let stopped = text.lines().last().unwrap_or_default();
    assert!(
        stopped.contains("stopped"),
        "the last line is the `stopped` line, written after every audit line: {stopped}"
    );
}

#[test]
fn a_stderr_nobody_reads_drops_counted_lines_and_requests_keep_being_answered() {
    let (_tmp, config) = setup("ra-it-logsink-pipe");
    // stdout and stderr are one pipe; the test reads it only until the address is logged, then
    // never again (the pipe holds 64 KiB, the server's queue 1 MiB).
    let mut cmd = server::command();
    cmd.arg("serve")
        .arg("--config")
        .arg(&config)
        .args(["--listen", "127.0.0.1:0", "--log-level", "trace"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start registry-auth");
    let stderr = child.stderr.take().expect("piped stderr");
    let pid = child.id();
    let mut guard = ChildGuard::new("registry-auth", child, StopMode::Kill);
    let mut reader = BufReader::new(stderr);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut addr = None;
    let mut line = String::new();
    while addr.is_none() {
        assert!(Instant::now() < deadline, "no `listening` line within 20 s");
        line.clear();
        let n = reader
            .read_line(&mut line)
            .expect("read the server's stderr");
        assert!(n > 0, "the server closed stderr before logging its address");
        let plain = strip_ansi(&line);
        if plain.contains("registry-auth listening") {
            addr = logged_field(&plain, "addr");
        }
    }
    let base = format!("http://{}", addr.expect("addr"));

    // Each request logs a few KB at trace level: a few hundred fill the pipe and the queue.
    let mut answered = 0;
    let mut dropped = 0.0;
    for round in 1..=20 {
        let codes = anonymous_requests(&base, 500, Duration::from_secs(120));
        assert_eq!(
            codes.iter().filter(|&&c| c == 200).count(),
            500,
            "round {round}: requests must keep being answered while stderr is not read \
             (answered so far: {answered}); statuses: {codes:?}"
        );
        answered += 500;
        let metrics = crate::common::http::get(&format!("{base}/metrics"), &[]);
        assert_eq!(metrics.status, 200);
        dropped = metrics
            .text()
            .lines()
            .find_map(|l| l.strip_prefix("registry_auth_log_lines_dropped_total "))
            .and_then(|v| v.trim().parse::<f64>().ok())
            .unwrap_or_else(|| {
                panic!(
                    "no registry_auth_log_lines_dropped_total:\n{}",
                    metrics.text()
                )
            });
        if dropped > 0.0 {
            break;
        }
    }
    assert!(
        dropped > 0.0,
        "{answered} requests at trace level with an unread stderr dropped no line: is the \
         queue unbounded?"
    );
    assert!(guard.try_wait().is_none(), "the server exited");
    // Stopping does not hang on the stuck pipe either (the flush before exit is bounded).
    let _ = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status();
    let status = guard.wait_timeout(Duration::from_secs(60));
    assert!(
        status.is_some(),
        "SIGTERM with a stuck stderr: the server did not exit within 60 s"
    );
    drop(reader);
}
