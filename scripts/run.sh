#!/usr/bin/env bash
# `make run`: embeds a few example texts with a real model when QSEARCH_MODEL points to one,
# else with the small random-weight test model (written on first use into .deps/test-model).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=build/qsearch
if [ -n "${QSEARCH_MODEL:-}" ]; then
  model=$QSEARCH_MODEL
  echo "make run: using the model in $model (QSEARCH_MODEL)" >&2
else
  model=.deps/test-model
  [ -f $model/config.json ] || $bin make-test-model --tokenizer .deps/qwen3/tokenizer.json --out $model
  echo "make run: QSEARCH_MODEL is not set; using the small RANDOM-WEIGHT test model in $model" >&2
  echo "          (its embeddings are not meaningful; see README for real weights)" >&2
fi
printf '%s\n' '"What is the capital of China?"' '"The capital of China is Beijing."' \
  '"Gravity is a force that attracts two bodies towards each other."' |
  $bin embed --model "$model" --dim 8 --instruction "Given a web search query, retrieve relevant passages that answer the query"
