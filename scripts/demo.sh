#!/usr/bin/env bash
# The README's demo command (`make demo`, or `make demo ARGS=--keep`).
#
# Today it starts the local stack every Sluice test runs on — a real Kubernetes control plane
# (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) with simulated Nodes — installs
# Sluice's CRDs, applies the examples and a small Deployment, and shows what the real
# controllers made of them. The release demo (a good version promoted, a bad one rolled back,
# with a time-to-safe summary) joins it when the Rollout controller lands.
#
# With --keep the stack stays up until Ctrl-C and the script prints how to reach it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

keep=false
for arg in "$@"; do
  case "$arg" in
    --keep) keep=true ;;
    -h | --help) sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "demo.sh: unknown argument $arg (try --keep)" >&2; exit 2 ;;
  esac
done

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "Installing what is missing and building (cached after the first run)"
scripts/deps.sh
SLUICE_K8S_BIN=$(e2e/k8s/build.sh)
export SLUICE_K8S_BIN
cargo build --locked --quiet --bins

say "Starting the local control plane"
state=$PWD/target/demo
mkdir -p "$state"
rm -f "$state/env"
target/debug/sluice-e2e up --state-dir "$state/cluster" --env-file "$state/env" --exit-with-parent >"$state/up.log" 2>&1 &
up_pid=$!
trap 'kill $up_pid 2>/dev/null || true; wait $up_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
  [[ -f "$state/env" ]] && break
  kill -0 "$up_pid" 2>/dev/null || { cat "$state/up.log" >&2; exit 1; }
  sleep 1
done
[[ -f "$state/env" ]] || { echo "demo.sh: the control plane was not ready within 300 s" >&2; exit 1; }
grep "control plane ready" "$state/up.log" || true
# shellcheck disable=SC1091
source "$state/env"
kubectl() { "$SLUICE_K8S_BIN/kubectl" --kubeconfig "$SLUICE_E2E_KUBECONFIG" "$@"; }

say "Nodes (simulated kubelets)"
kubectl get nodes -o wide

say "Applying Sluice's examples into namespace demo"
kubectl create namespace demo >/dev/null
until kubectl -n demo get serviceaccount default >/dev/null 2>&1; do sleep 0.5; done
kubectl -n demo apply --server-side -f examples/
kubectl -n demo get sluice
kubectl get clusteranalysistemplates

say "A Deployment run by the real controllers, scheduler and node simulator"
kubectl -n demo create deployment hello --image=registry.example/hello:1 --replicas=3 --port=8080
kubectl -n demo expose deployment hello --port=80 --target-port=8080
kubectl -n demo rollout status deployment/hello --timeout=120s
kubectl -n demo get pods -o wide
until [[ -n "$(kubectl -n demo get endpointslices -l kubernetes.io/service-name=hello -o jsonpath='{.items[*].endpoints[*].addresses[*]}')" ]]; do sleep 0.5; done
kubectl -n demo get endpointslices -l kubernetes.io/service-name=hello

say "A refused manifest: a canary step with weight 150"
cat <<'YAML' | kubectl -n demo apply -f - || true
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: too-heavy}
spec:
  selector: {matchLabels: {app: x}}
  template:
    metadata: {labels: {app: x}}
    spec: {containers: [{name: x, image: x:1}]}
  strategy: {canary: {steps: [{setWeight: 150}]}}
YAML

if $keep; then
  say "The stack is running; Ctrl-C stops it"
  cat <<HINT
  export KUBECONFIG=$SLUICE_E2E_KUBECONFIG
  export PATH=$SLUICE_K8S_BIN:\$PATH
  kubectl get nodes
  kubectl -n demo get sluice
  kubectl explain rollout.spec.strategy.canary.steps
  logs: $state/cluster/*.log
HINT
  wait "$up_pid"
else
  say "Stopping the stack (run with --keep to explore it)"
fi
