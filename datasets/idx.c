/*
 * idx.c: the IDX files of MNIST and Fashion-MNIST (LeCun's format), raw or gzip-compressed.
 *
 * An IDX file is a 4-byte magic (0, 0, element type, number of dimensions), the dimensions as big-endian
 * uint32, then the elements in row-major order. MNIST uses type 0x08 (unsigned byte):
 *     images: magic 0x00000803, dims (n, rows, cols), n*rows*cols bytes
 *     labels: magic 0x00000801, dims (n),             n bytes
 * zlib's gzopen/gzread read both a .gz file and a plain one (it passes non-gzip data through), so one code
 * path serves both. Everything is validated, because a truncated download otherwise shows up as a model that
 * trains on zeros: the magic, the dimensions, that the two files agree on n, that the file holds exactly the
 * bytes the header declares (a short file names expected vs read), and the label range.
 */
#include "datasets/dataset_internal.h"

#include "core/check.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define DC_IDX_MAX_SIDE 4096

void dc_raw_images_free(dc_raw_images *raw) {
    if (!raw) return;
    free(raw->pix);
    free(raw->labels);
    memset(raw, 0, sizeof *raw);
}

static uint32_t be32(const unsigned char *p) {
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* Reads up to n bytes; returns how many came (fewer only at the end of the data or on an error). */
static size_t gz_read_some(gzFile f, void *buf, size_t n) {
    size_t got = 0;
    while (got < n) {
        size_t want = n - got > (1u << 30) ? (1u << 30) : n - got;
        int r = gzread(f, (char *)buf + got, (unsigned)want);
        if (r <= 0) break;
        got += (size_t)r;
    }
    return got;
}

/* The message of a short read: what was expected and what came. */
static int gz_short_read(gzFile f, const char *path, size_t n, size_t got, const char *what) {
    int zerr = Z_OK;
    const char *zmsg = gzerror(f, &zerr);
    if (zerr != Z_OK && zerr != Z_STREAM_END)
        return DC_ERR("%s: truncated or corrupt: expected %zu bytes of %s, read %zu (zlib: %s)", path, n,
                      what, got, zmsg);
    return DC_ERR("%s: truncated: expected %zu bytes of %s, read %zu", path, n, what, got);
}

/* Reads exactly n bytes; on a short read the message says what was expected and what came. */
static int gz_read_exact(gzFile f, const char *path, void *buf, size_t n, const char *what) {
    size_t got = gz_read_some(f, buf, n);
    return got == n ? DC_OK : gz_short_read(f, path, n, got, what);
}

/* Reads exactly n bytes into a new buffer that grows with the data actually read (16 MiB, then doubling), so
 * a corrupt header declaring gigabytes in a small file fails as "truncated" without allocating them. */
static int gz_read_alloc(gzFile f, const char *path, size_t n, const char *what, unsigned char **out) {
    *out = NULL;
    size_t cap = n < ((size_t)1 << 24) ? n : ((size_t)1 << 24), got = 0;
    unsigned char *buf = dc_malloc(cap ? cap : 1);
    if (!buf) return DC_FAIL;
    for (;;) {
        size_t r = gz_read_some(f, buf + got, cap - got);
        got += r;
        if (got == n) break;
        if (got < cap) {
            free(buf);
            return gz_short_read(f, path, n, got, what);
        }
        size_t ncap = cap > n / 2 ? n : cap * 2;
        unsigned char *grown = realloc(buf, ncap);
        if (!grown) {
            free(buf);
            return DC_ERR("%s: out of memory after reading %zu bytes of %s", path, got, what);
        }
        buf = grown;
        cap = ncap;
    }
    *out = buf;
    return DC_OK;
}

/* After the declared data there must be nothing left. */
static int gz_expect_end(gzFile f, const char *path, size_t declared) {
    char extra[256];
    int r = gzread(f, extra, sizeof extra);
    if (r > 0)
        return DC_ERR("%s: file is longer than its header declares (%zu bytes expected, more found)", path,
                      declared);
    int zerr = Z_OK;
    const char *zmsg = gzerror(f, &zerr);
    if (r < 0 || (zerr != Z_OK && zerr != Z_STREAM_END))
        return DC_ERR("%s: corrupt compressed data after %zu bytes (zlib: %s)", path, declared, zmsg);
    return DC_OK;
}

static gzFile open_gz(const char *path) {
    errno = 0;
    gzFile f = gzopen(path, "rb");
    if (!f) {
        DC_ERR("%s: cannot open: %s", path, errno ? strerror(errno) : "zlib could not allocate its state");
        return NULL;
    }
    gzbuffer(f, 1 << 17);
    return f;
}

static const char *magic_hint(uint32_t magic) {
    if (magic == 0x00000801u) return " (this is an IDX labels file)";
    if (magic == 0x00000803u) return " (this is an IDX images file)";
    return "";
}

int dc_idx_load(const char *images_path, const char *labels_path, int num_classes, dc_raw_images *out) {
    memset(out, 0, sizeof *out);
    if (num_classes < 1 || num_classes > 256)
        return DC_ERR("%s: IDX labels are bytes, num_classes must be in [1, 256], got %d", labels_path,
                      num_classes);
    unsigned char hdr[16];
    gzFile fi = open_gz(images_path);
    if (!fi) return DC_FAIL;
    if (gz_read_exact(fi, images_path, hdr, 16, "IDX header") != DC_OK) goto fail_images;
    uint32_t magic = be32(hdr);
    if (magic != 0x00000803u) {
        DC_ERR("%s: bad magic 0x%08x, expected 0x00000803 (IDX unsigned-byte images, 3 dimensions)%s",
               images_path, magic, magic_hint(magic));
        goto fail_images;
    }
    uint32_t n = be32(hdr + 4), rows = be32(hdr + 8), cols = be32(hdr + 12);
    if (n == 0 || n > INT32_MAX || rows == 0 || cols == 0 || rows > DC_IDX_MAX_SIDE ||
        cols > DC_IDX_MAX_SIDE) {
        DC_ERR("%s: implausible dimensions %u x %u x %u (n x rows x cols)", images_path, n, rows, cols);
        goto fail_images;
    }
    size_t image_bytes = (size_t)rows * cols, total;
    if (dc_mul_size(image_bytes, n, &total) != DC_OK) goto fail_images;
    char what[96];
    snprintf(what, sizeof what, "pixels (%u images of %ux%u)", n, rows, cols);
    if (gz_read_alloc(fi, images_path, total, what, &out->pix) != DC_OK) goto fail_images;
    if (gz_expect_end(fi, images_path, 16 + total) != DC_OK) goto fail_images;
    gzclose(fi);
    fi = NULL;

    gzFile fl = open_gz(labels_path);
    if (!fl) goto fail;
    if (gz_read_exact(fl, labels_path, hdr, 8, "IDX header") != DC_OK) goto fail_labels;
    magic = be32(hdr);
    if (magic != 0x00000801u) {
        DC_ERR("%s: bad magic 0x%08x, expected 0x00000801 (IDX unsigned-byte labels, 1 dimension)%s",
               labels_path, magic, magic_hint(magic));
        goto fail_labels;
    }
    uint32_t nl = be32(hdr + 4);
    if (nl != n) {
        DC_ERR("%s: %u labels, but %s has %u images", labels_path, nl, images_path, n);
        goto fail_labels;
    }
    unsigned char *lab = dc_malloc(n);
    out->labels = dc_calloc(n, sizeof(int32_t));
    if (!lab || !out->labels) {
        free(lab);
        goto fail_labels;
    }
    if (gz_read_exact(fl, labels_path, lab, n, "labels") != DC_OK ||
        gz_expect_end(fl, labels_path, 8 + (size_t)n)) {
        free(lab);
        goto fail_labels;
    }
    for (uint32_t i = 0; i < n; i++) {
        if (lab[i] >= num_classes) {
            DC_ERR("%s: label %u of sample %u out of range [0, %d)", labels_path, lab[i], i, num_classes);
            free(lab);
            goto fail_labels;
        }
        out->labels[i] = lab[i];
    }
    free(lab);
    gzclose(fl);
    out->n = n;
    out->h = (int)rows;
    out->w = (int)cols;
    out->c = 1;
    return DC_OK;

fail_labels:
    gzclose(fl);
    goto fail;
fail_images:
    if (fi) gzclose(fi);
fail:
    dc_raw_images_free(out);
    return DC_FAIL;
}
