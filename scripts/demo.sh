#!/usr/bin/env bash
# The README's demo command (`make demo`, or `make demo ARGS=--keep`).
#
# Starts the local stack every Sluice test runs on (a real Kubernetes control plane with
# simulated Nodes) and the Sluice controller, deploys an application as a canary Rollout, then
# releases v2 (healthy: promoted step by step) and v3 (its pods crash: aborted on its own, all
# traffic back on v2). Prints live progress and a summary with the time each release took.
# (Prometheus analysis, Istio weights and the HTML report join it with those features.)
#
# With --keep the stack stays up until Ctrl-C and the script prints how to reach it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

keep=false
for arg in "$@"; do
  case "$arg" in
    --keep) keep=true ;;
    -h | --help) sed -n '2,10p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
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
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
target/debug/sluice-e2e up --state-dir "$state/cluster" --env-file "$state/env" --exit-with-parent >"$state/up.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
  [[ -f "$state/env" ]] && break
  kill -0 "${pids[0]}" 2>/dev/null || { cat "$state/up.log" >&2; exit 1; }
  sleep 1
done
[[ -f "$state/env" ]] || { echo "demo.sh: the control plane was not ready within 300 s" >&2; exit 1; }
grep "control plane ready" "$state/up.log" || true
# shellcheck disable=SC1091
source "$state/env"
kubectl() { "$SLUICE_K8S_BIN/kubectl" --kubeconfig "$SLUICE_E2E_KUBECONFIG" "$@"; }
kubectl get nodes

say "Starting the Sluice controller (log: $state/sluice.log)"
kubectl create namespace shop >/dev/null
until kubectl -n shop get serviceaccount default >/dev/null 2>&1; do sleep 0.5; done
KUBECONFIG=$SLUICE_E2E_KUBECONFIG target/debug/sluice run --namespace shop --metrics-addr 127.0.0.1:0 >"$state/sluice.log" 2>&1 &
pids+=($!)

say "Deploying v1 of the shop as a canary Rollout"
kubectl -n shop apply -f - <<'YAML'
apiVersion: v1
kind: Service
metadata: {name: shop-stable}
spec: {selector: {app: shop}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: shop-canary}
spec: {selector: {app: shop}, ports: [{port: 80, targetPort: 8080}]}
---
apiVersion: sluice.dev/v1alpha1
kind: Rollout
metadata: {name: shop}
spec:
  replicas: 4
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec: {containers: [{name: shop, image: registry.example/shop:1}]}
  strategy:
    canary:
      stableService: shop-stable
      canaryService: shop-canary
      maxSurge: 1
      maxUnavailable: 0
      abortScaleDownDelaySeconds: 5
      steps:
        - setWeight: 25
        - pause: {duration: 4s}
        - setWeight: 50
        - pause: {duration: 4s}
        - setWeight: 75
        - pause: {duration: 4s}
YAML

field() { kubectl -n shop get rollout shop -o "jsonpath=$1" 2>/dev/null; }
# Prints a line whenever what `kubectl get sro` shows changes, until $1 holds (or 180 s pass).
watch_until() {
  local until=$1 last="" line start=$SECONDS
  while ((SECONDS - start < 180)); do
    line=$(kubectl -n shop get sro shop --no-headers 2>/dev/null | awk '{$NF=""; print}')
    if [[ "$line" != "$last" ]]; then
      printf '  [%3ss] %s\n' $((SECONDS - start)) "$line"
      last=$line
    fi
    if eval "$until"; then
      line=$(kubectl -n shop get sro shop --no-headers 2>/dev/null | awk '{$NF=""; print}')
      [[ "$line" != "$last" ]] && printf '  [%3ss] %s\n' $((SECONDS - start)) "$line"
      return 0
    fi
    sleep 0.5
  done
  echo "demo.sh: gave up waiting" >&2
  return 1
}
echo "  NAME DESIRED CURRENT UP-TO-DATE AVAILABLE STEP WEIGHT PHASE"
watch_until '[[ $(field "{.status.phase}") == Healthy && $(field "{.status.availableReplicas}") == 4 ]]'

release() { kubectl -n shop patch rollout shop --type=merge -p "$1" >/dev/null; }

say "Releasing v2 (healthy): promoted step by step"
stable_before=$(field '{.status.stableRS}')
t0=$SECONDS
release '{"spec":{"template":{"spec":{"containers":[{"name":"shop","image":"registry.example/shop:2"}]}}}}'
watch_until '[[ $(field "{.status.phase}") == Healthy && $(field "{.status.stableRS}") != "$stable_before" && $(field "{.status.availableReplicas}") == 4 ]]'
v2_secs=$((SECONDS - t0))
v2=$(field '{.status.stableRS}')

say "Releasing v3 (its pods crash on start): Sluice aborts it on its own"
t0=$SECONDS
release '{"spec":{"template":{"metadata":{"annotations":{"sim.sluice.dev/behaviour":"crashloop"}},"spec":{"containers":[{"name":"shop","image":"registry.example/shop:3"}]}}}}'
watch_until '[[ $(field "{.status.abort}") == true ]]'
v3_secs=$((SECONDS - t0))
echo "  why: $(field '{.status.conditions[?(@.type=="Progressing")].message}')"
echo "  stable Service selects revision $(kubectl -n shop get svc shop-stable -o 'jsonpath={.spec.selector.rollouts-pod-template-hash}'), canary Service $(kubectl -n shop get svc shop-canary -o 'jsonpath={.spec.selector.rollouts-pod-template-hash}') (v2 is $v2)"
watch_until '[[ $(kubectl -n shop get rs -l "rollouts-pod-template-hash=$(field "{.status.currentPodHash}")" -o "jsonpath={.items[0].spec.replicas}") == 0 ]]'

say "Events"
kubectl -n shop get events --field-selector involvedObject.kind=Rollout --sort-by=.metadata.creationTimestamp -o custom-columns=TYPE:.type,REASON:.reason,MESSAGE:.message | grep -v ScalingReplicaSet

say "Summary"
echo "  v2: promoted through 6 steps in ${v2_secs}s; stable revision $v2"
echo "  v3: aborted ${v3_secs}s after the release started (crash-looping pods); all traffic back on $v2"

if $keep; then
  say "The stack is running; Ctrl-C stops it"
  cat <<HINT
  export KUBECONFIG=$SLUICE_E2E_KUBECONFIG
  export PATH=$SLUICE_K8S_BIN:\$PATH
  kubectl -n shop get sro,rs,pods
  kubectl -n shop describe rollout shop
  metrics: $(grep -o 'addr=[0-9.:]*' "$state/sluice.log" | head -1 | cut -d= -f2)/metrics
  kubectl patch -n shop rollout shop --subresource=status --type=merge -p '{"status":{"abort":false}}'   # retry v3
  logs: $state/sluice.log, $state/cluster/*.log
HINT
  wait "${pids[0]}"
else
  say "Stopping the stack (run with --keep to explore it)"
fi
