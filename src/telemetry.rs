//! Logging setup: `tracing` to stderr as text or JSON lines, through the bounded, batching
//! [`sink`] (a dedicated writer thread; lines dropped when stderr does not keep up are counted,
//! and [`flush`] before exit loses nothing on a clean stop). Text fields are written by
//! [`fields`] (the same bytes as `tracing_subscriber`'s default, cheaper).
//!
//! Nothing in this crate logs a password, a token or an `Authorization` header; secrets are
//! wrapped in [`crate::authn::Secret`], whose `Debug` is redacted.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

mod fields;
mod sink;

pub use sink::{QUEUE_BYTES, flush, lines_dropped};

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Installs the global subscriber. `level` is `error`, `warn`, `info`, `debug` or `trace`;
/// `RUST_LOG`, when set, takes precedence (e.g. `RUST_LOG=registry_auth=debug,tower_http=info`).
/// Call [`flush`] before the process exits.
pub fn init(level: &str, format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(sink::MakeSink {
            shared: sink::stderr().cloned(),
        })
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(true);
    // try_init: a second call (tests) keeps the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.fmt_fields(fields::PlainFields).try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
