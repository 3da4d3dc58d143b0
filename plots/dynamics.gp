# plots/dynamics.gp -- the metrics of every point of a small sweep against iteration.
#
# Six panels, one curve per point (Okabe-Ito colours): distance of W to SELI
# and to the simplex ETF, distance of H to SELI, the normalised margin,
# NC1 and the training loss. For comparing a handful of settings over time
# (for instance R = 1, 10, 100 converging to SELI and not to the ETF).
#
# Usage (ufm run and ufm plot DIR run it for sweeps of <= 12 points):
#   gnuplot -e "dir='SWEEPDIR'; points='p0000 p0001 ...'; labels='ratio=1 ...';
#               out_png=...; out_pdf=...; title=..." plots/dynamics.gp

# the directory of this script, for pdfterm.gp
PLOTDIR = ''
do for [_i = strlen(ARG0):1:-1] { if (ARG0[_i:_i] eq '/') { PLOTDIR = ARG0[1:_i]; break } }

if (!exists("dir")) { print "dynamics.gp: set dir='SWEEPDIR'"; exit status 2 }
if (!exists("title")) { title = dir }
set encoding utf8
set datafile separator tab
set datafile columnheaders
set datafile missing "nan"
array C[8] = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"]
do for [g=1:8] { set style line g lc rgb C[g] lw 1.6 }
set logscale x
set format x "10^{%L}"
set grid lc rgb "#dddddd" dt 3
set border 3
set tics nomirror out scale 0.6
pos(x) = (x > 0 ? x : 1/0)
ci(name) = exists("col_".name) ? value("col_".name) : 0
val(name) = (ci(name) > 0 && valid(ci(name))) ? column(ci(name)) : NaN
F(k) = dir.'/'.word(points, k).'/metrics.tsv'
array PM[6] = ["seli_W", "etf_W", "seli_H", "nmargin", "nc1", "loss"]
array PT[6] = ["classifier W: distance to SELI", "classifier W: distance to simplex ETF", \
               "features H: distance to SELI", "normalised margin", "NC1", "training loss"]
array PL[6] = [1, 1, 1, 0, 1, 1]

# Which panels have anything to draw: a column nan throughout (seli_H with
# compute_seli_H = false) or never positive on a log scale (NC1 exactly 0
# when every class has one sample) would stop gnuplot ("all points y value
# undefined"); such a panel says so instead. XMAX: the last iteration + 1.
ok(m) = PL[m] ? val(PM[m]) > 0 : val(PM[m]) == val(PM[m])
fin(m) = val(PM[m]) == val(PM[m])
array NV[6]
array NF[6]
XMAX = 10
do for [m=1:6] {
    _v = 0; _f = 0
    do for [k=1:words(points)] {
        stats F(k) using ((ok(m) ? _v = _v + 1 : 0), (fin(m) ? _f = _f + 1 : 0), column(1) + 1) nooutput
        if (exists("STATS_max") && STATS_max > XMAX) { XMAX = STATS_max }
    }
    NV[m] = _v; NF[m] = _f
}

do for [out in "png pdf"] {
    if (out eq "png") {
        if (!exists("out_png")) { continue }
        set terminal pngcairo enhanced size 1500,900 font "DejaVu Sans,11"
        set output out_png
    } else {
        if (!exists("out_pdf")) { continue }
        PDF_W = 9; PDF_H = 5.4; PDF_PT = 7.5; PDF_OPTS = ''
        load PLOTDIR.'pdfterm.gp'
        set output out_pdf
    }
    set multiplot layout 2,3 title sprintf("%s: every point against iteration", title) noenhanced
    do for [m=1:6] {
        set title PT[m]
        set xlabel (m > 3 ? "iteration + 1" : "")
        if (PL[m]) { set logscale y; set format y "10^{%L}" } else { unset logscale y; set format y "% g" }
        if (m == 1) { set key bottom left font ",8" noenhanced } else { unset key }
        if (NV[m] > 0) {
            plot for [k=1:words(points)] F(k) using (column(1) + 1):(PL[m] ? pos(val(PM[m])) : val(PM[m])) \
                 with lines ls ((k - 1) % 8 + 1) title word(labels, k)
        } else {
            set label 1 sprintf("%s: %s", PM[m], NF[m] > 0 ? "no positive value" : "not computed") \
                at graph 0.5, graph 0.5 center noenhanced
            plot [1:XMAX] [(PL[m] ? 0.1 : -1):1] NaN notitle
            unset label 1
        }
    }
    unset multiplot
    unset output
}
