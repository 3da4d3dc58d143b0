/* test_run.c -- whole runs: neural collapse emerges, restarts from saved state are exact,
 * thread counts do not change a bit, divergence stops cleanly with a finite state saved. */
#define UFM_TEST_TMPDIR
#include "testutil.h"

#include "common.h"
#include "config.h"
#include "gemm.h"
#include "grad.h"
#include "npy.h"
#include "optim.h"
#include "run.h"
#include "version.h"

#include <stdlib.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>
#include <string.h>
#include <unistd.h>


/* A configuration from "key=value" strings, finished; out under tmpdir. */
static ufm_config *make_config(const char *out, const char *const *kv)
{
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF], path[256];
  for (; *kv; kv++) {
    const char *eq = strchr(*kv, '=');
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - *kv), *kv);
    if (ufm_config_set(cfg, key, eq + 1, "test", err) != UFM_OK) fail_msg("%s", err);
  }
  snprintf(path, sizeof path, "%s/%s", tmpdir, out);
  ufm_config_set(cfg, "out", path, "test", err);
  if (ufm_config_finish(cfg, err) != UFM_OK) fail_msg("%s", err);
  return cfg;
}

static int run_config(ufm_config *cfg)
{
  ufm_run_opts opts = {.quiet = 1, .force = 1, .noplot = 1, .keep = UFM_KEEP_FINAL};
  char err[UFM_ERRBUF] = "";
  int st = ufm_run(cfg, &opts, err);
  if (st != UFM_OK) printf("# run: %s\n", err);
  return st;
}

static double *load(const char *out, const char *name, size_t *n)
{
  char path[256], err[UFM_ERRBUF];
  snprintf(path, sizeof path, "%s/%s/%s", tmpdir, out, name);
  double *d;
  int nd;
  size_t sh[UFM_NPY_MAXDIM];
  if (ufm_npy_read_f8(path, &d, &nd, sh, err) != UFM_OK) fail_msg("%s", err);
  *n = 1;
  for (int k = 0; k < nd; k++) *n *= sh[k];
  return d;
}

static int same_file(const char *a, const char *b, const char *name)
{
  size_t na, nb;
  double *x = load(a, name, &na), *y = load(b, name, &nb);
  int same = na == nb && memcmp(x, y, na * sizeof(double)) == 0;
  free(x);
  free(y);
  return same;
}

/* Column `col` of metrics.tsv, first and last rows. */
static void metric_ends(const char *out, const char *col, double *first, double *last)
{
  char path[256], line[8192];
  snprintf(path, sizeof path, "%s/%s/metrics.tsv", tmpdir, out);
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  assert_non_null(fgets(line, sizeof line, fp));
  int idx = -1, k = 0;
  for (char *t = strtok(line, "\t\n"); t; t = strtok(NULL, "\t\n"), k++)
    if (!strcmp(t, col)) idx = k;
  assert_true(idx >= 0);
  int row = 0;
  while (fgets(line, sizeof line, fp)) {
    k = 0;
    for (char *t = strtok(line, "\t\n"); t; t = strtok(NULL, "\t\n"), k++)
      if (k == idx) {
        double v = strtod(t, NULL);
        if (row == 0) *first = v;
        *last = v;
      }
    row++;
  }
  fclose(fp);
}

static void summary_status(const char *out, char *status, size_t cap)
{
  char path[256], line[512];
  snprintf(path, sizeof path, "%s/%s/summary.tsv", tmpdir, out);
  FILE *fp = fopen(path, "r");
  assert_non_null(fp);
  status[0] = '\0';
  while (fgets(line, sizeof line, fp))
    if (!strncmp(line, "status\t", 7)) snprintf(status, cap, "%.*s", (int)strcspn(line + 7, "\n"), line + 7);
  fclose(fp);
}

/* Neural collapse emerges: NC1 falls by orders of magnitude, the class means
 * and classifiers approach the simplex ETF and each other. */
static void test_collapse_emerges(void **s)
{
  (void)s;
  for (int li = 0; li < 2; li++) {
    const char *kv[] = {"classes=4", "dim=8", "n=5", "iterations=1500", "lr=2", "seed=3",
                        li ? "loss=mse" : "loss=ce", li ? "lr=0.5" : "lr=2", NULL};
    const char *out = li ? "collapse-mse" : "collapse-ce";
    ufm_config *cfg = make_config(out, kv);
    assert_int_equal(run_config(cfg), UFM_OK);
    double a, b;
    metric_ends(out, "nc1", &a, &b);
    printf("# %s: nc1 %.3g -> %.3g\n", out, a, b);
    assert_true(b < 1e-4 * a);
    metric_ends(out, "etf_W", &a, &b);
    printf("# %s: etf_W %.3g -> %.3g\n", out, a, b);
    if (!li) assert_true(b < 1e-2); /* MSE with weight decay: not an ETF in general */
    metric_ends(out, "nc3", &a, &b);
    assert_true(b < 1e-2);
    metric_ends(out, "acc", &a, &b);
    assert_true(b == 1.0);
    char st[32];
    summary_status(out, st, sizeof st);
    assert_string_equal(st, "finished");
    size_t n;
    double *H = load(out, "H.npy", &n);
    assert_int_equal(n, 8 * 20);
    free(H);
    ufm_config_free(cfg);
  }
}

/* 40 steps == 20 steps, saved, then 20 more from the saved state (init_from),
 * bit for bit: the saved state is the whole state of plain GD. */
static void test_restart_exact(void **s)
{
  (void)s;
  const char *base[] = {"classes=5", "dim=6", "counts=3,4,5,2,3", "lr=0.7", "lambda_b=1e-3", NULL};
  const char *k40[] = {"classes=5", "dim=6", "counts=3,4,5,2,3", "lr=0.7", "lambda_b=1e-3", "iterations=40", NULL};
  const char *k20[] = {"classes=5", "dim=6", "counts=3,4,5,2,3", "lr=0.7", "lambda_b=1e-3", "iterations=20", NULL};
  (void)base;
  ufm_config *a = make_config("r40", k40), *b = make_config("r20", k20);
  assert_int_equal(run_config(a), UFM_OK);
  assert_int_equal(run_config(b), UFM_OK);
  char from[256], err[UFM_ERRBUF];
  snprintf(from, sizeof from, "%s/r20", tmpdir);
  ufm_config *c = make_config("r20b", k20);
  assert_int_equal(ufm_config_set(c, "init_from", from, "test", err), UFM_OK);
  assert_int_equal(run_config(c), UFM_OK);
  assert_true(same_file("r40", "r20b", "W.npy"));
  assert_true(same_file("r40", "r20b", "H.npy"));
  assert_true(same_file("r40", "r20b", "b.npy"));
  assert_false(same_file("r40", "r20", "W.npy"));
  ufm_config_free(a);
  ufm_config_free(b);
  ufm_config_free(c);
}

/* The same seed gives the same bits on 1 and 2 threads, at a size where the
 * elementwise passes and the BLAS calls do run in parallel. */
static void test_thread_invariance(void **s)
{
  (void)s;
  const char *kv[] = {"classes=16", "dim=64", "n=512", "iterations=6", "log_points=6", "lr=1", NULL};
  const char *kvm[] = {"classes=16", "dim=64", "n=512", "iterations=6", "log_points=6", "lr=1",
                       "optimizer=momentum", "loss=mse", NULL};
  /* a shape where OpenBLAS's own threaded dgemm changes the last bits of
   * G H^T between 1 and 2 threads (found by the benchmark work) */
  const char *kvb[] = {"classes=12", "dim=80", "n=317", "iterations=4", "log_points=4", "lr=1",
                       "counts=300,310,320,330,340,350,300,310,320,330,340,350", NULL};
  /* C above UFM_GRAD_FUSED_CMAX: the three blocked products (the sets above
   * take the fused small-C pass, its slots in parallel) */
  const char *kvp[] = {"classes=40", "dim=48", "n=60", "iterations=4", "log_points=4", "lr=1", NULL};
  /* N = 256: the fused pass's 8 blocks in 2 slots, each block of H copied
   * (N a multiple of 128) */
  const char *kvs[] = {"classes=16", "dim=64", "n=16", "iterations=6", "log_points=6", "lr=1", NULL};
  /* N = 200: 7 blocks (the last one partial) in 2 slots */
  const char *kvt[] = {"classes=10", "dim=64", "n=20", "iterations=6", "log_points=6", "lr=1", NULL};
  /* C p N from 2^17 to 2^20: the three products in two column blocks, a
   * slot each (since session 15) */
  const char *kvq[] = {"classes=40", "dim=20", "n=10", "iterations=6", "log_points=6", "lr=1", NULL};
  /* the three products below 2^17 (C p N = 96000): Z in two halves of the
   * columns, the loss pass's two groups and grad_W, grad_H side by side */
  const char *kvr[] = {"classes=40", "dim=20", "n=3", "iterations=6", "log_points=6", "lr=1", NULL};
  /* the same at C <= 32, C p = 2048, N = 256 (the decay pass's rows shared) */
  const char *kvh[] = {"classes=32", "dim=64", "n=8", "iterations=6", "log_points=6", "lr=1", NULL};
  const char *const *sets[9] = {kv, kvm, kvb, kvp, kvs, kvt, kvq, kvr, kvh};
  const char *outs[9][2] = {{"t1", "t2"},   {"t1m", "t2m"}, {"t1b", "t2b"},
                            {"t1p", "t2p"}, {"t1s", "t2s"}, {"t1t", "t2t"},
                            {"t1q", "t2q"}, {"t1r", "t2r"}, {"t1h", "t2h"}};
  for (int v = 0; v < 9; v++) {
    for (int t = 0; t < 2; t++) {
      ufm_set_threads(t + 1);
      ufm_config *cfg = make_config(outs[v][t], sets[v]);
      assert_int_equal(run_config(cfg), UFM_OK);
      ufm_config_free(cfg);
    }
    assert_true(same_file(outs[v][0], outs[v][1], "W.npy"));
    assert_true(same_file(outs[v][0], outs[v][1], "H.npy"));
    assert_true(same_file(outs[v][0], outs[v][1], "b.npy"));
    char p1[256], p2[256], cmd[600];
    snprintf(p1, sizeof p1, "%s/%s/metrics.tsv", tmpdir, outs[v][0]);
    snprintf(p2, sizeof p2, "%s/%s/metrics.tsv", tmpdir, outs[v][1]);
    snprintf(cmd, sizeof cmd, "cmp -s '%s' '%s'", p1, p2);
    assert_int_equal(system(cmd), 0);
  }
  ufm_set_threads(2);
}

/* A step size far too large: the run stops as diverged, keeps a finite state. */
static void test_divergence(void **s)
{
  (void)s;
  const char *kv[] = {"classes=3", "dim=4", "n=4", "loss=mse", "lr=1e6", "iterations=200", NULL};
  ufm_config *cfg = make_config("div", kv);
  assert_int_equal(run_config(cfg), UFM_EDIVERGED);
  char st[32];
  summary_status("div", st, sizeof st);
  assert_string_equal(st, "diverged");
  size_t n;
  double *W = load("div", "W.npy", &n);
  for (size_t k = 0; k < n; k++) assert_true(isfinite(W[k]));
  free(W);
  ufm_config_free(cfg);
}

static void test_log_schedule(void **s)
{
  (void)s;
  unsigned long *its;
  size_t n = ufm_log_schedule(1000, 10, &its);
  assert_true(its[0] == 0 && its[1] == 1 && its[n - 1] == 1000);
  for (size_t k = 1; k < n; k++) assert_true(its[k] > its[k - 1]);
  assert_true(n == 11); /* 0 and 10 log-spaced points 1, 2, 5, 10, 22, ..., 1000 */
  free(its);
  n = ufm_log_schedule(0, 10, &its);
  assert_true(n == 1 && its[0] == 0);
  free(its);
  n = ufm_log_schedule(7, 1, &its);
  assert_true(n == 2 && its[0] == 0 && its[1] == 7);
  free(its);
}

/* gd and ngd with the step of H folded into the evaluation (ufm_optim_prepare)
 * give the same bits as the separate update, with and without decay, and the
 * fold does happen: on the three-product path (C = 40 > UFM_GRAD_FUSED_CMAX,
 * p = 20: C p N = 112000, under 2^17, so the products, Z in two halves) for
 * both, on the two column blocks of a small three-product shape (p = 24:
 * C p N = 134400) and on the fused small-C path (C = 6, where the CPU has
 * it) for gd. */
static void test_folded_step_bits(void **s)
{
  (void)s;
  const size_t n = 3;
  size_t counts[40];
  const ufm_optim_type *types[] = {&ufm_optim_gd, &ufm_optim_ngd};
  const size_t Cs[] = {40, 40, 6}, ps[] = {20, 24, 24};
  for (int k = 0; k < 12; k++) {
    const size_t C = Cs[k / 4], p = ps[k / 4];
    const int ti = k / 2 % 2, dec = k % 2;
    for (size_t c = 0; c < C; c++) counts[c] = n + c % 2;
    ufm_problem pb = {&ufm_loss_ce, 5e-3, dec ? 7e-3 : 0.0, 1e-3};
    ufm_model *a = ufm_model_alloc(C, p, counts, 1), *b = ufm_model_alloc(C, p, counts, 1);
    ufm_model_init_random(a, 11, 1.0);
    ufm_model_init_random(b, 11, 1.0);
    ufm_grad_ws *wa = ufm_grad_ws_alloc(C, p, a->N), *wb = ufm_grad_ws_alloc(C, p, b->N);
    ufm_optim *oa = ufm_optim_alloc(types[ti], C, p, a->N, 0.3, 0.0);
    ufm_optim *ob = ufm_optim_alloc(types[ti], C, p, b->N, 0.3, 0.0);
    ufm_optim_prepare(ob, wb);
    for (int t = 0; t < 6; t++) {
      assert_int_equal(ufm_grad_eval(&pb, a, wa), UFM_OK);
      assert_int_equal(ufm_grad_eval(&pb, b, wb), UFM_OK);
      assert_int_equal(wa->h_next, 0);
      assert_int_equal(wb->h_next, (wb->slots == NULL && wb->bk == NULL) || types[ti] == &ufm_optim_gd);
      if (k / 4 == 0) assert_true(wb->slots == NULL && wb->bk == NULL);
      if (k / 4 == 1) assert_true(wb->bk != NULL && wb->bk_nslot == 2);
      assert_true(wa->gnorm2 == wb->gnorm2 && wa->gmax == wb->gmax && wa->loss == wb->loss);
      ufm_optim_iterate(oa, a, wa);
      ufm_optim_iterate(ob, b, wb);
      assert_int_equal(wb->h_next, 0);
      assert_memory_equal(a->H->data, b->H->data, p * a->N * sizeof(double));
      assert_memory_equal(a->W->data, b->W->data, C * p * sizeof(double));
      assert_memory_equal(a->b->data, b->b->data, C * sizeof(double));
    }
    ufm_optim_free(oa);
    ufm_optim_free(ob);
    ufm_grad_ws_free(wa);
    ufm_grad_ws_free(wb);
    ufm_model_free(a);
    ufm_model_free(b);
  }
}

/* SPEC section 1: W then H, row-major, gsl_ran_gaussian on one
 * gsl_rng_mt19937 stream. model.c draws them with its own generator from
 * GSL's seeded state; every value must be GSL's (seed 0 is GSL's 4357;
 * 70 000 values cross ~290 refills of the 624-word state). */
static void test_init_is_gsl(void **state)
{
  (void)state;
  const unsigned long seeds[] = {0, 1, 7, 4357, 123456789UL, 0xffffffffUL};
  const size_t counts[3] = {400, 250, 350};
  for (size_t s = 0; s < sizeof seeds / sizeof seeds[0]; s++) {
    ufm_model *m = ufm_model_alloc(3, 70, counts, 1);
    assert_non_null(m);
    /* Debian's GSL 2.7: the fast generator's first values pass its check */
    assert_int_equal(ufm_model_init_random_fast(m, seeds[s], s ? 0.37 : 1.0), 1);
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, seeds[s]);
    size_t bad = 0;
    for (size_t c = 0; c < 3; c++)
      for (size_t k = 0; k < 70; k++) bad += gsl_matrix_get(m->W, c, k) != gsl_ran_gaussian(r, s ? 0.37 : 1.0);
    for (size_t k = 0; k < 70; k++)
      for (size_t i = 0; i < m->N; i++) bad += gsl_matrix_get(m->H, k, i) != gsl_ran_gaussian(r, s ? 0.37 : 1.0);
    assert_int_equal(bad, 0);
    gsl_rng_free(r);
    ufm_model_free(m);
  }
}

/* The automatic path choice (grad.h): the fused pass for small C p, the
 * three products where BLAS wins (C = 32, p = 256 took 1.9x as long fused). */
static void test_path_choice(void **state)
{
  (void)state;
  assert_true(ufm_grad_fused_auto(10, 64, 500));     /* S */
  assert_true(ufm_grad_fused_auto(16, 64, 10000));   /* C p = 1024 */
  assert_false(ufm_grad_fused_auto(16, 128, 10000));
  assert_true(ufm_grad_fused_auto(32, 16, 10000));   /* C p = 512 */
  assert_false(ufm_grad_fused_auto(32, 32, 10000));
  assert_false(ufm_grad_fused_auto(32, 256, 9600));
  assert_true(ufm_grad_fused_auto(10, 128, 1000));   /* small work */
  assert_true(ufm_grad_fused_auto(20, 64, 600));     /* small work, C p = 1280 */
  assert_false(ufm_grad_fused_auto(32, 64, 256));    /* small work, but C p = 2048 */
  assert_false(ufm_grad_fused_auto(16, 128, 128));
  assert_false(ufm_grad_fused_auto(4, 512, 40));
  assert_false(ufm_grad_fused_auto(33, 4, 10));      /* above UFM_GRAD_FUSED_CMAX */
  /* the column blocks: thin shapes, and (since session 15) the small
   * three-product shapes, C > 32, p <= 64, C p N in [2^17, 2^20) with
   * N >= 64, in halves */
  assert_true(ufm_grad_blocks_auto(1000, 8, 10000));  /* thin */
  assert_false(ufm_grad_blocks_auto(100, 512, 10000)); /* M */
  assert_true(ufm_grad_blocks_auto(40, 64, 320));     /* 819200 */
  assert_true(ufm_grad_blocks_auto(100, 20, 500));    /* 10^6 */
  assert_true(ufm_grad_blocks_auto(64, 32, 64));      /* 2^17 */
  assert_false(ufm_grad_blocks_auto(64, 32, 63));     /* below 2^17 */
  assert_false(ufm_grad_blocks_auto(64, 32, 512));    /* 2^20 */
  assert_false(ufm_grad_blocks_auto(2048, 1, 63));    /* N < 64 */
  assert_true(ufm_grad_blocks_auto(2048, 1, 64));
  assert_false(ufm_grad_blocks_auto(40, 65, 320));    /* p > 64 */
  assert_false(ufm_grad_blocks_auto(32, 64, 256));    /* C <= 32 */
  assert_false(ufm_grad_blocks_auto(20, 64, 600));    /* the fused pass's */
  assert_false(ufm_grad_blocks_auto(10, 64, 500));    /* S: the fused pass's */
  ufm_grad_ws *w = ufm_grad_ws_alloc(40, 64, 200);    /* halves: 104 + 96 columns */
  assert_true(w->bk != NULL && w->G == NULL && w->bk_cols == 104 && w->bk_nslot == 2);
  ufm_grad_ws_free(w);
}

/* Gaussian operands of op(A) op(B) (M x K times K x N, stored transposed
 * where ta, tb say). */
static void gemm_operands(gsl_rng *r, int ta, int tb, size_t M, size_t N, size_t K, gsl_matrix **A,
                          gsl_matrix **B)
{
  *A = ta ? gsl_matrix_alloc(K, M) : gsl_matrix_alloc(M, K);
  *B = tb ? gsl_matrix_alloc(N, K) : gsl_matrix_alloc(K, N);
  for (size_t i = 0; i < (*A)->size1 * (*A)->size2; i++) (*A)->data[i] = gsl_ran_gaussian(r, 1.0);
  for (size_t i = 0; i < (*B)->size1 * (*B)->size2; i++) (*B)->data[i] = gsl_ran_gaussian(r, 1.0);
}

/* ufm_gemm_long (grad_W = G H^T cut along N): the piece rule, the same bits
 * on 1 and 2 threads and as the documented order (piece products added in
 * order), for all four transpose pairs, and the plain product to rounding. */
static void test_gemm_long(void **state)
{
  (void)state;
  assert_int_equal(ufm_gemm_long_pieces(1000, 1024, 10000, 1024 * 10000), 4); /* L */
  assert_int_equal(ufm_gemm_long_pieces(100, 512, 10000, 512 * 10000), 8);    /* M */
  assert_int_equal(ufm_gemm_long_pieces(100, 512, 10000, 2 * 100 * 512), 3);  /* work: none */
  assert_int_equal(ufm_gemm_long_pieces(100, 512, 1500, 512 * 1500), 1);
  const size_t M = 37, N = 53, K = 1200, nwork = 3 * M * N + 5; /* 4 pieces */
  assert_int_equal(ufm_gemm_long_pieces(M, N, K, nwork), 4);
  const int threads = ufm_threads();
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 777);
  for (int ta = 0; ta < 2; ta++)
    for (int tb = 0; tb < 2; tb++) {
      CBLAS_TRANSPOSE_t TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
      gsl_matrix *A, *B;
      gemm_operands(r, ta, tb, M, N, K, &A, &B);
      gsl_matrix *C1 = gsl_matrix_alloc(M, N), *C2 = gsl_matrix_alloc(M, N),
                 *R = gsl_matrix_alloc(M, N), *P = gsl_matrix_alloc(M, N),
                 *F = gsl_matrix_alloc(M, N);
      double *work = malloc(nwork * sizeof(double));
      ufm_set_threads(1);
      ufm_gemm_long(TA, TB, A, B, C1, work, nwork);
      ufm_set_threads(2);
      ufm_gemm_long(TA, TB, A, B, C2, work, nwork);
      ufm_set_threads(threads);
      assert_memory_equal(C1->data, C2->data, M * N * sizeof(double));
      for (size_t q = 0; q < 4; q++) { /* the documented order */
        const size_t k0 = q * K / 4, len = (q + 1) * K / 4 - k0;
        gsl_matrix_const_view a = ta ? gsl_matrix_const_submatrix(A, k0, 0, len, M)
                                     : gsl_matrix_const_submatrix(A, 0, k0, M, len);
        gsl_matrix_const_view b = tb ? gsl_matrix_const_submatrix(B, 0, k0, N, len)
                                     : gsl_matrix_const_submatrix(B, k0, 0, len, N);
        gsl_blas_dgemm(TA, TB, 1.0, &a.matrix, &b.matrix, 0.0, q ? P : R);
        if (q) gsl_matrix_add(R, P);
      }
      assert_memory_equal(C1->data, R->data, M * N * sizeof(double));
      /* work for 3 pieces only: ufm_gemm's blocks */
      ufm_gemm_long(TA, TB, A, B, C2, work, 2 * M * N);
      ufm_gemm(TA, TB, 1.0, A, B, 0.0, P);
      assert_memory_equal(C2->data, P->data, M * N * sizeof(double));
      gsl_blas_dgemm(TA, TB, 1.0, A, B, 0.0, F);
      for (size_t i = 0; i < M * N; i++)
        if (!(fabs(C1->data[i] - F->data[i]) <= 1e-13 * sqrt((double)K) * 8.0)) {
          print_error("gemm_long %d%d entry %zu: %.17g, product %.17g\n", ta, tb, i, C1->data[i],
                      F->data[i]);
          fail();
        }
      free(work);
      gsl_matrix_free(A);
      gsl_matrix_free(B);
      gsl_matrix_free(C1);
      gsl_matrix_free(C2);
      gsl_matrix_free(R);
      gsl_matrix_free(P);
      gsl_matrix_free(F);
    }
  gsl_rng_free(r);
}

/* ufm_gemm's pieces: row pieces unless C is more than twice as wide as
 * tall (gemm.c), ceil(side/8) but at least 64 (256 when K > 4 side) wide.
 * For C = 300 x 500 (rows, the rule's middle ground), 100 x 500
 * (columns) and 600 x 400 (rows), all four transpose pairs: the same bits
 * on 1 and 2 threads, the same bits as the documented pieces computed one
 * dgemm each, and agreement with one dgemm to rounding. OpenBLAS computes
 * each entry the same way in row or column pieces of these sizes, so
 * which way C is cut is a matter of speed (make bench), not of bits: this
 * test passes with either rule. */
static void test_gemm_blocks(void **state)
{
  (void)state;
  const size_t shapes[3][3] = {{300, 500, 70}, {100, 500, 70}, {600, 400, 70}};
  const int rows[3] = {1, 0, 1};
  const int threads = ufm_threads();
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 778);
  for (int s = 0; s < 3; s++)
    for (int ta = 0; ta < 2; ta++)
      for (int tb = 0; tb < 2; tb++) {
        const size_t M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
        CBLAS_TRANSPOSE_t TA = ta ? CblasTrans : CblasNoTrans, TB = tb ? CblasTrans : CblasNoTrans;
        gsl_matrix *A, *B;
        gemm_operands(r, ta, tb, M, N, K, &A, &B);
        gsl_matrix *C1 = gsl_matrix_alloc(M, N), *C2 = gsl_matrix_alloc(M, N),
                   *R = gsl_matrix_alloc(M, N), *F = gsl_matrix_alloc(M, N);
        ufm_set_threads(1);
        ufm_gemm(TA, TB, 1.0, A, B, 0.0, C1);
        ufm_set_threads(2);
        ufm_gemm(TA, TB, 1.0, A, B, 0.0, C2);
        ufm_set_threads(threads);
        assert_memory_equal(C1->data, C2->data, M * N * sizeof(double));
        const size_t side = rows[s] ? M : N, bs = (side + 7) / 8 < 64 ? 64 : (side + 7) / 8;
        for (size_t s0 = 0; s0 < side; s0 += bs) {
          const size_t len = side - s0 < bs ? side - s0 : bs;
          if (rows[s]) {
            gsl_matrix_const_view a = ta ? gsl_matrix_const_submatrix(A, 0, s0, K, len)
                                         : gsl_matrix_const_submatrix(A, s0, 0, len, K);
            gsl_matrix_view c = gsl_matrix_submatrix(R, s0, 0, len, N);
            gsl_blas_dgemm(TA, TB, 1.0, &a.matrix, B, 0.0, &c.matrix);
          } else {
            gsl_matrix_const_view b = tb ? gsl_matrix_const_submatrix(B, s0, 0, len, K)
                                         : gsl_matrix_const_submatrix(B, 0, s0, K, len);
            gsl_matrix_view c = gsl_matrix_submatrix(R, 0, s0, M, len);
            gsl_blas_dgemm(TA, TB, 1.0, A, &b.matrix, 0.0, &c.matrix);
          }
        }
        assert_memory_equal(C1->data, R->data, M * N * sizeof(double));
        gsl_blas_dgemm(TA, TB, 1.0, A, B, 0.0, F);
        for (size_t i = 0; i < M * N; i++)
          if (!(fabs(C1->data[i] - F->data[i]) <= 1e-13 * sqrt((double)K) * 8.0)) {
            print_error("gemm %zux%zu %d%d entry %zu: %.17g, product %.17g\n", M, N, ta, tb, i,
                        C1->data[i], F->data[i]);
            fail();
          }
        gsl_matrix_free(A);
        gsl_matrix_free(B);
        gsl_matrix_free(C1);
        gsl_matrix_free(C2);
        gsl_matrix_free(R);
        gsl_matrix_free(F);
      }
  gsl_rng_free(r);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_log_schedule),     cmocka_unit_test(test_collapse_emerges),
      cmocka_unit_test(test_restart_exact),    cmocka_unit_test(test_thread_invariance),
      cmocka_unit_test(test_divergence),       cmocka_unit_test(test_folded_step_bits),
      cmocka_unit_test(test_init_is_gsl),      cmocka_unit_test(test_path_choice),
      cmocka_unit_test(test_gemm_long),        cmocka_unit_test(test_gemm_blocks),
  };
  return cmocka_run_group_tests_name("run", tests, tmpdir_setup, tmpdir_teardown);
}
