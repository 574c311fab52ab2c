//! Running external programs (`ext_auth`, `ext_authz`) the way docker_auth defines them, but
//! safely: no shell (the command and its arguments are passed as they are), a timeout after which
//! the child is killed, a bound on how many run at once (docker_auth forks one per request and
//! falls over under load: its issues #253, #422), and bounded output.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::Semaphore;

/// Most bytes read from a program's stdout.
const MAX_OUTPUT: u64 = 1024 * 1024;

/// Why a program could not give an answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExtError {
    /// It could not be started.
    #[error("cannot start {command}: {detail}")]
    Spawn {
        /// The command.
        command: String,
        /// The OS error.
        detail: String,
    },
    /// It did not finish in time and was killed.
    #[error("{command} did not answer within {timeout:?} and was killed")]
    Timeout {
        /// The command.
        command: String,
        /// The limit.
        timeout: Duration,
    },
    /// Talking to it failed.
    #[error("{command}: {detail}")]
    Io {
        /// The command.
        command: String,
        /// What failed.
        detail: String,
    },
    /// It was killed by a signal.
    #[error("{command} was killed by a signal")]
    Killed {
        /// The command.
        command: String,
    },
}

/// What a program answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtAnswer {
    /// Exit code.
    pub code: i32,
    /// Standard output (at most 1 MiB).
    pub stdout: Vec<u8>,
}

/// A configured program.
#[derive(Debug)]
pub struct ExtProgram {
    command: PathBuf,
    args: Vec<String>,
    timeout: Duration,
    slots: Semaphore,
    running: AtomicUsize,
    peak: AtomicUsize,
}

impl ExtProgram {
    /// A program run with `args`, killed after `timeout`, at most `max_concurrent` at once.
    pub fn new(
        command: PathBuf,
        args: Vec<String>,
        timeout: Duration,
        max_concurrent: usize,
    ) -> Arc<Self> {
        Arc::new(Self {
            command,
            args,
            timeout,
            slots: Semaphore::new(max_concurrent.max(1)),
            running: AtomicUsize::new(0),
            peak: AtomicUsize::new(0),
        })
    }

    /// The most instances that ever ran at once (a test hook and a metric).
    pub fn peak_concurrency(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    fn name(&self) -> String {
        self.command.display().to_string()
    }

    /// Runs the program with `input` on stdin (then closed), waiting for a free slot first.
    pub async fn run(&self, input: &[u8]) -> Result<ExtAnswer, ExtError> {
        let _slot = self.slots.acquire().await.map_err(|_| ExtError::Io {
            command: self.name(),
            detail: "the program's slots are closed".to_owned(),
        })?;
        let now = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        self.peak.fetch_max(now, Ordering::Relaxed);
        let result = tokio::time::timeout(self.timeout, self.run_child(input)).await;
        self.running.fetch_sub(1, Ordering::Relaxed);
        result.unwrap_or_else(|_| {
            Err(ExtError::Timeout {
                command: self.name(),
                timeout: self.timeout,
            })
        })
    }

    async fn run_child(&self, input: &[u8]) -> Result<ExtAnswer, ExtError> {
        let io = |e: std::io::Error| ExtError::Io {
            command: self.name(),
            detail: e.to_string(),
        };
        let mut child = Command::new(&self.command)
            .args(&self.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            // Dropped on timeout: the child is killed, not left behind.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| ExtError::Spawn {
                command: self.name(),
                detail: e.to_string(),
            })?;
        if let Some(mut stdin) = child.stdin.take() {
            // A program that does not read its input may close stdin early: not an error.
            let _ = stdin.write_all(input).await;
            drop(stdin);
        }
        let mut stdout = Vec::new();
        if let Some(out) = child.stdout.take() {
            out.take(MAX_OUTPUT)
                .read_to_end(&mut stdout)
                .await
                .map_err(io)?;
        }
        let status = child.wait().await.map_err(io)?;
        let code = status.code().ok_or_else(|| ExtError::Killed {
            command: self.name(),
        })?;
        Ok(ExtAnswer { code, stdout })
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;

    use super::*;

    /// Writes an executable `sh` script (the program itself may be a script; we never run it
    /// through a shell ourselves).
    pub(crate) fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[tokio::test]
    async fn passes_stdin_returns_exit_code_and_stdout() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "echo", "cat; exit 3");
        let prog = ExtProgram::new(p, vec![], Duration::from_secs(5), 2);
        let answer = prog.run(b"alice s3cret").await.unwrap();
        assert_eq!(answer.code, 3);
        assert_eq!(answer.stdout, b"alice s3cret");
    }

    #[tokio::test]
    async fn arguments_are_not_interpreted_by_a_shell() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "args", "printf '%s|' \"$@\"");
        let prog = ExtProgram::new(
            p,
            vec!["a b".into(), "$(id)".into(), ";ls".into()],
            Duration::from_secs(5),
            1,
        );
        let answer = prog.run(b"").await.unwrap();
        assert_eq!(String::from_utf8_lossy(&answer.stdout), "a b|$(id)|;ls|");
    }

    #[tokio::test]
    async fn a_slow_program_is_killed_at_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "slow", "sleep 30");
        let prog = ExtProgram::new(p, vec![], Duration::from_millis(300), 1);
        let started = std::time::Instant::now();
        assert!(matches!(prog.run(b"").await, Err(ExtError::Timeout { .. })));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn missing_program_is_a_spawn_error() {
        let prog = ExtProgram::new("/nonexistent/x".into(), vec![], Duration::from_secs(1), 1);
        assert!(matches!(prog.run(b"").await, Err(ExtError::Spawn { .. })));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrency_never_exceeds_the_bound() {
        let dir = tempfile::tempdir().unwrap();
        let p = script(dir.path(), "nap", "sleep 0.1");
        let prog = ExtProgram::new(p, vec![], Duration::from_secs(10), 3);
        let runs: Vec<_> = (0..24)
            .map(|_| {
                let prog = prog.clone();
                tokio::spawn(async move { prog.run(b"").await })
            })
            .collect();
        for r in runs {
            assert_eq!(r.await.unwrap().unwrap().code, 0);
        }
        let peak = prog.peak_concurrency();
        assert!(peak <= 3, "peak {peak} exceeds the bound");
        assert!(peak >= 2, "peak {peak}: the runs did not overlap at all");
    }
}
