//! The test tools that no Debian package provides (registry v3, helm, linters, …): fetched or
//! built by `scripts/tools/*.sh` into one cache folder that the test command reuses.
//! Same rule as `scripts/tools/lib.sh`: `$RA_TEST_TOOLS`, default
//! `${XDG_CACHE_HOME:-$HOME/.cache}/registry-auth-tools`, programs under `bin/`.

// Used by the tests that need these tools; until one does, nothing calls them.
#![allow(dead_code)]

use std::path::PathBuf;

/// The cache folder of the test tools.
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("RA_TEST_TOOLS").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME is set")).join(".cache")
        });
    cache.join("registry-auth-tools")
}

/// The path of a cached program; panics (the test fails loudly) naming the script that
/// installs it when it is not there.
pub fn bin(name: &str, script: &str) -> PathBuf {
    let p = dir().join("bin").join(name);
    assert!(
        p.is_file(),
        "{} is missing: run scripts/tools/{script} (scripts/test.sh runs it first)",
        p.display()
    );
    p
}
