#!/usr/bin/env bash
# Builds the kstatus checker (Flux's kstatus library, sigs.k8s.io/cli-utils) once per source,
# into the same cache as the Kubernetes binaries, and prints the binary's path.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../gobuild.sh
source "$here/../gobuild.sh"
go_tool_cached kstatus "$here" "the kstatus checker"
