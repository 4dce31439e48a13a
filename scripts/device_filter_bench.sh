#!/usr/bin/env bash
# Filtered search at 1M x 1024 on the device machine's CPU (issue 11; no GPU needed), one call
# of at most 8 minutes: qsearch-bench-filter builds a flat, an HNSW (M 32, efConstruction 100)
# and an IVF collection of 1,000,000 synthetic 1024-dim vectors with metadata, in-process
# (RocksDB + metadata index + FAISS, no model), and measures one-thread search latency
# unfiltered and with filters matching 0.1% and 1% of the documents, plus recall@10 of the
# filtered searches against exact filtered neighbours.
#
# Bundle here first (a Release build, here build/):
#   /work/shared/tools/devpack .devpack build/bench/qsearch-bench-filter
# then run (device tool, carry [".devpack"]):
#   QSEARCH_COMMIT=<git rev-parse --short HEAD> bash scripts/device_filter_bench.sh "$OUT"
# Files written to OUT (3): filter_bench.json, filter_bench.log (progress), summary.md (the
# table). Exit status: non-zero when the benchmark failed or ran out of time.
# Smaller or partial runs: FILTER_N (default 1000000), FILTER_TYPES (default flat,hnsw,ivf),
# FILTER_QUERIES (default 200), FILTER_TIMEOUT_S (default 460), FILTER_EXTRA (more flags, e.g.
# --sweep: the 1% filter over exact-scan grains and metadata slice sizes).
set -uo pipefail
OUT=${1:-${OUT:-/tmp/qsearch-filter-bench}}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/.devpack/lib:${LD_LIBRARY_PATH:-}
P=$PWD/.devpack/run.sh
N=${FILTER_N:-1000000}
TYPES=${FILTER_TYPES:-flat,hnsw,ivf}
echo "device_filter_bench: commit ${QSEARCH_COMMIT:-unknown}, $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
status=0
timeout "${FILTER_TIMEOUT_S:-460}" "$P" qsearch-bench-filter --n "$N" --dim 1024 --types "$TYPES" \
  --queries "${FILTER_QUERIES:-200}" --json "$OUT/filter_bench.json" ${FILTER_EXTRA:-} \
  > "$OUT/summary.md" 2> "$OUT/filter_bench.log" || status=$?
{
  echo
  echo "n=$N dim=1024 types=$TYPES commit=${QSEARCH_COMMIT:-unknown} exit=$status"
} >> "$OUT/summary.md"
tail -3 "$OUT/filter_bench.log"
cat "$OUT/summary.md"
exit $status
