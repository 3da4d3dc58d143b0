/* geometry.c -- the simplex ETF (SPEC section 2's reference for NC2 and NC3). */
#include "ufmconf.h" /* HAVE_LAPACK_DGESDD: LAPACK links */
#include "geometry.h"

#include <math.h>
#include <stdlib.h>
#include <gsl/gsl_blas.h>
#include <gsl/gsl_eigen.h>

#ifdef HAVE_LAPACK_DGESDD
/* LAPACK's divide-and-conquer symmetric eigensolver (OpenBLAS ships it;
 * configure found dgesdd_ in the same library); the trailing lengths are
 * the hidden lengths of the character arguments (gfortran ABI). */
extern void dsyevd_(const char *jobz, const char *uplo, const int *n, double *a, const int *lda,
                    double *w, double *work, const int *lwork, int *iwork, const int *liwork,
                    int *info, size_t jobz_len, size_t uplo_len);
#endif

/* Helmert basis of {x in R^C : sum x = 0}: for j = 1..C-1,
 * u_j = (1, ..., 1, -j, 0, ..., 0) / sqrt(j (j+1)) with j ones. Since every
 * u_j is orthogonal to the ones vector, the coordinates of
 * sqrt(C/(C-1)) (e_c - 1/C) are sqrt(C/(C-1)) u_j[c]. */
int ufm_etf(gsl_matrix *E)
{
  const size_t C = E->size1, p = E->size2;
  if (C < 2 || p + 1 < C) return -1;
  const double a = sqrt((double)C / (double)(C - 1));
  gsl_matrix_set_zero(E);
  for (size_t j = 1; j < C; j++) {
    double norm = sqrt((double)j * (double)(j + 1));
    for (size_t c = 0; c < C; c++) {
      double u = c < j ? 1.0 : c == j ? -(double)j : 0.0;
      gsl_matrix_set(E, c, j - 1, a * u / norm);
    }
  }
  return 0;
}

/* Cyclic Jacobi eigen-decomposition of a symmetric matrix (A is destroyed),
 * where LAPACK is not built in: plain C, and quadratically convergent
 * even with a many-fold eigenvalue (gsl_eigen_jacobi's stop test is an
 * exact zero, which it then hunts for over millions of rotations). Stops
 * when the off-diagonal mass is below 1e-32 of the total. Some 10 C^3
 * operations a sweep with strided access: a minute or more at C = 1000. */
static void jacobi_eigen(gsl_matrix *Am, gsl_vector *ev, gsl_matrix *Vm)
{
  const size_t n = Am->size1, ta = Am->tda, tv = Vm->tda;
  double *A = Am->data, *V = Vm->data;
  gsl_matrix_set_identity(Vm);
  double total = 0.0;
  for (size_t i = 0; i < n; i++)
    for (size_t j = 0; j < n; j++) total += A[i * ta + j] * A[i * ta + j];
  for (int sweep = 0; sweep < 100; sweep++) {
    double off = 0.0;
    for (size_t p = 0; p < n; p++)
      for (size_t q = p + 1; q < n; q++) off += 2 * A[p * ta + q] * A[p * ta + q];
    if (off <= 1e-32 * total) break;
    for (size_t p = 0; p < n; p++)
      for (size_t q = p + 1; q < n; q++) {
        double apq = A[p * ta + q];
        if (apq == 0.0) continue;
        double app = A[p * ta + p], aqq = A[q * ta + q];
        double theta = (aqq - app) / (2 * apq);
        double t = (theta >= 0 ? 1.0 : -1.0) / (fabs(theta) + sqrt(theta * theta + 1));
        double c = 1 / sqrt(t * t + 1), s = t * c;
        for (size_t k = 0; k < n; k++) { /* A <- J^T A J: columns, then rows */
          double akp = A[k * ta + p], akq = A[k * ta + q];
          A[k * ta + p] = c * akp - s * akq;
          A[k * ta + q] = s * akp + c * akq;
        }
        for (size_t k = 0; k < n; k++) {
          double apk = A[p * ta + k], aqk = A[q * ta + k];
          A[p * ta + k] = c * apk - s * aqk;
          A[q * ta + k] = s * apk + c * aqk;
        }
        for (size_t k = 0; k < n; k++) {
          double vkp = V[k * tv + p], vkq = V[k * tv + q];
          V[k * tv + p] = c * vkp - s * vkq;
          V[k * tv + q] = s * vkp + c * vkq;
        }
      }
  }
  for (size_t k = 0; k < n; k++) gsl_vector_set(ev, k, A[k * ta + k]);
}

int ufm_eigen_lapack(const gsl_matrix *A, gsl_vector *ev, gsl_matrix *V)
{
#ifdef HAVE_LAPACK_DGESDD
  const size_t n = A->size1;
  if (n == 0 || n > 46000 || ev->stride != 1) return -1;
  const int nn = (int)n;
  int info = 0, lw = -1, liw = -1, iw0 = 0;
  double w0 = 0.0;
  gsl_matrix *B = gsl_matrix_alloc(n, n);
  if (!B) return -1;
  gsl_matrix_memcpy(B, A);
  const char *jobz = V ? "V" : "N"; /* without V the eigenvalues alone (a third of the time) */
  dsyevd_(jobz, "U", &nn, B->data, &nn, ev->data, &w0, &lw, &iw0, &liw, &info, 1, 1);
  lw = (int)w0;
  liw = iw0;
  double *work = info == 0 ? malloc((size_t)lw * sizeof(double)) : NULL;
  int *iwork = work ? malloc((size_t)liw * sizeof(int)) : NULL;
  if (iwork) {
    /* row-major A is its own column-major transpose; the eigenvectors come
     * back as the columns of the column-major B, that is its rows */
    dsyevd_(jobz, "U", &nn, B->data, &nn, ev->data, work, &lw, iwork, &liw, &info, 1, 1);
    if (info == 0 && V) gsl_matrix_transpose_memcpy(V, B);
  } else {
    info = -1;
  }
  free(work);
  free(iwork);
  gsl_matrix_free(B);
  return info == 0 ? 0 : -1;
#else
  (void)A;
  (void)ev;
  (void)V;
  return -1;
#endif
}

/* P D P = D - (1/C)(n 1^T + 1 n^T) + (N/C^2) 1 1^T, eigendecomposed; its
 * square root and pseudo-inverse square root share the eigenvectors. The
 * eigenvalue of the ones vector is 0 exactly in theory; numerically it is
 * O(eps N) and is dropped (any eigenvalue below C eps times the largest). */
/* The eigenvalue cut of ufm_seli: e counts when e > C eps e_max */
static double seli_tol(size_t C, double emax) { return (double)C * 2.220446049250313e-16 * emax; }

static int cmp_desc(const void *a, const void *b)
{
  const double x = *(const double *)a, y = *(const double *)b;
  return (x < y) - (x > y);
}

/* ufm_seli for counts that take G < C/2 distinct values (step imbalance:
 * 2), in O(C^2 + G^3) instead of an eigendecomposition of the C x C
 * matrix A = P D P (C = 3000: 13 s). With S_g the classes of count nu_g
 * (m_g of them), e_g = 1_{S_g}/sqrt(m_g) and E their span: a vector on S_g
 * that sums to 0 is an eigenvector of A with eigenvalue nu_g (P leaves it,
 * D scales it), m_g - 1 of them, spanning E's complement; on E, A is the
 * G x G matrix B_gh = e_g^T A e_h = [g = h] nu_g - sqrt(m_g m_h) (nu_g +
 * nu_h)/C + sqrt(m_g m_h) N/C^2 = V diag(lambda) V^T. So f(A) = sum_g
 * f(nu_g) (diag(1_{S_g}) - e_g e_g^T) + Q V f(lambda) V^T Q^T, Q = [e_g]:
 *   f(A)_ab = [a = b] f(nu_a) - [g_a = g_b] f(nu_a)/m_a + F_{g_a g_b}/sqrt(m_a m_b)
 * with F = V f(lambda) V^T, for f = sqrt (W W^T = U L U^T) and f =
 * 1/sqrt on the eigenvalues kept (K = U L^-1 U^T). Returns 1 (nothing
 * done) when there are too many distinct counts, -1 on allocation failure. */
static int seli_grouped(size_t C, const size_t *counts, gsl_vector *sv, gsl_matrix *WW,
                        gsl_matrix *K, double *nuclear)
{
  size_t *nu = malloc(C * sizeof *nu), *grp = malloc(C * sizeof *grp), G = 0;
  double *m = calloc(C, sizeof(double)), *e = malloc(C * sizeof(double));
  if (!nu || !grp || !m || !e) {
    free(nu), free(grp), free(m), free(e);
    return -1;
  }
  double N = 0.0;
  for (size_t c = 0; c < C; c++) {
    size_t g = 0;
    while (g < G && nu[g] != counts[c]) g++;
    if (g == G) {
      if (2 * (G + 1) > C) { /* too many: the general way */
        free(nu), free(grp), free(m), free(e);
        return 1;
      }
      nu[G++] = counts[c];
    }
    grp[c] = g;
    m[g] += 1.0;
    N += (double)counts[c];
  }
  const double Cd = (double)C;
  gsl_matrix *B = gsl_matrix_alloc(G, G), *V = gsl_matrix_alloc(G, G), *F = gsl_matrix_alloc(G, G);
  gsl_vector *lam = gsl_vector_alloc(G);
  if (!B || !V || !F || !lam) {
    if (B) gsl_matrix_free(B);
    if (V) gsl_matrix_free(V);
    if (F) gsl_matrix_free(F);
    if (lam) gsl_vector_free(lam);
    free(nu), free(grp), free(m), free(e);
    return -1;
  }
  for (size_t g = 0; g < G; g++)
    for (size_t h = 0; h < G; h++) {
      const double r = sqrt(m[g] * m[h]);
      gsl_matrix_set(B, g, h, (g == h ? (double)nu[g] : 0.0) - r * ((double)nu[g] + (double)nu[h]) / Cd + r * N / (Cd * Cd));
    }
  if (ufm_eigen_lapack(B, lam, V) != 0) jacobi_eigen(B, lam, V);
  /* every eigenvalue with its multiplicity, largest first */
  size_t ne = 0;
  double emax = 0.0;
  for (size_t g = 0; g < G; g++) {
    for (size_t k = 1; k < (size_t)m[g]; k++) e[ne++] = (double)nu[g];
    e[ne++] = gsl_vector_get(lam, g);
  }
  qsort(e, ne, sizeof(double), cmp_desc);
  emax = e[0];
  const double tol = seli_tol(C, emax);
  double nuc = 0.0;
  for (size_t k = 0; k < C; k++) {
    const double l = e[k] > tol ? sqrt(e[k]) : 0.0;
    if (sv) gsl_vector_set(sv, k, l);
    nuc += l;
  }
  if (nuclear) *nuclear = nuc;
  gsl_matrix *outs[2] = {WW, K};
  for (int o = 0; o < 2; o++) {
    if (!outs[o]) continue;
    /* f(e) = l for W W^T, 1/l for K, with l = sqrt(e); 0 where e is cut */
#define SELI_F(x) ((x) > tol ? (o == 0 ? sqrt(x) : 1.0 / sqrt(x)) : 0.0)
    for (size_t g = 0; g < G; g++)
      for (size_t h = g; h < G; h++) { /* F exactly symmetric, as f(A) then is */
        double f = 0.0;
        for (size_t k = 0; k < G; k++) {
          const double x = gsl_vector_get(lam, k);
          f += gsl_matrix_get(V, g, k) * SELI_F(x) * gsl_matrix_get(V, h, k);
        }
        gsl_matrix_set(F, g, h, f / sqrt(m[g] * m[h]));
        gsl_matrix_set(F, h, g, f / sqrt(m[g] * m[h]));
      }
    for (size_t a = 0; a < C; a++) {
      const size_t ga = grp[a];
      const double fa = SELI_F((double)nu[ga]), wa = fa / m[ga];
      double *row = outs[o]->data + a * outs[o]->tda;
      for (size_t b = 0; b < C; b++) {
        const size_t gb = grp[b];
        row[b] = gsl_matrix_get(F, ga, gb) - (ga == gb ? wa : 0.0) + (a == b ? fa : 0.0);
      }
    }
#undef SELI_F
  }
  gsl_matrix_free(B);
  gsl_matrix_free(V);
  gsl_matrix_free(F);
  gsl_vector_free(lam);
  free(nu), free(grp), free(m), free(e);
  return 0;
}

int ufm_seli(size_t C, const size_t *counts, gsl_vector *sv, gsl_matrix *WW, gsl_matrix *K,
             double *nuclear)
{
  return ufm_seli_general(C, counts, sv, WW, K, nuclear, 0);
}

int ufm_seli_general(size_t C, const size_t *counts, gsl_vector *sv, gsl_matrix *WW, gsl_matrix *K,
                     double *nuclear, int eigen_only)
{
  int unequal = 0;
  for (size_t c = 0; c < C; c++) unequal |= counts[c] != counts[0];
  if (unequal && !eigen_only) {
    const int st = seli_grouped(C, counts, sv, WW, K, nuclear);
    if (st <= 0) return st;
  }
  gsl_matrix *A = gsl_matrix_alloc(C, C), *U = WW || K ? gsl_matrix_alloc(C, C) : NULL;
  gsl_vector *ev = gsl_vector_alloc(C);
  int st = 0;
  if (!A || (!U && (WW || K)) || !ev) {
    st = -1;
    goto done;
  }
  double N = 0;
  int balanced = 1;
  for (size_t c = 0; c < C; c++) {
    N += (double)counts[c];
    balanced &= counts[c] == counts[0];
  }
  const double Cd = (double)C;
  if (balanced) { /* P D P = n P: the simplex ETF in closed form, O(C^2) */
    double n = (double)counts[0], l = sqrt(n);
    for (size_t a = 0; a < C; a++)
      for (size_t b = 0; b < C; b++) {
        double P = (a == b ? 1.0 : 0.0) - 1.0 / Cd;
        if (WW) gsl_matrix_set(WW, a, b, l * P);
        if (K) gsl_matrix_set(K, a, b, P / l);
      }
    for (size_t k = 0; sv && k < C; k++) gsl_vector_set(sv, k, k + 1 < C ? l : 0.0);
    if (nuclear) *nuclear = (Cd - 1) * l;
    goto done;
  }
  for (size_t a = 0; a < C; a++)
    for (size_t b = 0; b < C; b++) {
      double v = (a == b ? (double)counts[a] : 0.0) - ((double)counts[a] + (double)counts[b]) / Cd
                 + N / (Cd * Cd);
      gsl_matrix_set(A, a, b, v);
    }
  if (!WW && !K) { /* the singular values alone: no eigenvectors */
    if (ufm_eigen_lapack(A, ev, NULL) != 0) {
      gsl_eigen_symm_workspace *w = gsl_eigen_symm_alloc(C);
      if (!w) {
        st = -1;
        goto done;
      }
      gsl_eigen_symm(A, ev, w); /* A destroyed: not needed again */
      gsl_eigen_symm_free(w);
    }
    qsort(ev->data, C, sizeof(double), cmp_desc);
  } else {
    if (ufm_eigen_lapack(A, ev, U) != 0) jacobi_eigen(A, ev, U);
    gsl_eigen_symmv_sort(ev, U, GSL_EIGEN_SORT_VAL_DESC);
  }
  double emax = gsl_vector_get(ev, 0), tol = seli_tol(C, emax), nuc = 0;
  for (size_t k = 0; k < C; k++) {
    double e = gsl_vector_get(ev, k);
    double l = e > tol ? sqrt(e) : 0.0;
    if (sv) gsl_vector_set(sv, k, l);
    nuc += l;
  }
  /* WW = U L U^T and K = U L^-1 U^T (zero singular values dropped) as
   * Y Y^T, Y = U L^(1/2) or U L^(-1/2) in A: one DSYRK each (C^3 / 2
   * multiply-adds at BLAS speed), the upper triangle mirrored */
  gsl_matrix *outs[2] = {WW, K};
  for (int o = 0; o < 2; o++) {
    if (!outs[o]) continue;
    for (size_t k = 0; k < C; k++) {
      const double e = gsl_vector_get(ev, k), l = e > tol ? sqrt(e) : 0.0;
      const double f = l == 0.0 ? 0.0 : o == 0 ? sqrt(l) : 1.0 / sqrt(l);
      for (size_t a = 0; a < C; a++) gsl_matrix_set(A, a, k, f * gsl_matrix_get(U, a, k));
    }
    gsl_blas_dsyrk(CblasUpper, CblasNoTrans, 1.0, A, 0.0, outs[o]);
    for (size_t a = 0; a < C; a++)
      for (size_t b = 0; b < a; b++) gsl_matrix_set(outs[o], a, b, gsl_matrix_get(outs[o], b, a));
  }
  if (nuclear) *nuclear = nuc;
done:
  if (A) gsl_matrix_free(A);
  if (U) gsl_matrix_free(U);
  if (ev) gsl_vector_free(ev);
  return st;
}
