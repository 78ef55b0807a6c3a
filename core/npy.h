/*
 * npy.h: NumPy .npy arrays (format version 1.0), for dumping features, logits and per-class numbers that are
 * then analysed with numpy (np.load(path)).
 *
 * Layout (numpy/lib/format.py, "NEP 1"):
 *   6 bytes   magic "\x93NUMPY"
 *   2 bytes   version major, minor (we write 1.0; we read 1.0, 2.0 and 3.0)
 *   2 bytes   little-endian u16 header length H (4 bytes u32 in versions 2 and 3)
 *   H bytes   ASCII Python dict literal, e.g. "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }",
 *             padded with spaces and ended by '\n' so that the data starts at a multiple of 64 bytes
 *   rest      the array in C (row-major) order, little-endian
 *
 * dtypes: DC_F32 '<f4', DC_I32 '<i4', DC_I64 '<i8', DC_U8 '|u1'. Writes are atomic (atomic_file.h).
 */
#ifndef DC_NPY_H
#define DC_NPY_H

#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

#define DC_NPY_MAX_DIMS 8

/* Writes an ndim-dimensional array (ndim 0 = a scalar) of the given shape from contiguous data. */
int dc_npy_write(const char *path, dc_dtype dtype, int ndim, const int64_t *shape, const void *data);

typedef struct {
    dc_dtype dtype;
    int ndim;
    int64_t shape[DC_NPY_MAX_DIMS];
    void *data; /* malloc'd, C order; free with dc_npy_free */
    size_t nbytes;
} dc_npy_array;

/* Parses a whole .npy file from memory; robust to any input (every bound is checked). Accepts the four dtypes
 * above in little-endian or byte-order-free spelling, C order only. Errors name `what`. */
int dc_npy_parse(const uint8_t *buf, size_t len, const char *what, dc_npy_array *out);
int dc_npy_read(const char *path, dc_npy_array *out);
void dc_npy_free(dc_npy_array *a);

#endif /* DC_NPY_H */
