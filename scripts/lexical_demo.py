#!/usr/bin/env python3
"""The README's multilingual search example: dense, lexical, hybrid and reranked results.

Run a server with a reranker first, e.g. with the random-weight test models:
  build/qsearch make-test-model --tokenizer .deps/qwen3/tokenizer.json --out /tmp/rr --reranker
  build/qsearch serve --model .deps/test-model --reranker /tmp/rr --device cpu --port 18712
then: python3 scripts/lexical_demo.py http://127.0.0.1:18712
It creates the collection "kb" (eight short documents) and prints a Markdown table.
"""
import json
import sys
import urllib.error
import urllib.request

B = sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8080"
def post(path, body):
    req = urllib.request.Request(B + path, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        return json.load(urllib.request.urlopen(req))
    except urllib.error.HTTPError as e:
        return json.load(e)
post("/collections", {"name": "kb"})
docs = [
  ("zh-ml", "我们在北京大学学习机器学习和自然语言处理。"),
  ("zh-food", "上海的小笼包和北京烤鸭都很有名。"),
  ("ja-weather", "東京は今日とても良い天気です。"),
  ("ja-train", "新幹線で大阪から京都まで行きました。"),
  ("th-lang", "ภาษาไทยเป็นภาษาที่สวยงามและมีประวัติยาวนาน"),
  ("th-food", "อาหารไทยที่กรุงเทพอร่อยมาก"),
  ("en-sku", "Shipment of part SKU-4471-XZ is delayed until further notice."),
  ("en-fox", "The quick brown fox jumps over the lazy dog."),
]
r = post("/collections/kb/documents", {"documents": [{"id": i, "text": t} for i, t in docs]})
assert r.get("upserted") == len(docs), r
queries = ["机器学习", "天気", "สวยงาม", "SKU-4471-XZ"]
modes = [("dense", {}), ("lexical", {"mode": "lexical"}), ("hybrid", {"mode": "hybrid"}),
         ("hybrid + rerank", {"mode": "hybrid", "rerank": {"top_n": 8}})]
print("| query | mode | top 3 (id score) |")
print("|---|---|---|")
for q in queries:
    for name, extra in modes:
        body = {"query": q, "k": 3, "include": ["text"]}
        body.update(extra)
        res = post("/collections/kb/search", body)
        cells = []
        for h in res["results"]:
            s = h.get("rerank_score", h["score"])
            hl = ""
            if h.get("highlights"):
                text = h["text"]
                hl = " [" + ", ".join(text[x["start"]:x["end"]] for x in h["highlights"]) + "]"
            cells.append(f"{h['id']} {s:.3f}{hl}")
        print(f"| {q} | {name} | {'; '.join(cells)} |")
