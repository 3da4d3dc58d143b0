/* checkpoint.h -- the whole state of a run in its directory, written atomically, read back exactly.
 *
 * A checkpoint is the subdirectory DIR/checkpoint holding
 *   W.npy, H.npy, b.npy        the state theta_t (before step t)
 *   vW.npy, vH.npy, vb.npy     the momentum buffers (optimizer momentum only)
 *   metrics.npy                the metrics rows logged so far, shape (rows, 1 + UFM_NMETRICS):
 *                              column 0 the iteration, then the metrics.tsv columns, exact bits
 *   config.ini                 the experiment the state belongs to
 *   checkpoint.tsv             the manifest, written last: format, iteration, log-schedule
 *                              position, last step's largest velocity entry, rank_M of the
 *                              last metrics evaluation, seconds computed so far, column names
 * There is no random state to save: the RNG is used only to draw the
 * initial point and is freed before the first step.
 *
 * Atomicity: the new checkpoint is written as DIR/checkpoint.new, then
 * DIR/checkpoint is renamed to DIR/checkpoint.old, checkpoint.new to
 * checkpoint, and checkpoint.old removed. A directory is only ever renamed
 * to `checkpoint` or `checkpoint.old` once complete, so a process killed at
 * any moment leaves a complete checkpoint (the previous one or the new one)
 * under one of those two names; ufm_ckpt_load tries them in that order.
 */
#ifndef UFM_CHECKPOINT_H
#define UFM_CHECKPOINT_H

#include <stddef.h>

#include "config.h"
#include "model.h"
#include "optim.h"

/* Where a run stands, besides the model and optimizer buffers. */
typedef struct {
  unsigned long iter; /* the state is theta_iter: iter steps done        */
  size_t log_next;    /* index of the next logged iteration in the schedule */
  double seconds;     /* computation time spent so far (all sessions)     */
  size_t rank;        /* rank_M of the last metrics evaluation            */
  size_t rows;        /* metrics rows logged so far                       */
  unsigned long *row_iter; /* rows iterations (owned by the caller on save; allocated on load) */
  double *row_vals;        /* rows x UFM_NMETRICS                           */
} ufm_ckpt;

/* Write the checkpoint of (cfg, m, o, ck) into dir/checkpoint atomically
 * (see above). UFM_OK, or UFM_EIO with the previous checkpoint untouched. */
int ufm_ckpt_save(const char *dir, const ufm_config *cfg, const ufm_model *m, const ufm_optim *o,
                  const ufm_ckpt *ck, char *errbuf);

/* Read the checkpoint of dir into m, o and ck (ck->row_iter, ck->row_vals
 * allocated; free with ufm_ckpt_clear, also after an error). *found = 0 and UFM_OK when dir holds
 * no checkpoint. UFM_EINVAL when the checkpoint belongs to another
 * experiment (its config.ini differs outside `out`), was written with other
 * metric columns, or is malformed. */
int ufm_ckpt_load(const char *dir, const ufm_config *cfg, ufm_model *m, ufm_optim *o, ufm_ckpt *ck,
                  int *found, char *errbuf);

void ufm_ckpt_clear(ufm_ckpt *ck);

/* Whether dir holds a checkpoint (complete, under either name). */
int ufm_ckpt_exists(const char *dir);

/* Remove dir's checkpoint directories (checkpoint, checkpoint.old, checkpoint.new). */
void ufm_ckpt_remove(const char *dir);

#endif
