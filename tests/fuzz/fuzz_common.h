/*
 * fuzz_common.h: helpers shared by the libFuzzer targets in tests/fuzz/ (and the seed generator).
 *
 * Several parsers only take a path (the IDX and CIFAR readers, the class-names file, the checkpoint reader),
 * so those targets write the input to files in a private temporary directory, on /dev/shm when it exists
 * (memory, so a write costs about as much as a memcpy), else under $TMPDIR or /tmp. The directory is made
 * once per process with mkdtemp and removed at exit.
 *
 * Structured inputs (two files, flags) are cut from the front of the fuzz input with a small byte reader, so
 * the fuzzer can mutate the flags and the file contents independently.
 */
#ifndef DC_FUZZ_COMMON_H
#define DC_FUZZ_COMMON_H

#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "../remove_tree.h"

/* Aborts with a message: an invariant of the parser's output does not hold (libFuzzer reports it as a
 * crash and keeps the input). */
#define FUZZ_ASSERT(cond)                                                                                    \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: fuzz invariant failed: %s\n", __FILE__, __LINE__, #cond);                \
            abort();                                                                                         \
        }                                                                                                    \
    } while (0)

/* ---- a private temporary directory ----------------------------------------------------------------------
 */

static char fuzz_dir_path[256];

static inline void fuzz_cleanup(void) {
    if (fuzz_dir_path[0]) tu_remove_tree(fuzz_dir_path);
}

/* The process's private directory (created on the first call). */
static inline const char *fuzz_dir(void) {
    if (fuzz_dir_path[0]) return fuzz_dir_path;
    const char *base = getenv("TMPDIR");
    struct stat st;
    if (stat("/dev/shm", &st) == 0 && S_ISDIR(st.st_mode) && access("/dev/shm", W_OK) == 0) base = "/dev/shm";
    if (!base || !base[0]) base = "/tmp";
    snprintf(fuzz_dir_path, sizeof fuzz_dir_path, "%s/dc_fuzz_XXXXXX", base);
    if (!mkdtemp(fuzz_dir_path)) {
        perror("fuzz: mkdtemp");
        abort();
    }
    atexit(fuzz_cleanup);
    return fuzz_dir_path;
}

/* "<dir>/<name>" into buf. */
static inline void fuzz_path(char *buf, size_t cap, const char *name) {
    snprintf(buf, cap, "%s/%s", fuzz_dir(), name);
}

static inline void fuzz_write_file(const char *path, const void *data, size_t len) {
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        abort();
    }
    if (len && fwrite(data, 1, len, f) != len) {
        perror(path);
        abort();
    }
    fclose(f);
}

/* ---- gzip in memory (so the .gz paths of the readers see valid streams, and truncated ones) -------------
 */

/* gzip-compresses data into a malloc'd buffer; returns its length. */
static inline size_t fuzz_gzip(const uint8_t *data, size_t len, uint8_t **out) {
    z_stream zs;
    memset(&zs, 0, sizeof zs);
    if (deflateInit2(&zs, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK) abort();
    size_t cap = deflateBound(&zs, (uLong)len) + 64;
    *out = malloc(cap);
    if (!*out) abort();
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = *out;
    zs.avail_out = (uInt)cap;
    if (deflate(&zs, Z_FINISH) != Z_STREAM_END) abort();
    size_t n = zs.total_out;
    deflateEnd(&zs);
    return n;
}

/* ---- cutting the input ----------------------------------------------------------------------------------
 */

typedef struct {
    const uint8_t *p;
    size_t n;
} fuzz_bytes;

static inline uint8_t fuzz_u8(fuzz_bytes *b) {
    if (b->n == 0) return 0;
    b->n--;
    return *b->p++;
}

static inline uint16_t fuzz_u16(fuzz_bytes *b) {
    uint16_t hi = fuzz_u8(b);
    return (uint16_t)(hi << 8 | fuzz_u8(b));
}

/* The next `want` bytes (fewer when the input ends). */
static inline fuzz_bytes fuzz_take(fuzz_bytes *b, size_t want) {
    fuzz_bytes r = {b->p, want < b->n ? want : b->n};
    b->p += r.n;
    b->n -= r.n;
    return r;
}

#endif /* DC_FUZZ_COMMON_H */
