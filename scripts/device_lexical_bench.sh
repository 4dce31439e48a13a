#!/usr/bin/env bash
# The lexical index at a true 1M documents on the GPU machine's CPU (16 cores; no GPU is used):
# qsearch-bench-lexical ingests 1,000,000 documents of synthetic multilingual text (English,
# Chinese, Japanese, Thai; precomputed random 64-d vectors, flat index, so the figures measure
# the indexes, not the embedder) with the lexical index on and then off (docs/s each), measures
# single-thread lexical (BM25) and hybrid (flat dense + lexical, RRF) search latency P50/P99 at
# 1M, and the time to rebuild the lexical index from the store. About 4-6 minutes; each step is
# bounded so the whole call stays under 8 minutes (LEXICAL_TIMEOUT, default 450 s).
#
# Bundle here first (a Release build, here build/):
#   cmake --build build --target qsearch-bench-lexical
#   /work/shared/tools/devpack .devpack build/bench/qsearch-bench-lexical
# then run (device tool, carry [".devpack"]):
#   QSEARCH_COMMIT=<git rev-parse --short HEAD, from here> bash scripts/device_lexical_bench.sh "$OUT"
# Files written to OUT (3): lexical_bench.json (the figures), lexical_bench.txt (the log),
# summary.md (a table for the README). Exit status: non-zero when the benchmark failed.
# Smaller or longer runs: LEXICAL_N (default 1000000), LEXICAL_THREADS (ingest threads, 8),
# LEXICAL_QUERIES (500 per mode).
set -uo pipefail
OUT=${1:-${OUT:-/tmp/qsearch-lexical}}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
P=$PWD/.devpack/run.sh
N=${LEXICAL_N:-1000000}
DATA=${TMPDIR:-/tmp}/qsearch-lexical-bench
rm -rf "$DATA"
echo "[device_lexical] commit ${QSEARCH_COMMIT:-unknown}, $(nproc) CPUs, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
status=0
timeout "${LEXICAL_TIMEOUT:-450}" "$P" qsearch-bench-lexical --n "$N" --dim 64 \
  --ingest-threads "${LEXICAL_THREADS:-8}" --queries "${LEXICAL_QUERIES:-500}" --latency-seconds 45 \
  --lexical on,off --rebuild --data-dir "$DATA" --json "$OUT/lexical_bench.json" \
  > "$OUT/lexical_bench.txt" 2>&1 || status=$?
rm -rf "$DATA"
grep -v '^\[' "$OUT/lexical_bench.txt" | tail -12
[ "$status" = 0 ] || { echo "[device_lexical] FAILED (exit $status); log tail:"; tail -5 "$OUT/lexical_bench.txt"; }
python3 - "$OUT/lexical_bench.json" "${QSEARCH_COMMIT:-unknown}" > "$OUT/summary.md" <<'PY' || true
import json, sys
r = json.load(open(sys.argv[1]))
runs = {x["lexical"]: x for x in r["runs"]}
print(f"Lexical index at {r['n']:,} documents (commit {sys.argv[2]}, {r['hardware_threads']} CPU threads, "
      f"{r['ingest_threads']} ingest threads, batches of {r['batch']}, 64-d random vectors, flat index)\n")
print("| | value |\n|---|---|")
for on in (True, False):
    if on in runs:
        x = runs[on]
        print(f"| ingestion, lexical {'on' if on else 'off'} | {x['docs_per_second']:,.0f} docs/s ({x['ingest_seconds']:.1f} s, {x['text_mb']:.0f} MB text) |")
if True in runs:
    x = runs[True]
    for key, name in (("lexical_search", "lexical search (BM25)"), ("hybrid_search", "hybrid search (flat + BM25, RRF)")):
        s = x[key]
        print(f"| {name}, k={r['k']} | P50 {s['p50_ms']:.2f} ms, P99 {s['p99_ms']:.2f} ms ({s['queries']} queries) |")
    for kind, s in x.get("lexical_search_by_kind", {}).items():
        print(f"| lexical search, {kind} queries | P50 {s['p50_ms']:.2f} ms, P99 {s['p99_ms']:.2f} ms ({s['queries']}) |")
    if "lexical_file_mb" in x:
        print(f"| lexical index file | {x['lexical_file_mb']:.0f} MB |")
    if "rebuild_seconds" in x:
        print(f"| lexical index rebuilt from the store at open | {x['rebuild_seconds']:.1f} s |")
PY
cat "$OUT/summary.md"
exit "$status"
