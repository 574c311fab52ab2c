//! The subcommands of the binary. `anyhow` is used here and in `main.rs` only.

pub(crate) mod config;
pub(crate) mod health;
pub(crate) mod keys;
pub(crate) mod logins;
pub(crate) mod serve;
pub(crate) mod sql;
pub(crate) mod tokens;
pub(crate) mod trust;
