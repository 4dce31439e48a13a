"""The reranker on the GPU machine, side by side with Hugging Face transformers in one call
(scripts/device_rerank.sh runs it; needs torch + transformers 5.x and a CUDA GPU).

For each shape (0.6B, 4B, 8B; random weights written by `qsearch make-test-model --reranker`,
the LM head tied for 0.6B/4B and untied for 8B as the real Qwen3-Rerankers):
  parity  pairs of about 64, 512, 2048 and 8000 tokens (model card prompt), scored by
            HF fp32   AutoModelForCausalLM.from_pretrained(dir, dtype=float32), TF32 off: the
                      reference (never a bf16 model cast to fp32: that rounds RoPE inv_freq too)
            HF bf16   from_pretrained(dir, dtype=bfloat16), sdpa
            ours      `qsearch serve --reranker DIR --device cuda`, POST /v1/rerank
          each pair alone; per length bucket the mean and max |score - HF fp32| of ours and of
          HF bf16. A bucket passes when ours' mean <= HF bf16's mean + 0.005.
  speed   pairs/s at 512-token pairs: HF bf16 sdpa, batch 32, the model card's process_inputs +
          compute_logits (full logits of every position, as the card computes them), timed;
          also HF with logits_to_keep=1 (not the card's code: the LM head on the last position
          only), for reference; ours: 8 clients sending POST /v1/rerank requests of 32 documents
          each through the server's scheduler, timed (tokenization and HTTP included).
  latency one request of 10 documents (512-token pairs) to /v1/rerank, sequential repeats.
Prints one JSON line per shape, writes a JSON report and a markdown table; exit 1 if a parity
bucket failed.

usage: python3 hf_rerank_device.py --qsearch "CMD" --tokenizer FILE [--shapes 0.6B 4B 8B]
                                   [--out report.json] [--table table.md] [--workdir /tmp/rr]
"""
import argparse, json, os, random, shlex, shutil, statistics, subprocess, sys, threading, time
import urllib.error, urllib.request

import torch

PREFIX = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the "
          "Query and the Instruct provided. Note that the answer can only be \"yes\" or "
          "\"no\".<|im_end|>\n<|im_start|>user\n")
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
TASK = "Given a web search query, retrieve relevant passages that answer the query"
MAX_LENGTH = 8192
BUCKETS = [64, 512, 2048, 8000]
PER_BUCKET = 3
TOLERANCE = 0.005
WORDS = ("search rank vector index query document answer model token engine batch score relevant "
         "passage river mountain city history science music language number system table light "
         "water energy market health school travel garden window paper letter story signal").split()


def format_instruction(instruction, query, doc):
    if instruction is None:
        instruction = TASK
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}"


class Card:
    """The Qwen3-Reranker model card's code, around a loaded model and tokenizer."""

    def __init__(self, tokenizer, model, logits_to_keep=None):
        self.tok, self.model, self.keep = tokenizer, model, logits_to_keep
        self.prefix_tokens = tokenizer.encode(PREFIX, add_special_tokens=False)
        self.suffix_tokens = tokenizer.encode(SUFFIX, add_special_tokens=False)
        self.yes = tokenizer.convert_tokens_to_ids("yes")
        self.no = tokenizer.convert_tokens_to_ids("no")

    def process_inputs(self, pairs):
        inputs = self.tok(pairs, padding=False, truncation="longest_first",
                          return_attention_mask=False,
                          max_length=MAX_LENGTH - len(self.prefix_tokens) - len(self.suffix_tokens))
        for i, ele in enumerate(inputs["input_ids"]):
            inputs["input_ids"][i] = self.prefix_tokens + ele + self.suffix_tokens
        inputs = self.tok.pad(inputs, padding=True, return_tensors="pt", max_length=MAX_LENGTH)
        for key in inputs:
            inputs[key] = inputs[key].to(self.model.device)
        return inputs

    @torch.no_grad()
    def compute_logits(self, inputs):
        extra = {} if self.keep is None else {"logits_to_keep": self.keep}
        batch_scores = self.model(**inputs, **extra).logits[:, -1, :]
        true_vector = batch_scores[:, self.yes]
        false_vector = batch_scores[:, self.no]
        batch_scores = torch.stack([false_vector, true_vector], dim=1)
        batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
        return batch_scores[:, 1].exp().tolist()

    def scores(self, pairs):
        return self.compute_logits(self.process_inputs(pairs))


def doc_of_length(tok, card, query, target, rng):
    """A document whose pair (prompt included) is about target tokens."""
    fixed = len(card.prefix_tokens) + len(card.suffix_tokens)
    n = max(1, (target - fixed) // 2)
    for _ in range(30):
        doc = " ".join(rng.choice(WORDS) + str(rng.randrange(100)) for _ in range(n))
        total = fixed + len(tok(format_instruction(None, query, doc),
                                add_special_tokens=False)["input_ids"])
        if abs(total - target) <= 4:
            return doc, total
        n = max(1, int(n * target / total) + (1 if total < target else -1))
    return doc, total


def load(model_dir, dtype, attn="sdpa"):
    from transformers import AutoModelForCausalLM
    try:  # straight onto the GPU where transformers can (an 8B fp32 model is 33 GB)
        m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation=attn,
                                                 device_map="cuda")
    except Exception as e:  # noqa: BLE001 - e.g. accelerate missing; the fallback may still work
        print(f"device_map unavailable ({e}); loading on the CPU first", file=sys.stderr)
        m = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype,
                                                 attn_implementation=attn).to("cuda")
    return m.eval()


def hf_bench(card, pairs, batch, seconds):
    card.scores(pairs[:batch])  # warm-up
    torch.cuda.synchronize()
    done, t0 = 0, time.time()
    while done == 0 or time.time() - t0 < seconds:
        chunk = [pairs[(done + k) % len(pairs)] for k in range(batch)]
        card.scores(chunk)
        done += batch
    torch.cuda.synchronize()
    return done / (time.time() - t0)


class Server:
    def __init__(self, qsearch, model, reranker, workdir):
        data = os.path.join(workdir, "data")
        shutil.rmtree(data, ignore_errors=True)
        self.log_path = os.path.join(workdir, "serve.log")
        self.log = open(self.log_path, "w")
        cmd = shlex.split(qsearch) + ["serve", "--model", model, "--reranker", reranker,
                                      "--device", "cuda", "--data-dir", data, "--port", "0",
                                      "--log-level", "info"]
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        self.port = None

    def wait_ready(self, timeout=300):
        t0 = time.time()
        while time.time() - t0 < timeout:
            if self.proc.poll() is not None:
                raise RuntimeError("qsearch serve exited:\n" + open(self.log_path).read()[-3000:])
            if self.port is None:
                for line in open(self.log_path, errors="replace"):
                    if "listening on http://" in line:
                        self.port = int(line.rsplit(":", 1)[1])
            if self.port is not None:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/ready", timeout=5) as r:
                        if r.status == 200:
                            return time.time() - t0
                except (urllib.error.URLError, ConnectionError):
                    pass
            time.sleep(0.5)
        raise RuntimeError("qsearch serve not ready in time:\n" + open(self.log_path).read()[-3000:])

    def rerank(self, query, docs, timeout=600):
        body = json.dumps({"query": query, "documents": docs}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}/v1/rerank", data=body,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=timeout) as r:
            out = json.loads(r.read())
        scores = [None] * len(docs)
        for item in out["results"]:
            scores[item["index"]] = item["relevance_score"]
        return scores

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


def ours_bench(server, query, docs, batch, clients, seconds):
    server.rerank(query, docs[:batch])  # warm-up (graphs, GEMM plans)
    lock, done, stop_at = threading.Lock(), [0], time.time() + seconds
    errors = []

    def client(c):
        k = c * batch
        while time.time() < stop_at:
            chunk = [docs[(k + j) % len(docs)] for j in range(batch)]
            try:
                server.rerank(query, chunk)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(repr(e))
                return
            k += batch * clients
            with lock:
                done[0] += batch

    t0 = time.time()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise RuntimeError(f"rerank requests failed: {errors[:3]}")
    return done[0] / (time.time() - t0)


def run_shape(args, shape, embed_dir):
    from transformers import AutoTokenizer
    qs = shlex.split(args.qsearch)
    t_shape = time.time()
    model_dir = os.path.join(args.workdir, shape)
    shutil.rmtree(model_dir, ignore_errors=True)
    head = "untied" if shape == "8B" else "tied"
    t0 = time.time()
    subprocess.run(qs + ["make-test-model", "--reranker", "--lm-head", head, "--shape", shape,
                         "--tokenizer", args.tokenizer, "--out", model_dir],
                   check=True, stdout=subprocess.DEVNULL)
    write_s = time.time() - t0
    server = Server(args.qsearch, embed_dir, model_dir, args.workdir)  # loads meanwhile
    try:
        tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        rng = random.Random(7)
        probe = Card(tok, None)  # prompt lengths only
        parity = []  # (bucket, query, doc, tokens)
        for L in BUCKETS:
            for k in range(PER_BUCKET):
                q = f"query {k}: " + " ".join(rng.choice(WORDS) for _ in range(6))
                d, n = doc_of_length(tok, probe, q, L, rng)
                parity.append((L, q, d, n))
        bench_query = "which passages talk about search engines"
        bench_docs = [doc_of_length(tok, probe, bench_query, 512, rng)[0] for _ in range(256)]
        bench_pairs = [format_instruction(None, bench_query, d) for d in bench_docs]

        t0 = time.time()
        m = load(model_dir, torch.float32)
        fp32 = [Card(tok, m).scores([format_instruction(None, q, d)])[0] for _, q, d, _ in parity]
        del m
        torch.cuda.empty_cache()
        fp32_s = time.time() - t0

        t0 = time.time()
        m = load(model_dir, torch.bfloat16)
        card = Card(tok, m)
        bf16 = [card.scores([format_instruction(None, q, d)])[0] for _, q, d, _ in parity]
        hf_pairs_s = hf_bench(card, bench_pairs, 32, args.bench_seconds)
        hf_keep1_pairs_s = hf_bench(Card(tok, m, logits_to_keep=1), bench_pairs, 32,
                                    args.bench_seconds / 2)
        del m, card
        torch.cuda.empty_cache()
        bf16_s = time.time() - t0

        load_s = server.wait_ready()
        ours = [server.rerank(q, [d])[0] for _, q, d, _ in parity]
        ours_pairs_s = ours_bench(server, bench_query, bench_docs, 32, 8, args.bench_seconds)
        lat = []
        for r in range(21):
            docs = bench_docs[(r * 10) % 240:(r * 10) % 240 + 10]
            t0 = time.time()
            server.rerank(bench_query, docs)
            lat.append((time.time() - t0) * 1000)
        lat = lat[1:]  # the first one warms the 10-document shape
    finally:
        server.stop()
    buckets = {}
    for L in BUCKETS:
        sel = [i for i, p in enumerate(parity) if p[0] == L]
        eo = [abs(ours[i] - fp32[i]) for i in sel]
        eb = [abs(bf16[i] - fp32[i]) for i in sel]
        ok = statistics.mean(eo) <= statistics.mean(eb) + TOLERANCE
        buckets[str(L)] = dict(pairs=len(sel), tokens=[parity[i][3] for i in sel],
                               ours_mean=statistics.mean(eo), ours_max=max(eo),
                               hf_bf16_mean=statistics.mean(eb), hf_bf16_max=max(eb),
                               fp32_scores=[fp32[i] for i in sel], ok=ok)
    res = dict(head=head, write_seconds=round(write_s, 1), server_load_seconds=round(load_s, 1),
               hf_fp32_seconds=round(fp32_s, 1), hf_bf16_seconds=round(bf16_s, 1),
               buckets=buckets, ours_pairs_per_s=round(ours_pairs_s, 1),
               hf_pairs_per_s=round(hf_pairs_s, 1),
               hf_logits_to_keep1_pairs_per_s=round(hf_keep1_pairs_s, 1),
               speedup=round(ours_pairs_s / hf_pairs_s, 2),
               latency_10docs_ms=dict(p50=round(statistics.median(lat), 2),
                                      mean=round(statistics.mean(lat), 2),
                                      min=round(min(lat), 2), max=round(max(lat), 2)),
               seconds=round(time.time() - t_shape, 1))
    shutil.rmtree(model_dir, ignore_errors=True)
    return res


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--qsearch", required=True)
    ap.add_argument("--tokenizer", required=True)
    ap.add_argument("--shapes", nargs="+", default=["0.6B", "4B", "8B"])
    ap.add_argument("--out", default="rerank_device.json")
    ap.add_argument("--table", default="rerank_device.md")
    ap.add_argument("--workdir", default="/tmp/qsearch-rerank")
    ap.add_argument("--bench-seconds", type=float, default=6)
    args = ap.parse_args()
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    import transformers

    qs = shlex.split(args.qsearch)
    os.makedirs(args.workdir, exist_ok=True)
    embed_dir = os.path.join(args.workdir, "embed-tiny")
    subprocess.run(qs + ["make-test-model", "--tokenizer", args.tokenizer, "--out", embed_dir],
                   check=True, stdout=subprocess.DEVNULL)
    report = dict(gpu=torch.cuda.get_device_name(), torch=torch.__version__,
                  transformers=transformers.__version__, tolerance=TOLERANCE, shapes={})
    ok_all = True
    for shape in args.shapes:
        try:
            res = run_shape(args, shape, embed_dir)
            ok_all &= all(b["ok"] for b in res["buckets"].values())
        except Exception as e:  # noqa: BLE001 - recorded; the next shape still runs
            res = dict(error=f"{type(e).__name__}: {e}"[-2000:])
            ok_all = False
            torch.cuda.empty_cache()
            shutil.rmtree(os.path.join(args.workdir, shape), ignore_errors=True)
        report["shapes"][shape] = res
        print(json.dumps(dict(shape=shape, **res)), flush=True)
    report["ok"] = ok_all
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    lines = [f"# qsearch reranker vs Hugging Face ({report['gpu']}, transformers "
             f"{report['transformers']})", "",
             "| shape | HF bf16 (card, batch 32) | HF bf16 logits_to_keep=1 | qsearch /v1/rerank "
             "| speed-up vs card | 10-doc request p50 |", "|---|---|---|---|---|---|"]
    for s, r in report["shapes"].items():
        if "error" in r:
            lines.append(f"| {s} | failed: {r['error'][:200]} | | | | |")
            continue
        lines.append(f"| {s} | {r['hf_pairs_per_s']:,.0f} pairs/s | "
                     f"{r['hf_logits_to_keep1_pairs_per_s']:,.0f} pairs/s | "
                     f"{r['ours_pairs_per_s']:,.0f} pairs/s | {r['speedup']:.2f}x | "
                     f"{r['latency_10docs_ms']['p50']:.1f} ms |")
    lines += ["", f"Parity with HF fp32 (|score - fp32| per bucket; pass: ours mean <= HF bf16 mean "
              f"+ {TOLERANCE})", "", "| shape | tokens | ours mean | ours max | HF bf16 mean | "
              "HF bf16 max | result |", "|---|---|---|---|---|---|---|"]
    for s, r in report["shapes"].items():
        for L, b in r.get("buckets", {}).items():
            lines.append(f"| {s} | {L} | {b['ours_mean']:.2e} | {b['ours_max']:.2e} | "
                         f"{b['hf_bf16_mean']:.2e} | {b['hf_bf16_max']:.2e} | "
                         f"{'ok' if b['ok'] else 'FAIL'} |")
    lines += ["", f"parity: {'PASS' if ok_all else 'FAIL'}"]
    with open(args.table, "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    sys.exit(0 if ok_all else 1)


if __name__ == "__main__":
    main()
