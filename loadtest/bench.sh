#!/usr/bin/env bash
# Load-test benchmarks for docs/benchmarks.md, made with `loadtest` on this machine:
#   1. saturation throughput of `hello` and `cpu` through the gateway (closed-loop worker sweep),
#      and through a gateway with its embedded executor (the single-machine default),
#   2. the latency curve at 25/50/75/100 % of that throughput (open loop),
#   3. round-robin against least-inflight under `mixed` (open loop, same rate, same seed),
#   4. the same workloads against runbox-baseline (native python3 spawned per request).
# JSON reports and SVG plots go to $OUT; a Markdown section goes to stdout; progress to stderr.
#
#   BIN_DIR=target/release loadtest/bench.sh > section.md
#
# BIN_DIR must hold executor, gateway, loadtest and runbox-baseline (release builds preferred).
# Optional: EXECUTORS (2), OUT (docs/loadtest), LINK_PREFIX (how the Markdown links to OUT from
# docs/benchmarks.md: loadtest), SWEEP_STEP (seconds per closed-loop step: 4), STEP (seconds per
# open-loop step: 8), MIXED_STEP (15), WORKERS ("1 2 4 8 16"), PYTHON (the baseline's interpreter:
# /usr/bin/python3 if present, else python3 on PATH), BUILD_NOTE (how the binaries were built, for
# the text), EXECUTOR_GUEST_WASM, EXECUTOR_CACHE_DIR.
# Needs curl and jq. Everything listens on 127.0.0.1 and is stopped on exit.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${BIN_DIR:?set BIN_DIR to a directory holding executor, gateway, loadtest and runbox-baseline}"
BIN_DIR=$(cd "$BIN_DIR" && pwd)
EXECUTORS=${EXECUTORS:-2}
OUT=${OUT:-$ROOT/docs/loadtest}
LINK_PREFIX=${LINK_PREFIX:-loadtest}
SWEEP_STEP=${SWEEP_STEP:-4}
STEP=${STEP:-8}
MIXED_STEP=${MIXED_STEP:-15}
WORKERS=${WORKERS:-1 2 4 8 16}
BUILD_NOTE=${BUILD_NOTE:-binaries from \`$BIN_DIR\`}
export EXECUTOR_GUEST_WASM=${EXECUTOR_GUEST_WASM:-$ROOT/.runbox/guest/python.wasm}
if [[ -z ${PYTHON:-} ]]; then
  if [[ -x /usr/bin/python3 ]]; then PYTHON=/usr/bin/python3; else PYTHON=$(command -v python3); fi
fi

log() { echo "bench: $*" >&2; }
die() {
  log "$*"
  exit 1
}

for tool in curl jq; do
  command -v "$tool" >/dev/null || die "$tool is needed"
done
for bin in executor gateway loadtest runbox-baseline; do
  [[ -x $BIN_DIR/$bin ]] || die "$BIN_DIR/$bin is missing"
done
[[ -f $EXECUTOR_GUEST_WASM ]] || die "no guest at $EXECUTOR_GUEST_WASM (cargo xtask guest)"
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)

LOGS=$(mktemp -d)
PIDS=()
cleanup() {
  local pid
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${PIDS[@]}"; do
    wait "$pid" 2>/dev/null || true
  done
  rm -rf "$LOGS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# start NAME COMMAND...: runs COMMAND in the background, logging to $LOGS/NAME.log, and sets
# ADDR to the http:// address from its first JSON log line with `fields.addr` (and METRICS to
# its `fields.metrics_addr`, the metrics listener's, when the line has one).
ADDR=""
METRICS=""
start() {
  local name=$1
  shift
  "$@" >"$LOGS/$name.log" 2>&1 &
  PIDS+=("$!")
  ADDR=""
  local _
  for _ in $(seq 600); do
    ADDR=$(sed -n 's/.*"addr":"\([^"]*\)".*/\1/p' "$LOGS/$name.log" | head -n 1)
    [[ -n $ADDR ]] && break
    sleep 0.1
  done
  [[ -n $ADDR ]] || {
    cat "$LOGS/$name.log" >&2
    die "$name did not start"
  }
  METRICS=$(sed -n 's/.*"metrics_addr":"\([^"]*\)".*/\1/p' "$LOGS/$name.log" | head -n 1)
  [[ -n $METRICS ]] && METRICS="http://$METRICS"
  ADDR="http://$ADDR"
}

# wait_ready URL: until GET URL/readyz answers 200.
wait_ready() {
  local _
  for _ in $(seq 600); do
    curl -sf -o /dev/null "$1/readyz" 2>/dev/null && return 0
    sleep 0.1
  done
  die "$1 never became ready"
}

# wait_for URL PATTERN: until GET URL answers 200 with a line matching PATTERN (grep -x).
wait_for() {
  local _
  for _ in $(seq 600); do
    if curl -sf "$1" 2>/dev/null | grep -qx -- "$2"; then
      return 0
    fi
    sleep 0.1
  done
  die "$1 never showed $2"
}

# CPU time (user + system, its reaped children included) of a process, in clock ticks.
ticks() { awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat"; }
executor_ticks() {
  local pid sum=0
  for pid in "${EXEC_PIDS[@]}"; do sum=$((sum + $(ticks "$pid"))); done
  echo "$sum"
}
# CPU time of this script's reaped children (the loadtest runs), in clock ticks.
client_ticks() { awk '{ print $16 + $17 }' "/proc/$$/stat"; }

# ---------------------------------------------------------------------------------------------
log "starting $EXECUTORS executors, two gateways (round-robin, least-inflight), an embedded gateway and the baseline"
EXEC_URLS=()
EXEC_METRICS=()
EXEC_PIDS=()
for i in $(seq "$EXECUTORS"); do
  start "executor-$i" env EXECUTOR_LISTEN=127.0.0.1:0 EXECUTOR_METRICS_LISTEN=127.0.0.1:0 \
    EXECUTOR_NAME="executor-$i" EXECUTOR_LOG_FORMAT=json RUST_LOG=warn,executor=info "$BIN_DIR/executor"
  EXEC_URLS+=("$ADDR")
  EXEC_METRICS+=("$METRICS")
  EXEC_PIDS+=("${PIDS[-1]}")
done
for url in "${EXEC_URLS[@]}"; do
  wait_ready "$url"
done
executor_list=$(
  IFS=,
  echo "${EXEC_URLS[*]}"
)
gateway() {
  start "gateway-$1" env GATEWAY_LISTEN=127.0.0.1:0 GATEWAY_METRICS_LISTEN=127.0.0.1:0 \
    GATEWAY_EXECUTORS="$executor_list" GATEWAY_BALANCE="$1" GATEWAY_RATE_LIMIT_RPS=0 \
    GATEWAY_LOG_FORMAT=json RUST_LOG=warn,gateway=info "$BIN_DIR/gateway"
  wait_for "$METRICS/metrics" "gateway_backends{state=\"ready\"} $EXECUTORS"
}
gateway round-robin
GATEWAY=$ADDR
GATEWAY_METRICS=$METRICS
GATEWAY_PID=${PIDS[-1]}
gateway least-inflight
GATEWAY_LI=$ADDR
GATEWAY_LI_METRICS=$METRICS
# The single-machine default: one gateway process with its executor embedded (`cargo xtask run`).
# One load generator is one client, so the per-client fairness caps (on by default, half the
# slots) are lifted, as the rate limit is: this measures the machine, not one client's share.
start gateway-embedded env GATEWAY_LISTEN=127.0.0.1:0 GATEWAY_METRICS_LISTEN=127.0.0.1:0 \
  GATEWAY_CLIENT_MAX_INFLIGHT=0 GATEWAY_CLIENT_BUDGET_SECONDS=0 GATEWAY_RATE_LIMIT_RPS=0 \
  GATEWAY_LOG_FORMAT=json RUST_LOG=warn,gateway=info "$BIN_DIR/gateway"
EMBEDDED=$ADDR
EMBEDDED_PID=${PIDS[-1]}
wait_ready "$EMBEDDED"
start baseline env BASELINE_LISTEN=127.0.0.1:0 BASELINE_PYTHON="$PYTHON" BASELINE_QUEUE_DEPTH=64 \
  "$BIN_DIR/runbox-baseline"
BASELINE=$ADDR
BASELINE_PID=${PIDS[-1]}
wait_ready "$BASELINE"
PYTHON_VERSION=$("$PYTHON" -c 'import platform; print(platform.python_version())')
watch_all="$GATEWAY_METRICS/metrics"
watch_all_li="$GATEWAY_LI_METRICS/metrics"
for url in "${EXEC_METRICS[@]}"; do
  watch_all+=",$url/metrics"
  watch_all_li+=",$url/metrics"
done

# Addresses by name, longest first (so that no address is replaced inside a longer one).
NAMES=$(
  {
    echo "$GATEWAY GATEWAY"
    echo "$GATEWAY_LI GATEWAY_LI"
    echo "$EMBEDDED EMBEDDED"
    echo "$BASELINE BASELINE"
    for i in "${!EXEC_URLS[@]}"; do echo "${EXEC_URLS[$i]} EXECUTOR_$((i + 1))"; done
  } | awk '{ print length($1), $0 }' | sort -rn | cut -d' ' -f2-
)

# The command as run, with addresses named and paths relative to docs/.
shown() {
  local text url name
  text=$(printf '%q ' loadtest "$@")
  text=${text% }
  text=${text//\\,/,}
  while read -r url name; do
    text=${text//"$url"/\$$name}
  done <<<"$NAMES"
  echo "${text//"$OUT"/$LINK_PREFIX}"
}

# lt NAME ARGS...: one loadtest run → $OUT/NAME.json; the table goes to stderr.
lt() {
  local name=$1
  shift
  log "$name: $(shown "$@")"
  "$BIN_DIR/loadtest" --no-progress --label "$name" --json "$OUT/$name.json" "$@" >&2
}

field() { jq -r "$2" "$OUT/$1.json"; }
ms() { jq -r "$2 | . * 100 | round / 100" "$OUT/$1.json"; }
percent_of() { awk -v x="$1" -v p="$2" 'BEGIN { printf "%.1f", x * p / 100 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%.2f×", b / a; else print "-" }'; }
md_summary() {
  local files=()
  local n
  for n in "$@"; do files+=("$OUT/$n.json"); done
  "$BIN_DIR/loadtest" --summarize "${files[@]}" --markdown
}
svg() { echo "![$1]($LINK_PREFIX/$2.svg)"; }
per_executor='.executors | [.[]] | map(tostring) | join(" / ")'
error_codes='(.by_error_code + .transport_errors) | to_entries | map("\(.key) \(.value)") | join(", ") | if . == "" then "none" else . end'

# sweep PREFIX URL SCENARIO [WARMUP]: closed loop at each worker count; sets BEST (the label with
# the highest goodput) and SAT (its goodput). Records CPU use of the runbox processes per step.
declare -A CPU_SHARE
sweep() {
  local prefix=$1 url=$2 scenario=$3 warmup=${4:-10} w
  local names=()
  for w in $WORKERS; do
    local g0 g1 e0 e1 c0 c1 t0 t1 pid=$GATEWAY_PID kind=gateway
    [[ $url == "$BASELINE" ]] && pid=$BASELINE_PID kind=baseline
    [[ $url == "$EMBEDDED" ]] && pid=$EMBEDDED_PID kind=embedded
    g0=$(ticks "$pid")
    e0=$(executor_ticks)
    c0=$(client_ticks)
    t0=$(date +%s.%N)
    lt "$prefix-w$w" --url "$url" --scenario "$scenario" --workers "$w" --duration "${SWEEP_STEP}s" \
      --warmup "$warmup"
    t1=$(date +%s.%N)
    c1=$(client_ticks)
    e1=$(executor_ticks)
    g1=$(ticks "$pid")
    CPU_SHARE[$prefix-w$w]=$(awk -v g=$((g1 - g0)) -v e=$((e1 - e0)) -v c=$((c1 - c0)) \
      -v hz="$(getconf CLK_TCK)" -v t="$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')" \
      -v kind="$kind" 'BEGIN {
        if (kind == "baseline") printf "baseline %.2f", g / hz / t
        else if (kind == "embedded") printf "gateway with its executor %.2f", g / hz / t
        else printf "gateway %.2f, executors %.2f", g / hz / t, e / hz / t
        printf ", loadtest %.2f", c / hz / t
      }')
    names+=("$prefix-w$w")
  done
  BEST=$(for n in "${names[@]}"; do jq -r '"\(.goodput_rps) \(.label)"' "$OUT/$n.json"; done |
    sort -g | tail -n 1 | cut -d' ' -f2)
  SAT=$(field "$BEST" .goodput_rps)
  SWEPT=("${names[@]}")
}

# ---------------------------------------------------------------------------------------------
STARTED=$(date +%s)
log "1. saturation sweeps through the gateway"
sweep hello "$GATEWAY" hello
HELLO_BEST=$BEST
HELLO_SAT=$SAT
HELLO_RUNS=("${SWEPT[@]}")
sweep cpu "$GATEWAY" cpu 4
CPU_BEST=$BEST
CPU_SAT=$SAT
CPU_RUNS=("${SWEPT[@]}")
sweep embedded-hello "$EMBEDDED" hello
EMB_HELLO_BEST=$BEST
EMB_HELLO_SAT=$SAT
EMB_HELLO_RUNS=("${SWEPT[@]}")
sweep embedded-cpu "$EMBEDDED" cpu 4
EMB_CPU_BEST=$BEST
EMB_CPU_SAT=$SAT
EMB_CPU_RUNS=("${SWEPT[@]}")

log "2. latency curves (open loop at 25/50/75/100 % of saturation)"
curve() {
  local workload=$1 sat=$2 p rate
  CURVE=()
  for p in 25 50 75 100; do
    rate=$(percent_of "$sat" "$p")
    local extra=()
    [[ $p == 100 ]] && extra=(--plot "$OUT/$workload-at-$p.svg" --watch-metrics "$watch_all")
    lt "$workload-at-$p" --url "$GATEWAY" --scenario "$workload" --rate "$rate" --duration "${STEP}s" \
      --warmup 4 "${extra[@]}"
    CURVE+=("$workload-at-$p")
  done
  local files=()
  for p in "${CURVE[@]}"; do files+=("$OUT/$p.json"); done
  "$BIN_DIR/loadtest" --summarize "${files[@]}" --curve "$OUT/$workload-curve.svg" >/dev/null
}
curve hello "$HELLO_SAT"
HELLO_CURVE=("${CURVE[@]}")
curve cpu "$CPU_SAT"
CPU_CURVE=("${CURVE[@]}")

log "3. round-robin against least-inflight under mixed"
lt mixed-capacity --url "$GATEWAY" --scenario mixed --workers 8 --duration "${SWEEP_STEP}s" --warmup 10
MIXED_SAT=$(field mixed-capacity .goodput_rps)
MIXED_RATE=$(percent_of "$MIXED_SAT" 85)
lt mixed-round-robin --url "$GATEWAY" --scenario mixed --rate "$MIXED_RATE" --duration "${MIXED_STEP}s" \
  --seed 7 --watch-metrics "$watch_all" --watch-interval 500ms --plot "$OUT/mixed-round-robin.svg"
lt mixed-least-inflight --url "$GATEWAY_LI" --scenario mixed --rate "$MIXED_RATE" \
  --duration "${MIXED_STEP}s" --seed 7 --watch-metrics "$watch_all_li" --watch-interval 500ms \
  --plot "$OUT/mixed-least-inflight.svg"

log "4. the baseline: python3 spawned per request"
sweep baseline-hello "$BASELINE" hello 4
BASE_HELLO_BEST=$BEST
BASE_HELLO_SAT=$SAT
BASE_HELLO_RUNS=("${SWEPT[@]}")
sweep baseline-cpu "$BASELINE" cpu 2
BASE_CPU_BEST=$BEST
BASE_CPU_SAT=$SAT
BASE_CPU_RUNS=("${SWEPT[@]}")
same_rate() {
  local workload=$1 a=$2 b=$3 rate
  rate=$(awk -v a="$a" -v b="$b" 'BEGIN { m = a < b ? a : b; printf "%.1f", m / 2 }')
  lt "$workload-runbox-at-$rate" --url "$GATEWAY" --scenario "$workload" --rate "$rate" \
    --duration "${STEP}s" --warmup 4
  lt "$workload-baseline-at-$rate" --url "$BASELINE" --scenario "$workload" --rate "$rate" \
    --duration "${STEP}s" --warmup 4 --plot "$OUT/$workload-baseline-at-$rate.svg"
  SAME=("$workload-runbox-at-$rate" "$workload-baseline-at-$rate")
}
same_rate hello "$HELLO_SAT" "$BASE_HELLO_SAT"
HELLO_SAME=("${SAME[@]}")
same_rate cpu "$CPU_SAT" "$BASE_CPU_SAT"
CPU_SAME=("${SAME[@]}")
ELAPSED=$(($(date +%s) - STARTED))
log "done in ${ELAPSED}s; writing the Markdown section"

# ---------------------------------------------------------------------------------------------
CPU_MODEL=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
sweep_cmd() {
  shown --url "$1" --scenario "$2" --workers N --duration "${SWEEP_STEP}s" --warmup "$3" --json "$OUT/$4-wN.json"
}
cpu_line() {
  local n out=""
  for n in "$@"; do
    local w=${n##*-w} unit=workers
    [[ $w == 1 ]] && unit=worker
    out+="$w $unit: ${CPU_SHARE[$n]:-?}; "
  done
  echo "${out%; }"
}

cat <<EOF
## Load tests (loadtest)

Made by \`BIN_DIR=… loadtest/bench.sh\` on $(nproc) CPUs ($CPU_MODEL), $(date -u +%Y-%m-%d), in
${ELAPSED} s. One machine holds everything: the load generator, the gateway, $EXECUTORS executors
and the baseline share its $(nproc) cores, so "saturation" below means *this machine* is saturated
(the client and the gateway take their share of the CPU), not that one executor is. Read the
ratios more than the absolute figures. \`\$GATEWAY\` is a round-robin gateway over
\`\$EXECUTOR_1\`…\`\$EXECUTOR_$EXECUTORS\`, \`\$GATEWAY_LI\` the same with
\`GATEWAY_BALANCE=least-inflight\`, \`\$BASELINE\` is \`runbox-baseline\` spawning \`$PYTHON\`
($PYTHON_VERSION) per request. Every executor runs with its defaults: concurrency = CPU count,
queue 4 × that (so ${EXECUTORS} × $(nproc) execution slots on $(nproc) cores). Builds: $BUILD_NOTE. JSON reports and plots: [\`$LINK_PREFIX/\`]($LINK_PREFIX/).

### Saturation throughput

Closed loop, ${SWEEP_STEP} s per step, worker counts ${WORKERS// /, }; saturation = the best
goodput of the sweep.

| workload | runbox, gateway with its embedded executor (req/s) | runbox via gateway over $EXECUTORS executors (req/s) | baseline, python3 per request (req/s) | embedded / baseline | $EXECUTORS executors / baseline |
|---|---:|---:|---:|---:|---:|
| \`hello\` | $(printf '%.1f' "$EMB_HELLO_SAT") ($EMB_HELLO_BEST) | $(printf '%.1f' "$HELLO_SAT") ($HELLO_BEST) | $(printf '%.1f' "$BASE_HELLO_SAT") ($BASE_HELLO_BEST) | $(ratio "$BASE_HELLO_SAT" "$EMB_HELLO_SAT") | $(ratio "$BASE_HELLO_SAT" "$HELLO_SAT") |
| \`cpu\` | $(printf '%.1f' "$EMB_CPU_SAT") ($EMB_CPU_BEST) | $(printf '%.1f' "$CPU_SAT") ($CPU_BEST) | $(printf '%.1f' "$BASE_CPU_SAT") ($BASE_CPU_BEST) | $(ratio "$BASE_CPU_SAT" "$EMB_CPU_SAT") | $(ratio "$BASE_CPU_SAT" "$CPU_SAT") |

Goal: \`hello\` through the gateway with its embedded executor ≥ 15× the baseline.
\`\$EMBEDDED\` is the single-machine default (\`gateway\` with no executors configured), with
\`GATEWAY_CLIENT_MAX_INFLIGHT=0 GATEWAY_CLIENT_BUDGET_SECONDS=0 GATEWAY_RATE_LIMIT_RPS=0\`: the load
generator is one client, and the per-client fairness caps would otherwise hold it to half the
slots.

\`hello\` through the gateway, \`$(sweep_cmd "$GATEWAY" hello 10 hello)\`
(CPU used, in cores out of $(nproc) — $(cpu_line "${HELLO_RUNS[@]}")):

$(md_summary "${HELLO_RUNS[@]}")

\`hello\` through the embedded gateway, \`$(sweep_cmd "$EMBEDDED" hello 10 embedded-hello)\`
(CPU in cores: $(cpu_line "${EMB_HELLO_RUNS[@]}")):

$(md_summary "${EMB_HELLO_RUNS[@]}")

\`cpu\` through the embedded gateway, \`$(sweep_cmd "$EMBEDDED" cpu 4 embedded-cpu)\`
(CPU in cores: $(cpu_line "${EMB_CPU_RUNS[@]}")):

$(md_summary "${EMB_CPU_RUNS[@]}")

\`cpu\` through the gateway, \`$(sweep_cmd "$GATEWAY" cpu 4 cpu)\`
(CPU in cores: $(cpu_line "${CPU_RUNS[@]}")):

$(md_summary "${CPU_RUNS[@]}")

Baseline, \`$(sweep_cmd "$BASELINE" hello 4 baseline-hello)\` and the same with \`--scenario cpu\`
(CPU in cores, the baseline with its python3 children: $(cpu_line "${BASE_HELLO_RUNS[@]}")):

$(md_summary "${BASE_HELLO_RUNS[@]}")

With \`--scenario cpu\` (CPU in cores: $(cpu_line "${BASE_CPU_RUNS[@]}")):

$(md_summary "${BASE_CPU_RUNS[@]}")

### Latency against load

Open loop at 25/50/75/100 % of the saturation throughput, ${STEP} s per step, latency measured
from each request's intended send time (a server that falls behind is charged for the queue).
For example \`$(shown --url "$GATEWAY" --scenario hello --rate "$(percent_of "$HELLO_SAT" 100)" --duration "${STEP}s" --warmup 4 --plot "$OUT/hello-at-100.svg" --watch-metrics "$watch_all" --json "$OUT/hello-at-100.json")\`.

$(md_summary "${HELLO_CURVE[@]}")

$(md_summary "${CPU_CURVE[@]}")

$(svg "hello: latency against throughput" hello-curve) $(svg "cpu: latency against throughput" cpu-curve)

At 100 % (the offered rate equals what the closed loop achieved), over time, with in-flight
executions per executor:

$(svg "hello at 100 %" hello-at-100)

$(svg "cpu at 100 %" cpu-at-100)

### Round-robin against least-inflight under \`mixed\`

\`mixed\` is the weighted mix with snippets hitting the timeout, fuel, memory and output limits.
Capacity first (\`$(shown --url "$GATEWAY" --scenario mixed --workers 8 --duration "${SWEEP_STEP}s" --warmup 10 --json "$OUT/mixed-capacity.json")\`:
$(printf '%.1f' "$MIXED_SAT") req/s), then both gateways at 85 % of it, same seed (same sequence of
snippets), ${MIXED_STEP} s each:
\`$(shown --url "$GATEWAY" --scenario mixed --rate "$MIXED_RATE" --duration "${MIXED_STEP}s" --seed 7 --watch-metrics "$watch_all" --watch-interval 500ms --plot "$OUT/mixed-round-robin.svg" --json "$OUT/mixed-round-robin.json")\`
and the same against \`\$GATEWAY_LI\`. Wrong results count responses whose status or stdout
differs from the snippet's expectation: limits holding under load means 0.

$("$BIN_DIR/loadtest" --compare "$OUT/mixed-round-robin.json" "$OUT/mixed-least-inflight.json" --markdown)

Per executor (\`x-runbox-executor\`): round-robin $(field mixed-round-robin "$per_executor"),
least-inflight $(field mixed-least-inflight "$per_executor"). Errors by API code: round-robin
$(field mixed-round-robin "$error_codes"), least-inflight $(field mixed-least-inflight "$error_codes")
(\`overloaded\` is a 429: the executor's slots and queue were full, and so were the other's when
the gateway tried it).

$(svg "mixed, round-robin" mixed-round-robin)

$(svg "mixed, least-inflight" mixed-least-inflight)

### Against the baseline at the same rate

Open loop at half the lower of the two saturation figures, ${STEP} s (runbox through the gateway
first, then the baseline), e.g. \`$(shown --url "$BASELINE" --scenario hello --rate "${HELLO_SAME[1]##*-at-}" --duration "${STEP}s" --warmup 4 --json "$OUT/${HELLO_SAME[1]}.json")\`:

$("$BIN_DIR/loadtest" --compare "$OUT/${HELLO_SAME[0]}.json" "$OUT/${HELLO_SAME[1]}.json" --markdown)

$("$BIN_DIR/loadtest" --compare "$OUT/${CPU_SAME[0]}.json" "$OUT/${CPU_SAME[1]}.json" --markdown)
EOF
