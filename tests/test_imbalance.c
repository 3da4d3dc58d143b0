/* test_imbalance.c -- imbalanced classes: the SELI reference, the imbalance metrics on an
 * exact SELI state, the minority-collapse threshold on both sides, the layer-peeled
 * projections, and normalised GD. */
#include "testutil.h"

#include "common.h"
#include "constraint.h"
#include "geometry.h"
#include "grad.h"
#include "metrics.h"
#include "model.h"
#include "optim.h"

#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_blas.h>
#include <gsl/gsl_eigen.h>

/* Balanced counts: SELI is the simplex ETF, W W^T = sqrt(n) P, the mean Gram
 * P / sqrt(n), ||Zhat||_* = (C-1) sqrt(n). */
static void test_seli_balanced_is_etf(void **s)
{
  (void)s;
  const size_t C = 6, n = 7, counts[6] = {7, 7, 7, 7, 7, 7};
  gsl_matrix *WW = gsl_matrix_alloc(C, C), *K = gsl_matrix_alloc(C, C);
  gsl_vector *sv = gsl_vector_alloc(C);
  double nuc;
  assert_int_equal(ufm_seli(C, counts, sv, WW, K, &nuc), 0);
  assert_close(nuc, (C - 1) * sqrt((double)n), 1e-13, 0);
  for (size_t a = 0; a < C; a++)
    for (size_t b = 0; b < C; b++) {
      double P = (a == b) - 1.0 / (double)C;
      assert_close(gsl_matrix_get(WW, a, b), sqrt((double)n) * P, 1e-12, 1e-14);
      assert_close(gsl_matrix_get(K, a, b), P / sqrt((double)n), 1e-12, 1e-14);
    }
  assert_close(gsl_vector_get(sv, C - 1), 0.0, 0, 0);
  gsl_matrix_free(WW);
  gsl_matrix_free(K);
  gsl_vector_free(sv);
}

/* Counts (2,1,1) by hand: P D P = (1/9)[[10,-5,-5],[-5,7,-2],[-5,-2,7]] with
 * eigenpairs 5/3 on (2,-1,-1)/sqrt6 and 1 on (0,1,-1)/sqrt2: singular values
 * sqrt(5/3), 1; W W^T = u1 u1^T + sqrt(5/3) u2 u2^T. */
static void test_seli_hand_case(void **s)
{
  (void)s;
  const size_t counts[3] = {2, 1, 1};
  gsl_matrix *WW = gsl_matrix_alloc(3, 3), *K = gsl_matrix_alloc(3, 3);
  gsl_vector *sv = gsl_vector_alloc(3);
  double nuc;
  ufm_seli(3, counts, sv, WW, K, &nuc);
  const double r = sqrt(5.0 / 3.0);
  assert_close(gsl_vector_get(sv, 0), r, 1e-14, 0);
  assert_close(gsl_vector_get(sv, 1), 1.0, 1e-14, 0);
  assert_close(nuc, 1.0 + r, 1e-14, 0);
  const double u1[3] = {0, M_SQRT1_2, -M_SQRT1_2}, u2[3] = {2 / sqrt(6.0), -1 / sqrt(6.0), -1 / sqrt(6.0)};
  for (int a = 0; a < 3; a++)
    for (int b = 0; b < 3; b++) {
      assert_close(gsl_matrix_get(WW, a, b), u1[a] * u1[b] + r * u2[a] * u2[b], 1e-13, 1e-15);
      assert_close(gsl_matrix_get(K, a, b), u1[a] * u1[b] + u2[a] * u2[b] / r, 1e-13, 1e-15);
    }
  gsl_matrix_free(WW);
  gsl_matrix_free(K);
  gsl_vector_free(sv);
}

/* Without W W^T or K, ufm_seli takes the eigenvalues alone (no
 * eigenvectors): its singular values agree with the full decomposition's
 * to 1e-13 of the largest, and its nuclear norm with the trace of the full
 * path's W W^T (= U L U^T, positive semidefinite) to 1e-12, at C = 150 with
 * every count distinct (more than C/2 values: the C x C eigenproblem). */
static void test_seli_values_only(void **s)
{
  (void)s;
  const size_t C = 150;
  size_t counts[150];
  for (size_t c = 0; c < C; c++) counts[c] = 1000 + 7 * c * c % 991;
  gsl_vector *sv = gsl_vector_alloc(C), *sv0 = gsl_vector_alloc(C);
  gsl_matrix *WW = gsl_matrix_alloc(C, C);
  double nuc = 0.0, nuc0 = 0.0, tr = 0.0, es = 0.0;
  assert_int_equal(ufm_seli(C, counts, sv, NULL, NULL, &nuc), 0);
  assert_int_equal(ufm_seli(C, counts, sv0, WW, NULL, &nuc0), 0);
  for (size_t k = 0; k < C; k++) {
    es = fmax(es, fabs(gsl_vector_get(sv, k) - gsl_vector_get(sv0, k)));
    tr += gsl_matrix_get(WW, k, k);
  }
  es /= gsl_vector_get(sv0, 0);
  printf("# values only, C = %zu: singular values %.1e, nuclear %.1e from the trace of W W^T\n", C,
         es, fabs(nuc - tr) / tr);
  assert_true(es < 1e-13);
  assert_true(gsl_vector_get(sv, C - 1) == 0.0 && gsl_vector_get(sv, C - 2) > 0.0);
  assert_true(fabs(nuc - tr) < 1e-12 * tr && fabs(nuc - nuc0) < 1e-12 * nuc0);
  gsl_vector_free(sv);
  gsl_vector_free(sv0);
  gsl_matrix_free(WW);
}

/* Counts with few distinct values (C/2 or fewer: step imbalance, three
 * values with a class alone, C = 101): the G x G reduction that ufm_seli
 * then uses gives the singular values, nuclear norm, W W^T and K of the
 * eigendecomposition of the C x C matrix P D P to 1e-12 of their scale, and
 * W W^T, K exactly symmetric. */
static void test_seli_grouped(void **s)
{
  (void)s;
  size_t c1[20], c2[8] = {5, 5, 9, 5, 3, 3, 5, 3}, c3[101];
  for (size_t c = 0; c < 20; c++) c1[c] = c < 10 ? 20 : 2;
  for (size_t c = 0; c < 101; c++) c3[c] = c % 2 ? 7 : 1;
  const size_t *cs[3] = {c1, c2, c3}, Cs[3] = {20, 8, 101};
  for (int t = 0; t < 3; t++) {
    const size_t C = Cs[t];
    gsl_matrix *WW = gsl_matrix_alloc(C, C), *K = gsl_matrix_alloc(C, C);
    gsl_matrix *WW0 = gsl_matrix_alloc(C, C), *K0 = gsl_matrix_alloc(C, C);
    gsl_vector *sv = gsl_vector_alloc(C), *sv0 = gsl_vector_alloc(C);
    double nuc, nuc0, ew = 0.0, ek = 0.0, es = 0.0;
    assert_int_equal(ufm_seli(C, cs[t], sv, WW, K, &nuc), 0);
    assert_int_equal(ufm_seli_general(C, cs[t], sv0, WW0, K0, &nuc0, 1), 0);
    for (size_t a = 0; a < C; a++) {
      es = fmax(es, fabs(gsl_vector_get(sv, a) - gsl_vector_get(sv0, a)));
      for (size_t b = 0; b < C; b++) {
        ew = fmax(ew, fabs(gsl_matrix_get(WW, a, b) - gsl_matrix_get(WW0, a, b)));
        ek = fmax(ek, fabs(gsl_matrix_get(K, a, b) - gsl_matrix_get(K0, a, b)));
        assert_true(gsl_matrix_get(WW, a, b) == gsl_matrix_get(WW, b, a));
        assert_true(gsl_matrix_get(K, a, b) == gsl_matrix_get(K, b, a));
      }
    }
    printf("# SELI grouped against eigen, C = %zu: sv %.1e, nuclear %.1e, W W^T %.1e, K %.1e\n", C, es,
           fabs(nuc - nuc0), ew, ek);
    const double top = gsl_vector_get(sv0, 0);
    assert_true(es < 1e-12 * top);
    assert_close(nuc, nuc0, 1e-12, 0);
    assert_true(ew < 1e-12 * top);
    assert_true(ek < 1e-12);
    gsl_matrix_free(WW), gsl_matrix_free(K), gsl_matrix_free(WW0), gsl_matrix_free(K0);
    gsl_vector_free(sv), gsl_vector_free(sv0);
  }
}

/* Many distinct counts (C = 200: the eigen-decomposition of P D P is
 * LAPACK's where built in, Jacobi otherwise): W W^T squared is P D P,
 * W W^T K is P (both to 1e-12 of their scale), both are exactly
 * symmetric, the nuclear norm is the trace of W W^T; and
 * ufm_eigen_lapack, where it runs, gives A V = V diag(ev), V^T V = I. */
static void test_seli_many_counts(void **s)
{
  (void)s;
  const size_t C = 200;
  size_t counts[200];
  double N = 0.0;
  for (size_t c = 0; c < C; c++) {
    counts[c] = 1 + (c * 37) % 151;
    N += (double)counts[c];
  }
  gsl_matrix *WW = gsl_matrix_alloc(C, C), *K = gsl_matrix_alloc(C, C), *X = gsl_matrix_alloc(C, C);
  gsl_vector *sv = gsl_vector_alloc(C);
  double nuc, tr = 0.0;
  assert_int_equal(ufm_seli(C, counts, sv, WW, K, &nuc), 0);
  for (size_t a = 0; a < C; a++) {
    tr += gsl_matrix_get(WW, a, a);
    for (size_t b = 0; b < a; b++) {
      assert_true(gsl_matrix_get(WW, a, b) == gsl_matrix_get(WW, b, a));
      assert_true(gsl_matrix_get(K, a, b) == gsl_matrix_get(K, b, a));
    }
  }
  assert_close(nuc, tr, 1e-12, 0);
  assert_close(gsl_vector_get(sv, C - 1), 0.0, 0, 0);
  double err1 = 0.0, err2 = 0.0;
  gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, 1.0, WW, WW, 0.0, X);
  for (size_t a = 0; a < C; a++)
    for (size_t b = 0; b < C; b++) {
      const double pdp = (a == b ? (double)counts[a] : 0.0) -
                         ((double)counts[a] + (double)counts[b]) / (double)C + N / ((double)C * C);
      err1 = fmax(err1, fabs(gsl_matrix_get(X, a, b) - pdp));
    }
  gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, 1.0, WW, K, 0.0, X);
  for (size_t a = 0; a < C; a++)
    for (size_t b = 0; b < C; b++)
      err2 = fmax(err2, fabs(gsl_matrix_get(X, a, b) - ((a == b) - 1.0 / (double)C)));
  printf("# SELI, C = %zu distinct-ish counts: |WW^2 - PDP| %.2e (max count 151), |WW K - P| %.2e\n",
         C, err1, err2);
  assert_true(err1 < 1e-12 * 151.0);
  assert_true(err2 < 1e-12);
  /* the LAPACK eigensolver on P D P itself, if built in */
  gsl_matrix *A = gsl_matrix_alloc(C, C), *V = gsl_matrix_alloc(C, C);
  gsl_vector *ev = gsl_vector_alloc(C);
  for (size_t a = 0; a < C; a++)
    for (size_t b = 0; b < C; b++)
      gsl_matrix_set(A, a, b, (a == b ? (double)counts[a] : 0.0) -
                                  ((double)counts[a] + (double)counts[b]) / (double)C +
                                  N / ((double)C * C));
  if (ufm_eigen_lapack(A, ev, V) == 0) {
    double r = 0.0, o = 0.0;
    gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, 1.0, A, V, 0.0, X);
    for (size_t a = 0; a < C; a++)
      for (size_t k = 0; k < C; k++)
        r = fmax(r, fabs(gsl_matrix_get(X, a, k) - gsl_vector_get(ev, k) * gsl_matrix_get(V, a, k)));
    gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, V, V, 0.0, X);
    for (size_t a = 0; a < C; a++)
      for (size_t b = 0; b < C; b++) o = fmax(o, fabs(gsl_matrix_get(X, a, b) - (a == b)));
    for (size_t k = 1; k < C; k++) assert_true(gsl_vector_get(ev, k - 1) <= gsl_vector_get(ev, k));
    printf("# dsyevd on P D P: |A V - V diag(ev)| %.2e, |V^T V - I| %.2e\n", r, o);
    assert_true(r < 1e-11 * 151.0);
    assert_true(o < 1e-12);
  } else {
    printf("# built without LAPACK: ufm_seli used the Jacobi solver\n");
  }
  gsl_matrix_free(A);
  gsl_matrix_free(V);
  gsl_vector_free(ev);
  gsl_matrix_free(WW);
  gsl_matrix_free(K);
  gsl_matrix_free(X);
  gsl_vector_free(sv);
}

/* An exact SELI state: W = U L^{1/2} Q^T, h_i = Q L^{-1/2} U^T zhat_{y_i}, so
 * W W^T = U L U^T, H^T H = V L V^T and W H = Zhat: seli_W, seli_H and seli_Z
 * vanish (to their ~1e-8 resolution for H and Z), the nmargin is 1/||Zhat||_*. */
static void test_metrics_on_seli_state(void **s)
{
  (void)s;
  const size_t C = 4, p = 6, counts[4] = {9, 9, 2, 2};
  ufm_model *m = ufm_model_alloc(C, p, counts, 0);
  gsl_matrix *WW = gsl_matrix_alloc(C, C), *U = gsl_matrix_alloc(C, C), *Ws = gsl_matrix_alloc(C, C);
  gsl_vector *ev = gsl_vector_alloc(C);
  ufm_seli(C, counts, NULL, WW, NULL, NULL);
  /* U L U^T's eigenvectors: U, eigenvalues L */
  gsl_eigen_symmv_workspace *w = gsl_eigen_symmv_alloc(C);
  gsl_matrix_memcpy(Ws, WW);
  gsl_eigen_symmv(Ws, ev, U, w);
  gsl_eigen_symmv_free(w);
  for (size_t c = 0; c < C; c++)
    for (size_t k = 0; k < C; k++) {
      double l = gsl_vector_get(ev, k);
      gsl_matrix_set(m->W, c, k, l > 1e-12 ? gsl_matrix_get(U, c, k) * sqrt(l) : 0.0);
    }
  for (size_t i = 0; i < m->N; i++)
    for (size_t k = 0; k < C; k++) {
      double l = gsl_vector_get(ev, k), v = 0.0;
      if (l <= 1e-12) continue;
      for (size_t c = 0; c < C; c++)
        v += gsl_matrix_get(U, c, k) * (((int32_t)c == m->labels[i]) - 1.0 / (double)C);
      gsl_matrix_set(m->H, k, i, v / sqrt(l));
    }
  ufm_problem pb = {&ufm_loss_ce, 0, 0, 0};
  ufm_grad_ws *ws = ufm_grad_ws_alloc(C, p, m->N);
  ufm_metrics_ws *mw = ufm_metrics_ws_alloc(C, p, m->N);
  double out[UFM_NMETRICS], nuc;
  ufm_grad_eval(&pb, m, ws);
  ufm_metrics_eval(&pb, m, ws, mw, out);
  ufm_seli(C, counts, NULL, NULL, NULL, &nuc);
  printf("# SELI state: seli_W %.2e seli_H %.2e seli_Z %.2e etf_W %.3f\n", out[UFM_M_SELI_W],
         out[UFM_M_SELI_H], out[UFM_M_SELI_Z], out[UFM_M_ETF_W]);
  assert_true(out[UFM_M_SELI_W] < 1e-13);
  assert_true(out[UFM_M_SELI_H] < 3e-8);
  assert_true(out[UFM_M_SELI_Z] < 3e-8);
  assert_true(out[UFM_M_ETF_W] > 0.1); /* imbalanced: SELI is not the ETF */
  /* W H = Zhat: margin 1 for every sample; nmargin = 1 / ||Zhat||_* */
  assert_close(out[UFM_M_MARGIN], 1.0, 1e-12, 0);
  assert_close(out[UFM_M_NMARGIN], 1.0 / nuc, 1e-12, 0);
  /* two minority classes of the same size: their classifiers' cosine */
  double c23 = gsl_matrix_get(WW, 2, 3) / sqrt(gsl_matrix_get(WW, 2, 2) * gsl_matrix_get(WW, 3, 3));
  assert_close(out[UFM_M_MC_COS_W], c23, 1e-12, 1e-14);
  ufm_metrics_ws_free(mw);
  ufm_grad_ws_free(ws);
  gsl_matrix_free(WW);
  gsl_matrix_free(U);
  gsl_matrix_free(Ws);
  gsl_vector_free(ev);
  ufm_model_free(m);
}

/* Minority collapse on each side of sqrt(n_B) = N sqrt(lambda_W lambda_H):
 * C = 4, two majority classes of 100, two minority of 4 (N = 208), so the
 * threshold is sqrt(lambda_W lambda_H) = 2/208; runs at 0.7 and 1.4 times it. */
static double run_mc(double lambda_W)
{
  const size_t counts[4] = {100, 100, 4, 4};
  ufm_model *m = ufm_model_alloc(4, 8, counts, 1);
  ufm_model_init_random(m, 11, 0.1);
  ufm_problem pb = {&ufm_loss_ce, lambda_W, 0.01, 0.01};
  ufm_grad_ws *ws = ufm_grad_ws_alloc(4, 8, m->N);
  ufm_metrics_ws *mw = ufm_metrics_ws_alloc(4, 8, m->N);
  ufm_optim *o = ufm_optim_alloc(&ufm_optim_momentum, 4, 8, m->N, 1.0, 0.9);
  for (int t = 0; t < 6000; t++) {
    ufm_grad_eval(&pb, m, ws);
    ufm_optim_iterate(o, m, ws);
  }
  double out[UFM_NMETRICS];
  ufm_grad_eval(&pb, m, ws);
  ufm_metrics_eval(&pb, m, ws, mw, out);
  printf("# lambda_W %.4g: mc_dist_W %.3g, mc_cos_W %.6f, grad %.2e\n", lambda_W,
         out[UFM_M_MC_DIST_W], out[UFM_M_MC_COS_W], out[UFM_M_GRAD_NORM]);
  assert_true(out[UFM_M_GRAD_NORM] < 1e-9);
  ufm_optim_free(o);
  ufm_metrics_ws_free(mw);
  ufm_grad_ws_free(ws);
  ufm_model_free(m);
  return out[UFM_M_MC_DIST_W];
}

static void test_minority_collapse_threshold(void **s)
{
  (void)s;
  const double sstar = 2.0 / 208.0, lH = 0.01;
  double below = run_mc(pow(0.7 * sstar, 2) / lH), above = run_mc(pow(1.4 * sstar, 2) / lH);
  assert_true(below > 1e-2); /* distinct minority classifiers */
  assert_true(above < 1e-6); /* identical */
}

/* The projections: feasible points stay; infeasible ones land on the
 * boundary in the KKT form x_i = h_i / (1 + nu a_{y_i}). */
static void test_projections(void **s)
{
  (void)s;
  const size_t counts[3] = {5, 2, 3};
  ufm_model *m = ufm_model_alloc(3, 4, counts, 0);
  ufm_model_init_random(m, 5, 1.7);
  double before = ufm_constraint_H_value(m);
  ufm_model *h0 = ufm_model_alloc(3, 4, counts, 0);
  gsl_matrix_memcpy(h0->H, m->H);
  assert_close(ufm_project_H(m, 2.0 * before), 0.0, 0, 0); /* feasible: unchanged */
  assert_memory_equal(m->H->data, h0->H->data, 4 * 10 * sizeof(double));
  double E = 0.2385 * before;
  double nu = ufm_project_H(m, E);
  assert_true(nu > 0);
  assert_close(ufm_constraint_H_value(m), E, 1e-12, 0);
  for (size_t c = 0; c < 3; c++) {
    double a = 1.0 / (3.0 * (double)counts[c]);
    for (size_t i = m->offset[c]; i < m->offset[c + 1]; i++)
      for (size_t k = 0; k < 4; k++)
        assert_close(gsl_matrix_get(m->H, k, i), gsl_matrix_get(h0->H, k, i) / (1 + nu * a), 1e-12, 1e-15);
  }
  double w2 = 0;
  for (size_t k = 0; k < 12; k++) w2 += m->W->data[k] * m->W->data[k];
  ufm_project_W(m, 0.5 * w2 / 3.0);
  double w2b = 0;
  for (size_t k = 0; k < 12; k++) w2b += m->W->data[k] * m->W->data[k];
  assert_close(w2b / 3.0, 0.5 * w2 / 3.0, 1e-13, 0);
  ufm_model_free(m);
  ufm_model_free(h0);
}

/* Normalised GD: one step is theta - (lr / loss) grad. */
static void test_ngd_step(void **s)
{
  (void)s;
  const size_t counts[3] = {3, 3, 3};
  ufm_model *m = ufm_model_alloc(3, 4, counts, 0), *m0 = ufm_model_alloc(3, 4, counts, 0);
  ufm_model_init_random(m, 9, 1.0);
  ufm_model_init_random(m0, 9, 1.0);
  ufm_problem pb = {&ufm_loss_ce, 0, 0, 0};
  ufm_grad_ws *ws = ufm_grad_ws_alloc(3, 4, 9);
  ufm_optim *o = ufm_optim_alloc(&ufm_optim_ngd, 3, 4, 9, 0.37, 0);
  ufm_grad_eval(&pb, m, ws);
  ufm_optim_iterate(o, m, ws);
  double lr = 0.37 / ws->loss;
  for (size_t k = 0; k < 12; k++) assert_true(m->W->data[k] == m0->W->data[k] - lr * ws->gW->data[k]);
  for (size_t k = 0; k < 36; k++) assert_true(m->H->data[k] == m0->H->data[k] - lr * ws->gH->data[k]);
  ufm_optim_free(o);
  ufm_grad_ws_free(ws);
  ufm_model_free(m);
  ufm_model_free(m0);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_seli_balanced_is_etf), cmocka_unit_test(test_seli_hand_case),
      cmocka_unit_test(test_seli_many_counts),   cmocka_unit_test(test_seli_grouped),
      cmocka_unit_test(test_seli_values_only),
      cmocka_unit_test(test_metrics_on_seli_state), cmocka_unit_test(test_minority_collapse_threshold),
      cmocka_unit_test(test_projections),           cmocka_unit_test(test_ngd_step),
  };
  return cmocka_run_group_tests_name("imbalance", tests, NULL, NULL);
}
