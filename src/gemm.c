/* gemm.c -- deterministic parallel products: fixed blocks of C (or of the inner dimension), single-threaded BLAS on each. */
#include "gemm.h"
#include "common.h"

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
