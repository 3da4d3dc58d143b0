/* grad.c -- loss and gradient of the UFM objective: three dgemm calls plus fused elementwise passes.
 *
 *   Z^T    = H^T W^T (+ 1 b^T)      dgemm (N x C)     then the loss pass turns Z^T into G^T
 *   grad_W = G H^T + lambda_W W     dgemm (C x p)     then a pass adding the decay
 *   grad_H = W^T G + lambda_H H     dgemm (p x N)     then a pass adding the decay
 *
 * The decay passes also collect, row by row, the squared norms of state and
 * gradient and the largest entries, so nothing else has to read H again.
 * Partial sums are kept per row and added in row order: the result does not
 * depend on how OpenMP splits the rows.
 */
#include "grad.h"
#include "common.h"
#include "gemm.h"

#include <math.h>
#include <stdlib.h>
#include <gsl/gsl_blas.h>

ufm_grad_ws *ufm_grad_ws_alloc(size_t C, size_t p, size_t N)
{
  ufm_grad_ws *ws = ufm_calloc(1, sizeof *ws);
  ws->C = C;
  ws->p = p;
  ws->N = N;
  ws->ZT = gsl_matrix_alloc(N, C);
  ws->gW = gsl_matrix_alloc(C, p);
  ws->gH = gsl_matrix_alloc(p, N);
  ws->gb = gsl_vector_calloc(C);
  if (!ws->ZT || !ws->gW || !ws->gH || !ws->gb) {
    ufm_grad_ws_free(ws);
    return NULL;
  }
  ws->loss_i = ufm_malloc(N * sizeof(double));
  ws->margin = ufm_malloc(N * sizeof(double));
  ws->pred = ufm_malloc(N * sizeof(int32_t));
  ws->zstat = ufm_malloc(2 * N * sizeof(double));
  ws->rows = ufm_malloc(2 * (p + C) * sizeof(double));
  return ws;
}

void ufm_grad_ws_free(ufm_grad_ws *ws)
{
  if (!ws) return;
  if (ws->ZT) gsl_matrix_free(ws->ZT);
  if (ws->gW) gsl_matrix_free(ws->gW);
  if (ws->gH) gsl_matrix_free(ws->gH);
  if (ws->gb) gsl_vector_free(ws->gb);
  free(ws->loss_i);
  free(ws->margin);
  free(ws->pred);
  free(ws->zstat);
  free(ws->rows);
  free(ws);
}

double ufm_sumsq(const double *x, size_t n)
{
  double s0 = 0, s1 = 0, s2 = 0, s3 = 0;
  size_t k = 0;
  for (; k + 4 <= n; k += 4) {
    s0 += x[k] * x[k];
    s1 += x[k + 1] * x[k + 1];
    s2 += x[k + 2] * x[k + 2];
    s3 += x[k + 3] * x[k + 3];
  }
  for (; k < n; k++) s0 += x[k] * x[k];
  return (s0 + s1) + (s2 + s3);
}

static double maxabs(const double *x, size_t n)
{
  double m = 0.0;
  for (size_t k = 0; k < n; k++) {
    double a = fabs(x[k]);
    if (!(a <= m)) m = a; /* NaN propagates */
  }
  return m;
}

/* g <- g + lambda x for an R x L row-major block; per row: ||x_r||^2 into
 * xs[r], ||g_r||^2 into gs[r]; returns through *xmax, *gmax the largest
 * |entry| (NaN if any entry is NaN). */
static void decay_pass(size_t R, size_t L, const double *x, double *g, double lambda, double *xs,
                       double *gs, double *xmax, double *gmax)
{
  double xm = 0.0, gm = 0.0;
  int nan_seen = 0;
#pragma omp parallel for schedule(static) reduction(max : xm, gm) reduction(| : nan_seen) \
    if (R * L >= UFM_PAR_MIN)
  for (size_t r = 0; r < R; r++) {
    const double *xr = x + r * L;
    double *gr = g + r * L;
    if (lambda != 0.0)
      for (size_t k = 0; k < L; k++) gr[k] += lambda * xr[k];
    xs[r] = ufm_sumsq(xr, L);
    gs[r] = ufm_sumsq(gr, L);
    double a = maxabs(xr, L), b = maxabs(gr, L);
    if (isnan(a) || isnan(b)) nan_seen = 1;
    if (a > xm) xm = a;
    if (b > gm) gm = b;
  }
  *xmax = nan_seen ? NAN : xm;
  *gmax = nan_seen ? NAN : gm;
}

static double sum_in_order(const double *x, size_t n)
{
  double s = 0.0;
  for (size_t k = 0; k < n; k++) s += x[k];
  return s;
}

int ufm_grad_eval(const ufm_problem *pb, const ufm_model *m, ufm_grad_ws *ws)
{
  const size_t C = m->C, p = m->p, N = m->N;

  /* logits, then the loss pass turns them into G^T in place */
  ufm_gemm(CblasTrans, CblasTrans, 1.0, m->H, m->W, 0.0, ws->ZT);
  ws->loss = ufm_loss_batch(pb->loss, N, C, ws->ZT->data, m->bias ? m->b->data : NULL,
                            m->labels, ws->loss_i, ws->pred, ws->margin, ws->zstat);

  /* grad_W = G H^T, grad_H = W^T G (G = (G^T)^T), both from the same point */
  ufm_gemm(CblasTrans, CblasTrans, 1.0, ws->ZT, m->H, 0.0, ws->gW);
  ufm_gemm(CblasTrans, CblasTrans, 1.0, m->W, ws->ZT, 0.0, ws->gH);

  double *rx = ws->rows, *rg = ws->rows + (p + C);
  double wmax, gwmax, hmax, ghmax;
  decay_pass(C, p, m->W->data, ws->gW->data, pb->lambda_W, rx, rg, &wmax, &gwmax);
  decay_pass(p, N, m->H->data, ws->gH->data, pb->lambda_H, rx + C, rg + C, &hmax, &ghmax);
  ws->normW2 = sum_in_order(rx, C);
  ws->normH2 = sum_in_order(rx + C, p);
  double g2 = sum_in_order(rg, C) + sum_in_order(rg + C, p);

  /* grad_b = G 1 + lambda_b b: column sums of G^T, each in sample order */
  double bmax = 0.0, gbmax = 0.0;
  ws->normb2 = 0.0;
  gsl_vector_set_zero(ws->gb);
  if (m->bias) {
    double *gb = ws->gb->data;
    const double *G = ws->ZT->data, *b = m->b->data;
#pragma omp parallel for schedule(static) if (N * C >= UFM_PAR_MIN)
    for (size_t c = 0; c < C; c++) {
      double s = 0.0;
      for (size_t i = 0; i < N; i++) s += G[i * C + c];
      gb[c] = s + pb->lambda_b * b[c];
    }
    ws->normb2 = ufm_sumsq(b, C);
    g2 += ufm_sumsq(gb, C);
    bmax = maxabs(b, C);
    gbmax = maxabs(gb, C);
  }
  ws->gnorm2 = g2;
  ws->thetamax = fmax(fmax(wmax, hmax), bmax);
  ws->gmax = fmax(fmax(gwmax, ghmax), gbmax);
  if (isnan(wmax) || isnan(hmax) || isnan(bmax)) ws->thetamax = NAN;
  if (isnan(gwmax) || isnan(ghmax) || isnan(gbmax)) ws->gmax = NAN;

  if (!isfinite(ws->loss) || !isfinite(ws->gnorm2) || !isfinite(ws->gmax)
      || !isfinite(ws->thetamax))
    return UFM_EDIVERGED;
  return UFM_OK;
}

double ufm_grad_objective(const ufm_problem *pb, const ufm_grad_ws *ws)
{
  return ws->loss + 0.5 * pb->lambda_W * ws->normW2 + 0.5 * pb->lambda_H * ws->normH2
         + 0.5 * pb->lambda_b * ws->normb2;
}
