//! The subcommands of the binary. `anyhow` is used here and in `main.rs` only.

pub(crate) mod acl_diff;
pub(crate) mod acl_replay;
pub(crate) mod acl_test;
pub(crate) mod config;
pub(crate) mod doctor;
pub(crate) mod health;
pub(crate) mod keys;
pub(crate) mod logins;
pub(crate) mod serve;
pub(crate) mod sql;
pub(crate) mod tokens;
pub(crate) mod trust;

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context as _, Result};

/// Loads a config for a command that reads it: its problems go to stderr and become the exit
/// code (`Err(code)`).
pub(crate) fn load_config(path: &Path) -> Result<Result<registry_auth::config::Config, ExitCode>> {
    match registry_auth::config::load(path) {
        Ok(c) => Ok(Ok(c)),
        Err(e) => {
            writeln!(std::io::stderr(), "{e}")?;
            Ok(Err(ExitCode::FAILURE))
        }
    }
}

/// A single-threaded runtime for a command's async work (database, store, HTTP probe).
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("while starting the async runtime")
}
