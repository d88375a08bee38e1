#!/usr/bin/env bash
# Labs for learners (`make lab SCENARIO=crashloop`; `make lab` lists them).
#
#   scripts/lab.sh list                    the labs, one line each
#   scripts/lab.sh NAME [--keep]           one lab: it starts the local stack (Kubernetes,
#                                          simulated Nodes, Sluice), puts a faulty release on it,
#                                          prints the situation and the kubectl commands to try
#                                          in another terminal, waits for you (or for Sluice),
#                                          checks the end state and explains what happened
#   scripts/lab.sh all --scripted          every lab on one stack, each playing the learner's
#                                          part and failing like a test (make test runs this)
#
# The guides are in docs/labs/.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scenario=${1:-list}
shift || true
case "$scenario" in
  -h | --help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
esac

if [[ "$scenario" != list ]]; then
  printf '\n== %s\n' "Installing what is missing and building (cached after the first run)"
  scripts/deps.sh
  SLUICE_K8S_BIN=$(e2e/k8s/build.sh)
  export SLUICE_K8S_BIN
  SLUICE_ETCD=$(e2e/etcd/build.sh)
  export SLUICE_ETCD
fi
cargo build --locked --quiet --workspace --bins
exec target/debug/sluice-e2e lab "$scenario" --sluice target/debug/sluice "$@"
