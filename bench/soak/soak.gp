# soak.gp -- the chart of `make soak`: the server's RSS and the honest
# clients' delivery p99 over time, while every attack of issue 10 runs.
#   gnuplot -e "dat='bench/results/soak.dat'; out='bench/results/soak.png'" bench/soak/soak.gp
# soak.dat (written by bench/soak/run.py), one line a second:
#   t_s rss_mb honest_alive p99_ms

if (!exists("dat")) dat = 'bench/results/soak.dat'
if (!exists("out")) out = 'bench/results/soak.png'
if (!exists("ttl")) ttl = 'soak: every attack at once beside honest traffic'

set terminal pngcairo size 1200,900 font "sans,10"
set output out
set datafile missing "NaN"
set grid ytics
set key top right
set xtics nomirror
set ytics nomirror
set xlabel "seconds"

set multiplot layout 2,1 title ttl

set title "server RSS, MB (lower is better)"
set yrange [0:*]
plot dat using 1:2 with lines lw 2 lc rgb "#4472c4" title "RSS"

set title "honest deliveries: p99 of each second, ms (lower is better); honest clients connected"
set y2range [0:*]
set y2tics nomirror
plot dat using 1:4 with lines lw 1 lc rgb "#c00000" title "p99 ms", \
     ''  using 1:3 axes x1y2 with steps lw 2 lc rgb "#70ad47" title "honest clients connected (right)"

unset multiplot
