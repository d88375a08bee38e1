#!/usr/bin/env bash
# Builds the Argo CD Lua checker (gopher-lua, gopher-json and json-patch as Argo CD uses them)
# once per source, into the same cache as the other Go tools, and prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../gobuild.sh
source "$here/../gobuild.sh"
go_tool_cached argocdlua "$here" "the Argo CD Lua checker"
