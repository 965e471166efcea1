#!/usr/bin/env bash
# Installs and builds what the test suite's real servers need. Idempotent; fast when everything is present.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  local missing=()
  for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "test dependencies: apt-get install ${missing[*]}"
    SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

# redis-server: the LLM router's fleet-wide circuit breaker tests run against a real one.
command -v redis-server >/dev/null 2>&1 || apt_install redis-server
echo "test dependencies: redis-server $(redis-server --version | awk '{print $3}')"

# kube-apiserver + etcd built from Go modules (cached in ~/.cache/arxctl/envtest/<version>/; minutes on the
# first run, instant after): the operator and CRD e2e tests run against a real API server.
started=$SECONDS
assets="$(tests/envtest/build.sh)"
echo "test dependencies: kube-apiserver and etcd in $assets ($((SECONDS - started)) s)"

# The committed CRDs must match the schemas they are generated from.
.venv/bin/arxctl crds check --dir crds
