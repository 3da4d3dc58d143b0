# plots/grams.gp -- the final Gram matrices of a ufm run beside their references.
#
# Top row: W W^T, M^T M (centred class means) and W M, each divided by its
# Frobenius norm; bottom row: the same for the SELI geometry of the class
# counts (Thrampoulidis et al. 2022), which is the simplex ETF for balanced
# counts. One colour scale for all six panels.
#
# Usage (ufm run and ufm plot DIR run it):
#   gnuplot -e "data='DIR/grams.npy'; SKIP=128; R=...; K=1; C=NC; out_png=...; out_pdf=...; title=..." plots/grams.gp
# data: a float64 .npy of shape (6, C, C), read as raw bytes after its SKIP
# header bytes; R: the colour range [-R, R] (ufm passes the largest |entry|);
# K: draw every K-th row and column (ufm passes ceil(C/300)); KF: the file
# holds every KF-th class of the run (its summary's grams_stride), drawn at
# their class indices.

# the directory of this script, for pdfterm.gp
PLOTDIR = ''
do for [_i = strlen(ARG0):1:-1] { if (ARG0[_i:_i] eq '/') { PLOTDIR = ARG0[1:_i]; break } }

if (!exists("data")) { print "grams.gp: set data='FILE'"; exit status 2 }
if (!exists("title")) { title = data }
set encoding utf8
array T[6] = ["W W^T", "M^T M (centred means)", "W M", "SELI: W W^T = U L U^T", "SELI: M^T M", "SELI: W M"]
if (!exists("SKIP")) { SKIP = 128 }
if (!exists("K")) { K = 1 }
if (!exists("KF")) { KF = 1 }
if (!exists("R")) { R = 1 }
# the common colour range
set cbrange [-R:R]
set palette defined (-1 "#2166ac", -0.5 "#67a9cf", 0 "#f7f7f7", 0.5 "#ef8a62", 1 "#b2182b")
set xrange [-0.5*KF:(C - 0.5)*KF]
set yrange [(C - 0.5)*KF:-0.5*KF]
set size ratio -1
set xtics out nomirror scale 0.4 font ",8"
set ytics out nomirror scale 0.4 font ",8"
if (C*KF > 12) { set xtics C*KF/6 + 1; set ytics C*KF/6 + 1 }
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
    set multiplot layout 2,3 title sprintf("%s: final Gram matrices (normalised) and their SELI / ETF references%s", title, \
        K*KF > 1 ? sprintf("; one class in %d shown", K*KF) : "") noenhanced
    do for [k=0:5] {
        set title T[k+1] noenhanced
        if (k % 3 == 2) { set colorbox } else { unset colorbox }
        plot data binary skip=SKIP + k*C*C*8 array=(C,C) format="%float64" dx=KF dy=KF every K:K with image
    }
    unset multiplot
    unset output
}
