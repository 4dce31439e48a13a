#!/usr/bin/env bash
# HNSW ingestion while searching, on the device machine's CPU (issue 14; no GPU needed), one
# call of under 3 minutes: qsearch-bench-hnsw-ingest upserts INGEST_N random 1024-dim unit
# vectors (batches of 64) into a flat collection, an HNSW collection with the background
# inserter, and an HNSW collection inserting inside each write (the behaviour before issue 14),
# in-process (RocksDB + FAISS, no model), while one thread searches top-10 back to back.
# Reports acknowledged and fully-indexed vectors/s (and HNSW as a share of flat) and search
# P50/P99/max during ingestion.
#
# Bundle here first (a Release build, here build/):
#   /work/shared/tools/devpack .devpack build/bench/qsearch-bench-hnsw-ingest
# then run (device tool, carry [".devpack"]):
#   QSEARCH_COMMIT=<git rev-parse --short HEAD> bash scripts/device_ingest_bench.sh "$OUT"
# Files written to OUT (3): ingest_bench.json, ingest_bench.log (progress), summary.md (the
# table). Exit status: non-zero when the benchmark failed or ran out of time.
# Knobs: INGEST_N (default 50000), INGEST_MODES (default flat,hnsw,hnsw-sync), INGEST_BATCH
# (default 64), INGEST_TIMEOUT_S (default 165).
set -uo pipefail
OUT=${1:-${OUT:-/tmp/qsearch-ingest-bench}}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export LD_LIBRARY_PATH=$PWD/.devpack/lib:${LD_LIBRARY_PATH:-}
P=$PWD/.devpack/run.sh
N=${INGEST_N:-50000}
MODES=${INGEST_MODES:-flat,hnsw,hnsw-sync}
echo "device_ingest_bench: commit ${QSEARCH_COMMIT:-unknown}, $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2)"
status=0
timeout "${INGEST_TIMEOUT_S:-165}" "$P" qsearch-bench-hnsw-ingest --n "$N" --dim 1024 \
  --batch "${INGEST_BATCH:-64}" --modes "$MODES" --json "$OUT/ingest_bench.json" \
  > "$OUT/summary.md" 2> "$OUT/ingest_bench.log" || status=$?
{
  echo
  echo "n=$N dim=1024 modes=$MODES commit=${QSEARCH_COMMIT:-unknown} exit=$status"
} >> "$OUT/summary.md"
tail -3 "$OUT/ingest_bench.log"
cat "$OUT/summary.md"
exit $status
