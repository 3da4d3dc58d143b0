# plots/geometry.gp -- margins and the distance to the SELI / ETF geometry against iteration.
#
# (a) the normalised margin nmargin = margin / (1/2 (||W||^2 + ||H||^2)) with
#     the unconstrained-features SVM's optimum 1/||Zhat||_* dashed (the limit
#     of bias-free, unregularised cross-entropy GD; Ji et al. 2022);
# (b) distances to SELI: seli_W, seli_H, seli_Z; and to the simplex ETF:
#     etf_W, etf_M (they coincide with SELI for balanced classes);
# (c) the minority classifiers' and class means' mean cosine (step
#     imbalance), with -1/(C-1) (ETF) and 1 (minority collapse) dotted.
#
# Usage (ufm run and ufm plot DIR run it):
#   gnuplot -e "dir='RUNDIR'; out_png=...; out_pdf=...; title=...;
#               nmargin_opt=X; C=NC; col_nmargin=K; ...(column numbers)" plots/geometry.gp

# the directory of this script, for pdfterm.gp
PLOTDIR = ''
do for [_i = strlen(ARG0):1:-1] { if (ARG0[_i:_i] eq '/') { PLOTDIR = ARG0[1:_i]; break } }

if (!exists("dir")) { print "geometry.gp: set dir='RUNDIR'"; exit status 2 }
if (!exists("title")) { title = dir }
F = dir.'/metrics.tsv'
set encoding utf8
set datafile separator tab
set datafile columnheaders

# the x range from the data (the panels' functions need one), whether
# there are minority classes at all (mc_cos_* are nan otherwise), and
# whether seli_H was computed (nan throughout with compute_seli_H = false)
# columns by number (ufm passes them: a "nan" read through column("name")
# would invalidate the whole row); valid() first
ci(name) = (name eq "iter") ? 1 : (exists("col_".name) ? value("col_".name) : 0)
val(name) = (ci(name) > 0 && valid(ci(name))) ? column(ci(name)) : NaN
_n = 0; _h = 0
# one column (two would make stats fit a line, and warn when there are two rows)
stats F using ((val("mc_cos_W") == val("mc_cos_W") ? _n = _n + 1 : 0), \
               (val("seli_H") == val("seli_H") ? _h = _h + 1 : 0), column(1) + 1) nooutput
XMAX = (exists("STATS_max") && STATS_max > 1 ? STATS_max : 10)
HAVE_MC = _n > 0
SELI_H_TITLE = _h > 0 ? "seli\\_H" : "seli\\_H: not computed"
set xrange [1:XMAX]

set logscale x
set format x "10^{%L}"
set xlabel "iteration + 1"
set grid lc rgb "#dddddd" dt 3
set border 3
set tics nomirror out scale 0.6
set key bottom left font ",9" samplen 2.5
set style line 1 lc rgb "#0072B2" lw 1.8
set style line 2 lc rgb "#D55E00" lw 1.8
set style line 3 lc rgb "#009E73" lw 1.8
set style line 4 lc rgb "#0072B2" lw 1.2 dt 2
set style line 5 lc rgb "#D55E00" lw 1.2 dt 2
set style line 9 lc rgb "#000000" lw 1.2 dt 2
pos(x) = (x > 0 ? x : 1/0)
num(x) = (x == x ? x : 1/0)

do for [out in "png pdf"] {
    if (out eq "png") {
        if (!exists("out_png")) { continue }
        set terminal pngcairo enhanced size 1500,480 font "DejaVu Sans,11"
        set output out_png
    } else {
        if (!exists("out_pdf")) { continue }
        PDF_W = 9; PDF_H = 2.9; PDF_PT = 7.5; PDF_OPTS = ''
        load PLOTDIR.'pdfterm.gp'
        set output out_pdf
    }
    set multiplot layout 1,3 title title noenhanced
    set title "(a) normalised margin"
    unset logscale y
    set format y "% g"
    set key bottom right
    plot F using (column(1) + 1):(val("nmargin")) with lines ls 1 title "nmargin", \
         (exists("nmargin_opt") ? nmargin_opt : 1/0) with lines ls 9 title "SVM optimum 1/‖Ẑ‖_*"
    set title "(b) distance to SELI (solid) and ETF (dashed)"
    set logscale y
    set format y "10^{%L}"
    set key bottom left
    plot F using (column(1) + 1):(pos(val("seli_W"))) with lines ls 2 title "seli\\_W", \
         F using (column(1) + 1):(pos(val("seli_H"))) with lines ls 1 title SELI_H_TITLE, \
         F using (column(1) + 1):(pos(val("seli_Z"))) with lines ls 3 title "seli\\_Z", \
         F using (column(1) + 1):(pos(val("etf_W"))) with lines ls 5 title "etf\\_W", \
         F using (column(1) + 1):(pos(val("etf_M"))) with lines ls 4 title "etf\\_M"
    set title "(c) minority classes: mean pairwise cosine"
    unset logscale y
    set format y "% g"
    set yrange [-1.05:1.05]
    set key bottom right
    if (HAVE_MC) {
        plot F using (column(1) + 1):(val("mc_cos_W")) with lines ls 2 title "classifiers W", \
             F using (column(1) + 1):(val("mc_cos_M")) with lines ls 1 title "class means M", \
             (exists("C") ? -1.0 / (C - 1) : 1/0) with lines ls 9 title "-1/(C-1)", \
             1 with lines ls 9 notitle
    } else {
        set label 1 "no minority classes\n(two class sizes needed)" at graph 0.5, 0.5 center
        plot (exists("C") ? -1.0 / (C - 1) : 1/0) with lines ls 9 title "-1/(C-1)"
        unset label 1
    }
    set yrange [*:*]
    unset multiplot
    unset output
}
