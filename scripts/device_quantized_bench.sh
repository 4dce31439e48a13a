#!/usr/bin/env bash
# Quantized index types at 1M x 1024 on the device machine's CPU (issue 14; no GPU needed):
# qsearch-bench-search builds one collection per type in-process (RocksDB + FAISS, no model,
# clustered synthetic unit vectors as in README "Search at 1M vectors") and reports build s
# (ingest + the HNSW inserter draining), mean / P50 / P99 ms one thread, QPS at 16 threads,
# recall@10 against exact neighbours (OpenBLAS, independent of FAISS) after rescoring, and
# bytes_per_vector (GET collection's figure: codes + graph/lists + label maps).
#
# One type per call keeps each call inside the 600 s limit. HNSW over fp32 at M 32, efC 100
# took 140 s of graph building at 1M with our AVX2 flat distances; the scalar-quantizer
# distance code of Debian's baseline FAISS build is scalar (no AVX2), so the quantized graphs
# run with M 16, efC 64 and --ingest-seconds caps the ingest: a capped run measures what it
# ingested and says so ("complete": false, n below 1000000 in the table). ivf-pq: nlist 4096,
# trained once on the first 300,000 vectors (a retraining at 4x would come at 1.2M), as the
# 1M IVF run in README (nlist 4096, nprobe 16).
#
# Bundle here first (a Release build, here build/):
#   /work/shared/tools/devpack .devpack build/bench/qsearch-bench-search
# then run (device tool, carry [".devpack"]), one call each:
#   QUANT_TYPES=hnsw-sq8  QSEARCH_COMMIT=<rev> bash scripts/device_quantized_bench.sh "$OUT"
#   QUANT_TYPES=hnsw-fp16 QSEARCH_COMMIT=<rev> bash scripts/device_quantized_bench.sh "$OUT"
#   QUANT_TYPES=ivf-pq    QSEARCH_COMMIT=<rev> bash scripts/device_quantized_bench.sh "$OUT"
# Files written to OUT (3): quantized_bench.json, quantized_bench.log (progress), summary.md.
# Success: exit 0, summary.md's row has recall@10 >= 0.95 and bytes/vector well below the fp32
# 4096 (sq8 about 1024 + graph, fp16 about 2048 + graph, ivf-pq about pq_m + 88 = 344).
# Knobs: QUANT_N (1000000), QUANT_QUERIES (200), QUANT_RESCORE (100), QUANT_HNSW_M (16),
# QUANT_EFC (64), QUANT_PQ_M (0: 256 = d/4), QUANT_NLIST (4096), QUANT_TRAIN_MIN (300000),
# QUANT_NPROBE (16), QUANT_INGEST_S (400), QUANT_TIMEOUT_S (570).
set -uo pipefail
OUT=${1:-${OUT:-/tmp/qsearch-quantized-bench}}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/.devpack/lib:${LD_LIBRARY_PATH:-}
P=$PWD/.devpack/run.sh
N=${QUANT_N:-1000000}
TYPES=${QUANT_TYPES:-hnsw-sq8}
echo "device_quantized_bench: commit ${QSEARCH_COMMIT:-unknown}, $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
status=0
timeout "${QUANT_TIMEOUT_S:-570}" "$P" qsearch-bench-search --n "$N" --dim 1024 --types "$TYPES" \
  --queries "${QUANT_QUERIES:-200}" --latency-seconds 30 --qps-seconds 10 --batch 5000 \
  --hnsw-m "${QUANT_HNSW_M:-16}" --ef-construction "${QUANT_EFC:-64}" \
  --rescore "${QUANT_RESCORE:-100}" --pq-m "${QUANT_PQ_M:-0}" --nlist "${QUANT_NLIST:-4096}" \
  --ivf-train-min "${QUANT_TRAIN_MIN:-300000}" \
  --nprobe "${QUANT_NPROBE:-16}" --ingest-seconds "${QUANT_INGEST_S:-400}" \
  --json "$OUT/quantized_bench.json" > "$OUT/summary.md" 2> "$OUT/quantized_bench.log" || status=$?
{
  echo
  echo "n=$N dim=1024 types=$TYPES commit=${QSEARCH_COMMIT:-unknown} exit=$status"
} >> "$OUT/summary.md"
tail -5 "$OUT/quantized_bench.log"
cat "$OUT/summary.md"
exit $status
