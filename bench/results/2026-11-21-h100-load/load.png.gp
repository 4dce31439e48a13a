set terminal pngcairo size 1100,800 font 'sans,10' noenhanced
set output './load.png'
set multiplot layout 2,1 title 'qsearch-load: embed, 512-token inputs, dimensions 1024 (NVIDIA H100 80GB HBM3, 81559 MiB, random 0.6B)'
set logscale x 2
set grid
set key left top
set xlabel 'concurrency'
set ylabel 'requests/s'
set y2label 'latency (ms)'
set ytics nomirror
set y2tics
plot './load.png.dat' using 1:2 with linespoints lw 2 title 'QPS', '' using 1:4 axes x1y2 with linespoints title 'P50 latency', '' using 1:5 axes x1y2 with linespoints title 'P99 latency'
unset y2label
unset y2tics
set ytics mirror
set ylabel 'tokens/s'
plot './load.png.dat' using 1:6 with linespoints lw 2 title 'tokens/s'
unset multiplot
