#!/usr/bin/env bash
# The soak test (scripts/soak.sh) on the GPU machine: `qsearch serve --device cuda` with a
# random-weight model of the exact Qwen3-Embedding-0.6B shape, 64 embedding clients with
# 512-token inputs (dimensions 1024) plus 8 search/ingest clients on a growing HNSW collection.
# One device command may run 10 minutes at most, start-up included, so the GPU soak lasts
# DURATION = 540 s by default; the full 10-minute soak runs on the CPU engine (scripts/soak.sh).
#
#   scripts/device_soak.sh pack              # here: bundle qsearch + qsearch-load (.devpack-soak)
#   scripts/device_soak.sh run               # on the device (carry .devpack-soak); report in $OUT
# Environment: BUILD (a CUDA build with qsearch and bench/qsearch-load; default build),
# PACK (.devpack-soak), OUT (default /tmp/soak-device), DURATION (540), CONCURRENCY (64).
# $OUT gets soak-report.md, soak-report.json and soak.tar.gz (every file soak.sh wrote; plot it
# here with scripts/plot_soak.sh after unpacking).
set -euo pipefail
cd "$(dirname "$0")/.."
PACK=${PACK:-.devpack-soak}
BUILD=${BUILD:-build}
cmd=${1:-run}

if [ "$cmd" = pack ]; then
  cmake --build "$BUILD" --target qsearch qsearch-load -j "${JOBS:-2}"
  /work/shared/tools/devpack "$PACK" "$BUILD/qsearch" "$BUILD/bench/qsearch-load" -- .deps/qwen3/tokenizer.json
  # FAISS needs the reference BLAS/LAPACK names, which the GPU machine may lack.
  mkdir -p "$PACK/lib-blas"
  for l in libblas.so.3 liblapack.so.3; do
    cp -L "$(ldconfig -p | awk -v l="$l" '$1 == l {print $NF; exit}')" "$PACK/lib-blas/"
  done
  git rev-parse --short HEAD > "$PACK/COMMIT"
  exit 0
fi

out=${OUT:-/tmp/soak-device}
mkdir -p "$out"
pack=$PWD/$PACK
if LD_LIBRARY_PATH="$pack/lib:${LD_LIBRARY_PATH:-}" ldd "$pack/bin/qsearch" | grep -qE 'lib(blas|lapack)\.so\.3 => not found'; then
  export LD_LIBRARY_PATH="$pack/lib-blas:${LD_LIBRARY_PATH:-}"
fi
# soak.sh runs $BUILD/qsearch and $BUILD/bench/qsearch-load: wrappers around the bundle.
wrap=$(mktemp -d /tmp/qsearch-soak-bin-XXXXXX)
mkdir -p "$wrap/bench"
printf '#!/bin/sh\nexec %s/run.sh qsearch "$@"\n' "$pack" > "$wrap/qsearch"
printf '#!/bin/sh\nexec %s/run.sh qsearch-load "$@"\n' "$pack" > "$wrap/bench/qsearch-load"
chmod +x "$wrap/qsearch" "$wrap/bench/qsearch-load"
model=/tmp/qsearch-soak-0.6B
"$wrap/qsearch" make-test-model --shape 0.6B --tokenizer "$pack/extra/tokenizer.json" --out "$model" > "$out/make-test-model.json"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader > "$out/gpu.txt" 2>&1 || true
work=$(mktemp -d /tmp/qsearch-soak-out-XXXXXX)
set +e
BUILD=$wrap MODEL=$model DEVICE=cuda DIMENSIONS=1024 DURATION=${DURATION:-540} \
  CONCURRENCY=${CONCURRENCY:-64} COMMIT="$(cat "$pack/COMMIT")" OUT=$work scripts/soak.sh > "$out/soak.log" 2>&1
rc=$?
set -e
cp "$work/soak-report.md" "$work/soak-report.json" "$out/" 2>/dev/null || true
{ echo; echo "GPU: $(cat "$out/gpu.txt")"; } >> "$out/soak-report.md"
tar -czf "$out/soak.tar.gz" -C "$work" .
rm -rf "$wrap" "$work" "$model"
exit $rc
