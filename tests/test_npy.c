/* test_npy.c -- .npy writer/reader: round trips, numpy-exact headers, hostile input. */
#define _POSIX_C_SOURCE 200809L /* mkdtemp, opendir, rmdir */
#include "testutil.h"

#include "../src/common.h"
#include "../src/fileio.h"
#include "../src/npy.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Fixture: a fresh temporary directory per test, removed afterwards.        */
/* ------------------------------------------------------------------------ */

typedef struct {
  char dir[64];
} tmpdir;

static int setup_dir(void **state)
{
  tmpdir *t = ufm_malloc(sizeof *t);
  snprintf(t->dir, sizeof t->dir, "/tmp/ufm_test_npy_XXXXXX");
  if (!mkdtemp(t->dir)) {
    free(t);
    return -1;
  }
  *state = t;
  return 0;
}

static int teardown_dir(void **state)
{
  tmpdir *t = *state;
  DIR *d = opendir(t->dir);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      char *p = ufm_path_join(t->dir, e->d_name);
      unlink(p);
      free(p);
    }
    closedir(d);
  }
  int rc = rmdir(t->dir);
  free(t);
  return rc;
}

/* ------------------------------------------------------------------------ */
/* Helpers                                                                   */
/* ------------------------------------------------------------------------ */

static char *tpath(void **state, const char *name)
{
  return ufm_path_join(((tmpdir *)*state)->dir, name);
}

static void write_bytes(const char *path, const void *buf, size_t n)
{
  FILE *fp = fopen(path, "wb");
  assert_non_null(fp);
  if (n > 0) assert_int_equal(fwrite(buf, 1, n, fp), n);
  assert_int_equal(fclose(fp), 0);
}

/* Whole file into a malloc'd buffer. */
static unsigned char *slurp(const char *path, size_t *n)
{
  FILE *fp = fopen(path, "rb");
  assert_non_null(fp);
  size_t cap = 1 << 16, len = 0;
  unsigned char *buf = ufm_malloc(cap);
  size_t got;
  while ((got = fread(buf + len, 1, cap - len, fp)) > 0) {
    len += got;
    if (len == cap) {
      cap *= 2;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
  }
  fclose(fp);
  *n = len;
  return buf;
}

/* Build a .npy image by hand: magic, version major.0, little-endian header
 * length (2 bytes for 1.0, 4 for 2.0/3.0), the dict padded with spaces and
 * '\n' to a multiple of 64 as numpy does, then ndata raw data bytes. If
 * hlen_override is nonzero it is stored as the header length instead. */
static size_t build_npy(unsigned char *out, size_t outsize, int major, const char *dict,
                        const void *data, size_t ndata, unsigned long hlen_override)
{
  size_t pre = major == 1 ? 10 : 12;
  size_t dlen = strlen(dict);
  size_t total_hdr = pre + dlen + 1;
  total_hdr += (64 - total_hdr % 64) % 64;
  size_t hlen = total_hdr - pre;
  assert_true(total_hdr + ndata <= outsize);
  memcpy(out, "\x93NUMPY", 6);
  out[6] = (unsigned char)major;
  out[7] = 0;
  unsigned long hl = hlen_override ? hlen_override : hlen;
  out[8] = (unsigned char)(hl & 0xff);
  out[9] = (unsigned char)((hl >> 8) & 0xff);
  if (major != 1) {
    out[10] = (unsigned char)((hl >> 16) & 0xff);
    out[11] = (unsigned char)((hl >> 24) & 0xff);
  }
  memcpy(out + pre, dict, dlen);
  memset(out + pre + dlen, ' ', total_hdr - pre - dlen - 1);
  out[total_hdr - 1] = '\n';
  if (ndata > 0) memcpy(out + total_hdr, data, ndata);
  return total_hdr + ndata;
}

/* The read must fail with status, leave no data, and name the file first. */
static void expect_reject_file(const char *path, int status, const char *fragment)
{
  char errbuf[UFM_ERRBUF] = "";
  double *data = (double *)1;
  int ndim = -1;
  size_t shape[UFM_NPY_MAXDIM];
  int got = ufm_npy_read_f8(path, &data, &ndim, shape, errbuf);
  if (got != status) print_error("%s: status %d, expected %d: %s\n", path, got, status, errbuf);
  assert_int_equal(got, status);
  assert_null(data);
  assert_int_equal(ndim, 0);
  size_t lp = strlen(path);
  if (strncmp(errbuf, path, lp) != 0 || strncmp(errbuf + lp, ": ", 2) != 0)
    print_error("message does not start with the path: '%s'\n", errbuf);
  assert_memory_equal(errbuf, path, lp);
  assert_memory_equal(errbuf + lp, ": ", 2);
  assert_null(strchr(errbuf, '\n'));
  if (fragment && !strstr(errbuf, fragment))
    print_error("message '%s' lacks '%s'\n", errbuf, fragment);
  if (fragment) assert_non_null(strstr(errbuf, fragment));
}

/* Write bytes to <dir>/name and expect the reader to reject them. */
static void expect_reject(void **state, const char *name, const void *bytes, size_t n, int status,
                          const char *fragment)
{
  char *p = tpath(state, name);
  write_bytes(p, bytes, n);
  expect_reject_file(p, status, fragment);
  free(p);
}

/* Read path and check it holds ndim/shape and the values ref[0..]. */
static void expect_array(const char *path, int ndim, const size_t *shape, const double *ref)
{
  char errbuf[UFM_ERRBUF] = "";
  double *data = NULL;
  int rndim = -1;
  size_t rshape[UFM_NPY_MAXDIM];
  int st = ufm_npy_read_f8(path, &data, &rndim, rshape, errbuf);
  if (st != UFM_OK) print_error("%s\n", errbuf);
  assert_int_equal(st, UFM_OK);
  assert_non_null(data);
  assert_int_equal(rndim, ndim);
  size_t count = 1;
  for (int i = 0; i < ndim; i++) {
    assert_int_equal(rshape[i], shape[i]);
    count *= shape[i];
  }
  for (size_t k = 0; k < count; k++) assert_memory_equal(&data[k], &ref[k], sizeof(double));
  free(data);
}

static const double vals12[12] = {1.5, -2.0, 0.25, 1e300, -1e-300, 0.0,
                                  -0.0, 3.0,  4.0,  5.0,   6.0,     7.0};

/* ------------------------------------------------------------------------ */
/* Round trips                                                               */
/* ------------------------------------------------------------------------ */

static void roundtrip_f8(void **state, const char *name, int ndim, const size_t *shape)
{
  size_t count = 1;
  for (int i = 0; i < ndim; i++) count *= shape[i];
  double *a = ufm_malloc(count * sizeof(double));
  for (size_t k = 0; k < count; k++) a[k] = (double)k * 0.1 - 3.0 + (k % 7 == 3 ? 1e-17 : 0);
  char *p = tpath(state, name);
  char errbuf[UFM_ERRBUF] = "";
  int st = ufm_npy_write_f8(p, a, ndim, shape, errbuf);
  if (st != UFM_OK) print_error("%s\n", errbuf);
  assert_int_equal(st, UFM_OK);
  expect_array(p, ndim, shape, a);
  free(p);
  free(a);
}

static void test_roundtrip_f8(void **state)
{
  const size_t cp[2] = {3, 5};   /* (C, p) */
  const size_t pn[2] = {5, 77};  /* (p, N) */
  const size_t c1[1] = {4};      /* (C,)   */
  const size_t z03[2] = {0, 3};  /* empty  */
  const size_t z30[2] = {3, 0};
  const size_t z0[1] = {0};
  const size_t d4[4] = {2, 3, 4, 5};
  roundtrip_f8(state, "cp.npy", 2, cp);
  roundtrip_f8(state, "pn.npy", 2, pn);
  roundtrip_f8(state, "c.npy", 1, c1);
  roundtrip_f8(state, "z03.npy", 2, z03);
  roundtrip_f8(state, "z30.npy", 2, z30);
  roundtrip_f8(state, "z0.npy", 1, z0);
  roundtrip_f8(state, "d4.npy", 4, d4);
  roundtrip_f8(state, "scalar.npy", 0, NULL);

  /* Special values survive bit for bit. */
  const double special[4] = {NAN, INFINITY, -INFINITY, 5e-324};
  const size_t s4[1] = {4};
  char *p = tpath(state, "special.npy");
  assert_int_equal(ufm_npy_write_f8(p, special, 1, s4, NULL), UFM_OK);
  expect_array(p, 1, s4, special);
  free(p);
}

static void test_overwrite_is_atomic(void **state)
{
  /* A second write replaces the file whole; no temporary file is left. */
  char *p = tpath(state, "w.npy");
  const size_t s1[1] = {12}, s2[2] = {2, 2};
  assert_int_equal(ufm_npy_write_f8(p, vals12, 1, s1, NULL), UFM_OK);
  assert_int_equal(ufm_npy_write_f8(p, vals12 + 4, 2, s2, NULL), UFM_OK);
  expect_array(p, 2, s2, vals12 + 4);
  DIR *d = opendir(((tmpdir *)*state)->dir);
  assert_non_null(d);
  struct dirent *e;
  int n = 0;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  assert_int_equal(n, 1);
  free(p);
}

static void test_write_errors(void **state)
{
  char errbuf[UFM_ERRBUF];
  const size_t s5[5] = {1, 1, 1, 1, 1};
  char *p = tpath(state, "bad.npy");
  assert_int_equal(ufm_npy_write_f8(p, vals12, 5, s5, errbuf), UFM_EINVAL);
  assert_memory_equal(errbuf, p, strlen(p));
  assert_int_equal(ufm_npy_write_f8(p, vals12, -1, s5, errbuf), UFM_EINVAL);
  const size_t huge[2] = {SIZE_MAX / 2, 3};
  assert_int_equal(ufm_npy_write_f8(p, vals12, 2, huge, errbuf), UFM_EINVAL);
  assert_memory_equal(errbuf, p, strlen(p));
  assert_int_equal(access(p, F_OK), -1); /* nothing was created */
  free(p);
  const size_t s1[1] = {1};
  assert_int_equal(ufm_npy_write_f8("/nonexistent-dir/x.npy", vals12, 1, s1, errbuf), UFM_EIO);
  assert_memory_equal(errbuf, "/nonexistent-dir/x.npy: ", 24);
}

/* ------------------------------------------------------------------------ */
/* Byte-exact agreement with numpy.save                                      */
/* ------------------------------------------------------------------------ */

/* The expected bytes below were produced with numpy 1.24.2 (/usr/bin/python3):
 *   b = io.BytesIO(); np.save(b, np.arange(12.0).reshape(3, 4)); b.getvalue()[:128]
 * 'v\x00' is the header length 118; 21 - len('3') = 20 of the spaces are
 * numpy's GROWTH_AXIS_MAX_DIGITS spare room, the rest pad to 128 bytes. */
static const char numpy_hdr_3x4_f8[] =
    "\x93NUMPY\x01\x00v\x00{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }"
    "                                                          \n";

/* numpy.lib.format._write_array_header(b, {'descr': '<f8', 'fortran_order': False,
 *   'shape': (0, 10**14, 10**14, 10000)}, (1, 0)): the unpadded header is
 * exactly 64-aligned, and numpy then adds a full 64 bytes (length 0xb6 = 182). */
static const char numpy_hdr_aligned[] =
    "\x93NUMPY\x01\x00\xb6\x00{'descr': '<f8', 'fortran_order': False, 'shape': "
    "(0, 100000000000000, 100000000000000, 10000), }"
    "                                                                                    \n";

static void check_header(void **state, const char *name, int ndim, const size_t *shape,
                         const char *expect, size_t expect_len)
{
  char *p = tpath(state, name);
  assert_int_equal(ufm_npy_write_f8(p, vals12, ndim, shape, NULL), UFM_OK);
  size_t n;
  unsigned char *buf = slurp(p, &n);
  assert_true(n >= expect_len);
  assert_memory_equal(buf, expect, expect_len);
  assert_int_equal(expect_len % 64, 0);
  free(buf);
  free(p);
}

static void test_header_matches_numpy(void **state)
{
  assert_int_equal(sizeof numpy_hdr_3x4_f8 - 1, 128);
  assert_int_equal(sizeof numpy_hdr_aligned - 1, 192);
  const size_t s34[2] = {3, 4};
  const size_t sal[4] = {0, 100000000000000u, 100000000000000u, 10000};
  check_header(state, "h34.npy", 2, s34, numpy_hdr_3x4_f8, 128);
  check_header(state, "hal.npy", 4, sal, numpy_hdr_aligned, 192);

  /* 1-d and 0-d shapes as numpy spells them. */
  const size_t s5[1] = {5};
  char *p = tpath(state, "h5.npy");
  assert_int_equal(ufm_npy_write_f8(p, vals12, 1, s5, NULL), UFM_OK);
  size_t n;
  unsigned char *buf = slurp(p, &n);
  assert_int_equal(n, 128 + 5 * 8);
  assert_non_null(strstr((char *)buf + 10, "'shape': (5,), }"));
  free(buf);
  free(p);
  p = tpath(state, "h0.npy");
  assert_int_equal(ufm_npy_write_f8(p, vals12, 0, NULL, NULL), UFM_OK);
  buf = slurp(p, &n);
  assert_int_equal(n, 128 + 8);
  assert_non_null(strstr((char *)buf + 10, "'shape': (), }"));
  assert_memory_equal(buf + 128, &vals12[0], 8);
  free(buf);
  free(p);
}

static void test_roundtrip_i4(void **state)
{
  /* Whole file as numpy 1.24.2 writes np.array([[1, -2, 3], [4, 5, 2**31 - 1]], dtype='<i4'):
   * the 128-byte header, then data 01000000 feffffff 03000000 04000000 05000000 ffffff7f. */
  static const char hdr[] =
      "\x93NUMPY\x01\x00v\x00{'descr': '<i4', 'fortran_order': False, 'shape': (2, 3), }"
      "                                                          \n";
  static const unsigned char data[24] = {0x01, 0,    0,    0,    0xfe, 0xff, 0xff, 0xff,
                                         0x03, 0,    0,    0,    0x04, 0,    0,    0,
                                         0x05, 0,    0,    0,    0xff, 0xff, 0xff, 0x7f};
  const int32_t a[6] = {1, -2, 3, 4, 5, INT32_MAX};
  const size_t s23[2] = {2, 3};
  char *p = tpath(state, "i4.npy");
  assert_int_equal(ufm_npy_write_i4(p, a, 2, s23, NULL), UFM_OK);
  size_t n;
  unsigned char *buf = slurp(p, &n);
  assert_int_equal(n, 128 + 24);
  assert_memory_equal(buf, hdr, 128);
  assert_memory_equal(buf + 128, data, 24);
  free(buf);
  /* The f8 reader refuses it, naming the dtype. */
  expect_reject_file(p, UFM_EINVAL, "dtype '<i4' is not float64 ('<f8')");
  free(p);

  /* Empty and 1-d int arrays too. */
  const size_t z[2] = {0, 3}, s1[1] = {6};
  p = tpath(state, "i4z.npy");
  assert_int_equal(ufm_npy_write_i4(p, NULL, 2, z, NULL), UFM_OK);
  buf = slurp(p, &n);
  assert_int_equal(n, 128);
  assert_non_null(
      strstr((char *)buf + 10, "'descr': '<i4', 'fortran_order': False, 'shape': (0, 3), }"));
  free(buf);
  free(p);
  p = tpath(state, "i41.npy");
  assert_int_equal(ufm_npy_write_i4(p, a, 1, s1, NULL), UFM_OK);
  buf = slurp(p, &n);
  assert_int_equal(n, 128 + 24);
  assert_memory_equal(buf + 128, data, 24);
  free(buf);
  free(p);
}

/* ------------------------------------------------------------------------ */
/* Files as numpy (or other writers) produce them                            */
/* ------------------------------------------------------------------------ */

static void test_read_numpy_files(void **state)
{
  unsigned char buf[1024];
  size_t n;
  char *p;
  const size_t s22[2] = {2, 2}, s3[1] = {3}, s223[3] = {2, 2, 3};

  /* Version 1.0 exactly as np.save(np.array([[1.5, -2.0], [0.25, 1e300]])) writes it. */
  memcpy(buf, numpy_hdr_3x4_f8, 128);
  memcpy(buf + 10 + 50, "(2, 2), }", 9);
  memcpy(buf + 128, vals12, 32);
  p = tpath(state, "v1.npy");
  write_bytes(p, buf, 128 + 32);
  expect_array(p, 2, s22, vals12);
  free(p);

  /* Version 2.0 as numpy.lib.format.write_array(f, np.arange(3.0), version=(2, 0))
   * writes it: 4-byte header length 't\0\0\0' = 116, total header 128 bytes. */
  const double ar3[3] = {0.0, 1.0, 2.0};
  n = build_npy(buf, sizeof buf, 2,
                "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }"
                "                    ",
                ar3, sizeof ar3, 0);
  assert_int_equal(n, 128 + 24);
  assert_memory_equal(buf, "\x93NUMPY\x02\x00t\x00\x00\x00", 12);
  p = tpath(state, "v2.npy");
  write_bytes(p, buf, n);
  expect_array(p, 1, s3, ar3);
  free(p);

  /* Version 3.0 (utf-8 header; same layout as 2.0). */
  n = build_npy(buf, sizeof buf, 3, "{'descr': '<f8', 'fortran_order': False, 'shape': (3,), }",
                ar3, sizeof ar3, 0);
  p = tpath(state, "v3.npy");
  write_bytes(p, buf, n);
  expect_array(p, 1, s3, ar3);
  free(p);

  /* Lenient spellings a hand-written or older writer may use: keys in any
   * order, double quotes, no spaces, trailing commas or none, no padding. */
  static const char *dicts[] = {
      "{'shape': (2, 2, 3), 'fortran_order': False, 'descr': '<f8'}",
      "{\"descr\":\"<f8\",\"fortran_order\":False,\"shape\":(2,2,3,),}",
      "{ 'fortran_order' : False , 'shape' : ( 2 , 2 , 3 ) , 'descr' : '<f8' , }",
      "\t{'descr': '<f8',\n 'fortran_order': False,\r\n 'shape': (2, 2, 3)}\r\n",
  };
  for (size_t i = 0; i < sizeof dicts / sizeof dicts[0]; i++) {
    n = build_npy(buf, sizeof buf, 1, dicts[i], vals12, sizeof vals12, 0);
    p = tpath(state, "lenient.npy");
    write_bytes(p, buf, n);
    expect_array(p, 3, s223, vals12);
    free(p);
  }
  /* Unpadded: header not a multiple of 64, no final newline. */
  const char *raw = "{'descr':'<f8','fortran_order':False,'shape':(1,)}";
  size_t rl = strlen(raw);
  memcpy(buf, "\x93NUMPY\x01\x00", 8);
  buf[8] = (unsigned char)rl;
  buf[9] = 0;
  memcpy(buf + 10, raw, rl);
  memcpy(buf + 10 + rl, vals12, 8);
  p = tpath(state, "unpadded.npy");
  write_bytes(p, buf, 10 + rl + 8);
  const size_t s1[1] = {1};
  expect_array(p, 1, s1, vals12);
  free(p);
}

/* ------------------------------------------------------------------------ */
/* Rejection of malformed files                                              */
/* ------------------------------------------------------------------------ */

#define F8(shape) "{'descr': '<f8', 'fortran_order': False, 'shape': " shape ", }"

static void reject_dict(void **state, const char *name, const char *dict, size_t ndata,
                        const char *fragment)
{
  unsigned char buf[2048];
  assert_true(ndata <= 96 * 8);
  static double zeros[96];
  size_t n = build_npy(buf, sizeof buf, 1, dict, zeros, ndata * 8, 0);
  expect_reject(state, name, buf, n, UFM_EINVAL, fragment);
}

static void test_reject_bad_magic(void **state)
{
  unsigned char buf[256];
  size_t n = build_npy(buf, sizeof buf, 1, F8("(2,)"), vals12, 16, 0);
  buf[0] = 0x92;
  expect_reject(state, "magic1.npy", buf, n, UFM_EINVAL, "not a .npy file (bad magic)");
  buf[0] = 0x93;
  buf[3] = 'M' + 32;
  expect_reject(state, "magic2.npy", buf, n, UFM_EINVAL, "bad magic");
  expect_reject(state, "text.npy", "hello, world\n", 13, UFM_EINVAL, "bad magic");
  expect_reject(state, "short.npy", "\x93NU", 3, UFM_EINVAL, "truncated");
  expect_reject(state, "short2.npy", "\x93NUMPY\x01\x00", 8, UFM_EINVAL, "truncated");
  expect_reject(state, "short3.npy", "\x93NUMPY\x02\x00\x00\x00", 10, UFM_EINVAL, "truncated");
}

static void test_reject_bad_version(void **state)
{
  unsigned char buf[256];
  size_t n = build_npy(buf, sizeof buf, 1, F8("(2,)"), vals12, 16, 0);
  buf[6] = 4;
  expect_reject(state, "v4.npy", buf, n, UFM_EINVAL, "unsupported .npy format version 4.0");
  buf[6] = 0;
  expect_reject(state, "v0.npy", buf, n, UFM_EINVAL, "version 0.0");
  buf[6] = 1;
  buf[7] = 1;
  expect_reject(state, "v11.npy", buf, n, UFM_EINVAL, "version 1.1");
}

static void test_reject_header_length(void **state)
{
  unsigned char buf[256];
  size_t n = build_npy(buf, sizeof buf, 1, F8("(2,)"), vals12, 16, 0xffff);
  expect_reject(state, "hlen1.npy", buf, n, UFM_EINVAL, "exceeds the file size");
  n = build_npy(buf, sizeof buf, 2, F8("(2,)"), vals12, 16, 0xffffffffu);
  expect_reject(state, "hlen2.npy", buf, n, UFM_EINVAL, "exceeds the file size");
  /* One past the end of the file. */
  n = build_npy(buf, sizeof buf, 1, F8("(2,)"), vals12, 16, 128 - 10 + 16 + 1);
  expect_reject(state, "hlen3.npy", buf, n, UFM_EINVAL, "exceeds the file size");
  /* Shorter than the dict: the dict is cut off. */
  n = build_npy(buf, sizeof buf, 1, F8("(2,)"), vals12, 16, 20);
  expect_reject(state, "hlen4.npy", buf, n, UFM_EINVAL, "malformed header");
  n = build_npy(buf, sizeof buf, 1, F8("(2,)"), vals12, 16, 0);
  buf[8] = buf[9] = 0; /* zero-length header */
  expect_reject(state, "hlen5.npy", buf, n, UFM_EINVAL, "malformed header");
}

static void test_reject_dict_contents(void **state)
{
  reject_dict(state, "nodescr.npy", "{'fortran_order': False, 'shape': (2,), }", 2,
              "header lacks 'descr'");
  reject_dict(state, "noshape.npy", "{'descr': '<f8', 'fortran_order': False, }", 1,
              "header lacks 'shape'");
  reject_dict(state, "noforder.npy", "{'descr': '<f8', 'shape': (2,), }", 2,
              "header lacks 'fortran_order'");
  reject_dict(state, "f4.npy", "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 1,
              "dtype '<f4' is not float64 ('<f8')");
  reject_dict(state, "bigend.npy", "{'descr': '>f8', 'fortran_order': False, 'shape': (2,), }",
              2, "dtype '>f8' is not float64 ('<f8')");
  reject_dict(state, "pipef8.npy", "{'descr': '|f8', 'fortran_order': False, 'shape': (2,), }",
              2, "dtype '|f8'");
  reject_dict(state, "struct.npy",
              "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (2,), }", 2,
              "dtype is not float64");
  reject_dict(state, "fortran.npy", "{'descr': '<f8', 'fortran_order': True, 'shape': (2, 3), }",
              6, "fortran_order arrays are not supported");
  reject_dict(state, "forder01.npy", "{'descr': '<f8', 'fortran_order': 0, 'shape': (2,), }", 2,
              "fortran_order is not True or False");
  reject_dict(state, "falsey.npy", "{'descr': '<f8', 'fortran_order': Falsey, 'shape': (2,), }",
              2, "fortran_order is not True or False");
  reject_dict(state, "negdim.npy", F8("(2, -3)"), 6, "negative dimension");
  reject_dict(state, "overflow.npy", F8("(4294967296, 4294967296)"), 1, "shape product overflows");
  reject_dict(state, "overflow8.npy", F8("(4611686018427387904,)"), 1, "shape product overflows");
  reject_dict(state, "bigdim.npy", F8("(99999999999999999999999,)"), 1, "too large");
  reject_dict(state, "toobig.npy", F8("(1000000, 1000000)"), 1, "truncated");
  reject_dict(state, "fivedim.npy", F8("(1, 1, 1, 1, 1)"), 1, "more than 4 dimensions");
  reject_dict(state, "notuple.npy", F8("(5)"), 5, "shape is not a tuple");
  reject_dict(state, "list.npy", F8("[5]"), 5, "shape is not a tuple");
  reject_dict(state, "float.npy", F8("(5.0,)"), 5, "not an integer");
  reject_dict(state, "alpha.npy", F8("(n,)"), 5, "not an integer");
  reject_dict(state, "hex.npy", F8("(0x5,)"), 5, "not an integer");
  reject_dict(state, "comma2.npy", F8("(5,,)"), 5, "malformed header");
  reject_dict(state, "opencomma.npy", F8("(,)"), 5, "malformed header");
  reject_dict(state, "unclosed.npy", F8("(5, 2"), 10, "malformed header");
  reject_dict(state, "unknown.npy",
              "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'x': 1}", 2,
              "unknown key 'x'");
  reject_dict(state, "dup.npy",
              "{'descr': '<f8', 'fortran_order': False, 'shape': (2,), 'shape': (2,)}", 2,
              "duplicate key 'shape'");
  reject_dict(state, "nobrace.npy", "'descr': '<f8', 'fortran_order': False, 'shape': (2,)", 2,
              "not a dict");
  reject_dict(state, "unclosed2.npy", "{'descr': '<f8', 'fortran_order': False, 'shape': (2,)", 2,
              "malformed header");
  reject_dict(state, "after.npy", F8("(2,)") " x", 2, "text after the dict");
  reject_dict(state, "escape.npy", "{'de\\scr': '<f8', 'fortran_order': False, 'shape': (2,)}", 2,
              "expected a quoted key");
  reject_dict(state, "openstr.npy", "{'descr': '<f8", 2, "malformed header");
  reject_dict(state, "nocolon.npy", "{'descr' '<f8', 'fortran_order': False, 'shape': (2,)}", 2,
              "expected ':'");

  /* A NUL inside the header is just a bad character, not an end of string. */
  unsigned char buf[256];
  size_t n = build_npy(buf, sizeof buf, 1, F8("(2,)"), vals12, 16, 0);
  buf[10 + 12] = '\0'; /* inside '<f8' */
  expect_reject(state, "nul.npy", buf, n, UFM_EINVAL, "dtype is not float64");
}

static void test_reject_data_size(void **state)
{
  reject_dict(state, "trunc.npy", F8("(3, 4)"), 7,
              "truncated: header says 12 values, file holds 7");
  reject_dict(state, "trunc0.npy", F8("(3,)"), 0, "truncated: header says 3 values, file holds 0");
  reject_dict(state, "trail.npy", F8("(3, 4)"), 13, "trailing data after the array");
  reject_dict(state, "trail0.npy", F8("(0, 4)"), 1, "trailing data after the array");
  reject_dict(state, "scalar0.npy", F8("()"), 0, "truncated");

  /* A partial value at the end: 12 values wanted, 7.5 present. */
  unsigned char buf[512];
  size_t n = build_npy(buf, sizeof buf, 1, F8("(3, 4)"), vals12, 60, 0);
  expect_reject(state, "partial.npy", buf, n, UFM_EINVAL, "file holds 7");
  /* One stray byte after a complete array. */
  n = build_npy(buf, sizeof buf, 1, F8("(3, 4)"), vals12, 96, 0);
  buf[n++] = 0;
  expect_reject(state, "stray.npy", buf, n, UFM_EINVAL, "trailing data");
}

static void test_reject_io(void **state)
{
  char *p = tpath(state, "does-not-exist.npy");
  expect_reject_file(p, UFM_EIO, "cannot open");
  free(p);
  expect_reject(state, "empty.npy", "", 0, UFM_EINVAL, "empty file");
  /* A directory opens on Linux but cannot be read. */
  expect_reject_file(((tmpdir *)*state)->dir, UFM_EIO, NULL);
}

/* ------------------------------------------------------------------------ */
/* Poor man's fuzzing: every prefix and many single-byte corruptions of a    */
/* valid file must be answered with a status, never a crash (run under       */
/* valgrind or ASan to check for out-of-bounds reads).                      */
/* ------------------------------------------------------------------------ */

static void test_corruptions(void **state)
{
  unsigned char good[256], buf[256];
  size_t n = build_npy(good, sizeof good, 1, F8("(3, 4)"), vals12, 96, 0);
  char *p = tpath(state, "fuzz.npy");
  char errbuf[UFM_ERRBUF];
  double *data;
  int ndim;
  size_t shape[UFM_NPY_MAXDIM];

  for (size_t len = 0; len < n; len++) {
    write_bytes(p, good, len);
    int st = ufm_npy_read_f8(p, &data, &ndim, shape, errbuf);
    assert_int_equal(st, UFM_EINVAL);
    assert_null(data);
    assert_memory_equal(errbuf, p, strlen(p));
  }
  static const unsigned char subst[] = {0x00, 0xff, '\'', '"', '(', ')', ',', ':', '{', '}',
                                        ' ',  '-',  '9',  'x', '\\', '\n', 0x80};
  int ok = 0;
  for (size_t pos = 0; pos < 128; pos++) {
    for (size_t s = 0; s < sizeof subst; s++) {
      memcpy(buf, good, n);
      buf[pos] = subst[s];
      write_bytes(p, buf, n);
      int st = ufm_npy_read_f8(p, &data, &ndim, shape, errbuf);
      assert_true(st == UFM_OK || st == UFM_EINVAL);
      if (st == UFM_OK) {
        ok++;
        assert_non_null(data);
        free(data);
      } else {
        assert_null(data);
        assert_memory_equal(errbuf, p, strlen(p));
      }
    }
  }
  assert_true(ok > 0); /* e.g. a changed padding space */
  free(p);
}

int main(void)
{
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_roundtrip_f8, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_overwrite_is_atomic, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_write_errors, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_header_matches_numpy, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_roundtrip_i4, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_read_numpy_files, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_reject_bad_magic, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_reject_bad_version, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_reject_header_length, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_reject_dict_contents, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_reject_data_size, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_reject_io, setup_dir, teardown_dir),
      cmocka_unit_test_setup_teardown(test_corruptions, setup_dir, teardown_dir),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
