#!/usr/bin/env bash
# The project's test command: installs the test dependencies (Debian packages, see
# scripts/install-test-deps.sh), then runs formatting, lint and every test (unit tests and the
# end-to-end tests in tests/it against a real registry, skopeo, podman, docker and dockerd).
# Exits non-zero as soon as one stage fails. Extra arguments go to `cargo test`
# (e.g. `scripts/test.sh -- --nocapture`).
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n==> %s\n' "$*" >&2; }

stage "install test dependencies"
scripts/install-test-deps.sh

stage "cargo fmt --check"
cargo fmt --check

stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

stage "cargo test"
cargo test "$@"

stage "all checks passed"
