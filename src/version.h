/* version.h -- what ufm runs on: version, GSL, the CBLAS actually bound, threads. */
#ifndef UFM_VERSION_H
#define UFM_VERSION_H

#include "ufmconf.h" /* PACKAGE_VERSION */

/* The shared object cblas_dgemm resolved to at run time, e.g.
 * "OpenBLAS 0.3.21 (libopenblas.so.0)"; never guesses from the build. */
const char *ufm_blas_name(void);
/* OpenBLAS 0.3.21 does not know CPUs newer than it (Emerald Rapids, for one)
 * and falls back to its SSE3 (Prescott) kernels, 3-4x slower. When the CPU
 * has AVX-512 or AVX2+FMA and OpenBLAS picked kernels below that,
 * ufm_blas_select_core re-executes the program (/proc/self/exe, same argv)
 * with OPENBLAS_CORETYPE set to SkylakeX or Haswell; it returns when nothing
 * is to be done, when OPENBLAS_CORETYPE is already set (the user's choice
 * wins), or when the exec fails. Call it first in main. */
void ufm_blas_select_core(char **argv);
/* The OpenBLAS core ufm would ask for given OpenBLAS's choice `core`, or NULL. */
const char *ufm_blas_core_wanted(const char *core);
/* The instruction set of the kernels OpenBLAS runs: 0 SSE, 1 AVX, 2 AVX2
 * (Haswell, Zen), 3 AVX-512 (SkylakeX, Cooperlake, SapphireRapids); 0 for
 * a kernel set it does not name, -1 without OpenBLAS. */
int ufm_blas_core_level(void);
/* One line saying who chose the BLAS kernels, and, when the user's
 * OPENBLAS_CORETYPE names kernels below what the CPU runs, which ufm would
 * choose without it (on a Zen 5 with OPENBLAS_CORETYPE=Haswell the AVX-512
 * kernels make M's step 1.4-1.5x faster: bench/README.md, session 17). */
const char *ufm_blas_core_note(void);
/* Threads OpenMP will use for a parallel region. */
int ufm_threads(void);
/* Set OpenMP and BLAS threads together. */
void ufm_set_threads(int n);
/* Print the --version text. */
void ufm_print_version(void);

#endif
