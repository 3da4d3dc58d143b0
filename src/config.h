/* config.h -- experiment files (SPEC section 4): parsing, validation, defaults, config.ini. */
#ifndef UFM_CONFIG_H
#define UFM_CONFIG_H

#include <stdio.h>
#include "loss.h"
#include "optim.h"

/* A resolved experiment. Fields are named after the keys. */
typedef struct {
  size_t classes, dim, n;
  size_t *counts; /* resolved per-class counts (length classes) after ufm_config_finish */
  size_t ncounts; /* number of counts given by the `counts` key (0: from n/imbalance) */
  int imbalance;  /* UFM_IMB_* */
  double ratio;
  size_t majority; /* 0 in the file means classes/2 */
  const ufm_loss_type *loss;
  int bias;
  double lambda_W, lambda_H, lambda_b;
  const ufm_optim_type *optimizer;
  double momentum;
  double lr;
  unsigned long iterations;
  double init_scale;
  unsigned long seed;
  char *init_from; /* NULL: random initialisation */
  size_t log_points;
  int compute_seli_H; /* 0: the seli_H column is NaN and its Gram is not formed (extension) */
  size_t seeds;
  double constraint_W, constraint_H;
  unsigned long checkpoint_every;
  double checkpoint_minutes; /* also checkpoint when this much wall time has passed (0: never) */
  double tol;
  size_t grams_classes; /* grams.npy: at most this many classes, every K-th above (0: none) */
  int figure_style;     /* UFM_FIG_SCREEN or UFM_FIG_PAPER: how the PDF figures are drawn */
  double figure_width;  /* width of the PDF figures in inches (paper style) */
  char *out;
  char *name; /* basename of the experiment file without .ini, or "default" */
  /* where each key was last set, for error messages: "FILE:LINE" */
  char **where;
} ufm_config;

enum { UFM_FIG_SCREEN = 0, UFM_FIG_PAPER = 1 };
#define UFM_FIG_COLUMN_IN 3.4 /* figure_width = column: one column of a two-column page */
#define UFM_FIG_PAGE_IN 7.0   /* figure_width = page: the whole text width              */

ufm_config *ufm_config_new(void);
void ufm_config_free(ufm_config *cfg);

/* Raw settings, in order of appearance: what a file or command line said,
 * before values are checked (sweeps expand them into points first). */
typedef struct {
  size_t n;
  char **key, **value, **where; /* where: "FILE:LINE" or "command line (argument K)" */
} ufm_settings;

/* Read a file's `key = value` lines into s (appending; a later setting of a
 * key replaces an earlier one). Unknown keys, a key twice in the file, lines
 * without '=' and empty values are errors "FILE:LINE: key: what". */
int ufm_settings_read(ufm_settings *s, const char *path, char *errbuf);
void ufm_settings_put(ufm_settings *s, const char *key, const char *value, const char *where);
void ufm_settings_clear(ufm_settings *s);

/* The experiment's name from its file: basename without .ini; a run
 * directory's config.ini or sweep.ini is named after the directory. */
char *ufm_config_name_from_path(const char *path);

/* The name a run or sweep directory's config.ini / sweep.ini records in its
 * first line ("# ufm experiment 'NAME', ..."), for --resume: a resumed
 * experiment keeps the name it started with. NULL if there is none. */
char *ufm_config_recorded_name(const char *path);

/* The key table, for sweeps and sweep.ini. */
size_t ufm_config_nkeys(void);
const char *ufm_config_key_name(size_t k);
const char *ufm_config_key_default(size_t k);
int ufm_config_key_sweepable(const char *key); /* may hold a list of values */
int ufm_config_key_numeric(const char *key);   /* may hold a range          */
/* A line of config.ini / sweep.ini that does not change the numbers of a
 * run: a comment, `out`, `figure_style`, `figure_width`. Two experiments are
 * the same (resume, sweep reuse) when they agree on every other line. */
int ufm_config_line_ignored(const char *line);

/* The values a setting stands for: one value, a list `a, b, c` (keys that
 * may be swept), or a range `start:stop:count` / `log:start:stop:count`
 * (numeric keys; the end points are kept exactly as written). Each value is
 * checked as the key's value; errors name `where` and the key.
 * *ret_geometric (may be NULL) tells a log range. */
int ufm_config_expand(const char *key, const char *value, const char *where, char ***ret_vals,
                      size_t *ret_n, int *ret_geometric, char *errbuf);
void ufm_config_free_values(char **vals, size_t n);

/* Read `key = value` lines. UFM_EINVAL with "FILE:LINE: key: what" or UFM_EIO. */
int ufm_config_read_file(ufm_config *cfg, const char *path, char *errbuf);

/* Set one key from text; `where` ("FILE:LINE" or "command line") prefixes errors. */
int ufm_config_set(ufm_config *cfg, const char *key, const char *value, const char *where,
                   char *errbuf);

/* Cross-key checks and resolution (counts, majority, out, memory); call once
 * after all keys are set. */
int ufm_config_finish(ufm_config *cfg, char *errbuf);

/* Every key with its resolved value, loadable by ufm_config_read_file. */
void ufm_config_write(const ufm_config *cfg, FILE *fp);

/* Is name an experiment key? */
int ufm_config_is_key(const char *name);

/* The key table for --help: one line per key with its default. */
void ufm_config_print_keys(FILE *fp);

#endif
