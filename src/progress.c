/* progress.c -- a progress bar with iterations/s and the current loss. */
#include "progress.h"

#include <stdio.h>
#include <time.h>
#include <unistd.h>

double ufm_clock(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void ufm_progress_start(ufm_progress *pg, const char *label, unsigned long total, int quiet)
{
  pg->mode = quiet ? 0 : isatty(STDERR_FILENO) ? 2 : 1;
  pg->total = total;
  pg->first = 0;
  pg->t0 = pg->last = ufm_clock();
  pg->label = label;
}

static void draw(ufm_progress *pg, unsigned long it, double loss, double now, int final)
{
  double el = now - pg->t0, rate = el > 0 && it >= pg->first ? (double)(it - pg->first) / el : 0.0;
  double frac = pg->total ? (double)it / (double)pg->total : 1.0;
  if (pg->mode == 2) {
    char bar[31];
    int fill = (int)(frac * 30 + 0.5);
    for (int k = 0; k < 30; k++) bar[k] = k < fill ? '#' : '.';
    bar[30] = '\0';
    fprintf(stderr, "\r%s [%s] %3.0f%% %lu/%lu  %.3g it/s  loss %.4g\033[K%s", pg->label, bar,
            100 * frac, it, pg->total, rate, loss, final ? "\n" : "");
  } else {
    fprintf(stderr, "%s: iteration %lu/%lu (%.0f%%), %.3g it/s, loss %.6g\n", pg->label, it,
            pg->total, 100 * frac, rate, loss);
  }
  fflush(stderr);
}

void ufm_progress_update(ufm_progress *pg, unsigned long it, double loss)
{
  if (pg->mode == 0) return;
  double now = ufm_clock();
  if (now - pg->last < (pg->mode == 2 ? 0.1 : 5.0)) return;
  pg->last = now;
  draw(pg, it, loss, now, 0);
}

void ufm_progress_end(ufm_progress *pg, unsigned long it, double loss, const char *status)
{
  if (pg->mode == 0) return;
  double now = ufm_clock();
  draw(pg, it, loss, now, 1);
  if (pg->first > 0)
    fprintf(stderr, "%s: %s at iteration %lu, after %lu more in %.2f s\n", pg->label, status, it,
            it - pg->first, now - pg->t0);
  else
    fprintf(stderr, "%s: %s after %lu iterations in %.2f s\n", pg->label, status, it, now - pg->t0);
}
