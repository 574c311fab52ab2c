#!/usr/bin/env bash
# Builds the upstream registry v3 (CNCF distribution v3.1.1, the `registry:3` image's program)
# into $RA_TOOLS/bin/registry-v3 for the end-to-end tests that run against both registries.
#
# No package registry reachable here serves it, so it is built offline from the trimmed source
# kept next to the repository (../shared/vendor/distribution-3.1.1-trimmed.tar.gz, vendor/
# included; see its README), or from REGISTRY_V3_SOURCE=/path/to/that/tarball. The sha256 of
# the tarball is checked. Its go.mod needs Go >= 1.25, which Debian bookworm lacks: Debian sid's
# golang-1.2x-go and -src packages are downloaded with a private apt state (authenticated by
# the Debian archive keyring) and unpacked, not installed, into $RA_TOOLS/go-<version>/.
#
# A no-op when $RA_TOOLS/bin/registry-v3 is there and prints v3.1.1; about 1.5-2 minutes on
# 2 cores otherwise. Fails loudly (non-zero, with the reason) when it cannot build. Safe to run
# concurrently: a lock serialises builds, and the binary is replaced atomically.
set -euo pipefail
# shellcheck source=scripts/tools/lib.sh
. "$(dirname "$0")/lib.sh"

VERSION=3.1.1
SHA256=8c048b1a689b921422c99673fa4529a4010fa99d42d8ecdaf6ce41b8cb19517e
# The Go release the source was checked with first; else the newest sid offers (>= 1.25).
GO_PREFERRED=1.26
GO_MIN_MINOR=25
BIN="$RA_TOOLS/bin/registry-v3"

have_right_version() {
  [ -x "$BIN" ] && "$BIN" --version 2>/dev/null | grep -q "v$VERSION\b"
}

if have_right_version; then
  exit 0
fi

repo="$(cd "$(dirname "$0")/../.." && pwd)"
SRC="${REGISTRY_V3_SOURCE:-$repo/../shared/vendor/distribution-$VERSION-trimmed.tar.gz}"
[ -f "$SRC" ] || ra_die "the registry v3 source $SRC is missing (set REGISTRY_V3_SOURCE=/path/to/distribution-$VERSION-trimmed.tar.gz)"
echo "$SHA256  $SRC" | sha256sum -c --status - \
  || ra_die "$SRC: sha256 is $(sha256sum "$SRC" | cut -d' ' -f1), expected $SHA256 (not the distribution v$VERSION tarball)"

command -v flock >/dev/null || ra_die "flock (util-linux) is missing"
exec 9>"$RA_TOOLS/.registry-v3.lock"
flock 9
# Another run may have built it while this one waited.
if have_right_version; then
  exit 0
fi

work="$(mktemp -d "$RA_TOOLS/.registry-v3-build.XXXXXX")"
trap 'rm -rf "$work"' EXIT

# A cached Go >= 1.25: $RA_TOOLS/go-<version>/goroot.
goroot=""
for g in $(ls -d "$RA_TOOLS"/go-*/goroot 2>/dev/null | sort -V -r); do
  if "$g/bin/go" version >/dev/null 2>&1; then
    goroot="$g"
    break
  fi
done

if [ -z "$goroot" ]; then
  command -v apt-get >/dev/null && command -v dpkg >/dev/null \
    || ra_die "apt-get and dpkg are needed to fetch Go from Debian sid"
  keyring=/usr/share/keyrings/debian-archive-keyring.gpg
  [ -f "$keyring" ] || ra_die "$keyring is missing (Debian package debian-archive-keyring)"
  mkdir -p "$work/apt/lists/partial" "$work/debs"
  echo "deb [signed-by=$keyring] http://deb.debian.org/debian sid main" > "$work/apt/sources.list"
  A=(-o "Dir::Etc::sourcelist=$work/apt/sources.list" -o Dir::Etc::sourceparts=-
    -o "Dir::State::Lists=$work/apt/lists" -o "Dir::Cache=$work/apt/cache" -o Debug::NoLocking=1
    -o APT::Sandbox::User=root)
  mkdir -p "$work/apt/cache/archives/partial"
  ra_log "fetching the Debian sid package index (for Go >= 1.$GO_MIN_MINOR)"
  apt-get "${A[@]}" -qq update || ra_die "apt-get update of Debian sid failed"
  avail="$(apt-cache "${A[@]}" pkgnames golang-1. | sed -n 's/^golang-1\.\([0-9]*\)-go$/\1/p' | sort -n)"
  minor=""
  if echo "$avail" | grep -qx "${GO_PREFERRED#1.}"; then
    minor="${GO_PREFERRED#1.}"
  else
    for m in $avail; do [ "$m" -ge "$GO_MIN_MINOR" ] && minor="$m"; done
  fi
  [ -n "$minor" ] || ra_die "Debian sid offers no golang-1.x-go >= 1.$GO_MIN_MINOR (found: $(echo $avail))"
  ra_log "downloading golang-1.$minor-go and golang-1.$minor-src from Debian sid"
  (cd "$work/debs" && apt-get "${A[@]}" -qq download "golang-1.$minor-go" "golang-1.$minor-src") \
    || ra_die "apt-get download golang-1.$minor-go golang-1.$minor-src failed"
  for d in "$work"/debs/*.deb; do dpkg -x "$d" "$work/go"; done
  # Move the unpacked tree as a whole (the Debian GOROOT has relative symlinks into usr/share).
  gover="$(dpkg-deb -f "$work"/debs/golang-1.$minor-go_*.deb Version)"
  gover="${gover%%-*}"
  dest="$RA_TOOLS/go-$gover"
  rm -rf "$dest"
  ln -s "usr/lib/go-1.$minor" "$work/go/goroot"
  mv "$work/go" "$dest"
  goroot="$dest/goroot"
  "$goroot/bin/go" version >/dev/null || ra_die "the unpacked Go in $dest does not run"
fi

export GOROOT="$goroot" PATH="$goroot/bin:$PATH"
export GOPROXY=off GOFLAGS=-mod=vendor GOTOOLCHAIN=local CGO_ENABLED=0 GOTELEMETRY=off
export GOCACHE="$work/gocache" GOPATH="$work/gopath" GOENV=off
ra_log "building registry v$VERSION with $(go version | cut -d' ' -f3) (about 1.5-2 min on 2 cores)"
tar xzf "$SRC" -C "$work"
srcdir="$work/distribution-$VERSION"
[ -d "$srcdir" ] || ra_die "$SRC does not unpack to distribution-$VERSION/"
(cd "$srcdir" && go build -trimpath -o "$work/registry" ./cmd/registry) \
  || ra_die "go build of registry v$VERSION failed"
"$work/registry" --version | grep -q "v$VERSION\b" \
  || ra_die "the built registry prints '$("$work/registry" --version 2>&1)', not v$VERSION"
install -m 0755 "$work/registry" "$BIN.tmp.$$"
mv -f "$BIN.tmp.$$" "$BIN"
have_right_version || ra_die "$BIN does not print v$VERSION after installing"
ra_log "installed $BIN ($("$BIN" --version))"
