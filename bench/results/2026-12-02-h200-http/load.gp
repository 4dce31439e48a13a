# gnuplot load.gp: QPS and P99 against clients, qsearch vs peer_server.py (4B, 512-token texts)
set terminal pngcairo size 1000,440 font "sans,10"
set output "load.png"
set datafile separator "\t"
set logscale x 2
set key bottom right
set xlabel "concurrent keep-alive clients"
set multiplot layout 1,2 title "4B shape, 512-token texts, dimensions 1024 (H200, 2026-12-02, 6a56477)"
set ylabel "requests/s"
set yrange [0:*]
plot "< grep qsearch load.tsv" using 2:3 with linespoints title "qsearch", "< grep peer load.tsv" using 2:3 with linespoints title "peer\\_server.py"
set ylabel "P99 latency, ms"
set logscale y 10
set yrange [*:*]
plot "< grep qsearch load.tsv" using 2:5 with linespoints title "qsearch", "< grep peer load.tsv" using 2:5 with linespoints title "peer\\_server.py"
unset multiplot
