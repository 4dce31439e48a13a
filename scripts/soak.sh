#!/usr/bin/env bash
# Soak test (issue 5): DURATION seconds (default 600) at saturation against one `qsearch serve`:
#   - qsearch-load, embeddings workload, CONCURRENCY workers (default 64), 512-token inputs;
#   - at the same time a second qsearch-load with a mixed search/ingest workload (MIXED_CONCURRENCY
#     workers, default 8) on an HNSW collection that grows during the run;
#   - the server's RSS sampled every 5 s, and CPU use (server, the two load generators, and
#     everything else on the machine, from /proc) so a slowdown caused by other processes on a
#     shared machine shows in the report.
# Pass criteria (written to the report with the figures):
#   zero unexpected errors  no non-2xx answer other than 429 (queue-full backpressure, retried
#                           after Retry-After) and no transport failure, in either load;
#   bounded memory          max RSS over the last 2 minutes <= 1.25 x max RSS over minutes 1-3
#                           + 128 MiB (the growing collection legitimately adds a little);
#   no slowdown             QPS of the last full minute >= 90% of the first full minute, for
#                           the embeddings load (the mixed load's search/ingest ratio is random).
# The server is stopped with SIGTERM at the end and must exit cleanly.
#
#   scripts/soak.sh                      # 10 minutes, CPU engine, small test model
#   DURATION=120 scripts/soak.sh         # a short try
#   MODEL=/models/Qwen3-Embedding-0.6B DEVICE=cuda DIMENSIONS=1024 scripts/soak.sh
# Environment: BUILD (default build), MODEL (default: the test model, generated), DEVICE (cpu),
# DIMENSIONS (default: 128 for the test model, else 1024), TOKENS (512), OUT (report folder,
# default soak-results/<date>), PORT (default 18400), SERVER_ARGS (extra serve flags), COMMIT
# (for the report; default: git HEAD of this checkout).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
build=${BUILD:-build}
duration=${DURATION:-600}
conc=${CONCURRENCY:-64}
mixed_conc=${MIXED_CONCURRENCY:-8}
device=${DEVICE:-cpu}
tokens=${TOKENS:-512}
port=${PORT:-18400}
out=${OUT:-soak-results/$(date -u +%Y%m%dT%H%M%SZ)}
mkdir -p "$out"
out=$(cd "$out" && pwd)
qsearch=$build/qsearch
load=$build/bench/qsearch-load
for b in "$qsearch" "$load"; do
  [ -x "$b" ] || { echo "soak: $b missing (cmake --build $build --target qsearch qsearch-load)" >&2; exit 2; }
done
if [ -z "${MODEL:-}" ]; then
  MODEL=$out/test-model
  "$qsearch" make-test-model --tokenizer .deps/qwen3/tokenizer.json --out "$MODEL" > "$out/make-test-model.log"
  dims=${DIMENSIONS:-128}
else
  dims=${DIMENSIONS:-1024}
fi
# GET url -> stdout (python3 is in `make deps`; curl may not be).
http_get() {
  python3 -c 'import sys, urllib.request
try:
    sys.stdout.write(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode())
except Exception as e:
    sys.exit(1)' "$1"
}
data=$(mktemp -d /tmp/qsearch-soak-XXXXXX)
# More HTTP threads than clients: keep-alive connections each hold one (see docs/results.md).
"$qsearch" serve --model "$MODEL" --device "$device" --data-dir "$data" --host 127.0.0.1 \
  --port "$port" --http-threads $((conc + mixed_conc + 32)) ${SERVER_ARGS:-} > "$out/server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  [ -n "${sampler:-}" ] && kill "$sampler" 2>/dev/null || true
  rm -rf "$data"
}
trap cleanup EXIT
for i in $(seq 1 600); do
  http_get "http://127.0.0.1:$port/ready" > /dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "soak: server exited:"; tail -20 "$out/server.log"; exit 1; }
  sleep 0.5
done
echo "soak: server pid $server on port $port ($device, $MODEL), ${duration} s, report in $out"

t0=$(date +%s)
"$load" --port "$port" --concurrency "$conc" --duration "$duration" --warmup 10 --tokens "$tokens" \
  --dimensions "$dims" --json "$out/embed.json" --label "soak embeddings" --timeout 300 \
  > "$out/load-embed.log" 2>&1 &
embed_pid=$!
"$load" --port "$port" --workload mixed --mix search=3,ingest=1 --collection soak \
  --create-index hnsw --dimensions "$dims" --concurrency "$mixed_conc" --duration "$duration" \
  --warmup 10 --tokens 128 --json "$out/mixed.json" --label "soak search+ingest" --timeout 300 \
  > "$out/load-mixed.log" 2>&1 &
mixed_pid=$!
# Samplers, every 5 s: rss.tsv (seconds since start, server RSS in KiB) and cpu.tsv (seconds,
# then cumulative CPU ticks of: the server, the two load generators, the whole machine busy).
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
( while kill -0 "$server" 2>/dev/null; do
    now=$(( $(date +%s) - t0 ))
    rss=$(awk '/^VmRSS/ {print $2}' /proc/$server/status 2>/dev/null || echo 0)
    echo "$now $rss" >> "$out/rss.tsv"
    echo "$now $(ticks "$server") $(( $(ticks "$embed_pid") + $(ticks "$mixed_pid") )) $(awk '/^cpu / {print $2 + $3 + $4 + $7 + $8}' /proc/stat)" >> "$out/cpu.tsv"
    sleep 5
  done ) &
sampler=$!
set +e
wait "$embed_pid"; embed_rc=$?
wait "$mixed_pid"; mixed_rc=$?
set -e
alive=yes
kill -0 "$server" 2>/dev/null || alive=no
http_get "http://127.0.0.1:$port/metrics" > "$out/metrics.txt" || true
http_get "http://127.0.0.1:$port/collections/soak" > "$out/collection.json" || true
stop_start=$(date +%s%N)
kill -TERM "$server"
set +e
wait "$server"; server_rc=$?
set -e
stop_s=$(( ($(date +%s%N) - stop_start) / 1000000 ))e-3
kill "$sampler" 2>/dev/null || true

"$root/scripts/plot_soak.sh" "$out" > /dev/null 2>&1 || echo "soak: plotting failed (gnuplot?)" >&2

python3 - "$out" "$embed_rc" "$mixed_rc" "$alive" "$server_rc" "$stop_s" "$duration" "$conc" "$mixed_conc" "$device" "$MODEL" "$root" "${COMMIT:-}" <<'PY'
import json, os, subprocess, sys, platform, datetime
out, embed_rc, mixed_rc, alive, server_rc, stop_s, duration, conc, mixed_conc, device, model, root, commit = sys.argv[1:]
def load(name):
    try:
        return json.load(open(f"{out}/{name}"))["levels"][0]
    except Exception as e:
        return None
embed, mixed = load("embed.json"), load("mixed.json")
rss = [tuple(map(int, l.split())) for l in open(f"{out}/rss.tsv") if len(l.split()) == 2]
def minute_qps(level, m):  # QPS over the m-th full minute of the measured window
    tl = level["timeline_ok_per_s"]
    s = tl[m * 60:(m + 1) * 60]
    return sum(s) / len(s) if len(s) == 60 else None
res, lines = {}, []
ok = True
def check(name, passed, detail):
    global ok
    ok = ok and passed
    res[name] = {"pass": passed, "detail": detail}
    lines.append(f"| {name} | {'PASS' if passed else 'FAIL'} | {detail} |")
for name, lv, rc in (("embeddings load", embed, embed_rc), ("search+ingest load", mixed, mixed_rc)):
    if lv is None:
        check(f"{name}: ran", False, f"no result (qsearch-load exit {rc})")
        continue
    check(f"{name}: zero unexpected errors", lv["errors"] == 0,
          f"{lv['ok']} ok, {lv['errors']} errors ({lv['transport_errors']} transport), {lv['rejected_429']} x 429 (expected backpressure), statuses {lv['status_counts']}")
n_min = int(float(duration)) // 60
if embed and n_min >= 2:
    first, last = minute_qps(embed, 0), minute_qps(embed, n_min - 1)
    check("no slowdown (embeddings QPS, last vs first minute)", first and last and last >= 0.9 * first,
          f"first minute {first:.2f} QPS, last minute {last:.2f} QPS ({100 * last / first:.1f}%)" if first and last else "not enough data")
if rss:
    early = [r for t, r in rss if 60 <= t <= 180] or [r for t, r in rss]
    late = [r for t, r in rss if t >= rss[-1][0] - 120]
    bound = 1.25 * max(early) + 128 * 1024
    check("bounded memory (RSS)", max(late) <= bound,
          f"start {rss[0][1] / 1024:.0f} MiB, minutes 1-3 max {max(early) / 1024:.0f} MiB, last 2 min max {max(late) / 1024:.0f} MiB, peak {max(r for _, r in rss) / 1024:.0f} MiB (bound {bound / 1024:.0f} MiB)")
check("server alive at the end", alive == "yes", alive)
check("clean shutdown on SIGTERM", server_rc == "0", f"exit {server_rc} after {float(stop_s):.1f} s")
try:
    coll = json.load(open(f"{out}/collection.json"))
    docs = coll.get("document_count")
except Exception:
    docs = None
commit = commit or subprocess.run(["git", "-C", root, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
report = [f"# qsearch soak test: {'PASS' if ok else 'FAIL'}", "",
          f"- date: {datetime.datetime.utcnow().isoformat(timespec='seconds')}Z, commit {commit}",
          f"- machine: {platform.node()}, {cpu}, {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()} CPUs",
          f"- server: device {device}, model {model}",
          f"- duration {duration} s; embeddings load: {conc} workers, 512-token inputs; search+ingest load: {mixed_conc} workers (3:1), HNSW collection grew to {docs} documents",
          "", "| criterion | result | figures |", "|---|---|---|"] + lines
if embed:
    report += ["", "| load | QPS | mean ms | P50 ms | P99 ms | tokens/s |", "|---|---:|---:|---:|---:|---:|"]
    for name, lv in (("embeddings", embed), ("search+ingest", mixed)):
        if lv:
            l = lv["latency_ms"]
            report.append(f"| {name} | {lv['qps']:.1f} | {l['mean']:.1f} | {l['p50']:.1f} | {l['p99']:.1f} | {lv['tokens_per_s']:.0f} |")
    per_min = [minute_qps(embed, m) for m in range(n_min)]
    report += ["", "Embeddings QPS per minute: " + ", ".join(f"{q:.1f}" for q in per_min if q is not None)]
# CPU use per minute (cores busy): the server, the load generators, everything else.
cpu = [tuple(map(int, l.split())) for l in open(f"{out}/cpu.tsv") if len(l.split()) == 4] if os.path.exists(f"{out}/cpu.tsv") else []
hz = os.sysconf("SC_CLK_TCK")
if len(cpu) > 1:
    rows = []
    for m in range(n_min + 1):
        win = [c for c in cpu if m * 60 <= c[0] <= (m + 1) * 60]
        if len(win) < 2 or win[-1][0] == win[0][0]:
            continue
        dt = (win[-1][0] - win[0][0]) * hz
        srv, gen, tot = ((win[-1][i] - win[0][i]) / dt for i in (1, 2, 3))
        rows.append(f"| {m} | {srv:.2f} | {gen:.2f} | {max(0.0, tot - srv - gen):.2f} |")
    report += ["", f"CPU use per minute, in cores busy (of {os.cpu_count()}): the server, the two load generators, every other process on the machine", "",
               "| minute | server | load generators | other processes |", "|---:|---:|---:|---:|"] + rows
report += ["", "![soak](soak.png)"]
report += ["", f"RSS samples (s, MiB): " + ", ".join(f"{t}:{r / 1024:.0f}" for t, r in rss[::max(1, len(rss) // 20)])]
open(f"{out}/soak-report.md", "w").write("\n".join(report) + "\n")
json.dump({"pass": ok, "criteria": res}, open(f"{out}/soak-report.json", "w"), indent=2)
print("\n".join(report))
sys.exit(0 if ok else 1)
PY
