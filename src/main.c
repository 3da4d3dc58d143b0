/* main.c -- the ufm command: dispatches subcommands; all checking happens before any work.
 *
 * Exit status: 0 success; 1 a run failed (diverged, I/O error); 2 bad usage
 * or a bad experiment file; 130 / 143 stopped by SIGINT / SIGTERM after
 * saving checkpoints (128 + the signal, the shell's convention).
 */
#include "common.h"
#include "config.h"
#include "geometry.h"
#include "interrupt.h"
#include "plot.h"
#include "run.h"
#include "sweep.h"
#include "theory.h"
#include "version.h"
#include "ufmconf.h"
#ifdef HAVE_MPI
#include <mpi.h>
#endif

#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int exit_code(int status)
{
  if (status == UFM_EINTR) return 128 + (ufm_stop_signal ? ufm_stop_signal : SIGTERM);
  return status == UFM_OK ? 0 : status == UFM_EINVAL ? 2 : 1;
}

static int usage_error(const char *cmd, const char *fmt, const char *arg)
{
  fprintf(stderr, "ufm%s%s: ", cmd ? " " : "", cmd ? cmd : "");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'ufm%s%s --help'.\n", cmd ? " " : "", cmd ? cmd : "");
  return 2;
}

/* Parse --threads' argument: a whole number >= 1. */
static int parse_threads(const char *s, int *n)
{
  char *end;
  long v = strtol(s, &end, 10);
  if (*s == '\0' || *end != '\0' || v < 1 || v > 4096) return 0;
  *n = (int)v;
  return 1;
}

/* ------------------------------------------------------------------------ run */

static void run_help(void)
{
  printf("Usage: ufm run [FILE] [key=value ...] [options]\n"
         "       ufm run --resume DIR [options]\n\n"
         "Run the experiment in FILE (built-in default experiment without FILE),\n"
         "with key=value overrides, into its run directory (key out, default\n"
         "runs/NAME): config.ini, metrics.tsv, summary.tsv, W.npy, H.npy, b.npy,\n"
         "labels.npy and the figure dashboard.png / dashboard.pdf.\n\n"
         "A key holding several values (a list 'a, b, c', a range start:stop:count\n"
         "or log:start:stop:count), or seeds > 1, makes a sweep: every combination\n"
         "runs into OUT/pNNNN, in parallel, then OUT gets results.tsv, summary.tsv\n"
         "(mean and std over seeds), timing.tsv and the figures sweep.png (and\n"
         "heatmap.png for two swept keys). Rerunning the same sweep into the same\n"
         "directory runs only the points not finished yet.\n\n"
         "Checkpoints (keys checkpoint_every, checkpoint_minutes; and on SIGINT or\n"
         "SIGTERM, which stop the run with exit status 130 or 143) go to\n"
         "DIR/checkpoint; 'ufm run --resume DIR' continues a run or sweep from them\n"
         "and ends with the same results, bit for bit, as an uninterrupted run.\n\n"
         "Options:\n"
         "  -q, --quiet        no progress output\n"
         "  -f, --force        overwrite an existing run or sweep directory\n"
         "      --no-plot      do not draw the figures\n"
         "  -t, --threads N    threads for OpenMP and BLAS (default: OMP_NUM_THREADS)\n"
         "      --dry-run      print the points of the experiment and stop\n"
         "      --shard I/N    run only the I-th of N slices of a sweep (I = 1..N)\n"
         "      --keep WHAT    .npy state files kept per run: final (default), all, none\n"
         "      --resume DIR   continue the run or sweep in DIR from its checkpoints\n"
         "                     (its config.ini or sweep.ini; no FILE or key=value)\n"
         "  -h, --help         this text\n\n"
         "Keys (default, meaning):\n");
  ufm_config_print_keys(stdout);
}

/* key=value is an override, unless it names an existing file and its part
 * before '=' is no key (an experiment file whose path holds '='). */
static int is_override(const char *a)
{
  const char *eq = strchr(a, '=');
  if (!eq) return 0;
  char *key = strndup(a, (size_t)(eq - a));
  int known = ufm_config_is_key(key);
  free(key);
  return known || access(a, F_OK) != 0;
}

/* I/N with 1 <= I <= N. */
static int parse_shard(const char *s, size_t *i, size_t *n)
{
  char *end;
  unsigned long a = strtoul(s, &end, 10);
  if (end == s || *end != '/') return 0;
  const char *t = end + 1;
  unsigned long b = strtoul(t, &end, 10);
  if (end == t || *end != '\0' || a < 1 || b < 1 || a > b || b > 1000000) return 0;
  *i = a - 1;
  *n = b;
  return 1;
}

/* The experiment of a subcommand's arguments argv[optind..] (or of the
 * sweep directory `resume`): at most one experiment FILE, then the key=value
 * overrides (which win over it), expanded into the points of a sweep and
 * every point checked -- shared by run and theory, so both read and validate
 * an experiment the same way. Returns a status (errbuf filled), or -1 for a
 * usage error already reported. */
static int read_experiment(const char *cmd, int argc, char **argv, const char *resume,
                           ufm_sweep *sw, char *err)
{
  ufm_settings set = {0};
  char *name = strdup("default");
  int st = UFM_OK, nfile = 0;
  if (resume) {
    /* the experiment is the directory's own: nothing may change it */
    if (optind < argc) {
      free(name);
      usage_error(cmd, "--resume takes no experiment file or key=value ('%s'): the "
                  "directory's config.ini or sweep.ini is the experiment", argv[optind]);
      return -1;
    }
    char *ini = malloc(strlen(resume) + 16), *cfgini = malloc(strlen(resume) + 16);
    sprintf(ini, "%s/sweep.ini", resume);
    sprintf(cfgini, "%s/config.ini", resume);
    const char *from = access(ini, R_OK) == 0 ? ini : access(cfgini, R_OK) == 0 ? cfgini : NULL;
    if (!from) {
      free(ini);
      free(cfgini);
      free(name);
      usage_error(cmd, "--resume %s: not a run or sweep directory (no config.ini, no sweep.ini)", resume);
      return -1;
    }
    st = ufm_settings_read(&set, from, err);
    /* DIR itself, however the directory was named when the run started */
    ufm_settings_put(&set, "out", resume, "--resume");
    free(name);
    name = ufm_config_recorded_name(from);
    if (!name) name = ufm_config_name_from_path(from);
    free(ini);
    free(cfgini);
    nfile = 1;
  }
  for (int k = optind; k < argc && st == UFM_OK; k++) {
    const char *a = argv[k];
    if (is_override(a)) continue;
    if (nfile++) {
      ufm_settings_clear(&set);
      free(name);
      usage_error(cmd, "more than one experiment file ('%s')", a);
      return -1;
    }
    st = ufm_settings_read(&set, a, err);
    free(name);
    name = ufm_config_name_from_path(a);
  }
  for (int k = optind; k < argc && st == UFM_OK; k++) {
    const char *a = argv[k], *eq = strchr(a, '=');
    if (!is_override(a)) continue;
    char *key = strndup(a, (size_t)(eq - a));
    char where[64];
    snprintf(where, sizeof where, "command line (argument %d)", k);
    if (!ufm_config_is_key(key)) st = ufm_fail(err, UFM_EINVAL, "%s: %s: unknown key", where, key);
    else if (eq[1] == '\0') st = ufm_fail(err, UFM_EINVAL, "%s: %s: empty value", where, key);
    else ufm_settings_put(&set, key, eq + 1, where);
    free(key);
  }
  if (st == UFM_OK) st = ufm_sweep_build(sw, &set, name, err);
  ufm_settings_clear(&set);
  free(name);
  return st;
}

/* One configuration (no sweep), for ufm theory. Returns an exit code (0:
 * *ret_cfg holds the finished configuration; else the error is reported). */
static int load_config(const char *cmd, int argc, char **argv, ufm_config **ret_cfg)
{
  char err[UFM_ERRBUF];
  ufm_sweep sw = {0};
  *ret_cfg = NULL;
  int st = read_experiment(cmd, argc, argv, NULL, &sw, err);
  if (st < 0) return 2;
  if (st == UFM_OK && ufm_sweep_is_sweep(&sw))
    st = ufm_fail(err, UFM_EINVAL, "%s: %s takes one setting; this experiment is a sweep of %zu "
                  "points (give one value per key)", sw.naxes ? sw.axes[0].where : "seeds", cmd,
                  sw.npoints);
  if (st == UFM_OK) st = ufm_sweep_point_config(&sw, 0, ret_cfg, err);
  if (st != UFM_OK) fprintf(stderr, "ufm: %s\n", err);
  if (sw.name) ufm_sweep_free(&sw);
  return exit_code(st);
}

static int cmd_run(int argc, char **argv)
{
  static const struct option lo[] = {{"quiet", no_argument, 0, 'q'},
                                     {"force", no_argument, 0, 'f'},
                                     {"no-plot", no_argument, 0, 'P'},
                                     {"threads", required_argument, 0, 't'},
                                     {"dry-run", no_argument, 0, 'D'},
                                     {"shard", required_argument, 0, 'S'},
                                     {"keep", required_argument, 0, 'K'},
                                     {"resume", required_argument, 0, 'R'},
                                     {"help", no_argument, 0, 'h'},
                                     {0, 0, 0, 0}};
  ufm_sweep_opts so = {0};
  so.nshards = 1;
  int c, nthreads = 0, dry = 0;
  const char *resume = NULL;
  optind = 1;
  while ((c = getopt_long(argc, argv, "qft:h", lo, NULL)) != -1) {
    switch (c) {
    case 'q': so.quiet = 1; break;
    case 'f': so.force = 1; break;
    case 'P': so.noplot = 1; break;
    case 'D': dry = 1; break;
    case 'R': resume = optarg; break;
    case 't':
      if (!parse_threads(optarg, &nthreads)) return usage_error("run", "--threads: '%s' is not a whole number >= 1", optarg);
      break;
    case 'S':
      if (!parse_shard(optarg, &so.shard, &so.nshards))
        return usage_error("run", "--shard: '%s' is not I/N with 1 <= I <= N", optarg);
      break;
    case 'K':
      if (!strcmp(optarg, "final")) so.run.keep = UFM_KEEP_FINAL;
      else if (!strcmp(optarg, "all")) so.run.keep = UFM_KEEP_ALL;
      else if (!strcmp(optarg, "none")) so.run.keep = UFM_KEEP_NONE;
      else return usage_error("run", "--keep: '%s' is not final, all or none", optarg);
      break;
    case 'h': run_help(); return 0;
    default: return usage_error("run", "%s", "bad option");
    }
  }
  if (nthreads) ufm_set_threads(nthreads);

  char err[UFM_ERRBUF];
  ufm_sweep sw = {0};
  if (resume) so.run.resume = 1;
  int st = read_experiment("run", argc, argv, resume, &sw, err);
  if (st < 0) return 2; /* a usage error, reported */
  if (st == UFM_OK && dry) {
    if (ufm_mpi_rank() == 0) ufm_sweep_print_points(&sw, stdout);
  } else if (st == UFM_OK) {
    if (so.nshards > 1 && !ufm_sweep_is_sweep(&sw)) so.nshards = 1;
    if (ufm_mpi_rank() != 0) so.quiet = 1;
    st = ufm_sweep_run(&sw, &so, err);
  }
  if (st != UFM_OK && ufm_mpi_rank() == 0) fprintf(stderr, "ufm: %s\n", err);
  if (sw.name) ufm_sweep_free(&sw);
  return exit_code(st);
}

/* ---------------------------------------------------------------------- merge */

static int cmd_merge(int argc, char **argv)
{
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    printf("Usage: ufm merge DIR... out=DIR [--force]\n\n"
           "Join the shard directories of one sweep (ufm run --shard I/N) into one\n"
           "sweep directory: its point directories (hard-linked where possible),\n"
           "results.tsv, summary.tsv, timing.tsv and figures.\n");
    return 0;
  }
  const char *out = NULL;
  int force = 0;
  char **dirs = calloc((size_t)argc, sizeof(char *));
  size_t nd = 0;
  for (int k = 1; k < argc; k++) {
    if (!strncmp(argv[k], "out=", 4)) out = argv[k] + 4;
    else if (!strcmp(argv[k], "--force") || !strcmp(argv[k], "-f")) force = 1;
    else if (argv[k][0] == '-') {
      free(dirs);
      return usage_error("merge", "unknown option '%s'", argv[k]);
    } else dirs[nd++] = argv[k];
  }
  if (!out || !*out || nd == 0) {
    free(dirs);
    return usage_error("merge", "%s", "expects DIR... out=DIR");
  }
  char err[UFM_ERRBUF];
  int st = ufm_sweep_merge(dirs, nd, out, force, err);
  free(dirs);
  if (st != UFM_OK) fprintf(stderr, "ufm: %s\n", err);
  else printf("%s/results.tsv\n", out);
  return exit_code(st);
}

/* --------------------------------------------------------------------- theory */

static void theory_help(void)
{
  printf("Usage: ufm theory [FILE] [key=value ...] [--out DIR]\n\n"
         "Print the closed-form predictions (THEORY.md) for the experiment in FILE\n"
         "with overrides -- the same keys and checks as 'ufm run' -- as\n"
         "name<TAB>value lines: regime (trivial, etf, orthogonal, soft-threshold,\n"
         "svm, interpolation or unknown), loss, objective, norm_W, norm_H, norm_b,\n"
         "margin, nmargin, logit_true, logit_other, logit_gap, w_norm_c, b_c,\n"
         "svm_value, mc_threshold, mc_lambda, minority_collapse, gap_rate, and\n"
         "source and note lines. Settings without a known closed form print\n"
         "'regime<TAB>unknown' and a note saying why.\n\n"
         "Options:\n"
         "  -o, --out DIR   also write DIR/theory.tsv and the C x C matrices\n"
         "                  WWt.tsv, gram_mu.tsv, gram_M.tsv, logits.tsv\n"
         "  -h, --help      this text\n");
}

static int cmd_theory(int argc, char **argv)
{
  static const struct option lo[] = {{"out", required_argument, 0, 'o'},
                                     {"help", no_argument, 0, 'h'},
                                     {0, 0, 0, 0}};
  const char *outdir = NULL;
  int c;
  optind = 1;
  while ((c = getopt_long(argc, argv, "o:h", lo, NULL)) != -1) {
    switch (c) {
    case 'o': outdir = optarg; break;
    case 'h': theory_help(); return 0;
    default: return usage_error("theory", "%s", "bad option");
    }
  }
  ufm_config *cfg;
  int rc = load_config("theory", argc, argv, &cfg);
  if (rc) return rc;
  ufm_theory *th = ufm_theory_for_config(cfg);
  ufm_theory_print(th, stdout);
  if (strcmp(th->regime, "unknown") == 0)
    fprintf(stderr, "ufm theory: no closed form for the minimiser of this setting (see the note lines)\n");
  char err[UFM_ERRBUF];
  int st = outdir ? ufm_theory_write_dir(th, outdir, err) : UFM_OK;
  if (st != UFM_OK) fprintf(stderr, "ufm: %s\n", err);
  ufm_theory_free(th);
  ufm_config_free(cfg);
  return exit_code(st);
}

/* ----------------------------------------------------------------------- plot */

/* The figure style for `ufm plot DIR [figure_style=.. figure_width=..]`:
 * the directory's own setting (FILE = its config.ini or sweep.ini), then the
 * overrides. Any other key=value is a usage error (exit 2). */
static int plot_figure(const char *file, int argc, char **argv, ufm_figure *fig)
{
  ufm_config *cfg = ufm_config_new();
  ufm_settings set = {0};
  char err[UFM_ERRBUF];
  int st = UFM_OK;
  if (ufm_settings_read(&set, file, err) == UFM_OK)
    for (size_t k = 0; k < set.n; k++)
      if (!strncmp(set.key[k], "figure_", 7)) ufm_config_set(cfg, set.key[k], set.value[k], set.where[k], err);
  for (int a = 2; a < argc && st == UFM_OK; a++) {
    char *eq = strchr(argv[a], '=');
    char key[32];
    size_t len = eq ? (size_t)(eq - argv[a]) : 0;
    if (!eq || len >= sizeof key) {
      st = usage_error("plot", "'%s' is not figure_style=... or figure_width=...", argv[a]);
      break;
    }
    memcpy(key, argv[a], len);
    key[len] = '\0';
    if (strcmp(key, "figure_style") && strcmp(key, "figure_width")) {
      st = usage_error("plot", "%s: only figure_style and figure_width can be set when redrawing", key);
      break;
    }
    char where[64];
    snprintf(where, sizeof where, "command line (argument %d)", a);
    if (ufm_config_set(cfg, key, eq + 1, where, err) != UFM_OK) {
      fprintf(stderr, "ufm: %s\n", err);
      st = 2;
    }
  }
  fig->style = cfg->figure_style;
  fig->width = cfg->figure_width;
  ufm_settings_clear(&set);
  ufm_config_free(cfg);
  return st;
}

static int cmd_plot(int argc, char **argv)
{
  if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    printf("Usage: ufm plot DIR [figure_style=screen|paper] [figure_width=column|page|LENGTH]\n\n"
           "(Re)draw the figures of run directory DIR with gnuplot:\n"
           "DIR/dashboard.png and DIR/dashboard.pdf from DIR/metrics.tsv; of a sweep\n"
           "directory: DIR/sweep.png (and heatmap.png) from DIR/summary.tsv.\n"
           "The PDFs follow the directory's figure_style and figure_width unless given\n"
           "here: paper = vector PDF at the given width (column 3.4 in, page 7 in,\n"
           "or e.g. 12cm) in LaTeX's Latin Modern face.\n"
           "Scripts are read from $UFM_PLOTDIR if set (now: %s).\n", ufm_plot_scriptdir());
    return 0;
  }
  if (argc < 2) return usage_error("plot", "%s", "expects one run directory");
  const char *dir = argv[1];
  char err[UFM_ERRBUF];
  char *ini = malloc(strlen(dir) + 16);
  sprintf(ini, "%s/sweep.ini", dir);
  int is_sweep = access(ini, R_OK) == 0;
  if (!is_sweep) sprintf(ini, "%s/config.ini", dir);
  ufm_figure fig;
  int rc = plot_figure(ini, argc, argv, &fig);
  free(ini);
  if (rc != 0) return rc;
  if (is_sweep) {
    ufm_sweep sw;
    int st = ufm_sweep_load_dir(&sw, dir, err);
    if (st == UFM_OK) st = ufm_plot_sweep(&sw, dir, &fig, err);
    if (st == UFM_OK) printf("%s/sweep.png\n%s/sweep.pdf\n", dir, dir);
    else fprintf(stderr, "ufm: %s\n", err);
    if (sw.name) ufm_sweep_free(&sw);
    return exit_code(st);
  }
  char *met = malloc(strlen(dir) + 16);
  sprintf(met, "%s/metrics.tsv", dir);
  int ok = access(met, R_OK) == 0;
  free(met);
  if (!ok) return usage_error("plot", "%s: not a run or sweep directory (no metrics.tsv, no sweep.ini)", dir);
  const char *slash = strrchr(dir, '/');
  const char *title = slash && slash[1] ? slash + 1 : dir;
  int st = ufm_plot_run(dir, title, &fig, err);
  if (st != UFM_OK) {
    fprintf(stderr, "ufm: %s\n", err);
    return 1;
  }
  printf("%s/dashboard.png\n%s/dashboard.pdf\n", dir, dir);
  return 0;
}

/* ------------------------------------------------------------------------ etf */

static int parse_size(const char *s, size_t *v)
{
  char *end;
  unsigned long long x = strtoull(s, &end, 10);
  if (*s == '\0' || *s == '-' || *end != '\0' || x > 100000) return 0;
  *v = (size_t)x;
  return 1;
}

static int cmd_etf(int argc, char **argv)
{
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    printf("Usage: ufm etf C [p]\n\nPrint a simplex equiangular tight frame: C unit vectors in R^p\n"
           "(default p = C-1), pairwise inner products -1/(C-1), one per line, tab-separated.\n");
    return 0;
  }
  size_t C, p;
  if (argc < 2 || argc > 3) return usage_error("etf", "%s", "expects C [p]");
  if (!parse_size(argv[1], &C) || C < 2) return usage_error("etf", "C: '%s' is not a whole number >= 2", argv[1]);
  p = C - 1;
  if (argc == 3 && !parse_size(argv[2], &p)) return usage_error("etf", "p: '%s' is not a whole number", argv[2]);
  if (p + 1 < C) {
    fprintf(stderr, "ufm etf: no simplex ETF of %zu vectors fits in R^%zu (needs p >= C-1 = %zu)\n", C, p, C - 1);
    return 2;
  }
  gsl_matrix *E = gsl_matrix_alloc(C, p);
  ufm_etf(E);
  printf("# simplex ETF: %zu unit vectors in R^%zu, pairwise inner product -1/%zu\n", C, p, C - 1);
  for (size_t c = 0; c < C; c++)
    for (size_t k = 0; k < p; k++) printf("%.17g%c", gsl_matrix_get(E, c, k), k + 1 < p ? '\t' : '\n');
  gsl_matrix_free(E);
  return 0;
}

/* ----------------------------------------------------------------------- seli */

static void print_matrix(const char *title, const gsl_matrix *A)
{
  printf("# %s\n", title);
  for (size_t a = 0; a < A->size1; a++)
    for (size_t b = 0; b < A->size2; b++)
      printf("%.17g%c", gsl_matrix_get(A, a, b), b + 1 < A->size2 ? '\t' : '\n');
}

static int cmd_seli(int argc, char **argv)
{
  if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    printf("Usage: ufm seli n_1,n_2,...,n_C\n\n"
           "Print the SELI geometry of these class counts (Thrampoulidis et al. 2022):\n"
           "the singular values of Zhat = Y - (1/C) 1 1^T, the optimal value ||Zhat||_* of the\n"
           "unconstrained-features SVM and its normalised margin 1/||Zhat||_*, the\n"
           "classifier Gram W W^T = (P D P)^{1/2}, the class-mean Gram (P D P)^{+1/2}, and\n"
           "both normalised to unit Frobenius norm. Balanced counts give the simplex ETF.\n");
    return 0;
  }
  if (argc != 2) return usage_error("seli", "%s", "expects one list of counts n_1,n_2,...");
  char err[UFM_ERRBUF];
  size_t n = 0;
  ufm_config *cfg = ufm_config_new();
  int st = ufm_config_set(cfg, "counts", argv[1], "command line", err);
  if (st == UFM_OK) n = cfg->ncounts;
  else {
    fprintf(stderr, "ufm seli: %s\n", err);
    ufm_config_free(cfg);
    return 2;
  }
  gsl_vector *sv = gsl_vector_alloc(n);
  gsl_matrix *WW = gsl_matrix_alloc(n, n), *K = gsl_matrix_alloc(n, n);
  double nuc, N = 0;
  for (size_t c = 0; c < n; c++) N += (double)cfg->counts[c];
  ufm_seli(n, cfg->counts, sv, WW, K, &nuc);
  printf("# SELI geometry of counts %s (C = %zu, N = %.0f)\n", argv[1], n, N);
  printf("svm_value\t%.17g\nnmargin\t%.17g\nsingular_values\t", nuc, 1.0 / nuc);
  for (size_t k = 0; k < n; k++) printf("%.17g%c", gsl_vector_get(sv, k), k + 1 < n ? ' ' : '\n');
  print_matrix("W W^T = U L U^T = (P D P)^{1/2}", WW);
  print_matrix("class-mean Gram mu_c^T mu_c' = U L^{-1} U^T = (P D P)^{+1/2}", K);
  double fw = 0, fk = 0;
  for (size_t k = 0; k < n * n; k++) {
    fw += WW->data[k] * WW->data[k];
    fk += K->data[k] * K->data[k];
  }
  gsl_matrix_scale(WW, 1.0 / sqrt(fw));
  gsl_matrix_scale(K, 1.0 / sqrt(fk));
  print_matrix("W W^T / ||W W^T||_F", WW);
  print_matrix("class-mean Gram / its Frobenius norm", K);
  gsl_vector_free(sv);
  gsl_matrix_free(WW);
  gsl_matrix_free(K);
  ufm_config_free(cfg);
  return 0;
}

/* ---------------------------------------------------------------- dispatching */

typedef struct {
  const char *name;
  const char *summary;
  int (*fn)(int, char **);
} command;

static const command commands[] = {
    {"run", "run an experiment into a run directory, with its figures", cmd_run},
    {"plot", "(re)draw the figures of a run or sweep directory", cmd_plot},
    {"merge", "join the shard directories of a sweep", cmd_merge},
    {"etf", "print a simplex equiangular tight frame", cmd_etf},
    {"seli", "print the SELI geometry (and SVM value) of class counts", cmd_seli},
    {"theory", "print the closed-form predictions for an experiment's setting", cmd_theory},
};
#define NCOMMANDS (sizeof commands / sizeof commands[0])

static void main_help(void)
{
  printf("Usage: ufm [--threads N] COMMAND [ARGS]\n\n"
         "ufm simulates gradient descent in the unconstrained features model of\n"
         "neural collapse and measures NC1-NC4 as it goes.\n\nCommands:\n");
  for (size_t k = 0; k < NCOMMANDS; k++) printf("  %-6s %s\n", commands[k].name, commands[k].summary);
  printf("\nOptions:\n  -t, --threads N  threads for OpenMP and BLAS (or OMP_NUM_THREADS)\n"
         "  -V, --version    version, GSL, the BLAS in use and the thread count\n"
         "  -h, --help       this text\n\n'ufm COMMAND --help' describes each command.\n"
         "Exit status: 0 success, 1 a run failed (diverged, I/O), 2 bad usage or input.\n");
}

static int ufm_main(int argc, char **argv);

int main(int argc, char **argv)
{
  ufm_blas_select_core(argv); /* may re-execute ufm with faster BLAS kernels (version.h) */
#ifdef HAVE_MPI
  /* MPI only under a launcher (mpirun, srun): a plain `ufm` from an MPI build
   * starts no MPI runtime, which would cost time and write files of its own */
  int launched = getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_RANK")
                 || getenv("PMI_SIZE");
  if (launched) MPI_Init(&argc, &argv);
  int rc = ufm_main(argc, argv);
  if (launched) MPI_Finalize();
  return rc;
#else
  return ufm_main(argc, argv);
#endif
}

static int ufm_main(int argc, char **argv)
{
  ufm_set_threads(ufm_threads()); /* OMP_NUM_THREADS for OpenMP, one BLAS thread (version.c) */
  int k = 1;
  ufm_interrupt_install();
  while (k < argc && argv[k][0] == '-') {
    const char *a = argv[k];
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      main_help();
      return 0;
    } else if (!strcmp(a, "--version") || !strcmp(a, "-V")) {
      ufm_print_version();
      return 0;
    } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
      int n;
      if (k + 1 >= argc || !parse_threads(argv[k + 1], &n))
        return usage_error(NULL, "--threads: '%s' is not a whole number >= 1", k + 1 < argc ? argv[k + 1] : "");
      ufm_set_threads(n);
      k += 2;
    } else if (!strncmp(a, "--threads=", 10)) {
      int n;
      if (!parse_threads(a + 10, &n)) return usage_error(NULL, "--threads: '%s' is not a whole number >= 1", a + 10);
      ufm_set_threads(n);
      k++;
    } else {
      return usage_error(NULL, "unknown option '%s'", a);
    }
  }
  if (k >= argc) {
    fprintf(stderr, "ufm: no command given. Try 'ufm --help'.\n");
    return 2;
  }
  for (size_t c = 0; c < NCOMMANDS; c++)
    if (!strcmp(argv[k], commands[c].name)) return commands[c].fn(argc - k, argv + k);
  return usage_error(NULL, "unknown command '%s'", argv[k]);
}
