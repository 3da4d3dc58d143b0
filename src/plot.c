/* plot.c -- draws a run's figures by running gnuplot on the scripts in plots/, outputs renamed into place. */
#include "plot.h"
#include "common.h"
#include "fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "geometry.h"
#include "metrics.h"
#include "npy.h"
#include "sweep.h"
#include "theory.h"
#include "version.h" /* ufm_threads */
#include "ufmconf.h" /* autoconf: UFM_GNUPLOT */

#include <math.h>

#ifndef UFM_SRCPLOTDIR
#define UFM_SRCPLOTDIR "plots"
#endif
#ifndef UFM_PLOTDIR
#define UFM_PLOTDIR "/usr/local/share/ufm/plots"
#endif

static int is_dir(const char *p)
{
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

const char *ufm_plot_scriptdir(void)
{
  const char *env = getenv("UFM_PLOTDIR");
  if (env && *env) return env;
  if (is_dir(UFM_SRCPLOTDIR)) return UFM_SRCPLOTDIR;
  return UFM_PLOTDIR;
}

/* gnuplot single-quoted string: a quote is written twice. */
static void gp_quote(char *dst, size_t cap, const char *s)
{
  size_t k = 0;
  if (cap < 3) return;
  dst[k++] = '\'';
  for (; *s && k + 3 < cap; s++) {
    if (*s == '\'') dst[k++] = '\'';
    dst[k++] = *s;
  }
  dst[k++] = '\'';
  dst[k] = '\0';
}

/* Start `gnuplot -e SETUP SCRIPT`: its pid, or -1 if fork failed (a child
 * that cannot exec gnuplot exits 127). */
static pid_t spawn_gnuplot(const char *setup, const char *script)
{
  pid_t pid = fork();
  if (pid == 0) {
    execlp(UFM_GNUPLOT, UFM_GNUPLOT, "-e", setup, script, (char *)NULL);
    execlp("gnuplot", "gnuplot", "-e", setup, script, (char *)NULL);
    _exit(127);
  }
  return pid;
}

/* A growing string of gnuplot assignments: name='value'; ... */
typedef struct {
  char *buf;
  size_t len, cap;
} gpvars;

static void gp_add(gpvars *v, const char *name, const char *value)
{
  size_t need = v->len + strlen(name) + 2 * strlen(value) + 8;
  if (need > v->cap) {
    v->cap = 2 * need;
    v->buf = realloc(v->buf, v->cap);
    if (!v->buf) abort();
  }
  char *q = ufm_malloc(2 * strlen(value) + 3);
  gp_quote(q, 2 * strlen(value) + 3, value);
  v->len += (size_t)sprintf(v->buf + v->len, "%s%s=%s", v->len ? "; " : "", name, q);
  free(q);
}

static void gp_addnum(gpvars *v, const char *name, double x);

/* col_NAME = column number of every metric in metrics.tsv (iter is 1). */
static void gp_addcols(gpvars *v)
{
  for (size_t k = 0; k < UFM_NMETRICS; k++) {
    char name[64];
    snprintf(name, sizeof name, "col_%s", ufm_metric_names[k]);
    gp_addnum(v, name, (double)(k + 2));
  }
}

static void gp_addnum(gpvars *v, const char *name, double x)
{
  char num[64];
  snprintf(num, sizeof num, "%.17g", x);
  size_t need = v->len + strlen(name) + strlen(num) + 8;
  if (need > v->cap) {
    v->cap = 2 * need;
    v->buf = realloc(v->buf, v->cap);
    if (!v->buf) abort();
  }
  v->len += (size_t)sprintf(v->buf + v->len, "%s%s=%s", v->len ? "; " : "", name, num);
}

/* A directory's figures, each one gnuplot process drawing BASE.png and
 * BASE.pdf under temporary names, at most `slots` at a time (ufm's thread
 * count: gnuplot is single-threaded, and the figures of a run are
 * independent). A figure is renamed into place when its gnuplot succeeds;
 * the batch fails with the first failed figure in the order they were
 * queued, whatever order they finish in. */
#define MAXFIG 4
typedef struct {
  char *script, *png, *pdf, *tpng, *tpdf;
  pid_t pid; /* running: > 0; finished or never started: 0 */
  int st;    /* UFM_OK or UFM_EIO */
  char err[UFM_ERRBUF];
} figjob;

typedef struct {
  figjob job[MAXFIG];
  size_t n, running, slots;
  const char *dir;
} figbatch;

static void batch_init(figbatch *b, const char *dir)
{
  memset(b, 0, sizeof *b);
  b->dir = dir;
  int t = ufm_threads();
  b->slots = t > 1 ? (size_t)t : 1;
}

/* Job j is over: no longer running, its temporary files removed (after a
 * successful rename there are none). */
static void job_end(figbatch *b, figjob *j)
{
  j->pid = 0;
  b->running--;
  unlink(j->tpng);
  unlink(j->tpdf);
}

/* Job j's gnuplot exited with wait status ws: rename its figures into place
 * or record why not. */
static void job_done(figbatch *b, figjob *j, int ws)
{
  int rc = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
  if (rc == 127)
    j->st = ufm_fail(j->err, UFM_EIO,
                     "gnuplot not found: install it (apt-get install gnuplot-nox), then draw the "
                     "figures with: ufm plot %s", b->dir);
  else if (rc != 0)
    j->st = ufm_fail(j->err, UFM_EIO, "gnuplot failed (status %d) drawing %s", rc, j->script);
  else if (rename(j->tpng, j->png) != 0 || rename(j->tpdf, j->pdf) != 0)
    j->st = ufm_fail(j->err, UFM_EIO, "%s: cannot rename figure into place: %s", b->dir, strerror(errno));
  job_end(b, j);
}

/* Waits until one running gnuplot has exited, polling only the batch's own
 * children (whoever calls the library may have others, not ours to reap). */
static void batch_wait_one(figbatch *b)
{
  const struct timespec tick = {0, 2000000};
  for (;;) {
    for (size_t k = 0; k < b->n; k++) {
      figjob *j = &b->job[k];
      int ws;
      if (j->pid <= 0) continue;
      pid_t r = waitpid(j->pid, &ws, WNOHANG);
      if (r == j->pid) {
        job_done(b, j, ws);
        return;
      }
      if (r < 0 && errno != EINTR) { /* not waitable: count it as failed */
        j->st = ufm_fail(j->err, UFM_EIO, "%s: lost gnuplot drawing %s: %s", b->dir, j->script,
                         strerror(errno));
        job_end(b, j);
        return;
      }
    }
    nanosleep(&tick, NULL);
  }
}

/* Queue plots/SCRIPT with the variables in v plus out_png/out_pdf, writing
 * DIR/BASE.png and DIR/BASE.pdf; it starts once a slot is free. */
static void draw(figbatch *b, const char *script_name, gpvars *v, const ufm_figure *fig,
                 const char *base)
{
  if (b->n == MAXFIG) abort(); /* a programming error: MAXFIG is the most figures a directory has */
  figjob *j = &b->job[b->n++];
  const char *dir = b->dir;
  if (fig && fig->style == UFM_FIG_PAPER) {
    gp_add(v, "figstyle", "paper");
    gp_addnum(v, "figwidth", fig->width);
  }
  j->script = ufm_path_join(ufm_plot_scriptdir(), script_name);
  size_t n = strlen(dir) + strlen(base) + 48;
  j->png = ufm_malloc(n);
  j->pdf = ufm_malloc(n);
  j->tpng = ufm_malloc(n);
  j->tpdf = ufm_malloc(n);
  snprintf(j->png, n, "%s/%s.png", dir, base);
  snprintf(j->pdf, n, "%s/%s.pdf", dir, base);
  snprintf(j->tpng, n, "%s.tmp.%ld", j->png, (long)getpid());
  snprintf(j->tpdf, n, "%s.tmp.%ld", j->pdf, (long)getpid());
  gp_add(v, "out_png", j->tpng);
  gp_add(v, "out_pdf", j->tpdf);
  j->st = UFM_OK;
  if (access(j->script, R_OK) != 0) {
    j->st = ufm_fail(j->err, UFM_EIO, "%s: plot script not found (set UFM_PLOTDIR)", j->script);
    return;
  }
  while (b->running >= b->slots) batch_wait_one(b);
  j->pid = spawn_gnuplot(v->buf, j->script);
  if (j->pid < 0) {
    j->pid = 0;
    j->st = ufm_fail(j->err, UFM_EIO, "%s: cannot start gnuplot: %s", dir, strerror(errno));
    return;
  }
  b->running++;
}

/* Waits for every queued figure; UFM_OK, or the first failure (in errbuf). */
static int batch_finish(figbatch *b, char *errbuf)
{
  while (b->running > 0) batch_wait_one(b);
  int st = UFM_OK;
  for (size_t k = 0; k < b->n; k++) {
    figjob *j = &b->job[k];
    if (st == UFM_OK && j->st != UFM_OK) {
      st = j->st;
      if (errbuf) snprintf(errbuf, UFM_ERRBUF, "%s", j->err);
    }
    free(j->script);
    free(j->png);
    free(j->pdf);
    free(j->tpng);
    free(j->tpdf);
  }
  b->n = 0;
  return st;
}

/* The class counts a run recorded in its summary.tsv (NULL if absent) and
 * its grams_stride (1 if absent: written before session 12). */
static size_t *run_counts(const char *dir, size_t *ret_C, size_t *stride)
{
  char *path = ufm_path_join(dir, "summary.tsv");
  FILE *fp = fopen(path, "r");
  free(path);
  if (!fp) return NULL;
  char *line = NULL;
  size_t cap = 0, *counts = NULL;
  *stride = 1;
  while (getline(&line, &cap, fp) != -1) {
    if (!strncmp(line, "grams_stride\t", 13)) {
      const size_t k = (size_t)strtoull(line + 13, NULL, 10);
      *stride = k ? k : 1;
    }
    if (strncmp(line, "counts\t", 7)) continue;
    size_t n = 1;
    for (char *c = line + 7; *c; c++) n += *c == ',';
    counts = ufm_malloc(n * sizeof(size_t));
    char *s = line + 7;
    for (size_t k = 0; k < n; k++) {
      counts[k] = (size_t)strtoull(s, &s, 10);
      if (*s == ',') s++;
    }
    *ret_C = n;
  }
  free(line);
  fclose(fp);
  return counts;
}

/* The six Gram matrices of grams.npy (shape (6, C, C)) as heat maps: gnuplot
 * reads the bytes after the header directly; one colour scale, the largest
 * |entry|; above 300 classes every K-th row and column (K = ceil(C/300)),
 * about the pixels a panel has (C = 1000: 0.4 s instead of 13 s). The file
 * holds every KF-th class of the run (its grams_stride), drawn at their
 * class indices. */
static int draw_grams(figbatch *b, const char *path, const char *title, const ufm_figure *fig,
                      size_t KF, char *errbuf)
{
  double *g = NULL;
  int nd = 0;
  size_t sh[UFM_NPY_MAXDIM];
  int st = ufm_npy_read_f8(path, &g, &nd, sh, errbuf);
  if (st != UFM_OK) return st;
  if (nd != 3 || sh[0] != 6 || sh[1] != sh[2] || sh[1] == 0) {
    free(g);
    return ufm_fail(errbuf, UFM_EINVAL, "%s: expected shape (6, C, C)", path);
  }
  const size_t C = sh[1];
  double R = 0.0;
  for (size_t k = 0; k < 6 * C * C; k++)
    if (isfinite(g[k]) && fabs(g[k]) > R) R = fabs(g[k]);
  free(g);
  /* the data are the file's last 6 C^2 doubles (the reader allows no trailing bytes) */
  struct stat sb;
  if (stat(path, &sb) != 0) return ufm_fail(errbuf, UFM_EIO, "%s: %s", path, strerror(errno));
  const double skip = (double)sb.st_size - 48.0 * (double)C * (double)C;
  gpvars h = {0};
  gp_add(&h, "data", path);
  gp_add(&h, "title", title);
  gp_addnum(&h, "C", (double)C);
  gp_addnum(&h, "SKIP", skip);
  gp_addnum(&h, "R", R > 0.0 ? R : 1.0);
  gp_addnum(&h, "K", (double)((C + 299) / 300));
  gp_addnum(&h, "KF", (double)KF);
  draw(b, "grams.gp", &h, fig, "grams");
  free(h.buf);
  return UFM_OK;
}

/* The dashboard; and, when the run recorded its counts, the geometry figure
 * (margins, distances to SELI, minority cosines) and the Gram matrices:
 * drawn side by side (figbatch), each whole or not at all. */
int ufm_plot_run(const char *dir, const char *title, const ufm_figure *fig, char *errbuf)
{
  figbatch b;
  batch_init(&b, dir);
  gpvars v = {0};
  gp_add(&v, "dir", dir);
  gp_add(&v, "title", title);
  /* the predicted limits, if the run has them; '' tells the script there
   * are none (gnuplot 5.4 cannot test for a file without a warning) */
  char *theory = ufm_path_join(dir, "theory.tsv");
  gp_add(&v, "theory", access(theory, R_OK) == 0 ? theory : "");
  free(theory);
  draw(&b, "dashboard.gp", &v, fig, "dashboard");
  free(v.buf);
  int gst = UFM_OK; /* reading grams.npy */
  char gerr[UFM_ERRBUF] = "";
  size_t C = 0, KF = 1, *counts = run_counts(dir, &C, &KF);
  if (counts && C >= 2) {
    double nuc;
    ufm_seli(C, counts, NULL, NULL, NULL, &nuc);
    gpvars g = {0};
    gp_add(&g, "dir", dir);
    gp_add(&g, "title", title);
    gp_addnum(&g, "nmargin_opt", 1.0 / nuc);
    gp_addnum(&g, "C", (double)C);
    gp_addcols(&g);
    draw(&b, "geometry.gp", &g, fig, "geometry");
    free(g.buf);
    char *grams = ufm_path_join(dir, "grams.npy");
    if (access(grams, R_OK) == 0) gst = draw_grams(&b, grams, title, fig, KF, gerr);
    free(grams);
  }
  free(counts);
  int st = batch_finish(&b, errbuf);
  if (st == UFM_OK && gst != UFM_OK) {
    st = gst;
    if (errbuf) snprintf(errbuf, UFM_ERRBUF, "%s", gerr);
  }
  return st;
}

/* ------------------------------------------------------------- sweep figures */

/* The metrics drawn against the swept parameter, in sweep.gp's panel order:
 * the balanced set, and the set for sweeps with imbalanced classes. */
static const char *const sweep_metrics_bal[] = {"nc1",  "etf_W",  "etf_M",  "nc3", "nc4",
                                                "loss", "norm_W", "norm_H", "acc"};
static const char *const sweep_metrics_imb[] = {"mc_cos_W", "mc_dist_W", "seli_W", "seli_H", "etf_W",
                                                "nc1",      "loss",      "norm_W", "acc"};
#define NSWEEPM 9
static const char *const sweep_titles_imb =
    "minority classifiers: mean cosine|minority classifiers: mean ‖w_c - w_c'‖ / mean ‖w‖|classifier W: distance "
    "to SELI|features H: distance to SELI|classifier W: distance to simplex ETF|NC1: "
    "Tr(Σ_WΣ_B^+)/C|final training loss|‖W‖_F|training accuracy";
static const char *const sweep_logy_imb = "0 1 1 1 1 1 1 1 0";

/* Thresholds known in closed form for the first swept key, one per curve
 * (THEORY.md sections 1 and 3), for the dashed marks of sweep.gp; NAN where
 * none applies. Step imbalance, x = ratio R: minority collapse when
 * sqrt(n/R) <= N s with s = sqrt(lambda_W lambda_H), N = K_A n + K_B n/R
 * (counts unrounded); with y = R^{-1/2}: s n K_B y^2 - sqrt(n) y + s n K_A = 0,
 * collapse for y below the smaller root. Balanced, x = lambda_W (lambda_H):
 * the zero solution from C sqrt(n lambda_W lambda_H) = 1 on. */
static double threshold_mark(const char *key, const ufm_config *cfg)
{
  double n = (double)cfg->n, s = sqrt(cfg->lambda_W * cfg->lambda_H), C = (double)cfg->classes;
  if (!strcmp(key, "ratio") && cfg->imbalance == UFM_IMB_STEP && cfg->ncounts == 0 && s > 0) {
    double KA = (double)cfg->majority, KB = C - KA;
    double disc = n - 4 * s * s * n * n * KA * KB;
    if (disc < 0 || KB <= 0) return NAN;
    double y = (sqrt(n) - sqrt(disc)) / (2 * s * n * KB);
    return y > 0 ? 1.0 / (y * y) : NAN;
  }
  int balanced = cfg->imbalance == UFM_IMB_NONE && cfg->ncounts == 0;
  if (balanced && !strcmp(key, "lambda_W") && cfg->lambda_H > 0)
    return 1.0 / (C * C * n * cfg->lambda_H);
  if (balanced && !strcmp(key, "lambda_H") && cfg->lambda_W > 0)
    return 1.0 / (C * C * n * cfg->lambda_W);
  return NAN;
}
static const char *const heat_metrics[] = {"etf_W", "nc1", "etf_M", "nc3"};
#define NHEATM (sizeof heat_metrics / sizeof heat_metrics[0])

/* The sweep's summary.tsv as a table of strings (header row 0). */
typedef struct {
  size_t rows, cols;
  char ***cell;
} table;

static void table_free(table *t)
{
  for (size_t r = 0; r < t->rows; r++) {
    for (size_t c = 0; c < t->cols; c++) free(t->cell[r][c]);
    free(t->cell[r]);
  }
  free(t->cell);
}

static int table_read(table *t, const char *path)
{
  memset(t, 0, sizeof *t);
  FILE *fp = fopen(path, "r");
  if (!fp) return 0;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, fp) != -1) {
    line[strcspn(line, "\n")] = '\0';
    size_t nc = 1;
    for (char *c = line; *c; c++) nc += *c == '\t';
    if (t->rows == 0) t->cols = nc;
    if (nc != t->cols) continue;
    t->cell = realloc(t->cell, (t->rows + 1) * sizeof *t->cell);
    if (!t->cell) abort();
    char **row = ufm_malloc(nc * sizeof(char *)), *p = line;
    for (size_t c = 0; c < nc; c++) {
      size_t len = strcspn(p, "\t");
      row[c] = strndup(p, len);
      p += len + (p[len] == '\t');
    }
    t->cell[t->rows++] = row;
  }
  free(line);
  fclose(fp);
  return t->rows > 0;
}

static long table_col(const table *t, const char *name)
{
  for (size_t c = 0; c < t->cols; c++)
    if (!strcmp(t->cell[0][c], name)) return (long)c;
  return -1;
}

static int all_numeric(char *const *v, size_t n, double *lo, double *hi)
{
  *lo = INFINITY;
  *hi = -INFINITY;
  for (size_t k = 0; k < n; k++) {
    char *end;
    double x = strtod(v[k], &end);
    if (*end != '\0' || !isfinite(x)) return 0;
    *lo = fmin(*lo, x);
    *hi = fmax(*hi, x);
  }
  return 1;
}

/* Join strings with a separator into a new string. */
static char *join(char *const *v, size_t n, const char *sep)
{
  size_t len = 1;
  for (size_t k = 0; k < n; k++) len += strlen(v[k]) + strlen(sep);
  char *s = ufm_calloc(len, 1);
  for (size_t k = 0; k < n; k++) {
    if (k) strcat(s, sep);
    strcat(s, v[k]);
  }
  return s;
}

int ufm_plot_sweep(const ufm_sweep *sw, const char *dir, const ufm_figure *fig_or_null, char *errbuf)
{
  if (sw->naxes == 0) return UFM_OK; /* seeds only: nothing to draw against */
  ufm_figure figbuf = {UFM_FIG_SCREEN, UFM_FIG_PAGE_IN};
  const ufm_figure *fig = fig_or_null;
  if (!fig) {
    ufm_config *c0;
    if (ufm_sweep_point_config(sw, 0, &c0, NULL) == UFM_OK) {
      figbuf.style = c0->figure_style;
      figbuf.width = c0->figure_width;
      ufm_config_free(c0);
    }
    fig = &figbuf;
  }
  char *sumpath = ufm_path_join(dir, "summary.tsv");
  table t;
  int ok = table_read(&t, sumpath);
  free(sumpath);
  if (!ok) return ufm_fail(errbuf, UFM_EIO, "%s: no readable summary.tsv", dir);
  const ufm_axis *ax = &sw->axes[0];
  figbatch b;
  batch_init(&b, dir);
  size_t ngroups = 1;
  for (size_t a = 1; a < sw->naxes; a++) ngroups *= sw->axes[a].n;
  int st = UFM_OK;
  if (t.rows != 1 + ax->n * ngroups) {
    table_free(&t);
    return ufm_fail(errbuf, UFM_EIO, "%s: summary.tsv has %zu rows, the sweep %zu", dir, t.rows - 1,
                    ax->n * ngroups);
  }

  /* sweep-plot.tsv: one block per group (two blank lines between blocks):
   * x, then mean and std of each metric */
  /* imbalanced sweeps draw the minority / SELI panels */
  const char *const *sweep_metrics = sweep_metrics_bal;
  int imbalanced = 0;
  char marks[4096] = "";
  size_t stride = sw->seeds;
  for (size_t a = 1; a < sw->naxes; a++) stride *= sw->axes[a].n;
  for (size_t g = 0; g < ngroups; g++) {
    ufm_config *cfg;
    if (ufm_sweep_point_config(sw, g * sw->seeds, &cfg, NULL) != UFM_OK) continue;
    for (size_t c = 1; c < cfg->classes; c++) imbalanced |= cfg->counts[c] != cfg->counts[0];
    double x = threshold_mark(ax->key, cfg);
    size_t len = strlen(marks);
    snprintf(marks + len, sizeof marks - len, "%s%.17g", g ? " " : "", x);
    ufm_config_free(cfg);
    /* an imbalanced point anywhere on the grid counts */
    for (size_t i = 1; i < ax->n && !imbalanced; i++)
      if (ufm_sweep_point_config(sw, i * stride + g * sw->seeds, &cfg, NULL) == UFM_OK) {
        for (size_t c = 1; c < cfg->classes; c++) imbalanced |= cfg->counts[c] != cfg->counts[0];
        ufm_config_free(cfg);
      }
  }
  if (imbalanced) sweep_metrics = sweep_metrics_imb;
  double lo, hi;
  int numx = all_numeric(ax->vals, ax->n, &lo, &hi);
  int logx = numx && lo > 0 && (ax->geometric || hi / lo >= 100);
  char *data = ufm_path_join(dir, "sweep-plot.tsv");
  ufm_afile af;
  if ((st = ufm_afile_open(&af, data, errbuf)) == UFM_OK) {
    fputs("# x", af.fp); /* a comment: gnuplot would take a header for every block's first row */
    for (size_t m = 0; m < NSWEEPM; m++) fprintf(af.fp, "\t%s_mean\t%s_std", sweep_metrics[m], sweep_metrics[m]);
    for (size_t m = 0; m < NSWEEPM; m++) fprintf(af.fp, "\t%s_theory", sweep_metrics[m]);
    fputc('\n', af.fp);
    for (size_t g = 0; g < ngroups; g++) {
      if (g) fputs("\n\n", af.fp);
      for (size_t i = 0; i < ax->n; i++) {
        char **row = t.cell[1 + i * ngroups + g];
        if (numx) fputs(ax->vals[i], af.fp);
        else fprintf(af.fp, "%zu", i);
        for (size_t m = 0; m < NSWEEPM; m++) {
          char name[64];
          snprintf(name, sizeof name, "%s_mean", sweep_metrics[m]);
          long c = table_col(&t, name);
          fprintf(af.fp, "\t%s\t%s", c >= 0 ? row[c] : "nan", c >= 0 ? row[c + 1] : "nan");
        }
        /* the closed-form prediction at this point, where one exists (ufm theory) */
        ufm_config *cfg;
        ufm_theory *th = NULL;
        if (ufm_sweep_point_config(sw, (i * ngroups + g) * sw->seeds, &cfg, NULL) == UFM_OK) {
          th = ufm_theory_for_config(cfg);
          ufm_config_free(cfg);
        }
        for (size_t m = 0; m < NSWEEPM; m++) {
          double v;
          if (th && ufm_theory_get(th, sweep_metrics[m], &v)) fprintf(af.fp, "\t%.17g", v);
          else fputs("\tnan", af.fp);
        }
        if (th) ufm_theory_free(th);
        fputc('\n', af.fp);
      }
    }
    st = ufm_afile_commit(&af, errbuf);
  }
  /* group titles: the other axes' values, "key=v,key2=w" */
  char **gt = ufm_calloc(ngroups, sizeof(char *));
  for (size_t g = 0; g < ngroups; g++) {
    char buf[512] = "";
    size_t r = g;
    for (size_t a = sw->naxes; a-- > 1;) {
      size_t i = r % sw->axes[a].n;
      r /= sw->axes[a].n;
      char part[256];
      snprintf(part, sizeof part, "%s=%s%s", sw->axes[a].key, sw->axes[a].vals[i], buf[0] ? "," : "");
      memmove(buf + strlen(part), buf, strlen(buf) + 1);
      memcpy(buf, part, strlen(part));
    }
    gt[g] = strdup(sw->naxes > 1 ? buf : "mean");
  }
  char *gtitles = join(gt, ngroups, " "), *xlabels = join(ax->vals, ax->n, " ");
  if (st == UFM_OK) {
    gpvars v = {0};
    gp_add(&v, "data", data);
    gp_add(&v, "title", sw->name);
    gp_add(&v, "xlabel", ax->key);
    gp_addnum(&v, "logx", logx);
    gp_addnum(&v, "numx", numx);
    gp_add(&v, "xtlabels", xlabels);
    gp_addnum(&v, "ngroups", (double)ngroups);
    gp_add(&v, "gtitles", gtitles);
    gp_addnum(&v, "nseeds", (double)sw->seeds);
    if (numx) gp_add(&v, "vmarks", marks);
    if (imbalanced) {
      char *mlist = join((char *const *)sweep_metrics, NSWEEPM, " ");
      gp_add(&v, "metrics", mlist);
      gp_add(&v, "titles", sweep_titles_imb);
      gp_add(&v, "logy", sweep_logy_imb);
      free(mlist);
    }
    draw(&b, "sweep.gp", &v, fig, "sweep");
    free(v.buf);
  }
  /* the runs' metrics against iteration, one curve per point, for small sweeps */
  if (st == UFM_OK && sw->npoints <= 12) {
    char **dirs = ufm_calloc(sw->npoints, sizeof(char *)), **names = ufm_calloc(sw->npoints, sizeof(char *));
    size_t *idx = ufm_calloc(sw->naxes + 1, sizeof(size_t)), rep;
    for (size_t k = 0; k < sw->npoints; k++) {
      char name[32], label[512] = "";
      snprintf(name, sizeof name, "p%04zu", k);
      dirs[k] = strdup(name);
      ufm_sweep_point_coords(sw, k, idx, &rep);
      for (size_t a = 0; a < sw->naxes; a++) {
        size_t len = strlen(label);
        snprintf(label + len, sizeof label - len, "%s%s=%s", a ? "," : "", sw->axes[a].key, sw->axes[a].vals[idx[a]]);
      }
      if (sw->seeds > 1) {
        size_t len = strlen(label);
        snprintf(label + len, sizeof label - len, "%sseed+%zu", sw->naxes ? "," : "", rep);
      }
      names[k] = strdup(label);
    }
    char *dl = join(dirs, sw->npoints, " "), *nl = join(names, sw->npoints, " ");
    gpvars v = {0};
    gp_add(&v, "dir", dir);
    gp_add(&v, "title", sw->name);
    gp_add(&v, "points", dl);
    gp_add(&v, "labels", nl);
    gp_addcols(&v);
    draw(&b, "dynamics.gp", &v, fig, "dynamics");
    free(v.buf);
    free(dl);
    free(nl);
    for (size_t k = 0; k < sw->npoints; k++) {
      free(dirs[k]);
      free(names[k]);
    }
    free(dirs);
    free(names);
    free(idx);
  }
  /* a heat map over the first two axes when there are exactly two */
  if (st == UFM_OK && sw->naxes == 2) {
    const ufm_axis *ay = &sw->axes[1];
    char *heat = ufm_path_join(dir, "sweep-heat.tsv");
    if ((st = ufm_afile_open(&af, heat, errbuf)) == UFM_OK) {
      fputs("# i\tj", af.fp);
      for (size_t m = 0; m < NHEATM; m++) fprintf(af.fp, "\t%s", heat_metrics[m]);
      fputc('\n', af.fp);
      for (size_t i = 0; i < ax->n; i++) {
        for (size_t j = 0; j < ay->n; j++) {
          char **row = t.cell[1 + i * ay->n + j];
          fprintf(af.fp, "%zu\t%zu", i, j);
          for (size_t m = 0; m < NHEATM; m++) {
            char name[64];
            snprintf(name, sizeof name, "%s_mean", heat_metrics[m]);
            long c = table_col(&t, name);
            fprintf(af.fp, "\t%s", c >= 0 ? row[c] : "nan");
          }
          fputc('\n', af.fp);
        }
        fputc('\n', af.fp);
      }
      st = ufm_afile_commit(&af, errbuf);
    }
    if (st == UFM_OK) {
      char *ylabels = join(ay->vals, ay->n, " ");
      gpvars v = {0};
      gp_add(&v, "data", heat);
      gp_add(&v, "title", sw->name);
      gp_add(&v, "xlabel", ax->key);
      gp_add(&v, "ylabel", ay->key);
      gp_add(&v, "xtlabels", xlabels);
      gp_add(&v, "ytlabels", ylabels);
      gp_addnum(&v, "nx", (double)ax->n);
      gp_addnum(&v, "ny", (double)ay->n);
      draw(&b, "heatmap.gp", &v, fig, "heatmap");
      free(v.buf);
      free(ylabels);
    }
    free(heat);
  }
  /* the data files' failure first: nothing after it was queued */
  int fst = batch_finish(&b, st == UFM_OK ? errbuf : NULL);
  if (st == UFM_OK) st = fst;
  for (size_t g = 0; g < ngroups; g++) free(gt[g]);
  free(gt);
  free(gtitles);
  free(xlabels);
  free(data);
  table_free(&t);
  return st;
}
