/*
 * fuzz_cifar.c: libFuzzer target for the CIFAR binary reader (datasets/cifar_bin.c), raw and gzip.
 *
 * dc_cifar_bin_load concatenates several batch files, so the input is cut into up to two:
 *   byte 0      flags: bit 0 CIFAR-100 records (else CIFAR-10), bit 1 gzip the files, bit 2 cut the last
 *               (byte 1 % 64 + 1) bytes off the compressed streams, bit 3 two files (else one);
 *   byte 1      truncation amount (see bit 2);
 *   bytes 2-3   big-endian length of the first file (two files only); the rest is the second.
 * On success: n = total bytes / record size, 32 x 32 x 3, every label in range, and for raw files the
 * pixels are the planar record bytes transposed to HWC (checked on the first and last record).
 */
#include "core/check.h"
#include "datasets/dataset_internal.h"
#include "tests/fuzz/fuzz_common.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_bytes in = {data, size};
    const uint8_t flags = fuzz_u8(&in);
    const int cifar100 = flags & 1, gzip = (flags & 2) != 0, two = (flags & 8) != 0;
    const uint8_t cut_byte = fuzz_u8(&in);
    const size_t cut = (flags & 4) ? (size_t)(cut_byte % 64) + 1 : 0;
    fuzz_bytes parts[2];
    int n_paths = 1;
    if (two) {
        size_t first = fuzz_u16(&in);
        parts[0] = fuzz_take(&in, first);
        parts[1] = in;
        n_paths = 2;
    } else {
        parts[0] = in;
    }
    char paths[2][300];
    const char *path_list[2];
    int raw_plain = !gzip;
    for (int k = 0; k < n_paths; k++) {
        fuzz_path(paths[k], sizeof paths[k], k ? "batch2.bin" : "batch1.bin");
        path_list[k] = paths[k];
        if (parts[k].n >= 2 && parts[k].p[0] == 0x1f && parts[k].p[1] == 0x8b) raw_plain = 0;
        if (gzip) {
            uint8_t *z = NULL;
            size_t zn = fuzz_gzip(parts[k].p, parts[k].n, &z);
            zn = cut < zn ? zn - cut : 0;
            fuzz_write_file(paths[k], z, zn);
            free(z);
        } else {
            fuzz_write_file(paths[k], parts[k].p, parts[k].n);
        }
    }

    dc_raw_images raw;
    const size_t record = cifar100 ? 3074 : 3073, label_bytes = cifar100 ? 2 : 1;
    if (dc_cifar_bin_load(path_list, n_paths, cifar100, &raw) == DC_OK) {
        FUZZ_ASSERT(raw.n >= 1 && raw.w == 32 && raw.h == 32 && raw.c == 3);
        for (int64_t i = 0; i < raw.n; i++)
            FUZZ_ASSERT(raw.labels[i] >= 0 && raw.labels[i] < (cifar100 ? 100 : 10));
        if (raw_plain && !cut) {
            size_t total = 0;
            for (int k = 0; k < n_paths; k++) total += parts[k].n;
            FUZZ_ASSERT((size_t)raw.n * record == total);
            /* the first record's green channel, pixel 5, and the last sample's blue, pixel 1023 */
            FUZZ_ASSERT(raw.pix[5 * 3 + 1] == parts[0].p[label_bytes + 1024 + 5]);
            const fuzz_bytes *lastp = &parts[n_paths - 1];
            const uint8_t *last_rec = lastp->p + lastp->n - record;
            FUZZ_ASSERT(raw.pix[(size_t)(raw.n - 1) * 3072 + 1023 * 3 + 2] ==
                        last_rec[label_bytes + 2048 + 1023]);
            FUZZ_ASSERT(raw.labels[raw.n - 1] == last_rec[label_bytes - 1]);
        }
        dc_raw_images_free(&raw);
    } else {
        const char *msg = dc_last_error();
        int named = 0;
        for (int k = 0; k < n_paths; k++) named |= strncmp(msg, paths[k], strlen(paths[k])) == 0;
        FUZZ_ASSERT(named);
        FUZZ_ASSERT(raw.pix == NULL && raw.labels == NULL && raw.n == 0);
    }
    return 0;
}
