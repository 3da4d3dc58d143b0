/* geometry.h -- reference geometries: the simplex equiangular tight frame. */
#ifndef UFM_GEOMETRY_H
#define UFM_GEOMETRY_H

#include <gsl/gsl_matrix.h>

/* Fill E (C x p, p >= C-1) with a simplex ETF: unit rows, pairwise inner
 * products -1/(C-1), summing to zero. Rows are sqrt(C/(C-1)) (e_c - 1/C)
 * written in the Helmert basis of the sum-zero subspace, padded with zeros.
 * Returns 0, or -1 when p < C-1 (no simplex ETF fits). */
int ufm_etf(gsl_matrix *E);

/* The SELI geometry of class counts n_1..n_C (Thrampoulidis et al. 2022):
 * Zhat = Y - (1/C) 1 1^T (C x N) with thin SVD U L V^T, computed through the
 * C x C matrix Zhat Zhat^T = P D P (P = I - 11^T/C, D = diag(n)) = U L^2 U^T.
 * Fills (any may be NULL):
 *   sv     (C)     singular values of Zhat, descending (the last is 0);
 *   WW     (C x C) U L U^T = (P D P)^{1/2}, the classifiers' Gram W W^T;
 *   K      (C x C) U L^{-1} U^T = (P D P)^{+1/2}: the Gram of the (uncentred)
 *                  class means, mu_c^T mu_c' = K_cc', since H^T H = V L V^T
 *                  = Zhat^T K Zhat and h_i depends on y_i only;
 *   nuclear        ||Zhat||_* = sum of singular values, the optimal value of
 *                  the unconstrained-features SVM.
 * Returns 0, or -1 if an allocation fails. */
int ufm_seli(size_t C, const size_t *counts, gsl_vector *sv, gsl_matrix *WW, gsl_matrix *K,
             double *nuclear);

/* ufm_seli; with eigen_only, always through the eigendecomposition of the
 * C x C matrix P D P, as it does when the counts take C/2 distinct values
 * or more (otherwise it reduces that to a G x G problem, G the number of
 * distinct counts). For tests. */
int ufm_seli_general(size_t C, const size_t *counts, gsl_vector *sv, gsl_matrix *WW, gsl_matrix *K,
                     double *nuclear, int eigen_only);

/* Eigen-decomposition of the symmetric n x n matrix A (not modified) by
 * LAPACK's dsyevd: eigenvalues in ascending order into ev (stride 1),
 * eigenvectors as the columns of V (V NULL: the eigenvalues alone, about a
 * third of the time). Well under a second at n = 1000 on
 * one core, where plain C takes a minute or more. ufm's BLAS runs on one thread, so the bits
 * do not depend on the thread count. Returns 0, or -1 when ufm was built
 * without LAPACK or LAPACK fails (the caller then uses its own solver). */
int ufm_eigen_lapack(const gsl_matrix *A, gsl_vector *ev, gsl_matrix *V);

#endif
