#!/usr/bin/env bash
# The README's demo command (`make demo`, or `make demo ARGS=--keep`).
#
# Starts a real Kubernetes control plane with simulated Nodes, Prometheus, a traffic simulator
# (routing as Envoy would, exporting Istio's metrics) and the Sluice controller; deploys a shop
# as a canary Rollout over Istio VirtualService weights with a Prometheus success-rate
# analysis; releases v2 (good: promoted step by step) and v3 (20% errors: rolled back on its
# own). Prints live progress, a summary with the time to safe, and the path of an HTML report.
#
# With --keep the stack stays up until Ctrl-C and the script prints how to reach it.
# --strategy bluegreen shows a blue-green release judged by post-promotion analysis instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

args=()
while (($#)); do
  arg=$1
  shift
  case "$arg" in
    --keep) args+=(--keep) ;;
    --strategy) args+=(--strategy "${1:-}"); shift || true ;;
    --strategy=*) args+=(--strategy "${arg#--strategy=}") ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument $arg (try --keep, --strategy canary|bluegreen)" >&2; exit 2 ;;
  esac
done

printf '\n\033[1m== %s\033[0m\n' "Installing what is missing and building (cached after the first run)"
scripts/deps.sh
SLUICE_K8S_BIN=$(e2e/k8s/build.sh)
export SLUICE_K8S_BIN
SLUICE_ETCD=$(e2e/etcd/build.sh)
export SLUICE_ETCD
cargo build --locked --quiet --workspace --bins
exec target/debug/sluice-e2e demo --sluice target/debug/sluice "${args[@]}"
