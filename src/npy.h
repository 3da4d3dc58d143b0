/* npy.h -- reading and writing NumPy .npy files (our own code, no libnpy).
 *
 * We write format version 1.0 with exactly the header numpy.save produces,
 * and read versions 1.0, 2.0 and 3.0. Only little-endian float64 ('<f8')
 * is read back, in C order, with at most UFM_NPY_MAXDIM dimensions. The
 * reader treats its input as hostile: every length is checked against the
 * file size before anything is allocated or read.
 *
 * All functions return UFM_OK, UFM_EIO (cannot open/read/write) or
 * UFM_EINVAL (bad arguments or malformed file); on failure a one-line
 * message starting with the path is written to errbuf (may be NULL).
 */
#ifndef UFM_NPY_H
#define UFM_NPY_H

#include <stddef.h>
#include <stdint.h>

#define UFM_NPY_MAXDIM 4

/* Write a little-endian float64 ('<f8'), C-order array atomically (temporary
 * file + rename via ufm_afile_*). ndim is 0..UFM_NPY_MAXDIM; shape may be
 * NULL when ndim is 0, data may be NULL when the array has no elements. */
int ufm_npy_write_f8(const char *path, const double *data, int ndim, const size_t *shape,
                     char *errbuf);

/* Same for int32 ('<i4'). */
int ufm_npy_write_i4(const char *path, const int32_t *data, int ndim, const size_t *shape,
                     char *errbuf);

/* Read a '<f8' C-order array. On success *ret_data is malloc'd (caller frees;
 * an array with no elements still gets a non-NULL block), *ret_ndim and
 * ret_shape[0..ndim-1] are set. On failure *ret_data is NULL, *ret_ndim 0. */
int ufm_npy_read_f8(const char *path, double **ret_data, int *ret_ndim,
                    size_t ret_shape[UFM_NPY_MAXDIM], char *errbuf);

#endif
