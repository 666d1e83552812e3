#!/usr/bin/env bash
# runbox on Azure Kubernetes Service: creates (or reuses) a resource group, a
# container registry and an AKS cluster with Calico NetworkPolicy, an autoscaled
# node pool for executors and the KEDA add-on; pushes runbox's images; installs
# Prometheus + prometheus-adapter; deploys the overlay; prints the public URL.
# Safe to re-run: whatever exists is reused. Tear down with ./down.sh --yes.
#
# Every setting is an environment variable (defaults in brackets):
#   AKS_RESOURCE_GROUP    [runbox]            created and tagged by this script
#   AKS_LOCATION          [westeurope]
#   AKS_CLUSTER           [runbox]
#   AKS_ACR               [runbox<8 hex of the subscription id>]  globally unique
#   AKS_K8S_VERSION       [group_vars kubernetes_version]  AKS picks the newest patch
#   AKS_POD_CIDR          [group_vars pod_cidr]  Azure CNI overlay's pod range
#   AKS_NETWORK_POLICY    [calico]            calico | azure | cilium (needs AKS_NETWORK_DATAPLANE=cilium)
#   AKS_NETWORK_DATAPLANE [azure]
#   AKS_SYSTEM_VM_SIZE    [Standard_D2s_v5]   AKS_SYSTEM_NODES [1]
#   AKS_EXECUTOR_VM_SIZE  [Standard_D8s_v5]   AKS_EXECUTOR_MIN [1]  AKS_EXECUTOR_MAX [5]
#                         (an executor requests 2 vCPU: an 8-vCPU node holds 3)
#   AKS_AUTOSCALER        [keda]              keda: KEDA add-on + k8s/components/keda;
#                                             hpa: the HPA on prometheus-adapter
#   AKS_OVERLAY           [overlays/aks]      a directory under k8s/
#   AKS_KUBECONFIG        [cluster-setup/aks/.kube/config]
#   RUNBOX_BUILD=0, RUNBOX_PLATFORM, RUNBOX_CONTAINER_TOOL: see lib/common.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
fi

need az kubectl helm "$CONTAINER_TOOL"

RG=${AKS_RESOURCE_GROUP:-runbox}
LOCATION=${AKS_LOCATION:-westeurope}
CLUSTER=${AKS_CLUSTER:-runbox}
K8S_VERSION=${AKS_K8S_VERSION:-$(setting kubernetes_version)}
POD_CIDR=${AKS_POD_CIDR:-$(setting pod_cidr)}
NETWORK_POLICY=${AKS_NETWORK_POLICY:-calico}
NETWORK_DATAPLANE=${AKS_NETWORK_DATAPLANE:-azure}
SYSTEM_VM_SIZE=${AKS_SYSTEM_VM_SIZE:-Standard_D2s_v5}
SYSTEM_NODES=${AKS_SYSTEM_NODES:-1}
EXECUTOR_VM_SIZE=${AKS_EXECUTOR_VM_SIZE:-Standard_D8s_v5}
EXECUTOR_MIN=${AKS_EXECUTOR_MIN:-1}
EXECUTOR_MAX=${AKS_EXECUTOR_MAX:-5}
AUTOSCALER=${AKS_AUTOSCALER:-keda}
case "$AUTOSCALER" in
keda) OVERLAY=${AKS_OVERLAY:-overlays/aks} components=(components/keda) ;;
hpa) OVERLAY=${AKS_OVERLAY:-overlays/aks} components=() ;;
*) die "AKS_AUTOSCALER must be keda or hpa, not $AUTOSCALER" ;;
esac
export KUBECONFIG=${AKS_KUBECONFIG:-$here/.kube/config}

az account show --output none 2>/dev/null || die "not logged in to Azure: run az login"
SUBSCRIPTION=$(az account show --query id --output tsv)
ACR=${AKS_ACR:-runbox$(tr -d '-' <<<"$SUBSCRIPTION" | cut -c1-8)}

log "subscription $SUBSCRIPTION, resource group $RG in $LOCATION"
if [[ "$(az group exists --name "$RG")" != true ]]; then
    # The tag lets down.sh delete the whole group only when this script made it.
    az group create --name "$RG" --location "$LOCATION" --tags created-by=runbox-cluster-setup --output none
fi

if ! az acr show --name "$ACR" --resource-group "$RG" --output none 2>/dev/null; then
    log "creating container registry $ACR (Basic)"
    az acr create --name "$ACR" --resource-group "$RG" --location "$LOCATION" --sku Basic --output none
fi
REGISTRY=$(az acr show --name "$ACR" --resource-group "$RG" --query loginServer --output tsv)

if ! az aks show --name "$CLUSTER" --resource-group "$RG" --output none 2>/dev/null; then
    log "creating AKS cluster $CLUSTER (Kubernetes $K8S_VERSION, network policy $NETWORK_POLICY)"
    keda=()
    [[ "$AUTOSCALER" == keda ]] && keda=(--enable-keda)
    az aks create --name "$CLUSTER" --resource-group "$RG" --location "$LOCATION" \
        --tier free \
        --kubernetes-version "$K8S_VERSION" \
        --nodepool-name system --node-count "$SYSTEM_NODES" --node-vm-size "$SYSTEM_VM_SIZE" \
        --network-plugin azure --network-plugin-mode overlay --pod-cidr "$POD_CIDR" \
        --network-dataplane "$NETWORK_DATAPLANE" --network-policy "$NETWORK_POLICY" \
        --attach-acr "$ACR" \
        ${keda[@]+"${keda[@]}"} \
        --generate-ssh-keys --output none
elif [[ "$AUTOSCALER" == keda && "$(az aks show --name "$CLUSTER" --resource-group "$RG" \
    --query 'workloadAutoScalerProfile.keda.enabled' --output tsv)" != true ]]; then
    log "enabling the KEDA add-on"
    az aks update --name "$CLUSTER" --resource-group "$RG" --enable-keda --output none
fi

if ! az aks nodepool show --name executors --cluster-name "$CLUSTER" --resource-group "$RG" --output none 2>/dev/null; then
    log "adding node pool executors ($EXECUTOR_VM_SIZE, $EXECUTOR_MIN..$EXECUTOR_MAX nodes)"
    az aks nodepool add --name executors --cluster-name "$CLUSTER" --resource-group "$RG" \
        --mode User --node-vm-size "$EXECUTOR_VM_SIZE" \
        --enable-cluster-autoscaler --node-count "$EXECUTOR_MIN" \
        --min-count "$EXECUTOR_MIN" --max-count "$EXECUTOR_MAX" \
        --labels runbox.dev/pool=executor --output none
fi

mkdir -p "$(dirname "$KUBECONFIG")"
az aks get-credentials --name "$CLUSTER" --resource-group "$RG" --file "$KUBECONFIG" --overwrite-existing
chmod 600 "$KUBECONFIG"

build_images
az acr login --name "$ACR"
push_images "$REGISTRY"

install_monitoring
if [[ "$AUTOSCALER" == keda ]]; then
    log "waiting for the KEDA add-on's ScaledObject CRD"
    for _ in $(seq 30); do
        kubectl get crd scaledobjects.keda.sh >/dev/null 2>&1 && break
        sleep 10
    done
    kubectl wait --for=condition=Established crd/scaledobjects.keda.sh --timeout=60s
fi
deploy_overlay "$OVERLAY" "$REGISTRY" ${components[@]+"${components[@]}"}
print_url
log "kubectl: export KUBECONFIG=$KUBECONFIG"
