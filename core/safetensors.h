/*
 * safetensors.h: reading and writing weights in the safetensors format.
 *
 * Format (https://github.com/huggingface/safetensors, documented in docs/CHECKPOINTS.md):
 *   8 bytes   little-endian u64 N, the length of the header
 *   N bytes   UTF-8 JSON object: { "name": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
 * ..., optional "__metadata__": {string: string} }, padded with spaces rest      raw little-endian tensor
 * data; offsets are relative to the end of the header
 *
 * Writes are atomic (atomic_file.h): a crash never leaves a half-written file under the final name.
 */
#ifndef DC_SAFETENSORS_H
#define DC_SAFETENSORS_H

#include "problem_list.h"
#include "tensor.h"

#include <stddef.h>
#include <stdint.h>

/* Writes the tensors (any dtype in dc_dtype; F32, I64, I32, U8) in the given order. `metadata` is a list of
 * n_meta key/value string pairs for "__metadata__" (may be NULL/0). */
int dc_safetensors_write(const char *path, const dc_tensor *tensors, int n, const char *const *meta_keys,
                         const char *const *meta_values, int n_meta);

/* A parsed file held in memory. */
typedef struct {
    char name[DC_TENSOR_NAME];
    dc_dtype dtype;
    int ndim;
    int64_t shape[DC_MAX_DIMS];
    uint64_t begin, end; /* byte offsets into data */
} dc_st_entry;

typedef struct {
    dc_st_entry *entries;
    int n_entries;
    char **meta_keys, **meta_values;
    int n_meta;
    uint8_t *data; /* the data section */
    uint64_t data_len;
} dc_st_file;

/* Parses a whole file from memory (used by the loader and the fuzz target). Validates: header length within
 * the buffer, JSON syntax, dtypes, shapes (ndim <= 4, non-negative, no overflow), offsets consistent with
 * dtype x shape and within the data section, no duplicate names. Errors name `what` (usually the path). */
int dc_st_parse(const uint8_t *buf, size_t len, const char *what, dc_st_file *out);
int dc_st_read(const char *path, dc_st_file *out);
void dc_st_free(dc_st_file *f);
const dc_st_entry *dc_st_find(const dc_st_file *f, const char *name);
const char *dc_st_meta(const dc_st_file *f, const char *key); /* NULL when absent */

/* Compares a parsed file's tensors with the expected ones and adds a line to `pl` for each mismatch: missing,
 * wrong dtype, wrong shape, and (unless allow_extra) each tensor of the file that is not expected, except one
 * named allowed_extra (may be NULL). Names are made printable. dc_safetensors_load and the checkpoint reader
 * both report through it, with the same wording. */
void dc_st_match(const dc_st_file *f, const dc_tensor *want, int n, int allow_extra,
                 const char *allowed_extra, dc_problem_list *pl);

/* Loads a file into the given tensors by name. Every tensor must be present with the same dtype and shape;
 * extra names in the file are also errors unless allow_extra. On failure the message lists EVERY mismatch
 * (missing, unexpected, wrong shape, wrong dtype), one per line, and no tensor is modified. */
int dc_safetensors_load(const char *path, dc_tensor *tensors, int n, int allow_extra);

#endif /* DC_SAFETENSORS_H */
