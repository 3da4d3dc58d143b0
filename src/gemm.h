/* gemm.h -- matrix products whose bits do not depend on the thread count. */
#ifndef UFM_GEMM_H
#define UFM_GEMM_H

#include <gsl/gsl_blas.h>

/* C = alpha op(A) op(B) + beta C, like gsl_blas_dgemm, but C is cut into
 * blocks of rows or columns fixed by the shapes alone, each computed by a
 * single-threaded BLAS call, and OpenMP spreads the blocks over threads.
 * OpenBLAS's own threading splits a product differently for 1 and 2 threads
 * at some shapes and changes the last bits; this does not. */
void ufm_gemm(CBLAS_TRANSPOSE_t ta, CBLAS_TRANSPOSE_t tb, double alpha, const gsl_matrix *A,
              const gsl_matrix *B, double beta, gsl_matrix *C);

#endif
