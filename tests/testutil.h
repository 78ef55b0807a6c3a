/*
 * testutil.h: tiny assertion helpers shared by the test programs (minctest-like).
 * A failed check prints file:line and what differed, and the test exits 1 at the end (or at once for
 * REQUIRE).
 */
#ifndef DC_TESTUTIL_H
#define DC_TESTUTIL_H

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "remove_tree.h"

/* Reads a whole file into a malloc'd buffer of exactly its size (so ASan catches any overread); NULL if it
 * cannot be read. */
static inline uint8_t *tu_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *buf = malloc(n > 0 ? (size_t)n : 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) n = -1;
    fclose(f);
    if (n < 0 || !buf) {
        free(buf);
        return NULL;
    }
    *len = (size_t)n;
    return buf;
}

static int tu_failures = 0;
static int tu_checks = 0;

#define EXPECT(cond)                                                                                         \
    do {                                                                                                     \
        tu_checks++;                                                                                         \
        if (!(cond)) {                                                                                       \
            tu_failures++;                                                                                   \
            fprintf(stderr, "%s:%d: FAILED: %s\n", __FILE__, __LINE__, #cond);                               \
        }                                                                                                    \
    } while (0)

#define EXPECTF(cond, ...)                                                                                   \
    do {                                                                                                     \
        tu_checks++;                                                                                         \
        if (!(cond)) {                                                                                       \
            tu_failures++;                                                                                   \
            fprintf(stderr, "%s:%d: FAILED: %s: ", __FILE__, __LINE__, #cond);                               \
            fprintf(stderr, __VA_ARGS__);                                                                    \
            fputc('\n', stderr);                                                                             \
        }                                                                                                    \
    } while (0)

#define REQUIRE(cond)                                                                                        \
    do {                                                                                                     \
        tu_checks++;                                                                                         \
        if (!(cond)) {                                                                                       \
            fprintf(stderr, "%s:%d: REQUIRED: %s\n", __FILE__, __LINE__, #cond);                             \
            exit(1);                                                                                         \
        }                                                                                                    \
    } while (0)

/* tu_slurp for files the test itself wrote: stops the test when the file cannot be read. */
static inline uint8_t *tu_slurp_required(const char *path, size_t *len) {
    uint8_t *p = tu_slurp(path, len);
    if (!p) fprintf(stderr, "cannot read %s, which this test wrote\n", path);
    REQUIRE(p != NULL);
    return p;
}

/* max_i |a_i - b_i| / (|b_i| + floor): relative error with an absolute floor for values near zero. */
static inline double tu_max_rel_err(const float *a, const float *b, long n, double floor_) {
    double worst = 0;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]) / (fabs((double)b[i]) + floor_);
        if (!(d <= worst)) worst = d; /* NaN propagates as failure */
    }
    return worst;
}

/* Relative error of whole tensors: ||a - b||_inf / max(||b||_inf, floor). Robust for gradients whose entries
 * cross zero; the tolerance then means "digits relative to the tensor's scale". */
static inline double tu_tensor_rel_err(const float *a, const float *b, long n, double floor_) {
    double num = 0, den = floor_;
    for (long i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= num)) num = d;
        if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
    }
    return num / den;
}

static inline int tu_finish(const char *name) {
    if (tu_failures) {
        fprintf(stderr, "%s: %d of %d checks FAILED\n", name, tu_failures, tu_checks);
        return 1;
    }
    printf("%s: all %d checks passed\n", name, tu_checks);
    return 0;
}

#endif
