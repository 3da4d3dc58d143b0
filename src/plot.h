/* plot.h -- figures: run the gnuplot scripts of plots/ on a run directory. */
#ifndef UFM_PLOT_H
#define UFM_PLOT_H

/* The directory holding the gnuplot scripts: $UFM_PLOTDIR, else the source
 * tree's plots/ (an uninstalled build), else the installed pkgdatadir. */
const char *ufm_plot_scriptdir(void);

/* Draw the dashboard of run directory `dir` (its metrics.tsv) into
 * dir/dashboard.png and dir/dashboard.pdf, each written whole or not at all.
 * UFM_OK; UFM_EIO when gnuplot is missing or fails (message in errbuf). */
int ufm_plot_run(const char *dir, const char *title, char *errbuf);

#endif
