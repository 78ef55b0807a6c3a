/*
 * cifar_bin.c: the binary releases of CIFAR-10 and CIFAR-100 (Krizhevsky 2009), raw or gzip-compressed.
 *
 * A batch file is a sequence of fixed-size records, with no header:
 *     CIFAR-10:  <1 byte label 0..9> <3072 bytes pixels>                       (3073 bytes)
 *     CIFAR-100: <1 byte coarse 0..19> <1 byte fine 0..99> <3072 bytes pixels>  (3074 bytes)
 * The 3072 pixel bytes are planar: the 1024 red values of the 32x32 image row by row, then green, then blue.
 * We store HWC (interleaved) like every other decoded image in decouple (dc_image), so the transforms see
 * one layout. CIFAR-10 ships data_batch_1..5.bin (10000 records each) + test_batch.bin; CIFAR-100 ships
 * train.bin (50000) + test.bin (10000). The label used is the fine one.
 *
 * With no header, validation is by size: the file must be a non-empty multiple of the record size, and
 * every label must be in range (a CIFAR-100 file read as CIFAR-10 fails both ways).
 */
#include "datasets/dataset_internal.h"

#include "core/check.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define DC_CIFAR_SIDE   32
#define DC_CIFAR_PIXELS (DC_CIFAR_SIDE * DC_CIFAR_SIDE * 3)

/* Reads a whole (possibly gzip) file; gz lengths are unknown in advance, so the buffer grows. */
static int gz_read_all(const char *path, unsigned char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) return DC_ERR("%s: cannot open: %s", path, errno ? strerror(errno) : "zlib error");
    gzbuffer(f, 1 << 17);
    size_t cap = (size_t)1 << 22, used = 0;
    unsigned char *buf = dc_malloc(cap);
    if (!buf) {
        gzclose(f);
        return DC_FAIL;
    }
    for (;;) {
        if (used == cap) {
            unsigned char *grown = realloc(buf, cap * 2);
            if (!grown) {
                free(buf);
                gzclose(f);
                return DC_ERR("%s: out of memory after %zu bytes", path, used);
            }
            buf = grown;
            cap *= 2;
        }
        size_t want = cap - used > (1u << 30) ? (1u << 30) : cap - used;
        int r = gzread(f, buf + used, (unsigned)want);
        if (r < 0) break;
        if (r == 0) break;
        used += (size_t)r;
    }
    int zerr = Z_OK;
    const char *zmsg = gzerror(f, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END) {
        DC_ERR("%s: truncated or corrupt gzip data after %zu bytes (zlib: %s)", path, used, zmsg);
        gzclose(f);
        free(buf);
        return DC_FAIL;
    }
    gzclose(f);
    *data = buf;
    *len = used;
    return DC_OK;
}

int dc_cifar_bin_load(const char *const *paths, int n_paths, int cifar100, dc_raw_images *out) {
    memset(out, 0, sizeof *out);
    const size_t label_bytes = cifar100 ? 2 : 1, record = label_bytes + DC_CIFAR_PIXELS;
    const char *kind = cifar100 ? "CIFAR-100" : "CIFAR-10";
    unsigned char **files = dc_calloc((size_t)n_paths, sizeof *files);
    size_t *lens = dc_calloc((size_t)n_paths, sizeof *lens);
    if (!files || !lens) goto fail;
    int64_t total = 0;
    for (int k = 0; k < n_paths; k++) {
        if (gz_read_all(paths[k], &files[k], &lens[k]) != DC_OK) goto fail;
        if (lens[k] == 0) {
            DC_ERR("%s: empty file (expected %s records of %zu bytes)", paths[k], kind, record);
            goto fail;
        }
        if (lens[k] % record != 0) {
            DC_ERR(
                "%s: %zu bytes is not a multiple of the %zu-byte %s record: %zu whole records and %zu bytes "
                "more (truncated, or not a %s binary batch)",
                paths[k], lens[k], record, kind, lens[k] / record, lens[k] % record, kind);
            goto fail;
        }
        total += (int64_t)(lens[k] / record);
    }
    out->pix = dc_malloc((size_t)total * DC_CIFAR_PIXELS);
    out->labels = dc_calloc((size_t)total, sizeof(int32_t));
    if (!out->pix || !out->labels) goto fail;
    int64_t i = 0;
    for (int k = 0; k < n_paths; k++) {
        size_t nrec = lens[k] / record;
        for (size_t r = 0; r < nrec; r++, i++) {
            const unsigned char *rec = files[k] + r * record;
            int label = cifar100 ? rec[1] : rec[0];
            if (cifar100 && rec[0] >= 20) {
                DC_ERR("%s: record %zu: coarse label %d out of range [0, 20)", paths[k], r, rec[0]);
                goto fail;
            }
            if (label >= (cifar100 ? 100 : 10)) {
                DC_ERR("%s: record %zu: label %d out of range [0, %d) (a %s file?)", paths[k], r, label,
                       cifar100 ? 100 : 10, cifar100 ? "CIFAR-10" : "CIFAR-100");
                goto fail;
            }
            out->labels[i] = label;
            /* planar RGB -> interleaved HWC */
            const unsigned char *planes = rec + label_bytes;
            unsigned char *dst = out->pix + (size_t)i * DC_CIFAR_PIXELS;
            for (int p = 0; p < DC_CIFAR_SIDE * DC_CIFAR_SIDE; p++)
                for (int ch = 0; ch < 3; ch++) dst[p * 3 + ch] = planes[ch * 1024 + p];
        }
        free(files[k]);
        files[k] = NULL;
    }
    free(files);
    free(lens);
    out->n = total;
    out->w = out->h = DC_CIFAR_SIDE;
    out->c = 3;
    return DC_OK;
fail:
    if (files)
        for (int k = 0; k < n_paths; k++) free(files[k]);
    free(files);
    free(lens);
    dc_raw_images_free(out);
    return DC_FAIL;
}
