//! Malformed and hostile HTTP against the real `registry-auth serve` on 127.0.0.1, over raw TCP
//! so every byte is ours: broken request lines, oversized heads and query strings, invalid UTF-8
//! and NUL bytes, bad Basic credentials, thousands of scopes, huge or lying bodies, unknown
//! methods, smuggling-shaped framing, HTTP/1.0, missing and duplicate headers.
//!
//! For every case: the answer is the expected 4xx (the application's own 400s carry a JSON body
//! that says what is wrong), or, for framing errors that hyper rejects before the application
//! sees a request, a hyper 4xx or a closed connection (those cases are marked `Framing` below);
//! never a 5xx, never a hang. After every case a good token request must still get a 200.
//!
//! Then slow clients (slowloris): connections that send their head one byte per second, or stay
//! silent, or trickle a body, are cut off (closed, or 408) shortly after
//! `server.limits.header_read_timeout` (2 s here) or `request_timeout` (4 s here), while other
//! clients keep being served (each good request within 3 s; a few ms when idle).
//!
//! The server's RSS (`VmRSS`) is printed before and after and must grow by less than 50 MB.
//!
//! `cargo test --test it bad_input -- --nocapture` prints every case and its answer.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use crate::common::proc::{ChildGuard, free_port, strip_ansi, tail};
use crate::common::server::binary;

// ---------------------------------------------------------------------------------------------
// The server, with its pid (for /proc/PID/status)

/// Limits used by these tests: a short header timeout so slow-client tests stay fast.
pub(crate) const LIMITS_YAML: &str = "  limits: {header_read_timeout: 2s, request_timeout: 4s}\n";

/// `registry-auth serve` on 127.0.0.1 with anonymous pulls of `public/*` and a user `alice`
/// (password `alicepass`, bcrypt cost 4) owning `alice/**`.
pub(crate) struct TestServer {
    pub addr: String,
    pub pid: u32,
    pub log: PathBuf,
    guard: ChildGuard,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    pub(crate) fn start(server_yaml: &str, log_level: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("registry-auth-bad-input")
            .tempdir()
            .expect("temp dir");
        let key = registry_auth::token::generate_self_signed(
            registry_auth::token::KeyKind::EcP256,
            "bad-input",
            365,
        )
        .expect("key");
        registry_auth::token::write_key_files(
            &key,
            &dir.path().join("token.key"),
            &dir.path().join("token.crt"),
        )
        .expect("key files");
        let hash = bcrypt::hash("alicepass", 4).expect("bcrypt");
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "server:\n{server_yaml}\
                 token: {{issuer: bad-input, certificate: token.crt, key: token.key}}\n\
                 users:\n  \"\": {{}}\n  alice: {{password: \"{hash}\"}}\n\
                 acl:\n\
                 \x20 - match: {{account: \"\", name: \"public/*\"}}\n    actions: [pull]\n\
                 \x20 - match: {{account: alice, name: \"alice/**\"}}\n    actions: [pull, push]\n"
            ),
        )
        .expect("write config");
        let log = dir.path().join("server.log");
        let logf = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("log");
        // The address comes from the `listening` log line (info); at quieter levels we pick a
        // free port and wait until it accepts connections.
        let from_log = matches!(log_level, "info" | "debug" | "trace");
        let listen = if from_log {
            "127.0.0.1:0".to_owned()
        } else {
            format!("127.0.0.1:{}", free_port())
        };
        let mut cmd = Command::new(binary());
        cmd.arg("serve")
            .arg("--config")
            .arg(&config)
            .args(["--listen", &listen, "--log-level", log_level])
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(logf.try_clone().expect("dup"))
            .stderr(logf);
        // The server refuses unknown REGISTRY_AUTH_* variables, such as the suite's own.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("REGISTRY_AUTH_IT_") {
                cmd.env_remove(k);
            }
        }
        let child = cmd.spawn().expect("start registry-auth");
        let pid = child.id();
        // SIGTERM first, so a stopped server's log is complete (see `server::STOP`).
        let mut guard = ChildGuard::new("registry-auth", child, crate::common::server::STOP);
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            let text = strip_ansi(&String::from_utf8_lossy(
                &fs::read(&log).unwrap_or_default(),
            ));
            if from_log {
                if let Some(a) = text
                    .lines()
                    .filter(|l| l.contains("listening"))
                    .find_map(listen_addr)
                {
                    break a;
                }
            } else if TcpStream::connect(&listen).is_ok() {
                break listen;
            }
            if let Some(status) = guard.try_wait() {
                panic!("registry-auth exited with {status}:\n{}", tail(&log, 40));
            }
            assert!(
                Instant::now() < deadline,
                "registry-auth did not log its address within 30 s:\n{}",
                tail(&log, 40)
            );
            thread::sleep(Duration::from_millis(20));
        };
        let dir = if std::env::var_os("REGISTRY_AUTH_IT_KEEP").is_some() {
            eprintln!("keeping {}", dir.path().display());
            let _ = dir.keep();
            None
        } else {
            Some(dir)
        };
        Self {
            addr,
            pid,
            log,
            guard,
            _dir: dir,
        }
    }

    /// Resident set size in KiB (`VmRSS` of /proc/PID/status).
    pub(crate) fn rss_kib(&self) -> u64 {
        let status = fs::read_to_string(format!("/proc/{}/status", self.pid)).expect("status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/PID/status")
    }

    /// Stops the server cleanly: every line it logged is in the log afterwards.
    pub(crate) fn stop(&mut self) {
        self.guard.stop();
    }

    pub(crate) fn assert_alive(&mut self) {
        if let Some(status) = self.guard.try_wait() {
            panic!("registry-auth died ({status}):\n{}", tail(&self.log, 60));
        }
    }

    /// The anonymous token request every case is followed by.
    pub(crate) fn good_path() -> &'static str {
        "/auth?service=registry&scope=repository:public/app:pull"
    }

    /// One good request; `Err` says what went wrong.
    pub(crate) fn good_request(&self) -> Result<Duration, String> {
        let start = Instant::now();
        let req = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
            Self::good_path(),
            self.addr
        );
        match exchange(&self.addr, &[Part::Send(req.into_bytes())], IO_TIMEOUT) {
            Outcome::Response {
                status: 200, body, ..
            } if String::from_utf8_lossy(&body).contains("\"token\"") => Ok(start.elapsed()),
            other => Err(format!("good request got {}", other.describe())),
        }
    }
}

/// `addr=127.0.0.1:PORT` in a log line.
fn listen_addr(line: &str) -> Option<String> {
    let i = line.find("addr=")?;
    let v = line[i + 5..].trim_start_matches(['"', ' ']);
    let end = v
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ':'))
        .unwrap_or(v.len());
    let cand = &v[..end];
    cand.strip_prefix("127.0.0.1:")
        .and_then(|p| p.parse::<u16>().ok())
        .filter(|p| *p != 0)
        .map(|_| cand.to_owned())
}

// ---------------------------------------------------------------------------------------------
// Raw exchanges

const IO_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub(crate) enum Part {
    Send(Vec<u8>),
    /// Wait before the next part.
    Pause(Duration),
    /// Shut down our sending side (the server sees EOF).
    HalfClose,
}

#[derive(Debug, Clone)]
pub(crate) enum Outcome {
    Response {
        status: u16,
        head: String,
        body: Vec<u8>,
    },
    /// The server closed (or reset) the connection without a complete response.
    Closed { after: Duration, partial: usize },
    /// Nothing for `IO_TIMEOUT`.
    Hung,
}

impl Outcome {
    fn describe(&self) -> String {
        match self {
            Outcome::Response { status, body, .. } => {
                let mut b: String = String::from_utf8_lossy(body).chars().take(110).collect();
                if body.len() > 110 {
                    b.push('…');
                }
                format!("{status} {b}")
            }
            Outcome::Closed { after, partial } => {
                format!("closed after {after:.1?} ({partial} bytes)")
            }
            Outcome::Hung => format!("no answer within {IO_TIMEOUT:?}"),
        }
    }
}

/// Sends `parts` (from a writer thread, so a server that answers early cannot deadlock us) and
/// reads one response.
pub(crate) fn exchange(addr: &str, parts: &[Part], timeout: Duration) -> Outcome {
    let start = Instant::now();
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).ok();
    let mut writer = stream.try_clone().expect("clone stream");
    let parts_head = parts.iter().find_map(|p| match p {
        Part::Send(b) => Some(b.starts_with(b"HEAD ")),
        _ => None,
    });
    let parts = parts.to_vec();
    let sender = thread::spawn(move || {
        for p in parts {
            match p {
                Part::Send(bytes) => {
                    // The server may answer and close before reading everything: not an error.
                    if writer.write_all(&bytes).is_err() {
                        return;
                    }
                }
                Part::Pause(d) => thread::sleep(d),
                Part::HalfClose => {
                    let _ = writer.shutdown(Shutdown::Write);
                }
            }
        }
    });
    let head = matches!(parts_head, Some(true));
    let outcome = read_response(stream, timeout, start, head);
    let _ = sender.join();
    outcome
}

fn read_response(mut stream: TcpStream, timeout: Duration, start: Instant, head: bool) -> Outcome {
    stream
        .set_read_timeout(Some(Duration::from_millis(200)))
        .ok();
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(o) = complete_response(&buf, head) {
            return o;
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return complete_response(&buf, head).unwrap_or(Outcome::Closed {
                    after: start.elapsed(),
                    partial: buf.len(),
                });
            }
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if Instant::now() > deadline {
                    return Outcome::Hung;
                }
            }
            Err(_) => {
                return Outcome::Closed {
                    after: start.elapsed(),
                    partial: buf.len(),
                };
            }
        }
    }
}

/// A complete final response at the start of `buf` (1xx responses skipped), if there is one.
/// Answers to `HEAD` have no body whatever their `Content-Length`.
fn complete_response(mut buf: &[u8], head_request: bool) -> Option<Outcome> {
    loop {
        let end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
        let head = String::from_utf8_lossy(&buf[..end]).into_owned();
        let status: u16 = head.split_whitespace().nth(1)?.parse().ok()?;
        let rest = &buf[end + 4..];
        if (100..200).contains(&status) {
            buf = rest;
            continue;
        }
        if head_request {
            return Some(Outcome::Response {
                status,
                head,
                body: Vec::new(),
            });
        }
        let header = |name: &str| {
            head.lines().skip(1).find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_owned())
            })
        };
        if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            return (rest.len() >= len).then(|| Outcome::Response {
                status,
                head: head.clone(),
                body: rest[..len].to_vec(),
            });
        }
        if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            let mut body = Vec::new();
            let mut data = rest;
            loop {
                let nl = data.windows(2).position(|w| w == b"\r\n")?;
                let size = usize::from_str_radix(
                    String::from_utf8_lossy(&data[..nl])
                        .split(';')
                        .next()?
                        .trim(),
                    16,
                )
                .ok()?;
                data = &data[nl + 2..];
                if size == 0 {
                    return Some(Outcome::Response { status, head, body });
                }
                if data.len() < size + 2 {
                    return None;
                }
                body.extend_from_slice(&data[..size]);
                data = &data[size + 2..];
            }
        }
        // No length: only complete at EOF (the caller handles that) — or a bodiless status.
        if status == 204 || status == 304 {
            return Some(Outcome::Response {
                status,
                head,
                body: Vec::new(),
            });
        }
        return None;
    }
}

// ---------------------------------------------------------------------------------------------
// The cases

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Exactly this status.
    Status(u16),
    /// One of these statuses.
    OneOf(&'static [u16]),
    /// A framing error hyper rejects before any handler runs: a 4xx or a closed connection.
    Framing,
    /// Answered by the application with a 4xx and a JSON body saying what is wrong.
    AppClientError,
    /// Answered by the application with exactly this status and a JSON body that mentions
    /// this text (the parameter or header at fault, or the limit).
    App(u16, &'static str),
    /// Unusual but valid HTTP: served normally (2xx).
    Served,
}

struct Case {
    name: String,
    parts: Vec<Part>,
    expect: Expect,
}

fn case(name: impl Into<String>, bytes: impl Into<Vec<u8>>, expect: Expect) -> Case {
    Case {
        name: name.into(),
        parts: vec![Part::Send(bytes.into())],
        expect,
    }
}

fn get(target: &str, headers: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n{headers}\r\n")
        .into_bytes()
}

fn get_bytes(target: &[u8], headers: &[u8]) -> Vec<u8> {
    let mut v = b"GET ".to_vec();
    v.extend_from_slice(target);
    v.extend_from_slice(b" HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n");
    v.extend_from_slice(headers);
    v.extend_from_slice(b"\r\n");
    v
}

fn post(content_type: Option<&str>, body: &[u8], extra: &str) -> Vec<u8> {
    let mut v = format!(
        "POST /auth HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: {}\r\n{}{extra}\r\n",
        body.len(),
        content_type.map_or(String::new(), |c| format!("Content-Type: {c}\r\n"))
    )
    .into_bytes();
    v.extend_from_slice(body);
    v
}

const FORM: &str = "application/x-www-form-urlencoded";
const GOOD_Q: &str = "/auth?service=registry&scope=repository:public/app:pull";

fn basic_raw(payload: &[u8]) -> String {
    format!("Authorization: Basic {}\r\n", STANDARD.encode(payload))
}

fn cases() -> Vec<Case> {
    use Expect::*;
    let mut c = Vec::new();

    // --- Request line and framing (hyper rejects these; the application never sees them).
    for (name, bytes) in [
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec()),
        ("method only", b"GET\r\n\r\n".to_vec()),
        ("HTTP/0.9 style (no version)", b"GET /auth\r\n\r\n".to_vec()),
        (
            "unknown HTTP version 9.9",
            b"GET /auth HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "HTTP/2.0 in an HTTP/1 request line",
            b"GET /auth HTTP/2.0\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "extra token in the request line",
            b"GET /auth HTTP/1.1 extra\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "two spaces in the request line",
            b"GET  /auth HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "tab-separated request line",
            b"GET\t/auth\tHTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "NUL in the method",
            b"G\0T /auth HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "NUL in the path",
            b"GET /au\0th HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "NUL in the query",
            b"GET /auth?service=reg\0istry HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "space in the target",
            b"GET /auth?service=a b HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        ),
        (
            "raw invalid UTF-8 in the query",
            get_bytes(b"/auth?service=registry&scope=repository:\xff\xfe:pull", b""),
        ),
        (
            "raw invalid UTF-8 in the path",
            get_bytes(b"/au\xc3\x28th", b""),
        ),
        (
            "raw DEL and control bytes in the query",
            get_bytes(b"/auth?service=\x7f\x01\x1b", b""),
        ),
        (
            "header line without a colon",
            get(GOOD_Q, "NoColonHere\r\n"),
        ),
        (
            "space before the colon in a header name",
            get(GOOD_Q, "X-Test : a\r\n"),
        ),
        (
            "space inside a header name",
            get(GOOD_Q, "X Test: a\r\n"),
        ),
        (
            "empty header name",
            get(GOOD_Q, ": a\r\n"),
        ),
        (
            "NUL in a header value",
            get_bytes(GOOD_Q.as_bytes(), b"X-Test: a\0b\r\n"),
        ),
        (
            "CR alone inside a header value",
            get_bytes(GOOD_Q.as_bytes(), b"X-Test: a\rb\r\n"),
        ),
        (
            "obsolete line folding",
            get(GOOD_Q, "X-Test: a\r\n  folded\r\n"),
        ),
        (
            "Content-Length not a number",
            b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
        ),
        (
            "negative Content-Length",
            b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n".to_vec(),
        ),
        (
            "two different Content-Length headers",
            b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nabcdef"
                .to_vec(),
        ),
        (
            "Content-Length overflowing u64",
            b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999999999999999\r\n\r\n"
                .to_vec(),
        ),
        (
            "Transfer-Encoding gzip without chunked",
            b"POST /auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nabc"
                .to_vec(),
        ),
        (
            "HTTP/2 connection preface",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec(),
        ),
        (
            "TLS ClientHello on the plain-HTTP port",
            vec![
                0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03, 0, 0, 0, 0, 0,
                0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, b'\r', b'\n', b'\r', b'\n',
            ],
        ),
        ("binary noise", (0u8..=255).rev().cycle().take(3000).collect()),
        ("only CRLFs", b"\r\n\r\n\r\n\r\nGARBAGE\r\n\r\n".to_vec()),
        (
            "DEL byte in the Content-Type",
            post(Some(";;;===\u{7f}"), b"grant_type=password", ""),
        ),
        (
            "1 MB request line",
            get(&format!("/auth?service={}", "a".repeat(1 << 20)), ""),
        ),
        (
            "query string of 20 kB (over max_header_bytes)",
            get(&format!("/auth?service=registry&x={}", "a".repeat(20_000)), ""),
        ),
        (
            "10 000 scopes in the query (over max_header_bytes)",
            get(
                &format!(
                    "/auth?service=registry{}",
                    "&scope=repository:a/b:pull".repeat(10_000)
                ),
                "",
            ),
        ),
        (
            "one header of 20 kB",
            get(GOOD_Q, &format!("X-Big: {}\r\n", "b".repeat(20_000))),
        ),
        (
            "Authorization header of 20 kB",
            get(GOOD_Q, &format!("Authorization: Basic {}\r\n", "QUJD".repeat(5_000))),
        ),
        (
            "300 headers",
            get(GOOD_Q, &"X-Many: 1\r\n".repeat(300)),
        ),
        (
            "very long method name",
            format!("{} /auth HTTP/1.1\r\nHost: x\r\n\r\n", "M".repeat(20_000)).into_bytes(),
        ),
    ] {
        c.push(case(name, bytes, Framing));
    }

    // --- Methods and paths.
    for method in [
        "PUT", "DELETE", "PATCH", "OPTIONS", "TRACE", "PROPFIND", "BREW", "FOO", "get", "MKCOL",
    ] {
        c.push(case(
            format!("method {method} on /auth"),
            format!(
                "{method} {GOOD_Q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
            ),
            Status(405),
        ));
    }
    c.push(case(
        "CONNECT to the server",
        "CONNECT 127.0.0.1:443 HTTP/1.1\r\nHost: 127.0.0.1:443\r\nConnection: close\r\n\r\n",
        OneOf(&[400, 404, 405]),
    ));
    c.push(case(
        "HEAD /auth without service",
        "HEAD /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        Status(400),
    ));
    c.push(case(
        "asterisk-form target on GET",
        "GET * HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        OneOf(&[400, 404]),
    ));
    // The index names the issuer (docker_auth's `/`), even without web logins.
    c.push(case("GET /".to_owned(), get("/", ""), Status(200)));
    for path in [
        "/auth/../../etc/passwd",
        "//auth",
        "/auth%00",
        "/auth%ZZ",
        "/%2e%2e/%2e%2e/etc/passwd",
        "/v2/",
        "/auth/token/extra/segments",
    ] {
        c.push(case(format!("GET {path}"), get(path, ""), Status(404)));
    }
    c.push(case(
        "path of 12 kB",
        get(&format!("/{}", "p".repeat(12_000)), ""),
        OneOf(&[404, 414]),
    ));

    // --- The query string (application 400s).
    for (name, q) in [
        ("no query at all", "/auth".to_owned()),
        ("empty service", "/auth?service=".to_owned()),
        (
            "service given twice, differently",
            "/auth?service=a&service=b".to_owned(),
        ),
        (
            "account given twice, differently",
            "/auth?service=registry&account=a&account=b".to_owned(),
        ),
        (
            "client_id given twice, differently",
            "/auth?service=registry&client_id=a&client_id=b".to_owned(),
        ),
        ("scope without colons", format!("{GOOD_Q}&scope=nonsense")),
        (
            "scope with one colon",
            format!("{GOOD_Q}&scope=repository:a"),
        ),
        (
            "scope with an empty type",
            format!("{GOOD_Q}&scope=:a:pull"),
        ),
        (
            "scope with an empty name",
            format!("{GOOD_Q}&scope=repository::pull"),
        ),
        (
            "scope with an upper-case type",
            format!("{GOOD_Q}&scope=REPO:a:pull"),
        ),
        (
            "scope with an upper-case action",
            format!("{GOOD_Q}&scope=repository:a:PULL"),
        ),
        (
            "scope with a control character in the name",
            format!("{GOOD_Q}&scope=repository:a%01b:pull"),
        ),
        (
            "scope with a tab in the name",
            format!("{GOOD_Q}&scope=repository:a%09b:pull"),
        ),
        (
            "scope with a NUL in the name (percent-encoded)",
            format!("{GOOD_Q}&scope=repository:a%00b:pull"),
        ),
        (
            "scope with an unclosed class",
            format!("{GOOD_Q}&scope=repository(plugin:a:pull"),
        ),
        (
            "scope with a name of 2 000 bytes",
            format!("{GOOD_Q}&scope=repository:{}:pull", "n".repeat(2_000)),
        ),
        (
            "600 scopes (over the 512 limit)",
            format!("/auth?service=registry{}", "&scope=r:a:b".repeat(600)),
        ),
        (
            "600 space-separated scopes in one parameter",
            format!(
                "/auth?service=registry&scope={}",
                vec!["r:a:b"; 600].join("%20")
            ),
        ),
    ] {
        c.push(case(name, get(&q, ""), AppClientError));
    }
    // Free text that ends up in the token (`service` is its audience) or the log (`client_id`,
    // `account`) must be printable UTF-8: no control characters, and invalid UTF-8 is refused,
    // never decoded lossily.
    let scope = "scope=repository:public/app:pull";
    for (name, q, parameter) in [
        (
            "NUL in service (percent-encoded)",
            format!("/auth?{scope}&service=%00"),
            "`service`",
        ),
        (
            "control characters in service",
            format!("/auth?{scope}&service=a%01%1b%7f"),
            "`service`",
        ),
        (
            "invalid UTF-8 in service (percent-encoded)",
            format!("/auth?{scope}&service=%FF%FE"),
            "`service`",
        ),
        (
            "NUL and newline in client_id",
            format!("{GOOD_Q}&client_id=a%00%0Ab"),
            "`client_id`",
        ),
        (
            "invalid UTF-8 in client_id (percent-encoded)",
            format!("{GOOD_Q}&client_id=%C3%28"),
            "`client_id`",
        ),
        (
            "tab in account",
            format!("{GOOD_Q}&account=a%09b"),
            "`account`",
        ),
        (
            "invalid UTF-8 in a scope (percent-encoded)",
            "/auth?service=registry&scope=repository:a%FF:pull".to_owned(),
            "`scope`",
        ),
    ] {
        c.push(case(name, get(&q, ""), App(400, parameter)));
    }
    c.push(case(
        "printable non-ASCII service and client_id",
        get(
            &format!("/auth?{scope}&service=r%C3%A9gistry&client_id=%F0%9F%90%B3%20cli"),
            "",
        ),
        Served,
    ));

    // --- Basic credentials (application 400s, 401s for wrong ones).
    let auth_cases: Vec<(&str, String, Expect)> = vec![
        (
            "Basic with invalid base64",
            "Authorization: Basic !!!\r\n".into(),
            Status(400),
        ),
        (
            "Basic with base64 and junk",
            "Authorization: Basic YWxpY2U6cGF=zz\r\n".into(),
            Status(400),
        ),
        (
            "Basic with padding only",
            "Authorization: Basic ====\r\n".into(),
            Status(400),
        ),
        ("Basic without a colon", basic_raw(b"alice"), Status(400)),
        (
            "Basic of invalid UTF-8",
            basic_raw(b"\xff\xfe:\xc3\x28"),
            Status(400),
        ),
        (
            "Basic with invalid UTF-8 in the password",
            basic_raw(b"alice:\xff"),
            Status(400),
        ),
        (
            "Basic without credentials",
            "Authorization: Basic\r\n".into(),
            Status(400),
        ),
        (
            "Basic with only spaces",
            "Authorization: Basic    \r\n".into(),
            Status(400),
        ),
        (
            "Bearer instead of Basic",
            "Authorization: Bearer abc.def.ghi\r\n".into(),
            Status(400),
        ),
        (
            "Digest scheme",
            "Authorization: Digest username=\"alice\"\r\n".into(),
            Status(400),
        ),
        (
            "empty Authorization header",
            "Authorization: \r\n".into(),
            Status(400),
        ),
        (
            "duplicate Authorization headers",
            format!(
                "{}{}",
                basic_raw(b"alice:alicepass"),
                basic_raw(b"alice:alicepass")
            ),
            Status(400),
        ),
        (
            "duplicate Authorization headers, different users",
            format!("{}{}", basic_raw(b"alice:alicepass"), basic_raw(b"bob:x")),
            Status(400),
        ),
        (
            "non-ASCII bytes in Authorization",
            "Authorization: Basic \u{e9}\u{e9}\r\n".into(),
            Status(400),
        ),
        ("unknown user", basic_raw(b"mallory:x"), Status(401)),
        ("wrong password", basic_raw(b"alice:wrong"), Status(401)),
        (
            "NUL in the user name",
            basic_raw(b"ali\0ce:alicepass"),
            Status(401),
        ),
        (
            "NUL in the password",
            basic_raw(b"alice:alice\0pass"),
            Status(401),
        ),
        (
            "user name of 8 kB",
            basic_raw(format!("{}:x", "u".repeat(8_000)).as_bytes()),
            Status(401),
        ),
        (
            "password of 8 kB",
            basic_raw(format!("alice:{}", "p".repeat(8_000)).as_bytes()),
            Status(401),
        ),
        (
            "empty user, non-empty password",
            basic_raw(b":secret"),
            Status(401),
        ),
    ];
    for (name, header, expect) in auth_cases {
        c.push(case(name, get(GOOD_Q, &header), expect));
    }
    c.push(case(
        "raw 0xff bytes in Authorization",
        get_bytes(GOOD_Q.as_bytes(), b"Authorization: Basic \xff\xfe\r\n"),
        Status(400),
    ));
    c.push(case(
        "account parameter differs from the Basic user",
        get(
            &format!("{GOOD_Q}&account=bob"),
            &basic_raw(b"alice:alicepass"),
        ),
        Status(400),
    ));

    // --- The OAuth2 POST.
    let pw_form =
        "grant_type=password&username=alice&password=alicepass&service=registry&client_id=t";
    for (name, ct, body, expect) in [
        (
            "POST without Content-Type",
            None,
            pw_form.as_bytes().to_vec(),
            Status(400),
        ),
        (
            "POST with JSON",
            Some("application/json"),
            b"{\"grant_type\":\"password\"}".to_vec(),
            Status(400),
        ),
        (
            "POST with multipart",
            Some("multipart/form-data; boundary=x"),
            b"--x\r\n\r\n--x--".to_vec(),
            Status(400),
        ),
        (
            "POST with text/plain",
            Some("text/plain"),
            pw_form.as_bytes().to_vec(),
            Status(400),
        ),
        (
            "POST with a garbage Content-Type",
            Some(";;;===/"),
            pw_form.as_bytes().to_vec(),
            Status(400),
        ),
        (
            "POST with an empty form",
            Some(FORM),
            Vec::new(),
            Status(400),
        ),
        (
            "POST without grant_type",
            Some(FORM),
            b"service=registry&client_id=t".to_vec(),
            Status(400),
        ),
        (
            "POST with an unknown grant_type",
            Some(FORM),
            b"grant_type=implicit&service=registry&client_id=t".to_vec(),
            Status(400),
        ),
        (
            "POST grant_type twice",
            Some(FORM),
            b"grant_type=password&grant_type=refresh_token&service=registry&client_id=t".to_vec(),
            Status(400),
        ),
        (
            "POST without client_id",
            Some(FORM),
            b"grant_type=password&username=alice&password=x&service=registry".to_vec(),
            Status(400),
        ),
        (
            "POST without service",
            Some(FORM),
            b"grant_type=password&username=alice&password=x&client_id=t".to_vec(),
            Status(400),
        ),
        (
            "POST without password",
            Some(FORM),
            b"grant_type=password&username=alice&service=registry&client_id=t".to_vec(),
            Status(400),
        ),
        (
            "POST refresh without a token",
            Some(FORM),
            b"grant_type=refresh_token&service=registry&client_id=t".to_vec(),
            Status(400),
        ),
        (
            "POST with a forged refresh token",
            Some(FORM),
            b"grant_type=refresh_token&refresh_token=rat1.e30.AAAA&service=registry&client_id=t"
                .to_vec(),
            Status(401),
        ),
        (
            "POST with a malformed scope",
            Some(FORM),
            format!("{pw_form}&scope=nonsense").into_bytes(),
            Status(400),
        ),
        (
            "POST with invalid UTF-8 (raw bytes) in the form",
            Some(FORM),
            b"grant_type=password&username=\xff\xfe&password=\xc3\x28&service=registry&client_id=t"
                .to_vec(),
            App(400, "`username`"),
        ),
        (
            "POST with NUL in service and client_id",
            Some(FORM),
            b"grant_type=password&username=alice&password=alicepass&service=reg%00&client_id=t%0A"
                .to_vec(),
            App(400, "`service`"),
        ),
        (
            "POST with NUL bytes in the form",
            Some(FORM),
            b"grant_type=password&username=al\0ice&password=x\0&service=registry&client_id=t"
                .to_vec(),
            Status(401),
        ),
        (
            "POST with a wrong password",
            Some(FORM),
            b"grant_type=password&username=alice&password=wrong&service=registry&client_id=t"
                .to_vec(),
            Status(401),
        ),
        (
            "POST with 10 000 short scopes (under the body limit)",
            Some(FORM),
            format!("{pw_form}&scope={}", vec!["r:a:b"; 10_000].join("+")).into_bytes(),
            Status(400),
        ),
        (
            "POST with 10 000 scopes (over the body limit)",
            Some(FORM),
            format!("{pw_form}{}", "&scope=repository:a/b:pull".repeat(10_000)).into_bytes(),
            App(413, "larger than 65536 bytes"),
        ),
    ] {
        c.push(case(name, post(ct, &body, ""), expect));
    }
    // A huge body: the 413 may come before we finish sending; the server then closes, and the
    // kernel may reset the connection before we read the 413.
    c.push(case(
        "POST with an 8 MB body",
        post(Some(FORM), &vec![b'a'; 8 << 20], ""),
        Framing,
    ));
    c.push(Case {
        name: "POST announcing 8 MB, sending 10 bytes, then EOF".into(),
        parts: vec![
            Part::Send(
                b"POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 8388608\r\n\r\ngrant_type"
                    .to_vec(),
            ),
            Part::HalfClose,
        ],
        expect: App(413, "larger than 65536 bytes"),
    });
    // A body that cannot be read (hyper reports its framing errors while the handler reads it):
    // a 400 saying so, not a 413.
    c.push(Case {
        name: "POST announcing 100 bytes, sending 10, then EOF".into(),
        parts: vec![
            Part::Send(
                b"POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type"
                    .to_vec(),
            ),
            Part::HalfClose,
        ],
        expect: App(400, "could not be read"),
    });
    c.push(case(
        "Transfer-Encoding chunked with an invalid chunk size",
        b"POST /auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
            .to_vec(),
        App(400, "could not be read"),
    ));
    c.push(case(
        "chunked with a huge chunk size",
        b"POST /auth HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\nffffffffffffffffff\r\nabc\r\n"
            .to_vec(),
        App(400, "could not be read"),
    ));
    let mut chunked = b"POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec();
    for _ in 0..200 {
        chunked.extend_from_slice(b"1000\r\n");
        chunked.extend_from_slice(&[b'a'; 0x1000]);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    c.push(case(
        "POST with 800 kB chunked (no Content-Length)",
        chunked,
        Framing,
    ));
    c.push(case(
        "POST with Content-Length and Transfer-Encoding (smuggling shape)",
        b"POST /auth HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /auth HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        OneOf(&[400]),
    ));
    c.push(case(
        "Expect: 100-continue, then the body",
        post(
            Some(FORM),
            b"grant_type=nope&service=registry&client_id=t",
            "Expect: 100-continue\r\n",
        ),
        Status(400),
    ));
    c.push(case(
        "unknown Expect value",
        post(
            Some(FORM),
            b"grant_type=nope&service=registry&client_id=t",
            "Expect: teapot\r\n",
        ),
        OneOf(&[400, 417]),
    ));
    c.push(case(
        "GET with a body",
        format!(
            "GET {GOOD_Q} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello"
        ),
        Served,
    ));

    // --- Versions and Host.
    c.push(case(
        "HTTP/1.0 without Host",
        format!("GET {GOOD_Q} HTTP/1.0\r\n\r\n"),
        Served,
    ));
    c.push(case(
        "HTTP/1.0 with a bad scope",
        "GET /auth?service=registry&scope=bad HTTP/1.0\r\n\r\n",
        AppClientError,
    ));
    c.push(case(
        "HTTP/1.0 POST without Content-Length",
        "POST /auth HTTP/1.0\r\nContent-Type: application/x-www-form-urlencoded\r\n\r\ngrant_type=nope",
        OneOf(&[400]),
    ));
    // RFC 9112 section 3.2: a server MUST answer 400 to an HTTP/1.1 request without Host, and to
    // any request with several or with an invalid one (hyper does not check; the server does,
    // on every route).
    c.push(case(
        "HTTP/1.1 without Host",
        format!("GET {GOOD_Q} HTTP/1.1\r\nConnection: close\r\n\r\n"),
        App(400, "Host"),
    ));
    c.push(case(
        "two Host headers",
        format!("GET {GOOD_Q} HTTP/1.1\r\nHost: a\r\nHost: b\r\nConnection: close\r\n\r\n"),
        App(400, "Host"),
    ));
    c.push(case(
        "two identical Host headers",
        format!("GET {GOOD_Q} HTTP/1.1\r\nHost: a\r\nHost: a\r\nConnection: close\r\n\r\n"),
        App(400, "Host"),
    ));
    c.push(case(
        "Host that is not a host",
        format!("GET {GOOD_Q} HTTP/1.1\r\nHost: [::1\r\nConnection: close\r\n\r\n"),
        App(400, "Host"),
    ));
    c.push(case(
        "HTTP/1.1 without Host on another route",
        "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n",
        App(400, "Host"),
    ));
    c.push(case(
        "HTTP/1.0 with a Host that is not a host",
        format!("GET {GOOD_Q} HTTP/1.0\r\nHost: a/b\r\n\r\n"),
        App(400, "Host"),
    ));
    c.push(case(
        "Host with an IPv6 literal and a port",
        format!("GET {GOOD_Q} HTTP/1.1\r\nHost: [::1]:5001\r\nConnection: close\r\n\r\n"),
        Served,
    ));
    // RFC 9112 section 2.2 lets a recipient accept a bare LF as the line terminator.
    c.push(case(
        "bare LF line endings",
        format!("GET {GOOD_Q} HTTP/1.1\nHost: x\nConnection: close\n\n"),
        Served,
    ));
    c.push(case(
        "pipelined: good request then garbage",
        format!("GET {GOOD_Q} HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n"),
        Served,
    ));
    c.push(case(
        "Upgrade: h2c",
        get(
            GOOD_Q,
            "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n",
        ),
        Served,
    ));
    c.push(case(
        "Upgrade: websocket",
        get(GOOD_Q, "Upgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"),
        Served,
    ));
    c.push(Case {
        name: "head split into three writes 300 ms apart".into(),
        parts: vec![
            Part::Send(b"GET /auth?service=registry&scope=repository:pub".to_vec()),
            Part::Pause(Duration::from_millis(300)),
            Part::Send(b"lic/app:pull HTTP/1.1\r\nHo".to_vec()),
            Part::Pause(Duration::from_millis(300)),
            Part::Send(b"st: x\r\nConnection: close\r\n\r\n".to_vec()),
        ],
        expect: Served,
    });
    c.push(Case {
        name: "connection closed right after the request line".into(),
        parts: vec![
            Part::Send(b"GET /auth HTTP/1.1\r\n".to_vec()),
            Part::HalfClose,
        ],
        expect: Framing,
    });
    c.push(Case {
        name: "connection closed without sending anything".into(),
        parts: vec![Part::HalfClose],
        expect: Framing,
    });
    c
}

fn check(expect: Expect, outcome: &Outcome) -> Result<(), String> {
    let status = match outcome {
        Outcome::Hung => return Err("no answer (hang)".into()),
        Outcome::Closed { .. } => {
            return if expect == Expect::Framing {
                Ok(())
            } else {
                Err("connection closed without an answer".into())
            };
        }
        Outcome::Response { status, .. } => *status,
    };
    if status >= 500 {
        return Err(format!("server error {status}"));
    }
    let ok = match expect {
        Expect::Status(s) => status == s,
        Expect::OneOf(list) => list.contains(&status),
        Expect::Framing => (400..500).contains(&status),
        Expect::AppClientError => {
            let Outcome::Response { body, head, .. } = outcome else {
                unreachable!()
            };
            (400..500).contains(&status)
                && head.to_ascii_lowercase().contains("application/json")
                && !body.is_empty()
        }
        Expect::App(expected, says) => {
            let Outcome::Response { body, head, .. } = outcome else {
                unreachable!()
            };
            status == expected
                && head.to_ascii_lowercase().contains("application/json")
                && String::from_utf8_lossy(body).contains(says)
        }
        Expect::Served => (200..300).contains(&status),
    };
    if ok {
        Ok(())
    } else {
        Err(format!("expected {expect:?}"))
    }
}

fn sent_bytes(parts: &[Part]) -> usize {
    parts
        .iter()
        .map(|p| match p {
            Part::Send(b) => b.len(),
            _ => 0,
        })
        .sum()
}

#[test]
fn malformed_requests_get_4xx_and_the_server_keeps_serving() {
    let mut server = TestServer::start(LIMITS_YAML, "info");
    server
        .good_request()
        .expect("server answers a good request");
    // Warm up allocator arenas and caches so the comparison is about the suite.
    for _ in 0..50 {
        server.good_request().expect("warm-up");
    }
    let rss_before = server.rss_kib();
    let cases = cases();
    assert!(cases.len() >= 100, "only {} cases", cases.len());
    let mut table = String::new();
    let mut failures = Vec::new();
    let mut statuses = std::collections::BTreeMap::<String, usize>::new();
    for (i, c) in cases.iter().enumerate() {
        let outcome = exchange(&server.addr, &c.parts, IO_TIMEOUT);
        let verdict = check(c.expect, &outcome);
        let key = match &outcome {
            Outcome::Response { status, .. } => status.to_string(),
            Outcome::Closed { .. } => "closed".into(),
            Outcome::Hung => "hung".into(),
        };
        *statuses.entry(key).or_default() += 1;
        let _ = writeln!(
            table,
            "{i:>3} {:<4} {:<58} {:>8} B  {}",
            if verdict.is_ok() { "ok" } else { "FAIL" },
            c.name,
            sent_bytes(&c.parts),
            outcome.describe().replace('\n', " ")
        );
        if let Err(why) = verdict {
            failures.push(format!("{}: {why}; got {}", c.name, outcome.describe()));
        }
        server.assert_alive();
        if let Err(e) = server.good_request() {
            failures.push(format!("after {:?}: {e}", c.name));
        }
    }
    let rss_after = server.rss_kib();
    println!("bad-input cases ({}):\n{table}", cases.len());
    println!("answers: {statuses:?}");
    println!(
        "server RSS: {rss_before} KiB before, {rss_after} KiB after ({:+} KiB)",
        rss_after as i64 - rss_before as i64
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n  {}\n\ntable:\n{table}\nserver log:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n  "),
        tail(&server.log, 30)
    );
    assert!(
        rss_after < rss_before + 50 * 1024,
        "RSS grew from {rss_before} KiB to {rss_after} KiB"
    );
    // NUL bytes and newlines from requests (client_id, user names) are escaped in the log: no
    // raw NUL, and every line is a log record (no injected lines). Read after a clean stop, so
    // every line is there (the server writes its log just after it answers).
    server.stop();
    let log = fs::read(&server.log).expect("server log");
    assert!(!log.contains(&0), "raw NUL byte in the server log");
    let text = strip_ansi(&String::from_utf8_lossy(&log));
    let injected: Vec<&str> = text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with(|c: char| c.is_ascii_digit()))
        .collect();
    assert!(
        injected.is_empty(),
        "log lines that are not log records: {injected:?}"
    );
}

/// Slow clients: head trickled one byte per second, silent connections, a trickled body. Each
/// is cut off soon after its timeout (closed, or 408), while good requests keep being served.
#[test]
fn slow_clients_are_cut_off_while_others_are_served() {
    let mut server = TestServer::start(LIMITS_YAML, "info");
    server.good_request().expect("server answers");
    let header_timeout = Duration::from_secs(2);
    let request_timeout = Duration::from_secs(4);
    let rss_before = server.rss_kib();

    // Good requests all along, from another thread.
    let stop = Arc::new(AtomicBool::new(false));
    let served = Arc::new(AtomicU64::new(0));
    let worst = Arc::new(Mutex::new(Duration::ZERO));
    let errors = Arc::new(Mutex::new(Vec::<String>::new()));
    let prober = {
        let (stop, served, worst, errors) = (
            Arc::clone(&stop),
            Arc::clone(&served),
            Arc::clone(&worst),
            Arc::clone(&errors),
        );
        let addr = server.addr.clone();
        thread::spawn(move || {
            let probe = TestServer::probe(&addr);
            while !stop.load(Ordering::Relaxed) {
                match probe() {
                    Ok(d) => {
                        served.fetch_add(1, Ordering::Relaxed);
                        let mut w = worst.lock().expect("lock");
                        *w = (*w).max(d);
                    }
                    Err(e) => errors.lock().expect("lock").push(e),
                }
                thread::sleep(Duration::from_millis(50));
            }
        })
    };

    // 20 head tricklers, 10 silent connections, 5 body tricklers, 5 idle keep-alive
    // connections, all at once.
    let mut slow = Vec::new();
    for i in 0..20 {
        let addr = server.addr.clone();
        slow.push(thread::spawn(move || {
            let head = format!(
                "GET /auth?service=registry HTTP/1.1\r\nHost: x\r\nX-Slow-{i}: {}\r\n\r\n",
                "s".repeat(60)
            );
            trickle(
                &addr,
                head.as_bytes(),
                Duration::from_secs(1),
                "head, 1 byte/s",
            )
        }));
    }
    for _ in 0..10 {
        let addr = server.addr.clone();
        slow.push(thread::spawn(move || {
            trickle(&addr, b"", Duration::from_secs(1), "silent")
        }));
    }
    for _ in 0..5 {
        let addr = server.addr.clone();
        slow.push(thread::spawn(move || {
            let mut req = b"POST /auth HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\n".to_vec();
            let head_len = req.len();
            req.extend_from_slice(&[b'a'; 200]);
            trickle_after(
                &addr,
                &req,
                head_len,
                Duration::from_millis(500),
                "body, 2 bytes/s",
            )
        }));
    }
    for _ in 0..5 {
        let addr = server.addr.clone();
        slow.push(thread::spawn(move || idle_after_response(&addr)));
    }
    let results: Vec<SlowResult> = slow
        .into_iter()
        .map(|h| h.join().expect("slow client thread"))
        .collect();
    stop.store(true, Ordering::Relaxed);
    prober.join().expect("prober");
    server.assert_alive();
    let rss_after = server.rss_kib();

    let mut report = String::new();
    let mut problems = Vec::new();
    for r in &results {
        let _ = writeln!(
            report,
            "  {:<16} cut after {:>5.1?} having sent {:>3} bytes: {}",
            r.kind, r.elapsed, r.sent, r.how
        );
        let limit = if r.kind.starts_with("body") {
            request_timeout
        } else {
            header_timeout
        };
        // Cut off after the limit (with slack for a loaded machine), never served.
        if r.elapsed > limit + Duration::from_secs(3) {
            problems.push(format!("{}: only cut after {:?}", r.kind, r.elapsed));
        }
        if !(r.how == "closed" || r.how.starts_with("408")) {
            problems.push(format!("{}: answered {}", r.kind, r.how));
        }
    }
    let worst = *worst.lock().expect("lock");
    let served = served.load(Ordering::Relaxed);
    let errors = errors.lock().expect("lock").clone();
    println!(
        "slow clients ({}):\n{report}good requests meanwhile: {served}, slowest {worst:.1?}, errors {}",
        results.len(),
        errors.len()
    );
    println!(
        "server RSS: {rss_before} KiB before, {rss_after} KiB after ({:+} KiB)",
        rss_after as i64 - rss_before as i64
    );
    assert!(errors.is_empty(), "good requests failed: {errors:?}");
    assert!(served >= 20, "only {served} good requests were served");
    assert!(
        worst < Duration::from_secs(3),
        "a good request took {worst:?} while slow clients were connected"
    );
    assert!(
        problems.is_empty(),
        "{problems:#?}\n{report}\nlog:\n{}",
        tail(&server.log, 20)
    );
    assert!(rss_after < rss_before + 50 * 1024);
}

impl TestServer {
    /// A cloneable good-request closure for other threads.
    fn probe(addr: &str) -> impl Fn() -> Result<Duration, String> + use<> {
        let addr = addr.to_owned();
        move || {
            let start = Instant::now();
            let req = format!(
                "GET {} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                Self::good_path()
            );
            match exchange(&addr, &[Part::Send(req.into_bytes())], IO_TIMEOUT) {
                Outcome::Response { status: 200, .. } => Ok(start.elapsed()),
                other => Err(other.describe()),
            }
        }
    }
}

struct SlowResult {
    kind: &'static str,
    elapsed: Duration,
    sent: usize,
    how: String,
}

/// Sends `bytes` one at a time every `gap` (for silent connections: nothing) until the server
/// answers or closes, for at most 20 s.
fn trickle(addr: &str, bytes: &[u8], gap: Duration, kind: &'static str) -> SlowResult {
    trickle_after(addr, bytes, 0, gap, kind)
}

/// Sends the first `burst` bytes at once, then one byte every `gap`.
fn trickle_after(
    addr: &str,
    bytes: &[u8],
    burst: usize,
    gap: Duration,
    kind: &'static str,
) -> SlowResult {
    let start = Instant::now();
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_nodelay(true).ok();
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .ok();
    let mut sent = 0usize;
    let mut next = Instant::now();
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let how = loop {
        if start.elapsed() > Duration::from_secs(20) {
            break "still open after 20 s".to_owned();
        }
        if Instant::now() >= next && sent < bytes.len() {
            let n = if sent == 0 { burst.max(1) } else { 1 };
            let end = (sent + n).min(bytes.len());
            if stream.write_all(&bytes[sent..end]).is_err() {
                break "closed".to_owned();
            }
            sent = end;
            next = Instant::now() + gap;
        }
        match stream.read(&mut buf) {
            Ok(0) => {
                break if received.is_empty() {
                    "closed".to_owned()
                } else {
                    let text = String::from_utf8_lossy(&received).into_owned();
                    text.split_whitespace().nth(1).unwrap_or("?").to_owned()
                };
            }
            Ok(n) => {
                received.extend_from_slice(&buf[..n]);
                if received.windows(4).any(|w| w == b"\r\n\r\n") {
                    let text = String::from_utf8_lossy(&received).into_owned();
                    break text.split_whitespace().nth(1).unwrap_or("?").to_owned();
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break "closed".to_owned(),
        }
    };
    SlowResult {
        kind,
        elapsed: start.elapsed(),
        sent,
        how,
    }
}

/// A keep-alive connection that gets one good answer and then stays silent: the server must
/// close it (the header timeout covers the wait for the next request). Elapsed counts from the
/// answer.
fn idle_after_response(addr: &str) -> SlowResult {
    let mut stream = TcpStream::connect(addr).expect("connect");
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        TestServer::good_path()
    );
    stream.write_all(req.as_bytes()).expect("send");
    let first = read_response(
        stream.try_clone().expect("clone"),
        IO_TIMEOUT,
        Instant::now(),
        false,
    );
    let start = Instant::now();
    if !matches!(first, Outcome::Response { status: 200, .. }) {
        return SlowResult {
            kind: "keep-alive idle",
            elapsed: start.elapsed(),
            sent: req.len(),
            how: format!("first request got {}", first.describe()),
        };
    }
    stream.set_read_timeout(Some(Duration::from_secs(20))).ok();
    let mut buf = [0u8; 1024];
    let how = match stream.read(&mut buf) {
        Ok(0) | Err(_) if start.elapsed() < Duration::from_secs(19) => "closed".to_owned(),
        Ok(0) | Err(_) => "still open after 20 s".to_owned(),
        Ok(n) => format!("unexpected {n} bytes"),
    };
    SlowResult {
        kind: "keep-alive idle",
        elapsed: start.elapsed(),
        sent: req.len(),
        how,
    }
}
