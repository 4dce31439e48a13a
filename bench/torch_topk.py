#!/usr/bin/env python3
"""torch.matmul + torch.topk on the GPU: the baseline for the "gpu" index (issue 14).

N x dim random unit vectors (bf16) resident on the GPU; one query at a time (latency P50/P99 of
matmul + topk + the copy of the k results to the host) and batches of --batch queries (QPS).
Scores come out of the bf16 matmul in bf16 (fp32 accumulation inside cuBLAS); recall@k is
measured against an fp32 product over the same bf16 vectors. One JSON line a size on stdout.

  python3 bench/torch_topk.py --sizes 1000000,10000000 --dim 1024 --k 10
"""
import argparse
import json
import time

import torch


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(p * (len(v) - 1) + 0.5))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000000")
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    dev = torch.device("cuda")
    g = torch.Generator(device=dev)
    g.manual_seed(1)
    for n in sorted(int(s) for s in args.sizes.split(",")):
        x = torch.empty((n, args.dim), dtype=torch.bfloat16, device=dev)
        step = 1 << 20
        for i in range(0, n, step):
            m = min(step, n - i)
            r = torch.rand((m, args.dim), generator=g, device=dev) * 2 - 1
            x[i:i + m] = torch.nn.functional.normalize(r, dim=1).to(torch.bfloat16)
            del r
        q = torch.nn.functional.normalize(
            torch.rand((args.queries, args.dim), generator=g, device=dev) * 2 - 1, dim=1).to(torch.bfloat16)
        torch.cuda.synchronize()
        for i in range(5):
            torch.topk(torch.matmul(x, q[i]), args.k).indices.cpu()
        lat = []
        got = []
        for i in range(args.queries):
            t0 = time.perf_counter()
            idx = torch.topk(torch.matmul(x, q[i]), args.k).indices.cpu()
            lat.append((time.perf_counter() - t0) * 1e3)
            got.append(idx)
        # Recall over 20 queries against fp32 scores of the same bf16 vectors.
        hits = 0
        nr = min(20, args.queries)
        for i in range(nr):
            best_v = best_i = None
            for j in range(0, n, step):
                v, ix = torch.topk(torch.matmul(x[j:j + step].float(), q[i].float()), args.k)
                if best_v is None:
                    best_v, best_i = v, ix + j
                else:
                    cv, ci = torch.cat([best_v, v]), torch.cat([best_i, ix + j])
                    o = torch.topk(cv, args.k).indices
                    best_v, best_i = cv[o], ci[o]
            hits += len(set(best_i.cpu().tolist()) & set(got[i].tolist()))
        recall = hits / (nr * args.k)
        # Batches.
        b = min(args.batch, args.queries)
        qb = q[:b]
        torch.topk(torch.matmul(x, qb.T), args.k, dim=0).indices.cpu()
        rounds = 0
        blat = []
        t0 = time.perf_counter()
        while time.perf_counter() - t0 < args.seconds:
            s0 = time.perf_counter()
            torch.topk(torch.matmul(x, qb.T), args.k, dim=0).indices.cpu()
            blat.append((time.perf_counter() - s0) * 1e3)
            rounds += 1
        qps = rounds * b / (time.perf_counter() - t0)
        print(json.dumps({"system": "torch-matmul-topk", "n": n, "dim": args.dim, "k": args.k,
                          "p50_ms": round(pct(lat, 0.5), 4), "p99_ms": round(pct(lat, 0.99), 4),
                          "batch": b, "qps": round(qps, 1), "batch_p50_ms": round(pct(blat, 0.5), 4),
                          "recall": recall, "device": torch.cuda.get_device_name()}), flush=True)
        del x, q
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
