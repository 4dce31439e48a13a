#!/usr/bin/env bash
# Plots a soak run (scripts/soak.sh output folder): completed requests per 10 s of both loads
# and the server's RSS over time, into DIR/soak.png (gnuplot, from `make deps`).
#   scripts/plot_soak.sh soak-results/20261121T190000Z
set -euo pipefail
dir=${1:?usage: plot_soak.sh SOAK_OUTPUT_DIR}
python3 - "$dir" <<'PY'
import json, sys
d = sys.argv[1]
def timeline(name):
    try:
        return json.load(open(f"{d}/{name}"))["levels"][0]["timeline_ok_per_s"]
    except Exception:
        return []
e, m = timeline("embed.json"), timeline("mixed.json")
with open(f"{d}/soak_qps.dat", "w") as f:
    f.write("# t_s embed_qps mixed_qps (10 s means)\n")
    for i in range(0, max(len(e), len(m)), 10):
        es, ms = e[i:i + 10], m[i:i + 10]
        f.write(f"{i + 5} {sum(es) / max(1, len(es)):.3f} {sum(ms) / max(1, len(ms)):.3f}\n")
PY
awk '{print $1, $2 / 1024}' "$dir/rss.tsv" > "$dir/soak_rss.dat"
gnuplot <<GP
set terminal pngcairo size 1100,700 font 'sans,10' noenhanced
set output '$dir/soak.png'
set multiplot layout 2,1 title 'qsearch soak test'
set grid
set xlabel 'seconds'
set ylabel 'requests/s (10 s means)'
plot '$dir/soak_qps.dat' using 1:2 with lines lw 2 title 'embeddings load', '' using 1:3 with lines lw 2 title 'search+ingest load'
set ylabel 'server RSS (MiB)'
set yrange [0:*]
plot '$dir/soak_rss.dat' using 1:2 with lines lw 2 title 'RSS'
unset multiplot
GP
echo "wrote $dir/soak.png"
