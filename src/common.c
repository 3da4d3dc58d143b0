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
