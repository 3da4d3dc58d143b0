/* geometry.h -- reference geometries: the simplex equiangular tight frame. */
#ifndef UFM_GEOMETRY_H
#define UFM_GEOMETRY_H

#include <gsl/gsl_matrix.h>

/* Fill E (C x p, p >= C-1) with a simplex ETF: unit rows, pairwise inner
 * products -1/(C-1), summing to zero. Rows are sqrt(C/(C-1)) (e_c - 1/C)
 * written in the Helmert basis of the sum-zero subspace, padded with zeros.
 * Returns 0, or -1 when p < C-1 (no simplex ETF fits). */
int ufm_etf(gsl_matrix *E);

#endif
