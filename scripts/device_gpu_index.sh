#!/usr/bin/env bash
# Issue 14 on a GPU machine: the "gpu" index's tests, then qsearch-bench-gpu-index (the gpu index
# at 1M and 10M x 1024 next to qsearch's CPU flat and HNSW) and bench/torch_topk.py
# (torch.matmul + topk on the same GPU). Writes $OUT/report.md plus the raw outputs; < 5 min on one H200.
#
# Bundle here first (build Release with CUDA):
#   cmake --build build --target test_index test_collections test_kernels qsearch-bench-gpu-index
#   ../shared/tools/devpack .devpack build/bench/qsearch-bench-gpu-index build/tests/test_index \
#       build/tests/test_collections build/tests/test_kernels
# then on the device: scripts/device_gpu_index.sh   (SIZES, FLAT_N, HNSW_N override the sizes;
# DEVPACK names the bundle folder, TORCH_TOPK the torch script, COMMIT the commit to report)
set -uo pipefail
OUT=${OUT:-/tmp/gpu-index-out}
mkdir -p "$OUT"
DEVPACK=${DEVPACK:-.devpack}
P=$DEVPACK/run.sh
TORCH_TOPK=${TORCH_TOPK:-$(dirname "$0")/../bench/torch_topk.py}
SIZES=${SIZES:-1000000,10000000}
FLAT_N=${FLAT_N:-1000000}
HNSW_N=${HNSW_N:-100000}
T0=$(date +%s)
{
  echo "# gpu index on the device ($(date -u +%FT%TZ), commit ${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)})"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | sed 's/^/GPU: /'
  echo "CPU cores: $(nproc)"
} > "$OUT/report.md"

echo "== tests" | tee "$OUT/tests.log"
timeout 40 $P test_index --gtest_filter='Gpu*' >> "$OUT/tests.log" 2>&1; echo "test_index rc=$?" | tee -a "$OUT/tests.log"
[ -x "$DEVPACK/bin/test_kernels" ] && { timeout 30 $P test_kernels --gtest_filter='Topk*' >> "$OUT/tests.log" 2>&1; echo "test_kernels rc=$?" | tee -a "$OUT/tests.log"; }
timeout 30 $P test_collections --gtest_filter='GpuCollection*' >> "$OUT/tests.log" 2>&1; echo "test_collections rc=$?" | tee -a "$OUT/tests.log"

echo "== qsearch-bench-gpu-index" | tee "$OUT/bench.log"
timeout 160 $P qsearch-bench-gpu-index --sizes "$SIZES" --dim 1024 --k 10 --queries 300 --concurrency 64 \
  --seconds 4 --flat-n "$FLAT_N" --hnsw-n "$HNSW_N" > "$OUT/bench.jsonl" 2>> "$OUT/bench.log"
echo "qsearch-bench-gpu-index rc=$?" | tee -a "$OUT/bench.log"
echo "== torch" | tee -a "$OUT/bench.log"
PYTHONUNBUFFERED=1 timeout 60 python3 "$TORCH_TOPK" --sizes "$SIZES" --dim 1024 --k 10 \
  >> "$OUT/bench.jsonl" 2>> "$OUT/bench.log"
echo "torch_topk rc=$?" | tee -a "$OUT/bench.log"

{
  echo
  echo "## tests"
  grep -E '^\[  (PASSED|FAILED|  SKIPPED) |^\[  FAILED  \]|rc=' "$OUT/tests.log"
  echo
  echo "## benchmark (k=10, 1024 dims, random unit vectors; one JSON line a system and size)"
  echo '```'
  cat "$OUT/bench.jsonl"
  echo '```'
  echo
  echo "## log"
  echo '```'
  grep -vE '^\[' "$OUT/bench.log" | tail -40
  echo '```'
  echo "total $(( $(date +%s) - T0 )) s"
} >> "$OUT/report.md"
cat "$OUT/report.md"
