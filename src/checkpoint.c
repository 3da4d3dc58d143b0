/* checkpoint.c -- a run's whole state saved atomically into DIR/checkpoint and read back bit for bit.
 *
 * Contents: 1. helpers  2. saving  3. loading
 *
 * Every number goes through .npy files (raw IEEE bits) or %.17g (which
 * reads back to the same double), so a run resumed from a checkpoint
 * continues with exactly the bits it had, and its outputs are byte-identical
 * to those of an uninterrupted run.
 */
#include "checkpoint.h"
#include "common.h"
#include "fileio.h"
#include "metrics.h"
#include "npy.h"
#include "ufmconf.h" /* PACKAGE_VERSION */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CKPT_FORMAT "1"

/* ------------------------------------------------------------------ 1. helpers */

/* cfg as config.ini text, as ufm_config_write renders it. */
static char *config_text(const ufm_config *cfg)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *fp = open_memstream(&buf, &len);
  if (!fp) {
    fprintf(stderr, "ufm: out of memory\n");
    abort();
  }
  ufm_config_write(cfg, fp);
  fclose(fp);
  return buf;
}

/* Two config.ini texts describe the same experiment when they agree outside
 * the lines ufm_config_line_ignored skips: comments (the first names the
 * experiment after its directory), `out` (a run directory may be moved, or
 * resumed under another spelling of its path) and the figure settings. */
static int same_experiment(const char *a, const char *b)
{
  for (;;) {
    while (ufm_config_line_ignored(a)) a += strcspn(a, "\n") + (a[strcspn(a, "\n")] != '\0');
    while (ufm_config_line_ignored(b)) b += strcspn(b, "\n") + (b[strcspn(b, "\n")] != '\0');
    if (!*a || !*b) return !*a && !*b;
    size_t la = strcspn(a, "\n"), lb = strcspn(b, "\n");
    if (la != lb || strncmp(a, b, la)) return 0;
    a += la + (a[la] != '\0');
    b += lb + (b[lb] != '\0');
  }
}

static int is_dir(const char *p)
{
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int has_manifest(const char *ckdir)
{
  char *p = ufm_path_join(ckdir, "checkpoint.tsv");
  int ok = access(p, R_OK) == 0;
  free(p);
  return ok;
}

static int write_f8(const char *dir, const char *name, const double *d, int nd, size_t s0, size_t s1,
                    char *errbuf)
{
  size_t shape[2] = {s0, s1};
  char *p = ufm_path_join(dir, name);
  int st = ufm_npy_write_f8(p, d, nd, shape, errbuf);
  free(p);
  return st;
}

/* Read dir/name, which must be '<f8' of shape (s0) or (s0, s1), into dst
 * (allocated when *dst is NULL). */
static int read_f8(const char *dir, const char *name, int nd, size_t s0, size_t s1, double **dst,
                   char *errbuf)
{
  char *p = ufm_path_join(dir, name);
  double *data;
  int got_nd;
  size_t sh[UFM_NPY_MAXDIM];
  int st = ufm_npy_read_f8(p, &data, &got_nd, sh, errbuf);
  if (st == UFM_OK && (got_nd != nd || sh[0] != s0 || (nd == 2 && sh[1] != s1))) {
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: shape does not match the experiment (checkpoint of another run?)", p);
    free(data);
  }
  free(p);
  if (st != UFM_OK) return st == UFM_EIO ? UFM_EINVAL : st;
  size_t n = nd == 2 ? s0 * s1 : s0;
  if (*dst) {
    memcpy(*dst, data, n * sizeof(double));
    free(data);
  } else {
    *dst = data;
  }
  return UFM_OK;
}

/* ------------------------------------------------------------------- 2. saving */

static int write_contents(const char *nw, const ufm_config *cfg, const ufm_model *m,
                          const ufm_optim *o, const ufm_ckpt *ck, char *errbuf)
{
  int st = write_f8(nw, "W.npy", m->W->data, 2, m->C, m->p, errbuf);
  if (st == UFM_OK) st = write_f8(nw, "H.npy", m->H->data, 2, m->p, m->N, errbuf);
  if (st == UFM_OK) st = write_f8(nw, "b.npy", m->b->data, 1, m->C, 0, errbuf);
  if (st == UFM_OK && o->type->uses_velocity) {
    st = write_f8(nw, "vW.npy", o->vW->data, 2, m->C, m->p, errbuf);
    if (st == UFM_OK) st = write_f8(nw, "vH.npy", o->vH->data, 2, m->p, m->N, errbuf);
    if (st == UFM_OK) st = write_f8(nw, "vb.npy", o->vb->data, 1, m->C, 0, errbuf);
  }
  if (st == UFM_OK) { /* metrics rows: iteration (exact below 2^53), then every column */
    size_t w = 1 + UFM_NMETRICS;
    double *tab = ufm_malloc((ck->rows ? ck->rows : 1) * w * sizeof(double));
    for (size_t r = 0; r < ck->rows; r++) {
      tab[r * w] = (double)ck->row_iter[r];
      memcpy(tab + r * w + 1, ck->row_vals + r * UFM_NMETRICS, UFM_NMETRICS * sizeof(double));
    }
    st = write_f8(nw, "metrics.npy", tab, 2, ck->rows, w, errbuf);
    free(tab);
  }
  ufm_afile af;
  if (st == UFM_OK) {
    char *p = ufm_path_join(nw, "config.ini");
    st = ufm_afile_open(&af, p, errbuf);
    free(p);
    if (st == UFM_OK) {
      ufm_config_write(cfg, af.fp);
      st = ufm_afile_commit(&af, errbuf);
    }
  }
  if (st == UFM_OK) { /* the manifest, last: its presence means the rest is complete */
    char *p = ufm_path_join(nw, "checkpoint.tsv");
    st = ufm_afile_open(&af, p, errbuf);
    free(p);
    if (st == UFM_OK) {
      FILE *fp = af.fp;
      fprintf(fp, "format\t" CKPT_FORMAT "\n");
      fprintf(fp, "iteration\t%lu\n", ck->iter);
      fprintf(fp, "log_next\t%zu\n", ck->log_next);
      fprintf(fp, "rows\t%zu\n", ck->rows);
      fprintf(fp, "seconds\t%.17g\n", ck->seconds);
      fprintf(fp, "rank_M\t%zu\n", ck->rank);
      fprintf(fp, "optimizer\t%s\n", o->type->name);
      fprintf(fp, "vmax\t%.17g\n", o->type->uses_velocity ? o->vmax : 0.0);
      fprintf(fp, "columns\titer");
      for (size_t k = 0; k < UFM_NMETRICS; k++) fprintf(fp, ",%s", ufm_metric_names[k]);
      fprintf(fp, "\nrng\tnone (the RNG only draws the initial point)\n");
      fprintf(fp, "version\t%s\n", PACKAGE_VERSION);
      st = ufm_afile_commit(&af, errbuf);
    }
  }
  return st;
}

int ufm_ckpt_save(const char *dir, const ufm_config *cfg, const ufm_model *m, const ufm_optim *o,
                  const ufm_ckpt *ck, char *errbuf)
{
  char *cur = ufm_path_join(dir, "checkpoint"), *nw = ufm_path_join(dir, "checkpoint.new"),
       *old = ufm_path_join(dir, "checkpoint.old");
  int st = UFM_OK;
  ufm_remove_dir(nw); /* left by a process killed while writing it */
  if (mkdir(nw, 0777) != 0)
    st = ufm_fail(errbuf, UFM_EIO, "%s: cannot create directory: %s", nw, strerror(errno));
  if (st == UFM_OK) st = write_contents(nw, cfg, m, o, ck, errbuf);
  if (st == UFM_OK) {
    ufm_fsync_dir(nw);
    /* the swap: at every instant `checkpoint` or `checkpoint.old` is complete */
    if (is_dir(cur)) {
      ufm_remove_dir(old);
      if (rename(cur, old) != 0)
        st = ufm_fail(errbuf, UFM_EIO, "%s: cannot rename: %s", cur, strerror(errno));
    }
    if (st == UFM_OK && rename(nw, cur) != 0)
      st = ufm_fail(errbuf, UFM_EIO, "%s: cannot rename into place: %s", cur, strerror(errno));
    if (st == UFM_OK) {
      ufm_fsync_dir(dir);
      ufm_remove_dir(old);
    }
  }
  if (st != UFM_OK) ufm_remove_dir(nw);
  free(cur);
  free(nw);
  free(old);
  return st;
}

/* ------------------------------------------------------------------ 3. loading */

int ufm_ckpt_exists(const char *dir)
{
  const char *names[] = {"checkpoint", "checkpoint.old"};
  for (size_t k = 0; k < 2; k++) {
    char *p = ufm_path_join(dir, names[k]);
    int ok = has_manifest(p);
    free(p);
    if (ok) return 1;
  }
  return 0;
}

void ufm_ckpt_remove(const char *dir)
{
  const char *names[] = {"checkpoint.new", "checkpoint.old", "checkpoint"};
  for (size_t k = 0; k < 3; k++) {
    char *p = ufm_path_join(dir, names[k]);
    ufm_remove_dir(p);
    free(p);
  }
}

void ufm_ckpt_clear(ufm_ckpt *ck)
{
  free(ck->row_iter);
  free(ck->row_vals);
  memset(ck, 0, sizeof *ck);
}

/* The manifest's value for name, or NULL. */
static const char *manifest_get(char *const *names, char *const *vals, size_t n, const char *name)
{
  for (size_t k = 0; k < n; k++)
    if (!strcmp(names[k], name)) return vals[k];
  return NULL;
}

static int parse_ulong(const char *s, unsigned long *v)
{
  char *end;
  if (!s || *s < '0' || *s > '9') return 0;
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (*end || errno) return 0;
  *v = (unsigned long)x;
  return 1;
}

static int load_from(const char *ck_dir, const ufm_config *cfg, ufm_model *m, ufm_optim *o,
                     ufm_ckpt *ck, char *errbuf)
{
  char *mpath = ufm_path_join(ck_dir, "checkpoint.tsv");
  FILE *fp = fopen(mpath, "r");
  if (!fp) {
    int st = ufm_fail(errbuf, UFM_EINVAL, "%s: cannot read: %s", mpath, strerror(errno));
    free(mpath);
    return st;
  }
  char *names[32], *vals[32], *line = NULL;
  size_t n = 0, cap = 0;
  while (n < 32 && getline(&line, &cap, fp) != -1) {
    char *tab = strchr(line, '\t');
    if (!tab) continue;
    *tab = '\0';
    tab[1 + strcspn(tab + 1, "\n")] = '\0';
    names[n] = strdup(line);
    vals[n] = strdup(tab + 1);
    n++;
  }
  free(line);
  fclose(fp);

  int st = UFM_OK;
  unsigned long iter = 0, next = 0, rows = 0, rank = 0;
  const char *fmt = manifest_get(names, vals, n, "format");
  const char *opt = manifest_get(names, vals, n, "optimizer");
  const char *cols = manifest_get(names, vals, n, "columns");
  const char *secs = manifest_get(names, vals, n, "seconds");
  const char *vmax = manifest_get(names, vals, n, "vmax");
  char *want_cols = NULL;
  {
    size_t len = 8;
    for (size_t k = 0; k < UFM_NMETRICS; k++) len += strlen(ufm_metric_names[k]) + 1;
    want_cols = ufm_malloc(len);
    strcpy(want_cols, "iter");
    for (size_t k = 0; k < UFM_NMETRICS; k++) {
      strcat(want_cols, ",");
      strcat(want_cols, ufm_metric_names[k]);
    }
  }
  if (!fmt || strcmp(fmt, CKPT_FORMAT))
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: not a checkpoint of format " CKPT_FORMAT, mpath);
  else if (!parse_ulong(manifest_get(names, vals, n, "iteration"), &iter)
           || !parse_ulong(manifest_get(names, vals, n, "log_next"), &next)
           || !parse_ulong(manifest_get(names, vals, n, "rows"), &rows)
           || !parse_ulong(manifest_get(names, vals, n, "rank_M"), &rank) || !secs || !vmax)
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: malformed checkpoint manifest", mpath);
  else if (!cols || strcmp(cols, want_cols))
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: written with other metric columns (another ufm "
                  "version); rerun from the start with --force", mpath);
  else if (!opt || strcmp(opt, o->type->name))
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: written for optimizer %s, the experiment uses %s", mpath,
                  opt ? opt : "?", o->type->name);
  else if (iter > cfg->iterations)
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: at iteration %lu, beyond the experiment's %lu", mpath,
                  iter, cfg->iterations);
  free(want_cols);

  if (st == UFM_OK) { /* the same experiment? */
    char *cpath = ufm_path_join(ck_dir, "config.ini");
    FILE *cf = fopen(cpath, "r");
    char *saved = NULL;
    size_t slen = 0;
    if (cf) {
      ssize_t got = getdelim(&saved, &slen, '\0', cf);
      if (got < 0) {
        free(saved);
        saved = NULL;
      }
      fclose(cf);
    }
    char *now = config_text(cfg);
    if (!saved || !same_experiment(saved, now))
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: the checkpoint belongs to another experiment (its "
                    "config.ini differs from this run's); rerun from the start with --force", cpath);
    free(saved);
    free(now);
    free(cpath);
  }

  double *tab = NULL;
  if (st == UFM_OK) {
    double *d;
    d = m->W->data;
    st = read_f8(ck_dir, "W.npy", 2, m->C, m->p, &d, errbuf);
    d = m->H->data;
    if (st == UFM_OK) st = read_f8(ck_dir, "H.npy", 2, m->p, m->N, &d, errbuf);
    d = m->b->data;
    if (st == UFM_OK) st = read_f8(ck_dir, "b.npy", 1, m->C, 0, &d, errbuf);
    if (st == UFM_OK && o->type->uses_velocity) {
      d = o->vW->data;
      st = read_f8(ck_dir, "vW.npy", 2, m->C, m->p, &d, errbuf);
      d = o->vH->data;
      if (st == UFM_OK) st = read_f8(ck_dir, "vH.npy", 2, m->p, m->N, &d, errbuf);
      d = o->vb->data;
      if (st == UFM_OK) st = read_f8(ck_dir, "vb.npy", 1, m->C, 0, &d, errbuf);
      if (st == UFM_OK) o->vmax = strtod(vmax, NULL);
    }
    if (st == UFM_OK) st = read_f8(ck_dir, "metrics.npy", 2, rows, 1 + UFM_NMETRICS, &tab, errbuf);
  }
  for (size_t r = 0; st == UFM_OK && r < rows; r++) { /* logged iterations: whole, rising, done */
    double it = tab[r * (1 + UFM_NMETRICS)];
    if (!(it >= 0 && it <= (double)iter && it == (double)(unsigned long)it
          && (r == 0 || it > tab[(r - 1) * (1 + UFM_NMETRICS)])))
      st = ufm_fail(errbuf, UFM_EINVAL, "%s/metrics.npy: row %zu: bad iteration", ck_dir, r);
  }
  if (st == UFM_OK) {
    size_t w = 1 + UFM_NMETRICS;
    memset(ck, 0, sizeof *ck);
    ck->iter = iter;
    ck->log_next = next;
    ck->rows = rows;
    ck->rank = rank;
    ck->seconds = strtod(secs, NULL);
    ck->row_iter = ufm_malloc((rows ? rows : 1) * sizeof *ck->row_iter);
    ck->row_vals = ufm_malloc((rows ? rows : 1) * UFM_NMETRICS * sizeof(double));
    for (size_t r = 0; r < rows; r++) {
      ck->row_iter[r] = (unsigned long)tab[r * w];
      memcpy(ck->row_vals + r * UFM_NMETRICS, tab + r * w + 1, UFM_NMETRICS * sizeof(double));
    }
  }
  free(tab);
  for (size_t k = 0; k < n; k++) {
    free(names[k]);
    free(vals[k]);
  }
  free(mpath);
  return st;
}

int ufm_ckpt_load(const char *dir, const ufm_config *cfg, ufm_model *m, ufm_optim *o, ufm_ckpt *ck,
                  int *found, char *errbuf)
{
  const char *names[] = {"checkpoint", "checkpoint.old"};
  *found = 0;
  memset(ck, 0, sizeof *ck); /* ufm_ckpt_clear is safe whatever happens */
  for (size_t k = 0; k < 2; k++) {
    char *p = ufm_path_join(dir, names[k]);
    int have = has_manifest(p);
    int st = have ? load_from(p, cfg, m, o, ck, errbuf) : UFM_OK;
    free(p);
    if (have) {
      *found = st == UFM_OK;
      return st;
    }
  }
  return UFM_OK;
}
