#!/usr/bin/env bash
# Builds Flux's source-controller and kustomize-controller from their published Go modules,
# once per version, for the GitOps loop test (tests/flux.rs). Next to the binaries it puts
# their CRDs (crds/*.yaml), taken from the same modules, so nothing is fetched at run time.
#
#   e2e/flux/build.sh              build if needed, then print the directory
#   e2e/flux/build.sh --print-dir  print the directory only (no build)
#
# The cache lives outside the work tree: $SLUICE_CACHE_DIR, else $XDG_CACHE_HOME/sluice,
# else ~/.cache/sluice. Its key is the version plus a hash of go.mod and go.sum.
set -euo pipefail

# The module names go 1.27 (its dependencies do); the go command fetches this toolchain.
export GOTOOLCHAIN=go1.27.3

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../gobuild.sh
source "$here/../gobuild.sh"
source_module=github.com/fluxcd/source-controller
kustomize_module=github.com/fluxcd/kustomize-controller
version=$(go_mod_version "$source_module" "$here/go.mod")
[[ -n "$version" ]] || { echo "build.sh: no $source_module version in $here/go.mod" >&2; exit 1; }
out=$(go_cache_dir flux "$version" "$here/go.mod" "$here/go.sum")

if [[ "${1:-}" == "--print-dir" ]]; then
  echo "$out"
  exit 0
fi

complete() {
  [[ -x "$out/source-controller" && -x "$out/kustomize-controller" ]] &&
    compgen -G "$out/crds/*.yaml" >/dev/null
}
go_cached_or_lock "$out" "$out" complete

cd "$here"
echo "build.sh: building Flux's source-controller and kustomize-controller $version from Go modules into $out" >&2
echo "build.sh: the first build takes a while on a small machine; later runs reuse it" >&2
go mod download "$source_module" "$kustomize_module" >&2
tmp="$out.tmp.$$"
rm -rf "$tmp"
mkdir -p "$tmp/crds"
start=$SECONDS
for module in "$source_module" "$kustomize_module"; do
  name=${module##*/}
  status=0
  go_build_progress "-s -w" "$tmp/$name" "$module" || status=$?
  if ((status != 0)); then
    rm -rf "$tmp"
    echo "build.sh: go build of $name failed (exit $status)" >&2
    exit "$status"
  fi
  src=$(go list -m -f '{{.Dir}}' "$module")
  # The module cache is read-only: copy, then make the copies writable.
  cp "$src"/config/crd/bases/*.yaml "$tmp/crds/"
  echo "build.sh: $name built ($((SECONDS - start)) s so far)" >&2
done
chmod -R u+w "$tmp"
rm -rf "$out"
mv "$tmp" "$out"
echo "build.sh: built in $((SECONDS - start)) s" >&2
echo "$out"
