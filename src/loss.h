/* loss.h -- the per-sample losses of SPEC section 1, as a table (add a loss = add an entry). */
#ifndef UFM_LOSS_H
#define UFM_LOSS_H

#include <stddef.h>
#include <stdint.h>

/* One sample: on entry z[0..C-1] holds its logits, y its class. On exit z
 * holds scale * dloss/dz; the return value is loss(z, y). */
typedef double (*ufm_loss_sample_fn)(size_t C, double *z, int32_t y, double scale);

/* A block of B <= UFM_LOSS_BMAX samples stored class-major: on entry
 * z[c * ld + l] holds logit c of sample l (l < B), y[l] its class; on exit
 * those entries hold scale * dloss/dz and loss_i[l] the sample's loss. The
 * same arithmetic as the per-sample function, in loops over samples that
 * vectorise (the small-C fused step of grad.c uses it). */
typedef void (*ufm_loss_block_fn)(size_t C, size_t B, size_t ld, double *z, const int32_t *y,
                                  double scale, double *loss_i);
#define UFM_LOSS_BMAX 64

typedef struct {
  const char *name;
  const char *formula; /* for --help and the README */
  ufm_loss_sample_fn sample;
  ufm_loss_block_fn block; /* NULL: no block form (grad.c then uses the three products) */
} ufm_loss_type;

extern const ufm_loss_type ufm_loss_ce;
extern const ufm_loss_type ufm_loss_mse;

/* Look a loss up by name; NULL if unknown. */
const ufm_loss_type *ufm_loss_lookup(const char *name);
/* "ce, mse": the names, for error messages. */
const char *ufm_loss_names(void);

/* The batch pass, in place on the class-major logits Z (C x N: row c =
 * logit c of every sample, bias not yet added). For every sample i: add b
 * (if not NULL), record the predicted class pred[i] = argmax_c z_ci (first
 * on ties) and the margin margin[i] = z_{y_i,i} - max_{c != y_i} z_ci, then
 * overwrite column i with (1/N) dloss/dz_i (so Z ends as G) and store
 * loss_i[i]; zstat (if not NULL) gets ||z_i||^2 and z_{y_i,i} - mean_c z_ci.
 * Returns the mean loss, summed in sample order (the same bits on any
 * thread count). Each sample's logits pass through the sample-major row
 * passes (vectorised over the classes), UFM_LOSS_BLOCK samples at a time,
 * in rows of scratch: rows holds ufm_loss_rows_len(N, C) doubles.
 * If gsum is not NULL, also the row sums of G (the bias gradient G 1) into
 * gsum (C): the samples in ufm_loss_groups(N) groups of consecutive ones,
 * fixed by N, each group's samples added in sample order into its own C
 * doubles of work (ufm_loss_groups(N) x C) as they are written, then the
 * groups in order (the same bits on any thread count). */
double ufm_loss_batch(const ufm_loss_type *L, size_t N, size_t C, double *Z, const double *b,
                      const int32_t *labels, double *loss_i, int32_t *pred, double *margin,
                      double *zstat, double *gsum, double *work, double *rows);

/* ufm_loss_batch's pass on n columns of a class-major block Z (C rows, row
 * stride ld), column j holding sample j of labels, loss_i, pred, margin and
 * zstat (2 per sample, or NULL); the gradient scaled by scale (1/N for the
 * whole batch); G's columns added into part (C, or NULL) in sample order;
 * rows: UFM_LOSS_BLOCK C doubles of scratch. The same arithmetic per sample
 * as ufm_loss_batch (which runs it on its groups): the same bits. */
void ufm_loss_cols(const ufm_loss_type *L, size_t C, size_t n, size_t ld, double *Z,
                   const double *b, const int32_t *labels, double scale, double *loss_i,
                   int32_t *pred, double *margin, double *zstat, double *part, double *rows);

/* ufm_loss_batch's samples per block of scratch rows, and the scratch it
 * needs: UFM_LOSS_BLOCK C doubles for each of its groups. */
#define UFM_LOSS_BLOCK 8
size_t ufm_loss_rows_len(size_t N, size_t C);

/* The groups of ufm_loss_batch: ceil(N / UFM_LOSS_GROUP_ROWS), at least 2
 * from N = UFM_LOSS_TWO_GROUPS (since session 15) and at most
 * UFM_LOSS_GROUPS_MAX (so they are also the units the threads share); the
 * threads share them from N C = UFM_LOSS_PAR_MIN samples x classes (a
 * small step's loss pass, 8192 logits at C = 32, N = 256, took 25 us on
 * one thread). */
#define UFM_LOSS_GROUP_ROWS 256
#define UFM_LOSS_GROUPS_MAX 64
#define UFM_LOSS_TWO_GROUPS 64
#define UFM_LOSS_PAR_MIN ((size_t)1 << 12)
size_t ufm_loss_groups(size_t N);

/* The vector width, in doubles, of the sample-major passes (ufm_loss_batch
 * and the per-sample functions): 0 picks the widest this CPU runs (2, 4 or
 * 8: SSE2, AVX2, AVX-512F; the default), 2, 4 or 8 forces one. All give the
 * same bits; for the tests. Returns the width in use, 0 if w is not
 * available here (nothing changes then). Not thread-safe. */
int ufm_loss_rows_width(int w);

/* The per-sample records of ufm_loss_batch for a class-major block of
 * logits (layout of ufm_loss_block_fn, bias already added): pred[l],
 * margin[l] and, if zstat is not NULL, zstat[2l], zstat[2l+1]. */
void ufm_loss_block_stats(size_t C, size_t B, size_t ld, const double *z, const int32_t *y,
                          int32_t *pred, double *margin, double *zstat);

#endif
