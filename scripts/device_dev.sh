#!/usr/bin/env bash
# Development run of the CUDA engine on the GPU machine (see docs/cuda.md): kernel and engine
# tests, compute-sanitizer on the kernel tests, the attention and engine benchmarks.
# Bundle first (here):
#   /work/shared/tools/devpack .devpack build-cuda/qsearch build-cuda/tests/test_kernels \
#     build-cuda/tests/test_cuda_engine build-cuda/bench/qsearch-bench-engine-cuda \
#     build-cuda/bench/qsearch-bench-attention-cuda -- .deps/qwen3/tokenizer.json
# then on the device:  scripts/device_dev.sh [STAGES]   (stages: info tests sanitize attn parity
# engine; default all but parity), logs under $OUT. parity runs tests/reference/hf_parity.py for
# $PARITY_SHAPES (default 0.6B); engine benchmarks $ENGINE_MODELS (default all).
set -uo pipefail
OUT=${OUT:-/tmp/qsearch-out}
mkdir -p "$OUT"
stages=${*:-info tests sanitize attn engine}
P=.devpack/run.sh
export LD_LIBRARY_PATH=$PWD/.devpack/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
# the engine tests read the Qwen3 tokenizer from $QSEARCH_DEPS_DIR/qwen3/tokenizer.json
mkdir -p /tmp/qsearch-deps/qwen3 && cp .devpack/extra/tokenizer.json /tmp/qsearch-deps/qwen3/
export QSEARCH_DEPS_DIR=/tmp/qsearch-deps
# ... and run the bundled qsearch binary through $QSEARCH_BINARY
printf '#!/bin/sh\nexec %s/.devpack/run.sh qsearch "$@"\n' "$PWD" > /tmp/qsearch-bin && chmod +x /tmp/qsearch-bin
export QSEARCH_BINARY=/tmp/qsearch-bin
has() { [[ " $stages " == *" $1 "* ]]; }
if has info; then
  nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.max.sm --format=csv 2>&1 | tee "$OUT/info.txt"
  nvcc --version 2>&1 | tail -1 | tee -a "$OUT/info.txt"
fi
if has tests; then
  $P test_kernels 2>&1 | tee "$OUT/test_kernels.txt" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |Failure|error" | head -40
  $P test_cuda_engine 2>&1 | tee "$OUT/test_cuda_engine.txt" | grep -E "^\[  (FAILED|PASSED|SKIPPED) |^\[       OK|Failure|error|Expected|Which|actual" | head -80
fi
if has sanitize; then
  compute-sanitizer --tool memcheck --error-exitcode 9 .devpack/bin/test_kernels \
    --gtest_filter='-*Sequence32k*:*LongSequence2048*' > "$OUT/sanitizer_memcheck.txt" 2>&1
  echo "memcheck exit $?"; tail -4 "$OUT/sanitizer_memcheck.txt"
  compute-sanitizer --tool racecheck --error-exitcode 9 .devpack/bin/test_kernels \
    --gtest_filter='AttentionKernel.VarlenGqa2:AttentionKernel.SurplusGridBlocksExit' > "$OUT/sanitizer_racecheck.txt" 2>&1
  echo "racecheck exit $?"; tail -3 "$OUT/sanitizer_racecheck.txt"
fi
if has attn; then
  $P qsearch-bench-attention-cuda 2>&1 | tee "$OUT/bench_attention.txt" | tail -12
fi
if has parity; then
  $P qsearch make-test-model --tokenizer .devpack/extra/tokenizer.json --out /tmp/qsearch-tok > /dev/null
  PYTHONUNBUFFERED=1 python3 tests/reference/hf_parity.py --qsearch "$PWD/$P qsearch" \
    --tokenizer-dir /tmp/qsearch-tok --shapes ${PARITY_SHAPES:-0.6B} --out "$OUT/hf_parity.json" \
    2>&1 | tee "$OUT/hf_parity.txt" | tail -${PARITY_TAIL:-14}
fi
if has engine; then
  for m in ${ENGINE_MODELS:-all}; do
    $P qsearch-bench-engine-cuda --model $m ${ENGINE_ARGS:-} 2>&1 | tee -a "$OUT/bench_engine.txt" | grep -v '^{' | tail -14
  done
fi
