/*
 * bench_train.c: decouple's training step and inference throughput, with the per-layer time split.
 *
 *   bench_train [--arch resnet32] [--batch 128] [--infer-batch 256] [--size 32] [--steps 20] [--threads T]
 *               [--profile] [--mode train|infer|both]
 *
 * A training step is the full thing: forward (training-mode BN), softmax CE, backward, SGD with momentum and
 * weight decay. Inference is an eval-mode forward. Prints one machine-readable line per measurement:
 *   RESULT decouple train resnet32 batch=128 threads=2 img_s=...
 * bench/run_bench_train.sh alternates this with bench/bench_torch.py and prints the ratios.
 */
#include "bench_util.h"
#include "core/check.h"
#include "core/layers.h"
#include "core/net.h"
#include "core/optim.h"
#include "core/rng.h"

#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern char *openblas_get_corename(void);
extern char *openblas_get_config(void);
extern void openblas_set_num_threads(int);

int main(int argc, char **argv) {
    const char *arch = "resnet32", *mode = "both";
    int batch = 128, infer_batch = 256, size = 32, steps = 20, threads = 0, profile = 0, classes = 10;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--arch") && i + 1 < argc)
            arch = argv[++i];
        else if (!strcmp(argv[i], "--batch") && i + 1 < argc)
            batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--infer-batch") && i + 1 < argc)
            infer_batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--classes") && i + 1 < argc)
            classes = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc)
            mode = argv[++i];
        else if (!strcmp(argv[i], "--profile"))
            profile = 1;
        else {
            fprintf(stderr,
                    "usage: bench_train [--arch A] [--batch B] [--infer-batch B] [--size S] [--steps N] "
                    "[--threads T] [--classes K] [--mode train|infer|both] [--profile]\n");
            return 2;
        }
    }
    if (threads > 0) omp_set_num_threads(threads);
    threads = omp_get_max_threads();
    openblas_set_num_threads(threads);
    printf("# OpenBLAS kernel: %s (%s), threads %d\n", openblas_get_corename(), openblas_get_config(),
           threads);

    /* one network per measurement, each sized as a user would build it: training at `batch`, inference
     * forward-only (rotating activation buffers) at `infer_batch` */
    int max_b = batch > infer_batch ? batch : infer_batch;
    dc_net_desc d = {
        .in_channels = 3, .num_classes = classes, .image_h = size, .image_w = size, .max_batch = batch};
    snprintf(d.arch, sizeof d.arch, "%s", arch);
    dc_net *net = NULL;
    size_t nx = (size_t)max_b * 3 * size * size;
    float *x = dc_malloc_aligned(nx * sizeof(float));
    int32_t *y = dc_malloc((size_t)max_b * sizeof(int32_t));
    float *dlogits = dc_malloc((size_t)max_b * classes * sizeof(float));
    dc_rng r = dc_rng_make(42);
    for (size_t i = 0; i < nx; i++) x[i] = (float)dc_rng_normal(&r);
    for (int i = 0; i < max_b; i++) y[i] = (int)dc_rng_below(&r, (uint64_t)classes);
    const double lrs[2] = {0.01, 0.01};

    if (strcmp(mode, "infer")) {
        DC_CHECK_OK(dc_net_create(&d, &net), "bad architecture");
        dc_sgd opt;
        DC_CHECK_OK(dc_sgd_create(&opt, net, 0.1f, 0.9f, 5e-4f, 0.1f, 0.9f, 5e-4f, 0, 0), "");
        const double flop_train = 3.0 * 2.0 * net->macs_per_image; /* forward + 2x for backward */
        for (int i = 0; i < 3; i++) {                              /* warm-up */
            dc_net_zero_grad(net);
            dc_net_forward(net, x, batch, 1);
            dc_softmax_ce(batch, classes, net->logits, y, NULL, 1.0f / batch, dlogits);
            dc_net_backward(net, dlogits, batch, 0);
            dc_sgd_step(&opt, net->params, net->grads, lrs);
        }
        double *t = malloc(sizeof(double) * (size_t)steps);
        net->profile = profile;
        memset(net->prof_seconds, 0, sizeof net->prof_seconds);
        double opt_time = 0;
        for (int s = 0; s < steps; s++) {
            double t0 = omp_get_wtime();
            dc_net_zero_grad(net);
            dc_net_forward(net, x, batch, 1);
            dc_softmax_ce(batch, classes, net->logits, y, NULL, 1.0f / batch, dlogits);
            dc_net_backward(net, dlogits, batch, 0);
            double t1 = omp_get_wtime();
            dc_sgd_step(&opt, net->params, net->grads, lrs);
            double t2 = omp_get_wtime();
            opt_time += t2 - t1;
            t[s] = t2 - t0;
        }
        double total = 0;
        for (int s = 0; s < steps; s++) total += t[s];
        double med = bench_median(t, steps);
        printf("RESULT decouple train %s batch=%d threads=%d img_s=%.1f ms_step=%.2f gflops=%.1f\n", arch,
               batch, threads, batch / med, 1e3 * med, flop_train * batch / med / 1e9);
        if (profile) {
            printf("# per-layer split of a training step (%d steps, %.1f ms/step):\n", steps,
                   1e3 * total / steps);
            double acc = 0;
            for (int k = 0; k < DC_PROF_COUNT; k++) {
                acc += net->prof_seconds[k];
                printf("#   %-10s %8.2f ms  %5.1f%%\n", dc_prof_names[k], 1e3 * net->prof_seconds[k] / steps,
                       100 * net->prof_seconds[k] / total);
            }
            printf("#   %-10s %8.2f ms  %5.1f%%\n", "sgd", 1e3 * opt_time / steps, 100 * opt_time / total);
            printf("#   %-10s %8.2f ms  %5.1f%%\n", "other", 1e3 * (total - acc - opt_time) / steps,
                   100 * (total - acc - opt_time) / total);
        }
        free(t);
        dc_sgd_free(&opt);
        dc_net_free(net);
    }
    if (strcmp(mode, "train")) {
        d.max_batch = infer_batch;
        d.inference_only = 1;
        DC_CHECK_OK(dc_net_create(&d, &net), "bad architecture");
        for (int i = 0; i < 2; i++) dc_net_forward(net, x, infer_batch, 0);
        double *t = malloc(sizeof(double) * (size_t)steps);
        for (int s = 0; s < steps; s++) {
            double t0 = omp_get_wtime();
            dc_net_forward(net, x, infer_batch, 0);
            t[s] = omp_get_wtime() - t0;
        }
        double med = bench_median(t, steps);
        printf("RESULT decouple infer %s batch=%d threads=%d img_s=%.1f ms_step=%.2f gflops=%.1f\n", arch,
               infer_batch, threads, infer_batch / med, 1e3 * med,
               2.0 * net->macs_per_image * infer_batch / med / 1e9);
        free(t);
        dc_net_free(net);
    }
    free(x);
    free(y);
    free(dlogits);
    return 0;
}
