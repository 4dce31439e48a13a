"""Top-k neighbour overlap of the FP8 engine against the bf16 engine (issue 13's retrieval proxy),
run on a GPU machine with sm_89+ (docs/cuda.md, FP8 section).

N texts (default 5000) are embedded twice by `qsearch embed --device cuda --ids`, with
--dtype bf16 and --dtype fp8, on the same model directory. Every text is then a query against
all the others (cosine, itself excluded): overlap@k = |top-k(bf16) & top-k(fp8)| / k, averaged
over the queries. Also reported: the cosine between each text's bf16 and fp8 vectors.
Gate (issue 13): mean overlap@10 >= 0.95. Exits 1 below it.

The texts are random token-id sequences (seeded; log-normal lengths, median 120, 8..1024 tokens)
drawn from several id ranges of the Qwen3 vocabulary, so that they mix scripts; with a real
multilingual corpus at hand, pass --texts FILE (one JSON array of token ids per line) instead.

usage: python3 fp8_overlap.py --qsearch "CMD" --model DIR [--n 5000] [--k 10] [--texts FILE]
                              [--out report.json]
  --qsearch  how to run the qsearch binary, e.g. ".devpack/run.sh qsearch"
  --model    a model directory (e.g. one written by `qsearch make-test-model --shape 0.6B`)
"""
import argparse, json, math, random, shlex, subprocess, sys, time

import numpy as np

EOS = 151643
# id ranges of the Qwen3 vocabulary (byte-level BPE): mostly Latin-script merges low, CJK and
# other scripts spread higher up
RANGES = [(300, 20000), (20000, 60000), (60000, 100000), (100000, 150000)]


def make_texts(n, seed):
    rng = random.Random(seed)
    texts = []
    for _ in range(n):
        length = int(min(1024, max(8, math.exp(rng.gauss(math.log(120), 0.8)))))
        lo, hi = RANGES[rng.randrange(len(RANGES))]
        ids = [rng.randrange(lo, hi) if rng.random() < 0.8 else rng.randrange(300, 150000)
               for _ in range(length - 1)]
        texts.append(ids + [EOS])
    return texts


def embed(qsearch, model, texts, dtype):
    cmd = shlex.split(qsearch) + ["embed", "--model", model, "--device", "cuda", "--ids",
                                  "--dtype", dtype]
    stdin = "".join(json.dumps(t) + "\n" for t in texts)
    t0 = time.time()
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    v = np.array([json.loads(line) for line in p.stdout.splitlines() if line.strip()], dtype=np.float32)
    if v.shape[0] != len(texts):
        raise RuntimeError(f"{dtype}: {v.shape[0]} vectors for {len(texts)} texts")
    return v, time.time() - t0


def topk(v, k):
    s = v @ v.T
    np.fill_diagonal(s, -np.inf)
    return np.argpartition(-s, k, axis=1)[:, :k]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qsearch", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--texts")
    ap.add_argument("--out", default="fp8_overlap.json")
    args = ap.parse_args()
    if args.texts:
        texts = [json.loads(line) for line in open(args.texts) if line.strip()][: args.n]
    else:
        texts = make_texts(args.n, args.seed)
    a, ta = embed(args.qsearch, args.model, texts, "bf16")
    b, tb = embed(args.qsearch, args.model, texts, "fp8")
    cos = np.sum(a * b, axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    na, nb = topk(a, args.k), topk(b, args.k)
    overlap = np.array([len(set(x) & set(y)) / args.k for x, y in zip(na.tolist(), nb.tolist())])
    # how spread the corpus is: with random weights all vectors may crowd together, which makes
    # the neighbour order fragile; the mean similarity to the k-th neighbour tells
    s = a @ a.T
    np.fill_diagonal(s, -np.inf)
    kth = float(np.mean(np.sort(s, axis=1)[:, -args.k]))
    rep = dict(texts=len(texts), tokens=int(sum(len(t) for t in texts)), k=args.k,
               overlap_mean=float(overlap.mean()), overlap_min=float(overlap.min()),
               overlap_p10=float(np.percentile(overlap, 10)),
               cos_bf16_fp8_mean=float(cos.mean()), cos_bf16_fp8_min=float(cos.min()),
               bf16_kth_neighbour_cos_mean=kth, bf16_seconds=round(ta, 2), fp8_seconds=round(tb, 2),
               ok=bool(overlap.mean() >= 0.95))
    with open(args.out, "w") as f:
        json.dump(rep, f, indent=1)
    print(json.dumps(rep))
    print(f"fp8_overlap: {'PASS' if rep['ok'] else 'FAIL'} (mean overlap@{args.k} "
          f"{rep['overlap_mean']:.4f} >= 0.95; bf16~fp8 cosine mean {rep['cos_bf16_fp8_mean']:.6f})")
    sys.exit(0 if rep["ok"] else 1)


if __name__ == "__main__":
    main()
