/* loss_rows.h -- the sample-major row passes of loss.c, written once for any
 * vector width. Not a header of its own: loss.c includes it once per
 * instruction set, after defining
 *   ROWS_W          doubles per vector (2, 4 or 8; LW = 8 lanes in all)
 *   ROWS_NAME(f)    f with the set's suffix
 *   ROWS_TARGET     the function attribute that selects the set (or empty)
 * and gets ROWS_NAME(exp_neg), ROWS_NAME(scan_row), ROWS_NAME(ce_row) and
 * ROWS_NAME(mse_row).
 *
 * A row is one sample's C contiguous logits (a row of Z^T). Every pass keeps
 * LW = 8 partial results, lanes: element c goes to lane c % 8, in increasing
 * c; the lanes are combined in the fixed order of lane_sum. A lane is the
 * same arithmetic whatever the width (a vector of ROWS_W doubles holds lanes
 * h ROWS_W .. h ROWS_W + ROWS_W - 1, no fused multiply-adds: ISO C mode, no
 * contraction), so every set gives the same bits (libm's log, log1p and exp,
 * called per row or on the rare rows outside exp_neg's range, are libm's).
 * The block of 8 that holds y takes a lane mask; the last C % 8 elements go
 * into their lanes one by one. Vectors go to and from functions by pointer
 * (no vector calling convention).
 */

#define NH (LW / ROWS_W)
#define VD ROWS_NAME(vd)
#define VL ROWS_NAME(vl)
#define VU ROWS_NAME(vu)
#define VB ROWS_NAME(vb)
typedef double VD __attribute__((vector_size(8 * ROWS_W)));
typedef int64_t VL __attribute__((vector_size(8 * ROWS_W)));
typedef uint64_t VB __attribute__((vector_size(8 * ROWS_W)));
typedef double VU __attribute__((vector_size(8 * ROWS_W), aligned(8), may_alias)); /* in memory */

#define LOADV(v, p) ((v) = *(const VU *)(p))
#define STOREV(p, v) (*(VU *)(p) = (v))
/* loops over the vectors of a block: always unrolled, so they stay in registers */
#define UNROLL _Pragma("GCC unroll 16")
/* the lanes of a where m is all ones, of b elsewhere */
#define SELECTV(m, a, b) ((VD)(((m) & (VL)(a)) | (~(m) & (VL)(b))))

/* exp(x) for -708.39 <= x <= 0 in each lane of x[0..n-1], in place: the
 * reduction of section 1 of loss.c, x = k ln2 + r, |r| <= ln2/2, and the
 * same Taylor polynomial of degree 12 for exp(r), evaluated by Estrin's
 * scheme (powers r^2, r^4, r^8; a shallow dependency graph, where Horner's
 * is a chain of 24 operations) as 1 + (r + r^2 q(r)): the terms past 1 + r
 * are small, so their rounding errors are too. Within 2.4 ulp of expl on
 * 2e7 random points (Horner: 2.6). No fused multiply-adds. The callers use
 * libm outside the range. n <= EXP_U vectors side by side; n is a constant
 * where inlined. */
#define EXP_U (ROWS_W == 8 ? 4 : 2)
ROWS_TARGET static inline __attribute__((always_inline)) void ROWS_NAME(exp_neg)(VD *x, int n)
{
  const double inv_ln2 = 1.4426950408889634074, shifter = 0x1.8p52,
               ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
  UNROLL
  for (int j = 0; j < n; j++) {
    VD t = x[j] * inv_ln2 + shifter;
    VD kd = t - shifter;
    VD r = (x[j] - kd * ln2_hi) - kd * ln2_lo;
    VD r2 = r * r, r4 = r2 * r2, r8 = r4 * r4;
    VD a0 = r * (1.0 / 6.0) + 0.5, a1 = r * (1.0 / 120.0) + 1.0 / 24.0,
       a2 = r * (1.0 / 5040.0) + 1.0 / 720.0, a3 = r * (1.0 / 362880.0) + 1.0 / 40320.0,
       a4 = r * (1.0 / 39916800.0) + 1.0 / 3628800.0;
    VD b0 = r2 * a1 + a0, b1 = r2 * a3 + a2, b2 = r2 * (1.0 / 479001600.0) + a4;
    VD q = (r4 * b1 + b0) + r8 * b2; /* sum_{i=2}^{12} r^(i-2) / i! */
    VD p = (r2 * q + r) + 1.0;
    VB bits = ((VB)t + 1023) << 52; /* k + 1023 into the exponent; the shifter's bits shift out */
    x[j] = p * (VD)bits;
  }
}

/* The sum of 8 lanes, always in the same order. */
static inline double ROWS_NAME(lane_sum)(const double *l)
{
  return ((l[0] + l[4]) + (l[2] + l[6])) + ((l[1] + l[5]) + (l[3] + l[7]));
}

/* Add b (if not NULL) to the row in place and scan it. Blocks of 8 in
 * vectors (y's lane sees NaN, for which no comparison is true, in the max
 * over c != y), then the lanes to memory and the last C % 8 elements one by
 * one into theirs: the same operations. */
ROWS_TARGET static void ROWS_NAME(scan_row)(size_t C, double *z, const double *b, int32_t y,
                                            row_scan *r)
{
  const VD zero = {0}, nanv = zero + NAN;
  VD best[NH], oth[NH], lo[NH], sq[NH], sum[NH];
  VL at[NH], k[NH];
  UNROLL
  for (int h = 0; h < NH; h++) {
    best[h] = oth[h] = zero - INFINITY;
    lo[h] = zero + INFINITY;
    sq[h] = sum[h] = zero;
    at[h] = (VL){0} - 1;
    UNROLL
    for (int l = 0; l < ROWS_W; l++) k[h][l] = h * ROWS_W + l; /* the lanes' next indices */
  }
  const size_t cy = (size_t)y - (size_t)y % LW, C8 = C - C % LW;
  for (size_t c = 0; c < C8; c += LW) {
    double *zc = z + c;
    UNROLL
    for (int h = 0; h < NH; h++) {
      VD x, xo;
      LOADV(x, zc + h * ROWS_W);
      if (b) {
        VD bh;
        LOADV(bh, b + c + h * ROWS_W);
        x += bh;
        STOREV(zc + h * ROWS_W, x);
      }
      xo = c == cy ? SELECTV(k[h] == (int64_t)y, nanv, x) : x;
      VL gt = x > best[h]; /* strict: a lane keeps its first largest */
      best[h] = SELECTV(gt, x, best[h]);
      at[h] = (gt & k[h]) | (~gt & at[h]);
      oth[h] = SELECTV(xo > oth[h], xo, oth[h]);
      lo[h] = SELECTV(x < lo[h], x, lo[h]);
      sq[h] += x * x;
      sum[h] += x;
      k[h] += LW;
    }
  }
  double bl[LW], ol[LW], ll[LW], ql[LW], sl[LW];
  int64_t al[LW];
  memcpy(bl, best, sizeof bl);
  memcpy(ol, oth, sizeof ol);
  memcpy(ll, lo, sizeof ll);
  memcpy(ql, sq, sizeof ql);
  memcpy(sl, sum, sizeof sl);
  memcpy(al, at, sizeof al);
  for (size_t c = C8; c < C; c++) { /* (selects, not branches: the data decide) */
    size_t l = c - C8;
    if (b) z[c] += b[c];
    double x = z[c];
    int gt = x > bl[l];
    al[l] = gt ? (int64_t)c : al[l];
    bl[l] = gt ? x : bl[l];
    ol[l] = c != (size_t)y && x > ol[l] ? x : ol[l];
    ll[l] = x < ll[l] ? x : ll[l];
    ql[l] += x * x;
    sl[l] += x;
  }
  double m = -INFINITY, o = -INFINITY, mn = INFINITY;
  for (size_t l = 0; l < LW; l++) {
    m = bl[l] > m ? bl[l] : m;
    o = ol[l] > o ? ol[l] : o;
    mn = ll[l] < mn ? ll[l] : mn;
  }
  int64_t a = INT64_MAX; /* the first largest: the smallest index of the lanes holding m */
  for (size_t l = 0; l < LW; l++) {
    int64_t i = bl[l] == m ? al[l] : INT64_MAX;
    a = i < a ? i : a;
  }
  r->a = (a < 0 || a == INT64_MAX || isnan(z[0])) ? 0 : (size_t)a;
  r->m = z[r->a];
  r->other = o;
  r->sq = ROWS_NAME(lane_sum)(ql);
  r->sum = ROWS_NAME(lane_sum)(sl);
  /* not fast for a NaN (which makes the sum NaN) or an infinity (then m or
   * mn is one), or when the smallest z_c - m (rounding is monotone: mn - m)
   * is below EXP_NEG_MIN; also, harmlessly, when the sum overflows both ways */
  r->fast = !isnan(r->sum) && mn - r->m >= EXP_NEG_MIN;
}

/* The cross-entropy of section 3 on a scanned row: m is its largest logit,
 * fast says exp_neg will do. next: the row to prefetch while the
 * exponentials are computed (or NULL). */
ROWS_TARGET static double ROWS_NAME(ce_row)(size_t C, double *z, int32_t y, double scale,
                                            double m, int fast, const double *next)
{
  const double zy = z[y];
  if (fast) { /* EXP_U vectors at a time, then one at a time, then the last
                 C % ROWS_W as the row's last vector, taken first (elementwise:
                 its overlap with the others gets the same values) */
    VD e[EXP_U], last = {0};
    const int tail = C % ROWS_W != 0;
    if (tail) {
      if (C >= ROWS_W)
        LOADV(last, z + C - ROWS_W);
      else { /* a short row, padded with m */
        double t[ROWS_W];
        for (size_t l = 0; l < ROWS_W; l++) t[l] = l < C ? z[l] : m;
        memcpy(&last, t, sizeof t);
      }
      last -= m;
      ROWS_NAME(exp_neg)(&last, 1);
    }
    size_t c = 0;
    for (; c + EXP_U * ROWS_W <= C; c += EXP_U * ROWS_W) {
      double *zc = z + c;
      if (next) /* the next row, while we compute */
        for (size_t l = 0; l < EXP_U * ROWS_W; l += LW) __builtin_prefetch(next + c + l, 1);
      UNROLL
      for (int j = 0; j < EXP_U; j++) {
        LOADV(e[j], zc + j * ROWS_W);
        e[j] -= m;
      }
      ROWS_NAME(exp_neg)(e, EXP_U);
      UNROLL
      for (int j = 0; j < EXP_U; j++) STOREV(zc + j * ROWS_W, e[j]);
    }
    for (; c + ROWS_W <= C; c += ROWS_W) {
      if (next) __builtin_prefetch(next + c, 1);
      LOADV(e[0], z + c);
      e[0] -= m;
      ROWS_NAME(exp_neg)(e, 1);
      STOREV(z + c, e[0]);
    }
    if (tail) {
      if (C >= ROWS_W)
        STOREV(z + C - ROWS_W, last);
      else
        memcpy(z, &last, C * sizeof(double));
    }
  } else {
    for (size_t c = 0; c < C; c++) z[c] = exp(z[c] - m);
  }
  /* S_o in lanes, y's lane adding +0.0 (which leaves its bits alone) */
  const VD zero = {0};
  const size_t cy = (size_t)y - (size_t)y % LW, C8 = C - C % LW;
  VD so[NH];
  UNROLL
  for (int h = 0; h < NH; h++) so[h] = zero;
  for (size_t c = 0; c < C8; c += LW) {
    UNROLL
    for (int h = 0; h < NH; h++) {
      VD e;
      LOADV(e, z + c + h * ROWS_W);
      if (c == cy) {
        VL idx = {0};
        UNROLL
        for (int l = 0; l < ROWS_W; l++) idx[l] = (int64_t)(c + (size_t)(h * ROWS_W + l));
        e = SELECTV(idx == (int64_t)y, zero, e);
      }
      so[h] += e;
    }
  }
  double sl[LW];
  memcpy(sl, so, sizeof sl);
  for (size_t c = C8; c < C; c++)
    if (c != (size_t)y) sl[c - C8] += z[c];
  double s_o = ROWS_NAME(lane_sum)(sl);
  double ey = z[y];
  double s = s_o + ey;
  double loss = (zy == m) ? log1p(s_o) : log(s) + (m - zy);
  double f = scale / s;
#pragma omp simd
  for (size_t c = 0; c < C; c++) z[c] *= f;
  z[y] = -s_o * f;
  return loss;
}

/* The squared loss of section 4: z - e_y, the squares summed in lanes. */
ROWS_TARGET static double ROWS_NAME(mse_row)(size_t C, double *z, int32_t y, double scale,
                                             const double *next)
{
  const size_t C8 = C - C % LW;
  VD acc[NH];
  UNROLL
  for (int h = 0; h < NH; h++) acc[h] = (VD){0};
  z[y] -= 1.0;
  for (size_t c = 0; c < C8; c += LW) {
    double *zc = z + c;
    if (next) __builtin_prefetch(next + c, 1);
    UNROLL
    for (int h = 0; h < NH; h++) {
      VD d;
      LOADV(d, zc + h * ROWS_W);
      acc[h] += d * d;
      d *= scale;
      STOREV(zc + h * ROWS_W, d);
    }
  }
  double al[LW];
  memcpy(al, acc, sizeof al);
  for (size_t c = C8; c < C; c++) {
    al[c - C8] += z[c] * z[c];
    z[c] *= scale;
  }
  return 0.5 * ROWS_NAME(lane_sum)(al);
}

#undef NH
#undef EXP_U
#undef VD
#undef VL
#undef VU
#undef VB
#undef UNROLL
#undef LOADV
#undef STOREV
#undef SELECTV
#undef ROWS_W
#undef ROWS_NAME
#undef ROWS_TARGET
