# Ember benchmark plot (gnuplot, pngcairo). report.py passes, with -e:
#   out, title, and the data files it wrote: startup, api_ember, api_floor,
#   guest_ember_file, guest_qemu, guest_ember_api, io_block, io_net (each
#   may be missing; io_kvmtool, when set, adds kvmtool as a column of both
#   I/O files). A third row of panels holds the I/O parts, if they ran.
io = exists("io_block") || exists("io_net")
top = exists("startup") || exists("api_ember") || exists("guest_qemu")
rows = (top ? 2 : 0) + (io ? 1 : 0)
set terminal pngcairo size 1400,(rows * 500) font "sans,10"
set output out
set multiplot layout rows,2 title title font "sans,13"
set grid
set key top left box opaque
set style line 1 lc rgb "#d95f02" pt 7 ps 0.8 lw 1.5
set style line 2 lc rgb "#1b9e77" pt 5 ps 0.8 lw 1.5
set style line 3 lc rgb "#7570b3" pt 9 ps 0.8 lw 1.5
set style line 4 lc rgb "#666666" dt 2 lw 1.5

if (top) {
if (exists("startup")) {
	set title "exec -> API socket accepts (this host; scale cut at 3x the median wall)"
	set xlabel "run"
	set ylabel "ms"
	# One wall-time outlier (the machine is shared) would flatten the rest:
	# the scale stops at 3x the median wall time; the tables have the max.
	stats startup using 3 nooutput
	ymax = STATS_max < 3 * STATS_median ? STATS_max * 1.15 : 3 * STATS_median
	set yrange [0:(ymax > 5 ? ymax : 5)]
	plot startup using 1:2 with points ls 1 title "Ember CPU (user+sys)", \
	     startup using 1:3 with points ls 2 title "wall", \
	     4 with lines ls 4 title "CPU target 4 ms"
} else {
	set multiplot next
}

if (exists("api_ember")) {
	set title "PUT /machine-config round trip, keep-alive (this host)"
	set xlabel "round trip, us (log)"
	set ylabel "fraction of requests"
	set logscale x
	set yrange [0:1]
	set key bottom right
	set arrow 1 from 100, graph 0 to 100, graph 1 nohead ls 4
	plot api_ember using 1:2 with lines ls 1 title "Ember", \
	     api_floor using 1:2 with lines ls 2 title "floor: same client, canned 204"
	unset arrow 1
	unset logscale x
	set autoscale y
	set key top left
} else {
	set multiplot next
}

if (exists("guest_qemu")) {
	set title "process exec -> init marker (nested TCG host: compare ratios only)"
	set xlabel "round"
	set ylabel "ms"
	set yrange [0:*]
	set key bottom right
	plot guest_ember_file using 1:2 with linespoints ls 1 title "Ember (config file)", \
	     guest_qemu using 1:2 with linespoints ls 2 title "QEMU microvm", \
	     guest_ember_api using 1:2 with linespoints ls 3 title "Ember (API)"

	set title "VMM memory overhead after boot, 1 vCPU / 128 MiB"
	set ylabel "MiB"
	set key center right
	plot guest_ember_file using 1:3 with linespoints ls 1 title "Ember: RSS - guest RAM", \
	     guest_qemu using 1:3 with linespoints ls 2 title "QEMU: RSS - guest RAM", \
	     guest_ember_file using 1:4 with linespoints ls 1 dt 2 title "Ember: private only", \
	     guest_qemu using 1:4 with linespoints ls 2 dt 2 title "QEMU: private only"
} else {
	set multiplot next
	set multiplot next
}
}

# The I/O panels: medians as clustered bars. Block spans 1-1000 MiB/s, so
# its scale is logarithmic.
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set xtics nomirror rotate by -15
set autoscale
set key top right
set offsets 0, 0, graph 0.15, 0	# room for the key above the bars
if (exists("io_block")) {
	set title "Block: dd in the guest, median MiB/s (nested TCG host: compare ratios only)"
	set xlabel ""
	set ylabel "MiB/s (log)"
	set logscale y
	set yrange [1:*]
	if (exists("io_kvmtool")) {
		plot io_block using 2:xtic(1) lc rgb "#d95f02" title "Ember Sync", \
		     '' using 3 lc rgb "#7570b3" title "Ember Async", \
		     '' using 4 lc rgb "#1b9e77" title "QEMU microvm", \
		     '' using 5 lc rgb "#e6ab02" title "kvmtool"
	} else {
		plot io_block using 2:xtic(1) lc rgb "#d95f02" title "Ember Sync", \
		     '' using 3 lc rgb "#7570b3" title "Ember Async", \
		     '' using 4 lc rgb "#1b9e77" title "QEMU microvm"
	}
	unset logscale y
} else {
	set multiplot next
}
if (exists("io_net")) {
	set title "Network: TCP over a TAP, median MiB/s (nested TCG host: compare ratios only)"
	set xlabel ""
	set ylabel "MiB/s"
	set yrange [0:*]
	if (exists("io_kvmtool")) {
		plot io_net using 2:xtic(1) lc rgb "#d95f02" title "Ember", \
		     '' using 3 lc rgb "#1b9e77" title "QEMU microvm", \
		     '' using 4 lc rgb "#e6ab02" title "kvmtool"
	} else {
		plot io_net using 2:xtic(1) lc rgb "#d95f02" title "Ember", \
		     '' using 3 lc rgb "#1b9e77" title "QEMU microvm"
	}
}
unset multiplot
