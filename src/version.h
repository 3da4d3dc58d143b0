/* version.h -- what ufm runs on: version, GSL, the CBLAS actually bound, threads. */
#ifndef UFM_VERSION_H
#define UFM_VERSION_H

#include "ufmconf.h" /* PACKAGE_VERSION */

/* The shared object cblas_dgemm resolved to at run time, e.g.
 * "OpenBLAS 0.3.21 (libopenblas.so.0)"; never guesses from the build. */
const char *ufm_blas_name(void);
/* Threads OpenMP will use for a parallel region. */
int ufm_threads(void);
/* Set OpenMP and BLAS threads together. */
void ufm_set_threads(int n);
/* Print the --version text. */
void ufm_print_version(void);

#endif
