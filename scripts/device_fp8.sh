#!/usr/bin/env bash
# The FP8 engine's device run (issue 13, FP8 half), in one call on the GPU machine (H200/H100,
# ~6-8 minutes): the FP8 kernel and engine tests (fidelity per length bucket against the CPU fp32
# engine, bf16 beside it), then the engine benchmark at the 0.6B/4B/8B shapes with bf16 and fp8
# side by side (512-token documents, mixed lengths, single requests, the GEMM ceilings, a per-step
# layer profile, fp8 with cuBLASLt's fast accumulation too), Hugging Face's baseline for the same
# shapes, and summary.md.
#
# Bundle here first (a Release build with CUDA: `make build` in this checkout gives build/):
#   /work/shared/tools/devpack .devpack build/qsearch build/tests/test_kernels \
#     build/tests/test_cuda_engine build/bench/qsearch-bench-engine-cuda \
#     -- .deps/qwen3/tokenizer.json /work/shared/bench/hf_baseline.py
#   tar czf .devpack.tgz .devpack      # 111 MB -> 40 MB: the device call carries at most 64 MiB
# then run (device tool, carry [".devpack.tgz"]; the script unpacks it):
#   QSEARCH_COMMIT=<git rev-parse --short HEAD, from here> bash scripts/device_fp8.sh "$OUT"
# Files written to OUT (6): tests.txt, bench_engine.txt, bench_fast_accum.txt, hf_baseline.txt,
# fp8_overlap.txt, summary.md (+ hf_parity.txt/.json with HF_PARITY_SHAPES). Exit status: non-zero when a test or a benchmark failed.
# Knobs: FP8_SHAPES (default "0.6B 4B 8B"), SKIP_HF_BASELINE=1, SKIP_FAST_ACCUM=1,
# HF_PARITY_SHAPES="0.6B ..." (off by default, ~1-2 min a shape): tests/reference/hf_parity.py
# --dtype both against transformers fp32 (writes hf_parity.txt, hf_parity.json);
# SKIP_OVERLAP=1: skip tests/reference/fp8_overlap.py (top-10 neighbour overlap of fp8 vs bf16
# over 5000 texts on a random-weight 0.6B-shape checkpoint, ~30 s; writes fp8_overlap.txt).
set -uo pipefail
OUT=${1:-${OUT:-/tmp/qsearch-fp8}}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
# a carried .devpack.tgz is this call's bundle: it replaces any .devpack an earlier call left
if [ -f .devpack.tgz ]; then rm -rf .devpack && tar xzf .devpack.tgz || exit 1; fi
export PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=$PWD/.devpack/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
P=.devpack/run.sh
mkdir -p /tmp/qsearch-deps/qwen3 && cp .devpack/extra/tokenizer.json /tmp/qsearch-deps/qwen3/
export QSEARCH_DEPS_DIR=/tmp/qsearch-deps
printf '#!/bin/sh\nexec %s/.devpack/run.sh qsearch "$@"\n' "$PWD" > /tmp/qsearch-bin && chmod +x /tmp/qsearch-bin
export QSEARCH_BINARY=/tmp/qsearch-bin
status=0
t_start=$(date +%s)
stamp() { echo "[device_fp8 +$(( $(date +%s) - t_start ))s] $*"; }
# seconds left before BUDGET_S (default 540: the summary must be written inside the device
# tool's 600 s), at least 10
left() { local l=$(( ${BUDGET_S:-540} - ($(date +%s) - t_start) )); [ $l -lt 10 ] && l=10; echo $l; }

stamp "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
{
  # all kernel tests (the FP8 ones and the bf16 ones the FP8 change touched: fill, norms)
  stamp "test_kernels"; timeout 120 $P test_kernels; k=$?
  # the FP8 engine, and the bf16 engine's own checks (unchanged numerics)
  stamp "test_cuda_engine (Fp8Engine.*, CudaEngine.*)"
  timeout 240 $P test_cuda_engine --gtest_filter='Fp8Engine.*:CudaEngine.*'; e=$?
  echo "test_kernels exit $k, test_cuda_engine exit $e"
  [ $k = 0 ] && [ $e = 0 ]
} > "$OUT/tests.txt" 2>&1 || status=1
grep -E "^\[  (PASSED|FAILED|SKIPPED) |^\[ info \]|outer-vector|exit [0-9]" "$OUT/tests.txt" | head -60

SHAPES=${FP8_SHAPES:-0.6B 4B 8B}
stamp "qsearch-bench-engine-cuda --dtype both ($SHAPES)"
: > "$OUT/bench_engine.txt"
for m in $SHAPES; do
  for w in gemm profile fixed512 mixed single; do
    timeout 150 $P qsearch-bench-engine-cuda --model $m --workload $w --dtype both \
      >> "$OUT/bench_engine.txt" 2>&1 || status=1
  done
done
grep -E "^(0.6B|4B|8B) " "$OUT/bench_engine.txt" | head -40
if [ -z "${SKIP_FAST_ACCUM:-}" ]; then
  stamp "fp8 with fast accumulation (fixed512)"
  : > "$OUT/bench_fast_accum.txt"
  for m in $SHAPES; do
    timeout 90 $P qsearch-bench-engine-cuda --model $m --workload fixed512 --dtype fp8 \
      --fp8-fast-accum >> "$OUT/bench_fast_accum.txt" 2>&1 || status=1
  done
else
  echo '{"skipped": "SKIP_FAST_ACCUM"}' > "$OUT/bench_fast_accum.txt"
fi
if [ -z "${SKIP_OVERLAP:-}" ]; then
  stamp "fp8_overlap.py (0.6B shape, 5000 texts)"
  $P qsearch make-test-model --tokenizer .devpack/extra/tokenizer.json --shape 0.6B \
    --out /tmp/qsearch-m06 > /dev/null || status=1
  timeout 240 python3 tests/reference/fp8_overlap.py --qsearch "$PWD/$P qsearch" --model /tmp/qsearch-m06 \
    --n 5000 --out /tmp/fp8_overlap.json > "$OUT/fp8_overlap.txt" 2>&1 || status=1
  tail -3 "$OUT/fp8_overlap.txt"
fi
if [ -z "${SKIP_HF_BASELINE:-}" ]; then
  stamp "hf_baseline.py ($SHAPES)"
  # whatever it printed before the budget ran out is summarised (one JSON line per measurement)
  timeout $(left) python3 .devpack/extra/hf_baseline.py $SHAPES > "$OUT/hf_baseline.txt" 2>&1
  rc=$?; [ $rc = 124 ] && echo "hf_baseline.py stopped at the time budget (partial)" >> "$OUT/hf_baseline.txt"
  [ $rc = 0 ] || [ $rc = 124 ] || status=1
else
  echo '{"skipped": "SKIP_HF_BASELINE"}' > "$OUT/hf_baseline.txt"
fi
if [ -n "${HF_PARITY_SHAPES:-}" ]; then
  stamp "hf_parity --dtype both ($HF_PARITY_SHAPES)"
  $P qsearch make-test-model --tokenizer .devpack/extra/tokenizer.json --out /tmp/qsearch-tok > /dev/null || status=1
  timeout $(left) python3 tests/reference/hf_parity.py --qsearch "$PWD/$P qsearch" --tokenizer-dir /tmp/qsearch-tok \
    --shapes $HF_PARITY_SHAPES --dtype both --out "$OUT/hf_parity.json" --workdir /tmp/hf_parity \
    > "$OUT/hf_parity.txt" 2>&1 || status=1
  tail -20 "$OUT/hf_parity.txt"
fi
stamp "summary"

python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, sys, os, re, subprocess, datetime
out = sys.argv[1]
def jlines(name):
    rows = []
    try:
        for line in open(os.path.join(out, name), errors="replace"):
            line = line.strip()
            if line.startswith("{"):
                try: rows.append(json.loads(line))
                except ValueError: pass
    except OSError: pass
    return rows
ours, fast, hf = jlines("bench_engine.txt"), jlines("bench_fast_accum.txt"), jlines("hf_baseline.txt")
gpu = next((r["gpu"] for r in hf if "gpu" in r), "?")
commit = os.environ.get("QSEARCH_COMMIT", "") or "?"
print(f"# qsearch FP8 engine (issue 13): bf16 vs fp8 ({gpu}, {datetime.date.today()}, commit {commit})\n")
tests = open(os.path.join(out, "tests.txt"), errors="replace").read()
print("## Tests\n")
for line in tests.splitlines():
    if re.match(r"^\[  (PASSED|FAILED) |^test_kernels exit", line) or "FAILED  ]" in line:
        print(f"- `{line.strip()}`")
print("\n## Fidelity (cosine vs the CPU fp32 engine, random-weight test models; gate: fp8 mean >= 0.995 per bucket)\n")
for line in tests.splitlines():
    if line.startswith("[ info ]"):
        print(f"- {line[9:].strip()}")
targets = {"0.6B": 600e3, "4B": 120e3, "8B": 68e3}
bf16_today = {"0.6B": 486.6e3, "4B": 78.2e3, "8B": 43.4e3}
def pick(rows, m, d, w):
    return next((r for r in rows if r.get("model") == m and r.get("dtype") == d and r.get("workload") == w), None)
try:
    for line in open(os.path.join(out, "fp8_overlap.txt"), errors="replace"):
        if line.startswith("{"):
            o = json.loads(line)
            print(f"- neighbour overlap (0.6B shape, random weights, {o['texts']} texts): mean overlap@{o['k']} "
                  f"fp8 vs bf16 {o['overlap_mean']:.4f} (p10 {o['overlap_p10']:.2f}, min {o['overlap_min']:.2f}; "
                  f"gate >= 0.95 {'ok' if o['ok'] else 'MISSED'}); cosine bf16~fp8 mean {o['cos_bf16_fp8_mean']:.6f} "
                  f"min {o['cos_bf16_fp8_min']:.6f}; bf16 10th-neighbour cosine mean {o['bf16_kth_neighbour_cos_mean']:.4f}")
except OSError:
    pass
print("\n## Throughput (tokens/s, TFLOP/s counted as the model's FLOPs)\n")
print("| model | workload | bf16 | fp8 | fp8 / bf16 | fp8 fast-accum | HF sdpa bf16 | fp8 target |")
print("|---|---|---|---|---|---|---|---|")
for m in ("0.6B", "4B", "8B"):
    hfr = {r["workload"]: r for r in hf if r.get("model") == m and r.get("attn") == "sdpa" and "workload" in r}
    for w in ("fixed512", "mixed-lognormal180", "single32", "single512"):
        a, b, f = pick(ours, m, "bf16", w), pick(ours, m, "fp8", w), pick(fast, m, "fp8", w)
        if not a and not b: continue
        def cell(r):
            if not r: return "-"
            if w.startswith("single"): return f"{r['ms_mean']:.2f} ms"
            return f"{r['tok_per_s']:,.0f} ({r['tflops']:.0f})"
        ratio = f"{b['tok_per_s'] / a['tok_per_s']:.2f}x" if a and b else "-"
        h = hfr.get(w)
        hv = f"{h['tok_per_s']:,}" if h else "-"
        tgt = ""
        if b and w == "fixed512":
            tgt = f">= {targets[m]/1e3:.0f}k {'ok' if b['tok_per_s'] >= targets[m] else 'MISSED'}"
        elif b and w == "mixed-lognormal180":
            tgt = f">= {0.95*targets[m]/1e3:.0f}k {'ok' if b['tok_per_s'] >= 0.95*targets[m] else 'MISSED'}"
        print(f"| {m} | {w} | {cell(a)} | {cell(b)} | {ratio} | {cell(f)} | {hv} | {tgt} |")
print(f"\n(bf16 at issue 13's filing: 0.6B {bf16_today['0.6B']:,.0f}, 4B {bf16_today['4B']:,.0f}, 8B {bf16_today['8B']:,.0f} tokens/s at fixed512)")
print("\n## Weights memory (GiB, from Backend::memory(), as /metrics reports it)\n")
for m in ("0.6B", "4B", "8B"):
    a, b = pick(ours, m, "bf16", "fixed512"), pick(ours, m, "fp8", "fixed512")
    if a and b: print(f"- {m}: bf16 {a['weights_gib']:.2f}, fp8 {b['weights_gib']:.2f} ({b['weights_gib']/a['weights_gib']:.2f}x)")
print("\n## cuBLASLt GEMM ceilings at the model shapes (TFLOP/s, M = 16384)\n")
for r in ours:
    if "gemm_tflops" in r:
        extra = f", outer-vector scaling {r['outer_vector_scaling']}" if "outer_vector_scaling" in r else ""
        print(f"- {r['model']} {r.get('dtype', 'bf16')}: {r['gemm_tflops']}{extra}")
for r in hf:
    if "gemm_tflops" in r: print(f"- torch {r['model']} bf16: {r['gemm_tflops']}")
print("\n## One layer, step by step (us per layer, 32 x 512 tokens; TFLOP/s for GEMMs and attention)\n")
for m in ("0.6B", "4B", "8B"):
    for d in ("bf16", "fp8"):
        steps = [r for r in ours if r.get("model") == m and r.get("dtype", "bf16") == d and "profile_step" in r]
        if steps:
            total = sum(r["us_per_layer"] for r in steps)
            cells = ", ".join(f"{r['profile_step']} {r['us_per_layer']:.0f}" + (f" ({r['tflops']:.0f})" if r["tflops"] else "") for r in steps)
            print(f"- {m} {d}: total {total:.0f} us: {cells}")
PY
stamp "done (status $status)"
exit $status
