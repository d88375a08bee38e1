#!/usr/bin/env bash
# The README's test command (`make test`): installs what is missing, builds, and runs the format
# check, clippy, the unit tests and the integration tests against a real local control plane.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=lib.sh
source scripts/lib.sh

# The integration test binaries of the side lane (see "tests" below).
SIDE_LANE=(flux exercise statistics)

step "dependencies"
scripts/deps.sh

step "format"
cargo fmt --all -- --check

control_plane_binaries

step "Flux's kstatus checker (built once, then cached)"
SLUICE_KSTATUS=$(e2e/kstatus/build.sh)
export SLUICE_KSTATUS

step "Argo CD's Lua runtime checker (built once, then cached)"
SLUICE_ARGOCD_LUA=$(e2e/argocdlua/build.sh)
export SLUICE_ARGOCD_LUA

argo_rollouts_controller

helm_binary

step "Flux's source-controller and kustomize-controller (built once per version, then cached)"
SLUICE_FLUX_DIR=$(e2e/flux/build.sh)
export SLUICE_FLUX_DIR

step "clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "build"
cargo build --workspace --all-targets --locked

step "start the local control plane"
state=$PWD/target/e2e
mkdir -p "$state"
rm -f "$state/env"
target/debug/sluice-e2e up --state-dir "$state/cluster" --env-file "$state/env" --exit-with-parent --audit >"$state/up.log" 2>&1 &
up_pid=$!
stop_cluster() {
  kill "$up_pid" 2>/dev/null || true
  wait "$up_pid" 2>/dev/null || true
}
trap stop_cluster EXIT
for _ in $(seq 1 300); do
  [[ -f "$state/env" ]] && break
  if ! kill -0 "$up_pid" 2>/dev/null; then
    echo "the control plane did not start:" >&2
    cat "$state/up.log" >&2
    exit 1
  fi
  sleep 1
done
[[ -f "$state/env" ]] || { echo "the control plane was not ready within 300 s" >&2; cat "$state/up.log" >&2; exit 1; }
grep "control plane ready" "$state/up.log" || true
# shellcheck disable=SC1091
source "$state/env"

# The test binaries run in two lanes at once, each binary after the other in its lane: the
# tests that spend their time waiting (Flux's intervals, the exercises' and the statistics'
# measurements), then the benchmark, the demos and the labs (`after_tests` below), beside all
# the other test binaries. One lane took 1,211 s on a new 2-core machine, mostly waiting; the
# side lane's binaries took 364 s of it, the benchmark, demos and labs after it about 440 s.
# Every binary runs even when one before it failed (cargo test would stop at the first), as
# cargo would run it: from its package's directory.
step "tests (two lanes: $(echo "${SIDE_LANE[@]}"), then the benchmark, the demos and the labs, beside the rest)"
cargo test --workspace --locked --no-run --message-format=json 2>/dev/null |
  python3 -c '
import json, os, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("profile", {}).get("test") and m.get("executable"):
        t = m["target"]
        print(os.path.dirname(m["manifest_path"]), t["name"], t["kind"][0], m["executable"], sep="\t")
' > target/e2e/test-binaries.tsv
[[ -s target/e2e/test-binaries.tsv ]] || { echo "no test binaries found" >&2; exit 1; }
in_side_lane() {
  local kind=$1 name=$2 s
  [[ "$kind" == test ]] || return 1
  for s in "${SIDE_LANE[@]}"; do [[ "$s" == "$name" ]] && return 0; done
  return 1
}
# run_lane side|main: runs that lane's binaries; returns 1 if any failed.
run_lane() {
  local lane=$1 dir name kind exe failed=0 side
  while IFS=$'\t' read -r dir name kind exe; do
    side=main
    in_side_lane "$kind" "$name" && side=side
    [[ "$side" == "$lane" ]] || continue
    echo "     Running $kind $name (${exe#"$PWD"/})"
    (cd "$dir" && "$exe") 2>&1 || failed=1
  done < target/e2e/test-binaries.tsv
  return "$failed"
}
# After the tests: the benchmark at CI size, both controllers: it must run to the end and measure
# every figure (its own exit code; at N = 50 with a debug build the figures mean nothing); the
# README's demo, canary and blue-green, which checks its own outcome (v2 stable with all
# traffic, v3 rolled back with stable at 100% and the abort naming the failed metric); and every
# lab for learners on one stack, each playing the learner's part through the real kubectl and
# failing when its end state is not the expected one (docs/labs/). Each starts a control plane
# of its own, so they run in the side lane once its test binaries are done, beside the rest of
# the main lane. Returns 1 at the first that fails, after printing its log.
after_tests() {
  step "the benchmark at N = 50, Sluice and Argo Rollouts (checks that it works, not its figures)"
  target/debug/sluice-e2e bench --rollouts 50 --sluice target/debug/sluice --out target/e2e/bench > target/e2e/bench.log 2>&1 ||
    { cat target/e2e/bench.log; echo "the benchmark failed"; return 1; }
  sed -n '/^## N = /,/^JSON/p' target/e2e/bench.log
  for strategy in canary bluegreen; do
    step "the README's demo, end to end (--strategy $strategy)"
    scripts/demo.sh --strategy "$strategy" > "target/e2e/demo-$strategy.log" 2>&1 ||
      { cat "target/e2e/demo-$strategy.log"; echo "the $strategy demo failed"; return 1; }
    sed -n '/== Summary/,/^$/p' "target/e2e/demo-$strategy.log"
  done
  step "the labs for learners, scripted (lab all --scripted)"
  scripts/lab.sh all --scripted > target/e2e/labs.log 2>&1 ||
    { cat target/e2e/labs.log; echo "a lab failed"; return 1; }
  sed -n '/^== Labs/,$p' target/e2e/labs.log
  step "after the tests: done"
}
side_lane() {
  local failed=0
  run_lane side > target/e2e/cargo-test-side.log 2>&1 || failed=1
  after_tests > target/e2e/after-tests.log 2>&1 || failed=1
  return "$failed"
}
set +e
side_lane &
side_pid=$!
run_lane main 2>&1 | tee target/e2e/cargo-test-main.log
status=${PIPESTATUS[0]}
step "main lane done; waiting for the side lane"
wait "$side_pid"
side_status=$?
set -e
stop_cluster
trap - EXIT
echo "---- the side lane ($(echo "${SIDE_LANE[@]}")):"
cat target/e2e/cargo-test-side.log
cat target/e2e/cargo-test-main.log target/e2e/cargo-test-side.log > target/e2e/cargo-test.log
totals=$(awk '/^test result:/ { for (i = 2; i <= NF; i++) { if ($i ~ /^passed;?$/) p += $(i - 1); if ($i ~ /^failed;?$/) f += $(i - 1) } } END { printf "%d passed, %d failed", p, f }' target/e2e/cargo-test.log)
echo "tests: $totals; the figures they measured:"
grep '^figure: ' target/e2e/cargo-test.log || echo "(none)"
echo "---- after the tests, in the side lane (the benchmark, the demos, the labs):"
cat target/e2e/after-tests.log
if ((status != 0 || side_status != 0)); then
  echo "tests: $totals"
  exit 1
fi

step "done in $((SECONDS - t0)) s"
echo "tests: $totals"
