#!/usr/bin/env bash
# Installs what Sluice's tests and demo need and this machine lacks. Idempotent: when all is
# there it only checks. The Kubernetes binaries are built (and cached) by e2e/k8s/build.sh.
set -euo pipefail

# etcd-server: the etcd the local control plane falls back to when SLUICE_ETCD is unset; the
# scripts build a current one (e2e/etcd/build.sh), which streamed lists need.
# util-linux: setpriv (ties control plane processes to their parent) and flock.
# prometheus: the real Prometheus (and promtool) the analysis tests query.
# chromium, chromium-driver: the headless browser (and its WebDriver) tests/dashboard.rs drives.
debs=(etcd-server util-linux prometheus chromium chromium-driver)

missing=()
for p in "${debs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "deps.sh: installing Debian packages: ${missing[*]}"
  as_root=()
  [[ $(id -u) -eq 0 ]] || as_root=(sudo)
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for tool in cargo go git setpriv flock /usr/bin/etcd /usr/bin/prometheus /usr/bin/promtool; do
  command -v "$tool" >/dev/null || { echo "deps.sh: $tool is required and missing" >&2; exit 1; }
done
for component in rustfmt clippy-driver; do
  command -v "$component" >/dev/null || { echo "deps.sh: the Rust component $component is missing (rustup component add ${component%-driver})" >&2; exit 1; }
done
