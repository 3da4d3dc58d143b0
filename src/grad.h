/* grad.h -- the objective F(W,H,b) of SPEC section 1 and its gradient, at the cost of three products. */
#ifndef UFM_GRAD_H
#define UFM_GRAD_H

#include "loss.h"
#include "model.h"

typedef struct {
  const ufm_loss_type *loss;
  double lambda_W, lambda_H, lambda_b;
} ufm_problem;

/* Workspace of one evaluation, allocated once per run. After ufm_grad_eval
 * it holds everything known at that point: the gradients, the per-sample
 * losses, predictions and margins, and the reductions below. */
typedef struct {
  size_t C, p, N;
  gsl_matrix *G;   /* C x N: the logits Z = W H + b 1^T, then G = (1/N) dLoss/dZ
                    * (NULL where the column blocks run: they keep none)        */
  gsl_matrix *gW;  /* C x p: grad_W = G H^T + lambda_W W                          */
  gsl_matrix *gH;  /* p x N: grad_H = W^T G + lambda_H H (the next H if h_next)  */
  gsl_vector *gb;  /* C:     grad_b = G 1 + lambda_b b (zero without bias)        */
  double *loss_i;  /* N per-sample losses                                         */
  double *margin;  /* N: z_{i,y_i} - max_{c != y_i} z_ic                          */
  int32_t *pred;   /* N: argmax_c z_ic                                            */
  double *zstat;   /* 2N: ||z_i||^2, z_{i,y_i} - mean_c z_ic (for seli_Z)          */
  double *rows;    /* scratch: per-row partial sums, 2 (p + C) doubles            */
  double *gbpart;  /* ufm_loss_groups(N) x C: the bias gradient's group sums     */
  double *lrows;   /* ufm_loss_groups(N) x 8 C: the loss pass's rows (loss.h)      */
  double *gwork;   /* (gw_nk - 1) C p: grad_W's pieces beside the decay pass, or NULL */
  size_t gw_nk;    /* grad_W's pieces along N when gwork is set (grad.c section 4) */
  /* the fused small-C step (grad.c): per slot of column blocks, a partial
   * grad_W and bias gradient, block buffers and partial reductions; NULL
   * when C is too large for it */
  double *slots;
  size_t nslot, slot_len;
  int fused512; /* 1: its kernels with AVX-512 registers (where the CPU has
                 * them; the same arithmetic, so the same bits), 0: AVX2 */
  /* the products in column blocks (grad.c section 5): per slot of blocks a
   * partial grad_W, bias gradient and row sums, a block of logits and the
   * loss pass's rows; allocated with the workspace where the shape takes
   * that path (ufm_grad_blocks_auto), else at the first evaluation forced
   * onto it (NULL until then) */
  double *bk;
  size_t bk_cols, bk_nslot, bk_len;
  int path; /* UFM_GRAD_AUTO (default), or one path forced (tests, benchmarks) */
  /* The H step folded into the evaluation (gd and ngd; ufm_optim_prepare
   * sets it): with fold_lr > 0 the three-product path writes
   * H - lr grad_H, lr = fold_lr (or fold_lr / loss with fold_ngd), into gH
   * in the pass that adds the decay, with the same arithmetic as the
   * separate update, and sets h_next; ufm_optim_iterate then swaps H and gH
   * instead of reading both again (two passes over p N doubles less).
   * Until then H is the evaluated point: metrics, the divergence guard and
   * a stop in between see it unchanged. */
  double fold_lr;
  int fold_ngd;
  int h_next;
  /* reductions at the evaluated point */
  double loss;                   /* (1/N) sum_i loss_i                  */
  double normW2, normH2, normb2; /* squared norms of the state          */
  double gnorm2;                 /* squared norm of (grad_W, grad_H, grad_b) */
  double gmax, thetamax;         /* largest |entry| of gradient, of state    */
} ufm_grad_ws;

enum { UFM_GRAD_AUTO = 0, UFM_GRAD_PRODUCTS = 1, UFM_GRAD_FUSED = 2, UFM_GRAD_BLOCKS = 3 };

/* The fused path can run for C <= UFM_GRAD_FUSED_CMAX (and a loss with a
 * block form, on a CPU with AVX2+FMA); UFM_GRAD_AUTO takes it where
 * ufm_grad_fused_auto says it beats the three BLAS calls. */
#define UFM_GRAD_FUSED_CMAX 32

/* Whether the fused pass is the faster path at this shape, from C, p and N
 * alone (never the thread count: the two paths add in different orders):
 * C p <= 1024 with C <= 16, C p <= 512 above, or C p < 2048 and C p N <=
 * 2^21. Measured against the products path for C 2..32, p 16..1024, N 10^3
 * and 10^4, on 1 and 2 threads (bench/README.md, "Which path"); since
 * session 14 the small-work clause stops at C p = 2048: there the three
 * products are the faster on one thread (a sweep's points) at nearly every
 * N from 48 to 1024 tried, while on 2 threads the fused pass, since its
 * blocks are copied and 4 blocks make 2 slots, wins at 20 of those 35
 * shapes, most at N = 224-256 (bench/README.md). */
int ufm_grad_fused_auto(size_t C, size_t p, size_t N);

/* Whether the three products are better taken in blocks of columns, from C,
 * p and N alone: thin shapes (C > 32, p <= 128, Z over 4 MB), where the
 * products are bound by memory and Z's and G's blocks then stay in cache
 * instead of crossing memory four times; and since session 15 small
 * three-product shapes (C > 32, p <= 64, C p N from 2^17 to 2^20, N >= 64)
 * in two halves, a slot each, so that both threads take the whole step. */
int ufm_grad_blocks_auto(size_t C, size_t p, size_t N);

/* The doubles ufm_grad_ws_alloc takes for the logits at this shape: G
 * (C N), or with the column blocks their slots (about 8 MB plus 8 C p). */
double ufm_grad_logits_doubles(size_t C, size_t p, size_t N);

ufm_grad_ws *ufm_grad_ws_alloc(size_t C, size_t p, size_t N);
void ufm_grad_ws_free(ufm_grad_ws *ws);

/* Evaluate loss and gradient at the model's current state. Returns UFM_OK,
 * or UFM_EDIVERGED when the loss, the gradient or the state is not finite.
 * Every reduction runs in a fixed order: the same bits on any thread count. */
int ufm_grad_eval(const ufm_problem *pb, const ufm_model *m, ufm_grad_ws *ws);

/* F = loss + lambda_W/2 ||W||^2 + lambda_H/2 ||H||^2 + lambda_b/2 ||b||^2 at
 * the point of the last ufm_grad_eval. */
double ufm_grad_objective(const ufm_problem *pb, const ufm_grad_ws *ws);

/* Sum of squares of x[0..n-1] in a fixed order (four interleaved partial
 * sums, combined at the end). */
double ufm_sumsq(const double *x, size_t n);

#endif
