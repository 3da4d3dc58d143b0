/* plot.c -- draws a run's figures by running gnuplot on the scripts in plots/, outputs renamed into place. */
#include "plot.h"
#include "common.h"
#include "fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ufmconf.h" /* autoconf: UFM_GNUPLOT */

#ifndef UFM_SRCPLOTDIR
#define UFM_SRCPLOTDIR "plots"
#endif
#ifndef UFM_PLOTDIR
#define UFM_PLOTDIR "/usr/local/share/ufm/plots"
#endif

static int is_dir(const char *p)
{
  struct stat sb;
  return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

const char *ufm_plot_scriptdir(void)
{
  const char *env = getenv("UFM_PLOTDIR");
  if (env && *env) return env;
  if (is_dir(UFM_SRCPLOTDIR)) return UFM_SRCPLOTDIR;
  return UFM_PLOTDIR;
}

/* gnuplot single-quoted string: a quote is written twice. */
static void gp_quote(char *dst, size_t cap, const char *s)
{
  size_t k = 0;
  if (cap < 3) return;
  dst[k++] = '\'';
  for (; *s && k + 3 < cap; s++) {
    if (*s == '\'') dst[k++] = '\'';
    dst[k++] = *s;
  }
  dst[k++] = '\'';
  dst[k] = '\0';
}

/* Run `gnuplot -e SETUP SCRIPT`, return its exit status (127: not found). */
static int run_gnuplot(const char *setup, const char *script)
{
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    execlp(UFM_GNUPLOT, UFM_GNUPLOT, "-e", setup, script, (char *)NULL);
    execlp("gnuplot", "gnuplot", "-e", setup, script, (char *)NULL);
    _exit(127);
  }
  int ws;
  while (waitpid(pid, &ws, 0) < 0)
    if (errno != EINTR) return -1;
  return WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
}

int ufm_plot_run(const char *dir, const char *title, char *errbuf)
{
  char *script = ufm_path_join(ufm_plot_scriptdir(), "dashboard.gp");
  char *png = ufm_path_join(dir, "dashboard.png"), *pdf = ufm_path_join(dir, "dashboard.pdf");
  size_t n = strlen(png) + 32;
  char *tpng = ufm_malloc(n), *tpdf = ufm_malloc(n);
  snprintf(tpng, n, "%s.tmp.%ld", png, (long)getpid());
  snprintf(tpdf, n, "%s.tmp.%ld", pdf, (long)getpid());

  /* the predicted limits, if the run has them; '' tells the script there
   * are none (gnuplot 5.4 cannot test for a file without a warning) */
  char *theory = ufm_path_join(dir, "theory.tsv");
  if (access(theory, R_OK) != 0) theory[0] = '\0';

  size_t cap = 4 * (strlen(dir) + strlen(tpng) + strlen(tpdf) + strlen(title) + strlen(theory)) + 160;
  char *setup = ufm_malloc(cap), *q1 = ufm_malloc(cap), *q2 = ufm_malloc(cap),
       *q3 = ufm_malloc(cap), *q4 = ufm_malloc(cap), *q5 = ufm_malloc(cap);
  gp_quote(q1, cap, dir);
  gp_quote(q2, cap, tpng);
  gp_quote(q3, cap, tpdf);
  gp_quote(q4, cap, title);
  gp_quote(q5, cap, theory);
  snprintf(setup, cap, "dir=%s; out_png=%s; out_pdf=%s; title=%s; theory=%s", q1, q2, q3, q4, q5);

  int st = UFM_OK;
  if (access(script, R_OK) != 0) {
    st = ufm_fail(errbuf, UFM_EIO, "%s: plot script not found (set UFM_PLOTDIR)", script);
  } else {
    int rc = run_gnuplot(setup, script);
    if (rc == 127)
      st = ufm_fail(errbuf, UFM_EIO,
                    "gnuplot not found: install it (apt-get install gnuplot-nox), then draw the "
                    "figures with: ufm plot %s", dir);
    else if (rc != 0)
      st = ufm_fail(errbuf, UFM_EIO, "gnuplot failed (status %d) drawing %s", rc, script);
    else if (rename(tpng, png) != 0 || rename(tpdf, pdf) != 0)
      st = ufm_fail(errbuf, UFM_EIO, "%s: cannot rename figure into place: %s", dir, strerror(errno));
  }
  unlink(tpng);
  unlink(tpdf);
  free(script);
  free(png);
  free(pdf);
  free(tpng);
  free(tpdf);
  free(setup);
  free(q1);
  free(q2);
  free(q3);
  free(q4);
  free(q5);
  free(theory);
  return st;
}
