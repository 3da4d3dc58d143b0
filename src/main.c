/* main.c -- the ufm command: dispatches subcommands; all checking happens before any work.
 *
 * Exit status: 0 success; 1 a run failed (diverged, I/O error); 2 bad usage
 * or a bad experiment file.
 */
#include "common.h"
#include "config.h"
#include "geometry.h"
#include "plot.h"
#include "run.h"
#include "theory.h"
#include "version.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int exit_code(int status) { return status == UFM_OK ? 0 : status == UFM_EINVAL ? 2 : 1; }

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
  printf("Usage: ufm run [FILE] [key=value ...] [options]\n\n"
         "Run the experiment in FILE (built-in default experiment without FILE),\n"
         "with key=value overrides, into its run directory (key out, default\n"
         "runs/NAME): config.ini, metrics.tsv, summary.tsv, W.npy, H.npy, b.npy,\n"
         "labels.npy and the figure dashboard.png / dashboard.pdf.\n\n"
         "Options:\n"
         "  -q, --quiet        no progress output\n"
         "  -f, --force        overwrite an existing run directory\n"
         "      --no-plot      do not draw the figures\n"
         "  -t, --threads N    threads for OpenMP and BLAS (default: OMP_NUM_THREADS)\n"
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

/* The experiment of a subcommand's arguments argv[optind..]: at most one
 * experiment FILE, then the key=value overrides (which win over it), then
 * the cross-key checks -- shared by run and theory, so both read and
 * validate an experiment the same way. Returns an exit code (0: *ret_cfg
 * holds the finished configuration; else the error has been reported). */
static int load_config(const char *cmd, int argc, char **argv, ufm_config **ret_cfg)
{
  char err[UFM_ERRBUF];
  ufm_config *cfg = ufm_config_new();
  int st = UFM_OK, nfile = 0;
  *ret_cfg = NULL;
  for (int k = optind; k < argc && st == UFM_OK; k++) {
    const char *a = argv[k];
    if (is_override(a)) continue;
    if (nfile++) {
      ufm_config_free(cfg);
      return usage_error(cmd, "more than one experiment file ('%s')", a);
    }
    st = ufm_config_read_file(cfg, a, err);
  }
  for (int k = optind; k < argc && st == UFM_OK; k++) {
    const char *a = argv[k], *eq = strchr(a, '=');
    if (!is_override(a)) continue;
    char *key = strndup(a, (size_t)(eq - a));
    char where[64];
    snprintf(where, sizeof where, "command line (argument %d)", k);
    st = ufm_config_set(cfg, key, eq + 1, where, err);
    free(key);
  }
  if (st == UFM_OK) st = ufm_config_finish(cfg, err);
  if (st != UFM_OK) {
    fprintf(stderr, "ufm: %s\n", err);
    ufm_config_free(cfg);
    return exit_code(st);
  }
  *ret_cfg = cfg;
  return 0;
}

static int cmd_run(int argc, char **argv)
{
  static const struct option lo[] = {{"quiet", no_argument, 0, 'q'},
                                     {"force", no_argument, 0, 'f'},
                                     {"no-plot", no_argument, 0, 'P'},
                                     {"threads", required_argument, 0, 't'},
                                     {"help", no_argument, 0, 'h'},
                                     {0, 0, 0, 0}};
  ufm_run_opts opts = {0, 0, 0};
  int c, nthreads = 0;
  optind = 1;
  while ((c = getopt_long(argc, argv, "qft:h", lo, NULL)) != -1) {
    switch (c) {
    case 'q': opts.quiet = 1; break;
    case 'f': opts.force = 1; break;
    case 'P': opts.noplot = 1; break;
    case 't':
      if (!parse_threads(optarg, &nthreads)) return usage_error("run", "--threads: '%s' is not a whole number >= 1", optarg);
      break;
    case 'h': run_help(); return 0;
    default: return usage_error("run", "%s", "bad option");
    }
  }
  if (nthreads) ufm_set_threads(nthreads);

  ufm_config *cfg;
  int rc = load_config("run", argc, argv, &cfg);
  if (rc) return rc;
  char err[UFM_ERRBUF];
  int st = ufm_run(cfg, &opts, err);
  if (st != UFM_OK) fprintf(stderr, "ufm: %s\n", err);
  ufm_config_free(cfg);
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

static int cmd_plot(int argc, char **argv)
{
  if (argc == 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
    printf("Usage: ufm plot DIR\n\n(Re)draw the figures of run directory DIR with gnuplot:\n"
           "DIR/dashboard.png and DIR/dashboard.pdf from DIR/metrics.tsv.\n"
           "Scripts are read from $UFM_PLOTDIR if set (now: %s).\n", ufm_plot_scriptdir());
    return 0;
  }
  if (argc != 2) return usage_error("plot", "%s", "expects one run directory");
  const char *dir = argv[1];
  char *met = malloc(strlen(dir) + 16);
  sprintf(met, "%s/metrics.tsv", dir);
  int ok = access(met, R_OK) == 0;
  free(met);
  if (!ok) return usage_error("plot", "%s: not a run directory (no readable metrics.tsv)", dir);
  char err[UFM_ERRBUF];
  const char *slash = strrchr(dir, '/');
  const char *title = slash && slash[1] ? slash + 1 : dir;
  int st = ufm_plot_run(dir, title, err);
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

/* ---------------------------------------------------------------- dispatching */

typedef struct {
  const char *name;
  const char *summary;
  int (*fn)(int, char **);
} command;

static const command commands[] = {
    {"run", "run an experiment into a run directory, with its figures", cmd_run},
    {"plot", "(re)draw the figures of a run directory", cmd_plot},
    {"etf", "print a simplex equiangular tight frame", cmd_etf},
    {"theory", "print the closed-form predictions for an experiment", cmd_theory},
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

int main(int argc, char **argv)
{
  int k = 1;
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
