#!/usr/bin/env bash
# The full GPU run of the CUDA engine, in one call on the device machine (H100, < 9 minutes):
# kernel + engine tests, whole-model parity against Hugging Face (0.6B, 4B, 8B shapes), the engine
# benchmark for the three shapes, the attention benchmark, Hugging Face's own baseline
# (hf_baseline.py) on the same GPU, and a side-by-side summary.
#
# Bundle here first (Release build with CUDA, e.g. in build-cuda):
#   /work/shared/tools/devpack .devpack build-cuda/qsearch build-cuda/tests/test_kernels \
#     build-cuda/tests/test_cuda_engine build-cuda/bench/qsearch-bench-engine-cuda \
#     build-cuda/bench/qsearch-bench-attention-cuda \
#     -- .deps/qwen3/tokenizer.json /work/shared/bench/hf_baseline.py
# then run (device tool, carry [".devpack"]):
#   QSEARCH_COMMIT=<git rev-parse --short HEAD, from here> bash scripts/device_full.sh "$OUT"
# Files written to OUT (7, the device tool returns at most 8): tests.txt, hf_parity.json,
# hf_parity.txt, bench_engine.txt, bench_attention.txt, hf_baseline.txt, summary.md.
# Exit status: non-zero when a test or the parity check failed.
# For a quick check of this script: FULL_SHAPES=0.6B SKIP_HF_BASELINE=1 (default: all, with HF).
set -uo pipefail
OUT=${1:-${OUT:-/tmp/qsearch-full}}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONUNBUFFERED=1
export LD_LIBRARY_PATH=$PWD/.devpack/lib:/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
P=.devpack/run.sh
mkdir -p /tmp/qsearch-deps/qwen3 && cp .devpack/extra/tokenizer.json /tmp/qsearch-deps/qwen3/
export QSEARCH_DEPS_DIR=/tmp/qsearch-deps
# ... and run the bundled qsearch binary through $QSEARCH_BINARY
printf '#!/bin/sh\nexec %s/.devpack/run.sh qsearch "$@"\n' "$PWD" > /tmp/qsearch-bin && chmod +x /tmp/qsearch-bin
export QSEARCH_BINARY=/tmp/qsearch-bin
status=0
t_start=$(date +%s)
stamp() { echo "[device_full +$(( $(date +%s) - t_start ))s] $*"; }

stamp "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1)"
{
  stamp "test_kernels"; $P test_kernels; k=$?
  stamp "test_cuda_engine"; $P test_cuda_engine; e=$?
  echo "test_kernels exit $k, test_cuda_engine exit $e"
  [ $k = 0 ] && [ $e = 0 ]
} > "$OUT/tests.txt" 2>&1 || status=1
grep -E "^\[  (PASSED|FAILED|SKIPPED) |exit" "$OUT/tests.txt"

SHAPES=${FULL_SHAPES:-0.6B 4B 8B}
stamp "hf_parity ($SHAPES)"
$P qsearch make-test-model --tokenizer .devpack/extra/tokenizer.json --out /tmp/qsearch-tok > /dev/null || status=1
python3 tests/reference/hf_parity.py --qsearch "$PWD/$P qsearch" --tokenizer-dir /tmp/qsearch-tok \
  --shapes $SHAPES --out "$OUT/hf_parity.json" --workdir /tmp/hf_parity > "$OUT/hf_parity.txt" 2>&1 || status=1
tail -32 "$OUT/hf_parity.txt"

stamp "qsearch-bench-engine-cuda ($SHAPES)"
: > "$OUT/bench_engine.txt"
for m in $SHAPES; do
  $P qsearch-bench-engine-cuda --model $m --workload all >> "$OUT/bench_engine.txt" 2>&1 || status=1
done
grep -v '^{' "$OUT/bench_engine.txt" | grep -E "^(0.6B|4B|8B) |^[a-z_]+ +[0-9]" | head -60
stamp "qsearch-bench-attention-cuda"
$P qsearch-bench-attention-cuda > "$OUT/bench_attention.txt" 2>&1 || status=1
tail -20 "$OUT/bench_attention.txt"
if [ -z "${SKIP_HF_BASELINE:-}" ]; then
  stamp "hf_baseline.py"
  python3 .devpack/extra/hf_baseline.py > "$OUT/hf_baseline.txt" 2>&1 || status=1
else
  echo '{"skipped": "SKIP_HF_BASELINE"}' > "$OUT/hf_baseline.txt"
fi
stamp "summary"

python3 - "$OUT" <<'PY' | tee "$OUT/summary.md"
import json, sys, os, subprocess, datetime
out = sys.argv[1]
def jlines(name):
    rows = []
    for line in open(os.path.join(out, name), errors="replace"):
        line = line.strip()
        if line.startswith("{"):
            try: rows.append(json.loads(line))
            except ValueError: pass
    return rows
ours, hf, attn = jlines("bench_engine.txt"), jlines("hf_baseline.txt"), jlines("bench_attention.txt")
gpu = next((r["gpu"] for r in hf if "gpu" in r), next((r["gpu"] for r in attn if "gpu" in r), "?"))
commit = os.environ.get("QSEARCH_COMMIT", "")
if not commit:
    try: commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    except Exception: commit = "?"
print(f"# qsearch CUDA engine vs Hugging Face ({gpu}, {datetime.date.today()}, commit {commit or '?'})\n")
targets = {"0.6B": (400e3, 300e3, 3), "4B": (70e3, 65e3, 6), "8B": (38e3, 36e3, 8)}
print("| model | workload | qsearch | HF sdpa | speed-up | target |\n|---|---|---|---|---|---|")
for m in ("0.6B", "4B", "8B"):
    q = {r["workload"]: r for r in ours if r.get("model") == m and "workload" in r}
    h = {r["workload"]: r for r in hf if r.get("model") == m and r.get("attn") == "sdpa" and "workload" in r}
    hs = {r["single_request_tokens"]: r for r in hf if r.get("model") == m and r.get("attn") == "sdpa" and "single_request_tokens" in r}
    t = targets[m]
    for w, hw, tgt in (("fixed512", "fixed512", t[0]), ("mixed-lognormal180", "mixed-lognormal180", t[1])):
        a, b = q.get(w), h.get(hw)
        if a:
            hv = f"{b['tok_per_s']:,} tok/s" if b else "-"
            sp = f"{a['tok_per_s'] / b['tok_per_s']:.2f}x" if b else "-"
            ok = "ok" if a["tok_per_s"] >= tgt else "MISSED"
            print(f"| {m} | {w} | {a['tok_per_s']:,.0f} tok/s ({a['tflops']:.0f} TFLOP/s) | {hv} | {sp} | >= {tgt/1e3:.0f}k {ok} |")
    for L in (32, 512):
        a, b = q.get(f"single{L}"), hs.get(L)
        if a:
            hv = f"{b['ms']} ms" if b else "-"
            sp = f"{b['ms'] / a['ms_mean']:.1f}x" if b else "-"
            tgt = f"<= {t[2]} ms {'ok' if a['ms_mean'] <= t[2] else 'MISSED'}" if L == 32 else ""
            print(f"| {m} | single {L} tokens | {a['ms_mean']:.2f} ms (p50 {a['ms_p50']:.2f}) | {hv} | {sp} | {tgt} |")
print("\n## cuBLAS bf16 GEMM ceiling at the model shapes (TFLOP/s, M = 16384)\n")
for r in ours:
    if "gemm_tflops" in r: print(f"- qsearch {r['model']}: {r['gemm_tflops']}")
for r in hf:
    if "gemm_tflops" in r: print(f"- torch {r['model']}: {r['gemm_tflops']}")
print("\n## Attention kernel (causal, head_dim 128, 16384 tokens per batch; TFLOP/s)\n")
print("| seqlen | heads q/kv | block_m 64 | block_m 128 | engine picks | PyTorch FA2 | cuDNN |\n|---|---|---|---|---|---|---|")
fa2 = {128: 69, 512: 194, 2048: 304, 8192: 327}; cud = {128: 94, 512: 357, 2048: 537, 8192: 630}
for hq in (16, 32):
    for n in (128, 512, 2048, 8192):
        rs = {r.get("block_m", 64): r for r in attn if r.get("seqlen") == n and r.get("q_heads") == hq}
        pick = next((r["block_m"] for r in rs.values() if r.get("engine_default")), "?")
        v = lambda b: f"{rs[b]['tflops']:.0f}" if b in rs else "-"
        print(f"| {n} | {hq}/8 | {v(64)} | {v(128)} | {pick} | {fa2[n]} | {cud[n]} |")
try:
    rep = json.load(open(os.path.join(out, "hf_parity.json")))
    print(f"\n## Parity with HF fp32 (mean cosine per length bucket; pass: ours >= HF bf16 - {rep['tolerance']})\n")
    print("| shape | tokens | ours | HF bf16 | result |\n|---|---|---|---|---|")
    for s, d in rep["shapes"].items():
        for L, b in d["buckets"].items():
            print(f"| {s} | {L} | {b['ours_mean']:.6f} | {b['hf_bf16_mean']:.6f} | {'ok' if b['ok'] else 'FAIL'} |")
    print(f"\nparity: {'PASS' if rep['ok'] else 'FAIL'}")
except Exception as e:
    print(f"\nparity report missing: {e}")
PY
stamp "done (status $status)"
exit $status
