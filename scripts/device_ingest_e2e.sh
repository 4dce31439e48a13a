#!/usr/bin/env bash
# Ingestion end to end into a flat and an HNSW collection on the device machine (issue 14: HNSW
# ingestion >= 80% of the raw engine rate, 0.6B shape, 256-token documents, with search latency
# during ingestion). For each index type, qsearch-bench-ingest embeds the documents with the raw
# engine, starts `qsearch serve` (the same random-weight 0.6B-shape model, CUDA), sends the same
# documents as POST batches from 8 clients and then as one NDJSON import, while one more client
# searches back to back (--search-during). One call, about 3 minutes.
#
# Bundle here first (a Release build with CUDA, here build/):
#   /work/shared/tools/devpack .devpack build/qsearch build/bench/qsearch-bench-ingest -- .deps/qwen3/tokenizer.json
# then run (device tool, carry [".devpack"]):
#   QSEARCH_COMMIT=<git rev-parse --short HEAD> bash scripts/device_ingest_e2e.sh "$OUT"
# Files written to OUT (3): summary.md, ingest_flat.json, ingest_hnsw.json.
# Knobs: E2E_DOCS (20000), E2E_TOKENS (256), E2E_INDEXES (flat,hnsw), E2E_SHAPE (0.6B).
set -uo pipefail
OUT=${1:-${OUT:-/tmp/qsearch-ingest-e2e}}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
P=$PWD/.devpack/run.sh
printf '#!/bin/sh\nexec %s qsearch "$@"\n' "$P" > /tmp/qsearch-bin && chmod +x /tmp/qsearch-bin
model=/tmp/qsearch-e2e-model
status=0
"$P" qsearch make-test-model --shape "${E2E_SHAPE:-0.6B}" --tokenizer .devpack/extra/tokenizer.json \
  --out "$model" > /dev/null || exit 1
{
  echo "# Ingestion end to end, ${E2E_SHAPE:-0.6B} shape, ${E2E_DOCS:-20000} documents of ${E2E_TOKENS:-256} tokens"
  echo
  echo "commit ${QSEARCH_COMMIT:-unknown}, $(date -u +%F), $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1), $(nproc) CPUs"
} > "$OUT/summary.md"
IFS=, read -ra indexes <<< "${E2E_INDEXES:-flat,hnsw}"
for idx in "${indexes[@]}"; do
  echo "== $idx"
  timeout 200 "$P" qsearch-bench-ingest --model "$model" --device cuda --qsearch /tmp/qsearch-bin \
    --docs "${E2E_DOCS:-20000}" --tokens "${E2E_TOKENS:-256}" --batch 64 --clients 8 --index "$idx" \
    --search-during --server-args "--http-threads 64" --json "$OUT/ingest_$idx.json" > /tmp/ingest_$idx.txt 2>&1 \
    || status=$?
  cat /tmp/ingest_$idx.txt
  { echo; echo "## index $idx"; echo; grep -E '^\||searches during' /tmp/ingest_$idx.txt; } >> "$OUT/summary.md"
done
exit $status
