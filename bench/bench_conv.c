/*
 * bench_conv.c: speed of the convolution engine (conv.h) on the layer shapes decouple trains, against the
 * plain cblas_sgemm rate of the same machine and thread count.
 *
 * For each shape it times forward, backward-weights (dc_conv_backward with dx = NULL) and backward with dx;
 * backward-data is the difference of the two backward timings. Every pass is 2*MACs floating-point
 * operations, so GFLOP/s = 2*MACs / seconds, and "of sgemm" is that rate over the rate of a 1024^3 sgemm
 * measured in the same run (the ceiling of an im2col + GEMM engine).
 *
 * Usage (ResNet-32 shapes at batch 128 on 32x32, ResNet-50 shapes at batch 32 on 224x224):
 *     OMP_NUM_THREADS=2 bench_conv [--sweep] [--cputime] [--reps R] [--only NAME]
 *   --sweep     also time each shape for a range of chunk budgets (conv_tuning.h)
 *   --cputime   time with the process CPU clock (for OMP_NUM_THREADS=1 on a busy machine)
 *   --reps R    repetitions per timing, the best is kept (default 3, after one warm-up run)
 *   --only S    only the shapes whose name contains S
 * DC_CONV_ALGO=auto|winograd|direct|im2col picks the engine (conv_tuning.h); bench/run_bench_conv.sh
 * alternates engines and prints them side by side.
 */
#include "core/check.h"
#include "core/conv.h"
#include "core/conv_tuning.h"
#include "core/rng.h"

#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* not declared in every cblas.h variant, but exported by every OpenBLAS */
char *openblas_get_corename(void);
char *openblas_get_config(void);
int openblas_get_num_threads(void);

typedef struct {
    const char *name;
    int C_in, C_out, K, stride, pad, H, W, N;
} bench_shape;

static const bench_shape shapes[] = {
    /* ResNet-32 on CIFAR, batch 128 */
    {"r32 3x3 16->16 32x32", 16, 16, 3, 1, 1, 32, 32, 128},
    {"r32 3x3 16->32 s2 32x32", 16, 32, 3, 2, 1, 32, 32, 128},
    {"r32 1x1 16->32 s2 32x32", 16, 32, 1, 2, 0, 32, 32, 128},
    {"r32 3x3 32->32 16x16", 32, 32, 3, 1, 1, 16, 16, 128},
    {"r32 3x3 32->64 s2 16x16", 32, 64, 3, 2, 1, 16, 16, 128},
    {"r32 1x1 32->64 s2 16x16", 32, 64, 1, 2, 0, 16, 16, 128},
    {"r32 3x3 64->64 8x8", 64, 64, 3, 1, 1, 8, 8, 128},
    /* ResNet-50 on 224x224, batch 32 */
    {"r50 7x7 3->64 s2 224 stem", 3, 64, 7, 2, 3, 224, 224, 32},
    {"r50 1x1 256->64 56x56", 256, 64, 1, 1, 0, 56, 56, 32},
    {"r50 3x3 64->64 56x56", 64, 64, 3, 1, 1, 56, 56, 32},
    {"r50 3x3 128->128 28x28", 128, 128, 3, 1, 1, 28, 28, 32},
    {"r50 3x3 256->256 14x14", 256, 256, 3, 1, 1, 14, 14, 32},
    {"r50 3x3 512->512 7x7", 512, 512, 3, 1, 1, 7, 7, 32},
};

/* Wall-clock time, or with --cputime the process's CPU time (the sum over its threads: only meaningful for
 * OMP_NUM_THREADS=1, where it leaves out the time other programs on a shared machine take from us). */
static clockid_t bench_clock = CLOCK_MONOTONIC;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(bench_clock, &ts);
    return ts.tv_sec + 1e-9 * ts.tv_nsec;
}

static float *alloc_random(size_t n, uint64_t key) {
    float *p = dc_malloc_aligned(sizeof(float) * (n ? n : 1));
    if (!p) dc_fatal("bench_conv: out of memory (%zu floats)", n);
    dc_rng r = dc_rng_make(key);
    for (size_t i = 0; i < n; i++) p[i] = dc_rng_uniform(&r) - 0.5f;
    return p;
}

static double sgemm_gflops(int n, int reps) {
    float *a = alloc_random((size_t)n * n, 1), *b = alloc_random((size_t)n * n, 2),
          *c = alloc_random((size_t)n * n, 3);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a, n, b, n, 0.0f, c, n);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    dc_free_aligned(a), dc_free_aligned(b), dc_free_aligned(c);
    return 2.0 * n * n * (double)n / best * 1e-9;
}

typedef struct {
    double fwd, bwd_w, bwd_all; /* seconds, best of reps */
} conv_times;

static conv_times time_conv(const dc_conv_shape *s, int N, int reps, int with_bwd) {
    const size_t nx = (size_t)s->C_in * N * s->H_in * s->W_in,
                 ny = (size_t)s->C_out * N * s->H_out * s->W_out;
    const size_t nw = (size_t)s->C_out * (s->C_in / s->groups) * s->KH * s->KW;
    float *x = alloc_random(nx, 11), *w = alloc_random(nw, 12), *y = alloc_random(ny, 13);
    float *dy = alloc_random(ny, 14), *dx = alloc_random(nx, 15), *dw = alloc_random(nw, 16);
    float *ws = alloc_random(dc_conv_workspace_floats(s, N), 17);
    conv_times t = {1e30, 1e30, 1e30};
    for (int r = 0; r <= reps; r++) { /* r == 0 is the warm-up */
        double t0 = now_s();
        dc_conv_forward(s, N, x, w, NULL, y, ws);
        double t1 = now_s();
        if (r && t1 - t0 < t.fwd) t.fwd = t1 - t0;
        if (!with_bwd) continue;
        dc_conv_backward(s, N, x, w, dy, NULL, dw, NULL, ws);
        double t2 = now_s();
        dc_conv_backward(s, N, x, w, dy, dx, dw, NULL, ws);
        double t3 = now_s();
        if (r && t2 - t1 < t.bwd_w) t.bwd_w = t2 - t1;
        if (r && t3 - t2 < t.bwd_all) t.bwd_all = t3 - t2;
    }
    dc_free_aligned(x), dc_free_aligned(w), dc_free_aligned(y), dc_free_aligned(dy), dc_free_aligned(dx);
    dc_free_aligned(dw), dc_free_aligned(ws);
    return t;
}

int main(int argc, char **argv) {
    int sweep = 0, reps = 3;
    const char *only = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--sweep"))
            sweep = 1;
        else if (!strcmp(argv[i], "--cputime"))
            bench_clock = CLOCK_PROCESS_CPUTIME_ID;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--only") && i + 1 < argc)
            only = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--sweep] [--cputime] [--reps R] [--only NAME]\n", argv[0]);
            return 2;
        }
    }
    if (reps < 1) reps = 1;
    const char *coretype = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    printf("OpenBLAS core: %s | config: %s\n", openblas_get_corename(), openblas_get_config());
    printf("threads: omp_get_max_threads=%d openblas_get_num_threads=%d | OPENBLAS_CORETYPE=%s "
           "OPENBLAS_L2_SIZE=%s | chunk budget %zu floats\n",
           omp_get_max_threads(), openblas_get_num_threads(), coretype ? coretype : "(unset)",
           l2 ? l2 : "(unset)", dc_conv_chunk_floats());
    const double peak = sgemm_gflops(1024, reps + 2);
    printf("sgemm 1024^3: %.1f GFLOP/s\n\n", peak);

    /* path: the forward pass's engine, "winograd", "direct", "im2col/n" (n images per chunk) or "gemm" (1x1
     * stride 1); the backward passes can differ (conv_tuning.h: e.g. a stride-2 "direct" layer runs both
     * backward passes on im2col, a "winograd" one its backward-weights on the direct kernel) */
    printf("%-27s %-9s %8s | %8s %6s %5s | %8s %6s %5s | %8s %6s %5s\n", "layer", "path", "GFLOP", "fwd ms",
           "GF/s", "of", "bwd-w ms", "GF/s", "of", "bwd-d ms", "GF/s", "of");
    printf("%-27s %-9s %8s | %8s %6s %5s | %8s %6s %5s | %8s %6s %5s\n", "", "", "per pass", "", "", "sgemm",
           "", "", "sgemm", "", "", "sgemm");
    double tot_flop = 0, tot_time = 0;
    for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++) {
        const bench_shape *b = &shapes[i];
        if (only && !strstr(b->name, only)) continue;
        dc_conv_shape s;
        DC_CHECK_OK(dc_conv_shape_init(&s, b->C_in, b->C_out, b->K, b->K, b->stride, b->pad, 1, b->H, b->W),
                    "bad benchmark shape");
        const double flop = 2.0 * dc_conv_macs(&s, b->N);
        conv_times t = time_conv(&s, b->N, reps, 1);
        const double bwd_d = t.bwd_all - t.bwd_w;
        char path[32];
        if (dc_conv_uses_winograd(&s, 0))
            snprintf(path, sizeof path, "winograd");
        else if (dc_conv_uses_direct(&s, 0))
            snprintf(path, sizeof path, "direct");
        else if (b->K == 1 && b->stride == 1)
            snprintf(path, sizeof path, "gemm");
        else
            snprintf(path, sizeof path, "im2col/%d", dc_conv_images_per_chunk(&s, b->N));
        printf("%-27s %-9s %8.3f | %8.2f %6.1f %4.0f%% | %8.2f %6.1f %4.0f%% | ", b->name, path, flop * 1e-9,
               t.fwd * 1e3, flop / t.fwd * 1e-9, 100 * flop / t.fwd * 1e-9 / peak, t.bwd_w * 1e3,
               flop / t.bwd_w * 1e-9, 100 * flop / t.bwd_w * 1e-9 / peak);
        if (bwd_d > 0.05 * t.bwd_all)
            printf("%8.2f %6.1f %4.0f%%\n", bwd_d * 1e3, flop / bwd_d * 1e-9,
                   100 * flop / bwd_d * 1e-9 / peak);
        else /* a difference of two timings: meaningless when the machine is busy */
            printf("%8s (timing noise: rerun)\n", "-");
        tot_flop += 3 * flop;
        tot_time += t.fwd + t.bwd_all;
        fflush(stdout);

        if (sweep) {
            const size_t budgets[] = {1,
                                      (size_t)1 << 18,
                                      (size_t)1 << 19,
                                      (size_t)1 << 20,
                                      (size_t)1 << 21,
                                      (size_t)1 << 22,
                                      (size_t)1 << 23,
                                      (size_t)1 << 30};
            for (size_t k = 0; k < sizeof(budgets) / sizeof(budgets[0]); k++) {
                dc_conv_set_chunk_floats(budgets[k]);
                dc_conv_set_chunk_min_cols(1); /* the budget alone decides */
                conv_times u = time_conv(&s, b->N, reps, 1);
                printf("    chunk budget %10zu floats: %4d imgs/chunk  fwd %7.2f ms  bwd-w %7.2f ms  bwd-d "
                       "%7.2f "
                       "ms  total %7.2f ms\n",
                       budgets[k], dc_conv_images_per_chunk(&s, b->N), u.fwd * 1e3, u.bwd_w * 1e3,
                       (u.bwd_all - u.bwd_w) * 1e3, (u.fwd + u.bwd_all) * 1e3);
                fflush(stdout);
            }
            dc_conv_set_chunk_floats(0);
            dc_conv_set_chunk_min_cols(0);
        }
    }
    if (tot_time > 0)
        printf("\nall listed layers, fwd+bwd: %.1f GFLOP/s = %.0f%% of sgemm\n", tot_flop / tot_time * 1e-9,
               100 * tot_flop / tot_time * 1e-9 / peak);
    return 0;
}
