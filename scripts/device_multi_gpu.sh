#!/usr/bin/env bash
# Multi-GPU checks on a machine with 2+ GPUs (the device tool's nvidia-h200-x2 kind), one call:
#  1. the CUDA engine on every visible GPU gives the same result (test_cuda_engine);
#  2. `qsearch embed --device cuda` with one replica per GPU equals one GPU, vector for vector;
#  3. the dedup join split over all GPUs equals one GPU, and its speed on 1M x 1024.
# Bundles (here): .devpack (qsearch, test_cuda_engine; extra/tokenizer.json) as for
# scripts/device_full.sh, and .devpack-dedup (scripts/device_dedup.sh pack). Carry both.
# Writes $OUT/multi_gpu.txt. NCCL is not used; NVLink multicast stays off.
set -uo pipefail
OUT=${1:-${OUT:-/tmp/multi-gpu}}
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
P=.devpack/run.sh
D=.devpack-dedup/run.sh
if LD_LIBRARY_PATH=".devpack-dedup/lib:${LD_LIBRARY_PATH:-}" ldd .devpack-dedup/bin/qsearch-bench-dedup |
    grep -qE 'lib(blas|lapack)\.so\.3 => not found'; then
  export LD_LIBRARY_PATH="$PWD/.devpack-dedup/lib-blas:${LD_LIBRARY_PATH:-}"
fi
main() {
  local status=0
  nvidia-smi -L
  mkdir -p /tmp/qd/qwen3 && cp .devpack/extra/tokenizer.json /tmp/qd/qwen3/
  export QSEARCH_DEPS_DIR=/tmp/qd
  echo "== 1. engine on every GPU"
  $P test_cuda_engine --gtest_filter='*EveryVisibleGpu*:*Embedder*' 2>&1 | grep -E '^\[  |cuda:' || status=1
  echo "== 2. embed: one replica per GPU vs one GPU"
  $P qsearch make-test-model --tokenizer .devpack/extra/tokenizer.json --out /tmp/tm > /dev/null
  python3 -c '
import json, random
r = random.Random(7)
words = ["vector", "search", "检索", "向量", "emb", "données", "поиск", "🙂", "GPU", "token"]
for i in range(20000):
    print(json.dumps(" ".join(r.choice(words) for _ in range(r.randint(1, 120)))))' > /tmp/in.jsonl
  CUDA_VISIBLE_DEVICES=0 $P qsearch embed --model /tmp/tm --device cuda < /tmp/in.jsonl > /tmp/one.txt 2> /tmp/one.err
  t0=$(date +%s.%N)
  $P qsearch embed --model /tmp/tm --device cuda < /tmp/in.jsonl > /tmp/two.txt 2> /tmp/two.err
  t1=$(date +%s.%N)
  grep -iE 'cuda|replica|device' /tmp/two.err | head -6
  python3 - <<'PY' || status=1
import json, math
a = [json.loads(l) for l in open("/tmp/one.txt")]
b = [json.loads(l) for l in open("/tmp/two.txt")]
assert len(a) == len(b) == 20000, (len(a), len(b))
worst = min(sum(x * y for x, y in zip(u, v)) for u, v in zip(a, b))
print(f"20000 texts: min cosine(one GPU, all GPUs) = {worst:.7f}")
assert worst >= 0.9999
PY
  echo "== 3. dedup join over all GPUs vs one GPU (1M x 1024, threshold 0.92)"
  CUDA_VISIBLE_DEVICES=0 $D qsearch-bench-dedup --n 1000000 --dim 1024 --threshold 0.92 --kernel cublas \
    --faiss-queries 200 --json /tmp/d1.json 2>&1 | tail -8 || status=1
  $D qsearch-bench-dedup --n 1000000 --dim 1024 --threshold 0.92 --kernel cublas \
    --faiss-queries 200 --json /tmp/d2.json 2>&1 | tail -8 || status=1
  $D test_dedup --gtest_filter='GpuJoin.*' 2>&1 | grep -E '^\[  |workers|gpu vs' || status=1
  echo "exit status $status"
  return $status
}
main > "$OUT/multi_gpu.txt" 2>&1
st=$?
cat "$OUT/multi_gpu.txt"
cp /tmp/d1.json "$OUT/dedup_1gpu.json" 2>/dev/null; cp /tmp/d2.json "$OUT/dedup_all_gpus.json" 2>/dev/null
exit $st
