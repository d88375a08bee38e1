#!/usr/bin/env bash
# Writes integrations/argocd/argocd-cm.yaml (and the chart's copy) from the Lua scripts in
# integrations/argocd: Sluice's health check and actions as one block for Argo CD's argocd-cm.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
dir=integrations/argocd
indent() { sed -e "s/^/$1/" "$2"; }
{
  echo "# Sluice's Argo CD health check and actions for sluice.dev/Rollout, written by"
  echo "# \`make argocd-cm\` from integrations/argocd/*.lua. Merge it into Argo CD's argocd-cm:"
  echo "#   kubectl -n argocd patch configmap argocd-cm --type merge --patch-file argocd-cm.yaml"
  echo "data:"
  echo "  resource.customizations.health.sluice.dev_Rollout: |"
  indent "    " "$dir/health.lua"
  echo "  resource.customizations.actions.sluice.dev_Rollout: |"
  echo "    discovery.lua: |"
  indent "      " "$dir/actions/discovery.lua"
  echo "    definitions:"
  for a in promote promote-full abort retry pause resume; do
    echo "    - name: $a"
    echo "      action.lua: |"
    indent "        " "$dir/actions/$a.lua"
  done
} >"$dir/argocd-cm.yaml"
cp "$dir/argocd-cm.yaml" charts/sluice/files/argocd-cm.yaml
