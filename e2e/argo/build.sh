#!/usr/bin/env bash
# Builds Argo Rollouts' controller (github.com/argoproj/argo-rollouts/cmd/rollouts-controller)
# from its published Go module, once per version, for the benchmark that runs it side by side
# with Sluice. Next to the binary it puts what the harness installs without network, taken from
# the same module: Argo's CRDs (crds/*.yaml) and its controller's ClusterRole
# (argo-rollouts-clusterrole.yaml).
#
#   e2e/argo/build.sh              build if needed, then print the directory
#   e2e/argo/build.sh --print-dir  print the directory only (no build)
#
# The cache lives outside the work tree: $SLUICE_CACHE_DIR, else $XDG_CACHE_HOME/sluice,
# else ~/.cache/sluice. Its key is Argo Rollouts' version plus a hash of go.mod and go.sum.
set -euo pipefail

# Argo Rollouts v1.10.2 needs Go >= 1.26.10; the go command fetches this toolchain itself.
export GOTOOLCHAIN=go1.27.3

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../gobuild.sh
source "$here/../gobuild.sh"
module=github.com/argoproj/argo-rollouts
version=$(go_mod_version "$module" "$here/go.mod")
[[ -n "$version" ]] || { echo "build.sh: no $module version in $here/go.mod" >&2; exit 1; }
out=$(go_cache_dir argo "$version" "$here/go.mod" "$here/go.sum")

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$out"
  exit 0
fi

complete() {
  [[ -x "$out/rollouts-controller" && -f "$out/argo-rollouts-clusterrole.yaml" ]] &&
    compgen -G "$out/crds/*.yaml" >/dev/null
}
go_cached_or_lock "$out" "$out" complete

pkg=$module/cmd/rollouts-controller
cd "$here"
echo "build.sh: building Argo Rollouts' controller $version from Go modules into $out" >&2
echo "build.sh: the first build takes a while on a small machine (about 5 minutes measured on 2 cores); later runs reuse it" >&2
go mod download "$module" >&2
src=$(go list -m -f '{{.Dir}}' "$module")
[[ -d "$src/manifests/crds" ]] || { echo "build.sh: no manifests/crds in $src" >&2; exit 1; }
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/crds"
start=$SECONDS
status=0
go_build_progress "-s -w -X $module/utils/version.version=${version#v}" "$tmp/rollouts-controller" "$pkg" || status=$?
if ((status != 0)); then
  rm -rf "$tmp"
  echo "build.sh: go build failed (exit $status)" >&2
  exit "$status"
fi
[[ -x "$tmp/rollouts-controller" ]] || { echo "build.sh: rollouts-controller missing after the build" >&2; exit 1; }
# The module cache is read-only: copy, then make the copies writable so the cache can be removed.
for f in "$src"/manifests/crds/*-crd.yaml; do
  cp "$f" "$tmp/crds/"
done
cp "$src/manifests/role/argo-rollouts-clusterrole.yaml" "$tmp/"
chmod -R u+w "$tmp"
rm -rf "$out"
mv "$tmp" "$out"
echo "build.sh: built in $((SECONDS - start)) s" >&2
echo "$out"
