#!/usr/bin/env bash
# Builds the kstatus checker (Flux's kstatus library, sigs.k8s.io/cli-utils) once per go.sum,
# into the same cache as the Kubernetes binaries, and prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
key=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" | sha256sum | cut -c1-12)
out="${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/kstatus/$key"
if [[ ! -x "$out/kstatus" ]]; then
  echo "build.sh: building the kstatus checker (about a minute the first time)" >&2
  mkdir -p "$out"
  (cd "$here" && go build -buildvcs=false -trimpath -o "$out/kstatus.tmp.$$" .)
  mv "$out/kstatus.tmp.$$" "$out/kstatus"
fi
echo "$out/kstatus"
