/* constraint.c -- projections onto the layer-peeled constraint sets (projected GD).
 *
 * W: the ball (1/C)||W||_F^2 <= E_W; its projection rescales W.
 * H: the class-weighted ball sum_i a_i ||h_i||^2 <= E_H with
 * a_i = 1/(C n_{y_i}). Minimising sum ||x_i - h_i||^2 under it gives, by the
 * KKT conditions, x_i = h_i / (1 + nu a_i) with nu >= 0 the root of
 *   f(nu) = sum_c a_c S_c / (1 + nu a_c)^2 = E_H,   S_c = sum_{i in c} ||h_i||^2,
 * a decreasing function of nu: found by bisection to machine precision.
 */
#include "constraint.h"
#include "common.h"

#include <math.h>
#include <stdlib.h>

void ufm_project_W(ufm_model *m, double E_W)
{
  double n2 = 0.0;
  size_t n = m->C * m->p;
  for (size_t k = 0; k < n; k++) n2 += m->W->data[k] * m->W->data[k];
  double cap = (double)m->C * E_W;
  if (n2 <= cap) return;
  double s = sqrt(cap / n2);
  for (size_t k = 0; k < n; k++) m->W->data[k] *= s;
}

/* S_c for every class, rows summed in order. */
static void class_sumsq(const ufm_model *m, double *S)
{
  for (size_t c = 0; c < m->C; c++) S[c] = 0.0;
  for (size_t k = 0; k < m->p; k++) {
    const double *h = m->H->data + k * m->N;
    for (size_t c = 0; c < m->C; c++) {
      double s = 0.0;
      for (size_t i = m->offset[c]; i < m->offset[c + 1]; i++) s += h[i] * h[i];
      S[c] += s;
    }
  }
}

double ufm_constraint_H_value(const ufm_model *m)
{
  double *S = ufm_malloc(m->C * sizeof(double)), v = 0.0;
  class_sumsq(m, S);
  for (size_t c = 0; c < m->C; c++) v += S[c] / ((double)m->C * (double)m->counts[c]);
  free(S);
  return v;
}

static double f_of(const double *a, const double *S, size_t C, double nu)
{
  double v = 0.0;
  for (size_t c = 0; c < C; c++) {
    double d = 1.0 + nu * a[c];
    v += a[c] * S[c] / (d * d);
  }
  return v;
}

double ufm_project_H(ufm_model *m, double E_H)
{
  const size_t C = m->C;
  double *S = ufm_malloc(C * sizeof(double)), *a = ufm_malloc(C * sizeof(double));
  class_sumsq(m, S);
  double bound = 0.0;
  for (size_t c = 0; c < C; c++) {
    a[c] = 1.0 / ((double)C * (double)m->counts[c]);
    bound += S[c] / a[c];
  }
  double nu = 0.0;
  if (f_of(a, S, C, 0.0) > E_H) {
    /* f(nu) < sum_c S_c / (a_c nu^2), so f(hi) <= E_H at hi below */
    double lo = 0.0, hi = sqrt(bound / E_H) + 1.0;
    for (int it = 0; it < 200 && hi - lo > 1e-16 * hi; it++) {
      double mid = 0.5 * (lo + hi);
      if (f_of(a, S, C, mid) > E_H) lo = mid;
      else hi = mid;
    }
    nu = hi; /* the feasible side */
    for (size_t k = 0; k < m->p; k++) {
      double *h = m->H->data + k * m->N;
      for (size_t c = 0; c < C; c++) {
        double s = 1.0 / (1.0 + nu * a[c]);
        for (size_t i = m->offset[c]; i < m->offset[c + 1]; i++) h[i] *= s;
      }
    }
  }
  free(S);
  free(a);
  return nu;
}
