//! `registry-auth acl test`: runs a file of ACL test cases against a config.

use std::io::{self, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use registry_auth::cli::ReportFormat;
use registry_auth::policy::{Offline, cases};

pub(crate) fn acl_test(config: &Path, tests: &Path, format: ReportFormat) -> Result<ExitCode> {
    let config = match super::load_config(config)? {
        Ok(c) => Arc::new(c),
        Err(code) => return Ok(code),
    };
    let text = std::fs::read_to_string(tests)
        .with_context(|| format!("cannot read the test file {}", tests.display()))?;
    let file = match cases::parse(&text) {
        Ok(f) => f,
        Err(e) => {
            writeln!(io::stderr(), "{}: {e}", tests.display())?;
            return Ok(ExitCode::FAILURE);
        }
    };
    let unconfigured = cases::unconfigured_sources(&file, &config.namespaces.configured());
    if !unconfigured.is_empty() {
        let mut err = io::stderr().lock();
        for problem in &unconfigured {
            writeln!(err, "{}: {problem}", tests.display())?;
        }
        return Ok(ExitCode::FAILURE);
    }
    let runtime = super::runtime()?;
    let results = runtime.block_on(async {
        let offline = Offline::new(config).await?;
        anyhow::Ok(cases::run(&offline, &file).await)
    })?;
    let report = match format {
        ReportFormat::Text => cases::report_text(&results),
        ReportFormat::Junit => cases::report_junit(&tests.display().to_string(), &results),
    };
    io::stdout().lock().write_all(report.as_bytes())?;
    let (_, failed, invalid, _) = cases::counts(&results);
    Ok(if failed + invalid > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
