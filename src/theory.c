/* theory.c -- closed-form predictions of THEORY.md: the global minimiser of the UFM where it is known.
 *
 * Contents: 1. the prediction list  2. C x C linear algebra
 *           3. what every regularised prediction prints  4. cross-entropy
 *           5. MSE  6. max margin (SELI)  7. minority collapse, rate
 *           8. driver  9. output
 *
 * Conventions are SPEC section 1's (and THEORY.md's): loss averaged over N,
 * penalties (lambda/2)||.||^2, every feature column penalised. Throughout
 * mu = sqrt(lambda_W lambda_H), D = diag(n_c), n = (n_c), P = I - 11^T/C,
 * J = 11^T/C, Y the C x N one-hot labels (Y Y^T = D, Y 1 = n).
 *
 * The lemma behind every case (Srebro et al. 2005; used by Zhu et al. 2021,
 * Tirer & Bruna 2022, Dang et al. 2023): for any C x N matrix Z of rank k,
 *
 *   min { lambda_W/2 ||W||^2 + lambda_H/2 ||H||^2 : W H = Z, W is C x p } = mu ||Z||_*
 *
 * when p >= k, attained (Z = U S V^T, R any k x p with orthonormal rows) at
 * W = (lambda_H/lambda_W)^(1/4) U S^(1/2) R, H = (lambda_W/lambda_H)^(1/4) R^T S^(1/2) V^T,
 * so that W W^T = sqrt(lambda_H/lambda_W) U S U^T,
 * H^T H = sqrt(lambda_W/lambda_H) V S V^T and lambda_W W^T W = lambda_H H H^T.
 * Hence F(W,H,b) >= G(Z,b) = (1/N) sum_i loss(z_i + b, y_i) + mu ||Z||_* +
 * lambda_b/2 ||b||^2 with Z = W H, a convex problem, and the UFM's minimum
 * is G's as soon as p >= rank of G's minimiser. Nothing here forms an
 * N x N or p x p matrix: every quantity is a function of the counts n_c.
 */
#include "theory.h"
#include "geometry.h"
#include "common.h"
#include "fileio.h"
#include "loss.h"
#include "optim.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_blas.h>
#include <gsl/gsl_eigen.h>
#include <gsl/gsl_linalg.h>

/* ------------------------------------------------------ 1. the prediction list */

static ufm_theory_item *add_item(ufm_theory *th, const char *name)
{
  if (th->n == th->cap) {
    th->cap = th->cap ? 2 * th->cap : 32;
    th->items = realloc(th->items, th->cap * sizeof *th->items);
    if (!th->items) {
      fprintf(stderr, "ufm: out of memory\n");
      abort();
    }
  }
  ufm_theory_item *it = &th->items[th->n++];
  snprintf(it->name, sizeof it->name, "%s", name);
  it->value = NAN;
  it->text = NULL;
  return it;
}

static void put(ufm_theory *th, const char *name, double v) { add_item(th, name)->value = v; }

static void put_idx(ufm_theory *th, const char *prefix, size_t c, double v)
{
  char name[40];
  snprintf(name, sizeof name, "%s_%zu", prefix, c);
  put(th, name, v);
}

static void put_text(ufm_theory *th, const char *name, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void put_text(ufm_theory *th, const char *name, const char *fmt, ...)
{
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  add_item(th, name)->text = strdup(buf);
}

/* ------------------------------------------------------ 2. C x C linear algebra */

/* A C x C matrix, either full (row-major a) or d on the diagonal and o off
 * it (the balanced cases: every matrix is (d - o) I + o 11^T, kept in O(1)
 * memory so that balanced predictions work for any C). */
typedef struct {
  size_t C;
  double *a;
  double d, o;
} cmat;

static double cm(const cmat *m, size_t i, size_t j)
{
  return m->a ? m->a[i * m->C + j] : i == j ? m->d : m->o;
}

static cmat cm_const(size_t C, double d, double o)
{
  cmat m = {C, NULL, d, o};
  return m;
}

static cmat cm_alloc(size_t C)
{
  cmat m = {C, ufm_calloc(C * C, sizeof(double)), 0, 0};
  return m;
}

/* A full copy for the output files, or NULL above UFM_THEORY_CMAX. */
static double *cm_full(const cmat *m)
{
  const size_t C = m->C;
  if (C > UFM_THEORY_CMAX) return NULL;
  double *a = ufm_malloc(C * C * sizeof(double));
  for (size_t i = 0; i < C; i++)
    for (size_t j = 0; j < C; j++) a[i * C + j] = cm(m, i, j);
  return a;
}

/* Eigen-decomposition of the symmetric C x C matrix A (row-major, destroyed):
 * eigenvalues in descending order into ev, eigenvectors as the columns of U
 * (LAPACK's dsyevd where built in, else GSL's symmv). */
static void sym_eig(size_t C, double *A, double *ev, double *U)
{
  gsl_matrix_view Av = gsl_matrix_view_array(A, C, C), Uv = gsl_matrix_view_array(U, C, C);
  gsl_vector_view ew = gsl_vector_view_array(ev, C);
  if (ufm_eigen_lapack(&Av.matrix, &ew.vector, &Uv.matrix) != 0) {
    gsl_eigen_symmv_workspace *w = gsl_eigen_symmv_alloc(C);
    gsl_eigen_symmv(&Av.matrix, &ew.vector, &Uv.matrix, w);
    gsl_eigen_symmv_free(w);
  }
  gsl_eigen_symmv_sort(&ew.vector, &Uv.matrix, GSL_EIGEN_SORT_VAL_DESC);
}

/* out = U diag(f) U^T (C x C), through one dgemm. */
static void spectral(size_t C, const double *U, const double *f, double *out)
{
  double *Uf = ufm_malloc(C * C * sizeof(double));
  for (size_t i = 0; i < C; i++)
    for (size_t k = 0; k < C; k++) Uf[i * C + k] = U[i * C + k] * f[k];
  gsl_matrix_const_view Ufv = gsl_matrix_const_view_array(Uf, C, C);
  gsl_matrix_const_view Uv = gsl_matrix_const_view_array(U, C, C);
  gsl_matrix_view Ov = gsl_matrix_view_array(out, C, C);
  gsl_blas_dgemm(CblasNoTrans, CblasTrans, 1.0, &Ufv.matrix, &Uv.matrix, 0.0, &Ov.matrix);
  free(Uf);
}

/* Singular values of a matrix from the eigenvalues ev of its Gram matrix:
 * eigenvalues below 64 eps ev_max are rounding noise of a zero singular
 * value (their square roots, ~1e-8 ev_max^(1/2), would otherwise survive a
 * small threshold N mu as spurious directions). */
static void gram_to_sv(size_t C, const double *ev, double *sv)
{
  double floor_ = 64.0 * DBL_EPSILON * fmax(ev[0], 0.0);
  for (size_t k = 0; k < C; k++) sv[k] = ev[k] > floor_ ? sqrt(ev[k]) : 0.0;
}

static int is_balanced(const ufm_theory_setting *s)
{
  for (size_t c = 1; c < s->C; c++)
    if (s->counts[c] != s->counts[0]) return 0;
  return !s->general;
}

/* ------------------------------- 3. what every regularised prediction prints */

/* The items shared by every case with a finite minimiser, from W W^T, the
 * Gram of the (uncentred) class means, the class logits L (column c: the
 * logits of a class-c sample, bias included), b, the squared norms, the
 * loss and the objective:
 *   norm_W, norm_H, norm_b, w_norm_c = sqrt((W W^T)_cc), b_c,
 *   margin = min_c (L_cc - max_{c' != c} L_c'c), nmargin = margin / ((||W||^2 + ||H||^2)/2),
 *   logit_true, logit_other, logit_gap (balanced: L = (d - o) I + o 11^T),
 * and the Gram of M = [mu_c - mu_G] = mu (I - q 1^T), q = n/N:
 *   M^T M = (I - 1 q^T) mu^T mu (I - q 1^T). */
static void put_state(ufm_theory *th, const ufm_theory_setting *s, double N, const cmat *WWt,
                      const cmat *gmu, const cmat *L, const double *b, double normW2,
                      double normH2, double loss, double objective)
{
  const size_t C = s->C;
  put(th, "loss", loss);
  put(th, "objective", objective);
  put(th, "norm_W", sqrt(normW2));
  put(th, "norm_H", sqrt(normH2));
  double nb2 = 0.0;
  for (size_t c = 0; c < C; c++) nb2 += b[c] * b[c];
  put(th, "norm_b", sqrt(nb2));

  double margin = INFINITY;
  for (size_t c = 0; c < C && (L->a || c == 0); c++) { /* balanced: one class is all */
    double other = -INFINITY;
    for (size_t d = 0; d < C && (L->a || d < 2); d++)
      if (d != c && cm(L, d, c) > other) other = cm(L, d, c);
    if (cm(L, c, c) - other < margin) margin = cm(L, c, c) - other;
  }
  put(th, "margin", margin);
  if (normW2 + normH2 > 0) put(th, "nmargin", margin / (0.5 * (normW2 + normH2)));
  if (!L->a) {
    put(th, "logit_true", L->d);
    put(th, "logit_other", L->o);
    put(th, "logit_gap", L->d - L->o);
  }
  for (size_t c = 0; c < C; c++) put_idx(th, "w_norm", c, sqrt(fmax(cm(WWt, c, c), 0.0)));
  if (s->bias)
    for (size_t c = 0; c < C; c++) put_idx(th, "b", c, b[c]);

  if (C > UFM_THEORY_CMAX) {
    put_text(th, "note", "C = %zu > %d: the C x C matrices (and gap_rate) are not formed", C,
             UFM_THEORY_CMAX);
    return;
  }
  th->WWt = cm_full(WWt);
  th->gram_mu = cm_full(gmu);
  th->logits = cm_full(L);
  double *q = ufm_malloc(C * sizeof(double)), *gq = ufm_malloc(C * sizeof(double)), qgq = 0.0;
  for (size_t c = 0; c < C; c++) q[c] = (double)s->counts[c] / N;
  for (size_t i = 0; i < C; i++) {
    gq[i] = 0.0;
    for (size_t j = 0; j < C; j++) gq[i] += th->gram_mu[i * C + j] * q[j];
    qgq += q[i] * gq[i];
  }
  th->gram_M = ufm_malloc(C * C * sizeof(double));
  for (size_t i = 0; i < C; i++)
    for (size_t j = 0; j < C; j++)
      th->gram_M[i * C + j] = th->gram_mu[i * C + j] - gq[i] - gq[j] + qgq;
  free(q);
  free(gq);
}

static void predict_unknown(ufm_theory *th, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void predict_unknown(ufm_theory *th, const char *fmt, ...)
{
  char buf[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  th->regime = "unknown";
  put_text(th, "note", "%s", buf);
}

/* --------------------------------------------------------------- 4. cross-entropy */

/* Balanced CE with weight decay, n per class (Zhu et al. 2021, Thm 3.1;
 * THEORY.md 1), r = sqrt(n lambda_W lambda_H), s = sqrt(n lambda_H/lambda_W):
 *   trivial iff C r >= 1: W = H = 0, b = 0, loss = F* = ln C;
 *   else, for p >= C-1, the simplex ETF with
 *   rho = ||w_c||^2 = ((C-1)/C) s ln((1 - (C-1) r)/r),
 *   W W^T = rho C/(C-1) P, h_i = k w_{y_i} with k = sqrt(lambda_W/(n lambda_H)) = 1/s,
 *   ||W||^2 = C rho, ||H||^2 = (lambda_W/lambda_H) C rho,
 *   logits: true k rho, others -k rho/(C-1) (gap = ln((1-(C-1)r)/r)),
 *   loss = -ln(1 - (C-1) r), F* = loss + lambda_W C rho; b = 0 (lambda_b > 0;
 *   with lambda_b = 0 the CE gradient 1^T G 1 = 0 keeps mean(b) at its start, 0).
 * Derivation (checked): with g the logit gap (true minus other), rho =
 * ((C-1)/C) s g on the ETF family, the penalties sum to lambda_W C rho
 * (lambda_H ||H||^2 = lambda_H N k^2 rho = lambda_W C rho), and
 * F(g) = ln(1 + (C-1) e^-g) + lambda_W (C-1) s g; F'(g) = 0 gives
 * e^-g / (1 + (C-1) e^-g) = lambda_W s = r, i.e. e^-g = r/(1 - (C-1) r): a
 * positive gap iff C r < 1. The class-mean Gram is k^2 W W^T (global mean 0). */
static void ce_balanced(ufm_theory *th, const ufm_theory_setting *s)
{
  const size_t C = s->C;
  const double n = (double)s->counts[0], N = n * (double)C;
  const double r = sqrt(n * s->lambda_W * s->lambda_H), sc = sqrt(n * s->lambda_H / s->lambda_W);
  double *b = ufm_calloc(C, sizeof(double));
  put_text(th, "source", "Zhu et al. 2021 (THEORY.md 1): balanced cross-entropy with weight decay");
  if ((double)C * r >= 1.0) {
    th->regime = "trivial";
    cmat z = cm_const(C, 0, 0);
    put_state(th, s, N, &z, &z, &z, b, 0, 0, log((double)C), log((double)C));
  } else if (s->p + 1 < C) {
    predict_unknown(th, "p = %zu < C-1 = %zu: no simplex ETF fits and no closed form is known "
                    "(the minimiser is non-trivial since C r = %.6g < 1)", s->p, C - 1, (double)C * r);
  } else {
    th->regime = "etf";
    const double g = log((1.0 - (double)(C - 1) * r) / r);
    const double rho = ((double)(C - 1) / (double)C) * sc * g, k = 1.0 / sc;
    const double loss = -log1p(-(double)(C - 1) * r);
    cmat WWt = cm_const(C, rho, -rho / (double)(C - 1));
    cmat gmu = cm_const(C, k * k * rho, -k * k * rho / (double)(C - 1));
    cmat L = cm_const(C, k * rho, -k * rho / (double)(C - 1));
    put_state(th, s, N, &WWt, &gmu, &L, b, (double)C * rho,
              (s->lambda_W / s->lambda_H) * (double)C * rho, loss, loss + s->lambda_W * (double)C * rho);
  }
  if (s->bias && s->lambda_b == 0 && s->init_from)
    put_text(th, "note", "cross-entropy keeps mean(b) with lambda_b = 0: norm_b and b_c assume "
             "the state starts with mean(b) = 0");
  free(b);
}

/* f(b) = lse(b) - qhat^T b + lambda_b/2 ||b||^2 (qhat = n/N), the CE
 * objective at W = H = 0; softmax(b) into sm. */
static double ce_bias_objective(const ufm_theory_setting *s, double N, const double *b, double *sm)
{
  const size_t C = s->C;
  double mx = -INFINITY, z = 0.0, lin = 0.0, sq = 0.0;
  for (size_t c = 0; c < C; c++) mx = fmax(mx, b[c]);
  for (size_t c = 0; c < C; c++) z += exp(b[c] - mx);
  for (size_t c = 0; c < C; c++) {
    sm[c] = exp(b[c] - mx) / z;
    lin += (double)s->counts[c] / N * b[c];
    sq += b[c] * b[c];
  }
  return mx + log(z) - lin + 0.5 * s->lambda_b * sq;
}

/* The bias at W = H = 0 for CE: b0 = argmin_b f(b) above. No bias: b0 = 0.
 * lambda_b = 0: softmax(b0) = qhat, and since the CE gradient keeps mean(b)
 * (at 0 from the start), b0 = ln qhat - mean(ln qhat). lambda_b > 0:
 * Newton's method on the strictly convex f (Hessian diag(s) - s s^T +
 * lambda_b I), halving steps until f decreases. */
static void ce_bias_at_zero(const ufm_theory_setting *s, double N, double *b)
{
  const size_t C = s->C;
  for (size_t c = 0; c < C; c++) b[c] = 0.0;
  if (!s->bias) return;
  if (s->lambda_b == 0) {
    double m = 0.0;
    for (size_t c = 0; c < C; c++) m += log((double)s->counts[c] / N);
    for (size_t c = 0; c < C; c++) b[c] = log((double)s->counts[c] / N) - m / (double)C;
    return;
  }
  double *sm = ufm_malloc(C * sizeof(double)), *g = ufm_malloc(C * sizeof(double));
  double *bn = ufm_malloc(C * sizeof(double)), *smn = ufm_malloc(C * sizeof(double));
  gsl_matrix *Hs = gsl_matrix_alloc(C, C);
  gsl_vector *d = gsl_vector_alloc(C);
  double f = ce_bias_objective(s, N, b, sm);
  for (int it = 0; it < 200; it++) {
    double gn = 0.0;
    for (size_t c = 0; c < C; c++) {
      g[c] = sm[c] - (double)s->counts[c] / N + s->lambda_b * b[c];
      gn += g[c] * g[c];
    }
    if (sqrt(gn) <= 1e-15) break;
    for (size_t i = 0; i < C; i++)
      for (size_t j = 0; j < C; j++)
        gsl_matrix_set(Hs, i, j, (i == j ? sm[i] + s->lambda_b : 0.0) - sm[i] * sm[j]);
    gsl_vector_view gv = gsl_vector_view_array(g, C);
    gsl_linalg_cholesky_decomp1(Hs);
    gsl_linalg_cholesky_solve(Hs, &gv.vector, d);
    double t = 1.0, fn = f;
    for (int h = 0; h < 60; h++, t *= 0.5) {
      for (size_t c = 0; c < C; c++) bn[c] = b[c] - t * gsl_vector_get(d, c);
      fn = ce_bias_objective(s, N, bn, smn);
      if (fn <= f) break;
    }
    if (!(fn <= f)) break; /* no decrease left: at the minimum to rounding */
    memcpy(b, bn, C * sizeof(double));
    memcpy(sm, smn, C * sizeof(double));
    f = fn;
  }
  gsl_matrix_free(Hs);
  gsl_vector_free(d);
  free(sm);
  free(g);
  free(bn);
  free(smn);
}

/* The trivial regime of CE for any counts (derived here from the lemma
 * above; for balanced counts it is THEORY.md 1's C r >= 1): G(Z,b) is
 * convex, so (0, b0) is a global minimiser iff 0 is in the subdifferential
 * in Z, i.e. ||(1/N) A||_op <= mu with A = Y - q 1^T, q = softmax(b0) (the
 * columns of the CE gradient at Z = 0 are q - e_{y_i}). If it is not, a
 * rank-one Z (realisable for any p >= 1) decreases F, so the condition is
 * exact for every p. ||A||_op^2 is the top eigenvalue of the C x C matrix
 * A A^T = D - n q^T - q n^T + N q q^T. At W = H = 0 the logits are b0 for
 * every sample: loss = lse(b0) - qhat^T b0. Returns 1 (trivial, items put),
 * 0 (not trivial), -1 (C too large to check). */
static int ce_trivial(ufm_theory *th, const ufm_theory_setting *s, double N)
{
  const size_t C = s->C;
  if (C > UFM_THEORY_CMAX) return -1;
  double *b = ufm_malloc(C * sizeof(double)), *q = ufm_malloc(C * sizeof(double));
  ce_bias_at_zero(s, N, b);
  double mx = -INFINITY, z = 0.0;
  for (size_t c = 0; c < C; c++) mx = fmax(mx, b[c]);
  for (size_t c = 0; c < C; c++) z += exp(b[c] - mx);
  for (size_t c = 0; c < C; c++) q[c] = exp(b[c] - mx) / z;
  double *A = ufm_malloc(C * C * sizeof(double)), *U = ufm_malloc(C * C * sizeof(double));
  double *ev = ufm_malloc(C * sizeof(double));
  for (size_t i = 0; i < C; i++)
    for (size_t j = 0; j < C; j++)
      A[i * C + j] = (i == j ? (double)s->counts[i] : 0.0) - (double)s->counts[i] * q[j]
                     - q[i] * (double)s->counts[j] + N * q[i] * q[j];
  sym_eig(C, A, ev, U);
  double smax = sqrt(fmax(ev[0], 0.0)), mu = sqrt(s->lambda_W * s->lambda_H);
  int trivial = smax <= N * mu;
  if (trivial) {
    th->regime = "trivial";
    double loss = mx + log(z), nb2 = 0.0;
    for (size_t c = 0; c < C; c++) {
      loss -= (double)s->counts[c] / N * b[c];
      nb2 += b[c] * b[c];
    }
    cmat zero = cm_const(C, 0, 0), L = cm_alloc(C);
    for (size_t i = 0; i < C; i++)
      for (size_t j = 0; j < C; j++) L.a[i * C + j] = b[i];
    put_state(th, s, N, &zero, &zero, &L, b, 0, 0, loss, loss + 0.5 * s->lambda_b * nb2);
    free(L.a);
    put_text(th, "source", "trivial regime: ||Y - softmax(b0) 1^T||_op = %.17g <= N sqrt(lambda_W "
             "lambda_H) = %.17g (convex bound, src/theory.c; THEORY.md 1 for balanced classes)",
             smax, N * mu);
  } else {
    put(th, "trivial_threshold", smax / N);
  }
  free(A);
  free(U);
  free(ev);
  free(b);
  free(q);
  return trivial;
}

static void predict_ce(ufm_theory *th, const ufm_theory_setting *s, double N)
{
  if (is_balanced(s)) {
    ce_balanced(th, s);
    return;
  }
  int t = ce_trivial(th, s, N);
  if (t == 1) return;
  if (t < 0)
    predict_unknown(th, "imbalanced cross-entropy with C = %zu > %d: the trivial-regime test (a "
                    "C x C eigenproblem) is not attempted", s->C, UFM_THEORY_CMAX);
  else
    predict_unknown(th, "imbalanced cross-entropy: the minimiser is non-trivial (sqrt(lambda_W "
                    "lambda_H) < trivial_threshold) and no closed form is known (THEORY.md 3 "
                    "gives only the minority-collapse threshold)");
}

/* ------------------------------------------------------------------------ 5. MSE */

/* MSE with weight decay, any counts, given the bias b (Tirer & Bruna 2022;
 * Zhou et al. 2022; Dang et al. 2023; THEORY.md 2). With T = Y - b 1^T,
 * G(Z, b) = (1/2N) ||Z - T||^2 + mu ||Z||_* is minimised by the
 * soft-thresholding Z = U (S - N mu)_+ V^T of T = U S V^T at N mu. T's SVD
 * comes from the C x C matrix T T^T = D - n b^T - b n^T + N b b^T = U S^2 U^T
 * (V = T^T U S^-1), never from an N x N one. With S' = (S - N mu)_+:
 *   W W^T = sqrt(lambda_H/lambda_W) U S' U^T, ||W||^2 = sqrt(lambda_H/lambda_W) tr S',
 *   ||H||^2 = sqrt(lambda_W/lambda_H) tr S';
 *   logits Z + b 1^T: class c's column L_c = K (e_c - b) + b, K = U S'S^-1 U^T;
 *   class means mu = H Y^T D^-1, with Y V = (D - n b^T) U S^-1:
 *   mu^T mu = sqrt(lambda_W/lambda_H) (I - 1 b^T) U S' S^-2 U^T (I - b 1^T);
 *   loss = (1/2N) sum_c n_c ||L_c - e_c||^2, F* = loss + mu tr S' + lambda_b/2 ||b||^2.
 * Features collapse to their class means (T's columns are equal within a
 * class). Needs p >= rank S' (returns 0 with a note otherwise). */
static int mse_general(ufm_theory *th, const ufm_theory_setting *s, double N, const double *b)
{
  const size_t C = s->C;
  const double mu = sqrt(s->lambda_W * s->lambda_H);
  double *S = ufm_malloc(C * C * sizeof(double)), *U = ufm_malloc(C * C * sizeof(double));
  double *ev = ufm_malloc(C * sizeof(double)), *sv = ufm_malloc(C * sizeof(double));
  double *f = ufm_malloc(C * sizeof(double));
  for (size_t i = 0; i < C; i++)
    for (size_t j = 0; j < C; j++)
      S[i * C + j] = (i == j ? (double)s->counts[i] : 0.0) - (double)s->counts[i] * b[j]
                     - b[i] * (double)s->counts[j] + N * b[i] * b[j];
  sym_eig(C, S, ev, U);
  gram_to_sv(C, ev, sv);
  size_t rank = 0;
  double trS = 0.0;
  for (size_t k = 0; k < C; k++) {
    double sp = fmax(sv[k] - N * mu, 0.0);
    rank += sp > 0;
    th->thresholded += sv[k] > 0 && sp == 0;
    trS += sp;
    ev[k] = sp; /* ev now holds S' */
  }
  int ok = rank <= s->p;
  if (!ok) {
    predict_unknown(th, "p = %zu < %zu, the rank of the soft-thresholded labels: the minimiser is "
                    "not known in closed form", s->p, rank);
  } else {
    cmat WWt = cm_alloc(C), gmu = cm_alloc(C), L = cm_alloc(C), K = cm_alloc(C);
    for (size_t k = 0; k < C; k++) f[k] = sqrt(s->lambda_H / s->lambda_W) * ev[k];
    spectral(C, U, f, WWt.a);
    for (size_t k = 0; k < C; k++) f[k] = sv[k] > 0 ? ev[k] / sv[k] : 0.0;
    spectral(C, U, f, K.a);
    for (size_t k = 0; k < C; k++) f[k] = sv[k] > 0 ? ev[k] / (sv[k] * sv[k]) : 0.0;
    spectral(C, U, f, gmu.a);
    /* L = K (I - b 1^T) + b 1^T, gmu <- sqrt(lW/lH) (I - 1 b^T) gmu (I - b 1^T) */
    double *Kb = ufm_calloc(C, sizeof(double)), *Gb = ufm_calloc(C, sizeof(double)), bGb = 0.0;
    for (size_t i = 0; i < C; i++)
      for (size_t j = 0; j < C; j++) {
        Kb[i] += K.a[i * C + j] * b[j];
        Gb[i] += gmu.a[i * C + j] * b[j];
      }
    for (size_t i = 0; i < C; i++) bGb += b[i] * Gb[i];
    double loss = 0.0, nb2 = 0.0;
    for (size_t i = 0; i < C; i++)
      for (size_t j = 0; j < C; j++) {
        L.a[i * C + j] = K.a[i * C + j] - Kb[i] + b[i];
        gmu.a[i * C + j] = sqrt(s->lambda_W / s->lambda_H) * (gmu.a[i * C + j] - Gb[i] - Gb[j] + bGb);
      }
    for (size_t c = 0; c < C; c++) {
      double e = 0.0;
      for (size_t i = 0; i < C; i++) {
        double d = L.a[i * C + c] - (i == c ? 1.0 : 0.0);
        e += d * d;
      }
      loss += (double)s->counts[c] * e;
      nb2 += b[c] * b[c];
    }
    loss /= 2.0 * N;
    th->regime = rank == 0 ? "trivial" : "soft-threshold";
    put_state(th, s, N, &WWt, &gmu, &L, b, sqrt(s->lambda_H / s->lambda_W) * trS,
              sqrt(s->lambda_W / s->lambda_H) * trS, loss, loss + mu * trS + 0.5 * s->lambda_b * nb2);
    size_t dead = 0;
    for (size_t c = 0; c < C; c++) dead += !(WWt.a[c * C + c] > 0);
    put(th, "dead_classes", (double)dead);
    free(Kb);
    free(Gb);
    free(WWt.a);
    free(gmu.a);
    free(L.a);
    free(K.a);
  }
  free(S);
  free(U);
  free(ev);
  free(sv);
  free(f);
  return ok;
}

/* Balanced MSE, n per class, b = beta 1 (THEORY.md 2, the formulas above in
 * closed form, O(1) in C): T T^T = n P + n (1 - C beta)^2 J, so T's singular
 * values are sqrt(n) on the sum-zero subspace (C-1 times) and
 * sqrt(n) |1 - C beta| along 1. With a = max(0, 1 - C r) and r = mu sqrt(n):
 *   no bias (beta = 0): W W^T = s a I, W H = a Y, F* = C r - C^2 r^2/2 (a > 0), else 1/2;
 *   lambda_b = 0 (beta = 1/C): W W^T = s a P (ETF), F* = (C-1)(r - C r^2/2) (a > 0);
 *   lambda_b > 0: beta = 1/(C (1 + lambda_b)) while lambda_b/(C (1 + lambda_b)) <= r
 *   (the 1-direction is thresholded away: W W^T = s a P); beyond, beta =
 *   r/lambda_b (derived here: minimise over beta the Huber-like
 *   phi(sqrt(n)(1 - C beta)) + lambda_b C beta^2/2, phi(x) = x^2/(2N) below
 *   N mu, mu x - N mu^2/2 above) and W W^T gains a component along 1:
 *   the frame moves from the ETF towards the orthogonal one. The unique
 *   minimiser of the convex G is symmetric, hence b = beta 1.
 * Everything is (d - o) I + o 11^T: with primes for thresholded values,
 * W W^T = sqrt(lambda_H/lambda_W) (S'_P P + S'_1 J),
 * mu^T mu = sqrt(lambda_W/lambda_H) (S'_P P + S'_1 J)/n,
 * L = rho_P P + (rho_1 (1 - C beta) + C beta) J with rho = S'/S. */
static int mse_balanced(ufm_theory *th, const ufm_theory_setting *s, double beta)
{
  const size_t C = s->C;
  const double Cd = (double)C, n = (double)s->counts[0], N = n * Cd;
  const double mu = sqrt(s->lambda_W * s->lambda_H);
  const double sP = sqrt(n), s1 = sqrt(n) * fabs(1.0 - Cd * beta);
  const double spP = fmax(sP - N * mu, 0.0), sp1 = fmax(s1 - N * mu, 0.0);
  const double rhoP = spP / sP, rho1 = s1 > 0 ? sp1 / s1 : 0.0;
  size_t rank = (spP > 0 ? C - 1 : 0) + (sp1 > 0);
  th->thresholded = (spP == 0 ? C - 1 : 0) + (s1 > 0 && sp1 == 0);
  if (rank > s->p) {
    predict_unknown(th, "p = %zu < %zu, the rank of the soft-thresholded labels: the minimiser is "
                    "not known in closed form", s->p, rank);
    return 0;
  }
  const double kW = sqrt(s->lambda_H / s->lambda_W), kH = sqrt(s->lambda_W / s->lambda_H);
  const double gam = rho1 * (1.0 - Cd * beta) + Cd * beta;
  cmat WWt = cm_const(C, kW * (spP * (1 - 1 / Cd) + sp1 / Cd), kW * (sp1 - spP) / Cd);
  cmat gmu = cm_const(C, kH * (spP * (1 - 1 / Cd) + sp1 / Cd) / n, kH * (sp1 - spP) / Cd / n);
  cmat L = cm_const(C, rhoP * (1 - 1 / Cd) + gam / Cd, (gam - rhoP) / Cd);
  const double trS = (Cd - 1) * spP + sp1;
  const double loss = 0.5 * ((L.d - 1) * (L.d - 1) + (Cd - 1) * L.o * L.o);
  double *b = ufm_malloc(C * sizeof(double));
  for (size_t c = 0; c < C; c++) b[c] = beta;
  th->regime = rank == 0 ? "trivial" : sp1 == 0 ? "etf" : spP == sp1 ? "orthogonal" : "soft-threshold";
  put_state(th, s, N, &WWt, &gmu, &L, b, kW * trS, kH * trS, loss,
            loss + mu * trS + 0.5 * s->lambda_b * Cd * beta * beta);
  put(th, "dead_classes", spP > 0 || sp1 > 0 ? 0.0 : Cd);
  free(b);
  return 1;
}

static void predict_mse(ufm_theory *th, const ufm_theory_setting *s, double N)
{
  const size_t C = s->C;
  const int bal = is_balanced(s);
  const double mu = sqrt(s->lambda_W * s->lambda_H);
  put_text(th, "source", "Tirer & Bruna 2022; Zhou et al. 2022; Dang et al. 2023 (THEORY.md 2): "
           "soft-thresholding of the labels at N sqrt(lambda_W lambda_H)");
  if (s->bias && s->lambda_b > 0 && !bal) {
    predict_unknown(th, "imbalanced MSE with a regularised bias (lambda_b > 0): no closed form is "
                    "known (b solves a C-dimensional fixed point)");
    return;
  }
  if (bal) {
    const double Cd = (double)C, n = (double)s->counts[0], r = mu * sqrt(n);
    double beta = 0.0;
    if (s->bias) {
      beta = 1.0 / Cd;
      if (s->lambda_b > 0) {
        beta = s->lambda_b / (Cd * (1 + s->lambda_b)) <= r ? 1.0 / (Cd * (1 + s->lambda_b))
                                                           : r / s->lambda_b;
        if (s->lambda_b / (Cd * (1 + s->lambda_b)) > r)
          put_text(th, "note", "lambda_b/(C(1+lambda_b)) = %.6g > r = %.6g: beyond THEORY.md 2's "
                   "range; b = r/lambda_b and W W^T from src/theory.c's derivation (validated by "
                   "make validate)", s->lambda_b / (Cd * (1 + s->lambda_b)), r);
      }
    }
    mse_balanced(th, s, beta);
    return;
  }
  if (C > UFM_THEORY_CMAX) {
    predict_unknown(th, "imbalanced MSE with C = %zu > %d: the C x C eigenproblem is not attempted",
                    C, UFM_THEORY_CMAX);
    return;
  }
  double *b = ufm_calloc(C, sizeof(double));
  /* lambda_b = 0: b = n/N; the optimal Z then has Z 1 = 0 (projecting Z's
   * rows off 1 leaves the loss unchanged and does not raise ||Z||_*), so
   * T = Y (I - 11^T/N) (THEORY.md 2). */
  if (s->bias)
    for (size_t c = 0; c < C; c++) b[c] = (double)s->counts[c] / N;
  mse_general(th, s, N, b);
  free(b);
}

/* ------------------------------------------------------------ 6. max margin (SELI) */

/* The unconstrained-features SVM (Thrampoulidis et al. 2022; Ji et al. 2022;
 * THEORY.md 4): min 1/2 (||W||^2 + ||H||^2) s.t. (w_{y_i} - w_c)^T h_i >= 1
 * is solved by W H = Zhat = Y - (1/C) 1 1^T = P Y, with value ||Zhat||_*.
 * Zhat Zhat^T = P D P = U L^2 U^T (C x C), so ||Zhat||_* = tr L,
 * W W^T = U L U^T = (P D P)^(1/2), and (Y V = D P U L^-1) the class-mean
 * Gram is mu^T mu = U L^+ U^T = ((P D P)^+)^(1/2); logits P (margin 1).
 * Balanced: L = sqrt(n) on the C-1 sum-zero directions: ||Zhat||_* = (C-1) sqrt(n).
 * Returns the value, or NAN for C > UFM_THEORY_CMAX (imbalanced); with want
 * set, fills th's matrices. */
static double seli(ufm_theory *th, const ufm_theory_setting *s, int want)
{
  const size_t C = s->C;
  if (is_balanced(s)) {
    const double Cd = (double)C, sn = sqrt((double)s->counts[0]);
    if (want && C <= UFM_THEORY_CMAX) {
      cmat WWt = cm_const(C, sn * (1 - 1 / Cd), -sn / Cd), gmu = cm_const(C, (1 - 1 / Cd) / sn, -1 / Cd / sn);
      cmat L = cm_const(C, 1 - 1 / Cd, -1 / Cd);
      th->WWt = cm_full(&WWt);
      th->gram_mu = cm_full(&gmu);
      th->gram_M = cm_full(&gmu); /* q = 1/C: P gram P = gram */
      th->logits = cm_full(&L);
    }
    return (Cd - 1) * sn;
  }
  if (C > UFM_THEORY_CMAX) return NAN;
  double *A = ufm_malloc(C * C * sizeof(double)), *U = ufm_malloc(C * C * sizeof(double));
  double *ev = ufm_malloc(C * sizeof(double)), *sv = ufm_malloc(C * sizeof(double));
  double N = 0.0;
  for (size_t c = 0; c < C; c++) N += (double)s->counts[c];
  /* P D P = D - (n 1^T + 1 n^T)/C + (N/C^2) 1 1^T */
  for (size_t i = 0; i < C; i++)
    for (size_t j = 0; j < C; j++)
      A[i * C + j] = (i == j ? (double)s->counts[i] : 0.0)
                     - ((double)s->counts[i] + (double)s->counts[j]) / (double)C
                     + N / ((double)C * (double)C);
  sym_eig(C, A, ev, U);
  gram_to_sv(C, ev, sv);
  double value = 0.0;
  for (size_t k = 0; k < C; k++) value += sv[k];
  if (want) {
    th->WWt = ufm_malloc(C * C * sizeof(double));
    th->gram_mu = ufm_malloc(C * C * sizeof(double));
    th->gram_M = ufm_malloc(C * C * sizeof(double));
    th->logits = ufm_malloc(C * C * sizeof(double));
    spectral(C, U, sv, th->WWt);
    for (size_t k = 0; k < C; k++) sv[k] = sv[k] > 0 ? 1.0 / sv[k] : 0.0;
    spectral(C, U, sv, th->gram_mu);
    /* M^T M = (I - 1 q^T) mu^T mu (I - q 1^T); mu^T mu's rows and columns are
     * in range(P), so with q = n/N this removes the n-weighted mean */
    double *gq = ufm_calloc(C, sizeof(double)), qgq = 0.0;
    for (size_t i = 0; i < C; i++)
      for (size_t j = 0; j < C; j++) gq[i] += th->gram_mu[i * C + j] * (double)s->counts[j] / N;
    for (size_t i = 0; i < C; i++) qgq += (double)s->counts[i] / N * gq[i];
    for (size_t i = 0; i < C; i++)
      for (size_t j = 0; j < C; j++) {
        th->gram_M[i * C + j] = th->gram_mu[i * C + j] - gq[i] - gq[j] + qgq;
        th->logits[i * C + j] = (i == j ? 1.0 : 0.0) - 1.0 / (double)C;
      }
    free(gq);
  }
  free(A);
  free(U);
  free(ev);
  free(sv);
  return value;
}

/* Unregularised cross-entropy (lambda_W = lambda_H = 0): no finite
 * minimiser; without bias GD converges in direction to the SVM solution
 * (Ji et al. 2022), logarithmically slowly, with loss -> 0 and the scale-free
 * margin nmargin -> 1/||Zhat||_* from below (every state with a positive
 * margin m scaled by 1/sqrt(m) is SVM-feasible, so nmargin <= 1/||Zhat||_*).
 * With a bias the same holds for balanced classes (the symmetric SVM
 * optimum has b = beta 1, which cancels in the margins). */
static void predict_svm(ufm_theory *th, const ufm_theory_setting *s)
{
  put_text(th, "source", "Thrampoulidis et al. 2022; Ji et al. 2022 (THEORY.md 4): max-margin "
           "(SELI) direction of unregularised cross-entropy");
  if (s->bias && !is_balanced(s)) {
    predict_unknown(th, "unregularised cross-entropy with a bias and imbalanced classes: the SVM "
                    "with a free bias is not covered by THEORY.md 4");
    return;
  }
  if (s->p + 1 < s->C) {
    predict_unknown(th, "p = %zu < C-1 = %zu: the SELI geometry (rank C-1) does not fit", s->p, s->C - 1);
    return;
  }
  double v = seli(th, s, 1);
  if (!(v == v)) {
    predict_unknown(th, "imbalanced classes with C = %zu > %d: the C x C eigenproblem is not "
                    "attempted", s->C, UFM_THEORY_CMAX);
    return;
  }
  th->regime = "svm";
  put(th, "loss", 0.0);
  put(th, "objective", 0.0);
  put(th, "svm_value", v);
  put(th, "nmargin", 1.0 / v);
  put_text(th, "note", "no finite minimiser: loss and objective tend to 0, norms grow like "
           "sqrt(log t); W W^T, the Grams and the logits written are the SVM solution (margin 1)");
}

/* ------------------------------------------------- 7. minority collapse, rate */

/* Step imbalance, K_A classes of n_A, K_B of n_B < n_A (Fang et al. 2021;
 * Hong & Ling 2023; THEORY.md 3): with weight decay the minority
 * classifiers coincide exactly when sqrt(n_B) <= N sqrt(lambda_W lambda_H),
 * with or without bias. For MSE the same threshold follows from section 5
 * above: the eigenvalue n_B of T T^T on the minority block's sum-zero
 * vectors (b is constant on that block) is thresholded away exactly then. */
static void minority_collapse(ufm_theory *th, const ufm_theory_setting *s, double N)
{
  size_t lo = s->counts[0], hi = s->counts[0];
  for (size_t c = 0; c < s->C; c++) {
    if (s->counts[c] < lo) lo = s->counts[c];
    if (s->counts[c] > hi) hi = s->counts[c];
  }
  size_t kb = 0;
  for (size_t c = 0; c < s->C; c++) {
    if (s->counts[c] != lo && s->counts[c] != hi) return; /* more than two sizes */
    kb += s->counts[c] == lo;
  }
  if (lo == hi || kb < 2) return; /* balanced, or a single minority class */
  double thr = sqrt((double)lo) / N, lam = sqrt(s->lambda_W * s->lambda_H);
  put(th, "mc_threshold", thr);
  put(th, "mc_lambda", lam);
  put_text(th, "minority_collapse", "%s", lam >= thr ? "yes" : "no");
  put_text(th, "source", "Fang et al. 2021; Hong & Ling 2023 (THEORY.md 3): minority classifiers "
           "coincide iff sqrt(lambda_W lambda_H) >= mc_threshold = sqrt(n_B)/N");
}

/* THEORY.md 5: regularised GD with step eta converges linearly, the
 * objective gap F_t - F* decaying like (1 - eta lambda_H)^(2t): the part of
 * H outside the row space of W feels only the weight decay,
 * h_perp <- (1 - eta lambda_H) h_perp, and its penalty is quadratic in it.
 * It is the slowest mode only under conditions we derived from the Hessian
 * at the minimiser and checked by fitting slopes (README, "Rates"):
 * - outside W's row space the eigenvalues are 0 (rotations), lambda_W +
 *   lambda_H, lambda_H, lambda_W when rank G < C (G the loss gradient; CE
 *   has 1^T G = 0: the mean classifier decays like (1 - eta lambda_W)^t),
 *   and, for a direction soft-thresholded away with a residual gamma > 0,
 *   (lambda_W + lambda_H)/2 - sqrt(((lambda_W - lambda_H)/2)^2 + gamma^2),
 *   below both (MSE, lambda_b = 1e-2: measured 0.772, predicted 0.772);
 * - a bias with lambda_b < lambda_H lets every feature shift by d while
 *   b shifts by -W d at no loss: curvature below lambda_H.
 * So gap_rate = (1 - eta lambda_H)^2 per step is printed for plain GD at a
 * non-trivial closed-form minimiser when p > rank(W W^T) (room outside the
 * row space), lambda_H <= lambda_W, no bias or lambda_b >= lambda_H, and no
 * direction is thresholded with a residual. Elsewhere other modes set the
 * rate (measured 0.6-0.97 of this slope) and nothing is printed. */
static void rate(ufm_theory *th, const ufm_theory_setting *s)
{
  if (!s->gd || !th->WWt) return;
  if (strcmp(th->regime, "trivial") == 0 || strcmp(th->regime, "unknown") == 0) return;
  if (s->lambda_H > s->lambda_W) return;
  if (s->bias && s->lambda_b < s->lambda_H) return;
  if (th->thresholded > 0) return;
  const size_t C = s->C;
  double *A = ufm_malloc(C * C * sizeof(double)), *U = ufm_malloc(C * C * sizeof(double));
  double *ev = ufm_malloc(C * sizeof(double));
  memcpy(A, th->WWt, C * C * sizeof(double));
  sym_eig(C, A, ev, U);
  size_t rank = 0;
  for (size_t k = 0; k < C; k++) rank += ev[k] > 1e-12 * ev[0];
  free(A);
  free(U);
  free(ev);
  if (s->p <= rank) return;
  double f = 1.0 - s->lr * s->lambda_H;
  if (!(f > 0 && f < 1)) return;
  put(th, "gap_rate", f * f);
}

/* ------------------------------------------------------------------- 8. driver */

ufm_theory *ufm_theory_predict(const ufm_theory_setting *s)
{
  ufm_theory *th = ufm_calloc(1, sizeof *th);
  th->C = s->C;
  th->regime = "unknown";
  double N = 0.0;
  for (size_t c = 0; c < s->C; c++) N += (double)s->counts[c];
  const int regW = s->lambda_W > 0, regH = s->lambda_H > 0;

  if (s->loss == UFM_TH_OTHER) {
    predict_unknown(th, "no closed form is known for this loss");
  } else if (regW && regH) {
    if (s->loss == UFM_TH_CE) predict_ce(th, s, N);
    else predict_mse(th, s, N);
    minority_collapse(th, s, N);
    if (s->loss == UFM_TH_CE && (!s->bias || is_balanced(s)) && s->p + 1 >= s->C) {
      double v = seli(th, s, 0);
      if (v == v) put(th, "svm_value", v); /* the lambda -> 0 limit's scale (THEORY.md 4) */
    }
    rate(th, s);
  } else if (!regW && !regH) {
    if (s->loss == UFM_TH_CE) {
      predict_svm(th, s);
    } else {
      /* MSE without weight decay: F* = 0 iff W H + b 1^T = Y is attainable
       * (with lambda_b > 0 also b = 0): W H = Y needs p >= C; a free bias
       * (lambda_b = 0) takes b = 1/C and W H = Y - (1/C) 1 1^T, of rank C-1.
       * The minimisers form a continuum: norms depend on the start. */
      size_t need = s->bias && s->lambda_b == 0 ? s->C - 1 : s->C;
      if (s->p < need) {
        predict_unknown(th, "MSE without weight decay and p = %zu < %zu: the labels cannot be "
                        "interpolated and no closed form is known", s->p, need);
      } else {
        th->regime = "interpolation";
        put(th, "loss", 0.0);
        put(th, "objective", 0.0);
        put_text(th, "source", "MSE without weight decay: W H + b 1^T = Y is attainable (p >= %zu)", need);
        put_text(th, "note", "the minimisers form a continuum: norms and geometry depend on the "
                 "initialisation");
      }
    }
  } else {
    predict_unknown(th, "only one of lambda_W, lambda_H is zero: the infimum is not attained "
                    "(the unpenalised factor grows while the other shrinks)");
  }
  return th;
}

ufm_theory *ufm_theory_for_config(const ufm_config *cfg)
{
  ufm_theory_setting s = {0};
  s.C = cfg->classes;
  s.p = cfg->dim;
  s.counts = cfg->counts;
  s.loss = cfg->loss == &ufm_loss_ce ? UFM_TH_CE : cfg->loss == &ufm_loss_mse ? UFM_TH_MSE : UFM_TH_OTHER;
  s.bias = cfg->bias;
  s.lambda_W = cfg->lambda_W;
  s.lambda_H = cfg->lambda_H;
  s.lambda_b = cfg->lambda_b;
  s.gd = cfg->optimizer == &ufm_optim_gd;
  s.lr = cfg->lr;
  s.init_from = cfg->init_from != NULL;
  return ufm_theory_predict(&s);
}

void ufm_theory_free(ufm_theory *th)
{
  if (!th) return;
  for (size_t k = 0; k < th->n; k++) free(th->items[k].text);
  free(th->items);
  free(th->WWt);
  free(th->gram_mu);
  free(th->gram_M);
  free(th->logits);
  free(th);
}

int ufm_theory_get(const ufm_theory *th, const char *name, double *v)
{
  for (size_t k = 0; k < th->n; k++)
    if (!th->items[k].text && strcmp(th->items[k].name, name) == 0) {
      *v = th->items[k].value;
      return 1;
    }
  return 0;
}

const char *ufm_theory_text(const ufm_theory *th, const char *name)
{
  if (strcmp(name, "regime") == 0) return th->regime;
  for (size_t k = 0; k < th->n; k++)
    if (th->items[k].text && strcmp(th->items[k].name, name) == 0) return th->items[k].text;
  return NULL;
}

int ufm_theory_has_prediction(const ufm_theory *th)
{
  for (size_t k = 0; k < th->n; k++)
    if (!th->items[k].text) return 1;
  return 0;
}

/* ------------------------------------------------------------------- 9. output */

void ufm_theory_print(const ufm_theory *th, FILE *fp)
{
  fprintf(fp, "regime\t%s\n", th->regime);
  for (size_t k = 0; k < th->n; k++) {
    const ufm_theory_item *it = &th->items[k];
    if (it->text) fprintf(fp, "%s\t%s\n", it->name, it->text);
    else fprintf(fp, "%s\t%.17g\n", it->name, it->value);
  }
}

static int write_lines(const ufm_theory *th, const char *dir, const char *name, const double *a,
                       char *errbuf)
{
  char *path = ufm_path_join(dir, name);
  ufm_afile af;
  int st = ufm_afile_open(&af, path, errbuf);
  free(path);
  if (st != UFM_OK) return st;
  if (!a) {
    ufm_theory_print(th, af.fp);
  } else {
    for (size_t i = 0; i < th->C; i++)
      for (size_t j = 0; j < th->C; j++)
        fprintf(af.fp, "%.17g%c", a[i * th->C + j], j + 1 < th->C ? '\t' : '\n');
  }
  return ufm_afile_commit(&af, errbuf);
}

int ufm_theory_write_tsv(const ufm_theory *th, const char *dir, char *errbuf)
{
  return write_lines(th, dir, "theory.tsv", NULL, errbuf);
}

int ufm_theory_write_dir(const ufm_theory *th, const char *dir, char *errbuf)
{
  int st = ufm_mkdirs(dir, errbuf);
  if (st == UFM_OK) st = ufm_theory_write_tsv(th, dir, errbuf);
  struct { const char *name; const double *a; } m[] = {
      {"WWt.tsv", th->WWt}, {"gram_mu.tsv", th->gram_mu}, {"gram_M.tsv", th->gram_M},
      {"logits.tsv", th->logits}};
  for (size_t k = 0; k < 4 && st == UFM_OK; k++)
    if (m[k].a) st = write_lines(th, dir, m[k].name, m[k].a, errbuf);
  return st;
}

void ufm_theory_summary(const ufm_theory *th, const char *const *names, const double *x, size_t n,
                        FILE *fp)
{
  for (size_t k = 0; k < n; k++) {
    double t;
    if (!ufm_theory_get(th, names[k], &t)) continue;
    double gap = t != 0 ? (x[k] - t) / fabs(t) : x[k] - t;
    fprintf(fp, "%s_theory\t%.17g\n%s_gap\t%.17g\n", names[k], t, names[k], gap);
  }
}
