#!/usr/bin/env python3
"""Reference embeddings of the qsearch test model from Hugging Face transformers.

Usage:  python3 tests/reference/gen_test_model_refs.py MODEL_DIR OUT_JSON [--device cpu|cuda]

MODEL_DIR is a test model written by `qsearch make-test-model` (default seed 42, shape tiny):
    build/qsearch make-test-model --tokenizer .deps/qwen3/tokenizer.json --out .deps/test-model
Needs python3 with torch and transformers (5.x; 4.5x works too) and their `tokenizers` and
`safetensors` dependencies. Runs on the CPU by default (fp32 matmuls, no TF32).

What it does, as Qwen3-Embedding's own transformers recipe does:
  * tokenizes each input with the model directory's tokenizer.json (whose post-processor
    appends <|endoftext|>); queries are formatted "Instruct: {task}\nQuery:{text}";
  * runs Qwen3Model in float32 with attn_implementation "eager" on left-padded batches
    (pad id = <|endoftext|>, attention mask), takes last_hidden_state[:, -1] and L2-normalises;
  * runs every input again alone (no padding), and alone and batched with attn_implementation
    "sdpa"; fails unless eager batched, eager alone and sdpa alone agree to cosine >= 0.9999
    (sdpa on left-padded batches is recorded; fully masked pad rows differ across versions);
  * checks that every weight the model holds equals the safetensors files (no silently
    re-initialised tensor), and that AutoTokenizer(padding_side="left") gives the same ids
    and mask as the manual padding.
Writes JSON: {model_checksum, test_model, versions, checks, texts: [{text, instruction, ids,
embedding, embedding_single}]}; embeddings are full-dimension float32 values.
The C++ test tests/engine/parity_test.cc compares qsearch's CPU engine with this file.
"""

import argparse
import json
import math
import os
import random
import sys

import torch
import torch.nn.functional as F

EOS_ID = 151643
MIN_COSINE = 0.9999
WEB_SEARCH = "Given a web search query, retrieve relevant passages that answer the query"


def format_query(instruction, text):
    # Exactly qsearch's Embedder::format_query: no space after "Query:".
    return f"Instruct: {instruction}\nQuery:{text}"


def long_english():
    sentences = [
        "Vector search engines store documents as dense embeddings and retrieve them by similarity.",
        "A transformer encoder reads the whole text and its last token summarises the meaning.",
        "Rotary position embeddings rotate query and key vectors by angles that grow with position.",
        "Grouped-query attention shares each key and value head among several query heads.",
        "Batching many short texts together keeps the accelerator busy without padding waste.",
    ]
    parts = []
    for i in range(108):
        parts.append(f"[{i}] " + sentences[i % len(sentences)])
    return " ".join(parts)  # ~2000 tokens


def long_chinese():
    base = ("向量检索系统把文档编码为稠密向量，并按相似度返回最相关的结果。"
            "多语言模型能够在不同语言之间对齐语义，使中文查询可以找到英文文档。")
    return "".join(f"第{i}段：{base}" for i in range(25))  # ~1300 tokens


def long_code():
    lines = []
    for i in range(40):
        lines.append(f"def function_{i}(x, y={i}):\n"
                     f"    \"\"\"Returns a value derived from x and {i}.\"\"\"\n"
                     f"    return [x * k + y for k in range({i % 7 + 1})]\n")
    return "\n".join(lines)  # ~1400 tokens


# (text, instruction); instruction "" means a document (no instruction).
TEXTS = [
    ("", ""),
    ("Hello, world!", ""),
    ("The quick brown fox jumps over the lazy dog.", ""),
    ("a", ""),
    (" ", ""),
    ("量子计算利用量子叠加和纠缠来处理信息。", ""),
    ("東京は日本の首都であり、世界最大の都市圏の一つです。", ""),
    ("한국어 문장을 임베딩합니다. 서울은 대한민국의 수도입니다.", ""),
    ("اللغة العربية هي إحدى أكثر اللغات انتشارا في العالم.", ""),
    ("שלום עולם, זהו משפט בעברית.", ""),
    ("भारत एक विशाल और विविधतापूर्ण देश है।", ""),
    ("ภาษาไทยเป็นภาษาราชการของประเทศไทย", ""),
    ("Москва — столица России, крупнейший город страны.", ""),
    ("Η Αθήνα είναι η πρωτεύουσα της Ελλάδας.", ""),
    ("Die Straße ist nass, weil es geregnet hat. Grüße aus München!", ""),
    ("Où est la bibliothèque ? Je voudrais emprunter « Les Misérables ».", ""),
    ("¿Cuál es el mejor método para aprender un idioma nuevo?", ""),
    ("I love 🍕 and 🏳️‍🌈 👨‍👩‍👧‍👦 👍🏽!", ""),
    ("def fib(n):\n    return n if n < 2 else fib(n - 1) + fib(n - 2)\n", ""),
    ('{"id": 42, "tags": ["a", "b"], "nested": {"x": null}}', ""),
    ("See https://example.com/path?query=1&lang=en#frag for details.", ""),
    ("  leading and trailing spaces  \t\ttabs\r\nCRLF\n\n\nnewlines   ", ""),
    ("The year 2025 had 365 days; π ≈ 3.14159265358979323846.", ""),
    ("I'm sure they'll say it's fine, but WE'VE DONE IT'S", ""),
    ("Qwen3-Embedding supports 100+ languages: English, 中文, 日本語, 한국어, العربية.", ""),
    ("e\u0301 vs \u00e9, n\u0303 vs \u00f1", ""),
    ("ＦＵＬＬＷＩＤＴＨ\u3000ｔｅｘｔ\u3000１２３ and\u00a0NBSP", ""),
    ("<|im_start|>user\nhello<|im_end|>", ""),
    ("A text that ends with the end-of-text token<|endoftext|>", ""),
    ("a" * 300, ""),
    (long_english(), ""),
    (long_chinese(), ""),
    (long_code(), ""),
    ("What is the capital of France?", WEB_SEARCH),
    ("量子计算是什么？", WEB_SEARCH),
    ("", WEB_SEARCH),
    ("explain the <|endoftext|> token<|endoftext|>", WEB_SEARCH),
    ("How do I reset my password?",
     "Given a question, retrieve questions that are semantically equivalent to the given question"),
    ("Москва — столица России", "Retrieve parallel sentences"),
    (long_english()[:3000], "Given a long query, retrieve documents that discuss the same topic"),
]


def cosine(a, b):
    return float(F.cosine_similarity(a.double().unsqueeze(0), b.double().unsqueeze(0))[0])


def load_model(model_dir, attn, device):
    from transformers import Qwen3Model
    try:
        model = Qwen3Model.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attn)
    except TypeError:  # transformers < 4.56
        model = Qwen3Model.from_pretrained(model_dir, torch_dtype=torch.float32,
                                           attn_implementation=attn)
    return model.to(device).eval()


def check_weights(model, model_dir):
    """Every parameter equals the checkpoint (fp32 of the stored bf16): nothing re-initialised."""
    from safetensors.torch import load_file
    stored = {}
    index = os.path.join(model_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        files = sorted(set(json.load(open(index))["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    for f in files:
        for name, t in load_file(os.path.join(model_dir, f)).items():
            stored[name[len("model."):] if name.startswith("model.") else name] = t
    state = model.state_dict()
    missing = [k for k in state if k not in stored]
    if missing:
        raise SystemExit(f"model parameters not in the checkpoint: {missing[:5]}")
    for k, v in state.items():
        if not torch.equal(v.detach().cpu().float(), stored[k].float()):
            raise SystemExit(f"parameter {k} differs from the checkpoint")
    return len(state)


def run_batch(model, id_lists, device):
    """Left-padded batch (pad = EOS, masked), last position, L2-normalised."""
    width = max(len(ids) for ids in id_lists)
    input_ids = [[EOS_ID] * (width - len(ids)) + ids for ids in id_lists]
    mask = [[0] * (width - len(ids)) + [1] * len(ids) for ids in id_lists]
    with torch.no_grad():
        out = model(input_ids=torch.tensor(input_ids, device=device),
                    attention_mask=torch.tensor(mask, device=device))
    last = out.last_hidden_state[:, -1].float()
    return F.normalize(last, p=2, dim=-1).cpu(), input_ids, mask


def all_finite(vectors):
    return all(bool(torch.isfinite(v).all()) for v in vectors)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir")
    ap.add_argument("out_json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    torch.manual_seed(0)

    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    meta = json.load(open(os.path.join(args.model_dir, "test_model.json")))
    raw = tokenizers.Tokenizer.from_file(os.path.join(args.model_dir, "tokenizer.json"))
    auto = AutoTokenizer.from_pretrained(args.model_dir, padding_side="left")

    inputs = [format_query(ins, text) if ins else text for text, ins in TEXTS]
    ids = [raw.encode(s, add_special_tokens=True).ids for s in inputs]
    for s, i in zip(inputs, ids):
        if not i or i[-1] != EOS_ID:
            raise SystemExit(f"tokenizer.json did not append <|endoftext|> to {s[:40]!r}")
    auto_ids = [auto(s)["input_ids"] for s in inputs]
    auto_matches = auto_ids == ids
    if not auto_matches:
        bad = [k for k in range(len(ids)) if auto_ids[k] != ids[k]]
        print(f"WARNING: AutoTokenizer differs from tokenizer.json on texts {bad}; "
              "using tokenizer.json ids", file=sys.stderr)
    print(f"{len(inputs)} texts, {sum(map(len, ids))} tokens, longest {max(map(len, ids))}",
          file=sys.stderr)

    # Batches mixing long and short texts (a fixed permutation), so left padding is heavy.
    order = list(range(len(inputs)))
    random.Random(0).shuffle(order)
    batches = [order[k:k + args.batch_size] for k in range(0, len(order), args.batch_size)]

    eager = load_model(args.model_dir, "eager", args.device)
    n_params = check_weights(eager, args.model_dir)
    batched = [None] * len(inputs)
    padding_matches = True
    for b in batches:
        emb, input_ids, mask = run_batch(eager, [ids[k] for k in b], args.device)
        for row, k in enumerate(b):
            batched[k] = emb[row]
        if auto_matches:  # AutoTokenizer's own left padding must be what we fed the model
            enc = auto([inputs[k] for k in b], padding=True)
            padding_matches &= enc["input_ids"] == input_ids and enc["attention_mask"] == mask
    single = [run_batch(eager, [ids[k]], args.device)[0][0] for k in range(len(inputs))]

    if not all_finite(batched) or not all_finite(single):
        raise SystemExit("eager attention gave non-finite embeddings")

    # sdpa must agree with eager on unpadded inputs; on left-padded batches (fully masked pad
    # rows, handled differently across torch versions) the agreement is recorded only.
    sdpa = load_model(args.model_dir, "sdpa", args.device)
    sdpa_single = [run_batch(sdpa, [ids[k]], args.device)[0][0] for k in range(len(inputs))]
    sdpa_batched = [None] * len(inputs)
    for b in batches:
        emb, _, _ = run_batch(sdpa, [ids[k] for k in b], args.device)
        for row, k in enumerate(b):
            sdpa_batched[k] = emb[row]

    def min_cos(xs, ys):
        if not all_finite(xs) or not all_finite(ys):
            return float("nan")
        return min(cosine(xs[k], ys[k]) for k in range(len(inputs)))

    batch_vs_single = min_cos(batched, single)
    eager_vs_sdpa = min_cos(single, sdpa_single)
    eager_vs_sdpa_batched = min_cos(batched, sdpa_batched)
    distinct = max(cosine(single[a], single[b])
                   for a in range(len(inputs)) for b in range(a + 1, len(inputs))
                   if ids[a] != ids[b])
    print(f"min cosine: eager batched/alone {batch_vs_single:.8f}, eager/sdpa alone "
          f"{eager_vs_sdpa:.8f}, eager/sdpa batched {eager_vs_sdpa_batched:.8f}; "
          f"max cosine between different texts {distinct:.4f}", file=sys.stderr)
    if not (batch_vs_single >= MIN_COSINE and eager_vs_sdpa >= MIN_COSINE):
        raise SystemExit("transformers disagrees with itself; not writing references")
    if not eager_vs_sdpa_batched >= MIN_COSINE:
        print("WARNING: sdpa on left-padded batches disagrees with eager (recorded in checks)",
              file=sys.stderr)

    out = {
        "model_checksum": meta["checksum"],
        "test_model": meta,
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "device": args.device},
        "checks": {"parameters_checked": n_params,
                   "auto_tokenizer_matches_tokenizer_json": auto_matches,
                   "auto_tokenizer_left_padding_matches": bool(padding_matches),
                   "min_cosine_batched_vs_single": batch_vs_single,
                   "min_cosine_eager_vs_sdpa_alone": eager_vs_sdpa,
                   # null when sdpa gave non-finite values on padded batches
                   "min_cosine_eager_vs_sdpa_batched": (eager_vs_sdpa_batched
                                                        if math.isfinite(eager_vs_sdpa_batched)
                                                        else None),
                   "max_cosine_between_texts": distinct,
                   "batches": batches},
        "texts": [{"text": text, "instruction": ins, "ids": ids[k],
                   "embedding": [float(x) for x in batched[k].tolist()],
                   "embedding_single": [float(x) for x in single[k].tolist()]}
                  for k, (text, ins) in enumerate(TEXTS)],
    }
    for t in out["texts"]:
        for key in ("embedding", "embedding_single"):
            if not all(math.isfinite(x) for x in t[key]):
                raise SystemExit("non-finite embedding")
    os.makedirs(os.path.dirname(os.path.abspath(args.out_json)), exist_ok=True)
    with open(args.out_json, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1, allow_nan=False)
        f.write("\n")
    print(f"wrote {args.out_json}", file=sys.stderr)


if __name__ == "__main__":
    main()
