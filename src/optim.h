/* optim.h -- first-order optimisers for the UFM, as a table: gd, momentum.
 *
 * GSL's set / iterate split: the caller owns the loop. Each iteration is
 *   ufm_grad_eval(problem, model, ws)        (gradient at the current point)
 *   ufm_optim_iterate(opt, model, ws)        (one update from that gradient)
 * (after ufm_optim_prepare(opt, ws), gd and ngd do H's update inside the
 * evaluation and the iteration only swaps it in)
 * so metrics, logging and checkpoints happen between the two, outside.
 */
#ifndef UFM_OPTIM_H
#define UFM_OPTIM_H

#include "grad.h"

typedef struct ufm_optim ufm_optim;

typedef struct {
  const char *name;
  const char *description;
  int uses_velocity; /* allocates vW, vH, vb */
} ufm_optim_type;

extern const ufm_optim_type ufm_optim_gd;
extern const ufm_optim_type ufm_optim_momentum;
extern const ufm_optim_type ufm_optim_ngd;
const ufm_optim_type *ufm_optim_lookup(const char *name);
const char *ufm_optim_names(void);

struct ufm_optim {
  const ufm_optim_type *type;
  double lr;
  double mu;                /* heavy-ball coefficient (momentum)            */
  gsl_matrix *vW, *vH;      /* velocities (momentum), same shapes as W, H   */
  gsl_vector *vb;
  double vmax;              /* largest |velocity entry| after the last step */
};

ufm_optim *ufm_optim_alloc(const ufm_optim_type *T, size_t C, size_t p, size_t N, double lr,
                           double mu);
void ufm_optim_free(ufm_optim *o);

/* Largest change one more step could make to any entry, for the divergence
 * guard: a step is refused (and the run stopped) when
 * thetamax + ufm_optim_step_bound(...) would leave the finite range. */
double ufm_optim_step_bound(const ufm_optim *o, const ufm_grad_ws *ws);

/* One update from the gradient in ws (all blocks from the same point):
 *   gd:       theta <- theta - lr grad
 *   momentum: v <- mu v + grad; theta <- theta - lr v   (PyTorch convention)
 *   ngd:      theta <- theta - (lr / loss) grad          (loss at the same point)
 * b is left untouched when the model has no bias. */
void ufm_optim_iterate(ufm_optim *o, ufm_model *m, ufm_grad_ws *ws);

/* Let ufm_grad_eval take gd's and ngd's step of H in its own pass over H
 * (grad.h, fold_lr): the same bits, two passes over p N doubles less. Call
 * once, before the loop, when every evaluation is followed by
 * ufm_optim_iterate or by the end of the run (never by a second evaluation
 * that expects grad_H in ws). */
void ufm_optim_prepare(const ufm_optim *o, ufm_grad_ws *ws);

#endif
