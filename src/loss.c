/* loss.c -- cross-entropy and squared loss on the logits, with their gradients.
 *
 * Contents: 1. cross-entropy  2. squared loss  3. table and batch pass
 */
#include "loss.h"
#include "common.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------ 1. cross-entropy */

/* loss = log sum_c exp(z_c) - z_y, evaluated with the max m subtracted so no
 * exponential overflows. With S_o = sum_{c != y} exp(z_c - m):
 *   if z_y = m:  loss = log1p(S_o)              (exact down to the smallest
 *                                                 doubles, never log(0))
 *   otherwise:   loss = log(S_o + e^{z_y-m}) + m - z_y.
 * Gradient: softmax(z) - e_y, with the true-class entry written as
 * -S_o / S instead of softmax_y - 1, which would cancel to 0 long before the
 * loss does (max-margin runs live there). */
static double ce_sample(size_t C, double *z, int32_t y, double scale)
{
  double m = z[0];
  for (size_t c = 1; c < C; c++)
    if (z[c] > m) m = z[c];
  double zy = z[y];
  double so = 0.0;
  for (size_t c = 0; c < C; c++) {
    double e = exp(z[c] - m);
    z[c] = e;
    if ((int32_t)c != y) so += e;
  }
  double ey = z[y];
  double s = so + ey;
  double loss = (zy == m) ? log1p(so) : log(s) + (m - zy);
  double f = scale / s;
  for (size_t c = 0; c < C; c++) z[c] *= f;
  z[y] = -so * f;
  return loss;
}

/* -------------------------------------------------------------- 2. squared loss */

/* loss = 1/2 ||z - e_y||^2, gradient z - e_y. */
static double mse_sample(size_t C, double *z, int32_t y, double scale)
{
  double loss = 0.0;
  for (size_t c = 0; c < C; c++) {
    double d = z[c] - ((int32_t)c == y ? 1.0 : 0.0);
    loss += d * d;
    z[c] = scale * d;
  }
  return 0.5 * loss;
}

/* ------------------------------------------------------- 3. table and batch pass */

const ufm_loss_type ufm_loss_ce = {"ce", "log sum_c exp(z_c) - z_y", ce_sample};
const ufm_loss_type ufm_loss_mse = {"mse", "1/2 ||z - e_y||^2", mse_sample};

static const ufm_loss_type *const loss_table[] = {&ufm_loss_ce, &ufm_loss_mse};
#define NLOSS (sizeof loss_table / sizeof loss_table[0])

const ufm_loss_type *ufm_loss_lookup(const char *name)
{
  for (size_t k = 0; k < NLOSS; k++)
    if (strcmp(name, loss_table[k]->name) == 0) return loss_table[k];
  return NULL;
}

const char *ufm_loss_names(void) { return "ce, mse"; }

double ufm_loss_batch(const ufm_loss_type *L, size_t N, size_t C, double *ZT, const double *b,
                      const int32_t *labels, double *loss_i, int32_t *pred, double *margin,
                      double *zstat)
{
  const double scale = 1.0 / (double)N;
#pragma omp parallel for schedule(static) if (N * C >= UFM_PAR_MIN)
  for (size_t i = 0; i < N; i++) {
    double *z = ZT + i * C;
    int32_t y = labels[i];
    if (b)
      for (size_t c = 0; c < C; c++) z[c] += b[c];
    size_t a = 0;
    double other = -INFINITY;
    for (size_t c = 0; c < C; c++) {
      if (z[c] > z[a]) a = c;
      if ((int32_t)c != y && z[c] > other) other = z[c];
    }
    pred[i] = (int32_t)a;
    margin[i] = z[y] - other;
    if (zstat) { /* ||z_i||^2 and z_{i,y_i} - mean_c z_ic, for the SELI distance of Z */
      double sq = 0.0, sum = 0.0;
      for (size_t c = 0; c < C; c++) {
        sq += z[c] * z[c];
        sum += z[c];
      }
      zstat[2 * i] = sq;
      zstat[2 * i + 1] = z[y] - sum / (double)C;
    }
    loss_i[i] = L->sample(C, z, y, scale);
  }
  double sum = 0.0;
  for (size_t i = 0; i < N; i++) sum += loss_i[i];
  return sum / (double)N;
}
