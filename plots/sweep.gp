# plots/sweep.gp -- final metrics of a ufm sweep against the first swept key.
#
# 3x3 panels: NC1, etf_W, etf_M, NC3, NC4, loss, ||W||, ||H||, accuracy, each
# the mean over seeds with error bars (population std) when nseeds > 1, one
# curve per value of the other swept keys (Okabe-Ito colours); dashed
# vertical lines (vmarks, one x per curve or nan) mark a predicted threshold
# in that curve's colour.
#
# Usage (ufm plot DIR runs it):
#   gnuplot -e "data='DIR/sweep-plot.tsv'; out_png=...; out_pdf=...; title=...;
#               xlabel='KEY'; logx=0|1; numx=0|1; xtlabels='v1 v2 ...';
#               ngroups=G; gtitles='t1 t2 ...'; nseeds=S" plots/sweep.gp
# data: a '#' header line, then G blocks (separated by two blank lines) of rows
# x, nc1_mean, nc1_std, etf_W_mean, ... in the order of the panels, then the
# nine closed-form predictions (ufm theory; nan where none), drawn dashed.
# numx=0: x is the index of a non-numeric value, labelled from xtlabels.
# A panel whose metric has no finite value anywhere says so instead of failing.

# the directory of this script, for pdfterm.gp
PLOTDIR = ''
do for [_i = strlen(ARG0):1:-1] { if (ARG0[_i:_i] eq '/') { PLOTDIR = ARG0[1:_i]; break } }

if (!exists("data")) { print "sweep.gp: set data='FILE'"; exit status 2 }
if (!exists("title")) { title = data }
if (!exists("ngroups")) { ngroups = 1 }
if (!exists("nseeds")) { nseeds = 1 }
set encoding utf8
set datafile separator tab
set datafile nocolumnheaders

# the nine panels: metric names (the data's column pairs, in order), titles
# ('|'-separated) and log-y flags; ufm passes other sets for imbalanced sweeps
if (!exists("metrics")) { metrics = "nc1 etf_W etf_M nc3 nc4 loss norm_W norm_H acc" }
if (!exists("titles")) { titles = "NC1: Tr(Σ_WΣ_B^+)/C|classifier W: distance to simplex ETF|class means M: distance to simplex ETF|NC3: self-duality|NC4: mismatch with NCC rule|final training loss|‖W‖_F|‖H‖_F|training accuracy" }
if (!exists("logy")) { logy = "1 1 1 1 0 1 1 1 0" }
if (!exists("vmarks")) { vmarks = "" }
M = metrics
T = titles
LOGY = logy
array PT[9]
do for [i=1:9] { PT[i] = "" }
# split T on '|' without external programs
_t = T; _i = 1
while (strstrt(_t, "|") > 0 && _i < 9) {
    PT[_i] = _t[1:strstrt(_t, "|") - 1]
    _t = _t[strstrt(_t, "|") + 1:]
    _i = _i + 1
}
PT[_i] = _t

# Okabe-Ito
array C[8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
array P[8] = [7, 9, 5, 11, 13, 15, 4, 6]
do for [g=1:8] {
    set style line g lc rgb C[g] lw 1.6 pt P[g] ps 0.7
}
set style line 100 lc rgb "#cccccc" dt 3 lw 0.6

set macros
set grid ls 100
set border 3
set tics nomirror out scale 0.6
set key top right Left reverse samplen 2.5 spacing 1.05 font ",8" opaque box lc rgb "#dddddd"
if (logx) { set logscale x; set format x "10^{%L}" } else { unset logscale x; set format x "% g" }
if (!numx) {
    set xtics ()
    do for [i=1:words(xtlabels)] { set xtics add (word(xtlabels, i) i - 1) }
    set xrange [-0.5:words(xtlabels) - 0.5]
} else {
    set xrange [*:*]
    if (words(xtlabels) <= 12 && !logx) {
        set xtics ()
        do for [i=1:words(xtlabels)] { set xtics add (sprintf("%.4g", real(word(xtlabels, i))) real(word(xtlabels, i))) }
    }
}

# the prediction of ufm theory (columns 20..28), NaN where none applies;
# on a log axis only positive values
th(c, lg) = (valid(c) && (!lg || column(c) > 0)) ? column(c) : NaN

# For panel m: how many positive means (a log y axis needs one).
array NPOS[9]
array YMIN[9]
array YMAX[9]
do for [m=1:9] {
    _c = 2 * m
    _n = 0; _lo = 1e308; _hi = -1e308
    stats data using (valid(_c) ? (_v = column(_c), _lo = (_v < _lo ? _v : _lo), _hi = (_v > _hi ? _v : _hi), \
                      (_v > 0 ? _n = _n + 1 : 0), 0) : 0) nooutput
    NPOS[m] = _n
    YMIN[m] = _lo
    YMAX[m] = _hi
}

draw_panels = 'do for [m=1:9] { \
    _c = 2 * m; \
    set title PT[m] font ",9"; \
    set xlabel (m > 6 ? xlabel : "") noenhanced; \
    _log = (word(LOGY, m) eq "1") && NPOS[m] > 0; \
    if (_log) { set logscale y; set format y "10^{%L}" } else { unset logscale y; set format y "% g" }; \
    if (YMAX[m] > YMIN[m] || YMAX[m] < YMIN[m]) { set yrange [*:*] } else { \
        if (_log) { set yrange [YMIN[m] / 10 : YMIN[m] * 10] } else { set yrange [YMIN[m] - 0.5 : YMIN[m] + 0.5] } }; \
    if (m == 1 && ngroups > 1) { set key } else { unset key }; \
    unset arrow; \
    do for [g=1:words(vmarks)] { if (word(vmarks, g) ne "nan") { \
        set arrow from real(word(vmarks, g)), graph 0 to real(word(vmarks, g)), graph 1 nohead dt 2 lw 1.2 lc rgb C[(g - 1) % 8 + 1] } }; \
    _t = 19 + m; \
    if (YMIN[m] > YMAX[m]) { \
        unset logscale y; set format y "% g"; set yrange [0:1]; \
        set label 30 "no finite value" at graph 0.5, 0.5 center tc rgb "#666666"; \
        plot 2 lt nodraw notitle; unset label 30 \
    } else { if (nseeds > 1) { \
        plot for [g=0:ngroups-1] data index g using 1:(column(_c)):(_log && column(_c) - column(_c+1) <= 0 ? column(_c) : column(_c) - column(_c+1)):(column(_c) + column(_c+1)) \
             with yerrorlines ls (g % 8 + 1) title word(gtitles, g + 1), \
             for [g=0:ngroups-1] data index g using 1:(th(_t, _log)) with lines dt (2,4) lw 1.4 lc rgb "#000000" notitle \
    } else { \
        plot for [g=0:ngroups-1] data index g using 1:(column(_c)) with linespoints ls (g % 8 + 1) title word(gtitles, g + 1), \
             for [g=0:ngroups-1] data index g using 1:(th(_t, _log)) with lines dt (2,4) lw 1.4 lc rgb "#000000" notitle \
    } } \
}'

do for [out in "png pdf"] {
    if (out eq "png") {
        if (!exists("out_png")) { continue }
        set terminal pngcairo enhanced size 1500,1084 font "DejaVu Sans,11"
        set output out_png
    } else {
        if (!exists("out_pdf")) { continue }
        PDF_W = 9; PDF_H = 6.5; PDF_PT = 7.5; PDF_OPTS = ''
        load PLOTDIR.'pdfterm.gp'
        set output out_pdf
    }
    set multiplot layout 3,3 title sprintf("%s: final values against %s%s; black dashes: closed-form prediction (ufm theory), coloured dashes: thresholds", title, xlabel, nseeds > 1 ? sprintf(" (mean ± std over %d seeds)", nseeds) : "") noenhanced
    @draw_panels
    unset multiplot
    unset output
}
