/* fileio.c -- atomic output files (temporary name, then rename), directories and their upkeep, the out path policy. */
#include "fileio.h"
#include "common.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
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

int ufm_afile_open_in(ufm_afile *af, const char *dir, const char *name, char *errbuf)
{
  char *path = ufm_path_join(dir, name);
  int st = ufm_afile_open(af, path, errbuf);
  free(path);
  return st;
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

/* ------------------------------------------------ directories of a run: upkeep */

int ufm_remove_dir(const char *path)
{
  DIR *d = opendir(path);
  if (!d) return errno == ENOENT ? 0 : -1;
  struct dirent *e;
  while ((e = readdir(d))) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char *p = ufm_path_join(path, e->d_name);
    unlink(p);
    free(p);
  }
  closedir(d);
  return rmdir(path);
}

void ufm_fsync_dir(const char *path)
{
  int fd = open(path, O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  (void)fsync(fd);
  close(fd);
}

/* NAME.tmp.DIGITS, as ufm_afile_open names its temporary files; *pid set. */
static int is_tmp_name(const char *name, long *pid)
{
  const char *t = strstr(name, ".tmp.");
  if (!t || t == name) return 0;
  const char *s = t + 5;
  char *end;
  if (*s < '0' || *s > '9') return 0;
  long v = strtol(s, &end, 10);
  if (*end != '\0') return 0;
  *pid = v;
  return 1;
}

void ufm_remove_stale_tmp(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d) return;
  struct dirent *e;
  long pid;
  while ((e = readdir(d)))
    if (is_tmp_name(e->d_name, &pid) && pid != (long)getpid()) {
      char *p = ufm_path_join(dir, e->d_name);
      unlink(p);
      free(p);
    }
  closedir(d);
}

const char *ufm_out_path_problem(const char *path)
{
  if (!path || !*path) return "the path is empty";
  for (const unsigned char *s = (const unsigned char *)path; *s; s++)
    if (*s < 0x20 || *s == 0x7f) return "the path contains a control character";
  /* a ".." component: at the start or after '/', followed by '/' or the end */
  for (const char *s = path; (s = strstr(s, "..")) != NULL; s += 2)
    if ((s == path || s[-1] == '/') && (s[2] == '/' || s[2] == '\0'))
      return "the path has a '..' component (give the directory without '..', e.g. as an absolute path)";
  return NULL;
}

int ufm_dir_is_foreign(const char *dir)
{
  DIR *d = opendir(dir);
  if (!d) return 0;
  struct dirent *e;
  int other = 0, marker = 0;
  long pid;
  while ((e = readdir(d))) {
    const char *n = e->d_name;
    if (!strcmp(n, ".") || !strcmp(n, "..")) continue;
    if (!strcmp(n, "config.ini") || !strcmp(n, "sweep.ini") || !strcmp(n, "metrics.tsv")) marker = 1;
    else if (!is_tmp_name(n, &pid) && strncmp(n, "checkpoint", 10) != 0) other = 1;
  }
  closedir(d);
  return other && !marker;
}

char *ufm_shell_quote(const char *s)
{
  int plain = *s != '\0';
  for (const char *c = s; *c && plain; c++)
    plain = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9')
            || strchr("_./,:+@%=-", *c);
  if (plain) return strdup(s);
  size_t n = 3;
  for (const char *c = s; *c; c++) n += *c == '\'' ? 4 : 1;
  char *q = ufm_malloc(n), *d = q;
  *d++ = '\'';
  for (const char *c = s; *c; c++) {
    if (*c == '\'') {
      memcpy(d, "'\\''", 4);
      d += 4;
    } else {
      *d++ = *c;
    }
  }
  *d++ = '\'';
  *d = '\0';
  return q;
}
