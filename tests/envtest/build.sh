#!/usr/bin/env bash
# Build kube-apiserver and etcd (plus kubectl) for the e2e harness and print the folder that holds them.
# Usage: export KUBEBUILDER_ASSETS="$(tests/envtest/build.sh)"   (progress on stderr, the folder on stdout)
# Reuses $KUBEBUILDER_ASSETS when it already holds kube-apiserver and etcd; otherwise builds once into
# ${XDG_CACHE_HOME:-~/.cache}/arxctl/envtest/<version>/ and rebuilds only when the pinned go.mod/go.sum change.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

has_binaries() { [[ -x "$1/kube-apiserver" && -x "$1/etcd" ]]; }

if [[ -n "${KUBEBUILDER_ASSETS:-}" ]] && has_binaries "$KUBEBUILDER_ASSETS"; then
  echo "using KUBEBUILDER_ASSETS=$KUBEBUILDER_ASSETS" >&2
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

out="${XDG_CACHE_HOME:-$HOME/.cache}/arxctl/envtest/$KUBERNETES_VERSION"
inputs=("$here/versions.env" "$here/build.sh" "$here/kube-apiserver/go.mod" "$here/kube-apiserver/go.sum"
        "$here/etcd/go.mod" "$here/etcd/go.sum" "$here/etcd/main.go")
stamp="$(cat "${inputs[@]}" | sha256sum | cut -d' ' -f1)"

is_current() { has_binaries "$out" && [[ -x "$out/kubectl" && "$(cat "$out/.stamp" 2>/dev/null)" == "$stamp" ]]; }

if is_current; then
  echo "cached: $out" >&2
  echo "$out"
  exit 0
fi

go_bin="$(command -v go || true)"
if [[ -z "$go_bin" && -x /usr/local/go/bin/go ]]; then
  go_bin=/usr/local/go/bin/go
fi
if [[ -z "$go_bin" ]]; then
  echo "error: Go is not installed and KUBEBUILDER_ASSETS does not hold kube-apiserver and etcd" >&2
  exit 2
fi

mkdir -p "$out"
exec 9>"$out.lock"
if ! flock -w 3600 9; then
  echo "error: another build has held $out.lock for an hour" >&2
  exit 1
fi
if is_current; then
  echo "built by a concurrent run: $out" >&2
  echo "$out"
  exit 0
fi

staging="$(mktemp -d "$out.build.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
export GOFLAGS="-mod=readonly -trimpath" CGO_ENABLED=0

version_ldflags=""
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  minor="${KUBERNETES_VERSION#v1.}"
  version_ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=${minor%%.*}"
  version_ldflags+=" -X $pkg.gitTreeState=clean"
done

started=$SECONDS
echo "building kube-apiserver $KUBERNETES_VERSION with $("$go_bin" env GOVERSION) (minutes on a cold cache)" >&2
(cd "$here/kube-apiserver" && "$go_bin" build -ldflags "-s -w$version_ldflags" -o "$staging/kube-apiserver" \
  k8s.io/kubernetes/cmd/kube-apiserver)
echo "kube-apiserver built in $((SECONDS - started)) s" >&2

etcd_started=$SECONDS
echo "building etcd $(grep -m1 'go.etcd.io/etcd/server/v3 ' "$here/etcd/go.mod" | awk '{print $NF}')" >&2
(cd "$here/etcd" && "$go_bin" build -ldflags "-s -w" -o "$staging/etcd" .)
echo "etcd built in $((SECONDS - etcd_started)) s" >&2

kubectl_on_path="$(command -v kubectl || true)"
if [[ -n "$kubectl_on_path" ]] && cp -L "$kubectl_on_path" "$staging/kubectl" && "$staging/kubectl" version --client >/dev/null 2>&1; then
  echo "copied kubectl from $kubectl_on_path" >&2
else
  kubectl_started=$SECONDS
  echo "no usable kubectl on PATH: building it" >&2
  (cd "$here/kube-apiserver" && "$go_bin" build -ldflags "-s -w$version_ldflags" -o "$staging/kubectl" \
    k8s.io/kubernetes/cmd/kubectl)
  echo "kubectl built in $((SECONDS - kubectl_started)) s" >&2
fi

for binary in kube-apiserver etcd kubectl; do
  mv -f "$staging/$binary" "$out/$binary"
done
echo "$stamp" >"$out/.stamp"
echo "envtest binaries ready in $out ($((SECONDS - started)) s)" >&2
echo "$out"
