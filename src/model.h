/* model.h -- the unconstrained features model: W (C x p), H (p x N), b (C) and the class layout. */
#ifndef UFM_MODEL_H
#define UFM_MODEL_H

#include <stddef.h>
#include <stdint.h>
#include <gsl/gsl_matrix.h>
#include <gsl/gsl_vector.h>

/* Samples are stored class by class: columns offset[c] .. offset[c+1]-1 of H
 * belong to class c (SPEC section 1). */
typedef struct {
  size_t C, p, N;
  size_t *counts;  /* n_c, c = 0..C-1                      */
  size_t *offset;  /* first column of class c; offset[C]=N */
  int32_t *labels; /* y_i, i = 0..N-1                      */
  int bias;        /* 0: b = 0 and never updated           */
  gsl_matrix *W;   /* C x p, row c is w_c                  */
  gsl_matrix *H;   /* p x N, column i is h_i               */
  gsl_vector *b;   /* C                                    */
} ufm_model;

ufm_model *ufm_model_alloc(size_t C, size_t p, const size_t *counts, int bias);
void ufm_model_free(ufm_model *m);

/* W then H, row-major, i.i.d. N(0, scale^2) from gsl_rng_mt19937(seed); b = 0. */
void ufm_model_init_random(ufm_model *m, unsigned long seed, double scale);
/* The same; returns 1 when model.c's own generator drew the values (it
 * checks them against GSL's first), 0 when GSL's loop did. */
int ufm_model_init_random_fast(ufm_model *m, unsigned long seed, double scale);

/* Bytes the model and one run's workspaces need (used to refuse sizes that
 * cannot fit before anything is allocated). */
double ufm_model_bytes_needed(size_t C, size_t p, size_t N, int momentum);

/* Class counts from the experiment keys: imbalance 0 none, 1 step, 2 exp.
 * step: the first `majority` classes get n, the rest max(1, round(n/ratio));
 * exp: n_c = max(1, round(n ratio^(-c/(C-1)))). */
enum { UFM_IMB_NONE = 0, UFM_IMB_STEP = 1, UFM_IMB_EXP = 2 };
void ufm_counts_make(size_t C, size_t n, int imbalance, double ratio, size_t majority,
                     size_t *counts);

#endif
