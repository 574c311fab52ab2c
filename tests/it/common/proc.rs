//! Child processes: guards that kill and reap in `Drop`, commands with a timeout, tool lookup.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Finds `name` on `PATH`, or fails the test with an actionable message. Tests never skip
/// because a client is missing: a green run must mean every client was exercised.
pub fn require_tool(name: &str) -> PathBuf {
    which(name).unwrap_or_else(|| {
        panic!(
            "required tool `{name}` is not installed (not found on PATH); \
             run scripts/install-test-deps.sh (as root) to install the test dependencies"
        )
    })
}

pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Last `n` lines of a (log) file, for failure messages.
pub fn tail(path: &Path, n: usize) -> String {
    tail_filtered(path, n, usize::MAX, |_| true)
}

/// Last `n` lines of a file that pass `keep`, each cut to `width` characters.
pub fn tail_filtered(path: &Path, n: usize, width: usize, keep: impl Fn(&str) -> bool) -> String {
    match std::fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let lines: Vec<&str> = text.lines().filter(|l| keep(l)).collect();
            let start = lines.len().saturating_sub(n);
            let mut out = String::new();
            for l in &lines[start..] {
                if l.chars().count() > width {
                    let cut: String = l.chars().take(width).collect();
                    let _ = writeln!(out, "    | {cut}…");
                } else {
                    let _ = writeln!(out, "    | {l}");
                }
            }
            if out.is_empty() {
                out.push_str("    | (empty)\n");
            }
            out
        }
        Err(e) => format!("    | (cannot read {}: {e})\n", path.display()),
    }
}

/// How a guarded child is stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopMode {
    /// SIGKILL right away (registry, our server: nothing to clean up).
    Kill,
    /// SIGTERM, wait up to the given time, then SIGKILL (dockerd must stop its containerd).
    TermThenKill(Duration),
}

/// Owns a child process; kills and reaps it on drop.
#[derive(Debug)]
pub struct ChildGuard {
    /// What the child is, for `Debug` output.
    _name: String,
    child: Option<Child>,
    stop: StopMode,
}

impl ChildGuard {
    pub fn new(name: impl Into<String>, child: Child, stop: StopMode) -> Self {
        Self {
            _name: name.into(),
            child: Some(child),
            stop,
        }
    }

    /// `Some(status)` once the child has exited.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Waits for the child to exit on its own, up to `timeout`.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(s) = self.try_wait() {
                return Some(s);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILL now, whatever the stop mode (a crash, for fault tests), and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the child (see [`StopMode`]) and reaps it. Idempotent.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        if let StopMode::TermThenKill(grace) = self.stop {
            // By pid: only ever the process this guard started.
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let deadline = Instant::now() + grace;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                thread::sleep(Duration::from_millis(10));
            }
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Result of a finished command.
#[derive(Debug, Clone)]
pub struct CmdOutput {
    pub cmdline: String,
    /// `None` if killed by a signal or by the timeout.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    pub elapsed: Duration,
}

impl CmdOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    /// stdout + stderr.
    pub fn combined(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }

    pub fn describe(&self) -> String {
        let mut s = format!(
            "$ {}\n  exit: {}{} after {:.2?}\n",
            self.cmdline,
            self.code
                .map_or_else(|| "signal".to_owned(), |c| c.to_string()),
            if self.timed_out { " (TIMED OUT)" } else { "" },
            self.elapsed,
        );
        for (label, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
            let t = text.trim_end();
            if !t.is_empty() {
                let _ = writeln!(s, "  {label}:");
                for l in t.lines().take(60) {
                    let _ = writeln!(s, "    | {l}");
                }
            }
        }
        s
    }
}

fn shell_quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@,+%[]".contains(c))
    {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

pub fn cmdline(cmd: &Command) -> String {
    let mut parts = vec![shell_quote(&cmd.get_program().to_string_lossy())];
    parts.extend(cmd.get_args().map(|a| shell_quote(&a.to_string_lossy())));
    parts.join(" ")
}

/// Runs `cmd` to completion (stdin = `input` or /dev/null), capturing output; kills it after
/// `timeout`.
pub fn run(cmd: &mut Command, input: Option<&str>, timeout: Duration) -> CmdOutput {
    let line = cmdline(cmd);
    let start = Instant::now();
    cmd.stdin(if input.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{line}`: {e}"));
    if let Some(data) = input {
        let mut stdin = child.stdin.take().expect("piped stdin");
        let data = data.to_owned();
        thread::spawn(move || {
            let _ = stdin.write_all(data.as_bytes());
        });
    }
    let mut out = child.stdout.take().expect("piped stdout");
    let mut err = child.stderr.take().expect("piped stderr");
    let t_out = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let t_err = thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let deadline = start + timeout;
    let mut timed_out = false;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() >= deadline => {
                timed_out = true;
                let _ = child.kill();
                break child.wait().ok();
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(_) => break None,
        }
    };
    let stdout = String::from_utf8_lossy(&t_out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&t_err.join().unwrap_or_default()).into_owned();
    CmdOutput {
        cmdline: line,
        code: status.and_then(|s| s.code()),
        stdout,
        stderr,
        timed_out,
        elapsed: start.elapsed(),
    }
}

/// A free loopback port (bind :0, read it, release it). Racy by nature: callers retry when the
/// child then fails to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Removes ANSI colour escapes (tracing's default formatter colours field names).
pub fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            chars.next();
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}
