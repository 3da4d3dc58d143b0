/* bench.c -- `make bench`: time a GD step of ufm against its three bare dgemm calls, NumPy and PyTorch.
 *
 * Contents: 1. clocks and machine  2. one size, in C  3. Python comparisons
 *           4. whole processes  4b. peak memory of a real run  5. the tables
 *           6. main
 *
 * Everything is measured in this one process and run: for each size the
 * three bare dgemm calls (the step's shapes and layout, the fastest with
 * OpenBLAS, on all threads), the step itself, one full metrics
 * evaluation and the evaluation's two bare products (its floor, bare_eval)
 * are timed in alternation, `reps` times, and the best of each is kept (the machine is
 * shared, so the minimum is the least disturbed estimate); the ratios are
 * given both as ratios of the minima and as the median of the ratios
 * within each rep (one lucky sample of either side moves the first; a
 * burst of load from other tenants hits a rep's back-to-back samples
 * alike, so the second is the steadier). The NumPy and PyTorch scripts beside this file are
 * then run on the same sizes by the Debian interpreter and report their own
 * best time per step. Last, each size is run again as whole processes of K
 * steps (ufm run, and the scripts), timed from start to exit.
 */
#include "common.h"
#include "gemm.h"
#include "grad.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"
#include "version.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <gsl/gsl_blas.h>
#ifdef _OPENMP
#include <omp.h>
#else
static int omp_get_num_threads(void) { return 1; }
static int omp_get_thread_num(void) { return 0; }
#endif

#ifndef UFM_BENCHDIR
#define UFM_BENCHDIR "bench"
#endif

/* ------------------------------------------------------- 1. clocks and machine */

static double now(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void cpu_model(char *buf, size_t cap)
{
  FILE *fp = fopen("/proc/cpuinfo", "r");
  char line[512];
  snprintf(buf, cap, "unknown");
  if (!fp) return;
  while (fgets(line, sizeof line, fp))
    if (!strncmp(line, "model name", 10)) {
      char *colon = strchr(line, ':');
      if (colon) snprintf(buf, cap, "%.*s", (int)strcspn(colon + 2, "\n"), colon + 2);
      break;
    }
  fclose(fp);
}

static double load1(void)
{
  double l[1] = {-1};
  return getloadavg(l, 1) == 1 ? l[0] : -1;
}

/* ------------------------------------------------------------ 2. one size, in C */

typedef struct {
  const char *name;
  size_t C, p, n;
} bench_size;

static const bench_size NAMED[] = {{"S", 10, 64, 50}, {"M", 100, 512, 100}, {"L", 1000, 1024, 10}};
#define NNAMED (sizeof NAMED / sizeof NAMED[0])
#define MAXSIZES 32

/* The experiment every implementation runs: CE, bias, weight decay. */
#define LAMBDA_W 5e-3
#define LAMBDA_H 5e-3
#define LAMBDA_B 1e-3
#define LR 0.5
#define INIT_SCALE 0.1
#define SEED 1
#define SEPARATE 1.0 /* the separated state: h_i + SEPARATE w_{y_i} */

typedef struct {
  double step, dgemm, metrics; /* best seconds per call */
  double metrics_c;            /* the same at a collapsed state (every sample
                                * settled by the nearest-centre collapse test) */
  double metrics_s;            /* the same at a separated state (the classifier
                                * right, the features not collapsed: at M and
                                * L neither the pair test nor the collapse
                                * test settles a sample) */
  double metrics_ns;           /* the same with compute_seli_H = false (no Gram
                                * of H's shorter side where NC1 can do without) */
  double floor;                /* best seconds of the evaluation's two bare
                                * products (bare_eval); NAN when not timed */
  /* the ratios within each rep (step/dgemm, metrics/step, metrics/floor):
   * median, min, max */
  double pr_med, pr_min, pr_max, mr_med, mr_min, mr_max, fr_med, fr_min, fr_max;
  double numpy, torch;         /* best seconds per step; NAN when not run */
  /* whole processes (section 4): K steps each, wall seconds; NAN when not run */
  long K;
  double w_ufm, w_ufm_default, w_ufm_noseli, w_numpy, w_torch;
} bench_result;

/* The three products of a step, bare: Z = W H, grad_W = G H^T,
 * grad_H = W^T G (row-major, G class-major, C x N), the same calls as
 * ufm_grad_eval makes, into their own outputs. Of the layouts tried this
 * is the fastest with OpenBLAS (M: 34.5 ms, against 39-47 ms for the
 * transposed forms H^T W^T, G^T's, that the step used and the bench timed
 * before session 8), so it is the stricter baseline. */
typedef struct {
  gsl_matrix *Z, *gW, *gH;
} bare_ws;

/* The bare calls use OpenBLAS's own threading on every thread (ufm itself
 * keeps the BLAS single-threaded and blocks the products over OpenMP for
 * thread-count-independent bits): the fastest the machine does them. */
extern void openblas_set_num_threads(int);
static int bare_threads = 1;

static void bare_dgemms(const ufm_model *m, const gsl_matrix *G, bare_ws *b)
{
  openblas_set_num_threads(bare_threads);
  gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, 1.0, m->W, m->H, 0.0, b->Z);
  gsl_blas_dgemm(CblasNoTrans, CblasTrans, 1.0, G, m->H, 0.0, b->gW);
  gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, m->W, G, 0.0, b->gH);
  openblas_set_num_threads(1);
}

/* The two products an exact metrics evaluation cannot avoid, bare, on
 * every thread:
 * - the Gram of H's shorter side (dsyrk, min(p,N)^2 max(p,N)/2
 *   multiply-adds): seli_H's ||H^T H||_F needs it, and for p <= N ufm
 *   forms it as D D^T, of the within-class deviations, which also gives
 *   NC1;
 * - every sample scored against every class centre (sgemm, C p N): the
 *   nearest-centre rule's single-precision filter.
 * Their time is the floor of an evaluation on the machine, as the three
 * dgemm calls are the step's; the evaluation also reads H for the class
 * means and the deviations, which this leaves out. OpenBLAS's own threading
 * of one dsyrk call was slower than ufm's whole evaluation at M (51 against
 * 45 ms), so each thread instead sums the Gram of its own share of the
 * long dimension, one thread of BLAS each (the sums of the partial Grams
 * are left out too), and takes its share of the samples to score. With
 * OpenBLAS's AVX2 kernels the Gram is summed in row blocks, a dsyrk on each
 * diagonal block and a dgemm for the rest of its row, as ufm sums D D^T
 * (faster than one dsyrk there: src/metrics.c, SYRK_ROWS). Where the CPU
 * has AVX-512, ufm sums D D^T with its own kernel instead (ufm_gram512,
 * src/gemm.c), and so does this: each thread packs its columns of H in
 * the evaluation's chunks (5 2^15 / p columns) and sums their Grams with
 * it (for p > N, H^T H from its rows, 256 at a time, as ufm's tiles of
 * H^T H). Timed only while the threads' Grams fit in 2^27 doubles (1 GiB). */
typedef struct {
  double *X; /* a Gram per thread */
  float *Hf, *Mf, *Ef;
  size_t rows; /* the Gram in row blocks of this many rows, as ufm sums D D^T (0: one dsyrk) */
  double *P;   /* with ufm_gram512: a packed chunk per thread, else NULL */
  size_t ch;   /* its columns */
} bare_ev;

#define EVAL_FLOOR_MAX ((size_t)1 << 27)

static void bare_eval(const ufm_model *m, bare_ev *e)
{
  const size_t C = m->C, p = m->p, N = m->N, q = p < N ? p : N;
  const double *H = m->H->data;
#pragma omp parallel num_threads(bare_threads)
  {
    const size_t T = (size_t)omp_get_num_threads(), t = (size_t)omp_get_thread_num();
    const size_t j0 = t * N / T, j1 = (t + 1) * N / T, k0 = t * p / T, k1 = (t + 1) * p / T;
    double *X = e->X + t * q * q;
    if (p <= N && e->P) { /* packed chunk by chunk, as ufm sums D D^T */
      double *P = e->P + t * ufm_gram512_size(p, e->ch);
      for (size_t c0 = j0; c0 < j1; c0 += e->ch) {
        const size_t w = j1 - c0 < e->ch ? j1 - c0 : e->ch;
        ufm_gram512_pack(H + c0, p, w, N, P);
        ufm_gram512(P, p, P, p, w, 1, c0 == j0, X, p);
      }
    } else if (p <= N) { /* in row blocks where ufm sums D D^T so */
      ufm_syrk_rows(H + j0, p, j1 - j0, N, e->rows, 0.0, X, p);
    } else if (e->P) { /* H^T H as ufm sums its tiles, 256 rows of H at a time */
      double *P = e->P + t * ufm_gram512_size(N, e->ch);
      for (size_t c0 = k0; c0 < k1; c0 += e->ch) {
        const size_t w = k1 - c0 < e->ch ? k1 - c0 : e->ch;
        ufm_gram512_pack_cols(H + c0 * N, w, N, N, P);
        ufm_gram512(P, N, P, N, w, 1, c0 == k0, X, N);
      }
    } else
      cblas_dsyrk(CblasRowMajor, CblasUpper, CblasTrans, (int)N, (int)(k1 - k0), 1.0, H + k0 * N,
                  (int)N, 0.0, X, (int)N);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)(j1 - j0), (int)p, 1.0f,
                e->Mf, (int)C, e->Hf + j0, (int)N, 0.0f, e->Ef + j0, (int)N);
  }
}

static int cmp_double(const void *a, const void *b)
{
  const double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

static double median_sorted(const double *x, size_t n)
{
  return n % 2 ? x[n / 2] : 0.5 * (x[n / 2 - 1] + x[n / 2]);
}

/* The median, min and max of x (n values, sorted here). */
static void summarise(double *x, size_t n, double *med, double *mn, double *mx)
{
  qsort(x, n, sizeof(double), cmp_double);
  *med = median_sorted(x, n);
  *mn = x[0];
  *mx = x[n - 1];
}

/* Calls of f per timing sample so that one sample lasts about `target` s. */
static long calls_for(double one, double target)
{
  if (!(one > 0)) return 1;
  double k = target / one;
  return k < 1 ? 1 : k > 1e6 ? 1000000 : (long)k;
}

/* Best seconds of one evaluation over reps samples of km calls, at the
 * model's current state (its gradient evaluated first, as a run does) */
static double eval_at_state(const ufm_problem *pb, ufm_model *m, ufm_grad_ws *ws,
                            ufm_metrics_ws *mw, long km, int reps, double *vals)
{
  ufm_grad_eval(pb, m, ws);
  double best = INFINITY;
  for (int rep = 0; rep < reps; rep++) {
    const double t = now();
    for (long k = 0; k < km; k++) ufm_metrics_eval(pb, m, ws, mw, vals);
    const double me = (now() - t) / (double)km;
    if (me < best) best = me;
  }
  return best;
}

static void bench_c(const bench_size *sz, int reps, double target, bench_result *r)
{
  size_t *counts = ufm_malloc(sz->C * sizeof *counts);
  for (size_t c = 0; c < sz->C; c++) counts[c] = sz->n;
  ufm_model *m = ufm_model_alloc(sz->C, sz->p, counts, 1);
  ufm_model_init_random(m, SEED, INIT_SCALE);
  ufm_problem pb = {&ufm_loss_ce, LAMBDA_W, LAMBDA_H, LAMBDA_B};
  ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
  ufm_metrics_ws *mw = ufm_metrics_ws_alloc(m->C, m->p, m->N);
  ufm_metrics_ws *mw0 = ufm_metrics_ws_alloc_seli(m->C, m->p, m->N, 0);
  ufm_optim *opt = ufm_optim_alloc(&ufm_optim_gd, m->C, m->p, m->N, LR, 0.0);
  if (opt && ws) ufm_optim_prepare(opt, ws); /* as ufm run does */
  bare_ws b = {gsl_matrix_alloc(m->C, m->N), gsl_matrix_alloc(m->C, m->p),
               gsl_matrix_alloc(m->p, m->N)};
  gsl_matrix *G = gsl_matrix_alloc(m->C, m->N);
  const size_t q = m->p < m->N ? m->p : m->N;
  bare_ev e = {NULL, NULL, NULL, NULL, ufm_metrics_syrk_rows_default(), NULL, 0};
  if (q * q * (size_t)bare_threads <= EVAL_FLOOR_MAX) {
    e.X = ufm_malloc(q * q * (size_t)bare_threads * sizeof(double));
    e.Hf = ufm_malloc(m->p * m->N * sizeof(float));
    e.Mf = ufm_malloc(m->p * m->C * sizeof(float));
    e.Ef = ufm_malloc(m->C * m->N * sizeof(float));
    for (size_t k = 0; k < m->p * m->N; k++) e.Hf[k] = (float)m->H->data[k];
    if (m->p <= m->N && ufm_metrics_gram512(mw, 1)) {
      e.ch = ((size_t)5 << 15) / m->p < m->N ? ((size_t)5 << 15) / m->p : m->N;
      e.P = ufm_malloc(ufm_gram512_size(m->p, e.ch) * (size_t)bare_threads * sizeof(double));
    } else if (m->p > m->N && ufm_gram512_ok()) {
      e.ch = 256;
      e.P = ufm_malloc(ufm_gram512_size(m->N, e.ch) * (size_t)bare_threads * sizeof(double));
    }
    for (size_t k = 0; k < m->p; k++) /* any centres: W's rows will do */
      for (size_t c = 0; c < m->C; c++) e.Mf[k * m->C + c] = (float)gsl_matrix_get(m->W, c, k);
  }
  if (!ws || !mw || !mw0 || !opt || !b.Z || !b.gW || !b.gH || !G) {
    fprintf(stderr, "ufm-bench: out of memory at size %s\n", sz->name);
    exit(1);
  }
  double vals[UFM_NMETRICS];

  /* warm up (first touch of every buffer, BLAS thread start), and a G to multiply */
  if (ufm_grad_eval(&pb, m, ws) != UFM_OK) {
    fprintf(stderr, "ufm-bench: the step diverged at size %s\n", sz->name);
    exit(1);
  }
  if (ws->G) {
    gsl_matrix_memcpy(G, ws->G); /* the step's G */
  } else { /* the column-block path keeps none: the three products' G at the same point */
    ufm_grad_ws *wp = ufm_grad_ws_alloc(m->C, m->p, m->N);
    if (!wp) {
      fprintf(stderr, "ufm-bench: out of memory at size %s\n", sz->name);
      exit(1);
    }
    wp->path = UFM_GRAD_PRODUCTS;
    ufm_grad_eval(&pb, m, wp);
    gsl_matrix_memcpy(G, wp->G);
    ufm_grad_ws_free(wp);
  }
  double t = now();
  bare_dgemms(m, G, &b);
  double one_d = now() - t;
  t = now();
  ufm_grad_eval(&pb, m, ws);
  ufm_optim_iterate(opt, m, ws);
  double one_s = now() - t;
  t = now();
  ufm_grad_eval(&pb, m, ws);
  ufm_metrics_eval(&pb, m, ws, mw, vals);
  double one_m = now() - t - one_s, one_f = 0.0;
  if (e.X) {
    t = now();
    bare_eval(m, &e);
    one_f = now() - t;
  }
  long kd = calls_for(one_d, target), ks = calls_for(one_s, target), km = calls_for(one_m, target);
  long kf = calls_for(one_f, target);

  r->step = r->dgemm = r->metrics = r->metrics_ns = INFINITY;
  r->floor = e.X ? INFINITY : NAN;
  double *pr = ufm_malloc(3 * (size_t)reps * sizeof(double)), *mr = pr + reps, *fr = mr + reps;
  for (int rep = 0; rep < reps; rep++) {
    t = now();
    for (long k = 0; k < kd; k++) bare_dgemms(m, G, &b);
    double d = (now() - t) / (double)kd;
    t = now();
    for (long k = 0; k < ks; k++) {
      if (ufm_grad_eval(&pb, m, ws) != UFM_OK) {
        fprintf(stderr, "ufm-bench: the step diverged at size %s\n", sz->name);
        exit(1);
      }
      ufm_optim_iterate(opt, m, ws);
    }
    double s = (now() - t) / (double)ks;
    ufm_grad_eval(&pb, m, ws);
    t = now();
    for (long k = 0; k < km; k++) ufm_metrics_eval(&pb, m, ws, mw, vals);
    double me = (now() - t) / (double)km, f = NAN;
    t = now();
    for (long k = 0; k < km; k++) ufm_metrics_eval(&pb, m, ws, mw0, vals);
    const double me0 = (now() - t) / (double)km;
    if (me0 < r->metrics_ns) r->metrics_ns = me0;
    if (e.X) {
      t = now();
      for (long k = 0; k < kf; k++) bare_eval(m, &e);
      f = (now() - t) / (double)kf;
      if (f < r->floor) r->floor = f;
    }
    if (d < r->dgemm) r->dgemm = d;
    if (s < r->step) r->step = s;
    if (me < r->metrics) r->metrics = me;
    pr[rep] = s / d;
    mr[rep] = me / s;
    fr[rep] = me / f;
    fprintf(stderr,
            "  %s rep %d: dgemm %.4g ms, step %.4g ms (ratio %.3f), metrics %.4g ms, its two bare "
            "products %.4g ms, metrics without seli_H %.4g ms (load %.2f)\n",
            sz->name, rep + 1, 1e3 * d, 1e3 * s, s / d, 1e3 * me, 1e3 * f, 1e3 * me0, load1());
  }
  summarise(pr, (size_t)reps, &r->pr_med, &r->pr_min, &r->pr_max);
  summarise(mr, (size_t)reps, &r->mr_med, &r->mr_min, &r->mr_max);
  summarise(fr, (size_t)reps, &r->fr_med, &r->fr_min, &r->fr_max); /* NaN without a floor */
  free(pr);
  free(e.X);
  free(e.Hf);
  free(e.Mf);
  free(e.Ef);
  free(e.P);
  fprintf(stderr, "  %s: the pair test settled %zu of %zu samples, the collapse test %zu\n",
          sz->name, ufm_metrics_ncc_paired(mw), m->N, ufm_metrics_ncc_certified(mw));
  /* a separated state, as log points of a run see it once the classifier
   * is right and before the features collapse: h_i + SEPARATE w_{y_i} */
  for (size_t k = 0; k < m->p; k++)
    for (size_t i = 0; i < m->N; i++)
      *gsl_matrix_ptr(m->H, k, i) += SEPARATE * gsl_matrix_get(m->W, (size_t)m->labels[i], k);
  r->metrics_s = eval_at_state(&pb, m, ws, mw, km, reps, vals);
  fprintf(stderr,
          "  %s separated: metrics %.4g ms, accuracy %.4f, nc4 %.4g; %zu samples settled by the pair "
          "test, %zu by the collapse test\n",
          sz->name, 1e3 * r->metrics_s, vals[UFM_M_ACC], vals[UFM_M_NC4], ufm_metrics_ncc_paired(mw),
          ufm_metrics_ncc_certified(mw));
  /* a collapsed state, as late log points of a run see it: h_i = 3 w_{y_i}
   * plus a small share of the current h_i */
  for (size_t k = 0; k < m->p; k++)
    for (size_t i = 0; i < m->N; i++) {
      double *h = gsl_matrix_ptr(m->H, k, i);
      *h = 3.0 * gsl_matrix_get(m->W, (size_t)m->labels[i], k) + 0.05 * *h;
    }
  r->metrics_c = eval_at_state(&pb, m, ws, mw, km, reps, vals);
  fprintf(stderr, "  %s collapsed: metrics %.4g ms, %zu of %zu samples settled by the collapse test\n",
          sz->name, 1e3 * r->metrics_c, ufm_metrics_ncc_certified(mw), m->N);
  gsl_matrix_free(G);
  gsl_matrix_free(b.Z);
  gsl_matrix_free(b.gW);
  gsl_matrix_free(b.gH);
  ufm_optim_free(opt);
  ufm_metrics_ws_free(mw);
  ufm_metrics_ws_free(mw0);
  ufm_grad_ws_free(ws);
  ufm_model_free(m);
  free(counts);
}

/* ---------------------------------------------------------- 3. Python comparisons */

/* Run `python script C p n reps target threads` and read its last line, the
 * best seconds per step; NAN if it could not run. */
static double bench_python(const char *python, const char *script, const bench_size *sz, int reps,
                           double target, int threads)
{
  char cmd[2048], line[512];
  snprintf(cmd, sizeof cmd,
           "OMP_NUM_THREADS=%d OPENBLAS_NUM_THREADS=%d '%s' '%s' %zu %zu %zu %d %g %d %g %g %g %g",
           threads, threads, python, script, sz->C, sz->p, sz->n, reps, target, threads, LR,
           LAMBDA_W, LAMBDA_H, LAMBDA_B);
  FILE *fp = popen(cmd, "r");
  if (!fp) return NAN;
  double best = NAN;
  while (fgets(line, sizeof line, fp)) {
    double v;
    if (sscanf(line, "best %lf", &v) == 1) best = v;
    else fputs(line, stderr);
  }
  int st = pclose(fp);
  return st == 0 ? best : NAN;
}

static int python_has(const char *python, const char *module)
{
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "'%s' -c 'import %s' >/dev/null 2>&1", python, module);
  return access(python, X_OK) == 0 && system(cmd) == 0;
}

/* --------------------------------------------- 4. whole processes, start to exit */

/* Wall seconds of the command argv, run to its exit (stdout to /dev/null;
 * with env_threads, OMP_NUM_THREADS and OPENBLAS_NUM_THREADS set), and its
 * peak resident set into *kib if not NULL (the child's rusage, what
 * /usr/bin/time -v reports); NAN if it failed. */
static double wall_of(char *const argv[], const char *env_threads, long *kib)
{
  fflush(stdout); /* or the child would write this process's buffered lines too */
  double t = now();
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open("/dev/null", O_WRONLY);
    if (fd < 0 || dup2(fd, STDOUT_FILENO) < 0) _exit(127);
    if (env_threads) {
      setenv("OMP_NUM_THREADS", env_threads, 1);
      setenv("OPENBLAS_NUM_THREADS", env_threads, 1);
    }
    execv(argv[0], argv);
    _exit(127);
  }
  int status;
  struct rusage ru;
  if (pid < 0 || wait4(pid, &status, 0, &ru) != pid || !WIFEXITED(status)
      || WEXITSTATUS(status) != 0)
    return NAN;
  if (kib) *kib = ru.ru_maxrss;
  return now() - t;
}

/* rm -rf of a directory made by mkdtemp */
static void remove_tmpdir(const char *dir)
{
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "ufm-bench: could not remove %s\n", dir);
}

/* K steps of the experiment as a user runs them, each a whole process:
 * `ufm run` (log_points=1: metrics at 0 and K only, no figures; once more
 * with the defaults, log_points=100 and the figures; and with the defaults
 * and compute_seli_H=false) and the NumPy and
 * PyTorch scripts in their STEPS mode (import, initialisation, K steps). */
static void bench_whole(const char *ufm, const char *python, const char *np_script,
                        const char *torch_script, const bench_size *sz, long K, int threads,
                        int have_np, int have_torch, bench_result *r)
{
  r->K = K;
  r->w_ufm = r->w_ufm_default = r->w_ufm_noseli = r->w_numpy = r->w_torch = NAN;
  char dir[] = "/tmp/ufm-bench-XXXXXX";
  if (!mkdtemp(dir)) return;
  char a[12][96];
  snprintf(a[0], sizeof a[0], "classes=%zu", sz->C);
  snprintf(a[1], sizeof a[1], "dim=%zu", sz->p);
  snprintf(a[2], sizeof a[2], "n=%zu", sz->n);
  snprintf(a[3], sizeof a[3], "lambda_W=%g", LAMBDA_W);
  snprintf(a[4], sizeof a[4], "lambda_H=%g", LAMBDA_H);
  snprintf(a[5], sizeof a[5], "lambda_b=%g", LAMBDA_B);
  snprintf(a[6], sizeof a[6], "lr=%g", LR);
  snprintf(a[7], sizeof a[7], "init_scale=%g", INIT_SCALE);
  snprintf(a[8], sizeof a[8], "seed=%d", SEED);
  snprintf(a[9], sizeof a[9], "iterations=%ld", K);
  snprintf(a[10], sizeof a[10], "out=%s/run", dir);
  char th[16];
  snprintf(th, sizeof th, "%d", threads);
  char *uv[] = {(char *)ufm, "--threads", th, "run", "--quiet", "--force", "--no-plot",
                "log_points=1", "loss=ce", "bias=true", a[0], a[1], a[2], a[3], a[4], a[5],
                a[6], a[7], a[8], a[9], a[10], NULL};
  r->w_ufm = wall_of(uv, NULL, NULL);
  char *ud[] = {(char *)ufm, "--threads", th, "run", "--quiet", "--force", "loss=ce",
                "bias=true", a[0], a[1], a[2], a[3], a[4], a[5], a[6], a[7], a[8], a[9],
                a[10], NULL, NULL};
  r->w_ufm_default = wall_of(ud, NULL, NULL);
  ud[sizeof ud / sizeof ud[0] - 2] = "compute_seli_H=false"; /* the spare slot before NULL */
  r->w_ufm_noseli = wall_of(ud, NULL, NULL);
  char C[24], p[24], n[24], sc[24], lr[24], lw[24], lh[24], lb[24], ks[24];
  snprintf(C, sizeof C, "%zu", sz->C);
  snprintf(p, sizeof p, "%zu", sz->p);
  snprintf(n, sizeof n, "%zu", sz->n);
  snprintf(sc, sizeof sc, "%g", INIT_SCALE);
  snprintf(lr, sizeof lr, "%g", LR);
  snprintf(lw, sizeof lw, "%g", LAMBDA_W);
  snprintf(lh, sizeof lh, "%g", LAMBDA_H);
  snprintf(lb, sizeof lb, "%g", LAMBDA_B);
  snprintf(ks, sizeof ks, "%ld", K);
  char *pv[] = {(char *)python, NULL, C, p, n, "1", sc, th, lr, lw, lh, lb, ks, NULL};
  if (have_np) {
    pv[1] = (char *)np_script;
    r->w_numpy = wall_of(pv, th, NULL);
  }
  if (have_torch) {
    pv[1] = (char *)torch_script;
    r->w_torch = wall_of(pv, th, NULL);
  }
  remove_tmpdir(dir);
}

/* ------------------------------------------------ 4b. peak memory of a real run */

/* Peak resident set of `ufm run` at size L for a few steps with metrics,
 * read from the child's rusage (what /usr/bin/time -v reports). */
static long run_maxrss_kib(const char *ufm, const bench_size *sz, int threads)
{
  char dir[] = "/tmp/ufm-bench-XXXXXX";
  if (!mkdtemp(dir)) return -1;
  char classes[32], dim[32], n[32], out[96], th[16];
  snprintf(classes, sizeof classes, "classes=%zu", sz->C);
  snprintf(dim, sizeof dim, "dim=%zu", sz->p);
  snprintf(n, sizeof n, "n=%zu", sz->n);
  snprintf(out, sizeof out, "out=%s/run", dir);
  snprintf(th, sizeof th, "%d", threads);
  char *argv[] = {(char *)ufm, "run", "--quiet", "--no-plot", "--threads", th, classes, dim, n,
                  "iterations=3", "log_points=2", out, NULL};
  long kib = -1;
  if (!isfinite(wall_of(argv, NULL, &kib))) kib = -1;
  remove_tmpdir(dir);
  return kib;
}

/* ------------------------------------------------------------------- 5. the table */

static void print_cell(double x, const char *fmt)
{
  if (isfinite(x)) printf(fmt, x);
  else printf(" — |");
}

static void print_table(const bench_size *sizes, const bench_result *res, size_t ns, int have_np,
                        int have_torch)
{
  printf("\n| size | C | p | N | ms/step | 3 dgemm ms | step/dgemm | GFLOP/s | metrics/step "
         "| eval floor/step | metrics/floor | separated: metrics/step | collapsed: metrics/step "
         "| no seli_H: metrics/step "
         "| NumPy ms | PyTorch ms | vs NumPy | vs PyTorch |\n");
  printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (size_t k = 0; k < ns; k++) {
    const bench_size *sz = &sizes[k];
    const bench_result *r = &res[k];
    double N = (double)(sz->C * sz->n);
    double flops = 6.0 * (double)sz->C * (double)sz->p * N;
    printf("| %s | %zu | %zu | %.0f | %.4g | %.4g | %.3f | %.1f | %.3f |", sz->name, sz->C, sz->p,
           N, 1e3 * r->step, 1e3 * r->dgemm, r->step / r->dgemm, 1e-9 * flops / r->step,
           r->metrics / r->step);
    print_cell(r->floor / r->step, " %.3f |");
    print_cell(r->metrics / r->floor, " %.3f |");
    printf(" %.3f |", r->metrics_s / r->step);
    printf(" %.3f |", r->metrics_c / r->step);
    printf(" %.3f |", r->metrics_ns / r->step);
    if (have_np && isfinite(r->numpy)) printf(" %.4g |", 1e3 * r->numpy);
    else printf(" — |");
    if (have_torch && isfinite(r->torch)) printf(" %.4g |", 1e3 * r->torch);
    else printf(" — |");
    if (have_np && isfinite(r->numpy)) printf(" %.2fx |", r->numpy / r->step);
    else printf(" — |");
    if (have_torch && isfinite(r->torch)) printf(" %.2fx |\n", r->torch / r->step);
    else printf(" — |\n");
  }
  printf("\neval floor: the evaluation's two bare products, the Gram of H's shorter side "
         "(dsyrk,\nor ufm's own kernel where ufm uses it; min(p,N)^2 max(p,N)/2, for seli_H's "
         "exact ||H^T H||_F\nand NC1) and the nearest-centre scores (sgemm, C p N), on every "
         "thread: an evaluation costs\nat most one step only where this is well under 1. %s",
         ufm_gram512_ok() ? "Here: ufm's own kernel (AVX-512).\n" : "Here: dsyrk (no AVX-512).\n");
  printf("no seli_H: the evaluation with "
         "compute_seli_H = false (seli_H not\ncomputed; NC1 from U_r^T D, r p N, where that is "
         "cheaper than the Gram, p > 2 (C - 1)).\n");
  printf("\nThe same ratios within each rep (its dgemm, step, metrics and floor samples ran back "
         "to\nback, so a burst of load from elsewhere hits them alike): median [min, max] over the "
         "reps.\n\n| size | step/dgemm | metrics/step | metrics/floor |\n|---|---|---|---|\n");
  for (size_t k = 0; k < ns; k++) {
    printf("| %s | %.3f [%.3f, %.3f] | %.3f [%.3f, %.3f] |", sizes[k].name, res[k].pr_med,
           res[k].pr_min, res[k].pr_max, res[k].mr_med, res[k].mr_min, res[k].mr_max);
    if (isfinite(res[k].fr_med))
      printf(" %.3f [%.3f, %.3f] |\n", res[k].fr_med, res[k].fr_min, res[k].fr_max);
    else
      printf(" — |\n");
  }
}

static void print_whole(const bench_size *sizes, const bench_result *res, size_t ns)
{
  printf("\nWhole processes, start to exit (wall seconds): K steps of the same experiment; "
         "`ufm run` with\nlog_points=1 and --no-plot (metrics at 0 and K, the state and "
         "summary written), with the\ndefaults (log_points=100, every figure), and with the "
         "defaults and compute_seli_H=false;\nNumPy and PyTorch: interpreter start, import, "
         "initialisation, K steps.\n\n");
  printf("| size | K | ufm s | ufm, defaults s | ufm, defaults, no seli_H s | NumPy s | PyTorch s "
         "| NumPy / ufm | PyTorch / ufm |\n");
  printf("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
  for (size_t k = 0; k < ns; k++) {
    const bench_result *r = &res[k];
    if (r->K <= 0) continue;
    printf("| %s | %ld |", sizes[k].name, r->K);
    print_cell(r->w_ufm, " %.3f |");
    print_cell(r->w_ufm_default, " %.3f |");
    print_cell(r->w_ufm_noseli, " %.3f |");
    print_cell(r->w_numpy, " %.3f |");
    print_cell(r->w_torch, " %.3f |");
    print_cell(r->w_numpy / r->w_ufm, " %.2fx |");
    print_cell(r->w_torch / r->w_ufm, " %.2fx |");
    printf("\n");
  }
}

/* ------------------------------------------------------------------------- 6. main */

static void usage(FILE *fp)
{
  fprintf(fp,
          "Usage: ufm-bench [options]\n\n"
          "Time a full-batch GD step (CE, bias, weight decay) at sizes S (C=10, p=64, n=50),\n"
          "M (C=100, p=512, n=100) and L (C=1000, p=1024, n=10) against the three bare\n"
          "dgemm calls of the same shapes, one metrics evaluation against its two bare\n"
          "products (the Gram of H's shorter side, sgemm of the nearest-centre scores), and\n"
          "the same step in NumPy and PyTorch. Prints a Markdown table on stdout, progress\n"
          "on stderr.\n\n"
          "  --sizes LIST     sizes to run: S, M, L or C:p:n, e.g. S,M,20:20:20 (default S,M,L)\n"
          "  --reps R         timing samples per quantity, the best is kept (default 5)\n"
          "  --time T         seconds per timing sample (default 0.3)\n"
          "  --threads N      threads for OpenMP, BLAS and the Python runs (default: cores)\n"
          "  --python PATH    interpreter for the NumPy/PyTorch scripts (default /usr/bin/python3)\n"
          "  --no-python      skip NumPy and PyTorch\n"
          "  --scripts DIR    where bench_numpy.py and bench_torch.py are (default %s)\n"
          "  --ufm PATH       the ufm program, for the whole-process and peak-memory runs\n"
          "                   (default ./ufm)\n"
          "  --whole T        whole processes of K steps, K about T s of ufm's steps (at least\n"
          "                   10; default 2; 0: none)\n"
          "  -h, --help       this text\n",
          UFM_BENCHDIR);
}

int main(int argc, char **argv)
{
  ufm_blas_select_core(argv); /* the kernels ufm itself runs with (version.h) */
  static const struct option lo[] = {
      {"sizes", required_argument, 0, 's'},   {"reps", required_argument, 0, 'r'},
      {"time", required_argument, 0, 'T'},    {"threads", required_argument, 0, 't'},
      {"python", required_argument, 0, 'P'},  {"no-python", no_argument, 0, 'N'},
      {"scripts", required_argument, 0, 'S'}, {"ufm", required_argument, 0, 'u'},
      {"whole", required_argument, 0, 'W'},   {"help", no_argument, 0, 'h'},
      {0, 0, 0, 0}};
  const char *sizes = "S,M,L", *python = "/usr/bin/python3", *scripts = UFM_BENCHDIR,
             *ufm = "./ufm";
  int reps = 5, threads = (int)sysconf(_SC_NPROCESSORS_ONLN), use_python = 1, c;
  double target = 0.3, whole = 2.0;
  while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
    switch (c) {
    case 's': sizes = optarg; break;
    case 'r': reps = atoi(optarg); break;
    case 'T': target = atof(optarg); break;
    case 't': threads = atoi(optarg); break;
    case 'P': python = optarg; break;
    case 'N': use_python = 0; break;
    case 'S': scripts = optarg; break;
    case 'u': ufm = optarg; break;
    case 'W': whole = atof(optarg); break;
    case 'h': usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  bench_size sel[MAXSIZES];
  char names[MAXSIZES][64];
  size_t ns = 0;
  for (const char *q = sizes; *q && ns < MAXSIZES;) {
    size_t len = strcspn(q, ",");
    char tok[64];
    snprintf(tok, sizeof tok, "%.*s", (int)(len < 63 ? len : 63), q);
    q += len + (q[len] == ',');
    int found = 0;
    for (size_t k = 0; k < NNAMED; k++)
      if (!strcmp(tok, NAMED[k].name)) {
        sel[ns++] = NAMED[k];
        found = 1;
      }
    if (found) continue;
    unsigned long C, p, n;
    char tail;
    if (sscanf(tok, "%lu:%lu:%lu%c", &C, &p, &n, &tail) != 3 || C < 2 || p < 1 || n < 1
        || C > 100000 || p > 100000 || n > 1000000) {
      fprintf(stderr, "ufm-bench: --sizes: '%s' is neither S, M, L nor C:p:n (C >= 2, p, n >= 1)\n",
              tok);
      return 2;
    }
    snprintf(names[ns], sizeof names[ns], "%lu:%lu:%lu", C, p, n);
    sel[ns] = (bench_size){names[ns], C, p, n};
    ns++;
  }
  if (reps < 1 || threads < 1 || !(target > 0) || !(whole >= 0) || ns == 0) {
    usage(stderr);
    return 2;
  }
  ufm_set_threads(threads);
  bare_threads = threads;

  char cpu[256];
  cpu_model(cpu, sizeof cpu);
  printf("# ufm-bench %s\n", PACKAGE_VERSION);
  printf("# CPU: %s, %ld cores online; threads used: %d\n", cpu, sysconf(_SC_NPROCESSORS_ONLN),
         threads);
  printf("# BLAS: %s\n", ufm_blas_name());
  printf("# BLAS %s; the bare dgemm calls and the NumPy/PyTorch runs (which inherit\n"
         "# OPENBLAS_CORETYPE) use the same kernels as ufm\n", ufm_blas_core_note());
  printf("# load average at start: %.2f\n", load1());
  printf("# experiment: CE, bias, lambda_W = %g, lambda_H = %g, lambda_b = %g, lr = %g; best of %d "
         "samples of ~%g s each\n",
         LAMBDA_W, LAMBDA_H, LAMBDA_B, LR, reps, target);
  fflush(stdout);

  char np_script[1024], torch_script[1024];
  snprintf(np_script, sizeof np_script, "%s/bench_numpy.py", scripts);
  snprintf(torch_script, sizeof torch_script, "%s/bench_torch.py", scripts);
  int have_np = use_python && python_has(python, "numpy");
  int have_torch = use_python && python_has(python, "torch");
  if (use_python && !have_np)
    printf("# NumPy: not found with %s (apt-get install python3-numpy)\n", python);
  if (use_python && !have_torch)
    printf("# PyTorch: not found with %s (apt-get install python3-torch)\n", python);

  bench_result res[MAXSIZES];
  for (size_t k = 0; k < ns; k++) {
    const bench_size *sz = &sel[k];
    fprintf(stderr, "size %s: C=%zu p=%zu n=%zu\n", sz->name, sz->C, sz->p, sz->n);
    bench_c(sz, reps, target, &res[k]);
    res[k].numpy = have_np ? bench_python(python, np_script, sz, reps, target, threads) : NAN;
    res[k].torch = have_torch ? bench_python(python, torch_script, sz, reps, target, threads) : NAN;
    res[k].K = 0;
  }
  print_table(sel, res, ns, have_np, have_torch);
  fflush(stdout);

  if (whole > 0 && access(ufm, X_OK) == 0) {
    for (size_t k = 0; k < ns; k++) {
      double kk = whole / res[k].step;
      long K = kk < 10 ? 10 : kk > 1e6 ? 1000000 : (long)kk;
      fprintf(stderr, "size %s: whole processes of %ld steps\n", sel[k].name, K);
      bench_whole(ufm, python, np_script, torch_script, &sel[k], K, threads, have_np, have_torch,
                  &res[k]);
    }
    print_whole(sel, res, ns);
  }

  /* memory: peak RSS of a real run at L vs the bytes of W, H, their gradients and Z */
  const bench_size *L = &NAMED[NNAMED - 1];
  if (access(ufm, X_OK) == 0) {
    long kib = run_maxrss_kib(ufm, L, threads);
    double N = (double)(L->C * L->n), C = (double)L->C, p = (double)L->p;
    double bytes = 8.0 * (2 * C * p + 2 * p * N + C * N);
    if (kib > 0)
      printf("\nPeak memory of `ufm run` at L (3 steps, metrics twice): %.1f MiB resident; W, H, "
             "their gradients and Z: %.1f MiB; ratio %.3f\n",
             (double)kib / 1024.0, bytes / 1048576.0, 1024.0 * (double)kib / bytes);
    else
      printf("\nPeak memory: the run of %s failed\n", ufm);
  }
  printf("# load average at end: %.2f\n", load1());
  return 0;
}
