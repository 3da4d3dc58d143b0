/* run.c -- the loop that owns a run: initialise, evaluate, log, checkpoint, step, save.
 *
 * Contents: 1. state files  2. the log schedule and metrics.tsv
 *           3. summary.tsv  4. the run (with checkpoints and stop signals)
 */
#include "run.h"
#include "checkpoint.h"
#include "common.h"
#include "constraint.h"
#include "fileio.h"
#include "grad.h"
#include "interrupt.h"
#include "metrics.h"
#include "npy.h"
#include "optim.h"
#include "plot.h"
#include "progress.h"
#include "theory.h"
#include "version.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Normalised GD stops here (status converged, with a message). */
#define UFM_LOSS_FLOOR 1e-290

/* -------------------------------------------------------------- 1. state files */

static int load_block(const char *dir, const char *name, size_t ndim, const size_t *shape,
                      double *dst, int optional, char *errbuf)
{
  char *path = ufm_path_join(dir, name);
  double *data = NULL;
  int nd = 0;
  size_t sh[UFM_NPY_MAXDIM];
  int st;
  if (optional && access(path, F_OK) != 0) {
    free(path);
    return UFM_OK;
  }
  st = ufm_npy_read_f8(path, &data, &nd, sh, errbuf);
  if (st == UFM_EIO) st = UFM_EINVAL; /* a missing input file is bad input */
  if (st == UFM_OK) {
    int same = (size_t)nd == ndim;
    for (size_t k = 0; same && k < ndim; k++) same = sh[k] == shape[k];
    if (!same) {
      char got[128] = "", want[128] = "";
      for (int k = 0; k < nd; k++)
        snprintf(got + strlen(got), sizeof got - strlen(got), "%s%zu", k ? "," : "", sh[k]);
      for (size_t k = 0; k < ndim; k++)
        snprintf(want + strlen(want), sizeof want - strlen(want), "%s%zu", k ? "," : "", shape[k]);
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: shape (%s) but the experiment needs (%s)", path, got, want);
    }
  }
  if (st == UFM_OK) {
    size_t n = 1;
    for (size_t k = 0; k < ndim; k++) n *= shape[k];
    for (size_t k = 0; k < n; k++)
      if (!isfinite(data[k])) {
        st = ufm_fail(errbuf, UFM_EINVAL, "%s: entry %zu is not finite", path, k);
        break;
      }
    if (st == UFM_OK) memcpy(dst, data, n * sizeof(double));
  }
  free(data);
  free(path);
  return st;
}

int ufm_state_load(ufm_model *m, const char *dir, char *errbuf)
{
  size_t sW[2] = {m->C, m->p}, sH[2] = {m->p, m->N}, sb[1] = {m->C};
  int st = load_block(dir, "W.npy", 2, sW, m->W->data, 0, errbuf);
  if (st == UFM_OK) st = load_block(dir, "H.npy", 2, sH, m->H->data, 0, errbuf);
  if (st == UFM_OK && m->bias) st = load_block(dir, "b.npy", 1, sb, m->b->data, 1, errbuf);
  return st;
}

int ufm_state_save(const ufm_model *m, const char *dir, char *errbuf)
{
  size_t sW[2] = {m->C, m->p}, sH[2] = {m->p, m->N}, sb[1] = {m->C}, sl[1] = {m->N};
  struct { const char *name; const double *d; int nd; size_t *s; } blocks[] = {
      {"W.npy", m->W->data, 2, sW}, {"H.npy", m->H->data, 2, sH}, {"b.npy", m->b->data, 1, sb}};
  for (size_t k = 0; k < 3; k++) {
    char *path = ufm_path_join(dir, blocks[k].name);
    int st = ufm_npy_write_f8(path, blocks[k].d, blocks[k].nd, blocks[k].s, errbuf);
    free(path);
    if (st != UFM_OK) return st;
  }
  char *path = ufm_path_join(dir, "labels.npy");
  int st = ufm_npy_write_i4(path, m->labels, 1, sl, errbuf);
  free(path);
  return st;
}

/* ------------------------------------------- 2. the log schedule and metrics.tsv */

static int cmp_ulong(const void *a, const void *b)
{
  unsigned long x = *(const unsigned long *)a, y = *(const unsigned long *)b;
  return (x > y) - (x < y);
}

size_t ufm_log_schedule(unsigned long T, size_t L, unsigned long **ret_its)
{
  unsigned long *its = ufm_malloc((L + 2) * sizeof *its);
  size_t n = 0;
  its[n++] = 0;
  its[n++] = T;
  for (size_t j = 0; j < L && T > 0; j++) {
    double e = L > 1 ? (double)j / (double)(L - 1) : 1.0;
    double v = floor(pow((double)T, e) + 0.5);
    its[n++] = v > (double)T ? T : (unsigned long)v;
  }
  qsort(its, n, sizeof *its, cmp_ulong);
  size_t u = 0;
  for (size_t k = 0; k < n; k++)
    if (u == 0 || its[k] != its[u - 1]) its[u++] = its[k];
  *ret_its = its;
  return u;
}

typedef struct {
  size_t rows, cap;
  unsigned long *iter;
  double *v; /* rows x UFM_NMETRICS */
} mtable;

static void mtable_add(mtable *t, unsigned long it, const double *vals)
{
  if (t->rows == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 64;
    t->iter = realloc(t->iter, t->cap * sizeof *t->iter);
    t->v = realloc(t->v, t->cap * UFM_NMETRICS * sizeof *t->v);
    if (!t->iter || !t->v) {
      fprintf(stderr, "ufm: out of memory\n");
      abort();
    }
  }
  t->iter[t->rows] = it;
  memcpy(t->v + t->rows * UFM_NMETRICS, vals, UFM_NMETRICS * sizeof *vals);
  t->rows++;
}

/* The whole table, rewritten atomically at every log point, so metrics.tsv
 * is always complete up to the last logged iteration. */
static int mtable_write(const mtable *t, const char *dir, char *errbuf)
{
  ufm_afile af;
  int st = ufm_afile_open_in(&af, dir, "metrics.tsv", errbuf);
  if (st != UFM_OK) return st;
  fputs("iter", af.fp);
  for (size_t k = 0; k < UFM_NMETRICS; k++) fprintf(af.fp, "\t%s", ufm_metric_names[k]);
  fputc('\n', af.fp);
  for (size_t r = 0; r < t->rows; r++) {
    fprintf(af.fp, "%lu", t->iter[r]);
    for (size_t k = 0; k < UFM_NMETRICS; k++) fprintf(af.fp, "\t%.17g", t->v[r * UFM_NMETRICS + k]);
    fputc('\n', af.fp);
  }
  return ufm_afile_commit(&af, errbuf);
}

/* ------------------------------------------------------------------ 3. summary */

typedef struct {
  const char *status;
  unsigned long iterations;
  double seconds;
  const double *final; /* UFM_NMETRICS, or NULL */
  size_t rank;
  const char *message;
  const ufm_theory *theory; /* predictions, for NAME_theory / NAME_gap lines */
  size_t grams_stride;      /* grams.npy holds every K-th class (0: not written) */
} run_result;

static int write_summary(const ufm_config *cfg, const ufm_model *m, const run_result *r,
                         const char *dir, char *errbuf)
{
  ufm_afile af;
  int st = ufm_afile_open_in(&af, dir, "summary.tsv", errbuf);
  if (st != UFM_OK) return st;
  FILE *fp = af.fp;
  fprintf(fp, "status\t%s\n", r->status);
  if (r->message) fprintf(fp, "message\t%s\n", r->message);
  fprintf(fp, "iterations\t%lu\n", r->iterations);
  fprintf(fp, "wall_time\t%.6f\n", r->seconds);
  fprintf(fp, "iters_per_sec\t%.6g\n", r->seconds > 0 ? (double)r->iterations / r->seconds : 0.0);
  fprintf(fp, "classes\t%zu\ndim\t%zu\nsamples\t%zu\ncounts\t", m->C, m->p, m->N);
  for (size_t c = 0; c < m->C; c++) fprintf(fp, c ? ",%zu" : "%zu", m->counts[c]);
  fprintf(fp, "\nrank_M\t%zu\n", r->rank);
  if (r->grams_stride) fprintf(fp, "grams_stride\t%zu\n", r->grams_stride);
  if (r->final)
    for (size_t k = 0; k < UFM_NMETRICS; k++)
      fprintf(fp, "%s\t%.17g\n", ufm_metric_names[k], r->final[k]);
  if (r->final && r->theory) ufm_theory_summary(r->theory, ufm_metric_names, r->final, UFM_NMETRICS, fp);
  fprintf(fp, "threads\t%d\nblas\t%s\nversion\t%s\n", ufm_threads(), ufm_blas_name(), PACKAGE_VERSION);
  (void)cfg;
  return ufm_afile_commit(&af, errbuf);
}

/* grams.npy's stride K for C classes: every class up to grams_classes,
 * else every K-th, K = ceil(C / grams_classes); 0: no grams.npy */
static size_t grams_stride(size_t C, size_t grams_classes)
{
  return grams_classes ? (C + grams_classes - 1) / grams_classes : 0;
}

/* The final state's per-class norms (perclass.tsv) and its normalised Gram
 * matrices beside their SELI/ETF references (grams.npy, shape (6, C', C'):
 * W W^T, M^T M, W M, then their references, in that order; the classes 0,
 * K, 2K, ..., C' = ceil(C/K), K = stride, so that at most grams_classes
 * are kept: the six 5000 x 5000 matrices were 1.2 GB, 2.8 s to form and
 * 3.2 s to write; none with stride 0). */
static int write_geometry(const ufm_model *m, const ufm_metrics_ws *mw, const char *dir,
                          size_t stride, char *errbuf)
{
  const size_t C = m->C;
  double *wn = ufm_malloc(C * sizeof(double)), *mn = ufm_malloc(C * sizeof(double));
  ufm_metrics_class_norms(mw, wn, mn);
  ufm_afile af;
  int st = ufm_afile_open_in(&af, dir, "perclass.tsv", errbuf);
  if (st == UFM_OK) {
    fputs("class\tn\tw_norm\tmean_norm\tb\n", af.fp);
    for (size_t c = 0; c < C; c++)
      fprintf(af.fp, "%zu\t%zu\t%.17g\t%.17g\t%.17g\n", c, m->counts[c], wn[c], mn[c],
              gsl_vector_get(m->b, c));
    st = ufm_afile_commit(&af, errbuf);
  }
  free(wn);
  free(mn);
  if (st != UFM_OK || stride == 0) return st;
  /* the six matrices side by side in one (6, C', C') array: 48 MB at C' =
   * 1000, written as bytes (as text it was 100 MB and 3 s of printf) */
  const size_t nk = (C + stride - 1) / stride;
  double *buf = malloc(6 * nk * nk * sizeof(double));
  if (!buf) return ufm_fail(errbuf, UFM_ENOMEM, "out of memory for the Gram matrices (%zu classes)", nk);
  gsl_matrix_view g[6];
  for (int k = 0; k < 6; k++) g[k] = gsl_matrix_view_array(buf + (size_t)k * nk * nk, nk, nk);
  ufm_metrics_grams(mw, m, stride, &g[0].matrix, &g[1].matrix, &g[2].matrix, &g[3].matrix,
                    &g[4].matrix, &g[5].matrix);
  char *path = ufm_path_join(dir, "grams.npy");
  const size_t shape[3] = {6, nk, nk};
  st = ufm_npy_write_f8(path, buf, 3, shape, errbuf);
  free(path);
  free(buf);
  return st;
}

/* The layer-peeled model: project onto the norm constraints after each step. */
static void apply_constraints(const ufm_config *cfg, ufm_model *m)
{
  if (cfg->constraint_W > 0) ufm_project_W(m, cfg->constraint_W);
  if (cfg->constraint_H > 0) ufm_project_H(m, cfg->constraint_H);
}

/* -------------------------------------------------------------------- 4. the run */

/* The theory's C x C matrices (4 C^2 doubles: 31 MiB at C = 1000) are in
 * the theory files once written; the summary needs only its numbers. */
static void theory_drop_matrices(ufm_theory *th)
{
  if (!th) return;
  free(th->WWt);
  free(th->gram_mu);
  free(th->gram_M);
  free(th->logits);
  th->WWt = th->gram_mu = th->gram_M = th->logits = NULL;
}

/* An existing directory holding a run is only replaced with --force. */
static int prepare_outdir(const char *out, int force, char *errbuf)
{
  struct stat sb;
  if (stat(out, &sb) == 0) {
    if (!S_ISDIR(sb.st_mode))
      return ufm_fail(errbuf, UFM_EINVAL, "out: %s exists and is not a directory", out);
    if (ufm_dir_is_foreign(out))
      return ufm_fail(errbuf, UFM_EINVAL, "out: %s is a directory holding files that are not a ufm "
                      "run; ufm writes only into a new or empty directory or an earlier run's "
                      "(even with --force); give another out=DIR", out);
    char *cfgp = ufm_path_join(out, "config.ini"), *met = ufm_path_join(out, "metrics.tsv");
    char *swp = ufm_path_join(out, "sweep.ini");
    int holds_run = access(cfgp, F_OK) == 0 || access(met, F_OK) == 0 || access(swp, F_OK) == 0;
    free(cfgp);
    free(met);
    free(swp);
    if (holds_run && !force)
      return ufm_fail(errbuf, UFM_EINVAL,
                      "out: %s already holds a run; give --force to overwrite it, or out=DIR", out);
  }
  return ufm_mkdirs(out, errbuf);
}

static int write_config(const ufm_config *cfg, const char *dir, char *errbuf)
{
  ufm_afile af;
  int st = ufm_afile_open_in(&af, dir, "config.ini", errbuf);
  if (st != UFM_OK) return st;
  ufm_config_write(cfg, af.fp);
  return ufm_afile_commit(&af, errbuf);
}

/* Remove the outputs of an earlier run that this one will not rewrite. */
static void clear_old_outputs(const char *dir)
{
  const char *names[] = {"metrics.tsv", "summary.tsv", "W.npy",        "H.npy",
                         "b.npy",       "labels.npy",  "perclass.tsv", "grams.npy",
                         "grams.tsv" /* written before session 4 */,
                         "dashboard.png", "dashboard.pdf", "geometry.png", "geometry.pdf",
                         "grams.png",   "grams.pdf",   "theory.tsv"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    char *p = ufm_path_join(dir, names[k]);
    unlink(p);
    free(p);
  }
  ufm_ckpt_remove(dir);
}

/* status of a finished run (its summary.tsv, written last), or NULL. */
static char *finished_status(const char *dir)
{
  char *path = ufm_path_join(dir, "summary.tsv");
  FILE *fp = fopen(path, "r");
  free(path);
  if (!fp) return NULL;
  char line[256], *status = NULL;
  while (!status && fgets(line, sizeof line, fp))
    if (!strncmp(line, "status\t", 7)) status = strndup(line + 7, strcspn(line + 7, "\n"));
  fclose(fp);
  return status;
}

/* Save the metrics so far and the whole state as dir/checkpoint. */
static int checkpoint_now(const ufm_config *cfg, const ufm_model *m, const ufm_optim *opt,
                          const mtable *tab, unsigned long t, size_t next, double seconds,
                          size_t rank, char *errbuf)
{
  int st = mtable_write(tab, cfg->out, errbuf);
  if (st != UFM_OK) return st;
  ufm_ckpt ck = {t, next, seconds, rank, tab->rows, tab->iter, tab->v};
  st = ufm_ckpt_save(cfg->out, cfg, m, opt, &ck, errbuf);
  if (st != UFM_OK) {
    char why[UFM_ERRBUF];
    snprintf(why, sizeof why, "%s", errbuf ? errbuf : "");
    st = ufm_fail(errbuf, st, "%s: cannot write the checkpoint at iteration %lu (the previous one, "
                  "if any, is intact): %s", cfg->out, t, why);
  }
  return st;
}

/* Is a periodic checkpoint due at iteration t (not the first of this
 * session, not the last of the run)? */
static int checkpoint_due(const ufm_config *cfg, unsigned long t, unsigned long t_start,
                          double since_last)
{
  if (t == t_start || t >= cfg->iterations) return 0;
  if (cfg->checkpoint_every > 0 && t % cfg->checkpoint_every == 0) return 1;
  return cfg->checkpoint_minutes > 0 && since_last >= 60.0 * cfg->checkpoint_minutes;
}

int ufm_run(const ufm_config *cfg, const ufm_run_opts *opts, char *errbuf)
{
  if (opts->resume) { /* a finished run stays as it is */
    char *done = finished_status(cfg->out);
    if (done) { /* what a kill after summary.tsv may have left */
      ufm_remove_stale_tmp(cfg->out);
      if (opts->keep != UFM_KEEP_ALL) ufm_ckpt_remove(cfg->out);
      if (!opts->quiet) fprintf(stderr, "%s: already finished (status %s); nothing to do\n", cfg->out, done);
      free(done);
      return UFM_OK;
    }
  }
  int resuming = opts->resume && ufm_ckpt_exists(cfg->out);
  /* everything the run owns, released once at `done` */
  ufm_theory *th = NULL;
  ufm_grad_ws *ws = NULL;
  ufm_metrics_ws *mw = NULL;
  ufm_optim *opt = NULL;
  unsigned long *its = NULL;
  mtable tab = {0};
  ufm_model *m = ufm_model_alloc(cfg->classes, cfg->dim, cfg->counts, cfg->bias);
  if (!m) return ufm_fail(errbuf, UFM_ENOMEM, "out of memory allocating the model");
  int st = UFM_OK;
  if (resuming) { /* the state comes from the checkpoint, below */
  } else if (cfg->init_from) st = ufm_state_load(m, cfg->init_from, errbuf);
  else ufm_model_init_random(m, cfg->seed, cfg->init_scale);
  if (st == UFM_OK) st = prepare_outdir(cfg->out, opts->force || opts->resume, errbuf);
  if (st != UFM_OK) goto done;
  ufm_remove_stale_tmp(cfg->out); /* left by a killed process */
  char *cfgpath = ufm_path_join(cfg->out, "config.ini");
  if (!resuming) clear_old_outputs(cfg->out);
  if (!resuming || access(cfgpath, F_OK) != 0) st = write_config(cfg, cfg->out, errbuf);
  free(cfgpath);
  /* the predicted limit, when one is known, for the figures and the summary */
  th = ufm_theory_for_config(cfg);
  if (st == UFM_OK && ufm_theory_has_prediction(th)) st = ufm_theory_write_tsv(th, cfg->out, errbuf);
  theory_drop_matrices(th);
  if (st != UFM_OK) goto done;

  ufm_problem pb = {cfg->loss, cfg->lambda_W, cfg->lambda_H, cfg->lambda_b};
  apply_constraints(cfg, m); /* projected GD starts from a feasible point */
  ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
  mw = ufm_metrics_ws_alloc_seli(m->C, m->p, m->N, cfg->compute_seli_H);
  opt = ufm_optim_alloc(cfg->optimizer, m->C, m->p, m->N, cfg->lr, cfg->momentum);
  if (!ws || !mw || !opt) {
    st = ufm_fail(errbuf, UFM_ENOMEM, "out of memory allocating the workspaces");
    goto done;
  }
  ufm_optim_prepare(opt, ws); /* gd, ngd: H's update inside the evaluation */
  size_t nlog = ufm_log_schedule(cfg->iterations, cfg->log_points, &its), next = 0;
  double vals[UFM_NMETRICS];
  int have_vals = 0, interrupted = 0;
  unsigned long vals_at = 0;
  char msg[512] = "";
  const char *status = "finished";
  unsigned long t = 0, t_start = 0;
  double secs_before = 0; /* computation time of earlier sessions (resumed runs) */
  size_t rank = 0;        /* rank_M at the last metrics evaluation */

  if (resuming) {
    ufm_ckpt ck = {0};
    int found = 0;
    st = ufm_ckpt_load(cfg->out, cfg, m, opt, &ck, &found, errbuf);
    if (st == UFM_OK && found && ck.log_next > nlog)
      st = ufm_fail(errbuf, UFM_EINVAL, "%s/checkpoint: log position %zu beyond the schedule's %zu",
                    cfg->out, ck.log_next, nlog);
    if (st == UFM_OK && found) {
      t_start = ck.iter;
      next = ck.log_next;
      secs_before = ck.seconds;
      rank = ck.rank;
      for (size_t r = 0; r < ck.rows; r++) mtable_add(&tab, ck.row_iter[r], ck.row_vals + r * UFM_NMETRICS);
      if (ck.rows > 0) { /* the last row is what a diverging run reports as final */
        memcpy(vals, ck.row_vals + (ck.rows - 1) * UFM_NMETRICS, sizeof vals);
        have_vals = 1;
      }
      if (!opts->quiet)
        fprintf(stderr, "%s: resuming from the checkpoint at iteration %lu\n", cfg->name, t_start);
    }
    ufm_ckpt_clear(&ck);
  }
  if (st != UFM_OK) goto done;

  ufm_progress pg;
  ufm_progress_start(&pg, cfg->name, cfg->iterations, opts->quiet);
  pg.first = t_start;
  double t0 = ufm_clock(), last_write = t0, last_ckpt = t0;

  for (t = t_start;; t++) {
    /* checkpoints between steps: on a stop signal (then stop), and when due */
    int stop = ufm_stop_requested();
    double now = cfg->checkpoint_minutes > 0 ? ufm_clock() : 0.0;
    if (stop || checkpoint_due(cfg, t, t_start, now - last_ckpt)) {
      double el = secs_before + ufm_clock() - t0;
      if ((st = checkpoint_now(cfg, m, opt, &tab, t, next, el, rank, errbuf)) != UFM_OK) break;
      last_ckpt = last_write = ufm_clock();
      if (stop) {
        interrupted = 1;
        break;
      }
    }
    int gst = ufm_grad_eval(&pb, m, ws);
    if (gst == UFM_ENOMEM) { /* never with the path the shape chose (allocated with ws) */
      st = ufm_fail(errbuf, UFM_ENOMEM, "out of memory for the gradient's work space");
      break;
    }
    if (gst == UFM_EDIVERGED) {
      status = "diverged";
      snprintf(msg, sizeof msg,
               "loss or gradient not finite at iteration %lu; the state saved is the last finite "
               "one (iteration %lu); try a smaller lr (now %g)",
               t, t, cfg->lr);
      break;
    }
    int conv = cfg->tol > 0 && sqrt(ws->gnorm2) <= cfg->tol;
    /* normalised GD drives the loss to the bottom of float64 in a few
     * thousand steps; below ~1e-290 its step lr/loss would overflow */
    int floor = cfg->optimizer == &ufm_optim_ngd && ws->loss < UFM_LOSS_FLOOR;
    if (floor)
      snprintf(msg, sizeof msg, "ngd: the loss reached %.3g at iteration %lu, the floor of double "
               "precision (%g); stopped there", ws->loss, t, UFM_LOSS_FLOOR);
    conv = conv || floor;
    int last = t == cfg->iterations || conv;
    if ((next < nlog && its[next] == t) || last) {
      ufm_metrics_eval(&pb, m, ws, mw, vals);
      rank = ufm_metrics_rank(mw);
      have_vals = 1;
      vals_at = t;
      mtable_add(&tab, t, vals);
      while (next < nlog && its[next] <= t) next++;
      /* metrics.tsv is rewritten whole at most once a second (and at the
       * end): a long run's table stays current without a write per row */
      double now = ufm_clock();
      if (last || now - last_write >= 1.0) {
        if ((st = mtable_write(&tab, cfg->out, errbuf)) != UFM_OK) break;
        last_write = now;
      }
    }
    if (conv) status = "converged";
    if (last) break;
    if (!(ws->thetamax + ufm_optim_step_bound(opt, ws) < 1e300)) {
      status = "diverged";
      snprintf(msg, sizeof msg,
               "the next step would overflow at iteration %lu (largest entry %.3g, step bound "
               "%.3g); the state saved is the last finite one (iteration %lu); try a smaller lr "
               "(now %g)",
               t, ws->thetamax, ufm_optim_step_bound(opt, ws), t, cfg->lr);
      break;
    }
    ufm_optim_iterate(opt, m, ws);
    apply_constraints(cfg, m);
    ufm_progress_update(&pg, t + 1, ws->loss);
  }
  double secs = secs_before + ufm_clock() - t0;
  ufm_progress_end(&pg, t, ws->loss, interrupted ? "interrupted" : status);
  /* the gradient and the optimizer are done with: their memory goes back
   * before the files and figures are written */
  ufm_grad_ws_free(ws);
  ws = NULL;
  ufm_optim_free(opt);
  opt = NULL;

  /* a diverged run leaves the loop between log points: its rows so far */
  if (st == UFM_OK && !interrupted && strcmp(status, "diverged") == 0)
    st = mtable_write(&tab, cfg->out, errbuf);
  if (st == UFM_OK && !interrupted) {
    const int geometry = have_vals && vals_at == t;
    run_result rr = {status, t, secs, have_vals ? vals : NULL, rank, msg[0] ? msg : NULL, th,
                     geometry ? grams_stride(m->C, cfg->grams_classes) : 0};
    if (opts->keep != UFM_KEEP_NONE) st = ufm_state_save(m, cfg->out, errbuf);
    if (st == UFM_OK && geometry)
      st = write_geometry(m, mw, cfg->out, rr.grams_stride, errbuf);
    /* summary.tsv, written last, marks the run finished: its checkpoint has
     * served (a kill between the two leaves it; --resume removes it) */
    if (st == UFM_OK) st = write_summary(cfg, m, &rr, cfg->out, errbuf);
    if (st == UFM_OK && opts->keep != UFM_KEEP_ALL) ufm_ckpt_remove(cfg->out);
  }
  if (st == UFM_OK && interrupted) {
    char *q = ufm_shell_quote(cfg->out);
    st = ufm_fail(errbuf, UFM_EINTR, "%s: interrupted by %s at iteration %lu; checkpoint saved in "
                  "%s/checkpoint; continue with: ufm run --resume %s", cfg->out,
                  ufm_signal_name(ufm_stop_signal), t, cfg->out, q);
    free(q);
  }
  if (st == UFM_OK && !opts->noplot && tab.rows > 0) {
    char perr[UFM_ERRBUF];
    ufm_figure fig = {cfg->figure_style, cfg->figure_width};
    if (ufm_plot_run(cfg->out, cfg->name, &fig, perr) != UFM_OK)
      fprintf(stderr, "ufm: warning: figures incomplete: %s\n", perr);
    else if (!opts->quiet)
      fprintf(stderr, "%s: figure %s/dashboard.png (and .pdf)\n", cfg->name, cfg->out);
  }
  if (st == UFM_OK && strcmp(status, "diverged") == 0)
    st = ufm_fail(errbuf, UFM_EDIVERGED, "%s: diverged: %s", cfg->out, msg);

done:
  ufm_theory_free(th);
  free(its);
  free(tab.iter);
  free(tab.v);
  ufm_optim_free(opt);
  ufm_metrics_ws_free(mw);
  ufm_grad_ws_free(ws);
  ufm_model_free(m);
  return st;
}
