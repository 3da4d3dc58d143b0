# plots/dashboard.gp -- neural-collapse dashboard for one ufm run.
#
# A 3x3 grid in the spirit of Papyan, Han & Donoho (PNAS 2020), Figs. 2-7,
# every panel against (iteration + 1) on a log axis:
#   (a) training loss, training error 1-acc   (b) NC1, CDNV
#   (c) equinorm M, W                          (d) equiangularity M, W
#   (e) max-angle M, W                         (f) distance to simplex ETF M, W
#   (g) NC3 self-duality                       (h) NC4 NCC mismatch (linear y)
#   (i) norms ||H||, ||W|| and gradient norm
# Class-mean (M, H) quantities are blue, classifier (W) quantities vermillion
# (Okabe-Ito palette).  The dotted grey vertical line marks the start of the
# terminal phase of training (TPT): the first logged iteration from which the
# training error stays exactly 0.
#
# Usage:
#   gnuplot -e "dir='RUNDIR'; out_png='X.png'; out_pdf='X.pdf'; title='TEXT'" \
#           plots/dashboard.gp
# Reads dir.'/metrics.tsv' (tab-separated, one header line; columns are found
# by name, so their order may change) and, if present, the predicted limits
# in theory.tsv (name<TAB>value lines written by `ufm run`), drawn as dashed
# lines: loss in (a), norm_H and norm_W in (i).  Set theory='FILE' to read
# another file, theory='' to read none (ufm does so when there is no
# theory.tsv; run by hand without one, gnuplot only warns).  title defaults to dir; if neither
# out_png nor out_pdf is given, dir/dashboard.png and dir/dashboard.pdf are
# written.  Robust to 1-row files, "nan" entries, exact zeros (dropped on log
# axes, never fatal), all-zero or all-nan columns and missing columns.

# the directory of this script, for pdfterm.gp
PLOTDIR = ''
do for [_i = strlen(ARG0):1:-1] { if (ARG0[_i:_i] eq '/') { PLOTDIR = ARG0[1:_i]; break } }

if (!exists("dir")) {
    print "dashboard.gp: set dir='RUNDIR' with gnuplot -e"
    exit status 2
}
if (!exists("title")) { title = dir }
TTL = title
if (!exists("out_png") && !exists("out_pdf")) {
    out_png = dir.'/dashboard.png'
    out_pdf = dir.'/dashboard.pdf'
}

F = dir.'/metrics.tsv'
set encoding utf8
set datafile separator tab
set datafile columnheaders

# ---------------------------------------------------------------- header
# Space-separated list of the column names; colidx(name) is 0 if absent.
# Count the lines first (header included) so that a header-only file does
# not trigger a "no valid data points" warning in the header pass.
set datafile nocolumnheaders
undefine STATS_*
stats F using (0) nooutput
NLINES = exists("STATS_records") ? STATS_records : 0
if (NLINES == 0) {
    print sprintf("dashboard.gp: cannot read %s (missing or empty)", F)
    exit status 1
}
set datafile columnheaders
HDR = ""
if (NLINES > 1) {
    stats F every ::0::0 using (HDR = " ", _s = sum [i=1:128] (HDR = HDR.columnhead(i)." ", 0), 0) nooutput
}
colidx(name) = sum [i=1:words(HDR)] (word(HDR, i) eq name ? i : 0)
# Data column by header name.  (Used instead of column("name") in the plot
# commands: gnuplot resolves a literal column("name") when the file is opened,
# even for a clause that is skipped, and warns if that column is missing.)
col(name) = column(colidx(name))

# ---------------------------------------------------------------- summaries
# For each column c: N_c valid (non-nan) values, NP_c positive values,
# MAX_c, MINP_c (smallest positive value).  valid() is tested before column()
# is read, so "nan" entries never invalidate a record or raise a warning.
tally(v) = (v == v) ? (_n = _n + 1, _mx = (v > _mx ? v : _mx), \
           (v > 0 ? (_np = _np + 1, _mp = (v < _mp ? v : _mp)) : 0)) : 0
_ki = colidx("iter")
_ka = colidx("acc")
do for [c in "iter err loss nc1 cdnv equinorm_M equinorm_W equiangle_M equiangle_W maxangle_M maxangle_W etf_M etf_W nc3 nc4 norm_H norm_W grad_norm"] {
    _n = 0; _np = 0; _mx = -1e308; _mp = 1e308
    _k = (c eq "err") ? _ka : colidx(c)
    if (_k > 0 && _ki > 0) {
        if (c eq "iter") {
            stats F using (valid(_k) ? tally(column(_k) + 1) : 0) nooutput
        } else { if (c eq "err") {
            stats F using (valid(_k) ? tally(1 - column(_k)) : 0) nooutput
        } else {
            stats F using (valid(_k) ? tally(column(_k)) : 0) nooutput
        } }
    }
    eval sprintf("N_%s = %d; NP_%s = %d; MAX_%s = %.17g; MINP_%s = %.17g", \
                 c, _n, c, _np, c, _mx, c, _mp)
}

# ---------------------------------------------------------------- theory
# TH_x = the predicted limit of column x (NaN if none), and for the y ranges
# the same N_/NP_/MAX_/MINP_ tallies under the name th_x.
if (!exists("theory")) { theory = dir.'/theory.tsv' }
TH_loss = NaN; TH_norm_W = NaN; TH_norm_H = NaN
if (strlen(theory) > 0) {
    set datafile nocolumnheaders
    stats theory using (strcol(1) eq "loss" ? (TH_loss = column(2)) : \
                        strcol(1) eq "norm_W" ? (TH_norm_W = column(2)) : \
                        strcol(1) eq "norm_H" ? (TH_norm_H = column(2)) : 0) nooutput
    set datafile columnheaders
}
do for [c in "loss norm_W norm_H"] {
    _v = value("TH_".c)
    eval sprintf("N_th_%s = %d; NP_th_%s = %d; MAX_th_%s = %.17g; MINP_th_%s = %.17g", \
                 c, (_v == _v), c, (_v > 0), c, (_v > 0 ? _v : -1e308), c, (_v > 0 ? _v : 1e308))
}

# Start of the TPT: iteration+1 of the first row of the final stretch of
# rows with acc == 1 (-1 if the run never reaches zero training error).
TPT = -1
if (_ka > 0 && _ki > 0 && N_err > 0) {
    stats F using ((valid(_ka) && valid(_ki)) ? \
        (column(_ka) >= 1 ? (TPT < 0 ? (TPT = column(_ki) + 1) : 0) : (TPT = -1)) : 0) nooutput
}

# x range: from the decade below the first logged iteration+1 to the last
# one, at least one decade wide; tics at powers of ten only, so the 10^{%L}
# labels stay exact even for a run with 1-2 logged iterations.
if (NP_iter > 0) {
    XLO = 10.0**floor(log10(MINP_iter) + 1e-9)
    XHI = (MAX_iter > 10 * XLO) ? MAX_iter : 10 * XLO
} else {
    XLO = 1; XHI = 10
    print sprintf("dashboard.gp: no data rows in %s", F)
    F = '+'          # every clause is skipped; '+' just avoids empty-file warnings
}
if (TPT <= MINP_iter) { TPT = -1 }   # zero error from the very first row
XTIC0 = XLO
# Pad both ends by 2% of the span so that points on the ends stay visible.
_pad = 10**(0.02 * log10(XHI / XLO))
XLO = XLO / _pad; XHI = XHI * _pad

# Log-y range of the columns in list L: the decades 10^_e[1] .. 10^_e[2]
# around the data, padded by 2.5% (YLO = 0: nothing positive to show).
# Labelled tics at the multiples of YSTEP decades, minor tics at the others.  (Tics for YSTEP > 1 are placed explicitly: gnuplot 5.4 hangs on
# e.g. "set ytics 1e10" over a 40-decade log range.)
array _e[2]
logrange(L) = (YLO = 1e308, YHI = -1e308, \
    _d = sum [j=1:words(L)] (value("NP_".word(L,j)) > 0 ? \
        (YLO = (value("MINP_".word(L,j)) < YLO ? value("MINP_".word(L,j)) : YLO), \
         YHI = (value("MAX_".word(L,j))  > YHI ? value("MAX_".word(L,j))  : YHI), 0) : 0), \
    (YHI > 0) ? (_e[1] = floor(log10(YLO) + 1e-9), _e[2] = ceil(log10(YHI) - 1e-9), \
                 (_e[2] <= _e[1] ? (_e[1] = _e[1] - 1, _e[2] = _e[2] + 1) : 0), \
                 YSTEP = (_e[2] - _e[1] <= 8 ? 1 : _e[2] - _e[1] <= 16 ? 2 : \
                          _e[2] - _e[1] <= 40 ? 5 : _e[2] - _e[1] <= 100 ? 10 : 50), \
                 _pad = 10**(0.025 * (_e[2] - _e[1])), \
                 YLO = 10.0**_e[1] / _pad, YHI = 10.0**_e[2] * _pad, 1) \
             : (YLO = 0, YHI = 0, YSTEP = 1, 0))
# Number of valid but non-positive values (hidden on a log axis) in list L.
nhidden(L) = sum [j=1:words(L)] (value("N_".word(L,j)) - value("NP_".word(L,j)))
# Number of valid values in list L.
nvalid(L) = sum [j=1:words(L)] value("N_".word(L,j))

# ---------------------------------------------------------------- styles
C_M   = "#0072B2"   # blue:        class means M, features H
C_W   = "#D55E00"   # vermillion:  classifier W
C_K   = "#000000"   # black:       joint quantities (loss, NC3, NC4)
C_S   = "#009E73"   # bluish green: secondary (train error, CDNV, grad norm)
C_TPT = "#999999"
NR = (N_iter > 0 ? N_iter : 1)
PI = (NR > 24 ? int(NR / 12) : 1)            # ~12 markers per curve

X = '(col("iter") + 1)'
XL = "iteration + 1"

# Per-panel helpers (macros, expanded after the range has been set).
# LOGY: log y axis over the columns in PL, with a grey note when values <= 0
# are hidden (counted over PZ if set, else PL) or nothing can be shown.
# RESET: back to the defaults between panels.
LOGY = 'R_ = logrange(PL); set logscale y; set format y "10^{%L}"; \
        if (R_) { set yrange [YLO:YHI]; \
                  if (YSTEP == 1) { set ytics 10.0**_e[1], 10, 10.0**_e[2]; set mytics 10 } \
                  else { set ytics (); set mytics 1; \
                         do for [e_ = int(_e[1]) : int(_e[2])] { \
                             if (e_ % YSTEP == 0) { set ytics add (10.0**e_) } \
                             else { set ytics add ("" 10.0**e_ 1) } } } } \
        else { set yrange [0.1:10]; set ytics 10; set mytics 10 }; \
        _nv = nvalid(PL); _nh = nhidden(exists("PZ") ? PZ : PL); undefine PZ; \
        if (!R_) { set label 20 (_nv > 0 ? "all values ≤ 0" : "no data") at graph 0.5, 0.5 center tc rgb "#666666" } \
        else { if (_nh > 0) { set label 20 sprintf("%d value%s ≤ 0 not shown", _nh, _nh > 1 ? "s" : "") at graph 0.97, 0.93 right font ",8" tc rgb "#666666" } }'
RESET = 'unset label 20; unset logscale y; set format y "%g"; set ytics autofreq; set mytics default; set yrange [*:*]; set key bottom left Left reverse'

# ---------------------------------------------------------------- draw
do for [pass = 1:2] {
    _go = 0
    if (pass == 1 && exists("out_png")) {
        set terminal pngcairo enhanced size 1500,1084 font "DejaVu Sans,10" fontscale 1.15 linewidth 1.25 pointscale 1.25 rounded
        set output out_png
        _go = 1
    }
    if (pass == 2 && exists("out_pdf")) {
        PDF_W = 9; PDF_H = 6.5; PDF_PT = 10; PDF_OPTS = 'linewidth 1.25 pointscale 0.7 rounded'
        load PLOTDIR.'pdfterm.gp'
        set output out_pdf
        _go = 1
    }
    if (_go) {
    reset
    set encoding utf8
    set datafile separator tab
    set datafile columnheaders
    set logscale x
    set xrange [XLO:XHI]
    set format x "10^{%L}"
    set xtics XTIC0, 10 nomirror
    set mxtics 10
    set ytics nomirror
    set border 3 lw 1
    set tics out scale 0.6, 0.3 font ",9.5"
    set grid xtics ytics lc rgb "#e4e4e4" lw 0.8 dt 1 back
    # Decaying quantities start high at the left: bottom left is free.
    set key bottom left Left reverse samplen 2.2 spacing 1.05 font ",9" noopaque
    set title offset 0, -0.6 font ",11"
    set style data linespoints
    set style line 1 lc rgb C_M lw 2.0 dt 1 pt 7  ps 0.75 pi PI
    set style line 2 lc rgb C_W lw 2.0 dt 1 pt 9  ps 0.85 pi PI
    set style line 3 lc rgb C_K lw 2.0 dt 1 pt 13 ps 0.85 pi PI
    set style line 4 lc rgb C_S lw 2.0 dt 2 pt 11 ps 0.85 pi PI
    if (TPT > 0) {
        set arrow 1 from TPT, graph 0 to TPT, graph 1 nohead lc rgb C_TPT lw 1.2 dt 3 back
    }
    set multiplot layout 3,3 title TTL font ",13" noenhanced \
        margins 0.065, 0.985, 0.075, 0.925 spacing 0.068, 0.095

    # (a) loss and training error
    PL = "loss err th_loss"; PZ = "loss"; @LOGY     # zero error is shown by the TPT line
    set title "(a) training loss and error"
    set key top right Right noreverse   # the error curve drops steeply at the TPT
    set label 20 at graph 0.03, 0.06 left  # zero-loss note, if any: away from the key
    plot 1 lt nodraw notitle, \
         for [k=1:(NP_loss > 0)] F using @X:(col("loss")) ls 3 title "loss", \
         for [k=1:(NP_err > 0)] F using @X:(1 - col("acc")) ls 4 title "error 1 − acc", \
         for [k=1:(TPT > 0)] NaN with lines lc rgb C_TPT lw 1.2 dt 3 title "TPT: error = 0", \
         for [k=1:(N_err > 0 && NP_err == 0)] NaN ls 4 title "error ≡ 0", \
         for [k=1:(TH_loss > 0)] TH_loss with lines lc rgb C_K lw 1.5 dt 2 title "loss limit (theory)"
    @RESET

    # (b) NC1 within-class variability collapse
    PL = "nc1 cdnv"; @LOGY
    set title "(b) NC1: within-class variability"
    plot 1 lt nodraw notitle, \
         for [k=1:(NP_nc1 > 0)] F using @X:(col("nc1")) ls 1 title "Tr(Σ_WΣ_B^+)/C", \
         for [k=1:(NP_cdnv > 0)] F using @X:(col("cdnv")) ls 4 title "CDNV"
    @RESET

    # (c) equinorm
    PL = "equinorm_M equinorm_W"; @LOGY
    set title "(c) NC2: equinorm (std/mean of norms)"
    plot 1 lt nodraw notitle, \
         for [k=1:(NP_equinorm_M > 0)] F using @X:(col("equinorm_M")) ls 1 title "class means M", \
         for [k=1:(NP_equinorm_W > 0)] F using @X:(col("equinorm_W")) ls 2 title "classifier W"
    @RESET

    # (d) equiangularity
    PL = "equiangle_M equiangle_W"; @LOGY
    set title "(d) NC2: equiangularity (std of cos)"
    plot 1 lt nodraw notitle, \
         for [k=1:(NP_equiangle_M > 0)] F using @X:(col("equiangle_M")) ls 1 title "M", \
         for [k=1:(NP_equiangle_W > 0)] F using @X:(col("equiangle_W")) ls 2 title "W"
    @RESET

    # (e) maximal angle
    PL = "maxangle_M maxangle_W"; @LOGY
    set title "(e) NC2: max-angle (mean |cos + 1/(C−1)|)"
    plot 1 lt nodraw notitle, \
         for [k=1:(NP_maxangle_M > 0)] F using @X:(col("maxangle_M")) ls 1 title "M", \
         for [k=1:(NP_maxangle_W > 0)] F using @X:(col("maxangle_W")) ls 2 title "W"
    @RESET

    # (f) distance to the simplex ETF
    PL = "etf_M etf_W"; @LOGY
    set title "(f) NC2: distance to simplex ETF"
    plot 1 lt nodraw notitle, \
         for [k=1:(NP_etf_M > 0)] F using @X:(col("etf_M")) ls 1 title "M", \
         for [k=1:(NP_etf_W > 0)] F using @X:(col("etf_W")) ls 2 title "W"
    @RESET

    # (g) NC3 self-duality
    PL = "nc3"; @LOGY
    set xlabel XL offset 0, 0.4 font ",10"
    set title "(g) NC3: self-duality"
    plot 1 lt nodraw notitle, \
         for [k=1:(NP_nc3 > 0)] F using @X:(col("nc3")) ls 3 title "‖W^T/‖W‖ − M/‖M‖‖^2"
    @RESET

    # (h) NC4 nearest-class-centre mismatch: linear y, exact zeros visible
    set title "(h) NC4: mismatch with NCC rule"
    set key top right Right noreverse
    _top = (N_nc4 > 0 && MAX_nc4 > 0) ? 1.08 * MAX_nc4 : 1
    set yrange [-0.03 * _top : _top]
    if (N_nc4 == 0) { set label 20 "no data" at graph 0.5, 0.5 center tc rgb "#666666" }
    plot 0 lt nodraw notitle, \
         for [k=1:(N_nc4 > 0)] F using @X:(col("nc4")) ls 3 title "fraction of samples"
    @RESET

    # (i) norms and gradient norm
    PL = "norm_H norm_W grad_norm th_norm_H th_norm_W"; PZ = "norm_H norm_W grad_norm"; @LOGY
    set title "(i) norms"
    plot 1 lt nodraw notitle, \
         for [k=1:(NP_norm_H > 0)] F using @X:(col("norm_H")) ls 1 title "‖H‖", \
         for [k=1:(NP_norm_W > 0)] F using @X:(col("norm_W")) ls 2 title "‖W‖", \
         for [k=1:(NP_grad_norm > 0)] F using @X:(col("grad_norm")) ls 4 title "‖∇‖ (gradient)", \
         for [k=1:(TH_norm_H > 0)] TH_norm_H with lines lc rgb C_M lw 1.5 dt 2 notitle, \
         for [k=1:(TH_norm_W > 0)] TH_norm_W with lines lc rgb C_W lw 1.5 dt 2 notitle, \
         for [k=1:(TH_norm_H > 0 || TH_norm_W > 0)] NaN with lines lc rgb "#666666" lw 1.5 dt 2 title "limits (theory)"
    @RESET

    unset multiplot
    unset output
    }
}
