#!/usr/bin/env bash
# Prints the paths of the Istio and Gateway API CRD files of the releases pinned in go.mod,
# downloading the modules (checked against go.sum) into the Go module cache once.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$here"
dir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}
istio=$(dir istio.io/api)
gateway=$(dir sigs.k8s.io/gateway-api)
[[ -n "$istio" && -n "$gateway" ]] || { echo "crds.sh: could not download the modules" >&2; exit 1; }
echo "$istio/kubernetes/customresourcedefinitions.gen.yaml"
for kind in gatewayclasses gateways httproutes referencegrants; do
  echo "$gateway/config/crd/standard/gateway.networking.k8s.io_$kind.yaml"
done
