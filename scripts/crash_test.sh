#!/usr/bin/env bash
# The crash test with a larger N (issue 5): kill -9 `qsearch serve` at random moments during
# ingestion from several clients, restart, and check every acknowledged write (see
# tests/crash/crash_test.cc). CI runs 3 rounds per index type; this runs ROUNDS (default 50).
#
#   scripts/crash_test.sh [ROUNDS] [CLIENTS]         e.g. scripts/crash_test.sh 200 8
# Environment: BUILD (build dir with tests/test_crash, default build), INDEX (flat|hnsw|ivf:
# only that one), SEED (reproduce a run), MAX_KILL_MS (kill within 0..this ms, default 1500),
# SYNC=1 (run the server with --sync, i.e. fsync before acknowledging).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-50}
clients=${2:-8}
build=${BUILD:-build}
bin=$build/tests/test_crash
[ -x "$bin" ] || { echo "crash_test.sh: $bin not found (cmake --build $build --target test_crash)" >&2; exit 2; }
export QSEARCH_CRASH_ROUNDS=$rounds QSEARCH_CRASH_CLIENTS=$clients
[ -n "${INDEX:-}" ] && export QSEARCH_CRASH_INDEX=$INDEX
[ -n "${SEED:-}" ] && export QSEARCH_CRASH_SEED=$SEED
[ -n "${MAX_KILL_MS:-}" ] && export QSEARCH_CRASH_MAX_KILL_MS=$MAX_KILL_MS
[ -n "${SYNC:-}" ] && export QSEARCH_CRASH_SERVER_ARGS="--sync"
echo "crash test: $rounds rounds x $clients clients per index type (${INDEX:-flat, hnsw, ivf})"
log=${LOG:-/tmp/qsearch-crash-test.log}
start=$(date +%s)
set +e
"$bin" --gtest_color=no 2>&1 | tee "$log" | grep --line-buffered -E "^crash test|OK \]|FAILED|Failure|round [0-9]+:"
status=${PIPESTATUS[0]}
set -e
end=$(date +%s)
acked=$(grep -oE "[0-9]+ acknowledged" "$log" | awk '{s+=$1} END {print s+0}')
kills=$(grep -c "killed after" "$log" || true)
echo "crash test: $kills kills, $acked acknowledged writes checked, $((end - start)) s, exit $status (log: $log)"
exit "$status"
