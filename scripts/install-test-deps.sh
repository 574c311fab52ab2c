#!/usr/bin/env bash
# Installs the external programs the integration tests drive (Debian bookworm, as root):
#   docker-registry (CNCF distribution 2.8.2), skopeo, podman, docker.io (dockerd + CLI), curl,
#   ca-certificates, uidmap, wrk (the load test, tests/it/soak.rs), yamllint and
#   python3-jsonschema (tests/it/packaging.rs: the Helm chart's YAML and values.schema.json),
#   slapd and ldap-utils (tests/it/ldap.rs starts its own OpenLDAP on a loopback port),
#   postgresql (tests/it/sql.rs initdb's and starts its own cluster in a temp dir, as `postgres`),
#   redis-server with its redis-cli (tests/it/weblogin_stores.rs; tests/it/redis_ha.rs runs
#   sentinels as `redis-server --sentinel` and makes a cluster with `redis-cli --cluster
#   create`), chromium and fonts-dejavu-core (the headless
#   browser test, tests/it/weblogin_browser.rs), and node + npm when missing; then the node
#   tools of tests/js (oidc-provider, puppeteer-core, axe-core) with `npm ci`; unzip and
#   python3-venv for scripts/tools/install-helm.sh and install-py-tools.sh (helm from npm, the
#   PyPI linters in a venv); prometheus (promtool and a real Prometheus, tests/it/monitoring.rs);
#   nginx (the ingress of tests/it/ingress.rs and the proxy of tests/it/replicas.rs, run as the
#   tests' own processes) and debootstrap (the local base images of the container build,
#   scripts/tools/install-base-images.sh), binutils (`strip`, for the binary tests/it/image.rs
#   puts into the image), util-linux and mount (`unshare --mount` and `mount --bind`: the
#   dockerd of tests/it/ingress.rs gets an /etc/hosts of its own).
# Idempotent and quick when everything is present (no apt-get at all then).
# apt is kept from starting the packages' services (the registry would listen on :5000 on all
# interfaces, docker.io would start a system dockerd) with a temporary /usr/sbin/policy-rc.d.
set -euo pipefail

PKGS=(docker-registry skopeo podman docker.io curl ca-certificates uidmap wrk yamllint
  python3-jsonschema slapd ldap-utils postgresql redis-server chromium fonts-dejavu-core
  unzip python3-venv prometheus nginx debootstrap binutils util-linux mount)
# Node 18 or later (Debian's, or one already installed, e.g. from NodeSource).
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  PKGS+=(nodejs npm)
fi

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "install-test-deps.sh: need root to install: ${missing[*]}" >&2
    exit 1
  fi
  echo "install-test-deps.sh: installing ${missing[*]}" >&2
  created=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\n# temporary, from scripts/install-test-deps.sh: do not start services\nexit 101\n' \
      > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created=1
  fi
  cleanup() { if [ "$created" = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; }
  trap cleanup EXIT
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Every program the tests call must now be on PATH.
for bin in docker-registry skopeo podman dockerd docker curl wrk yamllint slapd slapadd ldapadd \
  redis-server redis-cli chromium node npm unzip prometheus promtool nginx debootstrap strip \
  unshare mount; do
  if ! command -v "$bin" >/dev/null 2>&1; then
    echo "install-test-deps.sh: $bin is still missing after installing ${PKGS[*]}" >&2
    exit 1
  fi
done
# PostgreSQL's server programs are not on PATH in Debian: tests/it/sql.rs looks here.
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  echo "install-test-deps.sh: /usr/lib/postgresql/*/bin/initdb is missing after installing postgresql" >&2
  exit 1
fi
if ! /usr/bin/python3 -c 'import jsonschema, yaml' 2>/dev/null; then
  echo "install-test-deps.sh: /usr/bin/python3 cannot import jsonschema and yaml (python3-jsonschema)" >&2
  exit 1
fi
# The node tools of the web-login tests, pinned by tests/js/package-lock.json.
node_major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$node_major" -lt 18 ]; then
  echo "install-test-deps.sh: node $(node --version) is too old; the tests need node 18 or later" >&2
  exit 1
fi
js_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/js"
if [ ! -f "$js_dir/node_modules/.package-lock.json" ] ||
  [ "$js_dir/package-lock.json" -nt "$js_dir/node_modules/.package-lock.json" ]; then
  echo "install-test-deps.sh: npm ci in tests/js (oidc-provider, puppeteer-core, axe-core)" >&2
  (cd "$js_dir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
echo "install-test-deps.sh: ok ($(skopeo --version), $(podman --version), $(docker --version | cut -d, -f1), dockerd $(dockerd --version | awk '{print $3}' | tr -d ,))" >&2
