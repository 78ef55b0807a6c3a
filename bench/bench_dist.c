/*
 * bench_dist.c: what data parallelism costs decouple: allreduce latency and bandwidth, and the allreduce
 * share of a data-parallel training step.
 *
 *   mpirun -np R bench_dist [--arch resnet32] [--global-batch 128] [--size 32] [--steps 20] [--threads T]
 *                           [--bucket-mb 25] [--mode step|allreduce|both]
 *
 * allreduce: MPI_Allreduce (float sum) of 4 B .. 64 MiB, the median over repeated calls of the slowest rank's
 *   time, and the alpha-beta model t(n) = alpha + n * beta: alpha is the 4-byte time (latency), beta the
 *   least-squares slope over the sizes >= 1 MiB (1/beta: the algorithm bandwidth, payload bytes per second).
 *
 * step: a training step as jobs/train.c does it (forward, CE pre-scaled by 1/global batch, backward with
 *   bucketed MPI_Iallreduce issued from dc_net.grad_ready, finish, SGD), on synthetic data, the global batch
 *   split over the ranks. Reports the step time and the time blocked in the allreduce after backward (the
 *   communication backward did not hide); then, in a second pass with a barrier and one blocking
 *   MPI_Allreduce after backward, the wait for the slowest rank (skew) and the transfer itself. Throughput is
 *   global images per second.
 *
 * One machine-readable line per measurement, printed by rank 0:
 *   RESULT allreduce ranks=2 bytes=... us=...
 *   RESULT step ranks=2 threads=1 img_s=... ms_step=... ms_blocked=... ms_allreduce_full=... slab_mb=...
 * bench/run_bench_dist.sh alternates 1 rank x 2 threads and 2 ranks x 1 thread and prints the table.
 */
#include "bench_util.h"
#include "core/check.h"
#include "core/layers.h"
#include "core/net.h"
#include "core/optim.h"
#include "core/rng.h"
#include "dist/comm.h"
#include "dist/grad_reduce.h"

#include <mpi.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void openblas_set_num_threads(int);

/* Allreduce of 4 B .. 64 MiB; rank 0 prints each size and the alpha-beta fit. */
static void bench_allreduce(const dc_comm *comm) {
    const size_t max_floats = (size_t)16 << 20; /* 64 MiB */
    float *buf = dc_malloc_aligned(max_floats * sizeof(float));
    for (size_t i = 0; i < max_floats; i++) buf[i] = 1.0f;
    double sx = 0, sy = 0, sxx = 0, sxy = 0, alpha = 0;
    int npts = 0;
    for (size_t n = 1; n <= max_floats; n *= 4) {
        int reps = n < 65536 ? 200 : n < (1u << 22) ? 20 : 6;
        double t[200];
        for (int w = 0; w < 3; w++)
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        for (int r = 0; r < reps; r++) {
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            MPI_Allreduce(MPI_IN_PLACE, buf, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            double dt = MPI_Wtime() - t0;
            /* the slowest rank's time is the collective's time */
            MPI_Allreduce(MPI_IN_PLACE, &dt, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
            t[r] = dt;
        }
        double med = bench_median(t, reps);
        double bytes = (double)n * sizeof(float);
        if (comm->rank == 0)
            printf("RESULT allreduce ranks=%d bytes=%.0f us=%.2f GB_s=%.3f\n", comm->world, bytes, 1e6 * med,
                   bytes / med / 1e9);
        if (n == 1) alpha = med; /* latency: the time of the smallest message */
        if (bytes >= (1 << 20)) sx += bytes, sy += med, sxx += bytes * bytes, sxy += bytes * med, npts++;
    }
    double beta = (npts * sxy - sx * sy) / (npts * sxx - sx * sx); /* least squares over the sizes >= 1 MiB */
    if (comm->rank == 0)
        printf("RESULT allreduce_fit ranks=%d alpha_us=%.2f beta_ns_per_byte=%.4f bandwidth_GB_s=%.2f\n",
               comm->world, 1e6 * alpha, 1e9 * beta, 1.0 / beta / 1e9);
    free(buf);
}

typedef struct {
    double step, blocked, compute;
} step_times;

static void bench_step(const dc_comm *comm, const char *arch, int global_batch, int size, int steps,
                       double bucket_mb) {
    if (global_batch % comm->world) {
        if (comm->rank == 0)
            fprintf(stderr, "bench_dist: --global-batch must be a multiple of the rank count\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    int batch = global_batch / comm->world, classes = 10;
    dc_net_desc d = {
        .in_channels = 3, .num_classes = classes, .image_h = size, .image_w = size, .max_batch = batch};
    snprintf(d.arch, sizeof d.arch, "%s", arch);
    dc_net *net;
    DC_CHECK_OK(dc_net_create(&d, &net), "bad architecture");
    dc_sgd opt;
    DC_CHECK_OK(dc_sgd_create(&opt, net, 0.1f, 0.9f, 5e-4f, 0.1f, 0.9f, 5e-4f, 0, 0), "");
    size_t nx = (size_t)batch * 3 * size * size;
    float *x = dc_malloc_aligned(nx * sizeof(float));
    int32_t *y = dc_malloc((size_t)batch * sizeof(int32_t));
    float *dlogits = dc_malloc((size_t)batch * classes * sizeof(float));
    dc_rng r = dc_rng_make(42 + (uint64_t)comm->rank);
    for (size_t i = 0; i < nx; i++) x[i] = (float)dc_rng_normal(&r);
    for (int i = 0; i < batch; i++) y[i] = (int)dc_rng_below(&r, (uint64_t)classes);
    const double lrs[2] = {0.01, 0.01};
    dc_comm_bcast(comm, net->params, net->n_params * sizeof(float), 0);

    /* pass 0: bucketed Iallreduce overlapped with backward (the default); pass 1: one blocking allreduce
     * after backward, to see the whole cost of communication */
    double res[2][3]; /* per pass: step; after backward: allreduce, waiting at the barrier */
    for (int pass = 0; pass < 2; pass++) {
        dc_grad_reducer red;
        DC_CHECK_OK(dc_grad_reduce_init(&red, comm, net->grads, net->n_params, pass == 0 ? bucket_mb : 0),
                    "reducer");
        net->grad_ready = comm->world > 1 ? dc_grad_reduce_ready : NULL;
        net->grad_ready_ctx = &red;
        double *ts = malloc(sizeof(double) * (size_t)steps), *tb = malloc(sizeof(double) * (size_t)steps);
        double *tw = malloc(sizeof(double) * (size_t)steps);
        for (int s = -3; s < steps; s++) { /* 3 warm-up steps */
            MPI_Barrier(MPI_COMM_WORLD);
            double t0 = MPI_Wtime();
            dc_net_zero_grad(net);
            dc_grad_reduce_begin(&red);
            dc_net_forward(net, x, batch, 1);
            dc_softmax_ce(batch, classes, net->logits, y, NULL, 1.0f / global_batch, dlogits);
            dc_net_backward(net, dlogits, batch, 0);
            double t1 = MPI_Wtime();
            /* pass 1: a barrier first separates waiting for the slowest rank (skew) from the transfer */
            if (pass == 1) MPI_Barrier(MPI_COMM_WORLD);
            double tb0 = MPI_Wtime();
            if (comm->world > 1) dc_grad_reduce_finish(&red, 0);
            double t2 = MPI_Wtime();
            dc_sgd_step(&opt, net->params, net->grads, lrs);
            double t3 = MPI_Wtime();
            if (s >= 0) ts[s] = t3 - t0, tb[s] = t2 - tb0, tw[s] = tb0 - t1;
        }
        double m[3] = {bench_median(ts, steps), bench_median(tb, steps), bench_median(tw, steps)};
        MPI_Allreduce(MPI_IN_PLACE, m, 3, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        memcpy(res[pass], m, sizeof m);
        free(ts);
        free(tb);
        free(tw);
        dc_grad_reduce_free(&red);
        net->grad_ready = NULL;
    }
    if (comm->rank == 0)
        printf("RESULT step %s ranks=%d threads=%d global_batch=%d img_s=%.1f ms_step=%.2f ms_blocked=%.2f "
               "blocked_pct=%.1f ms_step_single=%.2f ms_skew=%.2f ms_allreduce_full=%.2f allreduce_pct=%.1f "
               "slab_mb=%.2f\n",
               arch, comm->world, omp_get_max_threads(), global_batch, global_batch / res[0][0],
               1e3 * res[0][0], 1e3 * res[0][1], 100 * res[0][1] / res[0][0], 1e3 * res[1][0],
               1e3 * res[1][2], 1e3 * res[1][1], 100 * res[1][1] / res[1][0], net->n_params * 4.0 / 1e6);
    dc_sgd_free(&opt);
    dc_net_free(net);
    free(x);
    free(y);
    free(dlogits);
}

int main(int argc, char **argv) {
    dc_comm comm;
    DC_CHECK_OK(dc_comm_init(&comm, &argc, &argv), "MPI");
    const char *arch = "resnet32", *mode = "both";
    int global_batch = 128, size = 32, steps = 20, threads = 0;
    double bucket_mb = 25;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--arch") && i + 1 < argc)
            arch = argv[++i];
        else if (!strcmp(argv[i], "--global-batch") && i + 1 < argc)
            global_batch = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--size") && i + 1 < argc)
            size = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--steps") && i + 1 < argc)
            steps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--bucket-mb") && i + 1 < argc)
            bucket_mb = atof(argv[++i]);
        else if (!strcmp(argv[i], "--mode") && i + 1 < argc)
            mode = argv[++i];
        else {
            if (comm.rank == 0)
                fprintf(stderr, "usage: mpirun -np R bench_dist [--arch A] [--global-batch B] [--size S] "
                                "[--steps N] [--threads T] [--bucket-mb MB] [--mode step|allreduce|both]\n");
            MPI_Abort(MPI_COMM_WORLD, 2);
        }
    }
    if (global_batch < 1 || steps < 1 || size < 8) {
        if (comm.rank == 0) fprintf(stderr, "bench_dist: bad --global-batch, --steps or --size\n");
        MPI_Abort(MPI_COMM_WORLD, 2);
    }
    if (threads > 0) omp_set_num_threads(threads);
    openblas_set_num_threads(omp_get_max_threads());
    if (strcmp(mode, "step") && comm.world > 1) bench_allreduce(&comm);
    if (strcmp(mode, "allreduce")) bench_step(&comm, arch, global_batch, size, steps, bucket_mb);
    dc_comm_finalize(&comm);
    return 0;
}
