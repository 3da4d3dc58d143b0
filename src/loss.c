/* loss.c -- cross-entropy and squared loss on the logits, with their gradients.
 *
 * Contents: 1. the exponential  2. cross-entropy  3. squared loss
 *           4. table and batch pass  5. class-major blocks
 */
#include "loss.h"
#include "common.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

/* ----------------------------------------------------------- 1. the exponential */

/* exp(x) for -708.39 <= x <= 0, written for the vectoriser (libm's exp is a
 * call per element, a third of a small step): x = k ln2 + r with
 * k = round(x / ln2) (the 1.5 2^52 shifter, which also leaves k in the low
 * bits of t), ln2 split in two (Cody-Waite: k ln2_hi is exact), exp(r) for
 * |r| <= ln2/2 by its Taylor polynomial to degree 12 (remainder < 2e-16
 * relative), times 2^k built in the exponent bits. Within 2 ulp of the true
 * value (tested against libm). Outside that range (2^k subnormal, or NaN) the
 * callers use libm. */
static inline double exp_neg(double x)
{
  const double inv_ln2 = 1.4426950408889634074, shifter = 0x1.8p52,
               ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  double t = x * inv_ln2 + shifter;
  double kd = t - shifter;
  double r = (x - kd * ln2_hi) - kd * ln2_lo;
  double p = 1.0 / 479001600.0;
  p = p * r + 1.0 / 39916800.0;
  p = p * r + 1.0 / 3628800.0;
  p = p * r + 1.0 / 362880.0;
  p = p * r + 1.0 / 40320.0;
  p = p * r + 1.0 / 5040.0;
  p = p * r + 1.0 / 720.0;
  p = p * r + 1.0 / 120.0;
  p = p * r + 1.0 / 24.0;
  p = p * r + 1.0 / 6.0;
  p = p * r + 0.5;
  p = p * r + 1.0;
  p = p * r + 1.0;
  uint64_t bits;
  memcpy(&bits, &t, sizeof bits);
  bits = (bits + 1023) << 52; /* k + 1023 into the exponent; the shifter's bits shift out */
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

UFM_SIMD_BEGIN

/* The same with fused multiply-adds, for the AVX2+FMA kernels only (on the
 * default target fma() would be a library call): shorter dependency chain,
 * within 2 ulp too. */
static inline double exp_neg_fma(double x)
{
  const double inv_ln2 = 1.4426950408889634074, shifter = 0x1.8p52,
               ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  double t = fma(x, inv_ln2, shifter);
  double kd = t - shifter;
  double r = fma(-kd, ln2_lo, fma(-kd, ln2_hi, x));
  double p = 1.0 / 479001600.0;
  p = fma(p, r, 1.0 / 39916800.0);
  p = fma(p, r, 1.0 / 3628800.0);
  p = fma(p, r, 1.0 / 362880.0);
  p = fma(p, r, 1.0 / 40320.0);
  p = fma(p, r, 1.0 / 5040.0);
  p = fma(p, r, 1.0 / 720.0);
  p = fma(p, r, 1.0 / 120.0);
  p = fma(p, r, 1.0 / 24.0);
  p = fma(p, r, 1.0 / 6.0);
  p = fma(p, r, 0.5);
  p = fma(p, r, 1.0);
  p = fma(p, r, 1.0);
  uint64_t bits;
  memcpy(&bits, &t, sizeof bits);
  bits = (bits + 1023) << 52; /* k + 1023 into the exponent; the shifter's bits shift out */
  double scale;
  memcpy(&scale, &bits, sizeof scale);
  return p * scale;
}

UFM_SIMD_END

#define EXP_NEG_MIN (-708.39)

/* z[c] <- exp(z[c] - m), c < n, every z[c] <= m. (An AVX2 clone, without
 * contraction: the same bits as the default one.) */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx2", "default")))
#endif
static void exp_shifted(size_t n, double *z, double m)
{
  int bad = 0;
#pragma omp simd reduction(| : bad)
  for (size_t c = 0; c < n; c++) bad |= !(z[c] - m >= EXP_NEG_MIN);
  if (bad) {
    for (size_t c = 0; c < n; c++) z[c] = exp(z[c] - m);
    return;
  }
#pragma omp simd
  for (size_t c = 0; c < n; c++) z[c] = exp_neg(z[c] - m);
}

/* ------------------------------------------------------------ 2. cross-entropy */

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
  exp_shifted(C, z, m);
  double so = 0.0; /* in class order, skipping y */
  for (size_t c = 0; c < (size_t)y; c++) so += z[c];
  for (size_t c = (size_t)y + 1; c < C; c++) so += z[c];
  double ey = z[y];
  double s = so + ey;
  double loss = (zy == m) ? log1p(so) : log(s) + (m - zy);
  double f = scale / s;
  for (size_t c = 0; c < C; c++) z[c] *= f;
  z[y] = -so * f;
  return loss;
}

UFM_SIMD_BEGIN

/* The same on a class-major block (ufm_loss_block_fn): every step a loop
 * over the samples of the block. */
static void ce_block(size_t C, size_t B, size_t ld, double *z, const int32_t *y, double scale,
                     double *loss_i)
{
  double m[UFM_LOSS_BMAX], zy[UFM_LOSS_BMAX], so[UFM_LOSS_BMAX], f[UFM_LOSS_BMAX];
  for (size_t l = 0; l < B; l++) {
    m[l] = z[l];
    zy[l] = z[(size_t)y[l] * ld + l];
  }
  for (size_t c = 1; c < C; c++) {
    const double *zc = z + c * ld;
#pragma omp simd
    for (size_t l = 0; l < B; l++) m[l] = zc[l] > m[l] ? zc[l] : m[l];
  }
  int bad = 0;
  for (size_t c = 0; c < C; c++) {
    const double *zc = z + c * ld;
#pragma omp simd reduction(| : bad)
    for (size_t l = 0; l < B; l++) bad |= !(zc[l] - m[l] >= EXP_NEG_MIN);
  }
  for (size_t l = 0; l < B; l++) so[l] = 0.0;
  for (size_t c = 0; c < C; c++) {
    double *zc = z + c * ld;
    if (bad)
      for (size_t l = 0; l < B; l++) zc[l] = exp(zc[l] - m[l]);
    else {
#pragma omp simd
      for (size_t l = 0; l < B; l++) zc[l] = exp_neg_fma(zc[l] - m[l]);
    }
    /* in class order, skipping y (adding +0.0 there leaves so's bits alone) */
#pragma omp simd
    for (size_t l = 0; l < B; l++) so[l] += (int32_t)c != y[l] ? zc[l] : 0.0;
  }
  for (size_t l = 0; l < B; l++) {
    double s = so[l] + z[(size_t)y[l] * ld + l];
    loss_i[l] = (zy[l] == m[l]) ? log1p(so[l]) : log(s) + (m[l] - zy[l]);
    f[l] = scale / s;
  }
  for (size_t c = 0; c < C; c++) {
    double *zc = z + c * ld;
#pragma omp simd
    for (size_t l = 0; l < B; l++) zc[l] *= f[l];
  }
  for (size_t l = 0; l < B; l++) z[(size_t)y[l] * ld + l] = -so[l] * f[l];
}

UFM_SIMD_END

/* -------------------------------------------------------------- 3. squared loss */

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

UFM_SIMD_BEGIN

static void mse_block(size_t C, size_t B, size_t ld, double *z, const int32_t *y, double scale,
                      double *loss_i)
{
  double acc[UFM_LOSS_BMAX];
  for (size_t l = 0; l < B; l++) acc[l] = 0.0;
  for (size_t c = 0; c < C; c++) {
    double *zc = z + c * ld;
#pragma omp simd
    for (size_t l = 0; l < B; l++) {
      double d = zc[l] - ((int32_t)c == y[l] ? 1.0 : 0.0);
      acc[l] += d * d;
      zc[l] = scale * d;
    }
  }
  for (size_t l = 0; l < B; l++) loss_i[l] = 0.5 * acc[l];
}

UFM_SIMD_END

/* ------------------------------------------------------- 4. table and batch pass */

const ufm_loss_type ufm_loss_ce = {"ce", "log sum_c exp(z_c) - z_y", ce_sample, ce_block};
const ufm_loss_type ufm_loss_mse = {"mse", "1/2 ||z - e_y||^2", mse_sample, mse_block};

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

/* ------------------------------------------------------- 5. class-major blocks */

UFM_SIMD_BEGIN

void ufm_loss_block_stats(size_t C, size_t B, size_t ld, const double *z, const int32_t *y,
                          int32_t *pred, double *margin, double *zstat)
{
  double best[UFM_LOSS_BMAX], other[UFM_LOSS_BMAX], sq[UFM_LOSS_BMAX], sum[UFM_LOSS_BMAX];
  int32_t a[UFM_LOSS_BMAX];
  for (size_t l = 0; l < B; l++) {
    best[l] = z[l];
    a[l] = 0;
    other[l] = -INFINITY;
    sq[l] = sum[l] = 0.0;
  }
  for (size_t c = 0; c < C; c++) {
    const double *zc = z + c * ld;
#pragma omp simd
    for (size_t l = 0; l < B; l++) {
      double v = zc[l];
      int gt = v > best[l]; /* the first largest, as in ufm_loss_batch */
      best[l] = gt ? v : best[l];
      a[l] = gt ? (int32_t)c : a[l];
      other[l] = ((int32_t)c != y[l] && v > other[l]) ? v : other[l];
      sq[l] += v * v;
      sum[l] += v;
    }
  }
  for (size_t l = 0; l < B; l++) {
    double zy = z[(size_t)y[l] * ld + l];
    pred[l] = a[l];
    margin[l] = zy - other[l];
    if (zstat) {
      zstat[2 * l] = sq[l];
      zstat[2 * l + 1] = zy - sum[l] / (double)C;
    }
  }
}

UFM_SIMD_END
