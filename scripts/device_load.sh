#!/usr/bin/env bash
# The embedding-server stress test on the GPU machine (issue 5), for the final device run:
# `qsearch serve --device cuda` with a random-weight model of the exact Qwen3-Embedding-0.6B
# shape (qsearch make-test-model --shape 0.6B; random weights run at the speed of real ones)
# and qsearch-load against it: concurrency 1,4,8,16,32,64, 512-token inputs, dimensions 1024.
# Writes to $OUT (default ./device-results): load.json, load.png (+ .dat/.gp), load.txt (the
# table), device_load.md (machine, date, commit, tables), server.log, nvidia-smi.txt.
#
#   scripts/device_load.sh                      # the load test (~3 minutes with the defaults)
#   MODE=ingest scripts/device_load.sh          # + end-to-end ingestion vs the raw engine
#   MODE=search SEARCH_N=1000000 scripts/device_load.sh   # flat/IVF/HNSW at 1M x 1024 (CPU FAISS)
#   MODE=all ...                                # everything (mind a 10-minute command limit)
# MODE=search needs no model or GPU: one qsearch-bench-search process per index type, each under
# a time limit (SEARCH_BUDGET seconds for all of them; HNSW gets what is left, and its ingest
# stops early, reported as partial, when the limit comes near), so a stopped run keeps the
# types done. With a devpack of the benchmark: SEARCH_BIN=".devpack-results/run.sh qsearch-bench-search".
# Environment: BUILD (a CUDA build with qsearch, qsearch-load, qsearch-bench-ingest,
# qsearch-bench-search; default build; built here when missing), TOKENIZER (default
# .deps/qwen3/tokenizer.json), SHAPE (0.6B), LEVELS (1,4,8,16,32,64), DURATION (20 s per level),
# WARMUP (3), TOKENS (512), DIMENSIONS (1024), INPUT (ids, as the earlier runs; text), MAX_BATCH_TOKENS (engine default), PORT (18500),
# INGEST_DOCS (20000), INGEST_TOKENS (256), SEARCH_N (1000000), SEARCH_QUERIES (1000),
# SEARCH_TYPES (flat,ivf,hnsw), SEARCH_DATA (clustered), SEARCH_BATCH (5000), SEARCH_BUDGET (570),
# SEARCH_NLIST (4096), SEARCH_NPROBE (16), SEARCH_HNSW_M (32), SEARCH_EF_CONSTRUCTION (200),
# SEARCH_EF_SEARCH (128), SEARCH_BIN (the benchmark command), DEVICE (cuda), COMMIT (for the
# report, where the tree has no .git).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=${OUT:-$root/device-results}
mkdir -p "$out"
out=$(cd "$out" && pwd)
build=${BUILD:-build}
mode=${MODE:-load}
tokenizer=${TOKENIZER:-.deps/qwen3/tokenizer.json}
shape=${SHAPE:-0.6B}
device=${DEVICE:-cuda}   # DEVICE=cpu SHAPE=tiny: a dry run of this script without a GPU
port=${PORT:-18500}
log() { echo "device_load: $*" | tee -a "$out/device_load.log"; }

need=(qsearch bench/qsearch-load bench/qsearch-bench-ingest bench/qsearch-bench-search)
[ "$mode" = search ] && need=() && [ -z "${SEARCH_BIN:-}" ] && need=(bench/qsearch-bench-search)
[ "$mode" = search ] || [ -f "$tokenizer" ] ||
  { log "no tokenizer at $tokenizer (run make deps, or carry .deps/qwen3)"; exit 2; }
missing=0
for b in "${need[@]}"; do [ -x "$build/$b" ] || missing=1; done
if [ "$missing" = 1 ]; then
  log "building $build (CUDA)"
  [ -f "$build/build.ninja" ] || cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DQSEARCH_TESTS=OFF > "$out/cmake.log" 2>&1
  cmake --build "$build" -j "$(nproc)" --target qsearch qsearch-load qsearch-bench-ingest qsearch-bench-search >> "$out/cmake.log" 2>&1
fi
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
gpu=$(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1 || echo "no GPU visible")
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
commit=${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}
date_utc=$(date -u +%Y-%m-%dT%H:%MZ)
tmp=$(mktemp -d /tmp/qsearch-device-XXXXXX)
server=""
cleanup() {
  [ -n "$server" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

{
  echo "# qsearch on the GPU machine"
  echo
  echo "- date: $date_utc, commit $commit"
  echo "- GPU: $gpu; CPU: $cpu, $(nproc) threads, $(awk '/MemTotal/ {printf "%.0f", $2 / 1048576}' /proc/meminfo) GiB memory visible at the start"
} > "$out/device_load.md"
if [ "$mode" != search ]; then
  model=$tmp/model-$shape
  log "writing a random-weight $shape model"
  "$build/qsearch" make-test-model --shape "$shape" --tokenizer "$tokenizer" --out "$model" > "$out/make-test-model.json"
  echo "- model: random weights, Qwen3-Embedding-$shape shape ($(grep -o '"parameters":[0-9]*' "$out/make-test-model.json" | cut -d: -f2) parameters), bf16" >> "$out/device_load.md"
fi

if [ "$mode" = load ] || [ "$mode" = all ]; then
  extra=()
  [ -n "${MAX_BATCH_TOKENS:-}" ] && extra+=(--max-batch-tokens "$MAX_BATCH_TOKENS")
  # (--http-threads 160 was needed when each keep-alive connection held a thread; kept so the
  # figures stay comparable with the earlier runs.)
  "$build/qsearch" serve --model "$model" --device "$device" --data-dir "$tmp/data" --host 127.0.0.1 \
    --port "$port" --http-threads 160 "${extra[@]}" > "$out/server.log" 2>&1 &
  server=$!
  for i in $(seq 1 600); do
    python3 -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1], timeout=5)' \
      "http://127.0.0.1:$port/ready" > /dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { log "server exited"; tail -30 "$out/server.log"; exit 1; }
    sleep 1
  done
  log "server ready (pid $server); load test"
  "$build/bench/qsearch-load" --port "$port" --concurrency "${LEVELS:-1,4,8,16,32,64}" \
    --duration "${DURATION:-20}" --warmup "${WARMUP:-3}" --tokens "${TOKENS:-512}" \
    --dimensions "${DIMENSIONS:-1024}" --input "${INPUT:-ids}" --tokenizer "$tokenizer" \
    --label "$gpu, random $shape" \
    --json "$out/load.json" --plot "$out/load.png" | tee "$out/load.txt"
  kill "$server"
  wait "$server" 2>/dev/null || true
  server=""
  {
    echo
    echo "## Embedding server stress test (POST /v1/embeddings, ${TOKENS:-512}-token inputs, dimensions ${DIMENSIONS:-1024})"
    echo
    echo "Command: \`scripts/device_load.sh\` (qsearch-load --concurrency ${LEVELS:-1,4,8,16,32,64} --duration ${DURATION:-20} --warmup ${WARMUP:-3} --tokens ${TOKENS:-512} --dimensions ${DIMENSIONS:-1024})"
    echo
    grep '^|' "$out/load.txt"
    echo
    echo "![load](load.png)"
  } >> "$out/device_load.md"
fi

if [ "$mode" = ingest ] || [ "$mode" = all ]; then
  log "ingestion benchmark"
  "$build/bench/qsearch-bench-ingest" --model "$model" --device "$device" --qsearch "$build/qsearch" \
    --docs "${INGEST_DOCS:-20000}" --tokens "${INGEST_TOKENS:-256}" --batch 64 --clients 8 \
    --server-args "--http-threads 64" --json "$out/ingest.json" | tee "$out/ingest.txt"
  {
    echo
    echo "## Ingestion end to end vs the raw engine (${INGEST_DOCS:-20000} documents of ${INGEST_TOKENS:-256} tokens)"
    echo
    echo "Command: \`MODE=ingest scripts/device_load.sh\`"
    echo
    grep '^|' "$out/ingest.txt"
  } >> "$out/device_load.md"
fi

if [ "$mode" = search ] || [ "$mode" = all ]; then
  read -ra search_bin <<< "${SEARCH_BIN:-$build/bench/qsearch-bench-search}"
  n=${SEARCH_N:-1000000}
  budget=${SEARCH_BUDGET:-570}
  common=(--n "$n" --dim 1024 --queries "${SEARCH_QUERIES:-1000}" --k 10 --data "${SEARCH_DATA:-clustered}"
          --batch "${SEARCH_BATCH:-5000}" --qps-seconds 10)
  t_start=$(date +%s)
  IFS=, read -ra types <<< "${SEARCH_TYPES:-flat,ivf,hnsw}"
  for t in "${types[@]}"; do
    left=$(( budget - ($(date +%s) - t_start) ))
    case $t in
      flat) limit=$(( left < 150 ? left : 150 )); extra=(--latency-seconds 20) ;;
      ivf)  limit=$(( left < 200 ? left : 200 ))
            extra=(--latency-seconds 30 --nlist "${SEARCH_NLIST:-4096}" --nprobe "${SEARCH_NPROBE:-16}") ;;
      hnsw) limit=$left
            # Ingest stops in time for the search phases (~60 s with generation and truth).
            extra=(--latency-seconds 20 --ingest-seconds $(( left > 120 ? left - 75 : 45 ))
                   --hnsw-m "${SEARCH_HNSW_M:-32}" --ef-construction "${SEARCH_EF_CONSTRUCTION:-200}"
                   --ef-search "${SEARCH_EF_SEARCH:-128}") ;;
      *) log "unknown search type $t"; continue ;;
    esac
    [ "$limit" -lt 30 ] && { log "search $t: skipped, ${left} s left"; continue; }
    log "search benchmark: $t, n $n, time limit $limit s"
    rm -rf "$tmp/search"
    rc=0
    timeout --signal=KILL "$limit" "${search_bin[@]}" "${common[@]}" --types "$t" "${extra[@]}" \
      --data-dir "$tmp/search" --json "$out/search_$t.json" > "$out/search_$t.log" 2>&1 || rc=$?
    log "search $t: exit $rc after $(( $(date +%s) - t_start )) s"
    rm -rf "$tmp/search"
  done
  python3 - "$out" "${types[@]}" > "$out/search.txt" <<'PY'
import json, os, sys
out, types = sys.argv[1], sys.argv[2:]
print("| index | parameters | vectors | ingest s | ingest vec/s | recall@10 | mean ms | P50 ms | P99 ms "
      "| QPS 1 thread | QPS N threads | P99 ms N threads |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for t in types:
    try:
        doc = json.load(open(os.path.join(out, f"search_{t}.json")))
        r = doc["results"][0]
    except Exception:
        print(f"| {t} | no result (see search_{t}.log) |" + " |" * 10)
        continue
    p = ", ".join(f"{k} {v}" for k, v in r.get("params", {}).items()) or "exact"
    if r["effective_index"] != t:
        p += f" (searched as {r['effective_index']})"
    n = f"{r['n']:,}" + ("" if r["complete"] else f" of {doc['n']:,} (ingest stopped at its time limit)")
    lat, ll = r["latency_ms"], r["latency_under_load_ms"]
    print(f"| {t} | {p} | {n} | {r['ingest_seconds']:.1f} | {r['ingest_vectors_per_s']:.0f} | {r['recall_at_k']:.4f} "
          f"| {lat['mean']:.3f} | {lat['p50']:.3f} | {lat['p99']:.3f} | {r['single_thread_qps']:.1f} "
          f"| {r['qps']:.1f} ({r['threads']}) | {ll['p99']:.3f} |")
PY
  {
    echo
    echo "## Search at $n x 1024 (${SEARCH_DATA:-clustered} data, FAISS on the CPU, through the collection store)"
    echo
    echo "Command: \`MODE=search SEARCH_N=$n SEARCH_BATCH=${SEARCH_BATCH:-5000} SEARCH_BUDGET=$budget SEARCH_NLIST=${SEARCH_NLIST:-4096} SEARCH_NPROBE=${SEARCH_NPROBE:-16} SEARCH_HNSW_M=${SEARCH_HNSW_M:-32} SEARCH_EF_CONSTRUCTION=${SEARCH_EF_CONSTRUCTION:-200} SEARCH_EF_SEARCH=${SEARCH_EF_SEARCH:-128} scripts/device_load.sh\`"
    echo "(per type: its log search_<type>.log and figures search_<type>.json; $(nproc) search threads under load)"
    echo
    cat "$out/search.txt"
  } >> "$out/device_load.md"
fi
log "done: $out/device_load.md"
cat "$out/device_load.md"
