# plots/grams.gp -- the final Gram matrices of a ufm run beside their references.
#
# Top row: W W^T, M^T M (centred class means) and W M, each divided by its
# Frobenius norm; bottom row: the same for the SELI geometry of the class
# counts (Thrampoulidis et al. 2022), which is the simplex ETF for balanced
# counts. One colour scale for all six panels.
#
# Usage (ufm run and ufm plot DIR run it):
#   gnuplot -e "data='DIR/grams.tsv'; out_png=...; out_pdf=...; title=...; C=NC" plots/grams.gp
# data: six C x C blocks (index 0..5), two blank lines apart, '#' title lines.

# the directory of this script, for pdfterm.gp
PLOTDIR = ''
do for [_i = strlen(ARG0):1:-1] { if (ARG0[_i:_i] eq '/') { PLOTDIR = ARG0[1:_i]; break } }

if (!exists("data")) { print "grams.gp: set data='FILE'"; exit status 2 }
if (!exists("title")) { title = data }
set encoding utf8
set datafile separator tab
set datafile nocolumnheaders
array T[6] = ["W W^T", "M^T M (centred means)", "W M", "SELI: W W^T = U L U^T", "SELI: M^T M", "SELI: W M"]
# the common colour range: the largest |entry|
stats data matrix using 3 nooutput
R = (abs(STATS_min) > abs(STATS_max) ? abs(STATS_min) : abs(STATS_max))
set cbrange [-R:R]
set palette defined (-1 "#2166ac", -0.5 "#67a9cf", 0 "#f7f7f7", 0.5 "#ef8a62", 1 "#b2182b")
set xrange [-0.5:C - 0.5]
set yrange [C - 0.5:-0.5]
set size ratio -1
set xtics out nomirror scale 0.4 font ",8"
set ytics out nomirror scale 0.4 font ",8"
if (C > 12) { set xtics C/6 + 1; set ytics C/6 + 1 }
set cbtics font ",8"
unset key

do for [out in "png pdf"] {
    if (out eq "png") {
        if (!exists("out_png")) { continue }
        set terminal pngcairo enhanced size 1350,900 font "DejaVu Sans,11"
        set output out_png
    } else {
        if (!exists("out_pdf")) { continue }
        PDF_W = 8; PDF_H = 5.4; PDF_PT = 8; PDF_OPTS = ''
        load PLOTDIR.'pdfterm.gp'
        set output out_pdf
    }
    set multiplot layout 2,3 title sprintf("%s: final Gram matrices (normalised) and their SELI / ETF references", title) noenhanced
    do for [k=0:5] {
        set title T[k+1] noenhanced
        if (k % 3 == 2) { set colorbox } else { unset colorbox }
        plot data index k matrix with image
    }
    unset multiplot
    unset output
}
