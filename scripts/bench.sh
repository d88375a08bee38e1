#!/usr/bin/env bash
# `make bench`: Sluice and Argo Rollouts side by side on one local API server.
#
#   scripts/bench.sh [SIZES] [more sluice-e2e bench flags]
#   scripts/bench.sh 1000             # the README's table
#   scripts/bench.sh 100,1000,10000   # each size on a fresh control plane
#
# Installs what is missing, builds the control plane and Argo Rollouts' controller from their
# Go modules (cached), builds Sluice and the harness as release binaries, then runs
# `sluice-e2e bench`. The tables are printed; JSON and logs go to target/bench.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
sizes=${1:-1000}
shift || true

# shellcheck source=lib.sh
source scripts/lib.sh

step "dependencies"
scripts/deps.sh
control_plane_binaries
argo_rollouts_controller
step "Sluice and the harness, release builds"
cargo build --release --locked -p sluice -p e2e --bin sluice --bin sluice-e2e
step "benchmark, N = $sizes"
target/release/sluice-e2e bench --rollouts "$sizes" --sluice target/release/sluice --out target/bench "$@"
step "done in $((SECONDS - t0)) s"
