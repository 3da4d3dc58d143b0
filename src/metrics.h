/* metrics.h -- the neural-collapse metrics of SPEC section 2, without any p x p or N x N matrix. */
#ifndef UFM_METRICS_H
#define UFM_METRICS_H

#include "grad.h"

/* Column order of metrics.tsv (after `iter`). */
enum {
  UFM_M_LOSS, UFM_M_OBJECTIVE, UFM_M_ACC, UFM_M_NC1, UFM_M_CDNV,
  UFM_M_EQUINORM_M, UFM_M_EQUINORM_W, UFM_M_EQUIANGLE_M, UFM_M_EQUIANGLE_W,
  UFM_M_MAXANGLE_M, UFM_M_MAXANGLE_W, UFM_M_ETF_M, UFM_M_ETF_W, UFM_M_NC3, UFM_M_NC4,
  UFM_M_NORM_W, UFM_M_NORM_H, UFM_M_NORM_B, UFM_M_MARGIN, UFM_M_NMARGIN, UFM_M_GRAD_NORM,
  UFM_M_MC_COS_W, UFM_M_MC_COS_M, UFM_M_SELI_W, UFM_M_SELI_H, UFM_M_SELI_Z, UFM_M_MC_DIST_W,
  UFM_NMETRICS
};
extern const char *const ufm_metric_names[UFM_NMETRICS];

typedef struct ufm_metrics_ws ufm_metrics_ws;

ufm_metrics_ws *ufm_metrics_ws_alloc(size_t C, size_t p, size_t N);
/* The same with seli_H on (as above) or off (the experiment key
 * compute_seli_H = false): then the seli_H column is NaN and neither
 * Gram of H's sides is formed where that saves work: for p > N no tiles of
 * H^T H; for p <= N with p > 2 (C - 1), NC1 from U_r^T D (r p N, D formed
 * block by block) instead of the tiles of D D^T (p^2 N / 2). Every other
 * column is the same quantity, to round-off. */
ufm_metrics_ws *ufm_metrics_ws_alloc_seli(size_t C, size_t p, size_t N, int seli_H);
void ufm_metrics_ws_free(ufm_metrics_ws *mw);

/* All metrics at the model's current state into out[UFM_NMETRICS]. ws must
 * hold ufm_grad_eval at that same state (loss, predictions, margins and
 * gradient norm are taken from it). Cost, for p <= N: M^T H in column
 * blocks (C p N, in single precision, near ties again in double) for the
 * nearest class centres, the tiles of D D^T (the
 * within-class deviations, p^2 N / 2) for NC1 and ||H H^T||_F, an LQ
 * factorisation of M (4 p C^2; the thin SVD of M when its rank is not
 * certified C - 1) overlapped with the first; for p > N, U_r^T D (r p N) and the
 * tiles of H^T H (N^2 p / 2) instead; plus O(pN + C^2 p) work. Memory: no
 * p x p, N x N or N x C matrix (metrics.c, top). A quantity that is
 * undefined at this state (a cosine with a zero vector, say) is NaN. */
void ufm_metrics_eval(const ufm_problem *pb, const ufm_model *m, const ufm_grad_ws *ws,
                      ufm_metrics_ws *mw, double *out);

/* After ufm_metrics_eval: ||w_c|| and ||mu_c - mu_G|| per class (C each). */
void ufm_metrics_class_norms(const ufm_metrics_ws *mw, double *wnorm, double *mnorm);

/* After ufm_metrics_eval: the C x C Grams W W^T, M^T M (centred means) and
 * W M, each divided by its Frobenius norm, and their SELI references (the
 * simplex ETF for balanced counts), likewise normalised; their rows and
 * columns 0, K, 2K, ... (K = stride >= 1), so that each is ceil(C/K) x
 * ceil(C/K), its entries those of the whole normalised matrix (whose norm
 * is taken without storing it). Any may be NULL. */
void ufm_metrics_grams(const ufm_metrics_ws *mw, const ufm_model *m, size_t stride,
                       gsl_matrix *WW, gsl_matrix *MM, gsl_matrix *WM, gsl_matrix *WWref,
                       gsl_matrix *MMref, gsl_matrix *WMref);

/* The numerical rank of M used for the pseudo-inverse at the last
 * evaluation: singular values above max(p, C) * DBL_EPSILON * s_max. */
size_t ufm_metrics_rank(const ufm_metrics_ws *mw);

/* The SVD of M through LAPACK's dgesdd (on: the default when ufm was built
 * with it) or GSL's one-sided Jacobi SVD (off). Returns whether dgesdd is
 * now in use (0 when LAPACK is not available). For tests and comparisons. */
int ufm_metrics_use_lapack(ufm_metrics_ws *mw, int on);

/* NC1 through an LQ factorisation of M when the numerical rank of M is
 * certified to be C - 1 (metrics.c, section 4; needs LAPACK, p <= N and
 * p >= C - 1), else through the SVD: on (the default where possible) or
 * off (always the SVD). Returns whether it is now on. For tests and
 * comparisons; ufm_metrics_used_qr tells which the last evaluation took. */
int ufm_metrics_use_qr(ufm_metrics_ws *mw, int on);
int ufm_metrics_used_qr(const ufm_metrics_ws *mw);

/* When D D^T is summed in column slabs (p <= 512, N >= 2^20/p), the
 * nearest-centre rule scores each chunk of columns as its slab forms it,
 * unless another thread has scored it on its own (metrics.c, section 5).
 * ufm_metrics_ncc_apart(mw, 1) makes every thread score chunks on its own
 * before any slab starts, so that none is fused (for tests: both ways give
 * the same bits); ufm_metrics_ncc_fused tells how many chunks the last
 * evaluation scored fused (0 without slabs). */
void ufm_metrics_ncc_apart(ufm_metrics_ws *mw, int on);
size_t ufm_metrics_ncc_fused(const ufm_metrics_ws *mw);

/* The nearest-centre rule first settles, without scoring them, the
 * samples provably nearest their own class centre in double precision
 * (a collapsed state; metrics.c, section 5). ufm_metrics_ncc_certify(mw,
 * 0) turns that test off (for tests: the answer is the same either way);
 * ufm_metrics_ncc_certified tells how many samples it settled in the last
 * evaluation. */
void ufm_metrics_ncc_certify(ufm_metrics_ws *mw, int on);
size_t ufm_metrics_ncc_certified(const ufm_metrics_ws *mw);

/* Then, from C = 32 classes, the pair test settles, again without scoring
 * every class, the samples whose own class centre is provably nearer in
 * double precision than the centre of the class the classifier predicts
 * (so they disagree; most samples near initialisation).
 * ufm_metrics_ncc_pair(mw, how): 0 never, 1 from C = 32 (the default), 2
 * at any C (tests: the answer is the same either way);
 * ufm_metrics_ncc_paired tells how many samples it settled in the last
 * evaluation. */
void ufm_metrics_ncc_pair(ufm_metrics_ws *mw, int how);
size_t ufm_metrics_ncc_paired(const ufm_metrics_ws *mw);

/* Without AVX-512 (see ufm_metrics_gram512 below), D D^T's diagonal
 * tiles (p <= N) are summed by one DSYRK each, or, with
 * OpenBLAS's AVX2 kernels (Haswell, Zen), in row blocks of 128 rows: a
 * DSYRK on each diagonal block and a DGEMM for the rest of its row, which
 * those kernels do faster (metrics.c, SYRK_ROWS). ufm_metrics_syrk_rows(mw,
 * rows) sets the block (0: one DSYRK), for tests and benchmarks; the
 * metrics agree to round-off either way. */
void ufm_metrics_syrk_rows(ufm_metrics_ws *mw, size_t rows);
/* The block a new workspace takes: 128 with the AVX2 kernels, else 0. */
size_t ufm_metrics_syrk_rows_default(void);

/* Where the CPU has AVX-512 (ufm_gram512_ok, gemm.h), a workspace sums
 * D D^T with ufm_gram512 instead, its chunks of deviations packed as they
 * are formed, and so the other Gram matrices (W W^T, M^T M, the tiles of
 * H^T H for p > N) wherever a tile has 2^20 multiply-adds or more.
 * ufm_metrics_gram512(mw, 0) switches to the BLAS (DSYRK, ufm_syrk_rows,
 * DGEMM), for tests and benchmarks, and (mw, 1) back where the CPU
 * allows; returns whether ufm_gram512 is now used. */
int ufm_metrics_gram512(ufm_metrics_ws *mw, int on);

#endif
