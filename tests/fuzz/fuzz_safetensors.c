/*
 * fuzz_safetensors.c: libFuzzer target for the safetensors reader (core/safetensors.c).
 *
 * Input: a whole .safetensors file.
 *   1. dc_st_parse from memory. On success every entry must be consistent (a known dtype, ndim <= 4, shape
 *      >= 0, end - begin = numel x dtype size, inside the data section), names unique and findable, metadata
 *      keys findable; the parsed file is then written back with dc_safetensors_write and parsed again, and
 *      must give the same names, dtypes, shapes, bytes and metadata (a name or value with quotes, escapes or
 *      non-ASCII UTF-8 must survive the writer's JSON escaping).
 *   2. The same bytes through the file path (dc_st_read) must give the same verdict as the memory path.
 *   3. dc_safetensors_load into a fixed list of three tensors (what a program does with --weights): it
 *      succeeds only if the file holds exactly those names, dtypes and shapes, and it never modifies a tensor
 *      when it fails.
 */
#include "core/check.h"
#include "core/safetensors.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_entries(const dc_st_file *f) {
    for (int i = 0; i < f->n_entries; i++) {
        const dc_st_entry *e = &f->entries[i];
        FUZZ_ASSERT(e->dtype == DC_F32 || e->dtype == DC_I64 || e->dtype == DC_I32 || e->dtype == DC_U8);
        FUZZ_ASSERT(e->ndim >= 0 && e->ndim <= DC_MAX_DIMS);
        FUZZ_ASSERT(e->name[0] != '\0' && memchr(e->name, '\0', DC_TENSOR_NAME) != NULL);
        uint64_t numel = 1;
        for (int d = 0; d < e->ndim; d++) {
            FUZZ_ASSERT(e->shape[d] >= 0);
            numel *= (uint64_t)e->shape[d];
        }
        FUZZ_ASSERT(e->begin <= e->end && e->end <= f->data_len);
        FUZZ_ASSERT(e->end - e->begin == numel * dc_dtype_size(e->dtype));
        FUZZ_ASSERT(dc_st_find(f, e->name) == e);
    }
    for (int m = 0; m < f->n_meta; m++) FUZZ_ASSERT(dc_st_meta(f, f->meta_keys[m]) == f->meta_values[m]);
}

/* Writes f back out and checks that it reads back the same. */
static void check_round_trip(const dc_st_file *f) {
    dc_tensor *ts = calloc((size_t)(f->n_entries ? f->n_entries : 1), sizeof *ts);
    FUZZ_ASSERT(ts != NULL);
    for (int i = 0; i < f->n_entries; i++) {
        const dc_st_entry *e = &f->entries[i];
        memcpy(ts[i].name, e->name, sizeof ts[i].name);
        ts[i].dtype = e->dtype;
        ts[i].ndim = e->ndim;
        memcpy(ts[i].shape, e->shape, sizeof ts[i].shape);
        dc_tensor_set_contiguous(&ts[i]);
        static uint8_t empty[8];
        ts[i].data = e->end > e->begin ? f->data + e->begin : empty;
    }
    char path[300];
    fuzz_path(path, sizeof path, "rewritten.safetensors");
    if (dc_safetensors_write(path, ts, f->n_entries, (const char *const *)f->meta_keys,
                             (const char *const *)f->meta_values, f->n_meta) != DC_OK) {
        fprintf(stderr, "a parsed file cannot be written back: %s\n", dc_last_error());
        abort();
    }
    dc_st_file g;
    if (dc_st_read(path, &g) != DC_OK) {
        fprintf(stderr, "a rewritten file does not parse: %s\n", dc_last_error());
        abort();
    }
    FUZZ_ASSERT(g.n_entries == f->n_entries && g.n_meta == f->n_meta && g.data_len == f->data_len);
    for (int i = 0; i < f->n_entries; i++) {
        const dc_st_entry *e = &f->entries[i], *h = dc_st_find(&g, e->name);
        FUZZ_ASSERT(h != NULL && h->dtype == e->dtype && h->ndim == e->ndim);
        FUZZ_ASSERT(memcmp(h->shape, e->shape, sizeof(int64_t) * (size_t)e->ndim) == 0);
        FUZZ_ASSERT(h->end - h->begin == e->end - e->begin);
        FUZZ_ASSERT(memcmp(g.data + h->begin, f->data + e->begin, (size_t)(e->end - e->begin)) == 0);
    }
    for (int m = 0; m < f->n_meta; m++) {
        const char *v = dc_st_meta(&g, f->meta_keys[m]);
        FUZZ_ASSERT(v != NULL && strcmp(v, f->meta_values[m]) == 0);
    }
    dc_st_free(&g);
    free(ts);
}

static void check_load(const char *path) {
    float w[6], b[2];
    int64_t count;
    dc_tensor ts[3];
    memset(ts, 0, sizeof ts);
    snprintf(ts[0].name, sizeof ts[0].name, "fc.weight");
    ts[0].dtype = DC_F32, ts[0].ndim = 2, ts[0].shape[0] = 2, ts[0].shape[1] = 3, ts[0].data = w;
    snprintf(ts[1].name, sizeof ts[1].name, "fc.bias");
    ts[1].dtype = DC_F32, ts[1].ndim = 1, ts[1].shape[0] = 2, ts[1].data = b;
    snprintf(ts[2].name, sizeof ts[2].name, "bn1.num_batches_tracked");
    ts[2].dtype = DC_I64, ts[2].ndim = 0, ts[2].data = &count;
    for (int i = 0; i < 3; i++) dc_tensor_set_contiguous(&ts[i]);
    memset(w, 0xA5, sizeof w);
    memset(b, 0xA5, sizeof b);
    memset(&count, 0xA5, sizeof count);
    if (dc_safetensors_load(path, ts, 3, 0) != DC_OK) {
        FUZZ_ASSERT(strncmp(dc_last_error(), path, strlen(path)) == 0);
        uint8_t pattern[sizeof w];
        memset(pattern, 0xA5, sizeof pattern);
        FUZZ_ASSERT(memcmp(w, pattern, sizeof w) == 0 && memcmp(b, pattern, sizeof b) == 0);
        FUZZ_ASSERT(memcmp(&count, pattern, sizeof count) == 0);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dc_st_file f;
    const int ok_mem = dc_st_parse(data, size, "fuzz.safetensors", &f) == DC_OK;
    if (ok_mem) {
        check_entries(&f);
        check_round_trip(&f);
        dc_st_free(&f);
    } else {
        FUZZ_ASSERT(strncmp(dc_last_error(), "fuzz.safetensors", 16) == 0);
        FUZZ_ASSERT(f.entries == NULL && f.data == NULL && f.meta_keys == NULL);
    }

    char path[300];
    fuzz_path(path, sizeof path, "input.safetensors");
    fuzz_write_file(path, data, size);
    dc_st_file g;
    const int ok_file = dc_st_read(path, &g) == DC_OK;
    FUZZ_ASSERT(ok_file == ok_mem);
    if (ok_file) dc_st_free(&g);
    check_load(path);
    return 0;
}
