/* fileio.h -- atomic file output: every result file is written whole or not at all. */
#ifndef UFM_FILEIO_H
#define UFM_FILEIO_H

#include <stdio.h>

/* An output file being written under a temporary name beside its final path. */
typedef struct {
  FILE *fp;
  char *path;    /* final name */
  char *tmppath; /* path.tmp.<pid> */
} ufm_afile;

/* Open path's temporary twin for writing ("wb"). Returns UFM_OK or UFM_EIO. */
int ufm_afile_open(ufm_afile *af, const char *path, char *errbuf);

/* Flush, check for write errors, close and rename onto the final path.
 * On any failure the temporary file is removed and UFM_EIO returned; the
 * previous content of path (if any) is untouched. Always releases af. */
int ufm_afile_commit(ufm_afile *af, char *errbuf);

/* Give up: close and remove the temporary file. */
void ufm_afile_abort(ufm_afile *af);

/* mkdir -p; UFM_OK or UFM_EIO. */
int ufm_mkdirs(const char *path, char *errbuf);

/* Join dir and name into a newly allocated string. */
char *ufm_path_join(const char *dir, const char *name);

#endif
