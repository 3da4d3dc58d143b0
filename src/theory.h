/* theory.h -- closed-form predictions of THEORY.md: the global minimiser of the UFM where it is known.
 *
 * A prediction is a list of `name value` items (names shared with the
 * metric columns of metrics.tsv where they coincide: loss, objective,
 * norm_W, norm_H, norm_b, margin, nmargin) plus a regime and, when C is
 * small enough, the C x C matrices W W^T, the class-mean Grams and the
 * class logits. Settings without a known closed form get regime "unknown"
 * and a note saying why, never a guess.
 */
#ifndef UFM_THEORY_H
#define UFM_THEORY_H

#include <stdio.h>
#include "config.h"

/* C x C matrices (W W^T, Grams, logits) are formed only up to this C: the
 * imbalanced cases need a symmetric C x C eigenproblem (O(C^3)). */
#define UFM_THEORY_CMAX 1024

enum { UFM_TH_CE = 0, UFM_TH_MSE = 1, UFM_TH_OTHER = 2 };

/* The setting, as far as the theory cares. */
typedef struct {
  size_t C, p;
  const size_t *counts;   /* n_c, c = 0..C-1 */
  int loss;               /* UFM_TH_CE, UFM_TH_MSE, UFM_TH_OTHER */
  int bias;
  double lambda_W, lambda_H, lambda_b;
  int gd;                 /* plain gradient descent (for the rate) */
  double lr;
  int init_from;          /* starts from a saved state (CE with lambda_b = 0 keeps mean(b)) */
  int general;            /* tests only: use the C x C eigen path even for balanced counts */
} ufm_theory_setting;

typedef struct {
  char name[40];
  double value;
  char *text; /* non-NULL: a text item (regime, note, source, yes/no) */
} ufm_theory_item;

typedef struct {
  size_t C;
  const char *regime; /* trivial, etf, orthogonal, soft-threshold, svm, interpolation, unknown */
  size_t n, cap;
  ufm_theory_item *items;
  /* C x C row-major, or NULL: W W^T; Gram of the class means mu_c (uncentred)
   * and of M = [mu_c - mu_G] (as in the metrics); logits, column c = the
   * logits of every class-c sample. */
  double *WWt, *gram_mu, *gram_M, *logits;
  size_t thresholded; /* MSE: directions thresholded away with a residual left (slow modes) */
} ufm_theory;

/* Predict for a setting. Never fails on valid input (an unknown setting is
 * a prediction with regime "unknown"); aborts only when out of memory. */
ufm_theory *ufm_theory_predict(const ufm_theory_setting *s);

/* The setting of a finished configuration (ufm_config_finish). */
ufm_theory *ufm_theory_for_config(const ufm_config *cfg);

void ufm_theory_free(ufm_theory *th);

/* The value of a numeric item: 1 and *v if present, else 0. */
int ufm_theory_get(const ufm_theory *th, const char *name, double *v);

/* The text of a text item, or NULL. */
const char *ufm_theory_text(const ufm_theory *th, const char *name);

/* Does th hold a numeric prediction (anything but regime, notes, sources)? */
int ufm_theory_has_prediction(const ufm_theory *th);

/* Every item as `name<TAB>value` lines, regime first. */
void ufm_theory_print(const ufm_theory *th, FILE *fp);

/* theory.tsv (the printed lines), written atomically into dir. */
int ufm_theory_write_tsv(const ufm_theory *th, const char *dir, char *errbuf);

/* theory.tsv and the matrices that exist (WWt.tsv, gram_mu.tsv, gram_M.tsv,
 * logits.tsv: C lines of C tab-separated values) into dir, created if needed. */
int ufm_theory_write_dir(const ufm_theory *th, const char *dir, char *errbuf);

/* For each of the n named final values that has a prediction t, the lines
 * NAME_theory t and NAME_gap (x - t)/|t| (x - t when t = 0). */
void ufm_theory_summary(const ufm_theory *th, const char *const *names, const double *x, size_t n,
                        FILE *fp);

#endif
