/* sweep.h -- an experiment whose keys hold several values: its points, their runs, its tables. */
#ifndef UFM_SWEEP_H
#define UFM_SWEEP_H

#include "config.h"
#include "run.h"

/* One swept key: the values it takes, in the order written. */
typedef struct {
  char *key;
  char **vals;
  size_t n;
  int geometric; /* written as log:start:stop:count */
  char *where;
} ufm_axis;

/* The points of an experiment: the Cartesian product of its axes (the
 * first-written axis varies slowest), each repeated `seeds` times with seed,
 * seed+1, ..., seed+seeds-1 (the replicas vary fastest). Point k's run
 * directory is OUT/pNNNN. A plain experiment is a sweep of one point whose
 * run directory is OUT itself. */
typedef struct ufm_sweep {
  ufm_settings set; /* every setting as written (grids unexpanded) */
  ufm_axis *axes;
  size_t naxes;
  size_t seeds;
  size_t npoints;
  char *name; /* the experiment's name */
  char *out;  /* the sweep directory  */
} ufm_sweep;

/* Build from raw settings (file first, then overrides) and check every
 * point's configuration; nothing is written. UFM_EINVAL with
 * "WHERE: key: what" on any error. Takes ownership of *set. */
int ufm_sweep_build(ufm_sweep *sw, ufm_settings *set, const char *name, char *errbuf);
void ufm_sweep_free(ufm_sweep *sw);

static inline int ufm_sweep_is_sweep(const ufm_sweep *sw) { return sw->naxes > 0 || sw->seeds > 1; }

/* Point k's resolved configuration (caller frees). */
int ufm_sweep_point_config(const ufm_sweep *sw, size_t k, ufm_config **ret, char *errbuf);

/* The axis value indices and replica of point k. */
void ufm_sweep_point_coords(const ufm_sweep *sw, size_t k, size_t *idx, size_t *replica);

/* The text of sweep.ini: every key with its value as written (or its
 * default), loadable by `ufm run`; two sweeps are the same experiment when
 * their texts agree outside the `out` line. */
char *ufm_sweep_ini_text(const ufm_sweep *sw);

typedef struct {
  ufm_run_opts run; /* for each point (quiet, keep) */
  int quiet;        /* no progress lines            */
  int force;        /* replace an existing directory / rerun finished points */
  int noplot;
  size_t shard, nshards; /* run only points k with k % nshards == shard */
} ufm_sweep_opts;

/* Run the points not finished yet (all with force), in parallel over
 * OpenMP threads with one BLAS thread each, then write results.tsv,
 * summary.tsv, timing.tsv and the sweep figures. Returns UFM_OK when every
 * point ran and none diverged. */
int ufm_sweep_run(const ufm_sweep *sw, const ufm_sweep_opts *opts, char *errbuf);

/* This process's MPI rank (0 without MPI). */
int ufm_mpi_rank(void);

/* Print the points, one line each, without running anything. */
void ufm_sweep_print_points(const ufm_sweep *sw, FILE *fp);

/* Rebuild results.tsv, summary.tsv and timing.tsv of sweep directory dir
 * from its point directories (as described by dir/sweep.ini). */
int ufm_sweep_tables(const ufm_sweep *sw, const char *dir, char *errbuf);

/* Load a sweep directory's sweep.ini. */
int ufm_sweep_load_dir(ufm_sweep *sw, const char *dir, char *errbuf);

/* Join shard directories (same sweep) into out: point directories are
 * hard-linked (copied across file systems), then the tables rebuilt. */
int ufm_sweep_merge(char *const *dirs, size_t ndirs, const char *out, int force, char *errbuf);

#endif
