"""Whole-model parity of qsearch's CUDA engine against Hugging Face transformers (run on a GPU
machine with torch + transformers; docs/cuda.md).

For each of the Qwen3-Embedding 0.6B / 4B / 8B shapes: a random Qwen3Model (seeded) is saved in
bf16 with save_pretrained (safetensors, sharded above 2 GB: that also exercises qsearch's shard
loader), with the tokenizer.json (TemplateProcessing appending <|endoftext|>) of a qsearch test
model. Random token sequences of 1..8192 tokens ending with <|endoftext|> are embedded by
  ours     `qsearch embed --model DIR --device cuda --ids` (bf16 weights and activations)
  HF bf16  Qwen3Model in bf16 (the weights as saved)
  HF fp32  the same weights upcast to fp32 (TF32 off): the reference
each as last-token hidden state, L2-normalised. Per text: cosine(ours, HF fp32) and
cosine(HF bf16, HF fp32). Per length bucket the check is
  mean cosine(ours, fp32) >= mean cosine(HF bf16, fp32) - 0.002
(random weights make long inputs numerically fragile, so the bar is HF's own bf16 path, not a fixed
number). Prints a table, writes a JSON report, exits 1 on any failed bucket.

--dtype fp8 (or both) also runs `qsearch embed --dtype fp8` on the same texts (issue 13's FP8
engine, sm_89+) and checks, per bucket, issue 13's fidelity gate
  mean cosine(ours fp8, fp32) >= 0.995
with ours bf16 and HF bf16 reported beside it (keys fp8_mean, fp8_min, fp8_ok in the report).

usage: python3 hf_parity.py --qsearch "CMD" --tokenizer-dir DIR [--shapes 0.6B 4B 8B]
                            [--lengths 1 7 32 ...] [--out report.json] [--workdir /tmp/hf_parity]
                            [--dtype bf16|fp8|both]
  --qsearch        how to run the qsearch binary, e.g. ".devpack/run.sh qsearch" or build/qsearch
  --tokenizer-dir  a directory holding tokenizer.json (+ tokenizer_config.json), e.g. one written by
                   `qsearch make-test-model`
"""
import argparse, json, math, os, shlex, shutil, subprocess, sys, time

import torch
from transformers import Qwen3Config, Qwen3Model

SHAPES = {
    "0.6B": dict(hidden_size=1024, num_hidden_layers=28, num_attention_heads=16, num_key_value_heads=8, intermediate_size=3072),
    "4B": dict(hidden_size=2560, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, intermediate_size=9728),
    "8B": dict(hidden_size=4096, num_hidden_layers=36, num_attention_heads=32, num_key_value_heads=8, intermediate_size=12288),
}
EOS = 151643
TOLERANCE = 0.002
FP8_GATE = 0.995


def texts_for(lengths, seed):
    g = torch.Generator().manual_seed(seed)
    texts = []
    for L in lengths:
        per_bucket = 3 if L <= 1000 else 2
        for _ in range(per_bucket):
            ids = torch.randint(0, 150000, (L,), generator=g).tolist()
            ids[-1] = EOS
            texts.append(ids)
    return texts


def make_model(shape, seed, model_dir, tokenizer_dir):
    cfg = Qwen3Config(vocab_size=151669, head_dim=128, rms_norm_eps=1e-6, rope_theta=1000000.0,
                      max_position_embeddings=32768, tie_word_embeddings=True, **SHAPES[shape])
    torch.manual_seed(seed)
    with torch.device("cuda"):
        try:
            model = Qwen3Model._from_config(cfg, dtype=torch.bfloat16)
        except TypeError:
            model = Qwen3Model._from_config(cfg, torch_dtype=torch.bfloat16)
    model.eval()
    if os.path.exists(model_dir):
        shutil.rmtree(model_dir)
    model.save_pretrained(model_dir, max_shard_size="2GB", safe_serialization=True)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        src = os.path.join(tokenizer_dir, name)
        if os.path.exists(src):
            shutil.copy(src, os.path.join(model_dir, name))
    return model


def run_ours(qsearch, model_dir, texts, dtype="bf16"):
    cmd = shlex.split(qsearch) + ["embed", "--model", model_dir, "--device", "cuda", "--ids",
                                  "--max-tokens", "32768", "--dtype", dtype]
    stdin = "".join(json.dumps(t) + "\n" for t in texts)
    t0 = time.time()
    p = subprocess.run(cmd, input=stdin, capture_output=True, text=True)
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    vecs = [json.loads(line) for line in p.stdout.splitlines() if line.strip()]
    if len(vecs) != len(texts):
        raise RuntimeError(f"qsearch embed returned {len(vecs)} vectors for {len(texts)} texts")
    return torch.tensor(vecs, dtype=torch.float64), time.time() - t0, p.stderr.strip().splitlines()


@torch.inference_mode()
def run_hf(model, texts):
    out = []
    for ids in texts:
        x = torch.tensor([ids], device="cuda")
        h = model(input_ids=x).last_hidden_state[0, -1].double()
        out.append(torch.nn.functional.normalize(h, dim=-1).cpu())
    return torch.stack(out)


def cos(a, b):
    return torch.nn.functional.cosine_similarity(a, b, dim=-1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qsearch", required=True)
    ap.add_argument("--tokenizer-dir", required=True)
    ap.add_argument("--shapes", nargs="+", default=["0.6B", "4B", "8B"])
    ap.add_argument("--lengths", nargs="+", type=int, default=[1, 7, 32, 100, 511, 1000, 2048, 4096, 8192])
    ap.add_argument("--out", default="hf_parity.json")
    ap.add_argument("--workdir", default="/tmp/hf_parity")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=["bf16", "fp8", "both"], default="bf16",
                    help="bf16: the parity check; fp8 / both: also the FP8 engine's gate")
    args = ap.parse_args()
    with_fp8 = args.dtype in ("fp8", "both")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False

    report = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__,
                  transformers=__import__("transformers").__version__, tolerance=TOLERANCE, shapes={})
    ok_all = True
    rows = []
    for shape in args.shapes:
        t0 = time.time()
        model_dir = os.path.join(args.workdir, shape)
        model = make_model(shape, args.seed, model_dir, args.tokenizer_dir)
        texts = texts_for(args.lengths, args.seed + 1)
        hf_bf16 = run_hf(model, texts)
        torch.cuda.empty_cache()  # our engine runs beside the bf16 model (8B: 16 + 19 GB)
        ours, ours_s, ours_log = run_ours(args.qsearch, model_dir, texts)
        if with_fp8:
            ours8, ours8_s, ours8_log = run_ours(args.qsearch, model_dir, texts, "fp8")
        model.float()
        hf_fp32 = run_hf(model, texts)
        del model
        torch.cuda.empty_cache()
        c_ours, c_bf16, c_ours_bf16 = cos(ours, hf_fp32), cos(hf_bf16, hf_fp32), cos(ours, hf_bf16)
        per_text = [dict(tokens=len(t), cos_ours_fp32=float(a), cos_hfbf16_fp32=float(b),
                         cos_ours_hfbf16=float(c))
                    for t, a, b, c in zip(texts, c_ours, c_bf16, c_ours_bf16)]
        buckets = {}
        for L in args.lengths:
            sel = [i for i, t in enumerate(texts) if len(t) == L]
            ours_mean = float(c_ours[sel].mean())
            bf16_mean = float(c_bf16[sel].mean())
            # with --dtype fp8 the bf16 parity is reported, the fp8 gate decides
            ok = ours_mean >= bf16_mean - TOLERANCE
            b = dict(texts=len(sel), ours_mean=ours_mean, hf_bf16_mean=bf16_mean,
                     ours_min=float(c_ours[sel].min()), ok=ok)
            fp8 = None
            if with_fp8:
                c8 = cos(ours8, hf_fp32)
                fp8 = (float(c8[sel].mean()), float(c8[sel].min()))
                b.update(fp8_mean=fp8[0], fp8_min=fp8[1], fp8_ok=fp8[0] >= FP8_GATE)
            if args.dtype != "fp8":
                ok_all &= ok
            if with_fp8:
                ok_all &= b["fp8_ok"]
            buckets[str(L)] = b
            rows.append((shape, L, len(sel), ours_mean, bf16_mean, float(c_ours[sel].min()), ok, fp8))
        report["shapes"][shape] = dict(buckets=buckets, texts=per_text, ours_seconds=round(ours_s, 2),
                                       ours_log=ours_log[-5:], seconds=round(time.time() - t0, 1))
        if with_fp8:
            report["shapes"][shape].update(fp8_seconds=round(ours8_s, 2), fp8_log=ours8_log[-5:])
        print(json.dumps(dict(shape=shape, buckets=buckets, seconds=round(time.time() - t0, 1))), flush=True)
        shutil.rmtree(model_dir, ignore_errors=True)
    report["ok"] = ok_all
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    fp8_head = f" {'fp8~fp32':>10} {'fp8 min':>9}  fp8 >= {FP8_GATE}" if with_fp8 else ""
    print(f"\n{'shape':6} {'tokens':>6} {'n':>2} {'ours~fp32':>10} {'hfbf16~fp32':>12} {'ours min':>9}  result{fp8_head}")
    for shape, L, n, a, b, mn, ok, fp8 in rows:
        tail = f" {fp8[0]:10.6f} {fp8[1]:9.6f}  {'ok' if fp8[0] >= FP8_GATE else 'FAIL'}" if fp8 else ""
        print(f"{shape:6} {L:6d} {n:2d} {a:10.6f} {b:12.6f} {mn:9.6f}  {'ok  ' if ok else 'FAIL'}{tail}")
    rule = f"ours mean >= HF bf16 mean - {TOLERANCE}"
    if args.dtype == "fp8":
        rule = f"fp8 mean >= {FP8_GATE}"
    elif args.dtype == "both":
        rule += f" and fp8 mean >= {FP8_GATE}"
    print(f"\nhf_parity: {'PASS' if ok_all else 'FAIL'} (per bucket: {rule})")
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
