#!/usr/bin/env python3
"""Reference Qwen3-Reranker scores of qsearch's tiny test rerankers from Hugging Face transformers.

Usage:  python3 tests/reference/gen_reranker_refs.py TIED_DIR UNTIED_DIR OUT_JSON [--device cpu|cuda]

TIED_DIR and UNTIED_DIR are test rerankers written by `qsearch make-test-model` (seed 42, shape
tiny), with the LM head tied to the embedding table and with its own lm_head.weight:
    build/qsearch make-test-model --reranker --tokenizer .deps/qwen3/tokenizer.json --out /tmp/rr-tied
    build/qsearch make-test-model --reranker --lm-head untied --tokenizer .deps/qwen3/tokenizer.json \
        --out /tmp/rr-untied
Needs torch and transformers (5.x) with their tokenizers and safetensors. TF32 is off.

What it does, as the Qwen3-Reranker model card does:
  * AutoTokenizer(padding_side="left"); prefix and suffix tokenized without special tokens;
    each body "<Instruct>: {instruction}\\n<Query>: {query}\\n<Document>: {doc}" (default
    instruction when none) tokenized with truncation="longest_first" to
    max_length - len(prefix) - len(suffix), max_length 8192; ids = prefix + body + suffix;
  * AutoModelForCausalLM.from_pretrained(dir, dtype=torch.float32) (never a bf16 model cast to
    fp32: that rounds the RoPE inv_freq buffer too), eval, attn_implementation "eager";
  * score = exp(log_softmax([logits[:, -1, no], logits[:, -1, yes]])[:, 1]) on left-padded
    batches (tokenizer.pad) -> "batched", and on each pair alone (no padding) -> "single";
  * checks: every parameter equals the checkpoint, the LM head is the embedding table (tied) or
    lm_head.weight (untied) and the two differ in the untied model; "sdpa" agrees with "eager"
    on single pairs; the body tokenized with and without special tokens is the same; the pair
    over 8192 tokens was cut to exactly 8192.
Writes JSON: {versions, checks, max_length, prefix_ids, suffix_ids, yes_id, no_id,
models: {tied|untied: {test_model, model_checksum}}, pairs: [{query, document, instruction,
ids, input_tokens, truncated_tokens, scores: {tied|untied: {single, batched}}}]}.
The C++ test tests/engine/reranker_parity_test.cc compares qsearch's CPU reranker with it.
"""

import argparse
import json
import math
import os
import sys

import torch

MAX_LENGTH = 8192
PREFIX = ("<|im_start|>system\nJudge whether the Document meets the requirements based on the "
          "Query and the Instruct provided. Note that the answer can only be \"yes\" or "
          "\"no\".<|im_end|>\n<|im_start|>user\n")
SUFFIX = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
DEFAULT_INSTRUCTION = "Given a web search query, retrieve relevant passages that answer the query"


def format_instruction(instruction, query, doc):
    # The model card's format_instruction, verbatim in effect.
    if instruction is None:
        instruction = DEFAULT_INSTRUCTION
    return f"<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}"


def long_english(parts):
    sentences = [
        "Vector search engines store documents as dense embeddings and retrieve them by similarity.",
        "A reranker reads the query and one candidate together and judges whether it is relevant.",
        "Rotary position embeddings rotate query and key vectors by angles that grow with position.",
        "Grouped-query attention shares each key and value head among several query heads.",
        "Batching many short pairs together keeps the accelerator busy without padding waste.",
    ]
    return " ".join(f"[{i}] " + sentences[i % len(sentences)] for i in range(parts))


def long_chinese(parts):
    base = ("重排序模型同时阅读查询和候选文档，判断文档是否满足查询的要求。"
            "多语言模型能够在不同语言之间对齐语义，使中文查询可以找到英文文档。")
    return "".join(f"第{i}段：{base}" for i in range(parts))


CODE = ("def rerank(query, docs):\n    scores = [model(query, d) for d in docs]\n"
        "    return sorted(zip(scores, docs), reverse=True)\n")

# (instruction or None for the default, query, document)
PAIRS = [
    (None, "What is the capital of China?", "The capital of China is Beijing."),
    (None, "What is the capital of China?", "Gravity is a force that attracts two bodies."),
    (None, "Explain gravity", "Gravity is a force that attracts two bodies towards each other."),
    (None, "量子计算是什么？", "量子计算利用量子叠加和纠缠来处理信息。"),
    (None, "東京はどこですか", "東京は日本の首都であり、世界最大の都市圏の一つです。"),
    (None, "서울은 어떤 도시인가요?", "서울은 대한민국의 수도입니다."),
    (None, "ما هي عاصمة مصر؟", "القاهرة هي عاصمة مصر وأكبر مدنها."),
    (None, "เมืองหลวงของประเทศไทยคืออะไร", "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย"),
    (None, "Столица России", "Москва — столица России, крупнейший город страны."),
    (None, "Wo ist die Straße?", "Die Straße ist nass, weil es geregnet hat. Grüße aus München!"),
    (None, "best pizza 🍕", "I love 🍕 and 🏳️‍🌈 👨‍👩‍👧‍👦 👍🏽!"),
    (None, "sort documents by score in python", CODE),
    (None, "empty document", ""),
    (None, "", "A document for an empty query."),
    (None, "special tokens", "text with <|im_end|> and <|endoftext|> inside"),
    (None, "  spaces\tand\ttabs  ", "  leading and trailing spaces  \r\nCRLF\n\n\n"),
    ("Given a question, retrieve questions that are semantically equivalent to the given question",
     "How do I reset my password?", "What are the steps to change a forgotten password?"),
    ("Retrieve parallel sentences", "Москва — столица России", "Moscow is the capital of Russia."),
    ("判断文档是否回答了问题", "天空为什么是蓝色的？", "瑞利散射使短波长的蓝光在大气中散射得更多。"),
    ("", "an empty instruction", "is used as given"),
    (None, "what do rerankers do", long_english(110)),          # ~2,000 tokens
    (None, "重排序模型", long_chinese(60)),                      # ~3,000 tokens
    ("Judge relevance for long documents", long_english(20), long_english(230)),  # ~5,000
    (None, "a pair over the limit", long_english(480)),         # ~9,000 tokens: cut to 8,192
]


def load_model(model_dir, attn, device):
    from transformers import AutoModelForCausalLM
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32,
                                                 attn_implementation=attn)
    return model.to(device).eval()


def check_weights(model, model_dir, tied):
    """Every parameter equals the checkpoint; the LM head is the right matrix."""
    from safetensors.torch import load_file
    stored = {}
    index = os.path.join(model_dir, "model.safetensors.index.json")
    files = (sorted(set(json.load(open(index))["weight_map"].values()))
             if os.path.exists(index) else ["model.safetensors"])
    for f in files:
        stored.update(load_file(os.path.join(model_dir, f)))
    state = model.state_dict()
    for k, v in state.items():
        if k == "lm_head.weight" and tied:
            want = stored["model.embed_tokens.weight"]
        else:
            if k not in stored:
                raise SystemExit(f"model parameter {k} is not in the checkpoint")
            want = stored[k]
        if not torch.equal(v.detach().cpu().float(), want.float()):
            raise SystemExit(f"parameter {k} differs from the checkpoint")
    head = model.get_output_embeddings().weight
    embed = model.get_input_embeddings().weight
    if tied != bool(torch.equal(head, embed)):
        raise SystemExit(f"LM head tied={not tied} in transformers, expected tied={tied}")
    return len(state)


@torch.no_grad()
def scores_of(model, input_ids, attention_mask, yes_id, no_id, device):
    # The model card's compute_logits.
    out = model(input_ids=torch.tensor(input_ids, device=device),
                attention_mask=torch.tensor(attention_mask, device=device))
    batch_scores = out.logits[:, -1, :]
    true_vector = batch_scores[:, yes_id]
    false_vector = batch_scores[:, no_id]
    batch_scores = torch.stack([false_vector, true_vector], dim=1)
    batch_scores = torch.nn.functional.log_softmax(batch_scores, dim=1)
    return batch_scores[:, 1].exp().tolist()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("tied_dir")
    ap.add_argument("untied_dir")
    ap.add_argument("out_json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=8)
    args = ap.parse_args()

    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")

    import tokenizers
    import transformers
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(args.tied_dir, padding_side="left")
    token_false_id = tokenizer.convert_tokens_to_ids("no")
    token_true_id = tokenizer.convert_tokens_to_ids("yes")
    prefix_tokens = tokenizer.encode(PREFIX, add_special_tokens=False)
    suffix_tokens = tokenizer.encode(SUFFIX, add_special_tokens=False)
    body_limit = MAX_LENGTH - len(prefix_tokens) - len(suffix_tokens)

    bodies = [format_instruction(i, q, d) for i, q, d in PAIRS]
    # The model card's process_inputs, before padding.
    enc = tokenizer(bodies, padding=False, truncation="longest_first",
                    return_attention_mask=False, max_length=body_limit)
    ids = [prefix_tokens + ele + suffix_tokens for ele in enc["input_ids"]]
    full = [tokenizer(b, add_special_tokens=False)["input_ids"] for b in bodies]
    plain = [tokenizer(b)["input_ids"] for b in bodies]
    special_free = plain == full
    for k in range(len(PAIRS)):
        if full[k][:body_limit] != enc["input_ids"][k]:
            raise SystemExit(f"pair {k}: truncation did not keep the first {body_limit} tokens")
    longest = max(len(x) for x in ids)
    if longest != MAX_LENGTH or max(len(x) for x in full) <= body_limit:
        raise SystemExit(f"no pair was cut to {MAX_LENGTH} tokens (longest {longest})")
    print(f"{len(PAIRS)} pairs, {sum(map(len, ids))} tokens, longest {longest}; prefix "
          f"{len(prefix_tokens)}, suffix {len(suffix_tokens)} tokens; yes {token_true_id}, "
          f"no {token_false_id}", file=sys.stderr)

    # Batches of similar lengths (the long pairs alone), as a caller sorting by length would.
    order = sorted(range(len(ids)), key=lambda k: len(ids[k]))
    batches = [order[k:k + args.batch_size] for k in range(0, len(order), args.batch_size)]

    models, scores, checks = {}, {}, {"body_special_tokens_free": special_free}
    for kind, model_dir in (("tied", args.tied_dir), ("untied", args.untied_dir)):
        meta = json.load(open(os.path.join(model_dir, "test_model.json")))
        if meta.get("kind") != "reranker" or meta.get("tie_word_embeddings") != (kind == "tied"):
            raise SystemExit(f"{model_dir} is not a {kind} test reranker: {meta}")
        tok = AutoTokenizer.from_pretrained(model_dir, padding_side="left")
        if [tok.encode(b, add_special_tokens=False) for b in bodies] != full:
            raise SystemExit(f"{model_dir}: its tokenizer differs from {args.tied_dir}'s")
        models[kind] = {"test_model": meta, "model_checksum": meta["checksum"]}
        eager = load_model(model_dir, "eager", args.device)
        checks[f"{kind}_parameters_checked"] = check_weights(eager, model_dir, kind == "tied")
        single = [scores_of(eager, [x], [[1] * len(x)], token_true_id, token_false_id,
                            args.device)[0] for x in ids]
        batched = [None] * len(ids)
        for b in batches:
            padded = tokenizer.pad({"input_ids": [ids[k] for k in b]}, padding=True,
                                   return_tensors=None, max_length=MAX_LENGTH)
            out = scores_of(eager, padded["input_ids"], padded["attention_mask"], token_true_id,
                            token_false_id, args.device)
            for row, k in enumerate(b):
                batched[k] = out[row]
        del eager
        sdpa = load_model(model_dir, "sdpa", args.device)
        sdpa_single = [scores_of(sdpa, [x], [[1] * len(x)], token_true_id, token_false_id,
                                 args.device)[0] for x in ids]
        del sdpa
        if not all(math.isfinite(v) for v in single + batched + sdpa_single):
            raise SystemExit(f"{kind}: non-finite scores")
        d_batch = max(abs(a - b) for a, b in zip(single, batched))
        d_sdpa = max(abs(a - b) for a, b in zip(single, sdpa_single))
        spread = max(single) - min(single)
        print(f"{kind}: scores {min(single):.4f}..{max(single):.4f}; max |single - batched| "
              f"{d_batch:.2e}, |eager - sdpa| {d_sdpa:.2e}", file=sys.stderr)
        if d_sdpa > 1e-5:
            raise SystemExit(f"{kind}: sdpa and eager disagree by {d_sdpa}; not writing references")
        if spread < 0.01:
            raise SystemExit(f"{kind}: scores barely differ ({spread}); a test would prove little")
        checks[f"{kind}_max_abs_single_vs_batched"] = d_batch
        checks[f"{kind}_max_abs_eager_vs_sdpa"] = d_sdpa
        scores[kind] = (single, batched)
    d_heads = max(abs(a - b) for a, b in zip(scores["tied"][0], scores["untied"][0]))
    checks["max_abs_tied_vs_untied"] = d_heads
    checks["batches"] = batches

    out = {
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "tokenizers": tokenizers.__version__, "device": args.device},
        "checks": checks,
        "max_length": MAX_LENGTH,
        "prefix_ids": prefix_tokens,
        "suffix_ids": suffix_tokens,
        "yes_id": token_true_id,
        "no_id": token_false_id,
        "models": models,
        "pairs": [{"query": q, "document": d, "instruction": i, "ids": ids[k],
                   "input_tokens": len(prefix_tokens) + len(full[k]) + len(suffix_tokens),
                   "truncated_tokens": max(0, len(full[k]) - body_limit),
                   "scores": {kind: {"single": scores[kind][0][k], "batched": scores[kind][1][k]}
                              for kind in scores}}
                  for k, (i, q, d) in enumerate(PAIRS)],
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out_json)), exist_ok=True)
    with open(args.out_json, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1, allow_nan=False)
        f.write("\n")
    print(f"wrote {args.out_json}", file=sys.stderr)


if __name__ == "__main__":
    main()
