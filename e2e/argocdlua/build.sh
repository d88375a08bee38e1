#!/usr/bin/env bash
# Builds the Argo CD Lua checker (gopher-lua, gopher-json and json-patch as Argo CD uses them)
# once per source, into the same cache as the other Go tools, and prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
key=$(cat "$here/go.mod" "$here/go.sum" "$here/main.go" "$here/build.sh" | sha256sum | cut -c1-12)
out="${SLUICE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/sluice}/argocdlua/$key"
if [[ ! -x "$out/argocdlua" ]]; then
  echo "build.sh: building the Argo CD Lua checker (under a minute the first time)" >&2
  mkdir -p "$out"
  (cd "$here" && go build -buildvcs=false -trimpath -o "$out/argocdlua.tmp.$$" .)
  mv "$out/argocdlua.tmp.$$" "$out/argocdlua"
fi
echo "$out/argocdlua"
