//! `registry-auth serve` as a child process on an ephemeral loopback port.

use std::fs::{self, OpenOptions};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::proc::{self, ChildGuard, StopMode, strip_ansi, tail};

/// How tests stop registry-auth: SIGTERM (the server flushes its log queue, then exits), and
/// SIGKILL if it has not exited within 10 s.
pub const STOP: StopMode = StopMode::TermThenKill(Duration::from_secs(10));

/// The server binary under test.
pub fn binary() -> PathBuf {
    match std::env::var_os("REGISTRY_AUTH_IT_BIN") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => PathBuf::from(env!("CARGO_BIN_EXE_registry-auth")),
    }
}

/// A command for the server binary with a clean environment: no `RUST_LOG`, and none of the
/// `REGISTRY_AUTH_*` variables (the server refuses unknown ones, and this suite's own
/// `REGISTRY_AUTH_IT_*` switches are not for it).
pub fn command() -> Command {
    let mut cmd = Command::new(binary());
    cmd.env_remove("RUST_LOG");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("REGISTRY_AUTH_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs a non-serving subcommand (`check-config …`) to completion.
pub fn run_cli(args: &[&str]) -> proc::CmdOutput {
    let mut cmd = command();
    cmd.args(args);
    proc::run(&mut cmd, None, Duration::from_secs(30))
}

#[derive(Debug)]
pub struct AuthServer {
    /// `127.0.0.1:PORT` as logged by the server.
    pub addr: String,
    pub config: PathBuf,
    /// stderr of every run of this server (appended across restarts).
    pub log: PathBuf,
    guard: ChildGuard,
}

impl AuthServer {
    /// Starts `serve --config CONFIG --listen 127.0.0.1:0 --log-level trace`, stderr (and
    /// stdout) appended to `log`, and waits for the `listening … addr=127.0.0.1:PORT` line.
    pub fn start(config: &Path, log: &Path) -> Self {
        Self::start_on(config, log, "127.0.0.1:0")
    }

    pub fn start_on(config: &Path, log: &Path, listen: &str) -> Self {
        let start_offset = fs::metadata(log).map(|m| m.len()).unwrap_or(0) as usize;
        let logf = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open server log");
        let mut cmd = command();
        cmd.arg("serve")
            .arg("--config")
            .arg(config)
            .args(["--listen", listen, "--log-level", "trace"])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup log fd"))
            .stderr(logf);
        let line = proc::cmdline(&cmd);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
        // SIGTERM first: a clean stop writes every queued log line (a SIGKILL would lose the
        // last few), so a stopped server's log is complete.
        let mut guard = ChildGuard::new("registry-auth", child, STOP);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = fs::read(log).unwrap_or_default();
            let text = strip_ansi(&String::from_utf8_lossy(
                text.get(start_offset..).unwrap_or_default(),
            ));
            if let Some(addr) = text
                .lines()
                .filter(|l| l.contains("listening"))
                .find_map(parse_addr)
            {
                return Self {
                    addr,
                    config: config.to_owned(),
                    log: log.to_owned(),
                    guard,
                };
            }
            if let Some(status) = guard.try_wait() {
                panic!(
                    "`{line}` exited with {status} before logging `listening … addr=`; output:\n{}",
                    tail(log, 40)
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "`{line}` did not log `listening … addr=127.0.0.1:PORT` within 20 s; output:\n{}",
                    tail(log, 40)
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// `http://127.0.0.1:PORT/auth`
    pub fn realm(&self) -> String {
        format!("http://{}/auth", self.addr)
    }

    pub fn log_tail(&self, n: usize) -> String {
        tail(&self.log, n)
    }

    /// The log once `done` holds for it (at most [`LOG_WAIT`]): see [`log_when`].
    pub fn log_when(&self, done: impl Fn(&str) -> bool) -> String {
        log_when(&self.log, 0, done)
    }

    /// Every line logged so far: see [`synced_log`].
    pub fn synced_log(&self) -> String {
        synced_log(&self.log)
    }

    pub fn stop(&mut self) {
        self.guard.stop();
    }

    /// Stops, then starts again with the same config and log, on `listen`.
    pub fn restart_on(&mut self, listen: &str) {
        self.stop();
        let fresh = Self::start_on(&self.config, &self.log, listen);
        *self = fresh;
    }
}

/// `addr=127.0.0.1:PORT` (optionally quoted, or JSON `"addr":"…"`).
fn parse_addr(line: &str) -> Option<String> {
    for key in ["addr=", "\"addr\":"] {
        let mut rest = line;
        while let Some(i) = rest.find(key) {
            let v = rest[i + key.len()..].trim_start_matches(['"', ' ']);
            let end = v
                .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
                .unwrap_or(v.len());
            let cand = &v[..end];
            if let Some(port) = cand.strip_prefix("127.0.0.1:")
                && port.parse::<u16>().is_ok_and(|p| p != 0)
            {
                return Some(cand.to_owned());
            }
            rest = &rest[i + key.len()..];
        }
    }
    None
}

/// Fails if the server's log holds any of the secrets in any form a careless logger would
/// write: verbatim, `user:password` base64 (standard and URL-safe), any JWT the tests
/// received, or anything that looks like a JWT at all.
pub fn assert_log_has_no_secrets(log: &Path, passwords: &[(String, String)], tokens: &[String]) {
    let text = synced_log(log);
    let plain = strip_ansi(&text);
    let mut leaks = std::collections::BTreeSet::new();
    for (user, password) in passwords {
        let pair = format!("{user}:{password}");
        // Very short test passwords ("x", "wrong") could appear in any log by chance; their
        // `user:password` forms are still checked.
        let raw = if password.len() >= 8 {
            password.clone()
        } else {
            String::new()
        };
        let forms = [
            ("password", raw),
            ("user:password", pair.clone()),
            ("base64(user:password)", STANDARD.encode(&pair)),
            ("base64url(user:password)", URL_SAFE_NO_PAD.encode(&pair)),
            (
                "base64(user:password) unpadded",
                STANDARD.encode(&pair).trim_end_matches('=').to_owned(),
            ),
        ];
        for (what, needle) in forms {
            if !needle.is_empty() && (text.contains(&needle) || plain.contains(&needle)) {
                leaks.insert(format!("{what} of user {user:?}"));
            }
        }
    }
    for (i, t) in tokens.iter().enumerate() {
        let sig = t.rsplit('.').next().unwrap_or_default();
        if plain.contains(t.as_str()) || (sig.len() > 20 && plain.contains(sig)) {
            leaks.insert(format!(
                "token #{i} received by the tests (or its signature)"
            ));
        }
    }
    // `eyJ` = base64url('{"'): a JWT header followed by a payload.
    let jwt_like = plain.match_indices("eyJ").any(|(pos, _)| {
        plain[pos..]
            .split(|c: char| !(c.is_ascii_alphanumeric() || "-_.".contains(c)))
            .next()
            .is_some_and(|w| w.matches('.').count() >= 2 && w.len() > 60)
    });
    if jwt_like {
        leaks.insert("something shaped like a JWT".to_owned());
    }
    assert!(
        leaks.is_empty(),
        "registry-auth's log ({}) leaks secrets: {}",
        log.display(),
        leaks.into_iter().collect::<Vec<_>>().join(", ")
    );
    assert!(
        !plain.trim().is_empty(),
        "the server log {} is empty: log secrecy checked nothing",
        log.display()
    );
}

/// How long a test waits for the server to write a line it expects. The server writes its log
/// from a writer thread shortly after it answers (src/telemetry/sink.rs: the line is queued
/// before the answer, written a few milliseconds later), so no test may read the log right after
/// a response and expect the line to be there: it waits through [`log_when`] (a line that should
/// be present) or [`synced_log`] (a line that should be absent).
pub const LOG_WAIT: Duration = Duration::from_secs(10);

fn read_from(log: &Path, from: usize) -> String {
    let bytes = fs::read(log).unwrap_or_default();
    strip_ansi(&String::from_utf8_lossy(
        bytes.get(from..).unwrap_or_default(),
    ))
}

/// The one wait for log content: `find(&read())` until it finds something, polling every
/// 10 ms for at most [`LOG_WAIT`]; `None` when it never did.
pub fn wait_for_log<T>(read: impl Fn() -> String, find: impl Fn(&str) -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + LOG_WAIT;
    loop {
        let found = find(&read());
        if found.is_some() || Instant::now() >= deadline {
            return found;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// The server log from byte `from` on (ANSI colours stripped) as soon as `done` holds for it
/// (see [`wait_for_log`]); after [`LOG_WAIT`], the text as it is (the caller's assertion then
/// fails and shows it). For lines that should be PRESENT.
pub fn log_when(log: &Path, from: usize, done: impl Fn(&str) -> bool) -> String {
    wait_for_log(|| read_from(log, from), |t| done(t).then(|| t.to_owned()))
        .unwrap_or_else(|| read_from(log, from))
}

/// Every line the server has logged so far (ANSI colours stripped), for assertions that a line
/// is ABSENT (a secret, a second warning): a flush point, not a pause.
///
/// * Server running (its last `registry-auth listening addr=127.0.0.1:PORT` answers) at
///   `debug` or `trace` (as [`AuthServer`] runs it): one request carrying a unique
///   `X-Request-ID`, then waits until that id is in the log. The sink keeps order, so every
///   line logged before it is written too.
/// * Server stopped: a clean stop (SIGTERM, as [`AuthServer::stop`] does) flushes the whole
///   log before exit, so the file is complete.
/// * Otherwise (a server at `info` or quieter, a TLS listener): waits until the file has not
///   grown for 300 ms, at most [`LOG_WAIT`] (the writer lingers 2 ms; a heuristic, so tests
///   asserting absence start their server at `debug` or above).
pub fn synced_log(log: &Path) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let text = read_from(log, 0);
    let addr = text
        .lines()
        .filter(|l| l.contains("registry-auth listening") && !l.contains("tls=true"))
        .filter_map(parse_addr)
        .next_back();
    let verbose = text.contains(" DEBUG ")
        || text.contains(" TRACE ")
        || text.contains("\"level\":\"DEBUG\"")
        || text.contains("\"level\":\"TRACE\"");
    if let Some(addr) = addr {
        let id = format!(
            "log-sync-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let answered = super::http::try_request(
            "GET",
            &format!("http://{addr}/log-sync"),
            &[("X-Request-ID", id.clone())],
        );
        match answered {
            Ok(_) if verbose => {
                let text = log_when(log, 0, |t| t.contains(&id));
                assert!(
                    text.contains(&id),
                    "the server at {addr} answered but did not log request {id} within {LOG_WAIT:?}:\n{}",
                    tail(log, 20)
                );
                return text;
            }
            Ok(_) => {}
            // Nothing listens: the server has stopped, and a clean stop wrote everything.
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return read_from(log, 0);
            }
            Err(_) => {}
        }
    }
    settled_log(log)
}

/// The server's log (ANSI colours stripped) once it has not grown for 300 ms, at most
/// [`LOG_WAIT`]. A heuristic: prefer [`log_when`] or [`synced_log`].
pub fn settled_log(log: &Path) -> String {
    let deadline = Instant::now() + LOG_WAIT;
    let mut last = fs::metadata(log).map_or(0, |m| m.len());
    loop {
        thread::sleep(Duration::from_millis(300));
        let now = fs::metadata(log).map_or(0, |m| m.len());
        if now == last || Instant::now() > deadline {
            return read_from(log, 0);
        }
        last = now;
    }
}
