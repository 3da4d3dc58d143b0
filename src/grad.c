/* grad.c -- loss and gradient of the UFM objective: three products (whole or in column blocks) or a fused pass.
 *
 * Contents: 1. workspace  2. reductions  3. the fused small-C pass
 *           4. the three products  5. the products in column blocks
 *           6. evaluation
 *
 * Large C (the three products):
 *   Z      = W H (+ b 1^T)          dgemm (C x N)     then the loss pass turns Z into G
 *   grad_W = G H^T + lambda_W W     dgemm (C x p)     then a pass adding the decay
 *   grad_H = W^T G + lambda_H H     dgemm (p x N)     then a pass adding the decay
 * (G class-major, C x N, as Z: the layouts OpenBLAS does fastest). Where
 * its work space is small, grad_H comes first and grad_W's pieces run
 * beside grad_H's decay pass (gradW_beside_decay).
 * The decay passes also collect, row by row, the squared norms of state and
 * gradient and the largest entries, so nothing else has to read H again.
 * Partial sums are kept per row and added in row order: the result does not
 * depend on how OpenMP splits the rows.
 *
 * Small C (section 3): H is read once, in blocks of FB columns that stay in
 * cache: per block the logits, the loss and G (class-major, vectorised over
 * the samples), grad_H of those columns, and the block's share of grad_W.
 * The blocks are grouped in slots fixed by N alone; each slot owns a partial
 * grad_W, bias gradient and norms, and the slots are added in slot order:
 * the same bits whatever thread runs which slot.
 *
 * Thin shapes (section 5: C > 32, p <= 128, Z over 4 MB): the three
 * products block by block of columns, Z's block in cache, slots as above.
 * Small three-product shapes (C > 32, p <= 64, C p N from 2^17 to 2^20,
 * N >= 64) the same way in two blocks, one slot each, so that both
 * threads take the whole step (bk_halves).
 */
#include "grad.h"
#include "common.h"
#include "gemm.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_blas.h>
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <immintrin.h>
#define UFM_FUSED512 1
#endif
#ifdef _OPENMP
#include <omp.h>
#endif

/* ------------------------------------------------------------- 1. workspace */

/* The fused pass: blocks of FB columns (NV vectors of VL doubles), at most
 * NSLOT slots of at least 8 blocks (fewer slots, less to add up at the end). */
#define FB 32
#define VL 4 /* doubles per vector (section 3) */
#define NV (FB / VL)
#define NSLOT 8
/* the slots run in parallel above this much work: multiply-adds per product
 * (S, 3.2e5, gains ~20 % on 2 threads; a sweep's points run these on one
 * thread) plus, in the fused pass, FUSED_LOSS_MA per logit for the loss (its
 * exponential and the rest: C = p = 2, N = 40000, whose products are 1.6e5
 * multiply-adds, spent 0.85 ms a step in the loss on one thread) */
#define UFM_FUSED_PAR_MIN ((size_t)1 << 17)
#define FUSED_LOSS_MA 20
/* (since session 14 from 2^17, not 2^18: C = 12, p = 64, N = 240, 2.4e5,
 * 0.044 -> 0.025 ms a step on 2 threads) */
static int fused_parallel(size_t C, size_t p, size_t N)
{
  return C * (p + FUSED_LOSS_MA) * N >= UFM_FUSED_PAR_MIN;
}
/* per slot: partial grad_W (C p, or C p VL lane sums), bias gradient (C), the block's logits
 * then G (C x FB), the last, partial block of H padded to FB columns
 * (p x FB), and four vectors for the norms and largest entries */
/* grad_W in VL lanes per entry up to this C p (32 KiB of lanes) */
#define LANES_MAX 1024
static size_t slot_doubles(size_t C, size_t p)
{
  size_t n = C * p * (C * p <= LANES_MAX ? VL : 1) + C + C * FB + p * FB + 4 * VL;
  return (n + 7) / 8 * 8;
}

/* The column-block path (section 5): Z's block about BK_BYTES, at most
 * BK_SLOTS slots. */
#define BK_BYTES ((size_t)1 << 20)
#define BK_SLOTS 8

/* Small three-product steps (C p N from 2^16 to UFM_GEMM_ONE_CALL, N >= 64;
 * since session 15) are taken in two halves of the columns, fixed by N, so
 * that on 2 threads the whole step, not only grad_W and grad_H side by
 * side, runs on both: as the column blocks' two slots (bk_halves) or, for
 * the other ones, Z in two calls and the loss pass's two groups shared
 * (products_pass: 0.66-0.94 of the time on 2 threads at 19 shapes,
 * 0.98-1.01 on one, 1.03-1.07 at C p N = 80000-96000). */
static int small_halves(size_t C, size_t p, size_t N)
{
  const double cpn = (double)C * (double)p * (double)N;
  return N >= 64 && cpn >= (double)UFM_PAR_MIN && cpn < (double)UFM_GEMM_ONE_CALL;
}

/* Of those, C > UFM_GRAD_FUSED_CMAX, p <= 64 and C p N from
 * UFM_FUSED_PAR_MIN take the column blocks, two blocks, a slot each: 0.3-0.9
 * of the three products' time on 2 threads, 0.94-1.04 on one
 * (bench/README.md). With p above 64 the blocks lost on one thread
 * (1.03-1.11), and at C <= 32 or p >= 100 often on two as well; above 2^20
 * they gained little. The others take Z's two calls (products_pass). */
static int bk_halves(size_t C, size_t p, size_t N)
{
  return C > UFM_GRAD_FUSED_CMAX && p <= 64 && small_halves(C, p, N)
         && (double)C * (double)p * (double)N >= (double)UFM_FUSED_PAR_MIN;
}

/* Columns per block: for bk_halves, half of N rounded up to a multiple of 8
 * (two blocks); else about BK_BYTES of Z's block, a multiple of 8 between
 * 16 and 1024. */
static size_t bk_cols_of(size_t C, size_t p, size_t N)
{
  if (bk_halves(C, p, N)) return ((N + 1) / 2 + 7) / 8 * 8;
  size_t nb = BK_BYTES / sizeof(double) / (C ? C : 1) / 8 * 8;
  return nb < 16 ? 16 : nb > 1024 ? 1024 : nb;
}

int ufm_grad_blocks_auto(size_t C, size_t p, size_t N)
{
  return (C > UFM_GRAD_FUSED_CMAX && p <= 128
          && (double)C * (double)N * sizeof(double) > (double)(4u << 20))
         || bk_halves(C, p, N);
}

/* One slot's layout: grad_W (C p), the bias gradient (C), per row of H the
 * sums of squares of H and of grad_H (2 p), the largest entries and a NaN
 * flag (4), Z's block (C bk_cols), the loss pass's rows (UFM_LOSS_BLOCK C). */
static size_t bk_slot_len(size_t C, size_t p, size_t nb)
{
  return (C * p + C + 2 * p + 4 + C * nb + UFM_LOSS_BLOCK * C + 7) / 8 * 8;
}

/* Slots for N columns in blocks of nb: one a block, at most BK_SLOTS, at least 1. */
static size_t bk_nslot_of(size_t N, size_t nb)
{
  const size_t nblk = (N + nb - 1) / nb;
  return nblk < 1 ? 1 : nblk < BK_SLOTS ? nblk : BK_SLOTS;
}

double ufm_grad_logits_doubles(size_t C, size_t p, size_t N)
{
  if (!ufm_grad_blocks_auto(C, p, N)) return (double)C * (double)N;
  const size_t nb = bk_cols_of(C, p, N);
  return (double)bk_nslot_of(N, nb) * (double)bk_slot_len(C, p, nb);
}

static int bk_alloc(ufm_grad_ws *ws)
{
  const size_t C = ws->C, p = ws->p, N = ws->N, nb = bk_cols_of(C, p, N);
  ws->bk_cols = nb;
  ws->bk_nslot = bk_nslot_of(N, nb);
  ws->bk_len = bk_slot_len(C, p, nb);
  ws->bk = aligned_alloc(64, ws->bk_nslot * ws->bk_len * sizeof(double));
  return ws->bk != NULL;
}

ufm_grad_ws *ufm_grad_ws_alloc(size_t C, size_t p, size_t N)
{
  ufm_grad_ws *ws = ufm_calloc(1, sizeof *ws);
  ws->C = C;
  ws->p = p;
  ws->N = N;
  /* the column-block path keeps no C x N matrix: with it (chosen by the
   * shape), its slots instead of G; the other paths allocate either if a
   * test forces them (ufm_grad_eval) */
  const int blocks = ufm_grad_blocks_auto(C, p, N);
  ws->G = blocks ? NULL : gsl_matrix_alloc(C, N);
  ws->gW = gsl_matrix_alloc(C, p);
  ws->gH = gsl_matrix_alloc(p, N);
  ws->gb = gsl_vector_calloc(C);
  if ((!blocks && !ws->G) || (blocks && !bk_alloc(ws)) || !ws->gW || !ws->gH || !ws->gb) {
    ufm_grad_ws_free(ws);
    return NULL;
  }
  ws->loss_i = ufm_malloc(N * sizeof(double));
  ws->margin = ufm_malloc(N * sizeof(double));
  ws->pred = ufm_malloc(N * sizeof(int32_t));
  ws->zstat = ufm_malloc(2 * N * sizeof(double));
  ws->rows = ufm_malloc(2 * (p + C) * sizeof(double));
  ws->gbpart = ufm_malloc(ufm_loss_groups(N) * C * sizeof(double));
  ws->lrows = ufm_malloc(ufm_loss_rows_len(N, C) * sizeof(double));
  /* grad_W's pieces need work space of their own to run beside the decay
   * pass (section 4): allowed up to p N / 8 doubles (M: 2.9 MB; not at L,
   * whose pieces would take 24 MB and which then keeps the old order) */
  const size_t nk = ufm_gemm_long_pieces(C, p, N, p * N);
  if (nk >= 4 && (double)C * (double)p * (double)N >= (double)(1 << 20)
      && (nk - 1) * C * p <= p * N / 8) {
    ws->gw_nk = nk;
    ws->gwork = ufm_malloc((nk - 1) * C * p * sizeof(double));
  }
  if (C <= UFM_GRAD_FUSED_CMAX && N > 0 && ufm_simd_ok()) {
    size_t nblk = (N + FB - 1) / FB;
    /* at least 8 blocks a slot; below 16 blocks 2 slots where they run in
     * parallel (fused_pass) and there are 4 blocks or more (C = 16, p = 64,
     * N = 256: 0.061 -> 0.048 ms on 2 threads, and 0.084 before the copies
     * of fused_pack; C = 10, p = 64, N = 200: 0.042 -> 0.027). Slots of 4
     * blocks throughout made S slower (0.071 -> 0.082), and 2 slots run in
     * turn cost 2-5 %, hence the work test. */
    ws->nslot = nblk >= 16 ? (nblk / 8 > NSLOT ? NSLOT : nblk / 8)
                           : nblk >= 4 && fused_parallel(C, p, N) ? 2 : 1;
    ws->slot_len = slot_doubles(C, p);
    ws->fused512 = ufm_simd512_ok();
    size_t bytes = ws->nslot * ws->slot_len * sizeof(double);
    ws->slots = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!ws->slots) {
      ufm_grad_ws_free(ws);
      return NULL;
    }
  }
  return ws;
}

void ufm_grad_ws_free(ufm_grad_ws *ws)
{
  if (!ws) return;
  if (ws->G) gsl_matrix_free(ws->G);
  if (ws->gW) gsl_matrix_free(ws->gW);
  if (ws->gH) gsl_matrix_free(ws->gH);
  if (ws->gb) gsl_vector_free(ws->gb);
  free(ws->loss_i);
  free(ws->margin);
  free(ws->pred);
  free(ws->zstat);
  free(ws->rows);
  free(ws->gbpart);
  free(ws->lrows);
  free(ws->gwork);
  free(ws->slots);
  free(ws->bk);
  free(ws);
}

/* ------------------------------------------------------------ 2. reductions */

double ufm_sumsq(const double *x, size_t n)
{
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t k = 0;
  for (; k + 4 <= n; k += 4) {
    s0 += x[k] * x[k];
    s1 += x[k + 1] * x[k + 1];
    s2 += x[k + 2] * x[k + 2];
    s3 += x[k + 3] * x[k + 3];
  }
  for (; k < n; k++) s0 += x[k] * x[k];
  return (s0 + s1) + (s2 + s3);
}

static double maxabs(const double *x, size_t n)
{
  double m = 0.0;
  for (size_t k = 0; k < n; k++) {
    double a = fabs(x[k]);
    if (!(a <= m)) m = a; /* NaN propagates */
  }
  return m;
}

/* One row of decay_pass; `mode` is a constant where it is inlined: 0 only
 * the sums, 1 write the decayed gradient, 2 write the next state. Lane j
 * takes the entries k = j mod 4, as ufm_sumsq does, whether the loop runs
 * in a vector or not: the same bits either way (no contraction). */
static inline __attribute__((always_inline)) void
decay_row_body(size_t L, const double *xr, double *gr, double lambda, double lr, int mode,
               double *st)
{
  double sx[4] = {0, 0, 0, 0}, sg[4] = {0, 0, 0, 0}, mx[4] = {0, 0, 0, 0}, mg[4] = {0, 0, 0, 0};
  size_t k = 0;
  for (; k + 4 <= L; k += 4) {
#pragma omp simd
    for (int j = 0; j < 4; j++) {
      double xv = xr[k + j], gv = gr[k + j];
      if (mode) gv = gv + lambda * xv;
      if (mode == 2) gr[k + j] = xv - lr * gv; /* ufm_optim_iterate's arithmetic */
      else if (mode == 1) gr[k + j] = gv;
      sx[j] += xv * xv;
      sg[j] += gv * gv;
      double a = fabs(xv), b = fabs(gv);
      mx[j] = a <= mx[j] ? mx[j] : a; /* a NaN is taken */
      mg[j] = b <= mg[j] ? mg[j] : b;
    }
  }
  for (; k < L; k++) {
    double xv = xr[k], gv = gr[k];
    if (mode) gv = gv + lambda * xv;
    if (mode == 2) gr[k] = xv - lr * gv;
    else if (mode == 1) gr[k] = gv;
    sx[0] += xv * xv;
    sg[0] += gv * gv;
    double a = fabs(xv), b = fabs(gv);
    mx[0] = a <= mx[0] ? mx[0] : a;
    mg[0] = b <= mg[0] ? mg[0] : b;
  }
  st[0] = (sx[0] + sx[1]) + (sx[2] + sx[3]);
  st[1] = (sg[0] + sg[1]) + (sg[2] + sg[3]);
  int nan_seen = 0;
  double a = 0.0, b = 0.0;
  for (int j = 0; j < 4; j++) {
    if (isnan(mx[j]) || isnan(mg[j])) nan_seen = 1;
    if (mx[j] > a) a = mx[j];
    if (mg[j] > b) b = mg[j];
  }
  st[2] = a;
  st[3] = b;
  st[4] = nan_seen;
}

#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
static void decay_row(size_t L, const double *xr, double *gr, double lambda, double lr, double *st)
{
  /* lambda = 0 adds nothing (and writes nothing) unless a step is taken */
  if (lr > 0.0) decay_row_body(L, xr, gr, lambda, lr, 2, st);
  else if (lambda != 0.0) decay_row_body(L, xr, gr, lambda, 0.0, 1, st);
  else decay_row_body(L, xr, gr, 0.0, 0.0, 0, st);
}

/* Row r of decay_pass: its sums into xs[r], gs[r], its maxima and NaN flag
 * into the caller's running ones (gradW_beside_decay takes rows the same way). */
static inline void decay_one(size_t r, size_t L, const double *x, double *g, double lambda,
                             double lr, double *xs, double *gs, double *xm, double *gm, int *nan_seen)
{
  double st[5];
  decay_row(L, x + r * L, g + r * L, lambda, lr, st);
  xs[r] = st[0];
  gs[r] = st[1];
  if (st[2] > *xm) *xm = st[2];
  if (st[3] > *gm) *gm = st[3];
  if (st[4] != 0.0) *nan_seen = 1;
}

/* decay_pass's rows in parallel from this many entries (2^16 until session
 * 15: a small three-product step's pass, 16384 entries at p = 64, N = 256,
 * ran on one thread) */
#define UFM_DECAY_PAR_MIN ((size_t)1 << 12)

/* g <- g + lambda x for an R x L row-major block; per row: ||x_r||^2 into
 * xs[r], ||g_r||^2 into gs[r] (the order of ufm_sumsq: four interleaved
 * partial sums); returns through *xmax, *gmax the largest |entry| (NaN if
 * any entry is NaN). One pass over each row. With lr > 0, g <- x - lr (g +
 * lambda x) instead: the next state of a gradient step, the norms and
 * maxima still those of x and of the gradient. */
static void decay_pass(size_t R, size_t L, const double *x, double *g, double lambda, double *xs,
                       double *gs, double *xmax, double *gmax, double lr)
{
  double xm = 0.0, gm = 0.0;
  int nan_seen = 0;
#pragma omp parallel for schedule(static) reduction(max : xm, gm) reduction(| : nan_seen) \
    if (R * L >= UFM_DECAY_PAR_MIN)
  for (size_t r = 0; r < R; r++) decay_one(r, L, x, g, lambda, lr, xs, gs, &xm, &gm, &nan_seen);
  *xmax = nan_seen ? NAN : xm;
  *gmax = nan_seen ? NAN : gm;
}

static double sum_in_order(const double *x, size_t n)
{
  double s = 0.0;
  for (size_t k = 0; k < n; k++) s += x[k];
  return s;
}

/* --------------------------------------------------- 3. the fused small-C pass */

UFM_SIMD_BEGIN

/* VL doubles, for GCC's and Clang's vector extensions: the compiler maps
 * them onto the target's registers and keeps the accumulators below in
 * registers, which plain loops at -O2 do not. Every lane does exactly the
 * scalar arithmetic written: the bits do not depend on the vector width. */
typedef double vd __attribute__((vector_size(8 * VL)));
typedef int64_t vl __attribute__((vector_size(8 * VL)));

static inline vd ldv(const double *x)
{
  vd v;
  memcpy(&v, x, sizeof v);
  return v;
}

static inline void stv(double *x, vd v) { memcpy(x, &v, sizeof v); }

/* a b + c, rounded once where the target has FMA (x86-64: always, the
 * kernels run only on CPUs with it) */
static inline vd fmav(vd a, vd b, vd c)
{
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && VL == 4
  return __builtin_ia32_vfmaddpd256(a, b, c);
#else
  return a * b + c;
#endif
}

static inline vd bcast(double w)
{
#if VL == 4
  return (vd){w, w, w, w};
#else
  return (vd){0} + w;
#endif
}

/* lane-wise max(a, b) of non-negative numbers (a NaN is dropped here: the
 * callers see NaN in the sums of squares instead) */
static inline vd maxv(vd a, vd b)
{
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && VL == 4
  return __builtin_ia32_maxpd256(a, b);
#else
  vl gt = a > b;
  return (vd)(((vl)a & gt) | ((vl)b & ~gt));
#endif
}

static inline vd absv(vd x) { return (vd)((vl)x & INT64_MAX); }

/* The lanes of v, added in a fixed order. */
static inline double hsumv(vd v)
{
  double s = v[0];
  for (int l = 1; l < VL; l++) s += v[l];
  return s;
}

#define FOR_NV _Pragma("GCC unroll 16") for (int j = 0; j < NV; j++)

/* Logits of one block: zb[c][l] = sum_k W[c][k] hb[k][l] + b[c]. */
static void fused_logits(size_t C, size_t p, const double *W, const double *hb, size_t ldh,
                         const double *b, double *zb)
{
  for (size_t c = 0; c < C; c++) {
    const double *wc = W + c * p;
    vd a[NV];
    FOR_NV a[j] = (vd){0};
    for (size_t k = 0; k < p; k++) {
      const double *h = hb + k * ldh;
      vd w = bcast(wc[k]);
      FOR_NV a[j] = fmav(w, ldv(h + VL * j), a[j]);
    }
    if (b) FOR_NV a[j] += b[c];
    FOR_NV stv(zb + c * FB + VL * j, a[j]);
  }
}

/* grad_H of one block: out[k][l] = sum_c W[c][k] G[c][l] + lambda hb[k][l],
 * stored for l < len; per lane, the squared norms and largest entries of
 * hb and of grad_H accumulate in st[0..4 VL). With lr > 0 out gets the next
 * state hb - lr grad_H instead (grad.h, fold_lr; no contraction: the bits
 * of ufm_optim_iterate's update). */
static void fused_gradH(size_t C, size_t p, const double *W, const double *G, const double *hb,
                        size_t ldh, double lambda, double lr, double *out, size_t ldo, size_t len,
                        double *st)
{
  vd hs = ldv(st), gs = ldv(st + VL), hm = ldv(st + 2 * VL), gm = ldv(st + 3 * VL);
  for (size_t k = 0; k < p; k++) {
    vd a[NV];
    FOR_NV a[j] = (vd){0};
    for (size_t c = 0; c < C; c++) {
      vd w = bcast(W[c * p + k]);
      const double *g = G + c * FB;
      FOR_NV a[j] = fmav(w, ldv(g + VL * j), a[j]);
    }
    const double *h = hb + k * ldh;
    vd qx = {0}, qg = {0}, mx = {0}, mg = {0};
    FOR_NV {
      vd x = ldv(h + VL * j);
      if (lambda != 0.0) a[j] = fmav(bcast(lambda), x, a[j]);
      qx = fmav(x, x, qx);
      qg = fmav(a[j], a[j], qg);
      mx = maxv(mx, absv(x));
      mg = maxv(mg, absv(a[j]));
    }
    hs += qx;
    gs += qg;
    hm = maxv(hm, mx);
    gm = maxv(gm, mg);
    if (lr > 0.0) FOR_NV a[j] = ldv(h + VL * j) - bcast(lr) * a[j];
    if (len == FB) FOR_NV stv(out + k * ldo + VL * j, a[j]);
    else {
      double tmp[FB];
      FOR_NV stv(tmp + VL * j, a[j]);
      memcpy(out + k * ldo, tmp, len * sizeof(double));
    }
  }
  stv(st, hs);
  stv(st + VL, gs);
  stv(st + 2 * VL, hm);
  stv(st + 3 * VL, gm);
}

/* This block's share of grad_W and of the bias gradient:
 * gW[c][k] += sum_l G[c][l] hb[k][l], gb[c] += sum_l G[c][l]. With lanes
 * (small C p, the sums then stay in L1), gW holds VL partial sums per entry
 * (gW[(c p + k) VL + lane]), added up once per slot by fused_lanes_sum;
 * otherwise each block's sum is added up at once. */
static void fused_gradW(size_t C, size_t p, const double *G, const double *hb, size_t ldh,
                        double *gW, double *gb, int lanes)
{
  for (size_t c = 0; c < C; c++) {
    const double *g = G + c * FB;
    vd gv[NV];
    FOR_NV gv[j] = ldv(g + VL * j);
    for (size_t k = 0; k < p; k++) {
      const double *h = hb + k * ldh;
      vd t = gv[0] * ldv(h);
      _Pragma("GCC unroll 16") for (int j = 1; j < NV; j++) t = fmav(gv[j], ldv(h + VL * j), t);
      if (lanes) {
        double *q = gW + (c * p + k) * VL;
        stv(q, ldv(q) + t);
      } else
        gW[c * p + k] += hsumv(t);
    }
    vd t = gv[0];
    for (int j = 1; j < NV; j++) t += gv[j];
    gb[c] += hsumv(t);
  }
}

/* gW[e] = the sum of the VL lanes of entry e, e < n, in place. */
static void fused_lanes_sum(double *gW, size_t n)
{
  for (size_t e = 0; e < n; e++) gW[e] = hsumv(ldv(gW + e * VL));
}

UFM_SIMD_END

/* The same three kernels with AVX-512 registers, 8 doubles each, doing
 * per column (lane) exactly the arithmetic of the ones above: each logit
 * and each entry of grad_H is the same chain of fused multiply-adds in
 * the same order (four classes, or four rows of grad_H, at a time: up to
 * sixteen independent chains, sums512); the norms and maxima of a row of
 * grad_H are taken on its halves of 4 doubles in the order above; grad_W's
 * chains (VL = 4 lanes per entry) run for two classes at a time, one in
 * each half of a register, against H's row broadcast to both (an odd
 * last class: fused_gradW itself). So the bits are those of the AVX2
 * kernels. On a Zen 5 (family 26, 512-bit units), both alternated in one
 * process, paired medians: S (C = 10, p = 64, N = 500) 0.63-0.64 of the
 * AVX2 step (0.0375 -> 0.0235 ms), 16:64:4096 0.74, 7:45:707 0.72,
 * 12:64:240 0.75, 2:64:2000 0.86 (session 17). */
#ifdef UFM_FUSED512
#define T512 __attribute__((target("avx512f,avx512vl,avx2,fma")))

/* a[r][q] = sum_i s[i ds + r dr] x_i[8q .. 8q + 8), x_i = x + i ldx, for
 * r < R <= 4: R independent sets of 4 chains of fused multiply-adds, each
 * over i in order (a lane's chain: the AVX2 kernels' for its column) */
T512 static inline __attribute__((always_inline)) void sums512(int R, size_t n, const double *x,
                                                               size_t ldx, const double *s,
                                                               size_t ds, size_t dr,
                                                               __m512d a[4][4])
{
  _Pragma("GCC unroll 16") for (int r = 0; r < R; r++)
    _Pragma("GCC unroll 16") for (int q = 0; q < 4; q++) a[r][q] = _mm512_setzero_pd();
  for (size_t i = 0; i < n; i++) {
    __m512d v[4];
    _Pragma("GCC unroll 16") for (int q = 0; q < 4; q++) v[q] = _mm512_loadu_pd(x + i * ldx + 8 * q);
    _Pragma("GCC unroll 16") for (int r = 0; r < R; r++) {
      const __m512d u = _mm512_set1_pd(s[i * ds + (size_t)r * dr]);
      _Pragma("GCC unroll 16") for (int q = 0; q < 4; q++) a[r][q] = _mm512_fmadd_pd(u, v[q], a[r][q]);
    }
  }
}

/* logits of classes c .. c + R - 1: over k, W[c + r][k] times H's row k */
T512 static inline __attribute__((always_inline)) void logits_rows512(int R, size_t c, size_t p,
                                                                      const double *W,
                                                                      const double *hb, size_t ldh,
                                                                      const double *b, double *zb)
{
  __m512d a[4][4];
  sums512(R, p, hb, ldh, W + c * p, 1, p, a);
  _Pragma("GCC unroll 16") for (int r = 0; r < R; r++)
    _Pragma("GCC unroll 16") for (int q = 0; q < 4; q++) {
      if (b) a[r][q] = _mm512_add_pd(a[r][q], _mm512_set1_pd(b[c + (size_t)r]));
      _mm512_storeu_pd(zb + (c + (size_t)r) * FB + 8 * q, a[r][q]);
    }
}

T512 static void fused_logits512(size_t C, size_t p, const double *W, const double *hb,
                                 size_t ldh, const double *b, double *zb)
{
  size_t c = 0;
  for (; c + 4 <= C; c += 4) logits_rows512(4, c, p, W, hb, ldh, b, zb);
  if (C - c >= 2) {
    logits_rows512(2, c, p, W, hb, ldh, b, zb);
    c += 2;
  }
  if (c < C) logits_rows512(1, c, p, W, hb, ldh, b, zb);
}

/* fused_gradH's finish of row k from its sums a (4 x 8 columns): the
 * decay, the norms and maxima on halves j = 0..7 in order, the step, the
 * store; st4 = {hs, gs, hm, gm} */
T512 static inline void gradH_row512(const __m512d *a, const double *h, double lambda, double lr,
                                     double *out, size_t len, __m256d *st4)
{
  const __m256d lam = _mm256_set1_pd(lambda), lrv = _mm256_set1_pd(lr);
  const __m256d nosign = _mm256_castsi256_pd(_mm256_set1_epi64x(INT64_MAX));
  __m256d qx = _mm256_setzero_pd(), qg = qx, mx = qx, mg = qx, r[NV];
  _Pragma("GCC unroll 16") for (int j = 0; j < NV; j++) {
    __m256d g = j % 2 ? _mm512_extractf64x4_pd(a[j / 2], 1) : _mm512_castpd512_pd256(a[j / 2]);
    const __m256d x = _mm256_loadu_pd(h + VL * j);
    if (lambda != 0.0) g = _mm256_fmadd_pd(lam, x, g);
    qx = _mm256_fmadd_pd(x, x, qx);
    qg = _mm256_fmadd_pd(g, g, qg);
    mx = _mm256_max_pd(mx, _mm256_and_pd(x, nosign));
    mg = _mm256_max_pd(mg, _mm256_and_pd(g, nosign));
    r[j] = lr > 0.0 ? _mm256_sub_pd(x, _mm256_mul_pd(lrv, g)) : g;
  }
  st4[0] = _mm256_add_pd(st4[0], qx);
  st4[1] = _mm256_add_pd(st4[1], qg);
  st4[2] = _mm256_max_pd(st4[2], mx);
  st4[3] = _mm256_max_pd(st4[3], mg);
  if (len == FB) {
    _Pragma("GCC unroll 16") for (int j = 0; j < NV; j++) _mm256_storeu_pd(out + VL * j, r[j]);
  } else {
    double tmp[FB];
    _Pragma("GCC unroll 16") for (int j = 0; j < NV; j++) _mm256_storeu_pd(tmp + VL * j, r[j]);
    memcpy(out, tmp, len * sizeof(double));
  }
}

/* rows k .. k + R - 1 of one block of grad_H: over c, W[c][k + r] times
 * G's row c; each row finished by gradH_row512 */
T512 static inline __attribute__((always_inline)) void gradH_rows512(
    int R, size_t C, size_t p, size_t k, const double *W, const double *G, const double *hb,
    size_t ldh, double lambda, double lr, double *out, size_t ldo, size_t len, __m256d *st4)
{
  __m512d a[4][4];
  sums512(R, C, G, FB, W + k, p, 1, a);
  _Pragma("GCC unroll 16") for (int r = 0; r < R; r++)
    gradH_row512(a[r], hb + (k + (size_t)r) * ldh, lambda, lr, out + (k + (size_t)r) * ldo, len, st4);
}

T512 static void fused_gradH512(size_t C, size_t p, const double *W, const double *G,
                                const double *hb, size_t ldh, double lambda, double lr, double *out,
                                size_t ldo, size_t len, double *st)
{
  __m256d st4[4];
  _Pragma("GCC unroll 16") for (int i = 0; i < 4; i++) st4[i] = _mm256_loadu_pd(st + VL * i);
  size_t k = 0;
  for (; k + 4 <= p; k += 4) gradH_rows512(4, C, p, k, W, G, hb, ldh, lambda, lr, out, ldo, len, st4);
  if (p - k >= 2) {
    gradH_rows512(2, C, p, k, W, G, hb, ldh, lambda, lr, out, ldo, len, st4);
    k += 2;
  }
  if (k < p) gradH_rows512(1, C, p, k, W, G, hb, ldh, lambda, lr, out, ldo, len, st4);
  _Pragma("GCC unroll 16") for (int i = 0; i < 4; i++) _mm256_storeu_pd(st + VL * i, st4[i]);
}

/* the 4 lanes of v added in hsumv's order */
T512 static inline double hsum256(__m256d v)
{
  double t[VL];
  _mm256_storeu_pd(t, v);
  double s = t[0];
  for (int l = 1; l < VL; l++) s += t[l];
  return s;
}

T512 static void fused_gradW512(size_t C, size_t p, const double *G, const double *hb, size_t ldh,
                                double *gW, double *gb, int lanes)
{
  size_t c = 0;
  for (; c + 2 <= C; c += 2) { /* classes c and c + 1 in the halves */
    const double *g0 = G + c * FB, *g1 = g0 + FB;
    __m512d gv[NV];
    _Pragma("GCC unroll 16") for (int j = 0; j < NV; j++)
      gv[j] = _mm512_insertf64x4(_mm512_castpd256_pd512(_mm256_loadu_pd(g0 + VL * j)),
                                 _mm256_loadu_pd(g1 + VL * j), 1);
    for (size_t k = 0; k < p; k++) {
      const double *h = hb + k * ldh;
      __m512d t = _mm512_mul_pd(gv[0], _mm512_broadcast_f64x4(_mm256_loadu_pd(h)));
      _Pragma("GCC unroll 16") for (int j = 1; j < NV; j++)
        t = _mm512_fmadd_pd(gv[j], _mm512_broadcast_f64x4(_mm256_loadu_pd(h + VL * j)), t);
      if (lanes) {
        double *q0 = gW + (c * p + k) * VL, *q1 = gW + ((c + 1) * p + k) * VL;
        _mm256_storeu_pd(q0, _mm256_add_pd(_mm256_loadu_pd(q0), _mm512_castpd512_pd256(t)));
        _mm256_storeu_pd(q1, _mm256_add_pd(_mm256_loadu_pd(q1), _mm512_extractf64x4_pd(t, 1)));
      } else {
        gW[c * p + k] += hsum256(_mm512_castpd512_pd256(t));
        gW[(c + 1) * p + k] += hsum256(_mm512_extractf64x4_pd(t, 1));
      }
    }
    __m512d t = gv[0];
    _Pragma("GCC unroll 16") for (int j = 1; j < NV; j++) t = _mm512_add_pd(t, gv[j]);
    gb[c] += hsum256(_mm512_castpd512_pd256(t));
    gb[c + 1] += hsum256(_mm512_extractf64x4_pd(t, 1));
  }
  if (c < C) /* the last class alone: the AVX2 kernel's own chains */
    fused_gradW(1, p, G + c * FB, hb, ldh, gW + c * p * (lanes ? VL : 1), gb + c, lanes);
}
#undef T512
#endif

/* Whether the fused pass copies each block of H into a buffer of its own
 * (rows FB apart) before its three kernels read it. Where N is a multiple
 * of 128, H's rows N doubles apart fall into a few sets of the caches and
 * evict each other between the kernels: at C = 16, p = 64 the step took
 * 0.42-0.68 of its time with the copy at every such N tried (256 to 8192),
 * 0.79-1.03 at other multiples of 32 and 1.01 at N = 10^4. With C = 2 the
 * copy costs about as much as it saves (0.83-1.28). Only where the rows
 * are read: the same arithmetic, so the same bits. */
static int fused_pack(size_t C, size_t N) { return N % 128 == 0 && C >= 4; }

/* One slot: blocks kb0 .. kb1-1 of the columns. */
static void fused_slot(const ufm_problem *pb, const ufm_model *m, ufm_grad_ws *ws, double *slot,
                       size_t kb0, size_t kb1, double lr)
{
  const size_t C = m->C, p = m->p, N = m->N;
  const int lanes = C * p <= LANES_MAX;
  double *gW = slot, *gb = gW + C * p * (lanes ? VL : 1), *zb = gb + C, *hpad = zb + C * FB,
         *st = hpad + p * FB;
  memset(gW, 0, (C * p * (lanes ? VL : 1) + C) * sizeof(double));
  memset(st, 0, 4 * VL * sizeof(double));
  const double *b = m->bias ? m->b->data : NULL, *H = m->H->data, *W = m->W->data;
  const double scale = 1.0 / (double)N;
  const int pack = fused_pack(C, N);
  for (size_t kb = kb0; kb < kb1; kb++) {
    size_t i0 = kb * FB, len = N - i0 < FB ? N - i0 : FB;
    const double *hb = H + i0;
    size_t ldh = N;
    if (len < FB || pack) { /* the last block is padded with zero columns */
      for (size_t k = 0; k < p; k++) {
        memcpy(hpad + k * FB, H + k * N + i0, len * sizeof(double));
        memset(hpad + k * FB + len, 0, (FB - len) * sizeof(double));
      }
      hb = hpad;
      ldh = FB;
    }
#ifdef UFM_FUSED512
    if (ws->fused512)
      fused_logits512(C, p, W, hb, ldh, b, zb);
    else
#endif
      fused_logits(C, p, W, hb, ldh, b, zb);
    ufm_loss_block_stats(C, len, FB, zb, m->labels + i0, ws->pred + i0, ws->margin + i0,
                         ws->zstat + 2 * i0);
    pb->loss->block(C, len, FB, zb, m->labels + i0, scale, ws->loss_i + i0);
    for (size_t c = 0; c < C; c++) { /* G too, as the three-product path leaves it */
      double *g = zb + c * FB;
      memcpy(ws->G->data + c * N + i0, g, len * sizeof(double));
      for (size_t l = len; l < FB; l++) g[l] = 0.0;
    }
#ifdef UFM_FUSED512
    if (ws->fused512) {
      fused_gradH512(C, p, W, zb, hb, ldh, pb->lambda_H, lr, ws->gH->data + i0, N, len, st);
      fused_gradW512(C, p, zb, hb, ldh, gW, gb, lanes);
      continue;
    }
#endif
    fused_gradH(C, p, W, zb, hb, ldh, pb->lambda_H, lr, ws->gH->data + i0, N, len, st);
    fused_gradW(C, p, zb, hb, ldh, gW, gb, lanes);
  }
  if (lanes) fused_lanes_sum(gW, C * p);
}

/* Loss, grad_H and the G H^T, G 1 parts of grad_W, grad_b in one pass;
 * the norms of H and grad_H into ws->normH2, *gh2 and the largest entries. */
static void fused_pass(const ufm_problem *pb, const ufm_model *m, ufm_grad_ws *ws, double *gh2,
                       double *hmax, double *ghmax)
{
  const size_t C = m->C, p = m->p, N = m->N;
  const size_t nblk = (N + FB - 1) / FB, ns = ws->nslot;
  /* gd's step of H folded in (grad.h); ngd's lr / loss waits for the loss */
  const double lr = ws->fold_ngd ? 0.0 : ws->fold_lr;
#pragma omp parallel for schedule(dynamic, 1) if (fused_parallel(C, p, N))
  for (size_t s = 0; s < ns; s++)
    fused_slot(pb, m, ws, ws->slots + s * ws->slot_len, s * nblk / ns, (s + 1) * nblk / ns, lr);
  ws->h_next = lr > 0.0;
  /* the slots in order */
  double *gW = ws->gW->data, *gb = ws->gb->data;
  memcpy(gW, ws->slots, C * p * sizeof(double));
  const size_t gbo = C * p * (C * p <= LANES_MAX ? VL : 1); /* where a slot's gb is */
  memcpy(gb, ws->slots + gbo, C * sizeof(double));
  double st[4 * VL];
  for (size_t s = 0; s < ns; s++) {
    const double *sl = ws->slots + s * ws->slot_len, *ss = sl + gbo + C + C * FB + p * FB;
    if (s == 0) {
      memcpy(st, ss, sizeof st);
      continue;
    }
    for (size_t k = 0; k < C * p; k++) gW[k] += sl[k];
    for (size_t c = 0; c < C; c++) gb[c] += sl[gbo + c];
    for (size_t l = 0; l < 2 * VL; l++) st[l] += ss[l];
    for (size_t l = 2 * VL; l < 4 * VL; l++)
      if (ss[l] > st[l]) st[l] = ss[l];
  }
  /* the lanes, in order; a NaN entry shows in the sums of squares */
  double hs = 0.0, gs = 0.0, a = 0.0, g = 0.0;
  for (size_t l = 0; l < VL; l++) {
    hs += st[l];
    gs += st[VL + l];
    if (st[2 * VL + l] > a) a = st[2 * VL + l];
    if (st[3 * VL + l] > g) g = st[3 * VL + l];
  }
  ws->normH2 = hs;
  *gh2 = gs;
  if (isnan(hs)) a = NAN;
  if (isnan(gs)) g = NAN;
  *hmax = a;
  *ghmax = g;
}

/* -------------------------------------------------------- 4. the three products */

/* grad_W = G H^T in ufm_gemm_long's pieces (into ws->gwork) and the decay
 * pass over grad_H's rows (decay_pass's arithmetic, row r's sums into
 * xs[r], gs[r]) as one list of tasks the threads take in turn, a piece then
 * DECAY_PER_PIECE chunks of DECAY_ROWS rows: while one thread runs a
 * product, bound by arithmetic, the other streams rows of H, bound by
 * memory, instead of all threads doing the one and then the other (M: the
 * two took 14.1 ms instead of 14.9). Then grad_W's pieces are added in
 * order. The same pieces, rows and order as ufm_gemm_long and decay_pass:
 * the same bits. */
#define DECAY_ROWS 32
#define DECAY_PER_PIECE 2
static void gradW_beside_decay(const ufm_model *m, ufm_grad_ws *ws, double lambda, double lr,
                               double *xs, double *gs, double *xmax, double *gmax)
{
  const size_t C = m->C, p = m->p, N = m->N, nk = ws->gw_nk, per = DECAY_PER_PIECE;
  const size_t nrc = (p + DECAY_ROWS - 1) / DECAY_ROWS;
  const size_t T = nk * (1 + per) + (nrc > nk * per ? nrc - nk * per : 0);
  double xm = 0.0, gm = 0.0;
  int nan_seen = 0;
#pragma omp parallel reduction(max : xm, gm) reduction(| : nan_seen)
  {
#pragma omp for schedule(dynamic, 1)
    for (size_t t = 0; t < T; t++) {
      const size_t grp = t / (1 + per), pos = t % (1 + per);
      if (grp < nk && pos == 0) {
        ufm_gemm_long_piece(CblasNoTrans, CblasTrans, ws->G, m->H, ws->gW, ws->gwork, nk, grp);
        continue;
      }
      const size_t d = grp < nk ? grp * per + pos - 1 : t - nk; /* the chunk of rows */
      for (size_t r = d * DECAY_ROWS; r < (d + 1) * DECAY_ROWS && r < p; r++)
        decay_one(r, N, m->H->data, ws->gH->data, lambda, lr, xs, gs, &xm, &gm, &nan_seen);
    }
#pragma omp for schedule(static)
    for (size_t i = 0; i < C; i++) ufm_gemm_long_add(ws->gW, ws->gwork, nk, i);
  }
  *xmax = nan_seen ? NAN : xm;
  *gmax = nan_seen ? NAN : gm;
}

/* Whether a parallel region here would get a second thread (not on one
 * thread, nor inside a sweep's region for its points) */
static int side_by_side(void)
{
#ifdef _OPENMP
  return omp_get_max_threads() > 1 && !omp_in_parallel();
#else
  return 0;
#endif
}

/* C0 = op(A0) op(B0) and C1 = op(A1) op(B1), two small products (below
 * UFM_GEMM_ONE_CALL: one BLAS call each, so the same bits either way), side
 * by side on 2 threads, else in turn (a parallel region of one thread cost
 * 4-5% at 100:20:5) */
static void gemm_pair(CBLAS_TRANSPOSE_t ta0, CBLAS_TRANSPOSE_t tb0, const gsl_matrix *A0,
                      const gsl_matrix *B0, gsl_matrix *C0, CBLAS_TRANSPOSE_t ta1,
                      CBLAS_TRANSPOSE_t tb1, const gsl_matrix *A1, const gsl_matrix *B1,
                      gsl_matrix *C1)
{
  if (side_by_side()) {
#pragma omp parallel sections
    {
#pragma omp section
      ufm_gemm(ta0, tb0, 1.0, A0, B0, 0.0, C0);
#pragma omp section
      ufm_gemm(ta1, tb1, 1.0, A1, B1, 0.0, C1);
    }
  } else {
    ufm_gemm(ta0, tb0, 1.0, A0, B0, 0.0, C0);
    ufm_gemm(ta1, tb1, 1.0, A1, B1, 0.0, C1);
  }
}

/* Z, the loss pass, grad_W and grad_H with their decay; the norms of W, H
 * and the gradient blocks (without grad_b) into ws, *g2 and the maxima. */
static void products_pass(const ufm_problem *pb, const ufm_model *m, ufm_grad_ws *ws, double *g2,
                          double *hmax, double *ghmax)
{
  const size_t C = m->C, p = m->p, N = m->N;
  /* the logits Z = W H (class-major), then the loss pass turns them into G
   * in place and, with a bias, sums its rows as it goes (G 1, in groups of
   * samples fixed by N: a second pass over G cost 2 % of the step at
   * C = 1000). OpenBLAS forms W H faster than H^T W^T at small C (M: 11.3
   * against 14.8 ms), and G H^T, W^T G faster from G than from G^T (M:
   * 0.7 ms a step); the loss pass takes Z's columns eight at a time */
  if (small_halves(C, p, N)) {
    /* Z's two halves of the columns, side by side on 2 threads (one call
     * each, fixed by N: the same bits on any thread count); the loss pass
     * then shares its two groups (C = 32, p = 64, N = 256: 0.72 of the
     * step's time on 2 threads, the same on one) */
    const size_t h = N / 2 / 8 * 8;
    gsl_matrix_const_view H0 = gsl_matrix_const_submatrix(m->H, 0, 0, p, h);
    gsl_matrix_const_view H1 = gsl_matrix_const_submatrix(m->H, 0, h, p, N - h);
    gsl_matrix_view Z0 = gsl_matrix_submatrix(ws->G, 0, 0, C, h);
    gsl_matrix_view Z1 = gsl_matrix_submatrix(ws->G, 0, h, C, N - h);
    gemm_pair(CblasNoTrans, CblasNoTrans, m->W, &H0.matrix, &Z0.matrix, CblasNoTrans,
              CblasNoTrans, m->W, &H1.matrix, &Z1.matrix);
  } else {
    ufm_gemm(CblasNoTrans, CblasNoTrans, 1.0, m->W, m->H, 0.0, ws->G);
  }
  ufm_loss_batch(pb->loss, N, C, ws->G->data, m->bias ? m->b->data : NULL, m->labels,
                 ws->loss_i, ws->pred, ws->margin, ws->zstat, m->bias ? ws->gb->data : NULL,
                 ws->gbpart, ws->lrows);

  /* the step of H folded in (grad.h): lr as ufm_optim_iterate would take it */
  ws->loss = sum_in_order(ws->loss_i, N) / (double)N;
  double lr = 0.0;
  if (ws->fold_lr > 0.0)
    lr = ws->fold_ngd && ws->loss > 0 ? ws->fold_lr / ws->loss : ws->fold_lr;
  double *rx = ws->rows + C, *rg = ws->rows + (p + C) + C;

  /* grad_W = G H^T, grad_H = W^T G, both from the same point */
  if (ws->gwork) {
    ufm_gemm(CblasTrans, CblasNoTrans, 1.0, m->W, ws->G, 0.0, ws->gH);
    gradW_beside_decay(m, ws, pb->lambda_H, lr, rx, rg, hmax, ghmax);
  } else if ((double)C * (double)p * (double)N < (double)UFM_GEMM_ONE_CALL) {
    /* small products, one BLAS call each (gemm.c): on 2 threads the two
     * side by side (the same bits; C = 32, p = 64, N = 256: 0.104 -> 0.089
     * ms a step) */
    gemm_pair(CblasNoTrans, CblasTrans, ws->G, m->H, ws->gW, CblasTrans, CblasNoTrans, m->W,
              ws->G, ws->gH);
    decay_pass(p, N, m->H->data, ws->gH->data, pb->lambda_H, rx, rg, hmax, ghmax, lr);
  } else {
    /* grad_W's inner dimension is N: in pieces of the samples, the partial
     * products in gH's buffer (free until grad_H is formed) */
    ufm_gemm_long(CblasNoTrans, CblasTrans, ws->G, m->H, ws->gW, ws->gH->data, p * N);
    ufm_gemm(CblasTrans, CblasNoTrans, 1.0, m->W, ws->G, 0.0, ws->gH);
    decay_pass(p, N, m->H->data, ws->gH->data, pb->lambda_H, rx, rg, hmax, ghmax, lr);
  }
  ws->h_next = lr > 0.0;
  ws->normH2 = sum_in_order(rx, p);
  *g2 = sum_in_order(rg, p);
}

/* ---------------------------------------------- 5. the products in column blocks */

/* For thin shapes (p small against C) the three products are bound by
 * memory, not arithmetic: Z = W H is written (C N doubles), read and
 * rewritten by the loss pass, and read twice more as G, four crossings of
 * memory against p multiply-adds per entry per product. Here the columns
 * are taken in blocks of bk_cols (Z's block, C x bk_cols, about BK_BYTES,
 * stays in cache): per block Z_b = W H_b, the loss pass on it (G_b in
 * place), grad_H_b = W^T G_b with its decay (and the folded step of H) on
 * those columns, and G_b H_b^T added into the slot's grad_W. The blocks are
 * grouped in at most BK_SLOTS slots fixed by N (as the fused pass's are);
 * each slot owns a partial grad_W, bias gradient and row sums of squares,
 * added in slot order at the end: the same bits whatever thread runs which
 * slot. G itself is not kept (ws->G is left as it was). */

/* Slot s: blocks kb0 .. kb1-1. */
static void bk_slot(const ufm_problem *pb, const ufm_model *m, ufm_grad_ws *ws, double *slot,
                    size_t kb0, size_t kb1, double lr)
{
  const size_t C = m->C, p = m->p, N = m->N, nb = ws->bk_cols;
  double *gW = slot, *gb = gW + C * p, *sx = gb + C, *sg = sx + p, *fl = sg + p, *zb = fl + 4,
         *rows = zb + C * nb;
  memset(slot, 0, (C * p + C + 2 * p + 4) * sizeof(double));
  const double *b = m->bias ? m->b->data : NULL, scale = 1.0 / (double)N;
  gsl_matrix_view gWv = gsl_matrix_view_array(gW, C, p);
  double xm = 0.0, gm = 0.0;
  int nan_seen = 0;
  for (size_t kb = kb0; kb < kb1; kb++) {
    const size_t i0 = kb * nb, len = N - i0 < nb ? N - i0 : nb;
    gsl_matrix_view Zb = gsl_matrix_view_array_with_tda(zb, C, len, nb);
    gsl_matrix_const_view Hb = gsl_matrix_const_submatrix(m->H, 0, i0, p, len);
    gsl_matrix_view gHb = gsl_matrix_submatrix(ws->gH, 0, i0, p, len);
    gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, 1.0, m->W, &Hb.matrix, 0.0, &Zb.matrix);
    ufm_loss_cols(pb->loss, C, len, nb, zb, b, m->labels + i0, scale, ws->loss_i + i0,
                  ws->pred + i0, ws->margin + i0, ws->zstat + 2 * i0, b ? gb : NULL, rows);
    gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, m->W, &Zb.matrix, 0.0, &gHb.matrix);
    for (size_t k = 0; k < p; k++) {
      double st[5];
      decay_row(len, m->H->data + k * N + i0, ws->gH->data + k * N + i0, pb->lambda_H, lr, st);
      sx[k] += st[0];
      sg[k] += st[1];
      if (st[2] > xm) xm = st[2];
      if (st[3] > gm) gm = st[3];
      if (st[4] != 0.0) nan_seen = 1;
    }
    gsl_blas_dgemm(CblasNoTrans, CblasTrans, 1.0, &Zb.matrix, &Hb.matrix, kb == kb0 ? 0.0 : 1.0,
                   &gWv.matrix);
  }
  fl[0] = xm;
  fl[1] = gm;
  fl[2] = nan_seen;
}

/* The step in column blocks: loss, grad_W (without its decay), grad_b's G 1
 * part, grad_H with its decay (or the next H), the norms of H and grad_H
 * and the largest entries, as products_pass leaves them. */
static void blocks_pass(const ufm_problem *pb, const ufm_model *m, ufm_grad_ws *ws, double *g2,
                        double *hmax, double *ghmax)
{
  const size_t C = m->C, p = m->p, N = m->N, ns = ws->bk_nslot, len = ws->bk_len;
  const size_t nblk = (N + ws->bk_cols - 1) / ws->bk_cols;
  /* gd's step of H folded in; ngd's lr / loss waits for the loss */
  const double lr = ws->fold_ngd ? 0.0 : ws->fold_lr;
#pragma omp parallel for schedule(dynamic, 1) if (C * p * N >= UFM_FUSED_PAR_MIN && ns > 1)
  for (size_t s = 0; s < ns; s++)
    bk_slot(pb, m, ws, ws->bk + s * len, s * nblk / ns, (s + 1) * nblk / ns, lr);
  ws->h_next = lr > 0.0;
  /* the slots in order */
  double *gW = ws->gW->data, *gb = ws->gb->data, *rx = ws->rows, *rg = ws->rows + p;
  const double *s0 = ws->bk;
  memcpy(gW, s0, C * p * sizeof(double));
  if (m->bias) memcpy(gb, s0 + C * p, C * sizeof(double));
  memcpy(rx, s0 + C * p + C, 2 * p * sizeof(double));
  double xm = s0[C * p + C + 2 * p], gm = s0[C * p + C + 2 * p + 1];
  int nan_seen = s0[C * p + C + 2 * p + 2] != 0.0;
  for (size_t s = 1; s < ns; s++) {
    const double *sl = ws->bk + s * len, *fl = sl + C * p + C + 2 * p;
    for (size_t k = 0; k < C * p; k++) gW[k] += sl[k];
    if (m->bias)
      for (size_t c = 0; c < C; c++) gb[c] += sl[C * p + c];
    for (size_t k = 0; k < 2 * p; k++) rx[k] += sl[C * p + C + k];
    if (fl[0] > xm) xm = fl[0];
    if (fl[1] > gm) gm = fl[1];
    if (fl[2] != 0.0) nan_seen = 1;
  }
  ws->loss = sum_in_order(ws->loss_i, N) / (double)N;
  ws->normH2 = sum_in_order(rx, p);
  *g2 = sum_in_order(rg, p);
  *hmax = nan_seen ? NAN : xm;
  *ghmax = nan_seen ? NAN : gm;
}

/* ------------------------------------------------------------- 6. evaluation */

int ufm_grad_fused_auto(size_t C, size_t p, size_t N)
{
  if (C > UFM_GRAD_FUSED_CMAX) return 0;
  const double cp = (double)C * (double)p;
  return cp <= (C <= 16 ? 1024.0 : 512.0) || (cp < 2048.0 && cp * (double)N <= (double)(1 << 21));
}

int ufm_grad_eval(const ufm_problem *pb, const ufm_model *m, ufm_grad_ws *ws)
{
  const size_t C = m->C, p = m->p, N = m->N;
  int fused = ws->slots && pb->loss->block
              && (ws->path == UFM_GRAD_FUSED
                  || (ws->path == UFM_GRAD_AUTO && ufm_grad_fused_auto(C, p, N)));
  const int blocks = !fused && (ws->path == UFM_GRAD_BLOCKS
                                || (ws->path == UFM_GRAD_AUTO && ufm_grad_blocks_auto(C, p, N)));
  /* a path the shape did not choose at allocation, forced: its memory once */
  if (blocks && !ws->bk && !bk_alloc(ws)) return UFM_ENOMEM;
  if (!blocks && !ws->G && !(ws->G = gsl_matrix_alloc(C, N))) return UFM_ENOMEM;
  double hmax, ghmax, gh2;
  ws->h_next = 0;
  gsl_vector_set_zero(ws->gb);
  if (fused) {
    fused_pass(pb, m, ws, &gh2, &hmax, &ghmax);
    ws->loss = sum_in_order(ws->loss_i, N) / (double)N;
  } else if (blocks)
    blocks_pass(pb, m, ws, &gh2, &hmax, &ghmax);
  else
    products_pass(pb, m, ws, &gh2, &hmax, &ghmax); /* sets ws->loss for ngd's fold */

  double *rx = ws->rows, *rg = ws->rows + (p + C);
  double wmax, gwmax;
  decay_pass(C, p, m->W->data, ws->gW->data, pb->lambda_W, rx, rg, &wmax, &gwmax, 0.0);
  ws->normW2 = sum_in_order(rx, C);
  double g2 = sum_in_order(rg, C) + gh2;

  /* grad_b = G 1 + lambda_b b */
  double bmax = 0.0, gbmax = 0.0;
  ws->normb2 = 0.0;
  if (m->bias) {
    double *gb = ws->gb->data;
    const double *b = m->b->data;
    for (size_t c = 0; c < C; c++) gb[c] += pb->lambda_b * b[c];
    ws->normb2 = ufm_sumsq(b, C);
    g2 += ufm_sumsq(gb, C);
    bmax = maxabs(b, C);
    gbmax = maxabs(gb, C);
  } else
    gsl_vector_set_zero(ws->gb);
  ws->gnorm2 = g2;
  ws->thetamax = fmax(fmax(wmax, hmax), bmax);
  ws->gmax = fmax(fmax(gwmax, ghmax), gbmax);
  if (isnan(wmax) || isnan(hmax) || isnan(bmax)) ws->thetamax = NAN;
  if (isnan(gwmax) || isnan(ghmax) || isnan(gbmax)) ws->gmax = NAN;

  if (!isfinite(ws->loss) || !isfinite(ws->gnorm2) || !isfinite(ws->gmax)
      || !isfinite(ws->thetamax))
    return UFM_EDIVERGED;
  return UFM_OK;
}

double ufm_grad_objective(const ufm_problem *pb, const ufm_grad_ws *ws)
{
  return ws->loss + 0.5 * pb->lambda_W * ws->normW2 + 0.5 * pb->lambda_H * ws->normH2
         + 0.5 * pb->lambda_b * ws->normb2;
}
