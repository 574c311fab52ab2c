#!/usr/bin/env bash
# The project's test command: installs the test dependencies (Debian packages, see
# scripts/install-test-deps.sh), then runs formatting, lint and every test (unit tests and the
# end-to-end tests in tests/it against a real registry, skopeo, podman, docker and dockerd),
# the supply-chain check (cargo deny) and a short fuzzing run (scripts/fuzz, ~10 s per target).
# Exits non-zero as soon as one stage fails. Extra arguments go to `cargo test`
# (e.g. `scripts/test.sh -- --nocapture`).
set -euo pipefail
cd "$(dirname "$0")/.."

stage() { printf '\n==> %s\n' "$*" >&2; }

stage "install test dependencies"
scripts/install-test-deps.sh
# Tools no Debian package provides, cached in one folder (scripts/tools/lib.sh) that the next
# run on this machine reuses. Each script is quick when its tool is already there. On a fresh
# machine they download (Go, helm, PyPI wheels, a debootstrap) and build (registry v3, mdBook):
# they run in the background, each with its own log, while fmt, clippy and cargo deny run, and
# the tests wait for them.
# shellcheck source=scripts/tools/lib.sh
. scripts/tools/lib.sh
tools_log="$(mktemp -d)"
tool_pids=()
for tool in scripts/tools/install-*.sh; do
  [ -e "$tool" ] || continue
  name="$(basename "$tool" .sh)"
  ( t0=$(date +%s); "$tool"; echo "$name: $(( $(date +%s) - t0 )) s" ) >"$tools_log/$name.log" 2>&1 &
  tool_pids+=("$!:$name")
done
wait_tools() {
  local failed=0 entry pid name
  for entry in "${tool_pids[@]}"; do
    pid="${entry%%:*}"; name="${entry#*:}"
    if wait "$pid"; then
      tail -n 1 "$tools_log/$name.log" >&2
    else
      echo "scripts/tools/$name.sh failed:" >&2
      cat "$tools_log/$name.log" >&2
      failed=1
    fi
  done
  [ "$failed" = 0 ] || exit 1
}

stage "cargo fmt --check"
cargo fmt --check

stage "cargo clippy --all-targets -- -D warnings"
cargo clippy --all-targets -- -D warnings

stage "cargo deny check bans licenses sources (deny.toml; advisories: see docs/src/project/reliability/supply-chain.md)"
t0=$(date +%s)
if ! cargo deny --version >/dev/null 2>&1; then
  echo "installing cargo-deny from crates.io (cargo install cargo-deny --locked; ~3 min on 2 cores)" >&2
  cargo install cargo-deny --locked
fi
cargo deny check --hide-inclusion-graph bans licenses sources
echo "cargo deny stage: $(( $(date +%s) - t0 )) s" >&2

stage "test tools (scripts/tools/install-*.sh, started in the background above)"
t0=$(date +%s)
wait_tools
echo "waited $(( $(date +%s) - t0 )) s for the test tools" >&2

stage "cargo test"
cargo test "$@"

stage "fuzz, CI mode: every target in fuzz/ for 10 s (scripts/fuzz)"
t0=$(date +%s)
# Without AddressSanitizer here (FUZZ_SANITIZER=address to change): the crate forbids unsafe
# code and cargo-fuzz does not instrument the C dependencies, so ASan would mostly cost build
# time. scripts/fuzz-long keeps it.
FUZZ_SANITIZER="${FUZZ_SANITIZER:-none}" scripts/fuzz
echo "fuzz stage: $(( $(date +%s) - t0 )) s" >&2

stage "all checks passed"
