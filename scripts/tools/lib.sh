# Sourced by the scripts in scripts/tools/ that download or build the test tools the Debian
# packages do not provide (registry v3 and its Go, helm, PyPI linters, base images, mdBook).
#
# Everything they fetch or build goes into ONE cache folder, so a second run of the test command
# on the same machine (a fresh clone included) skips the work:
#   $RA_TEST_TOOLS, default ${XDG_CACHE_HOME:-$HOME/.cache}/registry-auth-tools
# Layout: $RA_TOOLS/bin/<program> for what the tests call, $RA_TOOLS/<name>/ for the rest.
# The tests find the programs through the same variable (tests/it/common/tools.rs) and fail
# loudly, naming the script to run, when one is missing.
# (Not REGISTRY_AUTH_*: the server refuses unknown REGISTRY_AUTH_* variables, and the tests start
# it from this environment.)
RA_TOOLS="${RA_TEST_TOOLS:-${XDG_CACHE_HOME:-$HOME/.cache}/registry-auth-tools}"
export RA_TEST_TOOLS="$RA_TOOLS"
mkdir -p "$RA_TOOLS/bin"

ra_log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }
ra_die() { ra_log "$*"; exit 1; }
