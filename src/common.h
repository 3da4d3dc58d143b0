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
