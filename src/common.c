/* common.c -- error formatting and checked allocation. */
#include "common.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int ufm_fail(char *errbuf, int status, const char *fmt, ...)
{
  if (errbuf) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(errbuf, UFM_ERRBUF, fmt, ap);
    va_end(ap);
  }
  return status;
}

void *ufm_malloc(size_t n)
{
  void *p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "ufm: out of memory (allocating %zu bytes)\n", n);
    abort();
  }
  return p;
}

void *ufm_calloc(size_t count, size_t size)
{
  void *p = calloc(count ? count : 1, size ? size : 1);
  if (!p) {
    fprintf(stderr, "ufm: out of memory (allocating %zu x %zu bytes)\n", count, size);
    abort();
  }
  return p;
}

int ufm_simd512_ok(void)
{
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
  __builtin_cpu_init(); /* GCC checks that the OS saves the ZMM registers */
  return ufm_simd_ok() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl");
#else
  return 0;
#endif
}

int ufm_simd_ok(void)
{
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#elif defined(__x86_64__)
  return 0; /* compiled for plain SSE2: the three products are faster */
#else
  return 1;
#endif
}
