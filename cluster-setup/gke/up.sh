#!/usr/bin/env bash
# runbox on Google Kubernetes Engine: creates (or reuses) an Artifact Registry
# repository and a zonal GKE cluster with Dataplane V2 (Cilium, which enforces
# NetworkPolicy), an autoscaled node pool for executors; pushes runbox's images;
# installs Prometheus + prometheus-adapter (GKE has no managed KEDA, so the HPA
# reads executor_inflight_executions from the adapter); deploys k8s/overlays/gke;
# prints the public URL. Safe to re-run. Tear down with ./down.sh --yes.
#
# Every setting is an environment variable (defaults in brackets):
#   GKE_PROJECT            [gcloud config get-value project]
#   GKE_REGION             [europe-west1]       the registry's region
#   GKE_ZONE               [europe-west1-b]     the cluster's location (zonal: one free control plane)
#   GKE_CLUSTER            [runbox]
#   GKE_REPOSITORY         [runbox]             Artifact Registry repository
#   GKE_K8S_VERSION        [group_vars kubernetes_version]  must be offered in the channel
#   GKE_RELEASE_CHANNEL    [regular]
#   GKE_POD_CIDR           [group_vars pod_cidr]
#   GKE_SYSTEM_MACHINE_TYPE   [e2-standard-2]   GKE_SYSTEM_NODES [1]
#   GKE_EXECUTOR_MACHINE_TYPE [e2-standard-8]   GKE_EXECUTOR_MIN [1]  GKE_EXECUTOR_MAX [5]
#                          (an executor requests 2 vCPU: an 8-vCPU node holds 3)
#   GKE_OVERLAY            [overlays/gke]       a directory under k8s/
#   GKE_KUBECONFIG         [cluster-setup/gke/.kube/config]
#   RUNBOX_BUILD=0, RUNBOX_PLATFORM, RUNBOX_CONTAINER_TOOL: see lib/common.sh
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
fi

need gcloud kubectl helm "$CONTAINER_TOOL"

PROJECT=${GKE_PROJECT:-$(gcloud config get-value project 2>/dev/null || true)}
[[ -n "$PROJECT" ]] || die "no project: set GKE_PROJECT or run gcloud config set project <id>"
REGION=${GKE_REGION:-europe-west1}
ZONE=${GKE_ZONE:-europe-west1-b}
CLUSTER=${GKE_CLUSTER:-runbox}
REPOSITORY=${GKE_REPOSITORY:-runbox}
K8S_VERSION=${GKE_K8S_VERSION:-$(setting kubernetes_version)}
RELEASE_CHANNEL=${GKE_RELEASE_CHANNEL:-regular}
POD_CIDR=${GKE_POD_CIDR:-$(setting pod_cidr)}
SYSTEM_MACHINE_TYPE=${GKE_SYSTEM_MACHINE_TYPE:-e2-standard-2}
SYSTEM_NODES=${GKE_SYSTEM_NODES:-1}
EXECUTOR_MACHINE_TYPE=${GKE_EXECUTOR_MACHINE_TYPE:-e2-standard-8}
EXECUTOR_MIN=${GKE_EXECUTOR_MIN:-1}
EXECUTOR_MAX=${GKE_EXECUTOR_MAX:-5}
OVERLAY=${GKE_OVERLAY:-overlays/gke}
export KUBECONFIG=${GKE_KUBECONFIG:-$here/.kube/config}
REGISTRY=$REGION-docker.pkg.dev/$PROJECT/$REPOSITORY
gc=(--project "$PROJECT" --quiet)

gcloud auth print-access-token >/dev/null 2>&1 || die "not logged in to Google Cloud: run gcloud auth login"
log "project $PROJECT, cluster $CLUSTER in $ZONE, registry $REGISTRY"
gcloud services enable container.googleapis.com artifactregistry.googleapis.com "${gc[@]}"

if ! gcloud artifacts repositories describe "$REPOSITORY" --location "$REGION" "${gc[@]}" >/dev/null 2>&1; then
    log "creating Artifact Registry repository $REPOSITORY"
    gcloud artifacts repositories create "$REPOSITORY" --repository-format docker \
        --location "$REGION" --description "runbox images" "${gc[@]}"
fi
# Nodes pull as the Compute Engine default service account.
project_number=$(gcloud projects describe "$PROJECT" --format 'value(projectNumber)')
gcloud artifacts repositories add-iam-policy-binding "$REPOSITORY" --location "$REGION" \
    --member "serviceAccount:$project_number-compute@developer.gserviceaccount.com" \
    --role roles/artifactregistry.reader "${gc[@]}" >/dev/null

if ! gcloud container clusters describe "$CLUSTER" --location "$ZONE" "${gc[@]}" >/dev/null 2>&1; then
    log "creating GKE cluster $CLUSTER (Kubernetes $K8S_VERSION, Dataplane V2)"
    gcloud container clusters create "$CLUSTER" --location "$ZONE" \
        --release-channel "$RELEASE_CHANNEL" --cluster-version "$K8S_VERSION" \
        --enable-dataplane-v2 --enable-ip-alias --cluster-ipv4-cidr "$POD_CIDR" \
        --machine-type "$SYSTEM_MACHINE_TYPE" --num-nodes "$SYSTEM_NODES" \
        "${gc[@]}"
fi

if ! gcloud container node-pools describe executors --cluster "$CLUSTER" --location "$ZONE" "${gc[@]}" >/dev/null 2>&1; then
    log "adding node pool executors ($EXECUTOR_MACHINE_TYPE, $EXECUTOR_MIN..$EXECUTOR_MAX nodes)"
    gcloud container node-pools create executors --cluster "$CLUSTER" --location "$ZONE" \
        --machine-type "$EXECUTOR_MACHINE_TYPE" --num-nodes "$EXECUTOR_MIN" \
        --enable-autoscaling --min-nodes "$EXECUTOR_MIN" --max-nodes "$EXECUTOR_MAX" \
        --node-labels runbox.dev/pool=executor "${gc[@]}"
fi

mkdir -p "$(dirname "$KUBECONFIG")"
gcloud container clusters get-credentials "$CLUSTER" --location "$ZONE" "${gc[@]}"
chmod 600 "$KUBECONFIG"

build_images
gcloud auth configure-docker "$REGION-docker.pkg.dev" "${gc[@]}"
push_images "$REGISTRY"

install_monitoring
deploy_overlay "$OVERLAY" "$REGISTRY"
print_url
log "kubectl: export KUBECONFIG=$KUBECONFIG"
