# shellcheck shell=bash
# The private Python virtualenv holding ansible and ansible-lint, pinned and
# hash-checked by cluster-setup/tests/requirements.txt. Sourced by
# tests/check.sh and kubeadm/cluster.sh; `cluster_setup_venv` prints its path.
#
# Lives in the same cache as `cargo xtask`'s tools: RUNBOX_CACHE_DIR, else
# $XDG_CACHE_HOME/runbox, else ~/.cache/runbox. A stamp holding the
# requirements' hash makes a pin bump rebuild it; otherwise it is reused as is.

cluster_setup_cache_dir() {
    if [[ -n "${RUNBOX_CACHE_DIR:-}" ]]; then
        printf '%s\n' "$RUNBOX_CACHE_DIR"
    elif [[ -n "${XDG_CACHE_HOME:-}" ]]; then
        printf '%s\n' "$XDG_CACHE_HOME/runbox"
    else
        printf '%s\n' "$HOME/.cache/runbox"
    fi
}

# Creates (or reuses) the venv and prints its path. Progress goes to stderr.
cluster_setup_venv() {
    local here req venv want have
    here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
    req=$here/tests/requirements.txt
    venv=$(cluster_setup_cache_dir)/venv-cluster-setup
    want=$({ sha256sum "$req" 2>/dev/null || shasum -a 256 "$req"; } | cut -d' ' -f1)
    have=$(cat "$venv/.requirements.sha256" 2>/dev/null || true)
    if [[ "$want" == "$have" && -x "$venv/bin/ansible-lint" ]]; then
        printf '%s\n' "$venv"
        return 0
    fi
    echo "cluster-setup: installing ansible + ansible-lint (pinned, hash-checked) into $venv" >&2
    rm -rf "$venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv" >&2
    # With --require-hashes pip also refuses any dependency the file does not pin.
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
        --require-hashes -r "$req" >&2
    printf '%s\n' "$want" >"$venv/.requirements.sha256"
    printf '%s\n' "$venv"
}
