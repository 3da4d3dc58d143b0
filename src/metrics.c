/* metrics.c -- NC1-NC4 and friends from W, H, b through class means, C x C Grams and M's thin SVD.
 *
 * Contents: 1. workspace  2. class means and within-class scatter
 *           3. thin SVD of M, NC1 and the nearest-class-centre rule
 *           4. Gram-matrix metrics (norms, angles, ETF, NC3)
 *           5. imbalance: minority cosines and distances to SELI  6. driver
 *
 * Notation (SPEC section 2): mu_c class means, mu_G the sample-weighted
 * global mean, M = [mu_c - mu_G] (p x C), M = U S V^T its thin SVD with
 * numerical rank r, U_r its first r left singular vectors.
 */
#include "metrics.h"
#include "common.h"
#include "gemm.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <gsl/gsl_blas.h>
#include <gsl/gsl_linalg.h>

#include "geometry.h"

const char *const ufm_metric_names[UFM_NMETRICS] = {
    "loss",        "objective",   "acc",        "nc1",        "cdnv",      "equinorm_M",
    "equinorm_W",  "equiangle_M", "equiangle_W", "maxangle_M", "maxangle_W", "etf_M",
    "etf_W",       "nc3",         "nc4",        "norm_W",     "norm_H",    "norm_b",
    "margin",      "nmargin",     "grad_norm",  "mc_cos_W",   "mc_cos_M",  "seli_W",
    "seli_H",      "seli_Z",      "mc_dist_W"};

#define NCC_BLOCK 256
#define GRAM_BLOCK 256

/* ----------------------------------------------------------------- 1. workspace */

struct ufm_metrics_ws {
  size_t C, p, N, k; /* k = min(p, C)                                 */
  gsl_matrix *mu;    /* p x C  class means                              */
  gsl_vector *muG;   /* p      global mean                              */
  gsl_matrix *M;     /* p x C  centred class means                      */
  double *part;      /* p x C  per-row within-class sums of squares    */
  double *s2;        /* C      s_c^2 = mean_{i in c} ||h_i - mu_c||^2   */
  gsl_matrix *A;     /* max(p,C) x k: SVD input, then its U             */
  gsl_matrix *V;     /* k x k                                            */
  gsl_vector *S;     /* k singular values of M, descending               */
  gsl_vector *work;  /* k                                                */
  gsl_matrix *U;     /* p x k  left singular vectors of M                */
  size_t r;          /* numerical rank                                   */
  gsl_matrix *Q;     /* k x N  U_r^T H                                   */
  gsl_matrix *Bmu;   /* k x C  U_r^T mu                                  */
  double *rowres;    /* k                                                */
  double *bnorm2;    /* C      ||U_r^T mu_c||^2 / 2                      */
  gsl_matrix *score; /* NCC_BLOCK x C                                    */
  int32_t *ncc;      /* N      nearest class centre                      */
  gsl_matrix *GM;    /* C x C  M^T M                                     */
  gsl_matrix *GW;    /* C x C  W W^T                                     */
  /* imbalance: the SELI reference of the counts, computed on first use */
  int seli_ready;
  gsl_matrix *seliW; /* C x C  U L U^T                                     */
  gsl_matrix *seliK; /* C x C  U L^-1 U^T                                  */
  gsl_matrix *T;     /* p x C  columns n_c mu_c - (N/C) mu_G = (Zhat H^T)^T */
  gsl_matrix *TT;    /* C x C                                              */
  gsl_matrix *blk;   /* GRAM_BLOCK x GRAM_BLOCK, for ||H^T H||_F           */
  int *minority;     /* C: class has the smaller of exactly two counts     */
  size_t nminority;
};

ufm_metrics_ws *ufm_metrics_ws_alloc(size_t C, size_t p, size_t N)
{
  ufm_metrics_ws *mw = ufm_calloc(1, sizeof *mw);
  size_t k = p < C ? p : C, big = p < C ? C : p;
  mw->C = C;
  mw->p = p;
  mw->N = N;
  mw->k = k;
  mw->mu = gsl_matrix_alloc(p, C);
  mw->muG = gsl_vector_alloc(p);
  mw->M = gsl_matrix_alloc(p, C);
  mw->A = gsl_matrix_alloc(big, k);
  mw->V = gsl_matrix_alloc(k, k);
  mw->S = gsl_vector_alloc(k);
  mw->work = gsl_vector_alloc(k);
  mw->U = gsl_matrix_alloc(p, k);
  mw->Q = gsl_matrix_alloc(k, N);
  mw->Bmu = gsl_matrix_alloc(k, C);
  mw->score = gsl_matrix_alloc(NCC_BLOCK, C);
  mw->GM = gsl_matrix_alloc(C, C);
  mw->GW = gsl_matrix_alloc(C, C);
  mw->seliW = gsl_matrix_alloc(C, C);
  mw->seliK = gsl_matrix_alloc(C, C);
  mw->T = gsl_matrix_alloc(p, C);
  mw->TT = gsl_matrix_alloc(C, C);
  size_t bs = (p < N ? p : N) < GRAM_BLOCK ? (p < N ? p : N) : GRAM_BLOCK;
  mw->blk = gsl_matrix_alloc(bs ? bs : 1, bs ? bs : 1);
  mw->minority = ufm_calloc(C, sizeof(int));
  if (!mw->seliW || !mw->seliK || !mw->T || !mw->TT || !mw->blk || !mw->mu || !mw->muG || !mw->M || !mw->A || !mw->V || !mw->S || !mw->work || !mw->U
      || !mw->Q || !mw->Bmu || !mw->score || !mw->GM || !mw->GW) {
    ufm_metrics_ws_free(mw);
    return NULL;
  }
  mw->part = ufm_malloc(p * C * sizeof(double));
  mw->s2 = ufm_malloc(C * sizeof(double));
  mw->rowres = ufm_malloc(k * sizeof(double));
  mw->bnorm2 = ufm_malloc(C * sizeof(double));
  mw->ncc = ufm_malloc(N * sizeof(int32_t));
  return mw;
}

void ufm_metrics_ws_free(ufm_metrics_ws *mw)
{
  if (!mw) return;
  gsl_matrix *mats[] = {mw->mu, mw->M,  mw->A,     mw->V,     mw->U, mw->Q,  mw->Bmu,
                        mw->score, mw->GM, mw->GW, mw->seliW, mw->seliK, mw->T, mw->TT, mw->blk};
  for (size_t j = 0; j < sizeof mats / sizeof mats[0]; j++)
    if (mats[j]) gsl_matrix_free(mats[j]);
  if (mw->muG) gsl_vector_free(mw->muG);
  if (mw->S) gsl_vector_free(mw->S);
  if (mw->work) gsl_vector_free(mw->work);
  free(mw->part);
  free(mw->s2);
  free(mw->rowres);
  free(mw->bnorm2);
  free(mw->ncc);
  free(mw->minority);
  free(mw);
}

size_t ufm_metrics_rank(const ufm_metrics_ws *mw) { return mw->r; }

/* ------------------------------------- 2. class means and within-class scatter */

/* One pass per row of H (rows in parallel, each row's sums in column order):
 * mu[k][c], muG[k], M = mu - muG, and part[k][c] = sum_{i in c} (H_ki - mu_kc)^2.
 * The scatter is summed from deviations, not as E h^2 - mu^2, which would
 * cancel to noise exactly when features collapse. */
static void class_means(const ufm_model *m, ufm_metrics_ws *mw)
{
  const size_t C = m->C, p = m->p, N = m->N;
#pragma omp parallel for schedule(static) if (p * N >= UFM_PAR_MIN)
  for (size_t k = 0; k < p; k++) {
    const double *h = m->H->data + k * N;
    double *mu = mw->mu->data + k * C, *part = mw->part + k * C;
    double tot = 0.0;
    for (size_t c = 0; c < C; c++) {
      double s = 0.0;
      for (size_t i = m->offset[c]; i < m->offset[c + 1]; i++) s += h[i];
      tot += s;
      mu[c] = s / (double)m->counts[c];
    }
    double g = tot / (double)N;
    mw->muG->data[k] = g;
    for (size_t c = 0; c < C; c++) {
      double s = 0.0;
      for (size_t i = m->offset[c]; i < m->offset[c + 1]; i++) {
        double d = h[i] - mu[c];
        s += d * d;
      }
      part[c] = s;
      mw->M->data[k * C + c] = mu[c] - g;
    }
  }
  for (size_t c = 0; c < C; c++) {
    double s = 0.0;
    for (size_t k = 0; k < p; k++) s += mw->part[k * C + c];
    mw->s2[c] = s / (double)m->counts[c];
  }
}

/* ------------------- 3. thin SVD of M, NC1 and the nearest-class-centre rule */

/* U (p x k), S (k) of M; for p < C through the SVD of M^T (GSL wants tall). */
static void thin_svd(ufm_metrics_ws *mw)
{
  const size_t p = mw->p, C = mw->C, k = mw->k;
  if (p >= C) {
    gsl_matrix_memcpy(mw->A, mw->M);
    gsl_linalg_SV_decomp(mw->A, mw->V, mw->S, mw->work);
    gsl_matrix_memcpy(mw->U, mw->A);
  } else {
    gsl_matrix_transpose_memcpy(mw->A, mw->M);
    gsl_linalg_SV_decomp(mw->A, mw->V, mw->S, mw->work);
    gsl_matrix_memcpy(mw->U, mw->V); /* M = V S A^T: V holds M's left vectors */
  }
  double smax = k > 0 ? gsl_vector_get(mw->S, 0) : 0.0;
  double tol = (double)(p > C ? p : C) * DBL_EPSILON * smax;
  size_t r = 0;
  while (r < k && gsl_vector_get(mw->S, r) > tol) r++;
  mw->r = r;
}

/* With Q = U_r^T H and B = U_r^T mu (r x C):
 *   Tr(Sigma_W Sigma_B^+)/C = sum_k s_k^-2 (1/N) sum_i (Q_ki - B_{k,y_i})^2,
 * since Sigma_B^+ = C U_r S_r^-2 U_r^T. The nearest class centre of h_i is
 * argmin_c ||Q_i - B_c||: the part of h_i - mu_c outside span(U_r) does not
 * depend on c. Returns NC1 and fills mw->ncc. */
static double nc1_and_ncc(const ufm_model *m, ufm_metrics_ws *mw)
{
  const size_t C = m->C, N = m->N, r = mw->r;
  if (r == 0) { /* all class means coincide: Sigma_B = 0, its pseudo-inverse 0 */
    for (size_t i = 0; i < N; i++) mw->ncc[i] = 0;
    return 0.0;
  }
  gsl_matrix_view Ur = gsl_matrix_submatrix(mw->U, 0, 0, m->p, r);
  gsl_matrix_view Q = gsl_matrix_submatrix(mw->Q, 0, 0, r, N);
  gsl_matrix_view B = gsl_matrix_submatrix(mw->Bmu, 0, 0, r, C);
  ufm_gemm(CblasTrans, CblasNoTrans, 1.0, &Ur.matrix, m->H, 0.0, &Q.matrix);
  gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, &Ur.matrix, mw->mu, 0.0, &B.matrix);

#pragma omp parallel for schedule(static) if (r * N >= UFM_PAR_MIN)
  for (size_t k = 0; k < r; k++) {
    const double *q = Q.matrix.data + k * Q.matrix.tda;
    const double *bk = B.matrix.data + k * B.matrix.tda;
    double s = 0.0;
    for (size_t c = 0; c < C; c++)
      for (size_t i = m->offset[c]; i < m->offset[c + 1]; i++) {
        double d = q[i] - bk[c];
        s += d * d;
      }
    mw->rowres[k] = s;
  }
  double nc1 = 0.0;
  for (size_t k = 0; k < r; k++) {
    double sk = gsl_vector_get(mw->S, k);
    nc1 += mw->rowres[k] / (sk * sk);
  }
  nc1 /= (double)N;

  for (size_t c = 0; c < C; c++) {
    double s = 0.0;
    for (size_t k = 0; k < r; k++) {
      double v = gsl_matrix_get(&B.matrix, k, c);
      s += v * v;
    }
    mw->bnorm2[c] = 0.5 * s;
  }
  for (size_t i0 = 0; i0 < N; i0 += NCC_BLOCK) {
    size_t nb = N - i0 < NCC_BLOCK ? N - i0 : NCC_BLOCK;
    gsl_matrix_view Qb = gsl_matrix_submatrix(&Q.matrix, 0, i0, r, nb);
    gsl_matrix_view Sb = gsl_matrix_submatrix(mw->score, 0, 0, nb, C);
    gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, &Qb.matrix, &B.matrix, 0.0, &Sb.matrix);
    for (size_t j = 0; j < nb; j++) {
      const double *sc = mw->score->data + j * mw->score->tda;
      size_t best = 0;
      double bv = sc[0] - mw->bnorm2[0];
      for (size_t c = 1; c < C; c++) {
        double v = sc[c] - mw->bnorm2[c];
        if (v > bv) {
          bv = v;
          best = c;
        }
      }
      mw->ncc[i0 + j] = (int32_t)best;
    }
  }
  return nc1;
}

/* -------------------- 4. Gram-matrix metrics (norms, angles, ETF, NC3) */

static void mean_std(const double *x, size_t n, double *mean, double *std)
{
  double s = 0.0, v = 0.0;
  for (size_t j = 0; j < n; j++) s += x[j];
  double a = s / (double)n;
  for (size_t j = 0; j < n; j++) v += (x[j] - a) * (x[j] - a);
  *mean = a;
  *std = sqrt(v / (double)n);
}

/* From a C x C Gram matrix G of vectors v_c: Std/Avg of ||v_c||; Std over
 * c != c' of the cosines; Avg of |cos + 1/(C-1)|; and
 * || G/||G||_F - (I - 11^T/C)/sqrt(C-1) ||_F. */
static void gram_metrics(const gsl_matrix *G, double *equinorm, double *equiangle,
                         double *maxangle, double *etf)
{
  const size_t C = G->size1;
  double *nrm = ufm_malloc(C * sizeof(double));
  double *cosv = ufm_malloc(C * (C - 1) * sizeof(double));
  for (size_t c = 0; c < C; c++) nrm[c] = sqrt(fmax(gsl_matrix_get(G, c, c), 0.0));
  double a, s;
  mean_std(nrm, C, &a, &s);
  *equinorm = s / a;

  size_t n = 0;
  double dev = 0.0, fro2 = 0.0;
  for (size_t c = 0; c < C; c++)
    for (size_t d = 0; d < C; d++) {
      double g = gsl_matrix_get(G, c, d);
      fro2 += g * g;
      if (c == d) continue;
      double cs = g / (nrm[c] * nrm[d]);
      cosv[n++] = cs;
      dev += fabs(cs + 1.0 / (double)(C - 1));
    }
  mean_std(cosv, n, &a, &s);
  *equiangle = s;
  *maxangle = dev / (double)n;

  double fro = sqrt(fro2), inv = 1.0 / sqrt((double)(C - 1)), e2 = 0.0;
  for (size_t c = 0; c < C; c++)
    for (size_t d = 0; d < C; d++) {
      double ref = ((c == d ? 1.0 : 0.0) - 1.0 / (double)C) * inv;
      double diff = gsl_matrix_get(G, c, d) / fro - ref;
      e2 += diff * diff;
    }
  *etf = sqrt(e2);
  free(nrm);
  free(cosv);
}

/* Avg_{c<c'} (s_c^2 + s_c'^2) / (2 ||mu_c - mu_c'||^2). */
static double cdnv(const ufm_metrics_ws *mw)
{
  const size_t C = mw->C;
  double s = 0.0;
  for (size_t c = 0; c < C; c++)
    for (size_t d = c + 1; d < C; d++) {
      double dist2 = gsl_matrix_get(mw->GM, c, c) + gsl_matrix_get(mw->GM, d, d)
                     - 2.0 * gsl_matrix_get(mw->GM, c, d);
      s += (mw->s2[c] + mw->s2[d]) / (2.0 * fmax(dist2, 0.0));
    }
  return s / (0.5 * (double)C * (double)(C - 1));
}

/* || W^T/||W||_F - M/||M||_F ||_F^2 */
static double nc3(const ufm_model *m, const ufm_metrics_ws *mw, double normW)
{
  double trM = 0.0;
  for (size_t c = 0; c < m->C; c++) trM += gsl_matrix_get(mw->GM, c, c);
  double normM = sqrt(trM), s = 0.0;
  for (size_t k = 0; k < m->p; k++)
    for (size_t c = 0; c < m->C; c++) {
      double d = gsl_matrix_get(m->W, c, k) / normW - gsl_matrix_get(mw->M, k, c) / normM;
      s += d * d;
    }
  return s;
}

/* ----------------------------------------------- 5. imbalance: minority and SELI */

/* Minority classes: those with the smaller count when exactly two counts
 * occur (SPEC section 2); the SELI reference of the counts. Once per run. */
static void seli_setup(const ufm_model *m, ufm_metrics_ws *mw)
{
  size_t lo = m->counts[0], hi = m->counts[0];
  int two = 1;
  for (size_t c = 0; c < m->C; c++) {
    if (m->counts[c] < lo) lo = m->counts[c];
    if (m->counts[c] > hi) hi = m->counts[c];
  }
  for (size_t c = 0; c < m->C; c++)
    if (m->counts[c] != lo && m->counts[c] != hi) two = 0;
  mw->nminority = 0;
  for (size_t c = 0; c < m->C; c++) {
    mw->minority[c] = two && lo != hi && m->counts[c] == lo;
    mw->nminority += (size_t)mw->minority[c];
  }
  ufm_seli(m->C, m->counts, NULL, mw->seliW, mw->seliK, NULL);
  mw->seli_ready = 1;
}

/* Avg over minority pairs c != c' of the cosine from Gram G; NaN unless there
 * are two minority classes or more. Past the threshold under weight decay
 * the minority vectors can all be zero (dead classes): a pair of vectors both
 * below 1e-12 of the largest norm is identical, cosine 1 (their round-off
 * directions would give noise); one zero and one not has no cosine (NaN). */
static double minority_cos(const ufm_metrics_ws *mw, const gsl_matrix *G)
{
  if (mw->nminority < 2) return NAN;
  double gmax = 0.0;
  for (size_t c = 0; c < mw->C; c++) gmax = fmax(gmax, gsl_matrix_get(G, c, c));
  double tiny = 1e-24 * gmax, s = 0.0;
  size_t n = 0;
  for (size_t c = 0; c < mw->C; c++)
    for (size_t d = 0; d < mw->C; d++)
      if (c != d && mw->minority[c] && mw->minority[d]) {
        double gc = gsl_matrix_get(G, c, c), gd = gsl_matrix_get(G, d, d);
        if (gc <= tiny && gd <= tiny) s += 1.0;
        else if (gc <= tiny || gd <= tiny) s += NAN;
        else s += gsl_matrix_get(G, c, d) / sqrt(gc * gd);
        n++;
      }
  return s / (double)n;
}

/* Avg over minority pairs of ||w_c - w_c'||, divided by Avg_c ||w_c|| over
 * all classes: 0 exactly at minority collapse (THEORY.md section 3), however
 * small the minority classifiers are. From the Gram, so accurate to about
 * 1e-8 relative. */
static double minority_dist(const ufm_metrics_ws *mw, const gsl_matrix *G)
{
  if (mw->nminority < 2) return NAN;
  double s = 0.0, avg = 0.0;
  size_t n = 0;
  for (size_t c = 0; c < mw->C; c++) avg += sqrt(fmax(gsl_matrix_get(G, c, c), 0.0)) / (double)mw->C;
  for (size_t c = 0; c < mw->C; c++)
    for (size_t d = 0; d < mw->C; d++)
      if (c != d && mw->minority[c] && mw->minority[d]) {
        double d2 = gsl_matrix_get(G, c, c) + gsl_matrix_get(G, d, d) - 2 * gsl_matrix_get(G, c, d);
        s += sqrt(fmax(d2, 0.0));
        n++;
      }
  return s / (double)n / avg;
}

/* || A/||A||_F - B/||B||_F ||_F for C x C matrices. */
static double normalised_distance(const gsl_matrix *A, const gsl_matrix *B)
{
  double fa = 0, fb = 0, d = 0;
  size_t n = A->size1 * A->size2;
  for (size_t k = 0; k < n; k++) {
    fa += A->data[k] * A->data[k];
    fb += B->data[k] * B->data[k];
  }
  fa = sqrt(fa);
  fb = sqrt(fb);
  for (size_t k = 0; k < n; k++) {
    double x = A->data[k] / fa - B->data[k] / fb;
    d += x * x;
  }
  return sqrt(d);
}

/* ||H^T H||_F^2 = ||H H^T||_F^2 through GRAM_BLOCK-sized blocks of the
 * smaller Gram (rows of H when p <= N, columns otherwise), never storing
 * it: min(p,N)^2 max(p,N) flops, blocks summed in a fixed order. */
static double gram_fro2(const gsl_matrix *H, gsl_matrix *blk)
{
  const size_t p = H->size1, N = H->size2, n = p <= N ? p : N, bs = blk->size1;
  const size_t nblk = (n + bs - 1) / bs, npairs = nblk * (nblk + 1) / 2;
  double *part = ufm_calloc(npairs, sizeof(double));
  /* block pairs (a <= b) in parallel, each into its own slot, summed in order */
#pragma omp parallel for schedule(dynamic, 1) if (npairs > 1)
  for (size_t q = 0; q < npairs; q++) {
    size_t ia = 0, rem = q;
    while (rem >= nblk - ia) {
      rem -= nblk - ia;
      ia++;
    }
    size_t a = ia * bs, b = (ia + rem) * bs;
    {
      size_t na = n - a < bs ? n - a : bs, nb = n - b < bs ? n - b : bs;
      gsl_matrix *blkq = gsl_matrix_alloc(na, nb);
      gsl_matrix_view out = gsl_matrix_submatrix(blkq, 0, 0, na, nb);
      if (p <= N) {
        gsl_matrix_const_view Ha = gsl_matrix_const_submatrix(H, a, 0, na, N);
        gsl_matrix_const_view Hb = gsl_matrix_const_submatrix(H, b, 0, nb, N);
        gsl_blas_dgemm(CblasNoTrans, CblasTrans, 1.0, &Ha.matrix, &Hb.matrix, 0.0, &out.matrix);
      } else {
        gsl_matrix_const_view Ha = gsl_matrix_const_submatrix(H, 0, a, p, na);
        gsl_matrix_const_view Hb = gsl_matrix_const_submatrix(H, 0, b, p, nb);
        gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, &Ha.matrix, &Hb.matrix, 0.0, &out.matrix);
      }
      double s = 0.0;
      for (size_t i = 0; i < na; i++) s += ufm_sumsq(out.matrix.data + i * out.matrix.tda, nb);
      part[q] = (a == b ? 1.0 : 2.0) * s;
      gsl_matrix_free(blkq);
    }
  }
  double total = 0.0;
  for (size_t q = 0; q < npairs; q++) total += part[q];
  free(part);
  return total;
}

/* seli_H = || H^T H/||H^T H|| - V L V^T/||V L V^T|| ||_F without an N x N
 * matrix: V L V^T = Zhat^T K Zhat, so <H^T H, V L V^T> = Tr(K T^T T) with
 * T = Zhat H^T (C x p, rows n_c mu_c - (N/C) mu_G), ||V L V^T||_F^2 =
 * ||Zhat||_F^2 = N (C-1)/C; the distance is sqrt(2 - 2 cos), accurate to
 * about 1e-8 (the cancellation in 2 - 2 cos). */
static double seli_H(const ufm_model *m, ufm_metrics_ws *mw)
{
  const size_t C = m->C, p = m->p;
  const double N = (double)m->N;
  for (size_t k = 0; k < p; k++)
    for (size_t c = 0; c < C; c++)
      gsl_matrix_set(mw->T, k, c, (double)m->counts[c] * gsl_matrix_get(mw->mu, k, c)
                                      - N / (double)C * gsl_vector_get(mw->muG, k));
  gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, mw->T, mw->T, 0.0, mw->TT);
  double inner = 0.0;
  for (size_t c = 0; c < C; c++)
    for (size_t d = 0; d < C; d++) inner += gsl_matrix_get(mw->seliK, c, d) * gsl_matrix_get(mw->TT, d, c);
  double a2 = gram_fro2(m->H, mw->blk), b2 = N * (double)(C - 1) / (double)C;
  double cs = inner / sqrt(a2 * b2);
  return sqrt(fmax(0.0, 2.0 - 2.0 * cs));
}

/* seli_Z from the per-sample ||z_i||^2 and z_{i,y_i} - mean z_i of the loss
 * pass: <Z, Zhat> = sum_i (z_{i,y_i} - mean_c z_ic), ||Zhat||_F^2 = N (C-1)/C. */
static double seli_Z(const ufm_model *m, const ufm_grad_ws *ws)
{
  double z2 = 0.0, inner = 0.0;
  for (size_t i = 0; i < m->N; i++) {
    z2 += ws->zstat[2 * i];
    inner += ws->zstat[2 * i + 1];
  }
  double zh2 = (double)m->N * (double)(m->C - 1) / (double)m->C;
  return sqrt(fmax(0.0, 2.0 - 2.0 * inner / sqrt(z2 * zh2)));
}

void ufm_metrics_class_norms(const ufm_metrics_ws *mw, double *wnorm, double *mnorm)
{
  for (size_t c = 0; c < mw->C; c++) {
    if (wnorm) wnorm[c] = sqrt(fmax(gsl_matrix_get(mw->GW, c, c), 0.0));
    if (mnorm) mnorm[c] = sqrt(fmax(gsl_matrix_get(mw->GM, c, c), 0.0));
  }
}

static void normalise(gsl_matrix *A)
{
  double f = 0;
  for (size_t k = 0; k < A->size1 * A->size2; k++) f += A->data[k] * A->data[k];
  if (f > 0) gsl_matrix_scale(A, 1.0 / sqrt(f));
}

/* References under SELI (h_i = mu_{y_i}, W H = Zhat): W W^T = U L U^T;
 * uncentred mean Gram K, so for centred means M = Mraw (I - n 1^T/N):
 * M^T M = (I - 1 n^T/N) K (I - n 1^T/N); W Mraw = P, so
 * W M = P - (1/N)(n - (N/C) 1) 1^T. Balanced counts: all three are the
 * simplex ETF's P up to scale. */
void ufm_metrics_grams(const ufm_metrics_ws *mw, const ufm_model *m, gsl_matrix *WW,
                       gsl_matrix *MM, gsl_matrix *WM, gsl_matrix *WWref, gsl_matrix *MMref,
                       gsl_matrix *WMref)
{
  const size_t C = m->C;
  const double N = (double)m->N, Cd = (double)C;
  if (WW) {
    gsl_matrix_memcpy(WW, mw->GW);
    normalise(WW);
  }
  if (MM) {
    gsl_matrix_memcpy(MM, mw->GM);
    normalise(MM);
  }
  if (WM) {
    gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, 1.0, m->W, mw->M, 0.0, WM);
    normalise(WM);
  }
  if (WWref) {
    gsl_matrix_memcpy(WWref, mw->seliW);
    normalise(WWref);
  }
  if (MMref) {
    /* with u = n/N: (I - 1u^T) K (I - u1^T) = K - (Ku)1^T - 1(Ku)^T + (u^T K u) 11^T */
    double *Ku = ufm_calloc(C, sizeof(double)), uKu = 0.0;
    for (size_t a = 0; a < C; a++) {
      for (size_t c = 0; c < C; c++) Ku[a] += gsl_matrix_get(mw->seliK, a, c) * (double)m->counts[c] / N;
      uKu += (double)m->counts[a] / N * Ku[a];
    }
    for (size_t a = 0; a < C; a++)
      for (size_t b = 0; b < C; b++)
        gsl_matrix_set(MMref, a, b, gsl_matrix_get(mw->seliK, a, b) - Ku[a] - Ku[b] + uKu);
    free(Ku);
    normalise(MMref);
  }
  if (WMref) {
    for (size_t a = 0; a < C; a++)
      for (size_t b = 0; b < C; b++)
        gsl_matrix_set(WMref, a, b, (a == b ? 1.0 : 0.0) - 1.0 / Cd - ((double)m->counts[a] - N / Cd) / N);
    normalise(WMref);
  }
}

/* ------------------------------------------------------------------- 6. driver */

void ufm_metrics_eval(const ufm_problem *pb, const ufm_model *m, const ufm_grad_ws *ws,
                      ufm_metrics_ws *mw, double *out)
{
  const size_t N = m->N;
  class_means(m, mw);
  thin_svd(mw);
  double nc1 = nc1_and_ncc(m, mw);
  gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, mw->M, mw->M, 0.0, mw->GM);
  gsl_blas_dgemm(CblasNoTrans, CblasTrans, 1.0, m->W, m->W, 0.0, mw->GW);

  size_t correct = 0, mismatch = 0;
  double margin = INFINITY;
  for (size_t i = 0; i < N; i++) {
    if (ws->pred[i] == m->labels[i]) correct++;
    if (ws->pred[i] != mw->ncc[i]) mismatch++;
    if (ws->margin[i] < margin || isnan(ws->margin[i])) margin = ws->margin[i];
  }
  double normW = sqrt(ws->normW2), normH = sqrt(ws->normH2);

  out[UFM_M_LOSS] = ws->loss;
  out[UFM_M_OBJECTIVE] = ufm_grad_objective(pb, ws);
  out[UFM_M_ACC] = (double)correct / (double)N;
  out[UFM_M_NC1] = nc1;
  out[UFM_M_CDNV] = cdnv(mw);
  gram_metrics(mw->GM, &out[UFM_M_EQUINORM_M], &out[UFM_M_EQUIANGLE_M], &out[UFM_M_MAXANGLE_M],
               &out[UFM_M_ETF_M]);
  gram_metrics(mw->GW, &out[UFM_M_EQUINORM_W], &out[UFM_M_EQUIANGLE_W], &out[UFM_M_MAXANGLE_W],
               &out[UFM_M_ETF_W]);
  out[UFM_M_NC3] = nc3(m, mw, normW);
  out[UFM_M_NC4] = (double)mismatch / (double)N;
  out[UFM_M_NORM_W] = normW;
  out[UFM_M_NORM_H] = normH;
  out[UFM_M_NORM_B] = sqrt(ws->normb2);
  out[UFM_M_MARGIN] = margin;
  out[UFM_M_NMARGIN] = margin / (0.5 * (ws->normW2 + ws->normH2));
  out[UFM_M_GRAD_NORM] = sqrt(ws->gnorm2);

  if (!mw->seli_ready) seli_setup(m, mw);
  out[UFM_M_MC_COS_W] = minority_cos(mw, mw->GW);
  out[UFM_M_MC_COS_M] = minority_cos(mw, mw->GM);
  out[UFM_M_SELI_W] = normalised_distance(mw->GW, mw->seliW);
  out[UFM_M_SELI_H] = seli_H(m, mw);
  out[UFM_M_SELI_Z] = seli_Z(m, ws);
  out[UFM_M_MC_DIST_W] = minority_dist(mw, mw->GW);
}
