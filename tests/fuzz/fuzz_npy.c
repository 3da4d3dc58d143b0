/* fuzz_npy.c -- libFuzzer harness for the .npy reader (src/npy.c).
 *
 * Each input is written to a file and read with ufm_npy_read_f8: it must
 * return (no crash, no hang, no sanitizer report) with UFM_OK or a
 * one-line message. An accepted array must survive a write/read round trip
 * with the same shape and bits. Build and run: make check-fuzz.
 */
#include "common.h"
#include "npy.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char in_path[256], out_path[256];

/* Files on a RAM disk when there is one: libFuzzer runs thousands a second. */
static void init_paths(void)
{
  const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  snprintf(in_path, sizeof in_path, "%s/ufm-fuzz-npy-in.%ld", dir, (long)getpid());
  snprintf(out_path, sizeof out_path, "%s/ufm-fuzz-npy-out.%ld.npy", dir, (long)getpid());
}

static void cleanup(void)
{
  unlink(in_path);
  unlink(out_path);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!in_path[0]) {
    init_paths();
    atexit(cleanup);
  }
  FILE *fp = fopen(in_path, "wb");
  if (!fp) abort();
  if (size && fwrite(data, 1, size, fp) != size) abort();
  fclose(fp);

  char err[UFM_ERRBUF] = "";
  double *a = NULL;
  int nd = 0;
  size_t sh[UFM_NPY_MAXDIM];
  int st = ufm_npy_read_f8(in_path, &a, &nd, sh, err);
  if (st != UFM_OK) {
    /* a refusal is one line that names the file */
    if (a || !err[0] || strchr(err, '\n') || strncmp(err, in_path, strlen(in_path))) abort();
    return 0;
  }
  size_t n = 1;
  for (int k = 0; k < nd; k++) n *= sh[k];
  if (ufm_npy_write_f8(out_path, a, nd, sh, err) != UFM_OK) abort();
  double *b = NULL;
  int nd2 = 0;
  size_t sh2[UFM_NPY_MAXDIM];
  if (ufm_npy_read_f8(out_path, &b, &nd2, sh2, err) != UFM_OK) abort();
  if (nd2 != nd || memcmp(sh, sh2, (size_t)nd * sizeof sh[0]) || memcmp(a, b, n * sizeof(double))) abort();
  free(a);
  free(b);
  return 0;
}
