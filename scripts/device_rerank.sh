#!/usr/bin/env bash
# The reranker on the GPU machine, in one call (H200, about 5-6 minutes):
#   (a) the tiny test rerankers' Hugging Face references (tied and untied LM head), written to
#       $OUT/reranker_refs.json: commit it as data/reference/reranker_refs.json (the CPU parity
#       test tests/engine/reranker_parity_test.cc fails until it exists);
#   (b) the GPU reranker tests (test_cuda_engine RerankerCuda.*, test_kernels PoolKernel.*);
#   (c) per shape 0.6B, 4B, 8B (random weights from make-test-model; 8B with an untied head):
#       GPU parity per length bucket against HF fp32 next to HF bf16's own error, pairs/s at
#       512-token pairs against transformers (bf16, sdpa, batch 32, the model card's code) in the
#       same call, and one 10-document /v1/rerank request's latency
#       (tests/reference/hf_rerank_device.py).
#
# Bundle here first (a Release build with CUDA, here build/):
#   /work/shared/tools/devpack .devpack build/qsearch build/tests/test_cuda_engine \
#     build/tests/test_kernels -- .deps/qwen3/tokenizer.json
# then run (device tool, carry [".devpack"]):
#   QSEARCH_COMMIT=<git rev-parse --short HEAD, from here> bash scripts/device_rerank.sh "$OUT"
# Files written to OUT (6): reranker_refs.json, refs.log, tests.txt, rerank_device.json,
# rerank_device.txt, summary.md. Exit status: non-zero when a step failed.
# A quicker run: RERANK_SHAPES="0.6B" (default "0.6B 4B 8B"), RERANK_BENCH_SECONDS (default 6).
set -uo pipefail
OUT=${1:-${OUT:-/tmp/qsearch-rerank}}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=$PWD/.devpack/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
P=$PWD/.devpack/run.sh
TOK=$PWD/.devpack/extra/tokenizer.json
mkdir -p /tmp/qsearch-deps/qwen3 && cp "$TOK" /tmp/qsearch-deps/qwen3/
export QSEARCH_DEPS_DIR=/tmp/qsearch-deps
status=0
t_start=$(date +%s)
stamp() { echo "[device_rerank +$(( $(date +%s) - t_start ))s] $*"; }

stamp "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
stamp "(a) tiny reranker references"
W=/tmp/qsearch-rerank-refs
rm -rf "$W" && mkdir -p "$W"
{
  $P qsearch make-test-model --reranker --tokenizer "$TOK" --out "$W/tied" &&
  $P qsearch make-test-model --reranker --lm-head untied --tokenizer "$TOK" --out "$W/untied" &&
  python3 tests/reference/gen_reranker_refs.py "$W/tied" "$W/untied" "$OUT/reranker_refs.json" \
    --device cuda
} > "$OUT/refs.log" 2>&1 || status=1
tail -6 "$OUT/refs.log"

stamp "(b) GPU reranker tests"
{
  $P test_cuda_engine --gtest_filter='RerankerCuda.*'; e=$?
  $P test_kernels --gtest_filter='PoolKernel.*'; k=$?
  echo "test_cuda_engine exit $e, test_kernels exit $k"
  [ $e = 0 ] && [ $k = 0 ]
} > "$OUT/tests.txt" 2>&1 || status=1
grep -E "^\[  (PASSED|FAILED|SKIPPED) |max \|gpu|exit" "$OUT/tests.txt"

SHAPES=${RERANK_SHAPES:-0.6B 4B 8B}
stamp "(c) parity, pairs/s and latency ($SHAPES)"
python3 tests/reference/hf_rerank_device.py --qsearch "$P qsearch" --tokenizer "$TOK" \
  --shapes $SHAPES --out "$OUT/rerank_device.json" --table "$OUT/summary.md" \
  --workdir /tmp/qsearch-rerank --bench-seconds "${RERANK_BENCH_SECONDS:-6}" \
  > "$OUT/rerank_device.txt" 2>&1 || status=1
grep '^{' "$OUT/rerank_device.txt" | cut -c1-400
tail -3 "$OUT/rerank_device.txt"
rm -rf /tmp/qsearch-rerank "$W"

{
  echo
  echo "commit ${QSEARCH_COMMIT:-?}, $(date -u +%Y-%m-%d), $(( $(date +%s) - t_start )) s"
  grep -E "^(tied|untied): |wrote " "$OUT/refs.log"
  grep -E "^\[  (PASSED|FAILED) " "$OUT/tests.txt"
} >> "$OUT/summary.md"
stamp "done (status $status)"
echo "=== summary ==="
cat "$OUT/summary.md"
exit $status
