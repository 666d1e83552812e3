#!/usr/bin/env bash
# Tears down what ./up.sh created on Google Cloud: the GKE cluster (with its
# node pools and the load balancer of the gateway's Service) and the Artifact
# Registry repository. Refuses to run without --yes.
# Same variables as up.sh: GKE_PROJECT, GKE_REGION, GKE_ZONE, GKE_CLUSTER, GKE_REPOSITORY.
#   --yes            confirm
#   --keep-registry  keep the Artifact Registry repository and its images
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"

if [[ "${1:-}" == -h || "${1:-}" == --help ]]; then
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
fi

need gcloud
PROJECT=${GKE_PROJECT:-$(gcloud config get-value project 2>/dev/null || true)}
[[ -n "$PROJECT" ]] || die "no project: set GKE_PROJECT or run gcloud config set project <id>"
REGION=${GKE_REGION:-europe-west1}
ZONE=${GKE_ZONE:-europe-west1-b}
CLUSTER=${GKE_CLUSTER:-runbox}
REPOSITORY=${GKE_REPOSITORY:-runbox}
KUBECONFIG_FILE=${GKE_KUBECONFIG:-$here/.kube/config}
keep_registry=false
for arg in "$@"; do
    [[ "$arg" == --keep-registry ]] && keep_registry=true
done
gc=(--project "$PROJECT" --quiet)

what="GKE cluster $CLUSTER ($ZONE)"
[[ "$keep_registry" == true ]] || what+=" and Artifact Registry repository $REPOSITORY ($REGION)"
confirm_flag "$@" || die "this deletes $what in project $PROJECT; re-run with --yes"

if gcloud container clusters describe "$CLUSTER" --location "$ZONE" "${gc[@]}" >/dev/null 2>&1; then
    # The gateway's load balancer belongs to its Service: delete that first so
    # no forwarding rule outlives the cluster (best effort).
    if command -v kubectl >/dev/null 2>&1 && [[ -f "$KUBECONFIG_FILE" ]]; then
        log "deleting service/$GATEWAY_SERVICE and its load balancer"
        kubectl --kubeconfig "$KUBECONFIG_FILE" --namespace "$NAMESPACE" delete service "$GATEWAY_SERVICE" \
            --ignore-not-found --timeout=5m || true
    fi
    log "deleting $CLUSTER"
    gcloud container clusters delete "$CLUSTER" --location "$ZONE" "${gc[@]}"
else
    log "cluster $CLUSTER does not exist"
fi
if [[ "$keep_registry" == false ]] &&
    gcloud artifacts repositories describe "$REPOSITORY" --location "$REGION" "${gc[@]}" >/dev/null 2>&1; then
    log "deleting repository $REPOSITORY"
    gcloud artifacts repositories delete "$REPOSITORY" --location "$REGION" "${gc[@]}"
fi
rm -f "$KUBECONFIG_FILE"
log "done"
