/* run.h -- one experiment from a resolved configuration to a run directory (SPEC section 5). */
#ifndef UFM_RUN_H
#define UFM_RUN_H

#include "config.h"
#include "model.h"

typedef struct {
  int quiet;   /* no progress output          */
  int force;   /* overwrite an existing run   */
  int noplot;  /* skip the figures            */
  int keep;    /* UFM_KEEP_*: which .npy files stay after the run */
  int resume;  /* continue from the run directory's checkpoint when there is one
                  (else start afresh, replacing what is there); a finished run
                  (summary.tsv present) is left as it is */
} ufm_run_opts;

enum { UFM_KEEP_FINAL = 0, UFM_KEEP_ALL = 1, UFM_KEEP_NONE = 2 };

/* Run cfg into cfg->out. Returns UFM_OK (finished or converged), UFM_EINVAL
 * (bad input found before anything ran: nothing written), UFM_EIO or
 * UFM_EDIVERGED (the run stopped; everything up to it is saved), UFM_EINTR
 * (SIGINT/SIGTERM: a checkpoint and metrics.tsv were written; the message
 * names the command that resumes the run).
 *
 * Checkpoints (checkpoint.h) are written every cfg->checkpoint_every
 * iterations and every cfg->checkpoint_minutes of wall time, and on a stop
 * signal; they are removed when the run ends, unless opts->keep is
 * UFM_KEEP_ALL. */
int ufm_run(const ufm_config *cfg, const ufm_run_opts *opts, char *errbuf);

/* Load W.npy, H.npy and (optionally) b.npy from dir into m, checking shapes
 * against m and that every entry is finite. UFM_EINVAL or UFM_EIO on error. */
int ufm_state_load(ufm_model *m, const char *dir, char *errbuf);

/* Write W.npy, H.npy, b.npy, labels.npy into dir. */
int ufm_state_save(const ufm_model *m, const char *dir, char *errbuf);

/* The logged iterations for T steps and L log points: 0, T and
 * round(T^(j/(L-1))) for j = 0..L-1, sorted, without repeats. Returns the
 * count; *ret_its is allocated. */
size_t ufm_log_schedule(unsigned long T, size_t L, unsigned long **ret_its);

#endif
