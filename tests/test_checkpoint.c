/* test_checkpoint.c -- checkpoints: exact round trips, every crash window of the atomic swap,
 * refusal of a checkpoint of another experiment, and whole runs resumed from a checkpoint
 * ending byte for byte where uninterrupted runs end (gd and momentum, ce and mse, a
 * diverging run, a stop signal before the first step). */
#include "testutil.h"

#include "checkpoint.h"
#include "common.h"
#include "config.h"
#include "fileio.h"
#include "interrupt.h"
#include "metrics.h"
#include "run.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[64];

static int setup(void **s)
{
  (void)s;
  strcpy(tmpdir, "/tmp/ufm-test-ckpt-XXXXXX");
  return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **s)
{
  (void)s;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static char *tpath(const char *name)
{
  return ufm_path_join(tmpdir, name);
}

/* A finished configuration from "key=value" strings; out = tmpdir/out. */
static ufm_config *make_config(const char *out, const char *const *kv)
{
  ufm_config *cfg = ufm_config_new();
  char err[UFM_ERRBUF];
  for (; *kv; kv++) {
    const char *eq = strchr(*kv, '=');
    char key[64];
    snprintf(key, sizeof key, "%.*s", (int)(eq - *kv), *kv);
    if (ufm_config_set(cfg, key, eq + 1, "test", err) != UFM_OK) fail_msg("%s", err);
  }
  char *p = tpath(out);
  ufm_config_set(cfg, "out", p, "test", err);
  free(p);
  if (ufm_config_finish(cfg, err) != UFM_OK) fail_msg("%s", err);
  return cfg;
}

/* The whole file, NUL-terminated (.npy files hold NULs: *len counts). */
static char *slurp(const char *dir, const char *name, size_t *len)
{
  char *p = ufm_path_join(dir, name);
  FILE *fp = fopen(p, "rb");
  struct stat sb;
  int ok = fp && stat(p, &sb) == 0;
  free(p);
  if (!ok) {
    if (fp) fclose(fp);
    return NULL;
  }
  char *buf = ufm_malloc((size_t)sb.st_size + 1);
  if (fread(buf, 1, (size_t)sb.st_size, fp) != (size_t)sb.st_size) fail_msg("%s: short read", name);
  fclose(fp);
  buf[sb.st_size] = '\0';
  *len = (size_t)sb.st_size;
  return buf;
}

/* Files a and b of two run directories hold the same bytes; for
 * summary.tsv, every line but the timing ones. */
static void assert_same(const char *da, const char *db, const char *name)
{
  size_t la, lb;
  char *a = slurp(da, name, &la), *b = slurp(db, name, &lb);
  if (!a || !b) fail_msg("%s: missing in %s", name, a ? db : da);
  if (!strcmp(name, "summary.tsv")) {
    const char *timing[] = {"wall_time\t", "iters_per_sec\t"};
    for (int k = 0; k < 2; k++) { /* blank out the value of each timing line */
      char *x = strstr(a, timing[k]), *y = strstr(b, timing[k]);
      assert_non_null(x);
      assert_non_null(y);
      memset(x, ' ', strcspn(x, "\n"));
      memset(y, ' ', strcspn(y, "\n"));
    }
    la = strlen(a);
    lb = strlen(b);
    /* the lines may differ in length: compare with the blanks squeezed out */
    size_t i = 0, j = 0;
    for (size_t k = 0; k < la; k++) if (a[k] != ' ') a[i++] = a[k];
    for (size_t k = 0; k < lb; k++) if (b[k] != ' ') b[j++] = b[k];
    la = i;
    lb = j;
  }
  if (la != lb || memcmp(a, b, la)) fail_msg("%s differs between %s and %s", name, da, db);
  free(a);
  free(b);
}

static int exists(const char *dir, const char *name)
{
  char *p = ufm_path_join(dir, name);
  int ok = access(p, F_OK) == 0;
  free(p);
  return ok;
}

/* --------------------------------------------------------------- round trips */

static void fill(double *x, size_t n, double seed)
{
  for (size_t k = 0; k < n; k++) x[k] = seed * (double)(k + 1) / 7.0 - 2.385 * (double)(k % 3);
}

/* Everything saved comes back bit for bit, NaN and infinities included. */
static void test_roundtrip(void **s)
{
  (void)s;
  const char *kv[] = {"classes=3", "dim=5", "counts=2,4,3", "optimizer=momentum", "lr=0.3", NULL};
  ufm_config *cfg = make_config("rt", kv);
  ufm_model *m = ufm_model_alloc(cfg->classes, cfg->dim, cfg->counts, cfg->bias);
  ufm_optim *o = ufm_optim_alloc(cfg->optimizer, m->C, m->p, m->N, cfg->lr, cfg->momentum);
  fill(m->W->data, m->C * m->p, 1.1);
  fill(m->H->data, m->p * m->N, -0.7);
  fill(m->b->data, m->C, 3.3);
  fill(o->vW->data, m->C * m->p, 0.01);
  fill(o->vH->data, m->p * m->N, 1e-300);
  fill(o->vb->data, m->C, -5e300);
  o->vmax = 0.1 + 0.2; /* not a short decimal */
  unsigned long iters[3] = {0, 1, 17};
  double vals[3 * UFM_NMETRICS];
  fill(vals, 3 * UFM_NMETRICS, 0.123456789);
  vals[4] = NAN;
  vals[5] = -INFINITY;
  vals[6] = -0.0;
  ufm_ckpt ck = {17, 3, 2.385, 2, 3, iters, vals};
  char err[UFM_ERRBUF] = "";
  assert_int_equal(ufm_mkdirs(cfg->out, err), UFM_OK);
  assert_int_equal(ufm_ckpt_save(cfg->out, cfg, m, o, &ck, err), UFM_OK);
  assert_true(ufm_ckpt_exists(cfg->out));

  ufm_model *m2 = ufm_model_alloc(cfg->classes, cfg->dim, cfg->counts, cfg->bias);
  ufm_optim *o2 = ufm_optim_alloc(cfg->optimizer, m->C, m->p, m->N, cfg->lr, cfg->momentum);
  ufm_ckpt back;
  int found = 0;
  int st = ufm_ckpt_load(cfg->out, cfg, m2, o2, &back, &found, err);
  if (st != UFM_OK) fail_msg("%s", err);
  assert_true(found);
  assert_memory_equal(m->W->data, m2->W->data, m->C * m->p * sizeof(double));
  assert_memory_equal(m->H->data, m2->H->data, m->p * m->N * sizeof(double));
  assert_memory_equal(m->b->data, m2->b->data, m->C * sizeof(double));
  assert_memory_equal(o->vW->data, o2->vW->data, m->C * m->p * sizeof(double));
  assert_memory_equal(o->vH->data, o2->vH->data, m->p * m->N * sizeof(double));
  assert_memory_equal(o->vb->data, o2->vb->data, m->C * sizeof(double));
  assert_memory_equal(&o->vmax, &o2->vmax, sizeof(double));
  assert_int_equal(back.iter, 17);
  assert_int_equal(back.log_next, 3);
  assert_int_equal(back.rank, 2);
  assert_int_equal(back.rows, 3);
  assert_true(back.seconds == 2.385);
  assert_memory_equal(back.row_iter, iters, sizeof iters);
  assert_memory_equal(back.row_vals, vals, sizeof vals);
  ufm_ckpt_clear(&back);

  /* a second save replaces the first; no temporary directories stay */
  ck.iter = 18;
  assert_int_equal(ufm_ckpt_save(cfg->out, cfg, m, o, &ck, err), UFM_OK);
  assert_false(exists(cfg->out, "checkpoint.new"));
  assert_false(exists(cfg->out, "checkpoint.old"));
  assert_int_equal(ufm_ckpt_load(cfg->out, cfg, m2, o2, &back, &found, err), UFM_OK);
  assert_int_equal(back.iter, 18);
  ufm_ckpt_clear(&back);

  /* another experiment's run directory: refused, naming config.ini */
  ufm_config *other = make_config("rt", (const char *[]){"classes=3", "dim=5", "counts=2,4,3",
                                                          "optimizer=momentum", "lr=0.31", NULL});
  assert_int_equal(ufm_ckpt_load(cfg->out, other, m2, o2, &back, &found, err), UFM_EINVAL);
  assert_false(found);
  assert_non_null(strstr(err, "another experiment"));
  ufm_config_free(other);

  ufm_ckpt_remove(cfg->out);
  assert_false(ufm_ckpt_exists(cfg->out));
  assert_int_equal(ufm_ckpt_load(cfg->out, cfg, m2, o2, &back, &found, err), UFM_OK);
  assert_false(found);

  ufm_optim_free(o);
  ufm_optim_free(o2);
  ufm_model_free(m);
  ufm_model_free(m2);
  ufm_config_free(cfg);
}

/* A process killed at any point of ufm_ckpt_save leaves one complete
 * checkpoint: the states of the directory at each step of the swap. */
static void test_crash_windows(void **s)
{
  (void)s;
  const char *kv[] = {"classes=2", "dim=3", "n=2", NULL};
  ufm_config *cfg = make_config("win", kv);
  ufm_model *m = ufm_model_alloc(cfg->classes, cfg->dim, cfg->counts, cfg->bias);
  ufm_optim *o = ufm_optim_alloc(cfg->optimizer, m->C, m->p, m->N, cfg->lr, cfg->momentum);
  fill(m->W->data, m->C * m->p, 0.5);
  unsigned long it0 = 0;
  double v0[UFM_NMETRICS] = {0};
  ufm_ckpt ck = {5, 1, 0, 0, 1, &it0, v0};
  char err[UFM_ERRBUF] = "", cmd[512];
  assert_int_equal(ufm_mkdirs(cfg->out, err), UFM_OK);
  assert_int_equal(ufm_ckpt_save(cfg->out, cfg, m, o, &ck, err), UFM_OK);
  ufm_ckpt back;
  int found;

  /* killed while writing checkpoint.new: a partial directory beside the old one */
  char *nw = ufm_path_join(cfg->out, "checkpoint.new"), *cur = ufm_path_join(cfg->out, "checkpoint"),
       *old = ufm_path_join(cfg->out, "checkpoint.old");
  assert_int_equal(mkdir(nw, 0777), 0);
  snprintf(cmd, sizeof cmd, "cp '%s/W.npy' '%s/'; head -c 100 '%s/H.npy' > '%s/H.npy'", cur, nw, cur, nw);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(ufm_ckpt_load(cfg->out, cfg, m, o, &back, &found, err), UFM_OK);
  assert_true(found);
  assert_int_equal(back.iter, 5);
  ufm_ckpt_clear(&back);

  /* killed between the two renames: only checkpoint.old is complete */
  assert_int_equal(rename(cur, old), 0);
  assert_true(ufm_ckpt_exists(cfg->out));
  assert_int_equal(ufm_ckpt_load(cfg->out, cfg, m, o, &back, &found, err), UFM_OK);
  assert_true(found);
  assert_int_equal(back.iter, 5);
  ufm_ckpt_clear(&back);

  /* the next save from that state cleans up and leaves one checkpoint */
  ck.iter = 6;
  assert_int_equal(ufm_ckpt_save(cfg->out, cfg, m, o, &ck, err), UFM_OK);
  assert_false(exists(cfg->out, "checkpoint.new"));
  assert_false(exists(cfg->out, "checkpoint.old"));
  assert_int_equal(ufm_ckpt_load(cfg->out, cfg, m, o, &back, &found, err), UFM_OK);
  assert_int_equal(back.iter, 6);
  ufm_ckpt_clear(&back);

  /* killed after the second rename: both complete, the newer one wins */
  snprintf(cmd, sizeof cmd, "cp -r '%s' '%s'", cur, old);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(ufm_ckpt_load(cfg->out, cfg, m, o, &back, &found, err), UFM_OK);
  assert_int_equal(back.iter, 6);
  ufm_ckpt_clear(&back);

  /* a tampered checkpoint is refused, not guessed at */
  snprintf(cmd, sizeof cmd, "head -c 90 '%s/H.npy' > '%s/H.x' && mv '%s/H.x' '%s/H.npy'", cur, cur, cur, cur);
  assert_int_equal(system(cmd), 0);
  assert_int_equal(ufm_ckpt_load(cfg->out, cfg, m, o, &back, &found, err), UFM_EINVAL);
  assert_non_null(strstr(err, "H.npy"));

  free(nw);
  free(cur);
  free(old);
  ufm_optim_free(o);
  ufm_model_free(m);
  ufm_config_free(cfg);
}

/* ------------------------------------------------------------- resumed runs */

static int run(const ufm_config *cfg, int keep, int resume)
{
  ufm_run_opts o = {1, 1, 1, keep, resume};
  char err[UFM_ERRBUF] = "";
  int st = ufm_run(cfg, &o, err);
  if (st != UFM_OK && st != UFM_EDIVERGED && st != UFM_EINTR) printf("# run: %s\n", err);
  return st;
}

/* What a kill -9 right after the last checkpoint of a run leaves behind:
 * the checkpoint, config.ini, a metrics.tsv with rows past the checkpoint
 * (or none), temporary files; no final state, no summary. */
static void simulate_kill(const char *dir)
{
  const char *gone[] = {"summary.tsv", "W.npy", "H.npy", "b.npy", "labels.npy"};
  for (size_t k = 0; k < sizeof gone / sizeof gone[0]; k++) {
    char *p = ufm_path_join(dir, gone[k]);
    unlink(p);
    free(p);
  }
  char *p = ufm_path_join(dir, "metrics.tsv.tmp.999999");
  FILE *fp = fopen(p, "w");
  fputs("iter\tloss\n0\t1", fp); /* half a file */
  fclose(fp);
  free(p);
}

static void resume_case(const char *name, const char *const *kv, int want)
{
  char a[64], b[64];
  snprintf(a, sizeof a, "%s-a", name);
  snprintf(b, sizeof b, "%s-b", name);
  ufm_config *ca = make_config(a, kv), *cb = make_config(b, kv);
  assert_int_equal(run(ca, UFM_KEEP_FINAL, 0), want);
  /* keep=all leaves the last periodic checkpoint; roll the run back to it */
  assert_int_equal(run(cb, UFM_KEEP_ALL, 0), want);
  assert_true(ufm_ckpt_exists(cb->out));
  simulate_kill(cb->out);
  assert_int_equal(run(cb, UFM_KEEP_FINAL, 1), want);
  const char *files[] = {"W.npy", "H.npy", "b.npy", "labels.npy", "metrics.tsv", "summary.tsv"};
  for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) assert_same(ca->out, cb->out, files[k]);
  assert_false(ufm_ckpt_exists(cb->out));
  assert_false(exists(cb->out, "metrics.tsv.tmp.999999"));
  /* resuming a finished run does nothing */
  assert_int_equal(run(cb, UFM_KEEP_FINAL, 1), UFM_OK);
  assert_same(ca->out, cb->out, "W.npy");
  ufm_config_free(ca);
  ufm_config_free(cb);
}

static void test_resume_exact(void **s)
{
  (void)s;
  const char *gd[] = {"classes=4", "dim=6", "counts=3,5,2,4", "iterations=250", "log_points=30",
                      "lr=0.9", "checkpoint_every=40", NULL};
  resume_case("gd", gd, UFM_OK);
  const char *mom[] = {"classes=3", "dim=2", "n=4", "iterations=300", "log_points=12", "loss=mse",
                       "optimizer=momentum", "momentum=0.8", "lr=0.4", "lambda_b=1e-3",
                       "checkpoint_every=77", NULL};
  resume_case("mom", mom, UFM_OK);
  const char *nobias[] = {"classes=5", "dim=7", "n=3", "iterations=120", "bias=false",
                          "checkpoint_every=50", "tol=1e-300", NULL};
  resume_case("nobias", nobias, UFM_OK);
  /* checkpoints before the divergence: resumed, it diverges the same way
   * and reports the same final metrics and message */
  const char *div[] = {"classes=3", "dim=4", "n=4", "loss=mse", "lr=3", "iterations=400",
                       "checkpoint_every=3", NULL};
  resume_case("div", div, UFM_EDIVERGED);
}

/* A stop signal: a checkpoint, the metrics so far, UFM_EINTR with the resume
 * command; the run resumed ends as an uninterrupted one. */
static void test_stop_flag(void **s)
{
  (void)s;
  const char *kv[] = {"classes=3", "dim=4", "n=3", "iterations=50", "optimizer=momentum", NULL};
  ufm_config *ca = make_config("stop-a", kv), *cb = make_config("stop-b", kv);
  assert_int_equal(run(ca, UFM_KEEP_FINAL, 0), UFM_OK);
  ufm_stop_signal = SIGTERM;
  ufm_run_opts o = {1, 1, 1, UFM_KEEP_FINAL, 0};
  char err[UFM_ERRBUF] = "";
  assert_int_equal(ufm_run(cb, &o, err), UFM_EINTR);
  ufm_stop_signal = 0;
  assert_non_null(strstr(err, "SIGTERM"));
  assert_non_null(strstr(err, "ufm run --resume"));
  assert_non_null(strstr(err, cb->out));
  assert_true(ufm_ckpt_exists(cb->out));
  assert_true(exists(cb->out, "metrics.tsv"));
  assert_false(exists(cb->out, "summary.tsv"));
  char *cfgp = ufm_path_join(cb->out, "config.ini"); /* lost: the resumed run writes it again */
  assert_int_equal(unlink(cfgp), 0);
  free(cfgp);
  assert_int_equal(run(cb, UFM_KEEP_FINAL, 1), UFM_OK);
  assert_true(exists(cb->out, "config.ini"));
  const char *files[] = {"W.npy", "H.npy", "b.npy", "metrics.tsv", "summary.tsv"};
  for (size_t k = 0; k < sizeof files / sizeof files[0]; k++) assert_same(ca->out, cb->out, files[k]);
  ufm_config_free(ca);
  ufm_config_free(cb);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_roundtrip),
      cmocka_unit_test(test_crash_windows),
      cmocka_unit_test(test_resume_exact),
      cmocka_unit_test(test_stop_flag),
  };
  return cmocka_run_group_tests_name("checkpoint", tests, setup, teardown);
}
