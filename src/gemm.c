/* gemm.c -- deterministic parallel products: fixed blocks of C (or of the inner dimension), single-threaded BLAS on each. */
#include "gemm.h"
#include "common.h"

#include <stdlib.h>

/* Blocks: C is split into pieces of at least 64 and at most ceil(side/8)
 * rows, or columns when it is more than twice as wide as tall: enough
 * pieces for any thread count to share, and the same pieces whatever that
 * count is. Row pieces are the faster (OpenBLAS SkylakeX, 8 pieces on 2
 * threads: G H^T at C = 1000, p = 1024, N = 1000 took 16.0 ms in rows and
 * 18.5 in columns; 500 x 1000 products 10-20% less in rows), but a short,
 * wide C (100 x 10^4) needs columns (Z = W H: 7.9 against 14.8 ms). Small
 * products (below 2^20 multiply-adds) are one piece. When the inner dimension is more
 * than 4 times that side (grad_W = G H^T: K = N), every piece packs all of
 * the other operand again (80 MB of G at C = 1000, N = 10^4), so pieces are
 * then at least 256 wide: 2 pieces at p = 512, 4 at p = 1024 (at 64 wide,
 * that product took 1.5x OpenBLAS's own threaded call). Since session 14
 * products below 2^20 multiply-adds are one piece (it was 2^18): at C = 32,
 * p = 64, N = 256, whose three products are 2^19 each, the step took 0.13
 * ms on 2 threads with the pieces against 0.106 as one call each (and
 * 0.106 on one thread); likewise 24:100:10 0.136 -> 0.108, 64:32:4 0.156
 * -> 0.119. */
void ufm_gemm(CBLAS_TRANSPOSE_t ta, CBLAS_TRANSPOSE_t tb, double alpha, const gsl_matrix *A,
              const gsl_matrix *B, double beta, gsl_matrix *C)
{
  const size_t M = C->size1, N = C->size2, K = ta == CblasNoTrans ? A->size2 : A->size1;
  const double work = (double)M * (double)N * (double)K;
  if (work < (double)UFM_GEMM_ONE_CALL || (M < 128 && N < 128)) {
    gsl_blas_dgemm(ta, tb, alpha, A, B, beta, C);
    return;
  }
  const int by_rows = 2 * M >= N;
  const size_t side = by_rows ? M : N;
  size_t bs = (side + 7) / 8;
  const size_t bmin = K > 4 * side ? 256 : 64;
  if (bs < bmin) bs = bmin;
  const size_t nb = (side + bs - 1) / bs;
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t k = 0; k < nb; k++) {
    size_t s0 = k * bs, len = side - s0 < bs ? side - s0 : bs;
    if (by_rows) {
      /* rows s0.. of op(A) and of C */
      gsl_matrix_const_view a = ta == CblasNoTrans ? gsl_matrix_const_submatrix(A, s0, 0, len, A->size2)
                                                   : gsl_matrix_const_submatrix(A, 0, s0, A->size1, len);
      gsl_matrix_view c = gsl_matrix_submatrix(C, s0, 0, len, N);
      gsl_blas_dgemm(ta, tb, alpha, &a.matrix, B, beta, &c.matrix);
    } else {
      /* columns s0.. of op(B) and of C */
      gsl_matrix_const_view b = tb == CblasNoTrans ? gsl_matrix_const_submatrix(B, 0, s0, B->size1, len)
                                                   : gsl_matrix_const_submatrix(B, s0, 0, len, B->size2);
      gsl_matrix_view c = gsl_matrix_submatrix(C, 0, s0, M, len);
      gsl_blas_dgemm(ta, tb, alpha, A, &b.matrix, beta, &c.matrix);
    }
  }
}

size_t ufm_gemm_long_pieces(size_t M, size_t N, size_t K, size_t nwork)
{
  const size_t side = M > N ? M : N;
  if (M == 0 || N == 0) return 0;
  size_t nk = K / (2 * side);
  if (nk > 8) nk = 8;
  if (nk > 1 + nwork / (M * N)) nk = 1 + nwork / (M * N);
  return nk;
}

void ufm_gemm_long_piece(CBLAS_TRANSPOSE_t ta, CBLAS_TRANSPOSE_t tb, const gsl_matrix *A,
                         const gsl_matrix *B, gsl_matrix *C, double *work, size_t nk, size_t q)
{
  const size_t M = C->size1, N = C->size2, K = ta == CblasNoTrans ? A->size2 : A->size1;
  const size_t k0 = q * K / nk, len = (q + 1) * K / nk - k0;
  gsl_matrix_const_view a = ta == CblasNoTrans ? gsl_matrix_const_submatrix(A, 0, k0, M, len)
                                               : gsl_matrix_const_submatrix(A, k0, 0, len, M);
  gsl_matrix_const_view b = tb == CblasNoTrans ? gsl_matrix_const_submatrix(B, k0, 0, len, N)
                                               : gsl_matrix_const_submatrix(B, 0, k0, N, len);
  gsl_matrix_view out = q == 0 ? gsl_matrix_submatrix(C, 0, 0, M, N)
                               : gsl_matrix_view_array(work + (q - 1) * M * N, M, N);
  gsl_blas_dgemm(ta, tb, 1.0, &a.matrix, &b.matrix, 0.0, &out.matrix);
}

void ufm_gemm_long_add(gsl_matrix *C, const double *work, size_t nk, size_t i)
{
  const size_t M = C->size1, N = C->size2;
  double *c = C->data + i * C->tda;
  for (size_t q = 1; q < nk; q++) {
    const double *w = work + (q - 1) * M * N + i * N;
    for (size_t j = 0; j < N; j++) c[j] += w[j];
  }
}

void ufm_gemm_long(CBLAS_TRANSPOSE_t ta, CBLAS_TRANSPOSE_t tb, const gsl_matrix *A,
                   const gsl_matrix *B, gsl_matrix *C, double *work, size_t nwork)
{
  const size_t M = C->size1, N = C->size2, K = ta == CblasNoTrans ? A->size2 : A->size1;
  const size_t nk = ufm_gemm_long_pieces(M, N, K, nwork);
  if (nk < 4 || (double)M * (double)N * (double)K < (double)(1 << 20)) {
    ufm_gemm(ta, tb, 1.0, A, B, 0.0, C);
    return;
  }
#pragma omp parallel
  {
#pragma omp for schedule(dynamic, 1)
    for (size_t q = 0; q < nk; q++) ufm_gemm_long_piece(ta, tb, A, B, C, work, nk, q);
    /* C += piece 1, piece 2, ... in order, row by row */
#pragma omp for schedule(static)
    for (size_t i = 0; i < M; i++) ufm_gemm_long_add(C, work, nk, i);
  }
}

void ufm_syrk_rows(const double *A, size_t n, size_t w, size_t lda, size_t rows, double beta,
                   double *X, size_t ldx)
{
  if (rows == 0 || rows >= n) {
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)n, (int)w, 1.0, A, (int)lda, beta, X,
                (int)ldx);
    return;
  }
  for (size_t b = 0; b < n; b += rows) {
    const size_t nb = n - b < rows ? n - b : rows;
    cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)nb, (int)w, 1.0, A + b * lda,
                (int)lda, beta, X + b * ldx + b, (int)ldx);
    if (b + nb < n)
      cblas_dgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)nb, (int)(n - b - nb), (int)w, 1.0,
                  A + b * lda, (int)lda, A + (b + nb) * lda, (int)lda, beta, X + b * ldx + b + nb,
                  (int)ldx);
  }
}

/* ---- The Gram products on AVX-512 registers (ufm_gram512) -----------------
 *
 * X += R C^T for rows of deviations, with R and C packed in panels of 8
 * rows: panel q holds rows 8q .. 8q + 7 (zeros past the last row), column
 * s of it the 8 doubles at P + 8 w q + 8 s. An 8 x 24 block of X (8 of R's
 * rows, three of C's panels) is 24 accumulators of 8 doubles: per column s
 * three loads of C's panels and eight broadcasts of R's, 24 fused
 * multiply-adds, so the two FMA units are busy and every load is
 * contiguous. Entry (i, j) is one chain of fused multiply-adds over s in
 * order from 0, then added to X: the same bits on any thread, in any
 * block order. On a Zen 5 (family 26) R R^T of a 512 x 320 chunk took
 * half the time of OpenBLAS 0.3.21's DSYRK with its AVX2 kernels and
 * 0.85-0.95 of it with its AVX-512 ones (SkylakeX), packing included
 * (session 18). */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#include <immintrin.h>
#define GRAM512 1
#define T512 __attribute__((target("avx512f")))
#endif

size_t ufm_gram512_size(size_t n, size_t w) { return (n + 7) / 8 * 8 * w; }

int ufm_gram512_ok(void)
{
#ifdef GRAM512
  return ufm_simd512_ok();
#else
  return 0;
#endif
}

#ifdef GRAM512
/* 8 x 8 block: rows r[0..8) (8 doubles each) to columns, into o (8 x 8) */
T512 static inline __attribute__((always_inline)) void transpose8(__m512d r[8], double *o)
{
  const __m512i lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0);
  const __m512i hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
  const __m512i h0 = _mm512_set_epi64(11, 10, 9, 8, 3, 2, 1, 0);
  const __m512i h1 = _mm512_set_epi64(15, 14, 13, 12, 7, 6, 5, 4);
  __m512d t[8], u[8];
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm512_unpacklo_pd(r[2 * i], r[2 * i + 1]);     /* cols 0 2 4 6 */
    t[2 * i + 1] = _mm512_unpackhi_pd(r[2 * i], r[2 * i + 1]); /* cols 1 3 5 7 */
  }
  for (int i = 0; i < 2; i++)
    for (int h = 0; h < 2; h++) {
      u[4 * i + h] = _mm512_permutex2var_pd(t[4 * i + h], lo, t[4 * i + 2 + h]);     /* 0 4 / 1 5 */
      u[4 * i + 2 + h] = _mm512_permutex2var_pd(t[4 * i + h], hi, t[4 * i + 2 + h]); /* 2 6 / 3 7 */
    }
  /* u[0]: rows 0-3 of cols 0 | 4; u[1]: cols 1 | 5; u[2]: 2 | 6; u[3]: 3 | 7; u[4..8): rows 4-7 */
  for (int c = 0; c < 4; c++) {
    _mm512_storeu_pd(o + 8 * c, _mm512_permutex2var_pd(u[c], h0, u[4 + c]));
    _mm512_storeu_pd(o + 8 * (c + 4), _mm512_permutex2var_pd(u[c], h1, u[4 + c]));
  }
}

T512 void ufm_gram512_pack(const double *A, size_t n, size_t w, size_t lda, double *P)
{
  for (size_t q = 0; q < (n + 7) / 8; q++) {
    double *o = P + 8 * w * q;
    const size_t nr = n - 8 * q < 8 ? n - 8 * q : 8;
    size_t s = 0;
    for (; s + 8 <= w; s += 8) {
      __m512d r[8];
      for (size_t i = 0; i < 8; i++)
        r[i] = i < nr ? _mm512_loadu_pd(A + (8 * q + i) * lda + s) : _mm512_setzero_pd();
      transpose8(r, o + 8 * s);
    }
    for (; s < w; s++)
      for (size_t i = 0; i < 8; i++) o[8 * s + i] = i < nr ? A[(8 * q + i) * lda + s] : 0.0;
  }
}

T512 void ufm_gram512_pack_cols(const double *A, size_t L, size_t n, size_t lda, double *P)
{
  const __mmask8 last = n % 8 ? (__mmask8)((1u << (n % 8)) - 1) : (__mmask8)0xFF;
  for (size_t q = 0; q < (n + 7) / 8; q++) {
    double *o = P + 8 * L * q;
    const __mmask8 mk = 8 * q + 8 >= n ? last : (__mmask8)0xFF;
    for (size_t s = 0; s < L; s++)
      _mm512_storeu_pd(o + 8 * s, _mm512_maskz_loadu_pd(mk, A + s * lda + 8 * q));
  }
}

/* X[v][8 u + l] (+)= sum_s R[s][v] Cp_u[s][l] (R and Cp_u = Cp + 8 w u
 * packed panels) for v < nv, u < G, and l where mask allows (the last
 * panel u = G - 1) */
T512 static inline __attribute__((always_inline)) void gram_kernel(
    const int G, const double *R, const double *Cp, size_t w, size_t nv, __mmask8 mask, int first,
    double *X, size_t ldx)
{
  __m512d acc[3][8];
  _Pragma("GCC unroll 8") for (int u = 0; u < G; u++)
    _Pragma("GCC unroll 8") for (int v = 0; v < 8; v++) acc[u][v] = _mm512_setzero_pd();
  for (size_t s = 0; s < w; s++) {
    __m512d c[3];
    _Pragma("GCC unroll 8") for (int u = 0; u < G; u++) c[u] = _mm512_loadu_pd(Cp + 8 * w * u + 8 * s);
    _Pragma("GCC unroll 8") for (int v = 0; v < 8; v++) {
      const __m512d b = _mm512_set1_pd(R[8 * s + v]);
      _Pragma("GCC unroll 8") for (int u = 0; u < G; u++) acc[u][v] = _mm512_fmadd_pd(c[u], b, acc[u][v]);
    }
  }
  _Pragma("GCC unroll 8") for (int v = 0; v < 8; v++) {
    if ((size_t)v >= nv) break;
    _Pragma("GCC unroll 8") for (int u = 0; u < G; u++) {
      double *x = X + (size_t)v * ldx + 8 * (size_t)u;
      const __mmask8 mk = u == G - 1 ? mask : 0xFF;
      if (first)
        _mm512_mask_storeu_pd(x, mk, acc[u][v]);
      else
        _mm512_mask_storeu_pd(x, mk, _mm512_add_pd(_mm512_maskz_loadu_pd(mk, x), acc[u][v]));
    }
  }
}

T512 void ufm_gram512(const double *PR, size_t nr, const double *PC, size_t nc, size_t w,
                      int sym, int first, double *X, size_t ldx)
{
  const size_t npc = (nc + 7) / 8;
  const __mmask8 last = nc % 8 ? (__mmask8)((1u << (nc % 8)) - 1) : (__mmask8)0xFF;
  for (size_t bi = 0; bi < (nr + 7) / 8; bi++) {
    const double *R = PR + 8 * w * bi;
    const size_t nv = nr - 8 * bi < 8 ? nr - 8 * bi : 8;
    double *Xr = X + 8 * bi * ldx;
    size_t a = sym ? bi : 0;
    for (; a + 3 <= npc; a += 3)
      gram_kernel(3, R, PC + 8 * w * a, w, nv, a + 3 == npc ? last : 0xFF, first, Xr + 8 * a, ldx);
    if (npc - a == 2)
      gram_kernel(2, R, PC + 8 * w * a, w, nv, last, first, Xr + 8 * a, ldx);
    else if (npc - a == 1)
      gram_kernel(1, R, PC + 8 * w * a, w, nv, last, first, Xr + 8 * a, ldx);
  }
}
#else
/* never called: ufm_gram512_ok() is 0 */
#pragma GCC diagnostic ignored "-Wunused-parameter"
void ufm_gram512_pack(const double *A, size_t n, size_t w, size_t lda, double *P) { abort(); }
void ufm_gram512_pack_cols(const double *A, size_t L, size_t n, size_t lda, double *P) { abort(); }
void ufm_gram512(const double *PR, size_t nr, const double *PC, size_t nc, size_t w, int sym,
                 int first, double *X, size_t ldx)
{
  abort();
}
#endif
