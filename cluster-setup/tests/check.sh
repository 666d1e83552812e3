#!/usr/bin/env bash
# The offline proof for cluster-setup/, run by `cargo xtask test` from the
# repository root (or by hand, from anywhere). No cluster, no cloud account and
# no network beyond package registries. Five checks:
#
#   - syntax: ansible-playbook --syntax-check on every playbook in kubeadm/
#   - lint: ansible-lint --offline --profile production on kubeadm/
#   - vagrant: vagrant validate --ignore-provider, in a few configurations
#   - shellcheck: every *.sh under cluster-setup/
#   - consistency: tests/consistency.py (versions, CIDRs, image names, k8s/ wiring)
#
# Tools are installed on first use and reused after: ansible + ansible-lint
# (pinned and hash-checked by tests/requirements.txt) into a venv in the runbox
# cache, vagrant and shellcheck with apt-get when they are missing.
# Exits non-zero if any check fails; the last line is the tally.
set -euo pipefail

cs=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
root=$(dirname "$cs")
kubeadm=$cs/kubeadm
# shellcheck source=../lib/common.sh
source "$cs/lib/common.sh"
# shellcheck source=../lib/venv.sh
source "$cs/lib/venv.sh"
cache=$(cluster_setup_cache_dir)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

passed=0
failed=0
venv=""

say() { printf 'cluster-setup: %s\n' "$*"; }

# run NAME FUNCTION: one check, in a subshell; its output is shown only when it fails.
run() {
    local name=$1 start ms
    shift
    start=$(date +%s%N)
    if ("$@") >"$work/out" 2>&1; then
        passed=$((passed + 1))
        status=ok
    else
        failed=$((failed + 1))
        status=FAIL
    fi
    ms=$((($(date +%s%N) - start) / 1000000))
    say "$(printf '%-5s %-12s %3d.%ds' "$status" "$name" $((ms / 1000)) $((ms % 1000 / 100)))"
    [[ "$status" == ok ]] || sed 's/^/    /' "$work/out"
}

# --- tools -------------------------------------------------------------------

apt_tools() {
    local missing=() sudo=()
    command -v vagrant >/dev/null 2>&1 || missing+=(vagrant)
    command -v shellcheck >/dev/null 2>&1 || missing+=(shellcheck)
    [[ ${#missing[@]} -eq 0 ]] && return 0
    command -v apt-get >/dev/null 2>&1 || {
        say "install ${missing[*]} (no apt-get here)"
        return 1
    }
    if [[ $EUID -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || {
            say "apt-get install ${missing[*]} needs root"
            return 1
        }
        sudo=(sudo -n)
    fi
    say "installing ${missing[*]} with apt-get"
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get update -qq
    ${sudo[@]+"${sudo[@]}"} env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

if ! venv=$(cluster_setup_venv); then
    say "could not install ansible/ansible-lint into the venv (see above)"
    venv=""
fi
apt_tools || true

# Ansible and ansible-lint keep their state in the cache, not in ~/.ansible.
export ANSIBLE_HOME=$cache/ansible-home
export ANSIBLE_CONFIG=$kubeadm/ansible.cfg
export ANSIBLE_NOCOLOR=1 NO_COLOR=1
[[ -n "$venv" ]] && export PATH="$venv/bin:$PATH"

need_tool() {
    command -v "$1" >/dev/null 2>&1 || {
        echo "$1 is not installed (the tool install above failed)"
        return 1
    }
}

# --- checks ------------------------------------------------------------------

playbooks=()
for f in "$kubeadm"/*.yml; do
    playbooks+=("$(basename "$f")")
done

check_syntax() {
    need_tool ansible-playbook || return 1
    cd "$kubeadm"
    ansible-playbook --syntax-check -i inventory/example.ini "${playbooks[@]}"
}

check_lint() {
    need_tool ansible-lint || return 1
    cd "$kubeadm"
    ansible-lint --offline --profile production --config-file .ansible-lint \
        --project-dir . "${playbooks[@]}" roles group_vars
}

check_vagrant() {
    need_tool vagrant || return 1
    cd "$kubeadm"
    export VAGRANT_HOME=$cache/vagrant-home VAGRANT_DOTFILE_PATH=$work/vagrant
    export VAGRANT_CHECKPOINT_DISABLE=1 VAGRANT_DISABLE_STRICT_DEPENDENCY_ENFORCEMENT=1
    vagrant validate --ignore-provider
    RUNBOX_WORKERS=0 RUNBOX_BOX=example/box vagrant validate --ignore-provider
    # The Vagrantfile must refuse a VM network inside the pod CIDR.
    if RUNBOX_NETWORK=$(setting pod_cidr) vagrant validate --ignore-provider; then
        echo "vagrant validate accepted a VM network inside the pod CIDR"
        return 1
    fi
}

check_shellcheck() {
    need_tool shellcheck || return 1
    local scripts=()
    while IFS= read -r f; do
        scripts+=("$f")
    done < <(find "$cs" \( -name .vagrant -o -name .images -o -name .build \) -prune -o -name '*.sh' -print | sort)
    echo "${#scripts[@]} scripts"
    shellcheck "${scripts[@]}"
}

check_consistency() {
    [[ -n "$venv" ]] || {
        echo "no venv (the tool install above failed)"
        return 1
    }
    "$venv/bin/python" "$cs/tests/consistency.py" "$root"
}

run syntax check_syntax
run lint check_lint
run vagrant check_vagrant
run shellcheck check_shellcheck
run consistency check_consistency

say "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
