/* loss.c -- cross-entropy and squared loss on the logits, with their gradients.
 *
 * Contents: 1. the exponential  2. sample-major rows  3. cross-entropy
 *           4. squared loss  5. table and batch pass  6. class-major blocks
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
 * callers use libm. The sample-major rows (section 2) evaluate the same
 * polynomial by Estrin's scheme on vectors, without fused multiply-adds
 * (exp_neg in loss_rows.h); the class-major blocks (section 6) by Horner,
 * one lane at a time, with them: */

UFM_SIMD_BEGIN

/* For the AVX2+FMA kernels only (on the default target fma() would be a
 * library call): a shorter dependency chain, within 2 ulp too */
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

/* ------------------------------------------------------ 2. sample-major rows */

/* The passes over one sample's logits (C contiguous doubles: one of the
 * scratch rows ufm_loss_batch copies a block of samples into) of
 * ufm_loss_batch and the per-sample functions: loss_rows.h, compiled for SSE2 (every x86-64),
 * AVX2 and AVX-512F (GCC on x86-64; elsewhere the first alone), the widest
 * this CPU runs chosen at run time. All give the same bits (see there;
 * test_loss checks); a row is one thread's. */
#define LW 8 /* lanes */

/* What one pass over a row finds. */
typedef struct {
  size_t a;       /* the first index of the largest logit (0 when z_0 is NaN, or
                     when every logit is -inf or NaN, as a running "z_c > z_a" scan) */
  double m;       /* z_a */
  double other;   /* max_{c != y} z_c (-inf for C = 1) */
  double sq, sum; /* sum_c z_c^2, sum_c z_c (lane order) */
  int fast;       /* every z_c - m >= EXP_NEG_MIN (none NaN or infinite): exp_neg will do */
} row_scan;

#define ROWS_W 2
#define ROWS_NAME(f) f##_w2
#define ROWS_TARGET
#include "loss_rows.h"

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define ROWS_MULTI 1
#define ROWS_W 4
#define ROWS_NAME(f) f##_w4
#define ROWS_TARGET __attribute__((target("avx2")))
#include "loss_rows.h"
#define ROWS_W 8
#define ROWS_NAME(f) f##_w8
#define ROWS_TARGET __attribute__((target("avx512f")))
#include "loss_rows.h"
#endif

typedef struct {
  void (*scan)(size_t C, double *z, const double *b, int32_t y, row_scan *r);
  double (*ce)(size_t C, double *z, int32_t y, double scale, double m, int fast,
               const double *next);
  double (*mse)(size_t C, double *z, int32_t y, double scale, const double *next);
} row_passes;

static const row_passes rows_w2 = {scan_row_w2, ce_row_w2, mse_row_w2};
#ifdef ROWS_MULTI
static const row_passes rows_w4 = {scan_row_w4, ce_row_w4, mse_row_w4};
static const row_passes rows_w8 = {scan_row_w8, ce_row_w8, mse_row_w8};
#endif
static const row_passes *rows_forced; /* ufm_loss_rows_width */

/* The widest this CPU runs. */
static const row_passes *rows_widest(int *w)
{
#ifdef ROWS_MULTI
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) {
    *w = 8;
    return &rows_w8;
  }
  if (__builtin_cpu_supports("avx2")) {
    *w = 4;
    return &rows_w4;
  }
#endif
  *w = 2;
  return &rows_w2;
}

static const row_passes *row_passes_here(void)
{
  int w;
  return rows_forced ? rows_forced : rows_widest(&w);
}

int ufm_loss_rows_width(int w)
{
  int widest;
  rows_widest(&widest);
  const row_passes *p = w == 2 ? &rows_w2 : NULL;
#ifdef ROWS_MULTI
  if (w == 4) p = &rows_w4;
  if (w == 8) p = &rows_w8;
#endif
  if (w == 0) {
    rows_forced = NULL;
    return widest;
  }
  if (!p || w > widest) return 0;
  rows_forced = p;
  return w;
}

/* ------------------------------------------------------------ 3. cross-entropy */

/* loss = log sum_c exp(z_c) - z_y, evaluated with the max m subtracted so no
 * exponential overflows. With S_o = sum_{c != y} exp(z_c - m):
 *   if z_y = m:  loss = log1p(S_o)              (exact down to the smallest
 *                                                 doubles, never log(0))
 *   otherwise:   loss = log(S_o + e^{z_y-m}) + m - z_y.
 * Gradient: softmax(z) - e_y, with the true-class entry written as
 * -S_o / S instead of softmax_y - 1, which would cancel to 0 long before the
 * loss does (max-margin runs live there). The exponentials are exp_neg's,
 * or libm's for the whole row when some z_c - m is below EXP_NEG_MIN (2^k
 * subnormal) or not a number. The pass is ce_row of loss_rows.h, after
 * scan_row has found m. */
static double ce_sample(size_t C, double *z, int32_t y, double scale)
{
  const row_passes *rp = row_passes_here();
  row_scan r;
  rp->scan(C, z, NULL, y, &r);
  return rp->ce(C, z, y, scale, r.m, r.fast, NULL);
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

/* -------------------------------------------------------------- 4. squared loss */

/* loss = 1/2 ||z - e_y||^2, gradient z - e_y (the squares summed in lanes). */
static double mse_sample(size_t C, double *z, int32_t y, double scale)
{
  return row_passes_here()->mse(C, z, y, scale, NULL);
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

/* ------------------------------------------------------- 5. table and batch pass */

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

size_t ufm_loss_groups(size_t N)
{
  const size_t g = (N + UFM_LOSS_GROUP_ROWS - 1) / UFM_LOSS_GROUP_ROWS;
  if (g < 2) return N >= UFM_LOSS_TWO_GROUPS ? 2 : 1;
  return g > UFM_LOSS_GROUPS_MAX ? UFM_LOSS_GROUPS_MAX : g;
}

size_t ufm_loss_rows_len(size_t N, size_t C) { return ufm_loss_groups(N) * UFM_LOSS_BLOCK * C; }

/* The batch pass on n columns of a class-major Z (C rows, row stride ld;
 * column j is sample j of the arrays passed): the samples copied eight at a
 * time into rows (8 C doubles, in L1), the sample-major row passes run on
 * them and the rows written back into Z's columns; G's columns added into
 * part (if not NULL) in sample order. Z's C rows are too many streams for
 * the hardware prefetcher: each class's line of two blocks ahead is asked
 * for as a block is read (without it the loads' misses took 1.5 % of a
 * step at M). */
void ufm_loss_cols(const ufm_loss_type *L, size_t C, size_t n, size_t ld, double *Z,
                   const double *b, const int32_t *labels, double scale, double *loss_i,
                   int32_t *pred, double *margin, double *zstat, double *part, double *rows)
{
  /* the two built-in losses get the max from the scan and prefetch the next
   * row of the block while they compute */
  const int ce = L->sample == ce_sample, mse = L->sample == mse_sample;
  const row_passes *rp = row_passes_here();
  for (size_t i = 0; i < n; i++) {
    const size_t l = i % UFM_LOSS_BLOCK, left = n - (i - l);
    const size_t len = left < UFM_LOSS_BLOCK ? left : UFM_LOSS_BLOCK;
    double *z = rows + l * C;
    if (l == 0) { /* the block's logits into rows */
      const int ahead = i + 24 <= n;
      for (size_t c = 0; c < C; c++) {
        const double *src = Z + c * ld + i;
        if (ahead) __builtin_prefetch(src + 16);
        for (size_t k = 0; k < len; k++) rows[k * C + c] = src[k];
      }
    }
    int32_t y = labels[i];
    row_scan r;
    rp->scan(C, z, b, y, &r); /* adds the bias */
    pred[i] = (int32_t)r.a;
    margin[i] = z[y] - r.other;
    if (zstat) { /* ||z_i||^2 and z_{i,y_i} - mean_c z_ic, for the SELI distance of Z */
      zstat[2 * i] = r.sq;
      zstat[2 * i + 1] = z[y] - r.sum / (double)C;
    }
    const double *next = l + 1 < len ? z + C : NULL;
    loss_i[i] = ce    ? rp->ce(C, z, y, scale, r.m, r.fast, next)
                : mse ? rp->mse(C, z, y, scale, next)
                      : L->sample(C, z, y, scale);
    if (part) /* the row just written, while it is in cache */
      for (size_t c = 0; c < C; c++) part[c] += z[c];
    if (l + 1 == len) { /* the block's G back into Z's columns */
      const size_t ib = i - l;
      for (size_t c = 0; c < C; c++) {
        double *dst = Z + c * ld + ib;
        for (size_t k = 0; k < len; k++) dst[k] = rows[k * C + c];
      }
    }
  }
}

/* The batch pass on the whole of Z (C x N): each group runs ufm_loss_cols
 * on its samples with its own rows and part of the bias gradient. */
double ufm_loss_batch(const ufm_loss_type *L, size_t N, size_t C, double *Z, const double *b,
                      const int32_t *labels, double *loss_i, int32_t *pred, double *margin,
                      double *zstat, double *gsum, double *work, double *rows)
{
  const double scale = 1.0 / (double)N;
  const size_t ng = ufm_loss_groups(N);
#pragma omp parallel for schedule(static) if (N * C >= UFM_LOSS_PAR_MIN && ng > 1)
  for (size_t q = 0; q < ng; q++) {
    const size_t i0 = q * N / ng, i1 = (q + 1) * N / ng;
    double *part = gsum ? work + q * C : NULL;
    if (part)
      for (size_t c = 0; c < C; c++) part[c] = 0.0;
    ufm_loss_cols(L, C, i1 - i0, N, Z + i0, b, labels + i0, scale, loss_i + i0, pred + i0,
                  margin + i0, zstat ? zstat + 2 * i0 : NULL, part,
                  rows + q * UFM_LOSS_BLOCK * C);
  }
  if (gsum) {
    memcpy(gsum, work, C * sizeof(double));
    for (size_t q = 1; q < ng; q++)
      for (size_t c = 0; c < C; c++) gsum[c] += work[q * C + c];
  }
  double sum = 0.0;
  for (size_t i = 0; i < N; i++) sum += loss_i[i];
  return sum / (double)N;
}

/* ------------------------------------------------------- 6. class-major blocks */

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
