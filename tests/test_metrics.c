/* test_metrics.c -- every metric on configurations with known answers, and against a brute-force reference.
 *
 * 1. an exact simplex ETF (randomly rotated), features collapsed onto the
 *    classifier: every NC quantity is 0;
 * 2. a 3-class, 2-dimensional case computed by hand;
 * 3. random states of several shapes (p > C, p = C-1, p < C-1, C = 2,
 *    imbalanced, several tiles and chunks of D D^T, several column blocks
 *    with p > N) against a direct implementation of SPEC section 2 that
 *    forms the p x p matrices Sigma_W, Sigma_B (fine at test sizes);
 * 4. the two SVDs (LAPACK's dgesdd, GSL's) and the LQ path give the same
 *    metrics, the LQ path is taken exactly where M's rank is certified,
 *    and the parallel regions give the same bits on 1 and 2 threads.
 */
#include "testutil.h"

#include "common.h"
#include "gemm.h"
#include "geometry.h"
#include "grad.h"
#include "metrics.h"
#include "model.h"
#include "version.h"

#include <float.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_eigen.h>
#include <gsl/gsl_linalg.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

static void eval(const ufm_problem *pb, const ufm_model *m, double *out)
{
  ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
  ufm_metrics_ws *mw = ufm_metrics_ws_alloc(m->C, m->p, m->N);
  assert_int_equal(ufm_grad_eval(pb, m, ws), UFM_OK);
  ufm_metrics_eval(pb, m, ws, mw, out);
  ufm_metrics_ws_free(mw);
  ufm_grad_ws_free(ws);
}

/* ------------------------------------------------------------ 1. exact ETF */

/* W = E R with E a simplex ETF (C x p) and R a random orthogonal p x p;
 * h_i = a w_{y_i}. */
static void etf_case(size_t C, size_t p, size_t n, int bias)
{
  size_t *counts = malloc(C * sizeof *counts);
  for (size_t c = 0; c < C; c++) counts[c] = n;
  ufm_model *m = ufm_model_alloc(C, p, counts, bias);
  gsl_matrix *E = gsl_matrix_alloc(C, p), *A = gsl_matrix_alloc(p, p), *R = gsl_matrix_alloc(p, p);
  gsl_vector *tau = gsl_vector_alloc(p);
  assert_int_equal(ufm_etf(E), 0);
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 4242);
  for (size_t k = 0; k < p * p; k++) A->data[k] = gsl_ran_gaussian(r, 1.0);
  gsl_linalg_QR_decomp(A, tau);
  gsl_matrix *Rt = gsl_matrix_alloc(p, p);
  gsl_linalg_QR_unpack(A, tau, R, Rt);
  gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, 1.0, E, R, 0.0, m->W);
  const double a = 2.385;
  for (size_t i = 0; i < m->N; i++)
    for (size_t k = 0; k < p; k++) gsl_matrix_set(m->H, k, i, a * gsl_matrix_get(m->W, m->labels[i], k));
  double out[UFM_NMETRICS];
  ufm_problem pb = {&ufm_loss_ce, 1e-3, 1e-3, 0};
  eval(&pb, m, out);
  printf("# ETF C=%zu p=%zu: nc1 %.1e etf_M %.1e etf_W %.1e nc3 %.1e seli_H %.1e\n", C, p,
         out[UFM_M_NC1], out[UFM_M_ETF_M], out[UFM_M_ETF_W], out[UFM_M_NC3], out[UFM_M_SELI_H]);
  /* p <= N: seli_H from sums of squares, not sqrt(2 - 2 cos): ~1e-16 */
  if (p <= m->N) assert_true(out[UFM_M_SELI_H] < 1e-13);
  else assert_true(out[UFM_M_SELI_H] < 1e-7);
  assert_true(out[UFM_M_NC1] < 1e-25);
  assert_true(out[UFM_M_CDNV] < 1e-25);
  const int zero[] = {UFM_M_EQUINORM_M, UFM_M_EQUINORM_W, UFM_M_EQUIANGLE_M, UFM_M_EQUIANGLE_W,
                      UFM_M_MAXANGLE_M, UFM_M_MAXANGLE_W, UFM_M_ETF_M, UFM_M_ETF_W};
  for (size_t j = 0; j < sizeof zero / sizeof zero[0]; j++) assert_true(out[zero[j]] < 1e-13);
  assert_true(out[UFM_M_NC3] < 1e-25);
  assert_true(out[UFM_M_NC4] == 0.0);
  assert_true(out[UFM_M_ACC] == 1.0);
  assert_close(out[UFM_M_NORM_W], sqrt((double)C), 1e-14, 0);
  assert_close(out[UFM_M_NORM_H], a * sqrt((double)(C * n)), 1e-14, 0);
  /* logits a w_y.w_c: a on the true class, -a/(C-1) elsewhere */
  assert_close(out[UFM_M_MARGIN], a * (1 + 1.0 / (double)(C - 1)), 1e-13, 0);
  gsl_matrix_free(E);
  gsl_matrix_free(A);
  gsl_matrix_free(R);
  gsl_matrix_free(Rt);
  gsl_vector_free(tau);
  gsl_rng_free(r);
  ufm_model_free(m);
  free(counts);
}

static void test_etf_exact(void **s)
{
  (void)s;
  etf_case(5, 7, 3, 0);
  etf_case(6, 5, 4, 1); /* p = C-1 */
  etf_case(2, 3, 2, 0);
  etf_case(10, 40, 2, 1);
}

/* ------------------------------------------------------ 2. a case by hand */

/* C = 3, p = 2, two samples per class: class means (2,0), (0,2), (-2,-2),
 * global mean 0; Sigma_W = [[4,2],[2,4]]/6, Sigma_B = [[8,4],[4,8]]/3,
 * Tr(Sigma_W Sigma_B^+) = 1/2, so NC1 = 1/6. W = [[1,0],[0,1],[-1,-1]],
 * b = (0,0,5): two samples are classified against their nearest centre. */
static void test_hand_case(void **s)
{
  (void)s;
  const size_t counts[3] = {2, 2, 2};
  ufm_model *m = ufm_model_alloc(3, 2, counts, 1);
  const double H[2][6] = {{1, 3, 0, 0, -1, -3}, {0, 0, 1, 3, -1, -3}};
  const double W[3][2] = {{1, 0}, {0, 1}, {-1, -1}};
  for (size_t k = 0; k < 2; k++)
    for (size_t i = 0; i < 6; i++) gsl_matrix_set(m->H, k, i, H[k][i]);
  for (size_t c = 0; c < 3; c++)
    for (size_t k = 0; k < 2; k++) gsl_matrix_set(m->W, c, k, W[c][k]);
  gsl_vector_set(m->b, 2, 5.0);
  double out[UFM_NMETRICS];
  ufm_problem pb = {&ufm_loss_mse, 0.25, 0.5, 2.0};
  eval(&pb, m, out);

  assert_close(out[UFM_M_NC1], 1.0 / 6.0, 1e-14, 0);
  /* s^2 = 1, 1, 2; squared distances 8, 20, 20 */
  assert_close(out[UFM_M_CDNV], (2.0 / 16 + 3.0 / 40 + 3.0 / 40) / 3, 1e-14, 0);
  /* ||m_c|| = 2, 2, 2 sqrt 2 */
  double mean = (4 + 2 * M_SQRT2) / 3;
  double sd = sqrt((2 * (2 - mean) * (2 - mean) + (2 * M_SQRT2 - mean) * (2 * M_SQRT2 - mean)) / 3);
  assert_close(out[UFM_M_EQUINORM_M], sd / mean, 1e-14, 0);
  /* cosines 0, -1/sqrt2, -1/sqrt2: std 1/3; mean |cos + 1/2| */
  assert_close(out[UFM_M_EQUIANGLE_M], 1.0 / 3.0, 1e-14, 0);
  assert_close(out[UFM_M_MAXANGLE_M], (0.5 + 2 * (M_SQRT1_2 - 0.5)) / 3, 1e-14, 0);
  /* W has the same Gram pattern up to scale 1/2... by construction W^T = M/2 */
  assert_close(out[UFM_M_EQUINORM_W], sd / mean, 1e-14, 0);
  assert_close(out[UFM_M_EQUIANGLE_W], 1.0 / 3.0, 1e-14, 0);
  assert_close(out[UFM_M_NC3], 0.0, 0, 1e-28);
  /* G = M^T M = [[4,0,-4],[0,4,-4],[-4,-4,8]], ||G||_F = sqrt(160) */
  const double G[3][3] = {{4, 0, -4}, {0, 4, -4}, {-4, -4, 8}};
  double e2 = 0;
  for (int c = 0; c < 3; c++)
    for (int d = 0; d < 3; d++) {
      double ref = ((c == d) - 1.0 / 3) / M_SQRT2;
      e2 += (G[c][d] / sqrt(160.0) - ref) * (G[c][d] / sqrt(160.0) - ref);
    }
  assert_close(out[UFM_M_ETF_M], sqrt(e2), 1e-14, 0);
  assert_close(out[UFM_M_ETF_W], sqrt(e2), 1e-14, 0);
  /* predictions 2,0,2,1,2,2; nearest centres 0,0,1,1,2,2 */
  assert_close(out[UFM_M_ACC], 4.0 / 6.0, 1e-15, 0);
  assert_close(out[UFM_M_NC4], 2.0 / 6.0, 1e-15, 0);
  assert_close(out[UFM_M_MARGIN], -3.0, 1e-15, 0);
  assert_close(out[UFM_M_NORM_W], 2.0, 1e-15, 0);
  assert_close(out[UFM_M_NORM_H], sqrt(40.0), 1e-15, 0);
  assert_close(out[UFM_M_NORM_B], 5.0, 1e-15, 0);
  assert_close(out[UFM_M_NMARGIN], -3.0 / (0.5 * (4 + 40)), 1e-15, 0);
  ufm_model_free(m);
}

/* ------------------------------------------- 3. against a brute-force reference */

typedef struct {
  double nc1, cdnv, eqnM, eqnW, eqaM, eqaW, maxM, maxW, etfM, etfW, nc3, nc4, acc, margin;
  double seliW, mccosW, mccosM, mcdistW; /* the last three NaN without two minority classes */
} ref_metrics;

/* The pair metrics of section 7 straight from their definitions: seli_W
 * against U L U^T (ufm_seli; P = I - 11^T/C for equal counts), and over
 * ordered minority pairs the cosines of W's rows and M's columns and
 * ||w_c - w_d|| / Avg_c ||w_c||. */
static void pair_ref(const ufm_model *m, const double *M, ref_metrics *r)
{
  const size_t C = m->C, p = m->p;
  size_t lo = m->counts[0], hi = m->counts[0];
  int two = 1;
  for (size_t c = 0; c < C; c++) lo = m->counts[c] < lo ? m->counts[c] : lo, hi = m->counts[c] > hi ? m->counts[c] : hi;
  for (size_t c = 0; c < C; c++) two &= m->counts[c] == lo || m->counts[c] == hi;
  gsl_matrix *R = gsl_matrix_alloc(C, C);
  if (lo == hi)
    for (size_t c = 0; c < C; c++)
      for (size_t d = 0; d < C; d++) gsl_matrix_set(R, c, d, (c == d) - 1.0 / (double)C);
  else assert_int_equal(ufm_seli(C, m->counts, NULL, R, NULL, NULL), 0);
  double *A = calloc(C * C, sizeof(double)), fa = 0, fr = 0, d2 = 0, avg = 0;
  for (size_t c = 0; c < C; c++)
    for (size_t d = 0; d < C; d++) {
      for (size_t k = 0; k < p; k++) A[c * C + d] += gsl_matrix_get(m->W, c, k) * gsl_matrix_get(m->W, d, k);
      fa += A[c * C + d] * A[c * C + d];
      fr += gsl_matrix_get(R, c, d) * gsl_matrix_get(R, c, d);
    }
  for (size_t c = 0; c < C; c++)
    for (size_t d = 0; d < C; d++) {
      double x = A[c * C + d] / sqrt(fa) - gsl_matrix_get(R, c, d) / sqrt(fr);
      d2 += x * x;
    }
  r->seliW = sqrt(d2);
  for (size_t c = 0; c < C; c++) avg += sqrt(A[c * C + c]) / (double)C;
  double cw = 0, cm = 0, dw = 0, np = 0;
  for (size_t c = 0; c < C; c++)
    for (size_t d = 0; d < C; d++) {
      if (c == d || !two || lo == hi || m->counts[c] != lo || m->counts[d] != lo) continue;
      double mcd = 0, mcc = 0, mdd = 0, w2 = 0;
      for (size_t k = 0; k < p; k++) {
        mcd += M[k * C + c] * M[k * C + d], mcc += M[k * C + c] * M[k * C + c], mdd += M[k * C + d] * M[k * C + d];
        double x = gsl_matrix_get(m->W, c, k) - gsl_matrix_get(m->W, d, k);
        w2 += x * x;
      }
      cw += A[c * C + d] / sqrt(A[c * C + c] * A[d * C + d]);
      cm += mcd / sqrt(mcc * mdd);
      dw += sqrt(w2);
      np++;
    }
  r->mccosW = np > 0 ? cw / np : NAN;
  r->mccosM = np > 0 ? cm / np : NAN;
  r->mcdistW = np > 0 ? dw / np / avg : NAN;
  free(A);
  gsl_matrix_free(R);
}

static void gram_ref(size_t C, const double *V, size_t p, int cols, double *eqn, double *eqa,
                     double *mx, double *etf)
{
  /* vectors v_c: column c of a p x C array (cols) or row c of a C x p array */
  double G[64][64], nrm[64];
  for (size_t c = 0; c < C; c++)
    for (size_t d = 0; d < C; d++) {
      double s = 0;
      for (size_t k = 0; k < p; k++) s += (cols ? V[k * C + c] * V[k * C + d] : V[c * p + k] * V[d * p + k]);
      G[c][d] = s;
    }
  double mean = 0, var = 0;
  for (size_t c = 0; c < C; c++) mean += (nrm[c] = sqrt(G[c][c])) / (double)C;
  for (size_t c = 0; c < C; c++) var += (nrm[c] - mean) * (nrm[c] - mean) / (double)C;
  *eqn = sqrt(var) / mean;
  double cm = 0, cv = 0, dev = 0, n = (double)(C * (C - 1)), fro = 0;
  for (size_t c = 0; c < C; c++)
    for (size_t d = 0; d < C; d++) {
      fro += G[c][d] * G[c][d];
      if (c != d) cm += G[c][d] / (nrm[c] * nrm[d]) / n;
    }
  for (size_t c = 0; c < C; c++)
    for (size_t d = 0; d < C; d++)
      if (c != d) {
        double cs = G[c][d] / (nrm[c] * nrm[d]);
        cv += (cs - cm) * (cs - cm) / n;
        dev += fabs(cs + 1.0 / (double)(C - 1)) / n;
      }
  *eqa = sqrt(cv);
  *mx = dev;
  double e2 = 0;
  for (size_t c = 0; c < C; c++)
    for (size_t d = 0; d < C; d++) {
      double ref = ((c == d) - 1.0 / (double)C) / sqrt((double)(C - 1));
      e2 += (G[c][d] / sqrt(fro) - ref) * (G[c][d] / sqrt(fro) - ref);
    }
  *etf = sqrt(e2);
}

static void reference(const ufm_model *m, ref_metrics *r)
{
  const size_t C = m->C, p = m->p, N = m->N;
  double *mu = calloc(p * C, sizeof(double)), *muG = calloc(p, sizeof(double)), *M = calloc(p * C, sizeof(double));
  for (size_t i = 0; i < N; i++)
    for (size_t k = 0; k < p; k++) {
      double h = gsl_matrix_get(m->H, k, i);
      mu[k * C + m->labels[i]] += h / (double)m->counts[m->labels[i]];
      muG[k] += h / (double)N;
    }
  for (size_t k = 0; k < p; k++)
    for (size_t c = 0; c < C; c++) M[k * C + c] = mu[k * C + c] - muG[k];
  gsl_matrix *SW = gsl_matrix_calloc(p, p), *SB = gsl_matrix_calloc(p, p);
  double *s2 = calloc(C, sizeof(double));
  for (size_t i = 0; i < N; i++) {
    int y = m->labels[i];
    for (size_t k = 0; k < p; k++) {
      double dk = gsl_matrix_get(m->H, k, i) - mu[k * C + y];
      s2[y] += dk * dk / (double)m->counts[y];
      for (size_t l = 0; l < p; l++)
        *gsl_matrix_ptr(SW, k, l) += dk * (gsl_matrix_get(m->H, l, i) - mu[l * C + y]) / (double)N;
    }
  }
  for (size_t c = 0; c < C; c++)
    for (size_t k = 0; k < p; k++)
      for (size_t l = 0; l < p; l++) *gsl_matrix_ptr(SB, k, l) += M[k * C + c] * M[l * C + c] / (double)C;
  /* pseudo-inverse of the symmetric Sigma_B through its eigenvectors */
  gsl_vector *ev = gsl_vector_alloc(p);
  gsl_matrix *Q = gsl_matrix_alloc(p, p), *SBc = gsl_matrix_alloc(p, p);
  gsl_matrix_memcpy(SBc, SB);
  gsl_eigen_symmv_workspace *w = gsl_eigen_symmv_alloc(p);
  gsl_eigen_symmv(SBc, ev, Q, w);
  double emax = gsl_vector_max(ev), tr = 0;
  for (size_t j = 0; j < p; j++) {
    double e = gsl_vector_get(ev, j);
    if (e <= 1e-10 * emax) continue;
    for (size_t k = 0; k < p; k++)
      for (size_t l = 0; l < p; l++)
        tr += gsl_matrix_get(SW, k, l) * gsl_matrix_get(Q, k, j) * gsl_matrix_get(Q, l, j) / e;
  }
  r->nc1 = tr / (double)C;
  double cd = 0;
  for (size_t c = 0; c < C; c++)
    for (size_t d = c + 1; d < C; d++) {
      double dist = 0;
      for (size_t k = 0; k < p; k++) dist += (mu[k * C + c] - mu[k * C + d]) * (mu[k * C + c] - mu[k * C + d]);
      cd += (s2[c] + s2[d]) / (2 * dist);
    }
  r->cdnv = cd / (C * (C - 1) / 2.0);
  gram_ref(C, M, p, 1, &r->eqnM, &r->eqaM, &r->maxM, &r->etfM);
  gram_ref(C, m->W->data, p, 0, &r->eqnW, &r->eqaW, &r->maxW, &r->etfW);
  double nW = 0, nM = 0, s = 0;
  for (size_t k = 0; k < p * C; k++) nW += m->W->data[k] * m->W->data[k], nM += M[k] * M[k];
  for (size_t k = 0; k < p; k++)
    for (size_t c = 0; c < C; c++) {
      double d = gsl_matrix_get(m->W, c, k) / sqrt(nW) - M[k * C + c] / sqrt(nM);
      s += d * d;
    }
  r->nc3 = s;
  pair_ref(m, M, r);
  size_t mis = 0, ok = 0;
  r->margin = INFINITY;
  for (size_t i = 0; i < N; i++) {
    size_t am = 0, nn = 0;
    double best = -INFINITY, bd = INFINITY, zy = 0, other = -INFINITY;
    for (size_t c = 0; c < C; c++) {
      double z = m->bias ? gsl_vector_get(m->b, c) : 0, dist = 0;
      for (size_t k = 0; k < p; k++) {
        z += gsl_matrix_get(m->W, c, k) * gsl_matrix_get(m->H, k, i);
        double dk = gsl_matrix_get(m->H, k, i) - mu[k * C + c];
        dist += dk * dk;
      }
      if (z > best) best = z, am = c;
      if (dist < bd) bd = dist, nn = c;
      if ((int)c == m->labels[i]) zy = z;
      else if (z > other) other = z;
    }
    mis += am != nn;
    ok += (int)am == m->labels[i];
    r->margin = fmin(r->margin, zy - other);
  }
  r->nc4 = (double)mis / (double)N;
  r->acc = (double)ok / (double)N;
  gsl_eigen_symmv_free(w);
  gsl_vector_free(ev);
  gsl_matrix_free(Q);
  gsl_matrix_free(SBc);
  gsl_matrix_free(SW);
  gsl_matrix_free(SB);
  free(mu);
  free(muG);
  free(M);
  free(s2);
}

static void random_case(size_t C, size_t p, const size_t *counts, int bias, unsigned long seed)
{
  ufm_model *m = ufm_model_alloc(C, p, counts, bias);
  ufm_model_init_random(m, seed, 1.3);
  /* pull features towards their class so that the classes are not trivial */
  for (size_t i = 0; i < m->N; i++)
    for (size_t k = 0; k < p; k++)
      *gsl_matrix_ptr(m->H, k, i) += 1.5 * gsl_matrix_get(m->W, m->labels[i], k);
  if (bias)
    for (size_t c = 0; c < C; c++) gsl_vector_set(m->b, c, 0.1 * (double)c - 0.2);
  double out[UFM_NMETRICS];
  ufm_problem pb = {&ufm_loss_ce, 2.385e-3, 1.7e-3, 0};
  eval(&pb, m, out);
  ref_metrics r;
  reference(m, &r);
  printf("# random C=%zu p=%zu seed=%lu: nc1 %.6g (ref %.6g), nc4 %.3g, acc %.3g\n", C, p, seed,
         out[UFM_M_NC1], r.nc1, out[UFM_M_NC4], out[UFM_M_ACC]);
  assert_close(out[UFM_M_NC1], r.nc1, 1e-9, 0);
  assert_close(out[UFM_M_CDNV], r.cdnv, 1e-9, 0);
  assert_close(out[UFM_M_EQUINORM_M], r.eqnM, 1e-9, 1e-15);
  assert_close(out[UFM_M_EQUINORM_W], r.eqnW, 1e-9, 1e-15);
  assert_close(out[UFM_M_EQUIANGLE_M], r.eqaM, 1e-9, 1e-15);
  assert_close(out[UFM_M_EQUIANGLE_W], r.eqaW, 1e-9, 1e-15);
  assert_close(out[UFM_M_MAXANGLE_M], r.maxM, 1e-9, 1e-15);
  assert_close(out[UFM_M_MAXANGLE_W], r.maxW, 1e-9, 1e-15);
  assert_close(out[UFM_M_ETF_M], r.etfM, 1e-9, 1e-15);
  assert_close(out[UFM_M_ETF_W], r.etfW, 1e-9, 1e-15);
  assert_close(out[UFM_M_NC3], r.nc3, 1e-9, 1e-15);
  assert_close(out[UFM_M_NC4], r.nc4, 0, 0);
  assert_close(out[UFM_M_ACC], r.acc, 0, 0);
  assert_close(out[UFM_M_MARGIN], r.margin, 1e-12, 1e-14);
  assert_close(out[UFM_M_SELI_W], r.seliW, 1e-12, 1e-14);
  if (isnan(r.mccosW)) {
    assert_true(isnan(out[UFM_M_MC_COS_W]) && isnan(out[UFM_M_MC_COS_M]) && isnan(out[UFM_M_MC_DIST_W]));
  } else {
    assert_close(out[UFM_M_MC_COS_W], r.mccosW, 1e-12, 1e-14);
    assert_close(out[UFM_M_MC_COS_M], r.mccosM, 1e-12, 1e-14);
    assert_close(out[UFM_M_MC_DIST_W], r.mcdistW, 1e-8, 1e-12);
  }
  if (m->N <= 400) { /* seli_H with the N x N matrices H^T H and V L V^T = Y^T K Y */
    gsl_matrix *K = gsl_matrix_alloc(C, C);
    ufm_seli(C, counts, NULL, NULL, K, NULL);
    const size_t N = m->N;
    double *A = calloc(N * N, sizeof(double)), fa = 0, fb = 0, d2 = 0;
    for (size_t i = 0; i < N; i++)
      for (size_t j = 0; j < N; j++) {
        for (size_t k = 0; k < p; k++) A[i * N + j] += gsl_matrix_get(m->H, k, i) * gsl_matrix_get(m->H, k, j);
        double bij = gsl_matrix_get(K, m->labels[i], m->labels[j]);
        fa += A[i * N + j] * A[i * N + j];
        fb += bij * bij;
      }
    for (size_t i = 0; i < N; i++)
      for (size_t j = 0; j < N; j++) {
        double x = A[i * N + j] / sqrt(fa) - gsl_matrix_get(K, m->labels[i], m->labels[j]) / sqrt(fb);
        d2 += x * x;
      }
    assert_close(out[UFM_M_SELI_H], sqrt(d2), 1e-9, 1e-12);
    free(A);
    gsl_matrix_free(K);
  }
  ufm_model_free(m);
}

static void test_against_reference(void **s)
{
  (void)s;
  const size_t c4[4] = {5, 5, 5, 5}, c5[5] = {3, 4, 5, 6, 2}, c3[3] = {4, 4, 4},
               c6[6] = {30, 30, 30, 3, 3, 3}, c2[2] = {3, 7}, c7[7] = {4, 5, 4, 5, 4, 5, 4};
  random_case(4, 8, c4, 1, 11);
  random_case(5, 2, c5, 0, 12);  /* p < C-1: Sigma_B has rank p */
  random_case(3, 2, c3, 1, 13);  /* p = C-1 */
  random_case(6, 9, c6, 1, 14);  /* step imbalance */
  random_case(2, 3, c2, 0, 15);  /* two classes */
  random_case(7, 1, c7, 1, 16);  /* p = 1 */
  random_case(7, 40, c7, 0, 17); /* p >> C */
  /* p <= N: three tiles of D D^T (the last partial), two chunks of columns */
  size_t c12[12];
  for (size_t c = 0; c < 12; c++) c12[c] = c < 4 ? 176 : 174;
  random_case(12, 260, c12, 1, 18);
  /* p <= 512, N >= 2^20/p: the single tile of D D^T in two column slabs */
  size_t c5s[5];
  for (size_t c = 0; c < 5; c++) c5s[c] = 3300 + c;
  random_case(5, 64, c5s, 1, 20);
  /* p > N: two column blocks of U_r^T H, three tiles of H^T H */
  const size_t c5b[5] = {60, 60, 50, 50, 50};
  random_case(5, 300, c5b, 0, 19);
  /* one sample a class: D = 0, NC1 exactly 0 (p > N, and p <= N) */
  size_t ones[40];
  for (size_t c = 0; c < 40; c++) ones[c] = 1;
  random_case(40, 300, ones, 1, 21);
  random_case(30, 20, ones, 0, 22);
  /* C = 21 with two counts: the C x C passes' eight-lane blocks and their
   * tails (up to 20 pairs a row), and the minority pairs (11 classes) */
  size_t c21[21];
  for (size_t c = 0; c < 21; c++) c21[c] = c < 10 ? 9 : 4;
  random_case(21, 12, c21, 1, 23);
}

/* Collapsed features with p < C-1: NC1 is finite and ~0, not 0/0. */
static void test_collapsed_low_dim(void **s)
{
  (void)s;
  const size_t counts[5] = {3, 3, 3, 3, 3};
  ufm_model *m = ufm_model_alloc(5, 2, counts, 0);
  ufm_model_init_random(m, 77, 1.0);
  for (size_t i = 0; i < m->N; i++)
    for (size_t k = 0; k < 2; k++) gsl_matrix_set(m->H, k, i, 1.7 * gsl_matrix_get(m->W, m->labels[i], k));
  double out[UFM_NMETRICS];
  ufm_problem pb = {&ufm_loss_ce, 0, 0, 0};
  eval(&pb, m, out);
  assert_true(isfinite(out[UFM_M_NC1]) && out[UFM_M_NC1] < 1e-25);
  /* random w_c in the plane: argmax w_c.h_i need not be y_i, the NCC is */
  ref_metrics r;
  reference(m, &r);
  assert_close(out[UFM_M_NC4], r.nc4, 0, 0);
  assert_close(out[UFM_M_NC4], 1.0 - out[UFM_M_ACC], 0, 0);
  ufm_model_free(m);
}

/* ----------------------------------- 4. the two SVDs, and 1 against 2 threads */

/* A random state as in random_case, evaluated with a fresh workspace:
 * LAPACK or not, the LQ path allowed (qr) or not, on the current thread
 * count; *used_qr (if not NULL): whether the LQ path was taken. Returns
 * whether the LAPACK setting took (0 when LAPACK is not built in and
 * lapack = 1). */
static int eval_qr(const ufm_model *m, int lapack, int qr, double *out, int *used_qr)
{
  ufm_problem pb = {&ufm_loss_ce, 2.385e-3, 1.7e-3, 0};
  ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
  ufm_metrics_ws *mw = ufm_metrics_ws_alloc(m->C, m->p, m->N);
  int ok = ufm_metrics_use_lapack(mw, lapack) == lapack;
  ufm_metrics_use_qr(mw, qr);
  assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_OK);
  ufm_metrics_eval(&pb, m, ws, mw, out);
  if (used_qr) *used_qr = ufm_metrics_used_qr(mw);
  ufm_metrics_ws_free(mw);
  ufm_grad_ws_free(ws);
  return ok;
}

/* The SVDs alone (the LQ path off) */
static int eval_with(const ufm_model *m, int lapack, double *out)
{
  return eval_qr(m, lapack, 0, out, NULL);
}

static ufm_model *random_state(size_t C, size_t p, const size_t *counts, unsigned long seed)
{
  ufm_model *m = ufm_model_alloc(C, p, counts, 1);
  ufm_model_init_random(m, seed, 1.3);
  for (size_t i = 0; i < m->N; i++)
    for (size_t k = 0; k < p; k++) *gsl_matrix_ptr(m->H, k, i) += 1.5 * gsl_matrix_get(m->W, m->labels[i], k);
  for (size_t c = 0; c < C; c++) gsl_vector_set(m->b, c, 0.1 * (double)c - 0.2);
  return m;
}

/* dgesdd, GSL's Jacobi SVD and the LQ path: every metric the same to 1e-12
 * (the factors differ in signs and round-off only), for p > C, p = C,
 * p = C-1, p < C-1, p > N and unequal counts; the LQ path taken where it
 * applies (p >= C-1, full rank; for p > N too, whose NC1 projects H's
 * columns on its factor). */
static void test_svd_paths(void **s)
{
  (void)s;
  const size_t c6[6] = {30, 30, 30, 3, 3, 3}, c8[8] = {9, 9, 9, 9, 9, 9, 9, 9},
               c7[7] = {4, 5, 4, 5, 4, 5, 4};
  size_t cb[40], cs[40];
  for (size_t c = 0; c < 40; c++) cb[c] = 25 + c % 3;
  for (size_t c = 0; c < 40; c++) cs[c] = 5 + c % 2;
  struct { size_t C, p; const size_t *counts; } cases[] = {
      {6, 11, c6}, {8, 8, c8}, {8, 7, c8}, {8, 3, c8}, {7, 40, c7}, {40, 150, cb}, {40, 30, cb},
      {40, 300, cs}};
  for (size_t j = 0; j < sizeof cases / sizeof cases[0]; j++) {
    ufm_model *m = random_state(cases[j].C, cases[j].p, cases[j].counts, 31 + j);
    double a[UFM_NMETRICS], b[UFM_NMETRICS];
    if (!eval_with(m, 1, a)) {
      printf("# LAPACK not built in: the GSL SVD only\n");
      ufm_model_free(m);
      return;
    }
    assert_true(eval_with(m, 0, b) == 1);
    double q[UFM_NMETRICS];
    int used = -1;
    eval_qr(m, 1, 1, q, &used);
    printf("# SVD paths C=%zu p=%zu N=%zu: nc1 %.15g vs %.15g, LQ path %d: %.15g\n", m->C, m->p,
           m->N, a[UFM_M_NC1], b[UFM_M_NC1], used, q[UFM_M_NC1]);
    assert_int_equal(used, m->p + 1 >= m->C);
    for (size_t k = 0; k < UFM_NMETRICS; k++) {
      if (isnan(a[k]) && isnan(b[k])) continue;
      assert_close(a[k], b[k], 1e-12, 1e-15);
      assert_close(q[k], b[k], 1e-12, 1e-15);
    }
    ufm_model_free(m);
  }
}

/* Sizes past every parallel threshold, both NC1 paths (p <= N: tiles of
 * D D^T; p > N: column blocks), both SVDs: the same bits on 1 and 2
 * threads, the workspace allocated for 2. */
static void test_thread_bits(void **s)
{
  (void)s;
  size_t ca[20], cb[10];
  for (size_t c = 0; c < 20; c++) ca[c] = 200 + c % 2;
  for (size_t c = 0; c < 10; c++) cb[c] = 50;
  struct { size_t C, p; const size_t *counts; } cases[] = {{20, 300, ca}, {10, 1100, cb}};
  for (size_t j = 0; j < 2; j++)
    for (int mode = 0; mode <= 2; mode++) { /* GSL, dgesdd, the LQ path where it applies */
      const int lapack = mode > 0;
      ufm_model *m = random_state(cases[j].C, cases[j].p, cases[j].counts, 41 + j);
      ufm_problem pb = {&ufm_loss_ce, 2.385e-3, 1.7e-3, 0};
      ufm_set_threads(2);
      ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
      ufm_metrics_ws *mw = ufm_metrics_ws_alloc(m->C, m->p, m->N);
      if (ufm_metrics_use_lapack(mw, lapack) != lapack) {
        ufm_metrics_ws_free(mw);
        ufm_grad_ws_free(ws);
        ufm_model_free(m);
        continue;
      }
      ufm_metrics_use_qr(mw, mode == 2);
      double o1[UFM_NMETRICS], o2[UFM_NMETRICS];
      assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_OK);
      ufm_metrics_eval(&pb, m, ws, mw, o2);
      ufm_set_threads(1);
      assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_OK);
      ufm_metrics_eval(&pb, m, ws, mw, o1);
      printf("# threads C=%zu p=%zu N=%zu lapack=%d LQ=%d: nc1 %.17g, seli_H %.17g\n", m->C, m->p,
             m->N, lapack, ufm_metrics_used_qr(mw), o1[UFM_M_NC1], o1[UFM_M_SELI_H]);
      assert_memory_equal(o1, o2, sizeof o1);
      ufm_set_threads(2);
      ufm_metrics_ws_free(mw);
      ufm_grad_ws_free(ws);
      ufm_model_free(m);
    }
}

/* The LQ path where M's rank is certified C - 1 (many classes, p just
 * above C: the SVD's cost there), against the SVD and the brute-force
 * reference; not taken when two class means coincide (rank C - 2: the
 * Cholesky certificate fails) nor when a large common offset leaves M n
 * above the rank tolerance (the SVD path then, bit for bit). */
static void test_lq_path(void **s)
{
  (void)s;
  size_t cc[60];
  for (size_t c = 0; c < 60; c++) cc[c] = 3 + c % 2;
  ufm_model *m = random_state(60, 64, cc, 51);
  double a[UFM_NMETRICS], b[UFM_NMETRICS];
  int used = -1;
  if (!eval_qr(m, 1, 1, a, &used)) {
    printf("# LAPACK not built in: no LQ path\n");
    ufm_model_free(m);
    return;
  }
  assert_int_equal(used, 1);
  eval_qr(m, 1, 0, b, &used);
  assert_int_equal(used, 0);
  ref_metrics r;
  reference(m, &r);
  printf("# LQ path C=60 p=64: nc1 %.15g, SVD %.15g, reference %.15g\n", a[UFM_M_NC1], b[UFM_M_NC1],
         r.nc1);
  assert_close(a[UFM_M_NC1], r.nc1, 1e-9, 0);
  for (size_t k = 0; k < UFM_NMETRICS; k++) {
    if (isnan(a[k]) && isnan(b[k])) continue;
    assert_close(a[k], b[k], 1e-12, 1e-15);
  }
  ufm_model_free(m);

  /* classes 0 and 1 with the same features: two equal columns of M */
  const size_t c6[6] = {4, 4, 5, 5, 6, 6};
  m = random_state(6, 9, c6, 52);
  for (size_t k = 0; k < m->p; k++)
    for (size_t i = 0; i < 4; i++) gsl_matrix_set(m->H, k, 4 + i, gsl_matrix_get(m->H, k, i));
  eval_qr(m, 1, 1, a, &used);
  assert_int_equal(used, 0);
  reference(m, &r);
  printf("# LQ path, rank C-2: nc1 %.15g, reference %.15g\n", a[UFM_M_NC1], r.nc1);
  assert_close(a[UFM_M_NC1], r.nc1, 1e-9, 0);
  assert_close(a[UFM_M_NC4], r.nc4, 0, 0); /* exact ties: the first class */
  ufm_model_free(m);

  /* a common offset 1e9 times the spread of the class means */
  m = random_state(6, 9, c6, 53);
  for (size_t k = 0; k < m->p; k++)
    for (size_t i = 0; i < m->N; i++) *gsl_matrix_ptr(m->H, k, i) += 1e9;
  eval_qr(m, 1, 1, a, &used);
  assert_int_equal(used, 0);
  eval_qr(m, 1, 0, b, NULL);
  assert_memory_equal(a, b, sizeof a);
  ufm_model_free(m);
}

/* Every deviation exactly 0 (one sample a class; or every sample of a
 * class equal, 8192 of them, with small integer entries so that the means
 * are exact, and D D^T in slabs): NC1 is exactly 0 without NC1's factor, and the rank of M is
 * still certified by the LQ path's Cholesky test (C - 1) where LAPACK is
 * built in, or taken from the SVD. */
static void test_zero_deviations(void **s)
{
  (void)s;
  size_t ones[40], c8[8];
  for (size_t c = 0; c < 40; c++) ones[c] = 1;
  for (size_t c = 0; c < 8; c++) c8[c] = 8192;
  const size_t Cs[3] = {40, 30, 8}, ps[3] = {300, 20, 16};
  const size_t *counts[3] = {ones, ones, c8};
  for (int t = 0; t < 3; t++) {
    ufm_model *m = random_state(Cs[t], ps[t], counts[t], 90 + (unsigned long)t);
    for (size_t c = 0; c < m->C; c++) /* every sample its class's first, in integers */
      for (size_t k = 0; k < m->p; k++) {
        const double v = round(4.0 * gsl_matrix_get(m->H, k, m->offset[c]));
        for (size_t i = m->offset[c]; i < m->offset[c + 1]; i++) gsl_matrix_set(m->H, k, i, v);
      }
    for (int lapack = 0; lapack < 2; lapack++) {
      double out[UFM_NMETRICS];
      int used_qr = 0;
      ufm_problem pb = {&ufm_loss_ce, 2.385e-3, 1.7e-3, 0};
      ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
      ufm_metrics_ws *mw = ufm_metrics_ws_alloc(m->C, m->p, m->N);
      const int have = ufm_metrics_use_lapack(mw, lapack) == lapack;
      assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_OK);
      ufm_metrics_eval(&pb, m, ws, mw, out);
      used_qr = ufm_metrics_used_qr(mw);
      const size_t rank = ufm_metrics_rank(mw), want = m->C - 1 < m->p ? m->C - 1 : m->p;
      printf("# zero deviations C=%zu p=%zu N=%zu, %s: nc1 %g, cdnv %g, rank %zu, LQ path %d\n",
             m->C, m->p, m->N, lapack ? "LAPACK" : "GSL", out[UFM_M_NC1], out[UFM_M_CDNV], rank,
             used_qr);
      assert_true(out[UFM_M_NC1] == 0.0);
      assert_true(out[UFM_M_CDNV] == 0.0);
      assert_int_equal(rank, want);
      if (lapack && have && m->C - 1 <= m->p) assert_int_equal(used_qr, 1);
      ufm_metrics_ws_free(mw);
      ufm_grad_ws_free(ws);
    }
    ufm_model_free(m);
  }
}

/* The nearest-class-centre rule's single-precision filter cannot separate
 * classes whose means differ by 1e-6 of the spread (its error bound is
 * some p 2^-24 of it): nearly every sample goes to the double rescoring,
 * which must give the brute-force answer; on 1 and 2 threads alike. */
static void test_ncc_near_ties(void **s)
{
  (void)s;
  size_t cc[12];
  for (size_t c = 0; c < 12; c++) cc[c] = 40;
  ufm_model *m = random_state(12, 30, cc, 61);
  /* class 2j+1 = class 2j moved by 1e-6 */
  for (size_t j = 0; j < 6; j++)
    for (size_t i = 0; i < 40; i++)
      for (size_t k = 0; k < m->p; k++)
        gsl_matrix_set(m->H, k, m->offset[2 * j + 1] + i,
                       gsl_matrix_get(m->H, k, m->offset[2 * j] + i) + 1e-6 * sin((double)(k + 3 * i + j)));
  ref_metrics r;
  reference(m, &r);
  double a[UFM_NMETRICS], b[UFM_NMETRICS];
  ufm_set_threads(1);
  eval_qr(m, 1, 1, a, NULL);
  ufm_set_threads(2);
  eval_qr(m, 1, 1, b, NULL);
  printf("# near ties: nc4 %.6g (reference %.6g)\n", a[UFM_M_NC4], r.nc4);
  assert_close(a[UFM_M_NC4], r.nc4, 0, 0);
  assert_memory_equal(a, b, sizeof a);
  ufm_model_free(m);
}

/* D D^T in two column slabs (p = 24, N = 43800: chunks of 6826 columns,
 * four per slab, the last of 1422): the nearest-centre rule scores each
 * chunk as its slab forms it, or on its own when another thread took it.
 * Class 1 is class 0 moved by 1e-6 or 0.3 (near ties, so that both ways
 * rescore samples in double; the other four classes the filter settles). On 1, 2 and 3 threads, fused (one
 * thread: all eight chunks) or every chunk on its own: the same bits, and
 * NC4 that of the brute-force rule; then with H scaled by 1e-130, too
 * small for the single-precision filter (every sample rescored). */
static void test_ncc_slabs(void **s)
{
  (void)s;
  size_t cc[6];
  for (size_t c = 0; c < 6; c++) cc[c] = 7300;
  ufm_model *m = random_state(6, 24, cc, 71);
  for (size_t i = 0; i < 7300; i++)
    for (size_t k = 0; k < m->p; k++)
      gsl_matrix_set(m->H, k, m->offset[1] + i,
                     gsl_matrix_get(m->H, k, i) + (i % 3 == 0 ? 1e-6 : 0.3) * sin((double)(k + 3 * i)));
  ufm_problem pb = {&ufm_loss_ce, 2.385e-3, 1.7e-3, 0};
  ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
  for (int big = 0; big < 2; big++) {
    if (big) gsl_matrix_scale(m->H, 1e-130);
    ref_metrics r;
    reference(m, &r); /* NC4 by brute force: first c minimising ||h_i - mu_c||^2 */
    const double nc4 = r.nc4;
    double first[UFM_NMETRICS];
    for (int run = 0; run < 6; run++) {
      const int threads = 1 + run / 2, apart = run % 2;
      double out[UFM_NMETRICS];
      ufm_set_threads(threads);
      ufm_metrics_ws *mw = ufm_metrics_ws_alloc(m->C, m->p, m->N);
      ufm_metrics_ncc_apart(mw, apart);
      assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_OK);
      ufm_metrics_eval(&pb, m, ws, mw, out);
      const size_t fused = ufm_metrics_ncc_fused(mw);
      printf("# ncc slabs%s: %d thread(s)%s: nc4 %.6g (brute force %.6g), %zu of 8 chunks fused\n",
             big ? " (H scaled by 1e-130)" : "", threads, apart ? ", apart" : "", out[UFM_M_NC4], nc4,
             fused);
      if (apart) assert_int_equal(fused, 0);
      if (threads == 1 && !apart) assert_int_equal(fused, 8);
      assert_close(out[UFM_M_NC4], nc4, 0, 0);
      if (run == 0)
        memcpy(first, out, sizeof first);
      else
        assert_memory_equal(out, first, sizeof first);
      ufm_metrics_ws_free(mw);
    }
    assert_true(nc4 > 0.01);
  }
  ufm_set_threads(2);
  ufm_grad_ws_free(ws);
  ufm_model_free(m);
}

/* One evaluation on `threads` threads with the nearest-centre rule's
 * collapse test and pair test each on or off (ufm_metrics_ncc_certify,
 * ufm_metrics_ncc_pair); returns how many samples the collapse test
 * settled, and the pair test's count into *paired if not NULL. */
static size_t eval_ncc(const ufm_model *m, int threads, int certify, int pair, double *out,
                       size_t *paired)
{
  ufm_set_threads(threads);
  ufm_problem pb = {&ufm_loss_ce, 2.385e-3, 1.7e-3, 0};
  ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
  ufm_metrics_ws *mw = ufm_metrics_ws_alloc(m->C, m->p, m->N);
  ufm_metrics_ncc_certify(mw, certify);
  ufm_metrics_ncc_pair(mw, pair);
  assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_OK);
  ufm_metrics_eval(&pb, m, ws, mw, out);
  const size_t n = ufm_metrics_ncc_certified(mw);
  if (paired) *paired = ufm_metrics_ncc_paired(mw);
  ufm_metrics_ws_free(mw);
  ufm_grad_ws_free(ws);
  ufm_set_threads(2);
  return n;
}

static size_t eval_certify(const ufm_model *m, int threads, int on, double *out)
{
  return eval_ncc(m, threads, on, 1, out, NULL);
}

/* The collapse test on and off, on 1 and 2 threads: the same bits in all
 * four (the test only settles what the scores would decide); returns
 * how many samples it settled and NC4. */
static size_t certify_same_bits(const ufm_model *m, const char *name, double *nc4)
{
  double first[UFM_NMETRICS], out[UFM_NMETRICS];
  const size_t n1 = eval_certify(m, 1, 1, first);
  const size_t n2 = eval_certify(m, 2, 1, out);
  assert_memory_equal(out, first, sizeof out);
  assert_int_equal(n2, n1);
  for (int threads = 1; threads <= 2; threads++) {
    assert_int_equal(eval_certify(m, threads, 0, out), 0);
    assert_memory_equal(out, first, sizeof out);
  }
  printf("# collapse test, %s: %zu of %zu samples settled, nc4 %.6g\n", name, n1, m->N,
         first[UFM_M_NC4]);
  *nc4 = first[UFM_M_NC4];
  return n1;
}

/* Classes 0 and 1 in 40 dimensions: class 0 in pairs a +- e, class 1 in
 * pairs h, 2b - h (so that their means are a and b up to round-off), h
 * within 1e-17 .. 1e-15 |b - a| of their bisector; class 2 far; every
 * classifier prediction class 0. */
static ufm_model *bisector_state(void)
{
  const size_t p = 40, cc[3] = {50, 400, 50};
  ufm_model *m = random_state(3, p, cc, 97);
  double a[40], b[40], u[40];
  for (size_t k = 0; k < p; k++) {
    a[k] = 1.0 / 3.0 + sin((double)k);
    b[k] = 0.7 + cos((double)(3 * k));
    u[k] = b[k] - a[k];
  }
  for (size_t i = 0; i < m->N; i++) {
    const int y = m->labels[i];
    const size_t j = i - m->offset[y];
    for (size_t k = 0; k < p; k++) {
      double v;
      if (y == 0) v = a[k] + (j % 2 ? 0.05 : -0.05) * sin((double)(k + 5 * (j / 2)));
      else if (y == 2) v = 10.0 + cos((double)(k * j));
      else {
        /* t along b - a from the midpoint, +- 1e-17 .. 1e-15 relative */
        const double t = ldexp(j % 4 < 2 ? 1.0 : -1.0, -56 + (int)(j % 50) / 7) * (1.0 + 0.1 * (double)(j % 7));
        const double h = 0.5 * (a[k] + b[k]) + t * u[k];
        v = j % 2 ? 2.0 * b[k] - h : h;
      }
      gsl_matrix_set(m->H, k, i, v);
    }
  }
  gsl_vector_set(m->b, 0, 1e6); /* every prediction class 0 */
  return m;
}

/* The nearest-centre rule's collapse test (metrics.c, section 5):
 * 1. collapsed states (h_i = 3 w_{y_i} + 0.01 noise), D D^T in slabs
 *    (p = 24, N = 43800) and in blocks (p = 600, unequal counts): every
 *    sample settled, NC4 that of the brute-force rule;
 * 2. integer data with exact ties: class 0 at a = 0, class 1 around b =
 *    (2, ..., 2) with samples at the midpoint m = (1, ..., 1) (equidistant
 *    from both centres: the first, class 0, is the answer), their mirror
 *    images 2b - m (at distance |b - a|/2 from b, the test's boundary) and
 *    samples b +- e closer in: exactly the samples at a and at b +- e are
 *    settled, and NC4 is the brute-force answer;
 * 3. classes 0 and 1 with samples within 1e-17 .. 1e-15 of their
 *    bisector (and every classifier prediction 0, so that NC4 counts
 *    every sample whose nearest centre is not class 0): round-off decides
 *    those, and the test must leave them to the scores. The same test
 *    without its error terms (the bounds on G's, the deviations' and the
 *    scores' round-off all dropped) settles some of them wrongly and
 *    changes NC4 here; any one of the terms alone is enough to keep this
 *    configuration right, so this does not check each on its own. */
static void test_ncc_certify(void **s)
{
  (void)s;
  double nc4;
  ref_metrics r;
  { /* 1 */
    size_t c6[6], c40[40];
    for (size_t c = 0; c < 6; c++) c6[c] = 7300;
    for (size_t c = 0; c < 40; c++) c40[c] = 25 + c % 3;
    const struct { size_t C, p; const size_t *counts; const char *name; } cases[] = {
        {6, 24, c6, "collapsed, slabs"}, {40, 600, c40, "collapsed, blocks, unequal counts"}};
    for (size_t j = 0; j < 2; j++) {
      ufm_model *m = random_state(cases[j].C, cases[j].p, cases[j].counts, 81 + j);
      for (size_t i = 0; i < m->N; i++)
        for (size_t k = 0; k < m->p; k++)
          gsl_matrix_set(m->H, k, i,
                         3.0 * gsl_matrix_get(m->W, m->labels[i], k) + 0.01 * sin((double)(7 * k + 3 * i)));
      assert_int_equal(certify_same_bits(m, cases[j].name, &nc4), m->N);
      reference(m, &r);
      assert_close(nc4, r.nc4, 0, 0);
      ufm_model_free(m);
    }
  }
  { /* 2: n0 = 40 at a; class 1: 10 at m, 10 at 2b - m, 20 at b +- e */
    const size_t p = 6, cc[2] = {40, 40};
    ufm_model *m = ufm_model_alloc(2, p, cc, 1);
    ufm_model_init_random(m, 91, 1.0);
    gsl_matrix_set_zero(m->H);
    for (size_t i = 0; i < 20; i++) /* m, then 2b - m */
      for (size_t k = 0; k < p; k++) gsl_matrix_set(m->H, k, 40 + i, i < 10 ? 1.0 : 3.0);
    /* the b +- e_k pairs: i = 20 .. 39 alternate +e and -e on the same k */
    for (size_t i = 20; i < 40; i += 2)
      for (size_t k = 0; k < p; k++) {
        gsl_matrix_set(m->H, k, 40 + i, 2.0 + (k == (i / 2) % p ? 1.0 : 0.0));
        gsl_matrix_set(m->H, k, 41 + i, 2.0 - (k == (i / 2) % p ? 1.0 : 0.0));
      }
    assert_int_equal(certify_same_bits(m, "exact ties", &nc4), 40 + 20);
    reference(m, &r);
    assert_close(nc4, r.nc4, 0, 0);
    ufm_model_free(m);
  }
  { /* 3 */
    ufm_model *m = bisector_state();
    /* classes 0 and 2 settled, none of class 1 (the bisector's samples and
     * their mirror images, at the test's boundary); round-off sends some
     * of the bisector's samples to class 0 and some to class 1, so NC4
     * (class 2 and the mirror images: 250 samples, plus those) lies
     * strictly between 0.5 and 0.9 */
    assert_int_equal(certify_same_bits(m, "near the bisector", &nc4), 100);
    assert_true(nc4 > 0.5 && nc4 < 0.9);
    ufm_model_free(m);
  }
}

/* The nearest-centre rule's pair test (metrics.c, section 5), on and off,
 * on 1 and 2 threads, with the collapse test on and off: the same bits in
 * all (it only settles what the scores would decide) and the count it
 * settled:
 * 1. states at initialisation (the classifier's prediction seldom the
 *    class): D D^T in slabs (C = 32, p = 128, N = 5120) and without
 *    them, the samples in blocks (C = 40, p = 64, N = 359, unequal
 *    counts): most samples settled, NC4 that of the brute-force rule;
 * 2. bisector_state (every prediction class 0; C = 3, so the test is
 *    forced on): class 2's 50 samples and class 1's 200 mirror images
 *    (their own centre clearly nearer than class 0's), or with the
 *    collapse test only the mirror images (class 2 is its); never the 200
 *    within 1e-15 of the bisector, where round-off decides (the test
 *    without its error terms settles some of them and changes NC4). */
static void test_ncc_pair(void **s)
{
  (void)s;
  size_t c32[32], c40[40];
  for (size_t c = 0; c < 32; c++) c32[c] = 160;
  for (size_t c = 0; c < 40; c++) c40[c] = 8 + c % 3;
  const struct { size_t C, p; const size_t *counts; const char *name; } cases[] = {
      {32, 128, c32, "initialisation, slabs"},
      {40, 64, c40, "initialisation, blocks, unequal counts"},
      {0, 0, NULL, "near the bisector"}};
  for (size_t j = 0; j < 3; j++) {
    ufm_model *m;
    if (cases[j].counts) {
      m = ufm_model_alloc(cases[j].C, cases[j].p, cases[j].counts, 1);
      ufm_model_init_random(m, 111 + j, 1.0);
    } else {
      m = bisector_state();
    }
    ref_metrics r;
    reference(m, &r);
    double first[UFM_NMETRICS], out[UFM_NMETRICS];
    size_t n[2] = {0, 0}, got;
    eval_ncc(m, 1, 0, 0, first, &got);
    assert_int_equal(got, 0);
    if (cases[j].counts) assert_close(first[UFM_M_NC4], r.nc4, 0, 0);
    for (int run = 0; run < 4; run++) {
      const int threads = 1 + run % 2, certify = run / 2;
      eval_ncc(m, threads, certify, cases[j].counts ? 1 : 2, out, &got);
      assert_memory_equal(out, first, sizeof out);
      if (threads == 1)
        n[certify] = got;
      else
        assert_int_equal(got, n[certify]);
    }
    printf("# pair test, %s: %zu (%zu after the collapse test) of %zu samples settled, nc4 %.6g\n",
           cases[j].name, n[0], n[1], m->N, first[UFM_M_NC4]);
    if (cases[j].counts) {
      assert_true(n[0] > m->N / 2);
      assert_int_equal(n[1], n[0]); /* nothing collapsed: the collapse test settles none */
    } else {
      assert_int_equal(n[0], 250);
      assert_int_equal(n[1], 200);
      assert_true(first[UFM_M_NC4] > 0.5 && first[UFM_M_NC4] < 0.9);
    }
    ufm_model_free(m);
  }
}

/* NC1 and seli_H against direct formulas with the p x p matrix D D^T, the
 * SVD of M and the N x N matrix H^T H (BLAS at these sizes), C = 8 classes
 * of n; the same bits on 1 and 2 threads. */
static void direct_case(size_t p, size_t n, unsigned long seed, const char *what)
{
  const size_t C = 8;
  size_t cc[8];
  for (size_t c = 0; c < C; c++) cc[c] = n;
  ufm_model *m = random_state(C, p, cc, seed);
  const size_t N = m->N;
  double a[UFM_NMETRICS], b[UFM_NMETRICS];
  ufm_set_threads(1);
  eval_qr(m, 1, 1, a, NULL);
  ufm_set_threads(2);
  eval_qr(m, 1, 1, b, NULL);
  assert_memory_equal(a, b, sizeof a);

  /* class means, M, D; X = D D^T */
  gsl_matrix *mu = gsl_matrix_calloc(p, C), *M = gsl_matrix_alloc(p, C), *D = gsl_matrix_alloc(p, N);
  gsl_matrix *X = gsl_matrix_alloc(p, p), *V = gsl_matrix_alloc(C, C), *A = gsl_matrix_alloc(N, N);
  gsl_vector *S = gsl_vector_alloc(C), *w = gsl_vector_alloc(C);
  for (size_t k = 0; k < p; k++) {
    double g = 0.0;
    for (size_t i = 0; i < N; i++) {
      *gsl_matrix_ptr(mu, k, (size_t)m->labels[i]) += gsl_matrix_get(m->H, k, i) / (double)n;
      g += gsl_matrix_get(m->H, k, i) / (double)N;
    }
    for (size_t c = 0; c < C; c++) gsl_matrix_set(M, k, c, gsl_matrix_get(mu, k, c) - g);
    for (size_t i = 0; i < N; i++)
      gsl_matrix_set(D, k, i, gsl_matrix_get(m->H, k, i) - gsl_matrix_get(mu, k, (size_t)m->labels[i]));
  }
  gsl_blas_dsyrk(CblasUpper, CblasNoTrans, 1.0, D, 0.0, X);
  for (size_t k = 0; k < p; k++)
    for (size_t l = 0; l < k; l++) gsl_matrix_set(X, k, l, gsl_matrix_get(X, l, k));
  gsl_linalg_SV_decomp(M, V, S, w); /* M becomes U */
  double nc1 = 0.0, tol = (double)p * DBL_EPSILON * gsl_vector_get(S, 0);
  for (size_t j = 0; j < C && gsl_vector_get(S, j) > tol; j++) {
    gsl_vector_const_view u = gsl_matrix_const_column(M, j);
    gsl_vector *Xu = gsl_vector_alloc(p);
    double uxu = 0.0;
    gsl_blas_dsymv(CblasUpper, 1.0, X, &u.vector, 0.0, Xu);
    gsl_blas_ddot(&u.vector, Xu, &uxu);
    nc1 += uxu / (gsl_vector_get(S, j) * gsl_vector_get(S, j));
    gsl_vector_free(Xu);
  }
  nc1 /= (double)N;
  /* seli_H with H^T H and V L V^T = Y^T K Y */
  gsl_matrix *K = gsl_matrix_alloc(C, C);
  ufm_seli(C, cc, NULL, NULL, K, NULL);
  gsl_blas_dsyrk(CblasUpper, CblasTrans, 1.0, m->H, 0.0, A);
  double fa = 0.0, fb = 0.0, d2 = 0.0;
  for (size_t i = 0; i < N; i++)
    for (size_t j = 0; j < N; j++) {
      double x = gsl_matrix_get(A, i <= j ? i : j, i <= j ? j : i);
      double y = gsl_matrix_get(K, (size_t)m->labels[i], (size_t)m->labels[j]);
      fa += x * x;
      fb += y * y;
    }
  for (size_t i = 0; i < N; i++)
    for (size_t j = 0; j < N; j++) {
      double x = gsl_matrix_get(A, i <= j ? i : j, i <= j ? j : i) / sqrt(fa) -
                 gsl_matrix_get(K, (size_t)m->labels[i], (size_t)m->labels[j]) / sqrt(fb);
      d2 += x * x;
    }
  printf("# %s p=%zu N=%zu: nc1 %.15g (direct %.15g), seli_H %.15g (direct %.15g)\n", what, p,
         N, a[UFM_M_NC1], nc1, a[UFM_M_SELI_H], sqrt(d2));
  assert_close(a[UFM_M_NC1], nc1, 1e-9, 0);
  assert_close(a[UFM_M_SELI_H], sqrt(d2), 1e-9, 1e-12);
  gsl_matrix *mats[] = {mu, M, D, X, V, A, K};
  for (size_t j = 0; j < sizeof mats / sizeof mats[0]; j++) gsl_matrix_free(mats[j]);
  gsl_vector_free(S);
  gsl_vector_free(w);
  ufm_model_free(m);
}

/* p >= 1024: tiles of D D^T of side 512, the last partial; p = 512 and
 * N = 2048 (at least four chunks of 5 2^15/p = 320 columns): the single
 * tile in two column slabs, finished by inner products with (M M^T)^+ and
 * sum_c n_c mu_c mu_c^T (slabs_finish); p = 128 and N = 480 (N >= 400,
 * p^2 N >= 2^22, fewer than four chunks of 1280): two slabs of two
 * chunks of N/4; p = 256 and N = 280 (p^2 N >= 2^24) likewise; in both all
 * four chunks scored as their slab forms them on one thread. */
static void test_large_tiles(void **s)
{
  (void)s;
  direct_case(1030, 140, 71, "large tiles");
  direct_case(512, 256, 72, "slabs");
  direct_case(128, 60, 73, "slabs of short chunks");
  direct_case(256, 35, 74, "slabs of short chunks, N < 400");
  const size_t ps[2] = {128, 256}, ns[2] = {60, 35};
  for (int j = 0; j < 2; j++) {
    size_t cc[8];
    for (size_t c = 0; c < 8; c++) cc[c] = ns[j];
    ufm_model *m = random_state(8, ps[j], cc, 73 + (unsigned long)j);
    ufm_problem pb = {&ufm_loss_ce, 2.385e-3, 1.7e-3, 0};
    ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
    ufm_metrics_ws *mw = ufm_metrics_ws_alloc(m->C, m->p, m->N);
    double out[UFM_NMETRICS];
    ufm_set_threads(1);
    assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_OK);
    ufm_metrics_eval(&pb, m, ws, mw, out);
    ufm_set_threads(2);
    assert_int_equal(ufm_metrics_ncc_fused(mw), 4);
    ufm_metrics_ws_free(mw);
    ufm_grad_ws_free(ws);
    ufm_model_free(m);
  }
}

/* One evaluation with D D^T's diagonal tiles in row blocks of `rows` rows
 * (0: one DSYRK each), on the current thread count. */
static void eval_g512(const ufm_model *m, size_t rows, int g512, double *out)
{
  ufm_problem pb = {&ufm_loss_ce, 2.385e-3, 1.7e-3, 0};
  ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
  ufm_metrics_ws *mw = ufm_metrics_ws_alloc(m->C, m->p, m->N);
  ufm_metrics_syrk_rows(mw, rows);
  assert_int_equal(ufm_metrics_gram512(mw, g512), g512);
  assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_OK);
  ufm_metrics_eval(&pb, m, ws, mw, out);
  ufm_metrics_ws_free(mw);
  ufm_grad_ws_free(ws);
}

/* Every metric of x but `skip` (-1: none) within rtol of ref's, NaN
 * where ref's is NaN */
static void metrics_close(const double *x, const double *ref, double rtol, double atol, int skip)
{
  for (int k = 0; k < UFM_NMETRICS; k++) {
    if (k == skip) continue;
    if (isnan(ref[k])) {
      assert_true(isnan(x[k]));
      continue;
    }
    assert_close(x[k], ref[k], rtol, atol);
  }
}

/* With the BLAS (not ufm_gram512) */
static void eval_rows(const ufm_model *m, size_t rows, double *out)
{
  eval_g512(m, rows, 0, out);
}

/* D D^T's diagonal tiles in row blocks (a DSYRK on each diagonal block, a
 * DGEMM for the rest of its row: the default with OpenBLAS's AVX2 kernels)
 * give the metrics of one DSYRK a tile to round-off, in blocks that divide
 * the tile and in blocks that do not (64, 100, 128), in the slabs (p = 192,
 * N = 400) and in two tiles of side 260 (p = 520); each on 1 and 2 threads
 * with the same bits. The DSYRK's own metrics are checked against direct
 * formulas in test_large_tiles on machines where it is the default. */
static void test_syrk_rows(void **s)
{
  (void)s;
  const size_t ps[2] = {192, 520}, ns[2] = {50, 66}, rows[3] = {64, 100, 128};
  for (int j = 0; j < 2; j++) {
    size_t cc[8];
    for (size_t c = 0; c < 8; c++) cc[c] = ns[j];
    ufm_model *m = random_state(8, ps[j], cc, 91 + (unsigned long)j);
    double one[UFM_NMETRICS];
    ufm_set_threads(2);
    eval_rows(m, 0, one);
    for (int r = 0; r < 3; r++) {
      double a[UFM_NMETRICS], b[UFM_NMETRICS];
      ufm_set_threads(1);
      eval_rows(m, rows[r], a);
      ufm_set_threads(2);
      eval_rows(m, rows[r], b);
      printf("# syrk rows %zu, p = %zu: nc1 %.17g (one DSYRK %.17g), seli_H %.17g (%.17g)\n",
             rows[r], m->p, b[UFM_M_NC1], one[UFM_M_NC1], b[UFM_M_SELI_H], one[UFM_M_SELI_H]);
      assert_memory_equal(a, b, sizeof a);
      metrics_close(b, one, 1e-12, 1e-300, -1);
    }
    ufm_model_free(m);
  }
}

/* ufm_gram512 (gemm.c) against the chains it promises: entry (i, j) of X
 * is fma(C_js, R_is, .) over s in order from 0, stored (first) or added
 * to X, bit for bit, at shapes with partial panels (rows not a multiple
 * of 8), one to three panels left in a block row, and w from 1; with sym,
 * X's 8 x 8 blocks below the diagonal and the columns past nc untouched.
 * Then the metrics with it (the default where the CPU has AVX-512) against
 * the BLAS's sums (DSYRK or its row blocks, and DGEMM) to round-off, in
 * the slabs (p = 192), in one tile without slabs (p = 45, N = 60), in two
 * tiles of side 260 (rows not a multiple of 8) and in three (p = 1030:
 * 512, 512, 6), with W W^T and M^T M in tiles of 2^20 multiply-adds and
 * more (C = 130, p = 70: one tile; C = 300, p = 100: three), and with
 * H^T H's tiles for p > N (p = 700, N = 240: one; p = 900, N = 280:
 * three), each with the same bits on 1 and 2 threads. Without
 * AVX-512 (valgrind's CPU too): a workspace does not take it. */
static void gram_chains(const double *R, size_t nr, const double *Cm, size_t nc, size_t w,
                        int sym, const double *X0, const double *X, size_t ldx, int first)
{
  for (size_t i = 0; i < nr; i++)
    for (size_t j = 0; j < ldx; j++) {
      const double x0 = X0[i * ldx + j], x = X[i * ldx + j];
      if (j >= nc || (sym && j / 8 < i / 8)) { /* untouched */
        assert_memory_equal(&x, &x0, sizeof x);
        continue;
      }
      double acc = 0.0;
      for (size_t k = 0; k < w; k++) acc = fma(Cm[j * w + k], R[i * w + k], acc);
      const double want = first ? acc : x0 + acc;
      assert_memory_equal(&x, &want, sizeof x);
    }
}

static void test_gram512(void **s)
{
  (void)s;
  if (!ufm_gram512_ok()) {
    ufm_metrics_ws *mw = ufm_metrics_ws_alloc(4, 64, 200);
    assert_int_equal(ufm_metrics_gram512(mw, 1), 0);
    ufm_metrics_ws_free(mw);
    printf("# no AVX-512 here: D D^T by the BLAS only\n");
    return;
  }
  gsl_rng *rng = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(rng, 77);
  const size_t shapes[][3] = {{1, 1, 1},   {7, 9, 3},   {8, 8, 8},    {13, 29, 5},
                              {24, 16, 17}, {25, 40, 2}, {67, 33, 33}, {40, 41, 64}};
  for (size_t t = 0; t < sizeof shapes / sizeof shapes[0]; t++) {
    const size_t nr = shapes[t][0], nc = shapes[t][1], w = shapes[t][2], ldx = nc + 3;
    double *R = malloc(nr * w * sizeof(double)), *Cm = malloc(nc * w * sizeof(double));
    double *PR = malloc(ufm_gram512_size(nr, w) * sizeof(double));
    double *PC = malloc(ufm_gram512_size(nc, w) * sizeof(double));
    double *X0 = malloc(nr * ldx * sizeof(double)), *X = malloc(nr * ldx * sizeof(double));
    for (size_t k = 0; k < nr * w; k++) R[k] = gsl_ran_gaussian(rng, 1.0);
    for (size_t k = 0; k < nc * w; k++) Cm[k] = gsl_ran_gaussian(rng, 1.0);
    for (size_t k = 0; k < nr * ldx; k++) X0[k] = gsl_ran_gaussian(rng, 3.0);
    ufm_gram512_pack(R, nr, w, w, PR);
    ufm_gram512_pack(Cm, nc, w, w, PC);
    for (int first = 0; first < 2; first++) {
      memcpy(X, X0, nr * ldx * sizeof(double));
      ufm_gram512(PR, nr, PC, nc, w, 0, first, X, ldx);
      gram_chains(R, nr, Cm, nc, w, 0, X0, X, ldx, first);
      const size_t ld2 = nr + 2; /* R R^T, nr x nr in rows of nr + 2 */
      double *Y0 = malloc(nr * ld2 * sizeof(double)), *Y = malloc(nr * ld2 * sizeof(double));
      for (size_t k = 0; k < nr * ld2; k++) Y0[k] = gsl_ran_gaussian(rng, 3.0);
      memcpy(Y, Y0, nr * ld2 * sizeof(double));
      ufm_gram512(PR, nr, PR, nr, w, 1, first, Y, ld2);
      gram_chains(R, nr, R, nr, w, 1, Y0, Y, ld2, first);
      free(Y0);
      free(Y);
    }
    free(R), free(Cm), free(PR), free(PC), free(X0), free(X);
  }
  gsl_rng_free(rng);
  const struct { size_t C, p, n; } cases[] = {{8, 192, 50}, {4, 45, 15},  {8, 520, 66},
                                               {5, 1030, 220}, {130, 70, 3}, {6, 700, 40},
                                               {300, 100, 2},  {4, 900, 70}};
  size_t cc[300];
  for (size_t j = 0; j < sizeof cases / sizeof cases[0]; j++) {
    for (size_t c = 0; c < cases[j].C; c++) cc[c] = cases[j].n;
    ufm_model *m = random_state(cases[j].C, cases[j].p, cc, 95 + (unsigned long)j);
    double blas[UFM_NMETRICS], a[UFM_NMETRICS], b[UFM_NMETRICS];
    ufm_set_threads(2);
    eval_g512(m, ufm_metrics_syrk_rows_default(), 0, blas);
    eval_g512(m, 0, 1, b);
    ufm_set_threads(1);
    eval_g512(m, 0, 1, a);
    ufm_set_threads(2);
    printf("# gram512, C = %zu, p = %zu, N = %zu: nc1 %.17g (BLAS %.17g), seli_H %.17g (%.17g)\n",
           m->C, m->p, m->N, b[UFM_M_NC1], blas[UFM_M_NC1], b[UFM_M_SELI_H], blas[UFM_M_SELI_H]);
    assert_memory_equal(a, b, sizeof a);
    assert_true(isfinite(b[UFM_M_SELI_H]) && b[UFM_M_NC1] > 0.0);
    metrics_close(b, blas, 1e-12, 1e-300, -1);
    ufm_model_free(m);
  }
}

/* ------------------------------------- 8. compute_seli_H = false */

/* One evaluation with seli_H on or off, LQ path allowed or not, on the
 * current thread count. */
static void eval_seli(const ufm_model *m, int seli_H, int qr, double *out)
{
  ufm_problem pb = {&ufm_loss_ce, 2.385e-3, 1.7e-3, 0};
  ufm_grad_ws *ws = ufm_grad_ws_alloc(m->C, m->p, m->N);
  ufm_metrics_ws *mw = ufm_metrics_ws_alloc_seli(m->C, m->p, m->N, seli_H);
  ufm_metrics_use_qr(mw, qr);
  assert_int_equal(ufm_grad_eval(&pb, m, ws), UFM_OK);
  ufm_metrics_eval(&pb, m, ws, mw, out);
  ufm_metrics_ws_free(mw);
  ufm_grad_ws_free(ws);
}

/* Off and on give every column but seli_H alike (NaN where on is NaN),
 * to rtol, and (with_ref) NC1 that of the brute-force reference to 1e-9,
 * with the LQ path's factor and with the SVD's; off's seli_H is NaN and
 * on's finite; off gives the same bits on 1 and 2 threads. */
static void seli_off_case(const ufm_model *m, const char *what, double rtol, int with_ref)
{
  ref_metrics ref;
  if (with_ref) reference(m, &ref);
  for (int qr = 0; qr < 2; qr++) {
    double on[UFM_NMETRICS], off[UFM_NMETRICS], off1[UFM_NMETRICS];
    ufm_set_threads(2);
    eval_seli(m, 1, qr, on);
    eval_seli(m, 0, qr, off);
    ufm_set_threads(1);
    eval_seli(m, 0, qr, off1);
    ufm_set_threads(2);
    printf("# seli_H off, %s (C=%zu p=%zu N=%zu, LQ %s): nc1 %.17g on, %.17g off\n", what, m->C,
           m->p, m->N, qr ? "allowed" : "off", on[UFM_M_NC1], off[UFM_M_NC1]);
    assert_true(isfinite(on[UFM_M_SELI_H]));
    assert_true(isnan(off[UFM_M_SELI_H]));
    if (with_ref) {
      assert_close(on[UFM_M_NC1], ref.nc1, 1e-9, 0);
      assert_close(off[UFM_M_NC1], ref.nc1, 1e-9, 0);
    }
    metrics_close(off, on, rtol, 0, UFM_M_SELI_H);
    assert_memory_equal(off, off1, sizeof off);
  }
}

/* compute_seli_H = false: the paths it changes. NC1 from U_r^T D (p <= N,
 * p > 2 (C - 1)) in one block and panel, in three blocks and two panels
 * (p = 600 > DPANEL), with unequal counts; the tiles of D D^T kept where
 * they are NC1's cheaper product (p <= 2 (C - 1)): one, in column slabs, and
 * two tiles of side 260 (p = 520, C = 261);
 * p > N without the tiles of H^T H. Then a state 1e-7 from collapse, whose
 * NC1 (some 1e-17) U_r^T D gives as the tiles do, to 1e-14: D formed, the
 * means' rounding enters at second order (U_r^T H - U_r^T mu_Y came out
 * 1.6e-9 off); and zero deviations give NC1 = 0 exactly. */
static void test_without_seli_H(void **s)
{
  (void)s;
  size_t c5[5], c5b[5], c10[10], c40[40], c261[261];
  for (size_t c = 0; c < 5; c++) c5[c] = 40 + c, c5b[c] = 150;
  for (size_t c = 0; c < 10; c++) c10[c] = 10;
  for (size_t c = 0; c < 40; c++) c40[c] = 410;
  for (size_t c = 0; c < 261; c++) c261[c] = 2;
  const size_t c6[6] = {30, 30, 30, 3, 3, 3}, c5p[5] = {60, 60, 50, 50, 50};
  /* the brute-force reference (p x p pseudo-inverse) where it is cheap; at
   * p = 600 and p = 520 on and off agree to 1e-12 instead, and on's paths
   * are checked against it at other shapes (test_against_reference) */
  struct { size_t C, p; const size_t *counts; const char *what; int ref; } cases[] = {
      {5, 64, c5, "U_r^T D, one block", 1},
      {5, 600, c5b, "U_r^T D, three blocks, two panels", 0},
      {6, 40, c6, "U_r^T D, step imbalance", 1},
      {10, 12, c10, "tiles of D D^T", 1},
      {40, 64, c40, "D D^T in slabs", 1},
      {261, 520, c261, "D D^T in three tile pairs", 0},
      {5, 300, c5p, "p > N", 1},
  };
  for (size_t j = 0; j < sizeof cases / sizeof cases[0]; j++) {
    ufm_model *m = random_state(cases[j].C, cases[j].p, cases[j].counts, 300 + j);
    seli_off_case(m, cases[j].what, 1e-12, cases[j].ref);
    ufm_model_free(m);
  }
  /* near collapse: h_i = 3 w_{y_i} + 1e-7 noise, the means far apart */
  ufm_model *m = random_state(5, 64, c5, 310);
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, 311);
  for (size_t i = 0; i < m->N; i++)
    for (size_t k = 0; k < m->p; k++)
      gsl_matrix_set(m->H, k, i,
                     3.0 * gsl_matrix_get(m->W, m->labels[i], k) + 1e-7 * gsl_ran_gaussian(r, 1.0));
  gsl_rng_free(r);
  double on[UFM_NMETRICS], off[UFM_NMETRICS];
  eval_seli(m, 1, 1, on);
  eval_seli(m, 0, 1, off);
  printf("# seli_H off, 1e-7 from collapse: nc1 %.17g on, %.17g off\n", on[UFM_M_NC1],
         off[UFM_M_NC1]);
  assert_true(on[UFM_M_NC1] > 1e-17 && on[UFM_M_NC1] < 1e-11);
  assert_close(off[UFM_M_NC1], on[UFM_M_NC1], 1e-14, 0);
  /* zero deviations: every sample its class's first, in integers (exact means) */
  for (size_t c = 0; c < m->C; c++)
    for (size_t k = 0; k < m->p; k++) {
      const double v = round(4.0 * gsl_matrix_get(m->H, k, m->offset[c]));
      for (size_t i = m->offset[c]; i < m->offset[c + 1]; i++) gsl_matrix_set(m->H, k, i, v);
    }
  eval_seli(m, 0, 1, off);
  assert_true(off[UFM_M_NC1] == 0.0);
  eval_seli(m, 0, 0, off);
  assert_true(off[UFM_M_NC1] == 0.0);
  ufm_model_free(m);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_etf_exact),
      cmocka_unit_test(test_hand_case),
      cmocka_unit_test(test_against_reference),
      cmocka_unit_test(test_collapsed_low_dim),
      cmocka_unit_test(test_zero_deviations),
      cmocka_unit_test(test_svd_paths),
      cmocka_unit_test(test_thread_bits),
      cmocka_unit_test(test_lq_path),
      cmocka_unit_test(test_ncc_near_ties),
      cmocka_unit_test(test_ncc_slabs),
      cmocka_unit_test(test_ncc_certify),
      cmocka_unit_test(test_ncc_pair),
      cmocka_unit_test(test_large_tiles),
      cmocka_unit_test(test_syrk_rows),
      cmocka_unit_test(test_gram512),
      cmocka_unit_test(test_without_seli_H),
  };
  return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
