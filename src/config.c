/* config.c -- the experiment-file keys as one table: parsing, ranges, defaults, writing back.
 *
 * Contents: 1. the key table  2. values  3. files and overrides
 *           4. cross-key checks  5. output
 *
 * Every error names where the offending value came from ("FILE:LINE" or
 * "command line"), the key, and what is wrong; nothing is run before the
 * whole experiment has been read and checked.
 */
#include "config.h"
#include "common.h"
#include "fileio.h"
#include "model.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

/* ----------------------------------------------------------- 1. the key table */

typedef enum { K_SIZE, K_ULONG, K_DOUBLE, K_BOOL, K_LOSS, K_OPTIM, K_IMB, K_STRING, K_COUNTS, K_FIGSTYLE, K_FIGWIDTH } ktype;

enum { LO_INCL = 0, LO_EXCL = 1, HI_EXCL = 2 }; /* are the bounds themselves allowed? */

typedef struct {
  const char *name;
  ktype type;
  size_t off;
  const char *def;
  double lo, hi; /* numeric range */
  int excl; /* LO_EXCL | HI_EXCL */
  const char *help;
} keydef;

#define OFF(f) offsetof(ufm_config, f)
#define BIG 9007199254740992.0 /* 2^53: integers beyond are not exact as doubles */

static const keydef keys[] = {
    {"classes", K_SIZE, OFF(classes), "10", 2, 1e6, LO_INCL, "number of classes C"},
    {"dim", K_SIZE, OFF(dim), "32", 1, 1e8, LO_INCL, "feature dimension p"},
    {"n", K_SIZE, OFF(n), "20", 1, 1e9, LO_INCL, "samples per class (per majority class)"},
    {"counts", K_COUNTS, OFF(counts), "", 1, 1e9, LO_INCL,
     "explicit per-class counts n_1,n_2,... (sets C; overrides n)"},
    {"imbalance", K_IMB, OFF(imbalance), "none", 0, 0, LO_INCL, "none, step or exp"},
    {"ratio", K_DOUBLE, OFF(ratio), "1", 1, 1e12, LO_INCL, "imbalance ratio R >= 1"},
    {"majority", K_SIZE, OFF(majority), "0", 0, 1e6, LO_INCL,
     "number of majority classes for step imbalance (0: C/2)"},
    {"loss", K_LOSS, OFF(loss), "ce", 0, 0, LO_INCL, "ce or mse"},
    {"bias", K_BOOL, OFF(bias), "true", 0, 0, LO_INCL, "learn a bias b (true/false)"},
    {"lambda_W", K_DOUBLE, OFF(lambda_W), "5e-3", 0, 1e12, LO_INCL, "weight decay on W"},
    {"lambda_H", K_DOUBLE, OFF(lambda_H), "5e-3", 0, 1e12, LO_INCL, "weight decay on H"},
    {"lambda_b", K_DOUBLE, OFF(lambda_b), "0", 0, 1e12, LO_INCL, "weight decay on b"},
    {"optimizer", K_OPTIM, OFF(optimizer), "gd", 0, 0, LO_INCL, "gd, momentum or ngd (step lr/loss)"},
    {"momentum", K_DOUBLE, OFF(momentum), "0.9", 0, 1, HI_EXCL, "heavy-ball coefficient mu, 0 <= mu < 1"},
    {"lr", K_DOUBLE, OFF(lr), "2", 0, 1e12, LO_EXCL, "step size > 0"},
    {"iterations", K_ULONG, OFF(iterations), "10000", 0, 1e15, LO_INCL, "number of GD steps"},
    {"init_scale", K_DOUBLE, OFF(init_scale), "0.1", 0, 1e12, LO_INCL,
     "standard deviation of the initial entries of W and H"},
    {"seed", K_ULONG, OFF(seed), "1", 0, 4294967295.0, LO_INCL, "seed of gsl_rng_mt19937"},
    {"init_from", K_STRING, OFF(init_from), "none", 0, 0, LO_INCL,
     "directory with W.npy, H.npy (and b.npy) to start from, or none"},
    {"log_points", K_SIZE, OFF(log_points), "100", 1, 1e7, LO_INCL,
     "logged iterations, log-spaced (plus 0 and the last)"},
    {"compute_seli_H", K_BOOL, OFF(compute_seli_H), "true", 0, 0, LO_INCL,
     "compute seli_H, whose exact norm needs the Gram of H's shorter side (false: nan, cheaper)"},
    {"seeds", K_SIZE, OFF(seeds), "1", 1, 1e6, LO_INCL, "repeat with this many seeds (sweeps)"},
    {"constraint_W", K_DOUBLE, OFF(constraint_W), "0", 0, 1e12, LO_INCL,
     "layer-peeled bound E_W (0: none)"},
    {"constraint_H", K_DOUBLE, OFF(constraint_H), "0", 0, 1e12, LO_INCL,
     "layer-peeled bound E_H (0: none)"},
    {"checkpoint_every", K_ULONG, OFF(checkpoint_every), "0", 0, 1e15, LO_INCL,
     "iterations between checkpoints (0: none)"},
    {"checkpoint_minutes", K_DOUBLE, OFF(checkpoint_minutes), "10", 0, 1e9, LO_INCL,
     "minutes of wall time between checkpoints (0: none)"},
    {"tol", K_DOUBLE, OFF(tol), "0", 0, 1e12, LO_INCL,
     "stop as converged once the gradient norm is <= tol (0: never)"},
    {"out", K_STRING, OFF(out), "", 0, 0, LO_INCL, "run directory (default runs/NAME)"},
    {"figure_style", K_FIGSTYLE, OFF(figure_style), "screen", 0, 0, LO_INCL,
     "PDF figures: screen (DejaVu Sans, 9 in wide) or paper (vector, Latin Modern, figure_width)"},
    {"figure_width", K_FIGWIDTH, OFF(figure_width), "page", 1, 40, LO_INCL,
     "paper figures' width: column (3.4 in), page (7 in), or a length like 12cm, 5in"},
    {"grams_classes", K_SIZE, OFF(grams_classes), "1000", 0, 1e6, LO_INCL,
     "grams.npy holds the Gram matrices of at most this many classes (every K-th above; 0: none)"},
};
#define NKEYS (sizeof keys / sizeof keys[0])

static const keydef *key_lookup(const char *name)
{
  for (size_t k = 0; k < NKEYS; k++)
    if (strcmp(keys[k].name, name) == 0) return &keys[k];
  return NULL;
}

int ufm_config_is_key(const char *name) { return key_lookup(name) != NULL; }

static size_t key_index(const keydef *kd) { return (size_t)(kd - keys); }

/* -------------------------------------------------------------------- 2. values */

static char *trim(char *s)
{
  while (isspace((unsigned char)*s)) s++;
  size_t n = strlen(s);
  while (n > 0 && isspace((unsigned char)s[n - 1])) s[--n] = '\0';
  return s;
}

/* A whole-string finite number. */
static int parse_double(const char *s, double *x)
{
  if (*s == '\0' || isspace((unsigned char)*s) || strpbrk(s, "xXpP")) return 0; /* no hex floats */
  char *end;
  errno = 0;
  double v = strtod(s, &end);
  if (*end != '\0' || errno == ERANGE || !isfinite(v)) return 0;
  *x = v;
  return 1;
}

/* A non-negative integer, written plainly or as an exact float (1e5). */
static int parse_uint(const char *s, double *x)
{
  double v;
  if (!parse_double(s, &v) || v < 0 || v != floor(v) || v > BIG) return 0;
  *x = v;
  return 1;
}

static int looks_like_sweep(const char *v)
{
  if (strchr(v, ',')) return 1;
  if (strncmp(v, "log:", 4) == 0) return 1;
  const char *c1 = strchr(v, ':');
  return c1 && strchr(c1 + 1, ':');
}

static int range_error(const keydef *kd, const char *where, const char *v, char *errbuf)
{
  char lo[64], hi[64];
  snprintf(lo, sizeof lo, "%g", kd->lo);
  snprintf(hi, sizeof hi, "%g", kd->hi);
  return ufm_fail(errbuf, UFM_EINVAL, "%s: %s: %s is out of range (must be %s %s and %s %s)",
                  where, kd->name, v, (kd->excl & LO_EXCL) ? ">" : ">=", lo,
                  (kd->excl & HI_EXCL) ? "<" : "<=", hi);
}

static int check_range(const keydef *kd, double x, const char *where, const char *v, char *errbuf)
{
  if (x < kd->lo || ((kd->excl & LO_EXCL) && x == kd->lo) || x > kd->hi
      || ((kd->excl & HI_EXCL) && x == kd->hi))
    return range_error(kd, where, v, errbuf);
  return UFM_OK;
}

/* figure_width: column, page, or a positive length in in, cm or mm. */
static int parse_figwidth(const keydef *kd, const char *v, double *w, const char *where, char *errbuf)
{
  if (!strcmp(v, "column")) {
    *w = UFM_FIG_COLUMN_IN;
    return UFM_OK;
  }
  if (!strcmp(v, "page")) {
    *w = UFM_FIG_PAGE_IN;
    return UFM_OK;
  }
  size_t n = strlen(v);
  double unit = 0, x;
  if (n > 2 && !strcmp(v + n - 2, "in")) unit = 1;
  else if (n > 2 && !strcmp(v + n - 2, "cm")) unit = 1 / 2.54;
  else if (n > 2 && !strcmp(v + n - 2, "mm")) unit = 1 / 25.4;
  char *num = strndup(v, n > 2 ? n - 2 : 0);
  int ok = unit > 0 && parse_double(num, &x);
  free(num);
  if (!ok)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s' is not column, page or a length like 8.5cm, 3.4in, 85mm",
                    where, kd->name, v);
  if (x * unit < kd->lo || x * unit > kd->hi)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s' is out of range (%g in to %g in)", where, kd->name, v,
                    kd->lo, kd->hi);
  *w = x * unit;
  return UFM_OK;
}

static int parse_counts(ufm_config *cfg, const keydef *kd, const char *v, const char *where,
                        char *errbuf)
{
  size_t cap = 1;
  for (const char *s = v; *s; s++) cap += *s == ',';
  size_t *counts = ufm_malloc(cap * sizeof *counts), n = 0;
  char *copy = strdup(v), *save = NULL;
  int st = UFM_OK;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    char *t = trim(tok);
    double x;
    if (!parse_uint(t, &x)) {
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s' is not a whole number", where, kd->name, t);
      break;
    }
    if ((st = check_range(kd, x, where, t, errbuf)) != UFM_OK) break;
    counts[n++] = (size_t)x;
  }
  free(copy);
  if (st == UFM_OK && n != cap)
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: empty entry in the list '%s'", where, kd->name, v);
  if (st == UFM_OK && n < 2)
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: needs at least 2 classes, got %zu", where,
                  kd->name, n);
  if (st != UFM_OK) {
    free(counts);
    return st;
  }
  free(cfg->counts);
  cfg->counts = counts;
  cfg->ncounts = n;
  return UFM_OK;
}

int ufm_config_set(ufm_config *cfg, const char *key, const char *value, const char *where,
                   char *errbuf)
{
  const keydef *kd = key_lookup(key);
  if (!kd) return ufm_fail(errbuf, UFM_EINVAL, "%s: %s: unknown key", where, key);
  char *buf = strdup(value);
  char *v = trim(buf);
  int st = UFM_OK;
  void *field = (char *)cfg + kd->off;
  double x;

  if (*v == '\0') {
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: empty value", where, key);
    goto done;
  }
  if (kd->type != K_COUNTS && kd->type != K_STRING && looks_like_sweep(v)) {
    st = ufm_fail(errbuf, UFM_EINVAL,
                  "%s: %s: '%s' holds several values (a sweep); give one value here",
                  where, key, v);
    goto done;
  }
  switch (kd->type) {
  case K_SIZE:
  case K_ULONG:
    if (!parse_uint(v, &x)) {
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s' is not a whole number >= 0", where, key, v);
      goto done;
    }
    if ((st = check_range(kd, x, where, v, errbuf)) != UFM_OK) goto done;
    if (kd->type == K_SIZE) *(size_t *)field = (size_t)x;
    else *(unsigned long *)field = (unsigned long)x;
    break;
  case K_DOUBLE:
    if (!parse_double(v, &x)) {
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s' is not a finite number", where, key, v);
      goto done;
    }
    if ((st = check_range(kd, x, where, v, errbuf)) != UFM_OK) goto done;
    *(double *)field = x;
    break;
  case K_BOOL:
    if (!strcmp(v, "true") || !strcmp(v, "yes") || !strcmp(v, "1")) *(int *)field = 1;
    else if (!strcmp(v, "false") || !strcmp(v, "no") || !strcmp(v, "0")) *(int *)field = 0;
    else st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s' is not true or false", where, key, v);
    break;
  case K_LOSS: {
    const ufm_loss_type *L = ufm_loss_lookup(v);
    if (!L) st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: unknown loss '%s' (known: %s)", where, key, v, ufm_loss_names());
    else cfg->loss = L;
    break;
  }
  case K_OPTIM: {
    const ufm_optim_type *T = ufm_optim_lookup(v);
    if (!T) st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: unknown optimizer '%s' (known: %s)", where, key, v, ufm_optim_names());
    else cfg->optimizer = T;
    break;
  }
  case K_IMB:
    if (!strcmp(v, "none")) cfg->imbalance = UFM_IMB_NONE;
    else if (!strcmp(v, "step")) cfg->imbalance = UFM_IMB_STEP;
    else if (!strcmp(v, "exp")) cfg->imbalance = UFM_IMB_EXP;
    else st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s' is not none, step or exp", where, key, v);
    break;
  case K_STRING: {
    char **sp = (char **)field;
    if (strchr(v, '#')) {
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '#' starts a comment in experiment files and "
                    "cannot appear in a path", where, key);
      goto done;
    }
    free(*sp);
    *sp = (strcmp(key, "init_from") == 0 && strcmp(v, "none") == 0) ? NULL : strdup(v);
    break;
  }
  case K_COUNTS:
    st = parse_counts(cfg, kd, v, where, errbuf);
    break;
  case K_FIGSTYLE:
    if (!strcmp(v, "screen")) cfg->figure_style = UFM_FIG_SCREEN;
    else if (!strcmp(v, "paper")) cfg->figure_style = UFM_FIG_PAPER;
    else st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s' is not screen or paper", where, key, v);
    break;
  case K_FIGWIDTH:
    st = parse_figwidth(kd, v, (double *)field, where, errbuf);
    break;
  }
done:
  if (st == UFM_OK) {
    size_t k = key_index(kd);
    free(cfg->where[k]);
    cfg->where[k] = strdup(where);
  }
  free(buf);
  return st;
}

ufm_config *ufm_config_new(void)
{
  ufm_config *cfg = ufm_calloc(1, sizeof *cfg);
  cfg->where = ufm_calloc(NKEYS, sizeof(char *));
  for (size_t k = 0; k < NKEYS; k++) {
    if (keys[k].type == K_COUNTS || keys[k].def[0] == '\0') continue;
    int st = ufm_config_set(cfg, keys[k].name, keys[k].def, "default", NULL);
    (void)st; /* the table's defaults are valid: tested */
    free(cfg->where[k]);
    cfg->where[k] = NULL;
  }
  cfg->name = strdup("default");
  return cfg;
}

void ufm_config_free(ufm_config *cfg)
{
  if (!cfg) return;
  for (size_t k = 0; k < NKEYS; k++) free(cfg->where[k]);
  free(cfg->where);
  free(cfg->counts);
  free(cfg->init_from);
  free(cfg->out);
  free(cfg->name);
  free(cfg);
}

/* ------------------------------------------------------ 3. files and overrides */

/* Lines are `key = value`; `#` starts a comment; blank lines are skipped.
 * Keys are checked here (an unknown key, or a key given twice in one file,
 * since one of the two is a mistake); values are checked when set. */
int ufm_settings_read(ufm_settings *st_out, const char *path, char *errbuf)
{
  FILE *fp = fopen(path, "r");
  if (!fp) return ufm_fail(errbuf, UFM_EINVAL, "%s: cannot read: %s", path, strerror(errno));
  int *seen = ufm_calloc(NKEYS, sizeof(int));
  char *line = NULL;
  size_t cap = 0;
  ssize_t len;
  int lineno = 0, st = UFM_OK;
  size_t wlen = strlen(path) + 32;
  char *where = ufm_malloc(wlen);
  while ((len = getline(&line, &cap, fp)) != -1) {
    lineno++;
    snprintf(where, wlen, "%s:%d", path, lineno);
    if (memchr(line, '\0', (size_t)len)) {
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: binary data (a NUL byte) in an experiment file", where);
      break;
    }
    char *hash = strchr(line, '#');
    if (hash) *hash = '\0';
    char *s = trim(line);
    if (*s == '\0') continue;
    char *eq = strchr(s, '=');
    if (!eq) {
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: '%s': expected 'key = value'", where, s);
      break;
    }
    *eq = '\0';
    char *key = trim(s), *val = trim(eq + 1);
    if (*key == '\0') {
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: missing key before '='", where);
      break;
    }
    const keydef *kd = key_lookup(key);
    if (!kd) {
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: unknown key", where, key);
      break;
    }
    if (seen[key_index(kd)]) {
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: given twice (first on line %d)", where, key,
                    seen[key_index(kd)]);
      break;
    }
    if (*val == '\0') {
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: empty value", where, key);
      break;
    }
    seen[key_index(kd)] = lineno;
    char **vals = NULL;
    size_t nv = 0;
    if ((st = ufm_config_expand(key, val, where, &vals, &nv, NULL, errbuf)) != UFM_OK) break;
    ufm_config_free_values(vals, nv);
    ufm_settings_put(st_out, key, val, where);
  }
  if (st == UFM_OK && ferror(fp))
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: read error: %s", path, strerror(errno));
  fclose(fp);
  free(line);
  free(seen);
  free(where);
  return st;
}

void ufm_settings_put(ufm_settings *s, const char *key, const char *value, const char *where)
{
  for (size_t k = 0; k < s->n; k++)
    if (!strcmp(s->key[k], key)) { /* a later setting replaces an earlier one */
      free(s->value[k]);
      free(s->where[k]);
      s->value[k] = strdup(value);
      s->where[k] = strdup(where);
      return;
    }
  s->key = realloc(s->key, (s->n + 1) * sizeof(char *));
  s->value = realloc(s->value, (s->n + 1) * sizeof(char *));
  s->where = realloc(s->where, (s->n + 1) * sizeof(char *));
  if (!s->key || !s->value || !s->where) {
    fprintf(stderr, "ufm: out of memory\n");
    abort();
  }
  s->key[s->n] = strdup(key);
  s->value[s->n] = strdup(value);
  s->where[s->n] = strdup(where);
  s->n++;
}

void ufm_settings_clear(ufm_settings *s)
{
  for (size_t k = 0; k < s->n; k++) {
    free(s->key[k]);
    free(s->value[k]);
    free(s->where[k]);
  }
  free(s->key);
  free(s->value);
  free(s->where);
  memset(s, 0, sizeof *s);
}

char *ufm_config_name_from_path(const char *path)
{
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  size_t n = strlen(base);
  if (n > 4 && strcmp(base + n - 4, ".ini") == 0) n -= 4;
  int generic = (n == 6 && !strncmp(base, "config", 6)) || (n == 5 && !strncmp(base, "sweep", 5));
  if (generic && strrchr(path, '/')) {
    /* a run directory's config.ini (a sweep's sweep.ini): name it after the directory */
    const char *end = strrchr(path, '/'), *b = end;
    while (b > path && b[-1] != '/') b--;
    if (end > b) return strndup(b, (size_t)(end - b));
  }
  return strndup(base, n);
}

char *ufm_config_recorded_name(const char *path)
{
  FILE *fp = fopen(path, "r");
  if (!fp) return NULL;
  char line[1024];
  char *name = NULL;
  if (fgets(line, sizeof line, fp) &&
      (!strncmp(line, "# ufm experiment '", 18) || !strncmp(line, "# ufm sweep '", 13))) {
    char *a = strchr(line, '\''), *b = strrchr(line, '\'');
    if (b > a + 1) name = strndup(a + 1, (size_t)(b - a - 1));
  }
  fclose(fp);
  return name;
}

int ufm_config_read_file(ufm_config *cfg, const char *path, char *errbuf)
{
  ufm_settings s = {0};
  int st = ufm_settings_read(&s, path, errbuf);
  for (size_t k = 0; st == UFM_OK && k < s.n; k++)
    st = ufm_config_set(cfg, s.key[k], s.value[k], s.where[k], errbuf);
  ufm_settings_clear(&s);
  if (st == UFM_OK) {
    free(cfg->name);
    cfg->name = ufm_config_name_from_path(path);
  }
  return st;
}

/* ------------------------------------------------------------- grids of values */

static char *fmt_double(double x)
{
  char buf[64];
  snprintf(buf, sizeof buf, "%.15g", x);
  return strdup(buf);
}

/* start:stop:count or log:start:stop:count into count values; the end
 * points are the given strings themselves, so they are exact. */
static int expand_range(const char *key, const char *v, const char *where, char ***ret,
                        size_t *ret_n, int *geometric, char *errbuf)
{
  int lg = strncmp(v, "log:", 4) == 0;
  char *copy = strdup(lg ? v + 4 : v), *parts[3] = {0}, *save = NULL;
  int np = 0;
  for (char *t = strtok_r(copy, ":", &save); t; t = strtok_r(NULL, ":", &save))
    if (np < 3) parts[np++] = trim(t);
    else np = 4;
  double a = 0, b = 0, cnt = 0;
  int st = UFM_OK;
  if (np != 3 || strchr(v, ',') || !parse_double(parts[0], &a) || !parse_double(parts[1], &b))
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s' is not a range %sstart:stop:count", where, key,
                  v, lg ? "log:" : "");
  else if (!parse_uint(parts[2], &cnt) || cnt < 1 || cnt > 1e6)
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s': the count of a range must be a whole number from 1 to 1e6",
                  where, key, v);
  else if (lg && (a <= 0 || b <= 0))
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s': a log range needs bounds > 0", where, key, v);
  else if (cnt == 1 && a != b)
    st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s': a range of 1 value needs start = stop", where, key, v);
  if (st == UFM_OK) {
    size_t n = (size_t)cnt;
    char **vals = ufm_malloc(n * sizeof(char *));
    for (size_t k = 0; k < n; k++) {
      double t = n > 1 ? (double)k / (double)(n - 1) : 0.0;
      if (k == 0) vals[k] = strdup(parts[0]);
      else if (k == n - 1) vals[k] = strdup(parts[1]);
      else vals[k] = fmt_double(lg ? exp(log(a) + t * (log(b) - log(a))) : a + t * (b - a));
    }
    *ret = vals;
    *ret_n = n;
    if (geometric) *geometric = lg;
  }
  free(copy);
  return st;
}

static int expand_list(const char *key, const char *v, const char *where, char ***ret,
                       size_t *ret_n, char *errbuf)
{
  size_t cap = 1;
  for (const char *c = v; *c; c++) cap += *c == ',';
  char **vals = ufm_calloc(cap, sizeof(char *));
  size_t n = 0;
  int st = UFM_OK;
  const char *p = v;
  for (size_t k = 0; k < cap && st == UFM_OK; k++) {
    const char *e = strchr(p, ',');
    size_t len = e ? (size_t)(e - p) : strlen(p);
    char *tok = strndup(p, len), *t = trim(tok);
    if (*t == '\0') st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: empty entry in the list '%s'", where, key, v);
    for (size_t j = 0; st == UFM_OK && j < n; j++)
      if (!strcmp(vals[j], t))
        st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s' appears twice in the list '%s'", where, key, t, v);
    if (st == UFM_OK) vals[n++] = strdup(t);
    free(tok);
    p = e ? e + 1 : p + len;
  }
  if (st != UFM_OK) {
    ufm_config_free_values(vals, n);
    return st;
  }
  *ret = vals;
  *ret_n = n;
  return UFM_OK;
}

void ufm_config_free_values(char **vals, size_t n)
{
  for (size_t k = 0; k < n; k++) free(vals[k]);
  free(vals);
}

int ufm_config_expand(const char *key, const char *value, const char *where, char ***ret_vals,
                      size_t *ret_n, int *ret_geometric, char *errbuf)
{
  const keydef *kd = key_lookup(key);
  if (!kd) return ufm_fail(errbuf, UFM_EINVAL, "%s: %s: unknown key", where, key);
  char *buf = strdup(value), *v = trim(buf), **vals = NULL;
  size_t n = 0;
  int st = UFM_OK;
  if (ret_geometric) *ret_geometric = 0;
  if (ufm_config_key_sweepable(key) && looks_like_sweep(v)) {
    if (strchr(v, ',')) st = expand_list(key, v, where, &vals, &n, errbuf);
    else if (!ufm_config_key_numeric(key))
      st = ufm_fail(errbuf, UFM_EINVAL, "%s: %s: '%s': a range needs a numeric key; list the values instead",
                    where, key, v);
    else st = expand_range(key, v, where, &vals, &n, ret_geometric, errbuf);
  } else {
    vals = ufm_malloc(sizeof(char *));
    vals[0] = strdup(v);
    n = 1;
  }
  /* every value must be valid on its own */
  ufm_config *scratch = st == UFM_OK ? ufm_config_new() : NULL;
  for (size_t k = 0; st == UFM_OK && k < n; k++)
    st = ufm_config_set(scratch, key, vals[k], where, errbuf);
  ufm_config_free(scratch);
  free(buf);
  if (st != UFM_OK) {
    ufm_config_free_values(vals, n);
    return st;
  }
  *ret_vals = vals;
  *ret_n = n;
  return UFM_OK;
}

size_t ufm_config_nkeys(void) { return NKEYS; }
const char *ufm_config_key_name(size_t k) { return keys[k].name; }
const char *ufm_config_key_default(size_t k) { return keys[k].def; }

int ufm_config_key_sweepable(const char *key)
{
  const keydef *kd = key_lookup(key);
  return kd && kd->type != K_STRING && kd->type != K_COUNTS && kd->type != K_FIGSTYLE &&
         kd->type != K_FIGWIDTH && strcmp(key, "seeds") != 0 && strcmp(key, "grams_classes") != 0;
}

int ufm_config_line_ignored(const char *line)
{
  static const char *const prefixes[] = {"#", "out = ", "figure_style = ", "figure_width = ",
                                         "grams_classes = "};
  for (size_t k = 0; k < sizeof prefixes / sizeof prefixes[0]; k++)
    if (!strncmp(line, prefixes[k], strlen(prefixes[k]))) return 1;
  return 0;
}

int ufm_config_key_numeric(const char *key)
{
  const keydef *kd = key_lookup(key);
  return kd && (kd->type == K_SIZE || kd->type == K_ULONG || kd->type == K_DOUBLE);
}

/* ---------------------------------------------------------- 4. cross-key checks */

static const char *where_of(const ufm_config *cfg, const char *key)
{
  const keydef *kd = key_lookup(key);
  const char *w = cfg->where[key_index(kd)];
  return w ? w : "default";
}

/* The memory this process may use: physical memory, lowered by an address
 * space limit (ulimit -v) and by a cgroup memory limit (Slurm jobs and
 * containers run under one, and exceeding it gets the process killed, not
 * a failed allocation). 0 when unknown. */
static double memory_limit(const char **what)
{
  long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGE_SIZE);
  double have = pages > 0 && psize > 0 ? (double)pages * (double)psize : 0;
  *what = "this machine's memory";
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY
      && (have == 0 || (double)rl.rlim_cur < have)) {
    have = (double)rl.rlim_cur;
    *what = "the address-space limit (ulimit -v)";
  }
  /* cgroup v2 ("0::/path": PATH/memory.max) or v1 ("N:memory:/path":
   * memory/PATH/memory.limit_in_bytes); the path is as the host sees it, so
   * the cgroup root's own file is tried too. "max" or a huge number: none. */
  FILE *fp = fopen("/proc/self/cgroup", "r");
  char line[4096];
  while (fp && fgets(line, sizeof line, fp)) {
    line[strcspn(line, "\n")] = '\0';
    const char *v2 = !strncmp(line, "0::", 3) ? line + 3 : NULL, *v1 = strstr(line, ":memory:");
    if (!v2 && !v1) continue;
    char cand[2][4200];
    if (v2) {
      snprintf(cand[0], sizeof cand[0], "/sys/fs/cgroup%s/memory.max", v2);
      snprintf(cand[1], sizeof cand[1], "/sys/fs/cgroup/memory.max");
    } else {
      snprintf(cand[0], sizeof cand[0], "/sys/fs/cgroup/memory%s/memory.limit_in_bytes", v1 + 8);
      snprintf(cand[1], sizeof cand[1], "/sys/fs/cgroup/memory/memory.limit_in_bytes");
    }
    for (int c = 0; c < 2; c++) {
      FILE *mf = fopen(cand[c], "r");
      double lim;
      if (mf && fscanf(mf, "%lf", &lim) == 1 && lim > 0 && (have == 0 || lim < have)) {
        have = lim;
        *what = "the cgroup memory limit";
      }
      if (mf) fclose(mf);
      if (mf) break;
    }
  }
  if (fp) fclose(fp);
  return have;
}

/* memory_limit once per process: every point of a sweep is checked, and
 * points are also resolved inside the parallel loop that runs them. */
static double memory_limit_cached(const char **what)
{
  static double have = -1;
  static const char *have_what;
#pragma omp critical(ufm_memory_limit)
  {
    if (have < 0) have = memory_limit(&have_what);
  }
  *what = have_what;
  return have;
}

int ufm_config_finish(ufm_config *cfg, char *errbuf)
{
  if (cfg->ncounts > 0) {
    if (cfg->where[key_index(key_lookup("classes"))] && cfg->classes != cfg->ncounts)
      return ufm_fail(errbuf, UFM_EINVAL, "%s: counts: %zu counts given but classes = %zu (%s)",
                      where_of(cfg, "counts"), cfg->ncounts, cfg->classes, where_of(cfg, "classes"));
    cfg->classes = cfg->ncounts;
  } else {
    if (cfg->majority > cfg->classes)
      return ufm_fail(errbuf, UFM_EINVAL, "%s: majority: %zu majority classes but only %zu classes",
                      where_of(cfg, "majority"), cfg->majority, cfg->classes);
    size_t maj = cfg->majority ? cfg->majority : cfg->classes / 2;
    free(cfg->counts);
    cfg->counts = ufm_malloc(cfg->classes * sizeof(size_t));
    ufm_counts_make(cfg->classes, cfg->n, cfg->imbalance, cfg->ratio, maj, cfg->counts);
    cfg->majority = maj;
  }

  size_t N = 0;
  for (size_t c = 0; c < cfg->classes; c++) {
    if (N > (size_t)BIG - cfg->counts[c])
      return ufm_fail(errbuf, UFM_EINVAL, "%s: counts: total number of samples too large", where_of(cfg, "counts"));
    N += cfg->counts[c];
  }
  double need = ufm_model_bytes_needed(cfg->classes, cfg->dim, N, cfg->optimizer->uses_velocity);
  const char *what;
  double have = memory_limit_cached(&what);
  if (have > 0 && need > have)
    return ufm_fail(errbuf, UFM_EINVAL,
                    "%s: dim: C = %zu, p = %zu, N = %zu need %.3g bytes of memory, more than %s "
                    "(%.3g bytes)",
                    where_of(cfg, "dim"), cfg->classes, cfg->dim, N, need, what, have);

  if (!cfg->out) {
    size_t n = strlen(cfg->name) + 6;
    cfg->out = ufm_malloc(n);
    snprintf(cfg->out, n, "runs/%s", cfg->name);
  }
  /* checked on the resolved path: a default runs/NAME inherits the file's name */
  const char *why = ufm_out_path_problem(cfg->out);
  if (why) return ufm_fail(errbuf, UFM_EINVAL, "%s: out: %s", where_of(cfg, "out"), why);
  return UFM_OK;
}

/* ------------------------------------------------------------------- 5. output */

static void write_value(const ufm_config *cfg, const keydef *kd, FILE *fp)
{
  const void *field = (const char *)cfg + kd->off;
  switch (kd->type) {
  case K_SIZE: fprintf(fp, "%zu", *(const size_t *)field); break;
  case K_ULONG: fprintf(fp, "%lu", *(const unsigned long *)field); break;
  case K_DOUBLE: fprintf(fp, "%.17g", *(const double *)field); break;
  case K_BOOL: fputs(*(const int *)field ? "true" : "false", fp); break;
  case K_LOSS: fputs(cfg->loss->name, fp); break;
  case K_OPTIM: fputs(cfg->optimizer->name, fp); break;
  case K_IMB: fputs(cfg->imbalance == UFM_IMB_STEP ? "step" : cfg->imbalance == UFM_IMB_EXP ? "exp" : "none", fp); break;
  case K_STRING: {
    const char *s = *(char *const *)field;
    fputs(s ? s : "none", fp);
    break;
  }
  case K_COUNTS:
    for (size_t c = 0; cfg->counts && c < cfg->classes; c++)
      fprintf(fp, c ? ",%zu" : "%zu", cfg->counts[c]);
    break;
  case K_FIGSTYLE: fputs(cfg->figure_style == UFM_FIG_PAPER ? "paper" : "screen", fp); break;
  case K_FIGWIDTH: {
    double w = *(const double *)field;
    if (w == UFM_FIG_COLUMN_IN) fputs("column", fp);
    else if (w == UFM_FIG_PAGE_IN) fputs("page", fp);
    else fprintf(fp, "%.17gin", w);
    break;
  }
  }
}

void ufm_config_write(const ufm_config *cfg, FILE *fp)
{
  fprintf(fp, "# ufm experiment '%s', every key resolved; reload with: ufm run config.ini\n", cfg->name);
  for (size_t k = 0; k < NKEYS; k++) {
    /* counts derived from n and imbalance are shown, commented, so that
     * overriding n, classes or imbalance on reload still works */
    if (keys[k].type == K_COUNTS && cfg->ncounts == 0) fputs("# (resolved) ", fp);
    fprintf(fp, "%s = ", keys[k].name);
    write_value(cfg, &keys[k], fp);
    fputc('\n', fp);
  }
}

void ufm_config_print_keys(FILE *fp)
{
  for (size_t k = 0; k < NKEYS; k++)
    fprintf(fp, "  %-17s %-8s %s\n", keys[k].name, keys[k].def[0] ? keys[k].def : "-", keys[k].help);
}
