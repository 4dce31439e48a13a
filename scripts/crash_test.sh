#!/usr/bin/env bash
# The crash test with a larger N (issue 5): kill -9 `qsearch serve` at random moments during
# ingestion from several clients, restart, and check every acknowledged write (see
# tests/crash/crash_test.cc). CI runs 3 rounds per index type; this runs ROUNDS (default 50).
#
#   scripts/crash_test.sh [ROUNDS] [CLIENTS]         e.g. scripts/crash_test.sh 200 8
# Environment: BUILD (build dir with tests/test_crash, default build), INDEX (flat|hnsw|ivf:
# only that one), SEED (reproduce a run), MAX_KILL_MS (kill within 0..this ms, default 1500),
# SYNC=1 (run the server with --sync, i.e. fsync before acknowledging), TIME_LIMIT (seconds for
# the whole run, default none), OUT (a folder for crash-summary.md: machine, date, commit,
# command and per index type the rounds, kills, acknowledged writes and verified documents, plus
# crash-rounds.txt with every round's line), COMMIT (for the summary; default git HEAD).
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
limit=()
[ -n "${TIME_LIMIT:-}" ] && limit=(timeout --signal=KILL "$TIME_LIMIT")
"${limit[@]}" "$bin" --gtest_color=no 2>&1 | tee "$log" | grep --line-buffered -E "^crash test|OK \]|FAILED|Failure|round [0-9]+:"
status=${PIPESTATUS[0]}
set -e
end=$(date +%s)
acked=$(grep -oE "[0-9]+ acknowledged" "$log" | awk '{s+=$1} END {print s+0}')
kills=$(grep -c "killed after" "$log" || true)
echo "crash test: $kills kills, $acked acknowledged writes checked, $((end - start)) s, exit $status (log: $log)"
if [ -n "${OUT:-}" ]; then
  mkdir -p "$OUT"
  grep -E "^crash test: index|^round [0-9]+:|OK \]|FAILED|Failure" "$log" > "$OUT/crash-rounds.txt" || true
  python3 - "$log" "$OUT/crash-summary.md" "$status" "$((end - start))" "$rounds" "$clients" \
    "${COMMIT:-$(git rev-parse --short HEAD 2>/dev/null || echo unknown)}" "${INDEX:-}" "${SYNC:-}" <<'PY'
import datetime, os, platform, re, sys
log, out, status, secs, rounds, clients, commit, index, sync = sys.argv[1:]
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rows, cur = [], None
for line in open(log, errors="replace"):
    m = re.match(r"crash test: index (\w+), (\d+) rounds, (\d+) clients, seed (\d+)", line)
    if m:
        cur = {"index": m[1], "seed": m[4], "rounds": 0, "kills": 0, "acked": 0, "attempted": 0,
               "verified": 0, "ids": 0, "kill_ms": [], "result": "did not finish"}
        rows.append(cur)
        continue
    if cur is None:
        continue
    m = re.match(r"round (\d+): killed after (\d+) ms, (\d+) acknowledged of (\d+) attempted", line)
    if m:
        cur["kills"] += 1
        cur["kill_ms"].append(int(m[2]))
        cur["acked"] += int(m[3])
        cur["attempted"] += int(m[4])
    m = re.match(r"round (\d+): verified (\d+) stored documents of (\d+) ids", line)
    if m:
        cur["rounds"] += 1
        cur["verified"], cur["ids"] = int(m[2]), int(m[3])
    m = re.search(r"\[\s+(OK|FAILED)\s+\].*\((\d+) ms\)", line)
    if m:
        cur["result"] = f"{'PASS' if m[1] == 'OK' else 'FAIL'} ({int(m[2]) / 1000:.0f} s)"
    if "Failure" in line and "FAIL" not in cur["result"]:
        cur["result"] = "FAIL"
cmd = f"scripts/crash_test.sh {rounds} {clients}"
env = " ".join(x for x in (f"INDEX={index}" if index else "", "SYNC=1" if sync else "") if x)
lines = [f"# Crash test: {'PASS' if status == '0' else 'FAIL'} (exit {status})", "",
         f"- date: {datetime.datetime.utcnow().isoformat(timespec='seconds')}Z, commit {commit}",
         f"- machine: {platform.node()}, {cpu}, {os.cpu_count()} CPUs",
         f"- command: `{(env + ' ' if env else '') + cmd}` ({secs} s in all)",
         "- each round: the clients write (PUT new, batch POST, NDJSON import, update, DELETE) until the server is killed with SIGKILL at a random moment,",
         "  then it restarts and every acknowledged write must be present (and searchable), every unacknowledged one",
         "  either old or new, and index and store must agree; rounds accumulate in one data directory", "",
         "| index | seed | rounds verified | kills | acknowledged writes (of attempted) | documents at the end (of ids written) | kill after ms (min-max) | result |",
         "|---|---:|---:|---:|---:|---:|---:|---|"]
for r in rows:
    km = f"{min(r['kill_ms'])}-{max(r['kill_ms'])}" if r["kill_ms"] else "-"
    lines.append(f"| {r['index']} | {r['seed']} | {r['rounds']} | {r['kills']} | {r['acked']} ({r['attempted']}) | {r['verified']} ({r['ids']}) | {km} | {r['result']} |")
open(out, "w").write("\n".join(lines) + "\n")
print("\n".join(lines))
PY
fi
exit "$status"
