/* test_config.c -- experiment files (SPEC section 4): defaults, every class of bad
 * input with its exact "where: key:" prefix, accepted syntax, integer keys
 * written as floats, config.ini round trips, class counts, names and out.
 *
 * Every test gets a fresh mkdtemp directory, removed (recursively) afterwards.
 * Values are deliberately unround (2.385e-3, 0.0731, ...).
 */
#include "testutil.h"

#include "config.h"

#include "common.h"
#include "model.h"

#include <ftw.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Fixture: a temporary directory per test                                  */
/* ------------------------------------------------------------------------ */

typedef struct {
  char dir[64];
} tmpdir;

static int setup_dir(void **state)
{
  tmpdir *t = malloc(sizeof *t);
  if (!t) return -1;
  snprintf(t->dir, sizeof t->dir, "/tmp/ufm_test_config_XXXXXX");
  if (!mkdtemp(t->dir)) {
    free(t);
    return -1;
  }
  *state = t;
  return 0;
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
  (void)sb;
  (void)ftw;
  return flag == FTW_DP ? rmdir(path) : unlink(path);
}

static int teardown_dir(void **state)
{
  tmpdir *t = *state;
  int rc = nftw(t->dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(t);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static char *tpath(void **state, const char *name)
{
  const char *dir = ((tmpdir *)*state)->dir;
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = malloc(n);
  assert_non_null(p);
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static void write_bytes(const char *path, const char *buf, size_t n)
{
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  if (n > 0) assert_int_equal(fwrite(buf, 1, n, fp), n);
  assert_int_equal(fclose(fp), 0);
}

/* Write text into DIR/name; returns the malloc'd path. */
static char *write_text(void **state, const char *name, const char *text)
{
  char *p = tpath(state, name);
  write_bytes(p, text, strlen(text));
  return p;
}

#define assert_prefix(msg, prefix)                                                        \
  do {                                                                                   \
    const char *m_ = (msg), *p_ = (prefix);                                              \
    if (strncmp(m_, p_, strlen(p_)) != 0) {                                              \
      print_error("message '%s'\n  does not start with '%s'\n", m_, p_);                 \
      _fail(__FILE__, __LINE__);                                                         \
    }                                                                                    \
  } while (0)

#define assert_contains(msg, sub)                                                         \
  do {                                                                                   \
    const char *m_ = (msg), *s_ = (sub);                                                 \
    if (!strstr(m_, s_)) {                                                               \
      print_error("message '%s'\n  does not contain '%s'\n", m_, s_);                    \
      _fail(__FILE__, __LINE__);                                                         \
    }                                                                                    \
  } while (0)

/* The bit patterns of two doubles are equal. */
#define assert_bits_equal(a, b)                                                           \
  do {                                                                                   \
    double a_ = (a), b_ = (b);                                                           \
    if (memcmp(&a_, &b_, sizeof a_) != 0) {                                              \
      print_error("%s = %.17g differs from %s = %.17g\n", #a, a_, #b, b_);               \
      _fail(__FILE__, __LINE__);                                                         \
    }                                                                                    \
  } while (0)

/* Read `text` as file `name`: the reading itself must fail with UFM_EINVAL
 * and a message starting "PATH:LINE: key:" (or "PATH:LINE: " for key NULL),
 * containing `sub` if not NULL. */
static void file_error(void **state, const char *name, const char *text, int line,
                       const char *key, const char *sub)
{
  char *path = write_text(state, name, text);
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF] = "";
  int st = ufm_config_read_file(cfg, path, err);
  if (st != UFM_EINVAL) print_error("file:\n%s\nstatus %d, message '%s'\n", text, st, err);
  assert_int_equal(st, UFM_EINVAL);
  char prefix[512];
  if (key) snprintf(prefix, sizeof prefix, "%s:%d: %s: ", path, line, key);
  else snprintf(prefix, sizeof prefix, "%s:%d: ", path, line);
  assert_prefix(err, prefix);
  if (sub) assert_contains(err, sub);
  ufm_config_free(cfg);
  unlink(path);
  free(path);
}

/* Read `text` (which must read fine), then ufm_config_finish must fail. */
static void file_finish_error(void **state, const char *name, const char *text, int line,
                              const char *key, const char *sub)
{
  char *path = write_text(state, name, text);
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF] = "";
  int st = ufm_config_read_file(cfg, path, err);
  if (st != UFM_OK) print_error("read: %s\n", err);
  assert_int_equal(st, UFM_OK);
  st = ufm_config_finish(cfg, err);
  if (st != UFM_EINVAL) print_error("file:\n%s\nfinish: status %d, message '%s'\n", text, st, err);
  assert_int_equal(st, UFM_EINVAL);
  char prefix[512];
  snprintf(prefix, sizeof prefix, "%s:%d: %s: ", path, line, key);
  assert_prefix(err, prefix);
  if (sub) assert_contains(err, sub);
  ufm_config_free(cfg);
  unlink(path);
  free(path);
}

/* ufm_config_set must fail with "WHERE: key: " and leave the configuration
 * exactly as it was (the struct, bit for bit: no field, pointer or origin
 * changed). */
static void set_error(const char *key, const char *value, const char *where, const char *sub)
{
  ufm_config *cfg = ufm_config_new();
  ufm_config before = *cfg;
  char err[UFM_ERRBUF] = "";
  int st = ufm_config_set(cfg, key, value, where, err);
  if (st != UFM_EINVAL) print_error("%s = '%s': status %d, message '%s'\n", key, value, st, err);
  assert_int_equal(st, UFM_EINVAL);
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s: %s: ", where, key);
  assert_prefix(err, prefix);
  if (sub) assert_contains(err, sub);
  assert_memory_equal(&before, cfg, sizeof before);
  ufm_config_free(cfg);
}

/* A configuration read from `text` (must succeed, finish included). */
static ufm_config *read_ok(void **state, const char *name, const char *text)
{
  char *path = write_text(state, name, text);
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF] = "";
  int st = ufm_config_read_file(cfg, path, err);
  if (st != UFM_OK) print_error("read:\n%s\n-> %s\n", text, err);
  assert_int_equal(st, UFM_OK);
  st = ufm_config_finish(cfg, err);
  if (st != UFM_OK) print_error("finish: %s\n", err);
  assert_int_equal(st, UFM_OK);
  free(path);
  return cfg;
}

/* ------------------------------------------------------------------------ */
/* Defaults                                                                  */
/* ------------------------------------------------------------------------ */

static void test_defaults(void **state)
{
  (void)state;
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF] = "";
  int st = ufm_config_finish(cfg, err);
  if (st != UFM_OK) print_error("%s\n", err);
  assert_int_equal(st, UFM_OK);
  assert_int_equal(cfg->classes, 10);
  assert_int_equal(cfg->dim, 32);
  assert_int_equal(cfg->n, 20);
  assert_int_equal(cfg->ncounts, 0);
  assert_non_null(cfg->counts);
  for (size_t c = 0; c < 10; c++) assert_int_equal(cfg->counts[c], 20);
  assert_int_equal(cfg->imbalance, UFM_IMB_NONE);
  assert_bits_equal(cfg->ratio, 1.0);
  assert_int_equal(cfg->majority, 5); /* 0 resolves to classes/2 */
  assert_ptr_equal(cfg->loss, &ufm_loss_ce);
  assert_string_equal(cfg->loss->name, "ce");
  assert_int_equal(cfg->bias, 1);
  assert_bits_equal(cfg->lambda_W, 5e-3);
  assert_bits_equal(cfg->lambda_H, 5e-3);
  assert_bits_equal(cfg->lambda_b, 0.0);
  assert_ptr_equal(cfg->optimizer, &ufm_optim_gd);
  assert_string_equal(cfg->optimizer->name, "gd");
  assert_bits_equal(cfg->momentum, 0.9);
  assert_bits_equal(cfg->lr, 2.0);
  assert_int_equal(cfg->iterations, 10000);
  assert_bits_equal(cfg->init_scale, 0.1);
  assert_int_equal(cfg->seed, 1);
  assert_null(cfg->init_from);
  assert_int_equal(cfg->log_points, 100);
  assert_int_equal(cfg->seeds, 1);
  assert_bits_equal(cfg->constraint_W, 0.0);
  assert_bits_equal(cfg->constraint_H, 0.0);
  assert_int_equal(cfg->checkpoint_every, 0);
  assert_bits_equal(cfg->checkpoint_minutes, 10.0);
  assert_bits_equal(cfg->tol, 0.0);
  assert_string_equal(cfg->name, "default");
  assert_string_equal(cfg->out, "runs/default");
  ufm_config_free(cfg);
}

/* The key table printed by --help names every key with its default. */
static void test_print_keys(void **state)
{
  (void)state;
  char buf[8192] = "";
  FILE *fp = fmemopen(buf, sizeof buf, "w");
  assert_non_null(fp);
  ufm_config_print_keys(fp);
  fclose(fp);
  const char *names[] = {"classes", "dim", "n", "counts", "imbalance", "ratio", "majority",
                         "loss", "bias", "lambda_W", "lambda_H", "lambda_b", "optimizer",
                         "momentum", "lr", "iterations", "init_scale", "seed", "init_from",
                         "log_points", "seeds", "constraint_W", "constraint_H",
                         "checkpoint_every", "checkpoint_minutes", "out"};
  for (size_t k = 0; k < sizeof names / sizeof names[0]; k++) {
    char pat[64];
    snprintf(pat, sizeof pat, "  %s ", names[k]);
    assert_contains(buf, pat);
  }
}

/* ------------------------------------------------------------------------ */
/* Bad values: each through a file (line 3) and through ufm_config_set       */
/* ------------------------------------------------------------------------ */

typedef struct {
  const char *key, *value, *sub; /* sub: a word the message must contain, or NULL */
} badval;

static const badval bad_values[] = {
    /* unknown key */
    {"width", "3", "unknown key"},
    {"Classes", "4", "unknown key"},
    /* malformed numbers */
    {"lr", "1e", NULL},
    {"lr", "abc", NULL},
    {"lr", "0x", NULL},
    {"lr", "0x1p-3", NULL}, /* hex floats are not numbers here */
    {"iterations", "0x10", NULL},
    {"lr", "nan", NULL},
    {"lr", "inf", NULL},
    {"lr", "-inf", NULL},
    {"lr", "1e999", NULL},
    {"lambda_H", "2.385e-3x", NULL},
    {"lambda_H", "2.385 e-3", NULL},
    {"iterations", "1e", NULL},
    {"dim", "abc", NULL},
    {"seed", "nan", NULL},
    {"n", "1e999", NULL},
    /* non-integer for integer keys */
    {"classes", "2.5", NULL},
    {"iterations", "1e-1", NULL},
    {"log_points", "7.25", NULL},
    /* out of range */
    {"classes", "1", "range"},
    {"classes", "0", "range"},
    {"dim", "0", "range"},
    {"n", "0", "range"},
    {"lr", "0", "range"},
    {"lr", "-1", "range"},
    {"lr", "-0", "range"},
    {"lambda_W", "-1e-3", "range"},
    {"lambda_H", "-2.385e-3", "range"},
    {"lambda_b", "-7", "range"},
    {"momentum", "1", "range"},
    {"momentum", "-0.25", "range"},
    {"ratio", "0.5", "range"},
    {"init_scale", "-0.0731", "range"},
    {"log_points", "0", "range"},
    {"seeds", "0", "range"},
    {"checkpoint_every", "-1", NULL},
    {"checkpoint_every", "2.5", NULL},
    {"checkpoint_minutes", "-0.5", "range"},
    {"checkpoint_minutes", "1e10", "range"},
    {"seed", "-1", NULL},
    {"seed", "4294967296", "range"},
    /* bad enums / booleans */
    {"loss", "hinge", "hinge"},
    {"optimizer", "adam", "adam"},
    {"imbalance", "weird", "weird"},
    {"bias", "maybe", "maybe"},
    {"figure_style", "latex", "screen or paper"},
    {"figure_width", "wide", "column, page or a length"},
    {"figure_width", "5", "column, page or a length"},
    {"figure_width", "5pt", "column, page or a length"},
    {"figure_width", "cm", "column, page or a length"},
    {"figure_width", "0.5in", "range"},
    {"figure_width", "2m", "column, page or a length"},
    {"figure_width", "200cm", "range"},
    {"figure_width", "page, column", "several values"},
    /* counts */
    {"counts", "3,,4", "empty"},
    {"counts", "3,4,", "empty"},
    {"counts", "3,0,4", "range"},
    {"counts", "3,2.5,4", NULL},
    {"counts", "7", "2 classes"},
    {"counts", "12, -3", NULL},
    /* grids of values: malformed, or holding an invalid value */
    {"lr", "log:0:1:5", "log range"},
    {"lr", "1:2:0", "count"},
    {"classes", "4,,8", "empty entry"},
    {"classes", "4, 8, 4", "twice"},
    {"classes", "1, 4", "range"},
    {"classes", "2:9:3", "whole number"},
    {"loss", "ce:mse:2", "range needs a numeric key"},
    {"lr", "0.1:0.2", NULL},
};
#define NBAD (sizeof bad_values / sizeof bad_values[0])

static void test_bad_values_in_file(void **state)
{
  for (size_t k = 0; k < NBAD; k++) {
    const badval *b = &bad_values[k];
    char text[512];
    /* line 1 a comment, line 2 a good key, line 3 the bad one */
    snprintf(text, sizeof text, "# case %zu\ntol = 2.385e-9\n%s = %s\ntol = 7\n", k, b->key, b->value);
    file_error(state, "bad.ini", text, 3, b->key, b->sub);
  }
}

/* A command-line override goes through ufm_config_expand (it may be a grid). */
static void expand_error(const char *key, const char *value, const char *where, const char *sub)
{
  char err[UFM_ERRBUF] = "", **vals = NULL;
  size_t n = 0;
  int st = ufm_config_expand(key, value, where, &vals, &n, NULL, err);
  if (st != UFM_EINVAL) print_error("%s = '%s': status %d, message '%s'\n", key, value, st, err);
  assert_int_equal(st, UFM_EINVAL);
  assert_null(vals);
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s: %s: ", where, key);
  assert_prefix(err, prefix);
  if (sub) assert_contains(err, sub);
}

static void test_bad_values_on_command_line(void **state)
{
  (void)state;
  for (size_t k = 0; k < NBAD; k++) {
    const badval *b = &bad_values[k];
    char where[64];
    snprintf(where, sizeof where, "command line (argument %zu)", k + 2);
    expand_error(b->key, b->value, where, b->sub);
    if (!strpbrk(b->value, ",:")) set_error(b->key, b->value, where, b->sub);
  }
  /* one configuration holds one value: a grid is for the sweep layer */
  set_error("classes", "4, 8", "command line (argument 2)", "sweep");
  set_error("lr", "log:1e-4:1e-1:4", "command line (argument 2)", "sweep");
  /* an empty value from the command line */
  set_error("lr", "", "command line (argument 3)", "empty");
  set_error("lr", "   ", "command line (argument 3)", "empty");
  set_error("nonsense_key", "", "command line (argument 4)", "unknown key");
}

/* The malformed-line classes, which only a file can have. */
static void test_bad_lines(void **state)
{
  /* missing '=' */
  file_error(state, "noeq.ini", "classes = 4\n\nlr 0.1\n", 3, NULL, "lr 0.1");
  /* empty key */
  file_error(state, "nokey.ini", "# x\n  = 4\n", 2, NULL, "key");
  file_error(state, "nokey2.ini", "dim = 13\n=\n", 2, NULL, "key");
  /* empty value, also when only a comment follows */
  file_error(state, "noval.ini", "lr =\n", 1, "lr", "empty");
  file_error(state, "noval2.ini", "dim = 13\nlambda_W =    # none\n", 2, "lambda_W", "empty");
  /* a key given twice: the message is on the second line and names the first */
  file_error(state, "twice.ini", "lr = 0.1\n# again\n\nlr = 0.2\n", 4, "lr", "line 1");
  file_error(state, "twice2.ini", "dim = 13\nclasses = 4\nn = 7\nclasses=4\n", 4, "classes",
             "line 2");
  /* a NUL byte on line 2 */
  static const char nul[] = "lr = 0.1\nn = 2\0 0\nclasses = 4\n";
  char *p = tpath(state, "nul.ini");
  write_bytes(p, nul, sizeof nul - 1);
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF] = "";
  assert_int_equal(ufm_config_read_file(cfg, p, err), UFM_EINVAL);
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s:2: ", p);
  assert_prefix(err, prefix);
  assert_contains(err, "NUL");
  ufm_config_free(cfg);
  free(p);
  /* a NUL byte hidden in a comment is binary data all the same */
  static const char nul2[] = "# a comment \0 with a NUL\nlr = 0.1\n";
  p = tpath(state, "nul2.ini");
  write_bytes(p, nul2, sizeof nul2 - 1);
  cfg = ufm_config_new();
  assert_int_equal(ufm_config_read_file(cfg, p, err), UFM_EINVAL);
  snprintf(prefix, sizeof prefix, "%s:1: ", p);
  assert_prefix(err, prefix);
  ufm_config_free(cfg);
  free(p);
}

static void test_nonexistent_file(void **state)
{
  char *p = tpath(state, "no-such-experiment.ini");
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF] = "";
  assert_int_equal(ufm_config_read_file(cfg, p, err), UFM_EINVAL);
  char prefix[256];
  snprintf(prefix, sizeof prefix, "%s: ", p);
  assert_prefix(err, prefix);
  ufm_config_free(cfg);
  free(p);
}

/* Cross-key errors found by ufm_config_finish, named after the key's origin. */
static void test_finish_errors(void **state)
{
  /* counts length disagrees with an explicit classes (either order) */
  file_finish_error(state, "cc.ini", "classes = 4\ncounts = 3,5,7\n", 2, "counts", "classes");
  file_finish_error(state, "cc2.ini", "# x\ncounts = 3,5,7\nclasses = 4\n", 2, "counts", NULL);
  /* more majority classes than classes */
  file_finish_error(state, "maj.ini", "classes = 4\nimbalance = step\nratio = 2.385\nmajority = 5\n",
                    4, "majority", NULL);

  /* the same through the command line */
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF] = "";
  assert_int_equal(ufm_config_set(cfg, "counts", "3, 5, 7", "command line (argument 2)", err), UFM_OK);
  assert_int_equal(ufm_config_set(cfg, "classes", "5", "command line (argument 3)", err), UFM_OK);
  assert_int_equal(ufm_config_finish(cfg, err), UFM_EINVAL);
  assert_prefix(err, "command line (argument 2): counts: ");
  ufm_config_free(cfg);

  /* a model that cannot fit in memory is refused before anything is allocated */
  cfg = ufm_config_new();
  assert_int_equal(ufm_config_set(cfg, "dim", "100000000", "command line (argument 2)", err), UFM_OK);
  assert_int_equal(ufm_config_set(cfg, "n", "1000000", "command line (argument 3)", err), UFM_OK);
  assert_int_equal(ufm_config_finish(cfg, err), UFM_EINVAL);
  assert_prefix(err, "command line (argument 2): dim: ");
  assert_contains(err, "bytes");
  ufm_config_free(cfg);

  /* the same from a file */
  file_finish_error(state, "huge.ini", "# too big\nn = 1e6\ndim = 1e8\n", 3, "dim", "bytes");
}

/* ------------------------------------------------------------------------ */
/* Accepted syntax                                                           */
/* ------------------------------------------------------------------------ */

static void test_syntax_accepted(void **state)
{
  ufm_config *cfg = read_ok(state, "syntax.ini",
                            "# an experiment file with every kind of spacing\n"
                            "\n"
                            "   \n"
                            "classes=4\n"
                            "   dim   =   13   # trailing comment\n"
                            "\tlr\t=\t0.1\t\n"
                            "loss = mse# a comment right after the value\n"
                            "      # an indented comment\n"
                            "lambda_W = 2.385e-3\n"
                            "bias = false\n"
                            "optimizer = momentum\n"
                            "momentum = 0.85\n"
                            "seed = 4242\r\n"
                            "iterations = 1e5\n"
                            "n = 2.5e1\n"
                            "log_points = 37.0\n"
                            "init_from = none\n"
                            "# no newline at the end\n"
                            "init_scale = 0.0731");
  assert_int_equal(cfg->classes, 4);
  assert_int_equal(cfg->dim, 13);
  assert_bits_equal(cfg->lr, 0.1);
  assert_ptr_equal(cfg->loss, &ufm_loss_mse);
  assert_bits_equal(cfg->lambda_W, 2.385e-3);
  assert_bits_equal(cfg->lambda_H, 5e-3); /* untouched default */
  assert_int_equal(cfg->bias, 0);
  assert_ptr_equal(cfg->optimizer, &ufm_optim_momentum);
  assert_bits_equal(cfg->momentum, 0.85);
  assert_int_equal(cfg->seed, 4242);
  assert_int_equal(cfg->iterations, 100000);
  assert_int_equal(cfg->n, 25);
  assert_int_equal(cfg->log_points, 37);
  assert_null(cfg->init_from);
  assert_bits_equal(cfg->init_scale, 0.0731);
  for (size_t c = 0; c < 4; c++) assert_int_equal(cfg->counts[c], 25);
  ufm_config_free(cfg);

  /* an empty file (and one of comments only) is the default experiment */
  cfg = read_ok(state, "empty.ini", "");
  assert_int_equal(cfg->classes, 10);
  ufm_config_free(cfg);
  cfg = read_ok(state, "comments.ini", "# nothing\n\n  # at all\n");
  assert_int_equal(cfg->dim, 32);
  ufm_config_free(cfg);

  /* booleans: the spellings the parser documents */
  const char *yes[] = {"true", "yes", "1"}, *no[] = {"false", "no", "0"};
  for (size_t k = 0; k < 3; k++) {
    char err[UFM_ERRBUF];
    cfg = ufm_config_new();
    assert_int_equal(ufm_config_set(cfg, "bias", no[k], "t", err), UFM_OK);
    assert_int_equal(cfg->bias, 0);
    assert_int_equal(ufm_config_set(cfg, "bias", yes[k], "t", err), UFM_OK);
    assert_int_equal(cfg->bias, 1);
    ufm_config_free(cfg);
  }
}

/* figure_style and figure_width: the spellings, the units, config.ini's
 * rendering, and that they do not make two experiments different. */
static void test_figure_keys(void **state)
{
  (void)state;
  char err[UFM_ERRBUF];
  ufm_config *cfg = ufm_config_new();
  assert_int_equal(cfg->figure_style, UFM_FIG_SCREEN);
  assert_true(cfg->figure_width == UFM_FIG_PAGE_IN);
  static const struct {
    const char *v;
    double in;
  } widths[] = {{"column", 3.4}, {"page", 7.0}, {"3.4in", 3.4}, {"8.89cm", 3.5}, {"254mm", 10.0}, {"1in", 1.0}};
  for (size_t k = 0; k < sizeof widths / sizeof widths[0]; k++) {
    assert_int_equal(ufm_config_set(cfg, "figure_width", widths[k].v, "t", err), UFM_OK);
    assert_true(fabs(cfg->figure_width - widths[k].in) < 1e-12);
  }
  assert_int_equal(ufm_config_set(cfg, "figure_style", "paper", "t", err), UFM_OK);
  assert_int_equal(cfg->figure_style, UFM_FIG_PAPER);
  assert_int_equal(ufm_config_set(cfg, "figure_width", "column", "t", err), UFM_OK);
  char *buf = NULL;
  size_t len = 0;
  FILE *fp = open_memstream(&buf, &len);
  ufm_config_write(cfg, fp);
  fclose(fp);
  assert_non_null(strstr(buf, "\nfigure_style = paper\n"));
  assert_non_null(strstr(buf, "\nfigure_width = column\n"));
  free(buf);
  assert_int_equal(ufm_config_set(cfg, "figure_width", "12cm", "t", err), UFM_OK);
  fp = open_memstream(&buf, &len);
  ufm_config_write(cfg, fp);
  fclose(fp);
  char *w = strstr(buf, "\nfigure_width = ");
  assert_non_null(w);
  assert_true(fabs(strtod(w + 16, NULL) - 12 / 2.54) < 1e-12);
  free(buf);
  ufm_config_free(cfg);
  /* not sweepable; lines that do not change the numbers */
  assert_false(ufm_config_key_sweepable("figure_style"));
  assert_false(ufm_config_key_sweepable("figure_width"));
  assert_true(ufm_config_line_ignored("figure_style = paper\n"));
  assert_true(ufm_config_line_ignored("figure_width = 3in\n"));
  assert_true(ufm_config_line_ignored("out = runs/x\n"));
  assert_true(ufm_config_line_ignored("# comment\n"));
  assert_false(ufm_config_line_ignored("lr = 1\n"));
  assert_false(ufm_config_line_ignored("figure = 1\n"));
}

/* Integer keys take exact floats; the bounds are inclusive where documented. */
static void test_integer_keys(void **state)
{
  (void)state;
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF] = "";
  assert_int_equal(ufm_config_set(cfg, "iterations", "1e5", "t", err), UFM_OK);
  assert_int_equal(cfg->iterations, 100000);
  assert_int_equal(ufm_config_set(cfg, "iterations", "2.5e3", "t", err), UFM_OK);
  assert_int_equal(cfg->iterations, 2500);
  assert_int_equal(ufm_config_set(cfg, "iterations", "0", "t", err), UFM_OK);
  assert_int_equal(cfg->iterations, 0);
  assert_int_equal(ufm_config_set(cfg, "classes", "2", "t", err), UFM_OK);
  assert_int_equal(cfg->classes, 2);
  assert_int_equal(ufm_config_set(cfg, "classes", "7.0", "t", err), UFM_OK);
  assert_int_equal(cfg->classes, 7);
  assert_int_equal(ufm_config_set(cfg, "seed", "4294967295", "t", err), UFM_OK);
  assert_int_equal(cfg->seed, 4294967295UL);
  assert_int_equal(ufm_config_set(cfg, "seed", "0", "t", err), UFM_OK);
  assert_int_equal(cfg->seed, 0);
  assert_int_equal(ufm_config_set(cfg, "momentum", "0", "t", err), UFM_OK);
  assert_int_equal(ufm_config_set(cfg, "momentum", "0.999", "t", err), UFM_OK);
  assert_bits_equal(cfg->momentum, 0.999);
  assert_int_equal(ufm_config_set(cfg, "ratio", "1", "t", err), UFM_OK);
  assert_int_equal(ufm_config_set(cfg, "lambda_W", "0", "t", err), UFM_OK);
  assert_int_equal(ufm_config_set(cfg, "lr", "2.385e-300", "t", err), UFM_OK);
  assert_bits_equal(cfg->lr, 2.385e-300);
  assert_int_equal(ufm_config_set(cfg, "lr", "+0.1", "t", err), UFM_OK);
  assert_bits_equal(cfg->lr, 0.1);
  ufm_config_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Class counts                                                              */
/* ------------------------------------------------------------------------ */

static void test_counts_step(void **state)
{
  ufm_config *cfg = read_ok(state, "step.ini",
                            "classes = 4\nn = 100\nimbalance = step\nratio = 10\nmajority = 2\n");
  const size_t want[4] = {100, 100, 10, 10};
  for (size_t c = 0; c < 4; c++) assert_int_equal(cfg->counts[c], want[c]);
  assert_int_equal(cfg->majority, 2);
  ufm_config_free(cfg);

  /* majority 0 means C/2; n/ratio rounded; at least 1 */
  cfg = read_ok(state, "step2.ini", "classes = 5\nn = 37\nimbalance = step\nratio = 2.385\n");
  assert_int_equal(cfg->majority, 2);
  const size_t want2[5] = {37, 37, 16, 16, 16}; /* 37/2.385 = 15.51 */
  for (size_t c = 0; c < 5; c++) assert_int_equal(cfg->counts[c], want2[c]);
  ufm_config_free(cfg);

  cfg = read_ok(state, "step3.ini",
                "classes = 3\nn = 5\nimbalance = step\nratio = 1000\nmajority = 1\n");
  const size_t want3[3] = {5, 1, 1};
  for (size_t c = 0; c < 3; c++) assert_int_equal(cfg->counts[c], want3[c]);
  ufm_config_free(cfg);

  /* majority = classes: all majority */
  cfg = read_ok(state, "step4.ini", "classes = 3\nn = 9\nimbalance = step\nratio = 3\nmajority = 3\n");
  for (size_t c = 0; c < 3; c++) assert_int_equal(cfg->counts[c], 9);
  ufm_config_free(cfg);

  /* imbalance none ignores ratio */
  cfg = read_ok(state, "none.ini", "classes = 3\nn = 9\nratio = 3\n");
  for (size_t c = 0; c < 3; c++) assert_int_equal(cfg->counts[c], 9);
  ufm_config_free(cfg);
}

static void test_counts_exp(void **state)
{
  ufm_config *cfg = read_ok(state, "exp.ini", "classes = 5\nn = 1000\nimbalance = exp\nratio = 100\n");
  const size_t want[5] = {1000, 316, 100, 32, 10};
  for (size_t c = 0; c < 5; c++) {
    double x = 1000.0 * pow(100.0, -(double)c / 4.0);
    size_t r = (size_t)floor(x + 0.5);
    assert_int_equal(r, want[c]);
    assert_int_equal(cfg->counts[c], want[c]);
  }
  ufm_config_free(cfg);

  /* the formula at odd values, and the floor of 1 sample */
  cfg = read_ok(state, "exp2.ini", "classes = 7\nn = 53\nimbalance = exp\nratio = 2.385e4\n");
  for (size_t c = 0; c < 7; c++) {
    double x = 53.0 * pow(2.385e4, -(double)c / 6.0);
    size_t r = (size_t)floor(x + 0.5);
    if (r < 1) r = 1;
    assert_int_equal(cfg->counts[c], r);
  }
  assert_int_equal(cfg->counts[0], 53);
  assert_int_equal(cfg->counts[6], 1);
  ufm_config_free(cfg);
}

static void test_counts_explicit(void **state)
{
  /* counts sets C, overrides n and imbalance */
  ufm_config *cfg = read_ok(state, "counts.ini", "n = 99\nimbalance = step\ncounts = 13, 7 ,2\n");
  assert_int_equal(cfg->classes, 3);
  assert_int_equal(cfg->ncounts, 3);
  const size_t want[3] = {13, 7, 2};
  for (size_t c = 0; c < 3; c++) assert_int_equal(cfg->counts[c], want[c]);
  ufm_config_free(cfg);
  /* agreeing explicit classes is fine */
  cfg = read_ok(state, "counts2.ini", "classes = 2\ncounts = 1e3,17\n");
  assert_int_equal(cfg->counts[0], 1000);
  assert_int_equal(cfg->counts[1], 17);
  ufm_config_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* Round trip through config.ini                                             */
/* ------------------------------------------------------------------------ */

static void assert_same_config(const ufm_config *a, const ufm_config *b)
{
  assert_int_equal(a->classes, b->classes);
  assert_int_equal(a->dim, b->dim);
  assert_int_equal(a->n, b->n);
  for (size_t c = 0; c < a->classes; c++) assert_int_equal(a->counts[c], b->counts[c]);
  assert_int_equal(a->imbalance, b->imbalance);
  assert_bits_equal(a->ratio, b->ratio);
  assert_int_equal(a->majority, b->majority);
  assert_ptr_equal(a->loss, b->loss);
  assert_int_equal(a->bias, b->bias);
  assert_bits_equal(a->lambda_W, b->lambda_W);
  assert_bits_equal(a->lambda_H, b->lambda_H);
  assert_bits_equal(a->lambda_b, b->lambda_b);
  assert_ptr_equal(a->optimizer, b->optimizer);
  assert_bits_equal(a->momentum, b->momentum);
  assert_bits_equal(a->lr, b->lr);
  assert_int_equal(a->iterations, b->iterations);
  assert_bits_equal(a->init_scale, b->init_scale);
  assert_int_equal(a->seed, b->seed);
  if (a->init_from || b->init_from) {
    assert_non_null(a->init_from);
    assert_non_null(b->init_from);
    assert_string_equal(a->init_from, b->init_from);
  }
  assert_int_equal(a->log_points, b->log_points);
  assert_int_equal(a->seeds, b->seeds);
  assert_bits_equal(a->constraint_W, b->constraint_W);
  assert_bits_equal(a->constraint_H, b->constraint_H);
  assert_int_equal(a->checkpoint_every, b->checkpoint_every);
  assert_bits_equal(a->checkpoint_minutes, b->checkpoint_minutes);
  assert_bits_equal(a->tol, b->tol);
  assert_string_equal(a->out, b->out);
}

/* Write cfg (finished) to DIR/name, read it back into a fresh config. */
static ufm_config *roundtrip(void **state, const ufm_config *cfg, const char *name)
{
  char *path = tpath(state, name);
  FILE *fp = fopen(path, "w");
  assert_non_null(fp);
  ufm_config_write(cfg, fp);
  assert_int_equal(fclose(fp), 0);
  ufm_config *back = ufm_config_new();
  char err[UFM_ERRBUF] = "";
  int st = ufm_config_read_file(back, path, err);
  if (st != UFM_OK) print_error("reading back %s: %s\n", path, err);
  assert_int_equal(st, UFM_OK);
  st = ufm_config_finish(back, err);
  if (st != UFM_OK) print_error("finishing %s: %s\n", path, err);
  assert_int_equal(st, UFM_OK);
  free(path);
  return back;
}

static void test_roundtrip(void **state)
{
  static const char *kv[][2] = {
      {"classes", "4"},         {"dim", "13"},           {"n", "100"},
      {"imbalance", "step"},    {"ratio", "10"},         {"majority", "2"},
      {"loss", "mse"},          {"bias", "false"},       {"lambda_W", "2.385e-3"},
      {"lambda_H", "1.7e-4"},   {"lambda_b", "3.3e-5"},  {"optimizer", "momentum"},
      {"momentum", "0.85"},     {"lr", "0.1"},           {"iterations", "12345"},
      {"init_scale", "0.0731"}, {"seed", "4242"},        {"init_from", "/some/where/run-7"},
      {"log_points", "37"},     {"tol", "1.25e-9"},      {"out", "results/odd run"},
  };
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF] = "";
  for (size_t k = 0; k < sizeof kv / sizeof kv[0]; k++) {
    int st = ufm_config_set(cfg, kv[k][0], kv[k][1], "command line (argument 1)", err);
    if (st != UFM_OK) print_error("%s\n", err);
    assert_int_equal(st, UFM_OK);
  }
  assert_int_equal(ufm_config_finish(cfg, err), UFM_OK);
  const size_t want[4] = {100, 100, 10, 10};
  for (size_t c = 0; c < 4; c++) assert_int_equal(cfg->counts[c], want[c]);

  ufm_config *back = roundtrip(state, cfg, "rt.ini");
  assert_same_config(cfg, back);
  assert_string_equal(back->name, "rt");
  /* and a second generation is the same text as the first */
  ufm_config *back2 = roundtrip(state, back, "rt2.ini");
  assert_same_config(cfg, back2);
  ufm_config_free(back2);
  ufm_config_free(back);
  ufm_config_free(cfg);

  /* the defaults (out defaulted to runs/default), and exp imbalance with odd doubles */
  cfg = ufm_config_new();
  assert_int_equal(ufm_config_finish(cfg, err), UFM_OK);
  back = roundtrip(state, cfg, "defaults.ini");
  assert_same_config(cfg, back);
  ufm_config_free(back);
  ufm_config_free(cfg);

  cfg = ufm_config_new();
  assert_int_equal(ufm_config_set(cfg, "classes", "6", "x", err), UFM_OK);
  assert_int_equal(ufm_config_set(cfg, "imbalance", "exp", "x", err), UFM_OK);
  assert_int_equal(ufm_config_set(cfg, "ratio", "2.385", "x", err), UFM_OK);
  assert_int_equal(ufm_config_set(cfg, "n", "41", "x", err), UFM_OK);
  assert_int_equal(ufm_config_set(cfg, "lr", "0.30000000000000004", "x", err), UFM_OK);
  assert_int_equal(ufm_config_set(cfg, "lambda_H", "1e-300", "x", err), UFM_OK);
  assert_int_equal(ufm_config_set(cfg, "init_scale", "3.3333333333333335e-2", "x", err), UFM_OK);
  assert_int_equal(ufm_config_finish(cfg, err), UFM_OK);
  back = roundtrip(state, cfg, "exp.ini");
  assert_same_config(cfg, back);
  ufm_config_free(back);
  ufm_config_free(cfg);

  /* explicit counts */
  cfg = ufm_config_new();
  assert_int_equal(ufm_config_set(cfg, "counts", "13,7,2,29", "x", err), UFM_OK);
  assert_int_equal(ufm_config_finish(cfg, err), UFM_OK);
  back = roundtrip(state, cfg, "counts.ini");
  assert_same_config(cfg, back);
  ufm_config_free(back);
  ufm_config_free(cfg);
}

/* ------------------------------------------------------------------------ */
/* The experiment's name and the default out                                 */
/* ------------------------------------------------------------------------ */

static void test_name_and_out(void **state)
{
  ufm_config *cfg = read_ok(state, "etf-ce.ini", "classes = 4\n");
  assert_string_equal(cfg->name, "etf-ce");
  assert_string_equal(cfg->out, "runs/etf-ce");
  ufm_config_free(cfg);

  /* only a final .ini is removed */
  cfg = read_ok(state, "my.ini.exp", "classes = 4\n");
  assert_string_equal(cfg->name, "my.ini.exp");
  assert_string_equal(cfg->out, "runs/my.ini.exp");
  ufm_config_free(cfg);

  /* an explicit out wins */
  cfg = read_ok(state, "lr-sweep.ini", "out = elsewhere/run 2.385\n");
  assert_string_equal(cfg->name, "lr-sweep");
  assert_string_equal(cfg->out, "elsewhere/run 2.385");
  ufm_config_free(cfg);

  /* a run directory's config.ini is named after the directory */
  char *d = tpath(state, "run-c4");
  assert_int_equal(mkdir(d, 0777), 0);
  free(d);
  cfg = read_ok(state, "run-c4/config.ini", "classes = 4\n");
  assert_string_equal(cfg->name, "run-c4");
  ufm_config_free(cfg);

  /* an out set on the command line is kept */
  cfg = ufm_config_new();
  char err[UFM_ERRBUF];
  assert_int_equal(ufm_config_set(cfg, "out", "  /tmp/x y  ", "command line (argument 2)", err), UFM_OK);
  assert_int_equal(ufm_config_finish(cfg, err), UFM_OK);
  assert_string_equal(cfg->out, "/tmp/x y");
  ufm_config_free(cfg);
}

/* The out policy: no control characters, no '..' components, also in a
 * default out made from the experiment file's name; '..' inside a name is fine. */
static void test_out_policy(void **state)
{
  const char *bad[] = {"../up", "a/../b", "runs/..", "..", "a/..", "tab\there", "bell\a", "del\x7f",
                       "cr\rlf"};
  for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
    ufm_config *cfg = ufm_config_new();
    char err[UFM_ERRBUF] = "";
    assert_int_equal(ufm_config_set(cfg, "out", bad[k], "command line (argument 2)", err), UFM_OK);
    int st = ufm_config_finish(cfg, err);
    if (st != UFM_EINVAL) print_error("out = '%s': status %d\n", bad[k], st);
    assert_int_equal(st, UFM_EINVAL);
    assert_prefix(err, "command line (argument 2): out: ");
    assert_contains(err, strchr(bad[k], '.') ? "'..'" : "control character");
    ufm_config_free(cfg);
  }
  const char *good[] = {"a..b/c", "..hidden/x", "x/y..", "/abs/path", "./here", "spaces in it/r"};
  for (size_t k = 0; k < sizeof good / sizeof good[0]; k++) {
    ufm_config *cfg = ufm_config_new();
    char err[UFM_ERRBUF] = "";
    assert_int_equal(ufm_config_set(cfg, "out", good[k], "command line (argument 2)", err), UFM_OK);
    int st = ufm_config_finish(cfg, err);
    if (st != UFM_OK) print_error("out = '%s': %s\n", good[k], err);
    assert_int_equal(st, UFM_OK);
    ufm_config_free(cfg);
  }
  /* a file named "...ini" would default to out = runs/.. (the working directory) */
  char *path = write_text(state, "...ini", "classes = 4\n");
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF] = "";
  assert_int_equal(ufm_config_read_file(cfg, path, err), UFM_OK);
  assert_int_equal(ufm_config_finish(cfg, err), UFM_EINVAL);
  assert_contains(err, "out: ");
  ufm_config_free(cfg);
  unlink(path);
  free(path);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_defaults, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_print_keys, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_bad_values_in_file, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_bad_values_on_command_line, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_bad_lines, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_nonexistent_file, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_finish_errors, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_syntax_accepted, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_integer_keys, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_figure_keys, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_counts_step, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_counts_exp, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_counts_explicit, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_roundtrip, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_name_and_out, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_out_policy, setup_dir, teardown_dir),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
