#!/usr/bin/env bash
# mdBook for tests/it/docs.rs: `mdbook build docs` (the documentation book, docs/book.toml) must
# build without warnings. Built from crates.io with `cargo install --locked` (its own lock file),
# pinned by version, without the `serve`/`watch` features (a static build needs neither; that
# halves the build). Result: $RA_TOOLS/bin/mdbook. A no-op when the pinned version is there.
# First run: ~2.5 min on 2 cores (measured; see docs/src/project/ci-cost.md); cached: instant.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

VERSION=0.5.4

dest="$RA_TOOLS/bin/mdbook"
root="$RA_TOOLS/mdbook"
if [ -x "$dest" ] && [ "$("$dest" --version 2>/dev/null)" = "mdbook v$VERSION" ]; then
  exit 0
fi
command -v cargo >/dev/null || ra_die "cargo is missing (the Rust toolchain builds mdBook)"
ra_log "building mdbook $VERSION from crates.io (cargo install --locked)"
# A target folder of its own inside the cache, so the project's target/ is not touched and an
# interrupted build resumes.
CARGO_TARGET_DIR="$root/target" cargo install mdbook --version "$VERSION" --locked \
  --no-default-features --features search --root "$root" --force
rm -rf "$root/target"
ln -sfn "$root/bin/mdbook" "$dest"
ra_log "$("$dest" --version)"
