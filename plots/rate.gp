# plots/rate.gp -- the linear convergence of regularised GD (THEORY.md section 5).
#
# The objective gap F_t - F* of one run against the iteration (linear x, log
# y), with the predicted slope gap_rate^t, gap_rate = (1 - lr lambda_H)^2,
# anchored at the first point of the fit window, and the slope fitted by
# least squares over that window (gap between 1e-8 and 1e-12 times
# max(1, |F*|): late enough for the slowest mode to dominate, above the
# rounding of F_t). F* and gap_rate come from the run's theory.tsv.
#
# Usage:
#   gnuplot -e "dir='RUNDIR'" plots/rate.gp      # RUNDIR/rate.png and rate.pdf
# (optionally out_png='X.png', out_pdf='X.pdf', title='TEXT'). Needs
# RUNDIR/metrics.tsv and a RUNDIR/theory.tsv holding `objective` and
# `gap_rate` (ufm run writes gap_rate for plain GD where the rate is known).

# the directory of this script, for pdfterm.gp
PLOTDIR = ''
do for [_i = strlen(ARG0):1:-1] { if (ARG0[_i:_i] eq '/') { PLOTDIR = ARG0[1:_i]; break } }

if (!exists("dir")) {
    print "rate.gp: set dir='RUNDIR' with gnuplot -e"
    exit status 2
}
if (!exists("title")) { title = dir }
if (!exists("out_png") && !exists("out_pdf")) {
    out_png = dir.'/rate.png'
    out_pdf = dir.'/rate.pdf'
}
F = dir.'/metrics.tsv'
T = dir.'/theory.tsv'
set encoding utf8
set datafile separator tab

# ---------------------------------------------------------------- theory
FS = NaN; Q = NaN
set datafile nocolumnheaders
stats T using (strcol(1) eq "objective" ? (FS = column(2)) : \
               strcol(1) eq "gap_rate" ? (Q = column(2)) : 0) nooutput
if (!(FS == FS) || !(Q == Q)) {
    print sprintf("rate.gp: %s has no objective and gap_rate: no known rate for this run", T)
    exit status 1
}
set datafile columnheaders

# ---------------------------------------------------------------- fit window
S = (abs(FS) > 1 ? abs(FS) : 1)
HI = 1e-8 * S; LO = 1e-12 * S
gap(f) = f - FS
inwin(g) = (g <= HI && g >= LO)
# first point of the window (the anchor) and the last iteration worth showing
TA = -1; GA = NaN; TEND = 0
stats F using (_g = gap(column("objective")), \
               (inwin(_g) && TA < 0) ? (TA = column("iter"), GA = _g) : 0, \
               (_g > 1e-15 * S) ? (TEND = column("iter")) : 0) nooutput
if (TA < 0) {
    print sprintf("rate.gp: %s never reaches the fit window (gap %.1e .. %.1e): run longer", F, HI, LO)
    exit status 1
}
stats F using (inwin(gap(column("objective"))) ? column("iter") : NaN): \
              (inwin(gap(column("objective"))) ? log(gap(column("objective"))) : NaN) nooutput
SLOPE = STATS_slope
T0 = STATS_min_x; T1 = STATS_max_x
PRED = log(Q)
XMAX = (TEND > T1 ? TEND : T1) * 1.05
print sprintf("rate.gp: %s: fit window t = %d..%d (gap %.0e..%.0e): slope %.6e per step, predicted log(gap_rate) %.6e, ratio %.5f", \
              dir, T0, T1, HI, LO, SLOPE, PRED, SLOPE / PRED)

# ---------------------------------------------------------------- draw
do for [pass = 1:2] {
    _go = 0
    if (pass == 1 && exists("out_png")) {
        set terminal pngcairo enhanced size 900,600 font "DejaVu Sans,11" linewidth 1.25 rounded
        set output out_png
        _go = 1
    }
    if (pass == 2 && exists("out_pdf")) {
        PDF_W = 6; PDF_H = 4; PDF_PT = 10; PDF_OPTS = 'linewidth 1.25 rounded'
        load PLOTDIR.'pdfterm.gp'
        set output out_pdf
        _go = 1
    }
    if (_go) {
    reset
    set encoding utf8
    set datafile separator tab
    set datafile columnheaders
    set title sprintf("%s: objective gap of gradient descent (THEORY.md 5)", title) noenhanced
    set xlabel "iteration t"
    set ylabel "F_t − F*"
    set logscale y
    set format y "10^{%L}"
    set xrange [0:XMAX]
    set border 3
    set tics nomirror out scale 0.6
    set grid xtics ytics lc rgb "#e4e4e4" lw 0.8 back
    set key top right Right samplen 2.5 spacing 1.15
    set arrow 1 from T0, graph 0 to T0, graph 1 nohead lc rgb "#999999" dt 3
    set arrow 2 from T1, graph 0 to T1, graph 1 nohead lc rgb "#999999" dt 3
    set label 1 sprintf("fit window %.0e … %.0e: slope %.6e per step\npredicted log((1 − η λ_H)^2) = %.6e\nratio %.5f", \
        HI, LO, SLOPE, PRED, SLOPE / PRED) at graph 0.04, 0.3 left font ",10" noenhanced
    plot F using "iter":(gap(column("objective")) > 0 ? gap(column("objective")) : NaN) \
             with linespoints lc rgb "#0072B2" lw 2 pt 7 ps 0.5 pi 20 title "F_t − F* (run)", \
         (x >= 0 ? GA * Q**(x - TA) : NaN) with lines lc rgb "#D55E00" lw 2 dt 2 \
             title "predicted (1 − η λ_H)^{2t}"
    unset output
    }
}
