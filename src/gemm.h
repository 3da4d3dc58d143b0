/* gemm.h -- matrix products whose bits do not depend on the thread count. */
#ifndef UFM_GEMM_H
#define UFM_GEMM_H

#include <gsl/gsl_blas.h>

/* Products of fewer multiply-adds than this are one single-threaded BLAS
 * call (ufm_gemm, and ufm_gemm_long through it) */
#define UFM_GEMM_ONE_CALL (1 << 20)

/* C = alpha op(A) op(B) + beta C, like gsl_blas_dgemm, but C is cut into
 * blocks of rows or columns fixed by the shapes alone, each computed by a
 * single-threaded BLAS call, and OpenMP spreads the blocks over threads.
 * OpenBLAS's own threading splits a product differently for 1 and 2 threads
 * at some shapes and changes the last bits; this does not. */
void ufm_gemm(CBLAS_TRANSPOSE_t ta, CBLAS_TRANSPOSE_t tb, double alpha, const gsl_matrix *A,
              const gsl_matrix *B, double beta, gsl_matrix *C);

/* The pieces along the inner dimension K that ufm_gemm_long takes for an
 * M x N result with nwork doubles of work space: K / (2 max(M, N)), at most
 * 8 and at most 1 + nwork / (M N). Fewer than 4 (too few for 4 threads)
 * means none: ufm_gemm's blocks then. */
size_t ufm_gemm_long_pieces(size_t M, size_t N, size_t K, size_t nwork);

/* C = op(A) op(B) for a long inner dimension K (grad_W = G H^T: K = N):
 * K cut into ufm_gemm_long_pieces consecutive pieces, fixed by the shapes
 * and nwork alone, each product computed by a single-threaded BLAS call
 * (the first into C, the others into work), OpenMP spreading them over
 * threads, then added in piece order. Every piece packs only its own share
 * of both operands (cutting C instead packs one operand again per block).
 * Falls back to ufm_gemm (beta = 0) when there are fewer than 4 pieces or
 * fewer than 2^20 multiply-adds. */
void ufm_gemm_long(CBLAS_TRANSPOSE_t ta, CBLAS_TRANSPOSE_t tb, const gsl_matrix *A,
                   const gsl_matrix *B, gsl_matrix *C, double *work, size_t nwork);

/* ufm_gemm_long's two steps, for a caller that runs other work beside the
 * pieces (grad.c): piece q of nk (the first into C, piece q > 0 into work
 * + (q - 1) M N), and, once all are done, row i of C plus the pieces in
 * order. ufm_gemm_long is these two loops over OpenMP threads. */
void ufm_gemm_long_piece(CBLAS_TRANSPOSE_t ta, CBLAS_TRANSPOSE_t tb, const gsl_matrix *A,
                         const gsl_matrix *B, gsl_matrix *C, double *work, size_t nk, size_t q);
void ufm_gemm_long_add(gsl_matrix *C, const double *work, size_t nk, size_t i);

/* The upper triangle of X (n x n, row stride ldx) = beta X + A A^T, A n x w
 * (row-major, row stride lda), on the calling thread in a fixed order: one
 * DSYRK, or with 0 < rows < n in row blocks of `rows` rows, a DSYRK on each
 * diagonal block and one DGEMM for the rest of its block row (faster than
 * one DSYRK with OpenBLAS's AVX2 kernels: metrics.c, SYRK_ROWS). */
void ufm_syrk_rows(const double *A, size_t n, size_t w, size_t lda, size_t rows, double beta,
                   double *X, size_t ldx);

/* Gram products on AVX-512 registers (gemm.c), where ufm_gram512_ok():
 * the CPU has AVX-512 F and VL (and GCC built them). ufm_gram512_pack puts
 * the n x w matrix A (row-major, row stride lda) into P, ufm_gram512_size(n,
 * w) doubles, in panels of 8 rows; ufm_gram512 then sets (first) or adds
 * to X (nr x nc, row stride ldx) the products R C^T of two such packed
 * matrices (nr and nc rows, w columns each), or with sym (R = C, nr = nc)
 * only X's 8 x 8 blocks on and above the diagonal, which hold its upper
 * triangle. Each entry is one chain of fused multiply-adds over the w
 * columns in order: the same bits on any thread. */
int ufm_gram512_ok(void);
size_t ufm_gram512_size(size_t n, size_t w);
void ufm_gram512_pack(const double *A, size_t n, size_t w, size_t lda, double *P);
/* The same for the n columns of the L x n matrix A (its rows of stride lda)
 * as the rows of A^T: packed n x L */
void ufm_gram512_pack_cols(const double *A, size_t L, size_t n, size_t lda, double *P);
void ufm_gram512(const double *PR, size_t nr, const double *PC, size_t nc, size_t w, int sym,
                 int first, double *X, size_t ldx);

#endif
