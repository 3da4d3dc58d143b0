/* version.c -- reports the BLAS that cblas_dgemm is bound to, and sets thread counts. */
#include "version.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
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

/* OpenBLAS's kernel families by instruction set: 0 SSE, 1 AVX, 2 AVX2,
 * 3 AVX-512 (dgemm kernels; the AVX-512 cores differ only in bf16 work). */
static int core_level(const char *core)
{
  static const char *const avx512[] = {"skylakex", "cooperlake", "sapphirerapids"};
  static const char *const avx2[] = {"haswell", "zen", "excavator", "steamroller"};
  static const char *const avx[] = {"sandybridge", "bulldozer", "piledriver"};
  for (size_t k = 0; k < sizeof avx512 / sizeof *avx512; k++)
    if (!strcasecmp(core, avx512[k])) return 3;
  for (size_t k = 0; k < sizeof avx2 / sizeof *avx2; k++)
    if (!strcasecmp(core, avx2[k])) return 2;
  for (size_t k = 0; k < sizeof avx / sizeof *avx; k++)
    if (!strcasecmp(core, avx[k])) return 1;
  return 0;
}

const char *ufm_blas_core_wanted(const char *core)
{
#if defined(__x86_64__) && defined(__GNUC__)
  __builtin_cpu_init();
  /* what OpenBLAS's SkylakeX kernels use; GCC checks that the OS saves the
   * ZMM (or YMM) registers, not only that the CPU has the instructions */
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")
      && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
      && __builtin_cpu_supports("avx512cd"))
    return core_level(core) < 3 ? "SkylakeX" : NULL;
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return core_level(core) < 2 ? "Haswell" : NULL;
#endif
  (void)core;
  return NULL;
}

void ufm_blas_select_core(char **argv)
{
#ifdef HAVE_OPENBLAS
  if (getenv("OPENBLAS_CORETYPE")) return; /* the user's choice, or ours after the exec */
  char *(*corename)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
  if (!corename) return;
  const char *want = ufm_blas_core_wanted(corename());
  if (!want) return;
  /* OpenBLAS picks its kernels once, when it is loaded: only a new image
   * of the program can have others */
  if (setenv("OPENBLAS_CORETYPE", want, 1) || setenv("UFM_BLAS_CHOSEN", corename(), 1)) return;
  execv("/proc/self/exe", argv);
  unsetenv("OPENBLAS_CORETYPE"); /* no exec: carry on with OpenBLAS's choice */
  unsetenv("UFM_BLAS_CHOSEN");
#else
  (void)argv;
#endif
}

int ufm_blas_core_level(void)
{
#ifdef HAVE_OPENBLAS
  char *(*corename)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
  return corename ? core_level(corename()) : -1;
#else
  return -1;
#endif
}

const char *ufm_blas_core_note(void)
{
  static char buf[256];
  const char *before = getenv("UFM_BLAS_CHOSEN"), *now = getenv("OPENBLAS_CORETYPE");
  if (before && now)
    snprintf(buf, sizeof buf, "kernels %s chosen by ufm for this CPU (OpenBLAS's own choice: %s)",
             now, before);
  else if (now && ufm_blas_core_wanted(now))
    snprintf(buf, sizeof buf,
             "kernels set by OPENBLAS_CORETYPE=%s; this CPU runs %s, which ufm chooses when "
             "OPENBLAS_CORETYPE is unset",
             now, ufm_blas_core_wanted(now));
  else if (now)
    snprintf(buf, sizeof buf, "kernels set by OPENBLAS_CORETYPE=%s", now);
  else
    snprintf(buf, sizeof buf, "kernels chosen by OpenBLAS");
  return buf;
}

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
  printf("     %s\n", ufm_blas_core_note());
#ifdef _OPENMP
  printf("OpenMP %d threads\n", ufm_threads());
#else
  printf("OpenMP not available (1 thread)\n");
#endif
}
