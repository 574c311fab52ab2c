//! Hot reload: on SIGHUP, and when the config file or a file it references changes (polled, so
//! Kubernetes ConfigMap symlink swaps are seen), the configuration is loaded and validated again
//! and swapped in atomically. An invalid configuration is logged in full, counted in the
//! metrics, and the old one keeps serving. The same loop warns daily, from 30 days before, that
//! the signing certificate is about to expire.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use aws_lc_rs::digest;
use tracing::{error, info, warn};

use super::metrics::ResultLabels;
use super::state::AppState;
use crate::config::{self, ConfigError};

/// How often the files are checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);
/// How long before the signing certificate expires the daily warning starts.
pub const EXPIRY_WARNING: Duration = Duration::from_secs(30 * 24 * 3600);
const DAY: Duration = Duration::from_secs(24 * 3600);

/// Why a reload was attempted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// SIGHUP.
    Signal,
    /// A watched file changed.
    FileChange,
}

/// Loads `path` and swaps it in. Returns whether the new configuration is in force.
pub fn reload(state: &AppState, path: &Path, trigger: Trigger) -> bool {
    let metrics = &state.shared().metrics;
    let result = config::load(path).map_err(|e| match e {
        ConfigError::Invalid { issues, .. } => issues
            .into_iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>(),
        other => vec![other.to_string()],
    });
    let result = result.and_then(|c| {
        for w in &c.warnings {
            warn!(path = %w.path, "{}", w.message);
        }
        state.reload(c).map_err(|e| vec![e.to_string()])
    });
    match result {
        Ok(()) => {
            metrics
                .config_reloads
                .get_or_create(&ResultLabels { result: "success" })
                .inc();
            info!(file = %path.display(), ?trigger, "configuration reloaded");
            true
        }
        Err(problems) => {
            metrics
                .config_reloads
                .get_or_create(&ResultLabels { result: "failure" })
                .inc();
            for p in &problems {
                error!(file = %path.display(), "{p}");
            }
            error!(
                file = %path.display(),
                ?trigger,
                problems = problems.len(),
                "the new configuration is invalid; the previous one keeps serving"
            );
            false
        }
    }
}

/// A digest of the files (path and content, or their absence).
pub fn fingerprint(paths: &[PathBuf]) -> Vec<u8> {
    let mut ctx = digest::Context::new(&digest::SHA256);
    for p in paths {
        ctx.update(p.as_os_str().as_encoded_bytes());
        match std::fs::read(p) {
            Ok(bytes) => {
                ctx.update(b"\x01");
                ctx.update(&(bytes.len() as u64).to_be_bytes());
                ctx.update(&bytes);
            }
            Err(_) => ctx.update(b"\x00"),
        }
    }
    ctx.finish().as_ref().to_vec()
}

fn watched(state: &AppState, path: &Path) -> Vec<PathBuf> {
    let mut files = vec![path.to_path_buf()];
    files.extend(state.current().config.sources.iter().cloned());
    files.sort();
    files.dedup();
    files
}

/// Runs until the process ends: reloads on SIGHUP and on file changes, and warns about the
/// signing certificate's expiry.
pub async fn watch(state: AppState, path: PathBuf) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = fingerprint(&watched(&state, &path));
    let mut last_expiry_warning: Option<Instant> = None;
    loop {
        #[cfg(unix)]
        let hangup = async {
            match hup.as_mut() {
                Some(s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let hangup = std::future::pending::<()>();
        tokio::select! {
            () = hangup => {
                reload(&state, &path, Trigger::Signal);
                last = fingerprint(&watched(&state, &path));
            }
            _ = tick.tick() => {
                let now = fingerprint(&watched(&state, &path));
                if now != last {
                    reload(&state, &path, Trigger::FileChange);
                    // Remember what was seen, valid or not: a broken file is reported once,
                    // not every tick, and retried when it changes again.
                    last = fingerprint(&watched(&state, &path));
                }
            }
        }
        warn_expiry(&state, &mut last_expiry_warning);
    }
}

fn warn_expiry(state: &AppState, last: &mut Option<Instant>) {
    if last.is_some_and(|t| t.elapsed() < DAY) {
        return;
    }
    let inner = state.current();
    let not_after = inner.issuer.key().not_after();
    let left = not_after
        .duration_since(SystemTime::now())
        .unwrap_or(Duration::ZERO);
    if left < EXPIRY_WARNING {
        warn!(
            certificate = %inner.config.token.certificate.display(),
            days_left = left.as_secs() / 86_400,
            "the signing certificate expires soon; rotate the key (see the README's Key rotation)"
        );
        *last = Some(Instant::now());
    }
}
