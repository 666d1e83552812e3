#!/usr/bin/env bash
# runbox on kubeadm, from nothing to a cluster running k8s/overlays/kubeadm.
#
#   ./cluster.sh up               images, VMs, site.yml (again: changes nothing)
#   ./cluster.sh provision        re-run site.yml only
#   ./cluster.sh status           nodes, Calico, the custom metrics API, runbox, URL
#   ./cluster.sh url              the playground's URL
#   ./cluster.sh kubectl ARGS...  kubectl against the cluster
#   ./cluster.sh images           docker build + docker save into .images/
#   ./cluster.sh destroy --yes    delete the VMs (or `kubeadm reset` the inventory's machines)
#
# Vagrant by default (see the Vagrantfile for RUNBOX_WORKERS, RUNBOX_CPUS, ...).
# With RUNBOX_INVENTORY=inventory/mine.ini the same playbook runs against
# machines you already have, and Vagrant is not used at all.
#
#   RUNBOX_PROVIDER        virtualbox (default) or libvirt
#   RUNBOX_INVENTORY       an Ansible inventory instead of Vagrant
#   RUNBOX_BUILD=0         use runbox/executor and runbox/gateway already in the local image store
#   RUNBOX_CONTAINER_TOOL  docker (default) or podman
#   RUNBOX_ANSIBLE_ARGS    extra ansible-playbook arguments, e.g. "--diff -v"
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=../lib/common.sh
source "$here/../lib/common.sh"
# shellcheck source=../lib/venv.sh
source "$here/../lib/venv.sh"

PROVIDER=${RUNBOX_PROVIDER:-${VAGRANT_DEFAULT_PROVIDER:-virtualbox}}
INVENTORY=${RUNBOX_INVENTORY:-}
CONTROL_PLANE=runbox-cp
export KUBECONFIG=$here/.kube/config
export ANSIBLE_CONFIG=$here/ansible.cfg

usage() {
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
}

# The pinned Ansible from cluster-setup/tests/requirements.txt, first on the PATH
# (Vagrant's ansible provisioner runs the ansible-playbook it finds there).
ansible_on_path() {
    local venv
    venv=$(cluster_setup_venv)
    export PATH="$venv/bin:$PATH"
}

vagrant_here() {
    need vagrant
    (cd "$here" && vagrant "$@")
}

# kc ARGS: kubectl on this machine if there is one, else on the control plane.
kc() {
    if command -v kubectl >/dev/null 2>&1; then
        [[ -f "$KUBECONFIG" ]] || die "no kubeconfig at $KUBECONFIG yet: run ./cluster.sh up"
        kubectl "$@"
    elif [[ -z "$INVENTORY" ]]; then
        vagrant_here ssh "$CONTROL_PLANE" --no-tty -c "$(printf '%q ' kubectl "$@")"
    else
        die "kubectl is needed on this machine (or run it on the control plane)"
    fi
}

cmd_images() {
    local image name id dir=$here/.images
    build_images
    mkdir -p "$dir"
    for image in "$EXECUTOR_IMAGE" "$GATEWAY_IMAGE"; do
        name=$(basename "$image" | tr : -)
        id=$("$CONTAINER_TOOL" image inspect --format '{{.Id}}' "$image")
        # Re-save only a changed image, so the nodes re-import only what changed.
        if [[ -f "$dir/$name.tar" && "$(cat "$dir/$name.id" 2>/dev/null)" == "$id" ]]; then
            log "$image unchanged ($dir/$name.tar)"
            continue
        fi
        log "saving $image to $dir/$name.tar"
        "$CONTAINER_TOOL" save --output "$dir/$name.tar.tmp" "$image"
        mv "$dir/$name.tar.tmp" "$dir/$name.tar"
        printf '%s\n' "$id" >"$dir/$name.id"
    done
}

cmd_provision() {
    ansible_on_path
    if [[ -n "$INVENTORY" ]]; then
        local extra=()
        read -r -a extra <<<"${RUNBOX_ANSIBLE_ARGS:-}"
        (cd "$here" && ansible-playbook -i "$INVENTORY" site.yml ${extra[@]+"${extra[@]}"})
    else
        vagrant_here provision
    fi
}

cmd_up() {
    cmd_images
    ansible_on_path
    if [[ -n "$INVENTORY" ]]; then
        cmd_provision
    else
        local args=(up --provision --provider "$PROVIDER")
        # Provisioning runs from the last VM and needs all of them up.
        [[ "$PROVIDER" == libvirt ]] && args+=(--no-parallel)
        vagrant_here "${args[@]}"
    fi
    cmd_url
}

cmd_url() {
    local server host type node_port port
    server=$(kc config view --minify -o jsonpath='{.clusters[0].cluster.server}')
    host=${server#https://}
    host=${host%:*}
    type=$(kc --namespace "$NAMESPACE" get service "$GATEWAY_SERVICE" -o jsonpath='{.spec.type}')
    node_port=$(kc --namespace "$NAMESPACE" get service "$GATEWAY_SERVICE" -o jsonpath='{.spec.ports[0].nodePort}')
    port=$(kc --namespace "$NAMESPACE" get service "$GATEWAY_SERVICE" -o jsonpath='{.spec.ports[0].port}')
    if [[ "$type" == NodePort || "$type" == LoadBalancer ]] && [[ -n "$node_port" ]]; then
        printf 'runbox is up: http://%s:%s/\n' "$host" "$node_port"
    else
        log "service/$GATEWAY_SERVICE is $type; reach it with:"
        log "  ./cluster.sh kubectl --namespace $NAMESPACE port-forward service/$GATEWAY_SERVICE 8080:$port"
    fi
}

cmd_status() {
    local failed=0 metrics
    if [[ -z "$INVENTORY" ]]; then
        vagrant_here status
    fi
    log "nodes"
    kc get nodes -o wide || failed=1
    log "Calico"
    kc get tigerastatus || failed=1
    log "custom metrics API (the HPA's executor_utilisation)"
    metrics=$(kc get --raw /apis/custom.metrics.k8s.io/v1beta1 || true)
    if [[ "$metrics" == *executor_utilisation* ]]; then
        echo "executor_utilisation is served"
    else
        echo "executor_utilisation is NOT served yet (the adapter relists every 30s)"
        failed=1
    fi
    log "runbox"
    kc --namespace "$NAMESPACE" get deployments,hpa,pods -o wide || failed=1
    cmd_url || failed=1
    return "$failed"
}

cmd_destroy() {
    confirm_flag "$@" || die "destroy deletes the cluster; re-run as: ./cluster.sh destroy --yes"
    if [[ -n "$INVENTORY" ]]; then
        ansible_on_path
        (cd "$here" && ansible-playbook -i "$INVENTORY" reset.yml -e confirm_reset=yes)
    else
        vagrant_here destroy --force
    fi
    rm -f "$KUBECONFIG"
}

main() {
    local cmd=${1:-help}
    [[ $# -gt 0 ]] && shift
    case "$cmd" in
    up) cmd_up ;;
    provision) cmd_provision ;;
    status) cmd_status ;;
    url) cmd_url ;;
    images) cmd_images ;;
    kubectl) kc "$@" ;;
    destroy) cmd_destroy "$@" ;;
    help | -h | --help) usage ;;
    *)
        usage >&2
        exit 2
        ;;
    esac
}

main "$@"
