//! `registry-auth acl diff`: the symbolic comparison of two configs' ACLs.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};
use registry_auth::policy::{Offline, diff};

pub(crate) fn acl_diff(configs: &[PathBuf], fail_on_change: bool) -> Result<ExitCode> {
    let [old, new] = configs else {
        bail!("give two configs: --config OLD.yaml --config NEW.yaml");
    };
    let old = match super::load_config(old)? {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let new = match super::load_config(new)? {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let runtime = super::runtime()?;
    let report = runtime.block_on(async {
        let old = Offline::new(old).await?;
        let new = Offline::new(new).await?;
        anyhow::Ok(diff::diff(&old, &new).await?)
    })?;
    io::stdout()
        .lock()
        .write_all(diff::report_text(&report).as_bytes())?;
    Ok(if fail_on_change && report.changed() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
