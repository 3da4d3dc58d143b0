/* geometry.c -- the simplex ETF (SPEC section 2's reference for NC2 and NC3). */
#include "geometry.h"

#include <math.h>

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
