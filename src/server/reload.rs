//! Hot reload: on SIGHUP, and when the config file or a file it references changes (polled, so
//! Kubernetes ConfigMap symlink swaps are seen), the configuration is loaded and validated again
//! and swapped in atomically. An invalid configuration is logged in full, counted in the
//! metrics, and the old one keeps serving. The same loop warns daily, from 30 days before, that
//! the signing certificate is about to expire.
//!
//! Change detection compares the files with a digest of exactly the bytes the last attempt read
//! ([`crate::config::sources`]), never with a fingerprint taken after loading, so a file changed
//! while the loader runs is loaded again rather than marked as seen. A configuration is swapped in
//! only when every file it was read from still holds the bytes read when the load ends, and a
//! changed file is loaded only once it has stayed the same for one poll (a writer still busy
//! with it is waited for).

use std::path::Path;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use tracing::{error, info, warn};

use super::metrics::ResultLabels;
use super::state::AppState;
use crate::config::sources::{self, Seen, Source};
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

/// What a reload attempt did.
#[derive(Debug)]
pub struct Attempt {
    /// Whether the new configuration is in force.
    pub applied: bool,
    /// The files the attempt read, with what it read (valid or not): watched until the next
    /// attempt.
    pub read: Vec<Source>,
}

/// Loads `path` and swaps it in, unless it is invalid or a file it was read from changed before
/// the load ended (then nothing is swapped and the change is picked up by the next poll).
pub fn reload(state: &AppState, path: &Path, trigger: Trigger) -> Attempt {
    let metrics = &state.shared().metrics;
    let (result, read) = config::load_recorded(path);
    if result.is_ok() && sources::changed(&read) {
        info!(
            file = %path.display(),
            ?trigger,
            "a file changed while the configuration was loading; nothing was swapped in, the \
             new contents are loaded at the next poll"
        );
        return Attempt {
            applied: false,
            read,
        };
    }
    let result = result.map_err(|e| match e {
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
    let applied = match result {
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
    };
    Attempt { applied, read }
}

/// The files to watch before any reload: those the configuration in force was read from, and
/// the config file itself.
fn initial(state: &AppState, path: &Path) -> Vec<Source> {
    let mut files = state.current().config.sources.clone();
    if !files.iter().any(|s| s.path == path) {
        // Not read through a recorded load (e.g. a configuration built in a test): watch it
        // from now.
        let ((), mut noted) = sources::recording(|| sources::note(path));
        files.append(&mut noted);
    }
    files
}

/// One poll: whether `last` changed and stayed the same since the previous poll (`pending`
/// holds what the previous poll saw), so it is time to load.
fn settled(last: &[Source], pending: &mut Option<Vec<Seen>>) -> bool {
    if !sources::changed(last) {
        *pending = None;
        return false;
    }
    let now = sources::now(last);
    if pending.as_ref() == Some(&now) {
        *pending = None;
        true
    } else {
        *pending = Some(now);
        false
    }
}

/// Runs until the process ends: reloads on SIGHUP and on file changes, and warns about the
/// signing certificate's expiry.
pub async fn watch(state: AppState, path: PathBuf) {
    #[cfg(unix)]
    let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
    let mut tick = tokio::time::interval(POLL_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // What the last attempt read, valid or not: a broken file is reported once, not every
    // tick, and retried when it changes again.
    let mut last = initial(&state, &path);
    let mut pending = None;
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
                last = reload(&state, &path, Trigger::Signal).read;
                pending = None;
            }
            _ = tick.tick() => {
                if settled(&last, &mut pending) {
                    last = reload(&state, &path, Trigger::FileChange).read;
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
            "the signing certificate expires soon; rotate the key (see docs/src/registry/key-rotation.md)"
        );
        *last = Some(Instant::now());
    }
}
