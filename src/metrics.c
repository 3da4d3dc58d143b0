/* metrics.c -- NC1-NC4 and friends from W, H, b through class means, C x C Grams and M's thin SVD.
 *
 * Contents: 1. workspace  2. class means and within-class scatter
 *           3. thin SVD of M, NC1 and the nearest-class-centre rule
 *           4. Gram-matrix metrics (norms, angles, ETF, NC3)  5. driver
 *
 * Notation (SPEC section 2): mu_c class means, mu_G the sample-weighted
 * global mean, M = [mu_c - mu_G] (p x C), M = U S V^T its thin SVD with
 * numerical rank r, U_r its first r left singular vectors.
 */
#include "metrics.h"
#include "common.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <gsl/gsl_blas.h>
#include <gsl/gsl_linalg.h>

const char *const ufm_metric_names[UFM_NMETRICS] = {
    "loss",        "objective",   "acc",        "nc1",        "cdnv",      "equinorm_M",
    "equinorm_W",  "equiangle_M", "equiangle_W", "maxangle_M", "maxangle_W", "etf_M",
    "etf_W",       "nc3",         "nc4",        "norm_W",     "norm_H",    "norm_b",
    "margin",      "nmargin",     "grad_norm"};

#define NCC_BLOCK 256

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
  if (!mw->mu || !mw->muG || !mw->M || !mw->A || !mw->V || !mw->S || !mw->work || !mw->U
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
  gsl_matrix *mats[] = {mw->mu, mw->M, mw->A, mw->V, mw->U, mw->Q, mw->Bmu, mw->score, mw->GM, mw->GW};
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
  gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, &Ur.matrix, m->H, 0.0, &Q.matrix);
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

/* ------------------------------------------------------------------- 5. driver */

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
}
