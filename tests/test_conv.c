/*
 * test_conv.c: the convolution engine (conv.h, conv_im2col.c) and the NCHW <-> CNHW conversions (layout.h).
 *
 * What is checked, and against what:
 *  1. forward against a naive direct convolution written here (nested loops, double accumulation), for a
 *     matrix of shapes (3x3 s1/s2, 1x1 s1/s2, 7x7 s2 p3 with C_in = 3, groups 2 and 4 including
 *     C_in/groups = 1, non-square kernels and inputs, odd sizes, N = 1 and 3, bias on and off, and shapes
 *     chosen to hit every tail of the direct kernels), under both algorithms (auto: direct kernels where they
 *     apply; im2col everywhere) and three chunkings each (default, two images per chunk so N = 3 leaves a
 *     ragged last chunk, one image per chunk). y is pre-filled with NaN: forward must overwrite it all.
 *  2. backward against naive double-precision dx/dw/dbias, with dx pre-filled with NaN (it must be
 *     overwritten) and dw/dbias pre-filled with a known value (they must accumulate on top of it); and
 *     backward with dx = NULL gives the same dw.
 *  3. finite differences of L = sum(y .* r) for dx, dw and dbias (central differences, see the tolerance note
 *     at fd_check), independent of the naive reference, under both algorithms.
 *  4. repeated runs are bitwise identical (determinism for a fixed thread count).
 *  5. the fast paths are taken where they should be (dc_conv_uses_direct), so (1)-(3) really test them.
 *  6. dc_conv_shape_init rejects bad shapes with a message naming the file and what is wrong.
 *  7. NCHW -> CNHW -> NCHW round trip and the element mapping of layout.h.
 * A few ResNet-sized shapes (16..256 channels, 32 groups) run through the same comparison so the threaded
 * loops and OpenBLAS's threaded GEMMs are exercised too.
 */
#include "core/check.h"
#include "core/conv.h"
#include "core/conv_tuning.h"
#include "core/layout.h"
#include "core/rng.h"
#include "tests/testutil.h"

#include <math.h>
#include <omp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    int C_in, C_out, KH, KW, stride, pad, groups, H, W, N, bias;
    const char *name;
} conv_case;

static void fill_uniform(float *a, size_t n, uint64_t key, float lo, float hi) {
    dc_rng r = dc_rng_make(key);
    for (size_t i = 0; i < n; i++) a[i] = lo + (hi - lo) * dc_rng_uniform(&r);
}

static void fill_value(float *a, size_t n, float v) {
    for (size_t i = 0; i < n; i++) a[i] = v;
}

static float *alloc_floats(size_t n) {
    float *p = malloc(sizeof(float) * (n ? n : 1));
    REQUIRE(p != NULL);
    return p;
}

static double *alloc_doubles(size_t n) {
    double *p = calloc(n ? n : 1, sizeof(double));
    REQUIRE(p != NULL);
    return p;
}

/* ---- naive reference, straight from the definition, in CNHW
 * ------------------------------------------------ y[co][n][ho][wo] = bias[co] + sum_{ci in group(co), ki,
 * kj} w[co][ci - g*Cg_in][ki][kj] * x[ci][n][ho*stride - pad + ki][wo*stride - pad + kj]     (zero outside
 * the input) */
static void naive_forward(const dc_conv_shape *s, int N, const float *x, const float *w, const float *bias,
                          double *y) {
    const int Cg_in = s->C_in / s->groups, Cg_out = s->C_out / s->groups;
    for (int co = 0; co < s->C_out; co++) {
        const int g = co / Cg_out;
        for (int n = 0; n < N; n++)
            for (int ho = 0; ho < s->H_out; ho++)
                for (int wo = 0; wo < s->W_out; wo++) {
                    double acc = bias ? bias[co] : 0.0;
                    for (int cg = 0; cg < Cg_in; cg++) {
                        const int ci = g * Cg_in + cg;
                        for (int ki = 0; ki < s->KH; ki++) {
                            const int hi = ho * s->stride - s->pad + ki;
                            if (hi < 0 || hi >= s->H_in) continue;
                            for (int kj = 0; kj < s->KW; kj++) {
                                const int wi = wo * s->stride - s->pad + kj;
                                if (wi < 0 || wi >= s->W_in) continue;
                                acc += (double)w[((co * Cg_in + cg) * s->KH + ki) * s->KW + kj] *
                                       x[(((size_t)ci * N + n) * s->H_in + hi) * s->W_in + wi];
                            }
                        }
                    }
                    y[(((size_t)co * N + n) * s->H_out + ho) * s->W_out + wo] = acc;
                }
    }
}

/* The same loops, transposed: every product w*x that fed y[co][n][ho][wo] sends dy back to both factors. */
static void naive_backward(const dc_conv_shape *s, int N, const float *x, const float *w, const float *dy,
                           double *dx, double *dw, double *dbias) {
    const int Cg_in = s->C_in / s->groups, Cg_out = s->C_out / s->groups;
    memset(dx, 0, sizeof(double) * (size_t)s->C_in * N * s->H_in * s->W_in);
    memset(dw, 0, sizeof(double) * (size_t)s->C_out * Cg_in * s->KH * s->KW);
    memset(dbias, 0, sizeof(double) * (size_t)s->C_out);
    for (int co = 0; co < s->C_out; co++) {
        const int g = co / Cg_out;
        for (int n = 0; n < N; n++)
            for (int ho = 0; ho < s->H_out; ho++)
                for (int wo = 0; wo < s->W_out; wo++) {
                    const double d = dy[(((size_t)co * N + n) * s->H_out + ho) * s->W_out + wo];
                    dbias[co] += d;
                    for (int cg = 0; cg < Cg_in; cg++) {
                        const int ci = g * Cg_in + cg;
                        for (int ki = 0; ki < s->KH; ki++) {
                            const int hi = ho * s->stride - s->pad + ki;
                            if (hi < 0 || hi >= s->H_in) continue;
                            for (int kj = 0; kj < s->KW; kj++) {
                                const int wi = wo * s->stride - s->pad + kj;
                                if (wi < 0 || wi >= s->W_in) continue;
                                const size_t iw = ((size_t)(co * Cg_in + cg) * s->KH + ki) * s->KW + kj;
                                const size_t ix = (((size_t)ci * N + n) * s->H_in + hi) * s->W_in + wi;
                                dw[iw] += d * x[ix];
                                dx[ix] += d * w[iw];
                            }
                        }
                    }
                }
    }
}

/* ||a - b||_inf / max(||b||_inf, floor) with a float and b double. */
static double rel_err_fd(const float *a, const double *b, size_t n, double floor_) {
    double num = 0, den = floor_;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - b[i]);
        if (!(d <= num)) num = d; /* NaN -> NaN -> fails every comparison */
        if (fabs(b[i]) > den) den = fabs(b[i]);
    }
    return num / den;
}

static int all_finite(const float *a, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (!isfinite(a[i])) return 0;
    return 1;
}

/* ---- one case: forward and backward vs the naive reference, for a given chunk budget ----------------------
 */

/* Float rounding vs double: a dot product of K float products has error ~ sqrt(K) * 2^-24 times the size of
 * its terms, far below 1e-5 of the tensor's largest entry for the sizes here (K <= 2304, M <= 16384). */
#define REF_TOL 2e-5

/* The engine configurations every shape runs under: both algorithms, each with the default chunking, two
 * images per chunk (N = 3 then leaves a ragged last chunk) and one image per chunk. The one-image configs run
 * on one thread: chunking does not depend on threads, and every parallel region costs a barrier, which on a
 * busy shared machine can take milliseconds; the other configs run on the default team (CTest: 2 threads). */
typedef struct {
    dc_conv_algo algo;
    int chunk; /* 0: default, 1: one image per chunk, 2: two images per chunk */
    int one_thread;
    const char *name;
} engine_config;

static const engine_config configs[] = {
    {DC_CONV_ALGO_AUTO, 0, 0, "auto, default chunk"},
    {DC_CONV_ALGO_AUTO, 2, 0, "auto, 2 images/chunk"},
    {DC_CONV_ALGO_AUTO, 1, 1, "auto, 1 image/chunk, 1 thread"},
    {DC_CONV_ALGO_WINOGRAD, 0, 0, "winograd, default chunk"},
    {DC_CONV_ALGO_WINOGRAD, 1, 1, "winograd, 1 thread"},
    {DC_CONV_ALGO_DIRECT, 0, 0, "direct, default chunk"},
    {DC_CONV_ALGO_DIRECT, 1, 1, "direct, 1 image/chunk, 1 thread"},
    {DC_CONV_ALGO_IM2COL, 0, 0, "im2col, default chunk"},
    {DC_CONV_ALGO_IM2COL, 2, 0, "im2col, 2 images/chunk"},
    {DC_CONV_ALGO_IM2COL, 1, 1, "im2col, 1 image/chunk, 1 thread"},
};

static const char *path_name(const dc_conv_shape *s, int backward_data) {
    return dc_conv_uses_winograd(s, backward_data) ? "winograd"
           : dc_conv_uses_direct(s, backward_data) ? "direct"
                                                   : "im2col";
}

/* Forward and backward of one shape against the naive reference (computed once), under every config. */
static void check_against_naive(const conv_case *cc) {
    dc_conv_shape s;
    REQUIRE(dc_conv_shape_init(&s, cc->C_in, cc->C_out, cc->KH, cc->KW, cc->stride, cc->pad, cc->groups,
                               cc->H, cc->W) == DC_OK);
    printf("%-58s forward %-8s backward-data %s\n", cc->name, path_name(&s, 0), path_name(&s, 1));
    const int N = cc->N;
    const size_t nx = (size_t)s.C_in * N * s.H_in * s.W_in, ny = (size_t)s.C_out * N * s.H_out * s.W_out;
    const size_t nw = (size_t)s.C_out * (s.C_in / s.groups) * s.KH * s.KW;
    const int pointwise = s.KH == 1 && s.KW == 1 && s.stride == 1 && s.pad == 0;

    float *x = alloc_floats(nx), *w = alloc_floats(nw), *b = alloc_floats(s.C_out), *y = alloc_floats(ny);
    float *dy = alloc_floats(ny), *dx = alloc_floats(nx), *dw = alloc_floats(nw), *db = alloc_floats(s.C_out);
    float *y2 = alloc_floats(ny), *dx2 = alloc_floats(nx), *dw2 = alloc_floats(nw);
    double *ry = alloc_doubles(ny), *rdx = alloc_doubles(nx), *rdw = alloc_doubles(nw),
           *rdb = alloc_doubles(s.C_out);
    uint64_t key = dc_rng_key(7, 100, (uint64_t)cc->C_in * 1000 + cc->C_out, (uint64_t)cc->H * 100 + cc->W);
    fill_uniform(x, nx, key ^ 1, -1.0f, 1.0f);
    fill_uniform(w, nw, key ^ 2, -0.5f, 0.5f);
    fill_uniform(b, s.C_out, key ^ 3, -1.0f, 1.0f);
    fill_uniform(dy, ny, key ^ 4, -1.0f, 1.0f);
    const float *bias = cc->bias ? b : NULL;
    naive_forward(&s, N, x, w, bias, ry);
    naive_backward(&s, N, x, w, dy, rdx, rdw, rdb);

    for (size_t ci = 0; ci < sizeof(configs) / sizeof(configs[0]); ci++) {
        const engine_config *cf = &configs[ci];
        const int threads = omp_get_max_threads();
        if (cf->one_thread) omp_set_num_threads(1);
        const size_t per_image = (size_t)s.C_in * s.KH * s.KW * s.H_out * s.W_out;
        dc_conv_set_algo(cf->algo);
        dc_conv_set_chunk_floats(cf->chunk == 0 ? 0 : cf->chunk == 1 ? 1 : 2 * per_image);
        dc_conv_set_chunk_min_cols(cf->chunk == 0 ? 0 : 1);
        const size_t nws = dc_conv_workspace_floats(&s, N);
        const int per_chunk = dc_conv_images_per_chunk(&s, N);
        EXPECT(per_chunk >= 1 && per_chunk <= N);
        if (cf->chunk == 1 && !pointwise)
            EXPECTF(per_chunk == 1, "%s: a 1-float budget must give one image per chunk, got %d", cc->name,
                    per_chunk);
        float *ws = alloc_floats(nws);

        /* forward: y must be fully overwritten (NaN pre-fill) and match the naive double result */
        fill_value(y, ny, NAN);
        fill_value(ws, nws, NAN); /* the engine must not read workspace it did not write */
        dc_conv_forward(&s, N, x, w, bias, y, ws);
        double e = rel_err_fd(y, ry, ny, 1e-3);
        if (getenv("DC_TEST_VERBOSE")) printf("  %-34s forward rel err %.3g\n", cf->name, e);
        EXPECTF(e < REF_TOL, "%s [%s]: forward rel err %.3g", cc->name, cf->name, e);

        /* determinism: a second run is bitwise identical */
        dc_conv_forward(&s, N, x, w, bias, y2, ws);
        EXPECTF(memcmp(y, y2, sizeof(float) * ny) == 0, "%s [%s]: forward not bitwise repeatable", cc->name,
                cf->name);

        /* backward: dx overwritten (NaN pre-fill), dw/dbias accumulated on top of a known value */
        const float w0 = 0.25f, b0 = -0.75f;
        fill_value(dx, nx, NAN);
        fill_value(dw, nw, w0);
        fill_value(db, s.C_out, b0);
        fill_value(ws, nws, NAN);
        dc_conv_backward(&s, N, x, w, dy, dx, dw, db, ws);
        for (size_t i = 0; i < nw; i++) dw[i] -= w0;
        for (int i = 0; i < s.C_out; i++) db[i] -= b0;
        e = rel_err_fd(dx, rdx, nx, 1e-3);
        EXPECTF(e < REF_TOL, "%s [%s]: dx rel err %.3g", cc->name, cf->name, e);
        e = rel_err_fd(dw, rdw, nw, 1e-3);
        EXPECTF(e < REF_TOL, "%s [%s]: dw (accumulated) rel err %.3g", cc->name, cf->name, e);
        e = rel_err_fd(db, rdb, s.C_out, 1e-3);
        EXPECTF(e < REF_TOL, "%s [%s]: dbias (accumulated) rel err %.3g", cc->name, cf->name, e);

        /* backward without dx (the network's input layer) gives the same dw, bitwise, and a repeat is bitwise
         */
        fill_value(dw2, nw, w0);
        dc_conv_backward(&s, N, x, w, dy, NULL, dw2, NULL, ws);
        for (size_t i = 0; i < nw; i++) dw2[i] -= w0;
        EXPECTF(memcmp(dw, dw2, sizeof(float) * nw) == 0, "%s [%s]: dw differs when dx == NULL", cc->name,
                cf->name);
        fill_value(dx2, nx, NAN);
        fill_value(dw2, nw, w0);
        dc_conv_backward(&s, N, x, w, dy, dx2, dw2, NULL, ws);
        EXPECTF(memcmp(dx, dx2, sizeof(float) * nx) == 0, "%s [%s]: dx not bitwise repeatable", cc->name,
                cf->name);
        free(ws);
        omp_set_num_threads(threads);
    }
    dc_conv_set_chunk_floats(0);
    dc_conv_set_chunk_min_cols(0);
    dc_conv_set_algo(DC_CONV_ALGO_AUTO);
    free(x), free(w), free(b), free(y), free(dy), free(dx), free(dw), free(db), free(y2), free(dx2),
        free(dw2);
    free(ry), free(rdx), free(rdw), free(rdb);
}

/* ---- finite differences -----------------------------------------------------------------------------------
 */

/* L = sum_i y_i * r_i, accumulated in double. */
static double loss(const dc_conv_shape *s, int N, const float *x, const float *w, const float *bias, float *y,
                   const float *r, float *ws) {
    const size_t ny = (size_t)s->C_out * N * s->H_out * s->W_out;
    dc_conv_forward(s, N, x, w, bias, y, ws);
    double L = 0;
    for (size_t i = 0; i < ny; i++) L += (double)y[i] * r[i];
    return L;
}

/* Central differences dL/dp_i ~ (L(p_i + eps) - L(p_i - eps)) / (2 eps) for up to max_checks entries of p,
 * compared with the analytic gradient g.
 *
 * Tolerance: y is linear in x, in w and in the bias, so the central difference has no truncation error at
 * all; what remains is float rounding. Perturbing p_i changes only the y entries it feeds (the others are
 * recomputed with bitwise the same operations), each rounded to float with relative error 2^-24 ~ 6e-8. With
 * |y| <~ 5, |r| <= 1 and at most a few hundred affected outputs, the error of L(+) - L(-) is <~ 1e-5, i.e.
 * <~ 5e-4 after dividing by 2 eps = 0.02; the gradients themselves are O(1..10). So we require
 * max|fd - g| <= 1e-3 * max|g| (plus 1e-3 absolute for tensors whose gradient is tiny). Eps = 1e-2 keeps the
 * perturbation far above float resolution of p (|p| <= 1, ulp ~ 6e-8). A wrong index, a missing term or a
 * sign error gives errors of the size of a gradient entry itself, orders of magnitude above this. */
#define FD_EPS 1e-2f
#define FD_TOL 1e-3

static void fd_check(const char *what, const conv_case *cc, const dc_conv_shape *s, float *p, size_t np,
                     const float *g, float *x, float *w, float *bias, float *y, const float *r, float *ws) {
    const size_t max_checks = 160;
    const size_t step = np > max_checks ? np / max_checks : 1;
    double worst = 0, gmax = 1e-3;
    for (size_t i = 0; i < np; i++)
        if (fabs(g[i]) > gmax) gmax = fabs(g[i]);
    for (size_t i = 0; i < np; i += step) {
        const float saved = p[i];
        p[i] = saved + FD_EPS;
        const float up = p[i] - saved; /* the perturbation actually applied, after rounding */
        double Lp = loss(s, cc->N, x, w, bias, y, r, ws);
        p[i] = saved - up;
        double Lm = loss(s, cc->N, x, w, bias, y, r, ws);
        p[i] = saved;
        double fd = (Lp - Lm) / (2.0 * up);
        double d = fabs(fd - g[i]);
        if (!(d <= worst)) worst = d;
    }
    EXPECTF(worst <= FD_TOL * gmax, "%s: finite-difference %s: max |fd - grad| = %.3g, max |grad| = %.3g",
            cc->name, what, worst, gmax);
}

static void check_finite_differences(const conv_case *cc) {
    dc_conv_shape s;
    REQUIRE(dc_conv_shape_init(&s, cc->C_in, cc->C_out, cc->KH, cc->KW, cc->stride, cc->pad, cc->groups,
                               cc->H, cc->W) == DC_OK);
    const int N = cc->N;
    const size_t nx = (size_t)s.C_in * N * s.H_in * s.W_in, ny = (size_t)s.C_out * N * s.H_out * s.W_out;
    const size_t nw = (size_t)s.C_out * (s.C_in / s.groups) * s.KH * s.KW;
    dc_conv_set_chunk_floats(1); /* one image per chunk: several chunks when N > 1 */
    dc_conv_set_chunk_min_cols(1);
    const size_t nws = dc_conv_workspace_floats(&s, N);
    float *x = alloc_floats(nx), *w = alloc_floats(nw), *b = alloc_floats(s.C_out), *y = alloc_floats(ny);
    float *r = alloc_floats(ny), *dx = alloc_floats(nx), *dw = alloc_floats(nw), *db = alloc_floats(s.C_out);
    float *ws = alloc_floats(nws);
    uint64_t key = dc_rng_key(11, 200, (uint64_t)cc->C_in * 1000 + cc->C_out, (uint64_t)cc->H * 100 + cc->W);
    fill_uniform(x, nx, key ^ 1, -1.0f, 1.0f);
    fill_uniform(w, nw, key ^ 2, -0.5f, 0.5f);
    fill_uniform(b, s.C_out, key ^ 3, -1.0f, 1.0f);
    fill_uniform(r, ny, key ^ 4, -1.0f, 1.0f);
    float *bias = cc->bias ? b : NULL;

    /* dL/dy = r, so backward with dy = r gives the analytic gradients of L */
    fill_value(dx, nx, 12345.0f);
    fill_value(dw, nw, 0.0f);
    fill_value(db, s.C_out, 0.0f);
    dc_conv_backward(&s, N, x, w, r, dx, dw, db, ws);
    EXPECT(all_finite(dx, nx) && all_finite(dw, nw) && all_finite(db, s.C_out));

    fd_check("dx", cc, &s, x, nx, dx, x, w, bias, y, r, ws);
    fd_check("dw", cc, &s, w, nw, dw, x, w, bias, y, r, ws);
    if (bias) fd_check("dbias", cc, &s, b, s.C_out, db, x, w, bias, y, r, ws);
    dc_conv_set_chunk_floats(0);
    dc_conv_set_chunk_min_cols(0);
    free(x), free(w), free(b), free(y), free(r), free(dx), free(dw), free(db), free(ws);
}

/* ---- bad shapes -------------------------------------------------------------------------------------------
 */

static void expect_rejected(const char *what, int C_in, int C_out, int KH, int KW, int stride, int pad,
                            int groups, int H, int W, const char *needle) {
    dc_conv_shape s;
    dc_clear_error();
    int rc = dc_conv_shape_init(&s, C_in, C_out, KH, KW, stride, pad, groups, H, W);
    const char *msg = dc_last_error();
    EXPECTF(rc == DC_FAIL, "%s: accepted", what);
    EXPECTF(strstr(msg, "conv_im2col.c") != NULL, "%s: message does not name the file: '%s'", what, msg);
    EXPECTF(strstr(msg, needle) != NULL, "%s: message lacks '%s': '%s'", what, needle, msg);
}

static void check_bad_shapes(void) {
    expect_rejected("C_in not divisible by groups", 6, 8, 3, 3, 1, 1, 4, 8, 8, "divisible by groups");
    expect_rejected("C_out not divisible by groups", 8, 6, 3, 3, 1, 1, 4, 8, 8, "divisible by groups");
    expect_rejected("output height <= 0", 3, 4, 5, 5, 1, 0, 1, 3, 8, "output size <= 0");
    expect_rejected("output width <= 0", 3, 4, 3, 7, 1, 1, 1, 8, 4, "output size <= 0");
    expect_rejected("stride 0", 3, 4, 3, 3, 0, 1, 1, 8, 8, "stride");
    expect_rejected("negative pad", 3, 4, 3, 3, 1, -1, 1, 8, 8, "pad");
    expect_rejected("zero groups", 3, 4, 3, 3, 1, 1, 0, 8, 8, "groups");
    expect_rejected("zero channels", 0, 4, 3, 3, 1, 1, 1, 8, 8, "channels");

    /* and a good one derives the output size as PyTorch does: floor((H + 2p - K)/s) + 1 */
    dc_conv_shape s;
    EXPECT(dc_conv_shape_init(&s, 3, 64, 7, 7, 2, 3, 1, 224, 223) == DC_OK);
    EXPECT(s.H_out == 112 && s.W_out == 112);
    EXPECT(dc_conv_shape_init(&s, 64, 128, 1, 1, 2, 0, 1, 7, 8) == DC_OK);
    EXPECT(s.H_out == 4 && s.W_out == 4);
    EXPECT(dc_conv_macs(&s, 2) == 2.0 * 128 * 16 * 64);
    EXPECT(dc_conv_workspace_floats(&s, 2) > 0);
    EXPECT(dc_conv_shape_init(&s, 64, 128, 1, 1, 1, 0, 1, 7, 8) == DC_OK);
    EXPECT(dc_conv_workspace_floats(&s, 2) == 0); /* 1x1 stride 1: col is x itself */
}

/* ---- which kernel runs ------------------------------------------------------------------------------------
 */

/* The fast paths must actually be taken where they are meant to be (a test that silently runs the fallback
 * would not test them), and never where they do not apply. */
static void check_algorithm_choice(void) {
#if defined(__AVX2__) && defined(__FMA__)
    const int have_direct = 1;
#else
    const int have_direct = 0;
#endif
    dc_conv_shape s;
    REQUIRE(dc_conv_shape_init(&s, 16, 16, 3, 3, 1, 1, 1, 32, 32) == DC_OK);
#if defined(__AVX2__) && defined(__FMA__)
    /* AUTO: direct on 16 channels and on widths that are multiples of 32 (F(4x4) is opt-in), Winograd
     * F(2x2) on 32 channels at 16x16, direct again on 64 at 8x8 */
    EXPECT(!dc_conv_uses_winograd(&s, 0) && dc_conv_uses_direct(&s, 0) && dc_conv_uses_direct(&s, 1));
    dc_conv_shape s32w;
    REQUIRE(dc_conv_shape_init(&s32w, 32, 32, 3, 3, 1, 1, 1, 32, 32) == DC_OK);
    EXPECT(!dc_conv_uses_winograd(&s32w, 0));
    dc_conv_shape s32, s64;
    REQUIRE(dc_conv_shape_init(&s32, 32, 32, 3, 3, 1, 1, 1, 16, 16) == DC_OK);
    REQUIRE(dc_conv_shape_init(&s64, 64, 64, 3, 3, 1, 1, 1, 8, 8) == DC_OK);
    EXPECT(dc_conv_uses_winograd(&s32, 0) && dc_conv_uses_winograd(&s32, 1));
    EXPECT(!dc_conv_uses_winograd(&s64, 0) && dc_conv_uses_direct(&s64, 0));
    dc_conv_shape s256;
    REQUIRE(dc_conv_shape_init(&s256, 256, 256, 3, 3, 1, 1, 1, 14, 14) == DC_OK); /* 7 tiles per row */
    EXPECT(dc_conv_uses_winograd(&s256, 0) && dc_conv_uses_winograd(&s256, 1));
    dc_conv_set_algo(DC_CONV_ALGO_WINOGRAD);
    EXPECT(dc_conv_uses_winograd(&s, 0) && dc_conv_uses_winograd(&s, 1));
    EXPECT(!dc_conv_uses_direct(&s, 0) && !dc_conv_uses_direct(&s, 1));
    dc_conv_set_algo(DC_CONV_ALGO_DIRECT);
    EXPECT(!dc_conv_uses_winograd(&s, 0) && !dc_conv_uses_winograd(&s, 1));
    EXPECT(dc_conv_uses_direct(&s, 0) && dc_conv_uses_direct(&s, 1));
    dc_conv_set_algo(DC_CONV_ALGO_IM2COL);
    EXPECT(!dc_conv_uses_direct(&s, 0) && !dc_conv_uses_direct(&s, 1));
    EXPECT(!dc_conv_uses_winograd(&s, 0) && !dc_conv_uses_winograd(&s, 1));
    dc_conv_set_algo(DC_CONV_ALGO_WINOGRAD);
    REQUIRE(dc_conv_shape_init(&s, 128, 128, 3, 3, 1, 1, 1, 7, 7) == DC_OK); /* odd width: Winograd only */
    EXPECT(dc_conv_uses_winograd(&s, 0) && dc_conv_uses_winograd(&s, 1));
    dc_conv_set_algo(DC_CONV_ALGO_AUTO);
#else
    EXPECT(!dc_conv_uses_direct(&s, 0) && !dc_conv_uses_direct(&s, 1));
    EXPECT(!dc_conv_uses_winograd(&s, 0) && !dc_conv_uses_winograd(&s, 1));
#endif
    REQUIRE(dc_conv_shape_init(&s, 512, 512, 3, 3, 1, 1, 1, 7, 7) == DC_OK); /* too wide for Winograd */
    EXPECT(!dc_conv_uses_winograd(&s, 0));
    REQUIRE(dc_conv_shape_init(&s, 3, 16, 3, 3, 1, 1, 1, 32, 32) == DC_OK); /* C_in 3: forward not Winograd */
    EXPECT(!dc_conv_uses_winograd(&s, 0));
    REQUIRE(dc_conv_shape_init(&s, 16, 32, 3, 3, 2, 1, 1, 32, 32) == DC_OK); /* stride 2 */
    EXPECT(dc_conv_uses_direct(&s, 0) == have_direct);                       /* forward by phases */
    EXPECT(!dc_conv_uses_direct(&s, 1));                                     /* backward-data: im2col */
    EXPECT(!dc_conv_uses_winograd(&s, 0) && !dc_conv_uses_winograd(&s, 1));
    REQUIRE(dc_conv_shape_init(&s, 16, 32, 3, 3, 3, 1, 1, 48, 48) == DC_OK); /* stride 3: im2col */
    EXPECT(!dc_conv_uses_direct(&s, 0) && !dc_conv_uses_direct(&s, 1));
    REQUIRE(dc_conv_shape_init(&s, 16, 32, 1, 1, 2, 0, 1, 32, 32) == DC_OK); /* 1x1 stride 2: im2col */
    EXPECT(!dc_conv_uses_direct(&s, 0) && !dc_conv_uses_direct(&s, 1));
    REQUIRE(dc_conv_shape_init(&s, 16, 16, 3, 3, 1, 1, 2, 32, 32) == DC_OK); /* groups */
    EXPECT(!dc_conv_uses_direct(&s, 0) && !dc_conv_uses_winograd(&s, 0));
    REQUIRE(dc_conv_shape_init(&s, 512, 512, 3, 3, 1, 1, 1, 7, 7) == DC_OK); /* width 7 */
    EXPECT(!dc_conv_uses_direct(&s, 0));
    REQUIRE(dc_conv_shape_init(&s, 64, 64, 1, 1, 1, 0, 1, 8, 8) == DC_OK); /* 1x1: a plain GEMM */
    EXPECT(!dc_conv_uses_direct(&s, 0));
}

/* Winograd computes each output from the same tile blocks whatever the thread count: forward and dx are
 * bitwise identical on 1 thread and on 3 requested ones (the engine runs at most one per processor, so 2 on
 * a 2-core machine; 3 where there are more, and then the blocks do not divide evenly). */
static void check_winograd_thread_invariance(void) {
    dc_conv_shape s;
    REQUIRE(dc_conv_shape_init(&s, 32, 32, 3, 3, 1, 1, 1, 16, 16) == DC_OK);
    dc_conv_set_algo(DC_CONV_ALGO_WINOGRAD);
    if (!dc_conv_uses_winograd(&s, 0)) { /* no AVX2 build: nothing to check */
        dc_conv_set_algo(DC_CONV_ALGO_AUTO);
        return;
    }
    const int N = 5, threads = omp_get_max_threads();
    const size_t nx = (size_t)32 * N * 256, nw = (size_t)32 * 32 * 9, nws = dc_conv_workspace_floats(&s, N);
    float *x = alloc_floats(nx), *w = alloc_floats(nw), *ws = alloc_floats(nws), *dw = alloc_floats(nw);
    float *y[2] = {alloc_floats(nx), alloc_floats(nx)}, *dx[2] = {alloc_floats(nx), alloc_floats(nx)};
    fill_uniform(x, nx, 5, -1.0f, 1.0f);
    fill_uniform(w, nw, 6, -0.5f, 0.5f);
    fill_value(dw, nw, 0.0f); /* backward accumulates into dw */
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(k ? 3 : 1);
        dc_conv_forward(&s, N, x, w, NULL, y[k], ws);
        dc_conv_backward(&s, N, x, w, y[0], dx[k], dw, NULL, ws);
    }
    omp_set_num_threads(threads);
    dc_conv_set_algo(DC_CONV_ALGO_AUTO);
    EXPECTF(memcmp(y[0], y[1], nx * sizeof(float)) == 0, "winograd forward differs between 1 and 3 threads");
    EXPECTF(memcmp(dx[0], dx[1], nx * sizeof(float)) == 0, "winograd dx differs between 1 and 3 threads");
    free(x), free(w), free(ws), free(dw), free(y[0]), free(y[1]), free(dx[0]), free(dx[1]);
}

/* ---- workspace sizing
 * -------------------------------------------------------------------------------------- */

/* The network sizes one workspace for its largest batch and passes it to calls with smaller batches (the
 * last batch of an epoch, evaluation), so the size must never shrink as N grows. */
static void check_workspace_monotone(void) {
    static const int shapes[][7] = {
        /* C_in C_out K stride pad H groups */
        {16, 16, 3, 1, 1, 32, 1}, {64, 64, 3, 1, 1, 8, 1},   {16, 32, 3, 2, 1, 32, 1},
        {3, 64, 7, 2, 3, 224, 1}, {512, 512, 3, 1, 1, 7, 1}, {128, 128, 3, 1, 1, 8, 32},
    };
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        dc_conv_shape s;
        REQUIRE(dc_conv_shape_init(&s, shapes[i][0], shapes[i][1], shapes[i][2], shapes[i][2], shapes[i][3],
                                   shapes[i][4], shapes[i][6], shapes[i][5], shapes[i][5]) == DC_OK);
        size_t prev = 0;
        int monotone = 1;
        for (int N = 1; N <= 300; N++) {
            size_t ws = dc_conv_workspace_floats(&s, N);
            if (ws < prev) monotone = 0;
            prev = ws;
        }
        EXPECTF(monotone, "shape %zu: dc_conv_workspace_floats decreases as N grows", i);
    }
}

/* ---- layout -----------------------------------------------------------------------------------------------
 */

static void check_layout(void) {
    const int N = 3, C = 5;
    const int64_t P = 7 * 6;
    const size_t n = (size_t)N * C * P;
    float *x = alloc_floats(n), *y = alloc_floats(n), *z = alloc_floats(n);
    fill_uniform(x, n, 99, -1.0f, 1.0f);
    dc_nchw_to_cnhw(x, y, N, C, P);
    int mapping_ok = 1;
    for (int nn = 0; nn < N; nn++)
        for (int c = 0; c < C; c++)
            for (int64_t p = 0; p < P; p++)
                if (y[((size_t)c * N + nn) * P + p] != x[((size_t)nn * C + c) * P + p]) mapping_ok = 0;
    EXPECTF(mapping_ok, "nchw_to_cnhw: y[c][n][p] != x[n][c][p]");
    fill_value(z, n, NAN);
    dc_cnhw_to_nchw(y, z, N, C, P);
    EXPECTF(memcmp(x, z, sizeof(float) * n) == 0, "nchw -> cnhw -> nchw is not the identity");
    free(x), free(y), free(z);
}

int main(void) {
    /* C_in C_out KH KW stride pad groups H W N bias */
    static const conv_case small_cases[] = {
        {4, 6, 3, 3, 1, 1, 1, 7, 9, 3, 1, "3x3 s1 p1"},
        {5, 4, 3, 3, 2, 1, 1, 8, 7, 1, 0, "3x3 s2 p1 N=1"},
        {5, 4, 3, 3, 2, 1, 1, 9, 8, 3, 1, "3x3 s2 p1 odd"},
        {6, 5, 1, 1, 1, 0, 1, 5, 6, 3, 1, "1x1 s1 p0"},
        {6, 8, 1, 1, 2, 0, 1, 7, 8, 3, 0, "1x1 s2 p0"},
        {3, 4, 7, 7, 2, 3, 1, 13, 11, 2, 1, "7x7 s2 p3 C_in=3"},
        {4, 6, 3, 3, 1, 1, 2, 6, 5, 3, 1, "3x3 groups=2"},
        {4, 8, 3, 3, 1, 1, 4, 5, 7, 3, 0, "3x3 groups=4 (C_in/groups=1)"},
        {8, 4, 3, 3, 2, 1, 4, 9, 9, 1, 1, "3x3 s2 groups=4"},
        {8, 8, 1, 1, 1, 0, 2, 4, 4, 3, 0, "1x1 s1 groups=2"},
        {8, 4, 1, 1, 2, 0, 4, 5, 5, 3, 1, "1x1 s2 groups=4"},
        {3, 4, 3, 5, 1, 2, 1, 6, 8, 2, 1, "3x5 kernel p2"},
        {2, 3, 3, 3, 1, 2, 1, 4, 4, 3, 0, "3x3 pad 2"},
        {3, 2, 2, 2, 3, 0, 1, 8, 10, 2, 1, "2x2 s3"},
        {2, 3, 5, 5, 2, 2, 1, 1, 1, 3, 1, "5x5 on a 1x1 input"},
        /* shapes the direct stride-1 kernels take (output width % 8 == 0, output channels % 8 == 0): an
         * 8-channel block after the 16-channel ones, tiles of 1 and 2 position vectors, K % 6 = 0..5 (the k
         * tails of backward-weights), non-square kernels, backward-data padding != forward padding */
        {8, 24, 3, 3, 1, 1, 1, 5, 16, 3, 1, "direct 3x3 p1 5x16, C_out 24"},
        {16, 16, 3, 3, 1, 1, 1, 8, 8, 3, 1, "direct 3x3 p1 8x8"},
        {8, 8, 3, 5, 1, 2, 1, 6, 8, 2, 1, "direct 3x5 p2"},
        {8, 8, 1, 9, 1, 0, 1, 3, 16, 2, 0, "direct 1x9 p0"},
        {1, 8, 1, 7, 1, 3, 1, 2, 8, 3, 0, "direct 1x7 C_in 1 (K % 6 = 1)"},
        {8, 8, 5, 5, 1, 2, 1, 4, 8, 2, 1, "direct 5x5 p2 (K % 6 = 2)"},
        {3, 8, 3, 3, 1, 1, 1, 4, 8, 2, 1, "direct forward, im2col backward-data (C_in 3, K % 6 = 3)"},
        {4, 8, 5, 5, 1, 2, 1, 3, 8, 3, 0, "direct 5x5 p2 (K % 6 = 4)"},
        {5, 8, 5, 5, 1, 2, 1, 3, 8, 2, 1, "direct 5x5 p2 (K % 6 = 5)"},
        /* stride 2 by phases (forward only): odd and even inputs, pad 0 (a phase's last row unread), 1x3
         * (one row phase), 5x5, non-square, the 7x7 stem; 1x1 stride 2 stays on im2col */
        {8, 8, 3, 3, 2, 1, 1, 16, 16, 2, 1, "direct s2 3x3 p1 16x16"},
        {8, 16, 3, 3, 2, 1, 1, 15, 16, 3, 0, "direct s2 3x3 p1 15x16 (odd height)"},
        {8, 8, 3, 3, 2, 0, 1, 17, 17, 2, 1, "direct s2 3x3 p0 17x17"},
        {8, 8, 1, 3, 2, 0, 1, 5, 17, 2, 1, "direct s2 1x3 (one row phase)"},
        {4, 8, 5, 5, 2, 2, 1, 9, 16, 2, 0, "direct s2 5x5 p2"},
        {8, 8, 3, 5, 2, 1, 1, 7, 18, 2, 1, "direct s2 3x5 p1"},
        {3, 8, 7, 7, 2, 3, 1, 5, 16, 2, 1, "direct s2 7x7 p3 stem (K % 6 = 3)"},
        /* Winograd F(2x2,3x3) (3x3 stride 1, channels >= 4, C_out % 4 == 0): odd output sizes (clipped
         * tiles), pad 0 and 2 (backward-data pad 2 and 0), tiles that span images, 1x1 outputs */
        {4, 4, 3, 3, 1, 1, 1, 7, 9, 3, 1, "winograd 3x3 p1 7x9 (odd tiles)"},
        {8, 12, 3, 3, 1, 0, 1, 6, 7, 2, 1, "winograd 3x3 p0 (dx pad 2), C_out 12"},
        {12, 4, 3, 3, 1, 2, 1, 3, 5, 3, 0, "winograd 3x3 p2 (dx pad 0)"},
        {4, 8, 3, 3, 1, 1, 1, 1, 1, 5, 1, "winograd 3x3 p1 on 1x1 images"},
        {4, 4, 3, 3, 1, 0, 1, 3, 3, 4, 0, "winograd 3x3 p0 to 1x1 (dx 1x1 -> 3x3)"},
        /* width 32: F(4x4,3x3), with rows clipped at the bottom (5 = 4 + 1) and pad 2 (dx pad 0) */
        {4, 8, 3, 3, 1, 1, 1, 5, 32, 2, 1, "winograd F(4x4) 5x32"},
        {8, 4, 3, 3, 1, 2, 1, 3, 30, 2, 0, "winograd F(4x4) p2 3x30 -> 5x32 (dx F(2x2))"},
    };
    static const conv_case big_cases[] = {
        {16, 16, 3, 3, 1, 1, 1, 32, 32, 4, 0, "resnet32 16ch 3x3"},
        {16, 16, 3, 3, 1, 1, 1, 32, 32, 8, 1, "resnet32 16ch 3x3, 8 images (a 1-row last block)"},
        {64, 64, 3, 3, 1, 1, 1, 8, 8, 6, 1, "resnet32 64ch 3x3 8x8"},
        {32, 64, 3, 3, 2, 1, 1, 16, 16, 4, 0, "resnet32 3x3 s2 32->64"},
        {32, 64, 1, 1, 2, 0, 1, 16, 16, 4, 0, "resnet 1x1 s2 shortcut"},
        {64, 256, 1, 1, 1, 0, 1, 8, 8, 4, 0, "bottleneck 1x1 64->256"},
        {128, 128, 3, 3, 1, 1, 32, 8, 8, 2, 0, "resnext 3x3 groups=32"},
        {128, 128, 3, 3, 1, 1, 1, 7, 7, 3, 1, "resnet50 3x3 128 7x7 (winograd, odd)"},
        {32, 32, 3, 3, 1, 1, 1, 16, 16, 9, 0, "resnet32 32ch 16x16, 9 images (many blocks)"},
        {256, 256, 3, 3, 1, 1, 1, 14, 14, 1, 0, "resnet50 256ch 14x14 (auto: winograd, im2col dw)"},
        {3, 8, 7, 7, 2, 3, 1, 131, 129, 2, 1, "7x7 s2 p3 plane too big for the stack buffer"},
    };
    const int n_small = (int)(sizeof(small_cases) / sizeof(small_cases[0]));
    const int n_big = (int)(sizeof(big_cases) / sizeof(big_cases[0]));

    for (int i = 0; i < n_small + n_big; i++)
        check_against_naive(i < n_small ? &small_cases[i] : &big_cases[i - n_small]);
    /* finite differences check the math, not the threading: one thread (thousands of tiny forwards) */
    const int threads = omp_get_max_threads();
    omp_set_num_threads(1);
    const dc_conv_algo algos[4] = {DC_CONV_ALGO_AUTO, DC_CONV_ALGO_WINOGRAD, DC_CONV_ALGO_DIRECT,
                                   DC_CONV_ALGO_IM2COL};
    for (int a = 0; a < 4; a++) {
        dc_conv_set_algo(algos[a]);
        for (int i = 0; i < n_small; i++) check_finite_differences(&small_cases[i]);
    }
    dc_conv_set_algo(DC_CONV_ALGO_AUTO);
    omp_set_num_threads(threads);
    check_algorithm_choice();
    check_winograd_thread_invariance();
    check_workspace_monotone();
    check_bad_shapes();
    check_layout();
    return tu_finish("test_conv");
}
