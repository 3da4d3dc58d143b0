/* npy.c -- NumPy .npy reader ('<f8', versions 1.0-3.0) and writer ('<f8', '<i4', version 1.0). */
#include "npy.h"
#include "common.h"
#include "fileio.h"

#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The data bytes of '<f8' and '<i4' arrays are copied to and from memory
 * as they are, so the host must be little-endian with 8-byte IEEE doubles. */
#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "npy.c assumes a little-endian host");
#else
#error "npy.c assumes a little-endian host and needs __BYTE_ORDER__ to check it"
#endif
_Static_assert(sizeof(double) == 8, "npy.c assumes 8-byte doubles");
_Static_assert(sizeof(int32_t) == 4, "int32_t must be 4 bytes");

#define NPY_MAGIC "\x93NUMPY"
#define NPY_MAGIC_LEN 6
#define NPY_ALIGN 64          /* numpy.save pads the header to this multiple   */
#define NPY_GROWTH_DIGITS 21  /* numpy's GROWTH_AXIS_MAX_DIGITS spare spaces   */
#define NPY_MAX_HEADER 65536  /* longest header we bother to parse (numpy: 10000) */

/* ------------------------------------------------------------------------ */
/* Shared helpers                                                            */
/* ------------------------------------------------------------------------ */

/* Number of elements of a shape, or 0 with *overflow set when the product
 * does not fit in size_t. A zero dimension makes the product 0 whatever the
 * other dimensions are (as in numpy), so it is looked for first. */
static size_t shape_count(int ndim, const size_t *shape, int *overflow)
{
  *overflow = 0;
  for (int i = 0; i < ndim; i++)
    if (shape[i] == 0) return 0;
  size_t n = 1;
  for (int i = 0; i < ndim; i++) {
    if (shape[i] > SIZE_MAX / n) {
      *overflow = 1;
      return 0;
    }
    n *= shape[i];
  }
  return n;
}

/* ------------------------------------------------------------------------ */
/* Writer                                                                    */
/* ------------------------------------------------------------------------ */

/* Build the complete version-1.0 header (magic, version, length, padded
 * dict) into out, byte for byte what numpy.save writes (numpy 1.24,
 * numpy/lib/format.py: _write_array_header and _wrap_header): keys sorted,
 * repr() of the shape tuple, GROWTH_AXIS_MAX_DIGITS - len(repr(shape[0]))
 * spare spaces, then spaces and '\n' up to a multiple of 64 bytes (a full
 * extra 64 when already aligned, as numpy does). Returns the header size,
 * or 0 if it does not fit in outsize (cannot happen with ndim <= MAXDIM). */
static size_t format_header(char *out, size_t outsize, const char *descr, int ndim,
                            const size_t *shape)
{
  char dict[256];
  size_t len = 0;
  int k = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (", descr);
  if (k < 0 || (size_t)k >= sizeof dict) return 0;
  len = (size_t)k;
  for (int i = 0; i < ndim; i++) {
    k = snprintf(dict + len, sizeof dict - len, "%s%zu", i > 0 ? ", " : "", shape[i]);
    if (k < 0 || (size_t)k >= sizeof dict - len) return 0;
    len += (size_t)k;
  }
  k = snprintf(dict + len, sizeof dict - len, "%s), }", ndim == 1 ? "," : "");
  if (k < 0 || (size_t)k >= sizeof dict - len) return 0;
  len += (size_t)k;
  if (ndim > 0) {
    char digits[32];
    int nd = snprintf(digits, sizeof digits, "%zu", shape[0]);
    for (int i = nd; i < NPY_GROWTH_DIGITS && len < sizeof dict; i++) dict[len++] = ' ';
  }

  size_t hlen = len + 1; /* dict and the final '\n' */
  size_t pad = NPY_ALIGN - (NPY_MAGIC_LEN + 4 + hlen) % NPY_ALIGN;
  size_t total = NPY_MAGIC_LEN + 4 + hlen + pad;
  if (total > outsize || hlen + pad > 65535) return 0;

  memcpy(out, NPY_MAGIC, NPY_MAGIC_LEN);
  out[6] = 1; /* version 1.0 */
  out[7] = 0;
  out[8] = (char)((hlen + pad) & 0xff);
  out[9] = (char)((hlen + pad) >> 8);
  memcpy(out + 10, dict, len);
  memset(out + 10 + len, ' ', pad);
  out[total - 1] = '\n';
  return total;
}

/* Common body of the typed writers: check the arguments, then write header
 * and raw little-endian data through an atomic file so that a failed write
 * never leaves a half-written .npy behind. */
static int write_array(const char *path, const char *descr, const void *data, size_t elsize,
                       int ndim, const size_t *shape, char *errbuf)
{
  if (ndim < 0 || ndim > UFM_NPY_MAXDIM)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: cannot write a %d-dimensional array (at most %d)",
                    path, ndim, UFM_NPY_MAXDIM);
  if (ndim > 0 && !shape)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: no shape given for a %d-dimensional array", path,
                    ndim);
  int overflow;
  size_t count = shape_count(ndim, shape, &overflow);
  if (overflow || count > SIZE_MAX / elsize)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: array shape has too many elements", path);
  if (count > 0 && !data)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: no data given for %zu values", path, count);

  char header[512];
  size_t hsize = format_header(header, sizeof header, descr, ndim, shape);
  if (hsize == 0) return ufm_fail(errbuf, UFM_EINVAL, "%s: cannot format .npy header", path);

  ufm_afile af;
  int status = ufm_afile_open(&af, path, errbuf);
  if (status != UFM_OK) return status;
  errno = 0;
  int ok = fwrite(header, 1, hsize, af.fp) == hsize;
  if (ok && count > 0) ok = fwrite(data, elsize, count, af.fp) == count;
  if (!ok) {
    int e = errno ? errno : EIO;
    ufm_afile_abort(&af);
    return ufm_fail(errbuf, UFM_EIO, "%s: write failed: %s", path, strerror(e));
  }
  return ufm_afile_commit(&af, errbuf);
}

int ufm_npy_write_f8(const char *path, const double *data, int ndim, const size_t *shape,
                     char *errbuf)
{
  return write_array(path, "<f8", data, sizeof(double), ndim, shape, errbuf);
}

int ufm_npy_write_i4(const char *path, const int32_t *data, int ndim, const size_t *shape,
                     char *errbuf)
{
  return write_array(path, "<i4", data, sizeof(int32_t), ndim, shape, errbuf);
}

/* ------------------------------------------------------------------------ */
/* Header parser                                                             */
/* ------------------------------------------------------------------------ */

/* The header is a Python dict literal, but we only need the three keys numpy
 * itself requires, so a small recursive-descent scanner over [p, end) does:
 * it never relies on NUL termination and never looks past end. Whitespace,
 * key order, either quote character, and trailing commas are accepted as in
 * Python; anything else (escapes, unknown or duplicate keys, non-integer
 * dimensions) is rejected rather than guessed at. */
typedef struct {
  const char *p, *end;
} cursor;

typedef struct {
  int have_descr, have_fortran, have_shape;
  int ndim;
  size_t shape[UFM_NPY_MAXDIM];
} npy_header;

static void skip_ws(cursor *c)
{
  while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
    c->p++;
}

/* Consume ch (after optional whitespace) if it is next. */
static int accept(cursor *c, char ch)
{
  skip_ws(c);
  if (c->p < c->end && *c->p == ch) {
    c->p++;
    return 1;
  }
  return 0;
}

/* A '...' or "..." string without escapes or line breaks. */
static int parse_string(cursor *c, const char **s, size_t *n)
{
  skip_ws(c);
  if (c->p >= c->end || (*c->p != '\'' && *c->p != '"')) return 0;
  char q = *c->p++;
  const char *start = c->p;
  while (c->p < c->end && *c->p != q) {
    if (*c->p == '\\' || *c->p == '\n' || *c->p == '\r') return 0;
    c->p++;
  }
  if (c->p >= c->end) return 0;
  *s = start;
  *n = (size_t)(c->p - start);
  c->p++;
  return 1;
}

static int is_ident_char(char ch)
{
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         ch == '_';
}

/* A Python identifier such as True or False. */
static int parse_ident(cursor *c, const char **s, size_t *n)
{
  skip_ws(c);
  const char *start = c->p;
  while (c->p < c->end && is_ident_char(*c->p)) c->p++;
  *s = start;
  *n = (size_t)(c->p - start);
  return *n > 0;
}

static int equals(const char *s, size_t n, const char *word)
{
  return n == strlen(word) && memcmp(s, word, n) == 0;
}

/* Whether a header string can be quoted in a one-line message as it is. */
static int printable(const char *s, size_t n)
{
  if (n > 32) return 0;
  for (size_t i = 0; i < n; i++)
    if (s[i] < 0x20 || s[i] > 0x7e) return 0;
  return 1;
}

/* The shape tuple: "()", "(5,)", "(3, 4)", "(3, 4,)". "(5)" is not a tuple
 * in Python and numpy rejects it, so we do too. */
static int parse_shape(cursor *c, npy_header *h, const char *path, char *errbuf)
{
  if (!accept(c, '('))
    return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: shape is not a tuple", path);
  h->ndim = 0;
  if (accept(c, ')')) return UFM_OK;
  for (;;) {
    skip_ws(c);
    if (c->p < c->end && *c->p == '-')
      return ufm_fail(errbuf, UFM_EINVAL, "%s: shape has a negative dimension", path);
    if (c->p >= c->end || *c->p < '0' || *c->p > '9')
      return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: shape entry is not an integer",
                      path);
    size_t v = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
      unsigned d = (unsigned)(*c->p - '0');
      if (v > (SIZE_MAX - d) / 10)
        return ufm_fail(errbuf, UFM_EINVAL, "%s: shape dimension is too large", path);
      v = v * 10 + d;
      c->p++;
    }
    if (c->p < c->end && (is_ident_char(*c->p) || *c->p == '.'))
      return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: shape entry is not an integer",
                      path);
    if (h->ndim == UFM_NPY_MAXDIM)
      return ufm_fail(errbuf, UFM_EINVAL,
                      "%s: arrays with more than %d dimensions are not supported", path,
                      UFM_NPY_MAXDIM);
    h->shape[h->ndim++] = v;

    if (accept(c, ',')) {
      if (accept(c, ')')) return UFM_OK;
    } else if (accept(c, ')')) {
      if (h->ndim == 1)
        return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: shape is not a tuple", path);
      return UFM_OK;
    } else {
      return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: bad shape tuple", path);
    }
  }
}

/* Parse the dict of hlen bytes at s into h, checking that it describes a
 * C-order '<f8' array; the first problem found is reported. */
static int parse_header(const char *s, size_t hlen, npy_header *h, const char *path,
                        char *errbuf)
{
  cursor c = {s, s + hlen};
  memset(h, 0, sizeof *h);
  if (!accept(&c, '{'))
    return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: not a dict", path);
  for (;;) {
    if (accept(&c, '}')) break;
    const char *key, *val;
    size_t klen, vlen;
    if (!parse_string(&c, &key, &klen))
      return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: expected a quoted key", path);
    if (!accept(&c, ':'))
      return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: expected ':' after a key",
                      path);
    int *seen;
    if (equals(key, klen, "descr"))
      seen = &h->have_descr;
    else if (equals(key, klen, "fortran_order"))
      seen = &h->have_fortran;
    else if (equals(key, klen, "shape"))
      seen = &h->have_shape;
    else if (printable(key, klen))
      return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: unknown key '%.*s'", path,
                      (int)klen, key);
    else
      return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: unknown key", path);
    if (*seen)
      return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: duplicate key '%.*s'", path,
                      (int)klen, key);
    *seen = 1;

    if (seen == &h->have_descr) {
      skip_ws(&c);
      int quoted = c.p < c.end && (*c.p == '\'' || *c.p == '"');
      if (!parse_string(&c, &val, &vlen)) {
        if (quoted)
          return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: bad descr string", path);
        return ufm_fail(errbuf, UFM_EINVAL, "%s: dtype is not float64 ('<f8')", path);
      }
      if (!equals(val, vlen, "<f8")) {
        if (printable(val, vlen))
          return ufm_fail(errbuf, UFM_EINVAL, "%s: dtype '%.*s' is not float64 ('<f8')", path,
                          (int)vlen, val);
        return ufm_fail(errbuf, UFM_EINVAL, "%s: dtype is not float64 ('<f8')", path);
      }
    } else if (seen == &h->have_fortran) {
      int ident = parse_ident(&c, &val, &vlen);
      if (!ident || !(equals(val, vlen, "True") || equals(val, vlen, "False")))
        return ufm_fail(errbuf, UFM_EINVAL,
                        "%s: malformed header: fortran_order is not True or False", path);
      if (equals(val, vlen, "True"))
        return ufm_fail(errbuf, UFM_EINVAL, "%s: fortran_order arrays are not supported", path);
    } else {
      int status = parse_shape(&c, h, path, errbuf);
      if (status != UFM_OK) return status;
    }

    if (accept(&c, ',')) continue;
    if (accept(&c, '}')) break;
    return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: expected ',' or '}'", path);
  }
  skip_ws(&c);
  if (c.p != c.end)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: malformed header: text after the dict", path);
  if (!h->have_descr) return ufm_fail(errbuf, UFM_EINVAL, "%s: header lacks 'descr'", path);
  if (!h->have_fortran)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: header lacks 'fortran_order'", path);
  if (!h->have_shape) return ufm_fail(errbuf, UFM_EINVAL, "%s: header lacks 'shape'", path);
  return UFM_OK;
}

/* ------------------------------------------------------------------------ */
/* Reader                                                                    */
/* ------------------------------------------------------------------------ */

/* fread exactly n bytes; the size was checked beforehand, so a short read
 * is an I/O problem (or the file changed under us), not a format error. */
static int read_exact(FILE *fp, void *buf, size_t n, const char *path, char *errbuf)
{
  if (n == 0) return UFM_OK;
  if (fread(buf, 1, n, fp) == n) return UFM_OK;
  if (ferror(fp)) return ufm_fail(errbuf, UFM_EIO, "%s: cannot read: %s", path, strerror(errno));
  return ufm_fail(errbuf, UFM_EIO, "%s: cannot read: unexpected end of file", path);
}

/* The body of ufm_npy_read_f8 once the file is open. Everything in the
 * file is validated against its size before a byte is allocated for it:
 * the header length, then the shape product against the bytes left. */
static int read_open(FILE *fp, const char *path, double **ret_data, int *ret_ndim,
                     size_t ret_shape[UFM_NPY_MAXDIM], char *errbuf)
{
  /* ftell, not fstat: plain C11, and it works for any seekable file. */
  long endpos = -1;
  if (fseek(fp, 0, SEEK_END) == 0) endpos = ftell(fp);
  if (endpos < 0 || fseek(fp, 0, SEEK_SET) != 0)
    return ufm_fail(errbuf, UFM_EIO, "%s: cannot read: %s", path, strerror(errno));
  size_t fsize = (size_t)endpos;
  if (fsize == 0) return ufm_fail(errbuf, UFM_EINVAL, "%s: empty file", path);

  unsigned char pre[12];
  size_t npre = fsize < sizeof pre ? fsize : sizeof pre;
  int status = read_exact(fp, pre, npre, path, errbuf);
  if (status != UFM_OK) return status;
  if (memcmp(pre, NPY_MAGIC, npre < NPY_MAGIC_LEN ? npre : NPY_MAGIC_LEN) != 0)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: not a .npy file (bad magic)", path);
  if (npre < 10)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: truncated: file too short for a .npy header", path);

  unsigned major = pre[6], minor = pre[7];
  if (major < 1 || major > 3 || minor != 0)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: unsupported .npy format version %u.%u", path,
                    major, minor);
  size_t prelen = major == 1 ? 10 : 12;
  if (npre < prelen)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: truncated: file too short for a .npy header", path);
  unsigned long hlen = major == 1 ? (unsigned long)pre[8] | (unsigned long)pre[9] << 8
                                  : (unsigned long)pre[8] | (unsigned long)pre[9] << 8 |
                                        (unsigned long)pre[10] << 16 |
                                        (unsigned long)pre[11] << 24;
  if (hlen > fsize - prelen)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: header length %lu exceeds the file size (%zu bytes)",
                    path, hlen, fsize);
  if (hlen > NPY_MAX_HEADER)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: header of %lu bytes is too long (at most %d)", path,
                    hlen, NPY_MAX_HEADER);

  char *header = ufm_malloc(hlen);
  if (fseek(fp, (long)prelen, SEEK_SET) != 0)
    status = ufm_fail(errbuf, UFM_EIO, "%s: cannot read: %s", path, strerror(errno));
  else
    status = read_exact(fp, header, hlen, path, errbuf);
  npy_header h;
  if (status == UFM_OK) status = parse_header(header, hlen, &h, path, errbuf);
  free(header);
  if (status != UFM_OK) return status;

  int overflow;
  size_t count = shape_count(h.ndim, h.shape, &overflow);
  if (overflow || count > SIZE_MAX / sizeof(double))
    return ufm_fail(errbuf, UFM_EINVAL, "%s: shape product overflows", path);
  size_t avail = fsize - prelen - hlen;
  size_t nbytes = count * sizeof(double);
  if (nbytes > avail)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: truncated: header says %zu values, file holds %zu",
                    path, count, avail / sizeof(double));
  if (nbytes < avail)
    return ufm_fail(errbuf, UFM_EINVAL, "%s: trailing data after the array", path);

  double *data = ufm_malloc(nbytes);
  status = read_exact(fp, data, nbytes, path, errbuf);
  if (status != UFM_OK) {
    free(data);
    return status;
  }
  *ret_data = data;
  *ret_ndim = h.ndim;
  for (int i = 0; i < h.ndim; i++) ret_shape[i] = h.shape[i];
  return UFM_OK;
}

int ufm_npy_read_f8(const char *path, double **ret_data, int *ret_ndim,
                    size_t ret_shape[UFM_NPY_MAXDIM], char *errbuf)
{
  *ret_data = NULL;
  *ret_ndim = 0;
  FILE *fp = fopen(path, "rb");
  if (!fp) return ufm_fail(errbuf, UFM_EIO, "%s: cannot open: %s", path, strerror(errno));
  int status = read_open(fp, path, ret_data, ret_ndim, ret_shape, errbuf);
  fclose(fp);
  return status;
}
