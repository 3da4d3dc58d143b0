/* common.h -- status codes, error buffers and small helpers shared by every ufm module.
 *
 * Convention (after Easel): a function that can fail on user input returns a
 * status code and writes a one-line message into a caller-supplied errbuf of
 * UFM_ERRBUF bytes (errbuf may be NULL). Only main() decides exit codes:
 * UFM_EINVAL maps to exit status 2 (bad usage or input), UFM_EINTR to
 * 128 + the signal (130 for SIGINT, 143 for SIGTERM), the others to 1.
 */
#ifndef UFM_COMMON_H
#define UFM_COMMON_H

#include <stddef.h>

#define UFM_ERRBUF 1024

/* Elementwise loops run in parallel only above this many elements: below it
 * a parallel region costs more than the loop (and on a loaded machine a
 * descheduled thread makes every region wait for a time slice). */
#define UFM_PAR_MIN ((size_t)1 << 16)

/* The vectorised kernels (the fused small-C step, the loss on class-major
 * blocks) are compiled for AVX2 and FMA on x86-64 under GCC, between
 * UFM_SIMD_BEGIN and UFM_SIMD_END, and used only when ufm_simd_ok() says the
 * CPU has both; elsewhere they are compiled for the default target. No
 * implicit contraction (ISO C mode): each lane does the arithmetic written
 * (explicit fused multiply-adds where written), so the bits do not depend on
 * the vector width. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define UFM_SIMD_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define UFM_SIMD_END _Pragma("GCC pop_options")
#else
#define UFM_SIMD_BEGIN
#define UFM_SIMD_END
#endif
/* 1 when the kernels above may run on this CPU. */
int ufm_simd_ok(void);
/* 1 when it also has AVX-512 (F, VL), with the OS saving its registers:
 * the fused step's kernels then use them, with the same bits (grad.c). */
int ufm_simd512_ok(void);

enum ufm_status {
  UFM_OK = 0,
  UFM_EINVAL = 1,   /* bad user input: experiment file, key, .npy file      */
  UFM_EIO = 2,      /* a file could not be read or written                  */
  UFM_ENOMEM = 3,   /* allocation failed                                    */
  UFM_EDIVERGED = 4, /* the run produced NaN or Inf                         */
  UFM_EINTR = 5      /* stopped by SIGINT/SIGTERM after saving a checkpoint  */
};

/* Format a message into errbuf (if not NULL) and return status. */
int ufm_fail(char *errbuf, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* malloc/calloc that abort with a message on failure (an exception, not a
 * user error): sizes are validated against memory before we get here. */
void *ufm_malloc(size_t n);
void *ufm_calloc(size_t count, size_t size);

#endif
