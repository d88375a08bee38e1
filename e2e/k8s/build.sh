#!/usr/bin/env bash
# Builds the pinned Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl) from the published Go modules, once per version. (etcd comes from
# Debian's etcd-server package, which this API server accepts; see scripts/deps.sh.)
#
#   e2e/k8s/build.sh              build if needed, then print the directory of the binaries
#   e2e/k8s/build.sh --print-dir  print the directory only (no build)
#
# The cache lives outside the work tree: $SLUICE_CACHE_DIR, else $XDG_CACHE_HOME/sluice,
# else ~/.cache/sluice. Its key is the Kubernetes version plus a hash of go.mod, go.sum and
# this script, so a change to any of them builds afresh and nothing else does.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../gobuild.sh
source "$here/../gobuild.sh"
version=$(awk '{ for (i = 1; i < NF; i++) if ($i == "k8s.io/kubernetes" && $(i + 1) ~ /^v1\./) { print $(i + 1); exit } }' "$here/go.mod")
[[ -n "$version" ]] || { echo "build.sh: no k8s.io/kubernetes version in $here/go.mod" >&2; exit 1; }
key=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)
cache_root=${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}
out="$cache_root/k8s/$version-$key"
bins=(kube-apiserver kube-controller-manager kube-scheduler kubectl)

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$out"
  exit 0
fi

have_all() {
  local b
  for b in "${bins[@]}"; do [[ -x "$out/$b" ]] || return 1; done
}

if have_all; then
  echo "$out"
  exit 0
fi

command -v go >/dev/null || { echo "build.sh: Go is needed to build Kubernetes $version" >&2; exit 1; }
mkdir -p "$cache_root/k8s"
# One builder at a time: a second test run waits for the first build instead of racing it.
exec 9>"$cache_root/k8s/.build.lock"
flock 9
if have_all; then
  echo "$out"
  exit 0
fi

pkgs=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager
  k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl)
cd "$here"
echo "build.sh: building Kubernetes $version from Go modules into $out" >&2
echo "build.sh: the first build takes a while on a small machine (10-14 minutes measured on 2 cores); later runs reuse it" >&2
go mod download >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp"
start=$SECONDS
status=0
# The version every binary reports (`kubectl version`, the API server's /version), as
# Kubernetes' own build sets it (hack/lib/version.sh); without it they say v0.0.0-master and
# tools that check the server's version (helm's kubeVersion) refuse the cluster.
minor=$(echo "$version" | cut -d. -f2)
ldflags="-s -w"
for pkg in k8s.io/client-go/pkg/version k8s.io/component-base/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
go_build_progress "$ldflags" "$tmp/" "${pkgs[@]}" || status=$?
if ((status != 0)); then
  rm -rf "$tmp"
  echo "build.sh: go build failed (exit $status)" >&2
  exit "$status"
fi
for b in "${bins[@]}"; do
  [[ -x "$tmp/$b" ]] || { echo "build.sh: $b missing after the build" >&2; exit 1; }
done
rm -rf "$out"
mv "$tmp" "$out"
echo "build.sh: built in $((SECONDS - start)) s" >&2
echo "$out"
