#!/usr/bin/env bash
# CI step: build (or reuse the cached) kube-apiserver + etcd, then run the e2e tests against them.
# With CI=true a missing toolchain fails the tests instead of skipping them.
# Usage: scripts/ci-envtest.sh [pytest args...]
#   or, before a full test run:  export KUBEBUILDER_ASSETS="$(tests/envtest/build.sh)"
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export CI="${CI:-true}"
started=$SECONDS
KUBEBUILDER_ASSETS="$("$root/tests/envtest/build.sh")"
export KUBEBUILDER_ASSETS
echo "envtest binaries: $KUBEBUILDER_ASSETS (ready in $((SECONDS - started)) s)" >&2
"$root/.venv/bin/arxctl" crds check --dir "$root/crds"
exec "$root/.venv/bin/pytest" "$root/tests/e2e" "$root/tests/k8s" -q "$@"
