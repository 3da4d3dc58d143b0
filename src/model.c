/* model.c -- allocation, class layout and seeded initialisation of the UFM state.
 *
 * Contents: 1. allocation  2. initialisation  3. class counts
 */
#include "model.h"
#include "grad.h" /* the logits' memory */
#include "common.h"

#include <math.h>
#include <stdint.h>
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

/* The draws of GSL's gsl_ran_gaussian (gsl 2.x, polar Box-Muller, one value
 * per accepted pair) on the stream of gsl_rng_mt19937, bit for bit, about
 * 3x faster: GSL calls its generator through two function pointers per
 * uniform (45 ns per normal; 0.5 s for the 11 M entries of C = 1000,
 * p = 1024, n = 10). The state comes from GSL's own seeding; the words are
 * generated 624 at a time and tempered here (the reference MT19937, as
 * GSL's mt.c). ufm_model_init_random checks its first values against
 * gsl_ran_gaussian itself and uses GSL's loop if they differ (another GSL
 * with another method or state layout). */
#define MT_N 624
#define MT_M 397
typedef struct {
  uint32_t mt[MT_N];
  double u[MT_N]; /* the tempered words / 2^32: gsl_rng_uniform's values */
  size_t next;
} fast_mt;

static int fast_mt_init(fast_mt *f, unsigned long seed)
{
  gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
  if (!r) return 0;
  gsl_rng_set(r, seed);
  /* GSL's mt_state_t: unsigned long mt[624]; int mti (624 after seeding) */
  int ok = gsl_rng_size(r) >= MT_N * sizeof(unsigned long) + sizeof(int);
  if (ok) {
    const unsigned long *st = gsl_rng_state(r);
    for (size_t i = 0; i < MT_N; i++) f->mt[i] = (uint32_t)(st[i] & 0xffffffffUL);
  }
  gsl_rng_free(r);
  f->next = MT_N;
  return ok;
}

static void fast_mt_refill(fast_mt *f)
{
  uint32_t *mt = f->mt;
  const uint32_t up = 0x80000000U, lo = 0x7fffffffU, a = 0x9908b0dfU;
  size_t k = 0;
  for (; k < MT_N - MT_M; k++) {
    uint32_t y = (mt[k] & up) | (mt[k + 1] & lo);
    mt[k] = mt[k + MT_M] ^ (y >> 1) ^ ((y & 1U) ? a : 0U);
  }
  for (; k < MT_N - 1; k++) {
    uint32_t y = (mt[k] & up) | (mt[k + 1] & lo);
    mt[k] = mt[k + MT_M - MT_N] ^ (y >> 1) ^ ((y & 1U) ? a : 0U);
  }
  uint32_t y = (mt[MT_N - 1] & up) | (mt[0] & lo);
  mt[MT_N - 1] = mt[MT_M - 1] ^ (y >> 1) ^ ((y & 1U) ? a : 0U);
  for (k = 0; k < MT_N; k++) {
    uint32_t t = mt[k];
    t ^= t >> 11;
    t ^= (t << 7) & 0x9d2c5680U;
    t ^= (t << 15) & 0xefc60000U;
    t ^= t >> 18;
    f->u[k] = (double)t / 4294967296.0;
  }
  f->next = 0;
}

/* gsl_rng_uniform_pos: the next value that is not 0 */
static inline double fast_mt_pos(fast_mt *f)
{
  double x;
  do {
    if (f->next == MT_N) fast_mt_refill(f);
    x = f->u[f->next++];
  } while (x == 0.0);
  return x;
}

/* n values of gsl_ran_gaussian(r, scale) into out (stride 1), in blocks:
 * the accepted pairs first, then the transform (no contraction in ISO C:
 * the arithmetic and libm calls of GSL's gaussian.c) */
static void fast_gaussian(fast_mt *f, double scale, double *out, size_t n)
{
  enum { B = 512 };
  double ys[B], r2s[B];
  for (size_t i0 = 0; i0 < n; i0 += B) {
    const size_t len = n - i0 < B ? n - i0 : B;
    for (size_t j = 0; j < len; j++) {
      double x, y, r2;
      do {
        x = -1 + 2 * fast_mt_pos(f);
        y = -1 + 2 * fast_mt_pos(f);
        r2 = x * x + y * y;
      } while (r2 > 1.0 || r2 == 0);
      ys[j] = y;
      r2s[j] = r2;
    }
    for (size_t j = 0; j < len; j++) out[i0 + j] = scale * ys[j] * sqrt(-2.0 * log(r2s[j]) / r2s[j]);
  }
}

/* The draw order is part of the contract (SPEC section 1): W row-major, then
 * H row-major, one mt19937 stream, so any implementation can reproduce it. */
void ufm_model_init_random(ufm_model *m, unsigned long seed, double scale)
{
  (void)ufm_model_init_random_fast(m, seed, scale);
}

int ufm_model_init_random_fast(ufm_model *m, unsigned long seed, double scale)
{
  const size_t nw = m->C * m->p, nh = m->p * m->N;
  fast_mt *f = malloc(sizeof *f);
  int fast = f && fast_mt_init(f, seed);
  if (fast) { /* the first values must be GSL's own */
    enum { NCHK = 64 };
    double a[NCHK];
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    if (r) {
      gsl_rng_set(r, seed);
      fast_gaussian(f, scale, a, NCHK);
      for (size_t k = 0; k < NCHK && fast; k++) fast = a[k] == gsl_ran_gaussian(r, scale);
      gsl_rng_free(r);
    } else
      fast = 0;
    fast = fast && fast_mt_init(f, seed); /* from the start again */
  }
  fast = fast && m->W->tda == m->p && m->H->tda == m->N; /* contiguous (ufm_model_alloc) */
  if (fast) {
    fast_gaussian(f, scale, m->W->data, nw);
    fast_gaussian(f, scale, m->H->data, nh);
  } else {
    gsl_rng *r = gsl_rng_alloc(gsl_rng_mt19937);
    gsl_rng_set(r, seed);
    for (size_t c = 0; c < m->C; c++)
      for (size_t k = 0; k < m->p; k++) gsl_matrix_set(m->W, c, k, gsl_ran_gaussian(r, scale));
    for (size_t k = 0; k < m->p; k++)
      for (size_t i = 0; i < m->N; i++) gsl_matrix_set(m->H, k, i, gsl_ran_gaussian(r, scale));
    gsl_rng_free(r);
  }
  free(f);
  gsl_vector_set_zero(m->b);
  return fast;
}

/* W, H, b; gradients of each; logits/loss-gradient Z (N x C, or the
 * column blocks' slots, ufm_grad_logits_doubles); per-sample
 * scratch; metrics workspace (M and a C x C buffer; a scratch region of
 * p x C plus the larger of p x C + C x C and dgesdd's ~4 min(p,C)^2);
 * momentum buffers when used. */
double ufm_model_bytes_needed(size_t C, size_t p, size_t N, int momentum)
{
  double Cd = (double)C, pd = (double)p, Nd = (double)N;
  double k = Cd < pd ? Cd : pd, svd = 4 * k * k + 8 * k, tmp = Cd * pd + Cd * Cd;
  double doubles = 2 * (Cd * pd + pd * Nd + Cd) + ufm_grad_logits_doubles(C, p, N) + 5 * Nd
                   + 2 * Cd * pd + Cd * Cd
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
