#!/usr/bin/env bash
# Builds helm (helm.sh/helm/v3/cmd/helm) from its published Go module, once per version, for the
# tests of charts/sluice (helm lint, helm template, helm install on the local control plane).
#
#   e2e/helm/build.sh              build if needed, then print the binary's path
#   e2e/helm/build.sh --print-dir  print the directory only (no build)
#
# The cache lives outside the work tree: $SLUICE_CACHE_DIR, else $XDG_CACHE_HOME/sluice,
# else ~/.cache/sluice. Its key is helm's version plus a hash of go.mod, go.sum and this script.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../gobuild.sh
source "$here/../gobuild.sh"
module=helm.sh/helm/v3
version=$(awk -v m="$module" '$1 != "//" { for (i = 1; i < NF; i++) if ($i == m && $(i + 1) ~ /^v[0-9]/) { print $(i + 1); exit } }' "$here/go.mod")
[[ -n "$version" ]] || { echo "build.sh: no $module version in $here/go.mod" >&2; exit 1; }
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)
cache_root=${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}
out="$cache_root/helm/$version-$key"

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$out"
  exit 0
fi
if [[ -x "$out/helm" ]]; then
  echo "$out/helm"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build helm $version" >&2; exit 1; }
mkdir -p "$cache_root/helm"
# One builder at a time: a second test run waits for the first build instead of racing it.
exec 9>"$cache_root/helm/.build.lock"
flock 9
if [[ -x "$out/helm" ]]; then
  echo "$out/helm"
  exit 0
fi

cd "$here"
echo "build.sh: building helm $version from Go modules into $out" >&2
echo "build.sh: the first build takes a while on a small machine (about 1.5 minutes measured on 2 cores, with the Kubernetes build's cache); later runs reuse it" >&2
go mod download "$module" >&2
mkdir -p "$out"
tmp="$out/helm.tmp.$$"
start=$SECONDS
status=0
# As helm's Makefile does: the Kubernetes version `helm template` and `helm lint` assume when no
# cluster is asked is the one of the client-go helm is built with.
k8s=$(go list -m -f '{{.Version}}' k8s.io/client-go)
k8s_minor=$(echo "$k8s" | cut -d. -f2)
ldflags="-s -w -X $module/internal/version.version=$version"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags+=" -X $module/$pkg.k8sVersionMajor=1 -X $module/$pkg.k8sVersionMinor=$k8s_minor"
done
go_build_progress "$ldflags" "$tmp" "$module/cmd/helm" || status=$?
if ((status != 0)); then
  rm -f "$tmp"
  echo "build.sh: go build failed (exit $status)" >&2
  exit "$status"
fi
mv "$tmp" "$out/helm"
echo "build.sh: built in $((SECONDS - start)) s" >&2
echo "$out/helm"
