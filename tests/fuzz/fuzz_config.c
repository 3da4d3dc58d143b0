/* fuzz_config.c -- libFuzzer harness for experiment files (src/config.c, src/sweep.c).
 *
 * Each input is an experiment file: read (ufm_settings_read), each setting
 * expanded, and, when the grid is small, built into a sweep whose every
 * point is resolved and checked (ufm_sweep_build). Nothing may crash, hang
 * or trip a sanitizer; a refusal is one line starting with the file name
 * (or "default" for a default out). Oracles for accepted input: a point's
 * config.ini reads back and resolves to the same text, and sweep.ini
 * reads back. Build and run: make check-fuzz.
 */
#include "common.h"
#include "config.h"
#include "sweep.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char path[256], path2[256];

static void cleanup(void)
{
  unlink(path);
  unlink(path2);
}

static void write_file(const char *p, const void *data, size_t size)
{
  FILE *fp = fopen(p, "wb");
  if (!fp) abort();
  if (size && fwrite(data, 1, size, fp) != size) abort();
  fclose(fp);
}

static char *config_text(const ufm_config *cfg)
{
  char *buf = NULL;
  size_t len = 0;
  FILE *fp = open_memstream(&buf, &len);
  ufm_config_write(cfg, fp);
  fclose(fp);
  return buf;
}

static void check_message(const char *err)
{
  if (!err[0] || strchr(err, '\n')) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  if (!path[0]) {
    const char *dir = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    snprintf(path, sizeof path, "%s/ufm-fuzz-%ld.ini", dir, (long)getpid());
    snprintf(path2, sizeof path2, "%s/ufm-fuzz-%ld-config.ini", dir, (long)getpid());
    atexit(cleanup);
  }
  write_file(path, data, size);
  char err[UFM_ERRBUF] = "";
  ufm_settings set = {0};
  if (ufm_settings_read(&set, path, err) != UFM_OK) {
    check_message(err);
    ufm_settings_clear(&set);
    return 0;
  }
  /* the grid's size first: building checks every point, and a grid of
   * millions of points is valid input that takes seconds */
  double npoints = 1;
  for (size_t k = 0; k < set.n; k++) {
    char **vals;
    size_t n;
    if (ufm_config_expand(set.key[k], set.value[k], set.where[k], &vals, &n, NULL, err) != UFM_OK) abort();
    ufm_config_free_values(vals, n);
    npoints *= (double)n;
    if (!strcmp(set.key[k], "seeds")) npoints *= strtod(set.value[k], NULL);
  }
  if (npoints > 64) {
    ufm_settings_clear(&set);
    return 0;
  }
  ufm_sweep sw;
  int st = ufm_sweep_build(&sw, &set, "fuzz", err);
  ufm_settings_clear(&set);
  if (st != UFM_OK) {
    check_message(err);
    ufm_sweep_free(&sw);
    return 0;
  }
  /* sweep.ini reads back */
  char *text = ufm_sweep_ini_text(&sw);
  write_file(path2, text, strlen(text));
  free(text);
  ufm_settings s2 = {0};
  if (ufm_settings_read(&s2, path2, err) != UFM_OK) abort();
  ufm_settings_clear(&s2);
  /* point 0's config.ini reads back to the same resolved experiment */
  ufm_config *cfg;
  if (ufm_sweep_point_config(&sw, 0, &cfg, err) != UFM_OK) abort();
  char *t1 = config_text(cfg);
  write_file(path2, t1, strlen(t1));
  ufm_config *back = ufm_config_new();
  if (ufm_config_read_file(back, path2, err) != UFM_OK) abort();
  free(back->name);
  back->name = strdup(cfg->name);
  if (ufm_config_finish(back, err) != UFM_OK) abort();
  char *t2 = config_text(back);
  if (strcmp(t1, t2)) abort();
  free(t1);
  free(t2);
  ufm_config_free(back);
  ufm_config_free(cfg);
  ufm_sweep_free(&sw);
  return 0;
}
