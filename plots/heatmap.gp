# plots/heatmap.gp -- final metrics of a two-key ufm sweep as heat maps.
#
# Two panels, log10 of the final etf_W and of NC1 (means over seeds) over the
# grid of the two swept keys, values as written on the axes.
#
# Usage (ufm plot DIR runs it):
#   gnuplot -e "data='DIR/sweep-heat.tsv'; out_png=...; out_pdf=...; title=...;
#               xlabel='KEY1'; ylabel='KEY2'; xtlabels='...'; ytlabels='...';
#               nx=NX; ny=NY" plots/heatmap.gp
# data: a '#' header line, then rows i j etf_W nc1 etf_M nc3 (i, j grid indices), a blank
# line after each i.

# the directory of this script, for pdfterm.gp
PLOTDIR = ''
do for [_i = strlen(ARG0):1:-1] { if (ARG0[_i:_i] eq '/') { PLOTDIR = ARG0[1:_i]; break } }

if (!exists("data")) { print "heatmap.gp: set data='FILE'"; exit status 2 }
if (!exists("title")) { title = data }
set encoding utf8
set datafile separator tab
set datafile nocolumnheaders

lg(c) = (valid(c) && column(c) > 0) ? log10(column(c)) : -17
# whole decades on the colour bar when the values span several
# colour range: whole decades around the data, so that the colour-bar tics
# are powers of ten with integer exponents (every 1, 2 or 3 decades)
array CBLO[2]
array CBHI[2]
array CBSTEP[2]
do for [k=1:2] {
    stats data using (lg(k + 2)) nooutput
    CBLO[k] = floor(STATS_min + 1e-9)
    CBHI[k] = ceil(STATS_max - 1e-9)
    if (CBHI[k] <= CBLO[k]) { CBHI[k] = CBLO[k] + 1 }
    CBSTEP[k] = (CBHI[k] - CBLO[k] > 12) ? 3 : (CBHI[k] - CBLO[k] > 6) ? 2 : 1
}

set xtics () out nomirror scale 0.5 font ",9"
set ytics () out nomirror scale 0.5 font ",9"
do for [i=1:words(xtlabels)] { set xtics add (word(xtlabels, i) i - 1) }
do for [j=1:words(ytlabels)] { set ytics add (word(ytlabels, j) j - 1) }
set xrange [-0.5:nx - 0.5]
set yrange [-0.5:ny - 0.5]
set border 15
# viridis-like
set palette defined (0 "#440154", 1 "#3b528b", 2 "#21918c", 3 "#5ec962", 4 "#fde725")
set cbtics out font ",9"
set format cb "10^{%.0f}"
set xlabel xlabel noenhanced
set ylabel ylabel noenhanced

do for [out in "png pdf"] {
    if (out eq "png") {
        if (!exists("out_png")) { continue }
        set terminal pngcairo enhanced size 1400,620 font "DejaVu Sans,11"
        set output out_png
    } else {
        if (!exists("out_pdf")) { continue }
        PDF_W = 9; PDF_H = 4; PDF_PT = 8; PDF_OPTS = ''
        load PLOTDIR.'pdfterm.gp'
        set output out_pdf
    }
    set multiplot layout 1,2 title sprintf("%s: final values over %s x %s", title, xlabel, ylabel) noenhanced
    set title "classifier W: distance to simplex ETF (etf\\_W)"
    set cbrange [CBLO[1]:CBHI[1]]; set cbtics CBSTEP[1]
    plot data using 1:2:(lg(3)) with image notitle
    set title "NC1: Tr(Σ_WΣ_B^+)/C"
    set cbrange [CBLO[2]:CBHI[2]]; set cbtics CBSTEP[2]
    plot data using 1:2:(lg(4)) with image notitle
    unset multiplot
    unset output
}
