#!/usr/bin/env bash
# The dedup GPU tests and benchmark in one call, for the GPU (device) machine.
#
#   here:  scripts/device_dedup.sh pack           builds the dedup targets in build-dedup and
#                                                 bundles them into .devpack-dedup (git-ignored)
#   there: scripts/device_dedup.sh run [quick|full]
#          (the device tool: carry [".devpack-dedup"]; writes $OUT/dedup_report.md + logs)
#
# quick (default, ~1-2 minutes): the GPU tests (kernels vs CPU references, 100k x 1024 join vs
# brute force on every GPU path, CPU == GPU), 1M x 1024 on the GPU (fused and cuBLAS, whole)
# against FAISS IndexFlatIP::range_search on 2000 query rows (extrapolated), and 10M x 1024 on
# 2% of its block pairs (extrapolated). full: the same, with 10M run whole (several minutes).
# Environment: OUT (report folder), T_TESTS / T_1M / T_10M (time limits of the three steps,
# seconds), FAISS_QUERIES, KERNEL_10M (fused or cublas).
set -uo pipefail
cd "$(dirname "$0")/.."
PACK=${PACK:-.devpack-dedup}
BUILD=${BUILD:-build-dedup}
cmd=${1:-run}

if [ "$cmd" = pack ]; then
  cmake --build "$BUILD" --target test_dedup qsearch-bench-dedup -j "${JOBS:-2}" || exit 1
  /work/shared/tools/devpack "$PACK" "$BUILD/tests/test_dedup" "$BUILD/bench/qsearch-bench-dedup" ||
    exit 1
  # FAISS pulls in the reference BLAS/LAPACK names (Debian: OpenBLAS behind libblas.so.3);
  # the GPU machine has libopenblas but maybe not these two: carried as a fallback.
  mkdir -p "$PACK/lib-blas"
  for l in libblas.so.3 liblapack.so.3; do
    cp -L "$(ldconfig -p | awk -v l="$l" '$1 == l {print $NF; exit}')" "$PACK/lib-blas/"
  done
  git rev-parse --short HEAD > "$PACK/COMMIT"
  git diff --quiet HEAD -- src/dedup kernels/similarity.cu kernels/similarity.cuh bench/bench_dedup.cc ||
    echo "(+ uncommitted changes)" >> "$PACK/COMMIT"
  exit 0
fi

size=${2:-quick}
OUT=${OUT:-/tmp/dedup-device}
mkdir -p "$OUT"
report="$OUT/dedup_report.md"
status=0
if LD_LIBRARY_PATH="$PACK/lib:${LD_LIBRARY_PATH:-}" ldd "$PACK/bin/qsearch-bench-dedup" |
    grep -qE 'lib(blas|lapack)\.so\.3 => not found'; then
  export LD_LIBRARY_PATH="$PWD/$PACK/lib-blas:${LD_LIBRARY_PATH:-}"
  echo "using the carried libblas/liblapack"
fi

{
  echo "# qsearch dedup on $(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)"
  echo
  echo "date $(date -u +%Y-%m-%dT%H:%MZ), commit $(tr '\n' ' ' < "$PACK/COMMIT" 2>/dev/null || echo '?'), mode $size,"
  echo "$(nproc) CPU cores, $(free -g | awk '/Mem:/{print $2}') GiB RAM, driver $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)"
  echo
} > "$report"

# 1. GPU tests (the CPU-only tests run in CI; the CLI tests need the test model).
echo "== tests" | tee -a "$report"
timeout "${T_TESTS:-240}" "$PACK/run.sh" test_dedup --gtest_filter='SimilarityKernel.*:GpuJoin.*' \
  > "$OUT/tests.log" 2>&1
rc=$?
[ $rc -ne 0 ] && status=1
{
  echo '```'
  grep -E '^(fused kernel|reference:|fused|cublas|3 workers|gpu vs cpu)|\[  (PASSED|FAILED|SKIPPED) |^\[==========\]' "$OUT/tests.log"
  grep -B2 -A6 'Failure' "$OUT/tests.log" | head -60
  echo "exit code $rc"
  echo '```'
} >> "$report"

# 2. 1M: both GPU kernels whole, FAISS on a measured fraction.
echo "== bench 1M" | tee -a "$report"
timeout "${T_1M:-300}" "$PACK/run.sh" qsearch-bench-dedup --n 1000000 --dim 1024 --threshold 0.92 \
  --kernel both --faiss-queries "${FAISS_QUERIES:-2000}" --json "$OUT/bench_1m.json" > "$OUT/bench_1m.log" 2>&1
rc=$?
[ $rc -ne 0 ] && status=1
{ cat "$OUT/bench_1m.log"; echo "exit code $rc"; echo; } >> "$report"

# 3. 10M: the default GPU path (cuBLAS + filter; KERNEL_10M=fused for the other), a sample or
#    whole.
echo "== bench 10M ($size)" | tee -a "$report"
fraction=0.02
[ "$size" = full ] && fraction=1
timeout "${T_10M:-580}" "$PACK/run.sh" qsearch-bench-dedup --n 10000000 --dim 1024 --threshold 0.92 \
  --kernel "${KERNEL_10M:-cublas}" --gpu-fraction "$fraction" --json "$OUT/bench_10m.json" \
  > "$OUT/bench_10m.log" 2>&1
rc=$?
[ $rc -ne 0 ] && status=1
{ cat "$OUT/bench_10m.log"; echo "exit code $rc"; } >> "$report"

cat "$report"
exit $status
