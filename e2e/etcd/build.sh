#!/usr/bin/env bash
# Builds the etcd of the local control plane from etcd's published Go module
# (go.etcd.io/etcd/server/v3, the version in go.mod; main.go calls its own entry point), once
# per go.mod, go.sum, main.go and this script, with the Go build cache the Kubernetes build
# fills, and prints the binary's path. Debian's etcd (3.4) is older than this API server wants:
# it lacks RequestWatchProgress, so the API server refuses streamed lists (WatchList).
#
#   e2e/etcd/build.sh   build if needed, then print the binary's path
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../gobuild.sh
source "$here/../gobuild.sh"
module=go.etcd.io/etcd/server/v3
version=$(go_mod_version "$module" "$here/go.mod")
[[ -n "$version" ]] || { echo "build.sh: no $module version in $here/go.mod" >&2; exit 1; }
out=$(go_cache_dir etcd "$version" "$here/go.mod" "$here/go.sum" "$here/main.go" "$here/build.sh")
go_cached_or_lock "$out" "$out/etcd" test -x "$out/etcd"

cd "$here"
echo "build.sh: building etcd $version from Go modules into $out" >&2
echo "build.sh: the first build takes about a minute on 2 cores with the Kubernetes build's cache; later runs reuse it" >&2
go mod download "$module" >&2
mkdir -p "$out"
tmp="$out/etcd.tmp.$$"
start=$SECONDS
status=0
go_build_progress "-s -w" "$tmp" . || status=$?
if ((status != 0)); then
  rm -f "$tmp"
  echo "build.sh: go build failed (exit $status)" >&2
  exit "$status"
fi
mv "$tmp" "$out/etcd"
echo "build.sh: built in $((SECONDS - start)) s" >&2
echo "$out/etcd"
