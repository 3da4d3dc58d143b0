/* sweep.c -- sweeps: points from grids, parallel runs, resume, shards, merge, tables.
 *
 * Contents: 1. building a sweep  2. points  3. sweep.ini
 *           4. tables (results, summary, timing)  5. running  6. merging
 *
 * Every table is a function of the point directories alone (nothing depends
 * on timing, thread count or completion order), so a sweep run on 1 or 2
 * threads, in shards, or resumed after an interruption gives byte-identical
 * results.tsv and summary.tsv. Wall times go to timing.tsv.
 */
#include "sweep.h"
#include "ufmconf.h" /* HAVE_MPI */
#include "common.h"
#include "fileio.h"
#include "interrupt.h"
#include "metrics.h"
#include "plot.h"
#include "progress.h"
#include "version.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---------------------------------------------------------- 1. building a sweep */

int ufm_sweep_build(ufm_sweep *sw, ufm_settings *set, const char *name, char *errbuf)
{
  memset(sw, 0, sizeof *sw);
  sw->set = *set;
  memset(set, 0, sizeof *set);
  sw->name = strdup(name);
  sw->seeds = 1;
  int st = UFM_OK;
  for (size_t k = 0; k < sw->set.n && st == UFM_OK; k++) {
    char **vals;
    size_t n;
    int geo;
    st = ufm_config_expand(sw->set.key[k], sw->set.value[k], sw->set.where[k], &vals, &n, &geo, errbuf);
    if (st != UFM_OK) break;
    if (!strcmp(sw->set.key[k], "seeds")) sw->seeds = (size_t)strtoull(vals[0], NULL, 10);
    if (!strcmp(sw->set.key[k], "out")) sw->out = strdup(vals[0]);
    if (n > 1) {
      sw->axes = realloc(sw->axes, (sw->naxes + 1) * sizeof *sw->axes);
      ufm_axis *a = &sw->axes[sw->naxes++];
      a->key = strdup(sw->set.key[k]);
      a->vals = vals;
      a->n = n;
      a->geometric = geo;
      a->where = strdup(sw->set.where[k]);
    } else {
      ufm_config_free_values(vals, n);
    }
  }
  if (st != UFM_OK) return st;
  double np = (double)sw->seeds;
  for (size_t a = 0; a < sw->naxes; a++) np *= (double)sw->axes[a].n;
  if (np > 1e7)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: %s: the sweep has %.3g points, more than 1e7",
                    sw->naxes ? sw->axes[0].where : "seeds", sw->naxes ? sw->axes[0].key : "seeds", np);
  sw->npoints = (size_t)np;
  if (!sw->out) {
    size_t n = strlen(name) + 6;
    sw->out = ufm_malloc(n);
    snprintf(sw->out, n, "runs/%s", name);
  }
  const char *why = ufm_out_path_problem(sw->out);
  if (why) {
    const char *where = "default";
    for (size_t k = 0; k < sw->set.n; k++)
      if (!strcmp(sw->set.key[k], "out")) where = sw->set.where[k];
    return ufm_fail(errbuf, UFM_EINVAL, "%s: out: %s", where, why);
  }
  /* every point must be a valid experiment before anything runs */
  for (size_t k = 0; k < sw->npoints && st == UFM_OK; k++) {
    ufm_config *cfg;
    st = ufm_sweep_point_config(sw, k, &cfg, errbuf);
    if (st == UFM_OK) ufm_config_free(cfg);
  }
  return st;
}

void ufm_sweep_free(ufm_sweep *sw)
{
  for (size_t a = 0; a < sw->naxes; a++) {
    free(sw->axes[a].key);
    free(sw->axes[a].where);
    ufm_config_free_values(sw->axes[a].vals, sw->axes[a].n);
  }
  free(sw->axes);
  ufm_settings_clear(&sw->set);
  free(sw->name);
  free(sw->out);
  memset(sw, 0, sizeof *sw);
}

/* -------------------------------------------------------------------- 2. points */

void ufm_sweep_point_coords(const ufm_sweep *sw, size_t k, size_t *idx, size_t *replica)
{
  *replica = k % sw->seeds;
  size_t r = k / sw->seeds;
  for (size_t a = sw->naxes; a-- > 0;) {
    idx[a] = r % sw->axes[a].n;
    r /= sw->axes[a].n;
  }
}

static char *point_dir(const ufm_sweep *sw, const char *dir, size_t k)
{
  if (!ufm_sweep_is_sweep(sw)) return strdup(dir);
  char name[32];
  snprintf(name, sizeof name, "p%04zu", k);
  return ufm_path_join(dir, name);
}

static const ufm_axis *axis_of(const ufm_sweep *sw, const char *key, size_t *pos)
{
  for (size_t a = 0; a < sw->naxes; a++)
    if (!strcmp(sw->axes[a].key, key)) {
      *pos = a;
      return &sw->axes[a];
    }
  return NULL;
}

int ufm_sweep_point_config(const ufm_sweep *sw, size_t k, ufm_config **ret, char *errbuf)
{
  size_t *idx = ufm_calloc(sw->naxes + 1, sizeof(size_t)), rep;
  ufm_sweep_point_coords(sw, k, idx, &rep);
  ufm_config *cfg = ufm_config_new();
  int st = UFM_OK;
  for (size_t s = 0; s < sw->set.n && st == UFM_OK; s++) {
    size_t a;
    const ufm_axis *ax = axis_of(sw, sw->set.key[s], &a);
    const char *v = ax ? ax->vals[idx[a]] : sw->set.value[s];
    if (!strcmp(sw->set.key[s], "seeds") || !strcmp(sw->set.key[s], "out")) continue;
    st = ufm_config_set(cfg, sw->set.key[s], v, sw->set.where[s], errbuf);
  }
  free(idx);
  if (st == UFM_OK) {
    cfg->seed += rep;
    cfg->seeds = 1;
    free(cfg->name);
    free(cfg->out);
    cfg->out = point_dir(sw, sw->out, k);
    if (ufm_sweep_is_sweep(sw)) {
      size_t n = strlen(sw->name) + 32;
      cfg->name = ufm_malloc(n);
      snprintf(cfg->name, n, "%s/p%04zu", sw->name, k);
    } else {
      cfg->name = strdup(sw->name);
    }
    st = ufm_config_finish(cfg, errbuf);
  }
  if (st != UFM_OK) {
    ufm_config_free(cfg);
    return st;
  }
  *ret = cfg;
  return UFM_OK;
}

void ufm_sweep_print_points(const ufm_sweep *sw, FILE *fp)
{
  size_t *idx = ufm_calloc(sw->naxes + 1, sizeof(size_t)), rep;
  fprintf(fp, "point\tdir");
  for (size_t a = 0; a < sw->naxes; a++) fprintf(fp, "\t%s", sw->axes[a].key);
  fprintf(fp, "\tseed\n");
  for (size_t k = 0; k < sw->npoints; k++) {
    ufm_config *cfg;
    char err[UFM_ERRBUF];
    if (ufm_sweep_point_config(sw, k, &cfg, err) != UFM_OK) continue; /* checked at build */
    ufm_sweep_point_coords(sw, k, idx, &rep);
    fprintf(fp, "%zu\t%s", k, cfg->out);
    for (size_t a = 0; a < sw->naxes; a++) fprintf(fp, "\t%s", sw->axes[a].vals[idx[a]]);
    fprintf(fp, "\t%lu\n", cfg->seed);
    ufm_config_free(cfg);
  }
  free(idx);
}

/* --------------------------------------------------------------- 3. sweep.ini */

char *ufm_sweep_ini_text(const ufm_sweep *sw)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *fp = open_memstream(&buf, &len);
  fprintf(fp, "# ufm sweep '%s': every key as written (grids unexpanded); rerun with: ufm run sweep.ini\n",
          sw->name);
  for (size_t k = 0; k < ufm_config_nkeys(); k++) {
    const char *key = ufm_config_key_name(k), *v = ufm_config_key_default(k);
    for (size_t s = 0; s < sw->set.n; s++)
      if (!strcmp(sw->set.key[s], key)) v = sw->set.value[s];
    if (!strcmp(key, "out")) v = sw->out;
    if (*v == '\0') continue; /* counts not given */
    fprintf(fp, "%s = %s\n", key, v);
  }
  fclose(fp);
  return buf;
}

static char *read_text(const char *path)
{
  FILE *fp = fopen(path, "r");
  if (!fp) return NULL;
  char *buf = NULL;
  size_t cap = 0, len = 0;
  char chunk[4096];
  size_t n;
  while ((n = fread(chunk, 1, sizeof chunk, fp)) > 0) {
    if (len + n + 1 > cap) {
      cap = 2 * (len + n + 1);
      buf = realloc(buf, cap);
      if (!buf) abort();
    }
    memcpy(buf + len, chunk, n);
    len += n;
  }
  fclose(fp);
  if (!buf) buf = ufm_calloc(1, 1);
  buf[len] = '\0';
  return buf;
}

/* The next line of a sweep.ini text that matters (ufm_config_line_ignored). */
static const char *next_setting(const char *s)
{
  while (ufm_config_line_ignored(s)) {
    const char *e = strchr(s, '\n');
    if (!e) return s + strlen(s);
    s = e + 1;
  }
  return s;
}

/* sweep.ini texts equal outside the lines that do not change the numbers. */
static int same_sweep_text(const char *a, const char *b)
{
  for (;;) {
    a = next_setting(a);
    b = next_setting(b);
    if (!*a || !*b) return !*a && !*b;
    const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
    size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
    if (la != lb || strncmp(a, b, la)) return 0;
    a += la + (ea != NULL);
    b += lb + (eb != NULL);
  }
}

int ufm_sweep_load_dir(ufm_sweep *sw, const char *dir, char *errbuf)
{
  char *path = ufm_path_join(dir, "sweep.ini");
  ufm_settings s = {0};
  int st = ufm_settings_read(&s, path, errbuf);
  char *name = ufm_config_name_from_path(path);
  if (st == UFM_OK) st = ufm_sweep_build(sw, &s, name, errbuf);
  ufm_settings_clear(&s);
  free(name);
  free(path);
  return st;
}

/* ------------------------------------------- 4. tables (results, summary, timing) */

/* summary.tsv of a point as name/value pairs (values kept as written). */
typedef struct {
  size_t n;
  char **name, **value;
} kvlist;

static void kv_free(kvlist *kv)
{
  for (size_t k = 0; k < kv->n; k++) {
    free(kv->name[k]);
    free(kv->value[k]);
  }
  free(kv->name);
  free(kv->value);
  memset(kv, 0, sizeof *kv);
}

static int kv_read(kvlist *kv, const char *path)
{
  memset(kv, 0, sizeof *kv);
  FILE *fp = fopen(path, "r");
  if (!fp) return 0;
  char *line = NULL;
  size_t cap = 0;
  while (getline(&line, &cap, fp) != -1) {
    char *tab = strchr(line, '\t');
    if (!tab) continue;
    *tab = '\0';
    tab[1 + strcspn(tab + 1, "\n")] = '\0';
    kv->name = realloc(kv->name, (kv->n + 1) * sizeof(char *));
    kv->value = realloc(kv->value, (kv->n + 1) * sizeof(char *));
    if (!kv->name || !kv->value) abort();
    kv->name[kv->n] = strdup(line);
    kv->value[kv->n] = strdup(tab + 1);
    kv->n++;
  }
  free(line);
  fclose(fp);
  return 1;
}

static const char *kv_get(const kvlist *kv, const char *name)
{
  for (size_t k = 0; k < kv->n; k++)
    if (!strcmp(kv->name[k], name)) return kv->value[k];
  return NULL;
}

/* A point is done when its summary.tsv exists (written last, atomically). */
static int point_done(const char *pdir, kvlist *kv)
{
  char *path = ufm_path_join(pdir, "summary.tsv");
  int ok = kv_read(kv, path) && kv_get(kv, "status");
  free(path);
  if (!ok) kv_free(kv);
  return ok;
}

int ufm_sweep_tables(const ufm_sweep *sw, const char *dir, char *errbuf)
{
  ufm_afile res, sum, tim;
  int st = ufm_afile_open_in(&res, dir, "results.tsv", errbuf);
  if (st != UFM_OK) return st;
  if ((st = ufm_afile_open_in(&sum, dir, "summary.tsv", errbuf)) != UFM_OK) {
    ufm_afile_abort(&res);
    return st;
  }
  if ((st = ufm_afile_open_in(&tim, dir, "timing.tsv", errbuf)) != UFM_OK) {
    ufm_afile_abort(&res);
    ufm_afile_abort(&sum);
    return st;
  }
  /* headers */
  fputs("point\tdir", res.fp);
  for (size_t a = 0; a < sw->naxes; a++) {
    fprintf(res.fp, "\t%s", sw->axes[a].key);
    fprintf(sum.fp, "%s\t", sw->axes[a].key);
  }
  fputs("\tseed\tstatus\titerations", res.fp);
  fputs("seeds\tfinished", sum.fp);
  for (size_t m = 0; m < UFM_NMETRICS; m++) {
    fprintf(res.fp, "\t%s", ufm_metric_names[m]);
    fprintf(sum.fp, "\t%s_mean\t%s_std", ufm_metric_names[m], ufm_metric_names[m]);
  }
  fputc('\n', res.fp);
  fputc('\n', sum.fp);
  fputs("point\tdir\tstatus\tseconds\titers_per_sec\n", tim.fp);

  size_t *idx = ufm_calloc(sw->naxes + 1, sizeof(size_t)), rep;
  double *vals = ufm_calloc(sw->seeds * UFM_NMETRICS, sizeof(double));
  size_t nfin = 0, ndone = 0;
  for (size_t k = 0; k < sw->npoints; k++) {
    ufm_sweep_point_coords(sw, k, idx, &rep);
    char *pdir = point_dir(sw, dir, k), *rel = strrchr(pdir, '/');
    rel = rel ? rel + 1 : pdir;
    kvlist kv;
    int done = point_done(pdir, &kv);
    if (done) {
      const char *status = kv_get(&kv, "status"), *it = kv_get(&kv, "iterations");
      fprintf(res.fp, "%zu\t%s", k, rel);
      for (size_t a = 0; a < sw->naxes; a++) fprintf(res.fp, "\t%s", sw->axes[a].vals[idx[a]]);
      ufm_config *cfg;
      unsigned long seed = 0;
      if (ufm_sweep_point_config(sw, k, &cfg, NULL) == UFM_OK) {
        seed = cfg->seed;
        ufm_config_free(cfg);
      }
      fprintf(res.fp, "\t%lu\t%s\t%s", seed, status, it ? it : "nan");
      for (size_t m = 0; m < UFM_NMETRICS; m++) {
        const char *v = kv_get(&kv, ufm_metric_names[m]);
        fprintf(res.fp, "\t%s", v ? v : "nan");
        vals[ndone * UFM_NMETRICS + m] = v ? strtod(v, NULL) : NAN;
      }
      fputc('\n', res.fp);
      const char *secs = kv_get(&kv, "wall_time"), *ips = kv_get(&kv, "iters_per_sec");
      fprintf(tim.fp, "%zu\t%s\t%s\t%s\t%s\n", k, rel, status, secs ? secs : "nan", ips ? ips : "nan");
      if (!strcmp(status, "finished") || !strcmp(status, "converged")) nfin++;
      ndone++;
      kv_free(&kv);
    }
    free(pdir);
    /* the last replica of a grid point: one summary row over its seeds */
    if (rep == sw->seeds - 1) {
      for (size_t a = 0; a < sw->naxes; a++) fprintf(sum.fp, "%s\t", sw->axes[a].vals[idx[a]]);
      fprintf(sum.fp, "%zu\t%zu", ndone, nfin);
      for (size_t m = 0; m < UFM_NMETRICS; m++) {
        double s = 0, v = 0;
        for (size_t j = 0; j < ndone; j++) s += vals[j * UFM_NMETRICS + m];
        double mean = ndone ? s / (double)ndone : NAN;
        for (size_t j = 0; j < ndone; j++) {
          double d = vals[j * UFM_NMETRICS + m] - mean;
          v += d * d;
        }
        fprintf(sum.fp, "\t%.17g\t%.17g", mean, ndone ? sqrt(v / (double)ndone) : NAN);
      }
      fputc('\n', sum.fp);
      nfin = ndone = 0;
    }
  }
  free(idx);
  free(vals);
  st = ufm_afile_commit(&res, errbuf);
  int st2 = ufm_afile_commit(&sum, errbuf), st3 = ufm_afile_commit(&tim, errbuf);
  return st != UFM_OK ? st : st2 != UFM_OK ? st2 : st3;
}

/* ------------------------------------------------------------------ 5. running */

/* The sweep directory: new, the same sweep (resume), or refused. */
static int prepare_sweep_dir(const ufm_sweep *sw, const char *text, int force, char *errbuf)
{
  struct stat sb;
  if (stat(sw->out, &sb) == 0) {
    if (!S_ISDIR(sb.st_mode))
      return ufm_fail(errbuf, UFM_EINVAL, "out: %s exists and is not a directory", sw->out);
    if (ufm_dir_is_foreign(sw->out))
      return ufm_fail(errbuf, UFM_EINVAL, "out: %s is a directory holding files that are not a ufm "
                      "sweep; ufm writes only into a new or empty directory or an earlier sweep's "
                      "(even with --force); give another out=DIR", sw->out);
    char *ini = ufm_path_join(sw->out, "sweep.ini"), *cfgp = ufm_path_join(sw->out, "config.ini");
    char *old = read_text(ini);
    int is_run = access(cfgp, F_OK) == 0;
    free(ini);
    free(cfgp);
    int differs = old && !same_sweep_text(old, text);
    free(old);
    if (!force && is_run)
      return ufm_fail(errbuf, UFM_EINVAL, "out: %s holds a single run, not this sweep; give --force "
                      "to replace it, or out=DIR", sw->out);
    if (!force && differs)
      return ufm_fail(errbuf, UFM_EINVAL, "out: %s holds a different sweep (its sweep.ini differs); "
                      "give --force to replace it, or out=DIR", sw->out);
  }
  int st = ufm_mkdirs(sw->out, errbuf);
  if (st != UFM_OK) return st;
  char *ini = ufm_path_join(sw->out, "sweep.ini");
  ufm_afile af;
  st = ufm_afile_open(&af, ini, errbuf);
  free(ini);
  if (st != UFM_OK) return st;
  fputs(text, af.fp);
  return ufm_afile_commit(&af, errbuf);
}

static int sweep_run_local(const ufm_sweep *sw, const ufm_sweep_opts *opts, char *errbuf);

/* init_from's files against every point's shapes, before the sweep directory
 * exists: bad input is reported before anything is written (exit 2), not
 * as a failure of each point. Consecutive points of the same shape share a
 * check. */
static int check_init_from(const ufm_sweep *sw, char *errbuf)
{
  size_t lastC = 0, lastp = 0, lastN = 0;
  int lastbias = -1, st = UFM_OK;
  for (size_t k = 0; k < sw->npoints && st == UFM_OK; k++) {
    ufm_config *cfg;
    if ((st = ufm_sweep_point_config(sw, k, &cfg, errbuf)) != UFM_OK) break;
    size_t N = 0;
    for (size_t c = 0; c < cfg->classes; c++) N += cfg->counts[c];
    if (!cfg->init_from) {
      ufm_config_free(cfg);
      break; /* init_from is not sweepable: no point has one */
    }
    if (cfg->classes != lastC || cfg->dim != lastp || N != lastN || cfg->bias != lastbias) {
      ufm_model *m = ufm_model_alloc(cfg->classes, cfg->dim, cfg->counts, cfg->bias);
      if (!m) st = ufm_fail(errbuf, UFM_ENOMEM, "out of memory allocating the model");
      else st = ufm_state_load(m, cfg->init_from, errbuf);
      ufm_model_free(m);
      lastC = cfg->classes;
      lastp = cfg->dim;
      lastN = N;
      lastbias = cfg->bias;
    }
    ufm_config_free(cfg);
  }
  return st;
}

/* One point into its directory, quietly: continued from its checkpoint when
 * an interrupted run left one (not with --force), else run afresh, replacing
 * what an interrupted run left. */
static int run_point(const ufm_sweep *sw, const ufm_sweep_opts *opts, size_t k, char *err)
{
  ufm_config *cfg;
  int s = ufm_sweep_point_config(sw, k, &cfg, err);
  if (s == UFM_OK) {
    ufm_run_opts ro = opts->run;
    ro.quiet = 1;
    ro.force = 1;
    ro.noplot = 1;
    ro.resume = !opts->force;
    s = ufm_run(cfg, &ro, err);
    ufm_config_free(cfg);
  }
  return s;
}

typedef struct {
  const char *name;
  size_t total, done;
  int quiet;
} progress_state;

static void report_point(progress_state *pr, size_t k, int s, double secs)
{
  pr->done++;
  if (!pr->quiet)
    fprintf(stderr, "%s: point %zu/%zu (p%04zu) %s in %.2f s\n", pr->name, pr->done, pr->total, k,
            s == UFM_OK ? "finished" : s == UFM_EDIVERGED ? "diverged"
            : s == UFM_EINTR ? "interrupted (checkpoint saved)" : "FAILED", secs);
}

#ifdef HAVE_MPI
/* MPI: rank 0 hands out point indices one at a time to ranks 1..size-1
 * (dynamic load balancing) and collects their statuses; the workers write
 * their points' directories themselves (a shared file system), and rank 0
 * alone writes the sweep's tables afterwards. */
#include <mpi.h>

enum { TAG_READY = 1, TAG_WORK = 2, TAG_DONE = 3 };

static int mpi_size(void)
{
  int n = 1, init = 0;
  MPI_Initialized(&init);
  if (init) MPI_Comm_size(MPI_COMM_WORLD, &n);
  return n;
}

static void mpi_master(const ufm_sweep *sw, const ufm_sweep_opts *opts, const size_t *todo,
                       size_t ntodo, int *pst, char **perr, progress_state *pr)
{
  (void)sw;
  (void)opts;
  int size = mpi_size(), active = size - 1;
  size_t next = 0;
  double *t0 = ufm_calloc((size_t)size, sizeof(double));
  long *slot = ufm_calloc((size_t)size, sizeof(long));
  while (active > 0) {
    /* a worker's message: {slot, status} (slot -1: ready, nothing done) */
    long msg[2];
    MPI_Status ms;
    MPI_Recv(msg, 2, MPI_LONG, MPI_ANY_SOURCE, TAG_DONE, MPI_COMM_WORLD, &ms);
    int w = ms.MPI_SOURCE;
    if (msg[0] >= 0) {
      pst[msg[0]] = (int)msg[1];
      if (msg[1] != UFM_OK) {
        char buf[64];
        snprintf(buf, sizeof buf, "point p%04zu failed on rank %d", todo[msg[0]], w);
        perr[msg[0]] = strdup(buf);
      }
      report_point(pr, todo[msg[0]], (int)msg[1], ufm_clock() - t0[w]);
    }
    long job[2] = {-1, -1};
    if (next < ntodo && !ufm_stop_requested()) { /* after a stop signal: no new points */
      job[0] = (long)next;
      job[1] = (long)todo[next];
      next++;
      t0[w] = ufm_clock();
    } else {
      active--;
    }
    MPI_Send(job, 2, MPI_LONG, w, TAG_WORK, MPI_COMM_WORLD);
  }
  free(t0);
  free(slot);
}

/* Ranks > 0: ask for work until told to stop. */
static void mpi_worker(const ufm_sweep *sw, const ufm_sweep_opts *opts)
{
  long msg[2] = {-1, 0};
  for (;;) {
    MPI_Send(msg, 2, MPI_LONG, 0, TAG_DONE, MPI_COMM_WORLD);
    long job[2];
    MPI_Recv(job, 2, MPI_LONG, 0, TAG_WORK, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (job[0] < 0) return;
    char err[UFM_ERRBUF] = "";
    int s = run_point(sw, opts, (size_t)job[1], err);
    if (s != UFM_OK) fprintf(stderr, "ufm: %s\n", err);
    msg[0] = job[0];
    msg[1] = s;
  }
}

int ufm_mpi_rank(void)
{
  int r = 0, init = 0;
  MPI_Initialized(&init);
  if (init) MPI_Comm_rank(MPI_COMM_WORLD, &r);
  return r;
}
#else
int ufm_mpi_rank(void) { return 0; }
#endif

int ufm_sweep_run(const ufm_sweep *sw, const ufm_sweep_opts *opts, char *errbuf)
{
#ifdef HAVE_MPI
  /* under mpirun: rank 0 prepares the directory and schedules, the other
   * ranks only run points; a plain run is rank 0's alone */
  if (mpi_size() > 1) {
    int rank = ufm_mpi_rank(), st = UFM_OK;
    if (rank != 0) {
      int go = 0;
      MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD);
      if (go && ufm_sweep_is_sweep(sw)) mpi_worker(sw, opts);
      MPI_Barrier(MPI_COMM_WORLD);
      return UFM_OK;
    }
    int go = ufm_sweep_is_sweep(sw);
    char *text = go ? ufm_sweep_ini_text(sw) : NULL;
    if (go) st = check_init_from(sw, errbuf);
    if (go && st == UFM_OK) {
      st = prepare_sweep_dir(sw, text, opts->force, errbuf);
      go = st == UFM_OK;
    }
    free(text);
    MPI_Bcast(&go, 1, MPI_INT, 0, MPI_COMM_WORLD);
    if (st == UFM_OK) st = sweep_run_local(sw, opts, errbuf);
    MPI_Barrier(MPI_COMM_WORLD);
    return st;
  }
#endif
  if (ufm_sweep_is_sweep(sw)) {
    int st = check_init_from(sw, errbuf);
    if (st != UFM_OK) return st;
    char *text = ufm_sweep_ini_text(sw);
    st = prepare_sweep_dir(sw, text, opts->force, errbuf);
    free(text);
    if (st != UFM_OK) return st;
  }
  return sweep_run_local(sw, opts, errbuf);
}

/* Largest points first (cost ~ C p N iterations): the threads then finish
 * together instead of one waiting on the last big point. The order of
 * running changes nothing in the results. */
typedef struct {
  double cost;
  size_t k;
} costed;

static int by_cost_desc(const void *a, const void *b)
{
  const costed *x = a, *y = b;
  if (x->cost != y->cost) return x->cost < y->cost ? 1 : -1;
  return (x->k > y->k) - (x->k < y->k);
}

static void sort_by_cost(const ufm_sweep *sw, size_t *todo, size_t n)
{
  costed *c = ufm_malloc((n ? n : 1) * sizeof *c);
  for (size_t t = 0; t < n; t++) {
    ufm_config *cfg;
    c[t].k = todo[t];
    c[t].cost = 0;
    if (ufm_sweep_point_config(sw, todo[t], &cfg, NULL) == UFM_OK) {
      double N = 0;
      for (size_t q = 0; q < cfg->classes; q++) N += (double)cfg->counts[q];
      c[t].cost = (double)cfg->classes * (double)cfg->dim * N * ((double)cfg->iterations + 1);
      ufm_config_free(cfg);
    }
  }
  qsort(c, n, sizeof *c, by_cost_desc);
  for (size_t t = 0; t < n; t++) todo[t] = c[t].k;
  free(c);
}

/* After the directory is prepared: run the points (threads or MPI ranks),
 * then the tables and figures. */
static int sweep_run_local(const ufm_sweep *sw, const ufm_sweep_opts *opts, char *errbuf)
{
  if (!ufm_sweep_is_sweep(sw)) { /* a plain run: OUT is its run directory */
    ufm_config *cfg;
    int st = ufm_sweep_point_config(sw, 0, &cfg, errbuf);
    if (st != UFM_OK) return st;
    ufm_run_opts ro = opts->run;
    ro.quiet = opts->quiet;
    ro.force = opts->force;
    ro.noplot = opts->noplot;
    if (opts->force) ro.resume = 0;
    st = ufm_run(cfg, &ro, errbuf);
    ufm_config_free(cfg);
    return st;
  }

  int st;
  /* the points of this shard still to run */
  size_t *todo = ufm_malloc(sw->npoints * sizeof(size_t)), ntodo = 0, nskip = 0;
  for (size_t k = 0; k < sw->npoints; k++) {
    if (opts->nshards > 1 && k % opts->nshards != opts->shard) continue;
    char *pdir = point_dir(sw, sw->out, k);
    kvlist kv;
    int done = !opts->force && point_done(pdir, &kv);
    if (done) {
      kv_free(&kv);
      nskip++;
    } else {
      todo[ntodo++] = k;
    }
    free(pdir);
  }
  sort_by_cost(sw, todo, ntodo);
  if (!opts->quiet)
    fprintf(stderr, "%s: %zu points (%zu to run, %zu already finished) on %d thread%s -> %s\n",
            sw->name, sw->npoints, ntodo, nskip, ufm_threads(), ufm_threads() > 1 ? "s" : "",
            sw->out);

  /* pst: each point's status; -1 for a point not started (a stop signal came first) */
  int *pst = ufm_calloc(ntodo ? ntodo : 1, sizeof(int));
  for (size_t t = 0; t < ntodo; t++) pst[t] = -1;
  char **perr = ufm_calloc(ntodo ? ntodo : 1, sizeof(char *));
  progress_state pr = {sw->name, ntodo, 0, opts->quiet};
  double t0 = ufm_clock();
#ifdef HAVE_MPI
  if (mpi_size() > 1) {
    mpi_master(sw, opts, todo, ntodo, pst, perr, &pr);
  } else
#endif
  {
    /* points in parallel; inside a point, products and passes run serially
     * (nested regions are inactive) and the BLAS is single-threaded */
#pragma omp parallel for schedule(dynamic, 1) if (ntodo > 1)
    for (size_t t = 0; t < ntodo; t++) {
      if (ufm_stop_requested()) { /* stop handing out points; those in flight checkpoint */
        pst[t] = -1;
        continue;
      }
      char err[UFM_ERRBUF] = "";
      double ts = ufm_clock();
      pst[t] = run_point(sw, opts, todo[t], err);
      if (pst[t] != UFM_OK) perr[t] = strdup(err);
#pragma omp critical(ufm_sweep_progress)
      report_point(&pr, todo[t], pst[t], ufm_clock() - ts);
    }
  }

  size_t nbad = 0, nstopped = 0;
  for (size_t t = 0; t < ntodo; t++) {
    if (pst[t] == -1 || pst[t] == UFM_EINTR) nstopped++;
    else if (pst[t] != UFM_OK && nbad++ < 5) fprintf(stderr, "ufm: %s\n", perr[t]);
    free(perr[t]);
  }
  free(perr);
  free(pst);
  free(todo);
  if (!opts->quiet)
    fprintf(stderr, "%s: %zu points in %.2f s, %zu failed or diverged%s\n", sw->name,
            ntodo - nstopped, ufm_clock() - t0, nbad, nstopped ? ", the rest interrupted" : "");

  st = ufm_sweep_tables(sw, sw->out, errbuf);
  if (st == UFM_OK && ufm_stop_requested() && nstopped > 0) { /* (all done anyway: success) */
    char *q = ufm_shell_quote(sw->out);
    st = ufm_fail(errbuf, UFM_EINTR, "%s: interrupted by %s: %zu of %zu points of this run left "
                  "unfinished (those in flight saved checkpoints); continue with: ufm run --resume %s",
                  sw->out, ufm_signal_name(ufm_stop_signal), nstopped, ntodo, q);
    free(q);
    return st;
  }
  if (st == UFM_OK && !opts->noplot) {
    char perr2[UFM_ERRBUF];
    if (ufm_plot_sweep(sw, sw->out, NULL, perr2) != UFM_OK)
      fprintf(stderr, "ufm: warning: sweep figures incomplete: %s\n", perr2);
    else if (!opts->quiet)
      fprintf(stderr, "%s: figures %s/sweep.png (and .pdf)\n", sw->name, sw->out);
  }
  if (st == UFM_OK && nbad > 0)
    st = ufm_fail(errbuf, UFM_EDIVERGED, "%s: %zu of %zu points failed or diverged (see results.tsv)",
                  sw->out, nbad, ntodo);
  return st;
}

/* --------------------------------------------------------------------- 6. merging */

/* Hard-link (or copy) every regular file of src into the new directory dst. */
static int link_dir(const char *src, const char *dst, char *errbuf)
{
  int st = ufm_mkdirs(dst, errbuf);
  if (st != UFM_OK) return st;
  DIR *d = opendir(src);
  if (!d) return ufm_fail(errbuf, UFM_EIO, "%s: cannot read: %s", src, strerror(errno));
  struct dirent *e;
  while (st == UFM_OK && (e = readdir(d))) {
    if (e->d_name[0] == '.') continue;
    char *a = ufm_path_join(src, e->d_name), *b = ufm_path_join(dst, e->d_name);
    struct stat sb;
    if (stat(a, &sb) == 0 && S_ISREG(sb.st_mode)) {
      unlink(b);
      if (link(a, b) != 0) {
        FILE *in = fopen(a, "rb");
        ufm_afile af;
        if (!in) st = ufm_fail(errbuf, UFM_EIO, "%s: cannot read: %s", a, strerror(errno));
        else if ((st = ufm_afile_open(&af, b, errbuf)) == UFM_OK) {
          char buf[1 << 16];
          size_t n;
          while ((n = fread(buf, 1, sizeof buf, in)) > 0) fwrite(buf, 1, n, af.fp);
          st = ufm_afile_commit(&af, errbuf);
        }
        if (in) fclose(in);
      }
    }
    free(a);
    free(b);
  }
  closedir(d);
  return st;
}

int ufm_sweep_merge(char *const *dirs, size_t ndirs, const char *out, int force, char *errbuf)
{
  if (ndirs == 0) return ufm_fail(errbuf, UFM_EINVAL, "merge: no directories given");
  ufm_sweep sw;
  int st = ufm_sweep_load_dir(&sw, dirs[0], errbuf);
  if (st != UFM_OK) return st;
  char *text0 = ufm_sweep_ini_text(&sw);
  for (size_t d = 1; d < ndirs && st == UFM_OK; d++) {
    ufm_sweep other;
    if ((st = ufm_sweep_load_dir(&other, dirs[d], errbuf)) != UFM_OK) break;
    char *t = ufm_sweep_ini_text(&other);
    if (!same_sweep_text(text0, t))
      st = ufm_fail(errbuf, UFM_EINVAL, "merge: %s and %s hold different sweeps (sweep.ini differs)",
                    dirs[0], dirs[d]);
    free(t);
    ufm_sweep_free(&other);
  }
  free(text0);
  if (st == UFM_OK) {
    free(sw.out);
    sw.out = strdup(out);
    char *text = ufm_sweep_ini_text(&sw);
    st = prepare_sweep_dir(&sw, text, force, errbuf);
    free(text);
  }
  for (size_t k = 0; k < sw.npoints && st == UFM_OK; k++) {
    for (size_t d = 0; d < ndirs; d++) {
      char *src = point_dir(&sw, dirs[d], k);
      kvlist kv;
      int done = point_done(src, &kv);
      if (done) {
        kv_free(&kv);
        char *dst = point_dir(&sw, out, k);
        st = link_dir(src, dst, errbuf);
        free(dst);
        free(src);
        break;
      }
      free(src);
    }
  }
  if (st == UFM_OK) st = ufm_sweep_tables(&sw, out, errbuf);
  if (st == UFM_OK) {
    char perr[UFM_ERRBUF];
    if (ufm_plot_sweep(&sw, out, NULL, perr) != UFM_OK) fprintf(stderr, "ufm: warning: sweep figures incomplete: %s\n", perr);
  }
  ufm_sweep_free(&sw);
  return st;
}
