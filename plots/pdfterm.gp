# plots/pdfterm.gp -- the PDF terminal of every ufm figure (loaded by the
# other scripts just before their PDF pass).
#
# In:  PDF_W, PDF_H   the figure's screen size in inches
#      PDF_PT         its base font size in points at that size
#      PDF_OPTS       further pdfcairo options (linewidth, pointscale, ...)
#      figstyle       'screen' (default) or 'paper'
#      figwidth       the paper width in inches (ufm: figure_width)
#
# screen: DejaVu Sans at PDF_W x PDF_H, as on the PNGs.
# paper:  the same layout scaled to figwidth (height in proportion), in
#         Latin Modern Roman, the face of LaTeX documents, so that the
#         figure's text matches the paper's. The base font becomes PAPER_PT
#         points (default 7: a caption-sized face beside 10 pt body text)
#         and every other font of the script (the ",9"-style sizes) keeps its
#         proportion to it, through pdfcairo's fontscale. (gnuplot 5.4's
#         cairo PDF draws a font of nominal size s at s * fontscale * 4/3
#         points -- it assumes 96 dpi -- and its default fontscale is 0.5:
#         measured with pdftotext -bbox. The screen PDFs rely on that.)
if (exists("figstyle") && figstyle eq "paper") {
    _pw = 1.0 * (exists("figwidth") ? figwidth : PDF_W)
    _ps = _pw / (1.0 * PDF_W)
    _pf = (exists("PAPER_PT") ? PAPER_PT : 7.0) / (PDF_PT * 4.0 / 3.0)
    eval sprintf('set terminal pdfcairo enhanced color size %.4fin,%.4fin font "Latin Modern Roman,%g" fontscale %.4f %s', \
                 _pw, PDF_H * _ps, PDF_PT, _pf, PDF_OPTS)
} else {
    eval sprintf('set terminal pdfcairo enhanced color size %gin,%gin font "DejaVu Sans,%g" %s', \
                 PDF_W, PDF_H, PDF_PT, PDF_OPTS)
}
