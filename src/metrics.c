/* metrics.c -- NC1-NC4 and friends from W, H, b through class means, C x C Grams and M's thin SVD.
 *
 * Contents: 1. workspace  2. class means and within-class scatter
 *           3. Gram matrices in tiles  4. thin SVD of M (LAPACK or GSL), or
 *              the LQ factor of M when its rank is certified
 *           5. the nearest-class-centre rule and NC1, in blocks and tiles
 *           6. Gram-matrix metrics (norms, angles, ETF, NC3)
 *           7. imbalance: minority cosines and distances to SELI  8. driver
 *
 * Notation (SPEC section 2): mu_c class means, mu_G the sample-weighted
 * global mean, M = [mu_c - mu_G] (p x C), M = U S V^T its thin SVD with
 * numerical rank r, U_r its first r left singular vectors, D = [h_i -
 * mu_{y_i}] (p x N) the deviations, never stored.
 *
 * The work, for p <= N (the usual case):
 *   A. a factor B (p x r) with B B^T = (M M^T)^+ on one thread: from an
 *      LQ factorisation of M (4 p C^2, BLAS-3) when M's numerical rank is
 *      certified to be C - 1 (the generic case, section 4), else B =
 *      U_r S_r^-1 from the SVD; meanwhile the other threads (then it too)
 *      score every sample against every class centre, M^T H in column
 *      blocks (C p N), for the nearest-class-centre rule (NC4): in single
 *      precision with a proven error bound, the samples it leaves
 *      undecided (near ties) again in double, so the answer is that of
 *      double precision (section 5); a second thread takes the metrics of
 *      M^T M and W W^T (section 6) before joining them; for p <= 512
 *      (and N >= 5 2^17/p, p^2 N >= 2^24, or N >= 400 with p^2 N >=
 *      2^22) the threads instead sum the single tile of D D^T in two
 *      column slabs (it needs only the means), and score
 *      each chunk of columns as its slab forms the chunk's deviations,
 *      H read once for both; threads with nothing else to do (the one
 *      that had the LQ factorisation starts its slab late) score chunks
 *      of the slab furthest behind on their own, from its end (section 5);
 *   B. the tiles of D D^T (p^2 N / 2, the deviations formed chunk by chunk
 *      and, where the CPU has AVX-512, packed as they are formed for ufm's
 *      own kernel, ufm_gram512 (gemm.c), else summed by the BLAS;
 *      tiles of side p, ceil(p/2) (512 < p < 1024) or 512, or the slabs of
 *      A added), which give
 *      NC1 = Tr(B^T D D^T B)/N and, with the class means, seli_H as a sum
 *      of squares (section 7); with slabs, as inner products of their sum
 *      with B B^T and sum_c n_c mu_c mu_c^T, two p x p matrices (p <= 512)
 *      formed during A (slabs_finish).
 * For p > N, A also takes the tiles of H^T H (for seli_H), and B projects
 * the deviations on the factor (U_r, or the LQ path's B) in blocks
 * (r p N) for NC1, D formed block by block.
 * With seli_H off (compute_seli_H = false) no Gram is formed for it: for
 * p > N no tiles of H^T H; for p <= N with p > 2 (C - 1) NC1 comes from
 * that projection too, the cheaper product there (r p N against
 * p^2 N / 2); below, D D^T stays NC1's product, without seli_H's sums.
 *
 * Memory (besides W, H and the gradient's workspace): M (p x C), M^T M
 * (C x C), the blocks of A (C + p floats and a few doubles per column,
 * NBLOCK columns, with slabs p floats per column of a chunk of 5 2^15/p,
 * and a batch of NAMB columns to rescore, per thread), and
 * one scratch region holding the class means, then the factorisation's
 * input (later B) and, during A, the LQ path's workspace and square
 * factor, W W^T and M in single precision; then the tiles or blocks of B.
 * The SVD's square factor (C x C) and dgesdd's workspace are touched only
 * when the SVD runs. No p x p, N x N, r x N or N x C matrix is formed: a
 * tile of D D^T has at most 512 rows and columns, so it is the whole of
 * D D^T only when p <= 512 (two such partial sums then, and a chunk of
 * deviations per thread, in a buffer of their own: they are summed during
 * A, while the scratch region is in use).
 *
 * Thread counts never change a bit: every parallel loop writes its own
 * outputs or a partial sum in a slot fixed by the sizes alone (a block, a
 * tile, a slab), the slots are added in order, and the SVD or the LQ path
 * and the Gram metrics each run on one thread (the BLAS is
 * single-threaded). Which thread scores a block for NC4 varies from run
 * to run, but not the answer: the decisions are per sample and the
 * counts integers.
 */
#include "ufmconf.h" /* HAVE_LAPACK_DGESDD */
#include "metrics.h"
#include "common.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <gsl/gsl_blas.h>
#include <gsl/gsl_cblas.h>
#include <gsl/gsl_linalg.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "gemm.h"
#include "geometry.h"
#include "version.h"

/* AVX-512 and AVX2 clones of a loop-heavy function besides the default
 * one: GCC contracts nothing in ISO C mode, so all three give the same
 * bits (as in loss.c). The AVX-512 clone of the filter's scan (ncc_scan)
 * takes a third of the AVX2 one's time; the passes over H are bound by
 * memory either way. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define UFM_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define UFM_CLONES
#endif

const char *const ufm_metric_names[UFM_NMETRICS] = {
    "loss",        "objective",   "acc",        "nc1",        "cdnv",      "equinorm_M",
    "equinorm_W",  "equiangle_M", "equiangle_W", "maxangle_M", "maxangle_W", "etf_M",
    "etf_W",       "nc3",         "nc4",        "norm_W",     "norm_H",    "norm_b",
    "margin",      "nmargin",     "grad_norm",  "mc_cos_W",   "mc_cos_M",  "seli_W",
    "seli_H",      "seli_Z",      "mc_dist_W"};

/* Sizes fixed by the shapes alone (never by the thread count, so that every
 * partial sum is the same): columns per block of nc1_blocks, the side of a
 * Gram tile, that of a tile of D D^T (as large as 512 allows: DGEMM runs
 * some 10% faster on 512 than on 256, and each row of deviations is formed
 * once per tile pair it belongs to, a pass over H bound by memory; for
 * 512 < p < 1024 two tiles of side ceil(p/2), whose three pairs, the
 * off-diagonal one and the two diagonal ones at half its cost, are two
 * threads' worth of equal work: side 256 formed each row four times, and
 * C = 5, p = 1000, n = 2000 took 115.8 ms an evaluation against 100.4;
 * p >= 1024 has tiles of 512), and the deviations formed at once in a
 * tile of D D^T (DCHUNK doubles per row block: 640 columns of 256 rows,
 * 320 of 512; at C = 100, p = 512, n = 100 an evaluation took 2-3% less
 * than with 512 columns, the same or a little less at C = 1000, p = 1024,
 * n = 10, and 4-8% less at p = 128 and 256: the chunk's deviations and
 * features stay nearer the core, and each slab has more chunks to share
 * out). */
#define BLOCK 256
#define TILE 256
#define DTILE(p) ((p) <= 512 ? (p) : (p) < 1024 ? ((p) + 1) / 2 : 512)
#define DCHUNK ((size_t)5 << 15)
/* With OpenBLAS 0.3.21's AVX2 kernels (Haswell, also Zen's), one DSYRK
 * of a 512-row tile ran at 84% of DGEMM's rate on a Zen 5 (family 26),
 * and the same upper triangle in row blocks of 128 (a DSYRK on each
 * diagonal block, one DGEMM for the rest of its block row) 5-6% faster:
 * an evaluation 5% faster at M, 6% at 5:512:200, 1-3% at 50:256:200,
 * 32:384:100, 20:300:300 and 200:512:20, the same at p >= 700 (paired
 * medians, session 17). With the AVX-512 kernels DSYRK ran at 94% and the blocks
 * were as fast or slower, so they are used with the AVX2 kernels only.
 * Where the CPU has AVX-512 (since session 18), ufm_gram512 sums D D^T
 * instead, whatever OpenBLAS's kernels: 2x the AVX2 DSYRK, 1.05-1.15x the
 * AVX-512 one on a Zen 5, and the deviations are packed as they are formed
 * (no pass over a row-major chunk): at M an evaluation took 0.57 of a step
 * instead of 0.95 with the AVX2 kernels, 0.85 instead of 0.95 with the
 * AVX-512 ones (make bench). */
#define SYRK_ROWS ((size_t)128)
/* A single tile of D D^T (p <= 512) is summed in two column slabs, one a
 * thread, from four chunks of DCHUNK / p columns, or (since session 16)
 * in four chunks of N / 4 from p^2 N = 4 SLAB_MIN_WORK, or from N =
 * SLAB_MIN_N and p^2 N = SLAB_MIN_WORK (before, such shapes summed it on
 * one thread after the rest of the evaluation: 0.52-0.81 of the time at
 * 10:64:400, 20:128:50, 32:96:40, 100:128:5, 16:64:80, 20:64:60,
 * 5:512:200, 100:64:20 and, with N = 300 but p^2 N = 2^24.2, 10:256:30
 * (C:p:n); 1.03-1.10 at 10:64:50, 10:128:20 and 10:128:30, left out) */
#define SLAB_MIN_N 400
#define SLAB_MIN_WORK ((size_t)1 << 22)
/* Columns per block of the nearest-class-centre rule, and per batch of its
 * exact rescoring (section 5). */
#define NBLOCK 512
#define NAMB 64
#define DPANEL 512 /* rows of D formed at once for U_r^T D (nc1_blocks) */
/* Columns of B or classes per product with a tile of D D^T (section 5). */
#define CBLK 256

#ifdef HAVE_LAPACK_DGESDD
/* LAPACK's divide-and-conquer SVD (OpenBLAS ships it); the trailing length
 * is the hidden length of the character argument (gfortran ABI). */
extern void dgesdd_(const char *jobz, const int *m, const int *n, double *a, const int *lda,
                    double *s, double *u, const int *ldu, double *vt, const int *ldvt,
                    double *work, const int *lwork, int *iwork, int *info, size_t jobz_len);
/* The LQ factorisation, its orthogonal factor and Cholesky's, from the same
 * LAPACK (any LAPACK with dgesdd has them). */
extern void dgelqf_(const int *m, const int *n, double *a, const int *lda, double *tau,
                    double *work, const int *lwork, int *info);
extern void dorglq_(const int *m, const int *n, const int *k, double *a, const int *lda,
                    const double *tau, double *work, const int *lwork, int *info);
extern void dpotrf_(const char *uplo, const int *n, double *a, const int *lda, int *info,
                    size_t uplo_len);
#endif

/* ----------------------------------------------------------------- 1. workspace */

struct ufm_metrics_ws {
  size_t C, p, N, k;  /* k = min(p, C)                                          */
  int nthr;           /* threads the per-thread buffers were sized for          */
  int lapack;         /* 1: dgesdd, 0: GSL's SVD                                 */
  int qr;             /* 1: try the LQ basis first (section 4), LAPACK only      */
  int basis_qr;       /* the last evaluation's basis came from the LQ path       */
  int tiles_dd;       /* 1: p <= N, NC1 and ||H H^T|| from the tiles of D D^T;
                       * 0: NC1 from U_r^T D (p > N, or seli_H off and p >
                       * 2 (C - 1)), and for seli_H the tiles of H^T H (p > N) */
  int seli_H;         /* 0: seli_H not computed (NaN), and no Gram formed for it */
  gsl_matrix *M;      /* p x C  centred means                                    */
  gsl_matrix *sq;     /* C x C  the SVD's square factor or the LQ path's         */
  gsl_matrix *G;      /* C x C  M^T M, for the whole evaluation                  */
  gsl_matrix_view WW; /* C x C  W W^T, in the scratch region during A            */
  gsl_vector *muG;    /* p      global mean                                      */
  gsl_vector *S;      /* k      singular values of M, descending                 */
  gsl_vector *svwork; /* k      GSL's SVD work                                   */
  size_t r;           /* numerical rank                                          */
  double *U;          /* after the SVD: U_M (p x k, row stride ldu = k); after
                       * the LQ path: B (p x r, row stride ldu = r)              */
  size_t ldu;
  double *V;          /* and V_M: V_M^T (k x C) or, v_rows, V_M (C x k)          */
  int v_rows;
  double *ug;         /* C      seli_H's row sums (seli_H_dd)                    */
  double *s2;         /* C      s_c^2 = mean_{i in c} ||h_i - mu_c||^2           */
  double *wnorm;      /* C      ||w_c||                                          */
  double *mnorm;      /* C      ||mu_c - mu_G||                                  */
  size_t nblk;        /* column blocks of NC1 without D D^T (nc1_blocks)         */
  double *blkres;     /* nblk   their NC1 sums                                   */
  size_t nnb, nnblk;  /* most columns per block of A (NBLOCK or N; the chunk
                       * width with slabs), blocks                              */
  size_t nsub;        /* columns scored at once (NBLOCK or N)                    */
  size_t *nstart;     /* nnblk + 1: the blocks' first columns (with slabs, the
                       * slabs' chunks of deviations)                           */
  size_t *blkmis;     /* nnblk  per-block NCC / classifier disagreements         */
  size_t *blkcert;    /* nnblk  per-block samples the collapse test settled      */
  int certify;        /* 1: try the collapse test first (section 5; default)     */
  size_t *blkpair;    /* nnblk  per-block samples the pair test settled          */
  int pair;           /* the pair test: 0 never, 1 from C = PAIR_MIN_C (default),
                       * 2 at any C (tests)                                     */
  double *gdiag;      /* C      G's diagonal, for it                             */
  double cmm, cgn;    /* its upper bounds on max_c ||M_c|| and on ||mu_G||       */
  int *nclaim;        /* nnblk  with slabs: the block is taken (section 5)       */
  int *nhow;          /* nnblk  and by whom: 1 its slab, 2 another thread        */
  long nsteal;        /* with slabs: the highest block not yet offered, + 1      */
  int ncc_apart;      /* with slabs: every block scored on its own (tests)       */
  size_t syrk_bs;     /* D D^T's diagonal tiles summed in row blocks of this
                       * many rows (ufm_syrk_rows), 0: one DSYRK each       */
  int gram512;        /* D D^T on AVX-512 registers (ufm_gram512), its chunks of
                       * deviations packed as they are formed, and the Gram
                       * tiles of section 3 from GKC_MIN multiply-adds           */
  size_t dpack;       /* doubles of one chunk of deviations (p or a tile's rows
                       * by dchunk), packed for ufm_gram512 where gram512       */
  size_t *ufirst;     /* nslab + 1: each slab's first block (the last: nnblk)   */
  size_t *unext;      /* nslab: the block each slab is forming (SIZE_MAX: not
                       * started)                                               */
  double phi, phis;   /* scoring a block fused, or on its own, in units of
                       * forming and summing it (a rough model: balance only)   */
  size_t astride;     /* doubles of A's buffers per thread                       */
  double *ablk;       /* nthr x astride: the blocks of A                         */
  float *Mf;          /* p x C  M s in single precision (section 5), in scratch  */
  double *hmax;       /* p      max_i |h_ki|                                     */
  double *dmax;       /* p      max_i |h_ki - mu_{k,y_i}|                        */
  int dzero;          /* every deviation is exactly 0 (say one sample a class):
                       * NC1 = 0 exactly, and NC1's factor is not needed        */
  double scale;       /* s, a power of two                                       */
  int f32;            /* the single-precision filter is safe at this state       */
  size_t ntile;       /* Gram tiles (of D D^T, or of H^T H for p > N)           */
  size_t dtile;       /* the side of a tile of D D^T                             */
  size_t dchunk;      /* columns of deviations formed at once                    */
  size_t nslab;       /* column slabs of a single tile of D D^T: 1 or 2          */
  double *pinv;       /* nslab > 1: P1 = B B^T = (M M^T)^+ and P2 = sum_c n_c mu_c
                       * mu_c^T (upper triangles, p x p each), formed during A,
                       * then two p x C buffers for their factors and C roots
                       * of the counts (section 5)                              */
  double *slabbuf;    /* nslab > 1: the slabs' partial sums (p x p each), then a
                       * chunk of deviations (p x dchunk) per thread            */
  double *tilefro;    /* ntile  their squared Frobenius norms (of H H^T)         */
  double *tilenc1;    /* ntile  their NC1 sums                                   */
  double *tilecross;  /* ntile  their sums n_c mu_c^T D D^T mu_c (seli_H)        */
  double *mg;         /* C      M_c.mu_G                                         */
  int lwork;          /* doubles of dgesdd's workspace                           */
  int lqwork;         /* doubles of dgelqf's and dorglq's workspace (C-1 rows)   */
  int *iwork;         /* 8k                                                      */
  double *scratch;    /* class means / the factorisation's input, then B (p x r)
                       * and during A the LQ path's workspace and R, W W^T and
                       * Mf; then B's buffers                                    */
  size_t off_R;       /* where the LQ path's R starts in scratch (doubles)       */
  double *svd_work;   /* dgesdd's workspace, allocated at its first use          */
  size_t bstride;     /* doubles of B's buffers per thread                       */
  /* imbalance: minority classes and, for unequal counts, the SELI reference */
  int seli_ready;
  int balanced;
  gsl_matrix *seliW;  /* C x C  U L U^T (unequal counts only)                     */
  double seli_fb;     /* its Frobenius norm                                      */
  gsl_matrix *seliK;  /* C x C  U L^-1 U^T (unequal counts only)                  */
  size_t *minority;   /* the nminority classes with the smaller of exactly two
                         counts, in increasing order                              */
  size_t nminority;
  double *ncount;     /* C      n_c as doubles                                   */
  double fro_W, fro_M; /* ||W W^T||_F, ||M^T M||_F at the last evaluation (grams)  */
};

static size_t ntiles_of(size_t n, size_t ts) { return (n + ts - 1) / ts; }
static size_t ntiles(size_t n) { return ntiles_of(n, TILE); }

/* Threads for a parallel region: the current setting, at most as many as
 * the per-thread buffers were sized for. */
static int team(const ufm_metrics_ws *mw)
{
#ifdef _OPENMP
  int t = omp_get_max_threads();
  return t < mw->nthr ? t : mw->nthr;
#else
  (void)mw;
  return 1;
#endif
}

/* dgesdd's optimal workspace for M (JOBZ = 'O'), from LAPACK's query. */
static int svd_lwork(size_t p, size_t C)
{
#ifdef HAVE_LAPACK_DGESDD
  int m = (int)C, n = (int)p, lda = (int)C, k = (int)(p < C ? p : C), lw = -1, info = 0, iw = 0;
  double a = 0, s = 0, u = 0, vt = 0, w = 0;
  dgesdd_("O", &m, &n, &a, &lda, &s, &u, &k, &vt, &k, &w, &lw, &iw, &info, 1);
  return info == 0 ? (int)w + 1 : -1;
#else
  (void)p;
  (void)C;
  return 0;
#endif
}

/* dgelqf's and dorglq's optimal workspace for the (C-1) x p factor of the
 * LQ path, the larger of the two; -1 when not available. */
static int lq_lwork(size_t p, size_t C)
{
#ifdef HAVE_LAPACK_DGESDD
  if (C < 2 || p + 1 < C) return -1;
  int m = (int)C - 1, n = (int)p, lw = -1, info = 0, a, b;
  double x = 0, t = 0, w = 0;
  dgelqf_(&m, &n, &x, &m, &t, &w, &lw, &info);
  if (info != 0) return -1;
  a = (int)w;
  dorglq_(&m, &n, &m, &x, &m, &t, &w, &lw, &info);
  if (info != 0) return -1;
  b = (int)w;
  return (a > b ? a : b) + 1;
#else
  (void)p;
  (void)C;
  return -1;
#endif
}

/* Thread t's buffers of A (astride doubles): for a block of up to W =
 * nnb columns, its features Xf (p x W floats), their norms xn, the norms
 * of their deviations dn, the filter's choice arg, the columns to rescore
 * amb and those the collapse test left idx (W int32 each); for
 * a sub-block of up to S = nsub columns, its scores Ef (C x S floats) and
 * the filter's U, cnt and cand; the rescoring batch Xa (p x NAMB) and its
 * scores Ea (C x NAMB); the pair test's two scores a column, Ep (2 x W
 * floats). */
typedef struct {
  float *Ef, *Xf, *Ep;
  double *xn, *dn, *U, *cnt, *cand, *Xa, *Ea;
  int32_t *arg, *amb, *idx;
} ncc_bufs;

static size_t ncc_stride(size_t C, size_t p, size_t W, size_t S)
{
  return (C * S + 1) / 2 + (p * W + 1) / 2 + 2 * W + W + (W + 1) / 2 + 3 * S + (p + C) * NAMB +
         W;
}

ufm_metrics_ws *ufm_metrics_ws_alloc(size_t C, size_t p, size_t N)
{
  return ufm_metrics_ws_alloc_seli(C, p, N, 1);
}

ufm_metrics_ws *ufm_metrics_ws_alloc_seli(size_t C, size_t p, size_t N, int seli_H)
{
  ufm_metrics_ws *mw = ufm_calloc(1, sizeof *mw);
  size_t k = p < C ? p : C;
  mw->C = C;
  mw->p = p;
  mw->N = N;
  mw->k = k;
#ifdef _OPENMP
  mw->nthr = omp_get_max_threads();
#else
  mw->nthr = 1;
#endif
  /* without seli_H, D D^T (p^2 N / 2) only where it is still NC1's
   * cheaper product, p <= 2 (C - 1); else U_r^T D (r p N, r <= C - 1) */
  mw->seli_H = seli_H != 0;
  mw->tiles_dd = p <= N && (mw->seli_H || p <= 2 * (C - 1));
  mw->M = gsl_matrix_alloc(p, C);
  mw->sq = gsl_matrix_alloc(C, C);
  mw->G = gsl_matrix_alloc(C, C);
  mw->muG = gsl_vector_alloc(p);
  mw->S = gsl_vector_alloc(k);
  mw->svwork = gsl_vector_alloc(k);
  if (!mw->M || !mw->sq || !mw->G || !mw->muG || !mw->S || !mw->svwork) {
    ufm_metrics_ws_free(mw);
    return NULL;
  }
#ifdef HAVE_LAPACK_DGESDD
  mw->lwork = svd_lwork(p, C);
  mw->lapack = mw->lwork > 0;
  mw->lqwork = lq_lwork(p, C);
  mw->qr = mw->lqwork > 0;
#endif
  const size_t nb = N < BLOCK ? N : BLOCK, T = (size_t)mw->nthr;
  mw->nblk = (N + nb - 1) / nb;
  mw->dtile = DTILE(p);
  mw->ntile = mw->tiles_dd ? ntiles_of(p, mw->dtile) : p > N && mw->seli_H ? ntiles(N) : 0;
  mw->ntile = mw->ntile * (mw->ntile + 1) / 2;
  /* B's buffers per thread: a tile of D D^T, two chunks of deviations, the
   * tile times CBLK columns of B or of Mu_b, those rows of Mu, C sums; none
   * for a single tile summed in two column slabs (p <= 512 and N long
   * enough: the slabs, their chunks of deviations and the two matrices
   * slabs_finish takes them with are in buffers of their own, filled
   * during A); or (p > N, or without seli_H) a block of U_r^T D and a panel
   * of D (nc1_blocks) */
  mw->nslab = 1;
  mw->gram512 = ufm_gram512_ok();
  if (mw->tiles_dd) {
    mw->dchunk = DCHUNK / mw->dtile < N ? DCHUNK / mw->dtile : N;
    const int four = N >= 4 * mw->dchunk; /* four chunks or more */
    const size_t work = p * p * N;
    mw->nslab = mw->ntile == 1 && (four || work >= 4 * SLAB_MIN_WORK ||
                                   (N >= SLAB_MIN_N && work >= SLAB_MIN_WORK))
                    ? 2
                    : 1;
    if (mw->nslab > 1 && !four) mw->dchunk = ((N + 3) / 4 + 7) / 8 * 8; /* two a slab */
    const size_t ch = mw->dchunk, ts = mw->dtile;
    /* with gram512, each chunk packed (rows to a multiple of 8) and 8 rows
     * of deviations before they are packed */
    mw->dpack = mw->gram512 ? ufm_gram512_size(ts, ch) : ts * ch;
    const size_t d8 = mw->gram512 ? 8 * ch : 0;
    mw->bstride = mw->nslab > 1 ? 0 : ts * ts + 2 * mw->dpack + 2 * ts * CBLK + C + d8;
    if (mw->nslab > 1) {
      mw->slabbuf = ufm_malloc((mw->nslab * p * p + T * (mw->dpack + d8)) * sizeof(double));
      mw->pinv = ufm_malloc((2 * p * p + 2 * p * C + C) * sizeof(double));
    }
  } else {
    mw->bstride = k * nb + (p < DPANEL ? p : DPANEL) * nb;
  }
  /* the blocks of the nearest-class-centre rule: NBLOCK columns, or with
   * slabs their chunks of deviations, scored as each chunk is formed */
  if (mw->nslab > 1) {
    const size_t ns = mw->nslab, ch = mw->dchunk;
    mw->nnb = ch;
    mw->nsub = NBLOCK;
    mw->nnblk = 0;
    for (size_t q = 0; q < ns; q++)
      mw->nnblk += ntiles_of((q + 1) * N / ns - q * N / ns, ch);
    mw->nstart = ufm_malloc((mw->nnblk + 1) * sizeof(size_t));
    mw->ufirst = ufm_malloc((ns + 1) * sizeof(size_t));
    mw->unext = ufm_malloc(ns * sizeof(size_t));
    size_t u = 0;
    for (size_t q = 0; q < ns; q++) {
      mw->ufirst[q] = u;
      for (size_t j0 = q * N / ns; j0 < (q + 1) * N / ns; j0 += ch) mw->nstart[u++] = j0;
    }
    mw->nstart[u] = N;
    mw->ufirst[ns] = u;
    /* per column: SYRK's p^2/2 multiply-adds and the deviations' pass over
     * H (some 25 multiply-adds' time per element); SGEMM's C p at twice
     * the rate, the scan and the conversion; on its own, H read again
     * (roughly as measured at C = 100, p = 512: 0.27 and 0.36) */
    const double dp = (double)p, dc = (double)C, form = dp * dp / 2.0 + 25.0 * dp;
    mw->phi = (dc * dp / 2.0 + 16.0 * dc + 16.0 * dp) / form;
    mw->phis = mw->phi + 30.0 * dp / form;
  } else {
    mw->nnb = N < NBLOCK ? N : NBLOCK;
    mw->nsub = mw->nnb;
    mw->nnblk = (N + mw->nnb - 1) / mw->nnb;
    mw->nstart = ufm_malloc((mw->nnblk + 1) * sizeof(size_t));
    for (size_t u = 0; u < mw->nnblk; u++) mw->nstart[u] = u * mw->nnb;
    mw->nstart[mw->nnblk] = N;
  }
  mw->nclaim = ufm_calloc(mw->nnblk ? mw->nnblk : 1, sizeof(int));
  mw->nhow = ufm_calloc(mw->nnblk ? mw->nnblk : 1, sizeof(int));
  /* scratch: the factorisation's input (p x C) first, then the largest of:
   * the class means' second half (the means themselves start at 0; unequal
   * counts: also T and T^T T of seli_H); during A the LQ path's tau and
   * workspace, its R, W W^T and Mf; B's buffers. dgesdd's workspace is
   * apart, allocated if the SVD runs: none of it is touched otherwise. */
  size_t rest = p * C + C * C;
  const size_t lqw = mw->lqwork > 0 ? C + (size_t)mw->lqwork : 0;
  mw->off_R = p * C + lqw;
  const size_t off_WW = mw->off_R + C * C, off_Mf = off_WW + C * C;
  if (off_Mf + (p * C + 1) / 2 - p * C > rest) rest = off_Mf + (p * C + 1) / 2 - p * C;
  if (T * mw->bstride > rest) rest = T * mw->bstride;
  mw->scratch = ufm_malloc((p * C + rest) * sizeof(double));
  mw->WW = gsl_matrix_view_array(mw->scratch + off_WW, C, C);
  mw->Mf = (float *)(mw->scratch + off_Mf);
  /* A's buffers per thread (ncc_bufs) */
  mw->astride = ncc_stride(C, p, mw->nnb, mw->nsub);
  const size_t na = T * mw->astride;
  mw->ablk = ufm_malloc(na * sizeof(double));
  mw->hmax = ufm_malloc((p ? p : 1) * sizeof(double));
  mw->dmax = ufm_malloc((p ? p : 1) * sizeof(double));
  mw->iwork = ufm_malloc((8 * k + 1) * sizeof(int));
  mw->ug = ufm_malloc(C * sizeof(double));
  mw->s2 = ufm_malloc(C * sizeof(double));
  mw->wnorm = ufm_malloc(C * sizeof(double));
  mw->mnorm = ufm_malloc(C * sizeof(double));
  mw->blkres = ufm_malloc((mw->nblk ? mw->nblk : 1) * sizeof(double));
  mw->blkmis = ufm_malloc((mw->nnblk ? mw->nnblk : 1) * sizeof(size_t));
  mw->blkcert = ufm_calloc(mw->nnblk ? mw->nnblk : 1, sizeof(size_t));
  mw->gdiag = ufm_malloc(C * sizeof(double));
  mw->certify = 1;
  mw->blkpair = ufm_calloc(mw->nnblk ? mw->nnblk : 1, sizeof(size_t));
  mw->pair = 1;
  mw->syrk_bs = ufm_metrics_syrk_rows_default();
  mw->tilefro = ufm_malloc((mw->ntile ? mw->ntile : 1) * sizeof(double));
  mw->tilenc1 = ufm_malloc((mw->ntile ? mw->ntile : 1) * sizeof(double));
  mw->tilecross = ufm_malloc((mw->ntile ? mw->ntile : 1) * sizeof(double));
  mw->mg = ufm_malloc(C * sizeof(double));
  mw->minority = ufm_malloc(C * sizeof(size_t));
  mw->ncount = ufm_malloc(C * sizeof(double));
  return mw;
}

void ufm_metrics_ws_free(ufm_metrics_ws *mw)
{
  if (!mw) return;
  gsl_matrix *mats[] = {mw->M, mw->sq, mw->G, mw->seliW, mw->seliK};
  for (size_t j = 0; j < sizeof mats / sizeof mats[0]; j++)
    if (mats[j]) gsl_matrix_free(mats[j]);
  if (mw->muG) gsl_vector_free(mw->muG);
  if (mw->S) gsl_vector_free(mw->S);
  if (mw->svwork) gsl_vector_free(mw->svwork);
  free(mw->scratch);
  free(mw->slabbuf);
  free(mw->pinv);
  free(mw->ablk);
  free(mw->svd_work);
  free(mw->hmax);
  free(mw->dmax);
  free(mw->iwork);
  free(mw->ug);
  free(mw->s2);
  free(mw->wnorm);
  free(mw->mnorm);
  free(mw->blkres);
  free(mw->blkmis);
  free(mw->blkcert);
  free(mw->blkpair);
  free(mw->gdiag);
  free(mw->nstart);
  free(mw->ufirst);
  free(mw->unext);
  free(mw->nclaim);
  free(mw->nhow);
  free(mw->tilefro);
  free(mw->tilenc1);
  free(mw->tilecross);
  free(mw->mg);
  free(mw->minority);
  free(mw->ncount);
  free(mw);
}

size_t ufm_metrics_rank(const ufm_metrics_ws *mw) { return mw->r; }

int ufm_metrics_use_lapack(ufm_metrics_ws *mw, int on)
{
#ifdef HAVE_LAPACK_DGESDD
  mw->lapack = on && mw->lwork > 0;
#else
  (void)on;
  mw->lapack = 0;
#endif
  return mw->lapack;
}

int ufm_metrics_use_qr(ufm_metrics_ws *mw, int on)
{
  mw->qr = on && mw->lqwork > 0;
  return mw->qr;
}

int ufm_metrics_used_qr(const ufm_metrics_ws *mw) { return mw->basis_qr; }

void ufm_metrics_ncc_apart(ufm_metrics_ws *mw, int on) { mw->ncc_apart = on != 0; }

void ufm_metrics_ncc_certify(ufm_metrics_ws *mw, int on) { mw->certify = on != 0; }

size_t ufm_metrics_ncc_certified(const ufm_metrics_ws *mw)
{
  size_t n = 0;
  for (size_t u = 0; u < mw->nnblk; u++) n += mw->blkcert[u];
  return n;
}

void ufm_metrics_ncc_pair(ufm_metrics_ws *mw, int how) { mw->pair = how < 0 || how > 2 ? 1 : how; }

void ufm_metrics_syrk_rows(ufm_metrics_ws *mw, size_t rows) { mw->syrk_bs = rows; }

int ufm_metrics_gram512(ufm_metrics_ws *mw, int on)
{
  mw->gram512 = on && ufm_gram512_ok();
  return mw->gram512;
}

size_t ufm_metrics_syrk_rows_default(void)
{
  return ufm_blas_core_level() == 2 ? SYRK_ROWS : 0;
}

size_t ufm_metrics_ncc_paired(const ufm_metrics_ws *mw)
{
  size_t n = 0;
  for (size_t u = 0; u < mw->nnblk; u++) n += mw->blkpair[u];
  return n;
}

size_t ufm_metrics_ncc_fused(const ufm_metrics_ws *mw)
{
  size_t n = 0;
  if (mw->nslab > 1)
    for (size_t u = 0; u < mw->nnblk; u++) n += mw->nhow[u] == 1;
  return n;
}

/* ------------------------------------- 2. class means and within-class scatter */

/* sum_i x_i, i < n, in four interleaved partial sums added as (s0 + s1) +
 * (s2 + s3) (the same bits whatever the vector width), returned, and
 * max(*mx, max_i |x_i|) (exact in any order) into *mx, in one pass: the
 * two chains of dependent operations run side by side. */
static inline __attribute__((always_inline)) double sum_max4(const double *x, size_t n,
                                                             double *mx)
{
  double s[4] = {0.0, 0.0, 0.0, 0.0}, a[4] = {0.0, 0.0, 0.0, 0.0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (size_t l = 0; l < 4; l++) {
      const double v = fabs(x[i + l]);
      s[l] += x[i + l];
      a[l] = v > a[l] ? v : a[l];
    }
  for (size_t l = 0; i < n; i++, l++) {
    const double v = fabs(x[i]);
    s[l] += x[i];
    a[l] = v > a[l] ? v : a[l];
  }
  a[0] = a[1] > a[0] ? a[1] : a[0];
  a[2] = a[3] > a[2] ? a[3] : a[2];
  a[0] = a[2] > a[0] ? a[2] : a[0];
  *mx = a[0] > *mx ? a[0] : *mx;
  return (s[0] + s[1]) + (s[2] + s[3]);
}

/* sum_i (x_i - c)^2, i < n, likewise, and max(*mx, max_i |x_i - c|). */
static inline __attribute__((always_inline)) double sumsq_dev4(const double *x, size_t n, double c,
                                                               double *mx)
{
  double s[4] = {0.0, 0.0, 0.0, 0.0}, a[4] = {0.0, 0.0, 0.0, 0.0};
  size_t i = 0;
  for (; i + 4 <= n; i += 4)
    for (size_t l = 0; l < 4; l++) {
      const double d = x[i + l] - c, v = fabs(d);
      s[l] += d * d;
      a[l] = v > a[l] ? v : a[l];
    }
  for (size_t l = 0; i < n; i++, l++) {
    const double d = x[i] - c, v = fabs(d);
    s[l] += d * d;
    a[l] = v > a[l] ? v : a[l];
  }
  a[0] = a[1] > a[0] ? a[1] : a[0];
  a[2] = a[3] > a[2] ? a[3] : a[2];
  a[0] = a[2] > a[0] ? a[2] : a[0];
  *mx = a[0] > *mx ? a[0] : *mx;
  return (s[0] + s[1]) + (s[2] + s[3]);
}

/* Row k of H: its class means into mk, its global mean (returned), max_i
 * |h_i| into *mx, M's row into Mk and the scatter's part into pk (if not
 * NULL; then max_i |h_i - mu_{y_i}| into *dx), the row read twice while it
 * is in cache. */
UFM_CLONES static double means_row(const ufm_model *m, const double *h, double *mk, double *Mk,
                                   double *pk, double *mx, double *dx)
{
  const size_t C = m->C;
  double tot = 0.0, amax = 0.0; /* the classes' columns are 0..N in order */
  for (size_t c = 0; c < C; c++) {
    const size_t lo = m->offset[c], n = m->offset[c + 1] - lo;
    const double s = sum_max4(h + lo, n, &amax);
    tot += s;
    mk[c] = s / (double)m->counts[c];
  }
  *mx = amax;
  const double g = tot / (double)m->N;
  double dmax = 0.0;
  for (size_t c = 0; c < C; c++) {
    Mk[c] = mk[c] - g;
    if (pk) pk[c] = sumsq_dev4(h + m->offset[c], m->offset[c + 1] - m->offset[c], mk[c], &dmax);
  }
  *dx = dmax;
  return g;
}

/* One pass per row of H (rows in parallel, each row's sums in a fixed
 * order): mu (p x C, row-major), muG, M = mu - muG, hmax[k] = max_i |H_ki|
 * and part[k][c] = sum_{i in c} (H_ki - mu_kc)^2, dmax[k] = max_i |H_ki -
 * mu_{k,y_i}|; then s_c^2 = (1/n_c) sum_k part[k][c], rows in order. The
 * scatter is summed from deviations, not as E h^2 - mu^2, which would
 * cancel to noise exactly when features collapse. */
static void class_means(const ufm_model *m, double *mu, double *muG, double *M, double *part,
                        double *s2, double *hmax, double *dmax)
{
  const size_t C = m->C, p = m->p, N = m->N;
#pragma omp parallel for schedule(static) if (p * N >= UFM_PAR_MIN)
  for (size_t k = 0; k < p; k++)
    muG[k] = means_row(m, m->H->data + k * N, mu + k * C, M + k * C, part ? part + k * C : NULL,
                       hmax + k, dmax + k);
  if (!part) return;
  for (size_t c = 0; c < C; c++) s2[c] = 0.0;
  for (size_t k = 0; k < p; k++)
    for (size_t c = 0; c < C; c++) s2[c] += part[k * C + c];
  for (size_t c = 0; c < C; c++) s2[c] /= (double)m->counts[c];
}

/* --------------------------------------------------------- 3. Gram matrices in tiles */

/* Tile q of the upper triangle of an n x n Gram: first the off-diagonal
 * tiles (a < b) row by row, then the diagonal ones, which cost half as
 * much, so that threads taking tiles in turn finish together. Its first
 * row and column. */
static void tile_of_ts(size_t q, size_t n, size_t ts, size_t *ra, size_t *rb)
{
  const size_t nt = ntiles_of(n, ts), noff = nt * (nt - 1) / 2;
  if (q >= noff) {
    *ra = *rb = (q - noff) * ts;
    return;
  }
  size_t ia = 0, rem = q;
  while (rem >= nt - 1 - ia) {
    rem -= nt - 1 - ia;
    ia++;
  }
  *ra = ia * ts;
  *rb = (ia + 1 + rem) * ts;
}
static void tile_of(size_t q, size_t n, size_t *ra, size_t *rb) { tile_of_ts(q, n, TILE, ra, rb); }

/* Tile (a, b) of G = A A^T (rows of A, trans = CblasNoTrans) or A^T A
 * (columns, CblasTrans) into out (na x nb, row stride ldo): dsyrk (upper
 * triangle) on the diagonal, dgemm elsewhere. One BLAS call, one thread.
 * With g512 (the workspace's gram512: the CPU has AVX-512) and a tile of
 * at least GKC_MIN multiply-adds, ufm_gram512 instead (on the diagonal
 * its 8 x 8 blocks on and above it), on GKC columns of A (rows, for A^T A)
 * at a time packed into a buffer of the call's own (about 0.6 of DGEMM's
 * time with OpenBLAS's AVX2 kernels, as for D D^T). The choice depends on
 * the shapes alone. */
#define GKC ((size_t)256)
#define GKC_MIN ((size_t)1 << 20)
static void gram_tile(CBLAS_TRANSPOSE_t trans, const gsl_matrix *A, size_t a, size_t b,
                      size_t na, size_t nb, double *out, size_t ldo, int g512)
{
  const int rows = trans == CblasNoTrans;
  const size_t L = rows ? A->size2 : A->size1;
  if (g512 && na * nb * L >= GKC_MIN) {
    const size_t pa = ufm_gram512_size(na, GKC);
    double *Pa = ufm_malloc((pa + (a == b ? 0 : ufm_gram512_size(nb, GKC))) * sizeof(double));
    double *Pb = a == b ? Pa : Pa + pa;
    for (size_t k0 = 0; k0 < L; k0 += GKC) {
      const size_t w = L - k0 < GKC ? L - k0 : GKC;
      if (rows) {
        ufm_gram512_pack(A->data + a * A->tda + k0, na, w, A->tda, Pa);
        if (a != b) ufm_gram512_pack(A->data + b * A->tda + k0, nb, w, A->tda, Pb);
      } else {
        ufm_gram512_pack_cols(A->data + k0 * A->tda + a, w, na, A->tda, Pa);
        if (a != b) ufm_gram512_pack_cols(A->data + k0 * A->tda + b, w, nb, A->tda, Pb);
      }
      ufm_gram512(Pa, na, Pb, nb, w, a == b, k0 == 0, out, ldo);
    }
    free(Pa);
    return;
  }
  gsl_matrix_view o = gsl_matrix_view_array_with_tda(out, na, nb, ldo);
  gsl_matrix_const_view Aa = rows ? gsl_matrix_const_submatrix(A, a, 0, na, L)
                                  : gsl_matrix_const_submatrix(A, 0, a, L, na);
  if (a == b) {
    gsl_blas_dsyrk(CblasUpper, trans, 1.0, &Aa.matrix, 0.0, &o.matrix);
    return;
  }
  gsl_matrix_const_view Ab = rows ? gsl_matrix_const_submatrix(A, b, 0, nb, L)
                                  : gsl_matrix_const_submatrix(A, 0, b, L, nb);
  if (rows) gsl_blas_dgemm(CblasNoTrans, CblasTrans, 1.0, &Aa.matrix, &Ab.matrix, 0.0, &o.matrix);
  else gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, &Aa.matrix, &Ab.matrix, 0.0, &o.matrix);
}

/* Tile q of G = A A^T or A^T A (n x n) in the upper triangle, and its
 * mirror image below. */
static void gram_pair(CBLAS_TRANSPOSE_t trans, const gsl_matrix *A, gsl_matrix *G, size_t q,
                      int g512)
{
  const size_t n = G->size1, ld = G->tda;
  size_t a, b;
  tile_of(q, n, &a, &b);
  size_t na = n - a < TILE ? n - a : TILE, nb = n - b < TILE ? n - b : TILE;
  double *g = G->data;
  gram_tile(trans, A, a, b, na, nb, g + a * ld + b, ld, g512);
  if (a == b) {
    for (size_t i = 0; i < na; i++)
      for (size_t j = 0; j < i; j++) g[(a + i) * ld + a + j] = g[(a + j) * ld + a + i];
  } else {
    for (size_t j = 0; j < nb; j++)
      for (size_t i = 0; i < na; i++) g[(b + j) * ld + a + i] = g[(a + i) * ld + b + j];
  }
}

/* G = A A^T or A^T A (n x n) through its upper tiles in parallel, each
 * mirrored: half the work of a dgemm, each entry from one BLAS call. */
static void gram(CBLAS_TRANSPOSE_t trans, const gsl_matrix *A, gsl_matrix *G, int g512)
{
  const size_t n = G->size1, nt = ntiles(n), npairs = nt * (nt + 1) / 2;
  const size_t L = trans == CblasNoTrans ? A->size2 : A->size1;
#pragma omp parallel for schedule(dynamic, 1) if (npairs > 1 && n * n * L >= 64 * UFM_PAR_MIN)
  for (size_t q = 0; q < npairs; q++) gram_pair(trans, A, G, q, g512);
}

/* The same on the calling thread alone. */
static void gram_serial(CBLAS_TRANSPOSE_t trans, const gsl_matrix *A, gsl_matrix *G, int g512)
{
  const size_t nt = ntiles(G->size1), npairs = nt * (nt + 1) / 2;
  for (size_t q = 0; q < npairs; q++) gram_pair(trans, A, G, q, g512);
}

/* Squared Frobenius norms of the tiles of the Gram of H's shorter side
 * (H H^T when p <= N, else H^T H): min(p,N)^2 max(p,N)/2 multiply-adds, no
 * Gram stored. An orphaned worksharing loop: it shares the tiles among the
 * threads of an enclosing parallel region, or runs them all on its own. */
static void gram_fro_tiles(const gsl_matrix *H, double *tilefro, size_t npairs, int g512)
{
  const size_t n = H->size1 <= H->size2 ? H->size1 : H->size2;
  const CBLAS_TRANSPOSE_t trans = H->size1 <= H->size2 ? CblasNoTrans : CblasTrans;
  double *buf = NULL;
#pragma omp for schedule(dynamic, 1) nowait
  for (size_t q = 0; q < npairs; q++) {
    if (!buf) buf = ufm_malloc(TILE * TILE * sizeof(double));
    size_t a, b;
    tile_of(q, n, &a, &b);
    size_t na = n - a < TILE ? n - a : TILE, nb = n - b < TILE ? n - b : TILE;
    gram_tile(trans, H, a, b, na, nb, buf, nb, g512);
    double s = 0.0;
    if (a == b) { /* the upper triangle: off-diagonal entries twice */
      for (size_t i = 0; i < na; i++) {
        s += buf[i * nb + i] * buf[i * nb + i];
        double t = 0.0;
        for (size_t j = i + 1; j < nb; j++) t += buf[i * nb + j] * buf[i * nb + j];
        s += 2.0 * t;
      }
    } else {
      for (size_t i = 0; i < na; i++) s += ufm_sumsq(buf + i * nb, nb);
      s *= 2.0;
    }
    tilefro[q] = s;
  }
  free(buf);
}


/* --------------------------------------------------- 4. thin SVD of M (LAPACK or GSL) */

/* Thin SVD M = U S V^T of a copy of M (M itself stays), one thread.
 * Afterwards mw->U points at U_M (p x k, row stride k) and mw->V at V_M,
 * as V_M^T (k x C, v_rows = 0: LAPACK) or V_M (C x k, v_rows = 1: GSL):
 *   p > C:  U_M in the copy (the scratch region's start), V_M in sq;
 *   p <= C: V_M in the copy, U_M in sq (GSL, p = C: as for p > C).
 * LAPACK reads the row-major copy as M^T (C x p, column-major), so M's left
 * singular vectors are M^T's right ones; with JOBZ = 'O' one factor
 * overwrites the input and the other goes to sq; its workspace follows the
 * copy. GSL's one-sided Jacobi SVD (slower) gives the same factors up to
 * signs. Returns -1 if LAPACK reports a failure to converge. Numerical rank
 * r: singular values above max(p, C) eps s_max. */
static int thin_svd(ufm_metrics_ws *mw)
{
  const size_t p = mw->p, C = mw->C, k = mw->k;
  double *A = mw->scratch, *S = mw->S->data;
  if (mw->lapack) {
#ifdef HAVE_LAPACK_DGESDD
    int mm = (int)C, nn = (int)p, lda = (int)C, kk = (int)k, info = 0;
    if (!mw->svd_work) mw->svd_work = ufm_malloc((size_t)mw->lwork * sizeof(double));
    memcpy(A, mw->M->data, p * C * sizeof(double));
    dgesdd_("O", &mm, &nn, A, &lda, S, mw->sq->data, &kk, mw->sq->data, &kk, mw->svd_work,
            &mw->lwork, mw->iwork, &info, 1);
    if (info != 0) return -1;
#endif
    mw->U = p > C ? A : mw->sq->data;
    mw->V = p > C ? mw->sq->data : A;
    mw->v_rows = 0;
    mw->ldu = k;
  } else if (p >= C) { /* GSL wants a tall matrix: M */
    gsl_matrix_view Av = gsl_matrix_view_array(A, p, C);
    gsl_matrix_view V = gsl_matrix_view_array(mw->sq->data, C, C);
    gsl_matrix_memcpy(&Av.matrix, mw->M);
    gsl_linalg_SV_decomp(&Av.matrix, &V.matrix, mw->S, mw->svwork);
    mw->U = A;
    mw->V = mw->sq->data;
    mw->v_rows = 1;
    mw->ldu = k;
  } else { /* M^T (C x p) = V_M S U_M^T */
    gsl_matrix_view Av = gsl_matrix_view_array(A, C, p);
    gsl_matrix_view V = gsl_matrix_view_array(mw->sq->data, p, p);
    gsl_matrix_transpose_memcpy(&Av.matrix, mw->M);
    gsl_linalg_SV_decomp(&Av.matrix, &V.matrix, mw->S, mw->svwork);
    mw->U = mw->sq->data;
    mw->V = A;
    mw->v_rows = 1;
    mw->ldu = k;
  }
  double smax = k > 0 ? S[0] : 0.0;
  double tol = (double)(p > C ? p : C) * DBL_EPSILON * smax;
  size_t r = 0;
  while (r < k && S[r] > tol) r++;
  mw->r = r;
  return 0;
}

/* The LQ path (p <= N, C - 1 <= p, LAPACK): NC1 needs no singular vectors,
 * only a factor B (p x r) with B B^T = (M M^T)^+ on the numerical rank r,
 * NC1 = Tr(B^T D D^T B)/N (the SVD's is B = U_r S_r^-1). M n = 0 for the
 * counts n (M is centred with the sample weights), so with the Householder
 * reflection P taking n/||n|| to -e_C, M P = [M', m] with m = -M n/||n||
 * round-off only. When
 *  (i)  ||m|| < tol/8, tol = max(p,C) eps s_max the rank tolerance of the
 *       SVD (s_max >= ||M||_F / sqrt(min(p,C)) stands in for s_max), and
 *  (ii) Cholesky succeeds on P G P - tau I restricted to the first C-1
 *       rows and columns (= M'^T M' up to round-off), tau = 8 (p+C) eps
 *       ||M||_F^2, at least twice the round-off of G (p eps ||M||_F^2), of
 *       P G P and of the factorisation (C eps ||M||_F^2), so that
 *       s_min(M')^2 >= tau/2 and s_min(M') >> tol,
 * the numerical rank is r = C - 1 whatever SVD is run: s_C(M) <= ||m|| <
 * tol and, M' being M P without a column, s_{C-1}(M) >= s_min(M') > tol.
 * (M M^T)^+ on that rank is then (M' M'^T)^+ up to a relative ||m||^2 /
 * s_min(M')^2, below round-off. M'^T = L Q (dgelqf: Householder, backward
 * stable as the SVD is, so NC1 is as accurate; Q (C-1) x p with
 * orthonormal rows as dorglq forms it) and B^T = L^-T Q (dtrsm), so that
 * B B^T = Q^T (L^T L)^-1 Q = (M' M'^T)^+. About 4 p C^2
 * multiply-adds of BLAS-3 on one thread, a third of dgesdd's time at
 * C = 1000 (whose bidiagonalisation alone is half matrix-vector work).
 * certify_only (every deviation is 0, so NC1 = 0 needs no B): stop after
 * the certificate, with mw->r = C - 1 and no B.
 * Returns 0 with mw->U = B (row stride r = C - 1); 1 if (i) or (ii) fails,
 * and the caller runs the SVD; -1 if LAPACK reports an error. */
static int thin_lq(ufm_metrics_ws *mw, const size_t *counts, int certify_only)
{
#ifdef HAVE_LAPACK_DGESDD
  const size_t p = mw->p, C = mw->C, c1 = C - 1;
  const double *M = mw->M->data, *G = mw->G->data;
  double *A = mw->scratch, *tau = A + p * C, *work = tau + C, *R = mw->scratch + mw->off_R;
  double *vv = ufm_malloc(2 * C * sizeof(double)), *Gv = vv + C;
  /* v = n/||n|| + e_C, beta = 2/||v||^2: P = I - beta v v^T, P n/||n|| = -e_C */
  double nn = 0.0, trG = 0.0;
  for (size_t c = 0; c < C; c++) nn += (double)counts[c] * (double)counts[c];
  nn = sqrt(nn);
  for (size_t c = 0; c < C; c++) vv[c] = (double)counts[c] / nn;
  vv[c1] += 1.0;
  double vtv = 0.0;
  for (size_t c = 0; c < C; c++) vtv += vv[c] * vv[c];
  const double beta = 2.0 / vtv;
  for (size_t c = 0; c < C; c++) trG += G[c * C + c];
  /* M' = (M - beta (M v) v^T) without its last column, row stride C-1;
   * m its last column */
  double m2 = 0.0;
  for (size_t k = 0; k < p; k++) {
    const double *Mk = M + k * C;
    double mv = 0.0;
    for (size_t c = 0; c < C; c++) mv += Mk[c] * vv[c];
    mv *= beta;
    double *Ak = A + k * c1;
    for (size_t c = 0; c < c1; c++) Ak[c] = Mk[c] - mv * vv[c];
    double last = Mk[c1] - mv * vv[c1];
    m2 += last * last;
  }
  const double eps = DBL_EPSILON, kmin = (double)(p < C ? p : C), kmax = (double)(p > C ? p : C);
  const double tol = kmax * eps * sqrt(trG / kmin);
  if (!(sqrt(m2) < tol / 8.0)) {
    free(vv);
    return 1;
  }
  /* P G P - tau I, first C-1 rows and columns, into R (column-major, ld C-1):
   * G - beta v (Gv)^T - beta (Gv) v^T + beta^2 (v^T G v) v v^T */
  double vGv = 0.0;
  for (size_t c = 0; c < C; c++) {
    double s = 0.0;
    for (size_t d = 0; d < C; d++) s += G[c * C + d] * vv[d];
    Gv[c] = s;
    vGv += vv[c] * s;
  }
  const double tauc = 8.0 * (double)(p + C) * eps * trG;
  for (size_t j = 0; j < c1; j++)
    for (size_t i = 0; i <= j; i++)
      R[i + j * c1] = G[i * C + j] - beta * (vv[i] * Gv[j] + Gv[i] * vv[j]) +
                      beta * beta * vGv * vv[i] * vv[j] - (i == j ? tauc : 0.0);
  free(vv);
  int n1 = (int)c1, nn1 = (int)p, info = 0, lw = mw->lqwork;
  dpotrf_("U", &n1, R, &n1, &info, 1);
  if (info > 0) return 1;
  if (info < 0) return -1;
  if (certify_only) { /* the rank is C - 1; B itself is not needed */
    mw->U = NULL;
    mw->ldu = c1;
    mw->r = c1;
    return 0;
  }
  /* M'^T = L Q: A is M'^T column-major ((C-1) x p, ld C-1) */
  dgelqf_(&n1, &nn1, A, &n1, tau, work, &lw, &info);
  if (info != 0) return -1;
  for (size_t j = 0; j < c1; j++)
    for (size_t i = j; i < c1; i++) R[i + j * c1] = A[i + j * c1];
  dorglq_(&n1, &nn1, &n1, A, &n1, tau, work, &lw, &info);
  if (info != 0) return -1;
  cblas_dtrsm(CblasColMajor, CblasLeft, CblasLower, CblasTrans, CblasNonUnit, n1, nn1, 1.0, R, n1,
              A, n1);
  mw->U = A;
  mw->ldu = c1;
  mw->r = c1;
  return 0;
#else
  (void)mw;
  (void)counts;
  return 1;
#endif
}

/* ------------------- 5. the nearest-class-centre rule and NC1, in blocks and tiles */

/* The nearest class centre of h_i is the first c minimising
 *   ||h_i - mu_c||^2 - ||x_i||^2 = G_cc - 2 M_c.x_i,   x_i = h_i - mu_G,
 * G = M^T M. Scoring every sample against every class is M^T X (C p N),
 * the largest product of the metrics; it runs in single precision, SGEMM
 * at twice DGEMM's rate, as a filter with a proven error bound, and only
 * the samples it cannot settle are scored again in double:
 *   with s = 2^-e >= 1/max_k(max_i |h_ki| + |mu_G,k|) (so that s|M_kc| and
 *   s|x_ki| are at most 1: no overflow), Mf = fl(s M), Xf = fl(s X) and
 *   Ef = SGEMM(Mf^T, Xf), any summation order gives (u = 2^-24)
 *     |Ef_ci / s^2 - M_c.x_i| <= (p + 2) u ||M_c|| ||x_i|| + eta,
 *   eta = (p + 2) 2^-126 / s^2 covering underflow (gradual or not). With
 *   d_ci = 2.02 (p + 4) u ||M_c|| ||x_i|| + 2 eta (the 1% also covers the
 *   double round-off of the scores themselves, some 2^-29 of it) and
 *   f_ci = G_cc - 2 Ef_ci / s^2, the double-precision score lies in
 *   [f_ci - d_ci, f_ci + d_ci]. So with U_i = min_c (f_ci + d_ci), the
 *   classes with f_ci - d_ci <= U_i include every class that can be the
 *   first minimiser in double; when only one is left (the one attaining
 *   U_i), it is the answer. The others ("ambiguous": a near tie, typically
 *   1% of the samples near initialisation, none once the classes
 *   separate) are scored in double, G_cc - 2 M^T x_i by DGEMM in batches
 *   of NAMB, first minimiser over all classes. So NC4 is that of the
 *   double-precision scores, exactly, whatever the filter decided; when
 *   the data are not finite or too large or small for the scaling, every
 *   sample goes the double way.
 * Before the filter, a test that needs no scores settles the samples of
 * a collapsed state (ncc_certify): with x~ = h_i - mu_G exactly, the
 * double score of class c is within
 *   E_c <= 1.01 (p + 4) u (||M_c|| + ||x~||)^2 + 4 eta
 * (u = 2^-53, eta = (p + 4) 2^-1070 for underflow; G_cc, the dot product
 * and x's rounding in any order) of T_c = ||x~ - M_c||^2 - ||x~||^2, and
 * with y = y_i, delta = ||x~ - M_y|| and Delta_c = ||M_c - M_y|| >= 2 delta,
 *   T_c - T_y >= (Delta_c - delta)^2 - delta^2 = Delta_c (Delta_c - 2 delta).
 * So if Dmin_y (Dmin_y - 2 delta+) > 2.1 (p + 4) u (2 mmax+ + delta+)^2 +
 * 8 eta with Dmin_y >= 2 delta+, every other class scores strictly more
 * than y in double, whatever the order of the sums: y is the answer.
 * Dmin_y <= min_{c != y} Delta_c comes from G (its error bound taken
 * off), mmax+ >= max_c ||M_c|| from G's diagonal and delta+ >= delta from
 * the computed deviation's norm (dn), the rounding of mu_y + mu_G and of
 * h - mu taken into account; ||x~|| <= delta + ||M_y||. A sample closer to
 * its own class centre than about half the distance to the nearest other
 * is settled this way: every sample once the classes have collapsed,
 * none near initialisation (where ncc_plan does not even try it, so that
 * neither the deviations' norms nor the test cost anything).
 * The samples it leaves go to the filter (its features gathered first),
 * or straight to the double rescoring without the filter. Before the
 * filter, from C = PAIR_MIN_C, the pair test (ncc_pair) takes the samples
 * whose classifier prediction q is not their class y: NC4 only asks
 * whether q is the nearest centre, and it is not if y's double score is
 * below q's. Two of the filter's scores (y's and q's, each within the
 * filter's bound whatever the order of its sum) settle that as the
 * filter would settle a class out: f_y + d_y < f_q - d_q. Near
 * initialisation most samples are settled so, at 2p gathered
 * multiply-adds each instead of the filter's C p.
 * The samples are scored in blocks (ncc_block), each block's count of
 * samples whose nearest centre is not the classifier's prediction in its
 * own slot; integer counts, so their sum does not depend on the order. */

/* The filter's set-up: the scale s (the same bound covers |M_kc|, as
 * means of the h_ki) and Mf; or mw->f32 = 0. */
static void ncc_prepare(const ufm_model *m, ufm_metrics_ws *mw)
{
  const size_t C = m->C, p = m->p;
  double b = 0.0;
  int finite = 1;
  for (size_t k = 0; k < p; k++) {
    const double v = mw->hmax[k] + fabs(mw->muG->data[k]);
    finite &= isfinite(v);
    b = v > b ? v : b;
  }
  for (size_t c = 0; c < C; c++) finite &= isfinite(gsl_matrix_get(mw->G, c, c));
  int e = 0;
  mw->f32 = finite && b > 0x1p-400 && b < 0x1p400 && (double)(p + 4) * 0x1p-24 < 0.25;
  if (!mw->f32) return;
  frexp(b, &e); /* b < 2^e */
  const double sc = ldexp(1.0, -e);
  mw->scale = sc;
  const double *M = mw->M->data;
  float *Mf = mw->Mf;
#pragma omp parallel for schedule(static) if (p * C >= 4 * UFM_PAR_MIN)
  for (size_t k = 0; k < p; k++)
    for (size_t c = 0; c < C; c++) Mf[k * C + c] = (float)(M[k * C + c] * sc);
}

/* The collapse test's constants: (p + 4) u, the underflow term eta and
 * sqrt(p) 2^-500, the most a norm's sum of squares loses to underflow */
#define CERT_KP(p) ((double)((p) + 4) * 0x1p-53)
#define CERT_ETA(p) ((double)((p) + 4) * 0x1p-1070)
#define CERT_TINY(p) (sqrt((double)(p)) * 0x1p-500)

/* The collapse test's global bounds (see above): mmax+ (cmm) and
 * ||mu_G||+ (cgn), and G's diagonal. Non-finite data give a NaN bound,
 * which settles no sample; with mmax+ < 2^500 no entry of G can have
 * overflowed. */
static void ncc_certify_prepare(const ufm_model *m, ufm_metrics_ws *mw)
{
  const size_t C = m->C, p = m->p;
  const double *G = mw->G->data, *g = mw->muG->data;
  const double kp = CERT_KP(p), tiny = CERT_TINY(p);
  double mm = 0.0, gg = 0.0;
  int finite = 1;
  for (size_t c = 0; c < C; c++) {
    mw->gdiag[c] = G[c * C + c];
    finite &= isfinite(G[c * C + c]);
    mm = mw->mnorm[c] > mm ? mw->mnorm[c] : mm;
  }
  for (size_t k = 0; k < p; k++) gg += g[k] * g[k];
  mw->cmm = finite && mm < 0x1p500 ? (mm + tiny) * (1.0 + kp) : NAN;
  mw->cgn = (sqrt(gg) + tiny) * (1.0 + kp);
}

/* Dmin_y for classes c0 .. c1 into D (from G's rows, C operations each):
 * |fl(G_cc + G_yy - 2 G_cy) - Delta_c^2| <= 1.1 (p + 4) u (2 mmax+)^2 +
 * 4 eta, the smallest over c first, then one square root (monotone). */
static void ncc_dmin(const ufm_metrics_ws *mw, size_t c0, size_t c1, double *D)
{
  const size_t C = mw->C, p = mw->p;
  const double off = 4.4 * CERT_KP(p) * mw->cmm * mw->cmm + 4.0 * CERT_ETA(p), *gd = mw->gdiag;
  for (size_t y = c0; y <= c1; y++) {
    const double *Gy = mw->G->data + y * C, gy = gd[y];
    double lo = INFINITY;
#pragma omp simd reduction(min : lo)
    for (size_t c = 0; c < y; c++) {
      const double v = (gd[c] + gy) - 2.0 * Gy[c];
      lo = v < lo ? v : lo;
    }
#pragma omp simd reduction(min : lo)
    for (size_t c = y + 1; c < C; c++) {
      const double v = (gd[c] + gy) - 2.0 * Gy[c];
      lo = v < lo ? v : lo;
    }
    const double v = lo - off;
    D[y - c0] = v > 0.0 ? sqrt(v) * (1.0 - 0x1p-51) : 0.0;
  }
}

/* Whether the collapse test is worth trying on columns i0 .. i0 + w: for
 * some class y among them, s_y^2 < Dmin_y^2 (its root-mean-square
 * deviation under twice the test's threshold Dmin_y/2). Dmin_y of their
 * classes into D (C doubles at most). Speed only: near initialisation
 * (no class qualifies) the deviations' norms are not formed and no sample
 * is tested; the filter decides the same either way. */
static int ncc_plan(const ufm_model *m, const ufm_metrics_ws *mw, size_t i0, size_t w, double *D)
{
  if (!mw->certify || isnan(mw->cmm) || w == 0) return 0;
  const size_t c0 = (size_t)m->labels[i0], c1 = (size_t)m->labels[i0 + w - 1];
  ncc_dmin(mw, c0, c1, D);
  for (size_t y = c0; y <= c1; y++)
    if (mw->s2[y] < D[y - c0] * D[y - c0]) return 1;
  return 0;
}

/* The collapse test on block i0's w columns (their deviations' norms dn,
 * Dmin_y from ncc_plan in D): arg[j] = y_j for the samples it settles;
 * the others' columns, in order, into idx. Returns how many it settled. */
static size_t ncc_certify(const ufm_model *m, const ufm_metrics_ws *mw, size_t i0, size_t w,
                          const double *dn, const double *D, int32_t *restrict arg,
                          int32_t *restrict idx)
{
  const size_t p = m->p, c0 = (size_t)m->labels[i0];
  const double kp = CERT_KP(p), eta = CERT_ETA(p), tiny = CERT_TINY(p), cmm = mw->cmm;
  const double shift = 0x1p-52 * (cmm + mw->cgn); /* the rounding of mu_y + mu_G */
  size_t nu = 0;
  for (size_t j = 0; j < w; j++) {
    const int32_t y = m->labels[i0 + j];
    const double Dy = D[(size_t)y - c0];
    const double dp = (dn[j] + tiny) * (1.0 + kp) + shift; /* delta+ */
    const double q = 2.0 * cmm + dp;
    const double rhs = (2.1 * kp * q * q + 8.0 * eta) * (1.0 + 0x1p-50);
    const double lhs = Dy * (Dy - 2.0 * dp) * (1.0 - 0x1p-50);
    if (Dy >= 2.0 * dp && lhs > rhs)
      arg[j] = y;
    else
      idx[nu++] = (int32_t)j;
  }
  return w - nu;
}

/* Columns amb[0..na) of block i0 (w columns) rescored in double:
 * Xa = the centred columns (p x na), Ea = M^T Xa, first minimiser of
 * G_cc - 2 Ea_cj into arg. */
static void ncc_exact(const ufm_model *m, const ufm_metrics_ws *mw, size_t i0, const int32_t *amb,
                      size_t na, double *Xa, double *Ea, int32_t *arg)
{
  const size_t C = m->C, p = m->p, N = m->N;
  const double *g = mw->muG->data, *G = mw->G->data;
  for (size_t k = 0; k < p; k++) {
    const double *h = m->H->data + k * N + i0;
    for (size_t j = 0; j < na; j++) Xa[k * na + j] = h[amb[j]] - g[k];
  }
  gsl_matrix_view Xv = gsl_matrix_view_array(Xa, p, na), Ev = gsl_matrix_view_array(Ea, C, na);
  gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, mw->M, &Xv.matrix, 0.0, &Ev.matrix);
  for (size_t j = 0; j < na; j++) {
    double best = G[0] - 2.0 * Ea[j];
    int32_t a = 0;
    for (size_t c = 1; c < C; c++) {
      const double v = G[c * C + c] - 2.0 * Ea[c * na + j];
      if (v < best) {
        best = v;
        a = (int32_t)c;
      }
    }
    arg[amb[j]] = a;
  }
}

/* Rows k0 .. k1 of columns j0 .. j0 + w of H, in one pass: those rows of
 * Xf = fl(s (H_b - mu_G 1^T)) (p x w), and their squares added to xn, the
 * columns' squared norms; if out is not NULL, the deviations h_i -
 * mu_{y_i} (k1 - k0 rows of w from out, formed as deviations() forms
 * them, for D D^T); if dn is not NULL, their squares added to dn (the
 * collapse test's norms; deviations_ncc zeroes both and takes the roots).
 * The flags are
 * constants where deviations_ncc calls this, so each combination compiles
 * to its own loop; the operations are the same in all, so the same bits.
 * Without the filter (f32 = 0) s = 1 and Xf is not used. */
static inline __attribute__((always_inline)) void features_body(
    const ufm_model *m, const ufm_metrics_ws *mw, size_t j0, size_t w, size_t k0, size_t k1,
    double *out, float *restrict Xf, double *restrict xn, double *restrict dn, const int wd,
    const int wn)
{
  const size_t C = m->C, N = m->N, c0 = (size_t)m->labels[j0];
  const double sc = mw->f32 ? mw->scale : 1.0;
  /* two rows at a time: xn and dn are read and written once per pair,
   * their sums still taken row by row in order (the same bits; k0 is
   * even) */
  size_t k = k0;
  for (; k + 2 <= k1; k += 2) {
    const double *h0 = m->H->data + k * N, *h1 = h0 + N;
    const double *M0 = mw->M->data + k * C, *M1 = M0 + C;
    const double g0 = mw->muG->data[k], g1 = mw->muG->data[k + 1];
    double *o0 = wd ? out + (k - k0) * w : NULL, *o1 = wd ? o0 + w : NULL;
    float *f0 = Xf + k * w, *f1 = f0 + w;
    for (size_t c = c0, lo = j0; lo < j0 + w; c++) {
      const size_t hi = m->offset[c + 1] < j0 + w ? m->offset[c + 1] : j0 + w;
      const double mu0 = M0[c] + g0, mu1 = M1[c] + g1;
#pragma omp simd
      for (size_t j = lo; j < hi; j++) {
        const double x0 = h0[j] - g0, d0 = h0[j] - mu0, x1 = h1[j] - g1, d1 = h1[j] - mu1;
        if (wd) {
          o0[j - j0] = d0;
          o1[j - j0] = d1;
        }
        xn[j - j0] = (xn[j - j0] + x0 * x0) + x1 * x1;
        if (wn) dn[j - j0] = (dn[j - j0] + d0 * d0) + d1 * d1;
        f0[j - j0] = (float)(x0 * sc);
        f1[j - j0] = (float)(x1 * sc);
      }
      lo = hi;
    }
  }
  for (; k < k1; k++) {
    const double *h = m->H->data + k * N, *Mk = mw->M->data + k * C;
    const double g = mw->muG->data[k];
    double *o = wd ? out + (k - k0) * w : NULL;
    float *xf = Xf + k * w;
    for (size_t c = c0, lo = j0; lo < j0 + w; c++) {
      const size_t hi = m->offset[c + 1] < j0 + w ? m->offset[c + 1] : j0 + w;
      const double mu = Mk[c] + g;
#pragma omp simd
      for (size_t j = lo; j < hi; j++) {
        const double x = h[j] - g, d = h[j] - mu;
        if (wd) o[j - j0] = d;
        xn[j - j0] += x * x;
        if (wn) dn[j - j0] += d * d;
        xf[j - j0] = (float)(x * sc);
      }
      lo = hi;
    }
  }
}

/* features_body on rows k0 .. k1 with out and dn each given or NULL */
static inline __attribute__((always_inline)) void features_rows(
    const ufm_model *m, const ufm_metrics_ws *mw, size_t j0, size_t w, size_t k0, size_t k1,
    double *out, float *restrict Xf, double *restrict xn, double *restrict dn)
{
  if (out && dn) features_body(m, mw, j0, w, k0, k1, out, Xf, xn, dn, 1, 1);
  else if (out) features_body(m, mw, j0, w, k0, k1, out, Xf, xn, NULL, 1, 0);
  else if (dn) features_body(m, mw, j0, w, k0, k1, NULL, Xf, xn, dn, 0, 1);
  else features_body(m, mw, j0, w, k0, k1, NULL, Xf, xn, NULL, 0, 0);
}

/* features_body over all rows, out and dn each given or NULL: with out, a
 * slab's chunk formed and scored in the same pass over H; without, a block
 * scored on its own. With P (out then 8 w doubles), the deviations are
 * formed 8 rows at a time into out and packed from there into P for
 * ufm_gram512. */
UFM_CLONES static void deviations_ncc(const ufm_model *m, const ufm_metrics_ws *mw, size_t j0,
                                      size_t w, double *out, float *restrict Xf,
                                      double *restrict xn, double *restrict dn, double *P)
{
  const size_t p = m->p;
  for (size_t j = 0; j < w; j++) xn[j] = 0.0;
  if (dn)
    for (size_t j = 0; j < w; j++) dn[j] = 0.0;
  if (P && out) {
    for (size_t k0 = 0; k0 < p; k0 += 8) {
      const size_t k1 = p - k0 < 8 ? p : k0 + 8;
      features_rows(m, mw, j0, w, k0, k1, out, Xf, xn, dn);
      ufm_gram512_pack(out, k1 - k0, w, w, P + k0 * w);
    }
  } else {
    features_rows(m, mw, j0, w, 0, p, out, Xf, xn, dn);
  }
  for (size_t j = 0; j < w; j++) xn[j] = sqrt(xn[j]);
  if (dn)
    for (size_t j = 0; j < w; j++) dn[j] = sqrt(dn[j]);
}

/* From the filter's scores Ef (C x w): U_j = min_c (f_cj + d_cj), then
 * cnt_j = #{c : f_cj - d_cj <= U_j} and cand_j the last such c (the only
 * one when cnt_j = 1), both as doubles for the vector units. */
UFM_CLONES static void ncc_scan(const float *Ef, size_t C, size_t w, const double *Gdiag, size_t ldg,
                                const double *mnorm, const double *xn, double inv2, double beta,
                                double eta2, double *restrict U, double *restrict cnt,
                                double *restrict cand)
{
  for (size_t j = 0; j < w; j++) {
    U[j] = INFINITY;
    cnt[j] = 0.0;
    cand[j] = -1.0;
  }
  for (size_t c = 0; c < C; c++) {
    const float *e = Ef + c * w;
    const double gc = Gdiag[c * ldg], dc = beta * mnorm[c];
#pragma omp simd
    for (size_t j = 0; j < w; j++) {
      const double hi = gc - inv2 * (double)e[j] + (dc * xn[j] + eta2);
      U[j] = hi < U[j] ? hi : U[j];
    }
  }
  for (size_t c = 0; c < C; c++) {
    const float *e = Ef + c * w;
    const double gc = Gdiag[c * ldg], dc = beta * mnorm[c], cd = (double)c;
#pragma omp simd
    for (size_t j = 0; j < w; j++) {
      const int in = gc - inv2 * (double)e[j] - (dc * xn[j] + eta2) <= U[j];
      cnt[j] += in ? 1.0 : 0.0;
      cand[j] = in ? cd : cand[j];
    }
  }
}

/* The pair test's scores (see ncc_pair): for the w columns of Xf (block
 * i0), ey_j = Mf_y . Xf_j with y the column's class and ep_j = Mf_q . Xf_j
 * with q = pred_j, summed in single precision over k in order, two rows at
 * a time: a summation order like any other, so the filter's bound holds
 * for them as for SGEMM's. */
UFM_CLONES static void ncc_pair_scores(const ufm_model *m, const ufm_metrics_ws *mw, size_t i0,
                                       size_t w, const float *Xf, const int32_t *pred,
                                       float *restrict ey, float *restrict ep)
{
  const size_t C = m->C, p = m->p, c0 = (size_t)m->labels[i0];
  for (size_t j = 0; j < w; j++) ey[j] = ep[j] = 0.0f;
  size_t k = 0;
  for (; k + 2 <= p; k += 2) {
    const float *M0 = mw->Mf + k * C, *M1 = M0 + C, *x0 = Xf + k * w, *x1 = x0 + w;
    for (size_t c = c0, lo = 0; lo < w; c++) {
      const size_t hi = m->offset[c + 1] - i0 < w ? m->offset[c + 1] - i0 : w;
      const float a0 = M0[c], a1 = M1[c];
#pragma omp simd
      for (size_t j = lo; j < hi; j++) {
        ey[j] = (ey[j] + a0 * x0[j]) + a1 * x1[j];
        ep[j] = (ep[j] + M0[pred[j]] * x0[j]) + M1[pred[j]] * x1[j];
      }
      lo = hi;
    }
  }
  for (; k < p; k++) {
    const float *Mk = mw->Mf + k * C, *x = Xf + k * w;
    for (size_t c = c0, lo = 0; lo < w; c++) {
      const size_t hi = m->offset[c + 1] - i0 < w ? m->offset[c + 1] - i0 : w;
      const float a = Mk[c];
#pragma omp simd
      for (size_t j = lo; j < hi; j++) {
        ey[j] += a * x[j];
        ep[j] += Mk[pred[j]] * x[j];
      }
      lo = hi;
    }
  }
}

/* Below this many classes the filter's SGEMM costs little more than the
 * pair test and the gathering of the columns it leaves (measured, 2
 * threads, every evaluation near initialisation: C = 10, p = 64, n = 50
 * 7% slower with the test; C = 16 and 24 0.5% and 2%; C = 32 3-4%
 * faster, C = 64 to 1000 10-17% faster) */
#define PAIR_MIN_C 32

/* The pair test on the nu columns of block i0 that the collapse test left
 * (idx, or NULL for every column): a sample whose classifier prediction q
 * is not its class y is settled, arg = y, when the filter's bounds (the
 * same expressions as ncc_scan's) put y's double-precision score strictly
 * below q's, f_y + d_y < f_q - d_q: q is then not the nearest centre, and
 * the sample counts as a disagreement whatever the nearest is. The
 * columns it leaves, in order, into idx. Tried only where at least a
 * quarter of the columns have q != y (then most are settled near
 * initialisation; once the classifier is right it would settle none).
 * Returns how many it settled. */
static size_t ncc_pair(const ufm_model *m, const ufm_grad_ws *ws, const ufm_metrics_ws *mw,
                       size_t i0, size_t w, const ncc_bufs *b, int32_t **idx, size_t *nu)
{
  const size_t p = m->p, n = *nu;
  const int32_t *y = m->labels + i0, *q = ws->pred + i0, *ix = *idx;
  size_t cand = 0;
  for (size_t j = 0; j < n; j++) {
    const size_t col = ix ? (size_t)ix[j] : j;
    cand += q[col] != y[col];
  }
  if (4 * cand < n) return 0;
  float *ey = b->Ep, *ep = b->Ep + w;
  ncc_pair_scores(m, mw, i0, w, b->Xf, q, ey, ep);
  const double sc = mw->scale, inv2 = 2.0 / (sc * sc);
  const double beta = 2.02 * (double)(p + 4) * 0x1p-24;
  const double eta2 = 2.0 * (double)(p + 2) * 0x1p-126 / (sc * sc);
  const double *G = mw->G->data;
  const size_t ldg = m->C + 1;
  size_t left = 0;
  for (size_t j = 0; j < n; j++) {
    const size_t col = ix ? (size_t)ix[j] : j;
    const int32_t yc = y[col], qc = q[col];
    if (qc != yc) {
      const double hy = G[(size_t)yc * ldg] - inv2 * (double)ey[col] +
                        (beta * mw->mnorm[yc] * b->xn[col] + eta2);
      const double lq = G[(size_t)qc * ldg] - inv2 * (double)ep[col] -
                        (beta * mw->mnorm[qc] * b->xn[col] + eta2);
      if (hy < lq) {
        b->arg[col] = yc;
        continue;
      }
    }
    b->idx[left++] = (int32_t)col;
  }
  if (left == n) return 0; /* idx as it was: nothing to gather */
  *idx = b->idx;
  *nu = left;
  return n - left;
}

static ncc_bufs ncc_buf(const ufm_metrics_ws *mw, size_t t)
{
  const size_t C = mw->C, p = mw->p, W = mw->nnb, S = mw->nsub;
  double *buf = mw->ablk + t * mw->astride;
  ncc_bufs b;
  b.Ef = (float *)buf;
  buf += (C * S + 1) / 2;
  b.Xf = (float *)buf;
  buf += (p * W + 1) / 2;
  b.xn = buf;
  b.dn = buf + W;
  b.arg = (int32_t *)(buf + 2 * W);
  b.amb = b.arg + W;
  b.idx = b.amb + W;
  buf += 3 * W + (W + 1) / 2;
  b.U = buf;
  b.cnt = buf + S;
  b.cand = buf + 2 * S;
  b.Xa = buf + 3 * S;
  b.Ea = b.Xa + p * NAMB;
  b.Ep = (float *)(b.Ea + C * NAMB);
  return b;
}

/* Block blk (columns nstart[blk] .. nstart[blk + 1]) with thread t's
 * buffers: the collapse test first (if worth trying), then the filter on
 * the columns it left (gathered to the front of Xf), in sub-blocks of
 * nsub columns, then the double rescoring; its count of samples whose
 * nearest centre is not the classifier's prediction into blkmis[blk], of
 * those the test settled into blkcert[blk]. plan < 0: the features are
 * formed here; else Xf, xn (and dn if plan, ncc_plan's answer, with Dmin
 * in Ea) already hold them (deviations_ncc). */
static void ncc_block(const ufm_model *m, const ufm_grad_ws *ws, const ufm_metrics_ws *mw,
                      size_t blk, size_t t, int plan)
{
  const size_t C = m->C, p = m->p;
  const double sc = mw->scale, inv2 = mw->f32 ? 2.0 / (sc * sc) : 0.0;
  const double beta = 2.02 * (double)(p + 4) * 0x1p-24;
  const double eta2 = mw->f32 ? 2.0 * (double)(p + 2) * 0x1p-126 / (sc * sc) : 0.0;
  const size_t i0 = mw->nstart[blk], w = mw->nstart[blk + 1] - i0;
  const ncc_bufs b = ncc_buf(mw, t);
  if (plan < 0) {
    plan = ncc_plan(m, mw, i0, w, b.Ea);
    deviations_ncc(m, mw, i0, w, NULL, b.Xf, b.xn, plan ? b.dn : NULL, NULL);
  }
  size_t na = 0, nu = w, settled = 0, paired = 0;
  int32_t *idx = NULL; /* NULL: every column, in order */
  if (plan) {
    settled = ncc_certify(m, mw, i0, w, b.dn, b.Ea, b.arg, b.idx);
    nu = w - settled;
    if (settled) idx = b.idx;
  }
  if (nu > 0 && mw->f32 && (mw->pair == 2 || (mw->pair == 1 && m->C >= PAIR_MIN_C)))
    paired = ncc_pair(m, ws, mw, i0, w, &b, &idx, &nu);
  if (nu > 0 && mw->f32) {
    if (idx) { /* the columns left, to the front (idx[j] >= j) */
      for (size_t k = 0; k < p; k++) {
        float *xf = b.Xf + k * w;
        for (size_t j = 0; j < nu; j++) xf[j] = xf[idx[j]];
      }
      for (size_t j = 0; j < nu; j++) b.xn[j] = b.xn[idx[j]];
    }
    for (size_t s0 = 0; s0 < nu; s0 += mw->nsub) {
      const size_t ws0 = nu - s0 < mw->nsub ? nu - s0 : mw->nsub;
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)C, (int)ws0, (int)p, 1.0f,
                  mw->Mf, (int)C, b.Xf + s0, (int)w, 0.0f, b.Ef, (int)ws0);
      ncc_scan(b.Ef, C, ws0, mw->G->data, C + 1, mw->mnorm, b.xn + s0, inv2, beta, eta2, b.U,
               b.cnt, b.cand);
      for (size_t j = 0; j < ws0; j++) {
        const int32_t col = idx ? idx[s0 + j] : (int32_t)(s0 + j);
        b.arg[col] = (int32_t)b.cand[j];
        if (b.cnt[j] != 1.0) b.amb[na++] = col; /* 0: NaN somewhere, rescore */
      }
    }
  } else {
    for (size_t j = 0; j < nu; j++) b.amb[na++] = idx ? idx[j] : (int32_t)j;
  }
  for (size_t j0 = 0; j0 < na; j0 += NAMB)
    ncc_exact(m, mw, i0, b.amb + j0, na - j0 < NAMB ? na - j0 : NAMB, b.Xa, b.Ea, b.arg);
  size_t mis = 0;
  for (size_t i = 0; i < w; i++) mis += ws->pred[i0 + i] != b.arg[i];
  mw->blkmis[blk] = mis;
  mw->blkcert[blk] = settled;
  mw->blkpair[blk] = paired;
}

/* Takes block u if no thread has: 1 if this call did, and then records
 * how it is scored (1: as its slab forms it, 2: on its own). */
static int ncc_claim(const ufm_metrics_ws *mw, size_t u, int how)
{
  int was;
#pragma omp atomic capture
  {
    was = mw->nclaim[u];
    mw->nclaim[u] = 1;
  }
  if (was) return 0;
  mw->nhow[u] = how;
  return 1;
}

/* The blocks in turn (no slabs). An orphaned worksharing loop. */
static void ncc_blocks(const ufm_model *m, const ufm_grad_ws *ws, ufm_metrics_ws *mw)
{
#pragma omp for schedule(dynamic, 1) nowait
  for (size_t blk = 0; blk < mw->nnblk; blk++) {
#ifdef _OPENMP
    ncc_block(m, ws, mw, blk, (size_t)omp_get_thread_num(), -1);
#else
    ncc_block(m, ws, mw, blk, 0, -1);
#endif
  }
}

/* With slabs, each block is a chunk of deviations, and the slab's thread
 * scores it as it forms it (deviations_ncc: H read once for both) unless
 * another thread has taken it: a thread with nothing else left takes the
 * blocks from the last one down (here, reading H itself), while the slabs
 * run upwards, so that threads finish together whichever had the LQ
 * factorisation. Which thread scores a block does not change its
 * count. */
static void ncc_steal(const ufm_model *m, const ufm_grad_ws *ws, ufm_metrics_ws *mw, size_t t)
{
  for (;;) {
    long u;
#pragma omp atomic capture
    u = --mw->nsteal;
    if (u < 0) break;
    if (ncc_claim(mw, (size_t)u, 2)) ncc_block(m, ws, mw, (size_t)u, t, -1);
  }
}

/* Rows a..a+na of D restricted to columns j0..j0+w: h_ki - mu_{k,y_i},
 * mu = M + mu_G 1^T; class by class (the columns are), one mean per run. */
UFM_CLONES static void deviations(const ufm_model *m, const ufm_metrics_ws *mw, size_t a, size_t na,
                       size_t j0, size_t w, double *out)
{
  const size_t C = m->C, N = m->N, c0 = (size_t)m->labels[j0];
  for (size_t i = 0; i < na; i++) {
    const double *h = m->H->data + (a + i) * N, *Mk = mw->M->data + (a + i) * C;
    const double g = mw->muG->data[a + i];
    double *o = out + i * w;
    for (size_t c = c0, lo = j0; lo < j0 + w; c++) {
      const size_t hi = m->offset[c + 1] < j0 + w ? m->offset[c + 1] : j0 + w;
      const double mu = Mk[c] + g;
#pragma omp simd
      for (size_t j = lo; j < hi; j++) o[j - j0] = h[j] - mu;
      lo = hi;
    }
  }
}

/* deviations() of rows a .. a + na, 8 at a time into d8 (8 w doubles),
 * packed from there into P for ufm_gram512 */
static void deviations_packed(const ufm_model *m, const ufm_metrics_ws *mw, size_t a, size_t na,
                              size_t j0, size_t w, double *d8, double *P)
{
  for (size_t k0 = 0; k0 < na; k0 += 8) {
    const size_t nr = na - k0 < 8 ? na - k0 : 8;
    deviations(m, mw, a + k0, nr, j0, w, d8);
    ufm_gram512_pack(d8, nr, w, w, P + k0 * w);
  }
}

/* X (na x nb) = D_a D_b^T over the columns j_lo..j_hi, in chunks of
 * dchunk columns in order (dsyrk on the diagonal: X's upper triangle;
 * with gram512, ufm_gram512 on the chunks packed into Da and Db through
 * d8: on the diagonal X's 8 x 8 blocks on and above it). */
static void dd_accumulate(const ufm_model *m, const ufm_metrics_ws *mw, size_t a, size_t na,
                          size_t b, size_t nb, size_t j_lo, size_t j_hi, double *X, double *Da,
                          double *Db, double *d8)
{
  const size_t ch = mw->dchunk;
  gsl_matrix_view Xv = gsl_matrix_view_array(X, na, nb);
  for (size_t j0 = j_lo; j0 < j_hi; j0 += ch) {
    const size_t w = j_hi - j0 < ch ? j_hi - j0 : ch;
    const double beta = j0 == j_lo ? 0.0 : 1.0;
    if (mw->gram512) {
      deviations_packed(m, mw, a, na, j0, w, d8, Da);
      if (a != b) deviations_packed(m, mw, b, nb, j0, w, d8, Db);
      ufm_gram512(Da, na, a == b ? Da : Db, nb, w, a == b, j0 == j_lo, X, nb);
      continue;
    }
    gsl_matrix_view Dav = gsl_matrix_view_array(Da, na, w);
    deviations(m, mw, a, na, j0, w, Da);
    if (a == b) {
      ufm_syrk_rows(Da, na, w, w, mw->syrk_bs, beta, X, nb);
    } else {
      gsl_matrix_view Dbv = gsl_matrix_view_array(Db, nb, w);
      deviations(m, mw, b, nb, j0, w, Db);
      gsl_blas_dgemm(CblasNoTrans, CblasTrans, 1.0, &Dav.matrix, &Dbv.matrix, beta, &Xv.matrix);
    }
  }
}

/* Tile (a, b) of D D^T in X (na x nb; on the diagonal the upper triangle,
 * mirrored here), weight wt (2 off the diagonal, for (b, a)), with buffers
 * Y and Mu (CBLK columns of na and nb rows) and acc (C), adds
 * - to NC1 = Tr(Sigma_W Sigma_B^+)/C = (1/N) Tr(B^T D D^T B)
 *   (Sigma_W = D D^T/N, Sigma_B^+ = C B B^T; B = U_r S_r^-1 for the SVD):
 *   sum_{i,j} (B_a)_ij (X B_b)_ij, each column j summed over i in order;
 * - to ||D D^T||_F^2: ||X||_F^2;
 * - to sum_c n_c mu_c^T D D^T mu_c: sum_c n_c sum_i mu_{a+i,c} (X Mu_b)_ic
 *   (section 7, seli_H);
 * the products with X CBLK columns at a time. */
static void dd_mirror(size_t a, size_t na, size_t b, size_t nb, double *X)
{
  if (a == b)
    for (size_t i = 0; i < na; i++)
      for (size_t j = 0; j < i; j++) X[i * nb + j] = X[j * nb + i];
}

/* dd_finish's NC1 sum (X mirrored) */
static double dd_finish_nc1(const ufm_metrics_ws *mw, size_t a, size_t na, size_t b, size_t nb,
                            const double *X, double *Y, double *acc)
{
  if (mw->dzero) return 0.0; /* X = 0, and B may not have been formed */
  const size_t ldu = mw->ldu, r = mw->r;
  const double *S = mw->S->data;
  gsl_matrix_const_view Xv = gsl_matrix_const_view_array(X, na, nb);
  double s1 = 0.0;
  for (size_t j = 0; j < r; j++) acc[j] = 0.0;
  for (size_t j0 = 0; j0 < r; j0 += CBLK) {
    const size_t cb = r - j0 < CBLK ? r - j0 : CBLK;
    gsl_matrix_const_view Ub =
        gsl_matrix_const_view_array_with_tda(mw->U + b * ldu + j0, nb, cb, ldu);
    gsl_matrix_view Yv = gsl_matrix_view_array(Y, na, cb);
    gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, 1.0, &Xv.matrix, &Ub.matrix, 0.0, &Yv.matrix);
    for (size_t i = 0; i < na; i++) {
      const double *u = mw->U + (a + i) * ldu + j0, *y = Y + i * cb;
      double *ac = acc + j0;
      for (size_t j = 0; j < cb; j++) ac[j] += u[j] * y[j];
    }
  }
  for (size_t j = 0; j < r; j++) s1 += mw->basis_qr ? acc[j] : acc[j] / (S[j] * S[j]);
  return s1;
}

/* dd_finish's ||X||_F^2 and seli_H sum (X mirrored) */
static void dd_finish_fro(const ufm_model *m, const ufm_metrics_ws *mw, size_t a, size_t na,
                          size_t b, size_t nb, const double *X, double *Y, double *Mu,
                          double *acc, double *fro, double *cross)
{
  const size_t C = m->C;
  const double *M = mw->M->data, *g = mw->muG->data;
  gsl_matrix_const_view Xv = gsl_matrix_const_view_array(X, na, nb);
  double s2 = 0.0, s3 = 0.0;
  for (size_t i = 0; i < na; i++) s2 += ufm_sumsq(X + i * nb, nb);
  /* Y = X Mu_b, Mu = M + mu_G 1^T the uncentred means */
  for (size_t c = 0; c < C; c++) acc[c] = 0.0;
  for (size_t c0 = 0; c0 < C; c0 += CBLK) {
    const size_t cb = C - c0 < CBLK ? C - c0 : CBLK;
    for (size_t j = 0; j < nb; j++) {
      const double *Mj = M + (b + j) * C + c0, gj = g[b + j];
      for (size_t c = 0; c < cb; c++) Mu[j * cb + c] = Mj[c] + gj;
    }
    gsl_matrix_view Muv = gsl_matrix_view_array(Mu, nb, cb), Yv = gsl_matrix_view_array(Y, na, cb);
    gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, 1.0, &Xv.matrix, &Muv.matrix, 0.0, &Yv.matrix);
    for (size_t i = 0; i < na; i++) {
      const double *Mi = M + (a + i) * C + c0, gi = g[a + i], *y = Y + i * cb;
      double *ac = acc + c0;
      for (size_t c = 0; c < cb; c++) ac[c] += (Mi[c] + gi) * y[c];
    }
  }
  for (size_t c = 0; c < C; c++) s3 += (double)m->counts[c] * acc[c];
  *fro = s2;
  *cross = s3;
}

static void dd_finish(const ufm_model *m, const ufm_metrics_ws *mw, size_t a, size_t na, size_t b,
                      size_t nb, double wt, double *X, double *Y, double *Mu, double *acc,
                      double *nc1, double *fro, double *cross)
{
  dd_mirror(a, na, b, nb, X);
  double s1 = dd_finish_nc1(mw, a, na, b, nb, X, Y, acc), s2 = 0.0, s3 = 0.0;
  if (mw->seli_H) dd_finish_fro(m, mw, a, na, b, nb, X, Y, Mu, acc, &s2, &s3);
  *nc1 = wt * s1;
  *fro = wt * s2;
  *cross = wt * s3;
}

/* Work left in slab q from block u on (units of block columns formed and
 * summed): its blocks, and phi more for those still to be scored. */
static double slab_left(const ufm_metrics_ws *mw, size_t q, size_t u)
{
  double left = 0.0;
  for (size_t v = u; v < mw->ufirst[q + 1]; v++) {
    int taken;
#pragma omp atomic read
    taken = mw->nclaim[v];
    left += (double)(mw->nstart[v + 1] - mw->nstart[v]) * (taken ? 1.0 : 1.0 + mw->phi);
  }
  return left;
}

/* Before block u of slab q: while another slab under way has more work
 * left than this one would after taking that slab's last block not yet
 * taken, score that block here (so that a slab started late, behind the
 * LQ factorisation, is helped while both run). Balance only: which thread
 * scores a block does not change its count. */
static void slab_balance(const ufm_model *m, const ufm_grad_ws *ws, const ufm_metrics_ws *mw,
                         size_t q, size_t u, size_t t)
{
  double spent = 0.0; /* on the blocks taken so far in this call */
  for (;;) {
    const double mine = slab_left(mw, q, u) + spent;
    size_t take = SIZE_MAX;
    for (size_t q2 = 0; q2 < mw->nslab; q2++) {
      size_t nx;
      if (q2 == q) continue;
#pragma omp atomic read
      nx = mw->unext[q2];
      if (nx == SIZE_MAX) continue;
      size_t v = mw->ufirst[q2 + 1];
      for (; v > nx + 1; v--) {
        int taken;
#pragma omp atomic read
        taken = mw->nclaim[v - 1];
        if (!taken) break;
      }
      if (v <= nx + 1) continue;
      const double w = (double)(mw->nstart[v] - mw->nstart[v - 1]);
      if (slab_left(mw, q2, nx) - mw->phi * w > mine + mw->phis * w) {
        take = v - 1;
        break;
      }
    }
    if (take == SIZE_MAX) return;
    if (ncc_claim(mw, take, 2)) {
      ncc_block(m, ws, mw, take, t, -1);
      spent += mw->phis * (double)(mw->nstart[take + 1] - mw->nstart[take]);
    }
  }
}

/* Slab q of the single tile of D D^T (nslab > 1): its columns' partial sum
 * into its own p x p buffer, chunk by chunk as dd_accumulate sums them
 * (the same chunks: the blocks of A), with thread t's chunk of
 * deviations; each chunk also scored for the nearest-centre rule as it is
 * formed, unless another thread has taken it (ncc_steal). During A (it
 * needs only M and mu_G). */
static void dd_slab(const ufm_model *m, const ufm_grad_ws *ws, const ufm_metrics_ws *mw, size_t q,
                    size_t t)
{
  const size_t p = m->p, N = m->N, ns = mw->nslab, lo = q * N / ns;
  double *X = mw->slabbuf + q * p * p;
  double *Da = mw->slabbuf + ns * p * p + t * (mw->dpack + (mw->gram512 ? 8 * mw->dchunk : 0));
  double *d8 = mw->gram512 ? Da + mw->dpack : NULL; /* else Da is the chunk itself */
  for (size_t u = mw->ufirst[q]; u < mw->ufirst[q + 1]; u++) {
    const size_t j0 = mw->nstart[u], w = mw->nstart[u + 1] - j0;
#pragma omp atomic write
    mw->unext[q] = u;
    slab_balance(m, ws, mw, q, u, t);
    if (ncc_claim(mw, u, 1)) {
      const ncc_bufs b = ncc_buf(mw, t);
      const int plan = ncc_plan(m, mw, j0, w, b.Ea);
      deviations_ncc(m, mw, j0, w, d8 ? d8 : Da, b.Xf, b.xn, plan ? b.dn : NULL, d8 ? Da : NULL);
      ncc_block(m, ws, mw, u, t, plan);
    } else if (d8) {
      deviations_packed(m, mw, 0, p, j0, w, d8, Da);
    } else {
      deviations(m, mw, 0, p, j0, w, Da);
    }
    if (d8)
      ufm_gram512(Da, p, Da, p, w, 1, j0 == lo, X, p);
    else
      ufm_syrk_rows(Da, p, w, w, mw->syrk_bs, j0 == lo ? 0.0 : 1.0, X, p);
  }
#pragma omp atomic write
  mw->unext[q] = mw->ufirst[q + 1];
}

/* With slabs (p <= 512) D D^T is finished by inner products with two p x p
 * matrices formed during A, each by one DSYRK (p^2 C / 2 multiply-adds) on
 * a thread that has the factors at hand:
 *   NC1 = <D D^T, P1>/N,  P1 = B B^T = (M M^T)^+ (B from the LQ path, or
 *         U_r S_r^-1), on the thread that formed B, after it;
 *   sum_c n_c mu_c^T D D^T mu_c = <D D^T, P2>, P2 = sum_c n_c mu_c mu_c^T
 *         (seli_H), on the thread of the Gram metrics;
 * so that after A only one pass over the slabs' upper triangles is left
 * (slabs_finish), where the products D D^T B and D D^T Mu took 1.2 ms each
 * on one thread at C = 100, p = 512 (session 11). The upper triangles only;
 * P1 is not formed when NC1 is 0 without it (no deviation, or rank 0). */
static void slab_pinv_B(ufm_metrics_ws *mw)
{
  const size_t p = mw->p, r = mw->r;
  if (mw->dzero || r == 0) return;
  const double *B = mw->U;
  size_t ld = mw->ldu;
  if (!mw->basis_qr) { /* U_r S_r^-1 */
    double *Bs = mw->pinv + 2 * p * p;
    const double *S = mw->S->data;
    for (size_t k = 0; k < p; k++)
      for (size_t j = 0; j < r; j++) Bs[k * r + j] = mw->U[k * ld + j] / S[j];
    B = Bs;
    ld = r;
  }
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)p, (int)r, 1.0, B, (int)ld, 0.0,
              mw->pinv, (int)p);
}

static void slab_pinv_mu(const ufm_model *m, ufm_metrics_ws *mw)
{
  const size_t p = m->p, C = m->C;
  double *Mu = mw->pinv + 2 * p * p + p * C, *rn = Mu + p * C;
  for (size_t c = 0; c < C; c++) rn[c] = sqrt((double)m->counts[c]);
  for (size_t k = 0; k < p; k++) {
    const double *Mk = mw->M->data + k * C, g = mw->muG->data[k];
    for (size_t c = 0; c < C; c++) Mu[k * C + c] = (Mk[c] + g) * rn[c];
  }
  cblas_dsyrk(CblasRowMajor, CblasUpper, CblasNoTrans, (int)p, (int)C, 1.0, Mu, (int)C, 0.0,
              mw->pinv + p * p, (int)p);
}

/* The slabs' sum X = D D^T, element by element over its upper triangle
 * (weight 2 off the diagonal), into <X, P1>, ||X||_F^2 and <X, P2>; rows in
 * blocks of PROWS in parallel, a slot each, added in order. */
#define PROWS 32
static void slabs_finish(const ufm_model *m, ufm_metrics_ws *mw, double *nc1, double *fro,
                         double *cross)
{
  const size_t p = m->p, nb = (p + PROWS - 1) / PROWS;
  const double *X0 = mw->slabbuf, *X1 = mw->slabbuf + p * p; /* the two slabs */
  const double *P1 = mw->pinv, *P2 = mw->pinv + p * p;
  const int with_nc1 = !mw->dzero && mw->r > 0, with_seli = mw->seli_H;
  double res[3 * (512 / PROWS)]; /* p <= 512 with slabs */
#pragma omp parallel for schedule(dynamic, 1) num_threads(team(mw)) if (p * p >= UFM_PAR_MIN)
  for (size_t b = 0; b < nb; b++) {
    const size_t i1 = (b + 1) * PROWS < p ? (b + 1) * PROWS : p;
    double s1 = 0.0, s2 = 0.0, s3 = 0.0;
    for (size_t i = b * PROWS; i < i1; i++) {
      const double *x0 = X0 + i * p, *x1 = X1 + i * p, *p1 = P1 + i * p, *p2 = P2 + i * p;
      double r1 = 0.0, r2 = 0.0, r3 = 0.0;
      const double xd = x0[i] + x1[i];
      for (size_t j = i + 1; j < p; j++) {
        const double x = x0[j] + x1[j];
        r2 += x * x;
        if (with_nc1) r1 += x * p1[j];
        if (with_seli) r3 += x * p2[j];
      }
      s2 += xd * xd + 2.0 * r2;
      if (with_nc1) s1 += xd * p1[i] + 2.0 * r1;
      if (with_seli) s3 += xd * p2[i] + 2.0 * r3;
    }
    res[3 * b] = s1;
    res[3 * b + 1] = s2;
    res[3 * b + 2] = s3;
  }
  *nc1 = *fro = *cross = 0.0;
  for (size_t b = 0; b < nb; b++) {
    *nc1 += res[3 * b];
    *fro += res[3 * b + 1];
    *cross += res[3 * b + 2];
  }
}

/* The tiles (a <= b) of D D^T (p <= N), in parallel, each on one thread
 * with its own buffers, into tilenc1, tilefro and tilecross (dd_finish).
 * A single tile (p <= 512) was summed in nslab column slabs during A
 * (dd_slab); slabs_finish adds them and takes its three sums. */
static void dd_tiles(const ufm_model *m, ufm_metrics_ws *mw)
{
  const size_t C = m->C, p = m->p, N = m->N, ts = mw->dtile;
  const size_t nt = ntiles_of(p, ts), npairs = nt * (nt + 1) / 2, ns = mw->nslab;
  if (ns > 1) {
    slabs_finish(m, mw, &mw->tilenc1[0], &mw->tilefro[0], &mw->tilecross[0]);
    return;
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(team(mw)) \
    if (npairs > 1 && p * p * N >= 64 * UFM_PAR_MIN)
  for (size_t q = 0; q < npairs; q++) {
#ifdef _OPENMP
    const size_t t = (size_t)omp_get_thread_num();
#else
    const size_t t = 0;
#endif
    double *X = mw->scratch + p * C + t * mw->bstride, *Da = X + ts * ts, *Db = Da + mw->dpack,
           *Y = Db + mw->dpack, *Mu = Y + ts * CBLK, *acc = Mu + ts * CBLK, *d8 = acc + C;
    size_t a, b;
    tile_of_ts(q, p, ts, &a, &b);
    const size_t na = p - a < ts ? p - a : ts, nb = p - b < ts ? p - b : ts;
    dd_accumulate(m, mw, a, na, b, nb, 0, N, X, Da, Db, d8);
    dd_finish(m, mw, a, na, b, nb, a == b ? 1.0 : 2.0, X, Y, Mu, acc, &mw->tilenc1[q],
              &mw->tilefro[q], &mw->tilecross[q]);
  }
}

/* NC1 without D D^T: for p > N, and without seli_H for p > 2 (C - 1), where
 * U_r^T D (r p N multiply-adds) is the cheaper product. With U_r and the
 * weights s_k^-2 of the SVD, or the LQ path's factor B (B B^T = (M M^T)^+)
 * and weight 1,
 *   NC1 = (1/N) sum_k w_k ||(U_r^T D)_k||^2,
 * D formed block by block (BLOCK columns, in panels of DPANEL rows: no
 * p x N buffer). Forming D keeps NC1 exact near collapse: h - mu_c is then
 * exact (Sterbenz) and the class means' rounding adds to NC1 only at second
 * order, where U_r^T H - U_r^T mu_Y would round at first order (NC1 some
 * 5e-17 at 1e-7 from collapse came out 1.6e-9 off that way, session 11;
 * tests/test_metrics). Blocks in parallel, one slot each, added in order. */
static double nc1_blocks(const ufm_model *m, ufm_metrics_ws *mw)
{
  const size_t C = m->C, p = m->p, N = m->N, ldu = mw->ldu, r = mw->r, k = mw->k;
  const size_t nb = N < BLOCK ? N : BLOCK;
  const double *S = mw->S->data;
  const int qr = mw->basis_qr; /* U is the LQ path's B: no singular values */
#pragma omp parallel for schedule(dynamic, 1) num_threads(team(mw)) \
    if (mw->nblk > 1 && r * p * N >= UFM_PAR_MIN)
  for (size_t blk = 0; blk < mw->nblk; blk++) {
#ifdef _OPENMP
    const size_t t = (size_t)omp_get_thread_num();
#else
    const size_t t = 0;
#endif
    const size_t i0 = blk * nb, w = N - i0 < nb ? N - i0 : nb;
    double *Q = mw->scratch + p * C + t * mw->bstride, *Dp = Q + k * nb;
    gsl_matrix_view Qv = gsl_matrix_view_array(Q, r, w);
    for (size_t k0 = 0; k0 < p; k0 += DPANEL) {
      const size_t kn = p - k0 < DPANEL ? p - k0 : DPANEL;
      gsl_matrix_const_view Uk =
          gsl_matrix_const_view_array_with_tda(mw->U + k0 * ldu, kn, r, ldu);
      gsl_matrix_const_view Dv = gsl_matrix_const_view_array(Dp, kn, w);
      deviations(m, mw, k0, kn, i0, w, Dp);
      gsl_blas_dgemm(CblasTrans, CblasNoTrans, 1.0, &Uk.matrix, &Dv.matrix, k0 ? 1.0 : 0.0,
                     &Qv.matrix);
    }
    double nc1 = 0.0;
    for (size_t j = 0; j < r; j++) {
      const double s = ufm_sumsq(Q + j * w, w);
      nc1 += qr ? s : s / (S[j] * S[j]);
    }
    mw->blkres[blk] = nc1;
  }
  double nc1 = 0.0;
  for (size_t blk = 0; blk < mw->nblk; blk++) nc1 += mw->blkres[blk];
  return nc1 / (double)N;
}

/* -------------------- 6. Gram-matrix metrics (norms, angles, ETF, NC3) */

/* The passes over a C x C Gram below (C^2/2 or C^2 terms: at C = 5000 they
 * took 0.4 s on one thread, twice a step, when each sum was one chain of
 * dependent additions) keep NLANE partial sums per row: lane l takes the
 * terms j = j0 + l, j0 + l + NLANE, ..., and lanes_sum adds them in a
 * fixed order, so that the bits do not depend on the vector width. */
#define NLANE 8

static inline double lanes_sum(const double *s)
{
  return ((s[0] + s[1]) + (s[2] + s[3])) + ((s[4] + s[5]) + (s[6] + s[7]));
}

/* Sum of the squares of a rows x cols array (row stride ld), row by row
 * in lanes. */
static double sumsq_rows(const double *a, size_t rows, size_t cols, size_t ld)
{
  double f = 0.0;
  for (size_t i = 0; i < rows; i++) {
    const double *r = a + i * ld;
    double s[NLANE] = {0};
    size_t j = 0;
    for (; j + NLANE <= cols; j += NLANE)
      for (size_t l = 0; l < NLANE; l++) s[l] += r[j + l] * r[j + l];
    for (size_t l = 0; j < cols; j++, l++) s[l] += r[j] * r[j];
    f += lanes_sum(s);
  }
  return f;
}

static void mean_std(const double *x, size_t n, double *mean, double *std)
{
  double s = 0.0, v = 0.0;
  for (size_t j = 0; j < n; j++) s += x[j];
  double a = s / (double)n;
  for (size_t j = 0; j < n; j++) v += (x[j] - a) * (x[j] - a);
  *mean = a;
  *std = sqrt(v / (double)n);
}

/* What the passes of gram_body also sum, from the same entries: for the
 * Gram of M, CDNV and seli_H's sum_{c,d} n_c n_d (mu_c.mu_d)^2 (which needs
 * nothing of B: taken during A); for the Gram of W with unequal counts,
 * seli_W (with equal counts U L U^T is proportional to I - 11^T/C, so
 * seli_W is etf_W). */
typedef struct {
  const double *s2, *gd; /* CDNV: s_c^2 and G's diagonal                           */
  const double *mg, *nd; /* seli_H: M_c.mu_G and n_c                               */
  double gg;             /* ||mu_G||^2                                             */
  const double *R;       /* seli_W: U L U^T (C x C) and its Frobenius norm fb      */
  double fb;
  double cdnv, mm2, seli; /* the results                                           */
  double fro;             /* and the Gram's Frobenius norm                         */
} gram_extra;

/* From a C x C Gram matrix G of vectors v_c (exactly symmetric, as gram()
 * leaves it): ||v_c|| into nrm (or already there, fill = 0); Std/Avg of
 * ||v_c||; Std over c != c' of the cosines; Avg of |cos + 1/(C-1)|; || G/||G||_F
 * - (I - 11^T/C)/sqrt(C-1) ||_F; and with the flags what gram_extra lists
 * (cd: CDNV, mm: seli_H's sum, sr: seli_W). The cosines are not stored:
 * their mean, then their spread about it, in two passes over the upper
 * triangle (each pair counted twice, the symmetric sums as the diagonal plus
 * twice the rest); the only passes over G at C = 5000, where they are most
 * of an evaluation (200 MB each Gram). */
static inline __attribute__((always_inline)) void gram_body(const gsl_matrix *G, double *nrm,
                                                             int fill, double *equinorm,
                                                             double *equiangle, double *maxangle,
                                                             double *etf, gram_extra *x,
                                                             const int cd, const int mm,
                                                             const int sr)
{
  const size_t C = G->size1, ld = G->tda;
  const double *g = G->data;
  if (fill)
    for (size_t c = 0; c < C; c++) nrm[c] = sqrt(fmax(g[c * ld + c], 0.0));
  double a, s;
  mean_std(nrm, C, &a, &s);
  *equinorm = s / a;

  const double n = (double)C * (double)(C - 1), k1 = 1.0 / (double)(C - 1);
  const double *s2 = cd ? x->s2 : NULL, *gd = cd ? x->gd : NULL;
  const double *mg = mm ? x->mg : NULL, *nd = mm ? x->nd : NULL, gg = mm ? x->gg : 0.0;
  double dev = 0.0, fdiag = 0.0, foff = 0.0, csum = 0.0, cdn = 0.0, mm2 = 0.0;
  for (size_t c = 0; c < C; c++) {
    const double *gc = g + c * ld, nc = nrm[c], gcc = gc[c];
    const double s2c = cd ? s2[c] : 0.0, mc = mm ? mg[c] + gg : 0.0;
    double rs[NLANE] = {0}, rd[NLANE] = {0}, rf[NLANE] = {0}, rc[NLANE] = {0}, rm[NLANE] = {0};
    size_t d = c + 1;
    fdiag += gcc * gcc;
#define GRAM_PASS1(j, l)                                                                           \
  do {                                                                                             \
    const double x_ = gc[j], cs = x_ / (nc * nrm[j]);                                              \
    rf[l] += x_ * x_;                                                                              \
    rs[l] += cs;                                                                                   \
    rd[l] += fabs(cs + k1);                                                                        \
    if (cd) rc[l] += (s2c + s2[j]) / (2.0 * fmax(gcc + gd[j] - 2.0 * x_, 0.0));                   \
    if (mm) {                                                                                      \
      const double v = x_ + mc + mg[j];                                                            \
      rm[l] += nd[j] * v * v;                                                                      \
    }                                                                                              \
  } while (0)
    for (; d + NLANE <= C; d += NLANE)
      for (size_t l = 0; l < NLANE; l++) GRAM_PASS1(d + l, l);
    for (size_t l = 0; d < C; d++, l++) GRAM_PASS1(d, l);
#undef GRAM_PASS1
    foff += lanes_sum(rf);
    csum += lanes_sum(rs);
    dev += lanes_sum(rd);
    if (cd) cdn += lanes_sum(rc);
    if (mm) {
      const double v = gcc + mc + mg[c];
      mm2 += nd[c] * (nd[c] * v * v + 2.0 * lanes_sum(rm));
    }
  }
  const double cmean = 2.0 * csum / n;
  *maxangle = 2.0 * dev / n;
  if (cd) x->cdnv = cdn / (0.5 * n);
  if (mm) x->mm2 = mm2;

  /* the spread of the cosines about their mean and the distances to the
   * ETF's Gram (and to the SELI reference), in one more pass */
  const double fro = sqrt(fdiag + 2.0 * foff), inv = 1.0 / sqrt((double)(C - 1));
  const double rdiag = (1.0 - 1.0 / (double)C) * inv, roff = -1.0 / (double)C * inv;
  const double *R = sr ? x->R : NULL, fb = sr ? x->fb : 1.0;
  double v = 0.0, ed = 0.0, eo = 0.0, zd = 0.0, zo = 0.0;
  for (size_t c = 0; c < C; c++) {
    const double *gc = g + c * ld, *rc = sr ? R + c * C : NULL, nc = nrm[c], e = gc[c] / fro - rdiag;
    double rv[NLANE] = {0}, ro[NLANE] = {0}, rz[NLANE] = {0};
    size_t d = c + 1;
    ed += e * e;
    if (sr) {
      const double z = gc[c] / fro - rc[c] / fb;
      zd += z * z;
    }
#define GRAM_PASS2(j, l)                                                                           \
  do {                                                                                             \
    const double cs = gc[j] / (nc * nrm[j]) - cmean, y = gc[j] / fro - roff;                       \
    rv[l] += cs * cs;                                                                              \
    ro[l] += y * y;                                                                                \
    if (sr) {                                                                                      \
      const double z = gc[j] / fro - rc[j] / fb;                                                   \
      rz[l] += z * z;                                                                              \
    }                                                                                              \
  } while (0)
    for (; d + NLANE <= C; d += NLANE)
      for (size_t l = 0; l < NLANE; l++) GRAM_PASS2(d + l, l);
    for (size_t l = 0; d < C; d++, l++) GRAM_PASS2(d, l);
#undef GRAM_PASS2
    v += lanes_sum(rv);
    eo += lanes_sum(ro);
    if (sr) zo += lanes_sum(rz);
  }
  *equiangle = sqrt(2.0 * v / n);
  *etf = sqrt(ed + 2.0 * eo);
  if (sr) x->seli = sqrt(zd + 2.0 * zo);
  x->fro = fro;
}

/* gram_body for the Gram of M: with CDNV, and seli_H's sum if mm */
UFM_CLONES static void gram_metrics_M(const gsl_matrix *G, double *nrm, double *out,
                                      gram_extra *x, int mm)
{
  double *o[4] = {&out[UFM_M_EQUINORM_M], &out[UFM_M_EQUIANGLE_M], &out[UFM_M_MAXANGLE_M],
                  &out[UFM_M_ETF_M]};
  if (mm) gram_body(G, nrm, 0, o[0], o[1], o[2], o[3], x, 1, 1, 0);
  else gram_body(G, nrm, 0, o[0], o[1], o[2], o[3], x, 1, 0, 0);
  out[UFM_M_CDNV] = x->cdnv;
}

/* gram_body for the Gram of W: its norms into nrm, and seli_W (etf_W for
 * equal counts, x->R NULL) */
UFM_CLONES static void gram_metrics_W(const gsl_matrix *G, double *nrm, double *out, gram_extra *x)
{
  double *o[4] = {&out[UFM_M_EQUINORM_W], &out[UFM_M_EQUIANGLE_W], &out[UFM_M_MAXANGLE_W],
                  &out[UFM_M_ETF_W]};
  if (x->R) gram_body(G, nrm, 1, o[0], o[1], o[2], o[3], x, 0, 0, 1);
  else gram_body(G, nrm, 1, o[0], o[1], o[2], o[3], x, 0, 0, 0);
  out[UFM_M_SELI_W] = x->R ? x->seli : out[UFM_M_ETF_W];
}

/* || W^T/||W||_F - M/||M||_F ||_F^2, in blocks of 32 of M's rows (W's
 * columns) so that both are read from cache. */
static double nc3(const ufm_model *m, const ufm_metrics_ws *mw, double normW)
{
  const size_t C = m->C, p = m->p;
  double trM = 0.0;
  for (size_t c = 0; c < C; c++) trM += gsl_matrix_get(mw->G, c, c);
  const double normM = sqrt(trM), *W = m->W->data, *M = mw->M->data;
  const size_t ldw = m->W->tda;
  double s = 0.0;
  for (size_t k0 = 0; k0 < p; k0 += 32) {
    const size_t k1 = p - k0 < 32 ? p : k0 + 32;
    for (size_t c = 0; c < C; c++) {
      const double *wc = W + c * ldw;
      double r = 0.0;
      for (size_t k = k0; k < k1; k++) {
        const double d = wc[k] / normW - M[k * C + c] / normM;
        r += d * d;
      }
      s += r;
    }
  }
  return s;
}

/* ----------------------------------------------- 7. imbalance: minority and SELI */

/* Minority classes: those with the smaller count when exactly two counts
 * occur (SPEC section 2); for unequal counts the SELI reference of the
 * counts (two C x C matrices), once per run. Equal counts need none: their
 * SELI geometry is the simplex ETF, U L U^T = sqrt(n) P and
 * U L^-1 U^T = P/sqrt(n) with P = I - 11^T/C, used in closed form. */
static void seli_setup(const ufm_model *m, ufm_metrics_ws *mw)
{
  size_t lo = m->counts[0], hi = m->counts[0];
  int two = 1;
  for (size_t c = 0; c < m->C; c++) {
    if (m->counts[c] < lo) lo = m->counts[c];
    if (m->counts[c] > hi) hi = m->counts[c];
  }
  for (size_t c = 0; c < m->C; c++)
    if (m->counts[c] != lo && m->counts[c] != hi) two = 0;
  mw->nminority = 0;
  for (size_t c = 0; c < m->C; c++) {
    if (two && lo != hi && m->counts[c] == lo) mw->minority[mw->nminority++] = c;
    mw->ncount[c] = (double)m->counts[c];
  }
  mw->balanced = lo == hi;
  if (!mw->balanced) {
    mw->seliW = gsl_matrix_alloc(m->C, m->C);
    mw->seliK = gsl_matrix_alloc(m->C, m->C);
    if (!mw->seliW || !mw->seliK) {
      fprintf(stderr, "ufm: out of memory\n");
      abort();
    }
    ufm_seli(m->C, m->counts, NULL, mw->seliW, mw->seliK, NULL);
    /* its norm row by row in lanes: one chain over the C^2 entries lost
     * ~1e-12 of it at C = 3000 */
    mw->seli_fb = sqrt(sumsq_rows(mw->seliW->data, m->C, m->C, m->C));
  }
  mw->seli_ready = 1;
}

/* Avg over minority pairs c != c' of the cosine from Gram G; NaN unless there
 * are two minority classes or more. Past the threshold under weight decay
 * the minority vectors can all be zero (dead classes): a pair of vectors both
 * below 1e-12 of the largest norm is identical, cosine 1 (their round-off
 * directions would give noise); one zero and one not has no cosine (NaN). */
static double minority_cos(const ufm_metrics_ws *mw, const gsl_matrix *G)
{
  if (mw->nminority < 2) return NAN;
  double gmax = 0.0;
  for (size_t c = 0; c < mw->C; c++) gmax = fmax(gmax, gsl_matrix_get(G, c, c));
  const double tiny = 1e-24 * gmax, *g = G->data;
  const size_t ld = G->tda, nm = mw->nminority, *mi = mw->minority;
  double s = 0.0;
  for (size_t a = 0; a < nm; a++)
    for (size_t b = 0; b < nm; b++)
      if (a != b) {
        const size_t c = mi[a], d = mi[b];
        const double gc = g[c * ld + c], gd = g[d * ld + d];
        if (gc <= tiny && gd <= tiny) s += 1.0;
        else if (gc <= tiny || gd <= tiny) s += NAN;
        else s += g[c * ld + d] / sqrt(gc * gd);
      }
  return s / ((double)nm * (double)(nm - 1));
}

/* Avg over minority pairs of ||w_c - w_c'||, divided by Avg_c ||w_c|| over
 * all classes: 0 exactly at minority collapse (THEORY.md section 3), however
 * small the minority classifiers are. From the Gram, so accurate to about
 * 1e-8 relative. */
static double minority_dist(const ufm_metrics_ws *mw, const gsl_matrix *G)
{
  if (mw->nminority < 2) return NAN;
  const double *g = G->data;
  const size_t ld = G->tda, nm = mw->nminority, *mi = mw->minority;
  double s = 0.0, avg = 0.0;
  for (size_t c = 0; c < mw->C; c++) avg += sqrt(fmax(g[c * ld + c], 0.0)) / (double)mw->C;
  for (size_t a = 0; a < nm; a++)
    for (size_t b = 0; b < nm; b++)
      if (a != b) {
        const size_t c = mi[a], d = mi[b];
        const double d2 = g[c * ld + c] + g[d * ld + d] - 2 * g[c * ld + d];
        s += sqrt(fmax(d2, 0.0));
      }
  return s / ((double)nm * (double)(nm - 1)) / avg;
}

/* <H^T H, V L V^T> for seli_H, without an N x N matrix: V L V^T =
 * Zhat^T K Zhat (K = U L^-1 U^T), so it is Tr(K T^T T) with T = Zhat H^T
 * (C x p, rows t_c = n_c mu_c - (N/C) mu_G). Equal counts: K = P/sqrt(n),
 * and T^T 1 = 0, so it is (||T||_F^2 - ||T^T 1||^2/C)/sqrt(n), O(pC).
 * Unequal: T (p x C) and T^T T (C x C) in tmp (p C + C^2 doubles). */
static double seli_H_inner(const ufm_model *m, const ufm_metrics_ws *mw, const double *mu,
                           double *tmp)
{
  const size_t C = m->C, p = m->p;
  const double N = (double)m->N, Cd = (double)C;
  if (mw->balanced) {
    double t2 = 0.0, o2 = 0.0;
    for (size_t k = 0; k < p; k++) {
      double g = mw->muG->data[k], rs = 0.0;
      for (size_t c = 0; c < C; c++) {
        double t = (double)m->counts[c] * mu[k * C + c] - N / Cd * g;
        t2 += t * t;
        rs += t;
      }
      o2 += rs * rs;
    }
    return (t2 - o2 / Cd) / sqrt((double)m->counts[0]);
  }
  gsl_matrix_view T = gsl_matrix_view_array(tmp, p, C), TT = gsl_matrix_view_array(tmp + p * C, C, C);
  for (size_t k = 0; k < p; k++)
    for (size_t c = 0; c < C; c++)
      tmp[k * C + c] = (double)m->counts[c] * mu[k * C + c] - N / Cd * mw->muG->data[k];
  gram(CblasTrans, &T.matrix, &TT.matrix, mw->gram512);
  double inner = 0.0;
  for (size_t c = 0; c < C; c++)
    for (size_t d = 0; d < C; d++) inner += gsl_matrix_get(mw->seliK, c, d) * gsl_matrix_get(&TT.matrix, d, c);
  return inner;
}

/* seli_H for p <= N, without the cancellation of sqrt(2 - 2 cos) near 0:
 * with H = D + Mu Y (Y the C x N one-hot labels, D Y^T = 0), a = ||H^T H||_F,
 * b = ||V L V^T||_F = sqrt(N (C-1)/C) and V L V^T = Y^T K Y (K = P K P:
 * Zhat = P Y), the difference H^T H/a - Y^T K Y/b splits into parts whose
 * cross products vanish:
 *   seli_H^2 = (||D D^T||_F^2 + 2 sum_c n_c mu_c^T D D^T mu_c)/a^2
 *              + sum_{c,d} n_c n_d (mu_c.mu_d/a - K_cd/b)^2,
 *   a^2 = ||D D^T||_F^2 + 2 sum_c n_c mu_c^T D D^T mu_c
 *         + sum_{c,d} n_c n_d (mu_c.mu_d)^2,
 * sums of squares throughout (the first two from the tiles of D D^T). G is
 * M^T M; mu_c.mu_d = G_cd + M_c.mu_G + M_d.mu_G + ||mu_G||^2. */
static double mug_norm2(const ufm_metrics_ws *mw, size_t p) /* ||mu_G||^2 */
{
  double gg = 0.0;
  for (size_t k = 0; k < p; k++) gg += mw->muG->data[k] * mw->muG->data[k];
  return gg;
}

/* Row c of seli_H_dd's second sum times a^2: n_c sum_d n_d (v_cd - K_cd a/b)^2
 * (= a^2 n_c sum_d n_d (v_cd/a - K_cd/b)^2; no division in the loop: at
 * C = 5000 the two divisions an entry made this pass 33 ms of an
 * evaluation). ka = a/b; the balanced K's entries (kdia, koff) come in
 * times ka. */
UFM_CLONES static double seli_H_row(const gsl_matrix *G, const double *mg, const double *nd,
                                    const double *K, size_t c, size_t C, double gg, double ka,
                                    double kdia, double koff)
{
  const double *gc = G->data + c * G->tda, *kc = K ? K + c * C : NULL, mc = mg[c] + gg;
  double r[NLANE] = {0};
  size_t d = 0;
  if (kc) {
    for (; d + NLANE <= C; d += NLANE)
      for (size_t l = 0; l < NLANE; l++) {
        const double x = (gc[d + l] + mc + mg[d + l]) - kc[d + l] * ka;
        r[l] += nd[d + l] * (x * x);
      }
  } else {
    for (; d + NLANE <= C; d += NLANE)
      for (size_t l = 0; l < NLANE; l++) {
        const double x = (gc[d + l] + mc + mg[d + l]) - (d + l == c ? kdia : koff);
        r[l] += nd[d + l] * (x * x);
      }
  }
  for (size_t l = 0; d < C; d++, l++) {
    const double x = (gc[d] + mc + mg[d]) - (kc ? kc[d] * ka : d == c ? kdia : koff);
    r[l] += nd[d] * (x * x);
  }
  return nd[c] * lanes_sum(r);
}

/* The rest, after B: the rows c of the second sum in parallel (a slot
 * each, in mw->ug), added in order. */
static double seli_H_dd(const ufm_model *m, ufm_metrics_ws *mw, const gsl_matrix *G, double dd2,
                        double cross, double mm2)
{
  const size_t C = m->C;
  const double N = (double)m->N, Cd = (double)C;
  const double *mg = mw->mg, *K = mw->balanced ? NULL : mw->seliK->data, gg = mug_norm2(mw, m->p);
  double *row = mw->ug, x2 = 0.0;
  const double a2 = dd2 + 2.0 * cross + mm2, a = sqrt(a2), b = sqrt(N * (Cd - 1.0) / Cd);
  const double l = sqrt((double)m->counts[0]), ka = a / b;
  const double koff = -1.0 / Cd / l * ka, kdia = (1.0 - 1.0 / Cd) / l * ka;
#pragma omp parallel for schedule(static) num_threads(team(mw)) if (C * C >= UFM_PAR_MIN)
  for (size_t c = 0; c < C; c++) row[c] = seli_H_row(G, mg, mw->ncount, K, c, C, gg, ka, kdia, koff);
  for (size_t c = 0; c < C; c++) x2 += row[c];
  return sqrt((dd2 + 2.0 * cross + x2) / a2);
}

/* seli_Z from the per-sample ||z_i||^2 and z_{i,y_i} - mean z_i of the loss
 * pass: <Z, Zhat> = sum_i (z_{i,y_i} - mean_c z_ic), ||Zhat||_F^2 = N (C-1)/C. */
static double seli_Z(const ufm_model *m, const ufm_grad_ws *ws)
{
  double z2 = 0.0, inner = 0.0;
  for (size_t i = 0; i < m->N; i++) {
    z2 += ws->zstat[2 * i];
    inner += ws->zstat[2 * i + 1];
  }
  double zh2 = (double)m->N * (double)(m->C - 1) / (double)m->C;
  return sqrt(fmax(0.0, 2.0 - 2.0 * inner / sqrt(z2 * zh2)));
}

void ufm_metrics_class_norms(const ufm_metrics_ws *mw, double *wnorm, double *mnorm)
{
  for (size_t c = 0; c < mw->C; c++) {
    if (wnorm) wnorm[c] = mw->wnorm[c];
    if (mnorm) mnorm[c] = mw->mnorm[c];
  }
}

static void scale_by(gsl_matrix *A, double fro)
{
  if (fro > 0) gsl_matrix_scale(A, 1.0 / fro);
}

/* The reference of M^T M for unequal counts, (I - 1u^T) K (I - u1^T) = K -
 * (Ku)1^T - 1(Ku)^T + (u^T K u) 11^T (u = n/N): Ku into ku (C), u^T K u
 * returned. */
static double mmref_setup(const ufm_metrics_ws *mw, const ufm_model *m, double *ku)
{
  const size_t C = m->C;
  const double N = (double)m->N;
  double uKu = 0.0;
  for (size_t a = 0; a < C; a++) {
    ku[a] = 0.0;
    for (size_t c = 0; c < C; c++) ku[a] += gsl_matrix_get(mw->seliK, a, c) * (double)m->counts[c] / N;
    uKu += (double)m->counts[a] / N * ku[a];
  }
  return uKu;
}

void ufm_metrics_grams(const ufm_metrics_ws *mw, const ufm_model *m, size_t stride,
                       gsl_matrix *WW, gsl_matrix *MM, gsl_matrix *WM, gsl_matrix *WWref,
                       gsl_matrix *MMref, gsl_matrix *WMref)
{
  const size_t C = m->C, p = m->p, K = stride ? stride : 1, nk = (C + K - 1) / K;
  const double N = (double)m->N, Cd = (double)C;
  /* the rows of W and the columns of M of the classes kept */
  double *buf = ufm_malloc(2 * nk * p * sizeof(double));
  gsl_matrix_view Wv = gsl_matrix_view_array(buf, nk, p), Mv = gsl_matrix_view_array(buf + nk * p, p, nk);
  gsl_matrix *Ws = &Wv.matrix, *Ms = &Mv.matrix;
  for (size_t a = 0; a < nk; a++) {
    for (size_t k = 0; k < p; k++) {
      gsl_matrix_set(Ws, a, k, gsl_matrix_get(m->W, a * K, k));
      gsl_matrix_set(Ms, k, a, gsl_matrix_get(mw->M, k, a * K));
    }
  }
  /* the norms of the whole W W^T and M^T M from the evaluation */
  if (WW) {
    gram(CblasNoTrans, Ws, WW, mw->gram512);
    scale_by(WW, mw->fro_W);
  }
  if (MM) {
    gram(CblasTrans, Ms, MM, mw->gram512);
    scale_by(MM, mw->fro_M);
  }
  if (WM) {
    gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, 1.0, Ws, Ms, 0.0, WM);
    double f2 = 0.0;
    if (K == 1) {
      f2 = sumsq_rows(WM->data, nk, nk, WM->tda);
    } else { /* ||W M||_F from 64 rows of W M at a time, none kept */
      double *t = ufm_malloc(64 * C * sizeof(double));
      for (size_t a = 0; a < C; a += 64) {
        const size_t r = C - a < 64 ? C - a : 64;
        gsl_matrix_const_view Wa = gsl_matrix_const_submatrix(m->W, a, 0, r, p);
        gsl_matrix_view T = gsl_matrix_view_array(t, r, C);
        gsl_blas_dgemm(CblasNoTrans, CblasNoTrans, 1.0, &Wa.matrix, mw->M, 0.0, &T.matrix);
        f2 += sumsq_rows(t, r, C, C);
      }
      free(t);
    }
    scale_by(WM, sqrt(f2));
  }
  /* the references: the simplex ETF (I - 11^T/C)/sqrt(C-1) for equal counts
   * (for all three); for unequal counts U L U^T (its norm taken once per
   * run), the centred K and W M's I - 1n^T/N - ... entry by entry, each
   * divided by the norm of the whole C x C matrix */
  const double etf_d = (1.0 - 1.0 / Cd) / sqrt(Cd - 1.0), etf_o = -1.0 / Cd / sqrt(Cd - 1.0);
  if (WWref)
    for (size_t a = 0; a < nk; a++)
      for (size_t b = 0; b < nk; b++)
        gsl_matrix_set(WWref, a, b,
                       mw->balanced ? (a == b ? etf_d : etf_o)
                                    : gsl_matrix_get(mw->seliW, a * K, b * K) / mw->seli_fb);
  if (MMref) {
    if (mw->balanced) {
      for (size_t a = 0; a < nk; a++)
        for (size_t b = 0; b < nk; b++) gsl_matrix_set(MMref, a, b, a == b ? etf_d : etf_o);
    } else {
      double *ku = ufm_malloc(C * sizeof(double)), *row = ufm_malloc(C * sizeof(double)), f2 = 0.0;
      const double uKu = mmref_setup(mw, m, ku);
      for (size_t a = 0; a < C; a++) {
        for (size_t b = 0; b < C; b++) row[b] = gsl_matrix_get(mw->seliK, a, b) - ku[a] - ku[b] + uKu;
        f2 += sumsq_rows(row, 1, C, C);
      }
      const double f = sqrt(f2);
      for (size_t a = 0; a < nk; a++)
        for (size_t b = 0; b < nk; b++)
          gsl_matrix_set(MMref, a, b,
                         (gsl_matrix_get(mw->seliK, a * K, b * K) - ku[a * K] - ku[b * K] + uKu) / f);
      free(ku);
      free(row);
    }
  }
  if (WMref) {
    /* entry (a, b): [a = b] - 1/C - (n_a - N/C)/N; row a's sum of squares
     * (1 - t_a)^2 + (C - 1) t_a^2 with t_a = 1/C + (n_a - N/C)/N */
    double f2 = 0.0;
    for (size_t a = 0; a < C; a++) {
      const double t = 1.0 / Cd + ((double)m->counts[a] - N / Cd) / N;
      f2 += (1.0 - t) * (1.0 - t) + (Cd - 1.0) * t * t;
    }
    const double f = sqrt(f2);
    for (size_t a = 0; a < nk; a++)
      for (size_t b = 0; b < nk; b++)
        gsl_matrix_set(WMref, a, b,
                       ((a == b ? 1.0 : 0.0) - 1.0 / Cd - ((double)m->counts[a * K] - N / Cd) / N) / f);
  }
  free(buf);
}

/* ------------------------------------------------------------------- 8. driver */

void ufm_metrics_eval(const ufm_problem *pb, const ufm_model *m, const ufm_grad_ws *ws,
                      ufm_metrics_ws *mw, double *out)
{
  const size_t N = m->N, p = m->p, C = m->C;
  double normW = sqrt(ws->normW2), normH = sqrt(ws->normH2);
  if (!mw->seli_ready) seli_setup(m, mw);

  /* class means (in the scratch region until the SVD), the scatter, the
   * Gram of M and what follows from them */
  double *mu = mw->scratch;
  class_means(m, mu, mw->muG->data, mw->M->data, mu + p * C, mw->s2, mw->hmax, mw->dmax);
  mw->dzero = 1; /* D = 0: no deviation, and every s_c^2 exactly 0 (not NaN) */
  for (size_t k = 0; k < p; k++) mw->dzero &= mw->dmax[k] == 0.0;
  for (size_t c = 0; c < C; c++) mw->dzero &= mw->s2[c] == 0.0;
  double inner_H = mw->tiles_dd || !mw->seli_H ? 0.0 : seli_H_inner(m, mw, mu, mu + p * C);
  gram(CblasTrans, mw->M, mw->G, mw->gram512);
  for (size_t c = 0; c < C; c++) {
    mw->gdiag[c] = gsl_matrix_get(mw->G, c, c);
    mw->mnorm[c] = sqrt(fmax(mw->gdiag[c], 0.0));
  }
  /* M_c.mu_G, each a sum over k in order, M read row by row */
  for (size_t c = 0; c < C; c++) mw->mg[c] = 0.0;
  for (size_t k = 0; k < p; k++) {
    const double *Mk = mw->M->data + k * C, g = mw->muG->data[k];
    for (size_t c = 0; c < C; c++) mw->mg[c] += Mk[c] * g;
  }
  ncc_prepare(m, mw);
  if (mw->certify) ncc_certify_prepare(m, mw);

  /* A: NC1's factor (LQ or SVD) on one thread, the metrics of the Grams
   * of M and of W on others (the first free thread takes each; one thread
   * takes both where the factorisation is long, two at C = 5000, p = 16,
   * where these C x C passes are most of the evaluation), while the
   * others (then these too) take the blocks of the nearest-class-centre
   * rule (and for p > N the tiles of H^T H); none needs anything from
   * another */
  int svd_st = 0;
  double mm2 = 0.0;
  const size_t ns = mw->nslab;
  if (ns > 1) {
    for (size_t u = 0; u < mw->nnblk; u++) mw->nclaim[u] = 0;
    for (size_t q = 0; q < ns; q++) mw->unext[q] = SIZE_MAX;
    mw->nsteal = (long)mw->nnblk;
  }
#pragma omp parallel num_threads(team(mw)) \
    if (C * p * N >= 64 * UFM_PAR_MIN || (ns > 1 && p * p * N >= 64 * UFM_PAR_MIN))
  {
#pragma omp single nowait
    {
      int st = 1;
      if (mw->qr && mw->lapack) st = thin_lq(mw, m->counts, mw->dzero);
      mw->basis_qr = st == 0;
      svd_st = st != 0 ? thin_svd(mw) : 0;
      if (ns > 1 && svd_st == 0) slab_pinv_B(mw);
    }
#pragma omp single nowait
    {
      gram_extra x = {.s2 = mw->s2, .gd = mw->gdiag, .mg = mw->mg, .nd = mw->ncount,
                      .gg = mug_norm2(mw, p)};
      const int want_mm2 = mw->tiles_dd && mw->seli_H;
      gram_metrics_M(mw->G, mw->mnorm, out, &x, want_mm2);
      mw->fro_M = x.fro;
      if (want_mm2) mm2 = x.mm2;
      out[UFM_M_NC3] = nc3(m, mw, normW);
      out[UFM_M_MC_COS_M] = minority_cos(mw, mw->G);
      if (ns > 1 && mw->seli_H) slab_pinv_mu(m, mw);
    }
#pragma omp single nowait
    {
      gram_serial(CblasNoTrans, m->W, &mw->WW.matrix, mw->gram512);
      gram_extra x = {.R = mw->balanced ? NULL : mw->seliW->data, .fb = mw->seli_fb};
      gram_metrics_W(&mw->WW.matrix, mw->wnorm, out, &x);
      mw->fro_W = x.fro;
      out[UFM_M_MC_COS_W] = minority_cos(mw, &mw->WW.matrix);
      out[UFM_M_MC_DIST_W] = minority_dist(mw, &mw->WW.matrix);
    }
    if (ns > 1) {
#ifdef _OPENMP
      const size_t t = (size_t)omp_get_thread_num();
#else
      const size_t t = 0;
#endif
      if (mw->ncc_apart) {
        ncc_steal(m, ws, mw, t);
#pragma omp barrier
      }
#pragma omp for schedule(dynamic, 1) nowait
      for (size_t q = 0; q < ns; q++) dd_slab(m, ws, mw, q, t);
      ncc_steal(m, ws, mw, t);
    } else {
      ncc_blocks(m, ws, mw);
    }
    if (!mw->tiles_dd && mw->seli_H) gram_fro_tiles(m->H, mw->tilefro, mw->ntile, mw->gram512);
  }
  if (svd_st != 0) mw->r = 0; /* LAPACK did not converge (never seen): NC1 unknown */
  size_t mismatch = 0;
  for (size_t blk = 0; blk < mw->nnblk; blk++) mismatch += mw->blkmis[blk];
  if (mw->r == 0) { /* all class means coincide: the nearest centre is class 0 */
    mismatch = 0;
    for (size_t i = 0; i < N; i++) mismatch += ws->pred[i] != 0;
  }
  out[UFM_M_NC4] = (double)mismatch / (double)N;

  /* B: NC1 and seli_H */
  double nc1 = 0.0;
  if (mw->tiles_dd) {
    double dd2 = 0.0, cross = 0.0;
    dd_tiles(m, mw);
    for (size_t q = 0; q < mw->ntile; q++) {
      nc1 += mw->tilenc1[q];
      dd2 += mw->tilefro[q];
      cross += mw->tilecross[q];
    }
    nc1 /= (double)N;
    out[UFM_M_SELI_H] = mw->seli_H ? seli_H_dd(m, mw, mw->G, dd2, cross, mm2) : NAN;
  } else {
    double a2 = 0.0, b2 = (double)N * (double)(C - 1) / (double)C;
    if (mw->r > 0 && !mw->dzero) nc1 = nc1_blocks(m, mw);
    if (mw->seli_H) {
      for (size_t q = 0; q < mw->ntile; q++) a2 += mw->tilefro[q];
      out[UFM_M_SELI_H] = sqrt(fmax(0.0, 2.0 - 2.0 * inner_H / sqrt(a2 * b2)));
    } else {
      out[UFM_M_SELI_H] = NAN;
    }
  }
  out[UFM_M_NC1] = svd_st == 0 ? nc1 : NAN;

  size_t correct = 0;
  double margin = INFINITY;
  for (size_t i = 0; i < N; i++) {
    if (ws->pred[i] == m->labels[i]) correct++;
    if (ws->margin[i] < margin || isnan(ws->margin[i])) margin = ws->margin[i];
  }
  out[UFM_M_LOSS] = ws->loss;
  out[UFM_M_OBJECTIVE] = ufm_grad_objective(pb, ws);
  out[UFM_M_ACC] = (double)correct / (double)N;
  out[UFM_M_NORM_W] = normW;
  out[UFM_M_NORM_H] = normH;
  out[UFM_M_NORM_B] = sqrt(ws->normb2);
  out[UFM_M_MARGIN] = margin;
  out[UFM_M_NMARGIN] = margin / (0.5 * (ws->normW2 + ws->normH2));
  out[UFM_M_GRAD_NORM] = sqrt(ws->gnorm2);
  out[UFM_M_SELI_Z] = seli_Z(m, ws);
}
