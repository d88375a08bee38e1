# Sourced by scripts/test.sh and scripts/bench.sh: numbered steps with the time so far, and the
# Go-built tools both need (each built once per version into the cache, then reused).

t0=$SECONDS
step() { echo "==> [$((SECONDS - t0)) s] $*"; }

# Exports SLUICE_K8S_BIN (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl)
# and SLUICE_ETCD (the etcd they run on).
control_plane_binaries() {
  step "control plane binaries (built once per Kubernetes version, then cached)"
  SLUICE_K8S_BIN=$(e2e/k8s/build.sh)
  export SLUICE_K8S_BIN
  step "etcd (built once per version, then cached)"
  SLUICE_ETCD=$(e2e/etcd/build.sh)
  export SLUICE_ETCD
}

# Exports SLUICE_ARGO_DIR: Argo Rollouts' controller, its CRDs and its ClusterRole.
argo_rollouts_controller() {
  step "Argo Rollouts' controller (built once, then cached)"
  SLUICE_ARGO_DIR=$(e2e/argo/build.sh)
  export SLUICE_ARGO_DIR
}

# Exports SLUICE_HELM: helm, for the tests of charts/sluice.
helm_binary() {
  step "helm (built once per version, then cached)"
  SLUICE_HELM=$(e2e/helm/build.sh)
  export SLUICE_HELM
}
