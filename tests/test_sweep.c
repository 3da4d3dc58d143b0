/* test_sweep.c -- sweeps: grids into points (order, seeds), validation before running,
 * identical tables on 1 and 2 threads, resume after an interruption, refusal of a
 * changed experiment, shards merged equal to the whole. */
#define UFM_TEST_TMPDIR
#include "testutil.h"

#include "common.h"
#include "config.h"
#include "sweep.h"
#include "version.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>


/* A sweep from "key=value" strings (NULL-terminated); out under tmpdir. */
static int build(ufm_sweep *sw, const char *out, const char *const *kv, char *err)
{
  ufm_settings set = {0};
  for (int k = 0; kv[k]; k++) {
    const char *eq = strchr(kv[k], '=');
    char key[64], where[32];
    snprintf(key, sizeof key, "%.*s", (int)(eq - kv[k]), kv[k]);
    snprintf(where, sizeof where, "test:%d", k + 1);
    ufm_settings_put(&set, key, eq + 1, where);
  }
  if (out) {
    char path[256];
    snprintf(path, sizeof path, "%s/%s", tmpdir, out);
    ufm_settings_put(&set, "out", path, "test:out");
  }
  int st = ufm_sweep_build(sw, &set, "t", err);
  ufm_settings_clear(&set);
  return st;
}

static const char *const small[] = {"classes=3, 4", "dim=log:2:8:3", "n=4", "iterations=60",
                                    "log_points=5", "seeds=2", "lr=1.5", NULL};

static int run(const ufm_sweep *sw, int force, size_t shard, size_t nshards)
{
  ufm_sweep_opts o = {0};
  o.quiet = 1;
  o.noplot = 1;
  o.force = force;
  o.shard = shard;
  o.nshards = nshards;
  char err[UFM_ERRBUF] = "";
  int st = ufm_sweep_run(sw, &o, err);
  if (st != UFM_OK) printf("# sweep: %s\n", err);
  return st;
}

static char *slurp(const char *out, const char *name)
{
  char path[256];
  snprintf(path, sizeof path, "%s/%s/%s", tmpdir, out, name);
  FILE *fp = fopen(path, "r");
  if (!fp) return NULL;
  fseek(fp, 0, SEEK_END);
  long n = ftell(fp);
  rewind(fp);
  char *buf = calloc((size_t)n + 1, 1);
  if (fread(buf, 1, (size_t)n, fp) != (size_t)n) n = 0;
  fclose(fp);
  return buf;
}

static void assert_same_file(const char *a, const char *b, const char *name)
{
  char *x = slurp(a, name), *y = slurp(b, name);
  assert_non_null(x);
  assert_non_null(y);
  if (strcmp(x, y)) fail_msg("%s/%s and %s/%s differ", a, name, b, name);
  free(x);
  free(y);
}

static size_t count_lines(const char *text)
{
  size_t n = 0;
  for (; *text; text++) n += *text == '\n';
  return n;
}

/* The first-written axis varies slowest, replicas fastest; seeds count up. */
static void test_point_order(void **s)
{
  (void)s;
  ufm_sweep sw;
  char err[UFM_ERRBUF];
  assert_int_equal(build(&sw, "order", small, err), UFM_OK);
  assert_int_equal(sw.naxes, 2);
  assert_int_equal(sw.npoints, 2 * 3 * 2);
  assert_string_equal(sw.axes[0].key, "classes");
  assert_string_equal(sw.axes[1].key, "dim");
  assert_true(sw.axes[1].geometric);
  assert_string_equal(sw.axes[1].vals[1], "4");
  const size_t want[][3] = {{3, 2, 1}, {3, 2, 2}, {3, 4, 1}, {3, 4, 2}, {3, 8, 1}, {3, 8, 2},
                            {4, 2, 1}, {4, 2, 2}, {4, 4, 1}, {4, 4, 2}, {4, 8, 1}, {4, 8, 2}};
  for (size_t k = 0; k < sw.npoints; k++) {
    ufm_config *cfg;
    assert_int_equal(ufm_sweep_point_config(&sw, k, &cfg, err), UFM_OK);
    assert_int_equal(cfg->classes, want[k][0]);
    assert_int_equal(cfg->dim, want[k][1]);
    assert_int_equal(cfg->seed, want[k][2]);
    assert_int_equal(cfg->seeds, 1);
    char dir[300];
    snprintf(dir, sizeof dir, "%s/order/p%04zu", tmpdir, k);
    assert_string_equal(cfg->out, dir);
    ufm_config_free(cfg);
  }
  ufm_sweep_free(&sw);
}

/* A point that is not a valid experiment stops the sweep before it runs. */
static void test_invalid_point(void **s)
{
  (void)s;
  ufm_sweep sw;
  char err[UFM_ERRBUF] = "";
  const char *const kv[] = {"counts=5,5,5", "classes=3, 4", NULL};
  assert_int_equal(build(&sw, "invalid", kv, err), UFM_EINVAL);
  assert_non_null(strstr(err, "counts"));
  char path[256];
  snprintf(path, sizeof path, "%s/invalid", tmpdir);
  assert_int_equal(access(path, F_OK), -1);
  ufm_sweep_free(&sw);
  const char *const kv2[] = {"lr=log:0:1:5", NULL};
  assert_int_equal(build(&sw, "invalid", kv2, err), UFM_EINVAL);
  assert_non_null(strstr(err, "test:1: lr:"));
  ufm_sweep_free(&sw);
}

/* The same tables on 1 and 2 threads, whatever the order of completion. */
static void test_thread_invariance(void **s)
{
  (void)s;
  ufm_sweep a, b;
  char err[UFM_ERRBUF];
  assert_int_equal(build(&a, "th1", small, err), UFM_OK);
  assert_int_equal(build(&b, "th2", small, err), UFM_OK);
  ufm_set_threads(1);
  assert_int_equal(run(&a, 0, 0, 1), UFM_OK);
  ufm_set_threads(2);
  assert_int_equal(run(&b, 0, 0, 1), UFM_OK);
  assert_same_file("th1", "th2", "results.tsv");
  assert_same_file("th1", "th2", "summary.tsv");
  char *r = slurp("th1", "results.tsv"), *sm = slurp("th1", "summary.tsv");
  assert_int_equal(count_lines(r), 1 + 12);
  assert_int_equal(count_lines(sm), 1 + 6);
  assert_non_null(strstr(r, "\tfinished\t"));
  free(r);
  free(sm);
  ufm_sweep_free(&a);
  ufm_sweep_free(&b);
}

/* An interrupted sweep (points whose summary.tsv is missing) resumes: only
 * those points run again, and the tables come out the same. */
static void test_resume(void **s)
{
  (void)s;
  ufm_sweep sw;
  char err[UFM_ERRBUF], path[300];
  assert_int_equal(build(&sw, "res", small, err), UFM_OK);
  assert_int_equal(run(&sw, 0, 0, 1), UFM_OK);
  char *before = slurp("res", "results.tsv");
  /* interrupt: two points lose their summary, one its whole directory */
  snprintf(path, sizeof path, "%s/res/p0003/summary.tsv", tmpdir);
  assert_int_equal(unlink(path), 0);
  snprintf(path, sizeof path, "%s/res/p0007/summary.tsv", tmpdir);
  assert_int_equal(unlink(path), 0);
  snprintf(path, sizeof path, "rm -rf '%s/res/p0010'", tmpdir);
  assert_int_equal(system(path), 0);
  snprintf(path, sizeof path, "%s/res/results.tsv", tmpdir);
  unlink(path);
  /* a finished point must not be touched: remember its W.npy's inode time */
  struct stat st0, st1;
  snprintf(path, sizeof path, "%s/res/p0000/W.npy", tmpdir);
  assert_int_equal(stat(path, &st0), 0);
  sleep(1);
  assert_int_equal(run(&sw, 0, 0, 1), UFM_OK);
  assert_int_equal(stat(path, &st1), 0);
  assert_true(st0.st_mtime == st1.st_mtime && st0.st_ino == st1.st_ino);
  char p3[300];
  snprintf(p3, sizeof p3, "%s/res/p0003/W.npy", tmpdir);
  assert_int_equal(stat(p3, &st1), 0);
  assert_true(st1.st_mtime > st0.st_mtime);
  char *after = slurp("res", "results.tsv");
  assert_string_equal(before, after);
  free(before);
  free(after);
  ufm_sweep_free(&sw);
}

/* Another experiment into an existing sweep directory is refused. */
static void test_changed_refused(void **s)
{
  (void)s;
  ufm_sweep sw, other;
  char err[UFM_ERRBUF] = "";
  assert_int_equal(build(&sw, "chg", small, err), UFM_OK);
  assert_int_equal(run(&sw, 0, 0, 1), UFM_OK);
  const char *const kv[] = {"classes=3, 4", "dim=log:2:8:3", "n=4", "iterations=61",
                            "log_points=5", "seeds=2", "lr=1.5", NULL};
  assert_int_equal(build(&other, "chg", kv, err), UFM_OK);
  ufm_sweep_opts o = {0};
  o.quiet = o.noplot = 1;
  o.nshards = 1;
  assert_int_equal(ufm_sweep_run(&other, &o, err), UFM_EINVAL);
  assert_non_null(strstr(err, "different sweep"));
  assert_int_equal(run(&other, 1, 0, 1), UFM_OK); /* --force */
  ufm_sweep_free(&sw);
  ufm_sweep_free(&other);
}

/* Three shards, merged, equal the whole sweep. */
static void test_shards_merge(void **s)
{
  (void)s;
  ufm_sweep whole, sh[3];
  char err[UFM_ERRBUF] = "";
  assert_int_equal(build(&whole, "whole", small, err), UFM_OK);
  assert_int_equal(run(&whole, 0, 0, 1), UFM_OK);
  char d[3][300], *dirs[3], out[300];
  for (size_t i = 0; i < 3; i++) {
    char name[16];
    snprintf(name, sizeof name, "shard%zu", i);
    assert_int_equal(build(&sh[i], name, small, err), UFM_OK);
    assert_int_equal(run(&sh[i], 0, i, 3), UFM_OK);
    snprintf(d[i], sizeof d[i], "%s/%s", tmpdir, name);
    dirs[i] = d[i];
  }
  char *part = slurp("shard1", "results.tsv");
  assert_int_equal(count_lines(part), 1 + 4);
  free(part);
  snprintf(out, sizeof out, "%s/merged", tmpdir);
  int st = ufm_sweep_merge(dirs, 3, out, 0, err);
  if (st != UFM_OK) printf("# merge: %s\n", err);
  assert_int_equal(st, UFM_OK);
  assert_same_file("whole", "merged", "results.tsv");
  assert_same_file("whole", "merged", "summary.tsv");
  for (size_t i = 0; i < 3; i++) ufm_sweep_free(&sh[i]);
  ufm_sweep_free(&whole);
}

/* seeds alone: replicas of one experiment, aggregated into one summary row. */
static void test_seeds_only(void **s)
{
  (void)s;
  ufm_sweep sw;
  char err[UFM_ERRBUF];
  const char *const kv[] = {"classes=3", "dim=4", "n=3", "iterations=30", "seeds=3", "seed=7", NULL};
  assert_int_equal(build(&sw, "seeds", kv, err), UFM_OK);
  assert_true(ufm_sweep_is_sweep(&sw));
  assert_int_equal(run(&sw, 0, 0, 1), UFM_OK);
  char *r = slurp("seeds", "results.tsv"), *sm = slurp("seeds", "summary.tsv");
  assert_int_equal(count_lines(r), 4);
  assert_int_equal(count_lines(sm), 2);
  assert_non_null(strstr(r, "\n2\tp0002\t9\tfinished"));
  assert_true(strncmp(sm, "seeds\tfinished\t", 15) == 0);
  assert_non_null(strstr(sm, "\n3\t3\t"));
  free(r);
  free(sm);
  ufm_sweep_free(&sw);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_point_order),     cmocka_unit_test(test_invalid_point),
      cmocka_unit_test(test_thread_invariance), cmocka_unit_test(test_resume),
      cmocka_unit_test(test_changed_refused), cmocka_unit_test(test_shards_merge),
      cmocka_unit_test(test_seeds_only),
  };
  return cmocka_run_group_tests_name("sweep", tests, tmpdir_setup, tmpdir_teardown);
}
