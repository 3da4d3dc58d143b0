/* optim.c -- gradient descent and heavy-ball momentum on (W, H, b). */
#include "optim.h"
#include "common.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const ufm_optim_type ufm_optim_gd = {"gd", "full-batch gradient descent", 0};
const ufm_optim_type ufm_optim_momentum = {
    "momentum", "heavy-ball momentum, v <- mu v + grad, theta <- theta - lr v", 1};

const ufm_optim_type ufm_optim_ngd = {
    "ngd", "normalised GD, theta <- theta - (lr / loss) grad: steps grow as the loss shrinks", 0};

static const ufm_optim_type *const optim_table[] = {&ufm_optim_gd, &ufm_optim_momentum,
                                                    &ufm_optim_ngd};
#define NOPTIM (sizeof optim_table / sizeof optim_table[0])

const ufm_optim_type *ufm_optim_lookup(const char *name)
{
  for (size_t k = 0; k < NOPTIM; k++)
    if (strcmp(name, optim_table[k]->name) == 0) return optim_table[k];
  return NULL;
}

const char *ufm_optim_names(void) { return "gd, momentum, ngd"; }

ufm_optim *ufm_optim_alloc(const ufm_optim_type *T, size_t C, size_t p, size_t N, double lr,
                           double mu)
{
  ufm_optim *o = ufm_calloc(1, sizeof *o);
  o->type = T;
  o->lr = lr;
  o->mu = mu;
  if (T->uses_velocity) {
    o->vW = gsl_matrix_calloc(C, p);
    o->vH = gsl_matrix_calloc(p, N);
    o->vb = gsl_vector_calloc(C);
    if (!o->vW || !o->vH || !o->vb) {
      ufm_optim_free(o);
      return NULL;
    }
  }
  return o;
}

void ufm_optim_free(ufm_optim *o)
{
  if (!o) return;
  if (o->vW) gsl_matrix_free(o->vW);
  if (o->vH) gsl_matrix_free(o->vH);
  if (o->vb) gsl_vector_free(o->vb);
  free(o);
}

/* The step size of this iteration: lr, or lr / loss for ngd. Normalised GD
 * (Nacson et al. 2019) keeps the unregularised cross-entropy's exponentially
 * shrinking gradient from stalling the max-margin drift: the margin then
 * grows linearly in t instead of like log t. */
static double step_size(const ufm_optim *o, const ufm_grad_ws *ws)
{
  if (o->type == &ufm_optim_ngd && ws->loss > 0) return o->lr / ws->loss;
  return o->lr;
}

double ufm_optim_step_bound(const ufm_optim *o, const ufm_grad_ws *ws)
{
  if (o->type->uses_velocity) return o->lr * (o->mu * o->vmax + ws->gmax);
  return step_size(o, ws) * ws->gmax;
}

static void gd_block(double *x, const double *g, size_t n, double lr)
{
#pragma omp parallel for simd schedule(static) if (n >= UFM_PAR_MIN)
  for (size_t k = 0; k < n; k++) x[k] -= lr * g[k];
}

/* v <- mu v + g; x <- x - lr v; returns max |v| (exact under any split). */
static double momentum_block(double *x, double *v, const double *g, size_t n, double lr,
                             double mu)
{
  double vm = 0.0;
#pragma omp parallel for schedule(static) reduction(max : vm) if (n >= UFM_PAR_MIN)
  for (size_t k = 0; k < n; k++) {
    double vk = mu * v[k] + g[k];
    v[k] = vk;
    x[k] -= lr * vk;
    double a = fabs(vk);
    if (a > vm) vm = a;
  }
  return vm;
}

void ufm_optim_prepare(const ufm_optim *o, ufm_grad_ws *ws)
{
  ws->fold_lr = o->type->uses_velocity ? 0.0 : o->lr;
  ws->fold_ngd = o->type == &ufm_optim_ngd;
}

void ufm_optim_iterate(ufm_optim *o, ufm_model *m, ufm_grad_ws *ws)
{
  const size_t nW = m->C * m->p, nH = m->p * m->N, nb = m->C;
  if (!o->type->uses_velocity) {
    double lr = step_size(o, ws);
    gd_block(m->W->data, ws->gW->data, nW, lr);
    if (ws->h_next) { /* the evaluation already wrote H - lr grad_H (grad.h) */
      gsl_matrix *h = m->H;
      m->H = ws->gH;
      ws->gH = h;
      ws->h_next = 0;
    } else
      gd_block(m->H->data, ws->gH->data, nH, lr);
    if (m->bias) gd_block(m->b->data, ws->gb->data, nb, lr);
    return;
  }
  double a = momentum_block(m->W->data, o->vW->data, ws->gW->data, nW, o->lr, o->mu);
  double b = momentum_block(m->H->data, o->vH->data, ws->gH->data, nH, o->lr, o->mu);
  double c = m->bias ? momentum_block(m->b->data, o->vb->data, ws->gb->data, nb, o->lr, o->mu)
                     : 0.0;
  o->vmax = fmax(a, fmax(b, c));
}
