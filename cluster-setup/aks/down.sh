#!/usr/bin/env bash
# Tears down what ./up.sh created on Azure. Refuses to run without --yes.
#
# If up.sh created the resource group (tag created-by=runbox-cluster-setup),
# the whole group goes: cluster, node pools, registry, load balancer, disks.
# Otherwise only the cluster and the registry are deleted.
# Same variables as up.sh: AKS_RESOURCE_GROUP, AKS_CLUSTER, AKS_ACR.
#   --yes      confirm
#   --no-wait  return before Azure has finished deleting
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
fi

need az
RG=${AKS_RESOURCE_GROUP:-runbox}
CLUSTER=${AKS_CLUSTER:-runbox}
KUBECONFIG_FILE=${AKS_KUBECONFIG:-$here/.kube/config}
wait=()
for arg in "$@"; do
    [[ "$arg" == --no-wait ]] && wait=(--no-wait)
done

az account show --output none 2>/dev/null || die "not logged in to Azure: run az login"
SUBSCRIPTION=$(az account show --query id --output tsv)
ACR=${AKS_ACR:-runbox$(tr -d '-' <<<"$SUBSCRIPTION" | cut -c1-8)}

if [[ "$(az group exists --name "$RG")" != true ]]; then
    log "resource group $RG does not exist; nothing to delete"
    exit 0
fi
owner=$(az group show --name "$RG" --query 'tags."created-by"' --output tsv)

if [[ "$owner" == runbox-cluster-setup ]]; then
    confirm_flag "$@" || die "this deletes resource group $RG and everything in it (subscription $SUBSCRIPTION); re-run with --yes"
    log "deleting resource group $RG"
    az group delete --name "$RG" --yes ${wait[@]+"${wait[@]}"}
else
    confirm_flag "$@" || die "this deletes AKS cluster $CLUSTER and registry $ACR in $RG (subscription $SUBSCRIPTION); re-run with --yes"
    log "resource group $RG was not created by up.sh: deleting only the cluster and the registry"
    az aks delete --name "$CLUSTER" --resource-group "$RG" --yes ${wait[@]+"${wait[@]}"}
    az acr delete --name "$ACR" --resource-group "$RG" --yes
fi
rm -f "$KUBECONFIG_FILE"
log "done"
