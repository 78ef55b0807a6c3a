/*
 * fuzz_idx.c: libFuzzer target for the IDX reader (datasets/idx.c, MNIST / Fashion-MNIST), raw and gzip.
 *
 * dc_idx_load reads two files, so the input is cut into them:
 *   byte 0      flags: bit 0 gzip the images file, bit 1 gzip the labels file, bit 2 cut the last
 *               (byte 2 % 64 + 1) bytes off the compressed stream(s) (a truncated download), bit 3 swap the
 *               two paths (images given as labels);
 *   byte 1      num_classes - 1 (the reader accepts 1..256);
 *   byte 2      truncation amount (see bit 2);
 *   bytes 3-4   big-endian length of the images file; the rest is the labels file.
 * The gzip flags let the fuzzer reach the decompression paths with valid streams; raw gzip bytes in the input
 * reach the corrupt-stream paths. On success the result must be consistent: n >= 1, 1 channel, sides in
 * range, every label < num_classes, and the pixel count must match the images file's header.
 */
#include "core/check.h"
#include "datasets/dataset_internal.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void write_part(const char *name, fuzz_bytes part, int gzip, int cut, char *path, size_t cap) {
    fuzz_path(path, cap, name);
    if (!gzip) {
        fuzz_write_file(path, part.p, part.n);
        return;
    }
    uint8_t *z = NULL;
    size_t zn = fuzz_gzip(part.p, part.n, &z);
    if (cut > 0) zn = (size_t)cut < zn ? zn - (size_t)cut : 0;
    fuzz_write_file(path, z, zn);
    free(z);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes in = {data, size};
    const uint8_t flags = fuzz_u8(&in);
    const int num_classes = fuzz_u8(&in) + 1;
    const int cut = (flags & 4) ? fuzz_u8(&in) % 64 + 1 : (fuzz_u8(&in), 0);
    const size_t images_len = fuzz_u16(&in);
    fuzz_bytes images = fuzz_take(&in, images_len), labels = in;

    char ipath[300], lpath[300];
    write_part("images", images, flags & 1, cut, ipath, sizeof ipath);
    write_part("labels", labels, flags & 2, cut, lpath, sizeof lpath);
    const char *a = ipath, *b = lpath;
    if (flags & 8) a = lpath, b = ipath;

    dc_raw_images raw;
    if (dc_idx_load(a, b, num_classes, &raw) == DC_OK) {
        FUZZ_ASSERT(raw.n >= 1 && raw.c == 1 && raw.w >= 1 && raw.h >= 1);
        FUZZ_ASSERT(raw.w <= 4096 && raw.h <= 4096);
        for (int64_t i = 0; i < raw.n; i++) FUZZ_ASSERT(raw.labels[i] >= 0 && raw.labels[i] < num_classes);
        /* touch every pixel: ASan checks the buffer holds n * h * w bytes */
        unsigned sum = 0;
        for (int64_t k = 0; k < raw.n * raw.h * raw.w; k++) sum += raw.pix[k];
        (void)sum;
        const int looks_gzip = images.n >= 2 && images.p[0] == 0x1f && images.p[1] == 0x8b;
        if (!(flags & 1) && !(flags & 8) && !looks_gzip) {
            /* raw images file: its header declares exactly what was returned */
            FUZZ_ASSERT(images.n == 16 + (size_t)(raw.n * raw.h * raw.w));
        }
        dc_raw_images_free(&raw);
    } else {
        const char *msg = dc_last_error();
        FUZZ_ASSERT(strncmp(msg, ipath, strlen(ipath)) == 0 || strncmp(msg, lpath, strlen(lpath)) == 0);
        FUZZ_ASSERT(raw.pix == NULL && raw.labels == NULL && raw.n == 0);
    }
    return 0;
}
