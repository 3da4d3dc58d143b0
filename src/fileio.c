/* fileio.c -- atomic output files (temporary name, then rename) and directories. */
#include "fileio.h"
#include "common.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

char *ufm_path_join(const char *dir, const char *name)
{
  size_t ld = strlen(dir), ln = strlen(name);
  char *s = ufm_malloc(ld + ln + 2);
  memcpy(s, dir, ld);
  size_t k = ld;
  if (ld > 0 && dir[ld - 1] != '/') s[k++] = '/';
  memcpy(s + k, name, ln + 1);
  return s;
}

int ufm_afile_open(ufm_afile *af, const char *path, char *errbuf)
{
  size_t n = strlen(path) + 32;
  af->path = ufm_malloc(n);
  af->tmppath = ufm_malloc(n);
  snprintf(af->path, n, "%s", path);
  snprintf(af->tmppath, n, "%s.tmp.%ld", path, (long)getpid());
  af->fp = fopen(af->tmppath, "wb");
  if (!af->fp) {
    int e = errno;
    free(af->path);
    free(af->tmppath);
    af->path = af->tmppath = NULL;
    return ufm_fail(errbuf, UFM_EIO, "%s: cannot write: %s", path, strerror(e));
  }
  return UFM_OK;
}

int ufm_afile_commit(ufm_afile *af, char *errbuf)
{
  int status = UFM_OK;
  int bad = ferror(af->fp);
  if (fflush(af->fp) != 0) bad = 1;
  if (!bad && fsync(fileno(af->fp)) != 0 && errno != EINVAL && errno != EROFS) bad = 1;
  int e = errno;
  if (fclose(af->fp) != 0) {
    bad = 1;
    e = errno;
  }
  af->fp = NULL;
  if (bad) {
    status = ufm_fail(errbuf, UFM_EIO, "%s: write failed: %s", af->path, strerror(e ? e : EIO));
    unlink(af->tmppath);
  } else if (rename(af->tmppath, af->path) != 0) {
    e = errno;
    status = ufm_fail(errbuf, UFM_EIO, "%s: cannot rename into place: %s", af->path, strerror(e));
    unlink(af->tmppath);
  }
  free(af->path);
  free(af->tmppath);
  af->path = af->tmppath = NULL;
  return status;
}

void ufm_afile_abort(ufm_afile *af)
{
  if (af->fp) fclose(af->fp);
  if (af->tmppath) unlink(af->tmppath);
  free(af->path);
  free(af->tmppath);
  af->fp = NULL;
  af->path = af->tmppath = NULL;
}

int ufm_mkdirs(const char *path, char *errbuf)
{
  size_t n = strlen(path);
  if (n == 0) return ufm_fail(errbuf, UFM_EIO, "empty directory name");
  char *p = ufm_malloc(n + 1);
  memcpy(p, path, n + 1);
  for (size_t k = 1; k <= n; k++) {
    if (p[k] == '/' || p[k] == '\0') {
      char save = p[k];
      p[k] = '\0';
      if (mkdir(p, 0777) != 0 && errno != EEXIST) {
        int e = errno;
        int st = ufm_fail(errbuf, UFM_EIO, "%s: cannot create directory: %s", p, strerror(e));
        free(p);
        return st;
      }
      p[k] = save;
    }
  }
  struct stat sb;
  int ok = stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
  free(p);
  if (!ok) return ufm_fail(errbuf, UFM_EIO, "%s: not a directory", path);
  return UFM_OK;
}
