#!/usr/bin/env bash
# `make run`: starts `qsearch serve` on its defaults (http://127.0.0.1:8080, data in
# ./qsearch-data). The model is $QSEARCH_MODEL when set, else the small random-weight test model
# (written on first use into .deps/test-model), so the server starts without any download.
# Every QSEARCH_* variable (QSEARCH_PORT, QSEARCH_API_KEY, ...; see docs/api.md) applies, and
# arguments are passed on: ./scripts/run.sh --port 9000
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${BUILD:-build}/qsearch
if [ -n "${QSEARCH_MODEL:-}" ]; then
  model=$QSEARCH_MODEL
  echo "make run: serving the model in $model (QSEARCH_MODEL)" >&2
else
  model=.deps/test-model
  [ -f $model/config.json ] || $bin make-test-model --tokenizer .deps/qwen3/tokenizer.json --out $model >/dev/null
  echo "make run: QSEARCH_MODEL is not set; serving the small RANDOM-WEIGHT test model in $model" >&2
  echo "          (its embeddings are not meaningful). For real embeddings:" >&2
  echo "            huggingface-cli download Qwen/Qwen3-Embedding-0.6B --local-dir models/Qwen3-Embedding-0.6B" >&2
  echo "            QSEARCH_MODEL=models/Qwen3-Embedding-0.6B make run" >&2
fi
port=${QSEARCH_PORT:-8080}
echo "make run: data in ${QSEARCH_DATA_DIR:-./qsearch-data}; try:" >&2
echo "  curl -s localhost:$port/v1/embeddings -d '{\"input\": \"hello\"}'" >&2
echo "  curl -s localhost:$port/collections -d '{\"name\": \"docs\"}'" >&2
exec "$bin" serve --model "$model" "$@"
