#!/usr/bin/env bash
# Issue 14 on a GPU machine: the "gpu" index's tests (incl. shards on one GPU and int8 rows with
# exact rescoring), then qsearch-bench-gpu-index at 1M and 10M x 1024 on uniform and clustered
# data, bf16 and int8, 1 and 2 shards on GPU 0 (next to qsearch's CPU flat), and
# bench/torch_topk.py (torch.matmul + topk on the same GPU). Writes $OUT/report.md plus the raw
# outputs; about 7 min on one H200. Each step has its own timeout, cut to what is left of
# BUDGET seconds (default 560, under the device call's 10 min) so the report is always written;
# a step with less than 20 s left is skipped and says so.
#
# Bundle here first (build Release with CUDA):
#   cmake --build build --target test_index test_collections test_kernels qsearch-bench-gpu-index
#   ../shared/tools/devpack .devpack build/bench/qsearch-bench-gpu-index build/tests/test_index \
#       build/tests/test_collections build/tests/test_kernels
# then on the device: scripts/device_gpu_index.sh   (BIG (10000000), SMALL (1000000), FLAT_N,
# HNSW_N override the sizes; DEVPACK names the bundle folder, TORCH_TOPK the torch script,
# COMMIT the commit to report)
set -uo pipefail
OUT=${OUT:-/tmp/gpu-index-out}
mkdir -p "$OUT"
DEVPACK=${DEVPACK:-.devpack}
P=$DEVPACK/run.sh
TORCH_TOPK=${TORCH_TOPK:-$(dirname "$0")/../bench/torch_topk.py}
SMALL=${SMALL:-1000000}
BIG=${BIG:-10000000}
FLAT_N=${FLAT_N:-1000000}
HNSW_N=${HNSW_N:-0}
BUDGET=${BUDGET:-560}
T0=$(date +%s)
# The timeout for a step: its own limit, or what is left of the budget (minus 10 s for the report).
limit() {
  local left=$(( BUDGET - 10 - ($(date +%s) - T0) ))
  [ "$left" -lt 1 ] && left=1
  [ "$left" -lt "$1" ] && echo "$left" || echo "$1"
}
{
  echo "# gpu index on the device ($(date -u +%FT%TZ), commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)})"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/GPU: /'
  echo "CPU cores: $(nproc), memory: $(free -g | awk '/Mem:/ {print $2}') GiB"
} > "$OUT/report.md"

echo "== tests" | tee "$OUT/tests.log"
timeout "$(limit 150)" $P test_index --gtest_filter='Gpu*' >> "$OUT/tests.log" 2>&1; echo "test_index rc=$?" | tee -a "$OUT/tests.log"
[ -x "$DEVPACK/bin/test_kernels" ] && { timeout "$(limit 40)" $P test_kernels --gtest_filter='Topk*:ScaleScores*' >> "$OUT/tests.log" 2>&1; echo "test_kernels rc=$?" | tee -a "$OUT/tests.log"; }
timeout "$(limit 60)" $P test_collections --gtest_filter='GpuCollection*' >> "$OUT/tests.log" 2>&1; echo "test_collections rc=$?" | tee -a "$OUT/tests.log"

# One bench run: a label, a timeout, then the flags.
bench() {
  local label=$1 lim
  lim=$(limit "$2")
  shift 2
  if [ "$lim" -lt 20 ]; then echo "$label: skipped (out of budget)" | tee -a "$OUT/bench.log"; return; fi
  echo "== $label: $*" | tee -a "$OUT/bench.log"
  local t=$(date +%s)
  timeout "$lim" $P qsearch-bench-gpu-index --dim 1024 --k 10 --queries 200 --concurrency 64 \
    --seconds 3 "$@" >> "$OUT/bench.jsonl" 2>> "$OUT/bench.log"
  echo "$label rc=$? ($(( $(date +%s) - t )) s)" | tee -a "$OUT/bench.log"
}
: > "$OUT/bench.jsonl"
# Most wanted first: a later run is skipped when the budget is spent.
bench "bf16 uniform 1 shard (+ CPU flat)" 170 --sizes "$SMALL,$BIG" --gpus 0 --precision bf16 \
  --data uniform --flat-n "$FLAT_N" --hnsw-n "$HNSW_N"
bench "int8 uniform 2 shards" 160 --sizes "$SMALL,$BIG" --gpus 0,0 --precision int8 \
  --data uniform --flat-n 0 --hnsw-n 0
if [ "$(limit 60)" -ge 20 ]; then
  echo "== torch" | tee -a "$OUT/bench.log"
  PYTHONUNBUFFERED=1 timeout "$(limit 60)" python3 "$TORCH_TOPK" --sizes "$SMALL,$BIG" --dim 1024 \
    --k 10 >> "$OUT/bench.jsonl" 2>> "$OUT/bench.log"
  echo "torch_topk rc=$?" | tee -a "$OUT/bench.log"
fi
bench "bf16 clustered 2 shards" 160 --sizes "$SMALL,$BIG" --gpus 0,0 --precision bf16 \
  --data clustered --flat-n 0 --hnsw-n 0
bench "int8 clustered 1 shard" 45 --sizes "$SMALL" --gpus 0 --precision int8 \
  --data clustered --flat-n 0 --hnsw-n 0
bench "bf16 uniform 2 shards" 45 --sizes "$SMALL" --gpus 0,0 --precision bf16 \
  --data uniform --flat-n 0 --hnsw-n 0

{
  echo
  echo "## tests"
  grep -E '^\[  (PASSED|FAILED|  SKIPPED) |^\[  FAILED  \]|^\[ INFO|rc=' "$OUT/tests.log"
  echo
  echo "## benchmark (k=10, 1024 dims; one JSON line a system, size and configuration)"
  echo '```'
  cat "$OUT/bench.jsonl"
  echo '```'
  echo
  echo "## log"
  echo '```'
  grep -vE '^\[' "$OUT/bench.log" | tail -60
  echo '```'
  echo "total $(( $(date +%s) - T0 )) s"
} >> "$OUT/report.md"
cat "$OUT/report.md"
