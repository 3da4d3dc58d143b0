/* test_loss.c -- losses, gradients (against central finite differences) and optimiser steps.
 *
 * Every loss x bias x regulariser combination has its analytic gradient
 * checked entry by entry against central differences of the objective F.
 * Test values are deliberately unround (2.385e-2, ...). Seeds are fixed and
 * printed.
 */
#include "testutil.h"

#include "common.h"
#include "grad.h"
#include "model.h"
#include "optim.h"
#include "version.h"

#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

static const size_t counts3[3] = {2, 3, 2};

static ufm_model *small_model(int bias, unsigned long seed)
{
  ufm_model *m = ufm_model_alloc(3, 4, counts3, bias);
  ufm_model_init_random(m, seed, 0.8);
  if (bias) {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, seed + 17);
    for (size_t c = 0; c < m->C; c++) gsl_vector_set(m->b, c, gsl_ran_gaussian(r, 0.5));
    gsl_rng_free(r);
  }
  return m;
}

static double objective_at(const ufm_problem *pb, const ufm_model *m, ufm_grad_ws *ws)
{
  ufm_grad_eval(pb, m, ws);
  return ufm_grad_objective(pb, ws);
}

/* Central differences on every entry of a block; compare with the analytic
 * gradient g. Returns the largest relative error max|fd - g| / max|g|. */
static double fd_block(const ufm_problem *pb, ufm_model *m, ufm_grad_ws *ws, double *x,
                       const double *g, size_t n)
{
  const double h = 1e-5;
  double maxerr = 0.0, gmax = 0.0;
  for (size_t k = 0; k < n; k++) {
    double x0 = x[k];
    x[k] = x0 + h;
    double fp = objective_at(pb, m, ws);
    x[k] = x0 - h;
    double fm = objective_at(pb, m, ws);
    x[k] = x0;
    double fd = (fp - fm) / (2 * h);
    maxerr = fmax(maxerr, fabs(fd - g[k]));
    gmax = fmax(gmax, fabs(g[k]));
  }
  return maxerr / gmax;
}

static void check_gradient_path(const ufm_loss_type *L, int bias, int reg, int path)
{
  ufm_problem pb = {L, reg ? 2.385e-2 : 0.0, reg ? 1.7e-2 : 0.0, reg ? 3.1e-2 : 0.0};
  unsigned long seed = 20240 + 2 * (unsigned long)bias + (unsigned long)reg;
  ufm_model *m = small_model(bias, seed);
  ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N), *ws2 = ufm_grad_ws_alloc(m->C, m->p, m->N);
  ws->path = ws2->path = path;
  assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_OK);
  size_t nW = m->C * m->p, nH = m->p * m->N;
  double *gW = malloc(nW * sizeof(double)), *gH = malloc(nH * sizeof(double)), gb[3];
  memcpy(gW, ws->gW->data, nW * sizeof(double));
  memcpy(gH, ws->gH->data, nH * sizeof(double));
  memcpy(gb, ws->gb->data, sizeof gb);

  double eW = fd_block(&pb, m, ws2, m->W->data, gW, nW);
  double eH = fd_block(&pb, m, ws2, m->H->data, gH, nH);
  printf("# %s path=%d bias=%d reg=%d seed=%lu: relative errors W %.2e H %.2e", L->name, path, bias, reg, seed, eW, eH);
  assert_true(eW < 1e-6);
  assert_true(eH < 1e-6);
  if (bias) {
    double eb = fd_block(&pb, m, ws2, m->b->data, gb, 3);
    printf(" b %.2e", eb);
    assert_true(eb < 1e-6);
  } else {
    for (size_t c = 0; c < 3; c++) assert_true(gb[c] == 0.0);
  }
  printf("\n");
  /* the reported norm is the norm of the whole gradient */
  double n2 = 0;
  for (size_t k = 0; k < nW; k++) n2 += gW[k] * gW[k];
  for (size_t k = 0; k < nH; k++) n2 += gH[k] * gH[k];
  for (size_t c = 0; c < 3; c++) n2 += gb[c] * gb[c];
  assert_close(ws->gnorm2, n2, 1e-12, 0);
  free(gW);
  free(gH);
  ufm_grad_ws_free(ws);
  ufm_grad_ws_free(ws2);
  ufm_model_free(m);
}

/* Every evaluation path: the fused small-C pass (where this CPU runs it),
 * the three products, and the products in column blocks. */
static void check_gradient(const ufm_loss_type *L, int bias, int reg)
{
  check_gradient_path(L, bias, reg, UFM_GRAD_FUSED);
  check_gradient_path(L, bias, reg, UFM_GRAD_PRODUCTS);
  check_gradient_path(L, bias, reg, UFM_GRAD_BLOCKS);
}

static void test_grad_ce_nobias(void **s) { (void)s; check_gradient(&ufm_loss_ce, 0, 0); check_gradient(&ufm_loss_ce, 0, 1); }
static void test_grad_ce_bias(void **s) { (void)s; check_gradient(&ufm_loss_ce, 1, 0); check_gradient(&ufm_loss_ce, 1, 1); }
static void test_grad_mse_nobias(void **s) { (void)s; check_gradient(&ufm_loss_mse, 0, 0); check_gradient(&ufm_loss_mse, 0, 1); }
static void test_grad_mse_bias(void **s) { (void)s; check_gradient(&ufm_loss_mse, 1, 0); check_gradient(&ufm_loss_mse, 1, 1); }

/* The objective's value against a direct evaluation of SPEC's formula. */
static void test_objective_value(void **s)
{
  (void)s;
  for (int li = 0; li < 2; li++) {
    const ufm_loss_type *L = li ? &ufm_loss_mse : &ufm_loss_ce;
    ufm_problem pb = {L, 2.385e-2, 1.7e-2, 3.1e-2};
    ufm_model *m = small_model(1, 99);
    ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
    assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_OK);
    double loss = 0, nW = 0, nH = 0, nb = 0;
    for (size_t i = 0; i < m->N; i++) {
      double z[3], mx = -1e300, se = 0;
      for (size_t c = 0; c < 3; c++) {
        z[c] = gsl_vector_get(m->b, c);
        for (size_t k = 0; k < m->p; k++) z[c] += gsl_matrix_get(m->W, c, k) * gsl_matrix_get(m->H, k, i);
        mx = fmax(mx, z[c]);
      }
      int y = m->labels[i];
      if (li == 0) {
        for (size_t c = 0; c < 3; c++) se += exp(z[c] - mx);
        loss += log(se) + mx - z[y];
      } else {
        for (size_t c = 0; c < 3; c++) loss += 0.5 * (z[c] - (c == (size_t)y)) * (z[c] - (c == (size_t)y));
      }
    }
    loss /= (double)m->N;
    for (size_t k = 0; k < 12; k++) nW += m->W->data[k] * m->W->data[k];
    for (size_t k = 0; k < 28; k++) nH += m->H->data[k] * m->H->data[k];
    for (size_t k = 0; k < 3; k++) nb += m->b->data[k] * m->b->data[k];
    assert_close(ws->loss, loss, 1e-13, 0);
    assert_close(ufm_grad_objective(&pb, ws), loss + 0.5 * (2.385e-2 * nW + 1.7e-2 * nH + 3.1e-2 * nb), 1e-13, 0);
    ufm_grad_ws_free(ws);
    ufm_model_free(m);
  }
}

/* Cross-entropy stays exact where naive formulas overflow or cancel. */
static void test_ce_extremes(void **s)
{
  (void)s;
  /* huge logits: no overflow */
  double z[4] = {1e6, -3e5, 2.5e5, 999990.0};
  double l = ufm_loss_ce.sample(4, z, 0, 1.0);
  assert_close(l, log1p(exp(-10.0)), 1e-14, 0);
  assert_close(z[3], exp(-10.0) / (1 + exp(-10.0)), 1e-12, 0);
  /* a loss below 1e-300: log1p, not log(1 + tiny) = 0; the true-class
   * gradient keeps its tiny value instead of cancelling to 0 */
  double z2[3] = {700.0, 0.0, -5.0};
  l = ufm_loss_ce.sample(3, z2, 0, 0.5);
  double tiny = exp(-700.0) + exp(-705.0);
  assert_true(l > 0);
  assert_close(l, tiny, 1e-12, 0);
  assert_close(z2[0], -0.5 * tiny, 1e-12, 0);
  assert_close(z2[1], 0.5 * exp(-700.0), 1e-12, 0);
  /* wrong class far ahead: loss is the logit gap */
  double z3[2] = {-400.0, 400.0};
  l = ufm_loss_ce.sample(2, z3, 0, 1.0);
  assert_close(l, 800.0, 1e-15, 0);
  assert_close(z3[0], -1.0, 1e-15, 0);
  assert_close(z3[1], 1.0, 1e-15, 0);
}

/* ufm_loss_batch on logits given sample-major (ZT, N x C, row i = sample
 * i's logits, as the references here are written): transposed into the
 * class-major Z the pass takes, the pass, then G transposed back into ZT. */
static double batch_t(const ufm_loss_type *L, size_t N, size_t C, double *ZT, const double *b,
                      const int32_t *lab, double *loss_i, int32_t *pred, double *margin,
                      double *zstat, double *gsum, double *work)
{
  const size_t nr = ufm_loss_rows_len(N, C);
  double *Z = malloc(N * C * sizeof(double)), *rows = malloc(nr * sizeof(double));
  assert_non_null(Z);
  assert_non_null(rows);
  for (size_t i = 0; i < N; i++)
    for (size_t c = 0; c < C; c++) Z[c * N + i] = ZT[i * C + c];
  for (size_t k = 0; k < nr; k++) rows[k] = NAN; /* scratch: never read */
  double mean = ufm_loss_batch(L, N, C, Z, b, lab, loss_i, pred, margin, zstat, gsum, work, rows);
  for (size_t i = 0; i < N; i++)
    for (size_t c = 0; c < C; c++) ZT[i * C + c] = Z[c * N + i];
  free(Z);
  free(rows);
  return mean;
}

/* ufm_loss_batch against a straightforward long-double evaluation, row by
 * row: loss = log1p(sum_{c != y} e^{z_c - z_y}), gradient e^{z_c - z_y} /
 * (1 + that sum) and -sum / (1 + sum) at y (cross-entropy), or z - e_y and
 * 1/2 ||z - e_y||^2 (squared loss); pred the first index of the largest
 * logit, margin z_y - max_{c != y} z_c, zstat. Random rows and special ones:
 * ties in the max (with y first, y not first, y not in them, across and
 * within lanes and in the last partial block), a loss near 1e-304 (y far
 * ahead: the true-class entry -S_o/S must keep its value), huge spreads
 * (z_c - max < -708.39: the libm exponential, subnormal entries). The bias
 * is a multiple of 1/64 and the logits multiples of 2^-20 (1/64 in the
 * special rows), so the ties hold after the bias is added and the exponents
 * z_c - z_a are exact: what is left is the pass's own rounding, not exp's
 * condition number |z_c - z_a|. Every entry within 2e-15 of the reference,
 * relative (plus 1e-320 for subnormal entries). Each vector width this CPU
 * runs gives the bits of the SSE2 one. */
#define LB_ROWS 24
static void batch_reference(const ufm_loss_type *L, size_t C, const double *z, int32_t y,
                            double scale, double *g, double *loss, int32_t *pred, double *margin,
                            double *zs)
{
  size_t a = 0;
  for (size_t c = 1; c < C; c++)
    if (z[c] > z[a]) a = c;
  *pred = (int32_t)a;
  double other = -INFINITY;
  long double sq = 0, sum = 0;
  for (size_t c = 0; c < C; c++) {
    if ((int32_t)c != y && z[c] > other) other = z[c];
    sq += (long double)z[c] * z[c];
    sum += z[c];
  }
  *margin = (double)((long double)z[y] - other);
  zs[0] = (double)sq;
  zs[1] = (double)((long double)z[y] - sum / (long double)C);
  if (L == &ufm_loss_ce) {
    long double so = 0;
    for (size_t c = 0; c < C; c++)
      if ((int32_t)c != y) so += expl((long double)z[c] - z[y]);
    *loss = (double)log1pl(so);
    for (size_t c = 0; c < C; c++)
      g[c] = (double)(scale * expl((long double)z[c] - z[y]) / (1 + so));
    g[y] = (double)(-scale * so / (1 + so));
  } else {
    long double l2 = 0;
    for (size_t c = 0; c < C; c++) {
      long double d = (long double)z[c] - ((int32_t)c == y ? 1 : 0);
      l2 += d * d;
      g[c] = (double)(scale * d);
    }
    *loss = (double)(l2 / 2);
  }
}

#define assert_rel(x, ref, tol, what, i, c)                                                  \
  do {                                                                                        \
    double x_ = (x), r_ = (ref);                                                              \
    if (!(fabs(x_ - r_) <= (tol) * fabs(r_) + 1e-320)) {                                      \
      print_error("%s C=%zu row %zu entry %zu: %.17g, reference %.17g\n", what, C, (size_t)(i), \
                  (size_t)(c), x_, r_);                                                       \
      fail();                                                                                 \
    }                                                                                         \
  } while (0)

static void test_batch_reference(void **s)
{
  (void)s;
  const size_t Cs[3] = {3, 100, 1000};
  /* the reference needs long double wider than double; valgrind runs x87
   * arithmetic in double precision, and then its own sums over 1000
   * classes are only good to ~1e-14 */
  volatile long double one = 1.0L, tiny = 0x1p-60L;
  const int extended = one + tiny != one;
  const double tol = extended ? 2e-15 : 2e-13;
  if (!extended) printf("# long double is double here (valgrind?): tolerance 2e-13\n");
  const unsigned long seed = 8128;
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, seed);
  double err_max = 0.0;
  for (size_t q = 0; q < 3; q++) {
    const size_t C = Cs[q], N = LB_ROWS;
    double *Z0 = malloc(N * C * sizeof(double)), *ZT = malloc(N * C * sizeof(double));
    double *zb = malloc(N * C * sizeof(double)), *g = malloc(C * sizeof(double));
    double *b = malloc(C * sizeof(double));
    int32_t *lab = malloc(N * sizeof(int32_t));
    for (size_t c = 0; c < C; c++) b[c] = (double)((long)gsl_rng_uniform_int(r, 129) - 64) / 64.0;
    for (size_t i = 0; i < N; i++) {
      double *z = zb + i * C; /* the logits with the bias */
      int32_t y = (int32_t)gsl_rng_uniform_int(r, C);
      for (size_t c = 0; c < C; c++) /* multiples of 2^-20: z_c - z_y is exact */
        z[c] = ldexp(round(ldexp(gsl_ran_gaussian(r, i % 3 ? 3.0 : 0.4), 20)), -20);
      size_t t0 = C > 12 ? 3 + 8 * (size_t)gsl_rng_uniform_int(r, C / 8 - 1) : 0, t1 = C - 1;
      switch (i) {
      case 0: /* ties: y is the first of them */
      case 1: /* ties: y is the second */
      case 2: /* ties without y, one in the last block */
        for (size_t c = 0; c < C; c++) z[c] = (double)((long)gsl_rng_uniform_int(r, 512) - 256) / 64.0;
        if (C > 12) {
          z[t0] = z[t0 + 8] = z[t0 + 9] = z[t1] = 6.5;
          y = (int32_t)(i == 0 ? t0 : i == 1 ? t0 + 9 : (t0 + 20) % C);
          if (i == 2 && (y == (int32_t)t1 || y == (int32_t)t0 + 8)) y = (int32_t)t0 + 1;
        } else {
          z[0] = z[2] = 6.5;
          y = i == 0 ? 0 : i == 1 ? 2 : 1;
        }
        break;
      case 3: /* y far ahead: loss near 1e-304 */
        for (size_t c = 0; c < C; c++) z[c] = -(double)gsl_rng_uniform_int(r, 64) / 8.0;
        z[y] = 700.0;
        break;
      case 4: /* y far ahead, the others below e^-708: subnormal loss, libm */
        for (size_t c = 0; c < C; c++) z[c] = -(double)gsl_rng_uniform_int(r, 64) / 8.0;
        z[y] = 710.0;
        break;
      case 5: /* huge spread, y not ahead: libm, subnormal entries */
        for (size_t c = 0; c < C; c++) z[c] = (double)((long)gsl_rng_uniform_int(r, 2048) - 1024) / 2.0;
        y = (int32_t)((size_t)(y + 1) % C);
        z[(size_t)y] = 0.0;
        break;
      case 6: /* every logit equal */
        for (size_t c = 0; c < C; c++) z[c] = 1.25;
        break;
      default:
        break;
      }
      lab[i] = y;
      for (size_t c = 0; c < C; c++) {
        Z0[i * C + c] = z[c] - b[c];
        z[c] = Z0[i * C + c] + b[c]; /* what the batch pass will see */
      }
    }
    for (int li = 0; li < 2; li++) {
      const ufm_loss_type *L = li ? &ufm_loss_mse : &ufm_loss_ce;
      double loss_i[LB_ROWS], margin[LB_ROWS], zstat[2 * LB_ROWS];
      int32_t pred[LB_ROWS];
      /* every vector width this CPU runs: the same bits as the SSE2 one */
      double *G2 = malloc(N * C * sizeof(double)), l2[LB_ROWS], m2[LB_ROWS], s2[2 * LB_ROWS];
      int32_t p2[LB_ROWS];
      for (int w = 2; w <= 8; w *= 2) {
        if (!ufm_loss_rows_width(w)) continue;
        memcpy(ZT, Z0, N * C * sizeof(double));
        batch_t(L, N, C, ZT, b, lab, loss_i, pred, margin, zstat, NULL, NULL);
        if (w == 2) {
          memcpy(G2, ZT, N * C * sizeof(double));
          memcpy(l2, loss_i, sizeof l2);
          memcpy(m2, margin, sizeof m2);
          memcpy(s2, zstat, sizeof s2);
          memcpy(p2, pred, sizeof p2);
        } else {
          printf("# %s C=%zu: width %d and 2 give the same bits\n", L->name, C, w);
          assert_memory_equal(ZT, G2, N * C * sizeof(double));
          assert_memory_equal(loss_i, l2, sizeof l2);
          assert_memory_equal(margin, m2, sizeof m2);
          assert_memory_equal(zstat, s2, sizeof s2);
          assert_memory_equal(pred, p2, sizeof p2);
        }
      }
      free(G2);
      ufm_loss_rows_width(0);
      memcpy(ZT, Z0, N * C * sizeof(double));
      double mean = batch_t(L, N, C, ZT, b, lab, loss_i, pred, margin, zstat, NULL, NULL);
      long double lsum = 0;
      for (size_t i = 0; i < N; i++) {
        const double *z = zb + i * C;
        double rl, rm, rz[2];
        int32_t rp;
        batch_reference(L, C, z, lab[i], 1.0 / (double)N, g, &rl, &rp, &rm, rz);
        lsum += rl;
        if (pred[i] != rp) {
          print_error("%s C=%zu row %zu: pred %d, first largest %d\n", L->name, C, i, pred[i], rp);
          fail();
        }
        assert_rel(margin[i], rm, tol, "margin", i, 0);
        assert_rel(loss_i[i], rl, tol, "loss", i, 0);
        assert_rel(zstat[2 * i], rz[0], tol, "||z||^2", i, 0);
        double zscale = fabs(z[lab[i]]);
        for (size_t c = 0; c < C; c++) zscale += fabs(z[c]) / (double)C;
        if (!(fabs(zstat[2 * i + 1] - rz[1]) <= tol * zscale)) {
          print_error("C=%zu row %zu: z_y - mean z = %.17g, reference %.17g\n", C, i,
                      zstat[2 * i + 1], rz[1]);
          fail();
        }
        for (size_t c = 0; c < C; c++) {
          assert_rel(ZT[i * C + c], g[c], tol, L->name, i, c);
          if (fabs(g[c]) > 1e-300)
            err_max = fmax(err_max, fabs(ZT[i * C + c] - g[c]) / fabs(g[c]));
        }
        if (li == 0 && i == 3) assert_true(loss_i[i] > 0 && loss_i[i] < 1e-300 && ZT[i * C + lab[i]] < 0);
      }
      assert_rel(mean, (double)(lsum / (long double)N), tol, "mean loss", 0, 0);
    }
    free(Z0);
    free(ZT);
    free(zb);
    free(g);
    free(b);
    free(lab);
  }
  printf("# batch pass against long double, seed %lu: largest relative error %.2e\n", seed, err_max);
  gsl_rng_free(r);

  /* a NaN logit: the loss and the gradient are NaN (libm's exp takes the row) */
  for (int li = 0; li < 2; li++) {
    const ufm_loss_type *L = li ? &ufm_loss_mse : &ufm_loss_ce;
    double z[100], l, mg, zs[2];
    int32_t y = 7, pr;
    for (size_t c = 0; c < 100; c++) z[c] = 0.01 * (double)c;
    z[42] = NAN;
    batch_t(L, 1, 100, z, NULL, &y, &l, &pr, &mg, zs, NULL, NULL);
    assert_true(isnan(l) && isnan(z[42]) && isnan(zs[0]));
    if (li == 0) assert_true(isnan(z[0]) && isnan(z[y]));
  }
}

/* C classes of N / C samples (the first N % C one more), W and H drawn
 * with this seed and scale. */
static ufm_model *spread_model(size_t C, size_t p, size_t N, int bias, unsigned long seed,
                               double scale)
{
  size_t *counts = malloc(C * sizeof *counts);
  for (size_t c = 0; c < C; c++) counts[c] = N / C + (c < N % C);
  ufm_model *m = ufm_model_alloc(C, p, counts, bias);
  free(counts);
  ufm_model_init_random(m, seed, scale);
  return m;
}

static double rel_diff(const double *x, const double *ref, size_t n)
{
  double d = 0.0, r = 0.0;
  for (size_t k = 0; k < n; k++) {
    d = fmax(d, fabs(x[k] - ref[k]));
    r = fmax(r, fabs(ref[k]));
  }
  return r > 0 ? d / r : d;
}

/* The fused small-C pass agrees with the three products to 1e-12 (relative
 * to the largest entry) in everything it returns, at shapes with a partial
 * last block of columns and with one to eight slots. */
static void test_fused_matches_products(void **s)
{
  (void)s;
  const size_t shapes[][3] = {{7, 45, 101}, {5, 19, 700},  {2, 3, 1},   {32, 70, 160},
                              {10, 64, 500}, {32, 20, 640}, {10, 64, 200}};
  const ufm_loss_type *losses[2] = {&ufm_loss_ce, &ufm_loss_mse};
  for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++)
    for (int li = 0; li < 2; li++)
      for (int bias = 0; bias < 2; bias++) {
        size_t C = shapes[q][0], p = shapes[q][1], N = shapes[q][2];
        unsigned long seed = 4711 + q;
        ufm_model *m = spread_model(C, p, N, bias, seed, 0.37);
        for (size_t c = 0; c < C && bias; c++) gsl_vector_set(m->b, c, 0.1 * (double)c - 0.23);
        ufm_problem pb = {losses[li], 2.385e-2, 1.7e-2, 3.1e-2};
        ufm_grad_ws *wf = ufm_grad_ws_alloc(C, p, m->N), *wp = ufm_grad_ws_alloc(C, p, m->N);
        wf->path = UFM_GRAD_FUSED;
        wp->path = UFM_GRAD_PRODUCTS;
        assert_int_equal(ufm_grad_eval(&pb, m, wf), UFM_OK);
        assert_int_equal(ufm_grad_eval(&pb, m, wp), UFM_OK);
        printf("# %s C=%zu p=%zu N=%zu bias=%d seed=%lu: gW %.1e gH %.1e\n", pb.loss->name, C, p,
               m->N, bias, seed, rel_diff(wf->gW->data, wp->gW->data, C * p),
               rel_diff(wf->gH->data, wp->gH->data, p * m->N));
        assert_true(rel_diff(wf->gW->data, wp->gW->data, C * p) < 1e-12);
        assert_true(rel_diff(wf->gH->data, wp->gH->data, p * m->N) < 1e-12);
        assert_true(rel_diff(wf->gb->data, wp->gb->data, C) < 1e-12);
        assert_true(rel_diff(wf->G->data, wp->G->data, C * m->N) < 1e-12);
        assert_true(rel_diff(wf->loss_i, wp->loss_i, m->N) < 1e-12);
        assert_true(rel_diff(wf->margin, wp->margin, m->N) < 1e-12);
        assert_true(rel_diff(wf->zstat, wp->zstat, 2 * m->N) < 1e-12);
        assert_memory_equal(wf->pred, wp->pred, m->N * sizeof(int32_t));
        assert_close(wf->loss, wp->loss, 1e-12, 0);
        assert_close(wf->gnorm2, wp->gnorm2, 1e-12, 0);
        assert_close(wf->normW2, wp->normW2, 1e-12, 0);
        assert_close(wf->normH2, wp->normH2, 1e-12, 0);
        assert_close(wf->normb2, wp->normb2, 1e-12, 0);
        assert_close(wf->gmax, wp->gmax, 1e-12, 0);
        assert_close(wf->thetamax, wp->thetamax, 1e-12, 0);
        ufm_grad_ws_free(wf);
        ufm_grad_ws_free(wp);
        ufm_model_free(m);
      }
}

/* The fused pass's AVX-512 kernels (where the CPU has AVX-512: the
 * default there) give the bits of its AVX2 kernels in everything the
 * evaluation returns: both losses, with and without bias, with the step of
 * H folded in (fold_lr) and without, at shapes with 1 and 2 slots, a
 * partial last block, odd C and p (the kernels take 4, 2 and 1 classes or
 * rows at a time), and grad_W in lanes (C p <= 1024) and not. Without
 * AVX-512 the workspace must not ask for them. */
static void test_fused512_bits(void **s)
{
  (void)s;
  if (!ufm_simd512_ok()) {
    ufm_grad_ws *ws = ufm_grad_ws_alloc(10, 64, 500);
    assert_int_equal(ws->fused512, 0);
    ufm_grad_ws_free(ws);
    printf("# no AVX-512 here: the AVX2 kernels only\n");
    return;
  }
  const size_t shapes[][3] = {{7, 45, 101}, {5, 19, 700}, {2, 3, 1},    {32, 70, 160},
                              {10, 64, 500}, {3, 1, 50},   {31, 33, 77}, {13, 6, 333}};
  const ufm_loss_type *losses[2] = {&ufm_loss_ce, &ufm_loss_mse};
  for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++)
    for (int li = 0; li < 2; li++)
      for (int bias = 0; bias < 2; bias++)
        for (int fold = 0; fold < 2; fold++) {
          const size_t C = shapes[q][0], p = shapes[q][1], N = shapes[q][2];
          ufm_model *m = spread_model(C, p, N, bias, 5150 + q, 0.45);
          for (size_t c = 0; c < C && bias; c++) gsl_vector_set(m->b, c, 0.07 * (double)c - 0.3);
          ufm_problem pb = {losses[li], 2.385e-2, 1.7e-2, 3.1e-2};
          ufm_grad_ws *a = ufm_grad_ws_alloc(C, p, N), *b = ufm_grad_ws_alloc(C, p, N);
          assert_int_equal(b->fused512, 1);
          a->path = b->path = UFM_GRAD_FUSED;
          a->fused512 = 0;
          if (fold) a->fold_lr = b->fold_lr = 0.37;
          assert_int_equal(ufm_grad_eval(&pb, m, a), UFM_OK);
          assert_int_equal(ufm_grad_eval(&pb, m, b), UFM_OK);
          assert_memory_equal(a->gW->data, b->gW->data, C * p * sizeof(double));
          assert_memory_equal(a->gH->data, b->gH->data, p * N * sizeof(double));
          assert_memory_equal(a->gb->data, b->gb->data, C * sizeof(double));
          assert_memory_equal(a->G->data, b->G->data, C * N * sizeof(double));
          assert_memory_equal(a->loss_i, b->loss_i, N * sizeof(double));
          assert_memory_equal(a->margin, b->margin, N * sizeof(double));
          assert_memory_equal(a->zstat, b->zstat, 2 * N * sizeof(double));
          assert_memory_equal(a->pred, b->pred, N * sizeof(int32_t));
          const double sa[] = {a->loss, a->normW2, a->normH2, a->normb2, a->gnorm2, a->gmax,
                               a->thetamax},
                       sb[] = {b->loss, b->normW2, b->normH2, b->normb2, b->gnorm2, b->gmax,
                               b->thetamax};
          assert_memory_equal(sa, sb, sizeof sa);
          assert_int_equal(a->h_next, b->h_next);
          assert_int_equal(b->h_next, fold);
          ufm_grad_ws_free(a);
          ufm_grad_ws_free(b);
          ufm_model_free(m);
        }
}

/* The products in column blocks agree with the three products in
 * everything they return: the per-sample records and the loss bit for bit
 * where the logits are (a block of Z is W times a block of H, each entry
 * the same dot product; checked to 1e-15), the gradients to 1e-13 of
 * their largest entry, the bias gradient (a sum over the samples in
 * another order) to 1e-13 of sum_i |G_ci|. Shapes: one block, a partial
 * last block, 1 to 4 slots; C on both sides of the fused pass's limit;
 * both losses, with and without bias (8 slots: test_blocks_threads). And
 * the path the shape chooses: the blocks keep no G (a forced other path
 * allocates it at its first evaluation). */
static void test_blocks_match_products(void **s)
{
  (void)s;
  const size_t shapes[][3] = {{33, 5, 7},    {3, 4, 700},    {40, 16, 2100},
                              {300, 2, 1301}, {1000, 9, 300}, {64, 40, 1100}};
  const ufm_loss_type *losses[2] = {&ufm_loss_ce, &ufm_loss_mse};
  for (size_t q = 0; q < sizeof shapes / sizeof shapes[0]; q++)
    for (int li = 0; li < 2; li++)
      for (int bias = 0; bias < 2; bias++) {
        const size_t C = shapes[q][0], p = shapes[q][1], N = shapes[q][2];
        ufm_model *m = spread_model(C, p, N, bias, 808 + q, 0.6);
        for (size_t c = 0; c < C && bias; c++) gsl_vector_set(m->b, c, 0.01 * (double)(c % 17) - 0.05);
        ufm_problem pb = {losses[li], 2.385e-2, 1.7e-2, 3.1e-2};
        ufm_grad_ws *wb = ufm_grad_ws_alloc(C, p, N), *wp = ufm_grad_ws_alloc(C, p, N);
        wb->path = UFM_GRAD_BLOCKS;
        wp->path = UFM_GRAD_PRODUCTS;
        assert_int_equal(ufm_grad_eval(&pb, m, wb), UFM_OK);
        assert_int_equal(ufm_grad_eval(&pb, m, wp), UFM_OK);
        assert_non_null(wp->G);
        double eb = 0.0;
        for (size_t c = 0; c < C; c++) {
          double a = 0.0;
          for (size_t i = 0; i < N; i++) a += fabs(gsl_matrix_get(wp->G, c, i));
          eb = fmax(eb, fabs(wb->gb->data[c] - wp->gb->data[c]) / (a > 0 ? a : 1.0));
        }
        const double eW = rel_diff(wb->gW->data, wp->gW->data, C * p);
        const double eH = rel_diff(wb->gH->data, wp->gH->data, p * N);
        printf("# blocks: %s C=%zu p=%zu N=%zu bias=%d (%zu columns a block, %zu slots): gW %.1e "
               "gH %.1e gb %.1e\n", pb.loss->name, C, p, N, bias, wb->bk_cols, wb->bk_nslot, eW,
               eH, eb);
        assert_true(eW < 1e-13 && eH < 1e-13 && eb < 1e-13);
        assert_true(rel_diff(wb->loss_i, wp->loss_i, N) < 1e-15);
        assert_true(rel_diff(wb->margin, wp->margin, N) < 1e-15);
        assert_true(rel_diff(wb->zstat, wp->zstat, 2 * N) < 1e-15);
        assert_memory_equal(wb->pred, wp->pred, N * sizeof(int32_t));
        assert_close(wb->loss, wp->loss, 1e-15, 0);
        assert_close(wb->gnorm2, wp->gnorm2, 1e-13, 0);
        assert_close(wb->normW2, wp->normW2, 1e-15, 0);
        assert_close(wb->normH2, wp->normH2, 1e-13, 0);
        assert_close(wb->normb2, wp->normb2, 1e-15, 0);
        assert_close(wb->gmax, wp->gmax, 1e-13, 0);
        assert_true(wb->thetamax == wp->thetamax);
        assert_int_equal(wb->h_next, 0);
        ufm_grad_ws_free(wb);
        ufm_grad_ws_free(wp);
        ufm_model_free(m);
      }
  assert_int_equal(ufm_grad_blocks_auto(1000, 8, 10000), 1);
  assert_int_equal(ufm_grad_blocks_auto(100, 512, 10000), 0); /* M */
  assert_int_equal(ufm_grad_blocks_auto(32, 8, 100000), 0);   /* the fused pass's */
  ufm_grad_ws *w = ufm_grad_ws_alloc(1000, 8, 10000);
  assert_null(w->G);
  assert_non_null(w->bk);
  ufm_grad_ws_free(w);
}

/* The column blocks give the same bits on 1 and 2 threads (gradients,
 * norms, maxima, loss, records and the folded next H), grad_W as the three
 * products give it (to 1e-13) with a slot of two blocks, with the step of H
 * folded in (gd: h_next, gH = H - lr grad_H, as the three products fold
 * it, to 1e-13) and not (ngd: its lr waits for the loss, no fold). */
static void test_blocks_threads(void **s)
{
  (void)s;
  const size_t C = 600, p = 4, N = 1800; /* 9 blocks of 216 columns in 8 slots */
  const int threads = ufm_threads();
  ufm_model *m = spread_model(C, p, N, 1, 31, 0.5);
  ufm_problem pb = {&ufm_loss_ce, 2.385e-2, 1.7e-2, 3.1e-2};
  for (int ngd = 0; ngd < 2; ngd++) {
    ufm_grad_ws *w[3];
    for (int k = 0; k < 3; k++) {
      w[k] = ufm_grad_ws_alloc(C, p, N);
      w[k]->path = k == 2 ? UFM_GRAD_PRODUCTS : UFM_GRAD_AUTO;
      w[k]->fold_lr = 0.3;
      w[k]->fold_ngd = ngd;
      ufm_set_threads(k == 1 ? 1 : 2);
      assert_int_equal(ufm_grad_eval(&pb, m, w[k]), UFM_OK);
    }
    ufm_set_threads(threads);
    assert_non_null(w[0]->bk); /* this shape takes the blocks */
    assert_true(w[0]->bk_nslot == 8 && w[0]->bk_cols < N / 8);
    assert_memory_equal(w[0]->gW->data, w[1]->gW->data, C * p * sizeof(double));
    assert_memory_equal(w[0]->gH->data, w[1]->gH->data, p * N * sizeof(double));
    assert_memory_equal(w[0]->gb->data, w[1]->gb->data, C * sizeof(double));
    assert_memory_equal(w[0]->loss_i, w[1]->loss_i, N * sizeof(double));
    assert_memory_equal(w[0]->zstat, w[1]->zstat, 2 * N * sizeof(double));
    assert_true(w[0]->normH2 == w[1]->normH2 && w[0]->normW2 == w[1]->normW2);
    assert_true(w[0]->gnorm2 == w[1]->gnorm2 && w[0]->gmax == w[1]->gmax);
    assert_true(w[0]->thetamax == w[1]->thetamax && w[0]->loss == w[1]->loss);
    /* 9 blocks in 8 slots: the slot of two adds its second block's grad_W */
    assert_true(rel_diff(w[0]->gW->data, w[2]->gW->data, C * p) < 1e-13);
    assert_close(w[0]->loss, w[2]->loss, 1e-15, 0);
    assert_int_equal(w[0]->h_next, !ngd);
    assert_int_equal(w[2]->h_next, 1); /* the products fold ngd's step too */
    double d = 0.0, r = 0.0;
    for (size_t k = 0; k < p * N; k++) {
      double next = ngd ? m->H->data[k] - 0.3 / w[2]->loss * w[0]->gH->data[k] : w[0]->gH->data[k];
      d = fmax(d, fabs(next - w[2]->gH->data[k]));
      r = fmax(r, fabs(w[2]->gH->data[k]));
    }
    printf("# blocks C=%zu p=%zu N=%zu (%s): 2 and 1 threads bit for bit; the next H %.1e from the "
           "three products'\n", C, p, N, ngd ? "ngd, not folded" : "gd, folded", d / r);
    assert_true(d / r < 1e-13);
    for (int k = 0; k < 3; k++) ufm_grad_ws_free(w[k]);
  }
  ufm_model_free(m);
}

/* grad_W's pieces beside the decay pass (grad.c, gradW_beside_decay) give
 * the bits of the plain order (ufm_gemm_long, then grad_H, then
 * decay_pass), on 1 and 2 threads: gradients, norms, maxima and the folded
 * next H, at shapes with C < p and C > p, with the H step folded in (gd)
 * and not (lr = 0, as for momentum). */
static void test_products_orders(void **s)
{
  (void)s;
  const size_t shapes[][3] = {{40, 64, 10000}, {80, 48, 8000}};
  const int threads = ufm_threads();
  for (size_t q = 0; q < 2; q++)
    for (int fold = 0; fold < 2; fold++) {
      const size_t C = shapes[q][0], p = shapes[q][1], N = shapes[q][2];
      ufm_model *m = spread_model(C, p, N, 1, 99 + q, 0.4);
      ufm_problem pb = {&ufm_loss_ce, 2.385e-2, 1.7e-2, 3.1e-2};
      ufm_grad_ws *w[3];
      for (int k = 0; k < 3; k++) {
        w[k] = ufm_grad_ws_alloc(C, p, N);
        w[k]->path = UFM_GRAD_PRODUCTS;
        w[k]->fold_lr = fold ? 0.3 : 0.0;
        assert_non_null(w[k]->gwork); /* these shapes take the tasks */
      }
      free(w[2]->gwork); /* the plain order */
      w[2]->gwork = NULL;
      for (int k = 0; k < 3; k++) {
        ufm_set_threads(k == 1 ? 1 : 2);
        assert_int_equal(ufm_grad_eval(&pb, m, w[k]), UFM_OK);
      }
      ufm_set_threads(threads);
      for (int k = 1; k < 3; k++) {
        assert_memory_equal(w[0]->gW->data, w[k]->gW->data, C * p * sizeof(double));
        assert_memory_equal(w[0]->gH->data, w[k]->gH->data, p * N * sizeof(double));
        assert_memory_equal(w[0]->gb->data, w[k]->gb->data, C * sizeof(double));
        assert_true(w[0]->normH2 == w[k]->normH2 && w[0]->normW2 == w[k]->normW2);
        assert_true(w[0]->gnorm2 == w[k]->gnorm2 && w[0]->gmax == w[k]->gmax);
        assert_true(w[0]->thetamax == w[k]->thetamax && w[0]->loss == w[k]->loss);
        assert_int_equal(w[0]->h_next, w[k]->h_next);
      }
      assert_int_equal(w[0]->h_next, fold);
      printf("# C=%zu p=%zu N=%zu, %s: tasks on 2 and 1 threads = the plain order, bit for bit\n",
             C, p, N, fold ? "H step folded in" : "gradient only");
      for (int k = 0; k < 3; k++) ufm_grad_ws_free(w[k]);
      ufm_model_free(m);
    }
}

/* One GD step is theta - lr grad(theta) for every block, taken at the same point. */
static void test_gd_step(void **s)
{
  (void)s;
  ufm_problem pb = {&ufm_loss_ce, 2.385e-2, 1.7e-2, 3.1e-2};
  ufm_model *m = small_model(1, 5), *m0 = small_model(1, 5);
  ufm_grad_ws *ws = ufm_grad_ws_alloc(3, 4, 7);
  ufm_optim *o = ufm_optim_alloc(&ufm_optim_gd, 3, 4, 7, 0.37, 0.0);
  ufm_grad_eval(&pb, m, ws);
  ufm_optim_iterate(o, m, ws);
  for (size_t k = 0; k < 12; k++) assert_true(m->W->data[k] == m0->W->data[k] - 0.37 * ws->gW->data[k]);
  for (size_t k = 0; k < 28; k++) assert_true(m->H->data[k] == m0->H->data[k] - 0.37 * ws->gH->data[k]);
  for (size_t k = 0; k < 3; k++) assert_true(m->b->data[k] == m0->b->data[k] - 0.37 * ws->gb->data[k]);
  ufm_optim_free(o);
  ufm_grad_ws_free(ws);
  ufm_model_free(m);
  ufm_model_free(m0);
}

/* Heavy ball, PyTorch convention: v1 = g0, v2 = mu v1 + g1; no bias: b stays 0. */
static void test_momentum_steps(void **s)
{
  (void)s;
  ufm_problem pb = {&ufm_loss_mse, 1.3e-2, 2.2e-2, 0.0};
  ufm_model *m = small_model(0, 8);
  ufm_grad_ws *ws = ufm_grad_ws_alloc(3, 4, 7);
  ufm_optim *o = ufm_optim_alloc(&ufm_optim_momentum, 3, 4, 7, 0.21, 0.85);
  double W0[12], g0[12], W1[12];
  memcpy(W0, m->W->data, sizeof W0);
  ufm_grad_eval(&pb, m, ws);
  memcpy(g0, ws->gW->data, sizeof g0);
  ufm_optim_iterate(o, m, ws);
  for (size_t k = 0; k < 12; k++) assert_true(m->W->data[k] == W0[k] - 0.21 * g0[k]);
  memcpy(W1, m->W->data, sizeof W1);
  ufm_grad_eval(&pb, m, ws);
  ufm_optim_iterate(o, m, ws);
  for (size_t k = 0; k < 12; k++) {
    double v = 0.85 * g0[k] + ws->gW->data[k];
    assert_true(m->W->data[k] == W1[k] - 0.21 * v);
  }
  for (size_t c = 0; c < 3; c++) assert_true(m->b->data[c] == 0.0);
  ufm_optim_free(o);
  ufm_grad_ws_free(ws);
  ufm_model_free(m);
}

/* A non-finite state is reported as divergence, not as a number. */
static void test_nonfinite_detected(void **s)
{
  (void)s;
  ufm_problem pb = {&ufm_loss_ce, 1e-3, 1e-3, 0.0};
  ufm_model *m = small_model(0, 3);
  ufm_grad_ws *ws = ufm_grad_ws_alloc(3, 4, 7);
  m->H->data[5] = NAN;
  assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_EDIVERGED);
  m->H->data[5] = 1e200;
  m->W->data[2] = 1e200;
  assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_EDIVERGED);
  ufm_grad_ws_free(ws);
  ufm_model_free(m);
  /* a NaN in the last slot of column blocks (and the same on the three
   * products): the largest entries of state and gradient are NaN */
  size_t counts[40];
  for (size_t c = 0; c < 40; c++) counts[c] = 250;
  m = ufm_model_alloc(40, 3, counts, 1);
  ufm_model_init_random(m, 5, 0.5);
  m->H->data[1 * 10000 + 9950] = NAN;
  for (int path = UFM_GRAD_PRODUCTS; path <= UFM_GRAD_BLOCKS; path += UFM_GRAD_BLOCKS - UFM_GRAD_PRODUCTS) {
    ws = ufm_grad_ws_alloc(40, 3, 10000);
    ws->path = path;
    assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_EDIVERGED);
    assert_true(isnan(ws->thetamax) && isnan(ws->gmax));
    if (path == UFM_GRAD_BLOCKS) assert_true(ws->bk_nslot == 8); /* 10 blocks of 1024 */
    ufm_grad_ws_free(ws);
  }
  ufm_model_free(m);
}

/* The bias gradient G 1 that ufm_loss_batch sums as it writes G: the
 * same rows and records as without it, the groups of the documented order
 * bit for bit, 1 and 2 threads bit for bit, and the exact sum of the rows
 * (long double) to rounding; 2 (N = 70: 35 samples a group), 4 and the
 * maximum of 64 groups (4 groups of 250 samples: blocks of 8 samples that
 * straddle no group, a last one of 2). */
static void test_batch_gsum(void **state)
{
  (void)state;
  const size_t C = 37, Ns[] = {70, 1000, 40000};
  const int threads = ufm_threads();
  for (size_t t = 0; t < sizeof Ns / sizeof Ns[0]; t++) {
    const size_t N = Ns[t], ng = ufm_loss_groups(N);
    assert_true(ng == (N <= 256 ? 2 : N == 1000 ? 4 : 64)); /* at least 2 from N = 64 */
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, 4242 + N);
    double *Z0 = malloc(N * C * sizeof(double)), *ZT = malloc(N * C * sizeof(double)),
           *Z1 = malloc(N * C * sizeof(double)), *work = malloc(ng * C * sizeof(double)),
           b[37], gs[37], gs1[37], want[37];
    double *li = malloc(N * sizeof(double)), *li1 = malloc(N * sizeof(double)),
           *mg = malloc(N * sizeof(double)), *mg1 = malloc(N * sizeof(double));
    int32_t *lab = malloc(N * sizeof(int32_t)), *pr = malloc(N * sizeof(int32_t)),
            *pr1 = malloc(N * sizeof(int32_t));
    for (size_t i = 0; i < N * C; i++) Z0[i] = gsl_ran_gaussian(r, 3.0);
    for (size_t i = 0; i < N; i++) lab[i] = (int32_t)gsl_rng_uniform_int(r, C);
    for (size_t c = 0; c < C; c++) b[c] = gsl_ran_gaussian(r, 0.5);
    for (int li_ = 0; li_ < 2; li_++) {
      const ufm_loss_type *L = li_ ? &ufm_loss_mse : &ufm_loss_ce;
      memcpy(Z1, Z0, N * C * sizeof(double));
      batch_t(L, N, C, Z1, b, lab, li1, pr1, mg1, NULL, NULL, NULL);
      for (int th = 1; th <= 2; th++) {
        ufm_set_threads(th);
        memcpy(ZT, Z0, N * C * sizeof(double));
        batch_t(L, N, C, ZT, b, lab, li, pr, mg, NULL, th == 1 ? gs1 : gs, work);
        assert_memory_equal(ZT, Z1, N * C * sizeof(double));
        assert_memory_equal(li, li1, N * sizeof(double));
        assert_memory_equal(mg, mg1, N * sizeof(double));
        assert_memory_equal(pr, pr1, N * sizeof(int32_t));
      }
      ufm_set_threads(threads);
      printf("# %s N=%zu, %zu groups: 1 and 2 threads give the same bits\n", L->name, N, ng);
      assert_memory_equal(gs, gs1, sizeof gs);
      for (size_t c = 0; c < C; c++) {
        double tot = 0.0; /* the documented order */
        long double ex = 0.0L, mag = 0.0L;
        for (size_t q = 0; q < ng; q++) {
          double part = 0.0;
          for (size_t i = q * N / ng; i < (q + 1) * N / ng; i++) {
            part += Z1[i * C + c];
            ex += Z1[i * C + c];
            mag += fabsl((long double)Z1[i * C + c]);
          }
          tot = q == 0 ? part : tot + part;
        }
        want[c] = tot;
        if (!(fabsl((long double)gs[c] - ex) <= 1e-15L * (long double)N * mag)) {
          print_error("%s N=%zu class %zu: G 1 = %.17g, exact %.17Lg\n", L->name, N, c, gs[c], ex);
          fail();
        }
      }
      assert_memory_equal(gs, want, sizeof want);
    }
    free(Z0);
    free(ZT);
    free(Z1);
    free(work);
    free(li);
    free(li1);
    free(mg);
    free(mg1);
    free(lab);
    free(pr);
    free(pr1);
    gsl_rng_free(r);
  }
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_grad_ce_nobias),   cmocka_unit_test(test_grad_ce_bias),
      cmocka_unit_test(test_grad_mse_nobias),  cmocka_unit_test(test_grad_mse_bias),
      cmocka_unit_test(test_objective_value),  cmocka_unit_test(test_ce_extremes),
      cmocka_unit_test(test_gd_step),          cmocka_unit_test(test_momentum_steps),
      cmocka_unit_test(test_nonfinite_detected), cmocka_unit_test(test_fused_matches_products),
      cmocka_unit_test(test_fused512_bits),
      cmocka_unit_test(test_products_orders),  cmocka_unit_test(test_blocks_match_products),
      cmocka_unit_test(test_blocks_threads),
      cmocka_unit_test(test_batch_reference),  cmocka_unit_test(test_batch_gsum),
  };
  return cmocka_run_group_tests_name("loss", tests, NULL, NULL);
}
