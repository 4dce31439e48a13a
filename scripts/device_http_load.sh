#!/usr/bin/env bash
# The seeds' stress test on the GPU machine (issue 10), qsearch and a Python peer side by side
# in one call: POST /v1/embeddings with 512-token texts and "dimensions": 1024, keep-alive
# clients at concurrency 1,4,8,16,32,64,256,1024 (qsearch-load --input text, exact token
# counts from the tokenizer), first against `qsearch serve --device cuda` with a random-weight
# model of the Qwen3-Embedding-4B shape (make-test-model --shape 4B; default HTTP settings),
# then against /work/shared/bench/peer_server.py (aiohttp + transformers, dynamic batching,
# same shape, random weights). Reports per server and level: QPS, P50/P99/max latency,
# unfinished requests (in flight at the level's end), fairness (fewest/most requests per
# client, starved clients). About 7-8 minutes on an H200; every step is time-limited so the
# whole call stays under 9 minutes (TOTAL_S, default 530 s).
#
# Bundle here first (a Release build with CUDA in build/):
#   /work/shared/tools/devpack .devpack build/qsearch build/bench/qsearch-load -- \
#     .deps/qwen3/tokenizer.json /work/shared/bench/peer_server.py
# then run on the device (device tool, carry [".devpack"]):
#   QSEARCH_COMMIT=$(git rev-parse --short HEAD) bash scripts/device_http_load.sh "$OUT"
# Files written to $1 (6): summary.md (both tables, the verdict against the issue's targets),
# load.tsv (plot-ready: label, concurrency, qps, p50_ms, p99_ms, max_ms, mean_ms, unfinished,
# min_per_client, max_per_client, starved, errors, rejected_429), qsearch.json, peer.json
# (qsearch-load --json), qsearch_server.log, peer.log (their tails).
# Knobs: LEVELS (1,4,8,16,32,64,256,1024), DURATION (14 s per level), WARMUP (3), SHAPE (4B),
# TOKENS (512), DIMENSIONS (1024), SKIP_PEER=1, DEVICE (cuda; DEVICE=cpu SHAPE=tiny SKIP_PEER=1
# is a dry run of the script without a GPU), TOTAL_S (530).
set -uo pipefail
OUT=${1:-${OUT:-/tmp/qsearch-http-load}}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
P=$PWD/.devpack/run.sh
TOK=$PWD/.devpack/extra/tokenizer.json
PEER=$PWD/.devpack/extra/peer_server.py
LEVELS=${LEVELS:-1,4,8,16,32,64,256,1024}
DURATION=${DURATION:-14}
WARMUP=${WARMUP:-3}
SHAPE=${SHAPE:-4B}
TOKENS=${TOKENS:-512}
DIMENSIONS=${DIMENSIONS:-1024}
TOTAL_S=${TOTAL_S:-530}
t_start=$(date +%s)
left() { echo $(( TOTAL_S - ($(date +%s) - t_start) )); }
stamp() { echo "[device_http_load +$(( $(date +%s) - t_start ))s] $*"; }
W=$(mktemp -d /tmp/qsearch-http-load-XXXXXX)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
status=0

wait_ready() {  # port pid seconds
  local i
  for i in $(seq 1 "$3"); do
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=3)' \
      "http://127.0.0.1:$1/ready" > /dev/null 2>&1 && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 1
  done
  return 1
}

# One qsearch-load run; the level loop is bounded by what is left of TOTAL_S.
load() {  # port label json
  local budget=$(( $(left) - 20 ))
  [ "$budget" -lt 30 ] && { stamp "no time left for $2"; return 1; }
  timeout --signal=KILL $(( budget + 15 )) "$P" qsearch-load --port "$1" --concurrency "$LEVELS" \
    --duration "$DURATION" --warmup "$WARMUP" --tokens "$TOKENS" --dimensions "$DIMENSIONS" \
    --input text --tokenizer "$TOK" --timeout 60 --max-total "$budget" --label "$2" \
    --json "$3" --tsv "$OUT/load.tsv"
}

stamp "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
rm -f "$OUT/load.tsv"
stamp "random-weight $SHAPE model"
timeout 150 "$P" qsearch make-test-model --shape "$SHAPE" --tokenizer "$TOK" --out "$W/model" \
  > "$W/model.json" 2>&1 || { stamp "make-test-model failed"; tail -5 "$W/model.json"; exit 1; }

stamp "qsearch serve --device ${DEVICE:-cuda} (default HTTP settings)"
"$P" qsearch serve --model "$W/model" --device "${DEVICE:-cuda}" --data-dir "$W/data" --host 127.0.0.1 \
  --port 18610 > "$W/server.log" 2>&1 &
server=$!
if wait_ready 18610 "$server" 180; then
  load 18610 "qsearch $SHAPE" "$OUT/qsearch.json" > "$W/qsearch.txt" 2>&1 || status=1
  grep -E "concurrency|error" "$W/qsearch.txt" | head -40
else
  stamp "qsearch did not become ready"
  status=1
fi
kill "$server" 2>/dev/null
wait "$server" 2>/dev/null
server=""
tail -c 20000 "$W/server.log" > "$OUT/qsearch_server.log"

if [ -z "${SKIP_PEER:-}" ]; then
  stamp "peer_server.py $SHAPE"
  python3 "$PEER" "$SHAPE" "$TOK" 18611 > "$W/peer.log" 2>&1 &
  server=$!
  if wait_ready 18611 "$server" 240; then
    load 18611 "peer $SHAPE" "$OUT/peer.json" > "$W/peer.txt" 2>&1 || status=1
    grep -E "concurrency|error" "$W/peer.txt" | head -40
  else
    stamp "the peer did not become ready"
    status=1
  fi
  kill "$server" 2>/dev/null
  wait "$server" 2>/dev/null
  server=""
  tail -c 20000 "$W/peer.log" > "$OUT/peer.log"
fi

python3 - "$OUT" "$SHAPE" "$TOKENS" "$DIMENSIONS" "${QSEARCH_COMMIT:-?}" \
  "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1)" \
  "$DURATION" "$WARMUP" > "$OUT/summary.md" <<'PY'
import csv, os, sys
out, shape, tokens, dims, commit, gpu, duration, warmup = sys.argv[1:9]
rows = []
tsv = os.path.join(out, "load.tsv")
if os.path.exists(tsv):
    rows = list(csv.DictReader(open(tsv), delimiter="\t"))
print(f"# HTTP stress test: {shape} shape, {tokens}-token texts, dimensions {dims}")
print()
print(f"commit {commit}, {gpu}; qsearch-load --input text, {duration} s per level after {warmup} s "
      "of warm-up, one keep-alive connection per client. qsearch with its default HTTP settings; "
      "the peer is shared/bench/peer_server.py (aiohttp + transformers bf16, dynamic batching).")
for label in dict.fromkeys(r["label"] for r in rows):
    print()
    print(f"## {label}")
    print()
    print("| clients | QPS | P50 ms | P99 ms | max ms | unfinished | per client min/max | starved | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        if r["label"] != label:
            continue
        print(f"| {r['concurrency']} | {float(r['qps']):.1f} | {float(r['p50_ms']):.0f} | "
              f"{float(r['p99_ms']):.0f} | {float(r['max_ms']):.0f} | {r['unfinished']} | "
              f"{r['min_per_client']}/{r['max_per_client']} | {r['starved']} | {r['errors']} |")
q = {int(r["concurrency"]): r for r in rows if r["label"].startswith("qsearch")}
print()
print("## Targets (issue 10)")
if 64 in q:
    r = q[64]
    qps, p50, p99 = float(r["qps"]), float(r["p50_ms"]), float(r["p99_ms"])
    print(f"- 64 clients: {qps:.1f} QPS (target >= 150: {'met' if qps >= 150 else 'NOT met'}), "
          f"P99/P50 = {p99 / p50 if p50 else float('nan'):.2f} "
          f"(target <= 1.5: {'met' if p50 and p99 <= 1.5 * p50 else 'NOT met'})")
if 1024 in q:
    r = q[1024]
    print(f"- 1024 clients: {r['starved']} starved, fewest/most requests per client "
          f"{r['min_per_client']}/{r['max_per_client']}, {r['unfinished']} unfinished "
          f"(target: none starved: {'met' if r['starved'] == '0' else 'NOT met'})")
PY
stamp "done (status $status)"
cat "$OUT/summary.md"
exit $status
