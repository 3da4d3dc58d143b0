/* model.c -- allocation, class layout and seeded initialisation of the UFM state.
 *
 * Contents: 1. allocation  2. initialisation  3. class counts
 */
#include "model.h"
#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <gsl/gsl_randist.h>
#include <gsl/gsl_rng.h>

/* ---------------------------------------------------------------- 1. allocation */

ufm_model *ufm_model_alloc(size_t C, size_t p, const size_t *counts, int bias)
{
  ufm_model *m = ufm_calloc(1, sizeof *m);
  m->C = C;
  m->p = p;
  m->bias = bias;
  m->counts = ufm_malloc(C * sizeof *m->counts);
  m->offset = ufm_malloc((C + 1) * sizeof *m->offset);
  size_t N = 0;
  for (size_t c = 0; c < C; c++) {
    m->counts[c] = counts[c];
    m->offset[c] = N;
    N += counts[c];
  }
  m->offset[C] = N;
  m->N = N;
  m->labels = ufm_malloc(N * sizeof *m->labels);
  for (size_t c = 0; c < C; c++)
    for (size_t i = m->offset[c]; i < m->offset[c + 1]; i++) m->labels[i] = (int32_t)c;
  m->W = gsl_matrix_calloc(C, p);
  m->H = gsl_matrix_calloc(p, N);
  m->b = gsl_vector_calloc(C);
  if (!m->W || !m->H || !m->b) {
    ufm_model_free(m);
    return NULL;
  }
  return m;
}

void ufm_model_free(ufm_model *m)
{
  if (!m) return;
  if (m->W) gsl_matrix_free(m->W);
  if (m->H) gsl_matrix_free(m->H);
  if (m->b) gsl_vector_free(m->b);
  free(m->counts);
  free(m->offset);
  free(m->labels);
  free(m);
}

/* ------------------------------------------------------------ 2. initialisation */

/* The draw order is part of the contract (SPEC section 1): W row-major, then
 * H row-major, one mt19937 stream, so any implementation can reproduce it. */
void ufm_model_init_random(ufm_model *m, unsigned long seed, double scale)
{
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  gsl_rng_set(r, seed);
  for (size_t c = 0; c < m->C; c++)
    for (size_t k = 0; k < m->p; k++) gsl_matrix_set(m->W, c, k, gsl_ran_gaussian(r, scale));
  for (size_t k = 0; k < m->p; k++)
    for (size_t i = 0; i < m->N; i++) gsl_matrix_set(m->H, k, i, gsl_ran_gaussian(r, scale));
  gsl_vector_set_zero(m->b);
  gsl_rng_free(r);
}

/* W, H, b; gradients of each; logits/loss-gradient Z (N x C); per-sample
 * scratch; metrics workspace (M and a C x C buffer; a scratch region of
 * p x C plus the larger of p x C + C x C and dgesdd's ~4 min(p,C)^2);
 * momentum buffers when used. */
double ufm_model_bytes_needed(size_t C, size_t p, size_t N, int momentum)
{
  double Cd = (double)C, pd = (double)p, Nd = (double)N;
  double k = Cd < pd ? Cd : pd, svd = 4 * k * k + 8 * k, tmp = Cd * pd + Cd * Cd;
  double doubles = 2 * (Cd * pd + pd * Nd + Cd) + Cd * Nd + 5 * Nd + 2 * Cd * pd + Cd * Cd
                   + (svd > tmp ? svd : tmp);
  if (momentum) doubles += Cd * pd + pd * Nd + Cd;
  if (C <= 32) /* UFM_GRAD_FUSED_CMAX: the fused step's slots (grad.c), at most 8 */
    doubles += 8 * (Cd * pd + 33 * Cd + 32 * pd + 4112);
  return 8.0 * doubles;
}

/* ------------------------------------------------------------- 3. class counts */

static size_t round_at_least_one(double x)
{
  double r = floor(x + 0.5);
  return r < 1 ? 1 : (size_t)r;
}

void ufm_counts_make(size_t C, size_t n, int imbalance, double ratio, size_t majority,
                     size_t *counts)
{
  for (size_t c = 0; c < C; c++) {
    switch (imbalance) {
    case UFM_IMB_STEP:
      counts[c] = c < majority ? n : round_at_least_one((double)n / ratio);
      break;
    case UFM_IMB_EXP:
      counts[c] = round_at_least_one((double)n * pow(ratio, -(double)c / (double)(C - 1)));
      break;
    default:
      counts[c] = n;
    }
  }
}
