/*
 * fuzz_npy.c: libFuzzer target for the .npy reader (core/npy.c).
 *
 * Input: a whole .npy file. dc_npy_parse from memory; on success the array must be consistent (a known
 * dtype, 0 <= ndim <= DC_NPY_MAX_DIMS, shape >= 0, nbytes = numel x dtype size, data = the file's last
 * nbytes bytes), and writing it with dc_npy_write and parsing the result must give the same dtype, shape and
 * bytes. The file path (dc_npy_read) must give the same verdict as the memory path.
 */
#include "core/check.h"
#include "core/npy.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    dc_npy_array a;
    const int ok = dc_npy_parse(data, size, "fuzz.npy", &a) == DC_OK;
    if (!ok) {
        FUZZ_ASSERT(strncmp(dc_last_error(), "fuzz.npy", 8) == 0);
        FUZZ_ASSERT(a.data == NULL);
    } else {
        FUZZ_ASSERT(a.dtype == DC_F32 || a.dtype == DC_I64 || a.dtype == DC_I32 || a.dtype == DC_U8);
        FUZZ_ASSERT(a.ndim >= 0 && a.ndim <= DC_NPY_MAX_DIMS);
        uint64_t numel = 1;
        for (int d = 0; d < a.ndim; d++) {
            FUZZ_ASSERT(a.shape[d] >= 0);
            numel *= (uint64_t)a.shape[d];
        }
        FUZZ_ASSERT(a.nbytes == numel * dc_dtype_size(a.dtype));
        FUZZ_ASSERT(a.nbytes <= size && memcmp(a.data, data + size - a.nbytes, a.nbytes) == 0);

        char path[300];
        fuzz_path(path, sizeof path, "rewritten.npy");
        if (dc_npy_write(path, a.dtype, a.ndim, a.shape, a.data) != DC_OK) {
            fprintf(stderr, "a parsed array cannot be written back: %s\n", dc_last_error());
            abort();
        }
        dc_npy_array b;
        if (dc_npy_read(path, &b) != DC_OK) {
            fprintf(stderr, "a rewritten array does not parse: %s\n", dc_last_error());
            abort();
        }
        FUZZ_ASSERT(b.dtype == a.dtype && b.ndim == a.ndim && b.nbytes == a.nbytes);
        FUZZ_ASSERT(memcmp(b.shape, a.shape, sizeof(int64_t) * (size_t)a.ndim) == 0);
        FUZZ_ASSERT(a.nbytes == 0 || memcmp(b.data, a.data, a.nbytes) == 0);
        dc_npy_free(&b);
        dc_npy_free(&a);
    }
    char path[300];
    fuzz_path(path, sizeof path, "input.npy");
    fuzz_write_file(path, data, size);
    dc_npy_array c;
    const int ok_file = dc_npy_read(path, &c) == DC_OK;
    FUZZ_ASSERT(ok_file == ok);
    if (ok_file) dc_npy_free(&c);
    return 0;
}
