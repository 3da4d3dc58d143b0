/* constraint.h -- the layer-peeled model's norm constraints (Fang et al. 2021), by exact projection. */
#ifndef UFM_CONSTRAINT_H
#define UFM_CONSTRAINT_H

#include "model.h"

/* Euclidean projection of W onto {(1/C) sum_c ||w_c||^2 <= E_W}: a rescaling. */
void ufm_project_W(ufm_model *m, double E_W);

/* Euclidean projection of H onto {(1/C) sum_c (1/n_c) sum_{i in c} ||h_i||^2 <= E_H}.
 * Returns the multiplier nu >= 0 (0 when H was feasible). */
double ufm_project_H(ufm_model *m, double E_H);

/* (1/C) sum_c (1/n_c) sum_{i in c} ||h_i||^2 */
double ufm_constraint_H_value(const ufm_model *m);

#endif
