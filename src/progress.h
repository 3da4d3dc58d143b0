/* progress.h -- progress on stderr: a bar on a terminal, plain periodic lines otherwise, nothing when quiet. */
#ifndef UFM_PROGRESS_H
#define UFM_PROGRESS_H

typedef struct {
  int mode; /* 0 quiet, 1 lines, 2 bar */
  unsigned long total;
  unsigned long first; /* iteration this session started from (resumed runs): rates count from it */
  double t0, last;
  const char *label;
} ufm_progress;

void ufm_progress_start(ufm_progress *pg, const char *label, unsigned long total, int quiet);
/* Cheap to call every iteration: draws at most 10 times a second (bar) or
 * every 5 seconds (lines). */
void ufm_progress_update(ufm_progress *pg, unsigned long it, double loss);
void ufm_progress_end(ufm_progress *pg, unsigned long it, double loss, const char *status);

/* Seconds on a monotonic clock. */
double ufm_clock(void);

#endif
