# plot.gp -- the chart of `make bench`: four panels, one bar per server.
#   gnuplot -e "dat='bench/results/chart.dat'; out='bench/results/bench.png'" bench/plot.gp
# chart.dat (written by bench/summarize.py), one line per server:
#   "name" fanout_dps peak_dps p50_ms p99_ms rss_per_conn logins_per_s light_p99_ms

if (!exists("dat")) dat = 'bench/results/chart.dat'
if (!exists("out")) out = 'bench/results/bench.png'

set terminal pngcairo size 1200,900 font "sans,10"
set output out
set datafile missing "NaN"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key top right
set yrange [0:*]
set offsets 0, 0, graph 0.2, 0      # room above the bars for the key
set format y "%.0s%c"
set xtics nomirror
set ytics nomirror

set multiplot layout 2,2 title "tagarela vs uWebSockets.js vs Node ws (server on 1 core, load on another)"

set title "deliveries/s (higher is better)"
plot dat using 2:xtic(1) title "fan-out (one big room)" lc rgb "#4472c4", \
     ''  using 3 title "peak (200 clients)" lc rgb "#ed7d31"

set title "latency, ms (lower is better)"
set format y "%g"
plot dat using 4:xtic(1) title "p50 at half of peak" lc rgb "#70ad47", \
     ''  using 5 title "p99 at half of peak" lc rgb "#c00000", \
     ''  using 8 title "p99 at 40k deliveries/s" lc rgb "#ffc000", \
     5 with lines dt 2 lc rgb "black" title "p99 target 5 ms"

set title "server RSS per idle connection, bytes (lower is better)"
set format y "%.0s%c"
plot dat using 6:xtic(1) title "idle logged-in clients" lc rgb "#7f6084", \
     2048 with lines dt 2 lc rgb "black" title "target 2 KiB"

set title "logins/s (higher is better)"
set format y "%g"
plot dat using 7:xtic(1) title "logins" lc rgb "#5b9bd5"

unset multiplot
