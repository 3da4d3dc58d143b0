/* version.c -- reports the BLAS that cblas_dgemm is bound to, and sets thread counts. */
#include "version.h"

#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <gsl/gsl_cblas.h>
#include <gsl/gsl_version.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#ifdef HAVE_OPENBLAS
extern char *openblas_get_config(void);
extern void openblas_set_num_threads(int);
extern int openblas_get_num_threads(void);
#endif

const char *ufm_blas_name(void)
{
  static char buf[512];
  Dl_info info;
  const char *lib = "unknown";
  if (dladdr((void *)cblas_dgemm, &info) && info.dli_fname) {
    const char *slash = strrchr(info.dli_fname, '/');
    lib = slash ? slash + 1 : info.dli_fname;
  }
#ifdef HAVE_OPENBLAS
  if (strstr(lib, "openblas") || strstr(lib, "blas.so")) {
    snprintf(buf, sizeof buf, "%s (%s)", openblas_get_config(), lib);
    return buf;
  }
#endif
  snprintf(buf, sizeof buf, "%s%s", lib,
           strstr(lib, "gslcblas") ? " (GSL reference CBLAS: slow; install OpenBLAS)" : "");
  return buf;
}

int ufm_threads(void)
{
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

/* OpenMP gets the threads; the BLAS always runs single-threaded, and ufm
 * spreads products over threads itself in fixed blocks (gemm.c): OpenBLAS's
 * threaded dgemm gives different last bits on 1 and 2 threads at some shapes. */
void ufm_set_threads(int n)
{
#ifdef _OPENMP
  omp_set_num_threads(n);
#endif
#ifdef HAVE_OPENBLAS
  openblas_set_num_threads(1);
#endif
  (void)n;
}

void ufm_print_version(void)
{
  printf("ufm %s\n", PACKAGE_VERSION);
  printf("GSL %s\n", gsl_version);
  printf("BLAS %s\n", ufm_blas_name());
#ifdef _OPENMP
  printf("OpenMP %d threads\n", ufm_threads());
#else
  printf("OpenMP not available (1 thread)\n");
#endif
}
