/* plot.h -- figures: run the gnuplot scripts of plots/ on a run directory. */
#ifndef UFM_PLOT_H
#define UFM_PLOT_H

/* The directory holding the gnuplot scripts: $UFM_PLOTDIR, else the source
 * tree's plots/ (an uninstalled build), else the installed pkgdatadir. */
const char *ufm_plot_scriptdir(void);

/* How the PDF figures are drawn (experiment keys figure_style and
 * figure_width): screen, or paper = vector PDF of the given width in inches
 * with LaTeX's Latin Modern face, fonts scaled with the width. PNGs are
 * always drawn for the screen. */
typedef struct {
  int style; /* UFM_FIG_SCREEN or UFM_FIG_PAPER (config.h) */
  double width;
} ufm_figure;

/* Draw the dashboard of run directory `dir` (its metrics.tsv) into
 * dir/dashboard.png and dir/dashboard.pdf, and the geometry and Gram
 * figures, each written whole or not at all, one gnuplot per figure and as
 * many at a time as ufm_threads(). UFM_OK; UFM_EIO when gnuplot is missing
 * or fails (the first such figure in errbuf; the others are still drawn). */
int ufm_plot_run(const char *dir, const char *title, const ufm_figure *fig, char *errbuf);

struct ufm_sweep;

/* Draw a sweep directory's figures from its summary.tsv: sweep.png/.pdf,
 * the final metrics against the first swept key (one curve per value of the
 * others, error bars over seeds, log x for geometric grids), and for
 * two-key sweeps heatmap.png/.pdf. Writes the data files sweep-plot.tsv and
 * sweep-heat.tsv beside them. fig NULL: the style of the sweep's settings. */
int ufm_plot_sweep(const struct ufm_sweep *sw, const char *dir, const ufm_figure *fig, char *errbuf);

#endif
