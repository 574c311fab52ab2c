//! Linters of what we ship, from `scripts/tools/install-py-tools.sh` (pinned PyPI wheels that
//! carry the programs; all run offline): hadolint on the Dockerfile, actionlint and zizmor on
//! the GitHub workflows. Each must report nothing; zizmor nothing of medium severity or higher
//! (its low/informational notes are advice, e.g. a spelling of a local reusable workflow).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::{proc, tools};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn run(name: &str, args: &[&str]) -> proc::CmdOutput {
    let mut cmd = Command::new(tools::bin(name, "install-py-tools.sh"));
    cmd.args(args).current_dir(root()).env("NO_COLOR", "1");
    proc::run(&mut cmd, None, Duration::from_secs(120))
}

#[test]
fn hadolint_finds_nothing_in_the_dockerfile() {
    // Every rule, down to style; exit status non-zero on any finding.
    let out = run(
        "hadolint",
        &["--no-color", "--failure-threshold", "style", "Dockerfile"],
    );
    assert!(
        out.success() && out.stdout.trim().is_empty(),
        "hadolint reports findings in the Dockerfile:\n{}",
        out.describe()
    );
}

#[test]
fn actionlint_finds_nothing_in_the_workflows() {
    let out = run("actionlint", &["-no-color"]);
    assert!(
        out.success() && out.stdout.trim().is_empty(),
        "actionlint reports findings in .github/workflows:\n{}",
        out.describe()
    );
}

#[test]
fn zizmor_finds_nothing_of_medium_severity_or_higher_in_the_workflows() {
    let out = run(
        "zizmor",
        &[
            "--offline",
            "--no-progress",
            "--min-severity",
            "medium",
            "--format",
            "plain",
            ".github/workflows/",
        ],
    );
    assert!(
        out.success() && out.stdout.contains("No findings to report"),
        "zizmor reports findings in .github/workflows:\n{}",
        out.describe()
    );
}
